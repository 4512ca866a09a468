"""Wrappers for real training loops: parameter groups, accumulation, non-finite steps, lookahead."""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._base import check_choice, check_range, fail, FrozenDict, static, Transform
from ._combine import (
    as_transform,
    EmptyState,
    freeze_tree,
    labels_fit_buffers,
    Masked,
    masked,
    resolve_tree,
)
from ._flat import as_trees, like_flat
from ._scale import value_at
from ._schedules import _as_schedule
from ._state import tree_get_all_with_path
from ._tree import (
    compute_dtype,
    default_float,
    safe_increment,
    tree_zeros_like,
    up,
    zero_count,
)


class SetToZero(Transform):
    """Replaces every update by zero."""

    elementwise = True
    integer_leaves = "pass"  # no arithmetic: how integer leaves are carried (partition, freeze)

    def init(self, params):
        del params
        return EmptyState()

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        return jax.tree.map(jnp.zeros_like, updates), state


def set_to_zero() -> SetToZero:
    """Zero updates, as ``optax.set_to_zero``: ``u <- 0``.

    In :func:`partition` it freezes a parameter group and keeps no state for it.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.set_to_zero()
    >>> tx.update({"w": jnp.array([1.0, -2.0])}, tx.init({"w": jnp.zeros(2)}))[0]["w"].tolist()
    [0.0, 0.0]
    """
    return SetToZero()


def freeze(mask: Any) -> Masked:
    """Zero updates where ``mask`` is true, as ``optax.freeze``.

    ``chain(adam, freeze(mask))`` still keeps Adam's moments for the frozen
    leaves; ``partition({"train": adam, "frozen": set_to_zero()}, labels)``
    keeps none.

    Args:
        mask: a tree of booleans with the params' structure or a prefix of it
            (True: frozen), or a function of the params returning one.

    >>> import gradtx
    >>> tx = gradtx.chain(gradtx.sgd(0.1), gradtx.freeze({"w": False, "b": True}))
    >>> p = {"w": 1.0, "b": 1.0}
    >>> u, _ = tx.update({"w": 2.0, "b": 2.0}, tx.init(p), p)
    >>> {k: round(float(v), 4) for k, v in gradtx.apply_updates(p, u).items()}
    {'b': 1.0, 'w': 0.8}
    """
    return masked(set_to_zero(), mask)


class PartitionState(NamedTuple):
    inner_states: dict


class Partition(Transform):
    """A different transform for each group of parameters (labels -> transforms)."""

    transforms: dict
    param_labels: Any = static()

    def __post_init__(self):
        transforms = FrozenDict({k: as_transform(t) for k, t in dict(self.transforms).items()})
        object.__setattr__(self, "transforms", transforms)
        object.__setattr__(self, "param_labels", freeze_tree(self.param_labels))

    def needs_leaves(self, flat: Any) -> bool:
        return not labels_fit_buffers(self.param_labels, flat)

    def _groups(self, tree: Any) -> dict[Any, Masked]:
        labels = resolve_tree(self.param_labels, tree)
        unknown = set(jax.tree.leaves(labels)) - set(self.transforms)
        if unknown:
            raise ValueError(
                f"partition: labels {sorted(map(str, unknown))} have no transform; "
                f"transforms are given for {sorted(map(str, self.transforms))}"
            )
        return {
            label: Masked(inner=tx, mask=jax.tree.map(lambda x, label=label: x == label, labels))
            for label, tx in self.transforms.items()
        }

    def init(self, params):
        return PartitionState({k: g.init(params) for k, g in self._groups(params).items()})

    def update(self, updates, state, params=None, **extra_args):
        new_states = {}
        for label, group in self._groups(updates).items():
            updates, new_states[label] = group.update(
                updates, state.inner_states[label], params, **extra_args
            )
        return updates, PartitionState(new_states)


