"""gradtx._catalog: complete, its examples run, its LaTeX and papers well formed.

The catalog feeds the documentation's optimizer pages (docs/_ext/optimizer_pages.py),
which are tested here too: their fidelity rows come from the README's table and their
examples are executed for one entry of each family.
"""

from __future__ import annotations

import inspect
from pathlib import Path
import re
import sys
from urllib.parse import urlparse

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from registry import OPTIMIZERS

import gradtx
from gradtx import compat
from gradtx._catalog import ANCHORS, CATALOG, CORE, FAMILIES, NEEDS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
import optimizer_pages  # noqa: E402

# Public callables of compat that are not optimizers: gradient clips (first in a chain),
# Keras's wrappers around other optimizers, and a helper.
COMPAT_NOT_OPTIMIZERS = {
    "compat.pytorch.clip_grad_norm",
    "compat.pytorch.clip_grad_value",
    "compat.keras.loss_scale_optimizer",
    "compat.keras.multi_optimizer",
    "compat.keras.optimizer_map",
    "compat.keras.scale_loss",
}


def _compat_factories() -> set[str]:
    names = set()
    for framework in ("pytorch", "keras"):
        module = getattr(compat, framework)
        for name, value in vars(module).items():
            if not name.startswith("_") and callable(value) and not inspect.ismodule(value):
                names.add(f"compat.{framework}.{name}")
    return names


def test_every_registry_optimizer_has_an_entry_and_back():
    assert {e.name for e in OPTIMIZERS if e.kind == "optimizer"} == set(CORE)


def test_every_compat_optimizer_has_an_entry_and_back():
    ports = {name for name in CATALOG if name.startswith("compat.")}
    assert _compat_factories() - COMPAT_NOT_OPTIMIZERS == ports
    assert _compat_factories() >= COMPAT_NOT_OPTIMIZERS  # the exclusions are still there


def test_entries_are_consistent():
    for name, entry in CATALOG.items():
        assert entry.name == name
        assert callable(entry.factory), name
        assert entry.family in FAMILIES, name
        assert set(entry.needs) <= set(NEEDS), name
        assert set(entry.anchors) <= set(ANCHORS), name
        assert entry.summary.endswith(".") and "\n" not in entry.summary, name
        assert entry.papers, name
        if entry.ports is not None:
            assert entry.framework != "gradtx" and entry.ports in CORE, name
        # Every example argument is a parameter of the factory.
        assert set(entry.example) <= set(inspect.signature(entry.factory).parameters), name
    assert len({e.slug for e in CATALOG.values()}) == len(CATALOG)


def _balanced(latex: str) -> bool:
    depth = 0
    for char in re.sub(r"\\[{}]", "", latex):  # \{ and \} are literal braces
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


@pytest.mark.parametrize("name", CATALOG)
def test_rule_is_balanced_latex(name):
    rule = CATALOG[name].rule
    assert _balanced(rule)
    # \left and \right pair up (\leftarrow is a symbol).
    assert len(re.findall(r"\\left(?![a-z])", rule)) == len(re.findall(r"\\right(?![a-z])", rule))
    assert re.findall(r"\\begin\{(\w+)\}", rule) == re.findall(r"\\end\{(\w+)\}", rule)
    assert not rule.rstrip().endswith("\\\\")  # no empty last line


def test_balance_check_finds_unbalanced_braces():
    assert not _balanced(r"\frac{a}{b") and not _balanced(r"a}{") and _balanced(r"\{x\}")


ARXIV = re.compile(r"https://arxiv\.org/abs/(\d{2})(\d{2})\.\d{4,5}")


def test_papers_are_well_formed():
    for entry in CATALOG.values():
        for paper in entry.papers:
            url = urlparse(paper.url)
            assert url.scheme == "https" and "." in url.netloc and " " not in paper.url, paper
            assert 1950 <= paper.year <= 2026 and paper.authors and paper.title, paper
            if match := ARXIV.fullmatch(paper.url):
                # The arXiv id starts with the year it was posted (a venue may be a year later).
                assert abs(2000 + int(match.group(1)) - paper.year) <= 1, paper
            else:
                assert "arxiv" not in paper.url, paper


PARAMS = {"w": jnp.full((4, 3), 0.5), "b": jnp.linspace(-1.0, 1.0, 3)}


def _loss(params):
    return sum(jnp.sum((x - 1.0) ** 2 + 0.1 * jnp.sin(3.0 * x)) for x in jax.tree.leaves(params))


