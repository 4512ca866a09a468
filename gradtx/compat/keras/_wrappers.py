"""Keras 3's optimizer wrappers: ``LossScaleOptimizer``, ``MultiOptimizer`` and ``OptimizerMap``."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..._base import check_range, FrozenDict, Schedule, static, Struct, Transform
from ..._combine import (
    as_transform,
    Chain,
    chain,
    EmptyState,
    freeze_tree,
    identity,
    resolve_tree,
    shared_args,
)
from ..._regularize import _require_params
from ..._scale import value_at
from ..._state import tree_get
from ..._tree import hp, safe_increment, up, zero_count
from ..._wrappers import _all_finite, partition
from ...masks import _key_text

# -- loss scaling ----------------------------------------------------------------


class UnscaleLoss(Transform):
    """Divides the gradients by a fixed loss scale (Keras's ``loss_scale_factor``)."""

    elementwise = True

    loss_scale_factor: Any

    @property
    def name(self) -> str:
        return "keras.unscale_loss"

    def __post_init__(self):
        check_range(self, "loss_scale_factor", low=0, low_open=True)

    def init(self, params):
        del params
        return EmptyState()

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        # A division, as Keras's: g * (1 / f) rounds differently unless f is a power of two.
        factor = self.loss_scale_factor
        return jax.tree.map(lambda g: g / jnp.asarray(factor, g.dtype), updates), state


class LossScaleState(NamedTuple):
    """``loss_scale`` (float32, as Keras's ``dynamic_scale``) and the finite steps since it grew."""

    loss_scale: jax.Array
    step_counter: jax.Array
    inner_state: Any


class LossScaleOptimizer(Transform):
    """Dynamic loss scaling around an inner optimizer (Keras's ``LossScaleOptimizer``)."""

    inner_optimizer: Transform
    initial_scale: Any = 2.0**15
    dynamic_growth_steps: Any = 2000

    @property
    def name(self) -> str:
        return "keras.loss_scale_optimizer"

    def __post_init__(self):
        object.__setattr__(self, "inner_optimizer", as_transform(self.inner_optimizer))
        check_range(self, "initial_scale", low=0, low_open=True)
        check_range(self, "dynamic_growth_steps", low=1, integer=True)

    def init(self, params):
        return LossScaleState(
            jnp.asarray(self.initial_scale, jnp.float32),
            jnp.zeros([], jnp.int32),
            self.inner_optimizer.init(params),
        )

    def update(self, updates, state, params=None, **extra_args):
        scale = state.loss_scale
        # Powers of two: the division is exact in the gradient's own dtype.
        unscaled = jax.tree.map(lambda g: g / scale.astype(g.dtype), updates)
        new, inner = self.inner_optimizer.update(unscaled, state.inner_state, params, **extra_args)
        finite = _all_finite(updates)
        grows = state.step_counter == self.dynamic_growth_steps - 1
        skipped = (jax.tree.map(jnp.zeros_like, new), state.inner_state)
        new, inner = jax.lax.cond(finite, lambda: (new, inner), lambda: skipped)
        counter = jnp.where(finite & ~grows, state.step_counter + 1, 0)
        factor = jnp.where(finite, jnp.where(grows, 2.0, 1.0), 0.5).astype(jnp.float32)
        return new, LossScaleState(scale * factor, counter.astype(jnp.int32), inner)


_BASE_OPTIONS = {
    "weight_decay": None,
    "clipnorm": None,
    "global_clipnorm": None,
    "clipvalue": None,
    "use_ema": False,
    "ema_momentum": 0.99,
    "ema_overwrite_frequency": None,
    "loss_scale_factor": None,
    "gradient_accumulation_steps": None,
}

#: The Args entries of the base options, written once for every optimizer's docstring: a
#: line ``<Keras's base options>`` there becomes these (``documents_base_options``).
_BASE_OPTIONS_ARGS = """\
clipnorm: per-leaf norm clip, >= 0, or None. Default None.
clipvalue: elementwise clip, >= 0, or None. Default None.
global_clipnorm: global norm clip, >= 0, or None; at most one of the three clips
    may be set. Default None.
use_ema: keep a moving average of the params (read it from the state's
    ``average``). Default False.
ema_momentum: in [0, 1] (checked with use_ema). Default 0.99.
ema_overwrite_frequency: write the average into the params every this many
    steps, an integer >= 1, or None (or 0) for never. Default None.
loss_scale_factor: the gradient is divided by it, > 0, or None. Default None.
gradient_accumulation_steps: step every k-th call on the mean of k gradients, a
    whole number >= 2 (Keras also takes a fraction), or None. Default None.
name: accepted and ignored.
exclude_from_weight_decay: regular expressions of leaf names the decay skips
    (Keras's ``var_names``; keyword only). Default None.
"""
documents_base_options = shared_args("<Keras's base options>", _BASE_OPTIONS_ARGS)


def loss_scale_optimizer(
    inner_optimizer: Any,
    initial_scale: float = 2.0**15,
    dynamic_growth_steps: int = 2000,
    name: str | None = None,
    **kwargs: Any,
) -> LossScaleOptimizer:
    """``keras.optimizers.LossScaleOptimizer``: dynamic loss scaling, exactly as Keras 3.

    Update rule, with S the scale (``initial_scale`` at first) and g the
    gradient of the loss multiplied by S (:func:`scale_loss`)::

        g all finite:  inner step on g / S;   after dynamic_growth_steps such
                       steps in a row, S <- 2 S
        else:          no step (zero update, inner state unchanged); S <- S / 2

    S is ``gradtx.tree_get(state, "loss_scale")``, a float32 as in Keras (its
    powers of two divide exactly). Only the gradients are checked, as Keras
    does; :func:`gradtx.apply_if_finite` also checks the inner update. The inner
    optimizer's count, so its schedule, does not advance on a skipped step.

    Args:
        inner_optimizer: any transform, usually a ``compat.keras`` optimizer.
        initial_scale: > 0. Default 2.0**15.
        dynamic_growth_steps: a whole number >= 1. Default 2000.
        name: accepted and ignored.
        kwargs: Keras's own refusals, reproduced: ``dynamic=False`` and the base
            options (``clipnorm``, ``use_ema``, ...) belong on the inner optimizer.

    Reference: Keras 3.15, ``keras.optimizers.LossScaleOptimizer``; Micikevicius et al.,
    *Mixed Precision Training*, arXiv:1710.03740.

    >>> import gradtx, jax, jax.numpy as jnp
    >>> from gradtx.compat import keras
    >>> tx = keras.loss_scale_optimizer(keras.sgd(learning_rate=0.1), initial_scale=4.0)
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> grads = jax.grad(lambda p: keras.scale_loss(p["w"] ** 2, state))(params)  # 4 * 2w
    >>> updates, state = tx.update(grads, state, params)
    >>> round(float(updates["w"]), 4), float(gradtx.tree_get(state, "loss_scale"))
    (-0.2, 4.0)
    >>> updates, state = tx.update({"w": jnp.array(jnp.inf)}, state, params)  # skipped
    >>> float(updates["w"]), float(gradtx.tree_get(state, "loss_scale"))
    (0.0, 2.0)
    """
    del name
    if not kwargs.pop("dynamic", True):
        raise ValueError(
            "keras.loss_scale_optimizer(dynamic=False): a fixed scale is the inner "
            "optimizer's loss_scale_factor"
        )
    for arg, value in kwargs.items():
        if arg not in _BASE_OPTIONS:
            raise TypeError(f"keras.loss_scale_optimizer({arg}={value!r}): no such argument")
        if value != _BASE_OPTIONS[arg]:
            raise ValueError(
                f"keras.loss_scale_optimizer({arg}={value!r}): set {arg} on the inner optimizer"
            )
    return LossScaleOptimizer(
        inner_optimizer=inner_optimizer,
        initial_scale=initial_scale,
        dynamic_growth_steps=dynamic_growth_steps,
    )


def scale_loss(loss: Any, state: Any) -> Any:
    """The loss times the current loss scale of ``state`` (Keras's ``optimizer.scale_loss``).

    ``state`` is a :func:`loss_scale_optimizer`'s state, or any state holding
    one; take the gradient of the result and pass it to ``update``.

    Args:
        loss: the (unscaled) loss, a scalar array.
        state: the optimizer state holding a :func:`loss_scale_optimizer`'s.

    Reference: Keras 3.15, ``LossScaleOptimizer.scale_loss``.

    >>> import jax.numpy as jnp
    >>> from gradtx.compat import keras
    >>> tx = keras.loss_scale_optimizer(keras.adam(), initial_scale=8.0)
    >>> float(keras.scale_loss(jnp.array(0.5), tx.init({"w": jnp.zeros(2)})))
    4.0
    """
    scale = tree_get(state, "loss_scale")
    if scale is None:
        raise KeyError("keras.scale_loss: the state holds no loss_scale_optimizer state")
    return loss * scale.astype(jnp.result_type(loss))


# -- one optimizer per group of variables --------------------------------------------


def keras_path(path: tuple) -> str:
    """A key path written as Keras writes ``variable.path``: ``"dense/kernel"``."""
    return "/".join(_key_text(key) for key in path)


class OptimizerMapLabels(Struct):
    """Labels each leaf with the optimizer Keras's ``OptimizerMap`` gives its path."""

    patterns: tuple[str, ...] = static(())
    labels: tuple[str, ...] = static(())
    default: str = static("default")

    def __call__(self, params: Any) -> Any:
        def label(path, _):
            where = keras_path(path)
            if where in self.patterns:  # an exact key wins over patterns, as in Keras
                return self.labels[self.patterns.index(where)]
            found = [i for i, p in enumerate(self.patterns) if re.fullmatch(p, where)]
            if len(found) > 1:
                matching = [self.patterns[i] for i in found]
                raise ValueError(
                    f"keras.multi_optimizer: the parameter {where!r} matches several "
                    f"patterns of the optimizer map: {matching}"
                )
            return self.labels[found[0]] if found else self.default

        return jax.tree_util.tree_map_with_path(label, params)


class OptimizerMap(Struct):
    """Keras's ``OptimizerMap``: a default optimizer and optimizers by path pattern."""

    default_optimizer: Any
    optimizer_map: Any = None

    @property
    def name(self) -> str:
        return "keras.optimizer_map"

    def __post_init__(self):
        object.__setattr__(self, "default_optimizer", as_transform(self.default_optimizer))
        mapping = dict(self.optimizer_map or {})
        for key, value in mapping.items():
            if not isinstance(key, str):
                raise ValueError(
                    f"keras.optimizer_map(optimizer_map={{{key!r}: ...}}): keys are strings"
                )
            if isinstance(value, LossScaleOptimizer):  # Keras's rule: scaling goes outside
                raise ValueError(
                    f"keras.optimizer_map(optimizer_map={{{key!r}: ...}}): a mapped optimizer "
                    "cannot be a loss_scale_optimizer; wrap the multi_optimizer instead"
                )
            re.compile(key)
        object.__setattr__(
            self, "optimizer_map", FrozenDict({k: as_transform(v) for k, v in mapping.items()})
        )


def optimizer_map(default_optimizer: Any, optimizer_map: dict | None = None) -> OptimizerMap:
    """``keras.optimizers.OptimizerMap``: which optimizer takes which parameter.

    A parameter's path is its key path written as Keras's ``variable.path``
    (``{"dense": {"kernel": w}}`` gives ``"dense/kernel"``). An exact key of
    ``optimizer_map`` wins; else the one pattern that ``re.fullmatch``-es the
    path (several are an error, as in Keras); else ``default_optimizer``.

    Args:
        default_optimizer: the transform for the parameters no key matches.
        optimizer_map: ``{path or regular expression: transform}``; not a
            :func:`loss_scale_optimizer`. Default None (all to the default).

    Reference: Keras 3.15, ``keras.optimizers.OptimizerMap``. A whole step: :func:`multi_optimizer`.

    >>> from gradtx.compat import keras
    >>> groups = keras.optimizer_map(keras.sgd(0.1), {"dense/.*": keras.adam()})
    >>> list(groups.optimizer_map)
    ['dense/.*']
    """
    return OptimizerMap(default_optimizer=default_optimizer, optimizer_map=optimizer_map)


def multi_optimizer(
    optimizer_map: OptimizerMap, loss_scale_factor: float | None = None, name: str | None = None
) -> Chain:
    """``keras.optimizers.MultiOptimizer``: each parameter group stepped by its own optimizer.

    :func:`gradtx.partition` with the labels of ``optimizer_map``. One optimizer
    object mapped from several patterns is one group with one state, as one
    Keras optimizer built on all its variables (its ``global_clipnorm`` spans
    them). ``loss_scale_factor`` divides every gradient first, as Keras passes it
    to every inner optimizer.

    Args:
        optimizer_map: an :func:`optimizer_map`.
        loss_scale_factor: the gradient is divided by it, > 0, or None. Default None.
        name: accepted and ignored.

    Reference: Keras 3.15, ``keras.optimizers.MultiOptimizer``.

    >>> import jax.numpy as jnp
    >>> from gradtx.compat import keras
    >>> groups = keras.optimizer_map(keras.sgd(0.1), {"dense/bias": keras.sgd(1.0)})
    >>> tx = keras.multi_optimizer(groups)
    >>> params = {"dense": {"kernel": jnp.array(1.0), "bias": jnp.array(1.0)}}
    >>> grads = {"dense": {"kernel": jnp.array(2.0), "bias": jnp.array(2.0)}}
    >>> updates, _ = tx.update(grads, tx.init(params), params)
    >>> round(float(updates["dense"]["kernel"]), 4), round(float(updates["dense"]["bias"]), 4)
    (-0.2, -2.0)
    """
    del name
    if not isinstance(optimizer_map, OptimizerMap):
        raise TypeError(
            f"keras.multi_optimizer(optimizer_map=<{type(optimizer_map).__name__}>): "
            "expected compat.keras.optimizer_map(default_optimizer, {pattern: optimizer})"
        )
    optimizers: list[Transform] = []  # one group per optimizer object, in Keras's order

    def group(tx: Transform) -> str:
        for i, known in enumerate(optimizers):
            if known is tx:
                return str(i)
        optimizers.append(tx)
        return str(len(optimizers) - 1)

    labels = tuple(group(tx) for tx in optimizer_map.optimizer_map.values())
    default = group(optimizer_map.default_optimizer)
    groups = partition(
        {str(i): tx for i, tx in enumerate(optimizers)},
        OptimizerMapLabels(
            patterns=tuple(optimizer_map.optimizer_map), labels=labels, default=default
        ),
    )
    unscale = (
        identity()
        if loss_scale_factor is None
        else UnscaleLoss(loss_scale_factor=loss_scale_factor)
    )
    return chain(unscale, groups)


# -- the base options of every Keras optimizer ------------------------------------------


class KerasWeightDecayMask(Struct):
    """True for the leaves Keras decays: no pattern of ``var_names`` is found in their name.

    A leaf's name is the last key of its path (``{"dense": {"bias": b}}``: ``"bias"``),
    as Keras's ``variable.name`` is the last component of ``variable.path``: so
    ``"dense"`` excludes nothing there, as in Keras. The patterns are regular
    expressions joined by ``|`` and searched (``re.search``), case-sensitive; unlike
    ``gradtx.masks.excluding`` (any key of the path, case-insensitive substrings).
    Keras's ``var_list`` (variable objects) has no equivalent: use a gradtx mask.
    """

    var_names: tuple[str, ...] = static(())

    def __call__(self, params: Any) -> Any:
        pattern = re.compile("|".join(self.var_names))  # Keras joins them into one pattern

        def decays(path, _):
            return pattern.search(_key_text(path[-1]) if path else "") is None

        return jax.tree_util.tree_map_with_path(decays, params)


def weight_decay_mask(label: str, exclude_from_weight_decay: Any) -> KerasWeightDecayMask | None:
    """The mask of Keras's ``optimizer.exclude_from_weight_decay(var_names=...)``; None if empty."""
    if not exclude_from_weight_decay:
        return None
    names = exclude_from_weight_decay
    if isinstance(names, str) or not all(isinstance(name, str) for name in names):
        # Keras would take a string's characters as the names.
        raise ValueError(
            f"keras.{label}(exclude_from_weight_decay={names!r}): expected a list of "
            "regular expressions (Keras's var_names), such as ['bias', 'norm']"
        )
    try:
        re.compile("|".join(names))
    except re.error as error:
        raise ValueError(
            f"keras.{label}(exclude_from_weight_decay={names!r}): not regular expressions ({error})"
        ) from None
    return KerasWeightDecayMask(var_names=tuple(sorted(set(names))))


class DecayParamsFirstState(NamedTuple):
    count: jax.Array
    inner_state: Any


class DecayParamsFirst(Transform):
    """Keras's weight decay ahead of an update that reads the params: ``inner`` sees them decayed.

    Update rule, on the leaves ``mask`` selects (all if None; others keep p' = p)::

        p' = p - p * weight_decay * lr_t;   u <- (p' - p) + inner(g, params=p')
    """

    elementwise = True

    inner: Transform
    weight_decay: Any
    learning_rate: Any
    mask: Any = static(None)

    def __post_init__(self):
        object.__setattr__(self, "inner", as_transform(self.inner))
        object.__setattr__(self, "mask", freeze_tree(self.mask))
        check_range(self, "weight_decay", low=0.0)
        check_range(self, "learning_rate", low=0.0)

    def init(self, params):
        return DecayParamsFirstState(zero_count(), self.inner.init(params))

    def update(self, updates, state, params=None, **extra_args):
        _require_params(self, params)
        lr = value_at(self.learning_rate, state.count)

        def decay(p):
            return (up(p) - up(p) * hp(self.weight_decay, p) * hp(lr, p)).astype(p.dtype)

        if self.mask is None:
            decayed = jax.tree.map(decay, params)
        else:
            mask = resolve_tree(self.mask, params)
            decayed = jax.tree.map(lambda m, p: decay(p) if m else p, mask, params)
        inner, inner_state = self.inner.update(updates, state.inner_state, decayed, **extra_args)
        updates = jax.tree.map(
            lambda u, d, p: (up(d) - up(p) + up(u)).astype(u.dtype), inner, decayed, params
        )
        return updates, DecayParamsFirstState(safe_increment(state.count), inner_state)


class KerasRawIterations(Schedule):
    """``schedule`` at Keras's raw call count when accumulating ``steps`` gradients.

    The n-th real update (count n - 1 here) runs at Keras's ``_iterations`` =
    steps * n - 1, where Keras evaluates a ``LearningRateSchedule``.
    """

    schedule: Any
    steps: int = static(2)

    def __call__(self, count: Any) -> Any:
        return self.schedule(count * self.steps + self.steps - 1)


class GradientAccumulationState(NamedTuple):
    """``count`` of calls (Keras's raw ``_iterations``) and ``acc_grads``, their unused sum."""

    count: jax.Array
    acc_grads: Any
    inner_state: Any


class GradientAccumulation(Transform):
    """Keras's ``gradient_accumulation_steps``: the inner step on every k-th call only."""

    inner: Transform
    steps: int = static(2)

    @property
    def name(self) -> str:
        return "keras.gradient_accumulation"

    def __post_init__(self):
        object.__setattr__(self, "inner", as_transform(self.inner))
        check_range(self, "steps", low=2, integer=True)

    def init(self, params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return GradientAccumulationState(zero_count(), zeros, self.inner.init(params))

    def update(self, updates, state, params=None, **extra_args):
        k = self.steps
        now = (state.count + 1) % k == 0
        grads = jax.tree.map(lambda g, a: jnp.where(now, (g + a) / k, g), updates, state.acc_grads)
        acc = jax.tree.map(lambda g, a: jnp.where(now, 0, g + a), updates, state.acc_grads)
        new, inner = self.inner.update(grads, state.inner_state, params, **extra_args)
        skipped = (jax.tree.map(jnp.zeros_like, new), state.inner_state)
        new, inner = jax.lax.cond(now, lambda: (new, inner), lambda: skipped)
        return new, GradientAccumulationState(safe_increment(state.count), acc, inner)


class KerasEmaState(NamedTuple):
    """``average``: Keras's moving average of the params after each call; ``count`` of calls."""

    count: jax.Array
    average: Any
    inner_state: Any


class KerasEma(Transform):
    """Keras's ``use_ema``: an average of the params, written into them every few steps."""

    inner: Transform
    ema_momentum: Any = 0.99
    ema_overwrite_frequency: int | None = static(None)
    gradient_accumulation_steps: int | None = static(None)

    @property
    def name(self) -> str:
        return "keras.ema"

    def __post_init__(self):
        object.__setattr__(self, "inner", as_transform(self.inner))
        check_range(self, "ema_momentum", low=0, high=1)
        check_range(self, "ema_overwrite_frequency", low=1, integer=True)

    def init(self, params):
        average = jax.tree.map(jnp.zeros_like, params)  # Keras's zeros; step 1 replaces them
        return KerasEmaState(zero_count(), average, self.inner.init(params))

    def update(self, updates, state, params=None, **extra_args):
        new, inner = self.inner.update(updates, state.inner_state, params, **extra_args)
        # Keras's optimizer.iterations: whole accumulation cycles when accumulating.
        iterations = state.count // (self.gradient_accumulation_steps or 1)
        after = jax.tree.map(lambda p, u: p + u, params, new)
        momentum = jnp.where(iterations != 0, self.ema_momentum, 0.0)

        def mix(avg, p):
            m = momentum.astype(p.dtype)
            return m * avg + (1 - m) * p

        average = jax.tree.map(mix, state.average, after)
        if self.ema_overwrite_frequency is not None:
            write = (iterations + 1) % self.ema_overwrite_frequency == 0
            new = jax.tree.map(lambda u, a, p: jnp.where(write, a - p, u), new, average, params)
        return new, KerasEmaState(safe_increment(state.count), average, inner)


def with_base_options(
    label: str,
    step: Transform,
    learning_rate: Any,
    use_ema: bool,
    ema_momentum: float,
    ema_overwrite_frequency: int | None,
    loss_scale_factor: float | None,
    gradient_accumulation_steps: int | None,
) -> Transform:
    """``step`` (clip, decay, the optimizer's own step) wrapped as Keras's ``apply`` wraps it.

    Keras's order: the gradient is divided by ``loss_scale_factor``; with
    ``gradient_accumulation_steps`` k the step runs on every k-th call on the mean
    of the last k gradients; with ``use_ema`` the average of the params follows.
    A schedule ``learning_rate`` (the object inside ``step``) is evaluated where
    Keras does, at the raw call count (:class:`KerasRawIterations`).
    """
    # Keras takes 2.5 too (its check is >= 2) and then steps where (count + 1) % 2.5 == 0,
    # every fifth call, dividing by 2.5: a fraction is refused rather than guessed at.
    k = gradient_accumulation_steps
    if k and not (k >= 2 and float(k).is_integer()):
        raise ValueError(
            f"keras.{label}(gradient_accumulation_steps={gradient_accumulation_steps!r}): "
            "gradient_accumulation_steps must be a whole number >= 2"
        )
    if use_ema:
        if not 0 <= ema_momentum <= 1:
            raise ValueError(
                f"keras.{label}(ema_momentum={ema_momentum!r}): ema_momentum must be in [0, 1]"
            )
        if ema_overwrite_frequency and (
            not isinstance(ema_overwrite_frequency, int) or ema_overwrite_frequency < 1
        ):
            raise ValueError(
                f"keras.{label}(ema_overwrite_frequency={ema_overwrite_frequency!r}): "
                "ema_overwrite_frequency must be a whole number >= 1 or None"
            )
    if gradient_accumulation_steps and isinstance(learning_rate, Schedule):
        # Every use of the schedule in the step (rate, decay, warmup) sees the raw count.
        raw = KerasRawIterations(schedule=learning_rate, steps=int(gradient_accumulation_steps))
        step = jax.tree.map(
            lambda x: raw if x is learning_rate else x,
            step,
            is_leaf=lambda x: x is learning_rate,
        )
    if gradient_accumulation_steps:
        step = GradientAccumulation(inner=step, steps=int(gradient_accumulation_steps))
    if loss_scale_factor is not None:
        step = chain(UnscaleLoss(loss_scale_factor=loss_scale_factor), step)
    if use_ema:
        step = KerasEma(
            inner=step,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=ema_overwrite_frequency or None,
            gradient_accumulation_steps=gradient_accumulation_steps or None,
        )
    return step
