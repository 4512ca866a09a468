"""Compressed gradient exchange with error feedback: threshold, top-k, sign, PowerSGD.

Each transform runs where the data-parallel all-reduce happens, inside
``jax.shard_map`` over the data axis ``axis_name``: it takes this worker's
gradient ``g``, adds the residual ``r`` it kept from earlier steps, compresses,
exchanges the compressed message over the axis, and returns the decompressed
average of all workers' messages. What was not sent stays in ``r`` (error
feedback), so nothing is lost, only delayed. The state is per worker: build it
with ``init`` on every device (for instance, stack one copy per device and
shard the stack over the axis). ``axis_name=None`` is one worker: compression
and error feedback, no collective.

Every state holds ``bytes_sent``, what this worker would put on the wire at the
last step under the transform's cost model, and ``dense_bytes``, its payload in
a dense all-reduce of the same gradients (every entry in the gradients' dtype).
Both count the message one worker contributes, not the collective algorithm's
own factor (2 (n - 1) / n for a ring), which is the same for every method.

A data-parallel step (on as many devices as there are; each worker keeps its
own state, stacked over the data axis):

>>> import jax, jax.numpy as jnp, gradtx
>>> from jax.sharding import NamedSharding, PartitionSpec as P
>>> mesh = jax.make_mesh((jax.device_count(),), ("data",))
>>> tx = gradtx.top_k_compression(0.25, axis_name="data")
>>> def worker_step(w, x, state):  # this worker's batch x and state
...     state = jax.tree.map(lambda s: s[0], state)
...     grads = jax.grad(lambda w: jnp.sum((x @ w) ** 2))(w)
...     update, state = tx.update(grads, state)  # the workers' average
...     return update, jax.tree.map(lambda s: s[None], state)
>>> step = jax.jit(jax.shard_map(
...     worker_step, mesh=mesh, in_specs=(P(), P("data"), P("data")),
...     out_specs=(P(), P("data"))))
>>> per_worker = NamedSharding(mesh, P("data"))
>>> w, x = jnp.ones((4, 3)), jax.device_put(jnp.ones((8, 4)), per_worker)
>>> stack = lambda s: jnp.stack([s] * jax.device_count())
>>> state = jax.device_put(jax.tree.map(stack, tx.init(w)), per_worker)
>>> update, state = step(w, x, state)
>>> sent, dense = jax.device_get((state.bytes_sent, state.dense_bytes))
>>> float(sent[0]), float(dense[0])  # worker 0: 3 of 12 entries, values and indices
(24.0, 48.0)
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._base import check_range, fail, static, Transform
from ._tree import (
    check_same_shapes,
    compute_dtype,
    default_float,
    hp,
    prng_key,
    tree_divide_by_norm,
    tree_full_like,
    tree_map_unzip,
    up,
)


class CompressionState(NamedTuple):
    residual: Any  # params-shaped, at least float32: what this worker has not sent yet
    bytes_sent: jax.Array  # this worker's message at the last step, in bytes
    dense_bytes: jax.Array  # the same gradients' dense all-reduce payload, in bytes


class PowerSGDState(NamedTuple):
    residual: Any
    q: Any  # params-shaped: the warm-started (m, rank) factor of each compressed matrix
    bytes_sent: jax.Array
    dense_bytes: jax.Array


def _itemsize(x: Any) -> int:
    return np.dtype(jnp.result_type(x)).itemsize


def _size(x: Any) -> int:
    return math.prod(jnp.shape(x))


def _bytes(n: Any) -> jax.Array:
    return jnp.asarray(n, default_float())


def _residuals_like(params: Any) -> Any:
    # Kept at least in float32: a half-precision residual would round away the small
    # entries that error feedback exists to keep.
    return jax.tree.map(lambda p: tree_full_like(p, 0, compute_dtype(p)), params)


def _dense_bytes(params: Any) -> jax.Array:
    return _bytes(sum((_size(p) * _itemsize(p) for p in jax.tree.leaves(params)), 0))


def _workers(tx: Transform) -> int:
    """The number of workers over ``tx.axis_name``, with a clear error outside shard_map."""
    if tx.axis_name is None:
        return 1
    try:
        return jax.lax.axis_size(tx.axis_name)
    except NameError:
        fail(
            tx,
            "axis_name",
            f"no axis named {tx.axis_name!r} is bound here: call update inside "
            "jax.shard_map (or jax.pmap) over that axis, where the gradients are "
            "all-reduced, or pass axis_name=None for a single worker",
        )


def _mean(x: jax.Array, axis_name: Any) -> jax.Array:
    return x if axis_name is None else jax.lax.pmean(x, axis_name)


class _ErrorFeedback(Transform):
    """Shared shell: residual in, compress and exchange each leaf, residual out."""

    axis_name: Any = static()

    def init(self, params):
        return CompressionState(_residuals_like(params), _bytes(0), _dense_bytes(params))

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        workers = _workers(self)

        def leaf(g, r):
            accumulated = r + up(g)
            sent, nbytes = self._compress(accumulated, jnp.result_type(g))
            average = self._exchange(sent, accumulated, workers)
            return average.astype(jnp.result_type(g)), accumulated - sent, _bytes(nbytes)

        average, residual, nbytes = tree_map_unzip(leaf, updates, state.residual)
        bytes_sent = sum(jax.tree.leaves(nbytes), _bytes(0))
        return average, CompressionState(residual, bytes_sent, state.dense_bytes)

    def _compress(self, accumulated: jax.Array, dtype: Any) -> tuple[jax.Array, Any]:
        """This worker's message, decompressed, and its size in bytes."""
        raise NotImplementedError

    def _exchange(self, sent: jax.Array, accumulated: jax.Array, workers: int) -> jax.Array:
        """The average of every worker's decompressed message."""
        del accumulated, workers
        return _mean(sent, self.axis_name)


