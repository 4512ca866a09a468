"""Line searches: a step size along a descent direction, from extra calls to the loss."""

from __future__ import annotations

from collections.abc import Callable
import inspect
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._base import check_choice, check_range, fail, fail_missing, static, Transform
from ._state import apply_updates, tree_get
from ._tree import default_float, tree_cast_like, tree_scale, tree_vdot, tree_zeros_like, zero_count

INITIAL_GUESSES = ("keep", "one", "slope")


# -- what every line search needs ----------------------------------------------------


def _require_loss(transform: Transform, params, value, grad, value_fn) -> None:
    """The standard error for a line search updated without the loss: names what is missing."""
    given = {"params": params, "value=": value, "grad=": grad, "value_fn=": value_fn}
    missing = [name for name, arg in given.items() if arg is None]
    if missing:
        fail_missing(
            transform,
            ", ".join(missing),
            "update(updates, state, params, value=loss, grad=grad, value_fn=loss_fn), "
            "with the loss and its gradient at params (optax's convention; "
            "gradtx.value_and_grad_from_state reuses the ones the search found)",
        )


def _kwargs_for(fn: Callable, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments that ``fn`` accepts."""
    parameters = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return kwargs
    names = {p.name for p in parameters}
    return {k: v for k, v in kwargs.items() if k in names}


def _at_step(params, step, direction):
    """``params + step * direction``, in the params' dtypes."""
    return apply_updates(params, tree_scale(step, direction))


def _finite_or_inf(error: jax.Array) -> jax.Array:
    """A violation ``max(error, 0)``, with NaN (a loss undefined there) as inf."""
    error = jnp.maximum(error, 0.0)
    return jnp.where(jnp.isnan(error), jnp.inf, error)


def _report_failure(verbose: bool, failed: jax.Array, message: str, **numbers) -> None:
    if verbose:
        jax.lax.cond(failed, lambda: jax.debug.print(message, **numbers), lambda: None)


# -- backtracking (Armijo) -----------------------------------------------------------


class BacktrackingLinesearchInfo(NamedTuple):
    """``decrease_error``: how far the last step tried is from sufficient decrease (0: met).

    ``failed``: no step tried met it (then no step is taken).
    """

    num_linesearch_steps: jax.Array
    decrease_error: jax.Array
    failed: jax.Array


class ScaleByBacktrackingLinesearchState(NamedTuple):
    """The step, and the loss (and, with ``store_grad``, gradient) at the new params.

    ``learning_rate`` is the step taken or, where the search failed and took
    none (``info.failed``), the last one tried, from which the next search goes on.
    """

    learning_rate: jax.Array
    value: jax.Array
    grad: Any
    info: BacktrackingLinesearchInfo


class ScaleByBacktrackingLinesearch(Transform):
    """Scales a descent direction by the first of shrinking steps with sufficient decrease."""

    max_backtracking_steps: int
    slope_rtol: float = 1e-4
    decrease_factor: float = 0.8
    increase_factor: float = 1.5
    max_learning_rate: float = 1.0
    atol: float = 0.0
    rtol: float = 0.0
    store_grad: bool = static(False)
    verbose: bool = static(False)

    def __post_init__(self):
        check_range(self, "max_backtracking_steps", low=0.0, integer=True)
        check_range(self, "slope_rtol", low=0.0, high=1.0, high_open=True)
        check_range(self, "decrease_factor", low=0.0, high=1.0, low_open=True, high_open=True)
        check_range(self, "increase_factor", low=1.0, allow_inf=True)
        check_range(self, "max_learning_rate", low=0.0, low_open=True)
        check_range(self, "atol", low=0.0)
        check_range(self, "rtol", low=0.0)

    def init(self, params):
        dtype = default_float()
        return ScaleByBacktrackingLinesearchState(
            learning_rate=jnp.ones([], dtype),
            value=jnp.full([], jnp.inf, dtype),
            grad=tree_zeros_like(params) if self.store_grad else None,
            info=BacktrackingLinesearchInfo(
                num_linesearch_steps=zero_count(),
                decrease_error=jnp.full([], jnp.inf, dtype),
                failed=jnp.zeros([], bool),
            ),
        )

    def update(
        self, updates, state, params=None, *, value=None, grad=None, value_fn=None, **extra_args
    ):
        _require_loss(self, params, value, grad, value_fn)
        kwargs = _kwargs_for(value_fn, extra_args)
        dtype = default_float()
        value = jnp.asarray(value, dtype)
        slope = tree_vdot(grad, updates)

        def decrease_error(step, new_value):
            return _finite_or_inf(
                new_value - (1.0 + self.rtol) * value - step * self.slope_rtol * slope
            )

        def body(carry):
            count, step, _, _ = carry
            step = jnp.where(count > 0, self.decrease_factor * step, step).astype(dtype)
            new_value = jnp.asarray(value_fn(_at_step(params, step, updates), **kwargs), dtype)
            return count + 1, step, new_value, decrease_error(step, new_value)

        def cond(carry):
            count, _, _, error = carry
            return ~(error <= self.atol) & (count <= self.max_backtracking_steps)

        start = jnp.minimum(self.increase_factor * state.learning_rate, self.max_learning_rate)
        count, step, new_value, error = jax.lax.while_loop(
            cond, body, (zero_count(), start.astype(dtype), value, jnp.full([], jnp.inf, dtype))
        )
        failed = ~(error <= self.atol)
        taken = jnp.where(failed, 0.0, step)
        new_grad = None
        if self.store_grad:
            new_grad = jax.lax.cond(
                failed,
                lambda: tree_cast_like(grad, state.grad),
                lambda: tree_cast_like(
                    jax.grad(lambda p: value_fn(p, **kwargs))(_at_step(params, step, updates)),
                    state.grad,
                ),
            )
        _report_failure(
            self.verbose,
            failed,
            "scale_by_backtracking_linesearch: no step in {count} tries decreased the loss "
            "{value} enough along a direction of slope {slope} (decrease error {error}); "
            "no step taken",
            count=count,
            value=value,
            slope=slope,
            error=error,
        )
        new_state = ScaleByBacktrackingLinesearchState(
            learning_rate=step,
            value=jnp.where(failed, value, new_value),
            grad=new_grad,
            info=BacktrackingLinesearchInfo(count, error, failed),
        )
        return tree_scale(taken, updates), new_state


def scale_by_backtracking_linesearch(
    max_backtracking_steps: int,
    slope_rtol: float = 1e-4,
    decrease_factor: float = 0.8,
    increase_factor: float = 1.5,
    max_learning_rate: float = 1.0,
    atol: float = 0.0,
    rtol: float = 0.0,
    store_grad: bool = False,
    verbose: bool = False,
) -> ScaleByBacktrackingLinesearch:
    """Scales a descent direction by a step with sufficient decrease (Armijo backtracking).

    With ``f`` the loss, ``w`` the params and ``d`` the incoming direction, tries
    the steps ``a_0 = min(increase_factor * a_prev, max_learning_rate)``, then
    ``a_{i+1} = decrease_factor * a_i``, and takes the first with::

        f(w + a d) <= (1 + rtol) f(w) + a * slope_rtol * <grad f(w), d> + atol
        u <- a d

    within ``max_backtracking_steps`` reductions (``max_backtracking_steps + 1``
    evaluations of the loss). ``store_grad`` also computes the gradient there,
    for :func:`value_and_grad_from_state`. Called as optax's:
    ``update(direction, state, params, value=..., grad=..., value_fn=..., **fn_kwargs)``;
    keyword arguments that ``value_fn`` accepts are passed to it.

    Difference from ``optax.scale_by_backtracking_linesearch``, only where the
    search fails: if no step tried has sufficient decrease, no step is taken
    (optax takes the last one tried unless the loss is NaN or inf there),
    ``info.failed`` says so and ``value``/``grad`` stay those at ``w``; the next
    search goes on from the last step tried, as optax's does (optax's would
    stay at 0 after a NaN).

    Args:
        max_backtracking_steps: reductions tried, an integer >= 0 (required).
        slope_rtol: the Armijo constant, in [0, 1). Default 1e-4.
        decrease_factor: in (0, 1). Default 0.8.
        increase_factor: growth of the first guess from the last step, >= 1 (inf
            allowed). Default 1.5.
        max_learning_rate: the cap on a step, > 0. Default 1.0.
        atol: absolute slack of the decrease test, >= 0. Default 0.0.
        rtol: relative slack of the decrease test, >= 0. Default 0.0.
        store_grad: also compute the gradient at the new params. Default False.
        verbose: print when the search fails. Default False.

    References: Armijo, *Minimization of functions having Lipschitz continuous
    first partial derivatives*, 1966; Nocedal & Wright, *Numerical Optimization*,
    2nd ed., algorithm 3.1; Vaswani et al., *Painless stochastic gradient*, 2019.

    >>> import gradtx, jax, jax.numpy as jnp
    >>> f = lambda x: jnp.sum((x - 1.0) ** 2)
    >>> x = jnp.array([0.0, 0.0])
    >>> tx = gradtx.chain(gradtx.sgd(1.0), gradtx.scale_by_backtracking_linesearch(15))
    >>> value, grad = jax.value_and_grad(f)(x)
    >>> u, state = tx.update(grad, tx.init(x), x, value=value, grad=grad, value_fn=f)
    >>> [round(float(v), 4) for v in u]  # the direction -g = [2, 2], shrunk once to 0.8
    [1.6, 1.6]
    """
    return ScaleByBacktrackingLinesearch(
        max_backtracking_steps=max_backtracking_steps,
        slope_rtol=slope_rtol,
        decrease_factor=decrease_factor,
        increase_factor=increase_factor,
        max_learning_rate=max_learning_rate,
        atol=atol,
        rtol=rtol,
        store_grad=store_grad,
        verbose=verbose,
    )


# -- zoom (strong Wolfe) -------------------------------------------------------------


class ZoomLinesearchInfo(NamedTuple):
    """How the last search went.

    ``decrease_error`` and ``curvature_error``: how far the last step tried is
    from each condition (0: met, inf: the loss is NaN or inf there);
    ``failed``: no step met both, so the step taken is the lowest point found
    with sufficient decrease, or 0 if there is none.
    """

    num_linesearch_steps: jax.Array
    decrease_error: jax.Array
    curvature_error: jax.Array
    failed: jax.Array


class ScaleByZoomLinesearchState(NamedTuple):
    """The step, the loss and gradient at the new params, and the search's start.

    ``learning_rate`` is the step taken or, where the search failed and took
    none (``info.failed``), the last one tried, from which a ``"keep"`` search
    goes on. ``value`` and ``grad`` are for :func:`value_and_grad_from_state`
    (``value`` is inf before the first step); ``slope`` is ``grad . direction``
    at the old params (for ``initial_guess_strategy="slope"``).
    """

    learning_rate: jax.Array
    value: jax.Array
    grad: Any
    slope: jax.Array
    info: ZoomLinesearchInfo


class _Point(NamedTuple):
    """A step along the line, the loss there and its slope ``grad . direction``."""

    step: jax.Array
    value: jax.Array
    slope: jax.Array


class _Search(NamedTuple):
    """The search between evaluations (Nocedal & Wright's algorithms 3.5 and 3.6).

    Until ``bracketed``, steps grow from ``trial`` (the last one tried); then
    [lo, hi] holds a step that meets both conditions, lo with the lower value,
    and ``ref`` (the bracket end dropped last) is the third point of the cubic.
    ``safe`` is the best step found with sufficient decrease (0 at first).
    """

    count: jax.Array
    bracketed: jax.Array
    done: jax.Array
    failed: jax.Array
    trial: _Point
    trial_grad: Any
    decrease_error: jax.Array
    curvature_error: jax.Array
    lo: _Point
    hi: _Point
    ref: _Point
    safe: _Point
    safe_grad: Any


def _where(pred: jax.Array, a: Any, b: Any) -> Any:
    return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


def _cubic_minimizer(a: _Point, b: _Point, c: _Point) -> jax.Array:
    """The minimizer of the cubic through a (value and slope), b and c (values only).

    With the cubic ``p(x) = A x^3 + B x^2 + a.slope x + a.value`` in ``x = t - a.step``,
    A and B solve the 2x2 system at b and c; NaN where it is singular or the
    cubic has no minimum (then the caller falls back to a quadratic).
    """
    db, dc = b.step - a.step, c.step - a.step
    rb = b.value - a.value - a.slope * db
    rc = c.value - a.value - a.slope * dc
    determinant = (db * dc) ** 2 * (db - dc)
    A = (dc**2 * rb - db**2 * rc) / determinant
    B = (db**3 * rc - dc**3 * rb) / determinant
    return a.step + (-B + jnp.sqrt(B * B - 3.0 * A * a.slope)) / (3.0 * A)


def _quadratic_minimizer(a: _Point, b: _Point) -> jax.Array:
    """The minimizer of the parabola through a (value and slope) and b (value)."""
    db = b.step - a.step
    curvature = (b.value - a.value - a.slope * db) / db**2
    return a.step - a.slope / (2.0 * curvature)


def _interpolate(lo: _Point, hi: _Point, ref: _Point) -> jax.Array:
    """A step well inside [lo, hi]: the cubic's minimizer, else the parabola's, else the middle."""
    width = jnp.abs(hi.step - lo.step)
    left, right = jnp.minimum(lo.step, hi.step), jnp.maximum(lo.step, hi.step)
    cubic = _cubic_minimizer(lo, hi, ref)
    quadratic = _quadratic_minimizer(lo, hi)
    cubic_ok = (cubic > left + 0.2 * width) & (cubic < right - 0.2 * width)
    quadratic_ok = (quadratic > left + 0.1 * width) & (quadratic < right - 0.1 * width)
    middle = (lo.step + hi.step) / 2.0
    return jnp.where(cubic_ok, cubic, jnp.where(quadratic_ok, quadratic, middle))


class ScaleByZoomLinesearch(Transform):
    """Scales a descent direction by a step that meets the strong Wolfe conditions."""

    max_linesearch_steps: int
    max_learning_rate: Any = None
    tol: float = 0.0
    increase_factor: float = 2.0
    slope_rtol: float = 1e-4
    curv_rtol: float = 0.9
    approx_dec_rtol: Any = 1e-6
    stepsize_precision: float = 1e-5
    initial_guess_strategy: str = static("keep")
    verbose: bool = static(False)

    def __post_init__(self):
        check_range(self, "max_linesearch_steps", low=1.0, integer=True)
        check_range(self, "max_learning_rate", low=0.0, low_open=True)  # None: no cap
        check_range(self, "tol", low=0.0)
        check_range(self, "increase_factor", low=1.0, low_open=True)
        check_range(self, "slope_rtol", low=0.0, high=1.0, low_open=True, high_open=True)
        # inf turns the curvature condition off (optax's note): a backtracking search.
        check_range(self, "curv_rtol", low=0.0, low_open=True, allow_inf=True)
        check_range(self, "approx_dec_rtol", low=0.0)
        check_range(self, "stepsize_precision", low=0.0)
        check_choice(self, "initial_guess_strategy", INITIAL_GUESSES)
        both = (self.slope_rtol, self.curv_rtol)
        if all(isinstance(v, (int, float)) for v in both) and self.curv_rtol <= self.slope_rtol:
            fail(self, "curv_rtol", f"curv_rtol must exceed slope_rtol={self.slope_rtol!r}")

    def init(self, params):
        dtype = default_float()
        return ScaleByZoomLinesearchState(
            learning_rate=jnp.ones([], dtype),
            value=jnp.full([], jnp.inf, dtype),
            grad=tree_zeros_like(params),
            slope=jnp.zeros([], dtype),
            info=ZoomLinesearchInfo(
                num_linesearch_steps=zero_count(),
                decrease_error=jnp.full([], jnp.inf, dtype),
                curvature_error=jnp.full([], jnp.inf, dtype),
                failed=jnp.zeros([], bool),
            ),
        )

    def update(
        self, updates, state, params=None, *, value=None, grad=None, value_fn=None, **extra_args
    ):
        _require_loss(self, params, value, grad, value_fn)
        kwargs = _kwargs_for(value_fn, extra_args)
        value_and_grad = jax.value_and_grad(lambda p: value_fn(p, **kwargs))
        dtype = default_float()
        direction = updates

        def evaluate(step):
            new_value, new_grad = value_and_grad(_at_step(params, step, direction))
            new_grad = tree_cast_like(new_grad, state.grad)
            return _Point(step, new_value.astype(dtype), tree_vdot(new_grad, direction)), new_grad

        origin = _Point(jnp.zeros([], dtype), jnp.asarray(value, dtype), tree_vdot(grad, direction))
        grad = tree_cast_like(grad, state.grad)
        guess = self._initial_step(state, origin.slope)

        def errors(point: _Point) -> tuple[jax.Array, jax.Array]:
            # Sufficient decrease (N&W eq. 3.7a) ...
            decrease = point.value - origin.value - self.slope_rtol * point.step * origin.slope
            if self.approx_dec_rtol is not None:
                # ... or, where the loss is within approx_dec_rtol of its start (values
                # equal up to rounding), Hager & Zhang's approximate Wolfe condition.
                approx = jnp.maximum(
                    point.slope - (2 * self.slope_rtol - 1.0) * origin.slope,
                    point.value - origin.value - self.approx_dec_rtol * jnp.abs(origin.value),
                )
                decrease = jnp.minimum(approx, decrease)
            # Strong curvature (N&W eq. 3.7b).
            curvature = jnp.abs(point.slope) - self.curv_rtol * jnp.abs(origin.slope)
            return _finite_or_inf(decrease), _finite_or_inf(curvature)

        def body(search: _Search) -> _Search:
            first = search.count == 0
            grown = jnp.where(first, guess, self.increase_factor * search.trial.step)
            capped = jnp.zeros([], bool)
            if self.max_learning_rate is not None:
                capped = grown >= self.max_learning_rate
                grown = jnp.minimum(grown, self.max_learning_rate)
            step = jnp.where(
                search.bracketed, _interpolate(search.lo, search.hi, search.ref), grown
            )
            point, point_grad = evaluate(step.astype(dtype))
            decrease_error, curvature_error = errors(point)
            wolfe = jnp.maximum(decrease_error, curvature_error) <= self.tol
            sufficient = decrease_error <= self.tol

            # Growing (algorithm 3.5): the bracket is found once the loss rises or
            # the slope turns; lo is the end with the lower value.
            previous = search.trial
            rises = (decrease_error > 0) | ((point.value >= previous.value) & ~first)
            turns = (point.slope >= 0) & ~rises
            grow_lo, grow_hi = _where(turns, point, previous), _where(turns, previous, point)
            # Zooming (algorithm 3.6): the point replaces the end it is on the side of.
            high = (decrease_error > 0) | (point.value >= search.lo.value)
            swap = (point.slope * (search.hi.step - search.lo.step) >= 0) & ~high
            zoom_lo = _where(high, search.lo, point)
            zoom_hi = _where(high, point, _where(swap, search.lo, search.hi))
            zoom_ref = _where(high | swap, search.hi, search.lo)

            zooming = search.bracketed
            better = sufficient & (~zooming | (point.value < search.safe.value))
            safe = _where(better, point, search.safe)
            bracketed = zooming | rises | turns | wolfe
            # Capped at max_learning_rate with the loss still falling: take the cap.
            done = wolfe | (~zooming & capped & ~bracketed)
            too_narrow = jnp.abs(search.hi.step - search.lo.step) <= self.stepsize_precision
            out_of_steps = search.count + 1 >= self.max_linesearch_steps
            failed = ~done & (out_of_steps | (zooming & too_narrow & (safe.step > 0)))
            return _Search(
                count=search.count + 1,
                bracketed=bracketed,
                done=done,
                failed=failed,
                trial=point,
                trial_grad=point_grad,
                decrease_error=decrease_error,
                curvature_error=curvature_error,
                lo=_where(zooming, zoom_lo, grow_lo),
                hi=_where(zooming, zoom_hi, grow_hi),
                ref=_where(zooming, zoom_ref, grow_lo),
                safe=safe,
                safe_grad=_where(better, point_grad, search.safe_grad),
            )

        def cond(search: _Search) -> jax.Array:
            return ~(search.done | search.failed)

        inf = jnp.full([], jnp.inf, dtype)
        search = jax.lax.while_loop(
            cond,
            body,
            _Search(
                count=zero_count(),
                bracketed=jnp.zeros([], bool),
                done=jnp.zeros([], bool),
                failed=~(origin.slope <= 0),  # not a descent direction: no step
                trial=origin,
                trial_grad=grad,
                decrease_error=inf,
                curvature_error=inf,
                lo=origin,
                hi=origin,
                ref=origin,
                safe=origin,
                safe_grad=grad,
            ),
        )
        # A failed search falls back on the best step with sufficient decrease, or none.
        final = _where(search.failed, search.safe, search.trial)
        final_grad = _where(search.failed, search.safe_grad, search.trial_grad)
        # Where no step is taken, the next search goes on from the last one tried.
        learning_rate = jnp.where(final.step > 0, final.step, search.trial.step)
        _report_failure(
            self.verbose,
            search.failed,
            "scale_by_zoom_linesearch: no step in {count} tries met the strong Wolfe "
            "conditions from loss {value} and slope {slope} (decrease error {decrease}, "
            "curvature error {curvature} at the last); step {step} taken instead",
            count=search.count,
            value=origin.value,
            slope=origin.slope,
            decrease=search.decrease_error,
            curvature=search.curvature_error,
            step=final.step,
        )
        new_state = ScaleByZoomLinesearchState(
            learning_rate=learning_rate,
            value=final.value,
            grad=final_grad,
            slope=origin.slope,
            info=ZoomLinesearchInfo(
                num_linesearch_steps=search.count,
                decrease_error=search.decrease_error,
                curvature_error=search.curvature_error,
                failed=search.failed,
            ),
        )
        return tree_scale(final.step, direction), new_state

    def _initial_step(self, state: ScaleByZoomLinesearchState, slope: jax.Array) -> jax.Array:
        one = jnp.ones([], slope.dtype)
        if self.initial_guess_strategy == "one":
            return one
        last = state.learning_rate.astype(slope.dtype)
        if self.initial_guess_strategy == "keep":
            guess = last
        else:  # N&W eq. 3.60: the same first-order decrease as at the last step.
            guess = last * state.slope / slope
        # No step yet (or an uphill direction last time): start from 1, not from 0.
        return jnp.where(jnp.isfinite(guess) & (guess > 0), guess, one)


def scale_by_zoom_linesearch(
    max_linesearch_steps: int,
    max_learning_rate: Any = None,
    tol: float = 0.0,
    increase_factor: float = 2.0,
    slope_rtol: float = 1e-4,
    curv_rtol: float = 0.9,
    approx_dec_rtol: Any = 1e-6,
    stepsize_precision: float = 1e-5,
    initial_guess_strategy: str = "keep",
    verbose: bool = False,
) -> ScaleByZoomLinesearch:
    """Scales a descent direction by a step that meets the strong Wolfe conditions.

    With ``phi(a) = value_fn(params + a * d)`` along the incoming direction d,
    finds a step a with::

        phi(a) <= phi(0) + slope_rtol * a * phi'(0) + tol     (sufficient decrease)
        |phi'(a)| <= curv_rtol * |phi'(0)| + tol              (strong curvature)
        u <- a d

    Steps grow by ``increase_factor`` from the initial guess until the loss
    rises or the slope turns (a bracket), then the bracket is zoomed into by
    safeguarded cubic, then quadratic, interpolation, else bisection (Nocedal &
    Wright, algorithms 3.5 and 3.6), for at most ``max_linesearch_steps``
    evaluations of the loss and gradient. Where the loss is within
    ``approx_dec_rtol * |phi(0)|`` of phi(0), Hager and Zhang's approximate
    condition ``phi'(a) <= (1 - 2 slope_rtol) |phi'(0)|`` may replace sufficient
    decrease (None: never), so that values equal up to rounding do not stall
    the search. The first guess is the last step (``"keep"``), 1 (``"one"``, for
    quasi-Newton directions) or the step that gives the last first-order decrease
    (``"slope"``, N&W eq. 3.60, for gradient and conjugate gradient directions).
    If no step meets both conditions (``info.failed``), the step taken is the one
    with sufficient decrease and the lowest loss found, or 0; the bracket
    narrowing below ``stepsize_precision`` with such a step in hand ends the
    search early. ``max_learning_rate`` caps the steps; ``curv_rtol=inf`` drops
    the curvature condition.

    Called as optax's: ``update(direction, state, params, value=..., grad=...,
    value_fn=..., **fn_kwargs)``, with the loss and gradient at params; keyword
    arguments that ``value_fn`` accepts are passed to it. The state keeps the loss
    and gradient at the new params for :func:`value_and_grad_from_state`.

    Differences from ``optax.scale_by_zoom_linesearch`` (the same steps
    otherwise): a failed search with no step of sufficient decrease takes no
    step (optax takes the last step tried unless the loss is NaN there, then
    stays at 0 with ``"keep"``), and an uphill direction none, without
    evaluating the loss; ``"slope"`` and ``info.failed`` are gradtx's.

    Args:
        max_linesearch_steps: evaluations per search, an integer >= 1 (required).
        max_learning_rate: the cap on a step, > 0, or None for none. Default None.
        tol: slack of both conditions, >= 0. Default 0.0.
        increase_factor: growth while bracketing, > 1. Default 2.0.
        slope_rtol: the sufficient-decrease constant, in (0, 1). Default 1e-4.
        curv_rtol: the curvature constant, > 0 (inf: none), above slope_rtol.
            Default 0.9.
        approx_dec_rtol: >= 0, or None. Default 1e-6.
        stepsize_precision: >= 0. Default 1e-5.
        initial_guess_strategy: ``"keep"``, ``"one"`` or ``"slope"``. Default ``"keep"``.
        verbose: print when the search fails. Default False.

    References: Nocedal & Wright, *Numerical Optimization*, 2nd ed., section 3.5;
    Hager & Zhang, *Algorithm 851: CG_DESCENT*, ACM TOMS, 2006.

    >>> import gradtx, jax, jax.numpy as jnp
    >>> f = lambda x: jnp.sum((x - 1.0) ** 2)
    >>> x = jnp.array([0.0, 0.0])
    >>> tx = gradtx.chain(gradtx.sgd(1.0), gradtx.scale_by_zoom_linesearch(15))
    >>> value, grad = jax.value_and_grad(f)(x)
    >>> u, state = tx.update(grad, tx.init(x), x, value=value, grad=grad, value_fn=f)
    >>> [round(float(v), 4) for v in u]  # the exact minimiser along -g
    [1.0, 1.0]
    """
    return ScaleByZoomLinesearch(
        max_linesearch_steps=max_linesearch_steps,
        max_learning_rate=max_learning_rate,
        tol=tol,
        increase_factor=increase_factor,
        slope_rtol=slope_rtol,
        curv_rtol=curv_rtol,
        approx_dec_rtol=approx_dec_rtol,
        stepsize_precision=stepsize_precision,
        initial_guess_strategy=initial_guess_strategy,
        verbose=verbose,
    )


# -- reusing what the search computed --------------------------------------------------


def value_and_grad_from_state(value_fn: Callable[..., Any]) -> Callable[..., Any]:
    """Like ``jax.value_and_grad(value_fn)``, reusing what a line search stored in the state.

    The returned function is called as ``value_and_grad(params, *args, state=state,
    **kwargs)``. It returns the state's ``value`` and ``grad`` (the loss and
    gradient at the params the last update led to), or computes them when the
    value is not finite (before the first step). As ``optax.value_and_grad_from_state``;
    only for full-batch problems, where the loss does not change between steps.

    Args:
        value_fn: the loss, a function of the params (and of extra arguments).

    Reference: ``optax.value_and_grad_from_state``.

    >>> import gradtx, jax, jax.numpy as jnp
    >>> f = lambda x: jnp.sum((x - 1.0) ** 2)
    >>> x = jnp.array([0.0, 0.0])
    >>> tx = gradtx.chain(gradtx.sgd(1.0), gradtx.scale_by_zoom_linesearch(15))
    >>> value_and_grad = gradtx.value_and_grad_from_state(f)
    >>> state = tx.init(x)
    >>> value, grad = value_and_grad(x, state=state)  # computed: nothing stored yet
    >>> u, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=f)
    >>> value, grad = value_and_grad(x + u, state=state)  # read from the state
    >>> round(float(value), 4), [round(float(v), 4) for v in grad]
    (0.0, [0.0, 0.0])
    """
    value_and_grad = jax.value_and_grad(value_fn)

    def from_state(params, *args, state, **kwargs):
        value, grad = tree_get(state, "value"), tree_get(state, "grad")
        if value is None or grad is None:
            raise ValueError(
                "value_and_grad_from_state: the state holds no 'value' and 'grad'; "
                "does the optimizer end with a line search (with store_grad=True for "
                "scale_by_backtracking_linesearch)?"
            )

        def fresh():
            new_value, new_grad = value_and_grad(params, *args, **kwargs)
            return jnp.asarray(new_value, value.dtype), tree_cast_like(new_grad, grad)

        return jax.lax.cond(jnp.isfinite(value), lambda: (value, grad), fresh)

    return from_state
