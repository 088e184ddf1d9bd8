"""Interventions on variant factors: image augmentations and text prompt pairs.

An image intervention changes style (colour, texture, contrast) while keeping the object, so
the embedding difference of an image and its intervened copy spans variant directions only.
A text intervention is a pair of prompts that differ only in a style or domain word.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

ImageTransform = Callable[[Image.Image], Any]


def paper_interventions() -> list[ImageTransform]:
    """The seven augmentations the CLIP-ICM authors draw from, one per intervened copy.

    Strengths (the authors do not publish theirs): ``ColorJitter(0.4, 0.4, 0.4, 0.1)``,
    ``Grayscale(3)``, ``GaussianBlur(9, sigma=(0.1, 2.0))``, ``RandomInvert(p=1)``,
    ``RandomPosterize(bits=2, p=1)``, ``RandomSolarize(threshold=128, p=1)`` and
    ``RandomEqualize(p=1)``. The random ones are applied with probability 1, since an
    intervention that leaves the image unchanged gives a zero Delta.

    Examples
    --------
    >>> [type(t).__name__ for t in paper_interventions()][:3]
    ['ColorJitter', 'Grayscale', 'GaussianBlur']
    """
    return [
        v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),
        v2.Grayscale(num_output_channels=3),
        v2.GaussianBlur(kernel_size=9, sigma=(0.1, 2.0)),
        v2.RandomInvert(p=1.0),
        v2.RandomPosterize(bits=2, p=1.0),
        v2.RandomSolarize(threshold=128, p=1.0),
        v2.RandomEqualize(p=1.0),
    ]


class ImageInterventions:
    """Draw one transform per (image, view) and apply it, reproducibly.

    The draw and the transform's own randomness are seeded from ``random_state``, the image's
    content key and the view index, so an image gets the same intervened copy in any batch,
    fold or order: a requirement for caching its embedding.

    Examples
    --------
    >>> from PIL import Image
    >>> interventions = ImageInterventions(paper_interventions(), random_state=0)
    >>> image = Image.new("RGB", (8, 8), (200, 30, 30))
    >>> a = interventions.apply(image, key="abc", view=0)
    >>> b = interventions.apply(image, key="abc", view=0)
    >>> a.tobytes() == b.tobytes()
    True
    """

    # torchvision's random transforms read torch's global generator; the lock keeps a seed
    # and the draws made under it together when decoding threads run in parallel.
    _global_rng_lock = threading.Lock()

    def __init__(self, transforms: Sequence[ImageTransform], random_state: int) -> None:
        if len(transforms) == 0:
            raise ValueError("interventions must hold at least one transform.")
        for transform in transforms:
            if not callable(transform):
                raise TypeError(
                    f"Each intervention must be a callable on PIL images; got {transform!r}."
                )
        self.transforms = list(transforms)
        self.random_state = random_state
        self.fingerprint = hashlib.sha1(
            (repr(self.transforms) + f"|{random_state}").encode()
        ).hexdigest()[:16]

    def apply(self, image: Image.Image, *, key: str, view: int) -> Image.Image:
        seed = int.from_bytes(
            hashlib.sha1(f"{self.random_state}|{key}|{view}".encode()).digest()[:8], "little"
        )
        rng = np.random.default_rng(seed)
        transform = self.transforms[rng.integers(len(self.transforms))]
        with self._global_rng_lock, torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(2**63)))
            result = transform(image)
        if isinstance(result, torch.Tensor):
            result = v2.functional.to_pil_image(result)
        if not isinstance(result, Image.Image):
            raise TypeError(
                f"Intervention {transform!r} returned {type(result).__name__}; it must return a "
                "PIL image or an image tensor."
            )
        return result.convert("RGB")


def expand_prompt_pairs(
    pairs: Sequence[tuple[str, str]], class_names: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """Expand template pairs such as ``("a photo of a {}.", "a sketch of a {}.")`` per class.

    Pairs without ``{}`` are literal captions and are used once.

    Examples
    --------
    >>> expand_prompt_pairs([("a photo of a {}.", "a sketch of a {}.")], ["dog", "cat"])
    (['a photo of a dog.', 'a photo of a cat.'], ['a sketch of a dog.', 'a sketch of a cat.'])
    """
    first: list[str] = []
    second: list[str] = []
    for pair in pairs:
        if len(pair) != 2 or not all(isinstance(text, str) for text in pair):
            raise ValueError(f"Each text intervention must be a pair of strings; got {pair!r}.")
        template_a, template_b = pair
        if "{}" in template_a or "{}" in template_b:
            if not class_names:
                raise ValueError(
                    f"Text intervention {pair!r} has a '{{}}' placeholder for the class name, "
                    "but no class_names were given."
                )
            first.extend(template_a.format(name) for name in class_names)
            second.extend(template_b.format(name) for name in class_names)
        else:
            first.append(template_a)
            second.append(template_b)
    return first, second


def style_prompt_pairs(
    styles: Sequence[str], template: str = "a {style} of a {{}}."
) -> list[tuple[str, str]]:
    """All pairs of prompts that differ only in the style word, for :class:`CLIPFeaturizer`.

    Examples
    --------
    >>> style_prompt_pairs(["photo", "sketch", "cartoon"])
    [('a photo of a {}.', 'a sketch of a {}.'), ('a photo of a {}.', 'a cartoon of a {}.'), \
('a sketch of a {}.', 'a cartoon of a {}.')]
    """
    prompts = [template.format(style=style) for style in styles]
    return [
        (prompts[i], prompts[j]) for i in range(len(prompts)) for j in range(i + 1, len(prompts))
    ]
