"""DomainBed-layout loaders and DomainBed's holdout split."""

import hashlib

import numpy as np
import pytest
from _protocol_fixtures import write_image_folder
from torchvision.datasets import ImageFolder

from skcicm.datasets.domainbed import (
    DOMAINBED_DATASETS,
    domainbed_holdout_mask,
    domainbed_seed_hash,
    load_domainbed,
    load_image_folder_domains,
)

PACS_DOMAINS = ("art_painting", "cartoon", "photo", "sketch")


@pytest.fixture(scope="module")
def pacs_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("domainbed")
    folder = root / "PACS"
    for domain in PACS_DOMAINS:
        write_image_folder(folder, domains=[domain], n_per_cell=3)
    # A nested sub-folder and a non-image file, which ImageFolder also walks and skips.
    (folder / "photo" / "cat" / "extra").mkdir()
    (folder / "photo" / "cat" / "001.png").rename(folder / "photo" / "cat" / "extra" / "x.PNG")
    (folder / "photo" / "cat" / "notes.txt").write_text("not an image")
    return root


def test_known_datasets_have_their_domainbed_domains():
    assert DOMAINBED_DATASETS["PACS"][1] == PACS_DOMAINS
    assert DOMAINBED_DATASETS["OfficeHome"][1] == ("Art", "Clipart", "Product", "Real World")
    assert len(DOMAINBED_DATASETS["DomainNet"][1]) == 6
    for _, domains in DOMAINBED_DATASETS.values():
        assert list(domains) == sorted(domains)


def test_load_domainbed_matches_imagefolder_order(pacs_root):
    data = load_domainbed("PACS", pacs_root)
    assert data.domain_names == list(PACS_DOMAINS)
    assert data.class_names == ["cat", "dog", "hot_dog", "owl"]
    assert data.prompt_names[2] == "hot dog"
    assert len(data.images) == len(data.labels) == len(data.domains) == 4 * 4 * 3
    start = 0
    for domain in PACS_DOMAINS:
        reference = ImageFolder(str(pacs_root / "PACS" / domain))
        stop = start + len(reference.samples)
        assert list(data.images[start:stop]) == [path for path, _ in reference.samples]
        assert data.labels[start:stop].tolist() == [label for _, label in reference.samples]
        assert set(data.domains[start:stop]) == {domain}
        start = stop
    assert any(path.endswith("x.PNG") for path in data.images)
    assert not any(path.endswith(".txt") for path in data.images)


def test_load_domainbed_accepts_aliases_dataset_folder_and_domain_subset(pacs_root):
    subset = load_domainbed("pacs", pacs_root / "PACS", domains=["sketch", "photo"])
    assert subset.domain_names == ["photo", "sketch"]
    assert set(subset.domains) == {"photo", "sketch"}


def test_office_home_folder_name_and_spaces_in_domains(tmp_path):
    write_image_folder(tmp_path / "office_home", domains=["photo"], n_per_cell=1)
    (tmp_path / "office_home" / "photo").rename(tmp_path / "office_home" / "Real World")
    data = load_domainbed("office_home", tmp_path, domains=["Real World"])
    assert data.name == "OfficeHome"
    assert set(data.domains) == {"Real World"}


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda root: load_domainbed("Imagenet9", root), ValueError, "Unknown DomainBed dataset"),
        (lambda root: load_domainbed("PACS", root / "nowhere"), FileNotFoundError, "nowhere"),
        (lambda root: load_domainbed("VLCS", root), FileNotFoundError, "VLCS"),
        (lambda root: load_domainbed("PACS", root, domains=["clipart"]), ValueError, "clipart"),
        (lambda root: load_image_folder_domains(root / "missing"), FileNotFoundError, "missing"),
    ],
)
def test_clear_errors(pacs_root, call, error, match):
    with pytest.raises(error, match=match):
        call(pacs_root)


def test_missing_domain_folder_is_named(tmp_path):
    write_image_folder(tmp_path / "PACS", domains=["photo"], n_per_cell=1)
    with pytest.raises(FileNotFoundError, match="sketch"):
        load_domainbed("PACS", tmp_path)


def test_empty_class_is_named(tmp_path):
    write_image_folder(tmp_path, domains=["photo", "sketch"], n_per_cell=1)
    for image in (tmp_path / "sketch" / "owl").iterdir():
        image.unlink()
    with pytest.raises(ValueError, match=r"sketch/owl.*no images"):
        load_image_folder_domains(tmp_path)


def test_classes_that_differ_between_domains(tmp_path):
    write_image_folder(tmp_path, domains=["photo"], n_per_cell=1)
    write_image_folder(tmp_path, domains=["sketch"], classes=("cat", "dog", "emu"), n_per_cell=1)
    with pytest.raises(ValueError, match=r"differ between domains 'photo' and 'sketch'.*emu"):
        load_image_folder_domains(tmp_path)


def test_custom_folder_without_domains(tmp_path):
    (tmp_path / "README.txt").write_text("")
    with pytest.raises(ValueError, match="no domain folders"):
        load_image_folder_domains(tmp_path)


def test_custom_folder_loads_sorted_domains(tmp_path):
    write_image_folder(tmp_path / "mine", domains=["sketch", "art"], n_per_cell=2)
    data = load_image_folder_domains(tmp_path / "mine")
    assert data.name == "mine"
    assert data.domain_names == ["art", "sketch"]
    assert data.domains.tolist() == ["art"] * 8 + ["sketch"] * 8


def test_seed_hash_is_domainbeds_md5_of_the_argument_tuple():
    expected = int(hashlib.md5(b"(3, 1)").hexdigest(), 16) % 2**31
    assert domainbed_seed_hash(3, 1) == expected


def test_holdout_mask_reproduces_domainbed_split():
    domains = np.array(["b"] * 7 + ["a"] * 11 + ["b"] * 3)
    mask = domainbed_holdout_mask(domains, ["a", "b"], holdout_fraction=0.2, trial_seed=4)
    for env_index, domain in enumerate(["a", "b"]):
        members = np.flatnonzero(domains == domain)
        # DomainBed: keys = list(range(n)); RandomState(seed_hash(trial_seed, env_i)).shuffle;
        # the first int(n * holdout_fraction) keys are the "out" split.
        keys = list(range(members.size))
        np.random.RandomState(domainbed_seed_hash(4, env_index)).shuffle(keys)
        out = sorted(members[keys[: int(members.size * 0.2)]])
        assert np.flatnonzero(mask & (domains == domain)).tolist() == out
    assert mask.sum() == int(11 * 0.2) + int(10 * 0.2)


def test_holdout_mask_depends_on_seed_and_checks_inputs():
    domains = np.repeat(["a", "b"], 50)
    first = domainbed_holdout_mask(domains, ["a", "b"], trial_seed=0)
    assert np.array_equal(first, domainbed_holdout_mask(domains, ["a", "b"], trial_seed=0))
    assert not np.array_equal(first, domainbed_holdout_mask(domains, ["a", "b"], trial_seed=1))
    with pytest.raises(ValueError, match=r"\['c'\]"):
        domainbed_holdout_mask(np.array(["a", "c"]), ["a", "b"])
    with pytest.raises(ValueError, match="holdout_fraction"):
        domainbed_holdout_mask(domains, ["a", "b"], holdout_fraction=1.0)
