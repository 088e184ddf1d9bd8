"""The core every protocol runs: fit each method's candidates, score them, select, record.

A protocol describes one split by the training samples and a *scorer*: a function from a
fitted estimator to ``{target: metrics}``. :func:`run_split` then fits plain CLIP once per
baseline method, and every (``lam``, ``n_components``) grid point per CLIP-ICM method; it
records the target score of every candidate (the *sweep*, the data of the sensitivity plots)
and, for every tuning rule, the candidate the rule chose (``skcicm.evaluation.selection``).
The sweep reports how the hyperparameters matter; it never feeds the source-tuned results.

:func:`run_leave_one_domain_out` is the loop of the domain-shift protocols: DomainBed splits
(:func:`~skcicm.datasets.domainbed.domainbed_holdout_mask`) per seed, each domain the target
in turn, and models fitted on :meth:`~skcicm.evaluation.EmbeddedDataset.source_only` data.
Its options are validated once, by :func:`check_lodo_options`: on the encoded data by the
protocol, and before encoding by :func:`check_lodo_before_encoding`, on a stand-in
(:func:`~skcicm.evaluation.preflight.unencoded`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.utils import Bunch
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from skcicm.datasets.domainbed import domainbed_holdout_mask
from skcicm.evaluation.embedded import EmbeddedDataset, check_interventions
from skcicm.evaluation.options import (
    INTERVENTIONAL_RULES,
    TUNING,
    check_choice,
    check_listed,
    check_n_jobs,
    default_n_components,
    is_baseline,
    is_zero_shot,
)
from skcicm.evaluation.preflight import check_options, embedding_dim, unencoded
from skcicm.evaluation.selection import Candidate, SelectionContext, select, validation_views
from skcicm.icm._estimator import InvariantCausalMechanism
from skcicm.model_selection import check_grid

# Estimator parameters that shape the ICM subspace only: plain CLIP (lam = 0, K = d with the
# difference objective) is a rotation of CLIP's space whatever they are, so it ignores them.
_SUBSPACE_PARAMS = ("selection", "lam_scale", "objective")

Scorer = Callable[[InvariantCausalMechanism], dict[str, dict[str, Any]]]


@dataclasses.dataclass
class SweepSettings:
    """What to fit on every split: methods, grid, tuning rules and estimator parameters.

    ``baseline_candidate`` adds plain CLIP to the candidates of every CLIP-ICM method, for
    grids that cannot express it (``objective="ratio"``). ``interventional_rule`` is the
    ``rule`` of :class:`~skcicm.model_selection.InterventionalScorer` that the
    ``"interventional"`` tuning rule scores with; None is the scorer's default.
    ``selection_folds`` replaces leave-one-domain-out by that many stratified folds of the
    training samples in source selection.
    """

    methods: list[str]
    lams: list[float]
    ks: list[int]
    tuning: list[str]
    estimator_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    n_jobs: int | None = None
    baseline_candidate: bool = False
    interventional_rule: str | None = None
    selection_folds: int | None = None

    @classmethod
    def checked(
        cls,
        methods: str | Iterable[str],
        allowed_methods: Sequence[str],
        lam: float | Iterable[float],
        n_components: int | Iterable[int] | None,
        n_features: int,
        tuning: str | Iterable[str],
        **settings: Any,
    ) -> SweepSettings:
        """Validate the protocol arguments into settings (raises ValueError)."""
        methods = check_choice(methods, allowed_methods, "methods")
        tuning = check_choice(tuning, TUNING, "tuning")
        check_n_jobs(settings.get("n_jobs"))
        ks = default_n_components(n_features) if n_components is None else n_components
        lams, ks = check_grid(lam, ks, n_features)
        settings["estimator_params"] = dict(settings.get("estimator_params") or {})
        rule = settings.get("interventional_rule")
        if rule is not None and rule not in INTERVENTIONAL_RULES:
            raise ValueError(
                f"interventional_rule: must be one of {list(INTERVENTIONAL_RULES)}; got {rule!r}."
            )
        folds = settings.get("selection_folds")
        if folds is not None and (
            isinstance(folds, bool) or not isinstance(folds, int) or folds < 2
        ):
            raise ValueError(f"selection_folds: must be None or an int >= 2; got {folds!r}.")
        if rule is not None and "interventional" not in tuning:
            raise ValueError(
                f"interventional_rule: {rule!r} applies to tuning 'interventional', which is "
                f"not among the tuning rules {tuning}."
            )
        return cls(methods, lams, ks, tuning, **settings)

    @property
    def baseline_params(self) -> dict[str, Any]:
        """The estimator parameters of plain CLIP."""
        return {k: v for k, v in self.estimator_params.items() if k not in _SUBSPACE_PARAMS}


def check_seeds(seeds: int | Iterable[int]) -> list[int]:
    """Seeds as a non-empty list of int."""
    seeds = [seeds] if isinstance(seeds, int) else [int(s) for s in seeds]
    return check_listed(seeds, "seeds")


def fit_method(
    method: str,
    data: EmbeddedDataset,
    index: np.ndarray,
    *,
    lam: float = 0.0,
    n_components: int | None = None,
    estimator_params: dict[str, Any] | None = None,
) -> InvariantCausalMechanism:
    """Fit ``method`` on the samples ``index`` of ``data``.

    Plain CLIP methods (``clip_*``) ignore ``lam``, ``n_components``, the interventions and
    the subspace-shaping parameters: all directions, no penalty, a rotation of CLIP's space.
    """
    params = dict(estimator_params or {})
    head = "zero_shot" if is_zero_shot(method) else "linear_probe"
    kwargs: dict[str, Any] = {}
    baseline = is_baseline(method)
    if baseline:
        lam, n_components = 0.0, None
        params = {k: v for k, v in params.items() if k not in _SUBSPACE_PARAMS}
    else:
        if data.interventions is not None:
            kwargs["interventions"] = data.interventions[index]
        if data.intervention_pairs is not None:
            kwargs["intervention_pairs"] = data.intervention_pairs
        if data.domain_interventions:
            kwargs["domains"] = data.domains[index]
    if head == "zero_shot":
        kwargs["class_embeddings"] = data.class_embeddings
    estimator = InvariantCausalMechanism(n_components=n_components, lam=lam, head=head, **params)
    return estimator.fit(data.embeddings[index], data.labels[index], **kwargs)


def accuracy(
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


def new_result(protocol: str, dataset: str) -> Bunch:
    """An empty protocol result: ``results``, ``cv_results`` and ``sweep`` rows."""
    return Bunch(protocol=protocol, dataset=dataset, results=[], cv_results=[], sweep=[])


def _fit_candidates(
    method: str, data: EmbeddedDataset, train: np.ndarray, score: Scorer, settings: SweepSettings
) -> list[Candidate]:
    """Every grid point of ``method``, fitted and scored; plain CLIP last when asked for."""
    params = settings.estimator_params
    candidates = []
    for lam in settings.lams:
        for k in settings.ks:
            fitted = fit_method(
                method, data, train, lam=lam, n_components=k, estimator_params=params
            )
            candidates.append(Candidate(lam, k, score(fitted)))
    if settings.baseline_candidate:
        clip = fit_method(method.replace("icm_", "clip_", 1), data, train, estimator_params=params)
        candidates.append(Candidate(0.0, data.n_features, score(clip), plain_clip=True))
    return candidates


def run_split(
    data: EmbeddedDataset,
    train: np.ndarray,
    score: Scorer,
    settings: SweepSettings,
    *,
    base: dict[str, Any],
    result: Bunch,
    source_selection: str = "lodo",
) -> None:
    """Fit, score and select every method on one split; append rows to ``result``.

    Parameters
    ----------
    data : EmbeddedDataset
        Source-only data (:meth:`EmbeddedDataset.source_only`); ``train`` indexes it.
    train : ndarray of int
        Training samples.
    score : callable
        ``score(estimator) -> {target: metrics}``; see :class:`~.selection.Candidate`.
    settings : SweepSettings
    base : dict
        Fields of every row of this split (dataset, protocol, seed...).
    result : Bunch
        From :func:`new_result`.
    source_selection : {"lodo", "holdout"}, default="lodo"
        How the ``"source"`` rule selects: cross-validation over the source domains, or the
        ``"source_validation"`` metric (a single source domain).
    """
    n_features = data.n_features
    params = settings.estimator_params
    for method in settings.methods:
        row = {**base, "method": method, "n_train": int(train.size)}
        if is_baseline(method):
            scores = score(fit_method(method, data, train, estimator_params=params))
            for target, metrics in scores.items():
                result.results.append(
                    {
                        **row,
                        "target": target,
                        **metrics,
                        "lam": 0.0,
                        "n_components": n_features,
                        "tuning": "none",
                        "selection_score": float("nan"),
                    }
                )
            continue
        candidates = _fit_candidates(method, data, train, score, settings)
        context = SelectionContext(
            data=data,
            train=train,
            method=method,
            lams=settings.lams,
            ks=settings.ks,
            estimator_params=params,
            baseline_params=settings.baseline_params,
            n_jobs=settings.n_jobs,
            source_selection=source_selection,
            interventional_rule=settings.interventional_rule,
            selection_folds=settings.selection_folds,
            row=row,
            cv_results=result.cv_results,
        )
        for target in candidates[0].scores:
            result.sweep.extend(
                {
                    **row,
                    "target": target,
                    "lam": c.lam,
                    "n_components": c.n_components,
                    **c.scores[target],
                }
                for c in candidates
                if not c.plain_clip
            )
            for rule in settings.tuning:
                choice = select(rule, candidates, target, context)
                chosen = choice.candidate
                extra = {"plain_clip": chosen.plain_clip} if settings.baseline_candidate else {}
                if rule == "interventional" and choice.tuning != "given":
                    extra["interventional_rule"] = context.scorer().rule
                if settings.selection_folds is not None and rule != "oracle":
                    extra["selection_folds"] = settings.selection_folds
                result.results.append(
                    {
                        **row,
                        "target": target,
                        "lam": chosen.lam,
                        "n_components": chosen.n_components,
                        **chosen.scores[target],
                        "tuning": choice.tuning,
                        "selection_score": choice.selection_score,
                        **extra,
                    }
                )


def single_threaded_blas() -> threadpool_limits:
    """Limit BLAS to one thread for the many small fits of a protocol."""
    # The fits are small (d x d eigenproblems, probes on d features): threads inside each
    # matrix product gain little, and on a busy machine spinning BLAS threads slow them by
    # an order of magnitude. Parallelism belongs across candidates (n_jobs).
    return threadpool_limits(limits=1, user_api="blas")


def progress_bar(total: int, desc: str, progress: bool | str) -> tqdm:
    """A tqdm bar over ``total`` tasks; ``progress="auto"`` shows it on a terminal."""
    disable = None if progress == "auto" else not progress
    return tqdm(total=total, desc=desc, unit="task", disable=disable)


def holdout_mask(data: EmbeddedDataset, seed: int, holdout_fraction: float) -> np.ndarray:
    """DomainBed's "out" part of every domain for trial ``seed`` (True: held out)."""
    return domainbed_holdout_mask(
        data.domains, data.domain_names, holdout_fraction=holdout_fraction, trial_seed=seed
    )


