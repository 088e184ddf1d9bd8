"""Inputs at the edges of floating point: underflowing embeddings and an overflowing lam."""

import numpy as np
import pytest

from skcicm import InvariantCausalMechanism


def _data(scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(60, 4)) * scale
    views = Z[:, None, :] + rng.normal(size=(60, 2, 4)) * [0.0, 0.0, 1.0, 2.0] * scale
    return Z, rng.integers(0, 2, 60), views


@pytest.mark.parametrize("scale", [1e-170, 1e-160])
def test_underflowing_embeddings_are_refused_naming_x(scale):
    Z, y, views = _data(scale)
    with pytest.raises(ValueError, match=r"X holds no value larger than .* underflow float64"):
        InvariantCausalMechanism(n_components=2).fit(Z, y, interventions=views)


def test_small_but_representable_embeddings_give_the_unit_scale_subspace():
    Z, y, views = _data()
    reference = InvariantCausalMechanism(n_components=2, lam_scale="trace")
    small = InvariantCausalMechanism(n_components=2, lam_scale="trace")
    reference.fit(Z, y, interventions=views)
    small.fit(Z * 1e-100, y, interventions=views * 1e-100)
    np.testing.assert_allclose(small.components_, reference.components_, atol=1e-10)


@pytest.mark.parametrize("lam_scale", ["absolute", "trace"])
@pytest.mark.parametrize("lam", [1e308, 1e307])
def test_a_lam_that_overflows_m_is_refused_naming_lam(lam_scale, lam):
    Z, y, views = _data(scale=3.0)
    icm = InvariantCausalMechanism(n_components=2, lam=lam, lam_scale=lam_scale)
    with pytest.raises(ValueError, match=r"lam=.* overflows floating point; use a smaller lam"):
        icm.fit(Z, y, interventions=views)


def test_a_large_finite_lam_keeps_the_least_varying_directions():
    Z, y, views = _data(scale=0.1)
    icm = InvariantCausalMechanism(n_components=2, lam=1e300).fit(Z, y, interventions=views)
    np.testing.assert_allclose(np.abs(icm.components_[:, 2:]), 0, atol=1e-6)
