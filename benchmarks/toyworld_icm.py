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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import clone
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
from skcicm.interventions import expand_prompt_pairs, style_prompt_pairs
from skcicm.model_selection import lodo_grid_search
from skcicm.models import resolve_model_name
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
    params: dict[str, Any] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "params",
            {"selection": self.selection, "objective": self.objective, "lam_scale": self.lam_scale},
        )

    def ks(self, n_features: int) -> list[int]:
        return sorted({max(1, round(f * n_features)) for f in self.k_fractions})

    def has_no_icm(self) -> bool:
        """Whether the grid holds a candidate that is a rotation of CLIP's space."""
        return self.objective == "difference" and 1.0 in self.k_fractions


def default_variants() -> list[Variant]:
    """The variants of the full run: the paper's estimator first, then the alternatives."""
    return [
        Variant("largest", (0.0, 0.3, 1.0, 3.0), (0.25, 0.5, 0.75, 1.0)),
        Variant("largest, absolute lam", (0.0, 1.0, 10.0), (0.25, 0.5, 1.0), lam_scale="absolute"),
        Variant("smallest", (0.0, 1.0, 3.0), (0.5, 0.75, 1.0), selection="smallest"),
        Variant("ratio", (0.0,), (0.25, 0.5, 0.75, 1.0), objective="ratio"),
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
    embedding), ``text_template`` and ``prompt_names``.
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
            [np.flatnonzero((names != own) & (names != target))[: len(names) - 2] for own in
             embedded.domains]
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
    view: Bunch, train: np.ndarray, lam: float, k: int, params: dict[str, Any]
) -> InvariantCausalMechanism:
    """Fit only the subspace (the zero-shot head costs nothing), as domain_shift fits it."""
    kwargs: dict[str, Any] = {"class_embeddings": view.class_embeddings}
    if view.interventions is not None:
        kwargs["interventions"] = view.interventions[train]
    if view.intervention_pairs is not None:
        kwargs["intervention_pairs"] = view.intervention_pairs
    if view.domain_interventions:
        kwargs["domains"] = view.domains[train]
    estimator = InvariantCausalMechanism(n_components=k, lam=lam, head="zero_shot", **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoInterventionWarning)
        return estimator.fit(view.embeddings[train], view.labels[train], **kwargs)


def energy_fractions(components: np.ndarray, deltas: np.ndarray, class_means: np.ndarray):
    """Fraction of the Delta energy removed and of the class-mean energy kept by a subspace.

    The subspace is the row span of ``components`` (orthonormalised, since the ratio
    objective's rows are not orthonormal).
    """
    basis = np.linalg.qr(components.T)[0].T
    removed = 1.0 - np.sum((deltas @ basis.T) ** 2) / np.sum(deltas**2)
    kept = np.sum((class_means @ basis.T) ** 2) / np.sum(class_means**2)
    return float(removed), float(kept)


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


