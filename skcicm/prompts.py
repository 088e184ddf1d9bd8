"""Text interventions: prompt pairs that differ only in a variant word (style, domain, colour).

Pure Python with no torch import, so that the evaluation and model-selection layers can build
and filter prompt pairs without loading the deep-learning stack.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from string import Formatter


def expand_prompt_pairs(
    pairs: Sequence[tuple[str, str]], class_names: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """Expand template pairs such as ``("a photo of a {}.", "a sketch of a {}.")`` per class.

    Pairs without ``{}`` are literal captions and are used once.

    Parameters
    ----------
    pairs : sequence of (str, str)
        Prompt pairs; a ``{}`` in either prompt is filled with each class name.
    class_names : sequence of str or None
        Class names for the ``{}`` slots; may be None when no pair has a slot.

    Returns
    -------
    first, second : list of str
        The first and the second prompt of every expanded pair, row-aligned: per template
        pair, one prompt per class, in the order of ``class_names``.

    Raises
    ------
    ValueError
        When an element of ``pairs`` is not a pair of strings, or a pair has ``{}`` and
        ``class_names`` is empty or None.

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


def check_class_template(template: str) -> str:
    """Fail unless ``template`` holds exactly one ``{}`` slot for the class name and no other brace.

    A template without the slot gives every class the same prompt, so zero-shot falls to chance
    without any error; other braces break ``str.format`` later, far from the option that caused
    them.

    Parameters
    ----------
    template : str
        A zero-shot prompt template such as ``"a photo of a {}."``.

    Returns
    -------
    template : str
        The template, unchanged.

    Raises
    ------
    ValueError
        Naming the template and what is wrong with it.

    Examples
    --------
    >>> check_class_template("a photo of a {}.")
    'a photo of a {}.'
    >>> check_class_template("a photo")
    Traceback (most recent call last):
    ...
    ValueError: template 'a photo' needs exactly one '{}' for the class name; it has 0.
    """
    if not isinstance(template, str):
        raise ValueError(f"template must be a string; got {template!r}.")
    slots = template.count("{}")
    if slots != 1:
        raise ValueError(
            f"template {template!r} needs exactly one '{{}}' for the class name; it has {slots}."
        )
    if template.replace("{}", "").count("{") or template.replace("{}", "").count("}"):
        raise ValueError(
            f"template {template!r} may hold no brace besides the '{{}}' of the class name."
        )
    return template


def check_class_templates(templates: Sequence[str], parameter: str = "templates") -> list[str]:
    """Check a list of zero-shot templates, each with :func:`check_class_template`.

    Parameters
    ----------
    templates : sequence of str
        Prompt templates such as ``["a photo of a {}.", "a sketch of a {}."]``.
    parameter : str, default="templates"
        The parameter's name, for messages.

    Returns
    -------
    list of str
        The templates, unchanged.

    Raises
    ------
    TypeError
        For a bare string, which would otherwise be taken a character at a time.
    ValueError
        For an empty list, or naming the first bad template and what is wrong with it.

    Examples
    --------
    >>> check_class_templates(["a photo of a {}.", "a {} in a sketch."])
    ['a photo of a {}.', 'a {} in a sketch.']
    >>> check_class_templates("a photo of a {}.")
    Traceback (most recent call last):
    ...
    TypeError: templates must be a list of templates, not the single string 'a photo of a {}.'.
    """
    if isinstance(templates, str):
        raise TypeError(
            f"{parameter} must be a list of templates, not the single string {templates!r}."
        )
    templates = list(templates)
    if not templates:
        raise ValueError(f"{parameter} is empty; give at least one template, or None.")
    for index, template in enumerate(templates):
        try:
            check_class_template(template)
        except ValueError as error:
            raise ValueError(f"{parameter}[{index}]: {error}") from None
    return templates


