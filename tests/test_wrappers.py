"""What each training-loop wrapper promises, checked against direct computations."""

from __future__ import annotations

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from problems import make_params, wavy_loss
import pytest

import gradtx


def _grads(params):
    return jax.grad(wavy_loss)(params)


def _sizes(tree) -> int:
    return sum(np.size(x) for x in jax.tree.leaves(tree))


# -- partition, masks, freezing -------------------------------------------------------


def test_partition_applies_each_groups_transform_and_keeps_state_only_for_it():
    params = make_params()
    labels = {"w": "adam", "b": "sgd", "head": {"s": "frozen"}}
    tx = gradtx.partition(
        {"adam": gradtx.adam(0.1), "sgd": gradtx.sgd(0.05), "frozen": gradtx.set_to_zero()},
        labels,
    )
    state = tx.init(params)
    grads = _grads(params)
    updates, state = tx.update(grads, state, params)
    adam, sgd = gradtx.adam(0.1), gradtx.sgd(0.05)
    chex.assert_trees_all_close(
        updates["w"], adam.update({"w": grads["w"]}, adam.init({"w": params["w"]}))[0]["w"]
    )
    chex.assert_trees_all_close(updates["b"], sgd.update({"b": grads["b"]}, sgd.init({}))[0]["b"])
    assert float(updates["head"]["s"]) == 0.0
    # Adam's moments exist for "w" only: two moments of 12 numbers, plus counters.
    adam_state = state.inner_states["adam"]
    assert _sizes(gradtx.tree_get(adam_state, "mu")) == 12
    assert _sizes(state.inner_states["frozen"]) == 0


def test_partition_names_labels_without_a_transform():
    tx = gradtx.partition({"a": gradtx.sgd(0.1)}, {"w": "a", "b": "typo"})
    with pytest.raises(ValueError, match=r"partition: labels \['typo'\] have no transform"):
        tx.init({"w": jnp.ones(2), "b": jnp.ones(2)})


def test_partition_labels_may_be_a_function_of_the_params():
    params = make_params()
    tx = gradtx.partition(
        {"decay": gradtx.sgd(0.1), "none": gradtx.set_to_zero()},
        lambda p: jax.tree.map(lambda x: "decay" if x.ndim >= 2 else "none", p),
    )
    updates, _ = tx.update(_grads(params), tx.init(params), params)
    assert float(jnp.abs(updates["w"]).sum()) > 0 and float(jnp.abs(updates["b"]).sum()) == 0


def test_ready_made_masks():
    params = {
        "dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)},
        "LayerNorm_0": {"scale": jnp.ones(3)},
        "Embed_0": {"embedding": jnp.ones((5, 3))},
    }
    assert gradtx.masks.ndim_at_least(2)(params) == {
        "dense": {"kernel": True, "bias": False},
        "LayerNorm_0": {"scale": False},
        "Embed_0": {"embedding": True},
    }
    assert gradtx.masks.weight_decay()(params) == {
        "dense": {"kernel": True, "bias": False},
        "LayerNorm_0": {"scale": False},
        "Embed_0": {"embedding": False},
    }
    assert gradtx.masks.excluding("dense")(params)["dense"] == {"kernel": False, "bias": False}
    # Hashable and equal by value: no retrace when rebuilt.
    assert hash(gradtx.masks.weight_decay()) == hash(gradtx.masks.weight_decay())


def test_masked_weight_decay_skips_biases():
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}
    zeros = jax.tree.map(jnp.zeros_like, params)
    tx = gradtx.adamw(0.1, weight_decay=0.5, mask=gradtx.masks.weight_decay())
    updates, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_allclose(updates["kernel"], -0.05)
    np.testing.assert_allclose(updates["bias"], 0.0)


