"""ToyWorld with a shortcut: variant factors that predict the class in the source domains.

This is the Waterbirds / Colored-MNIST situation in ToyWorld. Each class owns a *shortcut
value*: a colour, a background pattern, a texture or a style, or a combination of them. In the
source domains a fraction ``rho`` of every (domain, class) cell carries its class's own value;
the rest carry another class's. In the target the relation is broken: each class carries the
value of another class (``"reassigned"``) or values spread evenly over all of them
(``"uncorrelated"``). A classifier that leans on the shortcut scores well on the sources and
fails on the target; one that reads the shape (the invariant factor) does not.

Each sample records its group, class x shortcut value, so that both average and worst-group
accuracy can be reported, as the spurious-correlation literature does.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real

import numpy as np
from sklearn.utils import Bunch

from skcicm.datasets.toyworld import (
    _MIN_CONTRAST,
    TOYWORLD_BACKGROUNDS,
    TOYWORLD_CLASSES,
    TOYWORLD_COLORS,
    TOYWORLD_DOMAINS,
    _check_image_size,
    _check_names,
    _draw_colors,
    _render_world,
    _sample_factors,
)

__all__ = ["SHORTCUT_RELATIONS", "make_toyworld_shortcut", "worst_group_accuracy"]

#: How the shortcut attribute relates to the class in the target domain of
#: :func:`make_toyworld_shortcut`: a different class-to-attribute map, or none at all.
SHORTCUT_RELATIONS: tuple[str, ...] = ("reassigned", "uncorrelated")
# Owned background colours keep a little more than the minimum contrast, so that the jitter of
# object and background colours (sd _JITTER per channel) rarely needs a redraw; a larger margin
# would make shapes easier to see than in make_toyworld and confound the shortcut's effect.
_BACKGROUND_MARGIN = 30.0
_JITTER = 12.0
_SHORTCUT_GROUPS = ("colors", "background", "texture", "style")


def _check_count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def _check_shortcut(shortcut: str | Sequence[str]) -> tuple[str, ...]:
    groups = (shortcut,) if isinstance(shortcut, str) else tuple(shortcut)
    unknown = [g for g in groups if g not in _SHORTCUT_GROUPS]
    if not groups or unknown or len(set(groups)) != len(groups):
        raise ValueError(
            f"shortcut must be a non-empty set of distinct factor groups from "
            f"{list(_SHORTCUT_GROUPS)}, got {shortcut!r}"
        )
    return groups


def _class_values(
    groups: tuple[str, ...], n_classes: int, sources: list[str], rng: np.random.Generator
) -> list[tuple]:
    """The shortcut value each class owns: one entry per group, in the order of ``groups``."""
    texture_seeds = rng.integers(2**31, size=n_classes, dtype=np.int64)
    colors = list(TOYWORLD_COLORS)
    owned = {
        "colors": [colors[k % len(colors)] for k in range(n_classes)],
        "background": [
            TOYWORLD_BACKGROUNDS[k % len(TOYWORLD_BACKGROUNDS)] for k in range(n_classes)
        ],
        "texture": [int(seed) for seed in texture_seeds],
        "style": [sources[k % len(sources)] for k in range(n_classes)],
    }
    return [tuple(owned[g][k] for g in groups) for k in range(n_classes)]


def _owned_backgrounds(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A background colour per object colour name, far enough from it to keep the shape visible
    after both are jittered."""
    owned = {}
    for name, rgb in TOYWORLD_COLORS.items():
        background = rng.uniform(0, 255, 3)
        while np.linalg.norm(background - rgb) < _MIN_CONTRAST + _BACKGROUND_MARGIN:
            background = rng.uniform(0, 255, 3)
        owned[name] = background
    return owned


