"""Tests that kill the mutants of gradtx/_evolution.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
The references are tests/oracles_black_box.py's NumPy versions of the papers' rules
(Salimans et al.'s OpenAI-ES, Gaussian smoothing, DEAP's ``eaSimple`` generation with its
strict ``random() < p`` tests), optax's ``tree_random_like`` / ``make_perturbed_fun`` (the
samples of perturbation_gradient), DEAP's ``HallOfFame.update`` (a member replaces the best only
when strictly better) and the docstrings: the smallest sizes and the ranges of the arguments,
``key`` choosing the draws, the first population ``params + mutation_scale N(0, I)``, and the
draws of :func:`generation_draws` (uniforms in [0, 1), N(0, 1), contestants among all members).
"""

from __future__ import annotations

import functools
import re

import chex
from errors import raises_whole
import jax
import jax.numpy as jnp
import numpy as np
import optax
import oracles_black_box as oracles
from problems import make_params
import pytest
from test_evolution import _draw_key, _optax_samples, _update, _vector, DIM, np_loss
from test_mutants_population import _loss

import gradtx
from gradtx._evolution import (
    evolution_strategies,
    generation_draws,
    GenerationDraws,
    genetic_algorithm,
    perturbation_gradient,
)

_X = [0.5, -1.0, 2.0]  # the params of the small problems, minimised by _loss at 1


def _tree_loss(params):
    return sum(_loss(leaf) for leaf in jax.tree.leaves(params))


# -- arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: evolution_strategies(popsize=4.5),
            "evolution_strategies(popsize=4.5): popsize must be a whole number",
        ),
        (
            lambda: evolution_strategies(popsize=1),
            "evolution_strategies(popsize=1): popsize must be in [2, inf)",
        ),
        (
            lambda: evolution_strategies(sigma=-0.5),
            "evolution_strategies(sigma=-0.5): sigma must be in (0, inf)",
        ),
        (
            lambda: perturbation_gradient(num_samples=2.5),
            "perturbation_gradient(num_samples=2.5): num_samples must be a whole number",
        ),
        (
            lambda: perturbation_gradient(sigma=0.0),
            "perturbation_gradient(sigma=0.0): sigma must be in (0, inf)",
        ),
        (
            lambda: genetic_algorithm(popsize=4.5),
            "genetic_algorithm(popsize=4.5): popsize must be a whole number",
        ),
        (
            lambda: genetic_algorithm(tournament_size=1.5),
            "genetic_algorithm(tournament_size=1.5): tournament_size must be a whole number",
        ),
        (
            lambda: genetic_algorithm(crossover_rate=-0.1),
            "genetic_algorithm(crossover_rate=-0.1): crossover_rate must be in [0, 1]",
        ),
        (
            lambda: genetic_algorithm(crossover_rate=1.1),
            "genetic_algorithm(crossover_rate=1.1): crossover_rate must be in [0, 1]",
        ),
        (
            lambda: genetic_algorithm(blend_alpha=-0.1),
            "genetic_algorithm(blend_alpha=-0.1): blend_alpha must be in [0, inf)",
        ),
        (
            lambda: genetic_algorithm(mutation_rate=-0.1),
            "genetic_algorithm(mutation_rate=-0.1): mutation_rate must be in [0, 1]",
        ),
        (
            lambda: genetic_algorithm(mutation_scale=-0.5),
            "genetic_algorithm(mutation_scale=-0.5): mutation_scale must be in (0, inf)",
        ),
        (
            lambda: genetic_algorithm(elites=-1),
            "genetic_algorithm(elites=-1): elites must be in [0, 31]",
        ),
        (
            lambda: genetic_algorithm(elites=1.5),
            "genetic_algorithm(elites=1.5): elites must be a whole number",
        ),
        (
            lambda: genetic_algorithm(crossover="sbx"),
            "genetic_algorithm(crossover='sbx'): crossover must be one of 'uniform', 'blend'",
        ),
    ],
)
def test_an_argument_out_of_range_is_refused_naming_the_call_and_the_rule(build, message):
    # The recipe, the argument as given and the range or rule it breaks.
    with raises_whole(ValueError, message):
        build()


