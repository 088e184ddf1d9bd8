"""Results files and the paper-style Markdown table.

Results are tidy rows (dicts): one per dataset x target x method x seed. They are written as
CSV or JSON lines (by file suffix) and read back with numbers restored. The table has one row
per method and one column per target plus their average, each cell the mean over seeds with a
95% t-interval when there are several seeds.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from skcicm.evaluation.options import METHODS

# Leading columns of every results file, in this order; any other keys follow, sorted.
RESULT_COLUMNS: tuple[str, ...] = (
    "dataset",
    "protocol",
    "target",
    "method",
    "seed",
    "accuracy",
    "base_accuracy",
    "novel_accuracy",
    "lam",
    "n_components",
    "tuning",
    "selection_score",
    "n_train",
    "n_test",
    "model",
    "pretrained",
    "interventions",
)


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    keys = {key for row in rows for key in row}
    return [c for c in RESULT_COLUMNS if c in keys] + sorted(keys - set(RESULT_COLUMNS))


def write_rows(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write tidy rows to ``path``: JSON lines for ``.jsonl``, else CSV.

    Missing values are written as empty CSV cells (``null`` in JSON lines).

    Parameters
    ----------
    rows : sequence of dict
        Results rows; the columns are the union of their keys, in order of appearance.
    path : str or path-like
        File to write; its parent folders are created.

    Returns
    -------
    path : pathlib.Path
        The file written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = _columns(rows)
    if path.suffix == ".jsonl":
        with path.open("w") as handle:
            for row in rows:
                handle.write(json.dumps({c: _json_value(row.get(c)) for c in columns}) + "\n")
        return path
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _csv_value(row.get(c)) for c in columns})
    return path


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _csv_value(value: Any) -> Any:
    value = _json_value(value)
    return "" if value is None else value


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read rows written by :func:`write_rows`; numeric cells become int or float.

    Empty cells (and JSON ``null``) read as NaN. Only numerals become numbers: a domain
    named "nan" stays a string. A UTF-8 byte-order mark, as spreadsheet programs write one,
    is skipped.

    Parameters
    ----------
    path : str or path-like
        A ``.jsonl`` or CSV file.

    Returns
    -------
    rows : list of dict
        One dict per row, from column name to value.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        Naming the file and line of a line that is not a JSON object, or of a CSV row with
        fewer or more cells than the header (a file cut short, for one).
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        rows = []
        with path.open(encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as error:
                    raise ValueError(
                        f"{path}, line {number}: not a JSON object ({error})."
                    ) from None
                if not isinstance(row, dict):
                    raise ValueError(
                        f"{path}, line {number}: not a JSON object but {line.strip()!r}."
                    )
                rows.append({k: float("nan") if v is None else v for k, v in row.items()})
        return rows
    rows = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            if None in row or None in row.values():
                raise ValueError(
                    f"{path}, line {reader.line_num}: {len(row) - (None in row)} columns "
                    f"expected, as in the header; the row has "
                    f"{'more' if None in row else 'fewer'} cells (is the file cut short?)."
                )
            rows.append({k: _parse(v) for k, v in row.items()})
    return rows


#: Columns every results row needs, and those that hold a fraction in [0, 1].
REQUIRED_RESULT_COLUMNS: tuple[str, ...] = ("dataset", "target", "method", "seed", "accuracy")
FRACTION_COLUMNS: tuple[str, ...] = ("accuracy", "base_accuracy", "novel_accuracy", "worst_group")


def check_results(
    rows: Sequence[dict[str, Any]],
    path: str | os.PathLike,
    settings: dict[str, Any] | None = None,
) -> None:
    """Fail unless ``rows`` are a complete, well-formed results file of one run.

    Parameters
    ----------
    rows : sequence of dict
        The rows read from ``path`` by :func:`read_rows`.
    path : str or path-like
        The file, for messages.
    settings : dict or None, default=None
        The run's settings from ``run.json`` (``seeds``, ``methods``, ``targets``): each
        method, target and seed listed there must have its rows. Without them, every
        method and target must have rows for the same seeds.

    Raises
    ------
    ValueError
        Naming the file (and the row) for a missing column, a fraction outside [0, 1] or
        not a number, and for a run whose rows are incomplete.

    Examples
    --------
    >>> rows = [{"dataset": "d", "target": "t", "method": "clip_zero_shot", "seed": s,
    ...          "accuracy": 0.5} for s in (0, 1)]
    >>> check_results(rows, "results.csv", {"seeds": [0, 1], "methods": ["clip_zero_shot"]})
    >>> check_results(rows[:1], "results.csv", {"seeds": [0, 1]})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: results.csv is incomplete: CLIP zero-shot on target 't' has no rows for seeds ...
    """
    missing = [c for c in REQUIRED_RESULT_COLUMNS if any(c not in row for row in rows)]
    if missing:
        raise ValueError(f"{path} lacks the column(s) {missing} that results rows need.")
    for number, row in enumerate(rows, 1):
        for column in FRACTION_COLUMNS:
            value = row.get(column, float("nan"))
            number_like = isinstance(value, int | float) and not isinstance(value, bool)
            optional_nan = number_like and column != "accuracy" and math.isnan(value)
            if not (optional_nan or (number_like and 0.0 <= value <= 1.0)):
                raise ValueError(
                    f"{path}, row {number}: {column} is {value!r}; it must be a fraction "
                    "between 0 and 1."
                )
    settings = settings or {}
    seeds = settings.get("seeds") or sorted({row["seed"] for row in rows}, key=str)
    groups: dict[tuple, set] = {}
    for row in rows:
        rho = row.get("rho")
        rho = None if isinstance(rho, float) and math.isnan(rho) else rho
        key = (method_label(row["method"], row.get("tuning")), str(row["target"]), rho)
        groups.setdefault(key, set()).add(row["seed"])
    problems = []
    for (label, target, rho), found in groups.items():
        absent = [seed for seed in seeds if seed not in found]
        if absent:
            where = f"target {target!r}" + ("" if rho is None else f", rho {rho}")
            problems.append(f"{label} on {where} has no rows for seeds {absent}")
    targets = list(dict.fromkeys(str(row["target"]) for row in rows))
    if settings.get("targets") and settings.get("protocol") != "imagenet":
        # ImageNet's targets are resolved to the variants' folder names; the others are as given.
        targets = [str(target) for target in settings["targets"]]
    for label in dict.fromkeys(label for label, _, _ in groups):
        absent = [t for t in targets if not any(k[0] == label and k[1] == t for k in groups)]
        if absent:
            problems.append(f"{label} has no rows for targets {absent}")
    present = {row["method"] for row in rows}
    absent_methods = [m for m in settings.get("methods") or () if m not in present]
    if absent_methods:
        problems.append(f"methods {absent_methods} of the run have no rows")
    if problems:
        raise ValueError(
            f"{path} is incomplete: "
            + "; ".join(problems[:5])
            + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            + ". Was the run interrupted, or the file cut short? Run 'skcicm evaluate' again."
        )


_INTEGER = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _parse(text: str) -> Any:
    # Only numerals become numbers: a domain named "nan" or "inf" stays a string.
    if text == "":
        return float("nan")
    if _INTEGER.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


def mean_confidence_interval(
    values: Iterable[float], confidence: float = 0.95
) -> tuple[float, float]:
    """Mean and half-width of the Student-t confidence interval of the mean.

    Parameters
    ----------
    values : iterable of float
        Samples, such as the accuracies of several seeds.
    confidence : float, default=0.95
        Confidence level of the interval.

    Returns
    -------
    mean : float
        The sample mean.
    half_width : float
        Half-width of the interval, ``t_{(1+confidence)/2, n-1} * s / sqrt(n)``; NaN for a
        single value.

    Examples
    --------
    >>> mean, half = mean_confidence_interval([1.0, 2.0, 3.0])
    >>> float(mean), round(float(half), 3)
    (2.0, 2.484)
    """
    values = np.asarray(list(values), dtype=float)
    mean = float(values.mean())
    if values.size < 2:
        return mean, float("nan")
    sem = values.std(ddof=1) / math.sqrt(values.size)
    return mean, float(stats.t.ppf(0.5 + confidence / 2, values.size - 1) * sem)


def method_label(method: str, tuning: str | None = None) -> str:
    """Display name of a method; oracle-tuned results are marked as such.

    Examples
    --------
    >>> method_label("icm_zero_shot", "target-oracle")
    'CLIP-ICM zero-shot (oracle)'
    """
    label = METHODS.get(method, method)
    marks = {"target-oracle": "oracle", "source-lodo-interventional": "interventional"}
    return f"{label} ({marks[tuning]})" if tuning in marks else label


def _format(mean: float, half_width: float) -> str:
    if math.isnan(mean):
        return "n/a"
    # A gain that rounds to zero prints as 0.0, not -0.0.
    mean = mean + 0.0 if round(100 * mean, 1) != 0 else 0.0
    if math.isnan(half_width):
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} ± {100 * half_width:.1f}"


def summarize(
    rows: Sequence[dict[str, Any]], value: str = "accuracy"
) -> dict[tuple[str, str], tuple[float, float, int]]:
    """Mean, 95% CI half-width and seed count of ``value`` per (method label, target).

    The target ``"Avg"`` holds, per method, the statistics over seeds of the mean over targets
    (seeds missing a target are left out of it).
    """
    per_seed: dict[tuple[str, str], dict[Any, float]] = {}
    targets: list[str] = []
    for row in rows:
        label = method_label(row["method"], row.get("tuning"))
        target = str(row["target"])
        if target not in targets:
            targets.append(target)
        per_seed.setdefault((label, target), {})[row["seed"]] = float(row[value])
    summary = {}
    for label in dict.fromkeys(label for label, _ in per_seed):
        for target in targets:
            seeds = per_seed.get((label, target))
            if seeds:
                summary[(label, target)] = (*mean_confidence_interval(seeds.values()), len(seeds))
        common = set.intersection(*(set(per_seed.get((label, t), {})) for t in targets))
        if common:
            averages = [np.mean([per_seed[(label, t)][s] for t in targets]) for s in sorted(common)]
            summary[(label, "Avg")] = (*mean_confidence_interval(averages), len(common))
    return summary


def markdown_table(
    rows: Sequence[dict[str, Any]], value: str = "accuracy", *, title: str | None = None
) -> str:
    """A Markdown table of ``value`` in percent: methods as rows, targets and "Avg" as columns.

    Parameters
    ----------
    rows : sequence of dict
        Results rows of one dataset and protocol.
    value : str, default="accuracy"
        The column to tabulate (``"base_accuracy"``, ``"novel_accuracy"``...).
    title : str, default=None
        A line printed above the table.

    Returns
    -------
    table : str
        The table, mean over seeds per cell, with ``title`` above it when given.

    Raises
    ------
    ValueError
        When ``rows`` is empty.

    Examples
    --------
    >>> rows = [{"method": "clip_zero_shot", "target": t, "seed": 0, "accuracy": a}
    ...         for t, a in [("art", 0.5), ("sketch", 0.7)]]
    >>> print(markdown_table(rows))
    | Method | art | sketch | Avg |
    |---|---|---|---|
    | CLIP zero-shot | 50.0 | 70.0 | 60.0 |
    """
    if not rows:
        raise ValueError("No results rows to tabulate.")
    summary = summarize(rows, value)
    targets = list(dict.fromkeys(str(row["target"]) for row in rows)) + ["Avg"]
    labels = list(dict.fromkeys(label for label, _ in summary))
    lines = [] if title is None else [title, ""]
    lines.append("| Method | " + " | ".join(targets) + " |")
    lines.append("|" + "---|" * (len(targets) + 1))
    for label in labels:
        cells = [
            _format(*summary[(label, t)][:2]) if (label, t) in summary else "n/a" for t in targets
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    n_seeds = max(count for _, _, count in summary.values())
    if n_seeds > 1:
        lines.extend(["", f"Mean ± 95% t-interval over {n_seeds} seeds."])
    return "\n".join(lines)


def chosen_settings_table(rows: Sequence[dict[str, Any]], *, title: str | None = None) -> str:
    """A Markdown table of the ``lam`` and K that tuning chose, per CLIP-ICM method and target.

    Parameters
    ----------
    rows : sequence of dict
        Results rows of one dataset and protocol, with ``lam`` and ``n_components``.
    title : str, default=None
        A line printed above the table.

    Returns
    -------
    table : str
        One cell per (method, target): each distinct ``lam / K`` chosen, with the number of
        seeds that chose it when the seeds disagree; empty when no row is a CLIP-ICM method.

    Examples
    --------
    >>> rows = [{"method": "icm_linear_probe", "target": "art", "seed": s, "lam": lam,
    ...          "n_components": k} for s, lam, k in [(0, 1.0, 64), (1, 1.0, 64), (2, 0.0, 128)]]
    >>> print(chosen_settings_table(rows))
    | Method | art |
    |---|---|
    | CLIP-ICM linear probe | 1 / 64 (2 seeds), 0 / 128 (1 seed) |
    """
    chosen: dict[tuple[str, str], dict[tuple[float, int], int]] = {}
    targets: list[str] = []
    for row in rows:
        if row["method"].startswith("clip_"):
            continue
        target = str(row["target"])
        if target not in targets:
            targets.append(target)
        label = method_label(row["method"], row.get("tuning"))
        setting = (float(row["lam"]), int(row["n_components"]))
        counts = chosen.setdefault((label, target), {})
        counts[setting] = counts.get(setting, 0) + 1
    if not chosen:
        return ""
    lines = [] if title is None else [title, ""]
    lines.append("| Method | " + " | ".join(targets) + " |")
    lines.append("|" + "---|" * (len(targets) + 1))
    for label in dict.fromkeys(label for label, _ in chosen):
        cells = []
        for target in targets:
            counts = chosen.get((label, target), {})
            parts = [
                f"{lam:g} / {k}"
                + ("" if len(counts) == 1 else f" ({n} seed{'s' if n > 1 else ''})")
                for (lam, k), n in sorted(counts.items(), key=lambda item: -item[1])
            ]
            cells.append(", ".join(parts) or "n/a")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