def _shortcut_colors(
    rng: np.random.Generator, names: np.ndarray, owned: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Object colour ``names`` with the background colour each name owns, both jittered."""
    names, object_rgb, _ = _draw_colors(rng, len(names), chosen=names)
    base = np.array([owned[name] for name in names]).reshape(len(names), 3)
    background = np.clip(base + rng.normal(0, _JITTER, base.shape), 0, 255)
    for _ in range(100):
        bad = np.linalg.norm(background - object_rgb, axis=1) < _MIN_CONTRAST
        if not bad.any():
            break
        background[bad] = np.clip(base[bad] + rng.normal(0, _JITTER, (bad.sum(), 3)), 0, 255)
    return names, object_rgb, background.round().astype(np.uint8)


def _reassignment(per_class: list[tuple]) -> list[int]:
    """For each class, the next class (cyclically) whose value differs in every group."""
    n = len(per_class)
    result = []
    for k, own in enumerate(per_class):
        for step in range(1, n):
            other = per_class[(k + step) % n]
            if all(a != b for a, b in zip(own, other, strict=True)):
                result.append((k + step) % n)
                break
        else:
            raise ValueError(
                f"no other class owns a shortcut value that differs from class {k}'s in every "
                "group, so the target cannot reassign it; use more classes or source domains"
            )
    return result


def _source_values(
    rng: np.random.Generator, owner: np.ndarray, n_values: int, n_cell: int, rho: float
) -> np.ndarray:
    """Shortcut value indices of one source cell: exactly floor(rho * n + 1/2) own values."""
    n_aligned = int(np.floor(rho * n_cell + 0.5))
    others = [v for v in range(n_values) if v != owner]
    values = np.concatenate(
        [np.full(n_aligned, owner), rng.choice(others, size=n_cell - n_aligned)]
    )
    return rng.permutation(values).astype(np.int64)


def _target_values(
    rng: np.random.Generator,
    reassigned: list[int] | None,
    k: int,
    owner: np.ndarray,
    n_values: int,
    n_cell: int,
) -> np.ndarray:
    if reassigned is not None:
        return np.full(n_cell, owner[reassigned[k]], dtype=np.int64)
    # As even as the cell size allows, from a random starting value.
    return rng.permutation((np.arange(n_cell) + rng.integers(n_values)) % n_values)


def make_toyworld_shortcut(
    n_per_cell: int = 20,
    *,
    domains: Sequence[str] | None = None,
    target_domain: str | None = None,
    shortcut: str | Sequence[str] = "style",
    rho: float = 0.95,
    target: str = "reassigned",
    n_target_per_cell: int | None = None,
    classes: Sequence[str] | None = None,
    image_size: int = 32,
    random_state: int | np.random.Generator | None = 0,
) -> Bunch:
    """Generate a ToyWorld data set whose variant factors are a shortcut to the class.

    Class ``k`` (in the order of ``classes``) owns the ``k``-th object colour of
    :data:`TOYWORLD_COLORS` with a background colour drawn per world, the background pattern
    ``TOYWORLD_BACKGROUNDS[k % 5]``, a texture seed drawn per world and the source style
    ``domains[k % len(domains)]``; ``shortcut`` chooses which of these the class's samples
    carry. Several classes can own the same value of
    a group (ten classes share five backgrounds), so the shortcut values are the distinct
    combinations the classes own. In every (domain, class) cell of the sources exactly
    ``floor(rho * n_per_cell + 1/2)`` samples carry their class's own value and the others a
    uniformly drawn different one. In the target, class ``k`` carries the value of the next class
    (``k + 1``, cyclically) whose value differs from its own in every shortcut group
    (``"reassigned"``), or all values equally often (``"uncorrelated"``). Every other factor is
    drawn as in :func:`make_toyworld`, so :func:`render_counterfactuals` re-renders any sample
    with its shortcut factors changed.

    Parameters
    ----------
    n_per_cell : int, default=20
        Source images per (class, source domain) cell.
    domains : sequence of str, optional
        Source styles; default all of :data:`TOYWORLD_DOMAINS` except ``target_domain``.
    target_domain : str or None, default=None
        Style of the target images. None renders the target in the source styles, so that it
        differs from the sources in the shortcut relation only. Must be None when ``"style"``
        is a shortcut group, as the target's style then follows the relation.
    shortcut : str or sequence of str, default="style"
        Factor groups that correlate with the class: any of ``"colors"`` (the object colour
        and the background colour that goes with it, both jittered per sample),
        ``"background"`` (pattern), ``"texture"`` and ``"style"``. The default is the one the
        shipped ToyCLIP's linear probe takes: its training captions name the style, so the
        style is a direction of its embedding space as plain as the shape; colours and
        backgrounds barely move its probe (docs/results.md, "Calibrating the shortcut").
    rho : float, default=0.95
        Fraction of each source cell that carries its class's own shortcut value, in [0, 1].
        ``1 / len(shortcut_names)`` draws the values independently of the class: a control
        world without the shortcut.
    target : {"reassigned", "uncorrelated"}, default="reassigned"
        Relation between class and shortcut value in the target.
    n_target_per_cell : int, optional
        Target images per (class, target style) cell; default ``n_per_cell``.
    classes : sequence of str, optional
        Shapes, a subset of :data:`TOYWORLD_CLASSES` with at least two (default: all).
    image_size : int, default=32
        Height and width of the images in pixels.
    random_state : int, numpy Generator or None, default=0
        Seed; the same seed gives the same world.

    Returns
    -------
    sklearn.utils.Bunch
        The fields of :func:`make_toyworld` (``images``, ``labels``, ``domains``,
        ``class_names``, ``captions``, ``factors``, ``image_size``), with ``domain_names``
        holding the *source* styles only, so that counterfactual style changes never render
        the target style; the sources come first, then the target. In addition:
        ``is_target`` (bool, (n,)); ``shortcut_labels`` (int, (n,)): index of the sample's
        shortcut value in ``shortcut_names`` (e.g. ``"red+stripes"``); ``class_shortcuts``
        (int, (n_classes,)): the value each class owns; ``aligned`` (bool, (n,)): the sample
        carries its class's own value; ``groups`` (int, (n,)): ``label * len(shortcut_names)
        + shortcut_label``; and the parameters ``target_domain``, ``shortcut``, ``rho``,
        ``target``.

    Raises
    ------
    ValueError
        Naming the parameter, for a ``rho`` outside [0, 1], an unknown group, domain, class or
        relation, a target domain that is also a source, or a style shortcut with a target
        domain or fewer than two source styles.

    Examples
    --------
    >>> from skcicm.datasets import make_toyworld_shortcut
    >>> world = make_toyworld_shortcut(
    ...     10, domains=["photo", "sketch"], classes=["star", "ring"], shortcut="colors", rho=0.9
    ... )
    >>> world.shortcut_names, world.class_shortcuts
    (['red', 'orange'], array([0, 1]))
    >>> float(world.aligned[~world.is_target].mean()), float(world.aligned[world.is_target].mean())
    (0.9, 0.0)
    """
    n_per_cell = _check_count(n_per_cell, "n_per_cell")
    n_target = n_per_cell if n_target_per_cell is None else n_target_per_cell
    n_target = _check_count(n_target, "n_target_per_cell")
    groups = _check_shortcut(shortcut)
    if isinstance(rho, bool) or not isinstance(rho, Real) or not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho must be a number in [0, 1], got {rho!r}")
    if target not in SHORTCUT_RELATIONS:
        raise ValueError(f"target must be one of {list(SHORTCUT_RELATIONS)}, got {target!r}")
    if target_domain is not None:
        _check_names([target_domain], TOYWORLD_DOMAINS, "target_domain")
    default_sources = [d for d in TOYWORLD_DOMAINS if d != target_domain]
    sources = _check_names(
        default_sources if domains is None else domains, TOYWORLD_DOMAINS, "domain"
    )
    if target_domain in sources:
        raise ValueError(
            f"target_domain {target_domain!r} is also a source domain; leave it out of domains "
            "or pass target_domain=None for a target in the source styles"
        )
    if "style" in groups and target_domain is not None:
        raise ValueError(
            "a style shortcut decides the target's style by the relation; pass target_domain=None"
        )
    if "style" in groups and len(sources) < 2:
        raise ValueError("a style shortcut needs at least two source domains")
    class_names = _check_names(classes, TOYWORLD_CLASSES, "class")
    if len(class_names) < 2:
        raise ValueError("a shortcut needs at least two classes")
    image_size = _check_image_size(image_size)
    rng = np.random.default_rng(random_state)

    per_class = _class_values(groups, len(class_names), sources, rng)
    owned_backgrounds = _owned_backgrounds(rng)
    values = sorted(set(per_class), key=per_class.index)
    owner = np.array([values.index(v) for v in per_class], dtype=np.int64)
    if len(values) < 2:
        raise ValueError(f"the shortcut {groups} takes a single value; it predicts nothing")
    reassigned = _reassignment(per_class) if target == "reassigned" else None
    target_styles = sources if target_domain is None else [target_domain]

    labels, styles, shortcut_labels, is_target = [], [], [], []
    for cells, n_cell, in_target in ((sources, n_per_cell, False), (target_styles, n_target, True)):
        for style in cells:
            for k in range(len(class_names)):
                if in_target:
                    chosen = _target_values(rng, reassigned, k, owner, len(values), n_cell)
                else:
                    chosen = _source_values(rng, owner[k], len(values), n_cell, rho)
                labels.append(np.full(n_cell, k, dtype=np.int64))
                styles.append(np.full(n_cell, style, dtype=object))
                shortcut_labels.append(chosen)
                is_target.append(np.full(n_cell, in_target))
    labels, styles = np.concatenate(labels), np.concatenate(styles)
    shortcut_labels, is_target = np.concatenate(shortcut_labels), np.concatenate(is_target)

    factors = _sample_factors(rng, np.array(class_names, dtype=object)[labels], styles)
    carried = [values[v] for v in shortcut_labels]
    for position, group in enumerate(groups):
        value = np.array([c[position] for c in carried], dtype=object)
        if group == "colors":
            factors["color"], factors["object_rgb"], factors["background_rgb"] = _shortcut_colors(
                rng, value, owned_backgrounds
            )
        elif group == "background":
            factors["background"] = value
        elif group == "texture":
            factors["texture_seed"] = value.astype(np.int64)
        else:
            factors["style"] = value

    return _render_world(
        factors,
        labels,
        class_names,
        sources,
        image_size,
        is_target=is_target,
        groups=labels * len(values) + shortcut_labels,
        shortcut_labels=shortcut_labels,
        shortcut_names=["+".join(str(part) for part in value) for value in values],
        class_shortcuts=owner,
        aligned=shortcut_labels == owner[labels],
        target_domain=target_domain,
        shortcut=groups,
        rho=float(rho),
        target=target,
    )


def worst_group_accuracy(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray) -> float:
    """The lowest accuracy over the groups present (``groups`` of :func:`make_toyworld_shortcut`).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_pred : array-like of shape (n_samples,)
        Predicted labels.
    groups : array-like of shape (n_samples,)
        Group of each sample.

    Returns
    -------
    float
        The accuracy of the group where the predictions are worst.

    Raises
    ------
    ValueError
        When the three arrays are empty, not 1-d or of different lengths.

    Examples
    --------
    >>> worst_group_accuracy([0, 0, 1, 1], [0, 1, 1, 1], groups=[0, 0, 1, 1])
    0.5
    """
    y_true, y_pred, groups = (np.asarray(a) for a in (y_true, y_pred, groups))
    if not y_true.shape == y_pred.shape == groups.shape or y_true.ndim != 1 or not y_true.size:
        raise ValueError(
            "y_true, y_pred and groups must be non-empty 1-d arrays of one length; got shapes "
            f"{y_true.shape}, {y_pred.shape} and {groups.shape}"
        )
    correct = y_true == y_pred
    return float(min(correct[groups == g].mean() for g in np.unique(groups)))