class ThresholdCompression(_ErrorFeedback):
    """Sends ``±threshold`` where the accumulated gradient exceeds it (Strom 2015)."""

    threshold: float = 1e-3

    def __post_init__(self):
        check_range(self, "threshold", low=0.0, low_open=True)

    def _compress(self, accumulated, dtype):
        del dtype
        tau = hp(self.threshold, accumulated)
        over = jnp.abs(accumulated) > tau
        return jnp.where(over, tau * jnp.sign(accumulated), 0), 4 * jnp.sum(over)


def threshold_compression(threshold: float, axis_name: Any) -> ThresholdCompression:
    """Threshold sparsification with error feedback, the seed's method (Strom 2015).

    Update rule, for each worker ``w`` and entry (``r`` starts at 0)::

        a_w = r_w + g_w
        s_w = threshold * sign(a_w)   where |a_w| > threshold, else 0
        r_w <- a_w - s_w
        u   = mean over workers of s_w

    As in the paper the sent entries are quantised to ``±threshold``: an entry
    far above it is drained over several steps. The exchange is a dense
    ``pmean`` of ``s_w`` (XLA has no sparse all-reduce); ``bytes_sent`` is what
    Strom's encoding would send: one 32-bit word per sent entry (31-bit index
    and the sign bit). ``threshold`` > 0, in the gradients' units.

    ``axis_name``: the data-parallel axis of the enclosing ``jax.shard_map``
    (None: one worker, no collective).

    Args:
        threshold: > 0, in the gradients' units.
        axis_name: the data-parallel axis of the enclosing ``jax.shard_map``, or None
            for one worker (required, static).

    Reference: Strom, *Scalable distributed DNN training using commodity GPU
    cloud computing*, Interspeech 2015.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.threshold_compression(1.0, axis_name=None)
    >>> g = {"w": jnp.array([0.3, -2.0, 0.5, 1.2])}
    >>> u, state = tx.update(g, tx.init(g))
    >>> [round(float(v), 4) for v in u["w"]], [round(float(v), 4) for v in state.residual["w"]]
    ([0.0, -1.0, 0.0, 1.0], [0.3, -1.0, 0.5, 0.2])
    """
    return ThresholdCompression(threshold=threshold, axis_name=axis_name)


