"""The evaluation protocols of the CLIP-ICM paper, run on embeddings computed once per image.

Every image is encoded once (clean and intervened copies) by :func:`embed_dataset`; the
protocols then fit and score :class:`~skcicm.InvariantCausalMechanism` estimators on those
embeddings only. With a featurizer that has a ``cache_dir``, the embeddings are also kept on
disk, so an interrupted run resumes without re-encoding and a second protocol on the same
images encodes nothing.

Splits follow DomainBed (:func:`~skcicm.datasets.domainbed.domainbed_holdout_mask`): each
domain is split, per seed, into an "in" part (80%) and an "out" part (20%). Models are fitted
on the "in" parts of the source domains and **scored on the "in" part of the target domain**.
The target's "out" part is touched only by ``tuning="oracle"``, which selects the
hyperparameters on it (labelled ``target-oracle`` in the results). The default
``tuning="source"`` selects them by leave-one-domain-out cross-validation on the source
"in" parts. With a single ``lam`` and ``n_components`` nothing is tuned (``given``).

Besides the selected models, every protocol records a *sweep*: the target score of every
(``lam``, ``n_components``) candidate, the data of the sensitivity plots. The sweep reports
how the hyperparameters matter; it never feeds the source-tuned results.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.utils import Bunch
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from skcicm.datasets.domainbed import DOMAINBED_HOLDOUT_FRACTION, domainbed_holdout_mask
from skcicm.estimator import InvariantCausalMechanism, NoInterventionWarning
from skcicm.model_selection import check_grid, lodo_grid_search
from skcicm.prompts import expand_prompt_pairs

METHODS: dict[str, str] = {
    "clip_zero_shot": "CLIP zero-shot",
    "clip_linear_probe": "CLIP linear probe",
    "icm_zero_shot": "CLIP-ICM zero-shot",
    "icm_linear_probe": "CLIP-ICM linear probe",
}
ZERO_SHOT_METHODS = ("clip_zero_shot", "icm_zero_shot")
INTERVENTION_SOURCES = ("image", "text", "domain")
TUNING = ("source", "oracle")
# The default grid contains the no-ICM setting (lam = 0, K = d: a rotation of CLIP's space), so
# that source tuning can fall back to plain CLIP where the method does not help. Absolute
# lam >= 10 is left out: with full-rank image Deltas it keeps near-empty directions and falls
# to chance (docs/results.md).
DEFAULT_LAM: tuple[float, ...] = (0.0, 0.1, 1.0)
# n_components defaults to these fractions of the embedding dimension.
DEFAULT_COMPONENT_FRACTIONS: tuple[float, ...] = (0.25, 0.5, 1.0)


def default_n_components(n_features: int) -> list[int]:
    """The default ``n_components`` grid for embeddings of dimension ``n_features``.

    Examples
    --------
    >>> default_n_components(512)
    [128, 256, 512]
    """
    return sorted({max(1, round(f * n_features)) for f in DEFAULT_COMPONENT_FRACTIONS})


def _check_choice(values: Iterable[str], allowed: Sequence[str], what: str) -> list[str]:
    values = [values] if isinstance(values, str) else list(values)
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"Unknown {what} {unknown}; choose from {list(allowed)}.")
    return values


def embed_dataset(
    featurizer: Any,
    dataset: Mapping[str, Any],
    *,
    interventions: Sequence[str] = ("image",),
    templates: Sequence[str] | None = None,
    text_classes: Sequence[int] | None = None,
    class_embeddings: bool = True,
) -> Bunch:
    """Encode a dataset once: everything the protocols fit and score.

    Parameters
    ----------
    featurizer : CLIPFeaturizer
        Encodes images and prompts; give it a ``cache_dir`` to keep the embeddings on disk.
    dataset : Bunch
        With ``images``, ``labels``, ``domains``, ``class_names`` and ``domain_names``, and
        optionally ``prompt_names`` (class names as written in prompts), ``templates`` and
        ``name``, as returned by the loaders of :mod:`skcicm.datasets`.
    interventions : sequence of {"image", "text", "domain"}, default=("image",)
        Sources of interventional data for CLIP-ICM: augmented copies of every image
        (``featurizer.intervention_embeddings``), the featurizer's ``text_interventions``
        prompt pairs over the class names, and class-conditional contrasts between the
        training domains.
    templates : sequence of str, default=None
        Zero-shot prompt templates; defaults to the dataset's ``templates``, then to the
        featurizer's.
    text_classes : sequence of int, default=None
        Classes whose names fill the text prompt pairs; None uses all. The open-class
        protocol passes the base classes, so that novel class names are never fitted on.
    class_embeddings : bool, default=True
        Compute the class prompt embeddings (targets scored against another dataset's
        classes do not need them).

    Returns
    -------
    embedded : Bunch
        ``embeddings`` (n, d), ``interventions`` (n, n_views, d) or None,
        ``intervention_pairs`` (tuple) or None and their prompts ``intervention_pair_texts``
        (pairs naming a target domain are left out when fitting for that target),
        ``domain_interventions`` (bool), ``labels``,
        ``domains``, ``class_names``, ``domain_names``, ``class_embeddings`` (C, d) or None,
        ``name`` and, for ImageNet datasets, ``imagenet_indices``.
    """
    interventions = _check_choice(interventions, INTERVENTION_SOURCES, "interventions")
    images = dataset["images"]
    prompt_names = list(dataset.get("prompt_names") or dataset["class_names"])
    templates = templates or dataset.get("templates")
    embedded = Bunch(
        embeddings=featurizer.transform(images),
        interventions=None,
        intervention_pairs=None,
        intervention_pair_texts=None,
        domain_interventions="domain" in interventions,
        labels=np.asarray(dataset["labels"]),
        domains=np.asarray(dataset["domains"]).astype(str),
        class_names=list(dataset["class_names"]),
        domain_names=[str(d) for d in dataset["domain_names"]],
        class_embeddings=None,
        name=str(dataset.get("name", "dataset")),
    )
    if "imagenet_indices" in dataset:
        embedded.imagenet_indices = np.asarray(dataset["imagenet_indices"])
    if "image" in interventions:
        # Sample-major, the layout that cross-validation can split along with the samples.
        embedded.interventions = featurizer.intervention_embeddings(images).transpose(1, 0, 2)
    if "text" in interventions:
        if not getattr(featurizer, "text_interventions", None):
            raise ValueError(
                "interventions include 'text' but the featurizer has no text_interventions; "
                "set CLIPFeaturizer(text_interventions=...), e.g. "
                "skcicm.prompts.style_prompt_pairs(['photo', 'sketch'])."
            )
        names = prompt_names if text_classes is None else [prompt_names[i] for i in text_classes]
        embedded.intervention_pairs = featurizer.text_intervention_pairs(names)
        embedded.intervention_pair_texts = expand_prompt_pairs(featurizer.text_interventions, names)
    if class_embeddings:
        embedded.class_embeddings = featurizer.class_embeddings(prompt_names, templates)
    return embedded


# Fitting and scoring ------------------------------------------------------------------------


def _head(method: str) -> str:
    return "zero_shot" if method in ZERO_SHOT_METHODS else "linear_probe"


def _fit(
    method: str,
    lam: float,
    n_components: int | None,
    embedded: Bunch,
    index: np.ndarray,
    estimator_params: dict[str, Any] | None,
    target: str | None = None,
) -> InvariantCausalMechanism:
    head = _head(method)
    baseline = method.startswith("clip_")
    # The no-ICM baseline: all directions and no penalty, i.e. a rotation of CLIP's space.
    estimator = InvariantCausalMechanism(
        n_components=None if baseline else n_components,
        lam=0.0 if baseline else lam,
        head=head,
        **(estimator_params or {}),
    )
    kwargs: dict[str, Any] = {}
    if not baseline:
        if embedded.interventions is not None:
            kwargs["interventions"] = embedded.interventions[index]
        pairs = pairs_without_target(embedded, target)
        if pairs is not None:
            kwargs["intervention_pairs"] = pairs
        if embedded.domain_interventions:
            kwargs["domains"] = embedded.domains[index]
    if head == "zero_shot":
        kwargs["class_embeddings"] = embedded.class_embeddings
    with warnings.catch_warnings():
        if baseline:
            warnings.simplefilter("ignore", NoInterventionWarning)
        return estimator.fit(embedded.embeddings[index], embedded.labels[index], **kwargs)


def pairs_without_target(embedded: Bunch, target: str | None) -> tuple | None:
    """The text intervention pairs, less those whose prompts name the target domain.

    A prompt such as "a painting of a dog" carries the target's style into the fit; source-only
    evaluation must not see it, even as a word.

    Examples
    --------
    >>> import numpy as np
    >>> embedded = Bunch(
    ...     intervention_pairs=(np.zeros((2, 3)), np.ones((2, 3))),
    ...     intervention_pair_texts=(["a photo of a dog", "a photo of a dog"],
    ...                              ["a sketch of a dog", "a clip art of a dog"]),
    ... )
    >>> pairs_without_target(embedded, "clip_art")[0].shape
    (1, 3)
    """
    pairs = embedded.get("intervention_pairs")
    texts = embedded.get("intervention_pair_texts")
    if pairs is None or target is None or texts is None:
        return pairs
    word = re.compile(rf"\b{re.escape(target.replace('_', ' '))}\b", re.IGNORECASE)
    keep = np.array([not (word.search(a) or word.search(b)) for a, b in zip(*texts, strict=True)])
    return (pairs[0][keep], pairs[1][keep]) if keep.any() else None


def _accuracy(
    estimator: InvariantCausalMechanism,
    embeddings: np.ndarray,
    labels: np.ndarray,
    allowed: np.ndarray | None = None,
) -> float:
    """Accuracy, with predictions restricted to the ``allowed`` labels when given."""
    if labels.size == 0:
        return float("nan")
    if allowed is None:
        return float(np.mean(estimator.predict(embeddings) == labels))
    scores = estimator.decision_function(embeddings)
    if scores.ndim == 1:
        scores = np.column_stack([-scores, scores])
    columns = np.isin(estimator.classes_, allowed)
    predicted = estimator.classes_[columns][scores[:, columns].argmax(axis=1)]
    return float(np.mean(predicted == labels))


def harmonic_mean(a: float, b: float) -> float:
    """Harmonic mean of two accuracies, 0 when either is 0.

    Examples
    --------
    >>> harmonic_mean(0.5, 1.0)
    0.6666666666666666
    """
    return 0.0 if a <= 0 or b <= 0 else 2 * a * b / (a + b)


def _resolve_grid(
    lam: float | Iterable[float], n_components: int | Iterable[int] | None, n_features: int
) -> tuple[list[float], list[int]]:
    ks = default_n_components(n_features) if n_components is None else n_components
    return check_grid(lam, ks, n_features)


def _select(
    sweep: list[dict[str, Any]],
    key: str,
    tuning: str,
    lodo: Callable[[], Bunch] | None,
) -> tuple[dict[str, Any], str, float]:
    """Pick the candidate of ``sweep`` to report; return it, the tuning label and its score."""
    if len(sweep) == 1:
        return sweep[0], "given", float("nan")
    if tuning == "oracle":
        best = max(sweep, key=lambda row: row[key])
        return best, "target-oracle", best[key]
    if lodo is None:
        best = max(sweep, key=lambda row: row["source_validation"])
        return best, "source-holdout", best["source_validation"]
    search = lodo()
    params = search.best_params
    best = next(
        row
        for row in sweep
        if row["lam"] == params["lam"] and row["n_components"] == params["n_components"]
    )
    return best, "source-lodo", search.best_score


def _single_threaded_blas() -> threadpool_limits:
    # The fits are small (d x d eigenproblems, probes on d features): threads inside each
    # matrix product gain little, and on a busy machine spinning BLAS threads slow them by
    # an order of magnitude. Parallelism belongs across candidates (n_jobs).
    return threadpool_limits(limits=1, user_api="blas")


def _progress(total: int, desc: str, progress: bool | str) -> tqdm:
    disable = None if progress == "auto" else not progress
    return tqdm(total=total, desc=desc, unit="task", disable=disable)


# Domain shift and open-class protocols -------------------------------------------------------


def _check_targets(embedded: Bunch, targets: Sequence[str] | None) -> list[str]:
    if len(embedded.domain_names) < 2:
        raise ValueError(f"{embedded.name} has one domain; domain shift needs at least two.")
    if targets is None:
        return list(embedded.domain_names)
    targets = [targets] if isinstance(targets, str) else list(targets)
    unknown = [t for t in targets if t not in embedded.domain_names]
    if unknown:
        raise ValueError(
            f"Unknown target domains {unknown}; {embedded.name} has {embedded.domain_names}."
        )
    return targets


def _check_common(methods, tuning, seeds, allowed_methods) -> tuple[list[str], list[int]]:
    methods = _check_choice(methods, allowed_methods, "methods")
    _check_choice([tuning], TUNING, "tuning")
    seeds = [seeds] if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must hold at least one seed.")
    return methods, seeds


def domain_shift(
    embedded: Bunch,
    *,
    targets: Sequence[str] | None = None,
    methods: Sequence[str] = tuple(METHODS),
    lam: float | Iterable[float] = DEFAULT_LAM,
    n_components: int | Iterable[int] | None = None,
    tuning: str = "source",
    seeds: int | Sequence[int] = (0,),
    holdout_fraction: float = DOMAINBED_HOLDOUT_FRACTION,
    estimator_params: dict[str, Any] | None = None,
    n_jobs: int | None = None,
    progress: bool | str = "auto",
) -> Bunch:
    """Leave-one-domain-out domain shift: fit on the source domains, score the target.

    For each seed and target domain, every method is fitted on the "in" splits of the other
    domains and scored on the target's "in" split (see the module docstring).

    Parameters
    ----------
    embedded : Bunch
        Output of :func:`embed_dataset`.
    targets : sequence of str, default=None
        Target domains; None takes each domain in turn.
    methods : sequence of str, default=all of :data:`METHODS`
        ``"clip_zero_shot"``, ``"clip_linear_probe"``, ``"icm_zero_shot"``,
        ``"icm_linear_probe"``.
    lam : float or iterable of float, default=(0.0, 0.1, 1.0)
        Penalty weight(s) of CLIP-ICM.
    n_components : int, iterable of int or None, default=None
        Subspace dimension(s); None means :func:`default_n_components`.
    tuning : {"source", "oracle"}, default="source"
        How a grid is resolved: leave-one-domain-out CV on the sources, or the best score on
        the target's "out" split (an upper bound, labelled ``target-oracle``).
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

    Returns
    -------
    result : Bunch
        ``results``: one row (dict) per seed x target x method, with ``accuracy``, the
        ``lam`` and ``n_components`` used, how they were chosen (``tuning``) and sample
        counts; ``cv_results``: the cross-validation rows; ``sweep``: every candidate's target
        score; ``protocol`` and ``dataset``.
    """
    targets = _check_targets(embedded, targets)
    methods, seeds = _check_common(methods, tuning, seeds, tuple(METHODS))
    lams, ks = _resolve_grid(lam, n_components, embedded.embeddings.shape[1])

    def split(is_target: np.ndarray, holdout: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "train": np.flatnonzero(~is_target & ~holdout),
            "test": np.flatnonzero(is_target & ~holdout),
            "validation": np.flatnonzero(is_target & holdout),
        }

    return _leave_one_domain_out(
        "domain_shift",
        embedded,
        targets,
        seeds,
        holdout_fraction,
        split,
        _domain_shift_scores,
        progress,
        methods=methods,
        lams=lams,
        ks=ks,
        tuning=tuning,
        estimator_params=estimator_params,
        n_jobs=n_jobs,
    )


def _leave_one_domain_out(
    protocol: str,
    embedded: Bunch,
    targets: list[str],
    seeds: list[int],
    holdout_fraction: float,
    make_split: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]],
    score: Callable[[InvariantCausalMechanism, Bunch, dict], dict],
    progress: bool | str,
    **fit_settings: Any,
) -> Bunch:
    """Run every (seed, target) split of a protocol; ``make_split(is_target, holdout)``."""
    result = Bunch(protocol=protocol, dataset=embedded.name, results=[], cv_results=[], sweep=[])
    description = protocol.replace("_", " ").capitalize()
    with (
        _single_threaded_blas(),
        _progress(len(seeds) * len(targets), description, progress) as bar,
    ):
        for seed in seeds:
            holdout = domainbed_holdout_mask(
                embedded.domains,
                embedded.domain_names,
                holdout_fraction=holdout_fraction,
                trial_seed=seed,
            )
            for target in targets:
                base = {
                    "dataset": embedded.name,
                    "protocol": protocol,
                    "target": target,
                    "seed": seed,
                }
                _run_split(
                    embedded,
                    make_split(embedded.domains == target, holdout),
                    base=base,
                    result=result,
                    score=score,
                    **fit_settings,
                )
                bar.update()
    return result


def _domain_shift_scores(estimator, embedded: Bunch, split: dict[str, np.ndarray]) -> dict:
    Z, y = embedded.embeddings, embedded.labels
    return {
        "accuracy": _accuracy(estimator, Z[split["test"]], y[split["test"]]),
        "validation": _accuracy(estimator, Z[split["validation"]], y[split["validation"]]),
        "n_test": int(split["test"].size),
    }


def _open_class_scores(estimator, embedded: Bunch, split: dict[str, np.ndarray]) -> dict:
    Z, y = embedded.embeddings, embedded.labels
    scores = {}
    for part in ("test", "validation"):
        base_acc = _accuracy(estimator, Z[split[part + "_base"]], y[split[part + "_base"]])
        novel_acc = _accuracy(estimator, Z[split[part + "_novel"]], y[split[part + "_novel"]])
        scores[part] = (base_acc, novel_acc, harmonic_mean(base_acc, novel_acc))
    base_acc, novel_acc, h = scores["test"]
    return {
        "accuracy": h,
        "base_accuracy": base_acc,
        "novel_accuracy": novel_acc,
        "validation": scores["validation"][2],
        "n_test": int(split["test_base"].size + split["test_novel"].size),
    }


def _run_split(
    embedded: Bunch,
    split: dict[str, np.ndarray],
    methods: list[str],
    lams: list[float],
    ks: list[int],
    tuning: str,
    estimator_params: dict[str, Any] | None,
    n_jobs: int | None,
    base: dict[str, Any],
    result: Bunch,
    score: Callable[[InvariantCausalMechanism, Bunch, dict], dict],
) -> None:
    """Fit and score every method on one (seed, target) split; append rows to ``result``."""
    train = split["train"]
    n_features = embedded.embeddings.shape[1]
    for method in methods:
        row = {**base, "method": method, "n_train": int(train.size)}
        if method.startswith("clip_"):
            estimator = _fit(method, 0.0, None, embedded, train, estimator_params)
            scores = score(estimator, embedded, split)
            scores.pop("validation")
            result.results.append(
                {
                    **row,
                    **scores,
                    "lam": 0.0,
                    "n_components": n_features,
                    "tuning": "none",
                    "selection_score": float("nan"),
                }
            )
            continue
        sweep = []
        for lam in lams:
            for k in ks:
                estimator = _fit(method, lam, k, embedded, train, estimator_params, base["target"])
                sweep.append(
                    {**row, "lam": lam, "n_components": k, **score(estimator, embedded, split)}
                )
        result.sweep.extend(sweep)

        def lodo(method=method, row=row) -> Bunch:
            search = lodo_grid_search(
                embedded.embeddings[train],
                embedded.labels[train],
                embedded.domains[train],
                lam=lams,
                n_components=ks,
                head=_head(method),
                interventions=None
                if embedded.interventions is None
                else embedded.interventions[train],
                intervention_pairs=pairs_without_target(embedded, base["target"]),
                domain_interventions=embedded.domain_interventions,
                class_embeddings=embedded.class_embeddings
                if _head(method) == "zero_shot"
                else None,
                estimator_params=estimator_params,
                n_jobs=n_jobs,
            )
            result.cv_results.extend({**row, **cv_row} for cv_row in search.cv_results)
            return search

        chosen, label, selection_score = _select(sweep, "validation", tuning, lodo)
        chosen = {k: v for k, v in chosen.items() if k != "validation"}
        result.results.append({**chosen, "tuning": label, "selection_score": selection_score})


def open_class(
    embedded: Bunch,
    *,
    targets: Sequence[str] | None = None,
    methods: Sequence[str] = ZERO_SHOT_METHODS,
    lam: float | Iterable[float] = DEFAULT_LAM,
    n_components: int | Iterable[int] | None = None,
    tuning: str = "source",
    seeds: int | Sequence[int] = (0,),
    holdout_fraction: float = DOMAINBED_HOLDOUT_FRACTION,
    estimator_params: dict[str, Any] | None = None,
    n_jobs: int | None = None,
    progress: bool | str = "auto",
) -> Bunch:
    """Open-class domain shift ("in the wild"): fit on base classes, score base and novel.

    The base classes are the first half (rounded up, as in CoOp) of the class names in sorted
    order; the others are novel. Models are fitted on the base-class images of the source
    domains' "in" splits. On the target's "in" split they classify zero-shot over all
    classes; the base-class and novel-class images are scored separately and ``accuracy`` is
    their harmonic mean. Only zero-shot methods apply: a probe cannot predict unseen classes.

    Parameters
    ----------
    embedded : Bunch
        Output of :func:`embed_dataset`, with ``text_classes`` set to the base classes
        (:func:`base_classes`) when text interventions are used.
    targets, lam, n_components, tuning, seeds, holdout_fraction, estimator_params, n_jobs, \