def test_freeze_and_set_to_zero_give_zero_updates():
    params = make_params()
    tx = gradtx.chain(gradtx.sgd(0.1), gradtx.freeze({"w": True, "b": False, "head": True}))
    updates, _ = tx.update(_grads(params), tx.init(params), params)
    assert not jnp.any(updates["w"]) and not jnp.any(updates["head"]["s"])
    assert jnp.all(updates["b"] != 0)


# -- accumulation -----------------------------------------------------------------------


@pytest.mark.parametrize("use_grad_mean", [True, False])
def test_multi_steps_applies_the_inner_optimizer_to_the_accumulated_gradient(use_grad_mean):
    params = make_params()
    rng = np.random.default_rng(0)
    micro = [
        jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), params)
        for _ in range(6)
    ]
    inner = gradtx.adam(0.1)
    tx = gradtx.MultiSteps(inner, every_k_schedule=3, use_grad_mean=use_grad_mean)
    state, inner_state = tx.init(params), inner.init(params)
    for i, g in enumerate(micro):
        updates, state = tx.update(g, state, params)
        if i % 3 < 2:
            assert not any(jnp.any(u) for u in jax.tree.leaves(updates))
            assert not bool(gradtx.MultiSteps.has_updated(state))
        else:
            total = jax.tree.map(lambda *gs: sum(gs), *micro[i - 2 : i + 1])
            if use_grad_mean:
                total = jax.tree.map(lambda x: x / 3, total)
            expected, inner_state = inner.update(total, inner_state, params)
            chex.assert_trees_all_close(updates, expected, rtol=1e-6)
            assert bool(gradtx.MultiSteps.has_updated(state))
    # One accumulator: the state holds params-sized memory once beyond the inner state.
    assert _sizes(state.acc_grads) == _sizes(params)


def test_multi_steps_accepts_a_schedule_for_k():
    params = {"x": jnp.zeros(())}
    k = gradtx.piecewise_constant_schedule(1, {2: 3})  # k = 1 for two updates, then 3
    tx = gradtx.MultiSteps(gradtx.sgd(1.0), k)
    state = tx.init(params)
    applied = []
    for _ in range(8):
        updates, state = tx.update({"x": jnp.ones(())}, state, params)
        applied.append(bool(updates["x"] != 0))
    assert applied == [True, True, False, False, True, False, False, True]


@jax.jit
def _mean_of_micro_steps(tx, micro, params):
    """The update ``tx`` emits after the micro-batches ``micro`` (stacked on axis 0)."""

    def step(state, g):
        updates, state = tx.update(g, state, params)
        return state, updates

    _, updates = jax.lax.scan(step, tx.init(params), micro)
    return jax.tree.map(lambda u: u[-1], updates)


def test_multi_steps_accumulates_bfloat16_gradients_in_float32():
    params = {"x": jnp.zeros(64, jnp.bfloat16)}
    ones = {"x": jnp.ones((512, 64), jnp.bfloat16)}
    tx = gradtx.MultiSteps(gradtx.sgd(1.0), 512)  # emits minus the mean
    assert tx.init(params).acc_grads["x"].dtype == jnp.float32
    # In bfloat16, 256 + 1 rounds back to 256: the sum stalls and the mean came out 0.5.
    np.testing.assert_array_equal(_mean_of_micro_steps(tx, ones, params)["x"], -1.0)
    rng = np.random.default_rng(0)
    micro = {"x": jnp.asarray(rng.normal(size=(512, 64)), jnp.bfloat16)}
    exact = np.asarray(micro["x"], np.float64).mean(axis=0)
    got = -np.asarray(_mean_of_micro_steps(tx, micro, params)["x"], np.float64)
    # Only the final rounding to bfloat16 (half a unit in the last place, 2**-9 relative).
    np.testing.assert_allclose(got, exact, rtol=2**-8, atol=1e-6)


