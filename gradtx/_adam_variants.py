"""Adam's descendants: AdaBelief, Yogi, Adan, ADOPT, AdEMAMix, optimism, ACProp, LaProp, MADGRAD."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._adam import _check_betas, scale_by_adam, ScaleByAdamState
from ._base import check_denominator, check_range, static, Transform
from ._combine import Chain, named_recipe, recipe
from ._regularize import _require_params, add_decayed_weights
from ._scale import scale_by_learning_rate, value_at
from ._tree import (
    bias_correction,
    debias,
    default_float,
    ema,
    hp,
    safe_increment,
    tree_full_like,
    tree_map_unzip,
    tree_squares_like,
    tree_zeros_like,
    up,
    zero_count,
)


def _at(value: Any, count: jax.Array) -> Any:
    """A schedule's value at ``count``; a number as it is, so ``1 - b`` is formed exactly."""
    return value(count) if callable(value) else value


def _any_nonzero(tree: Any) -> jax.Array:
    """Whether any element of any leaf is nonzero (False for a tree of empty leaves)."""
    return jnp.any(jnp.asarray([jnp.any(x != 0) for x in jax.tree.leaves(tree)] or [False]))


def _abs_sq(g: jax.Array) -> jax.Array:
    """|g|**2 in g's compute dtype (real for complex g)."""
    g = up(g)
    return jnp.real(g * jnp.conj(g)) if jnp.iscomplexobj(g) else g * g


# -- AdaBelief -------------------------------------------------------------------------


class ScaleByBeliefState(NamedTuple):
    count: jax.Array
    mu: Any
    nu: Any


class ScaleByBelief(Transform):
    """AdaBelief: Adam with the variance of the gradient around its EMA."""

    elementwise = True

    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-16
    eps_root: float = 1e-16
    nesterov: bool = static(False)

    def __post_init__(self):
        _check_betas(self)

    def init(self, params):
        return ScaleByBeliefState(
            zero_count(), tree_zeros_like(params), tree_squares_like(params, 0.0)
        )

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        bc1, bc2 = bias_correction(self.b1, count), bias_correction(self.b2, count)
        bc1_next = bias_correction(self.b1, safe_increment(count))

        def leaf(g, mu, nu):
            mu = ema(g, mu, self.b1, 1)
            nu = ema(up(g) - up(mu), nu, self.b2, 2)
            nu = (up(nu) + hp(self.eps_root, nu)).astype(nu.dtype)
            if self.nesterov:
                b1, one_minus_b1 = hp(self.b1, g), hp(1 - self.b1, g)
                m_hat = b1 * debias(mu, bc1_next) + one_minus_b1 * debias(g, bc1)
            else:
                m_hat = debias(mu, bc1)
            u = m_hat / (jnp.sqrt(debias(nu, bc2)) + hp(self.eps, m_hat))
            return u.astype(g.dtype), mu, nu

        updates, mu, nu = tree_map_unzip(leaf, updates, state.mu, state.nu)
        return updates, ScaleByBeliefState(count, mu, nu)


def scale_by_belief(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    *,
    nesterov: bool = False,
) -> ScaleByBelief:
    """AdaBelief's scaling, as ``optax.scale_by_belief``.

    Update rule::

        m_t = b1 * m_{t-1} + (1 - b1) * u_t
        s_t = b2 * s_{t-1} + (1 - b2) * (u_t - m_t)**2 + eps_root     (eps_root kept in s_t)
        m^_t = m_t / (1 - b1**t)
             (Nesterov: b1 * m_t / (1 - b1**(t+1)) + (1 - b1) * u_t / (1 - b1**t))
        u_t <- m^_t / (sqrt(s_t / (1 - b2**t)) + eps)

    The paper's defaults are eps=1e-8 and no eps_root; its authors' package
    (``adabelief-pytorch`` >= 0.1) and optax use 1e-16 for both.

    Args:
        b1: decay of the first moment, in [0, 1). Default 0.9.
        b2: decay of the belief s_t, in [0, 1). Default 0.999.
        eps: added to the denominator, >= 0. Default 1e-16.
        eps_root: added to s_t each step, >= 0; eps and eps_root may not both
            be 0. Default 1e-16.
        nesterov: use the Nesterov form of the first moment. Default False.

    Reference: Zhuang et al., *AdaBelief Optimizer: Adapting Stepsizes by the
    Belief in Observed Gradients*, NeurIPS 2020, arXiv:2010.07468.

    >>> import gradtx
    >>> tx = gradtx.scale_by_belief()
    >>> u, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 1.0}, state)
    >>> round(float(u["w"]), 4)
    1.0752
    """
    return ScaleByBelief(b1=b1, b2=b2, eps=eps, eps_root=eps_root, nesterov=nesterov)


# -- Yogi ------------------------------------------------------------------------------


class ScaleByYogi(Transform):
    """Yogi: Adam whose second moment moves by at most (1 - b2) * g**2 per step."""

    elementwise = True

    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-3
    eps_root: float = 0.0
    initial_accumulator_value: float = 1e-6

    def __post_init__(self):
        # Not _check_betas: a positive initial v keeps v positive, so eps may be 0 then.
        for arg in ("b1", "b2"):
            check_range(self, arg, low=0.0, high=1.0, high_open=True)
        for arg in ("eps", "eps_root", "initial_accumulator_value"):
            check_range(self, arg, low=0.0)
        check_denominator(self, "eps", "eps_root", "initial_accumulator_value")

    def init(self, params):
        return ScaleByAdamState(
            zero_count(),
            tree_full_like(params, self.initial_accumulator_value),
            tree_squares_like(params, self.initial_accumulator_value),
        )

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        bc1, bc2 = bias_correction(self.b1, count), bias_correction(self.b2, count)

        def leaf(g, mu, nu):
            mu = ema(g, mu, self.b1, 1)
            g2, v = _abs_sq(g), up(nu)
            nu = (v - hp(1 - self.b2, v) * jnp.sign(v - g2) * g2).astype(nu.dtype)
            root = jnp.sqrt(debias(nu, bc2) + hp(self.eps_root, v))
            u = debias(mu, bc1) / (root + hp(self.eps, v))
            return u.astype(g.dtype), mu, nu

        updates, mu, nu = tree_map_unzip(leaf, updates, state.mu, state.nu)
        return updates, ScaleByAdamState(count, mu, nu)


