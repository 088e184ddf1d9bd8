"""Choosing CLIP-ICM's ``lam`` and ``n_components`` without looking at the target domain."""

from skcicm.model_selection._grid import check_grid, lodo_grid_search
from skcicm.model_selection._scoring import InterventionalScorer

__all__ = ["check_grid", "lodo_grid_search"]
__all__ += ["InterventionalScorer"]
