"""A fitted featurizer is pinned to its weights: swapped weights are refused, not used."""

import json
import pickle
import shutil

import numpy as np
import open_clip
import pytest
import torch
from sklearn.pipeline import Pipeline

from skcicm import CLIPFeaturizer, InvariantCausalMechanism
from skcicm.featurizer._models import _load_resolved, save_local_dir
from skcicm.featurizer.cache import ModelWeightsChangedError, clear_memory_cache


def _new_process_state():
    """What a fresh interpreter sees: no loaded models, no embeddings in memory."""
    _load_resolved.cache_clear()
    clear_memory_cache()


def _save_tiny_clip(folder, seed):
    config = json.loads((folder / "open_clip_config.json").read_text())
    torch.manual_seed(seed)
    model = open_clip.CLIP(**config["model_cfg"])
    save_local_dir(model, folder, config["model_cfg"], config["preprocess_cfg"])


def test_a_pickled_pipeline_refuses_swapped_weights(tiny_clip_dir, domain_images, tmp_path):
    images, labels, _ = domain_images
    folder = tmp_path / "model"
    shutil.copytree(tiny_clip_dir, folder)
    original = (folder / "open_clip_model.safetensors").read_bytes()
    pipe = Pipeline(
        [
            ("clip", CLIPFeaturizer(f"local-dir:{folder}", None, progress=False, num_workers=0)),
            ("icm", InvariantCausalMechanism(n_components=8, lam=1.0, head="linear_probe")),
        ]
    ).fit(images, labels)
    expected = pipe.predict(images)
    saved = pickle.dumps(pipe)
    assert pipe[0].model_fingerprint_ == pickle.loads(saved)[0].model_fingerprint_

    _save_tiny_clip(folder, seed=1)
    _new_process_state()
    loaded = pickle.loads(saved)
    with pytest.raises(ModelWeightsChangedError, match="differ from those this featurizer was"):
        loaded.predict(images)
    with pytest.raises(ModelWeightsChangedError):
        loaded[0].transform(images[:2])

    (folder / "open_clip_model.safetensors").write_bytes(original)
    _new_process_state()
    np.testing.assert_array_equal(pickle.loads(saved).predict(images), expected)


def test_refitting_pins_the_new_weights(tiny_clip_dir, domain_images, tmp_path):
    images, _, _ = domain_images
    folder = tmp_path / "model"
    shutil.copytree(tiny_clip_dir, folder)
    featurizer = CLIPFeaturizer(f"local-dir:{folder}", None, progress=False, num_workers=0)
    before = featurizer.fit(images[:2]).model_fingerprint_
    _save_tiny_clip(folder, seed=1)
    _new_process_state()
    after = featurizer.fit(images[:2]).model_fingerprint_
    assert after != before
    assert featurizer.transform(images[:2]).shape == (2, featurizer.embedding_dim_)
