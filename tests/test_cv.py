"""InvariantCausalMechanismCV equals GridSearchCV over the same grid, for less work."""

import numpy as np
import pytest
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, LeaveOneGroupOut, ShuffleSplit

from skcicm import InvariantCausalMechanism, InvariantCausalMechanismCV, NoInterventionError
from skcicm.icm import _subspace as subspace

LAMS, KS = [0.0, 0.5, 5.0], [1, 2, 4]


def _data(n=180, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    domains = np.repeat(["a", "b", "c"], n // 3)
    Z = rng.normal(size=(n, 6))
    Z[:, 0] += 1.2 * y
    Z[:, 4:] += 2.0 * (domains == "b")[:, None] + 0.3 * y[:, None]
    views = Z[:, None, :] + rng.normal(size=(n, 2, 6)) * [0, 0, 0, 0.5, 2, 2]
    pairs = (rng.normal(size=(5, 6)), rng.normal(size=(5, 6)))
    text = rng.normal(size=(3, 6)) + np.eye(6)[:3] * 2
    return Z, y, domains, views, pairs, text


def _grid_search(params, grid, fit_params, Z, y, groups, cv, scoring=None):
    with sklearn.config_context(enable_metadata_routing=True):
        icm = InvariantCausalMechanism(**params).set_fit_request(**dict.fromkeys(fit_params, True))
        search = GridSearchCV(icm, grid, cv=cv, scoring=scoring, error_score="raise")
        if groups is not None:
            fit_params = {**fit_params, "groups": groups}
        return search.fit(Z, y, **fit_params)


@pytest.mark.parametrize(
    "params, extra_grid, scoring, ks",
    [
        ({"head": "linear_probe"}, {}, None, KS),
        ({"head": "zero_shot"}, {}, None, KS),
        ({"head": "zero_shot"}, {}, "neg_log_loss", [1, 3, 6]),
        ({"head": "zero_shot"}, {}, "neg_log_loss", [6]),
        ({"head": "zero_shot", "zero_shot_similarity": "authors"}, {}, "neg_log_loss", KS),
        ({"head": "zero_shot", "center": True}, {"selection": ["largest", "smallest"]}, None, KS),
        ({"head": "linear_probe"}, {"lam_scale": ["absolute", "trace"]}, "neg_log_loss", KS),
        ({"head": "linear_probe", "center": True}, {}, "neg_log_loss", [2, 6]),
    ],
)
def test_same_scores_and_choice_as_grid_search(params, extra_grid, scoring, ks):
    Z, y, domains, views, pairs, text = _data()
    fit_params = {"interventions": views, "domains": domains, "intervention_pairs": pairs}
    if params["head"] == "zero_shot":
        fit_params["class_embeddings"] = text
    grid = {"lam": LAMS, "n_components": ks, **extra_grid}
    reference = _grid_search(params, grid, fit_params, Z, y, domains, LeaveOneGroupOut(), scoring)
    search = InvariantCausalMechanismCV(
        LAMS, ks, cv=LeaveOneGroupOut(), scoring=scoring, warm_start=False, **params, **extra_grid
    ).fit(Z, y, groups=domains, **fit_params)
    assert search.cv_results_["params"] == reference.cv_results_["params"]
    for key in ("mean_test_score", "std_test_score", "split0_test_score", "split2_test_score"):
        np.testing.assert_allclose(search.cv_results_[key], reference.cv_results_[key], atol=1e-9)
    np.testing.assert_array_equal(
        search.cv_results_["rank_test_score"], reference.cv_results_["rank_test_score"]
    )
    assert search.best_params_ == reference.best_params_
    assert search.best_score_ == pytest.approx(reference.best_score_)
    assert (search.lam_, search.n_components_) == (
        reference.best_params_["lam"],
        reference.best_params_["n_components"],
    )
    np.testing.assert_allclose(
        search.predict_proba(Z), reference.best_estimator_.predict_proba(Z), atol=1e-8
    )
    np.testing.assert_allclose(search.transform(Z), reference.best_estimator_.transform(Z))


def test_one_eigendecomposition_per_fold_and_lam(monkeypatch):
    Z, y, domains, views, _, text = _data()
    calls = []
    original = subspace.solve_eigenproblem

    def counting(*args, **kwargs):
        calls.append(kwargs["lam"])
        return original(*args, **kwargs)

    import skcicm.model_selection._cv as cv_module

    monkeypatch.setattr(cv_module, "solve_eigenproblem", counting)
    InvariantCausalMechanismCV(
        LAMS,
        KS,
        selection=["largest", "smallest"],
        head="zero_shot",
        cv=LeaveOneGroupOut(),
        refit=False,
    ).fit(Z, y, groups=domains, interventions=views, class_embeddings=text)
    assert len(calls) == 3 * len(LAMS)  # folds x lams, not x n_components x selections


@pytest.mark.parametrize(
    "cv", [KFold(4, shuffle=True, random_state=0), ShuffleSplit(3, test_size=0.3, random_state=0)]
)
def test_any_splitter_and_scorer(cv):
    # K-fold test folds partition the samples (statistics from one pass); ShuffleSplit's do not.
    Z, y, _, views, _, _ = _data()
    reference = _grid_search(
        {},
        {"lam": LAMS, "n_components": KS},
        {"interventions": views},
        Z,
        y,
        None,
        cv,
        "balanced_accuracy",
    )
    search = InvariantCausalMechanismCV(
        LAMS, KS, cv=cv, scoring="balanced_accuracy", warm_start=False
    )
    search.fit(Z, y, interventions=views)
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"], reference.cv_results_["mean_test_score"]
    )


def test_lam_above_zero_without_interventions_fails_closed():
    Z, y, domains, _, _, _ = _data()
    with pytest.raises(NoInterventionError, match="lam=5.0 needs interventional data"):
        InvariantCausalMechanismCV(LAMS, KS, cv=LeaveOneGroupOut()).fit(Z, y, groups=domains)
    two = domains != "c"
    with pytest.raises(NoInterventionError, match="training fold"):
        InvariantCausalMechanismCV(LAMS, KS, cv=LeaveOneGroupOut()).fit(
            Z[two], y[two], groups=domains[two], domains=domains[two]
        )
    search = InvariantCausalMechanismCV([0.0], KS, cv=3).fit(Z, y)
    assert search.lam_ == 0.0


def test_bad_grid_values_are_named():
    Z, y, _, views, _, _ = _data()
    with pytest.raises(ValueError, match="n_components values must be integers in 1..6"):
        InvariantCausalMechanismCV([0.0], [7]).fit(Z, y, interventions=views)
    with pytest.raises(ValueError, match="selection must be one of"):
        InvariantCausalMechanismCV([0.0], [2], selection=["biggest"]).fit(Z, y)


def test_lodo_grid_search_rows_equal_grid_search():
    from skcicm.model_selection import lodo_grid_search

    Z, y, domains, views, pairs, _ = _data()
    result = lodo_grid_search(
        Z,
        y,
        domains,
        lam=LAMS,
        n_components=KS,
        interventions=views,
        intervention_pairs=pairs,
        domain_interventions=True,
        estimator_params={"lam_scale": "trace"},
    )
    reference = _grid_search(
        {"lam_scale": "trace"},
        {"lam": LAMS, "n_components": KS},
        {"interventions": views, "intervention_pairs": pairs, "domains": domains},
        Z,
        y,
        domains,
        LeaveOneGroupOut(),
    )
    assert result.best_params == reference.best_params_
    assert result.best_score == pytest.approx(reference.best_score_)
    assert len(result.cv_results) == len(LAMS) * len(KS) * 3
    for row in result.cv_results:
        index = reference.cv_results_["params"].index(
            {"lam": row["lam"], "n_components": row["n_components"]}
        )
        fold = "abc".index(row["held_out_domain"])
        assert row["accuracy"] == pytest.approx(
            reference.cv_results_[f"split{fold}_test_score"][index]
        )
        assert row["rank"] == reference.cv_results_["rank_test_score"][index]


def test_warm_started_probes_choose_as_grid_search_with_fewer_iterations(monkeypatch):
    import skcicm.model_selection._cv as cv_module

    Z, y, domains, views, _, _ = _data(n=300)
    ks = [1, 2, 4, 6]
    iterations = {True: [], False: []}
    original = cv_module.fit_probe

    def counting(candidate, features, y, previous):
        probe = original(candidate, features, y, previous)
        iterations[mode].append(int(probe.n_iter_.sum()))
        return probe

    monkeypatch.setattr(cv_module, "fit_probe", counting)
    searches = {}
    for warm in (False, True):
        mode = warm
        searches[warm] = InvariantCausalMechanismCV(
            LAMS, ks, cv=LeaveOneGroupOut(), warm_start=warm, refit=False
        ).fit(Z, y, groups=domains, interventions=views)
    reference = _grid_search(
        {},
        {"lam": LAMS, "n_components": ks},
        {"interventions": views},
        Z,
        y,
        domains,
        LeaveOneGroupOut(),
    )
    warm, cold = searches[True], searches[False]
    assert warm.best_params_ == cold.best_params_ == reference.best_params_
    np.testing.assert_allclose(
        warm.cv_results_["mean_test_score"], reference.cv_results_["mean_test_score"], atol=0.01
    )
    # Every K = d candidate is the same full-space probe: one score per fold, whatever lam.
    full = np.array([p["n_components"] == 6 for p in warm.cv_results_["params"]])
    for fold in range(3):
        assert np.unique(warm.cv_results_[f"split{fold}_test_score"][full]).size == 1
    # Folds x lams x K < d probes, plus one K = d probe per fold.
    assert len(iterations[True]) == len(iterations[False]) == 3 * len(LAMS) * 3 + 3
    assert sum(iterations[True]) < sum(iterations[False])


@pytest.mark.parametrize(
    "scoring, classifier, shared",
    [
        ("accuracy", None, True),
        (lambda estimator, X, y: estimator.score(X, y), None, False),
        ("accuracy", LogisticRegression(l1_ratio=1.0, solver="saga", max_iter=200), False),
    ],
)
def test_full_space_candidates_are_scored_once_only_when_rotation_invariant(
    monkeypatch, scoring, classifier, shared
):
    import skcicm.model_selection._cv as cv_module

    Z, y, domains, views, _, _ = _data()
    fits = []
    original = cv_module.fit_probe

    def counting(candidate, features, y, previous):
        fits.append(features.shape[1])
        return original(candidate, features, y, previous)

    monkeypatch.setattr(cv_module, "fit_probe", counting)
    InvariantCausalMechanismCV(
        LAMS, [2, 6], cv=LeaveOneGroupOut(), scoring=scoring, classifier=classifier, refit=False
    ).fit(Z, y, groups=domains, interventions=views)
    # K = d is a rotation of the whole space: one fit per fold when the model and the scorer
    # cannot tell rotations apart, one per fold and lam otherwise.
    assert fits.count(6) == (3 if shared else 3 * len(LAMS))
    assert fits.count(2) == 3 * len(LAMS)


@pytest.mark.parametrize("request_as", [True, "score_views"])
def test_scorer_metadata_is_routed_as_grid_search_routes_it(request_as):
    # The scorer's interventions, requested under their own name or an alias, reach each
    # fold's scorer as GridSearchCV sends them. Under their own name they are also the fit's
    # Deltas; under an alias they are the scorer's alone.
    from skcicm.model_selection import InterventionalScorer

    Z, y, domains, views, pairs, _ = _data()
    name = "interventions" if request_as is True else request_as
    fit_requests = {"intervention_pairs": True, "interventions": request_as is True}
    with sklearn.config_context(enable_metadata_routing=True):
        scorer = InterventionalScorer().set_score_request(interventions=request_as)
        icm = InvariantCausalMechanism(lam_scale="trace").set_fit_request(**fit_requests)
        params = {"groups": domains, "intervention_pairs": pairs, name: views[:, :1] * 1.5}
        reference = GridSearchCV(
            icm, {"lam": LAMS, "n_components": KS}, cv=LeaveOneGroupOut(), scoring=scorer
        ).fit(Z, y, **params)
        search = InvariantCausalMechanismCV(
            LAMS, KS, cv=LeaveOneGroupOut(), scoring=scorer, warm_start=False
        ).fit(Z, y, **params)
        with pytest.raises(TypeError, match="unexpected argument.*not_requested"):
            search.fit(Z, y, groups=domains, intervention_pairs=pairs, not_requested=y)
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"], reference.cv_results_["mean_test_score"], atol=1e-9
    )
    assert search.best_params_ == reference.best_params_
