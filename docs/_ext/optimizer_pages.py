"""Sphinx extension: one page per named optimizer, generated from ``gradtx._catalog``.

At ``builder-inited`` it writes ``docs/optimizers/<slug>.md`` (MyST) for every
catalog entry, with its summary, update rule, chain of primitives, defaults,
paper, the fidelity measurements of the README's table
(``benchmarks/fidelity.py`` writes it between its markers) and a runnable
example; and ``docs/optimizers/index.md``, the gallery by family. Pages are
rewritten only when their text changes, so Sphinx rebuilds only those.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
import inspect
from pathlib import Path

from gradtx._catalog import CATALOG, Entry, FAMILIES

ROOT = Path(__file__).resolve().parents[2]
# benchmarks/fidelity.py's markers (START, END).
FIDELITY_START, FIDELITY_END = "<!-- fidelity:start -->", "<!-- fidelity:end -->"
NOT_MEASURED = "—"

Table = dict[str, dict[str, str]]


def fidelity_table(readme: str) -> tuple[Table, list[str]]:
    """The README's optimizer fidelity table, ``{row: {column: cell}}``, and its notes."""
    start, end = readme.find(FIDELITY_START), readme.find(FIDELITY_END)
    if start < 0 or end < start:
        raise ValueError(f"README.md has no {FIDELITY_START} ... {FIDELITY_END} block")
    block = readme[start + len(FIDELITY_START) : end].strip()
    lines = block.splitlines()
    header = [c.strip() for c in lines[0].strip().strip("|").split("|")]
    rows: Table = {}
    body = 2  # after the header and the |---| line
    while body < len(lines) and lines[body].startswith("|"):
        cells = [c.strip() for c in lines[body].strip().strip("|").split("|")]
        rows[cells[0]] = dict(zip(header[1:], cells[1:], strict=True))
        body += 1
    notes = [n.strip() for n in "\n".join(lines[body:]).split("\n\n") if n.strip()]
    return rows, notes


def measurements(entry: Entry, rows: Table) -> list[tuple[str, str, str]]:
    """(row, column, cell) of the table that measure ``entry``: its row and its option
    variants ("adam (use_ema)"), in the columns it is anchored to."""
    name = entry.short_name
    return [
        (row, column, cells[column])
        for row, cells in sorted(rows.items())
        if row == name or row.startswith(f"{name} (")
        for column in entry.anchors
        if cells.get(column, NOT_MEASURED) != NOT_MEASURED
    ]


def notes_for(entry: Entry, notes: Iterable[str]) -> list[str]:
    """The table's notes on this entry: those headed "<name>, ..., <column>: ..."."""
    chosen = []
    for note in notes:
        head = note.split(":", 1)[0]
        names = [part.strip() for part in head.split(",")]
        if entry.short_name in names and any(column in names for column in entry.anchors):
            chosen.append(note)
    return chosen


def _default(value: object) -> str:
    if value is inspect.Parameter.empty:
        return "required"
    if callable(value) and hasattr(value, "__name__"):
        return f"`{value.__name__}`"  # a function's repr carries its address
    return f"`{value!r}`"


def defaults(entry: Entry) -> list[tuple[str, str]]:
    return [
        (name, _default(parameter.default))
        for name, parameter in inspect.signature(entry.factory).parameters.items()
        if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    ]


def example_code(entry: Entry) -> str:
    """A script that builds the example and takes three jitted steps on a small problem."""
    params = '{"w": jnp.full((4, 3), 0.5)}'
    if not entry.matrix_params:
        params = '{"w": jnp.full((4, 3), 0.5), "b": jnp.linspace(-1.0, 1.0, 3)}'
    extra = {
        "params": "params",
        "value": "value=value",
        "grad": "grad=grads",
        "value_fn": "value_fn=loss",
    }
    arguments = ", ".join(["grads", "state", *(extra[n] for n in entry.needs)])
    return f"""import jax
import jax.numpy as jnp
import gradtx


def loss(params):
    return sum(jnp.sum((x - 1.0) ** 2 + 0.1 * jnp.sin(3.0 * x)) for x in jax.tree.leaves(params))


params = {params}
tx = {entry.example_source}
state = tx.init(params)


@jax.jit
def step(params, state):
    value, grads = jax.value_and_grad(loss)(params)
    updates, state = tx.update({arguments})
    return gradtx.apply_updates(params, updates), state, value


for _ in range(3):
    params, state, value = step(params, state)
print(value)
"""