def check_targets(data: EmbeddedDataset, targets: str | Sequence[str] | None) -> list[str]:
    """The target domains, all by default (raises ValueError for unknown ones)."""
    if len(data.domain_names) < 2:
        raise ValueError(f"{data.name} has one domain; domain shift needs at least two.")
    if targets is None:
        return list(data.domain_names)
    targets = check_listed([targets] if isinstance(targets, str) else targets, "targets")
    unknown = [t for t in targets if t not in data.domain_names]
    if unknown:
        raise ValueError(
            f"targets: unknown domains {unknown}; {data.name} has {data.domain_names}."
        )
    return targets


def check_holdout_fraction(holdout_fraction: float) -> None:
    """Refuse a ``holdout_fraction`` outside (0, 1): every domain needs both splits."""
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(
            f"holdout_fraction: must be between 0 and 1 (exclusive); got {holdout_fraction}."
        )


def check_holdout_splits(data: EmbeddedDataset, seeds: list[int], holdout_fraction: float) -> None:
    """Refuse a ``holdout_fraction`` whose split of some seed leaves a domain unusable.

    Every domain is a source for the other targets and a target itself: its "in" split is
    fitted on and needs two classes, its "out" split selects and needs a sample.
    """
    check_holdout_fraction(holdout_fraction)
    for seed in seeds:
        holdout = holdout_mask(data, seed, holdout_fraction)
        for name in data.domain_names:
            in_domain = data.domains == name
            classes_in = np.unique(data.labels[in_domain & ~holdout]).size
            n_out = int((in_domain & holdout).sum())
            if classes_in < 2 or not n_out:
                raise ValueError(
                    f"holdout_fraction: {holdout_fraction} leaves domain {name!r} "
                    f"({int(in_domain.sum())} images, seed {seed}) with {classes_in} class(es) "
                    f"in its 'in' split and {n_out} images in its 'out' split; both splits "
                    "need images, and the 'in' split at least two classes."
                )


