"""The featurizer's image pipeline: bounded memory, remembered file keys, clear input errors,
16-bit files, downscaling before interventions, and interventions that threads can share."""

import hashlib
import os
import signal
import threading

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from skcicm import CLIPFeaturizer
from skcicm.featurizer import ImageInterventions, paper_interventions
from skcicm.featurizer import _decode_threads as decode_threads
from skcicm.featurizer import _image_encoding as image_encoding
from skcicm.featurizer._images import ImageLoadError, ImageSource, forget_file_keys
from skcicm.featurizer.cache import UncachedInterventionWarning, clear_memory_cache


def _featurizer(name, **params):
    params.setdefault("progress", False)
    params.setdefault("interventions", None)
    return CLIPFeaturizer(name, **params)


def _save(images, folder, prefix="img"):
    paths = []
    for i, image in enumerate(images):
        paths.append(str(folder / f"{prefix}{i}.png"))
        Image.fromarray(image).save(paths[-1])
    return paths


@pytest.fixture
def alarm():
    """Turn a hang into a failure: the old pipeline blocked forever on a FIFO."""

    def expired(signum, frame):
        raise TimeoutError("the featurizer hung")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize(
    "bad, message",
    [
        ([], r"X holds no images"),
        (np.empty((0, 8, 8, 3), np.uint8), r"X of shape \(0, 8, 8, 3\) holds no images"),
        ([np.zeros((0, 0, 3), np.uint8)], r"X\[0\] is 0x0 pixels"),
        ([np.zeros((4, 4, 3), np.uint8), np.zeros((5, 0, 3), np.uint8)], r"X\[1\] is 0x5"),
        ([Image.new("RGB", (0, 3))], r"X\[0\] is 0x3 pixels"),
    ],
)
def test_empty_inputs_and_images_are_named(tiny_clip_name, bad, message):
    with pytest.raises(ValueError, match=message):
        _featurizer(tiny_clip_name).transform(bad)


@pytest.mark.parametrize("worker_type", ["threads", "processes"])
def test_every_unreadable_file_is_listed_and_the_rest_is_cached(
    tiny_clip_name, domain_images, tmp_path, encoded_count, alarm, worker_type
):
    images, _, _ = domain_images
    good = _save(images[:4], tmp_path)
    empty_a, empty_b = tmp_path / "empty_a.png", tmp_path / "empty_b.png"
    empty_a.write_bytes(b"")
    empty_b.write_bytes(b"")
    garbage_a, garbage_b = tmp_path / "garbage_a.png", tmp_path / "garbage_b.png"
    garbage_a.write_bytes(b"same garbage bytes")
    garbage_b.write_bytes(b"same garbage bytes")
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.png"
    folder.mkdir()
    bad = [empty_a, garbage_a, fifo, tmp_path / "missing.png", garbage_b, folder, empty_b]
    paths = [good[0], *map(str, bad[:4]), good[1], *map(str, bad[4:]), *good[2:]]
    featurizer = _featurizer(tiny_clip_name, num_workers=2, worker_type=worker_type)
    with pytest.raises(ImageLoadError) as raised:
        featurizer.transform(paths)
    failures = dict(raised.value.failures)
    assert list(failures) == list(map(str, bad))
    assert failures[str(empty_a)] == failures[str(empty_b)] == "empty file (0 bytes)"
    assert "not a readable image" in failures[str(garbage_b)]
    assert failures[str(garbage_a)] == failures[str(garbage_b)]
    assert "not a regular file" in failures[str(fifo)]
    assert "directory" in failures[str(folder)]
    assert "No such file" in failures[str(tmp_path / "missing.png")]
    assert encoded_count["images"] == 4
    featurizer.transform(good)
    assert encoded_count["images"] == 4


def test_16_bit_greyscale_png_is_scaled_not_clipped(tiny_clip_name, tmp_path):
    grey16 = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    grey8 = np.rint(grey16 / 257).astype(np.uint8)
    featurizer = _featurizer(tiny_clip_name)
    from_file = featurizer.transform([str(tmp_path / "grey16.png")])
    from_8_bit = featurizer.transform([np.repeat(grey8[..., None], 3, axis=2)])
    np.testing.assert_allclose(from_file, from_8_bit, atol=1e-6)


