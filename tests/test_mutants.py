"""Tests that kill mutants the other test files let survive (tests/MUTATION.md).

Each test names the mutated line it guards, so a later run can tell which survivor it was for.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

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