@dataclasses.dataclass
class LodoSplits:
    """The validated splits of a leave-one-domain-out protocol: targets, seeds, holdout."""

    targets: list[str]
    seeds: list[int]
    holdout_fraction: float

    @classmethod
    def checked(
        cls,
        data: EmbeddedDataset,
        targets: str | Sequence[str] | None,
        seeds: int | Iterable[int],
        holdout_fraction: float,
    ) -> LodoSplits:
        """Validate the split arguments against the domains and labels of ``data``."""
        targets = check_targets(data, targets)
        seeds = check_seeds(seeds)
        check_holdout_splits(data, seeds, holdout_fraction)
        return cls(targets, seeds, holdout_fraction)


def check_lodo_options(
    embedded: EmbeddedDataset,
    allowed_methods: Sequence[str],
    *,
    targets: str | Sequence[str] | None,
    methods: str | Iterable[str],
    lam: float | Iterable[float],
    n_components: int | Iterable[int] | None,
    tuning: str | Iterable[str],
    seeds: int | Iterable[int],
    holdout_fraction: float,
    estimator_params: dict[str, Any] | None,
    n_jobs: int | None,
    baseline_candidate: bool = False,
    interventional_rule: str | None = None,
) -> tuple[SweepSettings, LodoSplits]:
    """The options of a leave-one-domain-out protocol, validated against ``embedded``.

    Only the labels, domains, names, embedding dimension and whether intervened copies exist
    are read of ``embedded``, so the same checks run before encoding, on
    :func:`~skcicm.evaluation.preflight.unencoded`.
    """
    settings = SweepSettings.checked(
        methods,
        allowed_methods,
        lam,
        n_components,
        embedded.n_features,
        tuning,
        estimator_params=estimator_params,
        n_jobs=n_jobs,
        baseline_candidate=baseline_candidate,
        interventional_rule=interventional_rule,
    )
    if "interventional" in settings.tuning:
        validation_views(embedded)
    splits = LodoSplits.checked(embedded, targets, seeds, holdout_fraction)
    tuned = {"source", "interventional"} & set(settings.tuning)
    if tuned and len(settings.lams) * len(settings.ks) + settings.baseline_candidate > 1:
        for target in splits.targets:
            sources = [name for name in embedded.domain_names if name != target]
            if len(sources) < 2:
                raise ValueError(
                    f"tuning {sorted(tuned)} leaves one source domain out at a time, and "
                    f"target {target!r} leaves only {sources} as sources; give three or more "
                    "domains, single lam and n_components values, or tuning 'oracle'."
                )
    return settings, splits


