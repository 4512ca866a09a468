"""Per-coordinate adaptive scaling: RMS, root-sum-of-squares, Adadelta; their recipes."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._base import check_denominator, check_range, static, Transform
from ._combine import Chain, named_recipe, recipe
from ._momentum import trace
from ._regularize import add_decayed_weights
from ._scale import scale_by_learning_rate
from ._tree import (
    bias_correction,
    debias,
    ema,
    hp,
    safe_increment,
    tree_map_unzip,
    tree_squares_like,
    tree_zeros_like,
    up,
    zero_count,
)


class ScaleByRmsState(NamedTuple):
    count: jax.Array
    nu: Any
    mu: Any  # None unless centered


class ScaleByRms(Transform):
    """Divides by the root of a moving average of squared updates (optionally centered)."""

    elementwise = True

    decay: float = 0.9
    eps: float = 1e-8
    initial_scale: float = 0.0
    eps_in_sqrt: bool = static(True)
    bias_correction: bool = static(False)
    centered: bool = static(False)
    nu_dtype: Any = static(None)
    mu_dtype: Any = static(None)

    def __post_init__(self):
        # Debiased, decay 1 divides the average by 1 - 1**t = 0 (optax: NaN from the first step).
        check_range(self, "decay", low=0.0, high=1.0, high_open=self.bias_correction)
        check_range(self, "eps", low=0.0)
        check_range(self, "initial_scale", low=0.0)
        check_denominator(self, "eps", "initial_scale")

    def init(self, params):
        nu = tree_squares_like(params, self.initial_scale, self.nu_dtype)
        mu = tree_zeros_like(params, self.mu_dtype) if self.centered else None
        return ScaleByRmsState(zero_count(), nu, mu)

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        bc = bias_correction(self.decay, count)
        mus = state.mu if self.centered else state.nu  # unused when not centered

        def leaf(g, nu, mu):
            nu = ema(g, nu, self.decay, 2)
            nu_hat = debias(nu, bc) if self.bias_correction else up(nu)
            if self.centered:
                mu = ema(g, mu, self.decay, 1)
                mu_hat = debias(mu, bc) if self.bias_correction else up(mu)
                nu_hat = nu_hat - jnp.abs(mu_hat) ** 2
            eps = hp(self.eps, nu_hat)
            if self.eps_in_sqrt:
                scaling = jax.lax.rsqrt(nu_hat + eps)
            else:
                scaling = 1 / (jnp.sqrt(nu_hat) + eps)
            return (scaling * up(g)).astype(g.dtype), nu, mu

        updates, nu, mu = tree_map_unzip(leaf, updates, state.nu, mus)
        return updates, ScaleByRmsState(count, nu, mu if self.centered else None)


def scale_by_rms(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
    *,
    centered: bool = False,
    nu_dtype: Any = None,
    mu_dtype: Any = None,
) -> ScaleByRms:
    """Scales by the root mean square of past updates, as ``optax.scale_by_rms``.

    Update rule::

        v_t = decay * v_{t-1} + (1 - decay) * u_t**2          (v_0 = initial_scale)
        u_t <- u_t / sqrt(v_t + eps)          eps_in_sqrt (Keras, optax)
        u_t <- u_t / (sqrt(v_t) + eps)        not eps_in_sqrt (PyTorch)

    ``centered=True`` subtracts the squared mean (Graves 2013):
    ``v_t - m_t**2`` with ``m_t`` the moving average of ``u_t``. With
    ``bias_correction`` both averages are divided by ``1 - decay**t``.
    ``nu_dtype`` and ``mu_dtype`` set the averages' storage dtypes.

    Args:
        decay: decay of the average of squares, in [0, 1]; in [0, 1) with
            ``bias_correction`` (optax takes 1 there and gives NaN). Default 0.9.
        eps: stability term, >= 0. Default 1e-8.
        initial_scale: v_0, >= 0; eps and initial_scale may not both be 0. Default 0.
        eps_in_sqrt: put eps inside the root (default True) or add it after.
        bias_correction: divide the averages by ``1 - decay**t``. Default False.
        centered: subtract the squared mean. Default False.
        nu_dtype: storage dtype of v;
            None keeps the params' dtype (float32 for float16 params, whose squares underflow).
        mu_dtype: storage dtype of the mean (centered only); None keeps the params' dtype.

    Reference: Hinton, *Neural Networks for Machine Learning*, lecture 6e (2012).

    >>> import gradtx
    >>> tx = gradtx.scale_by_rms()
    >>> round(float(tx.update({"w": 2.0}, tx.init({"w": 0.0}))[0]["w"]), 4)
    3.1623
    """
    return ScaleByRms(
        decay=decay,
        eps=eps,
        initial_scale=initial_scale,
        eps_in_sqrt=eps_in_sqrt,
        bias_correction=bias_correction,
        centered=centered,
        nu_dtype=nu_dtype,
        mu_dtype=mu_dtype,
    )


@recipe
def scale_by_stddev(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> ScaleByRms:
    """The centered :func:`scale_by_rms`, under optax's name ``scale_by_stddev``.

    Update rule: ``u_t <- u_t / sqrt(v_t - m_t**2 + eps)`` (see :func:`scale_by_rms`).

    Args:
        decay: decay of both averages, in [0, 1]; in [0, 1) with ``bias_correction``.
            Default 0.9.
        eps: stability term, >= 0. Default 1e-8.
        initial_scale: v_0, >= 0; eps and initial_scale may not both be 0. Default 0.
        eps_in_sqrt: put eps inside the root (default True) or add it after.
        bias_correction: divide the averages by ``1 - decay**t``. Default False.

    Reference: Graves, *Generating Sequences with Recurrent Neural Networks*, arXiv:1308.0850.

    >>> import gradtx
    >>> tx = gradtx.scale_by_stddev(initial_scale=1.0)
    >>> round(float(tx.update({"w": 2.0}, tx.init({"w": 0.0}))[0]["w"]), 4)
    1.7817
    """
    return scale_by_rms(decay, eps, initial_scale, eps_in_sqrt, bias_correction, centered=True)


class ScaleByRssState(NamedTuple):
    sum_of_squares: Any


class ScaleByRss(Transform):
    """Divides by the root of the running sum of squared updates (Adagrad)."""

    elementwise = True

    initial_accumulator_value: float = 0.1
    eps: float = 1e-7
    eps_in_sqrt: bool = static(True)
    nu_dtype: Any = static(None)

    def __post_init__(self):
        check_range(self, "initial_accumulator_value", low=0.0)
        check_range(self, "eps", low=0.0)
        check_denominator(self, "eps", "initial_accumulator_value")

    def init(self, params):
        return ScaleByRssState(
            tree_squares_like(params, self.initial_accumulator_value, self.nu_dtype)
        )

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args

        def leaf(g, s):
            g32 = up(g)
            total = up(s) + jnp.abs(g32) ** 2
            eps = hp(self.eps, total)
            if self.eps_in_sqrt:
                scaling = jnp.where(total > 0, jax.lax.rsqrt(total + eps), 0.0)
            else:
                scaling = 1 / (jnp.sqrt(total) + eps)
            return (scaling * g32).astype(g.dtype), total.astype(s.dtype)

        updates, sums = tree_map_unzip(leaf, updates, state.sum_of_squares)
        return updates, ScaleByRssState(sums)


def scale_by_rss(
    initial_accumulator_value: float = 0.1,
    eps: float = 1e-7,
    *,
    eps_in_sqrt: bool = True,
    nu_dtype: Any = None,
) -> ScaleByRss:
    """Scales by the root of the sum of all past squared updates, as ``optax.scale_by_rss``.

    Update rule::

        s_t = s_{t-1} + u_t**2                  (s_0 = initial_accumulator_value)
        u_t <- u_t / sqrt(s_t + eps)            eps_in_sqrt (Keras, optax; 0 where s_t = 0)
        u_t <- u_t / (sqrt(s_t) + eps)          not eps_in_sqrt (PyTorch)

    Args:
        initial_accumulator_value: s_0, >= 0. Default 0.1.
        eps: stability term, >= 0; eps and initial_accumulator_value may not
            both be 0. Default 1e-7.
        eps_in_sqrt: put eps inside the root (default True) or add it after.
        nu_dtype: storage dtype of the sum;
            None keeps the params' dtype (float32 for float16 params, whose squares underflow).

    Reference: Duchi, Hazan, Singer, *Adaptive Subgradient Methods*, JMLR 2011.

    >>> import gradtx
    >>> tx = gradtx.scale_by_rss(initial_accumulator_value=0.0)
    >>> u, state = tx.update({"w": 3.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 4.0}, state)
    >>> round(float(u["w"]), 4)
    0.8
    """
    return ScaleByRss(
        initial_accumulator_value=initial_accumulator_value,
        eps=eps,
        eps_in_sqrt=eps_in_sqrt,
        nu_dtype=nu_dtype,
    )


class ScaleByAdadeltaState(NamedTuple):
    e_g: Any
    e_x: Any


class ScaleByAdadelta(Transform):
    """Adadelta's ratio of RMS of past steps to RMS of gradients."""

    elementwise = True

    rho: float = 0.9
    eps: float = 1e-6
    nu_dtype: Any = static(None)

    def __post_init__(self):
        check_range(self, "rho", low=0.0, high=1.0)
        check_range(self, "eps", low=0.0)
        check_denominator(self, "eps")

    def init(self, params):
        # Two trees, not one twice: a donated state must not alias its buffers.
        return ScaleByAdadeltaState(
            tree_squares_like(params, 0.0, self.nu_dtype),
            tree_squares_like(params, 0.0, self.nu_dtype),
        )

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args

        def leaf(g, e_g, e_x):
            e_g = ema(g, e_g, self.rho, 2)
            eps = hp(self.eps, up(g))
            step = jnp.sqrt(up(e_x) + eps) / jnp.sqrt(up(e_g) + eps) * up(g)
            e_x = ema(step, e_x, self.rho, 2)
            return step.astype(g.dtype), e_g, e_x

        updates, e_g, e_x = tree_map_unzip(leaf, updates, state.e_g, state.e_x)
        return updates, ScaleByAdadeltaState(e_g, e_x)


