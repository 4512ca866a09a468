"""Coin betting: COCOB's per-coordinate bets and Mechanic's learned scale over any optimizer.

Both bet a wealth (an initial stake plus the reward won so far) on the sign of the
next gradient, instead of following a learning rate.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._base import check_range, fail, static, Transform
from ._combine import as_transform, Chain, named_recipe, recipe
from ._regularize import _require_params, add_decayed_weights
from ._scale import scale_by_learning_rate
from ._tree import (
    default_float,
    hp,
    safe_increment,
    tree_global_norm,
    tree_map_unzip,
    tree_squares_like,
    tree_vdot,
    tree_widen,
    tree_zeros_like,
    up,
    zero_count,
)

# -- COCOB ----------------------------------------------------------------------------


class COCOBState(NamedTuple):
    """optax's fields, per leaf: p_0, the negated gradient sum, L, the |g| sum, the reward."""

    init_particles: Any
    cumulative_gradients: Any
    scale: Any
    subgradients: Any
    reward: Any


class ScaleByCocob(Transform):
    """COCOB-Backprop: each coordinate bets a fraction of its wealth away from p_0."""

    elementwise = True

    alpha: Any = 100.0
    eps: Any = 1e-8

    def __post_init__(self):
        check_range(self, "alpha", low=0.0)
        check_range(self, "eps", low=0.0, low_open=True)

    def init(self, params):
        return COCOBState(
            init_particles=jax.tree.map(jnp.copy, params),
            cumulative_gradients=tree_zeros_like(params),
            # float32 for float16 leaves: eps = 1e-8 would round to 0, and a zero gradient to 0 / 0.
            scale=tree_squares_like(params, self.eps),
            subgradients=tree_zeros_like(params),
            reward=tree_zeros_like(params),
        )

    def update(self, updates, state, params=None, **extra_args):
        del extra_args
        _require_params(self, params)

        def leaf(u, p, p0, c_old, l_old, g_old, r_old):
            g, p, p0 = up(u), up(p), up(p0)
            L = jnp.maximum(up(l_old), jnp.abs(g))
            G = up(g_old) + jnp.abs(g)
            R = jnp.maximum(up(r_old) - g * (p - p0), 0.0)
            C = up(c_old) - g
            step = (p0 + C / (L * jnp.maximum(G + L, hp(self.alpha, g) * L)) * (L + R)) - p
            new, old = (step, C, L, G, R), (u, c_old, l_old, g_old, r_old)
            return tuple(x.astype(y.dtype) for x, y in zip(new, old))

        updates, *new_state = tree_map_unzip(
            leaf,
            updates,
            params,
            state.init_particles,
            state.cumulative_gradients,
            state.scale,
            state.subgradients,
            state.reward,
        )
        return updates, COCOBState(state.init_particles, *new_state)


def scale_by_cocob(alpha: float = 100.0, eps: float = 1e-8) -> ScaleByCocob:
    """COCOB-Backprop's step, as ``optax.contrib.scale_by_cocob``: the update is the step.

    Update rule, per coordinate (p_0 the initial params, L_0 = eps)::

        L <- max(L, |g|);   G <- G + |g|;   R <- max(R - g (p - p_0), 0);   C <- C - g
        u = p_0 + C / (L max(G + L, alpha L)) * (L + R) - p

    The new params are p_0 plus a bet of the wealth L + R, in the direction of
    the negated gradient sum C. ``alpha`` >= 0 caps the bet at the first
    steps (the paper's 100). The update needs the params; it is already a
    descent step (no sign flip after it). Difference from optax: L is stored
    in float32 for float16 params (optax rounds eps = 1e-8 to 0 there).

    Args:
        alpha: the cap on the first bets, >= 0. Default 100.0.
        eps: L_0, > 0. Default 1e-8.

    Reference: Orabona & Tommasi, *Training Deep Networks without Learning
    Rates Through Coin Betting*, NeurIPS 2017, arXiv:1705.07795, Algorithm 2.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.scale_by_cocob()
    >>> params = {"w": jnp.array([1.0, -2.0])}
    >>> u, _ = tx.update({"w": jnp.array([1.0, -1.0])}, tx.init(params), params)
    >>> [round(float(v), 4) for v in u["w"]]  # the first bet: C / (alpha L) * L
    [-0.01, 0.01]
    """
    return ScaleByCocob(alpha=alpha, eps=eps)


