"""ImageNet and its distribution-shift variants from ImageFolder copies on disk.

Class names and prompt templates are open_clip's (``IMAGENET_CLASSNAMES``,
``OPENAI_IMAGENET_TEMPLATES``), the ones CLIP's zero-shot results were reported with.
ImageNet-R and ImageNet-A cover 200 of the 1000 classes: their loaders return labels in
``0..199`` over those classes, and ``imagenet_indices`` maps them back to ImageNet-1k, where a
model trained on all 1000 classes must be scored over the 200 classes only.

Expected folders (as distributed):

- ImageNet (source): ``<wnid>/<image>`` for the 1000 classes (``train`` or ``val`` sorted into
  class folders);
- ImageNet-V2: ``imagenetv2-matched-frequency-format-val/<0..999>/<image>`` (class indices as
  folder names; wnid folder names are accepted too);
- ImageNet-Sketch: ``sketch/<wnid>/<image>`` (1000 classes);
- ImageNet-R: ``imagenet-r/<wnid>/<image>`` (200 classes);
- ImageNet-A: ``imagenet-a/<wnid>/<image>`` (200 classes).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from skcicm.datasets._imagenet_wnids import IMAGENET_A_INDICES, IMAGENET_R_INDICES, IMAGENET_WNIDS
from skcicm.datasets.domainbed import _list_images, _subdirectories

#: The ImageNet variants that :func:`load_imagenet_variant` reads, by their folder names.
IMAGENET_VARIANTS: tuple[str, ...] = ("imagenet-v2", "imagenet-sketch", "imagenet-r", "imagenet-a")

# Folder names the variants are distributed under, for find_imagenet_folders.
_FOLDER_NAMES: dict[str, tuple[str, ...]] = {
    "imagenet": ("imagenet/train", "imagenet/val", "imagenet"),
    "imagenet-v2": ("imagenetv2-matched-frequency-format-val", "imagenet-v2", "imagenetv2"),
    "imagenet-sketch": ("sketch", "imagenet-sketch", "ImageNet-Sketch"),
    "imagenet-r": ("imagenet-r",),
    "imagenet-a": ("imagenet-a",),
}


def imagenet_templates() -> list[str]:
    """The 80 prompt templates of CLIP's ImageNet evaluation, with ``{}`` for the class name.

    They are open_clip's copy of OpenAI's list, so that zero-shot accuracies compare with
    published ones.

    Returns
    -------
    list of str
        The templates, in OpenAI's order.

    Examples
    --------
    >>> templates = imagenet_templates()
    >>> len(templates), templates[0]
    (80, 'a bad photo of a {}.')
    """
    # open_clip imports torch: deferred so that loading datasets stays light.
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return [template("{}") for template in OPENAI_IMAGENET_TEMPLATES]


def imagenet_class_indices(name: str) -> np.ndarray:
    """Indices into ImageNet-1k of the classes a dataset covers.

    Examples
    --------
    >>> imagenet_class_indices("imagenet-r").shape, imagenet_class_indices("imagenet-v2").shape
    ((200,), (1000,))
    """
    name = _check_name(name)
    if name == "imagenet-r":
        return np.asarray(IMAGENET_R_INDICES)
    if name == "imagenet-a":
        return np.asarray(IMAGENET_A_INDICES)
    return np.arange(len(IMAGENET_WNIDS))


def _check_name(name: str) -> str:
    key = name.lower().replace("_", "-")
    if key not in ("imagenet", *IMAGENET_VARIANTS):
        raise ValueError(
            f"Unknown ImageNet dataset {name!r}; expected 'imagenet' or one of {IMAGENET_VARIANTS}."
        )
    return key


def _folder_to_index(name: str, folders: list[str], root: Path) -> dict[str, int]:
    wnid_index = {wnid: i for i, wnid in enumerate(IMAGENET_WNIDS)}
    # ImageNet-V2 names its class folders by class index ("0".."999"), not by wnid.
    if name == "imagenet-v2" and all(f.isdigit() for f in folders):
        mapping = {f: int(f) for f in folders}
        bad = [f for f, i in mapping.items() if i >= len(IMAGENET_WNIDS)]
    else:
        mapping = {f: wnid_index.get(f, -1) for f in folders}
        bad = [f for f, i in mapping.items() if i < 0]
    if bad:
        raise ValueError(
            f"{name}: {str(root)!r} has folders that are no ImageNet class: {sorted(bad)[:10]}."
        )
    return mapping


def load_imagenet_variant(
    name: str,
    root: str | os.PathLike,
    *,
    max_per_class: int | None = None,
    random_state: int = 0,
) -> Bunch:
    """Load ImageNet or one of its variants from an ImageFolder copy.

    Parameters
    ----------
    name : {"imagenet", "imagenet-v2", "imagenet-sketch", "imagenet-r", "imagenet-a"}
        Which dataset; ``root`` must hold exactly its classes.
    root : str or path-like
        The folder of class folders (see the module docstring for each dataset's layout).
    max_per_class : int, default=None
        Keep at most this many images per class, drawn with ``random_state`` (few-shot
        training sets); None keeps all.
    random_state : int, default=0
        Seed of the per-class subsampling.

    Returns
    -------
    dataset : Bunch
        ``images`` (list of paths), ``labels`` (int64 in ``0..n_classes-1``), ``domains``
        (``name`` for every image), ``class_names`` (open_clip's names of the covered
        classes), ``prompt_names`` (the same, but for two names open_clip's list repeats; see
        ``PROMPT_NAME_FIXES``), ``domain_names`` (``[name]``), ``wnids``,
        ``imagenet_indices`` (index into ImageNet-1k of each class), ``templates`` (the 80
        OpenAI prompt templates), ``name`` and ``root``.

    Raises
    ------
    FileNotFoundError
        If ``root`` does not exist.
    ValueError
        If a class folder is missing, unexpected or holds no images, or if image-named
        entries are not regular files (FIFOs); see ``skcicm.datasets.domainbed`` for how
        links are walked.
    """
    name = _check_name(name)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: folder {str(root)!r} does not exist.")
    indices = imagenet_class_indices(name)
    folders = _subdirectories(root)
    mapping = _folder_to_index(name, folders, root)
    missing = sorted(set(indices.tolist()) - set(mapping.values()))
    extra = sorted(f for f, i in mapping.items() if i not in set(indices.tolist()))
    if missing or extra:
        raise ValueError(
            f"{name}: {str(root)!r} must hold exactly its {indices.size} class folders; "
            f"{len(missing)} are missing (e.g. {[IMAGENET_WNIDS[i] for i in missing[:5]]}) and "
            f"{len(extra)} do not belong to it (e.g. {extra[:5]})."
        )
    folder_of = {i: f for f, i in mapping.items()}
    rng = np.random.default_rng(random_state)
    images: list[str] = []
    labels: list[int] = []
    for label, index in enumerate(indices):
        class_dir = root / folder_of[int(index)]
        paths = _list_images(class_dir)
        if not paths:
            raise ValueError(f"{name}: class folder {str(class_dir)!r} holds no images.")
        if max_per_class is not None and len(paths) > max_per_class:
            keep = np.sort(rng.choice(len(paths), size=max_per_class, replace=False))
            paths = [paths[i] for i in keep]
        images.extend(paths)
        labels.extend([label] * len(paths))
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    class_names = [IMAGENET_CLASSNAMES[i] for i in indices]
    return Bunch(
        images=images,
        labels=np.asarray(labels, dtype=np.int64),
        domains=np.full(len(images), name),
        class_names=class_names,
        prompt_names=[PROMPT_NAME_FIXES.get(int(i), IMAGENET_CLASSNAMES[i]) for i in indices],
        domain_names=[name],
        wnids=[IMAGENET_WNIDS[i] for i in indices],
        imagenet_indices=indices,
        templates=imagenet_templates(),
        name=name,
        root=str(root),
    )


#: Prompt names for the two ImageNet classes whose open_clip name repeats another's:
#: n04008634 ("projectile, missile") and n04355933 ("sunglass") are both named like the classes
#: n03773504 ("missile") and n04356056 ("sunglasses") there. Two classes with one prompt get the
#: same text embedding, so zero-shot could never predict the second; the featurizer refuses
#: such names. Their WordNet lemmas tell them apart.
PROMPT_NAME_FIXES: dict[int, str] = {744: "projectile", 836: "sunglass"}


def find_imagenet_folders(
    root: str | os.PathLike, names: Sequence[str] | None = None
) -> dict[str, Path]:
    """Find ImageNet and its variants under ``root`` by their distributed folder names.

    Parameters
    ----------
    root : str or path-like
        Folder holding e.g. ``imagenet/val``, ``imagenetv2-matched-frequency-format-val``,
        ``sketch``, ``imagenet-r`` and ``imagenet-a``.
    names : sequence of str, default=None
        Datasets to look for; None looks for all and returns those found.

    Returns
    -------
    folders : dict
        Dataset name to folder, in the order of ``names``.

    Raises
    ------
    FileNotFoundError
        If a dataset named in ``names`` is not found.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ImageNet root folder {str(root)!r} does not exist.")
    wanted = [_check_name(n) for n in names] if names is not None else list(_FOLDER_NAMES)
    found: dict[str, Path] = {}
    for name in wanted:
        folder = next((root / f for f in _FOLDER_NAMES[name] if (root / f).is_dir()), None)
        if folder is not None:
            found[name] = folder
        elif names is not None:
            candidates = [str(root / f) for f in _FOLDER_NAMES[name]]
            raise FileNotFoundError(f"{name}: none of the folders {candidates} exists.")
    return found