def test_cached_transform_stats_files_without_reading_them(
    tiny_clip_name, domain_images, tmp_path, encoded_count, monkeypatch
):
    images, _, _ = domain_images
    paths = _save(images[:6], tmp_path)
    featurizer = _featurizer(tiny_clip_name)
    first = featurizer.transform(paths)
    assert encoded_count["images"] == 6

    def no_reading(path):
        raise AssertionError(f"{path} was read again")

    with monkeypatch.context() as patched:
        patched.setattr("skcicm.featurizer._images._read_regular_file", no_reading)
        np.testing.assert_array_equal(featurizer.transform(paths), first)
    # A changed file (new size and time) is read and encoded again; the others are not.
    Image.fromarray(images[10]).save(paths[2])
    os.utime(paths[2], ns=(1, 10**18))
    changed = featurizer.transform(paths)
    assert encoded_count["images"] == 7
    np.testing.assert_allclose(changed[2], featurizer.transform(images[10:11])[0], atol=1e-6)
    assert encoded_count["images"] == 8  # that array is its own cache entry
    forget_file_keys()
    np.testing.assert_array_equal(featurizer.transform(paths), changed)
    assert encoded_count["images"] == 8


@pytest.mark.parametrize("worker_type", ["threads", "processes"])
def test_file_bytes_are_held_one_window_at_a_time(
    tiny_clip_name, domain_images, tmp_path, monkeypatch, worker_type
):
    images, _, _ = domain_images
    paths = _save(images[:40], tmp_path)
    sizes = [os.path.getsize(p) for p in paths]
    monkeypatch.setattr(image_encoding, "WINDOW_BYTES", 4 * max(sizes))
    held: set[int] = set()
    most = [0]
    read, release = ImageSource.read, ImageSource.release

    def counting_read(self):
        read(self)
        held.add(id(self))
        most[0] = max(most[0], len(held))
        return self

    def counting_release(self):
        held.discard(id(self))
        release(self)

    monkeypatch.setattr(ImageSource, "read", counting_read)
    monkeypatch.setattr(ImageSource, "release", counting_release)
    clear_memory_cache()
    forget_file_keys()
    embeddings = _featurizer(
        tiny_clip_name, num_workers=2, batch_size=4, worker_type=worker_type
    ).transform(paths)
    assert embeddings.shape == (40, 32)
    assert not held
    # This window and the next one, prefetched: 2 windows of at most 4 files (worker
    # processes hold their own copies of the bytes of the batches in flight).
    assert 1 <= most[0] <= 8


def test_decoding_runs_ahead_by_a_bounded_number_of_model_inputs(
    tiny_clip_name, domain_images, monkeypatch
):
    images = list(domain_images[0][:40])
    pending, most, lock = [0], [0], threading.Lock()
    prepare, encode = (
        image_encoding.ImageEncoder._prepare,
        image_encoding.ImageEncoder._encode_batch,
    )

    def counting_prepare(self, task):
        outputs, failure = prepare(self, task)
        with lock:
            pending[0] += len(outputs)
            most[0] = max(most[0], pending[0])
        return outputs, failure

    def counting_encode(self, keys, inputs, run):
        with lock:
            pending[0] -= len(keys)
        return encode(self, keys, inputs, run)

    monkeypatch.setattr(image_encoding.ImageEncoder, "_prepare", counting_prepare)
    monkeypatch.setattr(image_encoding.ImageEncoder, "_encode_batch", counting_encode)
    input_bytes = 3 * 32 * 32 * 4  # the tiny model's float32 input
    # Views decoded ahead: two batches of 4 whatever the budget, 20 when 20 inputs fit in it.
    # Runs of batch_size // num_workers images start while fewer than that are in flight, and
    # the batch being filled holds up to 3 more.
    for workers, budget, ahead in [(2, 1, 8), (0, 20 * input_bytes, 20)]:
        per_task = 4 // max(workers, 1)
        monkeypatch.setattr(decode_threads, "DECODED_BYTES", budget)
        clear_memory_cache()
        pending[0] = most[0] = 0
        featurizer = _featurizer(tiny_clip_name, num_workers=workers, batch_size=4, cache_dir=None)
        featurizer.transform(images)
        assert pending[0] == 0
        assert most[0] <= ahead - 1 + per_task + 3
        if workers == 0:  # decoded in the caller's thread: the look-ahead fills before use
            assert most[0] >= ahead


def test_copies_and_failures_are_matched_across_windows_decoded_ahead(
    tiny_clip_name, domain_images, tmp_path, encoded_count, monkeypatch
):
    images, _, _ = domain_images
    good = _save(images[:6], tmp_path)
    garbage = [tmp_path / f"garbage{i}.png" for i in range(3)]
    for path in garbage:
        path.write_bytes(b"the same garbage in three files")
    # Windows of about two files: each copy lands in another window, decoded while the
    # window of its first copy may still be in flight.
    monkeypatch.setattr(image_encoding, "WINDOW_BYTES", 2 * max(map(os.path.getsize, good)))
    paths = [good[0], str(garbage[0]), good[1], good[0], str(garbage[1]), *good[2:], good[0]]
    paths += [str(garbage[2]), good[1]]
    with pytest.raises(ImageLoadError) as raised:
        _featurizer(tiny_clip_name, num_workers=2, batch_size=2).transform(paths)
    assert [name for name, _ in raised.value.failures] == list(map(str, garbage))
    assert encoded_count["images"] == 6
    embeddings = _featurizer(tiny_clip_name).transform([p for p in paths if "garbage" not in p])
    assert encoded_count["images"] == 6
    np.testing.assert_array_equal(embeddings[[0, 2, 7]], embeddings[[0, 0, 0]])
    np.testing.assert_array_equal(embeddings[[1, 8]], embeddings[[1, 1]])


