"""Claims on embedding keys, so that workers sharing an on-disk cache encode each key once.

Two GridSearchCV (loky) or Dask workers whose folds share images both find the same keys
missing from the cache; without claims both encode them. Before encoding a batch, a worker
claims its missing keys in the cache's own database, in one transaction (diskcache's
``Cache.add`` adds a key only where no live one is held, atomically across processes). It
encodes the keys it claimed and leaves the others to the workers holding them; it waits for
those only once it holds no claim itself, so no two workers ever wait for each other.

A claim names its owner (host, process id and a token of its own) and expires after
:data:`LEASE_SECONDS` unless renewed: a thread renews a batch's claims while it encodes.
Claims are released once their embeddings are stored, or when encoding them fails. A waiting
worker claims a key again when its claim was released without the embedding being stored,
has expired, or belongs to a process of this host that no longer exists: a crashed worker
delays the others by at most the lease, and never leaves a key that nobody encodes. A live
owner taken for dead (another pid namespace under the same host name) costs one duplicate
encode, never a wrong embedding.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator

import diskcache
import numpy as np

#: Seconds a claim lasts unless its owner renews it (every third of it, while encoding).
LEASE_SECONDS = 30.0

# Waiting for other workers' keys: first and longest pause between two looks at the cache.
_FIRST_POLL_SECONDS = 0.01
_LONGEST_POLL_SECONDS = 0.5
_HOST = socket.gethostname()

#: Who holds a claim: host name, process id and a token of the claim's own.
_Owner = tuple[str, int, str]


def _claim_key(key: str) -> tuple[str, str]:
    # A tuple is stored pickled, apart from the str keys of embeddings and never confused with them.
    return ("encoding-claim", key)


def _owner_is_gone(owner: _Owner | None) -> bool:
    """Whether a claim's owner process is known to have ended (same host, no such pid)."""
    if owner is None:
        return True  # expired between the failed add and this read
    host, pid, _ = owner
    # os.kill(pid, 0) only probes on POSIX (on Windows it would end the process).
    if host != _HOST or pid == os.getpid() or os.name != "posix":
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by another user
    return False


class KeyClaims:
    """Claims on the keys being encoded, held in the embedding store's diskcache database.

    Parameters
    ----------
    cache : diskcache.Cache
        The database shared by every worker that shares the embeddings.
    lease_seconds : float, default=LEASE_SECONDS
        How long a claim lasts without renewal.
    """

    def __init__(self, cache: diskcache.Cache, lease_seconds: float = LEASE_SECONDS) -> None:
        self.cache = cache
        self.lease_seconds = lease_seconds

    @contextlib.contextmanager
    def claim(self, keys: Collection[str]) -> Iterator[set[str]]:
        """Claim ``keys`` for the caller to encode, and release the claims on exit.

        Parameters
        ----------
        keys : collection of str
            Cache keys the caller is about to encode.

        Yields
        ------
        set of str
            The keys claimed: those no live worker holds. The caller encodes and stores
            these before the block ends; the others are another worker's to encode.
        """
        owner = (_HOST, os.getpid(), uuid.uuid4().hex)
        mine = self._take(keys, owner)
        if not mine:
            yield mine
            return
        done = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(mine, done), name="skcicm-claim-lease", daemon=True
        )
        renewer.start()
        try:
            yield mine
        finally:
            done.set()
            renewer.join()
            self._release(mine, owner)

    def _take(self, keys: Collection[str], owner: _Owner) -> set[str]:
        mine = set()
        with self.cache.transact(retry=True):
            for key in keys:
                claim = _claim_key(key)
                if self.cache.add(claim, owner, expire=self.lease_seconds, retry=True):
                    mine.add(key)
                elif _owner_is_gone(self.cache.get(claim, retry=True)):
                    self.cache.set(claim, owner, expire=self.lease_seconds, retry=True)
                    mine.add(key)
        return mine

    def _renew(self, mine: set[str], done: threading.Event) -> None:
        while not done.wait(self.lease_seconds / 3):
            with self.cache.transact(retry=True):
                for key in mine:
                    self.cache.touch(_claim_key(key), expire=self.lease_seconds, retry=True)

    def _release(self, mine: set[str], owner: _Owner) -> None:
        with self.cache.transact(retry=True):
            for key in mine:
                claim = _claim_key(key)
                # A claim taken over after its lease expired is the new owner's to release.
                if self.cache.get(claim, retry=True) == owner:
                    self.cache.delete(claim, retry=True)

    def wait_for(
        self,
        keys: Collection[str],
        lookup: Callable[[Collection[str]], dict[str, np.ndarray]],
        encode: Callable[[list[str]], dict[str, np.ndarray]],
    ) -> dict[str, np.ndarray]:
        """Wait for keys that other workers claimed, encoding those they gave up.

        Call it holding no claim, so that no two workers wait for each other.

        Parameters
        ----------
        keys : collection of str
            Keys another worker held when the caller tried to claim them.
        lookup : callable
            Keys to the embeddings stored among them.
        encode : callable
            Keys this worker now holds (their owner released them without storing them,
            died, or let the lease expire) to their embeddings, stored before it returns;
            keys that cannot be encoded are left out.

        Returns
        -------
        dict of str to ndarray
            The embeddings of ``keys``, less those ``encode`` left out.
        """
        pending = set(keys)
        found: dict[str, np.ndarray] = {}
        pause = _FIRST_POLL_SECONDS
        while True:
            found.update(lookup(pending))
            pending.difference_update(found)
            if not pending:
                return found
            with self.claim(pending) as mine:
                # Stored and released between the lookup and the claim: nothing to encode.
                stored = lookup(mine) if mine else {}
                found.update(stored)
                found.update(encode(sorted(mine.difference(stored))))
            pending.difference_update(mine)
            if pending and not mine:
                time.sleep(pause)
                pause = min(2 * pause, _LONGEST_POLL_SECONDS)
