"""``torch.optim.lr_scheduler``: every scheduler class as a gradtx schedule (or transform).

Each function is torch's class name in snake_case and takes torch's keyword
arguments and defaults. The optimizer is not an argument: its learning rate is
(``lr=``), except for ``cyclic_lr`` and ``one_cycle_lr``, which set it
themselves. Each returns a :class:`gradtx.Schedule` to pass as a port's ``lr``::

    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100)

    sched = gradtx.compat.pytorch.lr_scheduler.cosine_annealing_lr(lr=0.1, T_max=100)
    tx = gradtx.compat.pytorch.sgd(lr=sched, momentum=0.9)

Stepping. ``schedule(t)`` is the rate of optimizer step ``t`` (0-based): the
value of ``scheduler.get_last_lr()`` after ``t // step_every`` calls of
``scheduler.step()``. ``step_every=1`` (the default) is torch's per-batch use,
``scheduler.step()`` after every ``optimizer.step()``; ``step_every=N`` is the
per-epoch use with N batches an epoch. The epoch, not the step, is what a
lambda receives, as in torch. Children of :func:`sequential_lr` and
:func:`chained_scheduler` count scheduler steps (their ``step_every`` is 1);
the parent's ``step_every`` applies to the whole.

Values are torch's: where torch computes a rate recursively from the last one
(``CosineAnnealingLR``, ``LinearLR``, ``PolynomialLR``...), the closed form of
that recursion is used, which agrees with torch's ``step()`` sequence to
rounding, past ``T_max`` and ``total_iters`` too (a ``CosineAnnealingLR``
rises again after ``T_max``). ``chained_scheduler`` runs torch's recursion
itself, as a loop over the epochs, since chained recursive rules do not
compose into a closed form.

Momentum cycling: the schedules of :func:`cyclic_lr` and :func:`one_cycle_lr`
have a ``momentum`` attribute, the schedule torch writes into the optimizer's
``momentum`` (SGD, RMSprop) or ``betas[0]`` (Adam family), or None when
``cycle_momentum=False``: then give the optimizer its own momentum number, as torch
keeps the one the optimizer was built with (``momentum=None`` would mean none).

:func:`reduce_lr_on_plateau` needs the metric, so it is a transform: chain it
after the optimizer and pass the metric as ``value=`` on each update.
"""

from __future__ import annotations

from collections.abc import Callable
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..._base import (
    _concrete_numbers,
    check_choice,
    check_range,
    fail,
    Schedule,
    shown,
    static,
    Transform,
)
from ..._parameter_free import require_value
from ..._schedules import (
    cosine_warm_restarts_schedule,
    linear_schedule,
    PiecewiseConstantSchedule,
    polynomial_schedule,
    step_decay_schedule,
)
from ..._tree import decay_power, default_float, safe_increment, tree_scale, zero_count

# -- the shared shell ------------------------------------------------------------


def _f(value: Any) -> jax.Array:
    return jnp.asarray(value, default_float())


class LRScheduler(Schedule):
    """A torch scheduler as a schedule: ``schedule(t) = at_epoch(t // step_every)``.

    Subclasses give ``at_epoch(e)``, the rate after ``e`` scheduler steps, and
    ``step(lr, e)``, torch's ``get_lr()``: the rate its ``e``-th step makes
    from the optimizer's current rate ``lr`` (used by :func:`chained_scheduler`).
    """

    @property
    def name(self) -> str:
        return "lr_scheduler." + super().name.replace("_l_r", "_lr")

    def __call__(self, count):
        epoch = jnp.asarray(count) // jnp.asarray(self.step_every, jnp.asarray(count).dtype)
        return _f(self.at_epoch(epoch))

    def at_epoch(self, e):
        raise NotImplementedError

    def step(self, lr, e):
        raise NotImplementedError


def _check_step_every(obj: LRScheduler) -> None:
    check_range(obj, "step_every", low=1, integer=True)


class Momentum(Schedule):
    """The momentum (or beta1) a cycling scheduler writes into the optimizer at each step."""

    scheduler: Schedule

    def __call__(self, count):
        epoch = jnp.asarray(count) // self.scheduler.step_every
        return _f(self.scheduler.momentum_at(epoch))


# -- lambda, multiplicative --------------------------------------------------------


class _LambdaScheduler(LRScheduler):
    """The fields and checks :class:`LambdaLR` and :class:`MultiplicativeLR` share."""

    lr: Any
    lr_lambda: Callable = static()
    step_every: Any = 1

    def __post_init__(self):
        if not callable(self.lr_lambda):
            fail(self, "lr_lambda", "lr_lambda must be a function of the epoch")
        _check_step_every(self)


class LambdaLR(_LambdaScheduler):
    def at_epoch(self, e):
        return _f(self.lr) * _f(self.lr_lambda(e))

    def step(self, lr, e):
        return self.at_epoch(e)


def lambda_lr(lr: Any, lr_lambda: Callable, step_every: int = 1) -> LambdaLR:
    """``LambdaLR``: the base rate times a function of the epoch.

    Formula::

        lr_e = lr * lr_lambda(e)

    ``lr_lambda`` receives the epoch as a traced integer under jit: write it
    with arithmetic or ``jnp`` (``lambda e: 0.95 ** e``), not Python ``if``.
    torch's list of lambdas (one per parameter group): use one schedule per
    group with :func:`gradtx.partition`.

    Args:
        lr: the base rate (torch's initial ``lr``).
        lr_lambda: a function of the epoch, traceable.
        step_every: optimizer steps per scheduler step (torch's epoch), an integer >= 1.
            Default 1.

    Reference: PyTorch 2.13, ``torch.optim.lr_scheduler.LambdaLR``.

    >>> from gradtx.compat.pytorch import lr_scheduler
    >>> schedule = lr_scheduler.lambda_lr(lr=1.0, lr_lambda=lambda e: 0.5**e)
    >>> [round(float(schedule(t)), 4) for t in range(4)]  # torch gives the same
    [1.0, 0.5, 0.25, 0.125]
    """
    return LambdaLR(lr=lr, lr_lambda=lr_lambda, step_every=step_every)


