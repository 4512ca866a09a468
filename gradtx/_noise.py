"""Annealed Gaussian gradient noise; noisy SGD."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._base import check_range, Transform
from ._combine import Chain, named_recipe, recipe
from ._scale import scale_by_learning_rate
from ._tree import default_float, prng_key, safe_increment, up, zero_count


class AddNoiseState(NamedTuple):
    count: jax.Array
    rng_key: jax.Array


class AddNoise(Transform):
    """Adds Gaussian noise whose variance decays as ``eta / (1 + t)**gamma``."""

    eta: float = 0.01
    gamma: float = 0.55
    key: Any = 0

    def __post_init__(self):
        check_range(self, "eta", low=0.0)
        check_range(self, "gamma", low=0.0)

    def init(self, params):
        del params
        key = prng_key(self.key)
        return AddNoiseState(zero_count(), key)

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        t = count.astype(default_float())
        std = jnp.sqrt(
            jnp.asarray(self.eta, default_float()) / t ** jnp.asarray(self.gamma, default_float())
        )
        rng_key, sample_key = jax.random.split(state.rng_key)
        leaves, treedef = jax.tree.flatten(updates)
        keys = jax.random.split(sample_key, len(leaves))
        noisy = [
            (
                up(u)
                + std.astype(up(u).dtype) * jax.random.normal(k, jnp.shape(u), jnp.result_type(u))
            ).astype(u.dtype)
            for u, k in zip(leaves, keys)
        ]
        return treedef.unflatten(noisy), AddNoiseState(count, rng_key)


def add_noise(eta: float, gamma: float, key: Any = 0) -> AddNoise:
    """Annealed Gaussian gradient noise, as ``optax.add_noise``.

    Update rule::

        u_t <- u_t + N(0, eta / t**gamma)        t = 1, 2, ...

    ``key`` is a JAX PRNG key or an integer seed; the same key gives the same
    noise as optax. Noise helps escape saddle points and poor local minima.

    Args:
        eta: the noise variance at t = 1, >= 0.
        gamma: the variance's decay exponent, >= 0 (the paper uses 0.55).
        key: a JAX PRNG key or an integer seed. Default 0.

    Reference: Neelakantan et al., *Adding Gradient Noise Improves Learning
    for Very Deep Networks*, arXiv:1511.06807.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.add_noise(0.01, 0.55, key=0)
    >>> u, _ = tx.update({"w": jnp.zeros(3)}, tx.init(None))
    >>> [round(float(v), 4) for v in u["w"]]
    [0.0199, -0.077, -0.1259]
    """
    return AddNoise(eta=eta, gamma=gamma, key=key)


@recipe
def noisy_sgd(learning_rate: Any, eta: float = 0.01, gamma: float = 0.55, key: Any = 0) -> Chain:
    """SGD with annealed gradient noise, as ``optax.noisy_sgd``.

    Update rule::

        p_t = p_{t-1} - lr_t * (g_t + N(0, eta / t**gamma))        t = 1, 2, ...

    Args:
        learning_rate: a number or a schedule, >= 0.
        eta: the noise variance at t = 1, >= 0. Default 0.01.
        gamma: the variance's decay exponent, >= 0. Default 0.55.
        key: a JAX PRNG key or an integer seed. Default 0.

    Reference: Neelakantan et al., *Adding Gradient Noise Improves Learning
    for Very Deep Networks*, arXiv:1511.06807.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.noisy_sgd(0.1)
    >>> params = {"w": jnp.zeros(3)}
    >>> u, _ = tx.update({"w": jnp.ones(3)}, tx.init(params))
    >>> [round(float(v), 4) for v in u["w"]]
    [-0.102, -0.0923, -0.0874]
    """
    return named_recipe(
        "noisy_sgd", add_noise(eta, gamma, key), scale_by_learning_rate(learning_rate)
    )
