"""Validation of the interventional fit inputs of :class:`~skcicm.InvariantCausalMechanism`.

Each check names the parameter and the expected shape, and none copies the (possibly
memory-mapped) sample-aligned arrays: the statistics read them chunk by chunk.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse
from sklearn.utils.validation import check_array


class NoInterventionError(ValueError):
    """``lam > 0`` was asked for, but the fit received no interventional data."""


def missing_intervention_message(lam: float) -> str:
    """Why a fit with ``lam > 0`` has no Deltas, and the ways to give it some."""
    return (
        f"lam={lam} needs interventional data, and fit received none: no interventions, "
        "domains or intervention_pairs, and X carries no context from CLIPFeaturizer. The usual "
        "cause is a step between CLIPFeaturizer and InvariantCausalMechanism that drops the "
        "intervened embeddings (StandardScaler, FunctionTransformer, "
        'set_output(transform="pandas"), ColumnTransformer) or slicing the featurizer\'s '
        "output. Fixes: put InvariantCausalMechanism directly after CLIPFeaturizer, or wrap "
        "the step in between in skcicm.icm._fit_context.TransformWithContext; pass "
        "interventions=, domains= or intervention_pairs= to fit (route them as metadata in a "
        "search); or set lam=0 for a plain rotation / PCA of the embeddings."
    )


def check_interventions(interventions: Any, n_samples: int, n_features: int) -> np.ndarray:
    """Return interventions as a sample-major (n_samples, n_views, n_features) view.

    A 2-D array (n_samples, n_features) is one view. 3-D arrays must be sample-major, the
    layout that cross-validation splits along the samples; any other layout is refused rather
    than guessed.

    Examples
    --------
    >>> check_interventions(np.zeros((4, 3)), 4, 3).shape
    (4, 1, 3)
    >>> check_interventions(np.zeros((2, 4, 3)), 4, 3)
    Traceback (most recent call last):
    ...
    ValueError: interventions has shape (2, 4, 3), which looks views-major ...
    """
    if scipy.sparse.issparse(interventions):
        raise TypeError(
            f"interventions is a sparse {type(interventions).__name__}; embeddings are dense: "
            "pass a dense array (interventions.toarray())."
        )
    views = np.asarray(interventions)
    if views.dtype.kind not in "fiu":
        raise ValueError(f"interventions must hold numbers; got an array of dtype {views.dtype}.")
    if views.dtype.kind != "f":
        views = views.astype(np.float64)
    expected = (
        f"expected ({n_samples}, {n_features}) for one view, or the sample-major layout "
        f"(n_samples, n_views, n_features) = ({n_samples}, n_views, {n_features}), to match X"
    )
    if views.ndim == 2 and views.shape == (n_samples, n_features):
        return views[:, None, :]
    if views.ndim == 3 and views.shape[2] == n_features:
        if views.shape[0] == n_samples and views.shape[1] > 0:
            return views
        if views.shape[1] == n_samples:
            raise ValueError(
                f"interventions has shape {views.shape}, which looks views-major "
                f"(n_views, n_samples, n_features); {expected}. Use "
                "interventions.transpose(1, 0, 2)."
            )
    raise ValueError(f"interventions has shape {views.shape}; {expected}.")


def _is_missing(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "fc":
        return np.isnan(values)
    if values.dtype.kind == "O":
        return np.array([v is None or (isinstance(v, float) and v != v) for v in values])
    return np.zeros(values.shape, dtype=bool)


def check_domains(domains: Any, y: np.ndarray | None, n_samples: int) -> np.ndarray:
    """Validate domain labels: one per sample, none missing, and class labels beside them."""
    if y is None:
        raise ValueError(
            "domains needs class labels y: Deltas are built from differences of "
            "class-conditional means between domains."
        )
    domains = np.asarray(domains)
    if domains.shape != (n_samples,):
        raise ValueError(
            f"domains has shape {domains.shape}; expected ({n_samples},), one label per sample "
            "of X."
        )
    missing = _is_missing(domains)
    if missing.any():
        raise ValueError(
            f"domains has {int(missing.sum())} missing labels (NaN or None), e.g. at index "
            f"{int(np.flatnonzero(missing)[0])}; every sample needs its domain."
        )
    return domains


def has_domain_contrast(cells: set) -> bool:
    """Whether some class occurs in two or more domains among ``(label, domain)`` cells."""
    labels = [label for label, _ in cells]
    return len(labels) != len(set(labels))


def domain_cells(y: np.ndarray, domains: np.ndarray) -> set:
    """The distinct ``(label, domain)`` pairs present."""
    return set(zip(y.tolist(), domains.tolist(), strict=True))


def check_pairs(intervention_pairs: Any, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``(Z_a, Z_b)`` prompt-pair embeddings."""
    if not isinstance(intervention_pairs, tuple | list) or len(intervention_pairs) != 2:
        raise ValueError(
            "intervention_pairs must be a tuple (Z_a, Z_b) of two arrays of shape "
            "(n_pairs, n_features)."
        )
    first, second = (
        check_array(side, dtype=np.float64, input_name=f"intervention_pairs[{i}]")
        for i, side in enumerate(intervention_pairs)
    )
    if first.shape != second.shape or first.shape[1] != n_features:
        raise ValueError(
            f"intervention_pairs sides have shapes {first.shape} and {second.shape}; both "
            f"must be (n_pairs, {n_features})."
        )
    return first, second


def check_class_embeddings(
    class_embeddings: Any, class_labels: Any, y: Any, n_features: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validate the zero-shot head's class prompt embeddings and their labels."""
    if class_embeddings is None:
        raise ValueError(
            "head='zero_shot' needs class_embeddings: text embeddings of the class prompts, "
            "e.g. CLIPFeaturizer(...).class_embeddings(class_names), passed to fit() or "
            "computed by a CLIPFeaturizer with class_names in the same Pipeline."
        )
    class_embeddings = check_array(
        class_embeddings, dtype=np.float64, input_name="class_embeddings"
    )
    if class_embeddings.shape[1] != n_features:
        raise ValueError(
            f"class_embeddings has {class_embeddings.shape[1]} features but X has "
            f"{n_features}: both must come from the same CLIP model."
        )
    n_classes = class_embeddings.shape[0]
    labels = np.arange(n_classes) if class_labels is None else np.asarray(class_labels)
    if labels.shape != (n_classes,) or len(np.unique(labels)) != n_classes:
        raise ValueError(
            f"class_labels must hold {n_classes} distinct labels, one per row of "
            f"class_embeddings; got shape {labels.shape}."
        )
    if y is not None:
        unknown = np.setdiff1d(np.unique(y), labels)
        if unknown.size:
            raise ValueError(
                f"Labels {unknown.tolist()[:10]} in y have no class embedding; "
                f"class_labels are {labels.tolist()[:10]}."
            )
    return class_embeddings, labels