def test_an_odd_population_is_refused_with_the_reason():
    message = "evolution_strategies(popsize=7): popsize must be even (antithetic pairs +eps, -eps)"
    with raises_whole(ValueError, message):
        evolution_strategies(popsize=7)


def test_the_largest_and_smallest_sizes_are_accepted():
    # The ranges' ends: elites in [0, popsize - 1], tournament_size and num_samples >= 1,
    # popsize >= 2 (an even one for OpenAI-ES).
    assert genetic_algorithm(popsize=8, elites=7).elites == 7
    assert genetic_algorithm(popsize=2, tournament_size=1, elites=0).tournament_size == 1
    assert genetic_algorithm(crossover_rate=1.0, mutation_rate=0.0).crossover_rate == 1.0
    assert genetic_algorithm(crossover_rate=0.0, mutation_rate=1.0, blend_alpha=0.0).elites == 1
    assert evolution_strategies(popsize=2).popsize == 2
    assert perturbation_gradient(num_samples=1).num_samples == 1


@pytest.mark.parametrize(
    "name", ["evolution_strategies", "perturbation_gradient", "genetic_algorithm"]
)
def test_gradients_without_params_are_refused_naming_the_call(name):
    tx = getattr(gradtx, name)()
    params = jnp.zeros(2)
    message = f"{name} needs the params: call update(updates, state, params)"
    with raises_whole(ValueError, message):
        tx.update(jnp.ones(2), tx.init(params), value_fn=jnp.sum)


def test_an_antithetic_perturbation_gradient_without_a_loss_names_itself():
    # score's error names the transform and the call to make, on either branch.
    tx = perturbation_gradient(num_samples=2, antithetic=True)
    params = jnp.zeros(2)
    message = "perturbation_gradient.update needs value_fn= (the loss to minimise): call update("
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        tx.update(None, tx.init(params), params)


# -- the smallest sizes the docstrings allow ---------------------------------------------


