"""Per-layer statistics: trust ratios (LAMB, LARS, Fromage), SM3's cover, NovoGrad's norms.

Every transform here sees whole leaves (a leaf is a layer): a norm, or a
maximum along each axis, is taken over it. None of them is elementwise, so
``multi_tensor`` refuses them.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._adam import scale_by_adam
from ._base import check_denominator, check_range, static, Transform
from ._combine import Chain, EmptyState, masked, named_recipe, recipe
from ._momentum import trace
from ._regularize import _require_params, add_decayed_weights
from ._scale import scale_by_learning_rate, ScaleByLearningRateState, value_at
from ._tree import (
    compute_dtype,
    ema,
    hp,
    safe_increment,
    squares_dtype,
    tree_global_norm,
    tree_zeros_like,
    up,
    zero_count,
)


def _per_leaf(fn: Any, outputs: int, tree: Any, *rest: Any) -> tuple:
    """``tree_map_unzip`` for states that are not shaped like the leaves (per-axis, scalars).

    ``fn`` gets each leaf of ``tree`` with the matching subtree of each of
    ``rest`` (None for a None tree) and returns ``outputs`` values.
    """
    leaves, treedef = jax.tree.flatten(tree)
    columns = [[None] * len(leaves) if r is None else treedef.flatten_up_to(r) for r in rest]
    results = [fn(*args) for args in zip(leaves, *columns)]
    return tuple(treedef.unflatten([r[i] for r in results]) for i in range(outputs))


def _nonzero(x: jax.Array) -> jax.Array:
    """x where it is not 0, else 1: a denominator that a zero norm cannot turn into 0 / 0."""
    return jnp.where(x == 0, jnp.ones_like(x), x)


# -- trust ratio -------------------------------------------------------------------------


class ScaleByTrustRatio(Transform):
    """Scales each leaf's update by ``trust_coefficient * |param| / (|update| + eps)``."""

    min_norm: float = 0.0
    trust_coefficient: float = 1.0
    eps: float = 0.0

    def __post_init__(self):
        check_range(self, "min_norm", low=0.0)
        check_range(self, "trust_coefficient", low=0.0, low_open=True)
        check_range(self, "eps", low=0.0)

    def init(self, params):
        del params
        return EmptyState()

    def update(self, updates, state, params=None, **extra_args):
        del extra_args
        _require_params(self, params)

        def leaf(u, p):
            u_norm = jnp.maximum(tree_global_norm(u), self.min_norm)
            p_norm = jnp.maximum(tree_global_norm(p), self.min_norm)
            ratio = hp(self.trust_coefficient, p_norm) * p_norm / _nonzero(u_norm + self.eps)
            # A zero norm (a zero-initialised bias, a zero gradient) keeps the update as is.
            ratio = jnp.where((p_norm == 0) | (u_norm == 0), 1, ratio)
            return (hp(ratio, u) * up(u)).astype(jnp.result_type(u))

        return jax.tree.map(leaf, updates, params), state


def scale_by_trust_ratio(
    min_norm: float = 0.0, trust_coefficient: float = 1.0, eps: float = 0.0
) -> ScaleByTrustRatio:
    """Scales each leaf by its trust ratio, as ``optax.scale_by_trust_ratio``.

    Update rule, for each leaf (layer) separately::

        n_p = max(|p_{t-1}|_2, min_norm);   n_u = max(|u_t|_2, min_norm)
        u_t <- u_t * trust_coefficient * n_p / (n_u + eps)      (u_t where n_p or n_u is 0)

    The step of each layer is proportional to the layer's norm, whatever the
    gradient's scale. Where a norm is 0 (a zero-initialised bias, a zero
    gradient) the ratio is 1, as in optax and Keras: never 0 / 0. Needs the
    params. Norms are summed in float32 at least (optax: in the leaf's dtype).
    ``min_norm >= 0``, ``trust_coefficient > 0``, ``eps >= 0``.

    Used by :func:`lamb`, :func:`lars`, :func:`fromage`.

    Args:
        min_norm: floor of both norms, >= 0. Default 0.
        trust_coefficient: > 0. Default 1.
        eps: added to the update's norm, >= 0. Default 0.

    Reference: optax ``optax.scale_by_trust_ratio``; You et al., arXiv:1904.00962.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.scale_by_trust_ratio()
    >>> params = {"w": jnp.asarray([0.0, 10.0]), "b": jnp.zeros(2)}
    >>> grads = {"w": jnp.asarray([3.0, 4.0]), "b": jnp.ones(2)}
    >>> updates = tx.update(grads, tx.init(params), params)[0]
    >>> updates["w"], updates["b"]  # |w| / |g| = 2; b: a zero norm, ratio 1
    (Array([6., 8.], dtype=float32), Array([1., 1.], dtype=float32))
    """
    return ScaleByTrustRatio(min_norm=min_norm, trust_coefficient=trust_coefficient, eps=eps)


