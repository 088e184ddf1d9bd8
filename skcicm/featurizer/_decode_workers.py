"""Decoding images in ``torch.utils.data.DataLoader`` worker processes.

Threads share one interpreter lock, so PIL decoding, preprocessing and the augmentations of
intervened copies scale with threads only as far as these release it. Worker processes do not
share it: ``CLIPFeaturizer(worker_type="processes")`` hands each cache miss to a DataLoader
whose workers decode, intervene on and preprocess the images of a batch and stack their
views, in shared memory, into the one tensor the model encodes (pinned when the model is on a
GPU).

The main process keeps what needs the cache: it reads and hashes the files (in threads), looks
their views up, and sends the workers only the images with a missing view, with the bytes
already read, so that a file is still read once and a cached image is never decoded. The
batches to decode are planned lazily, as the DataLoader asks for the next one, so memory holds
a bounded number of batches in flight (``2 * num_workers``, the DataLoader's prefetch), not
the data set. Workers start for each call with a cache miss, and not at all for a cached call.

Workers start with the process's multiprocessing start method. With ``fork`` (Linux's default)
they inherit the model's preprocessing and the interventions; CPU tensors are safe across a
fork, and the workers never touch CUDA, so a parent that has initialised CUDA is fine too.
With ``spawn`` or ``forkserver`` these are pickled to each worker, so the interventions must
be picklable (module-level functions or classes, not lambdas); :func:`check_workers_can_start`
says so before any work starts. A daemonic process (a Dask worker) may not start workers at all.
"""

from __future__ import annotations

import multiprocessing
import pickle
import threading
from collections.abc import Callable, Iterable, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision.transforms import v2

from skcicm.featurizer._gpu_decoding import JPEGDecoder
from skcicm.featurizer._images import ImageSource, error_reason
from skcicm.featurizer._interventions import ImageInterventions, InterventionError

#: One image to decode: its source and the (view key, view) pairs it still lacks.
Task = tuple[ImageSource, list[tuple[str, "int | None"]]]
#: (content key, failure or None) per image, the view keys, and their stacked tensors.
DecodedBatch = tuple[list[tuple[str, "str | None"]], list[str], torch.Tensor]


def prepare_views(
    task: Task,
    preprocess: Callable[[Image.Image], torch.Tensor],
    interventions: ImageInterventions | None,
    downscale: Callable[[Image.Image], Image.Image] | None,
    jpeg_decoder: JPEGDecoder | None = None,
) -> tuple[list[tuple[str, torch.Tensor]], str | None]:
    """Decode one image and make the model inputs of its missing views.

    The same function runs in decoding threads and in worker processes, so both give the
    same tensors, bit for bit.

    Parameters
    ----------
    task : (ImageSource, list of (str, int or None))
        The image, and the cache key and view (None: clean) of each view to make.
    preprocess : callable
        The model's preprocessing, PIL image to tensor.
    interventions : ImageInterventions or None
        Applied for the views that are not None.
    downscale : callable or None
        The preprocessing's own first resize, applied before intervening.
    jpeg_decoder : JPEGDecoder or None, default=None
        Decodes JPEG files on the GPU, where their clean view is preprocessed; intervened
        copies are made from its pixels, copied back (see :mod:`skcicm.featurizer`).

    Returns
    -------
    outputs : list of (str, Tensor)
        The view key and model input of each view; empty when the image failed.
    failure : str or None
        Why the image could not be decoded or intervened on, else None.
    """
    source, wanted = task
    intervened = any(view is not None for _, view in wanted)
    try:
        pixels = None if jpeg_decoder is None else jpeg_decoder.decode(source)
        if pixels is None:
            image = source.decode()
        else:
            image = v2.functional.to_pil_image(pixels.cpu()) if intervened else None
        if downscale is not None and intervened:
            image = downscale(image)
        outputs = []
        for key, view in wanted:
            if view is not None:
                tensor = preprocess(interventions.apply(image, key=source.key, view=view))
            elif pixels is not None:
                tensor = jpeg_decoder.preprocess(pixels)
            else:
                tensor = preprocess(image)
            outputs.append((key, tensor))
        return outputs, None
    except InterventionError as error:
        raise InterventionError(f"{error} (on {source.name})") from error.__cause__
    except Exception as error:  # noqa: BLE001 - reported per file, the rest go on
        return [], error_reason(error)
    finally:
        source.release()


