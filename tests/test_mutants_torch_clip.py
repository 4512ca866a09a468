"""Tests that kill the mutants of gradtx/compat/pytorch/_clip.py, compat/pytorch/swa_utils.py,
compat/pytorch/_sparse_adam.py, compat/pytorch/_optim.py and compat/pytorch/_muon.py the other
test files let survive.

The verdicts, mutant by mutant: tests/MUTATION.md (issue 20). The references are NumPy
versions of the docstrings' rules, which are torch 2.13's (``torch.nn.utils.clip_grad_norm_``;
``torch.optim.Muon``'s step with ``_adjust_lr``; ``SparseAdam``, whose sparse gradient holds
whole rows; ``swa_utils``' ``AveragedModel``, which copies ``avg_fn``'s result into the
parameter in its dtype, and the factories' and ``update_bn``'s argument ranges), torch's
argument checks (messages in gradtx's style, asserted whole), and gradtx's dtype convention:
a leaf's arithmetic runs in its compute dtype (float32 at least) whatever ``jax_enable_x64``
says, so a float32 leaf keeps a float32 state and float32 updates under x64, computed with
float32 products and quotients.
"""

from __future__ import annotations

import math

from errors import raises_whole
import jax
import jax.numpy as jnp
import numpy as np

from gradtx import compat
from gradtx.compat.pytorch import swa_utils
from gradtx.compat.pytorch._clip import clip_grad_norm
from gradtx.compat.pytorch._sparse_adam import ScaleBySparseAdam, sparse_adam

# -- _clip: torch.nn.utils.clip_grad_norm_ ---------------------------------------------------


def _clip_once(tx, grads):
    return tx.update(grads, tx.init(grads))


def test_clip_grad_norm_of_float32_leaves_under_x64_is_float32_with_and_without_x64():
    # The rule in the leaves' compute dtype, float32, with x64 on or off (torch too computes it
    # in float32 for float32 gradients): coef = max_norm / (n + 1e-6), clamped to 1. 0.3 is no
    # float32: divided in float64 and then rounded it gives a coef one float32 ulp away.
    grads = {"w": np.array([3.0, -4.0], np.float32), "b": np.array([[0.0]], np.float32)}
    coef = np.float32(0.3) / (np.float32(5.0) + np.float32(1e-6))
    without = _clip_once(clip_grad_norm(0.3), grads)
    with jax.enable_x64(True):
        tx = clip_grad_norm(0.3)
        state = tx.init(grads)
        assert state.total_norm.dtype == jnp.float32  # the leaves' compute dtype
        with_x64 = tx.update(grads, state)
    for clipped, state in (without, with_x64):
        assert state.total_norm.dtype == jnp.float32 and state.total_norm == 5.0
        assert clipped["w"].dtype == jnp.float32
        np.testing.assert_array_equal(clipped["w"], coef * grads["w"])
        np.testing.assert_array_equal(clipped["b"], [[0.0]])


def test_clip_grad_norm_of_bfloat16_params_under_x64_keeps_a_float32_norm():
    params = {"w": jnp.array([3.0, -4.0], jnp.bfloat16)}
    with jax.enable_x64(True):
        tx = clip_grad_norm(1.0)
        state = tx.init(params)
        assert state.total_norm.dtype == jnp.float32
        clipped, state = tx.update(params, state)
    assert state.total_norm.dtype == jnp.float32 and state.total_norm == 5.0
    assert clipped["w"].dtype == jnp.bfloat16


def test_clip_grad_norm_with_an_infinite_max_norm_does_not_clip():
    # torch: inf / (n + 1e-6) = inf, clamped to 1: the gradients come back as they are.
    grads = {"w": jnp.array([300.0, -400.0])}
    clipped, state = _clip_once(clip_grad_norm(math.inf), grads)
    np.testing.assert_array_equal(clipped["w"], grads["w"])
    assert state.total_norm == 500.0


