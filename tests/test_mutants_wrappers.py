"""Tests that kill the mutants of gradtx/_wrappers.py the other test files let survive.

Each test names the functions whose mutants it was written for (tests/MUTATION.md); the
verdicts for the rest are in the mutation notes.
"""

from __future__ import annotations

import functools
import re

import chex
from errors import raises_whole
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx


def _quadratic_step():
    """Params, gradient and loss of sum(x**2) at x = [1, 2, 3]: |g|^2 = 56, f = 14."""
    params = {"x": jnp.asarray([1.0, 2.0, 3.0])}
    value, grads = jax.value_and_grad(lambda p: jnp.sum(p["x"] ** 2))(params)
    return params, grads, value


# Polyak's step at x = [1, 2, 3]: min(14 / 56, 1) = 0.25, so u = -0.25 * g.
POLYAK_STEP = [-0.5, -1.0, -1.5]


@pytest.mark.parametrize(
    "wrap, expected",
    [
        (lambda tx: gradtx.apply_if_finite(tx, max_consecutive_errors=2), POLYAK_STEP),
        (lambda tx: gradtx.cautious(tx), [0.75 * u for u in POLYAK_STEP]),  # 3 / (3 + 1)
        (lambda tx: gradtx.lookahead(tx, sync_period=2, slow_step_size=0.5), POLYAK_STEP),
        (lambda tx: gradtx.MultiSteps(tx, 1), POLYAK_STEP),
        (lambda tx: gradtx.partition({"polyak": tx}, {"x": "polyak"}), POLYAK_STEP),
    ],
    ids=["apply_if_finite", "cautious", "lookahead", "multi_steps", "partition"],
)
def test_each_wrapper_passes_the_loss_on_to_a_polyak_step(wrap, expected):
    # ApplyIfFinite/Cautious/Lookahead/MultiSteps/Partition.update: **extra_args (value=)
    # reach the inner transform.
    params, grads, value = _quadratic_step()
    tx = wrap(gradtx.polyak_sgd())
    updates, _ = tx.update(grads, tx.init(params), params, value=value)
    np.testing.assert_allclose(updates["x"], expected, rtol=1e-6)


def test_injected_polyak_sgd_gets_the_loss_and_injected_adamw_the_params_as_optax():
    # InjectHyperparams.update: params and **extra_args are passed to the inner transform.
    params, grads, value = _quadratic_step()
    tx = gradtx.inject_hyperparams(gradtx.polyak_sgd)(max_learning_rate=1.0)
    updates, state = tx.update(grads, tx.init(params), params, value=value)
    np.testing.assert_allclose(updates["x"], POLYAK_STEP, rtol=1e-6)
    assert float(state.hyperparams["max_learning_rate"]) == 1.0

    ours = gradtx.inject_hyperparams(gradtx.adamw)(learning_rate=0.1, weight_decay=0.5)
    theirs = optax.inject_hyperparams(optax.adamw)(learning_rate=0.1, weight_decay=0.5)
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    for _ in range(2):
        u_ours, s_ours = ours.update(grads, s_ours, params)
        u_theirs, s_theirs = theirs.update(grads, s_theirs, params)
        chex.assert_trees_all_close(u_ours, u_theirs, rtol=1e-6)
    assert set(s_ours.hyperparams) == set(s_theirs.hyperparams)


# -- optax transforms inside the wrappers --------------------------------------------------


@pytest.mark.parametrize(
    "wrap, factor",
    [
        (lambda tx: gradtx.apply_if_finite(tx, max_consecutive_errors=2), 1.0),
        (lambda tx: gradtx.cautious(tx), 3 / 4),  # every element descends: n / (n + eps)
        (lambda tx: gradtx.lookahead(tx, sync_period=2, slow_step_size=0.5), 1.0),
        (lambda tx: gradtx.MultiSteps(tx, 1), 1.0),
        (lambda tx: gradtx.partition({"a": tx}, {"x": "a"}), 1.0),
    ],
    ids=["apply_if_finite", "cautious", "lookahead", "multi_steps", "partition"],
)
def test_a_wrapped_optax_transform_is_a_pytree_that_jit_takes_as_an_argument(wrap, factor):
    # ApplyIfFinite/Cautious/Lookahead/MultiSteps/Partition.__post_init__: the optax
    # transform is wrapped (FromOptax: its closures are static), not kept as a tuple of
    # functions that jit cannot take.
    params, grads, _ = _quadratic_step()
    tx = wrap(optax.sgd(0.1))
    step = jax.jit(lambda tx, g, s, p: tx.update(g, s, p))
    updates, _ = step(tx, grads, tx.init(params), params)
    np.testing.assert_allclose(updates["x"], -0.1 * factor * np.asarray(grads["x"]), rtol=1e-6)