def scale_by_yogi(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-3,
    eps_root: float = 0.0,
    initial_accumulator_value: float = 1e-6,
) -> ScaleByYogi:
    """Yogi's scaling, as ``optax.scale_by_yogi``.

    Update rule::

        m_t = b1 * m_{t-1} + (1 - b1) * u_t              (m_0 = initial_accumulator_value)
        v_t = v_{t-1} - (1 - b2) * sign(v_{t-1} - u_t**2) * u_t**2      (v_0 likewise)
        u_t <- (m_t / (1 - b1**t)) / (sqrt(v_t / (1 - b2**t) + eps_root) + eps)

    As optax, both moments start at ``initial_accumulator_value`` and are
    bias-corrected; the paper's Algorithm 2 starts m at 0 and writes no bias
    correction.

    Args:
        b1: decay of the first moment, in [0, 1). Default 0.9.
        b2: rate of the second moment's additive change, in [0, 1). Default 0.999.
        eps: added to the denominator, >= 0. Default 1e-3.
        eps_root: added inside the square root, >= 0. Default 0.
        initial_accumulator_value: both moments' starting value, >= 0; eps,
            eps_root and it may not all be 0. Default 1e-6.

    Reference: Zaheer et al., *Adaptive Methods for Nonconvex Optimization*, NeurIPS 2018.

    >>> import gradtx
    >>> tx = gradtx.scale_by_yogi()
    >>> u, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 1.0}, state)
    >>> round(float(u["w"]), 4)
    0.9311
    """
    return ScaleByYogi(
        b1=b1,
        b2=b2,
        eps=eps,
        eps_root=eps_root,
        initial_accumulator_value=initial_accumulator_value,
    )


# -- Adan ------------------------------------------------------------------------------


class ScaleByAdanState(NamedTuple):
    count: jax.Array
    m: Any
    v: Any
    n: Any
    prev_grad: Any


class ScaleByAdan(Transform):
    """Adan: Nesterov momentum through EMAs of the gradient and its differences."""

    elementwise = True

    b1: float = 0.98
    b2: float = 0.92
    b3: float = 0.99
    eps: float = 1e-8
    eps_root: float = 0.0

    def __post_init__(self):
        _check_betas(self)
        check_range(self, "b3", low=0.0, high=1.0, high_open=True)

    def init(self, params):
        return ScaleByAdanState(
            zero_count(),
            tree_zeros_like(params),
            tree_zeros_like(params),
            tree_squares_like(params, 0.0),
            tree_zeros_like(params),
        )

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        first = state.count == 0
        count = safe_increment(state.count)
        bc1, bc2, bc3 = (bias_correction(b, count) for b in (self.b1, self.b2, self.b3))

        def leaf(g, m, v, n, prev):
            diff = jnp.where(first, 0, up(g) - up(prev))  # no previous gradient at t = 1
            m, v = ema(g, m, self.b1, 1), ema(diff, v, self.b2, 1)
            one_minus_b2 = hp(1 - self.b2, diff)
            n = ema(up(g) + one_minus_b2 * diff, n, self.b3, 2)
            root = jnp.sqrt(debias(n, bc3) + hp(self.eps_root, diff))
            u = (debias(m, bc1) + one_minus_b2 * debias(v, bc2)) / (root + hp(self.eps, diff))
            return u.astype(g.dtype), m, v, n, g.astype(prev.dtype)

        updates, m, v, n, prev = tree_map_unzip(
            leaf, updates, state.m, state.v, state.n, state.prev_grad
        )
        return updates, ScaleByAdanState(count, m, v, n, prev)


def scale_by_adan(
    b1: float = 0.98,
    b2: float = 0.92,
    b3: float = 0.99,
    eps: float = 1e-8,
    eps_root: float = 0.0,
) -> ScaleByAdan:
    """Adan's scaling, as ``optax.scale_by_adan``.

    Update rule (d_1 = 0)::

        d_t = u_t - u_{t-1}
        m_t = b1 * m_{t-1} + (1 - b1) * u_t
        v_t = b2 * v_{t-1} + (1 - b2) * d_t
        n_t = b3 * n_{t-1} + (1 - b3) * (u_t + (1 - b2) * d_t)**2
        u_t <- (m^_t + (1 - b2) * v^_t) / (sqrt(n^_t + eps_root) + eps)    (^: / (1 - b**t))

    The b's are decays (the paper's 1 - beta). The state holds ``count`` and
    ``prev_grad`` where optax's holds ``t`` and ``g``.

    Args:
        b1: decay of the gradient's average, in [0, 1). Default 0.98.
        b2: decay of the average of gradient differences, in [0, 1). Default 0.92.
        b3: decay of the second moment, in [0, 1). Default 0.99.
        eps: added to the denominator, >= 0. Default 1e-8.
        eps_root: added inside the square root, >= 0; eps and eps_root may not
            both be 0. Default 0.

    Reference: Xie et al., *Adan: Adaptive Nesterov Momentum Algorithm for Faster
    Optimizing Deep Models*, arXiv:2208.06677 (Algorithm 1, with bias correction).

    >>> import gradtx
    >>> tx = gradtx.scale_by_adan()
    >>> u, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 1.0}, state)
    >>> round(float(u["w"]), 4)
    0.9351
    """
    return ScaleByAdan(b1=b1, b2=b2, b3=b3, eps=eps, eps_root=eps_root)


# -- ADOPT -----------------------------------------------------------------------------


def fourth_root_of_count(count: jax.Array) -> jax.Array:
    """ADOPT's default clipping bound, ``count ** 0.25`` (count = 0, 1, 2, ...)."""
    return count**0.25


class ScaleByAdopt(Transform):
    """ADOPT: the gradient normalised by the previous second moment, then averaged."""

    elementwise = True

    b1: float = 0.9
    b2: float = 0.9999
    eps: float = 1e-6
    clip_value_fn: Any = fourth_root_of_count
    mu_dtype: Any = static(None)
    nesterov: bool = static(False)
    use_clipping: bool = static(True)

    def __post_init__(self):
        _check_betas(self)

    def init(self, params):
        return ScaleByAdamState(
            zero_count(), tree_zeros_like(params, self.mu_dtype), tree_squares_like(params, 0.0)
        )

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        first = state.count == 0  # only v_0 = u_0**2 is formed: the update is 0
        bound = self.clip_value_fn(state.count) if self.use_clipping else None

        def leaf(g, mu, nu):
            normalised = up(g) / jnp.maximum(jnp.sqrt(up(nu)), hp(self.eps, g))
            if self.use_clipping:
                normalised = jnp.clip(normalised, -bound, bound)
            mu_prev = hp(mu, normalised)  # in the gradients' precision until stored
            m = jnp.where(first, mu_prev, ema(normalised, mu_prev, self.b1, 1))
            u = ema(normalised, m, self.b1, 1) if self.nesterov else m
            u = jnp.where(first, m, u)
            nu = jnp.where(first, _abs_sq(g), up(ema(g, nu, self.b2, 2))).astype(nu.dtype)
            return u.astype(g.dtype), m.astype(mu.dtype), nu

        updates, mu, nu = tree_map_unzip(leaf, updates, state.mu, state.nu)
        return updates, ScaleByAdamState(safe_increment(state.count), mu, nu)


