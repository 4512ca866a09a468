"""``keras.optimizers.schedules`` as gradtx schedules, with Keras's arguments and defaults.

Each function is the Keras class name in snake_case; pass the result as any
``compat.keras`` optimizer's ``learning_rate``, which evaluates it at the
iteration count before the step, as Keras does::

    keras.optimizers.schedules.CosineDecayRestarts(0.1, first_decay_steps=100)
    gradtx.compat.keras.schedules.cosine_decay_restarts(0.1, first_decay_steps=100)

Where a gradtx schedule computes the same values (exponential, inverse-time and
cosine decay) the function returns it; Keras's piecewise boundary convention,
cycling polynomial decay and restarts with ``t_mul``/``m_mul`` are classes of
their own here. ``name`` is accepted and ignored.

Differences from Keras 3.15 (checked against it in float64 for 1,200 steps,
``tests/reference/record_keras_schedules.py``):

- Keras takes ``CosineDecay``'s and ``CosineDecayRestarts``' cosine in float32
  even when ``floatx`` is float64 (its dtype lattice maps float64 to float32 on
  the JAX backend); here it is float64 under x64 (a relative 1e-8 apart).
- Arguments whose values Keras turns into NaN, negative rates or sums of
  overlapping intervals are refused: ``decay_rate`` must be > 0 (Keras's 0
  gives a rate of 0 after the first decay), ``warmup_steps >= 0``, ``t_mul > 0``,
  and ``boundaries`` must be >= 0 and increasing.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import jax.numpy as jnp

from ... import _schedules
from ..._base import check_range, fail, Schedule, static
from ..._schedules import (
    _check_boundaries,
    _floats,
    CosineDecaySchedule,
    ExponentialDecay,
    InverseTimeDecay,
    WarmupCosineDecaySchedule,
)


def _check(label: str, arg: str, value: Any, **interval: Any) -> None:
    """Keras's argument checks, worded as gradtx's, before a reused schedule is built."""
    check_range(SimpleNamespace(name=f"keras.schedules.{label}", **{arg: value}), arg, **interval)


class _KerasSchedule(Schedule):
    @property
    def name(self) -> str:
        return f"keras.schedules.{super().name}"


def exponential_decay(
    initial_learning_rate: Any,
    decay_steps: Any,
    decay_rate: Any,
    staircase: bool = False,
    name: str = "ExponentialDecay",
) -> ExponentialDecay:
    """``keras.optimizers.schedules.ExponentialDecay``.

    Formula::

        p = t / decay_steps                       (floor(p) if staircase)
        value(t) = initial_learning_rate * decay_rate ** p

    Args:
        initial_learning_rate: the value at step 0.
        decay_steps: > 0 (Keras's check).
        decay_rate: > 0 (Keras also takes 0, a rate of 0 after the first decay).
        staircase: decay at whole multiples of decay_steps only. Default False.
        name: accepted and ignored. Default "ExponentialDecay".

    Reference: Keras 3.15, ``keras.optimizers.schedules.ExponentialDecay``.

    Returns :func:`gradtx.exponential_decay`, which computes the same.

    >>> from gradtx.compat import keras
    >>> print(keras.schedules.exponential_decay(1.0, 10, 0.5)(20))
    0.25
    """
    del name
    _check("exponential_decay", "decay_steps", decay_steps, low=0, low_open=True)
    _check("exponential_decay", "decay_rate", decay_rate, low=0, low_open=True)
    return _schedules.exponential_decay(
        initial_learning_rate, decay_steps, decay_rate, staircase=staircase
    )


def inverse_time_decay(
    initial_learning_rate: Any,
    decay_steps: Any,
    decay_rate: Any,
    staircase: bool = False,
    name: str = "InverseTimeDecay",
) -> InverseTimeDecay:
    """``keras.optimizers.schedules.InverseTimeDecay``.

    Formula::

        p = t / decay_steps                       (floor(p) if staircase)
        value(t) = initial_learning_rate / (1 + decay_rate * p)

    Args:
        initial_learning_rate: the value at step 0.
        decay_steps: > 0 (Keras's check).
        decay_rate: >= 0 (Keras also takes a negative rate, which divides by 0).
        staircase: decay at whole multiples of decay_steps only. Default False.
        name: accepted and ignored. Default "InverseTimeDecay".

    Reference: Keras 3.15, ``keras.optimizers.schedules.InverseTimeDecay``.

    Returns :func:`gradtx.inverse_time_decay`, which computes the same.

    >>> from gradtx.compat import keras
    >>> print(keras.schedules.inverse_time_decay(1.0, 10, 1.0)(30))
    0.25
    """
    del name
    _check("inverse_time_decay", "decay_steps", decay_steps, low=0, low_open=True)
    _check("inverse_time_decay", "decay_rate", decay_rate, low=0)
    return _schedules.inverse_time_decay(
        initial_learning_rate, decay_steps, decay_rate, staircase=staircase
    )


class PiecewiseConstantDecay(_KerasSchedule):
    boundaries: tuple
    values: tuple

    def __post_init__(self):
        _check_boundaries(self)
        object.__setattr__(self, "values", tuple(self.values))
        if len(self.values) != len(self.boundaries) + 1:
            fail(self, "values", f"needs one value more than boundaries={list(self.boundaries)}")

    def __call__(self, count):
        t, *values = _floats(count, *self.values)
        value = values[0]
        for boundary, later in zip(_floats(*self.boundaries), values[1:]):
            # Keras casts the boundaries to the step's integer dtype: truncation.
            value = jnp.where(t > jnp.trunc(boundary), later, value)
        return value


def piecewise_constant_decay(
    boundaries: Any, values: Any, name: str = "PiecewiseConstant"
) -> PiecewiseConstantDecay:
    """``keras.optimizers.schedules.PiecewiseConstantDecay``: a value after each boundary.

    Formula, for boundaries b_1 <= ... <= b_k and values v_0, ..., v_k::

        value(t) = v_0      t <= b_1
                 = v_i      b_i < t <= b_{i+1}
                 = v_k      t > b_k

    A boundary is the last step of the value before it (optax's
    :func:`gradtx.piecewise_constant_schedule` switches at ``t >= b``), and a
    fractional boundary is truncated, as Keras casts it to the step's integer type.

    Args:
        boundaries: steps >= 0 in increasing order (leaves).
        values: one more than ``boundaries`` (Keras's check; leaves).
        name: accepted and ignored. Default "PiecewiseConstant".

    Reference: Keras 3.15, ``keras.optimizers.schedules.PiecewiseConstantDecay``.

    >>> from gradtx.compat import keras
    >>> schedule = keras.schedules.piecewise_constant_decay([10], [1.0, 0.5])
    >>> [float(schedule(t)) for t in (10, 11)]
    [1.0, 0.5]
    """
    del name
    return PiecewiseConstantDecay(boundaries=tuple(boundaries), values=tuple(values))


class PolynomialDecay(_KerasSchedule):
    initial_learning_rate: Any
    decay_steps: Any
    end_learning_rate: Any = 0.0001
    power: Any = 1.0
    cycle: bool = static(False)

    def __post_init__(self):
        check_range(self, "decay_steps", low=0, low_open=True)

    def __call__(self, count):
        init, steps, end, power, t = _floats(
            self.initial_learning_rate, self.decay_steps, self.end_learning_rate, self.power, count
        )
        if self.cycle:  # the decay stretches to the next multiple of decay_steps
            steps = steps * jnp.where(t == 0, 1.0, jnp.ceil(t / steps))
        else:
            t = jnp.minimum(t, steps)
        return (init - end) * (1 - t / steps) ** power + end


def polynomial_decay(
    initial_learning_rate: Any,
    decay_steps: Any,
    end_learning_rate: Any = 0.0001,
    power: Any = 1.0,
    cycle: bool = False,
    name: str = "PolynomialDecay",
) -> PolynomialDecay:
    """``keras.optimizers.schedules.PolynomialDecay``, with Keras's ``cycle``.

    Formula, with I, T, E, P the arguments in order::

        T_t = T * max(1, ceil(t / T)) if cycle;   else T_t = T and t <- min(t, T)
        value(t) = (I - E) * (1 - t / T_t) ** P + E

    Args:
        initial_learning_rate: I, the value at step 0.
        decay_steps: T > 0 (Keras's check).
        end_learning_rate: E. Default 0.0001.
        power: P. Default 1.0.
        cycle: static. With it the value jumps back up after each T steps and
            decays again over a stretched period, towards E at 2T, 3T, ...
            Default False.
        name: accepted and ignored. Default "PolynomialDecay".

    Reference: Keras 3.15, ``keras.optimizers.schedules.PolynomialDecay``.

    Without ``cycle`` this is :func:`gradtx.polynomial_schedule` ``(I, E, P, T)``;
    one class here keeps ``cycle`` a field like Keras's.

    >>> from gradtx.compat import keras
    >>> schedule = keras.schedules.polynomial_decay(1.0, 10, 0.0, cycle=True)
    >>> [round(float(schedule(t)), 6) for t in (5, 10, 11, 15)]
    [0.5, 0.0, 0.45, 0.25]
    """
    del name
    return PolynomialDecay(
        initial_learning_rate=initial_learning_rate,
        decay_steps=decay_steps,
        end_learning_rate=end_learning_rate,
        power=power,
        cycle=bool(cycle),
    )


def cosine_decay(
    initial_learning_rate: Any,
    decay_steps: Any,
    alpha: Any = 0.0,
    name: str = "CosineDecay",
    warmup_target: Any = None,
    warmup_steps: Any = 0,
) -> CosineDecaySchedule | WarmupCosineDecaySchedule:
    """``keras.optimizers.schedules.CosineDecay``, with its optional linear warmup.

    Formula, with I = initial_learning_rate, T = decay_steps, W = warmup_steps::

        decay(x, s) = x * ((1 - alpha) * (1 + cos(pi * min(s, T) / T)) / 2 + alpha)
        value(t) = decay(I, t)                            warmup_target None
                 = I + (warmup_target - I) * t / W        t < W
                 = decay(warmup_target, t - W)            t >= W

    Args:
        initial_learning_rate: I, the value at step 0.
        decay_steps: T > 0 (Keras's check).
        alpha: the final value as a fraction of the peak. Default 0.0.
        name: accepted and ignored. Default "CosineDecay".
        warmup_target: the peak after the warmup, or None for no warmup (Keras then
            ignores ``warmup_steps``). Default None.
        warmup_steps: W >= 0. Default 0.

    Reference: Keras 3.15, ``keras.optimizers.schedules.CosineDecay``;
    Loshchilov & Hutter, *SGDR*, arXiv:1608.03983.

    Returns :func:`gradtx.cosine_decay_schedule` ``(I, T, alpha)``, or with a
    warmup :func:`gradtx.warmup_cosine_decay_schedule` ``(I, warmup_target, W,
    W + T, end_value=alpha * warmup_target)``. Keras computes the cosine in
    float32 whatever ``floatx``; this computes it in float64 under x64.

    >>> from gradtx.compat import keras
    >>> schedule = keras.schedules.cosine_decay(0.0, 10, warmup_target=1.0, warmup_steps=4)
    >>> [round(float(schedule(t)), 6) for t in (2, 4, 9, 14)]
    [0.5, 1.0, 0.5, 0.0]
    """
    del name
    _check("cosine_decay", "decay_steps", decay_steps, low=0, low_open=True)
    if warmup_target is None:
        return _schedules.cosine_decay_schedule(initial_learning_rate, decay_steps, alpha)
    _check("cosine_decay", "warmup_steps", warmup_steps, low=0)
    return _schedules.warmup_cosine_decay_schedule(
        initial_learning_rate,
        warmup_target,
        warmup_steps,
        warmup_steps + decay_steps,
        end_value=alpha * warmup_target,
    )


class CosineDecayRestarts(_KerasSchedule):
    initial_learning_rate: Any
    first_decay_steps: Any
    t_mul: Any = 2.0
    m_mul: Any = 1.0
    alpha: Any = 0.0

    def __post_init__(self):
        check_range(self, "first_decay_steps", low=0, low_open=True)
        check_range(self, "t_mul", low=0, low_open=True)

    def __call__(self, count):
        init, steps, t_mul, m_mul, alpha, t = _floats(
            self.initial_learning_rate,
            self.first_decay_steps,
            self.t_mul,
            self.m_mul,
            self.alpha,
            count,
        )
        fraction = t / steps
        geometric = t_mul != 1
        grow = jnp.where(geometric, t_mul, 2.0)  # keeps log(t_mul) away from 0 where unused

        def start(i):  # the time before cycle i, in units of first_decay_steps (Keras's sum_r)
            return jnp.where(geometric, (1.0 - grow**i) / (1.0 - grow), i)

        # Keras's closed form for the cycle i; its logarithm may land a rounding error either
        # side of a whole number near a restart: step to the cycle that holds t. t is compared
        # with the cycle's first step, a product: jitted with constant numbers, XLA computes
        # t / steps as t * (1 / steps), which can fall an ulp below a restart's whole number.
        i = jnp.where(
            geometric,
            jnp.floor(jnp.log(1.0 - fraction * (1.0 - grow)) / jnp.log(grow)),
            jnp.floor(fraction),
        )
        i = jnp.where(t < steps * start(i), i - 1, i)
        i = jnp.where(t >= steps * start(i + 1), i + 1, i)
        fraction = (fraction - start(i)) / jnp.where(geometric, grow**i, 1.0)
        cosine = 0.5 * m_mul**i * (1.0 + jnp.cos(jnp.pi * fraction))
        return init * ((1 - alpha) * cosine + alpha)


def cosine_decay_restarts(
    initial_learning_rate: Any,
    first_decay_steps: Any,
    t_mul: Any = 2.0,
    m_mul: Any = 1.0,
    alpha: Any = 0.0,
    name: str = "SGDRDecay",
) -> CosineDecayRestarts:
    """``keras.optimizers.schedules.CosineDecayRestarts`` (SGDR).

    Formula: cycle i lasts ``T_i = first_decay_steps * t_mul**i`` steps and
    peaks at ``m_mul**i``; with x the fraction of cycle i done at step t::

        value(t) = I * ((1 - alpha) * m_mul**i * (1 + cos(pi * x)) / 2 + alpha)

    Keras finds i in closed form, ``floor(log(1 + (t / T_0) (t_mul - 1)) / log(t_mul))``;
    where that logarithm rounds down at a restart (jitted, T_0 = 1, t_mul = 2 at
    step 7) Keras gives the end of the previous cycle (x = 1, the value
    ``I * alpha``) for that one step, and where it rounds up a rounding error before
    a restart (T_0 one ulp above 1, t_mul = 2 at step 3) the next peak; which steps
    depends on how XLA evaluates the logarithm. Here i is the cycle that holds t,
    t compared with each cycle's first step ``T_0 * (1 + t_mul + ... + t_mul**(i-1))``
    computed as a product, so every cycle starts at its peak, eagerly and jitted;
    everywhere else the values are Keras's.

    Args:
        initial_learning_rate: I, the first peak.
        first_decay_steps: T_0 > 0 (Keras's check); need not be whole.
        t_mul: > 0. Below 1 the cycles shrink and their total is finite:
            past it the value is NaN, as in Keras. Default 2.0.
        m_mul: the factor on each cycle's peak (``alpha`` is not scaled). Default 1.0.
        alpha: the minimum as a fraction of I. Default 0.0.
        name: accepted and ignored. Default "SGDRDecay".

    Keras computes the cosine in float32 whatever ``floatx``; this in float64 under x64.

    Reference: Keras 3.15, ``keras.optimizers.schedules.CosineDecayRestarts``;
    Loshchilov & Hutter, *SGDR*, arXiv:1608.03983.

    >>> from gradtx.compat import keras
    >>> schedule = keras.schedules.cosine_decay_restarts(1.0, 2, m_mul=0.5)
    >>> [round(float(schedule(t)), 6) for t in (0, 1, 2, 4, 6)]
    [1.0, 0.5, 0.5, 0.25, 0.25]
    """
    del name
    return CosineDecayRestarts(
        initial_learning_rate=initial_learning_rate,
        first_decay_steps=first_decay_steps,
        t_mul=t_mul,
        m_mul=m_mul,
        alpha=alpha,
    )
