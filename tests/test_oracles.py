"""gradtx's named optimizers against the naive NumPy oracles of ``oracles.py``.

gradtx and the oracle start from the same float64 params and each follows its
own trajectory for 100 steps, taking the gradient of the same loss at its own
iterate (the oracle sees the params flattened into one array; every optimizer
here acts coordinate-wise). The trajectories must agree at rtol 1e-10. The
float64 rounding differences measured here stay below 4e-13 relative after 100
steps (under 1% of the tolerance), while every convention difference tried
(eps placement, AMSGrad's max, RAdam's threshold, NAdam's schedule, optax's
lagged Rprop) exceeds it a thousandfold or more. atol 1e-12 only covers
coordinates that pass near zero. Hyperparameters are chosen so that no
trajectory is chaotic (see ``assert_matches_oracle``).
"""

from __future__ import annotations

from collections.abc import Callable
import functools
from typing import Any

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np
import oracles
from problems import make_params, quadratic_loss, wavy_loss
import pytest

import gradtx

pytestmark = pytest.mark.usefixtures("x64")

STEPS = 100
RTOL, ATOL = 1e-10, 1e-12
PROBLEMS = {"quadratic": quadratic_loss, "wavy": wavy_loss}


def decaying(count):
    """A learning-rate schedule that works on NumPy ints and JAX tracers alike."""
    return 0.05 / (1.0 + 0.02 * count)


def slow_decaying(count):
    """A gentler schedule, for the sign methods' fixed-size steps."""
    return 0.01 / (1.0 + 0.01 * count)


@functools.cache
def flat_grad(problem: str) -> Callable[[np.ndarray], np.ndarray]:
    """The gradient of a problem's loss, as a function of the flattened float64 params."""
    _, unravel = ravel_pytree(make_params(jnp.float64))
    grad = jax.jit(lambda x: ravel_pytree(jax.grad(PROBLEMS[problem])(unravel(x)))[0])
    return lambda x: np.asarray(grad(jnp.asarray(x)))


def gradtx_trajectory(step, tx, problem: str) -> np.ndarray:
    """The flattened params after each of STEPS jitted gradtx steps."""
    params = make_params(jnp.float64)
    _, unravel = ravel_pytree(params)
    grad = flat_grad(problem)
    state = tx.init(params)
    out = []
    for _ in range(STEPS):
        x = np.asarray(ravel_pytree(params)[0])
        params, state = step(params, state, unravel(jnp.asarray(grad(x))))
        out.append(np.asarray(ravel_pytree(params)[0]))
    return np.stack(out)


def tolerances_used(actual: np.ndarray, expected: np.ndarray) -> float:
    """The largest difference, in units of the allowed atol + rtol * |expected|."""
    return float((np.abs(actual - expected) / (ATOL + RTOL * np.abs(expected))).max())


def assert_matches_oracle(actual: np.ndarray, oracle, grad, x0: np.ndarray) -> None:
    expected = oracle(x0, grad, STEPS)
    assert np.abs(expected[-1] - x0).max() > 1e-3, "the oracle did not move: a vacuous test"
    close = np.isclose(actual, expected, rtol=RTOL, atol=ATOL).all(axis=1)
    if close.all():
        return
    # Whether float64 rounding alone could explain it: the oracle against itself from a
    # start moved by ~1 ulp. A chaotic trajectory amplifies that past the tolerance.
    nudged = oracle(x0 * (1 + 4e-16), grad, STEPS)
    np.testing.assert_allclose(
        actual,
        expected,
        rtol=RTOL,
        atol=ATOL,
        err_msg=(
            f"the trajectories part at step {int(np.argmin(close)) + 1}. From x0 * (1 + 4e-16) "
            f"the oracle itself moves {tolerances_used(nudged, expected):.1e} tolerances "
            "(>= 1: chaotic dynamics, choose other hyperparameters)"
        ),
    )


def case(name: str, make_tx: Callable[[], Any], oracle: Callable[..., np.ndarray]):
    return pytest.param(make_tx, oracle, id=name)


