"""Shortcut protocol: sources where variant factors predict the class, targets where they do not.

The data come from :func:`~skcicm.datasets.make_toyworld_shortcut`: in the source styles a
fraction ``rho`` of every (style, class) cell carries its class's own colour / background /
texture / style, so a classifier trained on the sources can lean on that shortcut. Two targets
break the relation (``target_relation``: each class carries another class's value, or values
spread evenly): **the source styles** themselves and, unless the style is the shortcut, a
**held-out style** (``held_out``, e.g. painting). The default world is the one the shipped
ToyCLIP's probe takes: the style is the shortcut, so the only target is the source styles.

Per seed and ``rho`` a world is drawn and encoded once; splits follow DomainBed (each domain,
the targets included, split 80/20 per seed). Models are fitted on the sources' "in" parts and
scored on the targets' "in" parts by average and worst-group accuracy (groups: class x shortcut
value); the targets' "out" parts serve the oracle only. Plain CLIP is fitted once per world;
CLIP-ICM once per intervention source:

``"image"``
    the featurizer's augmented copies of the source images;
``"counterfactual"``
    exact re-renderings of each source image with its shortcut factors changed;
``"text"``
    prompt pairs that differ only in a shortcut word (:func:`~skcicm.prompts.attribute_prompt_pairs`
    over the colour and background names, style pairs over the source styles); pairs naming
    the held-out style stay out (:func:`~skcicm.prompts.pairs_without_words`);
``"domain"``
    class-conditional contrasts between the source styles.

The ``"interventional"`` tuning rule scores on the counterfactuals for that source and on the
augmented copies for the others, which have no per-sample copies. Nothing of a target reaches a
fit (:meth:`~skcicm.evaluation.EmbeddedDataset.source_only`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from itertools import count
from typing import Any

import numpy as np
from sklearn.utils import Bunch

from skcicm.datasets.domainbed import DOMAINBED_HOLDOUT_FRACTION
from skcicm.datasets.shortcut import SHORTCUT_RELATIONS, worst_group_accuracy
from skcicm.evaluation.embedded import EmbeddedDataset
from skcicm.evaluation.options import (
    DEFAULT_LAM,
    DEFAULT_RHO,
    DEFAULT_SELECTION_FOLDS,
    DEFAULT_SHORTCUT,
    INTERVENTION_SOURCES,
    METHODS,
    check_choice,
    is_baseline,
)
from skcicm.evaluation.preflight import embedding_dim
from skcicm.evaluation.sweep import (
    SweepSettings,
    accuracy,
    check_holdout_fraction,
    check_seeds,
    holdout_mask,
    new_result,
    progress_bar,
    run_split,
    single_threaded_blas,
)

SOURCE_STYLES_TARGET = "source styles"
# Copies per source image for the counterfactual source.
N_COUNTERFACTUALS = 2


def _worlds(
    seed: int,
    rho: float,
    n_per_cell: int,
    sources: Sequence[str] | None,
    held_out: str | None,
    shortcut: Sequence[str],
    relation: str,
) -> Bunch:
    """One world: the sources and the held-out-style target, plus the source-styles target.

    Both are drawn with the same ``random_state``, so that every class owns the same shortcut
    value in both; only the second world's target samples are used.
    """
    from skcicm.datasets.shortcut import make_toyworld_shortcut
    from skcicm.datasets.toyworld import TOYWORLD_DOMAINS

    # Named here, so that the source-styles target is drawn in these styles only.
    if sources is None:
        sources = [d for d in TOYWORLD_DOMAINS if d != held_out]
    common = {
        "domains": sources,
        "shortcut": shortcut,
        "rho": rho,
        "target": relation,
        "random_state": seed,
    }
    world = make_toyworld_shortcut(n_per_cell, target_domain=held_out, **common)
    if held_out is None:
        return Bunch(world=world, in_sources=world)
    in_sources = make_toyworld_shortcut(n_per_cell, target_domain=None, **common)
    if in_sources.shortcut_names != world.shortcut_names:
        raise RuntimeError("The two draws of one shortcut world disagree on the shortcut values.")
    return Bunch(world=world, in_sources=in_sources)


def check_shortcut_settings(
    rho: float | Iterable[float],
    shortcut_factors: Sequence[str],
    target_relation: str,
    held_out: str | None,
    sources: Sequence[str] | None = None,
    n_per_cell: int | None = None,
    interventions: Sequence[str] = (),
) -> list[float]:
    """Validate the world parameters before any encoding; return ``rho`` as a list.

    Draws a world of one image per cell, so that every error of
    :func:`~skcicm.datasets.make_toyworld_shortcut` (unknown factor or style, a style shortcut
    with a held-out style...) comes now. With ``n_per_cell`` and the ``"domain"`` source, also
    refuses a style shortcut whose cells round ``rho`` to 1: every class then stays in its own
    style, and there is no contrast between styles within a class.
    """
    rhos = [rho] if isinstance(rho, (int, float)) else [float(r) for r in rho]
    bad = [r for r in rhos if not 0.0 <= r <= 1.0]
    if not rhos or bad:
        raise ValueError(f"rho must be one or more numbers in [0, 1]; got {rhos}.")
    if target_relation not in SHORTCUT_RELATIONS:
        raise ValueError(
            f"target_relation must be one of {list(SHORTCUT_RELATIONS)}; got {target_relation!r}."
        )
    _worlds(0, rhos[0], 1, sources, held_out, shortcut_factors, target_relation)
    if "style" in shortcut_factors and "domain" in interventions and n_per_cell is not None:
        # The generator puts floor(rho * n + 1/2) images of each cell in the class's own style.
        whole = [r for r in rhos if np.floor(r * n_per_cell + 0.5) >= n_per_cell]
        if whole:
            fewest = (
                next(n for n in count(n_per_cell + 1) if np.floor(max(whole) * n + 0.5) < n)
                if max(whole) < 1
                else None
            )
            remedy = f"at least {fewest} images per cell, or " if fewest else ""
            raise ValueError(
                f"rho {whole} with {n_per_cell} images per cell puts every source image in its "
                "class's own style: no class is seen in two styles, so the 'domain' source has "
                f"no Deltas. Use {remedy}leave 'domain' out of the interventions."
            )
    return rhos


def shortcut_targets(held_out: str | None) -> list[str]:
    """The target names of the protocol: the held-out style (if any), then the source styles."""
    return ([] if held_out is None else [held_out]) + [SOURCE_STYLES_TARGET]


def _text_pairs(world: Bunch, held_out: str | None) -> list[tuple[str, str]]:
    from skcicm.datasets.toyworld import TOYWORLD_BACKGROUNDS, TOYWORLD_COLORS
    from skcicm.prompts import attribute_prompt_pairs, pairs_without_words, style_prompt_pairs

    pairs = []
    if "colors" in world.shortcut:
        pairs += attribute_prompt_pairs(list(TOYWORLD_COLORS), "a photo of a {attribute} {}.")
    if "background" in world.shortcut:
        pairs += attribute_prompt_pairs(
            list(TOYWORLD_BACKGROUNDS), "a photo of a {} on a {attribute} background."
        )
    if "style" in world.shortcut:
        pairs += style_prompt_pairs(list(world.domain_names))
    return pairs_without_words(pairs, [] if held_out is None else [held_out])


def embed_shortcut_world(
    featurizer: Any,
    worlds: Bunch,
    interventions: Sequence[str],
    *,
    held_out: str | None,
    validation_copies: bool = False,
    random_state: int = 0,
) -> tuple[dict[str, EmbeddedDataset], np.ndarray]:
    """Encode one world once; one :class:`EmbeddedDataset` per intervention source.

    Domains are the source styles, the held-out style and :data:`SOURCE_STYLES_TARGET` (the
    source-styles target). Intervened copies exist for the source samples only (NaN for the
    targets). With ``validation_copies``, the text and domain sources carry the augmented
    copies as ``validation_views`` for interventional tuning. Returns the data sets under
    ``"none"`` (plain CLIP) and each source name, and the group of every sample.
    """
    from skcicm.datasets.toyworld import render_counterfactuals
    from skcicm.prompts import expand_prompt_pairs

    world, extra = worlds.world, worlds.in_sources
    # Without a held-out style, the world's own target is the source-styles target.
    mine = np.flatnonzero(~world.is_target if held_out is None else np.ones_like(world.is_target))
    keep = np.flatnonzero(extra.is_target)
    images = np.concatenate([world.images[mine], extra.images[keep]])
    domains = np.concatenate(
        [
            np.asarray(world.domains)[mine].astype(object),
            np.full(keep.size, SOURCE_STYLES_TARGET, object),
        ]
    )
    labels = np.concatenate([world.labels[mine], extra.labels[keep]])
    groups = np.concatenate([world.groups[mine], extra.groups[keep]])
    # The sources come first in every world.
    source = np.flatnonzero(~world.is_target)
    base = EmbeddedDataset(
        embeddings=featurizer.transform(images),
        labels=labels,
        domains=domains,
        class_names=list(world.class_names),
        domain_names=[*world.domain_names, *shortcut_targets(held_out)],
        name="toyworld-shortcut",
        class_embeddings=featurizer.class_embeddings(list(world.class_names)),
    )

    def views(copies: np.ndarray) -> np.ndarray:
        full = np.full((base.n_samples, copies.shape[1], base.n_features), np.nan, np.float32)
        full[source] = copies
        return full

    augmented = None
    if "image" in interventions or (validation_copies and {"text", "domain"} & set(interventions)):
        augmented = views(featurizer.intervention_embeddings(world.images[source]))
    embedded = {"none": base}
    for name in interventions:
        if name == "image":
            embedded[name] = base.replace(interventions=augmented)
        elif name == "counterfactual":
            twins = [
                featurizer.transform(
                    render_counterfactuals(
                        world,
                        change=world.shortcut,
                        indices=source,
                        random_state=random_state * N_COUNTERFACTUALS + copy,
                    )
                )
                for copy in range(N_COUNTERFACTUALS)
            ]
            embedded[name] = base.replace(interventions=views(np.stack(twins, axis=1)))
        elif name == "text":
            pairs = _text_pairs(world, held_out)
            if not pairs:
                raise ValueError(
                    f"interventions 'text': the shortcut {list(world.shortcut)} has no words "
                    "to contrast (texture has none); use another source."
                )
            texts = expand_prompt_pairs(pairs, list(world.class_names))
            embedded[name] = base.replace(
                intervention_pairs=tuple(featurizer.encode_text(side) for side in texts),
                intervention_pair_texts=texts,
                validation_views=augmented,
            )
        else:
            embedded[name] = base.replace(domain_interventions=True, validation_views=augmented)
    return embedded, groups


def shortcut(
    featurizer: Any,
    *,
    rho: float | Iterable[float] = DEFAULT_RHO,
    shortcut_factors: Sequence[str] = DEFAULT_SHORTCUT,
    target_relation: str = "reassigned",
    held_out: str | None = None,
    sources: Sequence[str] | None = None,
    n_per_cell: int = 20,
    interventions: Sequence[str] = INTERVENTION_SOURCES,
    methods: Sequence[str] = tuple(METHODS),
    lam: float | Iterable[float] = DEFAULT_LAM,
    n_components: int | Iterable[int] | None = None,
    tuning: str | Sequence[str] = ("source", "interventional", "oracle"),
    seeds: int | Sequence[int] = (0, 1, 2),
    holdout_fraction: float = DOMAINBED_HOLDOUT_FRACTION,
    estimator_params: dict[str, Any] | None = None,
    n_jobs: int | None = None,
    progress: bool | str = "auto",
    interventional_rule: str | None = None,
    selection_folds: int | None = DEFAULT_SELECTION_FOLDS,
) -> Bunch:
    """Run the shortcut protocol (see the module docstring) for every seed and ``rho``.

    Parameters
    ----------
    featurizer : CLIPFeaturizer
        Encodes the images; it needs ``interventions`` set for the ``"image"`` source and for
        interventional tuning of ``"text"`` and ``"domain"``.
    rho : float or iterable of float, default=(0.9,)
        Shortcut strength(s) in the sources; each value is a world per seed.
    shortcut_factors : sequence of str, default=("style",)
        Factor groups that correlate with the class (``shortcut`` of
        :func:`~skcicm.datasets.make_toyworld_shortcut`).
    target_relation : {"reassigned", "uncorrelated"}, default="reassigned"
        Class-shortcut relation in the targets.
    held_out : str or None, default=None
        Style of the held-out-style target; None for the source-styles target only (required
        for a style shortcut).
    sources : sequence of str, default=None
        Source styles; None: every ToyWorld style but ``held_out``.
    n_per_cell : int, default=20
        Images per (style, class) cell, sources and targets alike.
    interventions : sequence of str, default=all of INTERVENTION_SOURCES
        CLIP-ICM is fitted once per source, each alone.
    methods, lam, n_components, tuning, holdout_fraction, estimator_params, n_jobs, progress, \