def partition(transforms: dict, param_labels: Any) -> Partition:
    """Parameter groups: ``transforms[label]`` for the leaves labelled ``label``.

    As ``optax.partition``: ``param_labels`` is a tree of labels with the
    params' structure, or a function of the params returning one. Each group's
    state holds memory only for its own leaves.

    Args:
        transforms: a dict from label to transform (a gradtx or an optax one).
        param_labels: a tree of labels with the params' structure, or a
            function of the params returning one; every label must be a key
            of ``transforms``.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.partition(
    ...     {"decay": gradtx.adamw(1e-3), "frozen": gradtx.set_to_zero()},
    ...     {"w": "decay", "b": "frozen"},
    ... )
    >>> params = {"w": jnp.ones(2), "b": jnp.ones(2)}
    >>> tx.update(params, tx.init(params), params)[0]["b"]
    Array([0., 0.], dtype=float32)
    """
    return Partition(transforms=transforms, param_labels=param_labels)


class MultiStepsState(NamedTuple):
    """``acc_grads`` sums the micro-steps' gradients; ``updated`` is True after an emitting call.

    ``skip_state`` is the second value ``should_skip_update_fn`` returned at the
    last call (optax's monitoring information), ``()`` without one.
    """

    mini_step: jax.Array
    gradient_step: jax.Array
    inner_state: Any
    acc_grads: Any
    updated: jax.Array
    skip_state: Any = ()


class MultiSteps(Transform, kw_only=False):
    """Gradient accumulation over ``every_k_schedule`` micro-steps, as ``optax.MultiSteps``.

    Update rule, with k = every_k_schedule(gradient_step)::

        acc <- acc + g                      (unless should_skip_update_fn says skip)
        after k accumulated micro-steps:    u <- opt(acc / k)  (acc without use_grad_mean)
                                            acc <- 0
        otherwise:                          u <- 0

    Arguments, positional as optax's: ``opt`` the wrapped transform;
    ``every_k_schedule`` k >= 1, an int or a schedule of the gradient step;
    ``use_grad_mean`` averages (True) or sums the micro-steps' gradients;
    ``should_skip_update_fn(updates, gradient_step, params) -> (skip, aux)``
    drops a micro-step as if it had not happened (no accumulation, counters
    unchanged; ``aux`` is kept as ``skip_state``), e.g. ``optax.skip_not_finite``;
    a named function, static (a fresh lambda retraces); ``accumulator_dtype``
    the dtype of the accumulator, by default each gradient's compute dtype.

    Differences from optax: with float64 gradients the default accumulator is
    float64 (optax: float32); ``has_updated`` reads a flag in the state, so it
    is False after a skipped micro-step (optax: True when that follows an update).
    """

    elementwise = True
    integer_leaves = "refuse"  # it sums the gradients

    opt: Transform
    every_k_schedule: Any = 1
    use_grad_mean: bool = static(True)
    should_skip_update_fn: Any = static(None)
    accumulator_dtype: Any = static(None)

    def __post_init__(self):
        object.__setattr__(self, "opt", as_transform(self.opt))
        check_range(self, "every_k_schedule", low=1, integer=True)
        if self.accumulator_dtype is not None:
            object.__setattr__(self, "accumulator_dtype", jnp.dtype(self.accumulator_dtype))

    def _accumulator_dtype(self, grad: Any) -> Any:
        return self.accumulator_dtype or compute_dtype(grad)

    def _should_skip(self, updates: Any, gradient_step: jax.Array, params: Any) -> tuple:
        if self.should_skip_update_fn is None:
            return jnp.asarray(False), ()
        skip, aux = self.should_skip_update_fn(updates, gradient_step, params)
        if (jnp.shape(skip), jnp.result_type(skip)) != ((), jnp.bool_):
            fail(
                self,
                "should_skip_update_fn",
                f"must return (a boolean scalar, aux); its first value has dtype "
                f"{jnp.result_type(skip)} and shape {jnp.shape(skip)}",
            )
        return skip, aux

    def init(self, params):
        accumulator = jax.tree.map(lambda p: tree_zeros_like(p, self._accumulator_dtype(p)), params)
        _, skip_state = self._should_skip(tree_zeros_like(params), zero_count(), params)
        return MultiStepsState(
            zero_count(),
            zero_count(),
            self.opt.init(params),
            accumulator,
            jnp.asarray(False),
            skip_state,
        )

    def update(self, updates, state, params=None, **extra_args):
        skip, skip_state = self._should_skip(updates, state.gradient_step, params)
        k = value_at(self.every_k_schedule, state.gradient_step).astype(jnp.int32)
        acc = jax.tree.map(
            lambda a, g: jnp.where(skip, a, (up(a) + up(g)).astype(a.dtype)),
            state.acc_grads,
            updates,
        )
        mini_step = jnp.where(skip, state.mini_step, safe_increment(state.mini_step))
        emit = ~skip & (mini_step >= k)

        def apply():
            mean_or_sum = (lambda a: up(a) / k) if self.use_grad_mean else up
            grads = jax.tree.map(lambda a, g: mean_or_sum(a).astype(g.dtype), acc, updates)
            new, inner = self.opt.update(grads, state.inner_state, params, **extra_args)
            return new, inner, tree_zeros_like(acc)

        def wait():
            return tree_zeros_like(updates), state.inner_state, acc

        new, inner, acc = jax.lax.cond(emit, apply, wait)
        return new, MultiStepsState(
            jnp.where(emit, 0, mini_step).astype(jnp.int32),
            jnp.where(emit, safe_increment(state.gradient_step), state.gradient_step),
            inner,
            acc,
            emit,
            skip_state,
        )

    def gradient_transformation(self) -> MultiSteps:
        """optax's MultiSteps is turned into a transform this way; this one already is one."""
        return self

    @staticmethod
    def has_updated(state: MultiStepsState) -> jax.Array:
        """Whether the last ``update`` call applied the inner optimizer (ended a group)."""
        return state.updated