def test_multi_steps_accumulator_dtype():
    params = {"x": jnp.zeros(2, jnp.bfloat16)}
    tx = gradtx.MultiSteps(gradtx.sgd(1.0), 512, accumulator_dtype=jnp.bfloat16)
    assert tx.init(params).acc_grads["x"].dtype == jnp.bfloat16  # the user's choice, kept
    with jax.enable_x64(True):
        wide = {"x": jnp.zeros(2, jnp.float64)}
        assert gradtx.MultiSteps(gradtx.sgd(1.0), 2).init(wide).acc_grads["x"].dtype == "float64"


def _micro_batches(n, nan_at=()):
    rng = np.random.default_rng(1)
    batches = [
        {"w": jnp.asarray(rng.normal(size=(2, 3)), jnp.float32), "b": jnp.asarray(rng.normal())}
        for _ in range(n)
    ]
    for i in nan_at:
        batches[i] = jax.tree.map(lambda g: g.at[...].set(jnp.nan), batches[i])
    return batches


@pytest.mark.parametrize(
    "skip_fn", [None, optax.skip_not_finite], ids=["no_skip", "skip_not_finite"]
)
def test_multi_steps_matches_optax(skip_fn):
    params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(())}
    nan_at = (1, 4, 8) if skip_fn else ()  # 4 and 8 follow an update
    ours = gradtx.MultiSteps(gradtx.adam(0.1), 3, True, skip_fn)
    theirs = optax.MultiSteps(optax.adam(0.1), 3, True, skip_fn)
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    assert not bool(ours.has_updated(s_ours)) and not bool(theirs.has_updated(s_theirs))
    step_ours, step_theirs = jax.jit(ours.update), jax.jit(theirs.update)
    emitted = []
    for i, g in enumerate(_micro_batches(11, nan_at)):
        u_ours, s_ours = step_ours(g, s_ours, params)
        u_theirs, s_theirs = step_theirs(g, s_theirs, params)
        chex.assert_trees_all_close(u_ours, u_theirs, rtol=1e-5, atol=1e-7)
        assert int(s_ours.mini_step) == int(s_theirs.mini_step)
        assert int(s_ours.gradient_step) == int(s_theirs.gradient_step)
        chex.assert_trees_all_equal(s_ours.skip_state, s_theirs.skip_state)
        emitted.append(bool(ours.has_updated(s_ours)))
        assert emitted[-1] == any(bool(jnp.any(u != 0)) for u in jax.tree.leaves(u_ours))
        if i not in nan_at:  # after a skipped call optax repeats the call before
            assert emitted[-1] == bool(theirs.has_updated(s_theirs))
    skipped = len(nan_at)
    assert sum(emitted) == (11 - skipped) // 3


def test_multi_steps_has_updated_only_after_an_emitting_call():
    params = {"x": jnp.zeros(())}
    tx = gradtx.MultiSteps(gradtx.sgd(1.0), 2, should_skip_update_fn=optax.skip_not_finite)
    state = tx.init(params)
    assert not bool(tx.has_updated(state))
    history = []
    for g in (1.0, 1.0, jnp.nan, 1.0, 1.0):
        _, state = tx.update({"x": jnp.asarray(g)}, state, params)
        history.append(bool(tx.has_updated(state)))
    # The NaN micro-step after an update is skipped: it applied nothing (optax says True).
    assert history == [False, True, False, False, True]


def test_multi_steps_rejects_a_skip_function_returning_no_boolean_scalar():
    def norm(updates, gradient_step, params):
        return sum(jnp.sum(u**2) for u in jax.tree.leaves(updates)), ()

    tx = gradtx.MultiSteps(gradtx.sgd(1.0), 2, should_skip_update_fn=norm)
    with pytest.raises(ValueError, match=r"multi_steps\(should_skip_update_fn=.*boolean scalar"):
        tx.update({"x": jnp.ones(())}, tx.init({"x": jnp.ones(())}))


# -- non-finite steps -------------------------------------------------------------------


