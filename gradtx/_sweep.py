"""A transform stacked over a grid of hyperparameter values, every member trained by one vmap."""

from __future__ import annotations

from collections.abc import Callable, Sequence
import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._base import (
    _called,
    _format_value,
    _is_concrete,
    _leaf_equal,
    FrozenDict,
    static,
    Transform,
)
from ._state import tree_get_all_with_path, tree_set
from ._tree import _first_container_difference

_MODES = ("product", "zip")


class Sweep(Transform):
    """Members of one transform family, their differing leaves stacked on a leading axis.

    ``transforms`` is the members' common transform: a leaf whose value differs
    between members is an array with one row per member (``swept`` marks it),
    the others keep their one value. ``grid`` holds the values the sweep was
    asked for, keyword by keyword; its numbers are leaves too, so a jitted step
    that takes the sweep as an argument does not retrace for other values.
    """

    transforms: Transform
    grid: FrozenDict
    mode: str = static("product")
    swept: tuple[bool, ...] = static(())

    # -- the grid ----------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        """The grid's shape: one axis per keyword (product), or one axis of members (zip)."""
        lengths = tuple(len(values) for values in self.grid.values())
        return lengths if self.mode == "product" else lengths[:1]

    @property
    def size(self) -> int:
        """The number of members."""
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.size

    @property
    def members(self) -> list[dict[str, Any]]:
        """Each member's keyword values, in member order (the last keyword varies fastest)."""
        return _members(dict(self.grid), self.mode)

    def transform(self, index: int) -> Transform:
        """Member ``index`` as the plain transform it was built as (equal to it)."""
        if not -self.size <= index < self.size:
            raise IndexError(f"sweep.transform({index}): the sweep has {self.size} members")
        leaves, treedef = jax.tree.flatten(self.transforms)
        return treedef.unflatten(
            [_row(leaf, index) if swept else leaf for leaf, swept in zip(leaves, self.swept)]
        )

    def replicate(self, tree: Any) -> Any:
        """``tree`` (params) repeated along a new leading member axis, one copy per member."""
        return jax.tree.map(lambda x: jnp.stack([jnp.asarray(x)] * self.size), tree)

    # -- the transform -----------------------------------------------------------

    def _axes(self) -> Transform:
        """vmap's in_axes for ``transforms``: 0 on swept leaves, None on shared ones."""
        treedef = jax.tree.structure(self.transforms)
        return treedef.unflatten([0 if swept else None for swept in self.swept])

    def init(self, params):
        return jax.vmap(lambda tx, p: tx.init(p), in_axes=(self._axes(), 0))(
            self.transforms, params
        )

    def update(self, updates, state, params=None, **extra_args):
        # Functions (value_fn=...) are closed over: called on one member's params inside the
        # vmap, they see that member. Arrays (value=...) carry one row per member.
        functions = {k: v for k, v in extra_args.items() if callable(v)}
        arrays = {k: v for k, v in extra_args.items() if not callable(v)}

        def member_update(tx, g, s, p, extra):
            return tx.update(g, s, p, **extra, **functions)

        return jax.vmap(member_update, in_axes=(self._axes(), 0, 0, 0, 0))(
            self.transforms, updates, state, params, arrays
        )

    # -- printing ----------------------------------------------------------------

    def _pformat(self, indent: int) -> str:
        pad = " " * (indent + 4)
        lines = [self.transforms._pformat(indent + 4)]
        for name, values in self.grid.items():
            shown = ", ".join(_format_value(v, indent + 4) for v in values)
            lines.append(f"{name}=[{shown}]")
        if self.mode != "product":
            lines.append(f"mode={self.mode!r}")
        body = "".join(f"\n{pad}{line}," for line in lines)
        return f"sweep({body}\n{' ' * indent})"