class MultiplicativeLR(_LambdaScheduler):
    def at_epoch(self, e):
        body = lambda k, lr: lr * _f(self.lr_lambda(k))
        return jax.lax.fori_loop(1, jnp.asarray(e) + 1, body, _f(self.lr))

    def step(self, lr, e):
        return jnp.where(e > 0, lr * _f(self.lr_lambda(e)), lr)


def multiplicative_lr(lr: Any, lr_lambda: Callable, step_every: int = 1) -> MultiplicativeLR:
    """``MultiplicativeLR``: the rate multiplied by a function of the epoch at each step.

    Formula::

        lr_0 = lr;  lr_e = lr_{e-1} * lr_lambda(e)

    Evaluated as a loop over the epochs (the product has no closed form for an
    arbitrary function), so a step costs O(e). ``lr_lambda`` as :func:`lambda_lr`.

    Args:
        lr: the base rate.
        lr_lambda: a function of the epoch, traceable.
        step_every: optimizer steps per scheduler step (torch's epoch), an integer >= 1.
            Default 1.

    Reference: PyTorch 2.13, ``torch.optim.lr_scheduler.MultiplicativeLR``.

    >>> from gradtx.compat.pytorch import lr_scheduler
    >>> schedule = lr_scheduler.multiplicative_lr(lr=1.0, lr_lambda=lambda e: 0.9)
    >>> [round(float(schedule(t)), 4) for t in range(4)]  # torch gives the same
    [1.0, 0.9, 0.81, 0.729]
    """
    return MultiplicativeLR(lr=lr, lr_lambda=lr_lambda, step_every=step_every)


# -- step, multi-step, constant, linear, exponential, polynomial ------------------


class StepLR(LRScheduler):
    lr: Any
    step_size: Any
    gamma: Any = 0.1
    step_every: Any = 1

    def __post_init__(self):
        check_range(self, "step_size", low=1, integer=True)
        _check_step_every(self)

    def at_epoch(self, e):
        return step_decay_schedule(self.lr, self.step_size, self.gamma)(e)

    def step(self, lr, e):
        return jnp.where((e > 0) & (e % self.step_size == 0), lr * self.gamma, lr)


def step_lr(lr: Any, step_size: int, gamma: float = 0.1, step_every: int = 1) -> StepLR:
    """``StepLR``: the rate times ``gamma`` every ``step_size`` epochs.

    Formula: ``lr_e = lr * gamma ** (e // step_size)``; step_size >= 1 (torch
    fails with a ZeroDivisionError at 0). :func:`gradtx.step_decay_schedule`.

    Args:
        lr: the base rate.
        step_size: epochs between decays, an integer >= 1.
        gamma: the factor. Default 0.1.
        step_every: optimizer steps per scheduler step (torch's epoch), an integer >= 1.
            Default 1.

    Reference: PyTorch 2.13, ``torch.optim.lr_scheduler.StepLR``.

    >>> from gradtx.compat.pytorch import lr_scheduler
    >>> per_epoch = lr_scheduler.step_lr(lr=1.0, step_size=2, gamma=0.5, step_every=10)
    >>> [float(per_epoch(t)) for t in (0, 19, 20, 40)]
    [1.0, 1.0, 0.5, 0.25]
    """
    return StepLR(lr=lr, step_size=step_size, gamma=gamma, step_every=step_every)


class MultiStepLR(LRScheduler):
    lr: Any
    milestones: tuple
    gamma: Any = 0.1
    step_every: Any = 1

    def __post_init__(self):
        object.__setattr__(self, "milestones", tuple(sorted(self.milestones)))
        _check_step_every(self)

    def at_epoch(self, e):
        # A repeated milestone multiplies by gamma once each time, as torch's Counter does.
        scales = (self.gamma,) * len(self.milestones)
        return PiecewiseConstantSchedule(
            init_value=self.lr, boundaries=self.milestones, scales=scales
        )(e)

    def step(self, lr, e):
        hits = sum(jnp.asarray(e == m, default_float()) for m in self.milestones)
        return lr * decay_power(self.gamma, hits)


def multi_step_lr(lr: Any, milestones: Any, gamma: float = 0.1, step_every: int = 1) -> MultiStepLR:
    """``MultiStepLR``: the rate times ``gamma`` at each milestone epoch.

    Formula: ``lr_e = lr * gamma ** #{milestones <= e}`` (a repeated milestone
    counts twice). :func:`gradtx.piecewise_constant_schedule`.

    Args:
        lr: the base rate.
        milestones: the epochs of the decays.
        gamma: the factor. Default 0.1.
        step_every: optimizer steps per scheduler step (torch's epoch), an integer >= 1.
            Default 1.

    Reference: PyTorch 2.13, ``torch.optim.lr_scheduler.MultiStepLR``.

    >>> from gradtx.compat.pytorch import lr_scheduler
    >>> schedule = lr_scheduler.multi_step_lr(lr=1.0, milestones=[2, 3], gamma=0.1)
    >>> [round(float(schedule(t)), 4) for t in range(5)]  # torch gives the same
    [1.0, 1.0, 0.1, 0.01, 0.01]
    """
    return MultiStepLR(lr=lr, milestones=tuple(milestones), gamma=gamma, step_every=step_every)


class ConstantLR(LRScheduler):
    lr: Any
    factor: Any = 1.0 / 3
    total_iters: Any = 5
    step_every: Any = 1

    def __post_init__(self):
        check_range(self, "factor", low=0.0, high=1.0)
        check_range(self, "total_iters", low=0, integer=True)
        _check_step_every(self)

    def at_epoch(self, e):
        # torch applies factor at epoch 0 and undoes it at total_iters: never when that is 0.
        restored = (self.total_iters > 0) & (e >= self.total_iters)
        return jnp.where(restored, _f(self.lr), _f(self.lr) * self.factor)

    def step(self, lr, e):
        undo = (e == self.total_iters) & (e > 0)
        return jnp.where(e == 0, lr * self.factor, jnp.where(undo, lr * (1.0 / self.factor), lr))


