"""Replays a recorded reference problem (tests/reference/record_*.py) through a gradtx transform."""

from __future__ import annotations

import functools
from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np

import gradtx


@functools.partial(jax.jit, static_argnums=1)
def trajectory(tx, problem: ModuleType):
    """The params after each of ``problem``'s steps 1..STEPS, as the recorder stored them.

    ``tx`` is traced: cases that differ only in numbers share one compile per chain layout.
    """

    def body(carry, step):
        params, state = carry
        updates, state = tx.update(problem.gradient(params, step, xp=jnp), state, params)
        params = gradtx.apply_updates(params, updates)
        return (params, state), params

    params = jax.tree.map(jnp.asarray, problem.initial_params())
    steps = jnp.arange(1, problem.STEPS + 1)
    return jax.lax.scan(body, (params, tx.init(params)), steps)[1]


def assert_trajectories_equal(ours, expected, shapes, rtol=1e-9, atol=1e-12):
    """Every leaf equal to the recording, and the recording really moves."""
    for leaf in shapes:
        np.testing.assert_allclose(ours[leaf], expected[leaf], rtol=rtol, atol=atol, err_msg=leaf)
        assert np.ptp(expected[leaf]) > 0
