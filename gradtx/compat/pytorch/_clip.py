"""torch.nn.utils's gradient clipping: clip_grad_norm_ and clip_grad_value_ as transforms."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..._base import check_range, fail, static, Transform
from ..._clipping import clip
from ..._combine import Chain, named_recipe, recipe
from ..._tree import compute_dtype, default_float, hp, up
from ._optim import _check_nonnegative


class ClipGradNormState(NamedTuple):
    total_norm: jax.Array  # what torch's clip_grad_norm_ returns, for the last update


def _total_norm(leaves: list[jax.Array], norm_type: float, dtype: Any) -> jax.Array:
    """torch.nn.utils.get_total_norm: the norm_type-norm of the per-tensor norms."""
    if not leaves:
        return jnp.zeros((), dtype)
    norms = [jnp.linalg.vector_norm(up(g), ord=norm_type) for g in leaves]
    return jnp.linalg.vector_norm(jnp.stack([n.astype(dtype) for n in norms]), ord=norm_type)


def _norm_dtype(leaves: list[Any]) -> Any:
    """The total norm's dtype: the leaves' compute dtypes promoted together."""
    dtypes = [compute_dtype(x) for x in leaves]
    return jnp.result_type(*dtypes) if dtypes else default_float()


class PytorchClipGradNorm(Transform):
    """torch.nn.utils.clip_grad_norm_; see :func:`clip_grad_norm`."""

    elementwise = True

    max_norm: Any = 1.0
    norm_type: float = static(2.0)
    error_if_nonfinite: bool = static(False)

    @property
    def name(self) -> str:
        return "pytorch.clip_grad_norm"

    def __post_init__(self):
        check_range(self, "max_norm", low=0.0, allow_inf=True)
        # torch also runs p <= 0 and NaN (no norms: a count, a minimum, NaN updates).
        if not self.norm_type > 0:
            fail(self, "norm_type", "norm_type must be a p > 0 or inf")

    def init(self, params):
        return ClipGradNormState(jnp.zeros((), _norm_dtype(jax.tree.leaves(params))))

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        leaves = jax.tree.leaves(updates)
        total_norm = _total_norm(leaves, self.norm_type, state.total_norm.dtype)
        if self.error_if_nonfinite:
            # A callback raises under jit as well (JaxRuntimeError, a RuntimeError).
            jax.debug.callback(self._raise_if_nonfinite, total_norm)
        clip_coef = jnp.minimum(hp(self.max_norm, total_norm) / (total_norm + 1e-6), 1.0)
        clipped = jax.tree.map(lambda g: (hp(clip_coef, g) * up(g)).astype(g.dtype), updates)
        return clipped, ClipGradNormState(total_norm)

    def _raise_if_nonfinite(self, total_norm: Any) -> None:
        if not jnp.isfinite(total_norm):
            raise RuntimeError(
                f"{self.name}(error_if_nonfinite=True): the total norm of order "
                f"{self.norm_type} of the updates is {float(total_norm)}, so it cannot be "
                "clipped (as torch); set error_if_nonfinite=False to scale by it anyway"
            )


@recipe
def clip_grad_norm(
    max_norm: Any,
    norm_type: float | str = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> PytorchClipGradNorm:
    """``torch.nn.utils.clip_grad_norm_``: scales all updates by one coefficient.

    Update rule (torch 2.x)::

        n_i = |g_i|_p                 for each leaf g_i      (p = norm_type)
        n   = |(n_1, n_2, ...)|_p     (p = inf: max |g|)
        g  <- g * min(max_norm / (n + 1e-6), 1)

    ``gradtx.tree_get(state, "total_norm")`` is ``n`` of the last update, what
    torch returns. ``error_if_nonfinite=True`` raises a RuntimeError when ``n``
    is NaN or infinite, also under jit (through ``jax.debug.callback``: the
    jitted call fails with a ``JaxRuntimeError``, a RuntimeError that carries
    the message). ``foreach`` changes no numbers and is ignored.

    Differences: from ``gradtx.clip_by_global_norm`` (optax), the ``+ 1e-6``
    (a relative ``1e-6 / n`` when clipping) and the norm of per-leaf norms;
    from torch, norms accumulate in at least float32 (torch: in each
    gradient's dtype), and ``max_norm < 0`` (torch flips the gradients),
    ``norm_type <= 0`` and NaN are refused.

    Args:
        max_norm: the largest total norm, >= 0 (inf: no clipping).
        norm_type: p, > 0, or ``inf`` / ``"inf"``. Default 2.0.
        error_if_nonfinite: raise when n is NaN or infinite. Default False.
        foreach: accepted and ignored.

    Reference: PyTorch 2.13, ``torch.nn.utils.clip_grad_norm_``; Pascanu, Mikolov,
    Bengio, *On the difficulty of training recurrent neural networks*, arXiv:1211.5063.

    >>> tx = clip_grad_norm(1.0)
    >>> g, state = tx.update({"w": jnp.array([3.0, 4.0])}, tx.init({"w": jnp.zeros(2)}))
    >>> float(state.total_norm)
    5.0
    """
    del foreach
    try:
        norm_type = float(norm_type)  # torch's float(norm_type): "inf" is inf
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"pytorch.clip_grad_norm(norm_type={norm_type!r}): norm_type must be a number "
            f"or 'inf' ({error})"
        ) from None
    return PytorchClipGradNorm(
        max_norm=max_norm, norm_type=norm_type, error_if_nonfinite=bool(error_if_nonfinite)
    )


@recipe
def clip_grad_value(clip_value: Any, foreach: bool | None = None) -> Chain:
    """``torch.nn.utils.clip_grad_value_``: clamps each coordinate, as ``gradtx.clip``.

    Update rule::

        g <- clamp(g, -clip_value, clip_value)

    ``foreach`` changes no numbers and is ignored. Difference from torch:
    ``clip_value < 0`` is refused (torch sets every coordinate to ``clip_value``).

    Args:
        clip_value: the bound, >= 0.
        foreach: accepted and ignored.

    Reference: PyTorch 2.13, ``torch.nn.utils.clip_grad_value_``.

    >>> import jax.numpy as jnp
    >>> from gradtx.compat import pytorch
    >>> tx = pytorch.clip_grad_value(0.5)
    >>> updates, _ = tx.update({"w": jnp.array([-2.0, 0.3])}, tx.init({"w": jnp.zeros(2)}))
    >>> [round(float(v), 4) for v in updates["w"]]
    [-0.5, 0.3]
    """
    del foreach
    _check_nonnegative("clip_grad_value", clip_value=clip_value)
    return named_recipe("pytorch.clip_grad_value", clip(clip_value))
