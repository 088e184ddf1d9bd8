"""Estimation of the invariant subspace from embeddings and their interventional differences.

These are the numerical kernels behind :class:`skcicm.InvariantCausalMechanism`; they take
validated float arrays and return plain arrays, so they can be checked against a hand
computation.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

# Ridge, relative to the mean eigenvalue of Sigma_Delta, that keeps the generalized
# eigenproblem well posed when the interventions span fewer than d directions.
RATIO_RIDGE = 1e-3


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Scale each row to unit L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, np.finfo(np.float32).tiny)


def invariant_subspace(
    sigma_z: np.ndarray,
    sigma_delta: np.ndarray,
    *,
    lam: float,
    n_components: int,
    selection: str = "largest",
    objective: str = "difference",
) -> tuple[np.ndarray, np.ndarray]:
    """Solve for the invariant directions.

    ``objective="difference"`` is the paper's estimator: the eigenvectors of
    ``M = Sigma_Z - lam * Sigma_Delta`` with the largest eigenvalues (``selection="largest"``),
    or the smallest ones as the authors' released script keeps them (``"smallest"``).
    ``objective="ratio"`` solves the scale-free generalized problem
    ``Sigma_Z v = mu (Sigma_Delta + eps I) v``; its eigenvectors are normalised so that
    ``V^T (Sigma_Delta + eps I) V = I`` (whitened coordinates), so they are not orthonormal.

    Parameters
    ----------
    sigma_z : ndarray of shape (d, d)
        Second moment (or covariance) of the embeddings, ``Sigma_Z``.
    sigma_delta : ndarray of shape (d, d)
        Second moment of the intervention differences, ``Sigma_Delta``.
    lam : float
        Weight of ``Sigma_Delta`` in the difference objective (ignored by ``"ratio"``).
    n_components : int
        How many directions to keep.
    selection : {"largest", "smallest"}, default="largest"
        Which end of the spectrum of ``M`` to keep (difference objective).
    objective : {"difference", "ratio"}, default="difference"
        The eigenproblem to solve.

    Returns
    -------
    components : ndarray of shape (n_components, d)
        The directions, one per row, ordered as selected (most preferred first).
    eigenvalues : ndarray of shape (n_components,)
        Their eigenvalues.

    Examples
    --------
    >>> import numpy as np
    >>> components, values = invariant_subspace(
    ...     np.diag([3.0, 2.0]), np.diag([0.0, 2.0]), lam=1.0, n_components=1)
    >>> components, values
    (array([[1., 0.]]), array([3.]))
    """
    eigenvalues, eigenvectors = solve_eigenproblem(
        sigma_z, sigma_delta, lam=lam, objective=objective
    )
    return select_components(eigenvalues, eigenvectors, n_components, selection)


def solve_eigenproblem(
    sigma_z: np.ndarray, sigma_delta: np.ndarray, *, lam: float, objective: str = "difference"
) -> tuple[np.ndarray, np.ndarray]:
    """All eigenpairs of the problem :func:`invariant_subspace` solves, eigenvalues ascending.

    One decomposition serves every ``n_components`` and both selections: each is a slice
    (:func:`select_components`).
    """
    if objective == "difference":
        return np.linalg.eigh(sigma_z - lam * sigma_delta)
    mean_eigenvalue = np.trace(sigma_delta) / sigma_delta.shape[0]
    identity = np.eye(sigma_delta.shape[0])
    # Without interventions the problem falls back to the plain one (B = I).
    regularised = (
        sigma_delta + RATIO_RIDGE * mean_eigenvalue * identity if mean_eigenvalue > 0 else identity
    )
    return scipy.linalg.eigh(sigma_z, regularised)


def select_components(
    eigenvalues: np.ndarray, eigenvectors: np.ndarray, n_components: int, selection: str
) -> tuple[np.ndarray, np.ndarray]:
    """Keep ``n_components`` eigenvectors from the preferred end, with reproducible signs.

    Returns ``(components, eigenvalues)`` with components as rows, most preferred first.

    Examples
    --------
    >>> import numpy as np
    >>> select_components(np.array([1.0, 2.0]), np.eye(2), 1, "largest")
    (array([[0., 1.]]), array([2.]))
    """
    # eigh sorts ascending; the preferred end comes first in the output.
    order = (
        np.arange(n_components) if selection == "smallest" else np.arange(-1, -n_components - 1, -1)
    )
    components = eigenvectors[:, order].T
    # Eigenvectors are defined up to sign; fixing it makes fits reproducible across LAPACK builds.
    signs = np.sign(components[np.arange(n_components), np.abs(components).argmax(axis=1)])
    return components * signs[:, None], eigenvalues[order]
