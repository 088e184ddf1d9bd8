"""Leave-one-domain-out benchmark of CLIP-ICM on ToyWorld, with the shipped ToyCLIP.

A thin script over the library's protocol: for every seed and target domain it runs
:func:`skcicm.evaluation.domain_shift` (DomainBed's 80/20 splits: fitted on the sources' 80%
"in" parts, scored on the target's "in" part) once per intervention source and estimator
variant, and adds what only this benchmark measures. The methods are CLIP zero-shot and linear
probe (plain CLIP, no ICM) and CLIP-ICM zero-shot and linear probe with interventional data
from one source at a time (:func:`skcicm.evaluation.embed_dataset`):

``augment``
    the authors' image augmentations of the source images (one copy per image);
``text``
    prompt pairs that differ only in the style word, over the source style words;
``counterfactual``
    exact ToyWorld re-renderings of each source image in the other *source* styles;
``domain``
    class-conditional mean contrasts between the source domains.

``lam`` and ``n_components`` are chosen by leave-one-domain-out cross-validation inside the
source domains (``tuning="source"``); every grid holds the no-ICM setting (``lam=0``,
``K=d``), and grids that cannot express it (``objective="ratio"``) get plain CLIP as one more
candidate (``baseline_candidate=True``), chosen when its cross-validation score is at least as
good. The best grid point on the target's 20% "out" part is reported separately
(``tuning="oracle"``), as "oracle (target-chosen)": it is an upper bound, not a result.

Nothing of the target domain reaches a source-chosen model
(:meth:`skcicm.evaluation.EmbeddedDataset.source_only`): the target's own intervened copies
are set to NaN (so that using them would fail), counterfactuals rendered in the target's
style are dropped and text pairs naming the target are dropped.

Besides accuracy, the run measures how much of the known variant directions the learned
subspace removes: the fraction of the energy of exact counterfactual style Deltas of the
*target* images that the projection removes, against a random subspace of the same dimension
and against the fraction of between-class-mean energy it keeps.

Usage::

    python benchmarks/toyworld_icm.py                 # the full run of docs/results.md
    python benchmarks/toyworld_icm.py --quick         # smoke run, about a minute
    python benchmarks/toyworld_icm.py --seeds 0 1 2 3 4 --n-per-cell 60

Writes ``results.csv`` (one row per seed x target x intervention source x variant x method x
tuning), ``sweep.csv`` (target accuracy of every grid point) and ``report.md`` to
``--output-dir``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import Bunch
from threadpoolctl import threadpool_limits

from skcicm import CLIPFeaturizer, InvariantCausalMechanism
from skcicm.datasets.registry import TOYWORLD_SEED, load_toyworld_dataset
from skcicm.evaluation import EmbeddedDataset, domain_shift, domain_shift_split, embed_dataset
from skcicm.evaluation.reporting import markdown_table, mean_confidence_interval, write_rows
from skcicm.evaluation.sweep import fit_method
from skcicm.featurizer import resolve_model_name
from skcicm.prompts import domain_prompt_pairs

SOURCES: tuple[str, ...] = ("augment", "text", "counterfactual", "domain")
# The library's name of each intervention source (skcicm.evaluation.embed_dataset).
LIBRARY_SOURCES: dict[str, str] = {
    "augment": "image",
    "text": "text",
    "counterfactual": "counterfactual",
    "domain": "domain",
}
HEADS: dict[str, str] = {"zero_shot": "zero-shot", "linear_probe": "linear probe"}
CLIP_METHODS = ("clip_zero_shot", "clip_linear_probe")
ICM_METHODS = ("icm_zero_shot", "icm_linear_probe")
SOURCE_TUNING = "source LODO"
ORACLE_TUNING = "oracle (target-chosen)"
# The report's names of the library's tuning labels.
TUNING_LABELS = {"source-lodo": SOURCE_TUNING, "target-oracle": ORACLE_TUNING}
MODEL = "toyclip"
DEFAULT_OUTPUT_DIR = Path("results/toyworld_icm")


@dataclass(frozen=True)
class Variant:
    """One estimator configuration and its grid.

    ``k_fractions`` are fractions of the embedding dimension ``d``, so the grid follows the
    model if its width changes.
    """

    name: str
    lams: tuple[float, ...]
    k_fractions: tuple[float, ...]
    selection: str = "largest"
    objective: str = "difference"
    lam_scale: str = "trace"
    sources: tuple[str, ...] = SOURCES

    @property
    def params(self) -> dict[str, str]:
        """The :class:`~skcicm.InvariantCausalMechanism` parameters of the variant."""
        return {
            "selection": self.selection,
            "objective": self.objective,
            "lam_scale": self.lam_scale,
        }

    def ks(self, n_features: int) -> list[int]:
        """The ``n_components`` grid for embeddings of dimension ``n_features``."""
        return sorted({max(1, round(f * n_features)) for f in self.k_fractions})

    def has_no_icm(self) -> bool:
        """Whether the grid holds a candidate that is a rotation of CLIP's space."""
        return self.objective == "difference" and 1.0 in self.k_fractions


