"""The embedding cache: keys that cannot collide, checked entries, bounded memory, a shared disk."""

import functools
import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import diskcache
import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance
from sklearn.base import BaseEstimator
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline
from torchvision import transforms as v1
from torchvision import tv_tensors
from torchvision.transforms import v2

from skcicm import CLIPFeaturizer
from skcicm.featurizer.cache._claims import KeyClaims
from skcicm.featurizer.cache._keys import (
    UncachedInterventionWarning,
    interventions_cache_id,
    transform_cache_key,
)
from skcicm.featurizer.cache._memory import (
    DEFAULT_MEMORY_LIMIT_BYTES,
    EmbeddingCache,
    clear_memory_cache,
    memory_cache_info,
    set_memory_cache_limit,
)
from skcicm.featurizer.cache._store import (
    CacheIntegrityWarning,
    ReadOnlyCacheWarning,
    close_stores,
    decode_record,
    encode_record,
    open_store,
)

REPO = Path(__file__).resolve().parents[1]


def _featurizer(model_name, **params):
    defaults = dict(pretrained=None, progress=False, num_workers=0, batch_size=4)
    return CLIPFeaturizer(model_name, **{**defaults, **params})


@pytest.fixture(autouse=True)
def _fresh_process_state():
    """Each test starts like a new process: no embeddings in memory, no open databases."""
    _restart()
    yield
    close_stores()
    set_memory_cache_limit(DEFAULT_MEMORY_LIMIT_BYTES)


def _restart():
    """Forget what this process holds, as a new process would start."""
    clear_memory_cache()
    close_stores()


def _encode_then_restart(model_name, images, cache_dir):
    """Embeddings of ``images`` stored in ``cache_dir``, and the database that holds them."""
    embeddings = _featurizer(model_name, cache_dir=cache_dir).transform(images)
    (database,) = Path(cache_dir).rglob("cache.db")
    _restart()
    return embeddings, database


# 1. Keys of intervened copies ----------------------------------------------------------------


def _brightness(factor):
    return lambda image: ImageEnhance.Brightness(image).enhance(factor)


@pytest.mark.filterwarnings("ignore::skcicm.featurizer.cache._keys.UncachedInterventionWarning")
def test_closures_with_different_parameters_never_share_embeddings(
    tiny_clip_name, domain_images, tmp_path
):
    images, _, _ = domain_images
    reference = _featurizer(tiny_clip_name, cache_dir=None)
    for factor in (0.2, 1.8, 0.5, 3.0):
        # Each closure is dropped before the next is made, so CPython reuses its address.
        featurizer = _featurizer(
            tiny_clip_name, interventions=[_brightness(factor)], cache_dir=tmp_path
        )
        intervened = featurizer.intervention_embeddings(images[:3])[:, 0]
        brightened = [
            np.asarray(ImageEnhance.Brightness(Image.fromarray(im)).enhance(factor))
            for im in images[:3]
        ]
        np.testing.assert_allclose(intervened, reference.transform(brightened), atol=1e-5)


def test_uncached_interventions_are_recomputed_and_warned_about(
    tiny_clip_name, domain_images, encoded_count
):
    images, _, _ = domain_images
    featurizer = _featurizer(tiny_clip_name, interventions=[_brightness(0.5)])
    with pytest.warns(UncachedInterventionWarning, match="cache_key"):
        first = featurizer.intervention_embeddings(images[:4])
    with pytest.warns(UncachedInterventionWarning):
        again = featurizer.intervention_embeddings(images[:4])
    assert encoded_count["images"] == 8
    np.testing.assert_array_equal(first, again)


def test_a_cache_key_attribute_makes_a_callable_cacheable_across_processes(
    tiny_clip_name, domain_images, tmp_path, encoded_count
):
    images, _, _ = domain_images
    first_closure = _brightness(0.5)
    first_closure.cache_key = "brightness-0.5"
    first = _featurizer(
        tiny_clip_name, interventions=[first_closure], cache_dir=tmp_path
    ).intervention_embeddings(images[:4])
    _restart()
    same_key = _brightness(0.5)
    same_key.cache_key = "brightness-0.5"
    again = _featurizer(
        tiny_clip_name, interventions=[same_key], cache_dir=tmp_path
    ).intervention_embeddings(images[:4])
    assert encoded_count["images"] == 4
    np.testing.assert_array_equal(first, again)
    other = _brightness(1.8)
    other.cache_key = "brightness-1.8"
    _featurizer(tiny_clip_name, interventions=[other], cache_dir=tmp_path).intervention_embeddings(
        images[:4]
    )
    assert encoded_count["images"] == 8


