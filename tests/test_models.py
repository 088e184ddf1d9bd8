"""Model loading: seeded random weights, weight digests hashed once, clear errors for bad files."""

import hashlib
import json
import os
import pickle
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import open_clip
import pytest
import torch

from conftest import TINY_MODEL_CFG, TINY_PREPROCESS_CFG
from skcicm import CLIPFeaturizer
from skcicm.featurizer import (
    WeightsFileError,
    WeightsUnavailableError,
    load_clip,
    model_fingerprint,
    save_local_dir,
)
from skcicm.featurizer import _models as models
from skcicm.featurizer import _weight_digests as weight_digests
from skcicm.featurizer.cache import clear_memory_cache

TINY_ARCHITECTURE = "skcicm-tiny-models-test"


@pytest.fixture(scope="module")
def tiny_architecture(tmp_path_factory):
    """The tiny CLIP registered with open_clip as an architecture name."""
    config = tmp_path_factory.mktemp("arch") / f"{TINY_ARCHITECTURE}.json"
    config.write_text(json.dumps(TINY_MODEL_CFG))
    open_clip.add_model_config(config)
    return TINY_ARCHITECTURE


@pytest.fixture(autouse=True)
def fresh_digest_store(tmp_path, monkeypatch):
    """Each test starts as a new process would: no loaded models, no remembered digests."""
    monkeypatch.setenv(weight_digests.CACHE_DIR_ENV, str(tmp_path / "user-cache"))
    monkeypatch.setattr(weight_digests, "_memo", {})
    models._load_resolved.cache_clear()
    yield
    models._load_resolved.cache_clear()


@pytest.fixture
def hash_calls(monkeypatch):
    calls = []
    original = weight_digests._hash_file

    def counting(path):
        calls.append(path)
        return original(path)

    monkeypatch.setattr(weight_digests, "_hash_file", counting)
    return calls


def _as_new_process(monkeypatch):
    monkeypatch.setattr(weight_digests, "_memo", {})
    models._load_resolved.cache_clear()
    clear_memory_cache()


def _copy_of(tiny_clip_dir, tmp_path, name="model"):
    return shutil.copytree(tiny_clip_dir, tmp_path / name)


def _state(model):
    return {key: value.clone() for key, value in model.state_dict().items()}


# Random weights ----------------------------------------------------------------------------


def test_random_weights_are_seeded_and_leave_the_global_rng_alone(tiny_architecture):
    torch.manual_seed(123)
    first = load_clip(tiny_architecture, "random", "cpu")
    after_load = torch.rand(3)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.testing.assert_close(after_load, expected)
    first_state = _state(first.model)
    models._load_resolved.cache_clear()
    torch.manual_seed(999)
    second = load_clip(tiny_architecture, "random", "cpu")
    assert second.model is not first.model
    for key, value in first_state.items():
        torch.testing.assert_close(second.model.state_dict()[key], value, rtol=0, atol=0)
    assert first.fingerprint == second.fingerprint
    assert first.fingerprint == model_fingerprint(tiny_architecture, "random")


def test_featurizer_accepts_random_weights_for_an_architecture(tiny_architecture, domain_images):
    images, _, _ = domain_images
    featurizer = CLIPFeaturizer(
        tiny_architecture, pretrained="random", interventions=None, progress=False
    )
    embeddings = featurizer.transform(images[:4])
    assert embeddings.shape == (4, TINY_MODEL_CFG["embed_dim"])
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_random_weights_have_their_own_fingerprint(tiny_architecture, tiny_clip_dir):
    checkpoint = str(tiny_clip_dir / "open_clip_model.safetensors")
    from_file = model_fingerprint(tiny_architecture, checkpoint)
    assert model_fingerprint(tiny_architecture, "random") != from_file
    assert model_fingerprint("ViT-B-32", "random") != model_fingerprint("ViT-B-16", "random")


def test_random_weights_for_a_real_architecture_name():
    featurizer = CLIPFeaturizer("ViT-B-32", pretrained="random", interventions=None, progress=False)
    embeddings = featurizer.transform([np.zeros((224, 224, 3), np.uint8)])
    assert embeddings.shape == (1, 512)


def test_none_still_needs_an_explicit_choice():
    with pytest.raises(ValueError, match="'random' gives seeded random weights"):
        load_clip("ViT-B-32", None, "cpu")


