"""Momentum, moving averages, bias correction; SGD."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._base import check_range, fail, static, Transform
from ._combine import Chain, identity, named_recipe, recipe
from ._scale import scale_by_learning_rate, value_at
from ._tree import (
    bias_correction as correction,
)
from ._tree import (
    debias,
    hp,
    safe_increment,
    tree_map_unzip,
    tree_zeros_like,
    up,
    zero_count,
)
from ._tree import (
    ema as ema_step,
)


class TraceState(NamedTuple):
    count: jax.Array
    trace: Any


class ScaleByMomentum(Transform):
    """Heavy-ball or Nesterov momentum, with PyTorch's dampening; decay may be a schedule."""

    elementwise = True

    decay: float = 0.9
    dampening: float = 0.0
    nesterov: bool = static(False)
    accumulator_dtype: Any = static(None)

    def __post_init__(self):
        check_range(self, "decay", low=0.0, high=1.0)
        check_range(self, "dampening", low=0.0, high=1.0)
        if self.nesterov and isinstance(self.dampening, (int, float)) and self.dampening != 0:
            fail(self, "dampening", "Nesterov momentum requires dampening=0")

    def init(self, params):
        return TraceState(zero_count(), tree_zeros_like(params, self.accumulator_dtype))

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        first = state.count == 0
        # A schedule is read at the 0-based step, as torch's schedulers set momentum.
        decay = value_at(self.decay, state.count)

        def leaf(g, buf):
            g32 = up(g)
            m, d = hp(decay, g32), hp(self.dampening, g32)
            # PyTorch starts the buffer at g undamped; with dampening 0 this is
            # the same as a zero buffer.
            new = jnp.where(first, g32, m * up(buf) + (1 - d) * g32)
            out = g32 + m * new if self.nesterov else new
            return out.astype(g.dtype), new.astype(buf.dtype)

        updates, trace = tree_map_unzip(leaf, updates, state.trace)
        return updates, TraceState(safe_increment(state.count), trace)


def trace(decay: Any, nesterov: bool = False, accumulator_dtype: Any = None) -> ScaleByMomentum:
    """Momentum as ``optax.trace``: a decaying sum of past updates.

    Update rule::

        m_t = decay_t * m_{t-1} + u_t        (m_0 = 0)
        u_t <- m_t                           (Nesterov: u_t + decay_t * m_t)

    ``decay`` is a number in [0, 1] or a schedule, read at the 0-based step
    (optax's ``trace`` takes a number only).

    Args:
        decay: momentum, in [0, 1]; a number or a schedule.
        nesterov: Nesterov momentum. Default False.
        accumulator_dtype: storage dtype of the buffer; None keeps the params'.

    Reference: Polyak, *Some methods of speeding up the convergence of iteration
    methods*, 1964; Nesterov form: Sutskever et al., ICML 2013.

    >>> import gradtx
    >>> tx = gradtx.trace(0.9)
    >>> s = tx.init({"w": 0.0})
    >>> u, s = tx.update({"w": 1.0}, s)
    >>> round(float(tx.update({"w": 1.0}, s)[0]["w"]), 6)
    1.9
    """
    return ScaleByMomentum(decay=decay, nesterov=nesterov, accumulator_dtype=accumulator_dtype)


def scale_by_momentum(
    momentum: Any = 0.9,
    dampening: float = 0.0,
    nesterov: bool = False,
    accumulator_dtype: Any = None,
) -> ScaleByMomentum:
    """Momentum with PyTorch's options: heavy ball, Nesterov, dampening.

    Update rule (PyTorch's ``SGD`` buffer)::

        b_1 = u_1
        b_t = momentum_t * b_{t-1} + (1 - dampening) * u_t
        u_t <- b_t                           (Nesterov: u_t + momentum_t * b_t)

    ``momentum`` is a number in [0, 1] or a schedule read at the 0-based step
    ``t - 1``, as torch's ``OneCycleLR`` and ``CyclicLR`` cycle it
    (``cycle_momentum``; pass ``schedule.momentum`` of
    ``gradtx.compat.pytorch.lr_scheduler``). With ``dampening=0`` this is
    :func:`trace`. Nesterov requires dampening=0.

    Args:
        momentum: in [0, 1]; a number or a schedule. Default 0.9.
        dampening: in [0, 1]; must be 0 with Nesterov. Default 0.
        nesterov: Nesterov momentum. Default False.
        accumulator_dtype: storage dtype of the buffer; None keeps the params'.

    Reference: PyTorch ``torch.optim.SGD``; Sutskever et al., ICML 2013.

    With dampening the first step is undamped, as in PyTorch:

    >>> import gradtx
    >>> tx = gradtx.scale_by_momentum(0.9, dampening=0.5)
    >>> u, state = tx.update({"w": 1.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 1.0}, state)
    >>> round(float(u["w"]), 4)
    1.4
    """
    return ScaleByMomentum(
        decay=momentum, dampening=dampening, nesterov=nesterov, accumulator_dtype=accumulator_dtype
    )


