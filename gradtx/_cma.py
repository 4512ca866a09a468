"""CMA-ES: Hansen's (mu/mu_w, lambda) evolution strategy with covariance matrix adaptation.

The strategy parameters, the update and its order follow the ``cma`` package
(4.5.0) with its default options, which differ in places from Hansen's 2016
tutorial (see :func:`cma_es`). Everything that depends only on the dimension and
the population size is computed in Python when the step is traced; the state
holds what changes: mean, step size, evolution paths and the covariance.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._base import check_range, static, Transform
from ._combine import recipe
from ._population import as_vector, score, step_to
from ._tree import prng_key, safe_increment, zero_count


class CmaEsState(NamedTuple):
    mean: jax.Array  # (n,)
    sigma: jax.Array  # ()
    p_sigma: jax.Array  # (n,): conjugate evolution path, for the step size
    p_c: jax.Array  # (n,): evolution path, for the rank-one update
    C: jax.Array  # (n, n): covariance matrix
    B: jax.Array  # (n, n): eigenvectors of C at the last decomposition (columns)
    D: jax.Array  # (n,): square roots of its eigenvalues, ascending
    count: jax.Array  # generations told
    eigen_count: jax.Array  # `count` at the last decomposition
    nonfinite: jax.Array  # members whose loss was NaN or inf, over all generations
    rng_key: jax.Array


class SepCmaEsState(NamedTuple):
    mean: jax.Array  # (n,)
    sigma: jax.Array  # ()
    p_sigma: jax.Array  # (n,)
    p_c: jax.Array  # (n,)
    scaling: jax.Array  # (n,): coordinate-wise standard deviations; C = diag(scaling**2)
    count: jax.Array
    nonfinite: jax.Array
    rng_key: jax.Array


class Parameters(NamedTuple):
    """The strategy parameters ``cma`` derives from the dimension and the population size."""

    popsize: int
    mu: int
    weights: np.ndarray  # (popsize,): mu positive (summing to 1), then zero or negative
    mueff: float
    c_sigma: float
    d_sigma: float
    c_c: float
    c_1: float
    c_mu: float
    chi_n: float  # E||N(0, I)||
    eigen_gap: float  # generations between two eigendecompositions (full covariance)


def default_popsize(n: int) -> int:
    """``4 + floor(3 ln n)``, cma's and the tutorial's default population size."""
    return int(4 + 3 * math.log(n))


def expected_norm(n: int) -> float:
    """E||N(0, I_n)||: exact up to n = 100, as cma tabulates it, its expansion beyond."""
    if n <= 100:
        return math.sqrt(2.0) * math.exp(math.lgamma((n + 1) / 2) - math.lgamma(n / 2))
    return n**0.5 * (1 - 1.0 / (4 * n) + 1.0 / (32 * n**2))


def recombination_weights(popsize: int) -> tuple[np.ndarray, int, float, float]:
    """cma's ``RecombinationWeights``: log-weights, positive part summing to 1, negative to -1.

    Returns the weights, mu, mueff and mueff of the negative part.
    """
    raw = np.log((popsize + 1) / 2.0) - np.log(np.arange(1, popsize + 1))
    mu = int(np.sum(raw > 0))
    positive, negative = raw[:mu] / raw[:mu].sum(), raw[mu:]
    if negative.sum() != 0:
        negative = negative / -negative.sum()
    mueff = 1.0 / np.sum(positive**2)
    mueff_minus = negative.sum() ** 2 / np.sum(negative**2) if negative.any() else 0.0
    return np.concatenate([positive, negative]), mu, float(mueff), float(mueff_minus)


def parameters(n: int, popsize: int | None, separable: bool, active: bool) -> Parameters:
    """Every strategy parameter, as cma 4.5.0 computes it by default."""
    lam = default_popsize(n) if popsize is None else popsize
    weights, mu, mueff, mueff_minus = recombination_weights(lam)
    c_1 = min(1, lam / 6) * 2 / ((n + 1.3) ** 2.0 + mueff)
    c_mu = min(1 - c_1, 2.0 * (0.25 + mueff + 1 / mueff - 2) / ((n + 2) ** 2.0 + mueff))
    # cma finalizes the negative weights with these full-covariance rates first, even for
    # CMA_diagonal: their positive-definiteness cap (1 - c_1 - c_mu) / c_mu / n is 0 once c_mu
    # reaches 1 - c_1 (large populations: popsize 62 at n = 2), which zeroes the negative
    # weights for good; otherwise the separable pass below sets them anew.
    zeroed = c_mu == 1 - c_1
    if separable:
        c_c = (1 + 1 / n + mueff / n) / (n**0.5 + 1 / n + 2 * mueff / n)
        c_1 = 1.0 / (n + 2.0 * n**0.5 + mueff / n)
        c_mu = min(1 - c_1, (0.25 + mueff + 1.0 / mueff - 2) / (n + 4 * n**0.5 + mueff / 2.0))
    else:
        c_c = (4.0 + mueff / n) / (n + (4.0 + 2 * mueff / n))
    if active and weights[-1] < 0 and not zeroed:
        # cma's finalize_negative_weights: zero decay (c1 + cmu sum w = 0), then two caps.
        total = 1 + c_1 / c_mu
        if not separable:  # keeps C positive definite
            total = min(total, (1 - c_1 - c_mu) / c_mu / n)
        total = min(total, 1 + 2 * mueff_minus / (mueff + 2))
        weights = np.concatenate([weights[:mu], weights[mu:] * total])
    else:
        weights = np.where(weights < 0, 0.0, weights)
    c_sigma = min(0.5, (mueff + 2) / (n + mueff + 3))
    # cma's damping, without mirrored samples: the mueff term is scaled by an inner factor.
    inner = max(1.0, 3 * (1 - 0.5 ** (n / 9)))
    d_sigma = 1 + 2 * max(0.0, inner * ((mueff - 1) / (n + 1)) ** 0.5 - 1) + c_sigma
    eigen_gap = 1.0 / (c_1 + c_mu + 1e-23) / n / 10
    return Parameters(
        lam, mu, weights, mueff, c_sigma, d_sigma, c_c, c_1, c_mu, expected_norm(n), eigen_gap
    )


def _sigma_factor(p: Parameters, p_sigma: jax.Array) -> jax.Array:
    """CSA: ``exp(clip(c_sigma / d_sigma (||p_sigma|| / E||N(0, I)|| - 1), -1, 1))``."""
    s = (jnp.linalg.norm(p_sigma) / p.chi_n - 1) * (p.c_sigma / p.d_sigma)
    return jnp.exp(jnp.clip(s, -1.0, 1.0))


def _h_sigma(p: Parameters, p_sigma: jax.Array, count: jax.Array) -> jax.Array:
    """1.0 unless ||p_sigma|| is large (the rank-one update then stalls), else 0.0."""
    n = p_sigma.shape[0]
    t = count.astype(p_sigma.dtype)
    squared = jnp.sum(p_sigma**2) / (1 - (1 - p.c_sigma) ** (2 * t))
    return (squared / n - 1 < 1 + 4.0 / (n + 1)).astype(p_sigma.dtype)


def _select(population: jax.Array, values: jax.Array) -> jax.Array:
    """The population sorted from the lowest loss."""
    return population[jnp.argsort(values)]


class _CMABase(Transform):
    gradient_free = True

    sigma0: float = 1.0
    popsize: Any = static(None)
    active: bool = static(True)
    key: Any = 0

    def __post_init__(self):
        check_range(self, "sigma0", low=0.0, low_open=True)
        if self.popsize is not None:
            check_range(self, "popsize", low=3, integer=True)

    def parameters(self, n: int) -> Parameters:
        """The strategy parameters for dimension ``n``."""
        return parameters(n, self.popsize, isinstance(self, SepCmaEs), self.active)

    def _initial(self, params):
        mean, _ = as_vector(params)
        if mean.shape[0] == 0:  # its step sizes and learning rates divide by the dimension
            raise ValueError(
                f"{self.name}.init: the params have no elements to search (every leaf is empty)"
            )
        sigma = jnp.asarray(self.sigma0, mean.dtype)
        zeros = jnp.zeros_like(mean)
        return mean, sigma, zeros, zero_count(), prng_key(self.key)

    def update(
        self, updates, state, params=None, *, value_fn=None, population_value_fn=None, **extra_args
    ):
        del updates, extra_args
        _, unravel = as_vector(params)
        p = self.parameters(state.mean.shape[0])
        rng_key, sample_key = jax.random.split(state.rng_key)
        z = jax.random.normal(sample_key, (p.popsize, state.mean.shape[0]), state.mean.dtype)
        state, population = self.ask(state, z)
        values = score(self, population, unravel, value_fn, population_value_fn)
        state = self.tell(state, population, values)
        return step_to(params, state.mean, unravel), state._replace(rng_key=rng_key)


class CmaEs(_CMABase):
    """Full-covariance CMA-ES (``cma_es``)."""

    def init(self, params):
        mean, sigma, zeros, count, key = self._initial(params)
        n = mean.shape[0]
        # cma's C0: the identity perturbed so that numpy's eigh never sees equal eigenvalues.
        variances = jnp.exp((1e-4 / n) * jnp.arange(n, dtype=mean.dtype))
        # Every state array its own buffer (zero_count() each time): a donated state may not
        # alias.
        return CmaEsState(
            mean, sigma, zeros, jnp.zeros_like(mean), jnp.diag(variances),
            jnp.eye(n, dtype=mean.dtype), jnp.sqrt(variances), count, zero_count(), zero_count(),
            key,
        )  # fmt: skip

    def ask(self, state: CmaEsState, z: jax.Array) -> tuple[CmaEsState, jax.Array]:
        """Refreshes B, D if due, then ``x_k = m + sigma B (D z_k)`` for the rows of ``z``."""
        p = self.parameters(state.mean.shape[0])
        since = state.count - state.eigen_count
        due = (since > 0) & (since.astype(state.sigma.dtype) >= p.eigen_gap)

        def decompose(s: CmaEsState) -> CmaEsState:
            C = (s.C + s.C.T) / 2
            eigenvalues, B = jnp.linalg.eigh(C)
            return s._replace(C=C, B=B, D=jnp.sqrt(eigenvalues), eigen_count=s.count)

        state = jax.lax.cond(due, decompose, lambda s: s, state)
        population = state.mean + state.sigma * ((z * state.D) @ state.B.T)
        return state, population

    def tell(self, state: CmaEsState, population: jax.Array, values: jax.Array) -> CmaEsState:
        """One generation's update from the scored population."""
        p = self.parameters(state.mean.shape[0])
        dtype = state.mean.dtype
        n = state.mean.shape[0]
        w = jnp.asarray(p.weights, dtype)
        x = _select(population, values)
        count = safe_increment(state.count)
        old, sigma = state.mean, state.sigma

        mean = w[: p.mu] @ x[: p.mu]

        # C^(-1/2) from the decomposition the population was sampled with.
        def whiten(v):
            return (v @ state.B) / state.D

        shift = (mean - old) / sigma
        p_sigma = (1 - p.c_sigma) * state.p_sigma + math.sqrt(
            p.c_sigma * (2 - p.c_sigma) * p.mueff
        ) * (whiten(shift) @ state.B.T)
        h_sigma = _h_sigma(p, p_sigma, count)
        p_c = (1 - p.c_c) * state.p_c + h_sigma * math.sqrt(p.c_c * (2 - p.c_c) * p.mueff) * shift

        y = (x - old) / sigma
        # Active CMA: a negative weight is rescaled by n / ||y||^2_C (cma's sampler update).
        norms = jnp.sum(whiten(y) ** 2, axis=1)
        rank_mu = jnp.where(w < 0, w * n / (jnp.sqrt(norms) + 1e-9) ** 2, w)
        c_1a = p.c_1 * (1 - (1 - h_sigma**2) * p.c_c * (2 - p.c_c))
        C = (
            (1 - c_1a - p.c_mu * jnp.sum(w)) * state.C
            + p.c_1 * jnp.outer(p_c, p_c)
            + p.c_mu * (y.T * rank_mu) @ y
        )
        sigma = sigma * _sigma_factor(p, p_sigma)
        nonfinite = state.nonfinite + jnp.sum(~jnp.isfinite(values)).astype(state.nonfinite.dtype)
        return state._replace(
            mean=mean, sigma=sigma, p_sigma=p_sigma, p_c=p_c, C=C, count=count, nonfinite=nonfinite
        )