class ScaleByFromageLearningRate(Transform):
    """Fromage's step: ``-lr`` times the update, then the params shrunk by sqrt(1 + lr**2)."""

    learning_rate: Any = 1e-2

    def __post_init__(self):
        check_range(self, "learning_rate", low=0.0)

    def init(self, params):
        del params
        count = zero_count()
        return ScaleByLearningRateState(count, value_at(self.learning_rate, count))

    def update(self, updates, state, params=None, **extra_args):
        del extra_args
        _require_params(self, params)
        lr = value_at(self.learning_rate, state.count)
        root = jnp.sqrt(1 + lr**2)
        # 1 / root - 1 without the cancellation: it is -lr**2 / 2 for small lr.
        shrink = -(lr**2) / (root * (1 + root))

        def leaf(u, p):
            step = -hp(lr / root, u) * up(u) + hp(shrink, u) * up(p)
            return step.astype(jnp.result_type(u))

        updates = jax.tree.map(leaf, updates, params)
        return updates, ScaleByLearningRateState(safe_increment(state.count), lr)


def scale_by_fromage_learning_rate(learning_rate: Any = 1e-2) -> ScaleByFromageLearningRate:
    """Fromage's learning-rate step, which keeps the params' norms from growing.

    Update rule, with ``s_t = sqrt(1 + lr_t**2)``::

        p_t = (p_{t-1} - lr_t * u_t) / s_t
        u_t <- -(lr_t / s_t) * u_t - (1 - 1 / s_t) * p_{t-1}

    ``learning_rate`` is a number or a schedule; the rate of the last step is
    kept in the state, as by :func:`scale_by_learning_rate`. Needs the params.

    optax writes the step as ``scale_by_learning_rate(lr / s)`` followed by
    ``add_decayed_weights(1 / s - 1)`` (a negative decay), forming ``1 / s - 1``
    in the rate's dtype: a float32 rate (an optax schedule's, even under x64)
    loses 3 of its 7 digits at lr = 1e-2 and 5% of it at 1e-3. Here it is
    ``-lr**2 / (s (1 + s))``, without the cancellation.

    Args:
        learning_rate: >= 0; a number or a schedule. Default 1e-2.

    Reference: Bernstein et al., *On the distance between two neural
    networks and the stability of learning*, arXiv:2002.03432, Algorithm 1.

    >>> import gradtx
    >>> tx, params = gradtx.scale_by_fromage_learning_rate(0.1), {"w": 2.0}
    >>> round(float(tx.update({"w": 1.0}, tx.init(params), params)[0]["w"]), 4)
    -0.1094
    """
    return ScaleByFromageLearningRate(learning_rate=learning_rate)


# -- SM3 ---------------------------------------------------------------------------------


class ScaleBySM3State(NamedTuple):
    """``mu``: per leaf, a tuple of one accumulator per axis (rank >= 2) or a full one.

    ``nu``: the momentum, shaped like the params (None when ``b1`` is None).
    """

    mu: Any
    nu: Any


def _cover(p: Any) -> tuple:
    """SM3's accumulators for one leaf: one per row, column... (rank >= 2), else one per entry.

    Sums of squares: float32 for float16 leaves (a float16 one overflows at |g| > 256).
    """
    shape = jnp.shape(p)
    dtype = squares_dtype(p) or jnp.finfo(jnp.result_type(p)).dtype
    if len(shape) < 2:
        return (jnp.zeros(shape, dtype),)
    return tuple(jnp.zeros((n,), dtype) for n in shape)


def _along(vector: jax.Array, axis: int, ndim: int) -> jax.Array:
    """A per-axis accumulator shaped to broadcast along ``axis`` of a rank-``ndim`` leaf."""
    return jnp.reshape(vector, [-1 if i == axis else 1 for i in range(ndim)])


