"""Where CLIP weights come from: one entry point from a model name to a loaded open_clip model.

Accepted names, in the spirit of :func:`open_clip.create_model`:

- a name registered with skcicm, such as ``"toyclip"`` (weights shipped in the package);
- ``"local-dir:/path"``: a folder with ``open_clip_config.json`` and a checkpoint;
- ``"hf-hub:org/repo"``: a Hugging Face Hub repository (or its local cache when offline);
- an open_clip architecture (``open_clip.list_models()``) with ``pretrained`` set to one of its
  tags (``open_clip.list_pretrained_tags_by_model``) or to a checkpoint file.

Loaded models are kept per process, so clones of a featurizer share one copy of the weights.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch

LOCAL_DIR_PREFIX = "local-dir:"
HF_HUB_PREFIX = "hf-hub:"
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"

_registry: dict[str, Path] = {"toyclip": Path(__file__).parent / "weights" / "toyclip"}


class UnknownModelError(ValueError):
    """The model name is neither registered, nor an open_clip architecture, nor a schema."""


class WeightsUnavailableError(OSError):
    """The weights exist in principle but cannot be found on this machine."""


def register_model(name: str, local_dir: str | os.PathLike) -> None:
    """Make ``name`` resolve to a folder in open_clip's ``local-dir:`` layout.

    Examples
    --------
    >>> from pathlib import Path
    >>> import skcicm
    >>> folder = Path(skcicm.__file__).parent / "weights" / "toyclip"
    >>> register_model("my-clip", folder)
    >>> resolve_model_name("my-clip", None) == (f"local-dir:{folder}", None)
    True
    >>> unregister_model("my-clip")
    """
    if not (Path(local_dir) / CONFIG_FILE).is_file():
        raise WeightsUnavailableError(
            f"Cannot register {name!r}: {local_dir} has no {CONFIG_FILE} (open_clip's local-dir "
            "layout, as written by skcicm.models.save_local_dir)."
        )
    _registry[name] = Path(local_dir)


def unregister_model(name: str) -> None:
    """Forget a name added with :func:`register_model`."""
    _registry.pop(name, None)


def registered_models() -> list[str]:
    """Names registered with skcicm, such as ``"toyclip"``."""
    return sorted(_registry)


def resolve_model_name(model_name: str, pretrained: str | None) -> tuple[str, str | None]:
    """Return the ``(model_name, pretrained)`` pair to hand to open_clip, or raise a clear error.

    ``pretrained`` is ignored for registered names and for the ``local-dir:`` and ``hf-hub:``
    schemas, whose weights are part of the name (as in open_clip).
    """
    if model_name in _registry:
        model_name = LOCAL_DIR_PREFIX + str(_registry[model_name])
    if model_name.startswith(LOCAL_DIR_PREFIX):
        folder = Path(model_name[len(LOCAL_DIR_PREFIX) :])
        if not (folder / CONFIG_FILE).is_file():
            raise WeightsUnavailableError(
                f"Model folder {folder} has no {CONFIG_FILE}; a local-dir: model needs that file "
                f"(with 'model_cfg' and 'preprocess_cfg') and a checkpoint such as {WEIGHTS_FILE}."
            )
        return model_name, None
    if model_name.startswith(HF_HUB_PREFIX):
        return model_name, None
    architectures = open_clip.list_models()
    if model_name not in architectures:
        close = difflib.get_close_matches(model_name, architectures + registered_models(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"Unknown model_name {model_name!r}.{hint} Use an open_clip architecture "
            f"(open_clip.list_models()), one of skcicm's {registered_models()}, "
            "'local-dir:/path' or 'hf-hub:org/repo'."
        )
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if pretrained is None:
        raise ValueError(
            f"model_name={model_name!r} needs pretrained: one of its tags {tags} or a checkpoint "
            "file. Randomly initialised weights make no featurizer."
        )
    if pretrained not in tags and not os.path.isfile(pretrained):
        raise WeightsUnavailableError(
            f"pretrained={pretrained!r} is neither a tag of {model_name} ({tags}) nor an existing "
            "checkpoint file."
        )
    return model_name, pretrained


@dataclass(frozen=True)
class LoadedCLIP:
    """An open_clip model in eval mode with its preprocessing and tokenizer."""

    model: torch.nn.Module
    preprocess: Any
    tokenizer: Any
    fingerprint: str


def load_clip(model_name: str, pretrained: str | None, device: str) -> LoadedCLIP:
    """Load (once per process, model and device) an open_clip model ready for inference."""
    name, tag = resolve_model_name(model_name, pretrained)
    return _load_resolved(name, tag, device)


@functools.lru_cache(maxsize=4)
def _load_resolved(name: str, tag: str | None, device: str) -> LoadedCLIP:
    # open_clip logs its own failure at ERROR level before raising; the error raised below says
    # it once, with what to do about it.
    previously_disabled = logging.root.manager.disable
    logging.disable(logging.ERROR)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=tag, device=device
        )
    except (RuntimeError, FileNotFoundError) as error:
        raise WeightsUnavailableError(
            f"Could not load the weights of {name!r} (pretrained={tag!r}): {error}\n"
            "Without internet, supply them from disk: download once where there is a network "
            "(open_clip caches them under ~/.cache/huggingface; copy that cache here), or pass "
            "pretrained='/path/to/checkpoint.pt', or model_name='local-dir:/path/to/folder' "
            f"holding {CONFIG_FILE} and {WEIGHTS_FILE}."
        ) from error
    finally:
        logging.disable(previously_disabled)
    model.eval().requires_grad_(False)
    return LoadedCLIP(
        model=model,
        preprocess=preprocess,
        tokenizer=open_clip.get_tokenizer(name),
        fingerprint=_fingerprint(name, tag),
    )


def _fingerprint(name: str, tag: str | None) -> str:
    """Identify model and weights, so that re-trained weights never hit stale cached embeddings."""
    digest = hashlib.sha1(f"{name}|{tag}".encode())
    weight_files: list[Path] = []
    if name.startswith(LOCAL_DIR_PREFIX):
        folder = Path(name[len(LOCAL_DIR_PREFIX) :])
        weight_files = sorted(
            path
            for pattern in ("*.safetensors", "*.bin", "*.pt", "*.pth")
            for path in folder.glob(pattern)
        ) + [folder / CONFIG_FILE]
    elif tag is not None and os.path.isfile(tag):
        weight_files = [Path(tag)]
    for path in weight_files:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:20]


def save_local_dir(
    model: torch.nn.Module,
    directory: str | os.PathLike,
    model_cfg: dict[str, Any],
    preprocess_cfg: dict[str, Any] | None = None,
    *,
    dtype: torch.dtype | None = None,
) -> Path:
    """Save an open_clip model in the ``local-dir:`` layout that :func:`load_clip` reads.

    ``dtype=torch.float16`` halves the file; open_clip casts the weights back on load.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg or {}}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    state = {
        key: (value.to(dtype) if dtype is not None and value.is_floating_point() else value)
        .detach()
        .cpu()
        .contiguous()
        for key, value in model.state_dict().items()
    }
    save_file(state, str(directory / WEIGHTS_FILE))
    return directory
