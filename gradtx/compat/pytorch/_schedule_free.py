"""The authors' ``schedulefree`` package (SGD, AdamW, RAdam) as gradtx Schedule-Free wrappers."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from ..._adam import _radam_rho
from ..._adaptive import scale_by_rms, ScaleByRmsState
from ..._base import check_range, Schedule, static, Transform
from ..._combine import Chain, named_recipe, recipe
from ..._regularize import add_decayed_weights
from ..._scale import scale_by_learning_rate, value_at
from ..._schedule_free import schedule_free, ScheduleFreeWarmup
from ..._tree import (
    bias_correction,
    debias,
    default_float,
    ema,
    hp,
    safe_increment,
    tree_map_unzip,
    tree_squares_like,
    up,
    zero_count,
)
from ._optim import _check_nonnegative, Betas

# RAdam's rectification starts once rho_t exceeds 4 (the authors' test; optax's radam: >= 5).
_RHO_MIN = 4.0


def _rectified(rho: Any) -> Any:
    return rho > _RHO_MIN


class RectifiedRate(Schedule):
    """``learning_rate(k) * r_t`` at the 0-based step k, t = k + 1: the authors' RAdam rate.

    ``r_t`` is RAdam's rectification once rho_t > 4; before, 0 with
    ``silent_sgd_phase`` (no step at all) and 1 without (plain SGD steps).
    """

    learning_rate: Any
    b2: Any = 0.999
    silent_sgd_phase: bool = static(True)

    def __post_init__(self):
        check_range(self, "learning_rate", low=0.0)
        check_range(self, "b2", low=0.0, high=1.0, low_open=True, high_open=True)

    def __call__(self, count):
        rho, rho_inf, _ = _radam_rho(jnp.asarray(count, default_float()) + 1, self.b2)
        safe = jnp.maximum(rho, _RHO_MIN)  # no square root of a negative number before it
        rect = jnp.sqrt((safe - 4) * (safe - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * safe))
        early = 0.0 if self.silent_sgd_phase else 1.0
        return value_at(self.learning_rate, count) * jnp.where(_rectified(rho), rect, early)


class ScaleByRmsOnceRectified(Transform):
    """The authors' RAdam direction: g / (sqrt(v^_t) + eps) once rho_t > 4, else g."""

    elementwise = True

    b2: Any = 0.999
    eps: Any = 1e-8

    def __post_init__(self):
        check_range(self, "b2", low=0.0, high=1.0, low_open=True, high_open=True)
        check_range(self, "eps", low=0.0)

    def init(self, params):
        return ScaleByRmsState(zero_count(), tree_squares_like(params), None)

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        adaptive = _rectified(_radam_rho(count, self.b2)[0])
        bc2 = bias_correction(self.b2, count)

        def leaf(g, nu):
            nu = ema(g, nu, self.b2, 2)
            normalised = up(g) / (jnp.sqrt(debias(nu, bc2)) + hp(self.eps, g))
            return jnp.where(adaptive, normalised, up(g)).astype(g.dtype), nu

        updates, nu = tree_map_unzip(leaf, updates, state.nu)
        return updates, ScaleByRmsState(count, nu, None)


def _schedule_free(label: str, base: list[Transform], rate: Any, b1: float, r, power) -> Chain:
    """The base steps (weight decay always there: 0 adds nothing), lr, the wrapper."""
    return named_recipe(
        f"pytorch.{label}",
        schedule_free(
            Chain(transforms=(*base, scale_by_learning_rate(rate))),
            rate,
            b1,
            power,
            weight_step_power=r,
            lr_one_step_ahead=False,
        ),
    )