def test_apply_if_finite_leaves_everything_unchanged_on_a_nan_step():
    params = make_params()
    tx = gradtx.apply_if_finite(gradtx.adam(0.1), max_consecutive_errors=2)
    step = jax.jit(tx.update)
    state = tx.init(params)
    _, state = step(_grads(params), state, params)
    bad = jax.tree.map(lambda g: g.at[...].set(jnp.nan) if g.ndim == 0 else g, _grads(params))
    updates, new_state = step(bad, state, params)
    assert all(not jnp.any(u) for u in jax.tree.leaves(updates))
    chex.assert_trees_all_equal(new_state.inner_state, state.inner_state)
    assert int(new_state.notfinite_count) == 1 and int(new_state.total_notfinite) == 1
    gradtx.check_finite_steps(new_state)  # one skip: still within the limit
    _, newer = step(bad, new_state, params)
    with pytest.raises(FloatingPointError, match="2 consecutive steps had NaN or Inf"):
        gradtx.check_finite_steps(newer)
    # A finite step resets the streak but not the total.
    _, recovered = step(_grads(params), newer, params)
    assert int(recovered.notfinite_count) == 0 and int(recovered.total_notfinite) == 2


def test_a_schedule_returning_nan_is_skipped_not_applied():
    params = {"x": jnp.ones(3)}

    # A user's function (gradtx's own schedules are refused when NaN at an early step).
    def nan_from_2(count):
        return jnp.where(count < 2, 0.1, jnp.nan)

    tx = gradtx.apply_if_finite(gradtx.sgd(nan_from_2), max_consecutive_errors=3)
    state = tx.init(params)
    for step in range(5):
        updates, state = tx.update(params, state, params)
        assert bool(jnp.all(jnp.isfinite(updates["x"])))
        assert bool(jnp.any(updates["x"] != 0)) == (step < 2)
    # A skipped step does not advance the inner count, so the schedule stays at its
    # NaN: the wrapper gives up rather than train on it.
    with pytest.raises(FloatingPointError, match="3 consecutive steps"):
        gradtx.check_finite_steps(state)


def test_giving_up_is_sticky_and_the_message_tells_what_happened():
    params = {"x": jnp.ones(2)}
    tx = gradtx.apply_if_finite(gradtx.sgd(0.1), max_consecutive_errors=2)
    step = jax.jit(tx.update)
    state = tx.init(params)
    good, bad = {"x": jnp.ones(2)}, {"x": jnp.asarray([1.0, jnp.inf])}
    for g in (good, bad, bad, bad):
        _, state = step(g, state, params)
    assert int(state.gave_up_after) == 2 and int(state.notfinite_count) == 3
    updates, state = step(good, state, params)  # recovered: finite steps apply again
    np.testing.assert_allclose(updates["x"], -0.1)
    assert bool(state.gave_up)
    with pytest.raises(
        FloatingPointError,
        match=r"apply_if_finite at state gave up after 2 consecutive steps had NaN or Inf "
        r"gradients or updates \(3 such steps in all, 0 in a row now\)",
    ):
        gradtx.check_finite_steps(state)


def test_zero_nans():
    tx = gradtx.zero_nans()
    params = {"a": jnp.ones(2), "b": jnp.ones(2)}
    updates, state = tx.update(
        {"a": jnp.asarray([1.0, jnp.nan]), "b": jnp.ones(2)}, tx.init(params)
    )
    np.testing.assert_array_equal(updates["a"], [1.0, 0.0])
    assert bool(state.found_nan["a"]) and not bool(state.found_nan["b"])


# -- lookahead and averages --------------------------------------------------------------


