"""Tests that kill the mutants of gradtx/_adam.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
from oracles import radam_rectification
import pytest
from replay import run_steps

import gradtx
from gradtx._adam import _radam_rho

# Eight steps of three leaves: one at eps's scale, one small, one of order 1; the second step a
# spike, so that AMSGrad's maximum and Adamax's norm hold it for the steps after.
GRADS = np.random.default_rng(0).normal(size=(8, 3)) * np.array([1e-3, 0.1, 1.0])
GRADS[1] *= 10.0


def _run(tx, grads=GRADS, dtype=jnp.float32, jit="traced", keep=False):
    """The updates of ``tx`` over ``grads`` (one row a step, float64, or as they came with
    ``keep``) and the last state."""
    steps = run_steps(tx, [jnp.asarray(g, dtype) for g in grads], jit=jit)
    out = steps.updates if keep else np.stack([np.asarray(u, np.float64) for u in steps.updates])
    return out, steps.states[-1]


# -- naive float64 references of the docstrings' update rules --------------------------------


def _eps_at(eps, eps_mode, bc2):
    return eps / np.sqrt(bc2) if eps_mode == "raw" else eps


def _adam_reference(
    b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, eps_mode="corrected", max_of=None, grads=GRADS
):
    """Adam; with max_of, AMSGrad (the max of the corrected or of the raw v_t)."""
    m = v = v_max = np.zeros(grads.shape[1])
    out = []
    for t, g in enumerate(grads, 1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
        bc2 = 1 - b2**t
        if max_of == "corrected":
            v_max = np.maximum(v_max, v / bc2)
            v_hat = v_max
        elif max_of == "raw":
            v_max = np.maximum(v_max, v)
            v_hat = v_max / bc2
        else:
            v_hat = v / bc2
        out.append(m / (1 - b1**t) / (np.sqrt(v_hat + eps_root) + _eps_at(eps, eps_mode, bc2)))
    return np.stack(out)


def _adamax_reference(b1=0.9, b2=0.999, eps=1e-8, eps_in_max=True, grads=GRADS):
    m = n = np.zeros(grads.shape[1])
    out = []
    for t, g in enumerate(grads, 1):
        m = b1 * m + (1 - b1) * g
        if eps_in_max:
            n = np.maximum(b2 * n, np.abs(g) + eps)
            out.append(m / (1 - b1**t) / n)
        else:
            n = np.maximum(b2 * n, np.abs(g))
            out.append(m / (1 - b1**t) / (n + eps))
    return np.stack(out)


def _nadam_reference(
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    momentum_decay=4e-3,
    simplified=False,
    eps_mode="corrected",
    grads=GRADS,
):
    def mu_at(t):
        return b1 if simplified else b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))

    m = v = np.zeros(grads.shape[1])
    product = 1.0
    out = []
    for t, g in enumerate(grads, 1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
        mu_t, mu_next = mu_at(t), mu_at(t + 1)
        product *= mu_t
        m_hat = (1 - mu_t) / (1 - product) * g + mu_next / (1 - product * mu_next) * m
        bc2 = 1 - b2**t
        out.append(m_hat / (np.sqrt(v / bc2 + eps_root) + _eps_at(eps, eps_mode, bc2)))
    return np.stack(out)


def _radam_reference(
    b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, threshold=5.0, eps_mode="corrected", grads=GRADS
):
    m = v = np.zeros(grads.shape[1])
    out = []
    for t, g in enumerate(grads, 1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
        bc2 = 1 - b2**t
        ro, r = radam_rectification(t, b2)
        m_hat = m / (1 - b1**t)
        if ro >= threshold:
            m_hat = r * m_hat / (np.sqrt(v / bc2 + eps_root) + _eps_at(eps, eps_mode, bc2))
        out.append(m_hat)
    return np.stack(out)


def _assert_close(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=3e-5, atol=1e-7)


# -- defaults -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tx, expected",
    [
        (gradtx.scale_by_adam, _adam_reference),
        (gradtx.scale_by_amsgrad, lambda: _adam_reference(max_of="corrected")),
        (gradtx.scale_by_adamax, _adamax_reference),
        (gradtx.scale_by_nadam, _nadam_reference),
        (gradtx.scale_by_radam, _radam_reference),
    ],
    ids=["adam", "amsgrad", "adamax", "nadam", "radam"],
)
def test_the_default_hyperparameters_are_the_documented_ones(tx, expected):
    # eps=1e-8, eps_root=0, b2=0.999, both bias corrections, momentum_decay=4e-3 and the
    # momentum schedule (not simplified), RAdam's threshold 5 (rho_6 is between 5 and 6).
    _assert_close(_run(tx())[0], expected())


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (gradtx.scale_by_adam, optax.scale_by_adam),
        (gradtx.scale_by_amsgrad, optax.scale_by_amsgrad),
        (gradtx.scale_by_adamax, optax.scale_by_adamax),
    ],
    ids=["adam", "amsgrad", "adamax"],
)
def test_a_constant_b1_gives_optaxs_bits(ours, theirs):
    # _b1_at returns a number as it is, so 1 - b1 is formed in float64 as optax does.
    np.testing.assert_array_equal(_run(ours(), jit="eager")[0], _run(theirs(), jit="eager")[0])


# -- b1 as a schedule -----------------------------------------------------------------------

FACTORIES = {
    "adam": gradtx.scale_by_adam,
    "amsgrad": gradtx.scale_by_amsgrad,
    "adamax": gradtx.scale_by_adamax,
    "nadam": gradtx.scale_by_nadam,
    "radam": gradtx.scale_by_radam,
}


@pytest.mark.parametrize("name", FACTORIES)
def test_a_b1_schedule_is_evaluated_at_the_step_count(name):
    # A schedule that needs its count (None would raise) and gives 0.8 at every step.
    def b1(count):
        return 0.8 + 0.0 * count

    scheduled, _ = _run(FACTORIES[name](b1=b1), jit="eager")
    _assert_close(scheduled, _run(FACTORIES[name](b1=0.8))[0])


# -- storage dtypes ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", FACTORIES)
def test_mu_dtype_and_nu_dtype_set_the_moments_storage(name):
    tx = FACTORIES[name](mu_dtype=jnp.bfloat16, nu_dtype=jnp.float16)
    _, state = _run(tx)
    moments = {"mu": state.mu, "nu": state.nu, "nu_max": getattr(state, "nu_max", state.nu)}
    assert {k: v.dtype for k, v in moments.items()} == {
        "mu": jnp.bfloat16,
        "nu": jnp.float16,
        "nu_max": jnp.float16,
    }


@pytest.mark.parametrize("name", FACTORIES)
def test_bfloat16_gradients_give_bfloat16_updates_and_state(name):
    updates, state = _run(FACTORIES[name](), grads=GRADS[:3], dtype=jnp.bfloat16, keep=True)
    moments = [state.mu, state.nu, getattr(state, "nu_max", state.nu)]
    assert {leaf.dtype for leaf in [*updates, *moments]} == {jnp.dtype(jnp.bfloat16)}


# -- eps before bias correction (Keras, TensorFlow, PyTorch's RAdam) -------------------------

SMALL_EPS = {"eps": 1e-3, "eps_root": 1e-6, "eps_mode": "raw"}


@pytest.mark.parametrize(
    "name, reference, options",
    [
        ("adam", _adam_reference, {"b1": 0.8, "b2": 0.99}),
        ("amsgrad", _adam_reference, {"max_of": "raw"}),
        ("nadam", _nadam_reference, {}),
        ("radam", _radam_reference, {}),
    ],
    ids=["adam", "amsgrad", "nadam", "radam"],
)
def test_eps_mode_raw_adds_eps_before_the_bias_correction(name, reference, options):
    # Built in the test, not at collection, so that a mutant of the factory is active.
    tx = FACTORIES[name](**options, **SMALL_EPS)
    _assert_close(_run(tx)[0], reference(**options, **SMALL_EPS))


@pytest.mark.parametrize(
    "options",
    [{"eps": 1e-3, "eps_root": 1e-6}, {"max_of": "raw"}, {"max_of": "raw", "eps": 1e-3}],
    ids=["eps-root", "max-of-raw", "max-of-raw-eps"],
)
def test_amsgrad_takes_the_maximum_of_the_corrected_or_the_raw_second_moment(options):
    expected = _adam_reference(
        max_of=options.get("max_of", "corrected"),
        **{k: v for k, v in options.items() if k != "max_of"},
    )
    _assert_close(_run(gradtx.scale_by_amsgrad(**options))[0], expected)


@pytest.mark.parametrize("eps_in_max", [True, False], ids=["pytorch", "keras"])
def test_adamax_puts_eps_inside_or_outside_the_max(eps_in_max):
    tx = gradtx.scale_by_adamax(b1=0.8, b2=0.9, eps=0.1, eps_in_max=eps_in_max)
    _assert_close(_run(tx)[0], _adamax_reference(b1=0.8, b2=0.9, eps=0.1, eps_in_max=eps_in_max))


# -- NAdam's momentum schedule ----------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"momentum_decay": 1.0},  # Keras 3: 0.96**t
        {"momentum_decay": 0.3, "b1": 0.7, "b2": 0.95},
        {"simplified": True},
        {"eps": 1e-3, "eps_root": 1e-5},
    ],
    ids=["keras", "b1-b2", "simplified", "eps"],
)
def test_nadam_follows_dozats_momentum_schedule(options):
    _assert_close(_run(gradtx.scale_by_nadam(**options))[0], _nadam_reference(**options))


def test_simplified_nadam_is_adam_with_nesterov():
    # The docstring's claim; the constant mu_t = b1 makes P_t = b1**t.
    tx = gradtx.scale_by_nadam(simplified=True)
    _assert_close(_run(tx)[0], _run(gradtx.scale_by_adam(nesterov=True))[0])


# -- RAdam ----------------------------------------------------------------------------------


def test_radams_threshold_is_reached_when_rho_equals_it():
    # ro >= threshold: a threshold equal to rho_6 (as gradtx computes it) rectifies step 6.
    threshold = float(_radam_rho(jnp.asarray(6, jnp.int32), 0.999)[0])
    updates = _run(gradtx.scale_by_radam(threshold=threshold))[0]
    expected = _radam_reference(threshold=threshold - 1e-4)
    _assert_close(updates, expected)
    assert not np.allclose(updates[5], _radam_reference(threshold=threshold + 1e-4)[5])


@pytest.mark.parametrize(
    "options", [{"eps": 1e-3, "eps_root": 1e-5}, {"b1": 0.7, "b2": 0.99}], ids=["eps", "betas"]
)
def test_radam_takes_its_hyperparameters(options):
    _assert_close(_run(gradtx.scale_by_radam(**options))[0], _radam_reference(**options))


# -- validation -------------------------------------------------------------------------------


def test_eps_may_be_0_when_eps_root_is_not():
    tx = gradtx.scale_by_adam(eps=0.0, eps_root=1e-8)
    assert np.isfinite(_run(tx, grads=np.zeros((2, 3)))[0]).all()
    with pytest.raises(ValueError, match=r"eps and eps_root all 0"):
        gradtx.scale_by_adam(eps=0.0, eps_root=0.0)


def test_amsgrad_accepts_max_of_raw_and_names_the_choices():
    assert gradtx.scale_by_amsgrad(max_of="raw").max_of == "raw"
    with pytest.raises(ValueError, match=r"max_of must be one of 'corrected', 'raw'"):
        gradtx.scale_by_amsgrad(max_of="RAW")
