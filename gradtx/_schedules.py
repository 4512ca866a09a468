"""Schedules: functions of the step count whose parameters are pytree leaves.

Every schedule is a :class:`~gradtx.Schedule`. Its numbers (values, step
counts, boundaries, scales) are leaves, so a jitted step that takes it as an
argument does not retrace when they change, and they can be vmapped over; modes
(``staircase``, ``interpolate_type``) are static. Values are computed in
float32 (float64 under ``jax_enable_x64``) from an integer count 0, 1, 2, ...

The optax names compute what optax 0.2.8 computes. Where they differ (invalid
arguments rejected when built, a few degenerate cases), the factory says so.
"""

from __future__ import annotations

from collections.abc import Callable
import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._base import _concrete_numbers, check_choice, check_range, fail, Schedule, static
from ._scale import value_at
from ._tree import decay_power, default_float

INTERPOLATE_TYPES = ("linear", "cosine")


# -- the maths, for arrays -----------------------------------------------------


def _floats(*values: Any) -> tuple[jax.Array, ...]:
    """Parameters and the count as float32 arrays (float64 under x64)."""
    return tuple(jnp.asarray(v, default_float()) for v in values)


def _polynomial(init, end, power, steps, begin, t):
    """init until begin, a polynomial ramp to end over steps, then end; steps <= 0 holds init."""
    positive = steps > 0
    safe_steps = jnp.where(positive, steps, 1)
    frac = 1 - jnp.clip(t - begin, 0, safe_steps) / safe_steps
    return jnp.where(positive, (init - end) * frac**power + end, init)


def _cosine(init, steps, alpha, exponent, t):
    """A half cosine from init to alpha * init over steps, then alpha * init."""
    decay = 0.5 * (1 + jnp.cos(jnp.pi * jnp.minimum(t, steps) / steps))
    return init * ((1 - alpha) * decay**exponent + alpha)


def _exponential(init, steps, rate, begin, end, staircase, t):
    """optax's exponential decay; steps <= 0 or rate == 0 holds init."""
    elapsed = t - begin
    p = elapsed / jnp.where(steps > 0, steps, 1)
    if staircase:
        p = jnp.floor(p)
    value = jnp.where(elapsed <= 0, init, init * decay_power(rate, p))
    if end is not None:  # a bound below when decaying, above when growing
        value = jnp.where(rate < 1, jnp.maximum(value, end), jnp.minimum(value, end))
    return jnp.where((steps > 0) & (rate != 0), value, init)


def _warmup(init, peak, warmup_steps, t, after):
    """Linear from init to peak for warmup_steps steps, then ``after``."""
    return jnp.where(t < warmup_steps, _polynomial(init, peak, 1, warmup_steps, 0, t), after)


def _interpolate(kind, t, bounds, values):
    """From values[i] at bounds[i] to values[i+1] at bounds[i+1], linearly or along a cosine."""
    bounds, values = jnp.stack(bounds), jnp.stack(values)
    start, stop, a, b = bounds[:-1], bounds[1:], values[:-1], values[1:]
    pct = (t - start) / jnp.maximum(stop - start, 1)
    if kind == "linear":
        between = (b - a) * pct + a
    else:
        between = b + (a - b) / 2 * (jnp.cos(jnp.pi * pct) + 1)
    inside = (start <= t) & (t < stop)
    last = jnp.where(bounds[-1] <= t, values[-1], 0)
    return jnp.sum(jnp.where(inside, between, 0)) + last


def _join(schedules, boundaries, count):
    """schedules[i](count - boundaries[i-1]) between boundaries[i-1] and boundaries[i]."""
    value = schedules[0](count)
    for boundary, schedule in zip(boundaries, schedules[1:]):
        value = jnp.where(count < boundary, value, schedule(count - boundary))
    return jnp.asarray(value, default_float())


# -- validation of sequences ---------------------------------------------------


def _numbers(values: tuple) -> np.ndarray | None:
    """A tuple of numbers as an array, or None when some cannot be checked now."""
    parts = [_concrete_numbers(v) for v in values]
    return None if any(p is None for p in parts) else np.array(parts, dtype=float)


def _check_boundaries(obj: Schedule) -> None:
    object.__setattr__(obj, "boundaries", tuple(obj.boundaries))
    bounds = _numbers(obj.boundaries)
    if bounds is not None and (np.any(bounds < 0) or np.any(np.diff(bounds) < 0)):
        fail(obj, "boundaries", "boundaries must be >= 0 and in increasing order")


def _check_scales(obj: Schedule) -> None:
    _check_boundaries(obj)
    object.__setattr__(obj, "scales", tuple(obj.scales))
    if len(obj.scales) != len(obj.boundaries):
        fail(obj, "scales", f"needs one scale per boundary, got {len(obj.boundaries)} boundaries")
    scales = _numbers(obj.scales)
    if scales is not None and np.any(scales < 0):
        fail(obj, "scales", "every scale (a value of boundaries_and_scales) must be >= 0")


def _check_whole(obj: Schedule, arg: str) -> None:
    numbers = _concrete_numbers(getattr(obj, arg))
    if numbers is not None and np.any(numbers != np.round(numbers)):
        fail(obj, arg, f"{arg} must be a whole number")


def _split(boundaries_and_scales: dict | None) -> tuple[tuple, tuple]:
    """optax's ``{step: scale}`` as sorted boundaries and their scales."""
    if not boundaries_and_scales:
        return (), ()
    boundaries, scales = zip(*sorted(boundaries_and_scales.items()))
    return boundaries, scales


# -- constant, polynomial, piecewise -------------------------------------------


