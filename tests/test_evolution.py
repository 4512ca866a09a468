"""OpenAI-ES, Gaussian smoothing and the GA against NumPy oracles, optax and evosax.

The oracles (tests/oracles_black_box.py) are given the random numbers the
transform drew: the draw key is the second half of ``split(state.key)``, and
the draws are made from it as the docstrings say.
"""

from __future__ import annotations

import functools

import chex
import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np
import optax
import oracles_black_box as oracles
from problems import make_params, quadratic_loss
import pytest

import gradtx
from gradtx._evolution import (
    evolution_strategies,
    generation_draws,
    genetic_algorithm,
    perturbation_gradient,
)

DIM = 17  # make_params: b (4,), head/s (), w (3, 4), raveled in that order


def _wavy(v, xp):
    """A separable nonconvex loss of the params vector, in NumPy or jax.numpy."""
    curvature = xp.linspace(0.5, 2.0, DIM)
    return xp.sum(curvature * v**2 + 0.3 * xp.sin(3.0 * v))


def loss(params):
    return _wavy(ravel_pytree(params)[0], jnp)


def np_loss(v):
    return float(_wavy(np.asarray(v, np.float64), np))


def _vector(tree):
    return np.asarray(ravel_pytree(tree)[0])


def _draw_key(state):
    """The key the update draws with: the second half of split(state.key)."""
    return jax.random.split(state.key)[1]


@functools.partial(jax.jit, static_argnames="value_fn")
def _update(tx, params, state, value_fn=loss):
    # tx is an argument: one compilation per kind of transform and loss, not per call.
    return tx.update(None, state, params, value_fn=value_fn)


# -- OpenAI-ES ---------------------------------------------------------------------------


