"""Factored and per-block statistics: Adafactor's second moment, steps scaled by each block."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._base import check_choice, check_denominator, check_range, Schedule, static, Transform
from ._clipping import _Stateless, clip_by_block_rms
from ._combine import Chain, identity, named_recipe, recipe
from ._momentum import ema
from ._regularize import _require_params, add_decayed_weights, CountState
from ._scale import scale, scale_by_learning_rate, value_at
from ._tree import (
    default_float,
    hp,
    safe_increment,
    tree_squares_like,
    up,
    zero_count,
)
from ._tree import (
    ema as ema_step,
)

FACTOR_AXES = ("largest", "last")
EPS_MODES = ("added", "clamped")


def factored_axes(
    shape: tuple[int, ...], min_dim_size_to_factor: int, axes: str = "largest"
) -> tuple[int, int] | None:
    """The (row, column) axes over which a leaf's second moment is factored, or None.

    ``"largest"`` (optax): the two largest dimensions, the row axis the smaller of
    them (ties: the later axis is the column). ``"last"`` (PyTorch): the last two.
    None for leaves of rank < 2 or where either axis is shorter than
    ``min_dim_size_to_factor``.
    """
    if len(shape) < 2:
        return None
    if axes == "largest":
        row, col = (int(a) for a in np.argsort(shape, kind="stable")[-2:])
    else:
        row, col = len(shape) - 2, len(shape) - 1
    if min(shape[row], shape[col]) < min_dim_size_to_factor:
        return None
    return row, col


class FactoredState(NamedTuple):
    """Second-moment statistics, each a tree shaped like the params.

    ``v_row`` (one number per row) and ``v_col`` (one per column) are None where a
    leaf is not factored, ``v`` (one per element) is None where it is.
    """

    count: jax.Array
    v_row: Any
    v_col: Any
    v: Any


class ScaleByFactoredRms(Transform):
    """Adafactor's scaling: by row and column statistics of g**2 for matrices."""

    decay_rate: float = 0.8
    step_offset: float = 0.0
    epsilon: float | None = 1e-30
    factored: bool = static(True)
    min_dim_size_to_factor: int = static(128)
    decay_rate_fn: Any = static(None)
    factor_axes: str = static("largest")
    eps_mode: str = static("added")

    def __post_init__(self):
        check_range(self, "decay_rate", low=0.0)
        check_range(self, "step_offset")
        check_range(self, "epsilon", low=0.0)
        check_denominator(self, "epsilon")
        check_range(self, "min_dim_size_to_factor", low=1, integer=True)
        check_choice(self, "factor_axes", FACTOR_AXES)
        check_choice(self, "eps_mode", EPS_MODES)

    def axes(self, shape: tuple[int, ...]) -> tuple[int, int] | None:
        """The (row, column) axes a leaf of this shape is factored over, or None."""
        if not self.factored:
            return None
        return factored_axes(shape, self.min_dim_size_to_factor, self.factor_axes)

    def init(self, params):
        def stats(x):
            shape, dtype = jnp.shape(x), jnp.result_type(x)
            axes = self.axes(shape)
            if axes is None:
                return None, None, tree_squares_like(x)
            row, col = axes
            reduced = lambda axis: jax.ShapeDtypeStruct(shape[:axis] + shape[axis + 1 :], dtype)
            return tree_squares_like(reduced(col)), tree_squares_like(reduced(row)), None

        leaves, treedef = jax.tree.flatten(params)
        v_row, v_col, v = zip(*map(stats, leaves)) if leaves else ((), (), ())
        return FactoredState(zero_count(), *(treedef.unflatten(list(s)) for s in (v_row, v_col, v)))

    def decay_at(self, count: jax.Array) -> jax.Array:
        """beta_t = 1 - (count - step_offset + 1)**(-decay_rate), the base at least 1."""
        if self.decay_rate_fn is not None:
            decay = self.decay_rate_fn(count - self.step_offset, self.decay_rate)
            return jnp.asarray(decay, default_float())
        t = count.astype(default_float()) - jnp.asarray(self.step_offset, default_float()) + 1
        # optax's 0**(-c) = inf before step_offset gives NaN statistics: the schedule starts there.
        return 1 - jnp.maximum(t, 1) ** -jnp.asarray(self.decay_rate, default_float())

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        decay = self.decay_at(state.count)
        clamped = self.eps_mode == "clamped"

        def leaf(g, v_row, v_col, v):
            g32 = up(g)
            eps = hp(jnp.finfo(g.dtype).eps if self.epsilon is None else self.epsilon, g32)
            g2 = jnp.abs(g32) ** 2 if clamped else jnp.abs(g32) ** 2 + eps
            axes = self.axes(jnp.shape(g))
            if axes is None:
                v = ema_step(g2, v, decay)
                if clamped:
                    u = g32 * jax.lax.rsqrt(jnp.maximum(up(v), eps**2))
                else:
                    u = g32 * up(v) ** -0.5
                return u.astype(g.dtype), None, None, v
            row, col = axes
            v_row = ema_step(jnp.mean(g2, axis=col), v_row, decay)
            v_col = ema_step(jnp.mean(g2, axis=row), v_col, decay)
            r, c = jnp.expand_dims(up(v_row), col), jnp.expand_dims(up(v_col), row)
            r_mean = jnp.mean(r, axis=row, keepdims=True)
            if clamped:
                estimate = r * c / jnp.maximum(r_mean, eps)
                u = g32 * jax.lax.rsqrt(jnp.maximum(estimate, eps**2))
            else:
                u = g32 * (r / r_mean) ** -0.5 * c**-0.5
            return u.astype(g.dtype), v_row, v_col, None

        leaves, treedef = jax.tree.flatten(updates)
        stats = [treedef.flatten_up_to(s) for s in (state.v_row, state.v_col, state.v)]
        columns = zip(*[leaf(*args) for args in zip(leaves, *stats)]) if leaves else ((),) * 4
        updates, v_row, v_col, v = (treedef.unflatten(list(c)) for c in columns)
        return updates, FactoredState(safe_increment(state.count), v_row, v_col, v)


