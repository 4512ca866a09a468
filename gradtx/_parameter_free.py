"""Step sizes estimated while training: Prodigy, D-Adaptation, Polyak, MoMo, DoG, DoWG, plateaus.

Each estimate lives in the state under optax's name, so it can be logged with
``gradtx.tree_get``: Prodigy's and D-Adaptation's d (``estim_lr``), DoG's r
(``max_dist``), DoWG's squared distance (``estim_sq_dist``), MoMo's lower bound
(``lb``), the plateau's ``scale``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._adam import _check_betas as _check_adam_betas
from ._base import check_choice, check_range, fail, fail_missing, static, Transform
from ._combine import Chain, identity, named_recipe, recipe
from ._regularize import _require_params, add_decayed_weights
from ._scale import scale_by_learning_rate, value_at
from ._tree import (
    bias_correction,
    default_float,
    ema,
    hp,
    safe_increment,
    tree_cast,
    tree_global_norm,
    tree_map_unzip,
    tree_scale,
    tree_squares_like,
    tree_vdot,
    tree_widen,
    tree_zeros_like,
    up,
    zero_count,
)

# optax compares |g|^2 + eps with float64's epsilon whatever the dtype (Polyak's step).
_FLOAT64_EPS = float(np.finfo(np.float64).eps)


def require_value(transform: Transform, value: Any) -> None:
    """Raises the standard error for a transform updated without ``value=`` (the loss)."""
    if value is None:
        fail_missing(
            transform,
            "the loss at params as the keyword argument value=",
            "update(updates, state, params, value=loss) (optax's convention)",
        )


def _check_betas(obj: Transform, arg: str = "betas") -> None:
    """Each of a tuple of decays in [0, 1)."""
    betas = getattr(obj, arg)
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        fail(obj, arg, f"{arg} must be a pair (beta1, beta2)")
    for beta in betas:
        if isinstance(beta, (int, float)) and not 0 <= beta < 1:
            fail(obj, arg, f"each of {arg} must be in [0, 1)")


def _check_d_adaptation(obj: Transform) -> None:
    """The arguments Prodigy and D-Adaptation share."""
    _check_betas(obj)
    check_range(obj, "learning_rate", low=0.0)
    check_range(obj, "eps", low=0.0, low_open=True)
    check_range(obj, "estim_lr0", low=0.0, low_open=True)
    check_range(obj, "growth_rate", low=1.0, allow_inf=True)
    check_range(obj, "weight_decay", low=0.0)


def _scalar(value: Any) -> jax.Array:
    return jnp.asarray(value, default_float())


def _adam_step(scale, exp_avg, exp_avg_sq, eps, decay, params, like):
    """``-decay * p - scale * exp_avg / (sqrt(exp_avg_sq) + eps)``, in like's dtype."""

    def leaf(m, v, p, u):
        step = -hp(decay, m) * up(p) - hp(scale, m) * up(m) / (jnp.sqrt(up(v)) + hp(eps, m))
        return step.astype(u.dtype)

    return jax.tree.map(leaf, exp_avg, exp_avg_sq, params, like)


def _l1(tree: Any) -> jax.Array:
    """The sum of absolute values of all leaves, accumulated in at least float32."""
    return sum((jnp.sum(jnp.abs(up(x))) for x in jax.tree.leaves(tree)), _scalar(0.0))


def _skip_without_progress(state, new_state, new_updates, active, progress):
    """The authors' early return: before any gradient (|s|_1 = 0) or at lr 0, no step.

    Nothing moves and the step is not counted (``taken``, d, the numerator stay);
    the moments are updated as the authors' code does before it returns, except at lr 0.
    """
    fresh = ("exp_avg", "exp_avg_sq", "grad_sum")
    kept = state._replace(
        count=new_state.count,
        **{
            name: jax.tree.map(
                lambda new, old: jnp.where(active, new, old),
                getattr(new_state, name),
                getattr(state, name),
            )
            for name in fresh
        },
    )
    skip = ~(active & progress)
    new_state = jax.tree.map(lambda old, new: jnp.where(skip, old, new), kept, new_state)
    return jax.tree.map(lambda u: jnp.where(skip, jnp.zeros_like(u), u), new_updates), new_state


# -- Prodigy ------------------------------------------------------------------------


class ProdigyState(NamedTuple):
    """``estim_lr`` is d, the distance estimate the step is scaled by (optax's name).

    ``max_estim_lr`` is the largest estimate so far (prodigyopt's d_max, which d
    follows at most ``growth_rate`` times faster per step); ``count`` counts
    updates (the schedule's step), ``taken`` the steps taken (for the bias
    correction: prodigyopt does not count a step it skips).
    """

    exp_avg: Any
    exp_avg_sq: Any
    grad_sum: Any
    params0: Any
    estim_lr: jax.Array
    max_estim_lr: jax.Array
    numerator_weighted: jax.Array
    count: jax.Array
    taken: jax.Array


def _sliced(x: jax.Array, every: int) -> jax.Array:
    """Every ``every``-th element of the flattened leaf (all of it, unflattened, for 1)."""
    return x if every == 1 else jnp.ravel(x)[::every]


