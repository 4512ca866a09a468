"""Combinators: chains of transforms, optax interoperability, masks."""

from __future__ import annotations

from collections.abc import Callable
import contextlib
import dataclasses
import functools
import inspect
import re
import textwrap
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._base import HyperparameterError, static, Struct, Transform


class EmptyState(NamedTuple):
    """The state of a stateless transform."""


class Identity(Transform):
    """Leaves updates unchanged: ``u <- u``."""

    elementwise = True
    integer_leaves = "pass"

    def init(self, params):
        del params
        return EmptyState()

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        return updates, state


def identity() -> Identity:
    """The transform that changes nothing.

    >>> import gradtx
    >>> float(gradtx.identity().update({"w": 1.0}, ())[0]["w"])
    1.0
    """
    return Identity()


class FromOptax(Transform):
    """An optax ``GradientTransformation`` (a pair of closures) used inside a gradtx chain.

    Its hyperparameters are hidden inside closures, so they are not leaves.
    """

    inner: Any = static()

    def init(self, params):
        return self.inner.init(params)

    def update(self, updates, state, params=None, **extra_args):
        # optax's GradientTransformationExtraArgs takes extra arguments; a plain one does not.
        kinds = {p.kind for p in inspect.signature(self.inner.update).parameters.values()}
        if inspect.Parameter.VAR_KEYWORD not in kinds:
            extra_args = {}
        return self.inner.update(updates, state, params, **extra_args)


def as_transform(tx: Any) -> Transform:
    """A gradtx transform as is; an optax transform wrapped in :class:`FromOptax`."""
    if isinstance(tx, Transform):
        return tx
    if hasattr(tx, "init") and hasattr(tx, "update"):
        return FromOptax(inner=tx)
    raise TypeError(f"chain: expected a transform with init and update, got {tx!r}")


class Chain(Transform):
    """Applies transforms in order; the state is the tuple of their states.

    ``label`` names a recipe (``"adam"``) in ``repr``; it is static.
    """

    elementwise = True

    transforms: tuple[Transform, ...] = ()
    label: str | None = static(None)

    def __post_init__(self):
        object.__setattr__(self, "transforms", tuple(as_transform(t) for t in self.transforms))

    def init(self, params):
        return tuple(t.init(params) for t in self.transforms)

    def update(self, updates, state, params=None, **extra_args):
        if not isinstance(state, tuple) or len(state) != len(self.transforms):
            raise ValueError(
                f"chain: the state has {len(state) if isinstance(state, tuple) else 'no'} "
                f"entries for {len(self.transforms)} transforms; was it made by this "
                "chain's init?"
            )
        new_state = []
        for transform, inner_state in zip(self.transforms, state):
            updates, inner_state = transform.update(updates, inner_state, params, **extra_args)
            new_state.append(inner_state)
        return updates, tuple(new_state)

    def _pformat(self, indent: int) -> str:
        head = self.label or "chain"
        pad = " " * (indent + 4)
        body = "".join(f"\n{pad}{t._pformat(indent + 4)}," for t in self.transforms)
        return f"{head}({body}\n{' ' * indent})" if body else f"{head}()"


def chain(*transforms: Any) -> Chain:
    """Applies ``transforms`` one after the other, like ``optax.chain``.

    Accepts gradtx transforms and optax ``GradientTransformation`` objects alike.
    Its state is the tuple of the transforms' states; extra arguments of
    ``update`` (``value=``, ``value_fn=``, ...) are passed to each transform.

    Args:
        *transforms: the transforms, applied in the order given; none gives the
            identity.

    >>> import gradtx
    >>> tx = gradtx.chain(gradtx.clip(1.0), gradtx.scale(-0.1))
    >>> tx.update({"w": 5.0}, tx.init({"w": 0.0}))[0]
    {'w': Array(-0.1, dtype=float32)}
    """
    return Chain(transforms=transforms)


def named_recipe(label: str, *transforms: Any) -> Chain:
    """A chain that prints under a recipe's name (``adam(...)``)."""
    return Chain(transforms=transforms, label=label)


