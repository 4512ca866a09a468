"""Tests that kill the mutants of gradtx/_factored.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
References: optax's scale_by_factored_rms, adafactor and scale_by_param_block_rms/norm, and
float64 NumPy versions of the docstrings' update rules (the factored statistics of one step,
the parameter RMS after a decoupled decay, which Keras's Adafactor takes).
"""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest
from replay import run_steps

import gradtx


def _rng(seed=0):
    return np.random.default_rng(seed)


def _steps(tx, grads, params, steps):
    """Every step's updates of ``tx`` (jitted once) over ``grads[:steps]``, fed the same params,
    and the last state."""
    run = run_steps(tx, grads[:steps], params, jit="bound")
    return run.updates, run.states[-1]


def _assert_trees_close(ours, theirs, rtol):
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol)


def _bits_equal(a, b):
    a, b = np.atleast_1d(np.asarray(a)), np.atleast_1d(np.asarray(b))
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


# -- scale_by_factored_rms against optax ----------------------------------------------------


def _factored_problem(case):
    """(ours, optax's, params, three gradients) for one case of the comparison."""
    rng = _rng(1)
    if case == "defaults":  # a 128 x 130 matrix: both dims reach the default min size 128
        shapes, kwargs, size = {"m": (128, 130), "v": (3,)}, {}, 1.0
    elif case == "min-dim-equal":  # a dimension equal to min_dim_size_to_factor is factored
        shapes, kwargs, size = {"m": (2, 3), "v": (3,)}, {"min_dim_size_to_factor": 2}, 1.0
    elif case == "epsilon":  # eps comparable to g**2: where it is added shows
        shapes, size = {"m": (2, 3), "v": (3,)}, 0.1
        kwargs = {"min_dim_size_to_factor": 2, "epsilon": 1e-2}
    else:  # a decay_rate_fn replaces the schedule: a constant beta from the first step
        shapes, size = {"m": (2, 3), "v": (3,)}, 1.0
        kwargs = {"min_dim_size_to_factor": 2, "decay_rate_fn": lambda step, rate: 0.5 * rate}
    params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}
    grads = [
        {k: jnp.asarray(size * rng.normal(size=s), jnp.float32) for k, s in shapes.items()}
        for _ in range(3)
    ]
    return (
        gradtx.scale_by_factored_rms(**kwargs),
        optax.scale_by_factored_rms(**kwargs),
        params,
        grads,
    )


@pytest.mark.parametrize("case", ["defaults", "min-dim-equal", "epsilon", "decay_rate_fn"])
def test_scale_by_factored_rms_matches_optax(case):
    ours, theirs, params, grads = _factored_problem(case)
    updates, state = _steps(ours, grads, params, 3)
    expected, other = _steps(theirs, grads, params, 3)
    _assert_trees_close(updates, expected, 1e-5)
    # The matrix is factored as optax factors it: one number per row and one per column.
    assert state.v["m"] is None
    assert state.v_row["m"].shape == other.v_row["m"].shape
    assert state.v_col["m"].shape == other.v_col["m"].shape
    _assert_trees_close(
        (state.v_row["m"], state.v_col["m"], state.v["v"]),
        (other.v_row["m"], other.v_col["m"], other.v["v"]),
        1e-5,
    )


def test_a_half_precision_beta_from_decay_rate_fn_is_used_as_the_number_it_is():
    # beta = bfloat16(0.1) = 0.10009765625: 1 - beta is 0.89990234375, which bfloat16 rounds;
    # gradtx takes the schedule's value into float32 first, as if it were the Python number.
    beta = float(jnp.bfloat16(0.1))
    ours = gradtx.scale_by_factored_rms(
        min_dim_size_to_factor=2, decay_rate_fn=lambda step, rate: jnp.asarray(0.1, jnp.bfloat16)
    )
    theirs = optax.scale_by_factored_rms(
        min_dim_size_to_factor=2, decay_rate_fn=lambda step, rate: beta
    )
    rng = _rng(2)
    params = {"m": jnp.ones((2, 3)), "v": jnp.ones(3)}
    grads = [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)]
    grads.append(jax.tree.map(lambda g: -0.5 * g, grads[0]))
    _assert_trees_close(
        _steps(ours, grads, params, 2)[0], _steps(theirs, grads, params, 2)[0], 1e-6
    )


def test_epsilon_none_is_the_leaf_dtypes_machine_epsilon():
    eps = float(np.finfo(np.float32).eps)
    g = {
        "v": jnp.asarray([1e-4, -2e-4, 3e-3], jnp.float32),
        "m": jnp.asarray([[1e-4, 5e-4], [-2e-4, 1e-3]], jnp.float32),
    }
    ours = gradtx.scale_by_factored_rms(min_dim_size_to_factor=2, epsilon=None)
    theirs = optax.scale_by_factored_rms(min_dim_size_to_factor=2, epsilon=eps)
    _assert_trees_close(
        ours.update(g, ours.init(g))[0], theirs.update(g, theirs.init(g), g)[0], 1e-6
    )


