"""Tests that kill the mutants of gradtx/_kronecker.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
References: optax's ``power_iteration`` (the same loop: bit for bit in float64), the float64
NumPy oracles of tests/kronecker_oracles.py (distributed_shampoo's shape interpretation,
blocking and update; the SOAP authors' algorithm), and the docstrings' formulas in NumPy.
"""

from __future__ import annotations

import re

import jax
from jax import lax
import jax.numpy as jnp
import kronecker_oracles as oracles
import numpy as np
import optax
import pytest
from replay import run_steps

import gradtx

_ROTATION = np.array([[0.6, 0.8], [-0.8, 0.6]])


def _rotated(*eigenvalues):
    """A symmetric 2 x 2 matrix with these eigenvalues, eigenvectors not the axes."""
    return _ROTATION @ np.diag(eigenvalues) @ _ROTATION.T


def _psd(n, seed):
    a = np.random.default_rng(seed).normal(size=(n, n))
    return a @ a.T


def _assert_bits_equal(ours, theirs):
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        a, b = np.atleast_1d(np.asarray(a)), np.atleast_1d(np.asarray(b))
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


def _precisions(jaxpr):
    """The precision of every dot_general in a jaxpr, cond and while bodies included."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append(eqn.params["precision"])
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found += _precisions(inner)
    return found


def _problem(shapes, steps=3, seed=0, scales=None):
    """float64 params and gradients of these shapes; ``scales`` multiplies each step's."""
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(size=shape) for k, shape in shapes.items()}
    scales = scales or [1.0] * steps
    grads = [{k: s * rng.normal(size=shape) for k, shape in shapes.items()} for s in scales]
    return params, grads


def _against_the_oracle(tx, params, grads, history):
    """Steps ``tx`` from ``params`` over ``grads``; the params must follow ``history``."""
    ours = run_steps(
        tx,
        [jax.tree.map(jnp.asarray, g) for g in grads],
        jax.tree.map(jnp.asarray, params),
        apply=gradtx.apply_updates,
    )
    for t, expected in enumerate(history):
        for k in params:
            np.testing.assert_allclose(ours.params[t + 1][k], expected[k], rtol=1e-10, err_msg=k)
    return ours


def _shampoo_against_the_oracle(params, grads, **kwargs):
    """gradtx.shampoo(0.1, **kwargs) against the float64 oracle; returns gradtx's steps."""
    history = oracles.shampoo(params, grads, 0.1, **kwargs)
    return _against_the_oracle(gradtx.shampoo(0.1, **kwargs), params, grads, history)


def _soap_against_the_oracle(params, grads, **kwargs):
    """gradtx.soap(**kwargs) against the float64 oracle; returns gradtx's steps."""
    history = oracles.soap(params, grads, **kwargs)
    return _against_the_oracle(gradtx.soap(**kwargs), params, grads, history)


_HIGHEST = (lax.Precision.HIGHEST, lax.Precision.HIGHEST)


# -- matrix_inverse_pth_root ---------------------------------------------------------------


def test_matrix_inverse_pth_roots_default_ridge_is_relative_to_the_largest_eigenvalue(x64):
    # ridge = 1e-6 * 100 = 1e-4 against the small eigenvalue 1e-3: a 5% change of its root.
    m = _rotated(100.0, 1e-3)
    root, _ = gradtx.matrix_inverse_pth_root(jnp.asarray(m), 2)
    expected = oracles.inverse_root(m, 2, 1e-6, relative=True)
    np.testing.assert_allclose(root, expected, rtol=1e-10)
    absolute = oracles.inverse_root(m, 2, 1e-6, relative=False)
    assert np.max(np.abs(expected - absolute)) > 0.1


