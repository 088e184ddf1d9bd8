"""Leave-one-domain-out benchmark of CLIP-ICM on ToyWorld, with the shipped ToyCLIP.

For every seed and every target domain, each method is fitted on the five other (source)
domains and scored on the target, with DomainBed's 80/20 splits
(:func:`skcicm.evaluation.protocols.domain_shift`): fitted on the sources' 80% "in" parts,
scored on the target's "in" part. The methods are CLIP zero-shot and linear probe (plain
CLIP, no ICM) and CLIP-ICM zero-shot and linear probe with interventional data from one
source at a time:

``augment``
    the authors' image augmentations of the source images (one copy per image);
``text``
    prompt pairs that differ only in the style word, over the source style words;
``counterfactual``
    exact ToyWorld re-renderings of each source image in the other *source* styles;
``domain``
    class-conditional mean contrasts between the source domains.

``lam`` and ``n_components`` are chosen by leave-one-domain-out cross-validation inside the
source domains (``GridSearchCV`` with ``LeaveOneGroupOut``); every grid holds the no-ICM
setting (``lam=0``, ``K=d``), and grids that cannot express it (``objective="ratio"``) fall
back to plain CLIP when its cross-validation score is at least as good. The best grid point on
the target's 20% "out" part is reported separately, as "oracle (target-chosen)": it is an
upper bound, not a result.

Nothing of the target domain reaches a source-chosen model: the target's own intervened
copies are set to NaN (so that using them would fail), counterfactuals are rendered into
source styles only and text pairs use source style words only.

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.utils import Bunch
from threadpoolctl import threadpool_limits

from skcicm import CLIPFeaturizer, InvariantCausalMechanism
from skcicm.datasets.domainbed import domainbed_holdout_mask
from skcicm.datasets.toyworld import render_counterfactuals
from skcicm.estimator import DEFAULT_PROBE_C, NoInterventionWarning
from skcicm.evaluation.benchmarks import TOYWORLD_SEED, load_toyworld_benchmark
from skcicm.evaluation.protocols import domain_shift, embed_dataset
from skcicm.evaluation.reporting import markdown_table, mean_confidence_interval, write_rows
from skcicm.model_selection import lodo_grid_search
from skcicm.models import resolve_model_name
from skcicm.prompts import expand_prompt_pairs, style_prompt_pairs
from skcicm.subspace import unit_rows

SOURCES: tuple[str, ...] = ("augment", "text", "counterfactual", "domain")
HEADS: dict[str, str] = {"zero_shot": "zero-shot", "linear_probe": "linear probe"}
SOURCE_TUNING = "source LODO"
ORACLE_TUNING = "oracle (target-chosen)"
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
) -> Bunch:
    """Render one ToyWorld sample and encode it with every intervention source.

    Returns :func:`~skcicm.evaluation.protocols.embed_dataset`'s Bunch plus
    ``augmentations`` (n, 1, d), ``counterfactuals`` (n, n_domains, d) (column ``j``: the
    sample rendered in style ``domain_names[j]``; its own style's column is the clean
    embedding), ``text_template``, ``prompt_names`` and the seeded ``featurizer``.
    """
    dataset = load_toyworld_benchmark(
        n_per_cell, domains=domains, random_state=TOYWORLD_SEED + seed
    )
    featurizer = clone(featurizer).set_params(random_state=seed)
    embedded = embed_dataset(featurizer, dataset, interventions=("image",))
    embedded.augmentations = embedded.pop("interventions")
    n, d = embedded.embeddings.shape
    counterfactuals = np.empty((n, len(embedded.domain_names), d), dtype=np.float32)
    for j, style in enumerate(embedded.domain_names):
        own = embedded.domains == style
        counterfactuals[own, j] = embedded.embeddings[own]
        # Forcing the style leaves nothing to draw, so the twins do not depend on the seed.
        twins = render_counterfactuals(
            dataset, change="style", domain=style, random_state=seed, indices=np.flatnonzero(~own)
        )
        counterfactuals[~own, j] = featurizer.transform(twins)
    embedded.counterfactuals = counterfactuals
    embedded.text_template = dataset.text_template
    embedded.prompt_names = list(dataset.prompt_names)
    embedded.featurizer = featurizer
    return embedded


def source_view(embedded: Bunch, source: str, target: str) -> Bunch:
    """The data :func:`domain_shift` sees for one intervention source and target domain.

    Only source-domain information enters: rows of target samples are NaN, counterfactual
    styles and prompt style words exclude the target. ``intervention_styles`` records the
    styles each sample's intervened copies are rendered in (counterfactuals), and
    ``text_prompts`` the prompt pairs (text), for auditing.
    """
    view = Bunch(**embedded)
    view.interventions, view.intervention_pairs = None, None
    view.domain_interventions = source == "domain"
    view.intervention_styles, view.text_prompts = None, None
    is_target = embedded.domains == target
    source_styles = [s for s in embedded.domain_names if s != target]
    if source == "augment":
        view.interventions = embedded.augmentations.copy()
        view.interventions[is_target] = np.nan
    elif source == "counterfactual":
        names = np.asarray(embedded.domain_names)
        columns = np.array(
            [
                np.flatnonzero((names != own) & (names != target))[: len(names) - 2]
                for own in embedded.domains
            ]
        )
        view.interventions = np.take_along_axis(
            embedded.counterfactuals, columns[:, :, None], axis=1
        )
        view.interventions[is_target] = np.nan
        view.intervention_styles = names[columns].astype(object)
        view.intervention_styles[is_target] = ""
    elif source == "text":
        pairs = style_prompt_pairs(source_styles, template=embedded.text_template)
        view.text_prompts = expand_prompt_pairs(pairs, embedded.prompt_names)
        encode = embedded.featurizer.encode_text
        view.intervention_pairs = tuple(encode(side) for side in view.text_prompts)
    elif source != "domain":
        raise ValueError(f"Unknown intervention source {source!r}; choose from {SOURCES}.")
    return view


# Measurements --------------------------------------------------------------------------------


def _fit_subspace(
    view: Bunch, train: np.ndarray, lam: float, k: int | None, params: dict[str, Any]
) -> InvariantCausalMechanism:
    """Fit only the subspace (the zero-shot head costs nothing), as domain_shift fits it."""
    kwargs: dict[str, Any] = {"class_embeddings": view.class_embeddings}
    if view.get("interventions") is not None:
        kwargs["interventions"] = view.interventions[train]
    if view.get("intervention_pairs") is not None:
        kwargs["intervention_pairs"] = view.intervention_pairs
    if view.get("domain_interventions"):
        kwargs["domains"] = view.domains[train]
    estimator = InvariantCausalMechanism(n_components=k, lam=lam, head="zero_shot", **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoInterventionWarning)
        return estimator.fit(view.embeddings[train], view.labels[train], **kwargs)


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


def target_directions(embedded: Bunch, target: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact style Deltas of the target images (to every other style) and its class means."""
    is_target = embedded.domains == target
    own = embedded.domain_names.index(target)
    others = [j for j in range(len(embedded.domain_names)) if j != own]
    clean = embedded.embeddings[is_target].astype(np.float64)
    deltas = (clean[:, None] - embedded.counterfactuals[is_target][:, others]).reshape(
        -1, clean.shape[1]
    )
    labels = embedded.labels[is_target]
    means = np.stack([clean[labels == c].mean(axis=0) for c in np.unique(labels)])
    return deltas, means - means.mean(axis=0)


