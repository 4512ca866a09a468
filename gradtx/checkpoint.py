"""Checkpoint and resume: params, optimizer state and step on disk with Orbax.

A training loop that survives being killed::

    ckpt = Checkpointer("/runs/7", max_to_keep=3)
    if ckpt.latest_step() is None:
        done, opt_state = 0, tx.init(params)
    else:
        done, params, opt_state, _ = ckpt.restore(tx, params)
    for step in range(done + 1, num_steps + 1):
        params, opt_state = train_step(tx, params, opt_state, batch(step))
        if step % 1000 == 0:
            ckpt.save(step, params, opt_state, tx)
    ckpt.close()

A checkpoint also records how the optimizer that made the state was built, so
restoring it into a differently built one (another optimizer, another static
option such as ``nesterov`` or ``mu_dtype``, other parameters) raises a
ValueError that names the first difference. Numeric hyperparameters and
schedules are not part of that description: resuming with a new learning rate
is allowed. Needs ``orbax-checkpoint`` (``pip install gradtx[checkpoint]``),
imported only when a :class:`Checkpointer` is made.
"""

from __future__ import annotations

import dataclasses
import json
import operator
import os
import shutil
from typing import Any, NamedTuple

import jax
from jax.sharding import Sharding, SingleDeviceSharding
import numpy as np

from ._base import _dtype_name, Schedule, Struct
from ._flat import as_trees, like_flat
from ._sharding import StateSharding
from ._state import _children

_FORMAT = 1
_TRASH = "deleting"  # where Orbax moves a step before deleting it
_DESCRIPTION = "gradtx/metadata"  # JsonSave's file in the gradtx item
_SHOWN = 12  # entries of a structure an error message lists


class Restored(NamedTuple):
    """What :meth:`Checkpointer.restore` returns."""

    step: int
    params: Any
    opt_state: Any
    extra: Any