@recipe
def cocob(
    learning_rate: Any = 1.0,
    alpha: float = 100.0,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    mask: Any = None,
) -> Chain:
    """COntinuous COin Betting (COCOB-Backprop), as ``optax.contrib.cocob``.

    Update rule (see :func:`scale_by_cocob`)::

        g <- lr_t (g + weight_decay p)
        u = p_0 + C / (L max(G + L, alpha L)) * (L + R) - p

    ``mask`` selects the params weight decay applies to. As optax's, the
    chain ``add_decayed_weights``, ``scale_by_learning_rate(flip_sign=False)``,
    :func:`scale_by_cocob`. The bet is invariant to the gradients' scale, so a
    constant ``learning_rate`` changes nothing but the weight of ``eps``; a
    schedule weighs the gradients of different steps against each other.

    Args:
        learning_rate: a number or a schedule, >= 0. Default 1.0.
        alpha: the cap on the first bets, >= 0. Default 100.0.
        eps: > 0. Default 1e-8.
        weight_decay: coupled L2 added to the gradient, >= 0. Default 0.0.
        mask: the leaves decayed, None for all. Default None.

    >>> import gradtx, jax.numpy as jnp
    >>> params = {"w": jnp.asarray([1.0, -2.0])}
    >>> tx = gradtx.cocob()
    >>> state = tx.init(params)
    >>> for _ in range(100):  # on |w|^2 / 2, whose gradient is w
    ...     updates, state = tx.update(params, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> bool(jnp.max(jnp.abs(params["w"])) < 0.1)
    True

    Reference: Orabona & Tommasi, *Training Deep Networks without Learning
    Rates Through Coin Betting*, NeurIPS 2017, arXiv:1705.07795.
    """
    return named_recipe(
        "cocob",
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate, flip_sign=False),
        scale_by_cocob(alpha, eps),
    )


# -- Mechanic -------------------------------------------------------------------------


class MechanicState(NamedTuple):
    """optax's fields: ``s`` the scales, one per beta (the step is base * sum(s)).

    ``x0`` is the params at the first update; ``r``, ``m``, ``v`` are the
    bettors' rewards, maximal |h| and sums of h^2, each of shape (num_betas,).
    """

    base_optimizer_state: Any
    count: jax.Array
    r: jax.Array
    m: jax.Array
    v: jax.Array
    s: jax.Array
    x0: Any


class Mechanize(Transform):
    """Scales the sum of a base optimizer's updates by a factor learned by coin betting."""

    elementwise = True
    integer_leaves = "refuse"  # it does arithmetic on the params

    base_optimizer: Transform
    weight_decay: Any = 1e-2
    eps: Any = 1e-8
    s_init: Any = 1e-6
    num_betas: int = static(6)

    def __post_init__(self):
        object.__setattr__(self, "base_optimizer", as_transform(self.base_optimizer))
        check_range(self, "weight_decay", low=0.0)
        check_range(self, "eps", low=0.0, low_open=True)
        check_range(self, "s_init", low=0.0, low_open=True)
        if type(self.num_betas) is not int or self.num_betas < 1:
            fail(self, "num_betas", "num_betas must be a positive integer")

    def init(self, params):
        def scalars(value):
            return jnp.full([self.num_betas], value, default_float())

        return MechanicState(
            base_optimizer_state=self.base_optimizer.init(params),
            count=zero_count(),
            r=scalars(0.0),
            m=scalars(0.0),
            v=scalars(0.0),
            s=scalars(self.s_init),
            x0=jax.tree.map(jnp.copy, params),
        )

    def update(self, updates, state, params=None, **extra_args):
        _require_params(self, params)
        steps, base_state = self.base_optimizer.update(
            updates, state.base_optimizer_state, params, **extra_args
        )
        # optax takes x0 from the first update's params, whatever init saw.
        x0 = jax.tree.map(lambda p, x: jnp.where(state.count == 0, p, x), params, state.x0)
        s_sum = jnp.sum(state.s)
        grads, wide_params = tree_widen(updates), tree_widen(params)  # summed in the scalars' dtype
        decay = (
            self.weight_decay
            * s_sum
            * tree_global_norm(grads)
            / (tree_global_norm(wide_params) + self.eps)
        )
        # The sum of the base steps so far, read back from the params (as optax).
        delta = jax.tree.map(lambda p, x: (tree_widen(x) - p) / (s_sum + self.eps), wide_params, x0)
        h = tree_vdot(jax.tree.map(lambda g, p: g + decay * p, grads, wide_params), delta)
        betas = jnp.asarray([1.0 - 0.1**i for i in range(1, self.num_betas + 1)], state.s.dtype)
        m = jnp.maximum(betas * state.m, jnp.abs(h) + self.eps)
        v = betas**2 * state.v + h**2
        r = betas * state.r + jnp.clip(h, -state.m, state.m) * state.s
        wealth = (self.s_init / self.num_betas) * m + jnp.maximum(0.0, r)
        s = wealth / (jnp.sqrt(v) + self.eps)
        scale = jnp.sum(s)

        def leaf(g, p, x, d, step):
            new_param = tree_widen(x) - scale * (d - up(step))
            return (new_param - up(p)).astype(g.dtype)

        new_updates = jax.tree.map(leaf, updates, params, x0, delta, steps)
        return new_updates, MechanicState(base_state, safe_increment(state.count), r, m, v, s, x0)


