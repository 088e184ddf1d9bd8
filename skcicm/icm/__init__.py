"""The CLIP-ICM estimator (:class:`~skcicm.InvariantCausalMechanism`) and its machinery.

The estimator maps CLIP embeddings to their invariant factors. Its statistics add up batch by
batch in O(d^2) memory (:class:`InterventionStatistics`, also over Dask chunks), the invariant
subspace solves a generalised eigenproblem (:func:`invariant_subspace`), and
:class:`EmbeddingsWithContext` carries the interventional embeddings from the featurizer to
the estimator through a ``Pipeline``.

Each public name is imported when first used, so that importing this package loads no
scikit-learn until a name that needs it is looked up.
"""

from typing import TYPE_CHECKING

from skcicm._lazy import lazy_attributes

if TYPE_CHECKING:
    from skcicm.icm._estimator import InvariantCausalMechanism
    from skcicm.icm._fit_context import EmbeddingsWithContext, TransformWithContext
    from skcicm.icm._fit_inputs import NoInterventionError
    from skcicm.icm._statistics import InterventionStatistics, chunk_rows, dask_statistics
    from skcicm.icm._subspace import invariant_subspace

_WHERE = {
    "InvariantCausalMechanism": "skcicm.icm._estimator",
    "NoInterventionError": "skcicm.icm._fit_inputs",
    "EmbeddingsWithContext": "skcicm.icm._fit_context",
    "TransformWithContext": "skcicm.icm._fit_context",
    "InterventionStatistics": "skcicm.icm._statistics",
    "chunk_rows": "skcicm.icm._statistics",
    "dask_statistics": "skcicm.icm._statistics",
    "invariant_subspace": "skcicm.icm._subspace",
}
__all__ = [
    "chunk_rows",
    "dask_statistics",
    "EmbeddingsWithContext",
    "InterventionStatistics",
    "invariant_subspace",
    "InvariantCausalMechanism",
    "NoInterventionError",
    "TransformWithContext",
]
__getattr__, __dir__ = lazy_attributes(__name__, _WHERE, globals())
