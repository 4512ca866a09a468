"""Wrappers for real training loops: parameter groups, accumulation, non-finite steps, lookahead."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._base import check_range, static, Transform
from ._combine import as_transform, EmptyState, freeze_tree, Masked, masked, resolve_tree
from ._scale import value_at
from ._schedules import _as_schedule
from ._tree import safe_increment, tree_zeros_like, up, zero_count


class SetToZero(Transform):
    """Replaces every update by zero."""

    elementwise = True

    def init(self, params):
        del params
        return EmptyState()

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        return jax.tree.map(jnp.zeros_like, updates), state


def set_to_zero() -> SetToZero:
    """Zero updates, as ``optax.set_to_zero``: ``u <- 0``.

    In :func:`partition` it freezes a parameter group and keeps no state for it.
    """
    return SetToZero()


def freeze(mask: Any) -> Masked:
    """Zero updates where ``mask`` is true, as ``optax.freeze``.

    ``chain(adam, freeze(mask))`` still keeps Adam's moments for the frozen
    leaves; ``partition({"train": adam, "frozen": set_to_zero()}, labels)``
    keeps none.
    """
    return masked(set_to_zero(), mask)


class PartitionState(NamedTuple):
    inner_states: dict


class Partition(Transform):
    """A different transform for each group of parameters (labels -> transforms)."""

    transforms: dict
    param_labels: Any = static()

    def __post_init__(self):
        transforms = {k: as_transform(t) for k, t in dict(self.transforms).items()}
        object.__setattr__(self, "transforms", transforms)
        object.__setattr__(self, "param_labels", freeze_tree(self.param_labels))

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
    """``mini_step`` counts micro-batches in the current step; ``acc_grads`` is their sum."""

    mini_step: jax.Array
    gradient_step: jax.Array
    inner_state: Any
    acc_grads: Any


class MultiSteps(Transform, kw_only=False):
    """Gradient accumulation over ``every_k_schedule`` micro-steps, one accumulator."""

    elementwise = True

    opt: Transform
    every_k_schedule: Any = 1
    use_grad_mean: bool = static(True)

    def __post_init__(self):
        object.__setattr__(self, "opt", as_transform(self.opt))
        check_range(self, "every_k_schedule", low=1)

    def init(self, params):
        return MultiStepsState(
            zero_count(), zero_count(), self.opt.init(params), tree_zeros_like(params)
        )

    def update(self, updates, state, params=None, **extra_args):
        k = value_at(self.every_k_schedule, state.gradient_step).astype(jnp.int32)
        acc = jax.tree.map(lambda a, g: (up(a) + up(g)).astype(a.dtype), state.acc_grads, updates)
        emit = state.mini_step + 1 >= k

        def apply(_):
            grads = acc
            if self.use_grad_mean:
                grads = jax.tree.map(lambda a: (up(a) / k).astype(a.dtype), acc)
            grads = jax.tree.map(lambda g, u: g.astype(u.dtype), grads, updates)
            new, inner = self.opt.update(grads, state.inner_state, params, **extra_args)
            return new, inner, jax.tree.map(jnp.zeros_like, acc)

        def wait(_):
            return jax.tree.map(jnp.zeros_like, updates), state.inner_state, acc

        new, inner, acc = jax.lax.cond(emit, apply, wait, None)
        return new, MultiStepsState(
            jnp.where(emit, 0, state.mini_step + 1).astype(jnp.int32),
            jnp.where(emit, safe_increment(state.gradient_step), state.gradient_step),
            inner,
            acc,
        )

    def gradient_transformation(self) -> MultiSteps:
        """optax's MultiSteps is turned into a transform this way; this one already is one."""
        return self

    @staticmethod
    def has_updated(state: MultiStepsState) -> jax.Array:
        """Whether the last call applied an update (it ended a group of micro-steps)."""
        return state.mini_step == 0


class ApplyIfFiniteState(NamedTuple):
    """Skip counters: consecutive (``notfinite_count``) and overall; ``gave_up`` past the limit."""

    notfinite_count: jax.Array
    last_finite: jax.Array
    total_notfinite: jax.Array
    gave_up: jax.Array
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
        check_range(self, "max_consecutive_errors", low=1)

    def init(self, params):
        false = jnp.asarray(False)
        count = zero_count()
        return ApplyIfFiniteState(count, jnp.asarray(True), count, false, self.inner.init(params))

    def update(self, updates, state, params=None, **extra_args):
        new, inner = self.inner.update(updates, state.inner_state, params, **extra_args)
        finite = _all_finite(updates) & _all_finite(new)
        skipped = (jax.tree.map(jnp.zeros_like, new), state.inner_state)
        new, inner = jax.lax.cond(finite, lambda: (new, inner), lambda: skipped)
        streak = jnp.where(finite, 0, safe_increment(state.notfinite_count))
        limit = self.max_consecutive_errors
        gave_up = jnp.asarray(False) if limit is None else streak >= limit
        return new, ApplyIfFiniteState(
            streak.astype(jnp.int32),
            finite,
            jnp.where(finite, state.total_notfinite, safe_increment(state.total_notfinite)),
            state.gave_up | gave_up,
            inner,
        )


