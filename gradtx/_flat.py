"""Parameters that live flat: one 1-D buffer per dtype, the leaves slices of it.

A tree of 2000 leaves costs a kernel per leaf in every optimizer step (see
benchmarks/RESULTS.md, "What the goals that are not met come up against").
:class:`FlatParams` keeps the parameters in a few buffers between steps; the
model reads its weights as slices of them (:meth:`FlatParams.to_tree`), and
the optimizer, ``apply_updates`` and ``jax.tree.map`` see only the buffers.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._combine import _is_function

# -- buffer layouts, shared with multi_tensor -------------------------------------------


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class BufferLayout:
    """Where each leaf of a tree lives in a few flat buffers: static, part of the tree.

    Per leaf, in flattening order: its path, shape and dtype, the buffer it goes
    to (``keys``; its own path when kept whole) and where it starts there
    (``starts``; None when whole). ``treedef`` rebuilds the tree.
    """

    treedef: Any
    paths: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[np.dtype, ...]
    keys: tuple[str, ...]
    starts: tuple[int | None, ...]
    buffer_shapes: dict = dataclasses.field(init=False)  # buffer key -> its shape
    _hash: int = dataclasses.field(init=False)

    def __post_init__(self):
        sizes: dict[str, tuple] = {}
        for key, start, shape in zip(self.keys, self.starts, self.shapes):
            sizes[key] = shape if start is None else (start + math.prod(shape),)
        object.__setattr__(self, "buffer_shapes", sizes)
        # jit hashes static parts at every call: once here, not per leaf each time.
        object.__setattr__(self, "_hash", hash(self._fields()))

    def _fields(self) -> tuple:
        return (self.treedef, self.paths, self.shapes, self.dtypes, self.keys, self.starts)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, BufferLayout):
            return NotImplemented
        return self is other or (self._hash == other._hash and self._fields() == other._fields())

    def __repr__(self) -> str:
        return f"BufferLayout({len(self.paths)} leaves in {len(self.buffer_shapes)} buffers)"

    def difference_from(
        self, other: BufferLayout, names: tuple[str, str] = ("this layout", "the other")
    ) -> str | None:
        """The first leaf where ``other`` is laid out otherwise, as errors name it (``names``:
        what this layout and ``other`` belong to)."""

        def rows(layout):
            return [
                (
                    path or "<root>",
                    f"{np.dtype(dtype).name}{list(shape)} in buffer {key!r}"
                    + ("" if start is None else f" at {start}"),
                )
                for path, shape, dtype, key, start in zip(
                    layout.paths, layout.shapes, layout.dtypes, layout.keys, layout.starts
                )
            ]

        for (path, here), (other_path, there) in zip(rows(self), rows(other)):
            if (path, here) != (other_path, there):
                return f"leaf {path} is {here} in {names[0]}, {other_path} {there} in {names[1]}"
        if len(self.paths) != len(other.paths):
            return f"{len(self.paths)} leaves in {names[0]}, {len(other.paths)} in {names[1]}"
        return None

    def holds(self, x: Any) -> bool:
        """Whether ``x`` is a value in this layout: a dict of exactly these buffers."""
        return (
            isinstance(x, dict)
            and x.keys() == self.buffer_shapes.keys()
            and all(jnp.shape(x[k]) == shape for k, shape in self.buffer_shapes.items())
        )


def is_sharded(x: Any) -> bool:
    """Whether a concrete array is split over several devices (not merely replicated)."""
    sharding = getattr(x, "sharding", None)
    if sharding is None or len(getattr(sharding, "device_set", ())) <= 1:
        return False
    return not sharding.is_fully_replicated


def buffer_layout(params: Any, buffer_of: Any, layout_type: type = BufferLayout) -> Any:
    """The layout that puts each leaf where ``buffer_of(path, leaf, dtype)`` says.

    ``buffer_of`` returns a buffer key (the leaf is appended to that 1-D buffer)
    or None (the leaf stays whole, a buffer of its own named by its path).
    """
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    paths, shapes, dtypes, keys, starts, filled = [], [], [], [], [], {}
    for path, leaf in flat:
        name, shape = jax.tree_util.keystr(path), jnp.shape(leaf)
        dtype = np.dtype(jnp.result_type(leaf))
        key = buffer_of(name, leaf, dtype)
        if key is None:
            key, start = name, None
        else:
            start = filled.get(key, 0)
            filled[key] = start + math.prod(shape)
        paths.append(name)
        shapes.append(shape)
        dtypes.append(dtype)
        keys.append(key)
        starts.append(start)
    return layout_type(treedef, *map(tuple, (paths, shapes, dtypes, keys, starts)))


def pack(tree: Any, layout: BufferLayout, who: str, what: str) -> dict:
    """The leaves of ``tree`` in ``layout``'s buffers: a dict of buffer key -> array.

    ``who`` and ``what`` name the caller and the tree in the error raised when
    leaves bound for one buffer come in several dtypes.
    """
    leaves = layout.treedef.flatten_up_to(tree)
    parts: dict[str, list] = {}
    buffers = {}
    for leaf, key, start, path in zip(leaves, layout.keys, layout.starts, layout.paths):
        if start is None:
            buffers[key] = leaf
        else:
            # A weakly typed leaf takes the dtype it was laid out by (a weak float32 scalar is
            # float64 under x64, as on the per-leaf path): lossless, that is what weak means.
            piece = jnp.ravel(leaf)
            dtype = jnp.result_type(leaf)
            parts.setdefault(key, []).append(
                (path, piece.astype(dtype) if piece.dtype != dtype else piece)
            )
    for key, pieces in parts.items():
        first_path, first = pieces[0]
        for path, piece in pieces:
            if piece.dtype != first.dtype:  # concatenating would promote one of them silently
                raise ValueError(
                    f"{who}: the {what} for the params in {key} come in several dtypes "
                    f"({first.dtype} at {first_path}, {piece.dtype} at {path}); they share one "
                    "buffer: cast them to one dtype"
                )
        flat = [piece for _, piece in pieces]
        buffers[key] = jnp.concatenate(flat) if len(flat) > 1 else flat[0]
    # Barriers keep XLA from fusing the concatenation into the update and the update into
    # every slice: such fusions each carry all N operands, N^2 work to compile.
    return jax.lax.optimization_barrier(buffers)


# -- FlatParams ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class FlatLayout(BufferLayout):
    """Where each leaf lives in a :class:`FlatParams`: static, hashable, printable.

    Every leaf is in a 1-D buffer (``keys``: the dtype's name, with the group's
    label when grouped) at offset ``starts``; see :class:`BufferLayout`.
    """

    def __repr__(self) -> str:
        return f"FlatLayout({self.summary()})"

    def summary(self) -> str:
        """One line per buffer: its key, size and the leaves in it (the first few)."""
        lines = [f"{len(self.paths)} leaves in {len(self.buffer_shapes)} buffers"]
        for key, (size,) in self.buffer_shapes.items():
            leaves = [
                f"{path or '<root>'}{list(shape)}@{start}"
                for path, shape, k, start in zip(self.paths, self.shapes, self.keys, self.starts)
                if k == key
            ]
            more = f", ... ({len(leaves)} leaves)" if len(leaves) > 4 else ""
            lines.append(f"  {key}[{size}]: {', '.join(leaves[:4])}{more}")
        return "\n".join(lines)

    def leaf_structs(self) -> Any:
        """The params' tree with a ``jax.ShapeDtypeStruct`` per leaf (what masks are called on)."""
        structs = [jax.ShapeDtypeStruct(s, d) for s, d in zip(self.shapes, self.dtypes)]
        return self.treedef.unflatten(structs)


