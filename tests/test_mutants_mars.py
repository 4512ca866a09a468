"""Tests that kill the mutants of gradtx/_mars.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
References: the NumPy oracle of the MARS paper's Algorithms 1-3 (tests/oracles_modern.py, float64),
and the docstrings' update rules.
"""

from __future__ import annotations

import re

from errors import raises_whole
import jax
import jax.numpy as jnp
import numpy as np
import oracles_modern
import pytest
from replay import run_steps

import gradtx

# Three steps for a matrix and a vector. With the default gamma the corrected gradient's norms
# (w: 0.81, 1.99, 2.74; b: 3.38, 1.30, 1.89) lie below 1, between 1 and 2 and above 2, and differ
# between the leaves, so max_norm=1 and 2, per-leaf and global clipping all give other steps.
GRADS = [
    {"w": [[0.3, -0.2], [0.1, 0.4]], "b": [1.0, -2.0, 0.5]},
    {"w": [[-0.6, 0.9], [0.5, -0.3]], "b": [0.2, 0.1, -0.3]},
    {"w": [[1.2, -0.4], [0.8, 0.7]], "b": [-0.5, 0.6, 0.9]},
]

# The authors' defaults (MARS/optimizers/mars.py, and pytorch-optimizer's MARS): betas
# (0.95, 0.99), gamma 0.025, eps 1e-8, the corrected gradient clipped per tensor to norm 1.
AUTHORS = {"b1": 0.95, "b2": 0.99, "eps": 1e-8, "gamma": 0.025, "max_norm": 1.0}


def _grads(dtype):
    return [{k: jnp.asarray(v, dtype) for k, v in g.items()} for g in GRADS]


def _sum_of_updates(tx, dtype=jnp.float64):
    """The sum of ``tx``'s updates after each step, ``{leaf: (steps, *shape)}``, from zeros."""
    grads = _grads(dtype)
    zeros = jax.tree.map(jnp.zeros_like, grads[0])
    steps = run_steps(tx, grads, zeros, apply=gradtx.apply_updates)
    return {k: np.stack([np.asarray(p[k]) for p in steps.params[1:]]) for k in zeros}


def _oracle(**kwargs):
    # learning_rate=-1 and params from zeros: the oracle's params are the sums of the updates.
    zeros = {k: np.zeros_like(np.asarray(v)) for k, v in GRADS[0].items()}
    return oracles_modern.mars(zeros, lambda x, t: GRADS[t - 1], len(GRADS), -1.0, **kwargs)


def _assert_equal(ours, expected, rtol=1e-10, atol=1e-12):
    for k in expected:
        np.testing.assert_allclose(ours[k], expected[k], rtol=rtol, atol=atol, err_msg=k)


# -- scale_by_mars: defaults and hyperparameters passed on ---------------------------------


@pytest.mark.parametrize("optimizer", ["adamw", "lion"])
def test_scale_by_mars_with_its_defaults_follows_the_papers_algorithm(optimizer, x64):
    # scale_by_mars's defaults (b2 0.99, eps 1e-8, gamma 0.025, max_norm 1, clip_by "leaf",
    # optimizer "adamw") are the authors'; each is passed on to the parts.
    tx = gradtx.scale_by_mars() if optimizer == "adamw" else gradtx.scale_by_mars(optimizer="lion")
    _assert_equal(_sum_of_updates(tx), _oracle(optimizer=optimizer, **AUTHORS))


def test_scale_by_mars_passes_its_hyperparameters_on(x64):
    kwargs = {"b1": 0.9, "b2": 0.95, "eps": 1e-3, "gamma": 0.1, "max_norm": 1.5}
    _assert_equal(_sum_of_updates(gradtx.scale_by_mars(**kwargs)), _oracle(**kwargs))


def test_add_mars_correction_with_its_defaults_follows_the_docstring():
    # c_t = g_t + 0.025 * 0.95 / 0.05 * (g_t - g_{t-1}), g_0 = 0: the factor is 0.475.
    grads = [{"w": jnp.array([1.0, -2.0])}, {"w": jnp.array([3.0, 0.5])}]
    steps = run_steps(gradtx.add_mars_correction(), grads)
    np.testing.assert_allclose(steps.updates[0]["w"], [1.475, -2.95], rtol=1e-6)
    np.testing.assert_allclose(steps.updates[1]["w"], [3.0 + 0.95, 0.5 + 1.1875], rtol=1e-6)


def test_a_gamma_schedule_is_read_at_the_step_count():
    # gamma_t at counts 0, 1, 2 is 0.1, 0.2, 0.3; with b1 = 0.5 the factor b1 / (1 - b1) is 1.
    tx = gradtx.add_mars_correction(gamma=gradtx.linear_schedule(0.1, 0.4, 3), b1=0.5)
    grads = [{"w": jnp.array([1.0])}, {"w": jnp.array([3.0])}, {"w": jnp.array([-1.0])}]
    steps = run_steps(tx, grads)
    got = [float(u["w"][0]) for u in steps.updates]
    np.testing.assert_allclose(
        got, [1.0 + 0.1 * 1.0, 3.0 + 0.2 * 2.0, -1.0 + 0.3 * -4.0], rtol=1e-6
    )


# -- clipping, the Lion form, dtypes, names -----------------------------------------------