def recipe(build: Any) -> Any:
    """Makes a named optimizer speak in its own terms: its name, its arguments.

    A recipe passes its arguments on to transforms under their names
    (``sgd(momentum=1.5)`` builds ``scale_by_momentum(decay=1.5)``). When building
    raises a :class:`HyperparameterError`, the argument of the recipe that
    carried the bad value (that very object, else an equal one, preferring the
    same name; an element of a tuple such as ``betas`` too) takes the
    transform's place in the message, raised from the original. When none or
    several carry it, the message says which recipe was being built. The chain
    it returns is labelled with the recipe's name, so it prints as what was
    called (``pytorch.adamw(...)``, not the recipe it delegates to).

    Compat recipes are named after their framework (``pytorch.adam``), from the
    module they are defined in.
    """
    module = build.__module__.split(".")
    framework = module[2:3] if module[1:2] == ["compat"] else []
    name = ".".join([*framework, build.__name__])
    signature = inspect.signature(build)

    @functools.wraps(build)
    def recipe_call(*args: Any, **kwargs: Any) -> Any:
        try:
            result = build(*args, **kwargs)
        except HyperparameterError as error:
            raise _in_terms_of(error, name, signature, args, kwargs) from error
        if isinstance(result, Chain) and result.label != name:
            result = dataclasses.replace(result, label=name)
        return result

    recipe_call.recipe_name = name
    return recipe_call


def shared_args(marker: str, entries: str) -> Callable[[Any], Any]:
    """A decorator that writes Args entries shared by many functions into their docstrings.

    The docstring holds a line that reads ``marker`` (indented as its Args entries); the
    decorator puts ``entries`` (written without indentation) there, indented alike, so the
    text lives once while every function's ``__doc__``, the API pages and ``help()`` show
    it in full. A docstring without the marker raises at import. Put it under ``@recipe``.
    """

    def document(function: Any) -> Any:
        lines = (function.__doc__ or "").splitlines(keepends=True)
        at = [i for i, line in enumerate(lines) if line.strip() == marker]
        if len(at) != 1:
            raise ValueError(f"{function.__qualname__}: its docstring needs one line {marker!r}")
        indent = lines[at[0]][: len(lines[at[0]]) - len(lines[at[0]].lstrip())]
        text = textwrap.indent(entries, indent)
        function.__doc__ = "".join(lines[: at[0]]) + text + "".join(lines[at[0] + 1 :])
        return function

    return document


def _in_terms_of(
    error: HyperparameterError, name: str, signature: inspect.Signature, args: tuple, kwargs: dict
) -> HyperparameterError:
    """``error`` restated with the recipe's name and the arguments the caller wrote."""
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    given = error.given if error.given is not None else error.values
    carriers = {arg: _carrier(value, arg, bound) for arg, value in given.items()}
    if not all(carriers.values()):
        restated = type(error)(error.transform, error.values, error.message)
        restated.given, restated.context = error.given, name
        return restated
    # One argument of the recipe carries one value: where several claim it (``eps=0`` and a
    # literal ``eps_root=0.0`` both equal to ``epsilon=0``), the best claim keeps it and the
    # others, values the recipe wrote itself, keep their building block's names.
    best: dict[str, int] = {}
    for score, path, *_ in carriers.values():
        best[path] = max(best.get(path, -1), score)
    found = {arg: claim[1:] for arg, claim in carriers.items() if claim[0] == best[claim[1]]}
    renames = {arg: path for arg, (path, _, _) in found.items()}
    message = re.sub(
        r"\b(" + "|".join(map(re.escape, renames)) + r")\b",
        lambda match: renames[match.group(1)],
        error.message,
    )
    values = {top: value for _, top, value in found.values()}
    restated = type(error)(name, values, message)
    restated.given = values
    return restated