class ConstantSchedule(Schedule):
    value: Any

    def __call__(self, count):
        del count
        return jnp.asarray(self.value, default_float())


def constant_schedule(value: Any) -> ConstantSchedule:
    """The same value at every step, as ``optax.constant_schedule``.

    Formula::

        value(t) = value

    Unlike optax, the value is returned as a float32 (float64 under x64) array.

    Args:
        value: the value, any number (not checked: it may be negative).

    >>> import gradtx
    >>> print(gradtx.constant_schedule(0.5)(100))
    0.5
    """
    return ConstantSchedule(value=value)


class PolynomialSchedule(Schedule):
    init_value: Any
    end_value: Any
    power: Any
    transition_steps: Any
    transition_begin: Any = 0

    def __post_init__(self):
        check_range(self, "transition_steps", low=0)
        check_range(self, "transition_begin", low=0)

    def __call__(self, count):
        args = (self.init_value, self.end_value, self.power)
        args += (self.transition_steps, self.transition_begin, count)
        return _polynomial(*_floats(*args))


def polynomial_schedule(
    init_value: Any, end_value: Any, power: Any, transition_steps: Any, transition_begin: Any = 0
) -> PolynomialSchedule:
    """A polynomial ramp from ``init_value`` to ``end_value``, as ``optax.polynomial_schedule``.

    Formula, with I, E, P, T, B the arguments in order::

        value(t) = I                                   t < B
                 = (I - E) * (1 - (t - B) / T)**P + E  B <= t < B + T
                 = E                                   t >= B + T

    Args:
        init_value: I, the value up to step B.
        end_value: E, the value from step B + T on.
        power: P, the polynomial's degree (any real number; 1 is linear).
        transition_steps: T >= 0; 0 holds ``init_value`` for ever (as optax).
        transition_begin: B >= 0 (optax silently treats a negative B as 0).

    Keras: ``PolynomialDecay(I, T, E, P)``. PyTorch: ``PolynomialLR(opt, T, P)``
    is ``polynomial_schedule(lr, 0.0, P, T)``.

    >>> import gradtx
    >>> print(gradtx.polynomial_schedule(1.0, 0.0, power=2, transition_steps=10)(5))
    0.25
    """
    return PolynomialSchedule(
        init_value=init_value,
        end_value=end_value,
        power=power,
        transition_steps=transition_steps,
        transition_begin=transition_begin,
    )


class LinearSchedule(Schedule):
    init_value: Any
    end_value: Any
    transition_steps: Any
    transition_begin: Any = 0

    def __post_init__(self):
        check_range(self, "transition_steps", low=0)
        check_range(self, "transition_begin", low=0)

    def __call__(self, count):
        args = (self.init_value, self.end_value, 1, self.transition_steps)
        return _polynomial(*_floats(*args, self.transition_begin, count))


def linear_schedule(
    init_value: Any, end_value: Any, transition_steps: Any, transition_begin: Any = 0
) -> LinearSchedule:
    """A linear ramp from ``init_value`` to ``end_value``, as ``optax.linear_schedule``.

    Formula: :func:`polynomial_schedule` with power 1::

        value(t) = I + clip((t - B) / T, 0, 1) * (E - I)

    Args:
        init_value: the value up to step B.
        end_value: the value from step B + T on.
        transition_steps: T >= 0; 0 holds ``init_value`` for ever (as optax).
        transition_begin: B >= 0.

    PyTorch: ``LinearLR(opt, start_factor, end_factor, total_iters)`` is
    ``linear_schedule(lr * start_factor, lr * end_factor, total_iters)``.

    >>> import gradtx
    >>> print(gradtx.linear_schedule(1.0, 0.0, transition_steps=4)(1))
    0.75
    """
    return LinearSchedule(
        init_value=init_value,
        end_value=end_value,
        transition_steps=transition_steps,
        transition_begin=transition_begin,
    )


class PiecewiseConstantSchedule(Schedule):
    init_value: Any
    boundaries: tuple = ()
    scales: tuple = ()

    def __post_init__(self):
        _check_scales(self)

    def __call__(self, count):
        t, value = _floats(count, self.init_value)
        for boundary, scale in zip(_floats(*self.boundaries), _floats(*self.scales)):
            value = jnp.where(t >= boundary, value * scale, value)
        return value


def piecewise_constant_schedule(
    init_value: Any, boundaries_and_scales: dict | None = None
) -> PiecewiseConstantSchedule:
    """A value multiplied by ``scale`` from each boundary on, as optax's.

    Formula, for ``boundaries_and_scales = {b_1: s_1, b_2: s_2, ...}``::

        value(t) = init_value * prod(s_i for b_i <= t)

    Args:
        init_value: the value before the first boundary.
        boundaries_and_scales: steps ``b_i >= 0`` and scales ``s_i >= 0``. They
            are kept as ``boundaries`` and ``scales`` tuples (leaves).

    PyTorch: ``MultiStepLR(opt, milestones, gamma)`` is
    ``piecewise_constant_schedule(lr, {m: gamma for m in milestones})``. Keras's
    ``PiecewiseConstantDecay`` takes the values themselves and switches one step
    later (at ``t > b_i``).

    >>> import gradtx
    >>> schedule = gradtx.piecewise_constant_schedule(1.0, {10: 0.5, 20: 0.5})
    >>> [round(float(schedule(t)), 6) for t in (9, 10, 25)]
    [1.0, 0.5, 0.25]
    """
    boundaries, scales = _split(boundaries_and_scales)
    return PiecewiseConstantSchedule(init_value=init_value, boundaries=boundaries, scales=scales)


# -- exponential, step and inverse-time decay ----------------------------------


