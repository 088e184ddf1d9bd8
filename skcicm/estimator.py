"""The CLIP-ICM estimator: a linear map to the invariant factors of CLIP embeddings."""

from __future__ import annotations

import warnings
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
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.extmath import softmax
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from skcicm.fit_context import fit_context_of
from skcicm.subspace import (
    domain_contrast_deltas,
    intervention_covariance,
    invariant_subspace,
    second_moment,
    unit_rows,
)

# The linear-probe classifier of the authors' released evaluation script.
DEFAULT_PROBE_C = 0.316


class NoInterventionWarning(UserWarning):
    """The fit saw no interventional data, so ``lam`` has no effect."""


def _default_classifier() -> LogisticRegression:
    return LogisticRegression(C=DEFAULT_PROBE_C, max_iter=1000)


def _head_has(method: str):
    def check(estimator: InvariantCausalMechanism) -> bool:
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

    Parameters
    ----------
    n_components : int or None, default=None
        Dimension K of the invariant subspace. None keeps all ``n_features`` directions.
    lam : float, default=1.0
        Weight lambda of the intervention penalty. With ``lam=0`` and ``n_components=None`` the
        projection is a rotation and the estimator reproduces plain CLIP.
    head : {"linear_probe", "zero_shot"}, default="linear_probe"
        How to classify. ``"linear_probe"`` fits ``classifier`` on the invariant features.
        ``"zero_shot"`` classifies by cosine similarity between projected embeddings and
        projected text embeddings of class prompts (``class_embeddings`` in :meth:`fit`).
    classifier : estimator or None, default=None
        Classifier of the linear probe; None means ``LogisticRegression(C=0.316,
        max_iter=1000)``, the authors' choice. It is cloned before fitting.
    selection : {"largest", "smallest"}, default="largest"
        Which eigenvectors of ``M`` to keep. ``"largest"`` is the paper's estimator.
        ``"smallest"`` reproduces the authors' released script (``eigh(M)[1][:, :K]``), kept
        for compatibility only.
    center : bool, default=False
        Estimate ``M`` from the covariance of ``Z`` instead of its second moment. Deltas are
        never centred: their mean is the average effect of the intervention, a variant
        direction the penalty must see. :meth:`transform` subtracts the training mean.
    lam_scale : {"absolute", "trace"}, default="absolute"
        ``"trace"`` multiplies ``lam`` by ``tr(Sigma_Z) / tr(Sigma_Delta)``, which makes lambda
        comparable across models and intervention sources whose Deltas differ in size.
    objective : {"difference", "ratio"}, default="difference"
        ``"difference"`` is the paper's ``M``. ``"ratio"`` solves the scale-free generalized
        eigenproblem ``Sigma_Z v = mu (Sigma_Delta + eps I) v`` and keeps its whitened
        coordinates; ``lam`` and ``lam_scale`` have no effect then. Experimental: it did not
        help on ToyWorld (docs/results.md).
    temperature : float, default=100.0
        Logit scale of the zero-shot head's softmax (CLIP's trained value is 100).

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
        The fitted linear-probe classifier (``head="linear_probe"`` only).
    class_weights_ : ndarray of shape (n_classes, n_components_)
        Unit-norm projected class embeddings (``head="zero_shot"`` only).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    skcicm.CLIPFeaturizer : Produces the embeddings, interventions and class embeddings.

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

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "lam": [Interval(Real, 0, None, closed="left")],
        "head": [StrOptions({"linear_probe", "zero_shot"})],
        "classifier": [HasMethods(["fit", "predict"]), None],
        "selection": [StrOptions({"largest", "smallest"})],
        "center": ["boolean"],
        "lam_scale": [StrOptions({"absolute", "trace"})],
        "objective": [StrOptions({"difference", "ratio"})],
        "temperature": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        n_components: int | None = None,
        lam: float = 1.0,
        *,
        head: str = "linear_probe",
        classifier: Any = None,
        selection: str = "largest",
        center: bool = False,
        lam_scale: str = "absolute",
        objective: str = "difference",
        temperature: float = 100.0,
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

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings. When ``X`` comes from :class:`skcicm.CLIPFeaturizer` inside a
            Pipeline, it carries the interventional embeddings, text prompt pairs and class
            embeddings the featurizer computed; explicit arguments take precedence.
        y : array-like of shape (n_samples,), default=None
            Class labels. Required by the linear probe and by ``domains``.
        interventions : array-like of shape (n_samples, n_features) or \
                (n_views, n_samples, n_features), default=None
            Embeddings of intervened copies of the samples: ``Delta = X - interventions``.
            The sample-major layout (n_samples, n_views, n_features) is accepted too; it is
            the one that survives GridSearchCV's splitting of routed metadata. When
            n_samples equals n_views the views-major layout is assumed.
        domains : array-like of shape (n_samples,), default=None
            Domain labels. Deltas are differences of class-conditional means between every
            pair of domains (see :func:`skcicm.subspace.domain_contrast_deltas`).
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
        """
        context = fit_context_of(X)
        if interventions is None:
            interventions = context.get("interventions")
        if intervention_pairs is None:
            intervention_pairs = context.get("intervention_pairs")
        if class_embeddings is None:
            class_embeddings = context.get("class_embeddings")
            if class_labels is None:
                class_labels = context.get("class_labels")

        if self.head == "linear_probe" or y is not None:
            X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
            check_classification_targets(y)
        else:
            X = validate_data(self, X, dtype=[np.float64, np.float32])
        X = X.astype(np.float64, copy=False)
        n_samples, n_features = X.shape

        n_components = n_features if self.n_components is None else self.n_components
        if n_components > n_features:
            raise ValueError(
                f"n_components={n_components} must be <= n_features={n_features} "
                "(the embedding dimension)."
            )

        delta_sources = self._collect_deltas(X, y, interventions, domains, intervention_pairs)
        self.intervention_sources_ = tuple(delta_sources)
        if not delta_sources:
            warnings.warn(
                "No interventional data (interventions, domains or intervention_pairs) was "
                "given: the fit reduces to lam=0, an uncentred PCA of X.",
                NoInterventionWarning,
                stacklevel=2,
            )

        self.mean_ = X.mean(axis=0) if self.center else np.zeros(n_features)
        sigma_z = second_moment(X, center=self.center)
        sigma_delta = intervention_covariance(list(delta_sources.values()), n_features)
        self.intervention_covariance_ = sigma_delta
        self.effective_lam_ = float(self.lam)
        trace_delta = np.trace(sigma_delta)
        if self.lam_scale == "trace" and trace_delta > 0:
            self.effective_lam_ = float(self.lam * np.trace(sigma_z) / trace_delta)

        self.components_, self.eigenvalues_ = invariant_subspace(
            sigma_z,
            sigma_delta,
            lam=self.effective_lam_,
            n_components=n_components,
            selection=self.selection,
            objective=self.objective,
        )
        self.n_components_ = n_components

        if self.head == "zero_shot":
            self._fit_zero_shot(class_embeddings, class_labels, y, n_features)
        else:
            self.classifier_ = clone(
                self.classifier if self.classifier is not None else _default_classifier()
            )
            self.classifier_.fit(self._project(X, centred=True), y)
            self.classes_ = self.classifier_.classes_
        return self

    def _collect_deltas(
        self,
        X: np.ndarray,
        y: np.ndarray | None,
        interventions: Any,
        domains: Any,
        intervention_pairs: Any,
    ) -> dict[str, np.ndarray]:
        n_samples, n_features = X.shape
        sources: dict[str, np.ndarray] = {}
        if interventions is not None:
            views = _as_views(interventions, n_samples, n_features)
            sources["interventions"] = (X[None] - views).reshape(-1, n_features)
        if domains is not None:
            if y is None:
                raise ValueError(
                    "domains needs class labels y: Deltas are built from differences of "
                    "class-conditional means between domains."
                )
            domains = np.asarray(domains)
            if domains.shape != (n_samples,):
                raise ValueError(
                    f"domains has shape {domains.shape}; expected ({n_samples},), one label "
                    "per sample of X."
                )
            deltas = domain_contrast_deltas(X, y, domains)
            if deltas.shape[0] == 0:
                warnings.warn(
                    "domains gave no Deltas: no class occurs in two or more domains.",
                    NoInterventionWarning,
                    stacklevel=3,
                )
            else:
                sources["domains"] = deltas
        if intervention_pairs is not None:
            sources["intervention_pairs"] = _pair_deltas(intervention_pairs, n_features)
        return sources

    def _fit_zero_shot(
        self, class_embeddings: Any, class_labels: Any, y: Any, n_features: int
    ) -> None:
        if class_embeddings is None:
            raise ValueError(
                "head='zero_shot' needs class_embeddings: text embeddings of the class prompts, "
                "e.g. CLIPFeaturizer(...).class_embeddings(class_names), passed to fit() or "
                "computed by a CLIPFeaturizer with class_names in the same Pipeline."
            )
        class_embeddings = check_array(
            class_embeddings, dtype=np.float64, input_name="class_embeddings"
        )
        if class_embeddings.shape[1] != n_features:
            raise ValueError(
                f"class_embeddings has {class_embeddings.shape[1]} features but X has "
                f"{n_features}: both must come from the same CLIP model."
            )
        n_classes = class_embeddings.shape[0]
        labels = np.arange(n_classes) if class_labels is None else np.asarray(class_labels)
        if labels.shape != (n_classes,) or len(np.unique(labels)) != n_classes:
            raise ValueError(
                f"class_labels must hold {n_classes} distinct labels, one per row of "
                f"class_embeddings; got shape {labels.shape}."
            )
        if y is not None:
            unknown = np.setdiff1d(np.unique(y), labels)
            if unknown.size:
                raise ValueError(
                    f"Labels {unknown.tolist()[:10]} in y have no class embedding; "
                    f"class_labels are {labels.tolist()[:10]}."
                )
        self.classes_ = labels
        self.class_weights_ = unit_rows(class_embeddings @ self.components_.T)

    def _project(self, X: np.ndarray, *, centred: bool) -> np.ndarray:
        if centred:
            X = X - self.mean_
        return X @ self.components_.T

    def transform(self, X: Any) -> np.ndarray:
        """Return the invariant features of ``X``, of shape (n_samples, n_components_)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self._project(X.astype(np.float64, copy=False), centred=True)

    def _zero_shot_similarity(self, X: Any) -> np.ndarray:
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        # Text has no image mean to subtract: both modalities are projected uncentred.
        projected = self._project(X.astype(np.float64, copy=False), centred=False)
        return unit_rows(projected) @ self.class_weights_.T

    @available_if(_head_has("decision_function"))
    def decision_function(self, X: Any) -> np.ndarray:
        """Class scores: cosine similarities (zero-shot) or the probe's decision function.

        Returns shape (n_samples,) for two classes, as scikit-learn classifiers do, else
        (n_samples, n_classes).
        """
        check_is_fitted(self)
        if self.head == "linear_probe":
            return self.classifier_.decision_function(self.transform(X))
        similarity = self._zero_shot_similarity(X)
        return similarity[:, 1] - similarity[:, 0] if similarity.shape[1] == 2 else similarity

    @available_if(_head_has("predict_proba"))
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, of shape (n_samples, n_classes)."""
        check_is_fitted(self)
        if self.head == "linear_probe":
            return self.classifier_.predict_proba(self.transform(X))
        return softmax(self.temperature * self._zero_shot_similarity(X))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels, of shape (n_samples,)."""
        check_is_fitted(self)
        if self.head == "linear_probe":
            return self.classifier_.predict(self.transform(X))
        return self.classes_[self._zero_shot_similarity(X).argmax(axis=1)]

    @property
    def _n_features_out(self) -> int:
        return self.n_components_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = self.head == "linear_probe"
        return tags


