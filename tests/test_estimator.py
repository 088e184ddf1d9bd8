"""InvariantCausalMechanism: scikit-learn conformance, hand computations and errors."""

import pickle
import warnings

import numpy as np
import pytest
import sklearn
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, LeaveOneGroupOut
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

from skcicm import InvariantCausalMechanism, NoInterventionError
from skcicm.icm import EmbeddingsWithContext, InterventionStatistics


# No check is skipped by us (scikit-learn itself skips check_array_api_input unless
# SCIPY_ARRAY_API is set). The checks give no interventional data, which lam > 0 refuses
# (test_lam_above_zero_without_interventions_fails_closed), so they run with lam=0.
@parametrize_with_checks(
    [
        InvariantCausalMechanism(lam=0.0),
        InvariantCausalMechanism(n_components=2, lam=0.0, center=True, lam_scale="trace"),
        InvariantCausalMechanism(lam=0.0, objective="ratio", selection="smallest"),
        InvariantCausalMechanism(n_components=2, lam=0.0, head=None),
    ]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _data(seed=0, n=120):
    """Class signal on axis 0; interventions move axes 2 and 3 only."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    Z = rng.normal(size=(n, 5)) * 0.5
    Z[:, 0] += 2.0 * y
    Z_do = Z.copy()
    Z_do[:, 2:4] += rng.normal(size=(n, 2)) * 4
    return Z, y, Z_do


def test_fit_matches_hand_computation_of_m():
    Z, y, Z_do = _data()
    lam = 2.0
    icm = InvariantCausalMechanism(n_components=3, lam=lam, lam_scale="absolute").fit(
        Z, y, interventions=Z_do
    )
    delta = Z - Z_do
    M = Z.T @ Z / len(Z) - lam * delta.T @ delta / len(Z)
    values, vectors = np.linalg.eigh(M)
    top = vectors[:, ::-1][:, :3]
    np.testing.assert_allclose(icm.eigenvalues_, values[::-1][:3])
    # Same subspace as the hand-computed top eigenvectors, as orthonormal rows.
    np.testing.assert_allclose(icm.components_ @ icm.components_.T, np.eye(3), atol=1e-10)
    np.testing.assert_allclose(np.abs(icm.components_ @ top), np.eye(3), atol=1e-8)
    np.testing.assert_allclose(icm.transform(Z), Z @ icm.components_.T)
    assert icm.intervention_sources_ == ("interventions",)
    np.testing.assert_allclose(icm.intervention_covariance_, delta.T @ delta / len(Z))


def test_penalised_directions_are_removed():
    Z, y, Z_do = _data()
    Z[:, 2:4] *= 4  # style-like directions that carry the most variance
    Z_do = Z.copy()
    Z_do[:, 2:4] += np.random.default_rng(1).normal(size=(len(Z), 2)) * 4
    plain = InvariantCausalMechanism(n_components=2, lam=0.0).fit(Z, y, interventions=Z_do)
    assert np.abs(plain.components_[:, 2:4]).max() > 0.9
    icm = InvariantCausalMechanism(n_components=2, lam=1.0).fit(Z, y, interventions=Z_do)
    assert np.abs(icm.components_[:, 2:4]).max() < 0.05
    assert icm.score(Z, y) > 0.9


def test_sample_major_views_pool_their_deltas():
    Z, y, Z_do = _data()
    rng = np.random.default_rng(5)
    views = np.stack([Z_do, Z_do + rng.normal(size=Z.shape)], axis=1)
    icm = InvariantCausalMechanism(n_components=2).fit(Z, y, interventions=views)
    stacked = np.concatenate([Z - views[:, 0], Z - views[:, 1]])
    np.testing.assert_allclose(icm.intervention_covariance_, stacked.T @ stacked / len(stacked))
    one_view = InvariantCausalMechanism(n_components=2).fit(Z, y, interventions=views[:, :1])
    two_d = InvariantCausalMechanism(n_components=2).fit(Z, y, interventions=Z_do)
    np.testing.assert_allclose(one_view.components_, two_d.components_)


def test_square_interventions_are_read_sample_major():
    # n_views == n_samples used to be read views-major; sample-major is now the only layout.
    Z, y, _ = _data(n=6)
    views = np.random.default_rng(2).normal(size=(6, 6, 5))
    icm = InvariantCausalMechanism(lam=0.5, head="zero_shot").fit(
        Z, interventions=views, class_embeddings=np.eye(5)[:3]
    )
    deltas = (Z[:, None, :] - views).reshape(-1, 5)
    np.testing.assert_allclose(icm.intervention_covariance_, deltas.T @ deltas / 36)


def test_domains_and_pairs_are_averaged_sources():
    Z, y, Z_do = _data()
    domains = np.arange(len(Z)) % 2
    pairs = (Z_do[:10], Z[:10])
    icm = InvariantCausalMechanism(n_components=2, lam=1.0).fit(
        Z, y, interventions=Z_do, domains=domains, intervention_pairs=pairs
    )
    assert icm.intervention_sources_ == ("interventions", "domains", "intervention_pairs")
    from _batch_formulas import domain_contrast_deltas

    sources = [Z - Z_do, domain_contrast_deltas(Z, y, domains), Z_do[:10] - Z[:10]]
    expected = sum(d.T @ d / len(d) for d in sources) / 3
    np.testing.assert_allclose(icm.intervention_covariance_, expected)


def test_trace_scaled_lambda():
    Z, y, Z_do = _data()
    icm = InvariantCausalMechanism(lam=0.5, lam_scale="trace").fit(Z, y, interventions=Z_do)
    delta = Z - Z_do
    expected = 0.5 * np.trace(Z.T @ Z) / np.trace(delta.T @ delta)
    assert icm.effective_lam_ == pytest.approx(expected)


def test_center_subtracts_training_mean():
    Z, y, Z_do = _data()
    icm = InvariantCausalMechanism(n_components=2, center=True).fit(Z, y, interventions=Z_do)
    np.testing.assert_allclose(icm.mean_, Z.mean(axis=0))
    np.testing.assert_allclose(icm.transform(Z), (Z - Z.mean(axis=0)) @ icm.components_.T)


def test_lam_above_zero_without_interventions_fails_closed(monkeypatch):
    Z, y, _ = _data()
    # The error comes before any statistics are computed.
    monkeypatch.setattr(InterventionStatistics, "add_samples", None)
    for objective in ("difference", "ratio"):
        icm = InvariantCausalMechanism(n_components=2, lam=5.0, objective=objective)
        with pytest.raises(NoInterventionError, match="lam=5.0 needs interventional data") as err:
            icm.fit(Z, y)
        for fix in ("directly after CLIPFeaturizer", "interventions=", "lam=0", "StandardScaler"):
            assert fix in str(err.value)
        assert not hasattr(icm, "components_")


def test_lam_zero_needs_no_interventions_and_is_uncentred_pca():
    Z, y, _ = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        icm = InvariantCausalMechanism(n_components=2, lam=0.0).fit(Z, y)
    values, vectors = np.linalg.eigh(Z.T @ Z / len(Z))
    np.testing.assert_allclose(
        np.abs(icm.components_ @ vectors[:, ::-1][:, :2]), np.eye(2), atol=1e-8
    )


def test_zero_shot_head_is_cosine_in_the_subspace():
    Z, y, Z_do = _data()
    rng = np.random.default_rng(7)
    text = rng.normal(size=(4, 5))
    labels = np.array(["a", "b", "c", "d"])
    y_named = labels[y]
    icm = InvariantCausalMechanism(n_components=3, head="zero_shot", temperature=10.0)
    icm.fit(Z, y_named, interventions=Z_do, class_embeddings=text, class_labels=labels)
    A = icm.components_
    image = Z @ A.T
    image /= np.linalg.norm(image, axis=1, keepdims=True)
    classes = text @ A.T
    classes /= np.linalg.norm(classes, axis=1, keepdims=True)
    cosine = image @ classes.T
    np.testing.assert_allclose(icm.decision_function(Z), cosine)
    np.testing.assert_array_equal(icm.predict(Z), labels[cosine.argmax(axis=1)])
    probabilities = np.exp(10 * cosine)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(icm.predict_proba(Z), probabilities)
    np.testing.assert_array_equal(icm.classes_, labels)  # "d" is an open class, absent from y
    assert icm.score(Z, y_named) == np.mean(icm.predict(Z) == y_named)


def test_zero_shot_without_icm_equals_plain_clip_zero_shot():
    Z, y, _ = _data()
    text = np.random.default_rng(8).normal(size=(3, 5))
    icm = InvariantCausalMechanism(lam=0.0, head="zero_shot").fit(Z, class_embeddings=text)
    plain = (Z / np.linalg.norm(Z, axis=1, keepdims=True)) @ (
        text / np.linalg.norm(text, axis=1, keepdims=True)
    ).T
    np.testing.assert_allclose(icm.decision_function(Z), plain, atol=1e-10)


def test_zero_shot_binary_decision_function_is_one_column():
    Z, y, Z_do = _data()
    icm = InvariantCausalMechanism(head="zero_shot").fit(
        Z, interventions=Z_do, class_embeddings=np.eye(5)[:2]
    )
    scores = icm.decision_function(Z)
    assert scores.shape == (len(Z),)
    np.testing.assert_array_equal(icm.predict(Z), (scores > 0).astype(int))


def test_linear_probe_defaults_to_authors_logistic_regression():
    Z, y, Z_do = _data()
    icm = InvariantCausalMechanism(n_components=2).fit(Z, y, interventions=Z_do)
    assert isinstance(icm.classifier_, LogisticRegression)
    assert icm.classifier_.C == 0.316
    reference = LogisticRegression(C=0.316, max_iter=1000).fit(icm.transform(Z), y)
    np.testing.assert_allclose(icm.predict_proba(Z), reference.predict_proba(icm.transform(Z)))


def test_custom_classifier_without_decision_function():
    Z, y, Z_do = _data()
    icm = InvariantCausalMechanism(classifier=KNeighborsClassifier(3)).fit(Z, y, interventions=Z_do)
    assert not hasattr(icm, "decision_function")
    assert icm.predict_proba(Z).shape == (len(Z), 3)


def test_fit_context_from_featurizer_is_used_and_explicit_arguments_win():
    Z, y, Z_do = _data()
    carried = EmbeddingsWithContext.wrap(Z, interventions=Z_do[:, None])
    from_context = InvariantCausalMechanism(n_components=2).fit(carried, y)
    explicit = InvariantCausalMechanism(n_components=2).fit(Z, y, interventions=Z_do)
    np.testing.assert_allclose(from_context.components_, explicit.components_)
    other = Z + np.random.default_rng(3).normal(size=Z.shape)
    overridden = InvariantCausalMechanism(n_components=2).fit(carried, y, interventions=other)
    reference = InvariantCausalMechanism(n_components=2).fit(Z, y, interventions=other)
    np.testing.assert_allclose(overridden.components_, reference.components_)


def test_fit_context_survives_pickling():
    Z, _, Z_do = _data()
    carried = EmbeddingsWithContext.wrap(Z, interventions=Z_do[:, None])
    restored = pickle.loads(pickle.dumps(carried))
    np.testing.assert_array_equal(restored.fit_context["interventions"], Z_do[:, None])
    assert restored[:5].fit_context == {}


@pytest.mark.parametrize(
    "params, fit_kwargs, message",
    [
        ({"n_components": 6}, {}, r"n_components=6 must be <= n_features=5"),
        ({"lam": -1.0}, {}, r"'lam' parameter .* range \[0.0, inf\)"),
        ({}, {"interventions": np.zeros((10, 5))}, r"interventions has shape \(10, 5\)"),
        ({}, {"interventions": np.zeros((2, 120, 4))}, r"interventions has shape \(2, 120, 4\)"),
        ({}, {"interventions": np.zeros((2, 120, 5))}, r"looks views-major .* \(120, n_views, 5\)"),
        ({}, {"interventions": np.zeros((119, 2, 5))}, r"sample-major layout"),
        ({}, {"domains": np.r_[np.nan, np.zeros(119)]}, r"domains has 1 missing labels .* index 0"),
        ({}, {"domains": np.r_[None, np.zeros(119)]}, r"domains has 1 missing labels"),
        ({}, {"domains": np.zeros(120)}, r"domains gives no Deltas for lam=1.0"),
        ({}, {"interventions": np.full((120, 5), np.nan)}, r"interventions contains NaN"),
        ({}, {"domains": np.zeros(3)}, r"domains has shape \(3,\)"),
        ({}, {"intervention_pairs": (np.zeros((2, 5)), np.zeros((3, 5)))}, r"shapes \(2, 5\)"),
        ({"head": "zero_shot"}, {}, r"needs class_embeddings"),
        ({"head": "zero_shot"}, {"class_embeddings": np.zeros((2, 4))}, r"has 4 features"),
        ({"head": "zero_shot"}, {"class_embeddings": np.eye(5)[:2]}, r"Labels \[2\] in y"),
    ],
)
def test_bad_input_raises_a_clear_error(params, fit_kwargs, message):
    Z, y, Z_do = _data()
    if not {"interventions", "domains"} & set(fit_kwargs):
        fit_kwargs = {"interventions": Z_do, **fit_kwargs}
    with pytest.raises(ValueError, match=message):
        InvariantCausalMechanism(**params).fit(Z, y, **fit_kwargs)


def test_non_finite_embeddings_are_rejected():
    Z, y, Z_do = _data()
    Z[3, 1] = np.inf
    with pytest.raises(ValueError, match="X contains infinity"):
        InvariantCausalMechanism().fit(Z, y, interventions=Z_do)


def test_domains_need_labels():
    Z, _, _ = _data()
    with pytest.raises(ValueError, match="domains needs class labels y"):
        InvariantCausalMechanism(head="zero_shot").fit(
            Z, domains=np.zeros(len(Z)), class_embeddings=np.eye(5)
        )


def test_feature_names_set_output_clone_and_pickle():
    pd = pytest.importorskip("pandas")
    Z, y, Z_do = _data()
    icm = InvariantCausalMechanism(n_components=2, lam=0.3).fit(Z, y, interventions=Z_do)
    names = icm.get_feature_names_out()
    assert list(names) == ["invariantcausalmechanism0", "invariantcausalmechanism1"]
    frame = clone(icm).set_output(transform="pandas").fit(Z, y, interventions=Z_do).transform(Z)
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == list(names)
    restored = pickle.loads(pickle.dumps(icm))
    np.testing.assert_array_equal(restored.predict(Z), icm.predict(Z))
    assert clone(icm).get_params() == icm.get_params()
    assert icm.set_params(lam=2.0).lam == 2.0


def test_grid_search_routes_interventions_and_domains_leave_one_domain_out():
    Z, y, Z_do = _data(n=150)
    domains = np.repeat(["a", "b", "c"], 50)
    grid = {"lam": [0.0, 1.0], "n_components": [1, 2]}
    with sklearn.config_context(enable_metadata_routing=True):
        icm = InvariantCausalMechanism().set_fit_request(interventions=True, domains=True)
        search = GridSearchCV(icm, grid, cv=LeaveOneGroupOut()).fit(
            Z, y, groups=domains, interventions=Z_do, domains=domains
        )
    # The same search by hand: each fold sees only its own samples' interventions.
    scores = {}
    for lam in grid["lam"]:
        for k in grid["n_components"]:
            fold_scores = []
            for target in "abc":
                train, test = domains != target, domains == target
                model = InvariantCausalMechanism(n_components=k, lam=lam).fit(
                    Z[train], y[train], interventions=Z_do[train], domains=domains[train]
                )
                fold_scores.append(model.score(Z[test], y[test]))
            scores[(lam, k)] = np.mean(fold_scores)
    best = max(scores, key=lambda key: scores[key])
    assert search.best_score_ == pytest.approx(scores[best])
    assert search.best_score_ == pytest.approx(max(scores.values()))
