"""Particle swarm optimisation: pyswarms' global-best PSO as a gradient-free transform."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._base import check_range, fail, static, Transform
from ._combine import recipe
from ._population import as_vector, score, step_to
from ._tree import prng_key


class ParticleSwarmState(NamedTuple):
    positions: jax.Array  # (n_particles, dim): where the swarm is evaluated next
    velocities: jax.Array  # (n_particles, dim)
    best_positions: jax.Array  # (n_particles, dim): each particle's personal best
    best_losses: jax.Array  # (n_particles,): inf until a particle scores a finite loss
    global_best: jax.Array  # (dim,): the swarm's best point so far
    global_best_loss: jax.Array  # ()
    rng_key: jax.Array


def default_particles(dim: int) -> int:
    """SPSO 2006's swarm size, ``10 + floor(2 sqrt(dim))`` (pyswarms has no default)."""
    return 10 + int(2 * math.sqrt(dim))


def coefficients(key: jax.Array, shape: tuple[int, int], dtype: Any) -> tuple[jax.Array, jax.Array]:
    """The cognitive and social draws ``r1, r2 ~ U[0, 1)``, one per particle and coordinate."""
    r1, r2 = jax.random.uniform(key, (2, *shape), dtype)
    return r1, r2


def periodic(x: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
    """pyswarms' default boundary handler: a coordinate that leaves [low, high] wraps around."""
    width = jnp.abs(high - low)
    x = jnp.where(x < low, high - jnp.mod(low - x, width), x)
    return jnp.where(x > high, low + jnp.mod(x - high, width), x)


def move_swarm(tx: ParticleSwarm, state: ParticleSwarmState, r1, r2):
    """The velocity and position update of global-best PSO, given the draws ``r1, r2``."""
    x, v = state.positions, state.velocities
    w, c1, c2 = (jnp.asarray(h, x.dtype) for h in (tx.w, tx.c1, tx.c2))
    v = w * v + c1 * r1 * (state.best_positions - x) + c2 * r2 * (state.global_best - x)
    if tx.velocity_clamp is not None:
        v = jnp.clip(v, *(jnp.asarray(c, x.dtype) for c in tx.velocity_clamp))
    x = x + v
    if tx.bounds is not None:
        x = periodic(x, *(jnp.asarray(b, x.dtype) for b in tx.bounds))
    return x, v


class ParticleSwarm(Transform):
    """Global-best particle swarm optimisation (``particle_swarm``)."""

    gradient_free = True

    n_particles: Any = static(None)
    w: float = 0.7298
    c1: float = 1.49618
    c2: float = 1.49618
    init_scale: float = 1.0
    velocity_clamp: Any = None
    bounds: Any = None
    key: Any = 0

    def __post_init__(self):
        if self.n_particles is not None:
            check_range(self, "n_particles", low=1, integer=True)
        check_range(self, "w", low=0.0)
        check_range(self, "c1", low=0.0)
        check_range(self, "c2", low=0.0)
        check_range(self, "init_scale", low=0.0)
        for arg in ("velocity_clamp", "bounds"):
            _check_interval(self, arg)

    def init(self, params):
        vector, _ = as_vector(params)
        dim, dtype = vector.shape[0], vector.dtype
        n = self.n_particles or default_particles(dim)
        key, k_x, k_v = jax.random.split(prng_key(self.key), 3)
        scale = jnp.asarray(self.init_scale, dtype)
        # A box of half-width init_scale around params (pyswarms: U[0, 1) or U[bounds)).
        x = vector + scale * jax.random.uniform(k_x, (n, dim), dtype, -1.0, 1.0)
        if self.velocity_clamp is None:
            v = scale * jax.random.uniform(k_v, (n, dim), dtype, -1.0, 1.0)
        else:  # as pyswarms: uniform between the clamps
            low, high = (jnp.asarray(c, dtype) for c in self.velocity_clamp)
            v = jax.random.uniform(k_v, (n, dim), dtype, low, high)
        if self.bounds is not None:
            x = periodic(x, *(jnp.asarray(b, dtype) for b in self.bounds))
        inf = jnp.asarray(jnp.inf, dtype)
        return ParticleSwarmState(
            positions=x,
            velocities=v,
            best_positions=jnp.copy(x),  # its own buffer: a donated state may not alias
            best_losses=jnp.full((n,), inf),
            global_best=vector,
            global_best_loss=inf,
            rng_key=key,
        )

    def update(
        self, updates, state, params=None, *, value_fn=None, population_value_fn=None, **extra_args
    ):
        del updates, extra_args
        _, unravel = as_vector(params)
        losses = score(self, state.positions, unravel, value_fn, population_value_fn)
        losses = losses.astype(state.best_losses.dtype)
        improved = losses < state.best_losses
        best_positions = jnp.where(improved[:, None], state.positions, state.best_positions)
        best_losses = jnp.where(improved, losses, state.best_losses)
        leader = jnp.argmin(best_losses)
        found = best_losses[leader] < state.global_best_loss
        global_best = jnp.where(found, best_positions[leader], state.global_best)
        global_best_loss = jnp.where(found, best_losses[leader], state.global_best_loss)
        key, draw = jax.random.split(state.rng_key)
        r1, r2 = coefficients(draw, state.positions.shape, state.positions.dtype)
        state = state._replace(
            best_positions=best_positions,
            best_losses=best_losses,
            global_best=global_best,
            global_best_loss=global_best_loss,
            rng_key=key,
        )
        positions, velocities = move_swarm(self, state, r1, r2)
        state = state._replace(positions=positions, velocities=velocities)
        return step_to(params, global_best, unravel), state


def _check_interval(obj: Transform, arg: str) -> None:
    """None, or a pair (low, high) of numbers with low < high."""
    value = getattr(obj, arg)
    if value is None:
        return
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        fail(obj, arg, f"{arg} must be None or a pair (low, high)")
    object.__setattr__(obj, arg, tuple(value))
    low, high = value
    if all(isinstance(b, (int, float, np.number)) for b in value) and not low < high:
        fail(obj, arg, f"{arg} must be a pair (low, high) with low < high")


@recipe
def particle_swarm(
    n_particles: int | None = None,
    w: float = 0.7298,
    c1: float = 1.49618,
    c2: float = 1.49618,
    init_scale: float = 1.0,
    velocity_clamp: tuple[float, float] | None = None,
    bounds: tuple[float, float] | None = None,
    key: Any = 0,
) -> ParticleSwarm:
    """Global-best particle swarm optimisation, as pyswarms 1.3's ``GlobalBestPSO``.

    Each update evaluates the swarm, updates the personal and global bests,
    moves the swarm and moves params to the global best::

        f_i = f(x_i);   p_i <- x_i where f_i < f(p_i);   g <- argmin_i f(p_i) if it improves
        v_i <- w v_i + c1 r1 (p_i - x_i) + c2 r2 (g - x_i)   r1, r2 ~ U[0, 1) per coordinate
        v_i <- clip(v_i, *velocity_clamp)                     (when given)
        x_i <- x_i + v_i, wrapped periodically into bounds    (when given)
        params <- g

    Call it with ``update(None, state, params, value_fn=loss_fn)`` (or
    ``population_value_fn=``); it costs ``n_particles`` evaluations per step.

    Args:
        n_particles: swarm size >= 1; None: ``10 + floor(2 sqrt(dim))`` (SPSO 2006).
        w, c1, c2: inertia, cognitive and social coefficients >= 0 (pyswarms'
            option names); the defaults are Clerc and Kennedy's constriction values.
        init_scale: the particles start uniform in ``params +- init_scale``, and
            their velocities uniform in ``+- init_scale`` (in ``velocity_clamp``
            when given, as pyswarms).
        velocity_clamp: None or ``(low, high)``, as pyswarms' ``velocity_clamp``.
        bounds: None or ``(low, high)`` for every coordinate; positions outside
            wrap around, pyswarms' default ``bh_strategy="periodic"``.
        key: a JAX PRNG key or an integer seed.

    Differences from pyswarms: the swarm starts around ``params`` (pyswarms draws
    ``center * U[0, 1)``, or uniform within bounds, and velocities in ``U[0, 1)``
    without a clamp, whatever the problem); with ``init_scale=0.5`` and params
    at 0.5 the positions have pyswarms' unbounded distribution. Bounds are one
    interval for all coordinates. Given the same swarm and draws, the
    trajectory is pyswarms' (tests/test_swarm.py).

    >>> import jax.numpy as jnp, gradtx
    >>> tx = gradtx.particle_swarm(n_particles=8)
    >>> params = jnp.ones(2)
    >>> state = tx.init(params)
    >>> updates, state = tx.update(None, state, params, value_fn=lambda p: jnp.sum(p**2))
    >>> bool(jnp.sum(gradtx.apply_updates(params, updates) ** 2) < 2.0)
    True

    Reference: Kennedy and Eberhart, *Particle Swarm Optimization*, IJCNN 1995;
    Shi and Eberhart, *A Modified Particle Swarm Optimizer*, 1998 (inertia);
    Clerc and Kennedy, *The Particle Swarm*, IEEE TEC 2002 (w, c1, c2).
    """
    return ParticleSwarm(
        n_particles=n_particles,
        w=w,
        c1=c1,
        c2=c2,
        init_scale=init_scale,
        velocity_clamp=velocity_clamp,
        bounds=bounds,
        key=key,
    )
