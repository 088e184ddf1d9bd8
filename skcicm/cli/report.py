"""``skcicm report``: re-render a run folder's tables and plots from its results files.

Nothing is refitted or encoded: the Markdown table comes from ``results.csv`` (or
``results.jsonl``) and the plots from ``sweep.csv`` (or ``.jsonl``) with the selected values
marked from the results, as CLIP_benchmark's ``build`` re-renders its tables. ``skcicm
evaluate`` writes its own table and plots with :func:`render_run` too, so that both give the
same text.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS_FORMATS = ("csv", "jsonl")
#: Columns the plots read from every sweep row.
SWEEP_COLUMNS = ("target", "method", "lam", "n_components", "accuracy")


def render_run(
    results: Sequence[dict[str, Any]],
    sweep: Sequence[dict[str, Any]],
    run_dir: Path,
    *,
    title: str,
    protocol: str,
    plots: bool = True,
) -> tuple[str, list[Path]]:
    """Write ``table.md`` (and the plots) of a run into ``run_dir``; return text and files.

    A shortcut run also gets ``table_full.md``, with every head and tuning rule.

    Parameters
    ----------
    results, sweep : sequence of dict
        The rows of the run's results and sweep files.
    run_dir : pathlib.Path
        The run folder.
    title : str
        Title of the tables and plots.
    protocol : str
        The protocol of the run, as the CLI names it (``"domain-shift"``, ``"open-class"``,
        ``"imagenet"``, ``"shortcut"``).
    plots : bool, default=True
        Draw the plots too.

    Returns
    -------
    table_text : str
        The Markdown written to ``table.md``.
    files : list of pathlib.Path
        ``table.md``, ``table_full.md`` (shortcut) and the plots written.
    """
    plot_dir = run_dir / "plots" if plots else None
    if protocol == "shortcut":
        tables, files = _shortcut_tables(results, title, plot_dir, run_dir)
    else:
        tables = _protocol_tables(results, protocol, title)
        files = []
        if plot_dir is not None:
            from skcicm.evaluation.plots import plot_protocol

            files = plot_protocol(sweep, results, plot_dir, title=title)
    table_text = "\n\n".join(tables)
    (run_dir / "table.md").write_text(table_text + "\n")
    return table_text, [run_dir / "table.md", *files]


def _protocol_tables(results: Sequence[dict[str, Any]], protocol: str, title: str) -> list[str]:
    from skcicm.evaluation.reporting import chosen_settings_table, markdown_table
    from skcicm.evaluation.takeaways import domain_shift_takeaway

    open_class = protocol == "open-class"
    headline = "harmonic mean of base and novel accuracy" if open_class else "accuracy"
    tables = [markdown_table(results, title=f"### {title}: {headline} (%)")]
    if open_class:
        for value in ("base_accuracy", "novel_accuracy"):
            tables.append(
                markdown_table(results, value, title=f"### {value.replace('_', ' ')} (%)")
            )
    elif protocol == "domain-shift" and _has_both_probes(results):
        tables[-1] += "\n\n" + domain_shift_takeaway(results)
    chosen = chosen_settings_table(results, title="### lam / K chosen by tuning")
    if chosen:
        tables.append(chosen)
    return tables


def _has_both_probes(results: Sequence[dict[str, Any]]) -> bool:
    return {"clip_linear_probe", "icm_linear_probe"} <= {row["method"] for row in results}


def _shortcut_tables(
    results: Sequence[dict[str, Any]], title: str, plot_dir: Path | None, run_dir: Path
) -> tuple[list[str], list[Path]]:
    """Per rho, the short table (at most 8 rows) with its take-away line, and every head and
    rule in ``table_full.md``; accuracy-vs-rho plots for a sweep."""
    from skcicm.evaluation.plots import plot_accuracy_vs_rho
    from skcicm.evaluation.shortcut_tables import shortcut_summary_table, shortcut_table
    from skcicm.evaluation.takeaways import shortcut_takeaway
    from skcicm.model_selection import InterventionalScorer

    target = str(results[0]["target"])
    rhos = list(dict.fromkeys(row["rho"] for row in results))
    tables, full = [], []
    for rho in rhos:
        rows = [row for row in results if row["rho"] == rho]
        table = shortcut_summary_table(
            rows,
            scorer=repr(InterventionalScorer()),
            title=f"### {title}: average and worst-group accuracy (%)",
        )
        if _has_both_probes(rows):
            table += "\n\n" + shortcut_takeaway(rows, target)
        tables.append(table)
        heading = f"### {title}: every head and rule, average and worst-group accuracy (%)"
        full.append(shortcut_table(rows, title=heading))
    (run_dir / "table_full.md").write_text("\n\n".join(full) + "\n")
    files = [run_dir / "table_full.md"]
    if plot_dir is not None and len(rhos) > 1:
        methods = {row["method"] for row in results}
        head = "linear_probe" if "icm_linear_probe" in methods else "zero_shot"
        for value in ("accuracy", "worst_group"):
            for rule in dict.fromkeys(r["tuning"] for r in results if r["tuning"] != "none"):
                files.append(
                    plot_accuracy_vs_rho(
                        results,
                        plot_dir / f"{value}_vs_rho_{rule}.png",
                        method=head,
                        tuning=rule,
                        value=value,
                    )
                )
    return tables, files


def run_report(args: argparse.Namespace) -> int:
    """Run ``skcicm report`` with parsed ``args``; return the exit status (raises ValueError)."""
    from skcicm.evaluation.reporting import check_results, read_rows

    run_dir = Path(args.results_dir)
    if not run_dir.is_dir():
        raise ValueError(f"RESULTS_DIR {str(run_dir)!r} is not a folder.")
    results_path = _rows_file(run_dir, "results")
    if results_path is None:
        raise ValueError(
            f"{run_dir} holds no results.csv or results.jsonl; give the folder that "
            "'skcicm evaluate' wrote (<output-dir>/<dataset>-<protocol>/)."
        )
    results = _with_string_names(read_rows(results_path))
    if not results:
        raise ValueError(f"{results_path} holds no results rows.")
    protocol, model, settings = _protocol_and_model(run_dir, results)
    check_results(results, results_path, settings)
    sweep_path = _rows_file(run_dir, "sweep")
    sweep = _with_string_names(read_rows(sweep_path)) if sweep_path else []
    if sweep and protocol != "shortcut":
        missing = [c for c in SWEEP_COLUMNS if any(c not in row for row in sweep)]
        if missing:
            raise ValueError(f"{sweep_path} lacks the column(s) {missing} that sweep rows need.")
    title = f"{results[0]['dataset']}, {protocol}, {model}"
    for name in ("table.md", "table_full.md"):
        (run_dir / name).unlink(missing_ok=True)
    for plot in (run_dir / "plots").glob("*.png"):
        plot.unlink()
    table_text, files = render_run(
        results,
        sweep,
        run_dir,
        title=title,
        protocol=protocol,
        plots=not args.no_plots,
    )
    print(table_text)
    if args.full and (run_dir / "table_full.md").is_file():
        print("\n" + (run_dir / "table_full.md").read_text().rstrip())
    sources = ", ".join(path.name for path in (results_path, sweep_path) if path)
    written = ", ".join(str(path.relative_to(run_dir)) for path in files)
    print(f"\nRe-rendered from {sources} in {run_dir}/: {written}")
    return 0


def _rows_file(run_dir: Path, stem: str) -> Path | None:
    """``<stem>.csv`` or ``<stem>.jsonl`` in ``run_dir``; both at once is ambiguous."""
    found = [run_dir / f"{stem}.{suffix}" for suffix in RESULTS_FORMATS]
    found = [path for path in found if path.is_file()]
    if len(found) > 1:
        raise ValueError(
            f"{run_dir} holds both {found[0].name} and {found[1].name}; remove the stale one."
        )
    return found[0] if found else None


def _with_string_names(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # A domain named "2007" reads back as a number from CSV; evaluate's rows hold strings.
    for row in rows:
        for key in ("dataset", "target", "method"):
            if key in row:
                row[key] = str(row[key])
    return rows


def _protocol_and_model(
    run_dir: Path, results: Sequence[dict[str, Any]]
) -> tuple[str, str, dict[str, Any] | None]:
    """The protocol and model names of the run, and its settings: from ``run.json``, else the
    names from the rows and no settings."""
    record = run_dir / "run.json"
    if record.is_file():
        try:
            settings = json.loads(record.read_text(encoding="utf-8-sig"))["settings"]
            return str(settings["protocol"]), str(settings["model"]), settings
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"{record} is not the run.json that 'skcicm evaluate' writes ({error!r}); "
                "remove it to take the protocol and model from the results rows."
            ) from None
    first = results[0]
    return str(first.get("protocol", "?")).replace("_", "-"), str(first.get("model", "?")), None
