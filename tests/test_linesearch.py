"""The zoom (strong Wolfe) and backtracking (Armijo) line searches, against optax's."""

from __future__ import annotations

import functools
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx

ZOOM, BACKTRACKING = gradtx.scale_by_zoom_linesearch, gradtx.scale_by_backtracking_linesearch

# -- problems ------------------------------------------------------------------------


def rosenbrock(params):
    x = jnp.concatenate([params["a"], params["b"].ravel()])
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def _rosenbrock_start():
    """A 6-D start with leaves of two shapes, made under the caller's x64 setting."""
    return {"a": jnp.asarray([-1.2, 1.0]), "b": jnp.asarray([[-1.2, 1.0], [-1.2, 1.0]])}


def wavy(params):
    x = params["x"]
    return x**4 / 4 - x + 0.3 * jnp.sin(3 * x)


def log_barrier(params):
    """Defined for x > -1 only: NaN beyond, where a long step lands."""
    x = params["x"]
    return x**2 - jnp.log(x + 1.0)


# -- driving a line search after a direction -------------------------------------------


@functools.cache
def _trajectory_fn(loss, library, reuse):
    """A jitted run of ``steps`` steps of ``tx`` (a chain ending with a line search).

    ``reuse``: the loss and gradient are the ones the last search stored.
    """
    module = gradtx if library == "gradtx" else optax

    def run(tx, params, steps):
        reused = module.value_and_grad_from_state(loss)

        def value_and_grad(params, state):
            return reused(params, state=state) if reuse else jax.value_and_grad(loss)(params)

        def step(carry, _):
            params, state = carry
            value, grad = value_and_grad(params, state)
            updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=loss)
            params = optax.apply_updates(params, updates)
            return (params, state), (params, updates, state[-1])

        return jax.lax.scan(step, (params, tx.init(params)), None, length=steps)[1]

    return jax.jit(run, static_argnums=(0, 2))


def _both(step_size, ours, theirs, loss, params, steps, reuse=True):
    """(params, updates, line search state) after each step along ``-step_size * g``.

    For gradtx's line search ``ours`` and optax's ``theirs``, stacked over steps.
    """
    ours = gradtx.chain(gradtx.scale(-step_size), ours)
    theirs = optax.chain(optax.scale(-step_size), theirs)
    return (
        _trajectory_fn(loss, "gradtx", reuse)(ours, params, steps),
        _trajectory_fn(loss, "optax", reuse)(theirs, params, steps),
    )


def _assert_close(actual, expected, what):
    chex.assert_trees_all_close(actual, expected, rtol=1e-10, atol=1e-12, custom_message=what)


# -- the zoom line search against optax's ----------------------------------------------

ZOOM_OPTIONS = [
    {"max_linesearch_steps": 20},
    {"max_linesearch_steps": 20, "initial_guess_strategy": "one", "increase_factor": 3.0},
    {"max_linesearch_steps": 20, "max_learning_rate": 1e-4},
    {"max_linesearch_steps": 20, "approx_dec_rtol": None, "curv_rtol": 0.1, "tol": 1e-8},
]


@pytest.mark.parametrize("options", ZOOM_OPTIONS, ids=["keep", "one", "capped", "armijo"])
def test_zoom_equals_optax(options, x64):
    # Steepest descent on Rosenbrock: every search brackets, zooms or is capped.
    start = _rosenbrock_start()
    mine, other = _both(
        1.0,
        gradtx.scale_by_zoom_linesearch(**options),
        optax.scale_by_zoom_linesearch(**options),
        rosenbrock,
        start,
        12,
    )
    (params, updates, state), (optax_params, optax_updates, optax_state) = mine, other
    assert not np.any(state.info.failed)
    if "max_learning_rate" in options:  # every step capped, some where the loss still falls
        np.testing.assert_array_equal(state.learning_rate, options["max_learning_rate"])
        assert np.any(state.info.curvature_error > 0)
    else:
        assert np.max(state.info.num_linesearch_steps) > 1  # not only first guesses
    assert float(rosenbrock(jax.tree.map(lambda x: x[-1], params))) < float(rosenbrock(start))
    _assert_close(params, optax_params, "params")
    _assert_close(updates, optax_updates, "updates")
    _assert_close(state.learning_rate, optax_state.learning_rate, "learning_rate")
    _assert_close(state.value, optax_state.value, "value")
    _assert_close(state.grad, optax_state.grad, "grad")
    info, optax_info = state.info, optax_state.info
    np.testing.assert_array_equal(info.num_linesearch_steps, optax_info.num_linesearch_steps)
    _assert_close(info.decrease_error, optax_info.decrease_error, "decrease_error")
    _assert_close(info.curvature_error, optax_info.curvature_error, "curvature_error")


