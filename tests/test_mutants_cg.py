"""Tests that kill the mutants of gradtx/_cg.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
The reference is scale_by_conjugate_gradient's docstring: beta_t is 0 at t = 0, where the last
gradient is zero, every restart_period steps and where g_t . d_t >= 0; the state keeps the beta
used at the last step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from replay import run_steps

import gradtx


def _run(grads, **options):
    tx = gradtx.scale_by_conjugate_gradient(**options)
    return run_steps(tx, [{"w": jnp.asarray(g)} for g in grads], jit="eager")


@pytest.mark.parametrize("method", ["polak_ribiere", "fletcher_reeves"])
@pytest.mark.parametrize("restart_period", [None, 5])
def test_a_zero_gradient_makes_the_next_step_restart(method, restart_period):
    # Step 1's gradient is 0 (so is its direction); step 2 restarts from -g: beta 0 in the
    # state, though |g_2|^2 / (the fallback 1) would be 4.25.
    run = _run([[1.0, -1.0], [0.0, 0.0], [2.0, 0.5]], method=method, restart_period=restart_period)
    np.testing.assert_array_equal(run.updates[2]["w"], [-2.0, -0.5])
    assert float(run.states[3].beta) == 0.0  # the state after step 2


@pytest.mark.parametrize("method", ["polak_ribiere", "fletcher_reeves"])
def test_a_last_gradient_of_unit_norm_is_no_restart(method):
    # |g_0|^2 = 1: beta_1 = |g_1|^2 / 1 = 0.5 (PR+: (0.5 - 0.5) / 1 = 0).
    run = _run([[1.0, 0.0], [0.5, 0.5]], method=method)
    beta = 0.5 if method == "fletcher_reeves" else 0.0
    assert float(run.states[2].beta) == beta
    np.testing.assert_array_equal(run.updates[1]["w"], [-0.5 - beta, -0.5])


def test_a_direction_orthogonal_to_descent_restarts():
    # g_1 = -g_0 with FR: beta = 1, and beta g_1 . d_0 - |g_1|^2 = 1 - 1 = 0, exactly the
    # boundary (g_1 . d_1 >= 0): the step starts again from -g_1 instead of d_1 = 0.
    run = _run([[1.0, 0.0], [-1.0, 0.0]], method="fletcher_reeves")
    np.testing.assert_array_equal(run.updates[1]["w"], [1.0, 0.0])
    assert float(run.states[2].beta) == 0.0


def test_bfloat16_gradients_give_bfloat16_directions():
    grads = [jnp.asarray(g, jnp.bfloat16) for g in ([1.0, -2.0], [0.5, 1.5], [-1.0, 0.25])]
    run = _run(grads, method="fletcher_reeves")
    for updates, state in zip(run.updates, run.states[1:]):
        assert updates["w"].dtype == jnp.bfloat16
        assert state.direction["w"].dtype == jnp.bfloat16


def test_float32_directions_under_x64_take_beta_in_float32(x64):
    # beta is a float64 scalar under x64; the direction of a float32 leaf is computed in
    # float32 with beta rounded to float32 first, as the docstring's rule in float32.
    rng = np.random.default_rng(0)
    first = rng.normal(size=16).astype(np.float32)
    grads = [first, (0.7 * first + 0.3 * rng.normal(size=16)).astype(np.float32)]
    run = _run(grads, method="fletcher_reeves")
    beta = np.float32(run.states[2].beta)
    assert beta != 0
    expected = beta * np.float32(-grads[0]) - grads[1]
    assert run.updates[1]["w"].dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(run.updates[1]["w"]), expected)
    assert jax.config.jax_enable_x64
