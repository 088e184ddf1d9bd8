"""InterventionalScorer: hand computations, metadata routing on embeddings, images in a Pipeline."""

import numpy as np
import pytest
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import GridSearchCV, LeaveOneGroupOut
from sklearn.pipeline import Pipeline

from skcicm import CLIPFeaturizer, InvariantCausalMechanism
from skcicm.model_selection import InterventionalScorer


class FirstFeatureSign(ClassifierMixin, BaseEstimator):
    """Predicts 1 where the first feature is positive: a classifier to compute scores by hand."""

    def fit(self, X, y):
        self.classes_ = np.array([0, 1])
        return self

    def predict(self, X):
        return (np.asarray(X)[:, 0] > 0).astype(int)


X = np.array([[1.0, 0.0], [-1.0, 0.0], [2.0, 0.0]])
Y = np.array([1, 0, 0])
# Copies of each sample (sample-major): predictions 1,0 | 1,1 | 0,0 against labels 1 | 0 | 0.
VIEWS = np.array(
    [
        [[3.0, 1.0], [-3.0, 1.0]],
        [[0.5, 1.0], [4.0, 1.0]],
        [[-1.0, 1.0], [-2.0, 1.0]],
    ]
)


def test_score_equals_hand_computation():
    classifier = FirstFeatureSign().fit(X, Y)
    # Clean predictions 1, 0, 1 against 1, 0, 0: 2 of 3. Copies: view 0 predicts 1, 1, 0
    # (2 of 3 right), view 1 predicts 0, 1, 0 (1 of 3): 3 of 6 together.
    expected = {"intervened": 3 / 6, "pooled": 5 / 9, "worst": 3 / 6, "worst_view": 1 / 3}
    for rule, score in expected.items():
        scorer = InterventionalScorer(rule=rule)
        assert scorer(classifier, X, Y, interventions=VIEWS) == pytest.approx(score), rule
    # A single view may come as (n_samples, n_features).
    alone = InterventionalScorer(rule="intervened")
    assert alone(classifier, X, Y, interventions=VIEWS[:, 0]) == pytest.approx(2 / 3)


def test_worst_rules_take_the_clean_score_when_it_is_the_lower():
    classifier = FirstFeatureSign().fit(X, Y)
    # Every copy is predicted right (1, 0, 0), the clean samples 2 of 3.
    easy = np.array([[[1.0, 0.0]] * 2, [[-1.0, 0.0]] * 2, [[-2.0, 0.0]] * 2])
    for rule, score in {"intervened": 1.0, "pooled": 8 / 9, "worst": 2 / 3}.items():
        scorer = InterventionalScorer(rule=rule)
        assert scorer(classifier, X, Y, interventions=easy) == pytest.approx(score), rule
    assert InterventionalScorer(rule="worst_view")(
        classifier, X, Y, interventions=easy
    ) == pytest.approx(2 / 3)


def test_include_clean_is_deprecated_and_maps_onto_rule():
    classifier = FirstFeatureSign().fit(X, Y)
    for include_clean, rule in ((True, "pooled"), (False, "intervened")):
        with pytest.warns(FutureWarning, match=f"rule='{rule}'"):
            scorer = InterventionalScorer(include_clean=include_clean)
        assert scorer.rule == rule
        assert scorer(classifier, X, Y, interventions=VIEWS) == InterventionalScorer(rule=rule)(
            classifier, X, Y, interventions=VIEWS
        )
    other = "worst" if InterventionalScorer().rule != "worst" else "worst_view"
    with pytest.raises(ValueError, match="contradicts"):
        InterventionalScorer(include_clean=True, rule=other)


def test_bad_input_fails_clearly():
    classifier = FirstFeatureSign().fit(X, Y)
    with pytest.raises(ValueError, match="sample-major layout"):
        InterventionalScorer()(classifier, X, Y, interventions=VIEWS.transpose(1, 0, 2))
    with pytest.raises(ValueError, match="got no intervened copies"):
        InterventionalScorer()(classifier, X, Y)
    with pytest.raises(RuntimeError, match="metadata routing"):
        InterventionalScorer().set_score_request(interventions=True)
    with pytest.raises(ValueError, match="include_clean"):
        InterventionalScorer(include_clean="yes")
    with pytest.raises(ValueError, match="'rule' parameter"):
        InterventionalScorer(rule="mean")


