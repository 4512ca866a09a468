"""Tests that kill the mutants of gradtx/_multi_tensor.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
"""

from __future__ import annotations

import chex
from devices import run_on_cpu_devices
import jax
import jax.numpy as jnp
import optax
import pytest

import gradtx


def _buffers(options, params) -> dict:
    """Adam's first moment in the state's layout: buffer key -> shape."""
    state = gradtx.multi_tensor(gradtx.adam(0.1), **options).init(params)
    return {key: value.shape for key, value in state.inner_state[0].mu.items()}


# -- which leaves share a buffer (_buffer_layout, MultiTensor.__post_init__) ------------------


def test_a_leaf_exactly_at_the_bucket_limit_stays_whole():
    params = {"a": jnp.ones(2), "b": jnp.ones(3)}
    assert _buffers({"bucket_limit": 3}, params) == {"bucket_float32": (2,), "['b']": (3,)}


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU's default limit")
def test_the_default_bucket_limit_on_cpu_is_4096_elements():
    params = {"large": jnp.zeros((64, 64)), "small": jnp.zeros(4095)}
    assert _buffers({}, params) == {"['large']": (64, 64), "bucket_float32": (4095,)}


def test_the_default_bucket_limit_on_an_accelerator_is_2_to_the_19_elements(monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    params = {"huge": jnp.zeros(1 << 19), "mid": jnp.zeros((1 << 19) - 1)}
    assert _buffers({}, params) == {"['huge']": (1 << 19,), "bucket_float32": ((1 << 19) - 1,)}


SHARDED = """
import jax, jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec
import gradtx
mesh = jax.make_mesh((2,), ("data",))
params = {
    "rows": jax.device_put(jnp.ones((4, 2)), NamedSharding(mesh, PartitionSpec("data", None))),
    "copies": jax.device_put(jnp.ones(3), NamedSharding(mesh, PartitionSpec())),
    "more_copies": jax.device_put(jnp.ones(2), NamedSharding(mesh, PartitionSpec())),
}
state = gradtx.multi_tensor(gradtx.adam(0.1)).init(params)
print(sorted((k, v.shape) for k, v in state.inner_state[0].mu.items()))
"""


def test_a_small_leaf_sharded_over_devices_stays_whole_and_replicated_ones_share_a_buffer():
    assert run_on_cpu_devices(SHARDED, devices=2)[-1] == str(
        [("['rows']", (4, 2)), ("bucket_float32", (5,))]
    )


def test_a_bucket_limit_below_one_is_refused_when_built():
    with pytest.raises(
        ValueError, match=r"multi_tensor\(bucket_limit=0\): bucket_limit must be in \[1, inf\)"
    ):
        gradtx.multi_tensor(gradtx.adam(0.1), bucket_limit=0)


def test_a_bucket_limit_of_one_keeps_every_leaf_whole():
    params = {"a": jnp.ones(2), "s": jnp.ones(())}
    assert _buffers({"bucket_limit": 1}, params) == {"['a']": (2,), "['s']": ()}


def test_an_optax_transform_inside_is_refused_as_gradtx_wraps_it():
    # gradtx wraps it (from_optax) before asking whether it is elementwise: its closures
    # cannot say, so it is kept outside like any other transform of unknown structure.
    with pytest.raises(
        ValueError, match=r"multi_tensor: an optax transform cannot run on flat"
    ) as error:
        gradtx.multi_tensor(optax.adam(0.1))
    assert "chain(optax_transform, multi_tensor(...))" in str(error.value)
    assert "from_optax" not in str(error.value)  # no public name


# -- update (MultiTensor.update) ---------------------------------------------------------------


def test_the_loss_passed_as_value_reaches_reduce_on_plateau_on_buffers():
    params = {"a": jnp.array([1.0, -2.0]), "b": jnp.array([0.5, 0.25, -1.0])}
    tx = gradtx.chain(gradtx.sgd(1.0), gradtx.reduce_on_plateau(factor=0.5, patience=1))
    fast = gradtx.multi_tensor(tx)
    state, fast_state = tx.init(params), fast.init(params)
    step, fast_step = jax.jit(tx.update), jax.jit(fast.update)
    for loss in (1.0, 2.0, 3.0):  # no improvement after the first: the scale halves
        expected, state = step(params, state, params, value=loss)
        updates, fast_state = fast_step(params, fast_state, params, value=loss)
        chex.assert_trees_all_close(updates, expected)
    assert float(gradtx.tree_get(fast_state, "scale")) == 0.25


def test_a_transform_that_needs_params_says_so_when_none_are_given():
    tx = gradtx.multi_tensor(gradtx.adamw(0.1))
    params = {"a": jnp.ones(2)}
    with pytest.raises(ValueError, match=r"add_decayed_weights needs the params: call update"):
        tx.update(params, tx.init(params))


class _ParamsAsList(gradtx.Transform):
    """A user's combinator that hands its inner transform the params as a list (a mistake)."""

    elementwise = True

    inner: gradtx.Transform

    def init(self, params):
        return self.inner.init(params)

    def update(self, updates, state, params=None, **extra_args):
        return self.inner.update(updates, state, list(params.values()), **extra_args)


def test_params_of_another_structure_than_the_updates_are_named_inside_a_combinator():
    # The outermost update checks the user's params; a combinator's own params reach
    # multi_tensor unchecked, and multi_tensor names them.
    params = {"a": jnp.ones(2), "b": jnp.ones(3)}
    tx = _ParamsAsList(inner=gradtx.multi_tensor(gradtx.adamw(0.1)))
    with pytest.raises(ValueError, match=r"the updates do not match the params at \['a'\]"):
        tx.update(params, tx.init(params), params)


def test_updates_that_do_not_fit_say_how_the_state_should_have_been_made():
    tx = gradtx.multi_tensor(gradtx.sgd(0.1, momentum=0.9))
    state = tx.init({"a": jnp.ones(2), "b": jnp.ones(3)})
    with pytest.raises(
        ValueError,
        match=r"multi_tensor: the updates do not fit the state's buffer layout at \['a'\]: shape "
        r"\(3,\) in the updates, \(2,\) in the state\. Was the state made by init on params of "
        r"these shapes and dtypes\?$",
    ):
        tx.update({"a": jnp.ones(3), "b": jnp.ones(2)}, state)


def test_gradients_of_several_dtypes_for_one_buffer_are_refused_naming_multi_tensor():
    params = {"a": jnp.ones(2), "b": jnp.ones(3)}
    tx = gradtx.multi_tensor(gradtx.sgd(0.1))
    grads = {"a": jnp.ones(2, jnp.bfloat16), "b": jnp.ones(3)}
    with pytest.raises(ValueError, match=r"^multi_tensor: the updates for the params in bucket"):
        tx.update(grads, tx.init(params), params)


# -- the state written per leaf (MultiTensorState._replace_named_children) -------------------


def test_moments_of_several_dtypes_written_into_one_buffer_are_refused():
    params = {"a": jnp.ones(2), "b": jnp.ones(3)}
    state = gradtx.multi_tensor(gradtx.adam(0.1)).init(params)
    mu = {"a": jnp.ones(2, jnp.bfloat16), "b": jnp.ones(3)}
    with pytest.raises(
        ValueError,
        match=r"^multi_tensor: the state for the params in bucket_float32 come in several dtypes "
        r"\(bfloat16 at \['a'\], float32 at \['b'\]\)",
    ):
        gradtx.tree_set(state, mu=mu)


# -- weakly typed leaves under x64 (bug B1 in tests/MUTATION.md, fixed) ------------------


def test_a_weakly_typed_float32_leaf_under_x64_runs_as_on_the_per_leaf_path():
    weak = jnp.asarray(0.5)  # made with x64 off: a weakly typed float32 scalar
    with jax.enable_x64(True):
        params = {"b": jnp.ones(3, jnp.float64), "w": weak}
        tx = gradtx.adam(0.1)
        expected, _ = tx.update(params, tx.init(params), params)
        fast = gradtx.multi_tensor(tx)
        updates, _ = fast.update(params, fast.init(params), params)
        chex.assert_trees_all_close(updates, expected)
        # The weak leaf's update comes back in its layout's dtype (float64), where the per-leaf
        # path returns float32: the numbers are the same.
        assert updates["w"].dtype == jnp.float64 and updates["b"].dtype == jnp.float64
        # A weak gradient beside a float64 one, on a state made from float64 params.
        strong = {"b": jnp.ones(3, jnp.float64), "w": jnp.ones((), jnp.float64)}
        grads = {"b": jnp.ones(3, jnp.float64), "w": weak}
        updates, _ = fast.update(grads, fast.init(strong), strong)
        expected, _ = tx.update(grads, tx.init(strong), strong)
        chex.assert_trees_all_close(updates, expected)
