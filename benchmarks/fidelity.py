"""Measures how closely gradtx reproduces each reference and writes the README's fidelity table.

    python benchmarks/fidelity.py            # print the table
    python benchmarks/fidelity.py --write    # and replace it in README.md

Every cell is the largest relative error, max over steps of
``max|gradtx - reference| / max|reference|``, over all the cases the test
suite runs for that optimizer and reference, in float64:

- PyTorch, Keras: the trajectories recorded from torch 2.13 and Keras 3.15
  (``tests/reference``), replayed through ``gradtx.compat``;
- optax: ``gradtx.<name>`` against ``optax.<name>`` (``tests/test_optax_equivalence.py``);
- paper oracle: naive NumPy implementations of the papers (``tests/oracles.py``).

It reuses the test modules' cases, so the table measures exactly what the tests assert.
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from jax.flatten_util import ravel_pytree  # noqa: E402
from problems import make_params  # noqa: E402
import test_compat  # noqa: E402
import test_optax_equivalence  # noqa: E402
import test_oracles  # noqa: E402

import gradtx  # noqa: E402

COLUMNS = ("PyTorch", "Keras", "optax", "paper oracle")
START, END = "<!-- fidelity:start -->", "<!-- fidelity:end -->"


def relative_error(actual, expected) -> float:
    """max over steps of max|a - e| / max|e|, for arrays of shape (steps, ...)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    steps = expected.shape[0]
    diff = np.abs(actual - expected).reshape(steps, -1).max(axis=1)
    scale = np.abs(expected).reshape(steps, -1).max(axis=1)
    return float((diff / np.maximum(scale, 1e-300)).max())


def framework_errors(errors):
    for case in test_compat.CASES:
        expected, expected_average = test_compat.recorded(case)
        params, average = test_compat._trajectory(test_compat.build(case))
        column = "PyTorch" if case["framework"] == "pytorch" else "Keras"
        worst = max(relative_error(params[k], expected[k]) for k in expected)
        for k, values in expected_average.items():
            worst = max(worst, relative_error(average[k], values))
        errors[case["optimizer"]][column].append(worst)


def optax_errors(errors):
    params = make_params(jnp.float64, seed=1)
    for name, kwargs in test_optax_equivalence.CASES:
        for loss in test_optax_equivalence.LOSSES.values():
            ours = test_optax_equivalence._run(getattr(gradtx, name)(**kwargs), loss, params)
            theirs = test_optax_equivalence._run(
                getattr(test_optax_equivalence.optax, name)(**kwargs), loss, params
            )
            flat = lambda tree: np.concatenate(  # noqa: E731
                [np.asarray(x).reshape(x.shape[0], -1) for x in jax.tree.leaves(tree)], axis=1
            )
            errors[name]["optax"].append(relative_error(flat(ours), flat(theirs)))


def oracle_errors(errors):
    x0 = np.asarray(ravel_pytree(make_params(jnp.float64))[0])
    for param in test_oracles.CASES:
        make_tx, oracle = param.values
        name = param.id.split("-")[0]
        tx = make_tx()

        @jax.jit
        def step(params, state, grads, tx=tx):
            updates, state = tx.update(grads, state, params)
            return gradtx.apply_updates(params, updates), state

        for problem in test_oracles.PROBLEMS:
            actual = test_oracles.gradtx_trajectory(step, tx, problem)
            expected = oracle(x0, test_oracles.flat_grad(problem), test_oracles.STEPS)
            errors[name]["paper oracle"].append(relative_error(actual, expected))


def table(errors) -> str:
    lines = [
        "| optimizer | " + " | ".join(COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    for name in sorted(errors):
        cells = []
        for column in COLUMNS:
            values = errors[name][column]
            cells.append(f"{max(values):.1e} ({len(values)})" if values else "—")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="replace the table in README.md")
    args = parser.parse_args(argv)
    errors = collections.defaultdict(lambda: collections.defaultdict(list))
    with jax.enable_x64(True):
        framework_errors(errors)
        optax_errors(errors)
        oracle_errors(errors)
    text = table(errors)
    print(text)
    if args.write:
        readme = ROOT / "README.md"
        content = readme.read_text()
        block = f"{START}\n{text}\n{END}"
        content = re.sub(re.escape(START) + ".*?" + re.escape(END), block, content, flags=re.S)
        readme.write_text(content)


if __name__ == "__main__":
    main()
