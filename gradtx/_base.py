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
import functools
import inspect
import math
import re
import threading
from typing import Any, ClassVar, NamedTuple, NoReturn

import jax
import numpy as np

from ._tree import check_float_leaves, check_same_shapes, check_same_structure


def static(default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """Declares a static field: part of the tree structure, never a leaf.

    Use it for modes and flags (strings, booleans, dtypes, named functions):
    they are part of jit's cache key, so changing one retraces, and they must
    hash and compare by value. Numeric hyperparameters stay ordinary fields
    (leaves), as in ``equinox.field(static=True)``.

    Args:
        default: the field's default; omitted, the field is required.
        **kwargs: passed on to ``dataclasses.field`` (e.g. ``default_factory``).

    >>> import jax
    >>> from gradtx._base import static, Transform
    >>> class Scale(Transform):
    ...     factor: float = 2.0
    ...     mode: str = static("mul")
    ...     def init(self, params): return ()
    ...     def update(self, updates, state, params=None, **extra_args): return updates, state
    >>> jax.tree.leaves(Scale(factor=3.0)), Scale().mode
    ([3.0], 'mul')
    """
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
        own = cls.__dict__.get("__post_init__")
        if own is not None:
            # Validation sees the normalised values: a subclass's own checks run after.
            @functools.wraps(own)
            def post_init(self, _own=own):
                _validate(self, _own)

            cls.__post_init__ = post_init
        # kw_only=False only where optax's API is a class called positionally (MultiSteps).
        dataclasses.dataclass(frozen=True, kw_only=kw_only, eq=False, repr=False)(cls)
        fields = dataclasses.fields(cls)
        cls._data_fields = tuple(f.name for f in fields if not f.metadata.get("static"))
        cls._static_fields = tuple(f.name for f in fields if f.metadata.get("static"))
        jax.tree_util.register_pytree_with_keys(
            cls, _flatten_with_keys, _make_unflatten(cls), _flatten
        )

    def __post_init__(self) -> None:
        _validate(self, None)

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


def _value_key(x: Any) -> tuple:
    """What equality looks at: the shape and the numbers, whatever their dtype.

    ``sgd(1)``, ``sgd(1.0)`` and ``sgd(np.float32(1))`` are the same optimizer;
    ``jnp.asarray(1e-3)`` holds float32's nearest value, a different number from 1e-3.
    PRNG keys and other non-numeric leaves compare by dtype and bytes.
    """
    array = _as_numpy(x)
    if array.dtype.kind in "biuf":
        array = array.astype(np.float64) + 0.0  # -0.0 == 0.0
    elif array.dtype.kind == "c":
        array = array.astype(np.complex128) + 0.0
    else:
        return (array.shape, str(array.dtype), array.tobytes())
    return (array.shape, array.tobytes())


def _leaf_equal(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if not (_is_concrete(a) and _is_concrete(b)):
        return False
    return _value_key(a) == _value_key(b)


def _leaf_key(leaf: Any) -> Any:
    if not _is_concrete(leaf):
        raise TypeError("a gradtx object holding traced values cannot be hashed")
    return _value_key(leaf)


class FrozenDict(dict):
    """A dict that cannot change after it is built (a field of a hashable object)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("this dict is a field of an immutable gradtx object: use tree_set")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse
    __ior__ = _refuse

    def __reduce__(self):
        return (FrozenDict, (dict(self),))


jax.tree_util.register_pytree_with_keys(
    FrozenDict,
    lambda d: ([(jax.tree_util.DictKey(k), d[k]) for k in d], tuple(d)),
    lambda keys, values: FrozenDict(zip(keys, values)),
    lambda d: ([d[k] for k in d], tuple(d)),
)


def _validate(obj: Struct, own_checks: Any) -> None:
    """Normalises, then runs the class's own checks; errors carry the values as given.

    A recipe names the argument that carried a bad value by finding that very
    object among its own arguments (:func:`gradtx.recipe`), so the error keeps
    what the user passed (``-1``), not its normalised form (``-1.0``).
    """
    given = {name: getattr(obj, name) for name in obj._data_fields + obj._static_fields}
    try:
        _normalise(obj)
        if own_checks is not None:
            own_checks(obj)
    except HyperparameterError as error:
        if error.given is None and error.transform == obj.name:
            error.given = {arg: given.get(arg, value) for arg, value in error.values.items()}
        raise


def _normalise(obj: Struct) -> None:
    """Gives numeric hyperparameters one canonical form, so equal values compare equal.

    Concrete real scalar arrays (integer and floating, bfloat16 and float8 too)
    become Python numbers (their exact value; complex and boolean ones are kept),
    an int given where the default is a float becomes a float, a dict is frozen. So
    ``adam(jnp.asarray(0.5)) == adam(0.5)``, both trace to the same jit
    signature, and a hashed object cannot be changed under its hash.
    """
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if not field.metadata.get("static"):
            _check_kind(obj, field, value)
        new = value
        if isinstance(value, (np.ndarray, np.generic, jax.Array)) and _is_concrete(value):
            dtype = np.dtype(value.dtype) if not _is_key(value) else None
            if dtype is not None and np.ndim(value) == 0 and _is_real_number(dtype):
                new = np.asarray(value).item()
        elif isinstance(value, dict) and not field.metadata.get("static"):
            new = value if isinstance(value, FrozenDict) else FrozenDict(value)
        if (
            isinstance(new, int)
            and not isinstance(new, bool)
            and _declared_float(field)
            and not field.metadata.get("static")
        ):
            new = float(new)
        if field.name.endswith("_dtype"):
            _check_float_dtype(obj, field.name)
        if new is not value:
            object.__setattr__(obj, field.name, new)


def _is_real_number(dtype: np.dtype) -> bool:
    """Integers and floats of every width, bfloat16 and float8 included (NumPy's kind "V")."""
    return jax.numpy.issubdtype(dtype, jax.numpy.integer) or jax.numpy.issubdtype(
        dtype, jax.numpy.floating
    )


def _declared_kinds(field: dataclasses.Field) -> set[str]:
    """The names in a field's annotation: ``float | None`` -> {"float", "None"}."""
    return {kind.strip() for kind in str(getattr(field.type, "__name__", field.type)).split("|")}


def _declared_float(field: dataclasses.Field) -> bool:
    """A float by its default or its annotation (``float``, ``float | None``), never an int."""
    kinds = _declared_kinds(field)
    return isinstance(field.default, float) or ("float" in kinds and "int" not in kinds)


def _wants_a_number(field: dataclasses.Field) -> bool:
    """A number is required: so declared, or by a numeric default, and None is not allowed."""
    kinds = _declared_kinds(field)
    if kinds & {"None", "Any"} or any("Optional" in kind for kind in kinds):
        return False
    default = field.default
    numeric_default = isinstance(default, (int, float)) and not isinstance(default, bool)
    return bool(kinds & {"float", "int"}) or numeric_default


def _check_kind(obj: Struct, field: dataclasses.Field, value: Any) -> None:
    """Refuses, when built, a value that could only fail later under jit.

    A string is never a leaf (``adam('1e-3')``); a flag or None is no number
    where one is required. JAX's own error would come at the first step.
    """
    if isinstance(value, str):
        raise HyperparameterTypeError(
            obj.name,
            {field.name: value},
            f"{field.name} is a string: a number, array or schedule is expected",
        )
    if (value is None or isinstance(value, bool)) and _wants_a_number(field):
        _refuse_as_no_number(obj, field.name, value)


def _refuse_as_no_number(obj: Struct, arg: str, value: Any) -> None:
    raise HyperparameterTypeError(obj.name, {arg: value}, f"{arg} must be a number or an array")


def _is_key(value: Any) -> bool:
    return isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key)


def _check_float_dtype(obj: Struct, arg: str) -> None:
    """A storage dtype (``mu_dtype``...) must be None or floating-point: never integer state."""
    value = getattr(obj, arg)
    if value is None:
        return
    try:
        dtype = np.dtype(jax.numpy.dtype(value))
    except TypeError:
        dtype = None
    if dtype is None or not jax.numpy.issubdtype(dtype, jax.numpy.inexact):
        raise HyperparameterError(
            obj.name,
            {arg: value if dtype is None else dtype},
            f"{arg} must be None or a floating-point dtype "
            "(an integer or boolean accumulator would truncate the optimizer's maths)",
        )


# -- printing ------------------------------------------------------------------

_WIDTH = 88


def _format_value(value: Any, indent: int) -> str:
    if isinstance(value, Struct):
        return value._pformat(indent)
    if isinstance(value, float):
        return _format_float(value)
    if isinstance(value, jax.core.Tracer):
        return f"Traced<{value.aval.str_short()}>"
    if isinstance(value, (jax.Array, np.ndarray, np.generic)):
        array = _as_numpy(value)
        if array.ndim == 0:
            return _format_float(array.item()) if array.dtype.kind == "f" else repr(array.item())
        return f"{array.dtype}{list(array.shape)}"
    if isinstance(value, tuple) and value and isinstance(value[0], Struct):
        pad = " " * (indent + 4)
        items = "".join(f"\n{pad}{v._pformat(indent + 4)}," for v in value)
        return f"({items}\n{' ' * indent})"
    if isinstance(value, dict) and any(isinstance(v, Struct) for v in value.values()):
        pad = " " * (indent + 4)
        items = "".join(f"\n{pad}{k!r}: {_format_value(v, indent + 4)}," for k, v in value.items())
        return f"{{{items}\n{' ' * indent}}}"
    if (name := _dtype_name(value)) is not None:
        return name
    if callable(value) and hasattr(value, "__qualname__"):
        return value.__qualname__
    return repr(value)


def _dtype_name(value: Any) -> str | None:
    """A dtype's name (``float32``) for a dtype or a scalar type (``jnp.float32``), else None."""
    if isinstance(value, np.dtype) or (isinstance(value, type) and hasattr(value, "dtype")):
        return np.dtype(value).name
    return None


def _format_float(value: float) -> str:
    """A float as a float (``1.0``, not ``1``), exactly, as short as float32 allows.

    A float32 array made a Python float holds float32's nearest value
    (0.10000000149011612): it prints as the float32 it is (``0.1``).
    """
    exact = repr(value)
    if not np.isfinite(value) or abs(value) > float(np.finfo(np.float32).max):
        return exact
    # float(...): compared in float64 (a Python float beside a float32 is rounded to float32).
    if float(np.float32(value)) != value:
        return exact
    single = repr(float(str(np.float32(value))))
    return single if len(single) < len(exact) else exact


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

    Every ``init`` and ``update`` is checked before it runs (once, at trace time,
    under jit): integer and boolean leaves are refused by every transform that
    does arithmetic on them (TypeError naming the leaf); the outermost
    ``update`` also checks that the updates have the params' structure and
    shapes (ValueError naming the path and both shapes) and that the state was
    made by this transform's ``init`` (TypeError naming both states).
    """

    # True where the maths is per element (or a reduction over all of them), so
    # that it gives the same numbers on flat buffers as per leaf (multi_tensor).
    elementwise: ClassVar[bool] = False

    # Integer and boolean leaves: "refuse" them (TypeError), "pass" them (no
    # arithmetic: identity, set_to_zero), or None: refuse unless the transform
    # wraps others (chain, masked, partition), which leave it to those.
    integer_leaves: ClassVar[str | None] = None

    # True for the gradient-free methods, whose update may be called with
    # updates=None (they evaluate value_fn= instead of reading a gradient).
    gradient_free: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "init" in cls.__dict__:
            cls.init = _guarded_init(cls.__dict__["init"])
        if "update" in cls.__dict__:
            cls.update = _guarded_update(cls.__dict__["update"])

    def children_transforms(self) -> tuple[Transform, ...]:
        """The transforms this one wraps (in fields, or tuples and dicts of them)."""
        found = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            values = value.values() if isinstance(value, dict) else value
            items = values if isinstance(value, (tuple, list, dict)) else (value,)
            found.extend(v for v in items if isinstance(v, Transform))
        return tuple(found)

    def needs_leaves(self, flat: Any) -> bool:
        """Whether this transform must see the leaves of a :class:`gradtx.FlatParams`.

        True when it is not elementwise and wraps no transforms: it then runs on
        the leaves (slices of the buffers) and its updates are packed back.
        Combinators whose masks cut a buffer in two say True too.
        """
        del flat
        return not self.elementwise and not self.children_transforms()

    def refuses_integer_leaves(self) -> bool:
        """Whether integer and boolean leaves raise here (see ``integer_leaves``)."""
        if self.integer_leaves is None:
            return not self.children_transforms()
        return self.integer_leaves == "refuse"

    def init(self, params: Any) -> Any:
        raise NotImplementedError

    def update(self, updates: Any, state: Any, params: Any = None, **extra_args: Any):
        raise NotImplementedError


# -- the checks every init and update runs -----------------------------------------

_calls = threading.local()  # how deep inside an update we are: only the outermost checks


def _guarded_init(init):
    @functools.wraps(init)
    def checked_init(self, params):
        params = _as_arrays(params)
        if self.refuses_integer_leaves():
            check_float_leaves(params, "params")
        if _needs_leaves(self, params):
            return init(self, params.to_tree())
        return init(self, params)

    return checked_init


def _guarded_update(update):
    @functools.wraps(update)
    def checked_update(self, updates, state, params=None, **extra_args):
        if updates is None:
            _check_no_updates(self, params)
        elif self.refuses_integer_leaves():
            check_float_leaves(updates)
        depth = getattr(_calls, "depth", 0)
        if depth == 0:
            updates, params = _as_arrays(updates), _as_arrays(params)
            if params is not None and updates is not None:
                check_same_structure(updates, params, "params")
                check_same_shapes(updates, params, "params")
            _check_state(self, state, params, updates)
        _calls.depth = depth + 1
        try:
            flat = _needs_leaves(self, updates, params)
            if flat is not None:
                return _update_leaves(self, update, flat, updates, state, params, extra_args)
            return update(self, updates, state, params, **extra_args)
        finally:
            _calls.depth = depth

    return checked_update


def _as_arrays(tree: Any) -> Any:
    """Python numbers among the leaves as arrays of the default dtypes, as jnp makes them
    (``{"w": 2.0}`` is a tree of one float leaf), and NumPy arrays of a dtype JAX does not
    compute in now (float64 without ``jax_enable_x64``) in the one it does, as jnp would
    without the warning an explicit ``astype(g.dtype)`` gives; other trees are returned as
    they are."""
    leaves, treedef = jax.tree.flatten(tree)
    if not any(_not_jax_ready(x) for x in leaves):
        return tree
    return treedef.unflatten([jax.numpy.asarray(x, jax.numpy.result_type(x)) for x in leaves])


def _not_jax_ready(x: Any) -> bool:
    if isinstance(x, (int, float, complex)):
        return True
    return isinstance(x, (np.ndarray, np.generic)) and x.dtype != jax.dtypes.canonicalize_dtype(
        x.dtype
    )


# -- flat parameters (gradtx.FlatParams) for transforms that need leaf boundaries ------------


def _is_flat(x: Any) -> bool:
    return getattr(type(x), "gradtx_flat", False)


def _needs_leaves(tx: Transform, *values: Any) -> Any:
    """The FlatParams among ``values`` when ``tx`` needs the leaves it packs (else None).

    An elementwise transform gives the tree's numbers on the buffers; one that
    reduces per leaf or treats leaves as matrices (block RMS, trust ratios,
    Adafactor, Muon, Shampoo, ...) runs on the leaves, as slices of the buffers,
    and its updates are packed back (``Transform.needs_leaves``).
    """
    flat = next((x for x in values if _is_flat(x)), None)
    return flat if flat is not None and tx.needs_leaves(flat) else None


def _as_tree(x: Any) -> Any:
    return jax.tree.map(lambda v: v.to_tree() if _is_flat(v) else v, x, is_leaf=_is_flat)


def _update_leaves(tx, update, flat, updates, state, params, extra_args):
    """``update`` on the leaves of FlatParams: the extra arguments' FlatParams (grad=) as
    trees, and functions of the params (value_fn=, obj_fn=, ...) called with FlatParams."""
    pack = functools.partial(type(flat).from_tree_like, like=flat)

    def on_flat(fn):
        return lambda tree, *args, **kwargs: _as_tree(fn(pack(tree), *args, **kwargs))

    extra = {
        name: on_flat(value)
        if callable(value) and not isinstance(value, Struct)
        else _as_tree(value)
        for name, value in extra_args.items()
    }
    out, state = update(tx, _as_tree(updates), state, _as_tree(params), **extra)
    return (None if out is None else pack(out)), state


def _check_no_updates(tx: Transform, params: Any) -> None:
    """updates=None is for the gradient-free methods (and the combinators that pass it on)."""
    if params is None:
        raise ValueError(f"{_called(tx)}.update: updates=None needs params (gradient-free methods)")
    if not tx.gradient_free and not tx.children_transforms():
        raise TypeError(
            f"{_called(tx)}.update got updates=None: only a gradient-free method (value_fn=) "
            "can start a step without a gradient; chain it before this transform"
        )


_EXPECTED_STATES: dict = {}  # (transform structure, abstract params) -> init's abstract state


def _expected_state(tx: Transform, params: Any) -> Any:
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), _dtype_of(x)), params)
    try:
        # The shapes belong in the key: a transform can lay out its state by them (muon's groups).
        leaves, structure = jax.tree.flatten(abstract)
        key = (jax.tree.structure(tx), structure, tuple(leaves))
        hash(key)
    except TypeError:  # an unhashable static part: compute it every time
        return jax.eval_shape(tx.init, abstract)
    if key not in _EXPECTED_STATES:
        if len(_EXPECTED_STATES) > 512:
            _EXPECTED_STATES.clear()
        _EXPECTED_STATES[key] = jax.eval_shape(tx.init, abstract)
    return _EXPECTED_STATES[key]


def _dtype_of(x: Any) -> Any:
    return x.dtype if hasattr(x, "dtype") else jax.numpy.result_type(x)


def _is_state_node(x: Any) -> bool:
    """Named tuples, and tuples of them (a chain's): what states are made of.

    Below them are params-shaped trees and plain tuples of arrays, whose layout
    depends on the params and is checked where it is used.
    """
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return True
    if isinstance(x, dict):  # a partition's states by group (or a masked group's MaskedNodes)
        return any(_is_state_node(item) for item in x.values())
    return type(x) is tuple and any(isinstance(item, tuple) for item in x)


def _describe_state(x: Any) -> str:
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x).__name__
    if type(x) is tuple:
        return f"a tuple of {len(x)}"
    name = type(x).__name__
    return f"{'an' if name[0] in 'AEIOUaeiou' else 'a'} {name}"


def _first_state_difference(expected: Any, given: Any, path: str) -> tuple | None:
    if isinstance(expected, tuple) and isinstance(given, tuple) and not expected and not given:
        return None  # () and EmptyState() are both the empty state
    if not (_is_state_node(expected) or _is_state_node(given)):
        return None
    if isinstance(expected, dict) and isinstance(given, dict):
        if set(expected) != set(given):
            return path, f"a dict of {list(expected)}", f"a dict of {list(given)}"
        pairs = [(f"[{key!r}]", expected[key], given[key]) for key in expected]
    elif type(expected) is type(given) and len(expected) == len(given):
        names = getattr(expected, "_fields", None) or [f"[{i}]" for i in range(len(expected))]
        pairs = list(zip(names, expected, given))
    else:
        return path, _describe_state(expected), _describe_state(given)
    for name, a, b in pairs:
        found = _first_state_difference(a, b, f"{path}.{name}" if name[0] != "[" else path + name)
        if found:
            return found
    return None


def _called(tx: Transform) -> str:
    """The name the user called: a named optimizer's (``adam``), not its class's (``chain``)."""
    return getattr(tx, "label", None) or tx.name


def _check_state(tx: Transform, state: Any, params: Any, updates: Any) -> None:
    """Raises a TypeError when ``state`` is not what ``tx.init`` makes (another optimizer's).

    The state init would make for the params, or for the updates where there are no params or
    init refuses them (integer params beside float updates: a transform that ignores params).
    """
    for tree in (params, updates):
        if tree is None:
            continue
        try:
            expected = _expected_state(tx, tree)
            break
        except TypeError:  # integer leaves: the transform that refuses them says so, naming one
            continue
    else:
        return
    found = _first_state_difference(expected, state, "state")
    if found is None:
        return
    path, expected, given = found
    name = _called(tx)
    raise TypeError(
        f"{name}.update: the state at {path} is {given} where {name}.init makes {expected}. "
        "Was it made by another optimizer's init? Call init of the optimizer that updates it."
    )


class Schedule(Struct):
    """A function of the step count, with its parameters as pytree leaves."""

    def __call__(self, count: Any) -> Any:
        raise NotImplementedError


# -- validation ------------------------------------------------------------------


class HyperparameterError(ValueError):
    """A hyperparameter refused when its object is built.

    Reads ``transform(arg=value): message``. ``values`` maps each argument at
    fault to its value; ``given`` to the very object the caller passed (before
    normalisation), which :func:`gradtx.recipe` looks for among a recipe's own
    arguments to name the one the user wrote. ``context`` names the recipe
    being built when no argument of it carried the value.
    """

    def __init__(self, transform: str, values: dict[str, Any], message: str) -> None:
        super().__init__(transform, values, message)
        self.transform = transform
        self.values = dict(values)
        self.message = message
        self.given: dict[str, Any] | None = None
        self.context: str | None = None

    def __str__(self) -> str:
        given = ", ".join(f"{arg}={shown(value)}" for arg, value in self.values.items())
        where = f" (in {self.context}(...))" if self.context else ""
        return f"{self.transform}({given}): {self.message}{where}"


class HyperparameterTypeError(HyperparameterError, TypeError):
    """A hyperparameter of the wrong kind (a string, a flag, a function of no step)."""


def shown(value: Any) -> str:
    """A hyperparameter as an error message shows it: its repr, a dtype's or function's name."""
    if (name := _dtype_name(value)) is not None:
        return name
    if _is_opaque_callable(value) and hasattr(value, "__qualname__"):
        return value.__qualname__
    return repr(value)


def _concrete_numbers(value: Any) -> np.ndarray | None:
    """The value as a NumPy array, or None when it cannot be checked now."""
    if isinstance(value, bool) or value is None or isinstance(value, Struct):
        return None
    if isinstance(value, (int, float, np.number, np.ndarray)):
        return np.asarray(value, dtype=float)
    if isinstance(value, jax.Array) and _is_concrete(value):
        return np.asarray(value, dtype=float)
    return None


class _Samples(NamedTuple):
    """A schedule's values at the steps ``_schedule_samples`` chose, in increasing order."""

    steps: np.ndarray
    values: np.ndarray
    # The first steps and the knots with their neighbours: where a value is one the schedule
    # is built to take (its start, its end values), not one it drifts to far out.
    own: np.ndarray


def _schedule_samples(schedule: Schedule) -> _Samples | None:
    """The steps where a schedule is checked and its values there: its knots and steps around them.

    The steps are 0..64, every integer among the schedule's numbers (boundaries,
    warmup and decay lengths) with its neighbours and their pairwise sums, and
    powers of two up to 2**31: where every schedule family takes its extremes, in
    increasing order. None when the schedule holds traced values.
    """
    leaves = jax.tree.leaves(schedule)
    if not all(_is_concrete(x) for x in leaves):
        return None
    # As floats: a Python integer past int64 (transition_steps=2**64) is an object array.
    numbers = np.concatenate([np.ravel(_as_numpy(x)).astype(float) for x in leaves] or [[]])
    knots = {int(v) for v in numbers if np.isfinite(v)}
    knots = {k for k in knots if 0 <= k < 2**31}
    near = {k + d for k in knots for d in (-1, 0, 1)}
    steps = near | {a + b for a in knots for b in knots} | set(range(_FIRST_STEPS))
    steps |= {2**p for p in range(31)} | {2**31 - 1}
    counts = sorted(s for s in steps if 0 <= s < 2**31)
    # One padded length, so that every schedule reuses the same compiled kernels.
    size = _SAMPLES * -(-len(counts) // _SAMPLES)
    padded = np.asarray(counts + [0] * (size - len(counts)), dtype=np.int32)
    try:
        with jax.ensure_compile_time_eval():  # built inside a jitted function: still concrete
            values = _evaluate(schedule, padded)
    except Exception:  # noqa: BLE001 - a schedule that cannot be vmapped is checked when it runs
        return None
    if not _is_concrete(values):
        return None
    own = [count < _FIRST_STEPS or count in near for count in counts]
    return _Samples(
        np.asarray(counts), np.asarray(values, dtype=float)[: len(counts)], np.asarray(own)
    )


_SAMPLES = 1024
_FIRST_STEPS = 65  # steps 0..64 are always sampled, and come first


@jax.jit
def _evaluate(schedule: Schedule, counts: jax.Array) -> jax.Array:
    return jax.vmap(schedule)(counts)


def check_range(
    obj: Struct,
    arg: str,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
    allow_inf: bool = False,
    integer: bool = False,
) -> None:
    """Rejects ``getattr(obj, arg)`` outside the interval, naming both.

    The value must be a real, finite scalar (``allow_inf`` admits +-inf where it
    means "no limit"), a whole number when ``integer``. A gradtx schedule is checked at
    its knots and a sample of steps (see ``_schedule_samples``) and must be a number at
    steps 0..64 (NaN there is refused; beyond, it may be overflow). It may pass a bound by
    a millionth of its largest value (float32 rounding), an open bound only far from its
    knots (an underflow). Tracers, user functions and None are not checked (they cannot be
    checked at all).
    """
    value = getattr(obj, arg)
    if _is_opaque_callable(value):
        _check_schedule_function(obj, arg, value)
        return
    if isinstance(value, (bool, np.bool_)):  # a flag where a range is checked (a field of Any)
        _refuse_as_no_number(obj, arg, value)
    if any(np.iscomplexobj(x) for x in jax.tree.leaves(value)):
        fail(obj, arg, f"{arg} must be real, not complex")
    if isinstance(value, Schedule):
        samples = _schedule_samples(value)
        if samples is None:
            return
        steps, numbers, own = samples
        # The first samples are the steps 0..64: NaN there is no overflow at 2**31 but a bug.
        early_nan = np.flatnonzero(np.isnan(numbers[:_FIRST_STEPS]))
        if early_nan.size:
            fail(
                obj, arg, f"{arg} must be a number at every step; it is NaN at step {early_nan[0]}"
            )
        interval = _interval(low, high, low_open, high_open, allow_inf)
        what = f"{arg} must be in {interval} at every step"
        scale = max(1.0, float(np.max(np.abs(numbers[np.isfinite(numbers)]), initial=0.0)))
        # A schedule's own float32 rounding around its end values may step over a closed
        # bound, and one decaying towards an open bound reaches it by underflow far out
        # (exponential_decay(0.2, 25, 0.7) at 2**13 steps): both keep a slack. An open bound
        # reached at the first steps or at a knot is a value the schedule is built to take
        # (linear_schedule(0.9, 1.0, 10) at step 10): no slack there.
        slack = 1e-6 * scale
        open_slack = np.where(own, 0.0, slack)
        too_low = numbers <= low - open_slack if low_open else numbers < low - slack
        too_high = numbers >= high + open_slack if high_open else numbers > high + slack
        bad = too_low | too_high  # NaN compares False: a schedule may overflow at 2**31
        if np.any(bad):
            # The farthest value beyond the bound, at the first step it is reached.
            if np.any(too_low):
                worst = int(np.argmin(np.where(too_low, numbers, np.inf)))
            else:
                worst = int(np.argmax(np.where(too_high, numbers, -np.inf)))
            fail(obj, arg, f"{what}; it reaches {numbers[worst]:g} at step {steps[worst]}")
        return
    numbers = _concrete_numbers(value)
    if numbers is None:
        return
    if numbers.ndim:
        fail(
            obj,
            arg,
            f"{arg} must be a scalar, not an array of shape {numbers.shape} (to sweep "
            "values, jax.vmap over a function that builds the transform)",
        )
    if np.isnan(numbers) or (np.isinf(numbers) and not allow_inf):
        fail(obj, arg, f"{arg} must be a finite number")
    if integer and np.isfinite(numbers) and numbers != np.round(numbers):
        fail(obj, arg, f"{arg} must be a whole number")
    too_low = numbers <= low if low_open else numbers < low
    too_high = numbers >= high if high_open else numbers > high
    if too_low or too_high:
        fail(obj, arg, f"{arg} must be in {_interval(low, high, low_open, high_open, allow_inf)}")


def _check_schedule_function(obj: Struct, arg: str, function: Any) -> None:
    """A user's function given for a number is a schedule: it must take the step count."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a builtin without a signature: checked when it runs
        return
    try:
        signature.bind(0)
    except TypeError:
        raise HyperparameterTypeError(
            obj.name,
            {arg: function},
            f"a function given as {arg} is a schedule, called with the step count: "
            f"{arg}(count); this one cannot take it (write lambda count: ...)",
        ) from None


def check_denominator(obj: Struct, *args: str) -> None:
    """Rejects eps-like arguments that are all 0: a zero gradient would give 0 / 0 = NaN.

    Where any of them is positive (``eps_root``, an initial accumulator) the
    denominator never vanishes, and 0 is allowed.
    """
    values = [_concrete_numbers(getattr(obj, arg)) for arg in args]
    if all(v is not None and v.ndim == 0 and v == 0 for v in values):
        raise HyperparameterError(
            obj.name,
            {arg: getattr(obj, arg) for arg in args},
            f"with {' and '.join(args)} all 0 a zero gradient gives 0 / 0 = NaN "
            f"(PyTorch and optax return NaN there); make {args[0]} > 0",
        )


def _interval(
    low: float, high: float, low_open: bool, high_open: bool, allow_inf: bool = False
) -> str:
    # An infinite end is open unless infinity itself is allowed ("no limit").
    low_open = low_open or (low == -math.inf and not allow_inf)
    high_open = high_open or (high == math.inf and not allow_inf)
    ends = ", ".join(str(end) if isinstance(end, int) else f"{end:g}" for end in (low, high))
    return ("(" if low_open else "[") + ends + (")" if high_open else "]")


def check_choice(obj: Struct, arg: str, choices: tuple[Any, ...]) -> None:
    """Rejects a static option that is not one of ``choices``."""
    if getattr(obj, arg) not in choices:
        fail(obj, arg, f"{arg} must be one of {', '.join(repr(c) for c in choices)}")


def fail(obj: Struct, arg: str, message: str) -> NoReturn:
    """Raises the standard error for an argument that is invalid for another reason.

    ``message`` names the argument as ``arg``: a recipe that passed the value on
    under another name renames it there (``decay`` -> ``momentum``).
    """
    raise HyperparameterError(obj.name, {arg: getattr(obj, arg)}, message)


def fail_missing(transform: Transform, needs: str, call: str) -> NoReturn:
    """Raises the standard error for an update called without an argument it needs.

    ``needs`` names what is missing, with the keyword the user must pass
    (``value=``, ``value_fn=``, ``obj_fn=``, ...); ``call`` is the call that passes it.
    """
    raise ValueError(f"{transform.name}.update needs {needs}: call {call}")
