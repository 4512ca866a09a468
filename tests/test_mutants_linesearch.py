"""Tests that kill the mutants of gradtx/_linesearch.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
The references are optax.scale_by_backtracking_linesearch and optax.scale_by_zoom_linesearch
(the same arguments, defaults, state and info: compared number for number in float64) and
the docstrings' rules (Armijo's and the strong Wolfe conditions, the messages).
"""

from __future__ import annotations

import re

from errors import raises_whole
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx

# -- helpers ---------------------------------------------------------------------------


BACKTRACKING, ZOOM = "scale_by_backtracking_linesearch", "scale_by_zoom_linesearch"


def _search(ls, direction, params, loss, state=None, **kwargs):
    """One ``ls.update`` along ``direction`` from ``params``, with the loss and gradient there."""
    value, grad = jax.value_and_grad(loss)(params, **kwargs)
    state = ls.init(params) if state is None else state
    return ls.update(direction, state, params, value=value, grad=grad, value_fn=loss, **kwargs)


def _both_searches(name, direction, params, loss, state_changes=None, **options):
    """(gradtx's, optax's) (updates, state) of one search with the same options and state."""
    results = []
    for module in (gradtx, optax):
        ls = getattr(module, name)(**options)
        state = ls.init(params)
        if state_changes:
            state = state._replace(**state_changes)
        results.append(_search(ls, direction, params, loss, state))
    return results


def _zoom_from_zero(ls, loss, d=1.0, **coefficients):
    """One search from x = 0 along ``d`` on ``loss(params, **coefficients)``."""
    return _search(ls, {"x": jnp.asarray(d)}, {"x": jnp.zeros([])}, loss, **coefficients)


# gradtx's search is a pytree, traced: one compile per loss, whatever the numbers.
_zoom_from_zero_gradtx = jax.jit(_zoom_from_zero, static_argnames="loss")
_zoom_from_zero_optax = jax.jit(_zoom_from_zero, static_argnames=("ls", "loss"))


def _both_zooms(loss, options, d=1.0, **coefficients):
    """(gradtx's, optax's) (updates, state) of ``_zoom_from_zero`` with the same options."""
    ours = gradtx.scale_by_zoom_linesearch(**options)
    theirs = optax.scale_by_zoom_linesearch(**options)
    return (
        _zoom_from_zero_gradtx(ours, loss, d, **coefficients),
        _zoom_from_zero_optax(theirs, loss, d, **coefficients),
    )


