"""The numerical kernels against hand computations on small and random data."""

import numpy as np
import pytest
import scipy.linalg
from _batch_formulas import domain_contrast_deltas, intervention_covariance, second_moment

from skcicm.icm import invariant_subspace


def test_second_moment_matches_sum_of_outer_products():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(7, 3))
    by_hand = sum(np.outer(z, z) for z in Z) / 7
    np.testing.assert_allclose(second_moment(Z), by_hand)
    centred = Z - Z.mean(axis=0)
    np.testing.assert_allclose(second_moment(Z, center=True), centred.T @ centred / 7)


def test_paper_estimator_keeps_eigenvectors_of_largest_eigenvalues_of_m():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(50, 5))
    Z_do = Z + rng.normal(size=(50, 5)) * [0, 0, 0, 2, 3]
    lam = 0.7
    delta = Z - Z_do
    M = Z.T @ Z / 50 - lam * delta.T @ delta / 50
    values, vectors = np.linalg.eigh(M)

    components, eigenvalues = invariant_subspace(
        second_moment(Z), intervention_covariance([delta], 5), lam=lam, n_components=2
    )
    np.testing.assert_allclose(eigenvalues, values[::-1][:2])
    for component, expected in zip(components, vectors[:, ::-1].T, strict=False):
        np.testing.assert_allclose(abs(component @ expected), 1.0, atol=1e-10)
    np.testing.assert_allclose(components @ components.T, np.eye(2), atol=1e-12)
    # Each kept direction satisfies M v = mu v.
    np.testing.assert_allclose(M @ components.T, components.T * eigenvalues, atol=1e-10)


def test_authors_selection_keeps_smallest_eigenvalues():
    M_z, M_delta = np.diag([4.0, 3.0, 1.0]), np.diag([0.0, 2.5, 0.0])
    components, eigenvalues = invariant_subspace(
        M_z, M_delta, lam=1.0, n_components=2, selection="smallest"
    )
    np.testing.assert_allclose(eigenvalues, [0.5, 1.0])
    np.testing.assert_allclose(np.abs(components), [[0, 1, 0], [0, 0, 1]])


def test_ratio_objective_solves_generalized_problem():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(30, 4))
    sigma_z = A.T @ A / 30
    B = rng.normal(size=(30, 4))
    sigma_delta = B.T @ B / 30
    components, eigenvalues = invariant_subspace(
        sigma_z, sigma_delta, lam=1.0, n_components=4, objective="ratio"
    )
    ridge = 1e-3 * np.trace(sigma_delta) / 4
    regularised = sigma_delta + ridge * np.eye(4)
    np.testing.assert_allclose(
        sigma_z @ components.T, regularised @ components.T * eigenvalues, atol=1e-10
    )
    np.testing.assert_allclose(components @ regularised @ components.T, np.eye(4), atol=1e-10)
    expected = scipy.linalg.eigh(sigma_z, regularised, eigvals_only=True)[::-1]
    np.testing.assert_allclose(eigenvalues, expected)


def test_domain_contrasts_are_differences_of_class_conditional_means():
    Z = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 1.0], [12.0, 1.0], [5.0, 5.0], [7.0, 9.0]])
    y = np.array([0, 0, 0, 0, 1, 1])
    domains = np.array(["a", "a", "b", "b", "a", "c"])
    deltas = domain_contrast_deltas(Z, y, domains)
    # class 0: mean(a) - mean(b); class 1: mean(a) - mean(c)
    np.testing.assert_allclose(deltas, [[-10.0, -1.0], [-2.0, -4.0]])


def test_domain_contrasts_empty_when_no_class_spans_two_domains():
    Z = np.ones((2, 3))
    deltas = domain_contrast_deltas(Z, np.array([0, 1]), np.array(["a", "b"]))
    assert deltas.shape == (0, 3)


def test_intervention_covariance_averages_sources_not_rows():
    many = np.tile([[1.0, 0.0]], (100, 1))
    few = np.array([[0.0, 2.0]])
    covariance = intervention_covariance([many, few, np.empty((0, 2))], 2)
    np.testing.assert_allclose(covariance, [[0.5, 0.0], [0.0, 2.0]])


@pytest.mark.parametrize("selection", ["largest", "smallest"])
def test_signs_are_fixed(selection):
    rng = np.random.default_rng(3)
    A = rng.normal(size=(20, 4))
    components, _ = invariant_subspace(
        A.T @ A, np.zeros((4, 4)), lam=0.0, n_components=3, selection=selection
    )
    largest = components[np.arange(3), np.abs(components).argmax(axis=1)]
    assert (largest > 0).all()
