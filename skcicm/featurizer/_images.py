"""Reading the image inputs a featurizer accepts, and naming them in errors.

An input is an image path, a PIL image or an HxWxC ``uint8`` array. Each one is reduced to a
content key (a hash of the file's bytes or of the pixels), which identifies it in the
embedding cache whatever its position in a batch, fold or list.

Files are never held all at once: the featurizer reads, hashes and decodes them a window at a
time. A file's key is remembered by path, size, modification time and inode, so a repeated
transform of unchanged files only ``stat``\\ s them.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Most file keys remembered per process (about 200 bytes each), the oldest forgotten first.
KEY_MEMO_SIZE = 1_000_000

#: Longest side over shortest side, at most, of an image to decode. The model's preprocessing
#: scales the short side up to its input size, so a 20000x1 image would become 224 x 4.5
#: million pixels: this bounds the resized image at ``MAX_ASPECT_RATIO`` times the model's
#: square input. Pillow's own limit, ``PIL.Image.MAX_IMAGE_PIXELS``, bounds the decoded size.
MAX_ASPECT_RATIO = 50

# blake2b(path, size, mtime, inode, device) -> sha1 of the content, both as raw digests.
_key_memo: dict[bytes, bytes] = {}
_key_memo_lock = threading.Lock()


class ImageLoadError(ValueError):
    """One or more images could not be read; the message names each of them.

    Parameters
    ----------
    failures : sequence of (str, str)
        The name of each image that could not be read, with the reason.
    """

    def __init__(self, failures: Sequence[tuple[str, str]]) -> None:
        self.failures = list(failures)
        shown = "\n".join(f"  {name}: {reason}" for name, reason in self.failures[:10])
        more = f"\n  ... and {len(self.failures) - 10} more" if len(self.failures) > 10 else ""
        super().__init__(
            f"{len(self.failures)} image(s) could not be read; the embeddings of the others "
            f"are cached, so fixing these and running again encodes only them:\n{shown}{more}"
        )


class ImageSource:
    """One input image: a name for messages, its content key once known, and what to decode.

    ``key`` is None for a file whose key is not remembered yet: :meth:`read` hashes it.
    ``error`` is set, instead of a key, for a file that cannot be read at all.
    """

    __slots__ = ("name", "key", "error", "_path", "_size", "_memo_key", "_data", "_image")

    def __init__(
        self,
        name: str,
        key: str | None = None,
        *,
        path: str | None = None,
        file_size: int = 0,
        memo_key: bytes | None = None,
        image: Image.Image | np.ndarray | None = None,
        error: str | None = None,
    ) -> None:
        self.name = name
        self.key = key
        self.error = error
        self._path = path
        self._size = file_size
        self._memo_key = memo_key
        self._data: bytes | None = None
        self._image = image

    @property
    def file_size(self) -> int:
        """Bytes of the file to read; 0 for images already in memory or already hashed."""
        return self._size

    def read(self) -> ImageSource:
        """Read and hash the file once, keeping its bytes until :meth:`release`.

        A file whose key was remembered is read and hashed again: its key then comes from the
        bytes read, so that a caller can tell whether the file changed since.
        """
        if self._path is None or self.error is not None or self._data is not None:
            return self
        try:
            self._data = _read_regular_file(self._path)
        except OSError as error:
            self.error = f"cannot read file ({error.strerror or error})"
            return self
        self.key = hashlib.sha1(self._data).hexdigest()
        if self._memo_key is not None:
            _remember_key(self._memo_key, self.key)
        self._size = 0
        return self

    def decode(self) -> Image.Image:
        """The image as RGB; raises ValueError naming the problem when it cannot be decoded.

        A file's size is checked from its header before its pixels are decoded (see
        :func:`check_image_size`), and its EXIF orientation is applied, as a photo viewer
        does. An image given in memory is taken as it is.
        """
        data = self.file_bytes()
        if data is None:
            image = self._image
            image = Image.fromarray(image) if isinstance(image, np.ndarray) else image
            check_image_size(*image.size, decoded=True)
            return to_rgb(image)
        unreadable = (UnidentifiedImageError, OSError, SyntaxError, ValueError)
        try:
            image = Image.open(io.BytesIO(data))
        except (*unreadable, Image.DecompressionBombError) as error:
            raise ValueError(f"not a readable image ({error_reason(error)})") from error
        with image:
            check_image_size(*image.size)
            try:
                return to_rgb(ImageOps.exif_transpose(image))
            except unreadable as error:
                raise ValueError(f"not a readable image ({error_reason(error)})") from error

    def file_bytes(self) -> bytes | None:
        """The file's bytes, read now if they were not (its key was remembered).

        Returns
        -------
        bytes or None
            None for an image given in memory.

        Raises
        ------
        ValueError
            Naming the problem when the file cannot be read.
        """
        if self.error is not None:
            raise ValueError(self.error)
        if self._path is not None and self._data is None:
            try:
                self._data = _read_regular_file(self._path)
            except OSError as error:
                raise ValueError(f"cannot read file ({error.strerror or error})") from error
        return self._data

    def release(self) -> None:
        """Drop the file's bytes, so that memory holds only the current window's files."""
        self._data = None


def as_image_list(X: Any) -> list[Any]:
    """Turn the featurizer's ``X`` (sequence, array or pandas Series of images) into a list."""
    if isinstance(X, str | os.PathLike | Image.Image):
        raise TypeError(
            "X must be a sequence of images (paths, PIL images or HxWxC uint8 arrays), "
            f"not a single {type(X).__name__}; wrap it in a list."
        )
    if isinstance(X, np.ndarray) and X.dtype.kind in "US":
        if X.ndim != 1:
            raise ValueError(f"An array of image paths X must be 1-D; got shape {X.shape}.")
        items = [os.fsdecode(path) for path in X.tolist()]  # paths, not pixels
    elif isinstance(X, np.ndarray) and X.dtype != object:
        if X.ndim != 4:
            raise ValueError(
                "An image array X must have shape (n_images, height, width, channels); "
                f"got {X.shape}."
            )
        items = list(X)
    else:
        items = list(X.to_numpy() if hasattr(X, "to_numpy") else X)
    if not items:
        shape = f" of shape {X.shape}" if isinstance(X, np.ndarray) else ""
        raise ValueError(
            f"X{shape} holds no images; pass at least one image path, PIL image or array."
        )
    return items


