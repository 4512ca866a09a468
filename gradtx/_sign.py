"""Sign-based methods: signSGD, Signum, Lion, Rprop."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._base import check_range, fail, static, Transform
from ._combine import Chain, EmptyState, named_recipe, recipe
from ._momentum import ema
from ._regularize import add_decayed_weights
from ._scale import scale, scale_by_learning_rate
from ._tree import ema as ema_step
from ._tree import (
    hp,
    safe_increment,
    tree_full_like,
    tree_map_unzip,
    tree_zeros_like,
    up,
    zero_count,
)


class ScaleBySign(Transform):
    """Replaces each update by its sign."""

    elementwise = True

    def init(self, params):
        del params
        return EmptyState()

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        return jax.tree.map(jnp.sign, updates), state


def scale_by_sign() -> ScaleBySign:
    """The sign of the updates, as ``optax.scale_by_sign``.

    Update rule::

        u_t <- sign(u_t)

    Reference: Bernstein et al., *signSGD*, ICML 2018 (arXiv:1802.04434).

    >>> import gradtx
    >>> import jax.numpy as jnp
    >>> tx = gradtx.scale_by_sign()
    >>> tx.update({"w": jnp.array([-3.0, 0.0, 0.2])}, tx.init(None))[0]["w"].tolist()
    [-1.0, 0.0, 1.0]
    """
    return ScaleBySign()


class ScaleByLionState(NamedTuple):
    count: jax.Array
    mu: Any


class ScaleByLion(Transform):
    """Lion's sign of an interpolation between the momentum and the gradient."""

    elementwise = True

    b1: float = 0.9
    b2: float = 0.99
    mu_dtype: Any = static(None)

    def __post_init__(self):
        check_range(self, "b1", low=0.0, high=1.0)
        check_range(self, "b2", low=0.0, high=1.0)

    def init(self, params):
        return ScaleByLionState(zero_count(), tree_zeros_like(params, self.mu_dtype))

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args

        def leaf(g, mu):
            g32 = up(g)
            b1 = hp(self.b1, g32)
            direction = jnp.sign((1 - b1) * g32 + b1 * up(mu))
            return direction.astype(g.dtype), ema_step(g, mu, self.b2, 1)

        updates, mu = tree_map_unzip(leaf, updates, state.mu)
        return updates, ScaleByLionState(safe_increment(state.count), mu)


def scale_by_lion(b1: float = 0.9, b2: float = 0.99, mu_dtype: Any = None) -> ScaleByLion:
    """Lion's scaling, as ``optax.scale_by_lion``.

    Update rule::

        u_t <- sign((1 - b1) * u_t + b1 * m_{t-1})
        m_t = b2 * m_{t-1} + (1 - b2) * g_t

    Args:
        b1: weight of the momentum in the interpolation, in [0, 1]. Default 0.9.
        b2: decay of the momentum, in [0, 1]. Default 0.99.
        mu_dtype: storage dtype of the momentum; None keeps the params' dtype.

    Reference: Chen et al., *Symbolic Discovery of Optimization Algorithms*, arXiv:2302.06675.

    The second update takes the sign of 0.1 * (-1) + 0.9 * 0.02:

    >>> import gradtx
    >>> tx = gradtx.scale_by_lion()
    >>> u, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": -1.0}, state)
    >>> float(u["w"])
    -1.0
    """
    return ScaleByLion(b1=b1, b2=b2, mu_dtype=mu_dtype)


class ScaleByRpropState(NamedTuple):
    step_sizes: Any
    prev_updates: Any
    learning_rate: Any


class ScaleByRprop(Transform):
    """Rprop's per-coordinate step sizes, grown or shrunk by the sign of g_t * g_{t-1}."""

    elementwise = True

    learning_rate: float = 0.01
    eta_minus: float = 0.5
    eta_plus: float = 1.2
    min_step_size: float = 1e-6
    max_step_size: float = 50.0

    def __post_init__(self):
        check_range(self, "learning_rate", low=0.0)
        check_range(self, "eta_minus", low=0.0, high=1.0, low_open=True, high_open=True)
        check_range(self, "eta_plus", low=1.0, low_open=True)
        check_range(self, "min_step_size", low=0.0)
        check_range(self, "max_step_size", low=0.0, allow_inf=True)
        numbers = (self.min_step_size, self.max_step_size)
        if all(isinstance(x, (int, float)) for x in numbers) and numbers[0] > numbers[1]:
            fail(self, "min_step_size", f"must not exceed max_step_size={self.max_step_size}")

    def init(self, params):
        return ScaleByRpropState(
            tree_full_like(params, self.learning_rate),
            tree_zeros_like(params),
            jnp.asarray(self.learning_rate, jnp.result_type(float)),
        )

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args

        def leaf(g, step, prev):
            g32 = up(g)
            agreement = g32 * up(prev)
            factor = jnp.where(
                agreement > 0,
                hp(self.eta_plus, g32),
                jnp.where(agreement < 0, hp(self.eta_minus, g32), 1),
            )
            step = jnp.clip(
                up(step) * factor, hp(self.min_step_size, g32), hp(self.max_step_size, g32)
            )
            g32 = jnp.where(agreement < 0, 0, g32)  # after a sign change, skip this step
            return (jnp.sign(g32) * step).astype(g.dtype), step.astype(g.dtype), g32.astype(g.dtype)

        updates, steps, prev = tree_map_unzip(leaf, updates, state.step_sizes, state.prev_updates)
        return updates, ScaleByRpropState(steps, prev, state.learning_rate)


