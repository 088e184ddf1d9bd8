"""worker_type="processes": DataLoader worker processes give the threads' embeddings bit for bit,
read each file once, never decode a cached image (nor start for a cached call), and report bad
files like the threads do."""

import multiprocessing
import signal
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.utils._param_validation import InvalidParameterError

from skcicm import CLIPFeaturizer
from skcicm.featurizer import ImageInterventions
from skcicm.featurizer import _image_encoding as image_encoding
from skcicm.featurizer._images import ImageLoadError, ImageSource, forget_file_keys
from skcicm.featurizer.cache import clear_memory_cache


def _featurizer(name, **params):
    params.setdefault("progress", False)
    params.setdefault("interventions", None)
    params.setdefault("device", "cpu")
    # Memory only: a test's second featurizer must not find the first one's embeddings on disk.
    params.setdefault("cache_dir", None)
    return CLIPFeaturizer(name, **params)


def _save(images, folder):
    paths = []
    for i, image in enumerate(images):
        paths.append(str(folder / f"img{i}.png"))
        Image.fromarray(image).save(paths[-1])
    return paths


def _cold():
    clear_memory_cache()
    forget_file_keys()


@pytest.fixture
def start_method():
    """Run with a given multiprocessing start method, then restore the process's own."""
    previous = multiprocessing.get_start_method(allow_none=True)
    yield lambda method: multiprocessing.set_start_method(method, force=True)
    multiprocessing.set_start_method(previous, force=True)


def test_processes_give_the_threads_embeddings_bit_for_bit(tiny_clip_name, domain_images, tmp_path):
    images, _, _ = domain_images
    paths = _save(images[:20], tmp_path)
    # The same batches on both sides (8 views per image, 8 per batch; 4 clean images per
    # batch), so that even the model's floating-point sums are the same.
    views = dict(interventions="paper", n_interventions=7, random_state=3, batch_size=8)
    _cold()
    threads = _featurizer(tiny_clip_name, num_workers=2, **views).fit_transform(paths)
    _cold()
    clean_threads = _featurizer(tiny_clip_name, num_workers=2, batch_size=4).transform(paths)
    for workers in (1, 3):
        _cold()
        processes = _featurizer(
            tiny_clip_name, num_workers=workers, worker_type="processes", **views
        ).fit_transform(paths)
        np.testing.assert_array_equal(processes, threads)
        np.testing.assert_array_equal(
            processes.fit_context["interventions"], threads.fit_context["interventions"]
        )
        _cold()
        clean = _featurizer(
            tiny_clip_name, num_workers=workers, worker_type="processes", batch_size=4
        ).transform(paths)
        np.testing.assert_array_equal(clean, clean_threads)
    assert threads.fit_context["interventions"].shape == (20, 7, 32)


def test_processes_decode_only_cache_misses_and_read_each_file_once(
    tiny_clip_name, domain_images, tmp_path, encoded_count, monkeypatch
):
    images, _, _ = domain_images
    paths = _save(images[:16], tmp_path)
    featurizer = _featurizer(tiny_clip_name, num_workers=2, worker_type="processes")
    cached = featurizer.transform(paths[:6])
    assert encoded_count["images"] == 6
    # Forked workers inherit these patches: a cached image that reached a worker would fail
    # the call, and every read, in this process or a worker, appends a line to the log.
    log = tmp_path / "reads.log"
    read, decode = ImageSource.read, ImageSource.decode

    def logged_read(self):
        with open(log, "a") as handle:
            handle.write(f"{self.name}\n")
        return read(self)

    def refusing_decode(self):
        if self.name in paths[:6]:
            raise AssertionError(f"{self.name} is cached but was decoded")
        return decode(self)

    monkeypatch.setattr(ImageSource, "read", logged_read)
    monkeypatch.setattr(ImageSource, "decode", refusing_decode)
    embeddings = featurizer.transform(paths)
    assert encoded_count["images"] == 16
    np.testing.assert_array_equal(embeddings[:6], cached)
    # The cached files' keys are remembered, so only the 10 new files are read, once each.
    assert sorted(log.read_text().split()) == sorted(paths[6:])

    def no_workers(*args, **kwargs):
        raise AssertionError("worker processes started for a call with nothing to decode")

    monkeypatch.setattr(image_encoding, "decoding_loader", no_workers)
    np.testing.assert_array_equal(featurizer.transform(paths), embeddings)


def test_remembered_files_are_read_once_by_the_workers(
    tiny_clip_name, domain_images, tmp_path, monkeypatch
):
    images, _, _ = domain_images
    paths = _save(images[:12], tmp_path)
    featurizer = _featurizer(tiny_clip_name, num_workers=2, worker_type="processes", cache_dir=None)
    _cold()
    first = featurizer.transform(paths)
    clear_memory_cache()  # file keys still remembered: the workers read the files themselves
    log = tmp_path / "reads.log"
    from skcicm.featurizer import _images as images_module

    read_file = images_module._read_regular_file

    def logged(path):
        with open(log, "a") as handle:
            handle.write(f"{path}\n")
        return read_file(path)

    monkeypatch.setattr(images_module, "_read_regular_file", logged)
    np.testing.assert_array_equal(featurizer.transform(paths), first)
    assert sorted(log.read_text().split()) == sorted(paths)


