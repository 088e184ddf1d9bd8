"""Prompt templates and style pairs: braces in names, templates checked before use."""

import pytest

from skcicm.prompts import check_class_template, domain_prompt_pairs, expand_prompt_pairs


def test_braces_in_domain_names_are_text_not_slots():
    pairs = domain_prompt_pairs(["ph{o}to", "sketch"])
    first, second = expand_prompt_pairs(pairs, ["dog"])
    assert first == ["a ph{o}to of a dog."]
    assert second == ["a sketch of a dog."]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("a photo", "it has 0"),
        ("{} {}", "it has 2"),
        ("a {x} of {}", "no brace besides"),
        ("a {0} of {}", "no brace besides"),
        ("a }{ of {}", "no brace besides"),
    ],
)
def test_bad_class_templates_are_named(template, message):
    with pytest.raises(ValueError, match="template") as error:
        check_class_template(template)
    assert message in str(error.value) and repr(template) in str(error.value)
