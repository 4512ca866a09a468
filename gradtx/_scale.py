"""Scaling by a constant, a learning rate, or a schedule."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._base import check_range, HyperparameterTypeError, static, Transform
from ._combine import EmptyState
from ._tree import default_float, safe_increment, tree_scale, zero_count


def value_at(value: Any, count: Any) -> jax.Array:
    """A number, or a schedule evaluated at ``count``, in float32 or float64."""
    if callable(value):
        value = value(count)
    return jnp.asarray(value, default_float())


class Scale(Transform):
    """Multiplies updates by a constant: ``u <- step_size * u``."""

    elementwise = True

    step_size: float = 1.0

    def init(self, params):
        del params
        return EmptyState()

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        return tree_scale(self.step_size, updates), state


def scale(step_size: float) -> Scale:
    """Scales updates by a constant, as ``optax.scale``.

    Update rule::

        u <- step_size * u

    Args:
        step_size: the factor, a number (not checked: any sign).

    Reference: ``optax.scale``.

    >>> import gradtx
    >>> gradtx.scale(-0.5).update({"w": 2.0}, ())[0]["w"]
    Array(-1., dtype=float32)
    """
    return Scale(step_size=step_size)


class ScaleByScheduleState(NamedTuple):
    count: jax.Array


class ScaleBySchedule(Transform):
    """Multiplies updates by ``step_size_fn(count)``, count starting at 0."""

    elementwise = True

    step_size_fn: Any

    def init(self, params):
        del params
        return ScaleByScheduleState(count=zero_count())

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        step_size = value_at(self.step_size_fn, state.count)
        return tree_scale(step_size, updates), ScaleByScheduleState(safe_increment(state.count))


def scale_by_schedule(step_size_fn: Any) -> ScaleBySchedule:
    """Scales updates by a schedule of the step count, as ``optax.scale_by_schedule``.

    Update rule::

        u_t <- step_size_fn(t) * u_t        t = 0, 1, 2, ...

    No sign is flipped: for descent, use a negative schedule or
    :func:`scale_by_learning_rate`.

    Args:
        step_size_fn: a gradtx schedule or a function of the 0-based step count.

    Reference: ``optax.scale_by_schedule``.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.scale_by_schedule(gradtx.exponential_decay(1.0, 1, 0.5))
    >>> state = tx.init({"w": jnp.array(0.0)})
    >>> for _ in range(3):
    ...     u, state = tx.update({"w": jnp.array(2.0)}, state)
    >>> round(float(u["w"]), 4)  # 2 * 0.5**2
    0.5
    """
    return ScaleBySchedule(step_size_fn=step_size_fn)


class ScaleByLearningRateState(NamedTuple):
    """``learning_rate`` is the rate applied at the last step (schedule(0) before any)."""

    count: jax.Array
    learning_rate: jax.Array


class ScaleByLearningRate(Transform):
    """Multiplies updates by -learning_rate (a number or a schedule)."""

    elementwise = True

    learning_rate: Any = 1e-3
    flip_sign: bool = static(True)

    def __post_init__(self):
        check_range(self, "learning_rate", low=0.0)

    def init(self, params):
        del params
        count = zero_count()
        return ScaleByLearningRateState(count, value_at(self.learning_rate, count))

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        lr = value_at(self.learning_rate, state.count)
        updates = tree_scale(-lr if self.flip_sign else lr, updates)
        return updates, ScaleByLearningRateState(safe_increment(state.count), lr)


def scale_by_learning_rate(
    learning_rate: Any = 1e-3, *, flip_sign: bool = True
) -> ScaleByLearningRate:
    """Scales updates by the learning rate, negated for descent, as optax's.

    Update rule::

        u_t <- -lr(t) * u_t          (+lr(t) * u_t when flip_sign=False)

    ``learning_rate`` is a number or a schedule. The rate applied at the last
    step is kept in the state, so it can be logged:
    ``gradtx.tree_get(state, "learning_rate")``. Unlike optax, ``None`` is not
    accepted (optax turns it into the identity, which ascends).

    Args:
        learning_rate: a number or a schedule, >= 0. Default 1e-3.
        flip_sign: negate (descent). Default True.

    Reference: ``optax.scale_by_learning_rate``.

    >>> import gradtx
    >>> tx = gradtx.scale_by_learning_rate(0.1)
    >>> tx.update({"w": 2.0}, tx.init({"w": 0.0}))[0]["w"]
    Array(-0.2, dtype=float32)
    """
    if learning_rate is None:
        # A HyperparameterError, so a recipe restates it (adam(learning_rate=None)); a
        # TypeError too, as for None given for any other number.
        raise HyperparameterTypeError(
            "scale_by_learning_rate",
            {"learning_rate": learning_rate},
            "a learning rate is required "
            "(optax treats None as no scaling, which ascends the gradient)",
        )
    return ScaleByLearningRate(learning_rate=learning_rate, flip_sign=flip_sign)