def test_corrupt_file_among_good_ones_is_named_and_the_rest_cached(
    tiny_clip_name, domain_images, tmp_path, encoded_count
):
    images, _, _ = domain_images
    good = _save(images[:30], tmp_path)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 definitely not a jpeg")
    duplicate = tmp_path / "same_corrupt.jpg"
    duplicate.write_bytes(corrupt.read_bytes())
    paths = [*good[:11], str(corrupt), *good[11:25], str(duplicate), *good[25:]]
    featurizer = _featurizer(
        tiny_clip_name,
        num_workers=2,
        worker_type="processes",
        batch_size=4,
        interventions="paper",
        n_interventions=2,
    )
    with pytest.raises(ImageLoadError, match="corrupt.jpg") as raised:
        featurizer.fit_transform(paths)
    failures = dict(raised.value.failures)
    assert list(failures) == [str(corrupt), str(duplicate)]
    assert "not a readable image" in failures[str(corrupt)]
    assert encoded_count["images"] == 30 * 3
    featurizer.fit_transform(good)
    assert encoded_count["images"] == 30 * 3


def test_spawned_workers_match_and_unpicklable_interventions_fail_first(
    tiny_clip_name, domain_images, start_method, encoded_count
):
    images, _, _ = domain_images
    params = dict(interventions="paper", n_interventions=3, batch_size=4, num_workers=1)
    threads = _featurizer(tiny_clip_name, **params).fit_transform(images[:6])
    start_method("spawn")
    clear_memory_cache()
    spawned = _featurizer(tiny_clip_name, worker_type="processes", **params).fit_transform(
        images[:6]
    )
    np.testing.assert_array_equal(
        spawned.fit_context["interventions"], threads.fit_context["interventions"]
    )
    clear_memory_cache()
    before = encoded_count["images"]
    lambdas = _featurizer(
        tiny_clip_name,
        worker_type="processes",
        num_workers=1,
        interventions=[lambda image: image.rotate(90)],
    )
    with pytest.raises(TypeError, match=r"'spawn' start method pickles .* worker_type='threads'"):
        lambdas.fit_transform(images[:6])
    assert encoded_count["images"] == before


def test_workers_do_not_inherit_a_held_intervention_lock(tiny_clip_name, domain_images):
    images, _, _ = domain_images
    # 3 views per image and per batch on both sides: the same batches, the same sums.
    params = dict(interventions="paper", n_interventions=2, batch_size=3, num_workers=2)
    threads = _featurizer(tiny_clip_name, **params).fit_transform(images[:8])
    clear_memory_cache()
    lock = ImageInterventions._global_rng_lock

    # As if a thread of this process (another featurizer) drew parameters at the fork: a
    # forked worker would wait on its copy of the held lock forever without a fresh one.
    def expired(signum, frame):
        raise TimeoutError("a worker waited on the inherited intervention lock")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(60)
    try:
        with lock:
            processes = _featurizer(
                tiny_clip_name, worker_type="processes", **params
            ).fit_transform(images[:8])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    np.testing.assert_array_equal(
        processes.fit_context["interventions"], threads.fit_context["interventions"]
    )


def test_a_daemonic_process_is_told_to_use_threads(tiny_clip_name, domain_images, monkeypatch):
    images, _, _ = domain_images
    daemonic = SimpleNamespace(daemon=True)
    monkeypatch.setattr(multiprocessing, "current_process", lambda: daemonic)
    featurizer = _featurizer(tiny_clip_name, num_workers=2, worker_type="processes")
    with pytest.raises(ValueError, match=r"daemonic process .* worker_type='threads'"):
        featurizer.transform(images[:4])


def test_worker_type_is_validated(tiny_clip_name):
    with pytest.raises(InvalidParameterError, match="'worker_type' parameter"):
        CLIPFeaturizer(tiny_clip_name, worker_type="gpu").fit([])
    with pytest.raises(InvalidParameterError, match="'worker_type' parameter"):
        CLIPFeaturizer(tiny_clip_name, worker_type=None).transform([np.zeros((4, 4, 3), np.uint8)])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_processes_pin_batches_and_match_threads(tiny_clip_name, domain_images, monkeypatch):
    images, _, _ = domain_images
    params = dict(device="cuda", precision="fp32", batch_size=8, num_workers=2)
    threads = _featurizer(tiny_clip_name, **params).transform(images[:24])
    clear_memory_cache()
    pinned = []
    original = CLIPFeaturizer._encode_batch

    def recording(self, loaded, device, batch):
        pinned.append(batch.is_pinned())  # as the DataLoader hands it over
        return original(self, loaded, device, batch)

    monkeypatch.setattr(CLIPFeaturizer, "_encode_batch", recording)
    processes = _featurizer(tiny_clip_name, worker_type="processes", **params).transform(
        images[:24]
    )
    np.testing.assert_allclose(processes, threads, atol=1e-6)
    assert pinned and all(pinned)
