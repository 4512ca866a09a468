"""Tests that kill the mutants of gradtx/_ftrl.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
"""

from __future__ import annotations

import operator
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from replay import run_steps

import gradtx
from gradtx._ftrl import FtrlProximal

GRADS = np.array([[0.3, -2.0, 0.05, 1.1], [-0.7, 0.4, 0.05, 1.3], [0.2, 0.9, -1.5, -0.6]])
PARAMS = np.array([0.5, -0.25, 1.5, 0.0])


def _reference(lr_at, power, n0, l1, l2, l2_shrinkage, beta, weight_decay):
    """The docstring's update rule in float64 NumPy: the updates, step by step."""
    p, n, z, updates = PARAMS.copy(), np.full(4, n0), np.zeros(4), []
    for t, g in enumerate(GRADS):
        lr = lr_at(t)
        decayed = p - p * weight_decay * lr
        l2_ = l2 + beta / (2 * lr)
        new_n = n + g * g
        z = z + g + 2 * l2_shrinkage * decayed - (new_n**-power - n**-power) / lr * decayed
        new_p = (np.clip(z, -l1, l1) - z) / (new_n**-power / lr + 2 * l2_)
        updates.append(new_p - p)
        p, n = new_p, new_n
    return np.array(updates)


def _run(tx, dtype=None):
    """The updates of eager steps over ``GRADS`` from ``PARAMS`` (moved by ``params + u``), and
    the last state."""
    grads = [jnp.asarray(g, dtype) for g in GRADS]
    steps = run_steps(tx, grads, jnp.asarray(PARAMS, dtype), apply=operator.add, jit="eager")
    return steps.updates, steps.states[-1]


def test_ftrl_proximals_defaults_are_the_documented_ones():
    # x_ftrl_proximal: the factory's defaults are the class's and the docstring's (Keras's).
    tx = gradtx.ftrl_proximal()
    assert tx == FtrlProximal()
    assert (tx.learning_rate, tx.learning_rate_power, tx.initial_accumulator_value) == (
        1e-3,
        -0.5,
        0.1,
    )
    assert (tx.l1, tx.l2, tx.l2_shrinkage, tx.beta, tx.weight_decay) == (0.0,) * 5


@pytest.mark.usefixtures("x64")
def test_ftrl_proximal_follows_its_update_rule_with_every_option_and_a_schedule():
    schedule = gradtx.linear_schedule(0.3, 0.1, transition_steps=2)
    tx = gradtx.ftrl_proximal(
        schedule, l1=0.4, l2=0.3, l2_shrinkage=0.2, beta=0.5, weight_decay=0.3
    )
    assert tx.weight_decay == 0.3
    updates, state = _run(tx)
    expected = _reference(lambda t: 0.3 - 0.1 * min(t, 2), -0.5, 0.1, 0.4, 0.3, 0.2, 0.5, 0.3)
    np.testing.assert_allclose(np.array(updates), expected, rtol=1e-12, atol=1e-14)
    assert float(tx.init(jnp.asarray(PARAMS)).learning_rate) == pytest.approx(0.3)
    assert float(state.learning_rate) == pytest.approx(0.1)
    # learning_rate_power 0 (constant step) from a zero accumulator.
    tx = gradtx.ftrl_proximal(0.2, learning_rate_power=0.0, initial_accumulator_value=0.0, l1=0.1)
    expected = _reference(lambda t: 0.2, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0, 0.0)
    np.testing.assert_allclose(np.array(_run(tx)[0]), expected, rtol=1e-12, atol=1e-14)


def test_float32_leaves_give_the_same_bits_with_x64_on_and_off():
    # Every hyperparameter is cast to the leaf's compute dtype: with x64 on, a float32 leaf
    # must not be computed partly in float64 (hp(..., None) would be float64 there).
    tx = gradtx.ftrl_proximal(
        0.1, l1=0.13, l2=0.37, l2_shrinkage=0.21, beta=0.53, weight_decay=0.71
    )
    results = []
    for flag in (False, True):
        with jax.enable_x64(flag):
            updates, state = _run(tx, jnp.float32)
            results.append([np.asarray(x) for x in [*updates, state.accumulator, state.linear]])
    for off, on in zip(*results, strict=True):
        assert on.dtype == off.dtype == np.float32
        np.testing.assert_array_equal(on, off)


def test_bfloat16_leaves_keep_bfloat16_updates_and_state():
    updates, state = _run(gradtx.ftrl_proximal(0.1, l1=0.1), jnp.bfloat16)
    assert [u.dtype for u in updates] == [jnp.bfloat16] * len(GRADS)
    assert state.accumulator.dtype == state.linear.dtype == jnp.bfloat16


def test_ftrl_proximal_refuses_hyperparameters_out_of_range():
    for kwargs, interval in [
        ({"learning_rate": 0.0}, "(0, inf)"),
        ({"learning_rate": -0.1}, "(0, inf)"),
        ({"learning_rate_power": 0.5}, "(-inf, 0]"),
        ({"initial_accumulator_value": -0.1}, "[0, inf)"),
        *[
            ({arg: -0.1}, "[0, inf)")
            for arg in ("l1", "l2", "l2_shrinkage", "beta", "weight_decay")
        ],
    ]:
        [(arg, value)] = kwargs.items()
        message = f"ftrl_proximal({arg}={value}): {arg} must be in {interval}"
        with pytest.raises(ValueError, match=re.escape(message)):
            gradtx.ftrl_proximal(**kwargs)
    # The closed ends are accepted.
    gradtx.ftrl_proximal(1e-9, learning_rate_power=0.0, initial_accumulator_value=0.0)


def test_ftrl_proximal_without_params_names_itself():
    tx = gradtx.ftrl_proximal(0.1)
    params = jnp.zeros(2)
    with pytest.raises(ValueError, match=re.escape("ftrl_proximal needs the params")):
        tx.update(params, tx.init(params), None)