class ScaleByProdigy(Transform):
    """Adam whose step is scaled by Prodigy's running estimate d of the distance to a solution."""

    learning_rate: Any = 1.0
    betas: tuple = (0.9, 0.999)
    beta3: Any = None
    eps: float = 1e-8
    estim_lr0: float = 1e-6
    estim_lr_coef: float = 1.0
    growth_rate: float = math.inf
    weight_decay: float = 0.0
    safeguard_warmup: bool = static(False)
    bias_correction: bool = static(True)
    # "prodigyopt": the package's skipped steps and its beta1 = 0 step (compat.pytorch.prodigy).
    variant: str = static("optax")
    slice_p: int = static(1)  # the package's: d is estimated on every slice_p-th element

    def __post_init__(self):
        _check_d_adaptation(self)
        check_choice(self, "variant", ("optax", "prodigyopt"))
        if self.beta3 is not None:
            check_range(self, "beta3", low=0.0, high=1.0, high_open=True)
        check_range(self, "estim_lr_coef", low=0.0, low_open=True)
        if not isinstance(self.slice_p, int) or self.slice_p < 1:
            fail(self, "slice_p", "slice_p must be a positive integer")

    def init(self, params):
        d0 = _scalar(self.estim_lr0)
        return ProdigyState(
            exp_avg=tree_zeros_like(params),
            exp_avg_sq=tree_squares_like(params),
            grad_sum=jax.tree.map(lambda p: tree_zeros_like(_sliced(p, self.slice_p)), params),
            params0=jax.tree.map(lambda p: jnp.copy(_sliced(p, self.slice_p)), params),
            estim_lr=d0,
            max_estim_lr=jnp.copy(d0),
            numerator_weighted=_scalar(0.0),
            count=zero_count(),
            taken=zero_count(),
        )

    def update(self, updates, state, params=None, **extra_args):
        del extra_args
        _require_params(self, params)
        b1, b2 = self.betas
        b3 = b2**0.5 if self.beta3 is None else self.beta3
        d, d0 = state.estim_lr, _scalar(self.estim_lr0)
        lr = value_at(self.learning_rate, state.count)
        taken = safe_increment(state.taken)
        bc = jnp.sqrt(bias_correction(b2, taken)) / bias_correction(b1, taken)
        dlr = d * lr * bc if self.bias_correction else d * lr
        # prodigyopt weighs the sum by d itself during warm-up, not by d * lr.
        weight = d if self.safeguard_warmup else dlr
        every = self.slice_p

        def moments(g, m_old, v_old):
            dg = hp(d, g) * up(g)
            m = hp(b1, g) * up(m_old) + hp(1 - b1, g) * dg
            v = hp(b2, g) * up(v_old) + hp(1 - b2, g) * dg * dg
            return m.astype(m_old.dtype), v.astype(v_old.dtype)

        def grad_sum(g, s):  # over every slice_p-th element, as prodigyopt's slice_p
            dg = hp(d, g) * up(_sliced(g, every))
            return (hp(b3, g) * up(s) + hp(weight, g) * dg / hp(d0, g)).astype(s.dtype)

        exp_avg, exp_avg_sq = tree_map_unzip(moments, updates, state.exp_avg, state.exp_avg_sq)
        s = jax.tree.map(grad_sum, updates, state.grad_sum)
        distance = jax.tree.map(lambda p0, p: up(p0) - up(_sliced(p, every)), state.params0, params)
        sliced_grads = jax.tree.map(lambda g: _sliced(g, every), updates)
        dot = tree_vdot(sliced_grads, distance)
        numerator = _scalar(b3) * state.numerator_weighted + (d / d0) * dlr * dot
        denominator = _l1(s)
        # No gradient yet: 0 / 0. optax takes NaN as d from then on; keep d instead.
        progress = denominator > 0
        safe = jnp.where(progress, denominator, 1.0)
        d_hat = jnp.where(progress, self.estim_lr_coef * numerator / safe, d)
        max_d = jnp.maximum(state.max_estim_lr, d_hat)
        # prodigyopt lets d jump to the first estimate, then grow at most growth_rate-fold.
        new_d = jnp.where(d == d0, jnp.maximum(d, d_hat), d)
        new_d = jnp.minimum(max_d, new_d * self.growth_rate)
        first = exp_avg
        if self.variant == "prodigyopt":  # without momentum it steps along the new d * g
            first = jax.tree.map(
                lambda m, g: jnp.where(hp(b1, g) == 0, hp(new_d, g) * up(g), up(m)),
                exp_avg,
                updates,
            )
        new_updates = _adam_step(
            dlr, first, exp_avg_sq, new_d * self.eps, dlr * self.weight_decay, params, updates
        )
        new_state = ProdigyState(
            exp_avg, exp_avg_sq, s, state.params0, new_d, max_d, numerator,
            safe_increment(state.count), taken,
        )  # fmt: skip
        if self.variant == "optax":
            return new_updates, new_state
        return _skip_without_progress(state, new_state, new_updates, lr > 0, progress)


@recipe
def prodigy(
    learning_rate: Any = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    beta3: float | None = None,
    eps: float = 1e-8,
    estim_lr0: float = 1e-6,
    estim_lr_coef: float = 1.0,
    weight_decay: float = 0.0,
    safeguard_warmup: bool = False,
) -> Chain:
    """Prodigy: Adam whose learning rate is estimated on the fly, as ``optax.contrib.prodigy``.

    Update rule, at step t = 1, 2, ... (beta3 = sqrt(beta2) when None; d_0 = estim_lr0)::

        dlr_t = d_t * lr_t * sqrt(1 - beta2**t) / (1 - beta1**t)
        m_t = beta1 m + (1 - beta1) d_t g;     v_t = beta2 v + (1 - beta2) d_t**2 g**2
        s_t = beta3 s + (d_t / d_0) (safeguard_warmup ? d_t : dlr_t) g
        r_t = beta3 r + (d_t / d_0) dlr_t <g, p_0 - p>
        d_{t+1} = max(d_t, estim_lr_coef * r_t / |s_t|_1)
        u_t = -dlr_t (m_t / (sqrt(v_t) + d_{t+1} eps) + weight_decay p)

    ``learning_rate`` scales the estimated rate (a number or a schedule; 1 is the
    intended peak). d is ``gradtx.tree_get(state, "estim_lr")``. The update
    needs the params.

    Args:
        learning_rate: multiplier of the estimated step, a number or a schedule, >= 0.
            Default 1.0.
        betas: ``(beta1, beta2)``, each in [0, 1). Default (0.9, 0.999).
        beta3: decay of s and r, in [0, 1), or None for sqrt(beta2). Default None.
        eps: > 0. Default 1e-8.
        estim_lr0: d_0, > 0. Default 1e-6.
        estim_lr_coef: multiplier of the estimate, > 0. Default 1.0.
        weight_decay: decoupled decay, >= 0. Default 0.0.
        safeguard_warmup: leave lr out of s. Default False.

    >>> import gradtx, jax.numpy as jnp
    >>> params = {"w": jnp.ones(2)}
    >>> tx = gradtx.prodigy()
    >>> state = tx.init(params)
    >>> for _ in range(20):  # on |w|^2 / 2, whose gradient is w: d grows from 1e-6
    ...     updates, state = tx.update(params, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> bool(gradtx.tree_get(state, "estim_lr") > 5e-4)
    True

    Differences from optax: d and the scalar sums are float32 (float64 under x64)
    whatever the params' dtype; where no gradient has been seen yet (|s|_1 = 0)
    d stays as it is (optax divides 0 by 0 and d is NaN from then on).
    :func:`gradtx.compat.pytorch.prodigy` is the authors' ``Prodigy``
    (no bias correction by default, coupled weight decay, growth_rate, d_coef).

    Reference: Mishchenko & Defazio, *Prodigy: An Expeditiously Adaptive
    Parameter-Free Learner*, arXiv:2306.06101.
    """
    return named_recipe(
        "prodigy",
        ScaleByProdigy(
            learning_rate=learning_rate,
            betas=betas,
            beta3=beta3,
            eps=eps,
            estim_lr0=estim_lr0,
            estim_lr_coef=estim_lr_coef,
            weight_decay=weight_decay,
            safeguard_warmup=safeguard_warmup,
        ),
    )


