"""Bad input anywhere a user can pass it gets a clear error, never a silent wrong answer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

PARAMS = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}


def test_updates_with_another_structure_name_the_first_mismatching_path():
    tx = gradtx.adam(1e-3)
    state = tx.init(PARAMS)
    with pytest.raises(ValueError, match=r"do not match the params at \[.c.\]") as info:
        tx.update({"w": jnp.ones((2, 3)), "c": jnp.ones(3)}, state, PARAMS)
    message = str(info.value)
    assert "PyTreeDef({'c': *, 'w': *})" in message and "PyTreeDef({'b': *, 'w': *})" in message


def test_updates_with_a_missing_leaf_are_rejected():
    tx = gradtx.sgd(0.1, momentum=0.9)
    state = tx.init(PARAMS)
    with pytest.raises(ValueError, match=r"do not match the params at \['w'\]"):
        tx.update({"b": jnp.ones(3)}, state, PARAMS)
    with pytest.raises(ValueError, match=r"do not match the optimizer state at \['w'\]"):
        tx.update({"b": jnp.ones(3)}, state)


def test_apply_updates_checks_the_structure_too():
    with pytest.raises(ValueError, match=r"do not match the params"):
        gradtx.apply_updates(PARAMS, {"w": jnp.ones((2, 3))})


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_])
def test_integer_and_boolean_leaves_are_rejected_not_cast(dtype):
    params = {"w": jnp.ones(3), "step": jnp.zeros(3, dtype)}
    tx = gradtx.adam(1e-3)
    with pytest.raises(TypeError, match=rf"params leaf at \['step'\] has dtype {jnp.dtype(dtype)}"):
        tx.init(params)  # never integer optimizer state
    floats = jax.tree.map(lambda x: x.astype(jnp.float32), params)
    with pytest.raises(
        TypeError, match=rf"updates leaf at \['step'\] has dtype {jnp.dtype(dtype)}"
    ):
        tx.update(params, tx.init(floats))
    with pytest.raises(TypeError, match=r"\['step'\]"):
        gradtx.apply_updates(params, params)


def test_integer_leaves_can_be_excluded_with_partition():
    params = {"w": jnp.ones(3), "step": jnp.zeros((), jnp.int32)}
    tx = gradtx.partition(
        {"train": gradtx.adam(0.1), "skip": gradtx.set_to_zero()},
        {"w": "train", "step": "skip"},
    )
    grads = {"w": jnp.ones(3), "step": jnp.zeros((), jnp.float32)}
    updates, _ = tx.update(grads, tx.init(params), params)
    assert float(updates["step"]) == 0.0 and bool(jnp.all(updates["w"] < 0))


def test_none_leaves_and_empty_trees():
    tx = gradtx.adam(0.1)
    params = {"w": jnp.ones(2), "frozen": None}
    updates, state = tx.update({"w": jnp.ones(2), "frozen": None}, tx.init(params), params)
    assert updates["frozen"] is None
    new = gradtx.apply_updates(params, updates)
    assert new["frozen"] is None and new["w"].shape == (2,)
    for empty in ({}, (), []):
        updates, state = tx.update(empty, tx.init(empty), empty)
        assert updates == empty


def test_an_array_update_for_a_none_param_names_the_path():
    tx = gradtx.adamw(0.1)  # its weight decay reads the params
    params = {"w": jnp.ones(2), "frozen": None}
    with pytest.raises(ValueError, match=r"an array at \['frozen'\] where the params or"):
        tx.update({"w": jnp.ones(2), "frozen": jnp.ones(2)}, tx.init(params), params)


def test_complex_parameters_use_the_modulus_in_second_moments():
    # Documented behaviour: |g|^2 in second moments, as optax does; minimising
    # |z - c|^2 over complex z converges to c.
    target = jnp.asarray([1.0 + 2.0j, -0.5j])
    loss = lambda p: jnp.sum(jnp.abs(p["z"] - target) ** 2)  # noqa: E731
    params = {"z": jnp.zeros(2, jnp.complex64)}
    tx = gradtx.adam(0.05)
    state = tx.init(params)
    for _ in range(400):
        grads = jax.tree.map(jnp.conj, jax.grad(loss, holomorphic=False)(params))
        updates, state = tx.update(grads, state, params)
        params = gradtx.apply_updates(params, updates)
    assert params["z"].dtype == jnp.complex64
    assert state[0].nu["z"].dtype == jnp.complex64
    np.testing.assert_allclose(params["z"], target, atol=1e-2)


def test_mixed_dtypes_in_one_tree():
    params = {
        "a": jnp.ones(2, jnp.bfloat16),
        "b": jnp.ones(2, jnp.float32),
        "c": jnp.ones(2, jnp.float16),
    }
    tx = gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adamw(0.1))
    updates, _ = tx.update(params, tx.init(params), params)
    assert {k: v.dtype for k, v in updates.items()} == {k: v.dtype for k, v in params.items()}


def test_the_int32_step_counter_saturates_instead_of_wrapping():
    params = {"x": jnp.ones(2)}
    tx = gradtx.adam(0.1)
    state = tx.init(params)
    top = jnp.iinfo(jnp.int32).max
    state = (state[0]._replace(count=jnp.asarray(top, jnp.int32)), state[1])
    updates, state = tx.update(params, state, params)
    assert int(state[0].count) == top
    assert bool(jnp.all(jnp.isfinite(updates["x"])))
