"""Zero-shot templates and class names are checked in the library, before any image is encoded."""

import numpy as np
import pytest

from skcicm import CLIPFeaturizer
from skcicm.prompts import check_class_templates, class_prompt_names


def _featurizer(name, **params):
    params.setdefault("progress", False)
    params.setdefault("interventions", None)
    return CLIPFeaturizer(name, **params)


@pytest.mark.parametrize(
    "templates, error, message",
    [
        (["a photo"], ValueError, r"templates\[0\]: template 'a photo' needs exactly one"),
        (["a {} and a {}"], ValueError, r"templates\[0\]: .* it has 2"),
        (["a {}.", "a {name}."], ValueError, r"templates\[1\]: .* it has 0"),
        (["a {} }"], ValueError, r"templates\[0\]: .* no brace besides"),
        (["a {}", None], ValueError, r"templates\[1\]: template must be a string"),
        ([], ValueError, "templates is empty"),
        ("a photo of a {}.", TypeError, "not the single string"),
    ],
)
def test_bad_templates_fail_before_any_image_is_encoded(
    tiny_clip_name, domain_images, encoded_count, templates, error, message
):
    images = list(domain_images[0][:2])
    featurizer = _featurizer(tiny_clip_name, class_names=["a", "b"], templates=templates)
    if isinstance(templates, str):  # the parameter's own type check refuses it in fit
        with pytest.raises(error, match=message):
            featurizer.class_embeddings(templates=templates)
        return
    with pytest.raises(error, match=message):
        featurizer.fit_transform(images)
    with pytest.raises(error, match=message):
        _featurizer(tiny_clip_name, class_names=["a", "b"]).class_embeddings(templates=templates)
    assert encoded_count["images"] == 0


@pytest.mark.parametrize(
    "class_names, error, message",
    [
        (["dog", "cat", "dog"], ValueError, r"class_names\[2\] \('dog'\) is written 'dog'"),
        (["tv_monitor", "tv monitor"], ValueError, r"class_names\[1\] .* as class_names\[0\]"),
        (["", " "], ValueError, r"class_names\[0\] is '': a blank class name"),
        (["dog", None], TypeError, r"class_names\[1\] is None; class names must be strings"),
        ({0: "dog", 1: None}, TypeError, r"class_names\[1\] is None"),
        ([], ValueError, "class_names is empty"),
    ],
)
def test_bad_class_names_fail_before_any_image_is_encoded(
    tiny_clip_name, domain_images, encoded_count, class_names, error, message
):
    featurizer = _featurizer(tiny_clip_name, class_names=class_names)
    with pytest.raises(error, match=message):
        featurizer.fit_transform(list(domain_images[0][:2]))
    with pytest.raises(error, match=message):
        featurizer.fit(None)
    assert encoded_count["images"] == 0


def test_names_the_tokenizer_cannot_tell_apart_are_refused(tiny_clip_name, encoded_count):
    # The tiny model's tokenizer reads 16 tokens: these prompts differ only after them.
    long = "very " * 20
    featurizer = _featurizer(tiny_clip_name)
    with pytest.raises(ValueError, match=r"give the same tokens .* at most 16 tokens"):
        featurizer.class_embeddings([long + "dog", long + "cat"])
    with pytest.raises(ValueError, match=r"'Dog' and 'dog' give the same tokens"):
        featurizer.class_embeddings(["Dog", "dog"])
    assert featurizer.class_embeddings(["dog", "cat"]).shape == (2, 32)


def test_underscores_in_class_names_are_spaces_in_prompts(tiny_clip_name):
    featurizer = _featurizer(tiny_clip_name, templates=["a photo of a {}.", "art of a {}"])
    spaced = featurizer.encode_text(
        ["a photo of a tv monitor.", "art of a tv monitor", "a photo of a dog.", "art of a dog"]
    )
    expected = spaced.reshape(2, 2, -1).mean(axis=1)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(
        featurizer.class_embeddings(["tv_monitor", "dog"]), expected, atol=1e-6
    )
    pairs = _featurizer(
        tiny_clip_name, text_interventions=[("a photo of a {}.", "art of a {}")]
    ).text_intervention_pairs(["tv_monitor"])
    np.testing.assert_allclose(pairs[0], spaced[:1], atol=1e-6)
    np.testing.assert_allclose(pairs[1], spaced[1:2], atol=1e-6)


def test_prompt_checks_are_plain_functions_for_the_cli():
    assert class_prompt_names(("tv_monitor", "dog")) == ["tv monitor", "dog"]
    assert check_class_templates(("a {}.",)) == ["a {}."]
    with pytest.raises(TypeError, match="class_names must be a list of class names"):
        class_prompt_names("dog")


def test_embedding_a_data_set_checks_its_prompts_before_its_images(
    tiny_clip_name, domain_images, encoded_count
):
    from sklearn.utils import Bunch

    from skcicm.evaluation.embedded import embed_dataset

    images, labels, domains = domain_images
    dataset = Bunch(
        images=list(images[:6]),
        labels=labels[:6] % 2,
        domains=domains[:6],
        class_names=["dog", "dog"],
        domain_names=["red"],
        name="tiny",
    )
    with pytest.raises(ValueError, match=r"class_names\[1\] \('dog'\) is written 'dog'"):
        embed_dataset(_featurizer(tiny_clip_name), dataset, interventions=())
    assert encoded_count["images"] == 0