# -- which axes are factored ------------------------------------------------------------------


def _first_step_reference(g, row, col, eps=1e-30):
    """The docstring's first step (beta_1 = 0) of a leaf factored over (row, col), float64."""
    g2 = np.asarray(g, np.float64) ** 2 + eps
    r, c = g2.mean(axis=col, keepdims=True), g2.mean(axis=row, keepdims=True)
    u = np.asarray(g, np.float64) / np.sqrt(r * c / r.mean(axis=row, keepdims=True))
    return u, np.squeeze(r, col), np.squeeze(c, row)


@pytest.mark.parametrize(
    ("shape", "factor_axes", "row", "col"),
    [
        ((4, 3, 2), "last", 1, 2),  # "largest" would take axes 1 and 0
        ((4, 3, 2), "largest", 1, 0),
        ((2, 2, 1, 1), "largest", 0, 1),  # a tie: the later of the two axes is the column
        ((3, 3, 2, 2), "largest", 0, 1),
    ],
)
def test_a_leaf_is_factored_over_the_documented_axes(shape, factor_axes, row, col):
    g = np.arange(1.0, 1.0 + np.prod(shape)).reshape(shape) ** 1.5 * (-1) ** np.arange(
        np.prod(shape)
    ).reshape(shape)
    tx = gradtx.scale_by_factored_rms(min_dim_size_to_factor=2, factor_axes=factor_axes)
    grads = {"x": jnp.asarray(g, jnp.float32)}
    u, state = tx.update(grads, tx.init(grads))
    expected, v_row, v_col = _first_step_reference(g, row, col)
    assert state.v_row["x"].shape == v_row.shape and state.v_col["x"].shape == v_col.shape
    np.testing.assert_allclose(state.v_row["x"], v_row, rtol=1e-6)
    np.testing.assert_allclose(state.v_col["x"], v_col, rtol=1e-6)
    np.testing.assert_allclose(u["x"], expected, rtol=1e-5)


def test_an_empty_tree_gives_an_empty_state_and_empty_updates():
    tx = gradtx.scale_by_factored_rms()
    state = tx.init({})
    assert (state.v_row, state.v_col, state.v) == ({}, {}, {})
    updates, state = jax.jit(tx.update)({}, state)
    assert updates == {} and int(state.count) == 1


def test_bfloat16_gradients_give_bfloat16_updates_factored_or_not():
    tx = gradtx.scale_by_factored_rms(min_dim_size_to_factor=2)
    rng = _rng(3)
    g32 = {"m": jnp.asarray(rng.normal(size=(2, 3)), jnp.float32), "v": jnp.asarray([1.0, -2.0])}
    g16 = jax.tree.map(lambda g: g.astype(jnp.bfloat16), g32)
    updates = tx.update(g16, tx.init(g16))[0]
    expected = tx.update(g16, tx.init(g32))[0]  # float32 statistics, the same first step
    for name in ("m", "v"):
        assert updates[name].dtype == jnp.bfloat16, name
        np.testing.assert_allclose(
            np.asarray(updates[name], np.float32), np.asarray(expected[name], np.float32), rtol=1e-2
        )


def test_under_x64_a_float32_leaf_gets_the_bits_of_a_float32_run():
    # The first step (beta = 0 in both modes): statistics and updates computed in float32.
    rng = _rng(4)
    grads = {
        "m": rng.normal(size=(8, 16)).astype(np.float32),
        "v": rng.normal(size=(5,)).astype(np.float32),
    }

    def first_step():
        tx = gradtx.scale_by_factored_rms(min_dim_size_to_factor=2)
        return jax.jit(tx.update)(grads, tx.init(grads))

    u32, s32 = first_step()
    with jax.enable_x64(True):
        u64, s64 = first_step()
    for a, b in zip(jax.tree.leaves((u32, s32)), jax.tree.leaves((u64, s64)), strict=True):
        if a.dtype != jnp.int32:  # the step counts
            _bits_equal(a, b)


# -- adafactor's own argument checks ----------------------------------------------------------

# In the order adafactor checks them, with a bad value for each; learning_rate is checked last
# (by scale_by_learning_rate, once the checks of adafactor's own arguments have passed).
LATER_BAD = {
    "min_dim_size_to_factor": 0,
    "decay_rate": -1.0,
    "eps": -1.0,
    "clipping_threshold": -1.0,
    "momentum": 1.5,
    "weight_decay_rate": -0.1,
    "learning_rate": -0.1,
}


