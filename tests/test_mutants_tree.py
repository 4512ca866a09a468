"""Tests that kill the mutants of gradtx/_tree.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
"""

from __future__ import annotations

import re

from errors import raises_whole
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from gradtx import FlatParams
from gradtx._tree import (
    bias_correction,
    check_real_leaves,
    decay_power,
    tree_cast,
    tree_cast_like,
    tree_divide_by_norm,
    tree_full_like,
    tree_vdot,
    tree_widen,
)

# -- tree mismatches: what the error says (check_same_structure, tree_map_unzip) -------------


def test_flat_params_laid_out_otherwise_name_the_first_leaf_that_differs():
    # check_same_structure: two FlatParams with one float32[5] buffer each (the same leaves),
    # but 'a' is 3 long in one and 2 in the other; the layout says where, in the words of the
    # call (the updates against the params, or against the optimizer state).
    params = FlatParams.from_tree({"a": jnp.ones(2), "b": jnp.ones(3)})
    updates = FlatParams.from_tree({"a": jnp.ones(3), "b": jnp.ones(2)})

    def message(what):
        return (
            f"the updates do not match the {what} at <root>: the same leaves, both in a "
            "gradtx._flat.FlatParams, but with other static (non-array) fields: leaf ['a'] is "
            "float32[3] in buffer 'float32' at 0 in the updates, ['a'] float32[2] in buffer "
            f"'float32' at 0 in the {what}."
        )

    with pytest.raises(ValueError, match=re.escape(message("params")) + "$"):
        gradtx.apply_updates(params, updates)
    tx = gradtx.adam(0.1)
    with pytest.raises(ValueError, match=re.escape(message("optimizer state")) + "$"):
        tx.update(updates, tx.init(params))


def test_an_update_where_the_state_has_none_says_how_to_leave_the_leaf_out():
    # tree_map_unzip: a None param makes a None moment; an array update there is refused,
    # naming the leaf and the two ways out.
    tx = gradtx.scale_by_adam()
    state = tx.init({"w": jnp.ones(2), "b": None})
    expected = (
        "the updates have an array at ['b'] where the params or the optimizer state have None: "
        "give that leaf a None update too, or leave it out of the optimizer (masked, partition "
        "with set_to_zero)"
    )
    with pytest.raises(ValueError, match=re.escape(expected) + "$"):
        tx.update({"w": jnp.ones(2), "b": jnp.ones(1)}, state)


# -- PRNG keys (prng_key) ------------------------------------------------------------------


def _key_data(state):
    return np.asarray(jax.random.key_data(state.key))


def test_a_key_of_none_is_key_0_and_an_int_is_that_seed():
    # prng_key: None is key 0 (as optax, and as evolution_strategies documents), a seed is its
    # own key; a raw key given as plain integers (read back from a file) is uint32 key data.
    def key_of(key):
        return _key_data(gradtx.evolution_strategies(popsize=2, key=key).init(jnp.ones(2)))

    np.testing.assert_array_equal(key_of(None), jax.random.key_data(jax.random.key(0)))
    np.testing.assert_array_equal(key_of(5), jax.random.key_data(jax.random.key(5)))
    assert not np.array_equal(key_of(5), key_of(None))
    np.testing.assert_array_equal(key_of(np.array([0, 7])), jax.random.PRNGKey(7))
    np.testing.assert_array_equal(key_of(jax.random.PRNGKey(7)), jax.random.PRNGKey(7))


@pytest.mark.parametrize("make", [jax.random.PRNGKey, jax.random.key], ids=["raw", "typed"])
def test_a_users_key_survives_a_step_that_donates_the_state(make):
    # prng_key copies the key: the state's key is donated (and deleted) by a jitted step that
    # donates its state, while the key the user passed to the transform stays usable.
    key = make(7)
    tx = gradtx.add_noise(0.01, 0.55, key=key)
    grads = jnp.ones(2)
    step = jax.jit(tx.update, donate_argnums=1)
    state = tx.init(grads)
    step(grads, state)
    assert state.rng_key.is_deleted()
    raw = jax.random.key_data(key) if key.dtype != jnp.uint32 else key
    np.testing.assert_array_equal(raw, [0, 7])
    step(grads, tx.init(grads))  # and the transform can be initialised again


# -- bias correction (decay_power) ---------------------------------------------------------


