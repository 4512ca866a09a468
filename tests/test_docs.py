"""The documentation site, checked as a reader would see it.

The API coverage and docstring tests always run (they read docs/api/*.rst and the package).
The others build the site with ``sphinx-build -W`` (incrementally into docs/_build/html) and
check its links; the test extra installs Sphinx, so CI builds the site in every run, without
executing the notebooks (tests/test_notebooks.py runs them; ``GRADTX_DOCS_EXECUTE=cache``, as
``.ci/docs`` sets it, executes them into the pages, a few minutes more). The browser checks
open pages in headless Chromium (the Debian package ``chromium``, which ``.ci/docs``
installs) and skip without it; screenshots go to docs/_build/screenshots/.
"""

from __future__ import annotations

import fcntl
from html.parser import HTMLParser
import importlib
import importlib.util
import inspect
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
HTML = DOCS / "_build" / "html"
SCREENSHOTS = DOCS / "_build" / "screenshots"
# TeX that must never reach the reader: MathJax replaces it with mjx-container elements.
RAW_TEX = ("\\frac", "\\sqrt", "\\beta", "\\eta", "\\begin{", "$$")


def _conf():
    spec = importlib.util.spec_from_file_location("gradtx_docs_conf", DOCS / "conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    return conf


def test_every_public_name_has_an_api_entry():
    assert _conf().undocumented_names() == []


def test_a_name_missing_from_the_api_pages_is_reported(tmp_path):
    conf = _conf()
    for page in (DOCS / "api").glob("*.rst"):
        text = page.read_text()
        (tmp_path / page.name).write_text(
            text.replace("   adam\n", "") if page.name == "gradtx.rst" else text
        )
    assert conf.undocumented_names(tmp_path) == ["gradtx.adam"]


def _args_section(doc: str) -> str:
    """The text of a Google-style ``Args:`` section (up to the next unindented line)."""
    match = re.search(r"^Args:\n((?:[ \t]+.*\n?|\n)*)", doc, flags=re.M)
    return match.group(1) if match else ""


def test_every_public_function_documents_each_argument_and_runs_an_example():
    # Issue 18, item 6: the docstring is the page. Every public function (the API pages'
    # modules) has an Args section naming each of its arguments and a doctest example,
    # which --doctest-modules runs.
    conf = _conf()
    lacking = []
    for module_name in conf.API_MODULES:
        module = importlib.import_module(module_name)
        for name in sorted(conf.public_names(module)):
            obj = getattr(module, name)
            if not inspect.isfunction(obj):
                continue
            doc = inspect.getdoc(obj) or ""
            args = _args_section(doc)
            wanted = [
                p.name
                for p in inspect.signature(obj).parameters.values()
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            ]
            missing = [a for a in wanted if not re.search(rf"\b{a}\b", args)]
            if ">>>" not in doc:
                missing.append("an example (>>>)")
            if missing:
                lacking.append(f"{module_name}.{name}: {', '.join(missing)}")
    assert lacking == [], "\n".join(lacking)


# -- The built site -------------------------------------------------------------------------------


class _Page(HTMLParser):
    """A page's ids, links, images and the text a reader sees outside code and rendered math."""

    HIDDEN = {"script", "style", "pre", "code", "mjx-container", "textarea"}

    def __init__(self):
        super().__init__()
        self.ids, self.links, self.images, self.text = set(), [], [], []
        self.tags: dict[str, int] = {}
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a" and "name" in attrs:
            self.ids.add(attrs["name"])
        if tag in ("a", "link") and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag in ("img", "script") and attrs.get("src"):
            (self.images if tag == "img" else self.links).append(attrs["src"])
        if tag in self.HIDDEN:
            self._hidden += 1

    def handle_endtag(self, tag):
        if tag in self.HIDDEN and self._hidden:
            self._hidden -= 1

    def handle_data(self, data):
        if not self._hidden:
            self.text.append(data)


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


_EXECUTE = os.environ.get("GRADTX_DOCS_EXECUTE", "off")


@pytest.fixture(scope="session")  # once per worker, however the modules interleave
def site() -> Path:
    pytest.importorskip(
        "sphinx", reason='the docs extra is not installed: pip install -e ".[docs]"'
    )
    # Incremental: a second build with nothing changed takes seconds. The notebooks are not
    # executed unless GRADTX_DOCS_EXECUTE says so (.ci/docs: "cache"): test_notebooks runs
    # them, and the build checks the pages, the API and the links in a few minutes of CPU.
    # The tests that read the site are one xdist group (one worker builds it); the lock keeps
    # any other process building into the same folder (a second pytest run) one at a time.
    HTML.parent.mkdir(parents=True, exist_ok=True)
    with open(HTML.parent / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        build = subprocess.run(
            [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", DOCS, HTML],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "GRADTX_DOCS_EXECUTE": _EXECUTE},
        )
    assert build.returncode == 0, build.stderr[-5000:]
    return HTML


def _local_target(page: Path, url: str) -> tuple[Path, str] | None:
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or url.startswith(("mailto:", "javascript:", "data:")):
        return None
    target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
    if target.is_dir():
        target = target / "index.html"
    return target, unquote(parts.fragment)


on_the_site_worker = pytest.mark.xdist_group("docs_site")  # one worker builds the site


@on_the_site_worker
def test_internal_links_resolve(site):
    # _static holds the theme's templates, not pages.
    pages = {p.resolve(): p for p in site.rglob("*.html") if "_static" not in p.parts}
    parsed = {p: _parse(p.read_text(errors="replace")) for p in pages}
    broken = []
    for path, page in parsed.items():
        for url in page.links + page.images:
            resolved = _local_target(path, url)
            if resolved is None:
                continue
            target, anchor = resolved
            if not target.exists():
                broken.append(f"{path.relative_to(site)}: {url} (no such file)")
            elif anchor and target in parsed and anchor not in parsed[target].ids:
                broken.append(f"{path.relative_to(site)}: {url} (no anchor #{anchor})")
    assert not broken, "\n".join(broken[:50])


@on_the_site_worker
def test_every_api_entry_has_a_page(site):
    conf = _conf()
    missing = [
        n
        for n in sorted(conf.documented_names())
        if not (site / "api" / "_autosummary" / f"{n}.html").exists()
    ]
    assert not missing


# -- In a browser ---------------------------------------------------------------------------------


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("no Chromium: apt-get install -y chromium")


def _render(page: Path, screenshot: str) -> _Page:
    """The page's DOM after its scripts ran (MathJax typesets asynchronously), and a screenshot."""
    browser = _chromium()
    flags = ["--headless", "--disable-gpu", "--no-sandbox", "--virtual-time-budget=30000"]
    url = page.resolve().as_uri()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            browser,
            *flags,
            "--window-size=1280,1600",
            f"--screenshot={SCREENSHOTS / screenshot}",
            url,
        ],
        capture_output=True,
        timeout=180,
        check=True,
    )
    assert (SCREENSHOTS / screenshot).stat().st_size > 10_000  # a blank page is about 5 kB
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    ).stdout
    return _parse(dom)