def test_lookahead_matches_the_papers_update():
    # Zhang et al. Algorithm 1 on f(x) = |x|^2 with SGD as the inner optimizer.
    params = {"x": jnp.asarray([1.0, -2.0])}
    tx = gradtx.lookahead(gradtx.sgd(0.1), sync_period=2, slow_step_size=0.5)
    state = tx.init(params)
    x = params
    expected = np.asarray([1.0, -2.0])
    slow = expected.copy()
    for t in range(1, 7):
        updates, state = tx.update({"x": 2 * x["x"]}, state, x)
        x = gradtx.apply_updates(x, updates)
        expected = expected * 0.8
        if t % 2 == 0:
            slow = slow + 0.5 * (expected - slow)
            expected = slow.copy()
        np.testing.assert_allclose(x["x"], expected, rtol=1e-6)


def test_lookahead_keeps_no_counter_that_grows_without_bound():
    # A step counter saturates at 2**31 - 1, and count % sync_period then never syncs again.
    params = {"x": jnp.ones(2)}
    tx = gradtx.lookahead(gradtx.sgd(0.1), sync_period=2, slow_step_size=0.5)
    state = tx.init(params)
    for _ in range(5):
        _, state = tx.update(params, state, params)
        own = state._replace(slow=None, fast_state=None)
        assert all(int(c) < 2 for c in jax.tree.leaves(own))


@pytest.mark.parametrize("reset_state", [False, True])
def test_lookahead_with_a_stateful_fast_optimizer_matches_optax(reset_state):
    sync_period = 3
    ours = gradtx.lookahead(gradtx.adam(0.1), sync_period, 0.5, reset_state)
    theirs = optax.lookahead(optax.adam(0.1), sync_period, 0.5, reset_state)
    fast = {"x": jnp.asarray([1.0, -2.0, 0.5])}
    pair = optax.LookaheadParams.init_synced(fast)
    s_ours, s_theirs = ours.init(fast), theirs.init(pair)
    step_ours, step_theirs = jax.jit(ours.update), jax.jit(theirs.update)
    grad = jax.grad(lambda p: jnp.sum(jnp.sin(3 * p["x"]) + p["x"] ** 2))
    for t in range(1, 9):
        u_ours, s_ours = step_ours(grad(fast), s_ours, fast)
        u_theirs, s_theirs = step_theirs(grad(pair.fast), s_theirs, pair)
        fast, pair = gradtx.apply_updates(fast, u_ours), optax.apply_updates(pair, u_theirs)
        chex.assert_trees_all_close(fast, pair.fast, rtol=1e-5, atol=1e-6)
        chex.assert_trees_all_close(s_ours.slow, pair.slow, rtol=1e-5, atol=1e-6)
        mu = gradtx.tree_get(s_ours.fast_state, "mu")["x"]
        chex.assert_trees_all_close(mu, s_theirs.fast_state[0].mu["x"], rtol=1e-5, atol=1e-7)
        chex.assert_trees_all_close(
            gradtx.tree_get(s_ours.fast_state, "nu")["x"],
            s_theirs.fast_state[0].nu["x"],
            rtol=1e-5,
            atol=1e-7,
        )
        # Reset exactly on the sync steps, and only when asked.
        reset = reset_state and t % sync_period == 0
        assert bool(jnp.all(mu == 0)) == reset


def test_polyak_and_ema_averages_of_the_parameters():
    params = {"x": jnp.zeros(())}
    steps = [1.0, 2.0, 3.0, 4.0]
    for tx, expected in (
        (gradtx.chain(gradtx.sgd(1.0), gradtx.polyak_average(start=1)), [1.0, 1.5, 2.0, 2.5]),
        (gradtx.chain(gradtx.sgd(1.0), gradtx.ema_params(0.5)), [0.5, 1.25, 2.125, 3.0625]),
    ):
        state, p, got = tx.init(params), params, []
        for s in steps:
            updates, state = tx.update({"x": jnp.asarray(-1.0)}, state, p)
            p = gradtx.apply_updates(p, updates)
            assert float(p["x"]) == s
            got.append(float(gradtx.tree_get(state, "average")["x"]))
        np.testing.assert_allclose(got, expected)


# -- hyperparameters during training ---------------------------------------------------------