class TopKCompression(_ErrorFeedback):
    """Sends the ``ratio`` fraction of entries of largest magnitude, per leaf."""

    ratio: float = static(0.01)  # static: k fixes the shapes exchanged

    def __post_init__(self):
        check_range(self, "ratio", low=0.0, high=1.0, low_open=True)

    def k(self, leaf: Any) -> int:
        """How many entries of ``leaf`` are sent: ``max(1, round(ratio * size))``, at most all."""
        return min(_size(leaf), max(1, round(self.ratio * _size(leaf))))

    def _top_k(self, accumulated):
        flat = accumulated.ravel()
        _, index = jax.lax.top_k(jnp.abs(flat), self.k(flat))
        return flat[index], index

    def _compress(self, accumulated, dtype):
        values, index = self._top_k(accumulated)
        sent = jnp.zeros_like(accumulated.ravel()).at[index].set(values)
        return sent.reshape(accumulated.shape), self.k(accumulated) * (np.dtype(dtype).itemsize + 4)

    def _exchange(self, sent, accumulated, workers):
        # Every worker gathers the others' (value, index) pairs and scatters their sum.
        values, index = self._top_k(accumulated)
        if self.axis_name is not None:
            # Invariant: shard_map knows the sum is the same on every worker (out_specs P()).
            values = jax.lax.all_gather(values, self.axis_name, to="invarying")
            index = jax.lax.all_gather(index, self.axis_name, to="invarying")
        total = jnp.zeros(accumulated.size, accumulated.dtype).at[index.ravel()].add(values.ravel())
        return (total / workers).reshape(accumulated.shape)


def top_k_compression(ratio: float, axis_name: Any) -> TopKCompression:
    """Top-k sparsification with error feedback, per leaf.

    Update rule, for each worker ``w`` and leaf of ``d`` entries (``r`` starts at 0)::

        a_w = r_w + g_w
        k   = max(1, round(ratio * d))
        s_w = a_w on the k entries of largest |a_w|, else 0
        r_w <- a_w - s_w
        u   = mean over workers of s_w

    The exchange all-gathers each worker's k values and indices and sums them.
    ``bytes_sent`` per leaf: k values in the gradients' dtype and k int32
    indices. ``ratio`` in (0, 1], a static field (k fixes the shapes).

    ``axis_name``: the data-parallel axis of the enclosing ``jax.shard_map``
    (None: one worker, no collective).

    Args:
        ratio: the share of each leaf sent, in (0, 1] (static).
        axis_name: the data-parallel axis of the enclosing ``jax.shard_map``, or None
            for one worker (required, static).

    Reference: Stich, Cordonnier, Jaggi, *Sparsified SGD with memory*,
    NeurIPS 2018; Aji and Heafield, *Sparse communication for distributed
    gradient descent*, EMNLP 2017.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.top_k_compression(0.25, axis_name=None)
    >>> g = {"w": jnp.array([0.3, -2.0, 0.5, 1.2])}
    >>> u, state = tx.update(g, tx.init(g))
    >>> [round(float(v), 4) for v in u["w"]], [round(float(v), 4) for v in state.residual["w"]]
    ([0.0, -2.0, 0.0, 0.0], [0.3, 0.0, 0.5, 1.2])
    """
    return TopKCompression(ratio=ratio, axis_name=axis_name)


class SignCompression(_ErrorFeedback):
    """Sends each leaf's signs and one scale, the mean of its magnitudes (EF-signSGD)."""

    def _compress(self, accumulated, dtype):
        del dtype
        signs = jnp.where(accumulated >= 0, 1, -1).astype(accumulated.dtype)  # 1 bit: no 0
        scale = jnp.mean(jnp.abs(accumulated))
        nbytes = math.ceil(_size(accumulated) / 8) + 4 if _size(accumulated) else 0
        return scale * signs, nbytes


