"""Embedding cache: a bounded in-memory LRU for the process, in front of an on-disk store.

GridSearchCV clones the featurizer for every candidate and fold; the cache lives outside the
featurizer instances so that each unique image is encoded once per process, and on disk so that
worker processes (loky, Dask) and later runs reuse what any of them encoded. The disk store
(:mod:`skcicm.featurizer.cache`) is one checksummed SQLite database per model, written batch by
batch, so an interrupted run resumes where it stopped. Workers sharing it claim the keys they
are about to encode (:meth:`EmbeddingCache.claim`), so that each key is encoded once.

Memory: at most :data:`DEFAULT_MEMORY_LIMIT_BYTES` (1 GiB) of embeddings per process, least
recently used first out; set ``SKCICM_MEMORY_CACHE_BYTES`` in the environment (worker processes
inherit it; a whole number of bytes, ``1e9`` included) or call :func:`set_memory_cache_limit`.

Disk: ``cache_dir="auto"`` means ``$SKCICM_CACHE_DIR`` when set, else
``$XDG_CACHE_HOME/skcicm/embeddings`` (``~/.cache/skcicm/embeddings``). The folder is never
pruned; delete it at any time to reclaim the space.
"""

from __future__ import annotations

import contextlib
import decimal
import os
import sqlite3
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path

import numpy as np

from skcicm.featurizer.cache._keys import UNCACHED_PREFIX
from skcicm.featurizer.cache._store import DiskStore, open_store

#: Default bound of the process-wide in-memory embedding cache (LRU), in bytes: 1 GiB.
DEFAULT_MEMORY_LIMIT_BYTES = 1 << 30