@pytest.mark.parametrize("name", ["toyclip", "local-dir:/some/folder", "hf-hub:org/repo"])
def test_random_weights_are_refused_for_names_that_fix_their_weights(name):
    with pytest.raises(ValueError, match="architecture names only"):
        load_clip(name, "random", "cpu")


# Weight digests ----------------------------------------------------------------------------


def test_unchanged_weights_are_hashed_once_across_processes(
    tiny_clip_dir, tmp_path, hash_calls, monkeypatch
):
    name = f"local-dir:{_copy_of(tiny_clip_dir, tmp_path)}"
    first = load_clip(name, None, "cpu").fingerprint
    assert len(hash_calls) == 2  # the checkpoint and the config
    assert load_clip(name, None, "cpu").fingerprint == first
    assert model_fingerprint(name, None) == first
    _as_new_process(monkeypatch)
    assert load_clip(name, None, "cpu").fingerprint == first
    assert len(hash_calls) == 2


def test_changed_weights_give_a_new_fingerprint_and_model(
    tiny_clip_dir, tmp_path, hash_calls, domain_images
):
    images, _, _ = domain_images
    folder = _copy_of(tiny_clip_dir, tmp_path)
    name = f"local-dir:{folder}"
    before = load_clip(name, None, "cpu")
    embeddings_before = CLIPFeaturizer(name, interventions=None, progress=False).transform(
        images[:3]
    )
    torch.manual_seed(1)
    save_local_dir(open_clip.CLIP(**TINY_MODEL_CFG), folder, TINY_MODEL_CFG, TINY_PREPROCESS_CFG)
    after = load_clip(name, None, "cpu")
    assert after.fingerprint != before.fingerprint
    assert after.model is not before.model
    embeddings_after = CLIPFeaturizer(name, interventions=None, progress=False).transform(
        images[:3]
    )
    assert np.abs(embeddings_after - embeddings_before).max() > 1e-2


def test_same_size_and_mtime_rewrite_is_still_noticed(tmp_path, hash_calls, monkeypatch):
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"a" * 64)
    first = weight_digests.file_digest(weights)
    status = os.stat(weights)
    with open(weights, "r+b") as handle:
        handle.write(b"b")
    os.utime(weights, ns=(status.st_atime_ns, status.st_mtime_ns))
    _as_new_process(monkeypatch)
    assert weight_digests.file_digest(weights) != first
    assert len(hash_calls) == 2


def test_moved_weights_keep_their_fingerprint(tiny_clip_dir, tmp_path):
    here = model_fingerprint(f"local-dir:{_copy_of(tiny_clip_dir, tmp_path, 'a')}", None)
    there = model_fingerprint(f"local-dir:{_copy_of(tiny_clip_dir, tmp_path, 'b')}", None)
    assert here == there


def test_damaged_or_unwritable_digest_store_only_costs_hashing(tmp_path, hash_calls, monkeypatch):
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"weights")
    expected = weight_digests.file_digest(weights)
    for record in weight_digests.cache_folder().glob("*.json"):
        record.write_text('{"path": 1, "stamp"')
    _as_new_process(monkeypatch)
    assert weight_digests.file_digest(weights) == expected
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv(weight_digests.CACHE_DIR_ENV, str(blocker))
    _as_new_process(monkeypatch)
    assert weight_digests.file_digest(weights) == expected
    assert len(hash_calls) == 3


class _Forgetful(dict):
    """A memo that remembers nothing, so that every call goes to the shared records."""

    def __setitem__(self, key, value):
        pass


def test_concurrent_writers_agree_and_leave_a_whole_record(tmp_path, monkeypatch, hash_calls):
    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(1 << 20))
    monkeypatch.setattr(weight_digests, "_memo", _Forgetful())
    with ThreadPoolExecutor(8) as pool:
        digests = list(pool.map(weight_digests.file_digest, [weights] * 32))
    assert set(digests) == {hashlib.sha256(weights.read_bytes()).hexdigest()}
    records = list(weight_digests.cache_folder().glob("*"))
    assert len(records) == 1 and records[0].suffix == ".json"
    assert json.loads(records[0].read_text())["sha256"] == digests[0]
    # Each thread hashes at most once: its first call leaves a record for its later ones.
    assert 1 <= len(hash_calls) <= 8


# Clear errors for bad weight files -----------------------------------------------------------


def _one_line_error(excinfo):
    assert isinstance(excinfo.value, OSError | ValueError)
    assert "\n" not in str(excinfo.value)
    return str(excinfo.value)


