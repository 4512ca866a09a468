"""Tree maths: the vocabulary transforms are written in.

Arithmetic runs in the *compute dtype* of a leaf, at least float32 (float64
for float64 leaves), and results are cast back to the storage dtype. So a
bfloat16 moment is updated with b2=0.999 (not 1.0, as bfloat16 would round
it), and eps=1e-8 does not underflow in float16.
"""

from __future__ import annotations

from collections.abc import Callable
import functools
from typing import Any

import jax
import jax.numpy as jnp


def compute_dtype(x: Any) -> jnp.dtype:
    """The dtype a leaf's arithmetic runs in: float32 at least."""
    return jnp.promote_types(jnp.result_type(x), jnp.float32)


def default_float() -> jnp.dtype:
    """float64 under ``jax_enable_x64``, float32 otherwise."""
    return jnp.result_type(float)


def hp(value: Any, like: Any) -> jax.Array:
    """A hyperparameter (number, array or tracer) in ``like``'s compute dtype."""
    return jnp.asarray(value, dtype=compute_dtype(like))


def up(x: Any) -> jax.Array:
    """A leaf promoted to its compute dtype."""
    return jnp.asarray(x, dtype=compute_dtype(x))


def safe_increment(count: jax.Array) -> jax.Array:
    """count + 1, saturating at the dtype's maximum instead of wrapping around."""
    count = jnp.asarray(count)
    top = jnp.iinfo(count.dtype).max
    return jnp.where(count < top, count + 1, top).astype(count.dtype)


def zero_count() -> jax.Array:
    """The initial step counter: int32 0."""
    return jnp.zeros([], jnp.int32)


def decay_power(decay: Any, count: Any) -> jax.Array:
    """decay ** count, computed in float32 or float64 whatever the leaves are."""
    return jnp.asarray(decay, default_float()) ** jnp.asarray(count, default_float())


def tree_map_unzip(fn: Callable[..., tuple], tree: Any, *rest: Any) -> tuple[Any, ...]:
    """Maps ``fn`` (which returns a tuple) over leaves; returns a tuple of trees.

    This is how a transform written for one array is lifted to pytrees. The
    other trees (states, params) must match ``tree`` leaf for leaf, shapes too.
    """
    leaves, treedef = jax.tree.flatten(tree)
    for other in rest:
        check_same_structure(tree, other)
    others = [treedef.flatten_up_to(r) for r in rest]
    for other in others:  # flatten_up_to accepts a None subtree where the updates have a leaf
        hole = next((i for i, x in enumerate(other) if x is None), None)
        if hole is not None:
            raise ValueError(
                f"the updates have an array at {_paths(tree)[hole]} where the params or the "
                "optimizer state have None: give that leaf a None update too, or leave it "
                "out of the optimizer (masked, partition with set_to_zero)"
            )
    check_float_leaves(tree)
    for other in others:
        if any(jnp.shape(a) != jnp.shape(b) for a, b in zip(leaves, other)):
            check_same_shapes(tree, treedef.unflatten(other))
    columns = [map(jnp.asarray, column) for column in (leaves, *others)]  # Python numbers too
    outputs = [fn(*args) for args in zip(*columns)]
    if not outputs:  # an empty tree: as many empty trees as fn returns values
        outputs = [fn(*(jnp.zeros(()) for _ in (tree, *rest)))]
        return tuple(treedef.unflatten([]) for _ in outputs[0])
    return tuple(treedef.unflatten(list(column)) for column in zip(*outputs))


def _paths(tree: Any) -> list[str]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [jax.tree_util.keystr(path) or "<root>" for path, _ in flat]


def _first_container_difference(a: Any, b: Any, path: tuple = ()) -> tuple | None:
    """The first node where two trees with the same leaf paths differ in container type or
    static fields: its path and the two nodes."""
    if type(a) is not type(b):
        return path, a, b
    children_a, node_a = jax.tree_util.tree_flatten_with_path(a, is_leaf=lambda x: x is not a)
    children_b, node_b = jax.tree_util.tree_flatten_with_path(b, is_leaf=lambda x: x is not b)
    if node_a != node_b:  # one type, other static fields (a dataclass's aux data)
        return path, a, b
    for (key, x), (_, y) in zip(children_a, children_b):
        if x is a or y is b:  # a leaf flattens to itself
            return None
        found = _first_container_difference(x, y, (*path, *key))
        if found:
            return found
    return None


