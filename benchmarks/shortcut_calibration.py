"""How strong is the shortcut world for ToyCLIP? Calibration curve of the shortcut protocol.

For each seed and shortcut strength ``rho`` the protocol of ``skcicm evaluate --protocol
shortcut`` (:func:`skcicm.evaluation.protocols.shortcut.shortcut`) draws a world, fits the CLIP
linear probe (``LogisticRegression(C=0.316)`` on ToyCLIP embeddings of the sources' "in"
parts) and CLIP-ICM linear probes on one intervention source (default: the counterfactuals),
and scores them on the target's "in" part. CLIP-ICM's ``lam`` and ``n_components`` are chosen
by the protocol's ``"interventional"`` rule (at the protocol's defaults: leaving out one of 5
stratified folds of the source images, scored by
:class:`skcicm.model_selection.InterventionalScorer` at its default rule; chosen on the
sources only) and by the target oracle (an upper bound that looks at the target, not a result). The
*control* is the same world with ``rho = 1 / number of shortcut values``: the values are drawn
independently of the class, so there is no shortcut to take. Its gap to the CLIP probe of the
same seed (paired) is what the shortcut costs the probe.

``--compare-factors`` instead measures, at one ``rho``, the CLIP probe against its control for
several choices of the factors that carry the shortcut: what makes a shortcut strong for
ToyCLIP (docs/results.md, "Calibrating the shortcut").

Usage::

    python benchmarks/shortcut_calibration.py --out results/calibration       # the curve
    python benchmarks/shortcut_calibration.py --compare-factors --out results/factors
    python benchmarks/shortcut_calibration.py --seeds 0 --rho 0.95 --n-per-cell 4  # smoke run

Writes ``calibration.csv`` (one row per seed, rho and curve), ``summary.csv`` (mean and 95%
t-interval over seeds) and ``calibration.png`` (or ``factors.csv``) to ``--out`` and prints the
table.
"""

from __future__ import annotations

import argparse
import csv
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from skcicm import CLIPFeaturizer  # noqa: E402
from skcicm.datasets import make_toyworld_shortcut  # noqa: E402
from skcicm.evaluation.options import DEFAULT_SHORTCUT  # noqa: E402
from skcicm.evaluation.protocols.shortcut import shortcut, shortcut_targets  # noqa: E402
from skcicm.evaluation.reporting import mean_confidence_interval, write_rows  # noqa: E402

RHOS = (0.5, 0.8, 0.9, 0.95, 0.99)
PROBE, SELECTED, ORACLE, CONTROL = (
    "CLIP probe",
    "CLIP-ICM, chosen on the sources",
    "CLIP-ICM, target oracle (upper bound)",
    "CLIP probe, control (no shortcut)",
)
# Shortcut factors and held-out style of the --compare-factors worlds; None: the target is the
# source styles with the relation broken.
FACTOR_WORLDS = (
    (("style",), None),
    (("style", "colors", "background"), None),
    (("colors", "background"), None),
    (("colors", "background"), "painting"),
    (("colors",), "painting"),
    (("texture",), None),
)


def control_rho(shortcut_factors: tuple[str, ...], held_out: str | None) -> float:
    """``1 / number of shortcut values``: the values are drawn independently of the class."""
    world = make_toyworld_shortcut(
        1, shortcut=shortcut_factors, target_domain=held_out, image_size=16
    )
    return 1.0 / len(world.shortcut_names)


def _probe_rows(result, target: str, curve: str, rho: float | None = None) -> list[dict]:
    return [
        {"seed": r["seed"], "rho": r["rho"] if rho is None else rho, "curve": curve,
         "accuracy": r["accuracy"], "worst_group": r["worst_group"], "lam": r["lam"],
         "n_components": r["n_components"]}
        for r in result.results
        if r["target"] == target and r["method"] == "clip_linear_probe"
    ]  # fmt: skip