def constant_lr(
    lr: Any, factor: float = 1.0 / 3, total_iters: int = 5, step_every: int = 1
) -> ConstantLR:
    """``ConstantLR``: the rate times ``factor`` for the first ``total_iters`` epochs.

    Formula: ``lr_e = lr * factor`` for e < total_iters, ``lr`` after; with
    ``total_iters=0`` torch's steps keep ``lr * factor`` for ever, and so does
    this. 0 <= factor <= 1.

    Args:
        lr: the base rate.
        factor: in [0, 1]. Default 1/3.
        total_iters: epochs at the reduced rate, an integer >= 0. Default 5.
        step_every: optimizer steps per scheduler step (torch's epoch), an integer >= 1.
            Default 1.

    Reference: PyTorch 2.13, ``torch.optim.lr_scheduler.ConstantLR``.

    >>> from gradtx.compat.pytorch import lr_scheduler
    >>> schedule = lr_scheduler.constant_lr(lr=1.0, factor=0.5, total_iters=2)
    >>> [round(float(schedule(t)), 4) for t in range(4)]  # torch gives the same
    [0.5, 0.5, 1.0, 1.0]
    """
    return ConstantLR(lr=lr, factor=factor, total_iters=total_iters, step_every=step_every)


class LinearLR(LRScheduler):
    lr: Any
    start_factor: Any = 1.0 / 3
    end_factor: Any = 1.0
    total_iters: Any = 5
    step_every: Any = 1

    def __post_init__(self):
        check_range(self, "start_factor", low=0.0, high=1.0, low_open=True)
        check_range(self, "end_factor", low=0.0, high=1.0)
        check_range(self, "total_iters", low=0, integer=True)
        _check_step_every(self)

    def at_epoch(self, e):
        start, end = _f(self.lr) * self.start_factor, _f(self.lr) * self.end_factor
        return linear_schedule(start, end, self.total_iters)(e)

    def step(self, lr, e):
        s, d, n = self.start_factor, self.end_factor - self.start_factor, self.total_iters
        ramp = lr * (1.0 + d / (n * s + (e - 1) * d))
        return jnp.where(e == 0, lr * s, jnp.where(e > n, lr, ramp))


def linear_lr(
    lr: Any,
    start_factor: float = 1.0 / 3,
    end_factor: float = 1.0,
    total_iters: int = 5,
    step_every: int = 1,
) -> LinearLR:
    """``LinearLR``: the factor of the rate moves linearly from start to end.

    Formula::

        lr_e = lr * (start_factor + (end_factor - start_factor) * min(e, total_iters) / total_iters)

    0 < start_factor <= 1, 0 <= end_factor <= 1; ``total_iters=0`` keeps
    ``lr * start_factor`` (torch's closed form divides by zero there).
    :func:`gradtx.linear_schedule` from ``lr * start_factor`` to ``lr * end_factor``.

    Args:
        lr: the base rate.
        start_factor: in (0, 1]. Default 1/3.
        end_factor: in [0, 1]. Default 1.0.
        total_iters: epochs of the ramp, an integer >= 0. Default 5.
        step_every: optimizer steps per scheduler step (torch's epoch), an integer >= 1.
            Default 1.

    Reference: PyTorch 2.13, ``torch.optim.lr_scheduler.LinearLR``.

    >>> from gradtx.compat.pytorch import lr_scheduler
    >>> schedule = lr_scheduler.linear_lr(lr=1.0, start_factor=0.25, total_iters=3)
    >>> [round(float(schedule(t)), 4) for t in range(5)]  # torch gives the same
    [0.25, 0.5, 0.75, 1.0, 1.0]
    """
    return LinearLR(
        lr=lr,
        start_factor=start_factor,
        end_factor=end_factor,
        total_iters=total_iters,
        step_every=step_every,
    )


class ExponentialLR(LRScheduler):
    lr: Any
    gamma: Any
    step_every: Any = 1

    def __post_init__(self):
        _check_step_every(self)

    def at_epoch(self, e):
        return _f(self.lr) * decay_power(self.gamma, e)

    def step(self, lr, e):
        return jnp.where(e > 0, lr * self.gamma, lr)


def exponential_lr(lr: Any, gamma: float, step_every: int = 1) -> ExponentialLR:
    """``ExponentialLR``: ``lr_e = lr * gamma ** e``.

    gradtx's ``exponential_decay(lr, 1, gamma)`` differs at ``gamma=0`` (it then
    holds ``lr``, as optax), so this one has its own class.

    Args:
        lr: the base rate.
        gamma: the factor per epoch.
        step_every: optimizer steps per scheduler step (torch's epoch), an integer >= 1.
            Default 1.

    Reference: PyTorch 2.13, ``torch.optim.lr_scheduler.ExponentialLR``.

    >>> from gradtx.compat.pytorch import lr_scheduler
    >>> schedule = lr_scheduler.exponential_lr(lr=1.0, gamma=0.5)
    >>> [round(float(schedule(t)), 4) for t in range(4)]  # torch gives the same
    [1.0, 0.5, 0.25, 0.125]
    """
    return ExponentialLR(lr=lr, gamma=gamma, step_every=step_every)


class PolynomialLR(LRScheduler):
    lr: Any
    total_iters: Any = 5
    power: Any = 1.0
    step_every: Any = 1

    def __post_init__(self):
        check_range(self, "total_iters", low=0, integer=True)
        _check_step_every(self)

    def at_epoch(self, e):
        return polynomial_schedule(self.lr, 0.0, self.power, self.total_iters)(e)

    def step(self, lr, e):
        n = jnp.maximum(self.total_iters, 1)
        factor = ((1.0 - e / n) / (1.0 - (e - 1) / n)) ** self.power
        return jnp.where((e == 0) | (e > self.total_iters), lr, lr * factor)


