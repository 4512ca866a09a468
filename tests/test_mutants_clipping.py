"""Tests that kill the mutants of gradtx/_clipping.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
clip_by_block_norm had no numeric test at all: here it is checked against its update rule
(NumPy) and against Keras's ``clipnorm``, which its docstring names.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from gradtx._tree import tree_global_norm

INF = math.inf

# The three norm clips and the name of their bound.
NORM_CLIPS = [
    ("clip_by_global_norm", "max_norm"),
    ("clip_by_block_rms", "threshold"),
    ("clip_by_block_norm", "max_norm"),
]


def _update(tx, updates):
    return tx.update(updates, tx.init(updates))[0]


# -- clip_by_block_norm against its reference ---------------------------------------------


def _leaves():
    # L2 norms 0.4, 5, about 0.24 and about 4: each bound below clips some leaves, not others.
    rng = np.random.default_rng(0)
    return {
        "scalar": np.float32(-0.4),
        "vector": np.array([3.0, -4.0], np.float32),
        "small": np.full((2, 3), 0.1, np.float32),
        "matrix": rng.normal(size=(4, 5)).astype(np.float32),
    }


def _block_norm_reference(u, max_norm):
    # The docstring's rule in float64: u * max_norm / max(|u|_2, max_norm).
    u = np.asarray(u, np.float64)
    return u * max_norm / max(np.sqrt(np.sum(u**2)), max_norm)


@pytest.mark.parametrize("max_norm", [0.5, 1.0, 3.0])
def test_clip_by_block_norm_scales_each_leaf_by_its_own_l2_norm(max_norm):
    leaves = _leaves()
    updates = _update(gradtx.clip_by_block_norm(max_norm), jax.tree.map(jnp.asarray, leaves))
    for name, u in leaves.items():
        expected = _block_norm_reference(u, max_norm)
        assert updates[name].dtype == jnp.float32 and updates[name].shape == np.shape(u)
        np.testing.assert_allclose(updates[name], expected, rtol=1e-6, err_msg=name)
        norm = np.sqrt(np.sum(np.asarray(u, np.float64) ** 2))
        if norm <= max_norm:  # below the bound: the leaf is kept
            np.testing.assert_allclose(updates[name], u, rtol=1e-6, err_msg=name)
        else:  # above: its norm becomes the bound, its direction is kept
            clipped = np.sqrt(np.sum(np.asarray(updates[name], np.float64) ** 2))
            np.testing.assert_allclose(clipped, max_norm, rtol=1e-6, err_msg=name)


def test_clip_by_block_norm_equals_keras_clipnorm():
    # Keras clips each variable's gradient by its own norm (optimizer(clipnorm=...)); one SGD
    # step with learning rate 1 from zero variables leaves minus the clipped gradients.
    keras = pytest.importorskip("keras")
    leaves = _leaves()
    variables = [keras.Variable(np.zeros(np.shape(u), np.float32)) for u in leaves.values()]
    optimizer = keras.optimizers.SGD(learning_rate=1.0, clipnorm=1.0)
    optimizer.apply_gradients(list(zip([np.asarray(u) for u in leaves.values()], variables)))
    updates = _update(gradtx.clip_by_block_norm(1.0), jax.tree.map(jnp.asarray, leaves))
    for name, variable in zip(leaves, variables):
        np.testing.assert_allclose(
            updates[name], -np.asarray(variable.value), rtol=1e-6, err_msg=name
        )


def test_clip_by_block_norm_with_max_norm_0_gives_zeros_never_nan():
    # Both the norm and the bound are 0 for a zero leaf: no 0/0.
    tx = gradtx.clip_by_block_norm(0.0)
    updates = _update(tx, {"zero": jnp.zeros(3), "w": jnp.array([3.0, -4.0])})
    np.testing.assert_array_equal(updates["zero"], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(updates["w"], [0.0, 0.0])


def test_clip_by_block_norm_with_inf_leaves_the_updates_untouched():
    updates = {"w": jnp.array([3.0, -4.0]), "zero": jnp.zeros(2)}
    out = _update(gradtx.clip_by_block_norm(INF), updates)
    np.testing.assert_array_equal(out["w"], updates["w"])
    np.testing.assert_array_equal(out["zero"], updates["zero"])


def test_clip_by_block_norm_leaves_a_leaf_holding_nan_as_it_is():
    # As clip_by_block_rms and clip_by_global_norm do (the NaN norm once made the divisor 1,
    # so the finite entries were multiplied by max_norm).
    u = jnp.array([jnp.nan, 1.0, -0.5])
    for tx in (gradtx.clip_by_block_norm(4.0), gradtx.clip_by_block_rms(4.0)):
        np.testing.assert_array_equal(_update(tx, {"w": u})["w"], u)


# -- the bounds every norm clip accepts ---------------------------------------------------


@pytest.mark.parametrize(("name", "arg"), NORM_CLIPS)
def test_a_norm_clip_takes_any_bound_from_0_to_inf_and_refuses_a_negative_one(name, arg):
    # [0, inf]: 0 clips everything to zero, inf is documented as "no clipping".
    for bound in (0.0, 0.5, INF):
        assert getattr(getattr(gradtx, name)(bound), arg) == bound
    with pytest.raises(ValueError, match=rf"{name}\({arg}=-1.0\): {arg} must be in \[0, inf\]"):
        getattr(gradtx, name)(-1.0)


@pytest.mark.parametrize("name", ["clip_by_global_norm", "clip_by_block_rms"])
def test_an_inf_bound_leaves_the_updates_untouched_even_when_the_norm_overflows(name):
    # 1e30**2 overflows float32: the norm (or RMS) is inf, and inf is not above inf.
    updates = {"a": jnp.array([1e30, -1.0]), "b": jnp.array([2.0])}
    out = _update(getattr(gradtx, name)(INF), updates)
    for key in updates:
        np.testing.assert_array_equal(out[key], updates[key])


# -- clip_by_global_norm against optax ----------------------------------------------------

GLOBAL_CASES = {
    "above-1": ({"a": jnp.array([3.0, 4.0]), "b": jnp.array([[12.0]])}, 1.0),  # norm 13
    "below-1-above-bound": ({"a": jnp.array([0.3, 0.4])}, 0.1),  # norm 0.5
    "below-bound": ({"a": jnp.array([0.3, -0.4]), "b": jnp.array([0.1])}, 1.0),
}


@pytest.mark.parametrize(("updates", "max_norm"), GLOBAL_CASES.values(), ids=GLOBAL_CASES)
def test_clip_by_global_norm_matches_optax_above_and_below_the_bound(updates, max_norm):
    ours = _update(gradtx.clip_by_global_norm(max_norm), updates)
    reference = optax.clip_by_global_norm(max_norm)
    theirs = reference.update(updates, reference.init(updates))[0]
    norm = float(np.sqrt(sum(np.sum(np.asarray(u) ** 2) for u in updates.values())))
    for key in updates:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-6, err_msg=key)
        if norm <= max_norm:
            np.testing.assert_array_equal(ours[key], updates[key])


# -- dtypes --------------------------------------------------------------------------------

# Each clip with optax's where there is one (built in the test, not at collection).
BFLOAT16_CASES = ["clip", "clip_by_global_norm", "clip_by_block_rms", "clip_by_block_norm"]


@pytest.mark.parametrize("name", BFLOAT16_CASES)
def test_a_clip_returns_bfloat16_updates_for_bfloat16_leaves(name):
    # Computed in float32 (the compute dtype) and cast back, as optax keeps the leaf's dtype.
    updates = {"w": jnp.array([-3.0, 0.5, 2.0], jnp.bfloat16), "b": jnp.array([0.25], jnp.bfloat16)}
    out = _update(getattr(gradtx, name)(1.0), updates)
    if name == "clip_by_block_norm":  # not in optax: its rule, leaf by leaf
        expected = {k: _block_norm_reference(np.float32(u), 1.0) for k, u in updates.items()}
    else:
        reference = getattr(optax, name)(1.0)
        expected = reference.update(updates, reference.init(updates))[0]
    for key in updates:
        assert out[key].dtype == jnp.bfloat16, key
        np.testing.assert_allclose(np.float32(out[key]), np.float32(expected[key]), rtol=1e-2)
    assert not np.array_equal(np.float32(out["w"]), np.float32(updates["w"]))  # it clipped


@pytest.mark.parametrize(
    ("name", "bound"), [("clip_by_block_rms", 0.3), ("clip_by_block_norm", 0.3), ("clip", 0.3)]
)
def test_under_x64_a_float32_leaf_is_clipped_in_float32(name, bound):
    # The compute dtype of a float32 leaf is float32 whatever jax_enable_x64 says (module
    # docstring of gradtx/_tree.py): the bound is not taken in float64, so the bits are those
    # of a run without x64.
    u = jnp.asarray(np.random.default_rng(1).normal(size=64).astype(np.float32))
    without = np.asarray(_update(getattr(gradtx, name)(bound), {"w": u})["w"])
    with jax.enable_x64(True):
        with_x64 = _update(getattr(gradtx, name)(bound), {"w": u})["w"]
    assert with_x64.dtype == jnp.float32
    np.testing.assert_array_equal(with_x64, without)


def test_under_x64_a_float32_leaf_is_scaled_in_float32_by_the_global_factor():
    # tree_global_norm sums in float64 under x64 (tests/test_mutants.py), so the factor
    # max_norm / norm is a float64; it is rounded to the leaf's compute dtype before the product,
    # as optax scales each leaf in its own dtype.
    rng = np.random.default_rng(0)
    updates = {
        "a": jnp.asarray(rng.normal(size=7).astype(np.float32)),
        "b": jnp.asarray(rng.normal(size=(3, 2)).astype(np.float32)),
    }
    with jax.enable_x64(True):
        out = _update(gradtx.clip_by_global_norm(0.3), updates)
        factor = np.float32(0.3 / float(tree_global_norm(updates)))
    for key, u in updates.items():
        assert out[key].dtype == jnp.float32
        np.testing.assert_array_equal(out[key], factor * np.asarray(u))
