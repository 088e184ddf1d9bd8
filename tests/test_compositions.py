"""Compositions that drop the featurizer's interventions fail closed (issue 9, section 1)."""

import numpy as np
import pytest
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, Normalizer, StandardScaler

from skcicm import InvariantCausalMechanism, NoInterventionError
from skcicm.icm import EmbeddingsWithContext


def _carried(seed=0, n=60, d=6):
    """Embeddings with interventions attached, as CLIPFeaturizer.fit_transform returns them."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    Z = rng.normal(size=(n, d)) + y[:, None]
    views = Z[:, None, :] + rng.normal(size=(n, 2, d))
    return EmbeddingsWithContext.wrap(Z, interventions=views), y


class _CarryingFeaturizer(
    sklearn.base.ClassNamePrefixFeaturesOutMixin,
    sklearn.base.TransformerMixin,
    sklearn.base.BaseEstimator,
):
    """Stands in for CLIPFeaturizer: its fit_transform output carries the interventions."""

    _n_features_out = 6

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.asarray(X)

    def fit_transform(self, X, y=None):
        Z, _ = _carried(n=len(X))
        return Z


def _inputs(n=60):
    return np.arange(n).reshape(-1, 1), np.arange(n) % 3


def test_plain_two_step_pipeline_uses_the_carried_interventions():
    X, y = _inputs()
    pipeline = Pipeline([("clip", _CarryingFeaturizer()), ("icm", InvariantCausalMechanism(2))])
    pipeline.fit(X, y)
    Z, _ = _carried()
    views = Z.fit_context["interventions"]
    deltas = (np.asarray(Z)[:, None] - views).reshape(-1, Z.shape[1])
    np.testing.assert_allclose(
        pipeline["icm"].intervention_covariance_, deltas.T @ deltas / len(deltas)
    )


@pytest.mark.parametrize(
    "middle",
    [
        StandardScaler(),
        Normalizer(),
        FunctionTransformer(np.asarray),
        "pandas",
        "column_transformer",
    ],
    ids=["scaler", "normalizer", "asarray", "set_output_pandas", "column_transformer"],
)
def test_a_step_that_drops_the_interventions_raises_before_fitting(middle):
    pytest.importorskip("pandas")
    X, y = _inputs()
    if middle == "pandas":
        pipeline = make_pipeline(_CarryingFeaturizer(), InvariantCausalMechanism(2)).set_output(
            transform="pandas"
        )
    elif middle == "column_transformer":
        pipeline = make_pipeline(
            ColumnTransformer([("clip", _CarryingFeaturizer(), [0])]), InvariantCausalMechanism(2)
        )
    else:
        pipeline = make_pipeline(_CarryingFeaturizer(), middle, InvariantCausalMechanism(2))
    with pytest.raises(NoInterventionError, match="directly after CLIPFeaturizer"):
        pipeline.fit(X, y)
    assert not hasattr(pipeline[-1], "components_")


def test_global_pandas_output_raises():
    pytest.importorskip("pandas")
    X, y = _inputs()
    with sklearn.config_context(transform_output="pandas"):
        pipeline = make_pipeline(_CarryingFeaturizer(), InvariantCausalMechanism())
        with pytest.raises(NoInterventionError):
            pipeline.fit(X, y)


def test_sliced_precomputed_output_raises_and_explicit_interventions_fix_it():
    Z, y = _carried()
    with pytest.raises(NoInterventionError):
        InvariantCausalMechanism(2).fit(Z[:40], y[:40])
    with pytest.raises(NoInterventionError):
        cross_val_score(InvariantCausalMechanism(2), Z, y, cv=3, error_score="raise")
    views = Z.fit_context["interventions"]
    with sklearn.config_context(enable_metadata_routing=True):
        icm = InvariantCausalMechanism(2).set_fit_request(interventions=True)
        scores = cross_val_score(icm, np.asarray(Z), y, cv=3, params={"interventions": views})
    assert scores.shape == (3,) and np.all(scores > 0.5)


def test_lam_zero_composition_is_a_plain_rotation():
    X, y = _inputs()
    pipeline = make_pipeline(
        _CarryingFeaturizer(), StandardScaler(), InvariantCausalMechanism(lam=0)
    )
    pipeline.fit(X, y)
    assert pipeline[-1].intervention_sources_ == ()


def test_real_featurizer_with_a_scaler_in_between_raises(tiny_clip_name, domain_images):
    from skcicm import CLIPFeaturizer

    images, labels, _ = domain_images
    featurizer = CLIPFeaturizer(tiny_clip_name, n_interventions=2, progress=False, random_state=0)
    plain = Pipeline([("clip", featurizer), ("icm", InvariantCausalMechanism(4))])
    plain.fit(images, labels)
    assert plain["icm"].intervention_sources_ == ("interventions",)
    scaled = make_pipeline(
        sklearn.base.clone(featurizer), StandardScaler(), InvariantCausalMechanism(4)
    )
    with pytest.raises(NoInterventionError, match="StandardScaler"):
        scaled.fit(images, labels)


def test_a_wrapped_scaler_applies_to_the_intervened_views_too():
    from skcicm.icm import TransformWithContext

    X, y = _inputs()
    pipeline = make_pipeline(
        _CarryingFeaturizer(), TransformWithContext(StandardScaler()), InvariantCausalMechanism(2)
    ).fit(X, y)
    Z, _ = _carried()
    scaler = StandardScaler().fit(np.asarray(Z))
    views = Z.fit_context["interventions"]
    scaled_views = scaler.transform(views.reshape(-1, 6)).reshape(views.shape)
    reference = InvariantCausalMechanism(2).fit(
        scaler.transform(np.asarray(Z)), y, interventions=scaled_views
    )
    np.testing.assert_allclose(pipeline[-1].components_, reference.components_)
    np.testing.assert_allclose(
        pipeline[-1].intervention_covariance_, reference.intervention_covariance_
    )
