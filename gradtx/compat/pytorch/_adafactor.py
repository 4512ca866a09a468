"""torch.optim.Adafactor as a chain of gradtx primitives."""

from __future__ import annotations

from typing import Any

from ..._clipping import clip_by_block_rms
from ..._combine import Chain, identity, named_recipe, recipe
from ..._factored import relative_step_size, scale_by_factored_rms, scale_by_param_block_rms
from ..._regularize import add_decoupled_weight_decay
from ..._scale import scale_by_learning_rate
from ._optim import _check_nonnegative, _maximize


@recipe
def adafactor(
    lr: Any = 1e-2,
    beta2_decay: float = -0.8,
    eps: tuple[float | None, float] = (None, 1e-3),
    d: float = 1.0,
    weight_decay: float = 0.0,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
) -> Chain:
    """``torch.optim.Adafactor``: factored over the last two axes, a relative step capped at lr.

    Update rule, at step t = 1, 2, ... (``eps = (eps1, eps2)``)::

        beta_t = 1 - t**beta2_decay;   rho_t = min(lr_t, 1 / sqrt(t))
        rank >= 2: R_t = beta_t R + (1 - beta_t) mean_{-1}(g**2)   (C_t likewise, mean_{-2})
                   V = R_t C_t / max(mean(R_t), eps1)
        else:      V = v_t = beta_t v + (1 - beta_t) g**2
        u = g / sqrt(max(V, eps1**2));   u <- u / max(1, rms(u) / d)
        p <- p - rho_t * max(rms(p), eps2) * u - lr_t * weight_decay * p

    ``eps1=None`` is each leaf's dtype epsilon (torch takes the first parameter's
    for all); ``eps1=0`` is refused (torch's zero gradient gives 0 * inf = NaN).
    ``gradtx.tree_get(state, "learning_rate")`` is rho_t, the relative step of the
    last step. ``foreach`` changes no numbers and is ignored.

    Unlike :func:`gradtx.adafactor` (optax, the paper's eps added to g**2, the two
    largest axes of size >= 128 factored, no cap on the step), every leaf of rank >= 2
    is factored over its last two axes, and the step is ``min(lr, 1/sqrt(t))``.

    Args:
        lr: a number or a schedule, >= 0. Default 1e-2.
        beta2_decay: the exponent of beta_t, <= 0. Default -0.8.
        eps: ``(eps1, eps2)``: eps1 None or > 0, eps2 >= 0. Default (None, 1e-3).
        d: the clipping threshold on rms(u), >= 1. Default 1.0.
        weight_decay: decoupled decay, >= 0. Default 0.0.
        maximize: ascend the objective (the gradient is negated first). Default False.
        foreach: accepted and ignored.

    Reference: PyTorch 2.13, ``torch.optim.Adafactor``; Shazeer & Stern, *Adafactor:
    Adaptive Learning Rates with Sublinear Memory Cost*, arXiv:1804.04235.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import pytorch
    >>> tx = pytorch.adafactor(lr=0.1)
    >>> params = {"w": jnp.ones((2, 2))}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # torch gives the same
    ...     updates, state = tx.update({"w": jnp.array([[1.0, 2.0], [3.0, 4.0]])}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> [round(float(v), 4) for v in params["w"].ravel()]
    [0.8526, 0.7916, 0.8022, 0.8136]
    """
    del foreach
    eps1, eps2 = eps
    _check_nonnegative("adafactor", lr=lr, weight_decay=weight_decay)
    for given, bad, message in (
        (f"beta2_decay={beta2_decay!r}", beta2_decay > 0, "beta2_decay must be <= 0"),
        (f"eps={eps!r}", eps1 is not None and eps1 <= 0, "eps[0] must be None or > 0"),
        (f"eps={eps!r}", eps2 < 0, "eps[1] must be >= 0"),
        (f"d={d!r}", d < 1, "the clipping threshold d must be >= 1"),
    ):
        if bad:
            raise ValueError(f"pytorch.adafactor({given}): {message}")
    return named_recipe(
        "pytorch.adafactor",
        _maximize(maximize),
        scale_by_factored_rms(
            decay_rate=-beta2_decay,
            min_dim_size_to_factor=1,
            epsilon=eps1,
            factor_axes="last",
            eps_mode="clamped",
        ),
        clip_by_block_rms(d),
        scale_by_param_block_rms(eps2),
        scale_by_learning_rate(relative_step_size(lr)),
        add_decoupled_weight_decay(weight_decay, lr) if weight_decay else identity(),
    )
