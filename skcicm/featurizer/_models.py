"""Where CLIP weights come from: one entry point from a model name to a loaded open_clip model.

Accepted names, in the spirit of :func:`open_clip.create_model`:

- a name registered with skcicm, such as ``"toyclip"`` (weights shipped in the package);
- ``"local-dir:/path"``: a folder with ``open_clip_config.json`` and a checkpoint;
- ``"hf-hub:org/repo"``: a Hugging Face Hub repository (or its local cache when offline);
- an open_clip architecture (``open_clip.list_models()``) with ``pretrained`` set to one of its
  tags (``open_clip.list_pretrained_tags_by_model``), to a checkpoint file, or to ``"random"``.

``pretrained="random"`` gives the architecture's random initialisation, seeded so that every
process builds the same weights. Random weights are for benchmarks and tests (speed, memory,
plumbing): their embeddings mean nothing, and no result about CLIP-ICM should rest on them.

Loaded models are kept per process, so clones of a featurizer, and the tasks a worker process
runs, share one copy of the weights; a checkpoint that changes on disk is loaded again. The
fingerprint that keys cached embeddings names the weights by content (see
:mod:`skcicm.featurizer`), so a moved folder keeps its cache and changed weights never
reuse it, and each checkpoint is hashed once per machine rather than once per process.

Checkpoints are read as open_clip reads them: safetensors, or ``torch.load`` with
``weights_only=True``, which refuses pickles that would run code.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import logging
import os
import pickle
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.constants import HF_CONFIG_NAME, HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

from skcicm.featurizer._weight_digests import Stamp, file_digest, file_stamp

LOCAL_DIR_PREFIX = "local-dir:"
HF_HUB_PREFIX = "hf-hub:"
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
RANDOM_WEIGHTS = "random"
# Random weights are drawn from this seed, so that every process builds the same model.
RANDOM_WEIGHTS_SEED = 0

_load_lock = threading.Lock()
_registry: dict[str, Path] = {"toyclip": Path(__file__).parents[1] / "weights" / "toyclip"}


class UnknownModelError(ValueError):
    """The model name is neither registered, nor an open_clip architecture, nor a schema."""


class WeightsUnavailableError(OSError):
    """The weights exist in principle but cannot be found on this machine."""


class WeightsFileError(WeightsUnavailableError):
    """A checkpoint file exists but is damaged, not plain weights, or for another model."""


def register_model(name: str, local_dir: str | os.PathLike) -> None:
    """Make ``name`` resolve to a folder in open_clip's ``local-dir:`` layout.

    Parameters
    ----------
    name : str
        The model name to register, as :class:`~skcicm.CLIPFeaturizer` will be given it.
    local_dir : str or os.PathLike
        A folder with ``open_clip_config.json`` and a checkpoint (see :func:`save_local_dir`).

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
            "layout, as written by skcicm.featurizer._models.save_local_dir)."
        )
    _registry[name] = Path(local_dir)


def unregister_model(name: str) -> None:
    """Forget a name added with :func:`register_model`.

    Parameters
    ----------
    name : str
        The registered name; a name that is not registered is ignored.
    """
    _registry.pop(name, None)


def registered_models() -> list[str]:
    """Names registered with skcicm, such as ``"toyclip"``.

    Returns
    -------
    list of str
        The registered names, sorted.
    """
    return sorted(_registry)


def resolve_model_name(model_name: str, pretrained: str | None) -> tuple[str, str | None]:
    """Return the ``(model_name, pretrained)`` pair to hand to open_clip, or raise a clear error.

    ``pretrained`` is ignored for registered names and for the ``local-dir:`` and ``hf-hub:``
    schemas, whose weights are part of the name (as in open_clip). For an architecture,
    ``"random"`` (reserved: a checkpoint file of that name is ``"./random"``) asks for seeded
    random weights, for benchmarks and tests only; it is refused for the names that fix
    their weights.

    Parameters
    ----------
    model_name : str
        A registered name, ``"local-dir:/path"``, ``"hf-hub:org/repo"`` or an open_clip
        architecture.
    pretrained : str or None
        For an architecture: a pretrained tag, a checkpoint file or ``"random"``.

    Returns
    -------
    model_name : str
        The name open_clip takes (a registered name becomes ``"local-dir:..."``).
    pretrained : str or None
        The ``pretrained`` argument open_clip takes; None where the name fixes the weights.

    Raises
    ------
    skcicm.featurizer.UnknownModelError
        If the name is neither registered, nor a schema, nor an open_clip architecture.

    Examples
    --------
    >>> resolve_model_name("ViT-B-32", "random")
    ('ViT-B-32', 'random')
    """
    fixed_weights = model_name in _registry or model_name.startswith(
        (LOCAL_DIR_PREFIX, HF_HUB_PREFIX)
    )
    if fixed_weights and pretrained == RANDOM_WEIGHTS:
        # Asked for explicitly, never by default: say so rather than load trained weights.
        raise ValueError(
            f"pretrained={RANDOM_WEIGHTS!r} applies to open_clip architecture names only; "
            f"{model_name!r} comes with its own weights."
        )
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
            f"file ({RANDOM_WEIGHTS!r} gives seeded random weights, for benchmarks and tests "
            "only: they make no useful featurizer)."
        )
    if pretrained != RANDOM_WEIGHTS and pretrained not in tags and not os.path.isfile(pretrained):
        raise WeightsUnavailableError(
            f"pretrained={pretrained!r} is neither a tag of {model_name} ({tags}), nor an "
            f"existing checkpoint file, nor {RANDOM_WEIGHTS!r}."
        )
    return model_name, pretrained


