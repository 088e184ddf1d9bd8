"""Embedding cache: in memory for the process, optionally on disk, keyed by model and content.

GridSearchCV clones the featurizer for every candidate and fold; the cache lives outside the
featurizer instances so that each unique image is encoded once per process. On disk, each
embedding is its own small ``.npy`` file written atomically as soon as its batch is encoded,
so a run that crashes or is interrupted resumes where it stopped.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np

_memory: dict[tuple[str, str], np.ndarray] = {}
_memory_lock = threading.Lock()


def clear_memory_cache() -> None:
    """Forget every embedding cached in this process (the disk cache is kept)."""
    with _memory_lock:
        _memory.clear()


class EmbeddingCache:
    """Embeddings of one model, looked up by content key.

    Parameters
    ----------
    model_fingerprint : str
        Identifies the model and its weights; part of every key.
    directory : str or Path or None
        Folder for the on-disk cache; None keeps embeddings in memory only.

    Examples
    --------
    >>> import numpy as np
    >>> cache = EmbeddingCache("doctest-model", directory=None)
    >>> cache.put({"img1": np.ones(3, dtype=np.float32)})
    >>> sorted(cache.get(["img1", "img2"]))
    ['img1']
    """

    def __init__(self, model_fingerprint: str, directory: str | os.PathLike | None) -> None:
        self.model_fingerprint = model_fingerprint
        self.directory = Path(directory) / model_fingerprint if directory is not None else None

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npy"

    def get(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """Return the cached embeddings among ``keys``; missing keys are absent from the dict."""
        found: dict[str, np.ndarray] = {}
        for key in keys:
            embedding = _memory.get((self.model_fingerprint, key))
            if embedding is None and self.directory is not None:
                path = self._path(key)
                if path.is_file():
                    embedding = np.load(path)
                    with _memory_lock:
                        _memory[(self.model_fingerprint, key)] = embedding
            if embedding is not None:
                found[key] = embedding
        return found

    def put(self, embeddings: dict[str, np.ndarray]) -> None:
        """Store embeddings in memory and, when a directory is set, on disk."""
        with _memory_lock:
            for key, embedding in embeddings.items():
                _memory[(self.model_fingerprint, key)] = embedding
        if self.directory is None:
            return
        for key, embedding in embeddings.items():
            path = self._path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename, so an interrupted run never leaves a truncated file behind.
            with tempfile.NamedTemporaryFile(
                dir=path.parent, suffix=".tmp", delete=False
            ) as handle:
                np.save(handle, embedding)
            os.replace(handle.name, path)
