"""Evolution strategies, Gaussian-smoothing gradients and a genetic algorithm.

Gradient-free transforms (see ``_population``): each ``update(None, state,
params, value_fn=f)`` scores a population drawn around ``params``.
``evolution_strategies`` and ``perturbation_gradient`` return a gradient
*estimate* for a first-order optimizer chained after them; ``genetic_algorithm``
returns the step to the best member found so far.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._base import check_choice, check_range, static, Transform
from ._combine import recipe
from ._population import as_vector, centred_ranks, score, step_to
from ._regularize import _require_params
from ._tree import prng_key, tree_cast_like


def _count_nonfinite(values: jax.Array) -> jax.Array:
    # score() has turned NaN into inf: both are counted.
    return jnp.sum(~jnp.isfinite(values)).astype(jnp.int32)


def _finite_or_zero(weights: jax.Array) -> jax.Array:
    """A weight that is not finite leaves its perturbation out of the estimate (never NaN)."""
    return jnp.where(jnp.isfinite(weights), weights, 0)


# -- OpenAI-ES ---------------------------------------------------------------------------


class EvolutionStrategiesState(NamedTuple):
    key: jax.Array
    values: jax.Array  # the losses of the last population, (popsize,); inf before the first
    nonfinite: jax.Array  # how many members' losses were NaN or inf, over all updates


class EvolutionStrategies(Transform):
    """OpenAI-ES's gradient estimate from antithetic Gaussian perturbations."""

    gradient_free = True

    popsize: int = static(32)
    sigma: float = 0.02
    fitness_shaping: str = static("centred_ranks")
    key: Any = None

    def __post_init__(self):
        check_range(self, "popsize", low=2, integer=True)
        if self.popsize % 2:
            raise ValueError(
                f"evolution_strategies(popsize={self.popsize}): popsize must be even "
                "(antithetic pairs +eps, -eps)"
            )
        check_range(self, "sigma", low=0.0, low_open=True)
        check_choice(self, "fitness_shaping", ("centred_ranks", "none"))

    def init(self, params):
        x, _ = as_vector(params)
        return EvolutionStrategiesState(
            prng_key(self.key),
            jnp.full(self.popsize, jnp.inf, x.dtype),
            jnp.zeros([], jnp.int32),
        )

    def update(
        self, updates, state, params=None, *, value_fn=None, population_value_fn=None, **extra
    ):
        del updates, extra
        _require_params(self, params)
        x, unravel = as_vector(params)
        sigma = jnp.asarray(self.sigma, x.dtype)
        key, draw = jax.random.split(state.key)
        half = jax.random.normal(draw, (self.popsize // 2, x.size), x.dtype)
        eps = jnp.concatenate([half, -half])  # evosax's layout: all +eps, then all -eps
        values = score(self, x + sigma * eps, unravel, value_fn, population_value_fn)
        if self.fitness_shaping == "centred_ranks":
            weights = centred_ranks(values)  # NaN and inf rank last
        else:
            # A pair whose difference is not finite is left out, both of its members.
            pairs = self.popsize // 2
            keep = jnp.isfinite(values[:pairs] - values[pairs:])
            weights = jnp.where(jnp.tile(keep, 2), values, 0)
        g = weights @ eps / (self.popsize * sigma)
        new_state = EvolutionStrategiesState(
            key, values, state.nonfinite + _count_nonfinite(values)
        )
        return tree_cast_like(unravel(g), params), new_state


@recipe
def evolution_strategies(
    popsize: int = 32,
    sigma: float = 0.02,
    fitness_shaping: str = "centred_ranks",
    key: Any = None,
) -> EvolutionStrategies:
    """OpenAI-ES (Salimans et al. 2017): a gradient estimate from mirrored Gaussian samples.

    Update rule (loss minimised; ``n = popsize``, ``x`` the params as one vector)::

        eps_1..eps_{n/2} ~ N(0, I),  eps_{n/2+i} = -eps_i
        F_i = loss(x + sigma eps_i)
        w   = centred_ranks(F)  in [-0.5, 0.5], lowest loss -0.5   (or w = F: "none")
        u   = 1/(n sigma) sum_i w_i eps_i

    ``u`` estimates the gradient of the Gaussian-smoothed loss (exactly, in
    expectation, with ``"none"``): chain a first-order optimizer after it.
    ``chain(evolution_strategies(...), adam(lr))`` is the paper's ES with Adam,
    ``chain(evolution_strategies(...), sgd(lr))`` plain ES (Algorithm 1 with
    mirrored sampling). Weight decay is the optimizer's job (the paper's L2
    coefficient): ``adamw(lr, weight_decay=...)``.

    Args:
      popsize: members per update, an even integer >= 2 (antithetic pairs); static.
        Default 32.
      sigma: the perturbations' standard deviation, > 0. Default 0.02.
      fitness_shaping: ``"centred_ranks"`` (the paper's) or ``"none"`` (raw
        losses; a pair whose loss difference is not finite is left out).
        Default ``"centred_ranks"``.
      key: an integer seed, a JAX PRNG key (raw or typed), or None (key 0).
        Default None.

    NaN or inf losses rank last and are counted in ``state.nonfinite``. With the
    same draw key, ``chain(evolution_strategies(n, s), sgd(lr))`` follows evosax's
    ``Open_ES(n, optimizer=optax.sgd(lr), std_schedule=constant(s))`` (its default
    ``use_antithetic_sampling=True``). Call ``update(None, state, params,
    value_fn=f)`` (or ``population_value_fn=``).

    Reference: Salimans et al., *Evolution Strategies as a Scalable Alternative
    to Reinforcement Learning*, arXiv:1703.03864.

    >>> import gradtx, jax.numpy as jnp
    >>> f = lambda x: jnp.sum((x - 1.0) ** 2)
    >>> x = jnp.array([0.0, 0.0])
    >>> tx = gradtx.evolution_strategies(popsize=8, sigma=0.1, key=0)
    >>> u, _ = tx.update(None, tx.init(x), x, value_fn=f)
    >>> [round(float(v), 4) for v in u]  # points downhill: -u is towards 1
    [-4.3118, -3.5008]
    """
    return EvolutionStrategies(
        popsize=popsize, sigma=sigma, fitness_shaping=fitness_shaping, key=key
    )


# -- Gaussian smoothing, as optax.perturbations --------------------------------------------


class PerturbationGradientState(NamedTuple):
    key: jax.Array
    nonfinite: jax.Array  # how many losses were NaN or inf, over all updates


def _normal_like(key: jax.Array, params: Any) -> jax.Array:
    """N(0, I) shaped like ``params``, one key per leaf (optax.tree.random_like), as a vector."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    draws = [jax.random.normal(k, jnp.shape(p), jnp.result_type(p)) for k, p in zip(keys, leaves)]
    return as_vector(treedef.unflatten(draws))[0]


class PerturbationGradient(Transform):
    """The Monte-Carlo gradient of the Gaussian-smoothed loss, from loss values only."""

    gradient_free = True

    num_samples: int = static(1000)
    sigma: float = 0.1
    antithetic: bool = static(False)
    use_baseline: bool = static(True)
    key: Any = None

    def __post_init__(self):
        check_range(self, "num_samples", low=1, integer=True)
        check_range(self, "sigma", low=0.0, low_open=True)

    def init(self, params):
        del params
        return PerturbationGradientState(prng_key(self.key), jnp.zeros([], jnp.int32))

    def update(
        self, updates, state, params=None, *, value_fn=None, population_value_fn=None, **extra
    ):
        del updates, extra
        _require_params(self, params)
        x, unravel = as_vector(params)
        sigma = jnp.asarray(self.sigma, x.dtype)
        n = self.num_samples
        key, draw = jax.random.split(state.key)
        # lax.map draws what vmap would, and compiles in half the time (batched threefry).
        z = jax.lax.map(lambda k: _normal_like(k, params), jax.random.split(draw, n))
        if self.antithetic:
            values = score(
                self,
                jnp.concatenate([x + sigma * z, x - sigma * z]),
                unravel,
                value_fn,
                population_value_fn,
            )
            weights = (values[:n] - values[n:]) / 2
        else:
            # The unperturbed params go first: their loss is the baseline.
            values = score(
                self,
                jnp.concatenate([x[None], x + sigma * z]),
                unravel,
                value_fn,
                population_value_fn,
            )
            baseline = values[0] if self.use_baseline else 0
            weights = values[1:] - baseline
        g = _finite_or_zero(weights) @ z / (n * sigma)
        new_state = PerturbationGradientState(key, state.nonfinite + _count_nonfinite(values))
        return tree_cast_like(unravel(g), params), new_state


@recipe
def perturbation_gradient(
    num_samples: int = 1000,
    sigma: float = 0.1,
    antithetic: bool = False,
    use_baseline: bool = True,
    key: Any = None,
) -> PerturbationGradient:
    """The gradient of ``E loss(x + sigma z)``, z ~ N(0, I), estimated from loss values.

    Update rule (``n = num_samples``, ``x`` the params as one vector)::

        z_1..z_n ~ N(0, I)
        u = 1/(n sigma)  sum_i (loss(x + sigma z_i) - loss(x)) z_i          (default)
        u = 1/(n sigma)  sum_i  loss(x + sigma z_i) z_i                     use_baseline=False
        u = 1/(2n sigma) sum_i (loss(x + sigma z_i) - loss(x - sigma z_i)) z_i    antithetic

    The same machinery as :func:`evolution_strategies` without fitness shaping
    (with ``antithetic=True`` it is that estimate, its samples drawn as optax
    draws them); an unbiased estimate of the smoothed loss's gradient, for any
    first-order optimizer chained after it.

    Args:
      num_samples: perturbations per update, an integer >= 1 (antithetic: 2 losses
        each); static. Default 1000.
      sigma: the perturbations' standard deviation, > 0. Default 0.1.
      antithetic: also evaluate ``x - sigma z_i`` (lower variance; the baseline
        cancels); static. Default False.
      use_baseline: subtract ``loss(x)`` (one more evaluation); static. Default True.
      key: an integer seed, a JAX PRNG key (raw or typed), or None (key 0).
        Default None.

    Given the update's draw key ``k``, the estimate equals
    ``jax.grad(optax.perturbations.make_perturbed_fun(loss, n, sigma,
    noise=Normal(), use_baseline=...), argnums=1)(k, params)``. Differences from
    optax: a transform, not a smoothed function; Gaussian noise only (optax's
    default is Gumbel); the antithetic option; a term whose loss is NaN or inf
    is left out (counted in ``state.nonfinite``) instead of making the estimate NaN.

    Reference: Berthet et al., *Learning with Differentiable Perturbed
    Optimizers*, arXiv:2002.08676; Nesterov and Spokoiny, *Random Gradient-Free
    Minimization of Convex Functions* (2017).

    >>> import gradtx, jax.numpy as jnp
    >>> f = lambda x: jnp.sum((x - 1.0) ** 2)  # gradient at 0: [-2, -2]
    >>> x = jnp.array([0.0, 0.0])
    >>> tx = gradtx.perturbation_gradient(num_samples=100, antithetic=True, key=0)
    >>> u, _ = tx.update(None, tx.init(x), x, value_fn=f)
    >>> [round(float(v), 4) for v in u]
    [-1.5488, -2.1318]
    """
    return PerturbationGradient(
        num_samples=num_samples,
        sigma=sigma,
        antithetic=antithetic,
        use_baseline=use_baseline,
        key=key,
    )


# -- genetic algorithm -------------------------------------------------------------------


class GeneticAlgorithmState(NamedTuple):
    key: jax.Array
    population: jax.Array  # (popsize, dim): the generation the next update scores
    best: jax.Array  # the best member found so far, (dim,)
    best_value: jax.Array  # its loss; inf before the first update
    nonfinite: jax.Array  # how many members' losses were NaN or inf, over all updates


class GenerationDraws(NamedTuple):
    """The random numbers one generation uses, drawn together from one key."""

    contestants: jax.Array  # (popsize, tournament_size) indices, with replacement
    mate: jax.Array  # (popsize // 2,) uniforms: pair i mates when < crossover_rate
    genes: jax.Array  # (popsize // 2, dim) uniforms: uniform's swaps, or blend's gamma
    mutate: jax.Array  # (popsize, dim) uniforms: a gene mutates when < mutation_rate
    noise: jax.Array  # (popsize, dim) N(0, 1)


def generation_draws(key: jax.Array, popsize: int, dim: int, tournament_size: int, dtype):
    """The draws of one generation of :func:`genetic_algorithm` (for oracles and tests)."""
    k_select, k_mate, k_genes, k_mutate, k_noise = jax.random.split(key, 5)
    pairs = popsize // 2
    return GenerationDraws(
        jax.random.randint(k_select, (popsize, tournament_size), 0, popsize),
        jax.random.uniform(k_mate, (pairs,), dtype),
        jax.random.uniform(k_genes, (pairs, dim), dtype),
        jax.random.uniform(k_mutate, (popsize, dim), dtype),
        jax.random.normal(k_noise, (popsize, dim), dtype),
    )


class GeneticAlgorithm(Transform):
    """A real-valued GA: tournaments, crossover, Gaussian mutation, elitism."""

    gradient_free = True

    popsize: int = static(32)
    tournament_size: int = static(3)
    crossover: str = static("uniform")
    crossover_rate: float = 0.5
    blend_alpha: float = 0.5
    mutation_rate: float = 0.1
    mutation_scale: float = 0.1
    elites: int = static(1)
    key: Any = None

    def __post_init__(self):
        check_range(self, "popsize", low=2, integer=True)
        check_range(self, "tournament_size", low=1, integer=True)
        check_choice(self, "crossover", ("uniform", "blend"))
        check_range(self, "crossover_rate", low=0.0, high=1.0)
        check_range(self, "blend_alpha", low=0.0)
        check_range(self, "mutation_rate", low=0.0, high=1.0)
        check_range(self, "mutation_scale", low=0.0, low_open=True)
        check_range(self, "elites", low=0, high=self.popsize - 1, integer=True)

    def init(self, params):
        x, _ = as_vector(params)
        key, draw = jax.random.split(prng_key(self.key))
        spread = jnp.asarray(self.mutation_scale, x.dtype)
        population = x + spread * jax.random.normal(draw, (self.popsize, x.size), x.dtype)
        population = population.at[0].set(x)  # the start is a member: the best never gets worse
        zero = jnp.zeros([], jnp.int32)
        return GeneticAlgorithmState(key, population, x, jnp.asarray(jnp.inf, x.dtype), zero)

    def update(
        self, updates, state, params=None, *, value_fn=None, population_value_fn=None, **extra
    ):
        del updates, extra
        _require_params(self, params)
        _, unravel = as_vector(params)
        population = state.population
        values = score(self, population, unravel, value_fn, population_value_fn)
        i = jnp.argmin(values)
        better = values[i] < state.best_value
        best = jnp.where(better, population[i], state.best)
        best_value = jnp.where(better, values[i], state.best_value)
        key, draw = jax.random.split(state.key)
        draws = generation_draws(
            draw, self.popsize, population.shape[1], self.tournament_size, population.dtype
        )
        new_state = GeneticAlgorithmState(
            key,
            self.next_generation(population, values, draws),
            best,
            best_value,
            state.nonfinite + _count_nonfinite(values),
        )
        return step_to(params, best, unravel), new_state

    def next_generation(
        self, population: jax.Array, values: jax.Array, draws: GenerationDraws
    ) -> jax.Array:
        """Elites, then the offspring of tournaments, crossover and mutation (DEAP's varAnd)."""
        dtype = population.dtype
        # selTournament: each slot takes the lowest loss among its contestants (first on ties).
        winners = jnp.take_along_axis(
            draws.contestants, jnp.argmin(values[draws.contestants], axis=1)[:, None], axis=1
        )[:, 0]
        parents = population[winners]
        pairs = self.popsize // 2
        a, b = parents[0 : 2 * pairs : 2], parents[1 : 2 * pairs : 2]
        if self.crossover == "uniform":  # cxUniform(indpb=0.5): swap each gene w.p. 1/2
            swap = draws.genes < 0.5
            c1, c2 = jnp.where(swap, b, a), jnp.where(swap, a, b)
        else:  # cxBlend(alpha): gamma ~ U(-alpha, 1 + alpha) per gene
            alpha = jnp.asarray(self.blend_alpha, dtype)
            gamma = (1 + 2 * alpha) * draws.genes - alpha
            c1, c2 = (1 - gamma) * a + gamma * b, gamma * a + (1 - gamma) * b
        mate = (draws.mate < jnp.asarray(self.crossover_rate, dtype))[:, None]
        c1, c2 = jnp.where(mate, c1, a), jnp.where(mate, c2, b)
        # Children in their parents' slots (pair i at 2i, 2i + 1); an odd last parent is kept.
        mated = jnp.stack([c1, c2], axis=1).reshape(2 * pairs, -1)
        offspring = jnp.concatenate([mated, parents[2 * pairs :]])
        # mutGaussian(mu=0, sigma=mutation_scale, indpb=mutation_rate), every child (mutpb=1).
        mutate = draws.mutate < jnp.asarray(self.mutation_rate, dtype)
        offspring = offspring + jnp.where(
            mutate, jnp.asarray(self.mutation_scale, dtype) * draws.noise, 0
        )
        elites = population[jnp.argsort(values)[: self.elites]]
        return jnp.concatenate([elites, offspring[: self.popsize - self.elites]])


@recipe
def genetic_algorithm(
    popsize: int = 32,
    tournament_size: int = 3,
    crossover: str = "uniform",
    crossover_rate: float = 0.5,
    mutation_rate: float = 0.1,
    mutation_scale: float = 0.1,
    elites: int = 1,
    blend_alpha: float = 0.5,
    key: Any = None,
) -> GeneticAlgorithm:
    """A real-valued genetic algorithm: DEAP's ``eaSimple`` with elitism, as a transform.

    One update is one generation (``n = popsize``, ``P`` the population)::

        F = loss(P);  best <- the lowest-loss member seen so far
        parents_j = argmin over tournament_size random members of F    j = 1..n
        pair (2i, 2i+1) mates w.p. crossover_rate:
            uniform: swap each gene w.p. 1/2
            blend:   gamma ~ U(-alpha, 1 + alpha) per gene,
                     a, b <- (1 - gamma) a + gamma b, gamma a + (1 - gamma) b
        every gene of every child += N(0, mutation_scale**2) w.p. mutation_rate
        P <- the `elites` lowest-loss members of P, then the first n - elites children
        u = best - params

    So ``apply_updates`` lands on the best member found so far. DEAP's
    equivalents: ``selTournament(tournsize=tournament_size)``,
    ``cxUniform(indpb=0.5)`` or ``cxBlend(alpha=blend_alpha)``,
    ``mutGaussian(mu=0, sigma=mutation_scale, indpb=mutation_rate)`` inside
    ``varAnd(cxpb=crossover_rate, mutpb=1)``; ``eaSimple`` replaces the whole
    population, here the ``elites`` best of it survive unchanged (as a DEAP user
    does with a HallOfFame). The first population is ``params`` and ``n - 1``
    members ``params + mutation_scale N(0, I)``.

    Args:
      popsize: members per generation, an integer >= 2; static. Default 32.
      tournament_size: contestants per selection, an integer >= 1; static. Default 3.
      crossover: ``"uniform"`` or ``"blend"`` (BLX-alpha); static. Default ``"uniform"``.
      crossover_rate: probability that a pair mates, in [0, 1]. Default 0.5.
      mutation_rate: probability that a gene mutates, in [0, 1]. Default 0.1.
      mutation_scale: the mutations' (and first population's) std, > 0. Default 0.1.
      elites: members kept unchanged, an integer in [0, popsize - 1]; static. Default 1.
      blend_alpha: BLX's alpha, >= 0 (``crossover="blend"`` only). Default 0.5.
      key: an integer seed, a JAX PRNG key (raw or typed), or None (key 0).
        Default None.

    NaN or inf losses rank last and are counted in ``state.nonfinite``.

    Reference: Holland (1975); Goldberg, *Genetic Algorithms in Search,
    Optimization and Machine Learning* (1989); Eshelman and Schaffer (1993) for
    BLX-alpha; Fortin et al., *DEAP*, JMLR 13 (2012).

    >>> import gradtx, jax.numpy as jnp
    >>> f = lambda x: jnp.sum((x - 1.0) ** 2)
    >>> x = jnp.array([0.0, 0.0])
    >>> tx = gradtx.genetic_algorithm(popsize=8, key=0)
    >>> state = tx.init(x)
    >>> for _ in range(3):  # three generations; x is the best member so far
    ...     u, state = tx.update(None, state, x, value_fn=f)
    ...     x = gradtx.apply_updates(x, u)
    >>> round(float(f(x)), 4)
    1.4334
    """
    return GeneticAlgorithm(
        popsize=popsize,
        tournament_size=tournament_size,
        crossover=crossover,
        crossover_rate=crossover_rate,
        blend_alpha=blend_alpha,
        mutation_rate=mutation_rate,
        mutation_scale=mutation_scale,
        elites=elites,
        key=key,
    )
