"""Sharpness-aware minimisation: SAM and adaptive SAM (ASAM), with optax.contrib's names."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._base import check_range, fail, static, Transform
from ._combine import as_transform, chain, EmptyState, freeze_tree, resolve_tree
from ._momentum import sgd
from ._regularize import _require_params
from ._state import apply_updates
from ._tree import hp, tree_cast_like, tree_divide_by_norm, up, zero_count


class Normalize(Transform):
    """Divides the updates by their global L2 norm."""

    elementwise = True

    def init(self, params):
        del params
        return EmptyState()

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        return tree_divide_by_norm(updates, updates), state


def normalize() -> Normalize:
    """The updates divided by their global norm, as ``optax.contrib.normalize``.

    Update rule::

        u <- g / ||g||_2          (||g|| over all leaves together)

    SAM's ascent direction: ``chain(normalize(), sgd(rho))`` is the adversarial
    optimizer of Foret et al.'s SAM inside :func:`sam`. Difference from optax: a
    zero gradient gives a zero update (optax: 0 / 0 = NaN), and one whose squares
    underflow (float32 entries all below about 1e-19) a unit vector (optax: inf). No
    arguments.

    Reference: Foret et al., *Sharpness-Aware Minimization*, ICLR 2021, arXiv:2010.01412.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.normalize()
    >>> tx.update({"w": jnp.array([3.0, 4.0])}, tx.init(None))[0]["w"]
    Array([0.6, 0.8], dtype=float32)
    """
    return Normalize()


class ScaleByAsam(Transform):
    """ASAM's ascent direction: T^2 g / ||T g|| with T = |w| + eta."""

    # Not run on multi_tensor's flat buffers: its mask names leaves of the params tree.
    elementwise = False

    eta: Any = 0.01
    mask: Any = static(None)

    def __post_init__(self):
        check_range(self, "eta", low=0.0)
        object.__setattr__(self, "mask", freeze_tree(self.mask))

    def init(self, params):
        del params
        return EmptyState()

    def update(self, updates, state, params=None, **extra_args):
        del extra_args
        _require_params(self, params)
        mask = True if self.mask is None else resolve_tree(self.mask, params)

        def operator(p, on):  # T_w: |w| + eta on the masked-in leaves, the identity elsewhere
            return jnp.abs(up(p)) + hp(self.eta, p) if on else jnp.ones((), up(p).dtype)

        # The mask may be a prefix of the params' structure, as masked's: a flag per subtree.
        t = jax.tree.map(lambda on, sub: jax.tree.map(lambda p: operator(p, on), sub), mask, params)
        t_g = jax.tree.map(lambda t, g: t * up(g), t, updates)
        t2_g = jax.tree.map(jnp.multiply, t, t_g)
        return tree_cast_like(tree_divide_by_norm(t2_g, t_g), updates), state


def scale_by_asam(eta: float = 0.01, *, mask: Any = None) -> ScaleByAsam:
    """Adaptive SAM's ascent direction, scale-invariant: ``normalize`` with T_w = |w| + eta.

    Update rule, elementwise, with w the params and norms over all leaves::

        T = |w| + eta                          (1 on leaves the mask leaves out)
        u <- T^2 g / ||T g||_2

    ``chain(scale_by_asam(eta), sgd(rho))`` is ASAM's adversarial optimizer
    inside :func:`sam` (see :func:`asam`): the perturbation is
    ``eps = rho T^2 g / ||T g||``. ``eta >= 0`` keeps zero weights perturbable;
    ``mask`` (a tree of booleans or a function of the params, as in
    :func:`masked`) says where T applies: everywhere by default, as the paper's
    Algorithm 1. The authors' code applies T to tensors named ``weight`` only
    (biases get T = 1): ``mask=gradtx.masks.excluding("bias")`` is that. A zero
    ``T g`` gives a zero update (the authors add 1e-16 to the norm instead).
    The update needs the params.

    Args:
        eta: added to |w| in T, >= 0. Default 0.01.
        mask: where T applies, a tree of booleans or a function of the params, None
            for everywhere. Default None.

    Reference: Kwon, Kim, Park, Choi, *ASAM: Adaptive Sharpness-Aware
    Minimization for Scale-Invariant Learning of Deep Neural Networks*, ICML 2021.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.scale_by_asam(0.01)
    >>> params = {"w": jnp.array([1.0, 2.0])}
    >>> u, _ = tx.update({"w": jnp.array([1.0, 1.0])}, tx.init(params), params)
    >>> [round(float(v), 4) for v in u["w"]]
    [0.4535, 1.796]
    """
    return ScaleByAsam(eta=eta, mask=mask)


