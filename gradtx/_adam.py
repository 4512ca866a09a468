"""The Adam family: Adam, AMSGrad, Adamax, NAdam, RAdam; with and without decoupled decay."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._base import check_choice, check_denominator, check_range, static, Transform
from ._combine import Chain, named_recipe, recipe
from ._regularize import add_decayed_weights
from ._scale import scale_by_learning_rate, value_at
from ._tree import (
    bias_correction,
    debias,
    decay_power,
    default_float,
    ema,
    hp,
    safe_increment,
    tree_map_unzip,
    tree_squares_like,
    tree_zeros_like,
    up,
    zero_count,
)

EPS_MODES = ("corrected", "raw")


def _check_betas(obj: Transform) -> None:
    check_range(obj, "b1", low=0.0, high=1.0, high_open=True)
    check_range(obj, "b2", low=0.0, high=1.0, high_open=True)
    check_range(obj, "eps", low=0.0)
    if hasattr(obj, "eps_root"):
        check_range(obj, "eps_root", low=0.0)
        check_denominator(obj, "eps", "eps_root")
    else:
        check_denominator(obj, "eps")
    if hasattr(obj, "eps_mode"):
        check_choice(obj, "eps_mode", EPS_MODES)


def _b1_at(obj: Transform, count: jax.Array) -> Any:
    """``obj.b1`` at the 0-based step ``count``: a schedule's value (torch's cycled ``betas[0]``).

    A number is returned as it is, so that ``1 - b1`` is formed in Python's
    float64 before the cast, as optax does: constant-b1 results keep their bits.
    """
    return value_at(obj.b1, count) if callable(obj.b1) else obj.b1


def _normalise(m_hat, nu_hat, eps, eps_root, eps_mode, bc2):
    """m_hat / (sqrt(nu_hat + eps_root) + eps), eps possibly before bias correction.

    ``eps_mode="raw"`` adds eps to sqrt(nu) before dividing by sqrt(1 - b2**t)
    (Keras, TensorFlow), which is ``eps / sqrt(1 - b2**t)`` after it.
    """
    eps = hp(eps, m_hat)
    if eps_mode == "raw":
        eps = eps / jnp.sqrt(bc2.astype(eps.dtype))
    return m_hat / (jnp.sqrt(nu_hat + hp(eps_root, m_hat)) + eps)


class ScaleByAdamState(NamedTuple):
    count: jax.Array
    mu: Any
    nu: Any


class ScaleByAdam(Transform):
    """Adam's bias-corrected first moment over the root of the second."""

    elementwise = True

    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    eps_root: float = 0.0
    mu_dtype: Any = static(None)
    nu_dtype: Any = static(None)
    nesterov: bool = static(False)
    eps_mode: str = static("corrected")

    def __post_init__(self):
        _check_betas(self)

    def init(self, params):
        return ScaleByAdamState(
            zero_count(),
            tree_zeros_like(params, self.mu_dtype),
            tree_squares_like(params, 0.0, self.nu_dtype),
        )

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        b1 = _b1_at(self, state.count)
        count = safe_increment(state.count)
        bc1, bc2 = bias_correction(b1, count), bias_correction(self.b2, count)
        bc1_next = bias_correction(b1, safe_increment(count))

        def leaf(g, mu, nu):
            mu, nu = ema(g, mu, b1, 1), ema(g, nu, self.b2, 2)
            if self.nesterov:
                b1_g = hp(b1, g)
                m_hat = b1_g * debias(mu, bc1_next) + (1 - b1_g) * debias(g, bc1)
            else:
                m_hat = debias(mu, bc1)
            u = _normalise(m_hat, debias(nu, bc2), self.eps, self.eps_root, self.eps_mode, bc2)
            return u.astype(g.dtype), mu, nu

        updates, mu, nu = tree_map_unzip(leaf, updates, state.mu, state.nu)
        return updates, ScaleByAdamState(count, mu, nu)