def test_matrix_inverse_pth_roots_error_is_the_documented_residual(x64):
    # An eigenvalue rounded below 0 is clipped in the root, so root**p (m + ridge I) != I:
    # error = max |root**p (m + ridge I) - I| = 250 * 0.8**2 = 160, where 250 is
    # |(-1e-3 + ridge) / ridge - 1| along that eigenvector (0.8, 0.6).
    m = _rotated(4.0, -1e-3)
    root, error = gradtx.matrix_inverse_pth_root(jnp.asarray(m), 2)
    ridge = 1e-6 * 4.0
    lam, vectors = np.linalg.eigh(m)
    expected_root = vectors @ np.diag((np.maximum(lam, 0) + ridge) ** -0.5) @ vectors.T
    np.testing.assert_allclose(root, expected_root, rtol=1e-10)
    residual = np.linalg.matrix_power(expected_root, 2) @ (m + ridge * np.eye(2)) - np.eye(2)
    np.testing.assert_allclose(error, np.max(np.abs(residual)), rtol=1e-8)
    assert float(error) == pytest.approx(160.0, rel=1e-8)


def test_a_0x0_matrix_has_an_empty_root_and_no_error():
    root, error = gradtx.matrix_inverse_pth_root(jnp.zeros((0, 0)), 2)
    assert root.shape == (0, 0)
    assert float(error) == 0.0


def test_under_x64_a_float32_matrix_gets_the_bits_of_a_float32_run():
    # The root runs in the matrix's compute dtype (float32 here), not the default float.
    m = jnp.asarray(_psd(5, 3), jnp.float32)
    expected = gradtx.matrix_inverse_pth_root(m, 3, ridge_epsilon=1e-3)
    with jax.enable_x64(True):
        ours = gradtx.matrix_inverse_pth_root(m, 3, ridge_epsilon=1e-3)
    assert ours[0].dtype == ours[1].dtype == jnp.float32
    _assert_bits_equal(ours, expected)


def test_matrix_products_run_at_the_requested_precision():
    # On CPU every precision computes the same float32 products; on GPU the default would be
    # TF32, so the program itself is checked: HIGHEST by default, the argument when given.
    m = jnp.eye(3)
    root = jax.make_jaxpr(gradtx.matrix_inverse_pth_root)(m, 2).jaxpr
    assert _precisions(root) == [_HIGHEST] * 2
    low = (lax.Precision.DEFAULT, lax.Precision.DEFAULT)
    given = jax.make_jaxpr(
        lambda m: gradtx.matrix_inverse_pth_root(m, 2, precision=lax.Precision.DEFAULT)
    )(m).jaxpr
    assert _precisions(given) == [low] * 2
    power = jax.make_jaxpr(lambda m: gradtx.power_iteration(m))(m).jaxpr
    assert _precisions(power) == [_HIGHEST] * 2
    given = jax.make_jaxpr(lambda m: gradtx.power_iteration(m, precision=lax.Precision.DEFAULT))
    assert _precisions(given(m).jaxpr) == [low] * 2


@pytest.mark.parametrize("name", ["shampoo", "soap"])
def test_shampoo_and_soap_form_and_apply_their_statistics_at_highest_precision(name):
    if name == "shampoo":
        tx = gradtx.scale_by_shampoo(start_preconditioning_step=0)
    else:
        tx = gradtx.scale_by_soap(precondition_frequency=2)  # the refresh's product too
    params = {"w": jnp.ones((3, 4)), "t": jnp.ones((2, 3, 4))}
    jaxpr = jax.make_jaxpr(tx.update)(params, tx.init(params), params).jaxpr
    precisions = _precisions(jaxpr)
    assert len(precisions) > 4 and set(precisions) == {_HIGHEST}


# -- power_iteration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "eigenvalues, seed",
    [
        ((1.0, 0.9), None),  # converges after about 130 iterations: stops at num_iters=100
        ((1.0, 0.9), 7),  # the same from another key's start
        ((1000.0, 500.0), None),  # converges after about 20 iterations
    ],
)
def test_power_iteration_with_its_defaults_equals_optax(x64, eigenvalues, seed):
    # optax's loop: the same start, stop rule and count (only its first test differs).
    m = jnp.asarray(_rotated(*eigenvalues))
    key = None if seed is None else jax.random.PRNGKey(seed)
    ours = gradtx.power_iteration(m, key=key)
    theirs = optax.power_iteration(m, key=key)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-14)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-13, atol=1e-15)
    lam, vectors = np.linalg.eigh(np.asarray(m))
    assert float(ours[0]) == pytest.approx(lam[-1], rel=1e-8)
    # The dominant eigenvector to 1e-8, not to the last digit: optax's equal vector above
    # shows the same start and iteration count.
    assert abs(abs(float(ours[1] @ vectors[:, -1])) - 1) < 1e-8