class SAMState(NamedTuple):
    """``steps_since_sync`` counts the calls since the last outer step (0 in opaque mode).

    ``cache`` holds the outer params, where the adversarial steps started (None
    in opaque mode); ``opt_state`` and ``adv_state`` are the two optimizers'.
    """

    steps_since_sync: jax.Array
    opt_state: Any
    adv_state: Any
    cache: Any


def _negate(tree: Any) -> Any:
    return jax.tree.map(jnp.negative, tree)


class Sam(Transform):
    """SAM: adversarial steps by ``adv_optimizer``, then an outer step by ``optimizer``."""

    integer_leaves = "refuse"  # it does arithmetic on the params

    optimizer: Transform
    adv_optimizer: Transform
    sync_period: int = static(2)
    reset_state: bool = static(True)
    opaque_mode: bool = static(False)
    batch_axis_name: Any = static(None)

    def __post_init__(self):
        object.__setattr__(self, "optimizer", as_transform(self.optimizer))
        object.__setattr__(self, "adv_optimizer", as_transform(self.adv_optimizer))
        # Below 2**31: the count of steps since the last sync is int32.
        check_range(self, "sync_period", low=1, high=2**31 - 1, integer=True)
        object.__setattr__(self, "sync_period", int(self.sync_period))  # range() in opaque mode

    def init(self, params):
        return SAMState(
            zero_count(),
            self.optimizer.init(params),
            self.adv_optimizer.init(params),
            None if self.opaque_mode else jax.tree.map(jnp.copy, params),  # donation-safe
        )

    def update(self, updates, state, params=None, *, grad_fn=None, **extra_args):
        _require_params(self, params)
        if self.opaque_mode:
            return self._opaque_update(updates, state, params, grad_fn, extra_args)
        return self._transparent_update(updates, state, params, extra_args)

    def _transparent_update(self, updates, state, params, extra_args):
        first = state.steps_since_sync == 0
        last = state.steps_since_sync == self.sync_period - 1
        # The outer params: this call's when a cycle starts here (optax keeps the previous
        # call's, which makes sync_period=1 return to them at every step).
        outer = jax.tree.map(lambda p, c: jnp.where(first, p, c), params, state.cache)

        def ascend():
            adv_updates, adv_state = self.adv_optimizer.update(
                updates, state.adv_state, params, **extra_args
            )
            return _negate(adv_updates), state.opt_state, adv_state

        def descend():
            opt_updates, opt_state = self.optimizer.update(
                updates, state.opt_state, outer, **extra_args
            )
            # Back from the adversarial params to the outer ones, then the outer step.
            new_updates = jax.tree.map(
                lambda c, p, u: (up(c) - up(p) + up(u)).astype(u.dtype), outer, params, opt_updates
            )
            adv_state = self.adv_optimizer.init(params) if self.reset_state else state.adv_state
            return new_updates, opt_state, adv_state

        new_updates, opt_state, adv_state = jax.lax.cond(last, descend, ascend)
        steps = (state.steps_since_sync + 1) % jnp.asarray(self.sync_period, jnp.int32)
        return new_updates, SAMState(steps.astype(jnp.int32), opt_state, adv_state, outer)

    def _opaque_update(self, updates, state, params, grad_fn, extra_args):
        if grad_fn is None:
            fail(
                self,
                "opaque_mode",
                "update needs the gradient function as the keyword argument grad_fn=, "
                "called as grad_fn(params, i) for adversarial step i: "
                "update(grads, state, params, grad_fn=jax.grad(lambda p, i: loss(p, batch)))",
            )
        adv_params, grads, adv_state = params, updates, state.adv_state
        for i in range(self.sync_period - 1):
            adv_updates, adv_state = self.adv_optimizer.update(
                grads, adv_state, adv_params, **extra_args
            )
            adv_params = apply_updates(adv_params, _negate(adv_updates))
            grads = grad_fn(adv_params, i)
            if self.batch_axis_name is not None:
                grads = jax.lax.pmean(grads, axis_name=self.batch_axis_name)
        if self.reset_state:
            adv_state = self.adv_optimizer.init(params)
        new_updates, opt_state = self.optimizer.update(grads, state.opt_state, params, **extra_args)
        return new_updates, SAMState(zero_count(), opt_state, adv_state, None)


