"""Mutation testing of gradtx, one module at a time (tests/MUTATION.md).

    python tools/mutation.py _tree _combine      # mutate these modules, print scores and survivors
    python tools/mutation.py --list              # the modules and their tests
    python tools/mutation.py --report _tree      # the last run's results again, run nothing
    python tools/mutation.py --check _tree NAME  # does tests/test_mutants.py kill mutant NAME?

Each module runs in its own folder, .mutation/<module>/, holding a copy of gradtx/, tests/ and
tools/ and a pyproject.toml whose [tool.mutmut] mutates only that module and selects only its
tests (``[tool.mutmut.tests_by_module]``). mutmut keeps its results there: a second run
re-tests only the mutants of functions that changed. mutmut runs under ``nice -n 19`` with two
worker processes (``--jobs``).

Show one mutant: ``cd .mutation/<module> && mutmut show <name>``. ``--check`` runs the current
tests/test_mutants.py against mutants through mutmut's trampolines in a scratch copy (mutmut
3.8's ``apply`` can patch the method of the wrong class, so it is not used).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
import tempfile

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("gradtx", "tests", "tools")


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


def prepare(module: str, tests: list[str]) -> Path:
    work = ROOT / ".mutation" / module
    work.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        # copy2 keeps mtimes, so mutmut sees unchanged files as unchanged.
        shutil.copytree(
            ROOT / name,
            work / name,
            dirs_exist_ok=True,
            copy_function=shutil.copy2,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    text = (ROOT / "pyproject.toml").read_text()
    (work / "pyproject.toml").write_text(module_pyproject(text, module, tests))
    return work


def summary(work: Path) -> dict[str, int]:
    """Counts by status, from mutmut's export-cicd-stats."""
    subprocess.run([_mutmut(), "export-cicd-stats"], cwd=work, check=True, capture_output=True)
    return json.loads((work / "mutants" / "mutmut-cicd-stats.json").read_text())


def check(module: str, names: list[str]) -> None:
    """Runs tests/test_mutants.py against each mutant: killed or survived."""
    mutants = ROOT / ".mutation" / module / "mutants"
    with tempfile.TemporaryDirectory() as scratch:
        shutil.copytree(mutants / "gradtx", Path(scratch) / "gradtx")
        shutil.copytree(ROOT / "tests", Path(scratch) / "tests")
        shutil.copy2(mutants / "pyproject.toml", scratch)
        for name in names:
            run = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly"]
            run += ["-p", "no:cacheprovider", "tests/test_mutants.py"]
            env = {**os.environ, "MUTANT_UNDER_TEST": name}
            result = subprocess.run(run, cwd=scratch, env=env, capture_output=True, text=True)
            print(f"{name}: {'killed' if result.returncode else 'survived'}", flush=True)


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
    args = parser.parse_args()
    if args.check:
        check(args.modules[0], args.modules[1:])
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
    scores = {}
    for module in args.modules:
        work = ROOT / ".mutation" / module
        print(f"== {module}: {work.relative_to(ROOT)}", flush=True)
        if not args.report:
            prepare(module, tests_by_module[module])
            run = ["nice", "-n", "19", _mutmut(), "run", "--max-children", str(args.jobs)]
            subprocess.run(run, cwd=work, check=True)
        subprocess.run([_mutmut(), "results"], cwd=work, check=True)
        scores[module] = summary(work)
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