def test_error_if_nonfinite_gives_the_whole_message():
    tx = clip_grad_norm(1.0, norm_type=2.0, error_if_nonfinite=True)
    grads = {"w": jnp.array([3.0, -jnp.inf])}
    message = (
        "pytorch.clip_grad_norm(error_if_nonfinite=True): the total norm of order 2.0 of the "
        "updates is inf, so it cannot be clipped (as torch); set error_if_nonfinite=False to "
        "scale by it anyway"
    )
    with raises_whole(RuntimeError, message):
        jax.block_until_ready(_clip_once(tx, grads))


# -- _muon: torch.optim.Muon's adjust_lr_fn --------------------------------------------------


def test_muon_scales_by_torchs_width_ratio_of_an_out_by_in_weight(x64):
    # With ns_steps=0, momentum 0 and no decay, torch's step is -lr * ratio * g / |g|_F, with
    # ratio sqrt(max(1, A / B)) (None, "original") or 0.2 sqrt(max(A, B)) ("match_rms_adamw")
    # for a weight of shape (A, B) = (out, in).
    rng = np.random.default_rng(0)
    for shape in ((4, 2), (2, 4)):
        g = rng.normal(size=shape)
        direction = g / np.linalg.norm(g)
        rows, cols = shape
        for adjust_lr_fn, ratio in (
            (None, math.sqrt(max(1, rows / cols))),
            ("original", math.sqrt(max(1, rows / cols))),
            ("match_rms_adamw", 0.2 * math.sqrt(max(rows, cols))),
        ):
            tx = compat.pytorch.muon(
                lr=0.5,
                weight_decay=0.0,
                momentum=0.0,
                ns_steps=0,
                adjust_lr_fn=adjust_lr_fn,
                ns_dtype=None,
            )
            params = {"w": jnp.zeros(shape)}
            updates, _ = tx.update({"w": jnp.asarray(g)}, tx.init(params), params)
            np.testing.assert_allclose(
                updates["w"],
                -0.5 * ratio * direction,
                rtol=1e-12,
                err_msg=f"{shape} {adjust_lr_fn}",
            )


# -- swa_utils: AveragedModel, the get_*_avg_fn factories, update_bn -------------------------


def _average_of(swa, models, params0=None):
    """swa's state after updates with each of ``models`` (trees), from a copy of ``params0``."""
    state = swa.init(models[0] if params0 is None else params0)
    for p in models:
        state = swa.update(state, p)
    return state


def test_ema_decay_0_and_1_are_accepted_as_torchs_bounds():
    # torch raises only for decay < 0 or > 1. Decay 1 keeps the copy of the first update,
    # decay 0 follows the last model; at n_averaged = 0 both copy.
    models = [{"w": jnp.asarray(w)} for w in (2.0, 4.0, 8.0)]
    for factory in (swa_utils.get_ema_avg_fn, swa_utils.get_ema_multi_avg_fn):
        for decay, expected in ((1.0, 2.0), (0.0, 8.0)):
            avg = factory(decay)
            for swa in (
                swa_utils.averaged_model(avg_fn=avg),
                swa_utils.averaged_model(multi_avg_fn=avg),
            ):
                state = _average_of(swa, models, {"w": jnp.asarray(100.0)})
                assert float(state.params["w"]) == expected, (factory, decay)


def test_get_ema_avg_fn_defaults_to_torchs_decay_0_999():
    models = [{"w": jnp.asarray(w)} for w in (2.0, 1002.0)]
    for factory in (swa_utils.get_ema_avg_fn, swa_utils.get_ema_multi_avg_fn):
        state = _average_of(swa_utils.averaged_model(avg_fn=factory()), models)
        # 0.999 * 2 + 0.001 * 1002 = 3.0
        np.testing.assert_allclose(state.params["w"], 3.0, rtol=1e-5)


