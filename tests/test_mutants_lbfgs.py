"""Tests that kill the mutants of gradtx/_lbfgs.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
The references are optax.scale_by_lbfgs (defaults, the state's layout and dtypes) and
scale_by_lbfgs' docstring (rho = 1 / s.y, 0 for a pair with s.y = 0; gamma = s.y / y.y, 1
where y.y = 0).
"""

from __future__ import annotations

import chex
from errors import raises_whole
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx


def test_the_default_memory_and_state_dtypes_are_optaxs():
    params = {"w": jnp.ones(3, jnp.bfloat16), "b": jnp.ones((), jnp.float32)}
    ours, theirs = gradtx.scale_by_lbfgs().init(params), optax.scale_by_lbfgs().init(params)
    for name in ("diff_params_memory", "diff_updates_memory"):
        mine, reference = getattr(ours, name), getattr(theirs, name)
        chex.assert_trees_all_equal_shapes_and_dtypes(mine, reference)
        assert mine["w"].shape == (10, 3) and mine["w"].dtype == jnp.bfloat16, name


def test_update_without_params_is_refused_naming_the_call_to_make():
    tx = gradtx.scale_by_lbfgs()
    params = {"w": jnp.ones(2)}
    message = (
        "scale_by_lbfgs.update needs params (the steps s = w_k+1 - w_k are taken from them): "
        "call update(updates, state, params, ...)"
    )
    with raises_whole(ValueError, message):
        tx.update(params, tx.init(params))


@pytest.mark.parametrize("scale_init_precond", [True, False])
def test_a_pair_whose_gradient_did_not_change_is_ignored(scale_init_precond):
    # The params moved (s != 0) but the gradient is the same (y = 0): s.y = 0, so rho = 0 and
    # the pair adds nothing; y.y = 0, so gamma = 1. The second output is the gradient itself.
    grads = [{"w": jnp.array([1.0, -2.0])}] * 2
    params = [{"w": jnp.array([0.5, 0.5])}, {"w": jnp.array([0.0, 1.5])}]
    tx = gradtx.scale_by_lbfgs(scale_init_precond=scale_init_precond)
    state = tx.init(params[0])
    for g, p in zip(grads, params):
        updates, state = tx.update(g, state, p)
    np.testing.assert_array_equal(updates["w"], grads[1]["w"])
    np.testing.assert_array_equal(state.weights_memory, np.zeros(10))
    # optax's scale_by_lbfgs gives the same.
    theirs = optax.scale_by_lbfgs(scale_init_precond=scale_init_precond)
    their_state = theirs.init(params[0])
    for g, p in zip(grads, params):
        their_updates, their_state = theirs.update(g, their_state, p)
    np.testing.assert_array_equal(updates["w"], their_updates["w"])
