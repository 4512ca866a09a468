"""Curvature: Hessian-vector products and the estimators and optimizers built on them.

Exact products (:func:`hvp`, :func:`hessian_diag`), stochastic estimates of the
Hessian's diagonal as transforms whose state holds a PRNG key
(:func:`hutchinson_estimator_diag_hessian`,
:func:`gauss_newton_bartlett_estimator_diag_hessian`), and the optimizers that
precondition by them: Sophia and AdaHessian. The estimators take the objective
as an extra argument of ``update``, as optax's do; the optimizers pass every
extra argument on to their estimator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp

from ._base import check_denominator, check_range, fail, fail_missing, static, Transform
from ._combine import as_transform, Chain, named_recipe, recipe
from ._flat import as_trees, like_flat
from ._regularize import _require_params, add_decayed_weights
from ._scale import scale_by_learning_rate
from ._tree import (
    bias_correction,
    check_float_leaves,
    check_real_leaves,
    debias,
    ema,
    hp,
    prng_key,
    safe_increment,
    tree_map_unzip,
    tree_squares_like,
    tree_zeros_like,
    up,
    zero_count,
)


def hvp(fn: Callable[..., Any], params: Any, v: Any, *args: Any, **kwargs: Any) -> Any:
    """The Hessian of ``fn`` at ``params`` times ``v``, without forming the Hessian.

    ``H v = d/dt grad fn(params + t v)`` at t = 0: forward-mode differentiation of
    the reverse-mode gradient (forward-over-reverse, the cheapest of the four
    orders: about the cost of two gradients). ``params`` and ``v`` are pytrees of
    the same structure; the result has that structure too. Extra arguments are
    passed to ``fn``, which must return a scalar. Integer leaves are refused
    (TypeError naming the leaf).

    Args:
        fn: a scalar function of ``params`` (and of ``*args``, ``**kwargs``).
        params: the point, a pytree of float arrays.
        v: the direction, a pytree like ``params``.

    Reference: Pearlmutter, *Fast exact multiplication by the Hessian*, Neural
    Computation, 1994.

    >>> import gradtx, jax.numpy as jnp
    >>> f = lambda p: jnp.sum(p["x"] ** 3)  # H = diag(6 x)
    >>> gradtx.hvp(f, {"x": jnp.array([1.0, 2.0])}, {"x": jnp.array([1.0, 1.0])})
    {'x': Array([ 6., 12.], dtype=float32)}
    """
    check_float_leaves(params, "params")
    grad = jax.grad(lambda p: fn(p, *args, **kwargs))
    return jax.jvp(grad, (params,), (v,))[1]


_DIAGONAL_BATCH = 128  # Hessian-vector products computed together by hessian_diag


def hessian_diag(fn: Callable[..., Any], params: Any, *args: Any, **kwargs: Any) -> Any:
    """The exact diagonal of the Hessian of ``fn`` at ``params``, shaped like ``params``.

    One Hessian-vector product per coordinate, ``H_ii = e_i . (H e_i)``: n
    products for n parameters (about 2n gradients' work), vmapped in batches of
    128 (``jax.lax.map``), so memory is O(128 n), never the n x n Hessian. For
    small models, tests and oracles; a large model wants
    :func:`hutchinson_estimator_diag_hessian`. Extra arguments are passed to ``fn``.

    Args:
        fn: a scalar function of ``params`` (and of ``*args``, ``**kwargs``).
        params: the point, a pytree of float arrays.

    Reference: Pearlmutter, *Fast exact multiplication by the Hessian*, Neural
    Computation, 1994 (the products it is made of).

    >>> import gradtx, jax.numpy as jnp
    >>> gradtx.hessian_diag(lambda p: jnp.sum(p["x"] ** 3), {"x": jnp.asarray([1.0, 2.0])})
    {'x': Array([ 6., 12.], dtype=float32)}
    """
    check_float_leaves(params, "params")
    flat, unravel = ravel_pytree(params)
    if flat.size == 0:
        return tree_zeros_like(params)

    def flat_fn(x):
        return fn(unravel(x), *args, **kwargs)

    def entry(i):
        basis = jnp.zeros_like(flat).at[i].set(1)
        return hvp(flat_fn, flat, basis)[i]

    coordinates = jnp.arange(flat.size)
    return unravel(jax.lax.map(entry, coordinates, batch_size=min(flat.size, _DIAGONAL_BATCH)))


# -- estimators of the diagonal ------------------------------------------------------


def _rademacher_like(key: jax.Array, params: Any) -> Any:
    """Independent +-1 probes shaped like ``params``: one key per leaf, as optax draws them."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    # Drawn as optax draws them (float32 +-1 whatever the leaf; under x64 a key gives
    # other probes than without, in optax too), then cast: +-1 is exact.
    probes = [
        jax.random.rademacher(k, jnp.shape(x), jnp.float32).astype(jnp.result_type(x))
        for k, x in zip(keys, leaves)
    ]
    return treedef.unflatten(probes)


class _RandomEstimator(Transform):
    """Shared shell of the estimators: one PRNG key in the state, split at each update."""

    random_seed: Any = None
    state_type: ClassVar[type]  # the estimator's own one-key state

    def init(self, params):
        del params
        return self.state_type(prng_key(self.random_seed))

    def update(self, updates, state, params=None, **extra_args):
        del updates
        _require_params(self, params)
        key, draw_key = jax.random.split(state.key)
        return self._estimate(params, draw_key, **extra_args), self.state_type(key)

    def _estimate(self, params: Any, key: jax.Array, **extra_args: Any) -> Any:
        """The estimate of the diagonal at ``params``, drawn with ``key``."""
        raise NotImplementedError


class HutchinsonState(NamedTuple):
    key: jax.Array


class HutchinsonEstimatorDiagHessian(_RandomEstimator):
    """Hutchinson's estimate ``z * (H z)`` of the Hessian's diagonal, z Rademacher."""

    state_type = HutchinsonState

    def _estimate(self, params, key, *, obj_fn=None, value_fn=None, **extra_args):
        del extra_args
        objective = obj_fn if obj_fn is not None else value_fn
        if objective is None:
            fail_missing(
                self,
                "the objective as the keyword argument obj_fn= (or value_fn=), a function "
                "of the params alone that returns the loss",
                "update(updates, state, params, obj_fn=lambda p: loss(p, batch))",
            )
        z = _rademacher_like(key, params)
        return jax.tree.map(lambda hz, z: hz * z, hvp(objective, params, z), z)


def hutchinson_estimator_diag_hessian(random_seed: Any = None) -> HutchinsonEstimatorDiagHessian:
    """Hutchinson's unbiased estimate of the Hessian's diagonal, as optax.contrib's.

    Update rule, at the params, with the objective f passed as ``obj_fn=``::

        key, k = split(key);  z ~ Rademacher (+-1), one key per leaf, from k
        u <- z * (H z)                     (H z by forward-over-reverse, see hvp)

    E[z z^T] = I makes it unbiased (E[z_i (H z)_i] = H_ii); its variance is
    sum_{j != i} H_ij**2, so it is noisy where the Hessian is far from diagonal.
    The incoming updates are ignored. ``random_seed`` is a PRNG key (raw or
    typed), an integer seed, or None (key 0, as optax); the key lives in the
    state, and the same key draws the same probes as optax. Integer leaves are
    refused, naming the leaf.

    Differences from ``optax.contrib.hutchinson_estimator_diag_hessian``: the
    objective may also be given as ``value_fn=`` (the name gradtx's line
    searches read; ``obj_fn`` wins when both are given); probes are cast to
    each leaf's own dtype, so params of mixed dtypes work (optax casts every
    probe to the lowest dtype, which jax.jvp refuses for the other leaves).

    Args:
        random_seed: a PRNG key, an integer seed, or None (key 0). Default None.

    Reference: Hutchinson, *A stochastic estimator of the trace of the influence
    matrix for Laplacian smoothing splines*, 1989; Bekas, Kokiopoulou & Saad,
    *An estimator for the diagonal of a matrix*, 2007.

    >>> import gradtx, jax.numpy as jnp
    >>> loss = lambda p: jnp.sum(p["x"] ** 2 * jnp.array([1.0, 3.0]))  # H = diag(2, 6)
    >>> tx = gradtx.hutchinson_estimator_diag_hessian(random_seed=0)
    >>> params = {"x": jnp.array([1.0, 1.0])}
    >>> d, _ = tx.update(params, tx.init(params), params, obj_fn=loss)
    >>> [round(float(v), 4) for v in d["x"]]  # exact for a diagonal Hessian
    [2.0, 6.0]
    """
    return HutchinsonEstimatorDiagHessian(random_seed=random_seed)


class GaussNewtonBartlettState(NamedTuple):
    key: jax.Array


class GaussNewtonBartlettEstimatorDiagHessian(_RandomEstimator):
    """Sophia-G's estimate ``B * g^ * g^`` of the Gauss-Newton matrix's diagonal."""

    state_type = GaussNewtonBartlettState

    def _estimate(self, params, key, *, sampled_loss_fn=None, **extra_args):
        del extra_args
        if sampled_loss_fn is None:
            fail_missing(
                self,
                "the keyword argument sampled_loss_fn=, a function of (params, key) that "
                "returns the per-example losses of the batch with labels sampled from the "
                "model's own softmax (see its docstring)",
                "update(grads, state, params, sampled_loss_fn=sampled_loss_fn)",
            )
        losses = jax.eval_shape(sampled_loss_fn, params, key)
        if not losses.shape:
            raise ValueError(
                f"{self.name}.update: sampled_loss_fn returned a scalar; it must return the "
                "per-example (or per-token) losses, shape (B, ...), so that B is known"
            )
        batch = losses.size
        g = jax.grad(lambda p: jnp.mean(sampled_loss_fn(p, key)))(params)
        return jax.tree.map(lambda g: (hp(batch, g) * up(g) * up(g)).astype(g.dtype), g)


def gauss_newton_bartlett_estimator_diag_hessian(
    random_seed: Any = None,
) -> GaussNewtonBartlettEstimatorDiagHessian:
    """Sophia-G's Gauss-Newton-Bartlett estimate of the Hessian's diagonal.

    Update rule (Liu et al. 2023, Algorithm 2), with ``sampled_loss_fn=`` given
    to ``update``::

        key, k = split(key)
        l = sampled_loss_fn(params, k)     per-example losses, shape (B, ...), with
                                           labels y^ ~ softmax(logits) drawn from k
        g^ = grad mean(l);    u <- B * g^ * g^       (B = l.size)

    For a loss that is a negative log-likelihood of the model's own outputs
    (softmax cross-entropy), E[B g^ g^] is the diagonal of the Gauss-Newton
    matrix, a positive semi-definite stand-in for the Hessian. The user's
    function draws the labels, since only it knows the model::

        def sampled_loss_fn(params, key):
            logits = model.apply(params, batch["x"])          # (B, classes)
            labels = jax.random.categorical(key, jax.lax.stop_gradient(logits))
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels)

        updates, state = tx.update(grads, state, params, sampled_loss_fn=sampled_loss_fn)

    The function must return the losses unreduced (a scalar is refused: B would
    be unknown). The key lives in the state (``random_seed`` as in
    :func:`hutchinson_estimator_diag_hessian`). optax has no such estimator.

    Args:
        random_seed: a PRNG key, an integer seed, or None (key 0). Default None.

    Reference: Liu, Li, Hall, Liang & Ma, *Sophia: A Scalable Stochastic
    Second-order Optimizer for Language Model Pre-training*, ICLR 2024,
    arXiv:2305.14342.

    >>> import gradtx, jax.numpy as jnp
    >>> def sampled_loss_fn(params, key):  # two examples; a real one samples labels with key
    ...     return (params["x"] * jnp.array([1.0, 2.0])) ** 2 / 2
    >>> tx = gradtx.gauss_newton_bartlett_estimator_diag_hessian(random_seed=0)
    >>> params = {"x": jnp.array([1.0, 1.0])}
    >>> d, _ = tx.update(params, tx.init(params), params, sampled_loss_fn=sampled_loss_fn)
    >>> [round(float(v), 4) for v in d["x"]]  # 2 * (grad of the mean)**2
    [0.5, 8.0]
    """
    return GaussNewtonBartlettEstimatorDiagHessian(random_seed=random_seed)


_HUTCHINSON = HutchinsonEstimatorDiagHessian()  # the default estimator (immutable, shared)


def _estimate_diagonal(owner: Transform, updates, state, params, extra_args):
    """The owner's estimator, run; its errors say which optimizer called it."""
    try:
        return owner.hessian_diagonal_fn.update(updates, state, params, **extra_args)
    except ValueError as error:
        raise ValueError(f"{owner.name}.update: {error}") from error


def _refresh(owner: Transform, count, updates, state, params, extra_args, moment):
    """(estimator state, moment) refreshed every ``update_interval`` steps (lax.cond).

    ``moment(diagonal, nu)`` folds the new diagonal estimate into the EMA.
    """

    def refresh(operand):
        hessian_state, nu = operand
        diagonal, hessian_state = _estimate_diagonal(
            owner, updates, hessian_state, params, extra_args
        )
        return hessian_state, moment(diagonal, nu)

    due = count % owner.update_interval == 0
    return jax.lax.cond(due, refresh, lambda operand: operand, (state.hessian_fn_state, state.nu))


def _check_estimator(obj: Transform) -> None:
    object.__setattr__(obj, "hessian_diagonal_fn", as_transform(obj.hessian_diagonal_fn))
    check_range(obj, "update_interval", low=1, integer=True)


# -- Sophia ----------------------------------------------------------------------------


# Why Sophia refuses complex leaves (check_real_leaves).
_ORDERED = "compares gamma h with eps and clips its step (an order complex numbers lack)"


class SophiaState(NamedTuple):
    count: jax.Array
    mu: Any
    nu: Any
    hessian_fn_state: Any


class ScaleBySophia(Transform):
    """Sophia: momentum divided by an EMA of a Hessian-diagonal estimate, clipped."""

    integer_leaves = "refuse"  # it wraps its estimator, yet does arithmetic itself

    b1: float = 0.965
    b2: float = 0.99
    eps: float = 1e-8
    gamma: float = 0.01
    clip_threshold: Any = 1.0
    update_interval: int = 10
    hessian_diagonal_fn: Any = _HUTCHINSON
    mu_dtype: Any = static(None)
    verbose: bool = static(False)
    print_win_rate_every_n_steps: int = static(0)

    def __post_init__(self):
        _check_estimator(self)
        for arg in ("b1", "b2"):
            check_range(self, arg, low=0.0, high=1.0, high_open=True)
        check_range(self, "eps", low=0.0)
        check_denominator(self, "eps")
        check_range(self, "gamma", low=0.0, low_open=True)
        check_range(self, "clip_threshold", low=0.0, low_open=True)
        check_range(self, "print_win_rate_every_n_steps", low=0, integer=True)
        if self.verbose and self.print_win_rate_every_n_steps < 1:
            fail(self, "print_win_rate_every_n_steps", "verbose=True prints every n >= 1 steps")

    def init(self, params):
        check_real_leaves(params, "scale_by_sophia", _ORDERED)
        return SophiaState(
            zero_count(),
            tree_zeros_like(params, self.mu_dtype),
            tree_zeros_like(params),
            self.hessian_diagonal_fn.init(params),
        )

    def update(self, updates, state, params=None, **extra_args):
        _require_params(self, params)
        check_real_leaves(updates, "scale_by_sophia", _ORDERED)
        count = safe_increment(state.count)
        bc1 = bias_correction(self.b1, count)

        def leaf(g, mu, h):
            mu = ema(g, mu, self.b1, 1)
            u = debias(mu, bc1) / jnp.maximum(hp(self.gamma, h) * up(h), hp(self.eps, h))
            return u, mu

        steps, mu = tree_map_unzip(leaf, updates, state.mu, state.nu)
        if self.clip_threshold is not None:
            if self.verbose:
                self._print_win_rate(steps, count)
            steps = jax.tree.map(
                lambda u: jnp.clip(u, -hp(self.clip_threshold, u), hp(self.clip_threshold, u)),
                steps,
            )
        steps = jax.tree.map(lambda u, g: u.astype(g.dtype), steps, updates)

        def moment(diagonal, nu):
            return jax.tree.map(lambda d, n: ema(d, n, self.b2, 1), diagonal, nu)

        hessian_state, nu = _refresh(self, state.count, updates, state, params, extra_args, moment)
        return steps, SophiaState(count, mu, nu, hessian_state)

    def _print_win_rate(self, steps, count):
        """The share of coordinates the clip leaves alone (the authors advise 0.1 to 0.5)."""
        leaves = jax.tree.leaves(steps)
        kept = sum(jnp.sum(jnp.abs(u) < hp(self.clip_threshold, u)) for u in leaves)
        rate = kept / max(1, sum(u.size for u in leaves))
        jax.lax.cond(
            count % self.print_win_rate_every_n_steps == 0,
            lambda: jax.debug.print("Sophia optimizer win rate: {}", rate),
            lambda: None,
        )


def scale_by_sophia(
    b1: float = 0.965,
    b2: float = 0.99,
    eps: float = 1e-8,
    gamma: float = 0.01,
    clip_threshold: Any = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: Any = _HUTCHINSON,
    mu_dtype: Any = None,
    verbose: bool = False,
    print_win_rate_every_n_steps: int = 0,
) -> ScaleBySophia:
    """Sophia's scaling, as ``optax.contrib.scale_by_sophia``.

    Update rule, at step t = 1, 2, ... (h the EMA of the diagonal estimates)::

        m_t = b1 m_{t-1} + (1 - b1) g_t
        u_t <- clip((m_t / (1 - b1**t)) / max(gamma h_{t-1}, eps), -c, c)
        h_t = b2 h_{t-1} + (1 - b2) D_t      if (t - 1) % update_interval == 0,
                                             D_t = hessian_diagonal_fn's estimate
              h_{t-1}                        otherwise

    (c = ``clip_threshold``; None: no clip). The step uses the diagonal known
    *before* this step's refresh, so the first step is clip(m / eps) = +-c.
    Extra arguments of ``update`` go to ``hessian_diagonal_fn`` (the default
    Hutchinson estimator reads ``obj_fn=``, or ``value_fn=``). ``verbose`` prints
    the share of unclipped coordinates every ``print_win_rate_every_n_steps``.

    Differences from optax: ``gamma`` must be > 0 and ``eps`` > 0 (at 0 the step
    is m / 0); ``verbose`` needs ``print_win_rate_every_n_steps`` >= 1 (optax
    takes a modulo by 0); with a ``mu_dtype`` narrower than float32, m is formed in
    float32 and the step taken from m as stored, as gradtx's Adam does (optax forms
    ``b1 m`` in mu_dtype and steps from the unrounded m): the steps differ in
    mu_dtype's last bits.

    Args:
        b1: decay of the momentum, in [0, 1). Default 0.965.
        b2: decay of h, in [0, 1). Default 0.99.
        eps: floor of the denominator, > 0. Default 1e-8.
        gamma: scale of h, > 0. Default 0.01.
        clip_threshold: c, > 0, or None for no clipping. Default 1.0.
        update_interval: steps between refreshes of h, an integer >= 1. Default 10.
        hessian_diagonal_fn: the estimator. Default
            :func:`hutchinson_estimator_diag_hessian`.
        mu_dtype: the momentum's dtype, None for the params'. Default None.
        verbose: print the share of unclipped coordinates. Default False.
        print_win_rate_every_n_steps: an integer >= 0 (>= 1 with verbose). Default 0.

    Reference: Liu et al., *Sophia*, ICLR 2024, arXiv:2305.14342.

    >>> import gradtx, jax.numpy as jnp
    >>> loss = lambda p: jnp.sum(p["x"] ** 2 * jnp.array([1.0, 3.0]))  # H = diag(2, 6)
    >>> tx = gradtx.scale_by_sophia(b2=0.0, gamma=1.0, clip_threshold=10.0)
    >>> params, grads = {"x": jnp.array([1.0, 1.0])}, {"x": jnp.array([1.0, 1.0])}
    >>> u, state = tx.update(grads, tx.init(params), params, obj_fn=loss)  # clipped: 10
    >>> u, state = tx.update(grads, state, params, obj_fn=loss)
    >>> [round(float(v), 4) for v in u["x"]]  # m / h
    [0.5, 0.1667]
    """
    return ScaleBySophia(
        b1=b1,
        b2=b2,
        eps=eps,
        gamma=gamma,
        clip_threshold=clip_threshold,
        update_interval=update_interval,
        hessian_diagonal_fn=hessian_diagonal_fn,
        mu_dtype=mu_dtype,
        verbose=verbose,
        print_win_rate_every_n_steps=print_win_rate_every_n_steps,
    )


@recipe
def sophia(
    learning_rate: Any,
    b1: float = 0.965,
    b2: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 1e-4,
    weight_decay_mask: Any = None,
    gamma: float = 0.01,
    clip_threshold: Any = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: Any = _HUTCHINSON,
    mu_dtype: Any = None,
    verbose: bool = False,
    print_win_rate_every_n_steps: int = 0,
) -> Chain:
    """Sophia, as ``optax.contrib.sophia``: a clipped, diagonally preconditioned momentum.

    Update rule::

        u_t = scale_by_sophia(g_t)                        (see scale_by_sophia)
        p_t = p_{t-1} - lr_t * (u_t + weight_decay * p_{t-1})

    Sophia-H (the default) estimates the diagonal with Hutchinson's probes and
    needs the objective: ``update(grads, state, params, obj_fn=lambda p:
    loss(p, batch))``. Sophia-G passes
    ``hessian_diagonal_fn=gauss_newton_bartlett_estimator_diag_hessian()`` and
    ``sampled_loss_fn=`` instead. ``b2`` acts every ``update_interval`` steps, so
    its effective decay per step is 1 - (1 - b2) / update_interval.

    Args:
        learning_rate: a number or a schedule, >= 0.
        b1: as :func:`scale_by_sophia`. Default 0.965.
        b2: as :func:`scale_by_sophia`. Default 0.99.
        eps: as :func:`scale_by_sophia`. Default 1e-8.
        gamma: as :func:`scale_by_sophia`. Default 0.01.
        clip_threshold: as :func:`scale_by_sophia`. Default 1.0.
        update_interval: as :func:`scale_by_sophia`. Default 10.
        hessian_diagonal_fn: as :func:`scale_by_sophia`. Default Hutchinson's estimator.
        mu_dtype: as :func:`scale_by_sophia`. Default None.
        verbose: as :func:`scale_by_sophia`. Default False.
        print_win_rate_every_n_steps: as :func:`scale_by_sophia`. Default 0.
        weight_decay: decoupled decay, >= 0. Default 1e-4.
        weight_decay_mask: the leaves decayed, None for all. Default None.

    >>> import gradtx, jax.numpy as jnp
    >>> loss = lambda p: jnp.sum(p["x"] ** 2)
    >>> params, tx = {"x": jnp.asarray([1.0, -2.0])}, gradtx.sophia(0.1, weight_decay=0.0)
    >>> updates, state = tx.update({"x": jnp.asarray([2.0, -4.0])}, tx.init(params), params,
    ...                            obj_fn=loss)
    >>> updates["x"]       # the first step knows no curvature yet: clipped at lr
    Array([-0.1,  0.1], dtype=float32)

    As optax's (same keys, same numbers), with the differences listed under
    :func:`scale_by_sophia`. The paper's reference code clips ``m / max(gamma B h,
    eps)`` with the batch size B in the denominator; optax and gradtx leave B to
    ``gamma`` (or to the estimator).

    Reference: Liu, Li, Hall, Liang & Ma, *Sophia: A Scalable Stochastic
    Second-order Optimizer for Language Model Pre-training*, ICLR 2024,
    arXiv:2305.14342.
    """
    return named_recipe(
        "sophia",
        scale_by_sophia(
            b1,
            b2,
            eps,
            gamma,
            clip_threshold,
            update_interval,
            hessian_diagonal_fn,
            mu_dtype,
            verbose,
            print_win_rate_every_n_steps,
        ),
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate),
    )


