"""Tests that kill the mutants of gradtx/_regularize.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from replay import run_steps

import gradtx

PARAMS = {"w": np.array([0.5, -2.0, 0.0], np.float32), "b": np.array([1.0, -0.25], np.float32)}
# The third weight stays at 0 (its gradients are 0): sign(0) = 0 adds no L1 subgradient.
GRADS = [
    {"w": np.array([0.5, -1.0, 0.0], np.float32), "b": np.array([2.0, 0.125], np.float32)},
    {"w": np.array([-1.5, 0.25, 0.0], np.float32), "b": np.array([-0.5, 1.0], np.float32)},
    {"w": np.array([1.0, 0.75, 0.0], np.float32), "b": np.array([0.25, -2.0], np.float32)},
]


def _weights_only(params):
    """A mask function: regularise ``w``, leave ``b`` alone."""
    del params
    return {"w": True, "b": False}


MASKS = [None, {"w": True, "b": False}, _weights_only]
MASK_IDS = ["no-mask", "mask-tree", "mask-function"]


def _selected(mask, key):
    return mask is None or (mask(PARAMS) if callable(mask) else mask)[key]


def _run(tx, grads=GRADS, params=PARAMS):
    """Steps ``tx`` over ``grads``, applying its updates: the (params, updates, state) of each."""
    grads, params = jax.tree.map(jnp.asarray, (grads, params))
    steps = run_steps(tx, grads, params, apply=gradtx.apply_updates, jit="bound")
    return list(zip(steps.params[:-1], steps.updates, steps.states[1:]))


def _assert_close(actual, desired):
    assert set(actual) == set(desired)
    for key in desired:
        np.testing.assert_allclose(actual[key], desired[key], rtol=1e-6, atol=1e-6, err_msg=key)


# -- add_decayed_weights: optax.add_decayed_weights --


@pytest.mark.parametrize("mask", MASKS, ids=MASK_IDS)
def test_add_decayed_weights_with_a_schedule_and_a_mask_matches_optax(mask):
    ours = gradtx.add_decayed_weights(gradtx.linear_schedule(0.1, 0.4, 3), mask)
    theirs = optax.add_decayed_weights(optax.linear_schedule(0.1, 0.4, 3), mask)
    state = theirs.init(PARAMS)
    for g, (params, u, _) in zip(GRADS, _run(ours), strict=True):
        expected, state = theirs.update(g, state, params)
        _assert_close(u, expected)


def test_add_decayed_weights_decays_nothing_by_default_as_optax():
    for g, (_, u, _) in zip(GRADS, _run(gradtx.add_decayed_weights()), strict=True):
        _assert_close(u, g)


# -- add_l1_penalty: g + l1 * sign(p) --


@pytest.mark.parametrize("mask", MASKS, ids=MASK_IDS)
def test_add_l1_penalty_adds_l1_times_the_sign_of_the_params(mask):
    l1 = gradtx.linear_schedule(0.1, 0.3, 2)  # 0.1, 0.2, 0.3 at the 0-based steps
    for t, (g, (params, u, state)) in enumerate(
        zip(GRADS, _run(gradtx.add_l1_penalty(l1, mask)), strict=True)
    ):
        expected = {
            k: g[k] + (0.1 * (t + 1) * np.sign(params[k]) if _selected(mask, k) else 0.0) for k in g
        }
        _assert_close(u, expected)
        assert u["w"][2] == 0.0  # sign(0) is 0
        if mask is None:
            assert state.count == t + 1


def test_add_l1_penalty_refuses_a_negative_coefficient_and_needs_the_params():
    gradtx.add_l1_penalty(0.5)
    with pytest.raises(ValueError, match=r"add_l1_penalty\(l1=-0.1\): l1 must be in \[0, inf\)"):
        gradtx.add_l1_penalty(-0.1)
    tx = gradtx.add_l1_penalty(0.1)
    with pytest.raises(ValueError, match=r"add_l1_penalty needs the params: call update\("):
        tx.update(GRADS[0], tx.init(PARAMS))


# -- soft_threshold: sign(q) * max(|q| - threshold, 0), q the stepped params --


@pytest.mark.parametrize("mask", MASKS, ids=MASK_IDS)
def test_soft_threshold_moves_the_stepped_params_to_their_proximal_point(mask):
    threshold = gradtx.linear_schedule(0.2, 0.6, 2)  # 0.2, 0.4, 0.6 at the 0-based steps
    for t, (g, (params, u, state)) in enumerate(
        zip(GRADS, _run(gradtx.soft_threshold(threshold, mask)), strict=True)
    ):
        expected = {}
        for k in g:
            q = params[k] + g[k]
            shrunk = np.sign(q) * np.maximum(np.abs(q) - 0.2 * (t + 1), 0.0)
            expected[k] = shrunk - params[k] if _selected(mask, k) else g[k]
        _assert_close(u, expected)
        if mask is None:
            assert state.count == t + 1
    # A weight stepped to within the threshold is exactly zero: b[1] = -0.25 + 0.125.
    params, u, _ = _run(gradtx.soft_threshold(threshold, mask))[0]
    assert (params["b"][1] + u["b"][1] == 0.0) == (mask is None)


def test_sgd_then_soft_threshold_is_ista_on_a_lasso_problem():
    a = np.array([[1.0, 0.5, 0.0], [0.0, 1.0, -1.0], [2.0, 0.0, 1.0], [0.5, -0.5, 0.5]])
    b = np.array([1.0, -0.5, 2.0, 0.25])
    lr, l1 = 0.1, 0.5
    tx = gradtx.chain(gradtx.sgd(lr), gradtx.soft_threshold(lr * l1))

    def loss(x):
        return 0.5 * jnp.sum((jnp.asarray(a, jnp.float32) @ x - b) ** 2)

    x = jnp.zeros(3)
    state, oracle = tx.init(x), np.zeros(3)
    for _ in range(8):
        u, state = tx.update(jax.grad(loss)(x), state, x)
        x = x + u
        q = oracle - lr * a.T @ (a @ oracle - b)
        oracle = np.sign(q) * np.maximum(np.abs(q) - lr * l1, 0.0)
        np.testing.assert_allclose(x, oracle, rtol=1e-5, atol=1e-6)
    assert oracle[1] == 0.0 and x[1] == 0.0  # the lasso drops the middle weight


def test_soft_threshold_refuses_a_negative_threshold_and_needs_the_params():
    gradtx.soft_threshold(0.5)
    with pytest.raises(
        ValueError, match=r"soft_threshold\(threshold=-0.1\): threshold must be in \[0, inf\)"
    ):
        gradtx.soft_threshold(-0.1)
    tx = gradtx.soft_threshold(0.1)
    with pytest.raises(ValueError, match=r"soft_threshold needs the params: call update\("):
        tx.update(GRADS[0], tx.init(PARAMS))


# -- add_decoupled_weight_decay: p -= lr * wd * p (torch's AdamW), or of the stepped params --


def test_adam_then_decoupled_weight_decay_is_torchs_adamw(x64):
    # In float64: in float32, 1 - 0.999**t rounds to 1e-5 of itself in Adam (as in optax).
    torch = pytest.importorskip("torch")  # the reference extra
    lr, wd = 0.1, 0.5
    tx = gradtx.chain(
        gradtx.scale_by_adam(),
        gradtx.scale_by_learning_rate(lr),
        gradtx.add_decoupled_weight_decay(wd, lr),
    )
    f64 = lambda tree: jax.tree.map(lambda x: np.asarray(x, np.float64), tree)  # noqa: E731
    params = {k: torch.tensor(v, requires_grad=True) for k, v in f64(PARAMS).items()}
    opt = torch.optim.AdamW(list(params.values()), lr=lr, weight_decay=wd)
    for g, (ours, _, _) in zip(GRADS, _run(tx, f64(GRADS), f64(PARAMS)), strict=True):
        for k, p in params.items():
            np.testing.assert_allclose(ours[k], p.detach().numpy(), rtol=1e-12, err_msg=k)
            p.grad = torch.tensor(g[k], dtype=torch.float64)
        opt.step()


@pytest.mark.parametrize("mask", MASKS, ids=MASK_IDS)
@pytest.mark.parametrize("of", ["params", "step"])
def test_decoupled_weight_decay_with_schedules_and_a_mask_follows_its_update_rule(of, mask):
    lr = gradtx.linear_schedule(0.2, 0.1, 2)  # 0.2, 0.15, 0.1 at the 0-based steps
    wd = gradtx.linear_schedule(0.5, 1.5, 2)  # 0.5, 1.0, 1.5
    tx = gradtx.chain(
        gradtx.scale_by_learning_rate(lr), gradtx.add_decoupled_weight_decay(wd, lr, mask, of=of)
    )
    for t, (g, (params, u, _)) in enumerate(zip(GRADS, _run(tx), strict=True)):
        lr_t, wd_t = 0.2 - 0.05 * t, 0.5 + 0.5 * t
        expected = {}
        for k in g:
            stepped = params[k] - lr_t * g[k]
            if not _selected(mask, k):
                new = stepped
            elif of == "step":
                new = stepped * (1 - lr_t * wd_t)
            else:
                new = stepped - lr_t * wd_t * params[k]
            expected[k] = new - params[k]
        _assert_close(u, expected)
    if of == "params":  # the docstring: with lr applied, add_decayed_weights before it is the same
        same = gradtx.chain(gradtx.add_decayed_weights(wd, mask), gradtx.scale_by_learning_rate(lr))
        for (_, u, _), (_, v, _) in zip(_run(tx), _run(same), strict=True):
            _assert_close(u, v)


def test_decoupled_weight_decay_counts_its_steps():
    for t, (_, _, state) in enumerate(_run(gradtx.add_decoupled_weight_decay(0.5, 0.1)), start=1):
        assert state.count == t


def test_decoupled_weight_decay_checks_its_arguments_when_built():
    for of in ("params", "step"):
        gradtx.add_decoupled_weight_decay(0.5, 0.1, of=of)
    name = r"add_decoupled_weight_decay"
    with pytest.raises(
        ValueError, match=rf"{name}\(weight_decay=-0.5\): weight_decay must be in \[0, inf\)"
    ):
        gradtx.add_decoupled_weight_decay(-0.5, 0.1)
    with pytest.raises(
        ValueError, match=rf"{name}\(learning_rate=-0.1\): learning_rate must be in \[0, inf\)"
    ):
        gradtx.add_decoupled_weight_decay(0.5, -0.1)
    with pytest.raises(
        ValueError, match=rf"{name}\(of='stepped'\): of must be one of 'params', 'step'"
    ):
        gradtx.add_decoupled_weight_decay(0.5, 0.1, of="stepped")
    tx = gradtx.add_decoupled_weight_decay(0.5, 0.1)
    with pytest.raises(ValueError, match=rf"{name} needs the params: call update\("):
        tx.update(GRADS[0], tx.init(PARAMS))


# -- dtypes: bfloat16 leaves stay bfloat16; float32 leaves compute in float32 under x64 --

DTYPE_CASES = {
    "decayed-weights": lambda: gradtx.add_decayed_weights(0.1),
    "l1": lambda: gradtx.add_l1_penalty(0.1),
    "soft-threshold": lambda: gradtx.soft_threshold(0.1),
    "decoupled": lambda: gradtx.add_decoupled_weight_decay(0.5, 0.1),
    "decoupled-step": lambda: gradtx.add_decoupled_weight_decay(0.5, 0.1, of="step"),
}


@pytest.mark.parametrize("make", DTYPE_CASES.values(), ids=DTYPE_CASES)
def test_bfloat16_updates_stay_bfloat16(make):
    bf16 = lambda tree: jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), tree)  # noqa: E731
    for _, u, _ in _run(make(), [bf16(g) for g in GRADS[:2]], bf16(PARAMS)):
        for leaf in jax.tree.leaves(u):
            assert leaf.dtype == jnp.bfloat16


@pytest.mark.parametrize("make", DTYPE_CASES.values(), ids=DTYPE_CASES)
def test_float32_leaves_give_the_same_bits_with_and_without_x64(make):
    # The hyperparameter is taken in the leaves' compute dtype (float32), not in the default
    # float, which is float64 under jax_enable_x64 (optax's Python-float weight decay is weak).
    rng = np.random.default_rng(0)
    params = {"w": np.asarray(rng.normal(size=256), np.float32)}
    grads = [{"w": np.asarray(rng.normal(size=256), np.float32)} for _ in range(2)]
    without = _run(make(), grads, params)
    with jax.enable_x64(True):
        with_x64 = _run(make(), grads, params)
    for (_, a, _), (_, b, _) in zip(without, with_x64, strict=True):
        assert b["w"].dtype == jnp.float32
        np.testing.assert_array_equal(a["w"], b["w"])
