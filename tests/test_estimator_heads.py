"""Changing the head after fit, and partial_fit with the linear probe, fail with clear errors."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from skcicm import InvariantCausalMechanism


def _data(seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2], 20)
    Z = rng.normal(size=(60, 5)) + 2 * np.eye(5)[y]
    views = Z[:, None, :] + rng.normal(size=(60, 1, 5)) * [0, 0, 0, 1, 1]
    return Z, y, views, np.eye(5)[:3]


def test_predict_after_switching_to_zero_shot_asks_for_a_refit():
    Z, y, views, text = _data()
    icm = InvariantCausalMechanism(n_components=3).fit(Z, y, interventions=views)
    icm.set_params(head="zero_shot")
    for method in (icm.predict, icm.predict_proba, icm.decision_function):
        with pytest.raises(NotFittedError, match=r"fitted with another head \(head='linear_probe'"):
            method(Z)
    icm.fit(Z, y, interventions=views, class_embeddings=text)
    assert not hasattr(icm, "classifier_")
    expected = np.argmax(icm.transform(Z + icm.mean_) @ icm.class_weights_.T, axis=1)
    assert icm.predict(Z).shape == expected.shape


def test_predict_after_switching_to_the_probe_asks_for_a_refit():
    Z, y, views, text = _data()
    icm = InvariantCausalMechanism(n_components=3, head="zero_shot")
    icm.fit(Z, y, interventions=views, class_embeddings=text).set_params(head="linear_probe")
    with pytest.raises(NotFittedError, match="fitted with head='zero_shot', so it has no probe"):
        icm.predict(Z)
    icm.fit(Z, y, interventions=views)
    assert not hasattr(icm, "class_weights_")
    fresh = InvariantCausalMechanism(n_components=3).fit(Z, y, interventions=views)
    np.testing.assert_array_equal(icm.predict(Z), fresh.predict(Z))


def test_partial_fit_with_the_linear_probe_says_why_not():
    Z, y, views, _ = _data()
    icm = InvariantCausalMechanism(n_components=3)
    assert not hasattr(icm, "partial_fit")
    with pytest.raises(AttributeError, match="no attribute 'partial_fit'") as raised:
        icm.partial_fit(Z, y, interventions=views)
    # available_if chains the reason: shown with the traceback.
    assert "not available with head='linear_probe'" in str(raised.value.__cause__)
    assert hasattr(InvariantCausalMechanism(head=None), "partial_fit")


def test_sparse_interventions_are_named():
    import scipy.sparse

    Z, y, views, _ = _data()
    with pytest.raises(TypeError, match="interventions is a sparse csr_matrix"):
        InvariantCausalMechanism(n_components=3).fit(
            Z, y, interventions=scipy.sparse.csr_matrix(views[:, 0])
        )
