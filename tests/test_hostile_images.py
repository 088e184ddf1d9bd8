"""Hostile and unusual images: aspect-ratio bombs, EXIF orientation, many intervened copies,
arrays of paths, and interventions that raise."""

import io
import os
import pathlib
import threading

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from skcicm import CLIPFeaturizer
from skcicm.featurizer import _decode_threads as decode_threads
from skcicm.featurizer import _image_encoding as image_encoding
from skcicm.featurizer._decode_workers import prepare_views
from skcicm.featurizer._images import ImageLoadError, ImageSource, as_image_list
from skcicm.featurizer.cache._memory import clear_memory_cache


def _featurizer(name, **params):
    params.setdefault("progress", False)
    params.setdefault("interventions", None)
    return CLIPFeaturizer(name, **params)


class Counting:
    """An intervention with a cache key that counts the copies it makes."""

    cache_key = "counting-v1"

    def __init__(self):
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, image):
        with self.lock:
            self.calls += 1
        return image.rotate(90)


@pytest.mark.parametrize("worker_type", ["threads", "processes"])
@pytest.mark.parametrize("size", [(20000, 1), (1, 3000)])
def test_elongated_images_are_refused_by_name_before_any_resize(
    tiny_clip_name, domain_images, tmp_path, encoded_count, worker_type, size
):
    bomb = tmp_path / "bomb.png"
    Image.new("RGB", size).save(bomb)
    good = tmp_path / "good.png"
    Image.fromarray(domain_images[0][0]).save(good)
    elongated = np.zeros((size[1], size[0], 3), np.uint8)
    featurizer = _featurizer(tiny_clip_name, num_workers=1, worker_type=worker_type)
    with pytest.raises(ImageLoadError) as raised:
        featurizer.transform([str(bomb), str(good), elongated])
    failures = dict(raised.value.failures)
    assert list(failures) == [str(bomb), "X[2] (array)"]
    assert all("aspect ratio" in reason and "50:1" in reason for reason in failures.values())
    assert encoded_count["images"] == 1  # the readable image is encoded and cached


