"""The vocabulary of the protocols: methods, intervention sources, tuning rules, default grid.

Pure Python with no numpy, scikit-learn or torch import, so that the command line can build
its help from these names without loading anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from skcicm.icm._defaults import DEFAULT_ESTIMATOR_LAM as DEFAULT_ESTIMATOR_LAM
from skcicm.icm._defaults import DEFAULT_LAM as DEFAULT_LAM
from skcicm.icm._defaults import DEFAULT_LAM_SCALE as DEFAULT_LAM_SCALE

#: The methods every protocol compares, from name (as in results rows and ``--methods``) to
#: display name.
METHODS: dict[str, str] = {
    "clip_zero_shot": "CLIP zero-shot",
    "clip_linear_probe": "CLIP linear probe",
    "icm_zero_shot": "CLIP-ICM zero-shot",
    "icm_linear_probe": "CLIP-ICM linear probe",
}
ZERO_SHOT_METHODS: tuple[str, ...] = ("clip_zero_shot", "icm_zero_shot")
# "image": augmented copies; "counterfactual": exact re-renderings of each image in the other
# domains' styles (ToyWorld only); "text": prompt pairs; "domain": contrasts between domains.
INTERVENTION_SOURCES: tuple[str, ...] = ("image", "counterfactual", "text", "domain")
TUNING: tuple[str, ...] = ("source", "interventional", "oracle")
# The defaults of lam live with the estimator (skcicm/icm/_defaults.py); the protocols and the
# command line take them from here too.
# The rules of skcicm.model_selection.InterventionalScorer (its RULES), here without importing
# scikit-learn; the "interventional" tuning rule scores with one of them.
INTERVENTIONAL_RULES: tuple[str, ...] = ("pooled", "intervened", "worst", "worst_view")
# InterventionalScorer's default rule (chosen in docs/results.md, "Selection rules"), named for
# the command line's help; the protocols leave the rule to the scorer.
DEFAULT_INTERVENTIONAL_RULE = "worst"
LAM_SCALES: tuple[str, ...] = ("absolute", "trace")
# The shortcut protocol's world unless told: the style predicts the class in 90% of each source
# cell; the targets give each class another class's style. Colours and backgrounds barely move
# ToyCLIP's probe; its captions name the style, and the probe leans on it (docs/results.md).
# The command line's default run draws a smaller world than the protocol's default (20 per
# cell), to finish in under 3 minutes on 2 cores.
DEFAULT_SHORTCUT: tuple[str, ...] = ("style",)
DEFAULT_RHO: tuple[float, ...] = (0.9,)
# The shortcut protocol's source selection leaves out one of this many stratified folds of the
# source images: with the style as the shortcut, a held-out style holds nearly one whole class
# and leave-one-style-out selects nothing (docs/results.md, "Selection rules").
DEFAULT_SELECTION_FOLDS = 5
# The relations of skcicm.datasets.SHORTCUT_RELATIONS, here without importing numpy.
TARGET_RELATIONS: tuple[str, ...] = ("reassigned", "uncorrelated")
# 20 per cell (rho = 0.9 exact: 18 aligned, 2 not) and 8 seeds keep the 95% intervals of the
# CLIP probe and of CLIP-ICM with augmentations or counterfactuals within ±2 points, and the
# cold run near 2 minutes on 2 cores; CLIP-ICM with text pairs or domain contrasts stays near
# ±7, since its chosen lam changes from seed to seed (docs/results.md).
CLI_SHORTCUT_N_PER_CELL = 20
CLI_SHORTCUT_SEEDS: tuple[int, ...] = tuple(range(8))
# The zero-shot CLIP-ICM head of the default shortcut run is left out: the main job's table
# shows the probes, and each head costs a source-selection search per intervention source.
CLI_SHORTCUT_METHODS: tuple[str, ...] = ("clip_zero_shot", "clip_linear_probe", "icm_linear_probe")
# n_components defaults to these fractions of the embedding dimension.
DEFAULT_COMPONENT_FRACTIONS: tuple[float, ...] = (0.25, 0.5, 1.0)


def default_n_components(n_features: int) -> list[int]:
    """The default ``n_components`` grid for embeddings of dimension ``n_features``.

    Parameters
    ----------
    n_features : int
        Dimension of the embeddings.

    Returns
    -------
    list of int
        The distinct values of ``round(f * n_features)`` (at least 1) for the fractions ``f``
        of ``DEFAULT_COMPONENT_FRACTIONS``, sorted.

    Examples
    --------
    >>> default_n_components(512)
    [128, 256, 512]
    """
    return sorted({max(1, round(f * n_features)) for f in DEFAULT_COMPONENT_FRACTIONS})


def check_listed(values: Iterable[Any], what: str, *, allow_empty: bool = False) -> list[Any]:
    """``values`` as a list, refusing a value listed twice and, unless allowed, an empty list.

    A value listed twice (``--seeds 0,0``, ``targets=["photo", "photo"]``) would be run twice
    and counted twice in the means and intervals of a table.

    Examples
    --------
    >>> check_listed([0, 1], "seeds")
    [0, 1]
    >>> check_listed(["photo", "photo"], "targets")
    Traceback (most recent call last):
    ...
    ValueError: targets lists 'photo' more than once; list each value once.
    """
    values = list(values)
    if not values and not allow_empty:
        raise ValueError(f"{what} is empty; give at least one value.")
    seen: set = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{what} lists {value!r} more than once; list each value once.")
        seen.add(value)
    return values


def check_n_jobs(n_jobs: Any) -> Any:
    """Refuse an ``n_jobs`` joblib cannot use: it must be None or a nonzero integer.

    Examples
    --------
    >>> check_n_jobs(-1)
    -1
    >>> check_n_jobs(0)
    Traceback (most recent call last):
    ...
    ValueError: n_jobs must be None or a nonzero integer (-1: every core); got 0.
    """
    if n_jobs is not None and (
        isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0
    ):
        raise ValueError(
            f"n_jobs must be None or a nonzero integer (-1: every core); got {n_jobs!r}."
        )
    return n_jobs


def check_choice(
    values: str | Iterable[str], allowed: Sequence[str], what: str, *, allow_empty: bool = False
) -> list[str]:
    """``values`` as a list, or a ValueError naming the unknown ones and the choices.

    Empty lists and values listed twice are refused too (:func:`check_listed`).

    Examples
    --------
    >>> check_choice("oracle", TUNING, "tuning")
    ['oracle']
    >>> check_choice(["audio"], INTERVENTION_SOURCES, "interventions")
    Traceback (most recent call last):
    ...
    ValueError: Unknown interventions ['audio']; choose from ['image', 'counterfactual', \
'text', 'domain'].
    """
    values = [values] if isinstance(values, str) else values
    values = check_listed(values, what, allow_empty=allow_empty)
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"Unknown {what} {unknown}; choose from {list(allowed)}.")
    return values


def is_zero_shot(method: str) -> bool:
    """Whether ``method`` classifies by prompts (else by a linear probe)."""
    return method in ZERO_SHOT_METHODS


def is_baseline(method: str) -> bool:
    """Whether ``method`` is plain CLIP, without the ICM projection."""
    return method.startswith("clip_")
