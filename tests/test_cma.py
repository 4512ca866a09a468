"""cma_es and sep_cma_es: cma 4.5.0's CMA-ES given the same draws and population.

- recorded: every case of tests/reference/record_cma.py (full and separable covariance,
  default and given population sizes, active and not, a 40-D case where cma refreshes the
  eigendecomposition every other generation): gradtx samples from cma's normal draws, the
  recorded population is fed to ``tell``, and each generation's mean, sigma, p_sigma, p_c
  and C equal cma's to 1e-10 (float64); live: a fresh cma run, replayed;
- the strategy parameters equal cma's (live); a 5-D ellipsoid solved to 1e-8;
- the shell: params move to the mean, one compile, NaN losses rank last and are counted,
  bad arguments refused when built.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import record_cma
from reference.recording import DATA

import gradtx
from gradtx._cma import cma_es, parameters, sep_cma_es

RECORDED = json.loads((DATA / "cma.json").read_text())["cases"]
KEYS = ("mean", "sigma", "p_sigma", "p_c", "C")


def build(case):
    make = sep_cma_es if case["separable"] else cma_es
    return make(sigma0=case["sigma0"], popsize=case["popsize"], active=case["active"])


def replay(case, recorded):
    """gradtx's ask from cma's draws, then tell with cma's population; the errors per key."""
    tx = build(case)
    f = record_cma.FUNCTIONS[case["function"]]

    @jax.jit
    def generations(state, z, x_cma):  # one compile: every generation in one scan
        def generation(state, inputs):
            z, x_cma = inputs
            state, x = tx.ask(state, z)
            state = tx.tell(state, x_cma, jax.vmap(lambda v: f(v, jnp))(x_cma))
            C = state.scaling**2 if case["separable"] else state.C
            return state, dict(x=x, mean=state.mean, sigma=state.sigma, p_sigma=state.p_sigma,
                               p_c=state.p_c, C=C)  # fmt: skip

        return jax.lax.scan(generation, state, (z, x_cma))[1]

    state = tx.init(jnp.asarray(record_cma.initial_mean(case["n"])))
    mine = generations(state, jnp.asarray(recorded["z"]), jnp.asarray(recorded["x"]))
    errors = {}
    for key, ref in ((k, recorded[k]) for k in ("x", *KEYS)):
        scale = np.maximum(1.0, np.max(np.abs(ref.reshape(len(ref), -1)), axis=1))
        error = np.max(np.abs(np.asarray(mine[key]) - ref).reshape(len(ref), -1), axis=1)
        errors[key] = float(np.max(error / scale))  # relative to each generation's largest
    return errors


def check(case, errors):
    assert max(errors[k] for k in KEYS) < 1e-10, errors
    # The 40-D case samples in a near-degenerate eigenspace of C, where numpy's and
    # XLA's eigh choose different bases: B D z differs in the 10th digit, B D^2 B^T does not.
    assert errors["x"] < (1e-8 if case["n"] > 10 else 1e-12), errors


@pytest.mark.parametrize("case", RECORDED, ids=lambda c: f"{c['index']}")
def test_matches_recorded_cma(case, x64):
    data = np.load(DATA / "cma.npz")
    i = case["index"]
    recorded = {k: data[f"{i}/{k}"] for k in ("z", "x", *KEYS)}
    check(case, replay(case, recorded))


@pytest.mark.parametrize("index", [0, 4])
def test_matches_live_cma(index, x64):
    pytest.importorskip("cma")
    case = RECORDED[index]
    check(case, replay(case, record_cma.run_cma(case, seed=1000 + index)))


@pytest.mark.parametrize(
    ("n", "popsize", "separable"),
    [
        (2, None, False), (10, None, False), (10, 11, False), (100, None, True), (299, 40, True),
        # popsize 62 at n = 2 and 97 at n = 3 are the first whose full-covariance c_mu reaches
        # 1 - c_1: cma's first pass zeroes the negative weights, also for CMA_diagonal
        (2, 61, True), (2, 62, True), (3, 97, True), (2, 62, False),
        # The other caps and table edges (tests/MUTATION.md, `_cma`):
        (2, 64, False),  # c_mu = 1 - c_1: the positive-definiteness cap leaves no negative weight
        (2, 20, False),  # the positive-definiteness cap binds, the others not
        (3, 80, True),  # separable c_mu = 1 - c_1 (the full one does not reach it at popsize 80)
        (101, None, True),  # E||N(0, I)|| from cma's expansion, exact up to n = 100 only
        (2, 3, False),  # popsize 3: mu = 1, then a zero weight, then the one negative weight
    ],
)  # fmt: skip
def test_parameters_are_cma_defaults(n, popsize, separable):
    cma = pytest.importorskip("cma")
    options = {"verbose": -9, "CMA_diagonal": separable}
    if popsize is not None:
        options["popsize"] = popsize
    es = cma.CMAEvolutionStrategy(np.zeros(n), 1.0, options)
    p = parameters(n, popsize, separable, active=True)
    sp = es.sp
    expected = (sp.cc_sep, sp.c1_sep, sp.cmu_sep) if separable else (sp.cc, sp.c1, sp.cmu)
    np.testing.assert_allclose((p.c_c, p.c_1, p.c_mu), expected, rtol=1e-14)
    np.testing.assert_allclose(p.weights, np.asarray(sp.weights), rtol=1e-13, atol=1e-16)
    assert (p.popsize, p.mu) == (sp.popsize, sp.weights.mu)
    np.testing.assert_allclose(p.mueff, sp.weights.mueff, rtol=1e-14)
    s = es.adapt_sigma
    np.testing.assert_allclose((p.c_sigma, p.d_sigma), (s.cs, s.damps), rtol=1e-14)
    np.testing.assert_allclose(p.chi_n, cma.utilities.math.Mh.chiN(n), rtol=1e-13)
    if not separable:
        np.testing.assert_allclose(p.eigen_gap, es.sm.lazy_update_gap, rtol=1e-14)


