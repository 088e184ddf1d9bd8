"""ImageNet variants: fit on ImageNet, score on ImageNet-V2, -Sketch, -R and -A.

Every method is fitted on the "in" split of the ImageNet source (per seed, as DomainBed splits
a domain) and scored on each whole variant. On the 200-class ImageNet-R and -A, predictions
are restricted to their classes. With one source domain there is no leave-one-domain-out:
``tuning="source"`` selects on the source's "out" split (``source-holdout``),
``tuning="oracle"`` on the variant itself (``target-oracle``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.utils import Bunch

from skcicm.datasets.domainbed import DOMAINBED_HOLDOUT_FRACTION
from skcicm.evaluation.embedded import EmbeddedDataset, check_interventions, embed_dataset
from skcicm.evaluation.options import DEFAULT_LAM, METHODS
from skcicm.evaluation.preflight import check_options, embedding_dim, unencoded
from skcicm.evaluation.sweep import (
    SweepSettings,
    accuracy,
    annotate,
    check_holdout_splits,
    check_seeds,
    holdout_mask,
    new_result,
    progress_bar,
    run_split,
    single_threaded_blas,
)


def imagenet_shift(
    source: EmbeddedDataset,
    variants: Mapping[str, EmbeddedDataset],
    *,
    methods: Sequence[str] = tuple(METHODS),
    lam: float | Iterable[float] = DEFAULT_LAM,
    n_components: int | Iterable[int] | None = None,
    tuning: str | Sequence[str] = "source",
    seeds: int | Sequence[int] = (0,),
    holdout_fraction: float = DOMAINBED_HOLDOUT_FRACTION,
    estimator_params: dict[str, Any] | None = None,
    progress: bool | str = "auto",
) -> Bunch:
    """Fit on ImageNet, score on its variants (see the module docstring).

    Parameters
    ----------
    source : EmbeddedDataset
        :func:`~skcicm.evaluation.embed_dataset` of the 1000-class ImageNet source, with
        class embeddings.
    variants : mapping of str to EmbeddedDataset
        :func:`~skcicm.evaluation.embed_dataset` of each variant (``imagenet_indices``
        required; intervention and class embeddings are not needed).
    methods, lam, n_components, tuning, seeds, holdout_fraction, estimator_params, progress
        As in :func:`~skcicm.evaluation.domain_shift`.

    Returns
    -------
    result : Bunch
        As :func:`~skcicm.evaluation.domain_shift`, one row per seed x method x variant x
        tuning rule.
    """
    settings, seeds = _check(
        source,
        variants,
        methods=methods,
        lam=lam,
        n_components=n_components,
        tuning=tuning,
        seeds=seeds,
        holdout_fraction=holdout_fraction,
        estimator_params=estimator_params,
    )
    if source.class_embeddings is None:
        raise ValueError(
            "The ImageNet source has no class embeddings; embed it with class_embeddings=True."
        )
    targets = {}
    for name, variant in variants.items():
        indices = variant.imagenet_indices
        allowed = indices if indices.size < 1000 else None
        targets[name] = (variant.embeddings, indices[variant.labels], allowed)
    result = new_result("imagenet", source.name)
    with (
        single_threaded_blas(),
        progress_bar(len(seeds), "ImageNet variants", progress) as bar,
    ):
        for seed in seeds:
            holdout = holdout_mask(source, seed, holdout_fraction)
            train, validation = np.flatnonzero(~holdout), np.flatnonzero(holdout)
            source_validation = (source.embeddings[validation], source.labels[validation])

            def score(estimator, source_validation=source_validation) -> dict:
                on_source = accuracy(estimator, *source_validation)
                scores = {}
                for name, (Z, y, allowed) in targets.items():
                    on_variant = accuracy(estimator, Z, y, allowed)
                    scores[name] = {
                        "accuracy": on_variant,
                        # The oracle selects on the variant itself.
                        "validation": on_variant,
                        "source_validation": on_source,
                        "n_test": int(y.size),
                    }
                return scores

            base = {"dataset": source.name, "protocol": "imagenet", "seed": seed}
            run_split(
                source,
                train,
                score,
                settings,
                base=base,
                result=result,
                source_selection="holdout",
            )
            bar.update()
    return result


def _check(
    source: EmbeddedDataset,
    variants: Mapping[str, EmbeddedDataset],
    *,
    methods: Sequence[str],
    lam: float | Iterable[float],
    n_components: int | Iterable[int] | None,
    tuning: str | Sequence[str],
    seeds: int | Sequence[int],
    holdout_fraction: float,
    estimator_params: dict[str, Any] | None,
) -> tuple[SweepSettings, list[int]]:
    """The options of :func:`imagenet_shift`, validated against the data (encoded or not)."""
    seeds = check_seeds(seeds)
    settings = SweepSettings.checked(
        methods,
        tuple(METHODS),
        lam,
        n_components,
        source.n_features,
        tuning,
        estimator_params=estimator_params,
    )
    if "interventional" in settings.tuning:
        raise ValueError(
            "tuning: 'interventional' needs several source domains to leave one out; the "
            "ImageNet source is a single domain. Use 'source' or 'oracle'."
        )
    if len(source.class_names) != 1000:
        raise ValueError(
            f"The ImageNet source must hold all 1000 classes; got {len(source.class_names)}."
        )
    missing = [name for name, variant in variants.items() if variant.imagenet_indices is None]
    if missing:
        raise ValueError(f"ImageNet variants {missing} have no imagenet_indices.")
    check_holdout_splits(source, seeds, holdout_fraction)
    return settings, seeds


def check_imagenet_variants_options(
    featurizer: Any,
    source: Mapping[str, Any],
    variants: Mapping[str, Mapping[str, Any]],
    *,
    interventions: Sequence[str],
    **protocol_params: Any,
) -> None:
    """Validate the options of :func:`evaluate_imagenet_variants` before any image is encoded.

    The checks of :func:`imagenet_shift`, on the labels and names of the source and the
    variants and the featurizer's embedding dimension
    (``embedding_dim``: no image is encoded).
    :func:`evaluate_imagenet_variants` runs it first; call it to check a configuration
    without running it.

    Parameters
    ----------
    featurizer : CLIPFeaturizer
        The featurizer that will encode the images.
    source : Bunch
        The ImageNet source, as :func:`evaluate_imagenet_variants` takes it.
    variants : mapping of str to Bunch
        The variants, as :func:`evaluate_imagenet_variants` takes them.
    interventions : sequence of str
        The intervention sources :func:`evaluate_imagenet_variants` is given.
    **protocol_params : dict
        Keyword arguments of :func:`imagenet_shift` (``methods``, ``lam``,
        ``n_components``, ``tuning``, ``seeds``, ``holdout_fraction``...).

    Raises
    ------
    ValueError
        When an intervention source does not apply (``"domain"``, or see
        ``check_interventions``) or an option is invalid:
        an unknown method or tuning rule, ``"interventional"`` tuning (one source domain),
        a ``lam`` or ``n_components`` out of range, no seed, a ``holdout_fraction`` that
        leaves the source's "in" split with fewer than two classes or its "out" split
        empty, a source without the 1000 classes, or a variant without
        ``imagenet_indices``.
    TypeError
        When ``protocol_params`` holds a keyword :func:`imagenet_shift` does not take.
    """
    interventions = check_interventions(featurizer, source, interventions)
    if "domain" in interventions:
        raise ValueError(
            "The ImageNet source is a single domain: 'domain' interventions do not apply."
        )
    n_features = embedding_dim(featurizer)
    stand_ins = {name: unencoded(variant, n_features) for name, variant in variants.items()}
    check_options(
        _check,
        imagenet_shift,
        unencoded(source, n_features, interventions),
        stand_ins,
        **protocol_params,
    )


def evaluate_imagenet_variants(
    featurizer: Any,
    source: Mapping[str, Any],
    variants: Mapping[str, Mapping[str, Any]],
    *,
    interventions: Sequence[str] = ("image",),
    templates: Sequence[str] | None = None,
    **protocol_params: Any,
) -> Bunch:
    """Encode ImageNet and its variants with ``featurizer`` and run :func:`imagenet_shift`.

    Only the source images get intervened copies; the variants are encoded clean.

    Parameters
    ----------
    featurizer : CLIPFeaturizer
        Encodes the images and prompts; give it a ``cache_dir`` to keep the embeddings on
        disk between runs.
    source : Bunch
        The ImageNet source, as returned by :func:`skcicm.datasets.load_imagenet_variant`.
    variants : mapping of str to Bunch
        The variants to score on (ImageNet-V2, -Sketch, -A, -R...), by name.
    interventions : sequence of {"image", "counterfactual", "text"}, default=("image",)
        Sources of interventional data, as in :func:`~skcicm.evaluation.embed_dataset`;
        ``"domain"`` does not apply to a single-domain source.
    templates : sequence of str, default=None
        Zero-shot prompt templates; defaults to the source's, then to the featurizer's.
    **protocol_params : dict
        Keyword arguments of :func:`imagenet_shift` (``methods``, ``lam``,
        ``n_components``, ``tuning``, ``seeds``...).

    Returns
    -------
    result : Bunch
        As :func:`imagenet_shift`; rows also record the model and the interventions.

    Raises
    ------
    ValueError
        When an intervention source does not apply or a protocol parameter is invalid
        (:func:`check_imagenet_variants_options`), before any image is encoded.
    TypeError
        When ``protocol_params`` holds a keyword :func:`imagenet_shift` does not take.
    """
    check_imagenet_variants_options(
        featurizer, source, variants, interventions=interventions, **protocol_params
    )
    embedded_source = embed_dataset(
        featurizer, source, interventions=interventions, templates=templates
    )
    embedded_variants = {
        name: embed_dataset(featurizer, variant, interventions=(), class_embeddings=False)
        for name, variant in variants.items()
    }
    result = imagenet_shift(embedded_source, embedded_variants, **protocol_params)
    return annotate(result, featurizer, interventions)
