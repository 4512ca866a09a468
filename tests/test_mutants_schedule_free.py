"""Tests that kill the mutants of gradtx/_schedule_free.py the other test files let survive.

The verdicts, mutant by mutant, and how the run was made: tests/MUTATION.md (issue 20).
References: ``optax.contrib.schedule_free`` (defaults, zero weights, extra arguments, optax
base optimizers), the docstrings (updates in the gradients' dtype, x in the params' dtypes,
z in ``state_dtype``, the authors' warmup ``lr * min((k + 1) / warmup_steps, 1)``) and
gradtx's value semantics (equal objects hash alike; a jitted step compiles once).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from replay import run_steps

import gradtx
from gradtx import compat
from gradtx._schedule_free import ScheduleFreeWarmup


def _params(dtype=jnp.float32):
    return {"w": jnp.asarray([1.0, -2.0, 0.5], dtype)}


def _grads(dtype=jnp.float32, steps=4):
    rows = [[0.3, -1.0, 0.8], [-0.5, 0.4, 0.2], [0.9, 0.1, -0.6], [0.2, -0.3, 0.7]]
    return [{"w": jnp.asarray(row, dtype)} for row in rows[:steps]]


def _run(tx, params=None, grads=None, jit="traced"):
    params = _params() if params is None else params
    grads = _grads() if grads is None else grads
    return run_steps(tx, grads, params, apply=gradtx.apply_updates, jit=jit)


def _assert_same_run(ours, theirs, rtol=1e-6, atol=1e-7):
    for a, b in zip(ours.params[1:], theirs.params[1:]):
        np.testing.assert_allclose(a["w"], b["w"], rtol=rtol, atol=atol)
    x_ours = gradtx.schedule_free_eval_params(ours.states[-1], ours.params[-1])
    x_theirs = optax.contrib.schedule_free_eval_params(theirs.states[-1], theirs.params[-1])
    np.testing.assert_allclose(x_ours["w"], x_theirs["w"], rtol=rtol, atol=atol)


# -- schedule_free's defaults and options against optax's ----------------------------------


def test_schedule_free_defaults_are_optaxs_under_a_warmup():
    # A warmup makes the peak rate grow, so weight_lr_power changes the weights c_t
    # (t=2: 2**p / (1 + 2**p)); the same schedule function drives both libraries.
    schedule = optax.warmup_constant_schedule(0.0, 0.1, 3)
    ours = _run(gradtx.schedule_free(gradtx.sgd(schedule), schedule))
    theirs = _run(optax.contrib.schedule_free(optax.sgd(schedule), schedule))
    _assert_same_run(ours, theirs)
    assert float(ours.states[-1].b1) == pytest.approx(0.9)


def test_weights_stay_zero_while_every_rate_is_zero():
    # learning_rate (the weights' rate) 0 and a moving base optimizer: 0/0 weights are 0
    # (optax's nan_to_num), so x stays at the start and y = y_0 + (1 - b1) (z - z_0).
    ours = _run(gradtx.schedule_free(gradtx.sgd(0.5), 0.0, b1=0.5))
    theirs = _run(optax.contrib.schedule_free(optax.sgd(0.5), 0.0, b1=0.5))
    _assert_same_run(ours, theirs)
    z = _params()["w"] - 0.5 * sum(g["w"] for g in _grads())
    np.testing.assert_allclose(ours.params[-1]["w"], 0.5 * _params()["w"] + 0.5 * z, rtol=1e-6)
    x = gradtx.schedule_free_eval_params(ours.states[-1], ours.params[-1])
    np.testing.assert_allclose(x["w"], _params()["w"], rtol=1e-6)


def test_extra_arguments_reach_the_base_optimizer():
    # polyak_sgd needs value=: schedule_free passes it on, as optax's does.
    def loss(params):
        return 0.5 * jnp.sum(params["w"] ** 2)

    results = []
    for tx in (
        gradtx.schedule_free(gradtx.polyak_sgd(max_learning_rate=0.5), 0.5, b1=0.8),
        optax.contrib.schedule_free(optax.polyak_sgd(max_learning_rate=0.5), 0.5, b1=0.8),
    ):
        update = jax.jit(tx.update)
        params, state = _params(), tx.init(_params())
        for _ in range(3):
            value, grads = jax.value_and_grad(loss)(params)
            updates, state = update(grads, state, params, value=value)
            params = gradtx.apply_updates(params, updates)
        results.append(params["w"])
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6)
    assert np.all(np.abs(results[0] - _params()["w"]) > 0.1)


def test_an_optax_base_optimizer_runs_with_the_transform_as_a_jit_argument():
    # The base optimizer is wrapped into a gradtx transform: the whole object is a pytree of
    # numbers that a jitted step takes as an argument.
    ours = gradtx.schedule_free(optax.sgd(0.1), 0.1)
    assert isinstance(ours.base_optimizer, gradtx.Transform)
    _assert_same_run(_run(ours), _run(optax.contrib.schedule_free(optax.sgd(0.1), 0.1)))


# -- dtypes ----------------------------------------------------------------------------------


def test_bfloat16_params_keep_bfloat16_updates_z_and_eval_params():
    tx = gradtx.schedule_free(gradtx.sgd(0.1), 0.1)
    ours = _run(tx, _params(jnp.bfloat16), _grads(jnp.bfloat16, steps=2))
    assert all(u["w"].dtype == jnp.bfloat16 for u in ours.updates)
    assert all(s.z["w"].dtype == jnp.bfloat16 for s in ours.states)
    x = gradtx.schedule_free_eval_params(ours.states[-1], ours.params[-1])
    assert x["w"].dtype == jnp.bfloat16
    wide = _run(tx, grads=_grads(steps=2))  # the same in float32, to bfloat16's precision
    np.testing.assert_allclose(np.float32(ours.params[-1]["w"]), wide.params[-1]["w"], rtol=2e-2)
    x_wide = gradtx.schedule_free_eval_params(wide.states[-1], wide.params[-1])
    np.testing.assert_allclose(np.float32(x["w"]), x_wide["w"], rtol=2e-2)


def test_state_dtype_stores_z():
    tx = gradtx.schedule_free(gradtx.sgd(0.1), 0.1, state_dtype=jnp.bfloat16)
    ours = _run(tx, grads=_grads(steps=2))
    assert all(s.z["w"].dtype == jnp.bfloat16 for s in ours.states)
    assert all(u["w"].dtype == jnp.float32 for u in ours.updates)


def test_state_dtype_spellings_give_equal_transforms():
    # state_dtype is static: the normalised dtype makes the spellings one object, one hash,
    # one jit cache entry.
    spellings = ["bfloat16", jnp.bfloat16, np.dtype(jnp.bfloat16)]
    txs = [gradtx.schedule_free(gradtx.sgd(0.1), 0.1, state_dtype=d) for d in spellings]
    assert all(tx == txs[0] and hash(tx) == hash(txs[0]) for tx in txs)
    assert "state_dtype=bfloat16," in repr(txs[0])


def test_a_jitted_step_compiles_once():
    # update returns a state of init's types (dtypes and weak types): the step's second call
    # reuses the first call's program.
    tx = gradtx.schedule_free(gradtx.sgd(0.1), 0.1)
    traces = []

    @jax.jit
    def step(params, state):
        traces.append(None)
        updates, state = tx.update(params, state, params)
        return gradtx.apply_updates(params, updates), state

    params = _params()
    state = first = tx.init(params)
    for _ in range(3):
        params, state = step(params, state)
    assert len(traces) == 1
    assert jax.tree.map(jax.typeof, state) == jax.tree.map(jax.typeof, first)


# -- schedule_free_eval_params -------------------------------------------------------------


def test_eval_params_without_a_schedule_free_state_names_the_call_and_the_state():
    params = _params()
    with pytest.raises(
        ValueError, match=r"^schedule_free_eval_params: the state holds no ScheduleFreeState; "
    ):
        gradtx.schedule_free_eval_params(gradtx.sgd(0.1).init(params), params)


# -- the authors' warmup (ScheduleFreeWarmup, the compat ports) ----------------------------


@pytest.mark.parametrize("warmup_steps", [0, 1, 3])
def test_warmup_is_the_authors(warmup_steps):
    rate = ScheduleFreeWarmup(learning_rate=0.5, warmup_steps=warmup_steps)
    k = np.arange(5)
    expected = 0.5 * np.minimum((k + 1) / max(warmup_steps, 1), 1.0)
    np.testing.assert_allclose(rate(jnp.asarray(k)), expected, rtol=1e-7)


def test_a_one_step_warmup_trains_at_the_full_rate_from_the_first_step():
    # schedulefree: lr * min(1, (k + 1) / warmup_steps) = lr at k = 0; c_1 = 1, so y_1 = z_1.
    tx = compat.pytorch.sgd_schedule_free(lr=0.5, warmup_steps=1)
    ours = _run(tx, grads=_grads(steps=1))
    np.testing.assert_allclose(ours.updates[0]["w"], -0.5 * _grads()[0]["w"], rtol=1e-6)


def test_a_warmup_longer_than_int32_is_evaluated():
    # warmup_steps has no upper bound: 2**31 is a number, not an int32 overflow.
    rate = ScheduleFreeWarmup(learning_rate=1.0, warmup_steps=2**31)
    np.testing.assert_allclose(rate(jnp.arange(3)), np.arange(1, 4) / 2.0**31, rtol=1e-7)


def test_the_warmup_refuses_negative_values_naming_them():
    with pytest.raises(
        ValueError,
        match=r"^schedule_free_warmup\(learning_rate=-1\.0\): learning_rate must be in \[0, inf\)",
    ):
        ScheduleFreeWarmup(learning_rate=-1.0, warmup_steps=2)
    with pytest.raises(
        ValueError,
        match=r"^pytorch\.sgd_schedule_free\(warmup_steps=-1\): warmup_steps must be in \[0, inf\)",
    ):
        compat.pytorch.sgd_schedule_free(warmup_steps=-1)
