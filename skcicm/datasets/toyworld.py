"""ToyWorld: a procedurally rendered image world with known causal factors.

Every image is a pure function of a record of factors:

* invariant factors (the class and the instance pose): ``shape``, ``size``,
  ``x``, ``y``, ``rotation``;
* variant factors, grouped into the groups that :func:`render_counterfactuals`
  can intervene on: ``"style"`` (``style``, i.e. the domain), ``"colors"``
  (``color``, ``object_rgb``, ``background_rgb``), ``"background"``
  (``background``, ``background_seed``) and ``"texture"``
  (``texture_seed``: shading direction, stroke jitter, grain).

Because rendering is deterministic given the record, an intervention on a
group of variant factors re-renders the *same* instance with only those
factors changed -- the ideal interventional pairs assumed by CLIP-ICM.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import cache, lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from sklearn.utils import Bunch

__all__ = [
    "TOYWORLD_BACKGROUNDS",
    "TOYWORLD_CLASSES",
    "TOYWORLD_COLORS",
    "TOYWORLD_DOMAINS",
    "TOYWORLD_FACTOR_GROUPS",
    "make_toyworld",
    "render_counterfactuals",
    "render_toyworld",
    "toyworld_caption",
]

#: The styles ToyWorld renders, one domain each.
TOYWORLD_DOMAINS: tuple[str, ...] = ("photo", "sketch", "cartoon", "painting", "mosaic", "neon")
#: The shapes ToyWorld draws: its classes, the invariant factor.
TOYWORLD_CLASSES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "heart",
    "hexagon",
    "arrow",
    "ring",
    "crescent",
)
#: Background patterns, a variant factor.
TOYWORLD_BACKGROUNDS: tuple[str, ...] = ("plain", "gradient", "stripes", "dots", "noise")
#: Named object colours; captions use these names, the rendered RGB is jittered around them.
TOYWORLD_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "orange": (255, 127, 14),
    "yellow": (240, 210, 30),
    "green": (44, 160, 44),
    "cyan": (23, 190, 207),
    "blue": (31, 90, 200),
    "purple": (148, 103, 189),
    "pink": (240, 120, 180),
    "brown": (140, 86, 75),
    "gray": (127, 127, 127),
}
#: The variant factor groups :func:`render_counterfactuals` can intervene on, each with the
#: factor records it re-draws.
TOYWORLD_FACTOR_GROUPS: dict[str, tuple[str, ...]] = {
    "style": ("style",),
    "colors": ("color", "object_rgb", "background_rgb"),
    "background": ("background", "background_seed"),
    "texture": ("texture_seed",),
}
_INVARIANT_FACTORS = ("shape", "size", "x", "y", "rotation")
_FACTOR_NAMES = _INVARIANT_FACTORS + tuple(f for g in TOYWORLD_FACTOR_GROUPS.values() for f in g)
_MIN_IMAGE_SIZE = 16
# Minimum Euclidean RGB distance between object and background colour, so the
# shape (the invariant factor) always stays visible.
_MIN_CONTRAST = 110.0


# --------------------------------------------------------------------------- geometry
def _regular_polygon(n: int, radius: float, phase: float = -np.pi / 2) -> np.ndarray:
    t = phase + 2 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(t), np.sin(t)], axis=1)


@cache
def _shape_rings(shape: str) -> tuple[np.ndarray, ...]:
    """Polygons of a shape in unit coordinates (extent about 1); rings after the first are holes."""
    if shape == "circle":
        return (_regular_polygon(48, 1.0),)
    if shape == "square":
        return (_regular_polygon(4, 1.0, phase=np.pi / 4) * 0.9,)
    if shape == "triangle":
        return (_regular_polygon(3, 1.0) + [0.0, 0.2],)
    if shape == "star":
        outer, inner = _regular_polygon(5, 1.0), _regular_polygon(5, 0.45, -np.pi / 2 + np.pi / 5)
        return (np.stack([outer, inner], axis=1).reshape(-1, 2) + [0.0, 0.08],)
    if shape == "cross":
        a, w = 0.95, 0.3
        return (
            np.array(
                [
                    [-w, -a],
                    [w, -a],
                    [w, -w],
                    [a, -w],
                    [a, w],
                    [w, w],
                    [w, a],
                    [-w, a],
                    [-w, w],
                    [-a, w],
                    [-a, -w],
                    [-w, -w],
                ]
            ),
        )
    if shape == "heart":
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
        # Image y points down, so flip to keep the lobes on top before rotation.
        return (np.stack([x, -y - 2.5], axis=1) / 16.5,)
    if shape == "hexagon":
        return (_regular_polygon(6, 1.0, phase=0.0),)
    if shape == "arrow":
        return (
            np.array(
                [
                    [-0.95, -0.22],
                    [0.1, -0.22],
                    [0.1, -0.6],
                    [0.95, 0.0],
                    [0.1, 0.6],
                    [0.1, 0.22],
                    [-0.95, 0.22],
                ]
            ),
        )
    if shape == "ring":
        return (_regular_polygon(48, 1.0), _regular_polygon(48, 0.55))
    if shape == "crescent":
        # Disc of radius 1 minus a disc of radius rb centred at (d, 0).
        d, rb = 0.45, 0.85
        xi = (d**2 + 1 - rb**2) / (2 * d)
        yi = np.sqrt(1 - xi**2)
        ta = np.arctan2(yi, xi)
        tb = np.arctan2(yi, xi - d)
        t_outer = np.linspace(ta, 2 * np.pi - ta, 40)
        t_inner = np.linspace(2 * np.pi - tb, tb, 32)
        outer = np.stack([np.cos(t_outer), np.sin(t_outer)], axis=1)
        inner = np.stack([d + rb * np.cos(t_inner), rb * np.sin(t_inner)], axis=1)
        return (np.concatenate([outer, inner]) + [0.3, 0.0],)
    raise ValueError(f"unknown shape {shape!r}")


def _pixel_rings(row: Mapping[str, Any], canvas: int) -> list[list[tuple[float, float]]]:
    theta = np.deg2rad(float(row["rotation"]))
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    scale = float(row["size"]) * canvas
    centre = np.array([float(row["x"]), float(row["y"])]) * canvas
    return [
        [tuple(p) for p in (ring @ rot.T) * scale + centre]
        for ring in _shape_rings(str(row["shape"]))
    ]


def _coverage(rings, canvas: int, ss: int, outline_px: float, jitter=None) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of the filled shape (outline_px == 0) or of its outline."""
    img = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(img)
    if outline_px <= 0:
        for k, ring in enumerate(rings):
            draw.polygon(ring, fill=0 if k else 255)
    else:
        width = max(1, int(round(outline_px * ss)))
        for offset in jitter if jitter is not None else [(0.0, 0.0)]:
            for ring in rings:
                pts = [(x + offset[0] * ss, y + offset[1] * ss) for x, y in ring]
                draw.line(pts + pts[:1], fill=255, width=width, joint="curve")
    if ss > 1:
        img = img.reduce(ss)
    return np.asarray(img, dtype=np.float32) / 255.0


