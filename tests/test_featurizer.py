"""CLIPFeaturizer on a tiny open_clip model saved on disk: inputs, cache, interventions, errors."""

import json
import pickle

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from skcicm import CLIPFeaturizer
from skcicm.featurizer import (
    ImageLoadError,
    UnknownModelError,
    WeightsUnavailableError,
    load_clip,
    register_model,
    unregister_model,
)
from skcicm.featurizer import _models as models
from skcicm.featurizer.cache import UncachedInterventionWarning, clear_memory_cache
from skcicm.featurizer.cache._store import open_store


def _featurizer(name, **params):
    params.setdefault("progress", False)
    params.setdefault("interventions", None)
    return CLIPFeaturizer(name, **params)


def test_embeddings_match_open_clip_directly(tiny_clip_name, domain_images):
    images, _, _ = domain_images
    embeddings = _featurizer(tiny_clip_name, batch_size=5).transform(images[:7])
    model, _, preprocess = open_clip.create_model_and_transforms(tiny_clip_name)
    model.eval()
    with torch.no_grad():
        batch = torch.stack([preprocess(Image.fromarray(image)) for image in images[:7]])
        expected = model.encode_image(batch, normalize=True).numpy()
    assert embeddings.dtype == np.float32 and embeddings.shape == (7, 32)
    np.testing.assert_allclose(embeddings, expected, atol=1e-5)


def test_raw_embeddings_option(tiny_clip_name, domain_images):
    images, _, _ = domain_images
    raw = _featurizer(tiny_clip_name, normalize=False).transform(images[:4])
    unit = _featurizer(tiny_clip_name).transform(images[:4])
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), unit, atol=1e-6)


def test_paths_pil_arrays_and_series_give_the_same_embeddings(
    tiny_clip_name, domain_images, tmp_path
):
    pd = pytest.importorskip("pandas")
    images, _, _ = domain_images
    paths = []
    for i, image in enumerate(images[:4]):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(image).save(paths[-1])
    featurizer = _featurizer(tiny_clip_name, num_workers=0)
    from_arrays = featurizer.transform(images[:4])
    for other in (
        [str(p) for p in paths],
        paths,
        [Image.fromarray(image) for image in images[:4]],
        pd.Series(list(images[:4])),
    ):
        np.testing.assert_allclose(featurizer.transform(other), from_arrays, atol=1e-6)


def test_architecture_name_with_checkpoint_file(tiny_clip_dir, domain_images, tmp_path):
    images, _, _ = domain_images
    model_cfg = json.loads((tiny_clip_dir / "open_clip_config.json").read_text())["model_cfg"]
    # open_clip names an added architecture after its config file's stem.
    (tmp_path / "skcicm-tiny-test.json").write_text(json.dumps(model_cfg))
    open_clip.add_model_config(tmp_path / "skcicm-tiny-test.json")
    checkpoint = str(tiny_clip_dir / "open_clip_model.safetensors")
    embeddings = _featurizer("skcicm-tiny-test", pretrained=checkpoint).transform(images[:3])
    model, _, preprocess = open_clip.create_model_and_transforms(
        "skcicm-tiny-test", pretrained=checkpoint
    )
    with torch.no_grad():
        batch = torch.stack([preprocess(Image.fromarray(image)) for image in images[:3]])
        expected = model.eval().encode_image(batch, normalize=True).numpy()
    np.testing.assert_allclose(embeddings, expected, atol=1e-5)


def test_interventions_are_seeded_per_image_not_per_batch(tiny_clip_name, domain_images):
    images, _, _ = domain_images
    # Memory only: from the disk cache, the second featurizer would compute nothing.
    params = dict(interventions="paper", n_interventions=3, random_state=4, cache_dir=None)
    featurizer = _featurizer(tiny_clip_name, **params)
    views = featurizer.intervention_embeddings(images[:6])
    assert views.shape == (6, 3, 32)
    clear_memory_cache()
    reordered = _featurizer(tiny_clip_name, batch_size=2, **params).intervention_embeddings(
        images[:6][::-1]
    )
    np.testing.assert_allclose(reordered[::-1], views, atol=1e-6)
    clean = featurizer.transform(images[:6])
    assert np.abs(views - clean[:, None]).max() > 1e-3
    other_seed = _featurizer(
        tiny_clip_name, interventions="paper", n_interventions=3, random_state=5
    ).intervention_embeddings(images[:6])
    assert np.abs(other_seed - views).max() > 1e-4


