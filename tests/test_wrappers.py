"""What each training-loop wrapper promises, checked against direct computations."""

from __future__ import annotations

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
    nan_from_2 = gradtx.join_schedules(
        [gradtx.constant_schedule(0.1), gradtx.constant_schedule(jnp.nan)], [2]
    )
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