def sam(
    optimizer: Any,
    adv_optimizer: Any,
    sync_period: int = 2,
    reset_state: bool = True,
    opaque_mode: bool = False,
    batch_axis_name: str | None = None,
) -> Sam:
    """Sharpness-aware minimisation around any optimizer, as ``optax.contrib.sam``.

    Update rule for one cycle of ``sync_period`` calls, w the outer params
    (kept in the state as ``cache``), g(x) the gradient at x::

        x_0 = w
        x_k = x_{k-1} - adv_optimizer(g(x_{k-1}))     k = 1 .. sync_period - 1 (ascent)
        w  <- w + optimizer(g(x_{sync_period - 1}))    (the outer step, from w)

    With ``adv_optimizer = chain(normalize(), sgd(rho))`` and ``sync_period=2``
    this is Foret et al.'s SAM: ``w <- w + optimizer(g(w + rho g / ||g||))``.
    In transparent mode (the default) each call is one step of the cycle: the
    loop applies its updates (an ascent, or the way back to w plus the outer
    step) and passes the gradient at the params it holds. In ``opaque_mode``
    each call is a whole cycle: the ascent runs inside, calling
    ``update(..., grad_fn=f)`` with ``f(params, i)`` the gradient at adversarial
    step i (a closure over the batch), and only the outer update comes back;
    needed when the model has other state (BatchNorm statistics).
    ``reset_state`` re-initialises the adversarial optimizer after each
    cycle; ``batch_axis_name`` pmeans ``grad_fn``'s gradients (opaque mode).
    The outer optimizer sees the outer params (weight decay on w).

    Differences from optax: with ``sync_period=1`` (no ascent: the plain
    optimizer) optax's transparent mode steps from the previous call's params;
    a zero gradient is no ascent with :func:`normalize` (optax: NaN); states
    keep their dtypes (optax's selection turns boolean state into integers).

    Args:
        optimizer: the outer optimizer, a gradtx or optax transform.
        adv_optimizer: the ascent optimizer (its updates are negated), e.g.
            ``chain(normalize(), sgd(rho))``.
        sync_period: calls per cycle (ascents + 1), an integer >= 1. Default 2.
        reset_state: re-initialise ``adv_optimizer`` after each cycle. Default True.
        opaque_mode: run the whole cycle in one call, with ``grad_fn=``. Default False.
        batch_axis_name: axis to pmean ``grad_fn``'s gradients over (opaque mode),
            or None. Default None.

    Reference: Foret, Kleiner, Mobahi, Neyshabur, *Sharpness-Aware Minimization
    for Efficiently Improving Generalization*, ICLR 2021.

    A training step in transparent mode:

    >>> import gradtx, jax, jax.numpy as jnp
    >>> loss = lambda p: jnp.sum((p["w"] - 1.0) ** 2)
    >>> tx = gradtx.sam(gradtx.sgd(0.1), gradtx.chain(gradtx.normalize(), gradtx.sgd(0.05)))
    >>> params = {"w": jnp.zeros(2)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # the ascent, then the outer step taken from the original params
    ...     updates, state = tx.update(jax.grad(loss)(params), state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> params["w"]
    Array([0.20707107, 0.20707107], dtype=float32)
    """
    return Sam(
        optimizer=optimizer,
        adv_optimizer=adv_optimizer,
        sync_period=sync_period,
        reset_state=reset_state,
        opaque_mode=opaque_mode,
        batch_axis_name=batch_axis_name,
    )