class ExponentialDecay(Schedule):
    init_value: Any
    transition_steps: Any
    decay_rate: Any
    transition_begin: Any = 0
    staircase: bool = static(False)
    end_value: Any = None

    def __post_init__(self):
        check_range(self, "transition_steps", low=0)
        check_range(self, "decay_rate", low=0)
        check_range(self, "transition_begin", low=0)

    def __call__(self, count):
        init, steps, rate, begin, t = _floats(
            self.init_value, self.transition_steps, self.decay_rate, self.transition_begin, count
        )
        end = None if self.end_value is None else _floats(self.end_value)[0]
        return _exponential(init, steps, rate, begin, end, self.staircase, t)


def exponential_decay(
    init_value: Any,
    transition_steps: Any,
    decay_rate: Any,
    transition_begin: Any = 0,
    staircase: bool = False,
    end_value: Any = None,
) -> ExponentialDecay:
    """Exponential decay from ``init_value``, as ``optax.exponential_decay``.

    Formula::

        p = (t - transition_begin) / transition_steps     (floor(p) if staircase)
        value(t) = init_value * decay_rate**p             init_value while p <= 0

    then clipped from below by ``end_value`` when ``decay_rate < 1``, from above
    otherwise (optax clips the value before ``transition_begin`` too).

    Args:
        transition_steps: >= 0; 0 holds ``init_value`` for ever (as optax).
        decay_rate: >= 0; 0 holds ``init_value`` for ever (as optax).
        transition_begin: >= 0 (optax silently treats a negative value as 0).
        staircase: static; decay at whole multiples of ``transition_steps``.
        end_value: a bound, or None.

    Keras: ``ExponentialDecay(init_value, transition_steps, decay_rate, staircase)``.
    PyTorch: ``ExponentialLR(opt, gamma)`` is ``exponential_decay(lr, 1, gamma)``.

    >>> import gradtx
    >>> print(gradtx.exponential_decay(1.0, transition_steps=10, decay_rate=0.5)(20))
    0.25
    """
    return ExponentialDecay(
        init_value=init_value,
        transition_steps=transition_steps,
        decay_rate=decay_rate,
        transition_begin=transition_begin,
        staircase=staircase,
        end_value=end_value,
    )


class StepDecaySchedule(Schedule):
    init_value: Any
    step_size: Any
    gamma: Any = 0.1

    def __post_init__(self):
        check_range(self, "step_size", low=0, low_open=True)
        check_range(self, "gamma", low=0)

    def __call__(self, count):
        init, step_size, t = _floats(self.init_value, self.step_size, count)
        return init * decay_power(self.gamma, jnp.floor(t / step_size))


def step_decay_schedule(init_value: Any, step_size: Any, gamma: Any = 0.1) -> StepDecaySchedule:
    """The value multiplied by ``gamma`` every ``step_size`` steps (PyTorch's ``StepLR``).

    Formula::

        value(t) = init_value * gamma ** floor(t / step_size)

    Args:
        init_value: the value up to the first decay.
        step_size: > 0 steps between decays.
        gamma: >= 0, the factor applied at each decay (PyTorch's default, 0.1).

    PyTorch: ``StepLR(opt, step_size, gamma)``. Keras:
    ``ExponentialDecay(init_value, step_size, gamma, staircase=True)``. The same
    values as ``exponential_decay(init_value, step_size, gamma, staircase=True)``.

    >>> import gradtx
    >>> schedule = gradtx.step_decay_schedule(1.0, step_size=30, gamma=0.5)
    >>> [round(float(schedule(t)), 6) for t in (29, 30, 60)]
    [1.0, 0.5, 0.25]
    """
    return StepDecaySchedule(init_value=init_value, step_size=step_size, gamma=gamma)


class InverseTimeDecay(Schedule):
    init_value: Any
    decay_steps: Any
    decay_rate: Any
    staircase: bool = static(False)
    power: Any = 1.0

    def __post_init__(self):
        check_range(self, "decay_steps", low=0, low_open=True)
        check_range(self, "decay_rate", low=0)

    def __call__(self, count):
        init, steps, rate, power, t = _floats(
            self.init_value, self.decay_steps, self.decay_rate, self.power, count
        )
        p = jnp.floor(t / steps) if self.staircase else t / steps
        return init / (1 + rate * p) ** power


def inverse_time_decay(
    init_value: Any, decay_steps: Any, decay_rate: Any, staircase: bool = False, power: Any = 1.0
) -> InverseTimeDecay:
    """Decay as one over a linear function of the step (Keras's ``InverseTimeDecay``).

    Formula::

        p = t / decay_steps                              (floor(p) if staircase)
        value(t) = init_value / (1 + decay_rate * p) ** power

    Args:
        init_value: the value at step 0.
        decay_steps: > 0.
        decay_rate: >= 0.
        staircase: static; decay at whole multiples of ``decay_steps``.
        power: 1 for Keras; PyTorch's ASGD uses ``alpha`` (0.75).

    Keras: ``InverseTimeDecay(init_value, decay_steps, decay_rate, staircase)``.
    PyTorch: Adagrad's ``lr_decay`` is ``inverse_time_decay(lr, 1, lr_decay)``;
    ASGD's step size is ``inverse_time_decay(lr, 1, lambd * lr, power=alpha)``.
    optax has none.

    >>> import gradtx
    >>> schedule = gradtx.inverse_time_decay(1.0, decay_steps=10, decay_rate=1.0)
    >>> [round(float(schedule(t)), 6) for t in (0, 10, 30)]
    [1.0, 0.5, 0.25]
    """
    return InverseTimeDecay(
        init_value=init_value,
        decay_steps=decay_steps,
        decay_rate=decay_rate,
        staircase=staircase,
        power=power,
    )