def run_calibration(
    featurizer: CLIPFeaturizer,
    rhos: list[float],
    seeds: list[int],
    n_per_cell: int,
    intervention: str,
    shortcut_factors: tuple[str, ...],
    held_out: str | None,
) -> list[dict]:
    """One row per seed, rho and curve (CLIP probe, CLIP-ICM chosen two ways, control)."""
    world = {"shortcut_factors": shortcut_factors, "held_out": held_out, "n_per_cell": n_per_cell}
    target = shortcut_targets(held_out)[0]
    result = shortcut(
        featurizer,
        rho=rhos,
        seeds=seeds,
        interventions=[intervention],
        methods=["clip_linear_probe", "icm_linear_probe"],
        tuning=["interventional", "oracle"],
        progress=False,
        **world,
    )
    rows = _probe_rows(result, target, PROBE)
    for r in result.results:
        if r["target"] == target and r["method"] == "icm_linear_probe":
            curve = ORACLE if r["tuning"] == "target-oracle" else SELECTED
            rows.append(
                {key: r[key] for key in ("seed", "rho", "accuracy", "worst_group", "lam")}
                | {"curve": curve, "n_components": r["n_components"]}
            )
    control = shortcut(
        featurizer,
        rho=[control_rho(shortcut_factors, held_out)],
        seeds=seeds,
        interventions=[],
        methods=["clip_linear_probe"],
        tuning=["source"],
        progress=False,
        **world,
    )
    # The control does not depend on rho: the same per-seed value is drawn at every rho.
    for rho in rhos:
        rows += _probe_rows(control, target, CONTROL, rho=rho)
    return rows


def _cell(values: list[float]) -> str:
    mean, half = mean_confidence_interval(100 * np.asarray(values))
    return f"{mean:.1f} ± {half:.1f}"


def _paired(rows: list[dict], rho: float, first: str, second: str) -> list[float]:
    by_seed = {
        curve: {r["seed"]: r["accuracy"] for r in rows if r["curve"] == curve and r["rho"] == rho}
        for curve in (first, second)
    }
    return [by_seed[first][s] - by_seed[second][s] for s in sorted(by_seed[first])]


def summarise(rows: list[dict]) -> tuple[str, list[dict]]:
    """The markdown table (mean ± 95% t-interval over seeds) and its rows for summary.csv."""
    rhos = sorted({r["rho"] for r in rows})
    curves = [c for c in (PROBE, SELECTED, ORACLE, CONTROL) if any(r["curve"] == c for r in rows)]
    n_seeds = len({r["seed"] for r in rows})
    lines = [
        f"Target accuracy (%, mean ± 95% t-interval over {n_seeds} seeds); the last columns "
        "are paired differences of the same seed's worlds.",
        "",
        "| rho | " + " | ".join(curves) + " | probe − control | ICM chosen − probe |",
        "|---" * (len(curves) + 3) + "|",
    ]
    summary = []
    for rho in rhos:
        cells = []
        for curve in curves:
            values = [r["accuracy"] for r in rows if r["curve"] == curve and r["rho"] == rho]
            mean, half = mean_confidence_interval(values)
            summary.append(
                {"rho": rho, "curve": curve, "mean": mean, "half_width": half, "n": len(values)}
            )
            cells.append(_cell(values))
        gap = _cell(_paired(rows, rho, PROBE, CONTROL))
        gain = _cell(_paired(rows, rho, SELECTED, PROBE)) if SELECTED in curves else "-"
        lines.append(f"| {rho:g} | " + " | ".join(cells) + f" | {gap} | {gain} |")
    chosen = [r for r in rows if r["curve"] == SELECTED]
    if chosen:
        picks = {}
        for r in chosen:
            picks.setdefault(r["rho"], []).append(f"({r['lam']:g}, {r['n_components']})")
        lines += ["", "CLIP-ICM's choice on the sources, (lam, K) per seed:"]
        lines += [f"- rho {rho:g}: {', '.join(picks[rho])}" for rho in sorted(picks)]
    return "\n".join(lines), summary


def plot(summary: list[dict], path: Path, title: str) -> Path:
    """Target accuracy against rho with 95% intervals, one line per curve."""
    styles = {
        PROBE: {"color": "tab:red", "marker": "o", "linestyle": "-"},
        SELECTED: {"color": "tab:blue", "marker": "s", "linestyle": "-"},
        ORACLE: {"color": "tab:green", "marker": "^", "linestyle": ":"},
        CONTROL: {"color": "0.45", "marker": "", "linestyle": "--"},
    }
    figure, axis = plt.subplots(figsize=(5.2, 3.4))
    for curve, style in styles.items():
        points = sorted(
            (s["rho"], s["mean"], s["half_width"]) for s in summary if s["curve"] == curve
        )
        if not points:
            continue
        rho, mean, half = (np.array(column) for column in zip(*points, strict=True))
        half = np.nan_to_num(half)
        axis.plot(rho, 100 * mean, label=curve, markersize=4, **style)
        axis.fill_between(rho, 100 * (mean - half), 100 * (mean + half), color=style["color"],
                          alpha=0.15, linewidth=0)  # fmt: skip
    axis.axhline(10, color="0.7", linewidth=0.8)
    axis.text(max(s["rho"] for s in summary), 11, "chance", color="0.5", fontsize=7, ha="right")
    axis.set_xlabel("shortcut strength rho in the sources")
    axis.set_ylabel("target accuracy (%)")
    axis.set_ylim(0, 100)
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=7, loc="lower left")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=150)
    plt.close(figure)
    return path


