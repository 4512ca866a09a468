"""Mutation testing of gradtx, one module at a time (tests/MUTATION.md).

    python tools/mutation.py _tree _combine      # mutate these modules, print scores and survivors
    python tools/mutation.py --list              # the modules and their tests
    python tools/mutation.py --report _tree      # the last run's results again, run nothing
    python tools/mutation.py --check _tree NAME...  # does tests/test_mutants.py kill them?
    python tools/mutation.py --check _tree NAME --tests tests/test_cg.py  # other test files
    python tools/mutation.py --forked _tree      # mutmut's own runner: a fresh fork per mutant

Each module runs in its own folder, .mutation/<module>/, holding a copy of gradtx/, tests/ and
tools/ and a pyproject.toml whose [tool.mutmut] mutates only that module and selects only its
tests (``[tool.mutmut.tests_by_module]``). mutmut makes the mutants and keeps their results
there (``mutants/**/*.meta``), so ``mutmut results``, ``show`` and ``browse`` work in that
folder; a second run re-tests only the mutants of functions that changed, and the survivors
when the tests changed.

By default the mutants are tested in process (tools/mutation_worker.py: one collection, then
mutant after mutant with JAX's caches cleared between them), by ``--jobs`` workers under
``nice -n 19``; a worker whose mutant runs past its time limit (20 times its tests' clean time,
plus a minute) is stopped, the mutant counted as a timeout, and a new worker goes on. The test
modules are collected on the original code, so a mutant of a function that they call at import
may survive in process and be killed in a fresh one: ``--recheck`` re-tests those survivors in a
fresh process each (half a minute each, ``--jobs`` at once), and survivors.md marks them.
``--forked`` runs mutmut's own runner instead (a fresh fork per mutant, about 30 times slower
here).

Show one mutant: ``cd .mutation/<module> && mutmut show <name>``. ``--check`` runs the current
tests/test_mutants.py against mutants through mutmut's trampolines in a scratch copy (mutmut
3.8's ``apply`` can patch the method of the wrong class, so it is not used).
"""

from __future__ import annotations

import argparse
from concurrent.futures import as_completed, ThreadPoolExecutor
import hashlib
import json
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
import tempfile
import time

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

# tools/ is on sys.path when this file runs as a script: the worker's pytest options are shared.
from mutation_worker import PYTEST_OPTIONS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# What the tests read besides the package: test_hybrid imports examples/, test_catalog the
# documentation's optimizer_pages and the README's fidelity table.
COPIED = ("gradtx", "tests", "tools", "examples", "docs/_ext", "README.md")
WORKER = ROOT / "tools" / "mutation_worker.py"
# mutmut's exit codes (mutmut.stats.status_by_exit_code).
KILLED, SURVIVED, NO_TESTS, TIMEOUT, CRASHED = 1, 0, 33, 36, 3


def _toml_value(value: object) -> str:
    # JSON strings, numbers, booleans and lists of them are valid TOML.
    return json.dumps(value)


def module_pyproject(text: str, module: str, tests: list[str]) -> str:
    """pyproject.toml with a [tool.mutmut] that mutates ``module`` only and runs ``tests``."""
    config = tomllib.loads(text)["tool"]["mutmut"]
    config = {k: v for k, v in config.items() if k != "tests_by_module"}
    path = f"gradtx/{module.replace('.', '/')}"
    # A module is a file or a package (compat.keras): every file in it.
    config["only_mutate"] = [f"{path}/*" if (ROOT / path).is_dir() else f"{path}.py"]
    config["pytest_add_cli_args_test_selection"] = tests
    # Drop every [tool.mutmut*] table of the original, keep the rest (pytest's options).
    kept, skipping = [], False
    for line in text.splitlines():
        header = re.match(r"^\[([^\[\]]+)\]\s*$", line)
        if header:
            skipping = header.group(1).strip().startswith("tool.mutmut")
        if not skipping:
            kept.append(line)
    section = "\n".join(f"{k} = {_toml_value(v)}" for k, v in config.items())
    return "\n".join(kept).rstrip() + f"\n\n[tool.mutmut]\n{section}\n"


