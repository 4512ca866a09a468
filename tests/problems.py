"""Small test problems shared by the test modules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def make_params(dtype=jnp.float32, seed: int = 0) -> dict:
    """Three leaves of different shapes and a nested dict."""
    rng = np.random.default_rng(seed)
    return {
        "w": jnp.asarray(rng.normal(size=(3, 4)), dtype),
        "b": jnp.asarray(rng.normal(size=(4,)), dtype),
        "head": {"s": jnp.asarray(rng.normal(), dtype)},
    }


def quadratic_loss(params) -> jax.Array:
    """A convex quadratic with different curvatures per leaf, minimum 0 at 0."""
    w, b, s = params["w"], params["b"], params["head"]["s"]
    return 0.5 * jnp.sum(w**2) + jnp.sum(2.0 * b**2) + 0.25 * s**2 + 0.1 * jnp.sum(w[0] * b)


def wavy_loss(params) -> jax.Array:
    """A mildly nonconvex loss whose gradient depends on the params."""
    leaves = jax.tree.leaves(params)
    return sum(jnp.sum(x**2 + 0.3 * jnp.sin(3.0 * x)) for x in leaves)


def rosenbrock(params) -> jax.Array:
    x, y = params["xy"][0], params["xy"][1]
    return (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2
