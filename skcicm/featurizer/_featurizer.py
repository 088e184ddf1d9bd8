"""CLIPFeaturizer: images in, CLIP embeddings (and their interventional copies) out."""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import os
import sys
from collections.abc import Callable, Sequence
from numbers import Integral
from typing import Any

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils._param_validation import Interval, StrOptions

from skcicm.featurizer._gpu_decoding import JPEGDecoder
from skcicm.featurizer._image_encoding import ImageEncoder
from skcicm.featurizer._images import as_image_list
from skcicm.featurizer._interventions import ImageInterventions, paper_interventions
from skcicm.featurizer._models import LoadedCLIP, load_clip
from skcicm.featurizer.cache._keys import check_weights_unchanged, interventions_cache_id
from skcicm.featurizer.cache._memory import EmbeddingCache
from skcicm.icm._estimator import DOC_LINK_TEMPLATE
from skcicm.icm._fit_context import EmbeddingsWithContext
from skcicm.icm._subspace import unit_rows
from skcicm.prompts import check_class_templates, class_prompt_names, expand_prompt_pairs

DEFAULT_TEMPLATES = ("a photo of a {}.",)
# (model fingerprint, class names, templates) whose prompts the tokenizer tells apart.
_DISTINCT_PROMPTS: set[tuple] = set()