def _copy(source: Path, target: Path) -> None:
    # copy2 keeps mtimes, so mutmut sees unchanged files as unchanged.
    if source.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        return
    shutil.copytree(
        source,
        target,
        dirs_exist_ok=True,
        copy_function=shutil.copy2,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )


def prepare(module: str, tests: list[str]) -> Path:
    work = ROOT / ".mutation" / module
    work.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        _copy(ROOT / name, work / name)
    text = (ROOT / "pyproject.toml").read_text()
    (work / "pyproject.toml").write_text(module_pyproject(text, module, tests))
    return work


def summary(work: Path) -> dict[str, int]:
    """Counts by status, from mutmut's export-cicd-stats."""
    subprocess.run([_mutmut(), "export-cicd-stats"], cwd=work, check=True, capture_output=True)
    return json.loads((work / "mutants" / "mutmut-cicd-stats.json").read_text())


def check(module: str, names: list[str], tests: list[str], forked: bool) -> None:
    """Runs the current ``tests`` against each mutant of a module's last run: killed or survived.

    In one process (tools/mutation_worker.py, the test files collected once on the original
    code), or with ``forked`` in a fresh process per mutant, active during collection too.
    """
    mutants = ROOT / ".mutation" / module / "mutants"
    unknown = sorted(set(names) - set(_Results(mutants).codes()))
    if unknown:  # a short name (without "gradtx.MODULE.") would run the original and "survive"
        sys.exit(
            f"no such mutants in .mutation/{module} (full names, as in survivors.md): {unknown}"
        )
    with tempfile.TemporaryDirectory() as scratch:
        shutil.copytree(mutants / "gradtx", Path(scratch) / "gradtx")
        for name in COPIED:  # the current tests and what they read; gradtx is the mutants'
            if name == "gradtx":
                continue
            _copy(ROOT / name, Path(scratch) / name)
        shutil.copy2(mutants / "pyproject.toml", scratch)
        if not forked:
            names_file, log = Path(scratch) / "names.txt", Path(scratch) / "log.txt"
            names_file.write_text("\n".join(names))
            run = [sys.executable, str(WORKER), "mutants", "-", str(log), str(names_file), *tests]
            subprocess.run(run, cwd=scratch, check=True, stdout=subprocess.DEVNULL)
            for line in log.read_text().splitlines():
                kind, name, *rest = line.split()
                if kind == "original":
                    sys.exit(f"{name} fails without a mutant: fix it before checking mutants")
                if kind == "done":
                    verdicts = {SURVIVED: "survived", NO_TESTS: "no tests"}
                    verdict = verdicts.get(int(rest[0]), "killed")
                    print(f"{name}: {verdict} {rest[2] if verdict == 'killed' else ''}".rstrip())
            return
        for name in names:
            run = [sys.executable, "-m", "pytest", "-x", *PYTEST_OPTIONS, *tests]
            env = {**os.environ, "MUTANT_UNDER_TEST": name}
            result = subprocess.run(run, cwd=scratch, env=env, capture_output=True, text=True)
            print(f"{name}: {'killed' if result.returncode else 'survived'}", flush=True)


def _fingerprint(work: Path, tests: list[str]) -> str:
    """A hash of the module's sources and its test files: the stats are redone when it changes."""
    digest = hashlib.sha256()
    files = sorted((work / "gradtx").rglob("*.py")) + [work / t for t in tests]
    files += sorted((work / "tests").glob("conftest.py")) + sorted((work / "tests").glob("_*.py"))
    for path in files:
        digest.update(str(path.relative_to(work)).encode() + path.read_bytes())
    return digest.hexdigest()


class _Results:
    """The exit code of every mutant, read from and written back to mutmut's .meta files."""

    def __init__(self, mutants: Path) -> None:
        self.meta = {path: json.loads(path.read_text()) for path in mutants.rglob("*.py.meta")}
        self.file_of = {k: p for p, m in self.meta.items() for k in m["exit_code_by_key"]}

    def codes(self) -> dict[str, int | None]:
        return {k: self.meta[p]["exit_code_by_key"][k] for k, p in self.file_of.items()}

    def set(self, name: str, code: int, seconds: float) -> None:
        path = self.file_of[name]
        self.meta[path]["exit_code_by_key"][name] = code
        self.meta[path]["durations_by_key"][name] = seconds
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps(self.meta[path], indent=4))
        scratch.replace(path)


