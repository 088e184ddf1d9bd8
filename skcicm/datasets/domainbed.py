"""Domain-generalisation datasets in the DomainBed folder layout, and DomainBed's splits.

The layout is ``<root>/<dataset>/<domain>/<class>/<image>``, as DomainBed's download script
leaves it (Gulrajani & Lopez-Paz, 2021). Samples are ordered as DomainBed orders them: domains
sorted by folder name, then within each domain as ``torchvision.datasets.ImageFolder`` lists
them (classes sorted, files sorted, sub-folders walked recursively). That order, together with
:func:`domainbed_holdout_mask`, reproduces DomainBed's train/validation splits exactly.

Folders are walked defensively: linked folders are followed, but never back into an ancestor
or twice, and a file reached by several links counts once, so link loops add no images. An
entry with an image name that is not a regular file (a FIFO would block the run for ever) is
refused before any work starts. Folder names are returned exactly as they are on disk.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

# torchvision's ImageFolder extensions, so that the same files are found as in DomainBed.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

#: Dataset name -> (folder names DomainBed's download script creates, domain folder names).
DOMAINBED_DATASETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "PACS": (("PACS",), ("art_painting", "cartoon", "photo", "sketch")),
    "VLCS": (("VLCS",), ("Caltech101", "LabelMe", "SUN09", "VOC2007")),
    "OfficeHome": (("office_home", "OfficeHome"), ("Art", "Clipart", "Product", "Real World")),
    "TerraIncognita": (
        ("terra_incognita", "TerraIncognita"),
        ("location_100", "location_38", "location_43", "location_46"),
    ),
    "DomainNet": (
        ("domain_net", "DomainNet"),
        ("clipart", "infograph", "painting", "quickdraw", "real", "sketch"),
    ),
}

DOMAINBED_HOLDOUT_FRACTION = 0.2


def canonical_domainbed_name(name: str) -> str:
    """The DomainBed spelling of a dataset name (``"pacs"`` -> ``"PACS"``).

    Parameters
    ----------
    name : str
        A DomainBed dataset name or folder name, in any case, with or without ``_`` and
        ``-`` (``"office_home"``, ``"OfficeHomeDataset_10072016"``).

    Returns
    -------
    str
        The key of the dataset in :data:`DOMAINBED_DATASETS`.

    Raises
    ------
    ValueError
        When ``name`` is no DomainBed dataset; the message lists the known ones.
    """
    lowered = name.replace("_", "").replace("-", "").lower()
    for canonical, (folders, _) in DOMAINBED_DATASETS.items():
        if lowered in {canonical.lower(), *(f.replace("_", "").lower() for f in folders)}:
            return canonical
    raise ValueError(
        f"Unknown DomainBed dataset {name!r}; known ones are {sorted(DOMAINBED_DATASETS)}. "
        "Use load_image_folder_domains for any other folder in the same layout."
    )


def _list_images(class_dir: Path) -> list[str]:
    """Image files under ``class_dir`` in torchvision ImageFolder's order, each file once.

    The order is ``make_dataset``'s (sorted ``os.walk`` with ``followlinks=True``, sorted file
    names). Unlike that walk, a linked folder is never entered when it is one of its own
    ancestors or was already walked, and a file reached by several links is listed once, at
    its first path: a link loop such as ``ln -s . loop`` adds no images. Dangling links stay
    listed, so that the featurizer names them among the unreadable images.

    Raises
    ------
    ValueError
        If image-named entries are not regular files (FIFOs, sockets, devices): reading a
        FIFO blocks for ever, so they are refused before any work starts.
    """
    folders: list[tuple[str, str, list[os.DirEntry]]] = []
    walked: set[str] = set()

    def walk(path: str, real: str, ancestors: frozenset[str]) -> None:
        if real in ancestors or real in walked:
            return
        walked.add(real)
        with os.scandir(path) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
        folders.append((path, real, [entry for entry in entries if not entry.is_dir()]))
        inner = ancestors | {real}
        for entry in entries:
            if entry.is_dir():
                real_child = (
                    os.path.realpath(entry.path)
                    if entry.is_symlink()
                    else os.path.join(real, entry.name)
                )
                walk(entry.path, real_child, inner)

    top = os.path.realpath(class_dir)
    walk(str(class_dir), top, frozenset(str(parent) for parent in Path(top).parents))
    paths: list[str] = []
    listed: set[str] = set()
    not_regular: list[str] = []
    for _, real_folder, files in sorted(folders, key=lambda folder: folder[0]):
        for entry in files:
            if not entry.name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            linked = entry.is_symlink()
            real = os.path.realpath(entry.path) if linked else os.path.join(real_folder, entry.name)
            if real in listed:
                continue
            listed.add(real)
            if not entry.is_file() and not (linked and not os.path.exists(entry.path)):
                not_regular.append(entry.path)
            paths.append(entry.path)
    if not_regular:
        more = f" and {len(not_regular) - 10} more" if len(not_regular) > 10 else ""
        raise ValueError(
            f"{len(not_regular)} entries with image names under {str(class_dir)!r} are not "
            f"regular files (FIFO, socket or device), which cannot be read as images: "
            f"{not_regular[:10]}{more}. Remove them from the data set folder."
        )
    return paths


def _subdirectories(folder: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())


def _load_domains(dataset_dir: Path, domain_names: Sequence[str], name: str) -> Bunch:
    class_names: list[str] | None = None
    first_domain = ""
    images: list[str] = []
    labels: list[int] = []
    domains: list[str] = []
    missing = [d for d in domain_names if not (dataset_dir / d).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"{name}: {str(dataset_dir)!r} lacks the domain folders {missing}; "
            f"it has {_subdirectories(dataset_dir)}."
        )
    for domain in domain_names:
        domain_dir = dataset_dir / domain
        classes = _subdirectories(domain_dir)
        if not classes:
            raise ValueError(f"{name}: domain folder {str(domain_dir)!r} has no class folders.")
        if class_names is None:
            class_names, first_domain = classes, domain
        elif classes != class_names:
            only_here = sorted(set(classes) - set(class_names))
            missing = sorted(set(class_names) - set(classes))
            raise ValueError(
                f"{name}: classes differ between domains {first_domain!r} and {domain!r}: "
                f"only in {domain!r}: {only_here[:10]}, missing from {domain!r}: {missing[:10]}."
            )
        for label, class_name in enumerate(classes):
            paths = _list_images(domain_dir / class_name)
            if not paths:
                raise ValueError(
                    f"{name}: class folder {str(domain_dir / class_name)!r} holds no images "
                    f"(extensions {', '.join(IMAGE_EXTENSIONS)})."
                )
            images.extend(paths)
            labels.extend([label] * len(paths))
            domains.extend([domain] * len(paths))
    return Bunch(
        images=images,
        labels=np.asarray(labels, dtype=np.int64),
        domains=np.asarray(domains),
        class_names=list(class_names),
        domain_names=list(domain_names),
        prompt_names=[c.replace("_", " ") for c in class_names],
        name=name,
        root=str(dataset_dir),
    )


def load_domainbed(
    name: str, root: str | os.PathLike, *, domains: Sequence[str] | None = None
) -> Bunch:
    """Load a DomainBed dataset from ``<root>/<dataset folder>/<domain>/<class>/<image>``.

    Parameters
    ----------
    name : {"PACS", "VLCS", "OfficeHome", "TerraIncognita", "DomainNet"}
        Dataset name; DomainBed's folder names (``"office_home"``, ``"domain_net"``...) and
        case variants are accepted.
    root : str or path-like
        The folder that holds the dataset folder (DomainBed's ``--data_dir``), or the dataset
        folder itself.
    domains : sequence of str, default=None
        Domains to load, by folder name; None loads all the dataset's domains.

    Returns
    -------
    dataset : Bunch
        ``images`` (list of paths), ``labels`` (int64, index into ``class_names``),
        ``domains`` (str array), ``class_names`` (sorted folder names), ``domain_names``
        (sorted), ``prompt_names`` (class names with spaces for prompts), ``name``, ``root``.

    Raises
    ------
    FileNotFoundError
        If the dataset folder or a domain folder is missing.
    ValueError
        For an unknown dataset or domain, a class folder with no images, class folders that
        differ between domains, or image-named entries that are not regular files (FIFOs).
    """
    canonical = canonical_domainbed_name(name)
    folders, known_domains = DOMAINBED_DATASETS[canonical]
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{canonical}: root folder {str(root)!r} does not exist.")
    candidates = [root / folder for folder in folders] + [root]
    dataset_dir = next(
        (c for c in candidates if c.is_dir() and any((c / d).is_dir() for d in known_domains)),
        None,
    )
    if dataset_dir is None:
        raise FileNotFoundError(
            f"{canonical}: no dataset folder under {str(root)!r}; expected "
            f"{str(root / folders[0])!r} holding the domain folders {list(known_domains)}."
        )
    if domains is None:
        domains = known_domains
    unknown = sorted(set(domains) - set(known_domains))
    if unknown:
        raise ValueError(
            f"{canonical} has no domains {unknown}; its domains are {list(known_domains)}."
        )
    return _load_domains(dataset_dir, sorted(domains), canonical)


def load_image_folder_domains(
    root: str | os.PathLike, *, domains: Sequence[str] | None = None, name: str | None = None
) -> Bunch:
    """Load any dataset laid out as ``<root>/<domain>/<class>/<image>``.

    Parameters
    ----------
    root : str or path-like
        The dataset folder, whose sub-folders are the domains.
    domains : sequence of str, default=None
        Domains to load; None loads every sub-folder of ``root``.
    name : str, default=None
        Name recorded in the results; defaults to the folder name.

    Returns
    -------
    dataset : Bunch
        As :func:`load_domainbed`.

    Raises
    ------
    FileNotFoundError
        If ``root`` or a requested domain folder is missing.
    ValueError
        If ``root`` has no domain folders, a class folder holds no images, class folders
        differ between domains, or image-named entries are not regular files (FIFOs).
    """
    root = Path(root)
    name = name or root.name
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: dataset folder {str(root)!r} does not exist.")
    if domains is None:
        domains = _subdirectories(root)
        if not domains:
            raise ValueError(
                f"{name}: {str(root)!r} has no domain folders; expected "
                "<root>/<domain>/<class>/<image>."
            )
    return _load_domains(root, sorted(domains), name)


def domainbed_seed_hash(*args: object) -> int:
    """DomainBed's ``misc.seed_hash``: a seed in ``[0, 2**31)`` derived from ``args``.

    Examples
    --------
    >>> domainbed_seed_hash(0, 1) == domainbed_seed_hash(0, 1) != domainbed_seed_hash(1, 1)
    True
    """
    digest = hashlib.md5(str(args).encode("utf-8")).hexdigest()
    return int(digest, 16) % (2**31)


def domainbed_holdout_mask(
    domains: Sequence[str] | np.ndarray,
    domain_names: Sequence[str],
    *,
    holdout_fraction: float = DOMAINBED_HOLDOUT_FRACTION,
    trial_seed: int = 0,
) -> np.ndarray:
    """Mark DomainBed's held-out ("out") split of every domain.

    For the domain at position ``i`` of ``domain_names`` with ``n`` samples, DomainBed
    shuffles ``range(n)`` with ``np.random.RandomState(seed_hash(trial_seed, i))`` and holds
    out the first ``int(n * holdout_fraction)`` of them; the rest is the "in" split. Samples
    are indexed within their domain in dataset order.

    DomainBed trains on the "in" splits of the source domains and reports the accuracy of the
    "in" split of the target domain; the "out" splits serve model selection (the target's only
    for oracle selection).

    Parameters
    ----------
    domains : array-like of shape (n_samples,)
        Domain of each sample.
    domain_names : sequence of str
        Domains in DomainBed's environment order (sorted folder names).
    holdout_fraction : float, default=0.2
        Fraction of each domain held out.
    trial_seed : int, default=0
        DomainBed's ``--trial_seed``.

    Returns
    -------
    holdout : ndarray of bool, shape (n_samples,)
        True for samples of the "out" split.

    Examples
    --------
    >>> mask = domainbed_holdout_mask(["a"] * 10 + ["b"] * 5, ["a", "b"])
    >>> int(mask[:10].sum()), int(mask[10:].sum())
    (2, 1)
    """
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1); got {holdout_fraction}.")
    domains = np.asarray(domains)
    unknown = sorted(set(np.unique(domains).tolist()) - set(domain_names))
    if unknown:
        raise ValueError(f"domains {unknown} are not in domain_names {list(domain_names)}.")
    holdout = np.zeros(domains.shape[0], dtype=bool)
    for env_index, domain in enumerate(domain_names):
        members = np.flatnonzero(domains == domain)
        keys = list(range(members.size))
        np.random.RandomState(domainbed_seed_hash(trial_seed, env_index)).shuffle(keys)
        holdout[members[keys[: int(members.size * holdout_fraction)]]] = True
    return holdout
