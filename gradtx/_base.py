"""The transform abstraction: immutable, printable, comparable pytree objects.

Every transform, chain and schedule in gradtx is a :class:`Struct`: a frozen,
keyword-only dataclass registered as a JAX pytree. Numeric hyperparameters are
pytree leaves (a jitted step that takes the object as an argument does not
retrace when they change, and they can be vmapped over); modes and flags are
``static`` fields, part of the tree structure and so of jit's cache key.

Plain callables (a user's own schedule function, a mask function) cannot be
leaves, so they are carried in the static part of the tree automatically.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, ClassVar

import jax
import numpy as np


def static(default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """Declares a static field: part of the tree structure, never a leaf."""
    return dataclasses.field(default=default, metadata={"static": True}, **kwargs)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _is_opaque_callable(value: Any) -> bool:
    # A user's function (schedule, mask) is hashable but is no array: keep it static.
    return callable(value) and not isinstance(value, Struct)


class Struct:
    """Base of every gradtx object: a frozen dataclass that is also a pytree.

    Subclasses declare their hyperparameters as annotated class attributes.
    ``__post_init__`` may validate them; it runs when a user builds the object,
    never when JAX rebuilds it from leaves (possibly tracers).
    """

    _data_fields: ClassVar[tuple[str, ...]] = ()
    _static_fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, kw_only: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # kw_only=False only where optax's API is a class called positionally (MultiSteps).
        dataclasses.dataclass(frozen=True, kw_only=kw_only, eq=False, repr=False)(cls)
        fields = dataclasses.fields(cls)
        cls._data_fields = tuple(f.name for f in fields if not f.metadata.get("static"))
        cls._static_fields = tuple(f.name for f in fields if f.metadata.get("static"))
        jax.tree_util.register_pytree_with_keys(
            cls, _flatten_with_keys, _make_unflatten(cls), _flatten
        )

    # -- introspection ---------------------------------------------------------

    @property
    def name(self) -> str:
        """The snake_case name users build this object with."""
        return _snake(type(self).__name__)

    def hyperparams(self) -> dict[str, Any]:
        """Every field, by name, in declaration order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> Struct:
        """A copy with some fields changed; the new values are validated."""
        return dataclasses.replace(self, **changes)

    # -- value semantics -------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        leaves_a, tree_a = jax.tree.flatten(self)
        leaves_b, tree_b = jax.tree.flatten(other)
        return tree_a == tree_b and all(map(_leaf_equal, leaves_a, leaves_b))

    def __hash__(self) -> int:
        leaves, tree = jax.tree.flatten(self)
        return hash((tree, tuple(map(_leaf_key, leaves))))

    def __repr__(self) -> str:
        return self._pformat(indent=0)

    def _pformat(self, indent: int) -> str:
        """The repr, laid out for nesting at ``indent`` columns."""
        return _format(self, indent)

    def _repr_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self))


def _flatten(obj: Struct):
    children, names, opaque = [], [], []
    for name in obj._data_fields:
        value = getattr(obj, name)
        if _is_opaque_callable(value):
            opaque.append((name, value))
        else:
            names.append(name)
            children.append(value)
    statics = tuple((name, getattr(obj, name)) for name in obj._static_fields)
    return children, (tuple(names), tuple(opaque), statics)


def _flatten_with_keys(obj: Struct):
    children, aux = _flatten(obj)
    keys = [jax.tree_util.GetAttrKey(name) for name in aux[0]]
    return list(zip(keys, children)), aux


def _make_unflatten(cls: type[Struct]):
    def unflatten(aux, children):
        names, opaque, statics = aux
        obj = object.__new__(cls)  # bypasses __init__: no validation of tracers
        for name, value in (*zip(names, children), *opaque, *statics):
            object.__setattr__(obj, name, value)
        return obj

    return unflatten


def _is_concrete(value: Any) -> bool:
    return not isinstance(value, jax.core.Tracer)


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(x)


def _leaf_equal(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if not (_is_concrete(a) and _is_concrete(b)):
        return False
    a, b = _as_numpy(a), _as_numpy(b)
    return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))


def _leaf_key(leaf: Any) -> Any:
    if not _is_concrete(leaf):
        raise TypeError("a gradtx object holding traced values cannot be hashed")
    array = _as_numpy(leaf)
    return (array.shape, str(array.dtype), (array + np.zeros((), array.dtype)).tobytes())


# -- printing ------------------------------------------------------------------

_WIDTH = 88