def clip_baseline(
    embedded: Bunch, train: np.ndarray, test: np.ndarray, validation: np.ndarray
) -> dict[str, dict[str, float]]:
    """Plain CLIP, without any projection, and its source-LODO score for the fallback.

    Zero-shot is the cosine between the embeddings and the class prompt embeddings; the probe
    is the estimator's default classifier on the raw embeddings.
    """
    Z, y = embedded.embeddings, embedded.labels
    text = unit_rows(embedded.class_embeddings.astype(np.float64))
    probe = LogisticRegression(C=DEFAULT_PROBE_C, max_iter=1000).fit(Z[train], y[train])
    predict = {
        "zero_shot": lambda index: (unit_rows(Z[index].astype(np.float64)) @ text.T).argmax(1),
        "linear_probe": lambda index: probe.predict(Z[index]),
    }
    n_features = Z.shape[1]
    out = {}
    for head, predictor in predict.items():
        # lam=0 and K=d is a rotation of CLIP's space: the no-ICM candidate of every grid.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoInterventionWarning)
            lodo = lodo_grid_search(
                Z[train],
                y[train],
                embedded.domains[train],
                lam=[0.0],
                n_components=[n_features],
                head=head,
                class_embeddings=embedded.class_embeddings if head == "zero_shot" else None,
            )
        out[head] = {
            "accuracy": float(np.mean(predictor(test) == y[test])),
            "validation": float(np.mean(predictor(validation) == y[validation])),
            "selection_score": lodo.best_score,
        }
    return out


