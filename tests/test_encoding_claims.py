"""Workers sharing an on-disk embedding cache encode each key once (featurizer/cache/_claims.py).

Overlaps are forced with barriers and events, never with timing: each test fails the same way
every time if claims are not made, not respected, not released or not taken over.
"""

import multiprocessing
import os
import threading
import time
from pathlib import Path

import diskcache
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from skcicm.featurizer import ImageInterventions
from skcicm.featurizer._image_encoding import ImageEncoder
from skcicm.featurizer._images import image_source
from skcicm.featurizer.cache import EmbeddingCache, clear_memory_cache, close_stores
from skcicm.featurizer.cache._claims import KeyClaims, _claim_key
from skcicm.featurizer.cache._keys import intervened_key, interventions_cache_id

MODEL = "claims-test"
# Bounds on waits that end as soon as what they wait for happens; reached only on failure.
PATIENCE_SECONDS = 120


@pytest.fixture(autouse=True)
def _fresh_process_state():
    clear_memory_cache()
    close_stores()
    yield
    close_stores()


class _Invert:
    """The one intervention: the intervened copy of an image is its negative."""

    cache_key = "invert"

    def __call__(self, image):
        return ImageOps.invert(image)


#: The clean image and its intervened copy: two keys per image.
VIEWS = [None, 0]
INTERVENTIONS_ID = interventions_cache_id([_Invert()], random_state=0)


def _images(rows):
    """Distinct images whose (stand-in) embedding is the row number three times."""
    return [np.full((4, 4, 3), row, dtype=np.uint8) for row in rows]


def _files(rows, folder):
    """The images of :func:`_images` as PNG files (lossless: the same embeddings)."""
    paths = []
    for row, image in zip(rows, _images(rows), strict=True):
        paths.append(str(folder / f"{row}.png"))
        Image.fromarray(image).save(paths[-1])
    return paths


def _expected(rows):
    """Embeddings of the clean images and of their negatives."""
    return [
        np.array([[value] * 3 for value in values], np.float32)
        for values in (rows, [255 - row for row in rows])
    ]


def _preprocess(image):
    return torch.from_numpy(np.asarray(image, dtype=np.float32).mean(axis=(0, 1)))


def _encoder(cache, log, encode=None):
    """An ImageEncoder whose "model" returns its input and logs how many images it encoded."""

    def logged(batch):
        with open(log, "a") as handle:
            handle.write(f"{len(batch)}\n")
        return (encode or (lambda tensors: tensors.numpy()))(batch)

    return ImageEncoder(
        _preprocess,
        logged,
        cache,
        ImageInterventions([_Invert()], random_state=0),
        interventions_id=INTERVENTIONS_ID,
        batch_size=64,
        num_workers=0,
        progress=False,
    )


def _encoded(log_folder):
    return sum(int(n) for log in Path(log_folder).glob("*.log") for n in log.read_text().split())


def _keys(rows):
    """The cache keys of the clean images and their copies."""
    keys = set()
    for row, image in zip(rows, _images(rows), strict=True):
        content = image_source(image, row).key
        keys.update(
            intervened_key(content, INTERVENTIONS_ID, view) if view is not None else content
            for view in VIEWS
        )
    return keys


def _embed_in_step(cache_dir, rows, both_looked, out):
    """Embed ``rows``; wait at ``both_looked`` once this worker has claimed its batch and
    looked it up, so that the other worker has too before either stores anything."""
    cache = EmbeddingCache(MODEL, cache_dir)
    lookup = cache.get
    lookups = []

    def get_in_step(keys):
        found = lookup(keys)
        lookups.append(keys)
        if len(lookups) == 2:  # the plan's lookup, then the batch's
            both_looked.wait(timeout=PATIENCE_SECONDS)
        return found

    cache.get = get_in_step
    embeddings = _encoder(cache, Path(out).with_suffix(".log")).embed(_images(rows), VIEWS)
    np.save(out, np.stack(embeddings))


@pytest.mark.parametrize("concurrency", ["processes", "threads"])
def test_workers_that_find_the_same_keys_missing_encode_each_once(tmp_path, concurrency):
    if concurrency == "processes":
        context = multiprocessing.get_context("spawn")
        worker, both_looked = context.Process, context.Barrier(2)
    else:
        worker, both_looked = threading.Thread, threading.Barrier(2)
    rows = {"first": list(range(0, 8)), "second": list(range(4, 12))}  # 4 images in common
    workers = [
        worker(target=_embed_in_step, args=(tmp_path / "cache", part, both_looked, tmp_path / name))
        for name, part in rows.items()
    ]
    for running in workers:
        running.start()
    for running in workers:
        running.join(timeout=PATIENCE_SECONDS)
    assert not any(running.is_alive() for running in workers)
    if concurrency == "processes":
        assert [running.exitcode for running in workers] == [0, 0]
    # 12 images and their copies; without claims both workers encode the 4 shared ones: 32.
    assert _encoded(tmp_path) == 24
    for name, part in rows.items():
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}.npy"), _expected(part))


def _claim_and_hang(model_dir, keys, claimed):
    # A lease of an hour: only the owner's death can free these claims within the test.
    with KeyClaims(diskcache.Cache(str(model_dir)), lease_seconds=3600).claim(keys):
        claimed.set()
        time.sleep(3600)


