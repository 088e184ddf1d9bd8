"""Dask: a fit from a dask.array (interventions, domain contrasts, the linear probe), its lazy
predictions and the searches under the Dask joblib backend equal the single-process results,
on a LocalCluster the test starts on the loopback interface."""

import numpy as np
import pytest
import sklearn
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import GridSearchCV, LeaveOneGroupOut

from skcicm import InvariantCausalMechanism, InvariantCausalMechanismCV, NoInterventionError

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
joblib = pytest.importorskip("joblib")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address=None,
    )
    with distributed.Client(cluster) as dask_client:
        yield dask_client
    cluster.close()


def _data(n=240, d=6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    domains = np.repeat(["a", "b", "c"], n // 3)
    Z = rng.normal(size=(n, d)) + 3.0
    Z[:, 0] += y
    views = Z[:, None, :] + rng.normal(size=(n, 2, d)) * [0, 0, 0, 1, 2, 3]
    return Z, y, domains, views, rng.normal(size=(3, d))


@pytest.mark.parametrize("center", [False, True])
def test_fit_from_a_dask_array_equals_numpy(client, center):
    Z, _, _, views, text = _data()
    params = {"n_components": 3, "lam": 1.5, "head": "zero_shot", "center": center}
    reference = InvariantCausalMechanism(**params).fit(
        Z, interventions=views, class_embeddings=text
    )
    distributed_fit = InvariantCausalMechanism(**params).fit(
        da.from_array(Z, chunks=(50, 3)),
        interventions=da.from_array(views, chunks=(70, 2, 6)),
        class_embeddings=text,
    )
    np.testing.assert_allclose(distributed_fit.components_, reference.components_, atol=1e-10)
    np.testing.assert_allclose(
        distributed_fit.intervention_covariance_, reference.intervention_covariance_
    )
    lazy = distributed_fit.transform(da.from_array(Z, chunks=(50, 6)))
    np.testing.assert_allclose(lazy.compute(), reference.transform(Z), atol=1e-10)
    np.testing.assert_array_equal(distributed_fit.predict(Z), reference.predict(Z))


def _shifted_domains(n=240, d=6, seed=1):
    """Labels and domains mixed within every row block, and a domain shift along feature 4."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    domains = rng.choice(np.array(["a", "b", "c"]), size=n)
    Z = rng.normal(size=(n, d)) + 3.0
    Z[:, 0] += 2 * y
    Z[:, 4] += 2.0 * (domains == "b") - 1.5 * (domains == "c")
    return Z, y, domains


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("dask_labels", [False, True])
def test_domain_contrasts_from_a_dask_array_equal_numpy(client, center, dask_labels):
    Z, y, domains = _shifted_domains()
    params = {"n_components": 3, "lam": 2.0, "head": None, "center": center}
    reference = InvariantCausalMechanism(**params).fit(Z, y, domains=domains)
    if dask_labels:  # chunked unlike X: re-chunked to its row blocks
        y, domains = da.from_array(y, chunks=70), da.from_array(domains, chunks=90)
    distributed_fit = InvariantCausalMechanism(**params).fit(
        da.from_array(Z, chunks=(50, 3)), y, domains=domains
    )
    assert distributed_fit.intervention_sources_ == ("domains",)
    np.testing.assert_allclose(
        distributed_fit.intervention_covariance_, reference.intervention_covariance_, atol=1e-12
    )
    np.testing.assert_allclose(distributed_fit.components_, reference.components_, atol=1e-10)
    sigma_delta = distributed_fit.intervention_covariance_
    assert np.argmax(np.diag(sigma_delta)) == 4  # the shifted feature dominates the Deltas


def test_partial_fit_with_dask_domain_batches_equals_numpy(client):
    Z, y, domains = _shifted_domains()
    text = np.random.default_rng(2).normal(size=(3, Z.shape[1]))
    params = {"n_components": 3, "lam": 2.0, "head": "zero_shot"}
    batches = [slice(0, 100), slice(100, 240)]
    in_memory = InvariantCausalMechanism(**params)
    on_dask = InvariantCausalMechanism(**params)
    for rows in batches:
        in_memory.partial_fit(Z[rows], y[rows], domains=domains[rows], class_embeddings=text)
        on_dask.partial_fit(
            da.from_array(Z[rows], chunks=40),
            da.from_array(y[rows], chunks=40),
            domains=da.from_array(domains[rows], chunks=40),
            class_embeddings=text,
        )
    whole = InvariantCausalMechanism(**params).fit(Z, y, domains=domains, class_embeddings=text)
    for fitted in (on_dask, whole):
        np.testing.assert_allclose(
            fitted.intervention_covariance_, in_memory.intervention_covariance_, atol=1e-12
        )
        np.testing.assert_allclose(fitted.components_, in_memory.components_, atol=1e-10)
    assert on_dask.n_samples_seen_ == len(Z)
    np.testing.assert_array_equal(on_dask.predict(Z), in_memory.predict(Z))


@pytest.mark.parametrize("center", [False, True])
def test_linear_probe_from_a_dask_array_equals_numpy(client, center):
    Z, y, domains, views, _ = _data()
    params = {"n_components": 3, "lam": 1.5, "center": center}
    reference = InvariantCausalMechanism(**params).fit(Z, y, interventions=views)
    distributed_fit = InvariantCausalMechanism(**params).fit(
        da.from_array(Z, chunks=(50, 3)), da.from_array(y, chunks=50), interventions=views
    )
    np.testing.assert_allclose(distributed_fit.components_, reference.components_, atol=1e-10)
    np.testing.assert_allclose(
        distributed_fit.classifier_.coef_, reference.classifier_.coef_, rtol=1e-6, atol=1e-8
    )
    np.testing.assert_array_equal(distributed_fit.classes_, reference.classes_)
    Z_lazy = da.from_array(Z, chunks=(60, 6))
    for method in ("predict", "predict_proba", "decision_function", "transform"):
        lazy = getattr(distributed_fit, method)(Z_lazy)
        assert isinstance(lazy, da.Array)
        assert lazy.chunks[0] == Z_lazy.chunks[0]
        np.testing.assert_allclose(lazy.compute(), getattr(reference, method)(Z), atol=1e-8)
    np.testing.assert_array_equal(distributed_fit.predict(Z_lazy).compute(), reference.predict(Z))
    assert distributed_fit.score(Z_lazy, y) == reference.score(Z, y)


def test_linear_probe_of_float32_embeddings_matches_numpy(client):
    Z, y, _, views, _ = _data()
    Z, views = Z.astype(np.float32), views.astype(np.float32)
    reference = InvariantCausalMechanism(3, lam=1.5).fit(Z, y, interventions=views)
    distributed_fit = InvariantCausalMechanism(3, lam=1.5).fit(
        da.from_array(Z, chunks=(50, 6)), y, interventions=views
    )
    # float32 Grams summed over other chunks: equal to float32 rounding, which the solver's
    # tol=1e-4 amplifies in the probe.
    np.testing.assert_allclose(
        distributed_fit.components_, reference.components_, rtol=0, atol=1e-4
    )
    np.testing.assert_allclose(
        distributed_fit.classifier_.coef_, reference.classifier_.coef_, rtol=0, atol=2e-3
    )
    np.testing.assert_array_equal(distributed_fit.predict(Z), reference.predict(Z))


def test_a_probe_with_partial_fit_is_still_fitted_with_fit(client):
    # partial_fit over the blocks would be another method (one ordered pass): the Dask fit
    # runs the classifier's own fit, as in memory.
    Z, y, domains = _shifted_domains()
    params = {"n_components": 3, "lam": 2.0, "classifier": SGDClassifier(random_state=0)}
    distributed_fit = InvariantCausalMechanism(**params).fit(
        da.from_array(Z, chunks=(50, 6)), y, domains=domains
    )
    reference = InvariantCausalMechanism(**params).fit(Z, y, domains=domains)
    np.testing.assert_allclose(distributed_fit.components_, reference.components_, atol=1e-10)
    np.testing.assert_allclose(
        distributed_fit.classifier_.coef_, reference.classifier_.coef_, rtol=1e-6
    )
    assert distributed_fit.classifier_.n_iter_ == reference.classifier_.n_iter_ > 1
    np.testing.assert_array_equal(distributed_fit.predict(Z), reference.predict(Z))


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"y": np.zeros(7)}, r"y has shape \(7,\); expected \(240,\), one label per row of X"),
        (
            {"y": np.zeros(240), "domains": da.zeros(100, chunks=50)},
            r"domains has shape \(100,\); expected \(240,\)",
        ),
        ({"domains": np.zeros(240)}, "domains needs class labels y"),
        (
            {"y": np.zeros(240), "domains": np.r_[np.zeros(130), np.nan, np.zeros(109)]},
            r"domains has 1 missing labels .* index 130",
        ),
        ({"y": np.linspace(0, 1, 240)}, "Unknown label type"),
    ],
)
def test_dask_labels_are_validated_before_the_statistics(client, labels, message):
    Z, *_ = _data()
    with pytest.raises(ValueError, match=message):
        InvariantCausalMechanism(lam=1.0).fit(da.from_array(Z, chunks=50), **labels)


def test_labels_cannot_align_with_unknown_row_chunks(client):
    Z, y, *_ = _data()
    X = da.from_array(Z, chunks=50)
    X = X[X[:, 0] > -np.inf]  # boolean indexing leaves the row chunk sizes unknown
    with pytest.raises(ValueError, match=r"compute_chunk_sizes\(\)"):
        InvariantCausalMechanism(lam=0.0).fit(X, y)


def test_domains_of_one_domain_per_class_give_no_deltas_on_dask(client):
    Z, y, *_ = _data()
    with pytest.raises(NoInterventionError, match="domains gives no Deltas"):
        InvariantCausalMechanism(lam=1.0).fit(da.from_array(Z, chunks=50), y, domains=y)


def test_lazy_predictions_check_the_columns_eagerly(client):
    Z, y, _, views, _ = _data()
    fitted = InvariantCausalMechanism(3, lam=1.0).fit(Z, y, interventions=views)
    with pytest.raises(ValueError, match=r"X has shape \(240, 5\); expected \(n_samples, 6\)"):
        fitted.predict(da.from_array(Z[:, :5], chunks=50))
    subspace_only = InvariantCausalMechanism(3, lam=1.0).fit(Z, interventions=views)
    with pytest.raises(NotFittedError, match="without class labels y"):
        subspace_only.predict(da.from_array(Z, chunks=50))


def test_searches_under_the_dask_joblib_backend_equal_single_process(client):
    Z, y, domains, views, _ = _data()
    grid = {"lam": [0.0, 1.0], "n_components": [2, 4]}
    single = InvariantCausalMechanismCV(
        grid["lam"], grid["n_components"], cv=LeaveOneGroupOut()
    ).fit(Z, y, groups=domains, interventions=views)
    with joblib.parallel_backend("dask"):
        on_dask = InvariantCausalMechanismCV(
            grid["lam"], grid["n_components"], cv=LeaveOneGroupOut(), n_jobs=2
        ).fit(Z, y, groups=domains, interventions=views)
        with sklearn.config_context(enable_metadata_routing=True):
            icm = InvariantCausalMechanism().set_fit_request(interventions=True)
            grid_search = GridSearchCV(icm, grid, cv=LeaveOneGroupOut(), n_jobs=2)
            grid_search.fit(Z, y, groups=domains, interventions=views)
    np.testing.assert_array_equal(
        on_dask.cv_results_["mean_test_score"], single.cv_results_["mean_test_score"]
    )
    np.testing.assert_allclose(
        grid_search.cv_results_["mean_test_score"], single.cv_results_["mean_test_score"]
    )
    assert on_dask.best_params_ == single.best_params_ == grid_search.best_params_