def check_same_structure(updates: Any, reference: Any, what: str = "optimizer state") -> None:
    """Raises a ValueError naming the first differing path when two trees differ in structure.

    ``reference`` may have more structure below ``updates``' leaves (it is
    compared up to them, as jax.tree.map does). Trees whose leaves line up but
    whose containers differ (a flax ``FrozenDict`` and a ``dict``, a list and a
    tuple) are refused too, naming the container: jax cannot map over both.
    """
    treedef = jax.tree.structure(updates)
    try:
        treedef.flatten_up_to(reference)
        return
    except (ValueError, TypeError):
        pass
    ours, theirs = _paths(updates), _paths(reference)
    first = next((a for a, b in zip(ours, theirs) if a != b), None)
    if first is None and len(ours) == len(theirs):
        path, a, b = _first_container_difference(updates, reference) or ((), updates, reference)
        mine, other = type(a), type(b)
        where = jax.tree_util.keystr(path) or "<root>"
        if mine is other:
            # A node that can say where (a FlatParams' layout: the first leaf) says it.
            explain = getattr(getattr(a, "layout", None), "difference_from", None)
            detail = (
                explain(b.layout, ("the updates", f"the {what}")) if callable(explain) else None
            )
            raise ValueError(
                f"the updates do not match the {what} at {where}: the same leaves, both in a "
                f"{mine.__module__}.{mine.__qualname__}, but with other static (non-array) "
                + (
                    f"fields: {detail}."
                    if detail
                    else "fields: build both from the same configuration."
                )
            )
        raise ValueError(
            f"the updates do not match the {what} at {where}: the same leaves, but held in a "
            f"{mine.__module__}.{mine.__qualname__} in the updates and a "
            f"{other.__module__}.{other.__qualname__} in the {what}. Convert one to the "
            "other's container (for flax, flax.core.unfreeze or freeze) before the call."
        )
    if first is None:
        first = ours[len(theirs)] if len(ours) > len(theirs) else theirs[len(ours)]
    raise ValueError(
        f"the updates do not match the {what} at {first}: updates have leaves "
        f"{ours[:8]}{'...' if len(ours) > 8 else ''}, the {what} has "
        f"{theirs[:8]}{'...' if len(theirs) > 8 else ''}.\n"
        f"updates: {treedef}\n{what}: {jax.tree.structure(reference)}\n"
        "Was the state made by init on params of this structure?"
    )


def check_real_leaves(tree: Any, name: str, why: str) -> None:
    """Raises a TypeError naming the first complex leaf: ``name`` ``why`` (its reason)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if jnp.issubdtype(jnp.result_type(leaf), jnp.complexfloating):
            raise TypeError(
                f"{name}: the leaf at {jax.tree_util.keystr(path) or '<root>'} is complex; "
                f"{name} {why} and takes real leaves only "
                "(split complex params into real and imaginary parts)"
            )


def check_same_shapes(updates: Any, reference: Any, what: str = "optimizer state") -> None:
    """Raises a ValueError naming the first leaf whose shape differs (never broadcast).

    The trees must have the same structure (``check_same_structure`` first).
    """
    flat, treedef = jax.tree_util.tree_flatten_with_path(updates)
    for (path, leaf), other in zip(flat, treedef.flatten_up_to(reference)):
        if other is not None and jnp.shape(leaf) != jnp.shape(other):
            raise ValueError(
                f"the updates do not match the {what} at "
                f"{jax.tree_util.keystr(path) or '<root>'}: shape {jnp.shape(leaf)} in the "
                f"updates, {jnp.shape(other)} in the {what}. Gradients must have their "
                "parameter's shape; was the state made by init on these params?"
            )


def check_float_leaves(tree: Any, what: str = "updates") -> None:
    """Rejects integer and boolean leaves, naming their path: never cast them silently."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    for path, leaf in flat:
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.inexact):
            raise TypeError(
                f"gradtx: the {what} leaf at {jax.tree_util.keystr(path) or '<root>'} has dtype "
                f"{dtype}; optimizers take floating-point (or complex) leaves. Keep integer "
                "and boolean arrays out of the optimized params, or exclude them with "
                "gradtx.masked / gradtx.partition and set_to_zero."
            )


def tree_full_like(tree: Any, value: Any, dtype: Any = None) -> Any:
    """``value`` everywhere, shaped like ``tree``, computed at full precision then cast.

    A concrete array's sharding is kept, so optimizer state follows the params'
    sharding; abstract ShapeDtypeStruct leaves work too (for ``jax.eval_shape``).
    """

    def full(x):
        storage = dtype or jnp.result_type(x)
        fill = hp(value, jnp.zeros((), storage))
        if isinstance(x, jax.Array):
            return jnp.full_like(x, fill, dtype=storage)
        return jnp.full(jnp.shape(x), fill, storage)

    return jax.tree.map(full, tree)


def tree_zeros_like(tree: Any, dtype: Any = None) -> Any:
    """Zeros shaped (and sharded) like ``tree``."""
    return tree_full_like(tree, 0, dtype)


def tree_squares_like(tree: Any, value: Any = 0.0, dtype: Any = None) -> Any:
    """Storage for a running average (or sum) of squares, shaped like ``tree``.

    With no ``dtype``, float16 leaves get float32 storage: (1 - b2) * g**2 is
    subnormal in float16 for |g| < 0.25 and 0 for |g| < 5e-3, which would turn
    Adam's step into m / eps. bfloat16 has float32's range and keeps its dtype.
    """

    return jax.tree.map(lambda x: tree_full_like(x, value, dtype or squares_dtype(x)), tree)