class ApplyIfFiniteState(NamedTuple):
    """Skip counters: consecutive (``notfinite_count``) and overall (``total_notfinite``).

    ``gave_up`` is set when the consecutive count reaches the limit and stays
    set (until the state is re-initialised); ``gave_up_after`` keeps that
    count, 0 while it has not given up.
    """

    notfinite_count: jax.Array
    last_finite: jax.Array
    total_notfinite: jax.Array
    gave_up: jax.Array
    gave_up_after: jax.Array
    inner_state: Any


def _all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.asarray(leaves)) if leaves else jnp.asarray(True)


class ApplyIfFinite(Transform):
    """Skips a step (zero update, unchanged inner state) when anything is NaN or Inf."""

    elementwise = True

    inner: Transform
    max_consecutive_errors: Any = None

    def __post_init__(self):
        object.__setattr__(self, "inner", as_transform(self.inner))
        check_range(self, "max_consecutive_errors", low=1, integer=True)

    def init(self, params):
        # Each counter a buffer of its own, so that the state can be donated.
        return ApplyIfFiniteState(
            zero_count(),
            jnp.asarray(True),
            zero_count(),
            jnp.asarray(False),
            zero_count(),
            self.inner.init(params),
        )

    def update(self, updates, state, params=None, **extra_args):
        new, inner = self.inner.update(updates, state.inner_state, params, **extra_args)
        finite = _all_finite(updates) & _all_finite(new)
        skipped = (jax.tree.map(jnp.zeros_like, new), state.inner_state)
        new, inner = jax.lax.cond(finite, lambda: (new, inner), lambda: skipped)
        streak = jnp.where(finite, 0, safe_increment(state.notfinite_count))
        limit = self.max_consecutive_errors
        gives_up = jnp.asarray(False) if limit is None else ~state.gave_up & (streak >= limit)
        return new, ApplyIfFiniteState(
            streak.astype(jnp.int32),
            finite,
            jnp.where(finite, state.total_notfinite, safe_increment(state.total_notfinite)),
            state.gave_up | gives_up,
            jnp.where(gives_up, streak, state.gave_up_after).astype(jnp.int32),
            inner,
        )


