"""Sphinx configuration of gradtx's documentation site.

Build: ``pip install -e ".[docs]"``, then
``sphinx-build -W --keep-going -b html docs docs/_build/html`` (or ``make -C docs html``).
The build runs offline: MathJax is served from the site itself (sphinx-mathjax-offline) and
intersphinx fetches inventories only when ``GRADTX_DOCS_INTERSPHINX=1`` is set. The notebooks
are executed at build time (myst-nb, cached between builds in ``docs/_build/.jupyter_cache``).
"""

from __future__ import annotations

import ast
import importlib
import os
from pathlib import Path
import re
import shutil
import sys
import types

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))

project = "gradtx"
author = "the gradtx authors"
copyright = "the gradtx authors"  # noqa: A001  (Sphinx's name)

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",
    "sphinx_copybutton",
]
# The optimizer pages come from another extension; the site builds without it.
HAS_OPTIMIZER_PAGES = (DOCS / "_ext" / "optimizer_pages.py").exists()
if HAS_OPTIMIZER_PAGES:
    extensions.append("optimizer_pages")

# Inventories are downloaded, so intersphinx is on only where the network is (the published
# site); offline (CI, a laptop on a train) references to jax/optax/flax/numpy stay plain text.
if os.environ.get("GRADTX_DOCS_INTERSPHINX") == "1":
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "jax": ("https://docs.jax.dev/en/latest/", None),
        "optax": ("https://optax.readthedocs.io/en/latest/", None),
        "flax": ("https://flax.readthedocs.io/en/latest/", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
    }

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "README.md"]
templates_path = ["api/_templates"]

html_theme = "sphinx_book_theme"
html_title = "gradtx"
html_theme_options = {
    "repository_url": "https://github.com/gradtx/gradtx",
    "use_repository_button": False,
    "show_toc_level": 2,
    "navigation_with_keys": False,
    # The sidebar expands only the current page's branch: with every branch open, each of the
    # ~500 pages carried the whole navigation (all API entries), which was 60% of the build
    # (pydata-sphinx-theme's toctree per page) and made the index page four times larger.
    "collapse_navbar": True,
}
html_static_path: list[str] = []

# Markdown: $...$ and $$...$$ math, ::: fences, headings with anchors for links between pages.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# Notebooks: executed at build time with their outputs shown; a failing cell fails the build.
# "cache" re-runs a notebook only when its code changed (jupyter-cache); the first build takes
# a few minutes of CPU. GRADTX_NOTEBOOK_QUICK=1 shortens the two long training runs, as in
# tests/test_notebooks.py; set it to 0 for the full-length figures.
nb_execution_mode = os.environ.get("GRADTX_DOCS_EXECUTE", "cache")
nb_execution_timeout = 900  # seconds per cell
nb_execution_raise_on_error = True
nb_execution_show_tb = True

autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": False}
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# A NamedTuple's fields are documented by their names; "Alias for field number 0" says nothing.
napoleon_use_ivar = True

# Docstrings' ``>>>`` examples are shown as code; tests run them (pytest --doctest-modules).
pygments_style = "default"

# -- The notebooks ------------------------------------------------------------------------------
# Sphinx reads sources only under docs/, the notebooks live in notebooks/: they are copied to
# docs/notebooks/ (git-ignored) at each build, keeping their times so unchanged ones are reused.
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _prepare_notebooks(app) -> None:
    # The kernels inherit this environment (set here, not at import: tests import this file).
    os.environ.setdefault("GRADTX_NOTEBOOK_QUICK", "1")
    # The landscapes and saddles notebooks write their figures here instead of over docs/*.png.
    os.environ.setdefault("GRADTX_NOTEBOOK_OUT", str(DOCS / "_build" / "notebook_out"))
    target = DOCS / "notebooks"
    target.mkdir(exist_ok=True)
    for stale in set(target.glob("*.ipynb")) - {target / p.name for p in NOTEBOOKS}:
        stale.unlink()
    for path in NOTEBOOKS:
        copy = target / path.name
        if not copy.exists() or copy.read_bytes() != path.read_bytes():
            shutil.copy2(path, copy)


# -- API coverage -------------------------------------------------------------------------------
# The modules whose every public name must have an entry in docs/api/*.rst.
API_MODULES = (
    "gradtx",
    "gradtx.compat.pytorch",
    "gradtx.compat.pytorch.lr_scheduler",
    "gradtx.compat.pytorch.swa_utils",
    "gradtx.compat.keras",
    "gradtx.compat.keras.schedules",
    "gradtx.masks",
    "gradtx.checkpoint",
)


