"""One line under each table of the main job: what the reader should take from it, as measured.

Each line compares CLIP-ICM with the CLIP linear probe of the same seed (a paired difference)
and calls a difference clear only when its 95% t-interval over seeds excludes zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from skcicm.evaluation.reporting import mean_confidence_interval


def paired_gain(
    rows: Sequence[dict[str, Any]],
    chosen: Callable[[dict[str, Any]], bool],
    value: str = "accuracy",
) -> tuple[float, float, int]:
    """Mean, 95% half-width and seed count of ``value`` of the ``chosen`` rows minus the CLIP
    probe's, averaged over targets per seed, in points (%).

    Examples
    --------
    >>> rows = [{"method": m, "seed": s, "target": "t", "accuracy": a}
    ...         for m, s, a in [("clip_linear_probe", 0, 0.5), ("icm_linear_probe", 0, 0.6),
    ...                         ("clip_linear_probe", 1, 0.5), ("icm_linear_probe", 1, 0.8)]]
    >>> paired_gain(rows, lambda r: r["method"] == "icm_linear_probe")[0]
    20.0
    """

    def per_seed(keep: Callable[[dict[str, Any]], bool]) -> dict[Any, float]:
        values: dict[Any, list[float]] = {}
        for row in rows:
            if keep(row):
                values.setdefault(row["seed"], []).append(float(row[value]))
        return {seed: float(np.mean(v)) for seed, v in values.items()}

    clip = per_seed(lambda r: r["method"] == "clip_linear_probe")
    icm = per_seed(chosen)
    seeds = sorted(set(clip) & set(icm))
    if not seeds:
        raise ValueError("No seed has both the CLIP probe and the compared rows.")
    mean, half = mean_confidence_interval(100 * (icm[s] - clip[s]) for s in seeds)
    return mean, half, len(seeds)


def _verdict(mean: float, half: float) -> str:
    if np.isnan(half):
        return f"{mean:+.1f} (one seed, no interval)"
    clear = (
        "clear gain"
        if mean - half > 0
        else "clear loss"
        if mean + half < 0
        else "no clear difference"
    )
    return f"{mean:+.1f} ± {half:.1f} ({clear})"


def domain_shift_takeaway(results: Sequence[dict[str, Any]]) -> str:
    """The line under the domain-shift table.

    Examples
    --------
    >>> rows = [{"method": m, "seed": s, "target": "t", "accuracy": a, "tuning": "source-lodo"}
    ...         for m, s, a in [("clip_linear_probe", 0, 0.5), ("icm_linear_probe", 0, 0.5),
    ...                         ("clip_linear_probe", 1, 0.6), ("icm_linear_probe", 1, 0.6)]]
    >>> domain_shift_takeaway(rows)
    'Take-away: source-tuned CLIP-ICM probe minus CLIP probe, average over targets: +0.0 ± 0.0 \
(no clear difference) points over 2 seeds.'
    """
    rule = next((r["tuning"] for r in results if r["method"] == "icm_linear_probe"), "source-lodo")
    mean, half, n = paired_gain(
        results, lambda r: r["method"] == "icm_linear_probe" and r["tuning"] == rule
    )
    kind = "oracle-tuned" if rule == "target-oracle" else "source-tuned"
    return (
        f"Take-away: {kind} CLIP-ICM probe minus CLIP probe, average over targets: "
        f"{_verdict(mean, half)} points over {n} seeds."
    )


def shortcut_takeaway(results: Sequence[dict[str, Any]], target: str) -> str:
    """The line under the shortcut table: on ``target``, each intervention source's CLIP-ICM
    probe chosen on the sources (``"source-lodo-interventional"``: the interventional scorer's
    default rule), minus the CLIP probe of the same seed.

    Examples
    --------
    >>> rows = [{"method": m, "interventions": s, "tuning": t, "target": "x", "seed": seed,
    ...          "accuracy": a + seed / 100}
    ...         for seed in (0, 1, 2)
    ...         for m, s, t, a in [("clip_linear_probe", "none", "none", 0.7),
    ...                            ("icm_linear_probe", "text", "source-lodo-interventional", 0.9)]]
    >>> shortcut_takeaway(rows, "x")
    'Take-away: on x, CLIP-ICM probe chosen on the sources minus CLIP probe (points, paired \
over 3 seeds): text +20.0 ± 0.0 (clear gain).'
    """
    on_target = [r for r in results if r["target"] == target]
    parts, n_seeds = [], 0
    for source in dict.fromkeys(r["interventions"] for r in on_target):
        keep = {"method": "icm_linear_probe", "interventions": source}
        keep["tuning"] = "source-lodo-interventional"
        if not any(all(r.get(k) == v for k, v in keep.items()) for r in on_target):
            continue
        mean, half, n_seeds = paired_gain(
            on_target, lambda r, keep=keep: all(r.get(k) == v for k, v in keep.items())
        )
        parts.append(f"{source} {_verdict(mean, half)}")
    return (
        f"Take-away: on {target}, CLIP-ICM probe chosen on the sources minus CLIP probe "
        f"(points, paired over {n_seeds} seeds): {'; '.join(parts)}."
    )