# --------------------------------------------------------------------------- appearance
@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return (xx + 0.5) / size, (yy + 0.5) / size


def _background_layer(row: Mapping[str, Any], size: int) -> np.ndarray:
    rgb = np.asarray(row["background_rgb"], dtype=np.float32) / 255.0
    rng = np.random.default_rng(int(row["background_seed"]))
    kind = str(row["background"])
    xx, yy = _grid(size)
    angle = rng.uniform(0, 2 * np.pi)
    u = np.cos(angle) * xx + np.sin(angle) * yy
    if kind == "plain":
        shade = np.ones_like(xx)
    elif kind == "gradient":
        shade = 0.75 + 0.5 * (u - u.min()) / max(np.ptp(u), 1e-6)
    elif kind == "stripes":
        period = rng.uniform(0.12, 0.25)
        shade = 1.0 + 0.18 * np.sign(np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi)))
    elif kind == "dots":
        period = rng.uniform(0.14, 0.22)
        fx, fy = (xx / period + rng.uniform()) % 1.0, (yy / period + rng.uniform()) % 1.0
        shade = 1.0 - 0.25 * (np.hypot(fx - 0.5, fy - 0.5) < 0.22)
    elif kind == "noise":
        field = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma=size / 12)
        shade = 1.0 + 0.25 * field / max(np.abs(field).max(), 1e-6)
    else:
        raise ValueError(f"unknown background {kind!r}")
    return np.clip(rgb * shade[..., None], 0.0, 1.0).astype(np.float32)


