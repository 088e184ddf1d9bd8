"""Interventional validation: score a candidate on intervened copies of held-out source samples.

Validating on clean held-out source images cannot see a shortcut that every source domain
shares: the held-out domain has it too. Intervened copies keep the class and change the variant
factors (colours, backgrounds, style), so a classifier that leans on a variant shortcut loses
accuracy on them, and a selection rule that scores on them prefers the invariant one. The rule
uses source data only.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import sklearn
from sklearn.metrics import accuracy_score
from sklearn.pipeline import Pipeline
from sklearn.utils.metadata_routing import MetadataRequest
from sklearn.utils.validation import check_array

_UNSET = object()

#: The rules of :class:`InterventionalScorer`, from name to what they score.
RULES: dict[str, str] = {
    "pooled": "clean and intervened copies pooled",
    "intervened": "intervened copies alone",
    "worst": "the worse of the clean and the intervened score",
    "worst_view": "the worst of the clean score and each view's score",
}
DEFAULT_RULE = "worst"


def _featurizer_pipeline(estimator: Any) -> bool:
    """Whether ``estimator`` is a Pipeline that starts with a featurizer of images, such as
    :class:`skcicm.CLIPFeaturizer`, which can embed intervened copies itself."""
    return isinstance(estimator, Pipeline) and hasattr(estimator[0], "intervention_embeddings")


def _check_views(interventions: Any, n_samples: int) -> np.ndarray:
    """Interventions in the canonical sample-major layout (n_samples, n_views, n_features)."""
    views = check_array(
        interventions, allow_nd=True, ensure_2d=False, dtype=None, input_name="interventions"
    )
    if views.ndim == 2:
        views = views[:, None, :]
    if views.ndim != 3 or views.shape[0] != n_samples:
        raise ValueError(
            f"interventions has shape {views.shape}; expected the sample-major layout "
            f"({n_samples}, n_views, n_features) or ({n_samples}, n_features), one row per "
            "sample of X."
        )
    return views


def _missing_interventions_message(request: Any) -> str:
    """Why the scorer got no ``interventions``, and how to route them to it."""
    if not sklearn.get_config()["enable_metadata_routing"]:
        how = (
            "Metadata routing is off, so a search such as GridSearchCV does not pass "
            "interventions to a scorer: call sklearn.set_config(enable_metadata_routing=True) "
            "and scorer.set_score_request(interventions=True)."
        )
    elif request is None:
        how = "Request them with scorer.set_score_request(interventions=True)."
    else:
        how = "Pass interventions to the search's fit, under the name the scorer requests."
    return (
        "InterventionalScorer got no intervened copies: it needs interventions "
        "(n_samples, n_views, n_features) or a Pipeline whose first step is a CLIPFeaturizer "
        f"with interventions set. {how} GridSearchCV's default error_score=np.nan turns this "
        "error into NaN scores; pass error_score='raise' to see it."
    )


class InterventionalScorer:
    """Scorer on the intervened copies of held-out samples, for source-only model selection.

    Call it as ``scorer(estimator, X, y)`` like any scikit-learn scorer, e.g. as ``scoring=`` of
    :class:`~sklearn.model_selection.GridSearchCV` with
    :class:`~sklearn.model_selection.LeaveOneGroupOut` over the source domains, or of
    :class:`~skcicm.InvariantCausalMechanismCV`. Each intervened copy keeps its
    sample's label; ``rule`` says how the clean and intervened predictions make one score.

    The copies come from one of two places:

    * **images in a Pipeline**: when the estimator is a Pipeline whose first step can embed
      intervened copies (:class:`skcicm.CLIPFeaturizer` with ``interventions`` set), the scorer
      asks it for the copies of ``X`` and predicts them with the rest of the Pipeline;
    * **embeddings**: ``interventions`` routed as metadata, in the sample-major layout
      ``(n_samples, n_views, n_features)`` that cross-validation splits like ``X``. Request it
      with ``scorer.set_score_request(interventions=True)`` (or an alias) under
      ``sklearn.set_config(enable_metadata_routing=True)``.

    Read more in the :ref:`User Guide <shortcuts>`.

    Parameters
    ----------
    rule : {"pooled", "intervened", "worst", "worst_view"}, default="worst"
        How the score is made from the clean samples and their intervened copies:

        * ``"pooled"``: ``score_func`` over the clean samples and every copy together;
        * ``"intervened"``: over the copies alone;
        * ``"worst"``: the smaller of ``score_func`` over the clean samples and over the
          copies;
        * ``"worst_view"``: the smallest of ``score_func`` over the clean samples and over
          each view (the ``j``-th copy of every sample) on its own.

        ``"worst"`` is the default: a candidate must do well on the clean samples *and* on
        their copies, so a shortcut model (high clean, low intervened accuracy) loses, and so
        does one that the projection has stripped of class information. In
        ``benchmarks/selection_rules.py`` (docs/results.md, "Selection rules"; ToyWorld with
        a style shortcut, rho 0.5 to 0.99, four intervention sources, 5 seeds) it chose as
        well as ``"intervened"`` (within 0.4 points of it everywhere), and on plain domain
        shift it moved accuracy by -0.1 ± 0.1 (counterfactuals) and +0.1 ± 0.6
        (augmentations) points against clean selection. ``"pooled"`` (the default before)
        weighs the clean samples as one view among ``n_views + 1``: when a shortcut explains
        nearly all source labels, their accuracy dominates the score and rewards the shortcut
        model (1.7 points below ``"worst"`` with domain contrasts at rho 0.9 and 0.95; on a
        Colored-MNIST-style benchmark reported to us, not reproduced here, it gained nothing
        where ``"intervened"`` gained 22.8 points). ``"worst_view"`` was the least stable
        with two copies per image.
    include_clean : bool, default="deprecated"
        Deprecated: use ``rule``. True maps to ``rule="pooled"``, False to
        ``rule="intervened"``; giving it warns (FutureWarning), and giving it with another
        ``rule`` raises.
    score_func : callable, default=sklearn.metrics.accuracy_score
        ``score_func(y_true, y_pred)``, greater is better.

    Attributes
    ----------
    rule : str
        The rule in use (``include_clean`` mapped onto it).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.array([[0.0, 1.0], [0.0, -1.0]] * 5)
    >>> y = np.array([1, 0] * 5)
    >>> probe = LogisticRegression().fit(X, y)
    >>> views = np.stack([X, -X], axis=1)  # second copy flips the feature the probe reads
    >>> InterventionalScorer(rule="intervened")(probe, X, y, interventions=views)
    0.5
    >>> InterventionalScorer(rule="pooled")(probe, X, y, interventions=views)
    0.6666666666666666
    >>> InterventionalScorer(rule="worst_view")(probe, X, y, interventions=views)
    0.0
    >>> InterventionalScorer()(probe, X, y, interventions=views)  # worst of clean 1.0, copies 0.5
    0.5
    """

    def __init__(
        self,
        *,
        rule: str = DEFAULT_RULE,
        include_clean: bool | str = "deprecated",
        score_func: Callable[[np.ndarray, np.ndarray], float] = accuracy_score,
    ) -> None:
        if not isinstance(rule, str) or rule not in RULES:
            raise ValueError(
                f"The 'rule' parameter of InterventionalScorer must be a str among "
                f"{sorted(RULES)}; got {rule!r}."
            )
        if not isinstance(include_clean, str) or include_clean != "deprecated":
            if not isinstance(include_clean, bool):
                raise ValueError(f"include_clean must be a bool; got {include_clean!r}.")
            mapped = "pooled" if include_clean else "intervened"
            if rule not in (DEFAULT_RULE, mapped):
                raise ValueError(
                    f"include_clean={include_clean} means rule={mapped!r}, which contradicts "
                    f"rule={rule!r}; give rule alone (include_clean is deprecated)."
                )
            warnings.warn(
                f"include_clean is deprecated and will be removed; use rule={mapped!r} "
                f"(include_clean={include_clean}).",
                FutureWarning,
                stacklevel=2,
            )
            rule = mapped
        if not callable(score_func):
            raise ValueError(f"score_func must be callable; got {score_func!r}.")
        self.rule = rule
        self.include_clean = include_clean
        self.score_func = score_func
        self._interventions_request: Any = None

    def __repr__(self) -> str:
        name = getattr(self.score_func, "__name__", repr(self.score_func))
        return f"InterventionalScorer(rule={self.rule!r}, score_func={name})"

    def _routing_repr(self) -> str:
        return repr(self)

    def set_score_request(
        self, *, interventions: bool | str | None = _UNSET
    ) -> InterventionalScorer:
        """Request ``interventions`` as metadata, as scikit-learn's ``set_score_request``.

        Only available with ``sklearn.set_config(enable_metadata_routing=True)``.

        Parameters
        ----------
        interventions : bool, str or None, optional
            True requests the metadata ``interventions``, False refuses it, None raises if it
            is given, and a string requests it under that alias. Left out, the request is
            unchanged.

        Returns
        -------
        self : InterventionalScorer
            The scorer.

        Raises
        ------
        RuntimeError
            When metadata routing is not enabled.
        """
        if not sklearn.get_config()["enable_metadata_routing"]:
            raise RuntimeError(
                "set_score_request needs metadata routing; enable it with "
                "sklearn.set_config(enable_metadata_routing=True)."
            )
        if interventions is not _UNSET:
            self._interventions_request = interventions
        return self

    def get_metadata_routing(self) -> MetadataRequest:
        """The metadata this scorer requests, for scikit-learn's routing.

        Returns
        -------
        sklearn.utils.metadata_routing.MetadataRequest
            The request of ``interventions`` by ``score``.
        """
        request = MetadataRequest(owner=self)
        request.score.add_request(param="interventions", alias=self._interventions_request)
        return request

    def __call__(self, estimator: Any, X: Any, y: Any, *, interventions: Any = None) -> float:
        """Score the fitted ``estimator`` on the intervened copies of ``X``.

        Parameters
        ----------
        estimator : fitted classifier or Pipeline
        X : array-like or list of images
            Held-out samples: embeddings, or images for a Pipeline that starts with a
            featurizer.
        y : array-like of shape (n_samples,)
            Their labels.
        interventions : array-like of shape (n_samples, n_views, n_features), default=None
            Embeddings of the intervened copies; required unless the estimator is a featurizer
            Pipeline. For such a Pipeline they are predicted by the steps after the featurizer.

        Returns
        -------
        score : float
        """
        y = np.asarray(y)
        featurized = _featurizer_pipeline(estimator)
        if interventions is None:
            if not featurized:
                raise ValueError(_missing_interventions_message(self._interventions_request))
            if getattr(estimator[0], "interventions", True) is None:
                raise ValueError(
                    "InterventionalScorer scores intervened copies of the held-out images, but "
                    "the Pipeline's featurizer has interventions=None and computes none (text "
                    "prompt pairs change the fit only). Set its interventions ('paper' or your "
                    "own transforms, e.g. Pipeline.set_params(clip__interventions='paper')), "
                    "or score with clean accuracy (scoring=None)."
                )
            interventions = estimator[0].intervention_embeddings(X)
        views = _check_views(interventions, y.shape[0])
        n_samples, n_views, n_features = views.shape
        head = estimator[1:] if featurized else estimator
        expected = getattr(head, "n_features_in_", None)
        if expected is not None and n_features != expected:
            source = "the featurizer's intervened copies" if featurized else "interventions"
            raise ValueError(
                f"{source} have {n_features} features per view (shape {views.shape}), but "
                f"the estimator was fitted on {expected} features; each view must be an "
                "embedding of the same model as X."
            )
        predicted = head.predict(views.reshape(n_samples * n_views, n_features))
        truth = np.repeat(y, n_views)
        if self.rule == "intervened":
            return float(self.score_func(truth, predicted))
        clean = estimator.predict(X)
        if self.rule == "pooled":
            return float(
                self.score_func(np.concatenate([y, truth]), np.concatenate([clean, predicted]))
            )
        scores = [self.score_func(y, clean)]
        if self.rule == "worst":
            scores.append(self.score_func(truth, predicted))
        else:
            # Sample-major: view j of every sample is every n_views-th prediction from j.
            scores += [self.score_func(y, predicted[j::n_views]) for j in range(n_views)]
        return float(min(scores))
