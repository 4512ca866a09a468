"""torch.optim.Muon as a chain of gradtx primitives."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from ..._base import Transform
from ..._combine import Chain, named_recipe, recipe
from ..._matrix import MuonDimensionNumbers, NS_COEFFS, scale_by_muon, scale_by_shape
from ..._regularize import add_decayed_weights
from ..._scale import scale_by_learning_rate

ADJUST_LR_FNS = (None, "original", "match_rms_adamw")

# torch's weight is (out, in): the width ratio out / in is rows over columns.
_TORCH_LAYOUT = MuonDimensionNumbers(reduction_axis=1, output_axis=0)


def _adjust_lr(adjust_lr_fn: str | None) -> Transform:
    if adjust_lr_fn == "match_rms_adamw":
        return scale_by_shape(consistent_rms=0.2)
    return scale_by_shape(_TORCH_LAYOUT)


@recipe
def muon(
    lr: Any = 1e-3,
    weight_decay: float = 0.1,
    momentum: float = 0.95,
    nesterov: bool = True,
    ns_coefficients: tuple[float, float, float] = NS_COEFFS,
    eps: float = 1e-7,
    ns_steps: int = 5,
    adjust_lr_fn: str | None = None,
    *,
    ns_dtype: Any = jnp.bfloat16,
) -> Chain:
    """``torch.optim.Muon``: for 2-D parameters only, as torch's.

    Update rule (torch 2.13), for a weight of shape (A, B)::

        b_t = momentum * b_{t-1} + (1 - momentum) * g         (no bias correction)
        d = (1 - momentum) * g + momentum * b_t  (nesterov)  or  b_t
        X = d / max(||d||_F, eps), then ns_steps Newton-Schulz steps in bfloat16
        p <- p - lr * weight_decay * p - lr * ratio * X
        ratio = sqrt(max(1, A / B))     (adjust_lr_fn None or "original")
              = 0.2 * sqrt(max(A, B))   ("match_rms_adamw")

    torch iterates in bfloat16 whatever the params' dtype (``ns_dtype``, a
    gradtx argument: ``None`` iterates in the params' precision, float32 at
    least). Its float32 products are summed in another order than XLA's, so
    about 1 call in 150 differs from torch by one bfloat16 unit in some
    entry; with ``ns_dtype=None`` the port equals torch's algorithm run in
    float64 to 1e-9 (tests/reference/record_matrix.py). Leaves that are not
    2-D raise, naming their path (torch: when the optimizer is built).
    ``momentum`` above 1, which torch accepts, is refused.

    Args:
        lr: a number or a schedule, >= 0. Default 1e-3.
        weight_decay: decoupled decay, >= 0. Default 0.1.
        momentum: in [0, 1]. Default 0.95.
        nesterov: Nesterov momentum. Default True.
        ns_coefficients: ``(a, b, c)`` of the Newton-Schulz polynomial.
            Default (3.4445, -4.775, 2.0315).
        eps: floor of the Frobenius norm, > 0. Default 1e-7.
        ns_steps: Newton-Schulz steps, an integer in [0, 100). Default 5.
        adjust_lr_fn: None, ``"original"`` or ``"match_rms_adamw"``. Default None.
        ns_dtype: the Newton-Schulz dtype, None for the params' (keyword, gradtx's).
            Default bfloat16.

    Reference: PyTorch 2.13, ``torch.optim.Muon``; Jordan et al., *Muon: An optimizer
    for hidden layers in neural networks* (2024), kellerjordan.github.io/posts/muon.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import pytorch
    >>> tx = pytorch.muon(lr=0.1, ns_dtype=None)
    >>> params = {"w": jnp.eye(2)}
    >>> updates, _ = tx.update({"w": jnp.array([[1.0, 2.0], [0.0, 1.0]])}, tx.init(params), params)
    >>> [round(float(v), 4) for v in updates["w"].ravel()]
    [-0.0722, -0.0457, 0.0786, -0.0722]
    """
    if adjust_lr_fn not in ADJUST_LR_FNS:
        raise ValueError(
            f"pytorch.muon(adjust_lr_fn={adjust_lr_fn!r}): adjust_lr_fn must be None, "
            "'original' or 'match_rms_adamw'"
        )
    for arg, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
        if isinstance(value, (int, float)) and value < 0:
            raise ValueError(f"pytorch.muon({arg}={value!r}): {arg} must be >= 0")
    if len(ns_coefficients) != 3:
        raise ValueError(
            f"pytorch.muon(ns_coefficients={ns_coefficients!r}): three coefficients (a, b, c)"
        )
    if ns_steps >= 100:
        raise ValueError(f"pytorch.muon(ns_steps={ns_steps!r}): ns_steps must be below 100")
    return named_recipe(
        "pytorch.muon",
        scale_by_muon(
            tuple(ns_coefficients),
            ns_steps,
            momentum,
            eps,
            nesterov=nesterov,
            debias=False,
            eps_mode="clamp",
            ns_dtype=ns_dtype,
        ),
        _adjust_lr(adjust_lr_fn),
        add_decayed_weights(weight_decay),
        scale_by_learning_rate(lr),
    )
