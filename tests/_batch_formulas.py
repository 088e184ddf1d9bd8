"""The batch formulas of CLIP-ICM's statistics, written out plainly as test references.

The library accumulates these quantities in bounded chunks (:mod:`skcicm.icm`); the
tests check the streamed values against these whole-array definitions.
"""

from collections.abc import Sequence

import numpy as np


def second_moment(Z: np.ndarray, *, center: bool = False) -> np.ndarray:
    """Return ``Z^T Z / n``, or the covariance of ``Z`` when ``center`` is true.

    Examples
    --------
    >>> import numpy as np
    >>> second_moment(np.array([[1.0, 0.0], [3.0, 0.0]]))
    array([[5., 0.],
           [0., 0.]])
    """
    if center:
        Z = Z - Z.mean(axis=0)
    return Z.T @ Z / Z.shape[0]


def domain_contrast_deltas(Z: np.ndarray, y: np.ndarray, domains: np.ndarray) -> np.ndarray:
    """Differences of class-conditional means between every pair of domains.

    For each class ``c`` and each pair of domains ``(e, e')`` that both contain ``c``, the row
    ``mean(Z[y == c, domains == e]) - mean(Z[y == c, domains == e'])`` estimates the effect of
    intervening on the domain while the class is held fixed. Means, rather than pairs of
    individual samples, keep within-domain instance variation (which carries class
    information) out of the intervention covariance.

    Returns an array of shape (n_pairs, d); it is empty when no class is seen in two domains.

    Examples
    --------
    >>> import numpy as np
    >>> Z = np.array([[0.0, 1.0], [2.0, 1.0], [0.0, 3.0], [4.0, 3.0]])
    >>> domain_contrast_deltas(Z, np.array([0, 0, 1, 1]), np.array(["a", "b", "a", "b"]))
    array([[-2.,  0.],
           [-4.,  0.]])
    """
    rows = []
    for label in np.unique(y):
        in_class = y == label
        class_domains = np.unique(domains[in_class])
        means = [Z[in_class & (domains == domain)].mean(axis=0) for domain in class_domains]
        for i in range(len(means)):
            for j in range(i + 1, len(means)):
                rows.append(means[i] - means[j])
    if not rows:
        return np.empty((0, Z.shape[1]), dtype=Z.dtype)
    return np.asarray(rows)


def intervention_covariance(delta_sources: Sequence[np.ndarray], n_features: int) -> np.ndarray:
    """Average of ``Delta^T Delta / m`` over the sources of interventional differences.

    Each source (paired image views, domain contrasts, text prompt pairs) is an estimate of
    the same covariance of variant directions; averaging the sources, instead of stacking
    their rows, stops the one with most rows from drowning the others.
    """
    covariance = np.zeros((n_features, n_features))
    sources = [deltas for deltas in delta_sources if deltas.shape[0] > 0]
    for deltas in sources:
        covariance += deltas.T @ deltas / deltas.shape[0]
    return covariance / max(len(sources), 1)