def test_power_iteration_counts_iterations_exactly_past_2_to_the_24():
    # Swapping the two coordinates never converges (lam = 0): after an odd number of
    # iterations from e1, A v = e1. A float32 count would stop at 2**24, an even number.
    m = jnp.array([[0.0, 1.0], [1.0, 0.0]])
    lam, v = gradtx.power_iteration(m, v0=jnp.array([1.0, 0.0]), num_iters=2**24 + 1)
    assert float(lam) == 0.0
    np.testing.assert_array_equal(v, [1.0, 0.0])


def test_power_iteration_stops_only_below_the_tolerance():
    # Every number is exact: v = (1, 1, 1, 1) / 2, A v = (1, 0, 1, 0), lam = 1, and the
    # residual ||A v - lam v|| = 1 = error_tolerance * |lam|, which is not below: one more
    # iteration, to lam = 2 (as optax).
    m = jnp.diag(jnp.array([2.0, 0.0, 2.0, 0.0]))
    lam, v = gradtx.power_iteration(m, v0=jnp.ones(4), error_tolerance=1.0)
    assert float(lam) == pytest.approx(2.0, rel=1e-6)
    np.testing.assert_allclose(v, np.array([1.0, 0.0, 1.0, 0.0]) / np.sqrt(2), rtol=1e-6)
    theirs, _ = optax.power_iteration(m, v0=jnp.ones(4), error_tolerance=1.0)
    assert float(lam) == float(theirs)


def test_power_iteration_without_iterations_returns_the_starts_rayleigh_quotient():
    # lam = v . A v of the normalised start (optax returns 0 there).
    m = jnp.diag(jnp.array([2.0, 0.0, 2.0, 0.0]))
    lam, v = gradtx.power_iteration(m, v0=jnp.ones(4), num_iters=0)
    assert float(lam) == 1.0
    np.testing.assert_allclose(v, np.array([1.0, 0.0, 1.0, 0.0]) / np.sqrt(2), rtol=1e-6)


def test_power_iteration_of_a_function_without_v0_is_refused_naming_v0():
    with pytest.raises(
        ValueError, match=r"^power_iteration\(v0=None\): v0 is required when matrix is a function"
    ):
        gradtx.power_iteration(lambda v: v)


def test_under_x64_power_iteration_keeps_a_float32_matrix_float32(x64):
    # The start is drawn and the vector normalised in the matrix's dtype, as optax does.
    m = jnp.asarray(_rotated(1.0, 0.9), jnp.float32)
    lam, v = gradtx.power_iteration(m)
    their_lam, their_v = optax.power_iteration(m)
    assert v.dtype == their_v.dtype == jnp.float32
    np.testing.assert_allclose(v, their_v, rtol=1e-5)
    np.testing.assert_allclose(lam, their_lam, rtol=1e-6)


# -- Shampoo: bad input --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["shampoo", "soap"])
def test_a_complex_leaf_is_refused_naming_the_transform_and_the_leafs_path(name):
    tx = gradtx.scale_by_shampoo() if name == "shampoo" else gradtx.scale_by_soap()
    owner = f"scale_by_{name}"
    with pytest.raises(TypeError, match=rf"^{owner}: the leaf at \['c'\] is complex; {owner} "):
        tx.init({"w": jnp.ones((2, 2)), "c": jnp.ones((2, 2), jnp.complex64)})
    with pytest.raises(TypeError, match=rf"^{owner}: the leaf at <root> is complex; {owner} "):
        tx.init(jnp.ones((2, 2), jnp.complex64))
    with pytest.raises(TypeError, match=rf"^{owner}: the leaf at \['c'\] is complex; {owner} "):
        tx.update({"c": jnp.ones((2, 2), jnp.complex64)}, tx.init({"c": jnp.ones((2, 2))}))


_INTEGERS = [
    "block_size",
    "start_preconditioning_step",
    "preconditioning_compute_steps",
    "statistics_compute_steps",
    "exponent_override",
    "skip_preconditioning_dim_size_gt",
    "merge_small_dims_block_size",
    "skip_preconditioning_rank_lt",
]