def scale_by_adopt(
    b1: float = 0.9,
    b2: float = 0.9999,
    eps: float = 1e-6,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = fourth_root_of_count,
) -> ScaleByAdopt:
    """ADOPT's scaling, as ``optax.contrib.scale_by_adopt``.

    Update rule (t = 0, 1, 2, ...)::

        t = 0:  v_0 = u_0**2;  u_0 <- m_0 (= 0)
        n_t = clip(u_t / max(sqrt(v_{t-1}), eps), clip_value_fn(t))    (use_clipping)
        m_t = b1 * m_{t-1} + (1 - b1) * n_t
        u_t <- m_t      (Nesterov: b1 * m_t + (1 - b1) * n_t)
        v_t = b2 * v_{t-1} + (1 - b2) * u_t**2

    No bias correction. ``clip_value_fn`` is a function of the step count (a
    gradtx schedule, or a module-level function: a fresh lambda is a new jit
    cache key each time). Differences from optax: 1 - b1 and 1 - b2 are formed
    from the numbers given; optax rounds b1 and b2 to float32 first, so in
    float32 its 1 - b2 for b2 = 0.9999 is 1.00017e-4, 1.7e-4 too large.

    Args:
        b1: decay of the first moment, in [0, 1). Default 0.9.
        b2: decay of the second moment, in [0, 1). Default 0.9999.
        eps: floor of sqrt(v_{t-1}), > 0. Default 1e-6.
        mu_dtype: storage dtype of the first moment; None keeps the params' dtype.
        nesterov: use the Nesterov form. Default False.
        use_clipping: clip the normalised gradient. Default True.
        clip_value_fn: the clipping bound as a function of the 0-based step.
            Default ``fourth_root_of_count`` (``t ** 0.25``).

    Reference: Taniguchi et al., *ADOPT: Modified Adam Can Converge with Any beta_2
    with the Optimal Rate*, NeurIPS 2024, arXiv:2411.02853.

    The first step is zero; the second is the clipped normalised gradient times 1 - b1:

    >>> import gradtx
    >>> tx = gradtx.scale_by_adopt()
    >>> u, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 1.0}, state)
    >>> round(float(u["w"]), 4)
    0.05
    """
    return ScaleByAdopt(
        b1=b1,
        b2=b2,
        eps=eps,
        mu_dtype=mu_dtype,
        nesterov=nesterov,
        use_clipping=use_clipping,
        clip_value_fn=clip_value_fn,
    )


# -- AdEMAMix --------------------------------------------------------------------------


class ScaleByAdemamixState(NamedTuple):
    count: jax.Array
    m1: Any
    m2: Any
    nu: Any


class ScaleByAdemamix(Transform):
    """AdEMAMix: Adam's step plus alpha times a slow, uncorrected EMA of the gradient."""

    elementwise = True

    b1: float = 0.9
    b2: float = 0.999
    b3: Any = 0.9999
    alpha: Any = 6.0
    eps: float = 1e-8
    eps_root: float = 0.0
    mu_dtype: Any = static(None)
    nu_dtype: Any = static(None)

    def __post_init__(self):
        _check_betas(self)
        check_range(self, "b3", low=0.0, high=1.0, high_open=True)
        check_range(self, "alpha", low=0.0)

    def init(self, params):
        return ScaleByAdemamixState(
            zero_count(),
            tree_zeros_like(params, self.mu_dtype),
            tree_zeros_like(params, self.mu_dtype),
            tree_squares_like(params, 0.0, self.nu_dtype),
        )

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        b3, alpha = _at(self.b3, state.count), _at(self.alpha, state.count)
        count = safe_increment(state.count)
        bc1, bc2 = bias_correction(self.b1, count), bias_correction(self.b2, count)

        def leaf(g, m1, m2, nu):
            m1, m2 = ema(g, m1, self.b1, 1), ema(g, m2, b3, 1)
            nu = ema(g, nu, self.b2, 2)
            fast_and_slow = debias(m1, bc1) + hp(alpha, g) * up(m2)
            root = jnp.sqrt(debias(nu, bc2) + hp(self.eps_root, g))
            u = fast_and_slow / (root + hp(self.eps, g))
            return u.astype(g.dtype), m1, m2, nu

        updates, m1, m2, nu = tree_map_unzip(leaf, updates, state.m1, state.m2, state.nu)
        return updates, ScaleByAdemamixState(count, m1, m2, nu)


def scale_by_ademamix(
    b1: float = 0.9,
    b2: float = 0.999,
    b3: Any = 0.9999,
    alpha: Any = 6.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nu_dtype: Any = None,
) -> ScaleByAdemamix:
    """AdEMAMix's scaling, as ``optax.contrib.scale_by_ademamix``.

    Update rule (b3 and alpha numbers or schedules, evaluated at t - 1)::

        m1_t = b1 * m1_{t-1} + (1 - b1) * u_t
        m2_t = b3_t * m2_{t-1} + (1 - b3_t) * u_t              (not bias-corrected)
        v_t = b2 * v_{t-1} + (1 - b2) * u_t**2
        u_t <- (m1_t / (1 - b1**t) + alpha_t * m2_t) / (sqrt(v_t / (1 - b2**t) + eps_root) + eps)

    The paper warms alpha up linearly and b3 by its own schedule (both over
    T_alpha = T_b3 steps); pass them as schedules. Differences from optax:
    ``mu_dtype`` stores m1 and m2, ``nu_dtype`` v (optax stores v in mu_dtype
    and, after the first step, all three in the gradients' dtype); the state
    has no second counter (optax's ``count_m2`` always equals ``count``).

    Args:
        b1: decay of the fast first moment, in [0, 1). Default 0.9.
        b2: decay of the second moment, in [0, 1). Default 0.999.
        b3: decay of the slow moment, in [0, 1); a number or a schedule. Default 0.9999.
        alpha: weight of the slow moment, >= 0; a number or a schedule. Default 6.
        eps: added to the denominator, >= 0. Default 1e-8.
        eps_root: added inside the square root, >= 0; eps and eps_root may not
            both be 0. Default 0.
        mu_dtype: storage dtype of m1 and m2; None keeps the params' dtype.
        nu_dtype: storage dtype of v;
            None keeps the params' dtype (float32 for float16 params, whose squares underflow).

    Reference: Pagliardini, Ablin, Grangier, *The AdEMAMix Optimizer: Better,
    Faster, Older*, arXiv:2409.03137.

    >>> import gradtx
    >>> tx = gradtx.scale_by_ademamix()
    >>> round(float(tx.update({"w": 2.0}, tx.init({"w": 0.0}))[0]["w"]), 4)
    1.0006
    """
    return ScaleByAdemamix(
        b1=b1,
        b2=b2,
        b3=b3,
        alpha=alpha,
        eps=eps,
        eps_root=eps_root,
        mu_dtype=mu_dtype,
        nu_dtype=nu_dtype,
    )


class ScaleBySimplifiedAdemamixState(NamedTuple):
    count: jax.Array
    m: Any
    n: Any


