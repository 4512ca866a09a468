"""L-BFGS against optax.lbfgs, SciPy's L-BFGS-B and the dense BFGS recursion."""

from __future__ import annotations

import functools

import chex
import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize

import gradtx

# -- problems: leaves of mixed shapes, starts as NumPy float64 -------------------------


def rosenbrock(params):
    x = jnp.concatenate([params["a"], params["b"].ravel()])  # b: (2, 3)
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


_RNG = np.random.default_rng(0)
_X = _RNG.normal(size=(40, 5))
_Y = np.sign(_X @ _RNG.normal(size=5) + 0.5 * _RNG.normal(size=40))


def logistic_regression(params):
    """Mean logistic loss with a small L2 penalty, so that the minimum is unique."""
    margins = _Y * (_X @ params["w"] + params["b"])
    return jnp.mean(jnp.logaddexp(0.0, -margins)) + 5e-3 * jnp.sum(params["w"] ** 2)


_CURVATURES = np.geomspace(1e-2, 1e3, 6)  # condition number 1e5


def scaled_quadratic(params):
    x = jnp.concatenate([params["u"].ravel(), params["v"]])
    return 0.5 * jnp.sum(_CURVATURES * (x - 1.0) ** 2)


PROBLEMS = {
    "rosenbrock": (
        rosenbrock,
        {"a": np.tile([-1.2, 1.0], 2), "b": np.tile([-1.2, 1.0], 3).reshape(2, 3)},
    ),
    "logistic_regression": (logistic_regression, {"w": np.zeros(5), "b": 0.0}),
    "scaled_quadratic": (scaled_quadratic, {"u": np.zeros((2, 2)), "v": np.zeros(2)}),
}
ITERATIONS = 120  # every problem reaches a 1e-6 gradient norm within them


def _start(name):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), PROBLEMS[name][1])


@functools.cache
def _trajectory(name, library):
    """Params and the gradient norm after each of ITERATIONS steps, from one compiled scan.

    Called under x64; the line search's loss and gradient are reused, as optax advises.
    """
    loss = PROBLEMS[name][0]
    tx, module = (gradtx.lbfgs(), gradtx) if library == "gradtx" else (optax.lbfgs(), optax)
    value_and_grad = module.value_and_grad_from_state(loss)

    def step(carry, _):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=loss)
        params = optax.apply_updates(params, updates)
        return (params, state), (params, optax.tree.norm(jax.grad(loss)(params)))

    def run(params):
        return jax.lax.scan(step, (params, tx.init(params)), None, length=ITERATIONS)[1]

    return jax.jit(run)(_start(name))


# -- the same steps as optax.lbfgs ---------------------------------------------------


@pytest.mark.parametrize("name", PROBLEMS)
def test_equals_optax_lbfgs(name, x64):
    (params, _), (optax_params, _) = (_trajectory(name, lib) for lib in ("gradtx", "optax"))
    first_50 = functools.partial(jax.tree.map, lambda x: x[:50])
    chex.assert_trees_all_close(first_50(params), first_50(optax_params), rtol=1e-10, atol=1e-10)
    # Over a path that goes somewhere: the loss is down to nearly its minimum.
    loss = PROBLEMS[name][0]
    at_50 = float(loss(jax.tree.map(lambda x: x[49], params)))
    assert at_50 - float(loss(jax.tree.map(lambda x: x[-1], params))) < 1e-3 * float(
        loss(_start(name))
    )


# -- the minimum and the iterations of SciPy's L-BFGS-B --------------------------------


def _scipy_lbfgsb(name):
    """SciPy's minimum and its gradient norm after each iteration."""
    loss = PROBLEMS[name][0]
    x0, unravel = ravel_pytree(_start(name))
    value_and_grad = jax.jit(jax.value_and_grad(lambda x: loss(unravel(x))))
    norms = []

    def record(intermediate_result):
        norms.append(float(np.linalg.norm(value_and_grad(intermediate_result.x)[1])))

    result = scipy.optimize.minimize(
        lambda x: tuple(np.asarray(v) for v in value_and_grad(x)),
        np.asarray(x0),
        jac=True,
        method="L-BFGS-B",
        callback=record,
        options={"maxcor": 10, "ftol": 0.0, "gtol": 1e-12, "maxiter": 1000},
    )
    return result, np.asarray(norms)


def _iterations_to(norms, tol=1e-6):
    return int(np.argmax(norms <= tol)) + 1


@pytest.mark.parametrize("name", PROBLEMS)
def test_matches_scipy_lbfgsb(name, x64):
    params, grad_norms = _trajectory(name, "gradtx")
    result, scipy_norms = _scipy_lbfgsb(name)
    final = jax.tree.map(lambda x: x[-1], params)
    assert abs(float(PROBLEMS[name][0](final)) - result.fun) <= 1e-8
    np.testing.assert_allclose(ravel_pytree(final)[0], result.x, atol=1e-7)
    ours, theirs = _iterations_to(np.asarray(grad_norms)), _iterations_to(scipy_norms)
    assert np.any(grad_norms <= 1e-6) and abs(ours - theirs) <= 0.2 * theirs, (ours, theirs)


# -- the two-loop recursion against the dense BFGS update ------------------------------