def test_decay_to_the_count_is_the_same_number_eagerly_and_under_jit():
    # decay_power raises to a *float* count: for a concrete integer exponent jnp.power would
    # switch, eagerly only, to repeated multiplication (lax.integer_pow), other bits than the
    # pow that runs under jit (0.9**7 differs in the last bit), so an eager step and a jitted
    # one would debias differently.
    jitted = jax.jit(decay_power)
    for count in range(1, 13):
        t = jnp.asarray(count, jnp.int32)
        assert decay_power(0.9, t) == jitted(0.9, t), count
        np.testing.assert_allclose(decay_power(0.9, t), 0.9**count, rtol=1e-6)
        assert bias_correction(0.9, t) == 1 - jitted(0.9, t)


# -- the tree maths against optax.tree_utils -----------------------------------------------


def _dtypes(tree):
    return jax.tree.map(lambda x: jnp.result_type(x).name, tree)


def test_tree_vdot_is_optaxs_and_sums_float32_leaves_in_float64_under_x64():
    # tree_vdot starts its sum from a default_float() zero: an empty tree gives a float zero,
    # and under x64 float32 leaves add up in float64 (2**24 + 3 is not a float32).
    a = {"u": jnp.array([1.0, -2.0]), "v": jnp.array([[0.5, 3.0]])}
    b = {"u": jnp.array([4.0, 0.25]), "v": jnp.array([[2.0, -1.0]])}
    np.testing.assert_allclose(tree_vdot(a, b), optax.tree_utils.tree_vdot(a, b))
    empty = tree_vdot({}, {})
    assert empty.shape == () and empty.dtype == jnp.float32 and float(empty) == 0.0
    with jax.enable_x64(True):
        big = {"a": jnp.array([4096.0], jnp.float32), "b": jnp.ones(3, jnp.float32)}
        total = tree_vdot(big, big)
        assert total.dtype == jnp.float64
        assert float(total) == 2.0**24 + 3


def test_tree_cast_like_gives_each_leaf_the_dtype_of_its_match_as_optax():
    tree = {"h": jnp.array([1.5, -0.1]), "b": jnp.array([3.3])}
    like = {"h": jnp.zeros(2, jnp.float16), "b": jnp.zeros(1, jnp.bfloat16)}
    cast = tree_cast_like(tree, like)
    assert _dtypes(cast) == {"h": "float16", "b": "bfloat16"}
    jax.tree.map(np.testing.assert_array_equal, cast, optax.tree_utils.tree_cast_like(tree, like))


def _dtypes_after_two_steps(tx, params):
    state = tx.init(params)
    before = _dtypes(state)
    for _ in range(2):
        _, state = tx.update(params, state)
    return before, _dtypes(state)


def test_conjugate_gradient_keeps_its_state_dtypes_across_steps():
    # tree_cast_like keeps the bfloat16 state bfloat16; tree_vdot keeps beta, a default_float()
    # at init, a float64 under x64 with float32 params. A state whose dtypes change after a step
    # cannot be the carry of a lax.scan or fori_loop.
    tx = gradtx.scale_by_conjugate_gradient()
    before, after = _dtypes_after_two_steps(tx, {"w": jnp.array([1.0, -2.0], jnp.bfloat16)})
    assert after == before and before.prev_grad["w"] == "bfloat16"
    with jax.enable_x64(True):
        before, after = _dtypes_after_two_steps(tx, {"w": jnp.array([1.0, -2.0], jnp.float32)})
    assert after == before and before.beta == "float64"


def test_tree_full_like_fills_complex_storage_with_a_complex_value_as_optax():
    # tree_full_like makes the fill in the storage's compute dtype (complex64 here), not in
    # the default float, which cannot hold 1 + 2j. No transform passes a complex fill today.
    tree = {"z": jnp.zeros(2, jnp.complex64)}
    full = tree_full_like(tree, 1 + 2j)
    assert full["z"].dtype == jnp.complex64
    np.testing.assert_array_equal(full["z"], optax.tree_utils.tree_full_like(tree, 1 + 2j)["z"])