# -- lookahead -----------------------------------------------------------------------------


def test_lookahead_around_adamw_matches_optax_over_three_syncs_with_default_reset_state():
    # lookahead: slow_step_size is passed on, reset_state defaults to False;
    # Lookahead.update: the fast optimizer gets the params (adamw decays them).
    sync_period, alpha = 3, 0.25
    ours = gradtx.lookahead(gradtx.adamw(0.1, weight_decay=0.5), sync_period, alpha)
    theirs = optax.lookahead(optax.adamw(0.1, weight_decay=0.5), sync_period, alpha)
    fast = {"x": jnp.asarray([1.0, -2.0, 0.5])}
    pair = optax.LookaheadParams.init_synced(fast)
    s_ours, s_theirs = ours.init(fast), theirs.init(pair)
    step_ours, step_theirs = jax.jit(ours.update), jax.jit(theirs.update)
    grad = jax.grad(lambda p: jnp.sum(jnp.sin(3 * p["x"]) + p["x"] ** 2))
    for _ in range(3 * sync_period):
        u_ours, s_ours = step_ours(grad(fast), s_ours, fast)
        u_theirs, s_theirs = step_theirs(grad(pair.fast), s_theirs, pair)
        fast, pair = gradtx.apply_updates(fast, u_ours), optax.apply_updates(pair, u_theirs)
        chex.assert_trees_all_close(fast, pair.fast, rtol=1e-6, atol=1e-7)
        chex.assert_trees_all_close(s_ours.slow, pair.slow, rtol=1e-6, atol=1e-7)
        for moment in ("mu", "nu"):
            chex.assert_trees_all_close(
                gradtx.tree_get(s_ours.fast_state, moment),
                s_theirs.fast_state[0]._asdict()[moment],
                rtol=1e-6,
                atol=1e-7,
            )


def test_lookahead_keeps_bfloat16_params_updates_and_slow_weights_in_bfloat16():
    # Lookahead.update: the update is cast to the update's dtype and the slow weights to
    # their own, after the float32 arithmetic.
    params = {"x": jnp.asarray([1.0, -2.0], jnp.bfloat16)}
    tx = gradtx.lookahead(gradtx.sgd(0.5), sync_period=2, slow_step_size=0.5)
    step = jax.jit(tx.update)
    state = tx.init(params)
    p = params
    for _ in range(2):
        updates, state = step({"x": jnp.asarray([1.0, 1.0], jnp.bfloat16)}, state, p)
        assert updates["x"].dtype == jnp.bfloat16 and state.slow["x"].dtype == jnp.bfloat16
        p = gradtx.apply_updates(p, updates)
    # fast: x - 0.5 - 0.5; the sync at step 2 moves both to x + 0.5 * (-1).
    np.testing.assert_array_equal(np.asarray(p["x"], np.float32), [0.5, -2.5])
    np.testing.assert_array_equal(np.asarray(state.slow["x"], np.float32), [0.5, -2.5])


def test_a_float32_lookahead_swept_over_step_sizes_gives_the_same_bits_under_x64():
    # Lookahead.update: the slow step size is cast to the leaf's compute dtype, so a sweep
    # (jax.vmap over the step size, as check_range advises) with float64 step sizes under x64
    # rounds a float32 leaf's slow weights exactly as it does without x64.
    rng = np.random.default_rng(0)
    params = {"x": jnp.asarray(rng.normal(size=64), jnp.float32)}
    grads = {"x": jnp.asarray(rng.normal(size=64), jnp.float32)}

    def run(alpha):
        tx = gradtx.lookahead(gradtx.sgd(0.1), sync_period=1, slow_step_size=alpha)
        updates, state = tx.update(grads, tx.init(params), params)
        return updates["x"], state.slow["x"]

    without = jax.vmap(run)(jnp.asarray([0.3, 0.7]))
    with jax.enable_x64(True):
        with_x64 = jax.vmap(run)(jnp.asarray([0.3, 0.7], jnp.float64))
    for a, b in zip(with_x64, without):
        assert a.dtype == jnp.float32
        np.testing.assert_array_equal(a, b)


