"""ImageNet variant loaders, class subsets and the ImageNet protocol's restricted scoring."""

import numpy as np
import pytest
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
from PIL import Image

from skcicm.datasets._imagenet_wnids import IMAGENET_A_INDICES, IMAGENET_R_INDICES, IMAGENET_WNIDS
from skcicm.datasets.imagenet_variants import (
    find_imagenet_folders,
    imagenet_class_indices,
    imagenet_templates,
    load_imagenet_variant,
)
from skcicm.evaluation import EmbeddedDataset, imagenet_shift
from skcicm.prompts import class_prompt_names


def _write(folder, names, per_class=1):
    pixels = np.zeros((4, 4, 3), dtype=np.uint8)
    for name in names:
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(pixels).save(folder / name / f"{i}.jpg")
    return folder


def test_wnid_lists_are_consistent_with_open_clip_names():
    assert len(IMAGENET_WNIDS) == len(set(IMAGENET_WNIDS)) == len(IMAGENET_CLASSNAMES) == 1000
    assert list(IMAGENET_WNIDS) == sorted(IMAGENET_WNIDS)
    assert IMAGENET_WNIDS[0] == "n01440764" and IMAGENET_CLASSNAMES[0] == "tench"
    for indices, size in ((IMAGENET_R_INDICES, 200), (IMAGENET_A_INDICES, 200)):
        assert len(indices) == len(set(indices)) == size
        assert list(indices) == sorted(indices) and min(indices) >= 0 and max(indices) < 1000
    # First classes of the published lists: goldfish (n01443537) for R, stingray for A.
    assert IMAGENET_WNIDS[IMAGENET_R_INDICES[0]] == "n01443537"
    assert IMAGENET_CLASSNAMES[IMAGENET_R_INDICES[0]] == "goldfish"
    assert IMAGENET_WNIDS[IMAGENET_A_INDICES[0]] == "n01498041"
    assert IMAGENET_CLASSNAMES[IMAGENET_A_INDICES[0]] == "stingray"


def test_templates_are_openais_80():
    templates = imagenet_templates()
    assert len(templates) == 80
    assert all(t.count("{}") == 1 for t in templates)


def test_imagenet_r_loads_its_200_classes(tmp_path):
    wnids = [IMAGENET_WNIDS[i] for i in IMAGENET_R_INDICES]
    root = _write(tmp_path / "imagenet-r", wnids[::-1])
    data = load_imagenet_variant("imagenet-r", root)
    assert data.labels.tolist() == list(range(200))
    assert data.wnids == wnids
    assert data.class_names == [IMAGENET_CLASSNAMES[i] for i in IMAGENET_R_INDICES]
    assert data.imagenet_indices.tolist() == list(IMAGENET_R_INDICES)
    assert [p.split("/")[-2] for p in data.images] == wnids
    assert len(data.templates) == 80


def test_imagenet_v2_class_index_folders_are_not_sorted_as_text(tmp_path):
    root = _write(tmp_path / "imagenetv2-matched-frequency-format-val", map(str, range(1000)))
    data = load_imagenet_variant("imagenet-v2", root)
    # Text order would put folder "10" second; the label must be the folder's number.
    folder_of = {
        label: path.split("/")[-2] for path, label in zip(data.images, data.labels, strict=True)
    }
    assert folder_of[10] == "10" and folder_of[999] == "999"
    assert data.class_names[10] == IMAGENET_CLASSNAMES[10]
    # open_clip names two pairs of classes alike; their prompts must tell them apart.
    assert data.class_names[744] == data.class_names[657] == "missile"
    assert (data.prompt_names[657], data.prompt_names[744]) == ("missile", "projectile")
    assert (data.prompt_names[836], data.prompt_names[837]) == ("sunglass", "sunglasses")
    assert class_prompt_names(data.prompt_names) == data.prompt_names


