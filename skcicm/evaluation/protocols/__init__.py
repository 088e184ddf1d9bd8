"""The evaluation protocols of the CLIP-ICM paper, one module each, on one shared core.

Each protocol describes its splits and scores; ``skcicm.evaluation.sweep`` fits, sweeps and
selects. A new protocol is a new module here.
"""

from skcicm.evaluation.protocols.domain_shift import (
    check_domain_shift_options,
    domain_shift,
    domain_shift_split,
    evaluate_domain_shift,
)
from skcicm.evaluation.protocols.imagenet import (
    check_imagenet_variants_options,
    evaluate_imagenet_variants,
    imagenet_shift,
)
from skcicm.evaluation.protocols.open_class import (
    base_classes,
    check_open_class_options,
    evaluate_open_class,
    open_class,
)
from skcicm.evaluation.protocols.shortcut import shortcut

__all__ = [
    "base_classes",
    "check_domain_shift_options",
    "check_imagenet_variants_options",
    "check_open_class_options",
    "domain_shift",
    "domain_shift_split",
    "evaluate_domain_shift",
    "evaluate_imagenet_variants",
    "evaluate_open_class",
    "imagenet_shift",
    "open_class",
    "shortcut",
]
