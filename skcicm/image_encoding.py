"""Streaming image encoding: read, hash, decode and encode images a bounded window at a time.

Memory does not grow with the number of images: a window holds at most ``window_files``
files (and about ``WINDOW_BYTES`` of their bytes), and decoded images turn into model-sized
tensors as soon as a decoding thread is done with them. Each file is read once. While the
model encodes one window, the threads decode the rest of it and read and hash the next.
A file's content key is remembered (see :mod:`skcicm.images`), so a call whose embeddings are
all cached only ``stat``\\ s the files.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as transforms_v1
from torchvision.transforms import v2
from tqdm.auto import tqdm

from skcicm.embedding_cache import EmbeddingCache
from skcicm.images import ImageLoadError, ImageSource, image_source
from skcicm.interventions import ImageInterventions

#: Bytes of image files held at once, at most (a window of one larger file is allowed).
WINDOW_BYTES = 256 << 20

Task = tuple[ImageSource, list[tuple[str, "int | None"]]]


class ImageEncoder:
    """Embed images and their intervened copies, from the cache where possible.

    Parameters
    ----------
    preprocess : callable
        The model's preprocessing, PIL image to tensor.
    encode : callable
        Batch tensor to a float32 array of raw embeddings (device, precision and checks).
    cache : EmbeddingCache
        Looked up before any file is decoded; filled batch by batch.
    interventions : ImageInterventions or None
        Needed when any requested view is not None.
    batch_size, num_workers, progress
        As in :class:`skcicm.CLIPFeaturizer`.
    """

    def __init__(
        self,
        preprocess: Callable[[Image.Image], torch.Tensor],
        encode: Callable[[torch.Tensor], np.ndarray],
        cache: EmbeddingCache,
        interventions: ImageInterventions | None,
        *,
        batch_size: int,
        num_workers: int,
        progress: bool,
    ) -> None:
        self.preprocess = preprocess
        self.encode = encode
        self.cache = cache
        self.interventions = interventions
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.progress = progress
        self.window_files = max(4 * batch_size, 8 * num_workers, 64)
        self._downscale = _leading_downscale(preprocess)

    def view_key(self, key: str, view: int | None) -> str:
        if view is None:
            return key
        return f"{key}-do{self.interventions.fingerprint}-{view}"

    def _all_found(self, key: str, views: Sequence[int | None], found: dict) -> bool:
        return all(self.view_key(key, view) in found for view in views)

    def embed(self, items: Sequence[Any], views: Sequence[int | None]) -> list[np.ndarray]:
        """Raw embeddings, one (n_images, dim) array per view (None is the clean image)."""
        sources = [image_source(item, index) for index, item in enumerate(items)]
        found = self.cache.get(
            {self.view_key(s.key, v) for s in sources if s.key is not None for v in views}
        )
        pending = [
            source
            for source in sources
            if source.error is None
            and (source.key is None or not self._all_found(source.key, views, found))
        ]
        failed = self._encode_pending(pending, views, found) if pending else {}
        failures = [
            (source.name, source.error or failed[source.key])
            for source in sources
            if source.error is not None or source.key in failed
        ]
        if failures:
            raise ImageLoadError(failures)
        return [
            np.stack([found[self.view_key(source.key, view)] for source in sources])
            for view in views
        ]

    def _encode_pending(
        self,
        pending: list[ImageSource],
        views: Sequence[int | None],
        found: dict[str, np.ndarray],
    ) -> dict[str, str]:
        """Encode what ``pending`` lacks into ``found``; return {content key: reason} failures."""
        failed: dict[str, str] = {}
        claimed: set[str] = set()
        keys: list[str] = []
        tensors: list[torch.Tensor] = []
        windows = _windows(pending, self.window_files)
        with (
            _executor(self.num_workers) as pool,
            tqdm(
                total=len(pending) * len(views),
                desc="Encoding images",
                unit="img",
                disable=not self.progress,
            ) as bar,
        ):
            reading = [pool.submit(ImageSource.read, s) for s in next(windows, [])]
            while reading:
                window = [future.result() for future in reading]
                tasks = self._plan(window, views, found, claimed)
                bar.total -= len(window) * len(views) - sum(len(w) for _, w in tasks)
                bar.refresh()
                prepared = _bounded_map(pool, self._prepare, tasks, 2 * self.batch_size)
                # Submitted after this window's first decodes, so the model is not kept waiting.
                reading = [pool.submit(ImageSource.read, s) for s in next(windows, [])]
                for (source, _), (outputs, failure) in zip(tasks, prepared, strict=True):
                    if failure is not None:
                        failed[source.key] = failure
                    for key, tensor in outputs:
                        keys.append(key)
                        tensors.append(tensor)
                    if len(keys) >= self.batch_size:
                        self._encode_batch(keys, tensors, found)
                        bar.update(len(keys))
                        keys, tensors = [], []
            if keys:
                self._encode_batch(keys, tensors, found)
                bar.update(len(keys))
        return failed

    def _plan(
        self,
        window: list[ImageSource],
        views: Sequence[int | None],
        found: dict[str, np.ndarray],
        claimed: set[str],
    ) -> list[Task]:
        """One task per image content still missing a view, so that it is decoded once."""
        hashed = [s for s in window if s.key is not None and s.key not in claimed]
        found.update(
            self.cache.get({self.view_key(s.key, v) for s in hashed for v in views} - found.keys())
        )
        tasks = []
        for source in window:
            wanted = []
            if source.key is not None and source.key not in claimed:
                keys = [self.view_key(source.key, view) for view in views]
                wanted = [(k, v) for k, v in zip(keys, views, strict=True) if k not in found]
            if wanted:
                claimed.add(source.key)
                tasks.append((source, wanted))
            else:
                source.release()
        return tasks

    def _prepare(self, task: Task) -> tuple[list[tuple[str, torch.Tensor]], str | None]:
        source, wanted = task
        try:
            image = source.decode()
            if self._downscale is not None and any(view is not None for _, view in wanted):
                image = self._downscale(image)
            return [
                (
                    key,
                    self.preprocess(
                        image
                        if view is None
                        else self.interventions.apply(image, key=source.key, view=view)
                    ),
                )
                for key, view in wanted
            ], None
        except Exception as error:  # noqa: BLE001 - reported per file, the rest go on
            return [], str(error)
        finally:
            source.release()

    def _encode_batch(
        self, keys: list[str], tensors: list[torch.Tensor], found: dict[str, np.ndarray]
    ) -> None:
        encoded = dict(zip(keys, self.encode(torch.stack(tensors)), strict=True))
        self.cache.put(encoded)
        found.update(encoded)


def _leading_downscale(preprocess: Any) -> Callable[[Image.Image], Image.Image] | None:
    """The preprocessing's own first resize, applied only where it shrinks the image.

    Intervened copies are made from the downscaled image: the augmentations then cost the
    model's input size, not the file's. For the clean image this changes nothing, since the
    preprocessing's resize of an image already at its target size returns it unchanged.
    """
    steps = getattr(preprocess, "transforms", None)
    first = steps[0] if steps else None
    if not isinstance(first, transforms_v1.Resize | v2.Resize) or first.max_size is not None:
        return None
    size = [first.size] if isinstance(first.size, int) else list(first.size)

    def downscale(image: Image.Image) -> Image.Image:
        width, height = image.size
        if len(size) == 1:
            shrinks = min(width, height) > size[0]
        else:
            shrinks = height >= size[0] and width >= size[1] and (height, width) != tuple(size)
        return first(image) if shrinks else image

    return downscale


def _windows(sources: list[ImageSource], max_files: int) -> Iterator[list[ImageSource]]:
    window: list[ImageSource] = []
    window_bytes = 0
    for source in sources:
        size = source.file_size
        if window and (len(window) >= max_files or window_bytes + size > WINDOW_BYTES):
            yield window
            window, window_bytes = [], 0
        window.append(source)
        window_bytes += size
    if window:
        yield window


class _InlineExecutor(Executor):
    """Runs each task at submit time: the ``num_workers=0`` case, with the same code path."""

    def submit(self, function: Callable, /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(function(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - re-raised by future.result()
            future.set_exception(error)
        return future


def _executor(num_workers: int) -> contextlib.AbstractContextManager[Executor]:
    if num_workers == 0:
        return _InlineExecutor()
    return ThreadPoolExecutor(num_workers, thread_name_prefix="skcicm-decode")


def _bounded_map(pool: Executor, function: Callable, items: Iterable, window: int) -> Iterator:
    """Like ``pool.map`` in order, but at most ``window`` results in flight; submits eagerly."""
    remaining = iter(items)
    pending: deque[Future] = deque(
        pool.submit(function, item) for _, item in zip(range(window), remaining, strict=False)
    )

    def results() -> Iterator:
        while pending:
            result = pending.popleft().result()
            following = next(remaining, _DONE)
            if following is not _DONE:
                pending.append(pool.submit(function, following))
            yield result

    return results()


_DONE = object()
