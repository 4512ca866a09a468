"""``torch.optim.LBFGS`` (torch 2.13), ported exactly: one update is one ``step(closure)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp

from ..._base import check_choice, check_range, fail_missing, static, Transform
from ..._combine import Chain, named_recipe, recipe
from ..._linesearch import _kwargs_for
from ..._tree import compute_dtype, zero_count

LINE_SEARCH_FNS = (None, "strong_wolfe")

# torch calls its _strong_wolfe with that function's own defaults: c1, c2, and a bracket
# tolerance of 1e-9 whatever the optimizer's tolerance_change.
_C1, _C2, _BRACKET_TOLERANCE = 1e-4, 0.9, 1e-9
_MIN_CURVATURE = 1e-10  # a pair with y.s at or below it is not stored


class PytorchLbfgsState(NamedTuple):
    """torch's LBFGS state, under its names, over all params raveled into one vector.

    The history (``old_dirs``: the y, ``old_stps``: the s, ``ro``: 1 / y.s) is a ring of
    ``history_size`` rows: ``num_old`` of them are held, the oldest at row ``oldest``.
    ``n_iter`` and ``func_evals`` count over all updates, as torch's; ``loss`` is the loss
    at the params the last update started from (what torch's ``step`` returns).
    """

    d: jax.Array
    t: jax.Array
    old_dirs: jax.Array
    old_stps: jax.Array
    ro: jax.Array
    num_old: jax.Array
    oldest: jax.Array
    h_diag: jax.Array
    prev_flat_grad: jax.Array
    prev_loss: jax.Array
    n_iter: jax.Array
    func_evals: jax.Array
    loss: jax.Array


class _Iteration(NamedTuple):
    """What one inner iteration of ``step`` hands the next."""

    state: PytorchLbfgsState
    x: jax.Array
    loss: jax.Array
    flat_grad: jax.Array
    opt_cond: jax.Array
    n_iter: jax.Array  # this update's iterations (torch's local n_iter)
    current_evals: jax.Array
    done: jax.Array


# -- torch's _cubic_interpolate and _strong_wolfe ----------------------------------------


def _max(a: jax.Array, b: jax.Array) -> jax.Array:
    """Python's ``max(a, b)``: ``a`` unless ``b > a`` (so NaN passes through as torch's)."""
    return jnp.where(b > a, b, a)


def _min(a: jax.Array, b: jax.Array) -> jax.Array:
    """Python's ``min(a, b)``: ``a`` unless ``b < a``."""
    return jnp.where(b < a, b, a)


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None) -> jax.Array:
    """The minimiser of the cubic through (x1, f1, g1) and (x2, f2, g2), clipped to ``bounds``.

    ``bounds`` defaults to [min(x1, x2), max(x1, x2)]; where the cubic has no
    minimum, the bounds' midpoint.
    """
    if bounds is None:
        ordered = x1 <= x2
        bounds = (jnp.where(ordered, x1, x2), jnp.where(ordered, x2, x1))
    low, high = bounds
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    d2 = jnp.sqrt(jnp.where(d2_square >= 0, d2_square, 0.0))
    # The same formula seen from the farther point, as torch writes it for either order.
    from_x2 = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    from_x1 = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    min_pos = jnp.where(x1 <= x2, from_x2, from_x1)
    return jnp.where(d2_square >= 0, _min(_max(min_pos, low), high), (low + high) / 2.0)


class _Bracketing(NamedTuple):
    """The first phase: steps grow until they bracket a Wolfe point (or satisfy it)."""

    ls_iter: jax.Array
    t: jax.Array
    f_new: jax.Array
    g_new: jax.Array
    gtd_new: jax.Array
    t_prev: jax.Array
    f_prev: jax.Array
    g_prev: jax.Array
    gtd_prev: jax.Array


class _Zoom(NamedTuple):
    """The second phase: a bracket of two points (rows 0, 1), shrunk around a Wolfe point."""

    ls_iter: jax.Array
    done: jax.Array
    insuf_progress: jax.Array
    low_pos: jax.Array
    t: jax.Array  # (2,)
    f: jax.Array  # (2,)
    g: jax.Array  # (2, n)
    gtd: jax.Array  # (2,)