def sign_compression(axis_name: Any) -> SignCompression:
    """1-bit compression with error feedback, the compression of 1-bit Adam.

    Update rule, for each worker ``w`` and leaf of ``d`` entries (``r`` starts at 0)::

        a_w = r_w + g_w
        s_w = (|a_w|_1 / d) * sign(a_w)        sign(0) = +1: one bit per entry
        r_w <- a_w - s_w
        u   = mean over workers of s_w

    The exchange is a dense ``pmean`` of ``s_w``; ``bytes_sent`` per leaf is
    what the encoding sends: ``ceil(d / 8)`` bytes of signs and a float32 scale.
    The paper compresses ``lr * g``; as a transform before the learning rate,
    this compresses ``g`` (the same with a constant rate). This is not
    signSGD's majority vote, which sends the sign of the workers' sum of signs.

    ``axis_name``: the data-parallel axis of the enclosing ``jax.shard_map``
    (None: one worker, no collective).

    Args:
        axis_name: the data-parallel axis of the enclosing ``jax.shard_map``, or None
            for one worker (required, static).

    Reference: Karimireddy, Rebjock, Stich, Jaggi, *Error feedback fixes
    SignSGD and other gradient compression schemes*, ICML 2019; Tang et al.,
    *1-bit Adam*, ICML 2021.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.sign_compression(axis_name=None)
    >>> g = {"w": jnp.array([0.3, -2.0, 0.5, 1.2])}
    >>> u, state = tx.update(g, tx.init(g))
    >>> [round(float(v), 4) for v in u["w"]], [round(float(v), 4) for v in state.residual["w"]]
    ([1.0, -1.0, 1.0, 1.0], [-0.7, -1.0, -0.5, 0.2])
    """
    return SignCompression(axis_name=axis_name)


def _orthogonalize(p: jax.Array) -> jax.Array:
    """Gram-Schmidt on the columns of ``p``, as torch's PowerSGD hook does it.

    A zero column stays zero (torch's hook divides 0 by 0 unless given an epsilon); a
    column whose squares underflow is still made a unit vector (tree_divide_by_norm).
    """
    columns = []
    for i in range(p.shape[1]):
        col = p[:, i]
        for done in columns:
            col = col - jnp.sum(done * col) * done
        columns.append(tree_divide_by_norm(col, col))
    return jnp.stack(columns, axis=1)


class PowerSGD(Transform):
    """Rank-r power-iteration compression with error feedback and warm start (PowerSGD)."""

    rank: int = static(1)
    axis_name: Any = static()
    key: Any = 0
    min_compression_rate: float = static(2.0)

    def __post_init__(self):
        check_range(self, "rank", low=1, integer=True)
        check_range(self, "min_compression_rate", low=0.0, low_open=True)

    @property
    def name(self) -> str:
        return "powersgd"

    def matrix_shape(self, leaf: Any) -> tuple[int, int] | None:
        """``(n, m)``, the leaf seen as a matrix, or None when it is sent uncompressed.

        As torch: a leaf of shape ``(n, ...)`` is an ``n x m`` matrix; it is
        compressed when ``(n + m) * r * min_compression_rate < n * m`` with
        ``r = min(n, m, rank)``. Scalars and vectors are never compressed.
        """
        shape = jnp.shape(leaf)
        if len(shape) < 2:
            return None
        n, m = shape[0], math.prod(shape[1:])
        if (n + m) * self._rank(n, m) * self.min_compression_rate >= n * m:
            return None
        return n, m

    def _rank(self, n: int, m: int) -> int:
        return min(n, m, self.rank)

    def init(self, params):
        key = prng_key(self.key)
        leaves, treedef = jax.tree.flatten(params)
        keys = jax.random.split(key, max(len(leaves), 1))

        def q(p, k):
            shape = self.matrix_shape(p)
            if shape is None:
                return jnp.zeros((0,), compute_dtype(p))  # no factor: sent uncompressed
            n, m = shape
            return jax.random.normal(k, (m, self._rank(n, m)), compute_dtype(p))

        qs = treedef.unflatten([q(p, k) for p, k in zip(leaves, keys)])
        return PowerSGDState(_residuals_like(params), qs, _bytes(0), _dense_bytes(params))

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        _workers(self)  # a clear error outside shard_map

        def leaf(g, r, q):
            accumulated = r + up(g)
            shape = self.matrix_shape(g)
            if shape is None:
                average = _mean(accumulated, self.axis_name)
                nbytes = _size(g) * _itemsize(g)
            else:
                n, m = shape
                matrix = accumulated.reshape(n, m)
                warm = _orthogonalize(q)
                p_hat = _orthogonalize(_mean(matrix @ warm, self.axis_name))
                q = _mean(matrix.T @ p_hat, self.axis_name)
                average = (p_hat @ q.T).reshape(jnp.shape(g))
                # A column of Q that came out 0 (a zero gradient, or one of lower rank than
                # r) would stay 0 at every later step: the next step starts from the last
                # nonzero one. Q is the workers' mean, so all of them choose alike.
                q = jnp.where(jnp.any(q != 0, axis=0), q, warm)
                nbytes = (n + m) * q.shape[1] * _itemsize(g)
            # As torch: the residual is what this worker's gradient lacks in the average.
            return average.astype(jnp.result_type(g)), accumulated - average, q, _bytes(nbytes)

        # Q's shapes are not the leaves': zipped here, not by tree_map_unzip.
        check_same_shapes(updates, state.residual)
        leaves, treedef = jax.tree.flatten(updates)
        columns = (treedef.flatten_up_to(t) for t in (updates, state.residual, state.q))
        outputs = [leaf(*args) for args in zip(*columns)]
        if not outputs:
            return updates, state
        average, residual, qs, nbytes = (treedef.unflatten(list(c)) for c in zip(*outputs))
        bytes_sent = sum(jax.tree.leaves(nbytes), _bytes(0))
        return average, PowerSGDState(residual, qs, bytes_sent, state.dense_bytes)


