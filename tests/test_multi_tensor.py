"""The multi-tensor fast path gives the per-leaf path's numbers, in a few buffers."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from registry import OPTIMIZERS, WRAPPERS

import gradtx


def _runs_on_buffers(entry) -> bool:
    try:
        gradtx.multi_tensor(entry.build())
    except ValueError:  # a primitive that needs leaf boundaries (trust ratios, matrices)
        return False
    return True


ELEMENTWISE = [
    e for e in OPTIMIZERS if not e.extra_args and e.name != "noisy_sgd" and _runs_on_buffers(e)
]
STRUCTURED = [e for e in OPTIMIZERS if not e.extra_args and not _runs_on_buffers(e)]


def test_every_elementwise_family_runs_on_buffers():
    names = {e.name for e in ELEMENTWISE}
    assert {"sgd", "adam", "adamw", "nadam", "radam", "rmsprop", "adagrad", "lion"} <= names
    for entry in STRUCTURED:  # refused when built, naming the primitive to keep outside
        with pytest.raises(ValueError, match=r"multi_tensor: \w+ needs each leaf's own structure"):
            gradtx.multi_tensor(entry.build())


def many_leaves(n: int = 30, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    params = {
        f"layer{i}": jnp.asarray(rng.normal(size=(i % 4 + 1, 3)), jnp.float32) for i in range(n)
    }
    params["half"] = jnp.asarray(rng.normal(size=(5,)), jnp.bfloat16)
    params["large"] = jnp.asarray(rng.normal(size=(40, 30)), jnp.float32)
    return params


def train(tx, params, steps=6, grad_dtype=None):
    """The params and state after ``steps`` steps on gradients in ``grad_dtype`` (the params')."""

    def grad(p):
        p = p.astype(grad_dtype or p.dtype)
        return jnp.sin(3 * p) + p

    def step(params, state):
        grads = jax.tree.map(grad, params)
        updates, state = tx.update(grads, state, params)
        return gradtx.apply_updates(params, updates), state

    state = tx.init(params)
    # Inside one fusion XLA may keep bfloat16 intermediates in float32 (excess
    # precision), where the buffer path stores them: both paths round alike without it.
    step = jax.jit(step).lower(params, state).compile({"xla_allow_excess_precision": False})
    for _ in range(steps):
        params, state = step(params, state)
    return params, state


def trajectory(tx, params, steps=6):
    return train(tx, params, steps)[0]


@pytest.mark.parametrize("entry", ELEMENTWISE, ids=[e.name for e in ELEMENTWISE])
def test_named_optimizers_give_the_same_numbers_on_buffers(entry):
    params = many_leaves()
    tx = entry.build()
    fast = gradtx.multi_tensor(tx, bucket_limit=1000)  # "large" (1200) stays whole
    # Per element the maths is the same; XLA's CPU code for a long fused loop may
    # round a few operations differently (vectorised division, contracted
    # multiply-adds), so the results agree to a few float32 ulps.
    chex.assert_trees_all_close(
        trajectory(fast, params), trajectory(tx, params), rtol=1e-5, atol=1e-6
    )


def test_global_norm_clipping_and_schedules_on_buffers():
    params = many_leaves()
    schedule = gradtx.warmup_cosine_decay_schedule(0.0, 0.05, 2, 10)
    tx = gradtx.chain(gradtx.clip_by_global_norm(0.5), gradtx.adamw(schedule, weight_decay=0.1))
    # The global norm sums in another order: equal to float32 rounding.
    chex.assert_trees_all_close(
        trajectory(gradtx.multi_tensor(tx), params), trajectory(tx, params), rtol=1e-5, atol=1e-6
    )


def test_state_lives_in_a_few_buffers():
    params = many_leaves()
    tx = gradtx.multi_tensor(gradtx.adam(0.1), bucket_limit=1000)
    state = tx.init(params)
    mu = state.inner_state[0].mu  # scale_by_adam's
    assert sorted(mu) == ["['large']", "bucket_bfloat16", "bucket_float32"]
    assert mu["bucket_bfloat16"].shape == (5,) and mu["['large']"].shape == (40, 30)
    assert sum(x.size for x in mu.values()) == sum(x.size for x in jax.tree.leaves(params))
    # 8 bytes per parameter for float32 Adam: the moments, not per-leaf overhead.
    updates, state = tx.update(params, state, params)
    chex.assert_trees_all_equal_shapes_and_dtypes(updates, params)


def mixed_precision() -> dict:
    """bfloat16 and float32 leaves, bucketed and whole (bucket_limit=8)."""
    return {
        "w": jnp.linspace(-1.0, 1.0, 6, dtype=jnp.bfloat16).reshape(2, 3),
        "v": jnp.linspace(0.5, 2.0, 4, dtype=jnp.bfloat16),
        "big": jnp.linspace(-2.0, 1.0, 12, dtype=jnp.bfloat16).reshape(3, 4),
        "b": jnp.linspace(-0.5, 0.5, 3, dtype=jnp.float32),
    }


def test_low_precision_params_take_float32_gradients():
    # The buffers follow the params' dtypes (the state's); the float32 gradients of
    # the bfloat16 params share one float32 buffer, as per leaf the update is float32.
    params, tx = mixed_precision(), gradtx.adam(0.1)
    fast = gradtx.multi_tensor(tx, bucket_limit=8)
    params_fast, state_fast = train(fast, params, grad_dtype=jnp.float32)
    params_leaf, state_leaf = train(tx, params, grad_dtype=jnp.float32)
    chex.assert_trees_all_close(
        (params_fast, state_fast.per_leaf()), (params_leaf, state_leaf), rtol=1e-5, atol=1e-6
    )
    grads = jax.tree.map(lambda p: p.astype(jnp.float32), params)
    updates, _ = fast.update(grads, fast.init(params), params)
    chex.assert_trees_all_equal_dtypes(updates, grads)


def test_gradients_of_several_dtypes_in_one_buffer_are_refused():
    params = {"a": jnp.ones(2, jnp.bfloat16), "b": jnp.ones(3, jnp.bfloat16)}
    tx = gradtx.multi_tensor(gradtx.adam(0.1))
    grads = {"a": jnp.ones(2, jnp.float32), "b": jnp.ones(3, jnp.bfloat16)}
    with pytest.raises(
        ValueError,
        match=r"updates for the params in bucket_bfloat16 come in several dtypes "
        r"\(float32 at \['a'\], bfloat16 at \['b'\]\)",
    ):
        tx.update(grads, tx.init(params), params)


@pytest.mark.parametrize(
    ("updates", "params", "message"),
    [
        # The same total, 5 elements, cut elsewhere: every leaf would read another's moments.
        (
            {"a": jnp.ones(3), "b": jnp.ones(2)},
            None,
            r"updates do not fit the state's buffer layout at \['a'\]: shape \(3,\) in the "
            r"updates, \(2,\) in the state",
        ),
        (
            {"a": jnp.ones(2), "b": jnp.ones((1, 3))},
            None,
            r"at \['b'\]: shape \(1, 3\) in the updates, \(3,\) in the state",
        ),
        (
            {"a": jnp.ones(2), "b": jnp.ones(3)},
            {"a": jnp.ones(2, jnp.bfloat16), "b": jnp.ones(3)},
            r"params do not fit .* at \['a'\]: dtype bfloat16 in the params, float32 in the state",
        ),
        (
            {"a": jnp.ones(2), "c": jnp.ones(3)},
            None,
            r"updates do not match the multi_tensor state at \['c'\]",
        ),
    ],
    ids=["other_cut", "other_shape", "params_dtype", "other_path"],
)
def test_a_state_laid_out_for_other_leaves_is_refused(updates, params, message):
    tx = gradtx.multi_tensor(gradtx.sgd(0.1, momentum=0.9))
    state = tx.init({"a": jnp.ones(2), "b": jnp.ones(3)})
    with pytest.raises(ValueError, match=message):
        jax.jit(tx.update)(updates, state, params)


AVERAGES = {
    "ema_params": (gradtx.chain(gradtx.adam(0.1), gradtx.ema_params(0.5)), "average"),
    "polyak_average": (gradtx.chain(gradtx.sgd(0.1), gradtx.polyak_average(2)), "average"),
    "lookahead": (gradtx.lookahead(gradtx.adam(0.1), 2, 0.5), "slow"),
}


@pytest.mark.parametrize(("tx", "name"), AVERAGES.values(), ids=AVERAGES.keys())
def test_averages_and_slow_weights_come_back_as_the_params_tree(tx, name):
    params = mixed_precision()
    _, state = train(gradtx.multi_tensor(tx, bucket_limit=8), params, steps=3)
    _, expected = train(tx, params, steps=3)
    per_leaf = gradtx.tree_get(state.per_leaf(), name)
    chex.assert_trees_all_equal_shapes_and_dtypes(per_leaf, params)
    chex.assert_trees_all_close(per_leaf, gradtx.tree_get(expected, name), rtol=1e-5, atol=1e-6)


def test_tree_get_and_tree_set_read_and_write_a_multi_tensor_state_per_leaf():
    tx, _ = AVERAGES["ema_params"]
    params = mixed_precision()
    fast = gradtx.multi_tensor(tx, bucket_limit=8)
    _, state = train(fast, params, steps=3)
    _, expected = train(tx, params, steps=3)
    for name in ("average", "mu"):
        found = gradtx.tree_get(state, name)
        chex.assert_trees_all_equal_shapes_and_dtypes(found, gradtx.tree_get(expected, name))
        chex.assert_trees_all_close(found, gradtx.tree_get(expected, name), rtol=1e-5, atol=1e-6)
    # Written per leaf, stored in buffers again: the next step runs on it.
    state = gradtx.tree_set(state, average=params)
    assert state.inner_state[1].average.keys() == {"['big']", "bucket_bfloat16", "bucket_float32"}
    chex.assert_trees_all_equal(gradtx.tree_get(state, "average"), params)
    fast.update(params, state, params)


def test_compiled_step_slices_at_runtime_offsets():
    # A constant offset is baked into its slicing kernel, and XLA:CPU compiles each
    # distinct kernel (~10 ms): 2000 leaves took minutes. The offsets are state, so
    # equal-shaped leaves share one slicing kernel.
    params = {f"w{i}": jnp.ones(4) for i in range(40)}
    tx = gradtx.multi_tensor(gradtx.adam(0.1))
    state = tx.init(params)
    assert len(state.offsets) == 40 and {o.dtype for o in state.offsets} == {jnp.dtype("int32")}
    text = jax.jit(tx.update).lower(params, state).as_text()
    assert text.count("stablehlo.dynamic_slice") == 40 and "stablehlo.slice" not in text


def test_wrappers_around_elementwise_chains_are_accepted():
    for entry in WRAPPERS:
        if entry.name in ("apply_if_finite", "MultiSteps", "lookahead", "zero_nans", "set_to_zero"):
            params = many_leaves(5)
            tx = entry.build()
            chex.assert_trees_all_close(
                trajectory(gradtx.multi_tensor(tx), params),
                trajectory(tx, params),
                rtol=1e-5,
                atol=1e-6,
            )


@pytest.mark.parametrize(
    ("inner", "culprit"),
    [
        (gradtx.chain(gradtx.clip_by_block_rms(1.0), gradtx.adam(0.1)), "clip_by_block_rms"),
        (gradtx.adamw(0.1, mask=gradtx.masks.weight_decay()), "masked"),
        (gradtx.noisy_sgd(0.1), "add_noise"),
        (gradtx.partition({"a": gradtx.sgd(0.1)}, lambda p: "a"), "partition"),
    ],
)
def test_transforms_that_need_leaf_boundaries_are_rejected(inner, culprit):
    with pytest.raises(ValueError, match=rf"multi_tensor: {culprit} needs each leaf's own"):
        gradtx.multi_tensor(inner)


def test_sharded_params_keep_their_sharding_on_8_devices():
    worker = pathlib.Path(__file__).with_name("sharded_worker.py")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    env["PYTHONPATH"] = os.pathsep.join([str(worker.parents[1]), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, str(worker)], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["devices"] == 8
    for path in ("per_leaf", "multi_tensor"):
        assert result[path]["kernel_state_sharded_like_params"], result
        assert result[path]["params_keep_sharding"], result
    assert result["max_difference"] < 1e-5
