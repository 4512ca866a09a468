"""keras.optimizers' classes (SGD ... Lion) as chains of gradtx primitives."""

from __future__ import annotations

from typing import Any

from ..._adam import scale_by_adam, scale_by_adamax, scale_by_amsgrad, scale_by_nadam
from ..._adaptive import scale_by_adadelta, scale_by_rms, scale_by_rss
from ..._base import Transform
from ..._clipping import clip, clip_by_block_norm, clip_by_global_norm
from ..._combine import Chain, chain, identity, named_recipe, recipe
from ..._ftrl import ftrl_proximal
from ..._momentum import trace
from ..._regularize import add_decoupled_weight_decay
from ..._scale import scale_by_learning_rate
from ..._sign import scale_by_lion
from ._wrappers import (
    _BASE_OPTIONS,
    DecayParamsFirst,
    documents_base_options,
    weight_decay_mask,
    with_base_options,
)


def _base_options(arguments: dict[str, Any]) -> dict[str, Any]:
    """Keras's base options among a factory's arguments: clipping, weight decay and the
    options of ``with_base_options`` (the names of ``_wrappers._BASE_OPTIONS``), plus
    ``exclude_from_weight_decay``. Every one is ported: none is refused here.
    """
    return {name: arguments[name] for name in (*_BASE_OPTIONS, "exclude_from_weight_decay")}


def _apply(
    label: str, step: list[Transform], arguments: dict[str, Any], *, decay: str = "after"
) -> Transform:
    """Keras's ``BaseOptimizer.apply`` around ``step``: clip, the step, decoupled weight decay,
    inside the base options (``with_base_options``).

    ``arguments`` is the factory's ``locals()``: ``learning_rate`` and the base options
    (:func:`_base_options`) are read there under Keras's names. The decay skips the
    leaves ``exclude_from_weight_decay`` names (``weight_decay_mask``). ``decay`` says
    where it goes: ``"after"`` the step; ``"first"``, applied to the params before a step
    that reads them (:class:`DecayParamsFirst`), as Keras decays the variables first;
    ``"inside"``, nowhere here, for a step that decays on its own (Muon's two groups).
    """
    options = _base_options(arguments)
    learning_rate = arguments["learning_rate"]
    weight_decay = options.pop("weight_decay")
    mask = weight_decay_mask(label, options.pop("exclude_from_weight_decay"))
    clip_args = {arg: options.pop(arg) for arg in ("clipnorm", "clipvalue", "global_clipnorm")}
    if sum(value is not None for value in clip_args.values()) > 1:  # Keras's rule, 0 counts
        given = ", ".join(f"{arg}={value!r}" for arg, value in clip_args.items())
        raise ValueError(
            f"keras.{label}({given}): only one of clipnorm, clipvalue and global_clipnorm "
            "can be set"
        )
    clipnorm, clipvalue, global_clipnorm = clip_args.values()
    if clipnorm:
        clipping = clip_by_block_norm(clipnorm)
    elif global_clipnorm:
        clipping = clip_by_global_norm(global_clipnorm)
    elif clipvalue:
        clipping = clip(clipvalue)
    else:
        clipping = identity()
    decay_after = identity()
    if weight_decay and decay == "first":
        step = [
            DecayParamsFirst(
                inner=chain(*step),
                weight_decay=weight_decay,
                learning_rate=learning_rate,
                mask=mask,
            )
        ]
    elif weight_decay and decay == "after":
        decay_after = add_decoupled_weight_decay(weight_decay, learning_rate, mask)
    recipe = named_recipe(f"keras.{label}", clipping, *step, decay_after)
    return with_base_options(label, recipe, learning_rate, **options)


