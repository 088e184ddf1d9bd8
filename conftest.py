"""Keep the default on-disk embedding cache of tests and doctests in temporary folders.

One folder for the session (fixtures of wider scope encode before any test starts), and a fresh
one per test, so that a test that counts encodes starts from an empty cache.
"""

import pytest


@pytest.fixture(scope="session", autouse=True)
def _session_default_cache_dir(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SKCICM_CACHE_DIR", str(tmp_path_factory.mktemp("skcicm-session-cache")))
        yield


@pytest.fixture(autouse=True)
def _private_default_cache_dir(_session_default_cache_dir, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SKCICM_CACHE_DIR", str(tmp_path_factory.mktemp("skcicm-cache")))
