"""Model selection with scorers that give NaN and splitters that give empty folds."""

import warnings

import numpy as np
import pytest
import sklearn
from sklearn.model_selection import GridSearchCV, KFold

from skcicm import InvariantCausalMechanism, InvariantCausalMechanismCV

LAMS, KS = [0.0, 1.0], [1, 2, 4]


def _data(n=90, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    Z = rng.normal(size=(n, 4))
    Z[:, 0] += 1.5 * y
    views = Z[:, None, :] + rng.normal(size=(n, 2, 4)) * [0, 0, 1, 2]
    return Z, y, views


def nan_for_two_components(estimator, X, y):
    if estimator.n_components_ == 2:
        return np.nan
    return float(np.mean(estimator.predict(X) == y))


def test_nan_scores_rank_last_as_in_grid_search():
    Z, y, views = _data()
    cv = KFold(3, shuffle=True, random_state=0)
    with sklearn.config_context(enable_metadata_routing=True), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        icm = InvariantCausalMechanism().set_fit_request(interventions=True)
        grid = {"lam": LAMS, "n_components": KS}
        reference = GridSearchCV(icm, grid, cv=cv, scoring=nan_for_two_components).fit(
            Z, y, interventions=views
        )
    search = InvariantCausalMechanismCV(LAMS, KS, cv=cv, scoring=nan_for_two_components)
    with pytest.warns(UserWarning, match="NaN for 2 of 6 candidates; they rank last"):
        search.fit(Z, y, interventions=views)
    np.testing.assert_array_equal(
        search.cv_results_["rank_test_score"], reference.cv_results_["rank_test_score"]
    )
    assert search.best_params_ == reference.best_params_
    assert search.best_params_["n_components"] != 2


def test_all_nan_scores_are_an_error():
    Z, y, views = _data()
    search = InvariantCausalMechanismCV(LAMS, [2], cv=3, scoring=nan_for_two_components)
    with pytest.raises(ValueError, match="gave NaN .* for every candidate"):
        search.fit(Z, y, interventions=views)


def test_an_empty_test_fold_is_named():
    Z, y, views = _data()
    splits = [(np.arange(60), np.arange(60, 90)), (np.arange(90), np.array([], dtype=int))]
    search = InvariantCausalMechanismCV(LAMS, KS, cv=splits)
    with pytest.raises(ValueError, match="Split 1 of the 2 that cv gives has an empty test set"):
        search.fit(Z, y, interventions=views)


def test_interventional_scorer_names_views_of_the_wrong_width():
    from skcicm.model_selection import InterventionalScorer

    Z, y, views = _data()
    icm = InvariantCausalMechanism(n_components=2).fit(Z, y, interventions=views)
    with pytest.raises(ValueError, match=r"interventions have 3 features per view .* fitted on 4"):
        InterventionalScorer()(icm, Z, y, interventions=views[:, :, :3])


def test_interventional_scorer_without_routing_says_to_enable_it():
    from skcicm.model_selection import InterventionalScorer

    Z, y, views = _data()
    icm = InvariantCausalMechanism(n_components=2)
    grid = GridSearchCV(icm, {"lam": LAMS}, cv=3, scoring=InterventionalScorer())
    with pytest.raises(ValueError, match=r"enable_metadata_routing=True\)"):
        grid.set_params(error_score="raise").fit(Z, y, interventions=views)
    with pytest.warns(UserWarning, match="Metadata routing is off"):
        grid.set_params(error_score=np.nan).fit(Z, y, interventions=views)