# -- D-Adaptation (Adam) ---------------------------------------------------------------


class DAdaptAdamWState(NamedTuple):
    """``estim_lr`` is d, D-Adaptation's lower bound on the distance to a solution."""

    exp_avg: Any
    exp_avg_sq: Any
    grad_sum: Any
    estim_lr: jax.Array
    numerator_weighted: jax.Array
    count: jax.Array
    taken: jax.Array


class ScaleByDadaptAdam(Transform):
    """Adam whose step is scaled by D-Adaptation's running estimate d."""

    learning_rate: Any = 1.0
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    estim_lr0: float = 1e-6
    growth_rate: float = math.inf
    weight_decay: float = 0.0
    bias_correction: bool = static(True)
    variant: str = static("optax")  # "dadaptation": the package's skipped steps

    def __post_init__(self):
        _check_d_adaptation(self)
        check_choice(self, "variant", ("optax", "dadaptation"))

    def init(self, params):
        return DAdaptAdamWState(
            exp_avg=tree_zeros_like(params),
            exp_avg_sq=tree_squares_like(params),
            grad_sum=tree_zeros_like(params),
            estim_lr=_scalar(self.estim_lr0),
            numerator_weighted=_scalar(0.0),
            count=zero_count(),
            taken=zero_count(),
        )

    def update(self, updates, state, params=None, **extra_args):
        del extra_args
        _require_params(self, params)
        b1, b2 = self.betas
        sb2 = b2**0.5
        d = state.estim_lr
        lr = value_at(self.learning_rate, state.count)
        taken = safe_increment(state.taken)
        bc = jnp.sqrt(bias_correction(b2, taken)) / bias_correction(b1, taken)
        dlr = d * lr * bc if self.bias_correction else d * lr

        def leaf(g, m, v, s):
            g32 = up(g)
            weighted = up(s) / (jnp.sqrt(up(v)) + hp(self.eps, g))
            m = (hp(b1, g) * up(m) + hp(1 - b1, g) * hp(dlr, g) * g32).astype(m.dtype)
            v = (hp(b2, g) * up(v) + hp(1 - b2, g) * g32 * g32).astype(v.dtype)
            s = (hp(sb2, g) * up(s) + hp(1 - sb2, g) * hp(dlr, g) * g32).astype(s.dtype)
            return m, v, s, weighted

        exp_avg, exp_avg_sq, grad_sum, weighted = tree_map_unzip(
            leaf, updates, state.exp_avg, state.exp_avg_sq, state.grad_sum
        )
        numerator = _scalar(sb2) * state.numerator_weighted + _scalar(1 - sb2) * dlr * tree_vdot(
            updates, weighted
        )
        sk_l1 = _l1(grad_sum)
        # No gradient yet: 0 / 0. optax takes NaN as d from then on; keep d instead.
        progress = sk_l1 > 0
        d_hat = jnp.where(
            progress, numerator / (_scalar(1 - sb2) * jnp.where(progress, sk_l1, 1.0)), d
        )
        new_d = jnp.maximum(d, jnp.minimum(d_hat, d * self.growth_rate))
        new_updates = _adam_step(
            1.0, exp_avg, exp_avg_sq, self.eps, dlr * self.weight_decay, params, updates
        )
        new_state = DAdaptAdamWState(
            exp_avg, exp_avg_sq, grad_sum, new_d, numerator, safe_increment(state.count), taken
        )
        if self.variant == "optax":
            return new_updates, new_state
        return _skip_without_progress(state, new_state, new_updates, lr > 0, progress)


@recipe
def dadapt_adamw(
    learning_rate: Any = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    estim_lr0: float = 1e-6,
    weight_decay: float = 0.0,
) -> Chain:
    """AdamW with D-Adaptation's learning rate, as ``optax.contrib.dadapt_adamw``.

    Update rule, at step t = 1, 2, ... (sb2 = sqrt(beta2); d_0 = estim_lr0)::

        dlr_t = d_t * lr_t * sqrt(1 - beta2**t) / (1 - beta1**t)
        r_t = sb2 r + (1 - sb2) dlr_t <g, s / (sqrt(v) + eps)>     (s, v of step t - 1)
        m_t = beta1 m + (1 - beta1) dlr_t g;     v_t = beta2 v + (1 - beta2) g**2
        s_t = sb2 s + (1 - sb2) dlr_t g
        d_{t+1} = max(d_t, r_t / ((1 - sb2) |s_t|_1))
        u_t = -m_t / (sqrt(v_t) + eps) - weight_decay dlr_t p

    d is ``gradtx.tree_get(state, "estim_lr")``. The update needs the params.

    Differences from optax: d and the scalar sums are float32 (float64 under x64)
    whatever the params' dtype; before any gradient (|s|_1 = 0) d stays as it is
    (optax: NaN). :func:`gradtx.compat.pytorch.dadapt_adam` is the authors'
    ``DAdaptAdam`` (no bias correction and coupled weight decay by default).

    Args:
        learning_rate: multiplier of the estimated step, a number or a schedule, >= 0.
            Default 1.0.
        betas: ``(beta1, beta2)``, each in [0, 1). Default (0.9, 0.999).
        eps: added to sqrt(v), > 0. Default 1e-8.
        estim_lr0: d_0, the initial distance estimate, > 0. Default 1e-6.
        weight_decay: decoupled decay, >= 0. Default 0.0.

    Reference: Defazio & Mishchenko, *Learning-Rate-Free Learning by
    D-Adaptation*, ICML 2023, arXiv:2301.07733.

    >>> import gradtx, jax.numpy as jnp
    >>> x = jnp.array([1.0, 2.0])
    >>> tx = gradtx.dadapt_adamw(estim_lr0=0.1)
    >>> u, state = tx.update(2 * x, tx.init(x), x)
    >>> u, state = tx.update(2 * x, state, x + u)
    >>> round(float(gradtx.tree_get(state, "estim_lr")), 4)
    0.4268
    """
    return named_recipe(
        "dadapt_adamw",
        ScaleByDadaptAdam(
            learning_rate=learning_rate,
            betas=betas,
            eps=eps,
            estim_lr0=estim_lr0,
            weight_decay=weight_decay,
        ),
    )