def apply_if_finite(inner: Any, max_consecutive_errors: int | None = None) -> ApplyIfFinite:
    """Applies ``inner`` only on steps whose gradients (and inner updates) are all finite.

    A step with a NaN or Inf leaves the parameters (zero update) and the inner
    state exactly unchanged, and counts in the state: ``notfinite_count``
    (consecutive), ``total_notfinite``. Unlike optax, it never applies a
    non-finite update: after ``max_consecutive_errors`` consecutive skips it
    sets ``gave_up``, and :func:`check_finite_steps`, called outside jit,
    raises instead of training on garbage. Giving up is sticky: finite steps
    afterwards are applied again, but ``gave_up`` stays set until the state is
    re-initialised, so a check every few steps still sees it. As
    ``optax.apply_if_finite``, with the difference above.

    Args:
        inner: the transform to guard (a gradtx or an optax one).
        max_consecutive_errors: consecutive non-finite steps after which it
            sets ``gave_up``, an integer >= 1; None never gives up. Default None.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.apply_if_finite(gradtx.sgd(0.1), max_consecutive_errors=3)
    >>> p = {"w": 1.0}
    >>> u, s = tx.update({"w": jnp.nan}, tx.init(p), p)
    >>> float(u["w"]), int(s.notfinite_count), int(s.total_notfinite), bool(s.gave_up)
    (0.0, 1, 1, False)
    """
    return ApplyIfFinite(inner=inner, max_consecutive_errors=max_consecutive_errors)


def check_finite_steps(state: Any) -> None:
    """Raises FloatingPointError if an :func:`apply_if_finite` in ``state`` gave up.

    Call it outside jit, e.g. every few steps of the training loop. The message
    says how many consecutive non-finite steps made it give up, how many there
    were in all, and how many in a row now. Does nothing when none gave up.

    Args:
        state: an optimizer state (concrete, not traced) that may hold the
            state of one or more :func:`apply_if_finite`.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.apply_if_finite(gradtx.sgd(0.1), max_consecutive_errors=1)
    >>> p = {"w": 1.0}
    >>> _, s = tx.update({"w": jnp.inf}, tx.init(p), p)
    >>> try:
    ...     gradtx.check_finite_steps(s)
    ... except FloatingPointError as e:
    ...     print(str(e)[:58])
    apply_if_finite at state gave up after 1 consecutive steps
    """
    for path, gave_up in tree_get_all_with_path(state, "gave_up"):
        if bool(gave_up):
            owner = "/".join(map(str, path[:-1])) or "state"
            counts = {
                name: _sibling(state, path, name)
                for name in ("gave_up_after", "total_notfinite", "notfinite_count")
            }
            raise FloatingPointError(
                f"apply_if_finite at {owner} gave up after {counts['gave_up_after']} "
                "consecutive steps had NaN or Inf gradients or updates "
                f"({counts['total_notfinite']} such steps in all, "
                f"{counts['notfinite_count']} in a row now); training stopped instead of "
                "continuing on garbage. Re-initialise the optimizer state to go on."
            )


def _sibling(tree: Any, path: tuple, name: str) -> Any:
    node = tree
    for key in path[:-1]:
        node = getattr(node, key) if isinstance(key, str) and hasattr(node, key) else node[key]
    return int(getattr(node, name))


class ZeroNansState(NamedTuple):
    found_nan: Any


class ZeroNans(Transform):
    """Replaces NaN updates by zero and records where it did."""

    elementwise = True

    def init(self, params):
        return ZeroNansState(jax.tree.map(lambda p: jnp.asarray(False), params))

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        found = jax.tree.map(lambda u: jnp.any(jnp.isnan(u)), updates)
        updates = jax.tree.map(lambda u: jnp.where(jnp.isnan(u), jnp.zeros_like(u), u), updates)
        return updates, ZeroNansState(found)