class Checkpointer:
    """Saves and restores ``(step, params, opt_state)``; wraps ``orbax.checkpoint.CheckpointManager``.

    Each step is one directory under ``directory``, written to a temporary name
    and renamed when complete, so a process killed mid-save leaves the previous
    checkpoints intact. The newest ``max_to_keep`` are kept (None keeps all);
    an old one is renamed into ``directory/deleting`` before it is removed, so
    a process killed mid-delete leaves no half-deleted step behind. Opening a
    directory removes what killed processes left: temporary directories, the
    ``deleting`` directory and any step directory without Orbax's commit marker
    or either item (``train_state``, ``gradtx``). ``save`` returns once the
    arrays are copied and writes in the background; ``restore``, ``wait``,
    ``close`` and leaving a ``with`` block wait for it.

    Steps increase: ``save`` at or below the directory's latest step raises
    ValueError (Orbax would skip it). To go back, after restoring an earlier
    step or in a new run, pass ``overwrite=True``: saving step k then deletes
    every checkpoint at steps >= k (the abandoned future of the rewound run)
    and writes k. A save that Orbax declines for any other reason raises too.

    Arrays come back with the dtypes and shapes they were saved with, PRNG key
    arrays as keys, placed by ``restore``'s ``shardings``: by default whole on
    the default device, whatever the sharding and device count they were saved
    with (across processes, where they were saved). ``extra`` is any JSON value (an epoch, a data loader's position)
    stored beside them.

    >>> import tempfile
    >>> import jax.numpy as jnp
    >>> import gradtx
    >>> from gradtx.checkpoint import Checkpointer
    >>> params = {"w": jnp.zeros(3)}
    >>> tx = gradtx.adam(1e-3, mu_dtype=jnp.bfloat16)
    >>> with tempfile.TemporaryDirectory() as directory:
    ...     with Checkpointer(directory, max_to_keep=2) as ckpt:
    ...         ckpt.save(100, params, tx.init(params), tx, extra={"epoch": 3})
    ...     with Checkpointer(directory) as ckpt:  # later, in a new process
    ...         step, params, opt_state, extra = ckpt.restore(tx, params)
    ...         ckpt.restore(gradtx.adam(1e-3), params)  # mu_dtype differs
    Traceback (most recent call last):
    ValueError: gradtx.checkpoint: step 100 ... was saved by a differently built optimizer: at tx.transforms[0].mu_dtype: bfloat16 in the checkpoint, None in the given optimizer...
    >>> step, opt_state[0].mu["w"].dtype, extra
    (100, dtype(bfloat16), {'epoch': 3})
    """  # noqa: E501

    def __init__(self, directory: str | os.PathLike, *, max_to_keep: int | None = 3) -> None:
        try:
            import orbax.checkpoint as ocp
        except ImportError as error:
            raise ImportError(
                "gradtx.checkpoint needs orbax-checkpoint: pip install 'gradtx[checkpoint]'"
            ) from error
        if max_to_keep is not None and (not isinstance(max_to_keep, int) or max_to_keep < 1):
            raise ValueError(
                f"Checkpointer(max_to_keep={max_to_keep!r}): max_to_keep must be an int >= 1 "
                "or None"
            )
        self._ocp = ocp
        directory = os.fspath(directory)
        # Orbax needs an absolute path; leave URLs (gs://...) as they are.
        self.directory = directory if "://" in directory else os.path.abspath(directory)
        # Orbax deletes a step file by file; renaming it into a subdirectory first
        # makes the delete atomic. Orbax ignores this option on gs://, where a
        # killed delete can still leave an incomplete step for the next opening.
        local = "://" not in self.directory
        self._trash = os.path.join(self.directory, _TRASH) if local else None
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            create=True,
            cleanup_tmp_directories=True,
            todelete_subdir=_TRASH if local else None,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        for step in self._manager.all_steps():
            if not self._is_complete(step):  # left by a delete that was killed
                self._manager.delete(step)
        self._empty_trash()

    def save(
        self,
        step: int,
        params: Any,
        opt_state: Any,
        tx: Any,
        *,
        extra: Any = None,
        overwrite: bool = False,
    ) -> None:
        """Writes ``params``, ``opt_state`` (from ``tx.init(params)``) and ``extra`` as ``step``.

        ``step`` must exceed every step in the directory, unless ``overwrite``
        is True: then the checkpoints at steps >= ``step`` are deleted first.
        """
        try:
            index = operator.index(step)  # ints, NumPy and JAX integer scalars
        except TypeError:
            index = -1
        if index < 0:
            raise ValueError(f"gradtx.checkpoint.save(step={step!r}): step must be an int >= 0")
        try:
            json.dumps(extra)
        except TypeError as error:
            raise ValueError(f"gradtx.checkpoint.save: extra must be JSON: {error}") from None
        # FlatParams (in the params and the state) are stored as their trees: a flat run and
        # a per-leaf run read each other's checkpoints.
        expected = _leaves(jax.eval_shape(lambda p: as_trees(tx.init(p)), params))
        params, opt_state = as_trees(params), as_trees(opt_state)
        _check(
            "gradtx.checkpoint.save: opt_state was not made by tx.init(params)",
            "opt_state",
            ("tx.init(params)", expected),
            ("opt_state", _leaves(opt_state)),
        )
        description = {
            "format": _FORMAT,
            "optimizer": repr(tx),
            "tx": _describe_tx(tx),
            "params": _leaves(params),
            "opt_state": expected,
            "extra": extra,
        }
        self.wait()  # the previous save may still be adding its step or pruning old ones
        steps = self.all_steps()
        later = [saved for saved in steps if saved >= index]
        if later and not overwrite:
            raise ValueError(
                f"gradtx.checkpoint.save(step={index}): {self.directory} already holds step "
                f"{steps[-1]}, and steps must increase. To go back (after restoring an earlier "
                f"step, or in a new run), pass overwrite=True: it deletes steps {later} and "
                f"saves step {index}"
            )
        for saved in later:
            self._manager.delete(saved)
        self._empty_trash()
        ocp = self._ocp
        written = self._manager.save(
            index,
            args=ocp.args.Composite(
                train_state=ocp.args.StandardSave({"params": params, "opt_state": opt_state}),
                gradtx=ocp.args.JsonSave(description),
            ),
        )
        if not written:
            raise RuntimeError(
                f"gradtx.checkpoint.save(step={index}): Orbax's CheckpointManager declined to "
                f"save it in {self.directory} (steps there: {self.all_steps()})"
            )

    def restore(
        self, tx: Any, params_like: Any, step: int | None = None, *, shardings: Any = None
    ) -> Restored:
        """The checkpoint at ``step`` (default: the latest) for ``tx`` and params shaped like these.

        ``params_like`` holds arrays or ``jax.ShapeDtypeStruct`` leaves (their
        own shardings are not used). ``shardings`` says where the arrays go,
        whatever mesh or device count saved them (each process reads the parts
        its devices hold):

        - None: every array whole on the default device (``jax.default_device``,
          else the first device); across processes (``jax.distributed``), where
          it was saved, which needs the devices it was saved on;
        - a ``jax.sharding.Sharding``: every array so;
        - a :class:`gradtx.StateSharding` (``gradtx.shard_state(tx, params,
          mesh)``): the params by its ``params``, the state by its ``state``;
        - a pair ``(params_shardings, opt_state_shardings)``, each a tree of
          Shardings like the params or ``tx.init(params)`` or a prefix of it
          (a Sharding covers its whole subtree, as in ``jax.jit``).

        Raises FileNotFoundError when there is no such step, ValueError when
        ``tx`` is built differently from the optimizer that saved it, the
        params' tree, shapes or dtypes differ, or ``shardings``' tree or specs
        do not fit them (naming the path), TypeError when ``shardings`` holds
        something other than a Sharding. Orbax, left without shardings, would
        reuse the saved ones, and fail on another topology.
        """
        ocp = self._ocp
        self.wait()
        steps = self.all_steps()
        if step is None and steps:
            step = steps[-1]
        if step not in steps:
            raise FileNotFoundError(
                f"gradtx.checkpoint: no checkpoint for step {step} in {self.directory} "
                f"(steps there: {steps})"
            )
        saved = self._manager.restore(
            step, args=ocp.args.Composite(gradtx=ocp.args.JsonRestore())
        ).gradtx
        flat_params_like = jax.eval_shape(lambda tree: tree, params_like)
        flat_state_like = jax.eval_shape(tx.init, flat_params_like)
        params_like = jax.eval_shape(as_trees, flat_params_like)
        state_like = jax.eval_shape(as_trees, flat_state_like)
        where = f"gradtx.checkpoint: step {step} in {self.directory}"
        if saved.get("format") != _FORMAT:
            raise ValueError(f"{where} has format {saved.get('format')!r}; expected {_FORMAT}")
        _check(
            f"{where} was saved by a differently built optimizer",
            "tx",
            ("the checkpoint", saved["tx"]),
            ("the given optimizer", _describe_tx(tx)),
            f"\nsaved optimizer: {saved['optimizer']}\ngiven optimizer: {tx!r}",
        )
        _check(
            f"{where} does not fit the given params",
            "params",
            ("the checkpoint", saved["params"]),
            ("the given params", _leaves(params_like)),
        )
        _check(
            f"{where} does not fit the given optimizer's state",
            "opt_state",
            ("the checkpoint", saved["opt_state"]),
            ("tx.init(params)", _leaves(state_like)),
        )
        params_shardings, state_shardings = _parts(shardings)
        target = {
            "params": _placed(params_like, params_shardings, "params"),
            "opt_state": _placed(state_like, state_shardings, "opt_state"),
        }
        trees = self._manager.restore(
            step, args=ocp.args.Composite(train_state=ocp.args.StandardRestore(target))
        ).train_state
        return Restored(
            step,
            like_flat(trees["params"], flat_params_like),
            like_flat(trees["opt_state"], flat_state_like),
            saved["extra"],
        )

    def latest_step(self) -> int | None:
        """The newest checkpoint's step (counting one ``save`` is writing), or None if none."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """The steps of every complete checkpoint, oldest first (and one ``save`` is writing)."""
        return sorted(self._manager.all_steps())

    def wait(self) -> None:
        """Blocks until the last ``save`` is on disk and the checkpoints it replaced are gone."""
        self._manager.wait_until_finished()
        self._empty_trash()

    def close(self) -> None:
        """Waits for pending saves and releases Orbax's resources."""
        self.wait()
        self._manager.close()

    def _is_complete(self, step: int) -> bool:
        """Whether a step's directory holds Orbax's commit marker and both items.

        Orbax writes the marker before it renames a finished checkpoint into
        place; a delete killed halfway leaves a directory without some of these.
        """
        path = self._manager.directory / str(step)
        return all(
            (path / name).exists() for name in ("commit_success.txt", "train_state", _DESCRIPTION)
        )

    def _empty_trash(self) -> None:
        # Whatever is left there was being deleted: failing to remove it now is
        # retried by the next wait, and must not fail a save.
        if self._trash is not None:
            shutil.rmtree(self._trash, ignore_errors=True)

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Checkpointer({self.directory!r})"


