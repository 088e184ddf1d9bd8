"""Validation of the lam x n_components grid."""

from __future__ import annotations

from collections.abc import Iterable
from numbers import Integral, Real

import numpy as np

#: Largest ``lam`` a grid may hold. Far beyond any useful value (the useful range with
#: ``lam_scale="trace"`` is below 10), and far enough below float64's largest number that
#: ``lam * Sigma_Delta`` stays finite, with either ``lam_scale``, for embeddings of any sane scale.
MAX_LAM = 1e100


def check_grid(
    lam: float | Iterable[float], n_components: int | Iterable[int] | None, n_features: int
) -> tuple[list[float], list[int | None]]:
    """Validate a grid of ``lam`` and ``n_components`` values.

    Parameters
    ----------
    lam : float or iterable of float
        Non-negative penalty weights.
    n_components : int, None or iterable of int
        Subspace dimensions in ``1..n_features``; None means ``n_features``.
    n_features : int
        Embedding dimension.

    Returns
    -------
    lams, ks : list
        Sorted unique values.

    Raises
    ------
    ValueError
        For an empty grid, a negative, non-finite or above ``MAX_LAM`` ``lam``, or an
        ``n_components`` outside ``1..n_features``, naming the offending value.

    Examples
    --------
    >>> check_grid([1.0, 0.1, 1.0], 8, n_features=16)
    ([0.1, 1.0], [8])
    """
    lams = [lam] if isinstance(lam, Real) else list(lam)
    ks = (
        [n_components]
        if n_components is None or isinstance(n_components, Integral)
        else list(n_components)
    )
    if not lams or not ks:
        raise ValueError("The lam and n_components grids must each hold at least one value.")
    for value in lams:
        if (
            isinstance(value, bool)
            or not isinstance(value, Real)
            or not np.isfinite(value)
            or value < 0
        ):
            raise ValueError(f"lam values must be finite numbers >= 0; got {value!r}.")
        if value > MAX_LAM:
            raise ValueError(
                f"lam values must be at most {MAX_LAM:g}; got {value!r}, which overflows "
                "M = Sigma_Z - lam * Sigma_Delta in floating point."
            )
    for value in ks:
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, Integral)
            or not 1 <= value <= n_features
        ):
            raise ValueError(
                f"n_components values must be integers in 1..{n_features} (the embedding "
                f"dimension); got {value!r}."
            )
    ks = [n_features if k is None else int(k) for k in ks]
    return sorted({float(v) for v in lams}), sorted(set(ks))