def sweep(
    tx: Transform | Callable[..., Transform], /, *, mode: str = "product", **grid: Sequence[Any]
) -> Sweep:
    """A transform stacked over a grid of hyperparameter values, for training every member at once.

    Update rule, for member ``i`` with hyperparameters ``h_i`` (vmapped)::

        updates[i], state[i] <- tx(h_i).update(grads[i], state[i], params[i])

    Each member is built as a user would build it, so it is validated (a bad
    value raises the transform's own error, noted with the member) and its
    numeric hyperparameters are pytree leaves; the leaves that differ between
    members are stacked along a leading axis and ``init``/``update`` run
    ``jax.vmap`` over them and over the params, grads and state, whose leaves
    all have that member axis too. Under ``jax.jit`` the whole grid is one
    compiled program.

    Args:
      tx: a factory (``gradtx.adam``, ``functools.partial(gradtx.sgd, momentum=0.9)``),
        called with each member's keywords; or a built transform, whose fields of
        those names are replaced wherever they are in it (as ``tree_set`` does).
      mode: ``"product"`` (every combination of the keywords' values, the last
        keyword varying fastest) or ``"zip"`` (the i-th values of every keyword
        together; the lists must have one length). Static.
      **grid: keyword -> a non-empty list of values (numbers, or schedules of one class).

    Every member must have one tree structure: a keyword that changes a static
    field (``nesterov``, a dtype, None against a number) is refused, naming it.

    >>> import gradtx, jax.numpy as jnp
    >>> sw = gradtx.sweep(gradtx.sgd, learning_rate=[0.1, 1.0])
    >>> params = sw.replicate({"w": jnp.ones(2)})
    >>> updates, _ = sw.update({"w": jnp.ones((2, 2))}, sw.init(params), params)
    >>> updates["w"]
    Array([[-0.1, -0.1],
           [-1. , -1. ]], dtype=float32)

    Not in optax, torch or Keras, where a grid is one run per member.
    """
    if mode not in _MODES:
        raise ValueError(f"sweep(mode={mode!r}): mode must be one of {_MODES}")
    if not grid:
        raise ValueError("sweep: give at least one keyword and its list of values")
    grid = {name: _values(name, values) for name, values in grid.items()}
    if mode == "zip" and len({len(v) for v in grid.values()}) > 1:
        lengths = ", ".join(f"{name}: {len(v)}" for name, v in grid.items())
        raise ValueError(f"sweep(mode='zip'): the lists must have one length, got {lengths}")
    build = _builder(tx, grid)
    members = _members(grid, mode)
    built = []
    for index, values in enumerate(members):
        try:
            member = build(**values)
        except (ValueError, TypeError) as error:
            error.add_note(f"in sweep member {index}: {_call(values, _name(tx))}")
            raise
        if not isinstance(member, Transform):
            raise TypeError(
                f"sweep: {_call(values, _name(tx))} returned {type(member).__name__}, "
                "not a gradtx transform (only a gradtx transform's leaves can be stacked)"
            )
        built.append(member)
    transforms, swept = _stack(built, members, grid)
    return Sweep(transforms=transforms, grid=FrozenDict(grid), mode=mode, swept=swept)


