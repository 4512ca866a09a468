"""Tests that kill the mutants of gradtx/_sam.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
The references are optax.contrib.sam (its defaults, and optax optimizers inside gradtx's SAM)
and NumPy versions of the docstrings' rules: SAM's cycle (Foret et al., ICLR 2021), ASAM's ascent
T^2 g / ||T g|| with T = |w| + eta, 1 outside the mask, eta = 0.01 by default (Kwon et al., ICML
2021, and the authors' ASAM class), Polyak's step for the loss passed as ``value=``; and the
compute-dtype rule: a float32 leaf's arithmetic runs in float32, with or without x64.
"""

from __future__ import annotations

import inspect

import chex
from errors import raises_whole
import jax
import jax.numpy as jnp
import numpy as np
import optax
from problems import make_params
import pytest
from replay import run_steps

import gradtx

GRADS = [make_params(seed=seed) for seed in (1, 2, 3, 4)]  # two cycles of two calls


def _assert_updates_close(mine, reference, rtol=1e-6):
    for u, v in zip(mine.updates, reference.updates, strict=True):
        chex.assert_trees_all_close(u, v, rtol=rtol, atol=1e-7)


# -- sam ---------------------------------------------------------------------------------


def test_sam_on_its_defaults_is_optaxs_on_its_defaults():
    # optax's defaults: sync_period 2, reset_state True, transparent mode (no grad_fn needed).
    # The adversarial momentum shows a reset: without it the second cycle's ascent differs.
    theirs = inspect.signature(optax.contrib.sam).parameters
    ours = gradtx.sam(
        gradtx.adam(0.05), gradtx.chain(gradtx.normalize(), gradtx.sgd(0.1, momentum=0.9))
    )
    fields = ("sync_period", "reset_state", "opaque_mode", "batch_axis_name")
    assert [getattr(ours, name) for name in fields] == [theirs[name].default for name in fields]
    reference = optax.contrib.sam(
        optax.adam(0.05), optax.chain(optax.contrib.normalize(), optax.sgd(0.1, momentum=0.9))
    )
    params = make_params()
    mine = run_steps(ours, GRADS, params, apply=gradtx.apply_updates, jit="eager")
    _assert_updates_close(mine, run_steps(reference, GRADS, params, apply=optax.apply_updates))


def test_optax_optimizers_inside_sam_are_wrapped_and_run_traced_as_in_optax():
    # "optimizer: a gradtx or optax transform": wrapped at construction, so that the SAM
    # transform is a pytree of arrays and numbers that jit takes as an argument.
    optimizers = (optax.adam(0.05), optax.chain(optax.contrib.normalize(), optax.sgd(0.1, 0.9)))
    ours, theirs = gradtx.sam(*optimizers), optax.contrib.sam(*optimizers)
    assert isinstance(ours.optimizer, gradtx.Transform)
    assert isinstance(ours.adv_optimizer, gradtx.Transform)
    params = make_params()
    mine = run_steps(ours, GRADS, params, apply=gradtx.apply_updates, jit="traced")
    _assert_updates_close(mine, run_steps(theirs, GRADS, params, apply=optax.apply_updates))


def test_a_whole_float_sync_period_runs_opaque_cycles_as_an_integer_one():
    # check_range admits 3.0 as a whole number; opaque mode loops range(sync_period - 1).
    adv = gradtx.chain(gradtx.normalize(), gradtx.sgd(0.05))
    ours = gradtx.sam(gradtx.sgd(0.1), adv, 3.0, opaque_mode=True)
    theirs = optax.contrib.sam(
        optax.sgd(0.1), optax.chain(optax.contrib.normalize(), optax.sgd(0.05)), 3, opaque_mode=True
    )
    params = make_params()

    def grad_fn(p, i):  # a different gradient at each adversarial step
        return jax.tree.map(lambda x: 2 * x + 0.5 * (i + 1), p)

    mine = ours.update(GRADS[0], ours.init(params), params, grad_fn=grad_fn)[0]
    reference = theirs.update(GRADS[0], theirs.init(params), params, grad_fn=grad_fn)[0]
    chex.assert_trees_all_close(mine, reference, rtol=1e-6, atol=1e-7)
    assert type(ours.sync_period) is int