class SepCmaEs(_CMABase):
    """Separable (diagonal) CMA-ES (``sep_cma_es``)."""

    def init(self, params):
        mean, sigma, zeros, count, key = self._initial(params)
        return SepCmaEsState(
            mean, sigma, zeros, jnp.zeros_like(mean), jnp.ones_like(mean), count, zero_count(), key
        )

    def ask(self, state: SepCmaEsState, z: jax.Array) -> tuple[SepCmaEsState, jax.Array]:
        """``x_k = m + sigma scaling * z_k`` for the rows of ``z``."""
        return state, state.mean + state.sigma * state.scaling * z

    def tell(self, state: SepCmaEsState, population: jax.Array, values: jax.Array) -> SepCmaEsState:
        """One generation's update from the scored population."""
        p = self.parameters(state.mean.shape[0])
        dtype = state.mean.dtype
        w = jnp.asarray(p.weights, dtype)
        x = _select(population, values)
        count = safe_increment(state.count)
        old, sigma = state.mean, state.sigma

        mean = w[: p.mu] @ x[: p.mu]
        shift = (mean - old) / sigma / state.scaling
        p_sigma = (1 - p.c_sigma) * state.p_sigma + math.sqrt(
            p.c_sigma * (2 - p.c_sigma) * p.mueff
        ) * shift
        h_sigma = _h_sigma(p, p_sigma, count)
        p_c = (1 - p.c_c) * state.p_c + h_sigma * math.sqrt(p.c_c * (2 - p.c_c) * p.mueff) * shift

        # cma's exponential update of the scaling (CMA_diagonal=True), its weights times log 2.
        z = (x - old) / (sigma * state.scaling)
        c_1a = p.c_1 * (1 - (1 - h_sigma**2) * p.c_c * (2 - p.c_c))
        eta = math.log(2) * jnp.concatenate([c_1a[None], p.c_mu * w])
        vectors = jnp.concatenate([p_c[None], z])
        scaling = state.scaling * jnp.exp((eta @ vectors**2 - jnp.sum(eta)) / 2)
        sigma = sigma * _sigma_factor(p, p_sigma)
        nonfinite = state.nonfinite + jnp.sum(~jnp.isfinite(values)).astype(state.nonfinite.dtype)
        return state._replace(
            mean=mean, sigma=sigma, p_sigma=p_sigma, p_c=p_c, scaling=scaling, count=count,
            nonfinite=nonfinite,
        )  # fmt: skip