def test_zoom_failure_falls_back_on_a_safe_step(x64):
    # One or two evaluations from x = -0.5 along -1e-3 g: each step tried decreases the
    # loss enough but is far too short for the curvature condition. Both searches fail
    # and take the longest (lowest) such step; optax's does the same.
    params = {"x": jnp.asarray(-0.5)}
    for steps in (1, 2):
        ls = dict(max_linesearch_steps=steps)
        mine, other = _both(
            1e-3,
            gradtx.scale_by_zoom_linesearch(**ls),
            optax.scale_by_zoom_linesearch(**ls),
            wavy,
            params,
            1,
        )
        (_, updates, state), (_, optax_updates, optax_state) = mine, other
        assert bool(state.info.failed[0]) and float(state.info.curvature_error[0]) > 0
        assert float(state.info.decrease_error[0]) == 0 and float(state.learning_rate[0]) > 0
        _assert_close(updates, optax_updates, "updates")
        _assert_close((state.learning_rate, state.value), optax_state[:2], "step and value")


@functools.partial(jax.jit, static_argnames="loss")
def _linesearch(ls, direction, params, loss):
    value, grad = jax.value_and_grad(loss)(params)
    return ls.update(direction, ls.init(params), params, value=value, grad=grad, value_fn=loss)


def test_zoom_never_steps_into_nan(x64):
    # Step 1 lands where the loss is NaN; with one evaluation there is nothing else.
    params = {"x": jnp.asarray(5.0)}
    direction = jax.tree.map(jnp.negative, jax.grad(log_barrier)(params))
    for steps, failed in ((1, True), (20, False)):
        ls = gradtx.scale_by_zoom_linesearch(steps)
        updates, state = _linesearch(ls, direction, params, log_barrier)
        new = gradtx.apply_updates(params, updates)
        assert bool(state.info.failed) == failed
        assert bool(jnp.isfinite(log_barrier(new))) and float(log_barrier(new)) <= float(
            log_barrier(params)
        )
    assert float(state.info.decrease_error) == 0 and float(updates["x"]) < 0


# -- the zoom line search's conditions -----------------------------------------------


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])  # first trial far too short, or too long
@pytest.mark.parametrize("curv_rtol", [0.9, 0.1, 1e-3])
def test_zoom_satisfies_the_strong_wolfe_conditions(scale, curv_rtol, x64):
    # stepsize_precision is absolute (optax's): the steps along 1e3 g are ~1e-3 long.
    ls = gradtx.scale_by_zoom_linesearch(30, curv_rtol=curv_rtol, stepsize_precision=1e-10)
    params = {"x": jnp.asarray(-0.5)}
    value, grad = jax.value_and_grad(wavy)(params)
    direction = jax.tree.map(lambda g: -scale * g, grad)
    slope = float(grad["x"] * direction["x"])
    updates, state = _linesearch(ls, direction, params, wavy)
    step = float(state.learning_rate)
    new = gradtx.apply_updates(params, updates)
    new_value, new_grad = jax.value_and_grad(wavy)(new)
    assert not bool(state.info.failed) and step > 0
    assert float(state.info.decrease_error) == 0 and float(state.info.curvature_error) == 0
    assert float(new_value) <= float(value) + 1e-4 * step * slope
    assert abs(float(new_grad["x"] * direction["x"])) <= curv_rtol * abs(slope)
    np.testing.assert_allclose(updates["x"], step * direction["x"], rtol=1e-12)
    # What the next step reuses is the loss and gradient at the new params.
    np.testing.assert_allclose(state.value, new_value, rtol=1e-12)
    chex.assert_trees_all_close(state.grad, new_grad, atol=1e-12)


