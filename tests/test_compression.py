"""Compressed gradient exchange with error feedback, against NumPy oracles from the papers.

In-process tests run one worker (axis_name=None); the 8-worker exchange inside
shard_map runs once in a fresh process (tests/compression_worker.py).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

SHAPES = {"w": (6, 5), "b": (5,), "k": (4, 3, 2)}


# -- NumPy oracles, written from the papers, for W workers ------------------------------
# Each takes the workers' accumulated values a_w = r_w + g_w of one leaf, shape (W, ...),
# and returns what each worker sends (decompressed) and its bytes.


def threshold_oracle(a, tau):
    """Strom 2015: +-tau where |a| > tau; 31-bit index + sign bit per sent entry."""
    sent = np.where(np.abs(a) > tau, tau * np.sign(a), 0).astype(a.dtype)
    return sent, 4 * np.sum(np.abs(a) > tau, axis=tuple(range(1, a.ndim)))


def top_k_oracle(a, ratio):
    """The k largest |a| per worker and leaf; k values + k int32 indices."""
    flat = a.reshape(len(a), -1)
    k = max(1, round(ratio * flat.shape[1]))
    sent = np.zeros_like(flat)
    for w, row in enumerate(flat):
        keep = np.argsort(-np.abs(row), kind="stable")[:k]
        sent[w, keep] = row[keep]
    return sent.reshape(a.shape), np.full(len(a), k * (a.itemsize + 4))


def sign_oracle(a):
    """Karimireddy et al. 2019: (|a|_1 / d) sign(a); ceil(d / 8) bytes of signs + a scale."""
    flat = a.reshape(len(a), -1)
    scale = np.mean(np.abs(flat), axis=1, keepdims=True)
    sent = (scale * np.where(flat >= 0, 1, -1)).astype(a.dtype)
    return sent.reshape(a.shape), np.full(len(a), math.ceil(flat.shape[1] / 8) + 4)


def run_error_feedback(oracle, grads, **kwargs):
    """Steps of error feedback over W workers: the averaged updates and the last residuals.

    ``grads``: one dict per step of leaves shaped (W, ...).
    """
    residual = {name: np.zeros_like(g) for name, g in grads[0].items()}
    updates = []
    for step in grads:
        sent, nbytes = {}, 0
        for name, g in step.items():
            a = residual[name] + g
            sent[name], leaf_bytes = oracle(a, **kwargs)
            residual[name] = a - sent[name]
            nbytes = nbytes + leaf_bytes
        updates.append({name: s.mean(axis=0) for name, s in sent.items()})
    return updates, residual, nbytes


def gram_schmidt(p):
    """torch's _orthogonalize_gram_schmidt for one matrix, on its columns."""
    p = p.copy()
    for i in range(p.shape[1]):
        p[:, i] /= np.linalg.norm(p[:, i])
        p[:, i + 1 :] -= np.sum(p[:, i : i + 1] * p[:, i + 1 :], axis=0) * p[:, i : i + 1]
    return p


def run_powersgd(grads, q0, rank, min_compression_rate):
    """Vogels et al. 2019, Algorithm 1 with error feedback, as torch's hook runs it.

    ``q0``: the initial Q of each compressed leaf (the transform's, so both draw the same).
    """
    residual = {name: np.zeros_like(g, np.float64) for name, g in grads[0].items()}
    q = {name: np.asarray(x, np.float64) for name, x in q0.items()}
    updates = []
    for step in grads:
        update = {}
        for name, g in step.items():
            m_w = residual[name] + g  # (W, ...)
            shape = g.shape[1:]
            n, m = (shape[0], math.prod(shape[1:])) if len(shape) >= 2 else (0, 0)
            r = min(n, m, rank)
            if len(shape) >= 2 and (n + m) * r * min_compression_rate < n * m:
                matrices = m_w.reshape(len(m_w), n, m)
                q_hat = gram_schmidt(q[name])
                p = gram_schmidt(np.mean(matrices @ q_hat, axis=0))
                q[name] = np.mean(np.swapaxes(matrices, 1, 2) @ p, axis=0)
                update[name] = (p @ q[name].T).reshape(shape)
            else:
                update[name] = m_w.mean(axis=0)
            residual[name] = m_w - update[name]
        updates.append(update)
    return updates, residual


# -- one worker, in process ---------------------------------------------------------------