@dataclass(frozen=True)
class LoadedCLIP:
    """An open_clip model in eval mode with its preprocessing and tokenizer.

    Parameters
    ----------
    model : torch.nn.Module
        The open_clip model, in eval mode.
    preprocess : callable
        open_clip's image preprocessing for the model (PIL image to tensor).
    tokenizer : callable
        open_clip's tokenizer for the model.
    fingerprint : str
        The model name and the content of its weights (:func:`model_fingerprint`); the cache
        keys embeddings by it.
    """

    model: torch.nn.Module
    preprocess: Any
    tokenizer: Any
    fingerprint: str


def load_clip(
    model_name: str,
    pretrained: str | None,
    device: str,
    weights_dir: str | os.PathLike | None = None,
) -> LoadedCLIP:
    """Load (once per process, model, device and weights version) an open_clip model.

    ``weights_dir`` is open_clip's ``cache_dir``: the folder where the weights of a pretrained
    tag or an ``hf-hub:`` repository are downloaded, and looked for first (None: open_clip's
    default, the Hugging Face cache or ``~/.cache/clip``). It plays no part in local-dir or
    checkpoint-file models.

    Parameters
    ----------
    model_name : str
        As :func:`resolve_model_name` takes it.
    pretrained : str or None
        As :func:`resolve_model_name` takes it.
    device : str
        The torch device to load the model on, such as ``"cpu"`` or ``"cuda"``.
    weights_dir : str or os.PathLike, default=None
        Where downloaded weights are kept (open_clip's ``cache_dir``).

    Returns
    -------
    LoadedCLIP
        The model with its preprocessing, tokenizer and fingerprint; the same object for
        every call with the same arguments while the weights are unchanged.

    Examples
    --------
    >>> clip = load_clip("toyclip", None, "cpu")
    >>> clip.model.training
    False
    """
    name, tag = resolve_model_name(model_name, pretrained)
    files = _weight_files(name, tag, weights_dir)
    stamps = tuple((str(path), file_stamp(path)) for path in files)
    folder = None if weights_dir is None else str(weights_dir)
    # Threads of one process (a Dask worker's, a thread pool's) wait for one load, not race.
    with _load_lock:
        return _load_resolved(name, tag, device, stamps, folder)


def model_fingerprint(
    model_name: str, pretrained: str | None, weights_dir: str | os.PathLike | None = None
) -> str:
    """Identify a model and the content of its weights, without loading it.

    Cheap after the first call on a machine (digests are remembered by file stamp), so a
    fitted estimator can check that the weights it was fitted with are still the ones on disk.
    Downloaded weights (a pretrained tag, ``hf-hub:``) are named by content once they are in
    the download cache (``weights_dir``, as in :func:`load_clip`); before their first
    download, by name.

    Parameters
    ----------
    model_name : str
        As :func:`resolve_model_name` takes it.
    pretrained : str or None
        As :func:`resolve_model_name` takes it.
    weights_dir : str or os.PathLike, default=None
        Where downloaded weights are kept, as in :func:`load_clip`.

    Returns
    -------
    str
        A string that changes whenever the model or its weights do.

    Examples
    --------
    >>> model_fingerprint("toyclip", None) == model_fingerprint("toyclip", "ignored")
    True
    """
    name, tag = resolve_model_name(model_name, pretrained)
    return _fingerprint(name, tag, _weight_files(name, tag, weights_dir))


