"""Attribute prompt pairs: generation, fail-closed templates, no target leak, featurizer use."""

import numpy as np
import pytest

from skcicm.prompts import (
    attribute_prompt_pairs,
    expand_prompt_pairs,
    pair_names_any,
    pairs_without_words,
    style_prompt_pairs,
)


def test_pairs_differ_only_in_the_attribute_word():
    pairs = attribute_prompt_pairs(["red", "blue", "green", "gray"])
    assert len(pairs) == 6
    for first, second in pairs:
        a, b = first.split(), second.split()
        assert len(a) == len(b)
        assert sum(x != y for x, y in zip(a, b, strict=True)) == 1
    first, second = expand_prompt_pairs(pairs[:1], ["star", "ring"])
    assert first == ["a photo of a red star.", "a photo of a red ring."]
    assert second == ["a photo of a blue star.", "a photo of a blue ring."]


def test_template_without_class_slot_gives_literal_captions():
    pairs = attribute_prompt_pairs(["stripes", "dots"], template="a {attribute} background")
    assert expand_prompt_pairs(pairs, ["star"]) == (
        ["a stripes background"],
        ["a dots background"],
    )


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("a photo of a {}", "exactly once"),
        ("a {attribute} {attribute} {}", "exactly once"),
        ("a {attribute} {style} {}", "may hold only the slots"),
        ("a {attribute} {} {}", "may hold only the slots"),
        ("a {attribute!r} {}", "may hold only the slots"),
        ("a {attribute} { {}", "stray brace"),
        ("a {attribute} {}}", "stray brace"),
        ("a {attribute} {{}}", "escaped brace"),
    ],
)
def test_bad_templates_fail_closed(template, message):
    with pytest.raises(ValueError, match=message):
        attribute_prompt_pairs(["red", "blue"], template=template)


@pytest.mark.parametrize(
    "attributes", [["red"], ["red", "red"], ["red", ""], ["red", "{x}"], [1, 2]]
)
def test_bad_attribute_values_fail(attributes):
    with pytest.raises(ValueError, match="attribute"):
        attribute_prompt_pairs(attributes)


def test_no_target_word_survives_the_filter():
    pairs = attribute_prompt_pairs(
        ["red", "blue", "green"], template="a {attribute} {} in a painting"
    ) + style_prompt_pairs(["photo", "sketch", "clip art", "painting"])
    kept = pairs_without_words(pairs, ["Painting", "clip_art"])
    assert kept == [("a photo of a {}.", "a sketch of a {}.")]
    prompts = [text for pair in expand_prompt_pairs(kept, ["dog"]) for text in pair]
    assert not any("painting" in text or "clip art" in text for text in prompts)
    # Whole words only: excluding "red" keeps "reddish" and drops "red".
    assert pair_names_any(("a red dog", "a blue dog"), ["red"])
    assert not pair_names_any(("a reddish dog", "a blue dog"), ["red"])
    assert pairs_without_words(pairs, []) == pairs


def test_attribute_pairs_reach_the_estimator_through_the_featurizer():
    from sklearn.pipeline import Pipeline

    from skcicm import CLIPFeaturizer, InvariantCausalMechanism
    from skcicm.datasets import make_toyworld

    world = make_toyworld(2, domains=["photo", "sketch"], classes=["star", "ring"])
    pairs = attribute_prompt_pairs(["red", "blue", "green"])
    featurizer = CLIPFeaturizer(
        "toyclip",
        pretrained=None,
        text_interventions=pairs,
        class_names=["star", "ring"],
        interventions=None,
        progress=False,
        num_workers=0,
    )
    pipe = Pipeline([("clip", featurizer), ("icm", InvariantCausalMechanism(lam=1.0))])
    pipe.fit(world.images, world.labels)
    icm = pipe.named_steps["icm"]
    assert icm.intervention_sources_ == ("intervention_pairs",)
    first, second = featurizer.text_intervention_pairs()
    assert first.shape[0] == len(pairs) * 2
    delta = (first - second).astype(np.float64)
    np.testing.assert_allclose(
        icm.intervention_covariance_, delta.T @ delta / len(delta), rtol=1e-5, atol=1e-7
    )
