"""Muon: Newton-Schulz against a NumPy oracle, muon against optax.contrib, torch.optim.Muon."""

from __future__ import annotations

import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest
from reference import record_matrix
import replay

import gradtx
from gradtx import compat, MuonDimensionNumbers

# -- Newton-Schulz against a naive oracle ---------------------------------------------------


def newton_schulz_oracle(x, coeffs, steps, preconditioning="frobenius", eps=1e-8):
    """The iteration as Jordan writes it, for one matrix, in float64 NumPy."""
    x = np.array(x, np.float64)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    rows = [coeffs] * steps if np.ndim(coeffs) == 1 else list(coeffs)
    if preconditioning == "frobenius":
        x = x / (np.sqrt(np.sum(x * x)) + eps)
    if preconditioning == "spectral":
        x = x / (np.linalg.svd(x, compute_uv=False)[0] + eps)
    for k, (a, b, c) in enumerate(rows):
        gram = x @ x.T
        if k == 0 and preconditioning == "aol":
            d = 1 / np.sqrt(np.maximum(np.abs(gram).sum(axis=1), eps))
            x, gram = d[:, None] * x, d[:, None] * gram * d[None, :]
        if k == 0 and preconditioning == "schatten":
            scale = np.sqrt(np.maximum(np.sqrt(np.sum(gram**2)), eps))
            x, gram = x / scale, gram / scale**2
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


DION = gradtx._matrix.NS_COEFFS_PRESETS["dion"]
ORACLE_CASES = [
    ((7, 4), gradtx._matrix.NS_COEFFS, 5, "frobenius"),
    ((4, 7), gradtx._matrix.NS_COEFFS, 5, "spectral"),
    ((5, 5), gradtx._matrix.NS_COEFFS, 3, "aol"),
    ((3, 6), DION, 5, "schatten"),
    ((6, 3), ((3.0, -3.2, 1.2), (2.0, -1.5, 0.5)), 2, "frobenius"),
]


@pytest.mark.parametrize(("shape", "coeffs", "steps", "preconditioning"), ORACLE_CASES)
def test_newton_schulz_matches_the_oracle(shape, coeffs, steps, preconditioning, x64):
    x = np.random.default_rng(0).normal(size=shape)
    ours = gradtx.orthogonalize_via_newton_schulz(x, coeffs, steps, preconditioning)
    expected = newton_schulz_oracle(x, coeffs, steps, preconditioning)
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)
    assert ours.dtype == jnp.float64


def test_newton_schulz_orthogonalises():
    # The classic cubic (1.5, -0.5, 0) converges to U V^T: singular values 0.5..1 get there
    # in 12 steps.
    rng = np.random.default_rng(1)
    u, _ = np.linalg.qr(rng.normal(size=(6, 4)))
    v, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    x = u @ np.diag([1.0, 0.8, 0.6, 0.5]) @ v.T
    with jax.enable_x64(True):
        o = gradtx.orthogonalize_via_newton_schulz(x, (1.5, -0.5, 0.0), 12)
    np.testing.assert_allclose(o, u @ v.T, atol=1e-9)


