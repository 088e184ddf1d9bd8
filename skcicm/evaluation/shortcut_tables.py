"""The table of the shortcut protocol: average and worst-group accuracy per method, source
and tuning rule (:func:`~skcicm.evaluation.protocols.shortcut.shortcut`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from skcicm.evaluation.options import METHODS, is_baseline
from skcicm.evaluation.reporting import _format, summarize

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
