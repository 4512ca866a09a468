"""Tests that kill the mutants of gradtx/_momentum.py the other test files let survive.

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

GRADS = [
    np.array(g, np.float32)
    for g in ([0.5, -1.0, 2.0], [1.5, 0.25, -0.5], [-1.0, 1.0, 0.75], [0.125, -2.0, 1.0])
]


def _run(tx, grads, params=None, jit="bound"):
    """The updates and the states of ``tx`` over ``grads`` (dicts of one leaf ``w``), jitted
    unless ``jit="eager"``; ``params`` (zeros by default) only initialise the state."""
    steps = run_steps(tx, [{"w": jnp.asarray(g)} for g in grads], init=params, jit=jit)
    return [u["w"] for u in steps.updates], steps.states[1:]


def _torch_sgd_updates(grads, **options):
    """The steps ``p_t - p_{t-1}`` of ``torch.optim.SGD(lr=1, **options)``."""
    torch = pytest.importorskip("torch")  # the reference extra
    p = torch.zeros(len(grads[0]), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=1.0, **options)
    steps = []
    for g in grads:
        before = p.detach().clone()
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        steps.append(-(p.detach() - before).numpy())
    return steps


# -- the factories' defaults and arguments reach the transform --


def test_scale_by_momentum_defaults_are_torchs_sgd_momentum_0_9():
    # momentum 0.9, no dampening, heavy ball (not Nesterov).
    ours, _ = _run(gradtx.scale_by_momentum(), GRADS)
    theirs = _torch_sgd_updates(GRADS, momentum=0.9)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("nesterov", [False, True], ids=["heavy-ball", "nesterov"])
def test_scale_by_momentum_with_dampening_or_nesterov_matches_torch_sgd(nesterov):
    # A momentum other than the default 0.9; torch's first step is undamped.
    options = {"momentum": 0.5, "dampening": 0.0 if nesterov else 0.3, "nesterov": nesterov}
    ours, _ = _run(gradtx.scale_by_momentum(**options), GRADS)
    theirs = _torch_sgd_updates(GRADS, **options)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("nesterov", [None, False, True], ids=["default", "heavy-ball", "nesterov"])
def test_trace_equals_optax_trace(nesterov):
    options = {} if nesterov is None else {"nesterov": nesterov}
    ours, states = _run(gradtx.trace(0.5, **options), GRADS)
    theirs, their_states = _run(optax.trace(0.5, **options), GRADS, jit="eager")
    for a, s, b, state in zip(ours, states, theirs, their_states, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
        np.testing.assert_allclose(s.trace["w"], state.trace["w"], rtol=1e-6)


def test_ema_debiases_by_default_as_optax_ema():
    ours, states = _run(gradtx.ema(0.8), GRADS)
    theirs, their_states = _run(optax.ema(0.8), GRADS, jit="eager")
    for a, s, b, state in zip(ours, states, theirs, their_states, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
        np.testing.assert_allclose(s.ema["w"], state.ema["w"], rtol=1e-6)
    np.testing.assert_allclose(ours[0], GRADS[0], rtol=1e-6)  # debiased: the first is g itself


def test_a_momentum_schedule_is_read_at_the_zero_based_step():
    decay = gradtx.linear_schedule(0.0, 0.9, 3)  # 0, 0.3, 0.6, 0.9
    ours, _ = _run(gradtx.trace(decay), GRADS)
    m = np.zeros(3)
    for t, (g, a) in enumerate(zip(GRADS, ours, strict=True)):
        m = 0.3 * t * m + g
        np.testing.assert_allclose(a, m, rtol=1e-6, atol=1e-6)


# -- storage dtypes: accumulator_dtype, and bfloat16 leaves kept bfloat16 --

ACCUMULATOR_CASES = {
    "trace": (lambda dtype: gradtx.trace(0.9, accumulator_dtype=dtype), "trace"),
    "momentum": (lambda dtype: gradtx.scale_by_momentum(0.9, accumulator_dtype=dtype), "trace"),
    "ema": (lambda dtype: gradtx.ema(0.9, accumulator_dtype=dtype), "ema"),
}


@pytest.mark.parametrize(("make", "field"), ACCUMULATOR_CASES.values(), ids=ACCUMULATOR_CASES)
def test_accumulator_dtype_is_the_buffers_dtype_from_init_on(make, field):
    # float32 params and gradients, a bfloat16 buffer; the updates stay float32.
    tx = make(jnp.bfloat16)
    state = tx.init({"w": jnp.zeros(3)})
    assert getattr(state, field)["w"].dtype == jnp.bfloat16
    outs, states = _run(tx, GRADS[:2])
    for u, s in zip(outs, states, strict=True):
        assert u.dtype == jnp.float32
        assert getattr(s, field)["w"].dtype == jnp.bfloat16


BF16_CASES = {
    "trace": lambda: gradtx.trace(0.9),
    "momentum": lambda: gradtx.scale_by_momentum(0.9, dampening=0.5),
    "nesterov": lambda: gradtx.scale_by_momentum(0.9, nesterov=True),
    "ema": lambda: gradtx.ema(0.9),
    "bias-correction": lambda: gradtx.bias_correction(0.9),
}


@pytest.mark.parametrize("make", BF16_CASES.values(), ids=BF16_CASES)
def test_bfloat16_gradients_give_bfloat16_updates_and_state(make):
    # The arithmetic runs in float32; updates and buffers are cast back to bfloat16.
    grads = [g.astype(jnp.bfloat16) for g in GRADS[:2]]
    outs, states = _run(make(), grads, {"w": jnp.zeros(3, jnp.bfloat16)})
    for u, s in zip(outs, states, strict=True):
        assert u.dtype == jnp.bfloat16
        for leaf in jax.tree.leaves(s)[1:]:  # the count first
            assert leaf.dtype == jnp.bfloat16


X64_CASES = {
    "trace": lambda: gradtx.trace(0.9),
    "dampening": lambda: gradtx.scale_by_momentum(0.9, dampening=0.1),
}


@pytest.mark.parametrize("make", X64_CASES.values(), ids=X64_CASES)
def test_float32_leaves_give_the_same_bits_with_and_without_x64(make):
    # momentum and dampening are taken in the leaves' compute dtype (float32), not in the
    # default float, which is float64 under jax_enable_x64.
    rng = np.random.default_rng(0)
    grads = [np.asarray(rng.normal(size=256), np.float32) for _ in range(3)]
    without, _ = _run(make(), grads)
    with jax.enable_x64(True):
        with_x64, _ = _run(make(), grads)
    for a, b in zip(without, with_x64, strict=True):
        assert b.dtype == jnp.float32
        np.testing.assert_array_equal(a, b)


# -- bias_correction --


def test_bias_correction_divides_by_one_minus_decay_to_the_step():
    outs, states = _run(gradtx.bias_correction(0.5), GRADS)
    for t, (g, u, s) in enumerate(zip(GRADS, outs, states, strict=True), start=1):
        np.testing.assert_allclose(u, g / (1 - 0.5**t), rtol=1e-6)
        assert s.count == t


def test_an_undebiased_ema_then_bias_correction_is_optax_ema():
    # The docstring's identity, and optax's bias correction (optax.tree_utils).
    ours, _ = _run(gradtx.chain(gradtx.ema(0.8, debias=False), gradtx.bias_correction(0.8)), GRADS)
    theirs, _ = _run(optax.ema(0.8, debias=True), GRADS, jit="eager")
    m = np.zeros(3)
    for t, (g, a, b) in enumerate(zip(GRADS, ours, theirs, strict=True), start=1):
        np.testing.assert_allclose(a, b, rtol=1e-6)
        m = 0.8 * m + 0.2 * g
        np.testing.assert_allclose(a, optax.tree_utils.tree_bias_correction(m, 0.8, t), rtol=1e-6)


def test_bias_correction_refuses_a_decay_outside_zero_to_one():
    with pytest.raises(
        ValueError, match=r"bias_correction\(decay=1.0\): decay must be in \[0, 1\)"
    ):
        gradtx.bias_correction(1.0)
    with pytest.raises(ValueError, match=r"bias_correction\(decay=-0.1\)"):
        gradtx.bias_correction(-0.1)
    outs, _ = _run(gradtx.bias_correction(0.0), GRADS[:1])  # 1 - 0**1: nothing to correct
    np.testing.assert_array_equal(outs[0], GRADS[0])