def scale_by_factored_rms(
    factored: bool = True,
    decay_rate: float = 0.8,
    step_offset: float = 0,
    min_dim_size_to_factor: int = 128,
    epsilon: float | None = 1e-30,
    decay_rate_fn: Any = None,
    *,
    factor_axes: str = "largest",
    eps_mode: str = "added",
) -> ScaleByFactoredRms:
    """Scales by a factored estimate of the gradient's RMS, as ``optax.scale_by_factored_rms``.

    Update rule, at step t = 1, 2, ... (``t - step_offset`` taken as 1 at least)::

        beta_t = 1 - (t - step_offset)**(-decay_rate)    (or decay_rate_fn(t - 1 - step_offset,
                                                          decay_rate))
        factored leaf, rows i and columns j:
            R_t[i] = beta_t R_{t-1}[i] + (1 - beta_t) mean_j(g[i, j]**2 + eps)
            C_t[j] = beta_t C_{t-1}[j] + (1 - beta_t) mean_i(g[i, j]**2 + eps)
            u[i, j] <- g[i, j] / sqrt(R_t[i] C_t[j] / mean(R_t))
        other leaves:
            v_t = beta_t v_{t-1} + (1 - beta_t) (g**2 + eps);   u <- g / sqrt(v_t)

    An m x n leaf keeps m + n numbers, not m n. ``factor_axes="largest"`` factors
    a leaf of rank >= 2 over its two largest dimensions when both are at least
    ``min_dim_size_to_factor`` (other axes are batch axes); ``"last"`` over its
    last two, as PyTorch. ``eps_mode="clamped"`` is PyTorch's stabiliser instead
    of adding eps to g**2: ``V = R C / max(mean(R), eps)``, ``u <- g / sqrt(max(V,
    eps**2))``, ``v`` likewise. ``epsilon=None`` is the leaf dtype's machine epsilon.

    Differences from optax: params are not needed; before ``step_offset`` the
    schedule is at its start (beta = 0) where optax's statistics are NaN; beta_t is
    computed in float64 for float64 leaves (optax: float32).

    Args:
        factored: factor the statistics of leaves of rank >= 2. Default True.
        decay_rate: exponent of the decay schedule, >= 0. Default 0.8.
        step_offset: steps subtracted from t, finite. Default 0.
        min_dim_size_to_factor: smallest dimension that is factored, an integer
            >= 1. Default 128.
        epsilon: > 0, or None for the leaf dtype's machine epsilon. Default 1e-30.
        decay_rate_fn: ``fn(step, decay_rate) -> beta``; None for the schedule above.
        factor_axes: ``"largest"`` (default) or ``"last"``.
        eps_mode: ``"added"`` (default) or ``"clamped"`` (PyTorch).

    Reference: Shazeer & Stern, *Adafactor: Adaptive Learning Rates with Sublinear
    Memory Cost*, ICML 2018.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.scale_by_factored_rms(min_dim_size_to_factor=2)
    >>> state = tx.init({"w": jnp.zeros((3, 4))})
    >>> state.v_row["w"].shape, state.v_col["w"].shape, state.v["w"]
    ((3,), (4,), None)

    An unfactored leaf's first step is g / sqrt(g**2 + eps), its sign:

    >>> g = {"w": jnp.ones((3, 4)), "b": jnp.array([-2.0])}
    >>> u, _ = tx.update(g, tx.init(g))
    >>> float(u["b"][0]), round(float(u["w"][0, 0]), 4)
    (-1.0, 1.0)
    """
    return ScaleByFactoredRms(
        factored=factored,
        decay_rate=decay_rate,
        step_offset=step_offset,
        min_dim_size_to_factor=min_dim_size_to_factor,
        epsilon=epsilon,
        decay_rate_fn=decay_rate_fn,
        factor_axes=factor_axes,
        eps_mode=eps_mode,
    )