def test_lookahead_counts_in_int32_when_sync_period_is_a_whole_float():
    # Lookahead.update: sync_period is read as an int32, so a period of 2.0 (it passes the
    # whole-number check) counts the way 2 does and the state keeps its int32 counter.
    params = {"x": jnp.ones(2)}
    tx = gradtx.lookahead(gradtx.sgd(1.0), sync_period=2.0, slow_step_size=0.5)
    state = tx.init(params)
    p = params
    for t in (1, 2, 3):
        updates, state = tx.update({"x": jnp.ones(2)}, state, p)
        p = gradtx.apply_updates(p, updates)
        assert state.steps_since_sync.dtype == jnp.int32 and int(state.steps_since_sync) == t % 2
    np.testing.assert_allclose(p["x"], [-1.0, -1.0])  # 1 -> 0 -> -1, sync to 0 -> -1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sync_period": 0}, "lookahead(sync_period=0): sync_period must be in [1, inf)"),
        ({"sync_period": 2.5}, "lookahead(sync_period=2.5): sync_period must be a whole number"),
        (
            {"slow_step_size": -0.1},
            "lookahead(slow_step_size=-0.1): slow_step_size must be in [0, 1]",
        ),
        (
            {"slow_step_size": 1.5},
            "lookahead(slow_step_size=1.5): slow_step_size must be in [0, 1]",
        ),
    ],
)
def test_lookahead_refuses_a_period_or_step_size_out_of_range(kwargs, message):
    # Lookahead.__post_init__: sync_period a whole number >= 1, slow_step_size in [0, 1].
    arguments = {"sync_period": 2, "slow_step_size": 0.5, **kwargs}
    with raises_whole(ValueError, message):
        gradtx.lookahead(gradtx.sgd(0.1), **arguments)


def test_lookahead_with_period_1_and_the_ends_of_the_step_size_range():
    # Lookahead.__post_init__: sync_period=1 and slow_step_size 0 and 1 are allowed. With a
    # sync every step, step size 1 is the fast optimizer and 0 never moves.
    params, grads = {"x": jnp.ones(2)}, {"x": jnp.ones(2)}
    for alpha, expected in ((1.0, -0.1), (0.0, 0.0)):
        tx = gradtx.lookahead(gradtx.sgd(0.1), sync_period=1, slow_step_size=alpha)
        updates, _ = tx.update(grads, tx.init(params), params)
        np.testing.assert_allclose(updates["x"], expected, rtol=1e-6)


def test_lookahead_says_it_needs_the_params():
    # Lookahead.update: the message tells how to call it.
    tx = gradtx.lookahead(gradtx.sgd(0.1), sync_period=2, slow_step_size=0.5)
    params = {"x": jnp.ones(2)}
    message = "lookahead needs the params: call update(updates, state, params)"
    with raises_whole(ValueError, message):
        tx.update(params, tx.init(params))


# -- multi_steps ---------------------------------------------------------------------------


def skip_large_gradients(updates, gradient_step, params):
    """Skips a micro-step whose squared gradient norm is over 10; aux reads all three inputs."""
    norm = sum(jnp.sum(u**2) for u in jax.tree.leaves(updates))
    aux = {
        "updates": updates,
        "step": jnp.asarray(gradient_step),
        "params": sum(jnp.sum(p) for p in jax.tree.leaves(params)),
    }
    return norm > 10.0, aux


