"""Ready-made masks for :func:`gradtx.masked`, ``add_decayed_weights(mask=...)`` and the like.

Each is a small hashable object that, called on the params, returns a tree of
booleans; being hashable, it does not make a jitted step retrace.

>>> import gradtx, jax.numpy as jnp
>>> params = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)},
...           "layer_norm": {"scale": jnp.ones(3)}}
>>> gradtx.masks.weight_decay()(params)
{'dense': {'bias': False, 'kernel': True}, 'layer_norm': {'scale': False}}
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ._base import static, Struct

NO_DECAY_NAMES = ("bias", "scale", "norm", "ln", "bn", "embedding")


def _key_text(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


class NdimAtLeast(Struct):
    """True for leaves with at least ``ndim`` dimensions."""

    ndim: int = static(2)

    def __call__(self, params: Any) -> Any:
        return jax.tree.map(lambda p: jnp.ndim(p) >= self.ndim, params)


class Excluding(Struct):
    """False for leaves whose path contains one of ``names`` (case-insensitive)."""

    names: tuple = static(NO_DECAY_NAMES)

    def __call__(self, params: Any) -> Any:
        def keep(path, _):
            parts = [_key_text(k).lower() for k in path]
            return not any(name in part for part in parts for name in self.names)

        return jax.tree_util.tree_map_with_path(keep, params)


class AllOf(Struct):
    """True where every mask is true."""

    masks: tuple = static(())

    def __call__(self, params: Any) -> Any:
        trees = [mask(params) for mask in self.masks]
        return jax.tree.map(lambda *flags: all(flags), *trees)


def ndim_at_least(ndim: int = 2) -> NdimAtLeast:
    """Only matrices and larger (``ndim >= 2``): no decay on biases, scales, scalars.

    Args:
        ndim: the fewest dimensions a leaf needs to be selected (not checked). Default 2.

    Reference: the ``mask`` argument of ``optax.add_decayed_weights`` and ``optax.masked``.

    >>> import gradtx, jax.numpy as jnp
    >>> params = {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}
    >>> gradtx.masks.ndim_at_least(2)(params)
    {'bias': False, 'kernel': True}
    """
    return NdimAtLeast(ndim=ndim)


def excluding(*names: str) -> Excluding:
    """Every leaf except those whose path mentions one of ``names``.

    A name matches any key of the path that contains it, case-insensitively.

    Args:
        names: the substrings to exclude; none given means ``NO_DECAY_NAMES``
            (bias, scale, norm, ln, bn, embedding).

    Reference: the ``mask`` argument of ``optax.add_decayed_weights`` and ``optax.masked``.

    >>> import gradtx, jax.numpy as jnp
    >>> params = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}}
    >>> gradtx.masks.excluding("bias")(params)
    {'dense': {'bias': False, 'kernel': True}}
    """
    return Excluding(names=tuple(n.lower() for n in names) or NO_DECAY_NAMES)


def weight_decay() -> AllOf:
    """The usual weight-decay mask: kernels only, not biases, norm scales or embeddings.

    It is ``ndim_at_least(2)`` and ``excluding()`` together. No arguments.

    Reference: the ``mask`` argument of ``optax.adamw``; the decay it masks is
    Loshchilov & Hutter's, arXiv:1711.05101.

    >>> import gradtx, jax.numpy as jnp
    >>> params = {"embedding": jnp.ones((4, 2)), "dense": {"kernel": jnp.ones((2, 2))}}
    >>> gradtx.masks.weight_decay()(params)
    {'dense': {'kernel': True}, 'embedding': False}
    """
    return AllOf(masks=(ndim_at_least(2), excluding(*NO_DECAY_NAMES)))
