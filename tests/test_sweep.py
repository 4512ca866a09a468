"""gradtx.sweep: a grid of hyperparameters trained as one vmapped, once-compiled program."""

from __future__ import annotations

import functools
import json
import operator
from pathlib import Path
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx._sweep import sweep

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

STEPS = 6


def loss(params, batch):
    """A small least-squares problem with a nonlinearity: curvature differs per coordinate."""
    x, y = batch
    return jnp.mean((jnp.tanh(x @ params["w"]) @ params["v"] - y) ** 2)


def problem():
    keys = jax.random.split(jax.random.key(0), 4)
    params = {
        "w": jax.random.normal(keys[0], (3, 4)) * 0.5,
        "v": jax.random.normal(keys[1], (4,)) * 0.5,
    }
    batch = (jax.random.normal(keys[2], (8, 3)), jax.random.normal(keys[3], (8,)))
    return params, batch


@jax.jit
def member_run(tx, params, batch):
    """STEPS steps of one member: tx is an argument, so every member reuses one program."""

    def step(carry, _):
        params, state = carry
        value, grads = jax.value_and_grad(loss)(params, batch)
        updates, state = tx.update(grads, state, params, value=value)
        params = gradtx.apply_updates(params, updates)
        return (params, state), params

    return jax.lax.scan(step, (params, tx.init(params)), length=STEPS)[1]


@jax.jit
def sweep_run(sw, params, batch):
    """STEPS steps of every member at once; params have the member axis."""

    def step(carry, _):
        params, state = carry
        value, grads = jax.vmap(jax.value_and_grad(loss), in_axes=(0, None))(params, batch)
        updates, state = sw.update(grads, state, params, value=value)
        params = gradtx.apply_updates(params, updates)
        return (params, state), params

    trajectory = jax.lax.scan(step, (params, sw.init(params)), length=STEPS)[1]
    return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), trajectory)  # (member, step, ...)


CASES = {
    "adam lr x b1": (gradtx.adam, {"learning_rate": [1e-3, 3e-2, 0.3], "b1": [0.5, 0.9]}, {}),
    # A leaf deep in a chain and inside a schedule: the built transform's fields, by name.
    "built, schedule": (
        gradtx.sgd(gradtx.cosine_decay_schedule(0.1, 10), momentum=0.9),
        {"decay_steps": [4, 10, 40], "decay": [0.0, 0.5, 0.9]},
        {"mode": "zip"},
    ),
    # value= reaches each member as its own row (Polyak's step reads the loss).
    "polyak value=": (gradtx.polyak_sgd, {"max_learning_rate": [0.05, 0.2, 0.5]}, {}),
}


@pytest.mark.parametrize("name", CASES)
def test_each_member_trains_as_it_would_alone(name):
    tx, grid, options = CASES[name]
    params, batch = problem()
    sw = sweep(tx, **grid, **options)
    together = sweep_run(sw, sw.replicate(params), batch)
    for index, values in enumerate(sw.members):
        alone = member_run(sw.transform(index), params, batch)
        row = jax.tree.map(operator.itemgetter(index), together)
        # The trajectories move: a wrong member's hyperparameters could not pass.
        assert float(jnp.abs(alone["v"][-1] - params["v"]).max()) > 1e-4
        # Batched and alone, XLA fuses the float32 maths differently: a few ulps per step
        # that the steps compound (seen: 1.7e-6 relative after 6 steps), far below the
        # distance between members.
        jax.tree.map(
            functools.partial(
                np.testing.assert_allclose, rtol=1e-5, atol=1e-6, err_msg=str(values)
            ),
            row,
            alone,
        )
    distinct = {tuple(np.asarray(together["v"][i, -1]).round(6)) for i in range(sw.size)}
    assert len(distinct) == sw.size  # every member trained with its own values


def test_the_whole_grid_compiles_once():
    traces = []

    @jax.jit
    def train_step(sw, params, state, batch):
        traces.append(sw)
        grads = jax.vmap(jax.grad(loss), in_axes=(0, None))(params, batch)
        updates, state = sw.update(grads, state, params)
        return gradtx.apply_updates(params, updates), state

    params, batch = problem()
    for grid in (
        {"learning_rate": [1e-3, 1e-2, 1e-1], "b1": [0.8, 0.9]},
        {"learning_rate": [2e-3, 2e-2, 2e-1], "b1": [0.7, 0.95]},
    ):
        sw = sweep(gradtx.adam, **grid)
        stacked = sw.replicate(params)
        state = sw.init(stacked)
        for _ in range(3):
            stacked, state = train_step(sw, stacked, state, batch)
    # Six members, three steps, and other values of the grid (leaves too): one trace.
    assert len(traces) == 1