def _grads(steps, workers=1, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return [
        {n: rng.normal(size=(workers, *s)).astype(dtype) for n, s in SHAPES.items()}
        for _ in range(steps)
    ]


@jax.jit
def _step(tx, grads, state):
    return tx.update(grads, state)


def _run(tx, grads):
    """The transform over steps of one worker's gradients (leading axis 1 dropped)."""
    state = tx.init({n: jnp.zeros(s) for n, s in SHAPES.items()})
    updates = []
    for g in grads:
        update, state = _step(tx, {n: jnp.asarray(x[0]) for n, x in g.items()}, state)
        updates.append(update)
    return updates, state


ORACLES = {
    "threshold": (
        gradtx.threshold_compression(0.7, axis_name=None),
        threshold_oracle,
        {"tau": 0.7},
    ),
    "top_k": (gradtx.top_k_compression(0.2, axis_name=None), top_k_oracle, {"ratio": 0.2}),
    "sign": (gradtx.sign_compression(axis_name=None), sign_oracle, {}),
}


@pytest.mark.parametrize("name", ORACLES)
def test_error_feedback_compressors_equal_their_oracles(name):
    tx, oracle, kwargs = ORACLES[name]
    grads = _grads(3)
    updates, state = _run(tx, grads)
    expected, residual, nbytes = run_error_feedback(oracle, grads, **kwargs)
    for got, want in zip(updates, expected):
        for leaf in SHAPES:
            np.testing.assert_allclose(got[leaf], want[leaf], rtol=1e-6, atol=1e-7)
    for leaf in SHAPES:
        np.testing.assert_allclose(state.residual[leaf], residual[leaf][0], rtol=1e-6, atol=1e-6)
    assert float(state.bytes_sent) == nbytes[0]


@pytest.mark.parametrize("name", ORACLES)
def test_residual_plus_sent_is_the_accumulated_gradient(name):
    # Error feedback loses nothing: what is not sent now is kept for later. Exact for
    # top-k (entries are moved, not computed); one rounding for the others.
    tx = ORACLES[name][0]
    params = {n: jnp.zeros(s) for n, s in SHAPES.items()}
    state = tx.init(params)
    for g in _grads(3):
        g = {n: jnp.asarray(x[0]) for n, x in g.items()}
        sent, new = _step(tx, g, state)
        for leaf in SHAPES:
            accumulated = np.asarray(state.residual[leaf] + g[leaf])
            total = np.asarray(new.residual[leaf] + sent[leaf])
            if name == "top_k":
                np.testing.assert_array_equal(total, accumulated)
            else:
                np.testing.assert_allclose(total, accumulated, rtol=1e-6, atol=1e-6)
        state = new


def test_top_k_sends_the_largest_magnitudes_and_keeps_the_rest():
    tx = gradtx.top_k_compression(0.4, axis_name=None)  # k = 2 of 5
    g = jnp.asarray([0.1, -3.0, 2.0, 0.5, -1.0])
    sent, state = tx.update(g, tx.init(g))
    np.testing.assert_array_equal(sent, [0, -3.0, 2.0, 0, 0])
    np.testing.assert_array_equal(state.residual, np.float32([0.1, 0, 0, 0.5, -1.0]))
    # The residual is sent once it is the largest: -1.0 + -1.0 beats 0.5 + 0.5.
    sent, _ = tx.update(jnp.asarray([0, 0, 0, 0.5, -1.0]), state)
    np.testing.assert_array_equal(sent, [0, 0, 0, 1.0, -2.0])


def test_threshold_sends_plus_minus_threshold_and_drains_the_rest():
    tx = gradtx.threshold_compression(1.0, axis_name=None)
    g = jnp.asarray([0.6, -1.5, 0.3, 3.0])
    sent, state = tx.update(g, tx.init(g))
    np.testing.assert_array_equal(sent, [0, -1.0, 0, 1.0])
    np.testing.assert_allclose(state.residual, [0.6, -0.5, 0.3, 2.0])
    sent, state = tx.update(g, state)  # accumulated: 1.2, -2.0, 0.6, 5.0
    np.testing.assert_array_equal(sent, [1.0, -1.0, 0, 1.0])
    np.testing.assert_allclose(state.residual, [0.2, -1.0, 0.6, 4.0], rtol=1e-6)
    assert float(state.bytes_sent) == 3 * 4


def test_sign_scales_by_the_mean_magnitude():
    tx = gradtx.sign_compression(axis_name=None)
    g = jnp.asarray([1.0, -2.0, 3.0, -6.0, 0.0])  # mean |g| = 2.4; sign(0) = +1
    sent, state = tx.update(g, tx.init(g))
    np.testing.assert_allclose(sent, [2.4, -2.4, 2.4, -2.4, 2.4], rtol=1e-6)
    np.testing.assert_allclose(state.residual, [-1.4, 0.4, 0.6, -3.6, -2.4], rtol=1e-6)


def test_powersgd_equals_algorithm_1_with_the_same_initial_q():
    tx = gradtx.powersgd(2, axis_name=None, key=3, min_compression_rate=1.0)
    grads = _grads(3)
    updates, state = _run(tx, grads)
    q0 = tx.init({n: jnp.zeros(s) for n, s in SHAPES.items()}).q
    expected, residual = run_powersgd(grads, {n: q0[n] for n in ("w", "k")}, 2, 1.0)
    for got, want in zip(updates, expected):
        for leaf in SHAPES:
            np.testing.assert_allclose(got[leaf], want[leaf], rtol=1e-5, atol=1e-5)
    for leaf in SHAPES:
        np.testing.assert_allclose(state.residual[leaf], residual[leaf][0], rtol=1e-5, atol=1e-5)
    assert state.q["w"].shape == (5, 2) and state.q["k"].shape == (6, 2)
    assert state.q["b"].shape == (0,)  # a vector is sent dense: no factor
    # The update of the 6 x 5 leaf is of rank 2.
    assert np.linalg.matrix_rank(np.asarray(updates[0]["w"])) == 2


@pytest.mark.parametrize("first", [0.0, 1e-21], ids=["zero", "underflowing"])
def test_powersgd_recovers_from_a_zero_or_tiny_gradient(first):
    # Q = M^T P was 0 after such a step (1e-21's squares underflow in float32: its P was
    # not normalised) and stayed 0: every later update 0, the residual growing.
    tx = gradtx.powersgd(1, axis_name=None)
    state = tx.init({"w": jnp.zeros((6, 5))})
    updates, state = tx.update({"w": jnp.full((6, 5), first)}, state)
    np.testing.assert_allclose(updates["w"], first, rtol=1e-5, atol=0)  # rank 1: sent exactly
    for _ in range(2):
        updates, state = tx.update({"w": jnp.ones((6, 5))}, state)
        np.testing.assert_allclose(updates["w"], 1.0, rtol=1e-6)
        np.testing.assert_allclose(state.residual["w"], 0.0, atol=1e-6)


def test_powersgd_sends_dense_what_would_not_compress():
    # 6 x 5 at rank 2 is 22 numbers against 30: compressed at rate 1, not at torch's 2.
    grads = _grads(1)
    dense, state = _run(gradtx.powersgd(2, axis_name=None), grads)
    np.testing.assert_allclose(dense[0]["w"], grads[0]["w"][0])
    assert float(state.bytes_sent) == float(state.dense_bytes)


def test_bytes_sent_follow_the_documented_cost_model():
    # dense: (30 + 5 + 24) float32 entries. top-k at 0.2: k = 6, 1, 5 values + int32
    # indices; sign: ceil(d / 8) bytes + a float32 scale per leaf; PowerSGD rank 2 at
    # rate 1: (6 + 5) * 2 and (4 + 6) * 2 float32 factors, the vector dense.
    grads = _grads(1)
    expected = {
        "top_k": (gradtx.top_k_compression(0.2, axis_name=None), (6 + 1 + 5) * 8),
        "sign": (gradtx.sign_compression(axis_name=None), (4 + 4) + (1 + 4) + (3 + 4)),
        "powersgd": (
            gradtx.powersgd(2, axis_name=None, min_compression_rate=1.0),
            (11 * 2 + 5 + 10 * 2) * 4,
        ),
    }
    for name, (tx, nbytes) in expected.items():
        _, state = _run(tx, grads)
        assert float(gradtx.tree_get(state, "bytes_sent")) == nbytes, name
        assert float(gradtx.tree_get(state, "dense_bytes")) == 59 * 4, name
    # In bfloat16 the values and the dense payload halve; indices stay int32.
    tx = gradtx.top_k_compression(0.2, axis_name=None)
    params = {n: jnp.zeros(s, jnp.bfloat16) for n, s in SHAPES.items()}
    grads = {n: jnp.asarray(x[0], jnp.bfloat16) for n, x in grads[0].items()}
    sent, state = tx.update(grads, tx.init(params))
    assert float(state.bytes_sent) == 12 * (2 + 4) and float(state.dense_bytes) == 59 * 2
    assert state.residual["w"].dtype == jnp.float32 and sent["w"].dtype == jnp.bfloat16


def test_residual_is_checkpointed_and_restored(tmp_path):
    tx = gradtx.chain(gradtx.top_k_compression(0.2, axis_name=None), gradtx.sgd(0.1))
    params = {n: jnp.zeros(s) for n, s in SHAPES.items()}
    grads = [{n: jnp.asarray(x[0]) for n, x in g.items()} for g in _grads(3)]
    state = tx.init(params)
    for g in grads[:2]:
        _, state = tx.update(g, state)
    ckpt = gradtx.checkpoint.Checkpointer(tmp_path)
    ckpt.save(2, params, state, tx)
    ckpt.wait()
    restored = ckpt.restore(tx, params).opt_state
    ckpt.close()
    assert np.any(np.asarray(gradtx.tree_get(state, "residual")["w"]) != 0)
    jax.tree.map(np.testing.assert_array_equal, restored, state)
    jax.tree.map(
        np.testing.assert_array_equal,
        tx.update(grads[2], restored)[0],
        tx.update(grads[2], state)[0],
    )


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: gradtx.top_k_compression(0.0, None),
            r"top_k_compression\(ratio=0.0\): ratio must be in \(0, 1\]",
        ),
        (
            lambda: gradtx.top_k_compression(1.5, None),
            r"top_k_compression\(ratio=1.5\): ratio must be in \(0, 1\]",
        ),
        (lambda: gradtx.powersgd(0, None), r"powersgd\(rank=0\): rank must be in \[1, inf\)"),
        (lambda: gradtx.powersgd(1.5, None), r"powersgd\(rank=1.5\): rank must be a whole number"),
        (
            lambda: gradtx.threshold_compression(0.0, None),
            r"threshold_compression\(threshold=0.0\): threshold must be in \(0, inf\)",
        ),
        (
            lambda: gradtx.threshold_compression(-1.0, None),
            r"threshold_compression\(threshold=-1.0\): threshold must be in \(0, inf\)",
        ),
    ],
)
def test_bad_arguments_are_refused_naming_them(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize(
    "tx",
    [
        gradtx.threshold_compression(0.1, axis_name="data"),
        gradtx.top_k_compression(0.5, axis_name="data"),
        gradtx.sign_compression(axis_name="data"),
        gradtx.powersgd(1, axis_name="data"),
    ],
    ids=lambda tx: tx.name,
)
def test_an_axis_name_outside_shard_map_is_a_clear_error(tx):
    # JAX's own NameError ("unbound axis name: data") does not say which transform or why.
    g = {n: jnp.ones(s) for n, s in SHAPES.items()}
    match = rf"{tx.name}\(axis_name='data'\): no axis named 'data' is bound here: call update"
    with pytest.raises(ValueError, match=match):
        tx.update(g, tx.init(g))
    with pytest.raises(ValueError, match=match):
        jax.jit(tx.update)(g, tx.init(g))


# -- 8 workers inside shard_map, in a fresh process -----------------------------------------


# session scope: xdist may run another module's tests between this group's, which would tear
# a module fixture down and start its subprocesses again (seen in CI: twice per worker)
@pytest.fixture(scope="session")
def eight_workers():
    worker = pathlib.Path(__file__).with_name("compression_worker.py")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    env["PYTHONPATH"] = os.pathsep.join([str(worker.parents[1]), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, str(worker)], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["devices"] == 8
    result["grads"] = [
        {n: np.asarray(x, np.float32) for n, x in g.items()} for g in result["grads"]
    ]
    return result


def _expected(name, grads):
    if name == "powersgd":
        tx = gradtx.powersgd(2, axis_name=None, key=3, min_compression_rate=1.0)
        q0 = tx.init({n: jnp.zeros(s) for n, s in SHAPES.items()}).q
        updates, residual = run_powersgd(grads, {n: q0[n] for n in ("w", "k")}, 2, 1.0)
        return updates, residual, None
    oracle, kwargs = {
        "threshold": (threshold_oracle, {"tau": 0.3}),
        "top_k": (top_k_oracle, {"ratio": 0.2}),
        "sign": (sign_oracle, {}),
    }[name]
    return run_error_feedback(oracle, grads, **kwargs)


@pytest.mark.xdist_group("compression_worker")  # one worker starts the subprocess
@pytest.mark.parametrize("name", ["threshold", "top_k", "sign", "powersgd"])
def test_eight_workers_exchange_the_average_of_their_compressed_gradients(eight_workers, name):
    got = eight_workers[name]
    updates, residual, nbytes = _expected(name, eight_workers["grads"])
    tol = 1e-5 if name == "powersgd" else 1e-6
    for step, want in zip(got["updates"], updates):
        for leaf in SHAPES:
            np.testing.assert_allclose(np.asarray(step[leaf]), want[leaf], rtol=tol, atol=tol)
    for leaf in SHAPES:  # each worker keeps its own residual
        np.testing.assert_allclose(
            np.asarray(got["residual"][leaf]), residual[leaf], rtol=tol, atol=tol
        )
    if nbytes is not None:
        np.testing.assert_array_equal(got["bytes_sent"], nbytes)
    assert got["dense_bytes"] == [59 * 4] * 8