def test_rank3_leaf_is_orthogonalised_slice_by_slice_in_its_axes(x64):
    # Axis 1 is the batch; rows are axis 2, columns axes (0, 3) flattened in that order.
    x = np.random.default_rng(2).normal(size=(2, 3, 4, 5))
    spec = MuonDimensionNumbers(reduction_axis=2, output_axis=(0, 3))
    ours = gradtx.orthogonalize_via_newton_schulz(x, dimension_numbers=spec)
    coeffs = gradtx._matrix.NS_COEFFS
    for i in range(3):
        matrix = x[:, i].transpose(1, 0, 2).reshape(4, 10)
        expected = newton_schulz_oracle(matrix, coeffs, 5).reshape(4, 2, 5).transpose(1, 0, 2)
        np.testing.assert_allclose(ours[:, i], expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("preconditioning", gradtx._matrix.PRECONDITIONINGS)
def test_newton_schulz_equals_optax_bit_for_bit_under_jit(preconditioning):
    x = jnp.asarray(np.random.default_rng(3).normal(size=(9, 6)), jnp.float32)
    coeffs = jnp.asarray(gradtx._matrix.NS_COEFFS)
    ours = jax.jit(gradtx.orthogonalize_via_newton_schulz, static_argnums=(2, 3))
    theirs = jax.jit(optax.contrib._muon.orthogonalize_via_newton_schulz, static_argnums=(2, 3))
    np.testing.assert_array_equal(
        ours(x, coeffs, 5, preconditioning), theirs(x, coeffs, 5, preconditioning)
    )


# -- muon against optax.contrib.muon ----------------------------------------------------------

STEPS = 100
# Muon neither factors nor blocks: a small tall matrix takes the transposed path.
SHAPES = {"m": (24, 17), "v": (7,), "s": (), "k": (2, 6, 5)}


def _problem_params(dtype):
    rng = np.random.default_rng(4)
    return {k: jnp.asarray(rng.normal(size=s), dtype) for k, s in SHAPES.items()}


def _gradient(params, step):
    """A drifting, nonconvex separable loss; zero at t % 17 == 0, sign-flipped at t % 11 == 0."""
    factor = jnp.where(step % 17 == 0, 0.0, jnp.where(step % 11 == 0, -1.0, 1.0))
    return {
        k: (factor * (2 * p + 1.5 * jnp.cos(3 * p) + 0.4 * jnp.sin(0.06 * step + p))).astype(
            p.dtype
        )
        for k, p in params.items()
    }


@functools.partial(jax.jit, static_argnums=0)
def _trajectory(tx, params):
    def body(carry, step):
        params, state = carry
        updates, state = tx.update(_gradient(params, step), state, params)
        params = jax.tree.map(lambda p, u: p + u, params, updates)
        return (params, state), params

    return jax.lax.scan(body, (params, tx.init(params)), jnp.arange(1, STEPS + 1))[1]


def _dims(module):
    """Dimension numbers for the problem's leaves in optax's or gradtx's type."""
    spec = module.MuonDimensionNumbers
    return {"m": spec(1, 0), "v": None, "s": None, "k": spec(reduction_axis=1, output_axis=2)}


def _gradtx_dims(params):
    return _dims(gradtx)


def _optax_dims(params):
    return _dims(optax.contrib)


# Every argument of optax.contrib.muon, in four configurations.
MUON_CASES = {
    "defaults": ({"learning_rate": 0.02}, {}),
    "options": (
        dict(
            learning_rate=0.01,
            beta=0.9,
            eps=1e-6,
            weight_decay=0.1,
            weight_decay_mask={"m": True, "v": False, "s": True, "k": True},
            nesterov=False,
            adaptive=True,
            preconditioning="spectral",
            adam_b1=0.8,
            adam_b2=0.99,
            adam_eps_root=1e-8,
            adam_weight_decay=0.01,
        ),
        {},
    ),
    "presets": (
        dict(
            learning_rate=0.02,
            ns_coeffs="dion",
            preconditioning="aol",
            consistent_rms=0.2,
            adam_learning_rate=optax.exponential_decay(0.01, 10, 0.9),
        ),
        {},
    ),
    "dimension_numbers": (
        dict(
            learning_rate=optax.exponential_decay(0.02, 20, 0.8),
            ns_coeffs=((3.0, -3.2, 1.2), (3.4445, -4.775, 2.0315), (2.0, -1.5, 0.5)),
            ns_steps=4,
            preconditioning="schatten",
        ),
        {"muon_weight_dimension_numbers": (_gradtx_dims(None), _dims(optax.contrib))},
    ),
    "callable_dimension_numbers": (
        dict(learning_rate=0.02, ns_steps=3, weight_decay=0.05, beta=0.8),
        {"muon_weight_dimension_numbers": (_gradtx_dims, _optax_dims)},
    ),
}


def _build(case):
    kwargs, paired = MUON_CASES[case]
    ours = {k: v[0] for k, v in paired.items()}
    theirs = {k: v[1] for k, v in paired.items()}
    return gradtx.muon(**kwargs, **ours), optax.contrib.muon(**kwargs, **theirs)


# float64 checks every case's maths; float32 the rounding of the defaults and the options.
OPTAX_RUNS = [(case, "float64") for case in MUON_CASES] + [
    ("defaults", "float32"),
    ("options", "float32"),
]


@pytest.mark.parametrize(("case", "dtype"), OPTAX_RUNS, ids=["-".join(r) for r in OPTAX_RUNS])
def test_muon_matches_optax(case, dtype):
    rtol = {"float32": 1e-6, "float64": 1e-10}[dtype]
    with jax.enable_x64(dtype == "float64"):
        params = _problem_params(dtype)
        ours, theirs = _build(case)
        got, expected = _trajectory(ours, params), _trajectory(theirs, params)
    for leaf in SHAPES:
        got_leaf, expected_leaf = np.asarray(got[leaf]), np.asarray(expected[leaf])
        scale = np.max(np.abs(expected_leaf))
        np.testing.assert_allclose(
            got_leaf, expected_leaf, rtol=rtol, atol=rtol * scale, err_msg=leaf
        )
        assert np.max(np.abs(expected_leaf[-1] - np.asarray(params[leaf]))) > 0.1  # it moves


def test_mu_dtype_stores_the_momentum_in_it_after_a_float32_step():
    # optax forms beta * mu in bfloat16 (a Python float times a bfloat16 array) before
    # adding (1 - beta) g in float32; gradtx forms the whole average in float32.
    params = {"m": jnp.asarray(np.random.default_rng(6).normal(size=(5, 4)), jnp.float32)}
    tx = gradtx.scale_by_muon(mu_dtype=jnp.bfloat16, beta=0.9)
    state = tx.update(params, tx.init(params))[1]
    assert state.mu["m"].dtype == jnp.bfloat16
    g = {"m": 0.5 * params["m"] ** 2}
    new_mu = tx.update(g, state)[1].mu["m"]
    expected = 0.1 * g["m"] + 0.9 * state.mu["m"].astype(jnp.float32)
    np.testing.assert_array_equal(new_mu, expected.astype(jnp.bfloat16))
    # One step from zero momentum involves no bfloat16 product: it equals optax's.
    ours, theirs = (
        gradtx.muon(0.02, mu_dtype=jnp.bfloat16),
        optax.contrib.muon(0.02, mu_dtype=jnp.bfloat16),
    )
    step_ours = jax.jit(ours.update)(params, ours.init(params), params)[0]
    step_theirs = jax.jit(theirs.update)(params, theirs.init(params), params)[0]
    np.testing.assert_allclose(step_ours["m"], step_theirs["m"], rtol=1e-6)


# -- state, structure, learning rate ----------------------------------------------------------


def test_state_holds_one_momentum_buffer_per_matrix_and_adam_for_the_rest():
    params = _problem_params(jnp.float32)
    tx = gradtx.muon(0.02)
    state = tx.init(params)
    groups = gradtx.tree_get(state, "inner_states")
    muon_state = gradtx.tree_get(groups["muon"], "mu")
    # One buffer, for the one rank-2 leaf; the others are MaskedNodes there.
    assert [x.shape for x in jax.tree.leaves(muon_state)] == [SHAPES["m"]]
    adam_leaves = jax.tree.leaves(gradtx.tree_get(groups["adam"], "mu"))
    assert sorted(x.shape for x in adam_leaves) == sorted([(7,), (), (2, 6, 5)])
    muon_floats = sum(x.size for x in jax.tree.leaves(groups["muon"]) if x.ndim)
    assert muon_floats == np.prod(SHAPES["m"])


def test_learning_rate_is_readable_and_settable():
    params = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
    tx = gradtx.muon(gradtx.exponential_decay(0.1, 1, 0.5))
    state = tx.init(params)
    step = jax.jit(tx.update)
    for expected in (0.1, 0.05):
        _, state = step(params, state, params)
        assert float(gradtx.tree_get(state, "learning_rate")) == pytest.approx(expected)
    changed = gradtx.tree_set(gradtx.muon(0.1), learning_rate=0.2)
    assert gradtx.tree_get(changed, "learning_rate") == 0.2
    # With a separate Adam rate, each group has its own.
    two = gradtx.muon(0.1, adam_learning_rate=0.01)
    rates = gradtx.tree_get_all_with_path(two.init(params), "learning_rate")
    assert sorted(float(r) for _, r in rates) == pytest.approx([0.01, 0.1])


def test_rank3_leaves_go_to_adam_without_dimension_numbers_as_in_optax():
    labels = gradtx._matrix.MuonLabels()(_problem_params(jnp.float32))
    assert labels == {"m": "muon", "v": "adam", "s": "adam", "k": "adam"}
    given = gradtx._matrix.MuonLabels(weight_dimension_numbers=_gradtx_dims(None))
    assert given(_problem_params(jnp.float32))["k"] == "muon"


def test_optax_dimension_numbers_are_accepted():
    spec = optax.contrib.MuonDimensionNumbers(reduction_axis=(0,), output_axis=(1, 2))
    tx = gradtx.scale_by_muon(weight_dimension_numbers=spec)
    x = {"k": jnp.ones((3, 4, 2))}
    assert tx.update(x, tx.init(x))[0]["k"].shape == (3, 4, 2)
    assert tx == gradtx.scale_by_muon(
        weight_dimension_numbers=MuonDimensionNumbers(reduction_axis=0, output_axis=(1, 2))
    )


# -- bad input ------------------------------------------------------------------------------------


def test_scale_by_muon_refuses_a_vector_naming_its_path():
    tx = gradtx.scale_by_muon()
    params = {"layer": {"kernel": jnp.ones((3, 4)), "bias": jnp.ones(4)}}
    with pytest.raises(
        ValueError, match=r"scale_by_muon: the leaf at \['layer'\]\['bias'\] has shape \(4,\)"
    ):
        tx.init(params)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (MuonDimensionNumbers(0, 3), r"output_axis=\(3,\) names axes \[3\] that it does not have"),
        (MuonDimensionNumbers(0, (1, 0)), r"must be distinct"),
    ],
)
def test_bad_dimension_numbers_are_refused_naming_the_leaf(spec, message):
    params = {"conv": jnp.ones((3, 3, 4)), "b": jnp.ones(4)}
    tx = gradtx.muon(0.1, muon_weight_dimension_numbers={"conv": spec, "b": None})
    with pytest.raises(
        ValueError, match=r"the leaf at \['conv'\] has shape \(3, 3, 4\).*" + message
    ):
        tx.init(params)


