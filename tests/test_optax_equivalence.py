"""Every drop-in optimizer equals optax's function of the same name, step by step."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from problems import make_params, quadratic_loss, wavy_loss
import pytest

import gradtx

STEPS = 120

# (name, kwargs): defaults and non-default arguments for each drop-in.
CASES = [
    ("sgd", {"learning_rate": 0.05}),
    ("sgd", {"learning_rate": 0.02, "momentum": 0.9}),
    ("sgd", {"learning_rate": 0.02, "momentum": 0.8, "nesterov": True}),
    ("adagrad", {"learning_rate": 0.1}),
    ("adagrad", {"learning_rate": 0.05, "initial_accumulator_value": 0.5, "eps": 1e-5}),
    ("rmsprop", {"learning_rate": 0.01}),
    ("rmsprop", {"learning_rate": 0.01, "decay": 0.95, "eps": 1e-6, "centered": True}),
    ("rmsprop", {"learning_rate": 0.005, "momentum": 0.9, "nesterov": True, "eps_in_sqrt": False}),
    ("rmsprop", {"learning_rate": 0.01, "initial_scale": 0.1, "bias_correction": True}),
    ("adadelta", {"learning_rate": 1.0}),
    ("adadelta", {"learning_rate": 0.5, "rho": 0.95, "eps": 1e-5, "weight_decay": 0.01}),
    ("adam", {"learning_rate": 0.01}),
    ("adam", {"learning_rate": 0.02, "b1": 0.8, "b2": 0.99, "eps": 1e-6, "eps_root": 1e-8}),
    ("adam", {"learning_rate": 0.01, "nesterov": True}),
    ("adamw", {"learning_rate": 0.01}),
    ("adamw", {"learning_rate": 0.01, "weight_decay": 0.1, "b1": 0.85, "nesterov": True}),
    ("adamax", {"learning_rate": 0.01}),
    ("adamax", {"learning_rate": 0.02, "b1": 0.8, "b2": 0.99, "eps": 1e-6}),
    ("adamaxw", {"learning_rate": 0.01}),
    ("adamaxw", {"learning_rate": 0.01, "weight_decay": 0.05}),
    ("nadam", {"learning_rate": 0.01}),
    ("nadam", {"learning_rate": 0.02, "b1": 0.85, "b2": 0.98, "eps_root": 1e-8}),
    ("nadamw", {"learning_rate": 0.01}),
    ("nadamw", {"learning_rate": 0.01, "weight_decay": 0.05}),
    ("amsgrad", {"learning_rate": 0.01}),
    ("amsgrad", {"learning_rate": 0.02, "b1": 0.8, "b2": 0.95, "eps": 1e-6}),
    ("radam", {"learning_rate": 0.01}),
    ("radam", {"learning_rate": 0.01, "b2": 0.99, "threshold": 4.0, "nesterov": True}),
    ("sign_sgd", {"learning_rate": 0.01}),
    ("signum", {"learning_rate": 0.01}),
    ("signum", {"learning_rate": 0.01, "beta": 0.7}),
    ("lion", {"learning_rate": 0.003}),
    ("lion", {"learning_rate": 0.003, "b1": 0.8, "b2": 0.95, "weight_decay": 0.01}),
    ("noisy_sgd", {"learning_rate": 0.01, "key": 3}),
    ("noisy_sgd", {"learning_rate": 0.01, "eta": 0.1, "gamma": 0.3, "key": 7}),
]

SCHEDULED = [
    ("adam", {"learning_rate": optax.warmup_cosine_decay_schedule(0.0, 0.02, 10, 100)}),
    ("sgd", {"learning_rate": optax.exponential_decay(0.05, 10, 0.9), "momentum": 0.9}),
]

LOSSES = {"quadratic": quadratic_loss, "wavy": wavy_loss}

# optax forms RAdam's rho_t as rho_inf minus a number close to it, which loses up to three
# digits in float32 near the rectification threshold; gradtx does not (test_precision.py).
# Both are exact in float64, so that is where they are compared.
FLOAT64_ONLY = {"radam"}


def _trajectory(tx, loss, params):
    def body(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = jax.tree.map(lambda p, u: p + u, params, updates)
        return (params, state), params

    return jax.lax.scan(body, (params, tx.init(params)), None, length=STEPS)[1]


_run = jax.jit(_trajectory, static_argnums=(0, 1))


def _ids(cases):
    return [f"{name}-{i}" for i, (name, _) in enumerate(cases)]


@pytest.mark.parametrize("loss", LOSSES, ids=list(LOSSES))
@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=_ids(CASES))
def test_matches_optax(name, kwargs, loss):
    with jax.enable_x64(name in FLOAT64_ONLY):
        params = make_params(jnp.result_type(float), seed=1)
        ours = _run(getattr(gradtx, name)(**kwargs), LOSSES[loss], params)
        theirs = _run(getattr(optax, name)(**kwargs), LOSSES[loss], params)
    chex.assert_trees_all_close(ours, theirs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("name", "kwargs"), SCHEDULED, ids=_ids(SCHEDULED))
def test_matches_optax_with_an_optax_schedule(name, kwargs):
    params = make_params(seed=2)
    ours = _run(getattr(gradtx, name)(**kwargs), wavy_loss, params)
    theirs = _run(getattr(optax, name)(**kwargs), wavy_loss, params)
    chex.assert_trees_all_close(ours, theirs, rtol=1e-6, atol=1e-6)


def test_adadelta_default_descends_where_optax_ascends():
    params = {"x": jnp.asarray([1.0, -2.0])}
    grads = params  # gradient of 0.5 * |x|^2
    ours = gradtx.adadelta()
    theirs = optax.adadelta()
    ours_u = ours.update(grads, ours.init(params), params)[0]["x"]
    theirs_u = theirs.update(grads, theirs.init(params), params)[0]["x"]
    assert np.all(np.sign(ours_u) == -np.sign(grads["x"]))  # descent
    assert np.all(np.sign(theirs_u) == np.sign(grads["x"]))  # optax 0.2.x ascends
    # With an explicit rate both agree.
    np.testing.assert_allclose(
        gradtx.adadelta(1.0).update(grads, ours.init(params), params)[0]["x"],
        optax.adadelta(1.0).update(grads, theirs.init(params), params)[0]["x"],
        rtol=1e-6,
    )


def test_rprop_applies_the_current_step_where_optax_lags_one():
    # The gradient sequence from CONVENTIONS.md: optax gives [0, .1, .12, 0, 0].
    signs = [1.0, 1.0, 1.0, -1.0, 1.0]
    ours, theirs = gradtx.rprop(0.1), optax.rprop(0.1)
    params = {"x": jnp.zeros(())}
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    got_ours, got_theirs = [], []
    for g in signs:
        u, s_ours = ours.update({"x": jnp.asarray(g)}, s_ours, params)
        v, s_theirs = theirs.update({"x": jnp.asarray(g)}, s_theirs, params)
        got_ours.append(-float(u["x"]) * g)
        got_theirs.append(-float(v["x"]) * g)
    np.testing.assert_allclose(got_ours, [0.1, 0.12, 0.144, 0.0, 0.072], rtol=1e-6)
    np.testing.assert_allclose(got_theirs, [0.0, 0.1, 0.12, 0.0, 0.0], rtol=1e-6)


def test_rprop_update_is_optax_update_one_step_later():
    params = make_params(seed=3)
    rng = np.random.default_rng(0)
    grads = [
        jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), params)
        for _ in range(30)
    ]
    ours, theirs = gradtx.rprop(0.01), optax.rprop(0.01)
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    ours_updates, theirs_updates = [], []
    for g in grads:
        u, s_ours = ours.update(g, s_ours, params)
        v, s_theirs = theirs.update(g, s_theirs, params)
        ours_updates.append(u)
        theirs_updates.append(v)
    # optax's update t+1 is the update it computed at t, zeroed after a sign flip.
    for t in range(len(grads) - 1):
        flipped = jax.tree.map(lambda a, b: a * b < 0, grads[t], grads[t + 1])
        expected = jax.tree.map(lambda u, f: jnp.where(f, 0.0, u), ours_updates[t], flipped)
        chex.assert_trees_all_close(theirs_updates[t + 1], expected, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("debias", [True, False], ids=["debias", "no-debias"])
def test_ema_matches_optax_ema_updates_and_state(debias, dtype):
    # The state holds the raw average, not the debiased output (after 1, 2, 3 with
    # decay 0.9: ema 0.561, output 2.070), which only later steps reveal.
    with jax.enable_x64(dtype == "float64"):
        params = make_params(dtype, seed=4)
        rng = np.random.default_rng(5)
        inputs = [
            jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), dtype), params)
            for _ in range(50)
        ]
        ours, theirs = gradtx.ema(0.9, debias=debias), optax.ema(0.9, debias=debias)
        s_ours, s_theirs = ours.init(params), theirs.init(params)
        update_ours, update_theirs = jax.jit(ours.update), jax.jit(theirs.update)
        rtol = 1e-6 if dtype == "float32" else 1e-13
        for u in inputs:
            out_ours, s_ours = update_ours(u, s_ours)
            out_theirs, s_theirs = update_theirs(u, s_theirs)
            chex.assert_trees_all_close(out_ours, out_theirs, rtol=rtol)
            chex.assert_trees_all_close(s_ours.ema, s_theirs.ema, rtol=rtol)
            assert int(s_ours.count) == int(s_theirs.count)
            chex.assert_trees_all_equal_dtypes(out_ours, out_theirs, params)
            chex.assert_trees_all_equal_dtypes(s_ours.ema, s_theirs.ema, params)
    assert int(s_ours.count) == 50


@pytest.mark.parametrize("threshold", [1.0, 0.5, 2.0])
def test_clip_by_block_rms_matches_optax(threshold):
    # Each leaf is clipped by its RMS, sqrt(mean(u**2)), not its L2 norm: four entries of
    # 0.6 have RMS 0.6 (kept under threshold 1) but norm 1.2 (which would be clipped).
    rng = np.random.default_rng(6)
    updates = {
        "below": jnp.full((4,), 0.6),
        "scalar_above": jnp.asarray(-3.0),
        "scalar_below": jnp.asarray(0.3),
        "vector": jnp.asarray(rng.normal(size=7), jnp.float32),
        "matrix_above": jnp.asarray(2.5 * rng.normal(size=(5, 6)), jnp.float32),
        "matrix_below": jnp.asarray(0.2 * rng.normal(size=(3, 8)), jnp.float32),
        "zeros": jnp.zeros((2, 2)),
    }
    tx, reference = gradtx.clip_by_block_rms(threshold), optax.clip_by_block_rms(threshold)
    ours = tx.update(updates, tx.init(updates))[0]
    theirs = reference.update(updates, reference.init(updates))[0]
    chex.assert_trees_all_close(ours, theirs, rtol=1e-6)
    for name, u in updates.items():
        rms = float(jnp.sqrt(jnp.mean(u**2)))
        expected = u * min(1.0, threshold / rms) if rms > 0 else u
        np.testing.assert_allclose(ours[name], expected, rtol=1e-6, err_msg=name)
        clipped = float(jnp.sqrt(jnp.mean(ours[name] ** 2)))
        assert clipped <= threshold * (1 + 1e-6), name
    if threshold == 1.0:
        np.testing.assert_array_equal(ours["below"], updates["below"])  # untouched