def check_lodo_before_encoding(
    protocol: Callable[..., Bunch],
    allowed_methods: Sequence[str],
    featurizer: Any,
    dataset: Mapping[str, Any],
    interventions: Sequence[str],
    protocol_params: dict[str, Any],
) -> None:
    """:func:`check_lodo_options` of ``protocol``'s arguments, on ``dataset`` not yet encoded."""
    interventions = check_interventions(featurizer, dataset, interventions)
    stand_in = unencoded(dataset, embedding_dim(featurizer), interventions)
    check = functools.partial(check_lodo_options, allowed_methods=allowed_methods)
    check_options(check, protocol, stand_in, **protocol_params)


SplitMaker = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]
SplitScorer = Callable[[InvariantCausalMechanism, EmbeddedDataset, dict[str, np.ndarray]], dict]


def run_leave_one_domain_out(
    protocol: str,
    data: EmbeddedDataset,
    splits: LodoSplits,
    make_split: SplitMaker,
    score: SplitScorer,
    settings: SweepSettings,
    progress: bool | str,
) -> Bunch:
    """Run every (seed, target) split of a domain-shift protocol.

    ``make_split(is_target, holdout)`` returns index arrays, ``"train"`` among them (it must
    hold no target sample); ``score(estimator, data, split)`` the metrics of the target.
    """
    targets, seeds = splits.targets, splits.seeds
    result = new_result(protocol, data.name)
    description = protocol.replace("_", " ").capitalize()
    with (
        single_threaded_blas(),
        progress_bar(len(seeds) * len(targets), description, progress) as bar,
    ):
        for seed in seeds:
            holdout = holdout_mask(data, seed, splits.holdout_fraction)
            for target in targets:
                is_target = data.domains == target
                split = make_split(is_target, holdout)
                if is_target[split["train"]].any():
                    raise RuntimeError(
                        f"The training split of target {target} holds target samples."
                    )
                base = {"dataset": data.name, "protocol": protocol, "target": target, "seed": seed}
                run_split(
                    data.source_only(target),
                    split["train"],
                    lambda estimator, split=split, target=target: {
                        target: score(estimator, data, split)
                    },
                    settings,
                    base=base,
                    result=result,
                )
                bar.update()
    return result


def annotate(result: Bunch, featurizer: Any, interventions: Sequence[str]) -> Bunch:
    """Record the model and the intervention sources in every row of ``result``."""
    fields = {
        "model": featurizer.model_name,
        "pretrained": featurizer.pretrained,
        "interventions": "+".join(interventions),
    }
    for key in ("results", "cv_results", "sweep"):
        result[key] = [{**row, **fields} for row in result[key]]
    return result