def test_es_takes_a_single_antithetic_pair(x64):
    # popsize: "an even integer >= 2"; with one pair the ranks are -0.5, 0.5.
    params = make_params(jnp.float64)
    tx = evolution_strategies(popsize=2, sigma=0.1, key=3)
    state = tx.init(params)
    updates, new_state = _update(tx, params, state)
    half = jax.random.normal(_draw_key(state), (1, DIM), jnp.float64)
    eps = np.concatenate([half, -half])
    expected, values = oracles.openai_es_gradient(np_loss, _vector(params), eps, 0.1)
    np.testing.assert_allclose(_vector(updates), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(new_state.values, values, rtol=1e-12)


def test_perturbation_gradient_takes_a_single_sample(x64):
    # num_samples: "an integer >= 1".
    params = make_params(jnp.float64)
    tx = perturbation_gradient(num_samples=1, sigma=0.2, key=8)
    state = tx.init(params)
    updates, _ = _update(tx, params, state)
    z = np.asarray(_optax_samples(_draw_key(state), params, 1))
    expected = oracles.gaussian_smoothing_gradient(np_loss, _vector(params), z, 0.2)
    np.testing.assert_allclose(_vector(updates), expected, rtol=1e-10, atol=1e-12)


def test_ga_generation_of_an_odd_population_without_elites_is_deaps(x64):
    # tournament_size 1 (random selection) and elites 0 (eaSimple itself): the last slot of an
    # odd population is its unmated parent, mutated.
    hyper = dict(
        crossover="uniform",
        crossover_rate=0.9,
        blend_alpha=0.5,
        mutation_rate=0.5,
        mutation_scale=0.2,
        elites=0,
    )
    params = jnp.asarray(_X, jnp.float64)
    tx = genetic_algorithm(popsize=5, tournament_size=1, key=6, **hyper)
    state = tx.init(params)
    _, new_state = _update(tx, params, state, value_fn=_loss)
    population = np.asarray(state.population)
    values = np.array([np.sum((p - 1.0) ** 2) for p in population])  # _loss in NumPy
    draws = generation_draws(_draw_key(state), 5, 3, 1, jnp.float64)
    expected = oracles.ga_generation(population, values, *(np.asarray(d) for d in draws), **hyper)
    np.testing.assert_allclose(new_state.population, expected, rtol=1e-10, atol=1e-12)
    assert not np.allclose(expected[4], population[np.asarray(draws.contestants)[4, 0]])


# -- keys --------------------------------------------------------------------------------


def _first_update(tx, params):
    """The updates and the state (its key aside) after one update."""
    updates, state = tx.update(None, tx.init(params), params, value_fn=_loss)
    return updates, state._replace(key=None)


@pytest.mark.parametrize("kind", ["es", "pg"])
def test_the_key_chooses_the_draws(kind):
    # key: "an integer seed, a JAX PRNG key (raw or typed), or None (key 0)".
    build = {
        "es": lambda key: evolution_strategies(popsize=4, key=key),
        "pg": lambda key: perturbation_gradient(num_samples=3, key=key),
    }[kind]
    params = jnp.asarray(_X)
    seed_0, seed_1 = (_first_update(build(k), params) for k in (None, 1))
    chex.assert_trees_all_equal(_first_update(build(jax.random.key(1)), params), seed_1)
    chex.assert_trees_all_equal(_first_update(build(jax.random.PRNGKey(0)), params), seed_0)
    assert not np.any(_vector(seed_0[0]) == _vector(seed_1[0]))


def test_the_key_chooses_the_first_population():
    params = jnp.asarray(_X)
    first = {k: genetic_algorithm(popsize=4, key=k).init(params).population for k in (None, 1)}
    typed = genetic_algorithm(popsize=4, key=jax.random.key(1)).init(params).population
    raw = genetic_algorithm(popsize=4, key=jax.random.PRNGKey(0)).init(params).population
    np.testing.assert_array_equal(typed, first[1])
    np.testing.assert_array_equal(raw, first[None])
    assert not np.any(np.asarray(first[None][1:] == first[1][1:]))  # all but params themselves


# -- dtypes ------------------------------------------------------------------------------


def _transforms(sigma, rate, scale, alpha):
    """One of each kind, from hyperparameters given as numbers or as jit arguments."""
    return {
        "es": evolution_strategies(popsize=4, sigma=sigma, key=0),
        "pg": perturbation_gradient(num_samples=3, sigma=sigma, key=0),
        "ga_blend": genetic_algorithm(
            popsize=4,
            crossover="blend",
            crossover_rate=rate,
            mutation_rate=rate,
            mutation_scale=scale,
            blend_alpha=alpha,
            key=0,
        ),
    }


def _one_step(params, hyper, kinds=("es", "pg", "ga_blend")):
    """For each transform: its init state and the state and updates of one step."""
    runs = {}
    for name, tx in _transforms(*hyper).items():
        if name in kinds:
            state = tx.init(params)
            updates, new_state = tx.update(None, state, params, value_fn=_loss)
            runs[name] = [state, new_state], updates
    return runs


def test_states_keep_the_params_dtype_under_x64_whatever_the_hyperparameters(x64):
    # Under x64 a default-dtype draw, an inf or a hyperparameter passed to jit as a float64
    # number (a sweep's float64 arrays; a concrete one is stored as a Python float) is
    # float64: the states must stay in the params' dtype (a state that changes dtype breaks a
    # scan or a jitted loop), the counts int32, and a float64 jit argument must give what the
    # same Python float gives (float32 arithmetic, the same draws and coin flips).
    hyper = (0.1, 0.7, 0.2, 0.3)
    as_float64 = tuple(np.float64(h) for h in hyper)
    # The dtypes, traced only (jax.eval_shape: nothing compiled); float64 params keep float64
    # states too (init must not take the default float32 of an empty vector, say).
    for dtype in (jnp.float32, jnp.float64):
        params = jnp.asarray(_X, dtype)
        by_number = jax.eval_shape(lambda p: _one_step(p, hyper), params)
        by_argument = jax.eval_shape(_one_step, params, as_float64)
        for name, (states, updates) in by_number.items():
            for t, state in enumerate(states):
                for field, leaf in state._asdict().items():
                    if field == "nonfinite":
                        assert leaf.dtype == jnp.int32, (name, t, field)
                    elif field != "key":
                        assert leaf.dtype == dtype, (name, t, field, leaf.dtype)
            chex.assert_trees_all_equal_dtypes(updates, params)
            chex.assert_trees_all_equal_dtypes(by_argument[name], (states, updates))
    # The numbers: perturbation_gradient keeps no losses in its state, only its estimate shows
    # a sigma used in float64 (its losses and sums in float64: last bits of 16 components).
    wide = jnp.linspace(-1.0, 1.0, 16, dtype=jnp.float32)
    # Both as jit arguments, float32 and float64 (one program each, the same arithmetic
    # after the cast), not a constant against an argument, which XLA may fold otherwise.
    step = jax.jit(functools.partial(_one_step, kinds=["pg"]))
    numbers = step(wide, tuple(np.float32(h) for h in hyper))
    arguments = step(wide, as_float64)
    chex.assert_trees_all_equal(arguments["pg"][1], numbers["pg"][1])


def test_perturbation_gradient_draws_float32_leaves_as_optax_does(x64):
    # optax's tree_random_like draws each leaf in its own dtype: float32 here, under x64.
    params = {"w": jnp.asarray(_X, jnp.float32), "b": jnp.ones(2, jnp.float32)}
    tx = perturbation_gradient(num_samples=4, sigma=0.2, key=7)
    state = tx.init(params)
    updates = _update(tx, params, state, value_fn=_tree_loss)[0]
    smoothed = optax.perturbations.make_perturbed_fun(
        _tree_loss, 4, 0.2, noise=optax.perturbations.Normal()
    )
    expected = jax.jit(jax.grad(smoothed, argnums=1))(_draw_key(state), params)
    chex.assert_trees_all_equal_dtypes(updates, params)
    chex.assert_trees_all_close(updates, expected, rtol=2e-4, atol=2e-4)


# -- population_value_fn -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["pg", "pg_antithetic", "ga"])
def test_population_value_fn_scores_as_value_fn_does(kind):
    params = jnp.asarray(_X)
    tx = {
        "pg": lambda: perturbation_gradient(num_samples=3, key=2),
        "pg_antithetic": lambda: perturbation_gradient(num_samples=3, antithetic=True, key=2),
        "ga": lambda: genetic_algorithm(popsize=4, key=2),
    }[kind]()
    state = tx.init(params)
    updates, by_member = jax.jit(functools.partial(tx.update, value_fn=_loss))(None, state, params)
    batched = jax.jit(functools.partial(tx.update, population_value_fn=jax.vmap(_loss)))(
        None, state, params
    )
    chex.assert_trees_all_close(
        (batched[0], batched[1]._replace(key=None)),
        (updates, by_member._replace(key=None)),
        rtol=1e-6,
    )


# -- OpenAI-ES: raw losses ---------------------------------------------------------------


def test_raw_losses_keep_a_pair_whose_sum_overflows_but_difference_is_finite(x64):
    # "a pair whose loss difference is not finite is left out": 0.95e308 and 0.9e308 differ by
    # 5e306, though their sum is inf.
    x = jnp.zeros(1)

    def big(v):
        return jnp.where(v[0] > 0, 0.95e308, 0.9e308)

    tx = evolution_strategies(popsize=2, sigma=1.0, fitness_shaping="none", key=0)
    state = tx.init(x)
    updates, new_state = tx.update(None, state, x, value_fn=big)
    half = jax.random.normal(_draw_key(state), (1, 1), jnp.float64)
    assert 0 < abs(float(half[0, 0])) < 1.5  # the products w eps stay finite
    eps = np.concatenate([half, -half])
    np_big = lambda v: 0.95e308 if v[0] > 0 else 0.9e308  # noqa: E731
    expected, values = oracles.openai_es_gradient(np_big, np.zeros(1), eps, 1.0, "none")
    assert float(values[0]) + float(values[1]) == np.inf and expected[0] != 0
    np.testing.assert_allclose(updates, expected, rtol=1e-12)


# -- genetic algorithm -------------------------------------------------------------------


def test_a_member_as_good_as_the_best_does_not_replace_it():
    # DEAP's HallOfFame.update inserts an individual only when it is strictly better than the
    # worst kept: the best found first stays (here at +1; -1 ties it at loss 1).
    tx = genetic_algorithm(popsize=2, key=0)
    x = jnp.asarray([1.0])
    update = jax.jit(functools.partial(tx.update, value_fn=lambda v: jnp.sum(v**2)))
    state = tx.init(x)._replace(population=jnp.asarray([[1.0], [3.0]]))
    updates, state = update(None, state, x)
    assert float(state.best_value) == 1.0 and float(updates[0]) == 0.0
    state = state._replace(population=jnp.asarray([[-1.0], [2.0]]))
    updates, state = update(None, state, x)
    np.testing.assert_array_equal(state.best, [1.0])
    assert float(state.best_value) == 1.0 and float(updates[0]) == 0.0
    # A strictly better one does.
    state = state._replace(population=jnp.asarray([[2.0], [-0.5]]))
    updates, state = update(None, state, x)
    np.testing.assert_array_equal(state.best, [-0.5])
    assert float(updates[0]) == -1.5


def _boundary_draws(dtype, rate_c, rate_m):
    """Draws of one generation of 4 members, 3 genes, with uniforms exactly on the thresholds:
    the tournaments pick parents 3, 1 | 0, 1 (two pairs of different members, for the losses of
    _boundary_generation); pair 0's mate uniform is the crossover rate, pair 1's is below it;
    genes of 0.5; mutate uniforms equal to the mutation rate but one, below."""
    mutate = np.full((4, 3), rate_m)
    mutate[1, 2] = 0.0
    return GenerationDraws(
        jnp.asarray([[0, 3], [1, 2], [2, 0], [3, 1]]),
        jnp.asarray([rate_c, 0.0], dtype),
        jnp.asarray([[0.5, 0.25, 0.5], [0.5, 0.75, 0.25]], dtype),
        jnp.asarray(mutate, dtype),
        jnp.asarray(np.linspace(-1.0, 1.0, 12).reshape(4, 3), dtype),
    )


def _boundary_generation():
    population = np.arange(12.0).reshape(4, 3) / 4
    values = np.array([3.0, 1.0, 4.0, 2.0])
    return population, values


@pytest.mark.parametrize("crossover", ["uniform", "blend"])
def test_a_uniform_equal_to_a_rate_or_to_one_half_is_no_event(crossover):
    # DEAP draws random() in [0, 1) and acts when it is < the probability: varAnd mates when
    # random() < cxpb, cxUniform swaps when random() < indpb = 0.5, mutGaussian when
    # random() < indpb. The oracle follows DEAP, given the same uniforms.
    hyper = dict(
        crossover=crossover,
        crossover_rate=0.5,
        blend_alpha=0.25,
        mutation_rate=0.25,
        mutation_scale=0.5,
        elites=0,
    )
    tx = genetic_algorithm(popsize=4, tournament_size=2, **hyper)
    population, values = _boundary_generation()
    draws = _boundary_draws(jnp.float32, 0.5, 0.25)
    ours = tx.next_generation(jnp.asarray(population, jnp.float32), jnp.asarray(values), draws)
    expected = oracles.ga_generation(population, values, *(np.asarray(d) for d in draws), **hyper)
    np.testing.assert_allclose(ours, expected, rtol=1e-6)


def test_rates_given_as_float64_jit_arguments_compare_as_the_python_floats_do(x64):
    # float32(0.7) < 0.7: a float32 uniform equal to float32(0.7) is no event for the Python
    # float 0.7 (weak, rounded to the population's float32), and must be none for a sweep's
    # float64 0.7 either: the rates are compared in the population's dtype.
    rate = np.float32(0.7)
    assert float(rate) < 0.7
    population, values = _boundary_generation()
    population = jnp.asarray(population, jnp.float32)
    values = jnp.asarray(values, jnp.float32)
    draws = _boundary_draws(jnp.float32, rate, rate)

    def generation(r):
        tx = genetic_algorithm(popsize=4, tournament_size=2, crossover_rate=r, mutation_rate=r)
        return tx.next_generation(population, values, draws)

    by_number = jax.jit(generation)(np.float32(0.7))
    by_argument = jax.jit(generation)(np.float64(0.7))
    # DEAP's rule with the rate rounded to float32: pair 0 does not mate, one gene mutates.
    expected = oracles.ga_generation(
        np.asarray(population, np.float64),
        np.asarray(values, np.float64),
        *(np.asarray(d) for d in draws),
        crossover="uniform",
        crossover_rate=float(rate),
        blend_alpha=0.5,
        mutation_rate=float(rate),
        mutation_scale=0.1,
        elites=1,
    )
    np.testing.assert_allclose(by_number, expected, rtol=1e-6)
    np.testing.assert_array_equal(by_argument, by_number)


def test_the_first_population_is_params_and_gaussian_members_around_them():
    # "The first population is params and n - 1 members params + mutation_scale N(0, I)".
    x = jnp.asarray([1.0, -2.0, 0.5, 3.0])
    tx = genetic_algorithm(popsize=65, mutation_scale=0.5, key=3)
    state = tx.init(x)
    np.testing.assert_array_equal(state.population[0], x)
    np.testing.assert_array_equal(state.best, x)
    assert float(state.best_value) == np.inf and int(state.nonfinite) == 0
    steps = np.asarray(state.population[1:] - x) / 0.5  # 256 N(0, 1) numbers
    assert abs(steps.mean()) < 0.2 and 0.85 < steps.std() < 1.15
    assert np.all(np.abs(steps) < 5)


def test_generation_draws_are_the_documented_distributions(x64):
    popsize, dim, tournament = 6, 40, 10
    draw = jax.jit(generation_draws, static_argnums=(1, 2, 3, 4))
    draws = draw(jax.random.key(0), popsize, dim, tournament, jnp.float32)
    shapes = dict(
        contestants=(popsize, tournament),
        mate=(3,),
        genes=(3, dim),
        mutate=(popsize, dim),
        noise=(popsize, dim),
    )
    for field, shape in shapes.items():
        leaf = getattr(draws, field)
        assert leaf.shape == shape, field
        if field != "contestants":
            assert leaf.dtype == jnp.float32, field
    # contestants: with replacement among all members (60 draws: each of 0..5 appears)
    assert set(np.asarray(draws.contestants).ravel()) == set(range(popsize))
    for field in ("mate", "genes", "mutate"):
        u = np.asarray(getattr(draws, field), np.float64)
        assert np.all((u >= 0) & (u < 1)), field
    u = np.asarray(draws.mutate, np.float64).ravel()
    assert abs(u.mean() - 0.5) < 0.05 and u.min() < 0.02 and u.max() > 0.98
    noise = np.asarray(draws.noise, np.float64).ravel()
    assert abs(noise.mean()) < 0.15 and 0.9 < noise.std() < 1.1
