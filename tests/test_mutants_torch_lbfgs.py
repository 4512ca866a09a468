"""Tests that kill the mutants of gradtx/compat/pytorch/_lbfgs.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
The reference is torch.optim.LBFGS (torch 2.13): a NumPy transcription, in float64, of its
``_cubic_interpolate``, ``_strong_wolfe`` and ``step`` (below), checked against torch itself
where torch is installed (the reference extra). The line searches run on scripted lines: the
loss and slope along the line are given piece by piece (torch's search sees only the numbers
its closure returns), so that the rarer rules and the ties of its comparisons decide.
"""

from __future__ import annotations

import functools

from errors import raises_whole
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx import compat
from gradtx.compat.pytorch._lbfgs import _cubic_interpolate, _max, _min, _strong_wolfe

# -- torch's algorithm in NumPy (float64) -------------------------------------------------


@np.errstate(divide="ignore", invalid="ignore")
def _torch_cubic(x1, f1, g1, x2, f2, g2, bounds=None):
    """torch.optim.lbfgs._cubic_interpolate, on Python floats."""
    low, high = bounds if bounds is not None else ((x1, x2) if x1 <= x2 else (x2, x1))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = np.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, low), high)
    return (low + high) / 2.0


def _torch_strong_wolfe(obj, x, t, d, f, g, gtd, max_ls, c1=1e-4, c2=0.9, tolerance=1e-9):
    """torch.optim.lbfgs._strong_wolfe: (f, g, t, evaluations); ``obj(x, t, d)`` -> (f, g)."""
    d_norm = np.max(np.abs(d))
    f_new, g_new = obj(x, t, d)
    evals, gtd_new = 1, float(g_new @ d)
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done, ls_iter = False, 0
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g, done = [t], [f_new], [g_new], True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        bounds = (t + 0.01 * (t - t_prev), t * 10)
        t_prev, t = t, _torch_cubic(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds)
        f_prev, g_prev, gtd_prev = f_new, g_new, gtd_new
        f_new, g_new = obj(x, t, d)
        evals, gtd_new, ls_iter = evals + 1, float(g_new @ d), ls_iter + 1
    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance:
            break
        t = _torch_cubic(
            bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1]
        )
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                if abs(t - max(bracket)) < abs(t - min(bracket)):
                    t = max(bracket) - eps
                else:
                    t = min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = obj(x, t, d)
        evals, gtd_new, ls_iter = evals + 1, float(g_new @ d), ls_iter + 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new, gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos] = bracket_g[low_pos]
                bracket_gtd[high_pos] = bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new, gtd_new
    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], evals