def test_inject_hyperparams_matches_optax_and_reads_changes_from_the_state():
    params = make_params()
    grads = _grads(params)
    ours = gradtx.inject_hyperparams(gradtx.adam)(learning_rate=0.1)
    theirs = optax.inject_hyperparams(optax.adam)(learning_rate=0.1)
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    for lr in (0.1, 0.01, 0.3):
        s_ours.hyperparams["learning_rate"] = lr
        s_theirs.hyperparams["learning_rate"] = lr
        u_ours, s_ours = ours.update(grads, s_ours, params)
        u_theirs, s_theirs = theirs.update(grads, s_theirs, params)
        chex.assert_trees_all_close(u_ours, u_theirs, rtol=1e-6)


def test_changing_the_learning_rate_between_steps_never_retraces():
    params = make_params()
    traces = []

    @jax.jit
    def step(tx, params, state):
        traces.append(None)
        updates, state = tx.update(_grads(params), state, params)
        return gradtx.apply_updates(params, updates), state

    tx = gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adamw(1e-3, weight_decay=1e-4))
    state = tx.init(params)
    logged = []
    for lr in (1e-3, 5e-4, 2e-4, 1e-4):
        tx = gradtx.tree_set(tx, learning_rate=lr)
        params, state = step(tx, params, state)
        logged.append(float(gradtx.tree_get(state, "learning_rate")))
        assert gradtx.tree_get(tx, "weight_decay") == 1e-4
    assert len(traces) == 1
    np.testing.assert_allclose(logged, [1e-3, 5e-4, 2e-4, 1e-4], rtol=1e-6)


def test_every_schedule_value_is_readable_from_the_state():
    schedule = gradtx.warmup_cosine_decay_schedule(0.0, 1.0, 5, 20)
    tx = gradtx.sgd(schedule, momentum=0.9)
    params = {"x": jnp.ones(())}
    state = tx.init(params)
    for t in range(8):
        _, state = tx.update(params, state, params)
        assert float(gradtx.tree_get(state, "learning_rate")) == pytest.approx(
            float(schedule(t)), rel=1e-6
        )


@pytest.mark.parametrize("key", [0, jax.random.key(0)], ids=["int_seed", "prng_key"])
def test_inject_hyperparams_passes_integer_seeds_and_keys_unchanged(key):
    params = {"x": jnp.ones(3)}
    tx = gradtx.inject_hyperparams(gradtx.noisy_sgd)(learning_rate=1e-3, eta=1e-4, key=key)
    state = tx.init(params)
    assert state.hyperparams["key"].dtype == jnp.asarray(key).dtype  # not cast to float32
    plain = gradtx.noisy_sgd(1e-3, eta=1e-4, key=key)
    updates, _ = jax.jit(tx.update)(params, state, params)
    chex.assert_trees_all_close(updates, plain.update(params, plain.init(params), params)[0])


def test_inject_hyperparams_keeps_floats_in_hyperparam_dtype():
    params = {"x": jnp.ones(3)}
    tx = gradtx.inject_hyperparams(gradtx.adam, hyperparam_dtype=jnp.bfloat16)(
        learning_rate=gradtx.linear_schedule(0.1, 0.0, 10), b1=0.9, b2=0.95
    )  # b2=0.999 would round to 1.0 in bfloat16
    state = tx.init(params)
    step = jax.jit(tx.update)
    names = ("learning_rate", "b1", "b2", "eps", "eps_root")
    assert {k: v.dtype for k, v in state.hyperparams.items()} == dict.fromkeys(names, jnp.bfloat16)
    for _ in range(3):
        _, state = step(params, state, params)
        assert {k: v.dtype for k, v in state.hyperparams.items()} == dict.fromkeys(
            names, jnp.bfloat16
        )
        state.hyperparams["b1"] = 0.8  # a Python float, set by a training loop
    # The value applied at the last step, as in optax: the schedule at count 2.
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.08, rel=1e-2)
    # Without hyperparam_dtype: float32 whatever the params (optax: the params' dtype).
    default = gradtx.inject_hyperparams(gradtx.adam)(learning_rate=0.1)
    state = default.init({"x": jnp.ones(3, jnp.bfloat16)})
    assert {v.dtype for v in state.hyperparams.values()} == {jnp.dtype("float32")}


