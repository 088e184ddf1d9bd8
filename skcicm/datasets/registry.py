"""Resolve a dataset name, as the command line takes it, to a loaded dataset.

``"toyworld"`` is the embedded default: ToyWorld images generated on the fly, with prompts
phrased as the captions ToyCLIP was trained on. DomainBed names load from ``--root``; any
other existing folder in the ``<domain>/<class>/<image>`` layout is a custom dataset;
``"imagenet"`` loads ImageNet and its variants from ``--root``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from sklearn.utils import Bunch

from skcicm.datasets.domainbed import (
    DOMAINBED_DATASETS,
    canonical_domainbed_name,
    load_domainbed,
    load_image_folder_domains,
)
from skcicm.datasets.imagenet_variants import find_imagenet_folders, load_imagenet_variant

TOYWORLD = "toyworld"
IMAGENET = "imagenet"
#: Seed of the default ToyWorld images: not one ToyCLIP was trained or evaluated on.
TOYWORLD_SEED = 2025


def _with_article(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def load_toyworld_dataset(
    n_per_cell: int = 20,
    *,
    domains: Sequence[str] | None = None,
    image_size: int = 32,
    random_state: int = TOYWORLD_SEED,
) -> Bunch:
    """ToyWorld as an evaluation dataset, with prompts in ToyCLIP's caption format.

    ToyCLIP learned captions such as ``"a sketch of an arrow"``, so the class prompts are
    ``"a photo of {}"`` filled with the class name and its article (``"an arrow"``), and
    ``text_template`` (``"a {style} of {}"``) gives style prompt pairs in the same format.

    Parameters
    ----------
    n_per_cell : int, default=20
        Number of images per (class, domain) cell.
    domains : sequence of str, default=None
        Styles to render, a subset of :data:`TOYWORLD_DOMAINS`; None renders all.
    image_size : int, default=32
        Height and width of the images in pixels.
    random_state : int, default=TOYWORLD_SEED
        Seed of the world; the default is the one the shipped ToyCLIP was evaluated on.

    Returns
    -------
    dataset : Bunch
        :func:`skcicm.datasets.make_toyworld`'s fields plus ``prompt_names``, ``templates``,
        ``text_template`` and ``name``.
    """
    from skcicm.datasets.toyworld import make_toyworld

    world = make_toyworld(
        n_per_cell, domains=domains, image_size=image_size, random_state=random_state
    )
    world.domains = world.domains.astype(str)
    world.prompt_names = [_with_article(name) for name in world.class_names]
    world.templates = ["a photo of {}"]
    world.text_template = "a {style} of {{}}"
    world.name = TOYWORLD
    return world


def known_datasets() -> list[str]:
    """Dataset names the command line accepts besides a folder path.

    Returns
    -------
    list of str
        ``"toyworld"``, the DomainBed names and ``"imagenet"``.
    """
    return [TOYWORLD, *DOMAINBED_DATASETS, IMAGENET]


def load_dataset(
    dataset: str,
    root: str | os.PathLike | None = None,
    *,
    domains: Sequence[str] | None = None,
    n_per_cell: int = 20,
) -> Bunch:
    """Load a domain-shift dataset by name: ToyWorld, a DomainBed name, or a folder.

    Parameters
    ----------
    dataset : str
        ``"toyworld"``, a DomainBed name (``"PACS"``, ``"VLCS"``, ``"OfficeHome"``,
        ``"TerraIncognita"``, ``"DomainNet"``, case-insensitive), or the path of a folder
        laid out as ``<domain>/<class>/<image>``.
    root : str or path-like, default=None
        Data folder of the DomainBed datasets (required for them).
    domains : sequence of str, default=None
        Domains to load; None loads all.
    n_per_cell : int, default=20
        ToyWorld images per (class, domain).

    Returns
    -------
    dataset : Bunch
        ``images``, ``labels``, ``domains``, ``class_names``, ``domain_names`` and ``name``,
        plus ``prompt_names`` and ``templates`` where the data set has its own prompts.

    Raises
    ------
    ValueError
        For an unknown name that is no folder either, or a DomainBed name without ``root``.
    """
    if dataset.lower() == TOYWORLD:
        return load_toyworld_dataset(n_per_cell, domains=domains)
    try:
        name = canonical_domainbed_name(dataset)
    except ValueError:
        name = None
    if name is not None:
        if root is None:
            raise ValueError(f"Dataset {name} needs --root, the folder that holds {name}.")
        return load_domainbed(name, root, domains=domains)
    if dataset.lower() == IMAGENET:
        raise ValueError("ImageNet is evaluated by the 'imagenet' protocol, not domain shift.")
    if Path(dataset).is_dir():
        return load_image_folder_domains(dataset, domains=domains)
    raise ValueError(
        f"Unknown dataset {dataset!r}: not one of {known_datasets()} and not an existing folder."
    )


def load_imagenet_datasets(
    root: str | os.PathLike,
    *,
    variants: Sequence[str] | None = None,
    max_per_class: int | None = None,
    random_state: int = 0,
) -> tuple[Bunch, dict[str, Bunch]]:
    """Load the ImageNet source and its variants from their distributed folders under ``root``.

    Parameters
    ----------
    root : str or path-like
        Folder holding ``imagenet/train`` (or ``imagenet/val``) and the variant folders
        (see ``skcicm.datasets.imagenet_variants``).
    variants : sequence of str, default=None
        Variants to score; None takes those found under ``root``.
    max_per_class : int, default=None
        Source images kept per class (few-shot); None keeps all.
    random_state : int, default=0
        Seed of the source subsampling.

    Returns
    -------
    source : Bunch
        The ImageNet source, as :func:`load_imagenet_variant` returns it.
    variants : dict of str to Bunch
        Each variant found (or asked for), by name.
    """
    folders = find_imagenet_folders(root, None if variants is None else ["imagenet", *variants])
    if IMAGENET not in folders:
        raise FileNotFoundError(
            f"No ImageNet source folder (imagenet/train or imagenet/val) in {str(root)!r}."
        )
    names = [n for n in folders if n != IMAGENET]
    if not names:
        raise FileNotFoundError(f"No ImageNet variant folder found in {str(root)!r}.")
    source = load_imagenet_variant(
        IMAGENET, folders[IMAGENET], max_per_class=max_per_class, random_state=random_state
    )
    loaded = {name: load_imagenet_variant(name, folders[name]) for name in names}
    return source, loaded