def _block_rms(p: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.mean(jnp.abs(up(p)) ** 2))


def _block_norm(p: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(jnp.abs(up(p)) ** 2))


class _ScaleByParamBlock(_Stateless):
    min_scale: float = 1e-3

    def __post_init__(self):
        check_range(self, "min_scale", low=0.0)

    def update(self, updates, state, params=None, **extra_args):
        del extra_args
        _require_params(self, params)

        def leaf(u, p):
            size = jnp.maximum(self.block_size(p), hp(self.min_scale, up(p)))
            return (up(u) * size).astype(jnp.result_type(u))

        return jax.tree.map(leaf, updates, params), state


class ScaleByParamBlockRms(_ScaleByParamBlock):
    """Multiplies each leaf's updates by its parameters' RMS."""

    block_size = staticmethod(_block_rms)


class ScaleByParamBlockNorm(_ScaleByParamBlock):
    """Multiplies each leaf's updates by its parameters' L2 norm."""

    block_size = staticmethod(_block_norm)


class ScaleByDecayedParamBlockRms(ScaleByParamBlockRms):
    """Multiplies each leaf's updates by the RMS of its params after a decoupled decay."""

    weight_decay: Any = 0.0
    learning_rate: Any = 1.0

    def __post_init__(self):
        check_range(self, "min_scale", low=0.0)
        check_range(self, "weight_decay", low=0.0)
        check_range(self, "learning_rate", low=0.0)

    @property
    def name(self) -> str:
        return "scale_by_param_block_rms"

    def init(self, params):
        del params
        return CountState(zero_count())

    def update(self, updates, state, params=None, **extra_args):
        _require_params(self, params)
        rate = value_at(self.learning_rate, state.count) * value_at(self.weight_decay, state.count)
        # The params as the decay leaves them, in their dtype: p' = p - p * wd_t * lr_t.
        decayed = jax.tree.map(
            lambda p: (up(p) - up(p) * hp(rate, up(p))).astype(jnp.result_type(p)), params
        )
        updates, _ = super().update(updates, state, decayed, **extra_args)
        return updates, CountState(safe_increment(state.count))