@pytest.mark.parametrize(
    ("arg", "value"),
    [
        ("min_dim_size_to_factor", 0),
        ("min_dim_size_to_factor", 2.5),
        ("decay_rate", -1.0),
        ("eps", -1.0),
        ("clipping_threshold", -1.0),
        ("momentum", -0.5),
        ("momentum", 1.5),
        ("weight_decay_rate", -0.1),
    ],
)
def test_adafactor_names_a_bad_argument_even_when_later_ones_are_bad_too(arg, value):
    names = list(LATER_BAD)
    kwargs = {name: LATER_BAD[name] for name in names[names.index(arg) + 1 :]}
    kwargs[arg] = value
    with pytest.raises(ValueError, match=re.escape(f"adafactor({arg}={value!r})")):
        gradtx.adafactor(**kwargs)


def test_adafactor_factors_every_matrix_with_min_dim_size_to_factor_1():
    rng = _rng(5)
    params = {"w": jnp.asarray(rng.normal(size=(1, 3)), jnp.float32), "b": jnp.ones(3)}
    grads = [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape)), params) for _ in "ab"]
    ours = gradtx.adafactor(0.1, min_dim_size_to_factor=1)
    theirs = optax.adafactor(0.1, min_dim_size_to_factor=1)
    updates, state = _steps(ours, grads, params, 2)
    _assert_trees_close(updates, _steps(theirs, grads, params, 2)[0], 1e-6)
    assert state[0].v_row["w"].shape == (1,) and state[0].v_col["w"].shape == (3,)


def test_adafactor_with_an_infinite_clipping_threshold_does_not_clip():
    rng = _rng(6)
    params = {"w": jnp.asarray(rng.normal(size=(2, 3)), jnp.float32)}
    # Large, uneven gradients: their first-step RMS after scaling exceeds 1 in no leaf, so
    # clipping at 1 would change nothing; a second step with a sign flip does exceed it.
    grads = [{"w": jnp.asarray([[1.0, 1e-3, 2.0], [5.0, -1e-3, 1.0]])}]
    grads.append({"w": jnp.asarray([[-1e-3, 1.0, 2.0], [5.0, 3.0, -1.0]])})
    unclipped = gradtx.adafactor(0.1, min_dim_size_to_factor=2, clipping_threshold=math.inf)
    expected = optax.adafactor(0.1, min_dim_size_to_factor=2, clipping_threshold=None)
    _assert_trees_close(
        _steps(unclipped, grads, params, 2)[0], _steps(expected, grads, params, 2)[0], 1e-6
    )


# -- scale_by_param_block_rms / _norm ---------------------------------------------------------


def test_param_block_scalings_defaults_are_optaxs():
    params = {"unit": jnp.asarray([0.3, 0.4]), "small": jnp.asarray([1e-4, 0.0])}
    updates = {"unit": jnp.asarray([1.0, -2.0]), "small": jnp.asarray([3.0, 1.0])}
    for ours, theirs in (
        (gradtx.scale_by_param_block_norm(), optax.scale_by_param_block_norm()),
        (gradtx.scale_by_param_block_rms(), optax.scale_by_param_block_rms()),
    ):
        expected = theirs.update(updates, theirs.init(params), params)[0]
        _assert_trees_close(ours.update(updates, ours.init(params), params)[0], expected, 1e-6)


@pytest.mark.parametrize("kind", ["rms", "norm", "decayed-rms"])
def test_param_block_scaling_without_params_is_refused_naming_the_transform(kind):
    if kind == "rms":
        tx, name = gradtx.scale_by_param_block_rms(), "scale_by_param_block_rms"
    elif kind == "norm":
        tx, name = gradtx.scale_by_param_block_norm(), "scale_by_param_block_norm"
    else:
        tx, name = gradtx.scale_by_param_block_rms(weight_decay=0.1), "scale_by_param_block_rms"
    u = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match=re.escape(f"{name} needs the params")):
        tx.update(u, tx.init(u))


@pytest.mark.parametrize("kind", ["rms", "norm", "decayed-rms"])
def test_param_block_scaling_keeps_bfloat16_updates_bfloat16(kind):
    if kind == "rms":
        tx, size = gradtx.scale_by_param_block_rms(), np.sqrt(12.5)
    elif kind == "norm":
        tx, size = gradtx.scale_by_param_block_norm(), 5.0
    else:
        tx, size = gradtx.scale_by_param_block_rms(weight_decay=0.5), np.sqrt(12.5) / 2
    params = {"w": jnp.asarray([3.0, 4.0], jnp.bfloat16)}
    u = tx.update({"w": jnp.asarray([1.0, -2.0], jnp.bfloat16)}, tx.init(params), params)[0]
    assert u["w"].dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(u["w"], np.float32), [size, -2 * size], rtol=1e-2)