class AsgdStepSize(Schedule):
    learning_rate: Any
    lambd: Any = 1e-4
    alpha: Any = 0.75

    def __post_init__(self):
        check_range(self, "learning_rate", low=0)
        check_range(self, "lambd", low=0)
        check_range(self, "alpha", low=0)

    def __call__(self, count):
        count = jnp.asarray(count)
        first = value_at(self.learning_rate, 0)
        # PyTorch recomputes eta at the end of a step from that step's rate.
        lr = value_at(self.learning_rate, jnp.maximum(count - 1, 0))
        later = inverse_time_decay(lr, 1, self.lambd * lr, power=self.alpha)(count)
        return jnp.where(count == 0, first, later)


def asgd_step_size(learning_rate: Any, lambd: Any = 1e-4, alpha: Any = 0.75) -> AsgdStepSize:
    """The decaying step size of averaged SGD, as PyTorch's ``ASGD`` computes it.

    Formula, with ``lr(t)`` the learning rate (a number or a schedule)::

        eta(0) = lr(0)
        eta(t) = lr(t-1) / (1 + lambd * lr(t-1) * t) ** alpha        t >= 1

    The rate of the previous step enters because PyTorch updates eta at the end
    of each step, before an LR scheduler changes the rate. With a constant rate
    this is ``inverse_time_decay(lr, 1, lambd * lr, power=alpha)``.

    Args:
        learning_rate: the base rate lr, >= 0; a number or a schedule.
        lambd: the decay term, >= 0 (PyTorch's ``lambd``). Default 1e-4.
        alpha: the power of the decay, >= 0 (PyTorch's ``alpha``). Default 0.75.

    Reference: ``torch.optim.ASGD``; Polyak & Juditsky, *Acceleration of
    Stochastic Approximation by Averaging*, 1992; Bach & Moulines, NeurIPS 2011.

    >>> import gradtx
    >>> eta = gradtx.asgd_step_size(0.1, lambd=1.0, alpha=1.0)
    >>> [round(float(eta(t)), 4) for t in (0, 1, 10)]
    [0.1, 0.0909, 0.05]
    """
    return AsgdStepSize(learning_rate=learning_rate, lambd=lambd, alpha=alpha)


# -- cosine --------------------------------------------------------------------


class CosineDecaySchedule(Schedule):
    init_value: Any
    decay_steps: Any
    alpha: Any = 0.0
    exponent: Any = 1.0

    def __post_init__(self):
        check_range(self, "decay_steps", low=0, low_open=True)

    def __call__(self, count):
        args = (self.init_value, self.decay_steps, self.alpha, self.exponent, count)
        return _cosine(*_floats(*args))


def cosine_decay_schedule(
    init_value: Any, decay_steps: Any, alpha: Any = 0.0, exponent: Any = 1.0
) -> CosineDecaySchedule:
    """A half cosine from ``init_value`` down to ``alpha * init_value``, as optax's.

    Formula, with T = decay_steps::

        c(t) = (1 + cos(pi * min(t, T) / T)) / 2
        value(t) = init_value * ((1 - alpha) * c(t)**exponent + alpha)

    Args:
        decay_steps: T > 0.
        alpha: the final value as a fraction of ``init_value``.
        exponent: sharpens (> 1) or flattens (< 1) the curve.

    Keras: ``CosineDecay(init_value, decay_steps, alpha)``. PyTorch:
    ``CosineAnnealingLR(opt, T_max=T, eta_min=alpha * lr)`` until T, after which
    PyTorch's value rises again and this one stays at ``alpha * init_value``.

    Reference: Loshchilov & Hutter, *SGDR: Stochastic Gradient Descent with Warm
    Restarts*, arXiv:1608.03983.

    >>> import gradtx
    >>> print(gradtx.cosine_decay_schedule(1.0, decay_steps=10, alpha=0.1)(10))
    0.1
    """
    return CosineDecaySchedule(
        init_value=init_value, decay_steps=decay_steps, alpha=alpha, exponent=exponent
    )


class CosineWarmRestartsSchedule(Schedule):
    init_value: Any
    period: Any
    period_mult: Any = 1
    min_value: Any = 0.0

    def __post_init__(self):
        check_range(self, "period", low=0, low_open=True)
        check_range(self, "period_mult", low=1)
        _check_whole(self, "period")
        _check_whole(self, "period_mult")

    def __call__(self, count):
        init, period, mult, low, t = _floats(
            self.init_value, self.period, self.period_mult, self.min_value, count
        )
        grows = mult != 1
        m = jnp.where(grows, mult, 2)  # keeps log(m) and m - 1 away from 0 where unused

        def start(n):  # the step cycle n starts at: a whole number, so rounding is exact
            return jnp.round(jnp.where(grows, period * (m**n - 1) / (m - 1), period * n))

        n = jnp.floor(jnp.where(grows, jnp.log1p(t * (m - 1) / period) / jnp.log(m), t / period))
        # The logarithm may land a rounding error away from a whole number at a restart.
        n = jnp.where(t < start(n), n - 1, n)
        n = jnp.where(t >= start(n + 1), n + 1, n)
        progress = (t - start(n)) / jnp.round(period * mult**n)
        return low + (init - low) * (1 + jnp.cos(jnp.pi * progress)) / 2


