"""keras.optimizers.Adafactor as a chain of gradtx primitives."""

from __future__ import annotations

from typing import Any

from ..._clipping import clip_by_block_rms
from ..._combine import Chain, recipe
from ..._factored import relative_step_size, scale_by_factored_rms, scale_by_param_block_rms
from ..._scale import scale_by_learning_rate
from ._optimizers import _apply
from ._wrappers import documents_base_options


@recipe
@documents_base_options
def adafactor(
    learning_rate: Any = 0.001,
    beta_2_decay: float = -0.8,
    epsilon_1: float = 1e-30,
    epsilon_2: float = 1e-3,
    clip_threshold: float = 1.0,
    relative_step: bool = True,
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
    """``keras.optimizers.Adafactor``: the last two axes factored, the step capped at 1/sqrt(t).

    Update rule (Keras 3), at step t = 1, 2, ...::

        p' = p - p * weight_decay * lr_t                    (the decay comes first)
        beta_t = 1 - t**beta_2_decay;   rho_t = min(lr_t, 1 / sqrt(t))
        rank >= 2: R_t = beta_t R + (1 - beta_t) mean_{-1}(g**2 + epsilon_1)
                   C_t = beta_t C + (1 - beta_t) mean_{-2}(g**2 + epsilon_1)
                   V = (R_t / mean_{-1}(R_t)) C_t
        else:      V = v_t = beta_t v + (1 - beta_t) (g**2 + epsilon_1)
        u = g / sqrt(V);   u <- u / max(1, rms(u) / clip_threshold)
        p <- p' - rho_t * max(rms(p'), epsilon_2) * u

    Every leaf of rank >= 2 is factored over its last two axes, whatever their
    sizes. ``relative_step`` is accepted and changes nothing: Keras caps the rate
    at ``1/sqrt(t)`` whether it is set or not, and for schedules too. The
    parameter scale is the RMS of the already decayed weights (the step runs
    on them, ``DecayParamsFirst``).

    Unlike :func:`gradtx.adafactor` (optax: the two largest axes of size >= 128
    factored, no cap on the step, no decay inside the RMS) and
    ``gradtx.compat.pytorch.adafactor`` (torch: eps clamped rather than added,
    the parameter RMS of the weights before the decay).

    Args:
        learning_rate: a number or a gradtx schedule, >= 0. Default 0.001.
        beta_2_decay: the exponent of beta_t, <= 0. Default -0.8.
        epsilon_1: added to g**2, > 0. Default 1e-30.
        epsilon_2: floor of rms(p'), >= 0. Default 1e-3.
        clip_threshold: the bound on rms(u), >= 0. Default 1.0.
        relative_step: accepted; changes nothing (see above). Default True.
        weight_decay: decoupled decay ``p -= p * weight_decay * lr_t``, >= 0, or None.
            Default None.
        <Keras's base options>

    Reference: Keras 3.15, ``keras.optimizers.Adafactor``; Shazeer & Stern, *Adafactor:
    Adaptive Learning Rates with Sublinear Memory Cost*, arXiv:1804.04235.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import keras
    >>> tx = keras.adafactor(learning_rate=0.1)
    >>> params = {"w": jnp.ones((2, 2))}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # keras.optimizers.Adafactor gives the same
    ...     updates, state = tx.update({"w": jnp.array([[1.0, 2.0], [3.0, 4.0]])}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> [round(float(v), 4) for v in params["w"].ravel()]
    [0.8526, 0.7916, 0.8022, 0.8136]
    """
    del name, relative_step  # Keras applies min(lr, 1/sqrt(t)) with or without it
    if beta_2_decay > 0:
        raise ValueError(
            f"keras.adafactor(beta_2_decay={beta_2_decay!r}): beta_2_decay must be <= 0 "
            "(beta_t = 1 - t**beta_2_decay is negative otherwise)"
        )
    step = [
        scale_by_factored_rms(
            decay_rate=-beta_2_decay,
            epsilon=epsilon_1,
            min_dim_size_to_factor=1,
            factor_axes="last",
        ),
        clip_by_block_rms(clip_threshold),
        scale_by_param_block_rms(epsilon_2),
        scale_by_learning_rate(relative_step_size(learning_rate)),
    ]
    return _apply("adafactor", step, locals(), decay="first")
