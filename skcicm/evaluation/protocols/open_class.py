"""Open-class domain shift ("in the wild"): fit on base classes, score base and novel classes.

The base classes are the first half (rounded up, as in CoOp) of the class names in sorted
order; the others are novel. Splits and tuning are those of
:func:`~skcicm.evaluation.domain_shift`, on base-class images only for fitting.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.utils import Bunch

from skcicm.datasets.domainbed import DOMAINBED_HOLDOUT_FRACTION
from skcicm.evaluation.embedded import EmbeddedDataset, embed_dataset
from skcicm.evaluation.options import DEFAULT_LAM, ZERO_SHOT_METHODS
from skcicm.evaluation.sweep import (
    accuracy,
    annotate,
    check_lodo_before_encoding,
    check_lodo_options,
    run_leave_one_domain_out,
)


def open_class(
    embedded: EmbeddedDataset,
    *,
    targets: Sequence[str] | None = None,
    methods: Sequence[str] = ZERO_SHOT_METHODS,
    lam: float | Iterable[float] = DEFAULT_LAM,
    n_components: int | Iterable[int] | None = None,
    tuning: str | Sequence[str] = "source",
    seeds: int | Sequence[int] = (0,),
    holdout_fraction: float = DOMAINBED_HOLDOUT_FRACTION,
    estimator_params: dict[str, Any] | None = None,
    n_jobs: int | None = None,
    progress: bool | str = "auto",
    interventional_rule: str | None = None,
) -> Bunch:
    """Open-class domain shift ("in the wild"): fit on base classes, score base and novel.

    Models are fitted on the base-class images of the source domains' "in" splits. On the
    target's "in" split they classify zero-shot over all classes; the base-class and
    novel-class images are scored separately and ``accuracy`` is their harmonic mean. Only
    zero-shot methods apply: a probe cannot predict unseen classes.

    Parameters
    ----------
    embedded : EmbeddedDataset
        Output of :func:`~skcicm.evaluation.embed_dataset`, with ``text_classes`` set to the
        base classes (:func:`base_classes`) when text interventions are used.
    targets, lam, n_components, tuning, seeds, holdout_fraction, estimator_params, n_jobs, \