# -- Polyak ----------------------------------------------------------------------------


class ScaleByPolyakState(NamedTuple):
    """``step_size`` is the Polyak step of the last update."""

    step_size: jax.Array


class ScaleByPolyak(Transform):
    """Scales updates by Polyak's step ``(f - f_min) / |u|^2``, capped."""

    elementwise = True

    f_min: float = 0.0
    max_learning_rate: float = 1.0
    eps: float = 0.0
    variant: str = static("sps")

    def __post_init__(self):
        check_choice(self, "variant", ("sps", "sps+"))
        check_range(self, "max_learning_rate", low=0.0)
        check_range(self, "eps", low=0.0)
        check_range(self, "f_min", allow_inf=False)

    def init(self, params):
        del params
        return ScaleByPolyakState(_scalar(0.0))

    def update(self, updates, state, params=None, *, value=None, **extra_args):
        del params, extra_args
        require_value(self, value)
        sq_norm = tree_vdot(updates, updates)
        gap = jnp.asarray(value - self.f_min).astype(sq_norm.dtype)
        if self.variant == "sps+":
            gap = jnp.maximum(gap, 0.0)
        denominator = sq_norm + self.eps
        step = jnp.where(
            denominator <= _FLOAT64_EPS,
            0.0,
            # NaN stays NaN: the logged step of a NaN gradient is NaN, as its update.
            jnp.minimum(
                gap / jnp.where(denominator == 0, 1.0, denominator), self.max_learning_rate
            ),
        )
        return tree_scale(step, updates), ScaleByPolyakState(step.astype(state.step_size.dtype))


def scale_by_polyak(
    f_min: float = 0.0, max_learning_rate: float = 1.0, eps: float = 0.0, variant: str = "sps"
) -> ScaleByPolyak:
    """Scales updates by Polyak's step size, as ``optax.scale_by_polyak``.

    Update rule, with f the loss passed as ``value=``::

        gap = f - f_min                    (sps+: max(f - f_min, 0))
        step = min(gap / (|u|^2 + eps), max_learning_rate);   0 where |u|^2 + eps <= 2.2e-16
        u <- step * u

    The update needs ``value=``; the step is ``gradtx.tree_get(state, "step_size")``
    (optax keeps no state).

    Args:
        f_min: a lower bound of the loss, finite. Default 0.0.
        max_learning_rate: the cap on the step, >= 0. Default 1.0.
        eps: added to |u|^2, >= 0. Default 0.0.
        variant: ``"sps"``, or ``"sps+"`` (the gap f - f_min clipped at 0). Default ``"sps"``.

    Reference: Loizou et al., *Stochastic Polyak Step-size for SGD*, AISTATS 2021;
    sps+: Garrigos et al., arXiv:2307.14528.

    >>> import gradtx, jax, jax.numpy as jnp
    >>> x = jnp.array([1.0, 2.0])
    >>> value, grad = jax.value_and_grad(lambda x: jnp.sum(x**2))(x)
    >>> tx = gradtx.scale_by_polyak()
    >>> u, state = tx.update(grad, tx.init(x), x, value=value)
    >>> [round(float(v), 4) for v in u], round(float(gradtx.tree_get(state, "step_size")), 4)
    ([0.5, 1.0], 0.25)
    """
    return ScaleByPolyak(f_min=f_min, max_learning_rate=max_learning_rate, eps=eps, variant=variant)


@recipe
def polyak_sgd(
    max_learning_rate: float = 1.0,
    scaling: Any = 1.0,
    f_min: float = 0.0,
    eps: float = 0.0,
    variant: str = "sps",
) -> Chain:
    """SGD with Polyak's step size, as ``optax.polyak_sgd``.

    Update rule, with f the loss passed as ``value=`` and s_t = scaling(t)::

        step = min((f - f_min) / (s_t**2 |g|^2 + eps), max_learning_rate)
        u <- -s_t * step * g

    Args:
        max_learning_rate: the cap on the step, >= 0. Default 1.0.
        scaling: s, a number or a schedule, >= 0. Default 1.0.
        f_min: a lower bound of the loss, finite. Default 0.0.
        eps: added to the denominator, >= 0. Default 0.0.
        variant: ``"sps"``, or ``"sps+"`` (the gap f - f_min clipped at 0).
            Default ``"sps"``.

    >>> import gradtx, jax, jax.numpy as jnp
    >>> def f(x): return jnp.sum(x ** 2)
    >>> x = jnp.asarray([1.0, 2.0, 3.0])
    >>> tx = gradtx.polyak_sgd()
    >>> value, grad = jax.value_and_grad(f)(x)
    >>> updates, state = tx.update(grad, tx.init(x), x, value=value)
    >>> f(gradtx.apply_updates(x, updates))
    Array(3.5, dtype=float32)

    As optax's, the chain ``scale_by_learning_rate(scaling)``, then
    :func:`scale_by_polyak`: the step is measured on the scaled gradient, so a
    ``scaling`` other than 1 enters squared in the denominator (optax's docstring
    writes ``s * min(gap / |g|^2, max_learning_rate)``, which its code does not do).

    Reference: Loizou et al., *Stochastic Polyak Step-size for SGD*, AISTATS 2021.
    """
    return named_recipe(
        "polyak_sgd",
        scale_by_learning_rate(scaling),
        scale_by_polyak(f_min, max_learning_rate, eps, variant),
    )


# -- MoMo ------------------------------------------------------------------------------


class MomoState(NamedTuple):
    """optax's fields: averages of the loss (``barf``), of <g, p> (``gamma``) and of g.

    ``lb`` is the lower bound on the loss the step aims at (estimated with
    ``adapt_lower_bound``); ``count`` counts updates.
    """

    exp_avg: Any
    barf: jax.Array
    gamma: jax.Array
    lb: jax.Array
    count: jax.Array


class MomoAdamState(NamedTuple):
    """:class:`MomoState` with Adam's second moment ``exp_avg_sq``."""

    exp_avg: Any
    exp_avg_sq: Any
    barf: jax.Array
    gamma: jax.Array
    lb: jax.Array
    count: jax.Array


def _check_momo(obj: Transform) -> None:
    check_range(obj, "learning_rate", low=0.0)
    check_range(obj, "lower_bound")
    check_range(obj, "weight_decay", low=0.0)