def test_multi_steps_hands_the_skip_function_the_gradient_step_and_params_as_optax():
    # MultiSteps.init/update/_should_skip: should_skip_update_fn is called with zeros, step 0
    # and the params at init, with the updates, the gradient step and the params at each
    # update, and its aux is kept as skip_state.
    params = {"w": jnp.asarray([1.0, 2.0])}
    ours = gradtx.MultiSteps(gradtx.adam(0.1), 2, True, skip_large_gradients)
    theirs = optax.MultiSteps(optax.adam(0.1), 2, True, skip_large_gradients)
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    chex.assert_trees_all_equal(s_ours.skip_state, s_theirs.skip_state)
    step_ours, step_theirs = jax.jit(ours.update), jax.jit(theirs.update)
    for g in (1.0, 2.0, 5.0, 1.0, -1.0, 0.5):
        grads = {"w": jnp.asarray([g, -g])}
        u_ours, s_ours = step_ours(grads, s_ours, params)
        u_theirs, s_theirs = step_theirs(grads, s_theirs, params)
        chex.assert_trees_all_close(u_ours, u_theirs, rtol=1e-6)
        chex.assert_trees_all_equal(s_ours.skip_state, s_theirs.skip_state)
        assert int(s_ours.gradient_step) == int(s_theirs.gradient_step)
        assert int(s_ours.mini_step) == int(s_theirs.mini_step)
    assert int(s_ours.gradient_step) == 2  # the micro-step of 5.0 was skipped


def count_nonzero(updates, gradient_step, params):
    """Not a skip function: its first value is an integer."""
    return sum(jnp.count_nonzero(u) for u in jax.tree.leaves(updates)), ()


def test_multi_steps_says_what_the_skip_function_returned_instead_of_a_boolean():
    # MultiSteps._should_skip: the message names the dtype and shape it got.
    tx = gradtx.MultiSteps(gradtx.sgd(1.0), 2, should_skip_update_fn=count_nonzero)
    message = (
        "multi_steps(should_skip_update_fn=count_nonzero): must return (a boolean scalar, aux); "
        "its first value has dtype int32 and shape ()"
    )
    with raises_whole(ValueError, message):
        tx.update({"x": jnp.ones(())}, tx.init({"x": jnp.ones(())}))


def test_multi_steps_accumulates_in_each_gradients_own_compute_dtype(x64):
    # MultiSteps._accumulator_dtype/init: the default accumulator follows each leaf (float32
    # for float32 leaves also under x64, complex64 for complex64 ones), not a default float.
    params = {"r": jnp.zeros(2, jnp.float32), "c": jnp.zeros(2, jnp.complex64)}
    tx = gradtx.MultiSteps(gradtx.sgd(1.0), 2)
    state = tx.init(params)
    assert state.acc_grads["r"].dtype == jnp.float32
    assert state.acc_grads["c"].dtype == jnp.complex64
    grads = {
        "r": jnp.asarray([1.0, 2.0], jnp.float32),
        "c": jnp.asarray([1j, 1 + 1j], jnp.complex64),
    }
    _, state = tx.update(grads, state, params)
    updates, state = tx.update(grads, state, params)
    np.testing.assert_allclose(updates["c"], [-1j, -1 - 1j])
    np.testing.assert_allclose(updates["r"], [-1.0, -2.0])


def test_multi_steps_keeps_a_bfloat16_accumulator_in_bfloat16_between_micro_steps():
    # MultiSteps.update: the sum is cast back to the accumulator's dtype, so the state keeps
    # its dtypes and a scan can carry it.
    params = {"x": jnp.zeros(2, jnp.bfloat16)}
    tx = gradtx.MultiSteps(gradtx.sgd(1.0), 3, accumulator_dtype=jnp.bfloat16)

    def step(state, g):
        updates, state = tx.update({"x": g}, state, params)
        return state, updates["x"]

    micro = jnp.asarray([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], jnp.bfloat16)
    state, updates = jax.lax.scan(step, tx.init(params), micro)
    assert state.acc_grads["x"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(updates[-1], np.float32), [-3.0, -4.0])


