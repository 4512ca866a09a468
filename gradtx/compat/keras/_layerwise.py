"""keras.optimizers.Lamb as a chain of gradtx primitives."""

from __future__ import annotations

from typing import Any

from ..._adam import scale_by_adam
from ..._combine import Chain, recipe
from ..._layerwise import scale_by_trust_ratio
from ..._scale import scale_by_learning_rate
from ._optimizers import _apply
from ._wrappers import documents_base_options


@recipe
@documents_base_options
def lamb(
    learning_rate: Any = 0.001,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-7,
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
    """``keras.optimizers.Lamb``: Adam's step scaled per variable by its trust ratio.

    Update rule (Keras 3), per variable::

        p' = p - p * weight_decay * lr_t                    (the decay comes first)
        r_t = (m_t / (1 - b1**t)) / (sqrt(v_t / (1 - b2**t)) + epsilon)
        p <- p' - lr_t * (|p'| / |r_t|) * r_t                (ratio 1 where a norm is 0)

    Unlike ``gradtx.lamb`` (optax's), the ratio is of the Adam step alone and
    of the already decayed weights: ``|p'| = (1 - lr * weight_decay) |p|``,
    which is the trust ratio's ``trust_coefficient``. So with a
    ``weight_decay`` the learning rate must be a number (lr * weight_decay < 1);
    a schedule with a weight decay is refused, and so is
    ``exclude_from_weight_decay`` with a weight decay.

    Args:
        learning_rate: a number, >= 0, or a gradtx schedule (not with a weight decay).
            Default 0.001.
        beta_1: in [0, 1). Default 0.9.
        beta_2: in [0, 1). Default 0.999.
        epsilon: > 0. Default 1e-7.
        weight_decay: decoupled decay ``p -= p * weight_decay * lr_t``, >= 0, or None.
            Default None.
        <Keras's base options>

    Reference: Keras 3.15, ``keras.optimizers.Lamb``; You et al., *Large Batch
    Optimization for Deep Learning: Training BERT in 76 minutes*, arXiv:1904.00962.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import keras
    >>> tx = keras.lamb(learning_rate=0.1)
    >>> params = {"w": jnp.ones((2, 2))}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # keras.optimizers.Lamb gives the same
    ...     updates, state = tx.update({"w": jnp.array([[1.0, 2.0], [3.0, 4.0]])}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> [round(float(v), 4) for v in params["w"].ravel()]
    [0.81, 0.81, 0.81, 0.81]
    """
    del name
    coefficient = 1.0
    if weight_decay and exclude_from_weight_decay:
        # One trust coefficient for every leaf; excluded leaves would need 1.
        raise ValueError(
            f"keras.lamb(weight_decay={weight_decay!r}, exclude_from_weight_decay="
            f"{exclude_from_weight_decay!r}): not ported; gradtx.compat.keras.lamb decays "
            "every variable (Keras takes the trust ratio of the decayed weights)"
        )
    if weight_decay:
        if callable(learning_rate):
            raise ValueError(
                f"keras.lamb(learning_rate={learning_rate!r}, weight_decay={weight_decay!r}): "
                "Keras takes the trust ratio of weights already decayed by lr_t * weight_decay; "
                "gradtx.compat.keras.lamb reproduces that for a constant learning rate only"
            )
        coefficient = 1.0 - learning_rate * weight_decay
        if not coefficient > 0:
            raise ValueError(
                f"keras.lamb(learning_rate={learning_rate!r}, weight_decay={weight_decay!r}): "
                "learning_rate * weight_decay must be below 1 (the decay would zero or flip "
                "the weights at every step)"
            )
    step = [
        scale_by_adam(beta_1, beta_2, epsilon),
        scale_by_trust_ratio(trust_coefficient=coefficient),
        scale_by_learning_rate(learning_rate),
    ]
    return _apply("lamb", step, locals())