def test_dimension_numbers_on_a_vector_are_refused_naming_the_leaf():
    # optax labels the vector 'muon' and fails inside the reshape without naming it.
    tx = gradtx.muon(
        0.1,
        muon_weight_dimension_numbers={"w": MuonDimensionNumbers(), "b": MuonDimensionNumbers()},
    )
    with pytest.raises(ValueError, match=r"the leaf at \['b'\] has shape \(4,\).*rank >= 2"):
        tx.init({"w": jnp.ones((4, 4)), "b": jnp.ones(4)})


def test_dimension_numbers_of_another_structure_are_refused():
    tx = gradtx.scale_by_muon(weight_dimension_numbers={"x": MuonDimensionNumbers()})
    with pytest.raises(ValueError, match=r"weight_dimension_numbers does not match the params"):
        tx.init({"w": jnp.ones((4, 4))})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ns_coeffs": (1.0, 2.0)}, r"scale_by_muon\(ns_coeffs=\(1.0, 2.0\)\): ns_coeffs must be"),
        ({"ns_coeffs": DION, "ns_steps": 3}, r"scale_by_muon\(ns_steps=3\): ns_coeffs has 5 rows"),
        ({"preconditioning": "svd"}, r"preconditioning='svd'\): preconditioning must be one of"),
        ({"beta": 1.0}, r"scale_by_muon\(beta=1.0\): beta must be in \[0, 1\)"),
        ({"eps": 0.0}, r"scale_by_muon\(eps=0.0\).*0 / 0"),
        ({"ns_steps": 2.5}, r"scale_by_muon\(ns_steps=2.5\): ns_steps must be a whole number"),
    ],
)
def test_scale_by_muon_validates_its_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gradtx.scale_by_muon(**kwargs)


