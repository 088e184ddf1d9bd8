"""Helpers for the evaluation tests: a tiny DomainBed-layout folder of generated images."""

from pathlib import Path

import numpy as np
from PIL import Image

PALETTE = ((150, 40, 40), (40, 150, 40), (40, 40, 150), (150, 150, 40), (40, 150, 150))
CLASSES = ("cat", "dog", "hot_dog", "owl")


def write_image_folder(
    directory, *, domains=("art", "photo", "sketch"), classes=CLASSES, n_per_cell=5, seed=0
) -> Path:
    """Write ``<directory>/<domain>/<class>/<i>.png``: 32x32 images, class = square position.

    Returns ``directory``.
    """
    directory = Path(directory)
    rng = np.random.default_rng(seed)
    for domain in domains:
        # The tint depends on the domain name only, so domains written separately agree.
        tint = np.array(PALETTE[sum(map(ord, domain)) % len(PALETTE)])
        for label, class_name in enumerate(classes):
            folder = directory / domain / class_name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n_per_cell):
                pixels = np.clip(tint + rng.normal(0, 15, (32, 32, 3)), 0, 255)
                row = 2 + 7 * label
                column = rng.integers(2, 22)
                pixels[row : row + 6, column : column + 8] = 250
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:03d}.png")
    return directory
