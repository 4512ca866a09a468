"""Tests that kill the mutants of gradtx/_saddle.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
References: the docstrings' rules as NumPy oracles in float64 (the Krylov-space oracle of
tests/test_saddle.py; the exact Hessian from ``jax.hessian`` and ``numpy.linalg.eigh``), the
lowered program for the ``precision`` of the matrix products (XLA:CPU computes float32 and
float64 products alike at every precision; on GPU the default would be TF32), and the rule that
float32 inputs compute in float32 whatever ``jax_enable_x64`` says (the same bits with it on);
optax.sgd as an inner transform of the escape.
"""

from __future__ import annotations

from errors import raises_whole
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_mutants_kronecker import _HIGHEST, _precisions
from test_saddle import _dense_lanczos, _krylov_basis, _step, _symmetric, saddle

import gradtx


def _quadratic(x, a):
    """0.5 x^T diag(a) x: elementwise, so its Hessian-vector products have no dot_general."""
    return 0.5 * jnp.sum(a * x**2)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _assert_bits_equal(ours, theirs):
    for a, b in zip(_leaves(ours), _leaves(theirs), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def _float64_leaves(tx):
    """Under x64, ``tx`` with its float hyperparameters as strong float64 arrays.

    The constructors keep Python floats (weakly typed: they follow the params' float32); a
    transform whose leaves were replaced by arrays (``tree_set``, a restored checkpoint)
    has strong float64 ones, and they must still be taken into the params' dtype.
    """
    if not jax.config.jax_enable_x64:
        return tx
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float64) if isinstance(x, float) else x, tx)


def _with_and_without_x64(run):
    """``run()`` without x64, then with it: float32 inputs must give the same float32 bits."""
    plain = run()
    with jax.enable_x64(True):
        wide = run()
    _assert_bits_equal(wide, plain)
    return plain


# -- Lanczos -----------------------------------------------------------------------------


def test_lanczos_on_float32_computes_in_float32_under_x64_as_without():
    # A zero start (a fresh direction for row 0) and an invariant start (a restart at row 2),
    # with fewer steps than dimensions: the fresh directions and the tridiagonal's dtype show.
    a = _symmetric(11, 6, negative=2).astype(np.float32)
    eigenvectors = np.linalg.eigh(a)[1].astype(np.float32)
    starts = [np.zeros(6, np.float32), eigenvectors[:, 0] + eigenvectors[:, 3]]

    def run():
        return [_dense_lanczos(jnp.asarray(a), jnp.asarray(s), 4) for s in starts]

    results = _with_and_without_x64(run)
    for values, vectors in results:
        assert values.dtype == vectors.dtype == jnp.float32
        np.testing.assert_allclose(vectors @ vectors.T, np.eye(4), atol=1e-5)
    # The invariant start's Ritz values include its two true eigenvalues.
    for eigenvalue in np.linalg.eigvalsh(a)[[0, 3]]:
        assert np.min(np.abs(results[1][0] - eigenvalue)) < 1e-5


def test_lanczos_from_a_start_shorter_than_one_uses_its_direction(x64):
    # |v0| = 0.3: the Krylov space of v0 itself, not of a fresh direction.
    a = _symmetric(12, 6, negative=2)
    v0 = 0.3 * np.random.default_rng(13).normal(size=6) / np.sqrt(6)
    assert 0 < np.linalg.norm(v0) < 1
    values, _ = _dense_lanczos(jnp.asarray(a), jnp.asarray(v0), 3)
    q = _krylov_basis(a, v0, 3)
    np.testing.assert_allclose(values, np.linalg.eigvalsh(q.T @ a @ q), rtol=1e-10)


