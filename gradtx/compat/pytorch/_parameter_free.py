"""The authors' PyTorch packages: prodigyopt's Prodigy; dadaptation's DAdaptAdam, DAdaptSGD
and DAdaptAdaGrad."""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..._base import check_range, Transform
from ..._combine import Chain, identity, named_recipe, recipe
from ..._parameter_free import _scalar, ScaleByDadaptAdam, ScaleByProdigy
from ..._regularize import _require_params, add_decayed_weights
from ..._scale import value_at
from ..._tree import (
    hp,
    safe_increment,
    tree_global_norm,
    tree_map_unzip,
    tree_squares_like,
    tree_vdot,
    tree_zeros_like,
    up,
    zero_count,
)

Betas = tuple[float, float]


def _check(name: str, **problems: tuple[Any, bool, str]) -> None:
    """Raises for the first ``arg=(value, bad, message)`` that is bad, naming the port."""
    for arg, (value, bad, message) in problems.items():
        if bad:
            raise ValueError(f"pytorch.{name}({arg}={value!r}): {message}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shared_checks(name: str, lr, betas, eps, weight_decay, d0, growth_rate) -> None:
    """The checks the authors' constructors make, and those that keep d finite."""
    pair = isinstance(betas, (tuple, list)) and len(betas) == 2
    _check(
        name,
        lr=(lr, _number(lr) and not lr > 0, "lr must be > 0 (a schedule may reach 0)"),
        betas=(betas, not pair or any(_number(b) and not 0 <= b < 1 for b in betas),
               "betas must be a pair, each in [0, 1)"),
        eps=(eps, not eps > 0, "eps must be > 0"),
        weight_decay=(weight_decay, not weight_decay >= 0, "weight_decay must be >= 0"),
        d0=(d0, not d0 > 0, "d0 must be > 0"),
        growth_rate=(growth_rate, not growth_rate >= 1, "growth_rate must be >= 1 (inf: no limit)"),
    )  # fmt: skip


def _coupled(weight_decay: float, decouple: bool) -> Transform:
    """L2 decay added to the gradient before everything else (``decouple=False``)."""
    return add_decayed_weights(weight_decay) if weight_decay and not decouple else identity()


@recipe
def prodigy(
    lr: Any = 1.0,
    betas: Betas = (0.9, 0.999),
    beta3: float | None = None,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decouple: bool = True,
    use_bias_correction: bool = False,
    safeguard_warmup: bool = False,
    d0: float = 1e-6,
    d_coef: float = 1.0,
    growth_rate: float = math.inf,
    fsdp_in_use: bool = False,
    slice_p: int = 1,
) -> Chain:
    """``prodigyopt.Prodigy`` (1.1.2), the authors' package.

    Update rule, at step k = 1, 2, ... (beta3 = sqrt(beta2) when None)::

        g <- g + weight_decay p                             (decouple=False)
        dlr = d * lr_k * (sqrt(1 - beta2**k) / (1 - beta1**k) if use_bias_correction else 1)
        m = beta1 m + (1 - beta1) d g;    v = beta2 v + (1 - beta2) d**2 g**2
        s = beta3 s + (d / d0) (safeguard_warmup ? d : dlr) g          (every slice_p-th element)
        r = beta3 r + (d / d0) dlr <g, p_0 - p>                         (every slice_p-th element)
        d_hat = d_coef r / |s|_1;   d_max = max(d_max, d_hat)
        d <- min(d_max, growth_rate * (max(d, d_hat) if d == d0 else d))
        p <- p - dlr (m / (sqrt(v) + d eps) + weight_decay p)           (decouple=True)

    As the package, a step taken while |s|_1 = 0 (before any gradient) or at
    lr 0 moves nothing and is not counted, and with beta1 = 0 the step is
    ``dlr d g / (sqrt(v) + d eps)`` with the d just updated (v holds the previous
    ones). ``lr`` may be a gradtx schedule (``schedule(t)`` is the rate of call t,
    0-based). d is ``gradtx.tree_get(state, "estim_lr")``. ``fsdp_in_use`` changes
    no numbers (JAX's sums already span every shard) and is ignored.

    Differences from :func:`gradtx.prodigy` (optax's): bias correction off by
    default, ``decouple=False`` for L2 decay, ``d_coef`` (optax's estim_lr_coef),
    ``growth_rate``, ``slice_p``, and the skipped steps above.

    Args:
        lr: a number > 0, or a schedule (which may reach 0). Default 1.0.
        betas: ``(beta1, beta2)``, each in [0, 1). Default (0.9, 0.999).
        beta3: decay of s and r, None (sqrt(beta2)) or in [0, 1). Default None.
        eps: > 0. Default 1e-8.
        weight_decay: >= 0. Default 0.0.
        decouple: decoupled decay (else L2 added to the gradient). Default True.
        use_bias_correction: Adam's bias correction in dlr. Default False.
        safeguard_warmup: leave lr out of s. Default False.
        d0: the initial estimate of d, > 0. Default 1e-6.
        d_coef: multiplier of the estimate d_hat, > 0. Default 1.0.
        growth_rate: the most d may grow per step, >= 1 (inf: no limit). Default inf.
        fsdp_in_use: accepted and ignored.
        slice_p: use every slice_p-th element for s and r, an integer >= 1. Default 1.

    Reference: ``prodigyopt`` 1.1.2, ``Prodigy``; Mishchenko & Defazio, *Prodigy: An
    Expeditiously Adaptive Parameter-Free Learner*, ICML 2024, arXiv:2306.06101.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import pytorch
    >>> tx = pytorch.prodigy(d0=0.1)
    >>> params = {"w": jnp.array([1.0, 2.0])}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # prodigyopt.Prodigy gives the same
    ...     updates, state = tx.update({"w": jnp.array([1.0, -1.0])}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> d = gradtx.tree_get(state, "estim_lr")
    >>> [round(float(v), 4) for v in params["w"]], round(float(d), 4)
    ([0.2588, 2.7412], 0.1582)
    """
    del fsdp_in_use
    _shared_checks("prodigy", lr, betas, eps, weight_decay, d0, growth_rate)
    _check(
        "prodigy",
        beta3=(beta3, beta3 is not None and not 0 <= beta3 < 1, "beta3 must be None or in [0, 1)"),
        d_coef=(d_coef, not d_coef > 0, "d_coef must be > 0"),
        slice_p=(slice_p, not (isinstance(slice_p, int) and slice_p >= 1),
                 "slice_p must be a positive integer"),
    )  # fmt: skip
    return named_recipe(
        "pytorch.prodigy",
        _coupled(weight_decay, decouple),
        ScaleByProdigy(
            learning_rate=lr,
            betas=tuple(betas),
            beta3=beta3,
            eps=eps,
            estim_lr0=d0,
            estim_lr_coef=d_coef,
            growth_rate=growth_rate,
            weight_decay=weight_decay if decouple else 0.0,
            safeguard_warmup=safeguard_warmup,
            bias_correction=use_bias_correction,
            variant="prodigyopt",
            slice_p=slice_p,
        ),
    )


@recipe
def dadapt_adam(
    lr: Any = 1.0,
    betas: Betas = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    log_every: int = 0,
    decouple: bool = False,
    use_bias_correction: bool = False,
    d0: float = 1e-6,
    growth_rate: float = math.inf,
    fsdp_in_use: bool = False,
) -> Chain:
    """``dadaptation.DAdaptAdam`` (3.2), the authors' package.

    Update rule, at step k = 1, 2, ... (sb2 = sqrt(beta2))::

        g <- g + weight_decay p                             (decouple=False, the default)
        dlr = d * lr_k * (sqrt(1 - beta2**k) / (1 - beta1**k) if use_bias_correction else 1)
        r = sb2 r + (1 - sb2) dlr <g, s / (sqrt(v) + eps)>
        m = beta1 m + (1 - beta1) dlr g;    v = beta2 v + (1 - beta2) g**2
        s = sb2 s + (1 - sb2) dlr g
        d <- max(d, min(r / ((1 - sb2) |s|_1), growth_rate * d))
        p <- p - m / (sqrt(v) + eps) - weight_decay dlr p               (decouple=True)

    As the package, a step taken while |s|_1 = 0 or at lr 0 moves nothing and is
    not counted. d is ``gradtx.tree_get(state, "estim_lr")``. ``log_every`` (logging)
    and ``fsdp_in_use`` change no numbers and are ignored; the per-group
    ``layer_scale`` is not supported (use :func:`gradtx.partition` and ``scale``).

    Differences from :func:`gradtx.dadapt_adamw` (optax's): bias correction off
    and coupled L2 decay by default, ``growth_rate``, and the skipped steps above.

    Args:
        lr: a number > 0, or a schedule (which may reach 0). Default 1.0.
        betas: ``(beta1, beta2)``, each in [0, 1). Default (0.9, 0.999).
        eps: > 0. Default 1e-8.
        weight_decay: >= 0. Default 0.0.
        log_every: accepted and ignored.
        decouple: decoupled decay (else L2 added to the gradient). Default False.
        use_bias_correction: Adam's bias correction in dlr. Default False.
        d0: the initial estimate of d, > 0. Default 1e-6.
        growth_rate: the most d may grow per step, >= 1 (inf: no limit). Default inf.
        fsdp_in_use: accepted and ignored.

    Reference: ``dadaptation`` 3.2, ``DAdaptAdam``; Defazio & Mishchenko,
    *Learning-Rate-Free Learning by D-Adaptation*, ICML 2023, arXiv:2301.07733.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import pytorch
    >>> tx = pytorch.dadapt_adam(d0=0.1)
    >>> params = {"w": jnp.array([1.0, 2.0])}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # dadaptation.DAdaptAdam gives the same
    ...     updates, state = tx.update({"w": jnp.array([1.0, -1.0])}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> d = gradtx.tree_get(state, "estim_lr")
    >>> [round(float(v), 4) for v in params["w"]], round(float(d), 4)
    ([0.2588, 2.7412], 1.5815)
    """
    del log_every, fsdp_in_use
    _shared_checks("dadapt_adam", lr, betas, eps, weight_decay, d0, growth_rate)
    return named_recipe(
        "pytorch.dadapt_adam",
        _coupled(weight_decay, decouple),
        ScaleByDadaptAdam(
            learning_rate=lr,
            betas=tuple(betas),
            eps=eps,
            estim_lr0=d0,
            growth_rate=growth_rate,
            weight_decay=weight_decay if decouple else 0.0,
            bias_correction=use_bias_correction,
            variant="dadaptation",
        ),
    )


# -- D-Adaptation (SGD, AdaGrad) ---------------------------------------------------------


def _dual_averaging_checks(name: str, lr, momentum, weight_decay, d0, growth_rate) -> None:
    """The checks DAdaptSGD's and DAdaptAdaGrad's constructors make, and those keeping d finite."""
    _check(
        name,
        lr=(lr, _number(lr) and not lr > 0, "lr must be > 0 (a schedule may reach 0)"),
        momentum=(momentum, not 0 <= momentum < 1, "momentum must be in [0, 1)"),
        weight_decay=(weight_decay, not weight_decay >= 0, "weight_decay must be >= 0"),
        d0=(d0, not d0 > 0, "d0 must be > 0"),
        growth_rate=(growth_rate, not growth_rate >= 1, "growth_rate must be >= 1 (inf: no limit)"),
    )  # fmt: skip


def _check_dual_averaging(obj: Transform) -> None:
    check_range(obj, "learning_rate", low=0.0)
    check_range(obj, "momentum", low=0.0, high=1.0, high_open=True)
    check_range(obj, "estim_lr0", low=0.0, low_open=True)
    check_range(obj, "growth_rate", low=1.0, allow_inf=True)


def _kept_where(skip: jax.Array, old: Any, new: Any) -> Any:
    """``old`` where the package returns before stepping (``skip``), ``new`` elsewhere."""
    return jax.tree.map(lambda o, n: jnp.where(skip, o, n), old, new)


def _averaged_step(momentum: Any, z: Any, params: Any, like: Any) -> Any:
    """``momentum p + (1 - momentum) z - p``: the packages' move towards the dual point z."""

    def leaf(z, p, u):
        m = hp(momentum, u)
        return (m * up(p) + (1 - m) * up(z) - up(p)).astype(u.dtype)

    return jax.tree.map(leaf, z, params, like)


class DAdaptSGDState(NamedTuple):
    """``estim_lr`` is d; ``grad_norm0`` the norm of the first gradient (the package's g0_norm).

    ``count`` counts updates (the schedule's step), ``taken`` the steps taken.
    """

    grad_sum: Any
    params0: Any
    grad_norm0: jax.Array
    estim_lr: jax.Array
    numerator_weighted: jax.Array
    count: jax.Array
    taken: jax.Array


class ScaleByDadaptSgd(Transform):
    """dadaptation's DAdaptSGD: dual averaging with step d / |g_0|, averaged by momentum."""

    learning_rate: Any = 1.0
    momentum: float = 0.0
    weight_decay: float = 0.0
    estim_lr0: float = 1e-6
    growth_rate: float = math.inf

    def __post_init__(self):
        _check_dual_averaging(self)
        check_range(self, "weight_decay", low=0.0)

    def init(self, params):
        return DAdaptSGDState(
            grad_sum=tree_zeros_like(params),
            params0=jax.tree.map(jnp.copy, params),
            grad_norm0=_scalar(0.0),
            estim_lr=_scalar(self.estim_lr0),
            numerator_weighted=_scalar(0.0),
            count=zero_count(),
            taken=zero_count(),
        )

    def update(self, updates, state, params=None, **extra_args):
        del extra_args
        _require_params(self, params)
        d = state.estim_lr
        lr = value_at(self.learning_rate, state.count)
        # The first norm is of the gradient without decay: the package adds it out of place there.
        g0 = jnp.where(state.taken == 0, tree_global_norm(updates), state.grad_norm0)
        # At g0 = 0 the package divides by zero; here dlr = 0, so |s| = 0 and the step is skipped.
        dlr = jnp.where(g0 > 0, d * lr / jnp.where(g0 > 0, g0, 1.0), 0.0)
        grads = jax.tree.map(lambda g, p: up(g) + hp(self.weight_decay, g) * up(p), updates, params)
        numerator = state.numerator_weighted + dlr * tree_vdot(grads, state.grad_sum)
        s = jax.tree.map(
            lambda s, g: (up(s) + hp(dlr, g) * g).astype(s.dtype), state.grad_sum, grads
        )
        sk_sq = tree_vdot(s, s)
        d_hat = 2 * numerator / jnp.sqrt(jnp.where(sk_sq > 0, sk_sq, 1.0))
        new_d = jnp.where(lr > 0, jnp.maximum(d, jnp.minimum(d_hat, d * self.growth_rate)), d)
        z = jax.tree.map(lambda x0, s: up(x0) - up(s), state.params0, s)
        # The package returns before stepping while |s| = 0, and raises at lr 0: no step.
        skip = (sk_sq == 0) | ~(lr > 0)
        new_updates = _kept_where(
            skip, tree_zeros_like(updates), _averaged_step(self.momentum, z, params, updates)
        )
        new_state = DAdaptSGDState(
            s, state.params0, g0,
            jnp.where(skip, d, new_d),
            jnp.where(skip, state.numerator_weighted, numerator),
            safe_increment(state.count),
            jnp.where(skip, state.taken, safe_increment(state.taken)),
        )  # fmt: skip
        return new_updates, new_state


@recipe
def dadapt_sgd(
    lr: Any = 1.0,
    momentum: float = 0.0,
    weight_decay: float = 0,
    log_every: int = 0,
    d0: float = 1e-6,
    growth_rate: float = math.inf,
    fsdp_in_use: bool = False,
) -> Chain:
    """``dadaptation.DAdaptSGD`` (3.2), the authors' package.

    Update rule, at step k = 0, 1, ... (g0 = |g_0|, the first gradient's norm)::

        g <- g + weight_decay p                              (coupled L2)
        dlr = d * lr_k / g0
        r = r + dlr <g, s>;     s = s + dlr g
        d <- max(d, min(2 r / |s|_2, growth_rate * d))
        p <- momentum p + (1 - momentum) (p_0 - s)

    As the package, a step taken while |s| = 0 (before any gradient) moves
    nothing and is not counted, and g0 is the norm of the first gradient
    without the decay. Where the package raises (a zero first gradient divides
    by g0 = 0; lr 0 leaves a variable unset) the step is skipped likewise. d is
    ``gradtx.tree_get(state, "estim_lr")``. ``log_every`` (logging) and
    ``fsdp_in_use`` change no numbers and are ignored; the update needs the params.

    Args:
        lr: a number > 0, or a schedule (which may reach 0). Default 1.0.
        momentum: in [0, 1). Default 0.0.
        weight_decay: L2 added to the gradient, >= 0. Default 0.
        log_every: accepted and ignored.
        d0: the initial estimate of d, > 0. Default 1e-6.
        growth_rate: the most d may grow per step, >= 1 (inf: no limit). Default inf.
        fsdp_in_use: accepted and ignored.

    Reference: Defazio & Mishchenko, *Learning-Rate-Free Learning by
    D-Adaptation*, ICML 2023, arXiv:2301.07733.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import pytorch
    >>> tx = pytorch.dadapt_sgd(d0=0.1)
    >>> params = {"w": jnp.array([1.0, 2.0])}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # dadaptation.DAdaptSGD gives the same
    ...     updates, state = tx.update({"w": jnp.array([1.0, -1.0])}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> d = gradtx.tree_get(state, "estim_lr")
    >>> [round(float(v), 4) for v in params["w"]], round(float(d), 4)
    ([0.8586, 2.1414], 0.1)
    """
    del log_every, fsdp_in_use
    _dual_averaging_checks("dadapt_sgd", lr, momentum, weight_decay, d0, growth_rate)
    return named_recipe(
        "pytorch.dadapt_sgd",
        ScaleByDadaptSgd(
            learning_rate=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            estim_lr0=d0,
            growth_rate=growth_rate,
        ),
    )


class DAdaptAdaGradState(NamedTuple):
    """``estim_lr`` is d; ``alpha`` AdaGrad's sum of squares (from 1e-6); ``grad_sum`` s.

    The scalars are the package's running sums: of dlr**2 |g|^2_A (``gsq_weighted``), of
    |s|^2_A (``sksq_weighted``, by its changes) and of |s|_1 (``skl1``), with
    |x|^2_A = sum x**2 / (sqrt(alpha) + eps).
    """

    alpha: Any
    grad_sum: Any
    params0: Any
    estim_lr: jax.Array
    gsq_weighted: jax.Array
    sksq_weighted: jax.Array
    skl1: jax.Array
    count: jax.Array


class ScaleByDadaptAdagrad(Transform):
    """dadaptation's DAdaptAdaGrad: AdaGrad's dual averaging, d from the weighted sums."""

    learning_rate: Any = 1.0
    momentum: float = 0.0
    eps: float = 1e-6
    estim_lr0: float = 1e-6
    growth_rate: float = math.inf

    def __post_init__(self):
        _check_dual_averaging(self)
        check_range(self, "eps", low=0.0, low_open=True)

    def init(self, params):
        return DAdaptAdaGradState(
            alpha=tree_squares_like(params, 1e-6),  # the package's, whatever eps is
            grad_sum=tree_zeros_like(params),
            params0=jax.tree.map(jnp.copy, params),
            estim_lr=_scalar(self.estim_lr0),
            gsq_weighted=_scalar(0.0),
            sksq_weighted=_scalar(0.0),
            skl1=_scalar(0.0),
            count=zero_count(),
        )

    def update(self, updates, state, params=None, **extra_args):
        del extra_args
        _require_params(self, params)
        d = state.estim_lr
        lr = value_at(self.learning_rate, state.count)
        dlr = d * lr

        def leaf(g, alpha, s, x0):
            g, s_old, eps = up(g), up(s), hp(self.eps, g)
            old_root = jnp.sqrt(up(alpha)) + eps
            new_alpha = up(alpha) + g * g
            root = jnp.sqrt(new_alpha) + eps
            s_new = s_old + hp(dlr, g) * g
            z = up(x0) - s_new / root
            return (
                new_alpha.astype(alpha.dtype),
                s_new.astype(s.dtype),
                z,
                jnp.sum(g * g / root),
                jnp.sum(s_new * s_new / root) - jnp.sum(s_old * s_old / old_root),
                jnp.sum(jnp.abs(s_new)) - jnp.sum(jnp.abs(s_old)),
            )

        alpha, s, z, g_sq, sksq_change, skl1_change = tree_map_unzip(
            leaf, updates, state.alpha, state.grad_sum, state.params0
        )
        # The package sums each parameter's change of |s|^2_A and |s|_1 into running totals.
        total = functools.partial(sum, start=_scalar(0.0))
        sksq = state.sksq_weighted + total(jax.tree.leaves(sksq_change))
        skl1 = state.skl1 + total(jax.tree.leaves(skl1_change))
        gsq = state.gsq_weighted + dlr * dlr * total(jax.tree.leaves(g_sq))
        d_hat = (sksq - gsq) / jnp.where(skl1 != 0, skl1, 1.0)
        new_d = jnp.where(lr > 0, jnp.maximum(d, jnp.minimum(d_hat, d * self.growth_rate)), d)
        # The package returns before stepping while |s|_1 = 0 (alpha and s already updated).
        skip = skl1 == 0
        new_updates = _kept_where(
            skip, tree_zeros_like(updates), _averaged_step(self.momentum, z, params, updates)
        )
        kept = _kept_where(
            skip,
            (d, state.gsq_weighted, state.sksq_weighted, state.skl1),
            (new_d, gsq, sksq, skl1),
        )
        new_state = DAdaptAdaGradState(alpha, s, state.params0, *kept, safe_increment(state.count))
        return new_updates, new_state


@recipe
def dadapt_adagrad(
    lr: Any = 1.0,
    momentum: float = 0,
    log_every: int = 0,
    weight_decay: float = 0.0,
    eps: float = 1e-6,
    d0: float = 1e-6,
    growth_rate: float = math.inf,
) -> Chain:
    """``dadaptation.DAdaptAdaGrad`` (3.2), the authors' package.

    Update rule, at step k = 0, 1, ... (|x|^2_A = sum x**2 / (sqrt(alpha) + eps))::

        g <- g + weight_decay p                              (coupled L2)
        dlr = d * lr_k;     alpha = alpha + g**2              (alpha_0 = 1e-6)
        S = S + (|s + dlr g|^2_A - |s|^2_A, with alpha before and after);  s = s + dlr g
        G = G + dlr**2 |g|^2_A
        d <- max(d, min((S - G) / |s|_1, growth_rate * d))
        p <- momentum p + (1 - momentum) (p_0 - s / (sqrt(alpha) + eps))

    As the package, a step taken while |s|_1 = 0 moves nothing and leaves d and
    the sums as they were (alpha and s are updated, as the package does in
    place); at lr 0 d is kept and p still moves towards the new point. d is
    ``gradtx.tree_get(state, "estim_lr")``. ``log_every`` changes no numbers and
    is ignored; the package's sparse-gradient path has no JAX counterpart. The
    update needs the params.

    Args:
        lr: a number > 0, or a schedule (which may reach 0). Default 1.0.
        momentum: in [0, 1). Default 0.
        log_every: accepted and ignored.
        weight_decay: L2 added to the gradient, >= 0. Default 0.0.
        eps: > 0. Default 1e-6.
        d0: the initial estimate of d, > 0. Default 1e-6.
        growth_rate: the most d may grow per step, >= 1 (inf: no limit). Default inf.

    Reference: Defazio & Mishchenko, *Learning-Rate-Free Learning by
    D-Adaptation*, ICML 2023, arXiv:2301.07733.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import pytorch
    >>> tx = pytorch.dadapt_adagrad(d0=0.1)
    >>> params = {"w": jnp.array([1.0, 2.0])}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # dadaptation.DAdaptAdaGrad gives the same
    ...     updates, state = tx.update({"w": jnp.array([1.0, -1.0])}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> d = gradtx.tree_get(state, "estim_lr")
    >>> [round(float(v), 4) for v in params["w"]], round(float(d), 4)
    ([0.8586, 2.1414], 0.1)
    """
    del log_every
    _dual_averaging_checks("dadapt_adagrad", lr, momentum, weight_decay, d0, growth_rate)
    _check("dadapt_adagrad", eps=(eps, not eps > 0, "eps must be > 0"))
    return named_recipe(
        "pytorch.dadapt_adagrad",
        _coupled(weight_decay, decouple=False),
        ScaleByDadaptAdagrad(
            learning_rate=lr, momentum=momentum, eps=eps, estim_lr0=d0, growth_rate=growth_rate
        ),
    )