@pytest.mark.parametrize("kind", ["rms", "norm", "decayed-rms"])
def test_under_x64_a_float32_leaf_is_scaled_in_float32(kind):
    # Small params (below min_scale) or a decay: the product with the floor or the decay runs
    # in float32, as without x64 and as optax does.
    rng = _rng(7)
    if kind == "decayed-rms":  # one-element leaves: their RMS is |p'|, p' = p - 0.1 p
        params = {str(i): np.float32(x) for i, x in enumerate(rng.normal(size=12))}
    else:
        params = {"w": (1e-5 * rng.normal(size=16)).astype(np.float32)}
    updates = jax.tree.map(lambda p: rng.normal(size=np.shape(p)).astype(np.float32), params)

    def scaled():
        if kind == "rms":
            tx = gradtx.scale_by_param_block_rms()
        elif kind == "norm":
            tx = gradtx.scale_by_param_block_norm()
        else:
            tx = gradtx.scale_by_param_block_rms(weight_decay=0.1)
        return jax.jit(tx.update)(updates, tx.init(params), params)[0]

    expected = scaled()
    with jax.enable_x64(True):
        got = scaled()
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got), strict=True):
        _bits_equal(a, b)


# -- scale_by_param_block_rms with a decoupled weight decay (Keras's parameter scale) ---------


def _decayed_reference(updates, params, rates, min_scale):
    """u * max(rms(p - rate_t p), min_scale) at each step, float64."""
    out = []
    for u, rate in zip(updates, rates):
        step = {}
        for name, p in params.items():
            decayed = np.asarray(p, np.float64) * (1 - rate)
            size = max(np.sqrt(np.mean(decayed**2)), min_scale)
            step[name] = np.asarray(u[name], np.float64) * size
        out.append(step)
    return out


def test_the_decayed_params_rms_follows_the_learning_rate_and_weight_decay_schedules():
    params = {
        "w": jnp.asarray([3.0, -4.0]),
        "m": jnp.asarray([[0.5, 1.0], [-1.5, 2.0]]),
        "tiny": jnp.asarray([1e-3, -2e-3]),  # below min_scale: floored
    }
    rng = _rng(8)
    updates = [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape)), params) for _ in "abc"]
    tx = gradtx.scale_by_param_block_rms(
        1e-2,
        weight_decay=lambda count: 0.2 + 0.1 * count,
        learning_rate=lambda count: 0.5 * 0.8**count,
    )
    got, state = _steps(tx, updates, params, 3)
    rates = [(0.5 * 0.8**t) * (0.2 + 0.1 * t) for t in range(3)]
    _assert_trees_close(got, _decayed_reference(updates, params, rates, 1e-2), 1e-6)
    assert int(state.count) == 3


@pytest.mark.parametrize("learning_rate", [None, 0.5])
def test_the_decay_is_learning_rate_times_weight_decay_the_rate_1_by_default(learning_rate):
    params = {"w": jnp.asarray([3.0, -4.0]), "v": jnp.asarray([[1.0, 2.0]])}
    updates = {"w": jnp.asarray([1.0, 2.0]), "v": jnp.asarray([[-1.0, 0.5]])}
    if learning_rate is None:
        tx, rate = gradtx.scale_by_param_block_rms(weight_decay=0.5), 0.5
    else:
        tx = gradtx.scale_by_param_block_rms(weight_decay=0.5, learning_rate=learning_rate)
        rate = 0.5 * learning_rate
    got = tx.update(updates, tx.init(params), params)[0]
    _assert_trees_close([got], _decayed_reference([updates], params, [rate], 1e-3), 1e-6)


def test_bfloat16_params_are_decayed_in_their_dtype_before_their_rms():
    # p' = bfloat16(p - 0.1 p), as Keras assigns the decayed variable: 0.9, 2.7 and 3.6 round.
    params = {"w": jnp.asarray([1.0, 3.0, -4.0], jnp.bfloat16)}
    tx = gradtx.scale_by_param_block_rms(weight_decay=0.1)
    got = tx.update({"w": jnp.ones(3, jnp.float32)}, tx.init(params), params)[0]["w"]
    p = np.asarray(params["w"], np.float32)
    decayed = np.asarray(p - p * np.float32(0.1), ml_dtypes.bfloat16).astype(np.float64)
    np.testing.assert_allclose(got, np.sqrt(np.mean(decayed**2)), rtol=1e-6)


@pytest.mark.parametrize("arg", ["min_scale", "weight_decay", "learning_rate"])
def test_the_decays_arguments_are_refused_below_0_naming_them(arg):
    kwargs = {"weight_decay": 0.1, arg: -0.5}
    with pytest.raises(ValueError, match=re.escape(f"scale_by_param_block_rms({arg}=-0.5)")):
        gradtx.scale_by_param_block_rms(**kwargs)