def test_torchvision_transforms_are_keyed_by_their_parameters():
    assert transform_cache_key(v2.ColorJitter(brightness=0.2)) != transform_cache_key(
        v2.ColorJitter(brightness=0.5)
    )
    assert transform_cache_key(v1.ColorJitter(brightness=0.2)) == transform_cache_key(
        v1.ColorJitter(brightness=0.2)
    )
    assert transform_cache_key(v2.Compose([v2.Grayscale(3), v2.RandomInvert(1.0)])) is not None
    for unkeyable in (
        v1.Lambda(lambda image: image),
        v2.Lambda(lambda image: image),
        v2.Compose([v2.Grayscale(3), lambda image: image]),
        v1.RandomChoice([v1.Grayscale(3), v1.Lambda(lambda image: image)]),
        functools.partial(ImageEnhance.Brightness),
        str.upper,
    ):
        assert transform_cache_key(unkeyable) is None, unkeyable


def test_interventions_cache_id_depends_on_order_and_seed_and_rejects_bad_keys():
    gray, invert = v2.Grayscale(3), v2.RandomInvert(1.0)
    assert interventions_cache_id([gray, invert], 0) != interventions_cache_id([invert, gray], 0)
    assert interventions_cache_id([gray], 0) != interventions_cache_id([gray], 1)
    with pytest.warns(UncachedInterventionWarning):
        assert interventions_cache_id([gray, lambda image: image], 0) is None
    bad = _brightness(0.5)
    bad.cache_key = 42
    with pytest.raises(TypeError, match="cache_key .* must be a non-empty string"):
        interventions_cache_id([bad], 0)


def _invert_sometimes(p):
    return [v2.RandomApply([v2.RandomInvert(p=1.0)], p=p)]


def test_random_apply_probability_changes_the_copies_without_a_disk_cache(
    tiny_clip_name, domain_images
):
    # torchvision's repr of RandomApply leaves p out; the key built from it served p=0's copies.
    images, _, _ = domain_images
    reference = _featurizer(tiny_clip_name, cache_dir=None)
    for p, expected in ((0.0, images[:3]), (1.0, 255 - images[:3]), (0.0, images[:3])):
        featurizer = _featurizer(tiny_clip_name, interventions=_invert_sometimes(p), cache_dir=None)
        intervened = featurizer.intervention_embeddings(images[:3])[:, 0]
        np.testing.assert_allclose(intervened, reference.transform(expected), atol=1e-5)


class _RecordInterventions(BaseEstimator):
    """A pipeline head that keeps the intervened copies it was fitted on."""

    fitted_on: list = []

    def fit(self, X, y=None):
        self.fitted_on.append(X.fit_context["interventions"][:, 0])
        self.n_fitted_ = len(X)
        return self

    def score(self, X, y=None):
        return 0.0


def test_a_grid_search_over_interventions_fits_each_setting_on_its_own_copies(
    tiny_clip_name, domain_images, tmp_path
):
    images, labels, _ = domain_images
    images, labels = images[:8], labels[:8]
    pipe = Pipeline(
        [
            ("clip", _featurizer(tiny_clip_name, cache_dir=tmp_path)),
            ("head", _RecordInterventions()),
        ]
    )
    grid = {"clip__interventions": [_invert_sometimes(0.0), _invert_sometimes(1.0)]}
    _RecordInterventions.fitted_on = []
    GridSearchCV(pipe, grid, cv=KFold(2), refit=False).fit(list(images), labels)
    reference = _featurizer(tiny_clip_name, cache_dir=None)
    # One candidate after the other, each on two folds: the first and second halves.
    expected = [images[4:], images[:4], 255 - images[4:], 255 - images[:4]]
    assert len(_RecordInterventions.fitted_on) == 4
    for fitted_on, truth in zip(_RecordInterventions.fitted_on, expected, strict=True):
        np.testing.assert_allclose(fitted_on, reference.transform(truth), atol=1e-5)


