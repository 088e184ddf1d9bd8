"""Fit time and memory of InvariantCausalMechanism against the floor of its Gram products.

The floor is what any exact fit must do: ``Z^T Z`` plus ``Delta^T Delta`` over ``n_views``
copies, i.e. 1 + n_views Gram products of n x d in the input's dtype (float32), measured in the
same run as ``Z.T @ Z`` and ``V.T @ V`` with V the views reshaped to (n * n_views, d), on the
same arrays the fit reads. Memory beyond the input is measured two ways during one fit: the
peak of numpy allocations (tracemalloc), and the peak growth of the process's anonymous
resident memory (``RssAnon`` of /proc/self/status, sampled every millisecond), which also
counts BLAS buffers and excludes the pages of a memory-mapped input.
``--before`` also times the first release's batch computation (float64 copies and a
materialised Delta), which needs ~ (2 + 3 n_views) x the input in memory.

``--memmap DIR`` writes the inputs to ``numpy.memmap`` files in DIR (deleted after each row)
and fits from them opened read-only, as a fit from embeddings larger than memory would; the
floor then reads the same mapped files.

Run from the repository root so that this checkout's skcicm is imported; on a shared machine
one BLAS thread gives steadier ratios::

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_fit_streaming.py \
        --n 200000 500000 --d 512 768 --views 1 7 --memmap /tmp
"""

from __future__ import annotations

import argparse
import ctypes
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np

from skcicm import InvariantCausalMechanism


def _best_of(repeats: int, function) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def _rss_anon_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no RssAnon line (Linux only).")


def _peak_extra(function) -> tuple[int, int]:
    """Peak numpy allocations (tracemalloc) and peak growth of anonymous RSS during one call."""
    # Free heap pages that malloc keeps from earlier runs would hide the call's own growth.
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    baseline = _rss_anon_bytes()
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_anon_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    tracemalloc.start()
    sampler.start()
    try:
        function()
    finally:
        done.set()
        sampler.join()
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return traced_peak, max(peak[0], _rss_anon_bytes()) - baseline


def _inputs(n: int, d: int, n_views: int, memmap_dir: str | None) -> tuple:
    """Z (n, d) and views (n, n_views, d) in float32, in memory or in read-only memmap files."""
    rng = np.random.default_rng(0)
    if memmap_dir is None:
        Z = rng.standard_normal((n, d), dtype=np.float32)
        views = Z[:, None, :] + 0.1 * rng.standard_normal((n, n_views, d), dtype=np.float32)
        return Z, views, []
    paths = [Path(memmap_dir) / f"bench_fit_{n}x{d}x{n_views}_{name}.f32" for name in "ZV"]
    shapes = [(n, d), (n, n_views, d)]

    def mapped(mode: str) -> list[np.memmap]:
        return [np.memmap(p, np.float32, mode, shape=s) for p, s in zip(paths, shapes, strict=True)]

    Z, views = mapped("w+")
    # Written in slices: generating the whole input at once would need it in memory.
    for start in range(0, n, 8192):
        rows = slice(start, min(start + 8192, n))
        Z[rows] = rng.standard_normal((rows.stop - start, d), dtype=np.float32)
        noise = rng.standard_normal((rows.stop - start, n_views, d), dtype=np.float32)
        views[rows] = Z[rows][:, None, :] + 0.1 * noise
    Z.flush()
    views.flush()
    del Z, views
    Z, views = mapped("r")
    return Z, views, paths


def _before(Z: np.ndarray, views: np.ndarray, lam: float, k: int) -> np.ndarray:
    """The first release's fit of the subspace: float64 copies and a materialised Delta."""
    X = Z.astype(np.float64)
    deltas = (X[:, None, :] - views.astype(np.float64)).reshape(-1, X.shape[1])
    sigma_z = X.T @ X / len(X)
    sigma_delta = deltas.T @ deltas / len(deltas)
    return np.linalg.eigh(sigma_z - lam * sigma_delta)[1][:, -k:]


def run(
    n: int, d: int, n_views: int, repeats: int, before: bool, memmap_dir: str | None
) -> dict[str, float]:
    Z, views, paths = _inputs(n, d, n_views, memmap_dir)
    text = np.random.default_rng(1).standard_normal((10, d))
    flat = views.reshape(-1, d)
    floor = _best_of(repeats, lambda: Z.T @ Z) + _best_of(repeats, lambda: flat.T @ flat)

    def fit() -> InvariantCausalMechanism:
        return InvariantCausalMechanism(64, lam=1.0, head="zero_shot").fit(
            Z, interventions=views, class_embeddings=text
        )

    row = {
        "n": n,
        "d": d,
        "views": n_views,
        "memmap": memmap_dir is not None,
        "input_mb": (Z.nbytes + views.nbytes) / 2**20,
        "floor_s": floor,
        "fit_s": _best_of(repeats, fit),
    }
    row["fit_over_floor"] = row["fit_s"] / floor
    traced, rss_anon = _peak_extra(fit)
    row["fit_peak_extra_mb"] = traced / 2**20
    row["fit_rss_anon_extra_mb"] = rss_anon / 2**20
    if before:
        row["before_s"] = _best_of(repeats, lambda: _before(Z, views, 1.0, 64))
        row["before_over_floor"] = row["before_s"] / floor
        traced, rss_anon = _peak_extra(lambda: _before(Z, views, 1.0, 64))
        row["before_peak_extra_mb"] = traced / 2**20
        row["before_rss_anon_extra_mb"] = rss_anon / 2**20
    for path in paths:
        path.unlink()  # the space is freed once the last mapping goes
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[50_000])
    parser.add_argument("--d", type=int, nargs="+", default=[512])
    parser.add_argument("--views", type=int, nargs="+", default=[1, 7])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", action="store_true", help="also time the batch computation")
    parser.add_argument(
        "--memmap",
        metavar="DIR",
        help="write the inputs to numpy.memmap files in DIR and fit from them (read-only)",
    )
    args = parser.parse_args()
    if args.memmap is not None and not Path(args.memmap).is_dir():
        parser.error(f"--memmap {args.memmap}: not a folder")
    for n in args.n:
        for d in args.d:
            for n_views in args.views:
                row = run(n, d, n_views, args.repeats, args.before, args.memmap)
                print(
                    "  ".join(
                        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in row.items()
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
