"""Kronecker-factored preconditioners: Shampoo and SOAP, and their matrix helpers.

Both keep, per parameter block, one statistics matrix per dimension (``L = sum G G^T``,
``R = sum G^T G`` for a matrix ``G``). Shampoo multiplies the gradient by their inverse
roots; SOAP runs Adam in their eigenbasis. The expensive parts (eigendecompositions,
QR) run in one ``lax.cond`` on the step count, so a jitted step compiles once.
"""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from ._base import (
    _concrete_numbers,
    check_choice,
    check_denominator,
    check_range,
    fail,
    fail_missing,
    static,
    Transform,
)
from ._combine import Chain, named_recipe, recipe
from ._regularize import add_decayed_weights
from ._scale import scale_by_learning_rate
from ._tree import (
    bias_correction,
    check_real_leaves,
    compute_dtype,
    default_float,
    hp,
    safe_increment,
    tree_global_norm,
    tree_vdot,
    up,
    zero_count,
)

_HIGHEST = lax.Precision.HIGHEST

# -- matrix helpers -----------------------------------------------------------------


def matrix_inverse_pth_root(
    matrix: Any,
    p: Any,
    num_iters: Any = 100,
    ridge_epsilon: Any = 1e-6,
    error_tolerance: Any = 1e-6,
    precision: Any = _HIGHEST,
    *,
    relative_matrix_epsilon: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """``(matrix + ridge I) ** (-1/p)`` of a symmetric PSD matrix, and its error.

    Update rule::

        matrix = V diag(lam) V^T                (eigh, in float32 at least)
        ridge  = ridge_epsilon * max(lam_max, 1e-16)   (ridge_epsilon alone when
                                                      relative_matrix_epsilon=False)
        root   = V diag((max(lam, 0) + ridge) ** (-1/p)) V^T
        error  = max |root**p (matrix + ridge I) - I|

    Returns ``(root, error)`` as optax does; ``root`` has the matrix's dtype. ``p`` may
    be any positive number (a tracer too). The error is 0 up to rounding unless rounding
    made eigenvalues negative (they are clipped to 0 in the root).

    Differences from ``optax.matrix_inverse_pth_root``: optax runs coupled Newton
    iterations in float32 until its error is below ``error_tolerance`` and estimates
    ``lam_max`` by power iteration; here the eigendecomposition is exact to rounding,
    so ``num_iters`` and ``error_tolerance`` are accepted (optax's signature) and unused.

    Args:
        matrix: a symmetric positive semi-definite square matrix.
        p: the root, a positive number.
        num_iters: accepted for optax's signature; unused. Default 100.
        ridge_epsilon: the ridge, >= 0 (relative to lam_max by default). Default 1e-6.
        error_tolerance: accepted for optax's signature; unused. Default 1e-6.
        precision: ``jax.lax.Precision`` of the matrix products. Default HIGHEST.
        relative_matrix_epsilon: scale the ridge by the largest eigenvalue. Default True.

    Reference: Gupta, Koren, Singer, *Shampoo*, arXiv:1802.09568, section 3.

    >>> import jax.numpy as jnp, gradtx
    >>> matrix = jnp.diag(jnp.array([4.0, 16.0]))
    >>> root, error = gradtx.matrix_inverse_pth_root(matrix, 2, ridge_epsilon=0.0)
    >>> root
    Array([[0.5 , 0.  ],
           [0.  , 0.25]], dtype=float32)
    """
    del num_iters, error_tolerance
    matrix = jnp.asarray(matrix)
    a = matrix.astype(compute_dtype(matrix))
    lam, vectors = jnp.linalg.eigh(a)
    clipped = jnp.maximum(lam, 0)
    ridge = hp(ridge_epsilon, a)
    if relative_matrix_epsilon:
        ridge = ridge * jnp.maximum(jnp.max(clipped, initial=0.0), 1e-16)
    powers = (clipped + ridge) ** (-1 / hp(p, a))
    root = jnp.matmul(vectors * powers, vectors.T, precision=precision)
    # root**p (matrix + ridge I) in the same eigenbasis.
    product = jnp.matmul(
        vectors * ((lam + ridge) / (clipped + ridge)), vectors.T, precision=precision
    )
    error = jnp.max(jnp.abs(product - jnp.eye(a.shape[0], dtype=a.dtype)), initial=0.0)
    return root.astype(matrix.dtype), error


def power_iteration(
    matrix: Any,
    *,
    v0: Any = None,
    num_iters: Any = 100,
    error_tolerance: Any = 1e-6,
    precision: Any = _HIGHEST,
    key: Any = None,
) -> tuple[jax.Array, Any]:
    """The dominant eigenvalue and its unit eigenvector, as ``optax.power_iteration``.

    Update rule::

        v <- A v / ||A v||,  lam = v . A v
        stop when ||A v - lam v|| < error_tolerance * |lam|, or after num_iters

    ``matrix`` is a square array or a function computing ``A v`` (then ``v0``, a
    pytree, is required). Without ``v0`` the start is uniform in [-1, 1] drawn
    from ``key`` (``PRNGKey(0)`` when None), as in optax.

    Args:
        matrix: a square array, or a function computing ``A v`` on a pytree.
        v0: the starting vector (pytree); required when ``matrix`` is a function.
        num_iters: the most iterations; with 0 the eigenvalue is the start
            vector's Rayleigh quotient (optax returns 0 there). Default 100.
        error_tolerance: relative residual at which to stop. Default 1e-6.
        precision: ``jax.lax.Precision`` of the products. Default HIGHEST.
        key: PRNG key for the random start; None for ``PRNGKey(0)``.

    Reference: optax ``optax.power_iteration``; Golub & Van Loan, *Matrix
    Computations*, section 7.3.

    >>> import jax.numpy as jnp, gradtx
    >>> lam, v = gradtx.power_iteration(jnp.diag(jnp.array([1.0, 3.0])))
    >>> round(float(lam), 4)
    3.0
    """
    if callable(matrix):
        if v0 is None:
            raise ValueError("power_iteration(v0=None): v0 is required when matrix is a function")
        product = matrix
    else:
        matrix = jnp.asarray(matrix)
        product = lambda v: jnp.matmul(matrix, v, precision=precision)
        if v0 is None:
            key = jax.random.PRNGKey(0) if key is None else key
            v0 = jax.random.uniform(key, matrix.shape[-1:], matrix.dtype, -1.0, 1.0)

    def normalise(v):
        return jax.tree.map(lambda x: x / tree_global_norm(v).astype(x.dtype), v)

    def residual(carry):
        v, av, lam, _ = carry
        diff = jax.tree.map(lambda a, x: a - lam.astype(a.dtype) * x, av, v)
        return tree_global_norm(diff)

    def not_done(carry):
        *_, lam, i = carry
        return (i < num_iters) & ~(residual(carry) < error_tolerance * jnp.abs(lam))

    def step(carry):
        _, av, _, i = carry
        v = normalise(av)
        av = product(v)
        return v, av, tree_vdot(v, av), i + 1

    v = normalise(v0)
    av = product(v)
    start = (v, av, tree_vdot(v, av), jnp.zeros([], jnp.int32))
    _, av, lam, _ = lax.while_loop(not_done, step, start)
    return lam, normalise(av)


def _mode_product(x: jax.Array, matrix: jax.Array, axis: int) -> jax.Array:
    """``x`` times ``matrix`` along ``axis``: y[.., a, ..] = sum_b matrix[a, b] x[.., b, ..]."""
    y = jnp.tensordot(matrix, x, axes=(1, axis), precision=_HIGHEST)
    return jnp.moveaxis(y, 0, axis)


def _gram(x: jax.Array, axis: int) -> jax.Array:
    """``X X^T`` of the unfolding of ``x`` along ``axis`` (contracting every other axis)."""
    others = [a for a in range(x.ndim) if a != axis]
    return jnp.tensordot(x, x, axes=(others, others), precision=_HIGHEST)


# Why Shampoo and SOAP refuse complex leaves (check_real_leaves).
_STATISTICS = "builds real statistics matrices G G^T"


def _map_leaves(fn, updates, *trees):
    """``fn(update, *matching subtrees)`` per leaf of ``updates``; returns a tuple of trees.

    Unlike ``tree_map_unzip``, the other trees may hold a tuple (of statistics
    matrices, possibly empty) where ``updates`` has a leaf.
    """
    leaves, treedef = jax.tree.flatten(updates)
    columns = [treedef.flatten_up_to(t) for t in trees]
    outputs = [fn(x, *rest) for x, *rest in zip(leaves, *columns)]
    if not outputs:
        return None
    return tuple(treedef.unflatten(list(column)) for column in zip(*outputs))


# -- Shampoo --------------------------------------------------------------------------

GRAFT_TYPES = ("sgd", "adagrad", "rmsprop", "rmsprop_normalized", "sqrt_n", "adagrad_normalized")
GRAFT_TYPES += ("adam", "none")
_DIAGONAL_GRAFTS = ("adagrad", "rmsprop", "rmsprop_normalized", "adagrad_normalized", "adam")


def _merge_small_dims(shape: tuple[int, ...], max_dim: int) -> tuple[int, ...]:
    """Neighbouring dims merged while their product stays <= max_dim; 1s dropped.

    As distributed_shampoo: (1, 2, 512, 1, 2048, 1, 3, 4) -> (1024, 2048, 12) for 1024.
    """
    if shape and all(d == 1 for d in shape):
        return (1,)
    merged, product = [], 1
    for d in shape:
        if product * d <= max_dim:
            product *= d
        else:
            if product > 1:
                merged.append(product)
            product = d
    if product > 1:
        merged.append(product)
    return tuple(merged)


class _Blocks(NamedTuple):
    """How Shampoo sees one leaf: reshaped to ``shape``, then cut into blocks."""

    shape: tuple[int, ...]
    sizes: tuple[tuple[int, ...], ...]  # per axis, the block lengths

    def slices(self) -> list[tuple[slice, ...]]:
        """The blocks' index slices, in row-major block order."""
        starts = [[sum(s[:i]) for i in range(len(s))] for s in self.sizes]
        per_axis = [
            [slice(a, a + n) for a, n in zip(start, sizes)]
            for start, sizes in zip(starts, self.sizes)
        ]
        return list(itertools.product(*per_axis))

    def statistics_sizes(self) -> list[int]:
        """The side of every statistics matrix: each block's dims, block after block."""
        return [b.stop - b.start for block in self.slices() for b in block]


def _split(d: int, block_size: int) -> tuple[int, ...]:
    full, rest = divmod(d, block_size)
    return (block_size,) * full + ((rest,) if rest else ())


class ShampooState(NamedTuple):
    count: jax.Array
    diagonal_statistics: Any  # the graft's second moment, or () per leaf
    diagonal_momentum: Any  # the graft's momentum
    momentum: Any  # Shampoo's momentum
    statistics: Any  # per leaf, a tuple of statistics matrices (block by block, dim by dim)
    preconditioners: Any  # their inverse p-th roots


class ScaleByShampoo(Transform):
    """Shampoo with blocking and grafting (distributed_shampoo's update, without the lr)."""

    block_size: int = static(128)
    beta1: float = 0.9
    beta2: float = 0.999
    diagonal_epsilon: float = 1e-10
    matrix_epsilon: float = 1e-6
    weight_decay: float = 0.0
    start_preconditioning_step: int = 5
    preconditioning_compute_steps: int = 1
    statistics_compute_steps: int = 1
    best_effort_shape_interpretation: bool = static(True)
    graft_type: str = static("sgd")
    nesterov: bool = static(True)
    exponent_override: int = 0
    moving_average_for_momentum: bool = static(False)
    skip_preconditioning_dim_size_gt: int = static(4096)
    relative_matrix_epsilon: bool = static(True)
    merge_small_dims_block_size: int = static(4096)
    skip_preconditioning_rank_lt: int = static(1)

    def __post_init__(self):
        check_range(self, "block_size", low=1, integer=True)
        for name in ("beta1", "beta2"):
            check_range(self, name, low=0.0, high=1.0)
        for name in ("diagonal_epsilon", "matrix_epsilon", "weight_decay"):
            check_range(self, name, low=0.0)
        check_range(self, "start_preconditioning_step", low=0, integer=True)
        check_range(self, "preconditioning_compute_steps", low=1, integer=True)
        check_range(self, "statistics_compute_steps", low=1, integer=True)
        check_range(self, "exponent_override", low=0, integer=True)
        check_range(self, "skip_preconditioning_dim_size_gt", low=1, integer=True)
        check_range(self, "merge_small_dims_block_size", low=1, integer=True)
        check_range(self, "skip_preconditioning_rank_lt", low=0, integer=True)
        check_choice(self, "graft_type", GRAFT_TYPES)
        if self.graft_type in _DIAGONAL_GRAFTS:
            check_denominator(self, "diagonal_epsilon")

    def blocks(self, shape: tuple[int, ...]) -> _Blocks | None:
        """How a leaf of this shape is preconditioned; None when it is only grafted."""
        shape = tuple(shape)
        too_large = any(d > self.skip_preconditioning_dim_size_gt for d in shape)
        empty = not shape or 0 in shape  # scalars and zero-size leaves: nothing to factor
        if len(shape) < self.skip_preconditioning_rank_lt or too_large or empty:
            return None
        if self.best_effort_shape_interpretation:
            shape = _merge_small_dims(shape, self.merge_small_dims_block_size)
        return _Blocks(shape, tuple(_split(d, self.block_size) for d in shape))

    def init(self, params):
        check_real_leaves(params, "scale_by_shampoo", _STATISTICS)

        def leaf(p):
            dtype = compute_dtype(p)
            blocks = self.blocks(jnp.shape(p))
            sizes = blocks.statistics_sizes() if blocks else []
            eps = hp(self.matrix_epsilon, jnp.zeros((), dtype))
            statistics = tuple(eps * jnp.eye(n, dtype=dtype) for n in sizes)
            preconditioners = tuple(jnp.eye(n, dtype=dtype) for n in sizes)
            zeros = lambda: jnp.zeros(jnp.shape(p), dtype)
            diagonal = zeros() if self.graft_type in _DIAGONAL_GRAFTS else ()
            return diagonal, zeros(), zeros(), statistics, preconditioners

        trees = _map_leaves(leaf, params)
        if trees is None:
            return ShampooState(zero_count(), {}, {}, {}, {}, {})
        return ShampooState(zero_count(), *trees)

    def _exponent(self, blocks: _Blocks, like: jax.Array) -> jax.Array:
        override = hp(self.exponent_override, like)
        return jnp.where(override > 0, override, 2 * len(blocks.shape))

    def _statistics(self, g, statistics, blocks):
        """w1 S + w2 G_b G_b^T for every block b and dim, with w2 = 1 when beta2 = 1."""
        if blocks is None:
            return statistics
        beta2 = hp(self.beta2, g)
        w2 = jnp.where(beta2 == 1, 1, 1 - beta2)
        x = up(g).reshape(blocks.shape)
        new = []
        for index in blocks.slices():
            block = x[index]
            for axis in range(block.ndim):
                new.append(beta2 * statistics[len(new)] + w2 * _gram(block, axis))
        return tuple(new)

    def _graft(self, g, diagonal, count):
        """The graft's direction and its new second moment (distributed_shampoo's forms)."""
        beta2 = hp(self.beta2, g)
        eps = hp(self.diagonal_epsilon, g)
        kind = self.graft_type
        if kind in ("sgd", "none"):
            return g, diagonal
        if kind == "sqrt_n":
            return jnp.sign(g), diagonal
        if kind.endswith("_normalized"):
            g = g / (jnp.linalg.norm(g) + 1e-16)
        if kind.startswith("adagrad"):
            diagonal = diagonal + g**2
            return g / (jnp.sqrt(diagonal) + eps), diagonal
        diagonal = beta2 * diagonal + jnp.where(beta2 == 1, 1, 1 - beta2) * g**2
        if kind == "adam":  # RMSprop with a bias-corrected second moment
            bc2 = bias_correction(self.beta2, safe_increment(count)).astype(g.dtype)
            return g / (jnp.sqrt(diagonal / bc2) + eps), diagonal
        return g / (jnp.sqrt(diagonal) + eps), diagonal

    def _precondition(self, g, preconditioners, blocks):
        x = g.reshape(blocks.shape)
        out, used = jnp.zeros_like(x), 0
        for index in blocks.slices():
            block = x[index]
            for axis in range(block.ndim):
                block = _mode_product(block, preconditioners[used], axis)
                used += 1
            out = out.at[index].set(block)
        return out.reshape(g.shape)

    def update(self, updates, state, params=None, **extra_args):
        del extra_args
        check_real_leaves(updates, "scale_by_shampoo", _STATISTICS)
        count = state.count
        if params is None:
            decay = _concrete_numbers(self.weight_decay)
            if decay is None:  # a transform passed through jit: its weight_decay is traced
                fail_missing(
                    self,
                    "the params (its weight_decay is traced here, so it may not be 0)",
                    "update(updates, state, params)",
                )
            if np.any(decay != 0):
                fail(self, "weight_decay", "weight decay needs the params: pass params=")
            params = jax.tree.map(jnp.zeros_like, updates)  # only weight_decay reads them

        # 1. Statistics, every statistics_compute_steps steps.
        def accumulate():
            return _map_leaves(
                lambda g, s: (self._statistics(g, s, self.blocks(jnp.shape(g))),),
                updates,
                state.statistics,
            )[0]

        statistics = state.statistics
        if jax.tree.leaves(statistics):
            every = count % self.statistics_compute_steps == 0
            statistics = lax.cond(every, accumulate, lambda: state.statistics)

        # 2. Inverse p-th roots, every preconditioning_compute_steps steps, in one cond.
        def refresh():
            def leaf(g, s, old):
                blocks = self.blocks(jnp.shape(g))
                if blocks is None:
                    return (old,)
                p = self._exponent(blocks, up(g))
                new = []
                for stat, previous in zip(s, old):
                    root, _ = matrix_inverse_pth_root(
                        stat,
                        p,
                        ridge_epsilon=self.matrix_epsilon,
                        relative_matrix_epsilon=self.relative_matrix_epsilon,
                    )
                    # A failed root (an overflowing statistic) keeps the previous one.
                    new.append(jnp.where(jnp.all(jnp.isfinite(root)), root, previous))
                return (tuple(new),)

            return _map_leaves(leaf, updates, statistics, state.preconditioners)[0]

        preconditioners = state.preconditioners
        if jax.tree.leaves(preconditioners):
            every = count % self.preconditioning_compute_steps == 0
            preconditioners = lax.cond(every, refresh, lambda: state.preconditioners)

        # 3. Graft, precondition, momentum.
        def leaf(g_in, p, diagonal, diagonal_momentum, momentum, roots):
            g = up(g_in)
            blocks = self.blocks(jnp.shape(g))
            graft, diagonal = self._graft(g, diagonal, count)
            if blocks is None:
                preconditioned = graft
            else:
                preconditioned = self._precondition(g, roots, blocks)
            if self.graft_type == "none":
                shampoo = preconditioned
            else:
                scale = jnp.linalg.norm(graft) / (jnp.linalg.norm(preconditioned) + 1e-16)
                shampoo = preconditioned * scale
            decay = hp(self.weight_decay, g) * up(p)
            shampoo, graft = shampoo + decay, graft + decay
            beta1 = hp(self.beta1, g)
            w = 1 - beta1 if self.moving_average_for_momentum else jnp.ones_like(beta1)
            momentum = beta1 * up(momentum) + w * shampoo
            diagonal_momentum = beta1 * up(diagonal_momentum) + w * graft
            run = count >= self.start_preconditioning_step
            step = jnp.where(run, momentum, diagonal_momentum)
            if self.nesterov:
                step = w * jnp.where(run, shampoo, graft) + beta1 * step
            return step.astype(g_in.dtype), diagonal, diagonal_momentum, momentum

        out = _map_leaves(
            leaf,
            updates,
            params,
            state.diagonal_statistics,
            state.diagonal_momentum,
            state.momentum,
            preconditioners,
        )
        if out is None:
            return updates, state._replace(count=safe_increment(count))
        new_updates, diagonal, diagonal_momentum, momentum = out
        new_state = ShampooState(
            safe_increment(count),
            diagonal,
            diagonal_momentum,
            momentum,
            statistics,
            preconditioners,
        )
        return new_updates, new_state


def scale_by_shampoo(
    block_size: int = 128,
    beta1: float = 0.9,
    beta2: float = 0.999,
    diagonal_epsilon: float = 1e-10,
    matrix_epsilon: float = 1e-6,
    weight_decay: float = 0.0,
    start_preconditioning_step: int = 5,
    preconditioning_compute_steps: int = 1,
    statistics_compute_steps: int = 1,
    best_effort_shape_interpretation: bool = True,
    graft_type: str = "sgd",
    nesterov: bool = True,
    exponent_override: int = 0,
    *,
    moving_average_for_momentum: bool = False,
    skip_preconditioning_dim_size_gt: int = 4096,
    relative_matrix_epsilon: bool = True,
    merge_small_dims_block_size: int = 4096,
    skip_preconditioning_rank_lt: int = 1,
) -> ScaleByShampoo:
    """Shampoo's preconditioned, grafted momentum step (without the learning rate).

    Update rule, per leaf reshaped (``best_effort_shape_interpretation``) and cut into
    blocks of at most ``block_size`` per dim; for every block ``G_b`` and dim ``i``,
    at step ``t = 0, 1, ...``::

        S_bi <- beta2 S_bi + (1 - beta2) unfold_i(G_b) unfold_i(G_b)^T   (1 when beta2 = 1;
                                   S_bi = matrix_epsilon I at t = 0; if t % stat_steps = 0)
        P_bi <- matrix_inverse_pth_root(S_bi, p, matrix_epsilon)   if t % compute_steps = 0
                                   (p = exponent_override, or 2 * rank)
        D_t  = G_b x_1 P_b1 x_2 P_b2 ...  (all blocks)    graft g_t: sgd G, adagrad,
                                   rmsprop, adam, sqrt_n sign(G), none (diagonal_epsilon)
        s_t  = D_t ||g_t|| / (||D_t|| + 1e-16) + wd p;   a_t = g_t + wd p
        m_t  = beta1 m + w s_t;  n_t = beta1 n + w a_t     (w = 1 - beta1 if moving average)
        u_t  = m_t, or w s_t + beta1 m_t (nesterov)       if t >= start_preconditioning_step
               n_t, or w a_t + beta1 n_t                  before it

    Leaves of rank < ``skip_preconditioning_rank_lt`` (scalars always), or with a dim
    above ``skip_preconditioning_dim_size_gt``, use the graft alone. Statistics hold at
    most ``block_size**2`` entries per block and dim; roots run in float32 at least
    (float64 for float64 params) inside one ``lax.cond``.

    Hyperparameter names, order and defaults are distributed_shampoo's (Anil et al.),
    except ``block_size`` (required there; 128 as its docstring advises). Differences:
    graft types are strings, plus ``"adam"`` (RMSprop graft with bias-corrected second
    moment) and ``"none"``; inverse roots by eigendecomposition (exact) instead of
    coupled Newton; a root that is not finite keeps the previous one (no
    ``inverse_failure_threshold``); the relative ridge floor is 1e-16 (optax's), not
    1e-6; no quantisation, sharding, LOBPCG, ``precondtioner_type``,
    ``clip_by_scaled_gradient_norm`` or ``decoupled_learning_rate=False``.

    Args:
        block_size: largest block dimension, an integer >= 1. Default 128.
        beta1: momentum, in [0, 1]. Default 0.9.
        beta2: decay of the statistics, in [0, 1] (1: sums). Default 0.999.
        diagonal_epsilon: the diagonal graft's stabiliser, >= 0 (> 0 for the
            diagonal grafts). Default 1e-10.
        matrix_epsilon: ridge of the inverse roots, >= 0. Default 1e-6.
        weight_decay: coupled decay, >= 0 (needs the params). Default 0.
        start_preconditioning_step: steps of graft alone, an integer >= 0. Default 5.
        preconditioning_compute_steps: steps between root refreshes, an integer
            >= 1. Default 1.
        statistics_compute_steps: steps between statistics updates, an integer
            >= 1. Default 1.
        best_effort_shape_interpretation: merge small dims first. Default True.
        graft_type: one of ``"sgd"`` (default), ``"adagrad"``, ``"rmsprop"``,
            ``"rmsprop_normalized"``, ``"sqrt_n"``, ``"adagrad_normalized"``,
            ``"adam"``, ``"none"``.
        nesterov: Nesterov momentum. Default True.
        exponent_override: the root p, an integer >= 0 (0: twice the rank). Default 0.
        moving_average_for_momentum: weight new steps by 1 - beta1. Default False.
        skip_preconditioning_dim_size_gt: leaves with a larger dim are only
            grafted, an integer >= 1. Default 4096.
        relative_matrix_epsilon: scale the ridge by the largest eigenvalue. Default True.
        merge_small_dims_block_size: largest merged dim, an integer >= 1. Default 4096.
        skip_preconditioning_rank_lt: leaves of lower rank are only grafted, an
            integer >= 0. Default 1.

    References: Gupta, Koren, Singer, *Shampoo*, arXiv:1802.09568, Algorithm 2;
    Anil et al., *Scalable Second Order Optimization for Deep Learning*, arXiv:2002.09018.

    For G = diag(2, 1), ``(G G^T)^(-1/4) G (G^T G)^(-1/4)`` is I, rescaled to the
    norm of G (the sgd graft), sqrt(5 / 2) = 1.581 (shape interpretation off: it would
    merge the 2 x 2 leaf into one vector):

    >>> import gradtx
    >>> import jax.numpy as jnp
    >>> tx = gradtx.scale_by_shampoo(
    ...     beta1=0.0, start_preconditioning_step=0, best_effort_shape_interpretation=False
    ... )
    >>> g = {"w": jnp.array([[2.0, 0.0], [0.0, 1.0]])}
    >>> u, _ = tx.update(g, tx.init(g))
    >>> [round(x, 3) for x in u["w"].ravel().tolist()]
    [1.581, 0.0, 0.0, 1.581]
    """
    return ScaleByShampoo(
        block_size=block_size,
        beta1=beta1,
        beta2=beta2,
        diagonal_epsilon=diagonal_epsilon,
        matrix_epsilon=matrix_epsilon,
        weight_decay=weight_decay,
        start_preconditioning_step=start_preconditioning_step,
        preconditioning_compute_steps=preconditioning_compute_steps,
        statistics_compute_steps=statistics_compute_steps,
        best_effort_shape_interpretation=best_effort_shape_interpretation,
        graft_type=graft_type,
        nesterov=nesterov,
        exponent_override=exponent_override,
        moving_average_for_momentum=moving_average_for_momentum,
        skip_preconditioning_dim_size_gt=skip_preconditioning_dim_size_gt,
        relative_matrix_epsilon=relative_matrix_epsilon,
        merge_small_dims_block_size=merge_small_dims_block_size,
        skip_preconditioning_rank_lt=skip_preconditioning_rank_lt,
    )


@recipe
def shampoo(
    learning_rate: Any,
    block_size: int = 128,
    beta1: float = 0.9,
    beta2: float = 0.999,
    diagonal_epsilon: float = 1e-10,
    matrix_epsilon: float = 1e-6,
    weight_decay: float = 0.0,
    start_preconditioning_step: int = 5,
    preconditioning_compute_steps: int = 1,
    statistics_compute_steps: int = 1,
    best_effort_shape_interpretation: bool = True,
    graft_type: str = "sgd",
    nesterov: bool = True,
    exponent_override: int = 0,
    *,
    moving_average_for_momentum: bool = False,
    skip_preconditioning_dim_size_gt: int = 4096,
    relative_matrix_epsilon: bool = True,
    merge_small_dims_block_size: int = 4096,
    skip_preconditioning_rank_lt: int = 1,
    decoupled_weight_decay: bool = False,
) -> Chain:
    """Shampoo with blocking and grafting, as the authors' ``distributed_shampoo``.

    Update rule::

        p_t = p_{t-1} - lr_t * shampoo_step_t          (scale_by_shampoo)
        p_t = p_{t-1} - lr_t * (shampoo_step_t + weight_decay * p_{t-1})
                                                        (decoupled_weight_decay=True)

    With ``decoupled_weight_decay=False`` (the default) the decay is added to the
    grafted step before momentum, inside :func:`scale_by_shampoo`. Differences from
    distributed_shampoo: its decoupled decay is multiplied by the rate twice
    (``-lr (m + lr wd p)``), here once; see :func:`scale_by_shampoo` for the rest.

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        block_size: largest block dimension, an integer >= 1. Default 128.
        beta1: momentum, in [0, 1]. Default 0.9.
        beta2: decay of the statistics, in [0, 1] (1: sums). Default 0.999.
        diagonal_epsilon: the diagonal graft's stabiliser, >= 0 (> 0 for the
            diagonal grafts). Default 1e-10.
        matrix_epsilon: ridge of the inverse roots, >= 0. Default 1e-6.
        weight_decay: >= 0. Default 0.
        start_preconditioning_step: steps of graft alone, an integer >= 0. Default 5.
        preconditioning_compute_steps: steps between root refreshes, an integer
            >= 1. Default 1.
        statistics_compute_steps: steps between statistics updates, an integer
            >= 1. Default 1.
        best_effort_shape_interpretation: merge small dims first. Default True.
        graft_type: see :func:`scale_by_shampoo`. Default ``"sgd"``.
        nesterov: Nesterov momentum. Default True.
        exponent_override: the root p, an integer >= 0 (0: twice the rank). Default 0.
        moving_average_for_momentum: weight new steps by 1 - beta1. Default False.
        skip_preconditioning_dim_size_gt: leaves with a larger dim are only
            grafted, an integer >= 1. Default 4096.
        relative_matrix_epsilon: scale the ridge by the largest eigenvalue. Default True.
        merge_small_dims_block_size: largest merged dim, an integer >= 1. Default 4096.
        skip_preconditioning_rank_lt: leaves of lower rank are only grafted, an
            integer >= 0. Default 1.
        decoupled_weight_decay: apply the decay after the step. Default False.

    References: Gupta et al., arXiv:1802.09568; Anil et al., arXiv:2002.09018.

    >>> import jax.numpy as jnp, gradtx
    >>> tx = gradtx.shampoo(0.1, start_preconditioning_step=0)
    >>> params = {"w": jnp.ones((2, 3))}
    >>> updates, state = tx.update({"w": jnp.ones((2, 3))}, tx.init(params), params)
    >>> updates["w"].shape
    (2, 3)
    >>> round(float(updates["w"][0, 0]), 4)
    -0.19
    """
    decay = (add_decayed_weights(weight_decay),) if decoupled_weight_decay else ()
    return named_recipe(
        "shampoo",
        scale_by_shampoo(
            block_size,
            beta1,
            beta2,
            diagonal_epsilon,
            matrix_epsilon,
            0.0 if decoupled_weight_decay else weight_decay,
            start_preconditioning_step,
            preconditioning_compute_steps,
            statistics_compute_steps,
            best_effort_shape_interpretation,
            graft_type,
            nesterov,
            exponent_override,
            moving_average_for_momentum=moving_average_for_momentum,
            skip_preconditioning_dim_size_gt=skip_preconditioning_dim_size_gt,
            relative_matrix_epsilon=relative_matrix_epsilon,
            merge_small_dims_block_size=merge_small_dims_block_size,
            skip_preconditioning_rank_lt=skip_preconditioning_rank_lt,
        ),
        *decay,
        scale_by_learning_rate(learning_rate),
    )


# -- SOAP -----------------------------------------------------------------------------


def _soap_merged_shape(shape: tuple[int, ...], max_dim: int) -> tuple[int, ...]:
    """The SOAP authors' ``merge_dims``: neighbours merged while the product <= max_dim."""
    merged, current = [], 1
    for d in shape:
        if current * d > max_dim:
            if current > 1:
                merged.append(current)
                current = d
            else:
                merged.append(d)
                current = 1
        else:
            current *= d
    if current > 1 or not merged:
        merged.append(current)
    return tuple(merged)


class ScaleBySoapState(NamedTuple):
    count: jax.Array
    exp_avg: Any  # Adam's first moment, in the current eigenbasis
    exp_avg_sq: Any  # Adam's second moment, in the current eigenbasis
    gg: Any  # per leaf, a tuple of Shampoo statistics (L, R, ...), one per preconditioned dim
    q: Any  # their eigenbases, columns by decreasing eigenvalue


class ScaleBySoap(Transform):
    """Adam in the eigenbasis of Shampoo's statistics (SOAP), without the learning rate."""

    b1: float = 0.95
    b2: float = 0.95
    shampoo_beta: float | None = None
    eps: float = 1e-8
    precondition_frequency: int = 10
    max_precond_dim: int = static(10000)
    merge_dims: bool = static(False)
    precondition_1d: bool = static(False)
    normalize_grads: bool = static(False)
    correct_bias: bool = static(True)

    def __post_init__(self):
        check_range(self, "b1", low=0.0, high=1.0, high_open=True)
        check_range(self, "b2", low=0.0, high=1.0, high_open=True)
        if self.shampoo_beta is not None:
            check_range(self, "shampoo_beta", low=0.0, high=1.0, high_open=True)
        check_range(self, "eps", low=0.0)
        check_denominator(self, "eps")
        check_range(self, "precondition_frequency", low=1, integer=True)
        check_range(self, "max_precond_dim", low=1, integer=True)

    def layout(self, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[bool, ...]]:
        """The shape SOAP sees a leaf in, and which of its dims it preconditions."""
        shape = tuple(shape)
        if 0 in shape:  # a zero-size leaf: nothing to factor
            return shape, (False,) * len(shape)
        if len(shape) == 1:
            return shape, (self.precondition_1d and shape[0] <= self.max_precond_dim,)
        if self.merge_dims and len(shape) > 1:
            shape = _soap_merged_shape(shape, self.max_precond_dim)
        return shape, tuple(d <= self.max_precond_dim for d in shape)

    def init(self, params):
        check_real_leaves(params, "scale_by_soap", _STATISTICS)

        def leaf(p):
            dtype = compute_dtype(p)
            shape, which = self.layout(jnp.shape(p))
            sizes = [d for d, used in zip(shape, which) if used]
            gg = tuple(jnp.zeros((n, n), dtype) for n in sizes)
            q = tuple(jnp.eye(n, dtype=dtype) for n in sizes)
            return jnp.zeros(jnp.shape(p), dtype), jnp.zeros(jnp.shape(p), dtype), gg, q

        trees = _map_leaves(leaf, params)
        if trees is None:
            return ScaleBySoapState(zero_count(), {}, {}, {}, {})
        return ScaleBySoapState(zero_count(), *trees)

    def _project(self, x, q, which, back=False):
        """x times Q^T along every preconditioned dim (Q with ``back``)."""
        matrices = iter(q)
        for axis, used in enumerate(which):
            if used:
                matrix = next(matrices)
                x = _mode_product(x, matrix if back else matrix.T, axis)
        return x

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        check_real_leaves(updates, "scale_by_soap", _STATISTICS)
        count = state.count
        first = count == 0  # the authors' first step only sets up the eigenbasis
        t = jnp.maximum(count, 1)
        if self.correct_bias:
            factor = jnp.sqrt(bias_correction(self.b2, t)) / bias_correction(self.b1, t)
        else:
            factor = jnp.ones((), default_float())
        shampoo_beta = self.b2 if self.shampoo_beta is None else self.shampoo_beta

        def leaf(g_in, m, v, gg, q):
            g = up(g_in)
            shape, which = self.layout(g.shape)
            x = g.reshape(shape)
            b1, b2, eps = hp(self.b1, g), hp(self.b2, g), hp(self.eps, g)
            projected = self._project(x, q, which)
            m_new = b1 * m.reshape(shape) + (1 - b1) * projected
            v_new = b2 * v.reshape(shape) + (1 - b2) * projected**2
            n = self._project(m_new / (jnp.sqrt(v_new) + eps), q, which, back=True)
            if self.normalize_grads:
                n = n / (1e-30 + jnp.sqrt(jnp.mean(n**2)))
            u = jnp.where(first, 0, factor.astype(g.dtype) * n).reshape(g.shape)
            m = jnp.where(first, m, m_new.reshape(g.shape))
            v = jnp.where(first, v, v_new.reshape(g.shape))
            beta = hp(shampoo_beta, g)
            axes = [axis for axis, used in enumerate(which) if used]
            gg = tuple(beta * s + (1 - beta) * _gram(x, axis) for s, axis in zip(gg, axes))
            return u.astype(g_in.dtype), m, v, gg

        out = _map_leaves(leaf, updates, state.exp_avg, state.exp_avg_sq, state.gg, state.q)
        if out is None:
            return updates, state._replace(count=safe_increment(count))
        new_updates, m, v, gg = out

        def eigenbases():
            def leaf(g_in, s):
                return (tuple(jnp.linalg.eigh(matrix)[1][:, ::-1] for matrix in s),)

            return _map_leaves(leaf, updates, gg)[0]

        def power_step():
            # One power iteration and QR per statistic (the authors' Algorithm 4); the
            # second moment follows the eigenvalue order and the first moment the basis.
            def leaf(g_in, m, v, gg, q):
                shape, which = self.layout(jnp.shape(g_in))
                m = self._project(m.reshape(shape), q, which, back=True)
                v = v.reshape(shape)
                new_q = []
                axes = [axis for axis, used in enumerate(which) if used]
                for s, basis, axis in zip(gg, q, axes):
                    product = jnp.matmul(s, basis, precision=_HIGHEST)
                    order = jnp.argsort(-jnp.sum(basis * product, axis=0))
                    v = jnp.take(v, order, axis=axis)
                    new_q.append(jnp.linalg.qr(product[:, order])[0])
                m = self._project(m, new_q, which)
                return m.reshape(jnp.shape(g_in)), v.reshape(jnp.shape(g_in)), tuple(new_q)

            return _map_leaves(leaf, updates, m, v, gg, state.q)

        q = lax.cond(first, eigenbases, lambda: state.q)
        refresh = ~first & (count % self.precondition_frequency == 0)
        m, v, q = lax.cond(refresh, power_step, lambda: (m, v, q))
        return new_updates, ScaleBySoapState(safe_increment(count), m, v, gg, q)


def scale_by_soap(
    b1: float = 0.95,
    b2: float = 0.95,
    shampoo_beta: float | None = None,
    eps: float = 1e-8,
    precondition_frequency: int = 10,
    max_precond_dim: int = 10000,
    merge_dims: bool = False,
    precondition_1d: bool = False,
    normalize_grads: bool = False,
    correct_bias: bool = True,
) -> ScaleBySoap:
    """SOAP's step: Adam run in the eigenbasis of Shampoo's statistics (no learning rate).

    Update rule, per leaf (dims merged while their product <= ``max_precond_dim`` when
    ``merge_dims``); for each preconditioned dim i (size <= ``max_precond_dim``; a
    vector's only with ``precondition_1d``; none for scalars), at call ``t = 0, 1, ...``::

        t = 0:  L_i = (1 - sb) unfold_i(G) unfold_i(G)^T;  Q_i = eigh(L_i), descending;  u = 0
        t > 0:  G' = G x_i Q_i^T            (every preconditioned dim)
                M' = b1 M' + (1 - b1) G';   V = b2 V + (1 - b2) G'^2
                N  = (M' / (sqrt(V) + eps)) x_i Q_i;   N /= 1e-30 + rms(N)   (normalize_grads)
                u  = sqrt(1 - b2**t) / (1 - b1**t) * N          (1 without correct_bias)
                L_i <- sb L_i + (1 - sb) unfold_i(G) unfold_i(G)^T   (sb = shampoo_beta or b2)
                if t % precondition_frequency == 0:   (one power iteration, QR)
                    order = argsort(-diag(Q_i^T L_i Q_i));  V, Q_i <- V[order], QR(L_i Q_i[order])
                    M' re-expressed in the new basis

    The state is bounded by ``max_precond_dim**2`` per dim; eigendecompositions and QR run
    in float32 at least (float64 for float64 params) inside ``lax.cond``.

    Names and defaults are the authors' (``nikhilvyas/SOAP``), with ``b1, b2`` for
    ``betas``. Differences: ``shampoo_beta=None`` means b2 (the authors' -1); no
    ``data_format`` (channels-first only); QR runs in the params' compute dtype (the
    authors and pytorch-optimizer cast it to float32, so float64 runs differ by float32
    rounding at each refresh); ``normalize_grads`` divides by ``1e-30 + rms`` as the
    authors (pytorch-optimizer adds ``eps``); ``merge_dims`` is the authors' (pytorch-
    optimizer's collapses any leaf of at most max_precond_dim elements to one dim and
    fails to reshape it).

    Args:
        b1: decay of the first moment, in [0, 1). Default 0.95.
        b2: decay of the second moment, in [0, 1). Default 0.95.
        shampoo_beta: decay of the statistics, in [0, 1); None for b2.
        eps: added to the denominator, > 0. Default 1e-8.
        precondition_frequency: steps between eigenbasis refreshes, an integer
            >= 1. Default 10.
        max_precond_dim: largest preconditioned dim, an integer >= 1. Default 10000.
        merge_dims: merge small dims first. Default False.
        precondition_1d: precondition vectors too. Default False.
        normalize_grads: divide each step by its RMS. Default False.
        correct_bias: bias-correct the moments. Default True.

    Reference: Vyas et al., *SOAP: Improving and Stabilizing Shampoo using Adam*,
    arXiv:2409.11321, Algorithms 3 and 4.

    The first call only builds the eigenbasis; the second is Adam's first step in it:

    >>> import gradtx
    >>> import jax.numpy as jnp
    >>> tx, g = gradtx.scale_by_soap(), {"w": jnp.array([[2.0, 0.0], [0.0, 1.0]])}
    >>> u, state = tx.update(g, tx.init(g))
    >>> u, _ = tx.update(g, state)
    >>> [round(x, 4) for x in u["w"].ravel().tolist()]
    [1.0, 0.0, 0.0, 1.0]
    """
    return ScaleBySoap(
        b1=b1,
        b2=b2,
        shampoo_beta=shampoo_beta,
        eps=eps,
        precondition_frequency=precondition_frequency,
        max_precond_dim=max_precond_dim,
        merge_dims=merge_dims,
        precondition_1d=precondition_1d,
        normalize_grads=normalize_grads,
        correct_bias=correct_bias,
    )


@recipe
def soap(
    lr: Any = 3e-3,
    betas: tuple[float, float] = (0.95, 0.95),
    shampoo_beta: float | None = None,
    eps: float = 1e-8,
    weight_decay: Any = 0.01,
    precondition_frequency: int = 10,
    max_precond_dim: int = 10000,
    merge_dims: bool = False,
    precondition_1d: bool = False,
    normalize_grads: bool = False,
    correct_bias: bool = True,
) -> Chain:
    """SOAP with decoupled weight decay, with the authors' names and defaults.

    Update rule::

        p_t = p_{t-1} - lr_t * (soap_step_t + weight_decay * p_{t-1})

    The authors decay after the step (``p <- (p - lr N)(1 - lr wd)``), which differs
    from this AdamW form by ``lr**2 wd N`` per step, and skip the decay on the first
    step, whose update is 0 here apart from the decay.

    Args:
        lr: step size, >= 0; a number or a schedule. Default 3e-3.
        betas: ``(b1, b2)``, each in [0, 1). Default (0.95, 0.95).
        shampoo_beta: decay of the statistics, in [0, 1); None for b2.
        eps: added to the denominator, > 0. Default 1e-8.
        weight_decay: decoupled decay rate, >= 0; a number or a schedule. Default 0.01.
        precondition_frequency: steps between eigenbasis refreshes, an integer
            >= 1. Default 10.
        max_precond_dim: largest preconditioned dim, an integer >= 1. Default 10000.
        merge_dims: merge small dims first. Default False.
        precondition_1d: precondition vectors too. Default False.
        normalize_grads: divide each step by its RMS. Default False.
        correct_bias: bias-correct the moments. Default True.

    Reference: Vyas et al., arXiv:2409.11321.

    >>> import jax.numpy as jnp, gradtx
    >>> tx = gradtx.soap(weight_decay=0.0)
    >>> params = {"w": jnp.ones((2, 3))}
    >>> updates, state = tx.update({"w": jnp.ones((2, 3))}, tx.init(params), params)
    >>> float(updates["w"].sum())   # the first step only builds the eigenbasis
    0.0
    """
    b1, b2 = betas
    return named_recipe(
        "soap",
        scale_by_soap(
            b1,
            b2,
            shampoo_beta,
            eps,
            precondition_frequency,
            max_precond_dim,
            merge_dims,
            precondition_1d,
            normalize_grads,
            correct_bias,
        ),
        add_decayed_weights(weight_decay),
        scale_by_learning_rate(lr),
    )
