"""Averages of the parameters along the trajectory, kept in the state for evaluation."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._base import check_range, Transform
from ._regularize import _require_params
from ._tree import default_float, hp, safe_increment, up, zero_count


class AverageParamsState(NamedTuple):
    """``average`` holds the averaged parameters (the params' structure and dtypes)."""

    count: jax.Array
    average: Any


class AverageParams(Transform):
    """Tracks an average of the parameters *after* each update; updates pass unchanged.

    ``decay=None`` is the uniform (Polyak-Ruppert) average of the iterates from
    step ``start`` on; a number is an exponential moving average.
    """

    elementwise = True

    decay: Any = None
    start: Any = 1

    def __post_init__(self):
        check_range(self, "decay", low=0.0, high=1.0)
        check_range(self, "start", low=0.0)

    def init(self, params):
        return AverageParamsState(zero_count(), jax.tree.map(jnp.copy, params))  # no aliasing

    def update(self, updates, state, params=None, **extra_args):
        del extra_args
        _require_params(self, params)
        count = safe_increment(state.count)
        if self.decay is None:
            # weight 1 / max(1, t - start + 1): a copy until start, then the running mean.
            t = count.astype(default_float())
            weight = 1 / jnp.maximum(1, t - jnp.asarray(self.start, default_float()) + 1)
        else:
            weight = 1 - jnp.asarray(self.decay, default_float())

        def leaf(p, u, avg):
            new = up(p) + up(u)
            w = hp(weight, new)
            mixed = jnp.where(w == 1, new, up(avg) + w * (new - up(avg)))
            return mixed.astype(avg.dtype)

        average = jax.tree.map(leaf, params, updates, state.average)
        return updates, AverageParamsState(count, average)


def polyak_average(start: int = 1) -> AverageParams:
    """The running mean of the parameters from step ``start`` on (Polyak-Ruppert averaging).

    Update rule, with p_t the parameters after step t (t = 1, 2, ...)::

        mu_t = 1 / max(1, t - start + 1)
        a_t = a_{t-1} + mu_t * (p_t - a_{t-1})       (a copy of p_t while mu_t = 1)

    so ``a_t`` is the mean of ``p_start, ..., p_t`` (and follows ``p_t`` before
    ``start``). Read it with ``gradtx.tree_get(state, "average")``. PyTorch's
    ``ASGD(t0=...)`` averages with ``start = t0 + 2``.

    Reference: Polyak & Juditsky, *Acceleration of Stochastic Approximation
    by Averaging*, SIAM J. Control Optim. 1992.
    """
    return AverageParams(decay=None, start=start)


def ema_params(decay: float = 0.999) -> AverageParams:
    """An exponential moving average of the parameters, for evaluation.

    Update rule, with p_t the parameters after step t::

        a_t = decay * a_{t-1} + (1 - decay) * p_t          (a_0 = p_0)

    Read it with ``gradtx.tree_get(state, "average")``.
    """
    return AverageParams(decay=decay)