def configured_embedding_dim(
    model_name: str, pretrained: str | None, weights_dir: str | os.PathLike | None = None
) -> int | None:
    """The model's embedding dimension as its configuration gives it, without loading weights.

    Read from the ``local-dir:`` folder's or the cached ``hf-hub:`` repository's
    ``open_clip_config.json``, or from open_clip's configuration of an architecture; None for
    an ``hf-hub:`` repository not downloaded yet.

    Parameters
    ----------
    model_name : str
        As :func:`resolve_model_name` takes it.
    pretrained : str or None
        As :func:`resolve_model_name` takes it.
    weights_dir : str or os.PathLike, default=None
        Where downloaded weights are kept, as in :func:`load_clip`.

    Returns
    -------
    int or None
        The embedding dimension, or None when the configuration is not on this machine.

    Examples
    --------
    >>> configured_embedding_dim("ViT-B-16", "random")
    512
    """
    name, _ = resolve_model_name(model_name, pretrained)
    if name.startswith(LOCAL_DIR_PREFIX):
        config_file = Path(name[len(LOCAL_DIR_PREFIX) :]) / CONFIG_FILE
    elif name.startswith(HF_HUB_PREFIX):
        cache = None if weights_dir is None else str(weights_dir)
        cached = _hub_cached(name[len(HF_HUB_PREFIX) :], [HF_CONFIG_NAME], cache)
        if not cached:
            return None
        config_file = cached[0]
    else:
        return int(open_clip.get_model_config(name)["embed_dim"])
    return int(json.loads(config_file.read_text())["model_cfg"]["embed_dim"])


@functools.lru_cache(maxsize=4)
def _load_resolved(
    name: str,
    tag: str | None,
    device: str,
    stamps: tuple[tuple[str, Stamp], ...],
    weights_dir: str | None,
) -> LoadedCLIP:
    # `stamps` (the weight files and their size, mtime...) keys the cache: a checkpoint
    # rewritten on disk is loaded again.
    files = [Path(path) for path, _ in stamps]
    # open_clip logs its own failure at ERROR level before raising; the error raised below says
    # it once, with what to do about it.
    previously_disabled = logging.root.manager.disable
    logging.disable(logging.ERROR)
    try:
        if tag == RANDOM_WEIGHTS:
            # open_clip initialises on the CPU before moving the model, so the seed fixes it.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_WEIGHTS_SEED)
                model, _, preprocess = open_clip.create_model_and_transforms(
                    name, pretrained=None, device=device
                )
        else:
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=tag, device=device, cache_dir=weights_dir
            )
    except Exception as error:  # noqa: BLE001 - each cause becomes one clear error below
        raise _load_error(name, tag, files, error) from error
    finally:
        logging.disable(previously_disabled)
    model.eval().requires_grad_(False)
    if not files:
        # Weights downloaded by this load are in the cache now: name them by content.
        files = _weight_files(name, tag, weights_dir)
    return LoadedCLIP(
        model=model,
        preprocess=preprocess,
        # The Hub config that names an hf-hub model's tokenizer is in the same download cache.
        tokenizer=open_clip.get_tokenizer(name, cache_dir=weights_dir),
        fingerprint=_fingerprint(name, tag, files),
    )


def _load_error(name: str, tag: str | None, files: list[Path], error: Exception) -> OSError:
    checkpoints = [path for path in files if path.name != CONFIG_FILE]
    cause = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    if checkpoints and not isinstance(error, FileNotFoundError):
        shown = ", ".join(str(path) for path in checkpoints)
        if isinstance(error, pickle.UnpicklingError):
            return WeightsFileError(
                f"Checkpoint {shown} is not a plain weights file: it holds Python objects that "
                "would run code when loaded, so it was refused (torch.load weights_only=True). "
                "Save the model's state_dict, or convert it to safetensors."
            )
        return WeightsFileError(
            f"Checkpoint {shown} is damaged (truncated or not a checkpoint file) or holds "
            f"weights of another architecture than {name!r}; replace it. ({cause})"
        )
    if isinstance(error, RuntimeError | FileNotFoundError):
        missing = WeightsUnavailableError(
            f"Could not load the weights of {name!r} (pretrained={tag!r}): {cause}. "
            "Without internet, supply them from disk: download once where there is a network "
            "(open_clip caches them under ~/.cache/huggingface, or in weights_dir when set; "
            "copy that folder here), or pass "
            "pretrained='/path/to/checkpoint.pt', or model_name='local-dir:/path/to/folder' "
            f"holding {CONFIG_FILE} and {WEIGHTS_FILE}."
        )
        # The command line rephrases the advice in its own options.
        missing.model_name, missing.pretrained, missing.cause = name, tag, cause
        return missing
    return WeightsFileError(f"Could not build {name!r} (pretrained={tag!r}): {cause}")