def test_max_per_class_subsamples_reproducibly(tmp_path):
    wnids = [IMAGENET_WNIDS[i] for i in IMAGENET_A_INDICES]
    root = _write(tmp_path / "a", wnids, per_class=3)
    first = load_imagenet_variant("imagenet-a", root, max_per_class=2, random_state=1)
    again = load_imagenet_variant("imagenet-a", root, max_per_class=2, random_state=1)
    assert len(first.images) == 400 and first.images == again.images
    assert np.bincount(first.labels).tolist() == [2] * 200


def test_missing_extra_and_empty_class_folders(tmp_path):
    wnids = [IMAGENET_WNIDS[i] for i in IMAGENET_R_INDICES]
    root = _write(tmp_path / "r", wnids[1:])
    with pytest.raises(ValueError, match=r"1 are missing \(e.g. \['n01443537'\]\)"):
        load_imagenet_variant("imagenet-r", root)
    _write(root, [wnids[0], IMAGENET_WNIDS[0]])
    with pytest.raises(ValueError, match="1 do not belong to it"):
        load_imagenet_variant("imagenet-r", root)
    (root / IMAGENET_WNIDS[0] / "0.jpg").unlink()
    (root / IMAGENET_WNIDS[0]).rmdir()
    (root / wnids[5] / "0.jpg").unlink()
    with pytest.raises(ValueError, match=f"{wnids[5]}.*holds no images"):
        load_imagenet_variant("imagenet-r", root)
    _write(tmp_path / "bad", ["not_a_wnid"])
    with pytest.raises(ValueError, match="not_a_wnid"):
        load_imagenet_variant("imagenet-sketch", tmp_path / "bad")
    with pytest.raises(ValueError, match="Unknown ImageNet dataset"):
        imagenet_class_indices("imagenet-c")
    with pytest.raises(FileNotFoundError):
        load_imagenet_variant("imagenet-a", tmp_path / "nowhere")


def test_find_imagenet_folders(tmp_path):
    (tmp_path / "imagenet" / "val").mkdir(parents=True)
    (tmp_path / "sketch").mkdir()
    assert find_imagenet_folders(tmp_path) == {
        "imagenet": tmp_path / "imagenet" / "val",
        "imagenet-sketch": tmp_path / "sketch",
    }
    with pytest.raises(FileNotFoundError, match="imagenet-r"):
        find_imagenet_folders(tmp_path, ["imagenet-r"])


def test_imagenet_shift_restricts_r_predictions_to_its_classes():
    rng = np.random.default_rng(0)
    d = 256
    text = rng.normal(size=(1000, d))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    source_labels = rng.integers(0, 20, 300)
    source = EmbeddedDataset(
        embeddings=text[source_labels] + 0.1 * rng.normal(size=(300, d)),
        labels=source_labels,
        domains=np.full(300, "imagenet"),
        domain_names=["imagenet"],
        class_names=[str(i) for i in range(1000)],
        class_embeddings=text,
        name="imagenet",
    )
    r_indices = np.asarray(IMAGENET_R_INDICES)
    outside = np.setdiff1d(np.arange(1000), r_indices)
    labels = np.arange(200)
    # Each image looks most like a class outside ImageNet-R, then like its own class.
    embeddings = text[r_indices] + 2.0 * text[outside[:200]]
    variant = EmbeddedDataset(
        embeddings=embeddings,
        labels=labels,
        domains=np.full(200, "imagenet-r"),
        class_names=[str(i) for i in r_indices],
        domain_names=["imagenet-r"],
        imagenet_indices=r_indices,
    )
    result = imagenet_shift(
        source, {"imagenet-r": variant}, methods=["clip_zero_shot"], progress=False
    )
    (row,) = result.results
    assert row["target"] == "imagenet-r" and row["n_test"] == 200
    unrestricted = (embeddings @ text.T).argmax(axis=1)
    assert np.mean(unrestricted == r_indices) == 0.0
    assert row["accuracy"] == 1.0