def _torch_step(value_and_grad, x, state, options):
    """One torch LBFGS.step(closure) from x: (the new x, the loss it returns); updates state."""
    lr, max_iter = options["lr"], options["max_iter"]
    max_eval = options["max_eval"] or max_iter * 5 // 4
    tolerance_grad, tolerance_change = options["tolerance_grad"], options["tolerance_change"]
    x = np.array(x, np.float64)
    loss, flat_grad = value_and_grad(x)
    orig_loss, current_evals = loss, 1
    state.setdefault("n_iter", 0)
    state["func_evals"] = state.get("func_evals", 0) + 1
    opt_cond = np.max(np.abs(flat_grad)) <= tolerance_grad
    if opt_cond:
        return x, orig_loss
    d, t = state.get("d"), state.get("t")
    old_dirs, old_stps, ro = state.get("old_dirs"), state.get("old_stps"), state.get("ro")
    h_diag, prev_flat_grad = state.get("H_diag"), state.get("prev_flat_grad")
    prev_loss, n_iter = state.get("prev_loss"), 0
    while n_iter < max_iter:
        n_iter += 1
        state["n_iter"] += 1
        if state["n_iter"] == 1:
            d, old_dirs, old_stps, ro, h_diag = -flat_grad, [], [], [], 1
        else:
            y, s = flat_grad - prev_flat_grad, d * t
            ys = y @ s
            if ys > 1e-10:
                if len(old_dirs) == options["history_size"]:
                    old_dirs.pop(0), old_stps.pop(0), ro.pop(0)
                old_dirs.append(y), old_stps.append(s), ro.append(1.0 / ys)
                h_diag = ys / (y @ y)
            q, al = -flat_grad, [None] * len(old_dirs)
            for i in range(len(old_dirs) - 1, -1, -1):
                al[i] = (old_stps[i] @ q) * ro[i]
                q = q - al[i] * old_dirs[i]
            d = r = q * h_diag
            for i in range(len(old_dirs)):
                be_i = (old_dirs[i] @ r) * ro[i]
                d = r = r + (al[i] - be_i) * old_stps[i]
        prev_flat_grad, prev_loss = flat_grad.copy(), loss
        t = min(1.0, 1.0 / np.sum(np.abs(flat_grad))) * lr if state["n_iter"] == 1 else lr
        gtd = flat_grad @ d
        if gtd > -tolerance_change:
            break
        ls_func_evals = 0
        if options["line_search_fn"] == "strong_wolfe":
            loss, flat_grad, t, ls_func_evals = _torch_strong_wolfe(
                lambda x, t, d: value_and_grad(x + t * d),
                x, t, d, loss, flat_grad, gtd, max_eval - current_evals,
            )  # fmt: skip
            x = x + t * d
            opt_cond = np.max(np.abs(flat_grad)) <= tolerance_grad
        else:
            x = x + t * d
            if n_iter != max_iter:
                loss, flat_grad = value_and_grad(x)
                opt_cond = np.max(np.abs(flat_grad)) <= tolerance_grad
                ls_func_evals = 1
        current_evals += ls_func_evals
        state["func_evals"] += ls_func_evals
        if n_iter == max_iter or current_evals >= max_eval or opt_cond:
            break
        if np.max(np.abs(d * t)) <= tolerance_change or abs(loss - prev_loss) < tolerance_change:
            break
    state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=h_diag)
    state.update(prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
    return x, orig_loss


# -- scripted lines -----------------------------------------------------------------------

PIECES = 6


def _line(*pieces):
    """A line of at most PIECES pieces ``(start, f0, f1, slope)``: from ``start`` on (the first
    from -inf), the loss is ``f0 + f1 s`` and its reported slope ``slope``, at ``s`` along it.
    As arrays: the starts (padded with inf), then f0, f1, slope per piece."""
    padded = [*pieces, *[(np.inf, 0.0, 0.0, 0.0)] * (PIECES - len(pieces))]
    starts, f0, f1, slope = (np.array(column, np.float64) for column in zip(*padded))
    return starts[1:], f0, f1, slope


def _at(line, x, xp, scale=1.0):
    """The loss and its gradient at the 1-D params x, ``scale s`` along ``line``."""
    starts, f0, f1, slope = (xp.asarray(a) for a in line)
    s = x[0] / scale
    k = xp.sum(s >= starts)
    return f0[k] + f1[k] * s, slope[k] / scale * xp.ones_like(x)


@jax.jit
def _port_search(line, t, max_ls, gtd, scale):
    value_and_grad = functools.partial(_at, line, xp=jnp, scale=scale)
    x = jnp.zeros(1)
    f, g = value_and_grad(x)
    return _strong_wolfe(value_and_grad, x, t, jnp.full(1, scale), f, g, gtd, max_ls)


def _start_slope(line, gtd, scale):
    """``gtd`` if given, else the line's slope g.d at 0 along d = (scale,)."""
    return float(_at(line, np.zeros(1), np, scale)[1][0] * scale) if gtd is None else gtd


def _search(line, t, max_ls, gtd=None, scale=1.0):
    """(f, g, t, evaluations) of the port's and of torch's (NumPy's) search along ``line``
    from 0 along d = (scale,) (``gtd``, if given, for the slope there). A power of 2 as the
    scale leaves the steps and the slope along d as they are, and d_norm = scale."""
    gtd = _start_slope(line, gtd, scale)
    with jax.enable_x64(True):
        ours = [np.asarray(v).tolist() for v in _port_search(line, t, max_ls, gtd, scale)]
    return ours, _numpy_search(line, t, max_ls, gtd, scale)


def _numpy_search(line, t, max_ls, gtd, scale):
    def obj(x, t, d):
        return _at(line, x + t * d, np, scale)

    x, d = np.zeros(1), np.full(1, scale)
    f, g = obj(x, 0.0, d)
    out = _torch_strong_wolfe(obj, x, t, d, float(f), g, gtd, max_ls)
    return [np.asarray(v).tolist() for v in out]


def _torch_search(line, t, max_ls, gtd, scale):
    """torch's own ``_strong_wolfe`` along ``line``: what ``_numpy_search`` returns."""
    import torch
    from torch.optim.lbfgs import _strong_wolfe as torch_strong_wolfe

    def obj(x, t, d):
        f, g = _at(line, (x + t * d).numpy(), np, scale)
        return float(f), torch.tensor(g)

    x, d = (torch.tensor(v, dtype=torch.float64) for v in ([0.0], [scale]))
    f, g = obj(x, 0.0, d)
    gtd = torch.tensor(gtd, dtype=torch.float64)
    out = torch_strong_wolfe(obj, x, t, d, f, g, gtd, max_ls=max_ls)
    return [np.asarray(v).tolist() for v in out]


def _after(s):
    return float(np.nextafter(s, np.inf))


# name: (pieces, first trial, max_ls, g0.d or None for the line's, torch's evaluations[, the
# scale of d]); the scale is 1 where not given.
SEARCHES = {
    # A straight line: each cubic has d1^2 = g1 g2 exactly (no minimum in between: the
    # largest step, 10 t) and the search runs out of max_ls while still going down.
    "straight": ([(0.0, 0.0, -1.0, -1.0)], 1.0, 3, None, 4),
    # The reported slope steeper than the loss's: d1^2 < g1 g2, the bounds' midpoint, whose
    # lower end t + 0.01 (t - t_prev) moves with t_prev.
    "slope_steeper_than_loss": ([(0.0, 0.0, -0.5, -1.0)], 1.0, 2, None, 3),
    # The first trial's loss equals f + c1 t g.d: not too high, so the search extrapolates.
    "armijo_tie": (
        [(0.0, 0.0, -1.0, -1.0), (1.0, -1e-4, 0.0, -1.0), (_after(1.0), 0.0, -0.5, -0.2)],
        1.0, 25, None, 2,
    ),
    # The first trial's loss at f: above f + c1 t g.d (and below f - c1 t g.d).
    "at_the_start_loss": (
        [(0.0, 0.0, -1.0, -1.0), (0.3, 0.0, -1.0, -0.5), (0.5, 0.0, 0.0, -1.0)],
        1.0, 25, None, 3,
    ),
    # The second trial's loss rises (ls_iter 1: no bracket yet), the third's equals it
    # (ls_iter 2: a bracket, whose ends have equal losses: the earlier one is the low end).
    "loss_rises_then_stays": ([(0.0, 0.0, -1.0, -1.0), (5.0, -0.5, 0.0, -1.0)], 1.0, 25, None, 15),
    # The first trial's |g.d| is exactly c2 |g0.d|: the strong Wolfe condition holds.
    "wolfe_tie": ([(0.0, 0.0, -1.0, -1.0), (0.5, 0.0, -1.0, -0.9)], 1.0, 25, None, 1),
    # A bracket [0, 1e-9] along a unit d: 1e-9 wide, not below the tolerance: one zoom.
    "bracket_at_the_tolerance": (
        [(0.0, 0.0, -1.0, -1.0), (0.5e-9, 1.0, 0.0, 1.0)], 1e-9, 25, None, 2,
    ),
    # A NaN initial slope (every test against it false) and a trial slope of exactly 0:
    # uphill (g.d >= 0), so a bracket; max_ls 1 leaves one zoom step.
    "nan_start_slope": (
        [(0.0, 0.0, -1.0, -1.0), (0.5, -1.0, 0.0, 0.0)], 1.0, 1, float("nan"), 2,
    ),
    # Bracket [1, 10] (f -1, 5); the first zoom trial's loss is the low end's, -1: it
    # replaces the high end (torch's >=), and the ends' equal losses make the first the low
    # one; the second trial has |g.d| = c2 |g0.d| exactly: the strong Wolfe condition holds.
    "zoom_ties": (
        [(0.0, 0.0, -1.0, -1.0), (1.2, 0.0, -1.0, -0.9), (1.5, -1.0, 0.0, -0.5),
         (9.5, 5.0, 0.0, 1.0)],
        1.0, 25, None, 4,
    ),
    # A zoom whose cubic's minimum lies beyond the bracket: t is its upper end exactly,
    # and moves 10% of the bracket inside.
    "zoom_at_the_upper_end": (
        [(0.0, 0.0, -1.0, -1.0), (0.8, -2.0, 0.0, -0.95), (2.0, -0.5, 0.5, 0.5),
         (5.0, -0.5, -0.5, 1.0)],
        0.5, 25, None, 9,
    ),
    # A straight line to t = 10, so the next trial is 100 exactly; bracket [10, 100], whose
    # cubic has its minimum at 91 exactly (every operation exact): 9 = 10% of the bracket
    # from its upper end, not nearer (torch's <), so no insufficient progress and the next
    # trial, near the end, stays where the cubic puts it.
    "zoom_trial_at_ten_percent_of_the_bracket": (
        [(0.0, 0.0, -9.0, -9.0), (50.0, -1300.0, 0.0, 9.0), (95.0, -1290.0, 0.0, 9.0)],
        10.0, 3, None, 4,
    ),
    # Bracket [0, 1] (the first trial too high); the zoom's trials (0.14, ...) have losses
    # on the Armijo line f + c1 t g.d itself (not too high: torch's >), a little below it
    # (-1e-4 at t = 0.14: not too high, though above f + c1 g.d / t), and a little above it
    # (-5e-6: too high, though below f - c1 t g.d and f).
    "zoom_on_the_armijo_line": (
        [(0.0, 0.0, -1.0, -1.0), (0.05, 0.0, -1e-4, -1.0), (0.95, 1.0, 0.0, 1.0)],
        1.0, 3, None, 4,
    ),
    "zoom_below_the_armijo_line": (
        [(0.0, 0.0, -1.0, -1.0), (0.05, -1e-4, 0.0, -1.0), (0.95, 1.0, 0.0, 1.0)],
        1.0, 3, None, 4,
    ),
    "zoom_above_the_armijo_line": (
        [(0.0, 0.0, -1.0, -1.0), (0.05, -5e-6, 0.0, -1.0), (0.95, 1.0, 0.0, 1.0)],
        1.0, 3, None, 4,
    ),
    # A NaN initial slope again: the first zoom trial (the midpoint, the cubic being NaN)
    # has slope 0 and a lower loss; 0 (the slope times the bracket's direction) >= 0, so the
    # old low end becomes the high one.
    "nan_start_slope_then_a_flat_low": (
        [(0.0, 0.0, -3.0, -3.0), (0.2, -1.5, 0.0, 0.0), (0.5, -2.0, 0.0, 0.0),
         (0.9, -1.0, 0.0, 0.0)],
        1.0, 2, float("nan"), 3,
    ),
    # The same line without the Wolfe point, along d = (2^-24,): the zoom shrinks the
    # bracket onto t = 1.5, far from 0, until its width times d_norm is below 1e-9.
    "bracket_narrow_far_from_zero": (
        [(0.0, 0.0, -1.0, -1.0), (1.5, -1.0, 0.0, -0.5), (9.5, 5.0, 0.0, 1.0)],
        1.0, 25, None, 11, 2.0**-24,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", SEARCHES)
def test_the_line_search_follows_torchs_rules(name):
    pieces, t, max_ls, gtd, evals, *scale = SEARCHES[name]
    ours, theirs = _search(_line(*pieces), t, max_ls, gtd, *scale)
    assert theirs[3] == evals  # the case reaches the rule it is named after
    assert ours[3] == theirs[3]
    for got, expected, what in zip(ours[:3], theirs[:3], ("f", "g", "t")):
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-15, err_msg=what)


# -- whole steps on piecewise cubics ------------------------------------------------------


def _poly(coef, x, xp):
    """Per coordinate, the cubic ``c[0] + c[1] x + c[2] x^2 + c[3] x^3`` of the piece x is in
    (the second from ``split`` on): their sum, and its gradient."""
    coef, split = (xp.asarray(a) for a in coef)
    c = xp.where((x < split)[:, None], coef[:, 0], coef[:, 1])
    value = c[:, 0] + c[:, 1] * x + c[:, 2] * x**2 + c[:, 3] * x**3
    return xp.sum(value), c[:, 1] + 2 * c[:, 2] * x + 3 * c[:, 3] * x**2


def _loss(params, coef, split):
    return _poly((coef, split), params["x"], jnp)[0]


def _problem(*pieces, split=None):
    """Per coordinate its cubic's coefficients, or two of them and where the second starts."""
    coef = np.array([p if np.ndim(p) == 2 else [p, p] for p in pieces], np.float64)
    split = np.full(len(pieces), np.inf) if split is None else np.asarray(split, np.float64)
    return {"coef": coef, "split": split}


@functools.partial(jax.jit, static_argnums=3)
def _port_calls(tx, x0, problem, calls):
    def call(carry, _):
        params, state = carry
        grads = jax.grad(_loss)(params, **problem)
        updates, state = tx.update(grads, state, params, value_fn=_loss, **problem)
        params = gradtx.apply_updates(params, updates)
        seen = {k: gradtx.tree_get(state, k) for k in ("loss", "n_iter", "func_evals", "t")}
        return (params, state), {"x": params["x"], **seen}

    params = {"x": x0}
    return jax.lax.scan(call, (params, tx.init(params)), None, length=calls)[1]


def _calls(x0, problem, calls=1, **options):
    """The port's and torch's (NumPy's) x, returned loss, n_iter, func_evals and t after each
    of ``calls`` steps from ``x0``, in float64."""
    with jax.enable_x64(True):
        tx = compat.pytorch.lbfgs(**options)
        ours = _port_calls(tx, jnp.asarray(x0, jnp.float64), problem, calls)
        ours = {k: np.asarray(v) for k, v in ours.items()}
    return ours, _numpy_calls(x0, problem, calls, **options)


def _numpy_calls(x0, problem, calls, **options):
    options = {**_DEFAULTS, **options}
    coef = (problem["coef"], problem["split"])
    x, state, seen = np.asarray(x0, np.float64), {}, []
    for _ in range(calls):
        x, loss = _torch_step(lambda x: _poly(coef, x, np), x, state, options)
        seen.append({"x": x, "loss": loss, "n_iter": state["n_iter"],
                     "func_evals": state["func_evals"], "t": state.get("t", 0.0)})  # fmt: skip
    return {k: np.array([c[k] for c in seen]) for k in seen[0]}


_DEFAULTS = {
    "lr": 1.0,
    "max_iter": 20,
    "max_eval": None,
    "tolerance_grad": 1e-7,
    "tolerance_change": 1e-9,
    "history_size": 100,
    "line_search_fn": None,
}


def _assert_same_calls(ours, theirs):
    for k in ("n_iter", "func_evals"):
        np.testing.assert_array_equal(ours[k], theirs[k], err_msg=k)
    for k in ("x", "loss", "t"):
        np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-9, atol=1e-12, err_msg=k)


# -- the helpers --------------------------------------------------------------------------

# (x1, f1, g1, x2, f2, g2, bounds): torch's _cubic_interpolate's cases.
CUBICS = [
    # d1^2 - g1 g2 exactly 0 (d1 = -2, g1 g2 = 4): a minimum all the same, at 1/3.
    (0.0, 1.0, -1.0, 1.0, 0.0, -4.0, None),
    (1.0, 0.0, -4.0, 0.0, 1.0, -1.0, None),  # the same, the farther point first
    (0.0, 0.0, -1.0, 1.0, 0.5, 2.0, None),  # an ordinary minimum inside
    (0.0, 0.0, -1.0, 1.0, -0.5, -1.0, None),  # d1^2 < g1 g2: the midpoint
    (0.0, 0.0, -1.0, 1.0, -0.5, -1.0, (1.01, 10.0)),  # ... of the bounds given
    (2.0, 0.0, -1.0, 1.0, 0.5, -2.0, (0.0, 1.5)),  # a minimum beyond the bounds
]


@pytest.mark.parametrize("case", range(len(CUBICS)))
def test_cubic_interpolate_is_torchs(case, x64):
    *points, bounds = CUBICS[case]
    ours = _cubic_interpolate(*map(jnp.float64, points), bounds)
    assert float(ours) == _torch_cubic(*points, bounds)
    if case < 2:
        assert float(ours) == pytest.approx(1 / 3, rel=1e-15)


@pytest.mark.parametrize("pick, python", [(_max, max), (_min, min)])
def test_max_and_min_are_pythons_on_ties_and_nan(pick, python):
    # Python's max(a, b) is a unless b > a: on a tie of signed zeros, a's sign; a NaN a
    # passes through, a NaN b does not.
    values = [-0.0, 0.0, 1.0, float("nan")]
    for a in values:
        for b in values:
            got, expected = float(pick(jnp.float32(a), jnp.float32(b))), python(a, b)
            assert np.isnan(got) == np.isnan(expected), (a, b)
            if not np.isnan(expected):
                assert (got, np.signbit(got)) == (expected, np.signbit(expected)), (a, b)


# -- the NumPy reference is torch's -------------------------------------------------------


def test_the_numpy_cubic_and_search_are_torchs():
    torch = pytest.importorskip("torch")
    from torch.optim import lbfgs as torch_lbfgs

    for *points, bounds in CUBICS:
        tensors = [torch.tensor(p, dtype=torch.float64) for p in points]
        theirs = torch_lbfgs._cubic_interpolate(*tensors, bounds=bounds)
        assert float(theirs) == _torch_cubic(*points, bounds)
    for name, (pieces, t, max_ls, gtd, _, *scale) in SEARCHES.items():
        line, scale = _line(*pieces), (scale or [1.0])[0]
        gtd = _start_slope(line, gtd, scale)
        theirs = _torch_search(line, t, max_ls, gtd, scale)
        ours = _numpy_search(line, t, max_ls, gtd, scale)
        assert theirs[3] == ours[3], name
        for got, expected in zip(theirs[:3], ours[:3]):
            np.testing.assert_allclose(got, expected, rtol=1e-12, err_msg=name)


# -- the optimizer's stopping rules, at their ties -----------------------------------------

# 2-D problems (one compile per line-search mode): per coordinate, a cubic's coefficients.
LINEAR_TERMS = _problem([0.0, 0.5, 10.0, 0.0], [0.0, 0.5, 10.0, 0.0])
# One coordinate whose gradient jumps from -2^-41 to 2^-41 past x = 50.
_A = 2.0**-41
JUMP = _problem([[0.0, -_A, 0.0, 0.0], [-5.0, _A, 0.0, 0.0]], [0.0] * 4, split=[50.0, np.inf])

# name: (x0, problem, options): torch.optim.LBFGS's arguments.
STOPS = {
    # max |g| = tolerance_grad: optimal (torch's <=), the step returns before any iteration.
    "gradient_at_tolerance_grad": ([0.0, 0.0], LINEAR_TERMS, {"tolerance_grad": 0.5}),
    # g = (0.5, 0.5), d = -g, t = 1: g.d = -0.5 = -tolerance_change goes down enough (torch
    # stops on g.d > -tolerance_change), and max |t d| = 0.5 = tolerance_change stops the
    # step after its first iteration (torch's <=), the loss having changed by 4.5.
    "slope_and_step_at_tolerance_change": ([0.0, 0.0], LINEAR_TERMS, {"tolerance_change": 0.5}),
    # The same with lr 0.5: t = 0.5, max |t d| = 0.25 = tolerance_change (|d| / t would be 1).
    "step_at_tolerance_change_with_lr": (
        [0.0, 0.0],
        LINEAR_TERMS,
        {"lr": 0.5, "tolerance_change": 0.25},
    ),
    # g.d = -0.5 > -tolerance_change: the step stops before moving, its t (1) kept.
    "slope_above_minus_tolerance_change": ([0.0, 0.0], LINEAR_TERMS, {"tolerance_change": 1.0}),
    # A NaN loss (a NaN constant term: the gradient is finite), g = (0.5, 0), t = lr = 2:
    # g.d = -0.25 > -tolerance_change stops the step where it is. Nothing else would: the
    # loss's change is NaN, max |t d| = 1 is above tolerance_change.
    "nan_loss_and_a_slope_above_minus_tolerance_change": (
        [0.0, 0.0],
        _problem([np.nan, 0.5, 0.0, 0.0], [0.0] * 4),
        {"lr": 2.0, "tolerance_change": 0.5},
    ),
    # f = -x + x^3 / 2 from 0: t = 1, d = 1, the loss goes from 0 to -0.5 exactly, a change
    # of tolerance_change, not below it: a second iteration (the last, max_iter 2).
    "loss_change_at_tolerance_change": (
        [0.0, 0.0],
        _problem([0.0, -1.0, 0.0, 0.5], [0.0] * 4),
        {"tolerance_change": 0.5, "max_iter": 2, "max_eval": 9},
    ),
    # The first step (t = lr, as 1 / |g|_1 > 1) makes s = 2^-41 lr and y = 2^-40: y.s =
    # 1e-10 exactly, not above torch's 1e-10, so the pair is not stored and d = -g.
    "pair_at_the_curvature_floor": (
        [0.0, 0.0],
        JUMP,
        {"lr": 1e-10 * 2.0**81, "tolerance_grad": 0.0, "tolerance_change": 0.0, "max_iter": 3},
    ),
}


def _stop(name, calls=1, **more):
    x0, problem, options = STOPS[name]
    return _calls(x0, problem, calls, **options, **more)


def test_a_gradient_at_tolerance_grad_is_optimal():
    ours, theirs = _stop("gradient_at_tolerance_grad")
    assert theirs["n_iter"][0] == 0 and theirs["func_evals"][0] == 1
    _assert_same_calls(ours, theirs)


def test_a_slope_and_a_step_at_tolerance_change():
    ours, theirs = _stop("slope_and_step_at_tolerance_change")
    assert theirs["n_iter"][0] == 1
    np.testing.assert_array_equal(theirs["x"][0], [-0.5, -0.5])
    _assert_same_calls(ours, theirs)


def test_a_step_of_lr_times_d_at_tolerance_change_stops():
    ours, theirs = _stop("step_at_tolerance_change_with_lr")
    assert theirs["n_iter"][0] == 1
    np.testing.assert_array_equal(theirs["x"][0], [-0.25, -0.25])
    _assert_same_calls(ours, theirs)


def test_a_slope_above_minus_tolerance_change_stops_where_it_is():
    ours, theirs = _stop("slope_above_minus_tolerance_change")
    assert theirs["n_iter"][0] == 1 and theirs["func_evals"][0] == 1
    np.testing.assert_array_equal(theirs["x"][0], [0.0, 0.0])
    _assert_same_calls(ours, theirs)


def test_a_slope_above_minus_tolerance_change_stops_even_at_a_nan_loss():
    ours, theirs = _stop("nan_loss_and_a_slope_above_minus_tolerance_change")
    assert theirs["n_iter"][0] == 1 and np.isnan(theirs["loss"][0])
    _assert_same_calls(ours, theirs)


def test_a_loss_change_at_tolerance_change_goes_on():
    ours, theirs = _stop("loss_change_at_tolerance_change")
    assert theirs["n_iter"][0] == 2
    _assert_same_calls(ours, theirs)


def test_a_pair_with_y_s_at_the_curvature_floor_is_not_kept():
    ours, theirs = _stop("pair_at_the_curvature_floor")
    np.testing.assert_array_equal(theirs["x"][0], [0.0, 0.0])  # back at the start: d = -g
    _assert_same_calls(ours, theirs)


def test_the_smallest_counts_are_accepted_and_torchs():
    # max_eval 1: the line search has max_ls 0 (its one trial, then the bracket [0, t]).
    # From g = (0.3, 0.3): 1 / |g|_1 = 5/3, so the first step has t = 1 (the strong-Wolfe
    # trial there is higher: the search returns t = 0).
    for mode, t in ((None, 1.0), ("strong_wolfe", 0.0)):
        options = {"max_iter": 1, "max_eval": 1, "history_size": 1, "line_search_fn": mode}
        ours, theirs = _calls([-0.01, -0.01], LINEAR_TERMS, **options)
        assert theirs["t"][0] == t
        assert theirs["n_iter"][0] == 1
        _assert_same_calls(ours, theirs)


# f = x^2 + |x|^3 / 2 and 0.3 x + 2 x^2 + |x|^3: ten iterations, so a ring of three pairs
# drops its oldest from the fourth pair on.
RING = (
    [3.0, -2.0],
    _problem([[0.0, 0.0, 1.0, -0.5], [0.0, 0.0, 1.0, 0.5]],
             [[0.0, 0.3, 2.0, -1.0], [0.0, 0.3, 2.0, 1.0]], split=[0.0, 0.0]),
    {"history_size": 3},
)  # fmt: skip


def test_a_history_of_three_wraps_around_as_torchs():
    # (history_size 2 cannot tell a ring that steps forward from one that steps back.)
    x0, problem, options = RING
    ours, theirs = _calls(x0, problem, **options)
    assert theirs["n_iter"][0] == 10
    _assert_same_calls(ours, theirs)


@pytest.mark.parametrize("name", ["max_eval", "history_size"])
def test_a_fractional_count_is_refused_naming_it(name):
    message = f"pytorch.lbfgs({name}=2.5): {name} must be a whole number"
    with raises_whole(ValueError, message):
        compat.pytorch.lbfgs(**{name: 2.5})


def test_max_iter_below_1_is_refused_whatever_max_eval():
    # max_eval given (max_iter 0 alone also makes the default max_eval 0): only max_iter's
    # own check can refuse it.
    with raises_whole(ValueError, "pytorch.lbfgs(max_iter=-1): max_iter must be in [1, inf)"):
        compat.pytorch.lbfgs(max_iter=-1, max_eval=5)


def test_an_update_without_value_fn_is_refused_with_the_call_to_make():
    tx = compat.pytorch.lbfgs()
    params = {"x": jnp.ones(2)}
    message = (
        "pytorch.lbfgs.update needs params and value_fn= (the loss as a function of the params, "
        "torch's closure): call update(grads, state, params, value_fn=loss): one update is one "
        "step(closure), which evaluates the loss many times"
    )
    with raises_whole(ValueError, message):
        tx.update(params, tx.init(params), params)


def _float32(problem):
    return {k: jnp.asarray(v, jnp.float32) for k, v in problem.items()}


def _loss_in_the_default_float(params, coef, split):
    # float64 under x64 (the loss of float32 params computed in float64), else float32.
    return _loss(params, coef, split).astype(float)


@functools.partial(jax.jit, static_argnums=(4, 5))
def _float32_update(floats, params, problem, value, pass_value, max_iter=3):
    # The float hyperparameters are jit arguments: under x64, float64 numbers (as a sweep
    # passes them; a concrete number is stored as a Python float, weakly typed, which takes
    # float32 arithmetic's dtype and would not show a missing cast).
    tx = compat.pytorch.lbfgs(max_iter=max_iter, **floats)
    value_fn = _loss_in_the_default_float
    given = {"value": value} if pass_value else {}
    grads = jax.grad(value_fn)(params, **problem)
    updated = tx.update(grads, tx.init(params), params, value_fn=value_fn, **problem, **given)
    return updated, tx.init(params)


# Coefficients that float32 does not hold exactly: a loss evaluated at float64 params
# differs in its last bits.
INEXACT = _problem([0.1, 0.3, 1.7, 0.05], [0.0, -0.7, 2.3, 0.11])


def test_float32_params_under_x64_run_in_float32_with_value_given():
    # torch keeps float32 params' state in float32 and calls the closure at them. Under
    # x64 the hyperparameters, a given value= and the loss are float64: the loss is still
    # evaluated at float32 params, the update and state are float32, and equal to a float32
    # run without x64 that evaluates the loss itself.
    params, problem = {"x": jnp.asarray([1.0, -0.5], jnp.float32)}, _float32(INEXACT)
    floats = {"lr": 1.0, "tolerance_grad": 1e-7, "tolerance_change": 1e-9}
    (expected, _), _ = _float32_update(floats, params, problem, 0.0, False)
    value = float(_loss_in_the_default_float(params, **problem))
    with jax.enable_x64(True):
        floats = {k: np.float64(v) for k, v in floats.items()}
        (updates, state), initial = _float32_update(
            floats, params, problem, np.float64(value), True
        )
        # value= stands for the loss at params (torch's first closure call): returned as is.
        (_, other), _ = _float32_update(floats, params, problem, np.float64(value + 1.0), True)
    # The state keeps its dtypes from init on (as a scan over updates needs).
    for before, after in zip(jax.tree.leaves(initial), jax.tree.leaves(state)):
        assert before.dtype == after.dtype and after.dtype in (jnp.float32, jnp.int32)
    assert updates["x"].dtype == jnp.float32
    np.testing.assert_array_equal(updates["x"], expected["x"])
    assert float(gradtx.tree_get(state, "loss")) == value
    assert gradtx.tree_get(other, "loss") == np.float32(value + 1.0)


# f = -x - 10 x^2 from 0, in float32: g = (-1, 0), t = lr = float32(0.1), so max |t d| is
# float32(0.1): at tolerance_change 0.1 as torch compares float32 tensors with it (in
# float32), though above the float64 0.1. The loss has changed by 0.2.
FLOAT32_STEP = _problem([0.0, -1.0, -10.0, 0.0], [0.0] * 4)


def test_float32_steps_meet_tolerance_change_in_float32():
    params = {"x": jnp.zeros(2, jnp.float32)}
    with jax.enable_x64(True):
        floats = {"lr": np.float64(0.1), "tolerance_change": np.float64(0.1)}
        (_, state), _ = _float32_update(floats, params, _float32(FLOAT32_STEP), 0.0, False)
    assert int(gradtx.tree_get(state, "n_iter")) == 1


def test_torch_meets_tolerance_change_in_float32_too():
    torch = pytest.importorskip("torch")
    options = {"lr": 0.1, "tolerance_change": 0.1, "max_iter": 3}
    assert _torch_calls([0.0, 0.0], FLOAT32_STEP, 1, torch.float32, **options)["n_iter"][0] == 1


def _torch_calls(x0, problem, calls, dtype=None, **options):
    """torch.optim.LBFGS itself (in float64 unless ``dtype``): what ``_calls`` records of the
    NumPy transcription."""
    import torch

    dtype = dtype or torch.float64
    x = torch.tensor(x0, dtype=dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS([x], **options)
    coef = [torch.tensor(problem[k], dtype=dtype) for k in ("coef", "split")]

    def closure():
        optimizer.zero_grad()
        loss = _poly(coef, x, torch)[0]
        loss.backward()
        return loss

    seen = []
    for _ in range(calls):
        loss = optimizer.step(closure).item()
        state = optimizer.state[x]
        counters = {k: state[k] for k in ("n_iter", "func_evals")}
        t = float(state.get("t", 0.0))
        seen.append({"x": x.detach().numpy().copy(), "loss": loss, "t": t, **counters})
    return {k: np.array([c[k] for c in seen]) for k in seen[0]}


def test_the_numpy_step_is_torchs():
    pytest.importorskip("torch")
    for x0, problem, options in [*STOPS.values(), RING]:
        theirs = _numpy_calls(x0, problem, 2, **options)
        _assert_same_calls(theirs, _torch_calls(x0, problem, 2, None, **options))
