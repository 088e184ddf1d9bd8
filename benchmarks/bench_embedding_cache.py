"""How much the embedding cache saves in a leave-one-domain-out grid search.

Baseline and cached runs happen in the same process, on the same images and model:

- baseline: the cache is switched off (every lookup misses), as a featurizer without one
  would behave, so each candidate and fold re-encodes its images;
- cached: skcicm's default; each unique image and intervened copy is encoded once.

Reports wall time, images sent through the encoder, and the ratio baseline / cached.

    python benchmarks/bench_embedding_cache.py [--model toyclip] [--n-per-cell 10]
"""

import argparse
import time
from unittest import mock

import numpy as np
import open_clip
from sklearn.model_selection import GridSearchCV, LeaveOneGroupOut
from sklearn.pipeline import Pipeline

from skcicm import CLIPFeaturizer, InvariantCausalMechanism
from skcicm.datasets import make_toyworld
from skcicm.embedding_cache import EmbeddingCache, clear_memory_cache


def run_search(model: str, images, labels, domains) -> tuple[float, int]:
    counter = {"images": 0}
    original = open_clip.model.CLIP.encode_image

    def counting(self, image, normalize=False):
        counter["images"] += image.shape[0]
        return original(self, image, normalize=normalize)

    pipe = Pipeline(
        [
            ("clip", CLIPFeaturizer(model, pretrained=None, progress=False)),
            ("icm", InvariantCausalMechanism()),
        ]
    )
    grid = {"icm__lam": [0.0, 1.0, 10.0], "icm__n_components": [16, 64]}
    clear_memory_cache()
    start = time.perf_counter()
    with mock.patch.object(open_clip.model.CLIP, "encode_image", counting):
        GridSearchCV(pipe, grid, cv=LeaveOneGroupOut()).fit(images, labels, groups=domains)
    return time.perf_counter() - start, counter["images"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toyclip")
    parser.add_argument("--n-per-cell", type=int, default=10)
    args = parser.parse_args()
    world = make_toyworld(
        n_per_cell=args.n_per_cell, domains=["photo", "sketch", "cartoon"], random_state=0
    )
    images, labels, domains = world.images, world.labels, np.asarray(world.domains)

    with mock.patch.object(EmbeddingCache, "get", lambda self, keys: {}):
        baseline_seconds, baseline_images = run_search(args.model, images, labels, domains)
    cached_seconds, cached_images = run_search(args.model, images, labels, domains)

    print(f"{len(images)} images, 3 folds x 6 candidates + refit, model {args.model}")
    print(f"baseline (no cache): {baseline_seconds:7.2f} s, {baseline_images} images encoded")
    print(f"cached (default):    {cached_seconds:7.2f} s, {cached_images} images encoded")
    print(
        f"speed-up: {baseline_seconds / cached_seconds:.1f}x wall time, "
        f"{baseline_images / cached_images:.1f}x fewer encodes"
    )


if __name__ == "__main__":
    main()
