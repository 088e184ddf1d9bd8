"""Decoding JPEG files on the GPU (nvJPEG), for ``CLIPFeaturizer(decode_device="cuda")``.

On a fast GPU the CPU cores that decode JPEG files are often what limits the images per
second. With ``decode_device="cuda"`` the decoding threads hand each JPEG file's bytes (already
read and hashed for the cache) to ``torchvision.io.decode_jpeg(device="cuda")`` and run the
model's preprocessing on the decoded tensor, on the GPU; the clean view never comes back to the
CPU. Intervened copies are made on the CPU, by the same PIL augmentations as always, from the
GPU-decoded pixels copied back. Files of other formats, and the rare JPEG that nvJPEG cannot
decode (CMYK, for one), are decoded by PIL, file by file: a choice made by the file's content,
so that a file always gets the same decoder. So are JPEG files with an EXIF orientation other
than the default, since nvJPEG cannot apply it and PIL does (see
``ImageSource.decode`` in ``_images.py``). A file's size is checked from its header first, as on
the CPU.

nvJPEG's pixels and the tensor version of the preprocessing differ slightly from libjpeg and
PIL's, so the embeddings agree with ``decode_device="cpu"`` closely but not bit for bit; the
featurizer caches them apart (see :meth:`skcicm.CLIPFeaturizer`).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import torch
from PIL import Image, UnidentifiedImageError
from torchvision import transforms as transforms_v1
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import v2

from skcicm.featurizer._images import ImageSource, check_image_size

JPEG_MAGIC = b"\xff\xd8\xff"
_EXIF_ORIENTATION = 0x0112

# Steps that work on an image tensor as they do on a PIL image.
_TENSOR_STEPS = (
    transforms_v1.Resize,
    transforms_v1.CenterCrop,
    transforms_v1.Normalize,
    v2.Resize,
    v2.CenterCrop,
    v2.Normalize,
)
# Steps that only make a PIL image RGB or turn it into a float tensor (open_clip's own among them).
_TO_RGB_NAMES = {"_convert_to_rgb", "MaybeConvertMode"}
_TO_TENSOR_NAMES = {"ToTensor", "MaybeToTensor", "PILToTensor"}


def tensor_preprocessing(
    preprocess: Callable[[Image.Image], torch.Tensor],
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's PIL preprocessing, translated to run on a decoded uint8 RGB tensor.

    Parameters
    ----------
    preprocess : torchvision Compose
        The model's preprocessing: resizes and crops, conversion to RGB and to a tensor,
        normalisation.

    Returns
    -------
    callable
        From a (3, H, W) uint8 tensor, on any device, to the model's input tensor.

    Raises
    ------
    ValueError
        Naming the first step that has no tensor equivalent.
    """
    steps: list[Callable] = []
    for step in getattr(preprocess, "transforms", [preprocess]):
        name = getattr(step, "__name__", type(step).__name__)
        if isinstance(step, _TENSOR_STEPS):
            steps.append(step)
        elif name in _TO_TENSOR_NAMES:
            steps.append(v2.ToDtype(torch.float32, scale=True))
        elif name not in _TO_RGB_NAMES:
            raise ValueError(
                f"decode_device='cuda' runs the model's preprocessing on decoded tensors, and "
                f"its step {step!r} has no tensor equivalent; use decode_device='cpu'."
            )
    return transforms_v1.Compose(steps)


class JPEGDecoder:
    """Decode JPEG files on ``device`` and preprocess them there; see the module.

    Parameters
    ----------
    preprocess : callable
        The model's PIL preprocessing, translated by :func:`tensor_preprocessing`.
    device : torch.device
        Where to decode and preprocess: the model's GPU (the CPU in tests).
    """

    def __init__(
        self, preprocess: Callable[[Image.Image], torch.Tensor], device: torch.device
    ) -> None:
        self.preprocess = tensor_preprocessing(preprocess)
        self.device = device

    def decode(self, source: ImageSource) -> torch.Tensor | None:
        """The (3, H, W) uint8 RGB pixels of a JPEG file, on the device.

        Parameters
        ----------
        source : ImageSource
            The image; its bytes are read if they were not.

        Returns
        -------
        Tensor or None
            None for an image that is not a JPEG file, or that nvJPEG cannot decode: PIL
            decodes those.
        """
        data = source.file_bytes()
        if data is None or not data.startswith(JPEG_MAGIC):
            return None
        try:
            with Image.open(io.BytesIO(data)) as header:  # reads the header, not the pixels
                check_image_size(*header.size)
                # nvJPEG cannot apply an EXIF orientation: PIL decodes a rotated file.
                if header.getexif().get(_EXIF_ORIENTATION, 1) != 1:
                    return None
        except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError):
            return None  # PIL names the problem when it decodes the file
        encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        try:
            return decode_jpeg(encoded, mode=ImageReadMode.RGB, device=self.device)
        except RuntimeError:
            return None