class ScaleBySm3(Transform):
    """SM3's square root of minima of sums of maxima of squared gradients, with momentum."""

    b1: Any = 0.9
    b2: float = 1.0
    eps: float = 1e-8

    def __post_init__(self):
        check_range(self, "b1", low=0.0, high=1.0)
        check_range(self, "b2", low=0.0, high=1.0)
        check_range(self, "eps", low=0.0)

    def init(self, params):
        mu = jax.tree.map(_cover, params)
        nu = None if self.b1 is None else tree_zeros_like(params)
        return ScaleBySM3State(mu, nu)

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args

        def leaf(g, cover, nu):
            g2, ndim = jnp.abs(up(g)) ** 2, jnp.ndim(g)
            b2 = hp(self.b2, g2)
            # b2 = 1 sums the squares (the paper's SM3); b2 < 1 averages them.
            weight = jnp.where(b2 == 1, 1, hp(1 - self.b2, g2))
            if ndim < 2:
                smallest = up(cover[0])
            else:
                smallest = functools.reduce(
                    jnp.minimum, [_along(up(c), i, ndim) for i, c in enumerate(cover)]
                )
            v = weight * g2 + b2 * smallest
            # 0 / 0 = 0 where nothing has accumulated yet (zero gradients so far).
            u = up(g) * jnp.where(v > 0, jax.lax.rsqrt(v + hp(self.eps, v)), 0)
            if nu is not None:
                nu = ema(u, nu, self.b1)
                u = nu
            if ndim < 2:
                new_cover = (v,)
            else:
                axes = range(ndim)
                # initial=0: v >= 0, and a leaf with an empty axis has nothing to cover.
                new_cover = [
                    jnp.max(v, axis=tuple(j for j in axes if j != i), initial=0) for i in axes
                ]
            cover = tuple(new.astype(old.dtype) for new, old in zip(new_cover, cover))
            return u.astype(jnp.result_type(g)), cover, nu

        updates, mu, nu = _per_leaf(leaf, 3, updates, state.mu, state.nu)
        return updates, ScaleBySM3State(mu, None if state.nu is None else nu)


def scale_by_sm3(b1: Any = 0.9, b2: float = 1.0, eps: float = 1e-8) -> ScaleBySm3:
    """SM3's memory-efficient adaptive scaling, as ``optax.scale_by_sm3``.

    Update rule, for a leaf of rank >= 2 with one accumulator ``mu^(i)`` per
    index of each axis (rows, columns, ...); for rank < 2, one per entry::

        v_t   = c * g_t**2 + b2 * min_i mu^(i)_{t-1}       c = 1 if b2 == 1 else 1 - b2
        mu^(i)_t = max of v_t over every axis but i
        m_t   = b1 * m_{t-1} + (1 - b1) * g_t / sqrt(v_t + eps)   (0 where v_t = 0)
        u_t <- m_t

    An m x n matrix holds m + n statistics (Adagrad: m * n), plus an m x n
    momentum unless ``b1=None``. ``b1, b2`` in [0, 1], ``eps >= 0``.
    Unlike optax: scalar leaves work (optax raises IndexError), complex
    gradients accumulate |g|**2, ``b1=None`` drops the momentum buffer, and
    float16 leaves keep their statistics in float32 (optax's float16 sums
    overflow to inf at |g| > 256, after which every update is 0, and lose
    squares below 1.7e-4 to rounding).

    Args:
        b1: momentum, in [0, 1]; None keeps no momentum. Default 0.9.
        b2: decay of the statistics, in [0, 1] (1: sums). Default 1.
        eps: added inside the root, >= 0. Default 1e-8.

    Reference: Anil, Gupta, Koren, Singer, *Memory-Efficient Adaptive
    Optimization*, NeurIPS 2019 (arXiv:1901.11150), SM3-II.

    >>> import gradtx
    >>> import jax.numpy as jnp
    >>> tx, g = gradtx.scale_by_sm3(b1=None), {"w": jnp.array([[3.0, 0.0], [0.0, 4.0]])}
    >>> u, state = tx.update(g, tx.init(g))
    >>> [len(v) for v in state.mu["w"]], [round(x, 4) for x in u["w"].ravel().tolist()]
    ([2, 2], [1.0, 0.0, 0.0, 1.0])
    """
    return ScaleBySm3(b1=b1, b2=b2, eps=eps)


# -- NovoGrad ----------------------------------------------------------------------------