def _split(x):
    return {"a": x[:3], "b": x[3:].reshape(2, 2)}


def _dense_direction(g, pairs, memory_size, scale_init_precond):
    """H g with H built from gamma I by the BFGS update over the last pairs (N&W eq. 7.19)."""
    if not pairs:  # optax's first step, no longer than 1
        return min(1.0, 1.0 / np.linalg.norm(g)) * g if scale_init_precond else g
    kept = pairs[-memory_size:]
    s_last, y_last = kept[-1]
    gamma = s_last @ y_last / (y_last @ y_last) if scale_init_precond else 1.0
    H = gamma * np.eye(len(g))
    for s, y in kept:
        rho = 1.0 / (s @ y)
        V = np.eye(len(g)) - rho * np.outer(y, s)
        H = V.T @ H @ V + rho * np.outer(s, s)
    return H @ g


@jax.jit
def _lbfgs_update(tx, grads, state, params):
    return tx.update(grads, state, params)


def _two_loop_and_dense_directions(scale_init_precond):
    """scale_by_lbfgs's directions and the dense BFGS update's, shape (7, 7), and the state.

    Seven steps on a quadratic through a ring of three: the oldest pairs are overwritten.
    Called under x64.
    """
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(7, 7)))
    A = q @ np.diag(np.geomspace(0.1, 10.0, 7)) @ q.T
    tx = gradtx.scale_by_lbfgs(memory_size=3, scale_init_precond=scale_init_precond)
    w = rng.normal(size=7)
    state = tx.init(_split(jnp.zeros(7)))
    pairs, ours, dense = [], [], []
    previous = None
    for _ in range(7):
        g = A @ w
        if previous is not None:
            pairs.append((w - previous[0], g - previous[1]))
        direction, state = _lbfgs_update(tx, _split(jnp.asarray(g)), state, _split(jnp.asarray(w)))
        expected = _dense_direction(g, pairs, 3, scale_init_precond)
        ours.append(np.asarray(ravel_pytree(direction)[0]))
        dense.append(expected)
        previous = (w, g)
        w = w - 0.3 * expected + 0.05 * rng.normal(size=7)
    return np.stack(ours), np.stack(dense), state


@pytest.mark.parametrize("scale_init_precond", [True, False])
def test_two_loop_recursion_equals_the_dense_bfgs_update(scale_init_precond, x64):
    ours, dense, state = _two_loop_and_dense_directions(scale_init_precond)
    for direction, expected in zip(ours, dense):
        np.testing.assert_allclose(direction, expected, rtol=1e-10, atol=1e-12)
    assert state.count == 7


def test_first_direction_is_the_gradient_capped_at_length_one():
    tx = gradtx.scale_by_lbfgs()
    params = {"w": jnp.zeros(2)}
    for g, scale in (([3.0, 4.0], 0.2), ([0.3, 0.4], 1.0)):
        direction, _ = tx.update({"w": jnp.asarray(g)}, tx.init(params), params)
        np.testing.assert_allclose(direction["w"], scale * np.asarray(g), rtol=1e-6)


# -- the recipe ----------------------------------------------------------------------


def test_learning_rate_without_line_search_equals_optax(x64):
    # The other branch of the recipe: -learning_rate * H g, no line search.
    start = _start("scaled_quadratic")
    loss = PROBLEMS["scaled_quadratic"][0]
    ours, theirs = gradtx.lbfgs(0.1, linesearch=None), optax.lbfgs(0.1, linesearch=None)
    params, optax_params = start, start
    state, optax_state = ours.init(start), theirs.init(start)
    for _ in range(3):
        updates, state = ours.update(jax.grad(loss)(params), state, params)
        optax_updates, optax_state = theirs.update(
            jax.grad(loss)(optax_params), optax_state, optax_params
        )
        chex.assert_trees_all_close(updates, optax_updates, rtol=1e-12)
        params = gradtx.apply_updates(params, updates)
        optax_params = optax.apply_updates(optax_params, optax_updates)
    assert repr(ours).startswith("lbfgs(")


def test_bad_input():
    for factory in (gradtx.scale_by_lbfgs, gradtx.lbfgs):  # each names itself
        name = factory.__name__
        with pytest.raises(
            ValueError, match=rf"^{name}\(memory_size=0\): memory_size must be in \[1, inf\)$"
        ):
            factory(memory_size=0)
        with pytest.raises(ValueError, match=rf"^{name}\(memory_size=2.5\): .* whole number$"):
            factory(memory_size=2.5)
    tx = gradtx.lbfgs()
    params = {"w": jnp.zeros(2)}
    state = tx.init(params)

    def loss(p):
        return jnp.sum(p["w"] ** 2)

    with pytest.raises(ValueError, match=r"scale_by_zoom_linesearch.update needs value_fn=:"):
        tx.update(params, state, params, value=0.0, grad=params)
    with pytest.raises(ValueError, match=r"scale_by_zoom_linesearch.update needs value=, grad=:"):
        tx.update(params, state, params, value_fn=loss)
    with pytest.raises(ValueError, match=r"scale_by_lbfgs.update needs params"):
        tx.update(params, state, value=0.0, grad=params, value_fn=loss)
