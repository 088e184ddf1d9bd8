"""The Dask side of :class:`~skcicm.InvariantCausalMechanism`: work per row block of ``X``.

A Dask ``X`` is never gathered whole. Labels and domains are aligned with its row blocks and
summarised on the cluster (classes, (class, domain) cells); the linear probe is the
classifier's own ``fit`` on the projected blocks gathered (n x K), as in memory; predictions
are lazy Dask arrays computed block by block with the estimator's own NumPy methods, so that
they equal the in-memory ones.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from skcicm.icm._fit_inputs import _is_missing


def aligned_rows(values: Any, X: Any, name: str) -> Any:
    """``values`` (NumPy or Dask, one per sample) as a Dask array chunked like the rows of ``X``.

    Parameters
    ----------
    values : array-like or dask.array.Array of shape (n_samples,)
        One label per row of ``X``.
    X : dask.array.Array of shape (n_samples, n_features)
        The embeddings whose row blocks ``values`` must follow.
    name : str
        Parameter name, for the error messages.

    Returns
    -------
    dask.array.Array of shape (n_samples,)
        ``values`` with the row chunks of ``X``.

    Raises
    ------
    ValueError
        When ``values`` is not one label per row of ``X``, or a row chunk size of either is
        unknown (NaN), so that the two cannot be aligned.
    """
    import dask.array as da

    values = values if hasattr(values, "__dask_graph__") else np.asarray(values)
    for array, array_name in ((X, "X"), (values, name)):
        if any(math.isnan(size) for size in array.shape):
            raise ValueError(
                f"{array_name} has unknown row chunk sizes (shape {array.shape}), so {name} "
                f"cannot be aligned with the rows of X. Call {array_name}.compute_chunk_sizes() "
                "first."
            )
    if values.shape != (X.shape[0],):
        raise ValueError(
            f"{name} has shape {values.shape}; expected ({X.shape[0]},), one label per row of "
            f"X (shape {X.shape}); it is then re-chunked to the row chunks of X."
        )
    return da.asarray(values).rechunk((X.chunks[0],))


class _BlockLabels(NamedTuple):
    classes: np.ndarray  # distinct labels of y in the block
    cells: set  # distinct (label, domain) pairs in the block
    missing: np.ndarray  # block-local indices of missing domain labels


def _block_labels(y: np.ndarray, domains: np.ndarray | None) -> _BlockLabels:
    y = np.asarray(y)
    if domains is None:
        return _BlockLabels(np.unique(y), set(), np.empty(0, dtype=int))
    domains = np.asarray(domains)
    cells = set(zip(y.tolist(), domains.tolist(), strict=True))
    return _BlockLabels(np.unique(y), cells, np.flatnonzero(_is_missing(domains)))


def label_summary(y: Any, domains: Any = None) -> tuple[np.ndarray, set]:
    """Classes and (class, domain) cells of row-aligned Dask labels, in one pass on the cluster.

    Parameters
    ----------
    y : dask.array.Array of shape (n_samples,)
        Class labels.
    domains : dask.array.Array of shape (n_samples,), default=None
        Domain labels, chunked like ``y``.

    Returns
    -------
    classes : ndarray
        The sorted distinct labels of ``y``.
    cells : set of tuple
        The distinct ``(label, domain)`` pairs; empty without ``domains``.

    Raises
    ------
    ValueError
        When ``domains`` has missing labels (NaN or None).
    """
    import dask

    y_blocks = y.to_delayed().ravel()
    domain_blocks = [None] * len(y_blocks) if domains is None else domains.to_delayed().ravel()
    parts = dask.compute(
        *(
            dask.delayed(_block_labels)(y_block, domain_block)
            for y_block, domain_block in zip(y_blocks, domain_blocks, strict=True)
        )
    )
    offsets = np.cumsum([0, *y.chunks[0][:-1]])
    missing = np.concatenate(
        [offset + part.missing for offset, part in zip(offsets, parts, strict=True)]
    )
    if len(missing):
        raise ValueError(
            f"domains has {len(missing)} missing labels (NaN or None), e.g. at index "
            f"{missing[0]}; every sample needs its domain."
        )
    classes = np.unique(np.concatenate([part.classes for part in parts]))
    return classes, set().union(*(part.cells for part in parts))


def _run_method(block: np.ndarray, estimator: Any, method: str) -> np.ndarray:
    return getattr(estimator, method)(block)


def lazy_method(estimator: Any, method: str, X: Any) -> Any:
    """``estimator.<method>`` applied to each row block of a Dask ``X``, as a lazy Dask array.

    The fitted estimator travels to the workers once (one graph key) and runs its own NumPy
    method on every block, so the blocks equal the in-memory result for the same rows. The
    method runs once on a single row here first: it validates the estimator and ``X`` eagerly
    and gives the output's dtype and columns.

    Parameters
    ----------
    estimator : InvariantCausalMechanism
        A fitted estimator.
    method : str
        ``"transform"``, ``"predict"``, ``"predict_proba"`` or ``"decision_function"``.
    X : dask.array.Array of shape (n_samples, n_features)
        Embeddings, chunked by rows (columns are joined into one chunk).

    Returns
    -------
    dask.array.Array of shape (n_samples,) or (n_samples, n_outputs)
        The method's output, row-chunked like ``X``, not computed.

    Raises
    ------
    ValueError
        When ``X`` is not a 2-D array with the estimator's ``n_features_in_`` columns.
    """
    import dask

    if X.ndim != 2 or X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has shape {X.shape}; expected (n_samples, {estimator.n_features_in_}), the "
            "features the estimator was fitted with."
        )
    X = X.rechunk({1: -1})
    sample = np.asarray(getattr(estimator, method)(np.ones((1, X.shape[1]), dtype=X.dtype)))
    columns = sample.shape[1:]
    return X.map_blocks(
        _run_method,
        dask.delayed(estimator, pure=True),
        method,
        chunks=(X.chunks[0], *((n,) for n in columns)),
        drop_axis=[] if columns else 1,
        dtype=sample.dtype,
        meta=np.empty((0, *columns), dtype=sample.dtype),
    )


def fit_probe(estimator: Any, classifier: Any, X: Any, y: Any) -> Any:
    """Fit the linear probe on the projected row blocks of a Dask ``X``.

    The projected features ``(X - mean_) @ components_.T`` are computed block by block on the
    cluster, in float64 as in memory, and gathered: the classifier's own ``fit`` runs on
    them, so the probe is the in-memory one. That holds ``n_samples * n_components_ * 8``
    bytes on the client, twice that while Dask joins the computed blocks. For memory flat in
    ``n_samples``, fit with ``head=None`` and train an incremental classifier on the lazy
    output of ``transform`` yourself: streaming through ``partial_fit`` is another method
    than ``fit`` (one pass, order-dependent), so it is never chosen silently.

    Parameters
    ----------
    estimator : InvariantCausalMechanism
        The estimator, with its subspace solved.
    classifier : estimator
        A fresh (cloned) classifier.
    X : dask.array.Array of shape (n_samples, n_features)
        Embeddings, chunked by rows.
    y : dask.array.Array of shape (n_samples,)
        Class labels, chunked like the rows of ``X``.

    Returns
    -------
    classifier : estimator
        The fitted classifier.
    """
    import dask

    # The estimator's own transform on every block: the in-memory probe's float64 features.
    features, labels = dask.compute(lazy_method(estimator, "transform", X), y)
    return classifier.fit(features, labels)