@pytest.mark.parametrize("shaping", ["centred_ranks", "none"])
def test_es_estimate_equals_the_papers(x64, shaping):
    params = make_params(jnp.float64)
    tx = evolution_strategies(popsize=8, sigma=0.1, fitness_shaping=shaping, key=3)
    state = tx.init(params)
    for _ in range(2):  # the second update draws with the key the first left
        updates, new_state = _update(tx, params, state)
        half = jax.random.normal(_draw_key(state), (4, DIM), jnp.float64)
        eps = np.concatenate([half, -half])
        expected, values = oracles.openai_es_gradient(np_loss, _vector(params), eps, 0.1, shaping)
        np.testing.assert_allclose(_vector(updates), expected, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(new_state.values, values, rtol=1e-12)
        params = jax.tree.map(lambda p, u: p - 0.1 * u, params, updates)
        state = new_state


def test_es_with_sgd_follows_evosax_open_es(x64):
    pytest.importorskip("evosax")
    from evosax.algorithms import Open_ES

    params = make_params(jnp.float64)
    ours = gradtx.chain(evolution_strategies(popsize=8, sigma=0.1, key=5), gradtx.sgd(0.05))
    theirs = Open_ES(
        population_size=8,
        solution=params,
        optimizer=optax.sgd(0.05),
        std_schedule=optax.constant_schedule(0.1),
    )
    state = ours.init(params)
    es_state = theirs.init(jax.random.key(0), params, theirs.default_params)
    step = jax.jit(functools.partial(ours.update, value_fn=loss))
    for _ in range(10):
        key = _draw_key(state[0])
        population, es_state = theirs.ask(key, es_state, theirs.default_params)
        fitness = jax.vmap(loss)(population)
        es_state, _ = theirs.tell(key, population, fitness, es_state, theirs.default_params)
        updates, state = step(None, state, params)
        params = gradtx.apply_updates(params, updates)
        np.testing.assert_allclose(_vector(params), es_state.mean, rtol=1e-10, atol=1e-12)


def test_es_population_value_fn_gives_the_same_estimate(x64):
    params = make_params(jnp.float64)
    tx = evolution_strategies(popsize=8, sigma=0.3, key=1)  # compiled for the oracle test
    state = tx.init(params)
    by_member, _ = _update(tx, params, state)
    batched, _ = jax.jit(functools.partial(tx.update, population_value_fn=jax.vmap(loss)))(
        None, state, params
    )
    chex.assert_trees_all_close(batched, by_member, rtol=1e-14)


def test_es_nan_losses_rank_last_and_are_counted(x64):
    params = make_params(jnp.float64)
    x0 = _vector(params)

    def nan_above(p):  # NaN for the members pushed up along the first coordinate
        v = ravel_pytree(p)[0]
        return jnp.where(v[0] > x0[0], jnp.nan, _wavy(v, jnp))

    def np_nan_above(v):
        return np.nan if v[0] > x0[0] else np_loss(v)

    tx = evolution_strategies(popsize=8, sigma=0.1, key=2)
    state = tx.init(params)
    updates, new_state = _update(tx, params, state, value_fn=nan_above)
    half = jax.random.normal(_draw_key(state), (4, DIM), jnp.float64)
    eps = np.concatenate([half, -half])
    expected, _ = oracles.openai_es_gradient(np_nan_above, x0, eps, 0.1)
    np.testing.assert_allclose(_vector(updates), expected, rtol=1e-10, atol=1e-12)
    assert int(new_state.nonfinite) == 4  # one member of each antithetic pair
    # Raw losses: every pair holds a NaN, so every pair is left out.
    raw = evolution_strategies(popsize=8, sigma=0.1, fitness_shaping="none", key=2)
    updates, raw_state = _update(raw, params, raw.init(params), value_fn=nan_above)
    np.testing.assert_array_equal(_vector(updates), 0.0)
    assert int(raw_state.nonfinite) == 4


# -- Gaussian smoothing ------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=2)
def _optax_samples(key, params, n):
    """The n samples as optax draws them: one key per sample, split into one per leaf."""
    keys = jax.random.split(key, n)
    return jax.lax.map(
        lambda k: ravel_pytree(optax.tree_utils.tree_random_like(k, params))[0], keys
    )


def test_perturbation_gradient_equals_optax_perturbed_fun(x64):
    use_baseline = True  # optax's default; the oracle checks the other
    params = make_params(jnp.float64)
    tx = perturbation_gradient(num_samples=16, sigma=0.2, use_baseline=use_baseline, key=7)
    state = tx.init(params)
    updates, _ = _update(tx, params, state)
    smoothed = optax.perturbations.make_perturbed_fun(
        loss, 16, 0.2, noise=optax.perturbations.Normal(), use_baseline=use_baseline
    )
    expected = jax.jit(jax.grad(smoothed, argnums=1))(_draw_key(state), params)
    chex.assert_trees_all_close(updates, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "options", [{"antithetic": True}, {"use_baseline": False}], ids=["antithetic", "no_baseline"]
)
def test_perturbation_gradient_equals_gaussian_smoothing(x64, options):
    params = make_params(jnp.float64)
    tx = perturbation_gradient(num_samples=16, sigma=0.2, key=8, **options)
    state = tx.init(params)
    updates, new_state = _update(tx, params, state)
    z = _optax_samples(_draw_key(state), params, 16)
    expected = oracles.gaussian_smoothing_gradient(
        np_loss, _vector(params), np.asarray(z), 0.2, **options
    )
    np.testing.assert_allclose(_vector(updates), expected, rtol=1e-10, atol=1e-12)
    assert not jnp.array_equal(jax.random.key_data(new_state.key), jax.random.key_data(state.key))


def test_perturbation_gradient_leaves_nonfinite_terms_out(x64):
    params = make_params(jnp.float64)
    x0 = _vector(params)

    def nan_above(p):
        v = ravel_pytree(p)[0]
        return jnp.where(v[0] > x0[0], jnp.nan, _wavy(v, jnp))

    tx = perturbation_gradient(num_samples=8, sigma=0.2, key=8)
    state = tx.init(params)
    updates, new_state = _update(tx, params, state, value_fn=nan_above)
    z = np.asarray(_optax_samples(_draw_key(state), params, 8))
    kept = z[:, 0] <= 0
    expected = oracles.gaussian_smoothing_gradient(np_loss, x0, z[kept], 0.2) * kept.sum() / 8
    np.testing.assert_allclose(_vector(updates), expected, rtol=1e-10, atol=1e-12)
    assert int(new_state.nonfinite) == 8 - kept.sum()


# -- genetic algorithm -------------------------------------------------------------------


@pytest.mark.parametrize("crossover", ["uniform", "blend"])
def test_ga_generations_equal_deaps(x64, crossover):
    params = make_params(jnp.float64)
    hyper = dict(
        crossover=crossover,
        crossover_rate=0.6,
        blend_alpha=0.3,
        mutation_rate=0.3,
        mutation_scale=0.2,
        elites=2,
    )
    # An odd population: the last parent has no mate and passes to mutation as it is.
    tx = genetic_algorithm(popsize=7, tournament_size=3, key=4, **hyper)
    state = tx.init(params)
    np.testing.assert_array_equal(state.population[0], _vector(params))
    best_value = np.inf
    for _ in range(3):
        updates, new_state = _update(tx, params, state)
        population = np.asarray(state.population)
        values = np.array([np_loss(p) for p in population])
        draws = generation_draws(_draw_key(state), 7, DIM, 3, jnp.float64)
        expected = oracles.ga_generation(
            population, values, *(np.asarray(d) for d in draws), **hyper
        )
        np.testing.assert_allclose(new_state.population, expected, rtol=1e-10, atol=1e-12)
        # The update lands on the best member seen so far.
        if values.min() < best_value:
            best_value, best = values.min(), population[values.argmin()]
        np.testing.assert_allclose(new_state.best_value, best_value, rtol=1e-12)
        params = gradtx.apply_updates(params, updates)
        np.testing.assert_allclose(_vector(params), best, rtol=1e-12, atol=1e-14)
        state = new_state


def test_ga_never_takes_a_nan_member(x64):
    params = make_params(jnp.float64)

    def nan_loss(p):  # NaN everywhere but at the start
        v = ravel_pytree(p)[0]
        return jnp.where(jnp.all(v == ravel_pytree(params)[0]), 1.0, jnp.nan)

    tx = genetic_algorithm(popsize=6, key=1)
    updates, state = _update(tx, params, tx.init(params), value_fn=nan_loss)
    np.testing.assert_array_equal(_vector(updates), 0.0)  # the start stays the best
    assert float(state.best_value) == 1.0 and int(state.nonfinite) == 5
    assert np.all(np.isfinite(state.population))


# -- convergence, the shell --------------------------------------------------------------


def _solve(tx, loss_fn, params, steps):
    def body(carry, _):
        p, s = carry
        updates, s = tx.update(None, s, p, value_fn=loss_fn)
        return (gradtx.apply_updates(p, updates), s), None

    (p, _), _ = jax.lax.scan(body, (params, tx.init(params)), None, length=steps)
    return loss_fn(p)


_solve_jit = jax.jit(_solve, static_argnums=(1, 3))


@pytest.mark.parametrize(
    "tx",
    [
        gradtx.chain(evolution_strategies(popsize=16, sigma=0.02), gradtx.adam(0.05)),
        genetic_algorithm(popsize=16),
    ],
    ids=["es_adam", "ga"],
)
def test_solves_the_quadratic(tx):
    params = make_params()
    final = _solve_jit(tx, quadratic_loss, params, 200)
    assert final < 1e-3 * quadratic_loss(params)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: evolution_strategies(popsize=7), r"evolution_strategies\(popsize=7\).*even"),
        (lambda: evolution_strategies(popsize=0), r"evolution_strategies\(popsize=0\)"),
        (lambda: evolution_strategies(sigma=0.0), r"evolution_strategies\(sigma=0.0\)"),
        (
            lambda: evolution_strategies(fitness_shaping="ranks"),
            r"fitness_shaping='ranks'\).*'centred_ranks', 'none'",
        ),
        (lambda: perturbation_gradient(num_samples=0), r"perturbation_gradient\(num_samples=0\)"),
        (lambda: perturbation_gradient(sigma=-1.0), r"perturbation_gradient\(sigma=-1.0\)"),
        (lambda: genetic_algorithm(popsize=1), r"genetic_algorithm\(popsize=1\)"),
        (lambda: genetic_algorithm(popsize=8, elites=8), r"genetic_algorithm\(elites=8\).*7\]"),
        (lambda: genetic_algorithm(tournament_size=0), r"genetic_algorithm\(tournament_size=0"),
        (lambda: genetic_algorithm(mutation_rate=1.5), r"genetic_algorithm\(mutation_rate=1.5"),
        (lambda: genetic_algorithm(mutation_scale=0.0), r"genetic_algorithm\(mutation_scale=0"),
        (lambda: genetic_algorithm(crossover="sbx"), r"genetic_algorithm\(crossover='sbx'\)"),
    ],
)
def test_bad_arguments_are_named(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize(
    "tx", [evolution_strategies(), perturbation_gradient(), genetic_algorithm()]
)
def test_missing_value_fn_and_integer_leaves_are_refused(tx):
    params = {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match=rf"{tx.name}.update needs value_fn="):
        jax.jit(tx.update)(None, tx.init(params), params)  # raised while tracing
    with pytest.raises(TypeError, match="integer"):
        tx.init({"w": jnp.arange(3)})
