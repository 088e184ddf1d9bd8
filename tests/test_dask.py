"""Dask: a fit from a dask.array and the searches under the Dask joblib backend equal the
single-process results, on a LocalCluster the test starts on the loopback interface."""

import numpy as np
import pytest
import sklearn
from sklearn.model_selection import GridSearchCV, LeaveOneGroupOut

from skcicm import InvariantCausalMechanism, InvariantCausalMechanismCV

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


def test_dask_x_refuses_what_needs_the_data_in_memory(client):
    Z, y, domains, views, _ = _data()
    with pytest.raises(ValueError, match="linear probe need the embeddings in memory"):
        InvariantCausalMechanism().fit(da.from_array(Z), y, interventions=views)


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