def test_too_many_pixels_are_refused_from_the_header(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("L", (400, 300)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)
    source = ImageSource(str(path), path=str(path)).read()
    with pytest.raises(ValueError, match=r"400x300 pixels: more than PIL.Image.MAX_IMAGE_PIXELS"):
        source.decode()
    # An image in memory is decoded already: only its aspect ratio matters.
    in_memory = ImageSource("X[0] (array)", "k", image=np.zeros((300, 400), np.uint8))
    assert in_memory.decode().size == (400, 300)


def test_every_failure_has_a_reason_even_an_empty_memory_error():
    def out_of_memory(image):
        raise MemoryError

    source = ImageSource("X[0] (array)", "k", image=np.zeros((4, 4, 3), np.uint8))
    outputs, failure = prepare_views((source, [("k", None)]), out_of_memory, None, None)
    assert outputs == [] and failure == "MemoryError"


def _jpeg_with_orientation(pixels, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95, exif=exif)
    return buffer.getvalue()


def test_jpeg_exif_orientation_is_applied_as_a_viewer_does(tiny_clip_name, tmp_path):
    rng = np.random.default_rng(0)
    pixels = np.repeat(np.repeat(rng.integers(0, 256, (8, 12, 3), dtype=np.uint8), 4, 0), 4, 1)
    rotated = tmp_path / "rotated.jpg"
    rotated.write_bytes(_jpeg_with_orientation(pixels, 6))  # 6: display rotated 90 degrees CW
    plain = tmp_path / "plain.jpg"
    plain.write_bytes(_jpeg_with_orientation(pixels, 1))
    with Image.open(plain) as image:
        displayed = np.asarray(image.convert("RGB").transpose(Image.Transpose.ROTATE_270))
    assert np.asarray(ImageSource("r", path=str(rotated)).read().decode()).shape == (48, 32, 3)
    np.testing.assert_array_equal(
        np.asarray(ImageSource("r", path=str(rotated)).read().decode()), displayed
    )
    featurizer = _featurizer(tiny_clip_name, cache_dir=None)
    Z = featurizer.transform([str(rotated), displayed, str(plain)])
    np.testing.assert_allclose(Z[0], Z[1], atol=1e-6)
    assert not np.allclose(Z[0], Z[2], atol=1e-3)


@pytest.mark.parametrize("worker_type", ["threads", "processes"])
def test_many_intervened_copies_stream_through_the_model(
    tiny_clip_name, domain_images, monkeypatch, worker_type
):
    counting = Counting()
    made_before_first_encode = []
    encode = image_encoding.ImageEncoder._encode_batch

    def recording_encode(self, keys, inputs, run):
        if not made_before_first_encode:
            made_before_first_encode.append(counting.calls)
        return encode(self, keys, inputs, run)

    monkeypatch.setattr(image_encoding.ImageEncoder, "_encode_batch", recording_encode)
    monkeypatch.setattr(decode_threads, "DECODED_BYTES", 1)
    clear_memory_cache()
    image = domain_images[0][0]
    featurizer = _featurizer(
        tiny_clip_name,
        interventions=[counting],
        n_interventions=120,
        batch_size=4,
        num_workers=1,
        worker_type=worker_type,
        cache_dir=None,
    )
    copies = featurizer.intervention_embeddings([image])
    assert copies.shape == (1, 120, 32)
    if worker_type == "threads":  # worker processes count in their own copy of `counting`
        assert counting.calls == 120
        # Two batches decoded ahead, one being filled, one task decoding: not all 120 at once.
        assert made_before_first_encode[0] <= 4 * 4
    model, _, preprocess = open_clip.create_model_and_transforms(tiny_clip_name)
    with torch.no_grad():
        expected = model.eval().encode_image(preprocess(Image.fromarray(image).rotate(90))[None])
    np.testing.assert_allclose(copies[:, 0], (expected / expected.norm()).numpy(), atol=1e-5)
    np.testing.assert_allclose(copies[0], np.repeat(copies[0, :1], 120, 0), atol=1e-6)


def test_a_failing_image_among_streamed_copies_keeps_the_others(
    tiny_clip_name, domain_images, tmp_path, encoded_count
):
    good = tmp_path / "good.png"
    Image.fromarray(domain_images[0][0]).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    featurizer = _featurizer(
        tiny_clip_name, interventions=[Counting()], n_interventions=9, batch_size=2
    )
    with pytest.raises(ImageLoadError) as raised:
        featurizer.fit_transform([str(bad), str(good), str(bad)])
    assert [name for name, _ in raised.value.failures] == [str(bad), str(bad)]
    assert encoded_count["images"] == 10


@pytest.mark.parametrize(
    "wrap",
    [np.asarray, lambda paths: np.asarray([pathlib.Path(p) for p in paths], dtype=object)],
    ids=["str_array", "pathlike_object_array"],
)
def test_arrays_of_paths_are_paths(tiny_clip_name, domain_images, tmp_path, wrap):
    paths = []
    for i, pixels in enumerate(domain_images[0][:2]):
        paths.append(str(tmp_path / f"long_name_for_a_path_{i}.png"))
        Image.fromarray(pixels).save(paths[-1])
    assert np.asarray(paths).dtype.kind == "U"
    assert [os.fspath(item) for item in as_image_list(wrap(paths))] == paths
    featurizer = _featurizer(tiny_clip_name)
    np.testing.assert_array_equal(featurizer.transform(wrap(paths)), featurizer.transform(paths))
    with pytest.raises(ValueError, match="array of image paths X must be 1-D"):
        as_image_list(np.asarray([paths]))


class Broken:
    cache_key = "broken-v1"

    def __call__(self, image):
        raise KeyError("a bug in the transform")

    def __repr__(self):
        return "Broken()"


@pytest.mark.parametrize("worker_type", ["threads", "processes"])
def test_an_intervention_error_names_the_intervention_and_is_raised(
    tiny_clip_name, domain_images, worker_type
):
    from skcicm.featurizer._interventions import InterventionError

    featurizer = _featurizer(
        tiny_clip_name, interventions=[Broken()], num_workers=1, worker_type=worker_type
    )
    with pytest.raises(InterventionError, match=r"Intervention Broken\(\) raised KeyError") as err:
        featurizer.fit_transform(list(domain_images[0][:2]))
    assert "could not be read" not in str(err.value)
    if worker_type == "threads":
        assert isinstance(err.value.__cause__, KeyError)