def _carrier(value: Any, arg: str, bound: inspect.BoundArguments) -> tuple | None:
    """(score, path, argument, its value) of the recipe argument that carried ``value``, if one
    did.

    The same object beats an equal one; the transform's own name breaks ties.
    """
    scored = []
    for top, given in _arguments(bound):
        items = [(top, given)]
        if isinstance(given, (tuple, list)):
            items += [(f"{top}[{i}]", item) for i, item in enumerate(given)]
        for path, item in items:
            score = 2 if item is value else 0 if _equal(item, value) else None
            if score is not None:
                scored.append((score + (path == arg), path, top, given))
    if not scored:
        return None
    best = max(s[0] for s in scored)
    winners = [s for s in scored if s[0] == best]
    return winners[0] if len(winners) == 1 else None


def _arguments(bound: inspect.BoundArguments):
    """(name, value) of every argument the caller could have written."""
    for name, value in bound.arguments.items():
        kind = bound.signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            yield from value.items()
        elif kind is not inspect.Parameter.VAR_POSITIONAL:
            yield name, value


def _equal(a: Any, b: Any) -> bool:
    """Equal values of one kind: numbers (any precision), strings, gradtx objects."""
    if isinstance(a, (bool, str, type(None))) or isinstance(b, (bool, str, type(None))):
        return type(a) is type(b) and a == b
    if isinstance(a, Struct) or isinstance(b, Struct):
        return type(a) is type(b) and a == b
    numbers = (int, float, np.number, np.ndarray, jax.Array)
    if not all(isinstance(x, numbers) and not isinstance(x, jax.core.Tracer) for x in (a, b)):
        return False
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


@dataclasses.dataclass(frozen=True)
class _FrozenTree:
    """A pytree of Python values kept static and hashable (a mask, labels).

    Only ever a static field, so not a pytree itself; it prints as the tree it holds.
    """

    leaves: tuple
    treedef: Any

    def unfreeze(self) -> Any:
        return jax.tree.unflatten(self.treedef, self.leaves)

    def __repr__(self) -> str:
        return repr(self.unfreeze())


def _is_function(tree: Any) -> bool:
    """A mask (or labels) given as a function: a callable with no value among its leaves.

    A callable pytree with array or boolean leaves (an equinox module with a
    ``__call__``) is a tree of values, not a function, as in optax; a predicate
    from ``gradtx.masks`` (a pytree without leaves) is a function.
    """
    if callable(tree):
        return all(map(callable, jax.tree.leaves(tree)))
    leaves = jax.tree.leaves(tree)
    return bool(leaves) and all(map(callable, leaves))


def freeze_tree(tree: Any) -> Any:
    """A function stays as it is; a pytree of values becomes hashable (scalars as Python values)."""
    if tree is None or _is_function(tree):
        return tree
    leaves, treedef = jax.tree.flatten(tree)
    plain = [x.item() if hasattr(x, "item") and jnp.ndim(x) == 0 else x for x in leaves]
    return _FrozenTree(leaves=tuple(plain), treedef=treedef)


def resolve_tree(frozen: Any, params: Any) -> Any:
    """The mask or label tree for ``params``: call the function or unfreeze.

    For a :class:`gradtx.FlatParams`, one label per buffer from the labels of
    its leaves (ValueError when a buffer's leaves differ; see
    ``FlatParams.segment_labels``), unless the labels are given per buffer.
    """
    tree = frozen.unfreeze() if isinstance(frozen, _FrozenTree) else frozen
    if getattr(type(params), "gradtx_flat", False) and type(tree) is not type(params):
        return params.segment_labels(tree)
    return tree if isinstance(frozen, _FrozenTree) else frozen(params)


def labels_fit_buffers(frozen: Any, flat: Any) -> bool:
    """Whether a mask or labels are uniform over each buffer of a FlatParams."""
    try:
        resolve_tree(frozen, flat)
    except ValueError:
        return False
    return True


class MaskedNode(NamedTuple):
    """Stands in for a leaf that a mask excludes: an empty subtree."""


class MaskedState(NamedTuple):
    inner_state: Any


