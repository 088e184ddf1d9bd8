"""Data sets: ToyWorld and synthetic SCMs made here, DomainBed and ImageNet-variant loaders.

``skcicm.datasets.registry`` resolves a name, as the command line takes it, to a loader.
"""

from skcicm.datasets.domainbed import (
    DOMAINBED_DATASETS,
    canonical_domainbed_name,
    domainbed_holdout_mask,
    load_domainbed,
    load_image_folder_domains,
)
from skcicm.datasets.imagenet_variants import (
    IMAGENET_VARIANTS,
    find_imagenet_folders,
    imagenet_templates,
    load_imagenet_variant,
)
from skcicm.datasets.registry import (
    TOYWORLD_SEED,
    known_datasets,
    load_dataset,
    load_imagenet_datasets,
    load_toyworld_dataset,
)
from skcicm.datasets.shortcut import (
    SHORTCUT_RELATIONS,
    make_toyworld_shortcut,
    worst_group_accuracy,
)
from skcicm.datasets.synthetic import make_scm_embeddings
from skcicm.datasets.toyworld import (
    TOYWORLD_BACKGROUNDS,
    TOYWORLD_CLASSES,
    TOYWORLD_COLORS,
    TOYWORLD_DOMAINS,
    TOYWORLD_FACTOR_GROUPS,
    make_toyworld,
    render_counterfactuals,
    render_toyworld,
    toyworld_caption,
)

__all__ = [
    "DOMAINBED_DATASETS",
    "IMAGENET_VARIANTS",
    "SHORTCUT_RELATIONS",
    "TOYWORLD_BACKGROUNDS",
    "TOYWORLD_CLASSES",
    "TOYWORLD_COLORS",
    "TOYWORLD_DOMAINS",
    "TOYWORLD_FACTOR_GROUPS",
    "TOYWORLD_SEED",
    "canonical_domainbed_name",
    "domainbed_holdout_mask",
    "find_imagenet_folders",
    "imagenet_templates",
    "known_datasets",
    "load_dataset",
    "load_domainbed",
    "load_image_folder_domains",
    "load_imagenet_datasets",
    "load_imagenet_variant",
    "load_toyworld_dataset",
    "make_scm_embeddings",
    "make_toyworld",
    "make_toyworld_shortcut",
    "render_counterfactuals",
    "render_toyworld",
    "toyworld_caption",
    "worst_group_accuracy",
]