def squares_dtype(x: Any) -> Any:
    """The dtype squares of ``x`` are stored in: float32 for float16 (see
    ``tree_squares_like``), else None (``x``'s own)."""
    return jnp.float32 if jnp.result_type(x) == jnp.float16 else None


def tree_cast(tree: Any, dtype: Any) -> Any:
    """Every leaf cast to ``dtype`` (None keeps each leaf's dtype)."""
    if dtype is None:
        return tree
    return jax.tree.map(lambda x: x.astype(dtype), tree)


def tree_cast_like(tree: Any, like: Any) -> Any:
    """Each leaf cast to the dtype of the matching leaf of ``like``."""
    return jax.tree.map(lambda x, y: jnp.asarray(x).astype(jnp.result_type(y)), tree, like)


def tree_scale(scalar: Any, tree: Any) -> Any:
    """``scalar * tree`` at full precision, in each leaf's dtype."""
    return jax.tree.map(lambda x: (hp(scalar, x) * up(x)).astype(jnp.result_type(x)), tree)


def tree_widen(tree: Any) -> Any:
    """Leaves in at least the scalars' dtype, so that float32 leaves under x64 are summed in
    float64 (a float32 sum's order differed between jit and eager by an ulp)."""

    def wide(x):
        return up(x).astype(jnp.promote_types(up(x).dtype, default_float()))

    return jax.tree.map(wide, tree)


def tree_vdot(a: Any, b: Any) -> jax.Array:
    """Real inner product of two trees, accumulated in at least float32."""
    parts = [
        jnp.sum(jnp.real(jnp.conj(up(x)) * up(y)))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    ]
    return sum(parts, jnp.zeros((), default_float()))


def tree_global_norm(tree: Any) -> jax.Array:
    """The L2 norm of all leaves together, accumulated in at least float32."""
    squares = [jnp.sum(jnp.abs(up(x)) ** 2) for x in jax.tree.leaves(tree)]
    return jnp.sqrt(sum(squares, jnp.zeros((), default_float())))


def tree_divide_by_norm(tree: Any, measured: Any) -> Any:
    """``tree / ||measured||_2`` leaf by leaf in the compute dtype; ``tree`` where measured is 0.

    The norm is taken of measured divided by a power of two near its largest magnitude and
    multiplied back: exact in binary, so the plain norm's bits where that is right, and not
    0 (or inf) where its squares underflow (or overflow): float32 entries all below 1e-19
    still give a unit vector. A NaN anywhere makes every entry NaN, as optax's division.
    """
    magnitudes = (jnp.max(jnp.abs(up(x)), initial=0) for x in jax.tree.leaves(measured))
    largest = functools.reduce(jnp.maximum, magnitudes, jnp.zeros((), default_float()))
    unit = jnp.ldexp(jnp.full_like(largest, 0.5), jnp.frexp(largest)[1])  # (largest/2, largest]
    # Divided in the unit's dtype (exact) and cast back: a float32 leaf beside float64 ones.
    norm = tree_global_norm(jax.tree.map(lambda x: (up(x) / unit).astype(up(x).dtype), measured))
    norm = jnp.where(norm == 0, 1, unit * norm)  # measured all 0 (a 0 tree, for the callers)
    return jax.tree.map(lambda x: (up(x) / norm.astype(up(x).dtype)).astype(x.dtype), tree)


def ema(g: jax.Array, moment: jax.Array, decay: Any, order: int = 1) -> jax.Array:
    """One step of an exponential moving average of ``g ** order``, in moment's dtype.

    ``(1 - decay) * g**order + decay * moment``, with |g|**2 for complex g.
    """
    g = up(g)
    if order == 2 and jnp.iscomplexobj(g):
        power = jnp.real(g * jnp.conj(g))
    else:
        power = g**order
    # 1 - decay is formed before the cast, as optax does with a Python float.
    return (hp(1 - decay, power) * power + hp(decay, power) * up(moment)).astype(moment.dtype)


def debias(moment: jax.Array, correction: jax.Array) -> jax.Array:
    """``moment / correction`` at full precision, where correction = 1 - decay**t."""
    m = up(moment)
    return m / correction.astype(m.dtype)


def bias_correction(decay: Any, count: Any) -> jax.Array:
    """``1 - decay**count`` in float32 or float64."""
    return 1 - decay_power(decay, count)


def prng_key(key: Any) -> jax.Array:
    """A fresh typed PRNG key from what a transform's ``key=`` accepts: an int seed, None
    (key 0, as optax), a typed key or a raw uint32 key (``jax.random.PRNGKey``).

    Raw keys are copied: the state's buffer may be donated.
    """
    if key is None:
        key = 0
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    if jnp.ndim(key) == 0:
        return jax.random.key(key)
    return jax.random.wrap_key_data(jnp.array(key, dtype=jnp.uint32, copy=True))