def _momo_step(obj, state, alpha, barf, gamma, iprod, sq_norm, bc1=1.0):
    """MoMo's step tau (at most alpha / bc1) and the lower bound, as optax orders the maths.

    ``sq_norm`` is |m|^2, in Adam's metric for momo_adam; bc1 = 1 for momo
    (each product or quotient by it is then exact, so both share this).
    """
    shrink = 1 + alpha * obj.weight_decay
    lb = state.lb if obj.adapt_lower_bound else _scalar(obj.lower_bound)
    if obj.adapt_lower_bound:  # the model fell below the bound: lower it to half the model
        cap = shrink * (barf - gamma) + iprod
        lower = jnp.maximum(cap / (2 * bc1 * shrink), obj.lower_bound)
        lb = jnp.where(cap < shrink * bc1 * lb, lower, lb)
    gap = jnp.maximum(shrink * (barf - bc1 * lb - gamma) + iprod, 0.0)
    # optax compares |m|^2 with float64's epsilon whatever the dtype.
    t1 = jnp.where(sq_norm <= _FLOAT64_EPS, 0.0, gap / jnp.where(sq_norm > 0, sq_norm, 1.0))
    tau = jnp.minimum(alpha / bc1, t1)
    if obj.adapt_lower_bound:
        lb = jnp.maximum(((barf + iprod - gamma) - 0.5 * tau * sq_norm) / bc1, obj.lower_bound)
    return tau, lb.astype(state.lb.dtype)


def _momo_update(alpha, weight_decay, tau, like, params, exp_avg, *precond):
    """``-alpha wd / (1 + alpha wd) p - tau m / precond`` (no precond for momo), in like's dtype."""
    decay = -(alpha * weight_decay) / (1 + alpha * weight_decay)

    def leaf(u, p, m, d=1.0):
        return (hp(decay, u) * up(p) - hp(tau, u) * up(m) / d).astype(u.dtype)

    return jax.tree.map(leaf, like, params, exp_avg, *precond)


class ScaleByMomo(Transform):
    """SGD with momentum whose step is MoMo's Polyak-type step, capped at the learning rate."""

    elementwise = True

    learning_rate: Any = 1.0
    beta: Any = 0.9
    lower_bound: Any = 0.0
    weight_decay: Any = 0.0
    adapt_lower_bound: bool = static(False)

    def __post_init__(self):
        _check_momo(self)
        check_range(self, "beta", low=0.0, high=1.0, high_open=True)

    def init(self, params):
        return MomoState(
            tree_zeros_like(params), _scalar(0.0), _scalar(0.0), _scalar(self.lower_bound),
            zero_count(),
        )  # fmt: skip

    def update(self, updates, state, params=None, *, value=None, **extra_args):
        del extra_args
        _require_params(self, params)
        require_value(self, value)
        # beta = 0 at the first step: the averages start at the first f, g and <g, p>.
        bt = jnp.where(state.count == 0, 0.0, self.beta)
        barf = bt * state.barf + (1 - bt) * jnp.asarray(value, state.barf.dtype)
        exp_avg = jax.tree.map(lambda m, g: ema(g, m, bt), state.exp_avg, updates)
        gamma = bt * state.gamma + (1 - bt) * tree_vdot(tree_widen(updates), tree_widen(params))
        alpha = value_at(self.learning_rate, state.count)
        m = tree_widen(exp_avg)
        tau, lb = _momo_step(
            self, state, alpha, barf, gamma, tree_vdot(m, tree_widen(params)), tree_vdot(m, m)
        )
        new_updates = _momo_update(alpha, self.weight_decay, tau, updates, params, exp_avg)
        return new_updates, MomoState(exp_avg, barf, gamma, lb, safe_increment(state.count))


@recipe
def momo(
    learning_rate: Any = 1.0,
    beta: float = 0.9,
    lower_bound: float = 0.0,
    weight_decay: float = 0.0,
    adapt_lower_bound: bool = False,
) -> Chain:
    """MoMo: SGD with momentum and a Polyak-type step, as ``optax.contrib.momo``.

    Update rule at step t = 1, 2, ..., with f the loss passed as ``value=``,
    lr_t = learning_rate(t - 1), lambda = weight_decay, f_* = lb, beta_1 = 0 and
    beta_t = beta after::

        m = beta_t m + (1 - beta_t) g;   barf = beta_t barf + (1 - beta_t) f
        gamma = beta_t gamma + (1 - beta_t) <g, p>
        tau = min(lr_t, max((1 + lr_t lambda)(barf - f_* - gamma) + <m, p>, 0) / |m|^2)
        u = -lr_t lambda / (1 + lr_t lambda) p - tau m          (tau = 0 where |m|^2 <= 2.2e-16)

    ``lower_bound`` is f_*, a lower bound of the loss (0 for most losses);
    with ``adapt_lower_bound`` f_* is estimated on the fly, starting there and
    never below it. The update needs the params and ``value=``; the bound is
    ``gradtx.tree_get(state, "lb")``.

    Args:
        learning_rate: the cap on the step, a number or a schedule, >= 0. Default 1.0.
        beta: the momentum, in [0, 1). Default 0.9.
        lower_bound: f_*, finite. Default 0.0.
        weight_decay: lambda, >= 0. Default 0.0.
        adapt_lower_bound: estimate f_* on the fly. Default False.

    >>> import gradtx, jax, jax.numpy as jnp
    >>> def f(x): return jnp.sum(x ** 2)
    >>> x = jnp.asarray([1.0, 2.0, 3.0])
    >>> tx = gradtx.momo()
    >>> value, grad = jax.value_and_grad(f)(x)
    >>> updates, state = tx.update(grad, tx.init(x), x, value=value)
    >>> f(gradtx.apply_updates(x, updates))
    Array(3.5, dtype=float32)

    Differences from optax: the scalars (barf, gamma, lb, the rate) are
    float32 (float64 under x64), not the params' lowest dtype or, for the
    rate, the schedule's (optax's schedules return float32 under x64);
    without ``adapt_lower_bound`` the bound is read from ``lower_bound``, so
    changing it takes effect (optax keeps the value ``init`` saw).

    Reference: Schaipp, Ohana, Eickenberg, Defazio, Gower, *MoMo: Momentum
    Models for Adaptive Learning Rates*, ICML 2024, arXiv:2305.07583.
    """
    return named_recipe(
        "momo",
        ScaleByMomo(
            learning_rate=learning_rate,
            beta=beta,
            lower_bound=lower_bound,
            weight_decay=weight_decay,
            adapt_lower_bound=adapt_lower_bound,
        ),
    )


