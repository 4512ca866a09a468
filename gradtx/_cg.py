"""Nonlinear conjugate gradient and a strong-Wolfe line search, for full-batch problems."""

from __future__ import annotations

from collections.abc import Callable
import inspect
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._base import check_choice, check_range, fail, static, Transform
from ._combine import Chain, named_recipe
from ._state import apply_updates, tree_get
from ._tree import (
    default_float,
    hp,
    safe_increment,
    tree_cast_like,
    tree_scale,
    tree_vdot,
    tree_zeros_like,
    up,
    zero_count,
)

CG_METHODS = ("polak_ribiere", "fletcher_reeves")
INITIAL_GUESSES = ("slope", "one")


def _check_positive_int(obj: Transform, arg: str) -> None:
    check_range(obj, arg, low=1.0, integer=True)


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
        if self.restart_period is not None:
            _check_positive_int(self, "restart_period")

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
    it with a line search (:func:`scale_by_wolfe_linesearch`, or
    ``optax.scale_by_zoom_linesearch``) or ``scale(step_size)``, never with
    ``scale_by_learning_rate``, which negates. ``restart_period`` is None (no
    periodic restart) or a positive integer, a pytree leaf; the dimension of
    the problem is the classic choice.

    >>> import gradtx
    >>> tx = gradtx.scale_by_conjugate_gradient()
    >>> tx.update({"w": 2.0}, tx.init({"w": 0.0}))[0]["w"]
    Array(-2., dtype=float32)

    References: Fletcher & Reeves, *Function minimization by conjugate
    gradients*, 1964; Polak & Ribiere, 1969; Nocedal & Wright, *Numerical
    Optimization*, section 5.2.
    """
    return ScaleByConjugateGradient(method=method, restart_period=restart_period)


# -- the line search -----------------------------------------------------------------


class ScaleByWolfeLinesearchState(NamedTuple):
    """The accepted step and what is known there.

    ``value`` and ``grad`` are the loss and gradient at the new params, for
    :func:`value_and_grad_from_state` (``value`` is inf before the first step);
    ``slope`` is ``grad . direction`` at the old params; ``wolfe`` says whether
    the strong Wolfe conditions hold (if not, the step is the best one found
    with sufficient decrease, possibly 0).
    """

    learning_rate: jax.Array
    value: jax.Array
    grad: Any
    slope: jax.Array
    num_linesearch_steps: jax.Array
    wolfe: jax.Array


class _Point(NamedTuple):
    """A step along the line, the loss there and its slope ``grad . direction``."""

    step: jax.Array
    value: jax.Array
    slope: jax.Array


class _Search(NamedTuple):
    """The bracket [lo, hi] holds a Wolfe point (Hager & Zhang's update rules).

    lo has sufficient decrease and slope < 0 (lo = 0 at first); hi has slope >= 0,
    or too high a value (hi = inf until one is found).
    """

    count: jax.Array
    done: jax.Array
    wolfe: jax.Array
    lo: _Point
    lo_grad: Any
    hi: _Point
    previous: _Point  # lo before the last extrapolation
    trial: jax.Array


def _cubic_minimizer(a: _Point, b: _Point) -> jax.Array:
    """The minimizer of the cubic matching value and slope at a and b (N&W eq. 3.59).

    Exact for a quadratic; nan where the cubic has no minimum.
    """
    d1 = a.slope + b.slope - 3 * (a.value - b.value) / (a.step - b.step)
    d2 = jnp.sign(b.step - a.step) * jnp.sqrt(d1**2 - a.slope * b.slope)
    return b.step - (b.step - a.step) * (b.slope + d2 - d1) / (b.slope - a.slope + 2 * d2)


def _next_trial(lo: _Point, hi: _Point, previous: _Point) -> jax.Array:
    """Interpolates inside [lo, hi], or extrapolates beyond lo while unbracketed."""
    margin = 0.1 * (hi.step - lo.step)
    inside = _cubic_minimizer(lo, hi)
    inside = jnp.where(
        jnp.isfinite(inside),
        jnp.clip(inside, lo.step + margin, hi.step - margin),
        (lo.step + hi.step) / 2,
    )
    # The loss still decreases beyond lo: go further, by 1% to 10x the last stride.
    stride = lo.step - previous.step
    beyond = _cubic_minimizer(previous, lo)
    beyond = jnp.where(jnp.isfinite(beyond) & (beyond > lo.step), beyond, jnp.inf)
    beyond = jnp.clip(beyond, lo.step + 0.01 * stride, lo.step + 10 * stride)
    return jnp.where(jnp.isfinite(hi.step), inside, beyond)


def _kwargs_for(fn: Callable, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments that ``fn`` accepts."""
    parameters = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return kwargs
    names = {p.name for p in parameters}
    return {k: v for k, v in kwargs.items() if k in names}


class ScaleByWolfeLinesearch(Transform):
    """Scales a descent direction by a step that satisfies the strong Wolfe conditions."""

    max_linesearch_steps: int = 20
    slope_rtol: float = 1e-4
    curv_rtol: float = 0.9
    approx_dec_rtol: float = 1e-6
    initial_guess_strategy: str = static("slope")

    def __post_init__(self):
        _check_positive_int(self, "max_linesearch_steps")
        check_range(self, "slope_rtol", low=0.0, high=1.0, low_open=True, high_open=True)
        check_range(self, "curv_rtol", low=0.0, high=1.0, low_open=True, high_open=True)
        check_range(self, "approx_dec_rtol", low=0.0)
        check_choice(self, "initial_guess_strategy", INITIAL_GUESSES)
        both = (self.slope_rtol, self.curv_rtol)
        if all(isinstance(v, (int, float)) for v in both) and self.curv_rtol <= self.slope_rtol:
            fail(self, "curv_rtol", f"curv_rtol must exceed slope_rtol={self.slope_rtol!r}")

    def init(self, params):
        dtype = default_float()
        return ScaleByWolfeLinesearchState(
            learning_rate=jnp.ones([], dtype),
            value=jnp.full([], jnp.inf, dtype),
            grad=tree_zeros_like(params),
            slope=jnp.zeros([], dtype),
            num_linesearch_steps=zero_count(),
            wolfe=jnp.zeros([], bool),
        )

    def update(
        self, updates, state, params=None, *, value=None, grad=None, value_fn=None, **extra_args
    ):
        if params is None or value is None or grad is None or value_fn is None:
            raise ValueError(
                f"{self.name}.update needs params and the keyword arguments value=, grad= "
                "(the loss and gradient at params) and value_fn= (the loss function); "
                "see gradtx.value_and_grad_from_state"
            )
        kwargs = _kwargs_for(value_fn, extra_args)
        value_and_grad = jax.value_and_grad(lambda p: value_fn(p, **kwargs))
        dtype = default_float()
        direction = updates

        def evaluate(step):
            new_value, new_grad = value_and_grad(apply_updates(params, tree_scale(step, direction)))
            new_grad = tree_cast_like(new_grad, state.grad)
            point = _Point(step, new_value.astype(dtype), tree_vdot(new_grad, direction))
            return point, new_grad

        origin = _Point(jnp.zeros([], dtype), jnp.asarray(value, dtype), tree_vdot(grad, direction))
        slope_rtol = jnp.asarray(self.slope_rtol, dtype)
        curv_rtol = jnp.asarray(self.curv_rtol, dtype)
        value_tol = jnp.asarray(self.approx_dec_rtol, dtype) * jnp.abs(origin.value)

        def body(search: _Search) -> _Search:
            point, point_grad = evaluate(search.trial)
            armijo = point.value <= origin.value + slope_rtol * point.step * origin.slope
            # Values equal to the start's up to rounding count as a decrease (Hager & Zhang).
            decrease = armijo | (point.value <= origin.value + value_tol)
            wolfe = (
                (jnp.abs(point.slope) <= curv_rtol * jnp.abs(origin.slope))
                & decrease
                & (armijo | (point.slope <= (1 - 2 * slope_rtol) * jnp.abs(origin.slope)))
            )
            new_lo = wolfe | (decrease & (point.slope < 0))
            lo = _select(new_lo, point, search.lo)
            hi = _select(new_lo, search.hi, point)
            previous = _select(new_lo, search.lo, search.previous)
            trial = _next_trial(lo, hi, previous)
            too_narrow = hi.step - lo.step <= jnp.finfo(dtype).eps * lo.step
            return _Search(
                count=search.count + 1,
                done=wolfe | too_narrow,
                wolfe=wolfe,
                lo=lo,
                lo_grad=jax.tree.map(
                    lambda new, old: jnp.where(new_lo, new, old), point_grad, search.lo_grad
                ),
                hi=hi,
                previous=previous,
                trial=trial,
            )

        def cond(search: _Search) -> jax.Array:
            return ~search.done & (search.count < self.max_linesearch_steps)

        search = jax.lax.while_loop(
            cond,
            body,
            _Search(
                count=zero_count(),
                done=~(origin.slope < 0),  # not a descent direction: no step
                wolfe=jnp.zeros([], bool),
                lo=origin,
                lo_grad=tree_cast_like(grad, state.grad),
                hi=_Point(jnp.full([], jnp.inf, dtype), origin.value, origin.slope),
                previous=origin,
                trial=self._initial_step(state, origin.slope),
            ),
        )
        step = search.lo.step
        new_state = ScaleByWolfeLinesearchState(
            learning_rate=step,
            value=search.lo.value,
            grad=search.lo_grad,
            slope=origin.slope,
            num_linesearch_steps=search.count,
            wolfe=search.wolfe,
        )
        return tree_scale(step, direction), new_state

    def _initial_step(self, state: ScaleByWolfeLinesearchState, slope: jax.Array) -> jax.Array:
        one = jnp.ones([], slope.dtype)
        if self.initial_guess_strategy == "one":
            return one
        # N&W eq. 3.60: the same first-order decrease as at the last step.
        guess = state.learning_rate * state.slope / slope
        return jnp.where(jnp.isfinite(guess) & (guess > 0), guess, one)


def _select(pred: jax.Array, a: _Point, b: _Point) -> _Point:
    return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


def scale_by_wolfe_linesearch(
    max_linesearch_steps: int = 20,
    slope_rtol: float = 1e-4,
    curv_rtol: float = 0.9,
    approx_dec_rtol: float = 1e-6,
    initial_guess_strategy: str = "slope",
) -> ScaleByWolfeLinesearch:
    """Scales a descent direction by a step that satisfies the strong Wolfe conditions.

    With ``phi(a) = value_fn(params + a * d)`` along the incoming direction d,
    finds a step a such that::

        phi(a) <= phi(0) + slope_rtol * a * phi'(0)          (sufficient decrease)
        |phi'(a)| <= curv_rtol * |phi'(0)|                   (strong curvature)
        u <- a * d

    by extrapolating until a bracket is found, then zooming with safeguarded
    cubic interpolation, which is exact on a quadratic (Nocedal & Wright,
    algorithms 3.5 and 3.6). The bracket is updated from slopes, as Hager and
    Zhang do, and a value within ``approx_dec_rtol * |phi(0)|`` of phi(0)
    counts as a decrease (their approximate Wolfe conditions), so that values
    equal up to rounding near a minimum do not stall the search. The first
    trial step is 1 at the first call, then (``initial_guess_strategy="slope"``)
    the one that would give the same first-order decrease as the last step
    (N&W eq. 3.60), or always 1 (``"one"``, for quasi-Newton directions).
    0 < slope_rtol < curv_rtol < 1; curv_rtol 0.9 as in optax, 0.1 or less for
    conjugate gradient. If no Wolfe point is found within ``max_linesearch_steps``
    evaluations, the furthest point found with sufficient decrease and a
    downhill slope is taken (step 0 if none, or if d is not a descent direction).

    Called as ``optax.scale_by_zoom_linesearch`` is:
    ``update(direction, state, params, value=..., grad=..., value_fn=..., **fn_kwargs)``,
    with the loss and gradient at params; keyword arguments that ``value_fn``
    accepts are passed to it. The state keeps ``value`` and ``grad`` at the new
    params for :func:`value_and_grad_from_state` (optax's works too).

    References: Nocedal & Wright, *Numerical Optimization*, 2nd ed., section 3.5;
    Hager & Zhang, *A new conjugate gradient method with guaranteed descent and
    an efficient line search*, SIAM J. Optim., 2005.
    """
    return ScaleByWolfeLinesearch(
        max_linesearch_steps=max_linesearch_steps,
        slope_rtol=slope_rtol,
        curv_rtol=curv_rtol,
        approx_dec_rtol=approx_dec_rtol,
        initial_guess_strategy=initial_guess_strategy,
    )


def value_and_grad_from_state(value_fn: Callable[..., Any]) -> Callable[..., Any]:
    """Like ``jax.value_and_grad(value_fn)``, reusing what a line search stored in the state.

    The returned function is called as ``value_and_grad(params, *args, state=state,
    **kwargs)``. It returns the state's ``value`` and ``grad`` (the loss and
    gradient at the params the last update led to), or computes them when the
    value is not finite (before the first step). As ``optax.value_and_grad_from_state``;
    only for full-batch problems, where the loss does not change between steps.
    """
    value_and_grad = jax.value_and_grad(value_fn)

    def from_state(params, *args, state, **kwargs):
        value, grad = tree_get(state, "value"), tree_get(state, "grad")
        if value is None or grad is None:
            raise ValueError(
                "value_and_grad_from_state: the state holds no 'value' and 'grad'; "
                "does the optimizer end with a line search?"
            )

        def fresh():
            new_value, new_grad = value_and_grad(params, *args, **kwargs)
            return jnp.asarray(new_value, value.dtype), tree_cast_like(new_grad, grad)

        return jax.lax.cond(jnp.isfinite(value), lambda: (value, grad), fresh)

    return from_state


# -- recipe --------------------------------------------------------------------------


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
        p_t = p_{t-1} + a_t d_t         (a_t: strong Wolfe step; scale_by_wolfe_linesearch)

    Defaults: Polak-Ribiere+ (restarts itself where progress stalls), no
    periodic restart, up to 20 evaluations per line search, slope_rtol 1e-4,
    curv_rtol 1e-3: nearly exact line searches keep the directions conjugate,
    so an n-dimensional quadratic is solved in about n steps (with N&W's 0.1,
    cheaper per step, it can take several times more). The update needs the loss;
    call it as ``optax.lbfgs`` is called:

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

    Neither optax nor PyTorch has conjugate gradient (optax has L-BFGS and
    ``scale_by_zoom_linesearch``, which can also follow
    :func:`scale_by_conjugate_gradient`; ``torch.optim`` has L-BFGS). SciPy's
    ``minimize(method="CG")`` is Polak-Ribiere+ with a Wolfe line search
    (curvature 0.4).

    References: Fletcher & Reeves, *Function minimization by conjugate
    gradients*, Computer Journal, 1964; Polak & Ribiere, *Note sur la
    convergence de methodes de directions conjuguees*, 1969; Nocedal & Wright,
    *Numerical Optimization*, 2nd ed., chapters 5 and 3.
    """
    return named_recipe(
        "conjugate_gradient",
        scale_by_conjugate_gradient(method, restart_period),
        scale_by_wolfe_linesearch(
            max_linesearch_steps, slope_rtol, curv_rtol, approx_dec_rtol, initial_guess_strategy
        ),
    )