def powersgd(
    rank: int, axis_name: Any, key: Any = 0, min_compression_rate: float = 2.0
) -> PowerSGD:
    """PowerSGD: rank-r compression by one power iteration, with error feedback.

    Update rule, for each leaf seen as an ``n x m`` matrix ``M`` (``e`` starts
    at 0, ``Q`` (m x r) at a standard normal draw from ``key``, the same on
    every worker)::

        M_w = e_w + g_w
        Q   = orthogonalize(Q)                   Gram-Schmidt on the columns
        P   = orthogonalize(mean_w(M_w Q))
        Q   = mean_w(M_w^T P)                    kept for the next step (warm start)
        u   = P Q^T
        e_w <- M_w - u

    Leaves are matrices as in torch's DDP hook: ``(n, ...)`` becomes ``n x m``;
    scalars, vectors and matrices that compress less than
    ``min_compression_rate`` times are all-reduced densely (``u = mean_w(M_w)``,
    residual ``M_w - u`` as torch). ``bytes_sent`` per compressed leaf:
    ``(n + m) * r`` entries of P and Q in the gradients' dtype; the others
    their dense size. ``rank`` >= 1 (static; ``r = min(n, m, rank)``).

    Differences from torch's hook: no dense warm-up (torch's
    ``start_powerSGD_iter``, 1,000 dense steps by default); a zero column stays zero in
    Gram-Schmidt instead of needing ``orthogonalization_epsilon``; a column of the new Q
    that is zero (a zero gradient, or one of rank below r) is not kept for the next step,
    the previous one is (torch's hook keeps the zero, or NaN without an epsilon, and that
    column never recovers); Gram-Schmidt at every rank (torch uses QR above rank 2: the
    same span, other signs).
    Torch also orthogonalises the warm-started Q, which the paper's Algorithm 1
    does not; so does this, for conditioning only: Gram-Schmidt of ``M Q R`` is
    that of ``M Q`` for an upper-triangular ``R``: the same numbers up to rounding.

    ``axis_name``: the data-parallel axis of the enclosing ``jax.shard_map``
    (None: one worker, no collective).

    Args:
        rank: r, an integer >= 1 (static).
        axis_name: the data-parallel axis of the enclosing ``jax.shard_map``, or None
            for one worker (required, static).
        key: the PRNG key or integer seed of the first Q. Default 0.
        min_compression_rate: leaves compressing less are sent densely, > 0 (static).
            Default 2.0.

    Reference: Vogels, Karimireddy, Jaggi, *PowerSGD: Practical low-rank
    gradient compression for distributed optimization*, NeurIPS 2019.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.powersgd(1, axis_name=None, min_compression_rate=1.0)
    >>> g = {"w": jnp.array([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]])}  # rank 1: sent exactly
    >>> u, state = tx.update(g, tx.init(g))
    >>> [[round(float(v), 4) for v in row] for row in u["w"]], float(state.bytes_sent)
    ([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]], 20.0)
    """
    return PowerSGD(
        rank=rank, axis_name=axis_name, key=key, min_compression_rate=min_compression_rate
    )