def _shortcut_embeddings(seed=0, n_per_domain=120):
    """Every domain shares a shortcut feature (1) that agrees with the label 95% of the time;
    feature 0 is a weaker invariant signal; intervened copies redraw the shortcut."""
    rng = np.random.default_rng(seed)
    n = 3 * n_per_domain
    y = rng.integers(0, 2, n)
    domains = np.repeat([0, 1, 2], n_per_domain)
    shortcut = np.where(rng.uniform(size=n) < 0.95, y, 1 - y)
    Z = rng.normal(0, 0.5, (n, 4))
    Z[:, 0] += 0.6 * (2 * y - 1)
    Z[:, 1] = 2.0 * (2 * shortcut - 1) + rng.normal(0, 0.1, n)
    views = np.repeat(Z[:, None, :], 2, axis=1)
    views[:, :, 1] = 2.0 * rng.choice([-1.0, 1.0], size=(n, 2))
    return Z, y, domains, views


def test_grid_search_on_embeddings_routes_interventions_and_sees_the_shortcut():
    Z, y, domains, views = _shortcut_embeddings()
    grid = {"lam": [0.0, 10.0], "n_components": [1]}
    with sklearn.config_context(enable_metadata_routing=True):
        icm = InvariantCausalMechanism(lam_scale="trace").set_fit_request(interventions=True)
        scorer = InterventionalScorer(rule="pooled").set_score_request(interventions=True)
        search = GridSearchCV(
            icm, grid, cv=LeaveOneGroupOut(), scoring=scorer, refit=False, error_score="raise"
        )
        search.fit(Z, y, groups=domains, interventions=views)
        clean = GridSearchCV(icm, grid, cv=LeaveOneGroupOut(), refit=False)
        clean.fit(Z, y, groups=domains, interventions=views)
    # Clean held-out accuracy prefers the shortcut (lam=0); the intervened copies do not.
    assert clean.best_params_["lam"] == 0.0
    assert search.best_params_["lam"] == 10.0
    # Fold 0 of lam=10, by hand.
    test = domains == 0
    fitted = InvariantCausalMechanism(lam=10.0, n_components=1, lam_scale="trace").fit(
        Z[~test], y[~test], interventions=views[~test]
    )
    # Pooled: the clean held-out samples with their two copies.
    predicted = np.concatenate(
        [fitted.predict(Z[test]), fitted.predict(views[test].reshape(-1, 4))]
    )
    expected = np.mean(predicted == np.concatenate([y[test], np.repeat(y[test], 2)]))
    assert search.cv_results_["split0_test_score"][1] == pytest.approx(expected)


def test_grid_search_on_images_uses_the_featurizers_copies(tiny_clip_name, domain_images):
    images, labels, domains = domain_images
    pipe = Pipeline(
        [
            ("clip", CLIPFeaturizer(tiny_clip_name, pretrained=None, progress=False)),
            ("icm", InvariantCausalMechanism(n_components=8)),
        ]
    )
    search = GridSearchCV(
        pipe,
        {"icm__lam": [0.0, 3.0]},
        cv=LeaveOneGroupOut(),
        scoring=InterventionalScorer(rule="intervened"),
        refit=False,
        error_score="raise",
    )
    search.fit(images, labels, groups=domains)
    # The last fold and candidate by hand, from the featurizer's views-major copies.
    test = domains == "red"
    fitted = clone(pipe).set_params(icm__lam=3.0).fit(images[~test], labels[~test])
    copies = fitted.named_steps["clip"].intervention_embeddings(images[test])
    correct = [fitted[1:].predict(view) == labels[test] for view in copies]
    fold = list(np.unique(domains)).index("red")
    assert search.cv_results_[f"split{fold}_test_score"][1] == pytest.approx(np.mean(correct))


def test_a_featurizer_without_image_interventions_is_told_what_to_do(tiny_clip_name, domain_images):
    images, labels, _ = domain_images
    clip = CLIPFeaturizer(tiny_clip_name, pretrained=None, interventions=None, progress=False)
    pipe = Pipeline([("clip", clip), ("icm", InvariantCausalMechanism(lam=0.0))])
    pipe.fit(images, labels)
    with pytest.raises(ValueError, match=r"interventions=None.*clip__interventions='paper'"):
        InterventionalScorer()(pipe, images, labels)


def test_protocol_rule_names_are_the_scorers():
    from skcicm.evaluation.options import DEFAULT_INTERVENTIONAL_RULE, INTERVENTIONAL_RULES
    from skcicm.model_selection._scoring import RULES

    assert tuple(RULES) == INTERVENTIONAL_RULES
    assert InterventionalScorer().rule == DEFAULT_INTERVENTIONAL_RULE