class _Brighten:
    """An intervention whose repr hides its parameter."""

    def __init__(self, factor):
        self.factor = factor

    def __call__(self, image):
        return ImageEnhance.Brightness(image).enhance(self.factor)

    def __repr__(self):
        return "Brighten()"


def test_a_transform_whose_repr_hides_a_parameter_is_cached_per_parameter(
    tiny_clip_name, domain_images, tmp_path, encoded_count
):
    images, _, _ = domain_images
    reference = _featurizer(tiny_clip_name, cache_dir=None)
    for factor in (0.5, 1.8, 0.5):
        with warnings.catch_warnings():
            warnings.simplefilter("error", UncachedInterventionWarning)
            intervened = _featurizer(
                tiny_clip_name, interventions=[_Brighten(factor)], cache_dir=tmp_path
            ).intervention_embeddings(images[:3])[:, 0]
        brightened = [
            np.asarray(ImageEnhance.Brightness(Image.fromarray(im)).enhance(factor))
            for im in images[:3]
        ]
        np.testing.assert_allclose(intervened, reference.transform(brightened), atol=1e-5)
        _restart()
    # Two factors, the third call a cache hit from disk (the reference encodes 3 per factor).
    assert encoded_count["images"] == 2 * 3 + 3 * 3


def test_a_dict_fill_is_part_of_the_key():
    def rotation(fill):
        return v2.RandomRotation(degrees=(90, 90), fill={tv_tensors.Image: fill, "others": 0})

    assert repr(rotation(0)) == repr(rotation(255))  # what the old keys were built from
    assert transform_cache_key(rotation(0)) != transform_cache_key(rotation(255))
    assert transform_cache_key(rotation(0)) == transform_cache_key(rotation(0))


class _Holding:
    def __init__(self, thing):
        self.thing = thing

    def __call__(self, image):
        return image


def _module_level_intervention(image):
    return image


@pytest.mark.parametrize(
    ("thing", "reason"),
    [
        (lambda: None, r"_Holding\.thing is <function .*lambda.*no name that identifies it"),
        (_brightness(0.5), r"_Holding\.thing is .*closure"),
        ({"nested": [v2.Lambda(lambda image: image)]}, r"_Holding\.thing\['nested'\]\[0\]\.lambd"),
        ((i for i in range(3)), r"_Holding\.thing is a generator"),
        (functools.partial(int), r"_Holding\.thing is a partial"),
    ],
    ids=["lambda", "closure", "nested-lambda", "generator", "partial"],
)
def test_what_cannot_be_fingerprinted_is_not_cached_and_named(thing, reason):
    with pytest.warns(UncachedInterventionWarning, match=f"Intervention _Holding .*{reason}"):
        assert interventions_cache_id([_Holding(thing)], 0) is None


def test_an_open_file_is_not_fingerprinted(tmp_path):
    with (
        open(tmp_path / "state.txt", "w") as handle,
        pytest.warns(UncachedInterventionWarning, match=r"_Holding\.thing is a \w*IO"),
    ):
        assert interventions_cache_id([_Holding(handle)], 0) is None


_FACTOR = 0.5


def _brighten_by_a_global(image):
    return ImageEnhance.Brightness(image).enhance(_FACTOR)


def _script_function(source):
    """A function named ``__main__.brighten``, as two different scripts would define it."""
    namespace = {"__name__": "__main__", "ImageEnhance": ImageEnhance}
    exec(source, namespace)
    return namespace["brighten"]


def test_functions_and_classes_are_keyed_by_code_globals_and_class_constants(monkeypatch):
    script = "def brighten(image):\n    return ImageEnhance.Brightness(image).enhance({})\n"
    half, double = _script_function(script.format(0.5)), _script_function(script.format(2.0))
    assert half.__qualname__ == double.__qualname__ and half.__module__ == double.__module__
    assert transform_cache_key(half) != transform_cache_key(double)
    assert transform_cache_key(half) == transform_cache_key(_script_function(script.format(0.5)))
    before = transform_cache_key(_brighten_by_a_global)
    assert before is not None
    monkeypatch.setattr(sys.modules[__name__], "_FACTOR", 2.0)
    assert transform_cache_key(_brighten_by_a_global) != before
    monkeypatch.setattr(_Brighten, "EXTRA", 1.0, raising=False)
    with_class_constant = transform_cache_key(_Brighten(0.5))
    monkeypatch.setattr(_Brighten, "EXTRA", 2.0)
    assert transform_cache_key(_Brighten(0.5)) != with_class_constant


