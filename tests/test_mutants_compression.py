"""Tests that kill the mutants of gradtx/_compression.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
The references are the docstrings' rules as test_compression.py's NumPy oracles (threshold
with strict ``>``, top-k, sign with error feedback, PowerSGD's Algorithm 1 as torch's hook runs
it, with ``r = min(n, m, rank)`` and compression only where ``(n + m) r rate < n m``), the cost
model of ``bytes_sent`` (float byte counts, 0 before the first step), the states' dtypes (the
residual and Q in the params' compute dtype, updates in the gradients' dtype) and the
exchange inside ``jax.shard_map``: on one device (in process: the average must be replicated,
which shard_map checks) and on two simulated CPU devices (a subprocess).
"""

from __future__ import annotations

import json
import math
import re

from devices import run_on_cpu_devices
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest
from test_compression import run_error_feedback, run_powersgd, sign_oracle, top_k_oracle

import gradtx


def _one_worker_in_shard_map(tx, grads):
    """``tx.update`` inside shard_map over a one-device axis "data", as the module's docstring.

    The gradients are this worker's (sharded over the axis, so varying); out_specs P() for the
    update: shard_map refuses it unless the exchange made it the same on every worker.
    """
    mesh = jax.make_mesh((1,), ("data",))
    per_worker = NamedSharding(mesh, P("data"))
    stack = lambda tree: jax.device_put(jax.tree.map(lambda x: x[None], tree), per_worker)

    def worker_step(grads, state):
        unstack = lambda tree: jax.tree.map(lambda x: x[0], tree)
        update, state = tx.update(unstack(grads), unstack(state))
        return update, jax.tree.map(lambda x: x[None], state)

    step = jax.shard_map(
        worker_step, mesh=mesh, in_specs=(P("data"), P("data")), out_specs=(P(), P("data"))
    )
    return jax.jit(step)(stack(grads), stack(tx.init(grads)))


def test_inside_shard_map_every_method_returns_the_replicated_average():
    # One worker: the average is that worker's own message, as with axis_name=None; the
    # exchange (pmean, all_gather to "invarying") is what makes it replicated.
    grads = {"w": jnp.asarray(np.arange(12.0).reshape(3, 4) - 5.5), "b": jnp.asarray([0.5, -2.0])}
    builds = {
        "threshold": lambda axis: gradtx.threshold_compression(1.0, axis_name=axis),
        "top_k": lambda axis: gradtx.top_k_compression(0.25, axis_name=axis),
        "sign": lambda axis: gradtx.sign_compression(axis_name=axis),
        "powersgd": lambda axis: gradtx.powersgd(1, axis_name=axis, min_compression_rate=1.0),
    }
    for name, build in builds.items():
        tx = build("data")
        assert tx.axis_name == "data", name
        update, state = _one_worker_in_shard_map(tx, grads)
        alone = build(None)
        want, want_state = alone.update(grads, alone.init(grads))
        for leaf in grads:
            np.testing.assert_allclose(update[leaf], want[leaf], rtol=1e-6, err_msg=name)
            # The residual is the accumulated gradient (up to 5.5) minus the average: the
            # jitted and eager steps may differ by a few of its ulps (4.8e-7).
            np.testing.assert_allclose(
                state.residual[leaf][0], want_state.residual[leaf], rtol=1e-6, atol=4e-6
            )
        assert float(state.bytes_sent[0]) == float(want_state.bytes_sent), name


