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

    Reference: Pascanu, Mikolov, Bengio, *On the difficulty of training
    recurrent neural networks*, ICML 2013.
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
            return (u32 * max_norm / jnp.where(denominator > 0, denominator, 1)).astype(
                jnp.result_type(u)
            )

        return jax.tree.map(leaf, updates), state


def clip_by_block_norm(max_norm: float) -> ClipByBlockNorm:
    """Clips each leaf (block) by its own L2 norm, as Keras's ``clipnorm``.

    Update rule, for each leaf ``u`` separately::

        u <- u * max_norm / max(|u|_2, max_norm)
    """
    return ClipByBlockNorm(max_norm=max_norm)