def scale_by_adadelta(
    rho: float = 0.9, eps: float = 1e-6, *, nu_dtype: Any = None
) -> ScaleByAdadelta:
    """Adadelta's unit-correcting scaling, as ``optax.scale_by_adadelta``.

    Update rule::

        E[g2]_t = rho * E[g2]_{t-1} + (1 - rho) * u_t**2
        d_t = sqrt(E[dx2]_{t-1} + eps) / sqrt(E[g2]_t + eps) * u_t
        E[dx2]_t = rho * E[dx2]_{t-1} + (1 - rho) * d_t**2
        u_t <- d_t

    Args:
        rho: decay of both averages, in [0, 1]. Default 0.9.
        eps: stability term, > 0. Default 1e-6.
        nu_dtype: storage dtype of the averages;
            None keeps the params' dtype (float32 for float16 params, whose squares underflow).

    Reference: Zeiler, *ADADELTA: An Adaptive Learning Rate Method*, 2012 (arXiv:1212.5701).

    >>> import gradtx
    >>> tx = gradtx.scale_by_adadelta()
    >>> round(float(tx.update({"w": 2.0}, tx.init({"w": 0.0}))[0]["w"]), 4)
    0.0032
    """
    return ScaleByAdadelta(rho=rho, eps=eps, nu_dtype=nu_dtype)