def scale_by_param_block_rms(
    min_scale: float = 1e-3, *, weight_decay: Any = None, learning_rate: Any = 1.0
) -> ScaleByParamBlockRms:
    """Scales each leaf by the RMS of its parameters, as ``optax.scale_by_param_block_rms``.

    Update rule, for each leaf (block) separately::

        u <- u * max(rms(p), min_scale)        rms(p) = sqrt(mean(|p|**2))
        weight_decay given: rms of p' = p - lr_t * weight_decay_t * p instead

    A relative step: Adafactor's ``multiply_by_parameter_scale``. With
    ``weight_decay`` (a number or schedule, as ``learning_rate``) the RMS is that
    of the params already decayed by a decoupled weight decay applied before the
    step, as Keras does (``gradtx.compat.keras.adafactor``); the decay itself is
    not added here (``add_decoupled_weight_decay`` does that).

    Args:
        min_scale: floor of the RMS, >= 0. Default 1e-3.
        weight_decay: >= 0, a number or a schedule; None (default) for no decay.
        learning_rate: the rate multiplying the decay, >= 0; a number or a
            schedule. Default 1.

    Reference: Shazeer & Stern, ICML 2018, section 8 (relative step size).

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.scale_by_param_block_rms()
    >>> p = {"w": jnp.asarray([3.0, 4.0])}
    >>> tx.update({"w": jnp.ones(2)}, tx.init(p), p)[0]["w"]
    Array([3.535534, 3.535534], dtype=float32)
    """
    if weight_decay is None:
        return ScaleByParamBlockRms(min_scale=min_scale)
    return ScaleByDecayedParamBlockRms(
        min_scale=min_scale, weight_decay=weight_decay, learning_rate=learning_rate
    )


def scale_by_param_block_norm(min_scale: float = 1e-3) -> ScaleByParamBlockNorm:
    """Scales each leaf by the L2 norm of its parameters, as ``optax.scale_by_param_block_norm``.

    Update rule, for each leaf (block) separately::

        u <- u * max(|p|_2, min_scale)

    Args:
        min_scale: floor of the norm, >= 0. Default 1e-3.

    Reference: optax ``optax.scale_by_param_block_norm``.

    >>> import gradtx
    >>> import jax.numpy as jnp
    >>> tx, p = gradtx.scale_by_param_block_norm(), {"w": jnp.array([3.0, 4.0])}
    >>> tx.update({"w": jnp.ones(2)}, tx.init(p), p)[0]["w"].tolist()
    [5.0, 5.0]
    """
    return ScaleByParamBlockNorm(min_scale=min_scale)


class RelativeStepSize(Schedule):
    """Adafactor's relative step size rho_t = min(lr_t, 1 / sqrt(t)), t = count + 1."""

    learning_rate: Any = 1e-2

    def __call__(self, count):
        t = jnp.asarray(count, default_float()) + 1
        return jnp.minimum(value_at(self.learning_rate, count), 1 / jnp.sqrt(t))


def relative_step_size(learning_rate: Any = 1e-2) -> RelativeStepSize:
    """The schedule ``min(learning_rate(t), 1 / sqrt(t + 1))`` (PyTorch's Adafactor rho_t)."""
    return RelativeStepSize(learning_rate=learning_rate)


def _check_adafactor(**args: Any) -> None:
    """Checks adafactor's own arguments, so that errors name them (not the primitives')."""
    spec = SimpleNamespace(name="adafactor", **args)
    check_range(spec, "min_dim_size_to_factor", low=1, integer=True)
    check_range(spec, "decay_rate", low=0.0)
    check_range(spec, "decay_offset")
    check_range(spec, "eps", low=0.0)
    check_denominator(spec, "eps")
    check_range(spec, "clipping_threshold", low=0.0, allow_inf=True)
    check_range(spec, "momentum", low=0.0, high=1.0)
    check_range(spec, "weight_decay_rate", low=0.0)


