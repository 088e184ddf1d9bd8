"""Sensitivity plots of CLIP-ICM's hyperparameters, saved as PNG.

The plots read the *sweep* of a protocol (the target score of every ``lam`` x
``n_components`` candidate, averaged over seeds) and mark the values the protocol selected.
Figures are drawn with matplotlib's object API and the Agg canvas, so no GUI backend is
needed and the caller's pyplot state is left alone.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from skcicm.evaluation.reporting import mean_confidence_interval, method_label

_CLIP_BASELINE = {"icm_zero_shot": "clip_zero_shot", "icm_linear_probe": "clip_linear_probe"}


def _grid_means(sweep: Sequence[dict[str, Any]], target: str, method: str):
    """Sorted lam and K values and the seed-mean accuracy matrix (lam x K) of one curve."""
    rows = [r for r in sweep if r["target"] == target and r["method"] == method]
    lams = sorted({float(r["lam"]) for r in rows})
    ks = sorted({int(r["n_components"]) for r in rows})
    sums = np.zeros((len(lams), len(ks)))
    counts = np.zeros_like(sums)
    for r in rows:
        i, j = lams.index(float(r["lam"])), ks.index(int(r["n_components"]))
        sums[i, j] += r["accuracy"]
        counts[i, j] += 1
    with np.errstate(invalid="ignore"):
        return lams, ks, sums / counts


def _grid_half_widths(sweep: Sequence[dict[str, Any]], target: str, method: str) -> np.ndarray:
    """Half-widths of the 95% t-intervals over seeds of :func:`_grid_means`' cells (NaN: 1 seed)."""
    lams, ks, _ = _grid_means(sweep, target, method)
    cells: dict[tuple[int, int], list[float]] = {}
    for r in sweep:
        if r["target"] == target and r["method"] == method:
            cell = (lams.index(float(r["lam"])), ks.index(int(r["n_components"])))
            cells.setdefault(cell, []).append(r["accuracy"])
    half_widths = np.full((len(lams), len(ks)), np.nan)
    for (i, j), values in cells.items():
        half_widths[i, j] = mean_confidence_interval(values)[1]
    return half_widths


def _clipped_to_percent(means: np.ndarray, half_widths: np.ndarray) -> np.ndarray:
    """Error bars in percent (2 x n: below, above) that stop at 0% and 100% accuracy."""
    half_widths = np.nan_to_num(half_widths)
    return 100 * np.stack([np.minimum(half_widths, means), np.minimum(half_widths, 1 - means)])


def _n_seeds(sweep: Sequence[dict[str, Any]]) -> int:
    return len({r["seed"] for r in sweep if "seed" in r})


def _selection_label(results: Sequence[dict[str, Any]]) -> str:
    """What the star and the box mark: the value each tuning rule chose most often over seeds."""
    rules = sorted({str(r["tuning"]) for r in results if r.get("tuning") not in (None, "none")})
    if not rules:
        return "best seed mean (no tuning in the results)"
    return f"selected by {' / '.join(rules)} tuning (most often over seeds)"


def _selected(results: Sequence[dict[str, Any]], target: str, method: str):
    """The (lam, K) selected most often over seeds, or None."""
    chosen = Counter(
        (float(r["lam"]), int(r["n_components"]))
        for r in results
        if r["target"] == target and r["method"] == method and r.get("tuning") != "none"
    )
    return chosen.most_common(1)[0][0] if chosen else None


def _baseline(results: Sequence[dict[str, Any]], target: str, method: str) -> float | None:
    values = [
        r["accuracy"]
        for r in results
        if r["target"] == target and r["method"] == _CLIP_BASELINE.get(method)
    ]
    return float(np.mean(values)) if values else None


