"""MARS: a variance-reduced gradient (scaled stochastic recursive momentum) fed to AdamW or Lion."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._adam import scale_by_adam
from ._base import check_range, Transform
from ._clipping import clip_by_block_norm, clip_by_global_norm
from ._combine import Chain, named_recipe, recipe
from ._momentum import ema
from ._regularize import add_decayed_weights
from ._scale import scale_by_learning_rate, value_at
from ._sign import scale_by_sign
from ._tree import hp, safe_increment, tree_map_unzip, tree_zeros_like, up, zero_count

OPTIMIZERS = ("adamw", "lion")
CLIP_BY = ("leaf", "global")


class AddMarsCorrectionState(NamedTuple):
    """``prev_grad`` is the last step's gradient (zeros before the first step)."""

    count: jax.Array
    prev_grad: Any


class AddMarsCorrection(Transform):
    """Adds MARS's scaled gradient correction gamma * b1 / (1 - b1) * (g_t - g_{t-1})."""

    elementwise = True

    gamma: Any = 0.025
    b1: float = 0.95

    def __post_init__(self):
        check_range(self, "gamma", low=0.0)
        check_range(self, "b1", low=0.0, high=1.0, high_open=True)

    def init(self, params):
        return AddMarsCorrectionState(zero_count(), tree_zeros_like(params))

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        gamma = value_at(self.gamma, state.count)

        def leaf(g, prev):
            g32 = up(g)
            b1 = hp(self.b1, g32)
            c = g32 + hp(gamma, g32) * (b1 / (1 - b1)) * (g32 - up(prev))
            return c.astype(jnp.result_type(g)), jnp.asarray(g).astype(prev.dtype)

        updates, prev_grad = tree_map_unzip(leaf, updates, state.prev_grad)
        return updates, AddMarsCorrectionState(safe_increment(state.count), prev_grad)


def add_mars_correction(gamma: Any = 0.025, b1: float = 0.95) -> AddMarsCorrection:
    """MARS's corrected gradient, from the gradient of the step before.

    Update rule (MARS-approx: the previous step's gradient stands in for the
    previous iterate's gradient on this batch)::

        c_t = g_t + gamma_t * b1 / (1 - b1) * (g_t - g_{t-1})        g_0 = 0
        u_t <- c_t

    ``gamma`` (>= 0, a number or a schedule) sets the correction's strength; 0
    passes the gradient unchanged. ``b1`` is the momentum that follows it.
    As in the authors' code, ``g_0 = 0``: the first step is ``(1 + gamma b1 / (1 - b1)) g_1``.

    Args:
        gamma: strength of the correction, >= 0; a number or a schedule. Default 0.025.
        b1: the following momentum's decay, in [0, 1). Default 0.95.

    Reference: Yuan, Liu, Wu, Zhou, Gu, *MARS: Unleashing the Power of Variance
    Reduction for Training Large Models*, arXiv:2411.10438, eq. (2.4).

    >>> import gradtx
    >>> tx = gradtx.add_mars_correction(gamma=0.1, b1=0.5)
    >>> u, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 1.0}, state)
    >>> round(float(u["w"]), 4)
    0.9
    """
    return AddMarsCorrection(gamma=gamma, b1=b1)


def _check(name: str, optimizer: str, clip_by: str) -> None:
    for arg, value, choices in (
        ("optimizer", optimizer, OPTIMIZERS),
        ("clip_by", clip_by, CLIP_BY),
    ):
        if value not in choices:
            allowed = ", ".join(map(repr, choices))
            raise ValueError(f"{name}({arg}={value!r}): {arg} must be one of {allowed}")


def _mars_steps(b1, b2, eps, gamma, optimizer, max_norm, clip_by, mu_dtype, nu_dtype) -> tuple:
    """MARS's transforms up to (not including) weight decay and the learning rate."""
    steps: list[Transform] = [add_mars_correction(gamma, b1)]
    if max_norm is not None:
        clip = clip_by_block_norm if clip_by == "leaf" else clip_by_global_norm
        steps.append(clip(max_norm))
    if optimizer == "adamw":
        steps.append(scale_by_adam(b1, b2, eps, mu_dtype=mu_dtype, nu_dtype=nu_dtype))
    else:  # Lion's form in MARS: the sign of the momentum itself (one beta)
        steps += [ema(b1, debias=False, accumulator_dtype=mu_dtype), scale_by_sign()]
    return tuple(steps)