def _check_nonnegative(function: str, arg: str, value: Any) -> None:
    """A recipe's own check of a Python number, so that its error names the recipe."""
    if isinstance(value, (int, float, np.number)) and not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{function}({arg}={value!r}): {arg} must be a finite number >= 0")


def asam(
    optimizer: Any,
    rho: float = 0.5,
    eta: float = 0.01,
    sync_period: int = 2,
    reset_state: bool = True,
    opaque_mode: bool = False,
    batch_axis_name: str | None = None,
    *,
    mask: Any = None,
) -> Sam:
    """Adaptive SAM: :func:`sam` whose ascent is scaled by the weights' magnitudes.

    Update rule (sync_period=2), elementwise with T_w = |w| + eta::

        eps = rho T_w^2 g(w) / ||T_w g(w)||_2
        w  <- w + optimizer(g(w + eps))

    It is ``sam(optimizer, chain(scale_by_asam(eta, mask=mask), sgd(rho)), ...)``;
    the other arguments are :func:`sam`'s. The perturbation's neighbourhood
    scales with the weights, so that rescaling a layer (as ReLU networks allow)
    does not change the sharpness ASAM minimises. ``rho >= 0``, ``eta >= 0``;
    the defaults are those of the authors' ``ASAM`` class (their README trains
    CIFAR-10 with rho = 0.5 and CIFAR-100 with rho = 1.0; SAM's rho is ten times
    smaller). ``mask`` says where T applies (see :func:`scale_by_asam`; the
    authors' code: every tensor but biases).

    Args:
        optimizer: the outer optimizer, a gradtx or optax transform.
        rho: radius of the ascent step, >= 0. Default 0.5.
        eta: added to |w| in T, >= 0. Default 0.01.
        sync_period: calls per cycle (ascents + 1), an integer >= 1. Default 2.
        reset_state: re-initialise the adversarial optimizer after each cycle.
            Default True.
        opaque_mode: run the whole cycle in one call, with ``grad_fn=``. Default False.
        batch_axis_name: axis to pmean ``grad_fn``'s gradients over (opaque mode),
            or None. Default None.
        mask: where T applies (see :func:`scale_by_asam`), None for everywhere.
            Default None.

    Reference: Kwon, Kim, Park, Choi, *ASAM: Adaptive Sharpness-Aware
    Minimization for Scale-Invariant Learning of Deep Neural Networks*, ICML 2021.

    >>> import gradtx, jax, jax.numpy as jnp
    >>> loss = lambda p: jnp.sum((p["w"] - 1.0) ** 2)
    >>> tx = gradtx.asam(gradtx.sgd(0.1), rho=0.05)
    >>> params = {"w": jnp.array([0.5, 2.0])}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # the ascent, then the outer step from the original params
    ...     updates, state = tx.update(jax.grad(loss)(params), state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> [round(float(v), 4) for v in params["w"]]
    [0.6006, 1.7801]
    """
    _check_nonnegative("asam", "rho", rho)
    _check_nonnegative("asam", "eta", eta)
    return sam(
        optimizer,
        chain(scale_by_asam(eta, mask=mask), sgd(rho)),
        sync_period=sync_period,
        reset_state=reset_state,
        opaque_mode=opaque_mode,
        batch_axis_name=batch_axis_name,
    )