@recipe
@documents_base_options
def sgd(
    learning_rate: Any = 0.01,
    momentum: float = 0.0,
    nesterov: bool = False,
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
    """``keras.optimizers.SGD``: the learning rate sits inside the velocity.

    Update rule (Keras 3)::

        v_t = momentum * v_{t-1} - lr_t * g;   p <- p + v_t
        nesterov: p <- p + momentum * v_t - lr_t * g

    Args:
        learning_rate: a number or a gradtx schedule, >= 0. Default 0.01.
        momentum: in [0, 1]. Default 0.0.
        nesterov: Nesterov momentum. Default False.
        weight_decay: decoupled decay ``p -= p * weight_decay * lr_t``, >= 0, or None.
            Default None.
        <Keras's base options>

    Reference: Keras 3.15, ``keras.optimizers.SGD``; Sutskever et al., *On the importance of
    initialization and momentum in deep learning*, ICML 2013.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import keras
    >>> tx = keras.sgd(learning_rate=0.1, momentum=0.9)
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # keras.optimizers.SGD gives the same
    ...     updates, state = tx.update({"w": jnp.array(2.0)}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> round(float(params["w"]), 4)
    0.42
    """
    del name
    if not 0 <= momentum <= 1:
        raise ValueError(f"keras.sgd(momentum={momentum!r}): momentum must be in [0, 1]")
    step = [scale_by_learning_rate(learning_rate)]
    if momentum:
        step.append(trace(momentum, nesterov=nesterov))
    return _apply("sgd", step, locals())


@recipe
@documents_base_options
def adagrad(
    learning_rate: Any = 0.001,
    initial_accumulator_value: float = 0.1,
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
    """``keras.optimizers.Adagrad``: eps inside the root, accumulator from 0.1.

    Update rule::

        s_t = s_{t-1} + g**2;   p <- p - lr_t * g / sqrt(s_t + epsilon)

    Args:
        learning_rate: a number or a gradtx schedule, >= 0. Default 0.001.
        initial_accumulator_value: s_0, >= 0. Default 0.1.
        epsilon: >= 0, not 0 together with initial_accumulator_value. Default 1e-7.
        weight_decay: decoupled decay ``p -= p * weight_decay * lr_t``, >= 0, or None.
            Default None.
        <Keras's base options>

    Reference: Keras 3.15, ``keras.optimizers.Adagrad``; Duchi, Hazan, Singer, *Adaptive
    Subgradient Methods*, JMLR 2011.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import keras
    >>> tx = keras.adagrad(learning_rate=0.1)
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # keras.optimizers.Adagrad gives the same
    ...     updates, state = tx.update({"w": jnp.array(2.0)}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> round(float(params["w"]), 4)
    0.831
    """
    del name
    step = [scale_by_rss(initial_accumulator_value, epsilon), scale_by_learning_rate(learning_rate)]
    return _apply("adagrad", step, locals())


@recipe
@documents_base_options
def rmsprop(
    learning_rate: Any = 0.001,
    rho: float = 0.9,
    momentum: float = 0.0,
    epsilon: float = 1e-7,
    centered: bool = False,
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
    """``keras.optimizers.RMSprop``: eps inside the root, lr inside the momentum.

    Update rule::

        v_t = rho v_{t-1} + (1 - rho) g**2;   d = lr_t g / sqrt(v_t [- m_t**2] + epsilon)
        b_t = momentum b_{t-1} + d  (if momentum > 0; else b_t = d);   p <- p - b_t

    Args:
        learning_rate: a number or a gradtx schedule, >= 0. Default 0.001.
        rho: decay of v, in [0, 1]. Default 0.9.
        momentum: at most 1; at or below 0 there is no momentum (a negative value
            is not refused). Default 0.0.
        epsilon: > 0. Default 1e-7.
        centered: subtract the squared mean gradient m_t**2 from v_t. Default False.
        weight_decay: decoupled decay ``p -= p * weight_decay * lr_t``, >= 0, or None.
            Default None.
        <Keras's base options>

    Reference: Keras 3.15, ``keras.optimizers.RMSprop``; Tieleman & Hinton, Lecture 6.5 (2012).

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import keras
    >>> tx = keras.rmsprop(learning_rate=0.01)
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # keras.optimizers.RMSprop gives the same
    ...     updates, state = tx.update({"w": jnp.array(2.0)}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> round(float(params["w"]), 4)
    0.9454
    """
    del name
    step = [
        scale_by_rms(rho, epsilon, centered=centered),
        scale_by_learning_rate(learning_rate),
    ]
    if momentum > 0:
        step.append(trace(momentum))
    return _apply("rmsprop", step, locals())


@recipe
@documents_base_options
def adadelta(
    learning_rate: Any = 0.001,
    rho: float = 0.95,
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
    """``keras.optimizers.Adadelta`` (default learning rate 0.001, not the paper's 1.0).

    Update rule: :func:`gradtx.scale_by_adadelta`, then ``p <- p - lr_t * d``.

    Args:
        learning_rate: a number or a gradtx schedule, >= 0. Default 0.001.
        rho: in [0, 1]. Default 0.95.
        epsilon: > 0. Default 1e-7.
        weight_decay: decoupled decay ``p -= p * weight_decay * lr_t``, >= 0, or None.
            Default None.
        <Keras's base options>

    Reference: Keras 3.15, ``keras.optimizers.Adadelta``; Zeiler, *ADADELTA*, arXiv:1212.5701.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import keras
    >>> tx = keras.adadelta(learning_rate=1.0)
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # keras.optimizers.Adadelta gives the same
    ...     updates, state = tx.update({"w": jnp.array(2.0)}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> round(float(params["w"]), 4)
    0.9972
    """
    del name
    step = [scale_by_adadelta(rho, epsilon), scale_by_learning_rate(learning_rate)]
    return _apply("adadelta", step, locals())


def _adam_scaling(beta_1: float, beta_2: float, epsilon: float, amsgrad: bool) -> Transform:
    """Keras's Adam step: epsilon before bias correction; AMSGrad's max of the raw v."""
    if amsgrad:
        return scale_by_amsgrad(beta_1, beta_2, epsilon, max_of="raw", eps_mode="raw")
    return scale_by_adam(beta_1, beta_2, epsilon, eps_mode="raw")


@recipe
@documents_base_options
def adam(
    learning_rate: Any = 0.001,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-7,
    amsgrad: bool = False,
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
    """``keras.optimizers.Adam``: epsilon added before bias correction ("epsilon hat").

    Update rule::

        alpha_t = lr_t * sqrt(1 - b2**t) / (1 - b1**t)
        v' = max(v'_{t-1}, v_t) if amsgrad else v_t          (max of the raw v)
        p <- p - alpha_t * m_t / (sqrt(v') + epsilon)

    Args:
        learning_rate: a number or a gradtx schedule, >= 0. Default 0.001.
        beta_1: in [0, 1). Default 0.9.
        beta_2: in [0, 1). Default 0.999.
        epsilon: > 0. Default 1e-7.
        amsgrad: use the running maximum of v. Default False.
        weight_decay: decoupled decay ``p -= p * weight_decay * lr_t``, >= 0, or None.
            Default None.
        <Keras's base options>

    Reference: Keras 3.15, ``keras.optimizers.Adam``; Kingma & Ba, arXiv:1412.6980.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import keras
    >>> tx = keras.adam(learning_rate=0.1)
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # keras.optimizers.Adam gives the same
    ...     updates, state = tx.update({"w": jnp.array(2.0)}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> round(float(params["w"]), 4)
    0.8
    """
    del name
    step = [_adam_scaling(beta_1, beta_2, epsilon, amsgrad), scale_by_learning_rate(learning_rate)]
    return _apply("adam", step, locals())


@recipe
@documents_base_options
def adamw(
    learning_rate: Any = 0.001,
    weight_decay: float = 0.004,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-7,
    amsgrad: bool = False,
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
    """``keras.optimizers.AdamW``: :func:`adam` with weight decay 0.004 by default.

    Update rule::

        p <- p - p * weight_decay * lr_t;  then the step of :func:`adam`

    Args:
        learning_rate: a number or a gradtx schedule, >= 0. Default 0.001.
        weight_decay: decoupled decay ``p -= p * weight_decay * lr_t``, >= 0 (None is
            refused). Default 0.004.
        beta_1: in [0, 1). Default 0.9.
        beta_2: in [0, 1). Default 0.999.
        epsilon: > 0. Default 1e-7.
        amsgrad: use the running maximum of v. Default False.
        <Keras's base options>

    Reference: Keras 3.15, ``keras.optimizers.AdamW``; Loshchilov & Hutter, *Decoupled
    Weight Decay Regularization*, arXiv:1711.05101.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import keras
    >>> tx = keras.adamw(learning_rate=0.1)
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # keras.optimizers.AdamW gives the same
    ...     updates, state = tx.update({"w": jnp.array(2.0)}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> round(float(params["w"]), 4)
    0.7992
    """
    del name
    if weight_decay is None:
        raise ValueError("keras.adamw(weight_decay=None): AdamW needs a weight decay")
    step = [_adam_scaling(beta_1, beta_2, epsilon, amsgrad), scale_by_learning_rate(learning_rate)]
    return _apply("adamw", step, locals())


@recipe
@documents_base_options
def adamax(
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
    """``keras.optimizers.Adamax``: epsilon added to the norm, outside the max.

    Update rule::

        n_t = max(b2 n_{t-1}, |g|);   p <- p - lr_t m_t / ((1 - b1**t) (n_t + epsilon))

    Args:
        learning_rate: a number or a gradtx schedule, >= 0. Default 0.001.
        beta_1: in [0, 1). Default 0.9.
        beta_2: in [0, 1). Default 0.999.
        epsilon: > 0. Default 1e-7.
        weight_decay: decoupled decay ``p -= p * weight_decay * lr_t``, >= 0, or None.
            Default None.
        <Keras's base options>

    Reference: Keras 3.15, ``keras.optimizers.Adamax``; Kingma & Ba, arXiv:1412.6980, section 7.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import keras
    >>> tx = keras.adamax(learning_rate=0.1)
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # keras.optimizers.Adamax gives the same
    ...     updates, state = tx.update({"w": jnp.array(2.0)}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> round(float(params["w"]), 4)
    0.8
    """
    del name
    step = [
        scale_by_adamax(beta_1, beta_2, epsilon, eps_in_max=False),
        scale_by_learning_rate(learning_rate),
    ]
    return _apply("adamax", step, locals())


@recipe
@documents_base_options
def nadam(
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
    """``keras.optimizers.Nadam``: Dozat's schedule with ``0.96**t`` (momentum_decay 1).

    Update rule: :func:`gradtx.scale_by_nadam` with ``momentum_decay=1``, then
    ``p <- p - lr_t * u``. (Keras 2's legacy Nadam and PyTorch use 0.96**(0.004 t).)

    Args:
        learning_rate: a number or a gradtx schedule, >= 0. Default 0.001.
        beta_1: in [0, 1). Default 0.9.
        beta_2: in [0, 1). Default 0.999.
        epsilon: > 0. Default 1e-7.
        weight_decay: decoupled decay ``p -= p * weight_decay * lr_t``, >= 0, or None.
            Default None.
        <Keras's base options>

    Reference: Keras 3.15, ``keras.optimizers.Nadam``; Dozat, *Incorporating Nesterov
    Momentum into Adam*, ICLR workshop 2016.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import keras
    >>> tx = keras.nadam(learning_rate=0.1)
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # keras.optimizers.Nadam gives the same
    ...     updates, state = tx.update({"w": jnp.array(2.0)}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> round(float(params["w"]), 4)
    0.8164
    """
    del name
    step = [
        scale_by_nadam(beta_1, beta_2, epsilon, momentum_decay=1.0),
        scale_by_learning_rate(learning_rate),
    ]
    return _apply("nadam", step, locals())


@recipe
@documents_base_options
def lion(
    learning_rate: Any = 0.001,
    beta_1: float = 0.9,
    beta_2: float = 0.99,
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
    """``keras.optimizers.Lion``.

    Update rule::

        p <- p - lr_t * sign(b1 m_{t-1} + (1 - b1) g);   m_t = b2 m_{t-1} + (1 - b2) g

    As in Keras, ``beta_1`` must be in (0, 1]: at 0 Lion is sign SGD.

    Args:
        learning_rate: a number or a gradtx schedule, >= 0. Default 0.001.
        beta_1: in (0, 1]. Default 0.9.
        beta_2: in [0, 1]. Default 0.99.
        weight_decay: decoupled decay ``p -= p * weight_decay * lr_t``, >= 0, or None.
            Default None.
        <Keras's base options>

    Reference: Keras 3.15, ``keras.optimizers.Lion``; Chen et al., *Symbolic Discovery of
    Optimization Algorithms*, arXiv:2302.06675.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import keras
    >>> tx = keras.lion(learning_rate=0.1)
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # keras.optimizers.Lion gives the same
    ...     updates, state = tx.update({"w": jnp.array(2.0)}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> round(float(params["w"]), 4)
    0.8
    """
    del name
    if not 0 < beta_1 <= 1:
        raise ValueError(
            f"keras.lion(beta_1={beta_1!r}): beta_1 must be in (0, 1]; at 0 the "
            "optimizer degenerates to SignSGD"
        )
    step = [scale_by_lion(beta_1, beta_2), scale_by_learning_rate(learning_rate)]
    return _apply("lion", step, locals())


@recipe
@documents_base_options
def ftrl(
    learning_rate: Any = 0.001,
    learning_rate_power: float = -0.5,
    initial_accumulator_value: float = 0.1,
    l1_regularization_strength: float = 0.0,
    l2_regularization_strength: float = 0.0,
    l2_shrinkage_regularization_strength: float = 0.0,
    beta: float = 0.0,
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
    """``keras.optimizers.Ftrl``: FTRL-Proximal (:func:`gradtx.ftrl_proximal`).

    Keras decays the variable (``weight_decay``) before FTRL reads it, so FTRL
    steps from the decayed params here (:class:`DecayParamsFirst`).

    Args:
        learning_rate: a number or a gradtx schedule, > 0. Default 0.001.
        learning_rate_power: <= 0. Default -0.5.
        initial_accumulator_value: >= 0. Default 0.1.
        l1_regularization_strength: >= 0. Default 0.0.
        l2_regularization_strength: >= 0. Default 0.0.
        l2_shrinkage_regularization_strength: >= 0. Default 0.0.
        beta: >= 0. Default 0.0.
        weight_decay: decoupled decay ``p -= p * weight_decay * lr_t``, >= 0, or None.
            Default None.
        <Keras's base options>

    Reference: Keras 3.15, ``keras.optimizers.Ftrl``; McMahan et al., *Ad Click Prediction:
    a View from the Trenches*, KDD 2013.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import keras
    >>> tx = keras.ftrl(learning_rate=0.1)
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # keras.optimizers.Ftrl gives the same
    ...     updates, state = tx.update({"w": jnp.array(2.0)}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> round(float(params["w"]), 4)
    0.6748
    """
    del name
    step = [
        ftrl_proximal(
            learning_rate,
            learning_rate_power,
            initial_accumulator_value,
            l1_regularization_strength,
            l2_regularization_strength,
            l2_shrinkage_regularization_strength,
            beta,
        )
    ]
    return _apply("ftrl", step, locals(), decay="first")