def public_names(module: types.ModuleType) -> set[str]:
    """The names a module exports: defined in it, or re-exported as ``from x import y as y``.

    Read from the source rather than ``dir(module)``, which also lists what the module merely
    imports (``jax``, ``Any``, helpers from ``gradtx._base``). The ``y as y`` form is the
    package's (and type checkers') marker of a re-export. Submodules are documented as pages
    of their own, so they are left out.
    """
    tree = ast.parse(Path(module.__file__).read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update(a.asname for a in node.names if a.asname and a.asname == a.name)
    return {
        n
        for n in names
        if not n.startswith("_") and not isinstance(getattr(module, n), types.ModuleType)
    }


_CURRENTMODULE = re.compile(r"^\.\. currentmodule:: (\S+)\s*$")
_ENTRY = re.compile(r"^   ([A-Za-z_][\w.]*)\s*$")


def documented_names(api_dir: Path = DOCS / "api") -> set[str]:
    """Fully qualified names listed in the autosummary tables of ``docs/api/*.rst``."""
    names = set()
    for page in sorted(api_dir.glob("*.rst")):
        module, in_table = None, False
        for line in page.read_text().splitlines():
            if match := _CURRENTMODULE.match(line):
                module = match.group(1)
            elif line.startswith(".. autosummary::"):
                in_table = True
            elif in_table and line and not line.startswith("   "):
                in_table = False
            elif in_table and (match := _ENTRY.match(line)):
                names.add(f"{module}.{match.group(1)}")
    return names


def undocumented_names(api_dir: Path = DOCS / "api") -> list[str]:
    """Public names of API_MODULES without an entry in the API reference."""
    documented = documented_names(api_dir)
    missing = []
    for module_name in API_MODULES:
        module = importlib.import_module(module_name)
        missing += [
            f"{module_name}.{n}"
            for n in sorted(public_names(module))
            if f"{module_name}.{n}" not in documented
        ]
    return missing


def _check_api_coverage(app) -> None:
    from sphinx.util import logging

    logger = logging.getLogger("gradtx.api_coverage")
    for name in undocumented_names():
        # A warning: -W turns it into a failed build.
        logger.warning("%s is public but has no entry in docs/api/*.rst", name)


def _without_optimizer_pages(app, docname, source) -> None:
    """Until docs/_ext/optimizer_pages.py exists, the index neither lists nor links its pages."""
    if docname == "index" and not HAS_OPTIMIZER_PAGES:
        text = re.sub(r"```\{toctree\}\n:caption: Optimizers\n.*?```\n", "", source[0], flags=re.S)
        source[0] = re.sub(r"\[([^]]*)\]\(optimizers/index\)", r"\1", text)


_INLINE_LITERAL = re.compile(r"(``.+?``)")


def _escape_bars(app, what, name, obj, options, lines) -> None:
    """Show ``|g|`` in docstring prose as an absolute value, not a substitution reference.

    The docstrings are written for ``help()`` first, where ``|g|`` is the natural notation;
    reStructuredText would read it as an undefined substitution. Literal blocks (after ``::``),
    doctests and inline literals are left as they are.
    """
    literal_indent = None  # indentation of the line that opened a literal block
    in_doctest = False
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if literal_indent is not None:
            if not stripped or indent > literal_indent:
                continue
            literal_indent = None
        if stripped.startswith(">>>"):
            in_doctest = True
        if in_doctest:
            in_doctest = bool(stripped)
            continue
        parts = _INLINE_LITERAL.split(line)
        lines[i] = "".join(p if p.startswith("``") else p.replace("|", r"\|") for p in parts)
        if line.rstrip().endswith("::"):
            literal_indent = indent


# A link (not an image) from the README to a file of the repository that is not a page of the
# site: benchmark results and figures, the notebooks' sources, examples.
_REPOSITORY_LINK = re.compile(
    r"(?<!!)\[([^]]*)\]\(((?:benchmarks|notebooks|examples|results|docs)/[^)#]*)[^)]*\)"
)


def _unlink_repository_files(app, relative_path, parent_docname, content) -> None:
    """README's links to files outside the site become their text, naming the file."""
    if Path(relative_path).name == "README.md":
        content[0] = _REPOSITORY_LINK.sub(_as_text, content[0])


def _as_text(link: re.Match) -> str:
    text, target = link.group(1), link.group(2)
    return text if target.rstrip("/") in text else f"{text} (`{target}`)"


def setup(app):
    app.connect("include-read", _unlink_repository_files)
    app.connect("builder-inited", _prepare_notebooks)
    app.connect("builder-inited", _check_api_coverage)
    # After napoleon (priority 500), on the reStructuredText it produced.
    app.connect("autodoc-process-docstring", _escape_bars, priority=600)
    app.connect("source-read", _without_optimizer_pages)
