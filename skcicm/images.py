"""Reading the image inputs a featurizer accepts, and naming them in errors.

An input is an image path, a PIL image or an HxWxC ``uint8`` array. Each one is reduced to a
content key (a hash of the file's bytes or of the pixels), which identifies it in the
embedding cache whatever its position in a batch, fold or list.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageLoadError(ValueError):
    """One or more images could not be read; the message names each of them."""

    def __init__(self, failures: Sequence[tuple[str, str]]) -> None:
        self.failures = list(failures)
        shown = "\n".join(f"  {name}: {reason}" for name, reason in self.failures[:10])
        more = f"\n  ... and {len(self.failures) - 10} more" if len(self.failures) > 10 else ""
        super().__init__(
            f"{len(self.failures)} image(s) could not be read; the embeddings of the others "
            f"are cached, so fixing these and running again encodes only them:\n{shown}{more}"
        )


@dataclass(frozen=True)
class ImageSource:
    """One input image: a content key, a name for messages and a way to decode it."""

    key: str
    name: str
    decode: Callable[[], Image.Image]


def as_image_list(X: Any) -> list[Any]:
    """Turn the featurizer's ``X`` (sequence, array or pandas Series of images) into a list."""
    if isinstance(X, str | os.PathLike | Image.Image):
        raise TypeError(
            "X must be a sequence of images (paths, PIL images or HxWxC uint8 arrays), "
            f"not a single {type(X).__name__}; wrap it in a list."
        )
    if isinstance(X, np.ndarray) and X.dtype != object:
        if X.ndim == 4:
            return list(X)
        raise ValueError(
            f"An image array X must have shape (n_images, height, width, channels); got {X.shape}."
        )
    if hasattr(X, "to_numpy"):
        X = X.to_numpy()
    return list(X)


def image_source(item: Any, index: int) -> ImageSource:
    """Describe one input: read a file's bytes once, to hash and later to decode them."""
    if isinstance(item, str | os.PathLike):
        path = Path(item)
        try:
            data = path.read_bytes()
        except OSError as error:
            return ImageSource(
                key=f"unreadable:{path}",
                name=str(path),
                decode=_raiser(f"cannot read file ({error.strerror})"),
            )
        return ImageSource(
            key=hashlib.sha1(data).hexdigest(),
            name=str(path),
            decode=lambda: _open(io.BytesIO(data)),
        )
    if isinstance(item, Image.Image):
        rgb = item.convert("RGB")
        return ImageSource(
            key=_pixel_key(np.asarray(rgb)), name=f"X[{index}] (PIL image)", decode=lambda: rgb
        )
    if isinstance(item, np.ndarray):
        pixels = _check_pixels(item, index)
        return ImageSource(
            key=_pixel_key(pixels),
            name=f"X[{index}] (array)",
            decode=lambda: Image.fromarray(pixels).convert("RGB"),
        )
    raise TypeError(
        f"X[{index}] is a {type(item).__name__}; expected an image path, a PIL image or an "
        "HxWxC uint8 array."
    )


def _open(stream: io.BytesIO) -> Image.Image:
    try:
        with Image.open(stream) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"not a readable image ({error})") from error


def _raiser(reason: str) -> Callable[[], Image.Image]:
    def decode() -> Image.Image:
        raise ValueError(reason)

    return decode


def _check_pixels(item: np.ndarray, index: int) -> np.ndarray:
    if item.dtype != np.uint8:
        raise ValueError(f"X[{index}] has dtype {item.dtype}; image arrays must be uint8 (0-255).")
    if item.ndim == 2:
        return item
    if item.ndim == 3 and item.shape[2] in (1, 3, 4):
        return item[..., 0] if item.shape[2] == 1 else item
    raise ValueError(
        f"X[{index}] has shape {item.shape}; image arrays must be HxW or HxWxC with C in 1, 3, 4."
    )


def _pixel_key(pixels: np.ndarray) -> str:
    digest = hashlib.sha1(f"{pixels.shape}{pixels.dtype}".encode())
    digest.update(np.ascontiguousarray(pixels).data)
    return digest.hexdigest()
