"""Interventional validation: score a candidate on intervened copies of held-out source samples.

Validating on clean held-out source images cannot see a shortcut that every source domain
shares: the held-out domain has it too. Intervened copies keep the class and change the variant
factors (colours, backgrounds, style), so a classifier that leans on a variant shortcut loses
accuracy on them, and a selection rule that scores on them prefers the invariant one. The rule
uses source data only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import sklearn
from sklearn.metrics import accuracy_score
from sklearn.pipeline import Pipeline
from sklearn.utils.metadata_routing import MetadataRequest
from sklearn.utils.validation import check_array

_UNSET = object()


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
    :class:`~sklearn.model_selection.LeaveOneGroupOut` over the source domains. The score is
    ``score_func`` over the predictions of every intervened copy of every held-out sample (each
    copy keeps its sample's label), together with the clean samples when ``include_clean``.

    The copies come from one of two places:

    * **images in a Pipeline**: when the estimator is a Pipeline whose first step can embed
      intervened copies (:class:`skcicm.CLIPFeaturizer` with ``interventions`` set), the scorer
      asks it for the copies of ``X`` and predicts them with the rest of the Pipeline;
    * **embeddings**: ``interventions`` routed as metadata, in the sample-major layout
      ``(n_samples, n_views, n_features)`` that cross-validation splits like ``X``. Request it
      with ``scorer.set_score_request(interventions=True)`` (or an alias) under
      ``sklearn.set_config(enable_metadata_routing=True)``.

    Parameters
    ----------
    include_clean : bool, default=True
        Score clean and intervened copies together (pooled); False scores the intervened
        copies alone. Pooled selected at least as well in every setting of
        ``benchmarks/shortcut_study.py`` (shortcut and plain domain shift, four intervention
        sources, three seeds), and better with augmentations.
    score_func : callable, default=sklearn.metrics.accuracy_score
        ``score_func(y_true, y_pred)``, greater is better.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.array([[0.0, 1.0], [0.0, -1.0]] * 5)
    >>> y = np.array([1, 0] * 5)
    >>> probe = LogisticRegression().fit(X, y)
    >>> views = np.stack([X, -X], axis=1)  # second copy flips the feature the probe reads
    >>> InterventionalScorer(include_clean=False)(probe, X, y, interventions=views)
    0.5
    >>> InterventionalScorer()(probe, X, y, interventions=views)  # clean and intervened pooled
    0.6666666666666666
    """

    def __init__(
        self,
        *,
        include_clean: bool = True,
        score_func: Callable[[np.ndarray, np.ndarray], float] = accuracy_score,
    ) -> None:
        if not isinstance(include_clean, bool):
            raise ValueError(f"include_clean must be a bool; got {include_clean!r}.")
        if not callable(score_func):
            raise ValueError(f"score_func must be callable; got {score_func!r}.")
        self.include_clean = include_clean
        self.score_func = score_func
        self._interventions_request: Any = None

    def __repr__(self) -> str:
        name = getattr(self.score_func, "__name__", repr(self.score_func))
        return f"InterventionalScorer(include_clean={self.include_clean}, score_func={name})"

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
        if self.include_clean:
            predicted = np.concatenate([estimator.predict(X), predicted])
            truth = np.concatenate([y, truth])
        return float(self.score_func(truth, predicted))