@recipe
def sgd_schedule_free(
    lr: Any = 1.0,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    r: float = 0.0,
    weight_lr_power: float = 2.0,
    foreach: bool | None = None,
) -> Chain:
    """``schedulefree.SGDScheduleFree`` (schedulefree 1.4.1).

    Update rule, at step t = k + 1 with y the params::

        lr_t = lr * min(t / warmup_steps, 1);   lr_max = max of the lr_t so far
        c_t = t**r lr_max**weight_lr_power / (sum of those weights)
        d = g + weight_decay * y_{t-1}
        z_t = z_{t-1} - lr_t * d
        y_t = (1 - c_t) y_{t-1} + c_t z_{t-1} + lr_t (momentum (1 - c_t) - 1) d

    which is :func:`gradtx.schedule_free` with ``b1=momentum`` and one rate
    for the step and the weights (optax's weights use the rate one step
    ahead). ``optimizer.eval()`` is ``gradtx.schedule_free_eval_params(state,
    params)``; ``optimizer.train()`` is training on from the params, which
    stay y. ``foreach`` changes no numbers and is ignored.

    Args:
        lr: a number or a schedule, >= 0. Default 1.0.
        momentum: the interpolation b1, in (0, 1). Default 0.9.
        weight_decay: L2 added to the gradient at y, >= 0. Default 0.0.
        warmup_steps: steps of linear warmup, an integer >= 0. Default 0.
        r: the power of t in the averaging weights, finite. Default 0.0.
        weight_lr_power: the power of the peak rate in the weights, >= 0. Default 2.0.
        foreach: accepted and ignored.

    Reference: the ``schedulefree`` package 1.4.1, ``SGDScheduleFree``; Defazio et al., *The Road
    Less Scheduled*, NeurIPS 2024, arXiv:2405.15682.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import pytorch
    >>> tx = pytorch.sgd_schedule_free(lr=0.1)
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # schedulefree gives the same, train() then eval()
    ...     updates, state = tx.update({"w": jnp.array(2.0)}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> x = gradtx.schedule_free_eval_params(state, params)
    >>> round(float(params["w"]), 4), round(float(x["w"]), 4)
    (0.69, 0.7)
    """
    del foreach
    _check_nonnegative("sgd_schedule_free", lr=lr, weight_decay=weight_decay)
    if not 0 < momentum < 1:
        raise ValueError(
            f"pytorch.sgd_schedule_free(momentum={momentum!r}): momentum must be in (0, 1)"
        )
    rate = ScheduleFreeWarmup(learning_rate=lr, warmup_steps=warmup_steps)
    base = [add_decayed_weights(weight_decay)]
    return _schedule_free("sgd_schedule_free", base, rate, momentum, r, weight_lr_power)


@recipe
def adamw_schedule_free(
    lr: Any = 0.0025,
    betas: Betas = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    r: float = 0.0,
    weight_lr_power: float = 2.0,
    foreach: bool | None = None,
) -> Chain:
    """``schedulefree.AdamWScheduleFree`` (schedulefree 1.4.1).

    Update rule: :func:`sgd_schedule_free`'s, with ``b1 = betas[0]`` and the
    gradient normalised first (no first moment)::

        v_t = b2 v_{t-1} + (1 - b2) g**2
        g <- g / (sqrt(v_t / (1 - b2**t)) + eps) + weight_decay * y_{t-1}

    ``optimizer.eval()`` is ``gradtx.schedule_free_eval_params(state, params)``.
    Unlike ``gradtx.schedule_free_adamw`` (optax), the warmup reaches ``lr``
    at step ``warmup_steps`` and the weights use the step's own rate.

    Args:
        lr: a number or a schedule, >= 0. Default 0.0025.
        betas: ``(b1, b2)``, b1 the interpolation in (0, 1], b2 in [0, 1)
            (schedulefree takes b2 = 1 and gives NaN: ``1 - b2**t`` is 0). Default
            (0.9, 0.999).
        eps: > 0. Default 1e-8.
        weight_decay: decoupled decay at y, >= 0. Default 0.0.
        warmup_steps: steps of linear warmup, an integer >= 0. Default 0.
        r: the power of t in the averaging weights, finite. Default 0.0.
        weight_lr_power: the power of the peak rate in the weights, >= 0. Default 2.0.
        foreach: accepted and ignored.

    Reference: the ``schedulefree`` package 1.4.1, ``AdamWScheduleFree``; Defazio et al., *The Road
    Less Scheduled*, NeurIPS 2024, arXiv:2405.15682.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import pytorch
    >>> tx = pytorch.adamw_schedule_free(lr=0.1)
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # schedulefree gives the same, train() then eval()
    ...     updates, state = tx.update({"w": jnp.array(2.0)}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> x = gradtx.schedule_free_eval_params(state, params)
    >>> round(float(params["w"]), 4), round(float(x["w"]), 4)
    (0.845, 0.85)
    """
    del foreach
    _check_nonnegative("adamw_schedule_free", lr=lr, weight_decay=weight_decay)
    b1, b2 = betas
    rate = ScheduleFreeWarmup(learning_rate=lr, warmup_steps=warmup_steps)
    base = [
        scale_by_rms(b2, eps, eps_in_sqrt=False, bias_correction=True),
        add_decayed_weights(weight_decay),
    ]
    return _schedule_free("adamw_schedule_free", base, rate, b1, r, weight_lr_power)


