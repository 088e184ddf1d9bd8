"""The authors' zero-shot rule, against a transcription of their released ``engine.py``."""

import numpy as np
import pytest

from skcicm import InvariantCausalMechanism


def _authors_zero_shot(image_features, text_features, A_inv, temperature=100.0):
    """ML-TASA/CLIP-ICM ``engine.zero_shot``, in numpy: unit text before ``@ A_inv``, raw images."""
    text_features = text_features / np.linalg.norm(text_features, axis=-1, keepdims=True)
    text_features = text_features @ A_inv
    image_features = image_features @ A_inv
    logits = temperature * image_features @ text_features.T
    logits -= logits.max(axis=1, keepdims=True)
    similarity = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return similarity.argmax(axis=-1), similarity


def _data(seed=0, n=300, d=8, n_classes=4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    text = rng.normal(size=(n_classes, d)) * rng.uniform(0.5, 3.0, size=(n_classes, 1))
    Z = 0.4 * text[y] + rng.normal(size=(n, d)) * rng.uniform(0.2, 3.0, size=d)
    views = Z + rng.normal(size=(n, d)) * np.r_[np.zeros(d - 3), 2.0, 2.0, 2.0]
    return Z, y, views, text


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_authors_rule_matches_their_code(seed):
    Z, y, views, text = _data(seed)
    icm = InvariantCausalMechanism(
        n_components=3, lam=1.0, head="zero_shot", zero_shot_similarity="authors"
    ).fit(Z, y, interventions=views, class_embeddings=text)
    predictions, probabilities = _authors_zero_shot(Z, text, icm.components_.T)
    np.testing.assert_array_equal(icm.predict(Z), icm.classes_[predictions])
    np.testing.assert_allclose(icm.predict_proba(Z), probabilities, rtol=1e-9, atol=1e-12)


def test_cosine_rule_differs_from_the_authors():
    # The two rules agree only when every projected text keeps the same norm; on these
    # data they must disagree somewhere, or the option would be a no-op.
    Z, y, views, text = _data(3)
    params = {"n_components": 3, "lam": 1.0, "head": "zero_shot"}
    fit = {"interventions": views, "class_embeddings": text}
    cosine = InvariantCausalMechanism(**params).fit(Z, y, **fit)
    authors = InvariantCausalMechanism(**params, zero_shot_similarity="authors").fit(Z, y, **fit)
    np.testing.assert_array_equal(cosine.components_, authors.components_)
    assert (cosine.predict(Z) != authors.predict(Z)).any()
    projected_text = text @ cosine.components_.T
    expected = projected_text / np.linalg.norm(projected_text, axis=1, keepdims=True)
    np.testing.assert_allclose(cosine.class_weights_, expected)
    unit_text = text / np.linalg.norm(text, axis=1, keepdims=True)
    np.testing.assert_allclose(authors.class_weights_, unit_text @ authors.components_.T)


def test_unknown_rule_is_refused():
    Z, y, views, text = _data()
    icm = InvariantCausalMechanism(head="zero_shot", zero_shot_similarity="dot")
    with pytest.raises(ValueError, match="zero_shot_similarity"):
        icm.fit(Z, y, interventions=views, class_embeddings=text)
