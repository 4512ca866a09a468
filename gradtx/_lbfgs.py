"""L-BFGS: a quasi-Newton direction from the last few steps and gradient changes."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._base import check_range, fail_missing, static, Transform
from ._combine import Chain, identity, named_recipe, recipe
from ._linesearch import scale_by_zoom_linesearch
from ._scale import scale, scale_by_learning_rate
from ._tree import (
    default_float,
    hp,
    safe_increment,
    tree_cast_like,
    tree_global_norm,
    tree_scale,
    tree_vdot,
    tree_zeros_like,
    up,
    zero_count,
)


class ScaleByLBFGSState(NamedTuple):
    """The last params and gradient, and a ring buffer of the last ``memory_size`` pairs.

    ``diff_params_memory[i]`` is a step ``s = w_{k+1} - w_k``, ``diff_updates_memory[i]``
    the gradient change ``y = g_{k+1} - g_k`` over it (each leaf with a leading
    axis of length ``memory_size``), ``weights_memory[i]`` is ``rho = 1 / s.y``
    (0 for an empty slot). The pair of step k sits in slot ``k % memory_size``.
    """

    count: jax.Array
    params: Any
    updates: Any
    diff_params_memory: Any
    diff_updates_memory: Any
    weights_memory: jax.Array


def _slot(tree: Any, i: jax.Array) -> Any:
    return jax.tree.map(lambda x: x[i], tree)


def _add_scaled(tree: Any, scalar: jax.Array, other: Any) -> Any:
    """``tree + scalar * other``, in ``tree``'s dtypes."""
    return jax.tree.map(lambda x, y: (x + hp(scalar, x) * up(y)).astype(x.dtype), tree, other)


def two_loop_recursion(g, s, y, rho, gamma, order):
    """``H g`` for the L-BFGS inverse-Hessian estimate H (Nocedal & Wright, algorithm 7.4).

    ``s``, ``y``, ``rho`` hold the pairs with a leading axis; ``order`` lists
    their slots from the oldest to the newest; ``H_0 = gamma I``.
    """

    def newest_first(q, i):  # alpha_i = rho_i s_i.q,  q <- q - alpha_i y_i
        alpha = rho[i] * tree_vdot(_slot(s, i), q)
        return _add_scaled(q, -alpha, _slot(y, i)), alpha

    q, alphas = jax.lax.scan(newest_first, g, order, reverse=True)

    def oldest_first(r, i_alpha):  # beta = rho_i y_i.r,  r <- r + (alpha_i - beta) s_i
        i, alpha = i_alpha
        beta = rho[i] * tree_vdot(_slot(y, i), r)
        return _add_scaled(r, alpha - beta, _slot(s, i)), None

    r, _ = jax.lax.scan(oldest_first, tree_scale(gamma, q), (order, alphas))
    return r