def test_custom_intervention_callable(tiny_clip_name, domain_images):
    images, _, _ = domain_images
    flip = _featurizer(tiny_clip_name, interventions=[lambda image: image.transpose(0)])
    with pytest.warns(UncachedInterventionWarning, match="no stable cache key"):
        flipped = flip.intervention_embeddings(images[:2])[:, 0]
    direct = _featurizer(tiny_clip_name).transform(images[:2, :, ::-1].copy())
    np.testing.assert_allclose(flipped, direct, atol=1e-5)


def test_fit_transform_carries_interventions_text_pairs_and_classes(tiny_clip_name, domain_images):
    images, _, _ = domain_images
    featurizer = _featurizer(
        tiny_clip_name,
        interventions="paper",
        n_interventions=2,
        class_names={"t": "top", "m": "middle"},
        templates=["a photo of a {}.", "a drawing of a {}."],
        text_interventions=[("a photo of a {}.", "a sketch of a {}."), ("red", "blue")],
    )
    Z = featurizer.fit_transform(images[:5])
    context = Z.fit_context
    assert context["interventions"].shape == (5, 2, 32)  # sample-major
    np.testing.assert_allclose(np.asarray(Z), featurizer.transform(images[:5]))
    np.testing.assert_allclose(
        context["interventions"], featurizer.intervention_embeddings(images[:5])
    )
    np.testing.assert_array_equal(context["class_labels"], ["t", "m"])
    first, second = context["intervention_pairs"]
    assert first.shape == second.shape == (3, 32)
    expected_first = featurizer.encode_text(["a photo of a top.", "a photo of a middle.", "red"])
    np.testing.assert_allclose(first, expected_first)
    # Prompt ensembling by hand: mean of unit template embeddings, renormalised.
    top = featurizer.encode_text(["a photo of a top.", "a drawing of a top."])
    top = top / np.linalg.norm(top, axis=1, keepdims=True)
    ensembled = top.mean(axis=0) / np.linalg.norm(top.mean(axis=0))
    np.testing.assert_allclose(context["class_embeddings"][0], ensembled, atol=1e-6)
    assert featurizer.embedding_dim_ == 32
    assert list(featurizer.get_feature_names_out())[:2] == ["clipfeaturizer0", "clipfeaturizer1"]


def test_each_image_is_encoded_once_across_clones_and_calls(
    tiny_clip_name, domain_images, encoded_count
):
    images, _, _ = domain_images
    featurizer = _featurizer(tiny_clip_name, interventions="paper", n_interventions=2)
    duplicated = np.concatenate([images[:10], images[:3]])
    featurizer.fit_transform(duplicated)
    assert encoded_count["images"] == 10 * 3
    from sklearn.base import clone

    clone(featurizer).fit_transform(images[:10])
    clone(featurizer).transform(images[5:10])
    assert encoded_count["images"] == 10 * 3


def test_disk_cache_resumes_in_a_new_process_state(
    tiny_clip_name, domain_images, tmp_path, encoded_count
):
    images, _, _ = domain_images
    first = _featurizer(tiny_clip_name, cache_dir=tmp_path / "cache").transform(images[:8])
    assert encoded_count["images"] == 8
    clear_memory_cache()
    again = _featurizer(tiny_clip_name, cache_dir=tmp_path / "cache").transform(images[:8])
    assert encoded_count["images"] == 8
    np.testing.assert_array_equal(first, again)
    (database,) = (tmp_path / "cache").rglob("cache.db")
    assert len(open_store(database.parent)) == 8


def test_corrupt_and_missing_files_are_named_and_the_rest_is_kept(
    tiny_clip_name, domain_images, tmp_path, encoded_count
):
    images, _, _ = domain_images
    paths = []
    for i, image in enumerate(images[:5]):
        paths.append(tmp_path / f"good{i}.png")
        Image.fromarray(image).save(paths[-1])
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 definitely not a jpeg")
    missing = tmp_path / "missing.png"
    featurizer = _featurizer(tiny_clip_name, cache_dir=tmp_path / "cache")
    with pytest.raises(ImageLoadError, match="corrupt.jpg") as raised:
        featurizer.transform([*paths[:3], corrupt, missing, *paths[3:]])
    names = [name for name, _ in raised.value.failures]
    assert names == [str(corrupt), str(missing)]
    assert "cannot read file" in str(raised.value)
    assert encoded_count["images"] == 5
    featurizer.transform(paths)
    assert encoded_count["images"] == 5


