"""Tests that kill the mutants of gradtx/_layerwise.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
References: optax's scale_by_trust_ratio and scale_by_sm3 (values and state dtypes), float64
NumPy versions of the docstrings' rules (Fromage's step, NovoGrad with a decay schedule), and
for the "under x64" tests the bits of the same float32 run without x64: a float32 leaf is
computed in float32 whatever jax_enable_x64 says.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from replay import run_steps

import gradtx

RNG = np.random.default_rng(7)
# Three steps of a 4 x 4 matrix and a 5-vector, entries of order 1.
MATRICES = RNG.normal(size=(3, 4, 4))
VECTORS = RNG.normal(size=(3, 5))
PARAMS = {"m": RNG.normal(size=(4, 4)), "v": RNG.normal(size=5)}


def _grads(dtype=jnp.float32):
    return [
        {"m": jnp.asarray(m, dtype), "v": jnp.asarray(v, dtype)} for m, v in zip(MATRICES, VECTORS)
    ]


def _params(dtype=jnp.float32):
    return jax.tree.map(lambda p: jnp.asarray(p, dtype), PARAMS)


def _dtypes(tree):
    return jax.tree.map(lambda x: jnp.dtype(x.dtype), tree)


def _same_run_with_and_without_x64(make, params=True, states=True):
    """``make()``'s float32 updates (and states) over _grads(): the same bits with x64."""
    runs = []
    for x64 in (False, True):
        with jax.enable_x64(x64):
            steps = run_steps(make(), _grads(), _params() if params else None, jit="bound")
            runs.append(jax.tree.map(np.asarray, (steps.updates, steps.states)))
    (u32, s32), (u64, s64) = runs
    chex.assert_trees_all_equal_dtypes(u64, u32)
    chex.assert_trees_all_equal(u64, u32)
    if states:
        chex.assert_trees_all_equal_dtypes(s64, s32)
        chex.assert_trees_all_equal(s64, s32)


# -- trust ratio -----------------------------------------------------------------------------


def test_an_update_of_norm_exactly_1_is_scaled_by_its_trust_ratio():
    # |u| = 1 is no zero norm: the ratio is |p| / |u| = 5, as in optax.
    params = {"w": jnp.asarray([3.0, 4.0]), "b": jnp.asarray([0.0, 0.0, 2.0])}
    grads = {"w": jnp.asarray([1.0, 0.0]), "b": jnp.asarray([0.0, 1.0, 0.0])}
    tx = gradtx.scale_by_trust_ratio()
    ours = tx.update(grads, tx.init(params), params)[0]
    theirs = optax.scale_by_trust_ratio().update(grads, optax.EmptyState(), params)[0]
    chex.assert_trees_all_equal(ours, theirs)
    np.testing.assert_array_equal(ours["w"], [5.0, 0.0])
    np.testing.assert_array_equal(ours["b"], [0.0, 2.0, 0.0])


def test_under_x64_a_float32_leaf_is_scaled_in_float32_by_its_trust_ratio():
    # Norms exact in any precision (integer entries, perfect squares: 9, 17, 15), ratios 9/17
    # and 9/15 that float32 cannot hold: the float32 ratio times the float32 update, bit for
    # bit as optax (which computes in the leaf's dtype). The float64 ratio times u, rounded
    # once, differs in the last bit of every entry here.
    params = {"a": np.asarray([2.0, 4.0, 5.0, 6.0]), "b": np.asarray([2.0, 2.0, 3.0, 8.0])}
    grads = {"a": np.asarray([3.0, 6.0, 10.0, 12.0]), "b": np.asarray([3.0, 6.0, 6.0, 12.0])}
    params, grads = (
        jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), t) for t in (params, grads)
    )
    with jax.enable_x64(True):
        tx = gradtx.scale_by_trust_ratio()
        ours = run_steps(tx, [grads], params).updates[0]
        theirs = optax.scale_by_trust_ratio().update(grads, optax.EmptyState(), params)[0]
    chex.assert_trees_all_equal_dtypes(ours, grads)
    chex.assert_trees_all_equal(ours, theirs)


def test_bfloat16_updates_stay_bfloat16_through_the_trust_ratio():
    params = {"w": jnp.asarray([3.0, 4.0], jnp.bfloat16)}
    grads = {"w": jnp.asarray([0.5, 0.25], jnp.bfloat16)}
    tx = gradtx.scale_by_trust_ratio()
    updates = tx.update(grads, tx.init(params), params)[0]
    assert updates["w"].dtype == jnp.bfloat16
    ratio = 5.0 / np.hypot(0.5, 0.25)
    np.testing.assert_allclose(
        np.asarray(updates["w"], np.float64), [0.5 * ratio, 0.25 * ratio], rtol=2**-7
    )


# -- Fromage's learning-rate step --------------------------------------------------------------


def _fromage_reference(lr, grads, params):
    s = np.sqrt(1 + lr**2)
    return -(lr / s) * grads - (1 - 1 / s) * params


