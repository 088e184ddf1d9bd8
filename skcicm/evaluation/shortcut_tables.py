"""The table of the shortcut protocol: average and worst-group accuracy per method, source
and tuning rule (:func:`~skcicm.evaluation.shortcut`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from skcicm.evaluation.options import METHODS, is_baseline
from skcicm.evaluation.reporting import _format, mean_confidence_interval, summarize

_RULE_LABELS = {
    "none": "",
    "given": "",
    "source-lodo": "source LODO",
    "source-lodo-interventional": "source LODO, interventional",
    "target-oracle": "target oracle",
}


def shortcut_label(row: dict[str, Any]) -> str:
    """Display name of a shortcut row: method, intervention source and tuning rule.

    Examples
    --------
    >>> shortcut_label({"method": "icm_linear_probe", "interventions": "text",
    ...                 "tuning": "target-oracle"})
    'CLIP-ICM linear probe [text] (target oracle)'
    """
    label = METHODS.get(row["method"], row["method"])
    if not is_baseline(row["method"]):
        label += f" [{row['interventions']}]"
    rule = _RULE_LABELS.get(row.get("tuning", "none"), row.get("tuning"))
    return f"{label} ({rule})" if rule else label


def shortcut_table(results: Sequence[dict[str, Any]], *, title: str | None = None) -> str:
    """Markdown table of a shortcut run at one ``rho``: average and worst-group accuracy (%).

    Rows are method x intervention source x tuning rule; for each target, an "avg" and a
    "worst group" column (mean ± 95% t-interval over seeds).
    """
    rhos = {row["rho"] for row in results}
    if len(rhos) != 1:
        raise ValueError(f"shortcut_table tabulates one rho at a time; got {sorted(rhos)}.")
    labelled = [{**row, "method": shortcut_label(row), "tuning": None} for row in results]
    summaries = {value: summarize(labelled, value) for value in ("accuracy", "worst_group")}
    targets = list(dict.fromkeys(str(row["target"]) for row in results))
    labels = list(dict.fromkeys(row["method"] for row in labelled))
    header = [f"{t} {kind}" for t in targets for kind in ("avg", "worst group")]
    lines = [] if title is None else [title, ""]
    lines += ["| Method | " + " | ".join(header) + " |", "|" + "---|" * (len(header) + 1)]
    for label in labels:
        cells = [
            _format(*summaries[value][(label, t)][:2])
            for t in targets
            for value in ("accuracy", "worst_group")
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    n_seeds = len({row["seed"] for row in results})
    lines += ["", f"rho = {rhos.pop():g}; mean ± 95% t-interval over {n_seeds} seed(s)."]
    return "\n".join(lines)


# A worst-group cell is printed only when its 95% half-width is at most this (in [0, 1]); with
# a few images per (class, shortcut value) group the worst group is mostly noise.
WORST_GROUP_MAX_HALF_WIDTH = 0.10
CHOSEN_RULE = "source-lodo-interventional"
ORACLE_LABEL = "CLIP-ICM linear probe, target oracle over every source (upper bound)"


def _per_seed(rows: Sequence[dict[str, Any]], value: str) -> dict[Any, float]:
    return {row["seed"]: float(row[value]) for row in rows}


def _oracle_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per seed and target, the best target-oracle probe over the intervention sources."""
    best: dict[tuple[Any, str], dict[str, Any]] = {}
    for row in rows:
        if row["method"] == "icm_linear_probe" and row["tuning"] == "target-oracle":
            key = (row["seed"], str(row["target"]))
            if key not in best or row["accuracy"] > best[key]["accuracy"]:
                best[key] = row
    return list(best.values())


def _choices(rows: Sequence[dict[str, Any]], with_source: bool = False) -> str:
    """The (lam, K) chosen per seed, most frequent first: ``"(3, 32) x3, (1, 32) x2"``."""
    counts: dict[str, int] = {}
    for row in sorted(rows, key=lambda r: r["seed"]):
        choice = f"({row['lam']:g}, {row['n_components']})"
        if with_source:
            choice += f" [{row['interventions']}]"
        counts[choice] = counts.get(choice, 0) + 1
    ordered = sorted(counts.items(), key=lambda item: -item[1])
    return ", ".join(f"{choice} x{n}" if n > 1 else choice for choice, n in ordered)


def _fold_count(row: dict[str, Any]) -> int | None:
    """The stratified folds a row was selected on; None for leave-one-style-out (rows read back
    from results.csv hold an empty cell or NaN there)."""
    try:
        return int(float(row.get("selection_folds")))
    except (TypeError, ValueError):
        return None