class ScaleByMomoAdam(Transform):
    """Adam whose step is MoMo's Polyak-type step in Adam's metric, capped at the learning rate."""

    elementwise = True

    learning_rate: Any = 1e-2
    b1: Any = 0.9
    b2: Any = 0.999
    eps: Any = 1e-8
    lower_bound: Any = 0.0
    weight_decay: Any = 0.0
    adapt_lower_bound: bool = static(False)

    def __post_init__(self):
        _check_momo(self)
        _check_adam_betas(self)

    def init(self, params):
        return MomoAdamState(
            tree_zeros_like(params), tree_squares_like(params), _scalar(0.0), _scalar(0.0),
            _scalar(self.lower_bound), zero_count(),
        )  # fmt: skip

    def update(self, updates, state, params=None, *, value=None, **extra_args):
        del extra_args
        _require_params(self, params)
        require_value(self, value)
        b1, b2 = self.b1, self.b2
        count = safe_increment(state.count)
        bc1, bc2 = bias_correction(b1, count), bias_correction(b2, count)
        barf = b1 * state.barf + (1 - b1) * jnp.asarray(value, state.barf.dtype)

        def moments(g, m, v):  # optax's order: (1 - b2) g g, not (1 - b2) g^2
            g = up(g)
            new_m = hp(b1, g) * up(m) + hp(1 - b1, g) * g
            new_v = hp(b2, g) * up(v) + hp(1 - b2, g) * g * g
            return new_m.astype(m.dtype), new_v.astype(v.dtype)

        exp_avg, exp_avg_sq = tree_map_unzip(moments, updates, state.exp_avg, state.exp_avg_sq)
        precond = jax.tree.map(lambda v: hp(self.eps, v) + jnp.sqrt(up(v) / hp(bc2, v)), exp_avg_sq)
        direction = jax.tree.map(lambda m, d: up(m) / d, exp_avg, precond)
        gamma = b1 * state.gamma + (1 - b1) * tree_vdot(tree_widen(updates), tree_widen(params))
        alpha = value_at(self.learning_rate, state.count)
        tau, lb = _momo_step(
            self, state, alpha, barf, gamma, tree_vdot(tree_widen(exp_avg), tree_widen(params)),
            tree_vdot(tree_widen(exp_avg), tree_widen(direction)), bc1,
        )  # fmt: skip
        new_updates = _momo_update(alpha, self.weight_decay, tau, updates, params, exp_avg, precond)
        return new_updates, MomoAdamState(exp_avg, exp_avg_sq, barf, gamma, lb, count)


@recipe
def momo_adam(
    learning_rate: Any = 1e-2,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    lower_bound: float = 0.0,
    weight_decay: float = 0.0,
    adapt_lower_bound: bool = False,
) -> Chain:
    """MoMo-Adam: Adam(W) with a Polyak-type step, as ``optax.contrib.momo_adam``.

    Update rule, with f the loss passed as ``value=``, lr_t = learning_rate(t - 1),
    lambda = weight_decay, f_* = lb, at step t = 1, 2, ...::

        m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g g;   barf = b1 barf + (1 - b1) f
        gamma = b1 gamma + (1 - b1) <g, p>;   d = m / (eps + sqrt(v / (1 - b2**t)))
        tau = min(lr_t / (1 - b1**t),
                  max((1 + lr_t lambda)(barf - (1 - b1**t) f_* - gamma) + <m, p>, 0) / <m, d>)
        u = -lr_t lambda / (1 + lr_t lambda) p - tau d          (tau = 0 where <m, d> <= 2.2e-16)

    The update needs the params and ``value=``. Differences from optax: as :func:`momo`'s.

    Args:
        learning_rate: the cap on the step, a number or a schedule, >= 0. Default 1e-2.
        b1: decay of the first moment (and of barf, gamma), in [0, 1). Default 0.9.
        b2: decay of the second moment, in [0, 1). Default 0.999.
        eps: added to sqrt(v^), > 0. Default 1e-8.
        lower_bound: f_*, a lower bound of the loss, finite. Default 0.0.
        weight_decay: lambda, >= 0. Default 0.0.
        adapt_lower_bound: estimate f_* on the fly, starting at ``lower_bound`` and
            never below it. Default False.

    Reference: Schaipp, Ohana, Eickenberg, Defazio, Gower, *MoMo: Momentum
    Models for Adaptive Learning Rates*, ICML 2024, arXiv:2305.07583.

    >>> import gradtx, jax, jax.numpy as jnp
    >>> def f(x): return jnp.sum(x ** 2)
    >>> x = jnp.array([1.0, 2.0])
    >>> tx = gradtx.momo_adam(0.1)
    >>> value, grad = jax.value_and_grad(f)(x)
    >>> updates, state = tx.update(grad, tx.init(x), x, value=value)
    >>> round(float(f(gradtx.apply_updates(x, updates))), 4)
    4.42
    """
    return named_recipe(
        "momo_adam",
        ScaleByMomoAdam(
            learning_rate=learning_rate,
            b1=b1,
            b2=b2,
            eps=eps,
            lower_bound=lower_bound,
            weight_decay=weight_decay,
            adapt_lower_bound=adapt_lower_bound,
        ),
    )


# -- Distance over gradients -------------------------------------------------------


class DoGState(NamedTuple):
    """``max_dist`` is DoG's r, the largest distance from the initial params so far."""

    is_init_step: jax.Array
    init_params: Any
    max_dist: jax.Array
    sum_sq_norm_grads: jax.Array


DOG_INIT_STEPS = ("distance", "learning_rate", "heuristic")


class ScaleByDog(Transform):
    """Scales updates by DoG's step ``max_dist / sqrt(sum |g|^2 + eps)``."""

    init_step_type: str = static("heuristic")
    init_step_value: float = 1e-6
    eps: float = 1e-8

    def __post_init__(self):
        check_choice(self, "init_step_type", DOG_INIT_STEPS)
        check_range(self, "init_step_value", low=0.0, low_open=True)
        check_range(self, "eps", low=0.0)

    def init(self, params):
        if self.init_step_type == "distance":
            r_eps = _scalar(self.init_step_value)
        elif self.init_step_type == "heuristic":
            r_eps = _scalar(self.init_step_value) * (1 + tree_global_norm(params))
        else:
            r_eps = _scalar(0.0)
        return DoGState(
            is_init_step=jnp.ones([], bool),
            init_params=jax.tree.map(jnp.copy, params),
            max_dist=r_eps,
            sum_sq_norm_grads=_scalar(0.0),
        )

    def update(self, updates, state, params=None, **extra_args):
        del extra_args
        _require_params(self, params)
        distance = tree_global_norm(
            jax.tree.map(lambda a, b: tree_widen(a) - tree_widen(b), state.init_params, params)
        )
        max_dist = jnp.maximum(state.max_dist, distance)
        sum_sq = state.sum_sq_norm_grads + tree_vdot(tree_widen(updates), tree_widen(updates))
        step = max_dist / jnp.sqrt(sum_sq + self.eps)
        if self.init_step_type == "learning_rate":
            step = jnp.where(state.is_init_step, _scalar(self.init_step_value), step)
        new_state = DoGState(jnp.zeros([], bool), state.init_params, max_dist, sum_sq)
        return tree_scale(step, updates), new_state