def _quadratic_grad(x):
    """The gradient of 0.5 ||x - c||^2, c = (0.5, -0.5, 0)."""
    return jax.tree.map(lambda v: v - jnp.asarray([0.5, -0.5, 0.0], v.dtype), x)


def _polyak_step(value, g, cap=1.0):
    """Polyak's step min((f - 0) / |g|^2, cap) (scale_by_polyak's docstring, f_min = 0)."""
    return min(value / float(np.sum(np.square(g))), cap)


def _polyak_sam(opaque):
    # Both optimizers need value=: Polyak's step scales the normalised ascent (the step is
    # min(f / |n|^2, 1) = f for f < 1) and the outer SGD.
    adv = gradtx.chain(gradtx.normalize(), gradtx.scale_by_polyak())
    return gradtx.sam(gradtx.polyak_sgd(), adv, opaque_mode=opaque)


def test_transparent_sam_passes_the_loss_value_to_both_optimizers():
    tx = _polyak_sam(opaque=False)
    w = {"w": jnp.asarray([1.0, 2.0, -1.0])}
    state = tx.init(w)
    ascent, state = tx.update(_quadratic_grad(w), state, w, value=0.3)
    x1 = gradtx.apply_updates(w, ascent)
    back, state = tx.update(_quadratic_grad(x1), state, x1, value=0.2)
    # x_1 = w - adv(g(w)) = w - 0.3 g / |g|; then w <- w - step(0.2, g(x_1)) g(x_1).
    g0 = np.asarray(_quadratic_grad(w)["w"], np.float64)
    expected_x1 = np.asarray(w["w"]) - 0.3 * g0 / np.linalg.norm(g0)
    np.testing.assert_allclose(x1["w"], expected_x1, rtol=1e-6)
    g1 = expected_x1 - [0.5, -0.5, 0.0]
    expected = np.asarray(w["w"]) - _polyak_step(0.2, g1) * g1
    np.testing.assert_allclose(gradtx.apply_updates(x1, back)["w"], expected, rtol=1e-6)


def test_opaque_sam_passes_the_loss_value_to_both_optimizers():
    tx = _polyak_sam(opaque=True)
    w = {"w": jnp.asarray([1.0, 2.0, -1.0])}
    updates, _ = tx.update(
        _quadratic_grad(w), tx.init(w), w, value=0.3, grad_fn=lambda p, i: _quadratic_grad(p)
    )
    g0 = np.asarray(_quadratic_grad(w)["w"], np.float64)
    g1 = np.asarray(w["w"]) - 0.3 * g0 / np.linalg.norm(g0) - [0.5, -0.5, 0.0]
    np.testing.assert_allclose(updates["w"], -_polyak_step(0.3, g1) * g1, rtol=1e-6)


def test_opaque_mode_without_grad_fn_says_how_grad_fn_is_called():
    tx = gradtx.sam(gradtx.sgd(0.1), gradtx.normalize(), opaque_mode=True)
    params = make_params()
    message = (
        "sam(opaque_mode=True): update needs the gradient function as the keyword argument "
        "grad_fn=, called as grad_fn(params, i) for adversarial step i: "
        "update(grads, state, params, grad_fn=jax.grad(lambda p, i: loss(p, batch)))"
    )
    with raises_whole(ValueError, message):
        tx.update(GRADS[0], tx.init(params), params)