def test_multi_steps_reads_the_accumulator_dtype_when_it_is_built():
    # MultiSteps.__post_init__: a dtype given by name is the dtype itself (equal transforms,
    # one hash), and every_k_schedule must be >= 1.
    by_name = gradtx.MultiSteps(gradtx.sgd(1.0), 2, accumulator_dtype="bfloat16")
    by_type = gradtx.MultiSteps(gradtx.sgd(1.0), 2, accumulator_dtype=jnp.bfloat16)
    assert by_name.accumulator_dtype == jnp.dtype(jnp.bfloat16)
    assert by_name == by_type and hash(by_name) == hash(by_type)
    message = "multi_steps(every_k_schedule=0): every_k_schedule must be in [1, inf)"
    with raises_whole(ValueError, message):
        gradtx.MultiSteps(gradtx.sgd(1.0), 0)


# -- apply_if_finite and check_finite_steps --------------------------------------------------


def test_apply_if_finite_without_a_limit_never_gives_up_and_counts_as_optax():
    # ApplyIfFinite.init/update: no max_consecutive_errors, no giving up; last_finite starts
    # True and follows each step, as optax's; the counters stay int32 (a scan carries them).
    params = {"x": jnp.ones(2)}
    ours = gradtx.apply_if_finite(gradtx.sgd(0.1))
    theirs = optax.apply_if_finite(optax.sgd(0.1), max_consecutive_errors=100)
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    assert bool(s_ours.last_finite) and bool(s_theirs.last_finite)
    for g in (jnp.nan, jnp.inf, 1.0, jnp.nan, jnp.nan, jnp.nan):
        grads = {"x": jnp.full(2, g)}
        u_ours, s_ours = ours.update(grads, s_ours, params)
        u_theirs, s_theirs = theirs.update(grads, s_theirs, params)
        chex.assert_trees_all_close(u_ours, u_theirs)
        assert bool(s_ours.last_finite) == bool(s_theirs.last_finite)
        assert int(s_ours.notfinite_count) == int(s_theirs.notfinite_count)
        assert int(s_ours.total_notfinite) == int(s_theirs.total_notfinite)
        assert not bool(s_ours.gave_up)
    gradtx.check_finite_steps(s_ours)

    def step(state, g):
        return ours.update({"x": g}, state, params)[1], None

    init = ours.init(params)
    scanned, _ = jax.lax.scan(step, init, jnp.asarray([[jnp.nan] * 2, [1.0] * 2]))
    chex.assert_trees_all_equal_dtypes(scanned, init)


def test_apply_if_finite_may_give_up_after_one_step_but_not_after_zero():
    # ApplyIfFinite.__post_init__: max_consecutive_errors is an integer >= 1.
    params = {"x": jnp.ones(2)}
    tx = gradtx.apply_if_finite(gradtx.sgd(0.1), max_consecutive_errors=1)
    _, state = tx.update({"x": jnp.full(2, jnp.nan)}, tx.init(params), params)
    assert bool(state.gave_up) and int(state.gave_up_after) == 1
    assert state.gave_up_after.dtype == jnp.int32
    message = (
        "apply_if_finite(max_consecutive_errors=0): max_consecutive_errors must be in [1, inf)"
    )
    with raises_whole(ValueError, message):
        gradtx.apply_if_finite(gradtx.sgd(0.1), max_consecutive_errors=0)


def test_a_guarded_group_without_leaves_never_counts_a_non_finite_step():
    # _all_finite: a tree with no leaves is finite (a partition group no param is labelled with).
    params = {"x": jnp.ones(2)}
    tx = gradtx.partition(
        {
            "used": gradtx.apply_if_finite(gradtx.sgd(0.1), max_consecutive_errors=1),
            "unused": gradtx.apply_if_finite(gradtx.sgd(0.1), max_consecutive_errors=1),
        },
        {"x": "used"},
    )
    updates, state = tx.update({"x": jnp.ones(2)}, tx.init(params), params)
    np.testing.assert_allclose(updates["x"], [-0.1, -0.1])
    counts = gradtx.tree_get_all_with_path(state, "total_notfinite")
    assert [int(c) for _, c in counts] == [0, 0]
    gradtx.check_finite_steps(state)


