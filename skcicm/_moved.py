"""Where the modules of the development layout moved (old module -> new module).

``skcicm/__init__.py`` installs :class:`MovedModuleFinder`, so that importing an old name fails
with an error that names the new place, instead of a bare "No module named".
"""

from __future__ import annotations

from importlib.abc import MetaPathFinder

MOVED = {
    "skcicm.models": "skcicm.featurizer._models",
    "skcicm.weight_digests": "skcicm.featurizer._weight_digests",
    "skcicm.images": "skcicm.featurizer._images",
    "skcicm.interventions": "skcicm.featurizer._interventions",
    "skcicm.image_encoding": "skcicm.featurizer._image_encoding",
    "skcicm.decode_threads": "skcicm.featurizer._decode_threads",
    "skcicm.decode_workers": "skcicm.featurizer._decode_workers",
    "skcicm.gpu_decoding": "skcicm.featurizer._gpu_decoding",
    "skcicm.distributed": "skcicm.featurizer._distributed",
    "skcicm.embedding_cache": "skcicm.featurizer.cache._memory",
    "skcicm.embedding_store": "skcicm.featurizer.cache._store",
    "skcicm.cache_keys": "skcicm.featurizer.cache._keys",
    "skcicm.encoding_claims": "skcicm.featurizer.cache._claims",
    "skcicm.estimator": "skcicm.icm._estimator",
    "skcicm.statistics": "skcicm.icm._statistics",
    "skcicm.subspace": "skcicm.icm._subspace",
    "skcicm.fit_inputs": "skcicm.icm._fit_inputs",
    "skcicm.fit_context": "skcicm.icm._fit_context",
    "skcicm.dask_blockwise": "skcicm.icm._dask_blockwise",
}


def public_home(new_module: str) -> str:
    """The public package of a moved module: ``skcicm.icm._estimator`` -> ``skcicm.icm``."""
    return new_module.rsplit(".", 1)[0]


class MovedModuleFinder(MetaPathFinder):
    """Refuse the old module names with an error that says where the module went."""

    def find_spec(self, fullname, path, target=None):  # noqa: D102 (the finder protocol)
        if fullname not in MOVED:
            return None
        new = MOVED[fullname]
        raise ModuleNotFoundError(
            f"{fullname} moved to {public_home(new)}: import its public names from "
            f"{public_home(new)} (the module itself is now the private {new}).",
            name=fullname,
        )