def _as_views(interventions: Any, n_samples: int, n_features: int) -> np.ndarray:
    """Return interventions as (n_views, n_samples, n_features), whatever layout was given."""
    views = check_array(
        interventions, dtype=np.float64, allow_nd=True, ensure_2d=False, input_name="interventions"
    )
    expected = (
        f"expected ({n_samples}, {n_features}), (n_views, {n_samples}, {n_features}) or "
        f"({n_samples}, n_views, {n_features}) to match X"
    )
    if views.ndim == 2 and views.shape == (n_samples, n_features):
        return views[None]
    if views.ndim == 3 and views.shape[2] == n_features:
        if views.shape[1] == n_samples:
            return views
        if views.shape[0] == n_samples:
            return views.transpose(1, 0, 2)
    raise ValueError(f"interventions has shape {views.shape}; {expected}.")


def _pair_deltas(intervention_pairs: Any, n_features: int) -> np.ndarray:
    if not isinstance(intervention_pairs, tuple | list) or len(intervention_pairs) != 2:
        raise ValueError(
            "intervention_pairs must be a tuple (Z_a, Z_b) of two arrays of shape "
            "(n_pairs, n_features)."
        )
    first, second = (
        check_array(side, dtype=np.float64, input_name=f"intervention_pairs[{i}]")
        for i, side in enumerate(intervention_pairs)
    )
    if first.shape != second.shape or first.shape[1] != n_features:
        raise ValueError(
            f"intervention_pairs sides have shapes {first.shape} and {second.shape}; both "
            f"must be (n_pairs, {n_features})."
        )
    return first - second