def _blend(base: np.ndarray, alpha: np.ndarray, top) -> np.ndarray:
    return base * (1.0 - alpha[..., None]) + np.asarray(top, dtype=np.float32) * alpha[..., None]


def _style_image(row: Mapping[str, Any], size: int, ss: int) -> tuple[np.ndarray, np.ndarray]:
    """Render one sample; returns float image in [0, 1] and the fill coverage mask."""
    style = str(row["style"])
    canvas = size * ss
    rings = _pixel_rings(row, canvas)
    fill = _coverage(rings, canvas, ss, 0)
    obj = np.asarray(row["object_rgb"], dtype=np.float32) / 255.0
    bg = _background_layer(row, size)
    rng = np.random.default_rng(int(row["texture_seed"]))
    px = size / 32.0  # stroke widths and blur radii are defined for 32 px images
    xx, yy = _grid(size)

    if style == "photo":
        # Lambertian-like shading from a random light direction plus a soft cast shadow.
        light = rng.uniform(0, 2 * np.pi)
        lx, ly = np.cos(light), np.sin(light)
        r = float(row["size"])
        proj = ((xx - float(row["x"])) * lx + (yy - float(row["y"])) * ly) / r
        shading = np.clip(0.85 + 0.35 * proj, 0.45, 1.3)[..., None]
        shadow = ndimage.shift(fill, (-3 * ly * px, -3 * lx * px), order=1)
        shadow = ndimage.gaussian_filter(shadow, 1.2 * px)
        img = bg * (1.0 - 0.45 * shadow[..., None])
        img = _blend(img, fill, np.clip(obj * shading, 0, 1))
        img = img + rng.normal(0, 0.03, img.shape).astype(np.float32)
    elif style == "sketch":
        paper = 0.88 + 0.12 * bg
        paper = paper + rng.normal(0, 0.02, (size, size, 1)).astype(np.float32)
        jitter = rng.uniform(-0.4, 0.4, (2, 2)) * px
        line = _coverage(rings, canvas, ss, 0.9 * px, jitter=jitter)
        img = _blend(paper, 0.18 * fill, obj)
        img = _blend(img, np.clip(line, 0, 1), 0.65 * obj)
    elif style == "cartoon":
        line = _coverage(rings, canvas, ss, 1.6 * px)
        img = _blend(_blend(bg, fill, obj), line, (0.05, 0.05, 0.05))
    elif style == "painting":
        grey = np.array([0.55, 0.5, 0.42], dtype=np.float32)
        img = _blend(0.6 * bg + 0.4 * grey, fill, 0.7 * obj + 0.3 * grey)
        # Brush texture: noise smeared along one random stroke direction.
        strokes = ndimage.gaussian_filter(
            rng.standard_normal((size, size)),
            sigma=(0.4 * px, 2.5 * px) if rng.uniform() < 0.5 else (2.5 * px, 0.4 * px),
        )
        img = img * (1.0 + 0.25 * strokes[..., None]).astype(np.float32)
        img = ndimage.gaussian_filter(img, sigma=(0.6 * px, 0.6 * px, 0))
    elif style == "mosaic":
        line = _coverage(rings, canvas, ss, 1.0 * px)
        img = _blend(_blend(bg, fill, obj), line, 0.4 * obj)
        tile = max(2, size // 16)
        n = size // tile
        cropped = img[: n * tile, : n * tile].reshape(n, tile, n, tile, 3).mean(axis=(1, 3))
        cropped = cropped * rng.uniform(0.88, 1.12, (n, n, 1))
        cropped = np.round(np.clip(cropped, 0, 1) * 4) / 4  # a small tile palette
        img = img.copy()
        img[: n * tile, : n * tile] = np.repeat(np.repeat(cropped, tile, 0), tile, 1)
        if tile >= 4:
            grout = (np.arange(size) % tile) == 0
            img[grout, :] *= 0.6
            img[:, grout] *= 0.6
    elif style == "neon":
        bright = np.clip(0.35 + 0.9 * obj, 0, 1)
        dark = 0.12 * bg + rng.normal(0, 0.01, (size, size, 1)).astype(np.float32)
        line = _coverage(rings, canvas, ss, 1.2 * px)
        glow = ndimage.gaussian_filter(line, 1.5 * px)
        img = _blend(dark, 0.15 * fill, bright) + 0.8 * glow[..., None] * bright
        img = _blend(img, line, np.clip(bright + 0.3, 0, 1))
    else:
        raise ValueError(f"unknown style {style!r}; known: {TOYWORLD_DOMAINS}")
    return np.clip(img, 0.0, 1.0), fill


def _supersampling(image_size: int) -> int:
    return max(2, 128 // image_size)


def render_toyworld(
    factors: Mapping[str, Any],
    *,
    image_size: int = 32,
    return_masks: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Render images from factor records.

    Rendering is a pure function of the records, so re-rendering the
    ``factors`` of a :func:`make_toyworld` world reproduces its images exactly.

    Parameters
    ----------
    factors : mapping of str to array-like
        Column-wise factor records (the ``factors`` field of
        :func:`make_toyworld`), each column of length ``n``.
    image_size : int, default=32
        Height and width of the images; must match the world that produced
        the records for an exact reproduction.
    return_masks : bool, default=False
        Also return the anti-aliased coverage of the object silhouette, which
        depends on the invariant factors only.

    Returns
    -------
    images : ndarray of shape (n, image_size, image_size, 3), dtype uint8
        One RGB image per record.
    masks : ndarray of shape (n, image_size, image_size), dtype float32
        Only if ``return_masks``; values in [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from skcicm.datasets import make_toyworld, render_toyworld
    >>> world = make_toyworld(2, domains=["sketch"], classes=["star"], random_state=0)
    >>> images, masks = render_toyworld(world.factors, return_masks=True)
    >>> np.array_equal(images, world.images), masks.shape
    (True, (2, 32, 32))
    """
    image_size = _check_image_size(image_size)
    missing = [f for f in _FACTOR_NAMES if f not in factors]
    if missing:
        raise ValueError(f"factors is missing the fields {missing}")
    n = len(factors["shape"])
    ss = _supersampling(image_size)
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    masks = np.empty((n, image_size, image_size), dtype=np.float32)
    for i in range(n):
        row = {name: factors[name][i] for name in _FACTOR_NAMES}
        img, masks[i] = _style_image(row, image_size, ss)
        images[i] = np.round(img * 255.0).astype(np.uint8)
    return (images, masks) if return_masks else images


# --------------------------------------------------------------------------- sampling
def _check_image_size(image_size: int) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise ValueError(f"image_size must be an int, got {image_size!r}")
    if image_size < _MIN_IMAGE_SIZE:
        raise ValueError(
            f"image_size must be at least {_MIN_IMAGE_SIZE} px for shapes to stay "
            f"recognisable, got {image_size}"
        )
    return int(image_size)


def _check_names(values: Iterable[str] | None, known: tuple[str, ...], what: str) -> list[str]:
    if values is None:
        return list(known)
    if isinstance(values, str):
        values = [values]
    values = list(values)
    if not values:
        raise ValueError(f"at least one {what} is required")
    unknown = [v for v in values if v not in known]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known {what}s are {list(known)}")
    if len(set(values)) != len(values):
        raise ValueError(f"duplicate {what} names in {values}")
    return values


def _draw_colors(
    rng: np.random.Generator,
    n: int,
    exclude: np.ndarray | None = None,
    chosen: Sequence[str] | None = None,
):
    """Object colour names, jittered object RGB and a contrasting background RGB.

    Names are drawn uniformly, or different from ``exclude``, or taken from ``chosen``.
    """
    names = np.array(list(TOYWORLD_COLORS))
    if chosen is not None:
        lookup = {name: i for i, name in enumerate(names)}
        idx = np.array([lookup[c] for c in chosen], dtype=np.int64)
    elif exclude is None:
        idx = rng.integers(len(names), size=n)
    else:
        # Shift by 1..len-1 so the new colour name always differs from the old one.
        lookup = {name: i for i, name in enumerate(names)}
        old = np.array([lookup[c] for c in exclude], dtype=np.int64)
        idx = (old + rng.integers(1, len(names), size=n)) % len(names)
    base = np.array([TOYWORLD_COLORS[c] for c in names[idx]], dtype=np.float64).reshape(n, 3)
    obj = np.clip(base + rng.normal(0, 12, (n, 3)), 0, 255)
    bg = rng.uniform(0, 255, (n, 3))
    for _ in range(100):
        bad = np.linalg.norm(bg - obj, axis=1) < _MIN_CONTRAST
        if not bad.any():
            break
        bg[bad] = rng.uniform(0, 255, (int(bad.sum()), 3))
    return names[idx].astype(object), obj.round().astype(np.uint8), bg.round().astype(np.uint8)


def _draw_other(
    rng: np.random.Generator, current: np.ndarray, choices: Sequence[str]
) -> np.ndarray:
    """For each entry, a uniformly drawn element of ``choices`` different from it."""
    out = np.empty(len(current), dtype=object)
    for i, value in enumerate(current):
        options = [c for c in choices if c != value]
        out[i] = options[rng.integers(len(options))]
    return out


def toyworld_caption(style: str, shape: str, color: str | None = None) -> str:
    """Caption of a ToyWorld image, e.g. ``"a sketch of an orange star"``.

    Parameters
    ----------
    style : str
        Domain name (one of :data:`TOYWORLD_DOMAINS`).
    shape : str
        Class name (one of :data:`TOYWORLD_CLASSES`).
    color : str, optional
        Colour name; omitted from the caption when None.

    Returns
    -------
    str
        The caption, with the article ("a" or "an") that the next word needs.

    Examples
    --------
    >>> toyworld_caption("sketch", "star", "orange")
    'a sketch of an orange star'
    >>> toyworld_caption("photo", "arrow")
    'a photo of an arrow'
    """
    noun = shape if color is None else f"{color} {shape}"
    article = "an" if noun[0] in "aeiou" else "a"
    return f"a {style} of {article} {noun}"


def _sample_factors(rng: np.random.Generator, shapes: np.ndarray, styles: np.ndarray) -> dict:
    """Factor records for the given shapes and styles; every other factor drawn at random."""
    n = len(shapes)
    size = rng.uniform(0.28, 0.4, n)
    # Keep the whole object inside the frame: the shape extent is at most `size`.
    slack = 0.5 - size - 0.03
    color, object_rgb, background_rgb = _draw_colors(rng, n)
    return {
        "shape": shapes,
        "size": size,
        "x": 0.5 + slack * rng.uniform(-1, 1, n),
        "y": 0.5 + slack * rng.uniform(-1, 1, n),
        "rotation": rng.uniform(0, 360, n),
        "style": styles,
        "color": color,
        "object_rgb": object_rgb,
        "background_rgb": background_rgb,
        "background": np.array(TOYWORLD_BACKGROUNDS, dtype=object)[
            rng.integers(len(TOYWORLD_BACKGROUNDS), size=n)
        ],
        "background_seed": rng.integers(2**31, size=n, dtype=np.int64),
        "texture_seed": rng.integers(2**31, size=n, dtype=np.int64),
    }


def _render_world(
    factors: dict,
    labels: np.ndarray,
    class_names: list[str],
    domain_names: list[str],
    image_size: int,
    **fields: Any,
) -> Bunch:
    """The world Bunch of :func:`make_toyworld` for sampled factors, with extra ``fields``."""
    captions = [
        toyworld_caption(s, c, col)
        for s, c, col in zip(factors["style"], factors["shape"], factors["color"], strict=True)
    ]
    return Bunch(
        images=render_toyworld(factors, image_size=image_size),
        labels=labels,
        domains=factors["style"].copy(),
        class_names=class_names,
        domain_names=domain_names,
        captions=captions,
        factors=factors,
        image_size=image_size,
        **fields,
    )


def make_toyworld(
    n_per_cell: int = 20,
    *,
    domains: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    image_size: int = 32,
    random_state: int | np.random.Generator | None = 0,
) -> Bunch:
    """Generate a ToyWorld data set: shapes (classes) rendered in styles (domains).

    Samples are ordered by domain, then class, then instance. Object size,
    position and rotation vary per instance; colours, background pattern and
    texture vary within every domain.

    Parameters
    ----------
    n_per_cell : int, default=20
        Number of images per (class, domain) cell.
    domains : sequence of str, optional
        Styles to render, a subset of :data:`TOYWORLD_DOMAINS` (default: all).
    classes : sequence of str, optional
        Shapes to render, a subset of :data:`TOYWORLD_CLASSES` (default: all).
        ``labels`` index into this list, in the given order.
    image_size : int, default=32
        Height and width of the images in pixels (at least 16).
    random_state : int, numpy Generator or None, default=0
        Seed of the factor sampling; the same seed gives the same world.

    Returns
    -------
    sklearn.utils.Bunch
        With fields ``images`` (uint8, (n, H, W, 3)), ``labels`` (int64, (n,)),
        ``domains`` (object array of domain names, (n,)), ``class_names``,
        ``domain_names``, ``captions`` (list of str, with the colour word),
        ``factors`` (dict of column arrays accepted by
        :func:`render_toyworld`) and ``image_size``. The factor columns are
        ``shape``, ``size`` (extent as a fraction of the image side), ``x`` and
        ``y`` (centre, fractions of the side), ``rotation`` (degrees),
        ``style``, ``color`` (name in :data:`TOYWORLD_COLORS`),
        ``object_rgb`` and ``background_rgb`` (uint8, (n, 3)), ``background``
        (pattern in :data:`TOYWORLD_BACKGROUNDS`), ``background_seed`` and
        ``texture_seed``.

    Examples
    --------
    >>> from skcicm.datasets import make_toyworld
    >>> world = make_toyworld(3, domains=["photo", "sketch"], classes=["star", "ring"])
    >>> world.images.shape, world.images.dtype, world.labels[:4]
    ((12, 32, 32, 3), dtype('uint8'), array([0, 0, 0, 1]))
    >>> world.domains[0], world.captions[0].startswith("a photo of a")
    ('photo', True)
    """
    if isinstance(n_per_cell, bool) or not isinstance(n_per_cell, (int, np.integer)):
        raise ValueError(f"n_per_cell must be an int, got {n_per_cell!r}")
    if n_per_cell < 1:
        raise ValueError(f"n_per_cell must be >= 1, got {n_per_cell}")
    domain_names = _check_names(domains, TOYWORLD_DOMAINS, "domain")
    class_names = _check_names(classes, TOYWORLD_CLASSES, "class")
    image_size = _check_image_size(image_size)
    rng = np.random.default_rng(random_state)

    n_dom, n_cls = len(domain_names), len(class_names)
    dom_idx = np.repeat(np.arange(n_dom), n_cls * n_per_cell)
    labels = np.tile(np.repeat(np.arange(n_cls), n_per_cell), n_dom).astype(np.int64)

    factors = _sample_factors(
        rng,
        np.array(class_names, dtype=object)[labels],
        np.array(domain_names, dtype=object)[dom_idx],
    )
    return _render_world(factors, labels, class_names, domain_names, image_size)


def render_counterfactuals(
    world: Mapping[str, Any],
    *,
    change: str | Sequence[str] = ("style",),
    domain: str | None = None,
    random_state: int | np.random.Generator | None = 0,
    indices: Sequence[int] | np.ndarray | None = None,
    return_factors: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]:
    """Render exact counterfactual twins: same instance, intervened variant factors.

    Each twin keeps the shape, size, position and rotation of its source
    sample and every variant factor outside ``change``; the factors in the
    changed groups are re-drawn, always to a value different from the
    original (a different style, colour name, background pattern).

    Parameters
    ----------
    world : Bunch
        Output of :func:`make_toyworld`.
    change : str or sequence of str, default=("style",)
        Factor groups to intervene on, any non-empty subset of ``"style"``,
        ``"colors"``, ``"background"`` and ``"texture"``.
    domain : str, optional
        Force the new style to this domain (any of :data:`TOYWORLD_DOMAINS`)
        instead of drawing one of the world's other domains. Requires
        ``"style"`` in ``change``.
    random_state : int, numpy Generator or None, default=0
        Seed of the re-drawn factors.
    indices : array-like of int, optional
        Samples of ``world`` to render twins for (default: all).
    return_factors : bool, default=False
        Also return the factor records of the twins.

    Returns
    -------
    images : ndarray of shape (n, H, W, 3), dtype uint8
        One twin per sample of ``indices``, in their order.
    factors : dict of str to ndarray
        Only if ``return_factors``.

    Examples
    --------
    >>> import numpy as np
    >>> from skcicm.datasets import make_toyworld, render_counterfactuals
    >>> world = make_toyworld(2, domains=["photo", "cartoon"], classes=["heart"])
    >>> twins, f = render_counterfactuals(world, change="style", return_factors=True)
    >>> list(f["style"]), bool(np.array_equal(f["rotation"], world.factors["rotation"]))
    (['cartoon', 'cartoon', 'photo', 'photo'], True)
    """
    groups = [change] if isinstance(change, str) else list(change)
    unknown = [g for g in groups if g not in TOYWORLD_FACTOR_GROUPS]
    if not groups or unknown:
        raise ValueError(
            f"change must be a non-empty subset of {list(TOYWORLD_FACTOR_GROUPS)}, got {change!r}"
        )
    if domain is not None:
        if "style" not in groups:
            raise ValueError("domain= forces the new style, so change must include 'style'")
        _check_names([domain], TOYWORLD_DOMAINS, "domain")
    if "factors" not in world or "image_size" not in world:
        raise ValueError("world must be the Bunch returned by make_toyworld")
    n_total = len(world["factors"]["shape"])
    idx = np.arange(n_total) if indices is None else np.asarray(indices, dtype=np.int64)
    if idx.ndim != 1 or (idx.size and (idx.min() < -n_total or idx.max() >= n_total)):
        raise ValueError(f"indices must be a 1-d array of sample indices in [0, {n_total})")
    rng = np.random.default_rng(random_state)
    factors = {k: np.asarray(v)[idx].copy() for k, v in world["factors"].items()}
    n = len(idx)

    if "style" in groups:
        if domain is not None:
            factors["style"] = np.full(n, domain, dtype=object)
        else:
            choices = list(world["domain_names"])
            if len(choices) < 2:
                raise ValueError(
                    "the world has a single domain, so there is no other style to draw; "
                    "pass domain= to choose one"
                )
            factors["style"] = _draw_other(rng, factors["style"], choices)
    if "colors" in groups:
        factors["color"], factors["object_rgb"], factors["background_rgb"] = _draw_colors(
            rng, n, exclude=factors["color"]
        )
    if "background" in groups:
        factors["background"] = _draw_other(rng, factors["background"], TOYWORLD_BACKGROUNDS)
        factors["background_seed"] = rng.integers(2**31, size=n, dtype=np.int64)
    if "texture" in groups:
        factors["texture_seed"] = rng.integers(2**31, size=n, dtype=np.int64)

    images = render_toyworld(factors, image_size=int(world["image_size"]))
    return (images, factors) if return_factors else images