def test_check_finite_steps_names_a_nested_apply_if_finite_and_its_counts():
    # check_finite_steps and _sibling: the owner's path (tuple index, field, dict key) and the
    # counters read next to the gave_up found deep in a state; the whole message.
    inner = gradtx.apply_if_finite(gradtx.sgd(0.1), max_consecutive_errors=2)
    tx = gradtx.chain(
        gradtx.partition(
            {"a": gradtx.lookahead(inner, 2, 0.5), "b": gradtx.sgd(0.1)}, {"w": "a", "v": "b"}
        )
    )
    params = {"w": jnp.ones(2), "v": jnp.ones(2)}
    state = tx.init(params)
    bad = {"w": jnp.asarray([jnp.nan, 1.0]), "v": jnp.ones(2)}
    for grads in (bad, bad, bad, params):
        _, state = tx.update(grads, state, params)
    message = (
        "apply_if_finite at 0/inner_states/a/inner_state/fast_state gave up after 2 "
        "consecutive steps had NaN or Inf gradients or updates (3 such steps in all, 0 in a "
        "row now); training stopped instead of continuing on garbage. Re-initialise the "
        "optimizer state to go on."
    )
    with raises_whole(FloatingPointError, message):
        gradtx.check_finite_steps(state)


# -- zero_nans -------------------------------------------------------------------------------


def test_zero_nans_starts_with_no_nan_found_as_optax():
    # ZeroNans.init: one False per leaf, the structure update returns.
    params = {"a": jnp.ones(2), "b": {"c": jnp.ones(3)}}
    tx = gradtx.zero_nans()
    state = tx.init(params)
    chex.assert_trees_all_equal(state.found_nan, optax.zero_nans().init(params).found_nan)
    _, updated = tx.update(params, state)
    assert jax.tree.structure(updated) == jax.tree.structure(state)


# -- cautious ---------------------------------------------------------------------------------


def test_a_float32_cautious_step_swept_over_eps_gives_the_same_bits_under_x64():
    # Cautious.update: eps is cast to the leaf's real dtype, so a sweep (jax.vmap over eps)
    # with float64 values under x64 rounds a float32 step exactly as it does without x64.
    rng = np.random.default_rng(0)
    params = {"x": jnp.zeros(64, jnp.float32)}
    grads = {"x": jnp.asarray(rng.normal(size=64), jnp.float32)}

    def run(eps):
        tx = gradtx.cautious(gradtx.sgd(0.1, momentum=0.9), eps=eps)
        _, state = tx.update(grads, tx.init(params), params)
        return tx.update(jax.tree.map(lambda g: -g[::-1], grads), state, params)[0]["x"]

    without = jax.vmap(run)(jnp.asarray([0.3, 0.7]))
    with jax.enable_x64(True):
        with_x64 = jax.vmap(run)(jnp.asarray([0.3, 0.7], jnp.float64))
    assert with_x64.dtype == jnp.float32
    np.testing.assert_array_equal(with_x64, without)


# -- inject_hyperparams ----------------------------------------------------------------------


def test_inject_hyperparams_takes_positional_arguments_and_passes_flags_on_as_optax():
    # inject_hyperparams (positional arguments bound, booleans kept as fixed arguments) and
    # InjectHyperparams._inner (the fixed arguments reach the factory).
    params, grads, _ = _quadratic_step()
    ours = gradtx.inject_hyperparams(gradtx.sgd)(0.1, 0.9, True)
    theirs = optax.inject_hyperparams(optax.sgd)(0.1, 0.9, True)
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    for _ in range(3):
        u_ours, s_ours = ours.update(grads, s_ours, params)
        u_theirs, s_theirs = theirs.update(grads, s_theirs, params)
        chex.assert_trees_all_close(u_ours, u_theirs, rtol=1e-6)
    assert set(s_ours.hyperparams) == {"learning_rate", "momentum"}
    # Nesterov momentum after 3 equal gradients: -0.1 * (0.9 * 2.71 + 1) * g, not 2.71 * g.
    np.testing.assert_allclose(u_ours["x"], -0.1 * 3.439 * np.asarray(grads["x"]), rtol=1e-6)