@pytest.mark.parametrize("name", CATALOG)
def test_example_builds_and_traces_with_its_update_keywords(name):
    """init and update trace (jax.eval_shape, no compilation) given only ``needs``."""
    entry = CATALOG[name]
    params = {"w": PARAMS["w"]} if entry.matrix_params else PARAMS
    tx = entry.build()
    value, grads = jax.value_and_grad(_loss)(params)
    given = {"params": params, "value": value, "grad": grads, "value_fn": _loss}
    extra = {k: v for k, v in given.items() if k in entry.needs and k != "params"}
    args = (params,) if "params" in entry.needs else ()
    state = jax.eval_shape(tx.init, params)
    updates, _ = jax.eval_shape(lambda g, s: tx.update(g, s, *args, **extra), grads, state)
    assert jax.tree.map(lambda u: (u.shape, u.dtype), updates) == jax.tree.map(
        lambda p: (p.shape, p.dtype), params
    )


def test_needs_are_checked():
    # Without the loss, L-BFGS's line search fails: the test above would catch a missing need.
    tx = CATALOG["lbfgs"].build()
    state = jax.eval_shape(tx.init, PARAMS)
    with pytest.raises(ValueError, match="needs"):
        jax.eval_shape(lambda g, s: tx.update(g, s, PARAMS), PARAMS, state)


# The page examples differ only in the update's keywords and the params' shapes: one entry
# of each kind is run as written (compiling every optimizer's step would take minutes).
RUN = ["adam", "polyak_sgd", "sophia", "lbfgs", "compat.pytorch.muon"]
assert {CATALOG[n].needs for n in RUN} == {e.needs for e in CATALOG.values()}


@pytest.mark.parametrize("name", RUN)
def test_page_example_runs(name, capsys):
    exec(optimizer_pages.example_code(CATALOG[name]), {"__name__": "example"})  # noqa: S102
    printed = float(capsys.readouterr().out)
    assert np.isfinite(printed)


@pytest.fixture(scope="module")
def fidelity():
    return optimizer_pages.fidelity_table((ROOT / "README.md").read_text())


def test_fidelity_cells_are_each_claimed_by_one_entry(fidelity):
    rows, _ = fidelity
    assert rows["adam"]["optax"] != optimizer_pages.NOT_MEASURED  # the table was parsed
    by_row: dict[str, list] = {}
    for entry in CATALOG.values():
        by_row.setdefault(entry.short_name, []).append(entry)
    for row, cells in rows.items():
        entries = by_row.get(row.split(" (")[0], [])
        for column, cell in cells.items():
            if entries and cell != optimizer_pages.NOT_MEASURED:
                claims = [e.name for e in entries if column in e.anchors]
                assert len(claims) == 1, (row, column, claims)


def test_every_anchor_is_measured(fidelity):
    rows, _ = fidelity
    for entry in CATALOG.values():
        for column in entry.anchors:
            cells = rows.get(entry.short_name, {})
            assert cells.get(column, optimizer_pages.NOT_MEASURED) != "—", (entry.name, column)


def test_page_has_rule_chain_defaults_papers_and_measurements(fidelity):
    rows, notes = fidelity
    text = optimizer_pages.page(CATALOG["soap"], rows, notes)
    assert "```{math}\n" in text and r"\sqrt{V} + \epsilon" in text
    assert "```text\nsoap(" in text  # the chain's repr
    assert "| `precondition_frequency` | `10` |" in text
    assert "https://arxiv.org/abs/2409.11321" in text
    assert f"| pytorch-optimizer | soap | {rows['soap']['pytorch-optimizer']} |" in text
    assert "> soap, pytorch-optimizer: " in text  # the table's note on it
    port = optimizer_pages.page(CATALOG["compat.keras.adam"], rows, notes)
    assert "A port of [`gradtx.adam`](adam.md)" in port and "| Keras | adam (use_ema) |" in port


def test_gallery_links_every_page_by_family(tmp_path):
    written = optimizer_pages.write_pages(tmp_path, (ROOT / "README.md").read_text())
    assert {p.name for p in written} == {"index.md"} | {f"{e.slug}.md" for e in CATALOG.values()}
    gallery = (tmp_path / "index.md").read_text()
    for entry in CATALOG.values():
        assert f"]({entry.slug}.md)" in gallery
    assert [t for t in FAMILIES.values() if f"## {t}\n" in gallery] == list(FAMILIES.values())
    assert gradtx.adam.__name__ in gallery