def class_prompt_names(class_names: Sequence[str], parameter: str = "class_names") -> list[str]:
    """Class names as prompts write them, underscores as spaces, as the DomainBed loader does.

    Parameters
    ----------
    class_names : sequence of str
        Class names, e.g. folder names such as ``"tv_monitor"``.
    parameter : str, default="class_names"
        The parameter's name, for messages.

    Returns
    -------
    list of str
        The names with each ``_`` replaced by a space.

    Raises
    ------
    TypeError
        For a bare string, or a name that is not a string (``None`` among them).
    ValueError
        For no names, an empty or blank name, or two names that prompts would write alike.

    Examples
    --------
    >>> class_prompt_names(["tv_monitor", "dog"])
    ['tv monitor', 'dog']
    >>> class_prompt_names(["dog", "dog"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: class_names[1] ('dog') is written 'dog' in prompts, as class_names[0] ... is; ...
    """
    if isinstance(class_names, str):
        raise TypeError(
            f"{parameter} must be a list of class names, not the single string {class_names!r}."
        )
    names = list(class_names)
    if not names:
        raise ValueError(f"{parameter} is empty; give one name per class.")
    written: dict[str, int] = {}
    for index, name in enumerate(names):
        if not isinstance(name, str):
            raise TypeError(f"{parameter}[{index}] is {name!r}; class names must be strings.")
        prompt_name = name.replace("_", " ")
        if not prompt_name.strip():
            raise ValueError(
                f"{parameter}[{index}] is {name!r}: a blank class name gives a prompt that names "
                "no class."
            )
        if prompt_name in written:
            first = written[prompt_name]
            raise ValueError(
                f"{parameter}[{index}] ({name!r}) is written {prompt_name!r} in prompts, as "
                f"{parameter}[{first}] ({names[first]!r}) is; two classes with one prompt cannot "
                "be told apart."
            )
        written[prompt_name] = index
    return list(written)


def style_prompt_pairs(
    styles: Sequence[str], template: str = "a {style} of a {{}}."
) -> list[tuple[str, str]]:
    """All pairs of prompts that differ only in the style word, for :class:`~skcicm.CLIPFeaturizer`.

    Parameters
    ----------
    styles : sequence of str
        Style words such as ``"photo"`` or ``"sketch"``; braces in them are kept as text.
    template : str, default="a {style} of a {{}}."
        Prompt with the slot ``{style}``; ``{{}}`` becomes the ``{}`` slot of the class
        name, filled later by :func:`expand_prompt_pairs`.

    Returns
    -------
    list of (str, str)
        One pair per unordered pair of styles, in the order of ``styles``.

    Examples
    --------
    >>> style_prompt_pairs(["photo", "sketch", "cartoon"])
    [('a photo of a {}.', 'a sketch of a {}.'), ('a photo of a {}.', 'a cartoon of a {}.'), \
('a sketch of a {}.', 'a cartoon of a {}.')]
    """
    # A brace in a style name (a folder called "ph{o}to") is text, not a slot of the class name.
    prompts = [
        template.format(style=str(style).replace("{", "{{").replace("}", "}}")) for style in styles
    ]
    return [
        (prompts[i], prompts[j]) for i in range(len(prompts)) for j in range(i + 1, len(prompts))
    ]


_ATTRIBUTE_SLOT = "attribute"


def _check_attribute_template(template: str) -> None:
    """Fail unless ``template`` has one ``{attribute}``, at most one ``{}`` and no other brace."""
    if not isinstance(template, str):
        raise ValueError(f"template must be a string; got {template!r}.")
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in Formatter().parse(template)
            if name is not None
        ]
    except ValueError as error:
        raise ValueError(
            f"template {template!r} has a stray brace ({error}); it may hold only the slots "
            "'{attribute}' and '{}'."
        ) from None
    names = [name for name, _, _ in fields]
    if names.count(_ATTRIBUTE_SLOT) != 1:
        raise ValueError(
            f"template {template!r} must hold the slot '{{attribute}}' exactly once; it holds it "
            f"{names.count(_ATTRIBUTE_SLOT)} times."
        )
    stray = [name for name in names if name not in (_ATTRIBUTE_SLOT, "")]
    if stray or names.count("") > 1 or any(spec or conversion for _, spec, conversion in fields):
        raise ValueError(
            f"template {template!r} may hold only the slots '{{attribute}}' and one '{{}}' (for "
            "the class name), without format specs."
        )
    if "{{" in template or "}}" in template:
        raise ValueError(
            f"template {template!r} has an escaped brace; it may hold only the slots "
            "'{attribute}' and '{}'."
        )