def test_members_transforms_and_repr():
    sw = sweep(gradtx.adam, learning_rate=[1e-3, 1e-2, 1e-1], b1=[0.8, 0.9])
    assert sw.shape == (3, 2) and sw.size == len(sw) == 6
    assert sw.members[3] == {"learning_rate": 1e-2, "b1": 0.9}  # the last keyword varies fastest
    for index, values in enumerate(sw.members):
        assert sw.transform(index) == gradtx.adam(**values)
        assert repr(sw.transform(index)) == repr(gradtx.adam(**values))
    assert sw.transform(-1) == gradtx.adam(learning_rate=0.1, b1=0.9)
    with pytest.raises(IndexError, match="6 members"):
        sw.transform(6)
    text = repr(sw)
    assert "learning_rate=[0.001, 0.01, 0.1]" in text and "b1=[0.8, 0.9]" in text
    assert "b1=float64[6]" in text and "b2=0.999" in text  # only differing leaves are stacked
    zipped = sweep(gradtx.adam, learning_rate=[1e-3, 1e-2], b1=[0.8, 0.9], mode="zip")
    assert zipped.shape == (2,) and zipped.members[1] == {"learning_rate": 1e-2, "b1": 0.9}
    assert "mode='zip'" in repr(zipped)
    assert sw == sweep(gradtx.adam, learning_rate=[1e-3, 1e-2, 1e-1], b1=[0.8, 0.9])
    assert hash(sw) == hash(sweep(gradtx.adam, learning_rate=[1e-3, 1e-2, 1e-1], b1=[0.8, 0.9]))
    state = sw.init(sw.replicate({"w": jnp.zeros(2)}))
    assert jax.tree.leaves(state)[0].shape[0] == 6


def test_a_grid_of_prng_keys_seeds_each_member_as_alone():
    # A new-style key scalar has no Python value (.item() raised NotImplementedError).
    keys = [jax.random.key(0), jax.random.key(1)]
    sw = sweep(gradtx.simulated_annealing, key=keys)
    params = jnp.ones(3)
    stacked = sw.replicate(params)
    updates, _ = sw.update(None, sw.init(stacked), stacked, value_fn=lambda p: jnp.sum(p**2))
    for index, key in enumerate(keys):
        alone = gradtx.simulated_annealing(key=key)
        expected, _ = alone.update(None, alone.init(params), params, value_fn=lambda p: p @ p)
        np.testing.assert_array_equal(updates[index], expected)
    assert not np.array_equal(updates[0], updates[1])


def test_bad_grids_name_the_keyword_and_value():
    with pytest.raises(ValueError, match=r"learning_rate=-1") as error:
        sweep(gradtx.adam, learning_rate=[0.1, -1])
    assert "in sweep member 1: adam(learning_rate=-1)" in error.value.__notes__
    with pytest.raises(ValueError, match=r"sweep\(nesterov=\[False, True\]\).*structure"):
        sweep(functools.partial(gradtx.adam, 0.1), nesterov=[False, True])
    with pytest.raises(ValueError, match=r"sweep\(momentum=\[None, 0.9\]\)"):
        sweep(gradtx.sgd, learning_rate=[0.1, 0.2], momentum=[None, 0.9])
    with pytest.raises(TypeError, match=r"sweep\(learning_rate=0.1\): each keyword takes a list"):
        sweep(gradtx.adam, learning_rate=0.1)
    with pytest.raises(ValueError, match=r"sweep\(learning_rate=\[\]\)"):
        sweep(gradtx.adam, learning_rate=[])
    with pytest.raises(ValueError, match=r"one length, got learning_rate: 2, b1: 3"):
        sweep(gradtx.adam, learning_rate=[0.1, 0.2], b1=[0.8, 0.9, 0.99], mode="zip")
    with pytest.raises(ValueError, match=r"sweep\(mode='grid'\)"):
        sweep(gradtx.adam, mode="grid", learning_rate=[0.1])
    with pytest.raises(ValueError, match="at least one keyword"):
        sweep(gradtx.adam)
    with pytest.raises(ValueError, match=r"sweep\(foo=\[1, 2\]\): adam has no hyperparameter"):
        sweep(gradtx.adam(0.1), foo=[1, 2])
    ambiguous = gradtx.chain(gradtx.scale_by_adam(), gradtx.scale_by_adam())
    with pytest.raises(ValueError, match="'b1' is found at several places"):
        sweep(ambiguous, b1=[0.8, 0.9])
    with pytest.raises(TypeError, match="not a gradtx transform"):
        sweep(lambda learning_rate: learning_rate, learning_rate=[0.1, 0.2])


def test_example_trains_the_grid_vmapped_and_one_by_one_alike(tmp_path, capsys):
    import sweep as example  # examples/sweep.py

    record = example.main(
        ["--quick", "--optimizers", "sgd", "--compare-sequential", "--out", str(tmp_path)]
    )
    accuracy = np.asarray(record["val_accuracy"])
    assert accuracy.shape == (1, 2) and np.all((accuracy >= 0) & (accuracy <= 1))
    # Same weights, batches and dropout masks: the vmapped members are the one-by-one runs.
    assert record["max_accuracy_difference"] <= 1 / 360  # one validation image at most
    assert record["seconds_vmapped"]["sgd"] > 0 and record["seconds_one_by_one"]["sgd"] > 0
    out = capsys.readouterr().out
    assert "| SGD " in out and "one by one" in out
    assert (tmp_path / "sweep_digits.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    saved = json.loads((tmp_path / "sweep_digits.json").read_text())
    assert saved["val_accuracy"] == record["val_accuracy"]