def _assert_math_rendered(page: _Page):
    assert page.tags.get("mjx-container", 0) > 0, "MathJax rendered no formula"
    visible = "".join(page.text)
    assert not [tex for tex in RAW_TEX if tex in visible], "raw TeX visible on the page"


@on_the_site_worker
def test_index_in_a_browser(site):
    page = _render(site / "index.html", "index.png")
    _assert_math_rendered(page)
    assert page.tags.get("pre", 0) >= 2  # the install line and the example
    assert any(src.endswith("landscapes.png") for src in page.images)


@on_the_site_worker
def test_api_page_of_adam_in_a_browser(site):
    page = _render(site / "api" / "_autosummary" / "gradtx.adam.html", "api_adam.png")
    visible = "".join(page.text)
    assert "gradtx.adam" in visible and "Kingma" in visible
    assert page.tags.get("pre", 0) >= 2  # the update rule and the doctest


@on_the_site_worker
def test_notebook_page_in_a_browser(site):
    page = _render(site / "notebooks" / "landscapes.html", "notebook_landscapes.png")
    _assert_math_rendered(page)
    assert page.tags.get("pre", 0) > 0
    if _EXECUTE == "off":
        pytest.skip("the notebooks were not executed: GRADTX_DOCS_EXECUTE=cache (.ci/docs)")
    # The notebook's figures, executed at build time.
    assert [src for src in page.images if "_images" in src]


@on_the_site_worker
def test_optimizer_page_in_a_browser(site):
    pages = sorted(p for p in (site / "optimizers").glob("*.html") if p.name != "index.html")
    if not pages:
        pytest.skip("no optimizer pages: docs/_ext/optimizer_pages.py is not there yet")
    adam = site / "optimizers" / "adam.html"
    page = _render(adam if adam.exists() else pages[0], "optimizer.png")
    _assert_math_rendered(page)
    assert page.tags.get("pre", 0) > 0  # the runnable example


@pytest.mark.skipif(os.environ.get("GRADTX_DOCS_INTERSPHINX") == "1", reason="online build")
@on_the_site_worker
def test_mathjax_is_served_by_the_site(site):
    """Offline: the pages load the site's own copy of MathJax, not a CDN's."""
    assert (site / "_static" / "mathjax" / "tex-chtml.js").exists()
    index = (site / "index.html").read_text()
    assert "cdn.jsdelivr.net" not in index and "mathjax/tex-chtml.js" in index