def cosine_warm_restarts_schedule(
    init_value: Any, period: Any, period_mult: Any = 1, min_value: Any = 0.0
) -> CosineWarmRestartsSchedule:
    """Cosine decay restarted at ever longer periods (PyTorch's ``CosineAnnealingWarmRestarts``).

    Formula: cycle n lasts ``T_n = period * period_mult**n`` steps and starts at
    ``S_n = T_0 + ... + T_{n-1}``; for S_n <= t < S_{n+1}::

        value(t) = min_value + (init_value - min_value) * (1 + cos(pi * (t - S_n) / T_n)) / 2

    Args:
        init_value: the value at the start of every cycle.
        period: T_0, a whole number > 0 of steps in the first cycle.
        period_mult: a whole number >= 1; each cycle is this many times longer.
        min_value: the value each cycle decays towards.

    PyTorch: ``CosineAnnealingWarmRestarts(opt, T_0=period, T_mult=period_mult,
    eta_min=min_value)`` stepped once per step (its closed form for an explicit
    ``step(epoch)`` misplaces some restarts by a step: T_0=1, T_mult=3 at 121). Keras:
    ``CosineDecayRestarts(init_value, period, t_mul=period_mult, m_mul=1.0,
    alpha=min_value / init_value)``. optax: :func:`sgdr_schedule` with the cycles
    listed one by one.

    Reference: Loshchilov & Hutter, arXiv:1608.03983.

    >>> import gradtx
    >>> schedule = gradtx.cosine_warm_restarts_schedule(1.0, period=2, period_mult=2)
    >>> [round(float(schedule(t)), 6) for t in (0, 1, 2, 4, 6)]
    [1.0, 0.5, 1.0, 0.5, 1.0]
    """
    return CosineWarmRestartsSchedule(
        init_value=init_value, period=period, period_mult=period_mult, min_value=min_value
    )


# -- warmup then decay ---------------------------------------------------------


class WarmupConstantSchedule(Schedule):
    init_value: Any
    peak_value: Any
    warmup_steps: Any

    def __post_init__(self):
        check_range(self, "warmup_steps", low=0)

    def __call__(self, count):
        init, peak, warmup, t = _floats(self.init_value, self.peak_value, self.warmup_steps, count)
        return _warmup(init, peak, warmup, t, peak)


def warmup_constant_schedule(
    init_value: Any, peak_value: Any, warmup_steps: Any
) -> WarmupConstantSchedule:
    """A linear warmup to ``peak_value``, then constant, as ``optax.warmup_constant_schedule``.

    Formula::

        value(t) = init_value + (peak_value - init_value) * t / warmup_steps   t < warmup_steps
                 = peak_value                                                  otherwise

    Args:
        warmup_steps: >= 0. With 0 the value is ``peak_value`` from the start
            (optax holds ``init_value`` for ever instead).

    PyTorch: ``LinearLR(opt, init_value / lr, 1.0, warmup_steps)``.
    Hugging Face: ``get_constant_schedule_with_warmup`` with ``init_value=0``.

    >>> import gradtx
    >>> print(gradtx.warmup_constant_schedule(0.0, 1.0, warmup_steps=4)(1))
    0.25
    """
    return WarmupConstantSchedule(
        init_value=init_value, peak_value=peak_value, warmup_steps=warmup_steps
    )


class WarmupCosineDecaySchedule(Schedule):
    init_value: Any
    peak_value: Any
    warmup_steps: Any
    decay_steps: Any
    end_value: Any = 0.0
    exponent: Any = 1.0

    def __post_init__(self):
        check_range(self, "warmup_steps", low=0)
        steps = _numbers((self.warmup_steps, self.decay_steps))
        if steps is not None and np.any(steps[1] <= steps[0]):
            fail(self, "decay_steps", f"decay_steps must be > warmup_steps={self.warmup_steps!r}")

    def __call__(self, count):
        init, peak, warmup, total, end, exponent, t = _floats(
            self.init_value,
            self.peak_value,
            self.warmup_steps,
            self.decay_steps,
            self.end_value,
            self.exponent,
            count,
        )
        alpha = jnp.where(peak == 0, 0, end / jnp.where(peak == 0, 1, peak))
        decay = _cosine(peak, total - warmup, alpha, exponent, t - warmup)
        return _warmup(init, peak, warmup, t, decay)


def warmup_cosine_decay_schedule(
    init_value: Any,
    peak_value: Any,
    warmup_steps: Any,
    decay_steps: Any,
    end_value: Any = 0.0,
    exponent: Any = 1.0,
) -> WarmupCosineDecaySchedule:
    """A linear warmup to ``peak_value``, then cosine decay to ``end_value``, as optax's.

    Formula, with W = warmup_steps and T = decay_steps (the warmup included)::

        value(t) = init_value + (peak_value - init_value) * t / W     t < W
                 = cosine_decay_schedule(peak_value, T - W,
                       alpha=end_value / peak_value, exponent)(t - W)  t >= W

    Args:
        init_value: the value at step 0, where the warmup starts.
        peak_value: the value at the end of the warmup, where the cosine decay starts.
        warmup_steps: W >= 0.
        decay_steps: T > W, the length of the whole schedule.
        end_value: the value the decay ends at, from step T on. Default 0.
        exponent: the power the cosine factor is raised to. Default 1.

    Keras: ``CosineDecay(init_value, T - W, alpha=end_value / peak_value,
    warmup_target=peak_value, warmup_steps=W)``. Hugging Face:
    ``get_cosine_schedule_with_warmup(opt, W, T)`` with ``init_value=0,
    end_value=0``.

    >>> import gradtx
    >>> schedule = gradtx.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=10, decay_steps=30)
    >>> [round(float(schedule(t)), 6) for t in (5, 10, 20)]
    [0.5, 1.0, 0.5]
    """
    return WarmupCosineDecaySchedule(
        init_value=init_value,
        peak_value=peak_value,
        warmup_steps=warmup_steps,
        decay_steps=decay_steps,
        end_value=end_value,
        exponent=exponent,
    )


