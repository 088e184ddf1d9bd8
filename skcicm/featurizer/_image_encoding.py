"""Streaming image encoding: read, hash, decode and encode images a bounded window at a time.

Memory does not grow with the number of images beyond the output: a window holds at most
``window_files`` files and about ``WINDOW_BYTES`` of their bytes (two windows at once, as the
next one is read ahead), decoded images turn into model-sized tensors as soon as a decoding
thread is done with them, and embeddings go straight into preallocated output rows. Each file
is read once. With ``worker_type="threads"``, the threads decode ahead of the model across
windows, by a bounded number of model inputs (see :mod:`skcicm.featurizer`); with
``"processes"``, DataLoader worker processes decode instead (see :mod:`skcicm.featurizer`).
Either way the reading, hashing and cache lookups stay in this process. A file's content key
is remembered (see :mod:`skcicm.featurizer`), so a call whose embeddings are all cached only
``stat``\\ s the files."""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as transforms_v1
from torchvision.transforms import v2
from tqdm.auto import tqdm

from skcicm.featurizer._decode_threads import ThreadedDecoding, submit_reads
from skcicm.featurizer._decode_workers import (
    Task,
    ViewsDataset,
    check_workers_can_start,
    decoding_loader,
    prepare_views,
)
from skcicm.featurizer._gpu_decoding import JPEGDecoder
from skcicm.featurizer._images import ImageLoadError, ImageSource, image_source
from skcicm.featurizer._interventions import ImageInterventions
from skcicm.featurizer.cache._keys import intervened_key
from skcicm.featurizer.cache._memory import EmbeddingCache