def polynomial_lr(
    lr: Any, total_iters: int = 5, power: float = 1.0, step_every: int = 1
) -> PolynomialLR:
    """``PolynomialLR``: ``lr_e = lr * (1 - min(e, total_iters) / total_iters) ** power``.

    ``total_iters=0`` keeps ``lr``, as torch's steps do. :func:`gradtx.polynomial_schedule`.

    Args:
        lr: the base rate.
        total_iters: epochs of the decay, an integer >= 0. Default 5.
        power: the exponent. Default 1.0.
        step_every: optimizer steps per scheduler step (torch's epoch), an integer >= 1.
            Default 1.

    Reference: PyTorch 2.13, ``torch.optim.lr_scheduler.PolynomialLR``.

    >>> from gradtx.compat.pytorch import lr_scheduler
    >>> schedule = lr_scheduler.polynomial_lr(lr=1.0, total_iters=4, power=2.0)
    >>> [round(float(schedule(t)), 4) for t in range(6)]  # torch gives the same
    [1.0, 0.5625, 0.25, 0.0625, 0.0, 0.0]
    """
    return PolynomialLR(lr=lr, total_iters=total_iters, power=power, step_every=step_every)


# -- cosine ------------------------------------------------------------------------


class CosineAnnealingLR(LRScheduler):
    lr: Any
    T_max: Any
    eta_min: Any = 0.0
    step_every: Any = 1

    def __post_init__(self):
        check_range(self, "T_max", low=1, integer=True)
        _check_step_every(self)

    def at_epoch(self, e):
        lr, low, t_max = _f(self.lr), _f(self.eta_min), _f(self.T_max)
        return low + (lr - low) * (1 + jnp.cos(jnp.pi * e / t_max)) / 2

    def step(self, lr, e):
        base, low, t_max = _f(self.lr), _f(self.eta_min), _f(self.T_max)
        ratio = (1 + jnp.cos(jnp.pi * e / t_max)) / (1 + jnp.cos(jnp.pi * (e - 1) / t_max))
        # torch's own rule just after each trough, where the ratio would be x / 0.
        trough = (e - 1 - self.T_max) % (2 * self.T_max) == 0
        rise = lr + (base - low) * (1 - jnp.cos(jnp.pi / t_max)) / 2
        return jnp.where(e == 0, lr, jnp.where(trough, rise, ratio * (lr - low) + low))


def cosine_annealing_lr(
    lr: Any, T_max: int, eta_min: float = 0.0, step_every: int = 1
) -> CosineAnnealingLR:
    """``CosineAnnealingLR``: a cosine from ``lr`` to ``eta_min`` over ``T_max`` epochs, and back.

    Formula, what torch's recursive ``step()`` yields at every epoch::

        lr_e = eta_min + (lr - eta_min) * (1 + cos(pi * e / T_max)) / 2

    Past ``T_max`` the rate rises again, back to ``lr`` at ``2 * T_max``, and
    so on (a period of ``2 * T_max``). For a cosine that stays at ``eta_min``,
    use :func:`gradtx.cosine_decay_schedule`. T_max >= 1 (a whole number).

    Args:
        lr: the base rate.
        T_max: the half period in epochs, an integer >= 1.
        eta_min: the lowest rate. Default 0.0.
        step_every: optimizer steps per scheduler step (torch's epoch), an integer >= 1.
            Default 1.

    Reference: PyTorch 2.13, ``torch.optim.lr_scheduler.CosineAnnealingLR``; Loshchilov &
    Hutter, *SGDR*, arXiv:1608.03983.

    >>> from gradtx.compat.pytorch import lr_scheduler
    >>> schedule = lr_scheduler.cosine_annealing_lr(lr=1.0, T_max=10)
    >>> [round(float(schedule(t)), 6) for t in (0, 5, 10, 15, 20)]
    [1.0, 0.5, 0.0, 0.5, 1.0]
    """
    return CosineAnnealingLR(lr=lr, T_max=T_max, eta_min=eta_min, step_every=step_every)


class CosineAnnealingWarmRestarts(LRScheduler):
    lr: Any
    T_0: Any
    T_mult: Any = 1
    eta_min: Any = 0.0
    step_every: Any = 1

    def __post_init__(self):
        check_range(self, "T_0", low=1, integer=True)
        check_range(self, "T_mult", low=1, integer=True)
        _check_step_every(self)

    def at_epoch(self, e):
        return cosine_warm_restarts_schedule(self.lr, self.T_0, self.T_mult, self.eta_min)(e)

    def step(self, lr, e):
        return self.at_epoch(e)


def cosine_annealing_warm_restarts(
    lr: Any, T_0: int, T_mult: int = 1, eta_min: float = 0.0, step_every: int = 1
) -> CosineAnnealingWarmRestarts:
    """``CosineAnnealingWarmRestarts``: cosine cycles of ``T_0``, ``T_0 * T_mult``, ... epochs.

    Formula: :func:`gradtx.cosine_warm_restarts_schedule` ``(lr, T_0, T_mult,
    eta_min)``, what torch's ``step()`` without an epoch yields. T_0 >= 1 and
    T_mult >= 1, whole numbers. Fractional epochs (``step(epoch + i / n)``) are
    ``step_every``'s job here.

    Args:
        lr: the base rate.
        T_0: the first cycle's length in epochs, an integer >= 1.
        T_mult: the growth of each cycle, an integer >= 1. Default 1.
        eta_min: the lowest rate. Default 0.0.
        step_every: optimizer steps per scheduler step (torch's epoch), an integer >= 1.
            Default 1.

    Reference: PyTorch 2.13, ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts``;
    Loshchilov & Hutter, *SGDR*, arXiv:1608.03983.

    >>> from gradtx.compat.pytorch import lr_scheduler
    >>> schedule = lr_scheduler.cosine_annealing_warm_restarts(lr=1.0, T_0=2, T_mult=2)
    >>> [round(float(schedule(t)), 4) for t in range(7)]  # torch gives the same
    [1.0, 0.5, 1.0, 0.8536, 0.5, 0.1464, 1.0]
    """
    return CosineAnnealingWarmRestarts(
        lr=lr, T_0=T_0, T_mult=T_mult, eta_min=eta_min, step_every=step_every
    )


# -- cyclic, one-cycle ---------------------------------------------------------------

CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


