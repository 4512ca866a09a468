"""Tests that kill the mutants of gradtx/_sign.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from replay import run_steps

import gradtx

# Six steps of gradients with sign changes, for two coordinates.
GRADS = np.asarray(
    [[0.5, -1.0], [2.0, 0.3], [-1.5, 0.7], [0.2, -2.0], [-0.4, -0.1], [1.0, 1.2]], np.float32
)


def _run(tx, grads, params):
    """Updates and final state of ``tx`` over ``grads`` (one row per step), params fixed, eager."""
    grads = [{"w": jnp.asarray(g, params["w"].dtype)} for g in grads]
    steps = run_steps(tx, grads, params, jit="eager")
    return np.stack([np.asarray(u["w"], np.float32) for u in steps.updates]), steps.states[-1]


# -- Lion (scale_by_lion, ScaleByLion) ------------------------------------------------------


def test_scale_by_lion_with_its_defaults_steps_as_optax():
    # scale_by_lion: the defaults b1=0.9, b2=0.99 are optax's (a default out of [0, 1] is
    # refused when the transform is built).
    params = {"w": jnp.zeros(2)}
    ours, state = _run(gradtx.scale_by_lion(), GRADS, params)
    theirs, optax_state = _run(optax.scale_by_lion(), GRADS, params)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(state.mu["w"], optax_state.mu["w"], rtol=1e-6)


def test_lion_keeps_its_momentum_in_mu_dtype_as_optax():
    # scale_by_lion / ScaleByLion.init: mu_dtype is passed on and used for the momentum, from
    # init on, for float32 params, in the transform and in the recipe.
    params = {"w": jnp.zeros(2, jnp.float32)}
    for ours, theirs in [
        (gradtx.scale_by_lion(mu_dtype=jnp.bfloat16), optax.scale_by_lion(mu_dtype=jnp.bfloat16)),
        (gradtx.lion(0.1, mu_dtype=jnp.bfloat16), optax.lion(0.1, mu_dtype=jnp.bfloat16)),
    ]:
        assert gradtx.tree_get(ours.init(params), "mu")["w"].dtype == jnp.bfloat16
        updates, state = _run(ours, GRADS, params)
        optax_updates, optax_state = _run(theirs, GRADS, params)
        np.testing.assert_allclose(updates, optax_updates, rtol=1e-6)
        mu, optax_mu = gradtx.tree_get(state, "mu")["w"], optax.tree.get(optax_state, "mu")["w"]
        assert mu.dtype == optax_mu.dtype == jnp.bfloat16
        # optax rounds b2 * mu to bfloat16 before adding the gradient; gradtx adds in float32.
        np.testing.assert_allclose(
            np.asarray(mu, np.float32), np.asarray(optax_mu, np.float32), atol=5e-4
        )


def test_lion_gives_bfloat16_params_bfloat16_updates_as_optax():
    # ScaleByLion.update: the sign is cast back to the gradient's dtype.
    params = {"w": jnp.zeros(2, jnp.bfloat16)}
    ours, state = _run(gradtx.scale_by_lion(), GRADS, params)
    theirs, _ = _run(optax.scale_by_lion(), GRADS, params)
    np.testing.assert_array_equal(ours, theirs)
    u, _ = gradtx.scale_by_lion().update({"w": jnp.ones(2, jnp.bfloat16)}, state, params)
    assert u["w"].dtype == jnp.bfloat16


def test_a_float32_lion_step_gives_the_same_signs_under_x64():
    # ScaleByLion.update: b1 is cast to the leaf's compute dtype, so a float32 leaf takes the
    # same signs with x64 on. With b2=0 the momentum is the last gradient, and
    # 0.1 * (-9) + 0.9 * 1 is slightly negative in float32 but positive in float64.
    params = {"w": jnp.zeros(3, jnp.float32)}
    grads = np.asarray([[1.0, 2.0, 0.5], [-9.0, -18.0, -4.5]], np.float32)
    without, _ = _run(gradtx.scale_by_lion(b1=0.9, b2=0.0), grads, params)
    theirs, _ = _run(optax.scale_by_lion(b1=0.9, b2=0.0), grads, params)
    np.testing.assert_array_equal(without, theirs)
    with jax.enable_x64(True):
        with_x64, _ = _run(gradtx.scale_by_lion(b1=0.9, b2=0.0), grads, params)
    np.testing.assert_array_equal(with_x64, without)
    np.testing.assert_array_equal(with_x64[1], [-1.0, -1.0, -1.0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"b1": -0.5}, "scale_by_lion(b1=-0.5): b1 must be in [0, 1]"),
        ({"b1": 1.5}, "scale_by_lion(b1=1.5): b1 must be in [0, 1]"),
        ({"b2": -0.5}, "scale_by_lion(b2=-0.5): b2 must be in [0, 1]"),
        ({"b2": 1.5}, "scale_by_lion(b2=1.5): b2 must be in [0, 1]"),
    ],
)
def test_scale_by_lion_refuses_b1_and_b2_outside_0_1(kwargs, message):
    # ScaleByLion.__post_init__: both ends of both ranges are checked.
    with pytest.raises(ValueError, match=re.escape(message)):
        gradtx.scale_by_lion(**kwargs)


# -- Rprop (scale_by_rprop, ScaleByRprop) ---------------------------------------------------


@pytest.mark.parametrize(
    "learning_rate, signs, bound",
    [
        (10.0, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], 50.0),  # 10 * 1.2**8 = 43 -> 51.6 clipped to 50
        (4e-6, [1, -1, -1, 1, 1, -1, -1, 1, 1, -1], 1e-6),  # halved every other step
    ],
    ids=["up-to-max", "down-to-min"],
)
def test_scale_by_rprop_with_its_defaults_steps_as_torch(learning_rate, signs, bound):
    # scale_by_rprop: eta_plus=1.2, min_step_size=1e-6 and max_step_size=50 are torch's
    # defaults (eta_minus=0.5 too), step sizes and params alike.
    torch = pytest.importorskip("torch")
    grads = np.asarray(signs, np.float32)[:, None] * np.asarray([1.0, 3.0], np.float32)
    weight = torch.zeros(2, requires_grad=True)
    optimizer = torch.optim.Rprop([weight], lr=learning_rate)
    tx = gradtx.chain(gradtx.scale_by_rprop(learning_rate), gradtx.scale(-1.0))
    rows = [{"w": jnp.asarray(g)} for g in grads]
    ours = run_steps(tx, rows, {"w": jnp.zeros(2)}, apply=gradtx.apply_updates, jit="eager")
    for g, state, params in zip(grads, ours.states[1:], ours.params[1:], strict=True):
        weight.grad = torch.from_numpy(g.copy())
        optimizer.step()
        step_sizes = optimizer.state[weight]["step_size"].numpy()
        np.testing.assert_array_equal(state[0].step_sizes["w"], step_sizes)
        np.testing.assert_allclose(params["w"], weight.detach().numpy(), rtol=1e-6)
    np.testing.assert_array_equal(step_sizes, np.float32([bound, bound]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"min_step_size": -1.0},
            "scale_by_rprop(min_step_size=-1.0): min_step_size must be in [0, inf)",
        ),
        (
            {"min_step_size": 0.0, "max_step_size": -1.0},
            "scale_by_rprop(max_step_size=-1.0): max_step_size must be in [0, inf]",
        ),
        (
            {"min_step_size": 2.0, "max_step_size": 1.0},
            "scale_by_rprop(min_step_size=2.0): must not exceed max_step_size=1.0",
        ),
    ],
    ids=["min-negative", "max-negative", "min-above-max"],
)
def test_scale_by_rprop_refuses_step_size_bounds_out_of_range(kwargs, message):
    # ScaleByRprop.__post_init__: each bound is checked on its own (a negative maximum is
    # named as such, not as a minimum above it), then the two against each other.
    with pytest.raises(ValueError, match=re.escape(message)):
        gradtx.scale_by_rprop(0.1, **kwargs)


def test_rprop_without_a_maximum_step_size_grows_its_steps_past_50():
    # ScaleByRprop.__post_init__: max_step_size=inf is allowed and means "no limit".
    tx = gradtx.scale_by_rprop(40.0, max_step_size=float("inf"))
    updates, state = _run(tx, np.ones((4, 1), np.float32), {"w": jnp.zeros(1)})
    np.testing.assert_allclose(updates[:, 0], [40.0, 48.0, 57.6, 69.12], rtol=1e-6)
    np.testing.assert_allclose(state.step_sizes["w"], [69.12], rtol=1e-6)


def test_rprop_with_equal_min_and_max_step_sizes_takes_fixed_steps():
    # ScaleByRprop.__post_init__: min_step_size == max_step_size is allowed: every step
    # (the first one clipped from the learning rate too) has that size, and a sign change
    # still skips its step.
    tx = gradtx.scale_by_rprop(0.5, min_step_size=0.25, max_step_size=0.25)
    updates, _ = _run(tx, GRADS, {"w": jnp.zeros(2)})
    np.testing.assert_array_equal(updates[:, 0], [0.25, 0.25, 0.0, 0.25, 0.0, 0.25])
    np.testing.assert_array_equal(updates[:, 1], [-0.25, 0.0, 0.25, 0.0, -0.25, 0.0])


def test_rprop_state_reports_its_initial_step_size_as_a_float_learning_rate():
    # ScaleByRprop.init/update: the state keeps the initial step size as a scalar in the
    # default float, from init on and through the steps of a scan, for
    # tree_get(state, "learning_rate"); a sweep over bfloat16 rates reports them in float32.
    tx = gradtx.rprop(0.5)
    params = {"w": jnp.zeros(2)}
    state = tx.init(params)

    def step(state, g):
        updates, state = tx.update({"w": g}, state, params)
        return state, updates["w"]

    for after in (state, jax.lax.scan(step, state, jnp.asarray(GRADS))[0]):
        rate = gradtx.tree_get(after, "learning_rate")
        assert rate.dtype == jnp.float32 and rate.shape == () and float(rate) == 0.5

    def initial_rate(learning_rate):
        return gradtx.tree_get(gradtx.rprop(learning_rate).init(params), "learning_rate")

    rates = jax.vmap(initial_rate)(jnp.asarray([0.5, 0.25], jnp.bfloat16))
    assert rates.dtype == jnp.float32
    np.testing.assert_array_equal(rates, [0.5, 0.25])


def test_rprop_keeps_bfloat16_updates_and_state_through_a_scan():
    # ScaleByRprop.update: the update, the step sizes and the previous gradient are cast back
    # to the leaf's dtype, so a scan can carry the state. Every value is exact in bfloat16.
    tx = gradtx.scale_by_rprop(0.5, eta_minus=0.5, eta_plus=1.5)
    params = {"w": jnp.zeros(1, jnp.bfloat16)}

    def step(state, g):
        updates, state = tx.update({"w": g}, state, params)
        return state, updates["w"]

    grads = jnp.asarray([[1.0], [1.0], [-1.0], [-1.0]], jnp.bfloat16)
    state, updates = jax.lax.scan(step, tx.init(params), grads)
    assert updates.dtype == state.step_sizes["w"].dtype == jnp.bfloat16
    assert state.prev_updates["w"].dtype == jnp.bfloat16
    # 0.5, 0.75, halved to 0.375 on the sign change (skipped), then unchanged.
    np.testing.assert_array_equal(np.asarray(updates[:, 0], np.float32), [0.5, 0.75, 0.0, -0.375])


def test_rprop_gives_the_same_bits_under_x64():
    # ScaleByRprop.update: eta_plus, eta_minus and both bounds are cast to the leaf's compute
    # dtype (float32), so float32 and bfloat16 leaves get the same bits with x64 on. The
    # bounds sit 2**-30 above a bfloat16 tie: float32 rounds them onto the tie (then to even),
    # float64 rounds them straight up. (XLA:CPU converts float64 to bfloat16 through float32,
    # so the bounds' cast shows on GPU only; the etas' shows on float32 leaves everywhere.)
    tie = 2**-8 + 2**-30
    tx = gradtx.scale_by_rprop(
        1.5, eta_minus=0.9, eta_plus=1.3, min_step_size=1.25 + tie, max_step_size=2 * (1 + tie)
    )
    # Coordinate 0 grows (1.5, 1.95, 2.535 -> max); coordinate 1 shrinks (1.35 -> min).
    grads = np.asarray([[1.0, 1.0], [1.0, -1.0], [1.0, -1.0], [1.0, 1.0]], np.float32)

    def run():
        return [
            _run(tx, grads, {"w": jnp.zeros(2, dtype)}) for dtype in (jnp.float32, jnp.bfloat16)
        ]

    without = run()
    with jax.enable_x64(True):
        with_x64 = run()
    for (updates, state), (updates_x64, state_x64) in zip(without, with_x64):
        np.testing.assert_array_equal(updates_x64, updates)
        # (state.learning_rate is in the default float: float64 under x64.)
        for a, b in zip(state_x64[:2], state[:2]):
            a, b = a["w"], b["w"]
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
    np.testing.assert_array_equal(without[1][1].step_sizes["w"].astype(np.float32), [2.0, 1.25])
