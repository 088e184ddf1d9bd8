"""The CLIP-ICM estimator: a linear map to the invariant factors of CLIP embeddings."""

from __future__ import annotations

import os
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
    clone,
)
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.extmath import softmax
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from skcicm.icm._dask_blockwise import aligned_rows, fit_probe, label_summary, lazy_method
from skcicm.icm._defaults import DEFAULT_ESTIMATOR_LAM, DEFAULT_LAM_SCALE
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
from skcicm.icm._statistics import InterventionStatistics, dask_statistics
from skcicm.icm._subspace import invariant_subspace, unit_rows

# The linear-probe classifier of the authors' released evaluation script.
DEFAULT_PROBE_C = 0.316


__all__ = ["InvariantCausalMechanism", "NoInterventionError"]

#: Root URL of the documentation site that the estimators' HTML repr links to. A placeholder
#: until the site is published; the environment variable ``SKCICM_DOCS_URL``, read at import,
#: replaces it (for example with the ``file://`` URL of a local ``docs/_build/html``).
DOCS_URL = os.environ.get("SKCICM_DOCS_URL", "https://skcicm.readthedocs.io/en/latest/")
#: scikit-learn's ``_doc_link_template`` for the public estimators: each one has its API page
#: at ``api/generated/skcicm.<Name>.html`` (see docs/conf.py).
DOC_LINK_TEMPLATE = DOCS_URL.rstrip("/") + "/api/generated/skcicm.{estimator_name}.html"


def is_dask_collection(X: Any) -> bool:
    """Whether X is a Dask collection, without importing Dask (an optional dependency)."""
    return type(X).__module__.split(".")[0] == "dask" and hasattr(X, "__dask_graph__")


def _default_classifier() -> LogisticRegression:
    return LogisticRegression(C=DEFAULT_PROBE_C, max_iter=1000)


def _incremental_head(estimator: InvariantCausalMechanism) -> bool:
    if estimator.head == "linear_probe":
        # Raised here, so that the AttributeError of available_if says why.
        raise AttributeError(
            "partial_fit is not available with head='linear_probe': the probe is fitted on "
            "all the projected data at once. Fit on all the data, or use head=None and train "
            "an incremental classifier (such as SGDClassifier.partial_fit) on transform's "
            "output, or head='zero_shot'."
        )
    return True


def _head_has(method: str):
    def check(estimator: InvariantCausalMechanism) -> bool:
        if estimator.head is None:
            return False
        if estimator.head == "zero_shot":
            return True
        classifier = getattr(estimator, "classifier_", None)
        if classifier is None:
            classifier = (
                estimator.classifier if estimator.classifier is not None else _default_classifier()
            )
        return hasattr(classifier, method)

    return check