def scale_by_dog(
    init_step: tuple[str, float] = ("heuristic", 1e-6), eps: float = 1e-8
) -> ScaleByDog:
    """Scales updates by DoG's step size, as ``optax.contrib.scale_by_dog``.

    Update rule::

        r_t = max(r_{t-1}, |p_t - p_0|);   G_t = G_{t-1} + |g_t|^2
        u_t <- r_t / sqrt(G_t + eps) * g_t

    with r_0 from ``init_step = (tag, value)``: ``("distance", r)``: r;
    ``("heuristic", a)``: a (1 + |p_0|); ``("learning_rate", lr)``: r_0 = 0 and the
    first step is lr * g. r is ``gradtx.tree_get(state, "max_dist")``. ``init``
    must see the real params (``heuristic``); the update needs the params.

    Args:
        init_step: a pair ``(tag, value)``, tag one of ``"distance"``,
            ``"learning_rate"``, ``"heuristic"``, value > 0. Default ``("heuristic", 1e-6)``.
        eps: >= 0. Default 1e-8.

    Reference: Ivgi, Hinder, Carmon, *DoG is SGD's Best Friend*, ICML 2023, arXiv:2302.12022.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.scale_by_dog(("distance", 1.0))
    >>> params = {"w": jnp.array(3.0)}
    >>> u, _ = tx.update({"w": jnp.array(2.0)}, tx.init(params), params)
    >>> round(float(u["w"]), 4)  # r_0 / |g| * g
    1.0
    """
    if not isinstance(init_step, (tuple, list)) or len(init_step) != 2:
        raise ValueError(
            f"scale_by_dog(init_step={init_step!r}): init_step must be a pair (tag, value), "
            f"tag one of {', '.join(map(repr, DOG_INIT_STEPS))}"
        )
    return ScaleByDog(init_step_type=init_step[0], init_step_value=init_step[1], eps=eps)


@recipe
def dog(
    learning_rate: Any = 1.0,
    init_step: tuple[str, float] = ("heuristic", 1e-6),
    eps: float = 1e-8,
    weight_decay: float | None = None,
    mask: Any = None,
) -> Chain:
    """Distance over Gradients (DoG), as ``optax.contrib.dog``.

    Update rule (see :func:`scale_by_dog`)::

        g <- g + weight_decay p                    (if weight_decay is not None)
        u_t = -lr_t * r_t / sqrt(sum_k |g_k|^2 + eps) * g_t

    The authors recommend averaging the iterates (:func:`gradtx.ema_params`).
    ``init`` must see the real params; the update needs the params.

    Args:
        learning_rate: multiplier of DoG's step, a number or a schedule, >= 0. Default 1.0.
        init_step: a pair ``(tag, value)``, tag one of ``"distance"``, ``"learning_rate"``,
            ``"heuristic"`` (see :func:`scale_by_dog`), value > 0. Default
            ``("heuristic", 1e-6)``.
        eps: added to the sum of squared gradient norms, >= 0. Default 1e-8.
        weight_decay: coupled L2 decay added to the gradient, >= 0, or None for none.
            Default None.
        mask: which params weight decay applies to (a tree of bools or a function of
            the params), None for all. Default None.

    Reference: Ivgi, Hinder, Carmon, *DoG is SGD's Best Friend*, ICML 2023, arXiv:2302.12022.

    >>> import gradtx
    >>> tx = gradtx.dog(init_step=("distance", 1.0))
    >>> params = {"w": 3.0}
    >>> round(float(tx.update({"w": 2.0}, tx.init(params), params)[0]["w"]), 4)
    -1.0
    """
    return named_recipe(
        "dog",
        identity() if weight_decay is None else add_decayed_weights(weight_decay, mask),
        scale_by_dog(init_step, eps),
        scale_by_learning_rate(learning_rate),
    )


class DoWGState(NamedTuple):
    """``estim_sq_dist`` is DoWG's squared distance estimate r_t^2."""

    init_params: Any
    weighted_sq_norm_grads: jax.Array
    estim_sq_dist: jax.Array


class ScaleByDowg(Transform):
    """Scales updates by DoWG's step ``r^2 / (sqrt(sum r_k^2 |g_k|^2) + eps)``."""

    init_estim_sq_dist: Any = None
    eps: float = 1e-4

    def __post_init__(self):
        check_range(self, "eps", low=0.0, low_open=True)
        if self.init_estim_sq_dist is not None:
            check_range(self, "init_estim_sq_dist", low=0.0, low_open=True)

    def init(self, params):
        r2 = self.eps if self.init_estim_sq_dist is None else self.init_estim_sq_dist
        return DoWGState(
            init_params=jax.tree.map(jnp.copy, params),
            weighted_sq_norm_grads=_scalar(0.0),
            estim_sq_dist=_scalar(r2),
        )

    def update(self, updates, state, params=None, **extra_args):
        del extra_args
        _require_params(self, params)
        diff = jax.tree.map(lambda a, b: tree_widen(a) - tree_widen(b), state.init_params, params)
        r2 = jnp.maximum(state.estim_sq_dist, tree_vdot(diff, diff))
        wide = tree_widen(updates)
        weighted = r2 * tree_vdot(wide, wide) + state.weighted_sq_norm_grads
        step = r2 / (jnp.sqrt(weighted) + self.eps)
        return tree_scale(step, updates), DoWGState(state.init_params, weighted, r2)