def test_truncated_safetensors_in_local_dir_is_named(tiny_clip_dir, tmp_path):
    folder = _copy_of(tiny_clip_dir, tmp_path)
    checkpoint = folder / "open_clip_model.safetensors"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(WeightsFileError) as excinfo:
        load_clip(f"local-dir:{folder}", None, "cpu")
    message = _one_line_error(excinfo)
    assert str(checkpoint) in message and "damaged" in message


def test_code_carrying_pickle_is_refused_with_a_clear_error(tiny_architecture, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    checkpoint = tmp_path / "evil.pt"
    torch.save({"visual.conv1.weight": Payload()}, checkpoint)
    with pytest.raises(WeightsFileError) as excinfo:
        load_clip(tiny_architecture, str(checkpoint), "cpu")
    message = _one_line_error(excinfo)
    assert str(checkpoint) in message and "not a plain weights file" in message
    assert not marker.exists()
    checkpoint.write_bytes(pickle.dumps(Payload(), protocol=2))
    with pytest.raises(WeightsFileError, match="not a plain weights file"):
        load_clip(tiny_architecture, str(checkpoint), "cpu")
    assert not marker.exists()


def test_checkpoint_of_another_architecture_is_named(tiny_architecture, tmp_path):
    other = dict(TINY_MODEL_CFG, embed_dim=16)
    checkpoint = tmp_path / "other.pt"
    torch.save(open_clip.CLIP(**other).state_dict(), checkpoint)
    with pytest.raises(WeightsFileError) as excinfo:
        load_clip(tiny_architecture, str(checkpoint), "cpu")
    assert str(checkpoint) in _one_line_error(excinfo)


def test_local_dir_without_checkpoint_is_refused(tiny_clip_dir, tmp_path):
    folder = _copy_of(tiny_clip_dir, tmp_path)
    (folder / "open_clip_model.safetensors").unlink()
    with pytest.raises(WeightsUnavailableError, match="holds no checkpoint"):
        load_clip(f"local-dir:{folder}", None, "cpu")


def test_command_line_reports_bad_weight_files_in_one_line(
    tiny_clip_dir, tiny_architecture, tmp_path, capsys
):
    from skcicm.cli import main

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(print, protocol=2))
    truncated = _copy_of(tiny_clip_dir, tmp_path)
    checkpoint = truncated / "open_clip_model.safetensors"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    common = ["--n-per-cell", "1", "--domains", "photo,sketch,painting", "--progress", "off"]
    common += ["--protocol", "domain-shift"]
    for model, named in (
        (["--model", tiny_architecture, "--pretrained", str(evil)], evil),
        (["--model", f"local-dir:{truncated}"], checkpoint),
    ):
        code = main(["evaluate", *model, *common, "--output-dir", str(tmp_path / "out")])
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 1
        assert lines[-1].startswith("skcicm: error: ") and str(named) in lines[-1], lines
        assert not any("Traceback" in line for line in lines)


# Where open_clip keeps a pretrained tag's weights ----------------------------------------------


def _serve_tag_by_url(architecture, monkeypatch):
    """Give ``architecture`` a tag "tiny" whose weights open_clip downloads from a URL."""
    url = f"https://weights.invalid/{models.WEIGHTS_FILE}"
    monkeypatch.setitem(
        open_clip.pretrained._PRETRAINED,
        architecture,
        {"tiny": open_clip.pretrained._pcfg(url=url)},
    )
    monkeypatch.setattr(open_clip.pretrained, "has_hf_hub", lambda *_: False)


def test_weights_dir_is_where_open_clip_finds_a_tag_s_weights(
    tiny_architecture, tiny_clip_dir, tmp_path, monkeypatch, domain_images
):
    # A tag served by URL: open_clip looks in its cache_dir for the file before downloading.
    _serve_tag_by_url(tiny_architecture, monkeypatch)
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    shutil.copy(tiny_clip_dir / models.WEIGHTS_FILE, weights_dir / models.WEIGHTS_FILE)
    expected = load_clip(f"local-dir:{tiny_clip_dir}", None, "cpu").model.state_dict()

    loaded = load_clip(tiny_architecture, "tiny", "cpu", weights_dir=weights_dir)
    for key, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value, expected[key])
    images, _, _ = domain_images
    featurizer = CLIPFeaturizer(
        tiny_architecture, "tiny", weights_dir=str(weights_dir), cache_dir=None, progress=False
    )
    assert featurizer.fit(None).transform(images[:2]).shape == (2, TINY_MODEL_CFG["embed_dim"])
    # Elsewhere the file is not found, and nothing can be downloaded here.
    with pytest.raises(WeightsUnavailableError, match="weights_dir"):
        load_clip(tiny_architecture, "tiny", "cpu", weights_dir=tmp_path / "empty")