def scale_by_adam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    nu_dtype: Any = None,
    eps_mode: str = "corrected",
) -> ScaleByAdam:
    """Adam's scaling, as ``optax.scale_by_adam``.

    Update rule::

        m_t = b1 * m_{t-1} + (1 - b1) * u_t
        v_t = b2 * v_{t-1} + (1 - b2) * u_t**2
        m^_t = m_t / (1 - b1**t)
             (Nesterov: b1 * m_t / (1 - b1**(t+1)) + (1 - b1) * u_t / (1 - b1**t))
        v^_t = v_t / (1 - b2**t)
        u_t <- m^_t / (sqrt(v^_t + eps_root) + eps)

    ``b1`` may be a schedule (optax's is a number), read at the 0-based step
    ``t - 1``: that one b1 is the moment's decay and the base of ``1 - b1**t``,
    as torch computes both when ``OneCycleLR`` or ``CyclicLR`` cycle
    ``betas[0]`` (no longer an exact bias correction then, but torch's).
    ``eps_mode="raw"`` adds eps to sqrt(v_t) before bias correction, as Keras
    and TensorFlow do (``eps / sqrt(1 - b2**t)`` after it). ``mu_dtype`` and
    ``nu_dtype`` set the moments' storage dtypes; the arithmetic runs in
    float32 at least, so bfloat16 moments keep b2=0.999.

    Args:
        b1: decay of the first moment, in [0, 1); a number or a schedule. Default 0.9.
        b2: decay of the second moment, in [0, 1). Default 0.999.
        eps: added to the denominator, >= 0. Default 1e-8.
        eps_root: added inside the square root, >= 0; eps and eps_root may not
            both be 0. Default 0.
        mu_dtype: storage dtype of the first moment; None keeps the params' dtype.
        nesterov: use the Nesterov form of the first moment. Default False.
        nu_dtype: storage dtype of the second moment;
            None keeps the params' dtype (float32 for float16 params, whose squares underflow).
        eps_mode: ``"corrected"`` (default) or ``"raw"`` (eps before bias correction).

    Reference: Kingma & Ba, *Adam*, arXiv:1412.6980; Nesterov form: Dozat (2016).

    >>> import gradtx
    >>> tx = gradtx.scale_by_adam()
    >>> u, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 1.0}, state)
    >>> round(float(u["w"]), 4)
    0.9322
    """
    return ScaleByAdam(
        b1=b1,
        b2=b2,
        eps=eps,
        eps_root=eps_root,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
        nesterov=nesterov,
        eps_mode=eps_mode,
    )


class ScaleByAmsgradState(NamedTuple):
    count: jax.Array
    mu: Any
    nu: Any
    nu_max: Any


class ScaleByAmsgrad(Transform):
    """Adam with a running maximum of the second moment."""

    elementwise = True

    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    eps_root: float = 0.0
    mu_dtype: Any = static(None)
    nu_dtype: Any = static(None)
    bias_correction_mu: bool = static(True)
    bias_correction_nu: bool = static(True)
    max_of: str = static("corrected")
    eps_mode: str = static("corrected")

    def __post_init__(self):
        _check_betas(self)
        check_choice(self, "max_of", ("corrected", "raw"))

    def init(self, params):
        return ScaleByAmsgradState(
            zero_count(),
            tree_zeros_like(params, self.mu_dtype),
            tree_squares_like(params, 0.0, self.nu_dtype),
            tree_squares_like(params, 0.0, self.nu_dtype),  # a separate buffer: donation-safe
        )

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        b1 = _b1_at(self, state.count)
        count = safe_increment(state.count)
        bc1, bc2 = bias_correction(b1, count), bias_correction(self.b2, count)
        one = jnp.ones((), default_float())

        def leaf(g, mu, nu, nu_max):
            mu, nu = ema(g, mu, b1, 1), ema(g, nu, self.b2, 2)
            m_hat = debias(mu, bc1 if self.bias_correction_mu else one)
            nu_bc = bc2 if self.bias_correction_nu else one
            if self.max_of == "corrected":  # optax: the max of the corrected moment
                nu_max = jnp.maximum(up(nu_max), debias(nu, nu_bc)).astype(nu_max.dtype)
                nu_hat = up(nu_max)
            else:  # PyTorch, Keras: the max of the raw moment, corrected now
                nu_max = jnp.maximum(nu_max, nu)
                nu_hat = debias(nu_max, nu_bc)
            u = _normalise(m_hat, nu_hat, self.eps, self.eps_root, self.eps_mode, nu_bc)
            return u.astype(g.dtype), mu, nu, nu_max

        updates, mu, nu, nu_max = tree_map_unzip(leaf, updates, state.mu, state.nu, state.nu_max)
        return updates, ScaleByAmsgradState(count, mu, nu, nu_max)