def _paper_line(paper) -> str:
    venue = f" {paper.venue}." if paper.venue else ""
    return f"- {paper.authors} ({paper.year}). *{paper.title}*.{venue} <{paper.url}>"


def _label(family: str) -> str:
    """The gallery's label of a family's section (labels are global to the site)."""
    return f"optimizers-{family.replace('_', '-')}"


def _link(name: str) -> str:
    entry = CATALOG[name]
    return f"[`{entry.qualname}`]({entry.slug}.md)"


def page(entry: Entry, rows: Table, notes: Iterable[str]) -> str:
    """The MyST page of one entry."""
    lines = [
        f"# {entry.qualname}",
        "",
        entry.summary,
        "",
        f"Family: {{ref}}`{FAMILIES[entry.family]} <{_label(entry.family)}>`. "
        f"API: {{py:obj}}`{entry.qualname}`.",
        "",
    ]
    if entry.ports:
        lines += [f"A port of {_link(entry.ports)}.", ""]
    ports = [e.name for e in CATALOG.values() if e.ports == entry.name]
    if ports:
        lines += ["Ports: " + ", ".join(_link(p) for p in ports) + ".", ""]
    lines += ["## Update rule", "", "```{math}", entry.rule.replace("\\\\", "\\\\\n"), "```", ""]
    lines += [
        "## Built from",
        "",
        f"`{entry.example_source}` is this chain of primitives:",
        "",
        "```text",
        repr(entry.build()),
        "```",
        "",
    ]
    lines += ["## Defaults", "", "| argument | default |", "|---|---|"]
    lines += [f"| `{name}` | {value} |" for name, value in defaults(entry)]
    lines += ["", "## References", ""]
    lines += [_paper_line(p) for p in entry.papers]
    lines += ["", "## Tested against", ""]
    measured = measurements(entry, rows)
    if measured:
        lines += [
            "The largest relative error over every float64 case the tests run (in "
            "parentheses: the number of cases), from the README's fidelity table:",
            "",
            "| reference | case | error (cases) |",
            "|---|---|---|",
        ]
        lines += [f"| {column} | {row} | {cell} |" for row, column, cell in measured]
        lines += ["", *(f"> {note}\n" for note in notes_for(entry, notes))]
    else:
        lines += ["No reference implementation: tested by its own unit tests.", ""]
    lines += ["## Example", "", "```python", example_code(entry).rstrip(), "```", ""]
    return "\n".join(lines)


def index(entries: Mapping[str, Entry]) -> str:
    """The gallery: a table per family, linking every page."""
    lines = [
        "# Optimizers",
        "",
        "Every named optimizer of gradtx and every port in `gradtx.compat`, by family. Each "
        "page has the update rule, the chain of primitives, the defaults, the paper, the "
        "references it is tested against with the measured error, and an example that runs.",
        "",
    ]
    for family, title in FAMILIES.items():
        members = [e for e in entries.values() if e.family == family]
        if not members:
            continue
        lines += [f"({_label(family)})=", f"## {title}", ""]
        lines += ["| optimizer | | paper |", "|---|---|---|"]
        for e in members:
            first = e.papers[0]
            lines.append(
                f"| [`{e.qualname}`]({e.slug}.md) | {e.summary} | "
                f"[{first.authors.split(',')[0]} {first.year}]({first.url}) |"
            )
        lines.append("")
    lines += ["```{toctree}", ":hidden:", "", *(e.slug for e in entries.values()), "```", ""]
    return "\n".join(lines)


def _write(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def write_pages(outdir: Path, readme: str) -> list[Path]:
    """Writes the gallery and every page into ``outdir``; removes pages of removed entries."""
    rows, notes = fidelity_table(readme)
    outdir.mkdir(parents=True, exist_ok=True)
    pages = {outdir / "index.md": index(CATALOG)}
    pages.update({outdir / f"{e.slug}.md": page(e, rows, notes) for e in CATALOG.values()})
    for stale in set(outdir.glob("*.md")) - set(pages):
        stale.unlink()
    for path, text in pages.items():
        _write(path, text)
    return sorted(pages)


def _on_builder_inited(app) -> None:
    write_pages(Path(app.srcdir) / "optimizers", (ROOT / "README.md").read_text())


def setup(app):
    app.connect("builder-inited", _on_builder_inited)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