def _mask_tree(tree: Any, mask_tree: Any) -> Any:
    return jax.tree.map(lambda m, x: x if m else MaskedNode(), mask_tree, tree)


def _fill(part: Any, whole: Any, members: int | None = None) -> Any:
    """``part`` (masked-out leaves as MaskedNode) completed with ``whole``'s leaves, broadcast
    along a leading population axis of size ``members`` when given."""

    def pick(mine, theirs):
        if not isinstance(mine, MaskedNode):
            return mine
        return theirs if members is None else jnp.broadcast_to(theirs, (members, *theirs.shape))

    return jax.tree.map(pick, part, whole, is_leaf=lambda x: isinstance(x, MaskedNode))


def _loss_of_whole_params(extra_args: dict, params: Any) -> dict:
    """The loss functions of the whole params (value_fn=, population_value_fn=), called by a
    masked transform (a gradient-free member of a partition) on its own leaves: the other
    leaves are filled in from ``params``."""
    extra = dict(extra_args)
    if extra.get("value_fn") is not None:
        value_fn = extra["value_fn"]

        def whole_value_fn(part, *args, **kwargs):
            return value_fn(_fill(part, params), *args, **kwargs)

        # The user's signature: a member that passes on only the keyword arguments the loss
        # takes (line searches, L-BFGS) reads it here.
        # (None to read: every argument goes through.)
        with contextlib.suppress(TypeError, ValueError):
            whole_value_fn.__signature__ = inspect.signature(value_fn)
        extra["value_fn"] = whole_value_fn
    if extra.get("population_value_fn") is not None:
        population_fn = extra["population_value_fn"]

        def population_value_fn(part):
            members = jax.tree.leaves(part)[0].shape[0]
            return population_fn(_fill(part, params, members))

        extra["population_value_fn"] = population_value_fn
    return extra


class Masked(Transform):
    """Applies ``inner`` only where ``mask`` is true; other updates pass unchanged.

    ``mask`` is a tree of booleans (a prefix of the params' structure) or a
    function of the params that returns one; it is static. The inner state holds
    memory only for the masked-in leaves.
    """

    inner: Transform
    mask: Any = static()

    def __post_init__(self):
        object.__setattr__(self, "inner", as_transform(self.inner))
        object.__setattr__(self, "mask", freeze_tree(self.mask))

    def needs_leaves(self, flat: Any) -> bool:
        return not labels_fit_buffers(self.mask, flat)

    def init(self, params):
        mask_tree = resolve_tree(self.mask, params)
        return MaskedState(self.inner.init(_mask_tree(params, mask_tree)))

    def update(self, updates, state, params=None, **extra_args):
        mask_tree = resolve_tree(self.mask, updates)
        masked_params = None if params is None else _mask_tree(params, mask_tree)
        if params is not None:
            extra_args = _loss_of_whole_params(extra_args, params)
        new, inner_state = self.inner.update(
            _mask_tree(updates, mask_tree), state.inner_state, masked_params, **extra_args
        )
        merged = jax.tree.map(
            lambda m, n, u: n if m else u,
            mask_tree,
            new,
            updates,
            is_leaf=lambda x: isinstance(x, MaskedNode),
        )
        return merged, MaskedState(inner_state)


def masked(inner: Any, mask: Any) -> Masked:
    """Applies ``inner`` where ``mask`` is true, as ``optax.masked``.

    The other updates pass unchanged, and the inner state holds memory only
    for the masked-in leaves.

    Args:
        inner: the transform to apply (a gradtx or an optax one).
        mask: a tree of booleans with the params' structure (or a prefix of
            it), or a function of the params returning one; kept static, so a
            named function rather than a fresh lambda.

    >>> import gradtx
    >>> tx = gradtx.masked(gradtx.scale(0.0), {"w": True, "b": False})
    >>> float(tx.update({"w": 1.0, "b": 1.0}, tx.init({"w": 0.0, "b": 0.0}))[0]["b"])
    1.0
    """
    return Masked(inner=inner, mask=mask)