@pytest.mark.parametrize("name", _INTEGERS)
def test_shampoos_integer_arguments_must_be_whole_numbers(name):
    with pytest.raises(
        ValueError, match=rf"^scale_by_shampoo\({name}=2.5\): {name} must be a whole number$"
    ):
        gradtx.scale_by_shampoo(**{name: 2.5})


@pytest.mark.parametrize(
    "name, value, low",
    [
        ("start_preconditioning_step", -1, 0),
        ("statistics_compute_steps", 0, 1),
        ("exponent_override", -1, 0),
        ("skip_preconditioning_dim_size_gt", 0, 1),
        ("merge_small_dims_block_size", 0, 1),
        ("skip_preconditioning_rank_lt", -1, 0),
    ],
)
def test_shampoos_integer_arguments_below_their_range_are_refused(name, value, low):
    message = rf"^scale_by_shampoo\({name}={value}\): {name} must be in \[{low}, inf\)$"
    with pytest.raises(ValueError, match=message):
        gradtx.scale_by_shampoo(**{name: value})


def test_the_lowest_allowed_skip_and_merge_sizes_are_accepted(x64):
    # skip_preconditioning_dim_size_gt=1: every leaf with a dim above 1 is only grafted;
    # merge_small_dims_block_size=1 merges nothing; skip_preconditioning_rank_lt=0 skips
    # nothing more than 1 (scalars are never preconditioned).
    params, grads = _problem({"w": (2, 3), "s": ()}, steps=2)
    for kwargs in [
        {"skip_preconditioning_dim_size_gt": 1},
        {"merge_small_dims_block_size": 1},
        {"skip_preconditioning_rank_lt": 0},
    ]:
        _shampoo_against_the_oracle(params, grads, start_preconditioning_step=0, **kwargs)
    state = gradtx.scale_by_shampoo(skip_preconditioning_dim_size_gt=1).init(params)
    assert state.statistics == {"w": (), "s": ()}


# -- Shampoo: shape interpretation, blocks and state ---------------------------------------


@pytest.mark.parametrize(
    "shape, merge, block_size, sizes",
    [
        ((1, 1), 4096, 128, [1]),  # all ones: one dim of 1
        ((2, 3, 5), 6, 128, [6, 5]),  # 2 * 3 = 6 is still merged
        ((1, 5), 4, 128, [5]),  # a 1 before a dim above the merge size is dropped
        ((2, 5), 4, 128, [2, 5]),  # a merged 2 is kept
        ((5, 1), 4, 128, [5]),  # a trailing 1 is dropped
        ((4, 6), 4096, 2, [2] * 12),  # merged to 24: twelve full blocks, no empty one
    ],
)
def test_shampoo_follows_distributed_shampoos_shape_interpretation(
    x64, shape, merge, block_size, sizes
):
    params, grads = _problem({"w": shape}, seed=len(shape) + sum(shape))
    ours = _shampoo_against_the_oracle(
        params,
        grads,
        block_size=block_size,
        merge_small_dims_block_size=merge,
        start_preconditioning_step=0,
        beta1=0.5,
    )
    statistics = ours.states[0][0].statistics["w"]
    assert [s.shape for s in statistics] == [(n, n) for n in sizes]


def test_under_x64_float32_params_get_a_float32_state():
    # Statistics, roots and diagonals live in the leaves' compute dtype, not the default float.
    params = {"w": jnp.ones((2, 3), jnp.float32), "b": jnp.ones(3, jnp.bfloat16)}
    tx = gradtx.scale_by_shampoo(graft_type="adagrad", matrix_epsilon=0.1)
    expected = tx.init(params)
    with jax.enable_x64(True):
        state = tx.init(params)
    assert {x.dtype for x in jax.tree.leaves(state)[1:]} == {jnp.dtype(jnp.float32)}
    _assert_bits_equal(state, expected)
    # The 2 x 3 leaf is merged into one dim of 6.
    np.testing.assert_array_equal(state.statistics["w"][0], np.float32(0.1) * np.eye(6))