def test_tree_cast_casts_every_leaf_or_with_none_keeps_them_as_optax():
    tree = {"h": jnp.array([1.5, -0.1], jnp.bfloat16), "f": jnp.array([0.3])}
    assert tree_cast(tree, None) is tree
    cast = tree_cast(tree, jnp.float16)
    assert _dtypes(cast) == {"h": "float16", "f": "float16"}
    expected = optax.tree_utils.tree_cast(tree, jnp.float16)
    jax.tree.map(np.testing.assert_array_equal, cast, expected)


def test_distance_over_gradients_stores_its_initial_params_in_param_dtype():
    # tree_cast through scale_by_distance_over_gradients(param_dtype=...): None keeps the
    # params' dtypes (as optax's contrib.dog), a dtype casts the copy.
    params = {"h": jnp.array([1.5, -0.1], jnp.bfloat16), "f": jnp.array([0.3])}
    kept = gradtx.scale_by_distance_over_gradients(param_dtype=None).init(params).init_params
    assert _dtypes(kept) == {"h": "bfloat16", "f": "float32"}
    half = gradtx.scale_by_distance_over_gradients(param_dtype=jnp.bfloat16).init(params)
    assert _dtypes(half.init_params) == {"h": "bfloat16", "f": "bfloat16"}
    np.testing.assert_array_equal(half.init_params["f"], params["f"].astype(jnp.bfloat16))


def test_tree_widen_promotes_leaves_to_at_least_the_default_float_keeping_complex_parts():
    tree = {"b": jnp.array([1.5], jnp.bfloat16), "z": jnp.array([1 + 2j], jnp.complex64)}
    assert _dtypes(tree_widen(tree)) == {"b": "float32", "z": "complex64"}
    np.testing.assert_array_equal(tree_widen(tree)["z"], [1 + 2j])
    with jax.enable_x64(True):
        tree = {"f": jnp.array([0.1], jnp.float32), "z": jnp.array([1 + 2j], jnp.complex64)}
        wide = tree_widen(tree)
        assert _dtypes(wide) == {"f": "float64", "z": "complex128"}
        np.testing.assert_array_equal(wide["f"], np.float32(0.1).astype(np.float64))
        np.testing.assert_array_equal(wide["z"], [1 + 2j])


# -- tree_divide_by_norm (normalize, ASAM, PowerSGD's Gram-Schmidt, Lanczos) and
# -- check_real_leaves (Shampoo, SOAP, Sophia) ------------------------------------------------


@pytest.mark.parametrize("scale", [3e-23, 1.0, 3e30], ids=["underflowing", "plain", "overflowing"])
def test_tree_divide_by_norm_gives_a_unit_tree_whatever_the_scale(scale):
    # float32 squares of 3e-23 underflow and of 3e30 overflow: the plain norm would be 0 or
    # inf; the docstring's scaling by a power of two gives (0.6, 0.8) and 0 in every case.
    tree = {"a": jnp.asarray([0.6 * scale, 0.0], jnp.float32), "b": jnp.float32(0.8 * scale)}
    out = tree_divide_by_norm(tree, tree)
    np.testing.assert_allclose(out["a"], [0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(out["b"], 0.8, rtol=1e-6)
    assert out["a"].dtype == jnp.float32


def test_tree_divide_by_norm_of_a_zero_measure_leaves_the_tree_as_it_is():
    zero = {"a": jnp.zeros(3), "b": jnp.zeros((2, 2))}
    out = tree_divide_by_norm(zero, zero)  # 0, not 0 / 0
    for leaf in jax.tree.leaves(out):
        np.testing.assert_array_equal(leaf, np.zeros_like(leaf))
        assert not np.any(np.signbit(leaf))
    other = {"a": jnp.asarray([1.0, -2.0, 3.0]), "b": jnp.full((2, 2), 0.5)}
    out = tree_divide_by_norm(other, zero)  # divided by 1
    for got, want in zip(jax.tree.leaves(out), jax.tree.leaves(other)):
        np.testing.assert_array_equal(got, want)


def test_a_complex_leaf_is_refused_with_the_whole_message():
    tree = {"w": jnp.ones(2), "c": jnp.ones(2, jnp.complex64)}
    message = (
        "scale_by_sophia: the leaf at ['c'] is complex; scale_by_sophia needs an ordering"
        " and takes real leaves only (split complex params into real and imaginary parts)"
    )
    with raises_whole(TypeError, message):
        check_real_leaves(tree, "scale_by_sophia", "needs an ordering")
