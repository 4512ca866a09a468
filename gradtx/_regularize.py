"""Weight decay and L1 penalties."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._base import check_choice, check_range, static, Transform
from ._combine import masked
from ._scale import value_at
from ._tree import hp, safe_increment, up, zero_count

NO_PARAMS = "{name} needs the params: call update(updates, state, params)"


class CountState(NamedTuple):
    """A step counter, for hyperparameters that may be schedules."""

    count: jax.Array


def _require_params(transform: Transform, params: Any) -> None:
    if params is None:
        raise ValueError(NO_PARAMS.format(name=transform.name))


class AddDecayedWeights(Transform):
    """Adds ``weight_decay * params`` to the updates."""

    elementwise = True

    weight_decay: Any = 0.0

    def __post_init__(self):
        check_range(self, "weight_decay", low=0.0)

    def init(self, params):
        del params
        return CountState(zero_count())

    def update(self, updates, state, params=None, **extra_args):
        del extra_args
        _require_params(self, params)
        wd = value_at(self.weight_decay, state.count)
        updates = jax.tree.map(
            lambda u, p: (up(u) + hp(wd, u) * up(p)).astype(jnp.result_type(u)), updates, params
        )
        return updates, CountState(safe_increment(state.count))


def add_decayed_weights(weight_decay: Any = 0.0, mask: Any = None) -> Transform:
    """Adds weight decay to the updates, as ``optax.add_decayed_weights``.

    Update rule::

        u_t <- u_t + wd_t * p_{t-1}

    Placed *before* an adaptive scaling (``scale_by_adam``) this is coupled L2
    regularisation (PyTorch ``Adam(weight_decay=...)``); placed after it and
    before ``scale_by_learning_rate`` it is decoupled weight decay, AdamW
    (Loshchilov & Hutter, arXiv:1711.05101). ``weight_decay`` may be a
    schedule; ``mask`` (a tree of booleans or a function of the params)
    limits it to some parameters.

    Args:
        weight_decay: >= 0; a number or a schedule. Default 0.
        mask: a tree of booleans, or a function of the params giving one, that
            selects the parameters to decay; None decays all.

    Reference: optax ``optax.add_decayed_weights``; Loshchilov & Hutter, arXiv:1711.05101.

    >>> import gradtx
    >>> tx, params = gradtx.add_decayed_weights(0.1), {"w": 2.0}
    >>> round(float(tx.update({"w": 1.0}, tx.init(params), params)[0]["w"]), 4)
    1.2
    """
    transform = AddDecayedWeights(weight_decay=weight_decay)
    return transform if mask is None else masked(transform, mask)


class AddL1Penalty(Transform):
    """Adds the subgradient ``l1 * sign(params)`` of an L1 penalty."""

    elementwise = True

    l1: Any = 0.0

    def __post_init__(self):
        check_range(self, "l1", low=0.0)

    def init(self, params):
        del params
        return CountState(zero_count())

    def update(self, updates, state, params=None, **extra_args):
        del extra_args
        _require_params(self, params)
        l1 = value_at(self.l1, state.count)
        updates = jax.tree.map(
            lambda u, p: (up(u) + hp(l1, u) * jnp.sign(up(p))).astype(jnp.result_type(u)),
            updates,
            params,
        )
        return updates, CountState(safe_increment(state.count))


def add_l1_penalty(l1: Any, mask: Any = None) -> Transform:
    """Adds the subgradient of ``l1 * sum|p|`` to the updates.

    Update rule::

        u_t <- u_t + l1_t * sign(p_{t-1})

    Like :func:`add_decayed_weights`, its place in the chain decides whether
    the penalty is scaled by an adaptive method. The subgradient never makes a
    weight exactly zero; :func:`soft_threshold` does.

    Args:
        l1: the penalty's coefficient, >= 0; a number or a schedule.
        mask: a tree of booleans, or a function of the params giving one, that
            selects the parameters to penalise; None penalises all.

    Reference: Tibshirani, *Regression Shrinkage and Selection via the Lasso*, 1996.

    >>> import gradtx
    >>> tx, params = gradtx.add_l1_penalty(0.1), {"w": -2.0}
    >>> round(float(tx.update({"w": 1.0}, tx.init(params), params)[0]["w"]), 4)
    0.9
    """
    transform = AddL1Penalty(l1=l1)
    return transform if mask is None else masked(transform, mask)


class SoftThreshold(Transform):
    """The proximal step of an L1 penalty, applied after the descent step."""

    elementwise = True

    threshold: Any = 0.0

    def __post_init__(self):
        check_range(self, "threshold", low=0.0)

    def init(self, params):
        del params
        return CountState(zero_count())

    def update(self, updates, state, params=None, **extra_args):
        del extra_args
        _require_params(self, params)
        tau = value_at(self.threshold, state.count)

        def leaf(u, p):
            target = up(p) + up(u)
            shrunk = jnp.sign(target) * jnp.maximum(jnp.abs(target) - hp(tau, target), 0)
            return (shrunk - up(p)).astype(jnp.result_type(u))

        return jax.tree.map(leaf, updates, params), CountState(safe_increment(state.count))


def soft_threshold(threshold: Any, mask: Any = None) -> Transform:
    """Proximal L1 (ISTA): shrinks the stepped parameters towards zero.

    Update rule, with ``threshold = lr * l1`` (a number or schedule)::

        q = p_{t-1} + u_t
        u_t <- sign(q) * max(|q| - threshold_t, 0) - p_{t-1}

    Place it last in the chain, after ``scale_by_learning_rate``. Weights whose
    stepped value lies within the threshold become exactly zero.

    Args:
        threshold: >= 0; a number or a schedule.
        mask: a tree of booleans, or a function of the params giving one, that
            selects the parameters to shrink; None shrinks all.

    Reference: Beck & Teboulle, *A Fast Iterative Shrinkage-Thresholding
    Algorithm*, SIAM J. Imaging Sciences 2009.

    The stepped weights 0.05 and 2.0 become 0 and 1.9:

    >>> import gradtx
    >>> import jax.numpy as jnp
    >>> tx, params = gradtx.soft_threshold(0.1), {"w": jnp.array([0.0, 2.0])}
    >>> u, _ = tx.update({"w": jnp.array([0.05, 0.0])}, tx.init(params), params)
    >>> [round(x, 4) for x in (params["w"] + u["w"]).tolist()]
    [0.0, 1.9]
    """
    transform = SoftThreshold(threshold=threshold)
    return transform if mask is None else masked(transform, mask)


class AddDecoupledWeightDecay(Transform):
    """Adds ``-learning_rate * weight_decay`` times the params (or the stepped params)."""

    elementwise = True

    weight_decay: Any = 0.0
    learning_rate: Any = 1e-3
    of: str = static("params")

    def __post_init__(self):
        check_range(self, "weight_decay", low=0.0)
        check_range(self, "learning_rate", low=0.0)
        check_choice(self, "of", ("params", "step"))

    def init(self, params):
        del params
        return CountState(zero_count())

    def update(self, updates, state, params=None, **extra_args):
        del extra_args
        _require_params(self, params)
        rate = value_at(self.learning_rate, state.count) * value_at(self.weight_decay, state.count)

        def leaf(u, p):
            if self.of == "step":  # p_t = (p_{t-1} + u_t) (1 - rate), as an update
                stepped = up(p) + up(u)
                return (stepped * (1 - hp(rate, stepped)) - up(p)).astype(u.dtype)
            return (up(u) - hp(rate, u) * up(p)).astype(jnp.result_type(u))

        return jax.tree.map(leaf, updates, params), CountState(safe_increment(state.count))


def add_decoupled_weight_decay(
    weight_decay: Any, learning_rate: Any, mask: Any = None, *, of: str = "params"
) -> Transform:
    """Decays the weights directly, after the optimizer's own (already scaled) step.

    Update rule::

        u_t <- u_t - lr_t * weight_decay_t * p_{t-1}                (of="params")
        u_t <- u_t - lr_t * weight_decay_t * (p_{t-1} + u_t)        (of="step": the
               stepped weights shrink, p_t = (p_{t-1} + u_t) (1 - lr_t weight_decay_t),
               as pytorch-optimizer's LaProp and SOAP decay)

    This is how Keras applies ``weight_decay`` to every optimizer (and PyTorch
    ``decoupled_weight_decay=True``): it does not pass through momentum or an
    adaptive scaling, even where the learning rate sits inside the momentum
    buffer. Place it last. With a learning rate that is already applied,
    ``add_decayed_weights`` before ``scale_by_learning_rate`` is the same.

    Args:
        weight_decay: >= 0; a number or a schedule.
        learning_rate: >= 0; a number or a schedule.
        mask: a tree of booleans, or a function of the params giving one, that
            selects the parameters to decay; None decays all.
        of: ``"params"`` (default) or ``"step"``.

    Reference: Loshchilov & Hutter, arXiv:1711.05101.

    >>> import gradtx
    >>> tx, params = gradtx.add_decoupled_weight_decay(0.5, 0.1), {"w": 2.0}
    >>> round(float(tx.update({"w": -0.3}, tx.init(params), params)[0]["w"]), 4)
    -0.4
    """
    transform = AddDecoupledWeightDecay(
        weight_decay=weight_decay, learning_rate=learning_rate, of=of
    )
    return transform if mask is None else masked(transform, mask)
