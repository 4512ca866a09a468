"""The multi-tensor fast path: an elementwise chain run over a few flat buffers, not per leaf."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._base import check_range, static, Transform
from ._combine import as_transform


@jax.tree_util.register_static
class WholeLeaves(tuple):
    """The paths of the leaves kept whole, decided once at init: static, part of the tree."""


class MultiTensorState(NamedTuple):
    """The inner state in buffer layout (a dict of per-dtype buffers and whole leaves).

    ``offsets`` holds where each bucketed leaf starts in its buffer, as int32
    scalars: runtime values, so XLA compiles one slicing kernel per leaf shape,
    not one per leaf (a constant offset is baked into its kernel, and XLA:CPU
    spends ~10 ms compiling each distinct kernel).
    """

    inner_state: Any
    whole: WholeLeaves
    offsets: tuple


def _unsafe(transform: Any) -> str | None:
    """The name of the first part of ``transform`` that needs per-leaf structure, if any."""
    if not isinstance(transform, Transform):
        return type(transform).__name__
    if not getattr(type(transform), "elementwise", False):
        return transform.name
    for child in transform.children_transforms():
        found = _unsafe(child)
        if found:
            return found
    return None


def _is_sharded(x: Any) -> bool:
    """Whether a concrete array is split over several devices (not merely replicated)."""
    sharding = getattr(x, "sharding", None)
    if sharding is None or len(getattr(sharding, "device_set", ())) <= 1:
        return False
    return not sharding.is_fully_replicated


class _Layout(NamedTuple):
    """Where each leaf goes: its buffer key and its offset there (None: kept whole)."""

    treedef: Any
    keys: tuple
    offsets: tuple
    shapes: tuple


# Leaves from this many elements up stay whole. Bucketing a leaf costs two extra passes
# over it (packing the gradient, unpacking the update) and saves one kernel: on a CPU a
# small kernel costs ~5-20 us, the copies ~2 ns per element, even at a few thousand
# elements (Adam, 2000 equal leaves, bucketed / optax: 0.85x at 512 elements, see
# benchmarks/RESULTS.md; 0.9x at 2k; 1.0x and 1.3x in two runs at 8k).
# On accelerators a launch (~5 us) buys ~1M elements of copies at 3 TB/s (not yet measured).
DEFAULT_BUCKET_LIMIT = {"cpu": 1 << 12}
ACCELERATOR_BUCKET_LIMIT = 1 << 19


def _whole_leaves(params: Any, bucket_limit: int | None) -> WholeLeaves:
    """Large leaves and leaves sharded over devices stay whole (no copy, own sharding)."""
    if bucket_limit is None:
        backend = jax.default_backend()
        bucket_limit = DEFAULT_BUCKET_LIMIT.get(backend, ACCELERATOR_BUCKET_LIMIT)
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return WholeLeaves(
        jax.tree_util.keystr(path)
        for path, leaf in flat
        if math.prod(jnp.shape(leaf)) >= bucket_limit or _is_sharded(leaf)
    )


def _layout(tree: Any, whole: WholeLeaves) -> _Layout:
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    keys, offsets, shapes, filled = [], [], [], {}
    for path, leaf in flat:
        name, shape = jax.tree_util.keystr(path), jnp.shape(leaf)
        if name in whole:
            keys.append(name)
            offsets.append(None)
        else:
            key = f"bucket_{jnp.dtype(jnp.result_type(leaf)).name}"
            keys.append(key)
            offsets.append(filled.get(key, 0))
            filled[key] = filled.get(key, 0) + math.prod(shape)
        shapes.append(shape)
    return _Layout(treedef, tuple(keys), tuple(offsets), tuple(shapes))


def _offsets(layout: _Layout) -> tuple:
    return tuple(jnp.int32(offset) for offset in layout.offsets if offset is not None)


def _pack(tree: Any, layout: _Layout) -> dict:
    leaves = layout.treedef.flatten_up_to(tree)
    parts: dict[str, list] = {}
    buffers = {}
    for leaf, key, offset in zip(leaves, layout.keys, layout.offsets):
        if offset is None:
            buffers[key] = leaf
        else:
            parts.setdefault(key, []).append(jnp.ravel(leaf))
    buffers.update({k: jnp.concatenate(v) if len(v) > 1 else v[0] for k, v in parts.items()})
    # Barriers keep XLA from fusing the concatenation into the update and the update into
    # every slice: such fusions each carry all N operands, N^2 work to compile.
    return jax.lax.optimization_barrier(buffers)


def _unpack(buffers: dict, layout: _Layout, offsets: tuple) -> Any:
    buffers = jax.lax.optimization_barrier(buffers)
    starts = iter(offsets)
    leaves = []
    for key, offset, shape in zip(layout.keys, layout.offsets, layout.shapes):
        if offset is None:
            leaves.append(buffers[key])
        else:
            part = jax.lax.dynamic_slice(buffers[key], (next(starts),), (math.prod(shape),))
            leaves.append(part.reshape(shape))
    return layout.treedef.unflatten(leaves)


class MultiTensor(Transform):
    """Runs an elementwise ``inner`` chain over per-dtype flat buffers."""

    inner: Transform
    bucket_limit: int | None = static(None)

    def __post_init__(self):
        object.__setattr__(self, "inner", as_transform(self.inner))
        if self.bucket_limit is not None:
            check_range(self, "bucket_limit", low=1)
        culprit = _unsafe(self.inner)
        if culprit:
            raise ValueError(
                f"multi_tensor: {culprit} needs each leaf's own structure and cannot run on "
                f"flat buffers; keep it outside: chain({culprit}(...), multi_tensor(...))"
            )

    def init(self, params):
        whole = _whole_leaves(params, self.bucket_limit)
        layout = _layout(params, whole)
        inner_state = self.inner.init(_pack(params, layout))
        return MultiTensorState(inner_state, whole, _offsets(layout))

    def update(self, updates, state, params=None, **extra_args):
        layout = _layout(updates, state.whole)
        flat_params = None if params is None else _pack(params, layout)
        flat, inner_state = self.inner.update(
            _pack(updates, layout), state.inner_state, flat_params, **extra_args
        )
        updates = _unpack(flat, layout, state.offsets)
        return updates, MultiTensorState(inner_state, state.whole, state.offsets)


def multi_tensor(inner: Any, bucket_limit: int | None = None) -> MultiTensor:
    """The fast path: ``inner`` runs on a few flat buffers instead of leaf by leaf.

    Leaves smaller than ``bucket_limit`` elements are concatenated into one
    buffer per dtype; larger leaves, and leaves sharded over several devices,
    are kept whole (no copy, and their state keeps their sharding). The default
    limit is 4096 elements on CPU and 2**19 on accelerators, where a kernel
    launch costs more copying. Which leaves stay whole is decided by ``init`` from
    the params it is given. The inner state lives in that layout between steps,
    so the optimizer's maths is a handful of fused loops per step whatever the
    leaf count, and compile time grows more slowly than it (measured: leaves**0.75
    for Adam, against optax's leaves**1.07). The updates come back as a
    tree, one slice per leaf. Numbers equal the per-leaf path (elementwise
    maths is the same per element; a global norm sums in another order).

    Only elementwise transforms can run on buffers: the Adam family, SGD and
    momentum, RMSprop, Adagrad, Adadelta, sign methods, clipping by value or
    global norm, weight decay, schedules. Transforms that need leaf boundaries
    (``clip_by_block_rms``, masks, ``partition``, per-leaf noise) are rejected
    when built; keep them outside::

        clipped_adamw = gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adamw(3e-4))
        tx = gradtx.multi_tensor(clipped_adamw)

    >>> import gradtx, jax.numpy as jnp
    >>> params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
    >>> tx = gradtx.multi_tensor(gradtx.adam(0.1))
    >>> state = tx.init(params)
    >>> {k: v.shape for k, v in gradtx.tree_get(state, "mu").items()}
    {'bucket_float32': (9,)}
    >>> state = gradtx.multi_tensor(gradtx.adam(0.1), bucket_limit=5).init(params)
    >>> {k: v.shape for k, v in gradtx.tree_get(state, "mu").items()}
    {"['w']": (2, 3), 'bucket_float32': (3,)}
    """
    return MultiTensor(inner=inner, bucket_limit=bucket_limit)
