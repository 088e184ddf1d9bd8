"""The defaults of lam, in one place.

:class:`~skcicm.InvariantCausalMechanism`, :class:`~skcicm.InvariantCausalMechanismCV`, the
protocols and the command line read them here, and ``tests/test_defaults.py`` checks them
against the user guide. The grid contains the no-ICM setting (lam = 0, K = d: a rotation of
CLIP's space), so that source tuning can fall back to plain CLIP where the method does not
help. With trace scaling the useful range of lam is the same for every intervention source;
absolute lam >= 10 falls to chance (docs/results.md). The single estimator's lam = 1 (trace)
removed 54 to 78% of the held-out style's energy and kept 98 to 99% of the class signal with
text, counterfactual and domain Deltas; with augmentations it kept 86% (docs/results.md,
"Variant directions removed").
"""

DEFAULT_LAM: tuple[float, ...] = (0.0, 0.3, 1.0, 3.0)
DEFAULT_ESTIMATOR_LAM = 1.0
DEFAULT_LAM_SCALE = "trace"