def scale_by_dowg(init_estim_sq_dist: float | None = None, eps: float = 1e-4) -> ScaleByDowg:
    """Scales updates by DoWG's step size, as ``optax.contrib.scale_by_dowg``.

    Update rule (r_0^2 = init_estim_sq_dist, or eps when None)::

        r_t^2 = max(r_{t-1}^2, |p_t - p_0|^2);   v_t = v_{t-1} + r_t^2 |g_t|^2
        u_t <- r_t^2 / (sqrt(v_t) + eps) * g_t

    r^2 is ``gradtx.tree_get(state, "estim_sq_dist")``; the update needs the params.

    Args:
        init_estim_sq_dist: r_0^2, > 0, or None for ``eps``. Default None.
        eps: > 0. Default 1e-4.

    Reference: Khaled, Mishchenko, Jin, *DoWG Unleashed*, NeurIPS 2023, arXiv:2305.16284.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.scale_by_dowg(4.0)
    >>> params = {"w": jnp.array(3.0)}
    >>> u, _ = tx.update({"w": jnp.array(1.0)}, tx.init(params), params)
    >>> round(float(u["w"]), 4)  # 4 / (sqrt(4 * 1) + 1e-4)
    1.9999
    """
    return ScaleByDowg(init_estim_sq_dist=init_estim_sq_dist, eps=eps)


@recipe
def dowg(
    learning_rate: Any = 1.0,
    init_estim_sq_dist: float | None = None,
    eps: float = 1e-4,
    weight_decay: float | None = None,
    mask: Any = None,
) -> Chain:
    """Distance over Weighted Gradients (DoWG), as ``optax.contrib.dowg``.

    Update rule (see :func:`scale_by_dowg`)::

        g <- g + weight_decay p                    (if weight_decay is not None)
        u_t = -lr_t * r_t^2 / (sqrt(sum_k r_k^2 |g_k|^2) + eps) * g_t

    The update needs the params.

    Args:
        learning_rate: multiplier of DoWG's step, a number or a schedule, >= 0. Default 1.0.
        init_estim_sq_dist: r_0^2, the initial squared distance estimate, > 0, or None
            for ``eps``. Default None.
        eps: added to the denominator, > 0. Default 1e-4.
        weight_decay: coupled L2 decay added to the gradient, >= 0, or None for none.
            Default None.
        mask: which params weight decay applies to (a tree of bools or a function of
            the params), None for all. Default None.

    Reference: Khaled, Mishchenko, Jin, *DoWG Unleashed*, NeurIPS 2023, arXiv:2305.16284.

    >>> import gradtx
    >>> tx = gradtx.dowg()
    >>> params = {"w": 3.0}
    >>> round(float(tx.update({"w": 1.0}, tx.init(params), params)[0]["w"]), 4)
    -0.0099
    """
    return named_recipe(
        "dowg",
        identity() if weight_decay is None else add_decayed_weights(weight_decay, mask),
        scale_by_dowg(init_estim_sq_dist, eps),
        scale_by_learning_rate(learning_rate),
    )


class ScaleByDistanceOverGradientsState(NamedTuple):
    """Per leaf: ``max_dist`` (r), ``grad_sum_of_squares``; and the initial params."""

    max_dist: Any
    grad_sum_of_squares: Any
    init_params: Any


class ScaleByDistanceOverGradients(Transform):
    """Layer-wise DoG: each leaf scaled by its own ``r / sqrt(sum |g|^2 + eps)``."""

    reps_rel: float = 1e-6
    eps: float = 1e-8
    param_dtype: Any = static(jnp.float32)
    global_scale: float = 1.0

    def __post_init__(self):
        check_range(self, "reps_rel", low=0.0, low_open=True)
        check_range(self, "eps", low=0.0)

    def init(self, params):
        def norm(x):
            return jnp.sqrt(jnp.sum(jnp.square(up(x))))

        return ScaleByDistanceOverGradientsState(
            max_dist=jax.tree.map(lambda x: hp(self.reps_rel, x) * (1 + norm(x)), params),
            grad_sum_of_squares=jax.tree.map(
                lambda x: jnp.zeros([], jnp.result_type(up(x))), params
            ),
            init_params=tree_cast(jax.tree.map(jnp.copy, params), self.param_dtype),
        )

    def update(self, updates, state, params=None, **extra_args):
        del extra_args
        _require_params(self, params)

        def distance(p, p0):
            return jnp.sqrt(jnp.sum(jnp.square(up(p) - up(p0))))

        max_dist = jax.tree.map(
            lambda r, p, p0: jnp.maximum(r, distance(p, p0).astype(r.dtype)),
            state.max_dist,
            params,
            state.init_params,
        )
        g_sos = jax.tree.map(
            lambda s, g: s + jnp.sum(jnp.square(up(g))).astype(s.dtype),
            state.grad_sum_of_squares,
            updates,
        )

        def leaf(g, r, s):
            step = hp(self.global_scale, g) * (up(r) / jnp.sqrt(up(s) + hp(self.eps, g)))
            return (step * up(g)).astype(g.dtype)

        new_updates = jax.tree.map(leaf, updates, max_dist, g_sos)
        return new_updates, ScaleByDistanceOverGradientsState(max_dist, g_sos, state.init_params)


def scale_by_distance_over_gradients(
    reps_rel: float = 1e-6,
    eps: float = 1e-8,
    param_dtype: Any = jnp.float32,
    global_scale: float = 1.0,
) -> ScaleByDistanceOverGradients:
    """Layer-wise DoG (LDoG), as ``optax.scale_by_distance_over_gradients``.

    Update rule, for each leaf separately::

        r_0 = reps_rel (1 + |p_0|);   r_t = max(r_{t-1}, |p_t - p_0|)
        G_t = G_{t-1} + |g_t|^2
        u_t <- global_scale * r_t / sqrt(G_t + eps) * g_t

    The initial params are stored in ``param_dtype``; r per leaf is
    ``gradtx.tree_get(state, "max_dist")``. Difference from optax: the sum of
    squares is a scalar per leaf (optax's has shape (1,), which turns a scalar
    parameter's update into shape (1,)).

    Args:
        reps_rel: the relative initial distance, > 0. Default 1e-6.
        eps: >= 0. Default 1e-8.
        param_dtype: dtype of the stored initial params. Default float32.
        global_scale: a multiplier of every step. Default 1.0.

    Reference: Ivgi, Hinder, Carmon, *DoG is SGD's Best Friend*, ICML 2023, arXiv:2302.12022.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.scale_by_distance_over_gradients(reps_rel=0.1)
    >>> params = {"a": jnp.array([3.0, 4.0]), "b": jnp.array(1.0)}
    >>> grads = {"a": jnp.array([1.0, 0.0]), "b": jnp.array(2.0)}
    >>> u, _ = tx.update(grads, tx.init(params), params)
    >>> [round(float(v), 4) for v in u["a"]], round(float(u["b"]), 4)  # 0.1 (1 + |p_0|) per leaf
    ([0.6, 0.0], 0.2)
    """
    return ScaleByDistanceOverGradients(
        reps_rel=reps_rel, eps=eps, param_dtype=param_dtype, global_scale=global_scale
    )