def test_large_populations_drop_the_negative_weights_as_cma_does():
    # cma 4.5.0's weights (the live test above): from the population where the
    # full-covariance c_mu reaches 1 - c_1, sep-CMA-ES too recombines the best half only.
    assert np.all(parameters(2, 61, True, active=True).weights[31:] < 0)
    for n, popsize in ((2, 62), (3, 97)):
        weights = parameters(n, popsize, True, active=True).weights
        assert np.all(weights[popsize // 2 :] == 0) and np.all(weights[: popsize // 2] > 0)
        np.testing.assert_array_equal(weights, parameters(n, popsize, True, active=False).weights)


def ellipsoid(params):
    x = params["x"]
    return jnp.sum(10.0 ** (6.0 * jnp.arange(5) / 4) * x**2)


@pytest.mark.parametrize("make", [cma_es, sep_cma_es])
def test_solves_a_5d_ellipsoid(make, x64):
    tx = make(sigma0=1.0, key=3)
    params = {"x": jnp.full(5, 1.0)}

    @jax.jit
    def run(params):
        def step(carry, _):
            params, state = carry
            updates, state = tx.update(None, state, params, value_fn=ellipsoid)
            return (gradtx.apply_updates(params, updates), state), None

        (params, state), _ = jax.lax.scan(step, (params, tx.init(params)), length=400)
        return params, state

    params, state = run(params)
    # cma needs about 250 generations (8 members) on this ellipsoid; the mean is at 1e-8.
    assert ellipsoid(params) < 1e-8
    np.testing.assert_allclose(params["x"], state.mean, rtol=1e-12, atol=1e-15)


def test_update_moves_params_to_the_mean_and_compiles_once():
    tx = cma_es(sigma0=0.3, popsize=6)
    params = {"a": jnp.ones(2), "b": jnp.zeros(())}
    state = tx.init(params)
    traces = []

    @jax.jit
    def step(params, state):
        traces.append(1)
        updates, state = tx.update(None, state, params, value_fn=lambda p: p["a"] @ p["a"])
        return gradtx.apply_updates(params, updates), state

    for _ in range(3):
        params, state = step(params, state)
    assert len(traces) == 1
    flat = jnp.concatenate([params["a"], params["b"][None]])
    np.testing.assert_allclose(flat, state.mean, rtol=1e-6)
    assert int(state.count) == 3


@pytest.mark.parametrize("make", [cma_es, sep_cma_es])
def test_nan_losses_rank_last_and_are_counted(make):
    tx = make(sigma0=0.5, popsize=8)
    params = jnp.zeros(3)
    state = tx.init(params)

    def loss(x):  # NaN on half of the space: the mean must stay in the other half
        return jnp.where(x[0] < 0, jnp.nan, jnp.sum((x - 1.0) ** 2))

    update = jax.jit(lambda s, p: tx.update(None, s, p, value_fn=loss))
    for _ in range(5):
        updates, state = update(state, params)
        params = params + updates
    assert np.all(np.isfinite(params)) and np.all(np.isfinite(state.p_c))
    assert int(state.nonfinite) > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sigma0": 0.0}, r"cma_es\(sigma0=0.0\)"),
        ({"sigma0": -1.0}, r"cma_es\(sigma0=-1.0\)"),
        ({"popsize": 2}, r"cma_es\(popsize=2\)"),
        ({"popsize": 4.5}, r"cma_es\(popsize=4.5\)"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        cma_es(**kwargs)
    with pytest.raises(ValueError, match=message.replace("cma_es", "sep_cma_es")):
        sep_cma_es(**kwargs)


def test_missing_value_fn_names_it():
    tx = sep_cma_es()
    params = jnp.zeros(2)
    with pytest.raises(ValueError, match="value_fn="):
        tx.update(None, tx.init(params), params)
