"""The featurizer: images and text in, CLIP embeddings out (:class:`~skcicm.CLIPFeaturizer`).

Everything that turns images into embeddings lives here: the model names and the weights
behind them, image reading, the paper's image interventions, the streaming encoder with its
decoding threads, worker processes and GPU JPEG decoding, and encoding on a Dask cluster. The
embedding cache is :mod:`skcicm.featurizer.cache`.

Each public name is imported when first used, so that importing this package (or one of its
private modules) loads no torch until a name that needs it is looked up.
"""

from typing import TYPE_CHECKING

from skcicm._lazy import lazy_attributes

if TYPE_CHECKING:
    from skcicm.featurizer._distributed import encode_images_dask
    from skcicm.featurizer._featurizer import CLIPFeaturizer
    from skcicm.featurizer._images import MAX_ASPECT_RATIO, ImageLoadError
    from skcicm.featurizer._interventions import (
        ImageInterventions,
        InterventionError,
        paper_interventions,
    )
    from skcicm.featurizer._models import (
        LoadedCLIP,
        UnknownModelError,
        WeightsFileError,
        WeightsUnavailableError,
        configured_embedding_dim,
        load_clip,
        model_fingerprint,
        register_model,
        registered_models,
        resolve_model_name,
        save_local_dir,
        unregister_model,
    )

_WHERE = {
    "CLIPFeaturizer": "skcicm.featurizer._featurizer",
    "encode_images_dask": "skcicm.featurizer._distributed",
    "ImageLoadError": "skcicm.featurizer._images",
    "MAX_ASPECT_RATIO": "skcicm.featurizer._images",
    "ImageInterventions": "skcicm.featurizer._interventions",
    "InterventionError": "skcicm.featurizer._interventions",
    "paper_interventions": "skcicm.featurizer._interventions",
    **dict.fromkeys(
        [
            "LoadedCLIP",
            "UnknownModelError",
            "WeightsFileError",
            "WeightsUnavailableError",
            "configured_embedding_dim",
            "load_clip",
            "model_fingerprint",
            "register_model",
            "registered_models",
            "resolve_model_name",
            "save_local_dir",
            "unregister_model",
        ],
        "skcicm.featurizer._models",
    ),
}
__all__ = [
    "CLIPFeaturizer",
    "configured_embedding_dim",
    "encode_images_dask",
    "ImageInterventions",
    "ImageLoadError",
    "InterventionError",
    "load_clip",
    "LoadedCLIP",
    "MAX_ASPECT_RATIO",
    "model_fingerprint",
    "paper_interventions",
    "register_model",
    "registered_models",
    "resolve_model_name",
    "save_local_dir",
    "UnknownModelError",
    "unregister_model",
    "WeightsFileError",
    "WeightsUnavailableError",
]
__getattr__, __dir__ = lazy_attributes(__name__, _WHERE, globals())
