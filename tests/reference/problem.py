"""The problem on which the recorded reference trajectories were run.

Three leaves, ``"w"`` of shape (3, 4), ``"b"`` of shape (4,) and ``"s"`` of shape (), hold
17 elements ``p_k`` (numbered in the order w, b, s, each leaf row-major). The loss at 1-based
step ``t`` is separable and nonconvex, with a slowly moving linear term::

    L_t(p) = sum_k  a_k p_k**2 + 0.5 sin(3 p_k) + c_k(t) p_k
    a_k    = 1 + 0.5 sin(1.3 k + 0.5)                  in [0.5, 1.5]
    c_k(t) = 0.8 cos(0.7 k + 0.2) + 0.4 sin(0.06 t + 0.9 k)
    p0_k   = 1.5 sin(2.1 k + 1.0) + 0.2

Its curvature ``2 a_k - 4.5 sin(3 p_k)`` changes sign, so there are several local minima per
element, yet ``a_k p**2`` keeps every trajectory bounded at the step sizes used. The moving
term keeps the minimisers moving, so no optimizer converges to within rounding error of a
stationary point: there, adaptive optimizers divide rounding noise by rounding noise, and a
port that differs from the framework in the last bit would take a different path.

The gradient fed at step ``t`` is ``factor(t) * dL_t/dp`` at the current params, with
``factor(t) = 0`` when ``t % 17 == 0`` (an all-zero gradient), else ``-1`` when
``t % 11 == 0`` (a sign-flipped gradient), else ``1``.

Everything is plain NumPy float64; :func:`gradient` also accepts ``xp=jax.numpy`` (with
``step`` possibly a traced integer), so jitted ports can be fed the same gradients without
this module importing JAX.
"""

from __future__ import annotations

import numpy as np

STEPS = 200
"""Number of steps recorded per case."""

SHAPES: dict[str, tuple[int, ...]] = {"w": (3, 4), "b": (4,), "s": ()}
"""Leaf names and shapes, in the element-numbering order."""


def _leaf_constants(values: np.ndarray) -> dict[str, np.ndarray]:
    out, start = {}, 0
    for name, shape in SHAPES.items():
        size = int(np.prod(shape, dtype=int))
        out[name] = values[start : start + size].reshape(shape)
        start += size
    return out


_K = np.arange(sum(int(np.prod(s, dtype=int)) for s in SHAPES.values()), dtype=np.float64)
A = _leaf_constants(1.0 + 0.5 * np.sin(1.3 * _K + 0.5))
C = _leaf_constants(0.8 * np.cos(0.7 * _K + 0.2))
PHASE = _leaf_constants(0.9 * _K)
DRIFT, OMEGA = 0.4, 0.06


def initial_params() -> dict[str, np.ndarray]:
    """Fresh float64 copies of the starting point ``p0``."""
    return {k: v.copy() for k, v in _leaf_constants(1.5 * np.sin(2.1 * _K + 1.0) + 0.2).items()}


def linear_coefficient(name: str, step, dtype, xp=np):
    """``c_k(step)`` for the elements of leaf ``name``."""
    return xp.asarray(C[name] + DRIFT * xp.sin(OMEGA * step + PHASE[name]), dtype)


def loss(params: dict, step, xp=np):
    """The (unscaled) loss ``L_step(p)``."""
    return sum(
        xp.sum(
            xp.asarray(A[k], p.dtype) * p**2
            + 0.5 * xp.sin(3.0 * p)
            + linear_coefficient(k, step, p.dtype, xp) * p
        )
        for k, p in params.items()
    )


def step_factor(step, xp=np):
    """``0`` if ``step % 17 == 0``, else ``-1`` if ``step % 11 == 0``, else ``1``."""
    return xp.where(step % 17 == 0, 0.0, xp.where(step % 11 == 0, -1.0, 1.0))


def gradient(params: dict, step, xp=np) -> dict:
    """The gradient fed at 1-based ``step``: ``step_factor(step) * dL_step/dp``, in each leaf's
    dtype."""
    factor = step_factor(step, xp)
    return {
        k: xp.asarray(factor, p.dtype)
        * (
            xp.asarray(2.0 * A[k], p.dtype) * p
            + 1.5 * xp.cos(3.0 * p)
            + linear_coefficient(k, step, p.dtype, xp)
        )
        for k, p in params.items()
    }
