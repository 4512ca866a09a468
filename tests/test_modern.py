"""benchmarks/modern.py (the structured optimizers compared) runs end to end, smoke-sized.

Not a timed test: it checks what the script writes, never how fast or how well anything trained.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")
SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "modern.py"
sys.path.insert(0, str(SCRIPT.parent))
import modern  # noqa: E402

import gradtx  # noqa: E402

TASK = modern.make_tasks(modern.parse_args(["--quick", "--tasks", "modadd"]))["modadd"]


def test_modular_addition_splits_every_pair_in_half_with_its_sum():
    data = modern.modular_addition(97, seed=1)
    tokens = np.concatenate([data.x_train, data.x_val])
    labels = np.concatenate([data.y_train, data.y_val])
    assert len(data.x_train) == 4704 and len(data.x_val) == 4705
    assert len({tuple(t) for t in tokens}) == 97 * 97  # disjoint, and every pair once
    np.testing.assert_array_equal(tokens[:, 2], 97)
    np.testing.assert_array_equal(labels, (tokens[:, 0] + tokens[:, 1]) % 97)
    other = modern.modular_addition(97, seed=2)
    assert not np.array_equal(data.x_train, other.x_train)  # the split follows the seed


def test_state_axes_share_the_step_counters_only():
    params = {"w": np.zeros((3, 2), np.float32)}
    leaves = jax.tree.leaves(gradtx.soap(1.0).init(params))
    axes = jax.tree.leaves(modern.state_axes(gradtx.soap, params), is_leaf=lambda x: x is None)
    assert len(axes) == len(leaves)
    assert [a for a in axes if a is None]  # SOAP's counter: lax.cond on it stays a branch
    for leaf, axis in zip(leaves, axes):
        assert axis == (None if np.issubdtype(leaf.dtype, np.integer) else 0)


def test_configure_xla_refuses_a_started_backend(monkeypatch):
    jax.devices()  # the backend starts: too late to change XLA_FLAGS
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/dev/null")
    with pytest.raises(RuntimeError, match="before JAX starts its backend"):
        modern.configure_xla()
    monkeypatch.setenv("XLA_FLAGS", modern.XLA_SCHEDULER_FLAG)
    modern.configure_xla()  # already there: nothing to do


# The smoke runs, two processes (each starts JAX and compiles every optimizer it runs): the
# structured group's cheap members, Lion and the adaptive group's special cases (a schedule, an
# evaluation point, value=, no grid) on modular addition; the digits CNN with AdamW.
# Shampoo's and SOAP's compilations alone took a minute of the suite; every entry of OPTIMIZERS
# is built and traced on a small tree below instead.
STRUCTURED = ["adamw", "adafactor", "muon", "lion"]
ADAPTIVE = ["adamw_cosine", "schedule_free_adamw", "polyak_sgd", "prodigy"]
RUNS = {
    "modadd": ["--tasks", "modadd", "--optimizers", *STRUCTURED, *ADAPTIVE],
    "digits": ["--tasks", "digits", "--optimizers", "adamw"],
}
EXPECTED = {
    "modadd": ("modadd", STRUCTURED + ADAPTIVE),
    "digits": ("digits", ["adamw"]),
}


@pytest.mark.parametrize("name", list(modern.OPTIMIZERS))
def test_every_optimizer_of_the_script_builds_and_traces_a_step(name):
    """What the quick runs leave out: each recipe, its rate traced as the runs vmap it."""
    optimizer = modern.OPTIMIZERS[name]
    task = dataclasses.replace(TASK, adam_modules=frozenset({"embed"}))
    params = {"embed": np.ones((4, 3), np.float32), "dense": np.ones((3, 2), np.float32)}
    grads = jax.tree.map(lambda p: np.full_like(p, 0.5), params)

    def step(rate):
        tx = optimizer.build(rate, 1e-4, task)
        updates, _ = tx.update(grads, tx.init(params), params, value=np.float32(1.0))
        return updates

    updates = jax.eval_shape(step, np.float32(optimizer.usual_rate))
    assert jax.tree.map(lambda u: (u.shape, u.dtype), updates) == jax.tree.map(
        lambda p: (p.shape, p.dtype), params
    )


# session scope: xdist may run another module's tests between this group's, which would tear
# a module fixture down and start its subprocesses again (seen in CI: twice per worker)
@pytest.fixture(scope="session")
def quick(tmp_path_factory):
    """The smoke runs of ``RUNS``, each in a process of its own.

    Two calls rather than one ``--quick`` over both tasks, which would run every optimizer on
    both: each optimizer and task costs a compilation.
    """
    out = tmp_path_factory.mktemp("modern")
    for name, options in RUNS.items():
        # a process of its own: the script sets XLA_FLAGS before JAX starts (Shampoo's step)
        subprocess.run(
            [
                sys.executable,
                str(SCRIPT),
                "--quick",
                *options,
                "--out",
                str(out / name),
            ],
            check=True,
            capture_output=True,
        )
    return out


@pytest.mark.xdist_group("modern_quick_runs")  # one worker runs the fixture's processes
@pytest.mark.parametrize("run", list(RUNS))
def test_the_quick_run_writes_every_optimizer_and_rate(quick, run):
    task, names = EXPECTED[run]
    out = quick / run
    results = json.loads((out / "results.json").read_text())
    assert results["complete"]

    runs = {(r["task"], r["optimizer"], r["rate"], r["seed"]) for r in results["runs"]}
    expected = {(task, name, rate, 0) for name in names for rate in modern.OPTIMIZERS[name].rates()}
    assert runs == expected and len(results["runs"]) == len(expected)
    for run in results["runs"]:
        assert [point[0] for point in run["curve"]] == [2, 4]  # evaluated every 2 of 4 steps
        for _, accuracy, val_loss, train_loss in run["curve"]:
            assert 0 <= accuracy <= 1 and math.isfinite(val_loss) and math.isfinite(train_loss)
        assert run["vmapped_rate"]  # every optimizer vmaps over its learning rate

    timing = {t["optimizer"]: t for t in results["timing"]}
    assert list(timing) == names
    for record in timing.values():
        assert record["step_ms_per_run"] > 0 and record["compile_s"] > 0
        # every rate of the grid (three, or the default alone), one seed, one step
        assert record["runs_per_call"] == len(modern.OPTIMIZERS[record["optimizer"]].rates())
    # Adam's two moments, Lion's one, in float32 (plus a counter)
    for name, size in (("adamw", 8), ("adamw_cosine", 8), ("lion", 4)):
        if name in timing:
            assert timing[name]["state_bytes_per_param"] == pytest.approx(size, rel=1e-2)

    assert sorted(s["optimizer"] for s in results["sweep"] if s["best"]) == sorted(names)
    summary = (out / "summary.md").read_text()
    for name in names:  # one row in the best-rate table, one per rate in the sweep
        label = modern.OPTIMIZERS[name].label
        assert sum(line.startswith(f"| {label} ") for line in summary.splitlines()) == 1
        assert sum(
            line.startswith(f"| {task} ") and f"| {label} " in line for line in summary.splitlines()
        ) == len(modern.OPTIMIZERS[name].rates())
    assert (out / "modern.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
