"""Synthetic embedding-space structural causal model with known invariant subspace.

Latent model (one row per sample)::

    y      ~ Uniform{0, ..., n_classes - 1}          class
    e      ~ Uniform{0, ..., n_domains - 1}          domain
    z_inv  = mu[y] + eps_inv,    eps_inv ~ N(0, I)   invariant latents
    z_var  = nu[e] + eps_var,    eps_var ~ N(0, I)   variant latents
    X      = [z_inv, z_var, 0] @ mixing + noise * N(0, I)

``mixing`` is an invertible ``(d, d)`` matrix, so its first ``n_invariant``
rows are the embedding-space directions written by the invariant latents and
the next ``n_variant`` rows those written by the variant latents; the
remaining latent coordinates (only when ``n_features > n_invariant +
n_variant``) are zero, so noiseless embeddings span an
``n_invariant + n_variant`` dimensional subspace of R^d, as real CLIP
embeddings concentrate on a low-dimensional subspace.

An intervention re-draws only the variant latents: a fresh domain ``e'`` and
fresh ``eps_var'`` give ``z_var_new``, and the twin uses
``z_var + intervention_scale * (z_var_new - z_var)``.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import null_space, orth
from sklearn.utils import Bunch

__all__ = ["make_scm_embeddings"]

# Class and domain centres are this many within-group standard deviations apart
# (in expectation); variant latents get the larger spread so that plain PCA is
# drawn to them and only an intervention-aware method finds the invariant part.
_CLASS_SEP = 2.0
_DOMAIN_SEP = 3.0


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def make_scm_embeddings(
    n_samples: int = 1000,
    *,
    n_invariant: int = 4,
    n_variant: int = 4,
    n_classes: int = 3,
    n_domains: int = 3,
    n_features: int | None = None,
    intervention_scale: float = 1.0,
    noise: float = 0.0,
    random_state: int | np.random.Generator | None = 0,
) -> Bunch:
    """Embeddings from a linear SCM of invariant and variant latents, with interventions.

    See the module docstring for the generative model.

    Parameters
    ----------
    n_samples : int, default=1000
        Number of samples (and of interventional twins).
    n_invariant : int, default=4
        Number of invariant (class-dependent) latents.
    n_variant : int, default=4
        Number of variant (domain-dependent) latents.
    n_classes : int, default=3
        Number of classes.
    n_domains : int, default=3
        Number of domains (clusters of the variant latents).
    n_features : int, optional
        Embedding dimension ``d``; default and minimum ``n_invariant + n_variant``.
    intervention_scale : float, default=1.0
        Strength of the intervention on the variant latents: 1 re-draws them
        completely, 0 leaves them unchanged (``X_do == X`` when ``noise=0``).
    noise : float, default=0.0
        Standard deviation of isotropic observation noise, drawn independently
        for ``X`` and ``X_do`` (so with ``noise > 0`` the difference is no longer
        confined to the variant subspace, as with real encoders).
    random_state : int, numpy Generator or None, default=0
        Seed; the same seed gives the same data.

    Returns
    -------
    sklearn.utils.Bunch
        ``X``, ``X_do`` : ndarray of shape (n_samples, d)
            Embeddings and their interventional twins (same samples, only the
            variant latents changed).
        ``y``, ``domains``, ``domains_do`` : int64 ndarray of shape (n_samples,)
            Class, domain, and the domain the intervention re-draws the variant
            latents from.
        ``latents``, ``latents_do`` : ndarray of shape (n_samples, n_invariant + n_variant)
            ``[z_inv, z_var]`` before and after the intervention.
        ``mixing`` : ndarray of shape (d, d)
            Invertible mixing; ``X = [latents, 0] @ mixing (+ noise)``.
        ``variant_subspace`` : ndarray of shape (n_variant, d)
            Orthonormal basis of the span of the variant rows of ``mixing``:
            every difference ``X_do - X`` lies in it (when ``noise=0``).
        ``invariant_subspace`` : ndarray of shape (n_invariant, d)
            Ground truth for invariant-mechanism estimators: orthonormal basis
            of the subspace of the data span orthogonal to the variant
            subspace, i.e. of the invariant rows of ``mixing`` projected onto
            the orthogonal complement of ``variant_subspace``. Projecting an
            embedding onto it removes every effect of the variant latents
            while keeping an invertible image of ``z_inv``.

    Examples
    --------
    >>> import numpy as np
    >>> from skcicm.datasets import make_scm_embeddings
    >>> data = make_scm_embeddings(200, n_invariant=2, n_variant=3, random_state=0)
    >>> data.X.shape, data.invariant_subspace.shape
    ((200, 5), (2, 5))
    >>> bool(np.allclose((data.X_do - data.X) @ data.invariant_subspace.T, 0))
    True
    """
    n_samples = _check_int(n_samples, "n_samples", 1)
    n_invariant = _check_int(n_invariant, "n_invariant", 1)
    n_variant = _check_int(n_variant, "n_variant", 1)
    n_classes = _check_int(n_classes, "n_classes", 1)
    n_domains = _check_int(n_domains, "n_domains", 1)
    k = n_invariant + n_variant
    d = k if n_features is None else _check_int(n_features, "n_features", k)
    if not np.isfinite(intervention_scale) or intervention_scale < 0:
        raise ValueError(f"intervention_scale must be finite and >= 0, got {intervention_scale}")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be finite and >= 0, got {noise}")
    rng = np.random.default_rng(random_state)

    # Well-conditioned invertible mixing: random rotations around singular values in [0.5, 2].
    u = np.linalg.qr(rng.standard_normal((d, d)))[0]
    v = np.linalg.qr(rng.standard_normal((d, d)))[0]
    mixing = (u * rng.uniform(0.5, 2.0, d)) @ v.T

    class_means = _CLASS_SEP * rng.standard_normal((n_classes, n_invariant))
    domain_means = _DOMAIN_SEP * rng.standard_normal((n_domains, n_variant))
    y = rng.integers(n_classes, size=n_samples)
    domains = rng.integers(n_domains, size=n_samples)
    z_inv = class_means[y] + rng.standard_normal((n_samples, n_invariant))
    z_var = domain_means[domains] + rng.standard_normal((n_samples, n_variant))
    domains_do = rng.integers(n_domains, size=n_samples)
    z_var_new = domain_means[domains_do] + rng.standard_normal((n_samples, n_variant))
    z_var_do = z_var + intervention_scale * (z_var_new - z_var)

    latents = np.hstack([z_inv, z_var])
    latents_do = np.hstack([z_inv, z_var_do])
    X = latents @ mixing[:k] + noise * rng.standard_normal((n_samples, d))
    X_do = latents_do @ mixing[:k] + noise * rng.standard_normal((n_samples, d))

    variant_subspace = orth(mixing[n_invariant:k].T).T
    complement = null_space(variant_subspace)  # (d, d - n_variant)
    projected = mixing[:n_invariant] @ complement @ complement.T
    invariant_subspace = orth(projected.T).T
    return Bunch(
        X=X,
        X_do=X_do,
        y=y.astype(np.int64),
        domains=domains.astype(np.int64),
        domains_do=domains_do.astype(np.int64),
        latents=latents,
        latents_do=latents_do,
        mixing=mixing,
        variant_subspace=variant_subspace,
        invariant_subspace=invariant_subspace,
    )