# -- AdaHessian ------------------------------------------------------------------------


class ScaleByAdahessianState(NamedTuple):
    count: jax.Array
    mu: Any
    nu: Any
    hessian_fn_state: Any


def _block_average(d: jax.Array, block_size: int) -> jax.Array:
    """Each run of ``block_size`` consecutive elements (row-major) replaced by its mean."""
    if block_size == 1 or jnp.ndim(d) < 2:
        return d
    blocks = up(d).reshape(-1, block_size)
    means = jnp.mean(blocks, axis=1, keepdims=True)
    return jnp.broadcast_to(means, blocks.shape).reshape(jnp.shape(d)).astype(d.dtype)


class ScaleByAdahessian(Transform):
    """AdaHessian: Adam with the EMA of squared (block-averaged) Hessian diagonals."""

    integer_leaves = "refuse"  # it wraps its estimator, yet does arithmetic itself

    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-4
    hessian_power: float = 1.0
    block_size: int = static(1)
    update_interval: int = 1
    hessian_diagonal_fn: Any = _HUTCHINSON

    def __post_init__(self):
        _check_estimator(self)
        for arg in ("b1", "b2"):
            check_range(self, arg, low=0.0, high=1.0, high_open=True)
        check_range(self, "eps", low=0.0)
        check_denominator(self, "eps")
        check_range(self, "hessian_power", low=0.0, high=1.0, low_open=True)
        check_range(self, "block_size", low=1, integer=True)

    def init(self, params):
        self._check_blocks(params)
        return ScaleByAdahessianState(
            zero_count(),
            tree_zeros_like(params),
            tree_squares_like(params),
            self.hessian_diagonal_fn.init(params),
        )

    def _check_blocks(self, params):
        flat, _ = jax.tree_util.tree_flatten_with_path(params)
        for path, x in flat:
            if jnp.ndim(x) >= 2 and jnp.size(x) % self.block_size:
                fail(
                    self,
                    "block_size",
                    f"the leaf at {jax.tree_util.keystr(path)} has shape {jnp.shape(x)}, "
                    f"whose {jnp.size(x)} elements do not split into blocks of {self.block_size}",
                )

    def update(self, updates, state, params=None, **extra_args):
        _require_params(self, params)
        count = safe_increment(state.count)
        bc1, bc2 = bias_correction(self.b1, count), bias_correction(self.b2, count)

        def moment(diagonal, nu):
            # Blocks lie within a leaf: on FlatParams, averaged on the leaves the buffers pack.
            averaged = like_flat(
                jax.tree.map(lambda d: _block_average(d, self.block_size), as_trees(diagonal)),
                diagonal,
            )
            return jax.tree.map(lambda d, n: ema(d, n, self.b2, 2), averaged, nu)

        hessian_state, nu = _refresh(self, state.count, updates, state, params, extra_args, moment)

        def leaf(g, mu, nu):
            mu = ema(g, mu, self.b1, 1)
            power = hp(self.hessian_power, nu) / 2
            denominator = debias(nu, bc2) ** power + hp(self.eps, nu)
            return (debias(mu, bc1) / denominator).astype(g.dtype), mu

        steps, mu = tree_map_unzip(leaf, updates, state.mu, nu)
        return steps, ScaleByAdahessianState(count, mu, nu, hessian_state)


