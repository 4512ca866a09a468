"""Tests that kill the mutants of gradtx/_averaging.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from replay import run_steps

import gradtx

# p_0 = [3, 7.3] and the updates below: p_t = [0.1, -0.2], [1.1, 0.8], [3.1, 2.8], [7.1, 4.8].
P0 = {"w": jnp.array([3.0, 7.3], jnp.float32)}
UPDATES = [jnp.array(u, jnp.float32) for u in ([-2.9, -7.5], [1.0, 1.0], [2.0, 2.0], [4.0, 2.0])]


def _trajectory(tx, params=P0, updates=UPDATES, init=None):
    """The params after each step and the average after each step (eager steps)."""
    steps = run_steps(
        tx, [{"w": u} for u in updates], params, init=init, apply=gradtx.apply_updates, jit="eager"
    )
    averages = [gradtx.tree_get(state, "average")["w"] for state in steps.states[1:]]
    return [p["w"] for p in steps.params[1:]], averages


@pytest.mark.parametrize(
    "start, first",
    [(None, 1), (0, 0), (3, 3)],
    ids=["default-every-step", "start-0-includes-p0", "start-3"],
)
def test_polyak_average_is_the_mean_of_the_iterates_from_start_on(start, first):
    tx = gradtx.polyak_average() if start is None else gradtx.polyak_average(start=start)
    seen, averages = _trajectory(tx)
    iterates = [P0["w"], *seen]
    np.testing.assert_allclose(averages[-1], np.mean(iterates[first:], axis=0), rtol=1e-6)


@pytest.mark.parametrize(
    "tx",
    [gradtx.polyak_average(start=3), gradtx.ema_params(0.0)],
    ids=["polyak-before-start", "ema-decay-0"],
)
def test_a_weight_of_one_makes_the_average_an_exact_copy_of_the_params(tx):
    # "A copy of p_t while mu_t = 1": the average becomes p_t itself, not a + 1 * (p_t - a),
    # so nothing of what the state held leaks in. Here a state from another run whose average
    # holds an inf: inf + (0.8 - inf) would be NaN.
    params = {"w": jnp.array([0.1, -0.2], jnp.float32)}
    init = {"w": jnp.array([3.0, jnp.inf], jnp.float32)}
    for p, average in zip(*_trajectory(tx, params, UPDATES[1:3], init)):
        np.testing.assert_array_equal(average, p)


def test_ema_params_decays_by_0_999_by_default():
    tx = gradtx.ema_params()
    assert tx == gradtx.ema_params(0.999)
    params = {"w": jnp.zeros(2)}
    _, state = tx.update({"w": jnp.ones(2)}, tx.init(params), params)
    np.testing.assert_allclose(gradtx.tree_get(state, "average")["w"], [0.001, 0.001], rtol=1e-4)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: gradtx.ema_params(-0.1), "average_params(decay=-0.1): decay must be in [0, 1]"),
        (lambda: gradtx.ema_params(1.5), "average_params(decay=1.5): decay must be in [0, 1]"),
        (lambda: gradtx.polyak_average(-1), "average_params(start=-1): start must be in [0, inf)"),
    ],
    ids=["decay-below-0", "decay-above-1", "start-below-0"],
)
def test_an_argument_out_of_range_is_refused_when_built(build, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build()


def test_an_update_without_params_names_the_transform():
    tx = gradtx.polyak_average()
    with pytest.raises(ValueError, match=re.escape("average_params needs the params: call")):
        tx.update(P0, tx.init(P0))


def test_a_start_past_the_int32_range_never_averages():
    # start is an int (not turned into a float when built): it is cast to a float, never to
    # int32, where 2**31 overflows.
    seen, averages = _trajectory(gradtx.polyak_average(start=2**31), updates=UPDATES[2:])
    for p, average in zip(seen, averages):
        np.testing.assert_array_equal(average, p)


def test_under_x64_a_swept_float32_decay_is_widened_before_one_minus_decay(x64):
    # The decay is a float64 hyperparameter under x64 whatever its dtype: 1 - decay is not
    # rounded to float32 (0.9 in float32 is 2e-8 away from 1 - float32(0.1)).
    decays = jnp.array([0.1, 0.3], jnp.float32)
    params = {"w": jnp.zeros(2, jnp.float64)}
    grads = {"w": jnp.ones(2, jnp.float64)}

    def first_average(decay):
        tx = gradtx.ema_params(decay)
        _, state = tx.update(grads, tx.init(params), params)
        return gradtx.tree_get(state, "average")["w"]

    averages = jax.vmap(first_average)(decays)  # a_1 = (1 - decay) * p_1, p_1 = 1
    expected = 1 - np.asarray(decays, np.float64)
    np.testing.assert_array_equal(averages, np.repeat(expected[:, None], 2, axis=1))


def test_a_float32_polyak_average_has_the_same_bits_with_and_without_x64():
    # The weight 1 / n is cast to the leaf's compute dtype (float32 here, also under x64), so
    # x64 does not change a float32 average's rounding.
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=16), jnp.float32)}
    updates = [jnp.asarray(rng.normal(size=16), jnp.float32) for _ in range(4)]
    without = _trajectory(gradtx.polyak_average(), params, updates)[1]
    with jax.enable_x64(True):
        with_x64 = _trajectory(gradtx.polyak_average(), params, updates)[1]
    for a, b in zip(with_x64, without):
        assert a.dtype == jnp.float32
        np.testing.assert_array_equal(a, b)