def _tests_of(stats: dict, name: str) -> list[str]:
    failed = set(stats["failed_on_original"])
    function = name.rpartition("__mutmut_")[0]
    return [t for t in stats["tests_by_function"].get(function, []) if t not in failed]


def _run_in_process(
    work: Path, tests: list[str], names: list[str], stats: dict, jobs: int, results: _Results
) -> None:
    """Tests the mutants in ``jobs`` worker processes; restarts a worker after a timeout."""
    mutants = work / "mutants"
    stats_file = work / "fast-stats.json"
    queues = [names[i::jobs] for i in range(jobs)]
    # A control at the end of each queue: mutant 0 does not exist, so the trampolines call the
    # original code, which must pass the tests of the most-tested function after all the mutants
    # ran in that process. If it fails, a mutant left the process broken and kills may be false.
    busiest = max(stats["tests_by_function"], key=lambda f: len(stats["tests_by_function"][f]))
    control = f"{busiest}__mutmut_0"
    queues = [queue + [control] if queue else queue for queue in queues]
    workers: list[dict] = []

    def start(queue: list[str], index: int) -> dict:
        names_file = work / f"fast-names-{index}.txt"
        names_file.write_text("\n".join(queue))
        log = work / f"fast-log-{index}.txt"
        log.write_text("")
        run = ["nice", "-n", "19", sys.executable, str(WORKER), "mutants", str(stats_file)]
        run += [str(log), str(names_file), *tests]
        # Popen keeps its own copy of the file descriptor.
        with open(work / f"fast-out-{index}.txt", "a") as out:
            process = subprocess.Popen(run, cwd=mutants, stdout=out, stderr=subprocess.STDOUT)
        return {
            "process": process,
            "queue": list(queue),
            "log": log,
            "read": 0,
            "current": None,
            "since": time.monotonic(),
            "index": index,
        }

    def limit(name: str) -> float:
        clean = sum(stats["durations"].get(t, 1.0) for t in _tests_of(stats, name))
        return 60 + 20 * clean

    for index, queue in enumerate(queues):
        if queue:
            workers.append(start(queue, index))
    total, done, began = len(names), 0, time.monotonic()
    reported = 0
    while workers:
        time.sleep(1)
        for worker in list(workers):
            text = worker["log"].read_text()
            lines = text[worker["read"] :].splitlines(keepends=True)
            for line in lines:
                if not line.endswith("\n"):
                    break
                worker["read"] += len(line)
                kind, name, *rest = line.split()
                if kind == "start":
                    worker["current"], worker["since"] = name, time.monotonic()
                else:
                    code, seconds = int(rest[0]), float(rest[1])
                    worker["queue"].remove(name)
                    worker["current"] = None
                    if name == control:
                        if code != SURVIVED:
                            print(
                                f"  WARNING: the original code failed {rest[2]} in worker "
                                f"{worker['index']} after its mutants: its kills may be false "
                                "(a mutant broke the process); rerun them with --forked",
                                flush=True,
                            )
                        continue
                    results.set(name, code, seconds)
                    done += 1
                    if code == SURVIVED:
                        print(f"  survived: {name}", flush=True)
            current, finished = worker["current"], worker["process"].poll() is not None
            late = current is not None and time.monotonic() - worker["since"] > limit(current)
            if finished or late:
                if late:
                    worker["process"].kill()
                    worker["process"].wait()
                workers.remove(worker)
                if current == control:
                    print(f"  WARNING: the control run of worker {worker['index']} did not end")
                    worker["queue"].remove(current)
                elif current is not None:
                    results.set(
                        current, TIMEOUT if late else CRASHED, time.monotonic() - worker["since"]
                    )
                    worker["queue"].remove(current)
                    done += 1
                    print(f"  {'timeout' if late else 'crashed'}: {current}", flush=True)
                elif worker["queue"]:
                    sys.exit(
                        f"mutation: worker {worker['index']} stopped before its first mutant; "
                        f"see its output, fast-out-{worker['index']}.txt in {work}"
                    )
                if worker["queue"]:
                    workers.append(start(worker["queue"], worker["index"]))
        if done >= reported + 25:
            reported = done
            rate = done / (time.monotonic() - began) * 60
            print(f"  {done}/{total} mutants, {rate:.1f} a minute", flush=True)