P = functools.partial
CASES = [
    # SGD
    case("sgd", lambda: gradtx.sgd(0.1), P(oracles.sgd, learning_rate=0.1)),
    case("sgd-schedule", lambda: gradtx.sgd(decaying), P(oracles.sgd, learning_rate=decaying)),
    case(
        "sgd-momentum",
        lambda: gradtx.sgd(0.1, momentum=0.9),
        P(oracles.heavy_ball, learning_rate=0.1, momentum=0.9),
    ),
    case(
        "sgd-momentum-0.5",
        lambda: gradtx.sgd(0.05, momentum=0.5),
        P(oracles.heavy_ball, learning_rate=0.05, momentum=0.5),
    ),
    case(
        "sgd-nesterov",
        lambda: gradtx.sgd(0.1, momentum=0.9, nesterov=True),
        P(oracles.nesterov, learning_rate=0.1, momentum=0.9),
    ),
    case(
        "sgd-nesterov-0.6",
        lambda: gradtx.sgd(0.05, momentum=0.6, nesterov=True),
        P(oracles.nesterov, learning_rate=0.05, momentum=0.6),
    ),
    # Adagrad
    case("adagrad", lambda: gradtx.adagrad(0.1), P(oracles.adagrad, learning_rate=0.1)),
    case(
        "adagrad-zero-init",
        lambda: gradtx.adagrad(0.3, initial_accumulator_value=0.0, eps=1e-3),
        P(oracles.adagrad, learning_rate=0.3, initial_accumulator_value=0.0, eps=1e-3),
    ),
    # RMSprop
    # RMSprop's default eps=1e-8 makes g / sqrt(v + eps) ill-conditioned where g and v vanish
    # together (the quadratic's minimum); with lr >= 0.002 the trajectory turns chaotic there.
    case("rmsprop", lambda: gradtx.rmsprop(1e-3), P(oracles.rmsprop, learning_rate=1e-3)),
    case(
        "rmsprop-centered",
        lambda: gradtx.rmsprop(0.01, decay=0.8, eps=1e-4, centered=True),
        P(oracles.rmsprop, learning_rate=0.01, decay=0.8, eps=1e-4, centered=True),
    ),
    case(
        "rmsprop-momentum",
        lambda: gradtx.rmsprop(decaying, momentum=0.9, initial_scale=0.1),
        P(oracles.rmsprop, learning_rate=decaying, momentum=0.9, initial_scale=0.1),
    ),
    case(
        "rmsprop-graves",  # Graves 2013's settings, eqs. 38-41
        lambda: gradtx.rmsprop(0.01, decay=0.95, eps=1e-4, centered=True, momentum=0.9),
        P(oracles.rmsprop, learning_rate=0.01, decay=0.95, eps=1e-4, centered=True, momentum=0.9),
    ),
    case(
        "rmsprop-eps-outside",
        lambda: gradtx.rmsprop(0.01, decay=0.99, eps=1e-3, eps_in_sqrt=False),
        P(oracles.rmsprop, learning_rate=0.01, decay=0.99, eps=1e-3, eps_in_sqrt=False),
    ),
    # Adadelta
    case("adadelta", lambda: gradtx.adadelta(), oracles.adadelta),
    case(
        "adadelta-decay",
        lambda: gradtx.adadelta(0.5, rho=0.95, eps=1e-4, weight_decay=0.01),
        P(oracles.adadelta, learning_rate=0.5, rho=0.95, eps=1e-4, weight_decay=0.01),
    ),
    # Adam family
    case("adam", lambda: gradtx.adam(0.05), P(oracles.adam, learning_rate=0.05)),
    case(
        "adam-custom",
        lambda: gradtx.adam(decaying, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-10),
        P(oracles.adam, learning_rate=decaying, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-10),
    ),
    case("adamw", lambda: gradtx.adamw(0.05), P(oracles.adamw, learning_rate=0.05)),
    case(
        "adamw-custom",
        lambda: gradtx.adamw(decaying, b1=0.85, eps_root=1e-10, weight_decay=0.1),
        P(oracles.adamw, learning_rate=decaying, b1=0.85, eps_root=1e-10, weight_decay=0.1),
    ),
    case("adamax", lambda: gradtx.adamax(0.05), P(oracles.adamax, learning_rate=0.05)),
    case(
        "adamax-custom",
        lambda: gradtx.adamax(decaying, b1=0.8, b2=0.99, eps=1e-4),
        P(oracles.adamax, learning_rate=decaying, b1=0.8, b2=0.99, eps=1e-4),
    ),
    case("adamaxw", lambda: gradtx.adamaxw(0.05), P(oracles.adamaxw, learning_rate=0.05)),
    case(
        "adamaxw-custom",
        lambda: gradtx.adamaxw(0.05, b2=0.99, weight_decay=0.05),
        P(oracles.adamaxw, learning_rate=0.05, b2=0.99, weight_decay=0.05),
    ),
    case("nadam", lambda: gradtx.nadam(0.05), P(oracles.nadam, learning_rate=0.05)),
    case(
        "nadam-custom",
        lambda: gradtx.nadam(decaying, b1=0.8, b2=0.99, eps_root=1e-10),
        P(oracles.nadam, learning_rate=decaying, b1=0.8, b2=0.99, eps_root=1e-10),
    ),
    case("nadamw", lambda: gradtx.nadamw(0.05), P(oracles.nadamw, learning_rate=0.05)),
    case(
        "nadamw-custom",
        lambda: gradtx.nadamw(0.05, b1=0.95, weight_decay=0.05),
        P(oracles.nadamw, learning_rate=0.05, b1=0.95, weight_decay=0.05),
    ),
    case("amsgrad", lambda: gradtx.amsgrad(0.05), P(oracles.amsgrad, learning_rate=0.05)),
    case(
        "amsgrad-fast-b2",  # v^ shrinks as the gradients do, so the max holds old values
        lambda: gradtx.amsgrad(0.05, b2=0.9, eps=1e-6),
        P(oracles.amsgrad, learning_rate=0.05, b2=0.9, eps=1e-6),
    ),
    case(
        "amsgrad-paper",  # Reddi et al.'s Algorithm 2: no bias correction
        lambda: gradtx.amsgrad(0.02, b2=0.99, bias_correction_mu=False, bias_correction_nu=False),
        P(
            oracles.amsgrad,
            learning_rate=0.02,
            b2=0.99,
            bias_correction_mu=False,
            bias_correction_nu=False,
        ),
    ),
    case("radam", lambda: gradtx.radam(0.05), P(oracles.radam, learning_rate=0.05)),
    case(
        "radam-threshold-4",
        lambda: gradtx.radam(decaying, b1=0.8, b2=0.99, threshold=4.0),
        P(oracles.radam, learning_rate=decaying, b1=0.8, b2=0.99, threshold=4.0),
    ),
    # Sign methods
    case("rprop", lambda: gradtx.rprop(0.01), P(oracles.rprop, learning_rate=0.01)),
    case(
        "rprop-custom",
        lambda: gradtx.rprop(
            0.05, eta_minus=0.3, eta_plus=1.5, min_step_size=1e-4, max_step_size=0.2
        ),
        P(
            oracles.rprop,
            learning_rate=0.05,
            eta_minus=0.3,
            eta_plus=1.5,
            min_step_size=1e-4,
            max_step_size=0.2,
        ),
    ),
    case("sign_sgd", lambda: gradtx.sign_sgd(0.01), P(oracles.sign_sgd, learning_rate=0.01)),
    case(
        "sign_sgd-schedule",
        lambda: gradtx.sign_sgd(slow_decaying),
        P(oracles.sign_sgd, learning_rate=slow_decaying),
    ),
    case("signum", lambda: gradtx.signum(0.01), P(oracles.signum, learning_rate=0.01)),
    case(
        "signum-custom",
        lambda: gradtx.signum(slow_decaying, beta=0.5),
        P(oracles.signum, learning_rate=slow_decaying, beta=0.5),
    ),
    case("lion", lambda: gradtx.lion(0.01), P(oracles.lion, learning_rate=0.01)),
    case(
        "lion-custom",
        lambda: gradtx.lion(slow_decaying, b1=0.5, b2=0.9, weight_decay=0.1),
        P(oracles.lion, learning_rate=slow_decaying, b1=0.5, b2=0.9, weight_decay=0.1),
    ),
    # noisy_sgd: only its deterministic part has an oracle (the noise is tested below).
    case(
        "noisy_sgd-no-noise",
        lambda: gradtx.noisy_sgd(0.1, eta=0.0),
        P(oracles.sgd, learning_rate=0.1),
    ),
]