def trace_ratios(estimator: InvariantCausalMechanism, Z_train: np.ndarray) -> dict[str, float]:
    """``tr(Sigma_Delta)`` relative to the second moment and to the covariance of Z."""
    trace_delta = float(np.trace(estimator.intervention_covariance_))
    Z = Z_train.astype(np.float64)
    return {
        "trace_delta_over_second_moment": trace_delta / float(np.sum(Z**2) / len(Z)),
        "trace_delta_over_cov": trace_delta / float(np.sum(Z.var(axis=0))),
    }


# The benchmark -------------------------------------------------------------------------------


def _row_key(row: dict[str, Any]) -> tuple[float, int]:
    return float(row["lam"]), int(row["n_components"])


@dataclass
class SplitContext:
    """What every variant of one (seed, target) split shares."""

    seed: int
    target: str
    split: dict[str, np.ndarray]
    clip: dict[str, dict[str, float]]
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


def _run_variant(
    view: Bunch, variant: Variant, context: SplitContext, base: dict[str, Any]
) -> tuple[list[dict], list[dict]]:
    """Source-chosen and oracle rows of one variant, and its sweep, for one split."""
    n_features = view.embeddings.shape[1]
    ks = variant.ks(n_features)
    train = context.split["train"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        result = domain_shift(
            view,
            targets=[context.target],
            methods=("icm_zero_shot", "icm_linear_probe"),
            lam=variant.lams,
            n_components=ks,
            tuning="source",
            seeds=[context.seed],
            estimator_params=variant.params,
            progress=False,
        )
    n_unconverged = 0
    for warning in caught:
        if issubclass(warning.category, ConvergenceWarning):
            n_unconverged += 1
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    fits: dict[tuple[float, int], InvariantCausalMechanism] = {}

    def subspace(lam: float, k: int) -> InvariantCausalMechanism:
        if (lam, k) not in fits:
            fits[(lam, k)] = _fit_subspace(view, train, lam, k, variant.params)
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

    rows, sweep = [], []
    for chosen in result.results:
        clip = context.clip[chosen["method"].removeprefix("icm_")]
        candidates = [r for r in result.sweep if r["method"] == chosen["method"]]
        for r in candidates:
            lam, k = _row_key(r)
            kind = _candidate_kind(variant, lam, k, n_features)
            sweep.append(
                {
                    **base,
                    "method": chosen["method"],
                    "lam": lam,
                    "n_components": k,
                    "kind": kind,
                    "accuracy": r["accuracy"],
                    "gain": r["accuracy"] - clip["accuracy"],
                    "validation": r["validation"],
                    **measured(lam, k, kind),
                }
            )
        source_pick = next(r for r in candidates if _row_key(r) == _row_key(chosen))
        # Grids that cannot express plain CLIP get it as one more candidate; ties go to it.
        source_is_clip = (
            not variant.has_no_icm() and clip["selection_score"] >= chosen["selection_score"]
        )
        # The oracle takes the first best grid point on the target's "out" split, as
        # protocols' tuning="oracle" does.
        oracle_pick = max(candidates, key=lambda r: r["validation"])
        oracle_is_clip = not variant.has_no_icm() and clip["validation"] > oracle_pick["validation"]
        for tuning, pick, selection_score, is_clip in (
            (SOURCE_TUNING, source_pick, chosen["selection_score"], source_is_clip),
            (ORACLE_TUNING, oracle_pick, oracle_pick["validation"], oracle_is_clip),
        ):
            if is_clip:
                lam, k, kind = 0.0, n_features, "clip"
                accuracy, validation = clip["accuracy"], clip["validation"]
                selection_score = clip["selection_score"] if tuning == SOURCE_TUNING else validation
            else:
                (lam, k), accuracy, validation = (
                    _row_key(pick),
                    pick["accuracy"],
                    pick["validation"],
                )
                kind = _candidate_kind(variant, lam, k, n_features)
            rows.append(
                {
                    **base,
                    "method": chosen["method"],
                    "tuning": tuning,
                    "accuracy": accuracy,
                    "gain": accuracy - clip["accuracy"],
                    "lam": lam,
                    "n_components": k,
                    "kind": kind,
                    "selection_score": selection_score,
                    "target_validation": validation,
                    "n_train": chosen["n_train"],
                    "n_test": chosen["n_test"],
                    "unconverged_probe_fits": n_unconverged,
                    **measured(lam, k, kind),
                }
            )
    # Sigma_Delta does not depend on the grid point: any fit gives the trace ratios.
    ratios = trace_ratios(subspace(variant.lams[-1], ks[0]), view.embeddings[train])
    for row in rows:
        row.update(ratios)
    return rows, sweep


def _split_context(embedded: Bunch, seed: int, target: str, holdout: np.ndarray) -> SplitContext:
    is_target = embedded.domains == target
    split = {
        "train": np.flatnonzero(~is_target & ~holdout),
        "test": np.flatnonzero(is_target & ~holdout),
        "validation": np.flatnonzero(is_target & holdout),
    }
    # lam=0 keeps the top principal directions of the uncentred source embeddings, largest
    # first: the reference for what dimension reduction alone removes.
    pca = _fit_subspace(embedded, split["train"], 0.0, None, {})
    return SplitContext(
        seed=seed,
        target=target,
        split=split,
        clip=clip_baseline(embedded, split["train"], split["test"], split["validation"]),
        **dict(zip(("deltas", "class_means"), target_directions(embedded, target), strict=True)),
        pca_components=pca.components_,
    )


def _clip_rows(embedded: Bunch, context: SplitContext) -> list[dict]:
    n_features = embedded.embeddings.shape[1]
    return [
        {
            "seed": context.seed,
            "target": context.target,
            "source": "none",
            "variant": "CLIP",
            "method": f"clip_{head}",
            "tuning": "none",
            "accuracy": scores["accuracy"],
            "gain": 0.0,
            "lam": 0.0,
            "n_components": n_features,
            "kind": "clip",
            "selection_score": scores["selection_score"],
            "target_validation": scores["validation"],
            "variant_removed": 0.0,
            "class_kept": 1.0,
            "style_to_class": 1.0,
            "random_removed": 0.0,
            "pca_removed": 0.0,
            "pca_class_kept": 1.0,
            "n_train": int(context.split["train"].size),
            "n_test": int(context.split["test"].size),
        }
        for head, scores in context.clip.items()
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
        point), ``views`` (the last seed's :func:`source_view` per (target, source), for
        auditing) and ``seconds``.
    """
    variants = list(default_variants() if variants is None else variants)
    featurizer = CLIPFeaturizer(
        MODEL, pretrained=None, n_interventions=n_interventions, progress=False, batch_size=256
    )
    start = time.perf_counter()
    rows: list[dict] = []
    sweep: list[dict] = []
    views: dict[tuple[str, str], Bunch] = {}
    # Every fit is small; threads inside each matrix product only contend on a shared machine.
    with threadpool_limits(limits=1, user_api="blas"):
        for seed in seeds:
            embedded = embed_world(featurizer, seed, n_per_cell, domains)
            holdout = domainbed_holdout_mask(
                embedded.domains, embedded.domain_names, trial_seed=seed
            )
            for target in targets or embedded.domain_names:
                context = _split_context(embedded, seed, target, holdout)
                rows.extend(_clip_rows(embedded, context))
                for source in sources:
                    view = source_view(embedded, source, target)
                    views[(target, source)] = view
                    for variant in variants:
                        if source in variant.sources:
                            base = {
                                "seed": seed,
                                "target": target,
                                "source": source,
                                "variant": variant.name,
                                **variant.params,
                            }
                            new_rows, new_sweep = _run_variant(view, variant, context, base)
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
