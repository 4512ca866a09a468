"""Tests that kill the mutants of gradtx/_adam_variants.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest
from replay import run_steps

import gradtx

# Six steps of three leaves: one at eps's scale, one small, one of order 1; the second step ten
# times larger, so that ADOPT's normalised gradient u_1 / |u_0| is clipped at t = 1 (bound 1).
GRADS = np.random.default_rng(0).normal(size=(6, 3)) * np.array([1e-3, 0.1, 1.0])
GRADS[1] *= 10.0

# Complex gradients (optax's scale_by_yogi and scale_by_adopt take them, with |g|**2).
COMPLEX_GRADS = GRADS + 1j * np.random.default_rng(1).normal(size=GRADS.shape) * 0.5


def _optax(name, **kwargs):
    return getattr(optax.contrib if name == "scale_by_adopt" else optax, name)(**kwargs)


def _run(tx, grads=GRADS, dtype=jnp.float32):
    """The updates of ``tx`` (gradtx's, or optax's) over ``grads`` (one row a step) as NumPy,
    and the last state."""
    steps = run_steps(tx, [jnp.asarray(g, dtype) for g in grads])
    return np.stack([np.asarray(u) for u in steps.updates]), steps.states[-1]


# -- public defaults --------------------------------------------------------------------------

# ADOPT: optax rounds b2 to float32 (its 1 - b2 is 1.7e-4 too large), so v and the steps
# differ at 1e-4; the mutants' changes (no clipping, Nesterov) are of order 1.
DEFAULT_RTOL = {
    "scale_by_belief": 1e-5,
    "scale_by_yogi": 1e-5,
    "scale_by_adan": 1e-5,
    "scale_by_adopt": 1e-3,
}


@pytest.mark.parametrize("name", sorted(DEFAULT_RTOL))
def test_the_default_hyperparameters_give_optaxs_steps(name):
    # The trampolines mutmut puts in front of a function keep its signature: the defaults must
    # be used to be tested (test_adam_variants compares signatures and the recipes).
    ours, _ = _run(getattr(gradtx, name)())
    theirs, _ = _run(_optax(name))
    np.testing.assert_allclose(ours, theirs, rtol=DEFAULT_RTOL[name], atol=1e-7)


# -- ADOPT's clipping and state ---------------------------------------------------------------


def _half_root_of_count(count):
    return 0.5 * count**0.5


def test_adopt_clips_at_its_clip_value_fn():
    ours, _ = _run(gradtx.scale_by_adopt(clip_value_fn=_half_root_of_count))
    theirs, _ = _run(_optax("scale_by_adopt", clip_value_fn=_half_root_of_count))
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-7)
    # The bound matters: the default (count ** 0.25) gives other steps.
    default, _ = _run(gradtx.scale_by_adopt())
    assert np.abs(ours - default).max() > 1e-3


def test_adopt_does_not_call_clip_value_fn_without_clipping():
    ours, _ = _run(gradtx.scale_by_adopt(use_clipping=False, clip_value_fn=None))
    theirs, _ = _run(_optax("scale_by_adopt", use_clipping=False, clip_value_fn=None))
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("mu_dtype", [None, "bfloat16"])
def test_adopt_starts_from_optaxs_state(mu_dtype):
    params = jnp.linspace(-1.0, 1.0, 3)
    ours = gradtx.scale_by_adopt(mu_dtype=mu_dtype).init(params)
    theirs = _optax("scale_by_adopt", mu_dtype=mu_dtype).init(params)
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    _, state = _run(gradtx.scale_by_adopt(mu_dtype=mu_dtype))
    assert state.mu.dtype == jnp.dtype(mu_dtype or jnp.float32)


# -- dtypes of the updates --------------------------------------------------------------------

DTYPE_NAMES = ["scale_by_belief", "scale_by_yogi", "scale_by_adan", "scale_by_adopt"]


@pytest.mark.parametrize("name", DTYPE_NAMES)
@pytest.mark.parametrize("dtype", ["bfloat16", "complex64"])
def test_the_updates_have_the_gradients_dtype(name, dtype):
    kwargs = {"use_clipping": False} if name == "scale_by_adopt" else {}  # no complex order
    tx = getattr(gradtx, name)(**kwargs)
    grads = COMPLEX_GRADS if dtype == "complex64" else GRADS
    updates, _ = _run(tx, grads[:3], dtype=jnp.dtype(dtype))
    assert updates.dtype == jnp.dtype(dtype)
    assert np.all(np.isfinite(updates.astype(np.complex64)))


# -- complex gradients ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["scale_by_yogi", "scale_by_adopt"])
def test_complex_gradients_give_optaxs_steps(name):
    # Both square |g| (g * conj(g)); ADOPT without clipping (complex numbers have no order).
    kwargs = {"use_clipping": False} if name == "scale_by_adopt" else {}
    ours, _ = _run(getattr(gradtx, name)(**kwargs), COMPLEX_GRADS, jnp.complex64)
    theirs, _ = _run(_optax(name, **kwargs), COMPLEX_GRADS, jnp.complex64)
    np.testing.assert_allclose(ours, theirs, rtol=DEFAULT_RTOL[name], atol=1e-7)
    assert np.abs(ours.imag).max() > 0.1


# -- Yogi's sign(v - g**2) --------------------------------------------------------------------


def test_yogi_leaves_v_alone_where_g_squared_equals_it():
    # sign(0) = 0: v_1 = v_0 exactly where u_1**2 = v_0 (here 2**2 = 4 in float32).
    grads = np.array([[2.0, 1.0, -3.0]])
    kwargs = {"initial_accumulator_value": 4.0}
    ours, state = _run(gradtx.scale_by_yogi(**kwargs), grads)
    theirs, their_state = _run(_optax("scale_by_yogi", **kwargs), grads)
    assert float(state.nu[0]) == 4.0
    np.testing.assert_allclose(state.nu, their_state.nu, rtol=1e-6)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)


# -- ACProp on a tree without leaves ----------------------------------------------------------


def test_acprop_counts_no_step_of_a_tree_without_leaves():
    # "While every gradient so far is zero (all of the tree), the state stays as initialised":
    # a tree with no leaves has no nonzero gradient, like one of empty leaves.
    for tree in ({}, {"w": jnp.zeros((0,))}):
        tx = gradtx.scale_by_acprop()
        _, state = tx.update(tree, tx.init(tree))
        assert int(state.count) == 0
