"""Sufficient statistics of CLIP-ICM that add up batch by batch, in O(d^2) memory.

The invariant subspace depends on the data only through ``Z^T Z`` (and the sum of ``Z`` when
centring), ``Delta^T Delta`` and a row count per intervention source, and per-(class, domain)
sums for domain contrasts. :class:`InterventionStatistics` accumulates them over bounded
chunks, so a fit never holds ``Delta`` or a float64 copy of the whole input: inputs may be
``numpy.memmap`` arrays on disk, and partial statistics of separate batches (or Dask chunks)
merge by addition.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse
from sklearn.utils.validation import _assert_all_finite

#: Rows per chunk are chosen so that one chunk of X and its views stays near this size.
CHUNK_BYTES = 32 * 2**20


def chunk_rows(n_features: int, n_views: int, itemsize: int) -> int:
    """Rows per chunk so that X, its views and their Deltas stay near ``CHUNK_BYTES``.

    Parameters
    ----------
    n_features : int
        Embedding dimension d.
    n_views : int
        Intervened copies per sample (0 for none).
    itemsize : int
        Bytes per value (4 for float32).

    Returns
    -------
    int
        A multiple of 256, at least 256.

    Examples
    --------
    >>> chunk_rows(512, 7, 4)
    1024
    """
    per_row = n_features * (1 + 2 * n_views) * itemsize
    return max(256, CHUNK_BYTES // per_row // 256 * 256)


def _reject(block: np.ndarray, input_name: str) -> None:
    """Raise for a block whose statistics are not finite: NaN, infinity, or overflow."""
    _assert_all_finite(block, input_name=input_name)
    raise ValueError(
        f"{input_name} holds values as large as {np.abs(block).max():.3g}: their squares "
        "overflow floating point. Rescale the embeddings (CLIP embeddings are usually unit "
        "norm); the invariant subspace does not depend on their scale."
    )


def _checked_gram(block: np.ndarray, input_name: str) -> np.ndarray:
    """``block^T block`` in float64; a non-finite diagonal means bad input (Cauchy-Schwarz
    bounds every other entry by the diagonal)."""
    with np.errstate(over="ignore", invalid="ignore"):
        gram = np.asarray(block.T @ block, dtype=np.float64)
    if not np.isfinite(np.trace(gram)):
        _reject(block, input_name)
    if block.size and block.dtype.kind == "f":
        # Squares below the smallest normal number lose their digits, then become 0: the
        # statistics would describe rounding, not the data.
        finfo = np.finfo(block.dtype)
        largest = float(np.abs(block).max())
        if 0 < largest < np.sqrt(finfo.tiny / finfo.eps):
            raise ValueError(
                f"{input_name} holds no value larger than {largest:.3g}: their squares "
                f"underflow {block.dtype} floating point. Rescale the embeddings (CLIP "
                "embeddings are usually unit norm); the invariant subspace does not depend "
                "on their scale."
            )
    return gram


class InterventionStatistics:
    """Running sums from which :class:`~skcicm.InvariantCausalMechanism` is solved.

    Parameters
    ----------
    n_features : int
        Embedding dimension d.
    center : bool, default=False
        Whether the covariance of ``Z`` (rather than its second moment) will be needed; the
        Gram matrix is then accumulated around the first batch's mean, which keeps float
        cancellation small when the embeddings share a large common component.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Z, Z_do = rng.normal(size=(10, 3)), rng.normal(size=(10, 2, 3))
    >>> whole = InterventionStatistics(3).add_samples(Z, Z_do)
    >>> parts = InterventionStatistics(3).add_samples(Z[:4], Z_do[:4]).add_samples(Z[4:], Z_do[4:])
    >>> bool(np.allclose(whole.sigma_z(), parts.sigma_z()))
    True
    >>> bool(np.allclose(whole.sigma_delta(), parts.sigma_delta()))
    True
    """

    def __init__(self, n_features: int, *, center: bool = False) -> None:
        self.n_features = n_features
        self.center = center
        self.n_samples = 0
        self.shift: np.ndarray | None = None
        self.sum_z = np.zeros(n_features)
        self.gram_z = np.zeros((n_features, n_features))
        # name -> [Delta^T Delta, number of Delta rows]
        self.sources: dict[str, list[Any]] = {}
        # (class label, domain) -> [sum of Z, count]
        self.domain_sums: dict[tuple[Any, Any], list[Any]] = {}

    def add_samples(
        self,
        X: np.ndarray,
        views: np.ndarray | None = None,
        *,
        y: np.ndarray | None = None,
        domains: np.ndarray | None = None,
        index: np.ndarray | None = None,
    ) -> InterventionStatistics:
        """Add samples, chunk by chunk.

        Nothing is added when a chunk is rejected, so a bad batch leaves the statistics as
        they were.

        Parameters
        ----------
        X : ndarray of shape (n, d)
            Embeddings; a ``numpy.memmap`` is read once, chunk by chunk.
        views : ndarray of shape (n, n_views, d), default=None
            Intervened copies of the samples, sample-major; their Deltas are ``X - views``.
        y : ndarray of shape (n,), default=None
            Class labels, given together with ``domains`` for domain contrasts.
        domains : ndarray of shape (n,), default=None
            Domain labels.
        index : ndarray of int, default=None
            Restricts every input to these rows (a cross-validation fold) without copying
            the whole selection.

        Returns
        -------
        self : InterventionStatistics
            The statistics, with the samples added.

        Raises
        ------
        ValueError
            When ``X`` or ``views`` hold NaN or infinity, or values whose squares overflow.
        """
        n_rows = X.shape[0] if index is None else len(index)
        n_views = 0 if views is None else views.shape[1]
        step = chunk_rows(self.n_features, n_views, X.dtype.itemsize)
        staged = InterventionStatistics(self.n_features, center=self.center)
        staged.shift = self.shift
        # One Delta buffer for all chunks: fresh allocations of this size cost page faults.
        buffer = (
            None
            if views is None
            else np.empty(
                (min(step, n_rows), n_views, self.n_features),
                dtype=np.result_type(X.dtype, views.dtype),
            )
        )
        for start in range(0, n_rows, step):
            rows = slice(start, min(start + step, n_rows))
            if index is not None:
                rows = index[rows]
            chunk = X[rows]
            deltas = None
            if views is not None:
                deltas = buffer[: len(chunk)]
                np.subtract(chunk[:, None, :], views[rows], out=deltas)
            staged._add_chunk(chunk, deltas, None if domains is None else (y[rows], domains[rows]))
        self.merge(staged)
        return self

    def _add_chunk(
        self, chunk: np.ndarray, deltas: np.ndarray | None, groups: tuple | None
    ) -> None:
        chunk = np.asarray(chunk)
        if self.shift is None:
            self.shift = np.zeros(self.n_features)
            if self.center:
                with np.errstate(all="ignore"):
                    self.shift = chunk.mean(axis=0, dtype=np.float64)
                if not np.isfinite(self.shift).all():
                    _reject(chunk, "X")
        shifted = chunk - self.shift.astype(chunk.dtype) if self.center else chunk
        self.gram_z += _checked_gram(shifted, "X")
        self.sum_z += chunk.sum(axis=0, dtype=np.float64)
        self.n_samples += chunk.shape[0]
        if deltas is not None:
            deltas = deltas.reshape(-1, self.n_features)
            self._add_source("interventions", _checked_gram(deltas, "interventions"), len(deltas))
        if groups is not None:
            self._add_group_sums(chunk, *groups)

    def _add_group_sums(self, chunk: np.ndarray, y: np.ndarray, domains: np.ndarray) -> None:
        labels, label_codes = np.unique(y, return_inverse=True)
        names, domain_codes = np.unique(domains, return_inverse=True)
        cells, cell_codes = np.unique(label_codes * len(names) + domain_codes, return_inverse=True)
        one_hot = scipy.sparse.csr_matrix(
            (np.ones(len(cell_codes)), (cell_codes, np.arange(len(cell_codes)))),
            shape=(len(cells), len(cell_codes)),
        )
        sums = np.asarray(one_hot @ chunk, dtype=np.float64)
        counts = np.bincount(cell_codes, minlength=len(cells))
        for cell, total, count in zip(cells, sums, counts, strict=True):
            key = (labels[cell // len(names)], names[cell % len(names)])
            entry = self.domain_sums.setdefault(key, [np.zeros(self.n_features), 0])
            entry[0] += total
            entry[1] += int(count)

    def _add_source(self, name: str, gram: np.ndarray, count: int) -> None:
        entry = self.sources.setdefault(name, [np.zeros((self.n_features,) * 2), 0])
        entry[0] += gram
        entry[1] += count

    def add_pairs(self, first: np.ndarray, second: np.ndarray) -> InterventionStatistics:
        """Add Deltas of pairs not aligned with the samples, such as text prompt pairs.

        Parameters
        ----------
        first, second : array-like of shape (n_pairs, d)
            The two sides of each pair; their Deltas are ``first - second``.

        Returns
        -------
        self : InterventionStatistics
            The statistics, with the pairs added.

        Raises
        ------
        ValueError
            When the pairs hold NaN or infinity, or values whose squares overflow.
        """
        deltas = np.asarray(first, dtype=np.float64) - np.asarray(second, dtype=np.float64)
        self._add_source(
            "intervention_pairs", _checked_gram(deltas, "intervention_pairs"), len(deltas)
        )
        return self

    def merge(self, other: InterventionStatistics) -> InterventionStatistics:
        """Add the statistics of other samples, as if their batches had been added here.

        Parameters
        ----------
        other : InterventionStatistics
            Statistics of other samples, with the same ``n_features`` and ``center``.

        Returns
        -------
        self : InterventionStatistics
            The merged statistics.
        """
        if other.n_samples:
            if self.shift is None:
                self.shift = other.shift
            if self.center and not np.array_equal(self.shift, other.shift):
                # Re-centre other's Gram on our shift: sum (z-a)(z-a)^T from sum (z-b)(z-b)^T.
                offset = other.shift - self.shift
                moved = other.sum_z - other.n_samples * other.shift
                other_gram = (
                    other.gram_z
                    + np.outer(moved, offset)
                    + np.outer(offset, moved)
                    + other.n_samples * np.outer(offset, offset)
                )
            else:
                other_gram = other.gram_z
            self.gram_z += other_gram
            self.sum_z += other.sum_z
            self.n_samples += other.n_samples
        for name, (gram, count) in other.sources.items():
            self._add_source(name, gram, count)
        for key, (total, count) in other.domain_sums.items():
            entry = self.domain_sums.setdefault(key, [np.zeros(self.n_features), 0])
            entry[0] += total
            entry[1] += count
        return self

    def mean(self) -> np.ndarray:
        """Mean of the samples.

        Returns
        -------
        ndarray of shape (d,)
            The mean of every sample added so far.
        """
        return self.sum_z / self.n_samples

    def sigma_z(self) -> np.ndarray:
        """Second moment of the samples, or their covariance when ``center`` is true.

        Returns
        -------
        ndarray of shape (d, d)
            ``Z^T Z / n``, or the covariance of ``Z``.
        """
        if not self.center:
            return self.gram_z / self.n_samples
        offset = self.mean() - self.shift
        return self.gram_z / self.n_samples - np.outer(offset, offset)

    def domain_contrasts(self) -> np.ndarray:
        """Differences of class-conditional domain means, every pair of domains per class.

        For each class and each pair of domains holding it, the difference of the two
        class-conditional means, computed from the running sums.

        Returns
        -------
        ndarray of shape (n_contrasts, d)
            One row per class and pair of domains in which that class was seen; no rows
            when no class was seen in two domains.
        """
        by_class: dict[Any, list[np.ndarray]] = {}
        for (label, _), (total, count) in self.domain_sums.items():
            by_class.setdefault(label, []).append(total / count)
        rows = [
            means[i] - means[j]
            for means in by_class.values()
            for i in range(len(means))
            for j in range(i + 1, len(means))
        ]
        return np.asarray(rows) if rows else np.empty((0, self.n_features))

    def delta_grams(self) -> dict[str, tuple[np.ndarray, int]]:
        """The Gram matrix of the Deltas of each intervention source.

        Returns
        -------
        dict of str to (ndarray of shape (d, d), int)
            ``(Delta^T Delta, n_rows)`` of each source that has rows, among
            ``"interventions"``, ``"domains"`` and ``"intervention_pairs"``, in that order.
        """
        grams = {}
        if "interventions" in self.sources:
            grams["interventions"] = tuple(self.sources["interventions"])
        if self.domain_sums:
            contrasts = self.domain_contrasts()
            if len(contrasts):
                grams["domains"] = (contrasts.T @ contrasts, len(contrasts))
        if "intervention_pairs" in self.sources:
            grams["intervention_pairs"] = tuple(self.sources["intervention_pairs"])
        return {name: (gram, count) for name, (gram, count) in grams.items() if count}

    def sigma_delta(self) -> np.ndarray:
        """Intervention covariance ``Sigma_Delta`` of the CLIP-ICM objective.

        Returns
        -------
        ndarray of shape (d, d)
            Average of ``Delta^T Delta / m`` over the sources; zeros when there are none.
        """
        grams = self.delta_grams()
        covariance = np.zeros((self.n_features, self.n_features))
        for gram, count in grams.values():
            covariance += gram / count
        return covariance / max(len(grams), 1)


def _block_statistics(
    X: np.ndarray,
    views: np.ndarray | None,
    y: np.ndarray | None,
    domains: np.ndarray | None,
    n_features: int,
    center: bool,
) -> InterventionStatistics:
    return InterventionStatistics(n_features, center=center).add_samples(
        X, views, y=y, domains=domains
    )


def _merged(parts: list[InterventionStatistics]) -> InterventionStatistics:
    total = parts[0]
    for part in parts[1:]:
        total.merge(part)
    return total


def dask_statistics(
    X: Any, views: Any = None, *, y: Any = None, domains: Any = None, center: bool = False
) -> InterventionStatistics:
    """Statistics of a row-chunked ``dask.array``, reduced from per-block statistics.

    Each block's statistics are computed where the block lives (any Dask scheduler or
    distributed cluster); only d x d sums, and d-vector sums per (class, domain) cell, travel.

    Parameters
    ----------
    X : dask.array.Array of shape (n, d)
        Embeddings, chunked by rows.
    views : dask.array.Array or ndarray of shape (n, n_views, d), default=None
        Intervened copies, sample-major; re-chunked to the row blocks of ``X``.
    y : dask.array.Array or ndarray of shape (n,), default=None
        Class labels, given together with ``domains``; re-chunked to the row blocks of ``X``.
    domains : dask.array.Array or ndarray of shape (n,), default=None
        Domain labels, for the per-(class, domain) sums of the domain contrasts; re-chunked
        to the row blocks of ``X``.
    center : bool, default=False
        As in :class:`InterventionStatistics`.

    Returns
    -------
    InterventionStatistics
        The statistics of all rows, computed.

    Raises
    ------
    ValueError
        When a block holds NaN, infinity, or values whose squares overflow, or ``domains``
        comes without ``y``.
    """
    import dask
    import dask.array as da

    if domains is not None and y is None:
        raise ValueError("dask_statistics: domains needs the class labels y beside it.")
    n_features = X.shape[1]
    X = X.rechunk({1: -1})
    blocks = X.to_delayed().ravel()
    view_blocks = y_blocks = domain_blocks = [None] * len(blocks)
    if views is not None:
        views = da.asarray(views).rechunk((X.chunks[0], -1, -1))
        view_blocks = views.to_delayed().ravel()
    if domains is not None:
        y_blocks = da.asarray(y).rechunk((X.chunks[0],)).to_delayed().ravel()
        domain_blocks = da.asarray(domains).rechunk((X.chunks[0],)).to_delayed().ravel()
    parts = [
        dask.delayed(_block_statistics)(*block_inputs, n_features, center)
        for block_inputs in zip(blocks, view_blocks, y_blocks, domain_blocks, strict=True)
    ]
    # A tree of merges keeps every task's input to a few d x d sums.
    while len(parts) > 1:
        parts = [dask.delayed(_merged)(parts[i : i + 8]) for i in range(0, len(parts), 8)]
    return parts[0].compute()
