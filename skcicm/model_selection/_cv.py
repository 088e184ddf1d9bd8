"""Cross-validated CLIP-ICM that shares statistics and eigendecompositions across the grid.

A grid search refits every candidate from scratch: ``Z^T Z``, ``Delta^T Delta`` and an
eigendecomposition per candidate and fold. Here the statistics take one pass over the data
(each training fold sums the other test folds' statistics when the folds partition the
samples), each (fold, lam, lam_scale) gets one eigendecomposition, and every
``n_components`` and ``selection`` is a slice of it. The held-out and training embeddings are
projected once per eigendecomposition; the zero-shot head needs only one product for the
scores of every K and the norms up to the largest K below d. The K = d candidates of a fold
are one model (a rotation of the whole space) and are scored once when the head and the
scorer cannot tell rotations apart, and the linear probes are warm-started along K.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import Any

import numpy as np
import sklearn
from joblib import Parallel, delayed
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, _fit_context
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import check_scoring
from sklearn.model_selection import ParameterGrid, check_cv
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metadata_routing import (
    MetadataRouter,
    MethodMapping,
    get_routing_for_object,
)
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import _check_method_params, check_is_fitted, validate_data

from skcicm.icm._defaults import DEFAULT_LAM, DEFAULT_LAM_SCALE
from skcicm.icm._estimator import DOC_LINK_TEMPLATE, InvariantCausalMechanism, _default_classifier
from skcicm.icm._fit_context import complete_from_context
from skcicm.icm._fit_inputs import (
    NoInterventionError,
    check_class_embeddings,
    check_domains,
    check_interventions,
    check_pairs,
    domain_cells,
    has_domain_contrast,
    missing_intervention_message,
)
from skcicm.icm._statistics import InterventionStatistics
from skcicm.icm._subspace import select_components, solve_eigenproblem
from skcicm.model_selection._folds import Candidate, FoldProjections, fit_probe, fold_statistics
from skcicm.model_selection._params import check_grid
from skcicm.model_selection._scoring import InterventionalScorer

TUNABLE_CHOICES = {"selection": ("largest", "smallest"), "lam_scale": ("absolute", "trace")}


def _choices(value: str | list[str], name: str) -> list[str]:
    values = [value] if isinstance(value, str) else list(value)
    unknown = set(values) - set(TUNABLE_CHOICES[name])
    if not values or unknown:
        raise ValueError(
            f"{name} must be one of {TUNABLE_CHOICES[name]} or a list of them; got {value!r}."
        )
    return values


def _delegate_has(method: str):
    def check(search: InvariantCausalMechanismCV) -> bool:
        if hasattr(search, "best_estimator_"):
            return hasattr(search.best_estimator_, method)
        return hasattr(search._candidate_template(), method)

    return check


class InvariantCausalMechanismCV(TransformerMixin, ClassifierMixin, BaseEstimator):
    """CLIP-ICM with ``lam`` and ``n_components`` chosen by cross-validation.

    Equivalent to ``GridSearchCV(InvariantCausalMechanism(...), {"lam": lams,
    "n_components": n_components, ...}, cv=cv, scoring=scoring)`` on embeddings, with the same
    ``cv_results_`` scores and choice (for the linear probe with ``warm_start=False``; warm
    starts agree to the solver's tolerance), but the statistics take one pass over the data,
    one eigendecomposition serves every ``n_components`` and ``selection`` of a (fold, lam),
    and the fold's embeddings are projected once per eigendecomposition.

    Read more in the :ref:`User Guide <user_guide_selection>`.

    Parameters
    ----------
    lams : float or sequence of float, default=(0.0, 0.3, 1.0, 3.0)
        Penalty weights to try (sorted, duplicates dropped). The default holds ``lam=0``, so
        that with ``n_components=None`` plain CLIP (a rotation) is always a candidate.
    n_components : int, sequence of int or None, default=None
        Subspace dimensions to try; None means all ``n_features``.
    selection : str or list of str, default="largest"
        Eigenvalue end(s) to try (see :class:`~skcicm.InvariantCausalMechanism`).
    lam_scale : str or list of str, default="trace"
        Lambda scaling(s) to try: ``"trace"`` makes ``lam`` relative to the size of the
        Deltas, ``"absolute"`` (the authors' scale) uses it as given (see
        :class:`~skcicm.InvariantCausalMechanism`).
    cv : int, cross-validation generator or iterable, default=None
        As in scikit-learn; pass ``LeaveOneGroupOut()`` and ``groups=domains`` for
        leave-one-domain-out selection.
    scoring : str or callable, default=None
        A scikit-learn scorer; None is the estimator's accuracy. An
        :class:`~skcicm.model_selection.InterventionalScorer` that requests ``interventions``
        (``set_score_request(interventions=True)``, under metadata routing) scores each
        candidate on the held-out fold's intervened copies, which clean validation cannot
        replace when every source shares a shortcut.
    head, classifier, center, objective, temperature, zero_shot_similarity :
        Passed to every candidate (see :class:`~skcicm.InvariantCausalMechanism`).
    refit : bool, default=True
        Refit the best candidate on all data as ``best_estimator_``.
    warm_start : bool, default=True
        Fit the LogisticRegression probes along the path, as LogisticRegressionCV does:
        each K starts from the probe of the next smaller K of the same (fold, lam,
        selection), padded with zero weights. Scores then agree with a cold-started grid
        search to the solver's tolerance, not exactly; on a near-separable problem, where the
        solution depends on the solver's path, they can differ more. False fits every probe
        from zero and gives ``GridSearchCV``'s scores. Other classifiers always start cold.
    n_jobs : int, default=None
        Folds run in parallel with joblib (any backend, including Dask's).

    Attributes
    ----------
    cv_results_ : dict of ndarrays
        As GridSearchCV's: ``params``, ``param_<name>``, ``split<i>_test_score``,
        ``mean_test_score``, ``std_test_score``, ``rank_test_score``, in ParameterGrid order.
    best_index_, best_params_, best_score_ :
        The chosen candidate (the first of the best rank, as GridSearchCV).
    lam_, n_components_ : float, int
        Its ``lam`` and ``n_components``.
    best_estimator_ : InvariantCausalMechanism
        The refitted candidate (``refit=True``); prediction and transform delegate to it.
    n_splits_ : int
        Number of folds.

    See Also
    --------
    skcicm.InvariantCausalMechanism : The estimator whose ``lam`` and ``n_components`` are
        chosen here.
    skcicm.model_selection.lodo_grid_search : The same choice with scikit-learn's
        ``GridSearchCV``, for a whole Pipeline.

    References
    ----------
    .. [1] Song et al., "Learning Invariant Causal Mechanism from Vision-Language Models",
       ICML 2025. https://arxiv.org/abs/2405.15289

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import LeaveOneGroupOut
    >>> from skcicm.model_selection import InvariantCausalMechanismCV
    >>> rng = np.random.default_rng(0)
    >>> y, domains = np.arange(120) % 2, np.repeat(["a", "b", "c"], 40)
    >>> Z = rng.normal(size=(120, 4)) + 2 * y[:, None] * [1, 0, 0, 0]
    >>> Z_do = Z + rng.normal(size=(120, 1)) * [0, 0, 0, 5]
    >>> search = InvariantCausalMechanismCV([0.0, 1.0], [1, 2], cv=LeaveOneGroupOut())
    >>> search = search.fit(Z, y, groups=domains, interventions=Z_do)
    >>> sorted(search.best_params_)
    ['lam', 'n_components']
    >>> search.predict(Z[:3]).shape
    (3,)
    """

    _doc_link_module = "skcicm"
    _doc_link_template = DOC_LINK_TEMPLATE

    _parameter_constraints: dict = {
        "lams": ["array-like", Interval(Real, 0, None, closed="left")],
        "n_components": ["array-like", Interval(Integral, 1, None, closed="left"), None],
        "selection": [StrOptions(set(TUNABLE_CHOICES["selection"])), list, tuple],
        "lam_scale": [StrOptions(set(TUNABLE_CHOICES["lam_scale"])), list, tuple],
        "cv": ["cv_object"],
        "scoring": [str, callable, None],
        "head": [StrOptions({"linear_probe", "zero_shot"})],
        "classifier": [HasMethods(["fit", "predict"]), None],
        "center": ["boolean"],
        "objective": [StrOptions({"difference", "ratio"})],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "zero_shot_similarity": [StrOptions({"cosine", "authors"})],
        "refit": ["boolean"],
        "warm_start": ["boolean"],
        "n_jobs": [Integral, None],
    }

    def __init__(
        self,
        lams: Any = DEFAULT_LAM,
        n_components: Any = None,
        *,
        selection: str | list[str] = "largest",
        lam_scale: str | list[str] = DEFAULT_LAM_SCALE,
        cv: Any = None,
        scoring: Any = None,
        head: str = "linear_probe",
        classifier: Any = None,
        center: bool = False,
        objective: str = "difference",
        temperature: float = 100.0,
        zero_shot_similarity: str = "cosine",
        refit: bool = True,
        warm_start: bool = True,
        n_jobs: int | None = None,
    ) -> None:
        self.lams = lams
        self.n_components = n_components
        self.selection = selection
        self.lam_scale = lam_scale
        self.cv = cv
        self.scoring = scoring
        self.head = head
        self.classifier = classifier
        self.center = center
        self.objective = objective
        self.temperature = temperature
        self.zero_shot_similarity = zero_shot_similarity
        self.refit = refit
        self.warm_start = warm_start
        self.n_jobs = n_jobs

    def _candidate_template(self) -> InvariantCausalMechanism:
        return InvariantCausalMechanism(
            head=self.head,
            classifier=self.classifier,
            center=self.center,
            objective=self.objective,
            temperature=self.temperature,
            zero_shot_similarity=self.zero_shot_similarity,
        )

    def _param_grid(self, n_features: int) -> list[dict[str, Any]]:
        lams, ks = check_grid(self.lams, self.n_components, n_features)
        grid: dict[str, list] = {"lam": lams, "n_components": ks}
        for name in TUNABLE_CHOICES:
            values = _choices(getattr(self, name), name)
            if not isinstance(getattr(self, name), str):
                grid[name] = values
        return list(ParameterGrid(grid))

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        groups: Any = None,
        interventions: Any = None,
        domains: Any = None,
        intervention_pairs: tuple[Any, Any] | None = None,
        class_embeddings: Any = None,
        class_labels: Any = None,
        **score_params: Any,
    ) -> InvariantCausalMechanismCV:
        """Score every candidate on every fold, choose the best, and refit it.

        ``interventions`` and ``domains`` are split with the samples; the pairs and class
        embeddings are shared by all folds.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings, possibly carrying a :class:`~skcicm.CLIPFeaturizer`'s context.
        y : array-like of shape (n_samples,), default=None
            Class labels.
        groups : array-like of shape (n_samples,), default=None
            Group labels for the splitter: the domains, for leave-one-domain-out selection.
        interventions : array-like of shape (n_samples, n_features) or \
                (n_samples, n_views, n_features), default=None
            Embeddings of intervened copies of the samples, as in
            :meth:`skcicm.InvariantCausalMechanism.fit`.
        domains : array-like of shape (n_samples,), default=None
            Domain labels whose class-conditional contrasts give Deltas.
        intervention_pairs : tuple of two array-likes of shape (n_pairs, n_features)
            Pairs that differ only in variant factors, such as text prompt pairs.
        class_embeddings : array-like of shape (n_classes, n_features), default=None
            Text embeddings of the class prompts, for ``head="zero_shot"``.
        class_labels : array-like of shape (n_classes,), default=None
            Label of each row of ``class_embeddings``.
        **score_params : dict
            Metadata of the scorer, split with the samples (each fold's scorer gets the
            held-out samples' rows). With ``sklearn.set_config(enable_metadata_routing=True)``
            they are routed as ``GridSearchCV`` routes them: the scorer gets what it requested,
            under its own names (an alias set with ``set_score_request`` is resolved), and
            ``interventions=True`` gives it the held-out samples' ``interventions``; metadata
            no one requested raises a TypeError. Without routing, or with a plain function
            as ``scoring``, they are passed to the scorer as they are.

        Returns
        -------
        self : object
            The fitted search, with ``cv_results_``, ``best_params_`` and (``refit=True``)
            ``best_estimator_``.

        Raises
        ------
        NoInterventionError
            When a candidate has ``lam > 0`` and there is no interventional data, before any
            fold is fitted.
        ValueError
            When the grid or the tunable choices are invalid.
        """
        interventions, intervention_pairs, class_embeddings, class_labels = complete_from_context(
            X,
            interventions=interventions,
            intervention_pairs=intervention_pairs,
            class_embeddings=class_embeddings,
            class_labels=class_labels,
        ).values()
        if y is not None:
            X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        else:
            X = validate_data(self, X, dtype=[np.float64, np.float32])
        n_samples, n_features = X.shape
        candidates = self._param_grid(n_features)
        views = (
            None
            if interventions is None
            else check_interventions(interventions, n_samples, n_features)
        )
        pairs = None if intervention_pairs is None else check_pairs(intervention_pairs, n_features)
        if domains is not None:
            domains = check_domains(domains, y, n_samples)
        if self.head == "zero_shot":
            class_embeddings, class_labels = check_class_embeddings(
                class_embeddings, class_labels, y, n_features
            )
        elif y is None:
            raise ValueError("head='linear_probe' needs class labels y to score candidates.")
        needs_deltas = any(c["lam"] > 0 for c in candidates)
        if needs_deltas and views is None and pairs is None and domains is None:
            raise NoInterventionError(
                missing_intervention_message(max(c["lam"] for c in candidates))
            )

        cv = check_cv(self.cv, y, classifier=True)
        splits = list(cv.split(X, y, groups))
        for index, (train, test) in enumerate(splits):
            for name, rows in (("training", train), ("test", test)):
                if len(rows) == 0:
                    raise ValueError(
                        f"Split {index} of the {len(splits)} that cv gives has an empty {name} "
                        "set: every "
                        "candidate needs samples to fit on and to score on. Check the splitter "
                        "and its groups."
                    )
        if needs_deltas and domains is not None:
            for train, _ in splits:
                if not has_domain_contrast(domain_cells(y[train], domains[train])):
                    raise NoInterventionError(
                        "domains gives no Deltas in a training fold: no class occurs in two "
                        "or more of its domains (leave-one-domain-out needs three or more "
                        "domains for domain contrasts). Give other interventional data, or "
                        "only lam=0."
                    )
        scorer = check_scoring(self._candidate_template(), scoring=self.scoring)
        score_params = self._route_score_params(scorer, score_params, views)
        statistics_by_fold = fold_statistics(
            X, views, y, domains, pairs, splits, center=self.center, n_jobs=self.n_jobs
        )
        shared = {
            "views": views,
            "y": y,
            "class_text": (class_embeddings, class_labels),
            "candidates": candidates,
            "scorer": scorer,
            "score_params": score_params,
        }
        fold_scores = Parallel(n_jobs=self.n_jobs)(
            delayed(self._score_fold)(X, train, test, statistics=statistics, **shared)
            for (train, test), statistics in zip(splits, statistics_by_fold, strict=True)
        )
        self._store_results(candidates, np.asarray(fold_scores).T)
        self.n_splits_ = len(splits)
        if self.refit:
            best = InvariantCausalMechanism(**self._candidate_params(self.best_params_))
            self.best_estimator_ = best.fit(
                X,
                y,
                interventions=views,
                domains=domains,
                intervention_pairs=pairs,
                **(
                    {"class_embeddings": class_embeddings, "class_labels": class_labels}
                    if self.head == "zero_shot"
                    else {}
                ),
            )
            self.classes_ = self.best_estimator_.classes_
        return self

    def _route_score_params(
        self, scorer: Any, score_params: dict[str, Any], views: np.ndarray | None
    ) -> dict[str, Any]:
        """The scorer's metadata, under the names the scorer takes, still for every sample.

        With metadata routing enabled, a scorer that routes metadata (scikit-learn's scorers,
        :class:`InterventionalScorer`) gets what it requested, as ``GridSearchCV`` routes it:
        an alias such as ``set_score_request(interventions="score_views")`` reads
        ``fit(..., score_views=...)``, and ``interventions=True`` reads the ``interventions``
        given to ``fit``; metadata that no one requested raises a TypeError. A plain callable
        scorer, or any scorer without routing, gets ``score_params`` as they are.
        """
        if not (
            sklearn.get_config()["enable_metadata_routing"]
            and hasattr(scorer, "get_metadata_routing")
        ):
            return score_params
        router = MetadataRouter(owner=type(self).__name__).add(
            scorer=scorer, method_mapping=MethodMapping().add(caller="fit", callee="score")
        )
        router.validate_metadata(method="fit", params=score_params)
        available = dict(score_params)
        if (
            views is not None
            and "interventions" not in available
            and _requests(scorer, "interventions")
        ):
            available["interventions"] = views
        return dict(router.route_params(caller="fit", params=available).scorer.score)

    def _candidate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        fixed = {name: getattr(self, name) for name in TUNABLE_CHOICES}
        fixed = {k: v for k, v in fixed.items() if isinstance(v, str)}
        return {**self._candidate_template().get_params(deep=False), **fixed, **params}

    def _score_fold(
        self,
        X: np.ndarray,
        train: np.ndarray,
        test: np.ndarray,
        *,
        statistics: InterventionStatistics,
        views: Any,
        y: Any,
        class_text: tuple,
        candidates: list[dict[str, Any]],
        scorer: Any,
        score_params: dict[str, Any],
    ) -> list[float]:
        sigma_z, sigma_delta = statistics.sigma_z(), statistics.sigma_delta()
        trace_delta = np.trace(sigma_delta)
        # float64 copies that validation passes through unchanged, so that _Candidate finds them.
        X_train = X[train].astype(np.float64) if self.head == "linear_probe" else None
        X_test = X[test].astype(np.float64)
        y_train = None if y is None else y[train]
        y_test = None if y is None else y[test]
        fold_params = _check_method_params(X, params=score_params, indices=test)
        ks = sorted({params["n_components"] for params in candidates})
        share_full_space = self._full_space_is_one_model()
        full_space_score = None
        scores = []
        solved: dict[Any, Any] = {}
        for params in candidates:
            full = self._candidate_params(params)
            if params["n_components"] == X.shape[1] and full_space_score is not None:
                scores.append(full_space_score)
                continue
            effective = full["lam"]
            if full["lam_scale"] == "trace" and trace_delta > 0:
                effective = full["lam"] * np.trace(sigma_z) / trace_delta
            if solved.get("lam") != effective:
                # Candidates come grouped by lam: keep one decomposition and its projections.
                eig = solve_eigenproblem(
                    sigma_z, sigma_delta, lam=effective, objective=self.objective
                )
                solved = {"lam": effective, "eig": eig}
            if full["selection"] not in solved:
                ordered, values = select_components(*solved["eig"], X.shape[1], full["selection"])
                arrays = [X_test] if X_train is None else [X_test, X_train]
                # The shared similarities are cosines; the authors' rule scores from projections.
                cosine = self.head == "zero_shot" and self.zero_shot_similarity == "cosine"
                text = class_text[0] if cosine else None
                cache = FoldProjections(ordered, arrays, ks, text)
                solved[full["selection"]] = (ordered, values, cache)
            ordered, values, cache = solved[full["selection"]]
            k = full["n_components"]
            candidate = Candidate(**full)
            candidate.n_features_in_ = X.shape[1]
            candidate.n_components_ = k
            candidate.components_ = ordered[:k]
            candidate.eigenvalues_ = values[:k]
            candidate.effective_lam_ = float(effective)
            candidate.mean_ = statistics.mean() if self.center else np.zeros(X.shape[1])
            candidate.intervention_covariance_ = sigma_delta
            candidate.intervention_sources_ = tuple(statistics.delta_grams())
            candidate.n_samples_seen_ = statistics.n_samples
            candidate._fold_cache = cache
            if self.head == "zero_shot":
                candidate.classes_ = class_text[1]
                candidate.class_weights_ = (
                    cache.class_weights[k]
                    if cache.similarities is not None
                    else candidate._class_weights(class_text[0])
                )
            else:
                features = candidate._project(X_train, centred=True)
                previous = solved.get(("probe", full["selection"])) if self.warm_start else None
                probe = fit_probe(candidate, features, y_train, previous)
                solved[("probe", full["selection"])] = candidate.classifier_ = probe
                candidate.classes_ = probe.classes_
            scores.append(float(scorer(candidate, X_test, y_test, **fold_params)))
            if k == X.shape[1] and share_full_space:
                full_space_score = scores[-1]
        return scores

    def _full_space_is_one_model(self) -> bool:
        """Whether every K = d candidate of a fold is the same model, so one score serves all.

        With K = d the projection is a rotation of the whole space, whatever lam, selection
        and lam_scale are. Cosine similarity (zero-shot) and an L2- or un-penalised
        LogisticRegression are invariant to rotations, and so are scikit-learn's named
        scorers and :class:`InterventionalScorer`, which see only the predictions. Scoring
        them once makes them tie exactly, as they do mathematically, instead of up to
        rounding or the solver's tolerance. Other classifiers and scorers are scored one by one.
        """
        if not (self.scoring is None or isinstance(self.scoring, (str, InterventionalScorer))):
            return False
        if self.head == "zero_shot":
            return True
        probe = self.classifier if self.classifier is not None else _default_classifier()
        return (
            isinstance(probe, LogisticRegression)
            and probe.get_params()["penalty"] in ("deprecated", "l2", None)
            and not probe.get_params()["l1_ratio"]
        )

    def _store_results(self, candidates: list[dict[str, Any]], scores: np.ndarray) -> None:
        results: dict[str, Any] = {"params": candidates}
        for name in candidates[0]:
            results[f"param_{name}"] = np.ma.MaskedArray(
                [c[name] for c in candidates], mask=False, dtype=object
            )
        for fold in range(scores.shape[1]):
            results[f"split{fold}_test_score"] = scores[:, fold]
        results["mean_test_score"] = means = scores.mean(axis=1)
        results["std_test_score"] = scores.std(axis=1)
        if np.isnan(means).all():
            raise ValueError(
                f"The scorer {self.scoring!r} gave NaN (in one fold or more) for every "
                "candidate, so no candidate can be chosen; check that it can score these data."
            )
        if np.isnan(means).any():
            # As GridSearchCV: a candidate whose score is NaN in any fold ranks last.
            warnings.warn(
                f"The scorer gave NaN for {int(np.isnan(means).sum())} of {len(means)} "
                "candidates; they rank last.",
                UserWarning,
                stacklevel=3,
            )
        rank = rankdata(-np.nan_to_num(means, nan=np.nanmin(means) - 1), method="min")
        rank = rank.astype(np.int32)
        results["rank_test_score"] = rank
        self.cv_results_ = results
        self.best_index_ = int(np.flatnonzero(rank == 1)[0])
        self.best_params_ = dict(candidates[self.best_index_])
        self.best_score_ = float(results["mean_test_score"][self.best_index_])
        self.lam_ = float(self.best_params_["lam"])
        self.n_components_ = int(self.best_params_["n_components"])

    def _best(self) -> InvariantCausalMechanism:
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_

    def transform(self, X: Any) -> np.ndarray:
        """Project ``X`` onto the refitted best candidate's invariant subspace.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components_)
            The invariant features.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            When the search is not fitted, or was fitted with ``refit=False``.
        """
        return self._best().transform(X)

    @available_if(_delegate_has("predict"))
    def predict(self, X: Any) -> np.ndarray:
        """Predict classes with the refitted best candidate.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Predicted labels.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            When the search is not fitted, or was fitted with ``refit=False``.
        """
        return self._best().predict(X)

    @available_if(_delegate_has("predict_proba"))
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities of the refitted best candidate.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probability of each class of ``classes_``.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            When the search is not fitted, or was fitted with ``refit=False``.
        """
        return self._best().predict_proba(X)

    @available_if(_delegate_has("decision_function"))
    def decision_function(self, X: Any) -> np.ndarray:
        """Class scores of the refitted best candidate.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            See :meth:`skcicm.InvariantCausalMechanism.decision_function`.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            When the search is not fitted, or was fitted with ``refit=False``.
        """
        return self._best().decision_function(X)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Accuracy of the refitted best candidate.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings.
        y : array-like of shape (n_samples,)
            True labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
            Mean accuracy of the best candidate's predictions.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            When the search is not fitted, or was fitted with ``refit=False``.
        """
        return self._best().score(X, y, sample_weight=sample_weight)


def _requests(scorer: Any, name: str) -> bool:
    """Whether a scorer asks for ``name`` through metadata routing."""
    try:
        return bool(get_routing_for_object(scorer).consumes("score", [name]))
    except (AttributeError, TypeError, ValueError):
        return False
