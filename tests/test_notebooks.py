"""The notebooks under notebooks/ run top to bottom, and are committed without outputs.

Each notebook runs in a fresh kernel, from its own folder (as Jupyter runs it), with
GRADTX_NOTEBOOK_QUICK=1 (the comparison trains briefly) and GRADTX_NOTEBOOK_OUT pointing at a
temporary folder (so the figures do not overwrite docs/*.png).
"""

from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
# Files a notebook must write to GRADTX_NOTEBOOK_OUT.
WRITES = {
    "landscapes": ["landscapes.png"],
    "saddles": ["saddles.png"],
    "comparison": ["compare_digits_keras.png", "compare_digits_keras.json"],
    "learning_rate_free": [
        "learning_rate_free_estimates.png",
        "learning_rate_free_schedule_free.png",
    ],
    "gradient_free": ["gradient_free_digits.png", "gradient_free_landscapes.png"],
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def by_name(paths: list[Path]):
    return pytest.mark.parametrize("path", paths, ids=[p.stem for p in paths])


def test_the_seven_notebooks_are_there():
    assert {p.stem for p in NOTEBOOKS} == {
        "learning_rate_free",
        "landscapes",
        "from_primitives",
        "schedules",
        "comparison",
        "saddles",
        "gradient_free",
    }


@by_name(NOTEBOOKS)
def test_notebook_is_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {index} has outputs: strip them before committing"
            assert cell.execution_count is None, f"cell {index} has an execution count"


@by_name(NOTEBOOKS)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADTX_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.setenv("GRADTX_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # jupyter_core warns (DeprecationWarning) unless told to use the platformdirs locations.
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError, with the traceback, if a cell fails

    for name in WRITES.get(path.stem, []):
        written = tmp_path / name
        assert written.stat().st_size > 0, f"{path.name} did not write {name}"
        if written.suffix == ".png":
            assert written.read_bytes()[:8] == PNG_SIGNATURE