@recipe
def adagrad(
    learning_rate: Any,
    initial_accumulator_value: float = 0.1,
    eps: float = 1e-7,
    *,
    nu_dtype: Any = None,
) -> Chain:
    """Adagrad, as ``optax.adagrad`` (and Keras 3's ``Adagrad``).

    Update rule::

        s_t = s_{t-1} + g_t**2               (s_0 = initial_accumulator_value)
        p_t = p_{t-1} - lr_t * g_t / sqrt(s_t + eps)

    Defaults: optax's (initial 0.1, eps 1e-7, inside the root). PyTorch's
    ``Adagrad`` puts eps=1e-10 outside the root, starts at 0 and has lr_decay
    (``gradtx.compat.pytorch.adagrad``).

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        initial_accumulator_value: s_0, >= 0. Default 0.1.
        eps: stability term, >= 0; eps and initial_accumulator_value may not
            both be 0. Default 1e-7.
        nu_dtype: storage dtype of the sum;
            None keeps the params' dtype (float32 for float16 params, whose squares underflow).

    Reference: Duchi, Hazan, Singer, JMLR 2011.

    >>> import gradtx
    >>> tx = gradtx.adagrad(0.1, initial_accumulator_value=0.0)
    >>> u, state = tx.update({"w": 3.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 4.0}, state)
    >>> round(float(u["w"]), 4)
    -0.08
    """
    return named_recipe(
        "adagrad",
        scale_by_rss(initial_accumulator_value, eps, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate),
    )