class CyclicLR(LRScheduler):
    base_lr: Any
    max_lr: Any
    step_size_up: Any = 2000
    step_size_down: Any = None
    mode: str = static("triangular")
    gamma: Any = 1.0
    scale_fn: Callable | None = static(None)
    scale_mode: str = static("cycle")
    cycle_momentum: bool = static(True)
    base_momentum: Any = 0.8
    max_momentum: Any = 0.9
    step_every: Any = 1

    def __post_init__(self):
        if self.scale_fn is None:
            check_choice(self, "mode", CYCLIC_MODES)
        else:
            check_choice(self, "scale_mode", ("cycle", "iterations"))
        check_range(self, "step_size_up", low=0, low_open=True)
        check_range(self, "step_size_down", low=0)
        _check_step_every(self)

    @property
    def momentum(self) -> Momentum | None:
        """The momentum (or beta1) schedule; None when ``cycle_momentum=False``."""
        return Momentum(scheduler=self) if self.cycle_momentum else None

    def _phase(self, e):
        """The height of the triangle in [0, 1] and the scale_fn factor, as torch's get_lr."""
        up = _f(self.step_size_up)
        total = up + (up if self.step_size_down is None else _f(self.step_size_down))
        ratio = up / total
        cycle = jnp.floor(1 + e / total)
        x = 1.0 + e / total - cycle
        height = jnp.where(x <= ratio, x / ratio, (x - 1) / (ratio - 1))
        if self.scale_fn is not None:
            fn, by_cycle = self.scale_fn, self.scale_mode == "cycle"
        elif self.mode == "triangular":
            fn, by_cycle = (lambda x: 1.0), True
        elif self.mode == "triangular2":
            fn, by_cycle = (lambda x: 1 / (2.0 ** (x - 1))), True
        else:
            fn, by_cycle = (lambda x: decay_power(self.gamma, x)), False
        return height, _f(fn(cycle if by_cycle else e))

    def at_epoch(self, e):
        height, scale = self._phase(e)
        base = _f(self.base_lr)
        return base + (self.max_lr - base) * height * scale

    def momentum_at(self, e):
        height, scale = self._phase(e)
        top = _f(self.max_momentum)
        return top - (top - self.base_momentum) * height * scale

    def step(self, lr, e):
        return self.at_epoch(e)


def cyclic_lr(
    base_lr: Any,
    max_lr: Any,
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
    scale_fn: Callable | None = None,
    scale_mode: str = "cycle",
    cycle_momentum: bool = True,
    base_momentum: float = 0.8,
    max_momentum: float = 0.9,
    step_every: int = 1,
) -> CyclicLR:
    """``CyclicLR``: triangles between ``base_lr`` and ``max_lr``, scaled per cycle or step.

    Formula, with up/down the step sizes and s = up / (up + down)::

        cycle = floor(1 + e / (up + down));  x = 1 + e / (up + down) - cycle
        h = x / s if x <= s else (x - 1) / (s - 1)
        lr_e = base_lr + (max_lr - base_lr) * h * f
        momentum_e = max_momentum - (max_momentum - base_momentum) * h * f

    with f = 1 (triangular), 1 / 2**(cycle - 1) (triangular2), gamma**e
    (exp_range), or ``scale_fn(cycle)`` / ``scale_fn(e)`` by ``scale_mode``
    when ``scale_fn`` is given (it then overrides ``mode``). The momentum
    schedule is ``schedule.momentum``: pass it to the port's ``momentum`` or
    ``betas[0]`` as torch writes it into the optimizer. step_size_up > 0.

    Args:
        base_lr: the bottom of the triangle.
        max_lr: the top of the triangle.
        step_size_up: epochs up, > 0. Default 2000.
        step_size_down: epochs down, >= 0, or None for step_size_up. Default None.
        mode: ``"triangular"``, ``"triangular2"`` or ``"exp_range"``. Default ``"triangular"``.
        gamma: exp_range's base. Default 1.0.
        scale_fn: a custom f, or None. Default None.
        scale_mode: ``"cycle"`` or ``"iterations"`` (with scale_fn). Default ``"cycle"``.
        cycle_momentum: provide ``schedule.momentum``. Default True.
        base_momentum: Default 0.8.
        max_momentum: Default 0.9.
        step_every: optimizer steps per scheduler step (torch's epoch), an integer >= 1.
            Default 1.

    Reference: PyTorch 2.13, ``torch.optim.lr_scheduler.CyclicLR``; Smith, *Cyclical
    Learning Rates for Training Neural Networks*, arXiv:1506.01186.

    >>> from gradtx.compat.pytorch import lr_scheduler
    >>> schedule = lr_scheduler.cyclic_lr(base_lr=0.1, max_lr=1.0, step_size_up=2)
    >>> [round(float(schedule(t)), 4) for t in range(5)]  # torch gives the same
    [0.1, 0.55, 1.0, 0.55, 0.1]
    >>> [round(float(schedule.momentum(t)), 4) for t in range(5)]
    [0.9, 0.85, 0.8, 0.85, 0.9]
    """
    return CyclicLR(
        base_lr=base_lr,
        max_lr=max_lr,
        step_size_up=step_size_up,
        step_size_down=step_size_down,
        mode=mode,
        gamma=gamma,
        scale_fn=scale_fn,
        scale_mode=scale_mode,
        cycle_momentum=cycle_momentum,
        base_momentum=base_momentum,
        max_momentum=max_momentum,
        step_every=step_every,
    )


