"""The work one fold of :class:`InvariantCausalMechanismCV` shares among its candidates.

Statistics of every training fold from one pass over the data, the projections (or, for the
zero-shot head, the cosine similarities) that every K of a (fold, lam, selection) slices, the
candidates that score from them, and the probes warm-started along K.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from skcicm.icm._estimator import InvariantCausalMechanism, _default_classifier
from skcicm.icm._statistics import InterventionStatistics
from skcicm.icm._subspace import unit_rows


class Candidate(InvariantCausalMechanism):
    """A fitted candidate that reuses its fold's cached work instead of projecting afresh.

    ``_fold_cache`` is the :class:`FoldProjections` of its (fold, lam, selection).
    """

    def _project(self, X: np.ndarray, *, centred: bool) -> np.ndarray:
        projection = self._fold_cache.projection(X)
        if projection is None:
            return super()._project(X, centred=centred)
        projected = projection[:, : self.n_components_]
        if centred and self.center:
            projected = projected - self.mean_ @ self.components_.T
        return projected

    def _zero_shot_similarity(self, X: Any) -> np.ndarray:
        similarity = self._fold_cache.similarity(X, self.n_components_)
        if similarity is None:
            return super()._zero_shot_similarity(X)
        return similarity


class FoldProjections:
    """What every K of one (fold, lam, selection) needs from the fold's arrays, computed once.

    For the linear probe: the projections onto every eigenvector in preferred order; a
    candidate keeping K directions uses the first K columns. For the zero-shot head: each K's
    cosine similarities to the classes, ``(X V_K^T)(W_K)^T / ||X V_K^T||`` with ``W_K`` the
    unit class directions. The numerators of every K come from one product of X with the
    class directions mapped back to the input space, and the norms from X projected only up
    to the largest K below d: K = d keeps every direction of an orthonormal basis, so its norm
    is X's own.

    Parameters
    ----------
    ordered : ndarray of shape (d, d)
        Every eigenvector as a row, in preferred order.
    arrays : list of ndarray
        The fold's float64 arrays, recognised by identity when a candidate is scored.
    ks : list of int
        The grid's ``n_components``.
    class_embeddings : ndarray of shape (n_classes, d) or None
        Text embeddings of the classes, for the zero-shot head; None for the probe.
    """

    def __init__(
        self,
        ordered: np.ndarray,
        arrays: list[np.ndarray],
        ks: list[int],
        class_embeddings: np.ndarray | None,
    ) -> None:
        self.arrays = arrays
        self.projections = None
        self.similarities = None
        if class_embeddings is None:
            self.projections = [X @ ordered.T for X in arrays]
            return
        n_features = ordered.shape[0]
        partial = [k for k in ks if k < n_features]
        widest = partial[-1] if partial else 0
        self.class_weights = {k: unit_rows(class_embeddings @ ordered[:k].T) for k in ks}
        # At K = d, V^T W^T is the unit class embeddings themselves: taking them directly makes
        # every lam's K = d scores bit-identical, so they tie as they do mathematically.
        mapped_back = [
            unit_rows(class_embeddings).T if k == n_features else ordered[:k].T @ weights.T
            for k, weights in self.class_weights.items()
        ]
        self.similarities = []
        for X in arrays:
            product = X @ np.hstack([ordered[:widest].T, *mapped_back])
            norms = {n_features: np.linalg.norm(X, axis=1)}
            if partial:
                squared = product[:, :widest] ** 2
                segments = np.add.reduceat(squared, [0, *partial[:-1]], axis=1)
                cumulative = np.sqrt(np.cumsum(segments, axis=1))
                norms.update({k: cumulative[:, i] for i, k in enumerate(partial)})
            numerators = np.split(product[:, widest:], len(ks), axis=1)
            floor = np.finfo(np.float32).tiny
            self.similarities.append(
                {k: numerators[i] / np.maximum(norms[k], floor)[:, None] for i, k in enumerate(ks)}
            )

    def _position(self, X: Any) -> int | None:
        return next((i for i, array in enumerate(self.arrays) if array is X), None)

    def projection(self, X: Any) -> np.ndarray | None:
        """The projection of a cached array onto every direction, or None."""
        position = self._position(X)
        if position is None or self.projections is None:
            return None
        return self.projections[position]

    def similarity(self, X: Any, k: int) -> np.ndarray | None:
        """Cosine similarities of a cached array's rows to the classes at ``k``, or None."""
        position = self._position(X)
        if position is None or self.similarities is None:
            return None
        return self.similarities[position][k]