@pytest.mark.parametrize("make_tx, oracle", CASES)
def test_matches_paper_oracle(make_tx, oracle):
    tx = make_tx()

    @jax.jit
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return gradtx.apply_updates(params, updates), state

    x0 = np.asarray(ravel_pytree(make_params(jnp.float64))[0])
    for problem in PROBLEMS:
        actual = gradtx_trajectory(step, tx, problem)
        assert_matches_oracle(actual, oracle, flat_grad(problem), x0)


@pytest.mark.parametrize(
    "hyperparams", [{}, {"eta": 0.5, "gamma": 1.0}], ids=["default", "eta0.5-gamma1"]
)
def test_noisy_sgd_noise_variance(hyperparams):
    """With zero gradients and lr 1, the update is minus the noise: N(0, eta / t**gamma).

    Each leaf has n = 20000 samples, so a sample variance has relative standard
    deviation sqrt(2/n) = 1%; the tolerances below are five of those.
    """
    n, steps = 20_000, 50
    params = {"a": jnp.zeros((100, 200)), "b": jnp.zeros((n,))}
    tx = gradtx.noisy_sgd(1.0, key=jax.random.key(7), **hyperparams)
    zeros = jax.tree.map(jnp.zeros_like, params)
    update = jax.jit(tx.update)
    state = tx.init(params)
    noise = []
    for _ in range(steps):
        updates, state = update(zeros, state, params)
        noise.append(np.stack([-np.ravel(u) for u in jax.tree.leaves(updates)]))
    noise = np.stack(noise)  # (step, leaf, sample)
    assert noise.dtype == np.float64

    t = np.arange(1, steps + 1)
    expected = oracles.noise_variance(t, **hyperparams)
    variance = noise.var(axis=-1)
    tol = 5 * np.sqrt(2 / n)
    np.testing.assert_allclose(variance, np.stack([expected] * 2, axis=1), rtol=tol)
    # The decay exponent, fitted over all steps: its standard error is about 0.002.
    slope = np.polyfit(np.log(t), np.log(variance.mean(axis=1)), 1)[0]
    np.testing.assert_allclose(-slope, hyperparams.get("gamma", 0.55), atol=0.01)
    # Zero mean, and no correlation between steps or between leaves.
    std = np.sqrt(expected)[:, None]
    assert np.all(np.abs(noise.mean(axis=-1)) < 5 * std / np.sqrt(n))
    z = noise / std[..., None]
    assert abs(np.mean(z[0, 0] * z[1, 0])) < 5 / np.sqrt(n)
    assert abs(np.mean(z[0, 0] * z[0, 1])) < 5 / np.sqrt(n)