def _values(name: str, values: Any) -> tuple:
    """A keyword's values as a tuple, concrete array scalars as Python numbers."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise TypeError(
            f"sweep({name}={values!r}): each keyword takes a list of values, e.g. "
            f"{name}=[{values!r}]"
        )
    if len(values) == 0:
        raise ValueError(f"sweep({name}=[]): give at least one value")
    return tuple(v.item() if _is_number(v) else v for v in values)


def _is_number(v: Any) -> bool:
    """A concrete array scalar of numbers (a PRNG key has no Python value: kept an array)."""
    return (
        isinstance(v, (np.ndarray, np.generic, jax.Array))
        and _is_concrete(v)
        and v.ndim == 0
        and not jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key)
    )


def _members(grid: dict[str, tuple], mode: str) -> list[dict[str, Any]]:
    names = list(grid)
    rows = itertools.product(*grid.values()) if mode == "product" else zip(*grid.values())
    return [dict(zip(names, row)) for row in rows]


def _name(tx: Any) -> str:
    """A factory's name, or a built transform's (a recipe's label: ``adam``)."""
    if isinstance(tx, Transform):
        return _called(tx)
    return getattr(tx, "__name__", None) or type(tx).__name__


def _call(values: dict[str, Any], head: str = "") -> str:
    return f"{head}({', '.join(f'{k}={v!r}' for k, v in values.items())})"


def _builder(tx: Any, grid: dict[str, tuple]) -> Callable[..., Any]:
    """How a member is built: the factory, or ``tree_set`` on the built transform."""
    if not isinstance(tx, Transform):
        if not callable(tx):
            raise TypeError(f"sweep: expected a transform or a factory of one, got {tx!r}")
        return tx
    for name, values in grid.items():
        found = tree_get_all_with_path(tx, name)
        if not found:
            raise ValueError(
                f"sweep({name}={list(values)!r}): {_name(tx)} has no hyperparameter named "
                f"{name!r}; pass the factory (a function of {name}=) instead"
            )
        if len(found) > 1:
            paths = ", ".join("/".join(map(str, path)) for path, _ in found)
            raise ValueError(
                f"sweep({name}={list(values)!r}): {name!r} is found at several places in "
                f"{_name(tx)} ({paths}); pass a factory that sets the one to sweep"
            )
    return lambda **values: tree_set(tx, **values)


def _stack(built: list[Transform], members: list[dict], grid: dict) -> tuple[Transform, tuple]:
    """The members' common transform, leaves that differ stacked; which leaves those are."""
    first_leaves, treedef = jax.tree.flatten(built[0])
    columns = [[leaf] for leaf in first_leaves]
    for index, member in enumerate(built[1:], start=1):
        leaves, other = jax.tree.flatten(member)
        if other != treedef:
            raise ValueError(_mismatch(built[0], member, members[0], members[index], grid))
        for column, leaf in zip(columns, leaves):
            column.append(leaf)
    stacked, swept = [], []
    for column in columns:
        if all(_leaf_equal(column[0], leaf) for leaf in column[1:]):
            stacked.append(column[0])
            swept.append(False)
            continue
        shapes = {np.shape(leaf) for leaf in column}
        if len(shapes) > 1:
            raise ValueError(
                f"sweep({_differing(members, grid)}): a hyperparameter takes arrays of "
                f"shapes {sorted(shapes)} in different members; a sweep stacks one shape"
            )
        concrete = all(_is_concrete(leaf) and not isinstance(leaf, jax.Array) for leaf in column)
        # NumPy keeps Python's float64 values, so that transform(i) gives the member back exactly.
        stacked.append(np.stack([np.asarray(x) for x in column]) if concrete else jnp.stack(column))
        swept.append(True)
    return treedef.unflatten(stacked), tuple(swept)


def _differing(members: list[dict], grid: dict) -> str:
    """The keywords whose values differ between members, with their lists."""
    names = [n for n in grid if len(set(map(repr, (m[n] for m in members)))) > 1] or list(grid)
    return ", ".join(f"{name}={list(grid[name])!r}" for name in names)


def _mismatch(first: Transform, other: Transform, values_a: dict, values_b: dict, grid) -> str:
    names = [n for n in grid if repr(values_a[n]) != repr(values_b[n])] or list(grid)
    keywords = ", ".join(f"{name}={list(grid[name])!r}" for name in names)
    found = _first_container_difference(first, other)
    where = jax.tree_util.keystr(found[0]) if found and found[0] else "the top"
    return (
        f"sweep({keywords}): the members {_call(values_a)} and {_call(values_b)} differ in "
        f"structure at {where} (a static field: a flag, a mode, a dtype, None against a "
        "number), not only in numbers. A sweep stacks numeric hyperparameters; run one sweep "
        f"per structure.\n  {first!r}\n  {other!r}"
    )


def _row(leaf: Any, index: int) -> Any:
    row = leaf[index]
    if isinstance(row, (np.ndarray, np.generic)) and np.ndim(row) == 0:
        return row.item()  # a Python number, as the member was built with
    return row