class WarmupExponentialDecaySchedule(Schedule):
    init_value: Any
    peak_value: Any
    warmup_steps: Any
    transition_steps: Any
    decay_rate: Any
    transition_begin: Any = 0
    staircase: bool = static(False)
    end_value: Any = None

    def __post_init__(self):
        check_range(self, "warmup_steps", low=0)
        check_range(self, "transition_steps", low=0)
        check_range(self, "decay_rate", low=0)
        check_range(self, "transition_begin", low=0)

    def __call__(self, count):
        init, peak, warmup, steps, rate, begin, t = _floats(
            self.init_value,
            self.peak_value,
            self.warmup_steps,
            self.transition_steps,
            self.decay_rate,
            self.transition_begin,
            count,
        )
        end = None if self.end_value is None else _floats(self.end_value)[0]
        decay = _exponential(peak, steps, rate, begin, end, self.staircase, t - warmup)
        return _warmup(init, peak, warmup, t, decay)


def warmup_exponential_decay_schedule(
    init_value: Any,
    peak_value: Any,
    warmup_steps: Any,
    transition_steps: Any,
    decay_rate: Any,
    transition_begin: Any = 0,
    staircase: bool = False,
    end_value: Any = None,
) -> WarmupExponentialDecaySchedule:
    """A linear warmup to ``peak_value``, then exponential decay, as optax's.

    Formula, with W = warmup_steps::

        value(t) = init_value + (peak_value - init_value) * t / W    t < W
                 = exponential_decay(peak_value, transition_steps, decay_rate,
                       transition_begin, staircase, end_value)(t - W)  t >= W

    Args:
        init_value: the value at step 0, where the warmup starts.
        peak_value: the value at the end of the warmup, where the decay starts.
        warmup_steps: W >= 0.
        transition_steps, decay_rate, transition_begin, staircase, end_value: as
            :func:`exponential_decay`, counted from step W.

    PyTorch: ``SequentialLR(opt, [LinearLR(...), ExponentialLR(...)], [W])``.

    >>> import gradtx
    >>> schedule = gradtx.warmup_exponential_decay_schedule(0.0, 1.0, 10, 10, 0.5)
    >>> [round(float(schedule(t)), 6) for t in (5, 10, 30)]
    [0.5, 1.0, 0.25]
    """
    return WarmupExponentialDecaySchedule(
        init_value=init_value,
        peak_value=peak_value,
        warmup_steps=warmup_steps,
        transition_steps=transition_steps,
        decay_rate=decay_rate,
        transition_begin=transition_begin,
        staircase=staircase,
        end_value=end_value,
    )


# -- piecewise interpolation, one-cycle ----------------------------------------


class PiecewiseInterpolateSchedule(Schedule):
    interpolate_type: str = static()
    init_value: Any
    boundaries: tuple = ()
    scales: tuple = ()

    def __post_init__(self):
        check_choice(self, "interpolate_type", INTERPOLATE_TYPES)
        _check_scales(self)

    def __call__(self, count):
        t, init, *bounds = _floats(count, self.init_value, 0, *self.boundaries)
        values = jnp.cumprod(jnp.stack(_floats(init, *self.scales)))
        return _interpolate(self.interpolate_type, t, bounds, list(values))


def piecewise_interpolate_schedule(
    interpolate_type: str, init_value: Any, boundaries_and_scales: dict | None = None
) -> PiecewiseInterpolateSchedule:
    """Linear or cosine interpolation between scaled values at boundaries, as optax's.

    Formula, for ``{b_1: s_1, ..., b_k: s_k}`` and b_0 = 0::

        v_0 = init_value,  v_i = v_{i-1} * s_i
        value(t) = interpolate(v_i, v_{i+1}, (t - b_i) / (b_{i+1} - b_i))  b_i <= t < b_{i+1}
                 = v_k                                                      t >= b_k

    with ``interpolate(a, b, p)`` = ``a + (b - a) * p`` (linear) or
    ``b + (a - b) * (1 + cos(pi * p)) / 2`` (cosine).

    Args:
        interpolate_type: static, ``"linear"`` or ``"cosine"``.
        init_value: the value at step 0.
        boundaries_and_scales: steps ``b_i >= 0`` and scales ``s_i >= 0``.

    >>> import gradtx
    >>> schedule = gradtx.piecewise_interpolate_schedule("linear", 1.0, {4: 0.5})
    >>> [round(float(schedule(t)), 6) for t in (2, 4)]
    [0.75, 0.5]
    """
    boundaries, scales = _split(boundaries_and_scales)
    return PiecewiseInterpolateSchedule(
        interpolate_type=interpolate_type,
        init_value=init_value,
        boundaries=boundaries,
        scales=scales,
    )


class CosineOnecycleSchedule(Schedule):
    transition_steps: Any
    peak_value: Any
    pct_start: Any = 0.3
    div_factor: Any = 25.0
    final_div_factor: Any = 1e4

    def __post_init__(self):
        check_range(self, "transition_steps", low=0, low_open=True)
        check_range(self, "pct_start", low=0, high=1)
        check_range(self, "div_factor", low=0, low_open=True)
        check_range(self, "final_div_factor", low=0, low_open=True)

    def __call__(self, count):
        t, steps, peak, pct, div, final_div = _floats(
            count,
            self.transition_steps,
            self.peak_value,
            self.pct_start,
            self.div_factor,
            self.final_div_factor,
        )
        bounds = [jnp.zeros_like(steps), jnp.floor(pct * steps), steps]
        values = jnp.cumprod(jnp.stack([peak / div, div, 1 / (div * final_div)]))
        return _interpolate("cosine", t, bounds, list(values))


