"""On-disk embedding store: one SQLite database per model folder, each entry checksummed.

The store is a :class:`diskcache.Cache` (SQLite in WAL mode), so millions of embeddings live in
one database file instead of millions of small files, several processes (loky workers, Dask
workers) may read and write it at once, and a process killed mid-write leaves the last
committed batch intact. Each batch is one transaction, synced to disk (``synchronous=FULL``)
before ``put`` returns.

Every value is a self-describing record (dtype, shape, data) followed by a BLAKE2b digest of
the model's fingerprint (the folder's name), the key and the record, so an entry that was
altered, truncated, swapped with another key or copied from another model's folder is detected
on read: it is reported with the database's path, deleted and re-encoded by the caller. Entries
of an older record format are misses, re-encoded and overwritten, never served unverified.

A database file that SQLite cannot read at all, or that was truncated, is moved aside with its
write-ahead log, reported, and started afresh. SQLite's memory-mapped I/O is off, so a database
truncated under a running process gives SQLite an error instead of killing the interpreter with
SIGBUS. A folder deleted or replaced while the process runs is noticed before the next read or
write (its database is no longer the file that was opened) and a fresh store is opened.

A folder that cannot be written to still serves hits: it is opened read-only, and new
embeddings are kept in memory only, with one warning that says so.

The same database holds the workers' claims on the keys they are encoding
(:mod:`skcicm.featurizer.cache`), so that workers sharing it encode each key once.

SQLite's locks need a local file system or one with working POSIX locks: on NFS, give each
machine its own ``cache_dir`` (SQLite's and diskcache's documentation say the same).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import struct
import threading
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

import diskcache
import numpy as np

from skcicm.featurizer.cache._claims import KeyClaims

_MAGIC = b"SKE2"
# Records of SKE1 bound their digest to the key only: misses, never served.
_OLD_MAGICS = (b"SKE1",)
_PERSON = b"skcicm-embedding"
_DIGEST_SIZE = 16
_DATABASE = "cache.db"
_WAL = _DATABASE + "-wal"
_PAGE_SIZE = 16384
# SQLite primary result codes (sqlite3.h).
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


class CacheIntegrityWarning(UserWarning):
    """Damaged cache entries or a damaged cache database were found, discarded and redone."""


class _StaleRecord(ValueError):
    """A record of an older format: a miss, to be re-encoded and overwritten."""


class _TruncatedDatabase(sqlite3.DatabaseError):
    """A database file emptied or deleted while its write-ahead log still holds entries.

    SQLite would delete the log on opening such a file, silently losing every entry in it.
    """


class ReadOnlyCacheWarning(UserWarning):
    """The cache folder cannot be written to: hits are served, new embeddings are not stored."""


def encode_record(key: str, array: np.ndarray, model_fingerprint: str) -> bytes:
    """Serialise ``array`` with its dtype, shape and a digest bound to ``key`` and the model.

    Parameters
    ----------
    key : str
        The cache key the record is stored under; a record moved to another key fails its
        checksum.
    array : ndarray
        The embedding.
    model_fingerprint : str
        The model whose embedding it is; a record copied into another model's store fails
        its checksum.

    Returns
    -------
    bytes
        Magic bytes, dtype, shape, the array's bytes and a 16-byte digest of the model, the
        key and all of these.

    Examples
    --------
    >>> import numpy as np
    >>> record = encode_record("k", np.arange(3, dtype=np.float32), "model-a")
    >>> decode_record("k", record, "model-a")
    array([0., 1., 2.], dtype=float32)
    >>> decode_record("k", record, "model-b")
    Traceback (most recent call last):
    ...
    ValueError: fails its checksum (altered, truncated, or written for another key or model)
    """
    array = np.ascontiguousarray(array)
    dtype = array.dtype.str.encode()
    header = _MAGIC + struct.pack(f"<B{len(dtype)}sB", len(dtype), dtype, array.ndim)
    header += struct.pack(f"<{array.ndim}Q", *array.shape)
    body = header + array.tobytes()
    return body + _digest(model_fingerprint, key, body)


def decode_record(key: str, record: bytes, model_fingerprint: str) -> np.ndarray:
    """Inverse of :func:`encode_record`.

    Parameters
    ----------
    key : str
        The key the record was read from.
    record : bytes
        The stored record.
    model_fingerprint : str
        The model of the store the record was read from.

    Returns
    -------
    ndarray
        The embedding, with its dtype and shape.

    Raises
    ------
    ValueError
        Naming what is wrong: not bytes, not an embedding record, or a failed checksum
        (altered, truncated, or written for another key or model). A record of an older
        format raises a subclass the store treats as a plain miss.
    """
    if not isinstance(record, bytes | bytearray | memoryview):
        raise ValueError(f"holds a {type(record).__name__}, not an embedding record")
    record = bytes(record)
    if record.startswith(_OLD_MAGICS):
        raise _StaleRecord("is a record of an older format")
    if len(record) < len(_MAGIC) + _DIGEST_SIZE or not record.startswith(_MAGIC):
        raise ValueError(f"is not an embedding record ({len(record)} bytes)")
    body, digest = record[:-_DIGEST_SIZE], record[-_DIGEST_SIZE:]
    if _digest(model_fingerprint, key, body) != digest:
        raise ValueError(
            "fails its checksum (altered, truncated, or written for another key or model)"
        )
    offset = len(_MAGIC)
    (dtype_length,) = struct.unpack_from("<B", body, offset)
    dtype, ndim = struct.unpack_from(f"<{dtype_length}sB", body, offset + 1)
    offset += 2 + dtype_length
    shape = struct.unpack_from(f"<{ndim}Q", body, offset)
    array = np.frombuffer(body, dtype=np.dtype(dtype.decode()), offset=offset + 8 * ndim)
    return array.reshape(shape)


def _digest(model_fingerprint: str, key: str, body: bytes) -> bytes:
    # Length prefixes keep (model, key, body) unambiguous: no two triples hash the same text.
    model, name = model_fingerprint.encode(), key.encode()
    hasher = hashlib.blake2b(digest_size=_DIGEST_SIZE, person=_PERSON)
    hasher.update(struct.pack("<QQ", len(model), len(name)) + model + name)
    hasher.update(body)
    return hasher.digest()


def _is_corruption(error: sqlite3.DatabaseError) -> bool:
    if isinstance(error, _TruncatedDatabase):
        return True
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    message = str(error)
    return "malformed" in message or "not a database" in message


class DiskStore:
    """Checksummed embeddings in one folder, shared by threads and processes.

    Use :func:`open_store` to get the process's one instance per folder.

    Parameters
    ----------
    directory : Path
        Folder of the database; created when missing. Its name is the model's fingerprint
        (:class:`skcicm.featurizer.cache._memory.EmbeddingCache` names it so), which every entry's
        checksum is bound to.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.database = self.directory / _DATABASE
        self.model_fingerprint = self.directory.name
        self._lock = threading.RLock()
        self._cache: diskcache.Cache | None = None
        self._reader: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self._open()

    @property
    def writable(self) -> bool:
        return self._cache is not None

    def claims(self) -> KeyClaims | None:
        """Claims on the keys being encoded, in this database; None while it is read-only.

        Returns
        -------
        KeyClaims or None
            Shared with every process and thread that opens this folder.
        """
        self._reopen_if_replaced()
        cache = self._cache
        return None if cache is None else KeyClaims(cache)

    def _open(self) -> None:
        try:
            self._refuse_emptied_database()
            self._create_database()
            # No memory-mapped I/O: reading a mapped page of a file that another process
            # truncated raises SIGBUS, which kills the interpreter; read() gets an error.
            self._cache = diskcache.Cache(
                str(self.directory),
                eviction_policy="none",
                sqlite_synchronous=2,
                sqlite_mmap_size=0,
            )
            self._identity = self._current_identity()
        except sqlite3.DatabaseError as error:
            if _is_corruption(error):
                self._quarantine(error)
            else:
                self._open_read_only(error)
        except OSError as error:
            self._open_read_only(error)

    def _refuse_emptied_database(self) -> None:
        """Stop SQLite from deleting the log of a database file that was emptied or deleted.

        SQLite never leaves a database file empty or missing while it has a log, so such a
        file was truncated or deleted; opening it would delete the log and every entry in it.
        """
        try:
            log_size = (self.directory / _WAL).stat().st_size
        except FileNotFoundError:
            return
        try:
            state = "empty" if self.database.stat().st_size == 0 else None
        except FileNotFoundError:
            state = "missing"
        if state is not None and log_size > 0:
            raise _TruncatedDatabase(
                f"the database file is {state} but its write-ahead log holds {log_size} bytes"
            )

    def _current_identity(self) -> tuple[int, int] | None:
        try:
            status = self.database.stat()
        except FileNotFoundError:
            return None
        return status.st_dev, status.st_ino

    def _reopen_if_replaced(self) -> None:
        """Reopen a fresh store when the folder was deleted or replaced since it was opened.

        Open connections follow the file they opened: without this, writes would go on into a
        deleted file and be lost, or into one that another process moved aside.
        """
        if self._identity is None or self._current_identity() == self._identity:
            return  # one stat() per read or write batch
        with self._lock:
            if self._identity is None or self._current_identity() == self._identity:
                return
            warnings.warn(
                f"The embedding cache database {self.database} was deleted or replaced while "
                "in use; a fresh one is opened there, and embeddings missing from it will be "
                "re-encoded.",
                CacheIntegrityWarning,
                stacklevel=5,
            )
            self._close_connections()
            self._open()

    def _create_database(self) -> None:
        """Fix a page size that packs several embeddings per page before diskcache creates it.

        With SQLite's default 4 KiB pages a 2 KiB record (512 float32) fills half a page.
        """
        if self.database.exists():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.database, isolation_level=None)
        try:
            connection.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
            connection.execute("PRAGMA journal_mode = wal")
        finally:
            connection.close()

    def _open_read_only(self, error: Exception) -> None:
        self._identity = None
        if not self.database.is_file():
            raise OSError(
                f"Cannot create the embedding cache in {self.directory}: {error}. Pass a "
                "writable cache_dir, or cache_dir=None for an in-memory cache only."
            ) from error
        warnings.warn(
            f"The embedding cache {self.database} is read-only ({error}): cached embeddings "
            "are served, new ones are kept in memory only.",
            ReadOnlyCacheWarning,
            stacklevel=4,
        )
        self._cache = None
        for options in ("mode=ro", "immutable=1"):
            try:
                reader = sqlite3.connect(
                    f"{self.database.as_uri()}?{options}", uri=True, check_same_thread=False
                )
                reader.execute("PRAGMA mmap_size = 0")
                reader.execute("SELECT count(*) FROM Cache LIMIT 1").fetchall()
            except sqlite3.DatabaseError:
                continue
            self._reader = reader
            return

    def _quarantine(self, error: sqlite3.DatabaseError) -> None:
        """Move a database that SQLite cannot read aside, with its log, and start an empty one.

        The whole folder moves, so the write-ahead log, which may hold most of the entries,
        stays with its database for whoever wants to recover them.
        """
        damaged = self.directory.with_name(
            f"{self.directory.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        )
        wal = self.directory / _WAL
        with_log = f", with its write-ahead log {wal.name}," if wal.is_file() else ""
        warnings.warn(
            f"The embedding cache database {self.database} is damaged ({error}); it was moved"
            f"{with_log} to {damaged} and its embeddings will be re-encoded.",
            CacheIntegrityWarning,
            stacklevel=4,
        )
        self._close_connections()
        try:
            self.directory.rename(damaged)
        except FileNotFoundError:
            pass  # another process sharing the folder moved it aside first
        except OSError as rename_error:
            raise OSError(
                f"The embedding cache database {self.database} is damaged ({error}) and cannot "
                f"be moved aside ({rename_error}); delete {self.directory}."
            ) from error
        self._open()

    def quarantine_if_damaged(self, error: sqlite3.DatabaseError) -> None:
        """Move the database aside and start an empty one if ``error`` says it is damaged.

        Parameters
        ----------
        error : sqlite3.DatabaseError
            An error raised by an operation on this store's database.

        Raises
        ------
        sqlite3.DatabaseError
            ``error`` itself, when it is not a sign of a damaged database.

        Warns
        -----
        CacheIntegrityWarning
            When the database is moved aside.
        """
        if not _is_corruption(error):
            raise error
        with self._lock:
            self._quarantine(error)

    def get_many(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """Read the stored embeddings among ``keys``.

        Parameters
        ----------
        keys : iterable of str
            Cache keys.

        Returns
        -------
        dict of str to ndarray
            The stored embeddings among ``keys``; missing and damaged keys are absent.

        Warns
        -----
        CacheIntegrityWarning
            When entries fail their checksum (they are deleted, to be re-encoded), or the
            database is damaged (it is moved aside and an empty one started).
        """
        self._reopen_if_replaced()
        found: dict[str, np.ndarray] = {}
        damaged: dict[str, str] = {}
        try:
            for key in keys:
                record = self._fetch(key)
                if record is None:
                    continue
                try:
                    found[key] = decode_record(key, record, self.model_fingerprint)
                except _StaleRecord:
                    continue  # a miss: re-encoded and overwritten
                except ValueError as reason:
                    damaged[key] = str(reason)
        except sqlite3.DatabaseError as error:
            self.quarantine_if_damaged(error)
            return {}
        if damaged:
            self._discard(damaged)
        return found

    def _fetch(self, key: str) -> bytes | None:
        if self._cache is not None:
            return self._cache.get(key, retry=True)
        if self._reader is None:
            return None
        with self._lock:
            row = self._reader.execute(
                "SELECT value, filename FROM Cache WHERE key = ? AND raw = 1", (key,)
            ).fetchone()
        if row is None:
            return None
        value, filename = row
        return (self.directory / filename).read_bytes() if value is None else bytes(value)

    def _discard(self, damaged: dict[str, str]) -> None:
        first, reason = next(iter(damaged.items()))
        warnings.warn(
            f"{len(damaged)} damaged embedding cache entries in {self.database} (first: "
            f"{first!r}, which {reason}) were discarded and will be re-encoded.",
            CacheIntegrityWarning,
            stacklevel=4,
        )
        if self._cache is not None:
            for key in damaged:
                self._cache.delete(key, retry=True)

    def put_many(self, embeddings: dict[str, np.ndarray]) -> None:
        """Store embeddings in one durable transaction.

        Nothing is stored when the folder is read-only; the store then keeps serving what it
        holds.

        Parameters
        ----------
        embeddings : dict of str to ndarray
            Embeddings by cache key.

        Warns
        -----
        ReadOnlyCacheWarning
            When the folder turns out to be read-only.
        """
        self._reopen_if_replaced()
        if self._cache is None or not embeddings:
            return
        records = {
            key: encode_record(key, value, self.model_fingerprint)
            for key, value in embeddings.items()
        }
        try:
            self._write(records)
        except sqlite3.DatabaseError as error:
            if _is_corruption(error):
                self._quarantine(error)
                if self._cache is not None:
                    self._write(records)
                return
            if "readonly" not in str(error) and "read-only" not in str(error):
                raise
            with self._lock:
                if self._cache is not None:
                    self._cache.close()
                    self._open_read_only(error)

    def _write(self, records: dict[str, bytes]) -> None:
        cache = self._cache
        with cache.transact(retry=True):
            for key, record in records.items():
                cache.set(key, record, retry=True)

    def _close_connections(self) -> None:
        if self._cache is not None:
            self._cache.close()
        if self._reader is not None:
            self._reader.close()
        self._cache = self._reader = None

    def close(self) -> None:
        """Close the database connections; :func:`open_store` opens the store again."""
        with self._lock:
            self._close_connections()

    def __len__(self) -> int:
        if self._cache is not None:
            return len(self._cache)
        if self._reader is None:
            return 0
        with self._lock:
            return self._reader.execute("SELECT count(*) FROM Cache").fetchone()[0]


_stores: dict[tuple[int, str], DiskStore] = {}
_stores_lock = threading.Lock()


def open_store(directory: str | os.PathLike) -> DiskStore:
    """The process's :class:`DiskStore` for ``directory``, opened on first use.

    Parameters
    ----------
    directory : str or path-like
        Folder of the store; created when missing.

    Returns
    -------
    DiskStore
        The same instance for every call with this folder in this process (a forked
        process gets its own).
    """
    key = (os.getpid(), str(Path(directory).resolve()))
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = DiskStore(Path(directory))
        return store


def close_stores() -> None:
    """Close this process's open stores; the next use of the cache reopens them from disk."""
    with _stores_lock:
        for store in _stores.values():
            store.close()
        _stores.clear()
