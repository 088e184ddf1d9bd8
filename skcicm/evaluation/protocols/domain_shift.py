"""Leave-one-domain-out domain shift: fit on the source domains, score the held-out target.

Splits follow DomainBed (:func:`~skcicm.datasets.domainbed.domainbed_holdout_mask`): each
domain is split, per seed, into an "in" part (80%) and an "out" part (20%). Models are fitted
on the "in" parts of the source domains and **scored on the "in" part of the target domain**.
The target's "out" part is touched only by ``tuning="oracle"``, which selects the
hyperparameters on it (labelled ``target-oracle`` in the results). The default
``tuning="source"`` selects them by leave-one-domain-out cross-validation on the source
"in" parts. With a single ``lam`` and ``n_components`` nothing is tuned (``given``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.utils import Bunch

from skcicm.datasets.domainbed import DOMAINBED_HOLDOUT_FRACTION
from skcicm.evaluation.embedded import EmbeddedDataset, embed_dataset
from skcicm.evaluation.options import DEFAULT_LAM, METHODS
from skcicm.evaluation.sweep import (
    accuracy,
    annotate,
    check_lodo_before_encoding,
    check_lodo_options,
    holdout_mask,
    run_leave_one_domain_out,
)


def domain_shift(
    embedded: EmbeddedDataset,
    *,
    targets: Sequence[str] | None = None,
    methods: Sequence[str] = tuple(METHODS),
    lam: float | Iterable[float] = DEFAULT_LAM,
    n_components: int | Iterable[int] | None = None,
    tuning: str | Sequence[str] = "source",
    seeds: int | Sequence[int] = (0,),
    holdout_fraction: float = DOMAINBED_HOLDOUT_FRACTION,
    estimator_params: dict[str, Any] | None = None,
    n_jobs: int | None = None,
    progress: bool | str = "auto",
    baseline_candidate: bool = False,
    interventional_rule: str | None = None,
) -> Bunch:
    """Leave-one-domain-out domain shift: fit on the source domains, score the target.

    For each seed and target domain, every method is fitted on the "in" splits of the other
    domains and scored on the target's "in" split (see the module docstring). Nothing of the
    target reaches a fit (:meth:`EmbeddedDataset.source_only`).

    Parameters
    ----------
    embedded : EmbeddedDataset
        Output of :func:`~skcicm.evaluation.embed_dataset`.
    targets : sequence of str, default=None
        Target domains; None takes each domain in turn.
    methods : sequence of str, default=all of :data:`METHODS`
        ``"clip_zero_shot"``, ``"clip_linear_probe"``, ``"icm_zero_shot"``,
        ``"icm_linear_probe"``.
    lam : float or iterable of float, default=DEFAULT_LAM
        Penalty weight(s) of CLIP-ICM.
    n_components : int, iterable of int or None, default=None
        Subspace dimension(s); None means :func:`default_n_components`.
    tuning : {"source", "interventional", "oracle"} or a sequence of them, default="source"
        How a grid is resolved (``skcicm.evaluation.selection``): leave-one-domain-out CV
        on the sources, scored on clean held-out images or on their intervened copies, or the
        best score on the target's "out" split (an upper bound, labelled ``target-oracle``).
        Several rules give one row each.
    seeds : int or sequence of int, default=(0,)
        DomainBed trial seeds; each gives other splits.
    holdout_fraction : float, default=0.2
        Fraction of each domain in the "out" split.
    estimator_params : dict, default=None
        Further :class:`~skcicm.InvariantCausalMechanism` parameters (``center``,
        ``lam_scale``, ``classifier``...), for every method.
    n_jobs : int, default=None
        Parallel fits of the cross-validation.
    progress : bool or "auto", default="auto"
        Progress bar over (seed, target) tasks.
    baseline_candidate : bool, default=False
        Add plain CLIP to the candidates of the CLIP-ICM methods, for grids that cannot
        express it (``objective="ratio"``); rows then record ``plain_clip``.
    interventional_rule : {"pooled", "intervened", "worst", "worst_view"}, default=None
        The ``rule`` of :class:`~skcicm.model_selection.InterventionalScorer` that
        ``tuning="interventional"`` scores with; None is the scorer's default. Its rows
        record it as ``interventional_rule``.

    Returns
    -------
    result : Bunch
        ``results``: one row (dict) per seed x target x method x tuning rule, with
        ``accuracy``, the ``lam`` and ``n_components`` used, how they were chosen
        (``tuning``) and sample counts; ``cv_results``: the cross-validation rows; ``sweep``:
        every candidate's target score; ``protocol`` and ``dataset``.
    """
    settings, splits = check_lodo_options(
        embedded,
        tuple(METHODS),
        targets=targets,
        methods=methods,
        lam=lam,
        n_components=n_components,
        tuning=tuning,
        seeds=seeds,
        holdout_fraction=holdout_fraction,
        estimator_params=estimator_params,
        n_jobs=n_jobs,
        baseline_candidate=baseline_candidate,
        interventional_rule=interventional_rule,
    )
    return run_leave_one_domain_out(
        "domain_shift", embedded, splits, _split, _scores, settings, progress
    )


def check_domain_shift_options(
    featurizer: Any,
    dataset: Mapping[str, Any],
    *,
    interventions: Sequence[str],
    **protocol_params: Any,
) -> None:
    """Validate the options of :func:`evaluate_domain_shift` before any image is encoded.

    The checks of :func:`domain_shift`, on the data set's labels and domains and the
    featurizer's embedding dimension (``embedding_dim``: no
    image is encoded). :func:`evaluate_domain_shift` runs it first; call it to check a
    configuration without running it.

    Parameters
    ----------
    featurizer : CLIPFeaturizer
        The featurizer that will encode ``dataset``.
    dataset : Bunch
        A loaded data set, as :func:`evaluate_domain_shift` takes it.
    interventions : sequence of str
        The intervention sources :func:`evaluate_domain_shift` is given.
    **protocol_params : dict
        Keyword arguments of :func:`domain_shift` (``targets``, ``methods``, ``lam``,
        ``n_components``, ``tuning``, ``seeds``, ``holdout_fraction``...).

    Raises
    ------
    ValueError
        When an option is invalid for this data set: an unknown target, method or tuning
        rule, a ``lam`` or ``n_components`` out of range, no seed, or a ``holdout_fraction``
        that leaves a domain without an "out" sample or with fewer than two classes in its
        "in" split. The message names the parameter.
    TypeError
        When ``protocol_params`` holds a keyword :func:`domain_shift` does not take.
    """
    check_lodo_before_encoding(
        domain_shift, tuple(METHODS), featurizer, dataset, interventions, protocol_params
    )


def _split(is_target: np.ndarray, holdout: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "train": np.flatnonzero(~is_target & ~holdout),
        "test": np.flatnonzero(is_target & ~holdout),
        "validation": np.flatnonzero(is_target & holdout),
    }


def domain_shift_split(
    embedded: EmbeddedDataset,
    target: str,
    seed: int,
    holdout_fraction: float = DOMAINBED_HOLDOUT_FRACTION,
) -> dict[str, np.ndarray]:
    """The sample indices :func:`domain_shift` uses for one target and seed.

    Parameters
    ----------
    embedded : EmbeddedDataset
        Output of :func:`~skcicm.evaluation.embed_dataset`.
    target : str
        Name of the target domain.
    seed : int
        DomainBed trial seed of the "in"/"out" split of each domain.
    holdout_fraction : float, default=0.2
        Fraction of each domain in the "out" split.

    Returns
    -------
    split : dict of str to ndarray of int
        ``"train"``: the source domains' "in" parts; ``"test"``: the target's "in" part;
        ``"validation"``: the target's "out" part (the oracle's).
    """
    return _split(embedded.domains == target, holdout_mask(embedded, seed, holdout_fraction))


def _scores(estimator, embedded: EmbeddedDataset, split: dict[str, np.ndarray]) -> dict:
    Z, y = embedded.embeddings, embedded.labels
    return {
        "accuracy": accuracy(estimator, Z[split["test"]], y[split["test"]]),
        "validation": accuracy(estimator, Z[split["validation"]], y[split["validation"]]),
        "n_test": int(split["test"].size),
    }


def evaluate_domain_shift(
    featurizer: Any,
    dataset: Mapping[str, Any],
    *,
    interventions: Sequence[str] = ("image",),
    templates: Sequence[str] | None = None,
    **protocol_params: Any,
) -> Bunch:
    """Encode ``dataset`` with ``featurizer`` and run :func:`domain_shift` on it.

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
        Keyword arguments of :func:`domain_shift` (``targets``, ``methods``, ``lam``,
        ``n_components``, ``tuning``, ``seeds``...).

    Returns
    -------
    result : Bunch
        As :func:`domain_shift`; rows also record the model and the interventions.

    Raises
    ------
    ValueError
        When an intervention source is unknown or cannot apply to this featurizer or data
        set, or a protocol parameter is invalid (:func:`check_domain_shift_options`); all
        before any image is encoded.
    TypeError
        When ``protocol_params`` holds a keyword :func:`domain_shift` does not take.
    """
    check_domain_shift_options(featurizer, dataset, interventions=interventions, **protocol_params)
    embedded = embed_dataset(featurizer, dataset, interventions=interventions, templates=templates)
    return annotate(domain_shift(embedded, **protocol_params), featurizer, interventions)
