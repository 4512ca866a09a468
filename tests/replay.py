"""Replays gradients through a transform: a recorded problem, or rows of gradients.

``trajectory`` replays a problem recorded by tests/reference/record_*.py; ``run_steps`` steps a
transform over given gradients, for the tests that compare it step by step.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import NamedTuple

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


class Steps(NamedTuple):
    """What :func:`run_steps` saw: ``updates[t]`` came from ``states[t]`` and ``params[t]``."""

    updates: list  # each step's updates
    states: list  # tx.init's state, then the state after each step (one more than updates)
    params: list  # the same for the params, [] when none were given


@jax.jit
def _traced_update(tx, updates, state, params):
    # ``tx`` is traced, as in ``trajectory``: cases that differ only in numbers share one compile.
    return _call(tx.update, updates, state, params)


def _call(update, updates, state, params):
    # Without params, ``update`` is called without them (the call the tests made), not with None.
    return update(updates, state) if params is None else update(updates, state, params)


def run_steps(tx, grads, params=None, *, init=None, apply=None, jit="traced") -> Steps:
    """Steps ``tx`` (gradtx's or optax's) over ``grads``, one tree a step, from ``tx.init``.

    ``init`` is the tree ``tx.init`` gets: ``params`` by default, or zeros like ``grads[0]``.
    ``params``, when given, are passed to every ``update``; ``apply(params, updates)``
    (``gradtx.apply_updates`` or the test's own sum), when given, moves them after each step.
    ``jit`` is how ``update`` runs:

    - ``"traced"``: one module-level jitted function with ``tx`` as an argument, so numeric
      hyperparameters are tracers (an optax transform, no pytree, runs as ``"bound"``);
    - ``"bound"``: ``jax.jit(tx.update)``, compiled once per call: the hyperparameters are
      constants of the trace (a Python float stays a Python float);
    - ``"eager"``: no jit, for Python-level errors, untraceable schedules, eager rounding.

    Returns every step's updates, and the states (and params) from ``init`` to the last step.
    """
    if jit == "eager":
        update = functools.partial(_call, tx.update)
    elif jit == "traced" and isinstance(tx, gradtx.Transform):
        update = functools.partial(_traced_update, tx)
    elif jit in ("traced", "bound"):
        update = functools.partial(_call, jax.jit(tx.update))
    else:
        raise ValueError(f"run_steps(jit={jit!r}): jit must be 'traced', 'bound' or 'eager'")
    if init is None:
        init = jax.tree.map(jnp.zeros_like, grads[0]) if params is None else params
    state = tx.init(init)
    steps = Steps([], [state], [] if params is None else [params])
    for g in grads:
        u, state = update(g, state, params)
        if apply is not None:
            params = apply(params, u)
        steps.updates.append(u)
        steps.states.append(state)
        if params is not None:
            steps.params.append(params)
    return steps