# Downloaded weights are named by content -----------------------------------------------------


def _publish_hub_revision(cache, repository, revision, folder):
    """Lay out ``folder``'s files as the Hugging Face cache holds a downloaded revision."""
    root = cache / f"models--{repository.replace('/', '--')}"
    snapshot = root / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name in (models.CONFIG_FILE, models.WEIGHTS_FILE):
        shutil.copy(folder / name, snapshot / name)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(revision)


def test_hf_hub_model_loads_offline_and_new_revisions_get_a_new_fingerprint(
    tiny_clip_dir, tmp_path
):
    cache, name = tmp_path / "hub", "hf-hub:someone/tiny-clip"
    _publish_hub_revision(cache, "someone/tiny-clip", "a" * 40, tiny_clip_dir)
    first = load_clip(name, None, "cpu", weights_dir=cache)
    reference = load_clip(f"local-dir:{tiny_clip_dir}", None, "cpu").model.state_dict()
    for key, value in first.model.state_dict().items():
        torch.testing.assert_close(value, reference[key])
    assert model_fingerprint(name, None, cache) == first.fingerprint

    # The repository publishes retrained weights: a new snapshot that refs/main points to.
    torch.manual_seed(1)
    retrained = save_local_dir(
        open_clip.CLIP(**TINY_MODEL_CFG),
        tmp_path / "retrained",
        TINY_MODEL_CFG,
        TINY_PREPROCESS_CFG,
    )
    _publish_hub_revision(cache, "someone/tiny-clip", "b" * 40, retrained)
    second = load_clip(name, None, "cpu", weights_dir=cache)
    assert second.fingerprint != first.fingerprint
    assert model_fingerprint(name, None, cache) == second.fingerprint
    assert models.configured_embedding_dim(name, None, cache) == TINY_MODEL_CFG["embed_dim"]
    assert models.configured_embedding_dim("hf-hub:someone/never-downloaded", None, cache) is None


@pytest.mark.parametrize("model", ["toyclip", "tiny-local-dir", "tiny-architecture"])
def test_configured_embedding_dim_is_the_loaded_model_s(
    model, tiny_clip_dir, tiny_architecture, monkeypatch
):
    name, pretrained = {
        "toyclip": ("toyclip", None),
        "tiny-local-dir": (f"local-dir:{tiny_clip_dir}", None),
        "tiny-architecture": (tiny_architecture, "random"),
    }[model]
    loads = []
    with monkeypatch.context() as patched:
        patched.setattr(models, "_load_resolved", lambda *args: loads.append(args))
        dim = models.configured_embedding_dim(name, pretrained)
    assert loads == []
    featurizer = CLIPFeaturizer(name, pretrained, cache_dir=None, progress=False).fit(None)
    assert dim == featurizer.embedding_dim_


def test_a_tag_s_downloaded_file_is_named_by_content(
    tiny_architecture, tiny_clip_dir, tmp_path, monkeypatch
):
    _serve_tag_by_url(tiny_architecture, monkeypatch)
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    before_download = model_fingerprint(tiny_architecture, "tiny", weights_dir)
    shutil.copy(tiny_clip_dir / models.WEIGHTS_FILE, weights_dir / models.WEIGHTS_FILE)
    downloaded = model_fingerprint(tiny_architecture, "tiny", weights_dir)
    assert downloaded != before_download
    assert load_clip(tiny_architecture, "tiny", "cpu", weights_dir=weights_dir).fingerprint == (
        downloaded
    )
    # Another file under the same tag (re-downloaded after the publisher changed it).
    torch.manual_seed(1)
    other = save_local_dir(
        open_clip.CLIP(**TINY_MODEL_CFG), tmp_path / "other", TINY_MODEL_CFG, TINY_PREPROCESS_CFG
    )
    shutil.copy(other / models.WEIGHTS_FILE, weights_dir / models.WEIGHTS_FILE)
    assert model_fingerprint(tiny_architecture, "tiny", weights_dir) not in (
        before_download,
        downloaded,
    )
