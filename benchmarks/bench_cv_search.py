"""InvariantCausalMechanismCV against GridSearchCV over the same grid, in the same run.

Leave-one-domain-out over ``--domains`` synthetic domains, 5 lam x 5 n_components, one view of
interventions. Prints both wall times, their ratio, and whether the chosen parameters and the
mean scores agree. Run from the repository root so that this checkout's skcicm is imported::

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_cv_search.py \\
        --head zero_shot --n 20000 --d 512
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import sklearn
from sklearn.model_selection import GridSearchCV, LeaveOneGroupOut

from skcicm import InvariantCausalMechanism, InvariantCausalMechanismCV

LAMS = [0.0, 0.1, 1.0, 10.0, 100.0]


def make_data(
    n: int, d: int, n_domains: int, n_classes: int, n_views: int = 1, seed: int = 0
) -> dict:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    domains = np.arange(n) % n_domains
    class_means = rng.normal(size=(n_classes, d))
    style = rng.normal(size=(n_domains, d)) * 2
    Z = (class_means[y] + style[domains] + rng.normal(size=(n, d)) * 3).astype(np.float32)
    noise = rng.standard_normal((n, n_views, d), dtype=np.float32)
    views = Z[:, None, :] + 2 * noise
    return {"Z": Z, "y": y, "domains": domains, "views": views, "text": class_means}


def run(head: str, n: int, d: int, n_domains: int, n_classes: int, n_views: int) -> dict:
    data = make_data(n, d, n_domains, n_classes, n_views)
    ks = [d // 16, d // 8, d // 4, d // 2, d]
    fit_params = {"interventions": data["views"]}
    if head == "zero_shot":
        fit_params["class_embeddings"] = data["text"]

    start = time.perf_counter()
    with sklearn.config_context(enable_metadata_routing=True):
        icm = InvariantCausalMechanism(head=head).set_fit_request(**dict.fromkeys(fit_params, True))
        grid = GridSearchCV(
            icm, {"lam": LAMS, "n_components": ks}, cv=LeaveOneGroupOut(), refit=False
        )
        grid.fit(data["Z"], data["y"], groups=data["domains"], **fit_params)
    grid_s = time.perf_counter() - start

    start = time.perf_counter()
    search = InvariantCausalMechanismCV(LAMS, ks, cv=LeaveOneGroupOut(), head=head, refit=False)
    search.fit(data["Z"], data["y"], groups=data["domains"], **fit_params)
    cv_s = time.perf_counter() - start
    gap = np.abs(search.cv_results_["mean_test_score"] - grid.cv_results_["mean_test_score"])
    row = {
        "head": head,
        "n": n,
        "d": d,
        "folds": n_domains,
        "classes": n_classes,
        "views": n_views,
        "gridsearch_s": grid_s,
        "cv_s": cv_s,
        "speedup": grid_s / cv_s,
        "same_choice": search.best_params_ == grid.best_params_,
        "max_score_gap": float(gap.max()),
    }
    if head == "linear_probe":
        start = time.perf_counter()
        warm = InvariantCausalMechanismCV(
            LAMS, ks, cv=LeaveOneGroupOut(), head=head, refit=False, warm_start=True
        ).fit(data["Z"], data["y"], groups=data["domains"], **fit_params)
        row["warm_cv_s"] = time.perf_counter() - start
        row["warm_speedup"] = grid_s / row["warm_cv_s"]
        row["warm_same_choice"] = warm.best_params_ == grid.best_params_
        warm_gap = warm.cv_results_["mean_test_score"] - grid.cv_results_["mean_test_score"]
        row["warm_max_score_gap"] = float(np.abs(warm_gap).max())
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
    args = parser.parse_args()
    for head in args.head:
        row = run(head, args.n, args.d, args.domains, args.classes, args.views)
        print(
            "  ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