class ScaleBySimplifiedAdemamix(Transform):
    """Simplified AdEMAMix: an undamped momentum sum plus alpha times the gradient."""

    elementwise = True

    b1: float = 0.99
    b2: float = 0.95
    alpha: Any = 0.0
    eps: float = 1e-8
    eps_root: float = 0.0

    def __post_init__(self):
        _check_betas(self)
        check_range(self, "alpha", low=0.0)

    def init(self, params):
        return ScaleBySimplifiedAdemamixState(
            zero_count(), tree_zeros_like(params), tree_squares_like(params, 0.0)
        )

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        alpha = _at(self.alpha, state.count)
        count = safe_increment(state.count)
        bc2 = bias_correction(self.b2, count)

        def leaf(g, m, n):
            g32 = up(g)
            m = (g32 + hp(self.b1, g32) * up(m)).astype(m.dtype)
            n = ema(g, n, self.b2, 2)
            root = jnp.sqrt(debias(n, bc2) + hp(self.eps_root, g32))
            u = (up(m) + hp(alpha, g32) * g32) / (root + hp(self.eps, g32))
            return u.astype(g.dtype), m, n

        updates, m, n = tree_map_unzip(leaf, updates, state.m, state.n)
        return updates, ScaleBySimplifiedAdemamixState(count, m, n)


def scale_by_simplified_ademamix(
    b1: float = 0.99,
    b2: float = 0.95,
    alpha: Any = 0.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
) -> ScaleBySimplifiedAdemamix:
    """Simplified AdEMAMix's scaling, as ``optax.contrib.scale_by_simplified_ademamix``.

    Update rule (alpha a number or a schedule, evaluated at t - 1)::

        m_t = b1 * m_{t-1} + u_t                                 (a sum: no 1 - b1)
        v_t = b2 * v_{t-1} + (1 - b2) * u_t**2
        u_t <- (m_t + alpha_t * u_t) / (sqrt(v_t / (1 - b2**t) + eps_root) + eps)

    The momentum sum is about 1 / (1 - b1) times a gradient: scale the learning
    rate down accordingly. The state holds ``count`` where optax's holds ``t``.

    Args:
        b1: decay of the momentum sum, in [0, 1). Default 0.99.
        b2: decay of the second moment, in [0, 1). Default 0.95.
        alpha: weight of the current gradient, >= 0; a number or a schedule. Default 0.
        eps: added to the denominator, >= 0. Default 1e-8.
        eps_root: added inside the square root, >= 0; eps and eps_root may not
            both be 0. Default 0.

    Reference: Morwani et al., *Connections between Schedule-Free Optimizers,
    AdEMAMix, and Accelerated SGD Variants*, arXiv:2502.02431.

    >>> import gradtx
    >>> tx = gradtx.scale_by_simplified_ademamix(alpha=1.0)
    >>> u, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 1.0}, state)
    >>> round(float(u["w"]), 4)
    2.5368
    """
    return ScaleBySimplifiedAdemamix(b1=b1, b2=b2, alpha=alpha, eps=eps, eps_root=eps_root)


# -- optimistic gradients --------------------------------------------------------------


class ScaleByOptimisticGradientState(NamedTuple):
    is_initial_step: jax.Array
    previous_gradient: Any


class ScaleByOptimisticGradient(Transform):
    """Optimistic gradient: the gradient plus beta times its last change."""

    elementwise = True

    alpha: float = 1.0
    beta: float = 1.0

    def __post_init__(self):
        check_range(self, "alpha", low=0.0)
        check_range(self, "beta", low=0.0)

    def init(self, params):
        return ScaleByOptimisticGradientState(jnp.asarray(True), tree_zeros_like(params))

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args

        def leaf(g, prev):
            g32 = up(g)
            prev32 = jnp.where(state.is_initial_step, g32, up(prev))
            beta = hp(self.beta, g32)
            u = hp(self.alpha + self.beta, g32) * g32 - beta * prev32
            return u.astype(g.dtype), g.astype(prev.dtype)

        updates, prev = tree_map_unzip(leaf, updates, state.previous_gradient)
        return updates, ScaleByOptimisticGradientState(jnp.asarray(False), prev)


def scale_by_optimistic_gradient(
    alpha: float = 1.0, beta: float = 1.0
) -> ScaleByOptimisticGradient:
    """Optimistic gradient scaling, as ``optax.scale_by_optimistic_gradient``.

    Update rule (u_0 = u_1 at the first step)::

        u_t <- (alpha + beta) * u_t - beta * u_{t-1}

    With ``scale_by_learning_rate(lr)`` after it and alpha = beta = 1 this is
    optimistic gradient descent, ``p_t = p_{t-1} - 2 lr g_t + lr g_{t-1}``.

    Args:
        alpha: weight of the current gradient, >= 0. Default 1.
        beta: weight of the gradient's change, >= 0. Default 1.

    Reference: Mokhtari, Ozdaglar, Pattathil, *A Unified Analysis of Extra-gradient
    and Optimistic Gradient Methods for Saddle Point Problems*, AISTATS 2020.

    >>> import gradtx
    >>> tx = gradtx.scale_by_optimistic_gradient()
    >>> u, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 3.0}, state)
    >>> round(float(u["w"]), 4)
    4.0
    """
    return ScaleByOptimisticGradient(alpha=alpha, beta=beta)


# -- recipes ---------------------------------------------------------------------------


@recipe
def adabelief(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    *,
    nesterov: bool = False,
) -> Chain:
    """AdaBelief, as ``optax.adabelief``.

    Update rule: :func:`scale_by_belief`, then ``p_t = p_{t-1} - lr_t * u_t``.

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        b1: decay of the first moment, in [0, 1). Default 0.9.
        b2: decay of the belief s_t, in [0, 1). Default 0.999.
        eps: added to the denominator, >= 0. Default 1e-16.
        eps_root: added to s_t each step, >= 0; eps and eps_root may not both
            be 0. Default 1e-16.
        nesterov: use the Nesterov form of the first moment. Default False.

    Reference: Zhuang et al., arXiv:2010.07468.

    At the first step ``m^ = g`` and ``s^ = (g - 0.1 g)**2``: the step is ``lr / 0.9``.

    >>> import gradtx
    >>> tx = gradtx.adabelief(0.1)
    >>> round(float(tx.update({"w": 3.0}, tx.init({"w": 0.0}))[0]["w"]), 4)
    -0.1111
    """
    return named_recipe(
        "adabelief",
        scale_by_belief(b1, b2, eps, eps_root, nesterov=nesterov),
        scale_by_learning_rate(learning_rate),
    )