def test_fromages_step_has_learning_rate_0_01_by_default():
    params, grads = {"w": jnp.asarray([2.0, -1.0, 0.5])}, {"w": jnp.asarray([1.0, 3.0, -2.0])}
    tx = gradtx.scale_by_fromage_learning_rate()
    updates, state = tx.update(grads, tx.init(params), params)
    expected = _fromage_reference(
        0.01, np.asarray(grads["w"], np.float64), np.asarray(params["w"], np.float64)
    )
    np.testing.assert_allclose(updates["w"], expected, rtol=1e-6)
    assert float(state.learning_rate) == pytest.approx(0.01)


def test_under_x64_fromages_step_of_a_float32_leaf_is_computed_in_float32():
    # lr = 3/4 makes s = 5/4 exact, so lr / s and the shrink round to the same float32 numbers
    # with and without x64; the step is then float32 arithmetic on float32 leaves. (The state
    # keeps the rate in the default float, float64 under x64.)
    _same_run_with_and_without_x64(
        lambda: gradtx.scale_by_fromage_learning_rate(0.75), states=False
    )


def test_fromage_keeps_bfloat16_updates_bfloat16():
    params, grads = _params(jnp.bfloat16), _grads(jnp.bfloat16)[0]
    tx = gradtx.scale_by_fromage_learning_rate(0.1)
    updates = tx.update(grads, tx.init(params), params)[0]
    assert set(jax.tree.leaves(_dtypes(updates))) == {jnp.dtype(jnp.bfloat16)}
    expected = jax.tree.map(
        lambda g, p: _fromage_reference(0.1, np.asarray(g, np.float64), np.asarray(p, np.float64)),
        grads,
        params,
    )
    chex.assert_trees_all_close(
        jax.tree.map(lambda u: np.asarray(u, np.float64), updates), expected, rtol=2**-7, atol=1e-3
    )


# -- SM3 -------------------------------------------------------------------------------------


def test_sm3_keeps_bfloat16_statistics_and_updates_as_optax():
    # The accumulators are stored in the params' dtype, as optax stores them.
    params, grads = _params(jnp.bfloat16), _grads(jnp.bfloat16)
    ours = run_steps(gradtx.scale_by_sm3(), grads, init=params)
    theirs = run_steps(optax.scale_by_sm3(), grads, init=params)
    for state in ours.states:
        assert [x.dtype for x in state.mu["m"]] == [jnp.dtype(jnp.bfloat16)] * 2
        assert [x.dtype for x in state.mu["v"]] == [jnp.dtype(jnp.bfloat16)]
        assert jax.tree.leaves(_dtypes(state.mu)) == jax.tree.leaves(_dtypes(theirs.states[0].mu))
    for ours_u, theirs_u in zip(ours.updates, theirs.updates):
        chex.assert_trees_all_equal_dtypes(ours_u, params)
        chex.assert_trees_all_close(
            jax.tree.map(lambda x: np.asarray(x, np.float64), ours_u),
            jax.tree.map(lambda x: np.asarray(x, np.float64), theirs_u),
            rtol=2**-6,
            atol=1e-2,
        )


@pytest.mark.parametrize("size", [300.0, 1e-4])
def test_sm3_keeps_float16_leaves_statistics_in_float32(size):
    # A float16 sum of squares overflows to inf at |g| > 256 (every later update is then 0, as
    # optax's) and loses squares below 1.7e-4 (1e-4 would give 1 / sqrt(1) at every step). In
    # float32 the updates are 1 / sqrt(t) for a constant gradient, as in a float32 run.
    grads = [{"w": jnp.full((2,), size, jnp.float16), "m": jnp.full((2, 3), -size, jnp.float16)}]
    steps = run_steps(gradtx.scale_by_sm3(b1=None, eps=0.0), grads * 3)
    for state in steps.states:
        assert {x.dtype for x in jax.tree.leaves(state.mu)} == {jnp.dtype(jnp.float32)}
    for t, u in enumerate(steps.updates, start=1):
        assert u["w"].dtype == u["m"].dtype == jnp.float16
        np.testing.assert_allclose(np.asarray(u["w"], np.float64), 1 / np.sqrt(t), rtol=1e-3)
        np.testing.assert_allclose(np.asarray(u["m"], np.float64), -1 / np.sqrt(t), rtol=1e-3)


def test_sm3_without_momentum_keeps_no_momentum_in_its_state():
    grads = _grads()
    tx = gradtx.scale_by_sm3(b1=None)
    steps = run_steps(tx, grads)
    init = steps.states[0]
    assert init.nu is None
    for state in steps.states[1:]:
        assert state.nu is None
        assert jax.tree.structure(state) == jax.tree.structure(init)


