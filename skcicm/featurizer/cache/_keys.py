"""What identifies an embedding: the model's weights, the image content and the intervention.

Cache keys must never let two different embeddings share a key, within a process or across
processes. Model weights are identified by :attr:`skcicm.featurizer.LoadedCLIP.fingerprint`,
image content by ``ImageSource.key`` (``skcicm.featurizer._images``); this module identifies
intervention lists and pins a fitted featurizer to the weights it was fitted with.

An intervention list is cacheable only when every transform in it has a stable key:

- an explicit ``cache_key`` attribute (a non-empty string), which the user promises changes
  whenever the transform's behaviour does;
- otherwise its whole structure: its class (module, qualified name and the code of its
  methods) and every attribute, recursively through nested transforms, containers, tensors,
  arrays, numbers, strings, enums, classes and named functions (name, code, defaults and the
  module globals they read; a module by its name). A ``repr`` is never trusted: torchvision's
  leaves out ``RandomApply``'s ``p`` and a dict ``fill``. Module globals that a class's
  methods read are not part of the key: pass such a value as an attribute, or set a
  ``cache_key``.

Anything that cannot be described completely (a lambda, a closure, a function defined inside
another, an object whose state lives in C such as an open file, a generator or a
``functools.partial``) has no key that tells two parameterisations apart, so its intervened
copies are never cached, neither in memory nor on disk: they are recomputed on every call,
with an :class:`UncachedInterventionWarning` naming the transform and the attribute.
"""

from __future__ import annotations

import collections
import enum
import hashlib
import types
import warnings
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

#: Prefix of the keys of images whose intervened copies cannot be cached (an intervention
#: without a stable description); the caches never store them.
UNCACHED_PREFIX = "uncached~"
#: Bumped when the way intervened copies are produced changes (2: intervened after the model's
#: leading resize), so that copies made the old way are never served.
INTERVENTION_PIPELINE_VERSION = 2


class UncachedInterventionWarning(UserWarning):
    """An intervention has no stable cache key, so its copies are recomputed on every call."""


class ModelWeightsChangedError(ValueError):
    """A fitted featurizer was asked to embed with other weights than those it was fitted on."""


