"""The "interventional" tuning rule of the protocols: LODO scored on intervened copies."""

import numpy as np
import pytest
from test_protocols import _split, _synthetic

from skcicm import InvariantCausalMechanism
from skcicm.evaluation import domain_shift
from skcicm.evaluation.options import TUNING
from skcicm.evaluation.selection import TUNING_RULES
from skcicm.model_selection import InterventionalScorer


def test_interventional_rule_is_registered_and_offered():
    assert "interventional" in TUNING and set(TUNING) == set(TUNING_RULES)


@pytest.mark.parametrize("rule", [None, "pooled", "intervened", "worst", "worst_view"])
def test_interventional_rule_matches_a_hand_computed_lodo_loop(rule):
    embedded = _synthetic()
    rng = np.random.default_rng(1)
    # Validation copies distinct from the fitted interventions, so that the rule must use them.
    views = embedded.embeddings[:, None, :] + rng.normal(size=(embedded.n_samples, 2, 12))
    embedded = embedded.replace(validation_views=views)
    lams, ks = [0.0, 1.0], [2, 8]
    result = domain_shift(
        embedded,
        targets=["c"],
        methods=["icm_linear_probe"],
        lam=lams,
        n_components=ks,
        tuning="interventional",
        progress=False,
        interventional_rule=rule,
    )
    (row,) = result.results
    train, _, _ = _split(embedded, "c")
    train = np.flatnonzero(train)
    Z, y, d = embedded.embeddings, embedded.labels, embedded.domains
    scorer = InterventionalScorer() if rule is None else InterventionalScorer(rule=rule)
    means = {}
    for lam in lams:
        for k in ks:
            fold_scores = []
            for held_out in ("a", "b"):
                fit = train[d[train] != held_out]
                test = train[d[train] == held_out]
                icm = InvariantCausalMechanism(n_components=k, lam=lam).fit(
                    Z[fit], y[fit], interventions=embedded.interventions[fit]
                )
                fold_scores.append(scorer(icm, Z[test], y[test], interventions=views[test]))
            means[(lam, k)] = np.mean(fold_scores)
    best = max(means, key=means.get)
    assert row["tuning"] == "source-lodo-interventional"
    assert (row["lam"], row["n_components"]) == best
    assert row["selection_score"] == pytest.approx(means[best], abs=1e-6)
    assert {r["scoring"] for r in result.cv_results} == {"interventional"}
    # The rows name the rule in use, the scorer's default when none is given.
    assert row["interventional_rule"] == scorer.rule
    assert {r["interventional_rule"] for r in result.cv_results} == {scorer.rule}


def test_interventional_rule_is_checked():
    embedded = _synthetic()
    options = {"targets": ["c"], "lam": [0.0, 1.0], "n_components": [4], "progress": False}
    with pytest.raises(ValueError, match="interventional_rule: must be one of"):
        domain_shift(embedded, tuning="interventional", interventional_rule="mean", **options)
    with pytest.raises(ValueError, match="interventional_rule: 'worst' applies to tuning"):
        domain_shift(embedded, tuning="source", interventional_rule="worst", **options)


def test_interventional_rule_never_scores_on_target_copies():
    embedded = _synthetic()
    views = embedded.interventions.copy()
    views[embedded.domains == "c"] = np.nan
    grid = {"lam": [0.0, 1.0], "n_components": [4], "progress": False, "tuning": "interventional"}
    result = domain_shift(embedded.replace(interventions=views), targets=["c"], **grid)
    assert {r["tuning"] for r in result.results if r["method"].startswith("icm")} == {
        "source-lodo-interventional"
    }


def test_interventional_rule_needs_per_sample_copies():
    embedded = _synthetic()
    pairs = (embedded.embeddings[:3], embedded.embeddings[3:6])
    no_views = embedded.replace(interventions=None, intervention_pairs=pairs)
    with pytest.raises(ValueError, match="tuning: 'interventional'.*intervened copies"):
        domain_shift(
            no_views,
            targets=["c"],
            methods=["icm_linear_probe"],
            lam=[0.0, 1.0],
            n_components=[4],
            tuning="interventional",
            progress=False,
        )


def test_selection_folds_leave_out_stratified_folds_not_domains():
    from sklearn.model_selection import StratifiedKFold

    from skcicm.evaluation.sweep import SweepSettings, new_result, run_split
    from skcicm.model_selection import lodo_grid_search

    embedded = _synthetic()
    train = np.flatnonzero(embedded.domains != "c")
    settings = SweepSettings(
        ["icm_linear_probe"], [0.0, 1.0], [2, 8], ["source", "interventional"], selection_folds=3
    )
    result = new_result("test", "synthetic")
    run_split(
        embedded, train, lambda e: {"c": {"validation": 0.0}}, settings, base={}, result=result
    )
    # By hand: three stratified folds of the training samples, Deltas from the interventions.
    folds = np.empty(train.size, dtype=int)
    splitter = StratifiedKFold(3, shuffle=True, random_state=0)
    for fold, (_, held_out) in enumerate(splitter.split(train, embedded.labels[train])):
        folds[held_out] = fold
    expected = lodo_grid_search(
        embedded.embeddings[train],
        embedded.labels[train],
        embedded.domains[train],
        lam=[0.0, 1.0],
        n_components=[2, 8],
        interventions=embedded.interventions[train],
        groups=folds,
    )
    (source,) = [r for r in result.results if r["tuning"] == "source-lodo"]
    assert (source["lam"], source["n_components"]) == tuple(expected.best_params.values())
    assert source["selection_score"] == pytest.approx(expected.best_score)
    assert source["selection_folds"] == 3
    assert {r["held_out_domain"] for r in result.cv_results} == {"0", "1", "2"}
    with pytest.raises(ValueError, match="selection_folds: must be None or an int >= 2"):
        SweepSettings.checked(
            ["icm_linear_probe"],
            ["icm_linear_probe"],
            [0.0],
            [2],
            12,
            ["source"],
            selection_folds=1,
        )
