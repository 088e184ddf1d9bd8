"""Evaluation protocols of the CLIP-ICM paper, their results files, tables and plots.

Where each concept lives:

- ``options``: method names, intervention sources, tuning rules and
  the default grid (no heavy imports);
- ``embedded``: a data set encoded once (:class:`EmbeddedDataset`,
  :func:`embed_dataset`) and what a model for a target may see of it;
- ``selection``: tuning rules (source LODO, interventional LODO, source
  holdout, oracle);
- ``sweep``: the fit / sweep / select / score core of every protocol;
- ``preflight``: what the protocols' checks need before encoding (the
  embedding dimension, a stand-in of the data set), so that bad options fail first;
- ``protocols``: one module per protocol (domain shift, shortcut,
  open class, ImageNet variants);
- ``reporting`` and ``plots``: results files,
  tables and sensitivity plots;
- ``shortcut_tables`` and ``takeaways``: the
  shortcut protocol's table and the measured one-line take-away under each table of the
  main job.

The names below are imported on first use, so that ``import skcicm.evaluation`` (and the
command line's help) does not load scikit-learn's model selection or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "METHODS": "options",
    "default_n_components": "options",
    "EmbeddedDataset": "embedded",
    "embed_dataset": "embedded",
    "domain_shift": "protocols",
    "domain_shift_split": "protocols",
    "evaluate_domain_shift": "protocols",
    "check_domain_shift_options": "protocols",
    "check_open_class_options": "protocols",
    "check_imagenet_variants_options": "protocols",
    "open_class": "protocols",
    "evaluate_open_class": "protocols",
    "base_classes": "protocols",
    "imagenet_shift": "protocols",
    "shortcut": "protocols",
    "evaluate_imagenet_variants": "protocols",
    "markdown_table": "reporting",
    "mean_confidence_interval": "reporting",
    "read_rows": "reporting",
    "write_rows": "reporting",
    "plot_accuracy_vs_param": "plots",
    "plot_accuracy_vs_rho": "plots",
    "plot_heatmap": "plots",
    "plot_protocol": "plots",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'skcicm.evaluation' has no attribute {name!r}")
    module = importlib.import_module(f"skcicm.evaluation.{_EXPORTS[name]}")
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
