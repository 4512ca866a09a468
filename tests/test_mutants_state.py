"""Tests that kill the mutants of gradtx/_state.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from gradtx import FlatParams


def _params():
    return {"w": jnp.array([1.0, -2.0]), "b": jnp.array([0.5])}


def _grads():
    return {"w": jnp.array([0.3, -0.1]), "b": jnp.array([0.2])}


def _moment():
    return {"w": jnp.array([0.4, -0.6]), "b": jnp.array([0.8])}


def _assert_trees_close(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    jax.tree.map(np.testing.assert_allclose, actual, expected)


# -- apply_updates --


def test_apply_updates_keeps_each_parameters_dtype_like_optax():
    params = {"w": jnp.ones(2, jnp.bfloat16), "n": jnp.array([1, 2], jnp.int32)}
    updates = {"w": jnp.full(2, 0.5), "n": jnp.array([1.5, 2.5])}
    new = gradtx.apply_updates(params, updates)
    reference = optax.apply_updates(params, updates)
    assert {k: v.dtype for k, v in new.items()} == {"w": jnp.bfloat16, "n": jnp.int32}
    _assert_trees_close(new, reference)


def test_apply_updates_refuses_integer_updates_naming_the_leaf():
    # optax.apply_updates casts them silently; gradtx refuses them (never a silent cast).
    with pytest.raises(TypeError, match=re.escape("updates leaf at ['w'] has dtype int32")):
        gradtx.apply_updates({"w": jnp.ones(2)}, {"w": jnp.array([1, 2])})


# -- tree_get / tree_set: keys found twice or nowhere --


def test_tree_get_refuses_a_key_found_at_two_places_naming_both_paths():
    # Adam's state holds a count in scale_by_adam's state and in the learning rate's.
    state = gradtx.adam(0.1).init(_params())
    message = "tree_get: 'count' is found at several places: 0/count, 1/count"
    with pytest.raises(KeyError, match=re.escape(message)):
        gradtx.tree_get(state, "count")


def test_tree_set_refuses_keys_found_nowhere_naming_each():
    with pytest.raises(KeyError, match=re.escape("tree_set: no field named 'nope', 'nada'")):
        gradtx.tree_set(gradtx.adam(0.1), b2=0.9, nope=1, nada=2)


# -- a multi_tensor state is read and written per leaf --


def test_tree_get_reads_a_multi_tensor_state_per_leaf():
    per_leaf, fast = gradtx.adam(0.1), gradtx.multi_tensor(gradtx.adam(0.1))
    params, grads = _params(), _grads()
    _, state = per_leaf.update(grads, per_leaf.init(params), params)
    _, fast_state = fast.update(grads, fast.init(params), params)
    _assert_trees_close(gradtx.tree_get(fast_state, "mu"), gradtx.tree_get(state, "mu"))


def test_tree_set_on_a_multi_tensor_state_sets_the_moment_the_next_step_uses():
    per_leaf, fast = gradtx.adam(0.1), gradtx.multi_tensor(gradtx.adam(0.1))
    params, grads = _params(), _grads()
    state = gradtx.tree_set(per_leaf.init(params), mu=_moment())
    fast_state = fast.init(params)
    set_state = gradtx.tree_set(fast_state, mu=_moment())
    assert jax.tree.structure(set_state) == jax.tree.structure(fast_state)
    expected, _ = per_leaf.update(grads, state, params)
    updates, _ = fast.update(grads, set_state, params)
    _assert_trees_close(updates, expected)


# -- a state over FlatParams --


def test_tree_set_packs_a_tree_given_for_a_flat_params_value():
    tx, params, grads = gradtx.adam(0.1), _params(), _grads()
    fp = FlatParams.from_tree(params)
    flat_state = gradtx.tree_set(tx.init(fp), mu=_moment())
    mu = gradtx.tree_get(flat_state, "mu")
    assert isinstance(mu, FlatParams) and mu.layout == fp.layout
    _assert_trees_close(mu.to_tree(), _moment())
    # The next step is the per-leaf run's from the same moment.
    expected, _ = tx.update(grads, gradtx.tree_set(tx.init(params), mu=_moment()), params)
    updates, _ = tx.update(FlatParams.from_tree(grads), flat_state, fp)
    _assert_trees_close(updates.to_tree(), expected)


def test_tree_set_keeps_a_flat_params_given_for_a_flat_params_value():
    tx, fp = gradtx.adam(0.1), FlatParams.from_tree(_params())
    moment = FlatParams.from_tree(_moment())
    mu = gradtx.tree_get(gradtx.tree_set(tx.init(fp), mu=moment), "mu")
    assert mu is moment