def test_only_the_diagonal_grafts_keep_a_diagonal_statistic():
    params = {"w": jnp.ones((2, 3))}
    assert gradtx.scale_by_shampoo().init(params).diagonal_statistics == {"w": ()}
    state = gradtx.scale_by_shampoo(graft_type="rmsprop").init(params)
    np.testing.assert_array_equal(state.diagonal_statistics["w"], np.zeros((2, 3)))


@pytest.mark.parametrize("name", ["shampoo", "soap"])
def test_an_empty_tree_has_an_empty_state_and_counts_its_steps(name):
    tx = gradtx.scale_by_shampoo() if name == "shampoo" else gradtx.scale_by_soap()
    state = tx.init({})
    empty = ({},) * (len(state) - 1)
    assert int(state.count) == 0 and state.count.dtype == jnp.int32 and state[1:] == empty
    updates, state = tx.update({}, state)
    assert updates == {} and int(state.count) == 1 and state[1:] == empty


# -- Shampoo: steps against the oracle -----------------------------------------------------


def test_an_rmsprop_graft_with_beta2_1_sums_the_squares(x64):
    # beta2 = 1: the weight of a new square is 1 (distributed_shampoo's sums), not 1 - beta2.
    params, grads = _problem({"w": (2, 3), "v": (3,)})
    _shampoo_against_the_oracle(
        params, grads, graft_type="rmsprop", beta2=1.0, start_preconditioning_step=1
    )


@pytest.mark.parametrize("graft", ["rmsprop_normalized", "adagrad_normalized"])
def test_normalized_grafts_of_tiny_gradients_add_1e_16_to_the_norm(x64, graft):
    # Gradient norms of a few 1e-16: g / (||g|| + 1e-16) is far from g / ||g||.
    params, grads = _problem({"v": (3,)}, scales=[2e-16, 1e-15, 3e-16])
    _shampoo_against_the_oracle(params, grads, graft_type=graft)


def test_exponent_override_1_is_the_root_used(x64):
    # Any override > 0 replaces twice the rank: 1 gives the plain inverse.
    params, grads = _problem({"w": (2, 3)})
    _shampoo_against_the_oracle(
        params,
        grads,
        exponent_override=1,
        start_preconditioning_step=0,
        best_effort_shape_interpretation=False,
    )


def test_tiny_preconditioned_directions_add_1e_16_to_their_norm(x64):
    # Gradients of 1e-19 give a preconditioned direction of about 1e-16: the graft's scale
    # ||g|| / (||D|| + 1e-16) is far from ||g|| / ||D||. Params at 0 show steps of 1e-20.
    params, grads = _problem({"w": (2, 3)}, scales=[1e-19, 3e-19, 2e-19])
    params = {"w": np.zeros((2, 3))}
    _shampoo_against_the_oracle(
        params, grads, start_preconditioning_step=0, best_effort_shape_interpretation=False
    )


def test_without_params_shampoo_steps_as_with_any_params():
    # Only the weight decay reads the params: with the default 0.0 none are needed.
    tx = gradtx.scale_by_shampoo(start_preconditioning_step=0)
    params, grads = _problem({"w": (2, 3), "v": (3,)}, steps=2)
    grads = [jax.tree.map(lambda g: jnp.asarray(g, jnp.float32), g) for g in grads]
    # "bound": weight_decay stays the Python float 0.0 (a traced one cannot be known to be 0).
    without = run_steps(tx, grads, jit="bound")
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)
    with_params = run_steps(tx, grads, params, jit="bound")
    ours = jax.tree.leaves((without.updates, without.states))
    theirs = jax.tree.leaves((with_params.updates, with_params.states))
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_a_weight_decay_of_1_without_params_is_refused():
    tx = gradtx.scale_by_shampoo(weight_decay=1.0)
    g = {"w": jnp.ones((2, 2))}
    with pytest.raises(ValueError, match=r"weight_decay=1.0\): weight decay needs the params"):
        tx.update(g, tx.init(g))