def test_large_images_are_downscaled_before_interventions_only(tiny_clip_name):
    rng = np.random.default_rng(0)
    large = rng.integers(0, 256, size=(150, 120, 3), dtype=np.uint8)
    sizes = []

    def record(image):
        sizes.append(image.size)
        return image.transpose(0)

    featurizer = _featurizer(tiny_clip_name, interventions=[record])
    with pytest.warns(UncachedInterventionWarning, match="no stable cache key"):
        Z = featurizer.fit_transform([large])
    assert sizes == [(32, 40)]  # the model's own resize: shorter side to 32
    model, _, preprocess = open_clip.create_model_and_transforms(tiny_clip_name)
    with torch.no_grad():
        expected = model.eval().encode_image(preprocess(Image.fromarray(large))[None], True)
    np.testing.assert_allclose(np.asarray(Z), expected.numpy(), atol=1e-5)
    small = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
    with pytest.warns(UncachedInterventionWarning):
        featurizer.intervention_embeddings([small])
    assert sizes[-1] == (24, 20)  # never upscaled before the intervention


def test_interventions_do_not_depend_on_threads_batches_or_order(tiny_clip_name, domain_images):
    images, _, _ = domain_images
    subset = images[:12]
    # Memory only: from the disk cache, the second featurizer would compute nothing.
    params = dict(interventions="paper", n_interventions=7, random_state=1, cache_dir=None)
    serial = _featurizer(tiny_clip_name, num_workers=0, batch_size=64, **params)
    reference = serial.intervention_embeddings(subset)
    assert reference.shape == (12, 7, 32)
    for workers, batch_size in [(3, 5), (2, 1)]:
        clear_memory_cache()
        threaded = _featurizer(tiny_clip_name, num_workers=workers, batch_size=batch_size, **params)
        np.testing.assert_allclose(
            threaded.intervention_embeddings(subset[::-1])[::-1], reference, atol=1e-6
        )
    # Each view is a different augmentation of the same image.
    assert np.abs(np.diff(reference, axis=1)).max() > 1e-3


def test_paper_transforms_draw_like_torchvision_and_work_outside_the_lock():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 20, 3), np.uint8))
    lock = ImageInterventions._global_rng_lock
    held_while_working = []

    class Checked(v2.ColorJitter):
        def transform(self, inpt, params):
            held_while_working.append(lock.locked())
            return super().transform(inpt, params)

    interventions = ImageInterventions([Checked(0.4, 0.4, 0.4, 0.1)], random_state=0)
    interventions.apply(image, key="k", view=0)
    assert held_while_working == [False]
    for transform in paper_interventions():
        one = ImageInterventions([transform], random_state=3)
        seed_rng = np.random.default_rng(
            int.from_bytes(hashlib.sha1(b"3|k|2").digest()[:8], "little")
        )
        seed_rng.integers(1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed_rng.integers(2**63)))
            expected = transform(image)
        assert one.apply(image, key="k", view=2).tobytes() == expected.tobytes()


def test_unknown_device_is_a_one_line_error_at_fit(tiny_clip_name):
    with pytest.raises(ValueError, match=r"device='banana' is not a torch device"):
        CLIPFeaturizer(tiny_clip_name, device="banana").fit([])
    with pytest.raises(ValueError, match=r"device='banana'"):
        CLIPFeaturizer(tiny_clip_name, device="banana").transform([np.zeros((4, 4, 3), np.uint8)])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_views_from_files_match_cpu(tiny_clip_name, domain_images, tmp_path):
    images, _, _ = domain_images
    paths = _save(images[:24], tmp_path)
    params = dict(interventions="paper", n_interventions=3, num_workers=2, batch_size=8)
    cpu = _featurizer(tiny_clip_name, device="cpu", **params).fit_transform(paths)
    clear_memory_cache()
    gpu = _featurizer(tiny_clip_name, device="cuda", precision="auto", **params).fit_transform(
        paths
    )
    assert (np.asarray(cpu) * np.asarray(gpu)).sum(axis=1).min() > 0.99
    cpu_views, gpu_views = cpu.fit_context["interventions"], gpu.fit_context["interventions"]
    assert gpu_views.shape == (24, 3, 32)
    assert (cpu_views * gpu_views).sum(axis=2).min() > 0.99
