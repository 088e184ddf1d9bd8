"""The vocabulary of the protocols: methods, intervention sources, tuning rules, default grid.

Pure Python with no numpy, scikit-learn or torch import, so that the command line can build
its help from these names without loading anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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
# The rules of skcicm.model_selection.InterventionalScorer (its RULES), here without importing
# scikit-learn; the "interventional" tuning rule scores with one of them.
INTERVENTIONAL_RULES: tuple[str, ...] = ("pooled", "intervened", "worst", "worst_view")
# InterventionalScorer's default rule (chosen in docs/results.md, "Selection rules"), named for
# the command line's help; the protocols leave the rule to the scorer.
DEFAULT_INTERVENTIONAL_RULE = "worst"
# The default grid contains the no-ICM setting (lam = 0, K = d: a rotation of CLIP's space), so
# that source tuning can fall back to plain CLIP where the method does not help. The grid and
# the trace scale are those docs/results.md recommends: with trace scaling the useful range of
# lam is the same for every intervention source; absolute lam >= 10 falls to chance.
DEFAULT_LAM: tuple[float, ...] = (0.0, 0.3, 1.0, 3.0)
LAM_SCALES: tuple[str, ...] = ("absolute", "trace")
DEFAULT_LAM_SCALE = "trace"
# The shortcut protocol's world unless told: the style predicts the class in 95% of each source
# cell; the targets give each class another class's style. Colours and backgrounds barely move
# ToyCLIP's probe; its captions name the style, and the probe leans on it (docs/results.md).
# The command line's default run draws a smaller world than the protocol's default (20 per
# cell), to finish in under 3 minutes on 2 cores.
DEFAULT_SHORTCUT: tuple[str, ...] = ("style",)
DEFAULT_RHO: tuple[float, ...] = (0.95,)
# The relations of skcicm.datasets.SHORTCUT_RELATIONS, here without importing numpy.
TARGET_RELATIONS: tuple[str, ...] = ("reassigned", "uncorrelated")
CLI_SHORTCUT_N_PER_CELL = 8
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


def check_choice(values: str | Iterable[str], allowed: Sequence[str], what: str) -> list[str]:
    """``values`` as a list, or a ValueError naming the unknown ones and the choices.

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
    values = [values] if isinstance(values, str) else list(values)
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