def test_a_functions_average_is_torchs_in_each_leafs_dtype():
    # torch calls avg_fn(a, p, n_averaged) from the second update on (the first is a copy) and
    # copies its result into the averaged parameter (copy_), in that parameter's dtype. This
    # function's average is the mean of the models, (1, 3), (2, 6), (6, 18): (3, 9).
    def mean_in_float32(a, p, n):
        return (a.astype(jnp.float32) * n + p.astype(jnp.float32)) / (n + 1)

    models = [{"w": jnp.asarray([w, 3 * w], jnp.bfloat16)} for w in (1.0, 2.0, 6.0)]
    for swa in (
        swa_utils.averaged_model(avg_fn=mean_in_float32),
        swa_utils.averaged_model(
            multi_avg_fn=lambda a, p, n: jax.tree.map(lambda x, y: mean_in_float32(x, y, n), a, p)
        ),
    ):
        state = _average_of(swa, models)
        assert state.params["w"].dtype == jnp.bfloat16
        np.testing.assert_array_equal(state.params["w"], np.array([3.0, 9.0]))


def test_averaged_model_places_its_trees_on_the_device_given():
    # torch's AveragedModel(device=...) moves the copy there; here jax.device_put commits the
    # averaged params and buffers to it. Without a device they stay where they were made.
    device = jax.devices()[0]
    params, buffers = {"w": jnp.zeros(2)}, {"b": jnp.zeros(1)}
    placed = swa_utils.averaged_model(device=device)
    free = swa_utils.averaged_model()
    for swa, committed in ((placed, True), (free, False)):
        state = swa.init(params, buffers)
        states = [state, swa.update(state, {"w": jnp.ones(2)}, {"b": jnp.ones(1)})]
        for s in states:
            for leaf in (s.params["w"], s.buffers["b"]):
                assert leaf.committed is committed and leaf.devices() == {device}
        np.testing.assert_array_equal(states[1].params["w"], [1.0, 1.0])


def _bn_mean(momentum):
    """A BatchNorm's stored mean, run from zero statistics: (1 - momentum) * the batch mean."""
    return lambda v, x: {"mean": v["batch_stats"]["mean"] * momentum + (1 - momentum) * x.mean()}


def test_update_bn_takes_momentum_0():
    # momentum 0 (the statistics of the last batch alone) is in [0, 1): the mean of the means.
    variables = {"batch_stats": {"mean": jnp.asarray(7.0)}}
    batches = [jnp.array([1.0, 3.0]), jnp.array([5.0, 7.0, 9.0])]
    out = swa_utils.update_bn(batches, _bn_mean(0.0), variables, momentum=0.0)
    assert float(out["batch_stats"]["mean"]) == 4.5


def test_update_bn_of_an_empty_loader_gives_the_whole_message():
    message = (
        "swa_utils.update_bn(loader=...): the loader gave no batch, so there are no "
        "statistics to compute"
    )
    with raises_whole(ValueError, message):
        swa_utils.update_bn([], _bn_mean(0.9), {"batch_stats": {"mean": jnp.zeros(())}})


# -- _sparse_adam: torch.optim.SparseAdam ------------------------------------------------------


def _sparse_adam_steps(grads, b1, b2, eps, dtype):
    """The docstring's (torch's) rule in NumPy, in ``dtype``'s arithmetic, in its order:
    sqrt(1 - b2**t) / (1 - b1**t) * m / (sqrt(v) + eps) at the present rows, 0 elsewhere
    (the bias corrections formed in float64 and rounded to dtype; ema as gradtx's ema)."""
    cast = np.dtype(dtype).type
    m = np.zeros_like(grads[0], dtype)
    v = np.zeros_like(grads[0], dtype)
    out = []
    for t, g in enumerate(grads, start=1):
        g = g.astype(dtype)
        present = np.any(g != 0, axis=1, keepdims=True) & np.ones(g.shape, bool)
        m = np.where(present, cast(1 - b1) * g + cast(b1) * m, m)
        v = np.where(present, cast(1 - b2) * (g * g) + cast(b2) * v, v)
        c1, c2 = cast(1 - b1**t), cast(1 - b2**t)
        step = np.sqrt(c2) / c1 * m / (np.sqrt(v) + cast(eps))
        out.append(np.where(present, step, cast(0)))
    return out


