"""Image interventions on variant factors: augmentations drawn per image and view.

An image intervention changes style (colour, texture, contrast) while keeping the object, so
the embedding difference of an image and its intervened copy spans variant directions only.
Text interventions, prompt pairs, live in :mod:`skcicm.prompts`.
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
from torchvision.transforms.v2._transform import _RandomApplyTransform

ImageTransform = Callable[[Image.Image], Any]


class InterventionError(RuntimeError):
    """An intervention raised or returned no image: a fault of the transform, not of the file.

    It stops the run, chained to the transform's own error, rather than being reported as an
    image that could not be read.
    """


def paper_interventions() -> list[ImageTransform]:
    """The seven augmentations the CLIP-ICM authors draw from, one per intervened copy.

    Strengths (the authors do not publish theirs): ``ColorJitter(0.4, 0.4, 0.4, 0.1)``,
    ``Grayscale(3)``, ``GaussianBlur(9, sigma=(0.1, 2.0))``, ``RandomInvert(p=1)``,
    ``RandomPosterize(bits=2, p=1)``, ``RandomSolarize(threshold=128, p=1)`` and
    ``RandomEqualize(p=1)``. The random ones are applied with probability 1, since an
    intervention that leaves the image unchanged gives a zero Delta.

    Returns
    -------
    list of callable
        The seven torchvision transforms, each from a PIL image to a PIL image.

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
    """Draw one transform per (image, view) and apply it, reproducibly and in parallel.

    The draw and the transform's own randomness are seeded from ``random_state``, the image's
    content key and the view index, so an image gets the same intervened copy in any batch,
    fold, order or number of threads: a requirement for caching its embedding.

    torchvision's random transforms read torch's global generator. For a torchvision ``v2``
    transform that keeps the standard ``forward`` (the paper's seven all do), only the draw of
    its parameters, a few microseconds, runs under a process-wide lock with the seeded
    generator; the pixel work runs outside it, so decoding threads do not wait on each other.
    Any other callable runs whole under that lock, seeded the same way.

    Parameters
    ----------
    transforms : sequence of callable
        The interventions to draw from, each from a PIL image to a PIL image or an image
        tensor.
    random_state : int
        Seeds the draw and the transforms, with the image's key and the view index.

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

    # Keeps a seed and the draws made under it together when threads run in parallel.
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

    def apply(self, image: Image.Image, *, key: str, view: int) -> Image.Image:
        """Intervene on ``image``: the same transform and randomness for the same key and view.

        Parameters
        ----------
        image : PIL.Image.Image
            The image to change.
        key : str
            The image's content key (a digest of its bytes, as the featurizer computes it).
        view : int
            Which intervened copy of the image this is.

        Returns
        -------
        PIL.Image.Image
            The intervened image.
        """
        seed = int.from_bytes(
            hashlib.sha1(f"{self.random_state}|{key}|{view}".encode()).digest()[:8], "little"
        )
        rng = np.random.default_rng(seed)
        transform = self.transforms[rng.integers(len(self.transforms))]
        try:
            result = _seeded_call(transform, image, int(rng.integers(2**63)))
            if isinstance(result, torch.Tensor):
                result = v2.functional.to_pil_image(result)
        except Exception as error:
            raise InterventionError(
                f"Intervention {transform!r} raised {type(error).__name__}: "
                f"{str(error) or '(no message)'}"
            ) from error
        if not isinstance(result, Image.Image):
            raise InterventionError(
                f"Intervention {transform!r} returned {type(result).__name__}; it must return a "
                "PIL image or an image tensor."
            )
        return result.convert("RGB")


_STANDARD_FORWARDS = (v2.Transform.forward, _RandomApplyTransform.forward)


def _seed_cpu_generator(seed: int) -> None:
    # Not torch.manual_seed: that also queues a lazy seeding of every CUDA device, recording a
    # stack trace each time, which costs milliseconds. The transforms draw on the CPU only.
    torch.default_generator.manual_seed(seed)


def _seeded_call(transform: ImageTransform, image: Image.Image, seed: int) -> Any:
    """``transform(image)`` with torch's generator seeded; draws the same numbers as that call."""
    lock = ImageInterventions._global_rng_lock
    if not (isinstance(transform, v2.Transform) and type(transform).forward in _STANDARD_FORWARDS):
        with lock, torch.random.fork_rng(devices=[]):
            _seed_cpu_generator(seed)
            return transform(image)
    # The same draws, in the same order, as v2.Transform.forward and _RandomApplyTransform.forward.
    make_params = getattr(transform, "make_params", None) or transform._get_params
    apply = getattr(transform, "transform", None) or transform._transform
    (getattr(transform, "check_inputs", None) or transform._check_inputs)([image])
    with lock, torch.random.fork_rng(devices=[]):
        _seed_cpu_generator(seed)
        skipped = isinstance(transform, _RandomApplyTransform) and bool(
            torch.rand(1) >= transform.p
        )
        params = None if skipped else make_params([image])
    return image if skipped else apply(image, params)