def test_named_functions_tensors_and_arrays_are_keyed_by_their_content():
    assert transform_cache_key(_module_level_intervention) is not None
    keys = {
        transform_cache_key(_Holding(thing))
        for thing in (
            torch.zeros(3),
            torch.ones(3),
            np.zeros(3),
            np.zeros(3, dtype=np.float32),
            _module_level_intervention,
            v2.InterpolationMode.BILINEAR,
            v2.InterpolationMode.NEAREST,
            {1, 2},
            (1, 2),
            [1, 2],
            1.0,
            1,
        )
    }
    assert None not in keys and len(keys) == 12
    assert transform_cache_key(_Holding(torch.ones(3))) == transform_cache_key(
        _Holding(torch.ones(3))
    )


# 2. Integrity ------------------------------------------------------------------------------


def _negated(key, array, model="model"):
    """A record of -array that keeps the digest of array: what a flipped sign on disk looks like."""
    good = encode_record(key, array, model)
    return encode_record(key, -array, model)[:-16] + good[-16:]


@pytest.mark.parametrize(
    "damage",
    [
        _negated,
        lambda key, array: b"",
        lambda key, array: encode_record(key, array, "model")[:-5],
        lambda key, array: b"\x00garbage" * 9,
        lambda key, array: encode_record("another key", array, "model"),
        lambda key, array: encode_record(key, array, "another-model"),
        lambda key, array: 123,
    ],
    ids=["negated", "zero-byte", "truncated", "garbage", "other-key", "other-model", "not-bytes"],
)
def test_damaged_entries_are_reported_with_the_database_and_discarded(tmp_path, damage):
    store = open_store(tmp_path / "model")
    value = np.arange(4, dtype=np.float32) + 1
    store.put_many({"good": value, "bad": value})
    store._cache.set("bad", damage("bad", value))
    with pytest.warns(CacheIntegrityWarning, match=r"cache\.db.*'bad'") as caught:
        found = store.get_many(["good", "bad"])
    assert len(caught) == 1 and str(tmp_path / "model" / "cache.db") in str(caught[0].message)
    assert list(found) == ["good"]
    np.testing.assert_array_equal(found["good"], value)
    assert len(store) == 1


def test_record_round_trip_keeps_dtype_and_shape():
    for array in (np.zeros((2, 3), dtype=np.float16), np.arange(5.0), np.ones(0, np.float32)):
        decoded = decode_record("k", encode_record("k", array, "m"), "m")
        assert decoded.dtype == array.dtype and decoded.shape == array.shape
        np.testing.assert_array_equal(decoded, array)


def test_an_altered_embedding_on_disk_is_re_encoded_not_served(
    tiny_clip_name, domain_images, tmp_path, encoded_count
):
    images, _, _ = domain_images
    first, database = _encode_then_restart(tiny_clip_name, images[:4], tmp_path)
    with diskcache.Cache(str(database.parent)) as raw:
        key = next(key for key in raw.iterkeys() if not key.startswith("text-"))
        model = database.parent.name
        raw.set(key, _negated(key, decode_record(key, raw.get(key), model), model))
    with pytest.warns(CacheIntegrityWarning, match=str(database)):
        again = _featurizer(tiny_clip_name, cache_dir=tmp_path).transform(images[:4])
    # Re-encoded alone rather than in a batch of four: equal up to float rounding.
    np.testing.assert_allclose(first, again, atol=1e-6)
    assert encoded_count["images"] == 5