def test_muon_refuses_an_unknown_preset():
    with pytest.raises(ValueError, match=r"muon\(ns_coeffs='polar'\): a preset must be one of"):
        gradtx.muon(0.1, ns_coeffs="polar")


def test_newton_schulz_needs_a_matrix_or_dimension_numbers():
    with pytest.raises(ValueError, match=r"has shape \(2, 3, 4\): Newton-Schulz orthogonalises"):
        gradtx.orthogonalize_via_newton_schulz(jnp.ones((2, 3, 4)))


def test_zero_gradient_gives_a_zero_step():
    params = {"w": jnp.ones((3, 4))}
    tx = gradtx.muon(0.1)
    updates, _ = tx.update({"w": jnp.zeros((3, 4))}, tx.init(params), params)
    np.testing.assert_array_equal(updates["w"], 0.0)


# -- torch.optim.Muon --------------------------------------------------------------------------

DATA = pathlib.Path(__file__).parent / "reference" / "data"
TORCH_CASES = json.loads((DATA / "matrix.json").read_text())["cases"]


def _torch_port(case):
    kwargs = dict(case["kwargs"])
    if "ns_coefficients" in kwargs:
        kwargs["ns_coefficients"] = tuple(kwargs["ns_coefficients"])
    if case["schedule"]:
        assert case["schedule"]["type"] == "ExponentialLR"
        kwargs["lr"] = gradtx.exponential_decay(kwargs["lr"], 1, case["schedule"]["gamma"])
    if case["ns_float64"]:
        kwargs["ns_dtype"] = None
    return compat.pytorch.muon(**kwargs)


