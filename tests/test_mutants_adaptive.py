"""Tests that kill the mutants of gradtx/_adaptive.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from replay import run_steps

import gradtx

# Three steps of small gradients: eps is not negligible beside sqrt(v), and the accumulators
# (sums, averages, Adadelta's E[dx2]) carry from step to step.
GRADS = [
    {"w": jnp.array([3e-4, -1e-3, 2e-5]), "b": jnp.array(-5e-4)},
    {"w": jnp.array([-1e-4, 2e-3, 4e-5]), "b": jnp.array(1e-4)},
    {"w": jnp.array([2e-4, -5e-4, -3e-5]), "b": jnp.array(-2e-4)},
]


def _run(tx, grads=GRADS):
    """The updates of every step, from ``tx.init`` of zeros like the first gradients, and the
    last state: ``jax.jit(tx.update)``, the hyperparameters constants of the trace."""
    steps = run_steps(tx, grads, jit="bound")
    return steps.updates, steps.states[-1]


def _assert_trees_close(actual, expected, rtol=1e-5):
    for a, e in zip(actual, expected, strict=True):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=0), a, e)


# -- the factories' defaults and arguments are optax's --


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (gradtx.scale_by_rms, optax.scale_by_rms),
        (gradtx.scale_by_stddev, optax.scale_by_stddev),
        (gradtx.scale_by_rss, optax.scale_by_rss),
        (gradtx.scale_by_adadelta, optax.scale_by_adadelta),
    ],
    ids=["rms", "stddev", "rss", "adadelta"],
)
def test_the_default_scalings_equal_optaxs_defaults(ours, theirs):
    # Default decay/rho (an out-of-range one raises), eps, initial value, eps inside the root,
    # no bias correction, centered only for stddev: each changes these small-gradient steps.
    _assert_trees_close(_run(ours())[0], _run(theirs())[0])


STDDEV_OPTIONS = {
    "outside-root-debiased": dict(
        decay=0.8, eps=1e-3, initial_scale=0.5, eps_in_sqrt=False, bias_correction=True
    ),
    "inside-root-debiased": dict(
        decay=0.7, eps=1e-7, initial_scale=0.0, eps_in_sqrt=True, bias_correction=True
    ),
    "inside-root": dict(decay=0.6, eps=1e-6, initial_scale=1e-6, eps_in_sqrt=True),
}


@pytest.mark.parametrize("options", STDDEV_OPTIONS.values(), ids=STDDEV_OPTIONS.keys())
def test_scale_by_stddev_passes_every_argument_on_as_optax_does(options):
    # Each argument reaches scale_by_rms in its place, centered; with bias_correction both the
    # mean and the average of squares are debiased before v - m**2.
    ours, state = _run(gradtx.scale_by_stddev(**options))
    _assert_trees_close(ours, _run(optax.scale_by_stddev(**options))[0])
    assert state.mu is not None
    assert gradtx.scale_by_stddev(**options) == gradtx.scale_by_rms(**options, centered=True)


def test_scale_by_rss_with_eps_outside_the_root_follows_its_update_rule():
    # s_t = s_{t-1} + u_t**2, u_t <- u_t / (sqrt(s_t) + eps), in float64 by hand.
    s0, eps = 0.5, 0.1
    ours, _ = _run(gradtx.scale_by_rss(s0, eps, eps_in_sqrt=False))
    s = {k: np.full(np.shape(v), s0) for k, v in GRADS[0].items()}
    for g, u in zip(GRADS, ours, strict=True):
        for k in g:
            s[k] = s[k] + np.asarray(g[k], np.float64) ** 2
            np.testing.assert_allclose(u[k], g[k] / (np.sqrt(s[k]) + eps), rtol=1e-6)


def test_a_gradient_whose_square_underflows_gets_a_zero_adagrad_step_as_in_optax():
    # 1e-30**2 is 0 in float32, so s_t = 0 while u_t != 0: the step is 0 there, not u_t
    # scaled by 1 or by 1/sqrt(eps).
    grads = [{"w": jnp.array([1e-30, 0.0, 2.0])}]
    ours, state = _run(gradtx.scale_by_rss(initial_accumulator_value=0.0), grads)
    theirs, _ = _run(optax.scale_by_rss(initial_accumulator_value=0.0), grads)
    np.testing.assert_array_equal(ours[0]["w"], theirs[0]["w"])
    np.testing.assert_array_equal(ours[0]["w"][:2], [0.0, 0.0])
    np.testing.assert_array_equal(state.sum_of_squares["w"], [0.0, 0.0, 4.0])


def test_a_traced_zero_eps_gives_adagrad_a_zero_step_for_a_zero_sum():
    # eps traced under jit cannot be checked when the transform is built; a zero gradient with
    # s_0 = 0 still gives 0 (the 0 branch of the where), not 0 * rsqrt(0) = NaN.
    @jax.jit
    def step(eps, g):
        tx = gradtx.scale_by_rss(0.0, eps)
        return tx.update(g, tx.init(g))[0]

    u = step(0.0, {"w": jnp.array([0.0, 3.0])})
    np.testing.assert_array_equal(u["w"], [0.0, 1.0])


# -- eps may be 0 when the initial accumulator is positive --


@pytest.mark.parametrize(
    ("make", "initial"),
    [
        (lambda eps, v0: gradtx.scale_by_rms(eps=eps, initial_scale=v0), "initial_scale"),
        (lambda eps, v0: gradtx.scale_by_rss(v0, eps), "initial_accumulator_value"),
    ],
    ids=["rms", "rss"],
)
def test_eps_zero_is_allowed_only_with_a_positive_initial_accumulator(make, initial):
    ours, _ = _run(make(0.0, 0.1), [{"w": jnp.array([0.0, 1.0])}] * 2)
    assert np.all(np.isfinite(ours[-1]["w"]))
    assert ours[-1]["w"][0] == 0.0
    with pytest.raises(ValueError, match=f"with eps and {initial} all 0 a zero gradient"):
        make(0.0, 0.0)


# -- storage dtypes and the updates' dtype --

BF16_PARAMS = {"w": jnp.array([0.5, -1.0], jnp.bfloat16)}
BF16_GRADS = [
    {"w": jnp.array([0.25, -2.0], jnp.bfloat16)},
    {"w": jnp.array([1.0, 0.5], jnp.bfloat16)},
]


# The transforms are built in the tests, not at collection: the factories are under test too.
DTYPE_CASES = {
    "rms": (
        lambda: gradtx.scale_by_rms(nu_dtype=jnp.float32, mu_dtype=jnp.float16, centered=True),
        {"nu": jnp.float32, "mu": jnp.float16},
    ),
    "rss": (lambda: gradtx.scale_by_rss(nu_dtype=jnp.float32), {"sum_of_squares": jnp.float32}),
    "adadelta": (
        lambda: gradtx.scale_by_adadelta(nu_dtype=jnp.float32),
        {"e_g": jnp.float32, "e_x": jnp.float32},
    ),
}


@pytest.mark.parametrize(("make", "fields"), DTYPE_CASES.values(), ids=DTYPE_CASES.keys())
def test_the_state_is_stored_in_the_dtypes_asked_and_the_updates_keep_the_gradients(make, fields):
    # bfloat16 params would otherwise get bfloat16 state; the arithmetic runs in float32 and the
    # updates are cast back to the gradients' bfloat16.
    steps = run_steps(make(), BF16_GRADS, init=BF16_PARAMS, jit="bound")
    for u in steps.updates:
        assert u["w"].dtype == jnp.bfloat16
    for state in steps.states:  # from init on
        for name, dtype in fields.items():
            assert getattr(state, name)["w"].dtype == dtype, name


@pytest.mark.parametrize(
    "make",
    [
        lambda: gradtx.scale_by_rms(eps=1e-3),
        lambda: gradtx.scale_by_rms(eps=1e-3, eps_in_sqrt=False, centered=True),
        lambda: gradtx.scale_by_rss(eps=1e-3),
        lambda: gradtx.scale_by_adadelta(eps=1e-3),
    ],
    ids=["rms", "rms-outside", "rss", "adadelta"],
)
def test_float32_leaves_give_the_same_bits_with_and_without_x64(make):
    # eps is taken in the leaves' compute dtype (float32), not in the default float, which is
    # float64 under jax_enable_x64: turning x64 on must not change a float32 model's steps.
    rng = np.random.default_rng(0)
    grads = [{"w": jnp.asarray(rng.normal(size=256) * 0.05, jnp.float32)} for _ in range(3)]
    tx = make()
    without, _ = _run(tx, grads)
    with jax.enable_x64(True):
        with_x64, _ = _run(tx, grads)
    for a, b in zip(without, with_x64, strict=True):
        assert b["w"].dtype == jnp.float32
        np.testing.assert_array_equal(a["w"], b["w"])