@pytest.mark.parametrize("damage", ["garbage", "truncated", "zero-byte"])
def test_a_damaged_database_file_is_moved_aside_and_rebuilt(
    tiny_clip_name, domain_images, tmp_path, encoded_count, damage
):
    images, _, _ = domain_images
    first, database = _encode_then_restart(tiny_clip_name, images[:6], tmp_path)
    content = database.read_bytes()
    replacement = {
        "garbage": b"this is no sqlite database " * 300,
        "truncated": content[: len(content) // 2],
        "zero-byte": b"",
    }[damage]
    database.write_bytes(replacement)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = _featurizer(tiny_clip_name, cache_dir=tmp_path).transform(images[:6])
    np.testing.assert_array_equal(first, again)
    assert encoded_count["images"] == 12
    integrity = [w for w in caught if issubclass(w.category, CacheIntegrityWarning)]
    if damage == "garbage":
        assert len(integrity) == 1 and str(database) in str(integrity[0].message)
        assert len(list(tmp_path.glob("*.damaged-*"))) == 1
    clear_memory_cache()
    _featurizer(tiny_clip_name, cache_dir=tmp_path).transform(images[:6])
    assert encoded_count["images"] == 12


def test_a_record_stored_under_another_key_is_a_miss_and_overwritten(
    tiny_clip_name, domain_images, tmp_path, encoded_count
):
    images, _, _ = domain_images
    first, database = _encode_then_restart(tiny_clip_name, images[:2], tmp_path)
    with diskcache.Cache(str(database.parent)) as raw:
        victim, donor = sorted(key for key in raw.iterkeys() if not key.startswith("text-"))
        raw.set(victim, raw.get(donor))
    with pytest.warns(CacheIntegrityWarning, match=f"{victim}.*another key or model"):
        again = _featurizer(tiny_clip_name, cache_dir=tmp_path).transform(images[:2])
    np.testing.assert_allclose(first, again, atol=1e-6)
    assert encoded_count["images"] == 3
    _restart()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheIntegrityWarning)
        _featurizer(tiny_clip_name, cache_dir=tmp_path).transform(images[:2])
    assert encoded_count["images"] == 3


def test_the_tail_of_a_record_cannot_pass_for_another_keys_record():
    # A digest of key + record, concatenated, let a record whose data holds a record header
    # pass, from that header on, for the record of a longer key.
    inner = encode_record("x", np.arange(4, dtype=np.float32), "model")[:-16]
    outer = encode_record("a", np.frombuffer(inner, dtype=np.uint8), "model")
    header = len(outer) - 16 - len(inner)
    longer_key = "a" + outer[:header].decode()
    with pytest.raises(ValueError, match="fails its checksum"):
        decode_record(longer_key, outer[header:], "model")


def test_a_model_folder_copied_under_another_fingerprint_is_not_served(tmp_path):
    truth = np.arange(8, dtype=np.float32)
    EmbeddingCache("model-a", tmp_path).put({"image": truth})
    close_stores()
    shutil.copytree(tmp_path / "model-a", tmp_path / "model-b")
    with pytest.warns(CacheIntegrityWarning, match="model-b.*another key or model"):
        assert EmbeddingCache("model-b", tmp_path).get(["image"]) == {}
    clear_memory_cache()
    np.testing.assert_array_equal(
        EmbeddingCache("model-a", tmp_path).get(["image"])["image"], truth
    )


def test_records_of_the_previous_format_are_misses_not_served(tmp_path):
    store = open_store(tmp_path / "model")
    body = encode_record("k", -np.ones(3, np.float32), "model")[:-16]
    old = b"SKE1" + body[4:]
    store._cache.set("k", old + hashlib.blake2b(b"k" + old, digest_size=16).digest())
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheIntegrityWarning)
        assert store.get_many(["k"]) == {}
    store.put_many({"k": np.ones(3, np.float32)})
    np.testing.assert_array_equal(store.get_many(["k"])["k"], np.ones(3, np.float32))


_TRUNCATE_UNDER_AN_OPEN_STORE = textwrap.dedent(
    """
    import os, sys, warnings
    import numpy as np
    from skcicm.featurizer.cache._store import close_stores, open_store

    warnings.simplefilter("always")
    folder = sys.argv[1]
    store = open_store(folder)
    for first in range(0, 500, 100):
        store.put_many({f"k{i}": np.full(512, i, np.float32) for i in range(first, first + 100)})
    # Moves every page into the database file, where a memory map would read them.
    store._cache._sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    database = os.path.join(folder, "cache.db")
    os.truncate(database, os.path.getsize(database) // 4)
    found = store.get_many(f"k{i}" for i in range(500))
    assert all(found[key][0] == int(key[1:]) for key in found)
    print("served", len(found), flush=True)
    close_stores()
    print("after reopening", len(open_store(folder).get_many(f"k{i}" for i in range(500))))
    """
)


