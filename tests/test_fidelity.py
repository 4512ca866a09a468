"""benchmarks/fidelity.py: its sections are registered, its tables read as the README's, and
--write puts them between their markers.

Two cheap sections run for real (swa_utils' averaged_model and swalr, one per table): their rows
carry every recorded case and stay below the tolerance ``test_compat_swa_utils`` asserts.
"""

from __future__ import annotations

import inspect
import pathlib
import sys

import pytest
import test_compat_swa_utils as swa

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import fidelity  # noqa: E402


def _rows(text: str) -> dict[str, list[str]]:
    """A markdown table's cells by row name, the header's included."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    return {cells[0]: cells[1:] for cells in (line.strip("| ").split(" | ") for line in lines)}


def _cell(text: str) -> tuple[float, int]:
    error, count = text.split()
    return float(error), int(count.strip("()"))


def test_every_section_is_run():
    defined = {
        name
        for name, f in inspect.getmembers(fidelity, inspect.isfunction)
        if name.endswith("_errors") and f.__module__ == fidelity.__name__
    }
    assert {fidelity._name(section) for section, _ in fidelity.sections([])} == defined


def test_two_sections_make_both_tables(capsys):
    fidelity.main(["--only", "averaged_model_errors", "--only", "swalr_errors"])
    optimizers, schedules = capsys.readouterr().out.split("\n\n")
    rows = _rows(optimizers)
    assert rows.pop("optimizer") == list(fidelity.COLUMNS)
    pytorch, *others = rows.pop("averaged_model")
    assert rows == {} and set(others) == {"—"}
    error, count = _cell(pytorch)
    assert count == len(swa.AVERAGED) and error < swa.ATOL

    rows = _rows(schedules)
    assert rows.pop("schedule") == list(fidelity.SCHEDULE_COLUMNS)
    assert rows.pop("swalr")[1] == "—" and rows == {}
    error, count = _cell(_rows(schedules)["swalr"][0])
    assert count == len(swa.SWALR) and error < swa.ATOL


def test_write_needs_every_section():
    with pytest.raises(SystemExit):
        fidelity.main(["--write", "--only", "swalr_errors"])


def test_replace_block_between_markers_or_after_the_first_table():
    start, end = fidelity.SCHEDULES_START, fidelity.SCHEDULES_END
    readme = f"intro\n{fidelity.START}\nold\n{fidelity.END}\nprose\n"
    added = fidelity.replace_block(readme, start, end, "new", after=fidelity.END)
    assert added == f"intro\n{fidelity.START}\nold\n{fidelity.END}\n\n{start}\nnew\n{end}\nprose\n"
    # Again, between the markers now; a backslash in the table is kept as it is.
    replaced = fidelity.replace_block(added, start, end, r"a \d b", after=fidelity.END)
    assert replaced == added.replace("\nnew\n", "\na \\d b\n")
    with pytest.raises(SystemExit, match="neither"):
        fidelity.replace_block("no markers", start, end, "new", after=fidelity.END)
