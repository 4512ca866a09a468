"""Tests that kill the mutants of gradtx/_swarm.py the other test files let survive.

The verdicts, mutant by mutant: tests/MUTATION.md (issue 20). The references are
particle_swarm's docstring (the update rule, the initial swarm in ``params +- init_scale``)
and pyswarms 1.3 (the reference extra, imported with importorskip): its strict ``<`` in
``compute_pbest`` and ``Star.compute_gbest``, and its periodic boundary handler, which moves
only the coordinates strictly outside the bounds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradtx import _swarm
from gradtx._swarm import particle_swarm


def sphere(x):
    return jnp.sum(x**2)


def _steps(tx, params, steps, **loss):
    """``tx.init(params)`` and the states after ``steps`` eager updates with ``loss``, and the
    updates of the last one."""
    states = [tx.init(params)]
    updates = None
    for _ in range(steps):
        updates, state = tx.update(None, states[-1], params, **loss)
        states.append(state)
    return states, updates


@pytest.mark.parametrize("arg", ["velocity_clamp", "bounds"])
def test_an_empty_interval_is_refused_naming_the_argument(arg):
    with pytest.raises(ValueError, match=rf"particle_swarm\({arg}=\(1.0, 1.0\)\).*low < high"):
        particle_swarm(**{arg: (1.0, 1.0)})


@pytest.mark.parametrize("arg", ["c1", "c2"])
def test_a_negative_acceleration_coefficient_is_refused_naming_it(arg):
    with pytest.raises(ValueError, match=rf"particle_swarm\({arg}=-0.1\)"):
        particle_swarm(**{arg: -0.1})


def test_a_swarm_of_one_particle_moves_params_to_where_it_started():
    # n_particles >= 1 (docstring): one particle's first finite loss makes it the global best.
    tx = particle_swarm(n_particles=1)
    params = jnp.asarray([0.5, -0.5])
    states, updates = _steps(tx, params, 1, value_fn=sphere)
    np.testing.assert_array_equal(params + updates, states[0].positions[0])
    assert float(states[1].global_best_loss) == float(sphere(states[0].positions[0]))


def test_the_key_chooses_the_swarm():
    params = jnp.zeros(3)
    swarm = {k: particle_swarm(key=k).init(params) for k in (0, 1)}
    typed = particle_swarm(key=jax.random.key(1)).init(params)
    np.testing.assert_array_equal(typed.positions, swarm[1].positions)
    assert not np.any(np.asarray(swarm[0].positions) == np.asarray(swarm[1].positions))


def test_initial_velocities_are_uniform_in_plus_minus_init_scale():
    # 13 particles x 3 coordinates: U[-0.25, 0.25) takes both signs and spreads out.
    velocities = np.asarray(particle_swarm(init_scale=0.25).init(jnp.zeros(3)).velocities)
    assert velocities.shape == (13, 3)
    assert np.all(np.abs(velocities) <= 0.25)
    assert velocities.min() < -0.1 and velocities.max() > 0.1
    assert len(np.unique(velocities)) == velocities.size


def test_periodic_moves_only_coordinates_strictly_outside_the_bounds():
    # bounds [-1, 2], width 3; pyswarms: x < lb -> ub - (lb - x) mod s, x > ub -> lb + (x - ub)
    # mod s, the bounds themselves stay.
    x = np.asarray([[-1.0, 2.0, 0.5, -1.5, 2.5, -4.0, 5.0]])
    expected = [[-1.0, 2.0, 0.5, 1.5, -0.5, 2.0, -1.0]]
    ours = _swarm.periodic(jnp.asarray(x), jnp.asarray(-1.0), jnp.asarray(2.0))
    np.testing.assert_array_equal(ours, expected)
    handlers = pytest.importorskip("pyswarms.backend.handlers")
    theirs = handlers.BoundaryHandler(strategy="periodic")(
        x.copy(), (np.full(7, -1.0), np.full(7, 2.0))
    )
    np.testing.assert_array_equal(theirs, expected)


def test_a_tied_loss_moves_neither_a_personal_nor_the_global_best():
    # |x| on a line. Particle 0 improves from 2 to 1, tying the global best (-1, loss 1):
    # argmin picks particle 0, but 1 < 1 is false (pyswarms' Star.compute_gbest), so the
    # global best stays at -1. Particle 2 scores 4 at x = 4, tying its best at -4: it stays
    # (f_i < f(p_i), pyswarms' compute_pbest).
    tx = particle_swarm(n_particles=3)
    params = jnp.zeros(1)
    state = tx.init(params)._replace(
        positions=jnp.asarray([[1.0], [3.0], [4.0]]),
        best_positions=jnp.asarray([[2.0], [-1.0], [-4.0]]),
        best_losses=jnp.asarray([2.0, 1.0, 4.0]),
        global_best=jnp.asarray([-1.0]),
        global_best_loss=jnp.asarray(1.0),
    )
    updates, after = tx.update(None, state, params, value_fn=lambda x: jnp.sum(jnp.abs(x)))
    np.testing.assert_array_equal(after.best_positions, [[1.0], [-1.0], [-4.0]])
    np.testing.assert_array_equal(after.best_losses, [1.0, 1.0, 4.0])
    np.testing.assert_array_equal(after.global_best, [-1.0])
    np.testing.assert_array_equal(params + updates, [-1.0])


def test_population_value_fn_scores_the_swarm_as_value_fn_does():
    tx = particle_swarm(n_particles=5)
    params = jnp.asarray([1.0, -2.0])
    one, u_one = _steps(tx, params, 2, value_fn=sphere)
    many, u_many = _steps(tx, params, 2, population_value_fn=lambda xs: jnp.sum(xs**2, axis=1))
    np.testing.assert_allclose(u_many, u_one, rtol=1e-6)
    np.testing.assert_allclose(many[-1].best_losses, one[-1].best_losses, rtol=1e-6)
    assert np.all(np.isfinite(many[-1].best_losses))


def test_every_step_draws_new_coefficients(monkeypatch):
    draws = []

    def recording(key, shape, dtype):
        r1, r2 = coefficients(key, shape, dtype)
        draws.append(np.asarray(r1))
        return r1, r2

    coefficients = _swarm.coefficients
    monkeypatch.setattr(_swarm, "coefficients", recording)
    _steps(particle_swarm(n_particles=4), jnp.zeros(2), 3, value_fn=sphere)
    assert len(draws) == 3
    for a, b in zip(draws, draws[1:]):
        assert not np.any(a == b)


@pytest.mark.parametrize("hyperparameters", ["python floats", "float64 jit arguments"])
def test_float32_params_under_x64_keep_a_float32_swarm(hyperparameters, x64):
    # Under x64 a default-dtype draw, an inf or an astype(None) is float64, and so is a
    # hyperparameter passed to jit as a float64 number (a sweep's float64 arrays; a concrete
    # one is stored as a Python float): the swarm must stay in the params' dtype (a state
    # that changes dtype breaks a scan or a jitted loop).
    params = jnp.asarray([1.0, -0.5], jnp.float32)
    if hyperparameters == "python floats":
        states, updates = _steps(particle_swarm(n_particles=4), params, 2, value_fn=sphere)
    else:

        @jax.jit
        def run(w, c1, c2, init_scale, clamp, bounds):
            tx = particle_swarm(4, w, c1, c2, init_scale, velocity_clamp=clamp, bounds=bounds)
            return _steps(tx, params, 2, value_fn=sphere)

        f = np.float64
        states, updates = run(f(0.7), f(1.5), f(1.5), f(0.5), (f(-0.3), f(0.3)), (f(-2.0), f(2.0)))
        # the clamp and the bounds hold
        assert np.all(np.abs(np.asarray(states[-1].velocities)) <= 0.3)
        assert np.all(np.abs(np.asarray(states[-1].positions)) <= 2.0)
    assert updates.dtype == jnp.float32
    for t, state in enumerate(states):
        for name, leaf in state._asdict().items():
            if name != "rng_key":
                assert leaf.dtype == jnp.float32, (t, name, leaf.dtype)


def test_an_integer_interval_beyond_int32_becomes_bounds_in_the_swarms_dtype():
    # velocity_clamp and bounds are pairs of numbers: Python ints past int32 are float32
    # bounds of a float32 swarm (2**40 is exact), not an int32 overflow.
    big = 2**40
    tx = particle_swarm(n_particles=3, velocity_clamp=(-big, big), bounds=(-big, big))
    states, updates = _steps(tx, jnp.zeros(2), 2, value_fn=sphere)
    assert updates.dtype == jnp.float32
    for state in states:
        assert state.positions.dtype == state.velocities.dtype == jnp.float32
        assert np.all(np.abs(np.asarray(state.velocities)) <= big)
        assert np.all(np.abs(np.asarray(state.positions)) <= big)
    assert np.max(np.abs(np.asarray(states[0].velocities))) > 2**30  # uniform in the clamp
