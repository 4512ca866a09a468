"""The in-process side of tools/mutation.py: many mutants in one Python process.

mutmut's own runner starts a fresh fork per mutant, which imports JAX, collects the test files
and compiles every program again: one or two mutants a minute here. This worker collects once
and then, for each mutant, switches mutmut's trampolines to it (they read the active mutant at
every call), clears JAX's compilation caches and the test modules' ``functools.cache`` results,
so no trace or result of the original code reaches the mutant, and runs the tests that call the
mutated function (``-x``: it stops at the first failure). It runs in the module's ``mutants/``
folder, where mutmut put the mutated copy of gradtx and the tests.

    python tools/mutation_worker.py generate              # in .mutation/MODULE: make mutants/
    python tools/mutation_worker.py survivors OUT         # in .mutation/MODULE: their diffs
    python tools/mutation_worker.py stats OUT TESTS...    # in mutants/: who calls what
    python tools/mutation_worker.py mutants STATS LOG NAMES_FILE TESTS...
    python tools/mutation_worker.py mutants - LOG NAMES_FILE TESTS...  # all TESTS, each mutant

``stats`` runs every selected test on the original code with mutmut's call recording on and
writes, as JSON, the tests that reach each function, the functions called while the test
modules are collected (a module-level ``adam(...)`` in a parametrize list: a mutant of those
runs differently in a fresh process, so tools/mutation.py re-checks its survivors there), the
tests that fail on the original code (left out) and each test's duration.

``mutants`` writes one line per event to LOG, flushed at once, so that tools/mutation.py can
stop a worker whose mutant runs too long: ``start NAME``, then ``done NAME CODE SECONDS TEST``
with mutmut's exit codes (1 killed, 0 survived) and the first failing test.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import sys
import time


def _mutmut_modules():
    from mutmut.mutation.trampoline import set_mutant_under_test
    from mutmut.state import state

    return set_mutant_under_test, state


def generate() -> None:
    """Writes mutants/ as `mutmut run` does before it tests anything, keeping known results."""
    from mutmut import __main__ as mutmut_main

    set_mutant_under_test, _ = _mutmut_modules()
    set_mutant_under_test("mutant_generation")
    Path("mutants").mkdir(exist_ok=True)
    mutmut_main.copy_src_dir()
    mutmut_main.copy_also_copy_files()
    mutmut_main.setup_source_paths()
    generated = mutmut_main.create_mutants(2)
    print(f"mutants: {generated.mutated} files mutated, {generated.unmodified} unchanged")


def survivors(out: str) -> None:
    """Writes the survivors of the last run and their diffs (in .mutation/MODULE) to ``out``."""
    from mutmut.__main__ import collect_source_file_mutation_data, get_diff_for_mutant

    mutants, _ = collect_source_file_mutation_data(mutant_names=[])
    stats = Path("fast-stats.json")
    at_collection = set(json.loads(stats.read_text())["collection_calls"]) if stats.exists() else ()
    lines = []
    for data, name, code in sorted(mutants, key=lambda m: m[1]):
        if code == 0:
            function = name.rpartition("__mutmut_")[0]
            # In process the tests were collected on the original code (tools/mutation.py).
            mark = " (runs at collection: --recheck)" if function in at_collection else ""
            diff = get_diff_for_mutant(name, path=data.path)
            changed = [
                line
                for line in diff.splitlines()
                if line[:1] in "+-" and line[:3] not in ("+++", "---")
            ]
            lines.append(f"## {name}{mark}\n" + "\n".join(changed) + "\n")
    Path(out).write_text("\n".join(lines))
    print(f"{len(lines)} survivors written to {out}")


# How every run of the tests here and in tools/mutation.py calls pytest: no reordering, no
# cache, no xdist, and none of pyproject's addopts (doctests, --dist).
PYTEST_OPTIONS = ["-q", "-p", "no:randomly", "-p", "no:cacheprovider", "-p", "no:xdist"]
PYTEST_OPTIONS += ["-o", "addopts="]

# gradtx's own memos of results computed by code that a mutant may change.
MEMOS = {"gradtx._base": ["_EXPECTED_STATES"]}


def _clear_test_caches() -> None:
    """Forget results cached by other code: the test modules' functools.cache results, and
    gradtx's memos (MEMOS; a state check would otherwise compare with the original's init)."""
    tests = str(Path("tests").resolve())
    for module in list(sys.modules.values()):
        if not (getattr(module, "__file__", None) or "").startswith(tests):
            continue
        for value in list(vars(module).values()):
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()
    for module, names in MEMOS.items():
        for name in names if module in sys.modules else ():
            getattr(sys.modules[module], name).clear()


class _Runner:
    """A pytest plugin that replaces the test loop (pytest_runtestloop)."""

    def __init__(self, mode: str, args: list[str]) -> None:
        self.mode, self.args = mode, args
        self.collection_calls: set[str] = set()

    def pytest_collection_finish(self, session) -> None:
        _, state = _mutmut_modules()
        self.collection_calls = set(state()._stats)
        state()._stats.clear()

    def _run(self, items, mutant: str) -> str | None:
        """Runs items in order with the given mutant active; the first failing test, or None."""
        from _pytest.runner import runtestprotocol
        from _pytest.warnings import catch_warnings_for_item
        import jax

        set_mutant_under_test, _ = _mutmut_modules()
        set_mutant_under_test(mutant)
        jax.clear_caches()
        _clear_test_caches()
        failed = None
        try:
            for i, item in enumerate(items):
                following = items[i + 1] if i + 1 < len(items) else None
                # pytest's own protocol hook applies the warning filters (pyproject's
                # "error", the test's filterwarnings marks): runtestprotocol alone does not.
                with catch_warnings_for_item(item.config, item.ihook, "runtest", item):
                    reports = runtestprotocol(item, nextitem=following, log=False)
                failures = [report for report in reports if report.failed]
                if failures:
                    failed = item.nodeid
                    # The reason, last line first, for reading a kill in fast-out-N.txt.
                    reason = failures[0].longreprtext.strip().splitlines() or ["?"]
                    print(f"{mutant}: {failed}: {reason[-1][:300]}", flush=True)
                    break
        finally:
            if failed is not None:
                # Stopped early: tear down the fixtures the next test would have kept.
                items[0].session._setupstate.teardown_exact(None)
            set_mutant_under_test("")
        return failed

    def pytest_runtestloop(self, session):
        import jax

        _, state = _mutmut_modules()
        items = session.items
        if self.mode == "stats":
            out = self.args[0]
            tests_by_function: dict[str, list[str]] = {}
            failed, durations = [], {}
            for item in items:
                state()._stats.clear()
                start = time.perf_counter()
                if self._run([item], "stats") is not None:
                    failed.append(item.nodeid)
                durations[item.nodeid] = time.perf_counter() - start
                for function in state()._stats:
                    tests_by_function.setdefault(function, []).append(item.nodeid)
            state()._stats.clear()
            result = {
                "tests_by_function": tests_by_function,
                "collection_calls": sorted(self.collection_calls),
                "failed_on_original": failed,
                "durations": durations,
            }
            Path(out).write_text(json.dumps(result, indent=1))
            return True

        stats_file, log_file, names_file = self.args
        order = {item.nodeid: i for i, item in enumerate(items)}
        by_id = {item.nodeid: item for item in items}
        everyone = None
        if stats_file == "-":  # every collected test for every mutant (tools/mutation.py --check)
            everyone = [item.nodeid for item in items]
            # A test that fails without a mutant would count as every mutant's kill.
            failed = self._run(items, "")
            if failed is not None:
                Path(log_file).write_text(f"original {failed}\n")
                return True
            stats = {"failed_on_original": [], "tests_by_function": {}}
            stats["durations"] = dict.fromkeys(everyone, 0.0)
        else:
            stats = json.loads(Path(stats_file).read_text())
        left_out = set(stats["failed_on_original"])
        with open(log_file, "a", buffering=1) as log:
            for name in Path(names_file).read_text().split():
                function = name.rpartition("__mutmut_")[0]
                tests = everyone or stats["tests_by_function"].get(function, [])
                tests = [t for t in tests if t in by_id]
                # The fastest first: most mutants are killed by the first test that fails.
                speed = {t: (round(stats["durations"][t], 1), order[t]) for t in tests}
                tests = sorted((t for t in tests if t not in left_out), key=speed.__getitem__)
                log.write(f"start {name}\n")
                start = time.perf_counter()
                if not tests:
                    log.write(f"done {name} 33 0 -\n")
                    continue
                try:
                    failed = self._run([by_id[t] for t in tests], name)
                except Exception as error:  # a mutant that breaks pytest's own machinery
                    failed = f"pytest:{type(error).__name__}"
                code = 0 if failed is None else 1
                log.write(f"done {name} {code} {time.perf_counter() - start:.1f} {failed or '-'}\n")
            jax.clear_caches()
        return True


def main() -> None:
    import pytest

    mode, *rest = sys.argv[1:]
    if mode == "generate":
        generate()
        return
    if mode == "survivors":
        survivors(rest[0])
        return
    args = rest[:1] if mode == "stats" else rest[:3]
    tests = rest[len(args) :]
    sys.path.insert(0, os.getcwd())
    set_mutant_under_test, _ = _mutmut_modules()
    # Record what collection calls: the test modules import gradtx and build optimizers there.
    set_mutant_under_test("stats" if mode == "stats" else "")
    code = pytest.main([*PYTEST_OPTIONS, *tests], plugins=[_Runner(mode, args)])
    sys.exit(0 if code in (0, 1) else int(code))


if __name__ == "__main__":
    main()