def _assert_same_search(ours, theirs):
    """gradtx's and optax's (updates, state) of a zoom search: the same steps and numbers."""
    (updates, state), (their_updates, their_state) = ours, theirs
    assert int(state.info.num_linesearch_steps) == int(their_state.info.num_linesearch_steps)
    close = dict(rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(state.learning_rate, their_state.learning_rate, **close)
    np.testing.assert_allclose(state.value, their_state.value, **close)
    for mine, reference in zip(jax.tree.leaves(state.grad), jax.tree.leaves(their_state.grad)):
        np.testing.assert_allclose(mine, reference, **close)
    for mine, reference in zip(jax.tree.leaves(updates), jax.tree.leaves(their_updates)):
        np.testing.assert_allclose(mine, reference, **close)
    np.testing.assert_allclose(state.info.decrease_error, their_state.info.decrease_error, **close)
    np.testing.assert_allclose(
        state.info.curvature_error, their_state.info.curvature_error, **close
    )


def _types(tree):
    return jax.tree.map(lambda x: (jnp.asarray(x).dtype, jnp.asarray(x).weak_type), tree)


def _numbers(pattern, text):
    """The numbers in ``text`` where ``pattern`` (one line, all of it) has groups."""
    match = re.fullmatch(pattern, text.strip())
    assert match, text
    return [float(group) for group in match.groups()]


def _square(params):
    return jnp.sum(params["x"] ** 2)


def _wavy(params):
    x = params["x"]
    return x**4 / 4 - x + 0.3 * jnp.sin(3 * x)


# -- what both searches need: the loss, its arguments, valid hyperparameters -----------


@pytest.mark.parametrize("name", [BACKTRACKING, ZOOM])
def test_an_update_without_the_loss_is_refused_naming_the_call_to_make(name):
    ls = getattr(gradtx, name)(3)
    params = {"x": jnp.zeros(2)}
    message = (
        f"{name}.update needs value=, value_fn=: call update(updates, state, params, "
        "value=loss, grad=grad, value_fn=loss_fn), with the loss and its gradient at params "
        "(optax's convention; gradtx.value_and_grad_from_state reuses the ones the search found)"
    )
    with raises_whole(ValueError, message):
        ls.update(params, ls.init(params), params, grad=params)


def _weighted_distance(params, target):
    """A loss that needs a keyword argument: a weighted squared distance to ``target``."""
    return jnp.sum(jnp.asarray([1.0, 1.5]) * (params["x"] - target) ** 2)


def _weighted_distance_any(params, **kwargs):
    """The same loss, taking whatever keyword arguments it is given."""
    return _weighted_distance(params, kwargs["target"])


def test_the_loss_gets_the_keyword_arguments_it_takes_and_only_those(x64):
    # update(..., target=t, batch=b): a loss with a parameter `target` gets target only (b
    # would be an unexpected argument); one with **kwargs gets both, also for the gradient
    # stored (store_grad). optax's search, given target alone (it refuses an argument the loss
    # does not take), takes the same step. (The zoom search shares the same code.)
    params, target = {"x": jnp.asarray([0.0, 0.0])}, jnp.asarray([1.0, 2.0])
    grad = jax.grad(_weighted_distance)(params, target)
    direction = jax.tree.map(jnp.negative, grad)
    theirs = optax.scale_by_backtracking_linesearch(4, store_grad=True)
    their_updates, their_state = _search(
        theirs, direction, params, _weighted_distance, target=target
    )
    assert float(their_state.learning_rate) < 1  # the search reduced the step
    for loss in (_weighted_distance, _weighted_distance_any):
        ls = gradtx.scale_by_backtracking_linesearch(4, store_grad=True)
        value = loss(params, target=target)
        updates, state = ls.update(
            direction,
            ls.init(params),
            params,
            value=value,
            grad=grad,
            value_fn=loss,
            target=target,
            batch=jnp.ones(3),
        )
        np.testing.assert_allclose(updates["x"], their_updates["x"], rtol=1e-12)
        np.testing.assert_allclose(state.value, their_state.value, rtol=1e-12)
        # The gradient stored is the one at the new params, with the keyword argument.
        np.testing.assert_allclose(state.grad["x"], their_state.grad["x"], rtol=1e-12)


# One invalid argument each, next to valid required ones; the message after "name(arg=value): ".
REFUSED = [
    (
        BACKTRACKING,
        {"max_backtracking_steps": 2.5},
        "max_backtracking_steps must be a whole number",
    ),
    (BACKTRACKING, {"max_backtracking_steps": -1}, "max_backtracking_steps must be in [0, inf)"),
    (BACKTRACKING, {"slope_rtol": 1.0}, "slope_rtol must be in [0, 1)"),
    (BACKTRACKING, {"slope_rtol": -0.1}, "slope_rtol must be in [0, 1)"),
    (BACKTRACKING, {"decrease_factor": 0.0}, "decrease_factor must be in (0, 1)"),
    (BACKTRACKING, {"decrease_factor": 1.0}, "decrease_factor must be in (0, 1)"),
    (BACKTRACKING, {"increase_factor": 0.99}, "increase_factor must be in [1, inf]"),
    (BACKTRACKING, {"max_learning_rate": 0.0}, "max_learning_rate must be in (0, inf)"),
    (BACKTRACKING, {"atol": -1e-9}, "atol must be in [0, inf)"),
    (BACKTRACKING, {"rtol": -1e-9}, "rtol must be in [0, inf)"),
    (ZOOM, {"max_linesearch_steps": 1.5}, "max_linesearch_steps must be a whole number"),
    (ZOOM, {"max_linesearch_steps": 0}, "max_linesearch_steps must be in [1, inf)"),
    (ZOOM, {"max_learning_rate": 0.0}, "max_learning_rate must be in (0, inf)"),
    (ZOOM, {"tol": -1e-9}, "tol must be in [0, inf)"),
    (ZOOM, {"increase_factor": 1.0}, "increase_factor must be in (1, inf)"),
    (ZOOM, {"slope_rtol": 0.0}, "slope_rtol must be in (0, 1)"),
    (ZOOM, {"slope_rtol": 1.0}, "slope_rtol must be in (0, 1)"),
    (ZOOM, {"curv_rtol": 0.0}, "curv_rtol must be in (0, inf]"),
    (ZOOM, {"slope_rtol": 0.25, "curv_rtol": 0.25}, "curv_rtol must exceed slope_rtol=0.25"),
    (ZOOM, {"approx_dec_rtol": -1e-9}, "approx_dec_rtol must be in [0, inf)"),
    (ZOOM, {"stepsize_precision": -1e-9}, "stepsize_precision must be in [0, inf)"),
    (
        ZOOM,
        {"initial_guess_strategy": "two"},
        "initial_guess_strategy must be one of 'keep', 'one', 'slope'",
    ),
]


@pytest.mark.parametrize(
    "name, kwargs, message", REFUSED, ids=[f"{n}-{list(k.items())[-1]}" for n, k, _ in REFUSED]
)
def test_an_argument_out_of_range_is_refused_naming_it_and_its_range(name, kwargs, message):
    arg, value = list(kwargs.items())[-1]
    required = "max_backtracking_steps" if name == BACKTRACKING else "max_linesearch_steps"
    prefix = f"{name}({arg}={value!r}): "
    with raises_whole(ValueError, prefix + message):
        getattr(gradtx, name)(**{required: 3, **kwargs})


def test_the_ends_of_the_ranges_that_are_allowed_are_accepted():
    gradtx.scale_by_backtracking_linesearch(0, slope_rtol=0.0, increase_factor=1.0, atol=0.0)
    gradtx.scale_by_backtracking_linesearch(2, increase_factor=float("inf"), rtol=0.0)
    gradtx.scale_by_zoom_linesearch(1, tol=0.0, approx_dec_rtol=0.0, stepsize_precision=0.0)
    gradtx.scale_by_zoom_linesearch(2, curv_rtol=float("inf"), slope_rtol=0.5)
    gradtx.scale_by_zoom_linesearch(2, slope_rtol=0.25, curv_rtol=0.2500001)


@pytest.mark.parametrize("name", [BACKTRACKING, ZOOM])
def test_float32_params_under_x64_keep_the_states_types_from_init(name, x64):
    # The state's numbers are default floats (float64 here), strongly typed at init as
    # optax's backtracking state is, and stay so after a step on float32 params, whose loss is
    # float32: the state is a fixed carry for jit and scan. The updates keep float32.
    options = {"store_grad": True} if name == BACKTRACKING else {}
    params = {"x": jnp.asarray([3.0, -1.0], jnp.float32)}
    ls = getattr(gradtx, name)(5, **options)
    init = ls.init(params)
    scalars = [init.learning_rate, init.value, init.info.decrease_error]
    assert all(_types(x) == (jnp.float64, False) for x in scalars), _types(init)
    if name == BACKTRACKING:
        theirs = optax.scale_by_backtracking_linesearch(5, **options).init(params)
        assert not any(x.weak_type for x in jax.tree.leaves(theirs) if x.dtype.kind == "f")
    direction = {"x": jnp.asarray([-6.1, 2.0], jnp.float32)}
    updates, state = _search(ls, direction, params, _square)
    assert _types(state) == _types(init)
    assert updates["x"].dtype == jnp.float32 and not bool(state.info.failed)


# -- backtracking ----------------------------------------------------------------------


def test_backtracking_defaults_are_optaxs(capfd, x64):
    # f = x^2 from x = 3 (f = 9, f' = 6) along d = -6.1: the first trial, 1 (1.5 * 1 capped
    # at max_learning_rate 1), lands at f(-3.1) = 9.61 > 9; the second, 0.8, decreases
    # enough. So would a trial of 1.5 (another cap), a slack atol or rtol accept more.
    params = {"x": jnp.asarray(3.0)}
    (updates, state), (their_updates, their_state) = _both_searches(
        BACKTRACKING, {"x": jnp.asarray(-6.1)}, params, _square, max_backtracking_steps=5
    )
    assert float(state.learning_rate) == float(their_state.learning_rate) == 0.8
    assert int(state.info.num_linesearch_steps) == int(their_state.info.num_linesearch_steps) == 2
    np.testing.assert_allclose(updates["x"], their_updates["x"], rtol=1e-15)
    assert state.grad is None and their_state.grad is None  # store_grad=False
    # The first trial grows the last step by 1.5: 0.25 -> 0.375, decrease enough there.
    (updates, state), (their_updates, their_state) = _both_searches(
        BACKTRACKING,
        {"x": jnp.asarray(-1.0)},
        params,
        _square,
        {"learning_rate": jnp.asarray(0.25)},
        max_backtracking_steps=0,
    )
    assert float(state.learning_rate) == float(their_state.learning_rate) == 0.375
    np.testing.assert_allclose(updates["x"], their_updates["x"], rtol=1e-15)
    # A failed search says nothing (verbose=False): from x = 1 along -10, f(-9) = 81.
    ls = gradtx.scale_by_backtracking_linesearch(0)
    _, state = _search(ls, {"x": jnp.asarray(-10.0)}, {"x": jnp.asarray(1.0)}, _square)
    jax.effects_barrier()
    assert bool(state.info.failed) and capfd.readouterr().out == ""


@pytest.mark.parametrize(
    "direction, options, step, error",
    [
        # f(-3.1) = 9.61 <= 1.05 * 9 - 1e-4 * (6 * -6.1) + 0.3: error 0.16366 <= atol.
        (-6.1, {"rtol": 0.05, "atol": 0.3}, 1.0, 9.61 - 9.45 + 1e-4 * 36.6),
        # f(-4) = 16 = 9 + 7 exactly (slope_rtol 0): the boundary is accepted.
        (-7.0, {"slope_rtol": 0.0, "atol": 7.0}, 1.0, 7.0),
        (-6.0, {"slope_rtol": 0.0}, 1.0, 0.0),  # f(-3) = f(3)
    ],
)
def test_backtracking_accepts_a_step_within_its_slack_as_optax(
    direction, options, step, error, x64
):
    params = {"x": jnp.asarray(3.0)}
    (updates, state), (their_updates, their_state) = _both_searches(
        BACKTRACKING,
        {"x": jnp.asarray(direction)},
        params,
        _square,
        max_backtracking_steps=3,
        **options,
    )
    assert float(state.learning_rate) == float(their_state.learning_rate) == step
    assert not bool(state.info.failed) and int(state.info.num_linesearch_steps) == 1
    np.testing.assert_allclose(state.info.decrease_error, error, rtol=1e-12, atol=0)
    np.testing.assert_allclose(their_state.info.decrease_error, error, rtol=1e-12, atol=0)
    np.testing.assert_allclose(updates["x"], their_updates["x"], rtol=1e-15)


def test_a_failed_backtracking_search_prints_what_failed(capfd, x64):
    # f = x^2 from x = 1 along d = -10 with no reduction: f(-9) = 81, the decrease error
    # 81 - 1 - 1e-4 * 1 * (2 * -10) = 80.002; no step taken. The loss is given as the Python
    # int 1: it is printed as the float it is compared as.
    ls = gradtx.scale_by_backtracking_linesearch(0, verbose=True)
    params = {"x": jnp.asarray(1.0)}
    updates, state = ls.update(
        {"x": jnp.asarray(-10.0)},
        ls.init(params),
        params,
        value=1,
        grad={"x": jnp.asarray(2.0)},
        value_fn=_square,
    )
    jax.effects_barrier()
    out = capfd.readouterr().out
    count, value, slope, error = _numbers(
        r"scale_by_backtracking_linesearch: no step in (\S+) tries decreased the loss (\S+) "
        r"enough along a direction of slope (\S+) \(decrease error (\S+)\); no step taken",
        out,
    )
    assert "the loss 1.0 enough" in out
    assert (count, value, slope) == (1, 1.0, -20.0) and bool(state.info.failed)
    np.testing.assert_allclose([error, float(state.info.decrease_error)], 80.002, rtol=1e-12)
    assert float(updates["x"]) == 0


# -- zoom: the conditions --------------------------------------------------------------


def _hump(params, c2, c3):
    """1000 - 2x + c2 x^2 + c3 x^3: from 0 along 1, phi'(0) = -2, phi(1) - phi(0) = c2 + c3 - 2
    and phi'(1) = -2 + 2 c2 + 3 c3."""
    x = params["x"]
    return 1000.0 - 2.0 * x + c2 * x**2 + c3 * x**3


@pytest.mark.parametrize(
    "c2, c3, decrease_error",
    [
        (2.5003, -0.5002, 0.0),  # phi(1) = phi(0) + 1e-4, phi'(1) = 1.5 <= 0.8 * 2: met
        (2.3003, -0.3002, 0.1),  # phi(1) = phi(0) + 1e-4, phi'(1) = 1.7: 0.1 too steep
        (2.53, -0.52, 0.01 - 1e-3),  # phi(1) = phi(0) + 0.01, 0.009 above phi(0) + 1e-3
    ],
)
def test_zoom_takes_a_step_by_the_approximate_wolfe_condition_as_optax(c2, c3, decrease_error, x64):
    # Step 1 raises the loss: no sufficient decrease (error phi(1) - phi(0) + 0.1 * 2), but
    # where it stays within approx_dec_rtol * |phi(0)| = 1e-6 * 1000 (the default) of phi(0),
    # Hager and Zhang's condition phi'(1) <= (1 - 2 slope_rtol) |phi'(0)| may hold instead.
    # The decrease error is the smaller of the two conditions' errors; optax's is the same.
    options = dict(max_linesearch_steps=1, slope_rtol=0.1)
    ours, theirs = _both_zooms(_hump, options, c2=c2, c3=c3)
    updates, state = ours
    for errors in (state.info.decrease_error, theirs[1].info.decrease_error):
        np.testing.assert_allclose(errors, decrease_error, rtol=1e-6, atol=1e-12)
    if decrease_error:  # failed, no step of sufficient decrease: gradtx takes none
        assert bool(state.info.failed) and float(updates["x"]) == 0
    else:
        assert not bool(state.info.failed) and float(state.learning_rate) == 1.0
        assert float(state.info.curvature_error) == 0
        _assert_same_search(ours, theirs)


def test_zoom_takes_no_step_up_even_a_gentle_slope_and_keeps_the_states_types(x64):
    # grad . d = 6 * 0.05 = 0.3 > 0: uphill, however gently. No step, no evaluation of the
    # loss, failed; the errors are inf (nothing tried) and, like every number of the state,
    # strongly typed default floats as at init (float32 params under x64).
    params = {"x": jnp.asarray([3.0, -1.0], jnp.float32)}
    ls = gradtx.scale_by_zoom_linesearch(5)
    init = ls.init(params)
    updates, state = _search(ls, {"x": jnp.asarray([0.05, 0.0], jnp.float32)}, params, _square)
    assert bool(state.info.failed) and int(state.info.num_linesearch_steps) == 0
    assert float(state.info.decrease_error) == float(state.info.curvature_error) == np.inf
    np.testing.assert_array_equal(updates["x"], [0.0, 0.0])
    assert _types(state) == _types(init)


def test_a_failed_zoom_search_prints_what_failed_and_the_step_taken(capfd, x64):
    # Along -1e-3 g from x = -0.5, one evaluation: step 1 decreases the loss enough but its
    # slope is too steep for the curvature condition; the step is taken anyway (the safe one).
    params = {"x": jnp.asarray(-0.5)}
    value, grad = jax.value_and_grad(_wavy)(params)
    direction = {"x": -1e-3 * grad["x"]}
    ls = gradtx.scale_by_zoom_linesearch(1, verbose=True)
    updates, state = _search(ls, direction, params, _wavy)
    jax.effects_barrier()
    count, loss, slope, decrease, curvature, step = _numbers(
        r"scale_by_zoom_linesearch: no step in (\S+) tries met the strong Wolfe conditions "
        r"from loss (\S+) and slope (\S+) \(decrease error (\S+), curvature error (\S+) at "
        r"the last\); step (\S+) taken instead",
        capfd.readouterr().out,
    )
    new_slope = float(jax.grad(_wavy)({"x": params["x"] + direction["x"]})["x"] * direction["x"])
    expected_slope = float(grad["x"] * direction["x"])
    assert (count, decrease, step) == (1, 0.0, 1.0) and bool(state.info.failed)
    np.testing.assert_allclose([loss, slope], [float(value), expected_slope], rtol=1e-12)
    np.testing.assert_allclose(curvature, abs(new_slope) - 0.9 * abs(expected_slope), rtol=1e-9)
    np.testing.assert_allclose(updates["x"], direction["x"], rtol=1e-15)


# -- zoom: growing, the bracket, interpolation -----------------------------------------


def test_zoom_grows_then_zooms_off_zero_as_optax(x64):
    # Along -0.01 g from x = -0.5 the steps grow 1, 2, 4, ... to 256 before the loss rises:
    # the bracket's low end is then far from 0, and the cubic and the parabola are taken about
    # it (curv_rtol 0.1: 12 evaluations, the step 160.5).
    params = {"x": jnp.asarray(-0.5)}
    direction = jax.tree.map(lambda g: -0.01 * g, jax.grad(_wavy)(params))
    ours, theirs = _both_searches(
        ZOOM, direction, params, _wavy, max_linesearch_steps=30, curv_rtol=0.1
    )
    assert int(ours[1].info.num_linesearch_steps) == 12 and float(ours[1].learning_rate) > 128
    _assert_same_search(ours, theirs)


def _level_at_1_and_2(params):
    """7 + (x - 1)(x - 2)(1.5 - x): phi(1) = phi(2) = 7 exactly, falling at both (slope -0.5)."""
    x = params["x"]
    return 7.0 + (x - 1.0) * (x - 2.0) * (1.5 - x)


def test_zoom_brackets_when_the_loss_stops_falling_between_two_steps_as_optax(x64):
    # From 0 along 1 (phi'(0) = -6.5) with curv_rtol 0.01, step 1 decreases enough but is too
    # steep; step 2 has the same loss as step 1 (N&W algorithm 3.5: phi(a_i) >= phi(a_i-1)),
    # so [1, 2] is a bracket though the loss still falls at 2, and the search zooms into it
    # (to 1.21, the local minimum) instead of growing the step to 512.
    ours, theirs = _both_zooms(_level_at_1_and_2, dict(max_linesearch_steps=10, curv_rtol=0.01))
    assert 1 < float(ours[1].learning_rate) < 2 and not bool(ours[1].info.failed)
    _assert_same_search(ours, theirs)
    # Stopped after step 2: failed, and the safe step taken is the last one with sufficient
    # decrease found while growing (2, though no lower than 1), as optax's.
    ours, theirs = _both_zooms(_level_at_1_and_2, dict(max_linesearch_steps=2, curv_rtol=0.01))
    assert bool(ours[1].info.failed) and float(ours[1].learning_rate) == 2.0
    _assert_same_search(ours, theirs)


def test_zoom_along_a_flat_direction_brackets_at_the_first_step_as_optax(capfd, x64):
    # The loss does not depend on y: along (0, 1) phi is constant, phi' = 0 everywhere. With
    # curv_rtol=inf the curvature error is inf * 0 = NaN -> inf, never met: the search fails.
    # Step 1 has slope 0 >= 0 (the slope turns: a bracket [1, 0]), so the later steps are
    # between 0 and 1 and none is lower: the safe step taken is 1, as optax's (not 2).
    params = {"x": jnp.asarray(0.0), "y": jnp.asarray(1.0)}
    direction = {"x": jnp.asarray(0.0), "y": jnp.asarray(1.0)}
    ours, theirs = _both_searches(
        ZOOM,
        direction,
        params,
        lambda p: p["x"] ** 2 + 0.0 * p["y"],
        max_linesearch_steps=3,
        curv_rtol=float("inf"),
    )
    assert bool(ours[1].info.failed) and float(ours[1].learning_rate) == 1.0
    _assert_same_search(ours, theirs)
    jax.effects_barrier()
    assert capfd.readouterr().out == ""  # verbose=False: the failure is not printed


def _quartic(params):
    return (params["x"] - 0.75) ** 4


def test_zoom_drops_a_trial_as_high_as_the_low_end_as_optax(x64):
    # (x - 0.75)^4 from 0 along 1 with curv_rtol 0.01: step 1 turns the slope (bracket [0, 1],
    # low end 1); the parabola's step 0.917 is refused, the middle 0.5 has exactly the loss of
    # the low end (0.25^4): it becomes the high end (phi(a) >= phi(lo)), not the low one.
    ours, theirs = _both_zooms(_quartic, dict(max_linesearch_steps=10, curv_rtol=0.01))
    assert int(ours[1].info.num_linesearch_steps) == 3 and float(ours[1].learning_rate) != 0.75
    _assert_same_search(ours, theirs)


def _bump(params, m, k, b):
    """``(x - m)^2 (k x + b)``: a parabola (k = 0) or a cubic with its local minimum at m."""
    x = params["x"]
    return (x - m) ** 2 * (k * x + b)


def test_zoom_makes_a_lower_trial_without_sufficient_decrease_a_high_end_as_optax(x64):
    # (x - 0.5)^2 from 0 along 1 with slope_rtol 0.9: a step decreases the loss enough only
    # up to 0.1. Step 1 rises; the parabola's step 0.5 is the minimum, lower than the low
    # end 0 but 0.2 short of sufficient decrease: it becomes the high end (N&W algorithm 3.6),
    # and the search finds 0.0625 in 5 evaluations, as optax's.
    options = dict(max_linesearch_steps=10, slope_rtol=0.9, curv_rtol=0.95)
    ours, theirs = _both_zooms(_bump, options, m=0.5, k=0.0, b=1.0)
    assert float(ours[1].learning_rate) == 0.0625 and int(ours[1].info.num_linesearch_steps) == 5
    _assert_same_search(ours, theirs)


def test_zoom_keeps_a_bracket_whose_low_end_is_on_the_right_as_optax(x64):
    # (x - 0.3)^2 (x + 1) from 0 along 0.5: step 1 (x = 0.5) is past the minimum 0.3 with
    # sufficient decrease: the bracket is [0, 1] with its low end at 1. A trial below it,
    # still falling, replaces the end on its side (hi - lo < 0 and slope < 0: the old low
    # end becomes the high one, N&W algorithm 3.6).
    options = dict(max_linesearch_steps=10, curv_rtol=0.01)
    ours, theirs = _both_zooms(_bump, options, 0.5, m=0.3, k=1.0, b=1.0)
    assert not bool(ours[1].info.failed) and int(ours[1].info.num_linesearch_steps) == 7
    _assert_same_search(ours, theirs)


@pytest.mark.parametrize(
    "m, k, b, curv_rtol, evaluations",
    [
        # The cubic's minimum (the loss's own, 0.1, 0.75 and 0.4) lands exactly on
        # lo + 0.2 (hi - lo) or hi - 0.2 (hi - lo) at the third interpolation (found by search,
        # float64 on CPU): refused, the parabola's or the middle is tried instead.
        (0.1, 1.0, 3.0, 0.01, 6),
        (0.75, 1.0, 2.0, 0.01, 7),
        (0.4, 1.0, 0.25, 0.01, 4),
        # The parabola through 0 and 1 has its minimum 0.1 from an end, exactly (0.1 and 0.9,
        # in [0, 1]), or outside [0.1, 0.9] (0.95): refused, the middle is tried first.
        (0.1, 0.0, 1.0, 0.9, 3),
        (0.9, 0.0, 1.0, 0.01, 3),
        (0.95, 0.0, 1.0, 0.01, 4),
    ],
)
def test_zoom_refuses_interpolations_on_the_edge_of_the_bracket_as_optax(
    m, k, b, curv_rtol, evaluations, x64
):
    # "A step well inside [lo, hi]": strictly inside its middle 60% (cubic) or 80% (parabola),
    # as optax's zoom (N&W's safeguards). Taking the edge would find m in two or three.
    options = dict(max_linesearch_steps=10, curv_rtol=curv_rtol)
    ours, theirs = _both_zooms(_bump, options, m=m, k=k, b=b)
    assert int(ours[1].info.num_linesearch_steps) == evaluations
    _assert_same_search(ours, theirs)


@pytest.mark.parametrize(
    "m, b, d, precision",
    [
        (0.3, 1.0, 0.5, 0.5),  # the bracket is 0.5 wide or less after the second evaluation
        (0.1, 3.0, 1.0, 0.5),  # [0, 0.5] after a bisection: exactly 0.5 wide
        # [0, 1] is within 1, but neither 1 nor 0.5 decreases the loss enough: on to a third.
        (0.1, 3.0, 1.0, 1.0),
    ],
)
def test_zoom_stops_once_the_bracket_is_within_stepsize_precision_as_optax(m, b, d, precision, x64):
    # The search ends, failed, at the first evaluation made from a bracket at most
    # stepsize_precision wide once a step of sufficient decrease is in hand, and takes the
    # best such step, as optax's: 3 evaluations instead of the 7 or 6 that meet the curvature
    # condition 0.01.
    options = dict(max_linesearch_steps=10, curv_rtol=0.01, stepsize_precision=precision)
    ours, theirs = _both_zooms(_bump, options, d, m=m, k=1.0, b=b)
    state = ours[1]
    assert bool(state.info.failed) and int(state.info.num_linesearch_steps) == 3
    assert float(state.learning_rate) > 0 and float(state.info.decrease_error) == 0
    _assert_same_search(ours, theirs)


# -- value_and_grad_from_state ---------------------------------------------------------


def test_value_and_grad_from_state_refuses_a_state_without_them_naming_the_fix():
    params = {"x": jnp.zeros(2)}
    ls = gradtx.scale_by_backtracking_linesearch(3)  # store_grad=False: grad is None
    value_and_grad = gradtx.value_and_grad_from_state(_square)
    message = (
        "value_and_grad_from_state: the state holds no 'value' and 'grad'; does the optimizer "
        "end with a line search (with store_grad=True for scale_by_backtracking_linesearch)?"
    )
    with raises_whole(ValueError, message):
        value_and_grad(params, state=ls.init(params))


def _shifted(params, shift, *, scale):
    return scale * jnp.sum((params["x"] - shift) ** 2)


def test_value_and_grad_from_state_computes_with_the_arguments_then_reads_the_state(x64):
    # Before the first step (value inf) the loss and gradient are computed as by
    # jax.value_and_grad, with the extra positional and keyword arguments, in the state's
    # types (a float64 value, a float32 gradient for float32 params under x64; optax's
    # value_and_grad_from_state refuses these: its two branches differ in dtype). After a
    # step they are the state's, whatever the params.
    params = {"x": jnp.asarray([1.0, -2.0], jnp.float32)}
    shift, scale = jnp.asarray(0.5, jnp.float32), jnp.asarray(3.0, jnp.float32)
    ls = gradtx.scale_by_zoom_linesearch(5)
    state = ls.init(params)
    ours = gradtx.value_and_grad_from_state(_shifted)(params, shift, state=state, scale=scale)
    expected = jax.value_and_grad(_shifted)(params, shift, scale=scale)
    np.testing.assert_allclose(ours[0], 3.0 * (0.25 + 6.25), rtol=1e-6)
    np.testing.assert_array_equal(ours[0], expected[0])
    np.testing.assert_array_equal(ours[1]["x"], expected[1]["x"])
    assert ours[0].dtype == jnp.float64 and ours[1]["x"].dtype == jnp.float32
    direction = jax.tree.map(jnp.negative, ours[1])
    _, state = ls.update(
        direction,
        state,
        params,
        value=ours[0],
        grad=ours[1],
        value_fn=lambda p: _shifted(p, shift, scale=scale),
    )
    stored = gradtx.value_and_grad_from_state(_shifted)(params, shift, state=state, scale=scale)
    assert float(stored[0]) == float(state.value) < float(ours[0])
    np.testing.assert_array_equal(stored[1]["x"], state.grad["x"])
