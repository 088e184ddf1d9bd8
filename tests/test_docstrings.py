"""Every public name of skcicm has a numpydoc docstring that documents what it takes and gives.

numpydoc's own validator checks each public class, function and method (those defined in
skcicm, not the ones inherited from scikit-learn) for the codes in ``CHECKS``, so that a new
parameter without its description, or a new public function without a docstring, fails here.
"""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

validate = pytest.importorskip("numpydoc.validate")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs"))
from api_names import PUBLIC_MODULES, public_names  # noqa: E402

#: The documented packages, and the private modules behind CLIPFeaturizer, its cache and the
#: estimator, whose public-looking functions and classes are held to the same standard.
VALIDATED_MODULES = (
    *PUBLIC_MODULES,
    "skcicm.featurizer._image_encoding",
    "skcicm.featurizer._decode_workers",
    "skcicm.featurizer._gpu_decoding",
    "skcicm.featurizer.cache._claims",
    "skcicm.featurizer.cache._keys",
    "skcicm.featurizer.cache._memory",
    "skcicm.featurizer.cache._store",
    "skcicm.icm._fit_context",
    "skcicm.icm._statistics",
)

#: GL08: no docstring; PR01: a parameter not documented; PR02: a documented parameter that does
#: not exist; RT01: no Returns section; SS01: no summary; PR07/RT03: no description of a
#: parameter / of what is returned; YD01: no Yields section.
CHECKS = {"GL08", "PR01", "PR02", "PR07", "RT01", "RT03", "SS01", "YD01"}


def _documented_objects() -> list[str]:
    paths = set()
    for module_name in VALIDATED_MODULES:
        module = importlib.import_module(module_name)
        for name in public_names(module):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            path = f"{obj.__module__}.{obj.__qualname__}"
            paths.add(path)
            if not inspect.isclass(obj) or issubclass(obj, BaseException):
                continue
            for attribute, member in vars(obj).items():
                # available_if methods (predict, score...) are descriptors holding the function.
                function = getattr(member, "fn", member)
                if attribute.startswith("_") or not (
                    inspect.isfunction(function)
                    or isinstance(function, (classmethod, staticmethod))
                ):
                    continue
                paths.add(f"{path}.{attribute}")
    return sorted(paths)


def _problems(path: str) -> list[str]:
    result = validate.validate(path)
    return [f"{code}: {message}" for code, message in result["errors"] if code in CHECKS]


def test_public_api_is_found():
    paths = _documented_objects()
    assert "skcicm.icm._estimator.InvariantCausalMechanism.fit" in paths
    assert "skcicm.featurizer._distributed.encode_images_dask" in paths


@pytest.mark.parametrize("path", _documented_objects())
def test_public_docstring_is_complete(path):
    assert _problems(path) == []


@pytest.mark.parametrize(
    "name", ["InvariantCausalMechanism", "InvariantCausalMechanismCV", "CLIPFeaturizer"]
)
def test_html_repr_links_to_the_api_page(name):
    import skcicm
    from skcicm.icm._estimator import DOCS_URL

    # The API pages are generated from skcicm.__all__ as api/generated/skcicm.<Name>.html.
    assert name in skcicm.__all__
    estimator = getattr(skcicm, name)()
    expected = DOCS_URL.rstrip("/") + f"/api/generated/skcicm.{name}.html"
    assert estimator._get_doc_link() == expected
    assert f'href="{expected}"' in estimator._repr_html_()


def test_doc_link_site_root_is_configurable():
    code = "from skcicm import InvariantCausalMechanism as E; print(E()._get_doc_link())"
    env = {**os.environ, "SKCICM_DOCS_URL": "file:///tmp/site/html/"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == "file:///tmp/site/html/api/generated/skcicm.InvariantCausalMechanism.html"