def _recheck_forked(
    work: Path, names: list[str], stats: dict, results: _Results, files: list[str], jobs: int
) -> None:
    """Re-tests mutants in a fresh process each, the mutant active while the tests are collected.

    A survivor runs the tests that call its function; a mutant with no such test (its function
    runs only at import: ``__init_subclass__``, a decorator) runs the module's test ``files``.
    ``jobs`` processes at once. Each one done is listed in fresh-checked.txt and not re-tested
    again.
    """
    done_file = work / "fresh-checked.txt"

    def recheck(name: str) -> tuple[str, int, float]:
        tests = _tests_of(stats, name) or files
        run = [sys.executable, "-m", "pytest", "-x", *PYTEST_OPTIONS, *tests]
        env = {**os.environ, "MUTANT_UNDER_TEST": name}
        began = time.monotonic()
        result = subprocess.run(
            ["nice", "-n", "19", *run],
            cwd=work / "mutants",
            env=env,
            capture_output=True,
            text=True,
        )
        return name, KILLED if result.returncode else SURVIVED, time.monotonic() - began

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        # The results are written here, in one thread, as each process ends.
        futures = [pool.submit(recheck, name) for name in names]
        for name, code, seconds in (future.result() for future in as_completed(futures)):
            results.set(name, code, seconds)
            with open(done_file, "a") as done:
                done.write(name + "\n")
            print(f"  fresh process: {name} {'killed' if code else 'survived'}", flush=True)


def run_in_process(module: str, tests: list[str], jobs: int, recheck: bool) -> Path:
    """Makes the mutants with mutmut and tests them in process (module docstring)."""
    work = prepare(module, tests)
    # One persistent compilation cache for the module's processes and runs (tests/conftest.py):
    # a program compiled for the original code or one mutant is not compiled again.
    os.environ["GRADTX_TEST_COMPILATION_CACHE"] = str(work / "jax-cache")
    subprocess.run(
        [sys.executable, str(WORKER), "generate"], cwd=work, check=True, stdout=subprocess.DEVNULL
    )
    stats_file = work / "fast-stats.json"
    fingerprint = _fingerprint(work, tests)
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    results = _Results(work / "mutants")
    if stats.get("fingerprint") != fingerprint:
        print("  recording which tests call which function (the original code)", flush=True)
        subprocess.run(
            ["nice", "-n", "19", sys.executable, str(WORKER), "stats", str(stats_file), *tests],
            cwd=work / "mutants",
            check=True,
        )
        changed_tests = bool(stats)
        stats = json.loads(stats_file.read_text())
        stats["fingerprint"] = fingerprint
        stats_file.write_text(json.dumps(stats, indent=1))
        if stats["failed_on_original"]:
            print(f"  left out, failing on the original code: {stats['failed_on_original']}")
        if changed_tests:  # new tests may kill old survivors and reach uncovered mutants
            for name, code in results.codes().items():
                if code in (SURVIVED, NO_TESTS):
                    results.meta[results.file_of[name]]["exit_code_by_key"][name] = None
    pending = [name for name, code in results.codes().items() if code is None]
    for name in [n for n in pending if not _tests_of(stats, n)]:
        results.set(name, NO_TESTS, 0.0)
        pending.remove(name)
    print(f"  {len(pending)} mutants to test", flush=True)
    _run_in_process(work, tests, pending, stats, jobs, results)
    if not recheck:
        return work
    calls_at_collection = set(stats["collection_calls"])
    done_file = work / "fresh-checked.txt"
    done = set(done_file.read_text().split()) if done_file.exists() else set()
    again = [
        name
        for name, code in results.codes().items()
        if code in (SURVIVED, NO_TESTS)
        and name not in done
        and name.rpartition("__mutmut_")[0] in calls_at_collection
    ]
    print(f"  {len(again)} mutants of functions run at collection, each in a fresh process")
    _recheck_forked(work, again, stats, results, tests, jobs)
    return work