class InvariantCausalMechanism(
    ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClassifierMixin, BaseEstimator
):
    """Project embeddings onto the invariant subspace of CLIP-ICM and classify there.

    With embeddings ``Z`` (n, d) and their interventional differences ``Delta`` (pairs that
    differ only in variant factors such as style or domain), the estimator forms
    ``M = Z^T Z / n - lam * Delta^T Delta / n`` and keeps the eigenvectors of the
    ``n_components`` largest eigenvalues: directions that retain the most variance of the
    embeddings while moving least under intervention (Song et al., ICML 2025).

    Read more in the :ref:`User Guide <user_guide_method>`.

    Parameters
    ----------
    n_components : int or None, default=None
        Dimension K of the invariant subspace. None keeps all ``n_features`` directions.
    lam : float, default=1.0
        Weight lambda of the intervention penalty, relative to the size of the Deltas with
        the default ``lam_scale="trace"``. With ``lam=0`` and ``n_components=None`` the
        projection is a rotation and the estimator reproduces plain CLIP. ``lam > 0`` needs
        interventional data (``interventions``, ``domains`` or ``intervention_pairs``, or
        the context carried from :class:`skcicm.CLIPFeaturizer`); without it :meth:`fit`
        raises :class:`~skcicm.NoInterventionError` instead of fitting a PCA.
    head : {"linear_probe", "zero_shot"} or None, default="linear_probe"
        How to classify. ``"linear_probe"`` fits ``classifier`` on the invariant features.
        ``"zero_shot"`` classifies by cosine similarity between projected embeddings and
        projected text embeddings of class prompts (``class_embeddings`` in :meth:`fit`).
        None makes a transformer only, for Pipelines that put their own classifier after it:
        no classifier is fitted and ``predict`` is not available.
    classifier : estimator or None, default=None
        Classifier of the linear probe; None means ``LogisticRegression(C=0.316,
        max_iter=1000)``, the authors' choice. It is cloned before fitting. With a Dask ``X``,
        it is fitted on the gathered n x K projected features (see :meth:`fit`).
    selection : {"largest", "smallest"}, default="largest"
        Which eigenvectors of ``M`` to keep. ``"largest"`` is the paper's estimator.
        ``"smallest"`` reproduces the authors' released script (``eigh(M)[1][:, :K]``), kept
        for compatibility only.
    center : bool, default=False
        Estimate ``M`` from the covariance of ``Z`` instead of its second moment. Deltas are
        never centred: their mean is the average effect of the intervention, a variant
        direction the penalty must see. :meth:`transform` subtracts the training mean.
    lam_scale : {"trace", "absolute"}, default="trace"
        ``"trace"`` multiplies ``lam`` by ``tr(Sigma_Z) / tr(Sigma_Delta)``, which makes lambda
        comparable across models and intervention sources whose Deltas differ in size.
        ``"absolute"`` uses ``lam`` as given, as the authors' code does; use it to reproduce
        their settings.
    objective : {"difference", "ratio"}, default="difference"
        ``"difference"`` is the paper's ``M``. ``"ratio"`` solves the scale-free generalized
        eigenproblem ``Sigma_Z v = mu (Sigma_Delta + eps I) v`` and keeps its whitened
        coordinates; ``lam`` and ``lam_scale`` have no effect then. Experimental: it did not
        help on ToyWorld (docs/results.md).
    temperature : float, default=100.0
        Logit scale of the zero-shot head's softmax (CLIP's trained value is 100).
    zero_shot_similarity : {"cosine", "authors"}, default="cosine"
        How the zero-shot head scores an image against a class. ``"cosine"`` is the cosine
        similarity in the invariant subspace: projected image and projected text embeddings
        are both scaled to unit norm. ``"authors"`` reproduces the authors' released code
        (``engine.py``, ``zero_shot``): text embeddings are scaled to unit norm *before* the
        projection and not after, and image embeddings are never normalised, so a class whose
        text keeps more of its norm in the subspace gets larger scores. Kept for
        reproduction; the two rules can disagree on many predictions.

    Attributes
    ----------
    components_ : ndarray of shape (n_components_, n_features)
        Invariant directions, one per row, most preferred first. Orthonormal rows for
        ``objective="difference"``.
    eigenvalues_ : ndarray of shape (n_components_,)
        Eigenvalues of ``M`` (or of the generalized problem) for the kept directions.
    n_components_ : int
        The number of kept directions.
    effective_lam_ : float
        The lambda used, after ``lam_scale``.
    mean_ : ndarray of shape (n_features,)
        Training mean subtracted by :meth:`transform`; zeros unless ``center=True``.
    intervention_covariance_ : ndarray of shape (n_features, n_features)
        ``Sigma_Delta``, the average of ``Delta^T Delta / m`` over the intervention sources.
    intervention_sources_ : tuple of str
        The fit inputs that provided Deltas.
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    classifier_ : estimator
        The fitted linear-probe classifier (``head="linear_probe"`` and ``y`` given only).
    class_weights_ : ndarray of shape (n_classes, n_components_)
        Projected class embeddings (``head="zero_shot"`` only): scaled to unit norm after the
        projection with ``zero_shot_similarity="cosine"``, projections of unit-norm text
        embeddings with ``"authors"``.
    n_samples_seen_ : int
        Number of samples in the statistics (all batches for :meth:`partial_fit`).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    skcicm.CLIPFeaturizer : Produces the embeddings, interventions and class embeddings.
    skcicm.InvariantCausalMechanismCV : Selects ``lam`` and ``n_components`` by
        leave-one-domain-out cross-validation, sharing the statistics between candidates.

    References
    ----------
    .. [1] Song et al., "Learning Invariant Causal Mechanism from Vision-Language Models",
       ICML 2025. https://arxiv.org/abs/2405.15289

    Examples
    --------
    >>> import numpy as np
    >>> from skcicm import InvariantCausalMechanism
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, size=200)
    >>> Z = rng.normal(size=(200, 4)) + 3 * y[:, None] * [1, 0, 0, 0]
    >>> Z_do = Z + rng.normal(size=(200, 1)) * [0, 0, 0, 5]
    >>> icm = InvariantCausalMechanism(n_components=2, lam=1.0).fit(Z, y, interventions=Z_do)
    >>> icm.transform(Z).shape
    (200, 2)
    >>> bool(abs(icm.components_[:, 3]).max() < 0.1)
    True
    >>> icm.score(Z, y) > 0.9
    True
    """

    _doc_link_module = "skcicm"
    _doc_link_template = DOC_LINK_TEMPLATE

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "lam": [Interval(Real, 0, None, closed="left")],
        "head": [StrOptions({"linear_probe", "zero_shot"}), None],
        "classifier": [HasMethods(["fit", "predict"]), None],
        "selection": [StrOptions({"largest", "smallest"})],
        "center": ["boolean"],
        "lam_scale": [StrOptions({"absolute", "trace"})],
        "objective": [StrOptions({"difference", "ratio"})],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "zero_shot_similarity": [StrOptions({"cosine", "authors"})],
    }

    def __init__(
        self,
        n_components: int | None = None,
        lam: float = DEFAULT_ESTIMATOR_LAM,
        *,
        head: str | None = "linear_probe",
        classifier: Any = None,
        selection: str = "largest",
        center: bool = False,
        lam_scale: str = DEFAULT_LAM_SCALE,
        objective: str = "difference",
        temperature: float = 100.0,
        zero_shot_similarity: str = "cosine",
    ) -> None:
        self.n_components = n_components
        self.lam = lam
        self.head = head
        self.classifier = classifier
        self.selection = selection
        self.center = center
        self.lam_scale = lam_scale
        self.objective = objective
        self.temperature = temperature
        self.zero_shot_similarity = zero_shot_similarity

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        interventions: Any = None,
        domains: Any = None,
        intervention_pairs: tuple[Any, Any] | None = None,
        class_embeddings: Any = None,
        class_labels: Any = None,
    ) -> InvariantCausalMechanism:
        """Estimate the invariant subspace, then fit the classification head.

        The statistics are accumulated in bounded chunks (:mod:`skcicm.icm`), so ``X``
        and ``interventions`` may be ``numpy.memmap`` arrays larger than memory.

        A row-chunked ``dask.array`` ``X`` is never gathered: every input is re-chunked to its
        row blocks, each block's statistics (Grams, and per-(class, domain) sums for
        ``domains``) are computed on the cluster and only their sums reach the client. The
        linear probe is then the classifier's own ``fit`` on the projected features
        ``(X - mean_) @ components_.T``, computed block by block on the cluster in float64 and
        gathered, so that it equals the in-memory fit: ``n_samples * n_components_ * 8``
        bytes on the client (2 GB for 1M samples and K=256), twice that while the computed
        blocks are joined. Memory is then not flat in ``n_samples``; for that, use
        ``head=None`` and train an incremental classifier on the lazy output of
        :meth:`transform` (``partial_fit`` is one ordered pass, another method than ``fit``,
        so it is not chosen for you).

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            Embeddings. When ``X`` comes from :class:`skcicm.CLIPFeaturizer` inside a
            Pipeline, it carries the interventional embeddings, text prompt pairs and class
            embeddings the featurizer computed; explicit arguments take precedence. A
            row-chunked Dask array is reduced on its cluster, block by block.
        y : array-like or dask.array.Array of shape (n_samples,), default=None
            Class labels, needed by the linear probe and by ``domains``. Without them only
            the subspace is learned: :meth:`transform` works, :meth:`predict` does not.
        interventions : array-like of shape (n_samples, n_features) or \
                (n_samples, n_views, n_features), default=None
            Embeddings of intervened copies of the samples: ``Delta = X - interventions``.
            3-D arrays are sample-major, the layout that cross-validation splits.
        domains : array-like or dask.array.Array of shape (n_samples,), default=None
            Domain labels. Deltas are differences of class-conditional means between every
            pair of domains (see :meth:`skcicm.icm.InterventionStatistics.domain_contrasts`).
        intervention_pairs : tuple of two array-likes of shape (n_pairs, n_features)
            Embeddings of pairs that differ only in variant factors, not aligned with the
            samples, such as text prompts "a photo of a {c}" / "a sketch of a {c}".
        class_embeddings : array-like of shape (n_classes, n_features), default=None
            Text embeddings of the class prompts, for ``head="zero_shot"``. Classes may
            include ones absent from ``y`` (open-class evaluation).
        class_labels : array-like of shape (n_classes,), default=None
            Label of each row of ``class_embeddings``; defaults to ``0..n_classes-1``.

        Returns
        -------
        self : object
            The fitted estimator.

        Raises
        ------
        NoInterventionError
            When ``lam > 0`` and there is no interventional data, before any fitting work.
        ValueError
            When the inputs' shapes disagree, they hold NaN or infinity, ``n_components``
            exceeds ``n_features``, or a Dask ``X`` with unknown row chunk sizes comes with
            ``y``, ``domains`` or ``interventions`` to align with its rows.
        """
        self._statistics = None
        # A refit with another head must not keep the previous head's fitted attributes.
        for stale in ("class_weights_", "classifier_", "classes_"):
            self.__dict__.pop(stale, None)
        return self._fit_batch(
            X, y, interventions, domains, intervention_pairs, class_embeddings, class_labels
        )

    @available_if(_incremental_head)
    @_fit_context(prefer_skip_nested_validation=False)
    def partial_fit(
        self,
        X: Any,
        y: Any = None,
        *,
        interventions: Any = None,
        domains: Any = None,
        intervention_pairs: tuple[Any, Any] | None = None,
        class_embeddings: Any = None,
        class_labels: Any = None,
    ) -> InvariantCausalMechanism:
        """Add a batch to the statistics and re-solve the subspace, in O(d^2) memory.

        Only for ``head="zero_shot"`` or ``head=None``: the linear probe cannot be fitted
        incrementally, because the projection changes with every batch. With ``lam > 0`` the
        statistics so far must hold Deltas, and domain contrasts need a class seen in two
        domains across the batches so far.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_batch, n_features)
            Embeddings of this batch, as in :meth:`fit` (a featurizer's context included);
            a Dask batch is reduced on its cluster.
        y : array-like or dask.array.Array of shape (n_batch,), default=None
            Class labels of the batch; needed with ``domains``.
        interventions : array-like of shape (n_batch, n_features) or \
                (n_batch, n_views, n_features), default=None
            Embeddings of intervened copies of this batch's samples.
        domains : array-like or dask.array.Array of shape (n_batch,), default=None
            Domain labels of the batch; contrasts use the class-conditional means of all
            batches so far.
        intervention_pairs : tuple of two array-likes of shape (n_pairs, n_features)
            Pairs that differ only in variant factors; pairs given in several calls are
            pooled.
        class_embeddings : array-like of shape (n_classes, n_features), default=None
            Text embeddings of the class prompts, for ``head="zero_shot"``.
        class_labels : array-like of shape (n_classes,), default=None
            Label of each row of ``class_embeddings``; defaults to ``0..n_classes-1``.

        Returns
        -------
        self : object
            The estimator, fitted on all batches so far.

        Raises
        ------
        NoInterventionError
            When ``lam > 0`` and no batch so far has given interventional data.
        """
        return self._fit_batch(
            X, y, interventions, domains, intervention_pairs, class_embeddings, class_labels
        )

    def _fit_batch(
        self,
        X: Any,
        y: Any,
        interventions: Any,
        domains: Any,
        intervention_pairs: Any,
        class_embeddings: Any,
        class_labels: Any,
    ) -> InvariantCausalMechanism:
        previous = getattr(self, "_statistics", None)
        interventions, intervention_pairs, class_embeddings, class_labels = complete_from_context(
            X,
            interventions=interventions,
            intervention_pairs=intervention_pairs,
            class_embeddings=class_embeddings,
            class_labels=class_labels,
        ).values()

        reset = previous is None
        if is_dask_collection(X):
            return self._fit_dask(
                X, y, interventions, domains, intervention_pairs, class_embeddings, class_labels
            )
        # Finiteness is checked chunk by chunk in the statistics: one read of memory-mapped X.
        if y is not None:
            X, y = validate_data(
                self, X, y, dtype=[np.float64, np.float32], ensure_all_finite=False, reset=reset
            )
            check_classification_targets(y)
        else:
            X = validate_data(
                self, X, dtype=[np.float64, np.float32], ensure_all_finite=False, reset=reset
            )
        n_samples, n_features = X.shape
        n_components = self._check_n_components(n_features)
        views = (
            None
            if interventions is None
            else check_interventions(interventions, n_samples, n_features)
        )
        pairs = None if intervention_pairs is None else check_pairs(intervention_pairs, n_features)
        cells = set() if previous is None else set(previous.domain_sums)
        if domains is not None:
            domains = check_domains(domains, y, n_samples)
            cells |= domain_cells(y, domains)
        if self.head == "zero_shot":
            if class_embeddings is None and not reset:
                class_embeddings, class_labels = self._class_text
            self._class_text = check_class_embeddings(class_embeddings, class_labels, y, n_features)
        self._check_interventional_data(previous, views, pairs, domains, cells)

        statistics = previous or InterventionStatistics(n_features, center=self.center)
        statistics.add_samples(X, views, y=y, domains=domains)
        if pairs is not None:
            statistics.add_pairs(*pairs)
        self._solve(statistics, n_components)
        if self.head != "linear_probe":
            self._statistics = statistics
        self.n_samples_seen_ = statistics.n_samples

        if self.head == "zero_shot":
            self.classes_ = self._class_text[1]
            self.class_weights_ = self._class_weights(self._class_text[0])
        elif self.head == "linear_probe" and y is not None:
            self.classifier_ = self._new_classifier().fit(self._project(X, centred=True), y)
            self.classes_ = self.classifier_.classes_
        return self

    def _fit_dask(
        self,
        X: Any,
        y: Any,
        interventions: Any,
        domains: Any,
        intervention_pairs: Any,
        class_embeddings: Any,
        class_labels: Any,
    ) -> InvariantCausalMechanism:
        """Fit from a Dask array: per-block statistics reduced on the cluster, no gather of X."""
        if X.ndim != 2 or X.dtype.kind != "f":
            raise ValueError(f"X must be a 2-D float array; got {X.ndim}-D of dtype {X.dtype}.")
        n_samples, n_features = X.shape
        previous = getattr(self, "_statistics", None)
        if previous is None:
            self.n_features_in_ = n_features
        elif n_features != self.n_features_in_:
            raise ValueError(
                f"X has {n_features} features, but this estimator was fitted with "
                f"{self.n_features_in_}."
            )
        n_components = self._check_n_components(n_features)
        views = interventions
        if views is not None:
            if views.shape in ((n_samples, n_features),):
                views = views[:, None, :]
            if views.ndim != 3 or views.shape[0] != n_samples or views.shape[2] != n_features:
                raise ValueError(
                    f"interventions has shape {views.shape}; expected the sample-major layout "
                    f"({n_samples}, n_views, {n_features}) to match X."
                )
        pairs = None if intervention_pairs is None else check_pairs(intervention_pairs, n_features)
        if domains is not None and y is None:
            check_domains(domains, y, n_samples)  # raises: domains needs y
        # One cheap pass over the labels on the cluster validates them before the statistics.
        classes, cells = None, set()
        if y is not None:
            y = aligned_rows(y, X, "y")
            domains = None if domains is None else aligned_rows(domains, X, "domains")
            classes, cells = label_summary(y, domains)
            check_classification_targets(classes)
        if previous is not None:
            cells |= set(previous.domain_sums)
        if self.head == "zero_shot":
            self._class_text = check_class_embeddings(
                class_embeddings, class_labels, classes, n_features
            )
        self._check_interventional_data(previous, views, pairs, domains, cells)
        statistics = dask_statistics(
            X, views, y=None if domains is None else y, domains=domains, center=self.center
        )
        if pairs is not None:
            statistics.add_pairs(*pairs)
        if previous is not None:
            statistics = previous.merge(statistics)
        self._solve(statistics, n_components)
        self._statistics = statistics if self.head != "linear_probe" else None
        self.n_samples_seen_ = statistics.n_samples
        if self.head == "zero_shot":
            self.classes_ = self._class_text[1]
            self.class_weights_ = self._class_weights(self._class_text[0])
        elif self.head == "linear_probe" and y is not None:
            self.classifier_ = fit_probe(self, self._new_classifier(), X, y)
            self.classes_ = self.classifier_.classes_
        return self

    def _check_n_components(self, n_features: int) -> int:
        n_components = n_features if self.n_components is None else self.n_components
        if n_components > n_features:
            raise ValueError(
                f"n_components={n_components} must be <= n_features={n_features} "
                "(the embedding dimension)."
            )
        return n_components

    def _new_classifier(self) -> Any:
        return clone(self.classifier if self.classifier is not None else _default_classifier())

    def _check_interventional_data(
        self, previous: Any, views: Any, pairs: Any, domains: Any, cells: set
    ) -> None:
        if domains is not None and self.lam > 0 and not has_domain_contrast(cells):
            raise NoInterventionError(
                f"domains gives no Deltas for lam={self.lam}: no class occurs in two or more "
                "domains (leave-one-domain-out with two source domains leaves one domain per "
                "training fold). Give three or more domains, other interventional data, or "
                "lam=0."
            )
        has_data = views is not None or pairs is not None or domains is not None
        if previous is not None and previous.delta_grams():
            has_data = True
        if self.lam > 0 and not has_data:
            raise NoInterventionError(missing_intervention_message(self.lam))

    def _solve(self, statistics: InterventionStatistics, n_components: int) -> None:
        sigma_z = statistics.sigma_z()
        sigma_delta = statistics.sigma_delta()
        self.intervention_sources_ = tuple(statistics.delta_grams())
        self.intervention_covariance_ = sigma_delta
        self.mean_ = statistics.mean() if self.center else np.zeros(statistics.n_features)
        self.effective_lam_ = float(self.lam)
        trace_delta = np.trace(sigma_delta)
        if self.lam_scale == "trace" and trace_delta > 0:
            with np.errstate(over="ignore"):
                self.effective_lam_ = float(self.lam * np.trace(sigma_z) / trace_delta)
        if self.objective == "difference":
            with np.errstate(over="ignore", invalid="ignore"):
                finite = np.isfinite(sigma_z - self.effective_lam_ * sigma_delta).all()
            if not (np.isfinite(self.effective_lam_) and finite):
                scaled = f" (x tr(Sigma_Z) / tr(Sigma_Delta) with lam_scale={self.lam_scale!r})"
                raise ValueError(
                    f"lam={self.lam!r}{scaled if self.lam_scale == 'trace' else ''} is so large "
                    "that M = Sigma_Z - lam * Sigma_Delta overflows floating point; use a "
                    "smaller lam."
                )
        self.components_, self.eigenvalues_ = invariant_subspace(
            sigma_z,
            sigma_delta,
            lam=self.effective_lam_,
            n_components=n_components,
            selection=self.selection,
            objective=self.objective,
        )
        self.n_components_ = n_components

    def _project(self, X: np.ndarray, *, centred: bool) -> np.ndarray:
        # Subtracting the projected mean spares a centred copy of X.
        projected = X @ self.components_.T
        if centred and self.center:
            projected -= self.mean_ @ self.components_.T
        return projected

    def transform(self, X: Any) -> np.ndarray:
        """Project ``X`` onto the invariant subspace.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            Embeddings, of the model the estimator was fitted on.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components_)
            The invariant features, ``(X - mean_) @ components_.T``. A Dask ``X`` gives a
            lazy Dask array, computed block by block.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            When the estimator is not fitted.
        ValueError
            When ``X`` does not have ``n_features_in_`` columns.
        """
        check_is_fitted(self)
        if is_dask_collection(X):
            return lazy_method(self, "transform", X)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self._project(X.astype(np.float64, copy=False), centred=True)

    def _class_weights(self, class_embeddings: np.ndarray) -> np.ndarray:
        if self.zero_shot_similarity == "authors":
            return unit_rows(class_embeddings) @ self.components_.T
        return unit_rows(class_embeddings @ self.components_.T)

    def _zero_shot_similarity(self, X: Any) -> np.ndarray:
        if not hasattr(self, "class_weights_"):
            raise NotFittedError(
                "head is 'zero_shot', but this InvariantCausalMechanism was fitted with "
                f"another head ({self._fitted_head()}), so it has no class embeddings; fit it "
                "again, with class_embeddings, after set_params(head='zero_shot')."
            )
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        # Text has no image mean to subtract: both modalities are projected uncentred.
        projected = self._project(X.astype(np.float64, copy=False), centred=False)
        if self.zero_shot_similarity == "authors":
            return projected @ self.class_weights_.T
        return unit_rows(projected) @ self.class_weights_.T

    def _probe(self) -> Any:
        check_is_fitted(self)
        if hasattr(self, "class_weights_"):
            raise NotFittedError(
                "head is 'linear_probe', but this InvariantCausalMechanism was fitted with "
                "head='zero_shot', so it has no probe; fit it again after "
                "set_params(head='linear_probe')."
            )
        if not hasattr(self, "classifier_"):
            raise NotFittedError(
                "This InvariantCausalMechanism was fitted without class labels y, so it learned "
                "the subspace only: transform works, but predictions need labels. Fit with y, "
                "or use head='zero_shot' with class_embeddings."
            )
        return self.classifier_

    def _fitted_head(self) -> str:
        return "head='linear_probe'" if hasattr(self, "classifier_") else "head=None"

    @available_if(_head_has("decision_function"))
    def decision_function(self, X: Any) -> np.ndarray:
        """Class scores: cosine similarities (zero-shot) or the probe's decision function.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            One score per class, in the order of ``classes_``. With two classes, the score of
            ``classes_[1]`` minus that of ``classes_[0]``, as scikit-learn classifiers do.
            A Dask ``X`` gives a lazy Dask array, computed block by block.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            When the estimator is not fitted, or was fitted without ``y`` by the linear probe.
        """
        if is_dask_collection(X):
            return lazy_method(self, "decision_function", X)
        if self.head == "linear_probe":
            return self._probe().decision_function(self.transform(X))
        check_is_fitted(self)
        similarity = self._zero_shot_similarity(X)
        return similarity[:, 1] - similarity[:, 0] if similarity.shape[1] == 2 else similarity

    @available_if(_head_has("predict_proba"))
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities.

        The zero-shot head takes the softmax of ``temperature`` times the cosine
        similarities, as CLIP does; the linear probe gives its classifier's probabilities.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probability of each class of ``classes_``; rows sum to one. A Dask ``X`` gives a
            lazy Dask array, computed block by block.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            When the estimator is not fitted, or was fitted without ``y`` by the linear probe.
        """
        if is_dask_collection(X):
            return lazy_method(self, "predict_proba", X)
        if self.head == "linear_probe":
            return self._probe().predict_proba(self.transform(X))
        check_is_fitted(self)
        return softmax(self.temperature * self._zero_shot_similarity(X))

    @available_if(_head_has("predict"))
    def predict(self, X: Any) -> np.ndarray:
        """Predict the class of each sample.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            Embeddings.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Predicted labels, taken from ``classes_``. A Dask ``X`` gives a lazy Dask array,
            computed block by block.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            When the estimator is not fitted, or was fitted without ``y`` by the linear probe.
        """
        if is_dask_collection(X):
            return lazy_method(self, "predict", X)
        if self.head == "linear_probe":
            return self._probe().predict(self.transform(X))
        check_is_fitted(self)
        return self.classes_[self._zero_shot_similarity(X).argmax(axis=1)]

    @available_if(_head_has("predict"))
    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy of :meth:`predict` on ``X`` against ``y``.

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
            Fraction of correctly predicted samples (weighted by ``sample_weight``).
        """
        return super().score(X, y, sample_weight=sample_weight)

    @property
    def _n_features_out(self) -> int:
        return self.n_components_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        if self.head is None:
            tags.estimator_type = None
        return tags