class OneCycleLR(LRScheduler):
    max_lr: Any
    total_steps: Any
    pct_start: Any = 0.3
    anneal_strategy: str = static("cos")
    cycle_momentum: bool = static(True)
    base_momentum: Any = 0.85
    max_momentum: Any = 0.95
    div_factor: Any = 25.0
    final_div_factor: Any = 1e4
    three_phase: bool = static(False)
    step_every: Any = 1

    def __post_init__(self):
        check_range(self, "total_steps", low=1, integer=True)
        check_range(self, "pct_start", low=0.0, high=1.0)
        check_choice(self, "anneal_strategy", ("cos", "linear"))
        check_range(self, "div_factor", low=0.0, low_open=True)
        check_range(self, "final_div_factor", low=0.0, low_open=True)
        _check_step_every(self)
        steps, pct = _concrete_numbers(self.total_steps), _concrete_numbers(self.pct_start)
        if steps is not None and pct is not None and float(pct * steps) == 1:
            # torch: ZeroDivisionError in the constructor's first step, 0 / 0
            fail(
                self,
                "pct_start",
                f"pct_start * total_steps ({shown(self.total_steps)}) must not be 1: the "
                "first phase would end where it starts, at step 0",
            )

    @property
    def momentum(self) -> Momentum | None:
        """The momentum (or beta1) schedule; None when ``cycle_momentum=False``."""
        return Momentum(scheduler=self) if self.cycle_momentum else None

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (jnp.cos(jnp.pi * pct) + 1)
        return (end - start) * pct + start

    def _phases(self, peak, low, top, bottom):
        """(end step, start value, end value) of each phase, as torch's ``_schedule_phases``."""
        n, pct = _f(self.total_steps), _f(self.pct_start)
        initial = _f(self.max_lr) / self.div_factor
        if self.three_phase:
            return (
                (pct * n - 1, (initial, top), (peak, bottom)),
                (2 * pct * n - 2, (peak, bottom), (initial, top)),
                (n - 1, (initial, top), (low, top)),
            )
        return ((pct * n - 1, (initial, top), (peak, bottom)), (n - 1, (peak, bottom), (low, top)))

    def _value(self, e, which):
        initial = _f(self.max_lr) / self.div_factor
        phases = self._phases(
            _f(self.max_lr),
            initial / self.final_div_factor,
            _f(self.max_momentum),
            _f(self.base_momentum),
        )
        # The optimizer's last step under torch is epoch total_steps - 1 (one more
        # scheduler.step() raises); past it this holds that value, where torch's formula
        # would extrapolate the last phase (below zero for anneal_strategy="linear").
        e = jnp.minimum(_f(e), _f(self.total_steps) - 1)
        value, start, found = jnp.zeros_like(e), jnp.zeros_like(e), jnp.zeros(e.shape, bool)
        for i, (end, first, last) in enumerate(phases):
            here = ~found & ((e <= end) | (i == len(phases) - 1))
            # A phase of no length (pct_start * total_steps traced to 1) is at its end.
            span = jnp.asarray(end - start)
            pct = jnp.where(span == 0, 1.0, (e - start) / jnp.where(span == 0, 1.0, span))
            v = self._anneal(first[which], last[which], pct)
            value, found, start = jnp.where(here, v, value), found | here, end
        return value

    def at_epoch(self, e):
        return self._value(e, 0)

    def momentum_at(self, e):
        return self._value(e, 1)

    def step(self, lr, e):
        return self.at_epoch(e)


def one_cycle_lr(
    max_lr: Any,
    total_steps: int | None = None,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    cycle_momentum: bool = True,
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
    step_every: int = 1,
) -> OneCycleLR:
    """``OneCycleLR``: up from ``max_lr / div_factor`` to ``max_lr``, then down to far below.

    Formula: phases ending at steps ``pct_start * T - 1`` and ``T - 1`` (three
    phases: ``pct_start * T - 1``, ``2 * pct_start * T - 2``, ``T - 1``),
    T = total_steps (or epochs * steps_per_epoch, torch's meaning: the
    batches of an epoch, not ``step_every``), each a cosine or linear
    ``anneal(start, end, (e - phase start) / (phase end - phase start))``::

        lr:        max_lr / d -> max_lr -> max_lr / (d * final_div_factor)
        momentum:  max_momentum -> base_momentum -> max_momentum

    (three phases: back to max_lr / d first, then down). The momentum schedule
    is ``schedule.momentum``. From T - 1, the optimizer's last step under torch, the value
    holds (torch raises one step later; its formula would extrapolate the last phase).
    optax's :func:`gradtx.cosine_onecycle_schedule` ends its phases one step later.

    Args:
        max_lr: the peak rate.
        total_steps: T, an integer >= 1, or None to use epochs * steps_per_epoch.
            Default None.
        epochs: integer >= 1 (with steps_per_epoch). Default None.
        steps_per_epoch: integer >= 1 (with epochs). Default None.
        pct_start: the share of T going up, in [0, 1]. Default 0.3.
        anneal_strategy: ``"cos"`` or ``"linear"``. Default ``"cos"``.
        cycle_momentum: provide ``schedule.momentum``. Default True.
        base_momentum: Default 0.85.
        max_momentum: Default 0.95.
        div_factor: d, > 0. Default 25.0.
        final_div_factor: > 0. Default 1e4.
        three_phase: Default False.
        step_every: optimizer steps per scheduler step (torch's epoch), an integer >= 1.
            Default 1.

    Reference: PyTorch 2.13, ``torch.optim.lr_scheduler.OneCycleLR``; Smith & Topin,
    *Super-Convergence*, arXiv:1708.07120.

    >>> from gradtx.compat.pytorch import lr_scheduler
    >>> schedule = lr_scheduler.one_cycle_lr(max_lr=1.0, total_steps=12, pct_start=0.5)
    >>> [round(float(schedule(t)), 6) for t in (0, 5, 11)]
    [0.04, 1.0, 4e-06]
    >>> [round(float(schedule.momentum(t)), 6) for t in (0, 5, 11)]
    [0.95, 0.85, 0.95]
    """
    if total_steps is None:
        if epochs is None or steps_per_epoch is None:
            raise ValueError(
                "lr_scheduler.one_cycle_lr(total_steps=None): give total_steps, or epochs "
                "and steps_per_epoch"
            )
        for arg, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(
                    f"lr_scheduler.one_cycle_lr({arg}={value!r}): {arg} must be a whole number >= 1"
                )
        total_steps = epochs * steps_per_epoch
    return OneCycleLR(
        max_lr=max_lr,
        total_steps=total_steps,
        pct_start=pct_start,
        anneal_strategy=anneal_strategy,
        cycle_momentum=cycle_momentum,
        base_momentum=base_momentum,
        max_momentum=max_momentum,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        three_phase=three_phase,
        step_every=step_every,
    )


# -- sequential, chained ---------------------------------------------------------------


