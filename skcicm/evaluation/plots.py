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

from skcicm.evaluation.reporting import method_label

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


def _figure(n_panels: int, width: float = 4.0, height: float = 3.2) -> tuple[Figure, list]:
    n_cols = min(n_panels, 4)
    n_rows = -(-n_panels // n_cols)
    figure = Figure(figsize=(width * n_cols, height * n_rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(n_rows, n_cols, squeeze=False).ravel()
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


def plot_accuracy_vs_param(
    sweep: Sequence[dict[str, Any]],
    results: Sequence[dict[str, Any]],
    path: str | os.PathLike,
    *,
    param: str = "lam",
    title: str | None = None,
) -> Path:
    """Target accuracy against ``lam`` (at the selected K) or K (at the selected ``lam``).

    One panel per target, one line per CLIP-ICM method; the dotted line of the same colour is
    the matching CLIP baseline and the star marks the selected value.

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
    path : Path
    """
    if param not in ("lam", "n_components"):
        raise ValueError(f"param must be 'lam' or 'n_components'; got {param!r}.")
    if not sweep:
        raise ValueError("The sweep is empty: no CLIP-ICM method was evaluated.")
    targets, methods = _keys(sweep)
    figure, axes = _figure(len(targets))
    for axis, target in zip(axes, targets, strict=True):
        for index, method in enumerate(methods):
            color = f"C{index}"
            lams, ks, means = _grid_means(sweep, target, method)
            selected = _selected(results, target, method)
            best = np.unravel_index(np.nanargmax(means), means.shape)
            lam_sel, k_sel = selected if selected else (lams[best[0]], ks[best[1]])
            if param == "lam":
                x, y, at = lams, means[:, ks.index(k_sel)], f"K={k_sel}"
                star = lams.index(lam_sel)
            else:
                x, y, at = ks, means[lams.index(lam_sel), :], f"λ={lam_sel:g}"
                star = ks.index(k_sel)
            axis.plot(x, 100 * y, marker="o", color=color, label=f"{method_label(method)} ({at})")
            axis.plot(x[star], 100 * y[star], marker="*", markersize=14, color=color)
            baseline = _baseline(results, target, method)
            if baseline is not None:
                axis.axhline(
                    100 * baseline,
                    linestyle=":",
                    color=color,
                    label=method_label(_CLIP_BASELINE[method]),
                )
        if param == "lam":
            _scale_lam_axis(axis, lams)
        else:
            axis.set_xticks(ks)
        axis.set_xlabel("λ (lam)" if param == "lam" else "K (n_components)")
        axis.set_ylabel("target accuracy (%)")
        axis.set_title(target)
        axis.legend(fontsize="small")
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

    The selected cell is outlined.
    """
    _, methods = _keys(sweep)
    methods = [m for m in methods if any(r["target"] == target and r["method"] == m for r in sweep)]
    if not methods:
        raise ValueError(f"The sweep has no rows for target {target!r}.")
    figure, axes = _figure(len(methods), width=4.5, height=3.8)
    for axis, method in zip(axes, methods, strict=True):
        lams, ks, means = _grid_means(sweep, target, method)
        image = axis.imshow(100 * means, cmap="viridis", aspect="auto", origin="lower")
        figure.colorbar(image, ax=axis, label="target accuracy (%)")
        axis.set_xticks(range(len(ks)), [str(k) for k in ks])
        axis.set_yticks(range(len(lams)), [f"{v:g}" for v in lams])
        axis.set_xlabel("K (n_components)")
        axis.set_ylabel("λ (lam)")
        axis.set_title(method_label(method))
        # Dark text on the bright (high) end of viridis, light text on the dark end.
        middle = np.nanmean([np.nanmin(means), np.nanmax(means)])
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

    Returns
    -------
    paths : list of Path
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
        plot_heatmap(sweep, results, target, directory / f"heatmap_{safe_filename(target)}.png")
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
    figure.

    Parameters
    ----------
    results : sequence of dict
        Results rows of :func:`~skcicm.evaluation.protocols.shortcut.shortcut`.
    path : path-like
        PNG file to write.
    method : {"linear_probe", "zero_shot"}, default="linear_probe"
        The head compared.
    tuning : str, default="source-lodo"
        The rule whose CLIP-ICM choices are drawn (``"target-oracle"`` is labelled as such).
    value : {"accuracy", "worst_group"}, default="accuracy"
    title : str, default=None

    Returns
    -------
    path : Path
    """
    from skcicm.evaluation.reporting import mean_confidence_interval

    targets = list(dict.fromkeys(str(r["target"]) for r in results))
    curves = {"CLIP": lambda r: r["method"] == f"clip_{method}"}
    for source in dict.fromkeys(r["interventions"] for r in results):
        if source != "none":
            curves[f"CLIP-ICM [{source}]"] = lambda r, s=source: (
                r["method"] == f"icm_{method}" and r["interventions"] == s and r["tuning"] == tuning
            )
    figure, axes = _figure(len(targets))
    for axis, target in zip(axes, targets, strict=True):
        for label, keep in curves.items():
            rows = [r for r in results if str(r["target"]) == target and keep(r)]
            rhos = sorted({float(r["rho"]) for r in rows})
            if not rhos:
                continue
            stats = [
                mean_confidence_interval(100 * r[value] for r in rows if float(r["rho"]) == rho)
                for rho in rhos
            ]
            means, halves = (np.array(column) for column in zip(*stats, strict=True))
            axis.errorbar(
                rhos,
                means,
                yerr=np.nan_to_num(halves),
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
    figure.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 3))
    figure.suptitle(title or f"{method.replace('_', ' ')}, CLIP-ICM tuned by {rule}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