def scale_by_adahessian(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-4,
    hessian_power: float = 1.0,
    block_size: int = 1,
    update_interval: int = 1,
    hessian_diagonal_fn: Any = _HUTCHINSON,
) -> ScaleByAdahessian:
    """AdaHessian's scaling (Yao et al. 2021, Algorithm 1 and Eqs. 9-11).

    Update rule, at step t = 1, 2, ... (k = ``hessian_power``, b = ``block_size``)::

        D_t = hessian_diagonal_fn's estimate (z * H z)   if (t - 1) % update_interval == 0
        D^s_t = D_t averaged over runs of b consecutive elements (leaves of rank >= 2)
        v_t = b2 v_{t-1} + (1 - b2) D^s_t**2             (else v_t = v_{t-1})
        m_t = b1 m_{t-1} + (1 - b1) g_t
        u_t <- (m_t / (1 - b1**t)) / ((v_t / (1 - b2**t))**(k / 2) + eps)

    The runs are taken in row-major order, as the authors' ``view(-1, b)``: b
    dividing the last axis averages within rows; for a PyTorch-layout
    convolution kernel (out, in, kh, kw), b = kh * kw averages each spatial
    window (a flax HWIO kernel keeps its spatial axes first: transpose it, or
    leave b = 1). Leaves of rank 0 and 1 are never averaged, as in the paper.
    ``init`` refuses a rank >= 2 leaf whose size b does not divide, naming it.
    Extra arguments of ``update`` go to ``hessian_diagonal_fn`` (``obj_fn=``).

    Args:
        b1: decay of m, in [0, 1). Default 0.9.
        b2: decay of v, in [0, 1). Default 0.999.
        eps: > 0. Default 1e-4.
        hessian_power: k, in (0, 1]. Default 1.0.
        block_size: b, an integer >= 1. Default 1.
        update_interval: steps between refreshes of D, an integer >= 1. Default 1.
        hessian_diagonal_fn: the estimator. Default
            :func:`hutchinson_estimator_diag_hessian`.

    Reference: Yao, Gholami, Shen, Mustafa, Keutzer & Mahoney, *ADAHESSIAN: An
    Adaptive Second Order Optimizer for Machine Learning*, AAAI 2021,
    arXiv:2006.00719.

    >>> import gradtx, jax.numpy as jnp
    >>> loss = lambda p: jnp.sum(p["x"] ** 2 * jnp.array([1.0, 3.0]))  # H = diag(2, 6)
    >>> tx = gradtx.scale_by_adahessian()
    >>> params = {"x": jnp.array([1.0, 1.0])}
    >>> u, _ = tx.update({"x": jnp.array([1.0, 1.0])}, tx.init(params), params, obj_fn=loss)
    >>> [round(float(v), 4) for v in u["x"]]  # g / |D|
    [0.5, 0.1667]
    """
    return ScaleByAdahessian(
        b1=b1,
        b2=b2,
        eps=eps,
        hessian_power=hessian_power,
        block_size=block_size,
        update_interval=update_interval,
        hessian_diagonal_fn=hessian_diagonal_fn,
    )


