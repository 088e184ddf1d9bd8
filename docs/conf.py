"""Sphinx configuration of the skcicm documentation.

Build offline, with warnings as errors, from the repository root::

    python -m sphinx -W -b html docs docs/_build/html

The API pages are generated here from each public package's ``__all__`` and the CLI page from
``skcicm.cli.build_parser()``, so that neither can fall behind the code. The example gallery
runs every ``examples/plot_*.py``; set ``SKCICM_DOCS_GALLERY`` to a regular expression to run
only the matching examples (the others are rendered without output), or to ``off`` to skip
running them all.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# Document (and run the gallery with) the skcicm of this checkout, not another installed copy.
sys.path.insert(0, str(ROOT))
# ...also in the subprocesses that examples start (``python -m skcicm``).
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

from sphinx.errors import PycodeError  # noqa: E402
from sphinx.pycode import ModuleAnalyzer  # noqa: E402

import skcicm  # noqa: E402

project = "skcicm"
author = "skcicm developers"
copyright = "2026, skcicm developers"  # noqa: A001
release = skcicm.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_parser",
    "sphinxarg.ext",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "_inventories",
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "**/sg_execution_times.rst",
]
nitpicky = False

# -- API reference ---------------------------------------------------------------------------
# The documented packages and names are listed in docs/api_names.py, which the docstring
# tests (tests/test_docstrings.py) validate too.
sys.path.insert(0, str(DOCS))
from api_names import PUBLIC_MODULES, public_names  # noqa: E402


def _kind(obj) -> str:
    if inspect.isclass(obj):
        return "Exceptions and warnings" if issubclass(obj, BaseException) else "Classes"
    if callable(obj):
        return "Functions"
    return "Constants"


def _api_page(module_name: str, documented: dict[int, str]) -> str:
    """The page of ``module_name``; ``documented`` maps the id of each object already given a
    page to its documented name. A class or function re-exported by a later package (such as
    ``skcicm.model_selection.InvariantCausalMechanismCV``, also ``skcicm``'s) gets one page
    only: Sphinx refuses two descriptions of one object."""
    module = importlib.import_module(module_name)
    summary = (inspect.getdoc(module) or "").split("\n\n")[0]
    groups: dict[str, list[str]] = {}
    elsewhere: list[str] = []
    for name in public_names(module):
        obj = getattr(module, name)
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and id(obj) in documented:
            elsewhere.append(documented[id(obj)])
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            documented[id(obj)] = f"{module_name}.{name}"
        groups.setdefault(_kind(obj), []).append(name)
    lines = [
        f"``{module_name}``",
        "=" * (len(module_name) + 4),
        "",
        f".. automodule:: {module_name}",
        "   :no-members:",
        "",
        f".. currentmodule:: {module_name}",
        "",
    ]
    if not summary:
        lines[3:6] = []
    for kind in ("Classes", "Functions", "Exceptions and warnings", "Constants"):
        if kind not in groups:
            continue
        lines += [kind, "-" * len(kind), "", ".. autosummary::", "   :toctree: generated/"]
        template = "   :template: data.rst" if kind == "Constants" else None
        if template:
            lines.append(template)
        lines += ["", *(f"   {name}" for name in groups[kind]), ""]
    if elsewhere:
        names = ", ".join(f":obj:`~{name}`" for name in elsewhere)
        lines += [f"Also exported here (see its page): {names}.", ""]
    return "\n".join(lines)


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _api_overview(documented: dict[int, str]) -> str:
    """The tables of docs/api.rst: one section per package, in the order of ``PUBLIC_MODULES``,
    each public object with its one-line summary, linked to its page (an object re-exported by
    a later package is listed under the package that documents it)."""
    lines: list[str] = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        summary = (inspect.getdoc(module) or "").split("\n\n")[0].replace("\n", " ")
        title = f":mod:`{module_name}`"
        lines += [title, "-" * len(title), "", f".. currentmodule:: {module_name}", ""]
        lines += [summary, "", ".. autosummary::", ""]
        for name in public_names(module):
            obj = getattr(module, name)
            page = documented.get(id(obj), f"{module_name}.{name}")
            if page.rsplit(".", 1)[0] == module_name:
                lines.append(f"   {name}")
        lines.append("")
    return "\n".join(lines)


_documented: dict[int, str] = {}
for _name in PUBLIC_MODULES:
    _write_if_changed(DOCS / "api" / f"{_name}.rst", _api_page(_name, _documented))
# Not a .rst file, so that Sphinx reads it only where docs/api.rst includes it.
_write_if_changed(DOCS / "api" / "overview.inc", _api_overview(_documented))

autosummary_generate = True
# Methods inherited from scikit-learn (get_params, set_output, set_fit_request...) are
# documented by scikit-learn; their docstrings cross-reference its own pages.
autodoc_default_options = {"members": True}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = True

# In reStructuredText, a word ending in "_" is a link: fitted attributes such as
# ``n_components_`` written without backticks in a docstring's shape or prose would be
# broken links. Escape them once numpydoc has turned the docstring into reStructuredText.
_TRAILING_UNDERSCORE = re.compile(r"(?<![`*\w\\])([A-Za-z]\w*)_(?=[\s,.;:)\]]|$)")
_INLINE_LITERAL = re.compile(r"(``.+?``|`[^`]+`_?)")


_CODE_DIRECTIVE = re.compile(r"\.\. (code-block|code|sourcecode|doctest|testcode)::")


def _escape_attribute_names(app, what, name, obj, options, lines) -> None:
    # Code is shown as written: doctest blocks (from ">>>" to the next blank line), literal
    # blocks (after "::") and code directives keep their underscores.
    in_doctest = False
    code_indent = None
    for index, line in enumerate(lines):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if code_indent is not None:
            if not stripped or indent > code_indent:
                continue
            code_indent = None
        in_doctest = stripped.startswith(">>>") or (in_doctest and bool(stripped))
        if in_doctest:
            continue
        if stripped.endswith("::") or _CODE_DIRECTIVE.match(stripped):
            code_indent = indent
        parts = _INLINE_LITERAL.split(line)
        parts[::2] = [_TRAILING_UNDERSCORE.sub(r"\1\\_", part) for part in parts[::2]]
        lines[index] = "".join(parts)


def _constant_docstring(app, what, name, obj, options, lines) -> None:
    # A constant re-exported by a package has its "#:" comment in the submodule that defines
    # it; without one, autodoc would show the docstring of its type ("Built-in immutable...").
    if what != "data":
        return
    package, _, attribute = name.rpartition(".")
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith(package) and getattr(module, attribute, None) is obj:
            try:
                comments = ModuleAnalyzer.for_module(module_name).find_attr_docs()
            except PycodeError:
                continue
            if ("", attribute) in comments:
                lines[:] = list(comments["", attribute])
                return
    if inspect.getdoc(obj) == inspect.getdoc(type(obj)):
        lines.clear()


def _skip_routing_methods(app, what, name, obj, skip, options):
    # scikit-learn adds set_fit_request and friends to every estimator class; it documents them.
    return True if re.fullmatch(r"set_\w+_request", name) else None


def setup(app) -> None:
    app.connect("autodoc-process-docstring", _constant_docstring, priority=400)
    app.connect("autodoc-process-docstring", _escape_attribute_names, priority=900)
    app.connect("autodoc-skip-member", _skip_routing_methods)


# -- Links to other projects ------------------------------------------------------------------
# Inventories of the names the documentation uses, written from docs/_inventories/*.txt, so
# that the build links to scikit-learn, NumPy, PyTorch and Dask without a network (see the
# README there; open_clip publishes no Sphinx inventory).
def _write_inventory(listing: Path) -> tuple[str, Path]:
    import zlib

    root, *entries = listing.read_text().splitlines()
    # A path without an anchor gets "#$", the name itself (the anchor of Python objects).
    lines = [
        f"{name} {role} 1 {path if '#' in path else path + '#$'} -"
        for name, role, path in map(str.split, entries)
    ]
    header = (
        f"# Sphinx inventory version 2\n# Project: {listing.stem}\n# Version: \n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    inventory = listing.with_suffix(".inv")
    data = header.encode() + zlib.compress(("\n".join(lines) + "\n").encode())
    if not inventory.exists() or inventory.read_bytes() != data:
        inventory.write_bytes(data)
    return root, inventory


intersphinx_mapping = {
    listing.stem: (root, (str(inventory),))
    for listing in sorted((DOCS / "_inventories").glob("*.txt"))
    for root, inventory in [_write_inventory(listing)]
}
# Parameter types such as "ndarray of shape (n, d)" link their known names.
numpydoc_xref_aliases = {
    "ndarray": "numpy.ndarray",
    "memmap": "numpy.memmap",
    "Bunch": "sklearn.utils.Bunch",
    "Pipeline": "sklearn.pipeline.Pipeline",
    "LogisticRegression": "sklearn.linear_model.LogisticRegression",
    "dask.array.Array": "dask.array.Array",
    "torch.Tensor": "torch.Tensor",
}
numpydoc_xref_ignore = "all"

# -- Example gallery ---------------------------------------------------------------------------
_gallery = os.environ.get("SKCICM_DOCS_GALLERY", "")
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": _gallery or "/plot_",
    "plot_gallery": "False" if _gallery == "off" else "True",
    "within_subsection_order": "gallery_settings.ExampleNumberSortKey",
    "reset_modules": ("matplotlib", "gallery_settings.save_figures_larger"),
    "abort_on_example_error": True,
    "doc_module": ("skcicm",),
    "backreferences_dir": "api/generated/backreferences",
    "reference_url": {"skcicm": None},
    "min_reported_time": 0,
    "show_memory": False,
    "remove_config_comments": True,
    "download_all_examples": False,
    # Figures are saved at 150 dpi (gallery_settings.SAVEFIG_DPI); no second, 2x copy.
    "image_srcset": [],
    "matplotlib_animations": False,
}

# -- HTML ----------------------------------------------------------------------------------------
# The estimators' HTML repr in a notebook links to their page of this site,
# ``<site root>/api/generated/skcicm.<Name>.html``, as scikit-learn's do. The site root is
# ``DOCS_URL`` of ``skcicm/icm/_estimator.py``: a placeholder until the site is published; set
# the environment variable SKCICM_DOCS_URL (read when skcicm is imported) to the root where this
# build is served, e.g. ``file:///path/to/docs/_build/html/``, to make those links point here.
html_theme = "pydata_sphinx_theme"
html_title = f"skcicm {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    # Every entry of the index's table of contents in the top bar, none under "More".
    "header_links_before_dropdown": 9,
    "navbar_end": ["theme-switcher", "navbar-icon-links"],
    "secondary_sidebar_items": ["page-toc"],
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
# Pages without sub-pages have no left sidebar, so that their tables get the full width.
html_sidebars = {
    page: []
    for page in (
        "index",
        "getting_started",
        "real_models",
        "performance",
        "results",
        "cli",
        "changelog",
        # The examples' figures get the width of the page; the gallery's index and the
        # previous / next links at the bottom of each example lead to the others.
        "auto_examples/*",
    )
}
html_show_sourcelink = False
myst_heading_anchors = 3
# Option names such as --root must not become en dashes.
smartquotes = False