@pytest.mark.parametrize("name", ["shampoo", "soap"])
def test_under_x64_float32_leaves_keep_a_float32_state(name):
    # Every hyperparameter is taken into the leaves' compute dtype (float32 here), so the
    # state keeps its dtypes; the steps are a float32 run's up to the rounding of the bias
    # corrections, which are formed in the default float (float64) first.
    if name == "shampoo":
        tx = gradtx.scale_by_shampoo(
            beta1=0.5, beta2=0.9, graft_type="adam", weight_decay=0.1, start_preconditioning_step=2
        )
    else:
        tx = gradtx.scale_by_soap(b1=0.5, b2=0.8, shampoo_beta=0.7, precondition_frequency=2)
    params, grads = _problem({"w": (2, 3), "v": (3,)}, steps=4)
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)
    grads = [jax.tree.map(lambda g: jnp.asarray(g, jnp.float32), g) for g in grads]
    expected = run_steps(tx, grads, params)
    with jax.enable_x64(True):
        ours = run_steps(tx, grads, params)
    for state in ours.states:
        assert {x.dtype for x in jax.tree.leaves(state)[1:]} == {jnp.dtype(jnp.float32)}
    for a, b in zip(jax.tree.leaves(ours.updates), jax.tree.leaves(expected.updates), strict=True):
        assert a.dtype == jnp.float32
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# -- Shampoo: defaults ---------------------------------------------------------------------


@pytest.mark.parametrize("graft", [None, "rmsprop"])
def test_scale_by_shampoos_defaults_are_distributed_shampoos(x64, graft):
    # Eight steps: the default start_preconditioning_step 5 is passed. A (3, 130) leaf is
    # merged into 390 = 3 * 128 + 6 (block_size 128), a vector is preconditioned (rank 1),
    # and the params are decayed only if weight_decay is not 0.
    tx = gradtx.scale_by_shampoo() if graft is None else gradtx.scale_by_shampoo(graft_type=graft)
    tx = gradtx.chain(tx, gradtx.scale_by_learning_rate(0.1))
    params, grads = _problem({"w": (3, 130), "v": (3,), "s": ()}, steps=8)
    kwargs = {} if graft is None else {"graft_type": graft}
    ours = _against_the_oracle(tx, params, grads, oracles.shampoo(params, grads, 0.1, **kwargs))
    statistics = ours.states[0][0].statistics
    assert [s.shape[0] for s in statistics["w"]] == [128, 128, 128, 6]
    np.testing.assert_array_equal(statistics["v"][0], 1e-6 * np.eye(3))


def test_scale_by_shampoos_default_size_limits_are_4096():
    # A dim of 4097 is only grafted; dims whose product is 4097 are not merged.
    tx = gradtx.scale_by_shampoo()
    shapes = {"long": (4097,), "pair": (17, 241)}
    state = jax.eval_shape(
        tx.init, {k: jax.ShapeDtypeStruct(s, jnp.float32) for k, s in shapes.items()}
    )
    assert state.statistics["long"] == ()
    assert [s.shape[0] for s in state.statistics["pair"]] == [17, 128, 17, 113]


# -- SOAP ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, sizes",
    [
        ((2, 4, 9), [8]),  # 2 * 4 = max_precond_dim is still merged: (8, 9)
        ((2, 9), [2]),  # 9 > 8: (2, 9), only the 2 preconditioned
        ((9, 2), [2]),  # the trailing 2 is kept
        ((1, 2), [2]),  # a matrix is merged too
    ],
)
def test_soap_merges_dims_as_the_authors_merge_dims(x64, shape, sizes):
    # (Statistics of full rank at the first step, or of a 2-vector: eigenbases unique up to
    # signs, so the oracle's NumPy eigh picks the same one.)
    params, grads = _problem({"w": shape}, steps=4)
    ours = _soap_against_the_oracle(
        params, grads, merge_dims=True, max_precond_dim=8, precondition_frequency=2
    )
    assert [q.shape for q in ours.states[-1][0].q["w"]] == [(n, n) for n in sizes]


def test_soap_preconditions_dims_of_1_and_vectors_up_to_max_precond_dim(x64):
    # (Statistics of 2-vectors and of 1 x 1: eigenbases unique up to signs.)
    params, grads = _problem({"column": (2, 1), "v": (2,), "long": (3,)}, steps=4)
    ours = _soap_against_the_oracle(
        params, grads, precondition_1d=True, max_precond_dim=2, precondition_frequency=2
    )
    q = ours.states[-1][0].q
    assert [m.shape for m in q["column"]] == [(2, 2), (1, 1)]
    assert [m.shape for m in q["v"]] == [(2, 2)]
    assert q["long"] == ()


