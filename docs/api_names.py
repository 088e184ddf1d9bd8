"""Which names the API reference documents; shared by docs/conf.py and the docstring tests.

One page per public package (a section of the API reference), listing every name of its
``__all__`` (for a module without ``__all__``, the public functions and classes defined in it).
"""

from __future__ import annotations

import inspect
from types import ModuleType

#: In the order of the API reference: the four core names first, then one package per concept.
#: Private modules (``_name.py``) are not documented; their public names are re-exported here.
PUBLIC_MODULES = (
    "skcicm",
    "skcicm.featurizer",
    "skcicm.featurizer.cache",
    "skcicm.icm",
    "skcicm.model_selection",
    "skcicm.prompts",
    "skcicm.datasets",
    "skcicm.evaluation",
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