@recipe
def cma_es(
    sigma0: float = 1.0, popsize: int | None = None, active: bool = True, key: Any = 0
) -> CmaEs:
    """Hansen's (mu/mu_w, lambda)-CMA-ES, as ``cma.CMAEvolutionStrategy`` with default options.

    Each ``update(None, state, params, value_fn=f)`` is one generation; params move to
    the new mean. With ``y_k = (x_k - m) / sigma``, ``x_1:lambda`` sorted by loss, ``t``
    the generation (``C^(-1/2) = B D^-1 B^T``, from the last eigendecomposition)::

        x_k = m + sigma B (D z_k),  z_k ~ N(0, I),  k = 1..lambda
        m' = sum_{i<=mu} w_i x_i
        p_sigma = (1 - c_sigma) p_sigma + sqrt(c_sigma (2 - c_sigma) mueff) C^(-1/2) (m' - m)/sigma
        h_sigma = [|p_sigma|^2 / (1 - (1 - c_sigma)^(2t)) / n - 1 < 1 + 4 / (n + 1)]
        p_c = (1 - c_c) p_c + h_sigma sqrt(c_c (2 - c_c) mueff) (m' - m) / sigma
        C = (1 - c_1a - c_mu sum w) C + c_1 p_c p_c^T + c_mu sum_i w'_i y_i y_i^T
        c_1a = c_1 (1 - (1 - h_sigma) c_c (2 - c_c))
        w'_i = w_i if w_i >= 0 else w_i n / |C^(-1/2) y_i|^2
        sigma = sigma exp(clip(c_sigma / d_sigma (|p_sigma| / E|N(0, I)| - 1), -1, 1))

    B, D are refreshed (``lax.cond``) when ``1 / (c_1 + c_mu) / n / 10`` generations have
    passed, as cma does: every generation up to n of about 30 at the default population.

    Args:
      sigma0: the initial step size, > 0.
      popsize: lambda, >= 3; default ``4 + floor(3 ln n)``. mu = lambda // 2.
      active: negative weights for the worse half (active CMA, cma's ``CMA_active``).
      key: a JAX PRNG key or an integer seed.

    Differences from the 2016 tutorial, following cma 4.5.0: c_c = (4 + mueff/n) /
    (n + 4 + 2 mueff/n); c_1 is multiplied by min(1, lambda/6); c_mu's numerator has
    0.25 + mueff + 1/mueff - 2; d_sigma's mueff term is scaled by max(1, 3 (1 - 2^(-n/9)));
    c_sigma <= 0.5; the log step-size change is clipped to [-1, 1]; E|N(0, I)| is exact
    up to n = 100; the negative weights are capped for positive definiteness and by
    1 + 2 mueff^- / (mueff + 2); C starts at diag(exp(1e-4 i / n)), cma's tie-breaker for
    eigh. cma switches to two-point step-size adaptation (TPA) from n = 300: gradtx keeps
    CSA at every n (cma's ``AdaptSigma=CMAAdaptSigmaCSA``). Not done: mirrored sampling
    (cma's default below popsize 6), bounds, restarts, termination criteria. A loss
    that is NaN ranks last and is counted in
    ``state.nonfinite``. Memory is O(n^2): use :func:`sep_cma_es` for many parameters.

    >>> import jax.numpy as jnp, gradtx
    >>> tx = gradtx.cma_es(sigma0=0.5)
    >>> params = jnp.ones(3)
    >>> state = tx.init(params)
    >>> updates, state = tx.update(None, state, params, value_fn=lambda p: jnp.sum(p**2))

    Reference: Hansen, *The CMA Evolution Strategy: A Tutorial*, arXiv:1604.00772;
    Jastrebski & Arnold, *Improving Evolution Strategies through Active Covariance Matrix
    Adaptation*, CEC 2006.
    """
    return CmaEs(sigma0=sigma0, popsize=popsize, active=active, key=key)