def test_the_way_back_and_the_outer_step_keep_bfloat16_params_bfloat16():
    # The step back c - p + u is computed in float32 and stored in the params' dtype.
    params = make_params(jnp.bfloat16)
    grads = [jax.tree.map(lambda g: g.astype(jnp.bfloat16), g) for g in GRADS[:2]]
    tx = gradtx.sam(gradtx.sgd(0.1), gradtx.chain(gradtx.normalize(), gradtx.sgd(0.05)))
    run = run_steps(tx, grads, params, apply=gradtx.apply_updates, jit="eager")
    for updates in run.updates:
        chex.assert_trees_all_equal_dtypes(updates, params)
    # After the cycle: the outer SGD step from the original params (bfloat16 rounding).
    expected = jax.tree.map(
        lambda p, g: p.astype(np.float32) - 0.1 * g.astype(np.float32), params, grads[1]
    )
    chex.assert_trees_all_close(run.params[-1], expected, rtol=2e-2, atol=2e-2)


# -- normalize ---------------------------------------------------------------------------


def _bits_with_and_without_x64(tx, grads, params=None):
    """``tx``'s first update of float32 ``grads`` without x64, then with it, eagerly."""
    plain = tx.update(grads, tx.init(params), params)[0]
    with jax.enable_x64(True):
        wide = tx.update(grads, tx.init(params), params)[0]
    return plain, wide


def _float32(seed, size=1000):
    return jnp.asarray(np.random.default_rng(seed).normal(size=size), jnp.float32)


def test_normalize_divides_a_float32_leaf_in_float32_with_and_without_x64():
    # Under x64 the norm is a float64 scalar; the division of a float32 leaf runs in float32,
    # so the bits are those without x64 (a float64 division then rounded differs by an ulp).
    grads = {"w": _float32(0)}
    plain, wide = _bits_with_and_without_x64(gradtx.normalize(), grads)
    assert wide["w"].dtype == jnp.float32
    np.testing.assert_array_equal(wide["w"], plain["w"])
    np.testing.assert_allclose(plain["w"], grads["w"] / np.linalg.norm(grads["w"]), rtol=1e-6)


def test_normalize_keeps_a_bfloat16_gradient_bfloat16():
    grads = {"w": _float32(1, 8).astype(jnp.bfloat16)}
    tx = gradtx.normalize()
    out = tx.update(grads, tx.init(grads))[0]["w"]
    assert out.dtype == jnp.bfloat16
    g = np.asarray(grads["w"], np.float64)
    np.testing.assert_allclose(np.asarray(out, np.float64), g / np.linalg.norm(g), rtol=1e-2)


def test_normalize_takes_an_empty_tree_and_a_leaf_of_size_zero():
    tx = gradtx.normalize()
    assert tx.update({}, tx.init({}))[0] == {}
    grads = {"empty": jnp.zeros((0, 3)), "w": jnp.array([3.0, 4.0])}
    out = tx.update(grads, tx.init(grads))[0]
    assert out["empty"].shape == (0, 3)
    np.testing.assert_allclose(out["w"], [0.6, 0.8], rtol=1e-6)


# -- scale_by_asam and asam ---------------------------------------------------------------


def _asam_direction(w, g, eta, on):
    """ASAM's ascent T^2 g / ||T g||, T = |w| + eta where ``on``, 1 elsewhere, in float64."""
    t = {k: np.abs(np.float64(w[k])) + eta if on[k] else np.ones(np.shape(w[k])) for k in w}
    norm = np.sqrt(sum(np.sum((t[k] * np.float64(g[k])) ** 2) for k in w))
    return {k: t[k] ** 2 * np.float64(g[k]) / norm for k in w}


WEIGHTS = {
    "weight": jnp.asarray([[0.5, -2.0, 0.1], [1.5, 0.0, -0.3]]),
    "bias": jnp.asarray([0.3, -1.0, 2.0]),
}
GRADIENTS = {
    "weight": jnp.asarray([[1.0, 0.2, -0.7], [0.4, -1.1, 0.6]]),
    "bias": jnp.asarray([-0.4, 0.9, 0.25]),
}


