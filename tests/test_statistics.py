"""Streaming statistics: chunked fit, partial_fit and memmaps equal the batch formulas."""

import numpy as np
import pytest
from _batch_formulas import domain_contrast_deltas, second_moment

from skcicm import InvariantCausalMechanism
from skcicm.icm import InterventionStatistics
from skcicm.icm import _statistics as stats_module


def _data(n=300, d=6, n_views=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    domains = rng.choice(["a", "b", "c"], size=n)
    Z = rng.normal(size=(n, d)) + 5.0  # a large common mean, as CLIP embeddings have
    Z[:, 0] += 2 * y
    views = Z[:, None, :] + rng.normal(size=(n, n_views, d)) * [0, 0, 0, 1, 2, 3]
    pairs = (rng.normal(size=(4, d)), rng.normal(size=(4, d)))
    return Z, y, domains, views, pairs


def _old_formulas(Z, y, domains, views, pairs, center):
    """The batch computation of the first release: everything materialised in float64."""
    Z = Z.astype(np.float64)
    sources = [(Z[:, None, :] - views).reshape(-1, Z.shape[1])]
    sources.append(domain_contrast_deltas(Z, y, domains))
    sources.append(pairs[0] - pairs[1])
    sigma_delta = sum(d.T @ d / len(d) for d in sources) / len(sources)
    return second_moment(Z, center=center), sigma_delta


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(stats_module, "chunk_rows", lambda *args: 7)


@pytest.mark.parametrize("center", [False, True])
def test_chunked_statistics_equal_the_batch_formulas(small_chunks, center):
    Z, y, domains, views, pairs = _data()
    statistics = InterventionStatistics(Z.shape[1], center=center)
    statistics.add_samples(Z, views, y=y, domains=domains).add_pairs(*pairs)
    sigma_z, sigma_delta = _old_formulas(Z, y, domains, views, pairs, center)
    np.testing.assert_allclose(statistics.sigma_z(), sigma_z, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(statistics.sigma_delta(), sigma_delta, rtol=1e-10, atol=1e-12)
    assert list(statistics.delta_grams()) == ["interventions", "domains", "intervention_pairs"]


def test_fit_equals_hand_computation_across_many_chunks(small_chunks):
    Z, y, domains, views, pairs = _data()
    icm = InvariantCausalMechanism(3, lam=0.7, center=True, lam_scale="trace").fit(
        Z, y, interventions=views, domains=domains, intervention_pairs=pairs
    )
    sigma_z, sigma_delta = _old_formulas(Z, y, domains, views, pairs, center=True)
    lam = 0.7 * np.trace(sigma_z) / np.trace(sigma_delta)
    values, vectors = np.linalg.eigh(sigma_z - lam * sigma_delta)
    assert icm.effective_lam_ == pytest.approx(lam, rel=1e-10)
    np.testing.assert_allclose(icm.eigenvalues_, values[::-1][:3], rtol=1e-9)
    np.testing.assert_allclose(
        np.abs(icm.components_ @ vectors[:, ::-1][:, :3]), np.eye(3), atol=1e-8
    )
    np.testing.assert_allclose(icm.mean_, Z.mean(axis=0))


@pytest.mark.parametrize("head", [None, "zero_shot"])
def test_partial_fit_over_batches_equals_fit(head):
    Z, y, domains, views, pairs = _data()
    text = {"class_embeddings": np.eye(6)[:3]} if head == "zero_shot" else {}
    params = {"n_components": 3, "lam": 2.0, "head": head, "center": True}
    full = InvariantCausalMechanism(**params).fit(
        Z, y, interventions=views, domains=domains, intervention_pairs=pairs, **text
    )
    streamed = InvariantCausalMechanism(**params)
    for batch in np.array_split(np.arange(len(Z)), 4):
        streamed.partial_fit(
            Z[batch],
            y[batch],
            interventions=views[batch],
            domains=domains[batch],
            intervention_pairs=pairs,
            **text,
        )
    assert streamed.n_samples_seen_ == len(Z)
    np.testing.assert_allclose(streamed.intervention_covariance_, full.intervention_covariance_)
    np.testing.assert_allclose(streamed.components_, full.components_, atol=1e-9)
    np.testing.assert_allclose(streamed.transform(Z), full.transform(Z), atol=1e-8)
    if head == "zero_shot":
        np.testing.assert_array_equal(streamed.predict(Z), full.predict(Z))


def test_a_rejected_batch_leaves_the_statistics_unchanged():
    Z, y, _, views, _ = _data()
    icm = InvariantCausalMechanism(2, head=None).partial_fit(Z[:100], interventions=views[:100])
    before = icm.components_.copy()
    bad = Z[100:200].copy()
    bad[50, 2] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        icm.partial_fit(bad, interventions=views[100:200])
    assert icm.n_samples_seen_ == 100
    icm.partial_fit(Z[100:], interventions=views[100:])
    reference = InvariantCausalMechanism(2, head=None).fit(Z, interventions=views)
    np.testing.assert_allclose(icm.components_, reference.components_, atol=1e-10)
    assert not np.allclose(before, icm.components_)


def test_linear_probe_has_no_partial_fit():
    assert not hasattr(InvariantCausalMechanism(), "partial_fit")
    assert hasattr(InvariantCausalMechanism(head=None), "partial_fit")


def test_fit_from_memmaps_equals_fit_in_memory(tmp_path, small_chunks):
    Z, y, _, views, _ = _data()
    z_file = np.memmap(tmp_path / "z.f32", dtype=np.float32, mode="w+", shape=Z.shape)
    v_file = np.memmap(tmp_path / "v.f32", dtype=np.float32, mode="w+", shape=views.shape)
    z_file[:], v_file[:] = Z, views
    z_file.flush(), v_file.flush()
    z_map = np.memmap(tmp_path / "z.f32", dtype=np.float32, mode="r", shape=Z.shape)
    v_map = np.memmap(tmp_path / "v.f32", dtype=np.float32, mode="r", shape=views.shape)
    mapped = InvariantCausalMechanism(3, lam=1.0).fit(z_map, y, interventions=v_map)
    in_memory = InvariantCausalMechanism(3, lam=1.0).fit(
        Z.astype(np.float32), y, interventions=views.astype(np.float32)
    )
    np.testing.assert_array_equal(mapped.components_, in_memory.components_)
    # float32 inputs are multiplied in float32 chunks: equal to the float64 fit to ~1e-6.
    exact = InvariantCausalMechanism(3, lam=1.0).fit(
        Z.astype(np.float32).astype(np.float64),
        y,
        interventions=views.astype(np.float32).astype(np.float64),
    )
    np.testing.assert_allclose(mapped.eigenvalues_, exact.eigenvalues_, rtol=1e-5)
    np.testing.assert_allclose(
        np.abs(mapped.components_ @ exact.components_.T), np.eye(3), atol=1e-4
    )


def test_merging_statistics_with_different_shifts():
    Z, y, domains, views, _ = _data()
    whole = InterventionStatistics(6, center=True).add_samples(Z, views, y=y, domains=domains)
    first = InterventionStatistics(6, center=True).add_samples(
        Z[:50], views[:50], y=y[:50], domains=domains[:50]
    )
    second = InterventionStatistics(6, center=True).add_samples(
        Z[50:] * 1.0, views[50:], y=y[50:], domains=domains[50:]
    )
    assert not np.allclose(first.shift, second.shift)
    first.merge(second)
    np.testing.assert_allclose(first.sigma_z(), whole.sigma_z(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(first.sigma_delta(), whole.sigma_delta(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("scale", [1e200, 1e155])
def test_huge_values_give_a_clear_error_not_a_linalg_error(scale):
    Z, y, _, views, _ = _data()
    with pytest.raises(ValueError, match="X holds values as large as .* Rescale"):
        InvariantCausalMechanism(2).fit(Z * scale, y, interventions=views)


def test_fit_without_labels_learns_the_subspace_only():
    Z, y, _, views, _ = _data()
    icm = InvariantCausalMechanism(2).fit(Z, interventions=views)
    labelled = InvariantCausalMechanism(2).fit(Z, y, interventions=views)
    np.testing.assert_allclose(icm.transform(Z), labelled.transform(Z))
    assert not hasattr(icm, "classifier_")
    for method in (icm.predict, icm.predict_proba, icm.decision_function):
        with pytest.raises(ValueError, match="fitted without class labels y"):
            method(Z)
    with pytest.raises(ValueError, match="fitted without class labels y"):
        icm.score(Z, y)


def test_transformer_only_head_fits_no_classifier():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    Z, y, _, views, _ = _data()
    icm = InvariantCausalMechanism(2, head=None).fit(Z, y, interventions=views)
    assert not hasattr(icm, "classifier_") and not hasattr(icm, "predict")
    assert not hasattr(icm, "score")
    pipeline = make_pipeline(InvariantCausalMechanism(2, lam=0.0, head=None), LogisticRegression())
    assert pipeline.fit(Z, y).score(Z, y) > 0.5
