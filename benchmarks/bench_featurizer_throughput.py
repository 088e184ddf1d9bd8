"""Featurizer throughput against a bare open_clip loop, and decoding threads against processes.

Part 1, overhead: ``CLIPFeaturizer.transform`` of PNG files (cold: empty caches) against a bare
loop that does only what any encoder must: read and preprocess the files in the same number of
workers, stack batches of the same size and call ``encode_image`` under ``inference_mode``.
For ``worker_type="threads"`` the bare loop uses a thread pool, for ``"processes"`` a
``torch.utils.data.DataLoader`` with as many worker processes. The ratio bare time /
featurizer time is 1.0 when the featurizer adds nothing. Single runs vary by 10% or more on a
shared machine, so the two take turns in ``--pairs`` pairs: the script prints the median of
the pairs' ratios with a bootstrap 95% interval, and the ratio of the minimum times.

Part 2, interventions: source images per second of ``fit_transform`` with 7 intervened views
(the paper's augmentations) for 0, 2 and N workers: threads with every transform held under
the global torch-RNG lock (as before the lock-free draw), threads, and worker processes.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_featurizer_throughput.py \
        [--model toyclip] [--n-images 2000] [--pairs 10] [--max-workers N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from PIL import Image

from skcicm import CLIPFeaturizer
from skcicm.featurizer import LoadedCLIP, load_clip
from skcicm.featurizer import _interventions as interventions
from skcicm.featurizer._images import forget_file_keys
from skcicm.featurizer.cache import clear_memory_cache


def write_pngs(folder: Path, n: int, size: int, seed: int = 0) -> list[str]:
    """Smooth random images (a coarse noise grid upsampled), so PNG sizes are realistic."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        coarse = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((size, size), Image.BILINEAR)
        paths.append(str(folder / f"{i:06d}.png"))
        image.save(paths[-1])
    return paths


class Files(torch.utils.data.Dataset):
    """Decode and preprocess one file per item: the bare loop's work, in threads or processes."""

    def __init__(self, paths: list[str], preprocess) -> None:
        self.paths, self.preprocess = paths, preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.paths[index]) as image:
            return self.preprocess(image.convert("RGB"))


def bare_loop(
    loaded: LoadedCLIP, paths: list[str], batch_size: int, workers: int, worker_type: str
) -> np.ndarray:
    files = Files(paths, loaded.preprocess)
    outputs = []
    if worker_type == "processes":
        loader = torch.utils.data.DataLoader(files, batch_size=batch_size, num_workers=workers)
        with torch.inference_mode():
            outputs = [loaded.model.encode_image(batch).numpy() for batch in loader]
        return np.concatenate(outputs)
    # pool.map submits every file at once: the threads decode as far ahead as they can, and
    # all decoded images may be held at once (the featurizer bounds both).
    with ThreadPoolExecutor(max(workers, 1)) as pool:
        indices = range(len(paths))
        tensors = (
            pool.map(files.__getitem__, indices) if workers else map(files.__getitem__, indices)
        )
        batch: list[torch.Tensor] = []
        for tensor in tensors:
            batch.append(tensor)
            if len(batch) == batch_size:
                with torch.inference_mode():
                    outputs.append(loaded.model.encode_image(torch.stack(batch)).numpy())
                batch = []
        if batch:
            with torch.inference_mode():
                outputs.append(loaded.model.encode_image(torch.stack(batch)).numpy())
    return np.concatenate(outputs)


def cold(featurizer: CLIPFeaturizer, method: str, paths: list[str]) -> float:
    clear_memory_cache()
    forget_file_keys()
    start = time.perf_counter()
    getattr(featurizer, method)(paths)
    return time.perf_counter() - start