def test_zoom_is_exact_on_a_quadratic(x64):
    ls = gradtx.scale_by_zoom_linesearch(20)

    def loss(params):
        return 2.0 * jnp.sum((params["x"] - 3.0) ** 2)

    params = {"x": jnp.zeros(3)}
    value, grad = jax.value_and_grad(loss)(params)
    direction = jax.tree.map(jnp.negative, grad)
    updates, state = ls.update(
        direction, ls.init(params), params, value=value, grad=grad, value_fn=loss
    )
    np.testing.assert_allclose(gradtx.apply_updates(params, updates)["x"], 3.0, rtol=1e-12)
    # Step 1 overshoots; the parabola through 0 and 1 has its minimum at the solution.
    assert state.info.num_linesearch_steps == 2


def test_zoom_accepts_a_newton_step_at_once(x64):
    A = jnp.asarray([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]])
    b = jnp.asarray([1.0, -2.0, 0.5])

    def loss(params):
        return 0.5 * params["x"] @ A @ params["x"] - b @ params["x"]

    params = {"x": jnp.zeros(3)}
    newton = {"x": jnp.linalg.solve(A, b)}  # -H^-1 g from 0
    ls = gradtx.scale_by_zoom_linesearch(20, initial_guess_strategy="one")
    updates, state = _linesearch(ls, newton, params, loss)
    assert state.info.num_linesearch_steps == 1 and state.learning_rate == 1
    assert not state.info.failed
    np.testing.assert_allclose(gradtx.apply_updates(params, updates)["x"], newton["x"], rtol=1e-14)


def test_zoom_takes_no_step_uphill(x64):
    ls = gradtx.scale_by_zoom_linesearch(20)
    params = {"x": jnp.asarray(-0.5)}
    value, grad = jax.value_and_grad(wavy)(params)
    updates, state = ls.update(grad, ls.init(params), params, value=value, grad=grad, value_fn=wavy)
    assert updates["x"] == 0 and state.learning_rate == 0
    assert state.info.num_linesearch_steps == 0 and state.info.failed
    assert state.value == value and state.grad["x"] == grad["x"]


def test_zoom_initial_guesses(x64):
    # "keep" starts from the last step, "one" from 1, "slope" from the step with the
    # last step's first-order decrease a_prev * slope_prev / slope (N&W eq. 3.60).
    params = {"x": jnp.asarray(-0.5)}
    value, grad = jax.value_and_grad(wavy)(params)
    direction = jax.tree.map(jnp.negative, grad)
    slope = float(grad["x"] * direction["x"])
    for strategy, guess in (("keep", 0.25), ("one", 1.0), ("slope", 0.25 * -2.0 / slope)):
        ls = gradtx.scale_by_zoom_linesearch(1, curv_rtol=0.01, initial_guess_strategy=strategy)
        state = ls.init(params)._replace(learning_rate=jnp.asarray(0.25), slope=jnp.asarray(-2.0))
        _, state = ls.update(direction, state, params, value=value, grad=grad, value_fn=wavy)
        new_grad = jax.grad(wavy)(gradtx.apply_updates(params, {"x": guess * direction["x"]}))
        # The one evaluation was at the guess: its curvature error says so.
        expected = abs(float(new_grad["x"] * direction["x"])) - 0.01 * abs(slope)
        assert state.info.num_linesearch_steps == 1 and expected > 0
        np.testing.assert_allclose(state.info.curvature_error, expected, rtol=1e-10)


# -- backtracking against optax's ------------------------------------------------------


BACKTRACKING_OPTIONS = {"max_backtracking_steps": 30, "decrease_factor": 0.5}


