"""simulated_annealing and logarithmic_cooling.

- a NumPy oracle of Kirkpatrick et al.'s algorithm (Gaussian proposals, Metropolis
  acceptance, the best point evaluated), given the same draws: chains, losses and best
  equal to 1e-10 in float64 over 40 steps of 2-D Rastrigin with three chains, geometric
  cooling and a decaying step size;
- the schedules: logarithmic_cooling's formula, an increasing temperature refused;
- the shell: one compile under jit, the same numbers inside gradtx.chain, NaN losses never
  accepted nor best, the start evaluated at the first step;
- on 2-D Rastrigin, annealing escapes local minima where greedy search (T = 0) stays;
- bad arguments refused when built, naming them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx import _annealing
from gradtx._annealing import logarithmic_cooling, simulated_annealing


def rastrigin(x, xp=jnp):
    return 10.0 * x.shape[-1] + xp.sum(x**2 - 10.0 * xp.cos(2.0 * xp.pi * x), axis=-1)


def oracle(f, x0, temperatures, step_sizes, noise, u):
    """Simulated annealing from the paper, in NumPy: every chain starts at x0."""
    x = np.tile(x0, (noise.shape[1], 1))
    fx = f(x)
    best, best_loss = x0, np.inf
    out = []
    for T, s, z, uk in zip(temperatures, step_sizes, noise, u):
        y = x + s * z
        fy = f(y)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            accept = uk < np.exp(-(fy - fx) / T)
        seen, seen_losses = np.concatenate([x, y]), np.concatenate([fx, fy])
        if seen_losses.min() < best_loss:
            best, best_loss = seen[seen_losses.argmin()], seen_losses.min()
        x, fx = np.where(accept[:, None], y, x), np.where(accept, fy, fx)
        out.append((x, fx, best, best_loss))
    return [np.stack(a) for a in zip(*out)]


def run(tx, params, loss, steps, monkeypatch=None, noise=None, u=None):
    """The states after each of ``steps`` jitted updates (the draws injected when given)."""
    injected = {}
    if noise is not None:
        monkeypatch.setattr(_annealing, "draws", lambda key, shape, dtype: injected["draws"])

    @jax.jit
    def step(params, state, draws):
        injected["draws"] = draws  # traced: one compile, each step's draws an argument
        updates, state = tx.update(None, state, params, value_fn=loss)
        return gradtx.apply_updates(params, updates), state

    state = tx.init(params)
    states = []
    for k in range(steps):
        params, state = step(params, state, None if noise is None else (noise[k], u[k]))
        states.append(state._replace(rng_key=None))
    return params, jax.tree.map(lambda *xs: np.stack(xs), *states)


def test_equals_the_numpy_oracle_given_the_same_draws(monkeypatch, x64):
    steps, chains, x0 = 40, 3, np.array([2.2, -1.4])
    rng = np.random.default_rng(0)
    noise, u = rng.normal(size=(steps, chains, 2)), rng.uniform(size=(steps, chains))
    temperature = gradtx.exponential_decay(5.0, 1, 0.9)
    step_size = gradtx.exponential_decay(0.8, 10, 0.5)
    tx = simulated_annealing(temperature, step_size, n_chains=chains)
    params, ours = run(tx, jnp.asarray(x0), rastrigin, steps, monkeypatch, noise, u)

    k = np.arange(steps)
    theirs = oracle(lambda x: rastrigin(x, np), x0, 5.0 * 0.9**k, 0.8 * 0.5 ** (k / 10), noise, u)
    for name, expected in zip(("positions", "losses", "best", "best_loss"), theirs):
        np.testing.assert_allclose(getattr(ours, name), expected, rtol=1e-10, err_msg=name)
    accepted = np.any(np.diff(ours.positions, axis=0) != 0, axis=-1)
    uphill = np.diff(ours.losses, axis=0) > 0
    assert 0 < accepted.mean() < 1 and uphill.any()  # the test sees both branches
    np.testing.assert_allclose(params, ours.best[-1], rtol=1e-15)


def test_logarithmic_cooling():
    schedule = logarithmic_cooling(3.0)
    k = np.array([0, 1, 10, 1000])
    np.testing.assert_allclose(jax.vmap(schedule)(k), 3.0 / np.log(np.e + k), rtol=1e-6)
    with pytest.raises(ValueError, match=r"logarithmic_cooling\(init_value=-1.0\)"):
        logarithmic_cooling(-1.0)


def sphere(params):
    return sum(jnp.sum(x**2) for x in jax.tree.leaves(params))


PARAMS = {"a": jnp.asarray([1.0, -2.0]), "b": jnp.asarray(0.5, jnp.float32)}


def test_the_start_counts_and_nan_is_never_accepted():
    params = jnp.zeros(2)

    def loss(x):  # 0 at the start, NaN everywhere else
        return jnp.where(jnp.all(x == 0), 0.0, jnp.nan)

    _, states = run(simulated_annealing(temperature=1e6, n_chains=3), params, loss, 5)
    np.testing.assert_array_equal(states.positions, 0.0)  # a NaN proposal is never taken
    np.testing.assert_array_equal(states.losses, 0.0)
    np.testing.assert_array_equal(states.best_loss, 0.0)


@jax.jit
def final_rastrigin(tx, x0):
    def body(carry, _):
        params, state = carry
        updates, state = tx.update(None, state, params, value_fn=rastrigin)
        return (gradtx.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(body, (x0, tx.init(x0)), None, length=249)
    return rastrigin(params)


def test_annealing_escapes_local_minima_that_greedy_search_keeps():
    # 2-D Rastrigin from f = 13, 2000 evaluations (8 chains): annealed chains end in the
    # global minimum's basin or a neighbour's (f < 1.5), greedy ones (T = 0) mostly higher.
    # scipy's dual_annealing (with its local search) reaches 1e-14 at this budget: the
    # report compares them over 15 seeds.
    cooling = gradtx.exponential_decay(3.0, 25, 0.6)
    tx = simulated_annealing(cooling, gradtx.exponential_decay(1.0, 25, 0.6), n_chains=8)
    x0 = jnp.asarray([3.0, -2.0])
    annealed = [float(final_rastrigin(tx.replace(key=s), x0)) for s in range(4)]
    greedy = [
        float(final_rastrigin(tx.replace(key=s, temperature=cooling.replace(init_value=0.0)), x0))
        for s in range(4)
    ]
    assert max(annealed) < 1.5, annealed
    assert np.median(annealed) < np.median(greedy) - 0.5, (annealed, greedy)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": -1.0}, r"simulated_annealing\(temperature=-1.0\)"),
        ({"temperature": gradtx.linear_schedule(0.1, 2.0, 10)}, r"must not increase"),
        ({"step_size": -0.1}, r"step_size must be in"),
        ({"n_chains": 0}, r"simulated_annealing\(n_chains=0\)"),
        ({"n_chains": 1.5}, r"n_chains must be a whole number"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        simulated_annealing(**kwargs)


def test_missing_value_fn_is_named():
    tx = simulated_annealing()
    with pytest.raises(ValueError, match=r"simulated_annealing.update needs value_fn="):
        tx.update(None, tx.init(PARAMS), PARAMS)