def _weight_files(
    name: str, tag: str | None, weights_dir: str | os.PathLike | None = None
) -> list[Path]:
    """The files whose content the model's weights come from (the chosen checkpoint, config)."""
    if name.startswith(LOCAL_DIR_PREFIX):
        folder = Path(name[len(LOCAL_DIR_PREFIX) :])
        # open_clip's own choice among several checkpoints in the folder.
        chosen = open_clip.factory._find_checkpoint_in_dir(folder)
        if chosen is None:
            # open_clip would go on with random weights; a featurizer must not.
            raise WeightsUnavailableError(
                f"Model folder {folder} holds no checkpoint (*.safetensors, *.bin or *.pth), "
                f"such as {WEIGHTS_FILE}."
            )
        return [Path(chosen), folder / CONFIG_FILE]
    if tag is not None and tag != RANDOM_WEIGHTS and os.path.isfile(tag):
        return [Path(tag)]
    return _downloaded_files(name, tag, weights_dir)


def _downloaded_files(
    name: str, tag: str | None, weights_dir: str | os.PathLike | None
) -> list[Path]:
    """The files open_clip loads for an ``hf-hub:`` repository or a pretrained tag, if cached.

    Found the way open_clip finds them (the Hub before a URL, safetensors first), in the
    download caches only, never over the network: empty before the first download. A
    repository that publishes new weights is downloaded into a new snapshot, so its content,
    and with it the fingerprint, changes.
    """
    cache = None if weights_dir is None else str(weights_dir)
    if name.startswith(HF_HUB_PREFIX):
        repository = name[len(HF_HUB_PREFIX) :]
        config = _hub_cached(repository, [HF_CONFIG_NAME], cache)
        return config + _hub_cached(repository, [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME], cache)
    if tag is None or tag == RANDOM_WEIGHTS:
        return []
    source = open_clip.get_pretrained_cfg(name, tag)
    if source.get("hf_hub") and open_clip.pretrained.has_hf_hub():
        repository, filename = os.path.split(source["hf_hub"])
        filename = filename or HF_WEIGHTS_NAME
        alternatives = list(open_clip.pretrained._get_safe_alternatives(filename))
        return _hub_cached(repository, [*alternatives, filename], cache)
    if source.get("url"):
        folder = Path(cache) if cache else Path.home() / ".cache" / "clip"
        downloaded = folder / os.path.basename(source["url"])
        return [downloaded] if downloaded.is_file() else []
    return []


def _hub_cached(repository: str, filenames: list[str], cache_dir: str | None) -> list[Path]:
    """The first of ``filenames`` in the local Hugging Face cache of ``repository``, if any."""
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        found = try_to_load_from_cache(repository, filename, cache_dir=cache_dir)
        if isinstance(found, str):
            return [Path(found)]
    return []


def _fingerprint(name: str, tag: str | None, files: list[Path]) -> str:
    """Identify model and weights, so that re-trained weights never hit stale cached embeddings.

    Weights on disk are named by content only, so the same checkpoint in another folder (or
    on another node of a cluster) shares its cached embeddings. Downloaded weights are named
    by their tag or repository and, once in the download cache, by content too.
    """
    if name.startswith(LOCAL_DIR_PREFIX):
        identity = "local-dir"
    elif tag is not None and tag != RANDOM_WEIGHTS and os.path.isfile(tag):
        identity = f"{name}|file"
    elif tag == RANDOM_WEIGHTS:
        # The initialisation code may change between versions, and with it the weights.
        identity = (
            f"{name}|random-seed{RANDOM_WEIGHTS_SEED}|open_clip-{open_clip.__version__}"
            f"|torch-{torch.__version__}"
        )
    else:
        identity = f"{name}|{tag}"
    digest = hashlib.sha1(identity.encode())
    for path in files:
        digest.update(f"|{path.name}:{file_digest(path)}".encode())
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

    Parameters
    ----------
    model : torch.nn.Module
        The open_clip model whose ``state_dict`` is saved.
    directory : str or os.PathLike
        The folder to write; created if needed.
    model_cfg : dict
        open_clip's model configuration (``embed_dim``, ``vision_cfg``, ``text_cfg``).
    preprocess_cfg : dict, default=None
        open_clip's preprocessing configuration (image size, mean, std); None keeps
        open_clip's defaults.
    dtype : torch.dtype, default=None
        Cast the weights to this type before saving; None keeps the model's.

    Returns
    -------
    pathlib.Path
        The folder, to load as ``f"local-dir:{path}"``.
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