def test_a_schedule_function_makes_an_injected_transform_jit_can_take_as_an_argument():
    # inject_hyperparams: a plain function is wrapped as a gradtx schedule (a pytree without
    # function leaves), evaluated at each count.
    tx = gradtx.inject_hyperparams(gradtx.sgd)(learning_rate=lambda count: 0.1 * (count + 1))
    params = {"x": jnp.ones(2)}
    step = jax.jit(lambda tx, g, s, p: tx.update(g, s, p))
    state = tx.init(params)
    for t in range(3):
        updates, state = step(tx, params, state, params)
        np.testing.assert_allclose(updates["x"], -0.1 * (t + 1), rtol=1e-6)
        np.testing.assert_allclose(state.hyperparams["learning_rate"], 0.1 * (t + 1), rtol=1e-6)


def test_inject_hyperparams_refuses_a_dtype_that_is_not_floating_point():
    # inject_hyperparams: hyperparam_dtype is checked, and the message says so.
    message = (
        "inject_hyperparams(hyperparam_dtype=int32): "
        "hyperparam_dtype must be a floating-point dtype"
    )
    with raises_whole(ValueError, message):
        gradtx.inject_hyperparams(gradtx.sgd, hyperparam_dtype=jnp.int32)


def test_inject_hyperparams_lists_the_unknown_static_args_and_the_factorys_arguments():
    # inject_hyperparams: the message names the factory (a partial has no __name__) and lists
    # both sets of names.
    message = (
        "inject_hyperparams(static_args=('lr', 'decay')): sgd has no argument decay, lr; "
        "its arguments are learning_rate, momentum, nesterov, accumulator_dtype"
    )
    with raises_whole(ValueError, message):
        gradtx.inject_hyperparams(gradtx.sgd, static_args=("lr", "decay"))
    partial = functools.partial(gradtx.scale)
    with pytest.raises(ValueError, match=re.escape(f"{partial!r} has no argument lr")):
        gradtx.inject_hyperparams(partial, static_args="lr")


def test_inject_hyperparams_accepts_any_static_args_for_a_factory_taking_keywords():
    # inject_hyperparams: a factory with **kwargs may take any name, so none is refused.
    def sgd_ignoring_options(learning_rate, **options):
        del options
        return gradtx.sgd(learning_rate)

    tx = gradtx.inject_hyperparams(sgd_ignoring_options, static_args="clip")(learning_rate=0.5)
    params = {"x": jnp.ones(2)}
    updates, state = tx.update(params, tx.init(params), params)
    np.testing.assert_allclose(updates["x"], [-0.5, -0.5])
    assert set(state.hyperparams) == {"learning_rate"}


# -- partition on FlatParams; inject_hyperparams names a factory with no __name__ ---------


class _NamelessFactory:
    """A factory with no __name__ (a callable object), whose first argument is positional-only."""

    def __call__(self, learning_rate, /, momentum=0.0):
        return gradtx.sgd(learning_rate, momentum=momentum)

    def __repr__(self):
        return "NamelessFactory()"


def test_inject_hyperparams_names_a_factory_with_no_name_by_its_repr():
    message = (
        "inject_hyperparams(NamelessFactory()): the factory is called with keywords, so its "
        "positional-only argument learning_rate cannot be given"
    )
    with raises_whole(TypeError, message):
        gradtx.inject_hyperparams(_NamelessFactory())(0.1)


def test_a_partition_runs_on_the_buffers_where_its_labels_fit_them_and_on_the_leaves_where_not():
    tree = {"w": jnp.array([3.0, 4.0]), "b": jnp.array([1.0])}
    flat = gradtx.FlatParams.from_tree(tree)
    # One label for the one buffer: adam's moments are FlatParams, as on the buffers.
    whole = gradtx.partition({"a": gradtx.adam(0.1)}, {"w": "a", "b": "a"})
    mu = whole.init(flat).inner_states["a"].inner_state[0].mu
    assert isinstance(mu, gradtx.FlatParams)
    # Two labels cut the buffer in two: each group runs on its leaves, and the numbers are
    # the tree's.
    cut = gradtx.partition({"a": gradtx.adam(0.1), "b": gradtx.scale(2.0)}, {"w": "a", "b": "b"})
    updates, _ = cut.update(flat, cut.init(flat), flat)
    expected, _ = cut.update(tree, cut.init(tree), tree)
    for key in tree:
        np.testing.assert_allclose(updates.to_tree()[key], expected[key], rtol=1e-6)