class ViewsDataset(Dataset):
    """Items are :data:`Task` objects themselves, planned by the main process; see the module.

    Parameters
    ----------
    preprocess : callable
        The model's preprocessing, PIL image to tensor.
    interventions : ImageInterventions or None
        Applied for the views that are not None.
    downscale : callable or None
        The preprocessing's own first resize, applied before intervening.
    """

    def __init__(
        self,
        preprocess: Callable[[Image.Image], torch.Tensor],
        interventions: ImageInterventions | None,
        downscale: Callable[[Image.Image], Image.Image] | None,
    ) -> None:
        self.preprocess = preprocess
        self.interventions = interventions
        self.downscale = downscale

    def __getitem__(self, task: Task) -> tuple[str, list[tuple[str, torch.Tensor]], str | None]:
        outputs, failure = prepare_views(task, self.preprocess, self.interventions, self.downscale)
        return task[0].key, outputs, failure


def collate_views(
    items: Sequence[tuple[str, list[tuple[str, torch.Tensor]], str | None]],
) -> DecodedBatch:
    """Stack the views of a batch of images into one tensor (in shared memory, in a worker).

    Parameters
    ----------
    items : sequence of (str, list of (str, Tensor), str or None)
        What :class:`ViewsDataset` gives for each image of the batch.

    Returns
    -------
    done : list of (str, str or None)
        Each image's content key, and why it failed or None.
    keys : list of str
        The view keys of the rows of ``stacked``.
    stacked : Tensor
        The model inputs of every view, stacked; empty when every image failed.
    """
    outputs = [output for _, image_outputs, _ in items for output in image_outputs]
    stacked = default_collate([tensor for _, tensor in outputs]) if outputs else torch.empty(0)
    return [(key, failure) for key, _, failure in items], [key for key, _ in outputs], stacked


def reset_inherited_locks(worker_id: int) -> None:
    """``worker_init_fn``: a forked worker gets a fresh intervention lock.

    A fork copies a lock as it is; had a thread of the parent (another featurizer) held it at
    that moment, the worker would wait on it forever.

    Parameters
    ----------
    worker_id : int
        The DataLoader's index of the worker; unused.
    """
    ImageInterventions._global_rng_lock = threading.Lock()


def check_workers_can_start(dataset: ViewsDataset) -> None:
    """Fail before any work when worker processes could not start or receive their work.

    Parameters
    ----------
    dataset : ViewsDataset
        What each worker process needs.

    Raises
    ------
    ValueError
        In a daemonic process (a Dask worker, a ``multiprocessing.Pool`` worker), which may
        not start processes of its own.
    TypeError
        When the start method pickles the dataset for the workers (``spawn``,
        ``forkserver``) and it does not pickle, e.g. with a lambda among the interventions.
    """
    if multiprocessing.current_process().daemon:
        raise ValueError(
            "worker_type='processes' cannot start worker processes here: this is a daemonic "
            "process (a Dask or multiprocessing.Pool worker), which may not have children. "
            "Use worker_type='threads' in such workers."
        )
    method = multiprocessing.get_start_method()
    if method == "fork":
        return
    try:
        pickle.dumps(dataset)
    except Exception as error:
        raise TypeError(
            f"worker_type='processes' with the {method!r} start method pickles the model's "
            f"preprocessing and the interventions for each worker, and they do not pickle "
            f"({error}). Use module-level functions or classes as interventions, the 'fork' "
            "start method, or worker_type='threads'."
        ) from error


def decoding_loader(
    dataset: ViewsDataset, batches: Iterable[list[Task]], num_workers: int, pin_memory: bool
) -> DataLoader:
    """A DataLoader whose workers decode the planned ``batches`` of tasks, in order.

    Parameters
    ----------
    dataset : ViewsDataset
        Decodes one task.
    batches : iterable of list of Task
        Planned lazily by the main process; the DataLoader asks for ``2 * num_workers``
        batches ahead.
    num_workers : int
        Worker processes, at least 1.
    pin_memory : bool
        Copy each stacked batch to pinned memory, for a non-blocking copy to the GPU.

    Returns
    -------
    torch.utils.data.DataLoader
        Yields one :data:`DecodedBatch` per planned batch.
    """
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=num_workers,
        collate_fn=collate_views,
        pin_memory=pin_memory,
        worker_init_fn=reset_inherited_locks,
    )