def _check_children(obj: LRScheduler) -> None:
    object.__setattr__(obj, "schedulers", tuple(obj.schedulers))
    if not obj.schedulers:
        fail(obj, "schedulers", "at least one scheduler is required")
    for child in obj.schedulers:
        if not isinstance(child, LRScheduler):
            fail(obj, "schedulers", f"expected lr_scheduler schedules, got {child!r}")
        if child.step_every != 1:
            fail(
                obj,
                "schedulers",
                f"{child.name} has step_every={child.step_every!r}: give step_every to "
                "the parent only (children count scheduler steps)",
            )
    _check_step_every(obj)


class SequentialLR(LRScheduler):
    schedulers: tuple
    milestones: tuple
    step_every: Any = 1

    def __post_init__(self):
        _check_children(self)
        object.__setattr__(self, "milestones", tuple(self.milestones))
        if len(self.milestones) != len(self.schedulers) - 1:
            fail(
                self,
                "milestones",
                f"needs {len(self.schedulers) - 1} milestones, one fewer than the schedulers",
            )

    def at_epoch(self, e):
        value = self.schedulers[0].at_epoch(e)
        for milestone, child in zip(self.milestones, self.schedulers[1:]):
            value = jnp.where(e < milestone, value, child.at_epoch(e - milestone))
        return value

    def step(self, lr, e):
        return self.at_epoch(e)


def sequential_lr(schedulers: Any, milestones: Any, step_every: int = 1) -> SequentialLR:
    """``SequentialLR``: each scheduler from its milestone on, restarted from epoch 0.

    Formula, with milestones m_1 <= m_2 ...::

        lr_e = schedulers[0](e)  for e < m_1;  schedulers[i](e - m_i)  for m_i <= e < m_{i+1}

    Like :func:`gradtx.join_schedules`. A ``multiplicative_lr`` child after a
    milestone restarts from its own ``lr`` here; torch continues it from the
    rate reached before the milestone. A child's cycled momentum is not carried.

    Args:
        schedulers: lr_scheduler schedules (each with step_every 1).
        milestones: one fewer than the schedulers.
        step_every: optimizer steps per scheduler step (torch's epoch), an integer >= 1.
            Default 1.

    Reference: PyTorch 2.13, ``torch.optim.lr_scheduler.SequentialLR``.

    >>> from gradtx.compat.pytorch import lr_scheduler
    >>> schedule = lr_scheduler.sequential_lr(
    ...     [lr_scheduler.constant_lr(lr=1.0, factor=0.1, total_iters=2),
    ...      lr_scheduler.exponential_lr(lr=1.0, gamma=0.5)], milestones=[2])
    >>> [round(float(schedule(t)), 4) for t in range(5)]  # torch gives the same
    [0.1, 0.1, 1.0, 0.5, 0.25]
    """
    return SequentialLR(
        schedulers=tuple(schedulers), milestones=tuple(milestones), step_every=step_every
    )


class ChainedScheduler(LRScheduler):
    schedulers: tuple
    step_every: Any = 1

    def __post_init__(self):
        _check_children(self)

    @property
    def lr(self) -> Any:
        """The optimizer's rate before the first step: the first scheduler's (a nested
        chain's own first one); 0 for one without (cyclic_lr, one_cycle_lr replace it)."""
        return getattr(self.schedulers[0], "lr", 0.0)

    def at_epoch(self, e):
        return jax.lax.fori_loop(0, jnp.asarray(e) + 1, lambda k, lr: self.step(lr, k), _f(self.lr))

    def step(self, lr, e):
        for child in self.schedulers:
            lr = child.step(lr, e)
        return _f(lr)


def chained_scheduler(
    schedulers: Any, optimizer: Any = None, step_every: int = 1
) -> ChainedScheduler:
    """``ChainedScheduler``: every scheduler's ``step()`` applied in turn to the same rate.

    Formula: ``lr_{-1} = lr`` (the first scheduler's), then at each epoch
    ``lr_e = step_k(... step_1(lr_{e-1}, e) ..., e)``, each ``step_i`` the
    scheduler's own torch rule: multiplicative ones (``exponential_lr``,
    ``step_lr``, ...) scale the current rate, absolute ones (``lambda_lr``,
    ``cyclic_lr``...) replace it. Evaluated as a loop over the epochs: O(e) a
    step. ``optimizer`` is accepted and ignored (the schedules carry ``lr``).

    Args:
        schedulers: lr_scheduler schedules (each with step_every 1).
        optimizer: accepted and ignored. Default None.
        step_every: optimizer steps per scheduler step (torch's epoch), an integer >= 1.
            Default 1.

    Reference: PyTorch 2.13, ``torch.optim.lr_scheduler.ChainedScheduler``.

    >>> from gradtx.compat.pytorch import lr_scheduler
    >>> halve_then_decay = lr_scheduler.chained_scheduler([
    ...     lr_scheduler.constant_lr(lr=1.0, factor=0.5, total_iters=2),
    ...     lr_scheduler.exponential_lr(lr=1.0, gamma=0.9),
    ... ])
    >>> [round(float(halve_then_decay(t)), 6) for t in range(4)]
    [0.5, 0.45, 0.81, 0.729]
    """
    del optimizer
    return ChainedScheduler(schedulers=tuple(schedulers), step_every=step_every)


# -- reduce on plateau -------------------------------------------------------------------


class ReduceLROnPlateauState(NamedTuple):
    """``lr`` is the current rate; ``count`` the updates seen."""

    lr: jax.Array
    best: jax.Array
    num_bad_epochs: jax.Array
    cooldown_counter: jax.Array
    count: jax.Array