@recipe
def rmsprop(
    learning_rate: Any,
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: float | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
    *,
    nu_dtype: Any = None,
    mu_dtype: Any = None,
) -> Chain:
    """RMSprop, as ``optax.rmsprop``.

    Update rule::

        v_t = decay * v_{t-1} + (1 - decay) * g_t**2
        d_t = lr_t * g_t / sqrt(v_t + eps)     (centered: v_t - m_t**2)
        m_t = momentum * m_{t-1} + d_t         (when momentum is given)
        p_t = p_{t-1} - m_t

    The learning rate sits inside the momentum buffer, as in Keras; PyTorch
    keeps it outside and puts eps outside the root with decay 0.99
    (``gradtx.compat.pytorch.rmsprop``).

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        decay: decay of the average of squares, in [0, 1]. Default 0.9.
        eps: stability term, >= 0. Default 1e-8.
        initial_scale: v_0, >= 0; eps and initial_scale may not both be 0. Default 0.
        eps_in_sqrt: put eps inside the root (default True) or add it after.
        centered: subtract the squared mean. Default False.
        momentum: momentum decay, in [0, 1], or a schedule; None (default) for none.
        nesterov: Nesterov momentum; needs ``momentum``. Default False.
        bias_correction: divide the averages by ``1 - decay**t``. Default False.
        nu_dtype: storage dtype of v;
            None keeps the params' dtype (float32 for float16 params, whose squares underflow).
        mu_dtype: storage dtype of the mean (centered only); None keeps the params' dtype.

    Reference: Hinton, lecture 6e (2012); centered: Graves, arXiv:1308.0850.

    >>> import gradtx
    >>> tx = gradtx.rmsprop(0.1)
    >>> round(float(tx.update({"w": 2.0}, tx.init({"w": 0.0}))[0]["w"]), 4)
    -0.3162
    """
    if nesterov and momentum is None:
        raise ValueError("rmsprop(nesterov=True): Nesterov momentum requires a momentum value")
    transforms = [
        scale_by_rms(
            decay,
            eps,
            initial_scale,
            eps_in_sqrt,
            bias_correction,
            centered=centered,
            nu_dtype=nu_dtype,
            mu_dtype=mu_dtype,
        ),
        scale_by_learning_rate(learning_rate),
    ]
    if momentum is not None:
        transforms.append(trace(decay=momentum, nesterov=nesterov))
    return named_recipe("rmsprop", *transforms)


@recipe
def adadelta(
    learning_rate: Any = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    weight_decay_mask: Any = None,
    *,
    nu_dtype: Any = None,
) -> Chain:
    """Adadelta, as ``optax.adadelta``, but descending with its default learning rate.

    Update rule::

        g_t <- g_t + weight_decay * p_{t-1}
        E[g2]_t = rho * E[g2]_{t-1} + (1 - rho) * g_t**2
        d_t = sqrt(E[dx2]_{t-1} + eps) / sqrt(E[g2]_t + eps) * g_t
        E[dx2]_t = rho * E[dx2]_{t-1} + (1 - rho) * d_t**2
        p_t = p_{t-1} - lr_t * d_t

    Fix: optax 0.2.x defaults ``learning_rate=None`` and then skips the sign
    flip, so its default *ascends*. Here the default (and ``None``) is the
    paper's 1.0, and the step descends. PyTorch's defaults are the same
    (lr 1.0, rho 0.9, eps 1e-6); Keras's are lr 0.001, rho 0.95, eps 1e-7.

    Args:
        learning_rate: step size, >= 0; a number or a schedule. Default (and None) 1.
        rho: decay of both averages, in [0, 1]. Default 0.9.
        eps: stability term, > 0. Default 1e-6.
        weight_decay: coupled L2 coefficient, >= 0; a number or a schedule. Default 0.
        weight_decay_mask: a tree of booleans, or a function of the params giving
            one, that selects the parameters to decay; None decays all.
        nu_dtype: storage dtype of the averages;
            None keeps the params' dtype (float32 for float16 params, whose squares underflow).

    Reference: Zeiler, arXiv:1212.5701 (2012).

    >>> import gradtx
    >>> tx, params = gradtx.adadelta(), {"w": 0.0}
    >>> round(float(tx.update({"w": 2.0}, tx.init(params), params)[0]["w"]), 4)
    -0.0032
    """
    if learning_rate is None:
        learning_rate = 1.0
    decay = add_decayed_weights(weight_decay, weight_decay_mask)
    return named_recipe(
        "adadelta",
        decay,
        scale_by_adadelta(rho, eps, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate),
    )