@pytest.mark.parametrize("factory", ["scale_by_mars", "mars"])
def test_clip_by_global_scales_all_leaves_by_one_norm(factory):
    # ||(3, 4, 0, 12)|| = 13: every leaf is divided by 13 (per leaf: by 5 and by 12).
    kwargs = {"gamma": 0.0, "optimizer": "lion", "clip_by": "global"}
    tx = (
        gradtx.scale_by_mars(**kwargs) if factory == "scale_by_mars" else gradtx.mars(1.0, **kwargs)
    )
    grads = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.0, 12.0])}
    _, state = tx.update(grads, tx.init(grads), grads)
    momentum = gradtx.tree_get(state, "ema")
    np.testing.assert_allclose(momentum["a"], 0.05 * np.array([3.0, 4.0]) / 13, rtol=1e-6)
    np.testing.assert_allclose(momentum["b"], 0.05 * np.array([0.0, 12.0]) / 13, rtol=1e-6)


def test_the_lion_form_is_the_undebiased_momentum_and_its_sign():
    # m_t = b1 m_{t-1} + (1 - b1) c_t; u_t = sign(m_t): no 1 - b1**t (which a sign would hide
    # in the numbers, but the recipe's parts show it: compared, read and printed).
    tx = gradtx.scale_by_mars(0.8, gamma=0.1, optimizer="lion", max_norm=None)
    parts = (gradtx.add_mars_correction(0.1, 0.8), gradtx.ema(0.8, debias=False))
    assert tx.transforms == (*parts, gradtx.scale_by_sign())


@pytest.mark.parametrize("factory", ["scale_by_mars", "mars"])
@pytest.mark.parametrize("optimizer", ["adamw", "lion"])
def test_mu_dtype_and_nu_dtype_set_the_moments_storage(factory, optimizer):
    kwargs = {"optimizer": optimizer, "mu_dtype": jnp.bfloat16, "nu_dtype": jnp.float16}
    tx = (
        gradtx.scale_by_mars(**kwargs) if factory == "scale_by_mars" else gradtx.mars(0.1, **kwargs)
    )
    params = {"w": jnp.zeros(2, jnp.float32)}
    state = tx.init(params)
    _, state = tx.update({"w": jnp.array([0.5, -1.0])}, state, params)
    if optimizer == "adamw":
        assert gradtx.tree_get(state, "mu")["w"].dtype == jnp.bfloat16
        assert gradtx.tree_get(state, "nu")["w"].dtype == jnp.float16
    else:
        assert gradtx.tree_get(state, "ema")["w"].dtype == jnp.bfloat16


def test_scale_by_mars_prints_under_its_name():
    tx = gradtx.scale_by_mars(optimizer="lion")
    assert tx.label == "scale_by_mars"
    assert repr(tx).startswith("scale_by_mars(")


# -- add_mars_correction: dtypes, x64, ranges -----------------------------------------------


def test_bfloat16_gradients_give_bfloat16_corrections_and_state():
    params = {"w": jnp.zeros(2, jnp.bfloat16)}
    grads = [
        {"w": jnp.array([1.0, -2.0], jnp.bfloat16)},
        {"w": jnp.array([3.0, 0.5], jnp.bfloat16)},
    ]
    steps = run_steps(gradtx.add_mars_correction(), grads, params, jit="eager")
    assert steps.updates[1]["w"].dtype == jnp.bfloat16
    assert steps.states[-1].prev_grad["w"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(steps.states[-1].prev_grad["w"], grads[1]["w"])
    np.testing.assert_allclose(
        np.asarray(steps.updates[1]["w"], np.float32), [3.95, 1.6875], rtol=1e-2
    )


def test_a_float32_correction_has_the_same_bits_under_x64():
    # AddMarsCorrection.update: gamma and b1 are cast to the leaf's compute dtype, so a float32
    # leaf is corrected in float32 with x64 on too (as every gradtx transform).
    tx = gradtx.add_mars_correction(gamma=0.1, b1=0.9)
    rng = np.random.default_rng(0)
    grads = [{"w": jnp.asarray(rng.normal(size=64), jnp.float32)} for _ in range(2)]
    x32 = run_steps(tx, grads, jit="eager").updates[1]["w"]
    with jax.enable_x64(True):
        grads64 = [{"w": jnp.asarray(g["w"], jnp.float32)} for g in grads]
        x64 = run_steps(tx, grads64, jit="eager").updates[1]["w"]
    assert x64.dtype == jnp.float32
    np.testing.assert_array_equal(x64, x32)


@pytest.mark.parametrize("b1", [1.0, 1.5])
def test_b1_of_1_or_more_is_refused_naming_it(b1):
    # Lion's ema accepts a decay of 1: add_mars_correction's own check refuses it (1 / (1 - b1)).
    with pytest.raises(ValueError, match=re.escape(f"add_mars_correction(b1={b1}): b1 must be")):
        gradtx.add_mars_correction(b1=b1)
    # scale_by_mars is a recipe: its error names it and the argument the user wrote.
    with pytest.raises(
        ValueError, match=re.escape(f"scale_by_mars(b1={b1}): b1 must be in [0, 1)")
    ):
        gradtx.scale_by_mars(b1, optimizer="lion")


@pytest.mark.parametrize(
    ("factory", "arg", "allowed"),
    [("scale_by_mars", "optimizer", "'adamw', 'lion'"), ("mars", "clip_by", "'leaf', 'global'")],
)
def test_an_unknown_choice_is_refused_naming_the_allowed_ones(factory, arg, allowed):
    args = (0.1,) if factory == "mars" else ()
    message = f"{factory}({arg}='sgd'): {arg} must be one of {allowed}"
    with raises_whole(ValueError, message):
        getattr(gradtx, factory)(*args, **{arg: "sgd"})