def apply_if_finite(inner: Any, max_consecutive_errors: int | None = None) -> ApplyIfFinite:
    """Applies ``inner`` only on steps whose gradients (and inner updates) are all finite.

    A step with a NaN or Inf leaves the parameters (zero update) and the inner
    state exactly unchanged, and counts in the state: ``notfinite_count``
    (consecutive), ``total_notfinite``. Unlike optax, it never applies a
    non-finite update: after ``max_consecutive_errors`` consecutive skips it
    sets ``gave_up``, and :func:`check_finite_steps`, called outside jit,
    raises instead of training on garbage.
    """
    return ApplyIfFinite(inner=inner, max_consecutive_errors=max_consecutive_errors)


def check_finite_steps(state: Any) -> None:
    """Raises FloatingPointError if an :func:`apply_if_finite` in ``state`` gave up.

    Call it outside jit, e.g. every few steps of the training loop.
    """
    from ._state import tree_get_all_with_path

    for path, gave_up in tree_get_all_with_path(state, "gave_up"):
        if bool(gave_up):
            owner = "/".join(map(str, path[:-1])) or "state"
            streak = _sibling(state, path, "notfinite_count")
            raise FloatingPointError(
                f"apply_if_finite at {owner}: {streak} consecutive steps had NaN or Inf "
                "gradients or updates; training stopped instead of continuing on garbage"
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
    """NaN updates become 0, as ``optax.zero_nans``; ``found_nan`` says which leaves had one."""
    return ZeroNans()


class LookaheadState(NamedTuple):
    """``slow`` holds the slow weights; the params are the fast weights."""

    count: jax.Array
    slow: Any
    fast_state: Any


class Lookahead(Transform):
    """Lookahead: every ``sync_period`` steps, pull slow weights towards the fast ones."""

    elementwise = True

    fast_optimizer: Transform
    sync_period: Any = 6
    slow_step_size: Any = 0.5
    reset_state: bool = static(False)

    def __post_init__(self):
        object.__setattr__(self, "fast_optimizer", as_transform(self.fast_optimizer))
        check_range(self, "sync_period", low=1)
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
        count = safe_increment(state.count)
        sync = count % jnp.asarray(self.sync_period, count.dtype) == 0

        def leaf(p, u, slow):
            fast = up(p) + up(u)
            alpha = jnp.asarray(self.slow_step_size, fast.dtype)
            new_slow = jnp.where(sync, up(slow) + alpha * (fast - up(slow)), up(slow))
            target = jnp.where(sync, new_slow, fast)
            return (target - up(p)).astype(u.dtype), new_slow.astype(slow.dtype)

        pairs = jax.tree.map(leaf, params, fast_updates, state.slow)
        outer = jax.tree.structure(params)
        new_updates, slow = jax.tree.transpose(outer, jax.tree.structure((0, 0)), pairs)
        if self.reset_state:
            fresh = self.fast_optimizer.init(params)
            fast_state = jax.lax.cond(sync, lambda: fresh, lambda: fast_state)
        return new_updates, LookaheadState(count, slow, fast_state)


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

    Reference: Zhang, Lucas, Hinton, Ba, *Lookahead Optimizer*, arXiv:1907.08610.
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

    def _inner(self, values: dict) -> Transform:
        return self.factory(**values, **dict(self.fixed))

    def init(self, params):
        count = zero_count()
        values = {k: value_at(v, count) for k, v in self.numeric.items()}
        return InjectHyperparamsState(count, values, self._inner(values).init(params))

    def update(self, updates, state, params=None, **extra_args):
        values = {
            k: value_at(v, state.count) if callable(v) else state.hyperparams[k]
            for k, v in self.numeric.items()
        }
        updates, inner = self._inner(values).update(
            updates, state.inner_state, params, **extra_args
        )
        return updates, InjectHyperparamsState(safe_increment(state.count), values, inner)


def inject_hyperparams(inner_factory: Any, static_args: Any = (), hyperparam_dtype: Any = None):
    """optax's ``inject_hyperparams``: numeric hyperparameters move into the state.

    gradtx does not need it (hyperparameters are leaves of the transform
    already: change them with ``gradtx.tree_set`` without retracing), but code
    written for optax works unchanged::

        tx = gradtx.inject_hyperparams(gradtx.adam)(learning_rate=1e-3)
        state = tx.init(params)
        state.hyperparams["learning_rate"] = 1e-4   # takes effect at the next step

    Numbers become arrays in the state (of ``hyperparam_dtype`` if given);
    schedules are evaluated at each step, and their value is stored there too.
    """
    names = (static_args,) if isinstance(static_args, str) else tuple(static_args)

    def factory(*args: Any, **kwargs: Any) -> InjectHyperparams:
        import inspect

        signature = inspect.signature(inner_factory).bind(*args, **kwargs)
        signature.apply_defaults()  # defaults become state too, as in optax
        bound = signature.arguments
        numeric, fixed = {}, {}
        for name, value in bound.items():
            number = isinstance(value, (int, float, jax.Array)) and not isinstance(value, bool)
            if name in names or not (number or callable(value)):
                fixed[name] = value
            else:
                numeric[name] = value
        numeric = {k: _as_schedule(v) if callable(v) else v for k, v in numeric.items()}
        if hyperparam_dtype is not None:
            numeric = {
                k: v if callable(v) else jnp.asarray(v, hyperparam_dtype)
                for k, v in numeric.items()
            }
        return InjectHyperparams(
            factory=inner_factory, numeric=numeric, fixed=tuple(sorted(fixed.items()))
        )

    return factory
