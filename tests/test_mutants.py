"""Tests that kill mutants the other test files let survive (tests/MUTATION.md).

Each test names the mutated line it guards, so a later run can tell which survivor it was for.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx

# -- _scale ---------------------------------------------------------------------------


def _steps(tx, grads, n):
    """The updates and states of ``n`` eager steps on the same gradients."""
    state = tx.init(grads)
    out = []
    for _ in range(n):
        updates, state = tx.update(grads, state)
        out.append((updates, state))
    return out


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
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
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
    grads = {"w": jnp.ones(1)}
    state = tx.init(grads)
    for expected in (1.0, 1.5, 1.75):
        updates, state = tx.update(grads, state)
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