class ScaleByNovogradState(NamedTuple):
    """``nu``: one scalar per leaf, the average squared norm of its gradients."""

    count: jax.Array
    mu: Any
    nu: Any


class ScaleByNovograd(Transform):
    """NovoGrad: gradients normalised by a per-layer average of their squared norms."""

    b1: float = 0.9
    b2: float = 0.25
    eps: float = 1e-8
    eps_root: float = 0.0
    weight_decay: Any = 0.0
    mu_dtype: Any = static(None)

    def __post_init__(self):
        check_range(self, "b1", low=0.0, high=1.0)
        check_range(self, "b2", low=0.0, high=1.0)
        check_range(self, "eps", low=0.0)
        check_range(self, "eps_root", low=0.0)
        check_range(self, "weight_decay", low=0.0)
        check_denominator(self, "eps", "eps_root")

    def init(self, params):
        # One number per leaf: kept in float32 at least, where |g|**2 cannot overflow float16.
        nu = jax.tree.map(lambda p: jnp.zeros((), jnp.finfo(compute_dtype(p)).dtype), params)
        return ScaleByNovogradState(zero_count(), tree_zeros_like(params, self.mu_dtype), nu)

    def update(self, updates, state, params=None, **extra_args):
        del extra_args
        _require_params(self, params)
        count = safe_increment(state.count)
        first = count == 1
        wd = value_at(self.weight_decay, state.count)

        def leaf(g, p, mu, nu):
            norm2 = tree_global_norm(g).astype(nu.dtype) ** 2
            nu = jnp.where(first, norm2, ema(norm2, nu, self.b2))
            g = up(g)
            normalised = g / (jnp.sqrt(hp(nu, g) + hp(self.eps_root, g)) + hp(self.eps, g))
            step = normalised + hp(wd, g) * up(p)
            mu = jnp.where(first, step, hp(self.b1, g) * up(mu) + step).astype(mu.dtype)
            return mu, nu

        mu, nu = _per_leaf(leaf, 2, updates, params, state.mu, state.nu)
        new_updates = jax.tree.map(lambda m, g: m.astype(jnp.result_type(g)), mu, updates)
        return new_updates, ScaleByNovogradState(count, mu, nu)


def scale_by_novograd(
    b1: float = 0.9,
    b2: float = 0.25,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: Any = 0.0,
    mu_dtype: Any = None,
) -> ScaleByNovograd:
    """NovoGrad's layer-wise normalised momentum, as ``optax.scale_by_novograd``.

    Update rule, for each leaf (layer) separately, a scalar ``v`` per leaf::

        v_t = |g_t|**2  at t = 1,  else  b2 * v_{t-1} + (1 - b2) * |g_t|**2
        m_t = g_t / (sqrt(v_t + eps_root) + eps) + wd_t * p_{t-1}  at t = 1,
              else  b1 * m_{t-1} + (that same sum)
        u_t <- m_t

    The second moment is one number per layer, so the state is about half
    of Adam's. Needs the params. ``b1, b2`` in [0, 1]; ``eps``, ``eps_root``
    >= 0, not both 0 (a zero first gradient would give 0 / 0).
    ``weight_decay`` may be a schedule. Unlike optax, ``v`` is kept in
    float32 at least (a float16 |g|**2 overflows above 65504) and the
    updates have the gradients' dtype whatever ``mu_dtype`` is.

    Args:
        b1: decay of the momentum, in [0, 1]. Default 0.9.
        b2: decay of the per-layer second moment, in [0, 1]. Default 0.25.
        eps: added to the denominator, >= 0. Default 1e-8.
        eps_root: added inside the square root, >= 0; eps and eps_root may not
            both be 0. Default 0.
        weight_decay: >= 0; a number or a schedule. Default 0.
        mu_dtype: storage dtype of the momentum; None keeps the params' dtype.

    Reference: Ginsburg et al., *Stochastic Gradient Methods with Layer-wise
    Adaptive Moments for Training of Deep Networks*, arXiv:1905.11286.

    The first step is the gradient over the layer's norm, |(3, 4)| = 5:

    >>> import gradtx
    >>> import jax.numpy as jnp
    >>> tx, params = gradtx.scale_by_novograd(), {"w": jnp.zeros(2)}
    >>> u, _ = tx.update({"w": jnp.array([3.0, 4.0])}, tx.init(params), params)
    >>> [round(x, 4) for x in u["w"].tolist()]
    [0.6, 0.8]
    """
    return ScaleByNovograd(
        b1=b1, b2=b2, eps=eps, eps_root=eps_root, weight_decay=weight_decay, mu_dtype=mu_dtype
    )