class EmaState(NamedTuple):
    count: jax.Array
    ema: Any


class Ema(Transform):
    """An exponential moving average of updates, optionally debiased."""

    elementwise = True

    decay: float = 0.9
    debias: bool = static(True)
    accumulator_dtype: Any = static(None)

    def __post_init__(self):
        check_range(self, "decay", low=0.0, high=1.0)

    def init(self, params):
        return EmaState(zero_count(), tree_zeros_like(params, self.accumulator_dtype))

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        bc = correction(self.decay, count)

        def leaf(g, avg):
            new = ema_step(g, up(avg), self.decay)
            out = debias(new, bc) if self.debias else new
            return out.astype(g.dtype), new.astype(avg.dtype)

        updates, avg = tree_map_unzip(leaf, updates, state.ema)
        return updates, EmaState(count, avg)


def ema(decay: float, debias: bool = True, accumulator_dtype: Any = None) -> Ema:
    """Exponential moving average of updates, as ``optax.ema``.

    Update rule::

        m_t = decay * m_{t-1} + (1 - decay) * u_t
        u_t <- m_t / (1 - decay**t)          (m_t when debias=False)

    Args:
        decay: in [0, 1].
        debias: divide by ``1 - decay**t``. Default True.
        accumulator_dtype: storage dtype of the average; None keeps the params'.

    Reference: optax ``optax.ema``.

    >>> import gradtx
    >>> tx = gradtx.ema(0.9, debias=False)
    >>> u, state = tx.update({"w": 1.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 1.0}, state)
    >>> round(float(u["w"]), 4)
    0.19
    """
    return Ema(decay=decay, debias=debias, accumulator_dtype=accumulator_dtype)


class BiasCorrectionState(NamedTuple):
    count: jax.Array


class BiasCorrection(Transform):
    """Divides updates by ``1 - decay**t``."""

    elementwise = True

    decay: float = 0.9

    def __post_init__(self):
        check_range(self, "decay", low=0.0, high=1.0, high_open=True)

    def init(self, params):
        del params
        return BiasCorrectionState(zero_count())

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        bc = correction(self.decay, count)
        updates = jax.tree.map(lambda u: debias(u, bc).astype(jnp.result_type(u)), updates)
        return updates, BiasCorrectionState(count)


def bias_correction(decay: float) -> BiasCorrection:
    """Corrects the zero-initialisation bias of a moving average.

    Update rule::

        u_t <- u_t / (1 - decay**t)          t = 1, 2, ...

    ``chain(ema(d, debias=False), bias_correction(d))`` equals ``ema(d)``.

    Args:
        decay: the moving average's decay, in [0, 1).

    Reference: Kingma & Ba, arXiv:1412.6980, section 3.

    >>> import gradtx
    >>> tx = gradtx.bias_correction(0.9)
    >>> round(float(tx.update({"w": 0.1}, tx.init({"w": 0.0}))[0]["w"]), 4)
    1.0
    """
    return BiasCorrection(decay=decay)


@recipe
def sgd(
    learning_rate: Any,
    momentum: Any = None,
    nesterov: bool = False,
    accumulator_dtype: Any = None,
) -> Chain:
    """Stochastic gradient descent with optional momentum, as ``optax.sgd``.

    Update rule::

        m_t = momentum_t * m_{t-1} + g_t
        p_t = p_{t-1} - lr_t * m_t           (Nesterov: g_t + momentum_t * m_t)

    ``momentum`` may be a schedule, read at the 0-based step like the learning
    rate (optax's takes a number). Defaults follow optax: no momentum.
    PyTorch's ``SGD`` is the same with dampening 0 and constant lr; its weight
    decay is coupled (see ``gradtx.compat.pytorch.sgd``). Keras multiplies by
    lr *inside* the velocity, which differs under a schedule.

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        momentum: in [0, 1], or a schedule; None (default) for none.
        nesterov: Nesterov momentum; needs a nonzero ``momentum``. Default False.
        accumulator_dtype: storage dtype of the buffer; None keeps the params'.

    Reference: Polyak (1964); Nesterov (1983); Sutskever et al. (2013).

    >>> import gradtx
    >>> tx = gradtx.sgd(0.1, momentum=0.9)
    >>> round(float(tx.update({"w": 1.0}, tx.init({"w": 0.0}))[0]["w"]), 6)
    -0.1
    """
    if nesterov and momentum is None:
        raise ValueError("sgd(nesterov=True): Nesterov momentum requires a momentum value")
    if nesterov and isinstance(momentum, (int, float)) and momentum == 0:
        raise ValueError("sgd(nesterov=True, momentum=0): Nesterov momentum requires momentum > 0")
    first = (
        identity()
        if momentum is None
        else trace(decay=momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype)
    )
    return named_recipe("sgd", first, scale_by_learning_rate(learning_rate))