def _per_leaf(labels: Any, tree: Any) -> list:
    """One label per leaf of ``tree`` from a function of it or a tree of labels (a prefix)."""
    if _is_function(labels):
        labels = labels(tree)
    spread = jax.tree.map(lambda label, sub: jax.tree.map(lambda _: label, sub), labels, tree)
    return jax.tree.structure(tree).flatten_up_to(spread)


def _flat_layout(params: Any, groups: Any) -> FlatLayout:
    labels = [None] * len(jax.tree.leaves(params))
    if groups is not None:
        try:
            labels = _per_leaf(groups, params)
        except (ValueError, TypeError) as error:
            raise ValueError(
                "FlatParams.from_tree(groups): groups must be a prefix of the params' "
                f"structure, a label (a bool or a string) per leaf or subtree: {error}"
            ) from None
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        where = (
            f"FlatParams.from_tree(params): the leaf at {jax.tree_util.keystr(path) or '<root>'}"
        )
        if not isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
            raise TypeError(
                f"{where} is a {type(leaf).__name__}, not an array; FlatParams holds arrays "
                "only (wrap numbers in jnp.asarray, keep other values out of the params)"
            )
        if is_sharded(leaf):
            raise TypeError(
                f"{where} is sharded over {len(leaf.sharding.device_set)} devices; FlatParams "
                "packs unsharded (or fully replicated) leaves only for now"
            )
    label_of = iter(labels)

    def buffer_of(path: str, leaf: Any, dtype: np.dtype) -> str:
        label = next(label_of)
        return dtype.name if label is None else f"{dtype.name}[{label}]"

    return buffer_layout(params, buffer_of, FlatLayout)