def _torch_id(case):
    return f"{case['index']}-" + ("float64-iteration" if case["ns_float64"] else "bfloat16")


@pytest.mark.parametrize("case", TORCH_CASES, ids=[_torch_id(c) for c in TORCH_CASES])
def test_pytorch_muon_matches_the_recorded_reference(case, x64):
    data = np.load(DATA / "matrix.npz")
    got = replay.trajectory(_torch_port(case), record_matrix)
    lr = case["kwargs"].get("lr", 1e-3)
    # torch's CPU kernels and XLA sum float32 products in other orders: once in a few hundred
    # iterations a bfloat16 result rounds the other way, moving an entry by lr * 2**-8 (the
    # largest recorded deviation is 0.04 lr). torch's algorithm in float64 agrees to 1e-9.
    atol = 1e-12 if case["ns_float64"] else 0.1 * lr
    rtol = 1e-9 if case["ns_float64"] else 0.0
    for leaf in record_matrix.SHAPES:
        expected = data[f"{case['index']}/{leaf}"]
        np.testing.assert_allclose(got[leaf], expected, rtol=rtol, atol=atol, err_msg=leaf)


def test_pytorch_muon_matches_torch_live(x64):
    torch = pytest.importorskip("torch")
    del torch
    for case in [c for c in TORCH_CASES if c["ns_float64"]][1:3]:
        expected = record_matrix.run_torch(case)
        got = replay.trajectory(_torch_port(case), record_matrix)
        for leaf in record_matrix.SHAPES:
            np.testing.assert_allclose(got[leaf], expected[leaf], rtol=1e-9, atol=1e-12)


def test_bfloat16_iteration_equals_torch_on_most_matrices(x64):
    # torch sums float32 products in another order than XLA: rarely a bfloat16 result differs.
    torch = pytest.importorskip("torch")
    from torch.optim._muon import _zeropower_via_newtonschulz

    rng = np.random.default_rng(5)
    same = 0
    for i in range(60):
        x = rng.normal(size=[(4, 6), (6, 4), (5, 5)][i % 3]) * 10 ** rng.uniform(-3, 2)
        expected = _zeropower_via_newtonschulz(torch.tensor(x), gradtx._matrix.NS_COEFFS, 5, 1e-7)
        got = gradtx.orthogonalize_via_newton_schulz(
            x, eps=1e-7, eps_mode="clamp", ns_dtype=jnp.bfloat16
        )
        expected = expected.double().numpy()
        same += np.array_equal(got, expected)
        np.testing.assert_allclose(got, expected, atol=2**-7)  # one bfloat16 unit near 1
    assert same >= 57


def test_pytorch_muon_refuses_what_torch_refuses():
    with pytest.raises(ValueError, match=r"pytorch.muon\(adjust_lr_fn='rms'\)"):
        compat.pytorch.muon(adjust_lr_fn="rms")
    for arg in ("lr", "momentum", "weight_decay"):
        with pytest.raises(ValueError, match=rf"pytorch.muon\({arg}=-0.1\): {arg} must be >= 0"):
            compat.pytorch.muon(**{arg: -0.1})
    with pytest.raises(ValueError, match=r"ns_steps must be below 100"):
        compat.pytorch.muon(ns_steps=100)
    with pytest.raises(ValueError, match=r"three coefficients"):
        compat.pytorch.muon(ns_coefficients=(1.0, 2.0, 3.0, 4.0))
    tx = compat.pytorch.muon()
    with pytest.raises(ValueError, match=r"the leaf at \['bias'\] has shape \(4,\)"):
        tx.init({"weight": jnp.ones((4, 3)), "bias": jnp.ones(4)})
