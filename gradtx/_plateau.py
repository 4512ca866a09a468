"""Reducing the step when the loss stops improving."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._base import check_range, fail, Transform
from ._parameter_free import require_value
from ._tree import default_float, safe_increment, tree_scale, zero_count


class ReduceLROnPlateauState(NamedTuple):
    """``scale`` multiplies the updates; ``avg_value`` averages the last ``count`` losses."""

    scale: jax.Array
    best_value: jax.Array
    plateau_count: jax.Array
    cooldown_count: jax.Array
    count: jax.Array
    avg_value: jax.Array


class ReduceOnPlateau(Transform):
    """Scales updates by a factor that shrinks whenever the loss stops improving."""

    elementwise = True

    factor: float = 0.1
    patience: int = 10
    rtol: float = 1e-4
    atol: float = 0.0
    cooldown: int = 0
    accumulation_size: int = 1
    min_scale: float = 0.0

    def __post_init__(self):
        check_range(self, "factor", low=0.0, high=1.0, low_open=True, high_open=True)
        check_range(self, "patience", low=1, integer=True)
        check_range(self, "rtol", low=0.0, high=1.0)
        check_range(self, "atol", low=0.0)
        check_range(self, "cooldown", low=0, integer=True)
        check_range(self, "accumulation_size", low=1, integer=True)
        check_range(self, "min_scale", low=0.0)
        if self.rtol == 0 and self.atol == 0:
            fail(self, "rtol", "rtol and atol are both 0: one must be positive")

    def init(self, params):
        del params
        dtype = default_float()
        return ReduceLROnPlateauState(
            scale=jnp.ones([], dtype),
            best_value=jnp.full([], math.inf, dtype),
            plateau_count=zero_count(),
            cooldown_count=zero_count(),
            count=zero_count(),
            avg_value=jnp.zeros([], dtype),
        )

    def update(self, updates, state, params=None, *, value=None, **extra_args):
        del params, extra_args
        require_value(self, value)
        count = safe_increment(state.count)
        value = jnp.asarray(value).astype(state.avg_value.dtype)
        avg = ((state.count * state.avg_value + value) / count).astype(state.avg_value.dtype)
        new_state = jax.tree.map(
            lambda old, new: jnp.where(count == self.accumulation_size, new, old),
            state._replace(count=count, avg_value=avg),
            self._judge(state, avg),
        )
        return tree_scale(new_state.scale, updates), new_state

    def _judge(self, state: ReduceLROnPlateauState, avg: jax.Array) -> ReduceLROnPlateauState:
        """The state after comparing a full accumulation's average with the best so far."""
        improved = avg < (1 - self.rtol) * state.best_value - self.atol
        plateau = jnp.where(improved, 0, safe_increment(state.plateau_count))
        reduce = (state.cooldown_count <= 0) & (plateau == self.patience)
        scale = jnp.where(reduce, state.scale * self.factor, state.scale)
        cooling = state.cooldown_count > 0
        return ReduceLROnPlateauState(
            scale=jnp.where(cooling, state.scale, jnp.maximum(scale, self.min_scale)).astype(
                state.scale.dtype
            ),
            best_value=jnp.where(improved, avg, state.best_value),
            plateau_count=jnp.where(cooling | reduce, 0, plateau).astype(jnp.int32),
            cooldown_count=jnp.where(
                cooling, state.cooldown_count - 1, jnp.where(reduce, self.cooldown, 0)
            ).astype(jnp.int32),
            count=zero_count(),
            avg_value=jnp.zeros_like(state.avg_value),
        )


def reduce_on_plateau(
    factor: float = 0.1,
    patience: int = 10,
    rtol: float = 1e-4,
    atol: float = 0.0,
    cooldown: int = 0,
    accumulation_size: int = 1,
    min_scale: float = 0.0,
) -> ReduceOnPlateau:
    """Shrinks the updates when the loss stops improving, as ``optax.contrib.reduce_on_plateau``.

    Update rule: every ``accumulation_size`` calls, with f the average of the
    losses passed as ``value=`` since the last check::

        improved = f < (1 - rtol) * best - atol;   best <- f if improved
        plateau <- 0 if improved else plateau + 1
        in cooldown: plateau <- 0, cooldown <- cooldown - 1
        else if plateau == patience:
            scale <- max(scale * factor, min_scale), plateau <- 0, cooldown <- cooldown
        u <- scale * u                      (on every call)

    Chain it after an optimizer; the update needs ``value=``. The current factor is
    ``gradtx.tree_get(state, "scale")``.

    Differences from optax: the scale and losses are float32 (float64 under x64)
    whatever the params' dtypes (optax: the params' lowest and highest);
    ``patience``, ``cooldown`` and ``accumulation_size`` must be whole numbers.

    Args:
        factor: multiplies the scale at each plateau, in (0, 1). Default 0.1.
        patience: checks without improvement before a reduction, an integer
            >= 1. Default 10.
        rtol: relative improvement needed, in [0, 1]. Default 1e-4.
        atol: absolute improvement needed, >= 0; rtol and atol may not both be
            0. Default 0.
        cooldown: checks after a reduction during which plateaus are not
            counted, an integer >= 0. Default 0.
        accumulation_size: calls whose losses are averaged into one check, an
            integer >= 1. Default 1.
        min_scale: the scale never falls below it, >= 0. Default 0.

    Reference: ``optax.contrib.reduce_on_plateau`` (after PyTorch's
    ``ReduceLROnPlateau``, which counts patience differently).

    >>> import gradtx
    >>> tx = gradtx.chain(gradtx.sgd(0.1), gradtx.reduce_on_plateau(patience=1))
    >>> state = tx.init({"w": 0.0})
    >>> for loss in (1.0, 1.0):  # no improvement at the second check: scale 1 -> 0.1
    ...     updates, state = tx.update({"w": 1.0}, state, value=loss)
    >>> round(float(gradtx.tree_get(state, "scale")), 4), round(float(updates["w"]), 4)
    (0.1, -0.01)
    """
    return ReduceOnPlateau(
        factor=factor,
        patience=patience,
        rtol=rtol,
        atol=atol,
        cooldown=cooldown,
        accumulation_size=accumulation_size,
        min_scale=min_scale,
    )