def test_sparse_adam_moves_the_zero_entries_of_a_present_row(x64):
    # A row of torch's sparse gradient is held whole: an entry that is 0 in a present row
    # decays its moments and moves (its momentum from step 1); a row of zeros does not.
    grads = [
        np.array([[1.0, 2.0], [0.0, 0.0], [-1.0, 0.5]]),
        np.array([[0.0, 3.0], [0.0, 0.0], [0.0, 0.0]]),
    ]
    tx = sparse_adam(lr=0.1)
    params = {"emb": jnp.zeros((3, 2))}
    state = tx.init(params)
    for g, step in zip(grads, _sparse_adam_steps(grads, 0.9, 0.999, 1e-8, np.float64)):
        updates, state = tx.update({"emb": jnp.asarray(g)}, state, params)
        np.testing.assert_allclose(updates["emb"], -0.1 * step, rtol=1e-12, atol=0)
    assert updates["emb"][0, 0] < -0.01 and np.all(updates["emb"][2] == 0)


def test_sparse_adam_steps_a_float32_leaf_in_float32_under_x64(x64):
    # The leaf's compute dtype is float32 whatever x64 says: every product, root and quotient
    # of the step in float32, so the steps equal NumPy's float32 arithmetic bit for bit.
    rng = np.random.default_rng(3)
    grads = [
        rng.normal(size=(8, 5)).astype(np.float32) * np.float32(10.0 ** rng.uniform(-3, 3))
        for _ in range(3)
    ]
    for g in grads:
        g[rng.integers(0, 8, size=3)] = 0  # absent rows
    tx = ScaleBySparseAdam(b1=0.7, b2=0.9, eps=1e-3)
    state = tx.init({"emb": jnp.zeros((8, 5), jnp.float32)})
    for g, expected in zip(grads, _sparse_adam_steps(grads, 0.7, 0.9, 1e-3, np.float32)):
        updates, state = tx.update({"emb": jnp.asarray(g)}, state)
        assert updates["emb"].dtype == jnp.float32
        np.testing.assert_array_equal(updates["emb"], expected)


# -- _optim: torch.optim's shells --------------------------------------------------------------


def test_without_weight_decay_torchs_optimizers_never_read_the_params():
    # weight_decay 0 adds nothing (torch skips it): update needs no params, as SGD's step.
    grads = {"w": jnp.array([1.0, -2.0])}
    sign = -0.1 * np.sign(grads["w"])  # Adagrad's and Adam's first step: -lr g / |g|
    for tx, first in (
        (compat.pytorch.sgd(0.1), -0.1 * grads["w"]),
        (compat.pytorch.adagrad(0.1), sign),
        (compat.pytorch.adam(0.1), sign),
        (compat.pytorch.adamw(0.1, weight_decay=0.0), sign),
    ):
        updates, _ = tx.update(grads, tx.init(grads))
        np.testing.assert_allclose(updates["w"], first, rtol=1e-5)


def test_the_adam_family_refuses_a_negative_lr_or_weight_decay_naming_the_call():
    # torch: "Invalid learning rate" / "Invalid weight_decay value" for values below 0.
    for name in ("adam", "adamax", "nadam", "radam"):
        build = getattr(compat.pytorch, name)
        for arg in ("lr", "weight_decay"):
            with raises_whole(ValueError, f"pytorch.{name}({arg}=-0.1): {arg} must be >= 0"):
                build(**{arg: -0.1})
        build(lr=0.0, weight_decay=0.0)  # the bounds are taken, as torch's
