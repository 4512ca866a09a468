"""Clipping by value, by global norm, by per-block RMS."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._base import check_range, Transform
from ._combine import EmptyState
from ._tree import hp, tree_global_norm, up


class _Stateless(Transform):
    def init(self, params):
        del params
        return EmptyState()


class Clip(_Stateless):
    """Clips each coordinate to ``[-max_delta, max_delta]``."""

    elementwise = True

    max_delta: float = 1.0

    def __post_init__(self):
        check_range(self, "max_delta", low=0.0, allow_inf=True)

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        bound = lambda u: hp(self.max_delta, u).astype(jnp.result_type(u))  # noqa: E731
        return jax.tree.map(lambda u: jnp.clip(u, -bound(u), bound(u)), updates), state


def clip(max_delta: float) -> Clip:
    """Clips updates elementwise, as ``optax.clip``.

    Update rule::

        u_t <- clip(u_t, -max_delta, max_delta)

    Args:
        max_delta: the bound, >= 0 (inf: no clipping).

    Reference: optax ``optax.clip``; Keras's ``clipvalue``.

    >>> import gradtx
    >>> import jax.numpy as jnp
    >>> tx = gradtx.clip(1.0)
    >>> tx.update({"w": jnp.array([-3.0, 0.5, 2.0])}, tx.init(None))[0]["w"].tolist()
    [-1.0, 0.5, 1.0]
    """
    return Clip(max_delta=max_delta)


class ClipByGlobalNorm(_Stateless):
    """Rescales all updates together when their joint L2 norm exceeds ``max_norm``."""

    elementwise = True

    max_norm: float = 1.0

    def __post_init__(self):
        check_range(self, "max_norm", low=0.0, allow_inf=True)

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        norm = tree_global_norm(updates)
        max_norm = jnp.asarray(self.max_norm, norm.dtype)
        # Dividing only where the norm is too large: no 0/0 when the norm is 0.
        factor = jnp.where(norm > max_norm, max_norm / jnp.where(norm > 0, norm, 1), 1)
        return jax.tree.map(
            lambda u: (hp(factor, u) * up(u)).astype(jnp.result_type(u)), updates
        ), state


def clip_by_global_norm(max_norm: float) -> ClipByGlobalNorm:
    """Clips updates by their global norm, as ``optax.clip_by_global_norm``.

    Update rule::

        n = sqrt(sum over all leaves of |u|**2)
        u_t <- u_t * min(1, max_norm / n)

    Zero gradients give zero updates, never NaN (also with ``max_norm=0``).

    Args:
        max_norm: the largest global norm, >= 0 (inf: no clipping).

    Reference: Pascanu, Mikolov, Bengio, *On the difficulty of training
    recurrent neural networks*, ICML 2013.

    The norm of (3, 4) is 5; clipped to 1:

    >>> import gradtx
    >>> tx = gradtx.clip_by_global_norm(1.0)
    >>> u, _ = tx.update({"a": 3.0, "b": 4.0}, tx.init(None))
    >>> round(float(u["a"]), 4), round(float(u["b"]), 4)
    (0.6, 0.8)
    """
    return ClipByGlobalNorm(max_norm=max_norm)


class ClipByBlockRms(_Stateless):
    """Rescales each leaf whose RMS exceeds ``threshold``."""

    threshold: float = 1.0

    def __post_init__(self):
        check_range(self, "threshold", low=0.0, allow_inf=True)

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args

        def leaf(u):
            u32 = up(u)
            rms = jnp.sqrt(jnp.mean(jnp.abs(u32) ** 2))
            threshold = hp(self.threshold, u32)
            factor = jnp.where(rms > threshold, threshold / jnp.where(rms > 0, rms, 1), 1)
            return (factor * u32).astype(jnp.result_type(u))

        return jax.tree.map(leaf, updates), state


def clip_by_block_rms(threshold: float) -> ClipByBlockRms:
    """Clips each leaf (block) by its root mean square, as ``optax.clip_by_block_rms``.

    Update rule, for each leaf ``u`` separately::

        u <- u / max(1, rms(u) / threshold)

    Args:
        threshold: the largest RMS of a leaf, >= 0 (inf: no clipping).

    Reference: optax ``optax.clip_by_block_rms``.

    >>> import gradtx
    >>> import jax.numpy as jnp
    >>> tx = gradtx.clip_by_block_rms(1.0)
    >>> u, _ = tx.update({"w": jnp.array([3.0, 4.0]), "b": 0.5}, tx.init(None))
    >>> [round(x, 4) for x in u["w"].tolist()], float(u["b"])
    ([0.8485, 1.1314], 0.5)
    """
    return ClipByBlockRms(threshold=threshold)


class ClipByBlockNorm(_Stateless):
    """Rescales each leaf whose L2 norm exceeds ``max_norm``."""

    max_norm: float = 1.0

    def __post_init__(self):
        check_range(self, "max_norm", low=0.0, allow_inf=True)

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args

        def leaf(u):
            u32 = up(u)
            norm = jnp.sqrt(jnp.sum(jnp.abs(u32) ** 2))
            max_norm = hp(self.max_norm, u32)
            denominator = jnp.maximum(norm, max_norm)
            scaled = u32 * max_norm / jnp.where(denominator > 0, denominator, 1)  # Keras's bits
            # An infinite bound (inf / inf) or a NaN norm (a divisor of 1) would spoil the
            # leaf: it is left as it is, as clip_by_block_rms and clip_by_global_norm leave it.
            keep = jnp.isinf(max_norm) | jnp.isnan(norm)
            return jnp.where(keep, u32, scaled).astype(jnp.result_type(u))

        return jax.tree.map(leaf, updates), state


def clip_by_block_norm(max_norm: float) -> ClipByBlockNorm:
    """Clips each leaf (block) by its own L2 norm, as Keras's ``clipnorm``.

    Update rule, for each leaf ``u`` separately::

        u <- u * max_norm / max(|u|_2, max_norm)

    Args:
        max_norm: the largest L2 norm of a leaf, >= 0 (inf: no clipping).

    A leaf whose norm is NaN is left as it is (Keras makes it all NaN), as
    :func:`clip_by_block_rms` and :func:`clip_by_global_norm` leave it.

    Reference: Keras ``keras.optimizers.Optimizer(clipnorm=...)``.

    >>> import gradtx
    >>> import jax.numpy as jnp
    >>> tx = gradtx.clip_by_block_norm(1.0)
    >>> u, _ = tx.update({"w": jnp.array([3.0, 4.0]), "b": 0.5}, tx.init(None))
    >>> [round(x, 4) for x in u["w"].tolist()], float(u["b"])
    ([0.6, 0.8], 0.5)
    """
    return ClipByBlockNorm(max_norm=max_norm)