progress
        As in :func:`domain_shift`. Oracle tuning maximises the harmonic mean on the
        target's "out" split; source tuning cross-validates on base-class images.
    methods : sequence of str, default=("clip_zero_shot", "icm_zero_shot")
        Zero-shot methods to compare.

    Returns
    -------
    result : Bunch
        As :func:`domain_shift`; rows also hold ``base_accuracy`` and ``novel_accuracy``.
    """
    targets = _check_targets(embedded, targets)
    methods, seeds = _check_common(methods, tuning, seeds, ZERO_SHOT_METHODS)
    lams, ks = _resolve_grid(lam, n_components, embedded.embeddings.shape[1])
    is_base = np.isin(embedded.labels, base_classes(embedded.class_names))

    def split(is_target: np.ndarray, holdout: np.ndarray) -> dict[str, np.ndarray]:
        parts = {"train": np.flatnonzero(~is_target & ~holdout & is_base)}
        for part, mask in (("test", ~holdout), ("validation", holdout)):
            parts[part + "_base"] = np.flatnonzero(is_target & mask & is_base)
            parts[part + "_novel"] = np.flatnonzero(is_target & mask & ~is_base)
        return parts

    return _leave_one_domain_out(
        "open_class",
        embedded,
        targets,
        seeds,
        holdout_fraction,
        split,
        _open_class_scores,
        progress,
        methods=methods,
        lams=lams,
        ks=ks,
        tuning=tuning,
        estimator_params=estimator_params,
        n_jobs=n_jobs,
    )


def base_classes(class_names: Sequence[str]) -> np.ndarray:
    """Labels of the base classes: the first half (rounded up) of the sorted class names.

    Examples
    --------
    >>> base_classes(["zebra", "ant", "cat"]).tolist()
    [1, 2]
    """
    order = np.argsort(np.asarray(class_names, dtype=str), kind="stable")
    return np.sort(order[: math.ceil(len(class_names) / 2)])


# ImageNet variants ----------------------------------------------------------------------------


def imagenet_shift(
    source: Bunch,
    variants: Mapping[str, Bunch],
    *,
    methods: Sequence[str] = tuple(METHODS),
    lam: float | Iterable[float] = DEFAULT_LAM,
    n_components: int | Iterable[int] | None = None,
    tuning: str = "source",
    seeds: int | Sequence[int] = (0,),
    holdout_fraction: float = DOMAINBED_HOLDOUT_FRACTION,
    estimator_params: dict[str, Any] | None = None,
    progress: bool | str = "auto",
) -> Bunch:
    """Fit on ImageNet, score on its variants (ImageNet-V2, -Sketch, -R, -A).

    Every method is fitted on the "in" split of the ImageNet source (per seed, as DomainBed
    splits a domain) and scored on each whole variant. On the 200-class ImageNet-R and -A,
    predictions are restricted to their classes. With one source domain there is no
    leave-one-domain-out: ``tuning="source"`` selects on the source's "out" split
    (``source-holdout``), ``tuning="oracle"`` on the variant itself (``target-oracle``).

    Parameters
    ----------
    source : Bunch
        :func:`embed_dataset` of the 1000-class ImageNet source, with class embeddings.
    variants : mapping of str to Bunch
        :func:`embed_dataset` of each variant (``imagenet_indices`` required; intervention
        and class embeddings are not needed).
    methods, lam, n_components, tuning, seeds, holdout_fraction, estimator_params, progress
        As in :func:`domain_shift`.

    Returns
    -------
    result : Bunch
        As :func:`domain_shift`, one row per seed x variant x method.
    """
    methods, seeds = _check_common(methods, tuning, seeds, tuple(METHODS))
    if source.class_embeddings is None or len(source.class_names) != 1000:
        raise ValueError(
            "The ImageNet source must hold all 1000 classes, with class embeddings; got "
            f"{len(source.class_names)} classes."
        )
    lams, ks = _resolve_grid(lam, n_components, source.embeddings.shape[1])
    targets = {}
    for name, variant in variants.items():
        indices = variant.imagenet_indices
        allowed = indices if indices.size < 1000 else None
        targets[name] = (variant.embeddings, indices[variant.labels], allowed)
    result = Bunch(protocol="imagenet", dataset=source.name, results=[], cv_results=[], sweep=[])

    def scores(estimator, train_val):
        out = {"source_validation": _accuracy(estimator, *train_val)}
        for name, (Z, y, allowed) in targets.items():
            out[name] = _accuracy(estimator, Z, y, allowed)
        return out

    with (
        _single_threaded_blas(),
        _progress(len(seeds) * len(methods), "ImageNet variants", progress) as bar,
    ):
        for seed in seeds:
            holdout = domainbed_holdout_mask(
                source.domains,
                source.domain_names,
                holdout_fraction=holdout_fraction,
                trial_seed=seed,
            )
            train, validation = np.flatnonzero(~holdout), np.flatnonzero(holdout)
            train_val = (source.embeddings[validation], source.labels[validation])
            for method in methods:
                base = {
                    "dataset": source.name,
                    "protocol": "imagenet",
                    "method": method,
                    "seed": seed,
                    "n_train": int(train.size),
                }
                if method.startswith("clip_"):
                    fitted = scores(
                        _fit(method, 0.0, None, source, train, estimator_params), train_val
                    )
                    for name, (_, y, _) in targets.items():
                        result.results.append(
                            {
                                **base,
                                "target": name,
                                "accuracy": fitted[name],
                                "n_test": int(y.size),
                                "lam": 0.0,
                                "n_components": source.embeddings.shape[1],
                                "tuning": "none",
                                "selection_score": float("nan"),
                            }
                        )
                    bar.update()
                    continue
                candidates = [
                    (
                        lam,
                        k,
                        scores(_fit(method, lam, k, source, train, estimator_params), train_val),
                    )
                    for lam in lams
                    for k in ks
                ]
                for name, (_, y, _) in targets.items():
                    sweep = [
                        {
                            **base,
                            "target": name,
                            "lam": lam,
                            "n_components": k,
                            "accuracy": s[name],
                            "validation": s[name],
                            "n_test": int(y.size),
                            "source_validation": s["source_validation"],
                        }
                        for lam, k, s in candidates
                    ]
                    result.sweep.extend(sweep)
                    chosen, label, selection_score = _select(sweep, "validation", tuning, None)
                    chosen = {
                        k: v
                        for k, v in chosen.items()
                        if k not in ("validation", "source_validation")
                    }
                    result.results.append(
                        {**chosen, "tuning": label, "selection_score": selection_score}
                    )
                bar.update()
    return result


# Featurizer-level entry points --------------------------------------------------------------


def _model_fields(featurizer: Any) -> dict[str, Any]:
    return {"model": featurizer.model_name, "pretrained": featurizer.pretrained}


def _annotate(result: Bunch, fields: dict[str, Any]) -> Bunch:
    for key in ("results", "cv_results", "sweep"):
        result[key] = [{**row, **fields} for row in result[key]]
    return result


def evaluate_domain_shift(
    featurizer: Any,
    dataset: Mapping[str, Any],
    *,
    interventions: Sequence[str] = ("image",),
    templates: Sequence[str] | None = None,
    **protocol_params: Any,
) -> Bunch:
    """Encode ``dataset`` with ``featurizer`` and run :func:`domain_shift` on it.

    ``interventions`` and ``templates`` go to :func:`embed_dataset`, the other keyword
    arguments to :func:`domain_shift`. Rows also record the model and the interventions.
    """
    embedded = embed_dataset(featurizer, dataset, interventions=interventions, templates=templates)
    result = domain_shift(embedded, **protocol_params)
    return _annotate(
        result, {**_model_fields(featurizer), "interventions": "+".join(interventions)}
    )


def evaluate_open_class(
    featurizer: Any,
    dataset: Mapping[str, Any],
    *,
    interventions: Sequence[str] = ("image",),
    templates: Sequence[str] | None = None,
    **protocol_params: Any,
) -> Bunch:
    """Encode ``dataset`` with ``featurizer`` and run :func:`open_class` on it.

    Text interventions are built from the base class names only.
    """
    embedded = embed_dataset(
        featurizer,
        dataset,
        interventions=interventions,
        templates=templates,
        text_classes=base_classes(dataset["class_names"]),
    )
    result = open_class(embedded, **protocol_params)
    return _annotate(
        result, {**_model_fields(featurizer), "interventions": "+".join(interventions)}
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
    """
    if "domain" in interventions:
        raise ValueError(
            "The ImageNet source is a single domain: 'domain' interventions do not apply."
        )
    embedded_source = embed_dataset(
        featurizer, source, interventions=interventions, templates=templates
    )
    embedded_variants = {
        name: embed_dataset(featurizer, variant, interventions=(), class_embeddings=False)
        for name, variant in variants.items()
    }
    result = imagenet_shift(embedded_source, embedded_variants, **protocol_params)
    return _annotate(
        result, {**_model_fields(featurizer), "interventions": "+".join(interventions)}
    )
