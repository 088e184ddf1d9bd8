"""Evaluation protocols of the CLIP-ICM paper, their results files, tables and plots."""

from skcicm.evaluation.plots import plot_accuracy_vs_param, plot_heatmap, plot_protocol
from skcicm.evaluation.protocols import (
    METHODS,
    base_classes,
    default_n_components,
    domain_shift,
    embed_dataset,
    evaluate_domain_shift,
    evaluate_imagenet_variants,
    evaluate_open_class,
    imagenet_shift,
    open_class,
)
from skcicm.evaluation.reporting import (
    markdown_table,
    mean_confidence_interval,
    read_rows,
    write_rows,
)

__all__ = [
    "METHODS",
    "base_classes",
    "default_n_components",
    "domain_shift",
    "embed_dataset",
    "evaluate_domain_shift",
    "evaluate_imagenet_variants",
    "evaluate_open_class",
    "imagenet_shift",
    "markdown_table",
    "mean_confidence_interval",
    "open_class",
    "plot_accuracy_vs_param",
    "plot_heatmap",
    "plot_protocol",
    "read_rows",
    "write_rows",
]