def test_scale_by_asam_defaults_to_the_authors_eta():
    tx = gradtx.scale_by_asam()
    out = tx.update(GRADIENTS, tx.init(WEIGHTS), WEIGHTS)[0]
    expected = _asam_direction(WEIGHTS, GRADIENTS, 0.01, {"weight": True, "bias": True})
    chex.assert_trees_all_close(out, expected, rtol=1e-6)


def test_scale_by_asam_takes_a_mask_function_of_the_params():
    # The authors' code: T on the weights only (masks.excluding("bias")); biases get T = 1.
    tx = gradtx.scale_by_asam(0.05, mask=gradtx.masks.excluding("bias"))
    out = tx.update(GRADIENTS, tx.init(WEIGHTS), WEIGHTS)[0]
    expected = _asam_direction(WEIGHTS, GRADIENTS, 0.05, {"weight": True, "bias": False})
    chex.assert_trees_all_close(out, expected, rtol=1e-6)


def test_scale_by_asam_without_params_is_refused_naming_it():
    tx = gradtx.scale_by_asam()
    message = "scale_by_asam needs the params: call update(updates, state, params)"
    with raises_whole(ValueError, message):
        tx.update(GRADIENTS, tx.init(WEIGHTS))


@pytest.mark.parametrize("on", [True, False], ids=["T", "identity"])
def test_scale_by_asam_of_a_float32_leaf_gives_the_same_bits_with_and_without_x64(on):
    # T (|w| + eta, or 1 where the mask leaves the leaf out) is made in the leaf's compute
    # dtype, float32: under x64 a float64 eta or 1 would carry the whole product into float64.
    params, grads = {"w": _float32(2)}, {"w": _float32(3)}
    tx = gradtx.scale_by_asam(0.01, mask={"w": on})
    plain, wide = _bits_with_and_without_x64(tx, grads, params)
    assert wide["w"].dtype == jnp.float32
    np.testing.assert_array_equal(wide["w"], plain["w"])
    expected = _asam_direction(params, grads, 0.01, {"w": on})
    np.testing.assert_allclose(plain["w"], expected["w"], rtol=1e-5)


def test_asam_is_sam_around_the_asam_ascent_with_every_argument_passed_on():
    # The docstring's definition: sam(optimizer, chain(scale_by_asam(eta, mask), sgd(rho)), ...).
    mask = gradtx.masks.excluding("bias")
    ours = gradtx.asam(gradtx.sgd(0.1), 0.3, 0.02, 3, False, True, "batch", mask=mask)
    ascent = gradtx.chain(gradtx.scale_by_asam(0.02, mask=mask), gradtx.sgd(0.3))
    assert ours == gradtx.sam(gradtx.sgd(0.1), ascent, 3, False, True, "batch")


def test_asam_with_rho_and_eta_zero_is_the_outer_optimizer():
    # rho = 0: no ascent, so the cycle is one SGD step at w (the bounds are >= 0, not > 0).
    tx = gradtx.asam(gradtx.sgd(0.1), rho=0.0, eta=0.0)
    run = run_steps(tx, [GRADIENTS, GRADIENTS], WEIGHTS, apply=gradtx.apply_updates, jit="eager")
    chex.assert_trees_all_equal(run.params[1], WEIGHTS)
    expected = jax.tree.map(lambda w, g: w - 0.1 * g, WEIGHTS, GRADIENTS)
    chex.assert_trees_all_close(run.params[2], expected, rtol=1e-6)


@pytest.mark.parametrize("arg", ["rho", "eta"])
def test_asam_refuses_a_negative_rho_or_eta_naming_asam(arg):
    message = f"asam({arg}=-0.001): {arg} must be a finite number >= 0"
    with raises_whole(ValueError, message):
        gradtx.asam(gradtx.sgd(0.1), **{arg: -1e-3})