class FlatParams:
    """Parameters held as one flat buffer per dtype, with a static layout of the leaves.

    ``FlatParams.from_tree(params)`` packs the leaves (one 1-D buffer per dtype,
    never promoted: float32, bfloat16, float64 and int32 leaves go to four
    buffers); ``fp.to_tree()`` gives them back as slices reshaped to their
    shapes, which inside ``jit`` XLA fuses into their consumers. A FlatParams is
    a pytree whose children are the buffers and whose static part is the
    layout, so::

        grads = jax.grad(lambda fp: loss(fp.to_tree(), batch))(fp)   # a FlatParams
        updates, state = tx.update(grads, state, fp)   # one kernel per buffer
        fp = gradtx.apply_updates(fp, updates)

    and an elementwise optimizer (SGD, the Adam family, RMSprop, clipping by
    global norm) gives the tree's numbers on it. Transforms that need leaf
    boundaries (``clip_by_block_rms``, LAMB's trust ratios, Adafactor, Muon)
    see each buffer as one vector and give other numbers; a mask given as a
    function (``gradtx.masks.weight_decay()``) sees the buffers, not the
    leaves: use :meth:`segment_mask`, with ``groups`` when the mask cuts a
    dtype's leaves in two.

    Integer and boolean leaves get their own buffers (round trips are exact);
    like integer leaves in a tree, ``jax.grad`` and the optimizers refuse them:
    keep them out of the params. ``None`` is an empty subtree, as in JAX, and
    comes back as ``None``. Leaves that are themselves sharded are refused; the
    buffers can be split instead, ``jax.device_put(fp, NamedSharding(mesh,
    P("data")))`` where the axis divides each buffer, and a jitted step keeps
    them (and the state made from them) split.

    The state holds values shaped like the params (Adam's moments,
    ``ema_params``' average, ``MultiSteps``' accumulated gradient) as
    FlatParams in the same layout: ``gradtx.tree_get(state,
    "average").to_tree()`` is what the per-leaf run holds; counters and flags
    (``apply_if_finite``'s, ``MultiSteps.has_updated``) are the same scalars;
    ``gradtx.tree_set`` packs a tree given for such a value.

    Checkpoints (:class:`gradtx.checkpoint.Checkpointer`) store the params and
    the state as the ordinary tree: a flat run and a per-leaf run resume each
    other's checkpoints. In Flax, a Linen ``TrainState`` holds the FlatParams
    (``apply_fn=lambda fp, x: model.apply(fp.to_tree(), x)``); an NNX model
    is split once (``graphdef, params, rest = nnx.split(model, nnx.Param,
    ...)``), the step merges ``fp.to_tree()`` back into it, and
    ``nnx.update(model, fp.to_tree())`` hands the trained weights back.

    Unlike ``jax.flatten_util.ravel_pytree``, nothing is promoted to one dtype
    and the leaf paths stay known; unlike PyTorch's FSDP flat parameters, the
    leaves are not views sharing storage outside ``jit``: eagerly, ``to_tree``
    copies.

    >>> import gradtx, jax.numpy as jnp
    >>> fp = gradtx.FlatParams.from_tree({"w": jnp.ones((2, 3)), "b": jnp.zeros(3)})
    >>> {key: buffer.shape for key, buffer in fp.buffers.items()}
    {'float32': (9,)}
    >>> fp.to_tree()["w"].shape
    (2, 3)
    """

    __slots__ = ("_buffers", "_layout")
    # Transforms that need leaf boundaries see the leaves (gradtx._base._needs_leaves).
    gradtx_flat = True

    def __init__(self, buffers: tuple, layout: FlatLayout):
        self._buffers = tuple(buffers)
        self._layout = layout

    @classmethod
    def from_tree(cls, params: Any, groups: Any = None) -> FlatParams:
        """Packs the leaves of ``params`` into one buffer per dtype (and group).

        ``groups``: None, or a tree like ``params`` (or a function of it) of
        labels (bools or strings); leaves with different labels go to
        different buffers, so that a mask with the same labels is uniform per
        buffer (:meth:`segment_mask`).
        """
        layout = _flat_layout(params, groups)
        arrays = jax.tree.map(jnp.asarray, params)
        buffers = pack(arrays, layout, "FlatParams.from_tree", "params") if layout.paths else {}
        return cls(tuple(buffers[key] for key in layout.buffer_shapes), layout)

    @classmethod
    def from_tree_like(cls, tree: Any, like: FlatParams) -> FlatParams:
        """Packs ``tree`` (a tree like ``like.to_tree()``) into ``like``'s layout.

        A buffer whose leaves all hold the same placeholder (not an array: a
        masked-out leaf) becomes that placeholder, as :meth:`to_tree` gives it;
        a buffer holding both is refused (its arrays would be lost).
        """
        layout = like.layout
        leaves = layout.treedef.flatten_up_to(tree)
        held = {key: leaf for leaf, key in zip(leaves, layout.keys) if not hasattr(leaf, "shape")}
        for key, placeholder in held.items():
            arrays = [
                path
                for leaf, at, path in zip(leaves, layout.keys, layout.paths)
                if at == key and hasattr(leaf, "shape")
            ]
            if arrays:
                raise ValueError(
                    f"FlatParams.from_tree_like: the tree holds {placeholder!r} and arrays (at "
                    f"{', '.join(arrays)}) for the params in {key}, which share one buffer: a "
                    "buffer is all arrays or one placeholder"
                )
        if held:  # packed as zeros (dead code, removed by XLA), then replaced
            leaves = [
                jnp.zeros(shape, dtype) if key in held else leaf
                for leaf, key, shape, dtype in zip(
                    leaves, layout.keys, layout.shapes, layout.dtypes
                )
            ]
            tree = layout.treedef.unflatten(leaves)
        buffers = pack(tree, layout, "FlatParams.from_tree_like", "tree")
        return cls(tuple(held.get(key, buffers[key]) for key in layout.buffer_shapes), layout)

    @property
    def layout(self) -> FlatLayout:
        """Where each leaf lives (static, hashable: part of jit's cache key)."""
        return self._layout

    @property
    def buffers(self) -> dict[str, Any]:
        """The buffers by key (the dtype's name, with the group's label when grouped)."""
        return dict(zip(self._layout.buffer_shapes, self._buffers))

    def __contains__(self, key: Any) -> bool:
        """Whether ``key`` names a buffer (Flax's TrainState asks the params this)."""
        return key in self._layout.buffer_shapes

    def to_tree(self) -> Any:
        """The params' tree: each leaf a static slice of its buffer, reshaped.

        Inside ``jit`` the slices are fused into the ops that read them; outside
        ``jit`` each is a copy. One ``lax.split`` per buffer, not a slice per
        leaf: the gradient of a split is one concatenation, where the gradient
        of N slices is a sum of N zero-padded buffers (N times the work, and
        XLA fuses that sum into one kernel of N operands; 58x slower measured
        at 200 leaves).
        """
        layout = self._layout
        pieces: dict[str, list] = {}  # buffer key -> its leaves' indices, in the layout's order
        for index, key in enumerate(layout.keys):
            pieces.setdefault(key, []).append(index)
        leaves = [None] * len(layout.paths)
        for key, buffer in self.buffers.items():
            indices = pieces[key]
            if not hasattr(buffer, "shape"):  # a placeholder (a masked-out buffer): per leaf
                for i in indices:
                    leaves[i] = buffer
                continue
            sizes = [math.prod(layout.shapes[i]) for i in indices]
            for i, part in zip(indices, jax.lax.split(buffer, sizes)):
                leaves[i] = part.reshape(layout.shapes[i])
        return layout.treedef.unflatten(leaves)

    def segment_mask(self, mask: Any) -> FlatParams:
        """A mask over the buffers (one bool each) from a mask over the leaves.

        ``mask`` is a tree of bools like the params (or a prefix), or a function of them
        (``gradtx.masks.weight_decay()``; it is called on the leaves' shapes and
        dtypes, ``jax.ShapeDtypeStruct``). Every leaf in a buffer must have
        the same value; otherwise a ValueError names two leaves that differ
        (build with ``FlatParams.from_tree(params, groups=mask)``). gradtx's
        ``masked``, ``partition`` and the optimizers' ``mask=`` do this
        themselves when the params are a FlatParams; the result can also be given
        wherever gradtx takes a mask: ``gradtx.adamw(lr, mask=fp.segment_mask(m))``.
        """
        return self.segment_labels(mask, bool, "segment_mask(mask)", "mask")

    def segment_labels(
        self, labels: Any, convert: Any = None, call: str = "segment_labels(labels)", what="labels"
    ) -> FlatParams:
        """One label per buffer from labels per leaf (a tree like the params, a prefix, or a
        function of the leaves' shapes and dtypes); see :meth:`segment_mask`."""
        values = _per_leaf(labels, self._layout.leaf_structs())
        per_buffer: dict[str, tuple[str, Any]] = {}
        for path, key, value in zip(self._layout.paths, self._layout.keys, values):
            value = convert(value) if convert is not None else value
            first = per_buffer.setdefault(key, (path, value))
            if first[1] != value:
                raise ValueError(
                    f"FlatParams.{call}: the {what} is {first[1]!r} at {first[0]} and "
                    f"{value!r} at {path}, both in buffer {key!r}; build the FlatParams with "
                    f"FlatParams.from_tree(params, groups={what}) so that they are in "
                    "different buffers"
                )
        return FlatParams(
            tuple(per_buffer[key][1] for key in self._layout.buffer_shapes), self._layout
        )

    def __repr__(self) -> str:
        return f"FlatParams({self._layout.summary()})"


