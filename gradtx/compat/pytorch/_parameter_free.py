"""The authors' PyTorch packages: prodigyopt's Prodigy, dadaptation's DAdaptAdam."""

from __future__ import annotations

import math
from typing import Any

from ..._base import Transform
from ..._combine import Chain, identity, named_recipe
from ..._parameter_free import ScaleByDadaptAdam, ScaleByProdigy
from ..._regularize import add_decayed_weights

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
