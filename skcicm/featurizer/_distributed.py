"""Encode image lists that outgrow one machine across the workers of a Dask cluster.

:func:`encode_images_dask` splits the images into partitions and encodes each partition with
the featurizer's own ``transform`` (or ``intervention_embeddings``) on a Dask worker, as one
block of a ``dask.array``. A featurizer pickles without its weights; each worker process loads
the model once (:func:`skcicm.featurizer.load_clip` keeps it per process) and reuses it for every
partition it runs. With ``cache_dir`` on a filesystem that every worker sees, each embedding is
written to the shared cache as soon as its batch is encoded, so an interrupted run resumes,
and a later single-process ``fit`` or ``transform`` with the same ``cache_dir`` encodes
nothing again. Rows come back in input order.

Install the extra: ``pip install "skcicm[dask]"``.

Several machines
----------------
Start a scheduler on one node and workers on the others, then hand the client to this module::

    dask scheduler                                    # node 0, listens on :8786
    dask worker tcp://node0:8786 --nworkers 1 --nthreads 1   # every other node

    from dask.distributed import Client
    client = Client("tcp://node0:8786")
    embeddings = encode_images_dask(
        CLIPFeaturizer("ViT-B-16", cache_dir="/shared/skcicm-cache"), paths, client=client
    )

Every worker must read the image paths and the weights; a shared filesystem (NFS, Lustre) is
the simple way. Model fingerprints name weights by content, so a ``local-dir:`` model copied
to a different path on each node still shares the embedding cache. One thread per worker is
right for encoding: torch parallelises each forward pass itself, and the featurizer's
``num_workers`` threads decode images alongside it.

Several GPUs
------------
Run one worker per GPU, each seeing only its own device, so that ``device="auto"`` (which
means ``cuda:0``) is a different GPU in each worker::

    for gpu in 0 1 2 3; do
        CUDA_VISIBLE_DEVICES=$gpu dask worker tcp://node0:8786 --nthreads 1 &
    done

``dask_cuda.LocalCUDACluster()`` does the same on one machine. Choose ``partition_size`` so
that each GPU gets many partitions (load balance) of many batches each (few round trips).
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import Any

import numpy as np

from skcicm.featurizer._images import as_image_list

#: The :class:`~skcicm.CLIPFeaturizer` methods :func:`encode_images_dask` can run per block.
METHODS = ("transform", "intervention_embeddings")


def encode_images_dask(
    featurizer: Any,
    images: Any,
    *,
    client: Any = None,
    partition_size: int = 1024,
    method: str = "transform",
    as_dask_array: bool = False,
) -> Any:
    """Encode images on a Dask cluster, a partition per task, with one model per worker process.

    Parameters
    ----------
    featurizer : CLIPFeaturizer
        Its parameters (model, device, batch size, ``cache_dir``...) apply on every worker.
        Set ``cache_dir`` to a folder all workers share to make the work resumable and
        reusable; without it each worker caches in its own memory only.
    images : sequence of images
        Paths (preferred: a task then carries strings, not pixels), PIL images or arrays, as
        ``featurizer.transform`` accepts them.
    client : dask.distributed.Client or None, default=None
        Cluster to run on; None uses Dask's current scheduler (the default client if one
        exists, else local threads).
    partition_size : int, default=1024
        Images per task. Each task runs ``featurizer.batch_size`` images per forward pass.
    method : {"transform", "intervention_embeddings"}, default="transform"
        The featurizer method each task runs: clean embeddings ``(n_images, dim)``, or the
        intervened copies ``(n_images, n_interventions, dim)``.
    as_dask_array : bool, default=False
        Return the lazy ``dask.array`` (one block per partition) instead of computing it.

    Returns
    -------
    embeddings : ndarray or dask.array.Array
        What ``getattr(featurizer, method)(images)`` returns, in input order.

    Raises
    ------
    ValueError
        When ``method`` or ``partition_size`` is invalid, ``images`` is empty, or the
        featurizer cannot run ``method`` (checked by one task before the partitions are
        queued).
    TypeError
        When ``partition_size`` is not an int.
    skcicm.featurizer.ImageLoadError
        When images of a partition cannot be read; the others are encoded and cached.

    Examples
    --------
    >>> from dask.distributed import Client, LocalCluster
    >>> from skcicm import CLIPFeaturizer
    >>> from skcicm.datasets import make_toyworld
    >>> world = make_toyworld(n_per_cell=1, domains=["photo", "sketch"], random_state=0)
    >>> featurizer = CLIPFeaturizer("toyclip", interventions=None, progress=False)
    >>> with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
    ...     with Client(cluster) as client:
    ...         embeddings = encode_images_dask(
    ...             featurizer, world.images, client=client, partition_size=4
    ...         )
    >>> bool(np.allclose(embeddings, featurizer.transform(world.images), atol=1e-6))
    True
    """
    import dask
    import dask.array as da

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}.")
    if not isinstance(partition_size, Integral) or isinstance(partition_size, bool):
        raise TypeError(f"partition_size must be an int; got {type(partition_size).__name__}.")
    if partition_size < 1:
        raise ValueError(f"partition_size must be at least 1; got {partition_size}.")
    items = as_image_list(images)
    if not items:
        raise ValueError(
            "images holds no images; pass at least one image path, PIL image or array."
        )
    partitions = [items[i : i + partition_size] for i in range(0, len(items), partition_size)]
    # Run first, on a worker: a bad parameter or model fails before the real work is queued,
    # and the model it loads serves that worker's partitions.
    dim, n_views = _compute(dask.delayed(_output_layout, pure=True)(featurizer, method), client)
    blocks = []
    for partition in partitions:
        block = dask.delayed(_encode_partition, pure=True)(featurizer, partition, method)
        shape = (len(partition), dim) if n_views is None else (len(partition), n_views, dim)
        blocks.append(da.from_delayed(block, shape=shape, dtype=np.float32))
    embeddings = da.concatenate(blocks, axis=0)
    return embeddings if as_dask_array else _compute(embeddings, client)


def _compute(collection: Any, client: Any) -> Any:
    if client is None:
        return collection.compute()
    return client.compute(collection).result()


def _output_layout(featurizer: Any, method: str) -> tuple[int, int | None]:
    """Embedding size and, for intervened copies, their number (validates the featurizer)."""
    from sklearn.base import clone

    fitted = clone(featurizer).fit([])
    if method == "transform":
        return fitted.embedding_dim_, None
    if fitted.interventions is None:
        raise ValueError(
            "interventions=None: this featurizer computes no intervened copies of images; set "
            "interventions to 'paper' or a list of transforms to embed some."
        )
    return fitted.embedding_dim_, fitted.n_interventions


def _encode_partition(featurizer: Any, partition: Sequence[Any], method: str) -> np.ndarray:
    return getattr(featurizer, method)(partition)