def test_soap_keeps_no_statistics_for_a_zero_size_leaf():
    tx = gradtx.scale_by_soap(precondition_1d=True)
    state = tx.init({"empty": jnp.zeros((0, 3)), "none": jnp.zeros((0,))})
    assert state.gg == {"empty": (), "none": ()} and state.q == {"empty": (), "none": ()}


@pytest.mark.parametrize(
    "name, value, interval",
    [
        ("b2", 1.0, "[0, 1)"),
        ("b2", -0.5, "[0, 1)"),
        ("b2", 1.5, "[0, 1)"),
        ("shampoo_beta", 1.0, "[0, 1)"),
        ("shampoo_beta", 1.5, "[0, 1)"),
        ("eps", -1e-08, "[0, inf)"),
        ("precondition_frequency", 0, "[1, inf)"),
        ("max_precond_dim", 0, "[1, inf)"),
    ],
)
def test_soaps_arguments_outside_their_range_are_refused_naming_them(name, value, interval):
    message = rf"^scale_by_soap\({name}={value}\): {name} must be in {re.escape(interval)}$"
    with pytest.raises(ValueError, match=message):
        gradtx.scale_by_soap(**{name: value})


@pytest.mark.parametrize("name", ["precondition_frequency", "max_precond_dim"])
def test_soaps_integer_arguments_must_be_whole_numbers(name):
    with pytest.raises(
        ValueError, match=rf"^scale_by_soap\({name}=2.5\): {name} must be a whole number$"
    ):
        gradtx.scale_by_soap(**{name: 2.5})


def test_soap_refreshing_its_eigenbasis_every_step_is_accepted(x64):
    params, grads = _problem({"w": (3, 2)}, steps=4)
    _soap_against_the_oracle(params, grads, precondition_frequency=1)


def test_soaps_shampoo_beta_decays_the_statistics_as_documented(x64):
    # L_i <- sb L_i + (1 - sb) unfold_i(G) unfold_i(G)^T from the first call on, with sb the
    # shampoo_beta given (not b2); the eigenbasis columns by decreasing eigenvalue. (A 3 x 2
    # leaf: each first statistic has at most one zero eigenvalue, so its eigenbasis is
    # unique up to signs and the oracle's NumPy eigh picks the same.)
    params, grads = _problem({"w": (3, 2)}, steps=3)
    ours = _soap_against_the_oracle(params, grads, shampoo_beta=0.5, precondition_frequency=2)
    state = ours.states[-1][0]
    for axis, statistic in enumerate(state.gg["w"]):
        expected = sum(
            0.5 ** (2 - t) * 0.5 * oracles.unfolded_gram(g["w"], axis) for t, g in enumerate(grads)
        )
        np.testing.assert_allclose(statistic, expected, rtol=1e-12)
    first = ours.states[1][0]
    for statistic, basis in zip(first.gg["w"], first.q["w"], strict=True):
        estimates = np.diag(basis.T @ statistic @ basis)
        assert np.all(np.diff(estimates) <= 1e-12 * estimates[0])
        assert estimates[0] > estimates[-1]


def test_scale_by_soaps_defaults_are_the_authors(x64):
    # Twelve steps: the default precondition_frequency 10 refreshes the eigenbasis once.
    tx = gradtx.chain(
        gradtx.scale_by_soap(),
        gradtx.add_decayed_weights(0.01),
        gradtx.scale_by_learning_rate(3e-3),
    )
    params, grads = _problem({"w": (3, 4), "v": (3,)}, steps=12)
    _against_the_oracle(tx, params, grads, oracles.soap(params, grads))
    # Dims above 10000 are not preconditioned, dims are not merged, vectors not at all.
    shapes = {"long": (10001, 2), "cube": (2, 3, 4), "v": (3,)}
    abstract = {k: jax.ShapeDtypeStruct(s, jnp.float32) for k, s in shapes.items()}
    q = jax.eval_shape(gradtx.scale_by_soap().init, abstract).q
    assert [m.shape for m in q["long"]] == [(2, 2)]
    assert [m.shape for m in q["cube"]] == [(2, 2), (3, 3), (4, 4)]
    assert q["v"] == ()