def test_an_unbound_axis_name_says_where_to_call_update_or_what_to_pass():
    tx = gradtx.threshold_compression(0.1, axis_name="data")
    g = {"w": jnp.ones(3)}
    message = (
        "threshold_compression(axis_name='data'): no axis named 'data' is bound here: call "
        "update inside jax.shard_map (or jax.pmap) over that axis, where the gradients are "
        "all-reduced, or pass axis_name=None for a single worker"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        tx.update(g, tx.init(g))


def test_byte_counts_are_float_arrays_from_zero():
    # bytes_sent is what the last step sent: 0 before any step; both counts in the default
    # float dtype (an int32 count would overflow past 2 GiB, see the next test).
    g = {"w": jnp.ones((4, 4)), "b": jnp.ones(3)}
    for tx in (
        gradtx.threshold_compression(0.5, axis_name=None),
        gradtx.top_k_compression(0.5, axis_name=None),
        gradtx.sign_compression(axis_name=None),
        gradtx.powersgd(1, axis_name=None),
    ):
        state = tx.init(g)
        assert float(state.bytes_sent) == 0.0, tx.name
        _, after = tx.update(g, state)
        for s in (state, after):
            assert s.bytes_sent.dtype == jnp.float32, tx.name
            assert s.dense_bytes.dtype == jnp.float32, tx.name


def test_a_model_past_2_gib_has_its_dense_bytes_counted():
    # 2**31 float32 entries: 8 GiB dense, more than an int32 holds (shapes only: eval_shape).
    params = {"w": jax.ShapeDtypeStruct((2**31,), jnp.float32)}
    for tx in (gradtx.top_k_compression(0.5, axis_name=None), gradtx.powersgd(1, axis_name=None)):
        state = jax.eval_shape(tx.init, params)
        assert state.dense_bytes.dtype == jnp.float32


def test_an_empty_tree_keeps_a_float_byte_count():
    # Nothing to send (say, a partition with no leaves): 0 bytes, the state's types unchanged.
    for tx in (gradtx.top_k_compression(0.5, axis_name=None), gradtx.powersgd(1, axis_name=None)):
        _, state = tx.update({}, tx.init({}))
        assert isinstance(state.bytes_sent, jax.Array) and state.bytes_sent.dtype == jnp.float32
        assert float(state.bytes_sent) == 0.0


def test_the_residual_starts_in_the_compute_dtype():
    # "at least float32": a bfloat16 model keeps float32 residuals from init on.
    params = {"w": jnp.zeros((4, 3), jnp.bfloat16), "b": jnp.zeros(3, jnp.bfloat16)}
    for tx in (gradtx.top_k_compression(0.5, axis_name=None), gradtx.powersgd(1, axis_name=None)):
        state = tx.init(params)
        for leaf in params:
            assert state.residual[leaf].dtype == jnp.float32, tx.name


def test_float32_states_stay_float32_under_x64(x64):
    # Under x64 the default float is float64, but the compute dtype of float32 leaves is
    # float32: residuals, Q (of a compressed and of a dense leaf) and the sent values.
    g = {"w": jnp.asarray(np.arange(12.0).reshape(4, 3) - 5.0, jnp.float32)}
    g["b"] = jnp.asarray([0.1, -0.2, 3.0], jnp.float32)
    for tx in (
        gradtx.threshold_compression(0.5, axis_name=None),
        gradtx.sign_compression(axis_name=None),
        gradtx.top_k_compression(0.5, axis_name=None),
        gradtx.powersgd(1, axis_name=None, min_compression_rate=1.0),
    ):
        state = tx.init(g)
        update, after = tx.update(g, state)
        for leaf in g:
            assert state.residual[leaf].dtype == jnp.float32, tx.name
            assert after.residual[leaf].dtype == jnp.float32, tx.name
            assert update[leaf].dtype == jnp.float32, tx.name
        if tx.name == "powersgd":
            assert state.q["w"].shape == (3, 1) and state.q["b"].shape == (0,)
            assert state.q["w"].dtype == state.q["b"].dtype == jnp.float32
            assert after.q["w"].dtype == jnp.float32


def test_threshold_sends_only_entries_strictly_above_it():
    # |a| = threshold is kept (Strom: where |a| > threshold), in the gradients' float32 too:
    # under x64, float32(0.1) compared with the float32 threshold, not with float64 0.1.
    tx = gradtx.threshold_compression(1.0, axis_name=None)
    g = jnp.asarray([1.0, -1.0, 1.5])
    sent, state = tx.update(g, tx.init(g))
    np.testing.assert_array_equal(sent, [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(state.residual, [1.0, -1.0, 0.5])
    assert float(state.bytes_sent) == 4
    with jax.enable_x64(True):
        tx = gradtx.threshold_compression(0.1, axis_name=None)
        g = jnp.asarray([0.1, -0.1], jnp.float32)
        sent, state = tx.update(g, tx.init(g))
        np.testing.assert_array_equal(sent, [0.0, 0.0])
        assert state.residual.dtype == jnp.float32 and float(state.bytes_sent) == 0


def test_sign_sends_a_byte_per_8_entries_and_nothing_for_an_empty_leaf():
    # ceil(17 / 8) = 3 bytes of signs + a float32 scale; an empty leaf sends no message.
    g = {"w": jnp.asarray(np.linspace(-1.0, 1.0, 17)), "e": jnp.zeros((0,))}
    tx = gradtx.sign_compression(axis_name=None)
    sent, state = tx.update(g, tx.init(g))
    want, _ = sign_oracle(np.asarray(g["w"])[None])
    np.testing.assert_allclose(sent["w"], want[0], rtol=1e-6)
    assert sent["e"].shape == (0,)
    assert float(state.bytes_sent) == math.ceil(17 / 8) + 4


def test_top_k_keeps_complex_values_whole():
    # gradtx takes complex leaves: the k entries of largest |a| move with their imaginary parts.
    g = jnp.asarray([1 + 2j, 0.1j, 3.0, 0.2 - 0.5j], jnp.complex64)
    tx = gradtx.top_k_compression(0.5, axis_name=None)
    sent, state = tx.update(g, tx.init(g))
    want, _ = top_k_oracle(np.asarray(g)[None], ratio=0.5)
    np.testing.assert_array_equal(sent, want[0])
    np.testing.assert_array_equal(state.residual, np.asarray(g) - want[0])


# -- PowerSGD ------------------------------------------------------------------------------


def _powersgd_against_algorithm_1(tx, shapes, grads, rank, rate, atol=1e-7):
    """``tx`` over ``grads`` (one dict of leaves a step) against run_powersgd from its Q."""
    q0 = tx.init({n: jnp.zeros(s) for n, s in shapes.items()}).q
    compressed = {n: q0[n] for n in shapes if q0[n].size}
    steps = _steps(tx, shapes, grads)
    stacked = [{n: g[None] for n, g in step.items()} for step in grads]  # one worker
    expected, residual = run_powersgd(stacked, compressed, rank, rate)
    for (update, _), want in zip(steps, expected):
        for leaf in shapes:
            np.testing.assert_allclose(update[leaf], want[leaf], rtol=1e-5, atol=1e-7)
    for leaf in shapes:
        got = steps[-1][1].residual[leaf]
        np.testing.assert_allclose(got, residual[leaf][0], rtol=1e-5, atol=atol)
    return steps


def _steps(tx, shapes, grads):
    """(update, state) after each step of ``tx`` over ``grads``, eagerly."""
    state = tx.init({n: jnp.zeros(s) for n, s in shapes.items()})
    steps = []
    for g in grads:
        update, state = tx.update({n: jnp.asarray(x) for n, x in g.items()}, state)
        steps.append((update, state))
    return steps


def test_powersgd_normalises_columns_of_norm_below_one():
    # Small gradients: P's columns have norms below 1 and are still divided by them.
    rng = np.random.default_rng(0)
    shapes = {"w": (6, 5)}
    grads = [{"w": 1e-3 * rng.normal(size=(6, 5)).astype(np.float32)} for _ in range(2)]
    tx = gradtx.powersgd(2, axis_name=None, key=1, min_compression_rate=1.0)
    _powersgd_against_algorithm_1(tx, shapes, grads, 2, 1.0)


def test_powersgd_of_a_zero_gradient_is_zero():
    # A zero column stays zero in Gram-Schmidt (the docstring), not 0 / 0.
    tx = gradtx.powersgd(1, axis_name=None, min_compression_rate=1.0)
    g = {"w": jnp.zeros((4, 3))}
    update, state = tx.update(g, tx.init(g))
    np.testing.assert_array_equal(update["w"], np.zeros((4, 3)))
    np.testing.assert_array_equal(state.residual["w"], np.zeros((4, 3)))


def test_powersgd_keeps_the_warm_column_only_where_q_came_out_zero():
    # A gradient of rank 1 (one entry) at rank 2: Gram-Schmidt leaves P's second column
    # exactly 0, so Q's second column comes out 0 and the state keeps the previous one
    # (orthonormalised), while the first column is the new one.
    tx = gradtx.powersgd(2, axis_name=None, key=1, min_compression_rate=1.0)
    g = {"w": jnp.zeros((6, 6)).at[0, 0].set(3.0)}
    state = tx.init(g)
    warm = np.linalg.qr(np.asarray(state.q["w"], np.float64))[0]
    _, state = tx.update(g, state)
    q = np.asarray(state.q["w"])
    np.testing.assert_allclose(np.abs(q[:, 1]), np.abs(warm[:, 1]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.abs(q[:, 0]), [3.0, 0, 0, 0, 0, 0], rtol=1e-6)


def test_powersgd_rank_is_at_most_the_smaller_side():
    # r = min(n, m, rank): rank 3 on 2 x 10 and 10 x 2 leaves is rank 2, (n + m) * 2 entries.
    rng = np.random.default_rng(1)
    shapes = {"wide": (2, 10), "tall": (10, 2)}
    grads = [{n: rng.normal(size=s).astype(np.float32) for n, s in shapes.items()}]
    tx = gradtx.powersgd(3, axis_name=None, key=2, min_compression_rate=0.5)
    # Rank 2 is the whole 2 x 10 matrix: sent exactly, residuals 0 up to float32 rounding.
    [(_, state)] = _powersgd_against_algorithm_1(tx, shapes, grads, 3, 0.5, atol=1e-6)
    assert state.q["wide"].shape == (10, 2) and state.q["tall"].shape == (2, 2)
    assert float(state.bytes_sent) == 2 * (12 * 2 * 4)


def test_powersgd_sends_dense_a_leaf_that_compresses_exactly_at_the_rate():
    # 4 x 4 at rank 1: (4 + 4) * 1 * 2 = 16 = 4 * 4, not less: dense (torch's
    # _should_compress is strict too). 6 x 6 at the default rate 2 compresses (24 < 36).
    g = {"w": jnp.asarray(np.arange(16.0).reshape(4, 4)), "v": jnp.ones((6, 6))}
    tx = gradtx.powersgd(1, axis_name=None)
    assert tx.matrix_shape(g["w"]) is None and tx.matrix_shape(g["v"]) == (6, 6)
    update, state = tx.update(g, tx.init(g))
    np.testing.assert_array_equal(update["w"], g["w"])
    assert state.q["w"].shape == (0,) and state.q["v"].shape == (6, 1)
    assert float(state.bytes_sent) == 16 * 4 + 12 * 4


def test_powersgd_draws_the_first_q_from_key_default_0():
    params = {"w": jnp.zeros((6, 5)), "b": jnp.zeros(5)}
    q = lambda **kw: np.asarray(gradtx.powersgd(1, None, **kw).init(params).q["w"])
    np.testing.assert_array_equal(q(), q(key=0))
    np.testing.assert_array_equal(q(key=3), q(key=jax.random.key(3)))
    assert not np.array_equal(q(key=3), q(key=0)) and not np.array_equal(q(key=1), q())
    assert gradtx.powersgd(1, None).min_compression_rate == 2.0


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_powersgd_refuses_a_min_compression_rate_not_above_0(rate):
    with pytest.raises(
        ValueError,
        match=rf"powersgd\(min_compression_rate={rate}\): min_compression_rate must be in "
        r"\(0, inf\)",
    ):
        gradtx.powersgd(1, None, min_compression_rate=rate)


def test_powersgd_in_bfloat16_sends_bfloat16_and_counts_2_bytes_an_entry():
    g = {"w": jnp.ones((6, 5), jnp.bfloat16), "b": jnp.ones(5, jnp.bfloat16)}
    tx = gradtx.powersgd(1, axis_name=None)
    update, state = tx.update(g, tx.init(g))
    assert update["w"].dtype == update["b"].dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(update["w"], np.float32), np.ones((6, 5)), rtol=1e-2)
    assert state.residual["w"].dtype == jnp.float32
    # (6 + 5) * 1 entries of P and Q and the dense vector, 2 bytes each.
    assert float(state.bytes_sent) == (11 + 5) * 2


# -- two workers, in a fresh process (it inherits MUTANT_UNDER_TEST) ------------------------

TWO_WORKERS = """
import json, jax, jax.numpy as jnp, numpy as np, gradtx
from jax.sharding import NamedSharding, PartitionSpec as P
mesh = jax.make_mesh((2,), ("data",))
per_worker = NamedSharding(mesh, P("data"))
tx = gradtx.top_k_compression(0.5, axis_name="data")
def worker_step(g, state):
    state = jax.tree.map(lambda s: s[0], state)
    update, state = tx.update(g[0], state)
    return update, jax.tree.map(lambda s: s[None], state)
step = jax.jit(jax.shard_map(worker_step, mesh=mesh, in_specs=(P("data"), P("data")),
                             out_specs=(P(), P("data"))))
grads = jnp.asarray([[1.0, -4.0, 0.5, 2.0], [3.0, 0.25, -1.0, 2.0]])
state = jax.device_put(jax.tree.map(lambda s: jnp.stack([s, s]), tx.init(grads[0])), per_worker)
update, state = step(jax.device_put(grads, per_worker), state)
print(json.dumps([np.asarray(update).tolist(), np.asarray(state.residual).tolist()]))
"""


def test_two_workers_average_their_top_k_messages():
    update, residual = json.loads(run_on_cpu_devices(TWO_WORKERS, devices=2)[-1])
    grads = np.asarray([[1.0, -4.0, 0.5, 2.0], [3.0, 0.25, -1.0, 2.0]], np.float32)
    expected, want_residual, _ = run_error_feedback(top_k_oracle, [{"w": grads}], ratio=0.5)
    np.testing.assert_allclose(update, expected[0]["w"], rtol=1e-6)  # [0.5, -2, 0, 2]
    np.testing.assert_allclose(residual, want_residual["w"], rtol=1e-6)