def zero_nans() -> ZeroNans:
    """NaN updates become 0, as ``optax.zero_nans``; ``found_nan`` says which leaves had one.

    Only NaN is replaced: +-Inf passes unchanged. ``found_nan`` (one boolean
    per leaf) describes the last step.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.zero_nans()
    >>> u, s = tx.update({"w": jnp.array([jnp.nan, 1.0])}, tx.init({"w": jnp.zeros(2)}))
    >>> u["w"].tolist(), bool(s.found_nan["w"])
    ([0.0, 1.0], True)
    """
    return ZeroNans()


class LookaheadState(NamedTuple):
    """``slow`` holds the slow weights (the params are the fast ones).

    ``steps_since_sync`` counts fast steps since the last sync, modulo
    ``sync_period``: it never saturates, so syncing goes on however long training runs.
    """

    steps_since_sync: jax.Array
    slow: Any
    fast_state: Any


class Lookahead(Transform):
    """Lookahead: every ``sync_period`` steps, pull slow weights towards the fast ones."""

    elementwise = True
    integer_leaves = "refuse"  # it does arithmetic on the params

    fast_optimizer: Transform
    sync_period: Any = 6
    slow_step_size: Any = 0.5
    reset_state: bool = static(False)

    def __post_init__(self):
        object.__setattr__(self, "fast_optimizer", as_transform(self.fast_optimizer))
        check_range(self, "sync_period", low=1, integer=True)
        check_range(self, "slow_step_size", low=0.0, high=1.0)

    def init(self, params):
        slow = jax.tree.map(jnp.copy, params)  # a buffer of its own: donation-safe
        return LookaheadState(zero_count(), slow, self.fast_optimizer.init(params))

    def update(self, updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError("lookahead needs the params: call update(updates, state, params)")
        fast_updates, fast_state = self.fast_optimizer.update(
            updates, state.fast_state, params, **extra_args
        )
        period = jnp.asarray(self.sync_period, jnp.int32)
        steps_since_sync = safe_increment(state.steps_since_sync) % period
        sync = steps_since_sync == 0

        def leaf(p, u, slow):
            fast = up(p) + up(u)
            alpha = jnp.asarray(self.slow_step_size, fast.dtype)
            new_slow = jnp.where(sync, up(slow) + alpha * (fast - up(slow)), up(slow))
            target = jnp.where(sync, new_slow, fast)
            return (target - up(p)).astype(u.dtype), new_slow.astype(slow.dtype)

        pairs = jax.tree.map(leaf, params, fast_updates, state.slow)
        # Unzipped along the params (a transpose cannot infer the inner pair without a leaf).
        new_updates = jax.tree.map(lambda _, pair: pair[0], params, pairs)
        slow = jax.tree.map(lambda _, pair: pair[1], params, pairs)
        if self.reset_state:
            fresh = self.fast_optimizer.init(params)
            fast_state = jax.lax.cond(sync, lambda: fresh, lambda: fast_state)
        return new_updates, LookaheadState(steps_since_sync, slow, fast_state)


def lookahead(
    fast_optimizer: Any, sync_period: int, slow_step_size: float, reset_state: bool = False
) -> Lookahead:
    """Lookahead around any optimizer.

    Update rule, with p the fast weights and s the slow ones (kept in the state)::

        p'_t = p_{t-1} + fast_update_t
        every sync_period steps:  s_t = s + slow_step_size (p'_t - s);  p_t = s_t
        otherwise:                p_t = p'_t

    Unlike ``optax.lookahead`` the params stay an ordinary tree (the fast
    weights); the slow weights are ``gradtx.tree_get(state, "slow")``.
    It needs the params: ``update(updates, state, params)``.

    Args:
        fast_optimizer: the inner transform (a gradtx or an optax one).
        sync_period: fast steps between syncs, an integer >= 1 (k in the paper).
        slow_step_size: how far the slow weights move towards the fast ones at
            a sync, in [0, 1] (alpha in the paper).
        reset_state: re-initialise the fast optimizer's state at each sync.
            Default False.

    Reference: Zhang, Lucas, Hinton, Ba, *Lookahead Optimizer*, arXiv:1907.08610.

    >>> import gradtx
    >>> tx = gradtx.lookahead(gradtx.sgd(1.0), sync_period=2, slow_step_size=0.5)
    >>> p = {"w": 0.0}
    >>> s = tx.init(p)
    >>> for _ in range(2):  # fast: 0 -> 1 -> 2; the sync at step 2 moves both to 0 + 0.5 * 2
    ...     u, s = tx.update({"w": -1.0}, s, p)
    ...     p = gradtx.apply_updates(p, u)
    >>> float(p["w"]), float(gradtx.tree_get(s, "slow")["w"])
    (1.0, 1.0)
    """
    return Lookahead(
        fast_optimizer=fast_optimizer,
        sync_period=sync_period,
        slow_step_size=slow_step_size,
        reset_state=reset_state,
    )


class InjectHyperparamsState(NamedTuple):
    """``hyperparams`` holds the current values; a loop may change them between steps."""

    count: jax.Array
    hyperparams: dict
    inner_state: Any


class InjectHyperparams(Transform):
    """Builds the inner transform from hyperparameters kept in the state."""

    factory: Any = static()
    numeric: dict = None
    fixed: tuple = static(())
    hyperparam_dtype: Any = static(None)

    def _inner(self, values: dict) -> Transform:
        return self.factory(**values, **dict(self.fixed))

    def _stored(self, value: Any) -> jax.Array:
        """A hyperparameter as the state keeps it: floats in ``hyperparam_dtype``.

        Integers and PRNG keys keep their dtype. Always a new buffer: the inner
        state may keep the arrays it is built with, and a donated state must
        not share one (with itself or with the transform).
        """
        value = jnp.asarray(value)
        if jnp.issubdtype(value.dtype, jnp.floating):
            value = value.astype(self.hyperparam_dtype or default_float())
        return jnp.copy(value)

    def _values(self, count: jax.Array, current: dict) -> dict:
        """Each hyperparameter now: a schedule's value at ``count``, else ``current[name]``."""
        return {
            name: self._stored(v(count) if callable(v) else current[name])
            for name, v in self.numeric.items()
        }

    def init(self, params):
        values = self._values(zero_count(), self.numeric)
        inner = self._inner(values).init(params)
        return InjectHyperparamsState(zero_count(), jax.tree.map(jnp.copy, values), inner)

    def update(self, updates, state, params=None, **extra_args):
        values = self._values(state.count, state.hyperparams)
        updates, inner = self._inner(values).update(
            updates, state.inner_state, params, **extra_args
        )
        hyperparams = jax.tree.map(jnp.copy, values)
        return updates, InjectHyperparamsState(safe_increment(state.count), hyperparams, inner)


def _is_hyperparameter(value: Any) -> bool:
    """optax's rule: numbers and arrays (PRNG keys too) and schedules, but not booleans."""
    if isinstance(value, (bool, np.bool_, type)):  # a dtype such as jnp.bfloat16 is no schedule
        return False
    return callable(value) or isinstance(value, (int, float, np.number, np.ndarray, jax.Array))


def inject_hyperparams(inner_factory: Any, static_args: Any = (), hyperparam_dtype: Any = None):
    """optax's ``inject_hyperparams``: numeric hyperparameters move into the state.

    gradtx does not need it (hyperparameters are leaves of the transform
    already: change them with ``gradtx.tree_set`` without retracing), but code
    written for optax works unchanged::

        tx = gradtx.inject_hyperparams(gradtx.adam)(learning_rate=1e-3)
        state = tx.init(params)
        state.hyperparams["learning_rate"] = 1e-4   # takes effect at the next step

    As in optax, numbers, arrays and schedules (callables) become state
    ``hyperparams``, defaults included; booleans, other objects and the
    arguments named in ``static_args`` are passed unchanged. Floating-point
    values are kept in ``hyperparam_dtype``; integers and PRNG keys keep
    their dtype. Schedules are evaluated at each step and their value is
    stored too. ``static_args`` must name arguments of ``inner_factory``.

    Differences from optax: the default ``hyperparam_dtype`` is float32
    (float64 under x64), not the params' widest dtype: with bfloat16 params a
    ``b2=0.999`` stays 0.999 instead of rounding to 1.0. A factory's
    ``**options`` reach it as the keywords given (optax passes one keyword
    ``options={...}``, which a factory forwarding them to an optimizer refuses).

    Args:
        inner_factory: a function returning a transform (``gradtx.adam``, an
            optax alias, ...); the returned factory takes its arguments.
        static_args: a name or names of ``inner_factory``'s arguments kept out
            of the state. Default ().
        hyperparam_dtype: a floating-point dtype for the stored values; None is
            float32 (float64 under x64). Default None.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.inject_hyperparams(gradtx.sgd)(learning_rate=0.1)
    >>> p = {"w": 1.0}
    >>> state = tx.init(p)
    >>> state.hyperparams["learning_rate"] = jnp.asarray(0.5)
    >>> u, state = tx.update({"w": 1.0}, state, p)
    >>> float(u["w"]), float(state.hyperparams["learning_rate"])
    (-0.5, 0.5)
    """
    names = (static_args,) if isinstance(static_args, str) else tuple(static_args)
    signature = inspect.signature(inner_factory)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    unknown = sorted(set(names) - set(signature.parameters))
    if unknown and not accepts_any:
        raise ValueError(
            f"inject_hyperparams(static_args={static_args!r}): "
            f"{getattr(inner_factory, '__name__', inner_factory)} has no argument "
            f"{', '.join(unknown)}; its arguments are {', '.join(signature.parameters)}"
        )
    if hyperparam_dtype is not None:
        hyperparam_dtype = jnp.dtype(hyperparam_dtype)
        if not jnp.issubdtype(hyperparam_dtype, jnp.floating):
            raise ValueError(
                f"inject_hyperparams(hyperparam_dtype={hyperparam_dtype}): "
                "hyperparam_dtype must be a floating-point dtype"
            )

    def factory(*args: Any, **kwargs: Any) -> InjectHyperparams:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()  # defaults become state too, as in optax
        numeric, fixed = {}, {}
        for name, value in _keyword_arguments(signature, bound.arguments, inner_factory):
            if name not in names and _is_hyperparameter(value):
                numeric[name] = _as_schedule(value) if callable(value) else value
            else:
                fixed[name] = value
        return InjectHyperparams(
            factory=inner_factory,
            numeric=numeric,
            fixed=tuple(sorted(fixed.items())),
            hyperparam_dtype=hyperparam_dtype,
        )

    return factory


def _keyword_arguments(
    signature: inspect.Signature, arguments: dict, factory: Any
) -> list[tuple[str, Any]]:
    """Bound arguments as the keywords ``factory`` is called with: ``**options`` unpacked.

    optax passes a ``**options`` parameter on as one keyword named ``options``, so a factory
    that forwards its keywords (``lambda lr, **options: sgd(lr, **options)``) fails.
    """
    who = f"inject_hyperparams({getattr(factory, '__name__', factory)})"
    pairs = []
    for name, value in arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            pairs.extend(value.items())
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                raise TypeError(
                    f"{who}: the factory is called with keywords, so its *{name} "
                    f"cannot take {value!r}; give those values by name"
                )
        elif kind is inspect.Parameter.POSITIONAL_ONLY:
            raise TypeError(
                f"{who}: the factory is called with keywords, so its "
                f"positional-only argument {name} cannot be given"
            )
        else:
            pairs.append((name, value))
    return pairs


class CautiousState(NamedTuple):
    inner_state: Any


class Cautious(Transform):
    """Zeroes the inner update where it would climb the incoming gradient; rescales the rest."""

    integer_leaves = "refuse"  # it multiplies the updates by a mask

    inner: Transform
    eps: float = 1.0
    normalize: str = static("count")

    def __post_init__(self):
        object.__setattr__(self, "inner", as_transform(self.inner))
        check_range(self, "eps", low=0.0, low_open=True)
        check_choice(self, "normalize", ("count", "mean"))

    def init(self, params):
        return CautiousState(self.inner.init(params))

    def update(self, updates, state, params=None, **extra_args):
        new, inner = self.inner.update(updates, state.inner_state, params, **extra_args)

        def leaf(u, g):
            u32 = up(u)
            # Descent updates point against g: keep where Re(u conj(g)) < 0 (per real pair).
            keep = jnp.real(u32 * jnp.conj(up(g))) < 0
            real = jnp.real(u32).dtype  # float64 for float64 and complex128 leaves
            eps = jnp.asarray(self.eps, real)
            if self.normalize == "count":
                scale = jnp.size(u) / (jnp.sum(keep, dtype=real) + eps)
            else:
                scale = 1 / (jnp.mean(keep, dtype=real) + eps)
            return jnp.where(keep, u32 * scale, 0).astype(jnp.result_type(u))

        # Its count is per leaf: on FlatParams the inner transform runs on the buffers and
        # the mask and its count on the leaves they pack.
        kept = jax.tree.map(leaf, as_trees(new), as_trees(updates))
        return like_flat(kept, new), CautiousState(inner)


def cautious(inner: Any, eps: float = 1.0, *, normalize: str = "count") -> Cautious:
    """The cautious form of any optimizer (C-AdamW, C-Lion): no step against the gradient.

    Update rule, for each leaf of ``n`` elements, with ``g_t`` the updates coming
    in (the gradient) and ``u_t`` what ``inner`` makes of them (added to the params)::

        phi_t = 1 where u_t * g_t < 0 (the step descends along g_t), else 0
        u_t <- u_t * phi_t * n / (sum(phi_t) + eps)         normalize="count"
        u_t <- u_t * phi_t / (mean(phi_t) + eps)            normalize="mean"

    The default (``"count"``, eps=1) is the authors' code, their paper's algorithm
    box (``d / (nnz + 1)``) and pytorch-optimizer's ``cautious=True``; ``"mean"``
    with a small eps is the paper's later one-line form ``m / (m.mean() + eps)``.
    Each leaf is normalised by itself (every implementation works per tensor;
    the paper's ``d`` reads as the whole parameter vector). A zero gradient keeps
    nothing: that step is zero. Complex leaves keep an element where
    ``Re(u conj(g)) < 0``.

    ``inner`` is a complete optimizer (its updates are added to the params, so a
    descent step is negative along g). Decoupled weight decay outside the mask, as
    the paper's C-AdamW::

        gradtx.chain(gradtx.cautious(gradtx.adam(lr)), gradtx.add_decoupled_weight_decay(wd, lr))

    The inner state is kept as it is (``tree_get(state, "learning_rate")`` works).

    Args:
        inner: the optimizer made cautious (a gradtx or an optax one).
        eps: added to the count or mean of kept elements, > 0. Default 1.
        normalize: ``"count"`` or ``"mean"``, as above. Default ``"count"``.

    Reference: Liang, Chen, Liu, Liu, *Cautious Optimizers: Improving Training with
    One Line of Code*, arXiv:2411.16085.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.cautious(gradtx.sgd(0.1, momentum=0.9))
    >>> params = {"w": jnp.zeros(2)}
    >>> _, state = tx.update({"w": jnp.array([1.0, 1.0])}, tx.init(params), params)
    >>> tx.update({"w": jnp.array([1.0, -0.5])}, state, params)[0]["w"]
    Array([-0.19,  0.  ], dtype=float32)
    """
    return Cautious(inner=inner, eps=eps, normalize=normalize)
