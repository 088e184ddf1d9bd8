"""How many images a leave-one-domain-out grid search encodes, serial and with loky workers.

Each scenario runs in a fresh Python process (so no worker inherits another scenario's memory),
on the same ToyWorld images, model and grid; encodes are counted in every worker process:

- ``no cache``: every lookup misses, as a featurizer without a cache would behave;
- ``memory only``: ``cache_dir=None``, the default before the on-disk default existed;
- ``default``: ``cache_dir="auto"`` (a fresh ``SKCICM_CACHE_DIR``), serial;
- ``n_jobs=2, memory only``: each loky worker has its own memory cache, so it re-encodes;
- ``n_jobs=2, default, unclaimed``: as below, but workers do not claim the keys they encode
  (:mod:`skcicm.featurizer.cache` turned off), as before claims existed: workers that find the
  same keys missing at once both encode them;
- ``n_jobs=2, default``: ``cache_dir="auto"`` (a fresh ``SKCICM_CACHE_DIR``), shared by workers,
  which claim keys before encoding them.

Prints wall time, images sent through the encoder, and the unique embeddings needed.

    python benchmarks/bench_embedding_cache.py [--model toyclip] [--n-per-cell 10]
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
from sklearn.model_selection import GridSearchCV, LeaveOneGroupOut
from sklearn.pipeline import Pipeline

from skcicm import CLIPFeaturizer, InvariantCausalMechanism
from skcicm.datasets import make_toyworld
from skcicm.featurizer.cache import EmbeddingCache

ENCODE_LOG = "SKCICM_BENCH_ENCODE_LOG"
UNCLAIMED = "SKCICM_BENCH_UNCLAIMED"
SCENARIOS = {
    "no cache": dict(n_jobs=1, cache_dir=None, disable=True),
    "memory only": dict(n_jobs=1, cache_dir=None, disable=False),
    "default": dict(n_jobs=1, cache_dir="auto", disable=False),
    "n_jobs=2, memory only": dict(n_jobs=2, cache_dir=None, disable=False),
    "n_jobs=2, default, unclaimed": dict(n_jobs=2, cache_dir="auto", disable=False, claims=False),
    "n_jobs=2, default": dict(n_jobs=2, cache_dir="auto", disable=False),
}


class CountingFeaturizer(CLIPFeaturizer):
    """Logs every encoder batch size to the file named by $SKCICM_BENCH_ENCODE_LOG.

    With $SKCICM_BENCH_UNCLAIMED set (worker processes inherit it), every key counts as
    claimed by its caller, as before claims existed.
    """

    def _loaded(self):
        if os.environ.get(UNCLAIMED):
            EmbeddingCache.claim = lambda cache, keys: contextlib.nullcontext(set(keys))
        loaded = super()._loaded()
        model = loaded.model
        if not getattr(model, "_bench_counted", False):
            encode_image = model.encode_image

            def counting(images, *args, **kwargs):
                with open(os.environ[ENCODE_LOG], "a") as log:
                    log.write(f"{images.shape[0]}\n")
                return encode_image(images, *args, **kwargs)

            model.encode_image = counting
            model._bench_counted = True
        return loaded


def run_scenario(name: str, model: str, n_per_cell: int) -> dict:
    settings = SCENARIOS[name]
    world = make_toyworld(n_per_cell=n_per_cell, domains=["photo", "sketch", "cartoon"])
    featurizer = CountingFeaturizer(
        model, pretrained=None, progress=False, cache_dir=settings["cache_dir"]
    )
    pipe = Pipeline([("clip", featurizer), ("icm", InvariantCausalMechanism())])
    grid = {"icm__lam": [0.0, 1.0, 10.0], "icm__n_components": [16, 64]}
    search = GridSearchCV(pipe, grid, cv=LeaveOneGroupOut(), n_jobs=settings["n_jobs"])
    start = time.perf_counter()
    if settings["disable"]:
        with mock.patch.object(EmbeddingCache, "get", lambda self, keys: {}):
            search.fit(world.images, world.labels, groups=np.asarray(world.domains))
    else:
        search.fit(world.images, world.labels, groups=np.asarray(world.domains))
    seconds = time.perf_counter() - start
    encoded = sum(int(line) for line in Path(os.environ[ENCODE_LOG]).read_text().split())
    # Clean copy and one intervened copy of each image.
    return {"seconds": seconds, "encoded": encoded, "unique": 2 * len(world.images)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toyclip")
    parser.add_argument("--n-per-cell", type=int, default=10)
    parser.add_argument("--scenario", choices=SCENARIOS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scenario:
        print(json.dumps(run_scenario(args.scenario, args.model, args.n_per_cell)))
        return
    rows = {}
    for name in SCENARIOS:
        with tempfile.TemporaryDirectory() as scratch:
            environment = {
                **os.environ,
                ENCODE_LOG: str(Path(scratch) / "encodes.log"),
                "SKCICM_CACHE_DIR": str(Path(scratch) / "cache"),
            }
            if not SCENARIOS[name].get("claims", True):
                environment[UNCLAIMED] = "1"
            Path(environment[ENCODE_LOG]).touch()
            command = [sys.executable, __file__, "--scenario", name, "--model", args.model]
            command += ["--n-per-cell", str(args.n_per_cell)]
            output = subprocess.run(
                command, env=environment, check=True, capture_output=True, text=True
            ).stdout
            rows[name] = json.loads(output.strip().splitlines()[-1])
    unique = next(iter(rows.values()))["unique"]
    print(f"GridSearchCV, 3 folds x 6 candidates + refit, {args.model}: {unique} unique embeddings")
    baseline = rows["no cache"]
    for name, row in rows.items():
        print(
            f"{name:28s} {row['seconds']:7.2f} s  {row['encoded']:6d} encoded  "
            f"{row['encoded'] / unique:5.2f}x unique  "
            f"{baseline['seconds'] / row['seconds']:5.2f}x faster than no cache"
        )


if __name__ == "__main__":
    main()