def test_inject_hyperparams_follows_optaxs_rules_for_what_is_a_hyperparameter():
    tx = gradtx.inject_hyperparams(gradtx.sgd, static_args="momentum")(
        learning_rate=0.1, momentum=0.9, nesterov=True
    )
    state = tx.init({"x": jnp.ones(2)})
    assert set(state.hyperparams) == {"learning_rate"}  # no booleans, no static_args, no None
    counts = gradtx.inject_hyperparams(gradtx.add_noise)(eta=0.01, gamma=0.55, key=3)
    assert counts.init({"x": jnp.ones(2)}).hyperparams["key"].dtype == jnp.int32


def test_inject_hyperparams_rejects_static_args_the_factory_does_not_have():
    with pytest.raises(
        ValueError, match=r"inject_hyperparams\(static_args='lr'\): scale has no argument lr"
    ):
        gradtx.inject_hyperparams(gradtx.scale, static_args="lr")
    with pytest.raises(ValueError, match="static_args=\\['step_size', 'mask'\\]"):
        gradtx.inject_hyperparams(gradtx.scale, static_args=["step_size", "mask"])


def test_inject_hyperparams_unpacks_the_keywords_a_factory_forwards():
    # optax binds **options as one argument named "options" and calls sgd(..., options={...}).
    def forwarding(learning_rate, **options):
        return gradtx.sgd(learning_rate, **options)

    tx = gradtx.inject_hyperparams(forwarding, static_args="nesterov")(
        0.1, momentum=0.9, nesterov=True
    )
    assert tx.fixed == (("nesterov", True),)
    params = {"w": jnp.array([1.0, -2.0])}
    state, reference_state = tx.init(params), gradtx.sgd(0.1, 0.9, nesterov=True).init(params)
    assert set(state.hyperparams) == {"learning_rate", "momentum"}
    for grad in (jnp.array([1.0, 2.0]), jnp.array([-0.5, 3.0])):
        updates, state = tx.update({"w": grad}, state, params)
        expected, reference_state = gradtx.sgd(0.1, 0.9, nesterov=True).update(
            {"w": grad}, reference_state, params
        )
        np.testing.assert_array_equal(updates["w"], expected["w"])
    # With no option given the factory gets none (not options={}).
    assert gradtx.inject_hyperparams(forwarding)(0.1).init(params).hyperparams.keys() == {
        "learning_rate"
    }


def test_inject_hyperparams_refuses_what_it_cannot_pass_by_keyword():
    def rest(learning_rate, *more):
        return gradtx.sgd(learning_rate)

    gradtx.inject_hyperparams(rest)(0.1)  # an empty *more is no argument
    with pytest.raises(
        TypeError,
        match=re.escape(
            "inject_hyperparams(rest): the factory is called with keywords, so its *more "
            "cannot take (0.2,)"
        ),
    ):
        gradtx.inject_hyperparams(rest)(0.1, 0.2)

    def positional(learning_rate, /):
        return gradtx.sgd(learning_rate)

    with pytest.raises(
        TypeError, match=re.escape("inject_hyperparams(positional): the factory is called with")
    ):
        gradtx.inject_hyperparams(positional)(0.1)


# -- state buffers and counters ----------------------------------------------------------