def cosine_onecycle_schedule(
    transition_steps: Any,
    peak_value: Any,
    pct_start: Any = 0.3,
    div_factor: Any = 25.0,
    final_div_factor: Any = 1e4,
) -> CosineOnecycleSchedule:
    """The one-cycle policy along cosines, as ``optax.cosine_onecycle_schedule``.

    Formula: :func:`piecewise_interpolate_schedule` ``("cosine")`` through::

        step   0                  floor(pct_start * T)   T = transition_steps
        value  peak / div_factor  peak_value             peak / (div_factor * final_div_factor)

    Args:
        transition_steps: T > 0.
        peak_value: the maximum, reached at step ``pct_start * T``; the schedule starts at
            ``peak_value / div_factor`` and ends at that over ``final_div_factor``.
        pct_start: in [0, 1]. The boundary is computed in float32 (float64 under
            x64), so it can be one step later than optax's float64 ``int()``.
        div_factor, final_div_factor: > 0.

    PyTorch: ``OneCycleLR(opt, peak_value, total_steps=T, pct_start, div_factor,
    final_div_factor)``, whose phases end one step earlier.

    Reference: Smith & Topin, *Super-Convergence*, arXiv:1708.07120.

    >>> import gradtx
    >>> schedule = gradtx.cosine_onecycle_schedule(100, peak_value=1.0)
    >>> [round(float(schedule(t)), 6) for t in (0, 30, 100)]
    [0.04, 1.0, 4e-06]
    """
    return CosineOnecycleSchedule(
        transition_steps=transition_steps,
        peak_value=peak_value,
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
    )


class LinearOnecycleSchedule(Schedule):
    transition_steps: Any
    peak_value: Any
    pct_start: Any = 0.3
    pct_final: Any = 0.85
    div_factor: Any = 25.0
    final_div_factor: Any = 1e4

    def __post_init__(self):
        check_range(self, "transition_steps", low=0, low_open=True)
        check_range(self, "pct_start", low=0, high=1)
        check_range(self, "pct_final", low=0, high=1)
        pcts = _numbers((self.pct_start, self.pct_final))
        if pcts is not None and pcts[1] < pcts[0]:
            fail(self, "pct_final", f"pct_final must be >= pct_start={self.pct_start!r}")
        check_range(self, "div_factor", low=0, low_open=True)
        check_range(self, "final_div_factor", low=0, low_open=True)

    def __call__(self, count):
        t, steps, peak, start, final, div, final_div = _floats(
            count,
            self.transition_steps,
            self.peak_value,
            self.pct_start,
            self.pct_final,
            self.div_factor,
            self.final_div_factor,
        )
        bounds = [jnp.zeros_like(steps), jnp.floor(start * steps), jnp.floor(final * steps), steps]
        values = jnp.cumprod(jnp.stack([peak / div, div, 1 / div, 1 / final_div]))
        return _interpolate("linear", t, bounds, list(values))


def linear_onecycle_schedule(
    transition_steps: Any,
    peak_value: Any,
    pct_start: Any = 0.3,
    pct_final: Any = 0.85,
    div_factor: Any = 25.0,
    final_div_factor: Any = 1e4,
) -> LinearOnecycleSchedule:
    """The one-cycle policy in three linear phases, as ``optax.linear_onecycle_schedule``.

    Formula: :func:`piecewise_interpolate_schedule` ``("linear")`` through::

        step   0         floor(pct_start * T)   floor(pct_final * T)   T = transition_steps
        value  peak / d  peak_value             peak / d               peak / (d * final_div_factor)

    where d = div_factor.

    Args:
        transition_steps: T > 0.
        peak_value: the maximum, reached at step ``pct_start * T``; the schedule starts at
            ``peak_value / div_factor`` and ends at that over ``final_div_factor``.
        pct_start, pct_final: 0 <= pct_start <= pct_final <= 1. When both give
            the same step, optax drops the peak; here the value jumps from it.
        div_factor, final_div_factor: > 0.

    PyTorch: ``OneCycleLR(..., anneal_strategy="linear", three_phase=True)``,
    whose second phase ends at ``2 * pct_start * T`` instead of ``pct_final * T``.

    Reference: Smith & Topin, *Super-Convergence*, arXiv:1708.07120.

    >>> import gradtx
    >>> schedule = gradtx.linear_onecycle_schedule(100, peak_value=1.0)
    >>> [round(float(schedule(t)), 6) for t in (0, 30, 85)]
    [0.04, 1.0, 0.04]
    """
    return LinearOnecycleSchedule(
        transition_steps=transition_steps,
        peak_value=peak_value,
        pct_start=pct_start,
        pct_final=pct_final,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
    )


# -- inverse square root -------------------------------------------------------


class InverseSqrtSchedule(Schedule):
    init_value: Any
    warmup_steps: Any = 0
    timescale: Any = None

    def __post_init__(self):
        check_range(self, "warmup_steps", low=0)
        check_range(self, "timescale", low=0, low_open=True)

    def __call__(self, count):
        init, warmup, t = _floats(self.init_value, self.warmup_steps, count)
        one_or_warmup = jnp.maximum(warmup, 1)
        tau = one_or_warmup if self.timescale is None else _floats(self.timescale)[0]
        decay = init * jnp.sqrt(tau / (t - warmup + tau))
        return jnp.where(t < warmup, init * t / one_or_warmup, decay)


