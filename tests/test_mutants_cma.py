"""Tests that kill the mutants of gradtx/_cma.py the other test files let survive.

The verdicts, mutant by mutant: tests/MUTATION.md (issue 20). The references are cma 4.5.0
(the strategy parameters where its caps bind: cases of tests/test_cma.py's live comparison; its
covariance made symmetric at each eigendecomposition) and a NumPy float64 generation written
from cma_es's and sep_cma_es's docstrings (with cma's ``(|C^(-1/2) y| + 1e-9)^2`` in the
rescaling of the negative weights), fed populations chosen to put h_sigma on both sides of its
threshold (and exactly on it) and the step-size change past its clip.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


def _make(separable, **options):
    return (gradtx.sep_cma_es if separable else gradtx.cma_es)(**options)


def docstring_generation(tx, state, population, values):
    """One ``tell`` in NumPy float64, as the docstring of cma_es / sep_cma_es writes it."""
    separable = hasattr(state, "scaling")
    m, sigma, ps, pc = (np.asarray(a, np.float64) for a in state[:4])
    n = m.shape[0]
    p = tx.parameters(n)
    w, t = p.weights, int(state.count) + 1
    x = np.asarray(population, np.float64)[np.argsort(np.asarray(values), kind="stable")]
    new = w[: p.mu] @ x[: p.mu]
    if separable:
        s = np.asarray(state.scaling, np.float64)
        step, y = (new - m) / (sigma * s), (x - m) / (sigma * s)
        whitened = step
    else:
        B, D = np.asarray(state.B, np.float64), np.asarray(state.D, np.float64)
        step, y = (new - m) / sigma, (x - m) / sigma
        whitened = B @ ((B.T @ step) / D)  # C^(-1/2) (m' - m) / sigma
    ps = (1 - p.c_sigma) * ps + math.sqrt(p.c_sigma * (2 - p.c_sigma) * p.mueff) * whitened
    h = float(ps @ ps / (1 - (1 - p.c_sigma) ** (2 * t)) / n - 1 < 1 + 4 / (n + 1))
    pc = (1 - p.c_c) * pc + h * math.sqrt(p.c_c * (2 - p.c_c) * p.mueff) * step
    c_1a = p.c_1 * (1 - (1 - h) * p.c_c * (2 - p.c_c))
    out = {"mean": new, "p_sigma": ps, "p_c": pc, "h": h}
    if separable:
        rate = c_1a * (pc**2 - 1) + p.c_mu * w @ (y**2 - 1)
        out["scaling"] = s * np.exp(math.log(2) / 2 * rate)
    else:
        norms = np.sum(((y @ B) / D) ** 2, axis=1)  # |C^(-1/2) y_i|^2
        rescaled = np.where(w < 0, w * n / (np.sqrt(norms) + 1e-9) ** 2, w)
        C = np.asarray(state.C, np.float64)
        out["C"] = (
            (1 - c_1a - p.c_mu * w.sum()) * C
            + p.c_1 * np.outer(pc, pc)
            + p.c_mu * (y.T * rescaled) @ y
        )
    change = p.c_sigma / p.d_sigma * (np.linalg.norm(ps) / p.chi_n - 1)
    out["sigma"] = sigma * np.exp(np.clip(change, -1, 1))
    out["clipped"] = change > 1
    return out


def _populations(state, members, lengths, rng):
    """Per length a: the best half at ``m + sigma (a u + 0.05 z)``, the worst half within
    1e-4 sigma of the mean (where cma's +1e-9 in the rescaling is visible); losses in row order."""
    m, sigma = np.asarray(state.mean), float(state.sigma)
    u = np.linspace(1.0, -0.5, m.shape[0])
    u /= np.linalg.norm(u)
    pops = []
    for a in lengths:
        z = rng.normal(size=(members, m.shape[0]))
        best = m + sigma * (a * u + 0.05 * z[: members // 2])
        pops.append(np.concatenate([best, m + sigma * 1e-4 * z[members // 2 :]]))
    return np.stack(pops)


@pytest.mark.parametrize("separable", [False, True])
def test_generations_one_and_two_follow_the_docstring_on_both_sides_of_h_sigma(separable, x64):
    # h_sigma's threshold (|p_sigma|^2 / (1 - (1 - c_sigma)^(2t)) / n - 1 < 1 + 4 / (n + 1)) at
    # t = 1 and t = 2, lengths from the mean's shift of 0 to 150 sigma: the first step's h
    # switches within the grid, and the largest lengths push c_sigma / d_sigma (|p_sigma| / chi_n
    # - 1) past the clip at 1. Every state array against the NumPy generation, per population.
    rng = np.random.default_rng(7)
    tx = _make(separable, sigma0=0.5, popsize=8)
    n = 3
    state = tx.init(jnp.asarray([0.1, -0.2, 0.3]))
    lengths = np.concatenate([np.linspace(0.0, 3.0, 121), [4.0, 6.0, 10.0, 40.0, 150.0]])
    tell = jax.jit(jax.vmap(tx.tell, in_axes=(None, 0, None)))
    values = jnp.arange(8.0)
    seen_h, seen_clip = set(), set()
    for generation in range(2):
        pops = _populations(state, 8, lengths, rng)
        told = tell(state, jnp.asarray(pops), values)
        for k, pop in enumerate(pops):
            expected = docstring_generation(tx, state, pop, values)
            seen_h.add((generation, expected["h"]))
            seen_clip.add(bool(expected["clipped"]))
            for key in ("mean", "sigma", "p_sigma", "p_c", "scaling" if separable else "C"):
                got = np.asarray(getattr(told, key)[k])
                scale = max(1.0, float(np.max(np.abs(expected[key]))))
                where = f"generation {generation + 1}, a={lengths[k]}: {key}"
                np.testing.assert_allclose(
                    got, expected[key], rtol=1e-9, atol=1e-12 * scale, err_msg=where
                )
        # Generation 2 starts from the state a moderate step (h = 1) left, eigendecomposed.
        state = jax.tree.map(lambda leaf: leaf[20], told)
        state, _ = tx.ask(state, jnp.zeros((8, n)))
    assert seen_h == {(0, 0.0), (0, 1.0), (1, 0.0), (1, 1.0)} and seen_clip == {False, True}


def test_h_sigma_is_zero_exactly_at_its_threshold(x64):
    # n = 3, t = 1, c_sigma = 0.5 (the cap, at the default popsize 7): with every member at
    # the mean, p_sigma = 0.5 * the state's, (2, r, 0) with fl(r^2) = 2.75, and the test
    # 6.75 / (1 - 0.5^2) / 3 - 1 < 1 + 4 / 4 is 2 < 2, exact in float64: h_sigma = 0 (cma's
    # strict <), and 1 a bit below. h shows in the scaling through c_1a.
    tx = gradtx.sep_cma_es(sigma0=0.5)
    state = tx.init(jnp.zeros(3))
    assert tx.parameters(3).c_sigma == 0.5 and tx.parameters(3).popsize == 7
    values = jnp.arange(7.0)
    for r, h in ((1.6583123951777, 0.0), (1.658312395177, 1.0)):
        start = state._replace(p_sigma=jnp.asarray([4.0, 2 * r, 0.0]))
        told = tx.tell(start, jnp.zeros((7, 3)), values)
        expected = docstring_generation(tx, start, np.zeros((7, 3)), values)
        assert expected["h"] == h
        np.testing.assert_array_equal(told.p_sigma, [2.0, r, 0.0])
        np.testing.assert_allclose(told.scaling, expected["scaling"], rtol=1e-13)


def _sphere(params):
    return sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(params))


# One compile per state layout: the transform is traced (its numbers are leaves).
_update = jax.jit(lambda tx, state, params: tx.update(None, state, params, value_fn=_sphere))


@pytest.mark.parametrize("separable", [False, True])
def test_popsize_3_is_accepted_and_one_element_is_searched(separable):
    # The docstring: popsize >= 3; an empty search space is refused when init is called.
    tx = _make(separable, popsize=3, sigma0=0.5)
    params = jnp.ones(1)
    updates, state = _update(tx, tx.init(params), params)
    assert updates.shape == (1,) and np.isfinite(float(updates[0])) and float(updates[0]) != 0
    assert int(state.count) == 1
    name = "sep_cma_es" if separable else "cma_es"
    with pytest.raises(ValueError, match=rf"^{name}\.init: the params have no elements to search"):
        tx.init({"a": jnp.zeros(0), "b": jnp.zeros((2, 0))})


@pytest.mark.parametrize("separable", [False, True])
def test_float32_params_under_x64_keep_a_float32_search(separable, x64):
    # as_vector: the search runs in the params' compute dtype, float32 here, whatever the
    # default float; the counters are int32 (zero_count). Two steps, so that the first
    # step's outputs are fed back.
    tx = _make(separable, sigma0=0.5, popsize=6)
    params = jnp.asarray([0.5, -1.0, 2.0], jnp.float32)
    states = [tx.init(params)]
    for _ in range(2):
        updates, state = _update(tx, states[-1], params)
        params = params + updates
        states.append(state)
        assert updates.dtype == jnp.float32
    for state in states:  # init's too: a scan's carry may not change type
        for name, leaf in state._asdict().items():
            if name == "rng_key":
                continue
            integer = name in ("count", "eigen_count", "nonfinite")
            assert leaf.dtype == (jnp.int32 if integer else jnp.float32), (name, leaf.dtype)


@pytest.mark.parametrize("separable", [False, True])
def test_population_value_fn_scores_and_every_nonfinite_loss_is_counted(separable):
    # Three generations of 8, each with two NaN losses and one inf: state.nonfinite is 9;
    # the population is scored by population_value_fn alone (value_fn not given).
    tx = _make(separable, sigma0=0.5, popsize=8)
    params = {"w": jnp.zeros(2)}

    def losses(stacked):
        values = jnp.sum((stacked["w"] - 1.0) ** 2, axis=1)
        return values.at[jnp.asarray([1, 4])].set(jnp.nan).at[6].set(jnp.inf)

    update = jax.jit(
        lambda state, params: tx.update(None, state, params, population_value_fn=losses)
    )
    state = tx.init(params)
    for _ in range(3):
        updates, state = update(state, params)
        params = gradtx.apply_updates(params, updates)
    assert int(state.nonfinite) == 9 and int(state.count) == 3
    np.testing.assert_allclose(params["w"], state.mean, rtol=1e-6)


@pytest.mark.parametrize("separable", [False, True])
def test_the_key_seeds_the_states_prng_key(separable):
    # key: an integer seed or a JAX PRNG key, the key every generation's draws are split from.
    def key_data(key):
        tx = _make(separable, sigma0=0.5, key=key)
        return jax.random.key_data(tx.init(jnp.zeros(3)).rng_key)

    np.testing.assert_array_equal(key_data(1), jax.random.key_data(jax.random.key(1)))
    np.testing.assert_array_equal(key_data(jax.random.key(1)), key_data(1))
    assert not np.array_equal(key_data(1), key_data(2))


def test_an_eigendecomposition_leaves_c_exactly_symmetric_as_cma(x64):
    # cma's _decompose_C makes C symmetric, (C + C^T) / 2, before eigh; the rank-mu sum of a
    # tell leaves it asymmetric in the last bits. After the next ask's refresh C is symmetric
    # and B diag(D^2) B^T is C.
    tx = gradtx.cma_es(sigma0=0.7, popsize=9)
    rng = np.random.default_rng(0)
    f = lambda v: jnp.sum((v - 1) ** 2 * jnp.arange(1, 7))

    @jax.jit
    def generations(state, z):
        for k in range(2):
            state, x = tx.ask(state, z[k])
            state = tx.tell(state, x, jax.vmap(f)(x))
        return state, tx.ask(state, z[2])[0]

    told, state = generations(tx.init(jnp.asarray(rng.normal(size=6))), rng.normal(size=(3, 9, 6)))
    assert not np.array_equal(told.C, told.C.T)  # the case shows something
    assert int(state.eigen_count) == int(state.count) == 2
    np.testing.assert_array_equal(state.C, state.C.T)
    np.testing.assert_allclose((state.B * state.D**2) @ state.B.T, state.C, rtol=0, atol=1e-14)
