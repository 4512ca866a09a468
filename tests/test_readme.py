"""Every Python block of the README runs as written, each on its own, in a fresh directory.

The blocks are the first code a user copies: one that names something undefined, or an
argument the library renamed, fails here. Blocks that import torch or keras are skipped
where those are not installed (the ``reference`` extra).
"""

from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def _title(source: str) -> str:
    """The block's first line that is not an import or blank, as its test id."""
    lines = [
        line
        for line in source.splitlines()
        if line.strip() and not line.startswith(("import ", "from ", "os.", "#"))
    ]
    return re.sub(r"\W+", "_", lines[0])[:40].strip("_") if lines else "block"


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 7


@pytest.mark.parametrize("source", BLOCKS, ids=[f"{i}-{_title(b)}" for i, b in enumerate(BLOCKS)])
def test_readme_block_runs(source, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")  # what the Keras block sets before importing
    for module in ("torch", "keras"):
        if re.search(rf"^import {module}$", source, flags=re.M):
            pytest.importorskip(module)
    monkeypatch.chdir(tmp_path)
    exec(compile(source, str(README), "exec"), {"__name__": "__readme__"})
