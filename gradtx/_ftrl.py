"""Follow-the-regularized-leader (FTRL-Proximal), the online method Keras ships as Ftrl."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._base import check_range, Transform
from ._regularize import _require_params
from ._scale import value_at
from ._tree import (
    hp,
    safe_increment,
    tree_full_like,
    tree_map_unzip,
    tree_zeros_like,
    up,
    zero_count,
)


class FtrlState(NamedTuple):
    count: jax.Array
    accumulator: Any
    linear: Any
    learning_rate: jax.Array


class FtrlProximal(Transform):
    """FTRL-Proximal with L1, L2 and L2-shrinkage regularisation."""

    elementwise = True

    learning_rate: Any = 1e-3
    learning_rate_power: float = -0.5
    initial_accumulator_value: float = 0.1
    l1: float = 0.0
    l2: float = 0.0
    l2_shrinkage: float = 0.0
    beta: float = 0.0
    weight_decay: Any = 0.0

    def __post_init__(self):
        check_range(self, "learning_rate", low=0.0, low_open=True)
        check_range(self, "learning_rate_power", high=0.0)
        check_range(self, "initial_accumulator_value", low=0.0)
        for arg in ("l1", "l2", "l2_shrinkage", "beta", "weight_decay"):
            check_range(self, arg, low=0.0)

    def init(self, params):
        count = zero_count()
        return FtrlState(
            count,
            tree_full_like(params, self.initial_accumulator_value),
            tree_zeros_like(params),
            value_at(self.learning_rate, count),
        )

    def update(self, updates, state, params=None, **extra_args):
        del extra_args
        _require_params(self, params)
        lr = value_at(self.learning_rate, state.count)

        def leaf(g, p, accum, linear):
            g32, p32, n, z = up(g), up(p), up(accum), up(linear)
            lr_, power = hp(lr, g32), hp(self.learning_rate_power, g32)
            # Decoupled decay first, as Keras does: FTRL then reads the decayed value.
            p32 = p32 - p32 * hp(self.weight_decay, g32) * lr_
            l1, l2 = hp(self.l1, g32), hp(self.l2, g32) + hp(self.beta, g32) / (2.0 * lr_)
            shrunk = g32 + 2 * hp(self.l2_shrinkage, g32) * p32
            new_n = n + g32 * g32
            z = z + shrunk - (new_n ** (-power) - n ** (-power)) / lr_ * p32
            quadratic = new_n ** (-power) / lr_ + 2 * l2
            new_p = (jnp.clip(z, -l1, l1) - z) / quadratic
            return (
                (new_p - up(p)).astype(g.dtype),
                new_n.astype(accum.dtype),
                z.astype(linear.dtype),
            )

        updates, accum, linear = tree_map_unzip(
            leaf, updates, params, state.accumulator, state.linear
        )
        return updates, FtrlState(safe_increment(state.count), accum, linear, lr)


def ftrl_proximal(
    learning_rate: Any = 1e-3,
    learning_rate_power: float = -0.5,
    initial_accumulator_value: float = 0.1,
    l1: float = 0.0,
    l2: float = 0.0,
    l2_shrinkage: float = 0.0,
    beta: float = 0.0,
    weight_decay: Any = 0.0,
) -> FtrlProximal:
    """FTRL-Proximal: the update that moves params to the regularised leader's solution.

    Update rule, per coordinate (Keras 3's ``Ftrl``; l2' = l2 + beta / (2 lr))::

        g' = g_t + 2 * l2_shrinkage * p
        n_t = n_{t-1} + g_t**2                                       (n_0 = initial value)
        z_t = z_{t-1} + g' - (n_t**-power - n_{t-1}**-power) / lr_t * p
        p_t = (clip(z_t, -l1, l1) - z_t) / (n_t**-power / lr_t + 2 l2')
        u_t <- p_t - p_{t-1}

    ``weight_decay`` first decays p by ``p * weight_decay * lr_t`` (Keras's
    decoupled decay, which FTRL then reads). The output is a full update
    (apply it as is: no learning-rate scaling after).
    The update needs the params. Keras 3's ``keras.optimizers.Ftrl`` is
    ``gradtx.compat.keras.ftrl``.

    Args:
        learning_rate: lr, a number or a schedule, > 0. Default 1e-3.
        learning_rate_power: -power, <= 0 (-0.5 is AdaGrad-like). Default -0.5.
        initial_accumulator_value: n_0, >= 0. Default 0.1.
        l1: L1 strength, >= 0 (coordinates with |z| <= l1 are set to 0). Default 0.0.
        l2: L2 strength, >= 0. Default 0.0.
        l2_shrinkage: magnitude penalty added to the gradient, >= 0. Default 0.0.
        beta: adds beta / (2 lr) to l2, >= 0. Default 0.0.
        weight_decay: decoupled decay, >= 0. Default 0.0.

    Reference: McMahan et al., *Ad Click Prediction: a View from the Trenches*, KDD 2013.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.ftrl_proximal(0.1, l1=0.5)
    >>> params = {"w": jnp.array([0.0, 0.0])}
    >>> u, _ = tx.update({"w": jnp.array([0.3, 2.0])}, tx.init(params), params)
    >>> [round(float(v), 4) for v in u["w"]]  # |z| = 0.3 <= l1: stays at 0
    [0.0, -0.0741]
    """
    return FtrlProximal(
        learning_rate=learning_rate,
        learning_rate_power=learning_rate_power,
        initial_accumulator_value=initial_accumulator_value,
        l1=l1,
        l2=l2,
        l2_shrinkage=l2_shrinkage,
        beta=beta,
        weight_decay=weight_decay,
    )