interventional_rule
        As in :func:`~skcicm.evaluation.domain_shift`; ``tuning`` defaults to every rule.
    selection_folds : int or None, default=DEFAULT_SELECTION_FOLDS (5)
        Source selection (``tuning`` "source" and "interventional") leaves out one of this
        many stratified folds of the source samples at a time; None leaves out one source
        style instead. With the style as the shortcut (the default), a held-out style holds
        nearly all images of one class, which the training folds then lack, so leaving a
        style out selects nothing.
    seeds : int or sequence of int, default=(0, 1, 2)
        Each seed draws another world and other splits.

    Returns
    -------
    result : Bunch
        As :func:`~skcicm.evaluation.domain_shift`; rows also hold ``rho``,
        ``interventions`` (``"none"`` for plain CLIP), ``worst_group`` and ``n_test``.
    """
    # Every option is checked before the first world is encoded; the grid against the
    # embedding dimension, which the featurizer gives without encoding an image.
    # Plain CLIP needs no interventional data: a control run may list no source.
    only_baselines = all(
        is_baseline(m) for m in ([methods] if isinstance(methods, str) else methods)
    )
    interventions = check_choice(
        interventions, INTERVENTION_SOURCES, "interventions", allow_empty=only_baselines
    )
    rhos = check_shortcut_settings(
        rho, shortcut_factors, target_relation, held_out, sources, n_per_cell, interventions
    )
    seeds = check_seeds(seeds)
    check_holdout_fraction(holdout_fraction)
    settings = SweepSettings.checked(
        methods,
        tuple(METHODS),
        lam,
        n_components,
        embedding_dim(featurizer),
        tuning,
        estimator_params=estimator_params,
        n_jobs=n_jobs,
        interventional_rule=interventional_rule,
        selection_folds=selection_folds,
    )
    validation_copies = "interventional" in settings.tuning
    needs_copies = "image" in interventions or (
        validation_copies and {"text", "domain"} & set(interventions)
    )
    if needs_copies and getattr(featurizer, "interventions", None) is None:
        raise ValueError(
            "The featurizer computes no augmented copies (interventions=None): the 'image' "
            "source, and interventional tuning of 'text' and 'domain', need them."
        )
    baselines = [m for m in settings.methods if is_baseline(m)]
    clip = dataclasses.replace(settings, methods=baselines)
    icm = dataclasses.replace(settings, methods=[m for m in settings.methods if m not in baselines])
    result = new_result("shortcut", "toyworld-shortcut")
    with (
        single_threaded_blas(),
        progress_bar(len(seeds) * len(rhos), "Shortcut", progress) as bar,
    ):
        for seed in seeds:
            for value in rhos:
                worlds = _worlds(
                    seed, value, n_per_cell, sources, held_out, shortcut_factors, target_relation
                )
                embedded, groups = embed_shortcut_world(
                    featurizer,
                    worlds,
                    interventions,
                    held_out=held_out,
                    validation_copies=validation_copies,
                    random_state=seed,
                )
                base = {"dataset": "toyworld-shortcut", "protocol": "shortcut", "seed": seed}
                split = _split(embedded["none"], shortcut_targets(held_out), seed, holdout_fraction)
                for name, data in embedded.items():
                    settings_of = clip if name == "none" else icm
                    if settings_of.methods:
                        _run_source(data, split, groups, settings_of, base, value, name, result)
                bar.update()
    return result


def _split(
    data: EmbeddedDataset, targets: list[str], seed: int, holdout_fraction: float
) -> dict[str, Any]:
    """Training samples (the sources' "in" parts) and each target's ("in", "out") parts."""
    holdout = holdout_mask(data, seed, holdout_fraction)
    in_target = {t: data.domains == t for t in targets}
    return {
        "train": np.flatnonzero(~np.isin(data.domains, targets) & ~holdout),
        "targets": {
            t: (np.flatnonzero(mask & ~holdout), np.flatnonzero(mask & holdout))
            for t, mask in in_target.items()
        },
    }


def _run_source(
    data: EmbeddedDataset,
    split: dict[str, Any],
    groups: np.ndarray,
    settings: SweepSettings,
    base: dict[str, Any],
    rho: float,
    source: str,
    result: Bunch,
) -> None:
    """Fit the methods of ``settings`` on one intervention source; score every target."""
    Z, y = data.embeddings, data.labels

    def score(estimator) -> dict[str, dict[str, Any]]:
        scores = {}
        for target, (test, validation) in split["targets"].items():
            predicted = estimator.predict(Z[test])
            scores[target] = {
                "accuracy": float(np.mean(predicted == y[test])),
                "worst_group": worst_group_accuracy(y[test], predicted, groups[test]),
                "validation": accuracy(estimator, Z[validation], y[validation]),
                "n_test": int(test.size),
            }
        return scores

    for target in split["targets"]:
        data = data.source_only(target)
    starts = {key: len(result[key]) for key in ("results", "sweep", "cv_results")}
    run_split(data, split["train"], score, settings, base=base, result=result)
    for key, start in starts.items():
        for row in result[key][start:]:
            row.update(rho=rho, interventions=source)
