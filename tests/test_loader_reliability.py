"""Data set folders that are not plain trees: link loops, duplicate links, FIFOs, odd names."""

import os

import numpy as np
import pytest
from _protocol_fixtures import write_image_folder

from skcicm.datasets.domainbed import load_domainbed, load_image_folder_domains
from skcicm.datasets.imagenet_variants import load_imagenet_variant

PACS_DOMAINS = ["art_painting", "cartoon", "photo", "sketch"]


@pytest.fixture
def pacs_root(tmp_path):
    write_image_folder(tmp_path / "PACS", domains=PACS_DOMAINS, n_per_cell=3)
    return tmp_path


def test_link_loops_and_repeated_links_add_no_images(pacs_root):
    clean = load_domainbed("PACS", pacs_root)
    cat = pacs_root / "PACS" / "photo" / "cat"
    (cat / "nested").mkdir()
    (cat / "000.png").rename(cat / "nested" / "000.png")
    os.symlink(".", cat / "loop")
    os.symlink("..", cat / "nested" / "up")
    os.symlink("../..", cat / "nested" / "to_domain")
    os.symlink("nested", cat / "alias")
    os.symlink("nested/000.png", cat / "same.png")
    looped = load_domainbed("PACS", pacs_root)
    assert len(looped.images) == len(clean.images)
    np.testing.assert_array_equal(looped.labels, clean.labels)
    photo_cat = [path for path in looped.images if "/photo/cat/" in path]
    assert len(photo_cat) == len({os.path.realpath(path) for path in photo_cat}) == 3
    # The first path in ImageFolder's order is kept: a folder's own files come before its
    # sub-folders', so the link 'same.png' stands for 'nested/000.png' (and 'alias/000.png').
    assert str(cat / "same.png") in photo_cat


def test_a_linked_class_folder_is_walked(pacs_root, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    (pacs_root / "PACS" / "sketch" / "owl").rename(elsewhere)
    os.symlink(elsewhere, pacs_root / "PACS" / "sketch" / "owl")
    data = load_domainbed("PACS", pacs_root, domains=["sketch"])
    assert (data.labels == data.class_names.index("owl")).sum() == 3


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_with_an_image_name_fails_fast_by_name(pacs_root):
    fifo = pacs_root / "PACS" / "cartoon" / "dog" / "stuck.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not regular files") as excinfo:
        load_domainbed("PACS", pacs_root)
    assert str(fifo) in str(excinfo.value)
    fifo.rename(fifo.with_suffix(".fifo"))
    assert len(load_domainbed("PACS", pacs_root).images) == 4 * 4 * 3


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_in_an_imagenet_variant_fails_fast(tmp_path):
    from skcicm.datasets._imagenet_wnids import IMAGENET_A_INDICES, IMAGENET_WNIDS

    root = tmp_path / "imagenet-a"
    for index in IMAGENET_A_INDICES:
        write_image_folder(root, domains=[IMAGENET_WNIDS[index]], classes=[""], n_per_cell=1)
    fifo = root / IMAGENET_WNIDS[IMAGENET_A_INDICES[0]] / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=str(fifo)):
        load_imagenet_variant("imagenet-a", root)


def test_dangling_links_stay_listed_for_the_featurizer_to_name(pacs_root):
    dangling = pacs_root / "PACS" / "art_painting" / "owl" / "gone.png"
    os.symlink("no-such-file.png", dangling)
    assert str(dangling) in load_domainbed("PACS", pacs_root).images


def test_names_with_braces_are_returned_as_they_are(tmp_path):
    write_image_folder(tmp_path / "odd", domains=["ph{o}to", "{}"], classes=["c{a}t", "d{0}g"])
    data = load_image_folder_domains(tmp_path / "odd")
    assert data.domain_names == ["ph{o}to", "{}"]
    assert data.class_names == ["c{a}t", "d{0}g"]
    assert data.prompt_names == ["c{a}t", "d{0}g"]
    assert set(data.domains) == {"ph{o}to", "{}"}
    assert all(os.path.isfile(path) for path in data.images)