# -- named optimizers --------------------------------------------------------------------


@recipe
def lamb(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    weight_decay: Any = 0.0,
    mask: Any = None,
) -> Chain:
    """LAMB: Adam's step plus decay, scaled per layer by its trust ratio, as ``optax.lamb``.

    Update rule::

        r_t = adam_step_t + weight_decay_t * p_{t-1}      (masked by ``mask``)
        p_t = p_{t-1} - lr_t * (|p_{t-1}| / |r_t|) * r_t     (per leaf; ratio 1 at a zero norm)

    Keras's ``Lamb`` has eps 1e-7, no decay in the ratio and takes the
    ratio of the Adam step alone (``gradtx.compat.keras.lamb``).

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        b1: decay of the first moment, in [0, 1). Default 0.9.
        b2: decay of the second moment, in [0, 1). Default 0.999.
        eps: added to the denominator, >= 0. Default 1e-6.
        eps_root: added inside the square root, >= 0; eps and eps_root may not
            both be 0. Default 0.
        weight_decay: decoupled decay rate, >= 0; a number or a schedule. Default 0.
        mask: a tree of booleans, or a function of the params giving one, that
            selects the parameters to decay; None decays all.

    Reference: You et al., *Large Batch Optimization for Deep Learning:
    Training BERT in 76 minutes*, ICLR 2020 (arXiv:1904.00962).

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.lamb(0.1)
    >>> params = {"w": jnp.asarray([3.0, 4.0])}
    >>> tx.update({"w": jnp.asarray([1.0, 0.0])}, tx.init(params), params)[0]["w"]
    Array([-0.5, -0. ], dtype=float32)
    """
    return named_recipe(
        "lamb",
        scale_by_adam(b1, b2, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_trust_ratio(),
        scale_by_learning_rate(learning_rate),
    )


@recipe
def lars(
    learning_rate: Any,
    weight_decay: Any = 0.0,
    weight_decay_mask: Any = True,
    trust_coefficient: float = 0.001,
    eps: float = 0.0,
    trust_ratio_mask: Any = True,
    momentum: float = 0.9,
    nesterov: bool = False,
) -> Chain:
    """LARS: SGD with momentum, each layer's step scaled by its trust ratio, as ``optax.lars``.

    Update rule::

        r_t = g_t + weight_decay_t * p_{t-1}                           (on ``weight_decay_mask``)
        r_t <- trust_coefficient * |p_{t-1}| / (|r_t| + eps) * r_t  (per leaf, on
                                                                 ``trust_ratio_mask``)
        m_t = momentum * m_{t-1} - lr_t * r_t;   p_t = p_{t-1} + m_t  (Nesterov:
                                                 p_t = p_{t-1} - lr_t * r_t + momentum * m_t)

    The masks are trees of booleans (a prefix of the params) or functions
    of the params; the usual choice leaves biases and norms out of both
    (``gradtx.masks.weight_decay()``). The learning rate is inside the
    momentum, as in optax and the paper.

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        weight_decay: >= 0; a number or a schedule. Default 0.
        weight_decay_mask: a tree of booleans, or a function of the params giving
            one, that selects the parameters to decay. Default True (all).
        trust_coefficient: > 0. Default 0.001.
        eps: added to the update's norm, >= 0. Default 0.
        trust_ratio_mask: which parameters get the trust ratio, as above.
            Default True (all).
        momentum: in [0, 1]; a number or a schedule. Default 0.9.
        nesterov: Nesterov momentum. Default False.

    Reference: You, Gitman, Ginsburg, *Large Batch Training of Convolutional
    Networks*, arXiv:1708.03888.

    The step of ``w`` is 0.001 * |p| / |g| * lr * g = 0.001 * 5 / 1 * 0.1:

    >>> import gradtx
    >>> import jax.numpy as jnp
    >>> tx, params = gradtx.lars(0.1), {"w": jnp.array([3.0, 4.0])}
    >>> u, _ = tx.update({"w": jnp.array([1.0, 0.0])}, tx.init(params), params)
    >>> [round(x, 4) for x in u["w"].tolist()]
    [-0.0005, -0.0]
    """
    return named_recipe(
        "lars",
        add_decayed_weights(weight_decay, weight_decay_mask),
        masked(
            scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps), trust_ratio_mask
        ),
        scale_by_learning_rate(learning_rate),
        trace(decay=momentum, nesterov=nesterov),
    )


