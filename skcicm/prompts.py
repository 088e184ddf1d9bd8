"""Text interventions: prompt pairs that differ only in a variant word (style, domain, colour).

Pure Python with no torch import, so that the evaluation and model-selection layers can build
and filter prompt pairs without loading the deep-learning stack.
"""

from __future__ import annotations

from collections.abc import Sequence


def expand_prompt_pairs(
    pairs: Sequence[tuple[str, str]], class_names: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """Expand template pairs such as ``("a photo of a {}.", "a sketch of a {}.")`` per class.

    Pairs without ``{}`` are literal captions and are used once.

    Examples
    --------
    >>> expand_prompt_pairs([("a photo of a {}.", "a sketch of a {}.")], ["dog", "cat"])
    (['a photo of a dog.', 'a photo of a cat.'], ['a sketch of a dog.', 'a sketch of a cat.'])
    """
    first: list[str] = []
    second: list[str] = []
    for pair in pairs:
        if len(pair) != 2 or not all(isinstance(text, str) for text in pair):
            raise ValueError(f"Each text intervention must be a pair of strings; got {pair!r}.")
        template_a, template_b = pair
        if "{}" in template_a or "{}" in template_b:
            if not class_names:
                raise ValueError(
                    f"Text intervention {pair!r} has a '{{}}' placeholder for the class name, "
                    "but no class_names were given."
                )
            first.extend(template_a.format(name) for name in class_names)
            second.extend(template_b.format(name) for name in class_names)
        else:
            first.append(template_a)
            second.append(template_b)
    return first, second


def style_prompt_pairs(
    styles: Sequence[str], template: str = "a {style} of a {{}}."
) -> list[tuple[str, str]]:
    """All pairs of prompts that differ only in the style word, for :class:`CLIPFeaturizer`.

    Examples
    --------
    >>> style_prompt_pairs(["photo", "sketch", "cartoon"])
    [('a photo of a {}.', 'a sketch of a {}.'), ('a photo of a {}.', 'a cartoon of a {}.'), \
('a sketch of a {}.', 'a cartoon of a {}.')]
    """
    prompts = [template.format(style=style) for style in styles]
    return [
        (prompts[i], prompts[j]) for i in range(len(prompts)) for j in range(i + 1, len(prompts))
    ]


# Style words of the domain prompt pairs when a dataset's domains have no usable names.
GENERIC_STYLES: tuple[str, ...] = ("photo", "sketch", "painting", "cartoon", "rendering")


def domain_prompt_pairs(
    domain_names: Sequence[str], template: str = "a {style} of a {{}}."
) -> list[tuple[str, str]]:
    """Style prompt pairs over the names of a dataset's domains, for text interventions.

    Underscores become spaces (``"art_painting"`` -> ``"art painting"``), so that the pairs
    naming a target domain can be recognised and left out of its fit. With fewer than two
    domains, :data:`GENERIC_STYLES` stand in.

    Examples
    --------
    >>> domain_prompt_pairs(["photo", "clip_art"])
    [('a photo of a {}.', 'a clip art of a {}.')]
    >>> len(domain_prompt_pairs(["only"]))
    10
    """
    styles = [str(d).replace("_", " ") for d in domain_names]
    if len(styles) < 2:
        styles = list(GENERIC_STYLES)
    return style_prompt_pairs(styles, template)