def test_a_database_truncated_under_an_open_store_does_not_kill_the_process(tmp_path):
    folder = tmp_path / "model"
    run = subprocess.run(
        [sys.executable, "-c", _TRUNCATE_UNDER_AN_OPEN_STORE, str(folder)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # Memory-mapped I/O died here with SIGBUS (returncode -7).
    assert run.returncode == 0, (run.returncode, run.stderr)
    assert "after reopening 0" in run.stdout
    assert "CacheIntegrityWarning" in run.stderr and f"{folder / 'cache.db'} is damaged" in (
        run.stderr
    )
    (damaged,) = tmp_path.glob("model.damaged-*")
    assert (damaged / "cache.db").is_file()


@pytest.mark.parametrize("database", ["empty", "missing"])
def test_an_emptied_database_is_quarantined_with_its_write_ahead_log(tmp_path, database):
    folder = tmp_path / "model"
    store = open_store(folder)
    store.put_many({f"k{i}": np.full(64, i, np.float32) for i in range(50)})
    wal = (folder / "cache.db-wal").read_bytes()
    assert len(wal) > 0
    # A copy of the folder as a crash leaves it: the log holds the entries, the database
    # file was emptied.
    crashed = tmp_path / "crashed" / "model"
    crashed.mkdir(parents=True)
    if database == "empty":
        (crashed / "cache.db").write_bytes(b"")
    (crashed / "cache.db-wal").write_bytes(wal)
    with pytest.warns(
        CacheIntegrityWarning, match=f"file is {database} .*with its write-ahead log cache.db-wal"
    ):
        fresh = open_store(crashed)
    assert len(fresh) == 0
    (damaged,) = (tmp_path / "crashed").glob("model.damaged-*")
    assert (damaged / "cache.db-wal").read_bytes() == wal
    # What was moved aside still holds every entry: SQLite recovers them from the log once
    # the database file's header is back.
    recovery = tmp_path / "recovery" / "model"
    recovery.mkdir(parents=True)
    (recovery / "cache.db").write_bytes((folder / "cache.db").read_bytes())
    shutil.copy(damaged / "cache.db-wal", recovery)
    close_stores()
    assert len(open_store(recovery).get_many(f"k{i}" for i in range(50))) == 50


def test_a_database_found_damaged_when_claiming_is_moved_aside(tmp_path, monkeypatch):
    cache = EmbeddingCache("model", tmp_path)
    cache.put({"stored": np.ones(3, np.float32)})

    def damaged(self, keys, owner):
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(KeyClaims, "_take", damaged)
    with (
        pytest.warns(CacheIntegrityWarning, match="is damaged .*malformed"),
        cache.claim(["a", "b"]) as mine,
    ):
        assert mine == {"a", "b"}
        cache.put({"a": np.zeros(3, np.float32), "b": np.zeros(3, np.float32)})
    (quarantined,) = tmp_path.glob("model.damaged-*")
    assert (quarantined / "cache.db").is_file()
    _restart()
    assert sorted(EmbeddingCache("model", tmp_path).get(["stored", "a", "b"])) == ["a", "b"]


def test_a_cache_folder_deleted_while_in_use_is_reopened(tmp_path):
    cache = EmbeddingCache("model", tmp_path)
    cache.put({"before": np.ones(3, np.float32)})
    shutil.rmtree(tmp_path / "model")
    with pytest.warns(CacheIntegrityWarning, match="deleted or replaced while in use"):
        cache.put({"after": np.full(3, 2.0, np.float32)})
    assert (tmp_path / "model" / "cache.db").is_file()
    _restart()
    found = EmbeddingCache("model", tmp_path).get(["before", "after"])
    assert list(found) == ["after"]
    np.testing.assert_array_equal(found["after"], np.full(3, 2.0, np.float32))


def test_an_empty_cache_dir_is_refused_before_any_work(tiny_clip_name, domain_images, tmp_path):
    images, _, _ = domain_images
    for empty in ("", "  "):
        featurizer = _featurizer(tiny_clip_name, cache_dir=empty)
        for call in (featurizer.fit, featurizer.transform, featurizer.fit_transform):
            with pytest.raises(ValueError, match="cache_dir=.* names no folder"):
                call(images[:2])
    assert not list(Path.cwd().glob("*/cache.db"))


def test_a_read_only_cache_serves_hits_and_keeps_new_embeddings_in_memory(
    tiny_clip_name, domain_images, tmp_path, encoded_count, monkeypatch
):
    images, _, _ = domain_images
    first, database = _encode_then_restart(tiny_clip_name, images[:4], tmp_path)
    modified = database.stat().st_mtime_ns

    def read_only(*args, **kwargs):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(diskcache, "Cache", read_only)
    with pytest.warns(ReadOnlyCacheWarning, match="read-only"):
        again = _featurizer(tiny_clip_name, cache_dir=tmp_path).transform(images[:6])
    np.testing.assert_array_equal(first, again[:4])
    assert encoded_count["images"] == 6
    assert database.stat().st_mtime_ns == modified


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_a_folder_without_write_permission_serves_hits(
    tiny_clip_name, domain_images, tmp_path, encoded_count
):
    images, _, _ = domain_images
    first, _ = _encode_then_restart(tiny_clip_name, images[:4], tmp_path)
    folders = [path for path in tmp_path.rglob("*") if path.is_dir()] + [tmp_path]
    for folder in folders:
        folder.chmod(0o555)
    try:
        with pytest.warns(ReadOnlyCacheWarning):
            again = _featurizer(tiny_clip_name, cache_dir=tmp_path).transform(images[:5])
    finally:
        for folder in folders:
            folder.chmod(0o755)
    np.testing.assert_array_equal(first, again[:4])
    assert encoded_count["images"] == 5


def test_an_uncreatable_cache_dir_is_a_clear_error(tiny_clip_name, domain_images, tmp_path):
    images, _, _ = domain_images
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="Cannot create the embedding cache in .*a-file"):
        _featurizer(tiny_clip_name, cache_dir=blocker).transform(images[:2])


# 3. Concurrent writers and SIGKILL ---------------------------------------------------------

_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from skcicm.featurizer.cache._store import open_store

    store = open_store(sys.argv[1])
    start, stop, forever = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "forever"
    while True:
        for first in range(start, stop, 50):
            keys = range(first, min(first + 50, stop))
            store.put_many({f"k{i}": np.full(64, i, dtype=np.float32) for i in keys})
        if not forever:
            break
    """
)


def _writer(directory, start, stop, mode="once"):
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(directory), str(start), str(stop), mode], cwd=REPO
    )


def test_concurrent_writer_processes_leave_every_entry_intact(tmp_path):
    writers = [_writer(tmp_path, start, start + 600) for start in (0, 300, 600)]
    assert [writer.wait(timeout=300) for writer in writers] == [0, 0, 0]
    found = open_store(tmp_path).get_many(f"k{i}" for i in range(1200))
    assert len(found) == 1200
    for i in (0, 299, 300, 899, 1199):
        np.testing.assert_array_equal(found[f"k{i}"], np.full(64, i, dtype=np.float32))


def test_a_writer_killed_mid_write_leaves_a_usable_store(tmp_path):
    writer = _writer(tmp_path, 0, 5000, "forever")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (
        not (tmp_path / "cache.db").exists() or len(open_store(tmp_path)) < 200
    ):
        time.sleep(0.05)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    close_stores()
    store = open_store(tmp_path)
    n_stored = len(store)
    assert n_stored >= 200
    found = store.get_many(f"k{i}" for i in range(5000))
    assert len(found) == n_stored
    assert all(value[0] == int(key[1:]) for key, value in found.items())
    store.put_many({"after": np.ones(3, np.float32)})
    assert "after" in store.get_many(["after"])


# 4. Bounded memory -------------------------------------------------------------------------


def test_memory_cache_evicts_least_recently_used_beyond_its_byte_limit():
    cache = EmbeddingCache("lru-test", directory=None)
    row = np.zeros(256, dtype=np.float32)  # 1 KiB
    set_memory_cache_limit(3 * row.nbytes)
    cache.put({"a": row, "b": row, "c": row})
    cache.get(["a"])
    cache.put({"d": row})
    assert sorted(cache.get(["a", "b", "c", "d"])) == ["a", "c", "d"]
    assert memory_cache_info() == {"entries": 3, "bytes": 3 * 1024, "limit_bytes": 3 * 1024}
    set_memory_cache_limit(1024)
    assert sorted(cache.get(["a", "b", "c", "d"])) == ["d"]
    set_memory_cache_limit(0)
    assert cache.get(["d"]) == {}


def test_memory_cache_limit_is_validated_and_read_from_the_environment():
    with pytest.raises(ValueError, match="n_bytes must be an int >= 0"):
        set_memory_cache_limit(-1)
    code = (
        "from skcicm.featurizer.cache._memory import memory_cache_info; print(memory_cache_info())"
    )
    environment = {**os.environ, "SKCICM_MEMORY_CACHE_BYTES": "12345"}
    output = subprocess.run(
        [sys.executable, "-c", code], env=environment, cwd=REPO, capture_output=True, text=True
    )
    assert "'limit_bytes': 12345" in output.stdout, output.stderr
    for accepted, limit in (("1e9", 10**9), ("2.5E3", 2500), ("0", 0)):
        environment["SKCICM_MEMORY_CACHE_BYTES"] = accepted
        output = subprocess.run(
            [sys.executable, "-c", code], env=environment, cwd=REPO, capture_output=True, text=True
        )
        assert f"'limit_bytes': {limit}}}" in output.stdout, (accepted, output.stderr)
    for refused in ("lots", "1.5", "-1e3", "inf", "nan"):
        environment["SKCICM_MEMORY_CACHE_BYTES"] = refused
        failed = subprocess.run(
            [sys.executable, "-c", code], env=environment, cwd=REPO, capture_output=True, text=True
        )
        assert failed.returncode != 0, refused
        assert f"SKCICM_MEMORY_CACHE_BYTES={refused!r}: expected a whole number" in failed.stderr


def test_cached_arrays_cannot_be_altered_through_a_returned_reference():
    cache = EmbeddingCache("immutable-test", directory=None)
    cache.put({"a": np.ones(3, dtype=np.float32)})
    with pytest.raises(ValueError, match="read-only"):
        cache.get(["a"])["a"][0] = -1.0


# 6. The default on-disk location -----------------------------------------------------------


def test_the_default_cache_dir_is_shared_by_featurizers_and_can_be_disabled(
    tiny_clip_name, domain_images, tmp_path, monkeypatch, encoded_count
):
    images, _, _ = domain_images
    monkeypatch.setenv("SKCICM_CACHE_DIR", str(tmp_path / "default"))
    _featurizer(tiny_clip_name).transform(images[:4])
    assert len(list((tmp_path / "default").rglob("cache.db"))) == 1
    clear_memory_cache()
    _featurizer(tiny_clip_name).transform(images[:4])
    assert encoded_count["images"] == 4
    clear_memory_cache()
    _featurizer(tiny_clip_name, cache_dir=None).transform(images[:4])
    assert encoded_count["images"] == 8


def test_embeddings_another_process_stored_meanwhile_are_not_re_encoded(
    tiny_clip_name, domain_images, tmp_path, encoded_count, monkeypatch
):
    images, _, _ = domain_images
    _encode_then_restart(tiny_clip_name, images[:8], tmp_path)
    lookups = []
    real_get = EmbeddingCache.get

    def first_lookup_before_the_other_process_stored(self, keys):
        lookups.append(keys)
        return {} if len(lookups) == 1 else real_get(self, keys)

    monkeypatch.setattr(EmbeddingCache, "get", first_lookup_before_the_other_process_stored)
    again = _featurizer(tiny_clip_name, cache_dir=tmp_path).transform(images[:12])
    assert encoded_count["images"] == 8 + 4
    assert again.shape == (12, 32)


def test_an_unusable_default_location_falls_back_to_memory_with_a_warning(
    tiny_clip_name, domain_images, tmp_path, monkeypatch
):
    images, _, _ = domain_images
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SKCICM_CACHE_DIR", str(blocker))
    with pytest.warns(UserWarning, match="No on-disk embedding cache .*SKCICM_CACHE_DIR"):
        embeddings = _featurizer(tiny_clip_name).transform(images[:2])
    np.testing.assert_array_equal(
        embeddings, _featurizer(tiny_clip_name, cache_dir=None).transform(images[:2])
    )
