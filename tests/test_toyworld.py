"""Tests of the ToyWorld generator, its counterfactual renderer and the shipped ToyCLIP."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from skcicm.datasets import (
    TOYWORLD_CLASSES,
    TOYWORLD_DOMAINS,
    TOYWORLD_FACTOR_GROUPS,
    make_toyworld,
    render_counterfactuals,
    render_toyworld,
)

TOYCLIP_DIR = Path(__file__).resolve().parents[1] / "skcicm" / "weights" / "toyclip"
BULKY = ["circle", "square", "hexagon"]  # shapes with a large interior, for pixel checks


@pytest.fixture(scope="module")
def world():
    return make_toyworld(4, random_state=3)


def changed_fields(a: dict, b: dict) -> set:
    return {k for k in a if not np.array_equal(np.asarray(a[k]), np.asarray(b[k]))}


def interior(mask: np.ndarray, margin: int = 2) -> np.ndarray:
    """Pixels fully covered by the object and at least `margin` px away from its outline."""
    return ndimage.binary_erosion(mask >= 1.0, iterations=margin)


def test_shapes_dtypes_and_layout(world):
    n = len(TOYWORLD_DOMAINS) * len(TOYWORLD_CLASSES) * 4
    assert len(TOYWORLD_DOMAINS) >= 5 and len(TOYWORLD_CLASSES) >= 8
    assert world.images.shape == (n, 32, 32, 3) and world.images.dtype == np.uint8
    assert world.labels.shape == (n,) and world.labels.dtype == np.int64
    assert world.domains.shape == (n,) and len(world.captions) == n
    assert world.class_names == list(TOYWORLD_CLASSES)
    assert world.domain_names == list(TOYWORLD_DOMAINS)
    assert all(len(v) == n for v in world.factors.values())
    cells = {(d, c) for d, c in zip(world.domains, world.labels, strict=True)}
    assert len(cells) == len(TOYWORLD_DOMAINS) * len(TOYWORLD_CLASSES)
    for cap, dom, lab, col in zip(
        world.captions, world.domains, world.labels, world.factors["color"], strict=True
    ):
        assert cap.startswith(f"a {dom} of a") and cap.endswith(f"{col} {world.class_names[lab]}")
    # Images are not blank and differ across samples.
    assert world.images.std(axis=(1, 2, 3)).min() > 5
    assert len({im.tobytes() for im in world.images}) == n


def test_subsets_and_image_size():
    w = make_toyworld(2, domains=["neon", "photo"], classes=["ring", "star"], image_size=48)
    assert w.images.shape == (8, 48, 48, 3)
    assert w.class_names == ["ring", "star"] and w.domain_names == ["neon", "photo"]
    assert list(w.labels) == [0, 0, 1, 1, 0, 0, 1, 1]
    assert list(w.factors["shape"][:4]) == ["ring", "ring", "star", "star"]
    assert list(w.domains) == ["neon"] * 4 + ["photo"] * 4


def test_deterministic_given_seed():
    a = make_toyworld(2, random_state=7)
    b = make_toyworld(2, random_state=7)
    c = make_toyworld(2, random_state=8)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.captions == b.captions and not changed_fields(a.factors, b.factors)
    assert not np.array_equal(a.images, c.images)
    gen = np.random.default_rng(7)
    np.testing.assert_array_equal(make_toyworld(2, random_state=gen).images, a.images)


def test_factors_reproduce_images_exactly(world):
    np.testing.assert_array_equal(render_toyworld(world.factors), world.images)
    twins = render_counterfactuals(world, change="style", domain="cartoon", indices=[0])
    assert twins.shape == (1, 32, 32, 3)


def test_style_intervention(world):
    twins, f = render_counterfactuals(world, change=("style",), random_state=1, return_factors=True)
    assert changed_fields(world.factors, f) == {"style"}
    assert np.all(f["style"] != world.factors["style"])
    assert set(f["style"]) == set(TOYWORLD_DOMAINS)
    _, masks = render_toyworld(world.factors, return_masks=True)
    _, twin_masks = render_toyworld(f, return_masks=True)
    np.testing.assert_array_equal(masks, twin_masks)
    assert np.all(np.any(twins != world.images, axis=(1, 2, 3)))


def test_forced_domain_and_null_intervention():
    w = make_toyworld(3, domains=["sketch", "photo"], classes=BULKY, random_state=0)
    twins, f = render_counterfactuals(w, domain="mosaic", return_factors=True)
    assert set(f["style"]) == {"mosaic"}
    # Forcing every sample to its own style is an empty intervention: identical pixels.
    same = render_counterfactuals(w, domain="sketch", indices=np.flatnonzero(w.domains == "sketch"))
    np.testing.assert_array_equal(same, w.images[w.domains == "sketch"])


def test_color_intervention_keeps_silhouette():
    w = make_toyworld(4, domains=["cartoon"], classes=BULKY, random_state=5)
    twins, f = render_counterfactuals(w, change="colors", random_state=2, return_factors=True)
    assert changed_fields(w.factors, f) == set(TOYWORLD_FACTOR_GROUPS["colors"])
    assert np.all(f["color"] != w.factors["color"])
    _, masks = render_toyworld(w.factors, return_masks=True)
    _, twin_masks = render_toyworld(f, return_masks=True)
    np.testing.assert_array_equal(masks, twin_masks)
    for i in range(len(twins)):
        inside = interior(masks[i])
        assert inside.sum() > 20
        # Flat cartoon fill: every interior pixel shows exactly the record's object colour,
        # in the original and, with the new colour, in the twin.
        assert np.all(w.images[i][inside] == w.factors["object_rgb"][i])
        assert np.all(twins[i][inside] == f["object_rgb"][i])


@pytest.mark.parametrize("style", ["cartoon", "photo"])
def test_background_intervention_leaves_object_pixels(style):
    w = make_toyworld(4, domains=[style], classes=BULKY, random_state=6)
    twins, f = render_counterfactuals(w, change="background", random_state=4, return_factors=True)
    assert changed_fields(w.factors, f) == set(TOYWORLD_FACTOR_GROUPS["background"])
    assert np.all(f["background"] != w.factors["background"])
    _, masks = render_toyworld(w.factors, return_masks=True)
    for i in range(len(twins)):
        inside = interior(masks[i])
        outside = ndimage.binary_erosion(masks[i] == 0, iterations=4)
        np.testing.assert_array_equal(twins[i][inside], w.images[i][inside])
        assert np.any(twins[i][outside] != w.images[i][outside])


def test_combined_and_texture_interventions(world):
    groups = ("style", "colors", "background", "texture")
    _, f = render_counterfactuals(
        world, change=groups, indices=range(0, 240, 7), return_factors=True
    )
    sub = {k: v[0:240:7] for k, v in world.factors.items()}
    assert changed_fields(sub, f) == {x for g in groups for x in TOYWORLD_FACTOR_GROUPS[g]}
    _, f = render_counterfactuals(world, change="texture", return_factors=True)
    assert changed_fields(world.factors, f) == {"texture_seed"}


def test_counterfactuals_deterministic(world):
    a = render_counterfactuals(world, change=("style", "colors"), random_state=9)
    b = render_counterfactuals(world, change=("style", "colors"), random_state=9)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"domains": ["photo", "watercolour"]}, r"unknown domain \['watercolour'\]"),
        ({"classes": ["star", "blob"]}, r"unknown class \['blob'\]"),
        ({"classes": ["star", "star"]}, "duplicate"),
        ({"domains": []}, "at least one domain"),
        ({"n_per_cell": 0}, "n_per_cell must be >= 1"),
        ({"n_per_cell": 2.5}, "n_per_cell must be an int"),
        ({"image_size": 8}, "image_size must be at least 16"),
    ],
)
def test_make_toyworld_errors(kwargs, match):
    kwargs = {"n_per_cell": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_toyworld(**kwargs)


def test_render_counterfactuals_errors(world):
    with pytest.raises(ValueError, match="change must be a non-empty subset"):
        render_counterfactuals(world, change="pose")
    with pytest.raises(ValueError, match="change must be a non-empty subset"):
        render_counterfactuals(world, change=())
    with pytest.raises(ValueError, match="must include 'style'"):
        render_counterfactuals(world, change="colors", domain="photo")
    with pytest.raises(ValueError, match="unknown domain"):
        render_counterfactuals(world, domain="watercolour")
    with pytest.raises(ValueError, match="indices"):
        render_counterfactuals(world, indices=[len(world.labels)])
    single = make_toyworld(1, domains=["photo"], classes=["star"])
    with pytest.raises(ValueError, match="single domain"):
        render_counterfactuals(single)
    with pytest.raises(ValueError, match="missing the fields"):
        render_toyworld({"shape": ["star"]})


def test_shipped_toyclip_record():
    record = json.loads((TOYCLIP_DIR / "training_record.json").read_text())
    assert set(record["held_out_domains"]).isdisjoint(record["train_domains"])
    assert len(record["train_domains"]) + len(record["held_out_domains"]) >= 5
    assert (TOYCLIP_DIR / "open_clip_model.safetensors").stat().st_size <= 20 * 2**20
    for domain, m in record["metrics"].items():
        bar = 0.65 if domain in record["held_out_domains"] else 0.9
        assert m["linear_probe_same_domain"] >= bar, domain


def test_shipped_toyclip_loads_and_recognises_shapes():
    open_clip = pytest.importorskip("open_clip")
    torch = pytest.importorskip("torch")
    from PIL import Image

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{TOYCLIP_DIR}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{TOYCLIP_DIR}")
    model.eval()
    w = make_toyworld(5, domains=["photo", "cartoon"], random_state=99)
    with torch.no_grad():
        img = model.encode_image(
            torch.stack([preprocess(Image.fromarray(im)) for im in w.images]), normalize=True
        )
        txt = model.encode_text(
            tokenizer([f"a photo of a {c}" for c in w.class_names]), normalize=True
        )
    assert img.shape == (len(w.labels), model.text_projection.shape[1])
    accuracy = float((torch.argmax(img @ txt.T, dim=1).numpy() == w.labels).mean())
    assert accuracy >= 0.7