def default_variants() -> list[Variant]:
    """The variants of the full run: the paper's estimator first, then the alternatives.

    The alternatives have smaller grids or fewer sources to fit the run in 25 minutes on two
    CPU cores; the ratio objective is the costliest (its whitened coordinates are large, so
    the probe takes hundreds of L-BFGS iterations).
    """
    return [
        Variant("largest", (0.0, 0.3, 1.0, 3.0), (0.25, 0.5, 0.75, 1.0)),
        Variant("smallest", (0.0, 1.0, 3.0), (0.5, 1.0), selection="smallest"),
        Variant(
            "largest, absolute lam",
            (0.0, 1.0, 10.0),
            (0.5, 1.0),
            lam_scale="absolute",
            sources=("augment", "counterfactual"),
        ),
        Variant(
            "ratio",
            (0.0,),
            (0.25, 0.5, 1.0),
            objective="ratio",
            sources=("augment", "counterfactual"),
        ),
    ]


def quick_variants() -> list[Variant]:
    """Small grids for the smoke run and the tests."""
    return [
        Variant("largest", (0.0, 1.0), (0.5, 1.0)),
        Variant("smallest", (0.0, 1.0), (0.5, 1.0), selection="smallest", sources=("text",)),
        Variant("ratio", (0.0,), (0.25, 0.5), objective="ratio", sources=("counterfactual",)),
    ]


# Data ---------------------------------------------------------------------------------------


def embed_world(
    featurizer: CLIPFeaturizer,
    seed: int,
    n_per_cell: int,
    domains: Sequence[str] | None = None,
    sources: Sequence[str] = SOURCES,
) -> dict[str, EmbeddedDataset]:
    """Render one ToyWorld sample and encode it once per intervention source.

    Returns :func:`~skcicm.evaluation.embed_dataset`'s data set for each of ``sources`` and
    for ``"counterfactual"`` (the energy measurements need the exact style Deltas). The clean
    images are encoded once: the featurizer's cache serves the other sources.
    """
    dataset = load_toyworld_dataset(n_per_cell, domains=domains, random_state=TOYWORLD_SEED + seed)
    featurizer = clone(featurizer).set_params(
        random_state=seed,
        text_interventions=domain_prompt_pairs(dataset.domain_names, dataset.text_template),
    )
    return {
        source: embed_dataset(featurizer, dataset, interventions=(LIBRARY_SOURCES[source],))
        for source in dict.fromkeys([*sources, "counterfactual"])
    }


# Measurements --------------------------------------------------------------------------------


def energy_fractions(
    components: np.ndarray, deltas: np.ndarray, class_means: np.ndarray
) -> tuple[float, float, float]:
    """How a subspace treats the variant (Delta) and the class-mean energy.

    Returns the fraction of the Delta energy the row span of ``components`` removes, the
    fraction of the class-mean energy it keeps (the span is orthonormalised first, since the
    ratio objective's rows are not orthonormal), and the ratio of Delta to class-mean energy
    after the map ``components`` itself relative to before: below 1 when the map suppresses
    style more than class, which also captures the rescaling of whitened coordinates.
    """
    basis = np.linalg.qr(components.T)[0].T
    removed = 1.0 - np.sum((deltas @ basis.T) ** 2) / np.sum(deltas**2)
    kept = np.sum((class_means @ basis.T) ** 2) / np.sum(class_means**2)
    mapped = np.sum((deltas @ components.T) ** 2) / np.sum((class_means @ components.T) ** 2)
    return float(removed), float(kept), float(mapped / (np.sum(deltas**2) / np.sum(class_means**2)))