@pytest.mark.parametrize("store_grad", [False, True])
def test_backtracking_equals_optax(store_grad, x64):
    options = dict(BACKTRACKING_OPTIONS, store_grad=store_grad)
    mine, other = _both(
        1.0,
        gradtx.scale_by_backtracking_linesearch(**options),
        optax.scale_by_backtracking_linesearch(**options),
        rosenbrock,
        _rosenbrock_start(),
        10,
        reuse=store_grad,
    )
    (params, updates, state), (optax_params, optax_updates, optax_state) = mine, other
    assert not np.any(state.info.failed) and np.max(state.info.num_linesearch_steps) > 5
    _assert_close(params, optax_params, "params")
    _assert_close(updates, optax_updates, "updates")
    _assert_close(state.learning_rate, optax_state.learning_rate, "learning_rate")
    _assert_close(state.value, optax_state.value, "value")
    _assert_close(state.grad, optax_state.grad, "grad")
    np.testing.assert_array_equal(
        state.info.num_linesearch_steps, optax_state.info.num_linesearch_steps
    )
    _assert_close(state.info.decrease_error, optax_state.info.decrease_error, "decrease_error")


@pytest.mark.parametrize(
    "search, options, last_tried",
    [
        (ZOOM, {"max_linesearch_steps": 1, "initial_guess_strategy": "one"}, 1.0),
        (ZOOM, {"max_linesearch_steps": 2, "initial_guess_strategy": "one"}, 0.5),
        (BACKTRACKING, {"max_backtracking_steps": 2, "store_grad": True}, 0.64),
    ],
    ids=["zoom-1", "zoom-2", "backtracking-2"],
)
def test_a_failure_without_a_safe_step_takes_no_step(search, options, last_tried, x64):
    # Rosenbrock's gradient at the start is large: every step tried (1 and the zoom's 0.5,
    # or backtracking's two reductions 0.8, 0.64) raises the loss. optax then takes the last
    # one tried, up the valley's wall; gradtx takes none, keeps the loss and gradient at
    # params, and flags it; the next search goes on from the last step tried, as optax's does.
    params = _rosenbrock_start()
    value, grad = jax.value_and_grad(rosenbrock)(params)
    ours, theirs = search(**options), getattr(optax, search.__name__)(**options)
    mine, other = _both(1.0, ours, theirs, rosenbrock, params, 1)
    (new_params, updates, state), (optax_params, _, optax_state) = mine, other
    assert bool(state.info.failed[0]) and float(state.info.decrease_error[0]) > 0
    assert all(bool(jnp.all(u == 0)) for u in jax.tree.leaves(updates))
    assert float(rosenbrock(jax.tree.map(lambda x: x[0], optax_params))) > float(value)
    chex.assert_trees_all_equal(jax.tree.map(lambda x: x[0], new_params), params)
    np.testing.assert_allclose(state.value[0], value, rtol=1e-14)
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[0], state.grad), grad, rtol=1e-14)
    np.testing.assert_allclose(state.learning_rate, last_tried)
    _assert_close(state.learning_rate, optax_state.learning_rate, "learning_rate")
    _assert_close(state.info.decrease_error, optax_state.info.decrease_error, "decrease_error")


def test_backtracking_never_steps_into_nan(x64):
    params = {"x": jnp.asarray(5.0)}
    direction = jax.tree.map(jnp.negative, jax.grad(log_barrier)(params))
    ls = gradtx.scale_by_backtracking_linesearch(0)  # one evaluation: at step 1, NaN
    updates, state = _linesearch(ls, direction, params, log_barrier)
    assert updates["x"] == 0 and bool(state.info.failed)
    assert state.info.decrease_error == jnp.inf and state.value == log_barrier(params)


def test_verbose_says_why_a_search_failed(capfd, x64):
    params = {"x": jnp.asarray(5.0)}
    value, grad = jax.value_and_grad(log_barrier)(params)
    direction = jax.tree.map(jnp.negative, grad)
    for ls, expected in (
        (gradtx.scale_by_backtracking_linesearch(0, verbose=True), "no step in 1 tries"),
        (gradtx.scale_by_zoom_linesearch(1, verbose=True), "no step in 1 tries met the strong"),
    ):
        ls.update(direction, ls.init(params), params, value=value, grad=grad, value_fn=log_barrier)
        jax.effects_barrier()
        assert expected in capfd.readouterr().out
    ls = gradtx.scale_by_zoom_linesearch(20, verbose=True)  # succeeds: says nothing
    ls.update(direction, ls.init(params), params, value=value, grad=grad, value_fn=log_barrier)
    jax.effects_barrier()
    assert capfd.readouterr().out == ""


