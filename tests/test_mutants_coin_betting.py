"""Tests that kill the mutants of gradtx/_coin_betting.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
The references are optax.contrib's scale_by_cocob and mechanize, under their names and defaults.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from replay import run_steps

import gradtx
from gradtx._tree import tree_cast

GRADS = [
    {"w": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array([0.25])},
    {"w": jnp.array([-0.5, 1.5, 2.0]), "b": jnp.array([-1.0])},
    {"w": jnp.array([0.75, -0.25, -1.0]), "b": jnp.array([0.5])},
]
PARAMS = {"w": jnp.array([0.5, -1.0, 2.0]), "b": jnp.array([0.1])}


def _assert_runs_alike(ours, theirs, params=PARAMS, grads=GRADS, rtol=1e-6):
    mine = run_steps(ours, grads, params, jit="eager")
    reference = run_steps(theirs, grads, params, jit="eager")
    for u, v in zip(mine.updates, reference.updates):
        chex.assert_trees_all_close(u, v, rtol=rtol, atol=0)
    return mine


def test_scale_by_cocob_on_its_defaults_is_optaxs():
    # alpha 100 caps the first bets (the first step is C / (alpha L) * L); eps is L_0, which
    # decides a coordinate whose gradient is still 0.
    grads = [jax.tree.map(lambda g: g.at[0].set(0.0), GRADS[0]), *GRADS[1:]]
    _assert_runs_alike(gradtx.scale_by_cocob(), optax.contrib.scale_by_cocob(), grads=grads)


def test_scale_by_cocob_under_x64_keeps_float32_leaves_bit_for_bit_as_optax(x64):
    # optax's alpha is a Python float (weakly typed): float32 arithmetic for float32 leaves.
    params, grads = tree_cast(PARAMS, jnp.float32), [tree_cast(g, jnp.float32) for g in GRADS]
    ours = run_steps(gradtx.scale_by_cocob(alpha=3.0), grads, params, jit="eager")
    theirs = run_steps(optax.contrib.scale_by_cocob(alpha=3.0), grads, params, jit="eager")
    for u, v in zip(ours.updates, theirs.updates):
        chex.assert_trees_all_equal(u, v)
        chex.assert_trees_all_equal_dtypes(u, params)


def test_scale_by_cocob_takes_an_alpha_below_one():
    # alpha >= 0: 0.5 is in range (the cap then never binds after the first step).
    _assert_runs_alike(
        gradtx.scale_by_cocob(alpha=0.5), optax.contrib.scale_by_cocob(alpha=0.5), rtol=1e-5
    )


def test_scale_by_cocob_without_params_is_refused_naming_it():
    tx = gradtx.scale_by_cocob()
    with pytest.raises(ValueError, match=r"^scale_by_cocob"):
        tx.update(GRADS[0], tx.init(PARAMS))


def test_mechanize_with_one_beta_runs_as_optax():
    ours = gradtx.mechanize(gradtx.sgd(1.0), num_betas=1)
    theirs = optax.contrib.mechanize(optax.sgd(1.0), num_betas=1)
    run = _assert_runs_alike(ours, theirs, rtol=1e-5)
    assert run.states[-1].s.shape == (1,)


@pytest.mark.parametrize("num_betas", [0, -2])
def test_mechanize_refuses_num_betas_below_one_naming_it(num_betas):
    with pytest.raises(ValueError) as error:
        gradtx.mechanize(gradtx.sgd(1.0), num_betas=num_betas)
    assert str(error.value).endswith(
        f"(num_betas={num_betas}): num_betas must be a positive integer"
    )


def test_mechanize_of_an_optax_optimizer_passes_through_jit_as_an_argument():
    # The optax base is wrapped when mechanize is built, so the transform is a pytree of
    # arrays and static fields that jit can take (as the other optimizers).
    tx = gradtx.mechanize(optax.adam(1.0))
    assert isinstance(tx.base_optimizer, gradtx.Transform)
    ours = run_steps(tx, GRADS, PARAMS, jit="traced")
    theirs = run_steps(optax.contrib.mechanize(optax.adam(1.0)), GRADS, PARAMS, jit="eager")
    for u, v in zip(ours.updates, theirs.updates):
        chex.assert_trees_all_close(u, v, rtol=1e-5, atol=0)


def test_mechanize_state_keeps_its_types_so_a_jitted_step_compiles_once():
    # r, m, v, s are strong float32 arrays from init on: a weakly typed init would change the
    # state's types after the first update and compile the step again.
    tx = gradtx.mechanize(gradtx.sgd(1.0))
    state = tx.init(PARAMS)
    for name in ("r", "m", "v", "s"):
        leaf = getattr(state, name)
        assert leaf.dtype == jnp.float32 and not leaf.weak_type, name
    step = jax.jit(tx.update)
    for grads in GRADS:
        _, state = step(grads, state, PARAMS)
    assert step._cache_size() == 1


def test_mechanize_gives_bfloat16_updates_for_bfloat16_params():
    params, grads = tree_cast(PARAMS, jnp.bfloat16), [tree_cast(g, jnp.bfloat16) for g in GRADS]
    run = run_steps(gradtx.mechanize(gradtx.sgd(1.0)), grads, params, jit="eager")
    for updates in run.updates:
        chex.assert_trees_all_equal_dtypes(updates, params)
    assert all(np.all(np.isfinite(np.asarray(u, np.float32))) for u in jax.tree.leaves(run.updates))
