"""The shortcut generator: correlation strength in sources and target, groups, counterfactuals."""

import numpy as np
import pytest

from skcicm.datasets import (
    TOYWORLD_BACKGROUNDS,
    TOYWORLD_COLORS,
    make_toyworld_shortcut,
    render_counterfactuals,
    render_toyworld,
    worst_group_accuracy,
)

CLASSES = ["circle", "square", "triangle", "star", "cross", "heart"]
SMALL = dict(domains=["photo", "sketch"], target_domain="painting", classes=CLASSES, image_size=16)


def _cells(world, mask):
    for domain in np.unique(world.domains[mask]):
        for label in range(len(world.class_names)):
            yield mask & (world.domains == domain) & (world.labels == label)


@pytest.mark.parametrize("rho", [0.5, 0.8, 0.95, 1.0])
def test_source_correlation_matches_rho_in_every_cell(rho):
    world = make_toyworld_shortcut(20, shortcut="colors", rho=rho, **SMALL)
    source = ~world.is_target
    own_color = np.array(list(TOYWORLD_COLORS))[world.labels]
    for cell in _cells(world, source):
        assert cell.sum() == 20
        # Measured on the rendered factor, not on the generator's own bookkeeping.
        assert np.mean(world.factors["color"][cell] == own_color[cell]) == pytest.approx(
            np.floor(rho * 20 + 0.5) / 20
        )
    assert abs(np.mean(world.aligned[source]) - rho) <= 0.5 / 20


def test_reassigned_target_carries_another_classes_values_in_every_group():
    # Five classes own five distinct backgrounds, so class k takes class k + 1's values.
    world = make_toyworld_shortcut(
        10, shortcut=["colors", "background"], **{**SMALL, "classes": CLASSES[:5]}
    )
    target = world.is_target
    assert set(world.domains[target]) == {"painting"}
    assert not world.aligned[target].any()
    colors = np.array(list(TOYWORLD_COLORS))
    backgrounds = np.array(TOYWORLD_BACKGROUNDS)
    labels = world.labels[target]
    assert np.all(world.factors["color"][target] == colors[(labels + 1) % 5])
    assert np.all(world.factors["background"][target] == backgrounds[(labels + 1) % 5])
    # One group per class: the relation is a fixed reassignment.
    assert len(np.unique(world.groups[target])) == 5


def test_reassignment_skips_classes_that_share_a_value():
    # Six classes share five backgrounds: class 5 owns class 0's, so it must skip to class 1.
    world = make_toyworld_shortcut(4, shortcut="background", **SMALL)
    target = world.is_target
    own = np.array(TOYWORLD_BACKGROUNDS)[world.labels[target] % 5]
    assert np.all(world.factors["background"][target] != own)
    assert len(world.shortcut_names) == 5


def test_uncorrelated_target_spreads_values_evenly():
    world = make_toyworld_shortcut(12, shortcut="colors", target="uncorrelated", **SMALL)
    target = world.is_target
    for cell in _cells(world, target):
        counts = np.bincount(world.shortcut_labels[cell], minlength=len(CLASSES))
        assert counts.tolist() == [2] * len(CLASSES)
    assert np.mean(world.aligned[target]) == pytest.approx(1 / len(CLASSES))


def test_group_labels_name_class_and_carried_values():
    world = make_toyworld_shortcut(5, shortcut=["colors", "background"], **SMALL)
    n_values = len(world.shortcut_names)
    np.testing.assert_array_equal(world.groups // n_values, world.labels)
    np.testing.assert_array_equal(world.groups % n_values, world.shortcut_labels)
    carried = [
        f"{c}+{b}" for c, b in zip(world.factors["color"], world.factors["background"], strict=True)
    ]
    assert carried == [world.shortcut_names[v] for v in world.shortcut_labels]
    np.testing.assert_array_equal(
        world.aligned, world.shortcut_labels == world.class_shortcuts[world.labels]
    )


def test_images_are_the_rendered_factors_and_the_seed_reproduces_them():
    a = make_toyworld_shortcut(3, shortcut=["colors", "texture"], random_state=7, **SMALL)
    b = make_toyworld_shortcut(3, shortcut=["colors", "texture"], random_state=7, **SMALL)
    c = make_toyworld_shortcut(3, shortcut=["colors", "texture"], random_state=8, **SMALL)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.groups, b.groups)
    assert not np.array_equal(a.images, c.images)
    np.testing.assert_array_equal(render_toyworld(a.factors, image_size=16), a.images)
    # Aligned samples of one class share the class's texture seed.
    aligned = a.aligned & (a.labels == 2)
    assert len(np.unique(a.factors["texture_seed"][aligned])) == 1


def test_style_shortcut_targets_the_source_styles():
    world = make_toyworld_shortcut(
        20,
        shortcut="style",
        target_domain=None,
        domains=["photo", "sketch", "cartoon"],
        classes=CLASSES,
        image_size=16,
    )
    source = ~world.is_target
    own = np.array(world.domain_names)[world.labels % 3]
    assert np.mean(world.domains[source] == own[source]) == pytest.approx(0.95, abs=0.025)
    assert set(world.domains[world.is_target]) <= set(world.domain_names)
    assert not np.any(world.domains[world.is_target] == own[world.is_target])


