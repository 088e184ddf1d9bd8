"""Checks of a protocol's options before any image is encoded.

Encoding a data set is the expensive part of an ``evaluate_*`` run; a typo in ``targets`` or a
negative ``lam`` must fail before it, not after. Each protocol validates its options in one
function that reads of the data only what is known before encoding: the labels, domains and
names, and the embedding dimension (the upper bound of ``n_components``). The protocol runs
that function on the encoded data; its ``evaluate_*`` entry point runs the same function first
on :func:`unencoded`, a stand-in of the data set with embeddings of
``embedding_dim`` columns that hold nothing. The shortcut protocol, which draws its own
worlds, checks its grid against ``embedding_dim`` before it encodes the first one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from skcicm.evaluation.embedded import EmbeddedDataset, dataset_fields

T = TypeVar("T")


def embedding_dim(featurizer: Any) -> int:
    """The dimension of the featurizer's embeddings, without encoding any image.

    A fitted :class:`~skcicm.CLIPFeaturizer` records it (``embedding_dim_``); an unfitted one
    reads it from its model's configuration, without loading the weights
    (:func:`skcicm.featurizer.configured_embedding_dim`). Any other featurizer, or an ``hf-hub:``
    model not downloaded yet, is asked for one class embedding of one prompt: a single text
    encoding (it loads the model, which encoding the images would do anyway).
    The featurizer is not fitted here, so that the caller's object is left as it was given.
    """
    dim = getattr(featurizer, "embedding_dim_", None)
    if dim is None and hasattr(featurizer, "model_name"):
        from skcicm.featurizer._models import configured_embedding_dim

        dim = configured_embedding_dim(
            featurizer.model_name, featurizer.pretrained, getattr(featurizer, "weights_dir", None)
        )
    if dim is None:
        dim = featurizer.class_embeddings(["object"], ["a photo of a {}."]).shape[1]
    return int(dim)


def unencoded(
    dataset: Mapping[str, Any], n_features: int, interventions: Sequence[str] = ()
) -> EmbeddedDataset:
    """``dataset`` as the checks see it before encoding: labels, domains, names, dimension.

    The embeddings are zero-stride views of shape (n_samples, n_features): no memory and no
    values, only the shape that the checks read. With ``"image"`` or ``"counterfactual"`` in
    ``interventions``, the intervened copies the encoding will give are stood in for the same
    way (one view each), so that a check can see that they will exist.
    """
    n_samples = len(dataset["labels"])
    views = None
    if {"image", "counterfactual"} & set(interventions):
        views = np.broadcast_to(np.float32(0), (n_samples, 1, n_features))
    return EmbeddedDataset(
        embeddings=np.broadcast_to(np.float32(0), (n_samples, n_features)),
        interventions=views,
        **dataset_fields(dataset),
    )


def check_options(
    check: Callable[..., T], protocol: Callable[..., Any], *data: Any, **params: Any
) -> T:
    """Run ``check`` on the arguments ``protocol(*data, **params)`` would receive.

    Binding to the protocol's signature keeps its defaults in one place and makes an unknown
    keyword the TypeError the protocol would raise, now. ``check`` takes the parameters it
    validates, by the protocol's names.
    """
    bound = inspect.signature(protocol).bind(*data, **params)
    bound.apply_defaults()
    wanted = inspect.signature(check).parameters
    return check(**{name: value for name, value in bound.arguments.items() if name in wanted})