@recipe
def scale_by_mars(
    b1: float = 0.95,
    b2: float = 0.99,
    eps: float = 1e-8,
    gamma: Any = 0.025,
    *,
    optimizer: str = "adamw",
    max_norm: float | None = 1.0,
    clip_by: str = "leaf",
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> Chain:
    """MARS's scaling: the corrected gradient, clipped, through Adam's or Lion's scaling.

    Update rule::

        c_t = g_t + gamma_t * b1 / (1 - b1) * (g_t - g_{t-1})     (add_mars_correction)
        c_t <- c_t / max(1, ||c_t|| / max_norm)                   (per leaf; or global)
        optimizer="adamw":  u_t <- scale_by_adam(b1, b2, eps) of c_t
        optimizer="lion":   m_t = b1 m_{t-1} + (1 - b1) c_t;  u_t <- sign(m_t)   (b2 unused)

    ``max_norm=None`` skips the clipping; ``clip_by="global"`` takes the norm over
    all leaves together, as the paper writes it for one vector (the authors' code
    and pytorch-optimizer clip each tensor: ``"leaf"``).

    Args:
        b1: decay of the first moment (and of the correction's factor), in
            [0, 1). Default 0.95.
        b2: decay of the second moment, in [0, 1) (Adam only). Default 0.99.
        eps: added to Adam's denominator, > 0 (Adam only). Default 1e-8.
        gamma: strength of the correction, >= 0; a number or a schedule. Default 0.025.
        optimizer: ``"adamw"`` (default) or ``"lion"``.
        max_norm: largest norm of the corrected gradient, >= 0 (inf or None: no
            clipping). Default 1.
        clip_by: ``"leaf"`` (default) or ``"global"``.
        mu_dtype: storage dtype of the first moment; None keeps the params' dtype.
        nu_dtype: storage dtype of the second moment; None keeps the params'.

    Reference: Yuan et al., arXiv:2411.10438, Algorithms 1-3.

    >>> import gradtx
    >>> tx = gradtx.scale_by_mars(optimizer="lion")
    >>> u, state = tx.update({"w": 2.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": -1.0}, state)
    >>> float(u["w"])
    -1.0
    """
    _check("scale_by_mars", optimizer, clip_by)
    steps = _mars_steps(b1, b2, eps, gamma, optimizer, max_norm, clip_by, mu_dtype, nu_dtype)
    return named_recipe("scale_by_mars", *steps)


@recipe
def mars(
    learning_rate: Any,
    b1: float = 0.95,
    b2: float = 0.99,
    eps: float = 1e-8,
    gamma: Any = 0.025,
    weight_decay: Any = 0.0,
    mask: Any = None,
    *,
    optimizer: str = "adamw",
    max_norm: float | None = 1.0,
    clip_by: str = "leaf",
    mu_dtype: Any = None,
    nu_dtype: Any = None,
) -> Chain:
    """MARS (MARS-AdamW, or MARS-Lion with ``optimizer="lion"``), the approximate form.

    Update rule, with u_t from :func:`scale_by_mars`::

        p_t = p_{t-1} - lr_t * (u_t + weight_decay * p_{t-1})

    Defaults are the authors' (``betas=(0.95, 0.99)``, ``gamma=0.025``, no weight
    decay; their ``lr=3e-3`` is left to the caller, as optax does). Every leaf
    goes through MARS, as the authors' ``optimize_1d=True``; their default sends
    leaves of other ranks than 2 to AdamW with ``betas_1d`` and ``lr_1d``, which
    is ``gradtx.partition`` over ``mars`` and ``adamw``. MARS-Shampoo and the exact
    form (two gradients per step) are not provided.

    Differences from pytorch-optimizer's ``MARS`` (4.1): it adds eps to sqrt(v_t)
    before the bias correction, inside ``sqrt(v_t + 1e-15)`` (here:
    ``scale_by_adam``'s eps after it, as the authors' code); its
    ``cautious=True`` is ``gradtx.cautious(mars(...))`` with the decay outside.

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        b1: decay of the first moment (and of the correction's factor), in
            [0, 1). Default 0.95.
        b2: decay of the second moment, in [0, 1) (Adam only). Default 0.99.
        eps: added to Adam's denominator, > 0 (Adam only). Default 1e-8.
        gamma: strength of the correction, >= 0; a number or a schedule. Default 0.025.
        weight_decay: decoupled decay rate, >= 0; a number or a schedule. Default 0.
        mask: a tree of booleans, or a function of the params giving one, that
            selects the parameters to decay; None decays all.
        optimizer: ``"adamw"`` (default) or ``"lion"``.
        max_norm: largest norm of the corrected gradient, >= 0 (inf or None: no
            clipping). Default 1.
        clip_by: ``"leaf"`` (default) or ``"global"``.
        mu_dtype: storage dtype of the first moment; None keeps the params' dtype.
        nu_dtype: storage dtype of the second moment; None keeps the params'.

    Reference: Yuan, Liu, Wu, Zhou, Gu, *MARS: Unleashing the Power of Variance
    Reduction for Training Large Models*, ICML 2025, arXiv:2411.10438.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.mars(1e-3)
    >>> params = {"w": jnp.ones(3)}
    >>> tx.update({"w": jnp.full(3, 0.1)}, tx.init(params), params)[0]["w"]
    Array([-0.001, -0.001, -0.001], dtype=float32)
    """
    _check("mars", optimizer, clip_by)
    return named_recipe(
        "mars",
        *_mars_steps(b1, b2, eps, gamma, optimizer, max_norm, clip_by, mu_dtype, nu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
