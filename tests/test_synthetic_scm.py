"""Tests of the synthetic embedding-space SCM generator."""

import numpy as np
import pytest
from scipy.linalg import subspace_angles

from skcicm.datasets import make_scm_embeddings


def test_shapes_and_types():
    data = make_scm_embeddings(300, n_invariant=3, n_variant=2, n_classes=4, n_features=9)
    assert data.X.shape == data.X_do.shape == (300, 9)
    assert data.mixing.shape == (9, 9)
    assert np.linalg.matrix_rank(data.mixing) == 9
    assert data.invariant_subspace.shape == (3, 9)
    assert data.variant_subspace.shape == (2, 9)
    assert data.latents.shape == data.latents_do.shape == (300, 5)
    assert data.y.dtype == np.int64 and set(data.y) == {0, 1, 2, 3}
    assert data.domains.shape == data.domains_do.shape == (300,)
    for basis in (data.invariant_subspace, data.variant_subspace):
        np.testing.assert_allclose(basis @ basis.T, np.eye(len(basis)), atol=1e-10)
    # Noiseless embeddings live in the 5-dimensional latent span.
    assert np.linalg.matrix_rank(data.X, tol=1e-8) == 5


def test_deterministic():
    a, b = make_scm_embeddings(50, random_state=4), make_scm_embeddings(50, random_state=4)
    c = make_scm_embeddings(50, random_state=5)
    for key in ("X", "X_do", "y", "mixing", "invariant_subspace"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.allclose(a.X, c.X)


@pytest.mark.parametrize("n_features", [None, 12])
def test_intervention_moves_only_variant_directions(n_features):
    data = make_scm_embeddings(400, n_invariant=4, n_variant=3, n_features=n_features)
    delta = data.X_do - data.X
    assert np.abs(delta).max() > 1.0  # the intervention does something
    basis = data.variant_subspace
    np.testing.assert_allclose(delta - delta @ basis.T @ basis, 0, atol=1e-9)
    # The invariant subspace is orthogonal to every intervention effect ...
    np.testing.assert_allclose(delta @ data.invariant_subspace.T, 0, atol=1e-9)
    np.testing.assert_allclose(data.invariant_subspace @ basis.T, 0, atol=1e-12)
    # ... keeps an invertible image of the invariant latents ...
    z_inv = data.latents[:, :4]
    coef, *_ = np.linalg.lstsq(data.X @ data.invariant_subspace.T, z_inv, rcond=None)
    np.testing.assert_allclose(data.X @ data.invariant_subspace.T @ coef, z_inv, atol=1e-8)
    # ... and the invariant latents are untouched by the intervention.
    np.testing.assert_array_equal(data.latents_do[:, :4], z_inv)


def test_intervention_scale_and_noise():
    zero = make_scm_embeddings(100, intervention_scale=0.0)
    np.testing.assert_array_equal(zero.X_do, zero.X)
    half = make_scm_embeddings(100, intervention_scale=0.5)
    full = make_scm_embeddings(100, intervention_scale=1.0)
    np.testing.assert_allclose(half.X_do - half.X, 0.5 * (full.X_do - full.X), atol=1e-9)
    noisy = make_scm_embeddings(100, noise=0.1)
    residual = (noisy.X_do - noisy.X) @ noisy.invariant_subspace.T
    assert 0.05 < residual.std() < 0.3


def test_variant_latents_dominate_pca():
    """Plain PCA is drawn to the variant directions, so recovering the invariant
    subspace needs the interventions."""
    data = make_scm_embeddings(2000, n_invariant=2, n_variant=2, n_domains=5, random_state=1)
    centred = data.X - data.X.mean(axis=0)
    top = np.linalg.svd(centred, full_matrices=False)[2][:2]
    assert np.max(subspace_angles(top.T, data.invariant_subspace.T)) > np.deg2rad(20)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_samples": 0}, "n_samples"),
        ({"n_invariant": 0}, "n_invariant"),
        ({"n_features": 3}, "n_features must be an int >= 8"),
        ({"intervention_scale": -1.0}, "intervention_scale"),
        ({"noise": float("nan")}, "noise"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_scm_embeddings(**kwargs)


@pytest.mark.parametrize("n_features", [None, 12])
def test_icm_recovers_invariant_subspace_from_exact_interventions(n_features):
    from skcicm import InvariantCausalMechanism

    data = make_scm_embeddings(2000, n_invariant=3, n_variant=3, n_features=n_features)
    worst = []
    for lam in (0.0, 10.0, 1000.0):
        icm = InvariantCausalMechanism(n_components=3, lam=lam)
        icm.fit(data.X, data.y, interventions=data.X_do)
        np.testing.assert_allclose(icm.components_ @ icm.components_.T, np.eye(3), atol=1e-8)
        worst.append(np.max(subspace_angles(icm.components_.T, data.invariant_subspace.T)))
    # Without the penalty the top directions are the high-variance variant ones; the
    # leakage of variant directions shrinks like 1 / lam.
    assert worst[0] > np.deg2rad(45)
    assert worst[0] > worst[1] > worst[2]
    assert worst[2] < np.deg2rad(0.5)
