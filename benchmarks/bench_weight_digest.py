"""What a worker process pays to fingerprint its model's weights, before and after the digest store.

Baseline and remembered runs happen in the same process, on the same checkpoint (an
architecture with seeded random weights, ``pretrained="random"``, saved in the ``local-dir:``
layout, so no download is needed):

- baseline: every process hashes the checkpoint, as before (the digest store is emptied);
- remembered: a new process finds the digest recorded under the file's stamp and hashes
  nothing (the in-process memo is emptied, as in a new process).

Reports the minimum over repeats of each and the ratio baseline / remembered.

    python benchmarks/bench_weight_digest.py [--model ViT-B-32] [--repeats 5]
"""

import argparse
import os
import shutil
import tempfile
import time

import open_clip

from skcicm.featurizer import _models as models
from skcicm.featurizer import _weight_digests as weight_digests


def fingerprint_seconds(name: str, forget_records: bool) -> float:
    weight_digests._memo.clear()
    if forget_records:
        shutil.rmtree(weight_digests.cache_folder(), ignore_errors=True)
    start = time.perf_counter()
    models.model_fingerprint(name, None)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        os.environ[weight_digests.CACHE_DIR_ENV] = os.path.join(scratch, "user-cache")
        loaded = models.load_clip(args.model, models.RANDOM_WEIGHTS, "cpu")
        folder = models.save_local_dir(
            loaded.model, os.path.join(scratch, "model"), open_clip.get_model_config(args.model)
        )
        size = sum(path.stat().st_size for path in folder.iterdir()) / 2**20
        name = f"local-dir:{folder}"
        baseline = min(fingerprint_seconds(name, True) for _ in range(args.repeats))
        fingerprint_seconds(name, True)
        remembered = min(fingerprint_seconds(name, False) for _ in range(args.repeats))
    print(f"{args.model}, {size:.0f} MiB of weights, min of {args.repeats} repeats")
    print(f"  baseline (hash in every process): {baseline * 1e3:9.2f} ms")
    print(f"  remembered (stamp + record):      {remembered * 1e3:9.2f} ms")
    print(f"  ratio baseline / remembered:      {baseline / remembered:9.0f}x")


if __name__ == "__main__":
    main()