@recipe
def radam_schedule_free(
    lr: Any = 0.0025,
    betas: Betas = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    r: float = 0.0,
    weight_lr_power: float = 2.0,
    foreach: bool | None = None,
    silent_sgd_phase: bool = True,
) -> Chain:
    """``schedulefree.RAdamScheduleFree`` (schedulefree 1.4.1): RAdam's rectification as warmup.

    Update rule: :func:`adamw_schedule_free`'s with ``lr_t = lr * r_t``,
    RAdam's rectification at step t (``gradtx.scale_by_radam``), once
    ``rho_t > 4``. Before that the gradient is not normalised and
    ``lr_t = 0`` (``silent_sgd_phase``: only v moves) or ``lr`` (SGD steps).

    rho_t is computed without cancellation (see ``gradtx.scale_by_radam``);
    the package's own formula agrees to about 1e-12 in float64.
    ``optimizer.eval()`` is ``gradtx.schedule_free_eval_params(state, params)``.

    Args:
        lr: a number or a schedule, >= 0. Default 0.0025.
        betas: ``(b1, b2)``, b1 the interpolation in (0, 1], b2 in (0, 1).
            Default (0.9, 0.999).
        eps: >= 0. Default 1e-8.
        weight_decay: decoupled decay at y, >= 0. Default 0.0.
        r: the power of t in the averaging weights, finite. Default 0.0.
        weight_lr_power: the power of the peak rate in the weights, >= 0. Default 2.0.
        foreach: accepted and ignored.
        silent_sgd_phase: no step before rho_t > 4 (else SGD steps). Default True.

    Reference: the ``schedulefree`` package 1.4.1, ``RAdamScheduleFree``; Defazio et al., *The Road
    Less Scheduled*, NeurIPS 2024, arXiv:2405.15682.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import pytorch
    >>> tx = pytorch.radam_schedule_free(lr=0.1, silent_sgd_phase=False)
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # schedulefree gives the same, train() then eval()
    ...     updates, state = tx.update({"w": jnp.array(2.0)}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> x = gradtx.schedule_free_eval_params(state, params)
    >>> round(float(params["w"]), 4), round(float(x["w"]), 4)
    (0.69, 0.7)
    """
    del foreach
    _check_nonnegative("radam_schedule_free", lr=lr, weight_decay=weight_decay)
    b1, b2 = betas
    rate = RectifiedRate(learning_rate=lr, b2=b2, silent_sgd_phase=silent_sgd_phase)
    base = [ScaleByRmsOnceRectified(b2=b2, eps=eps), add_decayed_weights(weight_decay)]
    return _schedule_free("radam_schedule_free", base, rate, b1, r, weight_lr_power)