def scale_by_amsgrad(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
    *,
    max_of: str = "corrected",
    eps_mode: str = "corrected",
    nu_dtype: Any = None,
) -> ScaleByAmsgrad:
    """AMSGrad's scaling, as ``optax.scale_by_amsgrad``.

    Update rule (``max_of="corrected"``, optax)::

        m_t, v_t as in Adam;  v^max_t = max(v^max_{t-1}, v_t / (1 - b2**t))
        u_t <- (m_t / (1 - b1**t)) / (sqrt(v^max_t + eps_root) + eps)

    ``max_of="raw"`` takes the maximum of the raw ``v_t`` and divides it by
    the current ``1 - b2**t``, as PyTorch and Keras do; with
    ``eps_mode="raw"`` eps is added before that correction (Keras). ``b1`` may
    be a schedule, as in :func:`scale_by_adam`.

    Args:
        b1: decay of the first moment, in [0, 1); a number or a schedule. Default 0.9.
        b2: decay of the second moment, in [0, 1). Default 0.999.
        eps: added to the denominator, >= 0. Default 1e-8.
        eps_root: added inside the square root, >= 0; eps and eps_root may not
            both be 0. Default 0.
        mu_dtype: storage dtype of the first moment; None keeps the params' dtype.
        bias_correction_mu: divide m_t by ``1 - b1**t``. Default True.
        bias_correction_nu: divide v_t by ``1 - b2**t``. Default True.
        max_of: ``"corrected"`` (default, optax) or ``"raw"`` (PyTorch, Keras).
        eps_mode: ``"corrected"`` (default) or ``"raw"`` (eps before bias correction).
        nu_dtype: storage dtype of v_t and its maximum;
            None keeps the params' dtype (float32 for float16 params, whose squares underflow).

    Reference: Reddi, Kale, Kumar, *On the Convergence of Adam and Beyond*, ICLR 2018.

    >>> import gradtx
    >>> tx = gradtx.scale_by_amsgrad()
    >>> u, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 0.1}, state)
    >>> round(float(u["w"]), 4)
    0.5
    """
    return ScaleByAmsgrad(
        b1=b1,
        b2=b2,
        eps=eps,
        eps_root=eps_root,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
        bias_correction_mu=bias_correction_mu,
        bias_correction_nu=bias_correction_nu,
        max_of=max_of,
        eps_mode=eps_mode,
    )


class ScaleByAdamax(Transform):
    """Adam with the infinity norm in place of the second moment."""

    elementwise = True

    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    eps_in_max: bool = static(True)

    mu_dtype: Any = static(None)
    nu_dtype: Any = static(None)

    def __post_init__(self):
        _check_betas(self)

    def init(self, params):
        return ScaleByAdamState(
            zero_count(),
            tree_zeros_like(params, self.mu_dtype),
            tree_squares_like(params, 0.0, self.nu_dtype),
        )

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        b1 = _b1_at(self, state.count)
        count = safe_increment(state.count)
        bc1 = bias_correction(b1, count)

        def leaf(g, mu, nu):
            mu = ema(g, mu, b1, 1)
            g32 = up(g)
            eps, b2 = hp(self.eps, g32), hp(self.b2, g32)
            if self.eps_in_max:  # PyTorch, optax
                norm = jnp.maximum(jnp.abs(g32) + eps, b2 * up(nu))
                u = debias(mu, bc1) / norm
            else:  # Keras
                norm = jnp.maximum(b2 * up(nu), jnp.abs(g32))
                u = debias(mu, bc1) / (norm + eps)
            return u.astype(g.dtype), mu, norm.astype(nu.dtype)

        updates, mu, nu = tree_map_unzip(leaf, updates, state.mu, state.nu)
        return updates, ScaleByAdamState(count, mu, nu)