# -- what the searches need ----------------------------------------------------------


@pytest.mark.parametrize("ls", [ZOOM(5), BACKTRACKING(5)], ids=["zoom", "backtracking"])
@pytest.mark.parametrize(
    "missing, match",
    [
        ("value_fn", r"update needs value_fn=: call update\(updates, state, params, value="),
        ("value", r"update needs value=: call"),
        ("grad", r"update needs grad=: call"),
        ("params", r"update needs params: call"),
    ],
    ids=["value_fn", "value", "grad", "params"],
)
def test_needs_the_loss(ls, missing, match):
    params = {"x": jnp.zeros(2)}
    given = dict(params=params, value=0.0, grad=params, value_fn=lambda p: jnp.sum(p["x"]))
    del given[missing]
    with pytest.raises(ValueError, match=ls.name + "." + match):
        ls.update(params, ls.init(params), **given)


def test_value_and_grad_from_state_needs_a_stored_gradient():
    params = {"x": jnp.zeros(2)}
    tx = gradtx.chain(gradtx.scale(-1.0), gradtx.scale_by_backtracking_linesearch(5))
    value_and_grad = gradtx.value_and_grad_from_state(lambda p: jnp.sum(p["x"] ** 2))
    with pytest.raises(ValueError, match="holds no 'value' and 'grad'.*store_grad=True"):
        value_and_grad(params, state=tx.init(params))


REQUIRED = {ZOOM: {"max_linesearch_steps": 5}, BACKTRACKING: {"max_backtracking_steps": 5}}
# The invalid argument comes last, after any it is checked against; the error names it.
INVALID_ARGUMENTS = [
    (ZOOM, {"max_linesearch_steps": 0}, r".* must be in \[1, inf\)"),
    (ZOOM, {"max_linesearch_steps": 2.5}, r".* must be a whole number"),
    (ZOOM, {"initial_guess_strategy": "two"}, r".* must be one of 'keep', 'one', 'slope'"),
    (ZOOM, {"slope_rtol": 0.0}, r"slope_rtol must be in \(0, 1\)"),
    (ZOOM, {"slope_rtol": 0.01, "curv_rtol": 0.01}, r"curv_rtol must exceed slope_rtol=0.01"),
    (ZOOM, {"increase_factor": 1.0}, r".* must be in \(1, inf\)"),
    (ZOOM, {"max_learning_rate": 0.0}, r".* must be in \(0, inf\)"),
    (ZOOM, {"approx_dec_rtol": -1.0}, r".* must be in \[0, inf\)"),
    (BACKTRACKING, {"max_backtracking_steps": -1}, r".* \[0, inf\)"),
    (BACKTRACKING, {"decrease_factor": 1.0}, r".* must be in \(0, 1\)"),
    (BACKTRACKING, {"increase_factor": 0.5}, r".* must be in \[1, inf\]"),
    (BACKTRACKING, {"max_learning_rate": -1.0}, r".* \(0, inf\)"),
]


def _invalid(factory, kwargs) -> str:
    """``name(arg=value)`` for the invalid (last) argument: the error's prefix, and the test id."""
    arg, value = list(kwargs.items())[-1]
    return f"{factory.__name__}({arg}={value!r})"


@pytest.mark.parametrize(
    "factory, kwargs, message",
    INVALID_ARGUMENTS,
    ids=[_invalid(factory, kwargs) for factory, kwargs, _ in INVALID_ARGUMENTS],
)
def test_invalid_arguments_are_rejected(factory, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(_invalid(factory, kwargs) + ": ") + message):
        factory(**{**REQUIRED[factory], **kwargs})
