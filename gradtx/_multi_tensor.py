"""The multi-tensor fast path: an elementwise chain run over a few flat buffers, not per leaf."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._base import check_range, static, Transform
from ._combine import as_transform, FromOptax
from ._flat import buffer_layout, BufferLayout, is_sharded, pack
from ._tree import check_same_structure


class MultiTensorState(NamedTuple):
    """The inner state in buffer layout (a dict of per-dtype buffers and whole leaves).

    ``layout`` (static) says where each leaf of the params lives. ``offsets``
    holds where each bucketed leaf starts in its buffer, as int32 scalars:
    runtime values, so XLA compiles one slicing kernel per leaf shape, not one
    per leaf (a constant offset is baked into its kernel, and XLA:CPU spends
    ~10 ms compiling each distinct kernel). ``gradtx.tree_get`` reads the
    state as :meth:`per_leaf` gives it.
    """

    inner_state: Any
    layout: BufferLayout
    offsets: tuple

    def per_leaf(self) -> Any:
        """The inner state as the per-leaf path keeps it: buffers split into the params' tree.

        Moments, averages (``ema_params``, ``polyak_average``) and slow weights
        (``lookahead``) come back with the params' structure and shapes, in the
        dtypes they are stored in; counts and other values are as they are.
        """
        return jax.tree.map(
            lambda x: _unpack(x, self.layout, self.offsets) if self.layout.holds(x) else x,
            self.inner_state,
            is_leaf=self.layout.holds,
        )

    def _named_children(self) -> list[tuple[str, Any]]:
        """What ``gradtx.tree_get`` sees: the fields, the inner state per leaf."""
        return [
            ("inner_state", self.per_leaf()),
            ("layout", self.layout),
            ("offsets", self.offsets),
        ]

    def _replace_named_children(self, children: dict) -> MultiTensorState:
        """The state from :meth:`_named_children`' values (``gradtx.tree_set``): packed again."""
        packed = jax.tree.map(
            lambda old, new: (
                pack(new, self.layout, "multi_tensor", "state") if self.layout.holds(old) else new
            ),
            self.inner_state,
            children["inner_state"],
            is_leaf=self.layout.holds,
        )
        return MultiTensorState(packed, children["layout"], children["offsets"])


def _unsafe(transform: Any) -> Any:
    """The first part of ``transform`` that needs per-leaf structure, or None."""
    if not isinstance(transform, Transform) or not getattr(type(transform), "elementwise", False):
        return transform
    for child in transform.children_transforms():
        found = _unsafe(child)
        if found is not None:
            return found
    return None


# Leaves from this many elements up stay whole. Bucketing a leaf costs two extra passes
# over it (packing the gradient, unpacking the update) and saves one kernel: on a CPU a
# small kernel costs ~5-20 us, the copies ~2 ns per element, even at a few thousand
# elements (Adam, 2000 equal leaves, bucketed / optax: 0.85x at 512 elements, see
# benchmarks/RESULTS.md; 0.9x at 2k; 1.0x and 1.3x in two runs at 8k).
# On accelerators a launch (~5 us) buys ~1M elements of copies at 3 TB/s (not yet measured).
DEFAULT_BUCKET_LIMIT = {"cpu": 1 << 12}
ACCELERATOR_BUCKET_LIMIT = 1 << 19


def _buffer_layout(params: Any, bucket_limit: int | None) -> BufferLayout:
    """Large leaves and leaves sharded over devices stay whole (no copy, own sharding).

    The others share one buffer per params dtype: the state's dtypes follow the
    params', whatever dtype the gradients come in.
    """
    if bucket_limit is None:
        backend = jax.default_backend()
        bucket_limit = DEFAULT_BUCKET_LIMIT.get(backend, ACCELERATOR_BUCKET_LIMIT)

    def buffer_of(path, leaf, dtype):
        whole = math.prod(jnp.shape(leaf)) >= bucket_limit or is_sharded(leaf)
        return None if whole else f"bucket_{dtype.name}"

    return buffer_layout(params, buffer_of)


def _check_fits(tree: Any, layout: BufferLayout, what: str, with_dtypes: bool = False) -> None:
    """Raises a ValueError naming the first leaf whose path or shape (or dtype) is not the layout's.

    Leaves of other shapes with the same total would otherwise pass: the
    buffers would be cut at the wrong places, each leaf reading another's state.
    """
    leaves, treedef = jax.tree.flatten(tree)
    if treedef != layout.treedef:
        check_same_structure(tree, layout.treedef.unflatten(layout.paths), "multi_tensor state")
    for path, leaf, shape, dtype in zip(layout.paths, leaves, layout.shapes, layout.dtypes):
        if jnp.shape(leaf) != shape:
            raise _misfit(what, path, "shape", jnp.shape(leaf), shape)
        # Gradients may come in another dtype than the params (their buffer is the params').
        if with_dtypes and jnp.result_type(leaf) != dtype:
            raise _misfit(what, path, "dtype", jnp.result_type(leaf), dtype)


def _misfit(what: str, path: str, kind: str, theirs: Any, ours: Any) -> ValueError:
    return ValueError(
        f"multi_tensor: the {what} do not fit the state's buffer layout at {path}: {kind} "
        f"{theirs} in the {what}, {ours} in the state. Was the state made by init on params "
        "of these shapes and dtypes?"
    )


def _offsets(layout: BufferLayout) -> tuple:
    return tuple(jnp.int32(start) for start in layout.starts if start is not None)