@pytest.mark.parametrize(
    "tx",
    [
        gradtx.apply_if_finite(gradtx.adam(0.1), max_consecutive_errors=3),
        gradtx.MultiSteps(gradtx.adam(0.1), 2, should_skip_update_fn=optax.skip_not_finite),
        gradtx.lookahead(gradtx.adam(0.1), sync_period=2, slow_step_size=0.5),
        gradtx.inject_hyperparams(gradtx.sgd)(learning_rate=0.1, momentum=0.9),
        gradtx.inject_hyperparams(gradtx.noisy_sgd, hyperparam_dtype=jnp.bfloat16)(0.1),
        gradtx.zero_nans(),
    ],
    ids=lambda tx: tx.name,
)
def test_state_can_be_donated_to_a_jitted_step(tx):
    # One array in two state fields makes XLA refuse: "donate the same buffer twice".
    params = make_params()
    step = jax.jit(lambda g, s, p: tx.update(g, s, p), donate_argnums=1)
    state = tx.init(params)
    for _ in range(3):  # the step's own output state is donated next
        updates, state = step(_grads(params), state, params)
        params = gradtx.apply_updates(params, updates)
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(params))


TOP = 2**31 - 1


def test_wrappers_keep_working_when_their_counters_saturate():
    params = {"x": jnp.ones(2)}
    grads = {"x": jnp.ones(2)}

    multi = gradtx.MultiSteps(gradtx.adam(0.1), 2)
    state = multi.init(params)._replace(gradient_step=jnp.int32(TOP - 1))
    for t in range(6):
        updates, state = multi.update(grads, state, params)
        assert bool(multi.has_updated(state)) == (t % 2 == 1)
        np.testing.assert_allclose(updates["x"], -0.1 if t % 2 else 0.0, rtol=1e-4)
    assert int(state.gradient_step) == TOP

    finite = gradtx.apply_if_finite(gradtx.sgd(0.1), max_consecutive_errors=5)
    state = finite.init(params)._replace(
        notfinite_count=jnp.int32(TOP - 1), total_notfinite=jnp.int32(TOP - 1)
    )
    for _ in range(3):
        updates, state = finite.update({"x": jnp.full(2, jnp.nan)}, state, params)
        assert not bool(jnp.any(updates["x"]))
    assert int(state.notfinite_count) == TOP and int(state.total_notfinite) == TOP
    updates, state = finite.update(grads, state, params)
    np.testing.assert_allclose(updates["x"], -0.1)
    assert int(state.notfinite_count) == 0 and int(state.total_notfinite) == TOP

    ahead = gradtx.lookahead(gradtx.adam(0.1), sync_period=2, slow_step_size=0.5)
    state = ahead.init(params)
    state = state._replace(fast_state=gradtx.tree_set(state.fast_state, count=jnp.int32(TOP - 1)))
    p = params
    for t in range(1, 7):
        updates, state = ahead.update(grads, state, p)
        p = gradtx.apply_updates(p, updates)
        assert bool(jnp.all(jnp.isfinite(p["x"])))
        # After a sync the fast weights are the slow ones.
        assert bool(jnp.all(p["x"] == state.slow["x"])) == (t % 2 == 0)


def test_a_lookahead_group_that_no_parameter_is_labelled_with_takes_its_steps():
    # A partition whose lookahead group is empty: lookahead sees params with no leaves.
    tx = gradtx.partition(
        {
            "a": gradtx.sgd(0.1),
            "la": gradtx.lookahead(gradtx.adam(0.1), sync_period=2, slow_step_size=0.5),
        },
        {"w": "a"},
    )
    params = {"w": jnp.array([1.0, 2.0])}
    state = tx.init(params)
    for _ in range(3):
        updates, state = tx.update({"w": jnp.array([1.0, 1.0])}, state, params)
        params = gradtx.apply_updates(params, updates)
    np.testing.assert_allclose(params["w"], [0.7, 1.7], rtol=1e-6)
    alone = gradtx.lookahead(gradtx.sgd(0.1), sync_period=1, slow_step_size=0.5)
    updates, _ = alone.update({}, alone.init({}), {})
    assert updates == {}
