"""The evaluation protocols of the CLIP-ICM paper, one module each, on one shared core.

Each protocol describes its splits and scores; :mod:`skcicm.evaluation.sweep` fits, sweeps and
selects. A new protocol is a new module here.
"""

from skcicm.evaluation.protocols.domain_shift import (
    domain_shift,
    domain_shift_split,
    evaluate_domain_shift,
)
from skcicm.evaluation.protocols.imagenet import evaluate_imagenet_variants, imagenet_shift
from skcicm.evaluation.protocols.open_class import base_classes, evaluate_open_class, open_class
from skcicm.evaluation.protocols.shortcut import shortcut

__all__ = [
    "base_classes",
    "domain_shift",
    "domain_shift_split",
    "evaluate_domain_shift",
    "evaluate_imagenet_variants",
    "evaluate_open_class",
    "imagenet_shift",
    "open_class",
    "shortcut",
]
