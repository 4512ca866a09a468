"""particle_swarm: pyswarms 1.3's GlobalBestPSO given the same swarm and draws.

- recorded: every case of tests/reference/record_swarm.py (no limits, a velocity clamp,
  periodic bounds, both), the initial swarm and pyswarms' draws r1, r2 injected: positions,
  velocities, global best and its loss after each iteration equal pyswarms' to 1e-10
  (float64), and params land on the global best; live: a fresh pyswarms run, replayed;
- the shell: one compile under jit, the same numbers inside gradtx.chain, the initial swarm
  around params (in the clamp, in the bounds), the default swarm size, NaN losses never best;
- bad arguments refused when built, naming them.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import record_swarm
from reference.recording import DATA

import gradtx
from gradtx import _swarm
from gradtx._swarm import particle_swarm

RECORDED = json.loads((DATA / "swarm.json").read_text())["cases"]


def rastrigin(x):
    return 10.0 * x.shape[-1] + jnp.sum(x**2 - 10.0 * jnp.cos(2.0 * jnp.pi * x))


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


OBJECTIVES = {"rastrigin": rastrigin, "rosenbrock": rosenbrock}


def replay(case, recorded, monkeypatch):
    """gradtx's trajectory from pyswarms' initial swarm with pyswarms' draws, in float64."""
    d, n = case["dimensions"], case["n_particles"]
    kwargs = {k: tuple(v) for k, v in case["kwargs"].items()}
    tx = particle_swarm(n_particles=n, **case["options"], **kwargs)
    injected = {}
    monkeypatch.setattr(_swarm, "coefficients", lambda key, shape, dtype: tuple(injected["r"]))
    value_fn = OBJECTIVES[case["objective"]]

    @jax.jit
    def step(state, params, r):
        injected["r"] = r  # traced: one compile, each iteration's draws as an argument
        updates, state = tx.update(None, state, params, value_fn=value_fn)
        return gradtx.apply_updates(params, updates), state

    params = jnp.zeros(d)
    x0, v0 = jnp.asarray(recorded["positions"][0]), jnp.asarray(recorded["velocities"][0])
    state = tx.init(params)._replace(positions=x0, velocities=v0, best_positions=x0)
    out = {k: [] for k in ("positions", "velocities", "global_best", "global_best_loss")}
    for r in recorded["r"]:
        params, state = step(state, params, r)
        np.testing.assert_allclose(params, state.global_best, rtol=1e-15)
        for key, values in out.items():
            values.append(np.asarray(getattr(state, key)))
    return {k: np.stack(v) for k, v in out.items()}


def assert_same_trajectory(ours, theirs):
    for key in ("positions", "velocities"):
        np.testing.assert_allclose(ours[key], theirs[key][1:], rtol=1e-10, atol=1e-12, err_msg=key)
    for key in ("global_best", "global_best_loss"):
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-10, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("case", RECORDED, ids=[f"case{c['index']}" for c in RECORDED])
def test_equals_recorded_pyswarms(case, monkeypatch, x64):
    data = np.load(DATA / "swarm.npz")
    theirs = {k: data[f"{case['index']}/{k}"] for k in ("r", "positions", "velocities")}
    theirs |= {k: data[f"{case['index']}/{k}"] for k in ("global_best", "global_best_loss")}
    assert_same_trajectory(replay(case, theirs, monkeypatch), theirs)


def test_equals_live_pyswarms(monkeypatch, x64):
    pytest.importorskip("pyswarms")
    case = {**RECORDED[-1], "seed": 11, "iters": 12}  # bounds and a clamp, a fresh swarm
    theirs = record_swarm.run_pyswarms(case)
    assert_same_trajectory(replay(case, theirs, monkeypatch), theirs)


def sphere(params):
    return sum(jnp.sum(x**2) for x in jax.tree.leaves(params))


PARAMS = {"a": jnp.asarray([1.0, -2.0]), "b": jnp.asarray(0.5, jnp.float32)}


def test_initial_swarm_surrounds_params():
    vector = jnp.asarray([1.0, -2.0, 0.5])
    state = particle_swarm(init_scale=0.25).init(PARAMS)
    n = _swarm.default_particles(3)
    assert n == 13 and state.positions.shape == (n, 3)
    assert np.all(np.abs(state.positions - vector) <= 0.25)
    assert np.all(np.abs(state.velocities) <= 0.25)
    np.testing.assert_array_equal(state.global_best, vector)
    assert np.isinf(state.global_best_loss) and np.all(np.isinf(state.best_losses))

    clamped = particle_swarm(velocity_clamp=(0.1, 0.2)).init(PARAMS)
    assert np.all((clamped.velocities >= 0.1) & (clamped.velocities <= 0.2))
    bounded = particle_swarm(init_scale=3.0, bounds=(-1.0, 1.0)).init(PARAMS)
    assert np.all(np.abs(bounded.positions) <= 1.0)


def test_nan_loss_is_never_the_best():
    tx = particle_swarm(n_particles=4)
    state = tx.init(PARAMS)

    def loss(params):  # NaN on half of the space, where the minimum would be
        value = sphere(params)
        return jnp.where(params["a"][0] < 1.0, jnp.nan, value)

    updates, after = jax.jit(lambda s, p: tx.update(None, s, p, value_fn=loss))(state, PARAMS)
    new = gradtx.apply_updates(PARAMS, updates)
    assert new["a"][0] >= 1.0 and np.isfinite(after.global_best_loss)
    nan = state.positions[:, 0] < 1.0
    assert 0 < nan.sum() < 4
    np.testing.assert_array_equal(np.isinf(after.best_losses), nan)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_particles": 0}, r"particle_swarm\(n_particles=0\)"),
        ({"n_particles": 2.5}, r"n_particles must be a whole number"),
        ({"w": -0.1}, r"particle_swarm\(w=-0.1\)"),
        ({"c2": jnp.nan}, r"c2 must be a finite number"),
        ({"init_scale": -1.0}, r"init_scale"),
        ({"velocity_clamp": (1.0, -1.0)}, r"velocity_clamp=\(1.0, -1.0\).*low < high"),
        ({"bounds": (1.0,)}, r"bounds=\(1.0,\).*pair"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        particle_swarm(**kwargs)


def test_missing_value_fn_is_named():
    tx = particle_swarm(n_particles=3)
    with pytest.raises(ValueError, match=r"particle_swarm.update needs value_fn="):
        tx.update(None, tx.init(PARAMS), PARAMS)