def scale_by_adamax(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    eps_in_max: bool = True,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> ScaleByAdamax:
    """Adamax's scaling, as ``optax.scale_by_adamax``.

    Update rule::

        m_t = b1 * m_{t-1} + (1 - b1) * u_t
        n_t = max(b2 * n_{t-1}, |u_t| + eps)       (eps_in_max: PyTorch, optax)
        u_t <- m_t / (1 - b1**t) / n_t
        n_t = max(b2 * n_{t-1}, |u_t|);  u_t <- m_t / (1 - b1**t) / (n_t + eps)   (Keras)

    ``b1`` may be a schedule, as in :func:`scale_by_adam`.

    Args:
        b1: decay of the first moment, in [0, 1); a number or a schedule. Default 0.9.
        b2: decay of the infinity norm, in [0, 1). Default 0.999.
        eps: stability term, > 0. Default 1e-8.
        eps_in_max: put eps inside the max (PyTorch, optax; default True) or
            add it after (Keras).
        mu_dtype: storage dtype of the first moment; None keeps the params' dtype.
        nu_dtype: storage dtype of the norm;
            None keeps the params' dtype (float32 for float16 params, whose squares underflow).

    Reference: Kingma & Ba, arXiv:1412.6980, section 7.

    >>> import gradtx
    >>> tx = gradtx.scale_by_adamax()
    >>> u, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 1.0}, state)
    >>> round(float(u["w"]), 4)
    0.7376
    """
    return ScaleByAdamax(
        b1=b1, b2=b2, eps=eps, eps_in_max=eps_in_max, mu_dtype=mu_dtype, nu_dtype=nu_dtype
    )


class ScaleByNadamState(NamedTuple):
    count: jax.Array
    mu_product: jax.Array
    mu: Any
    nu: Any


class ScaleByNadam(Transform):
    """NAdam with Dozat's momentum schedule mu_t."""

    elementwise = True

    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    eps_root: float = 0.0
    momentum_decay: float = 4e-3
    simplified: bool = static(False)
    eps_mode: str = static("corrected")

    mu_dtype: Any = static(None)
    nu_dtype: Any = static(None)

    def __post_init__(self):
        _check_betas(self)
        check_range(self, "momentum_decay", low=0.0)

    def init(self, params):
        return ScaleByNadamState(
            zero_count(),
            jnp.ones((), default_float()),
            tree_zeros_like(params, self.mu_dtype),
            tree_squares_like(params, 0.0, self.nu_dtype),
        )

    def momentum_at(self, t: jax.Array, b1: Any) -> jax.Array:
        """mu_t = b1 * (1 - 0.5 * 0.96**(t * momentum_decay)); b1 when simplified."""
        b1 = jnp.asarray(b1, default_float())
        if self.simplified:
            return b1
        t = jnp.asarray(t, default_float())
        return b1 * (
            1 - 0.5 * decay_power(0.96, t * jnp.asarray(self.momentum_decay, default_float()))
        )

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        b1 = _b1_at(self, state.count)  # torch: mu_t and mu_{t+1} both from the current b1
        count = safe_increment(state.count)
        mu_t, mu_next = self.momentum_at(count, b1), self.momentum_at(safe_increment(count), b1)
        mu_product = state.mu_product * mu_t
        g_scale = (1 - mu_t) / (1 - mu_product)
        m_scale = mu_next / (1 - mu_product * mu_next)
        bc2 = bias_correction(self.b2, count)

        def leaf(g, mu, nu):
            mu, nu = ema(g, mu, b1, 1), ema(g, nu, self.b2, 2)
            g32 = up(g)
            m_hat = hp(g_scale, g32) * g32 + hp(m_scale, g32) * up(mu)
            u = _normalise(m_hat, debias(nu, bc2), self.eps, self.eps_root, self.eps_mode, bc2)
            return u.astype(g.dtype), mu, nu

        updates, mu, nu = tree_map_unzip(leaf, updates, state.mu, state.nu)
        return updates, ScaleByNadamState(count, mu_product, mu, nu)


def scale_by_nadam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    momentum_decay: float = 4e-3,
    *,
    simplified: bool = False,
    eps_mode: str = "corrected",
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> ScaleByNadam:
    """NAdam's scaling with Dozat's momentum schedule (PyTorch's and Keras's NAdam).

    Update rule::

        mu_t = b1 * (1 - 0.5 * 0.96**(t * momentum_decay))     (simplified: mu_t = b1)
        P_t = mu_1 * ... * mu_t
        m_t, v_t as in Adam
        m^_t = (1 - mu_t) / (1 - P_t) * u_t + mu_{t+1} / (1 - P_t * mu_{t+1}) * m_t
        u_t <- m^_t / (sqrt(v_t / (1 - b2**t) + eps_root) + eps)

    PyTorch uses momentum_decay=4e-3; Keras 3 uses 1 (``0.96**t``). The
    simplified, constant-b1 form equals ``scale_by_adam(nesterov=True)``.
    ``b1`` may be a schedule read at the 0-based step ``t - 1``: mu_t and
    mu_{t+1} both take that b1, as torch's NAdam does under a cycled ``betas[0]``.

    Args:
        b1: base momentum, in [0, 1); a number or a schedule. Default 0.9.
        b2: decay of the second moment, in [0, 1). Default 0.999.
        eps: added to the denominator, >= 0. Default 1e-8.
        eps_root: added inside the square root, >= 0; eps and eps_root may not
            both be 0. Default 0.
        momentum_decay: psi in the momentum schedule, >= 0. Default 4e-3.
        simplified: use the constant mu_t = b1. Default False.
        eps_mode: ``"corrected"`` (default) or ``"raw"`` (eps before bias correction).
        mu_dtype: storage dtype of the first moment; None keeps the params' dtype.
        nu_dtype: storage dtype of the second moment;
            None keeps the params' dtype (float32 for float16 params, whose squares underflow).

    Reference: Dozat, *Incorporating Nesterov Momentum into Adam*, ICLR workshop 2016.

    >>> import gradtx
    >>> tx = gradtx.scale_by_nadam()
    >>> u, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 1.0}, state)
    >>> round(float(u["w"]), 4)
    0.5239
    """
    return ScaleByNadam(
        b1=b1,
        b2=b2,
        eps=eps,
        eps_root=eps_root,
        momentum_decay=momentum_decay,
        simplified=simplified,
        eps_mode=eps_mode,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )


# Taylor coefficients of coth(z) - 1/z = sum_n 2**(2n) B_2n z**(2n-1) / (2n)!, B the Bernoulli
# numbers. Below z = 1/4 the first seven leave under 1e-16 of the sum: float64 rounding.
_LANGEVIN_SERIES = (1 / 3, -1 / 45, 2 / 945, -1 / 4725, 2 / 93555, -1382 / 638512875, 4 / 18243225)
_LANGEVIN_SERIES_UP_TO = 0.25


def _langevin_series(z: jax.Array) -> jax.Array:
    """coth(z) - 1/z for 0 <= z <= 1/4, from its Taylor series: no cancellation."""
    z2 = z * z
    total = jnp.zeros_like(z)
    for coefficient in reversed(_LANGEVIN_SERIES):
        total = total * z2 + coefficient
    return z * total


def _radam_rho(count: jax.Array, b2: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
    """RAdam's rho_t and rho_inf, and 1 - b2**t, without cancellation (see scale_by_radam)."""
    t = count.astype(default_float())
    c = jnp.asarray(1 - b2, default_float())  # formed before the cast: 1 - 0.999 is exact
    ro_inf = 2 / c - 1
    half_log = -0.5 * jnp.log1p(-c)  # u, with b2**t = exp(-2 t u)
    z = t * half_log
    near = z < _LANGEVIN_SERIES_UP_TO
    # rho_t = t - t L(t u) + L(u): a small correction to t, no multiple of rho_inf cancelled.
    z_near = jnp.minimum(z, _LANGEVIN_SERIES_UP_TO)  # u <= z: both in the series' range
    u_near = jnp.minimum(half_log, z_near)
    ro_near = t - t * _langevin_series(z_near) + _langevin_series(u_near)
    # Beyond, rho_t is over a fifth of rho_inf: the subtraction loses at most 3 bits.
    ro_far = ro_inf - 2 * t / jnp.expm1(2 * z)
    return jnp.where(near, ro_near, ro_far), ro_inf, -jnp.expm1(-2 * z)


class ScaleByRadam(Transform):
    """Rectified Adam: the variance-rectified adaptive step, or plain momentum early on."""

    elementwise = True

    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    eps_root: float = 0.0
    threshold: float = 5.0
    nesterov: bool = static(False)
    eps_mode: str = static("corrected")

    mu_dtype: Any = static(None)
    nu_dtype: Any = static(None)

    def __post_init__(self):
        _check_betas(self)

    def init(self, params):
        return ScaleByAdamState(
            zero_count(),
            tree_zeros_like(params, self.mu_dtype),
            tree_squares_like(params, 0.0, self.nu_dtype),
        )

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        ro, ro_inf, bc2 = _radam_rho(count, self.b2)
        rectify = jnp.sqrt(
            (ro - 4.0) * (ro - 2.0) * ro_inf / ((ro_inf - 4.0) * (ro_inf - 2.0) * ro)
        )
        adaptive = ro >= self.threshold
        b1 = _b1_at(self, state.count)
        bc1 = bias_correction(b1, count)
        bc1_next = bias_correction(b1, safe_increment(count))

        def leaf(g, mu, nu):
            mu, nu = ema(g, mu, b1, 1), ema(g, nu, self.b2, 2)
            if self.nesterov:
                b1_g = hp(b1, g)
                m_hat = b1_g * debias(mu, bc1_next) + (1 - b1_g) * debias(g, bc1)
            else:
                m_hat = debias(mu, bc1)
            step = _normalise(m_hat, debias(nu, bc2), self.eps, self.eps_root, self.eps_mode, bc2)
            u = jnp.where(adaptive, hp(rectify, m_hat) * step, m_hat)
            return u.astype(g.dtype), mu, nu

        updates, mu, nu = tree_map_unzip(leaf, updates, state.mu, state.nu)
        return updates, ScaleByAdamState(count, mu, nu)


def scale_by_radam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    threshold: float = 5.0,
    *,
    nesterov: bool = False,
    eps_mode: str = "corrected",
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> ScaleByRadam:
    """Rectified Adam's scaling, as ``optax.scale_by_radam``.

    Update rule::

        rho_inf = 2 / (1 - b2) - 1;   rho_t = rho_inf - 2 t b2**t / (1 - b2**t)
        r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
        u_t <- r_t * m^_t / (sqrt(v^_t + eps_root) + eps)     if rho_t >= threshold
        u_t <- m^_t                                            otherwise

    rho_t is evaluated without cancellation. With ``u = -log(b2) / 2`` (from
    ``log1p(-(1 - b2))``), ``rho_inf = coth(u)`` and ``2 t b2**t / (1 - b2**t)
    = t (coth(t u) - 1)``, so, with ``L(z) = coth(z) - 1/z``::

        rho_t = t - t L(t u) + L(u)          t u < 1/4, L from its Taylor series
        rho_t = rho_inf - 2 t / expm1(2 t u)  otherwise (rho_t > rho_inf / 5 there)
        1 - b2**t = -expm1(-2 t u)

    Both are within a few ulps of the exact rho_t, in float32 and float64.
    optax and PyTorch subtract ``2 t b2**t / (1 - b2**t)`` from ``rho_inf``:
    near the threshold that loses three digits of rho_t (b2 = 0.999) or four
    (0.9999). In float32 their update is 6e-3 off at step 6 (b2 = 0.999), and
    with b2 = 0.9999 rho_2 passes the threshold (a step 100 times too small);
    gradtx's stays within 2e-6 of the float64 update. In float64 theirs is off
    by about 1e-12 (b2 = 0.999) to 1e-10 (0.9999) near the threshold.

    PyTorch adds eps before bias correction (``eps_mode="raw"``). ``b1`` may
    be a schedule, as in :func:`scale_by_adam`.

    Args:
        b1: decay of the first moment, in [0, 1); a number or a schedule. Default 0.9.
        b2: decay of the second moment, in [0, 1). Default 0.999.
        eps: added to the denominator, >= 0. Default 1e-8.
        eps_root: added inside the square root, >= 0; eps and eps_root may not
            both be 0. Default 0.
        threshold: the rho_t from which the rectified adaptive step is taken
            (not checked). Default 5.
        nesterov: use the Nesterov form of the first moment. Default False.
        eps_mode: ``"corrected"`` (default) or ``"raw"`` (eps before bias correction).
        mu_dtype: storage dtype of the first moment; None keeps the params' dtype.
        nu_dtype: storage dtype of the second moment;
            None keeps the params' dtype (float32 for float16 params, whose squares underflow).

    Reference: Liu et al., *On the Variance of the Adaptive Learning Rate and
    Beyond*, arXiv:1908.03265.

    Early steps are momentum alone (rho_t < 5 until step 6 with b2 = 0.999):

    >>> import gradtx
    >>> tx = gradtx.scale_by_radam()
    >>> u, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 1.0}, state)
    >>> round(float(u["w"]), 4)
    1.4737
    """
    return ScaleByRadam(
        b1=b1,
        b2=b2,
        eps=eps,
        eps_root=eps_root,
        threshold=threshold,
        nesterov=nesterov,
        eps_mode=eps_mode,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )


# -- recipes -------------------------------------------------------------------------


@recipe
def adam(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    nu_dtype: Any = None,
) -> Chain:
    """Adam, as ``optax.adam``.

    Update rule::

        m_t = b1 m_{t-1} + (1 - b1) g_t;   v_t = b2 v_{t-1} + (1 - b2) g_t**2
        p_t = p_{t-1} - lr_t * (m_t / (1 - b1**t)) / (sqrt(v_t / (1 - b2**t) + eps_root) + eps)

    Defaults: lr required, b1 0.9, b2 0.999, eps 1e-8 (PyTorch's too). Keras
    uses eps 1e-7 *before* bias correction (``gradtx.compat.keras.adam``).
    ``b1`` may be a schedule, as torch's cycled ``betas[0]`` (:func:`scale_by_adam`).

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        b1: decay of the first moment, in [0, 1); a number or a schedule. Default 0.9.
        b2: decay of the second moment, in [0, 1). Default 0.999.
        eps: added to the denominator, >= 0. Default 1e-8.
        eps_root: added inside the square root, >= 0; eps and eps_root may not
            both be 0. Default 0.
        mu_dtype: storage dtype of the first moment; None keeps the params' dtype.
        nesterov: use the Nesterov form of the first moment (NAdam). Default False.
        nu_dtype: storage dtype of the second moment;
            None keeps the params' dtype (float32 for float16 params, whose squares underflow).

    Reference: Kingma & Ba, arXiv:1412.6980.

    >>> import gradtx
    >>> tx = gradtx.adam(0.1)
    >>> round(float(tx.update({"w": 3.0}, tx.init({"w": 0.0}))[0]["w"]), 4)
    -0.1
    """
    return named_recipe(
        "adam",
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate),
    )


@recipe
def adamw(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    weight_decay: Any = 1e-4,
    mask: Any = None,
    *,
    nesterov: bool = False,
    nu_dtype: Any = None,
) -> Chain:
    """Adam with decoupled weight decay, as ``optax.adamw``.

    Update rule::

        p_t = p_{t-1} - lr_t * (adam_step_t + weight_decay * p_{t-1})

    The decay is multiplied by the learning rate, as in PyTorch and Keras
    (PyTorch's default weight_decay is 1e-2, Keras's 4e-3, optax's 1e-4).
    ``b1`` may be a schedule (:func:`scale_by_adam`).

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        b1: decay of the first moment, in [0, 1); a number or a schedule. Default 0.9.
        b2: decay of the second moment, in [0, 1). Default 0.999.
        eps: added to the denominator, >= 0. Default 1e-8.
        eps_root: added inside the square root, >= 0; eps and eps_root may not
            both be 0. Default 0.
        mu_dtype: storage dtype of the first moment; None keeps the params' dtype.
        weight_decay: decoupled decay rate, >= 0; a number or a schedule. Default 1e-4.
        mask: a tree of booleans, or a function of the params giving one, that
            selects the parameters to decay; None decays all.
        nesterov: use the Nesterov form of the first moment. Default False.
        nu_dtype: storage dtype of the second moment;
            None keeps the params' dtype (float32 for float16 params, whose squares underflow).

    Reference: Loshchilov & Hutter, *Decoupled Weight Decay Regularization*, arXiv:1711.05101.

    >>> import gradtx
    >>> tx = gradtx.adamw(0.1, weight_decay=0.5)
    >>> round(float(tx.update({"w": 3.0}, tx.init({"w": 2.0}), {"w": 2.0})[0]["w"]), 4)
    -0.2
    """
    return named_recipe(
        "adamw",
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


@recipe
def nadam(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    nu_dtype: Any = None,
) -> Chain:
    """NAdam in Dozat's simplified, constant-b1 form, as ``optax.nadam``.

    Update rule::

        m^_t = b1 m_t / (1 - b1**(t+1)) + (1 - b1) g_t / (1 - b1**t)
        p_t = p_{t-1} - lr_t * m^_t / (sqrt(v_t / (1 - b2**t) + eps_root) + eps)

    PyTorch and Keras use Dozat's momentum schedule instead
    (:func:`scale_by_nadam`, ``gradtx.compat``).

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        b1: decay of the first moment, in [0, 1); a number or a schedule. Default 0.9.
        b2: decay of the second moment, in [0, 1). Default 0.999.
        eps: added to the denominator, >= 0. Default 1e-8.
        eps_root: added inside the square root, >= 0; eps and eps_root may not
            both be 0. Default 0.
        mu_dtype: storage dtype of the first moment; None keeps the params' dtype.
        nesterov: the Nesterov first moment; False gives Adam. Default True.
        nu_dtype: storage dtype of the second moment;
            None keeps the params' dtype (float32 for float16 params, whose squares underflow).

    Reference: Dozat, ICLR workshop 2016.

    >>> import gradtx
    >>> tx = gradtx.nadam(0.1)
    >>> u, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 1.0}, state)
    >>> round(float(u["w"]), 4)
    -0.0921
    """
    return named_recipe(
        "nadam",
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate),
    )


@recipe
def nadamw(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    weight_decay: Any = 1e-4,
    mask: Any = None,
    *,
    nesterov: bool = True,
    nu_dtype: Any = None,
) -> Chain:
    """NAdam with decoupled weight decay, as ``optax.nadamw``.

    Update rule::

        p_t = p_{t-1} - lr_t * (nadam_step_t + weight_decay * p_{t-1})

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        b1: decay of the first moment, in [0, 1); a number or a schedule. Default 0.9.
        b2: decay of the second moment, in [0, 1). Default 0.999.
        eps: added to the denominator, >= 0. Default 1e-8.
        eps_root: added inside the square root, >= 0; eps and eps_root may not
            both be 0. Default 0.
        mu_dtype: storage dtype of the first moment; None keeps the params' dtype.
        weight_decay: decoupled decay rate, >= 0; a number or a schedule. Default 1e-4.
        mask: a tree of booleans, or a function of the params giving one, that
            selects the parameters to decay; None decays all.
        nesterov: the Nesterov first moment; False gives AdamW. Default True.
        nu_dtype: storage dtype of the second moment;
            None keeps the params' dtype (float32 for float16 params, whose squares underflow).

    Reference: Dozat (2016); Loshchilov & Hutter, arXiv:1711.05101.

    >>> import gradtx
    >>> tx = gradtx.nadamw(0.1, weight_decay=0.5)
    >>> round(float(tx.update({"w": 3.0}, tx.init({"w": 2.0}), {"w": 2.0})[0]["w"]), 4)
    -0.2474
    """
    return named_recipe(
        "nadamw",
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


@recipe
def amsgrad(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
    *,
    nu_dtype: Any = None,
) -> Chain:
    """AMSGrad, as ``optax.amsgrad``: the maximum is over the bias-corrected v.

    Update rule::

        v^max_t = max(v^max_{t-1}, v_t / (1 - b2**t))
        p_t = p_{t-1} - lr_t * (m_t / (1 - b1**t)) / (sqrt(v^max_t + eps_root) + eps)

    PyTorch's and Keras's ``amsgrad=True`` take the max of the raw v_t and
    correct it afterwards (``scale_by_amsgrad(max_of="raw")``).

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        b1: decay of the first moment, in [0, 1); a number or a schedule. Default 0.9.
        b2: decay of the second moment, in [0, 1). Default 0.999.
        eps: added to the denominator, >= 0. Default 1e-8.
        eps_root: added inside the square root, >= 0; eps and eps_root may not
            both be 0. Default 0.
        mu_dtype: storage dtype of the first moment; None keeps the params' dtype.
        bias_correction_mu: divide m_t by ``1 - b1**t``. Default True.
        bias_correction_nu: divide v_t by ``1 - b2**t``. Default True.
        nu_dtype: storage dtype of v_t and its maximum;
            None keeps the params' dtype (float32 for float16 params, whose squares underflow).

    Reference: Reddi, Kale, Kumar, ICLR 2018.

    A large first gradient keeps the denominator large afterwards:

    >>> import gradtx
    >>> tx = gradtx.amsgrad(0.1)
    >>> u, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 0.1}, state)
    >>> round(float(u["w"]), 4)
    -0.05
    """
    return named_recipe(
        "amsgrad",
        scale_by_amsgrad(
            b1,
            b2,
            eps,
            eps_root,
            mu_dtype,
            bias_correction_mu,
            bias_correction_nu,
            nu_dtype=nu_dtype,
        ),
        scale_by_learning_rate(learning_rate),
    )


@recipe
def adamax(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> Chain:
    """Adamax, as ``optax.adamax`` (the same as PyTorch's).

    Update rule::

        n_t = max(b2 n_{t-1}, |g_t| + eps)
        p_t = p_{t-1} - lr_t * m_t / (1 - b1**t) / n_t

    Keras puts eps outside the max (``scale_by_adamax(eps_in_max=False)``).

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        b1: decay of the first moment, in [0, 1); a number or a schedule. Default 0.9.
        b2: decay of the infinity norm, in [0, 1). Default 0.999.
        eps: stability term, > 0. Default 1e-8.
        mu_dtype: storage dtype of the first moment; None keeps the params' dtype.
        nu_dtype: storage dtype of the norm;
            None keeps the params' dtype (float32 for float16 params, whose squares underflow).

    Reference: Kingma & Ba, arXiv:1412.6980, section 7.

    >>> import gradtx
    >>> tx = gradtx.adamax(0.1)
    >>> u, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 1.0}, state)
    >>> round(float(u["w"]), 4)
    -0.0738
    """
    return named_recipe(
        "adamax",
        scale_by_adamax(b1, b2, eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate),
    )


@recipe
def adamaxw(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: Any = 1e-4,
    mask: Any = None,
    *,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> Chain:
    """Adamax with decoupled weight decay, as ``optax.adamaxw``.

    Update rule::

        p_t = p_{t-1} - lr_t * (adamax_step_t + weight_decay * p_{t-1})

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        b1: decay of the first moment, in [0, 1); a number or a schedule. Default 0.9.
        b2: decay of the infinity norm, in [0, 1). Default 0.999.
        eps: stability term, > 0. Default 1e-8.
        weight_decay: decoupled decay rate, >= 0; a number or a schedule. Default 1e-4.
        mask: a tree of booleans, or a function of the params giving one, that
            selects the parameters to decay; None decays all.
        mu_dtype: storage dtype of the first moment; None keeps the params' dtype.
        nu_dtype: storage dtype of the norm;
            None keeps the params' dtype (float32 for float16 params, whose squares underflow).

    Reference: Kingma & Ba (2014); Loshchilov & Hutter, arXiv:1711.05101.

    >>> import gradtx
    >>> tx = gradtx.adamaxw(0.1, weight_decay=0.5)
    >>> round(float(tx.update({"w": 3.0}, tx.init({"w": 2.0}), {"w": 2.0})[0]["w"]), 4)
    -0.2
    """
    return named_recipe(
        "adamaxw",
        scale_by_adamax(b1, b2, eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


@recipe
def radam(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    threshold: float = 5.0,
    *,
    nesterov: bool = False,
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> Chain:
    """Rectified Adam, as ``optax.radam``.

    Update rule: :func:`scale_by_radam`, then ``p_t = p_{t-1} - lr_t * u_t``.
    PyTorch adds eps before bias correction and tests ``rho_t > 5``
    (``gradtx.compat.pytorch.radam``).

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        b1: decay of the first moment, in [0, 1); a number or a schedule. Default 0.9.
        b2: decay of the second moment, in [0, 1). Default 0.999.
        eps: added to the denominator, >= 0. Default 1e-8.
        eps_root: added inside the square root, >= 0; eps and eps_root may not
            both be 0. Default 0.
        threshold: the rho_t from which the rectified adaptive step is taken
            (not checked). Default 5.
        nesterov: use the Nesterov form of the first moment. Default False.
        mu_dtype: storage dtype of the first moment; None keeps the params' dtype.
        nu_dtype: storage dtype of the second moment;
            None keeps the params' dtype (float32 for float16 params, whose squares underflow).

    Reference: Liu et al., arXiv:1908.03265.

    The first steps are plain bias-corrected momentum:

    >>> import gradtx
    >>> tx = gradtx.radam(0.1)
    >>> round(float(tx.update({"w": 3.0}, tx.init({"w": 0.0}))[0]["w"]), 4)
    -0.3
    """
    return named_recipe(
        "radam",
        scale_by_radam(
            b1,
            b2,
            eps,
            eps_root,
            threshold,
            nesterov=nesterov,
            mu_dtype=mu_dtype,
            nu_dtype=nu_dtype,
        ),
        scale_by_learning_rate(learning_rate),
    )
