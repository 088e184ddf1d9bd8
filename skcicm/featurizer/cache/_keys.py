"""What identifies an embedding: the model's weights, the image content and the intervention.

Cache keys must never let two different embeddings share a key, within a process or across
processes. Model weights are identified by :attr:`skcicm.featurizer.LoadedCLIP.fingerprint`,
image content by ``ImageSource.key`` (``skcicm.featurizer._images``); this module identifies
intervention lists and pins a fitted featurizer to the weights it was fitted with.

An intervention list is cacheable only when every transform in it has a stable key:

- an explicit ``cache_key`` attribute (a non-empty string), which the user promises changes
  whenever the transform's behaviour does;
- otherwise a torchvision transform (``torchvision.transforms`` or ``.v2``) other than
  ``Lambda``, keyed by its ``repr``, which spells out its parameters; containers such as
  ``Compose`` or ``RandomChoice`` need every transform inside them to be cacheable too.

Anything else (plain functions, lambdas, closures, ``functools.partial``, other classes) has
no key that survives the process or tells two parameterisations apart, so its intervened
copies are never cached, neither in memory nor on disk: they are recomputed on every call.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Sequence
from typing import Any

#: Prefix of the keys of images whose intervened copies cannot be cached (an intervention
#: without a stable description); the caches never store them.
UNCACHED_PREFIX = "uncached~"
#: Bumped when the way intervened copies are produced changes (2: intervened after the model's
#: leading resize), so that copies made the old way are never served.
INTERVENTION_PIPELINE_VERSION = 2
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")


class UncachedInterventionWarning(UserWarning):
    """An intervention has no stable cache key, so its copies are recomputed on every call."""


class ModelWeightsChangedError(ValueError):
    """A fitted featurizer was asked to embed with other weights than those it was fitted on."""


def transform_cache_key(transform: Any) -> str | None:
    """A key that identifies what ``transform`` does, or None when there is none.

    An explicit ``cache_key`` attribute wins; torchvision transforms are keyed by their class
    and ``repr`` (compositions by their children's keys too); anything else has no key.

    Parameters
    ----------
    transform : callable
        An image intervention.

    Returns
    -------
    str or None
        The key, or None when the transform has no stable description (a plain function,
        a ``Lambda``, or a ``repr`` that holds a memory address).

    Raises
    ------
    TypeError
        When ``transform.cache_key`` is set but is not a non-empty string.

    Examples
    --------
    >>> from torchvision.transforms import v2
    >>> transform_cache_key(v2.Grayscale(3))
    'torchvision.transforms.v2._color.Grayscale|Grayscale(num_output_channels=3)'
    >>> def brighten(image):
    ...     return image
    >>> transform_cache_key(brighten) is None
    True
    >>> brighten.cache_key = "brighten-v1"
    >>> transform_cache_key(brighten)
    'cache_key|brighten-v1'
    """
    explicit = getattr(transform, "cache_key", None)
    if explicit is not None:
        if not isinstance(explicit, str) or not explicit:
            raise TypeError(
                f"The cache_key of intervention {transform!r} must be a non-empty string; got "
                f"{explicit!r}."
            )
        return f"cache_key|{explicit}"
    cls = type(transform)
    if not cls.__module__.startswith("torchvision.transforms") or cls.__name__ == "Lambda":
        return None
    description = repr(transform)
    if _ADDRESS.search(description):
        return None
    children = getattr(transform, "transforms", None)
    child_keys = []
    if isinstance(children, list | tuple):
        child_keys = [transform_cache_key(child) for child in children]
        if None in child_keys:
            return None
    return "|".join([f"{cls.__module__}.{cls.__qualname__}", description, *child_keys])


def interventions_cache_id(transforms: Sequence[Any], random_state: int) -> str | None:
    """Identify a list of interventions drawn with ``random_state``, or None if uncacheable.

    Parameters
    ----------
    transforms : sequence of callable
        The image interventions, in view order.
    random_state : int
        The seed the intervened copies are drawn with.

    Returns
    -------
    str or None
        A 16-hex-digit identifier that changes with any transform, the seed or the
        intervention pipeline version; None when a transform has no stable key.

    Warns
    -----
    UncachedInterventionWarning
        When a transform has no stable key (once per call site).

    Examples
    --------
    >>> from skcicm.featurizer import paper_interventions
    >>> first = interventions_cache_id(paper_interventions(), random_state=0)
    >>> first == interventions_cache_id(paper_interventions(), random_state=0)
    True
    >>> first == interventions_cache_id(paper_interventions(), random_state=1)
    False
    """
    keys = [transform_cache_key(transform) for transform in transforms]
    if None in keys:
        unkeyed = transforms[keys.index(None)]
        name = getattr(unkeyed, "__qualname__", type(unkeyed).__qualname__)
        warnings.warn(
            f"Intervention {name} has no stable cache key, so the intervened copies are "
            "recomputed on every call and never cached. Give it a `cache_key` string attribute "
            "that changes whenever its behaviour does (e.g. f'brightness-{factor}').",
            UncachedInterventionWarning,
            stacklevel=3,
        )
        return None
    text = "\n".join(
        [*keys, f"random_state={random_state}", f"pipeline={INTERVENTION_PIPELINE_VERSION}"]
    )
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def intervened_key(content_key: str, interventions_id: str | None, view: int) -> str:
    """Cache key of the ``view``-th intervened copy of an image.

    With ``interventions_id=None`` the key starts with :data:`UNCACHED_PREFIX`, which the
    cache never stores or looks up; it still tells the copies apart within one call.

    Parameters
    ----------
    content_key : str
        Cache key of the image's content.
    interventions_id : str or None
        :func:`interventions_cache_id` of the interventions.
    view : int
        Index of the intervened copy.

    Returns
    -------
    str
        The key of the copy.
    """
    if interventions_id is None:
        return f"{UNCACHED_PREFIX}{content_key}-{view}"
    return f"{content_key}-do{interventions_id}-{view}"


def check_weights_unchanged(pinned: str | None, loaded: str, model_name: str) -> None:
    """Refuse to embed with weights other than the ``pinned`` fingerprint.

    Parameters
    ----------
    pinned : str or None
        Fingerprint of the weights the featurizer was fitted with; None when not fitted,
        which accepts any weights.
    loaded : str
        Fingerprint of the weights loaded now.
    model_name : str
        The model's name, for the message.

    Raises
    ------
    ModelWeightsChangedError
        When ``pinned`` is set and differs from ``loaded``.
    """
    if pinned is not None and pinned != loaded:
        raise ModelWeightsChangedError(
            f"The weights of model {model_name!r} differ from those this featurizer was fitted "
            f"with (fingerprint {pinned}, now {loaded}): its fitted pipeline would predict "
            "from embeddings it never saw. Restore the original weights, or refit."
        )