# -- shardings: where restored arrays go ----------------------------------------


def _parts(shardings: Any) -> tuple[Any, Any]:
    """``restore``'s ``shardings`` as (the params', the state's), each a tree prefix."""
    if shardings is None and jax.process_count() > 1:
        # A default device is one process's own; where the checkpoint was saved is
        # the placement all processes share (Orbax's default, on the same devices).
        return None, None
    if shardings is None:
        device = jax.config.jax_default_device  # a Device, a platform name or None
        if not isinstance(device, jax.Device):
            device = jax.local_devices(backend=device)[0]
        shardings = SingleDeviceSharding(device)
    if isinstance(shardings, Sharding):
        return shardings, shardings
    if isinstance(shardings, StateSharding):
        return shardings.params, shardings.state
    if isinstance(shardings, tuple) and len(shardings) == 2:
        return shardings
    raise TypeError(
        f"gradtx.checkpoint.restore(shardings={_brief(shardings)}): expected None, a "
        "jax.sharding.Sharding, a gradtx.StateSharding or a pair (params_shardings, "
        "opt_state_shardings)"
    )


def _placed(like: Any, shardings: Any, part: str) -> Any:
    """``like``'s leaves as ``jax.ShapeDtypeStruct`` targets placed by ``shardings``, a prefix.

    With ``shardings`` None, ``like`` as it is: Orbax then places each array as it was saved.
    """
    if shardings is None:
        return like
    is_sharding = lambda x: isinstance(x, Sharding)  # noqa: E731
    where = f"gradtx.checkpoint.restore(shardings=...): at {part}"
    flat, prefix = jax.tree_util.tree_flatten_with_path(shardings, is_leaf=is_sharding)
    for path, sharding in flat:
        if not is_sharding(sharding):
            raise TypeError(
                f"{where}{jax.tree_util.keystr(path)}: {_brief(sharding)} is not a "
                "jax.sharding.Sharding (a PartitionSpec needs its mesh: NamedSharding(mesh, spec))"
            )
    try:
        subtrees = prefix.flatten_up_to(like)
    except (ValueError, TypeError):
        path, theirs, ours = _first_node_difference(shardings, like) or (
            "",
            str(prefix),
            str(jax.tree.structure(like)),
        )
        raise ValueError(
            f"{where}{path}: the shardings have {theirs}, {part} has {ours}; the shardings "
            f"must be a tree like {part} or a prefix of it"
        ) from None

    def target(path: str, leaf: Any, sharding: Sharding) -> jax.ShapeDtypeStruct:
        try:
            sharding.check_compatible_aval(leaf.shape)
            sharding.shard_shape(leaf.shape)
        except ValueError as error:
            raise ValueError(f"{where}{path}: {_leaf_text(leaf)}: {error}") from None
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)

    placed = [
        jax.tree_util.tree_map_with_path(
            lambda path, leaf, head=head, sharding=sharding: target(
                jax.tree_util.keystr((*head, *path)), leaf, sharding
            ),
            subtree,
        )
        for (head, sharding), subtree in zip(flat, subtrees)
    ]
    return prefix.unflatten(placed)