class ScaleByLbfgs(Transform):
    """Multiplies gradients by the L-BFGS estimate of the inverse Hessian."""

    memory_size: int = static(10)
    scale_init_precond: bool = static(True)

    def __post_init__(self):
        check_range(self, "memory_size", low=1.0, integer=True)

    def init(self, params):
        def memory(x):
            return jnp.zeros((self.memory_size, *jnp.shape(x)), jnp.result_type(x))

        return ScaleByLBFGSState(
            count=zero_count(),
            params=tree_zeros_like(params),
            updates=tree_zeros_like(params),
            diff_params_memory=jax.tree.map(memory, params),
            diff_updates_memory=jax.tree.map(memory, params),
            weights_memory=jnp.zeros([self.memory_size], default_float()),
        )

    def update(self, updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            fail_missing(
                self,
                "params (the steps s = w_k+1 - w_k are taken from them)",
                "update(updates, state, params, ...)",
            )
        m, count = self.memory_size, state.count
        first = count == 0
        # The pair of the step just taken, into the slot of that step (empty at first).
        s = jax.tree.map(jnp.subtract, params, state.params)
        y = jax.tree.map(jnp.subtract, updates, state.updates)
        sy = tree_vdot(y, s)
        rho = jnp.where(sy == 0, 0.0, 1.0 / sy)
        s, y, rho = jax.tree.map(lambda x: jnp.where(first, jnp.zeros_like(x), x), (s, y, rho))
        newest = (count - 1) % m
        s_memory, y_memory, rho_memory = jax.tree.map(
            lambda memory, pair: memory.at[newest].set(pair.astype(memory.dtype)),
            (state.diff_params_memory, state.diff_updates_memory, state.weights_memory),
            (s, y, rho),
        )

        if self.scale_init_precond:
            # gamma = s.y / y.y (N&W eq. 7.20); before any pair, a first step no longer than 1.
            yy = tree_vdot(y, y)
            gamma = jnp.where(yy > 0, sy / jnp.where(yy > 0, yy, 1.0), 1.0)
            gamma = jnp.where(first, jnp.minimum(1.0, 1.0 / tree_global_norm(updates)), gamma)
        else:
            gamma = jnp.ones([], default_float())
        order = (count + jnp.arange(m)) % m  # oldest to newest
        g = jax.tree.map(up, updates)  # at least float32 through the recursion
        direction = two_loop_recursion(g, s_memory, y_memory, rho_memory, gamma, order)
        return tree_cast_like(direction, updates), ScaleByLBFGSState(
            count=safe_increment(count),
            params=tree_cast_like(params, state.params),
            updates=tree_cast_like(updates, state.updates),
            diff_params_memory=s_memory,
            diff_updates_memory=y_memory,
            weights_memory=rho_memory,
        )


def scale_by_lbfgs(memory_size: int = 10, scale_init_precond: bool = True) -> ScaleByLbfgs:
    """Multiplies gradients by the L-BFGS estimate of the inverse Hessian.

    With the pairs ``s_i = w_{i+1} - w_i``, ``y_i = g_{i+1} - g_i``,
    ``rho_i = 1 / s_i.y_i`` of the last ``memory_size`` steps, the two-loop
    recursion computes ``u <- H_k g_k`` without forming H_k::

        q = g_k
        for i = k-1 down to k-m:   alpha_i = rho_i s_i.q;   q -= alpha_i y_i
        r = gamma_k q              gamma_k = s_{k-1}.y_{k-1} / y_{k-1}.y_{k-1}
        for i = k-m up to k-1:     beta = rho_i y_i.r;      r += (alpha_i - beta) s_i
        u <- r

    which is ``H_k`` built from ``gamma_k I`` by m BFGS updates
    ``H <- (I - rho s y') H (I - rho y s') + rho s s'``. ``scale_init_precond=False``
    takes gamma_k = 1; at the first step gamma_0 = min(1, 1 / |g_0|) (optax's
    choice: a first step no longer than 1). The pairs live in a ring buffer in the
    state (leaves of any shapes, each with a leading memory axis); ``memory_size``
    is static. The output points uphill, like g: follow it with ``scale(-1.0)``
    and a line search, as :func:`lbfgs` does. The update needs the params.

    Args:
        memory_size: the number m of (s, y) pairs kept, an integer >= 1; static.
            Default 10.
        scale_init_precond: start each recursion from ``gamma_k I`` (True) or
            from ``I`` (False). Default True.

    As ``optax.scale_by_lbfgs``. References: Nocedal, *Updating quasi-Newton
    matrices with limited storage*, Math. Comp., 1980; Liu & Nocedal, *On the
    limited memory BFGS method for large scale optimization*, Math. Prog., 1989;
    Nocedal & Wright, *Numerical Optimization*, 2nd ed., section 7.2.

    On ``f(w) = 2 w^2`` (g = 4 w) from w = 3, the first output is g / |g|; after
    one pair, gamma = 1/4 is the exact inverse curvature, a Newton step to 0:

    >>> import gradtx
    >>> tx = gradtx.scale_by_lbfgs()
    >>> u, state = tx.update({"w": 12.0}, tx.init({"w": 3.0}), {"w": 3.0})
    >>> float(u["w"])
    1.0
    >>> u, state = tx.update({"w": 8.0}, state, {"w": 2.0})  # w = 3 - 1
    >>> float(u["w"])
    2.0
    """
    return ScaleByLbfgs(memory_size=memory_size, scale_init_precond=scale_init_precond)


# optax.lbfgs's default: quasi-Newton steps are well scaled, so each search first tries 1.
_LBFGS_LINESEARCH = scale_by_zoom_linesearch(max_linesearch_steps=20, initial_guess_strategy="one")


@recipe
def lbfgs(
    learning_rate: Any = None,
    memory_size: int = 10,
    scale_init_precond: bool = True,
    linesearch: Any = _LBFGS_LINESEARCH,
) -> Chain:
    """L-BFGS with a zoom line search, for full-batch problems.

    Update rule::

        d_k = -H_k g_k       (H_k: the two-loop recursion over the last memory_size
                              pairs; see scale_by_lbfgs)
        w_{k+1} = w_k + a_k d_k    (a_k: strong Wolfe step, first guess 1;
                                    see scale_by_zoom_linesearch)

    ``learning_rate`` (a number or schedule) multiplies d_k before the line
    search, None for none; ``linesearch`` is any line search (None for none: then
    give a learning rate). The update needs the loss; call it as ``optax.lbfgs``
    (example below).

    The same steps as ``optax.lbfgs`` (tested to 1e-10 in float64), except after
    a failed line search (see scale_by_zoom_linesearch). ``torch.optim.LBFGS``
    runs many iterations per ``step``: see ``gradtx.compat.pytorch``. SciPy's
    ``minimize(method="L-BFGS-B")`` is the same method with Moré and Thuente's
    line search.

    Args:
        learning_rate: multiplies the direction before the line search, >= 0;
            a number, a schedule, or None (no scaling). Default None.
        memory_size: the number of (s, y) pairs kept, an integer >= 1. Default 10.
        scale_init_precond: start the recursion from ``gamma_k I``; False uses
            ``I``. Default True.
        linesearch: a line-search transform, or None for none. Default
            ``scale_by_zoom_linesearch(max_linesearch_steps=20,
            initial_guess_strategy="one")``, as optax's.

    References: Nocedal, *Updating quasi-Newton matrices with limited storage*,
    Math. Comp., 1980; Liu & Nocedal, *On the limited memory BFGS method for large
    scale optimization*, Math. Prog., 1989; Nocedal & Wright, *Numerical
    Optimization*, 2nd ed., chapters 3 and 7.

    >>> import gradtx, jax.numpy as jnp
    >>> def loss(p): return jnp.sum((p["x"] - 1.0) ** 2) + 10 * p["y"] ** 2
    >>> params = {"x": jnp.zeros(3), "y": jnp.ones(())}
    >>> tx = gradtx.lbfgs()
    >>> state = tx.init(params)
    >>> value_and_grad = gradtx.value_and_grad_from_state(loss)
    >>> for _ in range(6):  # float32: 2.4, 1.9, 7e-2, 3e-5, 3e-8, 8e-11
    ...     value, grad = value_and_grad(params, state=state)
    ...     updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=loss)
    ...     params = gradtx.apply_updates(params, updates)
    >>> bool(loss(params) < 1e-8)
    True
    """
    return named_recipe(
        "lbfgs",
        scale_by_lbfgs(memory_size, scale_init_precond),
        scale(-1.0) if learning_rate is None else scale_by_learning_rate(learning_rate),
        identity() if linesearch is None else linesearch,
    )