def _run_variant(
    view: Bunch,
    variant: Variant,
    seed: int,
    target: str,
    split: dict[str, np.ndarray],
    clip: dict[str, dict[str, float]],
    directions: tuple[np.ndarray, np.ndarray],
    base: dict[str, Any],
) -> tuple[list[dict], list[dict]]:
    """Source-chosen and oracle rows of one variant, and its sweep, for one split."""
    n_features = view.embeddings.shape[1]
    ks = variant.ks(n_features)
    result = domain_shift(
        view,
        targets=[target],
        methods=("icm_zero_shot", "icm_linear_probe"),
        lam=variant.lams,
        n_components=ks,
        tuning="source",
        seeds=[seed],
        estimator_params=variant.params,
        progress=False,
    )
    fits: dict[tuple[float, int], InvariantCausalMechanism] = {}

    def subspace(lam: float, k: int) -> InvariantCausalMechanism:
        if (lam, k) not in fits:
            fits[(lam, k)] = _fit_subspace(view, split["train"], lam, k, variant.params)
        return fits[(lam, k)]

    def measured(lam: float, k: int, *, no_icm: bool) -> dict[str, Any]:
        if no_icm:
            return {"variant_removed": 0.0, "class_kept": 1.0, "effective_lam": 0.0}
        estimator = subspace(lam, k)
        removed, kept = energy_fractions(estimator.components_, *directions)
        return {
            "variant_removed": removed,
            "class_kept": kept,
            "effective_lam": estimator.effective_lam_,
        }

    def is_rotation(k: int) -> bool:
        return variant.objective == "difference" and k == n_features

    rows, sweep = [], []
    for chosen in result.results:
        head = chosen["method"].removeprefix("icm_")
        candidates = [r for r in result.sweep if r["method"] == chosen["method"]]
        sweep.extend(
            {**base, "method": chosen["method"], "lam": r["lam"], "n_components": r["n_components"],
             "accuracy": r["accuracy"], "validation": r["validation"]}
            for r in candidates
        )
        by_key = {_row_key(r): r for r in candidates}
        source_pick = by_key[_row_key(chosen)]
        fallback = not variant.has_no_icm() and clip[head]["selection_score"] >= chosen[
            "selection_score"
        ]
        # The oracle takes the first best grid point on the target's "out" split, as
        # protocols' tuning="oracle" does; plain CLIP joins grids that cannot express it.
        oracle_pick = max(candidates, key=lambda r: r["validation"])
        oracle_is_clip = not variant.has_no_icm() and clip[head]["validation"] > oracle_pick[
            "validation"
        ]
        for tuning, pick, selection_score, to_clip in (
            (SOURCE_TUNING, source_pick, chosen["selection_score"], fallback),
            (ORACLE_TUNING, oracle_pick, oracle_pick["validation"], oracle_is_clip),
        ):
            lam, k = _row_key(pick)
            no_icm = to_clip or is_rotation(k)
            if to_clip:
                lam, k = 0.0, n_features
                accuracy, validation = clip[head]["accuracy"], clip[head]["validation"]
                if tuning == SOURCE_TUNING:
                    selection_score = clip[head]["selection_score"]
                else:
                    selection_score = validation
            else:
                accuracy, validation = pick["accuracy"], pick["validation"]
            rows.append(
                {
                    **base,
                    "method": chosen["method"],
                    "tuning": tuning,
                    "accuracy": accuracy,
                    "gain": accuracy - clip[head]["accuracy"],
                    "lam": lam,
                    "n_components": k,
                    "no_icm": no_icm,
                    "selection_score": selection_score,
                    "target_validation": validation,
                    "random_removed": 1.0 - k / n_features,
                    "n_train": chosen["n_train"],
                    "n_test": chosen["n_test"],
                    **measured(lam, k, no_icm=no_icm),
                }
            )
    reference = subspace(variant.lams[-1], ks[len(ks) // 2] if len(ks) > 1 else ks[0])
    ratios = trace_ratios(reference, view.embeddings[split["train"]])
    for row in rows:
        row.update(ratios)
    return rows, sweep


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
            n_features = embedded.embeddings.shape[1]
            for target in targets or embedded.domain_names:
                is_target = embedded.domains == target
                split = {
                    "train": np.flatnonzero(~is_target & ~holdout),
                    "test": np.flatnonzero(is_target & ~holdout),
                    "validation": np.flatnonzero(is_target & holdout),
                }
                clip = clip_baseline(embedded, split["train"], split["test"], split["validation"])
                base = {"seed": seed, "target": target}
                for head, scores in clip.items():
                    rows.append(
                        {
                            **base,
                            "source": "none",
                            "variant": "CLIP",
                            "method": f"clip_{head}",
                            "tuning": "none",
                            "accuracy": scores["accuracy"],
                            "gain": 0.0,
                            "lam": 0.0,
                            "n_components": n_features,
                            "no_icm": True,
                            "selection_score": scores["selection_score"],
                            "target_validation": scores["validation"],
                            "variant_removed": 0.0,
                            "class_kept": 1.0,
                            "random_removed": 0.0,
                            "n_train": int(split["train"].size),
                            "n_test": int(split["test"].size),
                        }
                    )
                directions = target_directions(embedded, target)
                for source in sources:
                    view = source_view(embedded, source, target)
                    views[(target, source)] = view
                    for variant in variants:
                        if source not in variant.sources:
                            continue
                        variant_base = {
                            **base,
                            "source": source,
                            "variant": variant.name,
                            **variant.params,
                        }
                        new_rows, new_sweep = _run_variant(
                            view, variant, seed, target, split, clip, directions, variant_base
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


def _mean_ci(values: Sequence[float], scale: float = 100.0) -> str:
    mean, half = mean_confidence_interval(values)
    if np.isnan(half):
        return f"{scale * mean:.1f}"
    return f"{scale * mean:.1f} ± {scale * half:.1f}"


def _per_seed_means(rows: list[dict], value: str) -> list[float]:
    """Per seed, the mean over targets of ``value``: the unit the intervals are over."""
    seeds = sorted({r["seed"] for r in rows})
    return [float(np.mean([r[value] for r in rows if r["seed"] == s])) for s in seeds]


def _selection_summary(rows: list[dict]) -> str:
    lines = [
        "| Variant | Source | Head | no-ICM chosen | chosen (lam, K): count |",
        "|---|---|---|---|---|",
    ]
    chosen = [r for r in rows if r["tuning"] == SOURCE_TUNING]
    keys = dict.fromkeys((r["variant"], r["source"], r["method"]) for r in chosen)
    for variant, source, method in keys:
        group = [
            r for r in chosen
            if (r["variant"], r["source"], r["method"]) == (variant, source, method)
        ]
        counts: dict[tuple[float, int], int] = {}
        for r in group:
            counts[(r["lam"], r["n_components"])] = counts.get((r["lam"], r["n_components"]), 0) + 1
        picks = ", ".join(
            f"({lam:g}, {k}): {n}" for (lam, k), n in sorted(counts.items(), key=lambda kv: -kv[1])
        )
        n_no_icm = sum(bool(r["no_icm"]) for r in group)
        lines.append(
            f"| {variant} | {source} | {HEADS[method.split('_', 1)[1]]} | "
            f"{n_no_icm}/{len(group)} | {picks} |"
        )
    return "\n".join(lines)


def _energy_summary(rows: list[dict]) -> str:
    lines = [
        "| Variant | Source | Head | Tuning | K (mean) | variant energy removed | "
        "random K-subspace removes | class-mean energy kept | "
        "tr(Σ_Δ)/tr(Σ_Z) | tr(Σ_Δ)/tr(Cov Z) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    icm = [r for r in rows if r["source"] != "none"]
    keys = dict.fromkeys((r["variant"], r["source"], r["method"], r["tuning"]) for r in icm)
    for variant, source, method, tuning in keys:
        group = [
            r for r in icm if (r["variant"], r["source"], r["method"], r["tuning"]) == (
                variant, source, method, tuning)
        ]
        cells = [
            f"{np.mean([r['n_components'] for r in group]):.0f}",
            *(
                _mean_ci(_per_seed_means(group, value))
                for value in ("variant_removed", "random_removed", "class_kept")
            ),
            *(
                f"{np.mean([r[value] for r in group]):.2f}"
                for value in ("trace_delta_over_second_moment", "trace_delta_over_cov")
            ),
        ]
        lines.append(
            f"| {variant} | {source} | {HEADS[method.split('_', 1)[1]]} | {tuning} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def _sweep_summary(sweep: list[dict], clip_rows: list[dict], variant: str) -> str:
    """Target accuracy minus plain CLIP, averaged over seeds and targets, per grid point."""
    clip = {(r["seed"], r["target"], r["method"].removeprefix("clip_")): r["accuracy"]
            for r in clip_rows}
    rows = [r for r in sweep if r["variant"] == variant]
    points = sorted({(r["lam"], r["n_components"]) for r in rows})
    header = "| Source | Head | " + " | ".join(f"λ={lam:g}, K={k}" for lam, k in points) + " |"
    lines = [header, "|---|---|" + "---|" * len(points)]
    for source in dict.fromkeys(r["source"] for r in rows):
        for method in ("icm_zero_shot", "icm_linear_probe"):
            head = method.removeprefix("icm_")
            cells = []
            for lam, k in points:
                group = [
                    r["accuracy"] - clip[(r["seed"], r["target"], head)]
                    for r in rows
                    if r["source"] == source and r["method"] == method
                    and (r["lam"], r["n_components"]) == (lam, k)
                ]
                cells.append(f"{100 * np.mean(group):+.1f}" if group else "")
            lines.append(f"| {source} | {HEADS[head]} | " + " | ".join(cells) + " |")
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
    """The Markdown report of a run: every table of docs/results.md, from the rows."""
    rows = result.results
    clip_rows = [r for r in rows if r["source"] == "none"]
    seeds = sorted({r["seed"] for r in rows})
    parts = [
        "# ToyWorld leave-one-domain-out benchmark of CLIP-ICM (ToyCLIP)",
        "",
        f"- command: `{meta['command']}`",
        f"- seeds: {seeds}; images per (class, domain): {meta['n_per_cell']}",
        f"- wall time: {result.seconds / 60:.1f} min on {meta['machine']}",
        f"- ToyCLIP weights: sha256 {meta['weights']['sha256']}, "
        f"modified {meta['weights']['mtime']}",
        "- cells: accuracy (%) on the target's 80% \"in\" split, mean ± 95% t-interval over "
        "seeds; Avg is the mean over targets, its interval over seeds. Gains are paired "
        "differences with plain CLIP of the same head, seed and target.",
        "",
    ]
    for variant in dict.fromkeys(r["variant"] for r in rows if r["source"] != "none"):
        example = next(r for r in rows if r["variant"] == variant)
        setting = (
            f"selection={example['selection']!r}, objective={example['objective']!r}, "
            f"lam_scale={example['lam_scale']!r}"
        )
        grid = sorted({(r["lam"], r["n_components"]) for r in result.sweep
                       if r["variant"] == variant})
        lams = sorted({lam for lam, _ in grid})
        ks = sorted({k for _, k in grid})
        parts += [
            f"## Variant: {variant} ({setting})",
            "",
            f"Grid: lam in {lams}, K in {ks}"
            + ("" if len(ks) and ks[-1] == clip_rows[0]["n_components"] and 0.0 in lams
               and example["objective"] == "difference"
               else "; plain CLIP is added as a candidate")
            + ".",
            "",
        ]
        for tuning in (SOURCE_TUNING, ORACLE_TUNING):
            selected = [r for r in rows if r["variant"] == variant and r["tuning"] == tuning]
            parts += [
                _table(clip_rows + selected, "accuracy", f"**Accuracy, {tuning}**"),
                "",
                _table(selected, "gain", f"**Gain over plain CLIP (points), {tuning}**"),
                "",
            ]
    parts += [
        "## How often source selection kept plain CLIP",
        "",
        "Count of (seed, target) splits; (lam, K) as given to the estimator.",
        "",
        _selection_summary(rows),
        "",
        "## Variant directions removed",
        "",
        "For the chosen subspace A: the fraction of the energy of exact counterfactual style "
        "Deltas of the target images (each target image re-rendered in every other style) "
        "that the projection removes, 1 - ||Δ Aᵀ||² / ||Δ||², against 1 - K/d for a random "
        "K-dimensional subspace, and the fraction of the target's between-class-mean energy "
        "it keeps (K/d for a random subspace). Mean ± 95% t-interval over seeds of the mean "
        "over targets. The trace ratios are measured on the source training data.",
        "",
        _energy_summary(rows),
        "",
    ]
    for variant in dict.fromkeys(r["variant"] for r in result.sweep):
        parts += [
            f"## Sensitivity, variant {variant}: target accuracy minus plain CLIP (points), "
            "mean over seeds and targets",
            "",
            _sweep_summary(result.sweep, clip_rows, variant),
            "",
        ]
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        description="Leave-one-domain-out benchmark of CLIP-ICM on ToyWorld with ToyCLIP.",
        epilog="Writes results.csv, sweep.csv and report.md to --output-dir.",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="ToyWorld sample / intervention / split seeds (default: 0 1 2)")
    parser.add_argument("--n-per-cell", type=int, default=None,
                        help="images per (class, domain) (default: 40, or 8 with --quick)")
    parser.add_argument("--targets", nargs="+", default=None,
                        help="target domains (default: every domain in turn)")
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=SOURCES,
                        help="intervention sources (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: one seed, 8 images per cell, two targets, small grids")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for encoding (default: 1; the machine is shared)")
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT_DIR,
                        help=f"where to write the results (default: {DEFAULT_OUTPUT_DIR})")
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