def test_default_world_puts_each_class_in_its_own_style_at_rho_and_the_target_in_another():
    world = make_toyworld_shortcut(20, image_size=16)
    source, target = ~world.is_target, world.is_target
    assert world.shortcut == ("style",) and world.target_domain is None
    # Read off the rendered style, against the class's style in the documented order.
    own = np.array(world.domain_names)[world.labels % len(world.domain_names)]
    carries_own = world.domains == own
    # 1200 source images: the aligned fraction is rho within three binomial standard errors.
    tolerance = 3 * np.sqrt(world.rho * (1 - world.rho) / source.sum())
    assert abs(carries_own[source].mean() - world.rho) < tolerance
    assert world.rho == 0.95
    assert not carries_own[target].any()
    # Every class of the target carries one other class's style.
    for label in range(len(world.class_names)):
        assert len(set(world.domains[target & (world.labels == label)])) == 1


def test_rho_one_over_the_number_of_values_is_a_world_without_the_shortcut():
    from scipy.stats import chi2_contingency

    world = make_toyworld_shortcut(
        36,
        shortcut="style",
        classes=CLASSES,
        domains=["photo", "sketch", "cartoon"],
        rho=1 / 3,
        image_size=16,
    )
    source = ~world.is_target
    table = np.zeros((len(CLASSES), 3))
    np.add.at(table, (world.labels[source], world.shortcut_labels[source]), 1)
    # Each class carries its own style in exactly one in three images ...
    np.testing.assert_array_equal(table[np.arange(6), world.class_shortcuts], 36)
    # ... and the other styles as a uniform draw: no association left between class and style.
    assert chi2_contingency(table).pvalue > 0.001
    strong = make_toyworld_shortcut(
        36,
        shortcut="style",
        classes=CLASSES,
        domains=["photo", "sketch", "cartoon"],
        image_size=16,
    )
    strong_table = np.zeros((len(CLASSES), 3))
    np.add.at(
        strong_table,
        (strong.labels[~strong.is_target], strong.shortcut_labels[~strong.is_target]),
        1,
    )
    assert chi2_contingency(strong_table).pvalue < 1e-10


def test_counterfactuals_change_the_shortcut_and_keep_the_instance():
    world = make_toyworld_shortcut(4, shortcut=["colors", "background"], **SMALL)
    source = np.flatnonzero(~world.is_target)
    twins, factors = render_counterfactuals(
        world, change=world.shortcut, indices=source, return_factors=True
    )
    assert twins.shape == world.images[source].shape
    np.testing.assert_array_equal(factors["rotation"], world.factors["rotation"][source])
    assert np.all(factors["color"] != world.factors["color"][source])
    assert np.all(factors["background"] != world.factors["background"][source])
    assert set(factors["style"]) <= set(world.domain_names)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (dict(rho=1.5), "rho must be a number in"),
        (dict(rho=True), "rho must be a number in"),
        (dict(shortcut="shape"), "shortcut must be a non-empty set"),
        (dict(shortcut=[]), "shortcut must be a non-empty set"),
        (dict(shortcut=["colors", "colors"]), "shortcut must be a non-empty set"),
        (dict(target="flipped"), "target must be one of"),
        (dict(domains=["photo", "painting"], target_domain="painting"), "is also a source"),
        (dict(target_domain="oil"), "unknown target_domain"),
        (dict(shortcut="style", target_domain="painting"), "pass target_domain=None"),
        (dict(shortcut="style", target_domain=None, domains=["photo"]), "at least two source"),
        (dict(classes=["star"]), "at least two classes"),
        (dict(n_per_cell=0), "n_per_cell must be an int >= 1"),
        (dict(n_target_per_cell=2.5), "n_target_per_cell must be an int >= 1"),
        (dict(image_size=8), "image_size must be at least"),
    ],
)
def test_bad_parameters_fail_with_a_clear_error(params, message):
    with pytest.raises(ValueError, match=message):
        make_toyworld_shortcut(**{"n_per_cell": 2, "classes": CLASSES[:3], **params})


def test_worst_group_accuracy_by_hand():
    y_true = [0, 0, 0, 1, 1, 1, 1]
    y_pred = [0, 0, 1, 1, 1, 0, 0]
    groups = [0, 0, 0, 1, 1, 2, 2]
    # Group accuracies: 2/3, 2/2, 0/2.
    assert worst_group_accuracy(y_true, y_pred, groups) == 0.0
    assert worst_group_accuracy(y_true[:5], y_pred[:5], groups[:5]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="one length"):
        worst_group_accuracy([0, 1], [0], [0, 0])


def test_colour_shortcut_carries_the_background_colour_and_keeps_the_shape_visible():
    world = make_toyworld_shortcut(10, shortcut="colors", **SMALL)
    background = world.factors["background_rgb"].astype(float)
    aligned = world.aligned & (world.labels == 1)
    # The class's own background colour, jittered (sd 12 per channel), not drawn uniformly.
    assert background[aligned].std(axis=0).max() < 25
    assert background[~world.is_target].std(axis=0).min() > 40
    contrast = np.linalg.norm(world.factors["object_rgb"].astype(float) - background, axis=1)
    assert contrast.min() > 110
