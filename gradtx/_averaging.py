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

    Args:
        start: the first step (counting from 1) included in the mean, >= 0;
            steps before it are not averaged. Default 1 (every step).

    Reference: Polyak & Juditsky, *Acceleration of Stochastic Approximation
    by Averaging*, SIAM J. Control Optim. 1992.

    >>> import gradtx
    >>> tx = gradtx.polyak_average(start=2)  # updates pass unchanged
    >>> p = {"w": 0.0}
    >>> s = tx.init(p)
    >>> for g in [1.0, 2.0, 3.0]:  # p becomes 1, 3, 6: the mean of 3 and 6 is 4.5
    ...     u, s = tx.update({"w": g}, s, p)
    ...     p = gradtx.apply_updates(p, u)
    >>> float(gradtx.tree_get(s, "average")["w"])
    4.5
    """
    return AverageParams(decay=None, start=start)


def ema_params(decay: float = 0.999) -> AverageParams:
    """An exponential moving average of the parameters, for evaluation.

    Update rule, with p_t the parameters after step t::

        a_t = decay * a_{t-1} + (1 - decay) * p_t          (a_0 = p_0)

    Read it with ``gradtx.tree_get(state, "average")``. Where optax keeps an
    EMA of the *updates* (``optax.ema``), this one averages the parameters, as
    Keras's ``use_ema`` and ``torch.optim.swa_utils.AveragedModel`` with an EMA.

    Args:
        decay: weight of the old average, in [0, 1]; 0 copies the parameters,
            1 keeps ``p_0``. Default 0.999.

    >>> import gradtx
    >>> tx = gradtx.ema_params(0.9)
    >>> p = {"w": 0.0}
    >>> u, s = tx.update({"w": 1.0}, tx.init(p), p)   # p_1 = 1: a_1 = 0.9 * 0 + 0.1 * 1
    >>> round(float(gradtx.tree_get(s, "average")["w"]), 4)
    0.1
    """
    return AverageParams(decay=decay)
