"""decode_device="cuda": nvJPEG decoding with the model's preprocessing on tensors. The logic runs
here on the CPU decoder (torchvision's decode_jpeg on device="cpu"); the GPU tests skip cleanly
without CUDA."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from skcicm import CLIPFeaturizer
from skcicm.featurizer import ImageInterventions, load_clip, paper_interventions
from skcicm.featurizer._decode_workers import prepare_views
from skcicm.featurizer._gpu_decoding import JPEGDecoder, tensor_preprocessing
from skcicm.featurizer._images import ImageLoadError, image_source
from skcicm.featurizer.cache import clear_memory_cache


def _jpeg(image, path):
    Image.fromarray(np.kron(image, np.ones((2, 2, 1), np.uint8))).save(path, quality=90)
    return str(path)


def _task(path, views):
    source = image_source(path, 0)
    if source.key is None:  # not hashed before in this process
        source.read()
    return source, [(f"{source.key}-{view}", view) for view in views]


@pytest.fixture
def preprocess(tiny_clip_name):
    return load_clip(tiny_clip_name, None, "cpu").preprocess


def test_jpeg_pixels_and_preprocessing_match_pil(preprocess, domain_images, tmp_path):
    images, _, _ = domain_images
    path = _jpeg(images[0], tmp_path / "a.jpg")
    decoder = JPEGDecoder(preprocess, torch.device("cpu"))
    pixels = decoder.decode(_task(path, [None])[0])
    with Image.open(path) as image:
        expected = image.convert("RGB")
    np.testing.assert_array_equal(pixels.permute(1, 2, 0).numpy(), np.asarray(expected))
    # Tensor and PIL resizing round differently, by about one grey level of 255.
    tensor = decoder.preprocess(pixels)
    np.testing.assert_allclose(tensor, preprocess(expected), atol=0.02)
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.float32


def test_other_formats_and_undecodable_jpegs_go_to_pil(preprocess, domain_images, tmp_path):
    images, _, _ = domain_images
    decoder = JPEGDecoder(preprocess, torch.device("cpu"))
    png = tmp_path / "a.png"
    Image.fromarray(images[0]).save(png)
    assert decoder.decode(_task(str(png), [None])[0]) is None
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 then nothing a decoder can use")
    outputs, failure = prepare_views(_task(str(broken), [None]), preprocess, None, None, decoder)
    assert outputs == [] and "not a readable image" in failure
    clean, failure = prepare_views(_task(str(png), [None]), preprocess, None, None, decoder)
    assert failure is None
    np.testing.assert_array_equal(clean[0][1], preprocess(Image.open(png)))


def test_intervened_copies_come_from_the_decoded_pixels(preprocess, domain_images, tmp_path):
    images, _, _ = domain_images
    path = _jpeg(images[3], tmp_path / "a.jpg")
    interventions = ImageInterventions(paper_interventions(), random_state=0)
    decoder = JPEGDecoder(preprocess, torch.device("cpu"))
    task = _task(path, [None, 0, 1])
    on_decoder, failure = prepare_views(task, preprocess, interventions, None, decoder)
    assert failure is None
    # The CPU decoder's pixels equal PIL's, so the intervened copies are PIL's bit for bit.
    on_pil, _ = prepare_views(_task(path, [None, 0, 1]), preprocess, interventions, None)
    for (key, tensor), (pil_key, pil_tensor) in zip(on_decoder[1:], on_pil[1:], strict=True):
        assert key == pil_key
        np.testing.assert_array_equal(tensor, pil_tensor)
    np.testing.assert_allclose(on_decoder[0][1], on_pil[0][1], atol=0.02)


def test_a_preprocessing_step_without_tensor_equivalent_is_named():
    odd = v2.Compose([v2.Resize(32), v2.Lambda(lambda image: image)])
    with pytest.raises(ValueError, match=r"its step Lambda.* use decode_device='cpu'"):
        tensor_preprocessing(odd)


def test_cuda_decoding_that_cannot_run_fails_before_any_work(tiny_clip_name):
    with pytest.raises(ValueError, match="'decode_device' parameter"):
        CLIPFeaturizer(tiny_clip_name, decode_device="gpu").fit([])
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="runs the model on the CPU"):
            CLIPFeaturizer("no-such-model", device="cpu", decode_device="cuda").fit([])
        with pytest.raises(ValueError, match="use worker_type='threads'"):
            CLIPFeaturizer(
                "no-such-model", device="cuda", decode_device="cuda", worker_type="processes"
            ).fit([])
    else:
        # The model name is not even looked up: the error comes first.
        with pytest.raises(ValueError, match="decode_device='cuda' but CUDA is not available"):
            CLIPFeaturizer("no-such-model", decode_device="cuda").fit([])
        with pytest.raises(ValueError, match="decode_device='cuda' but CUDA is not available"):
            CLIPFeaturizer(tiny_clip_name, decode_device="cuda").transform(
                [np.zeros((4, 4, 3), np.uint8)]
            )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_jpeg_decoding_matches_cpu_and_is_cached_apart(
    tiny_clip_name, domain_images, tmp_path, encoded_count
):
    images, _, _ = domain_images
    paths = [_jpeg(image, tmp_path / f"{i}.jpg") for i, image in enumerate(images[:12])]
    png = tmp_path / "other.png"
    Image.fromarray(images[12]).save(png)
    paths.append(str(png))
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    params = dict(device="cuda", precision="fp32", progress=False, n_interventions=3, batch_size=8)
    cpu = CLIPFeaturizer(tiny_clip_name, **params).fit_transform(paths)
    assert encoded_count["images"] == 13 * 4
    gpu_decoding = CLIPFeaturizer(tiny_clip_name, decode_device="cuda", **params)
    gpu = gpu_decoding.fit_transform(paths)
    assert encoded_count["images"] == 2 * 13 * 4  # cached apart from the PIL-decoded ones
    assert (np.asarray(cpu) * np.asarray(gpu)).sum(axis=1).min() > 0.99
    views = (cpu.fit_context["interventions"] * gpu.fit_context["interventions"]).sum(axis=2)
    assert views.min() > 0.99
    clear_memory_cache()
    with pytest.raises(ImageLoadError, match="corrupt.jpg"):
        gpu_decoding.transform([*paths, str(corrupt)])


def test_rotated_and_elongated_jpegs_are_handled_like_pil(preprocess, domain_images, tmp_path):
    decoder = JPEGDecoder(preprocess, torch.device("cpu"))
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees: nvJPEG cannot apply it
    rotated = tmp_path / "rotated.jpg"
    Image.fromarray(domain_images[0][0]).save(rotated, quality=90, exif=exif)
    assert decoder.decode(_task(str(rotated), [None])[0]) is None
    views, failure = prepare_views(_task(str(rotated), [None]), preprocess, None, None, decoder)
    with Image.open(rotated) as image:
        upright = image.convert("RGB").transpose(Image.Transpose.ROTATE_270)
    assert failure is None
    np.testing.assert_array_equal(views[0][1], preprocess(upright))
    thin = tmp_path / "thin.jpg"
    Image.new("RGB", (3000, 8)).save(thin)
    outputs, failure = prepare_views(_task(str(thin), [None]), preprocess, None, None, decoder)
    assert outputs == [] and "aspect ratio of 375:1" in failure
