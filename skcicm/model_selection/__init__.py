"""Choosing CLIP-ICM's ``lam`` and ``n_components`` without looking at the target domain."""

from skcicm.model_selection._cv import InvariantCausalMechanismCV
from skcicm.model_selection._grid import lodo_grid_search
from skcicm.model_selection._params import check_grid
from skcicm.model_selection._scoring import InterventionalScorer

__all__ = ["InterventionalScorer", "InvariantCausalMechanismCV", "check_grid", "lodo_grid_search"]