@pytest.mark.skipif(os.name != "posix", reason="owners are checked by process id on POSIX")
def test_the_claims_of_a_killed_worker_are_taken_over(tmp_path):
    rows = list(range(6))
    cache = EmbeddingCache(MODEL, tmp_path)  # creates the database
    context = multiprocessing.get_context("spawn")
    claimed = context.Event()
    owner = context.Process(
        target=_claim_and_hang, args=(tmp_path / MODEL, sorted(_keys(rows)), claimed)
    )
    owner.start()
    try:
        assert claimed.wait(timeout=PATIENCE_SECONDS)
        with cache.claim(_keys(rows)) as mine:
            assert mine == set()  # its owner is alive
    finally:
        owner.kill()
        owner.join()
    with cache.claim(_keys(rows)) as mine:
        assert mine == _keys(rows)
    embeddings = _encoder(cache, tmp_path / "survivor.log").embed(_images(rows), VIEWS)
    np.testing.assert_array_equal(embeddings, _expected(rows))
    assert _encoded(tmp_path) == 12


def test_a_claim_that_is_not_renewed_is_taken_over_when_its_lease_expires(tmp_path, monkeypatch):
    cache = EmbeddingCache(MODEL, tmp_path)
    monkeypatch.setattr(KeyClaims, "_renew", lambda self, mine, done: done.wait())  # stalled
    stalled = KeyClaims(cache.store.claims().cache, lease_seconds=2.0)
    with stalled.claim(["k"]) as held:
        assert held == {"k"}
        deadline = time.monotonic() + PATIENCE_SECONDS
        while True:
            # The owner is this live process: only the lease's end frees the key.
            with cache.claim(["k"]) as mine:
                if mine:
                    break
            assert time.monotonic() < deadline, "the expired claim was never taken over"
            time.sleep(0.1)
        assert mine == {"k"}


def test_claims_are_renewed_while_their_owner_works(tmp_path):
    cache = EmbeddingCache(MODEL, tmp_path)
    database = cache.store.claims().cache
    with KeyClaims(database, lease_seconds=3.0).claim(["k"]):
        _, first_expiry = database.get(_claim_key("k"), expire_time=True)
        deadline = time.monotonic() + PATIENCE_SECONDS
        while database.get(_claim_key("k"), expire_time=True)[1] == first_expiry:
            assert time.monotonic() < deadline, "the claim was never renewed"
            time.sleep(0.05)
        with cache.claim(["k"]) as mine:
            assert mine == set()
    with cache.claim(["k"]) as mine:
        assert mine == {"k"}  # released on exit


def test_claims_are_released_when_encoding_fails(tmp_path):
    rows = list(range(5))
    cache = EmbeddingCache(MODEL, tmp_path)

    def out_of_memory(batch):
        raise RuntimeError("out of memory")

    encoder = _encoder(cache, tmp_path / "failed.log", encode=out_of_memory)
    with pytest.raises(RuntimeError, match="out of memory"):
        encoder.embed(_images(rows), VIEWS)
    with cache.claim(_keys(rows)) as mine:
        assert mine == _keys(rows)


@pytest.mark.parametrize("as_files", [False, True])
def test_keys_whose_owner_failed_are_encoded_by_the_worker_waiting_for_them(tmp_path, as_files):
    rows = list(range(5))
    # From files, the waiter finds their keys remembered (both read them in this process) and
    # must still read and hash them again to encode them.
    inputs = _files(rows, tmp_path) if as_files else _images(rows)
    owner_cache, waiter_cache = EmbeddingCache(MODEL, tmp_path), EmbeddingCache(MODEL, tmp_path)
    owner_encoding, waiter_waiting = threading.Event(), threading.Event()
    failures, results = [], []

    def fail_once_the_waiter_waits(batch):
        owner_encoding.set()
        waiter_waiting.wait(timeout=PATIENCE_SECONDS)
        raise RuntimeError("out of memory")

    def owner():
        encoder = _encoder(owner_cache, tmp_path / "owner.log", fail_once_the_waiter_waits)
        try:
            encoder.embed(inputs, VIEWS)
        except RuntimeError as error:
            failures.append(error)

    wait_for = waiter_cache.wait_for

    def wait_for_announced(keys, encode):
        waiter_waiting.set()
        return wait_for(keys, encode)

    waiter_cache.wait_for = wait_for_announced
    owner_thread = threading.Thread(target=owner)
    owner_thread.start()
    assert owner_encoding.wait(timeout=PATIENCE_SECONDS)
    waiter = _encoder(waiter_cache, tmp_path / "waiter.log")
    results.extend(waiter.embed(inputs, VIEWS))
    owner_thread.join(timeout=PATIENCE_SECONDS)
    assert [str(error) for error in failures] == ["out of memory"]
    assert waiter_waiting.is_set()
    np.testing.assert_array_equal(results, _expected(rows))
    assert (tmp_path / "waiter.log").read_text().split() == ["10"]


def test_without_a_disk_cache_every_key_is_the_callers(tmp_path):
    memory_only = EmbeddingCache(MODEL, None)
    with memory_only.claim(["a", "b"]) as first, memory_only.claim(["a", "b"]) as second:
        assert first == second == {"a", "b"}


def test_keys_that_are_never_stored_are_always_the_callers(tmp_path):
    cache = EmbeddingCache(MODEL, tmp_path)
    keys = ["uncached~x-0", "a"]
    with cache.claim(keys) as first, cache.claim(keys) as second:
        assert first == {"uncached~x-0", "a"}
        assert second == {"uncached~x-0"}
