"""Tests that kill the mutants of gradtx/_annealing.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
The references are the docstrings: Metropolis acceptance ``u < exp(-(f_new - f) / T)`` (at
T = 0 only strict improvements pass), Geman and Geman's ``T0 / ln(e + k)`` (T0 >= 0, default
1), params moved to the best point evaluated (kept on ties, as gradtx/_population.py's
searches), ``population_value_fn=`` as an alternative to ``value_fn=``, the chains' arithmetic
in the params' compute dtype; and test_annealing.py's NumPy oracle of the algorithm, given the
draws made as the code makes them (one key split per step, then noise and acceptance draws).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_annealing import oracle, run

import gradtx
from gradtx._annealing import logarithmic_cooling, metropolis, simulated_annealing


def code_draws(seed, steps, shape, dtype):
    """The noise and acceptance draws of ``steps`` updates from ``key=seed``, made as the
    transform makes them."""
    key, noise, u = jax.random.key(seed), [], []
    for _ in range(steps):
        key, draw = jax.random.split(key)
        k_noise, k_accept = jax.random.split(draw)
        noise.append(np.asarray(jax.random.normal(k_noise, shape, dtype)))
        u.append(np.asarray(jax.random.uniform(k_accept, shape[:1], dtype)))
    return np.stack(noise), np.stack(u)


def test_logarithmic_cooling_starts_at_one_by_default_and_at_any_value_from_zero():
    assert float(logarithmic_cooling()(0)) == 1.0
    assert float(logarithmic_cooling(0.5)(0)) == 0.5  # init_value >= 0, not >= 1
    assert float(logarithmic_cooling(0.0)(3)) == 0.0


def test_logarithmic_cooling_takes_whole_numbers_past_int32():
    # k goes through the default float: 2**40 as a Python int is no int32 overflow (T0 is a
    # float field, 2**40 stored as 2.0**40).
    schedule = logarithmic_cooling(2**40)
    expected = 2.0**40 / np.log(np.e + 2.0**40)
    np.testing.assert_allclose(float(schedule(2**40)), expected, rtol=1e-6)


def test_metropolis_at_zero_temperature_passes_only_strict_improvements_even_at_u_zero():
    losses, proposed = jnp.asarray([1.0, 1.0, 1.0]), jnp.asarray([2.0, 1.0, 0.5])
    u = jnp.zeros(3)  # U[0, 1) can draw 0: u < exp(-inf) = 0 is still false
    np.testing.assert_array_equal(metropolis(losses, proposed, 0.0, u), [False, False, True])
    # Far uphill at T > 0: exp underflows to 0, refused at u = 0 too.
    assert not bool(metropolis(jnp.asarray(0.0), jnp.asarray(1e4), 1.0, jnp.asarray(0.0)))


def test_float32_params_under_x64_keep_float32_chains_equal_to_the_oracle(x64):
    # Every draw, the losses, T and s in float32 (the params' dtype), not the default float64:
    # the chains equal the NumPy oracle fed the float32 draws.
    steps, chains, x0 = 4, 6, np.asarray([1.0, -1.0], np.float32)
    tx = simulated_annealing(temperature=1.0, step_size=0.5, n_chains=chains, key=1)
    params, ours = run(tx, jnp.asarray(x0), lambda x: jnp.sum(x**2), steps)
    noise, u = code_draws(1, steps, (chains, 2), jnp.float32)
    theirs = oracle(lambda x: np.sum(x**2, axis=-1), x0, [1.0] * steps, [0.5] * steps, noise, u)
    for name, expected in zip(("positions", "losses", "best", "best_loss"), theirs):
        assert getattr(ours, name).dtype == np.float32, name
        np.testing.assert_allclose(
            getattr(ours, name), expected, rtol=1e-6, atol=1e-6, err_msg=name
        )
    accepted = np.any(np.diff(ours.positions, axis=0) != 0, axis=-1)
    assert 0 < accepted.mean() < 1  # the acceptance draws decide
    assert params.dtype == jnp.float32


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_a_temperature_past_float32s_range_is_infinite_for_float32_params(x64):
    # T = 1e39 in the params' float32 is inf: every move is accepted, a random walk. In
    # float64, a move 3e38 uphill would pass with probability exp(-0.3) only.
    chains = 8
    tx = simulated_annealing(temperature=1e39, step_size=1.0, n_chains=chains, key=2)
    _, ours = run(tx, jnp.zeros(1, jnp.float32), lambda x: jnp.where(x[0] == 0, 0.0, 3e38), 1)
    noise, u = code_draws(2, 1, (chains, 1), jnp.float32)
    assert np.any(u[0] >= np.exp(-0.3))  # float64 T would refuse some chain
    np.testing.assert_array_equal(ours.positions[0], noise[0])
    np.testing.assert_array_equal(ours.losses[0], np.float32(3e38))


def test_population_value_fn_gives_the_chains_of_value_fn():
    tx = simulated_annealing(temperature=1.0, step_size=0.5, n_chains=3, key=4)
    params = jnp.asarray([1.0, -2.0])
    runs = []
    for kw in (
        {"value_fn": lambda x: jnp.sum(x**2)},
        {"population_value_fn": lambda xs: jnp.sum(xs**2, axis=-1)},
    ):
        p, state = params, tx.init(params)
        for _ in range(2):
            updates, state = tx.update(None, state, p, **kw)
            p = gradtx.apply_updates(p, updates)
        runs.append((p, state.positions, state.losses))
    for ours, theirs in zip(*runs):
        np.testing.assert_array_equal(ours, theirs)


def test_the_key_seeds_the_chains_and_ties_keep_the_first_best_point():
    # A flat loss: every proposal is accepted (u < exp(0) = 1), the chains walk by the
    # key's noise, and no point evaluated is strictly better than the start, which stays best.
    steps, chains, x0 = 3, 2, np.asarray([0.5, -0.5], np.float32)
    tx = simulated_annealing(temperature=1.0, step_size=0.25, n_chains=chains, key=3)
    params, ours = run(tx, jnp.asarray(x0), lambda x: 0.0 * jnp.sum(x), steps)
    noise, u = code_draws(3, steps, (chains, 2), jnp.float32)
    theirs = oracle(lambda x: np.zeros(len(x)), x0, [1.0] * steps, [0.25] * steps, noise, u)
    np.testing.assert_allclose(ours.positions, theirs[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ours.best, theirs[2])
    np.testing.assert_array_equal(params, x0)


def test_a_schedule_with_traced_values_is_accepted_and_runs():
    # Built under jit from a traced T0: the non-increasing check cannot sample it.
    params = jnp.asarray([1.0, -1.0])

    def first_step(t0):
        tx = simulated_annealing(gradtx.exponential_decay(t0, 1, 0.5), n_chains=2, key=5)
        updates, _ = tx.update(None, tx.init(params), params, value_fn=lambda x: jnp.sum(x**2))
        return updates

    np.testing.assert_array_equal(jax.jit(first_step)(2.0), first_step(2.0))


def test_an_increasing_temperature_schedule_is_refused_naming_the_call_and_argument():
    with pytest.raises(
        ValueError,
        match=r"simulated_annealing\(temperature=.*\): a cooling schedule must not increase",
    ):
        simulated_annealing(gradtx.linear_schedule(0.1, 2.0, 10))