class _Unkeyable(Exception):
    """Raised inside :func:`_fingerprint` with where (an attribute path) and why."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where} {why}")
        self.where = where
        self.why = why


# What a class written in C holds in its dict: its state is then invisible to vars().
_NATIVE_MEMBERS = (
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.BuiltinFunctionType,
    types.ClassMethodDescriptorType,
)
_NATIVE_FIELDS = (types.GetSetDescriptorType, types.MemberDescriptorType)
_SCALARS = (type(None), bool, int, float, complex, str, bytes)


def _code_digest(code: types.CodeType) -> str:
    """Digest of what a code object does, so that two functions of one name (``__main__.f`` in
    two scripts, or a function edited between runs) get different keys."""
    hasher = hashlib.sha1(code.co_code)
    hasher.update(repr((code.co_names, code.co_varnames, code.co_freevars)).encode())
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            hasher.update(_code_digest(constant).encode())
        elif isinstance(constant, frozenset):  # its repr's order varies with hash seeds
            hasher.update(repr(sorted(map(repr, constant))).encode())
        else:
            hasher.update(repr(constant).encode())
    return hasher.hexdigest()[:16]


_method_digests: weakref.WeakKeyDictionary[type, str] = weakref.WeakKeyDictionary()


def _class_digest(cls: type) -> str:
    """Digest of the code of every method a class defines or inherits from Python classes,
    and of its class attributes that are numbers or strings (``FACTOR = 0.5``)."""
    methods = _method_digests.get(cls)
    if methods is None:  # code does not change while the class lives; class attributes may
        hasher = hashlib.sha1()
        for owner in cls.__mro__:
            for name, member in sorted(vars(owner).items()):
                function = getattr(member, "__func__", member)  # staticmethod, classmethod
                if isinstance(function, types.FunctionType):
                    hasher.update(f"{name}:{_code_digest(function.__code__)};".encode())
        methods = _method_digests[cls] = hasher.hexdigest()
    hasher = hashlib.sha1(methods.encode())
    for owner in cls.__mro__:
        for name, member in sorted(vars(owner).items()):
            if type(member) in _SCALARS:
                hasher.update(f"{owner.__qualname__}.{name}={member!r};".encode())
    return hasher.hexdigest()[:16]


def _qualified_name(obj: Any, where: str) -> str:
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not isinstance(qualname, str) or "<lambda>" in qualname or "<locals>" in qualname:
        # Two lambdas, or two functions made by one factory, share a name but not behaviour.
        raise _Unkeyable(where, f"is {obj!r}, which has no name that identifies it")
    return f"{module}.{qualname}"


def _fingerprint(obj: Any, where: str, path: list[int]) -> str:
    """Describe everything about ``obj`` that can change what it computes.

    Raises :class:`_Unkeyable` naming the attribute (``where``) that cannot be described.
    """
    if isinstance(obj, enum.Enum):
        return f"enum:{_qualified_name(type(obj), where)}.{obj.name}"
    if type(obj) in _SCALARS:  # exactly: a subclass may hold more state
        return f"{type(obj).__name__}:{obj!r}"
    if isinstance(obj, type):
        return f"type:{_qualified_name(obj, where)}:{_class_digest(obj)}"
    if isinstance(obj, types.ModuleType):
        return f"module:{obj.__name__}"
    if isinstance(obj, types.BuiltinFunctionType) and (
        obj.__self__ is None or isinstance(obj.__self__, types.ModuleType)
    ):
        return f"builtin:{_qualified_name(obj, where)}"
    if id(obj) in path:
        return f"cycle:{len(path) - path.index(id(obj))}"
    path.append(id(obj))
    try:
        return _fingerprint_compound(obj, where, path)
    finally:
        path.pop()


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _global_names(constant)
    return names


def _fingerprint_function(function: types.FunctionType, where: str, path: list[int]) -> str:
    """Name, code, defaults and the module globals a function reads (a constant edited between
    two runs of a script changes the key)."""
    if function.__closure__:
        raise _Unkeyable(where, f"is {function!r}, a closure whose captured values are unknown")
    name = _qualified_name(function, where)
    defaults = _fingerprint(
        (function.__defaults__, function.__kwdefaults__), f"{where} defaults", path
    )
    read = sorted(_global_names(function.__code__).intersection(function.__globals__))
    values = []
    for read_name in read:
        value = function.__globals__[read_name]
        values.append(f"{read_name}={_fingerprint(value, f'{where} global {read_name}', path)}")
    return f"function:{name}:{_code_digest(function.__code__)}:{defaults}:{','.join(values)}"


def _fingerprint_compound(obj: Any, where: str, path: list[int]) -> str:
    """Describe what may refer back to itself (``path`` holds the objects being described)."""
    kind = type(obj)
    if isinstance(obj, types.FunctionType):
        return _fingerprint_function(obj, where, path)
    # Exact types only: a subclass of a container may hold more state, described as an object.
    if kind in (list, tuple):
        items = [_fingerprint(item, f"{where}[{i}]", path) for i, item in enumerate(obj)]
        return f"{kind.__qualname__}[{','.join(items)}]"
    if kind in (dict, collections.OrderedDict):
        items = [
            f"{_fingerprint(key, f'{where} key {key!r}', path)}="
            f"{_fingerprint(value, f'{where}[{key!r}]', path)}"
            for key, value in obj.items()
        ]
        return f"{kind.__qualname__}{{{','.join(items)}}}"
    if kind in (set, frozenset):
        items = sorted(_fingerprint(item, f"{where} item", path) for item in obj)
        return f"{kind.__qualname__}{{{','.join(items)}}}"
    if isinstance(obj, torch.Tensor):
        if obj.layout != torch.strided or obj.is_quantized:
            raise _Unkeyable(where, f"is a {obj.layout} tensor, whose content is not hashed")
        data = obj.detach().cpu().contiguous().flatten().view(torch.uint8).numpy()
        digest = hashlib.sha1(data.tobytes()).hexdigest()
        return f"tensor:{obj.dtype}{tuple(obj.shape)}:{digest}"
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise _Unkeyable(where, "is a numpy array of Python objects")
        digest = hashlib.sha1(np.ascontiguousarray(obj).tobytes()).hexdigest()
        return f"ndarray:{obj.dtype.str}{obj.shape}:{digest}"
    if isinstance(obj, types.MethodType):
        function = _fingerprint(obj.__func__, f"{where}.__func__", path)
        return f"method:{function}@{_fingerprint(obj.__self__, f'{where}.__self__', path)}"
    if isinstance(obj, np.generic):
        return f"{obj.dtype.str}:{obj.item()!r}"
    return _fingerprint_object(obj, where, path)


def _slots(cls: type) -> set[str]:
    slots = cls.__dict__.get("__slots__", ())
    return {slots} if isinstance(slots, str) else set(slots)


def _is_native(cls: type) -> bool:
    """Whether ``cls`` is written in C (its methods or fields are C descriptors)."""
    python_fields = _slots(cls) | {"__dict__", "__weakref__"}
    return any(
        isinstance(member, _NATIVE_MEMBERS)
        or (isinstance(member, _NATIVE_FIELDS) and name not in python_fields)
        for name, member in vars(cls).items()
    )


def _fingerprint_object(obj: Any, where: str, path: list[int]) -> str:
    kind = type(obj)
    native = [cls for cls in kind.__mro__[:-1] if _is_native(cls)]
    if native:
        # State held in C (an open file, a generator, a lock, functools.partial) is not in
        # vars(), so two different objects would look the same.
        raise _Unkeyable(where, f"is a {native[0].__qualname__}, whose state cannot be read")
    attributes = dict(vars(obj)) if hasattr(obj, "__dict__") else {}
    for cls in kind.__mro__:
        for slot in _slots(cls) - {"__dict__", "__weakref__"}:
            if hasattr(obj, slot):
                attributes[slot] = getattr(obj, slot)
    described = [
        f"{name}={_fingerprint(value, f'{where}.{name}', path)}"
        for name, value in sorted(attributes.items())
    ]
    return f"{_qualified_name(kind, where)}:{_class_digest(kind)}({','.join(described)})"


def _transform_name(transform: Any) -> str:
    return getattr(transform, "__qualname__", type(transform).__qualname__)


def _transform_key(transform: Any) -> str:
    explicit = getattr(transform, "cache_key", None)
    if explicit is not None:
        if not isinstance(explicit, str) or not explicit:
            raise TypeError(
                f"The cache_key of intervention {transform!r} must be a non-empty string; got "
                f"{explicit!r}."
            )
        return f"cache_key|{explicit}"
    return _fingerprint(transform, _transform_name(transform), [])


def transform_cache_key(transform: Any) -> str | None:
    """A key that identifies what ``transform`` does, or None when there is none.

    An explicit ``cache_key`` attribute wins. Otherwise the key describes the transform's
    whole structure: its class (module and qualified name) and every attribute, recursively
    through nested transforms, lists, tuples, dicts, sets, tensors, arrays, numbers, strings,
    enums, classes and named functions. A ``repr`` is never used, since torchvision's leaves
    parameters out (``RandomApply``'s ``p``, ``RandomRotation``'s dict ``fill``).

    Parameters
    ----------
    transform : callable
        An image intervention.

    Returns
    -------
    str or None
        The key, or None when part of the transform cannot be described completely: a
        lambda, a closure, a function defined inside another, or an object whose state is
        held in C (an open file, a generator, ``functools.partial``).

    Raises
    ------
    TypeError
        When ``transform.cache_key`` is set but is not a non-empty string.

    Examples
    --------
    >>> from torchvision.transforms import v2
    >>> never = transform_cache_key(v2.RandomApply([v2.RandomInvert(1.0)], p=0.0))
    >>> always = transform_cache_key(v2.RandomApply([v2.RandomInvert(1.0)], p=1.0))
    >>> never == always
    False
    >>> transform_cache_key(v2.Lambda(lambda image: image)) is None
    True
    >>> def brighten(image):
    ...     return image
    >>> brighten.cache_key = "brighten-v1"
    >>> transform_cache_key(brighten)
    'cache_key|brighten-v1'
    """
    try:
        return _transform_key(transform)
    except _Unkeyable:
        return None


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
        When a transform has no stable key, naming the transform and the attribute that
        cannot be described (once per call site).

    Examples
    --------
    >>> from skcicm.featurizer import paper_interventions
    >>> first = interventions_cache_id(paper_interventions(), random_state=0)
    >>> first == interventions_cache_id(paper_interventions(), random_state=0)
    True
    >>> first == interventions_cache_id(paper_interventions(), random_state=1)
    False
    """
    keys = []
    for transform in transforms:
        try:
            keys.append(_transform_key(transform))
        except _Unkeyable as unkeyable:
            warnings.warn(
                f"Intervention {_transform_name(transform)} has no stable cache key: "
                f"{unkeyable}. Its intervened copies are recomputed on every call and never "
                "cached. Give it a `cache_key` string attribute that changes whenever its "
                "behaviour does (e.g. f'brightness-{factor}').",
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