@recipe
def sep_cma_es(
    sigma0: float = 1.0, popsize: int | None = None, active: bool = True, key: Any = 0
) -> SepCmaEs:
    """Separable CMA-ES (diagonal covariance, O(n) memory), as cma with ``CMA_diagonal=True``.

    As :func:`cma_es` with C = diag(s^2) and ``y_k = (x_k - m) / (sigma s)``; cma learns the
    scaling ``s`` by an exponential update rather than Ros & Hansen's additive one::

        x_k = m + sigma s * z_k
        p_sigma = (1 - c_sigma) p_sigma + sqrt(c_sigma (2 - c_sigma) mueff) (m' - m) / (sigma s)
        p_c = (1 - c_c) p_c + h_sigma sqrt(c_c (2 - c_c) mueff) (m' - m) / (sigma s)
        s = s exp(ln 2 / 2 (c_1a (p_c^2 - 1) + c_mu sum_i w_i (y_i^2 - 1)))

    with cma's separable rates c_1 = 1 / (n + 2 sqrt(n) + mueff/n), c_mu = min(1 - c_1,
    (0.25 + mueff + 1/mueff - 2) / (n + 4 sqrt(n) + mueff/2)), c_c = (1 + 1/n + mueff/n) /
    (sqrt(n) + 1/n + 2 mueff/n), and negative weights without the positive-definiteness
    cap (nor the Mahalanobis rescaling). c_sigma, d_sigma, h_sigma and the step size as in
    :func:`cma_es`.

    Args:
        sigma0: the initial step size, > 0. Default 1.
        popsize: lambda, an integer >= 3; None is ``4 + floor(3 ln n)``. mu = lambda // 2.
            Default None.
        active: negative weights for the worse half (active CMA, cma's ``CMA_active``).
            Default True.
        key: a JAX PRNG key or an integer seed. Default 0.

    Reference: Ros & Hansen, *A Simple Modification in CMA-ES Achieving Linear Time and
    Space Complexity*, PPSN X (2008).

    >>> import jax.numpy as jnp, gradtx
    >>> tx = gradtx.sep_cma_es(sigma0=0.5)
    >>> params = jnp.ones(3)
    >>> state = tx.init(params)
    >>> updates, state = tx.update(None, state, params, value_fn=lambda p: jnp.sum(p**2))
    """
    return SepCmaEs(sigma0=sigma0, popsize=popsize, active=active, key=key)
