"""skcicm: scikit-learn compatible CLIP-ICM (invariant causal mechanisms for CLIP).

The package has two estimators, each with its own machinery: :mod:`skcicm.featurizer`
(``CLIPFeaturizer``: images and text in, CLIP embeddings out, with the embedding cache in
:mod:`skcicm.featurizer.cache`) and :mod:`skcicm.icm` (``InvariantCausalMechanism``).
:mod:`skcicm.model_selection` tunes the second, :mod:`skcicm.prompts` writes the text prompt
pairs both use, :mod:`skcicm.datasets` and :mod:`skcicm.evaluation` load and score data, and
``skcicm.cli`` is the ``skcicm`` command.

Every public name is imported when first used, so that ``import skcicm`` (and the ``skcicm``
command's ``--help``) loads neither scikit-learn nor torch. ``InvariantCausalMechanism`` needs
only numpy, scipy and scikit-learn; ``CLIPFeaturizer`` imports torch and open_clip when first
used.
"""

import sys
from importlib import metadata as _metadata
from typing import TYPE_CHECKING

from skcicm._lazy import lazy_attributes
from skcicm._moved import MovedModuleFinder

if TYPE_CHECKING:
    from skcicm.featurizer import CLIPFeaturizer
    from skcicm.icm import InvariantCausalMechanism, NoInterventionError
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

# The modules of 0.1 fail with an error that names their new place (skcicm/_moved.py).
if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
    sys.meta_path.insert(0, MovedModuleFinder())

__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "CLIPFeaturizer": "skcicm.featurizer",
        "InvariantCausalMechanism": "skcicm.icm",
        "InvariantCausalMechanismCV": "skcicm.model_selection",
        "NoInterventionError": "skcicm.icm",
    },
    globals(),
)
