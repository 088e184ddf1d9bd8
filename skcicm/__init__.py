"""skcicm: scikit-learn compatible CLIP-ICM (invariant causal mechanisms for CLIP).

``InvariantCausalMechanism`` needs only numpy and scipy; ``CLIPFeaturizer`` imports torch and
open_clip when first used, so that the estimator stays light.
"""

from importlib import metadata as _metadata
from typing import Any

from skcicm.estimator import InvariantCausalMechanism
from skcicm.fit_inputs import NoInterventionError
from skcicm.model_selection import InvariantCausalMechanismCV

__all__ = [
    "CLIPFeaturizer",
    "InvariantCausalMechanism",
    "InvariantCausalMechanismCV",
    "NoInterventionError",
]
try:  # written once, in pyproject.toml
    __version__ = _metadata.version("skcicm")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "CLIPFeaturizer":
        from skcicm.featurizer import CLIPFeaturizer

        return CLIPFeaturizer
    raise AttributeError(f"module 'skcicm' has no attribute {name!r}")