def _strong_wolfe(
    value_and_grad: Callable, x: jax.Array, t, d, f, g, gtd, max_ls
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """torch's ``_strong_wolfe`` along ``d`` from ``x``: (f, g, t, evaluations)."""
    d_norm = jnp.max(jnp.abs(d))
    zero = jnp.zeros_like(t)

    def evaluate(step):
        f_new, g_new = value_and_grad(x + step * d)
        return f_new, g_new, jnp.dot(g_new, d)

    def tests(s: _Bracketing):
        too_high = (s.f_new > f + _C1 * s.t * gtd) | ((s.ls_iter > 1) & (s.f_new >= s.f_prev))
        wolfe = jnp.abs(s.gtd_new) <= -_C2 * gtd
        return too_high, wolfe, s.gtd_new >= 0

    def keep_bracketing(s: _Bracketing):
        too_high, wolfe, uphill = tests(s)
        return (s.ls_iter < max_ls) & ~(too_high | wolfe | uphill)

    def extrapolate(s: _Bracketing) -> _Bracketing:
        bounds = (s.t + 0.01 * (s.t - s.t_prev), s.t * 10)
        t = _cubic_interpolate(s.t_prev, s.f_prev, s.gtd_prev, s.t, s.f_new, s.gtd_new, bounds)
        return _Bracketing(s.ls_iter + 1, t, *evaluate(t), s.t, s.f_new, s.g_new, s.gtd_new)

    s = jax.lax.while_loop(
        keep_bracketing,
        extrapolate,
        _Bracketing(zero_count(), t, *evaluate(t), zero, f, g, gtd),
    )
    # torch looks at the tests only while ls_iter < max_ls; past it, the bracket is [0, t].
    exhausted = s.ls_iter == max_ls
    too_high, wolfe, _ = tests(s)
    done = ~exhausted & ~too_high & wolfe
    first = jnp.where(exhausted, 0.0, jnp.where(done, s.t, s.t_prev))
    first_f = jnp.where(exhausted, f, jnp.where(done, s.f_new, s.f_prev))
    first_g = jnp.where(exhausted, g, jnp.where(done, s.g_new, s.g_prev))
    first_gtd = jnp.where(exhausted, gtd, jnp.where(done, s.gtd_new, s.gtd_prev))
    bracket_f = jnp.stack([first_f, s.f_new])

    def keep_zooming(z: _Zoom):
        narrow = jnp.abs(z.t[1] - z.t[0]) * d_norm < _BRACKET_TOLERANCE
        return ~z.done & (z.ls_iter < max_ls) & ~narrow

    def zoom(z: _Zoom) -> _Zoom:
        t = _cubic_interpolate(z.t[0], z.f[0], z.gtd[0], z.t[1], z.f[1], z.gtd[1])
        # Too close to an end twice running, or outside: 10% of the bracket inside instead.
        top, bottom = _max(z.t[0], z.t[1]), _min(z.t[0], z.t[1])
        eps = 0.1 * (top - bottom)
        near_end = _min(top - t, t - bottom) < eps
        moved = near_end & (z.insuf_progress | (t >= top) | (t <= bottom))
        inside = jnp.where(jnp.abs(t - top) < jnp.abs(t - bottom), top - eps, bottom + eps)
        t = jnp.where(moved, inside, t)
        f_new, g_new, gtd_new = evaluate(t)

        low, high = z.low_pos, 1 - z.low_pos
        replaces_high = (f_new > f + _C1 * t * gtd) | (f_new >= z.f[low])
        wolfe = jnp.abs(gtd_new) <= -_C2 * gtd
        # Otherwise t becomes the low end; the old low the high one if t overshot it.
        low_to_high = ~replaces_high & ~wolfe & (gtd_new * (z.t[high] - z.t[low]) >= 0)
        into = jnp.where(replaces_high, high, low)
        bracket = [z.t, z.f, z.g, z.gtd]
        bracket = [
            jnp.where(low_to_high, b.at[high].set(b[low]), b).at[into].set(new)
            for b, new in zip(bracket, (t, f_new, g_new, gtd_new))
        ]
        low_pos = jnp.where(
            replaces_high, jnp.where(bracket[1][0] <= bracket[1][1], 0, 1), z.low_pos
        )
        return _Zoom(
            z.ls_iter + 1,
            ~replaces_high & wolfe,
            near_end & ~moved,
            low_pos,
            *bracket,
        )

    z = jax.lax.while_loop(
        keep_zooming,
        zoom,
        _Zoom(
            s.ls_iter,
            done,
            jnp.zeros([], bool),
            jnp.where(bracket_f[0] <= bracket_f[1], 0, 1),
            jnp.stack([first, s.t]),
            bracket_f,
            jnp.stack([first_g, s.g_new]),
            jnp.stack([first_gtd, s.gtd_new]),
        ),
    )
    evaluations = 1 + z.ls_iter  # every phase-one and zoom iteration evaluates once
    return z.f[z.low_pos], z.g[z.low_pos], z.t[z.low_pos], evaluations


# -- the history --------------------------------------------------------------------------


def _remember(state: PytorchLbfgsState, y: jax.Array, s: jax.Array, ys: jax.Array):
    """The state with (y, s, 1 / ys) stored, the oldest pair dropped when the ring is full."""
    size = state.ro.shape[0]
    full = state.num_old == size
    row = jnp.where(full, state.oldest, (state.oldest + state.num_old) % size)
    return state._replace(
        old_dirs=state.old_dirs.at[row].set(y),
        old_stps=state.old_stps.at[row].set(s),
        ro=state.ro.at[row].set(1.0 / ys),
        num_old=jnp.where(full, state.num_old, state.num_old + 1),
        oldest=jnp.where(full, (state.oldest + 1) % size, state.oldest),
        h_diag=ys / jnp.dot(y, y),
    )


def _two_loop(state: PytorchLbfgsState, flat_grad: jax.Array) -> jax.Array:
    """``-H g``: the two-loop recursion over the stored pairs, newest first, then oldest first."""
    size = state.ro.shape[0]

    def row(i):
        return (state.oldest + i) % size

    def backward(k, carry):
        q, al = carry
        i = row(state.num_old - 1 - k)
        al_i = jnp.dot(state.old_stps[i], q) * state.ro[i]
        return q + (-al_i) * state.old_dirs[i], al.at[i].set(al_i)

    def forward(k, r):
        i = row(k)
        be_i = jnp.dot(state.old_dirs[i], r) * state.ro[i]
        return r + (al[i] - be_i) * state.old_stps[i]

    q, al = jax.lax.fori_loop(0, state.num_old, backward, (-flat_grad, jnp.zeros_like(state.ro)))
    return jax.lax.fori_loop(0, state.num_old, forward, q * state.h_diag)


# -- the optimizer ------------------------------------------------------------------------


class PytorchLbfgs(Transform):
    """torch.optim.LBFGS's ``step(closure)``: up to max_iter L-BFGS iterations per update."""

    lr: float = 1.0
    max_iter: int = 20
    max_eval: int = 25
    tolerance_grad: float = 1e-7
    tolerance_change: float = 1e-9
    history_size: int = static(100)
    line_search_fn: str | None = static(None)

    @property
    def name(self) -> str:
        return "pytorch.lbfgs"

    def __post_init__(self):
        check_range(self, "lr", low=0.0, low_open=True)
        check_range(self, "max_iter", low=1.0, integer=True)
        check_range(self, "max_eval", low=1.0, integer=True)
        check_range(self, "tolerance_grad", low=0.0)
        check_range(self, "tolerance_change", low=0.0)
        check_range(self, "history_size", low=1.0, integer=True)
        check_choice(self, "line_search_fn", LINE_SEARCH_FNS)

    def init(self, params):
        flat = ravel_pytree(params)[0]
        dtype = compute_dtype(flat)
        vector = jnp.zeros(flat.shape, dtype)
        rows = jnp.zeros((self.history_size, *flat.shape), dtype)
        return PytorchLbfgsState(
            d=vector,
            t=jnp.zeros([], dtype),
            old_dirs=rows,
            old_stps=rows,
            ro=jnp.zeros([self.history_size], dtype),
            num_old=zero_count(),
            oldest=zero_count(),
            h_diag=jnp.ones([], dtype),
            prev_flat_grad=vector,
            prev_loss=jnp.zeros([], dtype),
            n_iter=zero_count(),
            func_evals=zero_count(),
            loss=jnp.zeros([], dtype),
        )

    def update(self, updates, state, params=None, *, value=None, value_fn=None, **extra_args):
        if params is None or value_fn is None:
            fail_missing(
                self,
                "params and value_fn= (the loss as a function of the params, torch's closure)",
                "update(grads, state, params, value_fn=loss): one update is one step(closure), "
                "which evaluates the loss many times",
            )
        kwargs = _kwargs_for(value_fn, extra_args)
        x0, unravel = ravel_pytree(params)
        raveled_dtype, dtype = x0.dtype, state.d.dtype

        def loss_at(x):
            return jnp.asarray(value_fn(unravel(x.astype(raveled_dtype)), **kwargs), dtype)

        value_and_grad = jax.value_and_grad(loss_at)
        flat_grad = ravel_pytree(updates)[0].astype(dtype)
        loss = loss_at(x0.astype(dtype)) if value is None else jnp.asarray(value, dtype)
        lr = jnp.asarray(self.lr, dtype)
        tolerance_change = jnp.asarray(self.tolerance_change, dtype)

        def optimal(g):
            return jnp.max(jnp.abs(g)) <= self.tolerance_grad

        def iterate(it: _Iteration) -> _Iteration:
            n_iter = it.n_iter + 1
            state = it.state._replace(n_iter=it.state.n_iter + 1)
            first = state.n_iter == 1
            g = it.flat_grad

            def lbfgs_direction(state):
                y, s = g - state.prev_flat_grad, state.d * state.t
                ys = jnp.dot(y, s)
                state = jax.lax.cond(
                    ys > _MIN_CURVATURE, lambda: _remember(state, y, s, ys), lambda: state
                )
                return state._replace(d=_two_loop(state, g))

            state = jax.lax.cond(first, lambda s: s._replace(d=-g), lbfgs_direction, state)
            # The first step of all is at most 1 / |g|_1 long (torch's min(1, 1 / |g|_1) * lr).
            inverse_l1 = 1.0 / jnp.sum(jnp.abs(g))
            t = jnp.where(first, jnp.where(inverse_l1 < 1.0, inverse_l1, 1.0) * lr, lr)
            state = state._replace(t=t, prev_flat_grad=g, prev_loss=it.loss)
            d = state.d
            gtd = jnp.dot(g, d)

            def move(_):
                if self.line_search_fn == "strong_wolfe":
                    max_ls = self.max_eval - it.current_evals
                    f_new, g_new, t_new, evals = _strong_wolfe(
                        value_and_grad, it.x, t, d, it.loss, g, gtd, max_ls
                    )
                    return it.x + t_new * d, f_new, g_new, optimal(g_new), t_new, evals
                x = it.x + t * d
                # torch evaluates the loss after the step except in the last iteration.
                last = n_iter == self.max_iter
                f_new, g_new = jax.lax.cond(last, lambda: (it.loss, g), lambda: value_and_grad(x))
                opt_cond = jnp.where(last, it.opt_cond, optimal(g_new))
                return x, f_new, g_new, opt_cond, t, jnp.where(last, 0, 1).astype(jnp.int32)

            def stay(_):
                return it.x, it.loss, g, it.opt_cond, t, jnp.zeros([], jnp.int32)

            # A direction that does not go down by tolerance_change: stop where we are.
            descends = ~(gtd > -tolerance_change)
            x, loss, flat_grad, opt_cond, t, evals = jax.lax.cond(descends, move, stay, None)
            current_evals = it.current_evals + evals
            state = state._replace(t=t, func_evals=state.func_evals + evals)
            done = (
                ~descends
                | (n_iter == self.max_iter)
                | (current_evals >= self.max_eval)
                | opt_cond
                | (jnp.max(jnp.abs(d * t)) <= tolerance_change)
                | (jnp.abs(loss - state.prev_loss) < tolerance_change)
            )
            return _Iteration(state, x, loss, flat_grad, opt_cond, n_iter, current_evals, done)

        opt_cond = optimal(flat_grad)
        start = _Iteration(
            state=state._replace(func_evals=state.func_evals + 1, loss=loss),
            x=x0.astype(dtype),
            loss=loss,
            flat_grad=flat_grad,
            opt_cond=opt_cond,
            n_iter=zero_count(),
            current_evals=jnp.ones([], jnp.int32),
            done=opt_cond,  # already optimal: torch returns before any iteration
        )
        end = jax.lax.while_loop(lambda it: ~it.done & (it.n_iter < self.max_iter), iterate, start)
        return unravel((end.x - x0.astype(dtype)).astype(raveled_dtype)), end.state


@recipe
def lbfgs(
    lr: float = 1.0,
    max_iter: int = 20,
    max_eval: int | None = None,
    tolerance_grad: float = 1e-7,
    tolerance_change: float = 1e-9,
    history_size: int = 100,
    line_search_fn: str | None = None,
) -> Chain:
    """``torch.optim.LBFGS`` (torch 2.13): one update runs one ``step(closure)``.

    Each update runs up to ``max_iter`` iterations on the params raveled into one
    vector x (as torch's flat view), starting from the loss f and gradient g at x::

        d = -g                              (the first iteration of all)
        d = -H g                            (else: two-loop recursion over the last
                                             history_size pairs s = t d, y = g - g_prev,
                                             each kept if y.s > 1e-10; H_0 = y.s / y.y)
        t = min(1, 1 / |g|_1) lr            (the first iteration of all; else t = lr)
        t <- torch's strong-Wolfe search    (line_search_fn="strong_wolfe": cubic
                                             interpolation, c1 = 1e-4, c2 = 0.9, at most
                                             max_eval minus the evaluations so far)
        x <- x + t d;  f, g at x            (no line search: not in the last iteration)

    and stops, as torch does, when max |g| <= tolerance_grad (also before the first
    iteration), g.d > -tolerance_change, after max_iter iterations or max_eval loss
    evaluations (default max_iter * 5 // 4, counting the one at the start), or when
    max |t d| or the change of f is below tolerance_change. The history, the last d
    and t, and the counters carry over to the next update, as torch's state.

    Call ``update(grads, state, params, value_fn=loss_fn, **fn_kwargs)`` with the
    gradient at params (the first closure call of torch's step); the loss there is
    ``value=`` if given, else ``loss_fn(params)``. Keyword arguments that ``loss_fn``
    accepts are passed to it. The update is the whole move of the step;
    ``tree_get(state, "loss")`` is the loss at its start (what ``step`` returns),
    ``"n_iter"`` and ``"func_evals"`` torch's counters.

    Args:
        lr: the step scale, > 0. Default 1.0.
        max_iter: iterations per update, an integer >= 1. Default 20.
        max_eval: loss evaluations per update, an integer >= 1, or None for
            ``max_iter * 5 // 4``. Default None.
        tolerance_grad: stop when max |g| is at most this, >= 0. Default 1e-7.
        tolerance_change: stop on smaller steps or loss changes, >= 0. Default 1e-9.
        history_size: correction pairs kept, an integer >= 1. Default 100.
        line_search_fn: None or ``"strong_wolfe"``. Default None.

    Reference: PyTorch 2.13, ``torch.optim.LBFGS``; Nocedal & Wright, *Numerical
    Optimization* (2006), algorithms 7.4 and 3.5-3.6.

    >>> import gradtx, jax, jax.numpy as jnp
    >>> def loss(p): return jnp.sum((p["x"] - 1.0) ** 2) + 10 * p["y"] ** 2
    >>> params = {"x": jnp.zeros(3), "y": jnp.ones(())}
    >>> tx = gradtx.compat.pytorch.lbfgs(line_search_fn="strong_wolfe")
    >>> updates, state = tx.update(jax.grad(loss)(params), tx.init(params), params, value_fn=loss)
    >>> params = gradtx.apply_updates(params, updates)  # one step(closure): 9 iterations
    >>> float(gradtx.tree_get(state, "loss")), bool(loss(params) < 1e-10)
    (13.0, True)

    Differences from torch: none in the numbers (equal to 1e-9 in float64, see
    tests/reference/record_lbfgs.py). As between any two implementations, rounding
    can still part them where torch's own algorithm is ill-conditioned: a cubic fitted
    through trial steps 1e-7 apart, or a loss that amplifies last-bit changes of the
    params (XLA sums and contracts ``a * b - c`` into one rounding, torch does not).
    Arguments torch accepts and cannot use are refused: lr <= 0 (torch accepts 0,
    and stays put), negative tolerances, max_eval < 1 (torch's line search fails
    there). The history is a ring of history_size rows (shapes are static under
    jit): its memory, twice history_size copies of the params, is taken at init,
    where torch's grows to it.
    """
    if max_eval is None:
        max_eval = max_iter * 5 // 4
    return named_recipe(
        "pytorch.lbfgs",
        PytorchLbfgs(
            lr=lr,
            max_iter=max_iter,
            max_eval=max_eval,
            tolerance_grad=tolerance_grad,
            tolerance_change=tolerance_change,
            history_size=history_size,
            line_search_fn=line_search_fn,
        ),
    )
