"""pytorch-optimizer's ``AdaHessian`` (4.1.0), as a chain of gradtx primitives."""

from __future__ import annotations

from typing import Any

from ..._combine import Chain, identity, named_recipe, recipe
from ..._curvature import hutchinson_estimator_diag_hessian, ScaleByAdahessian
from ..._regularize import AddDecoupledWeightDecay
from ..._scale import scale_by_learning_rate
from ._optim import _check_nonnegative, _coupled, _maximize, Betas


@recipe
def adahessian(
    lr: Any = 1e-1,
    betas: Betas = (0.9, 0.999),
    weight_decay: float = 0.0,
    weight_decouple: bool = True,
    fixed_decay: bool = False,
    hessian_power: float = 1.0,
    update_period: int = 1,
    num_samples: int = 1,
    hessian_distribution: str = "rademacher",
    eps: float = 1e-16,
    maximize: bool = False,
    foreach: bool | None = None,
    *,
    random_seed: Any = None,
) -> Chain:
    """``pytorch_optimizer.AdaHessian`` (4.1.0): the package's names, defaults and numbers.

    Update rule, at step t = 1, 2, ... (g negated if maximize; D = z * (H z) of the
    loss, z Rademacher, refreshed when (t - 1) % update_period == 0)::

        g <- g + weight_decay p                          (weight_decouple=False)
        m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) D**2 (on refreshes)
        p <- p (1 - lr_t weight_decay)                   (weight_decouple; 1 - weight_decay:
                                                          fixed_decay)
        p <- p - lr_t (m / (1 - beta1**t)) / ((v / (1 - beta2**t))**(k / 2) + eps)

    The objective goes to ``update`` as ``obj_fn=`` (the package reads the graph
    of ``loss.backward(create_graph=True)``). It is :func:`gradtx.adahessian` with
    no block averaging and the package's defaults (lr 0.1 and eps 1e-16, where
    the paper's code has 0.15 and 1e-4). ``random_seed`` (gradtx's, keyword
    only) seeds the probes. The package's ``num_samples`` > 1 (an average of
    probes) and ``hessian_distribution='gaussian'`` are not ported and raise;
    ``foreach`` changes no numbers and is ignored.

    Args:
        lr: a number or a schedule, >= 0. Default 0.1.
        betas: ``(beta1, beta2)``, each in [0, 1). Default (0.9, 0.999).
        weight_decay: >= 0. Default 0.0.
        weight_decouple: decoupled decay (else L2 added to the gradient). Default True.
        fixed_decay: decay by ``weight_decay`` rather than ``lr * weight_decay``.
            Default False.
        hessian_power: k, in (0, 1]. Default 1.0.
        update_period: steps between Hessian refreshes, an integer >= 1. Default 1.
        num_samples: probes per refresh; only 1 is ported. Default 1.
        hessian_distribution: only ``"rademacher"`` is ported. Default ``"rademacher"``.
        eps: > 0. Default 1e-16.
        maximize: ascend the objective (the gradient is negated first). Default False.
        foreach: accepted and ignored.
        random_seed: the probes' seed or PRNG key, None for 0 (keyword, gradtx's).
            Default None.

    Reference: Yao et al., *ADAHESSIAN*, AAAI 2021, arXiv:2006.00719.

    >>> import gradtx, jax, jax.numpy as jnp
    >>> from gradtx.compat import pytorch
    >>> f = lambda p: jnp.sum(p["w"] ** 2 * jnp.array([1.0, 3.0]))
    >>> tx = pytorch.adahessian(lr=0.1, random_seed=0)
    >>> params = {"w": jnp.array([1.0, 1.0])}
    >>> updates, _ = tx.update(jax.grad(f)(params), tx.init(params), params, obj_fn=f)
    >>> [round(float(v), 4) for v in updates["w"]]
    [-0.1, -0.1]
    """
    del foreach
    _check_nonnegative("adahessian", lr=lr, weight_decay=weight_decay, eps=eps)
    if num_samples != 1:
        raise ValueError(
            f"pytorch.adahessian(num_samples={num_samples!r}): only one probe per refresh "
            "is ported (num_samples=1)"
        )
    if hessian_distribution != "rademacher":
        raise ValueError(
            f"pytorch.adahessian(hessian_distribution={hessian_distribution!r}): only "
            "'rademacher' probes are ported"
        )
    b1, b2 = betas
    decay = identity()
    if weight_decay and weight_decouple:
        rate = 1.0 if fixed_decay else lr
        decay = AddDecoupledWeightDecay(weight_decay=weight_decay, learning_rate=rate)
    return named_recipe(
        "pytorch.adahessian",
        _maximize(maximize),
        identity() if weight_decouple else _coupled(weight_decay),
        ScaleByAdahessian(
            b1=b1,
            b2=b2,
            eps=eps,
            hessian_power=hessian_power,
            update_interval=update_period,
            hessian_diagonal_fn=hutchinson_estimator_diag_hessian(random_seed),
        ),
        scale_by_learning_rate(lr),
        decay,
    )