def _figure(
    n_panels: int, width: float = 4.0, height: float = 3.2, *, sharey: bool = False
) -> tuple[Figure, list]:
    n_cols = min(n_panels, 4)
    n_rows = -(-n_panels // n_cols)
    # Room below the panels for the figure's one legend.
    figure = Figure(figsize=(width * n_cols, height * n_rows + 0.8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(n_rows, n_cols, squeeze=False, sharey=sharey).ravel()
    for extra in axes[n_panels:]:
        extra.set_visible(False)
    return figure, list(axes[:n_panels])


def _keys(sweep: Sequence[dict[str, Any]]) -> tuple[list[str], list[str]]:
    targets = list(dict.fromkeys(str(r["target"]) for r in sweep))
    methods = list(dict.fromkeys(str(r["method"]) for r in sweep))
    return targets, methods


def _scale_lam_axis(axis, lams: Sequence[float]) -> None:
    positive = [v for v in lams if v > 0]
    if len(positive) >= 2 and max(positive) / min(positive) >= 10:
        if len(positive) < len(lams):
            axis.set_xscale("symlog", linthresh=min(positive))
        else:
            axis.set_xscale("log")
    # The grid's own values as plain numbers (0, 0.1, 1), not powers of ten.
    axis.set_xticks(lams, [f"{v:g}" for v in lams])
    axis.minorticks_off()


def plot_accuracy_vs_param(
    sweep: Sequence[dict[str, Any]],
    results: Sequence[dict[str, Any]],
    path: str | os.PathLike,
    *,
    param: str = "lam",
    title: str | None = None,
) -> Path:
    """Target accuracy against ``lam`` (at the selected K) or K (at the selected ``lam``).

    One panel per target, one line per CLIP-ICM method: the mean over seeds, with error bars
    of the 95% t-interval over seeds. The dotted line of the same colour is the matching
    CLIP baseline; the star marks the selected value, and the fixed value of the other
    hyperparameter is written beside it. All panels share one y axis and the figure one
    legend, below the panels.

    Parameters
    ----------
    sweep, results : sequence of dict
        The ``sweep`` and ``results`` rows of a protocol.
    path : str or path-like
        PNG file to write.
    param : {"lam", "n_components"}, default="lam"
        The hyperparameter on the x axis.
    title : str, default=None
        Figure title.

    Returns
    -------
    path : pathlib.Path
        The PNG file written.

    Raises
    ------
    ValueError
        When ``param`` is not one of the two choices, or ``sweep`` is empty.
    """
    if param not in ("lam", "n_components"):
        raise ValueError(f"param must be 'lam' or 'n_components'; got {param!r}.")
    if not sweep:
        raise ValueError("The sweep is empty: no CLIP-ICM method was evaluated.")
    targets, methods = _keys(sweep)
    figure, axes = _figure(len(targets), sharey=True)
    legend: dict[str, Any] = {}
    for axis, target in zip(axes, targets, strict=True):
        for index, method in enumerate(methods):
            color = f"C{index}"
            lams, ks, means = _grid_means(sweep, target, method)
            if np.isnan(means).all():
                continue
            half_widths = _grid_half_widths(sweep, target, method)
            selected = _selected(results, target, method)
            best = np.unravel_index(np.nanargmax(means), means.shape)
            lam_sel, k_sel = selected if selected else (lams[best[0]], ks[best[1]])
            if param == "lam":
                x, at = lams, f"K={k_sel}"
                y, spread = means[:, ks.index(k_sel)], half_widths[:, ks.index(k_sel)]
                star = lams.index(lam_sel)
            else:
                x, at = ks, f"λ={lam_sel:g}"
                y, spread = means[lams.index(lam_sel), :], half_widths[lams.index(lam_sel), :]
                star = ks.index(k_sel)
            legend[method_label(method)] = axis.errorbar(
                x,
                100 * y,
                yerr=None if np.isnan(spread).all() else _clipped_to_percent(y, spread),
                marker="o",
                color=color,
                capsize=3,
            )
            axis.plot(x[star], 100 * y[star], marker="*", markersize=14, color=color)
            axis.annotate(
                at,
                (x[star], 100 * y[star]),
                # Two methods' labels apart; inside the panel at its right edge.
                xytext=(-6 if star == len(x) - 1 else 6, 6 if index % 2 == 0 else -14),
                ha="right" if star == len(x) - 1 else "left",
                textcoords="offset points",
                color=color,
                fontsize="small",
            )
            baseline = _baseline(results, target, method)
            if baseline is not None:
                label = method_label(_CLIP_BASELINE[method])
                legend[label] = axis.axhline(100 * baseline, linestyle=":", color=color)
        if param == "lam":
            _scale_lam_axis(axis, lams)
        else:
            axis.set_xticks(ks)
        axis.set_xlabel("λ (lam)" if param == "lam" else "K (n_components)")
        if axis.get_subplotspec().is_first_col():
            axis.set_ylabel("target accuracy (%)")
        axis.set_title(target)
    legend[_selection_label(results)] = Line2D(
        [], [], marker="*", markersize=14, linestyle="none", color="grey"
    )
    n_seeds = _n_seeds(sweep)
    other = "K" if param == "lam" else "λ"
    figure.legend(
        legend.values(),
        legend.keys(),
        loc="outside lower center",
        ncols=min(len(legend), 3),
        fontsize="small",
        title=f"mean over {n_seeds} seed(s)"
        + (", bars: 95% t-interval (within 0-100%)" if n_seeds > 1 else "")
        + f"; {other} fixed at its selected value (beside the star); y axis shared",
        title_fontsize="small",
    )
    if title:
        figure.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def plot_heatmap(
    sweep: Sequence[dict[str, Any]],
    results: Sequence[dict[str, Any]],
    target: str,
    path: str | os.PathLike,
    *,
    title: str | None = None,
) -> Path:
    """Heatmap of the target accuracy over the lam x K grid, one panel per CLIP-ICM method.

    Each cell is the mean over seeds; all panels share one colour scale (one colour bar), and
    the outlined cell is the selected (lam, K), as the legend below the panels says.

    Parameters
    ----------
    sweep, results : sequence of dict
        The ``sweep`` and ``results`` rows of a protocol.
    target : str
        The target domain whose accuracies are shown.
    path : str or path-like
        PNG file to write.
    title : str, default=None
        Figure title; None uses ``target``.

    Returns
    -------
    path : pathlib.Path
        The PNG file written.

    Raises
    ------
    ValueError
        When ``sweep`` has no rows for ``target``.
    """
    _, methods = _keys(sweep)
    methods = [m for m in methods if any(r["target"] == target and r["method"] == m for r in sweep)]
    if not methods:
        raise ValueError(f"The sweep has no rows for target {target!r}.")
    figure, axes = _figure(len(methods), width=4.5, height=3.8)
    grids = [_grid_means(sweep, target, method) for method in methods]
    low = min(float(np.nanmin(means)) for _, _, means in grids)
    high = max(float(np.nanmax(means)) for _, _, means in grids)
    # Dark text on the bright (high) end of viridis, light text on the dark end.
    middle = (low + high) / 2
    for axis, method, (lams, ks, means) in zip(axes, methods, grids, strict=True):
        image = axis.imshow(
            100 * means,
            cmap="viridis",
            aspect="auto",
            origin="lower",
            vmin=100 * low,
            vmax=100 * high,
        )
        axis.set_xticks(range(len(ks)), [str(k) for k in ks])
        axis.set_yticks(range(len(lams)), [f"{v:g}" for v in lams])
        axis.set_xlabel("K (n_components)")
        axis.set_ylabel("λ (lam)")
        axis.set_title(method_label(method))
        for i in range(len(lams)):
            for j in range(len(ks)):
                axis.text(
                    j,
                    i,
                    f"{100 * means[i, j]:.1f}",
                    ha="center",
                    va="center",
                    color="black" if means[i, j] > middle else "white",
                    fontsize="small",
                )
        selected = _selected(results, target, method)
        if selected:
            i, j = lams.index(selected[0]), ks.index(selected[1])
            axis.add_patch(_outline(j, i))
    figure.colorbar(image, ax=axes, label="target accuracy (%), mean over seeds")
    box = Patch(fill=False, edgecolor="red", linewidth=2.5)
    figure.legend(
        [box],
        [f"{_selection_label(results)}; colour scale shared by the panels"],
        loc="outside lower center",
        fontsize="small",
    )
    figure.suptitle(title or target)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def _outline(x: float, y: float):
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5)


def safe_filename(name: str) -> str:
    """A file-name-safe version of a target name.

    Examples
    --------
    >>> safe_filename("Real World")
    'Real_World'
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "target"


def plot_protocol(
    sweep: Sequence[dict[str, Any]],
    results: Sequence[dict[str, Any]],
    directory: str | os.PathLike,
    *,
    title: str | None = None,
) -> list[Path]:
    """Write all plots of a protocol run into ``directory``.

    Files: ``accuracy_vs_lam.png``, ``accuracy_vs_n_components.png`` and
    ``heatmap_<target>.png`` for each target. Nothing is written for an empty sweep.

    Parameters
    ----------
    sweep, results : sequence of dict
        The ``sweep`` and ``results`` rows of a protocol.
    directory : str or path-like
        Folder to write the PNG files into; created when missing.
    title : str, default=None
        Title of the accuracy plots.

    Returns
    -------
    paths : list of pathlib.Path
        The files written, empty for an empty sweep.
    """
    if not sweep:
        return []
    directory = Path(directory)
    paths = [
        plot_accuracy_vs_param(
            sweep, results, directory / "accuracy_vs_lam.png", param="lam", title=title
        ),
        plot_accuracy_vs_param(
            sweep,
            results,
            directory / "accuracy_vs_n_components.png",
            param="n_components",
            title=title,
        ),
    ]
    targets, _ = _keys(sweep)
    paths.extend(
        plot_heatmap(
            sweep,
            results,
            target,
            directory / f"heatmap_{safe_filename(target)}.png",
            title=f"{title}: target {target}" if title else None,
        )
        for target in targets
    )
    return paths


def plot_accuracy_vs_rho(
    results: Sequence[dict[str, Any]],
    path: str | os.PathLike,
    *,
    method: str = "linear_probe",
    tuning: str = "source-lodo",
    value: str = "accuracy",
    title: str | None = None,
) -> Path:
    """Shortcut protocol: target ``value`` against the shortcut strength ``rho``.

    One panel per target; one line for CLIP and one per intervention source of CLIP-ICM (the
    ``tuning`` rule's choice), with error bars of the 95% t-interval over seeds. One legend per
    figure and a shared y axis; each curve is shifted a little along rho so that curves that
    coincide stay visible.

    Parameters
    ----------
    results : sequence of dict
        Results rows of :func:`~skcicm.evaluation.shortcut`.
    path : path-like
        PNG file to write.
    method : {"linear_probe", "zero_shot"}, default="linear_probe"
        The head compared.
    tuning : str, default="source-lodo"
        The rule whose CLIP-ICM choices are drawn (``"target-oracle"`` is labelled as such).
    value : {"accuracy", "worst_group"}, default="accuracy"
        Average accuracy, or the accuracy of the worst (class, shortcut value) group.
    title : str, default=None
        Figure title; None names the head and the tuning rule.

    Returns
    -------
    path : pathlib.Path
        The PNG file written.
    """
    from skcicm.evaluation.reporting import mean_confidence_interval

    targets = list(dict.fromkeys(str(r["target"]) for r in results))
    curves = {"CLIP": lambda r: r["method"] == f"clip_{method}"}
    for source in dict.fromkeys(r["interventions"] for r in results):
        if source != "none":
            curves[f"CLIP-ICM [{source}]"] = lambda r, s=source: (
                r["method"] == f"icm_{method}" and r["interventions"] == s and r["tuning"] == tuning
            )
    figure, axes = _figure(len(targets), sharey=True)
    for axis, target in zip(axes, targets, strict=True):
        for offset, (label, keep) in enumerate(curves.items()):
            rows = [r for r in results if str(r["target"]) == target and keep(r)]
            rhos = sorted({float(r["rho"]) for r in rows})
            if not rhos:
                continue
            stats = [
                mean_confidence_interval(r[value] for r in rows if float(r["rho"]) == rho)
                for rho in rhos
            ]
            means, halves = (np.array(column) for column in zip(*stats, strict=True))
            # A small horizontal offset per curve keeps coinciding curves visible.
            axis.errorbar(
                np.array(rhos) + 0.004 * offset,
                100 * means,
                yerr=_clipped_to_percent(means, halves),
                marker="o",
                capsize=3,
                label=label,
                linestyle="--" if label == "CLIP" else "-",
            )
        axis.set_title(target)
        axis.set_xlabel("rho (shortcut strength in the sources)")
        axis.set_ylabel(f"{value.replace('_', ' ')} (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    rule = "target oracle" if tuning == "target-oracle" else tuning
    figure.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=min(len(labels), 3),
        title=f"mean of {_n_seeds(results)} seeds, 95% t-interval (cut at 0-100%); shared y axis",
    )
    figure.suptitle(title or f"{method.replace('_', ' ')}, CLIP-ICM tuned by {rule}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