@recipe
def mechanize(
    base_optimizer: Any,
    weight_decay: float = 1e-2,
    eps: float = 1e-8,
    s_init: float = 1e-6,
    num_betas: int = 6,
) -> Mechanize:
    """Mechanic: learns the scale of any optimizer's steps, as ``optax.contrib.mechanize``.

    Update rule, with x_0 the params at the first step, u_t the base
    optimizer's update, beta_i = 1 - 0.1**i (i = 1..num_betas), S = sum_i s_i::

        Delta = (x_0 - x_t) / (S_{t-1} + eps)                 (minus the base steps' sum)
        h = <g + weight_decay S_{t-1} |g| / (|x_t| + eps) x_t, Delta>
        m_i <- max(beta_i m_i, |h| + eps);   v_i <- beta_i^2 v_i + h^2
        r_i <- beta_i r_i + clip(h, -m_i, m_i) s_i            (m_i before this step)
        s_i = (s_init / num_betas m_i + max(r_i, 0)) / (sqrt(v_i) + eps)
        x_{t+1} = x_0 - S_t (Delta - u_t);   u <- x_{t+1} - x_t

    Give the base optimizer a learning rate of 1 (a schedule's peak at 1):
    Mechanic learns the factor. ``weight_decay`` is Mechanic's own (on h, not
    the base's). The update needs the params. The scales are
    ``gradtx.tree_get(state, "s")``.

    Args:
        base_optimizer: a gradtx or optax transform, with learning rate 1.
        weight_decay: Mechanic's decay, >= 0. Default 1e-2.
        eps: > 0. Default 1e-8.
        s_init: the initial total scale, > 0. Default 1e-6.
        num_betas: an integer >= 1. Default 6.

    Differences from optax: r, m, v, s are float32 (float64 under x64), not
    the params' lowest dtype (bfloat16 rounds beta_3 = 0.999 to 1). As optax's,
    and unlike the paper (which stores it), the base steps' sum is read back
    from the params: it shrinks by S / (S + eps) per step (1% while S is near
    s_init = 1e-6) and carries the params' rounding divided by S (in float32,
    0.06 of a base step for params near 1 at S = 1e-6).

    >>> import gradtx, jax.numpy as jnp
    >>> params = {"w": jnp.asarray([1.0, -2.0])}
    >>> tx = gradtx.mechanize(gradtx.adam(1.0))
    >>> state = tx.init(params)
    >>> for _ in range(200):  # on |w|^2 / 2, whose gradient is w
    ...     updates, state = tx.update(params, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> bool(jnp.max(jnp.abs(params["w"])) < 0.1)
    True

    Reference: Cutkosky, Defazio, Mehta, *Mechanic: A Learning Rate Tuner*,
    NeurIPS 2023, arXiv:2306.00144.
    """
    return Mechanize(
        base_optimizer=base_optimizer,
        weight_decay=weight_decay,
        eps=eps,
        s_init=s_init,
        num_betas=num_betas,
    )