#: Bytes of image files held at once, at most (a window of one larger file is allowed).
WINDOW_BYTES = 256 << 20


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
    interventions_id : str or None
        :func:`skcicm.featurizer.cache.interventions_cache_id` of the interventions; None keys the
        intervened copies so that the cache never stores them.
    batch_size, num_workers, worker_type, progress
        As in :class:`skcicm.CLIPFeaturizer`.
    pin_memory : bool, default=False
        With worker processes, stack each batch in pinned memory (for a GPU model).
    jpeg_decoder : JPEGDecoder or None, default=None
        Decodes JPEG files on the GPU, in the decoding threads (``decode_device="cuda"``).
    """

    def __init__(
        self,
        preprocess: Callable[[Image.Image], torch.Tensor],
        encode: Callable[[torch.Tensor], np.ndarray],
        cache: EmbeddingCache,
        interventions: ImageInterventions | None,
        *,
        interventions_id: str | None = None,
        batch_size: int,
        num_workers: int,
        worker_type: str = "threads",
        pin_memory: bool = False,
        jpeg_decoder: JPEGDecoder | None = None,
        progress: bool,
    ) -> None:
        self.preprocess = preprocess
        self.encode = encode
        self.cache = cache
        self.interventions = interventions
        self.interventions_id = interventions_id
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.worker_type = worker_type
        self.pin_memory = pin_memory
        self.jpeg_decoder = jpeg_decoder
        self.progress = progress
        self.window_files = max(4 * batch_size, 8 * num_workers, 64)
        self._downscale = _leading_downscale(preprocess)

    def view_key(self, key: str, view: int | None) -> str:
        """Cache key of one view of an image.

        Parameters
        ----------
        key : str
            Content key of the image.
        view : int or None
            Index of the intervened copy, or None for the clean image.

        Returns
        -------
        str
            ``key`` itself for the clean image, else the intervened copy's key.
        """
        return key if view is None else intervened_key(key, self.interventions_id, view)

    def embed(self, items: Sequence[Any], views: Sequence[int | None]) -> list[np.ndarray]:
        """Embed images and their intervened copies, reading each file once.

        Files are read in bounded windows (:data:`WINDOW_BYTES`), decoded and intervened on
        ``num_workers`` threads or DataLoader worker processes (``worker_type``), and encoded
        in batches; each batch is cached as soon as it is encoded, so that an interrupted run
        resumes.

        Parameters
        ----------
        items : sequence of image inputs
            Paths, ``PIL.Image`` objects or uint8 arrays.
        views : sequence of int or None
            Views to embed: None is the clean image, ``v`` the ``v``-th intervened copy.

        Returns
        -------
        list of ndarray of shape (n_images, embedding_dim)
            Raw (not normalised) embeddings, one array per view, in the order of ``views``.

        Raises
        ------
        skcicm.featurizer.ImageLoadError
            Naming every image that could not be read or intervened on, after all the
            others have been encoded and cached.
        """
        run = _Run(len(items), len(views))
        with tqdm(desc="Encoding images", unit="img", disable=not self.progress) as bar:
            if self.worker_type == "processes" and self.num_workers > 0:
                self._embed_in_processes(items, views, run, bar)
            else:
                self._embed_in_threads(items, views, run, bar)
        if run.elsewhere:
            given_up = functools.partial(self._encode_given_up, items, views, run)
            self._deliver(self.cache.wait_for(run.elsewhere, given_up), run)
        if run.failures:
            raise ImageLoadError([(name, reason) for _, name, reason in sorted(run.failures)])
        return run.outputs

    def _embed_in_threads(
        self, items: Sequence[Any], views: Sequence[int | None], run: _Run, bar: tqdm
    ) -> None:
        with (
            _executor(self.num_workers, "read") as reader,
            _executor(self.num_workers, "decode") as decoder,
        ):
            decoded = ThreadedDecoding(
                self._windows(items),
                functools.partial(self._plan, views=views, run=run),
                self._prepare,
                reader=reader,
                decoder=decoder,
                images_per_task=self._images_per_task(views),
                batch_size=self.batch_size,
            )
            batch: list[tuple[str, torch.Tensor]] = []
            for (source, _), (outputs, failure) in decoded:
                run.decoded(source.key, failure)
                batch.extend(outputs)
                if len(batch) >= self.batch_size:
                    self._encode_stacked(batch, run)
                    bar.update(len(batch))
                    batch = []
            if batch:
                self._encode_stacked(batch, run)
                bar.update(len(batch))

    def _embed_in_processes(
        self, items: Sequence[Any], views: Sequence[int | None], run: _Run, bar: tqdm
    ) -> None:
        dataset = ViewsDataset(self.preprocess, self.interventions, self._downscale)
        check_workers_can_start(dataset)
        with _executor(self.num_workers, "read") as reading:
            batches = self._batches(items, views, run, reading)
            # Workers start only once there is a cache miss: a cached call starts none.
            first = next(batches, None)
            if first is None:
                return
            loader = decoding_loader(
                dataset, itertools.chain([first], batches), self.num_workers, self.pin_memory
            )
            for done, keys, inputs in loader:
                for content_key, failure in done:
                    run.decoded(content_key, failure)
                if keys:
                    self._encode_batch(keys, inputs, run)
                    bar.update(len(keys))

    def _batches(
        self, items: Sequence[Any], views: Sequence[int | None], run: _Run, pool: Executor
    ) -> Iterator[list[Task]]:
        """The decoding work for the DataLoader: batches of cache misses of about batch_size views.

        Runs in the main process, lazily, as the DataLoader asks for the next batch: windows
        are read, hashed and looked up as in the threaded path, one window ahead.
        """
        batch: list[Task] = []
        n_views = 0
        for tasks in self._planned_windows(items, views, run, pool):
            for source, wanted in tasks:
                if batch and n_views + len(wanted) > self.batch_size:
                    yield batch
                    batch, n_views = [], 0
                # The queue to the workers pickles a task later, in its own thread: hand it a
                # copy that keeps the file's bytes, so that releasing ours cannot race it.
                batch.append((copy.copy(source), wanted))
                n_views += len(wanted)
                source.release()
        if batch:
            yield batch

    def _planned_windows(
        self, items: Sequence[Any], views: Sequence[int | None], run: _Run, pool: Executor
    ) -> Iterator[list[Task]]:
        """Each window's decoding tasks: its files read and hashed in ``pool``, then looked up.

        The next window is read while the caller takes this one's tasks, so at most two windows
        of bytes are held.
        """
        windows = self._windows(items)
        window = next(windows, [])
        files_per_task = self._images_per_task(views)
        reading = submit_reads(pool, window, files_per_task)
        while window:
            for future in reading:
                future.result()
            tasks = self._plan(window, views, run)
            window = next(windows, [])
            reading = submit_reads(pool, window, files_per_task)
            yield tasks

    def _images_per_task(self, views: Sequence[int | None]) -> int:
        """Images per thread task: a batch of views split over the workers.

        Two batches of views decoded ahead then keep at least two tasks per worker in flight,
        and the model's thread waits for a result once per task, not once per image.
        """
        return max(1, self.batch_size // (max(self.num_workers, 1) * len(views)))

    def _windows(self, items: Sequence[Any]) -> Iterator[list[tuple[int, ImageSource]]]:
        """Consecutive inputs, at most ``window_files`` of them and about WINDOW_BYTES."""
        window: list[tuple[int, ImageSource]] = []
        window_bytes = 0
        for row, item in enumerate(items):
            source = image_source(item, row)
            if window and (
                len(window) >= self.window_files or window_bytes + source.file_size > WINDOW_BYTES
            ):
                yield window
                window, window_bytes = [], 0
            window.append((row, source))
            window_bytes += source.file_size
        if window:
            yield window

    def _plan(
        self, window: list[tuple[int, ImageSource]], views: Sequence[int | None], run: _Run
    ) -> list[Task]:
        """Fill what the cache holds; one task per image content still missing a view."""
        lookup = set()
        for _, source in window:
            if source.key is not None and source.key not in run.failed:
                lookup.update(self.view_key(source.key, view) for view in views)
        found = self.cache.get(lookup - run.waiting.keys())
        tasks = []
        for row, source in window:
            if source.key is None or source.key in run.failed:
                run.failures.append((row, source.name, source.error or run.failed[source.key]))
                source.release()
                continue
            wanted = []
            for column, view in enumerate(views):
                key = self.view_key(source.key, view)
                if key in found:
                    run.store(column, row, found[key])
                else:
                    if key not in run.waiting:
                        wanted.append((key, view))
                    run.waiting.setdefault(key, []).append((row, column))
            # Named while its content may still fail to decode, so that every copy is listed.
            if wanted or source.key in run.names:
                run.names.setdefault(source.key, []).append((row, source.name))
            if not wanted:
                source.release()
                continue
            # A task makes at most a batch of views, so that many intervened copies of one
            # image stream through the model instead of being all made first. Each task holds
            # the file's bytes (one object, shared) until it is decoded.
            chunks = [
                wanted[start : start + self.batch_size]
                for start in range(0, len(wanted), self.batch_size)
            ]
            run.pending[source.key] = run.pending.get(source.key, 0) + len(chunks)
            tasks.extend(
                (source if start == 0 else copy.copy(source), chunk)
                for start, chunk in enumerate(chunks)
            )
        return tasks

    def _prepare(self, task: Task) -> tuple[list[tuple[str, torch.Tensor]], str | None]:
        return prepare_views(
            task, self.preprocess, self.interventions, self._downscale, self.jpeg_decoder
        )

    def _encode_stacked(self, batch: list[tuple[str, torch.Tensor]], run: _Run) -> None:
        self._encode_batch(*_stacked(batch), run)

    def _encode_batch(self, keys: list[str], inputs: torch.Tensor, run: _Run) -> None:
        # Another process or thread sharing the disk cache (a GridSearchCV or Dask worker) may
        # have stored some of these since this window was looked up, or be encoding them now:
        # claim them first, then encode those claimed and still missing. The rest are waited
        # for at the end of the run, when this worker holds no claim.
        with self.cache.claim(keys) as mine:
            encoded = self.cache.get(keys)
            missing = [row for row, key in enumerate(keys) if key in mine - encoded.keys()]
            if missing:
                fresh = self.encode(inputs if len(missing) == len(keys) else inputs[missing])
                new = dict(zip([keys[row] for row in missing], fresh, strict=True))
                self.cache.put(new)
                encoded.update(new)
        run.elsewhere.update(key for key in keys if key not in encoded)
        self._deliver(encoded, run)

    def _deliver(self, embeddings: dict[str, np.ndarray], run: _Run) -> None:
        for key, embedding in embeddings.items():
            # A view of an image whose other views failed is no longer waited for.
            for row, column in run.waiting.pop(key, ()):
                run.store(column, row, embedding)

    def _encode_given_up(
        self, items: Sequence[Any], views: Sequence[int | None], run: _Run, keys: list[str]
    ) -> dict[str, np.ndarray]:
        """Encode keys that another worker claimed but did not store (it failed or died).

        Rare, so the images are read and decoded again one at a time, in this thread.
        """
        batch = []
        for key in keys:
            row, column = run.waiting[key][0]
            source = image_source(items[row], row).read()
            if source.key is not None and self.view_key(source.key, views[column]) != key:
                source.error = "the file changed while it was being encoded"
            outputs, failure = self._prepare((source, [(key, views[column])]))
            batch.extend(outputs)
            if failure is not None:
                copies = run.waiting.pop(key)
                run.failures.extend((copy_row, source.name, failure) for copy_row, _ in copies)
        embeddings = {}
        for start in range(0, len(batch), self.batch_size):
            chunk_keys, inputs = _stacked(batch[start : start + self.batch_size])
            new = dict(zip(chunk_keys, self.encode(inputs), strict=True))
            self.cache.put(new)
            embeddings.update(new)
        return embeddings


def _stacked(batch: list[tuple[str, torch.Tensor]]) -> tuple[list[str], torch.Tensor]:
    """The keys of a batch, and its model inputs stacked into one tensor."""
    tensors = [tensor for _, tensor in batch]
    # GPU-decoded JPEG files come preprocessed on the GPU: the rest of the batch joins them.
    on_gpu = next((tensor.device for tensor in tensors if tensor.is_cuda), None)
    if on_gpu is not None:
        tensors = [tensor.to(on_gpu, non_blocking=True) for tensor in tensors]
    return [key for key, _ in batch], torch.stack(tensors)


class _Run:
    """The state of one ``embed`` call: outputs filled row by row, and what is in flight.

    Only images in flight (this window and the batch being filled) are tracked, and the keys
    of those that another worker is encoding, so the bookkeeping stays small while the
    outputs grow by one row per image.
    """

    def __init__(self, n_rows: int, n_views: int) -> None:
        self.n_rows = n_rows
        self.outputs: list[np.ndarray] = [None] * n_views
        self.waiting: dict[str, list[tuple[int, int]]] = {}  # view key -> (row, view column)
        self.names: dict[str, list[tuple[int, str]]] = {}  # content key in flight -> inputs
        self.failed: dict[str, str] = {}  # content key -> reason
        self.failures: list[tuple[int, str, str]] = []  # (row, name, reason)
        self.elsewhere: set[str] = set()  # view keys another worker claimed to encode
        self.pending: dict[str, int] = {}  # content key in flight -> its tasks not decoded

    def decoded(self, content_key: str, failure: str | None) -> None:
        """Record that one task of an image was decoded, or why it could not be."""
        if failure is not None and content_key not in self.failed:
            self.fail(content_key, failure)
        self.pending[content_key] -= 1
        if not self.pending[content_key]:
            del self.pending[content_key]
            self.names.pop(content_key, None)

    def store(self, column: int, row: int, embedding: np.ndarray) -> None:
        if self.outputs[column] is None:
            self.outputs[column] = np.empty((self.n_rows, len(embedding)), np.float32)
        self.outputs[column][row] = embedding

    def fail(self, content_key: str, reason: str) -> None:
        self.failed[content_key] = reason
        self.failures.extend((row, name, reason) for row, name in self.names.pop(content_key))
        for key in [key for key in self.waiting if key.startswith(content_key)]:
            del self.waiting[key]
            self.elsewhere.discard(key)


def _leading_downscale(preprocess: Any) -> _Downscale | None:
    """The preprocessing's own first resize, applied only where it shrinks the image.

    Intervened copies are made from the downscaled image: the augmentations then cost the
    model's input size, not the file's. For the clean image this changes nothing, since the
    preprocessing's resize of an image already at its target size returns it unchanged.
    """
    steps = getattr(preprocess, "transforms", None)
    first = steps[0] if steps else None
    if not isinstance(first, transforms_v1.Resize | v2.Resize) or first.max_size is not None:
        return None
    return _Downscale(first)


class _Downscale:
    """A class, not a closure, so that spawned decoding workers can unpickle it."""

    def __init__(self, resize: transforms_v1.Resize | v2.Resize) -> None:
        self.resize = resize
        self.size = [resize.size] if isinstance(resize.size, int) else list(resize.size)

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        size = self.size
        if len(size) == 1:
            shrinks = min(width, height) > size[0]
        else:
            shrinks = height >= size[0] and width >= size[1] and (height, width) != tuple(size)
        return self.resize(image) if shrinks else image


class _InlineExecutor(Executor):
    """Runs each task at submit time: the ``num_workers=0`` case, with the same code path."""

    def submit(self, function: Callable, /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(function(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - re-raised by future.result()
            future.set_exception(error)
        return future


def _executor(num_workers: int, role: str) -> contextlib.AbstractContextManager[Executor]:
    if num_workers == 0:
        return _InlineExecutor()
    return ThreadPoolExecutor(num_workers, thread_name_prefix=f"skcicm-{role}")