def attribute_prompt_pairs(
    attributes: Sequence[str], template: str = "a photo of a {attribute} {}."
) -> list[tuple[str, str]]:
    """Pairs of prompts that differ only in an attribute word, for :class:`~skcicm.CLIPFeaturizer`.

    Any attribute vocabulary works: colours, backgrounds, weather, scanner makes. Each pair is a
    template pair with ``{}`` left for the class name, as ``text_interventions`` expects, so
    ``CLIPFeaturizer(text_interventions=attribute_prompt_pairs(...), class_names=...)`` hands
    the estimator one Delta per attribute pair and class.

    Parameters
    ----------
    attributes : sequence of str
        At least two distinct, non-empty attribute values without braces.
    template : str, default="a photo of a {attribute} {}."
        Prompt with the slot ``{attribute}`` exactly once and at most one ``{}`` for the class
        name; no other braces.

    Returns
    -------
    list of (str, str)
        One pair per unordered pair of attribute values, in the order of ``attributes``.

    Raises
    ------
    ValueError
        For a template without the attribute slot, with another slot or a stray brace, and for
        fewer than two, duplicate, empty or braced attribute values.

    Examples
    --------
    >>> attribute_prompt_pairs(["red", "blue", "green"])
    [('a photo of a red {}.', 'a photo of a blue {}.'), ('a photo of a red {}.', \
'a photo of a green {}.'), ('a photo of a blue {}.', 'a photo of a green {}.')]
    >>> attribute_prompt_pairs(["stripes", "dots"], template="a {} on a {attribute} background")
    [('a {} on a stripes background', 'a {} on a dots background')]
    """
    _check_attribute_template(template)
    values = [attributes] if isinstance(attributes, str) else list(attributes)
    for value in values:
        if not isinstance(value, str) or not value.strip() or "{" in value or "}" in value:
            raise ValueError(
                f"attribute values must be non-empty strings without braces; got {value!r}."
            )
    if len(values) < 2 or len(set(values)) != len(values):
        raise ValueError(
            f"attributes must hold at least two distinct values to contrast; got {values!r}."
        )
    slot = "{" + _ATTRIBUTE_SLOT + "}"
    prompts = [template.replace(slot, value) for value in values]
    return [
        (prompts[i], prompts[j]) for i in range(len(prompts)) for j in range(i + 1, len(prompts))
    ]


def pair_names_any(pair: tuple[str, str], words: Iterable[str]) -> bool:
    """Whether either prompt of ``pair`` names one of ``words``, as a whole word.

    Matching ignores case and reads underscores in ``words`` as spaces (``"clip_art"`` matches
    "a clip art of a dog").

    Parameters
    ----------
    pair : (str, str)
        A prompt pair.
    words : iterable of str
        Words to look for.

    Returns
    -------
    bool
        True when either prompt contains one of ``words`` as a whole word.

    Examples
    --------
    >>> pair_names_any(("a photo of a red dog", "a photo of a blue dog"), ["Blue"])
    True
    >>> pair_names_any(("a photo of a reddish dog", "a photo of a blue dog"), ["red"])
    False
    """
    patterns = [
        re.compile(rf"\b{re.escape(word.replace('_', ' '))}\b", re.IGNORECASE) for word in words
    ]
    return any(pattern.search(text) for pattern in patterns for text in pair)


def pairs_without_words(
    pairs: Sequence[tuple[str, str]], words: Iterable[str]
) -> list[tuple[str, str]]:
    """The prompt pairs that name none of ``words``: what a fit for a target may see.

    A prompt that names a target-domain value ("a painting of a dog", "a photo of a red dog"
    when red is the target's colour) carries the target into the fit, even as a word; source-only
    evaluation drops such pairs. Works on template pairs and on expanded prompts alike.

    Parameters
    ----------
    pairs : sequence of (str, str)
        Prompt pairs, e.g. from :func:`attribute_prompt_pairs` or :func:`style_prompt_pairs`.
    words : iterable of str
        Values to exclude, matched as in :func:`pair_names_any`.

    Returns
    -------
    list of (str, str)
        The pairs of ``pairs`` that name none of ``words``, in their order.

    Examples
    --------
    >>> pairs = style_prompt_pairs(["photo", "sketch", "painting"])
    >>> pairs_without_words(pairs, ["painting"])
    [('a photo of a {}.', 'a sketch of a {}.')]
    """
    words = [words] if isinstance(words, str) else list(words)
    return [pair for pair in pairs if not pair_names_any(pair, words)]


#: Style words of the domain prompt pairs when a dataset's domains have no usable names.
GENERIC_STYLES: tuple[str, ...] = ("photo", "sketch", "painting", "cartoon", "rendering")


def domain_prompt_pairs(
    domain_names: Sequence[str], template: str = "a {style} of a {{}}."
) -> list[tuple[str, str]]:
    """Style prompt pairs over the names of a dataset's domains, for text interventions.

    Underscores become spaces (``"art_painting"`` -> ``"art painting"``), so that the pairs
    naming a target domain can be recognised and left out of its fit. With fewer than two
    domains, ``GENERIC_STYLES`` stand in.

    Parameters
    ----------
    domain_names : sequence of str
        Names of the dataset's domains, e.g. ``["photo", "art_painting", "sketch"]``.
    template : str, default="a {style} of a {{}}."
        Prompt template, as in :func:`style_prompt_pairs`.

    Returns
    -------
    list of (str, str)
        One template pair per unordered pair of domains (or of generic styles).

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
