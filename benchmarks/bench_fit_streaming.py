"""Fit time and memory of InvariantCausalMechanism against the floor of its Gram products.

The floor is what any exact fit must do: ``Z^T Z`` plus ``Delta^T Delta`` over ``n_views``
copies, i.e. 1 + n_views Gram products of n x d in the input's dtype (float32), measured in the
same run as ``Z.T @ Z`` and ``V.T @ V`` with V the views reshaped to (n * n_views, d). Memory is
the peak of numpy allocations during the fit (tracemalloc), beside the input's size.
``--before`` also times the first release's batch computation (float64 copies and a
materialised Delta), which needs ~ (2 + 3 n_views) x the input in memory.

Run from the repository root so that this checkout's skcicm is imported; on a shared machine
one BLAS thread gives steadier ratios::

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_fit_streaming.py \
        --n 200000 500000 --d 512 768 --views 1 7
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from skcicm import InvariantCausalMechanism


def _best_of(repeats: int, function) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def _peak_bytes(function) -> int:
    tracemalloc.start()
    function()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def _before(Z: np.ndarray, views: np.ndarray, lam: float, k: int) -> np.ndarray:
    """The first release's fit of the subspace: float64 copies and a materialised Delta."""
    X = Z.astype(np.float64)
    deltas = (X[:, None, :] - views.astype(np.float64)).reshape(-1, X.shape[1])
    sigma_z = X.T @ X / len(X)
    sigma_delta = deltas.T @ deltas / len(deltas)
    return np.linalg.eigh(sigma_z - lam * sigma_delta)[1][:, -k:]


def run(n: int, d: int, n_views: int, repeats: int, before: bool) -> dict[str, float]:
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((n, d), dtype=np.float32)
    views = Z[:, None, :] + 0.1 * rng.standard_normal((n, n_views, d), dtype=np.float32)
    text = rng.standard_normal((10, d))
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
        "input_mb": (Z.nbytes + views.nbytes) / 2**20,
        "floor_s": floor,
        "fit_s": _best_of(repeats, fit),
    }
    row["fit_over_floor"] = row["fit_s"] / floor
    row["fit_peak_extra_mb"] = _peak_bytes(fit) / 2**20
    if before:
        row["before_s"] = _best_of(repeats, lambda: _before(Z, views, 1.0, 64))
        row["before_over_floor"] = row["before_s"] / floor
        row["before_peak_extra_mb"] = _peak_bytes(lambda: _before(Z, views, 1.0, 64)) / 2**20
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[50_000])
    parser.add_argument("--d", type=int, nargs="+", default=[512])
    parser.add_argument("--views", type=int, nargs="+", default=[1, 7])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", action="store_true", help="also time the batch computation")
    args = parser.parse_args()
    for n in args.n:
        for d in args.d:
            for n_views in args.views:
                row = run(n, d, n_views, args.repeats, args.before)
                print(
                    "  ".join(
                        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in row.items()
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