def fold_statistics(
    X: np.ndarray,
    views: np.ndarray | None,
    y: np.ndarray | None,
    domains: np.ndarray | None,
    pairs: tuple[np.ndarray, np.ndarray] | None,
    splits: list[tuple[np.ndarray, np.ndarray]],
    *,
    center: bool,
    n_jobs: int | None,
) -> list[InterventionStatistics]:
    """Each training fold's statistics, the pairs' included.

    When the test folds partition the samples and every training fold is the rest (K-fold,
    leave-one-group-out), the statistics of the test folds are computed once and each training
    fold's are the sum of the other test folds': one pass over the data instead of one per
    fold. Other splitters get a pass per training fold.
    """
    n_samples, n_features = X.shape
    partitioned = _test_folds_partition(splits, n_samples)
    parts = [test for _, test in splits] if partitioned else [train for train, _ in splits]
    part_statistics = Parallel(n_jobs=n_jobs)(
        delayed(_statistics_of)(X, views, y, domains, index, center=center) for index in parts
    )
    if partitioned:
        folds = []
        for held_out in range(len(parts)):
            fold = InterventionStatistics(n_features, center=center)
            for position, part in enumerate(part_statistics):
                if position != held_out:
                    fold.merge(part)
            folds.append(fold)
    else:
        folds = part_statistics
    if pairs is not None:
        for fold in folds:
            fold.add_pairs(*pairs)
    return folds


def _statistics_of(
    X: np.ndarray,
    views: np.ndarray | None,
    y: np.ndarray | None,
    domains: np.ndarray | None,
    index: np.ndarray,
    *,
    center: bool,
) -> InterventionStatistics:
    statistics = InterventionStatistics(X.shape[1], center=center)
    return statistics.add_samples(X, views, y=y, domains=domains, index=index)


def _test_folds_partition(splits: list[tuple[np.ndarray, np.ndarray]], n_samples: int) -> bool:
    """Whether the test folds are disjoint, cover every sample, and each trains on the rest."""
    tests = np.concatenate([test for _, test in splits])
    if len(tests) != n_samples or len(np.unique(tests)) != n_samples:
        return False
    everything = np.arange(n_samples)
    return all(
        len(train) + len(test) == n_samples
        and np.array_equal(np.sort(np.concatenate([train, test])), everything)
        for train, test in splits
    )


def fit_probe(
    candidate: InvariantCausalMechanism, features: np.ndarray, y: np.ndarray, previous: Any
) -> Any:
    """Fit the candidate's probe, warm-started from ``previous``, the probe of a smaller K.

    The first K' coordinates of these features are the smaller K' candidate's features, so
    its probe padded with zero weights is a close starting point. Only LogisticRegression
    probes start warm; other classifiers, and the first K of a decomposition, start cold.
    """
    classifier = candidate.classifier
    probe = clone(classifier if classifier is not None else _default_classifier())
    if (
        not isinstance(probe, LogisticRegression)
        or not isinstance(previous, LogisticRegression)
        or previous.coef_.shape[1] > features.shape[1]
    ):
        return probe.fit(features, y)
    coef = np.zeros((previous.coef_.shape[0], features.shape[1]))
    coef[:, : previous.coef_.shape[1]] = previous.coef_
    probe.set_params(warm_start=True)
    probe.coef_, probe.intercept_ = coef, previous.intercept_.copy()
    return probe.fit(features, y)
