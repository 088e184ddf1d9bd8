"""Images -> Pipeline(CLIPFeaturizer, InvariantCausalMechanism) -> leave-one-domain-out search."""

import numpy as np
import pytest
import sklearn
from sklearn.model_selection import GridSearchCV, LeaveOneGroupOut
from sklearn.pipeline import Pipeline

from skcicm import CLIPFeaturizer, InvariantCausalMechanism

GRID = {"icm__lam": [0.0, 3.0], "icm__n_components": [4, 16]}


def _hand_search(featurizer, images, y, domains, extra_fit=None):
    """The same leave-one-domain-out search in embedding space, without the Pipeline."""
    Z = featurizer.transform(images)
    views = featurizer.intervention_embeddings(images)
    scores = {}
    for lam in GRID["icm__lam"]:
        for k in GRID["icm__n_components"]:
            folds = []
            for target in np.unique(domains):
                train, test = domains != target, domains == target
                kwargs = {key: value[train] for key, value in (extra_fit or {}).items()}
                icm = InvariantCausalMechanism(n_components=k, lam=lam).fit(
                    Z[train], y[train], interventions=views[train], **kwargs
                )
                folds.append(icm.score(Z[test], y[test]))
            scores[(lam, k)] = np.mean(folds)
    return scores


def test_grid_search_over_lam_and_k_encodes_each_image_once(
    tiny_clip_name, domain_images, encoded_count
):
    images, y, domains = domain_images
    featurizer = CLIPFeaturizer(tiny_clip_name, n_interventions=2, progress=False, random_state=3)
    pipe = Pipeline([("clip", featurizer), ("icm", InvariantCausalMechanism())])
    search = GridSearchCV(pipe, GRID, cv=LeaveOneGroupOut()).fit(images, y, groups=domains)

    # 3 domains x 4 candidates + refit, yet each image and each intervened copy once.
    assert encoded_count["images"] == len(images) * (1 + 2)

    scores = _hand_search(featurizer, images, y, domains)
    best = max(scores, key=scores.get)
    assert search.best_score_ == pytest.approx(scores[best])
    assert (search.best_params_["icm__lam"], search.best_params_["icm__n_components"]) == best
    assert encoded_count["images"] == len(images) * (1 + 2)
    assert search.predict(images[:5]).shape == (5,)
    assert encoded_count["images"] == len(images) * (1 + 2)


def test_domains_are_routed_through_pipeline_and_search(tiny_clip_name, domain_images):
    images, y, domains = domain_images
    featurizer = CLIPFeaturizer(tiny_clip_name, progress=False)
    with sklearn.config_context(enable_metadata_routing=True):
        icm = InvariantCausalMechanism().set_fit_request(domains=True)
        pipe = Pipeline([("clip", featurizer), ("icm", icm)])
        search = GridSearchCV(pipe, GRID, cv=LeaveOneGroupOut())
        search.fit(images, y, groups=domains, domains=domains)
    assert search.best_estimator_["icm"].intervention_sources_ == ("interventions", "domains")
    scores = _hand_search(featurizer, images, y, domains, extra_fit={"domains": domains})
    assert search.best_score_ == pytest.approx(max(scores.values()))


def test_zero_shot_pipeline_takes_class_prompts_from_the_featurizer(tiny_clip_name, domain_images):
    images, y, _ = domain_images
    names = ["top", "middle", "bottom"]
    featurizer = CLIPFeaturizer(
        tiny_clip_name,
        class_names=names,
        text_interventions=[("a red photo of a {}.", "a blue photo of a {}.")],
        progress=False,
    )
    pipe = Pipeline(
        [("clip", featurizer), ("icm", InvariantCausalMechanism(8, lam=1.0, head="zero_shot"))]
    ).fit(images, y)
    icm = pipe["icm"]
    assert icm.intervention_sources_ == ("interventions", "intervention_pairs")
    np.testing.assert_array_equal(icm.classes_, [0, 1, 2])
    Z = featurizer.transform(images)
    text = featurizer.class_embeddings()
    projected = Z @ icm.components_.T
    classes = text @ icm.components_.T
    cosine = (projected / np.linalg.norm(projected, axis=1, keepdims=True)) @ (
        classes / np.linalg.norm(classes, axis=1, keepdims=True)
    ).T
    np.testing.assert_array_equal(pipe.predict(images), cosine.argmax(axis=1))