def scale_by_rprop(
    learning_rate: float,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
) -> ScaleByRprop:
    """Rprop's step sizes, as ``optax.scale_by_rprop`` but without its one-step lag.

    Update rule (Rprop without weight-backtracking, as PyTorch's ``Rprop``)::

        s_t = g_t * g_{t-1}
        d_t = clip(d_{t-1} * (eta_plus if s_t > 0, eta_minus if s_t < 0, else 1),
                   min_step_size, max_step_size)         (d_0 = learning_rate)
        g_t <- 0 where s_t < 0
        u_t <- sign(g_t) * d_t

    Fix: optax 0.2.x returns the *previous* step's update (its first update is
    zero and every one lags a step); here the current step is applied.

    Args:
        learning_rate: the initial step size d_0, >= 0.
        eta_minus: shrink factor on a sign change, in (0, 1). Default 0.5.
        eta_plus: growth factor on agreement, > 1. Default 1.2.
        min_step_size: >= 0, at most max_step_size. Default 1e-6.
        max_step_size: >= 0 (inf: no limit). Default 50.

    Reference: Riedmiller & Braun, *A Direct Adaptive Method for Faster
    Backpropagation Learning: The RPROP Algorithm*, ICNN 1993.

    >>> import gradtx
    >>> tx = gradtx.scale_by_rprop(0.1)
    >>> u, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 3.0}, state)
    >>> round(float(u["w"]), 4)
    0.12
    """
    return ScaleByRprop(
        learning_rate=learning_rate,
        eta_minus=eta_minus,
        eta_plus=eta_plus,
        min_step_size=min_step_size,
        max_step_size=max_step_size,
    )


@recipe
def rprop(
    learning_rate: float,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
) -> Chain:
    """Rprop, as ``optax.rprop``, applying the current step (optax lags one step).

    Update rule: :func:`scale_by_rprop`, then ``p_t = p_{t-1} - u_t``.
    ``learning_rate`` is the initial step size. Equals PyTorch's ``Rprop``.

    Args:
        learning_rate: the initial step size d_0, >= 0.
        eta_minus: shrink factor on a sign change, in (0, 1). Default 0.5.
        eta_plus: growth factor on agreement, > 1. Default 1.2.
        min_step_size: >= 0, at most max_step_size. Default 1e-6.
        max_step_size: >= 0 (inf: no limit). Default 50.

    Reference: Riedmiller & Braun, ICNN 1993.

    >>> import gradtx
    >>> tx = gradtx.rprop(0.1)
    >>> u, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 3.0}, state)
    >>> round(float(u["w"]), 4)
    -0.12
    """
    return named_recipe(
        "rprop",
        scale_by_rprop(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size),
        scale(-1.0),
    )


@recipe
def sign_sgd(learning_rate: Any) -> Chain:
    """signSGD, as ``optax.sign_sgd``.

    Update rule::

        p_t = p_{t-1} - lr_t * sign(g_t)

    Args:
        learning_rate: step size, >= 0; a number or a schedule.

    Reference: Bernstein et al., *signSGD*, ICML 2018 (arXiv:1802.04434).

    >>> import gradtx
    >>> tx = gradtx.sign_sgd(0.1)
    >>> round(float(tx.update({"w": 3.0}, tx.init({"w": 0.0}))[0]["w"]), 4)
    -0.1
    """
    return named_recipe("sign_sgd", scale_by_sign(), scale_by_learning_rate(learning_rate))


@recipe
def signum(learning_rate: Any, beta: float = 0.9, accumulator_dtype: Any = None) -> Chain:
    """Signum (signSGD with momentum), as ``optax.signum``.

    Update rule::

        m_t = beta * m_{t-1} + (1 - beta) * g_t
        p_t = p_{t-1} - lr_t * sign(m_t)

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        beta: decay of the momentum, in [0, 1]. Default 0.9.
        accumulator_dtype: storage dtype of the momentum; None keeps the params'.

    Reference: Bernstein et al., ICML 2018 (arXiv:1802.04434).

    The momentum still points along the first gradient:

    >>> import gradtx
    >>> tx = gradtx.signum(0.1)
    >>> u, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": -1.0}, state)
    >>> round(float(u["w"]), 4)
    -0.1
    """
    return named_recipe(
        "signum",
        ema(beta, debias=False, accumulator_dtype=accumulator_dtype),
        scale_by_sign(),
        scale_by_learning_rate(learning_rate),
    )


@recipe
def lion(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.99,
    mu_dtype: Any = None,
    weight_decay: Any = 1e-3,
    mask: Any = None,
) -> Chain:
    """Lion, as ``optax.lion``.

    Update rule::

        p_t = p_{t-1} - lr_t * (sign((1 - b1) g_t + b1 m_{t-1}) + weight_decay * p_{t-1})
        m_t = b2 m_{t-1} + (1 - b2) g_t

    Keras 3's ``Lion`` is the same with no weight decay by default.

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        b1: weight of the momentum in the interpolation, in [0, 1]. Default 0.9.
        b2: decay of the momentum, in [0, 1]. Default 0.99.
        mu_dtype: storage dtype of the momentum; None keeps the params' dtype.
        weight_decay: decoupled decay rate, >= 0; a number or a schedule. Default 1e-3.
        mask: a tree of booleans, or a function of the params giving one, that
            selects the parameters to decay; None decays all.

    Reference: Chen et al., arXiv:2302.06675.

    >>> import gradtx
    >>> tx, params = gradtx.lion(0.1, weight_decay=0.1), {"w": 2.0}
    >>> round(float(tx.update({"w": -3.0}, tx.init(params), params)[0]["w"]), 4)
    0.08
    """
    return named_recipe(
        "lion",
        scale_by_lion(b1, b2, mu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