progress, interventional_rule
        As in :func:`~skcicm.evaluation.domain_shift`. Oracle tuning maximises the harmonic
        mean on the target's "out" split; source tuning cross-validates on base-class images.
    methods : sequence of str, default=("clip_zero_shot", "icm_zero_shot")
        Zero-shot methods to compare.

    Returns
    -------
    result : Bunch
        As :func:`~skcicm.evaluation.domain_shift`; rows also hold ``base_accuracy`` and
        ``novel_accuracy``.
    """
    settings, splits = check_lodo_options(
        embedded,
        ZERO_SHOT_METHODS,
        targets=targets,
        methods=methods,
        lam=lam,
        n_components=n_components,
        tuning=tuning,
        seeds=seeds,
        holdout_fraction=holdout_fraction,
        estimator_params=estimator_params,
        n_jobs=n_jobs,
        interventional_rule=interventional_rule,
    )
    is_base = np.isin(embedded.labels, base_classes(embedded.class_names))

    def split(is_target: np.ndarray, holdout: np.ndarray) -> dict[str, np.ndarray]:
        parts = {"train": np.flatnonzero(~is_target & ~holdout & is_base)}
        for part, mask in (("test", ~holdout), ("validation", holdout)):
            parts[part + "_base"] = np.flatnonzero(is_target & mask & is_base)
            parts[part + "_novel"] = np.flatnonzero(is_target & mask & ~is_base)
        return parts

    return run_leave_one_domain_out(
        "open_class", embedded, splits, split, _scores, settings, progress
    )


def check_open_class_options(
    featurizer: Any,
    dataset: Mapping[str, Any],
    *,
    interventions: Sequence[str],
    **protocol_params: Any,
) -> None:
    """Validate the options of :func:`evaluate_open_class` before any image is encoded.

    :func:`~skcicm.evaluation.check_domain_shift_options` for :func:`open_class`, whose
    methods are the zero-shot ones only.

    Parameters
    ----------
    featurizer : CLIPFeaturizer
        Gives the embedding dimension, encoding at most one text.
    dataset : Bunch
        Gives the labels, domains and names, as :func:`evaluate_open_class` takes it.
    interventions : sequence of str
        The intervention sources of the run.
    **protocol_params : dict
        Keyword arguments of :func:`open_class`.

    Raises
    ------
    ValueError
        For an option :func:`open_class` would refuse, a method that is not zero-shot
        included; the message names the parameter.
    TypeError
        For a keyword :func:`open_class` does not take.
    """
    check_lodo_before_encoding(
        open_class, ZERO_SHOT_METHODS, featurizer, dataset, interventions, protocol_params
    )


def _scores(estimator, embedded: EmbeddedDataset, split: dict[str, np.ndarray]) -> dict:
    Z, y = embedded.embeddings, embedded.labels
    scores = {}
    for part in ("test", "validation"):
        base_acc = accuracy(estimator, Z[split[part + "_base"]], y[split[part + "_base"]])
        novel_acc = accuracy(estimator, Z[split[part + "_novel"]], y[split[part + "_novel"]])
        scores[part] = (base_acc, novel_acc, harmonic_mean(base_acc, novel_acc))
    base_acc, novel_acc, h = scores["test"]
    return {
        "accuracy": h,
        "base_accuracy": base_acc,
        "novel_accuracy": novel_acc,
        "validation": scores["validation"][2],
        "n_test": int(split["test_base"].size + split["test_novel"].size),
    }


def harmonic_mean(a: float, b: float) -> float:
    """Harmonic mean of two accuracies, 0 when either is 0.

    Examples
    --------
    >>> harmonic_mean(0.5, 1.0)
    0.6666666666666666
    """
    return 0.0 if a <= 0 or b <= 0 else 2 * a * b / (a + b)


def base_classes(class_names: Sequence[str]) -> np.ndarray:
    """Labels of the base classes: the first half (rounded up) of the sorted class names.

    Parameters
    ----------
    class_names : sequence of str
        Name of each class; label ``i`` is ``class_names[i]``.

    Returns
    -------
    labels : ndarray of int
        Labels of the base classes, in the alphabetical order of their names; the other
        classes are novel.

    Examples
    --------
    >>> base_classes(["zebra", "ant", "cat"]).tolist()
    [1, 2]
    """
    order = np.argsort(np.asarray(class_names, dtype=str), kind="stable")
    return np.sort(order[: math.ceil(len(class_names) / 2)])


def evaluate_open_class(
    featurizer: Any,
    dataset: Mapping[str, Any],
    *,
    interventions: Sequence[str] = ("image",),
    templates: Sequence[str] | None = None,
    **protocol_params: Any,
) -> Bunch:
    """Encode ``dataset`` with ``featurizer`` and run :func:`open_class` on it.

    Text interventions are built from the base class names only, so that no novel class
    name reaches a fit.

    Parameters
    ----------
    featurizer : CLIPFeaturizer
        Encodes the images and prompts; give it a ``cache_dir`` to keep the embeddings on
        disk between runs.
    dataset : Bunch
        A loaded data set with ``images``, ``labels``, ``domains``, ``class_names`` and
        ``domain_names``, as returned by :func:`skcicm.datasets.load_dataset`.
    interventions : sequence of {"image", "counterfactual", "text", "domain"}, \
default=("image",)
        Sources of interventional data, as in :func:`~skcicm.evaluation.embed_dataset`.
    templates : sequence of str, default=None
        Zero-shot prompt templates; defaults to the dataset's, then to the featurizer's.
    **protocol_params : dict
        Keyword arguments of :func:`open_class` (``targets``, ``methods``, ``lam``,
        ``n_components``, ``tuning``, ``seeds``...).

    Returns
    -------
    result : Bunch
        As :func:`open_class`; rows also record the model and the interventions.

    Raises
    ------
    ValueError
        When an intervention source is unknown or cannot apply to this featurizer or data
        set, or a protocol parameter is invalid (:func:`check_open_class_options`); all
        before any image is encoded.
    TypeError
        When ``protocol_params`` holds a keyword :func:`open_class` does not take.
    """
    check_open_class_options(featurizer, dataset, interventions=interventions, **protocol_params)
    embedded = embed_dataset(
        featurizer,
        dataset,
        interventions=interventions,
        templates=templates,
        text_classes=base_classes(dataset["class_names"]),
    )
    return annotate(open_class(embedded, **protocol_params), featurizer, interventions)
