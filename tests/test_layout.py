"""The package layout: old module names say where they went, packages re-export their public
names, and importing a package loads no heavy library before a name that needs it is used."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import skcicm
from skcicm._moved import MOVED

PACKAGES = ("skcicm", "skcicm.featurizer", "skcicm.featurizer.cache", "skcicm.icm")


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_old_module_names_fail_naming_the_new_place(old, new):
    importlib.import_module(new)  # the table names modules that exist
    package = new.rsplit(".", 1)[0]
    with pytest.raises(ModuleNotFoundError, match=f"{old} moved to {package}:") as error:
        importlib.import_module(old)
    assert error.value.name == old
    with pytest.raises(ModuleNotFoundError, match=f"moved to {package}"):
        exec(f"from {old} import something", {})


def test_every_module_of_the_old_layout_is_in_the_table():
    # skcicm.featurizer is a package now, so it is not in the table; every other module of 0.1
    # that moved is, and no module left at the top level is.
    from pathlib import Path

    import skcicm

    top = {f"skcicm.{path.stem}" for path in Path(skcicm.__file__).parent.glob("*.py")}
    assert not top & set(MOVED)
    assert len(MOVED) == 19 and all(new.rsplit(".", 1)[1].startswith("_") for new in MOVED.values())


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_re_export_their_public_names(package):
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(set(module.__all__))
    for name in module.__all__:
        obj = getattr(module, name)
        if callable(obj):  # constants such as MAX_ASPECT_RATIO have no home module
            assert obj.__module__.startswith("skcicm."), (name, obj.__module__)
        assert name in dir(module)
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'Nope'"):
        module.Nope  # noqa: B018


def test_a_private_module_of_each_package_lives_under_it():
    from skcicm.featurizer import CLIPFeaturizer
    from skcicm.featurizer.cache import EmbeddingCache
    from skcicm.icm import InvariantCausalMechanism

    assert CLIPFeaturizer.__module__ == "skcicm.featurizer._featurizer"
    assert InvariantCausalMechanism.__module__ == "skcicm.icm._estimator"
    assert EmbeddingCache.__module__ == "skcicm.featurizer.cache._memory"


def test_importing_the_packages_loads_no_torch_or_scikit_learn():
    code = (
        "import sys\n"
        "import skcicm, skcicm.featurizer, skcicm.featurizer.cache, skcicm.icm\n"
        "print(sorted(m for m in ('torch', 'sklearn', 'open_clip') if m in sys.modules))\n"
        "from skcicm.icm import InvariantCausalMechanism\n"
        "print('sklearn' in sys.modules, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["[]", "True False"]


# The layers of the package, bottom up: a module may import its own package and the layers
# below it, never a layer above (the folder listing then reads as the architecture).
LAYERS = {
    "skcicm._lazy": 0,
    "skcicm._moved": 0,
    "skcicm.prompts": 0,
    "skcicm.datasets": 1,
    "skcicm.icm": 2,
    "skcicm.featurizer": 3,
    "skcicm.model_selection": 3,
    "skcicm.evaluation": 4,
    "skcicm.cli": 5,
    "skcicm.__main__": 6,
}


def _package_modules():
    import ast
    from pathlib import Path

    root = Path(skcicm.__file__).parent
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
        top_level = {
            node.module
            for node in tree.body
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
        }
        yield name, {m for m in imported if m.startswith("skcicm.")}, top_level


def _layer(module):
    matches = [prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")]
    return max(matches, key=len) if matches else None


def test_no_import_runs_up_a_layer_or_across_one():
    upward = []
    for name, imported, _ in _package_modules():
        home = _layer(name)
        if home is None:
            continue
        for module in imported:
            target = _layer(module)
            if target is None or target == home:
                continue
            if LAYERS[target] >= LAYERS[home]:
                upward.append(f"{name} -> {module}")
    assert upward == []


def test_module_level_imports_have_no_cycle():
    graph = {
        name: {m for m in top if m.startswith("skcicm")} for name, _, top in _package_modules()
    }
    names = set(graph)
    seen, stack, cycles = set(), [], []

    def visit(node):
        if node in stack:
            cycles.append(stack[stack.index(node) :] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for target in graph.get(node, ()):
            if target in names:
                visit(target)
        stack.pop()

    for name in sorted(graph):
        visit(name)
    assert cycles == []