class CLIPFeaturizer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Encode images with an open_clip model, with interventional copies for CLIP-ICM.

    In ``Pipeline([("clip", CLIPFeaturizer()), ("icm", InvariantCausalMechanism())])``,
    ``fit`` encodes each training image and ``n_interventions`` intervened copies of it, and
    hands both (plus text prompt pairs and class embeddings, when configured) to the
    estimator; ``predict`` encodes the clean images only. Every embedding is cached by model
    and image content, so GridSearchCV encodes each unique image once.

    Read more in the :ref:`User Guide <user_guide_interventions>`.

    Parameters
    ----------
    model_name : str, default="ViT-B-16"
        An open_clip architecture, a name registered with skcicm (``"toyclip"``),
        ``"local-dir:/path"`` or ``"hf-hub:org/repo"``; see :mod:`skcicm.featurizer`. Weights
        load on first use and are shared by every featurizer of the process.
    pretrained : str or None, default="openai"
        open_clip tag or checkpoint file for an architecture name; ignored for registered
        names and the ``local-dir:``/``hf-hub:`` schemas, whose weights the name fixes.
    normalize : bool, default=True
        L2-normalise embeddings. False gives raw embeddings, as the authors' script uses.
    interventions : "paper", list of callables, or None, default="paper"
        Image interventions: ``"paper"`` draws from the seven augmentations of
        :func:`skcicm.featurizer.paper_interventions`; a list draws from those transforms
        (torchvision transforms or any callable from PIL image to PIL image or tensor); None
        computes no intervened copies. Images larger than the model's input are first
        resized by the model's own first preprocessing step (e.g. shorter side to 224 px),
        then intervened on, so that an augmentation costs the same for any file size; the
        clean embedding is unchanged by this. torchvision ``v2`` transforms run in parallel
        threads; other callables are seeded through torch's global generator and so run one
        at a time (see :class:`skcicm.featurizer.ImageInterventions`). Intervened copies
        are cached only when every transform has a stable key: torchvision transforms
        (except ``Lambda``) by their ``repr``, which holds their parameters, and any callable
        by its ``cache_key`` string attribute, which must change whenever its behaviour
        does. Other callables (functions, lambdas, closures) are recomputed on every call,
        with an ``UncachedInterventionWarning``; see :mod:`skcicm.featurizer.cache`.
    n_interventions : int, default=1
        Intervened copies per training image, each with its own randomly drawn transform.
    text_interventions : list of (str, str) or None, default=None
        Prompt pairs that differ only in style or domain words, e.g.
        ``("a photo of a {}.", "a sketch of a {}.")``; ``{}`` is filled with each class name.
        See :func:`skcicm.prompts.style_prompt_pairs`.
    class_names : list of str, dict, or None, default=None
        Class names for zero-shot prompts: a list (label ``i`` is ``class_names[i]``) or a
        dict from label to name. When set, ``fit`` hands the estimator the class embeddings.
    templates : list of str or None, default=None
        Prompt templates with ``{}`` for the class name, ensembled by averaging their unit
        embeddings; None means ``["a photo of a {}."]``.
    device : str, default="auto"
        ``"auto"`` uses CUDA when available, else the CPU; or ``"cpu"``, ``"cuda"``,
        ``"cuda:<index>"``. Anything else is an error when the model loads.
    precision : {"auto", "fp32", "amp", "amp_bf16"}, default="auto"
        ``"amp"``/``"amp_bf16"`` run the model under float16/bfloat16 autocast; ``"auto"``
        means bfloat16 autocast on GPUs that support it, float16 on other GPUs, fp32 on CPU.
    batch_size : int, default=64
        Images per forward pass.
    num_workers : int, default=2
        Workers that read, decode, intervene on and preprocess images while the model encodes
        earlier batches; 0 does it all in the calling thread. Files are read, hashed and
        decoded a bounded window at a time, and decoding runs ahead of the model by a bounded
        amount (see :mod:`skcicm.featurizer`), so memory does not grow with the number of
        images beyond the output; a file's content key is
        remembered by path, size, modification time and inode, so a transform whose
        embeddings are cached reads no file.
    worker_type : {"threads", "processes"}, default="threads"
        What the ``num_workers`` workers are. ``"threads"`` decode in this process. With
        ``"processes"``, ``num_workers`` ``torch.utils.data.DataLoader`` worker processes
        decode, intervene on, preprocess and stack each batch, in pinned memory when the
        model is on a GPU, so that decoding is not held back by the interpreter lock; this
        process still reads and hashes the files (with ``num_workers`` threads) and looks
        them up, so that only cache misses reach the workers, each file is read once, and
        the embeddings are bit for bit those of ``"threads"`` for the same batches (see
        :mod:`skcicm.featurizer`). Workers start with each call that has a cache miss,
        by the process's multiprocessing start method: with ``spawn`` or ``forkserver``
        the interventions must be picklable (no lambdas); a daemonic process (a Dask
        worker) cannot start them and is told so. Threads are the default because they
        work everywhere and cost nothing to start, which matters for the many small calls of
        a grid search; processes pay off on large cold runs where decoding, not the model,
        limits the throughput, as with a GPU (figures on the performance page). On a
        CPU-only machine keep ``torch.get_num_threads()`` plus ``num_workers`` at or below
        the core count.
    decode_device : {"cpu", "cuda"}, default="cpu"
        Where JPEG files are decoded. ``"cuda"`` decodes them with nvJPEG
        (``torchvision.io.decode_jpeg``) on the model's GPU and preprocesses their clean
        view there; intervened copies are made on the CPU from those pixels, and other
        formats are decoded by PIL (see :mod:`skcicm.featurizer`). It needs
        ``device`` to be a CUDA device and ``worker_type="threads"`` (CUDA does not
        survive a fork into worker processes), else ``fit`` raises before any work. nvJPEG
        and the tensor preprocessing differ slightly from PIL, so these embeddings are
        cached apart from those of ``"cpu"``.
    cache_dir : str or path, "auto" or None, default="auto"
        Folder for the on-disk cache of *embeddings* (not of model weights: open_clip's
        ``cache_dir`` is this featurizer's ``weights_dir``): one checksummed SQLite database
        per model, written batch by batch so that an interrupted run resumes, and shared safely by
        processes (``GridSearchCV(n_jobs=...)`` workers, Dask workers) and later runs.
        ``"auto"`` uses ``$SKCICM_CACHE_DIR`` or else ``~/.cache/skcicm/embeddings``
        (``$XDG_CACHE_HOME`` is honoured); None keeps embeddings in this process's memory
        only; ``""`` is refused (write ``"."`` for the current folder). Damaged entries
        are reported, discarded and re-encoded; a read-only folder still serves its
        embeddings. The in-memory cache of the process (an LRU bounded to 1 GiB by default)
        is always used; see :mod:`skcicm.featurizer.cache`.
    weights_dir : str or path or None, default=None
        Folder where open_clip downloads the *model weights* of a pretrained tag, and looks
        for them first: passed as open_clip's own ``cache_dir``. None means open_clip's
        default (the Hugging Face cache, ``~/.cache/huggingface``, or ``~/.cache/clip`` for
        weights served by URL). A folder copied from a machine with internet lets an offline
        one load the same tag. Unused for ``local-dir:``, ``hf-hub:`` and checkpoint files.
    progress : bool or "auto", default="auto"
        Show a tqdm progress bar; ``"auto"`` shows it when stderr is a terminal.
    random_state : int, default=0
        Seeds the interventions. Each image's copies depend only on this seed and the image's
        content, never on batch, order or fold, which is what makes caching them sound.

    Attributes
    ----------
    embedding_dim_ : int
        Dimension of the embeddings (set by ``fit``; ``transform`` works without fit).
    model_fingerprint_ : str
        Identifies the weights the featurizer was fitted with. Once fitted, it refuses to embed
        with other weights (``ModelWeightsChangedError``), e.g. when the checkpoint of a
        ``local-dir:`` model was replaced after the fitted pipeline was pickled.

    See Also
    --------
    skcicm.InvariantCausalMechanism : Learns the invariant subspace from these embeddings.
    skcicm.featurizer.encode_images_dask : The same embeddings computed on a Dask cluster.

    References
    ----------
    .. [1] Song et al., "Learning Invariant Causal Mechanism from Vision-Language Models",
       ICML 2025. https://arxiv.org/abs/2405.15289

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import Pipeline
    >>> from skcicm import CLIPFeaturizer, InvariantCausalMechanism
    >>> from skcicm.datasets import make_toyworld
    >>> world = make_toyworld(n_per_cell=2, domains=["photo", "sketch"], random_state=0)
    >>> pipe = Pipeline([
    ...     ("clip", CLIPFeaturizer("toyclip", pretrained=None, progress=False)),
    ...     ("icm", InvariantCausalMechanism(n_components=32, lam=1.0)),
    ... ])
    >>> pipe.fit(world.images, world.labels).predict(world.images[:3]).shape
    (3,)
    """

    _doc_link_module = "skcicm"
    _doc_link_template = DOC_LINK_TEMPLATE

    _parameter_constraints: dict = {
        "model_name": [str],
        "pretrained": [str, None],
        "normalize": ["boolean"],
        "interventions": [StrOptions({"paper"}), list, tuple, None],
        "n_interventions": [Interval(Integral, 1, None, closed="left")],
        "text_interventions": [list, tuple, None],
        "class_names": [list, tuple, dict, None],
        "templates": [list, tuple, None],
        "device": [str],
        "precision": [StrOptions({"auto", "fp32", "amp", "amp_bf16"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "num_workers": [Interval(Integral, 0, None, closed="left")],
        "worker_type": [StrOptions({"threads", "processes"})],
        "decode_device": [StrOptions({"cpu", "cuda"})],
        "cache_dir": [str, os.PathLike, None],
        "weights_dir": [str, os.PathLike, None],
        "progress": ["boolean", StrOptions({"auto"})],
        "random_state": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(
        self,
        model_name: str = "ViT-B-16",
        pretrained: str | None = "openai",
        *,
        normalize: bool = True,
        interventions: str | Sequence[Callable] | None = "paper",
        n_interventions: int = 1,
        text_interventions: Sequence[tuple[str, str]] | None = None,
        class_names: Sequence[str] | dict | None = None,
        templates: Sequence[str] | None = None,
        device: str = "auto",
        precision: str = "auto",
        batch_size: int = 64,
        num_workers: int = 2,
        worker_type: str = "threads",
        decode_device: str = "cpu",
        cache_dir: str | os.PathLike | None = "auto",
        weights_dir: str | os.PathLike | None = None,
        progress: bool | str = "auto",
        random_state: int = 0,
    ) -> None:
        self.model_name = model_name
        self.pretrained = pretrained
        self.normalize = normalize
        self.interventions = interventions
        self.n_interventions = n_interventions
        self.text_interventions = text_interventions
        self.class_names = class_names
        self.templates = templates
        self.device = device
        self.precision = precision
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.worker_type = worker_type
        self.decode_device = decode_device
        self.cache_dir = cache_dir
        self.weights_dir = weights_dir
        self.progress = progress
        self.random_state = random_state

    def _validate_params(self) -> None:
        super()._validate_params()
        # An empty path is the current directory to every file API: a cache dropped there by
        # accident, never a choice (write "." for that).
        if isinstance(self.cache_dir, str) and not self.cache_dir.strip():
            raise ValueError(
                f'cache_dir={self.cache_dir!r} names no folder; pass a folder, "auto" for '
                "the default location, or None to keep embeddings in memory only."
            )

    # scikit-learn API -------------------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None) -> CLIPFeaturizer:
        """Load the model (so that a bad name fails here) and record the embedding size.

        No image is encoded: the featurizer has nothing to learn from the data.

        Parameters
        ----------
        X : object
            Ignored; present for the scikit-learn API.
        y : object, default=None
            Ignored.

        Returns
        -------
        self : object
            The featurizer, with ``embedding_dim_`` and ``model_fingerprint_`` set.

        Raises
        ------
        skcicm.featurizer.UnknownModelError
            When ``model_name`` or ``pretrained`` names no model open_clip knows.
        skcicm.featurizer.WeightsUnavailableError
            When the weights are neither cached nor downloadable (for example offline).
        skcicm.featurizer.cache.ModelWeightsChangedError
            When refitting finds weights other than those the featurizer was fitted with.
        ValueError
            When ``decode_device="cuda"`` cannot run: no CUDA, a model on the CPU,
            ``worker_type="processes"``, or a preprocessing step with no tensor equivalent.
        """
        self._pin_weights()
        if self.class_names is not None:
            self._class_prompts(self.class_names, None)
        self.embedding_dim_ = self._embedding_dim()
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X: Any, y: Any = None) -> EmbeddingsWithContext:
        """Embed the training images, with everything InvariantCausalMechanism.fit can use.

        Parameters
        ----------
        X : list of images, paths or arrays, or a ``DataFrame``/array of paths
            Images: file paths, ``PIL.Image`` objects, or uint8 arrays of shape (H, W) or
            (H, W, 3), as :class:`CLIPFeaturizer` accepts them.
        y : object, default=None
            Ignored; present for the scikit-learn API.

        Returns
        -------
        embeddings : EmbeddingsWithContext of shape (n_samples, embedding_dim)
            A numpy array of the clean embeddings whose ``fit_context`` holds
            ``interventions`` (n_samples, n_interventions, embedding_dim) and, when
            configured, ``intervention_pairs``, ``class_embeddings`` and ``class_labels``.

        Raises
        ------
        skcicm.featurizer.ImageLoadError
            When images cannot be read; it names each of them, after every readable image
            has been encoded and cached.
        skcicm.featurizer.cache.ModelWeightsChangedError
            When the featurizer is fitted and the model's weights are no longer those it
            was fitted with.
        """
        self._pin_weights()
        # Prompts first: a bad template or class name fails before any image is encoded.
        context: dict[str, Any] = {}
        if self.text_interventions:
            context["intervention_pairs"] = self.text_intervention_pairs()
        if self.class_names is not None:
            context["class_labels"], _ = self._class_labels_and_names(self.class_names)
            context["class_embeddings"] = self.class_embeddings()
        views = [None] if self.interventions is None else [None, *range(self.n_interventions)]
        clean, *intervened = self._embed_images(X, views)
        if intervened:
            context["interventions"] = np.stack(intervened, axis=1)
        self.embedding_dim_ = clean.shape[1]
        return EmbeddingsWithContext.wrap(clean, **context)

    def transform(self, X: Any) -> np.ndarray:
        """Embed images without interventions.

        Embeddings come from the cache when the same image (by content) was encoded before
        with the same model; see ``cache_dir``.

        Parameters
        ----------
        X : list of images, paths or arrays, or a ``DataFrame``/array of paths
            Images: file paths, ``PIL.Image`` objects, or uint8 arrays of shape (H, W) or
            (H, W, 3), as :class:`CLIPFeaturizer` accepts them.

        Returns
        -------
        embeddings : ndarray of shape (n_samples, embedding_dim), dtype float32
            One embedding per image, unit-norm when ``normalize=True``.

        Raises
        ------
        skcicm.featurizer.ImageLoadError
            When images cannot be read; it names each of them, after every readable image
            has been encoded and cached.
        skcicm.featurizer.cache.ModelWeightsChangedError
            When the featurizer is fitted and the model's weights are no longer those it
            was fitted with.
        """
        self._validate_params()
        return self._embed_images(X, [None])[0]

    def __sklearn_clone__(self) -> CLIPFeaturizer:
        # clone() takes any value with a get_params method for an estimator and calls
        # get_params(deep=False) on it; torchvision's ColorJitter has a static get_params of
        # its own, so a list holding one could not be cloned. Transforms are deep-copied, as
        # clone() copies every value that is not an estimator.
        stand_in = copy.copy(self)
        stand_in.interventions = None
        clone = super(CLIPFeaturizer, stand_in).__sklearn_clone__()
        clone.interventions = copy.deepcopy(self.interventions)
        return clone

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.two_d_array = False
        return tags

    @property
    def _n_features_out(self) -> int:
        return self.embedding_dim_

    # Embeddings beyond the sklearn API ---------------------------------------------------

    def intervention_embeddings(self, X: Any) -> np.ndarray:
        """Embed the intervened copies of the images.

        Parameters
        ----------
        X : list of images, paths or arrays, or a ``DataFrame``/array of paths
            Images: file paths, ``PIL.Image`` objects, or uint8 arrays of shape (H, W) or
            (H, W, 3), as :class:`CLIPFeaturizer` accepts them.

        Returns
        -------
        embeddings : ndarray of shape (n_samples, n_interventions, embedding_dim)
            Sample-major: ``embeddings[i, v]`` is copy ``v`` of image ``i``, so the rows
            split by sample like ``X``.

        Raises
        ------
        ValueError
            When ``interventions=None``: there are no intervened copies to embed.
        skcicm.featurizer.ImageLoadError
            When images cannot be read; it names each of them, after every readable image
            has been encoded and cached.
        skcicm.featurizer.cache.ModelWeightsChangedError
            When the featurizer is fitted and the model's weights are no longer those it
            was fitted with.
        """
        self._validate_params()
        if self.interventions is None:
            raise ValueError(
                "interventions=None: this featurizer computes no intervened copies of images; set "
                "interventions to 'paper' or a list of transforms to embed some."
            )
        return np.stack(self._embed_images(X, list(range(self.n_interventions))), axis=1)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts with the model's text tower.

        Parameters
        ----------
        texts : str or sequence of str
            The texts, tokenized by the model's open_clip tokenizer.

        Returns
        -------
        embeddings : ndarray of shape (n_texts, embedding_dim), dtype float32
            One embedding per text, unit-norm when ``normalize=True``.
        """
        self._validate_params()
        texts = [texts] if isinstance(texts, str) else list(texts)
        loaded = self._loaded()
        cache = self._cache(loaded)
        keys = ["text-" + hashlib.sha1(text.encode()).hexdigest() for text in texts]
        found = cache.get(keys)
        missing = sorted(
            {key: text for key, text in zip(keys, texts, strict=True) if key not in found}.items()
        )
        device = self._torch_device()
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            tokens = loaded.tokenizer([text for _, text in chunk]).to(device)
            with torch.inference_mode(), self._autocast(device):
                features = loaded.model.encode_text(tokens).float().cpu().numpy()
            fresh = {key: row for (key, _), row in zip(chunk, features, strict=True)}
            cache.put(fresh)
            found.update(fresh)
        return self._finish(np.stack([found[key] for key in keys]) if keys else np.empty((0, 0)))

    def class_embeddings(
        self,
        class_names: Sequence[str] | dict | None = None,
        templates: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Prompt-ensembled, unit-norm text embeddings of the classes.

        Each class's prompts (one per template) are embedded, normalised and averaged, and
        the average is normalised again, as in CLIP's zero-shot evaluation. Prompts write a
        class name with spaces for underscores (``"tv_monitor"`` as "tv monitor"), as the
        DomainBed loader and the CLIP-ICM authors do.

        Parameters
        ----------
        class_names : sequence of str, dict or None, default=None
            Class names, or a dict from label to name; None uses this featurizer's
            ``class_names``.
        templates : sequence of str or None, default=None
            Prompt templates with ``{}`` for the class name; None uses this featurizer's
            ``templates`` (or ``["a photo of a {}."]``).

        Returns
        -------
        embeddings : ndarray of shape (n_classes, embedding_dim), dtype float32
            One unit-norm row per class, in the order of ``class_names``.

        Raises
        ------
        TypeError
            For a single string where a list of templates or names is expected, and for a
            class name that is not a string.
        ValueError
            When no class names are given here or in the ``class_names`` parameter; for a
            template without exactly one ``{}`` or with another brace; for a blank class
            name; and for two classes whose prompts are the same, as written or as the
            tokenizer reads them (cut at its context length, in lower case).
        """
        names = self.class_names if class_names is None else class_names
        if names is None:
            raise ValueError(
                "No class names: pass class_names here or set the class_names parameter."
            )
        names, templates = self._class_prompts(names, templates)
        prompts = [template.format(name) for name in names for template in templates]
        unit = unit_rows(self.encode_text(prompts)).reshape(len(names), len(templates), -1)
        return unit_rows(unit.mean(axis=1)).astype(np.float32)

    def _class_prompts(
        self, class_names: Sequence[str] | dict, templates: Sequence[str] | None
    ) -> tuple[list[str], list[str]]:
        """The class names as prompts write them and the templates, checked (see above)."""
        if templates is None:
            templates = self.templates if self.templates is not None else DEFAULT_TEMPLATES
        templates = check_class_templates(templates, "templates")
        names = self._class_labels_and_names(class_names)[1]
        loaded = self._loaded()
        # Tokenizing every prompt costs seconds for ImageNet's 80 templates: once per process.
        checked = (loaded.fingerprint, tuple(names), tuple(templates))
        if checked in _DISTINCT_PROMPTS:
            return names, templates
        tokenizer = loaded.tokenizer
        for template in templates:
            tokens = tokenizer([template.format(name) for name in names]).numpy()
            _, first, inverse = np.unique(tokens, axis=0, return_index=True, return_inverse=True)
            same = np.flatnonzero(first[inverse.ravel()] != np.arange(len(names)))
            if same.size:
                other = first[inverse.ravel()[same[0]]]
                raise ValueError(
                    f"class_names {names[other]!r} and {names[same[0]]!r} give the same tokens "
                    f"in template {template!r} (the tokenizer reads at most "
                    f"{tokens.shape[1]} tokens and ignores case), so zero-shot cannot tell "
                    "them apart; shorten or rename them."
                )
        if len(_DISTINCT_PROMPTS) >= 64:
            _DISTINCT_PROMPTS.clear()
        _DISTINCT_PROMPTS.add(checked)
        return names, templates

    def text_intervention_pairs(
        self, class_names: Sequence[str] | dict | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embed the ``text_interventions`` prompt pairs.

        Parameters
        ----------
        class_names : sequence of str, dict or None, default=None
            Class names filled into the pairs' ``{}``; None uses this featurizer's
            ``class_names`` (pairs with ``{}`` then need them).

        Returns
        -------
        first, second : ndarray of shape (n_pairs, embedding_dim)
            Embeddings of the first and of the second prompt of each pair, row-aligned:
            ``intervention_pairs`` for :meth:`skcicm.InvariantCausalMechanism.fit`.

        Raises
        ------
        ValueError
            When ``text_interventions`` is empty, or a pair has ``{}`` and there are no
            class names.
        """
        if not self.text_interventions:
            raise ValueError("text_interventions is empty: there are no prompt pairs to embed.")
        names = self.class_names if class_names is None else class_names
        names = None if names is None else self._class_labels_and_names(names)[1]
        first, second = expand_prompt_pairs(self.text_interventions, names)
        return self.encode_text(first), self.encode_text(second)

    # Internals ---------------------------------------------------------------------------

    @staticmethod
    def _class_labels_and_names(class_names: Sequence[str] | dict) -> tuple[np.ndarray, list[str]]:
        """Labels, and the names as prompts write them (checked by ``class_prompt_names``)."""
        if isinstance(class_names, dict):
            names = class_prompt_names(list(class_names.values()))
            return np.asarray(list(class_names.keys())), names
        names = class_prompt_names(class_names)
        return np.arange(len(names)), names

    def _torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(self.device)
        except RuntimeError:
            raise ValueError(
                f"device={self.device!r} is not a torch device; use 'auto', 'cpu', 'cuda' or "
                "'cuda:<index>'."
            ) from None
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError(
                    f"device={self.device!r} but CUDA is not available; use 'auto' or 'cpu'."
                )
            if device.index is not None and device.index >= torch.cuda.device_count():
                raise ValueError(
                    f"device={self.device!r} but this machine has "
                    f"{torch.cuda.device_count()} CUDA device(s)."
                )
        elif device.type != "cpu":
            raise ValueError(
                f"device={self.device!r}: skcicm runs on 'cpu' and 'cuda' devices only."
            )
        return device

    def _resolved_precision(self, device: torch.device) -> str:
        if self.precision != "auto":
            return self.precision
        if device.type != "cuda":
            return "fp32"
        return "amp_bf16" if torch.cuda.is_bf16_supported() else "amp"

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        precision = self._resolved_precision(device)
        if precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if precision == "amp_bf16" else torch.float16
        return torch.autocast(device_type=device.type, dtype=dtype)

    def _loaded(self) -> LoadedCLIP:
        loaded = load_clip(
            self.model_name, self.pretrained, str(self._torch_device()), self.weights_dir
        )
        pinned = getattr(self, "model_fingerprint_", None)
        check_weights_unchanged(pinned, loaded.fingerprint, self.model_name)
        return loaded

    def _pin_weights(self) -> None:
        device = self._torch_device()
        self._check_decode_device(device)
        loaded = load_clip(self.model_name, self.pretrained, str(device), self.weights_dir)
        self._jpeg_decoder(loaded, device)  # a preprocessing it cannot translate fails here
        self.model_fingerprint_ = loaded.fingerprint

    def _check_decode_device(self, device: torch.device) -> None:
        if self.decode_device == "cpu":
            return
        if not torch.cuda.is_available():
            raise ValueError("decode_device='cuda' but CUDA is not available; use 'cpu'.")
        if device.type != "cuda":
            raise ValueError(
                f"decode_device='cuda' decodes JPEG files on the model's GPU, but "
                f"device={self.device!r} runs the model on the CPU; use a CUDA device or "
                "decode_device='cpu'."
            )
        if self.worker_type != "threads":
            raise ValueError(
                "decode_device='cuda' decodes in threads of this process (CUDA does not "
                "survive a fork into worker processes); use worker_type='threads'."
            )

    def _jpeg_decoder(self, loaded: LoadedCLIP, device: torch.device) -> JPEGDecoder | None:
        return JPEGDecoder(loaded.preprocess, device) if self.decode_device == "cuda" else None

    def _cache(self, loaded: LoadedCLIP) -> EmbeddingCache:
        precision = self._resolved_precision(self._torch_device())
        decoder = "-nvjpeg" if self.decode_device == "cuda" else ""  # other pixels, other cache
        return EmbeddingCache(f"{loaded.fingerprint}-{precision}{decoder}", self.cache_dir)

    def _embedding_dim(self) -> int:
        return int(self.encode_text(["a"]).shape[1])

    def _finish(self, raw: np.ndarray) -> np.ndarray:
        return (unit_rows(raw) if self.normalize else raw).astype(np.float32, copy=False)

    def _embed_images(self, X: Any, views: Sequence[int | None]) -> list[np.ndarray]:
        """Embeddings of the clean images (view None) and of intervened copies (view 0, 1, ...)."""
        items = as_image_list(X)
        device = self._torch_device()
        self._check_decode_device(device)
        loaded = self._loaded()
        interventions = interventions_id = None
        if any(view is not None for view in views):
            transforms = (
                paper_interventions() if self.interventions == "paper" else self.interventions
            )
            interventions = ImageInterventions(transforms, self.random_state)
            interventions_id = interventions_cache_id(interventions.transforms, self.random_state)
        encoder = ImageEncoder(
            loaded.preprocess,
            functools.partial(self._encode_batch, loaded, device),
            self._cache(loaded),
            interventions,
            interventions_id=interventions_id,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            worker_type=self.worker_type,
            pin_memory=device.type == "cuda",
            jpeg_decoder=self._jpeg_decoder(loaded, device),
            progress=sys.stderr.isatty() if self.progress == "auto" else bool(self.progress),
        )
        return [self._finish(raw) for raw in encoder.embed(items, views)]

    def _encode_batch(
        self, loaded: LoadedCLIP, device: torch.device, batch: torch.Tensor
    ) -> np.ndarray:
        if device.type == "cuda" and not batch.is_cuda:
            batch = batch.pin_memory()
        batch = batch.to(device, non_blocking=True)
        with torch.inference_mode(), self._autocast(device):
            features = loaded.model.encode_image(batch).float().cpu().numpy()
        if not np.isfinite(features).all():
            raise FloatingPointError(
                f"The model produced non-finite embeddings for a batch of {len(features)} "
                "images; try precision='fp32'."
            )
        return features