@recipe
def yogi(learning_rate: Any, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-3) -> Chain:
    """Yogi, as ``optax.yogi`` (eps 1e-3, accumulators starting at 1e-6).

    Update rule: :func:`scale_by_yogi`, then ``p_t = p_{t-1} - lr_t * u_t``.

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        b1: decay of the first moment, in [0, 1). Default 0.9.
        b2: rate of the second moment's additive change, in [0, 1). Default 0.999.
        eps: added to the denominator, >= 0. Default 1e-3.

    Reference: Zaheer et al., NeurIPS 2018.

    >>> import gradtx
    >>> tx = gradtx.yogi(0.1)
    >>> round(float(tx.update({"w": 3.0}, tx.init({"w": 0.0}))[0]["w"]), 4)
    -0.1
    """
    return named_recipe("yogi", scale_by_yogi(b1, b2, eps), scale_by_learning_rate(learning_rate))


@recipe
def adan(
    learning_rate: Any,
    b1: float = 0.98,
    b2: float = 0.92,
    b3: float = 0.99,
    eps: float = 1e-8,
    eps_root: float = 1e-8,
    weight_decay: Any = 0.0,
    mask: Any = None,
) -> Chain:
    """Adan, as ``optax.adan`` (note eps_root=1e-8 here, 0 in :func:`scale_by_adan`).

    Update rule::

        p_t = p_{t-1} - lr_t * (adan_step_t + weight_decay * p_{t-1})

    The decay is decoupled and multiplied by the rate: the official code's
    ``no_prox=True``. The paper (and the code's default) divides by
    ``1 + lr * weight_decay`` after the step instead (the same to first order).

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        b1: decay of the gradient's average, in [0, 1). Default 0.98.
        b2: decay of the average of gradient differences, in [0, 1). Default 0.92.
        b3: decay of the second moment, in [0, 1). Default 0.99.
        eps: added to the denominator, >= 0. Default 1e-8.
        eps_root: added inside the square root, >= 0; eps and eps_root may not
            both be 0. Default 1e-8.
        weight_decay: decoupled decay rate, >= 0; a number or a schedule. Default 0.
        mask: a tree of booleans, or a function of the params giving one, that
            selects the parameters to decay; None decays all.

    Reference: Xie et al., arXiv:2208.06677.

    >>> import gradtx
    >>> tx = gradtx.adan(0.1)
    >>> round(float(tx.update({"w": 3.0}, tx.init({"w": 0.0}), {"w": 0.0})[0]["w"]), 4)
    -0.1
    """
    return named_recipe(
        "adan",
        scale_by_adan(b1, b2, b3, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


@recipe
def adopt(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.9999,
    eps: float = 1e-6,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = fourth_root_of_count,
) -> Chain:
    """ADOPT, as ``optax.contrib.adopt``: no step at t = 0, clipped normalised gradients.

    Update rule: :func:`scale_by_adopt`, then ``p_t = p_{t-1} - lr_t * u_t``.

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        b1: decay of the first moment, in [0, 1). Default 0.9.
        b2: decay of the second moment, in [0, 1). Default 0.9999.
        eps: floor of sqrt(v_{t-1}), > 0. Default 1e-6.
        mu_dtype: storage dtype of the first moment; None keeps the params' dtype.
        nesterov: use the Nesterov form. Default False.
        use_clipping: clip the normalised gradient. Default True.
        clip_value_fn: the clipping bound as a function of the 0-based step.
            Default ``fourth_root_of_count`` (``t ** 0.25``).

    Reference: Taniguchi et al., arXiv:2411.02853.

    >>> import gradtx
    >>> tx = gradtx.adopt(0.1)
    >>> u, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 1.0}, state)
    >>> round(float(u["w"]), 4)
    -0.005
    """
    return named_recipe(
        "adopt",
        scale_by_adopt(
            b1,
            b2,
            eps,
            mu_dtype,
            nesterov=nesterov,
            use_clipping=use_clipping,
            clip_value_fn=clip_value_fn,
        ),
        scale_by_learning_rate(learning_rate),
    )


@recipe
def ademamix(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    b3: Any = 0.9999,
    alpha: Any = 5.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    weight_decay: Any = 0.0,
    mask: Any = None,
    *,
    nu_dtype: Any = None,
) -> Chain:
    """AdEMAMix with decoupled weight decay, as ``optax.contrib.ademamix``.

    Update rule::

        p_t = p_{t-1} - lr_t * (ademamix_step_t + weight_decay * p_{t-1})

    As in optax, alpha defaults to 5 here and to 6 in :func:`scale_by_ademamix`.

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        b1: decay of the fast first moment, in [0, 1). Default 0.9.
        b2: decay of the second moment, in [0, 1). Default 0.999.
        b3: decay of the slow moment, in [0, 1); a number or a schedule. Default 0.9999.
        alpha: weight of the slow moment, >= 0; a number or a schedule. Default 5.
        eps: added to the denominator, >= 0. Default 1e-8.
        eps_root: added inside the square root, >= 0; eps and eps_root may not
            both be 0. Default 0.
        mu_dtype: storage dtype of m1 and m2; None keeps the params' dtype.
        weight_decay: decoupled decay rate, >= 0; a number or a schedule. Default 0.
        mask: a tree of booleans, or a function of the params giving one, that
            selects the parameters to decay; None decays all.
        nu_dtype: storage dtype of v;
            None keeps the params' dtype (float32 for float16 params, whose squares underflow).

    Reference: Pagliardini, Ablin, Grangier, arXiv:2409.03137.

    >>> import gradtx
    >>> tx = gradtx.ademamix(0.1)
    >>> round(float(tx.update({"w": 3.0}, tx.init({"w": 0.0}), {"w": 0.0})[0]["w"]), 4)
    -0.1
    """
    return named_recipe(
        "ademamix",
        scale_by_ademamix(b1, b2, b3, alpha, eps, eps_root, mu_dtype, nu_dtype=nu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


@recipe
def simplified_ademamix(
    learning_rate: Any,
    b1: float = 0.99,
    b2: float = 0.95,
    alpha: Any = 0.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: Any = 0.0,
    mask: Any = None,
) -> Chain:
    """Simplified AdEMAMix with decoupled weight decay, as ``optax.contrib.simplified_ademamix``.

    Update rule::

        p_t = p_{t-1} - lr_t * (simplified_ademamix_step_t + weight_decay * p_{t-1})

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        b1: decay of the momentum sum, in [0, 1). Default 0.99.
        b2: decay of the second moment, in [0, 1). Default 0.95.
        alpha: weight of the current gradient, >= 0; a number or a schedule. Default 0.
        eps: added to the denominator, >= 0. Default 1e-8.
        eps_root: added inside the square root, >= 0; eps and eps_root may not
            both be 0. Default 0.
        weight_decay: decoupled decay rate, >= 0; a number or a schedule. Default 0.
        mask: a tree of booleans, or a function of the params giving one, that
            selects the parameters to decay; None decays all.

    Reference: Morwani et al., arXiv:2502.02431.

    >>> import gradtx
    >>> tx, params = gradtx.simplified_ademamix(0.1), {"w": 0.0}
    >>> u, state = tx.update({"w": 2.0}, tx.init(params), params)
    >>> u, _ = tx.update({"w": 1.0}, state, params)
    >>> round(float(u["w"]), 4)
    -0.1899
    """
    return named_recipe(
        "simplified_ademamix",
        scale_by_simplified_ademamix(b1, b2, alpha, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


@recipe
def optimistic_gradient_descent(learning_rate: Any, alpha: float = 1.0, beta: float = 1.0) -> Chain:
    """Optimistic gradient descent, as ``optax.optimistic_gradient_descent``.

    Update rule::

        p_t = p_{t-1} - lr_t * ((alpha + beta) * g_t - beta * g_{t-1})     (g_0 = g_1)

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        alpha: weight of the current gradient, >= 0. Default 1.
        beta: weight of the gradient's change, >= 0. Default 1.

    Reference: Mokhtari, Ozdaglar, Pattathil, AISTATS 2020.

    >>> import gradtx
    >>> tx = gradtx.optimistic_gradient_descent(0.1)
    >>> u, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 3.0}, state)
    >>> round(float(u["w"]), 4)
    -0.4
    """
    return named_recipe(
        "optimistic_gradient_descent",
        scale_by_optimistic_gradient(alpha, beta),
        scale_by_learning_rate(learning_rate),
    )


@recipe
def optimistic_adam_v2(
    learning_rate: Any,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    nesterov: bool = True,
    nu_dtype: Any = None,
) -> Chain:
    """Optimistic Adam, as ``optax.optimistic_adam_v2``: optimism applied to Adam's steps.

    Update rule::

        a_t = adam_step_t   (:func:`scale_by_adam`, Nesterov by default)
        p_t = p_{t-1} - lr_t * ((alpha + beta) * a_t - beta * a_{t-1})     (a_0 = a_1)

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        alpha: weight of the current Adam step, >= 0. Default 1.
        beta: weight of the Adam step's change, >= 0. Default 1.
        b1: decay of the first moment, in [0, 1); a number or a schedule. Default 0.9.
        b2: decay of the second moment, in [0, 1). Default 0.999.
        eps: added to the denominator, >= 0. Default 1e-8.
        eps_root: added inside the square root, >= 0; eps and eps_root may not
            both be 0. Default 0.
        mu_dtype: storage dtype of the first moment; None keeps the params' dtype.
        nesterov: use the Nesterov form of Adam's first moment. Default True.
        nu_dtype: storage dtype of the second moment;
            None keeps the params' dtype (float32 for float16 params, whose squares underflow).

    Reference: Daskalakis et al., *Training GANs with Optimism*, ICLR 2018.

    >>> import gradtx
    >>> tx = gradtx.optimistic_adam_v2(0.1)
    >>> u, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 1.0}, state)
    >>> round(float(u["w"]), 4)
    -0.0369
    """
    return named_recipe(
        "optimistic_adam_v2",
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype),
        scale_by_optimistic_gradient(alpha, beta),
        scale_by_learning_rate(learning_rate),
    )


# -- ACProp ------------------------------------------------------------------------------


class ScaleByAcprop(Transform):
    """ACProp: the gradient over the root of the *previous* centred second moment."""

    elementwise = True

    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-16
    eps_root: float = 1e-16

    def __post_init__(self):
        _check_betas(self)

    def init(self, params):
        return ScaleByBeliefState(
            zero_count(), tree_zeros_like(params), tree_squares_like(params, 0.0)
        )

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        first = state.count == 0
        # s_{t-1} is corrected by 1 - b2**(t-1); at t = 1 there is none and s^_0 = 1.
        bc2 = bias_correction(self.b2, jnp.maximum(state.count, 1))

        def leaf(g, mu, nu):
            s_hat = jnp.where(first, 1, debias(nu, bc2))
            u = up(g) / (jnp.sqrt(s_hat) + hp(self.eps, g))
            new_nu = ema(up(g) - up(mu), nu, self.b2, 2)  # the error of the *previous* m
            new_nu = (up(new_nu) + hp(self.eps_root, new_nu)).astype(nu.dtype)
            return u.astype(g.dtype), ema(g, mu, self.b1, 1), new_nu

        new_updates, mu, nu = tree_map_unzip(leaf, updates, state.mu, state.nu)
        new_state = ScaleByBeliefState(safe_increment(state.count), mu, nu)
        # A zero first gradient would leave s_1 = eps_root alone and make the next step
        # g / sqrt(eps_root / (1 - b2)) (3e6 g): until a gradient arrives, nothing is counted.
        waiting = first & ~_any_nonzero(updates)
        return new_updates, jax.tree.map(
            lambda old, new: jnp.where(waiting, old, new), state, new_state
        )


def scale_by_acprop(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-16, eps_root: float = 1e-16
) -> ScaleByAcprop:
    """ACProp's scaling, as ``optax.contrib.scale_by_acprop``.

    Update rule::

        u_t <- u_t / (sqrt(s_{t-1} / (1 - b2**(t-1))) + eps)       (s^_0 = 1 at t = 1)
        m_t = b1 * m_{t-1} + (1 - b1) * g_t
        s_t = b2 * s_{t-1} + (1 - b2) * (g_t - m_{t-1})**2 + eps_root

    The prediction error is taken against m_{t-1}, as optax's code does (its
    docstring writes m_t). The denominator uses steps up to t - 1 only.

    Difference from optax: while every gradient so far is zero (all of the tree),
    the state stays as initialised, so the first nonzero gradient is taken as
    step 1. optax counts a zero first gradient: s_1 is eps_root alone and the next
    step is g / sqrt(eps_root / (1 - b2)), 3e6 g at the defaults (float16
    overflows). Otherwise the numbers are optax's. A coordinate whose gradients
    were all zero while others' were not still gets that large first step.

    Args:
        b1: decay of the first moment, in [0, 1). Default 0.9.
        b2: decay of s_t, in [0, 1). Default 0.999.
        eps: added to the denominator, >= 0. Default 1e-16.
        eps_root: added to s_t each step, >= 0; eps and eps_root may not both
            be 0. Default 1e-16.

    Reference: Zhuang et al., *Momentum Centering and Asynchronous Update for
    Adaptive Gradient Methods*, NeurIPS 2021, arXiv:2110.05454.

    >>> import gradtx
    >>> tx = gradtx.scale_by_acprop()
    >>> u, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 1.0}, state)
    >>> round(float(u["w"]), 4)
    0.5
    """
    return ScaleByAcprop(b1=b1, b2=b2, eps=eps, eps_root=eps_root)


@recipe
def acprop(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    weight_decay: Any = 0.0,
    mask: Any = None,
) -> Chain:
    """ACProp, as ``optax.contrib.acprop``.

    Update rule: :func:`scale_by_acprop`, then
    ``p_t = p_{t-1} - lr_t * (u_t + weight_decay * p_{t-1})``.

    Zero gradients before the first nonzero one are not counted (optax's next
    step after a zero first gradient is 3e6 g): see :func:`scale_by_acprop`.

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        b1: decay of the first moment, in [0, 1). Default 0.9.
        b2: decay of s_t, in [0, 1). Default 0.999.
        eps: added to the denominator, >= 0. Default 1e-16.
        eps_root: added to s_t each step, >= 0; eps and eps_root may not both
            be 0. Default 1e-16.
        weight_decay: decoupled decay rate, >= 0; a number or a schedule. Default 0.
        mask: a tree of booleans, or a function of the params giving one, that
            selects the parameters to decay; None decays all.

    Reference: Zhuang et al., arXiv:2110.05454.

    The first step is the gradient itself (s^_0 = 1):

    >>> import gradtx
    >>> tx, params = gradtx.acprop(0.1), {"w": 0.0}
    >>> round(float(tx.update({"w": 3.0}, tx.init(params), params)[0]["w"]), 4)
    -0.3
    """
    return named_recipe(
        "acprop",
        scale_by_acprop(b1, b2, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


# -- LaProp ------------------------------------------------------------------------------


class ScaleByLapropState(NamedTuple):
    """``rate_avg`` is the b1-average of the momentum's rate: 1 - b1**t for a rate of 1.

    ``mean`` (the b2-average of the gradient) is None unless centered, ``max_nu`` None
    unless amsgrad.
    """

    count: jax.Array
    mu: Any
    nu: Any
    mean: Any
    max_nu: Any
    rate_avg: jax.Array


class ScaleByLaprop(Transform):
    """LaProp: momentum over gradients already divided by Adam's root second moment."""

    elementwise = True

    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-15
    eps_root: float = 0.0
    # The rate each step enters the momentum with: the learning rate in the authors' code
    # (compat.pytorch.laprop), 1 here. Not named learning_rate: tree_get(tx, "learning_rate")
    # must find laprop's one rate.
    momentum_rate: Any = 1.0
    centered: bool = static(False)
    steps_before_centered: int = static(10)
    amsgrad: bool = static(False)
    eps_mode: str = static("corrected")

    def __post_init__(self):
        _check_betas(self)
        check_range(self, "momentum_rate", low=0.0)
        check_range(self, "steps_before_centered", low=0, integer=True)

    def init(self, params):
        return ScaleByLapropState(
            zero_count(),
            tree_zeros_like(params),
            tree_squares_like(params, 0.0),
            tree_zeros_like(params) if self.centered else None,
            tree_squares_like(params, 0.0) if self.amsgrad else None,
            jnp.zeros([], default_float()),
        )

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        bc2 = bias_correction(self.b2, count)
        rate = value_at(self.momentum_rate, state.count)
        rate_avg = self.b1 * state.rate_avg + (1 - self.b1) * rate
        # rate / rate_avg is 1 / (1 - b1**t) at a constant rate; the authors take 1 at rate 0.
        correction = jnp.where(rate != 0, rate / jnp.where(rate != 0, rate_avg, 1), 1)
        use_mean = count > self.steps_before_centered
        means = state.mean if self.centered else state.nu  # unused unless centered
        maxima = state.max_nu if self.amsgrad else state.nu  # unused unless amsgrad

        def leaf(g, mu, nu, mean, max_nu):
            nu = ema(g, nu, self.b2, 2)
            second = up(nu)
            if self.centered:
                mean = ema(g, mean, self.b2, 1)
                variance = jnp.maximum(second - jnp.abs(up(mean)) ** 2, 0)  # >= 0 but for rounding
                second = jnp.where(use_mean, variance, second)
            if self.amsgrad:
                max_nu = jnp.maximum(up(max_nu), second).astype(max_nu.dtype)
                second = up(max_nu)
            eps, eps_root, bc = hp(self.eps, g), hp(self.eps_root, g), hp(bc2, g)
            if self.eps_mode == "raw":
                denominator = (jnp.sqrt(second + eps_root) + eps) / jnp.sqrt(bc)
            else:
                denominator = jnp.sqrt(second / bc + eps_root) + eps
            mu = ema(hp(rate, g) * up(g) / denominator, mu, self.b1, 1)
            return (hp(correction, g) * up(mu)).astype(g.dtype), mu, nu, mean, max_nu

        updates, mu, nu, mean, max_nu = tree_map_unzip(
            leaf, updates, state.mu, state.nu, means, maxima
        )
        return updates, ScaleByLapropState(
            count,
            mu,
            nu,
            mean if self.centered else None,
            max_nu if self.amsgrad else None,
            rate_avg,
        )


def scale_by_laprop(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-15,
    eps_root: float = 0.0,
    *,
    centered: bool = False,
    steps_before_centered: int = 10,
    amsgrad: bool = False,
    eps_mode: str = "corrected",
) -> ScaleByLaprop:
    """LaProp's scaling: the momentum of Adam-normalised gradients, bias-corrected.

    Update rule (the paper's Algorithm 1; t = 1, 2, ...)::

        v_t = b2 * v_{t-1} + (1 - b2) * u_t**2
        m_t = b1 * m_{t-1} + (1 - b1) * u_t / (sqrt(v_t / (1 - b2**t) + eps_root) + eps)
        u_t <- m_t / (1 - b1**t)

    ``centered`` uses ``v_t - mean_t**2`` for ``v_t`` (mean_t the b2-average of u_t)
    once ``t > steps_before_centered``; ``amsgrad`` the largest such v so far.
    ``eps_mode="raw"`` divides ``sqrt(v_t + eps_root) + eps`` by ``sqrt(1 - b2**t)``
    (eps_root and eps before the bias correction, as pytorch-optimizer). Adam
    averages the gradients and divides the average; LaProp divides each gradient
    and averages, so b1 and b2 need not satisfy Adam's b1 < sqrt(b2).

    Args:
        b1: decay of the momentum, in [0, 1). Default 0.9.
        b2: decay of the second moment, in [0, 1). Default 0.999.
        eps: added to the denominator, >= 0. Default 1e-15.
        eps_root: added inside the square root, >= 0; eps and eps_root may not
            both be 0. Default 0.
        centered: use the centred second moment. Default False.
        steps_before_centered: steps before centring starts, an integer >= 0. Default 10.
        amsgrad: use the running maximum of the second moment. Default False.
        eps_mode: ``"corrected"`` (default) or ``"raw"`` (eps before bias correction).

    Reference: Ziyin, Wang, Ueda, *LaProp: Separating Momentum and Adaptivity in
    Adam*, arXiv:2002.04839.

    >>> import gradtx
    >>> tx = gradtx.scale_by_laprop()
    >>> u, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 1.0}, state)
    >>> round(float(u["w"]), 4)
    0.8066
    """
    return ScaleByLaprop(
        b1=b1,
        b2=b2,
        eps=eps,
        eps_root=eps_root,
        centered=centered,
        steps_before_centered=steps_before_centered,
        amsgrad=amsgrad,
        eps_mode=eps_mode,
    )


@recipe
def laprop(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-15,
    eps_root: float = 0.0,
    weight_decay: Any = 0.0,
    mask: Any = None,
    *,
    centered: bool = False,
    steps_before_centered: int = 10,
    amsgrad: bool = False,
) -> Chain:
    """LaProp with decoupled weight decay (the paper's algorithm; not in optax).

    Update rule: :func:`scale_by_laprop`, then
    ``p_t = p_{t-1} - lr_t * (u_t + weight_decay * p_{t-1})``.

    The defaults are the authors' (eps=1e-15 as their code; centering from step 11).
    Their code, as pytorch-optimizer's ``LaProp`` (:func:`gradtx.compat.pytorch.laprop`),
    differs: the rate sits inside the momentum (with a schedule each step's share of m
    keeps its own rate; the same at a constant rate), eps and 1e-15 are added before the
    bias correction, and the decay follows the step, ``p <- p (1 - lr weight_decay)``.

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        b1: decay of the momentum, in [0, 1). Default 0.9.
        b2: decay of the second moment, in [0, 1). Default 0.999.
        eps: added to the denominator, >= 0. Default 1e-15.
        eps_root: added inside the square root, >= 0; eps and eps_root may not
            both be 0. Default 0.
        weight_decay: decoupled decay rate, >= 0; a number or a schedule. Default 0.
        mask: a tree of booleans, or a function of the params giving one, that
            selects the parameters to decay; None decays all.
        centered: use the centred second moment. Default False.
        steps_before_centered: steps before centring starts, an integer >= 0. Default 10.
        amsgrad: use the running maximum of the second moment. Default False.

    Reference: Ziyin, Wang, Ueda, arXiv:2002.04839.

    At the first step ``m / (1 - b1) = g / |g|``: the step is ``lr``.

    >>> import gradtx
    >>> tx, params = gradtx.laprop(0.1), {"w": 0.0}
    >>> round(float(tx.update({"w": 3.0}, tx.init(params), params)[0]["w"]), 4)
    -0.1
    """
    return named_recipe(
        "laprop",
        scale_by_laprop(
            b1,
            b2,
            eps,
            eps_root,
            centered=centered,
            steps_before_centered=steps_before_centered,
            amsgrad=amsgrad,
        ),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


# -- MADGRAD -----------------------------------------------------------------------------


class MadgradState(NamedTuple):
    """``grad_sum_sq`` and ``s`` are the lambda-weighted sums of g**2 and g; ``x0`` the start."""

    count: jax.Array
    grad_sum_sq: Any
    s: Any
    x0: Any


class ScaleByMadgrad(Transform):
    """MADGRAD: dual averaging with a cube-root denominator, and momentum on the iterate."""

    elementwise = True
    integer_leaves = "refuse"  # it does arithmetic on the params

    learning_rate: Any = 1e-2
    momentum: float = 0.9
    eps: float = 1e-6

    def __post_init__(self):
        check_range(self, "learning_rate", low=0.0)
        check_range(self, "momentum", low=0.0, high=1.0)
        check_range(self, "eps", low=0.0)

    def init(self, params):
        return MadgradState(
            zero_count(),
            tree_zeros_like(params),
            tree_zeros_like(params),
            jax.tree.map(jnp.copy, params),  # a buffer of its own: donation-safe
        )

    def update(self, updates, state, params=None, **extra_args):
        del extra_args
        _require_params(self, params)
        lr = value_at(self.learning_rate, state.count)
        # The count in float before adding 1: a saturated int32 count would wrap to negative.
        lamb = (lr + self.eps) * jnp.sqrt(jnp.asarray(state.count, lr.dtype) + 1)

        def leaf(g, sum_sq, s, x0, x):
            g32 = up(g)
            sum_sq = (up(sum_sq) + hp(lamb, g32) * g32**2).astype(sum_sq.dtype)
            s = (up(s) + hp(lamb, g32) * g32).astype(s.dtype)
            z = up(x0) - up(s) / (jnp.cbrt(up(sum_sq)) + hp(self.eps, g32))
            momentum = hp(self.momentum, g32)
            new_x = (1 - momentum) * z + momentum * up(x)
            return (new_x - up(x)).astype(g.dtype), sum_sq, s

        updates, sum_sq, s = tree_map_unzip(
            leaf, updates, state.grad_sum_sq, state.s, state.x0, params
        )
        return updates, MadgradState(safe_increment(state.count), sum_sq, s, state.x0)


def scale_by_madgrad(
    learning_rate: Any, momentum: float = 0.9, eps: float = 1e-6
) -> ScaleByMadgrad:
    """MADGRAD's step, as ``optax.contrib.scale_by_madgrad`` (the learning rate is inside).

    Update rule, k = 0, 1, ... the step count::

        lambda_k = (lr_k + eps) * sqrt(k + 1)
        G_k = G_{k-1} + lambda_k g_k**2;   s_k = s_{k-1} + lambda_k g_k
        z_k = x_0 - s_k / (cbrt(G_k) + eps)
        u_k <- (1 - momentum) z_k + momentum x_k - x_k

    It needs the params; ``x_0`` (the params at init) is kept in the state.

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        momentum: weight of the current iterate, in [0, 1]. Default 0.9.
        eps: added to the cube root, >= 0. Default 1e-6.

    Reference: Defazio & Jelassi, *Adaptivity without Compromise: A Momentumized,
    Adaptive, Dual Averaged Gradient Method for Stochastic Optimization*, arXiv:2101.11075.

    >>> import gradtx
    >>> tx, params = gradtx.scale_by_madgrad(0.1), {"w": 1.0}
    >>> round(float(tx.update({"w": 2.0}, tx.init(params), params)[0]["w"]), 4)
    -0.0271
    """
    return ScaleByMadgrad(learning_rate=learning_rate, momentum=momentum, eps=eps)


@recipe
def madgrad(
    learning_rate: Any, momentum: float = 0.9, weight_decay: float = 0.0, eps: float = 1e-6
) -> Chain:
    """MADGRAD, as ``optax.contrib.madgrad``: coupled L2 decay, then :func:`scale_by_madgrad`.

    Update rule::

        g_k <- g_k + weight_decay * x_k;   p_{k+1} = p_k + scale_by_madgrad(g_k)

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        momentum: weight of the current iterate, in [0, 1]. Default 0.9.
        weight_decay: coupled L2 coefficient, >= 0; a number or a schedule. Default 0.
        eps: added to the cube root, >= 0. Default 1e-6.

    Reference: Defazio & Jelassi, arXiv:2101.11075.

    >>> import gradtx
    >>> tx, params = gradtx.madgrad(0.1), {"w": 1.0}
    >>> round(float(tx.update({"w": 2.0}, tx.init(params), params)[0]["w"]), 4)
    -0.0271
    """
    return named_recipe(
        "madgrad",
        add_decayed_weights(weight_decay),
        scale_by_madgrad(learning_rate, momentum, eps),
    )
