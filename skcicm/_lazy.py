"""Package attributes imported on first use (PEP 562), shared by skcicm's package ``__init__``s.

A package lists where each public name lives; importing the package, or one of its private
modules, then loads none of them, so that ``import skcicm`` and ``skcicm --help`` load neither
torch nor scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_attributes(
    package: str, where: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, whose name ``n`` lives in module
    ``where[n]``; a looked-up value is stored in ``namespace`` so later look-ups skip this."""

    def __getattr__(name: str) -> Any:
        if name in where:
            value = getattr(import_module(where[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*namespace, *where})

    return __getattr__, __dir__