def test_sm3_gives_0_where_nothing_has_accumulated_even_with_eps_0():
    # A zero gradient, and one whose square underflows float32 (1e-30), give v_t = 0: the
    # step is 0 there (the docstring's "0 where v_t = 0"), never 0 / 0 or g itself; as optax.
    tiny = {"m": jnp.asarray([[0.0, 1e-30], [0.0, 0.0]]), "v": jnp.asarray([1e-30, 0.0, 0.0])}
    grads = [
        tiny,
        {"m": jnp.asarray([[1.0, -2.0], [0.5, 0.0]]), "v": jnp.asarray([1e-30, 3.0, -1.0])},
    ]
    for eps in (0.0, 1e-8):
        ours = run_steps(gradtx.scale_by_sm3(eps=eps), grads)
        theirs = run_steps(optax.scale_by_sm3(eps=eps), grads)
        for step, (u_ours, u_theirs) in enumerate(zip(ours.updates, theirs.updates)):
            chex.assert_tree_all_finite(u_ours)
            for name in u_ours:
                np.testing.assert_allclose(
                    u_ours[name], u_theirs[name], rtol=1e-6, atol=0, err_msg=f"{eps} {step} {name}"
                )
        np.testing.assert_array_equal(ours.updates[0]["m"], np.zeros((2, 2)))
        np.testing.assert_array_equal(ours.updates[0]["v"], np.zeros(3))


def test_under_x64_sm3_on_float32_leaves_runs_in_float32():
    _same_run_with_and_without_x64(lambda: gradtx.scale_by_sm3(), params=False)
    _same_run_with_and_without_x64(
        lambda: gradtx.scale_by_sm3(b1=None, b2=0.75, eps=1e-3), params=False
    )


@pytest.mark.parametrize(("argument", "value"), [("b2", 1.5), ("b2", 2.0), ("eps", -1e-3)])
def test_sm3_refuses_b2_above_1_and_a_negative_eps_naming_them(argument, value):
    interval = r"\[0, 1\]" if argument == "b2" else r"\[0, inf\)"
    with pytest.raises(
        ValueError, match=rf"scale_by_sm3\({argument}={value}\): {argument} must be in {interval}"
    ):
        gradtx.scale_by_sm3(**{argument: value})


# -- NovoGrad --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "value"),
    [("b1", -0.1), ("b1", 1.5), ("b1", 2.0), ("eps", -1e-3), ("eps_root", -1e-3)],
)
def test_novograd_refuses_b1_outside_0_1_and_negative_eps_naming_them(argument, value):
    interval = r"\[0, 1\]" if argument == "b1" else r"\[0, inf\)"
    with pytest.raises(
        ValueError,
        match=rf"scale_by_novograd\({argument}={value}\): {argument} must be in {interval}",
    ):
        gradtx.scale_by_novograd(**{argument: value})


@pytest.mark.parametrize(
    ("params_dtype", "mu_dtype"), [("float32", "bfloat16"), ("bfloat16", "float32")]
)
def test_novograd_stores_mu_in_mu_dtype_and_returns_the_gradients_dtype(params_dtype, mu_dtype):
    params, grads = _params(params_dtype), _grads(params_dtype)
    steps = run_steps(gradtx.scale_by_novograd(mu_dtype=mu_dtype), grads, params)
    for state in steps.states:
        assert set(jax.tree.leaves(_dtypes(state.mu))) == {jnp.dtype(mu_dtype)}
        assert set(jax.tree.leaves(_dtypes(state.nu))) == {jnp.dtype(jnp.float32)}
    for updates in steps.updates:
        chex.assert_trees_all_equal_dtypes(updates, params)


def _novograd_reference(grads, params, wd, b1=0.9, b2=0.25, eps=1e-8):
    """The docstring's rule in float64, per leaf; ``wd(t - 1)`` at step t, as optax's schedules."""
    out, v, m = [], {}, {}
    for t, g in enumerate(grads, 1):
        u = {}
        for k, gk in g.items():
            gk = np.asarray(gk, np.float64)
            norm2 = np.sum(gk**2)
            v[k] = norm2 if t == 1 else b2 * v[k] + (1 - b2) * norm2
            step = gk / (np.sqrt(v[k]) + eps) + wd(t - 1) * np.asarray(params[k], np.float64)
            m[k] = step if t == 1 else b1 * m[k] + step
            u[k] = m[k]
        out.append(u)
    return out


def test_novograds_weight_decay_schedule_is_read_at_the_step_count():
    params, grads = _params(), _grads()
    schedule = gradtx.linear_schedule(0.1, 0.4, 3)  # 0.1, 0.2, 0.3 at counts 0, 1, 2
    steps = run_steps(gradtx.scale_by_novograd(weight_decay=schedule), grads, params)
    expected = _novograd_reference(grads, params, lambda count: float(schedule(count)))
    for ours, theirs in zip(steps.updates, expected):
        chex.assert_trees_all_close(ours, theirs, rtol=2e-6, atol=1e-6)


def test_under_x64_novograd_on_float32_leaves_runs_in_float32():
    # nu stays float32 (the params' compute dtype), and every term is formed in float32.
    _same_run_with_and_without_x64(lambda: gradtx.scale_by_novograd(eps=1e-3, weight_decay=0.1))
