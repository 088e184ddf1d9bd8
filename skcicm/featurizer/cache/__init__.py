"""The embedding cache of :class:`~skcicm.CLIPFeaturizer`, in memory and on disk.

A bounded in-memory LRU per process sits in front of one checksummed SQLite store per model on
disk, shared by worker processes, which claim the keys they are about to encode so that each
image is encoded once. Keys see the model weights (by content), the image content and the
interventions.

Each public name is imported when first used.
"""

from typing import TYPE_CHECKING

from skcicm._lazy import lazy_attributes

if TYPE_CHECKING:
    from skcicm.featurizer.cache._keys import (
        ModelWeightsChangedError,
        UncachedInterventionWarning,
        interventions_cache_id,
    )
    from skcicm.featurizer.cache._memory import (
        EmbeddingCache,
        clear_memory_cache,
        default_cache_dir,
        memory_cache_info,
        set_memory_cache_limit,
    )
    from skcicm.featurizer.cache._store import (
        CacheIntegrityWarning,
        ReadOnlyCacheWarning,
        close_stores,
    )

_WHERE = {
    **dict.fromkeys(
        ["ModelWeightsChangedError", "UncachedInterventionWarning", "interventions_cache_id"],
        "skcicm.featurizer.cache._keys",
    ),
    **dict.fromkeys(
        [
            "EmbeddingCache",
            "clear_memory_cache",
            "default_cache_dir",
            "memory_cache_info",
            "set_memory_cache_limit",
        ],
        "skcicm.featurizer.cache._memory",
    ),
    **dict.fromkeys(
        ["CacheIntegrityWarning", "ReadOnlyCacheWarning", "close_stores"],
        "skcicm.featurizer.cache._store",
    ),
}
__all__ = [
    "CacheIntegrityWarning",
    "clear_memory_cache",
    "close_stores",
    "default_cache_dir",
    "EmbeddingCache",
    "interventions_cache_id",
    "memory_cache_info",
    "ModelWeightsChangedError",
    "ReadOnlyCacheWarning",
    "set_memory_cache_limit",
    "UncachedInterventionWarning",
]
__getattr__, __dir__ = lazy_attributes(__name__, _WHERE, globals())