def inverse_sqrt_schedule(
    init_value: Any, warmup_steps: Any = 0, timescale: Any = None
) -> InverseSqrtSchedule:
    """A linear warmup from 0, then decay as one over the square root of the step.

    Formula, with W = warmup_steps and tau = timescale::

        value(t) = init_value * t / W                          t < W
                 = init_value * sqrt(tau / (t - W + tau))      t >= W

    With the default tau = max(W, 1) this is the Transformer's rsqrt schedule,
    ``init_value * sqrt(W / t)`` after the warmup, and with W = 0 it is
    ``init_value / sqrt(t + 1)``.

    Args:
        init_value: the value at the end of the warmup (step W).
        warmup_steps: W >= 0.
        timescale: tau > 0, or None for max(W, 1); a larger tau decays slower.

    Hugging Face: ``get_inverse_sqrt_schedule(opt, W, tau)`` (its default tau
    is ``W or 10_000``). fairseq: ``inverse_sqrt`` with ``warmup_init_lr=0``.
    optax, Keras and PyTorch have none (PyTorch: a ``LambdaLR``).

    Reference: Vaswani et al., *Attention Is All You Need*, arXiv:1706.03762.

    >>> import gradtx
    >>> schedule = gradtx.inverse_sqrt_schedule(1.0, warmup_steps=4)
    >>> [round(float(schedule(t)), 6) for t in (2, 4, 16)]
    [0.5, 1.0, 0.5]
    """
    return InverseSqrtSchedule(
        init_value=init_value, warmup_steps=warmup_steps, timescale=timescale
    )


# -- joining schedules ---------------------------------------------------------


class FromFunction(Schedule):
    """A plain function of the count (an optax schedule, a lambda) used as a schedule.

    Its parameters are hidden in a closure, so they are not leaves.
    """

    fn: Callable = static()

    def __call__(self, count):
        return self.fn(count)


def _as_schedule(schedule: Any) -> Schedule:
    if isinstance(schedule, Schedule):
        return schedule
    if callable(schedule):
        return FromFunction(fn=schedule)
    raise TypeError(f"join_schedules: expected a schedule or a function, got {schedule!r}")


class JoinSchedules(Schedule):
    schedules: tuple
    boundaries: tuple

    def __post_init__(self):
        object.__setattr__(self, "schedules", tuple(map(_as_schedule, self.schedules)))
        if not self.schedules:
            fail(self, "schedules", "at least one schedule is required")
        _check_boundaries(self)
        if len(self.boundaries) != len(self.schedules) - 1:
            fail(
                self,
                "boundaries",
                f"needs {len(self.schedules) - 1}, one between each two schedules",
            )

    def __call__(self, count):
        return _join(self.schedules, self.boundaries, count)


def join_schedules(schedules: Any, boundaries: Any) -> JoinSchedules:
    """Schedules one after another, each restarted from 0, as ``optax.join_schedules``.

    Formula, for schedules f_0, ..., f_k and boundaries b_1 <= ... <= b_k::

        value(t) = f_0(t)            t < b_1
                 = f_i(t - b_i)      b_i <= t < b_{i+1}

    Args:
        schedules: gradtx schedules, or plain functions of the count (such as
            optax's; theirs are then hidden from jit, and retrace when changed).
        boundaries: one step >= 0 between each two schedules, in increasing
            order (optax ignores extra boundaries; they are an error here).

    PyTorch: ``SequentialLR(opt, schedulers, milestones=boundaries)``.

    >>> import gradtx
    >>> warmup = gradtx.linear_schedule(0.0, 1.0, transition_steps=10)
    >>> decay = gradtx.exponential_decay(1.0, transition_steps=10, decay_rate=0.5)
    >>> schedule = gradtx.join_schedules([warmup, decay], [10])
    >>> [round(float(schedule(t)), 6) for t in (5, 10, 20)]
    [0.5, 1.0, 0.5]
    """
    return JoinSchedules(schedules=tuple(schedules), boundaries=tuple(boundaries))


class SgdrSchedule(Schedule):
    cycles: tuple

    def __post_init__(self):
        object.__setattr__(self, "cycles", tuple(self.cycles))
        if not self.cycles:
            fail(self, "cycles", "at least one cycle is required")

    def __call__(self, count):
        ends = tuple(itertools.accumulate(cycle.decay_steps for cycle in self.cycles))
        return _join(self.cycles, ends[:-1], count)


def sgdr_schedule(cosine_kwargs: Any) -> SgdrSchedule:
    """Stochastic gradient descent with warm restarts, as ``optax.sgdr_schedule``.

    Formula: each dict of ``cosine_kwargs`` makes a cycle,
    ``warmup_cosine_decay_schedule(**kwargs)``, that lasts its ``decay_steps``;
    the cycles are joined end to end (:func:`join_schedules`). They are kept as
    the tuple ``cycles``, whose numbers are leaves.

    Args:
        cosine_kwargs: one or more dicts of :func:`warmup_cosine_decay_schedule`
            arguments.

    For cycles that grow geometrically without end, as PyTorch's
    ``CosineAnnealingWarmRestarts``, see :func:`cosine_warm_restarts_schedule`.

    Reference: Loshchilov & Hutter, arXiv:1608.03983.

    >>> import gradtx
    >>> cycle = dict(init_value=0.0, peak_value=1.0, warmup_steps=0, decay_steps=10)
    >>> schedule = gradtx.sgdr_schedule([cycle, cycle])
    >>> [round(float(schedule(t)), 6) for t in (5, 10, 15)]
    [0.5, 1.0, 0.5]
    """
    return SgdrSchedule(cycles=tuple(warmup_cosine_decay_schedule(**kw) for kw in cosine_kwargs))