def _is_flat(x: Any) -> bool:
    return isinstance(x, FlatParams)


def as_trees(tree: Any) -> Any:
    """``tree`` with every :class:`FlatParams` in it replaced by its ``to_tree()``.

    What a checkpoint stores, so that a run with flat parameters and a run with
    the ordinary tree read each other's checkpoints (``gradtx.checkpoint``).

    Args:
        tree: any pytree (params, an optimizer state, a dict of both); the
            leaves that are not FlatParams pass unchanged.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx._flat import as_trees
    >>> fp = gradtx.FlatParams.from_tree({"a": jnp.ones(2), "b": jnp.zeros(())})
    >>> as_trees({"p": fp, "step": 3})["p"]["a"].tolist()
    [1.0, 1.0]
    """
    return jax.tree.map(lambda x: x.to_tree() if _is_flat(x) else x, tree, is_leaf=_is_flat)


def like_flat(tree: Any, like: Any) -> Any:
    """The inverse of :func:`as_trees`: packs the subtrees where ``like`` holds a FlatParams.

    Args:
        tree: a pytree with ``like``'s structure, except that each FlatParams
            of ``like`` is a tree like its ``to_tree()`` here.
        like: the template, e.g. a state made over FlatParams (it may hold
            ``jax.ShapeDtypeStruct`` leaves, from ``jax.eval_shape``).

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx._flat import like_flat
    >>> fp = gradtx.FlatParams.from_tree({"a": jnp.ones(2), "b": jnp.zeros(())})
    >>> out = like_flat({"p": {"a": jnp.array([5.0, 6.0]), "b": jnp.array(7.0)}}, {"p": fp})
    >>> out["p"].to_tree()["a"].tolist(), float(out["p"].to_tree()["b"])
    ([5.0, 6.0], 7.0)
    """
    nodes = jax.tree.leaves(like, is_leaf=_is_flat)
    structure = jax.tree.structure(like, is_leaf=_is_flat)
    parts = structure.flatten_up_to(tree)
    return structure.unflatten(
        [
            FlatParams.from_tree_like(part, node) if _is_flat(node) else part
            for part, node in zip(parts, nodes)
        ]
    )


def _flatten_with_keys(fp: FlatParams):
    keys = [jax.tree_util.DictKey(key) for key in fp._layout.buffer_shapes]
    return list(zip(keys, fp._buffers)), fp._layout


def _unflatten(layout: FlatLayout, buffers: Any) -> FlatParams:
    # Children may be anything JAX puts there (tracers, None, masks' bools): no checks.
    return FlatParams(tuple(buffers), layout)


jax.tree_util.register_pytree_with_keys(
    FlatParams, _flatten_with_keys, _unflatten, lambda fp: (fp._buffers, fp._layout)
)