@recipe
def fromage(learning_rate: Any, min_norm: float = 1e-6) -> Chain:
    """Fromage: steps relative to each layer's norm, then a shrinkage, as ``optax.fromage``.

    Update rule, per leaf::

        p_t = (p_{t-1} - lr_t * |p_{t-1}| / |g_t| * g_t) / sqrt(1 + lr_t**2)

    with both norms at least ``min_norm``. optax builds the same step from
    ``scale_by_learning_rate(lr / s)`` and a negative
    ``add_decayed_weights(1 / s - 1)``; here it is one primitive,
    :func:`scale_by_fromage_learning_rate`, so that ``lr`` (not ``lr / s``)
    is the rate kept in the state.

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        min_norm: floor of both norms, >= 0. Default 1e-6.

    Reference: Bernstein et al., *On the distance between two neural
    networks and the stability of learning*, NeurIPS 2020 (arXiv:2002.03432).

    >>> import gradtx
    >>> import jax.numpy as jnp
    >>> tx, params = gradtx.fromage(0.1), {"w": jnp.array([3.0, 4.0])}
    >>> u, _ = tx.update({"w": jnp.array([1.0, 0.0])}, tx.init(params), params)
    >>> [round(x, 4) for x in u["w"].tolist()]
    [-0.5124, -0.0199]
    """
    return named_recipe(
        "fromage",
        scale_by_trust_ratio(min_norm),
        scale_by_fromage_learning_rate(learning_rate),
    )


@recipe
def sm3(learning_rate: Any, momentum: Any = 0.9) -> Chain:
    """SM3 with momentum, as ``optax.sm3``.

    Update rule: :func:`scale_by_sm3` with ``b1=momentum`` and ``b2=1``
    (sums of squares, as Adagrad), then ``p_t = p_{t-1} - lr_t * u_t``.
    An m x n matrix holds m + n statistics and, unless ``momentum=None``,
    an m x n momentum. optax scales by a constant ``-learning_rate`` and
    fails with ``momentum=None`` (which its docstring offers); here the
    rate may be a schedule, is kept in the state, and ``None`` drops the
    momentum.

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        momentum: in [0, 1]; None keeps no momentum. Default 0.9.

    Reference: Anil, Gupta, Koren, Singer, *Memory-Efficient Adaptive
    Optimization*, NeurIPS 2019 (arXiv:1901.11150).

    >>> import gradtx
    >>> tx = gradtx.sm3(0.1, momentum=None)
    >>> u, state = tx.update({"w": 3.0}, tx.init({"w": 0.0}))
    >>> u, _ = tx.update({"w": 4.0}, state)
    >>> round(float(u["w"]), 4)
    -0.08
    """
    return named_recipe("sm3", scale_by_sm3(momentum), scale_by_learning_rate(learning_rate))


@recipe
def novograd(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.25,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    weight_decay: Any = 0.0,
) -> Chain:
    """NovoGrad, as ``optax.novograd``.

    Update rule: :func:`scale_by_novograd`, then ``p_t = p_{t-1} - lr_t * m_t``.
    Note the defaults: eps 1e-6 here, 1e-8 in the primitive (as in optax).

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        b1: decay of the momentum, in [0, 1]. Default 0.9.
        b2: decay of the per-layer second moment, in [0, 1]. Default 0.25.
        eps: added to the denominator, >= 0. Default 1e-6.
        eps_root: added inside the square root, >= 0; eps and eps_root may not
            both be 0. Default 0.
        weight_decay: >= 0; a number or a schedule. Default 0.

    Reference: Ginsburg et al., arXiv:1905.11286; Li et al., *Jasper*,
    arXiv:1904.03288.

    >>> import gradtx
    >>> import jax.numpy as jnp
    >>> tx, params = gradtx.novograd(0.1), {"w": jnp.zeros(2)}
    >>> u, _ = tx.update({"w": jnp.array([3.0, 4.0])}, tx.init(params), params)
    >>> [round(x, 4) for x in u["w"].tolist()]
    [-0.06, -0.08]
    """
    return named_recipe(
        "novograd",
        scale_by_novograd(b1, b2, eps, eps_root, weight_decay),
        scale_by_learning_rate(learning_rate),
    )