def overhead(args: argparse.Namespace, paths: list[str]) -> None:
    print(
        f"\n[overhead] {len(paths)} PNGs, {args.model}, batch {args.batch_size}, "
        f"{args.workers} workers, {args.pairs} pairs of runs (bare loop and featurizer, "
        "taking turns to go first)"
    )
    loaded = load_clip(args.model, None, "cpu")
    for worker_type in ("threads", "processes"):
        featurizer = CLIPFeaturizer(
            args.model,
            pretrained=None,
            interventions=None,
            batch_size=args.batch_size,
            num_workers=args.workers,
            worker_type=worker_type,
            device="cpu",
            progress=False,
            cache_dir=None,  # memory only: cold() then empties every cache
        )
        featurizer.transform(paths[:8])  # load the model outside the timings

        def run_bare(kind: str = worker_type) -> float:
            start = time.perf_counter()
            bare_loop(loaded, paths, args.batch_size, args.workers, kind)
            return time.perf_counter() - start

        def run_featurizer(featurizer: CLIPFeaturizer = featurizer) -> float:
            return cold(featurizer, "transform", paths)

        bare_times, featurizer_times = [], []
        for pair in range(args.pairs):
            if pair % 2:
                featurizer_times.append(run_featurizer())
                bare_times.append(run_bare())
            else:
                bare_times.append(run_bare())
                featurizer_times.append(run_featurizer())
        bare, ours = np.array(bare_times), np.array(featurizer_times)
        ratios = bare / ours
        low, high = bootstrap_interval(ratios)
        print(f"  {worker_type}:")
        print(f"    bare loop   min {bare.min():6.2f} s  median {np.median(bare):6.2f} s")
        print(f"    featurizer  min {ours.min():6.2f} s  median {np.median(ours):6.2f} s")
        print(
            f"    featurizer / bare loop throughput: median of pairs {np.median(ratios):.3f} "
            f"(95% CI {low:.3f} to {high:.3f}), ratio of minima {bare.min() / ours.min():.3f}"
        )


def bootstrap_interval(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the median."""
    rng = np.random.default_rng(seed)
    resampled = rng.choice(values, size=(10_000, len(values)), replace=True)
    low, high = np.percentile(np.median(resampled, axis=1), [2.5, 97.5])
    return float(low), float(high)


def locked_call(transform, image, seed):
    with interventions.ImageInterventions._global_rng_lock, torch.random.fork_rng(devices=[]):
        # The same seeding as the lock-free path, so that only the lock differs.
        interventions._seed_cpu_generator(seed)
        return transform(image)


def intervention_scaling(args: argparse.Namespace, paths: list[str]) -> None:
    paths = paths[: args.n_intervened]
    print(f"\n[interventions] fit_transform of {len(paths)} PNGs with 7 views, {args.model}")
    print("  source img/s; ratios against threads in the same run")
    print(
        f"  {'workers':>7}  {'locked threads':>14}  {'threads':>8}  {'processes':>9}  "
        f"{'threads/locked':>14}  {'processes/threads':>17}"
    )
    for workers in sorted({0, 2, args.max_workers}):
        featurizers = {
            variant: CLIPFeaturizer(
                args.model,
                pretrained=None,
                n_interventions=7,
                batch_size=args.batch_size,
                num_workers=workers,
                worker_type="processes" if variant == "processes" else "threads",
                device="cpu",
                progress=False,
                cache_dir=None,  # memory only: cold() then empties every cache
            )
            for variant in ("locked", "threads", "processes")
        }
        times: dict[str, list[float]] = {variant: [] for variant in featurizers}
        # Variants take turns within each repeat, so that a change in the machine's load
        # falls on all of them alike.
        for _ in range(args.repeats):
            for variant, featurizer in featurizers.items():
                if variant == "locked":
                    with mock.patch.object(interventions, "_seeded_call", locked_call):
                        times[variant].append(cold(featurizer, "fit_transform", paths))
                else:
                    times[variant].append(cold(featurizer, "fit_transform", paths))
        rates = {variant: len(paths) / min(spent) for variant, spent in times.items()}
        print(
            f"  {workers:>7}  {rates['locked']:>14.0f}  {rates['threads']:>8.0f}  "
            f"{rates['processes']:>9.0f}  {rates['threads'] / rates['locked']:>14.2f}  "
            f"{rates['processes'] / rates['threads']:>17.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toyclip")
    parser.add_argument("--n-images", type=int, default=2000)
    parser.add_argument("--n-intervened", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--max-workers",
        type=int,
        default=os.cpu_count() or 2,
        help="N of the 0 / 2 / N workers of part 2 (default: the CPU count)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="repeats of part 2")
    parser.add_argument("--pairs", type=int, default=10, help="pairs of runs of part 1")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads, the same for both sides (OpenMP spinning on a busy "
        "machine can slow a small model 20x)",
    )
    parser.add_argument("--skip-interventions", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)
    with tempfile.TemporaryDirectory() as folder:
        paths = write_pngs(Path(folder), args.n_images, args.image_size)
        overhead(args, paths)
        if not args.skip_interventions:
            intervention_scaling(args, paths)


if __name__ == "__main__":
    main()
