"""Tuning rules: which (``lam``, ``n_components``) candidate of a sweep a protocol reports.

Each rule is a function ``rule(candidates, target, context) -> Choice`` registered in
:data:`TUNING_RULES` under the name the protocols' ``tuning`` parameter takes:

``"source"``
    leave-one-domain-out cross-validation on the source domains
    (:func:`~skcicm.model_selection.lodo_grid_search`), labelled ``source-lodo``; with a single
    source domain (ImageNet), the best score on the source's held-out part
    (``source-holdout``).
``"interventional"``
    the same leave-one-domain-out loop, each candidate scored by
    :class:`~skcicm.model_selection.InterventionalScorer` (its ``rule``: the protocols'
    ``interventional_rule``, else the scorer's default) on the held-out source domain: a
    shortcut that every source shares is invisible to clean validation, but the intervened
    copies change the variant factors. Labelled
    ``source-lodo-interventional``; needs per-sample copies (``validation_views`` or
    ``interventions`` of the data).
``"oracle"``
    the best score on the target's held-out part, labelled ``target-oracle``: it looks at the
    target, so it is an upper bound, not a result.

A sweep of one candidate is reported as ``given`` whatever the rule. When plain CLIP joins
the candidates (grids that cannot express it, such as ``objective="ratio"``), source selection
prefers it on ties, as the simpler model; the oracle keeps the first best grid point.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold
from sklearn.utils import Bunch

from skcicm.evaluation.embedded import EmbeddedDataset
from skcicm.evaluation.options import is_zero_shot
from skcicm.model_selection import InterventionalScorer, lodo_grid_search


@dataclasses.dataclass
class Candidate:
    """One fitted grid point (or plain CLIP) and its scores per target.

    ``scores[target]`` holds ``"accuracy"`` (reported), ``"validation"`` (on the target's
    held-out part) and, where the protocol has one, ``"source_validation"``.
    """

    lam: float
    n_components: int
    scores: dict[str, dict[str, Any]]
    plain_clip: bool = False


@dataclasses.dataclass
class Choice:
    """The candidate a rule chose, the label of the rule and the score it chose by."""

    candidate: Candidate
    tuning: str
    selection_score: float


@dataclasses.dataclass
class SelectionContext:
    """What a tuning rule may use besides the candidates: the source data of the split.

    ``data`` is already :meth:`~skcicm.evaluation.EmbeddedDataset.source_only`, and ``train``
    indexes source samples only. Cross-validation rows are appended to ``cv_results``.
    """

    data: EmbeddedDataset
    train: np.ndarray
    method: str
    lams: list[float]
    ks: list[int]
    estimator_params: dict[str, Any]
    baseline_params: dict[str, Any]
    n_jobs: int | None
    source_selection: str
    row: dict[str, Any]
    cv_results: list[dict[str, Any]]
    interventional_rule: str | None = None
    selection_folds: int | None = None
    _searches: dict[tuple[bool, bool], Bunch] = dataclasses.field(default_factory=dict)

    def scorer(self) -> InterventionalScorer:
        """The scorer of the ``"interventional"`` rule: ``interventional_rule``, or the
        default of :class:`~skcicm.model_selection.InterventionalScorer`."""
        if self.interventional_rule is None:
            return InterventionalScorer()
        return InterventionalScorer(rule=self.interventional_rule)

    def lodo(self, plain_clip: bool = False, interventional: bool = False) -> Bunch:
        """Leave-one-domain-out search over the grid, or over plain CLIP alone (cached),
        scored by accuracy or, with ``interventional``, by :func:`interventional_score`."""
        key = (plain_clip, interventional)
        if key not in self._searches:
            self._searches[key] = self._search(plain_clip, interventional)
        return self._searches[key]

    def _search(self, plain_clip: bool, interventional: bool) -> Bunch:
        data, train = self.data, self.train
        zero_shot = is_zero_shot(self.method)
        grid: dict[str, Any] = {"lam": self.lams, "n_components": self.ks}
        fit_data: dict[str, Any] = {
            "interventions": None if data.interventions is None else data.interventions[train],
            "intervention_pairs": data.intervention_pairs,
            "domain_interventions": data.domain_interventions,
            "estimator_params": self.estimator_params,
        }
        if plain_clip:
            grid = {"lam": [0.0], "n_components": [data.n_features]}
            fit_data = {"estimator_params": self.baseline_params}
        if interventional:
            fit_data["scoring"] = functools.partial(interventional_score, rule=self.scorer().rule)
            fit_data["score_params"] = {"validation_views": validation_views(data)[train]}
        groups = None
        if self.selection_folds is not None:
            # Stratified folds keep every class in every training fold, which leaving out a
            # domain does not when the domains carry the shortcut.
            folds = StratifiedKFold(self.selection_folds, shuffle=True, random_state=0)
            groups = np.empty(train.size, dtype=int)
            for fold, (_, held_out) in enumerate(folds.split(train, data.labels[train])):
                groups[held_out] = fold
        search = lodo_grid_search(
            data.embeddings[train],
            data.labels[train],
            data.domains[train],
            groups=groups,
            head="zero_shot" if zero_shot else "linear_probe",
            class_embeddings=data.class_embeddings if zero_shot else None,
            n_jobs=self.n_jobs,
            **grid,
            **fit_data,
        )
        extra: dict[str, Any] = {"plain_clip": True} if plain_clip else {}
        if self.selection_folds is not None:
            extra["selection_folds"] = self.selection_folds
        if interventional:
            extra["scoring"] = "interventional"
            extra["interventional_rule"] = self.scorer().rule
        self.cv_results.extend({**self.row, **cv_row, **extra} for cv_row in search.cv_results)
        return search


def validation_views(data: EmbeddedDataset) -> np.ndarray:
    """The intervened copies the interventional rule scores on (raises ValueError).

    The protocols' checks call it before encoding too, where only the presence of the copies
    is known (:func:`~skcicm.evaluation.preflight.unencoded`).
    """
    views = data.interventions if data.validation_views is None else data.validation_views
    if views is None:
        raise ValueError(
            "tuning: 'interventional' scores candidates on intervened copies of the "
            "held-out source samples, but this data has none: use image or "
            "counterfactual interventions, or give validation_views."
        )
    return views


def interventional_score(
    estimator: Any,
    X: np.ndarray,
    y: np.ndarray,
    *,
    validation_views: np.ndarray,
    rule: str | None = None,
) -> float:
    """Accuracy on the clean and intervened copies of held-out samples, combined by ``rule``.

    A scorer for :func:`~skcicm.model_selection.lodo_grid_search`, which splits
    ``validation_views`` (sample-major) with the samples; ``rule`` is that of
    :class:`~skcicm.model_selection.InterventionalScorer` (None: its default).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.dummy import DummyClassifier
    >>> X, y = np.zeros((2, 1)), np.array([0, 1])
    >>> always_zero = DummyClassifier(strategy="constant", constant=0).fit(X, y)
    >>> interventional_score(always_zero, X, y, validation_views=np.zeros((2, 1, 1)))
    0.5
    """
    scorer = InterventionalScorer() if rule is None else InterventionalScorer(rule=rule)
    return scorer(estimator, X, y, interventions=validation_views)


Rule = Callable[[list[Candidate], str, SelectionContext], Choice]


def _split_off_plain_clip(candidates: list[Candidate]) -> tuple[list[Candidate], Candidate | None]:
    grid = [c for c in candidates if not c.plain_clip]
    clip = next((c for c in candidates if c.plain_clip), None)
    return grid, clip


def _oracle(candidates: list[Candidate], target: str, context: SelectionContext) -> Choice:
    grid, clip = _split_off_plain_clip(candidates)
    best = max(grid, key=lambda c: c.scores[target]["validation"])
    if clip is not None and clip.scores[target]["validation"] > best.scores[target]["validation"]:
        best = clip
    return Choice(best, "target-oracle", best.scores[target]["validation"])


def _lodo_choice(
    candidates: list[Candidate], context: SelectionContext, interventional: bool, label: str
) -> Choice:
    grid, clip = _split_off_plain_clip(candidates)
    search = context.lodo(interventional=interventional)
    params = search.best_params
    best = next(
        c for c in grid if (c.lam, c.n_components) == (params["lam"], params["n_components"])
    )
    choice = Choice(best, label, float(search.best_score))
    if clip is not None:
        clip_score = float(context.lodo(plain_clip=True, interventional=interventional).best_score)
        if clip_score >= choice.selection_score:
            choice = Choice(clip, label, clip_score)
    return choice


def _source(candidates: list[Candidate], target: str, context: SelectionContext) -> Choice:
    if context.source_selection == "holdout":
        best = max(candidates, key=lambda c: c.scores[target]["source_validation"])
        return Choice(best, "source-holdout", best.scores[target]["source_validation"])
    return _lodo_choice(candidates, context, False, "source-lodo")


def _interventional(candidates: list[Candidate], target: str, context: SelectionContext) -> Choice:
    return _lodo_choice(candidates, context, True, "source-lodo-interventional")


TUNING_RULES: dict[str, Rule] = {
    "source": _source,
    "interventional": _interventional,
    "oracle": _oracle,
}


def select(
    rule: str, candidates: list[Candidate], target: str, context: SelectionContext
) -> Choice:
    """Apply the tuning ``rule`` to the ``candidates`` of one method and ``target``."""
    if len(candidates) == 1:
        return Choice(candidates[0], "given", math.nan)
    return TUNING_RULES[rule](candidates, target, context)
