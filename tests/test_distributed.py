"""Encoding on a Dask LocalCluster (loopback, worker processes) equals encoding in one process."""

import numpy as np
import pytest
from PIL import Image

from skcicm import CLIPFeaturizer
from skcicm.featurizer import UnknownModelError
from skcicm.featurizer.cache import clear_memory_cache

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

from skcicm.featurizer._distributed import encode_images_dask  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            worker_dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture
def image_paths(domain_images, tmp_path):
    images, _, _ = domain_images
    paths = []
    for i, image in enumerate(images[::3]):
        paths.append(str(tmp_path / f"{i:03d}.png"))
        Image.fromarray(image).save(paths[-1])
    return paths


def _featurizer(name, **params):
    return CLIPFeaturizer(name, progress=False, n_interventions=2, **params)


def _models_loaded():
    from skcicm.featurizer._models import _load_resolved

    return _load_resolved.cache_info().misses


def test_cluster_encoding_equals_one_process_and_fills_the_shared_cache(
    client, tiny_clip_name, image_paths, tmp_path, encoded_count
):
    single = _featurizer(tiny_clip_name)
    expected = single.transform(image_paths)
    expected_views = single.intervention_embeddings(image_paths)
    shared = _featurizer(tiny_clip_name, cache_dir=tmp_path / "cache")
    encoded_count["images"] = 0
    embeddings = encode_images_dask(shared, image_paths, client=client, partition_size=5)
    views = encode_images_dask(
        shared, image_paths, client=client, partition_size=7, method="intervention_embeddings"
    )
    assert encoded_count["images"] == 0  # the work ran in the worker processes
    assert embeddings.dtype == np.float32 and embeddings.shape == expected.shape
    np.testing.assert_allclose(embeddings, expected, atol=1e-6)
    np.testing.assert_allclose(views, expected_views, atol=1e-6)
    loads = client.run(_models_loaded)
    assert len(loads) == 2 and max(loads.values()) == 1 and sum(loads.values()) >= 1
    clear_memory_cache()
    np.testing.assert_allclose(shared.transform(image_paths), expected, atol=1e-6)
    shared.intervention_embeddings(image_paths)
    assert encoded_count["images"] == 0


def test_lazy_dask_array_keeps_input_order(client, tiny_clip_name, image_paths):
    featurizer = _featurizer(tiny_clip_name, interventions=None)
    lazy = encode_images_dask(
        featurizer, image_paths[::-1], client=client, partition_size=5, as_dask_array=True
    )
    assert isinstance(lazy, da.Array)
    assert lazy.chunks == ((5, 5, 5, 3), (32,))
    computed = client.compute(lazy).result()
    np.testing.assert_allclose(computed[::-1], featurizer.transform(image_paths), atol=1e-6)
    with pytest.raises(ValueError, match="holds no images"):
        encode_images_dask(featurizer, [], client=client)


def test_bad_requests_fail_before_any_partition_is_encoded(client, tiny_clip_name, image_paths):
    featurizer = _featurizer(tiny_clip_name)
    with pytest.raises(ValueError, match="method must be one of"):
        encode_images_dask(featurizer, image_paths, method="predict")
    with pytest.raises(ValueError, match="partition_size must be at least 1"):
        encode_images_dask(featurizer, image_paths, partition_size=0)
    with pytest.raises(UnknownModelError, match="ViT-B-61"):
        encode_images_dask(_featurizer("ViT-B-61"), image_paths, client=client)
    with pytest.raises(ValueError, match="interventions=None"):
        encode_images_dask(
            _featurizer(tiny_clip_name, interventions=None),
            image_paths,
            client=client,
            method="intervention_embeddings",
        )
