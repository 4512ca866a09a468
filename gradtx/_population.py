"""What the gradient-free methods share: the parameters as one vector, a population scored at once.

A gradient-free transform (``gradient_free = True``) is updated with
``update(grads_or_None, state, params, value_fn=f)``: it proposes a population
of parameter vectors, scores it with ``f`` (through ``vmap``, or with
``population_value_fn=g``, a function of the whole population stacked along a
leading axis, for users whose loss is already batched) and returns the step
that moves ``params`` to the method's new mean or best point.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp

from ._base import fail_missing, Transform
from ._tree import up

SCORE_CALL = (
    "update(None, state, params, value_fn=loss_fn) with loss_fn(params) -> scalar to "
    "minimise (or population_value_fn=f, f(stacked params) -> one value per member)"
)


def as_vector(params: Any) -> tuple[jax.Array, Callable[[jax.Array], Any]]:
    """``params`` as one vector in the compute dtype (float32 for bfloat16 and float16
    params: the search's statistics need it) and the function that gives the tree back,
    in the leaves' own dtypes (jax's ravel_pytree)."""
    vector, unravel = ravel_pytree(params)
    # A copy: raveling one 1-D array returns its own buffer, which a state built from it
    # would share with the params (donating both fails). Free under jit.
    return jnp.array(up(vector), copy=True), lambda v: unravel(v.astype(vector.dtype))


def score(
    transform: Transform,
    population: jax.Array,
    unravel: Callable[[jax.Array], Any],
    value_fn: Callable[[Any], jax.Array] | None = None,
    population_value_fn: Callable[[Any], jax.Array] | None = None,
) -> jax.Array:
    """The loss of every row of ``population`` (shape ``(members, dim)``), as a vector.

    ``value_fn`` is called on one member's params tree under ``vmap``;
    ``population_value_fn`` on the trees stacked along a leading axis. The
    standard error names what is missing when neither is given.
    """
    if population_value_fn is not None:
        values = population_value_fn(jax.vmap(unravel)(population))
    elif value_fn is not None:
        values = jax.vmap(lambda member: value_fn(unravel(member)))(population)
    else:
        fail_missing(transform, "value_fn= (the loss to minimise)", SCORE_CALL)
    values = jnp.asarray(values)
    if values.shape != (population.shape[0],):
        given = "population_value_fn" if population_value_fn is not None else "value_fn"
        raise ValueError(
            f"{transform.name}.update({given}=...): the loss must be one number per member "
            f"(a scalar from value_fn, a vector of {population.shape[0]} from "
            f"population_value_fn); got shape {values.shape} for the population"
        )
    # A member whose loss is NaN is the worst, never the best (NaN compares false). In the
    # search's dtype, as the state holds the losses: a bfloat16 loss is kept in float32.
    values = values.astype(population.dtype)
    return jnp.where(jnp.isnan(values), jnp.inf, values)


def centred_ranks(values: jax.Array) -> jax.Array:
    """Fitness shaping of Salimans et al. (2017): ranks scaled to [-0.5, 0.5], lowest loss -0.5.

    Ties are broken by position (as ``argsort`` orders them).
    """
    n = values.shape[0]
    order = jnp.argsort(values)
    ranks = jnp.empty(n, values.dtype).at[order].set(jnp.arange(n, dtype=values.dtype))
    return ranks / jnp.maximum(n - 1, 1) - 0.5


def step_to(params: Any, target: jax.Array, unravel: Callable[[jax.Array], Any]) -> Any:
    """The updates that move ``params`` to the vector ``target``, in the params' dtypes."""
    return jax.tree.map(lambda t, p: (t - p).astype(p.dtype), unravel(target), params)