def compare_factors(featurizer: CLIPFeaturizer, rho: float, seeds: list[int], n_per_cell: int):
    """The CLIP probe against its control, at ``rho``, for each world of FACTOR_WORLDS."""
    lines = [
        f"CLIP probe target accuracy (%, mean ± 95% t-interval over {len(seeds)} seeds) at rho "
        f"{rho:g} and in the control (rho = 1 / number of values); paired difference.",
        "",
        "| shortcut factors | target | rho = " + f"{rho:g} | control | shortcut − control |",
        "|---|---|---|---|---|",
    ]
    rows = []
    for factors, held_out in FACTOR_WORLDS:
        target = shortcut_targets(held_out)[0]
        per_curve = {}
        for curve, value in ((PROBE, rho), (CONTROL, control_rho(factors, held_out))):
            result = shortcut(
                featurizer,
                rho=[value],
                seeds=seeds,
                shortcut_factors=factors,
                held_out=held_out,
                n_per_cell=n_per_cell,
                interventions=[],
                methods=["clip_linear_probe"],
                tuning=["source"],
                progress=False,
            )
            per_curve[curve] = _probe_rows(result, target, curve, rho=value)
        for curve_rows in per_curve.values():
            rows += [{**r, "shortcut": "+".join(factors), "target": target} for r in curve_rows]
        probe, control = ([r["accuracy"] for r in per_curve[c]] for c in (PROBE, CONTROL))
        lines.append(
            f"| {' + '.join(factors)} | {target} | {_cell(probe)} | {_cell(control)} | "
            f"{_cell(list(np.subtract(probe, control)))} |"
        )
        print(lines[-1], flush=True)
    return "\n".join(lines), rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--rho", type=float, nargs="+", default=list(RHOS))
    parser.add_argument("--n-per-cell", type=int, default=20)
    parser.add_argument(
        "--interventions",
        default="counterfactual",
        choices=["image", "counterfactual", "text", "domain"],
        help="the intervention source of the CLIP-ICM curves",
    )
    parser.add_argument("--shortcut", nargs="+", default=list(DEFAULT_SHORTCUT))
    parser.add_argument("--held-out", default=None, help="held-out target style (not for style)")
    parser.add_argument("--compare-factors", action="store_true")
    parser.add_argument(
        "--from-csv",
        action="store_true",
        help="re-render the table and figure from <out>/calibration.csv, fitting nothing",
    )
    parser.add_argument("--out", type=Path, default=Path("results/shortcut_calibration"))
    parser.add_argument("--figure", type=Path, help="also save the figure here (docs/_static)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    featurizer = CLIPFeaturizer(
        "toyclip", None, n_interventions=2, progress=False, num_workers=0, random_state=0
    )
    start = time.perf_counter()
    if args.compare_factors:
        table, rows = compare_factors(featurizer, args.rho[0], args.seeds, args.n_per_cell)
        write_rows(rows, args.out / "factors.csv")
    else:
        factors = tuple(args.shortcut)
        if args.from_csv:
            with (args.out / "calibration.csv").open() as handle:
                rows = [
                    {**r, "seed": int(r["seed"]), "rho": float(r["rho"]),
                     "accuracy": float(r["accuracy"]), "lam": float(r["lam"])}
                    for r in csv.DictReader(handle)
                ]  # fmt: skip
            args.seeds = sorted({r["seed"] for r in rows})
        else:
            rows = run_calibration(
                featurizer,
                args.rho,
                args.seeds,
                args.n_per_cell,
                args.interventions,
                factors,
                args.held_out,
            )
        table, summary = summarise(rows)
        write_rows(rows, args.out / "calibration.csv")
        write_rows(summary, args.out / "summary.csv")
        title = (
            f"ToyWorld, {' + '.join(factors)} shortcut, target: "
            f"{shortcut_targets(args.held_out)[0]}\nCLIP-ICM [{args.interventions}]; mean and "
            f"95% interval over {len(args.seeds)} seeds"
        )
        for path in [args.out / "calibration.png", args.figure]:
            if path is not None:
                plot(summary, path, title)
    print()
    print(table)
    print(f"\nwall time {time.perf_counter() - start:.0f} s; results in {args.out}")


if __name__ == "__main__":
    main()
