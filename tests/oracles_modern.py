"""Naive NumPy oracles for MARS and cautious optimizers, written from the papers' algorithms.

Unlike :mod:`oracles` (one array), these run on a dict of float64 leaves, because both
methods take a norm or a mean over each tensor: ``gradient(params, t)`` gives the
gradients at 1-based step ``t``; each oracle returns ``{leaf: (steps, *shape)}``, the
params after every step, as :func:`replay.trajectory` does. A Python loop over steps
and leaves, each line following the paper's algorithm box, cited beside it.
``learning_rate`` is a number or a schedule of the 0-based step (optax's convention).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Gradient = Callable[[dict, int], dict]


def _rate(learning_rate, t: int) -> float:
    return float(learning_rate(t - 1)) if callable(learning_rate) else learning_rate


def _run(params0: dict, gradient: Gradient, steps: int, step_leaf) -> dict:
    """Calls ``step_leaf(name, x, g, t, memory)`` -> new x, for every leaf and step."""
    x = {k: np.array(v, dtype=np.float64) for k, v in params0.items()}
    memory: dict = {k: {} for k in x}
    out: dict = {k: [] for k in x}
    for t in range(1, steps + 1):
        g = gradient(x, t)
        x = {k: step_leaf(x[k], np.asarray(g[k], np.float64), t, memory[k]) for k in x}
        for k in x:
            out[k].append(x[k])
    return {k: np.stack(v) for k, v in out.items()}


def mars(
    params0: dict,
    gradient: Gradient,
    steps: int,
    learning_rate,
    b1: float = 0.95,
    b2: float = 0.99,
    eps: float = 1e-8,
    gamma: float = 0.025,
    weight_decay: float = 0.0,
    optimizer: str = "adamw",
    max_norm: float | None = 1.0,
) -> dict:
    """MARS-approx, Yuan et al. 2024 (arXiv:2411.10438), Algorithm 1 with Algorithms 2/3.

    Per tensor, as the authors' code (``MARS/optimizers/mars.py``, ``optimize_1d=True``):
    ``c_t = g_t + gamma b1/(1-b1) (g_t - g_{t-1})`` with g_0 = 0 (approx: the previous
    step's gradient); ``c~_t = c_t / ||c_t||`` when ``||c_t|| > 1`` (scaled to ``max_norm``
    here); ``m_t = b1 m + (1-b1) c~_t``. AdamW (Algorithm 2): ``v_t = b2 v + (1-b2) c~_t**2``,
    ``x <- x - lr (m_t/(1-b1^t) / (sqrt(v_t/(1-b2^t)) + eps) + wd x)``. Lion (Algorithm 3):
    ``x <- x - lr (sign(m_t) + wd x)``.
    """

    def step(x, g, t, mem):
        prev = mem.get("g", np.zeros_like(g))
        c = g + gamma * b1 / (1.0 - b1) * (g - prev)
        norm = np.sqrt(np.sum(c * c))
        if max_norm is not None and norm > max_norm:
            c = c / norm * max_norm
        m = b1 * mem.get("m", 0.0) + (1.0 - b1) * c
        if optimizer == "adamw":
            v = b2 * mem.get("v", 0.0) + (1.0 - b2) * c * c
            mem["v"] = v
            u = (m / (1.0 - b1**t)) / (np.sqrt(v / (1.0 - b2**t)) + eps)
        else:
            u = np.sign(m)
        mem["m"], mem["g"] = m, g
        return x - _rate(learning_rate, t) * (u + weight_decay * x)

    return _run(params0, gradient, steps, step)


def _cautious_mask(u: np.ndarray, g: np.ndarray, eps: float, normalize: str) -> np.ndarray:
    """Liang et al. 2024: phi = 1(u o g > 0), scaled by d / (nnz(phi) + eps), or 1/(mean + eps).

    ``u`` here is the step subtracted from x (the paper's convention), so agreement is > 0.
    """
    phi = (u * g > 0).astype(np.float64)
    if normalize == "count":
        return phi * (phi.size / (phi.sum() + eps))
    return phi / (phi.mean() + eps)


def cautious_adamw(
    params0: dict,
    gradient: Gradient,
    steps: int,
    learning_rate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    mask_eps: float = 1.0,
    normalize: str = "count",
    caution: bool = True,
) -> dict:
    """C-AdamW, Liang et al. 2024 (arXiv:2411.16085), Algorithm 2, per tensor.

    ``u_t = m^_t / (sqrt(v^_t) + eps)``; ``phi_t = 1(u_t o g_t > 0)``;
    ``x <- x - lr (u_t phi_t d / (nnz(phi_t) + 1)) - lr wd x`` (the decay is not masked).
    ``caution=False`` is plain AdamW (Loshchilov & Hutter, Algorithm 2).
    """

    def step(x, g, t, mem):
        m = b1 * mem.get("m", 0.0) + (1.0 - b1) * g
        v = b2 * mem.get("v", 0.0) + (1.0 - b2) * g * g
        mem["m"], mem["v"] = m, v
        u = (m / (1.0 - b1**t)) / (np.sqrt(v / (1.0 - b2**t)) + eps)
        lr = _rate(learning_rate, t)
        mask = _cautious_mask(u, g, mask_eps, normalize) if caution else 1.0
        return x - lr * u * mask - lr * weight_decay * x

    return _run(params0, gradient, steps, step)


def cautious_lion(
    params0: dict,
    gradient: Gradient,
    steps: int,
    learning_rate,
    b1: float = 0.9,
    b2: float = 0.99,
    weight_decay: float = 0.0,
    mask_eps: float = 1.0,
    normalize: str = "count",
) -> dict:
    """C-Lion, Liang et al. 2024, Algorithm 3, per tensor (Lion: Chen et al. 2023, Algorithm 2).

    ``u_t = sign(b1 m + (1-b1) g_t)``; ``m <- b2 m + (1-b2) g_t``;
    ``x <- x - lr (u_t phi_t d / (nnz(phi_t) + 1)) - lr wd x``.
    """

    def step(x, g, t, mem):
        m = mem.get("m", np.zeros_like(g))
        u = np.sign(b1 * m + (1.0 - b1) * g)
        mem["m"] = b2 * m + (1.0 - b2) * g
        lr = _rate(learning_rate, t)
        return x - lr * u * _cautious_mask(u, g, mask_eps, normalize) - lr * weight_decay * x

    return _run(params0, gradient, steps, step)


def madgrad(
    params0: dict,
    gradient: Gradient,
    steps: int,
    learning_rate,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    eps: float = 1e-6,
) -> dict:
    """MADGRAD, Defazio & Jelassi 2021 (arXiv:2101.11075), Algorithm 1, as optax.contrib's.

    With k = t - 1: ``lambda_k = (lr_k + eps) sqrt(k + 1)`` (optax adds eps to lr; the paper
    has lr alone); ``s_k = s + lambda_k g``, ``nu_k = nu + lambda_k g**2``,
    ``z = x_0 - s_k / (cbrt(nu_k) + eps)``, ``x <- momentum x + (1 - momentum) z``; the
    gradient carries optax's coupled decay ``g + weight_decay x``.
    """

    def step(x, g, t, mem):
        g = g + weight_decay * x
        lamb = (_rate(learning_rate, t) + eps) * np.sqrt(t)
        mem["s"] = mem.get("s", 0.0) + lamb * g
        mem["nu"] = mem.get("nu", 0.0) + lamb * g * g
        z = mem.setdefault("x0", x) - mem["s"] / (np.cbrt(mem["nu"]) + eps)
        return momentum * x + (1.0 - momentum) * z

    return _run(params0, gradient, steps, step)
