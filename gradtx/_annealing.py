"""Simulated annealing: Metropolis chains under a cooling schedule, as a gradient-free transform."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._base import _schedule_samples, check_range, fail, Schedule, static, Transform
from ._combine import recipe
from ._population import as_vector, score, step_to
from ._scale import value_at
from ._tree import default_float, prng_key, safe_increment, zero_count


class LogarithmicCooling(Schedule):
    init_value: float = 1.0

    def __post_init__(self):
        check_range(self, "init_value", low=0.0)

    def __call__(self, count):
        t = jnp.asarray(count, default_float())
        return jnp.asarray(self.init_value, default_float()) / jnp.log(jnp.e + t)


def logarithmic_cooling(init_value: float = 1.0) -> LogarithmicCooling:
    """Logarithmic cooling, Geman and Geman's schedule started at ``init_value``.

    Formula::

        T(k) = init_value / ln(e + k)        k = 0, 1, 2, ...

    Slow enough that annealing finds the global minimum with probability one
    (for a large enough ``init_value``); ``exponential_decay(T0, 1, rate)`` is
    the geometric cooling ``T0 rate**k`` of Kirkpatrick et al., faster in practice.

    Args:
        init_value: T(0), >= 0. Default 1.0.

    Reference: Geman and Geman, *Stochastic Relaxation, Gibbs Distributions,
    and the Bayesian Restoration of Images*, IEEE PAMI 1984.

    >>> import gradtx
    >>> schedule = gradtx.logarithmic_cooling(2.0)
    >>> [round(float(schedule(k)), 4) for k in (0, 10, 100)]
    [2.0, 0.7865, 0.4318]
    """
    return LogarithmicCooling(init_value=init_value)


class SimulatedAnnealingState(NamedTuple):
    count: jax.Array
    positions: jax.Array  # (n_chains, dim): each chain's current point
    losses: jax.Array  # (n_chains,): their losses (evaluated at the first update)
    best: jax.Array  # (dim,): the best point evaluated so far
    best_loss: jax.Array  # ()
    rng_key: jax.Array


def draws(key: jax.Array, shape: tuple[int, int], dtype: Any) -> tuple[jax.Array, jax.Array]:
    """One step's random numbers: Gaussian proposal noise per chain and coordinate,
    and a ``U[0, 1)`` acceptance draw per chain."""
    k_noise, k_accept = jax.random.split(key)
    noise = jax.random.normal(k_noise, shape, dtype)
    return noise, jax.random.uniform(k_accept, shape[:1], dtype)


def metropolis(losses, proposed, temperature, u):
    """Accept where ``u < exp(-(f_new - f) / T)``: always downhill, uphill with that chance.

    At ``T = 0`` only strict improvements pass; an infinite (NaN) proposal never does.
    """
    return u < jnp.exp(-(proposed - losses) / temperature)


class SimulatedAnnealing(Transform):
    """Simulated annealing with Gaussian proposals (``simulated_annealing``)."""

    gradient_free = True

    temperature: Any = 1.0
    step_size: Any = 0.1
    n_chains: int = static(1)
    key: Any = 0

    def __post_init__(self):
        check_range(self, "temperature", low=0.0)
        check_range(self, "step_size", low=0.0)
        check_range(self, "n_chains", low=1, integer=True)
        if isinstance(self.temperature, Schedule):
            samples = _schedule_samples(self.temperature)
            values = None if samples is None else samples.values
            if values is not None and np.any(np.diff(values) > 1e-6 * np.max(values)):
                fail(self, "temperature", "a cooling schedule must not increase")

    def init(self, params):
        vector, _ = as_vector(params)
        key = prng_key(self.key)
        inf = jnp.asarray(jnp.inf, vector.dtype)
        return SimulatedAnnealingState(
            count=zero_count(),
            positions=jnp.tile(vector, (self.n_chains, 1)),
            losses=jnp.full((self.n_chains,), inf),
            best=vector,
            best_loss=inf,
            rng_key=key,
        )

    def update(
        self, updates, state, params=None, *, value_fn=None, population_value_fn=None, **extra
    ):
        del updates, extra
        _, unravel = as_vector(params)
        x = state.positions
        evaluate = lambda points: score(self, points, unravel, value_fn, population_value_fn)  # noqa: E731
        # The chains' start is evaluated once, at the first step (init has no value_fn).
        losses = jax.lax.cond(
            state.count == 0, lambda: evaluate(x).astype(x.dtype), lambda: state.losses
        )
        temperature = value_at(self.temperature, state.count).astype(x.dtype)
        step_size = value_at(self.step_size, state.count).astype(x.dtype)
        key, draw = jax.random.split(state.rng_key)
        noise, u = draws(draw, x.shape, x.dtype)
        proposals = x + step_size * noise
        proposed = evaluate(proposals).astype(x.dtype)
        accept = metropolis(losses, proposed, temperature, u)
        # The best point evaluated: a rejected proposal may still be the best so far.
        seen = jnp.concatenate([x, proposals])
        seen_losses = jnp.concatenate([losses, proposed])
        i = jnp.argmin(seen_losses)
        found = seen_losses[i] < state.best_loss
        best = jnp.where(found, seen[i], state.best)
        best_loss = jnp.where(found, seen_losses[i], state.best_loss)
        new_state = SimulatedAnnealingState(
            count=safe_increment(state.count),
            positions=jnp.where(accept[:, None], proposals, x),
            losses=jnp.where(accept, proposed, losses),
            best=best,
            best_loss=best_loss,
            rng_key=key,
        )
        return step_to(params, best, unravel), new_state


@recipe
def simulated_annealing(
    temperature: Any = 1.0, step_size: Any = 0.1, n_chains: int = 1, key: Any = 0
) -> SimulatedAnnealing:
    """Simulated annealing: Metropolis chains with Gaussian proposals under a cooling schedule.

    Each update moves every chain by one Metropolis step and params to the best
    point evaluated so far::

        T = temperature(k);  s = step_size(k)                  k = 0, 1, 2, ...
        y_c = x_c + s * N(0, I)                                 one proposal per chain
        x_c, f_c <- y_c, f(y_c)   if  u_c < exp(-(f(y_c) - f_c) / T),   u_c ~ U[0, 1)
        params <- the best point evaluated

    Call it with ``update(None, state, params, value_fn=loss_fn)`` (or
    ``population_value_fn=``); every chain starts at params. It costs
    ``n_chains`` evaluations per step (twice that at the first, which also
    evaluates the start).

    Args:
        temperature: T >= 0, a number or a non-increasing gradtx schedule:
            ``exponential_decay(T0, 1, rate)`` is geometric cooling,
            ``logarithmic_cooling(T0)`` Geman and Geman's. T = 0 is greedy descent.
            Default 1.0.
        step_size: the proposal's standard deviation >= 0, a number or a schedule.
            Default 0.1.
        n_chains: independent chains run side by side (vmapped), an integer >= 1.
            Default 1.
        key: a JAX PRNG key or an integer seed. Default 0.

    Differences from ``scipy.optimize.dual_annealing``: scipy's visits are
    Cauchy-Lorentz (Tsallis) jumps, its acceptance generalised, its schedule
    fixed, and it polishes with a local search; this is the classical algorithm
    of Kirkpatrick et al., for any loss of a params tree, under jit.

    >>> import jax.numpy as jnp, gradtx
    >>> tx = gradtx.simulated_annealing(gradtx.exponential_decay(1.0, 1, 0.9), n_chains=4)
    >>> params = jnp.ones(2)
    >>> state = tx.init(params)
    >>> updates, state = tx.update(None, state, params, value_fn=lambda p: jnp.sum(p**2))
    >>> bool(jnp.sum(gradtx.apply_updates(params, updates) ** 2) <= 2.0)
    True

    Reference: Kirkpatrick, Gelatt and Vecchi, *Optimization by Simulated
    Annealing*, Science 1983; Metropolis et al., J. Chem. Phys. 1953.
    """
    return SimulatedAnnealing(
        temperature=temperature, step_size=step_size, n_chains=n_chains, key=key
    )