def _format_value(value: Any, indent: int) -> str:
    if isinstance(value, Struct):
        return value._pformat(indent)
    if isinstance(value, float):
        return f"{value:g}" if value == value and abs(value) < 1e16 else repr(value)
    if isinstance(value, jax.core.Tracer):
        return f"Traced<{value.aval.str_short()}>"
    if isinstance(value, (jax.Array, np.ndarray, np.generic)):
        array = _as_numpy(value)
        if array.ndim == 0:
            return f"{array.item():g}" if array.dtype.kind == "f" else repr(array.item())
        return f"{array.dtype}{list(array.shape)}"
    if isinstance(value, tuple) and value and isinstance(value[0], Struct):
        pad = " " * (indent + 4)
        items = "".join(f"\n{pad}{v._pformat(indent + 4)}," for v in value)
        return f"({items}\n{' ' * indent})"
    if isinstance(value, np.dtype) or (isinstance(value, type) and hasattr(value, "dtype")):
        return np.dtype(value).name
    if callable(value) and hasattr(value, "__qualname__"):
        return value.__qualname__
    return repr(value)


def _format(obj: Struct, indent: int) -> str:
    children = [(name, getattr(obj, name)) for name in obj._repr_fields()]
    flat = ", ".join(f"{n}={_format_value(v, indent)}" for n, v in children)
    one_line = f"{type(obj).__name__}({flat})"
    if len(one_line) + indent <= _WIDTH and "\n" not in one_line:
        return one_line
    pad = " " * (indent + 4)
    inner = ",\n".join(f"{pad}{n}={_format_value(v, indent + 4)}" for n, v in children)
    return f"{type(obj).__name__}(\n{inner},\n{' ' * indent})"


# -- the two kinds of objects --------------------------------------------------


class Transform(Struct):
    """A gradient transformation: ``init(params)`` and ``update(updates, state, params)``.

    Works wherever optax expects a ``GradientTransformation``: inside
    ``optax.chain``, flax's ``TrainState`` and ``nnx.Optimizer``.
    """

    # True where the maths is per element (or a reduction over all of them), so
    # that it gives the same numbers on flat buffers as per leaf (multi_tensor).
    elementwise: ClassVar[bool] = False

    def children_transforms(self) -> tuple[Transform, ...]:
        """The transforms this one wraps (in fields, or tuples and dicts of them)."""
        found = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            values = value.values() if isinstance(value, dict) else value
            items = values if isinstance(value, (tuple, list, dict)) else (value,)
            found.extend(v for v in items if isinstance(v, Transform))
        return tuple(found)

    def init(self, params: Any) -> Any:
        raise NotImplementedError

    def update(self, updates: Any, state: Any, params: Any = None, **extra_args: Any):
        raise NotImplementedError


class Schedule(Struct):
    """A function of the step count, with its parameters as pytree leaves."""

    def __call__(self, count: Any) -> Any:
        raise NotImplementedError


# -- validation ------------------------------------------------------------------


def _concrete_numbers(value: Any) -> np.ndarray | None:
    """The value as a NumPy array, or None when it cannot be checked now."""
    if isinstance(value, bool) or value is None or isinstance(value, Struct):
        return None
    if isinstance(value, (int, float, np.number, np.ndarray)):
        return np.asarray(value, dtype=float)
    if isinstance(value, jax.Array) and _is_concrete(value):
        return np.asarray(value, dtype=float)
    return None


def check_range(
    obj: Struct,
    arg: str,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Rejects ``getattr(obj, arg)`` outside the interval, naming both.

    Tracers, schedules and None are not checked (they are checked where they
    are built, or cannot be checked at all).
    """
    value = getattr(obj, arg)
    numbers = _concrete_numbers(value)
    if numbers is None:
        return
    too_low = numbers <= low if low_open else numbers < low
    too_high = numbers >= high if high_open else numbers > high
    if np.any(too_low | too_high) or np.any(np.isnan(numbers)):
        interval = ("(" if low_open else "[") + f"{low:g}, {high:g}" + (")" if high_open else "]")
        raise ValueError(f"{obj.name}({arg}={value!r}): {arg} must be in {interval}")


def check_choice(obj: Struct, arg: str, choices: tuple[Any, ...]) -> None:
    """Rejects a static option that is not one of ``choices``."""
    value = getattr(obj, arg)
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{obj.name}({arg}={value!r}): {arg} must be one of {allowed}")


def fail(obj: Struct, arg: str, message: str) -> None:
    """Raises the standard error for an argument that is invalid for another reason."""
    raise ValueError(f"{obj.name}({arg}={getattr(obj, arg)!r}): {message}")
