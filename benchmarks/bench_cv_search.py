"""InvariantCausalMechanismCV against GridSearchCV over the same grid, in the same run.

Leave-one-domain-out over ``--domains`` synthetic domains, 5 lam x 5 n_components, one view of
interventions, unit-norm embeddings like CLIPFeaturizer's (``--raw-scale`` keeps them large).
Prints both wall times, their ratio, and whether the chosen parameters and the mean scores
agree; for the linear probe, also the cold-started search (``warm_start=False``). Run from
the repository root so that this checkout's skcicm is imported::

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_cv_search.py \\
        --head zero_shot --n 20000 --d 512
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import sklearn
from sklearn.model_selection import GridSearchCV, LeaveOneGroupOut

import skcicm.model_selection._cv as cv_module
from skcicm import InvariantCausalMechanism, InvariantCausalMechanismCV
from skcicm.icm import _statistics as statistics
from skcicm.icm import _subspace as subspace

LAMS = [0.0, 0.1, 1.0, 10.0, 100.0]


@contextlib.contextmanager
def counting_work() -> Iterator[Counter]:
    """Count the rows that go through Gram products and the eigendecompositions."""
    counts: Counter = Counter()
    gram, solve = statistics._checked_gram, subspace.solve_eigenproblem

    def counted_gram(block: np.ndarray, input_name: str) -> np.ndarray:
        counts["gram_rows"] += len(block)
        return gram(block, input_name)

    def counted_solve(*args: Any, **kwargs: Any) -> Any:
        counts["eigh"] += 1
        return solve(*args, **kwargs)

    patches = [
        (statistics, "_checked_gram", counted_gram),
        (subspace, "solve_eigenproblem", counted_solve),
        (cv_module, "solve_eigenproblem", counted_solve),
    ]
    for module, name, replacement in patches:
        setattr(module, name, replacement)
    try:
        yield counts
    finally:
        statistics._checked_gram = gram
        subspace.solve_eigenproblem = solve
        cv_module.solve_eigenproblem = solve


def make_data(
    n: int,
    d: int,
    n_domains: int,
    n_classes: int,
    n_views: int = 1,
    seed: int = 0,
    unit: bool = True,
) -> dict:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    domains = np.arange(n) % n_domains
    class_means = rng.normal(size=(n_classes, d))
    style = rng.normal(size=(n_domains, d)) * 2
    Z = (class_means[y] + style[domains] + rng.normal(size=(n, d)) * 3).astype(np.float32)
    noise = rng.standard_normal((n, n_views, d), dtype=np.float32)
    views = Z[:, None, :] + 2 * noise
    if unit:
        # CLIPFeaturizer's embeddings are L2-normalised (normalize=True, its default).
        Z /= np.linalg.norm(Z, axis=1, keepdims=True)
        views /= np.linalg.norm(views, axis=2, keepdims=True)
    return {"Z": Z, "y": y, "domains": domains, "views": views, "text": class_means}


def run(
    head: str, n: int, d: int, n_domains: int, n_classes: int, n_views: int, unit: bool
) -> dict:
    data = make_data(n, d, n_domains, n_classes, n_views, unit=unit)
    ks = [d // 16, d // 8, d // 4, d // 2, d]
    fit_params = {"interventions": data["views"]}
    if head == "zero_shot":
        fit_params["class_embeddings"] = data["text"]

    start = time.perf_counter()
    with sklearn.config_context(enable_metadata_routing=True), counting_work() as grid_work:
        icm = InvariantCausalMechanism(head=head).set_fit_request(**dict.fromkeys(fit_params, True))
        grid = GridSearchCV(
            icm, {"lam": LAMS, "n_components": ks}, cv=LeaveOneGroupOut(), refit=False
        )
        grid.fit(data["Z"], data["y"], groups=data["domains"], **fit_params)
    grid_s = time.perf_counter() - start

    row = {
        "head": head,
        "n": n,
        "d": d,
        "folds": n_domains,
        "classes": n_classes,
        "views": n_views,
        "scale": "unit" if unit else "raw",
        "gridsearch_s": grid_s,
        "grid_eigh": grid_work["eigh"],
        "grid_gram_rows": grid_work["gram_rows"],
    }
    # The default warm-starts the probes along the path; cold reproduces the grid search's
    # scores exactly. The zero-shot head has no probe, so only the default runs.
    variants = {"": {}, "cold_": {"warm_start": False}} if head == "linear_probe" else {"": {}}
    for prefix, params in variants.items():
        start = time.perf_counter()
        with counting_work() as work:
            search = InvariantCausalMechanismCV(
                LAMS, ks, cv=LeaveOneGroupOut(), head=head, refit=False, **params
            ).fit(data["Z"], data["y"], groups=data["domains"], **fit_params)
        seconds = time.perf_counter() - start
        gap = search.cv_results_["mean_test_score"] - grid.cv_results_["mean_test_score"]
        row[f"{prefix}cv_s"] = seconds
        row[f"{prefix}speedup"] = grid_s / seconds
        row[f"{prefix}same_choice"] = search.best_params_ == grid.best_params_
        row[f"{prefix}max_score_gap"] = float(np.abs(gap).max())
        row[f"{prefix}cv_eigh"] = work["eigh"]
        row[f"{prefix}cv_gram_rows"] = work["gram_rows"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--head",
        choices=["zero_shot", "linear_probe"],
        nargs="+",
        default=["zero_shot", "linear_probe"],
    )
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--d", type=int, default=512)
    parser.add_argument("--domains", type=int, default=4)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--views", type=int, default=1)
    parser.add_argument(
        "--raw-scale",
        action="store_true",
        help="keep the embeddings' raw scale (norms near 3 sqrt(d)) instead of unit rows; the "
        "probe's problem is then nearly separable, and its solution depends on the solver's path",
    )
    args = parser.parse_args()
    for head in args.head:
        row = run(head, args.n, args.d, args.domains, args.classes, args.views, not args.raw_scale)
        print(
            "  ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
