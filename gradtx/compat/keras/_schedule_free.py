"""keras.optimizers.ScheduleFreeAdamW as a gradtx Schedule-Free wrapper."""

from __future__ import annotations

from typing import Any

from ..._adaptive import scale_by_rms
from ..._combine import Chain, recipe
from ..._scale import scale_by_learning_rate
from ..._schedule_free import schedule_free, ScheduleFreeWarmup
from ._optimizers import _apply
from ._wrappers import DecayParamsFirst as DecayParamsFirst  # where it was first defined
from ._wrappers import DecayParamsFirstState as DecayParamsFirstState
from ._wrappers import documents_base_options


@recipe
@documents_base_options
def schedule_free_adamw(
    learning_rate: Any = 0.0025,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-8,
    warmup_steps: int = 0,
    weight_decay: float | None = None,
    clipnorm: float | None = None,
    clipvalue: float | None = None,
    global_clipnorm: float | None = None,
    use_ema: bool = False,
    ema_momentum: float = 0.99,
    ema_overwrite_frequency: int | None = None,
    loss_scale_factor: float | None = None,
    gradient_accumulation_steps: int | None = None,
    name: str | None = None,
    *,
    exclude_from_weight_decay: list[str] | None = None,
) -> Chain:
    """``keras.optimizers.ScheduleFreeAdamW`` (Keras 3.15): the uniform average, no lr weights.

    Update rule (Keras 3), at step t = 1, 2, ... with y the params::

        y' = y - y * weight_decay * lr            (the decay comes first, without warmup)
        lr_t = lr * min(t / warmup_steps, 1);   v_t = b2 v + (1 - b2) g**2
        z_t = z_{t-1} - lr_t * g / (sqrt(v_t / (1 - b2**t)) + epsilon)
        x_t = (1 - 1/t) (y' - (1 - b1) z_{t-1}) / b1 + z_t / t
        y_t = b1 x_t + (1 - b1) z_t

    That is :func:`gradtx.schedule_free` with ``weight_lr_power=0`` (every
    step weighs the same; the authors and optax weigh step t by lr_max**2)
    around the decayed params (:class:`DecayParamsFirst`; the authors and
    optax add ``weight_decay * y`` to z's step instead). Keras has no
    evaluation mode: its model stays at y. ``gradtx.schedule_free_eval_params
    (state, params)`` gives x.

    Args:
        learning_rate: a number or a gradtx schedule, >= 0. Default 0.0025.
        beta_1: the interpolation b1, in (0, 1]. Default 0.9.
        beta_2: in [0, 1]. Default 0.999.
        epsilon: > 0. Default 1e-8.
        warmup_steps: steps of linear warmup, an integer >= 0. Default 0.
        weight_decay: decoupled decay ``p -= p * weight_decay * lr_t``, >= 0, or None.
            Default None.
        <Keras's base options>

    Reference: Keras 3.15, ``keras.optimizers.ScheduleFreeAdamW``; Defazio et al., *The
    Road Less Scheduled*, NeurIPS 2024, arXiv:2405.15682.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import keras
    >>> tx = keras.schedule_free_adamw(learning_rate=0.1)
    >>> params = {"w": jnp.ones((2, 2))}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # keras.optimizers.ScheduleFreeAdamW gives the same
    ...     updates, state = tx.update({"w": jnp.array([[1.0, 2.0], [3.0, 4.0]])}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> [round(float(v), 4) for v in params["w"].ravel()]
    [0.845, 0.845, 0.845, 0.845]
    """
    del name
    rate = ScheduleFreeWarmup(learning_rate=learning_rate, warmup_steps=warmup_steps)
    adam_step = Chain(
        transforms=(
            scale_by_rms(beta_2, epsilon, eps_in_sqrt=False, bias_correction=True),
            scale_by_learning_rate(rate),
        )
    )
    step = [schedule_free(adam_step, rate, beta_1, weight_lr_power=0.0, lr_one_step_ahead=False)]
    return _apply("schedule_free_adamw", step, locals(), decay="first")
