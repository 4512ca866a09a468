"""Records every ``keras.optimizers.schedules`` class at steps 0..STEPS-1 in float64.

Run from the repository root, in an environment with Keras 3 (JAX backend)::

    .venv/bin/python tests/reference/record_keras_schedules.py

Each case (``cases()``: every class, each option, the edge cases of Keras's conventions) is
called as an optimizer calls it, on the int32 iteration count, op by op (``jax.disable_jit``),
with ``floatx`` float64 and x64 enabled. ``data/keras_schedules.npz`` holds ``"{index}/lr"``
(shape ``(STEPS,)``) and ``data/keras_schedules.json`` the cases (``{"index", "type",
"kwargs"}``, Keras's class and keyword names).

Keras 3.x takes ``ops.cos`` of a float64 tensor in float32 (its dtype lattice maps float64
to float32 on the JAX backend), so ``CosineDecay`` and ``CosineDecayRestarts`` carry float32
rounding. :func:`float64_cosine` keeps that cosine in float64 while recording, so the
reference is Keras's own formula in float64; ``test_compat_keras_schedules`` checks Keras
unpatched against the same port to float32 precision.
"""

from __future__ import annotations

from collections.abc import Iterable
import contextlib

import numpy as np

try:  # imported by the tests (package ``reference``) or run as a script
    from .record_layerwise import _init_keras
    from .recording import write_recording
except ImportError:
    from record_layerwise import _init_keras
    from recording import write_recording

STEPS = 1200


def cases() -> list[dict]:
    """Every schedule class, its options, and the steps where Keras's conventions show."""

    def case(type_, **kwargs):
        return {"type": type_, "kwargs": kwargs}

    return [
        case("ExponentialDecay", initial_learning_rate=0.1, decay_steps=100, decay_rate=0.5),
        case(
            "ExponentialDecay",
            initial_learning_rate=0.3,
            decay_steps=70,
            decay_rate=0.8,
            staircase=True,
        ),
        case("ExponentialDecay", initial_learning_rate=0.01, decay_steps=2.5, decay_rate=1.001),
        case(
            "PiecewiseConstantDecay",
            boundaries=[100, 400, 401, 900],
            values=[1.0, 0.5, 0.3, 0.2, 0.05],
        ),
        case("PiecewiseConstantDecay", boundaries=[0, 250.7, 250.7], values=[0.2, 0.1, 3.0, 0.01]),
        case("PolynomialDecay", initial_learning_rate=0.1, decay_steps=1000),
        case(
            "PolynomialDecay",
            initial_learning_rate=1.0,
            decay_steps=300,
            end_learning_rate=0.02,
            power=2.5,
        ),
        case(
            "PolynomialDecay",
            initial_learning_rate=1.0,
            decay_steps=170,
            end_learning_rate=0.1,
            power=0.5,
            cycle=True,
        ),
        case("PolynomialDecay", initial_learning_rate=0.5, decay_steps=64.5, cycle=True),
        case("InverseTimeDecay", initial_learning_rate=0.1, decay_steps=10, decay_rate=0.5),
        case(
            "InverseTimeDecay",
            initial_learning_rate=2.0,
            decay_steps=35,
            decay_rate=3.0,
            staircase=True,
        ),
        case("CosineDecay", initial_learning_rate=0.1, decay_steps=1000),
        case("CosineDecay", initial_learning_rate=1.0, decay_steps=700, alpha=0.15),
        case(
            "CosineDecay",
            initial_learning_rate=0.01,
            decay_steps=800,
            alpha=0.1,
            warmup_target=0.5,
            warmup_steps=150,
        ),
        case("CosineDecay", initial_learning_rate=0.3, decay_steps=500, warmup_target=0.7),
        case("CosineDecay", initial_learning_rate=0.2, decay_steps=100, warmup_steps=50),
        case("CosineDecayRestarts", initial_learning_rate=0.1, first_decay_steps=100),
        case(
            "CosineDecayRestarts",
            initial_learning_rate=1.0,
            first_decay_steps=7,
            t_mul=3.0,
            m_mul=0.8,
            alpha=0.05,
        ),
        case(
            "CosineDecayRestarts",
            initial_learning_rate=0.5,
            first_decay_steps=90,
            t_mul=1.0,
            m_mul=0.7,
            alpha=0.1,
        ),
        case(
            "CosineDecayRestarts",
            initial_learning_rate=1.0,
            first_decay_steps=33.3,
            t_mul=1.5,
            m_mul=1.1,
        ),
    ]


@contextlib.contextmanager
def float64_cosine():
    """Keras's JAX ``cos`` keeps float64 inputs in float64 inside the block."""
    import jax.numpy as jnp
    from keras.src.backend import numpy

    cos = numpy.cos

    def cos64(x):
        if jnp.asarray(x).dtype != jnp.float64:
            return cos(x)
        return jnp.cos(jnp.asarray(x))

    numpy.cos = cos64
    try:
        yield
    finally:
        numpy.cos = cos


def run_keras(case: dict, steps: Iterable[int] = range(STEPS), exact: bool = True) -> np.ndarray:
    """The schedule's values at the integer ``steps``, as an optimizer reads them.

    ``exact`` runs Keras inside :func:`float64_cosine`; without it Keras takes its cosine
    in float32.
    """
    import jax
    import jax.numpy as jnp

    keras = _init_keras()
    schedule = getattr(keras.optimizers.schedules, case["type"])(**case["kwargs"])
    # Op by op, as optimizer.apply runs it outside jit; without jit, CosineDecay's ops.cond
    # calls the branch instead of compiling a new lax.cond at every step. (Jitted, XLA gives
    # NaN for PolynomialDecay(power=2.5) from decay_steps on: pow of a constant exponent.)
    with jax.disable_jit(), float64_cosine() if exact else contextlib.nullcontext():
        values = [schedule(jnp.int32(t)) for t in steps]
    return np.asarray(values, dtype=np.float64)


def check(index: int, case: dict, lr: np.ndarray) -> None:
    """Raises unless the case is finite and changes."""
    if lr.shape != (STEPS,) or not np.all(np.isfinite(lr)) or np.ptp(lr) == 0:
        raise ValueError(f"case {index} {case}: not finite, of shape {lr.shape} or constant")


def main() -> None:
    _init_keras()
    recorded, arrays = cases(), []
    for index, case in enumerate(recorded):
        lr = run_keras(case)
        check(index, case, lr)
        arrays.append({"lr": lr})
        print(f"{index:2d} {case['type']:24s} {lr.min():.4g}..{lr.max():.4g}  {case['kwargs']}")
    write_recording("keras_schedules", recorded, arrays, ["keras", "jax"], steps=STEPS)


if __name__ == "__main__":
    main()
