"""Content digests of weight files, remembered across processes so that each file is hashed once.

Model fingerprints name the weights by content, so that re-trained weights never hit embeddings
cached for the old ones. Hashing a checkpoint costs seconds (ViT-B-32: 2.2 s), and every
worker process of a grid search or a Dask cluster would pay it again. A digest is therefore
remembered in the process and in a small JSON record per file under the user's cache folder
(``$SKCICM_CACHE_DIR``, else ``$XDG_CACHE_HOME/skcicm``, else ``~/.cache/skcicm``), keyed by
the file's real path and stamped with its size, modification time, inode and change time: a
file that is rewritten, replaced or touched is hashed again.

Records are written to a temporary file and renamed into place, so concurrent writers never
leave a torn record; a record that is unreadable or belongs to another stamp is ignored. A
cache folder that cannot be written costs the re-hashing only.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path

CACHE_DIR_ENV = "SKCICM_CACHE_DIR"

Stamp = tuple[int, int, int, int]

_memo: dict[str, tuple[Stamp, str]] = {}
_memo_lock = threading.Lock()


def cache_folder() -> Path:
    """Folder of the digest records (see the module docstring for how it is chosen)."""
    if os.environ.get(CACHE_DIR_ENV):
        base = Path(os.environ[CACHE_DIR_ENV])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "skcicm"
    return base / "weight-digests"


def file_stamp(path: str | os.PathLike) -> Stamp:
    """What changes whenever a file's content may have changed: size, mtime, inode, ctime."""
    status = os.stat(path)
    return (status.st_size, status.st_mtime_ns, status.st_ino, status.st_ctime_ns)


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, computed once per file version on this machine.

    Examples
    --------
    >>> import tempfile, hashlib
    >>> with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as handle:
    ...     _ = handle.write(b"weights")
    >>> file_digest(handle.name) == hashlib.sha256(b"weights").hexdigest()
    True
    """
    real = os.path.realpath(path)
    stamp = file_stamp(real)
    with _memo_lock:
        remembered = _memo.get(real)
    if remembered is not None and remembered[0] == stamp:
        return remembered[1]
    record_path = cache_folder() / f"{hashlib.sha1(real.encode()).hexdigest()}.json"
    digest = _read_record(record_path, real, stamp)
    if digest is None:
        digest = _hash_file(real)
        if file_stamp(real) != stamp:
            # Written to while we read it: this digest belongs to no stable version.
            raise OSError(f"Weight file {real} changed while it was being hashed; try again.")
        _write_record(record_path, {"path": real, "stamp": list(stamp), "sha256": digest})
    with _memo_lock:
        _memo[real] = (stamp, digest)
    return digest


def _hash_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_record(record_path: Path, real: str, stamp: Stamp) -> str | None:
    try:
        record = json.loads(record_path.read_text())
        if record["path"] == real and tuple(record["stamp"]) == stamp:
            return str(record["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _write_record(record_path: Path, record: dict) -> None:
    # A read-only or full cache folder only means hashing again next time.
    try:
        record_path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w", dir=record_path.parent, suffix=".tmp", delete=False
        ) as handle:
            json.dump(record, handle)
    except OSError:
        return
    try:
        os.replace(handle.name, record_path)
    except OSError:
        Path(handle.name).unlink(missing_ok=True)
