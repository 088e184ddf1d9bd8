"""Featurizer peak memory against the number of images, and the cost of a cached transform.

For each data set size, fresh processes load the model and call ``transform`` on that many
PNG files, with an on-disk embedding cache:

- cold: nothing cached (the call encodes every image and fills the disk cache);
- warm: a new process, every embedding on disk (the call hashes every file, decodes none).

A sampling thread records the peak resident set size during each call, above the RSS just
before it; with ``--worker-type processes`` the RSS of the DataLoader worker processes is added
(each counts the pages it shares with the parent, so the level is high, but it must not grow
with the number of images either). Flat memory means the peak does not grow with the number
of images beyond the output (n x embedding_dim float32) and bookkeeping of a few hundred
bytes per image.

The cold process then repeats its call (every embedding in memory and every file key
remembered), timed per path against ``np.load`` of the same embeddings stacked in one
``.npy`` file: the floor for "the embeddings are already computed".

    python benchmarks/bench_featurizer_memory.py [--sizes 2000 20000] [--model toyclip] \
        [--worker-type processes]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image


def write_pngs(folder: Path, n: int, size: int) -> list[str]:
    """Random-noise PNGs (incompressible: about 3 x size**2 bytes each)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        paths.append(str(folder / f"{i:06d}.png"))
        if not os.path.exists(paths[-1]):
            pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(paths[-1], compress_level=1)
    return paths


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every millisecond."""

    def __enter__(self) -> PeakRSS:
        self._process = psutil.Process()
        self.start = self._process.memory_info().rss
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _rss(self) -> int:
        rss = self._process.memory_info().rss
        for worker in self._process.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):  # a worker that has just exited
                rss += worker.memory_info().rss
        return rss

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def child(
    model: str, folder: str, n: int, workers: int, worker_type: str, cache_dir: str, phase: str
) -> None:
    import torch

    from skcicm import CLIPFeaturizer

    torch.set_num_threads(1)
    paths = sorted(str(p) for p in Path(folder).glob("*.png"))[:n]
    featurizer = CLIPFeaturizer(
        model,
        pretrained=None,
        interventions=None,
        num_workers=workers,
        worker_type=worker_type,
        cache_dir=cache_dir,
        progress=False,
    )
    featurizer.encode_text(["a"])  # load the model before measuring
    with PeakRSS() as first:
        start = time.perf_counter()
        embeddings = featurizer.transform(paths)
        first_s = time.perf_counter() - start
    row = {"n": n, "phase": phase, "peak_mb": first.growth_mb, "seconds": first_s}
    if phase == "cold":
        start = time.perf_counter()
        again = featurizer.transform(paths)
        row["repeat_us_per_path"] = (time.perf_counter() - start) / n * 1e6
        assert np.array_equal(embeddings, again)
        with tempfile.TemporaryDirectory() as scratch:
            stacked = os.path.join(scratch, "stacked.npy")
            np.save(stacked, embeddings)
            start = time.perf_counter()
            loaded = np.load(stacked)
            row["np_load_us_per_path"] = (time.perf_counter() - start) / n * 1e6
        assert np.array_equal(loaded, embeddings)
        row["files_mb"] = sum(os.path.getsize(p) for p in paths) / 2**20
        row["output_mb"] = embeddings.nbytes / 2**20
    print(json.dumps(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--model", default="toyclip")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-type", choices=["threads", "processes"], default="threads")
    parser.add_argument("--folder", help="reuse generated PNGs here (default: a temp folder)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        folder, n, cache_dir, phase = args.child
        child(args.model, folder, int(n), args.workers, args.worker_type, cache_dir, phase)
        return
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.folder or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        write_pngs(folder, max(args.sizes), args.image_size)
        rows = []
        for n in args.sizes:
            cache_dir = os.path.join(scratch, f"cache-{n}")
            row = {}
            for phase in ("cold", "warm"):
                command = [sys.executable, __file__, "--child", str(folder), str(n)]
                command += [cache_dir, phase, "--model", args.model, "--workers", str(args.workers)]
                command += ["--worker-type", args.worker_type]
                output = subprocess.run(command, check=True, capture_output=True, text=True)
                result = json.loads(output.stdout.strip().splitlines()[-1])
                row.update({f"{phase}_{key}": value for key, value in result.items()})
                row.update(result)
            rows.append(row)
    print(
        f"{'images':>7} {'files MB':>9} {'output MB':>9} {'cold peak MB':>12} "
        f"{'warm peak MB':>12} {'repeat us/path':>14} {'np.load us/path':>15} {'ratio':>6}"
    )
    for row in rows:
        print(
            f"{row['n']:>7} {row['files_mb']:>9.1f} {row['output_mb']:>9.1f} "
            f"{row['cold_peak_mb']:>12.1f} {row['warm_peak_mb']:>12.1f} "
            f"{row['repeat_us_per_path']:>14.2f} {row['np_load_us_per_path']:>15.3f} "
            f"{row['repeat_us_per_path'] / row['np_load_us_per_path']:>6.0f}"
        )
    first, last = rows[0], rows[-1]
    print(
        f"peak growth from {first['n']} to {last['n']} images: cold "
        f"{last['cold_peak_mb'] - first['cold_peak_mb']:+.1f} MB, warm "
        f"{last['warm_peak_mb'] - first['warm_peak_mb']:+.1f} MB, for "
        f"{last['files_mb'] - first['files_mb']:+.1f} MB more files and "
        f"{last['output_mb'] - first['output_mb']:+.1f} MB more output"
    )


if __name__ == "__main__":
    main()