def test_every_matrix_product_runs_at_highest_precision():
    # The operator's own products are the caller's: an elementwise one leaves only ours.
    a = jnp.asarray([2.0, -1.0, 3.0])
    lanczos = jax.make_jaxpr(lambda v: gradtx.lanczos(lambda u: a * u, v, 3))(jnp.ones(3))
    params = jnp.asarray([0.1, 0.2, 0.3])
    jaxprs = [lanczos.jaxpr]
    for tx in (
        gradtx.scale_by_saddle_free_newton(krylov_dim=3),
        gradtx.escape_saddle_points(gradtx.sgd(0.1), krylov_dim=3),
    ):
        update = jax.make_jaxpr(
            lambda g, s, p, tx=tx: tx.update(g, s, p, value_fn=_quadratic, a=a)
        )(params, tx.init(params), params)
        jaxprs.append(update.jaxpr)
    for jaxpr in jaxprs:
        precisions = _precisions(jaxpr)
        assert len(precisions) >= 3 and set(precisions) == {_HIGHEST}


# -- saddle-free Newton ------------------------------------------------------------------


def _sfn_problem(n, seed):
    """float32 params and the diagonal of an indefinite quadratic, with distinct curvatures."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.5, 3.0, n) * np.where(np.arange(n) % 3 == 0, -1.0, 1.0)
    return jnp.asarray(rng.normal(size=n), jnp.float32), jnp.asarray(a, jnp.float32)


def _sfn_step(tx, params, a):
    _, state, updates = _step(_quadratic)(tx, params, tx.init(params), a=a)
    return updates, state


def test_saddle_free_newton_on_float32_computes_in_float32_under_x64_as_without():
    # damping = 1 + 2^-24, a strong float64 under x64, which rounds to 1.0 in float32;
    # curvatures about 1e-3, so the damping sets the step's last bits.
    def run():
        params, a = _sfn_problem(6, 14)
        tx = gradtx.scale_by_saddle_free_newton(krylov_dim=4, damping=1 + 2.0**-24)
        assert tx.init(params).eigenvalues.shape == (4,)  # k Ritz values, before and after
        tx = _float64_leaves(tx)
        updates, state = _sfn_step(tx, params, 1e-3 * a)
        assert state.eigenvalues.shape == (4,)
        return updates, state.eigenvalues.astype(jnp.float32)

    updates, _ = _with_and_without_x64(run)
    assert updates.dtype == jnp.float32


def test_saddle_free_newtons_defaults_are_krylov_dim_20_and_damping_1e_3():
    # 24 parameters with distinct curvatures: 20 and 21 Krylov steps give different steps.
    params, a = _sfn_problem(24, 15)
    default, _ = _sfn_step(gradtx.scale_by_saddle_free_newton(), params, a)
    given, _ = _sfn_step(gradtx.scale_by_saddle_free_newton(20, 1e-3), params, a)
    np.testing.assert_array_equal(default, given)
    for other in (
        gradtx.scale_by_saddle_free_newton(21, 1e-3),
        gradtx.scale_by_saddle_free_newton(20, 1.001),
    ):
        assert not np.array_equal(_sfn_step(other, params, a)[0], default)


# -- negative-curvature escape -------------------------------------------------------------


def _concave(p, c):
    """-c/2 |p|^2: the Hessian is -c I, the gradient at 0 is 0."""
    return -0.5 * c * jnp.sum(p**2)


def _escape_step(tx, params, loss=saddle, **data):
    _, state, updates = _step(loss)(tx, params, tx.init(params), **data)
    return updates, state


def test_the_escape_state_starts_not_escaped_with_curvature_zero():
    tx = gradtx.escape_saddle_points(gradtx.sgd(0.1))
    state = tx.init(jnp.zeros(2))
    assert state.escaped.dtype == jnp.bool_ and state.escaped.shape == () and not state.escaped
    assert state.curvature.dtype == jnp.float32 and float(state.curvature) == 0.0
    # A step keeps the types (a scan over steps takes the state as its carry).
    _, stepped = _escape_step(tx, jnp.zeros(2))
    assert bool(stepped.escaped)
    assert jax.tree.map(lambda x: x.dtype, stepped) == jax.tree.map(lambda x: x.dtype, state)


def _rotated_saddle(p, m):
    return 0.5 * p @ (m @ p)


def test_the_escape_on_float32_params_computes_in_float32_under_x64_as_without():
    # f = p^T M p / 2 with M = R diag(-2, 1, 3) R^T (eigenvectors off the axes, so float32
    # and float64 arithmetic differ in the last bits); the floats as strong float64 under x64.
    rotation = np.linalg.qr(np.random.default_rng(16).normal(size=(3, 3)))[0]
    m = jnp.asarray(rotation @ np.diag([-2.0, 1.0, 3.0]) @ rotation.T, jnp.float32)

    def run():
        tx = _float64_leaves(gradtx.escape_saddle_points(gradtx.sgd(0.1), hessian_lipschitz=0.5))
        at_saddle, off_saddle = jnp.zeros(3, jnp.float32), jnp.asarray([0.5, 0.5, 0.5], jnp.float32)
        escape, state = _escape_step(tx, at_saddle, _rotated_saddle, m=m)
        assert bool(state.escaped)
        inner, state = _escape_step(tx, off_saddle, _rotated_saddle, m=m)  # |g| > grad_tol
        assert not bool(state.escaped)
        return escape, inner

    escape, inner = _with_and_without_x64(run)
    assert escape.dtype == inner.dtype == jnp.float32
    # |lambda| / L = 4 along the first eigenvector; the inner step is -0.1 M p.
    np.testing.assert_allclose(np.abs(escape), 4 * np.abs(rotation[:, 0]), atol=1e-5)
    np.testing.assert_allclose(inner, -0.1 * np.asarray(m) @ np.full(3, 0.5), rtol=1e-5)


def test_a_curvature_of_exactly_minus_curvature_tol_is_no_escape():
    # f = -0.05 |p|^2 in one float32 dimension: lambda about -0.1, read from a first step.
    # The rule is strict (lambda < -curvature_tol): a tolerance of -lambda does not escape,
    # also one a little below -lambda that rounds to it in float32, a strong float64 under
    # x64 (the tolerance is taken into the params' float32).
    def run():
        params, c = jnp.zeros(1, jnp.float32), jnp.float32(0.1)
        tx = gradtx.escape_saddle_points(gradtx.sgd(0.1))
        updates, state = _escape_step(tx, params, _concave, c=c)
        lowest = float(state.curvature)
        assert bool(state.escaped) and abs(lowest + 0.1) < 1e-6
        np.testing.assert_allclose(np.abs(updates), [-lowest], rtol=1e-6)  # |lambda| / 1
        results = [np.float32(lowest)]
        for tol in (-lowest, -lowest * (1 - 2.0**-30)):
            assert np.float32(tol) == np.float32(-lowest)
            tx = _float64_leaves(gradtx.escape_saddle_points(gradtx.sgd(0.1), curvature_tol=tol))
            updates, state = _escape_step(tx, params, _concave, c=c)
            assert float(state.curvature) == lowest and not bool(state.escaped)
            np.testing.assert_array_equal(updates, np.float32([0.0]))
            results.append(updates)
        return results

    _with_and_without_x64(run)


def test_a_gradient_norm_of_exactly_grad_tol_probes_the_curvature(x64):
    # f = x^2 - y^2 at (0, -0.25): g = (0, 0.5), |g| = 0.5 = grad_tol exactly, so
    # Lanczos runs and the step is along y (lambda = -2), not the inner one.
    tx = gradtx.escape_saddle_points(gradtx.sgd(0.1), grad_tol=0.5)
    updates, state = _escape_step(tx, jnp.asarray([0.0, -0.25]))
    assert bool(state.escaped)
    np.testing.assert_allclose(float(state.curvature), -2.0)
    # f(p + d) vs f(p - d) with d = +-2 e_y: -(1.75)^2 < -(2.25)^2 is false; -y is lower.
    np.testing.assert_allclose(updates, [0.0, -2.0], atol=1e-12)
    tx = gradtx.escape_saddle_points(gradtx.sgd(0.1), grad_tol=0.4999)
    updates, state = _escape_step(tx, jnp.asarray([0.0, -0.25]))
    assert not bool(state.escaped)
    np.testing.assert_allclose(updates, [0.0, -0.05])


def test_a_tie_between_plus_and_minus_d_takes_plus_d(x64):
    # f = x^2 - y^2 at its saddle: f(p + d) = f(p - d). The rule takes +d, d = |lambda| / L v
    # with v Lanczos's lowest Ritz vector from the state's probe key.
    tx = gradtx.escape_saddle_points(gradtx.sgd(0.1), key=3)
    params = jnp.zeros(2)
    updates, _ = _escape_step(tx, params)
    start = jax.random.normal(jax.random.split(tx.init(params).key)[1], (2,), params.dtype)
    values, vectors = _dense_lanczos(jax.hessian(saddle)(params), start, 2)
    np.testing.assert_allclose(values, [-2.0, 2.0])
    np.testing.assert_allclose(updates, 2.0 * vectors[0], atol=1e-12)


def test_the_escapes_defaults_are_the_documented_ones(x64):
    # At 0 on a 12-D saddle (lambda_min = -0.5): krylov_dim 10 of 12, key 0, L = 1 and
    # curvature_tol 0 all change the escape step; at |g| = 0.5, grad_tol 1e-3 does not probe.
    n = 12
    a = np.linspace(-0.5, 3.0, n)
    inner = gradtx.sgd(0.1)
    default = gradtx.escape_saddle_points(inner)
    given = gradtx.escape_saddle_points(inner, 1e-3, 10, 1.0, 0.0, 0)
    points = (jnp.zeros(n), jnp.asarray(np.eye(n)[1] / (2 * a[1])))  # |g| = 0, 0.5

    def steps(tx):
        return [_escape_step(tx, p, _quadratic, a=jnp.asarray(a))[0] for p in points]

    ours = steps(default)
    for mine, theirs in zip(ours, steps(given)):
        np.testing.assert_array_equal(mine, theirs)
    for other in (
        gradtx.escape_saddle_points(inner, 1.001, 10, 1.0, 0.0, 0),
        gradtx.escape_saddle_points(inner, 1e-3, 11, 1.0, 0.0, 0),
        gradtx.escape_saddle_points(inner, 1e-3, 10, 2.0, 0.0, 0),
        gradtx.escape_saddle_points(inner, 1e-3, 10, 1.0, 1.0, 0),
        gradtx.escape_saddle_points(inner, 1e-3, 10, 1.0, 0.0, 1),
    ):
        assert not all(map(np.array_equal, steps(other), ours)), other


def test_lanczos_from_an_exact_eigenvector_restarts_with_the_other_eigenpairs(x64):
    # A e_2 = 2 e_2 exactly: the first residual is exactly zero (kept = 0 = |once|), the
    # Krylov space is invariant, and the restart finds the other three eigenpairs.
    values, vectors = _dense_lanczos(jnp.diag(jnp.asarray([-1.0, 2.0, 3.0, 4.0])), jnp.eye(4)[1], 4)
    np.testing.assert_allclose(values, [-1.0, 2.0, 3.0, 4.0], atol=1e-12)
    np.testing.assert_allclose(np.abs(vectors), np.eye(4), atol=1e-12)


def test_lanczos_on_one_dimension_takes_one_step(x64):
    # k = min(num_iters, size) = 1: one Ritz value, the operator itself.
    values, vectors = _dense_lanczos(jnp.asarray([[-2.0]]), jnp.asarray([0.5]), 3)
    np.testing.assert_array_equal(values, [-2.0])
    np.testing.assert_array_equal(vectors, [[1.0]])


@pytest.mark.parametrize("name", ["scale_by_saddle_free_newton", "escape_saddle_points"])
def test_an_update_without_value_fn_says_the_call_to_make(name):
    tx = (
        gradtx.scale_by_saddle_free_newton()
        if name == "scale_by_saddle_free_newton"
        else gradtx.escape_saddle_points(gradtx.sgd(0.1))
    )
    params = jnp.ones(2)
    message = (
        f"{name}.update needs the params and the loss function as the keyword argument "
        "value_fn=: call update(grads, state, params, value_fn=loss) (optax's convention; "
        "other keyword arguments that loss accepts are passed to it)"
    )
    with raises_whole(ValueError, message):
        tx.update(params, tx.init(params), params)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"krylov_dim": 2.5}, r"\(krylov_dim=2.5\): krylov_dim must be a whole number"),
        ({"curvature_tol": -1.0}, r"\(curvature_tol=-1.0\): curvature_tol must be in \[0, inf\)"),
    ],
)
def test_the_escape_refuses_a_fractional_krylov_dim_and_a_negative_curvature_tol(options, message):
    with pytest.raises(ValueError, match=r"^escape_saddle_points" + message):
        gradtx.escape_saddle_points(gradtx.sgd(0.1), **options)


def test_the_escape_with_one_krylov_step_takes_the_rayleigh_quotient(x64):
    # krylov_dim = 1 is allowed: lambda = v^T H v for the unit start v, here H = -3 I.
    tx = gradtx.escape_saddle_points(gradtx.sgd(0.1), krylov_dim=1)
    updates, state = _escape_step(tx, jnp.zeros(3), _concave, c=3.0)
    assert bool(state.escaped)
    np.testing.assert_allclose(float(state.curvature), -3.0)
    np.testing.assert_allclose(np.linalg.norm(updates), 3.0)


def test_the_escape_gives_its_inner_the_params_and_every_extra_argument(x64):
    # An inner transform that needs params, value_fn and the loss's data (saddle-free Newton),
    # and an optax one: off the saddle each step is the inner's own.
    optax = pytest.importorskip("optax")
    a = jnp.asarray([2.0, -1.0, 3.0])
    params = jnp.asarray([0.3, 0.2, -0.4])  # |g| > grad_tol
    for inner in (gradtx.saddle_free_newton(0.5, krylov_dim=3), optax.sgd(0.1)):
        tx = gradtx.escape_saddle_points(inner)
        updates, state = _escape_step(tx, params, _quadratic, a=a)
        assert not bool(state.escaped)
        if isinstance(inner, gradtx.Transform):
            expected, _ = _sfn_step(inner, params, a)
        else:
            expected, _ = inner.update(a * params, inner.init(params), params)
        np.testing.assert_allclose(updates, expected, rtol=1e-12)


def test_lanczos_restarts_from_the_fixed_direction_of_its_row(x64):
    # The "fixed pseudo-random direction" for row r is jax.random.normal(fold_in(key(0), r)),
    # orthogonalised: row 0 for a zero start, row j + 1 for a restart after step j. With
    # fewer steps than dimensions the Ritz values show which direction was taken (this pins
    # the choice, so that results are reproducible).
    a = np.asarray([-1.0, 0.5, 2.0, 3.0, 4.5, 6.0])

    def fresh(row):
        return np.asarray(jax.random.normal(jax.random.fold_in(jax.random.key(0), row), (6,)))

    values, _ = _dense_lanczos(jnp.diag(jnp.asarray(a)), jnp.zeros(6), 3)
    q = _krylov_basis(np.diag(a), fresh(0), 3)
    np.testing.assert_allclose(values, np.linalg.eigvalsh(q.T @ np.diag(a) @ q), rtol=1e-10)
    # From e_1, an eigenvector: a restart at row 1, orthogonal to e_1.
    values, _ = _dense_lanczos(jnp.diag(jnp.asarray(a)), jnp.eye(6)[1], 3)
    restart = fresh(1) * (np.arange(6) != 1)
    q = _krylov_basis(np.diag(a), restart, 2)
    expected = np.sort(np.append(np.linalg.eigvalsh(q.T @ np.diag(a) @ q), a[1]))
    np.testing.assert_allclose(values, expected, rtol=1e-10)


def _skewed(p, s):
    """x^2 - y^2 + s y^3: for s = 1 going down along -y is better, for s = -1 along +y."""
    return p[0] ** 2 - p[1] ** 2 + s * p[1] ** 3


def test_the_escape_takes_the_lower_of_plus_and_minus_d_whatever_the_ritz_vectors_sign(x64):
    # The same Hessian (diag(2, -2)) and key for both skews: the same Ritz vector and d, so
    # one of the two needs +d and the other -d.
    tx = gradtx.escape_saddle_points(gradtx.sgd(0.1))
    for s in (1.0, -1.0):
        updates, state = _escape_step(tx, jnp.zeros(2), _skewed, s=s)
        assert bool(state.escaped)
        np.testing.assert_allclose(updates, [0.0, -2.0 * s], atol=1e-12)