@recipe
def adafactor(
    learning_rate: Any = None,
    min_dim_size_to_factor: int = 128,
    decay_rate: float = 0.8,
    decay_offset: float = 0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold: float | None = 1.0,
    momentum: float | None = None,
    dtype_momentum: Any = jnp.float32,
    weight_decay_rate: Any = None,
    eps: float = 1e-30,
    factored: bool = True,
    weight_decay_mask: Any = None,
) -> Chain:
    """Adafactor, as ``optax.adafactor``: a factored second moment and relative steps.

    Update rule (each part present when its argument is set)::

        u_t = scale_by_factored_rms(g_t)        (row and column statistics of g**2)
        u_t <- u_t / max(1, rms(u_t) / clipping_threshold)
        u_t <- lr_t * max(rms(p), 1e-3) * u_t   (multiply_by_parameter_scale)
        m_t = momentum m_{t-1} + (1 - momentum) u_t;  u_t <- m_t
        p_t = p_{t-1} - (u_t + weight_decay_rate_t * p_{t-1})

    ``learning_rate=None`` applies no rate (1; it is read from the state like any
    other: ``gradtx.tree_get(state, "learning_rate")``). The weight decay is not
    multiplied by the rate. Momentum is kept in ``dtype_momentum`` (float32 by
    default, also for float64 params).

    Args:
        learning_rate: >= 0; a number or a schedule; None (default) for 1.
        min_dim_size_to_factor: smallest dimension that is factored, an integer
            >= 1. Default 128.
        decay_rate: exponent of the second moment's decay schedule, >= 0. Default 0.8.
        decay_offset: steps subtracted from t in that schedule, finite. Default 0.
        multiply_by_parameter_scale: scale by max(rms(p), 1e-3). Default True.
        clipping_threshold: largest RMS of a leaf's update, >= 0 (inf or None: no
            clipping). Default 1.
        momentum: in [0, 1], or None (default) for no momentum.
        dtype_momentum: storage dtype of the momentum. Default float32.
        weight_decay_rate: >= 0, a number or a schedule; None (default) for no decay.
        eps: > 0. Default 1e-30.
        factored: factor the statistics of leaves of rank >= 2. Default True.
        weight_decay_mask: a tree of booleans, or a function of the params giving
            one, that selects the parameters to decay; None decays all.

    Reference: Shazeer & Stern, *Adafactor: Adaptive Learning Rates with Sublinear
    Memory Cost*, ICML 2018. PyTorch's variant: ``gradtx.compat.pytorch.adafactor``.

    The first step of an unfactored leaf is ``-lr * max(rms(p), 1e-3) * sign(g)``:

    >>> import gradtx
    >>> import jax.numpy as jnp
    >>> tx, params = gradtx.adafactor(0.1), {"w": jnp.array([3.0, 4.0])}
    >>> u, _ = tx.update({"w": jnp.array([1.0, -2.0])}, tx.init(params), params)
    >>> [round(x, 4) for x in u["w"].tolist()]
    [-0.3536, 0.3536]
    """
    _check_adafactor(
        min_dim_size_to_factor=min_dim_size_to_factor,
        decay_rate=decay_rate,
        decay_offset=decay_offset,
        eps=eps,
        clipping_threshold=clipping_threshold,
        momentum=momentum,
        weight_decay_rate=weight_decay_rate,
    )
    return named_recipe(
        "adafactor",
        scale_by_factored_rms(factored, decay_rate, decay_offset, min_dim_size_to_factor, eps),
        identity() if clipping_threshold is None else clip_by_block_rms(clipping_threshold),
        scale_by_learning_rate(1.0 if learning_rate is None else learning_rate, flip_sign=False),
        scale_by_param_block_rms() if multiply_by_parameter_scale else identity(),
        identity()
        if momentum is None
        else ema(momentum, debias=False, accumulator_dtype=dtype_momentum),
        identity()
        if weight_decay_rate is None
        else add_decayed_weights(weight_decay_rate, weight_decay_mask),
        scale(-1.0),
    )
