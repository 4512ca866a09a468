"""Tests that kill mutants the other test files let survive (tests/MUTATION.md).

Each test names the mutated line it guards, so a later run can tell which survivor it was for.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

from errors import raises_whole
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from replay import run_steps

import gradtx

# -- _scale ---------------------------------------------------------------------------


def _steps(tx, grads, n):
    """The (updates, state) of ``n`` eager steps on the same gradients, from ``tx.init(grads)``."""
    steps = run_steps(tx, [grads] * n, init=grads, jit="eager")
    return list(zip(steps.updates, steps.states[1:]))


def test_scale_by_schedule_multiplies_by_the_schedule_at_counts_0_1_2():
    # ScaleBySchedule.init/update: count starts at 0, is read before it is incremented.
    tx = gradtx.scale_by_schedule(lambda count: 1.0 + count)
    steps = _steps(tx, {"w": jnp.array([2.0, -1.0])}, 3)
    for t, (updates, state) in enumerate(steps):
        np.testing.assert_allclose(updates["w"], (1.0 + t) * np.array([2.0, -1.0]))
        assert int(state.count) == t + 1


def test_scale_by_learning_rate_keeps_the_last_applied_rate_and_may_not_flip():
    # ScaleByLearningRate.init (schedule(0) before any step), update (flip_sign, rate stored).
    schedule = lambda count: 0.5 / (1.0 + count)
    tx = gradtx.scale_by_learning_rate(schedule, flip_sign=False)
    assert float(tx.init({"w": jnp.zeros(2)}).learning_rate) == 0.5
    steps = _steps(tx, {"w": jnp.array([2.0, -1.0])}, 2)
    for t, (updates, state) in enumerate(steps):
        np.testing.assert_allclose(updates["w"], schedule(t) * np.array([2.0, -1.0]))
        np.testing.assert_allclose(state.learning_rate, schedule(t))
        assert int(state.count) == t + 1
    flipped = gradtx.scale_by_learning_rate(schedule)
    np.testing.assert_allclose(_steps(flipped, {"w": jnp.ones(1)}, 1)[0][0]["w"], [-0.5])


def test_scale_by_learning_rate_defaults_to_1e_3():
    # scale_by_learning_rate's documented default learning rate.
    assert gradtx.scale_by_learning_rate().learning_rate == 1e-3


def test_scale_by_learning_rate_none_says_why_it_is_refused():
    # scale_by_learning_rate's whole message: it explains the difference from optax.
    message = (
        "scale_by_learning_rate(learning_rate=None): a learning rate is required "
        "(optax treats None as no scaling, which ascends the gradient)"
    )
    with raises_whole(ValueError, message):
        gradtx.scale_by_learning_rate(None)


def test_a_schedule_returning_integers_gives_a_float_learning_rate_in_the_state():
    # value_at: the rate is cast to float32 (float64 under x64), so the state's dtype does not
    # follow what a schedule happens to return.
    tx = gradtx.scale_by_learning_rate(lambda count: count + 1)
    updates, state = tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.zeros(2)}))
    assert state.learning_rate.dtype == jnp.float32
    np.testing.assert_allclose(updates["w"], [-1.0, -1.0])


# -- _combine -------------------------------------------------------------------------


def test_chain_prints_nested_transforms_one_per_line_under_its_label():
    # Chain._pformat: the label (or "chain"), four spaces per level, "chain()" when empty.
    inner = gradtx.chain(gradtx.scale(0.5))
    assert repr(gradtx.chain(inner, gradtx.identity())) == (
        "chain(\n    chain(\n        Scale(step_size=0.5),\n    ),\n    Identity(),\n)"
    )
    assert repr(gradtx.chain()) == "chain()"
    assert repr(gradtx.sgd(0.1)).startswith("sgd(\n    Identity(),\n")


def test_identity_returns_the_updates_and_its_state_unchanged():
    tx = gradtx.identity()
    updates, state = tx.update({"w": jnp.array([1.0, -2.0])}, tx.init({"w": jnp.zeros(2)}))
    np.testing.assert_array_equal(updates["w"], [1.0, -2.0])
    assert state == ()


class _PlainOptaxScale(NamedTuple):
    """An optax-style transform whose update takes no extra arguments."""

    factor: float

    def init(self, params):
        return ()

    def update(self, updates, state, params=None):
        return jax.tree.map(lambda g, p: self.factor * g + p, updates, params), state


def test_an_optax_transform_in_a_chain_gets_params_and_only_the_arguments_it_takes():
    # FromOptax.update: params passed on; extra arguments dropped for a plain transform and
    # passed (through chain and masked) to one that takes **extra_args.
    params, grads = {"w": jnp.array([1.0])}, {"w": jnp.array([2.0])}
    plain = gradtx.chain(_PlainOptaxScale(3.0))
    updates, _ = plain.update(grads, plain.init(params), params, value=jnp.array(5.0))
    np.testing.assert_allclose(updates["w"], [7.0])
    seen = {}

    def update_with_extra_args(updates, state, params=None, **extra_args):
        seen.update(extra_args)
        return updates, state

    takes_extra = optax.GradientTransformationExtraArgs(lambda p: (), update_with_extra_args)
    tx = gradtx.chain(takes_extra)
    tx.update(grads, tx.init(params), params, value=5.0)
    assert seen == {"value": 5.0}
    seen.clear()  # Masked.update passes them on too
    tx = gradtx.masked(takes_extra, {"w": True})
    tx.update(grads, tx.init(params), params, value=6.0)
    assert seen == {"value": 6.0}


def test_an_optax_transform_in_a_chain_keeps_its_state_between_steps():
    # FromOptax.update hands the inner transform its own state.
    tx = gradtx.chain(optax.trace(decay=0.5))
    for (updates, _), expected in zip(_steps(tx, {"w": jnp.ones(1)}, 3), (1.0, 1.5, 1.75)):
        np.testing.assert_allclose(updates["w"], [expected])


def test_masked_applies_inner_only_where_the_mask_is_true_with_masked_params():
    # Masked.init/update: the inner transform sees only masked-in leaves (updates and params).
    params = {"w": jnp.array([1.0, 2.0]), "b": jnp.array([3.0])}
    grads = {"w": jnp.array([0.5, 0.5]), "b": jnp.array([0.5])}
    tx = gradtx.masked(gradtx.add_decayed_weights(1.0), lambda p: {"w": True, "b": False})
    updates, state = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], [1.5, 2.5])
    np.testing.assert_allclose(updates["b"], [0.5])


def test_a_masked_optax_transform_is_a_pytree_that_jit_takes_as_an_argument():
    # Masked.__post_init__ wraps an optax inner transform (closures) so its functions are static.
    tx = gradtx.masked(optax.scale(2.0), {"w": True, "b": False})
    grads = {"w": jnp.ones(1), "b": jnp.ones(1)}
    updates, _ = jax.jit(lambda tx, g, s: tx.update(g, s))(tx, grads, tx.init(grads))
    np.testing.assert_allclose(updates["w"], [2.0])
    np.testing.assert_allclose(updates["b"], [1.0])


# -- _tree ----------------------------------------------------------------------------


def test_clip_by_global_norm_divides_by_the_l2_norm_of_all_leaves_together():
    # tree_global_norm: |x|**2 summed over every leaf, then the root (not 2|x|, not |x|**3).
    grads = {"a": jnp.array([-3.0]), "b": jnp.array([[4.0]])}
    tx = gradtx.clip_by_global_norm(1.0)
    updates, _ = tx.update(grads, tx.init(grads))
    np.testing.assert_allclose(updates["a"], [-0.6], rtol=1e-6)
    np.testing.assert_allclose(updates["b"], [[0.8]], rtol=1e-6)


def test_under_x64_a_global_norm_sums_in_float64_and_debias_keeps_float32(x64):
    # tree_global_norm starts its sum from a default_float() zero, so float32 leaves add up in
    # float64 (2**24 + 3 is not a float32); debias casts the float64 correction to the moment's
    # dtype, so a float32 moment stays float32 (the compute-dtype rule of the module docstring).
    from gradtx._tree import bias_correction, debias, tree_global_norm

    norm = tree_global_norm({"a": jnp.array([4096.0], jnp.float32), "b": jnp.ones(3, jnp.float32)})
    assert norm.dtype == jnp.float64
    assert float(norm) == np.sqrt(2.0**24 + 3)
    assert debias(jnp.ones(2, jnp.float32), bias_correction(0.9, 1)).dtype == jnp.float32


def _message(call):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    return str(info.value)


def test_a_structure_mismatch_lists_up_to_eight_leaf_paths_of_each_tree():
    # check_same_structure: the first differing path, the first eight paths of each tree and
    # "..." only after more than eight, both treedefs; _paths: a leaf at the root is "<root>".
    def paths(n):
        return "[" + ", ".join(f"\"['k{i}']\"" for i in range(n)) + "]"

    def tree(n):
        return {f"k{i}": jnp.ones(1) for i in range(n)}

    def treedef(n):
        return "PyTreeDef({" + ", ".join(f"'k{i}': *" for i in range(n)) + "})"

    question = "Was the state made by init on params of this structure?"
    assert _message(lambda: gradtx.apply_updates(tree(9), tree(8))) == (
        f"the updates do not match the params at ['k8']: updates have leaves {paths(8)}, "
        f"the params has {paths(8)}....\nupdates: {treedef(8)}\nparams: {treedef(9)}\n{question}"
    )
    assert _message(lambda: gradtx.apply_updates(tree(8), tree(9))) == (
        f"the updates do not match the params at ['k8']: updates have leaves {paths(8)}..., "
        f"the params has {paths(8)}.\nupdates: {treedef(9)}\nparams: {treedef(8)}\n{question}"
    )
    tx = gradtx.adam(0.1)  # the same number of leaves, another key; the state (tree_map_unzip)
    assert _message(lambda: tx.update({"w": jnp.ones(1)}, tx.init({"v": jnp.ones(1)}))) == (
        "the updates do not match the optimizer state at ['w']: updates have leaves "
        "[\"['w']\"], the optimizer state has [\"['v']\"].\nupdates: PyTreeDef({'w': *})\n"
        f"optimizer state: PyTreeDef({{'v': *}})\n{question}"
    )
    assert _message(lambda: gradtx.apply_updates(jnp.ones(2), {"w": jnp.ones(2)})) == (
        "the updates do not match the params at ['w']: updates have leaves [\"['w']\"], "
        f"the params has ['<root>'].\nupdates: PyTreeDef({{'w': *}})\nparams: PyTreeDef(*)\n"
        f"{question}"
    )


_SHAPE_ADVICE = (
    "Gradients must have their parameter's shape; was the state made by init on these params?"
)


def test_a_shape_mismatch_names_the_leaf_both_shapes_and_the_tree_it_was_checked_against():
    # check_same_shapes: the path ("<root>" for a bare array), both shapes, "params" or (from
    # tree_map_unzip, the default) "optimizer state".
    assert _message(lambda: gradtx.apply_updates({"w": jnp.ones(3)}, {"w": jnp.ones(2)})) == (
        f"the updates do not match the params at ['w']: shape (2,) in the updates, (3,) in the "
        f"params. {_SHAPE_ADVICE}"
    )
    tx = gradtx.adam(0.1)
    assert _message(lambda: tx.update(jnp.ones(2), tx.init(jnp.ones(3)))) == (
        "the updates do not match the optimizer state at <root>: shape (2,) in the updates, "
        f"(3,) in the optimizer state. {_SHAPE_ADVICE}"
    )
    # tree_map_unzip compares every pair of shapes, a scalar against an array too (no broadcast).
    for grads, params, shapes in [
        (jnp.ones(2), jnp.ones(()), "(2,) in the updates, ()"),
        (jnp.ones(()), jnp.ones(3), "() in the updates, (3,)"),
    ]:
        assert _message(lambda g=grads, p=params: tx.update(g, tx.init(p))) == (
            f"the updates do not match the optimizer state at <root>: shape {shapes} in the "
            f"optimizer state. {_SHAPE_ADVICE}"
        )


def test_an_integer_leaf_at_the_root_is_named_with_the_way_to_exclude_it():
    # check_float_leaves: "<root>" for a bare array, and the advice (masked / partition).
    tx = gradtx.sgd(0.1)
    assert _message(lambda: tx.update(jnp.ones(2, jnp.int32), tx.init(jnp.ones(2)))) == (
        "gradtx: the updates leaf at <root> has dtype int32; optimizers take floating-point "
        "(or complex) leaves. Keep integer and boolean arrays out of the optimized params, or "
        "exclude them with gradtx.masked / gradtx.partition and set_to_zero."
    )


@functools.partial(jax.tree_util.register_dataclass, data_fields=["w"], meta_fields=["tag"])
@dataclasses.dataclass
class _Tagged:
    """A pytree node whose static field is part of its treedef."""

    w: Any
    tag: str


def _container_message(where, mine, theirs):
    return (
        f"the updates do not match the params at {where}: the same leaves, but held in a {mine} "
        f"in the updates and a {theirs} in the params. Convert one to the other's container "
        "(for flax, flax.core.unfreeze or freeze) before the call."
    )


def test_trees_with_the_same_leaves_name_the_first_container_that_differs():
    # _first_container_difference: the first node (depth first, past equal siblings) whose
    # type or static fields differ; check_same_structure names both types, or the one type
    # whose static fields differ.
    x = jnp.ones(2)
    assert _message(lambda: gradtx.apply_updates([x], (x,))) == _container_message(
        "<root>", "builtins.tuple", "builtins.list"
    )
    nested = _message(
        lambda: gradtx.apply_updates({"a": x, "b": {"c": [x]}}, {"a": x, "b": {"c": (x,)}})
    )
    assert nested == _container_message("['b']['c']", "builtins.tuple", "builtins.list")
    # One type, another static field: said so, at the node where it differs.
    tagged = f"{__name__}._Tagged"
    for where, ours, theirs in (
        ("<root>", _Tagged(x, "a"), _Tagged(x, "b")),
        ("['b'][1]", {"a": x, "b": [x, _Tagged(x, "a")]}, {"a": x, "b": [x, _Tagged(x, "b")]}),
    ):
        assert _message(lambda p=theirs, u=ours: gradtx.apply_updates(p, u)) == (
            f"the updates do not match the params at {where}: the same leaves, both in a "
            f"{tagged}, but with other static (non-array) fields: build both from the same "
            "configuration."
        )


def test_factored_rms_starts_its_second_moments_at_zero_in_the_params_dtype():
    # tree_squares_like: the default fill value 0 (scale_by_factored_rms does not pass one);
    # tree_full_like: an abstract leaf (a factored row or column) keeps its shape and dtype.
    tx = gradtx.scale_by_factored_rms(min_dim_size_to_factor=2)
    state = tx.init({"w": jnp.ones((4, 3), jnp.bfloat16), "b": jnp.ones(3)})
    for leaf in jax.tree.leaves((state.v_row, state.v_col, state.v)):
        np.testing.assert_array_equal(leaf, np.zeros_like(leaf))
    assert [leaf.dtype for leaf in jax.tree.leaves((state.v_row, state.v_col))] == [
        jnp.bfloat16
    ] * 2
    # w is factored (a row and a column statistic), b is not (a full one).
    assert [len(jax.tree.leaves(s)) for s in (state.v_row, state.v_col, state.v)] == [1, 1, 1]
    assert (state.v_row["w"].shape, state.v_col["w"].shape) == ((3,), (4,))


def test_a_none_param_takes_an_update_without_a_shape_check_and_stays_none():
    # check_same_shapes skips a None param (optax's convention: a None param is not updated).
    grads, params = {"w": jnp.ones(2), "b": jnp.ones(1)}, {"w": jnp.ones(2), "b": None}
    tx = gradtx.sgd(0.1)
    updates, _ = tx.update(grads, tx.init(grads), params)
    np.testing.assert_allclose(updates["b"], [-0.1])
    assert gradtx.apply_updates(params, grads)["b"] is None


def test_adam_keeps_float16_second_moments_in_float32_but_bfloat16_ones_in_bfloat16():
    # tree_squares_like: (1 - b2) * g**2 underflows in float16, not in bfloat16 (float32's range).
    params = {"h": jnp.ones(2, jnp.float16), "b": jnp.ones(2, jnp.bfloat16)}
    state = gradtx.scale_by_adam().init(params)
    assert state.nu["h"].dtype == jnp.float32 and state.nu["b"].dtype == jnp.bfloat16
    assert state.mu["h"].dtype == jnp.float16


def test_ema_of_a_float32_leaf_gives_the_same_bits_with_and_without_x64():
    # ema: both decays are cast to the leaf's compute dtype (float32 here, also under x64), so
    # jax_enable_x64 does not change a float32 moment's rounding.
    from gradtx._tree import ema

    rng = np.random.default_rng(0)
    g, m = (jnp.asarray(rng.normal(size=1000), jnp.float32) for _ in range(2))
    without = [ema(g, m, 0.9), ema(g, m, 0.999, 2)]
    with jax.enable_x64(True):
        with_x64 = [ema(g, m, 0.9), ema(g, m, 0.999, 2)]
    for a, b in zip(with_x64, without):
        assert a.dtype == jnp.float32
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(ema(jnp.array([2.0]), jnp.array([4.0]), 0.5), [3.0])  # order 1


def test_scale_keeps_a_bfloat16_leaf_bfloat16_and_float32_rounding_under_x64():
    # tree_scale: the product is cast back to the leaf's dtype, and the scalar is cast to the
    # leaf's compute dtype first (float32 for a float32 leaf, also under x64).
    tx = gradtx.scale(0.1)
    half = jnp.ones(3, jnp.bfloat16)
    assert tx.update(half, tx.init(half))[0].dtype == jnp.bfloat16
    g = jnp.asarray(np.random.default_rng(0).normal(size=1000), jnp.float32)
    without = tx.update(g, tx.init(g))[0]
    with jax.enable_x64(True):
        with_x64 = tx.update(g, tx.init(g))[0]
    assert with_x64.dtype == jnp.float32
    np.testing.assert_array_equal(with_x64, without)


def test_a_scheduled_rate_under_x64_is_rounded_to_a_float32_leaf_before_the_product():
    # hp: under x64 a schedule's rate is a float64 array (value_at casts it to default_float),
    # not a weak Python float; it is cast to the float32 leaf's compute dtype first, so the
    # update has the same bits as without x64.
    tx = gradtx.scale_by_learning_rate(lambda count: 0.1)
    g = jnp.asarray(np.random.default_rng(0).normal(size=1000), jnp.float32)
    without = tx.update(g, tx.init(g))[0]
    with jax.enable_x64(True):
        with_x64 = tx.update(g, tx.init(g))[0]
    assert with_x64.dtype == jnp.float32
    np.testing.assert_array_equal(with_x64, without)


def test_adam_squares_a_float16_gradient_in_float32():
    # up: a float16 leaf is promoted before g**2 (1e-4**2 is 0 in float16), as the module says.
    g = {"h": jnp.full(2, 1e-4, jnp.float16)}
    tx = gradtx.scale_by_adam()
    _, state = tx.update(g, tx.init(g))
    np.testing.assert_allclose(state.nu["h"], [1e-11, 1e-11], rtol=1e-3)