def image_source(item: Any, index: int) -> ImageSource:
    """Describe one input without reading a file: a file's key comes from memory if known."""
    if isinstance(item, str | os.PathLike):
        path = name = os.fspath(item)
        try:
            file_stat = os.stat(path)
        except OSError as error:
            return ImageSource(name, error=f"cannot read file ({error.strerror or error})")
        if not stat.S_ISREG(file_stat.st_mode):
            kind = "a directory" if stat.S_ISDIR(file_stat.st_mode) else "not a regular file"
            return ImageSource(name, error=f"{kind} (not opened)")
        if file_stat.st_size == 0:
            return ImageSource(name, error="empty file (0 bytes)")
        memo_key = _memo_key(path, file_stat)
        known = _key_memo.get(memo_key)
        if known is not None:
            return ImageSource(name, known.hex(), path=path)
        return ImageSource(name, path=path, file_size=file_stat.st_size, memo_key=memo_key)
    if isinstance(item, Image.Image):
        _check_size(item.width, item.height, index)
        key = _pixel_key(np.asarray(to_rgb(item)))
        return ImageSource(f"X[{index}] (PIL image)", key, image=item)
    if isinstance(item, np.ndarray):
        pixels = _check_pixels(item, index)
        return ImageSource(f"X[{index}] (array)", _pixel_key(pixels), image=pixels)
    raise TypeError(
        f"X[{index}] is a {type(item).__name__}; expected an image path, a PIL image or an "
        "HxWxC uint8 array."
    )


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert to 8-bit RGB, reading 16- and 32-bit integer greyscale as 0-65535.

    PIL's own ``convert("RGB")`` clips 16-bit values at 255, which turns most of a 16-bit
    greyscale PNG white.

    Examples
    --------
    >>> import numpy as np
    >>> from PIL import Image
    >>> grey16 = Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.uint16))
    >>> np.asarray(to_rgb(grey16))[0, :, 0].tolist()
    [0, 128, 255]
    """
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        wide = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
        image = Image.fromarray(np.rint(wide * (255 / 65535)).astype(np.uint8))
    elif image.mode == "F":
        raise ValueError("floating-point (mode 'F') images have no defined 0-255 scale")
    return image.convert("RGB")


def check_image_size(width: int, height: int, *, decoded: bool = False) -> None:
    """Refuse, before decoding or resizing, an image too large or too elongated to encode safely.

    Parameters
    ----------
    width, height : int
        The image's size in pixels, from its header.
    decoded : bool, default=False
        The image is in memory already (given as a PIL image or an array): its pixel count
        costs nothing more, and only its aspect ratio is checked.

    Raises
    ------
    ValueError
        When a file has more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` (unless that is
        None), or an image has an aspect ratio beyond :data:`MAX_ASPECT_RATIO`: both are
        decompression bombs, for the decoder or for the model's resize.

    Examples
    --------
    >>> check_image_size(640, 480)
    >>> check_image_size(20000, 1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: 20000x1 pixels, an aspect ratio of 20000:1: more than 50:1 ...
    """
    limit = Image.MAX_IMAGE_PIXELS
    if not decoded and limit is not None and width * height > limit:
        raise ValueError(
            f"{width}x{height} pixels: more than PIL.Image.MAX_IMAGE_PIXELS ({limit}), a "
            "possible decompression bomb; not decoded"
        )
    ratio = max(width, height) / max(1, min(width, height))
    if ratio > MAX_ASPECT_RATIO:
        raise ValueError(
            f"{width}x{height} pixels, an aspect ratio of {ratio:.0f}:1: more than "
            f"{MAX_ASPECT_RATIO}:1 (skcicm.featurizer.MAX_ASPECT_RATIO), which the model's resize "
            "would blow up to a huge image; not decoded. Crop or pad it first"
        )


def error_reason(error: BaseException) -> str:
    """A non-empty reason for a failure: ``MemoryError()`` and others have no message."""
    return str(error) or type(error).__name__


def _read_regular_file(path: str) -> bytes:
    # O_NONBLOCK: a FIFO swapped in after the stat must not block the run forever.
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with open(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(0, "not a regular file (not read)")
        data = handle.read()
    if not data:
        raise OSError(0, "empty file (0 bytes)")
    return data


def _memo_key(path: str, file_stat: os.stat_result) -> bytes:
    described = (
        f"{os.path.abspath(path)}\0{file_stat.st_size}\0{file_stat.st_mtime_ns}\0"
        f"{file_stat.st_ino}\0{file_stat.st_dev}"
    )
    return hashlib.blake2b(described.encode(errors="surrogateescape"), digest_size=16).digest()


def _remember_key(memo_key: bytes, key: str) -> None:
    with _key_memo_lock:
        _key_memo[memo_key] = bytes.fromhex(key)
        while len(_key_memo) > KEY_MEMO_SIZE:
            del _key_memo[next(iter(_key_memo))]


def forget_file_keys() -> None:
    """Forget every remembered file key, so that the next call hashes each file again."""
    with _key_memo_lock:
        _key_memo.clear()


def _check_size(width: int, height: int, index: int) -> None:
    if width < 1 or height < 1:
        raise ValueError(
            f"X[{index}] is {width}x{height} pixels; an image needs at least one pixel each way."
        )


def _check_pixels(item: np.ndarray, index: int) -> np.ndarray:
    if item.dtype != np.uint8:
        raise ValueError(f"X[{index}] has dtype {item.dtype}; image arrays must be uint8 (0-255).")
    if not (item.ndim == 2 or (item.ndim == 3 and item.shape[2] in (1, 3, 4))):
        raise ValueError(
            f"X[{index}] has shape {item.shape}; image arrays must be HxW or HxWxC with C in "
            "1, 3, 4."
        )
    _check_size(item.shape[1], item.shape[0], index)
    return item[..., 0] if item.ndim == 3 and item.shape[2] == 1 else item


def _pixel_key(pixels: np.ndarray) -> str:
    digest = hashlib.sha1(f"{pixels.shape}{pixels.dtype}".encode())
    digest.update(np.ascontiguousarray(pixels).data)
    return digest.hexdigest()
