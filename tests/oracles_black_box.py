"""Naive NumPy oracles for the gradient-free methods, written from the papers' algorithms.

Each oracle is given the random numbers the transform drew (its perturbations,
its tournaments' contestants, its coin flips), so that it must reproduce the
transform's numbers exactly: Python loops over members and genes, float64,
each line following the paper's (or DEAP's) algorithm, cited beside it.
``loss`` is a NumPy function of one parameter vector.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Loss = Callable[[np.ndarray], float]


def _losses(loss: Loss, points) -> np.ndarray:
    values = np.array([loss(p) for p in points], dtype=np.float64)
    return np.where(np.isnan(values), np.inf, values)  # NaN ranks last


def centred_ranks(values: np.ndarray) -> np.ndarray:
    """Salimans et al. 2017, section 2.2 / their ``compute_centered_ranks``: rank / (n-1) - 1/2.

    The lowest loss gets -1/2 (the paper ranks rewards; a loss is a negated reward,
    and the update then ascends -loss). Ties broken by position.
    """
    n = len(values)
    ranks = np.empty(n)
    for rank, i in enumerate(sorted(range(n), key=lambda i: values[i])):
        ranks[i] = rank
    return ranks / (n - 1) - 0.5


def openai_es_gradient(
    loss: Loss, x: np.ndarray, eps: np.ndarray, sigma: float, shaping: str = "centred_ranks"
) -> tuple[np.ndarray, np.ndarray]:
    """Salimans et al. 2017, Algorithm 1 with mirrored sampling (Algorithm 2, line 5..10).

    ``eps`` holds all n perturbations, pairs ``eps[i]``, ``eps[i + n/2] = -eps[i]``.
    Returns the estimate ``1/(n sigma) sum_i F_i eps_i`` (of the loss's gradient: the
    paper's step ``theta += alpha g`` on rewards is ``x -= alpha g`` here) and the losses.
    """
    n = len(eps)
    values = _losses(loss, [x + sigma * e for e in eps])
    if shaping == "centred_ranks":
        weights = centred_ranks(values)
    else:
        weights = values.copy()
        for i in range(n // 2):  # a pair whose difference is not finite is left out
            if not np.isfinite(values[i] - values[i + n // 2]):
                weights[i] = weights[i + n // 2] = 0.0
    g = np.zeros_like(x)
    for i in range(n):
        g += weights[i] * eps[i]
    return g / (n * sigma), values


def gaussian_smoothing_gradient(
    loss: Loss,
    x: np.ndarray,
    z: np.ndarray,
    sigma: float,
    antithetic: bool = False,
    use_baseline: bool = True,
) -> np.ndarray:
    """Nesterov and Spokoiny (2017), eq. (21)/(22); Berthet et al. 2020, Proposition 3.1.

    ``grad E f(x + sigma Z) = E[f(x + sigma Z) Z] / sigma``, Z ~ N(0, I), as the mean
    over the rows of ``z``; the baseline f(x), or the mirrored point, for variance.
    """
    n = len(z)
    g = np.zeros_like(x)
    for i in range(n):
        if antithetic:
            w = (loss(x + sigma * z[i]) - loss(x - sigma * z[i])) / 2
        else:
            w = loss(x + sigma * z[i]) - (loss(x) if use_baseline else 0.0)
        g += w * z[i]
    return g / (n * sigma)


def ga_generation(
    population: np.ndarray,
    values: np.ndarray,
    contestants: np.ndarray,
    mate: np.ndarray,
    genes: np.ndarray,
    mutate: np.ndarray,
    noise: np.ndarray,
    *,
    crossover: str,
    crossover_rate: float,
    blend_alpha: float,
    mutation_rate: float,
    mutation_scale: float,
    elites: int,
) -> np.ndarray:
    """One generation of DEAP's ``eaSimple`` (``varAnd``, mutpb=1) with elitism.

    DEAP 1.4 ``tools.selTournament``, ``tools.cxUniform(indpb=0.5)``,
    ``tools.cxBlend``, ``tools.mutGaussian``, with DEAP's ``random.random()`` calls
    replaced by the given uniforms and ``random.choice`` by ``contestants``.
    """
    n, dim = population.shape
    # selTournament: k = n selections, each the best of tournsize random aspirants.
    offspring = []
    for j in range(n):
        aspirants = list(contestants[j])
        chosen = min(aspirants, key=lambda i: values[i])  # first of equals, as max() in DEAP
        offspring.append(population[chosen].copy())
    # varAnd: mate (i-1, i) for i = 1, 3, 5, ... with probability cxpb.
    for i in range(1, n, 2):
        pair = i // 2
        if mate[pair] < crossover_rate:
            a, b = offspring[i - 1], offspring[i]
            for g in range(dim):
                if crossover == "uniform":  # cxUniform: swap when random() < indpb
                    if genes[pair, g] < 0.5:
                        a[g], b[g] = b[g], a[g]
                else:  # cxBlend
                    gamma = (1.0 + 2.0 * blend_alpha) * genes[pair, g] - blend_alpha
                    x1, x2 = a[g], b[g]
                    a[g] = (1.0 - gamma) * x1 + gamma * x2
                    b[g] = gamma * x1 + (1.0 - gamma) * x2
    # mutGaussian(mu=0, sigma, indpb) on every child (mutpb = 1).
    for i in range(n):
        for g in range(dim):
            if mutate[i, g] < mutation_rate:
                offspring[i][g] += mutation_scale * noise[i, g]
    # Elitism: the best `elites` of the old population, then the first children.
    best = sorted(range(n), key=lambda i: values[i])[:elites]
    return np.stack([population[i] for i in best] + offspring[: n - elites])
