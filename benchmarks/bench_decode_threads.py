"""Which parts of the threaded decoding pipeline the featurizer's throughput owes to.

Runs ``CLIPFeaturizer.transform`` (cold, memory-only cache) with ``worker_type="threads"``
as it is and with one part of ``skcicm.featurizer._decode_threads`` undone at a time, plus a
bare loop that keeps a fixed number of images in flight, one thread task each. Every variant
is timed in turns with the bare ``pool.map`` loop of ``bench_featurizer_throughput.py``; the script
prints each variant's median time and the ratio median(pool.map) / median(variant), so 1.0
means as fast as the bare loop.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_decode_threads.py [--torch-threads 1] \
        [--pairs 8] [--variants map,featurizer,one-image-per-task,...]

The ``featurizer``, ``map`` and ``bounded`` variants also run against an older checkout of
the package (``PYTHONPATH=/path/to/checkout``), for a before-and-after in the same session.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from bench_featurizer_throughput import Files, bare_loop, cold, write_pngs

from skcicm import CLIPFeaturizer
from skcicm.featurizer import LoadedCLIP, load_clip
from skcicm.featurizer import _image_encoding as image_encoding


def bounded_loop(loaded: LoadedCLIP, paths: list[str], batch_size: int, in_flight: int) -> None:
    """A bare loop with at most ``in_flight`` images submitted and not yet taken, one per task."""
    files = Files(paths, loaded.preprocess)
    with ThreadPoolExecutor(2) as pool:
        remaining = iter(range(len(paths)))
        pending = deque(
            pool.submit(files.__getitem__, index)
            for _, index in zip(range(in_flight), remaining, strict=False)
        )
        batch: list[torch.Tensor] = []
        while pending:
            batch.append(pending.popleft().result())
            following = next(remaining, None)
            if following is not None:
                pending.append(pool.submit(files.__getitem__, following))
            if len(batch) == batch_size or not pending:
                with torch.inference_mode():
                    loaded.model.encode_image(torch.stack(batch))
                batch = []


def undone(variant: str) -> contextlib.AbstractContextManager:
    """The featurizer with one part of the threaded pipeline undone (see the module)."""
    if variant == "one-image-per-task":
        return mock.patch.object(
            image_encoding.ImageEncoder, "_images_per_task", lambda self, views: 1
        )
    if variant == "reads-in-decoding-pool":
        return mock.patch.object(image_encoding, "_executor", _one_pool_for_both())
    if variant == "two-batches-ahead":
        from skcicm.featurizer import _decode_threads as decode_threads

        return mock.patch.object(decode_threads, "DECODED_BYTES", 1)
    return contextlib.nullcontext()


def _one_pool_for_both() -> Callable:
    original = image_encoding._executor
    shared = {}

    def executor(num_workers: int, role: str):
        if role == "read":  # entered first: the decoding then reuses it
            shared["pool"] = original(num_workers, "decode")
            return shared["pool"]
        return contextlib.nullcontext(shared["pool"])

    return executor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--in-flight", type=int, default=128, help="of the bounded loop")
    parser.add_argument(
        "--variants",
        default="map,featurizer,one-image-per-task,reads-in-decoding-pool,two-batches-ahead,"
        "bounded",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)
    variants = args.variants.split(",")
    if "map" not in variants:
        parser.error("--variants must include map, the baseline")
    loaded = load_clip("toyclip", None, "cpu")
    featurizer = CLIPFeaturizer(
        "toyclip",
        pretrained=None,
        interventions=None,
        batch_size=args.batch_size,
        num_workers=2,
        device="cpu",
        progress=False,
        cache_dir=None,
    )
    with tempfile.TemporaryDirectory() as folder:
        paths = write_pngs(Path(folder), args.n_images, 64)
        featurizer.transform(paths[:8])  # load the model outside the timings
        runs = {
            "map": lambda: bare_loop(loaded, paths, args.batch_size, 2, "threads"),
            "bounded": lambda: bounded_loop(loaded, paths, args.batch_size, args.in_flight),
        }
        times: dict[str, list[float]] = {variant: [] for variant in variants}
        for pair in range(args.pairs):
            for variant in variants if pair % 2 == 0 else variants[::-1]:
                if variant in runs:
                    start = time.perf_counter()
                    runs[variant]()
                    times[variant].append(time.perf_counter() - start)
                else:
                    with undone(variant):
                        times[variant].append(cold(featurizer, "transform", paths))
    medians = {variant: float(np.median(seconds)) for variant, seconds in times.items()}
    print(
        f"{args.n_images} PNGs, toyclip, batch {args.batch_size}, 2 decoding threads, "
        f"torch threads {args.torch_threads}, {args.pairs} turns"
    )
    for variant in variants:
        ratio = medians["map"] / medians[variant]
        print(f"  {variant:24s} median {medians[variant]:6.3f} s   map / this {ratio:.3f}")


if __name__ == "__main__":
    main()
