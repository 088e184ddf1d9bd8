"""Embeddings that carry their interventional context from the featurizer to the estimator.

A scikit-learn Pipeline passes only ``X`` from one step to the next, and metadata routing
cannot route values that a step computes. :class:`EmbeddingsWithContext` is a plain
``numpy.ndarray`` of embeddings with the extra fit inputs of
:meth:`skcicm.InvariantCausalMechanism.fit` attached, so that
``Pipeline([("clip", CLIPFeaturizer()), ("icm", InvariantCausalMechanism())]).fit(images, y)``
uses the interventional embeddings with no extra arguments. Any numpy operation returns a
plain array again, so the context cannot leak into slices or derived arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted

#: What :class:`EmbeddingsWithContext` may carry to a later step's ``fit``: the keyword
#: arguments of :meth:`skcicm.InvariantCausalMechanism.fit` the featurizer computes.
FIT_CONTEXT_KEYS = ("interventions", "intervention_pairs", "class_embeddings", "class_labels")


class EmbeddingsWithContext(np.ndarray):
    """An array of embeddings with a ``fit_context`` dict of extra fit inputs.

    What :meth:`skcicm.CLIPFeaturizer.fit_transform` returns: a numpy array for every step of
    a Pipeline, whose ``fit_context`` the next step's ``fit`` may read. Views, slices and
    arithmetic results carry no context, since they describe other samples.

    Parameters
    ----------
    shape, dtype, buffer, offset, strides, order
        As for :class:`numpy.ndarray`; make instances with :meth:`wrap` instead.

    Attributes
    ----------
    fit_context : dict of str to object
        Fit inputs by name, among ``FIT_CONTEXT_KEYS``.

    Examples
    --------
    >>> import numpy as np
    >>> Z = EmbeddingsWithContext.wrap(np.ones((2, 3)), interventions=np.zeros((2, 1, 3)))
    >>> Z.fit_context["interventions"].shape
    (2, 1, 3)
    >>> fit_context_of(Z[:1])
    {}
    """

    fit_context: dict[str, Any]

    @classmethod
    def wrap(cls, embeddings: np.ndarray, **context: Any) -> EmbeddingsWithContext:
        """View ``embeddings`` as an array that carries ``context``.

        Parameters
        ----------
        embeddings : array-like of shape (n_samples, n_features)
            The embeddings; not copied when already an array.
        **context : dict
            Fit inputs among ``FIT_CONTEXT_KEYS``; None values are left out.

        Returns
        -------
        EmbeddingsWithContext
            A view of ``embeddings`` with ``fit_context`` set.

        Raises
        ------
        TypeError
            When a key of ``context`` is not in ``FIT_CONTEXT_KEYS``.
        """
        unknown = set(context) - set(FIT_CONTEXT_KEYS)
        if unknown:
            raise TypeError(
                f"Unknown fit context keys {sorted(unknown)}; expected {FIT_CONTEXT_KEYS}."
            )
        wrapped = np.asarray(embeddings).view(cls)
        wrapped.fit_context = {key: value for key, value in context.items() if value is not None}
        return wrapped

    def __array_finalize__(self, obj: Any) -> None:
        # Views, slices and arithmetic results describe other samples: they get no context.
        self.fit_context = {}

    def __reduce__(self):
        # Pipeline(memory=...) pickles transformer outputs; keep the context across the trip.
        reconstruct, arguments, state = super().__reduce__()
        return reconstruct, arguments, (state, self.fit_context)

    def __setstate__(self, state):
        array_state, self.fit_context = state
        super().__setstate__(array_state)


def fit_context_of(X: Any) -> dict[str, Any]:
    """Return the fit context attached to ``X``, or an empty dict for any other input.

    Interventions come back sample-major, (n_samples, n_views, n_features), the one layout the
    estimator accepts.

    Parameters
    ----------
    X : object
        Any fit input.

    Returns
    -------
    dict of str to object
        A copy of ``X.fit_context``, or an empty dict.

    Examples
    --------
    >>> import numpy as np
    >>> Z = EmbeddingsWithContext.wrap(np.ones((2, 3)), interventions=np.zeros((2, 5, 3)))
    >>> fit_context_of(Z)["interventions"].shape
    (2, 5, 3)
    """
    return dict(getattr(X, "fit_context", {}) or {})


def complete_from_context(X: Any, **explicit: Any) -> dict[str, Any]:
    """Explicit fit inputs, each missing one taken from the context ``X`` carries.

    Explicit values win; class labels come from the context only with its class embeddings.

    Parameters
    ----------
    X : object
        The embeddings, possibly an :class:`EmbeddingsWithContext`.
    **explicit : dict
        Fit inputs passed explicitly, by name; None means "not given".

    Returns
    -------
    dict of str to object
        One value per key of ``explicit``: the explicit one, else the context's, else None.

    Examples
    --------
    >>> import numpy as np
    >>> Z = EmbeddingsWithContext.wrap(np.ones((2, 3)), class_labels=np.array(["a"]))
    >>> complete_from_context(Z, interventions=None, class_labels=None)["class_labels"]
    array(['a'], dtype='<U1')
    """
    context = fit_context_of(X)
    merged = {key: context.get(key) if value is None else value for key, value in explicit.items()}
    if explicit.get("class_embeddings") is not None:
        merged["class_labels"] = explicit.get("class_labels")
    return merged


class TransformWithContext(TransformerMixin, BaseEstimator):
    """Apply a transformer to embeddings and to the fit context they carry, alike.

    A step such as ``StandardScaler`` between :class:`skcicm.CLIPFeaturizer` and
    :class:`skcicm.InvariantCausalMechanism` returns a plain array and so drops the
    interventions (the estimator then refuses ``lam > 0``). Wrapped in this class, the fitted
    transformer maps the intervened views, both sides of the prompt pairs and the class
    embeddings too, so the estimator sees one consistent embedding space.

    Parameters
    ----------
    transformer : estimator
        A transformer fitted on ``X`` (cloned) and applied to every carried array.

    Attributes
    ----------
    transformer_ : estimator
        The fitted clone.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.preprocessing import StandardScaler
    >>> Z = EmbeddingsWithContext.wrap(
    ...     np.array([[0.0, 2.0], [2.0, 4.0]]), interventions=np.ones((2, 1, 2)))
    >>> scaled = TransformWithContext(StandardScaler()).fit_transform(Z)
    >>> scaled.fit_context["interventions"][:, 0]
    array([[ 0., -2.],
           [ 0., -2.]])
    """

    def __init__(self, transformer: Any) -> None:
        self.transformer = transformer

    def fit(self, X: Any, y: Any = None, **fit_params: Any) -> TransformWithContext:
        """Fit a clone of the transformer on the embeddings ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings; the context they carry is not fitted on.
        y : array-like of shape (n_samples,), default=None
            Passed to the transformer's ``fit``.
        **fit_params : dict
            Passed to the transformer's ``fit``.

        Returns
        -------
        self : object
            The fitted wrapper, with ``transformer_`` set.
        """
        self.transformer_ = clone(self.transformer).fit(np.asarray(X), y, **fit_params)
        return self

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> np.ndarray:
        """Fit on ``X``, then transform ``X`` and its context.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings, possibly an :class:`EmbeddingsWithContext`.
        y : array-like of shape (n_samples,), default=None
            Passed to the transformer's ``fit``.
        **fit_params : dict
            Passed to the transformer's ``fit``.

        Returns
        -------
        X_new : ndarray or EmbeddingsWithContext
            As :meth:`transform` returns it.
        """
        return self.fit(X, y, **fit_params).transform(X)

    def transform(self, X: Any) -> np.ndarray:
        """Transform ``X``; the carried context, if any, is transformed and carried on.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings, possibly an :class:`EmbeddingsWithContext`.

        Returns
        -------
        X_new : ndarray or EmbeddingsWithContext
            The transformed embeddings. When ``X`` carries a context, an
            :class:`EmbeddingsWithContext` whose intervened views, prompt pairs and class
            embeddings are transformed alike (class labels are carried unchanged).

        Raises
        ------
        sklearn.exceptions.NotFittedError
            When the wrapper is not fitted.
        """
        check_is_fitted(self)
        context = fit_context_of(X)
        transformed = self.transformer_.transform(np.asarray(X))
        if not context:
            return transformed
        apply = self.transformer_.transform
        carried: dict[str, Any] = {"class_labels": context.get("class_labels")}
        views = context.get("interventions")
        if views is not None:
            views = np.asarray(views)
            flat = apply(views.reshape(-1, views.shape[-1]))
            carried["interventions"] = flat.reshape(*views.shape[:2], -1)
        if context.get("intervention_pairs") is not None:
            carried["intervention_pairs"] = tuple(map(apply, context["intervention_pairs"]))
        if context.get("class_embeddings") is not None:
            carried["class_embeddings"] = apply(context["class_embeddings"])
        return EmbeddingsWithContext.wrap(transformed, **carried)
