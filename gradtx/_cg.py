"""Nonlinear conjugate gradient, for full-batch problems."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._base import check_choice, check_range, static, Transform
from ._combine import Chain, named_recipe, recipe
from ._linesearch import scale_by_zoom_linesearch
from ._tree import (
    default_float,
    hp,
    safe_increment,
    tree_cast_like,
    tree_vdot,
    tree_zeros_like,
    up,
    zero_count,
)

CG_METHODS = ("polak_ribiere", "fletcher_reeves")


# -- conjugate directions ------------------------------------------------------------


class ScaleByConjugateGradientState(NamedTuple):
    """``beta`` is the coefficient used at the last step (0 where it restarted)."""

    count: jax.Array
    beta: jax.Array
    prev_grad: Any
    direction: Any


class ScaleByConjugateGradient(Transform):
    """Turns gradients into conjugate descent directions ``-g_t + beta_t d_{t-1}``."""

    elementwise = True

    method: str = static("polak_ribiere")
    restart_period: Any = None

    def __post_init__(self):
        check_choice(self, "method", CG_METHODS)
        check_range(self, "restart_period", low=1.0, integer=True)  # None: no restart

    def init(self, params):
        return ScaleByConjugateGradientState(
            count=zero_count(),
            beta=jnp.zeros([], default_float()),
            prev_grad=tree_zeros_like(params),
            direction=tree_zeros_like(params),
        )

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        g, g_prev, d_prev = updates, state.prev_grad, state.direction
        g_norm2, prev_norm2 = tree_vdot(g, g), tree_vdot(g_prev, g_prev)
        if self.method == "polak_ribiere":
            beta = jnp.maximum((g_norm2 - tree_vdot(g, g_prev)) / _nonzero(prev_norm2), 0.0)
        else:
            beta = g_norm2 / _nonzero(prev_norm2)
        restart = (state.count == 0) | (prev_norm2 == 0)
        if self.restart_period is not None:
            restart |= state.count % self.restart_period == 0
        beta = jnp.where(restart, 0.0, beta)
        # g . d_t >= 0: the loss does not decrease along d_t; start again from -g.
        beta = jnp.where(beta * tree_vdot(g, d_prev) - g_norm2 >= 0, 0.0, beta)

        direction = jax.tree.map(
            lambda gi, di: (hp(beta, gi) * up(di) - up(gi)).astype(jnp.result_type(gi)), g, d_prev
        )
        new_state = ScaleByConjugateGradientState(
            count=safe_increment(state.count),
            beta=beta,
            prev_grad=tree_cast_like(g, g_prev),
            direction=tree_cast_like(direction, d_prev),
        )
        return direction, new_state


def _nonzero(x: jax.Array) -> jax.Array:
    return jnp.where(x > 0, x, 1.0)


def scale_by_conjugate_gradient(
    method: str = "polak_ribiere", restart_period: Any = None
) -> ScaleByConjugateGradient:
    """Conjugate search directions from successive gradients.

    Update rule::

        fletcher_reeves:  beta_t = |g_t|^2 / |g_{t-1}|^2
        polak_ribiere:    beta_t = max(0, g_t . (g_t - g_{t-1}) / |g_{t-1}|^2)      (PR+)
        beta_t = 0  at t = 0, every restart_period steps, and where g_t . d_t >= 0
        u_t <- d_t = -g_t + beta_t d_{t-1}

    The output is a *descent direction* (it points downhill, like ``-g``): follow
    it with a line search (:func:`scale_by_zoom_linesearch`) or
    ``scale(step_size)``, never with
    ``scale_by_learning_rate``, which negates. ``restart_period`` is None (no
    periodic restart) or a positive integer, a pytree leaf; the dimension of
    the problem is the classic choice. Neither optax nor PyTorch has it.

    Args:
        method: ``"polak_ribiere"`` (PR+) or ``"fletcher_reeves"``. Default
            ``"polak_ribiere"``.
        restart_period: restart from ``-g`` every this many steps, an integer
            >= 1; None never restarts periodically. Default None.

    References: Fletcher & Reeves, *Function minimization by conjugate
    gradients*, 1964; Polak & Ribiere, 1969; Nocedal & Wright, *Numerical
    Optimization*, section 5.2.

    >>> import gradtx
    >>> tx = gradtx.scale_by_conjugate_gradient("fletcher_reeves")
    >>> d, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))  # d_0 = -g_0
    >>> d, state = tx.update({"w": 1.0}, state)  # beta = 1 / 4: d_1 = -1 + beta * (-2)
    >>> float(d["w"]), float(state.beta)
    (-1.5, 0.25)
    """
    return ScaleByConjugateGradient(method=method, restart_period=restart_period)


# -- recipe --------------------------------------------------------------------------


@recipe
def conjugate_gradient(
    method: str = "polak_ribiere",
    restart_period: Any = None,
    max_linesearch_steps: int = 20,
    slope_rtol: float = 1e-4,
    curv_rtol: float = 1e-3,
    approx_dec_rtol: float = 1e-6,
    initial_guess_strategy: str = "slope",
) -> Chain:
    """Nonlinear conjugate gradient with a strong-Wolfe line search, for full-batch problems.

    Update rule::

        d_t = -g_t + beta_t d_{t-1}     (beta_t: Polak-Ribiere+ or Fletcher-Reeves,
                                         0 on restarts; see scale_by_conjugate_gradient)
        p_t = p_{t-1} + a_t d_t         (a_t: strong Wolfe step; scale_by_zoom_linesearch,
                                         first guess N&W eq. 3.60)

    Defaults: Polak-Ribiere+ (restarts itself where progress stalls), no
    periodic restart, up to 20 evaluations per line search, slope_rtol 1e-4,
    curv_rtol 1e-3: nearly exact line searches keep the directions conjugate,
    so an n-dimensional quadratic is solved in about n steps (with N&W's 0.1,
    cheaper per step, it can take several times more). The line search's
    other options are ``scale_by_zoom_linesearch``'s defaults; its first guess is
    ``"slope"``, the step that gives the last step's first-order decrease, as
    CG's directions are not scaled like a Newton step (``"keep"`` and ``"one"``
    are optax's). The update needs the loss; call it as ``optax.lbfgs`` is called
    (example below).

    Neither optax nor PyTorch has conjugate gradient (optax has L-BFGS and
    ``scale_by_zoom_linesearch``, which can also follow
    :func:`scale_by_conjugate_gradient`; ``torch.optim`` has L-BFGS). SciPy's
    ``minimize(method="CG")`` is Polak-Ribiere+ with a Wolfe line search
    (curvature 0.4).

    Args:
        method: ``"polak_ribiere"`` (PR+) or ``"fletcher_reeves"``. Default
            ``"polak_ribiere"``.
        restart_period: restart from ``-g`` every this many steps, an integer
            >= 1; None never restarts periodically. Default None.
        max_linesearch_steps: evaluations per line search, an integer >= 1.
            Default 20.
        slope_rtol: sufficient-decrease constant c1, in (0, 1). Default 1e-4.
        curv_rtol: curvature constant c2, > slope_rtol (inf: no curvature
            condition). Default 1e-3.
        approx_dec_rtol: tolerance of the approximate-Wolfe decrease, >= 0.
            Default 1e-6.
        initial_guess_strategy: the line search's first step, ``"slope"``,
            ``"keep"`` or ``"one"``. Default ``"slope"``.

    References: Fletcher & Reeves, *Function minimization by conjugate
    gradients*, Computer Journal, 1964; Polak & Ribiere, *Note sur la
    convergence de methodes de directions conjuguees*, 1969; Nocedal & Wright,
    *Numerical Optimization*, 2nd ed., chapters 5 and 3.

    >>> import gradtx, jax.numpy as jnp
    >>> def loss(p): return jnp.sum((p["x"] - 1.0) ** 2) + 10 * p["y"] ** 2
    >>> params = {"x": jnp.zeros(3), "y": jnp.ones(())}
    >>> tx = gradtx.conjugate_gradient()
    >>> state = tx.init(params)
    >>> value_and_grad = gradtx.value_and_grad_from_state(loss)
    >>> for _ in range(2):  # two distinct curvatures: solved in two steps
    ...     value, grad = value_and_grad(params, state=state)
    ...     updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=loss)
    ...     params = gradtx.apply_updates(params, updates)
    >>> bool(loss(params) < 1e-10)
    True
    """
    return named_recipe(
        "conjugate_gradient",
        scale_by_conjugate_gradient(method, restart_period),
        scale_by_zoom_linesearch(
            max_linesearch_steps,
            slope_rtol=slope_rtol,
            curv_rtol=curv_rtol,
            approx_dec_rtol=approx_dec_rtol,
            initial_guess_strategy=initial_guess_strategy,
        ),
    )