def shortcut_summary_table(
    results: Sequence[dict[str, Any]], *, scorer: str, title: str | None = None
) -> str:
    """The main job's table of a shortcut run at one ``rho``: at most 8 rows.

    CLIP zero-shot, the CLIP linear probe, one CLIP-ICM linear probe per intervention source
    with ``lam`` and ``n_components`` chosen on the sources by ``scorer`` (leave one source
    style out; the ``"source-lodo-interventional"`` rows), and the best target-oracle probe over
    the sources, an upper bound that looks at the target. Every other head and rule stays in
    the results files (:func:`shortcut_table`). Worst-group cells whose 95% interval is wider
    than ±10 points print as "–".

    Parameters
    ----------
    results : sequence of dict
        Results rows of :func:`~skcicm.evaluation.shortcut`, one ``rho``.
    scorer : str
        How the sources chose ``lam`` and ``n_components``, for the note under the table
        (e.g. ``repr(InterventionalScorer())``).
    title : str, default=None
        A line above the table.

    Returns
    -------
    str
        The Markdown table and its notes.

    Raises
    ------
    ValueError
        When the rows hold several ``rho``.

    Examples
    --------
    >>> rows = [{"method": m, "interventions": s, "tuning": t, "target": "t", "seed": seed,
    ...          "rho": 0.9, "accuracy": a, "worst_group": a - 0.5, "lam": lam,
    ...          "n_components": 32}
    ...         for seed in (0, 1)
    ...         for m, s, t, a, lam in [("clip_linear_probe", "none", "none", 0.7, 0.0),
    ...                                 ("icm_linear_probe", "text", "source-lodo-interventional",
    ...                                  0.9, 1.0),
    ...                                 ("icm_linear_probe", "text", "target-oracle", 0.95, 3.0)]]
    >>> print(shortcut_summary_table(rows, scorer="S()"))
    | Method | t avg | t worst group | chosen (lam, K) per seed |
    |---|---|---|---|
    | CLIP linear probe | 70.0 ± 0.0 | 20.0 ± 0.0 | - |
    | CLIP-ICM linear probe [text], chosen on the sources | 90.0 ± 0.0 | 40.0 ± 0.0 | (1, 32) x2 |
    | CLIP-ICM linear probe, target oracle over every source (upper bound) | 95.0 ± 0.0 | 45.0 ± 0.0 | (3, 32) [text] x2 |
    <BLANKLINE>
    rho = 0.9; mean ± 95% t-interval over 2 seed(s). lam and K of each CLIP-ICM probe chosen by leave-one-source-style-out, scored by S(); the oracle row chooses on the target and is an upper bound, not a result. Worst group: accuracy of the worst (class, shortcut value) group, shown where its 95% interval is within ±10 points. Other heads and rules: results.csv and table_full.md.
    """  # noqa: E501
    rhos = {row["rho"] for row in results}
    if len(rhos) != 1:
        raise ValueError(f"shortcut_summary_table tabulates one rho at a time; got {sorted(rhos)}.")
    targets = list(dict.fromkeys(str(row["target"]) for row in results))
    lines: list[tuple[str, list[dict[str, Any]], str]] = []
    for method in ("clip_zero_shot", "clip_linear_probe"):
        chosen = [row for row in results if row["method"] == method]
        if chosen:
            lines.append((METHODS[method], chosen, "-"))
    for source in dict.fromkeys(row["interventions"] for row in results):
        chosen = [
            row
            for row in results
            if row["method"] == "icm_linear_probe"
            and row["interventions"] == source
            and row["tuning"] == CHOSEN_RULE
        ]
        if chosen:
            first = [row for row in chosen if str(row["target"]) == targets[0]]
            label = f"{METHODS['icm_linear_probe']} [{source}], chosen on the sources"
            lines.append((label, chosen, _choices(first)))
    oracle = _oracle_rows(results)
    if oracle:
        first = [row for row in oracle if str(row["target"]) == targets[0]]
        lines.append((ORACLE_LABEL, oracle, _choices(first, with_source=True)))
    chosen_header = "chosen (lam, K) per seed" + (f" ({targets[0]})" if len(targets) > 1 else "")
    header = [f"{t} {kind}" for t in targets for kind in ("avg", "worst group")]
    table = [] if title is None else [title, ""]
    table += [
        "| Method | " + " | ".join(header) + f" | {chosen_header} |",
        "|" + "---|" * (len(header) + 2),
    ]
    for label, rows, choices in lines:
        cells = []
        for target in targets:
            on_target = [row for row in rows if str(row["target"]) == target]
            mean, half = mean_confidence_interval(_per_seed(on_target, "accuracy").values())
            cells.append(_format(mean, half))
            mean, half = mean_confidence_interval(_per_seed(on_target, "worst_group").values())
            wide = not half <= WORST_GROUP_MAX_HALF_WIDTH
            cells.append("–" if wide else _format(mean, half))
        table.append(f"| {label} | " + " | ".join(cells) + f" | {choices} |")
    n_seeds = len({row["seed"] for row in results})
    folds = {_fold_count(row) for row in results if row["tuning"] == CHOSEN_RULE}
    held_out = (
        f"leaving out one of {folds.pop()} stratified folds of the source images"
        if len(folds) == 1 and None not in folds
        else "leave-one-source-style-out"
    )
    table += [
        "",
        f"rho = {rhos.pop():g}; mean ± 95% t-interval over {n_seeds} seed(s). lam and K of "
        f"each CLIP-ICM probe chosen by {held_out}, scored by "
        f"{scorer}; the oracle row chooses on the target and is an upper bound, not a result. "
        "Worst group: accuracy of the worst (class, shortcut value) group, shown where its 95% "
        f"interval is within ±{100 * WORST_GROUP_MAX_HALF_WIDTH:g} points. Other heads and "
        "rules: results.csv and table_full.md.",
    ]
    return "\n".join(table)
