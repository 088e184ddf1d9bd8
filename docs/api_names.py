"""Which names the API reference documents; shared by docs/conf.py and the docstring tests.

One page per public package, listing every name of its ``__all__`` (for a module without
``__all__``, the public functions and classes defined in it).
"""

from __future__ import annotations

import inspect
from types import ModuleType

PUBLIC_MODULES = (
    "skcicm",
    "skcicm.datasets",
    "skcicm.evaluation",
    "skcicm.model_selection",
    "skcicm.prompts",
    "skcicm.fit_context",
    "skcicm.statistics",
    "skcicm.distributed",
    "skcicm.embedding_cache",
    "skcicm.embedding_store",
    "skcicm.encoding_claims",
    "skcicm.cache_keys",
)


def public_names(module: ModuleType) -> list[str]:
    """The names ``module`` documents, sorted case-insensitively."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            name
            for name, obj in vars(module).items()
            if not name.startswith("_")
            and (inspect.isfunction(obj) or inspect.isclass(obj))
            and obj.__module__ == module.__name__
        ]
    return sorted(names, key=str.lower)