def target_directions(embedded: EmbeddedDataset, target: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact style Deltas of the target images (to every other style) and its class means.

    ``embedded`` holds counterfactual interventions: each image in every other style.
    """
    is_target = embedded.domains == target
    clean = embedded.embeddings[is_target].astype(np.float64)
    deltas = (clean[:, None] - embedded.interventions[is_target]).reshape(-1, clean.shape[1])
    labels = embedded.labels[is_target]
    means = np.stack([clean[labels == c].mean(axis=0) for c in np.unique(labels)])
    return deltas, means - means.mean(axis=0)


def trace_ratios(estimator: InvariantCausalMechanism, Z_train: np.ndarray) -> dict[str, float]:
    """``tr(Sigma_Delta)`` relative to the second moment and to the covariance of Z."""
    trace_delta = float(np.trace(estimator.intervention_covariance_))
    Z = Z_train.astype(np.float64)
    return {
        "trace_delta_over_second_moment": trace_delta / float(np.sum(Z**2) / len(Z)),
        "trace_delta_over_cov": trace_delta / float(np.sum(Z.var(axis=0))),
    }


# The benchmark -------------------------------------------------------------------------------


@dataclass
class SplitContext:
    """What every variant of one (seed, target) split shares."""

    seed: int
    target: str
    train: np.ndarray
    clip: dict[str, float]
    deltas: np.ndarray
    class_means: np.ndarray
    pca_components: np.ndarray


def _candidate_kind(variant: Variant, lam: float, k: int, n_features: int) -> str:
    """``"clip"`` (a rotation of CLIP's space), ``"pca"`` (lam=0: no intervention) or ``"icm"``."""
    if variant.objective == "ratio":
        return "icm"
    if k == n_features:
        return "clip"
    return "pca" if lam == 0 else "icm"


def _counting_convergence_warnings(run: Callable[[], Bunch]) -> tuple[Bunch, int]:
    """Run ``run()``; count the probe fits that hit max_iter, re-raise other warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        result = run()
    n_unconverged = 0
    for warning in caught:
        if issubclass(warning.category, ConvergenceWarning):
            n_unconverged += 1
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return result, n_unconverged


def _run_variant(
    data: EmbeddedDataset, variant: Variant, context: SplitContext, base: dict[str, Any]
) -> tuple[list[dict], list[dict]]:
    """Source-chosen and oracle rows of one variant, and its sweep, for one split."""
    n_features = data.n_features
    ks = variant.ks(n_features)
    result, n_unconverged = _counting_convergence_warnings(
        lambda: domain_shift(
            data,
            targets=[context.target],
            methods=ICM_METHODS,
            lam=variant.lams,
            n_components=ks,
            tuning=("source", "oracle"),
            seeds=[context.seed],
            estimator_params=variant.params,
            progress=False,
            baseline_candidate=not variant.has_no_icm(),
        )
    )
    view = data.source_only(context.target)
    fits: dict[tuple[float, int], InvariantCausalMechanism] = {}

    def subspace(lam: float, k: int) -> InvariantCausalMechanism:
        # The zero-shot head costs nothing: the subspace is the same for both heads.
        if (lam, k) not in fits:
            fits[(lam, k)] = fit_method(
                "icm_zero_shot",
                view,
                context.train,
                lam=lam,
                n_components=k,
                estimator_params=variant.params,
            )
        return fits[(lam, k)]

    def measured(lam: float, k: int, kind: str) -> dict[str, Any]:
        directions = (context.deltas, context.class_means)
        pca_removed, pca_kept, _ = energy_fractions(context.pca_components[:k], *directions)
        if kind == "clip":
            removed, kept, style_to_class, effective_lam = 0.0, 1.0, 1.0, 0.0
        else:
            estimator = subspace(lam, k)
            removed, kept, style_to_class = energy_fractions(estimator.components_, *directions)
            effective_lam = estimator.effective_lam_
        return {
            "variant_removed": removed,
            "class_kept": kept,
            "style_to_class": style_to_class,
            "random_removed": 1.0 - k / n_features,
            "pca_removed": pca_removed,
            "pca_class_kept": pca_kept,
            "effective_lam": effective_lam,
        }

    def described(row: dict[str, Any], kind: str) -> dict[str, Any]:
        lam, k = float(row["lam"]), int(row["n_components"])
        return {
            **base,
            "method": row["method"],
            "lam": lam,
            "n_components": k,
            "kind": kind,
            "accuracy": row["accuracy"],
            "gain": row["accuracy"] - context.clip[row["method"]],
            "target_validation": row["validation"],
            **measured(lam, k, kind),
        }

    sweep = []
    for r in result.sweep:
        point = described(r, _candidate_kind(variant, r["lam"], r["n_components"], n_features))
        point["validation"] = point.pop("target_validation")
        sweep.append(point)
    rows = []
    for r in result.results:
        kind = (
            "clip"
            if r.get("plain_clip")
            else _candidate_kind(variant, r["lam"], r["n_components"], n_features)
        )
        rows.append(
            {
                **described(r, kind),
                "tuning": TUNING_LABELS[r["tuning"]],
                "selection_score": r["selection_score"],
                "n_train": r["n_train"],
                "n_test": r["n_test"],
                "unconverged_probe_fits": n_unconverged,
            }
        )
    # Sigma_Delta does not depend on the grid point: any fit gives the trace ratios.
    ratios = trace_ratios(subspace(variant.lams[-1], ks[0]), view.embeddings[context.train])
    for row in rows:
        row.update(ratios)
    return rows, sweep


def _split_context(
    embedded: dict[str, EmbeddedDataset], seed: int, target: str, clip: Bunch
) -> SplitContext:
    counterfactual = embedded["counterfactual"]
    train = domain_shift_split(counterfactual, target, seed)["train"]
    # Plain CLIP keeps every principal direction of the uncentred source embeddings, largest
    # first: the reference for what dimension reduction alone removes.
    pca = fit_method("clip_zero_shot", counterfactual, train)
    deltas, class_means = target_directions(counterfactual, target)
    accuracy = {
        r["method"].replace("clip_", "icm_"): r["accuracy"]
        for r in clip.results
        if r["target"] == target and r["seed"] == seed
    }
    return SplitContext(seed, target, train, accuracy, deltas, class_means, pca.components_)


def _clip_rows(clip: Bunch, target: str) -> list[dict]:
    return [
        {
            "seed": r["seed"],
            "target": target,
            "source": "none",
            "variant": "CLIP",
            "method": r["method"],
            "tuning": "none",
            "accuracy": r["accuracy"],
            "gain": 0.0,
            "lam": 0.0,
            "n_components": r["n_components"],
            "kind": "clip",
            "selection_score": r["selection_score"],
            "target_validation": r["validation"],
            "variant_removed": 0.0,
            "class_kept": 1.0,
            "style_to_class": 1.0,
            "random_removed": 0.0,
            "pca_removed": 0.0,
            "pca_class_kept": 1.0,
            "n_train": r["n_train"],
            "n_test": r["n_test"],
        }
        for r in clip.results
        if r["target"] == target
    ]


def run_benchmark(
    *,
    seeds: Sequence[int] = (0, 1, 2),
    n_per_cell: int = 40,
    targets: Sequence[str] | None = None,
    domains: Sequence[str] | None = None,
    variants: Sequence[Variant] | None = None,
    sources: Sequence[str] = SOURCES,
    n_interventions: int = 1,
    progress: bool = True,
) -> Bunch:
    """Run the leave-one-domain-out benchmark; return its rows.

    Parameters
    ----------
    seeds : sequence of int, default=(0, 1, 2)
        Each seed draws another ToyWorld sample (``random_state=2025 + seed``), other
        augmentations and other DomainBed splits.
    n_per_cell : int, default=40
        ToyWorld images per (class, domain).
    targets : sequence of str, default=None
        Target domains; None takes every domain in turn.
    domains : sequence of str, default=None
        Domains of the world; None means all six.
    variants : sequence of Variant, default=None
        Estimator configurations and grids; None means :func:`default_variants`.
    sources : sequence of str, default=SOURCES
        Intervention sources to run (each variant further restricts them).
    n_interventions : int, default=1
        Augmented copies per image for the ``augment`` source.
    progress : bool, default=True
        Print a line per (seed, target) to stderr.

    Returns
    -------
    result : Bunch
        ``results`` (tidy rows: one per seed x target x source x variant x method x tuning,
        plus plain CLIP with source ``"none"``), ``sweep`` (the target accuracy of every grid
        point), ``views`` (the last seed's source-only data,
        :meth:`~skcicm.evaluation.EmbeddedDataset.source_only`, per (target, source), for
        auditing) and ``seconds``.
    """
    variants = list(default_variants() if variants is None else variants)
    featurizer = CLIPFeaturizer(
        MODEL, pretrained=None, n_interventions=n_interventions, progress=False, batch_size=256
    )
    start = time.perf_counter()
    rows: list[dict] = []
    sweep: list[dict] = []
    views: dict[tuple[str, str], EmbeddedDataset] = {}
    # Every fit is small; threads inside each matrix product only contend on a shared machine.
    with threadpool_limits(limits=1, user_api="blas"):
        for seed in seeds:
            embedded = embed_world(featurizer, seed, n_per_cell, domains, sources)
            seed_targets = list(targets or embedded["counterfactual"].domain_names)
            clip = domain_shift(
                embedded["counterfactual"],
                targets=seed_targets,
                methods=CLIP_METHODS,
                seeds=[seed],
                progress=False,
            )
            for target in seed_targets:
                context = _split_context(embedded, seed, target, clip)
                rows.extend(_clip_rows(clip, target))
                for source in sources:
                    views[(target, source)] = embedded[source].source_only(target)
                    for variant in variants:
                        if source in variant.sources:
                            base = {
                                "seed": seed,
                                "target": target,
                                "source": source,
                                "variant": variant.name,
                                **variant.params,
                            }
                            new_rows, new_sweep = _run_variant(
                                embedded[source], variant, context, base
                            )
                            rows.extend(new_rows)
                            sweep.extend(new_sweep)
                if progress:
                    print(
                        f"seed {seed} target {target:9s} done at "
                        f"{time.perf_counter() - start:6.0f} s",
                        file=sys.stderr,
                        flush=True,
                    )
    return Bunch(results=rows, sweep=sweep, views=views, seconds=time.perf_counter() - start)


# Report --------------------------------------------------------------------------------------


def _label(row: dict[str, Any]) -> str:
    head = HEADS[row["method"].split("_", 1)[1]]
    if row["source"] == "none":
        return f"CLIP {head}"
    return f"ICM {head}, {row['source']}"


def _table(rows: list[dict], value: str, title: str) -> str:
    labelled = [{**r, "method": _label(r), "tuning": None, "accuracy": r[value]} for r in rows]
    return markdown_table(labelled, title=title)


def _mean_ci(values: Sequence[float], scale: float = 100.0, digits: int = 1) -> str:
    mean, half = mean_confidence_interval(values)
    # Adding 0.0 turns a rounded -0.0 into 0.0.
    mean = round(scale * mean, digits) + 0.0
    if np.isnan(half):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {scale * half:.{digits}f}"


def _per_seed_means(rows: list[dict], value: str) -> list[float]:
    """Per seed, the mean over targets of ``value``: the unit the intervals are over."""
    seeds = sorted({r["seed"] for r in rows})
    return [float(np.mean([r[value] for r in rows if r["seed"] == s])) for s in seeds]


def _groups(rows: list[dict], keys: Sequence[str]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    return groups


def _head(method: str) -> str:
    return HEADS[method.split("_", 1)[1]]


def _selection_summary(rows: list[dict]) -> str:
    lines = [
        "| Variant | Source | Head | plain CLIP (K=d) | PCA only (lam=0) | ICM | "
        "most chosen (lam, K) |",
        "|---|---|---|---|---|---|---|",
    ]
    chosen = [r for r in rows if r["tuning"] == SOURCE_TUNING]
    for (variant, source, method), group in _groups(
        chosen, ("variant", "source", "method")
    ).items():
        picks = _groups(group, ("lam", "n_components"))
        top = sorted(picks.items(), key=lambda item: -len(item[1]))[:3]
        kinds = [sum(r["kind"] == kind for r in group) for kind in ("clip", "pca", "icm")]
        lines.append(
            f"| {variant} | {source} | {_head(method)} | "
            + " | ".join(f"{n}/{len(group)}" for n in kinds)
            + " | "
            + ", ".join(f"({lam:g}, {k}): {len(g)}" for (lam, k), g in top)
            + " |"
        )
    return "\n".join(lines)


# Column, display scale and digits of the energy tables.
_ENERGY_COLUMNS = (
    ("variant_removed", 100.0, 1),
    ("pca_removed", 100.0, 1),
    ("random_removed", 100.0, 1),
    ("class_kept", 100.0, 1),
    ("pca_class_kept", 100.0, 1),
    ("style_to_class", 1.0, 2),
)
_ENERGY_HEADER = (
    "variant energy removed (%) | top-K PCA removes | random K-subspace removes | "
    "class-mean energy kept (%) | top-K PCA keeps | style:class energy vs CLIP"
)


def _energy_summary(rows: list[dict]) -> str:
    lines = [
        f"| Variant | Source | Head | Tuning | K (mean) | {_ENERGY_HEADER} |",
        "|---|---|---|---|---|" + "---|" * len(_ENERGY_COLUMNS),
    ]
    icm = [r for r in rows if r["source"] != "none"]
    for (variant, source, method, tuning), group in _groups(
        icm, ("variant", "source", "method", "tuning")
    ).items():
        cells = [f"{np.mean([r['n_components'] for r in group]):.0f}"] + [
            _mean_ci(_per_seed_means(group, value), scale, digits)
            for value, scale, digits in _ENERGY_COLUMNS
        ]
        lines.append(
            f"| {variant} | {source} | {_head(method)} | {tuning} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def _grid_energy_summary(sweep: list[dict], variant: str) -> str:
    """Energy removed and kept at every grid point of a variant (the subspace, not the head)."""
    rows = [
        r
        for r in sweep
        if r["variant"] == variant and r["method"] == "icm_zero_shot" and r["kind"] != "clip"
    ]
    lines = [
        f"| Source | lam | K | {_ENERGY_HEADER} |",
        "|---|---|---|" + "---|" * len(_ENERGY_COLUMNS),
    ]
    for (source, lam, k), group in _groups(rows, ("source", "lam", "n_components")).items():
        cells = [
            _mean_ci(_per_seed_means(group, value), scale, digits)
            for value, scale, digits in _ENERGY_COLUMNS
        ]
        lines.append(f"| {source} | {lam:g} | {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _trace_summary(rows: list[dict]) -> str:
    lines = [
        "| Source | tr(Σ_Δ)/tr(Σ_Z) | tr(Σ_Δ)/tr(Cov Z) |",
        "|---|---|---|",
    ]
    icm = [r for r in rows if r["source"] != "none" and r["variant"] == rows[-1]["variant"]]
    for (source,), group in _groups(icm, ("source",)).items():
        cells = []
        for value in ("trace_delta_over_second_moment", "trace_delta_over_cov"):
            values = [r[value] for r in group]
            cells.append(f"{np.mean(values):.2f} ({np.min(values):.2f} to {np.max(values):.2f})")
        lines.append(f"| {source} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _sweep_summary(sweep: list[dict], variant: str) -> str:
    """Target accuracy minus plain CLIP, averaged over seeds and targets, per grid point."""
    rows = [r for r in sweep if r["variant"] == variant]
    points = sorted({(r["lam"], r["n_components"]) for r in rows})
    header = "| Source | Head | " + " | ".join(f"λ={lam:g}, K={k}" for lam, k in points) + " |"
    lines = [header, "|---|---|" + "---|" * len(points)]
    for (source, method), group in _groups(rows, ("source", "method")).items():
        by_point = _groups(group, ("lam", "n_components"))
        cells = [
            _mean_ci(_per_seed_means(by_point[point], "gain")) if point in by_point else ""
            for point in points
        ]
        lines.append(f"| {source} | {_head(method)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def weights_state() -> dict[str, Any]:
    """Modification time and digest of the ToyCLIP weight files, to detect a swap mid-run."""
    folder = Path(resolve_model_name(MODEL, None)[0].removeprefix("local-dir:"))
    digest = hashlib.sha256()
    mtime = 0.0
    for path in sorted(folder.glob("*")):
        if path.is_file() and path.suffix in (".json", ".safetensors"):
            digest.update(path.read_bytes())
            mtime = max(mtime, path.stat().st_mtime)
    return {
        "folder": str(folder),
        "sha256": digest.hexdigest()[:16],
        "mtime": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(mtime)),
    }


def render_report(result: Bunch, meta: dict[str, Any]) -> str:
    """The Markdown report of a run, from its rows."""
    rows = result.results
    clip_rows = [r for r in rows if r["source"] == "none"]
    n_features = clip_rows[0]["n_components"]
    seeds = sorted({r["seed"] for r in rows})
    parts = [
        "# ToyWorld leave-one-domain-out benchmark of CLIP-ICM (ToyCLIP)",
        "",
        f"- command: `{meta['command']}`",
        f"- seeds: {seeds}; images per (class, domain): {meta['n_per_cell']}; "
        f"embedding dimension d = {n_features}",
        f"- wall time: {result.seconds / 60:.1f} min on {meta['machine']}",
        f"- ToyCLIP weights: sha256 {meta['weights']['sha256']}, "
        f"modified {meta['weights']['mtime']}",
        '- cells: accuracy (%) on the target\'s 80% "in" split, mean ± 95% t-interval over '
        "seeds; Avg is the mean over targets, its interval over seeds. Gains are paired "
        "differences (points) with plain CLIP of the same head, seed and target.",
        f'- {ORACLE_TUNING}: the grid point best on the target\'s 20% "out" split. It looks '
        "at the target, so it is an upper bound, not a result.",
        "",
    ]
    for variant, variant_rows in _groups(
        [r for r in rows if r["source"] != "none"], ("variant",)
    ).items():
        example = variant_rows[0]
        grid = {(r["lam"], r["n_components"]) for r in result.sweep if r["variant"] == variant[0]}
        lams, ks = sorted({lam for lam, _ in grid}), sorted({k for _, k in grid})
        expressible = example["objective"] == "difference" and 0.0 in lams and n_features in ks
        parts += [
            f"## Variant: {variant[0]}",
            "",
            f"selection={example['selection']!r}, objective={example['objective']!r}, "
            f"lam_scale={example['lam_scale']!r}; grid lam in {lams}, K in {ks}"
            + ("" if expressible else "; plain CLIP is added as a candidate")
            + ".",
            "",
        ]
        for tuning in (SOURCE_TUNING, ORACLE_TUNING):
            selected = [r for r in variant_rows if r["tuning"] == tuning]
            parts += [
                _table(clip_rows + selected, "accuracy", f"**Accuracy, {tuning}**"),
                "",
                _table(selected, "gain", f"**Gain over plain CLIP, {tuning}**"),
                "",
            ]
    n_unconverged = sum(
        max(r.get("unconverged_probe_fits", 0) for r in group)
        for group in _groups(
            [r for r in rows if r["source"] != "none"], ("seed", "target", "source", "variant")
        ).values()
    )
    parts += [
        "## What source selection chose",
        "",
        "Count of (seed, target) splits whose source-LODO choice was a rotation of CLIP's "
        "space (K = d), a principal subspace without intervention penalty (lam = 0), or an "
        "ICM subspace; (lam, K) as given to the estimator.",
        "",
        _selection_summary(rows),
        "",
        f"Probe fits that hit LogisticRegression's max_iter (all variants): {n_unconverged}.",
        "",
        "## Variant directions removed",
        "",
        "For a subspace A: the fraction of the energy of exact counterfactual style Deltas of "
        "the target images (each target image re-rendered in every other style) that the "
        "projection removes, 1 - ||Δ Aᵀ||² / ||Δ||²; the same for the top-K principal "
        "subspace of the source embeddings (lam = 0) and for a random K-dimensional "
        "subspace (1 - K/d); the fraction of the target's between-class-mean energy kept; "
        "and the ratio of style to class-mean energy after the map A relative to plain CLIP "
        "(below 1: style suppressed more than class; for the ratio objective this also "
        "counts its rescaling, which the span-based fractions ignore). Mean ± 95% "
        "t-interval over seeds of the mean over targets.",
        "",
        "**Chosen subspaces**",
        "",
        _energy_summary(rows),
        "",
    ]
    for variant in dict.fromkeys(r["variant"] for r in result.sweep):
        parts += [
            f"**Every grid point below K = d, variant {variant}**",
            "",
            _grid_energy_summary(result.sweep, variant),
            "",
        ]
    parts += [
        "## Size of the Deltas",
        "",
        "tr(Σ_Δ) relative to the second moment (what lam_scale='trace' divides by) and to "
        "the covariance of the source embeddings; mean (min to max) over seeds and targets.",
        "",
        _trace_summary(rows),
        "",
    ]
    for variant in dict.fromkeys(r["variant"] for r in result.sweep):
        parts += [
            f"## Sensitivity, variant {variant}",
            "",
            "Target accuracy minus plain CLIP (points) at every grid point: mean ± 95% "
            "t-interval over seeds of the mean over targets.",
            "",
            _sweep_summary(result.sweep, variant),
            "",
        ]
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        description="Leave-one-domain-out benchmark of CLIP-ICM on ToyWorld with ToyCLIP.",
        epilog="Writes results.csv, sweep.csv and report.md to --output-dir.",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="ToyWorld sample / intervention / split seeds (default: 0 1 2)",
    )
    parser.add_argument(
        "--n-per-cell",
        type=int,
        default=None,
        help="images per (class, domain) (default: 40, or 8 with --quick)",
    )
    parser.add_argument(
        "--targets", nargs="+", default=None, help="target domains (default: every domain in turn)"
    )
    parser.add_argument(
        "--sources",
        nargs="+",
        default=list(SOURCES),
        choices=SOURCES,
        help="intervention sources (default: all)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: one seed, 8 images per cell, two targets, small grids",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for encoding (default: 1; the machine is shared)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_OUTPUT_DIR,
        help=f"where to write the results (default: {DEFAULT_OUTPUT_DIR})",
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    variants = quick_variants() if args.quick else default_variants()
    seeds = args.seeds[:1] if args.quick else args.seeds
    n_per_cell = args.n_per_cell or (8 if args.quick else 40)
    targets = args.targets or (["painting", "photo"] if args.quick else None)
    weights_before = weights_state()
    result = run_benchmark(
        seeds=seeds,
        n_per_cell=n_per_cell,
        targets=targets,
        variants=variants,
        sources=args.sources,
    )
    weights_after = weights_state()
    meta = {
        "command": " ".join(["python benchmarks/toyworld_icm.py", *(argv or sys.argv[1:])]),
        "n_per_cell": n_per_cell,
        "machine": f"{platform.machine()} {platform.processor() or ''} "
        f"({os.cpu_count()} CPU cores, torch threads {args.threads}, "
        f"load average {os.getloadavg()[0]:.1f} at the end)".replace("  ", " "),
        "weights": weights_after,
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    write_rows(result.results, args.output_dir / "results.csv")
    write_rows(result.sweep, args.output_dir / "sweep.csv")
    report = render_report(result, meta)
    (args.output_dir / "report.md").write_text(report + "\n")
    print(report)
    print(f"\nWall time: {result.seconds:.0f} s. Written to {args.output_dir}/.", file=sys.stderr)
    if weights_after != weights_before:
        print(
            "WARNING: the ToyCLIP weights changed during the run "
            f"({weights_before['sha256']} -> {weights_after['sha256']}); run it again.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
