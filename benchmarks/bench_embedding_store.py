"""Files on disk and lookup cost of the embedding store against one ``.npy`` file per entry.

Both layouts are written and read in the same run, with the same keys and embeddings:

- baseline: the layout skcicm used before, one ``.npy`` file per embedding under a two-letter
  sub-folder, each written to a temporary file and renamed;
- store: ``DiskStore`` of ``skcicm.featurizer.cache._store`` (checksummed entries in SQLite),
  written in batches of 64 as the featurizer does, each batch synced to disk.

Lookups read every entry in a random order, in batches of 64, from a freshly opened store.
The claims a worker makes on the keys of a batch before encoding it, and releases once it is
stored (:mod:`skcicm.featurizer.cache`), are timed on the same keys, in batches of 64, against
the store's write.

    python benchmarks/bench_embedding_store.py [--n 100000] [--dim 512]
"""

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from skcicm.featurizer.cache._store import close_stores, open_store

BATCH = 64


def write_one_file_per_entry(root: Path, embeddings: dict[str, np.ndarray]) -> None:
    for key, embedding in embeddings.items():
        path = root / key[:2] / f"{key}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
            np.save(handle, embedding)
        os.replace(handle.name, path)


def read_one_file_per_entry(root: Path, keys: list[str]) -> int:
    found = 0
    for key in keys:
        path = root / key[:2] / f"{key}.npy"
        if path.is_file():
            found += np.load(path).shape[0] > 0
    return found


def write_store(root: Path, embeddings: dict[str, np.ndarray]) -> None:
    store = open_store(root)
    items = list(embeddings.items())
    for start in range(0, len(items), BATCH):
        store.put_many(dict(items[start : start + BATCH]))


def read_store(root: Path, keys: list[str]) -> int:
    close_stores()
    store = open_store(root)
    return sum(len(store.get_many(keys[i : i + BATCH])) for i in range(0, len(keys), BATCH))


def claim_and_release(root: Path, keys: list[str]) -> None:
    claims = open_store(root).claims()
    for start in range(0, len(keys), BATCH):
        with claims.claim(keys[start : start + BATCH]):
            pass


def count_files(root: Path) -> tuple[int, int]:
    files = [path for path in root.rglob("*") if path.is_file()]
    return len(files), sum(path.stat().st_size for path in files)


def timed(function, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    keys = [hashlib.sha1(str(i).encode()).hexdigest() for i in range(args.n)]
    embeddings = {key: rng.standard_normal(args.dim).astype(np.float32) for key in keys}
    lookup_order = [keys[i] for i in rng.permutation(args.n)]
    print(f"{args.n} embeddings of dimension {args.dim} (float32)")
    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, write, read in (
            ("one .npy per entry", write_one_file_per_entry, read_one_file_per_entry),
            ("DiskStore", write_store, read_store),
        ):
            root = Path(scratch) / name.split()[0]
            write_seconds, _ = timed(write, root, embeddings)
            read_seconds, found = timed(read, root, lookup_order)
            assert found == args.n, (name, found)
            if name == "DiskStore":
                claim_seconds, _ = timed(claim_and_release, root, keys)
            close_stores()
            n_files, n_bytes = count_files(root)
            rows[name] = (n_files, n_bytes, write_seconds, read_seconds)
            print(
                f"{name:20s} {n_files:8d} files {n_bytes / 2**20:8.1f} MiB  "
                f"write {1e6 * write_seconds / args.n:7.1f} us/entry  "
                f"lookup {1e6 * read_seconds / args.n:7.1f} us/entry"
            )
    old, new = rows["one .npy per entry"], rows["DiskStore"]
    print(
        f"DiskStore / one file per entry: files {new[0] / old[0]:.2g}x, bytes "
        f"{new[1] / old[1]:.2f}x, write {new[2] / old[2]:.2f}x, lookup {new[3] / old[3]:.2f}x"
    )
    print(
        f"claim + release before encoding: {1e6 * claim_seconds / args.n:.1f} us/entry, "
        f"{claim_seconds / new[2]:.2f}x the DiskStore write"
    )


if __name__ == "__main__":
    main()