class _MemoryLRU:
    """Arrays by key, evicting the least recently used beyond ``limit_bytes``."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.nbytes = 0
        self._entries: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> np.ndarray | None:
        with self._lock:
            array = self._entries.get(key)
            if array is not None:
                self._entries.move_to_end(key)
            return array

    def put(self, key: tuple[str, str], array: np.ndarray) -> None:
        array = np.array(array, copy=True)
        # Callers get the cached array itself; read-only keeps them from altering the cache.
        array.setflags(write=False)
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self.nbytes -= previous.nbytes
            if array.nbytes > self.limit_bytes:
                return
            self._entries[key] = array
            self.nbytes += array.nbytes
            self._evict()

    def _evict(self) -> None:
        while self.nbytes > self.limit_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.nbytes -= evicted.nbytes

    def resize(self, limit_bytes: int) -> None:
        with self._lock:
            self.limit_bytes = limit_bytes
            self._evict()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.nbytes = 0

    def __len__(self) -> int:
        return len(self._entries)


def _limit_from_environment() -> int:
    value = os.environ.get("SKCICM_MEMORY_CACHE_BYTES")
    if value is None:
        return DEFAULT_MEMORY_LIMIT_BYTES
    # Decimal, not float, so that "1e9" is accepted and "12345678901234567891" stays exact.
    try:
        limit = decimal.Decimal(value)
    except decimal.InvalidOperation:
        limit = decimal.Decimal(-1)
    if not limit.is_finite() or limit < 0 or limit != limit.to_integral_value():
        raise ValueError(
            f"SKCICM_MEMORY_CACHE_BYTES={value!r}: expected a whole number of bytes >= 0, such "
            "as 536870912 or 1e9 (0 turns the in-memory embedding cache off)."
        )
    return int(limit)


_memory = _MemoryLRU(_limit_from_environment())


def set_memory_cache_limit(n_bytes: int) -> None:
    """Bound this process's in-memory embedding cache to ``n_bytes`` (0 turns it off).

    The least recently used embeddings are dropped first when the bound is lowered.

    Parameters
    ----------
    n_bytes : int
        The new bound, in bytes, at least 0.

    Raises
    ------
    ValueError
        When ``n_bytes`` is not a non-negative int.

    Examples
    --------
    >>> set_memory_cache_limit(256 * 2**20)
    >>> memory_cache_info()["limit_bytes"]
    268435456
    >>> set_memory_cache_limit(DEFAULT_MEMORY_LIMIT_BYTES)
    """
    if isinstance(n_bytes, bool) or not isinstance(n_bytes, int) or n_bytes < 0:
        raise ValueError(f"n_bytes must be an int >= 0; got {n_bytes!r}.")
    _memory.resize(n_bytes)


def memory_cache_info() -> dict[str, int]:
    """Entries, bytes held and byte limit of this process's in-memory embedding cache.

    Returns
    -------
    dict of str to int
        ``"entries"``, ``"bytes"`` and ``"limit_bytes"``.
    """
    return {"entries": len(_memory), "bytes": _memory.nbytes, "limit_bytes": _memory.limit_bytes}


def clear_memory_cache() -> None:
    """Forget every embedding cached in this process (the disk cache is kept)."""
    _memory.clear()


def default_cache_dir() -> Path:
    """Where ``cache_dir="auto"`` keeps embeddings.

    Returns
    -------
    pathlib.Path
        ``$SKCICM_CACHE_DIR`` when set, else ``skcicm/embeddings`` under
        ``$XDG_CACHE_HOME`` (default ``~/.cache``).
    """
    if os.environ.get("SKCICM_CACHE_DIR"):
        return Path(os.environ["SKCICM_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "skcicm" / "embeddings"


def _open_disk_store(
    directory: str | os.PathLike | None, model_fingerprint: str
) -> DiskStore | None:
    if directory is None:
        return None
    if isinstance(directory, str) and directory == "auto":
        try:
            return open_store(default_cache_dir() / model_fingerprint)
        except OSError as error:
            # The default location is a convenience: without it the cache is per process.
            warnings.warn(
                f"No on-disk embedding cache ({error}); set SKCICM_CACHE_DIR or cache_dir to a "
                "writable folder to share embeddings between processes and runs.",
                stacklevel=4,
            )
            return None
    return open_store(Path(directory) / model_fingerprint)


class EmbeddingCache:
    """Embeddings of one model, looked up by content key.

    Keys that start with ``UNCACHED_PREFIX`` (of ``_keys.py``) are never stored.

    Parameters
    ----------
    model_fingerprint : str
        Identifies the model and its weights; part of every key.
    directory : str or Path or None
        Folder for the on-disk cache (one sub-folder per model), ``"auto"`` for
        :func:`default_cache_dir`, or None for the in-memory cache only.

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
        self.store = _open_disk_store(directory, model_fingerprint)

    def get(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """Look embeddings up in memory, then on disk.

        Parameters
        ----------
        keys : iterable of str
            Content keys of the embeddings.

        Returns
        -------
        dict of str to ndarray
            The cached embeddings among ``keys``; missing keys are absent. Those read from
            disk are also kept in memory.
        """
        found: dict[str, np.ndarray] = {}
        on_disk: list[str] = []
        for key in keys:
            if key.startswith(UNCACHED_PREFIX):
                continue
            embedding = _memory.get((self.model_fingerprint, key))
            if embedding is None:
                on_disk.append(key)
            else:
                found[key] = embedding
        if self.store is not None and on_disk:
            stored = self.store.get_many(on_disk)
            for key, embedding in stored.items():
                _memory.put((self.model_fingerprint, key), embedding)
            found.update(stored)
        return found

    def put(self, embeddings: dict[str, np.ndarray]) -> None:
        """Store embeddings in memory and, when a directory is set, on disk.

        Parameters
        ----------
        embeddings : dict of str to ndarray
            Embeddings by content key; keys that start with ``UNCACHED_PREFIX`` are skipped.
        """
        kept = {
            key: value for key, value in embeddings.items() if not key.startswith(UNCACHED_PREFIX)
        }
        for key, embedding in kept.items():
            _memory.put((self.model_fingerprint, key), embedding)
        if self.store is not None:
            self.store.put_many(kept)

    @contextlib.contextmanager
    def claim(self, keys: Collection[str]) -> Iterator[set[str]]:
        """Claim keys about to be encoded, so that workers sharing the disk cache encode each once.

        Parameters
        ----------
        keys : collection of str
            Keys missing from the cache that the caller is about to encode.

        Yields
        ------
        set of str
            The keys the caller is to encode and :meth:`put` inside the block; the others
            are being encoded by another process or thread sharing the disk cache, for
            :meth:`wait_for` once the block has ended. Without a writable disk cache, every
            key.
        """
        keys = set(keys)
        # Keys that are never stored are always the caller's: no other worker could hand
        # their embeddings over.
        shared = {key for key in keys if not key.startswith(UNCACHED_PREFIX)}
        claims = None if self.store is None or not shared else self.store.claims()
        if claims is None:
            yield keys
            return
        with contextlib.ExitStack() as held:
            try:
                mine = held.enter_context(claims.claim(shared))
            except sqlite3.DatabaseError as error:
                self.store.quarantine_if_damaged(error)
                mine = shared  # the fresh database holds no claim
            yield mine | (keys - shared)

    def wait_for(
        self, keys: Collection[str], encode: Callable[[list[str]], dict[str, np.ndarray]]
    ) -> dict[str, np.ndarray]:
        """The embeddings of keys that another worker claimed, as it stores them.

        Call it outside any :meth:`claim` block, so that no two workers wait for each other.

        Parameters
        ----------
        keys : collection of str
            Keys that :meth:`claim` did not give the caller.
        encode : callable
            Keys to their embeddings, stored with :meth:`put` before it returns; called for
            the keys whose claim was released without an embedding, expired, or was held by
            a process that has ended. Keys it cannot encode are left out of its result.

        Returns
        -------
        dict of str to ndarray
            The embeddings of ``keys``, less those ``encode`` left out.
        """
        claims = None if self.store is None else self.store.claims()
        if claims is None:
            # The store turned read-only since the claims were made: no claim can be seen now.
            found = self.get(keys)
            found.update(encode(sorted(set(keys).difference(found))))
            return found
        return claims.wait_for(keys, self.get, encode)
