"""skcicm: scikit-learn compatible CLIP-ICM (invariant causal mechanisms for CLIP).

Every public name is imported when first used, so that ``import skcicm`` (and the ``skcicm``
command's ``--help``) loads neither scikit-learn nor torch. ``InvariantCausalMechanism`` needs
only numpy, scipy and scikit-learn; ``CLIPFeaturizer`` imports torch and open_clip when first
used.
"""

from importlib import import_module
from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skcicm.estimator import InvariantCausalMechanism
    from skcicm.featurizer import CLIPFeaturizer
    from skcicm.fit_inputs import NoInterventionError
    from skcicm.model_selection import InvariantCausalMechanismCV

__all__ = [
    "CLIPFeaturizer",
    "InvariantCausalMechanism",
    "InvariantCausalMechanismCV",
    "NoInterventionError",
]
# Where each public name lives.
_MODULES = {
    "CLIPFeaturizer": "skcicm.featurizer",
    "InvariantCausalMechanism": "skcicm.estimator",
    "InvariantCausalMechanismCV": "skcicm.model_selection",
    "NoInterventionError": "skcicm.fit_inputs",
}
try:  # written once, in pyproject.toml
    __version__ = _metadata.version("skcicm")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = getattr(import_module(_MODULES[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'skcicm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
