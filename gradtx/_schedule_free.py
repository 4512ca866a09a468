"""Schedule-Free: interpolation and averaging in place of momentum and a decaying schedule."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._adaptive import scale_by_rms
from ._base import check_range, Schedule, static, Transform
from ._combine import as_transform, chain, MaskedNode, recipe
from ._momentum import sgd
from ._regularize import _require_params, add_decayed_weights
from ._scale import scale_by_learning_rate, value_at
from ._schedules import warmup_constant_schedule
from ._state import _children
from ._tree import default_float, hp, safe_increment, tree_map_unzip, up


class ScheduleFreeState(NamedTuple):
    """optax's fields: ``z`` the base optimizer's sequence; the params are y.

    ``step_count`` is the number of the next step (from 1); ``b1`` is the one
    the last step mixed y with, which :func:`schedule_free_eval_params` needs.
    """

    b1: jax.Array
    weight_sum: jax.Array
    step_count: jax.Array
    max_lr: jax.Array
    base_optimizer_state: Any
    z: Any


class ScheduleFree(Transform):
    """Runs ``base_optimizer`` on z; the params become y, a mix of z and the average x."""

    elementwise = True
    integer_leaves = "refuse"  # it does arithmetic on the params

    base_optimizer: Transform
    learning_rate: Any
    b1: Any = 0.9
    weight_lr_power: Any = 2.0
    weight_step_power: Any = 0.0
    lr_one_step_ahead: bool = static(True)
    state_dtype: Any = static(None)

    def __post_init__(self):
        object.__setattr__(self, "base_optimizer", as_transform(self.base_optimizer))
        check_range(self, "learning_rate", low=0.0)
        check_range(self, "b1", low=0.0, high=1.0, low_open=True)
        check_range(self, "weight_lr_power", low=0.0)
        check_range(self, "weight_step_power")
        if self.state_dtype is not None:
            object.__setattr__(self, "state_dtype", jnp.dtype(self.state_dtype))

    def init(self, params):
        floats = default_float()
        z = jax.tree.map(lambda p: jnp.array(p, dtype=self.state_dtype or p.dtype), params)
        return ScheduleFreeState(
            b1=jnp.asarray(self.b1, floats),
            weight_sum=jnp.zeros([], floats),
            step_count=jnp.ones([], jnp.int32),
            max_lr=jnp.zeros([], floats),
            base_optimizer_state=self.base_optimizer.init(params),
            z=z,
        )

    def update(self, updates, state, params=None, **extra_args):
        _require_params(self, params)
        t = state.step_count
        lr = value_at(self.learning_rate, t if self.lr_one_step_ahead else t - 1)
        max_lr = jnp.maximum(state.max_lr, lr)
        floats = default_float()
        weight = t.astype(floats) ** jnp.asarray(self.weight_step_power, floats) * max_lr ** (
            jnp.asarray(self.weight_lr_power, floats)
        )
        weight_sum = state.weight_sum + weight
        c = jnp.where(weight_sum == 0, 0.0, weight / weight_sum)  # 0 while every rate is 0
        steps, base_state = self.base_optimizer.update(
            updates, state.base_optimizer_state, params, **extra_args
        )

        def leaf(g, step, y, z):
            # y_t - y_{t-1} without forming x: no difference of two nearly equal params.
            b1, ct, step = hp(self.b1, y), hp(c, y), up(step)
            u = ct * (up(z) - up(y)) + (1 - b1 * (1 - ct)) * step
            return u.astype(g.dtype), (up(z) + step).astype(z.dtype)

        updates, z = tree_map_unzip(leaf, updates, steps, params, state.z)
        new_state = ScheduleFreeState(
            b1=jnp.asarray(self.b1, floats),
            weight_sum=weight_sum,
            step_count=safe_increment(t),
            max_lr=max_lr,
            base_optimizer_state=base_state,
            z=z,
        )
        return updates, new_state


def schedule_free(
    base_optimizer: Any,
    learning_rate: Any,
    b1: float = 0.9,
    weight_lr_power: float = 2.0,
    state_dtype: Any = None,
    *,
    weight_step_power: float = 0.0,
    lr_one_step_ahead: bool = True,
) -> ScheduleFree:
    """Schedule-Free around any optimizer, as ``optax.contrib.schedule_free``.

    Update rule, with y the params, z the base optimizer's iterate and x the
    average to evaluate at (t = 1, 2, ...)::

        lr_max = max(lr_max, learning_rate(t))        (t - 1 when not lr_one_step_ahead)
        c_t = t**weight_step_power * lr_max**weight_lr_power / (sum of those weights)
        z_t = z_{t-1} + base_optimizer(g_t at y_{t-1})
        x_t = (1 - c_t) x_{t-1} + c_t z_t,   x_{t-1} = (y_{t-1} - (1 - b1) z_{t-1}) / b1
        y_t = b1 x_t + (1 - b1) z_t
            = y_{t-1} + c_t (z_{t-1} - y_{t-1}) + (1 - b1 (1 - c_t)) (z_t - z_{t-1})

    The last form is how the update is computed, without forming x.
    The base optimizer must have no momentum (``b1`` replaces it) and a
    constant rate after its warmup: ``learning_rate`` must be the rate it
    uses, for the weights. b1 in (0, 1]. ``state_dtype`` stores z (default:
    the params' dtype). Evaluate at :func:`schedule_free_eval_params` (and
    see its note on batch normalisation).

    Differences from optax: the scalars (b1, the weights) are float32 (float64
    under x64), not the params' dtype (bfloat16 rounds b1 = 0.9 to 0.8984);
    the updates have the gradients' dtype. optax forms y_t, then subtracts
    y_{t-1}: in float32 its trajectory leaves its own float64 one by 1e-5
    over 120 Adam steps, gradtx's by 1e-6. optax evaluates the rate for the
    weights one step ahead of the base optimizer's count: with a warmup the
    weights of step t use the rate of step t + 1. The authors' package uses
    one rate for both (``lr_one_step_ahead=False``, as ``gradtx.compat``);
    ``weight_step_power`` is their ``r``.

    Args:
        base_optimizer: a gradtx or optax transform without momentum, run on z.
        learning_rate: the base optimizer's rate, a number or a schedule, >= 0; it
            sets the averaging weights.
        b1: interpolation between z and the average x, in (0, 1]. Default 0.9.
        weight_lr_power: power of the peak rate in the weights, >= 0. Default 2.0.
        state_dtype: dtype z is stored in, None for the params'. Default None.
        weight_step_power: power of t in the weights, finite. Default 0.0.
        lr_one_step_ahead: read the rate for the weights at t (optax) rather than
            t - 1 (the authors). Default True.

    Reference: Defazio, Yang, Mehta, Mishchenko, Khaled, Cutkosky, *The Road
    Less Scheduled*, NeurIPS 2024, arXiv:2405.15682.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.schedule_free(gradtx.sgd(0.5), learning_rate=0.5, b1=0.5)
    >>> params = {"w": jnp.asarray(2.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # on w**2 / 2, whose gradient is w
    ...     updates, state = tx.update(params, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> float(params["w"]), float(gradtx.schedule_free_eval_params(state, params)["w"])
    (0.625, 0.75)
    """
    return ScheduleFree(
        base_optimizer=base_optimizer,
        learning_rate=learning_rate,
        b1=b1,
        weight_lr_power=weight_lr_power,
        weight_step_power=weight_step_power,
        lr_one_step_ahead=lr_one_step_ahead,
        state_dtype=state_dtype,
    )


def _schedule_free_states(state: Any) -> list[ScheduleFreeState]:
    """Every ScheduleFreeState in ``state``: in chains, masks, multi_tensor (as per-leaf trees)."""
    if isinstance(state, ScheduleFreeState):
        return [state]
    return [found for _, child in _children(state) for found in _schedule_free_states(child)]


def schedule_free_eval_params(state: Any, params: Any) -> Any:
    """The point to evaluate at, x, from the training params y and the state.

    Formula, for every leaf a schedule-free optimizer in ``state`` updates
    (other leaves are returned as they are)::

        x = (y - (1 - b1) z) / b1

    ``state`` is the whole optimizer state: a :class:`ScheduleFreeState` or
    any state holding one (chains, ``masked``, ``partition``,
    ``multi_tensor``, ``inject_hyperparams``). The result has the params'
    structure and dtypes (optax: z's dtype where it is wider). It is the
    authors' ``optimizer.eval()``; keep training from y (``optimizer.train()``).

    Batch normalisation: running statistics gathered during training belong
    to y, not x. Recompute them at x (a few training-mode forward passes with
    the evaluation params) before evaluating, as the authors recommend.

    Args:
        state: the optimizer's state, holding one or more :class:`ScheduleFreeState`.
        params: the training params y.

    Reference: Defazio et al., *The Road Less Scheduled*, arXiv:2405.15682;
    ``optax.contrib.schedule_free_eval_params``.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.schedule_free_sgd(0.5, b1=0.5)
    >>> params = {"w": jnp.asarray(2.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # on w**2 / 2, whose gradient is w
    ...     updates, state = tx.update(params, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> x = gradtx.schedule_free_eval_params(state, params)
    >>> round(float(params["w"]), 4), round(float(x["w"]), 4)
    (0.625, 0.75)
    """
    found = _schedule_free_states(state)
    if not found:
        raise ValueError(
            "schedule_free_eval_params: the state holds no ScheduleFreeState; pass the state "
            "of an optimizer built with schedule_free (schedule_free_sgd, schedule_free_adamw, "
            "a gradtx.compat port)"
        )

    def leaf(z, y, b1):
        if isinstance(z, MaskedNode):  # a leaf this optimizer does not update
            return y
        b1, y32 = b1.astype(up(y).dtype), up(y)
        return ((y32 - (1 - b1) * up(z)) / b1).astype(jnp.result_type(y))

    for sf in found:
        params = jax.tree.map(
            lambda z, y, b1=sf.b1: leaf(z, y, b1),
            sf.z,
            params,
            is_leaf=lambda x: isinstance(x, MaskedNode),
        )
    return params


class ScheduleFreeWarmup(Schedule):
    """``learning_rate(k) * min((k + 1) / warmup_steps, 1)`` at the 0-based step k.

    The linear warmup of the authors' package and of Keras, which reach the
    full rate at step ``warmup_steps`` (optax's ``warmup_constant_schedule``
    one step later); 0 means no warmup.
    """

    learning_rate: Any
    warmup_steps: Any = 0

    def __post_init__(self):
        check_range(self, "learning_rate", low=0.0)
        check_range(self, "warmup_steps", low=0, integer=True)

    def __call__(self, count):
        k = jnp.asarray(count, default_float())
        warmup = jnp.asarray(self.warmup_steps, default_float())
        factor = jnp.where(k < warmup, (k + 1) / jnp.maximum(warmup, 1), 1.0)
        return value_at(self.learning_rate, count) * factor


def _with_warmup(learning_rate: Any, warmup_steps: int | None) -> Any:
    if warmup_steps is None:
        return learning_rate
    return warmup_constant_schedule(0.0, learning_rate, warmup_steps)


@recipe
def schedule_free_sgd(
    learning_rate: Any = 1.0,
    warmup_steps: int | None = None,
    b1: float = 0.9,
    weight_decay: Any = None,
    weight_lr_power: float = 2.0,
    state_dtype: Any = None,
) -> ScheduleFree:
    """Schedule-Free SGD, as ``optax.contrib.schedule_free_sgd``.

    Update rule: :func:`schedule_free` around ``sgd(lr_t)``, whose step is
    ``-lr_t * (g + weight_decay * y)``. With ``warmup_steps`` the rate is
    ``warmup_constant_schedule(0, learning_rate, warmup_steps)`` (0-based t).

    Differences from optax: ``warmup_steps=0`` trains at ``learning_rate``
    (optax's schedule then stays at 0 and nothing moves). The authors'
    ``SGDScheduleFree`` is ``gradtx.compat.pytorch.sgd_schedule_free``.

    Args:
        learning_rate: the rate, a number or a schedule, >= 0. Default 1.0.
        warmup_steps: steps of linear warmup from 0, an integer >= 0, or None for
            none. Default None.
        b1: interpolation between z and the average x (momentum's place), in (0, 1].
            Default 0.9.
        weight_decay: coupled decay added to the gradient at y, >= 0, or None for
            none. Default None.
        weight_lr_power: power of the peak rate in the averaging weights, >= 0.
            Default 2.0.
        state_dtype: dtype z is stored in, None for the params'. Default None.

    Reference: Defazio, Yang, Mehta, Mishchenko, Khaled, Cutkosky, *The Road
    Less Scheduled*, NeurIPS 2024, arXiv:2405.15682.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.schedule_free_sgd(0.5, b1=0.5)
    >>> params = {"w": jnp.asarray(2.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # on w**2 / 2, whose gradient is w
    ...     updates, state = tx.update(params, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> round(float(gradtx.schedule_free_eval_params(state, params)["w"]), 4)
    0.75
    """
    learning_rate = _with_warmup(learning_rate, warmup_steps)
    base = sgd(learning_rate)
    if weight_decay is not None:
        base = chain(add_decayed_weights(weight_decay), base)
    return schedule_free(base, learning_rate, b1, weight_lr_power, state_dtype)


@recipe
def schedule_free_adamw(
    learning_rate: Any = 0.0025,
    warmup_steps: int | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: Any = 0.0,
    weight_lr_power: float = 2.0,
    state_dtype: Any = None,
) -> ScheduleFree:
    """Schedule-Free AdamW, as ``optax.contrib.schedule_free_adamw``.

    Update rule: :func:`schedule_free` around AdamW without momentum::

        v_t = b2 v_{t-1} + (1 - b2) g_t**2
        z_t = z_{t-1} - lr_t * (g_t / (sqrt(v_t / (1 - b2**t)) + eps) + weight_decay * y_{t-1})

    Differences from optax: those of :func:`schedule_free_sgd`. The authors'
    ``AdamWScheduleFree`` is ``gradtx.compat.pytorch.adamw_schedule_free``,
    Keras's ``ScheduleFreeAdamW`` is ``gradtx.compat.keras.schedule_free_adamw``.

    Args:
        learning_rate: the rate, a number or a schedule, >= 0. Default 0.0025.
        warmup_steps: steps of linear warmup from 0, an integer >= 0, or None for
            none. Default None.
        b1: interpolation between z and the average x (momentum's place), in (0, 1].
            Default 0.9.
        b2: decay of the second moment, in [0, 1]. Default 0.999.
        eps: added to sqrt(v^), > 0. Default 1e-8.
        weight_decay: decoupled decay, applied at y, >= 0. Default 0.0.
        weight_lr_power: power of the peak rate in the averaging weights, >= 0.
            Default 2.0.
        state_dtype: dtype z is stored in, None for the params'. Default None.

    Reference: Defazio, Yang, Mehta, Mishchenko, Khaled, Cutkosky, *The Road
    Less Scheduled*, NeurIPS 2024, arXiv:2405.15682.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.schedule_free_adamw(0.1)
    >>> params = {"w": jnp.asarray(2.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # on w**2 / 2, whose gradient is w
    ...     updates, state = tx.update(params, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> x = gradtx.schedule_free_eval_params(state, params)
    >>> round(float(params["w"]), 4), round(float(x["w"]), 4)
    (1.8464, 1.8513)
    """
    learning_rate = _with_warmup(learning_rate, warmup_steps)
    base = chain(
        scale_by_rms(b2, eps, eps_in_sqrt=False, bias_correction=True),
        add_decayed_weights(weight_decay),
        scale_by_learning_rate(learning_rate),
    )
    return schedule_free(base, learning_rate, b1, weight_lr_power, state_dtype)
