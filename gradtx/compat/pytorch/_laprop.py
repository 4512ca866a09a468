"""pytorch-optimizer's ``LaProp`` (4.1.0), as a chain of gradtx primitives."""

from __future__ import annotations

from typing import Any

from ..._adam_variants import ScaleByLaprop
from ..._combine import Chain, identity, named_recipe, recipe
from ..._regularize import AddDecoupledWeightDecay
from ..._scale import scale
from ._optim import _maximize, Betas


@recipe
def laprop(
    lr: Any = 4e-4,
    betas: Betas = (0.9, 0.999),
    centered: bool = False,
    steps_before_using_centered: int = 10,
    weight_decay: float = 0.0,
    weight_decouple: bool = True,
    fixed_decay: bool = False,
    ams_bound: bool = False,
    eps: float = 1e-15,
    maximize: bool = False,
    foreach: bool | None = None,
) -> Chain:
    """``pytorch_optimizer.LaProp`` (4.1.0), the authors' algorithm as that package has it.

    Update rule, at step t = 1, 2, ... (g negated if maximize)::

        v = beta2 v + (1 - beta2) g**2;     (centered, t > steps_before_using_centered:
                                             v - mean**2, mean the beta2-average of g)
        v <- max(v_max, v)                                               (ams_bound)
        m = beta1 m + (1 - beta1) lr_t g sqrt(1 - beta2**t) / (sqrt(v + 1e-15) + eps)
        L = beta1 L + (1 - beta1) lr_t
        p <- p - (lr_t / L) m            (m alone at lr_t = 0, as the package)
        p <- p (1 - lr_t weight_decay)   (weight_decouple; 1 - weight_decay: fixed_decay)

    The rate sits inside the momentum, so with a schedule each step's share of m keeps
    its own rate; at a constant rate this is :func:`gradtx.laprop` with
    ``eps_root=1e-15`` and eps before the bias correction. ``lr`` may be a gradtx
    schedule (``schedule(t)`` is the rate of call t, 0-based).

    As the package: ``weight_decouple=False`` adds ``weight_decay * p`` to the
    gradient *after* the step, which changes nothing, so no decay is applied; the
    decay multiplies the params after the step (AdamW's form subtracts
    ``lr weight_decay p`` from the params before it). ``foreach`` is ignored: the
    package's batched path (its default) rounds the step size ``lr_t / L`` to
    float32, its per-parameter path (``foreach=False``) does not, nor does gradtx.
    A centered v that rounding takes below 0 is 0 here (the package's root is NaN).

    Args:
        lr: a number or a schedule, >= 0. Default 4e-4.
        betas: ``(beta1, beta2)``, each in [0, 1). Default (0.9, 0.999).
        centered: subtract the squared mean gradient from v. Default False.
        steps_before_using_centered: steps before centring starts, an integer >= 0.
            Default 10.
        weight_decay: >= 0. Default 0.0.
        weight_decouple: decay the params after the step (else no decay, as the
            package). Default True.
        fixed_decay: decay by ``weight_decay`` rather than ``lr * weight_decay``.
            Default False.
        ams_bound: use the running maximum of v. Default False.
        eps: >= 0. Default 1e-15.
        maximize: ascend the objective (the gradient is negated first). Default False.
        foreach: accepted and ignored.

    Reference: Ziyin, Wang, Ueda, *LaProp: Separating Momentum and Adaptivity in
    Adam*, arXiv:2002.04839.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import pytorch
    >>> tx = pytorch.laprop(lr=0.1)
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # pytorch_optimizer.LaProp gives the same
    ...     updates, state = tx.update({"w": jnp.array(2.0)}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> round(float(params["w"]), 4)
    0.8
    """
    del foreach
    b1, b2 = betas
    for arg, value in (("lr", lr), ("weight_decay", weight_decay), ("eps", eps)):
        if isinstance(value, (int, float)) and not value >= 0:
            raise ValueError(f"pytorch.laprop({arg}={value!r}): {arg} must be >= 0")
    for arg, value in (("beta1", b1), ("beta2", b2)):
        if not 0 <= value < 1:
            raise ValueError(f"pytorch.laprop(betas={betas!r}): {arg} must be in [0, 1)")
    decay = identity()
    if weight_decay and weight_decouple:
        decay = AddDecoupledWeightDecay(
            weight_decay=weight_decay, learning_rate=1.0 if fixed_decay else lr, of="step"
        )
    return named_recipe(
        "pytorch.laprop",
        _maximize(maximize),
        ScaleByLaprop(
            momentum_rate=lr,
            b1=b1,
            b2=b2,
            eps=eps,
            eps_root=1e-15,  # the package adds it inside the root whatever eps is
            centered=centered,
            steps_before_centered=steps_before_using_centered,
            amsgrad=ams_bound,
            eps_mode="raw",
        ),
        scale(-1.0),
        decay,
    )