def _mutmut() -> str:
    found = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or shutil.which("mutmut")
    if found is None:
        sys.exit('mutation: mutmut is not installed; pip install -e ".[test,mutation]"')
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="module names as in tests_by_module")
    parser.add_argument("--list", action="store_true", help="list the modules and their tests")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once (2)")
    parser.add_argument(
        "--report", action="store_true", help="print the last run's results, run nothing"
    )
    parser.add_argument(
        "--check", action="store_true", help="MODULE MUTANT...: run tests/test_mutants.py on each"
    )
    parser.add_argument(
        "--forked", action="store_true", help="mutmut's own runner (a fork per mutant; slow)"
    )
    parser.add_argument(
        "--recheck",
        action="store_true",
        help="re-test in a fresh process the survivors of functions called at collection",
    )
    parser.add_argument(
        "--tests",
        nargs="+",
        default=["tests/test_mutants.py"],
        help="with --check: the test files to run (tests/test_mutants.py)",
    )
    args = parser.parse_args()
    if args.check:
        check(args.modules[0], args.modules[1:], args.tests, args.forked)
        return
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    tests_by_module = pyproject["tool"]["mutmut"]["tests_by_module"]
    if args.list or not args.modules:
        for module, tests in tests_by_module.items():
            print(f"{module}: {' '.join(tests)}")
        return
    unknown = [m for m in args.modules if m not in tests_by_module]
    if unknown:
        sys.exit(f"mutation: no tests_by_module entry for {unknown} in pyproject.toml")
    selection = set(pyproject["tool"]["mutmut"]["pytest_add_cli_args_test_selection"])
    unlisted = sorted({t for tests in tests_by_module.values() for t in tests} - selection)
    if unlisted:  # a plain `mutmut run` over the whole package would miss their kills
        sys.exit(f"mutation: pytest_add_cli_args_test_selection lacks {unlisted} (tests_by_module)")
    missing = [t for m in args.modules for t in tests_by_module[m] if not (ROOT / t).is_file()]
    if missing:  # pytest would run the others and every mutant would look less tested
        sys.exit(f"mutation: tests_by_module names test files that do not exist: {missing}")
    scores = {}
    for module in args.modules:
        work = ROOT / ".mutation" / module
        print(f"== {module}: {work.relative_to(ROOT)}", flush=True)
        if args.report:
            pass
        elif args.forked:
            prepare(module, tests_by_module[module])
            run = ["nice", "-n", "19", _mutmut(), "run", "--max-children", str(args.jobs)]
            subprocess.run(run, cwd=work, check=True)
        else:
            run_in_process(module, tests_by_module[module], args.jobs, args.recheck)
        subprocess.run([_mutmut(), "results"], cwd=work, check=True)
        scores[module] = summary(work)
        # Every survivor's diff, for reading them (tests/MUTATION.md records the verdicts).
        survivors = [sys.executable, str(WORKER), "survivors", str(work / "survivors.md")]
        subprocess.run(survivors, cwd=work, check=True)
    for module, s in scores.items():
        # pytest exits 2 when collection fails: the mutant broke a call that a test module makes
        # at import (a parametrize list of optimizers). mutmut calls that "interrupted by user";
        # in an unattended run it is a kill.
        broke_collection = s["check_was_interrupted_by_user"]
        killed = s["killed"] + s["timeout"] + broke_collection
        tested = killed + s["survived"] + s["suspicious"]
        score = killed / tested if tested else float("nan")
        print(
            f"{module}: {s['killed']} killed, {broke_collection} broke collection, "
            f"{s['timeout']} timeouts, {s['survived']} survived, {s['suspicious']} suspicious, "
            f"{s['no_tests']} not covered; score {score:.1%}"
        )


if __name__ == "__main__":
    main()
