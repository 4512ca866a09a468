"""Tests that kill the mutants of gradtx/_noise.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from replay import run_steps

import gradtx


def _steps(tx, updates, steps):
    """The noisy updates of ``steps`` eager calls on the same updates."""
    return run_steps(tx, [updates] * steps, init=updates, jit="eager").updates


def test_add_noise_without_a_key_draws_optaxs_noise_of_key_0():
    # add_noise's default key is 0, optax's too (optax warns when none is given).
    updates = {"w": jnp.array([0.5, -1.0, 2.0])}
    ours = _steps(gradtx.add_noise(0.01, 0.55), updates, 2)
    theirs = _steps(optax.add_noise(0.01, 0.55, key=0), updates, 2)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a["w"], b["w"], rtol=1e-6)


def test_half_precision_leaves_keep_their_dtype_and_get_optaxs_samples():
    # The samples are drawn in the leaf's dtype, as optax's, and the sum is cast back to it.
    # std = sqrt(0.25 / t**0) = 0.5 is a power of two, so optax's bfloat16/float16 arithmetic
    # rounds as ours does and the two agree bit for bit.
    updates = {
        "w": jnp.array([0.5, -1.0, 2.0, 0.25], jnp.bfloat16),
        "b": jnp.array([1.5, -0.75], jnp.float16),
    }
    ours = _steps(gradtx.add_noise(0.25, 0.0, key=3), updates, 2)
    theirs = _steps(optax.add_noise(0.25, 0.0, key=3), updates, 2)
    for a, b in zip(ours, theirs):
        for name, leaf in updates.items():
            assert a[name].dtype == leaf.dtype
            np.testing.assert_array_equal(a[name].astype(jnp.float32), b[name].astype(jnp.float32))


def test_float32_leaves_get_the_same_noise_bits_with_and_without_x64():
    # The standard deviation is cast to the leaf's compute dtype (float32 here, also under
    # x64) before it scales the sample: x64 does not change a float32 leaf's rounding.
    tx = gradtx.add_noise(0.01, 0.55, key=1)
    updates = {"w": jnp.linspace(-1.0, 1.0, 8, dtype=jnp.float32)}
    without = _steps(tx, updates, 3)
    with jax.enable_x64(True):
        with_x64 = _steps(tx, updates, 3)
    for a, b in zip(with_x64, without):
        assert a["w"].dtype == jnp.float32
        np.testing.assert_array_equal(a["w"], b["w"])
