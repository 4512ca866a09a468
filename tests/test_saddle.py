"""Lanczos, saddle-free Newton and negative-curvature escape, against NumPy oracles."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

# -- oracles, written from the definitions with NumPy ------------------------------------


def _krylov_basis(A, v, k):
    """An orthonormal basis (columns) of span(v, A v, ..., A^(k-1) v), by QR."""
    columns = [v]
    for _ in range(k - 1):
        columns.append(A @ columns[-1])
    return np.linalg.qr(np.stack(columns, axis=1))[0]


def _saddle_free_oracle(H, g, damping, k=None):
    """(|H| + damping)^-1 g, on the Krylov space of g when k is given (Dauphin et al.)."""
    Q = np.eye(len(g)) if k is None else _krylov_basis(H, g, k)
    theta, S = np.linalg.eigh(Q.T @ H @ Q)
    Y = Q @ S
    return Y @ ((Y.T @ g) / (np.abs(theta) + damping))


def _symmetric(seed, n, negative=0):
    """A random symmetric matrix with eigenvalues spread over [1, 3], ``negative`` of them < 0."""
    rng = np.random.default_rng(seed)
    q = np.linalg.qr(rng.normal(size=(n, n)))[0]
    eigenvalues = rng.uniform(1.0, 3.0, n) * np.where(np.arange(n) < negative, -1.0, 1.0)
    return (q * eigenvalues) @ q.T


# -- problems ------------------------------------------------------------------------


def _split(x):
    """A vector of length 6 as two leaves of different shapes."""
    return {"a": x[:2], "b": {"c": x[2:].reshape(2, 2)}}


def _join(params):
    return jnp.concatenate([params["a"], params["b"]["c"].ravel()])


def quartic(params, A, b):
    """An indefinite quadratic plus a quartic: gradient A x + b + x^3, Hessian A + 3 diag(x^2)."""
    x = _join(params)
    return 0.5 * x @ A @ x + b @ x + 0.25 * jnp.sum(x**4)


def saddle(p):
    return p[0] ** 2 - p[1] ** 2


def monkey_saddle(p):
    return p[0] ** 3 - 3 * p[0] * p[1] ** 2


def skewed_saddle(p):
    """x^2 - y^2 + y^3: going down along -y is better than along +y."""
    return p[0] ** 2 - p[1] ** 2 + p[1] ** 3


def bowl(p):
    return p[0] ** 2 + p[1] ** 2


def bowl_of_tree(params):
    return sum(jnp.sum(x**2) for x in jax.tree.leaves(params))


@functools.cache
def _step(loss):
    """One jitted update with ``value_fn=loss`` (compiled once per transform structure)."""

    def step(tx, params, state, **data):
        grads = jax.grad(loss)(params, **data)
        updates, state = tx.update(grads, state, params, value_fn=loss, **data)
        return gradtx.apply_updates(params, updates), state, updates

    return jax.jit(step)


def _run(tx, loss, params, steps, **data):
    state = tx.init(params)
    for _ in range(steps):
        params, state, _ = _step(loss)(tx, params, state, **data)
    return params, state


@functools.partial(jax.jit, static_argnums=2)
def _dense_lanczos(A, v0, k):
    return gradtx.lanczos(lambda v: A @ v, v0, k)


# -- Lanczos -------------------------------------------------------------------------


def test_lanczos_with_as_many_steps_as_dimensions_finds_every_eigenpair(x64):
    A = _symmetric(0, 8, negative=3)
    v0 = np.random.default_rng(1).normal(size=8)
    values, vectors = _dense_lanczos(jnp.asarray(A), jnp.asarray(v0), 8)
    values, vectors = np.asarray(values), np.asarray(vectors)
    np.testing.assert_allclose(values, np.linalg.eigvalsh(A), atol=1e-12)
    np.testing.assert_allclose(vectors @ vectors.T, np.eye(8), atol=1e-12)
    np.testing.assert_allclose(vectors @ A, values[:, None] * vectors, atol=1e-12)


@pytest.mark.parametrize("k", [1, 3])
def test_lanczos_with_fewer_steps_diagonalises_the_projected_matrix(k, x64):
    A = _symmetric(2, 8, negative=2)
    v0 = np.random.default_rng(3).normal(size=8)
    values, vectors = _dense_lanczos(jnp.asarray(A), jnp.asarray(v0), k)
    Q = _krylov_basis(A, v0, k)
    theta, S = np.linalg.eigh(Q.T @ A @ Q)
    np.testing.assert_allclose(np.asarray(values), theta, atol=1e-10)
    # Each Ritz vector up to its sign: compare the projectors y y^T.
    Y = (Q @ S).T
    for ours, theirs in zip(np.asarray(vectors), Y):
        np.testing.assert_allclose(np.outer(ours, ours), np.outer(theirs, theirs), atol=1e-10)


def test_lanczos_works_on_pytrees(x64):
    A = _symmetric(4, 6, negative=1)
    v0 = np.random.default_rng(5).normal(size=6)
    flat_values, flat_vectors = _dense_lanczos(jnp.asarray(A), jnp.asarray(v0), 4)
    values, vectors = gradtx.lanczos(
        lambda p: _split(jnp.asarray(A) @ _join(p)), _split(jnp.asarray(v0)), 4
    )
    np.testing.assert_allclose(values, flat_values, atol=1e-12)
    assert vectors["b"]["c"].shape == (4, 2, 2)
    np.testing.assert_allclose(jax.vmap(_join)(vectors), flat_vectors, atol=1e-12)


def test_lanczos_restarts_orthogonally_after_an_invariant_subspace(x64):
    # v0 mixes two eigenvectors: its Krylov space has dimension 2. The restart finds the
    # other two eigenpairs instead of zero vectors with Ritz values 0.
    A = jnp.diag(jnp.asarray([-1.0, 2.0, 3.0, 4.0]))
    values, vectors = _dense_lanczos(A, jnp.asarray([1.0, 1.0, 0.0, 0.0]), 4)
    np.testing.assert_allclose(values, [-1.0, 2.0, 3.0, 4.0], atol=1e-12)
    np.testing.assert_allclose(np.abs(vectors), np.eye(4), atol=1e-12)


def test_lanczos_from_zero_starts_from_a_fresh_direction(x64):
    values, _ = _dense_lanczos(jnp.diag(jnp.asarray([-1.0, 2.0, 3.0])), jnp.zeros(3), 3)
    np.testing.assert_allclose(values, [-1.0, 2.0, 3.0], atol=1e-12)


def test_a_start_whose_squares_underflow_is_not_a_zero_start():
    # float32 1e-23: its squares are 0, and the start was taken for a zero one (a fresh
    # direction: Ritz values -0.6 and 2.7). It spans the (-1, 0.5) eigenspace, as [1, 1, 0, 0].
    A = jnp.diag(jnp.asarray([-1.0, 0.5, 2.0, 3.0]))
    values, _ = gradtx.lanczos(lambda v: A @ v, jnp.asarray([1e-23, 1e-23, 0.0, 0.0]), 2)
    np.testing.assert_allclose(values, [-1.0, 0.5], rtol=1e-6)
    # Saddle-free Newton's step on that subspace is exactly (|H| + damping)^-1 g.
    d = jnp.asarray([-1.0, 0.5, 2.0, 3.0])
    params = jnp.asarray([1e-23, 1e-23, 0.0, 0.0])
    tx = gradtx.scale_by_saddle_free_newton(krylov_dim=2, damping=1e-30)
    grads = d * params
    updates, _ = tx.update(grads, tx.init(params), params, value_fn=lambda p: 0.5 * p @ (d * p))
    np.testing.assert_allclose(updates, grads / jnp.abs(d), rtol=1e-6, atol=0)


def test_lanczos_takes_at_most_as_many_steps_as_dimensions():
    values, vectors = _dense_lanczos(jnp.diag(jnp.arange(3.0)), jnp.ones(3), 10)
    assert values.shape == (3,) and vectors.shape == (3, 3)
    np.testing.assert_allclose(values, [0.0, 1.0, 2.0], atol=1e-5)


@pytest.mark.parametrize("num_iters", [0, 2.0])
def test_lanczos_refuses_a_bad_number_of_steps(num_iters):
    with pytest.raises(ValueError, match=r"lanczos\(num_iters=.*\): num_iters must be an int >= 1"):
        gradtx.lanczos(lambda v: v, jnp.ones(3), num_iters)


# -- saddle-free Newton ----------------------------------------------------------------


def _quartic_problem(seed):
    """Params, A and b of an indefinite quartic problem in 6 dimensions, as float64."""
    A = _symmetric(seed, 6, negative=2)
    rng = np.random.default_rng(seed + 100)
    x, b = rng.normal(size=6), rng.normal(size=6)
    return _split(jnp.asarray(x)), jnp.asarray(A), jnp.asarray(b)


def _quartic_oracle_terms(params, A, b):
    x, A, b = np.asarray(_join(params)), np.asarray(A), np.asarray(b)
    return A + 3 * np.diag(x**2), A @ x + b + x**3  # Hessian and gradient, by hand


DENSE_KRYLOV_DIMS = [6, 50]  # 50: clipped to the 6 parameters
DAMPINGS = [1e-3, 0.5]
SUBSPACE_KRYLOV_DIMS = [1, 2, 3]


@pytest.mark.parametrize("krylov_dim", DENSE_KRYLOV_DIMS)
@pytest.mark.parametrize("damping", DAMPINGS)
def test_saddle_free_newton_equals_the_dense_oracle(krylov_dim, damping, x64):
    params, A, b = _quartic_problem(0)
    H, g = _quartic_oracle_terms(params, A, b)
    assert np.linalg.eigvalsh(H)[0] < 0  # a saddle region: Newton would climb here
    tx = gradtx.scale_by_saddle_free_newton(krylov_dim=krylov_dim, damping=damping)
    _, state, updates = _step(quartic)(tx, params, tx.init(params), A=A, b=b)
    np.testing.assert_allclose(
        _join(updates), _saddle_free_oracle(H, g, damping), rtol=1e-8, atol=1e-12
    )
    np.testing.assert_allclose(state.eigenvalues, np.linalg.eigvalsh(H), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("krylov_dim", SUBSPACE_KRYLOV_DIMS)
def test_saddle_free_newton_on_a_krylov_subspace_equals_the_restricted_oracle(krylov_dim, x64):
    params, A, b = _quartic_problem(1)
    H, g = _quartic_oracle_terms(params, A, b)
    tx = gradtx.saddle_free_newton(learning_rate=0.5, krylov_dim=krylov_dim, damping=1e-2)
    _, _, updates = _step(quartic)(tx, params, tx.init(params), A=A, b=b)
    expected = -0.5 * _saddle_free_oracle(H, g, 1e-2, k=krylov_dim)
    np.testing.assert_allclose(_join(updates), expected, rtol=1e-8, atol=1e-12)
    # It differs from the full-space step: the test would notice the subspace being ignored.
    assert not np.allclose(_join(updates), -0.5 * _saddle_free_oracle(H, g, 1e-2), rtol=1e-3)


def test_saddle_free_newton_in_float32_follows_the_oracle():
    params, A, b = _quartic_problem(0)
    params, A, b = jax.tree.map(lambda x: x.astype(jnp.float32), (params, A, b))
    H, g = _quartic_oracle_terms(params, A, b)
    tx = gradtx.scale_by_saddle_free_newton(krylov_dim=6, damping=1e-3)
    _, _, updates = _step(quartic)(tx, params, tx.init(params), A=A, b=b)
    assert updates["a"].dtype == jnp.float32
    np.testing.assert_allclose(_join(updates), _saddle_free_oracle(H, g, 1e-3), rtol=2e-4)


def test_newton_goes_to_the_saddle_and_saddle_free_newton_leaves_it(x64):
    # f = x^2 - y^2 from near its saddle at 0: Newton's step x - H^-1 g lands on it;
    # saddle-free Newton's x - |H|^-1 g zeroes x but doubles y.
    start = np.asarray([0.3, 1e-3])
    H = np.diag([2.0, -2.0])
    newton = start - np.linalg.solve(H, jax.grad(saddle)(jnp.asarray(start)))
    assert np.linalg.norm(newton) < 1e-15
    tx = gradtx.saddle_free_newton(damping=1e-6)
    end, state = _run(tx, saddle, jnp.asarray(start), steps=10)
    assert abs(float(end[0])) < 1e-10
    np.testing.assert_allclose(abs(float(end[1])), 1e-3 * 2**10, rtol=1e-4)
    assert float(saddle(end)) < -1.0
    np.testing.assert_allclose(gradtx.tree_get(state, "eigenvalues"), [-2.0, 2.0])


@pytest.mark.parametrize("start", [(-0.1, 0.02), (0.05, 0.08)])
def test_on_the_monkey_saddle_newton_halves_the_distance_and_saddle_free_newton_leaves(start, x64):
    # f = x^3 - 3 x y^2 is homogeneous of degree 3, so H p = 2 g (Euler): Newton's step
    # is p / 2 from everywhere. |H| = 6 |p| I: saddle-free Newton is gradient descent
    # with step 1 / (6 |p|), and it runs down one of the three valleys, 1.5x further
    # each step along the valley.
    start = jnp.asarray(start)
    p = np.asarray(start)
    for _ in range(10):
        x, y = p
        p = p - np.linalg.solve([[6 * x, -6 * y], [-6 * y, -6 * x]], jax.grad(monkey_saddle)(p))
    np.testing.assert_allclose(p, np.asarray(start) / 2**10, rtol=1e-10)
    end, _ = _run(gradtx.saddle_free_newton(damping=1e-6), monkey_saddle, start, steps=10)
    assert float(jnp.linalg.norm(end)) > 20 * float(jnp.linalg.norm(start))
    assert float(monkey_saddle(end)) < -9.0


def test_on_a_monkey_saddle_ridge_saddle_free_newton_is_drawn_in_like_newton(x64):
    # On the ridge y = 0, x > 0 the gradient has no part along the negative curvature
    # (y): it is a stable manifold, and |H| = 6 x I makes the step x / 2, as Newton's.
    end, _ = _run(
        gradtx.saddle_free_newton(damping=1e-9), monkey_saddle, jnp.asarray([0.1, 0.0]), 5
    )
    np.testing.assert_allclose(end, [0.1 / 2**5, 0.0], rtol=1e-6, atol=1e-15)


def test_saddle_free_newton_passes_keyword_arguments_to_value_fn(x64):
    # A scaled by 3: same gradient direction, curvatures x3.
    params, A, b = _quartic_problem(2)
    tx = gradtx.scale_by_saddle_free_newton(krylov_dim=6, damping=1e-3)
    _, one, _ = _step(quartic)(tx, params, tx.init(params), A=A, b=b)
    _, three, _ = _step(quartic)(tx, params, tx.init(params), A=3 * A, b=b)
    H, _ = _quartic_oracle_terms(params, 3 * A, b)
    np.testing.assert_allclose(three.eigenvalues, np.linalg.eigvalsh(H), rtol=1e-8)
    assert not np.allclose(one.eigenvalues, three.eigenvalues)


# -- negative-curvature escape ---------------------------------------------------------


def test_gradient_descent_stays_on_a_saddle_and_the_escape_leaves_it(x64):
    at_saddle = jnp.zeros(2)
    stuck, _ = _run(gradtx.sgd(0.1), saddle, at_saddle, steps=3)
    assert np.all(np.asarray(stuck) == 0.0)
    # lambda_min = -2 along y; the step is |lambda| / L = 2 / 0.5 = 4 long.
    tx = gradtx.negative_curvature_descent(0.1, hessian_lipschitz=0.5)
    end, state = _run(tx, saddle, at_saddle, steps=1)
    np.testing.assert_allclose(np.abs(end), [0.0, 4.0], atol=1e-12)
    assert bool(gradtx.tree_get(state, "escaped"))
    np.testing.assert_allclose(gradtx.tree_get(state, "curvature"), -2.0)
    # Once off the saddle the gradient is large: plain gradient steps, y keeps growing.
    end, state = _run(tx, saddle, end, steps=1)
    assert not bool(gradtx.tree_get(state, "escaped"))
    np.testing.assert_allclose(np.abs(end), [0.0, 4.8], atol=1e-12)


def test_the_escape_takes_the_direction_that_lowers_the_loss(x64):
    # f(0, t) = -t^2 + t^3: -y goes down further than +y, whatever the Ritz vector's sign.
    for key in range(3):
        tx = gradtx.negative_curvature_descent(0.1, key=key)
        end, _ = _run(tx, skewed_saddle, jnp.zeros(2), steps=1)
        np.testing.assert_allclose(end, [0.0, -2.0], atol=1e-12)


def test_the_escape_passes_the_inner_update_through_elsewhere(x64):
    inner = gradtx.sgd(0.1, momentum=0.9)
    tx = gradtx.escape_saddle_points(inner, grad_tol=1e-3)
    params = jnp.asarray([0.3, 0.2])  # |g| = 0.72 > grad_tol
    _, state, updates = _step(saddle)(tx, params, tx.init(params))
    _, inner_state, expected = _step(saddle)(inner, params, inner.init(params))
    np.testing.assert_array_equal(updates, expected)
    np.testing.assert_array_equal(
        gradtx.tree_get(state, "trace"), gradtx.tree_get(inner_state, "trace")
    )
    assert not bool(state.escaped)
    # At a minimum the gradient is small but no curvature is negative: no escape.
    _, state, updates = _step(bowl)(tx, jnp.zeros(2), tx.init(jnp.zeros(2)))
    assert not bool(state.escaped) and np.all(np.asarray(updates) == 0.0)
    np.testing.assert_allclose(state.curvature, 2.0)


def test_the_escape_does_nothing_at_the_monkey_saddle(x64):
    # H = 0 at the monkey saddle: no negative curvature to follow (and no gradient).
    tx = gradtx.negative_curvature_descent(0.1)
    end, state = _run(tx, monkey_saddle, jnp.zeros(2), steps=2)
    assert np.all(np.asarray(end) == 0.0) and not bool(gradtx.tree_get(state, "escaped"))


def _random_saddle(x, A):
    """A 100-D saddle: a quadratic with a few negative eigenvalues, plus a quartic."""
    return 0.5 * x @ A @ x + 0.25 * jnp.sum(x**4)


def test_both_leave_a_100_dimensional_saddle(x64):
    A = jnp.asarray(_symmetric(7, 100, negative=3))
    at_saddle = jnp.zeros(100)
    tx = gradtx.negative_curvature_descent(0.1, krylov_dim=20)
    end, _ = _run(tx, _random_saddle, at_saddle, steps=20, A=A)
    assert float(_random_saddle(end, A)) < -0.5
    near = 1e-6 * jnp.asarray(np.random.default_rng(8).normal(size=100))
    end, _ = _run(gradtx.saddle_free_newton(krylov_dim=20), _random_saddle, near, 30, A=A)
    assert float(_random_saddle(end, A)) < -0.5


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tx, name",
    [
        (gradtx.saddle_free_newton(), "scale_by_saddle_free_newton"),
        (gradtx.negative_curvature_descent(0.1), "escape_saddle_points"),
    ],
)
def test_an_update_without_value_fn_names_it_and_the_transform(tx, name):
    params = jnp.ones(2)
    message = (
        rf"{name}\.update needs the params and the loss function as the keyword argument value_fn="
    )
    with pytest.raises(ValueError, match=message):
        tx.update(params, tx.init(params), params)
    with pytest.raises(ValueError, match=message):
        tx.update(params, tx.init(params), value_fn=saddle)


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: gradtx.scale_by_saddle_free_newton(krylov_dim=0),
            r"scale_by_saddle_free_newton\(krylov_dim=0\): krylov_dim must be in \[1, inf\)",
        ),
        (
            lambda: gradtx.saddle_free_newton(krylov_dim=2.5),
            r"\(krylov_dim=2.5\): krylov_dim must be a whole number",
        ),
        (
            lambda: gradtx.saddle_free_newton(damping=0.0),
            r"^saddle_free_newton\(damping=0.0\): damping must be in \(0, inf\)$",
        ),
        (
            lambda: gradtx.scale_by_saddle_free_newton(damping=-1.0),
            r"\(damping=-1.0\): damping must be in \(0, inf\)",
        ),
        (
            lambda: gradtx.negative_curvature_descent(0.1, krylov_dim=0),
            r"^negative_curvature_descent\(krylov_dim=0\): krylov_dim must be in \[1, inf\)",
        ),
        (
            lambda: gradtx.escape_saddle_points(gradtx.sgd(0.1), hessian_lipschitz=0.0),
            r"escape_saddle_points\(hessian_lipschitz=0.0\): hessian_lipschitz must be in \(0,",
        ),
        (
            lambda: gradtx.escape_saddle_points(gradtx.sgd(0.1), grad_tol=-1.0),
            r"escape_saddle_points\(grad_tol=-1.0\): grad_tol must be in \[0, inf\)",
        ),
    ],
)
def test_bad_hyperparameters_are_refused_at_construction(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize(
    "tx",
    [gradtx.saddle_free_newton(), gradtx.negative_curvature_descent(0.1)],
    ids=["saddle_free_newton", "negative_curvature_descent"],
)
def test_integer_leaves_are_refused_naming_the_leaf(tx):
    params = {"w": jnp.ones(2), "n": jnp.arange(3)}
    with pytest.raises(TypeError, match=r"params leaf at \['n'\] has dtype int32"):
        tx.init(params)


@pytest.mark.parametrize(
    "tx",
    [gradtx.saddle_free_newton(), gradtx.negative_curvature_descent(0.1)],
    ids=["saddle_free_newton", "negative_curvature_descent"],
)
def test_params_without_elements_get_an_empty_update(tx):
    # No direction to search: one Lanczos step on an empty vector, no index error.
    params = {"w": jnp.zeros((0, 3))}
    _, _, updates = _step(bowl_of_tree)(tx, params, tx.init(params))
    assert updates["w"].shape == (0, 3)