def _unpack(buffers: dict, layout: BufferLayout, offsets: tuple) -> Any:
    buffers = jax.lax.optimization_barrier(buffers)
    starts = iter(offsets)
    leaves = []
    for key, start, shape in zip(layout.keys, layout.starts, layout.shapes):
        if start is None:
            leaves.append(buffers[key])
        else:
            part = jax.lax.dynamic_slice(buffers[key], (next(starts),), (math.prod(shape),))
            leaves.append(part.reshape(shape))
    return layout.treedef.unflatten(leaves)


class MultiTensor(Transform):
    """Runs an elementwise ``inner`` chain over per-dtype flat buffers."""

    integer_leaves = "refuse"  # checked here, where the paths are still known, not on buffers

    inner: Transform
    bucket_limit: int | None = static(None)

    def __post_init__(self):
        object.__setattr__(self, "inner", as_transform(self.inner))
        if self.bucket_limit is not None:
            check_range(self, "bucket_limit", low=1)
        culprit = _unsafe(self.inner)
        if isinstance(culprit, FromOptax):
            raise ValueError(
                "multi_tensor: an optax transform cannot run on flat buffers (gradtx cannot see "
                "whether it treats each leaf alone); keep it outside: "
                "chain(optax_transform, multi_tensor(...)), or build it from gradtx's transforms"
            )
        if culprit is not None:
            name = culprit.name if isinstance(culprit, Transform) else type(culprit).__name__
            raise ValueError(
                f"multi_tensor: {name} needs each leaf's own structure and cannot run on "
                f"flat buffers; keep it outside: chain({name}(...), multi_tensor(...))"
            )

    def init(self, params):
        layout = _buffer_layout(params, self.bucket_limit)
        inner_state = self.inner.init(pack(params, layout, "multi_tensor", "params"))
        return MultiTensorState(inner_state, layout, _offsets(layout))

    def update(self, updates, state, params=None, **extra_args):
        layout = state.layout
        _check_fits(updates, layout, "updates")
        flat_params = None
        if params is not None:
            check_same_structure(updates, params, "params")
            _check_fits(params, layout, "params", with_dtypes=True)
            flat_params = pack(params, layout, "multi_tensor", "params")
        flat, inner_state = self.inner.update(
            pack(updates, layout, "multi_tensor", "updates"),
            state.inner_state,
            flat_params,
            **extra_args,
        )
        updates = _unpack(flat, layout, state.offsets)
        return updates, MultiTensorState(inner_state, layout, state.offsets)


def multi_tensor(inner: Any, bucket_limit: int | None = None) -> MultiTensor:
    """The fast path: ``inner`` runs on a few flat buffers instead of leaf by leaf.

    Leaves smaller than ``bucket_limit`` elements are concatenated into one
    buffer per params dtype; larger leaves, and leaves sharded over several
    devices, are kept whole (no copy, and their state keeps their sharding). The
    default limit is 4096 elements on CPU and 2**19 on accelerators, where a
    kernel launch costs more copying. ``init`` decides that layout from the
    params it is given, and ``update`` refuses updates or params of other paths
    or shapes (and params of other dtypes), naming the first such leaf.
    Gradients may come in another dtype than their params (float32 gradients
    for bfloat16 params), one dtype per buffer. The inner state lives in that
    layout between steps, so the optimizer's maths is a handful of fused loops
    per step whatever the leaf count, and compile time grows more slowly than
    it (measured: leaves**0.75 for Adam, against optax's leaves**1.07). The
    updates come back as a tree, one slice per leaf. Numbers equal the per-leaf
    path (elementwise maths is the same per element; a global norm sums in
    another order). ``gradtx.tree_get`` reads the state as the per-leaf path
    keeps it (``MultiTensorState.per_leaf``): moments, ``ema_params`` averages
    and ``lookahead``'s slow weights come back as trees like the params.

    Only elementwise transforms can run on buffers: the Adam family, SGD and
    momentum, RMSprop, Adagrad, Adadelta, sign methods, clipping by value or
    global norm, weight decay, schedules. Transforms that need leaf boundaries
    (``clip_by_block_rms``, masks, ``partition``, per-leaf noise) are rejected
    when built; keep them outside::

        clipped_adamw = gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adamw(3e-4))
        tx = gradtx.multi_tensor(clipped_adamw)

    Args:
        inner: an elementwise transform or chain (a gradtx one); others are
            refused, naming the culprit.
        bucket_limit: leaves with fewer elements than this share a buffer,
            >= 1; None is 4096 on CPU, 2**19 on accelerators. Static. Default None.

    Reference: PyTorch's ``foreach`` optimizers and NVIDIA Apex's
    ``multi_tensor_apply`` group tensors the same way; optax has no such path.

    >>> import gradtx, jax.numpy as jnp
    >>> params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
    >>> tx = gradtx.multi_tensor(gradtx.adam(0.1))
    >>> state = tx.init(params)
    >>> {k: v.shape for k, v in state.inner_state[0].mu.items()}
    {'bucket_float32': (9,)}
    >>> {k: v.shape for k, v in state.per_leaf()[0].mu.items()}
    {'b': (3,), 'w': (2, 3)}
    >>> updates, _ = tx.update({"w": jnp.full((2, 3), 2.0), "b": -jnp.ones(3)}, state, params)
    >>> round(float(updates["w"][0, 0]), 4), round(float(updates["b"][0]), 4)  # Adam's -lr*sign
    (-0.1, 0.1)
    >>> state = gradtx.multi_tensor(gradtx.adam(0.1), bucket_limit=5).init(params)
    >>> {k: v.shape for k, v in state.inner_state[0].mu.items()}
    {"['w']": (2, 3), 'bucket_float32': (3,)}
    """
    return MultiTensor(inner=inner, bucket_limit=bucket_limit)
