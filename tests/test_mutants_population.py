"""Tests that kill the mutants of gradtx/_population.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
The references are the helpers' docstrings: as_vector's unravel gives the tree back in the
leaves' own dtypes, step_to's updates are in the params' dtypes, score's errors name the call
and what is missing, and centred_ranks follows tests/oracles_black_box.py's NumPy version of
Salimans et al.'s ``compute_centered_ranks`` (rank / (n - 1) - 1/2, in the values' dtype).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
from oracles_black_box import centred_ranks as centred_ranks_oracle
import pytest

import gradtx
from gradtx._population import centred_ranks


def _loss(params):
    return jnp.sum((params - 1.0) ** 2)


@pytest.mark.parametrize("n", [2, 5])
def test_centred_ranks_are_the_papers_lowest_loss_minus_a_half(n):
    values = np.array([3.0, -1.0, 2.5, 0.0, 7.0][:n])
    np.testing.assert_allclose(
        centred_ranks(jnp.asarray(values)), centred_ranks_oracle(values), rtol=0, atol=1e-7
    )


def test_centred_ranks_keep_the_values_dtype_under_x64(x64):
    # Float32 losses give float32 weights (to float32's rounding), float64 ones exactly the
    # oracle's float64 numbers.
    values = np.array([2.0, 0.5, -3.0, 1.0])
    for dtype, atol in ((jnp.float32, 1e-7), (jnp.float64, 0.0)):
        ranks = centred_ranks(jnp.asarray(values, dtype))
        assert ranks.dtype == dtype
        np.testing.assert_allclose(ranks, centred_ranks_oracle(values), rtol=0, atol=atol)


def test_a_missing_loss_names_the_call_that_passes_it():
    params = jnp.zeros(2)
    tx = gradtx.evolution_strategies(popsize=4)
    message = (
        "evolution_strategies.update needs value_fn= (the loss to minimise): call "
        "update(None, state, params, value_fn=loss_fn) with loss_fn(params) -> scalar to minimise"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        tx.update(None, tx.init(params), params)


def test_a_loss_of_the_wrong_shape_names_the_argument_and_the_population_size():
    # popsize 4, dimension 3: the message's count is the members, not the dimension.
    params = jnp.zeros(3)
    tx = gradtx.evolution_strategies(popsize=4, sigma=0.1)
    state = tx.init(params)
    cases = [
        ("value_fn", {"value_fn": lambda p: p}, "(4, 3)"),
        ("population_value_fn", {"population_value_fn": jnp.sum}, "()"),
    ]
    for given, loss, shape in cases:
        message = (
            f"evolution_strategies.update({given}=...): the loss must be one number per member "
            "(a scalar from value_fn, a vector of 4 from population_value_fn); got shape "
            f"{shape} for the population"
        )
        with pytest.raises(ValueError, match=re.escape(message)):
            tx.update(None, state, params, **loss)


def _dtypes_seen(tx, params):
    """The dtypes value_fn is given, the updates' dtype and the state after one update."""
    seen = []

    def loss(member):
        seen.append(member.dtype)  # at trace time: the dtype is static
        return _loss(member)

    updates, state = tx.update(None, tx.init(params), params, value_fn=loss)
    return set(seen), updates.dtype, state


def test_bfloat16_params_reach_the_loss_and_come_back_as_bfloat16():
    params = jnp.asarray([0.5, -1.0, 2.0], jnp.bfloat16)
    seen, updates_dtype, state = _dtypes_seen(gradtx.particle_swarm(key=0), params)
    assert seen == {jnp.dtype(jnp.bfloat16)} and updates_dtype == jnp.bfloat16
    assert state.positions.dtype == jnp.float32  # the search itself runs in float32


def test_float32_params_under_x64_stay_float32_in_the_loss_the_updates_and_the_state(x64):
    params = jnp.asarray([0.5, -1.0, 2.0], jnp.float32)
    seen, updates_dtype, state = _dtypes_seen(gradtx.evolution_strategies(popsize=4, key=0), params)
    assert seen == {jnp.dtype(jnp.float32)} and updates_dtype == jnp.float32
    # The losses the state keeps stay in init's dtype: a jitted step does not compile again.
    assert state.values.dtype == jnp.float32


def test_the_state_survives_params_donated_to_the_apply_step():
    # One 1-D array: raveling it returns its own buffer, which the state must not share,
    # else donating the params to apply_updates deletes the state's best point.
    params = jnp.linspace(-1.0, 1.0, 4)
    tx = gradtx.simulated_annealing(key=0)
    state = tx.init(params)
    apply = jax.jit(gradtx.apply_updates, donate_argnums=0)
    params = apply(params, jnp.full(4, 0.5))
    updates, state = tx.update(None, state, params, value_fn=_loss)
    assert bool(jnp.all(jnp.isfinite(updates)))
