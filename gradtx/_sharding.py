"""Sharded optimizer state (ZeRO stages 1 and 2) with JAX's shardings: no home-made collectives."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec


@dataclasses.dataclass(frozen=True)
class LeafLayout:
    """One state leaf: its path (``jax.tree_util.keystr``), shape, dtype, spec and why."""

    path: str
    shape: tuple[int, ...]
    dtype: Any
    spec: PartitionSpec
    reason: str


@dataclasses.dataclass(frozen=True, eq=False)
class StateSharding:
    """Where ``tx.init(params)``'s state lives on ``mesh``: made by :func:`shard_state`.

    ``state`` is a tree of ``NamedSharding`` like the state (for ``jit``'s
    ``in_shardings``/``out_shardings``), ``params`` the params' (replicated),
    ``updates`` the gradients' and updates' (each split like a state leaf of
    its shape would be). ``leaves`` holds one :class:`LeafLayout` per state
    leaf; ``layout`` maps paths to specs and :meth:`report` prints them with
    the reasons.
    """

    tx: Any
    mesh: Mesh
    axis: str
    state: Any
    params: Any
    updates: Any
    leaves: tuple[LeafLayout, ...]

    @property
    def layout(self) -> dict[str, PartitionSpec]:
        """State leaf path -> its ``PartitionSpec``."""
        return {leaf.path: leaf.spec for leaf in self.leaves}

    def report(self) -> str:
        """One line per state leaf: path, shape, dtype, spec and why it is (not) split."""
        rows = [
            (leaf.path, f"{leaf.dtype}{list(leaf.shape)}", str(leaf.spec), leaf.reason)
            for leaf in self.leaves
        ]
        widths = [max((len(row[i]) for row in rows), default=0) for i in range(3)]
        size = self.mesh.shape[self.axis]
        lines = [f"state of {type(self.tx).__name__}, mesh axis {self.axis!r} of size {size}:"]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[3]]
            lines.append("  " + "  ".join(cells))
        return "\n".join(lines)

    def init(self, params: Any) -> Any:
        """``tx.init(params)`` computed and placed with ``self.state``, each device its part."""
        return jax.jit(self.tx.init, out_shardings=self.state)(params)

    def shard_updates(self, updates: Any) -> Any:
        """``updates`` constrained to ``self.updates`` in ``jit``: the gradients' reduce-scatter.

        Without it XLA may all-reduce the gradients and slice them (ZeRO stage 1);
        with it, each device receives only its part of the sum (stage 2). On a
        mesh whose ``axis`` is ``Explicit`` (``jax.make_mesh``'s default) the
        updates are resharded (``jax.sharding.reshard``), which such axes need.
        """
        if self.mesh.axis_types[self.mesh.axis_names.index(self.axis)] == AxisType.Explicit:
            return jax.sharding.reshard(updates, self.updates)
        return jax.lax.with_sharding_constraint(updates, self.updates)


def _split(shape: tuple[int, ...], dtype: Any, axis: str, size: int) -> tuple[PartitionSpec, str]:
    """The spec of one leaf: split along its first dimension that ``size`` divides, if any."""
    if not jnp.issubdtype(dtype, jnp.inexact):
        return PartitionSpec(), "replicated: not floating point (count, flag, key)"
    if not shape:
        return PartitionSpec(), "replicated: scalar"
    for dim, n in enumerate(shape):
        if n % size == 0:
            return PartitionSpec(*[None] * dim, axis), f"split along dimension {dim}"
    return PartitionSpec(), f"replicated: no dimension divisible by {axis} size {size}"


def _layout(tree: Any, mesh: Mesh, axis: str) -> tuple[Any, tuple[LeafLayout, ...]]:
    size = mesh.shape[axis]
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    leaves, shardings = [], []
    for path, leaf in flat:
        shape, dtype = tuple(jnp.shape(leaf)), jnp.result_type(leaf)
        spec, reason = _split(shape, dtype, axis, size)
        leaves.append(LeafLayout(jax.tree_util.keystr(path), shape, dtype, spec, reason))
        shardings.append(NamedSharding(mesh, spec))
    return treedef.unflatten(shardings), tuple(leaves)


def shard_state(tx: Any, params: Any, mesh: Mesh, axis: str = "data") -> StateSharding:
    """Shardings that split ``tx``'s state over the data-parallel ``axis`` of ``mesh`` (ZeRO).

    With the params replicated over ``mesh`` (each device holds them whole, as
    in plain data parallelism), every floating-point state leaf of rank >= 1
    (moments, accumulated gradients, flat ``multi_tensor`` buffers, factored
    statistics, preconditioners) is split over ``axis`` along its first
    dimension that the axis size divides: per-device optimizer memory is
    divided by the axis size. Counts, flags, PRNG keys, scalars and leaves that
    no dimension of which the size divides stay replicated, each named with its
    reason in :meth:`StateSharding.report`. The state's shape comes from
    ``jax.eval_shape(tx.init, params)``: nothing is computed. In the jitted
    step below each device updates only its part of the state from the summed
    gradients (ZeRO stage 2 with ``shard_updates``) and XLA all-gathers the
    updated params; transforms that need whole leaves (trust
    ratios, block norms, Newton-Schulz, factored or Kronecker statistics) see
    whole leaves, XLA gathering what they need, with the unsharded numbers::

        sharding = gradtx.shard_state(tx, params, mesh, axis="data")
        state = sharding.init(params)
        batch_sharding = NamedSharding(mesh, PartitionSpec("data"))

        @functools.partial(
            jax.jit,
            in_shardings=(sharding.params, sharding.state, batch_sharding),
            out_shardings=(sharding.params, sharding.state),
            donate_argnums=(0, 1),
        )
        def step(params, state, batch):
            grads = sharding.shard_updates(jax.grad(loss)(params, batch))
            updates, state = tx.update(grads, state, params)
            return gradtx.apply_updates(params, updates), state

    ``multi_tensor`` decides its buffers from the params it sees: replicated
    params' leaves under ``bucket_limit`` elements share one flat buffer per
    dtype, split like any leaf when the axis size divides its length, else
    replicated (and reported); its larger leaves stay whole and are split.
    Params split over ``axis`` already need none of this: the state follows
    their sharding. Raises a ValueError when ``mesh`` has no ``axis``.

    Use a mesh whose ``axis`` is ``AxisType.Auto``
    (``jax.make_mesh(..., axis_types=(AxisType.Auto,))``): XLA then places
    every intermediate. On ``Explicit`` axes (``jax.make_mesh``'s default)
    per-leaf optimizers run too, but JAX refuses, with a ``ShardingTypeError``,
    an operation that mixes split and replicated operands, as
    ``multi_tensor``'s concatenation of the small leaves does.

    On XLA:CPU (jax 0.10) the compiled step all-reduces the gradients and each
    device keeps its slice; the reduce-scatter is the backend's rewrite of that
    pair, not checked here. Stage 3 (sharded params) is not provided.

    Args:
        tx: the optimizer (a gradtx or an optax transform).
        params: the params, arrays or ``jax.ShapeDtypeStruct`` leaves: their
            values are never read.
        mesh: a ``jax.sharding.Mesh`` that has ``axis``.
        axis: the name of the data-parallel mesh axis. Default ``"data"``.

    Reference: Rajbhandari, Rasley, Ruwase, He, *ZeRO: Memory Optimizations
    Toward Training Trillion Parameter Models*, arXiv:1910.02054.

    >>> import gradtx, jax, jax.numpy as jnp
    >>> mesh = jax.make_mesh((1,), ("data",))
    >>> sharding = gradtx.shard_state(gradtx.adam(0.1), {"w": jnp.ones((4, 2))}, mesh)
    >>> sharding.layout["[0].mu['w']"], sharding.layout["[0].count"]
    (P('data',), P())
    """
    if axis not in mesh.axis_names:
        raise ValueError(
            f"shard_state(axis={axis!r}): the mesh has no axis {axis!r}; "
            f"its axes are {tuple(mesh.axis_names)}"
        )
    state_shape = jax.eval_shape(tx.init, params)
    state, leaves = _layout(state_shape, mesh, axis)
    updates, _ = _layout(params, mesh, axis)
    replicated = jax.tree.map(lambda _: NamedSharding(mesh, PartitionSpec()), params)
    return StateSharding(tx, mesh, axis, state, replicated, updates, leaves)