@pytest.mark.parametrize(
    "bad, message",
    [
        ([np.zeros((8, 8, 3), dtype=np.float32)], r"X\[0\] has dtype float32"),
        ([np.zeros((8, 8, 2), dtype=np.uint8)], r"X\[0\] has shape \(8, 8, 2\)"),
        ([42], r"X\[0\] is a int"),
        (np.zeros((8, 8, 3), dtype=np.uint8), r"must have shape \(n_images"),
        ("image.png", r"not a single str"),
    ],
)
def test_bad_image_inputs(tiny_clip_name, bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        _featurizer(tiny_clip_name).transform(bad)


def test_registered_names_resolve_to_their_folder(tiny_clip_dir, domain_images, tmp_path):
    images, _, _ = domain_images
    register_model("skcicm-test-registered", tiny_clip_dir)
    try:
        by_name = _featurizer("skcicm-test-registered", pretrained=None).transform(images[:2])
    finally:
        unregister_model("skcicm-test-registered")
    by_dir = _featurizer(f"local-dir:{tiny_clip_dir}").transform(images[:2])
    np.testing.assert_array_equal(by_name, by_dir)
    with pytest.raises(WeightsUnavailableError, match="Cannot register 'empty'"):
        register_model("empty", tmp_path)
    with pytest.raises(UnknownModelError):
        CLIPFeaturizer("skcicm-test-registered").fit([])


def test_unknown_model_name_suggests_close_matches():
    with pytest.raises(UnknownModelError, match="Did you mean ViT-B-16"):
        CLIPFeaturizer("ViT-B-61").fit([])


def test_weights_unavailable_offline_explains_how_to_supply_them():
    with pytest.raises(WeightsUnavailableError, match="local-dir:/path/to/folder"):
        load_clip("ViT-B-16", "openai", "cpu")
    with pytest.raises(WeightsUnavailableError, match="neither a tag"):
        load_clip("ViT-B-16", "/no/such/checkpoint.pt", "cpu")
    with pytest.raises(WeightsUnavailableError, match="has no open_clip_config.json"):
        load_clip("local-dir:/no/such/folder", None, "cpu")
    with pytest.raises(ValueError, match="needs pretrained"):
        load_clip("ViT-B-16", None, "cpu")


def test_pickled_featurizer_holds_no_weights_and_reloads(tiny_clip_name, domain_images):
    images, _, _ = domain_images
    featurizer = _featurizer(tiny_clip_name, cache_dir=None).fit(None)
    before = featurizer.transform(images[:3])
    payload = pickle.dumps(featurizer)
    assert len(payload) < 2_000  # the tiny model alone is ~6 MB of weights
    # As in a new process: no loaded model, no embeddings in memory, none on disk.
    models._load_resolved.cache_clear()
    clear_memory_cache()
    after = pickle.loads(payload).transform(images[:3])
    assert models._load_resolved.cache_info().misses == 1  # the weights were read again
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)


def test_bad_parameters_are_rejected(tiny_clip_name):
    with pytest.raises(ValueError, match="'n_interventions' parameter"):
        CLIPFeaturizer(tiny_clip_name, n_interventions=0).fit([])
    with pytest.raises(ValueError, match="'precision' parameter"):
        CLIPFeaturizer(tiny_clip_name, precision="fp8").transform([])
    with pytest.raises(ValueError, match="no class_names were given"):
        CLIPFeaturizer(
            tiny_clip_name, text_interventions=[("a {}", "b {}")]
        ).text_intervention_pairs()


def test_cuda_requested_without_cuda_is_a_clear_error(tiny_clip_name):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        CLIPFeaturizer(tiny_clip_name, device="cuda").transform([np.zeros((8, 8, 3), np.uint8)])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_mixed_precision_matches_cpu(tiny_clip_name, domain_images):
    images, _, _ = domain_images
    cpu = _featurizer(tiny_clip_name, device="cpu").transform(images[:16])
    gpu = _featurizer(tiny_clip_name, device="cuda", precision="auto").transform(images[:16])
    cosine = (cpu * gpu).sum(axis=1)
    assert cosine.min() > 0.99


def test_transforms_with_their_own_get_params_are_cloned_as_values():
    from sklearn.base import clone
    from torchvision import transforms as v1
    from torchvision.transforms import v2

    jitters = [v1.ColorJitter(brightness=0.4), v2.ColorJitter(hue=0.2), v2.RandomGrayscale()]
    featurizer = CLIPFeaturizer("toyclip", interventions=jitters, n_interventions=2)
    copied = clone(featurizer)
    assert copied.get_params()["n_interventions"] == 2
    assert [type(t) for t in copied.interventions] == [type(t) for t in jitters]
    assert copied.interventions[0] is not jitters[0]
    assert copied.interventions[0].brightness == jitters[0].brightness
    assert copied.interventions[1].hue == jitters[1].hue