@recipe
def adahessian(
    learning_rate: Any = 0.15,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-4,
    weight_decay: float = 0.0,
    hessian_power: float = 1.0,
    block_size: int = 1,
    update_interval: int = 1,
    hessian_diagonal_fn: Any = _HUTCHINSON,
    weight_decay_mask: Any = None,
) -> Chain:
    """AdaHessian: Adam whose second moment is the squared Hutchinson Hessian diagonal.

    Update rule::

        u_t = scale_by_adahessian(g_t)                    (see scale_by_adahessian)
        p_t = p_{t-1} - lr_t * (u_t + weight_decay * p_{t-1})

    Weight decay is decoupled and scaled by the learning rate, as the authors'
    code; the defaults are the paper's and its code's (lr 0.15, eps 1e-4). The
    objective goes to ``update`` as ``obj_fn=``, one Hessian-vector product
    (about two gradients) every ``update_interval`` steps.

    Args:
        learning_rate: a number or a schedule, >= 0. Default 0.15.
        b1: in [0, 1). Default 0.9.
        b2: in [0, 1). Default 0.999.
        eps: > 0. Default 1e-4.
        weight_decay: decoupled decay, >= 0. Default 0.0.
        hessian_power: in (0, 1]. Default 1.0.
        block_size: an integer >= 1. Default 1.
        update_interval: an integer >= 1. Default 1.
        hessian_diagonal_fn: the estimator. Default Hutchinson's.
        weight_decay_mask: the leaves decayed, None for all. Default None.

    >>> import gradtx, jax, jax.numpy as jnp
    >>> loss = lambda p: jnp.sum(p["x"] ** 2)
    >>> params, tx = {"x": jnp.asarray([1.0, -2.0])}, gradtx.adahessian(0.1)
    >>> updates, _ = tx.update(jax.grad(loss)(params), tx.init(params), params, obj_fn=loss)
    >>> # -lr g / (sqrt(D**2) + eps), D = 2 the exact diagonal here: a Newton step
    >>> bool(jnp.allclose(updates["x"], -0.1 * jnp.asarray([2.0, -4.0]) / 2, rtol=1e-4))
    True

    Differences: the paper's Eq. 9 averages the signed D (followed here); the
    authors' code averages |H z| instead, which differs only when
    ``block_size`` > 1. pytorch-optimizer's ``AdaHessian`` (4.1.0) has no block
    averaging, defaults lr 0.1 and eps 1e-16, and names ``update_interval``
    ``update_period``: see ``gradtx.compat.pytorch.adahessian``.

    Reference: Yao et al., *ADAHESSIAN*, AAAI 2021, arXiv:2006.00719.
    """
    return named_recipe(
        "adahessian",
        scale_by_adahessian(
            b1, b2, eps, hessian_power, block_size, update_interval, hessian_diagonal_fn
        ),
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate),
    )
