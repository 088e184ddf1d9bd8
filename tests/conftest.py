"""Shared fixtures: a tiny open_clip model saved on disk, and generated multi-domain images."""

import os

# Tests never reach a model hub; set before open_clip or huggingface_hub are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

TINY_MODEL_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TINY_PREPROCESS_CFG = {
    "size": 32,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A randomly initialised, seeded tiny CLIP in open_clip's local-dir layout."""
    import open_clip
    import torch

    from skcicm.featurizer import save_local_dir

    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY_MODEL_CFG)
    return save_local_dir(
        model, tmp_path_factory.mktemp("tiny_clip"), TINY_MODEL_CFG, TINY_PREPROCESS_CFG
    )


@pytest.fixture(scope="session")
def tiny_clip_name(tiny_clip_dir):
    return f"local-dir:{tiny_clip_dir}"


def make_domain_images(n_per_cell=6, n_classes=3, domains=("red", "green", "blue"), seed=0):
    """Images whose class is a bright square's position and whose domain is a colour tint.

    Returns (images uint8 (n, 32, 32, 3), labels, domain labels).
    """
    rng = np.random.default_rng(seed)
    tints = {"red": (140, 30, 30), "green": (30, 140, 30), "blue": (30, 30, 140)}
    images, labels, domain_labels = [], [], []
    for domain in domains:
        for label in range(n_classes):
            for _ in range(n_per_cell):
                image = np.clip(
                    np.array(tints[domain]) + rng.normal(0, 12, size=(32, 32, 3)), 0, 255
                )
                row = 2 + 9 * label + rng.integers(0, 3)
                column = 4 + rng.integers(0, 20)
                image[row : row + 8, column : column + 8] = 250
                images.append(image.astype(np.uint8))
                labels.append(label)
                domain_labels.append(domain)
    return np.stack(images), np.array(labels), np.array(domain_labels)


@pytest.fixture
def domain_images():
    return make_domain_images()


@pytest.fixture
def encoded_count(monkeypatch):
    """Count the images that go through the image encoder, starting from an empty cache."""
    import open_clip

    from skcicm.featurizer.cache import clear_memory_cache

    counter = {"images": 0}
    original = open_clip.model.CLIP.encode_image

    def counting(self, image, normalize=False):
        counter["images"] += image.shape[0]
        return original(self, image, normalize=normalize)

    monkeypatch.setattr(open_clip.model.CLIP, "encode_image", counting)
    clear_memory_cache()
    return counter
