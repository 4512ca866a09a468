"""Reading and writing optimizer state and hyperparameters by name; applying updates."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from ._base import Struct
from ._flat import FlatParams
from ._tree import check_float_leaves, check_same_shapes, check_same_structure


def apply_updates(params: Any, updates: Any) -> Any:
    """``params + updates``, each result in its parameter's dtype, as ``optax.apply_updates``.

    The sum is computed at the wider of the two dtypes, then cast back, so a
    bfloat16 parameter receives a float32 update without a silent upcast.
    ``None`` leaves of ``params`` stay ``None``.

    Args:
        params: the parameters, a tree of arrays.
        updates: a tree of the same structure and shapes, with float leaves;
            a mismatch raises, showing the path and both structures.

    >>> import gradtx, jax.numpy as jnp
    >>> p = gradtx.apply_updates({"w": jnp.ones(2, jnp.bfloat16)}, {"w": jnp.full(2, 0.5)})
    >>> p["w"].dtype, p["w"].tolist()
    (dtype(bfloat16), [1.5, 1.5])
    """
    check_same_structure(updates, params, "params")
    check_same_shapes(updates, params, "params")
    check_float_leaves(updates)
    return jax.tree.map(
        lambda p, u: None if p is None else (jnp.asarray(p) + u).astype(jnp.result_type(p)),
        params,
        updates,
        is_leaf=lambda x: x is None,
    )


def _children(node: Any) -> list[tuple[str | int, Any]]:
    """Named children of the containers state and transforms are made of."""
    if hasattr(node, "_named_children"):  # a state shown per leaf (MultiTensorState)
        return node._named_children()
    if isinstance(node, Struct):
        return [(f.name, getattr(node, f.name)) for f in dataclasses.fields(node)]
    if isinstance(node, tuple) and hasattr(node, "_fields"):
        return list(zip(node._fields, node))
    if isinstance(node, (tuple, list)):
        return list(enumerate(node))
    if isinstance(node, dict):
        return list(node.items())
    return []


def tree_get_all_with_path(tree: Any, key: str) -> list[tuple[tuple, Any]]:
    """Every ``(path, value)`` whose field, attribute or dict key is ``key``.

    Looks through named tuples (optimizer states), gradtx objects
    (transforms, schedules), tuples, lists and dicts. The search does not
    descend below a match. A path lists the field names and tuple indices
    from the root.

    Args:
        tree: an optimizer state, a transform, or any nest of those containers.
        key: the field, attribute or dict key to look for.

    >>> import gradtx
    >>> tx = gradtx.adam(0.1)
    >>> [path for path, _ in gradtx.tree_get_all_with_path(tx.init({"w": 0.0}), "count")]
    [(0, 'count'), (1, 'count')]
    """
    found: list[tuple[tuple, Any]] = []

    def visit(node: Any, path: tuple) -> None:
        for name, child in _children(node):
            if name == key:
                found.append(((*path, name), child))
            else:
                visit(child, (*path, name))

    visit(tree, ())
    return found


def tree_get(tree: Any, key: str, default: Any = None) -> Any:
    """The one value named ``key`` in ``tree``, like ``optax.tree_utils.tree_get``.

    Works on optimizer states and on transforms alike::

        gradtx.tree_get(state, "learning_rate")   # the rate applied at the last step
        gradtx.tree_get(state, "mu")              # Adam's first moment
        gradtx.tree_get(tx, "b2")                 # a hyperparameter

    Returns ``default`` when absent; raises KeyError when ``key`` is ambiguous.
    In a state made over a :class:`gradtx.FlatParams`, a value shaped like the
    params (``mu``, ``ema_params``' ``average``, ``MultiSteps``' ``acc_grads``)
    is a FlatParams in the params' layout: its ``to_tree()`` is what the
    per-leaf run holds there. Counters and flags are the same scalars.

    Args:
        tree: an optimizer state, a transform, or any nest of tuples, lists,
            dicts and gradtx objects.
        key: the field, attribute or dict key to read.
        default: returned when ``key`` is absent. Default None.

    >>> import gradtx
    >>> tx = gradtx.adam(0.1)
    >>> gradtx.tree_get(tx, "b2"), gradtx.tree_get(tx, "nothing", -1)
    (0.999, -1)
    """
    found = tree_get_all_with_path(tree, key)
    if not found:
        return default
    if len(found) > 1:
        paths = ", ".join("/".join(map(str, path)) for path, _ in found)
        raise KeyError(f"tree_get: {key!r} is found at several places: {paths}")
    return found[0][1]


def tree_set(tree: Any, **values: Any) -> Any:
    """A copy of ``tree`` with every field named in ``values`` replaced.

    On a transform this changes hyperparameters (validated, as when built)::

        tx = gradtx.tree_set(gradtx.adam(1e-3), learning_rate=3e-4, b2=0.99)

    Keys that do not occur anywhere raise KeyError. A tree given for a value
    that is a :class:`gradtx.FlatParams` is packed into its layout. Like
    ``optax.tree_utils.tree_set``.

    Args:
        tree: an optimizer state, a transform, or any nest of tuples, lists,
            dicts and gradtx objects; it is not changed.
        **values: the new value of each field named, wherever it occurs.

    >>> import gradtx
    >>> tx = gradtx.tree_set(gradtx.adam(1e-3), learning_rate=3e-4, b2=0.99)
    >>> gradtx.tree_get(tx, "learning_rate"), gradtx.tree_get(tx, "b2")
    (0.0003, 0.99)
    """
    missing = [k for k in values if not tree_get_all_with_path(tree, k)]
    if missing:
        raise KeyError(f"tree_set: no field named {', '.join(map(repr, missing))}")

    def rebuild(node: Any) -> Any:
        children = _children(node)
        if not children:
            return node
        new = {
            name: _in_layout(values[name], child) if name in values else rebuild(child)
            for name, child in children
        }
        if hasattr(node, "_replace_named_children"):
            return node._replace_named_children(new)
        if isinstance(node, Struct):
            return dataclasses.replace(node, **new)
        if isinstance(node, tuple) and hasattr(node, "_fields"):
            return type(node)(**new)
        if isinstance(node, (tuple, list)):
            return type(node)(new[i] for i in range(len(node)))
        return type(node)(new) if isinstance(node, dict) else node

    return rebuild(tree)


def _in_layout(value: Any, old: Any) -> Any:
    """``value`` packed into ``old``'s layout when ``old`` is a FlatParams and it is a tree."""
    if isinstance(old, FlatParams) and not isinstance(value, FlatParams):
        return FlatParams.from_tree_like(value, old)
    return value