class ReduceLROnPlateau(Transform):
    """Scales updates by ``lr_now / lr``, as torch's ReduceLROnPlateau judges ``value=``."""

    elementwise = True

    lr: Any
    mode: str = static("min")
    factor: Any = 0.1
    patience: Any = 10
    threshold: Any = 1e-4
    threshold_mode: str = static("rel")
    cooldown: Any = 0
    min_lr: Any = 0.0
    eps: Any = 1e-8
    step_every: Any = 1

    @property
    def name(self) -> str:
        return "lr_scheduler.reduce_lr_on_plateau"

    def __post_init__(self):
        check_range(self, "lr", low=0.0, low_open=True)
        check_choice(self, "mode", ("min", "max"))
        check_range(self, "factor", low=0.0, high=1.0, high_open=True)
        check_range(self, "patience", low=0, integer=True)
        check_range(self, "threshold", low=0.0)
        check_choice(self, "threshold_mode", ("rel", "abs"))
        check_range(self, "cooldown", low=0, integer=True)
        check_range(self, "min_lr", low=0.0)
        check_range(self, "eps", low=0.0)
        _check_step_every(self)

    def init(self, params):
        del params
        worst = math.inf if self.mode == "min" else -math.inf
        return ReduceLROnPlateauState(
            lr=_f(self.lr),
            best=_f(worst),
            num_bad_epochs=zero_count(),
            cooldown_counter=zero_count(),
            count=zero_count(),
        )

    def update(self, updates, state, params=None, *, value=None, **extra_args):
        del params, extra_args
        require_value(self, value)
        # The rate of this step is the one the metrics before it left, as torch's
        # optimizer.step(); scheduler.step(metric).
        updates = tree_scale(state.lr / _f(self.lr), updates)
        count = safe_increment(state.count)
        judged = self._judge(state, _f(value))
        at_epoch_end = count % self.step_every == 0
        new_state = jax.tree.map(lambda new, old: jnp.where(at_epoch_end, new, old), judged, state)
        return updates, new_state._replace(count=count)

    def _is_better(self, a, best):
        if self.mode == "min":
            return a < (
                best * (1.0 - self.threshold)
                if self.threshold_mode == "rel"
                else best - self.threshold
            )
        return a > (
            best * (self.threshold + 1.0) if self.threshold_mode == "rel" else best + self.threshold
        )

    def _judge(self, state: ReduceLROnPlateauState, current: jax.Array) -> ReduceLROnPlateauState:
        """torch's ``step(metrics)``."""
        better = self._is_better(current, state.best)
        bad = jnp.where(better, 0, state.num_bad_epochs + 1)
        cooling = state.cooldown_counter > 0
        cooldown = jnp.where(cooling, state.cooldown_counter - 1, state.cooldown_counter)
        bad = jnp.where(cooling, 0, bad)
        reduce = bad > self.patience
        new_lr = jnp.maximum(state.lr * self.factor, _f(self.min_lr))
        lr = jnp.where(reduce & (state.lr - new_lr > self.eps), new_lr, state.lr)
        return ReduceLROnPlateauState(
            lr=lr.astype(state.lr.dtype),
            best=jnp.where(better, current, state.best).astype(state.best.dtype),
            num_bad_epochs=jnp.where(reduce, 0, bad).astype(jnp.int32),
            cooldown_counter=jnp.where(reduce, self.cooldown, cooldown).astype(jnp.int32),
            count=state.count,
        )


def reduce_lr_on_plateau(
    lr: Any,
    mode: str = "min",
    factor: float = 0.1,
    patience: int = 10,
    threshold: float = 1e-4,
    threshold_mode: str = "rel",
    cooldown: int = 0,
    min_lr: float = 0.0,
    eps: float = 1e-8,
    step_every: int = 1,
) -> ReduceLROnPlateau:
    """``ReduceLROnPlateau``: the rate times ``factor`` once the metric stops improving.

    Update rule: the updates are scaled by ``lr_now / lr`` (chain it after a
    port built with the same constant ``lr``), then, on every ``step_every``-th
    update, the metric passed as ``value=`` is judged as torch's ``step(metric)``::

        better = m < best * (1 - threshold)   (min, rel)   m < best - threshold  (min, abs)
                 m > best * (1 + threshold)   (max, rel)   m > best + threshold  (max, abs)
        best <- m and bad <- 0 if better, else bad <- bad + 1
        in cooldown: cooldown <- cooldown - 1, bad <- 0
        if bad > patience:
            new = max(lr_now * factor, min_lr);  lr_now <- new if lr_now - new > eps
            cooldown <- cooldown;  bad <- 0

    The rate a metric lowers applies from the next update on, as torch's
    ``optimizer.step(); scheduler.step(metric)``. The current rate is
    ``gradtx.tree_get(state, "lr")``. With ``step_every=N`` only the value of
    every N-th update (an epoch's last) is judged: pass the epoch's metric there.

    Differences: optax's ``reduce_on_plateau`` (:func:`gradtx.reduce_on_plateau`)
    reduces when ``bad == patience``, rescales at once, and has no max mode,
    min_lr or eps. torch accepts a negative factor; here 0 <= factor < 1.

    Args:
        lr: the port's constant rate, > 0.
        mode: ``"min"`` or ``"max"``. Default ``"min"``.
        factor: in [0, 1). Default 0.1.
        patience: an integer >= 0. Default 10.
        threshold: >= 0. Default 1e-4.
        threshold_mode: ``"rel"`` or ``"abs"``. Default ``"rel"``.
        cooldown: an integer >= 0. Default 0.
        min_lr: >= 0. Default 0.0.
        eps: >= 0. Default 1e-8.
        step_every: optimizer steps per scheduler step (torch's epoch), an integer >= 1.
            Default 1.

    Reference: PyTorch 2.13, ``torch.optim.lr_scheduler.ReduceLROnPlateau``.

    >>> import gradtx
    >>> from gradtx.compat import pytorch
    >>> plateau = pytorch.lr_scheduler.reduce_lr_on_plateau(lr=0.1, patience=1)
    >>> tx = gradtx.chain(pytorch.sgd(lr=0.1), plateau)
    >>> state = tx.init({"w": 0.0})
    >>> for loss in (1.0, 1.0, 1.0):
    ...     _, state = tx.update({"w": 1.0}, state, value=loss)
    >>> round(float(gradtx.tree_get(state, "lr")), 6)
    0.01
    """
    return ReduceLROnPlateau(
        lr=lr,
        mode=mode,
        factor=factor,
        patience=patience,
        threshold=threshold,
        threshold_mode=threshold_mode,
        cooldown=cooldown,
        min_lr=min_lr,
        eps=eps,
        step_every=step_every,
    )