def _first_node_difference(prefix: Any, tree: Any, path: tuple = ()) -> tuple | None:
    """The first path where ``prefix`` (Sharding leaves) stops being a prefix of ``tree``.

    Returns the path and the one-level structure of each there.
    """
    if isinstance(prefix, Sharding):
        return None
    ours = jax.tree_util.tree_flatten_with_path(prefix, is_leaf=lambda x: x is not prefix)
    theirs = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: x is not tree)
    if ours[1] != theirs[1]:
        return jax.tree_util.keystr(path), str(ours[1]), str(theirs[1])
    for (key, child), (_, other) in zip(ours[0], theirs[0]):
        found = _first_node_difference(child, other, (*path, *key))
        if found:
            return found
    return None


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{type(value).__name__}(...)"


# -- descriptions: JSON lists of [path, text], compared entry by entry -----------


def _leaves(tree: Any) -> list[list[str]]:
    """``[path, "dtype[shape]"]`` for every leaf, None included (as "None")."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: x is None)
    return [[jax.tree_util.keystr(path), _leaf_text(leaf)] for path, leaf in flat]


def _leaf_text(leaf: Any) -> str:
    if leaf is None:
        return "None"
    dtype = leaf.dtype if hasattr(leaf, "dtype") else jax.numpy.result_type(leaf)
    return f"{dtype}{list(np.shape(leaf))}"


def _describe_tx(tx: Any) -> list[list[str]]:
    """Every part of ``tx`` that fixes its state and its maths, by path.

    Classes, flags, dtypes and functions are recorded; numbers and schedules
    (the values a step reads, free to change between runs) are "hyperparameter".
    """
    out: list[list[str]] = []

    def visit(node: Any, path: str, static: bool) -> None:
        if isinstance(node, Struct) and not isinstance(node, Schedule):
            out.append([path, type(node).__name__])
            for field in dataclasses.fields(node):
                is_static = static or bool(field.metadata.get("static"))
                visit(getattr(node, field.name), f"{path}.{field.name}", is_static)
        elif isinstance(node, (tuple, list, dict)):
            out.append([path, f"{type(node).__name__}[{len(node)}]"])
            for key, child in _children(node):
                visit(child, f"{path}[{key!r}]", static)
        elif node is None:
            out.append([path, "None"])
        elif not static:
            out.append([path, "hyperparameter"])
        else:
            out.append([path, _static_text(node)])

    # An optax transform (closures in a named tuple) is compared by its functions' names.
    visit(tx, "", not isinstance(tx, Struct))
    return out


def _static_text(value: Any) -> str:
    if isinstance(value, str) and isinstance(getattr(jax.numpy, value, None), type):
        value = getattr(jax.numpy, value)  # a dtype given by name: "bfloat16"
    if isinstance(value, type) and value in (bool, int, float, complex):
        value = np.dtype(value)  # a Python type NumPy reads as a dtype: float is float64
    if (name := _dtype_name(value)) is not None:
        return name
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{value.__module__}.{value.__qualname__}"  # repr would hold an address
    return repr(value)


def _first_difference(saved: list, given: list) -> tuple[str, str, str] | None:
    saved_map, given_map = dict(map(tuple, saved)), dict(map(tuple, given))
    for path in [*saved_map, *(p for p in given_map if p not in saved_map)]:
        if saved_map.get(path) != given_map.get(path):
            return path, saved_map.get(path, "nothing"), given_map.get(path, "nothing")
    return None


def _show(entries: list) -> str:
    lines = [f"{path}: {text}" for path, text in entries[:_SHOWN]]
    if len(entries) > _SHOWN:
        lines.append(f"... ({len(entries) - _SHOWN} more)")
    return "{" + ", ".join(lines) + "}"


def _check(head: str, prefix: str, saved: tuple, given: tuple, details: str = "") -> None:
    """Raises a ValueError naming the first path where two (label, description) pairs differ."""
    (saved_label, saved_entries), (given_label, given_entries) = saved, given
    difference = _first_difference(saved_entries, given_entries)
    if difference is None:
        return
    path, was, is_ = difference
    details = details or (
        f"\n{saved_label}: {_show(saved_entries)}\n{given_label}: {_show(given_entries)}"
    )
    raise ValueError(
        f"{head}: at {prefix}{path}: {was} in {saved_label}, {is_} in {given_label}.{details}"
    )
