"""torch.optim.SparseAdam: Adam that updates only the rows a sparse gradient touches."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..._base import check_choice, check_range, static, Transform
from ..._combine import Chain, named_recipe, recipe
from ..._scale import scale_by_learning_rate
from ..._tree import (
    bias_correction,
    ema,
    hp,
    safe_increment,
    tree_map_unzip,
    tree_zeros_like,
    up,
    zero_count,
)
from ._optim import _maximize, Betas

GRANULARITIES = ("rows", "elements")


class ScaleBySparseAdamState(NamedTuple):
    count: jax.Array
    mu: Any
    nu: Any


class ScaleBySparseAdam(Transform):
    """Adam's moments and step at the present rows only; see :func:`sparse_adam`."""

    b1: Any = 0.9
    b2: Any = 0.999
    eps: Any = 1e-8
    granularity: str = static("rows")

    def __post_init__(self):
        check_range(self, "b1", low=0.0, high=1.0, high_open=True)
        check_range(self, "b2", low=0.0, high=1.0, high_open=True)
        check_range(self, "eps", low=0.0, low_open=True)
        check_choice(self, "granularity", GRANULARITIES)

    def init(self, params):
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
            if jnp.iscomplexobj(leaf):
                raise TypeError(
                    f"scale_by_sparse_adam: the params leaf at {jax.tree_util.keystr(path)} is "
                    "complex; SparseAdam does not support complex parameters (as torch)"
                )
        return ScaleBySparseAdamState(
            zero_count(), tree_zeros_like(params), tree_zeros_like(params)
        )

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        c1, c2 = bias_correction(self.b1, count), bias_correction(self.b2, count)

        def leaf(g, m, v):
            present = self._present(g)
            m = jnp.where(present, ema(g, m, self.b1), m)
            v = jnp.where(present, ema(g, v, self.b2, order=2), v)
            step = jnp.sqrt(hp(c2, g)) / hp(c1, g) * up(m) / (jnp.sqrt(up(v)) + hp(self.eps, g))
            return jnp.where(present, step, 0).astype(g.dtype), m, v

        updates, mu, nu = tree_map_unzip(leaf, updates, state.mu, state.nu)
        return updates, ScaleBySparseAdamState(count, mu, nu)

    def _present(self, g: jax.Array) -> jax.Array:
        """The entries torch's sparse gradient would hold: nonzero rows (or elements)."""
        nonzero = g != 0
        if self.granularity == "elements" or g.ndim < 2:
            return nonzero
        return jnp.any(nonzero, axis=tuple(range(1, g.ndim)), keepdims=True)


@recipe
def sparse_adam(
    lr: Any = 1e-3,
    betas: Betas = (0.9, 0.999),
    eps: float = 1e-8,
    maximize: bool = False,
    *,
    granularity: str = "rows",
) -> Chain:
    """``torch.optim.SparseAdam``: Adam's moments and step only where the gradient is present.

    Update rule, at step t (counted over all steps, as torch's ``state["step"]``),
    for the present rows i, those with a nonzero gradient; the other rows keep
    their moments and do not move::

        m_i <- m_i + (1 - b1) (g_i - m_i);  v_i <- v_i + (1 - b2) (g_i**2 - v_i)
        p_i <- p_i - lr_t * sqrt(1 - b2**t) / (1 - b1**t) * m_i / (sqrt(v_i) + eps)

    Gradients are dense arrays. A row is an index of the first axis, the row of
    an embedding table that ``nn.Embedding(sparse=True)``'s gradient holds;
    ``granularity="elements"`` makes each element one (a gradient sparse in
    every dimension). A BCOO gradient enters as ``sparse.todense(g)``, which sums
    repeated indices as torch's ``coalesce``.

    Why not BCOO leaves: a gradtx update requires the updates to have the
    params' tree structure, and a BCOO is a pytree node of its values and
    integer indices, so ``jax.jit`` would accept it but every transform (and
    ``apply_updates``) refuses it. The dense form costs O(table) per step, as
    Adam does, where torch's costs O(touched rows); the numbers are torch's.

    Differences from torch: the present rows are read from the values, so a row
    that torch's sparse gradient holds with all-zero values is left as it is
    here (torch decays its moments and moves it; an embedding's gradient row is
    exactly zero almost never). torch refuses dense gradients.

    Args:
        lr: > 0, or a schedule. Default 1e-3.
        betas: ``(beta1, beta2)``, each in [0, 1). Default (0.9, 0.999).
        eps: > 0, added outside the root, before the bias correction. Default 1e-8.
        maximize: ascend the gradient. Default False.
        granularity: static, ``"rows"`` or ``"elements"``. Default ``"rows"``.

    Reference: PyTorch 2.13, ``torch.optim.SparseAdam``; Kingma & Ba, arXiv:1412.6980.

    >>> import jax.numpy as jnp
    >>> tx = sparse_adam(lr=0.1)
    >>> params = {"emb": jnp.zeros((2, 2))}
    >>> grads = {"emb": jnp.array([[1.0, -2.0], [0.0, 0.0]])}  # row 1 not looked up
    >>> updates, state = tx.update(grads, tx.init(params), params)
    >>> [[round(float(u), 5) + 0.0 for u in row] for row in updates["emb"]]
    [[-0.1, 0.1], [0.0, 0.0]]
    """
    if isinstance(lr, (int, float)) and not lr > 0:
        raise ValueError(f"pytorch.sparse_adam(lr={lr!r}): lr must be > 0")
    b1, b2 = betas
    return named_recipe(
        "pytorch.sparse_adam",
        _maximize(maximize),
        ScaleBySparseAdam(b1=b1, b2=b2, eps=eps, granularity=granularity),
        scale_by_learning_rate(lr),
    )
