"""Decoding images in threads, in input order, running ahead of the model by a bounded amount.

With ``worker_type="threads"`` the model's thread drives a three-stage pipeline: reading and
hashing windows of files (one thread pool), looking them up in the cache (the model's thread)
and decoding the misses (a second pool). Two things keep it fast with small models, where the
threads spend most of their time contending for the interpreter lock:

- The decoding threads run ahead across window boundaries, up to :data:`DECODED_BYTES` of
  model inputs (and at least two batches), so that they are not kept waiting while the model
  encodes and the model does not wait while a window refills.
- Each thread task handles a run of images, not one: a future per image costs the model's
  thread a wake-up and a wait for the interpreter lock.

Memory stays bounded whatever the number of images: at most two windows of files are held
(read, and not yet decoded or found in the cache), and the decoded inputs waiting for the model
are bounded as above. Reads have their own pool so that they never queue behind the decoding.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future

import torch

from skcicm.featurizer._decode_workers import Task
from skcicm.featurizer._images import ImageSource

#: Bytes of decoded model inputs, at most, waiting for the model (at least two batches).
DECODED_BYTES = 128 << 20

#: A window of inputs: (row, source) pairs, read and looked up together.
Window = list[tuple[int, ImageSource]]
#: What decoding one task gives: the (view key, model input) pairs, and the failure or None.
Prepared = tuple[list[tuple[str, torch.Tensor]], "str | None"]


class ThreadedDecoding:
    """Iterate over ``(task, prepared)`` for every cache miss, in input order.

    Parameters
    ----------
    windows : iterator of Window
        Consecutive inputs, a bounded window at a time.
    plan : callable
        Looks a window up in the cache (in the caller's thread, after its files are read) and
        returns the tasks of the images still missing a view.
    prepare : callable
        Decodes one task (in a decoding thread).
    reader, decoder : Executor
        Pools for reading and hashing files, and for decoding.
    images_per_task : int
        Images read or decoded by one thread task.
    batch_size : int
        The model's batch size: at least two batches of views are decoded ahead.
    """

    def __init__(
        self,
        windows: Iterator[Window],
        plan: Callable[[Window], list[Task]],
        prepare: Callable[[Task], Prepared],
        *,
        reader: Executor,
        decoder: Executor,
        images_per_task: int,
        batch_size: int,
    ) -> None:
        self._windows = windows
        self._plan = plan
        self._prepare = prepare
        self._reader = reader
        self._decoder = decoder
        self._images_per_task = images_per_task
        self._views_ahead = 2 * batch_size
        self._reading: deque[tuple[Window, list[Future]]] = deque()
        self._planned: deque[tuple[Task, list[int]]] = deque()
        self._decoding: deque[tuple[list[tuple[Task, list[int]]], Future]] = deque()
        self._views_decoding = 0
        self._input_size_known = False
        self._windows_held = 0
        self._inputs_left = True

    def __iter__(self) -> Iterator[tuple[Task, Prepared]]:
        while True:
            self._top_up()
            if not self._decoding:
                return
            tasks, future = self._decoding.popleft()
            for (task, window_left), prepared in zip(tasks, future.result(), strict=True):
                self._views_decoding -= len(task[1])
                if not self._input_size_known and prepared[0]:
                    self._learn_input_size(prepared[0][0][1])
                window_left[0] -= 1
                if window_left[0] == 0:
                    self._windows_held -= 1
                yield task, prepared

    def _top_up(self) -> None:
        """Start reading, plan what is read and start decoding, as far as the bounds allow.

        Waits for a window's files only when nothing else is planned or decoding; when nothing
        is left to decode afterwards, every input has been planned.
        """
        while True:
            self._start_reading()
            idle = not self._planned and not self._decoding
            if not self._reading or not (idle or _all_done(self._reading[0][1])):
                break
            window, reads = self._reading.popleft()
            for read in reads:
                read.result()
            tasks = self._plan(window)
            if not tasks:
                self._windows_held -= 1
                continue
            window_left = [len(tasks)]  # one counter that the window's tasks share
            self._planned.extend((task, window_left) for task in tasks)
            # The threads start on this window while the next one is looked up in the cache.
            self._start_decoding()
        self._start_decoding()

    def _start_reading(self) -> None:
        while self._inputs_left and self._windows_held < 2:
            window = next(self._windows, None)
            if window is None:
                self._inputs_left = False
                return
            self._reading.append(
                (window, submit_reads(self._reader, window, self._images_per_task))
            )
            self._windows_held += 1

    def _start_decoding(self) -> None:
        while self._planned and self._views_decoding < self._views_ahead:
            size = min(self._images_per_task, len(self._planned))
            run = [self._planned.popleft() for _ in range(size)]
            self._views_decoding += sum(len(task[1]) for task, _ in run)
            future = self._decoder.submit(_prepare_all, self._prepare, [task for task, _ in run])
            self._decoding.append((run, future))

    def _learn_input_size(self, model_input: torch.Tensor) -> None:
        fitting = DECODED_BYTES // max(1, model_input.numel() * model_input.element_size())
        self._views_ahead = max(self._views_ahead, fitting)
        self._input_size_known = True


def submit_reads(pool: Executor, window: Window, files_per_task: int) -> list[Future]:
    """Read and hash the files of a window whose key is not remembered, a run per task.

    Parameters
    ----------
    pool : Executor
        Where to read.
    window : Window
        The inputs; images in memory and files whose key is remembered need no reading.
    files_per_task : int
        Files read by one task.

    Returns
    -------
    list of Future
        One per task; a file that cannot be read sets its source's ``error`` instead of
        raising.
    """
    unread = [source for _, source in window if source.key is None and source.error is None]
    return [pool.submit(_read_all, run) for run in _runs_of(unread, files_per_task)]


def _all_done(futures: list[Future]) -> bool:
    return all(future.done() for future in futures)


def _read_all(sources: list[ImageSource]) -> None:
    for source in sources:
        source.read()


def _prepare_all(prepare: Callable[[Task], Prepared], tasks: list[Task]) -> list[Prepared]:
    return [prepare(task) for task in tasks]


def _runs_of(items: list, size: int) -> list[list]:
    """Consecutive runs of ``size`` items (the last one shorter)."""
    return [items[start : start + size] for start in range(0, len(items), size)]
