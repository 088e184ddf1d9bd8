"""Keep every test's and doctest's default on-disk embedding cache in its own temporary folder."""

import pytest


@pytest.fixture(autouse=True)
def _private_default_cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SKCICM_CACHE_DIR", str(tmp_path_factory.mktemp("skcicm-cache")))
