"""Shampoo, SOAP and their matrix helpers, against naive NumPy oracles and pytorch-optimizer.

The problem and the pytorch-optimizer trajectories come from
``tests/reference/record_kronecker.py`` (``data/kronecker.npz``): four leaves (6, 5), (2,),
() and (2, 3, 5), 60 open-loop gradients with zero and sign-flipped steps. Every
trajectory is compiled once per static configuration (``_trajectory`` takes the optimizer
as an argument), so cases that change only numbers share a compile.
"""

from __future__ import annotations

import json
import pathlib
import re

import jax
from jax import lax
import jax.numpy as jnp
import kronecker_oracles as oracles
import numpy as np
import optax
import pytest

import gradtx

DATA = pathlib.Path(__file__).parent / "reference" / "data"
INFO = json.loads((DATA / "kronecker.json").read_text())
_NPZ = np.load(DATA / "kronecker.npz")
P0 = {k: _NPZ[f"p0/{k}"] for k in INFO["shapes"]}
GRADS = {k: _NPZ[f"grads/{k}"] for k in INFO["shapes"]}
STEPS = INFO["steps"]


@jax.jit
def _trajectory(tx, params, grads):
    def body(carry, g):
        params, state = carry
        updates, state = tx.update(g, state, params)
        params = gradtx.apply_updates(params, updates)
        return (params, state), params

    return lax.scan(body, (params, tx.init(params)), grads)[1]


def _run(tx, leaves=tuple(P0), steps=STEPS):
    params = {k: jnp.asarray(P0[k], jnp.float64) for k in leaves}
    grads = {k: jnp.asarray(GRADS[k][:steps], jnp.float64) for k in leaves}
    return {k: np.asarray(v) for k, v in _trajectory(tx, params, grads).items()}


def _oracle_grads(leaves=tuple(P0), steps=STEPS):
    return [{k: GRADS[k][t] for k in leaves} for t in range(steps)]


def _stack(history):
    return {k: np.stack([h[k] for h in history]) for k in history[0]}


def _relative_error(ours, reference):
    """The largest deviation of any leaf's trajectory, relative to that leaf's scale."""
    return max(
        float(np.max(np.abs(ours[k] - reference[k])) / np.max(np.abs(reference[k])))
        for k in reference
    )


# -- matrix helpers -------------------------------------------------------------------


def _psd(n, rank, seed):
    a = np.random.default_rng(seed).normal(size=(n, rank))
    return a @ a.T


@pytest.mark.parametrize("relative", [True, False])
def test_matrix_inverse_pth_root_matches_the_eigendecomposition_oracle(x64, relative):
    root = jax.jit(gradtx.matrix_inverse_pth_root, static_argnames="relative_matrix_epsilon")
    for n, rank, p, eps in [(1, 1, 2, 1e-6), (5, 5, 4, 1e-6), (5, 3, 4, 1e-3), (5, 5, 3.0, 0.0)]:
        m = _psd(n, rank, n + rank)
        expected = oracles.inverse_root(m, p, eps, relative)
        ours, error = root(jnp.asarray(m), p, ridge_epsilon=eps, relative_matrix_epsilon=relative)
        assert error < 1e-12
        np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())
    # The defining property: (root ** p) (m + ridge I) = I.
    m = _psd(5, 5, 0)
    ours = np.asarray(root(jnp.asarray(m), 4, ridge_epsilon=0.0)[0])
    np.testing.assert_allclose(np.linalg.matrix_power(ours, 4) @ m, np.eye(5), atol=1e-10)


def test_matrix_inverse_pth_root_agrees_with_optax_and_keeps_the_dtype():
    m = jnp.asarray(_psd(6, 8, 1) + np.eye(6), jnp.float32)
    ours, error = gradtx.matrix_inverse_pth_root(m, 4)
    theirs, their_error = optax.matrix_inverse_pth_root(m, 4)  # coupled Newton, to 1e-6
    np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=2e-5)
    assert error <= max(float(their_error), 1e-5)
    half, _ = gradtx.matrix_inverse_pth_root(m.astype(jnp.bfloat16), 4)
    assert half.dtype == jnp.bfloat16  # computed in float32, then cast
    np.testing.assert_allclose(half.astype(jnp.float32), ours, rtol=2e-2, atol=2e-2)


def test_power_iteration_finds_the_dominant_eigenpair():
    m = _psd(6, 6, 2)
    lam, vectors = np.linalg.eigh(m)
    value, vector = gradtx.power_iteration(jnp.asarray(m, jnp.float32), num_iters=500)
    np.testing.assert_allclose(value, lam[-1], rtol=1e-5)
    np.testing.assert_allclose(abs(float(jnp.dot(vector, vectors[:, -1]))), 1.0, rtol=1e-4)
    theirs, _ = optax.power_iteration(jnp.asarray(m, jnp.float32), num_iters=500)
    np.testing.assert_allclose(value, theirs, rtol=1e-5)
    # A function of a pytree: the same operator on {"a": first 2, "b": last 4 entries}.
    matrix = jnp.asarray(m, jnp.float32)

    def product(tree):
        v = matrix @ jnp.concatenate([tree["a"], tree["b"]])
        return {"a": v[:2], "b": v[2:]}

    v0 = {"a": jnp.ones(2), "b": jnp.ones(4)}
    value, tree = gradtx.power_iteration(product, v0=v0, num_iters=500)
    np.testing.assert_allclose(value, lam[-1], rtol=1e-5)
    assert set(tree) == {"a", "b"}
    with pytest.raises(ValueError, match=r"power_iteration\(v0=None\)"):
        gradtx.power_iteration(product)


# -- pytorch-optimizer, recorded and live ----------------------------------------------

_GRAFTS = {0: "none", 1: "sgd", 2: "adagrad", 3: "rmsprop", 4: "sqrt_n"}


def _from_pytorch_optimizer(case):
    """The gradtx optimizer that takes pytorch-optimizer's steps in ``case``.

    pytorch-optimizer starts its statistics at ``matrix_eps I`` and takes SVD roots
    without a ridge; gradtx (as distributed_shampoo) also adds ``matrix_epsilon I`` to
    the statistic it roots. With beta2 = 1 the two agree when gradtx's matrix_epsilon
    is half theirs. Its 1-based step counter starts preconditioning one step earlier.
    """
    kw, name = case["kwargs"], case["optimizer"]
    if name == "Shampoo":  # Gupta et al.'s Algorithm 1: sums, no grafting, no momentum
        return gradtx.shampoo(
            kw.get("lr", 1e-3),
            beta1=0.0,
            beta2=1.0,
            matrix_epsilon=kw.get("matrix_eps", 1e-6) / 2,
            start_preconditioning_step=0,
            best_effort_shape_interpretation=False,
            graft_type="none",
            relative_matrix_epsilon=False,
        )
    if name == "ScalableShampoo":
        beta1 = kw.get("betas", (0.9, 0.999))[0]
        return gradtx.shampoo(
            kw.get("lr", 1e-3),
            block_size=kw.get("block_size", 512),
            beta1=beta1,
            beta2=case["beta2"],
            diagonal_epsilon=kw.get("diagonal_eps", 1e-10),
            matrix_epsilon=kw["matrix_eps"] / 2,
            weight_decay=kw.get("weight_decay", 0.0),
            start_preconditioning_step=kw.get("start_preconditioning_step", 25) - 1,
            preconditioning_compute_steps=kw["preconditioning_compute_steps"],
            best_effort_shape_interpretation=False,
            graft_type=_GRAFTS[kw.get("graft_type", 1)],
            nesterov=kw.get("nesterov", True),
            exponent_override=kw.get("inverse_exponent_override", 0),
            moving_average_for_momentum=kw.get("moving_average_for_momentum", False),
            skip_preconditioning_dim_size_gt=kw.get(
                "no_preconditioning_for_layers_with_dim_gt", 8192
            ),
            relative_matrix_epsilon=False,
            skip_preconditioning_rank_lt=2,  # it preconditions only leaves of rank > 1
            decoupled_weight_decay=kw.get("decoupled_weight_decay", False),
        )
    return gradtx.soap(
        lr=kw.get("lr", 3e-3),
        betas=tuple(kw.get("betas", (0.95, 0.95))),
        shampoo_beta=kw.get("shampoo_beta"),
        eps=kw.get("eps", 1e-8),
        weight_decay=kw.get("weight_decay", 1e-2),
        precondition_frequency=kw.get("precondition_frequency", 10),
        max_precond_dim=kw.get("max_precondition_dim", 10000),
        merge_dims=kw.get("merge_dims", False),
        precondition_1d=kw.get("precondition_1d", False),
        normalize_grads=kw.get("normalize_gradient", False),
        correct_bias=kw.get("correct_bias", True),
    )


def _tolerance(case):
    # pytorch-optimizer's SOAP runs its QR refresh in float32 even for float64 params.
    refreshes = case["optimizer"] == "SOAP" and case["kwargs"]["precondition_frequency"] < STEPS
    return 1e-5 if refreshes else 1e-9


CASES = INFO["cases"]
IDS = [f"{c['index']}-{c['optimizer']}" for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_recorded_pytorch_optimizer(case, x64):
    ours = _run(_from_pytorch_optimizer(case), case["leaves"])
    recorded = {k: _NPZ[f"{case['index']}/{k}"] for k in case["leaves"]}
    assert _relative_error(ours, recorded) <= _tolerance(case)


def test_matches_live_pytorch_optimizer(x64):
    pytest.importorskip("torch")
    pytest.importorskip("pytorch_optimizer")
    from reference import record_kronecker

    p0, grads = record_kronecker.problem()
    np.testing.assert_array_equal(grads["t"], GRADS["t"])
    for index in (1, 3, 11):  # Shampoo, ScalableShampoo, SOAP with refreshes
        case = CASES[index]
        live = record_kronecker.run_case(case, p0, grads)
        assert _relative_error(_run(_from_pytorch_optimizer(case), case["leaves"]), live) <= (
            _tolerance(case)
        )


# -- naive NumPy oracles (the papers' algorithms) ----------------------------------------

# (kwargs, leaves): each compiles once; numbers vary within a compile.
SHAMPOO_ORACLE_CASES = [
    # distributed_shampoo's defaults but the rate; (2, 3, 5) is merged into one dim of 30.
    ({"learning_rate": 0.05}, tuple(P0)),
    (
        {
            "learning_rate": 0.05,
            "beta1": 0.5,
            "beta2": 0.99,
            "matrix_epsilon": 1e-4,
            "weight_decay": 0.1,
            "start_preconditioning_step": 2,
            "preconditioning_compute_steps": 3,
            "statistics_compute_steps": 2,
            "exponent_override": 3,
        },
        tuple(P0),
    ),
    (
        {
            "learning_rate": 0.02,
            "block_size": 4,
            "graft_type": "adam",
            "nesterov": False,
            "moving_average_for_momentum": True,
            "weight_decay": 0.05,
            "decoupled_weight_decay": True,
            "best_effort_shape_interpretation": False,
            "relative_matrix_epsilon": False,
            "merge_small_dims_block_size": 8,
            "skip_preconditioning_dim_size_gt": 5,
        },
        tuple(P0),
    ),
    ({"learning_rate": 0.05, "graft_type": "rmsprop"}, ("v", "s")),
    ({"learning_rate": 0.05, "graft_type": "rmsprop_normalized"}, ("v", "s")),
    ({"learning_rate": 0.05, "graft_type": "adagrad_normalized"}, ("v", "s")),
]


@pytest.mark.parametrize("kwargs, leaves", SHAMPOO_ORACLE_CASES)
def test_shampoo_matches_the_oracle(kwargs, leaves, x64):
    ours = _run(gradtx.shampoo(**kwargs), leaves)
    history = oracles.shampoo({k: P0[k] for k in leaves}, _oracle_grads(leaves), **kwargs)
    assert _relative_error(ours, _stack(history)) <= 1e-10


# Each shares its compile with a recorded pytorch-optimizer case.
SOAP_ORACLE_CASES = [
    ({"precondition_frequency": 3}, tuple(P0)),  # defaults, weight decay 0.01
    (
        {"lr": 0.01, "betas": (0.9, 0.99), "eps": 1e-6, "precondition_frequency": 5},
        tuple(P0),
    ),
    (
        {"precondition_frequency": 2, "merge_dims": True, "max_precond_dim": 8},
        ("w", "s", "t"),
    ),
    ({"precondition_frequency": 4, "precondition_1d": True, "max_precond_dim": 5}, tuple(P0)),
    ({"precondition_frequency": 3, "normalize_grads": True, "eps": 1e-12}, tuple(P0)),
]


@pytest.mark.parametrize("kwargs, leaves", SOAP_ORACLE_CASES)
def test_soap_matches_the_oracle(kwargs, leaves, x64):
    ours = _run(gradtx.soap(**kwargs), leaves)
    history = oracles.soap({k: P0[k] for k in leaves}, _oracle_grads(leaves), **kwargs)
    assert _relative_error(ours, _stack(history)) <= 1e-10


# -- memory, compilation, dtypes -------------------------------------------------------


def _matrices(tree):
    return [x for x in jax.tree.leaves(tree) if x.ndim == 2]


def test_state_is_bounded_by_block_size_and_max_precond_dim():
    abstract = {
        "dense": jax.ShapeDtypeStruct((300, 200), jnp.float32),
        "embedding": jax.ShapeDtypeStruct((20000, 3), jnp.float32),
        "conv": jax.ShapeDtypeStruct((64, 3, 3, 3), jnp.float32),
    }
    state = jax.eval_shape(gradtx.scale_by_shampoo(block_size=128).init, abstract)
    dense = _matrices(state.statistics["dense"])
    assert max(m.shape[0] for m in dense) == 128
    # Blocks of 128/128/44 rows by 128/72 columns, one statistic per block and dim.
    rows, columns = [128, 128, 44], [128, 72]
    assert sum(m.size for m in dense) == sum(r * r + c * c for r in rows for c in columns)
    assert sum(m.size for m in dense) < 300 * 200 * 3  # not (m n)**2
    assert _matrices(state.statistics["embedding"]) == []  # a dim above 4096: graft only
    # (64, 3, 3, 3) is merged into one dim of 1728 <= 4096, then cut into 13 + 1 blocks.
    conv = [m.shape for m in _matrices(state.statistics["conv"])]
    assert conv == [(128, 128)] * 13 + [(64, 64)]

    soap = jax.eval_shape(gradtx.scale_by_soap(max_precond_dim=100, merge_dims=True).init, abstract)
    assert _matrices(soap.gg["dense"]) == []  # both dims above max_precond_dim: Adam
    assert [m.shape for m in _matrices(soap.gg["embedding"])] == [(3, 3)]
    assert [m.shape for m in _matrices(soap.q["conv"])] == [(64, 64), (27, 27)]


def _primitives(jaxpr, inside_cond=False):
    """(primitive name, whether it runs inside a cond branch) for every equation."""
    found = []
    for eqn in jaxpr.eqns:
        found.append((eqn.primitive.name, inside_cond))
        branch = inside_cond or eqn.primitive.name == "cond"
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, "jaxpr", sub)  # a closed jaxpr, or a jaxpr
                if hasattr(inner, "eqns"):
                    found += _primitives(inner, branch)
    return found


@pytest.mark.parametrize(
    "tx",
    [
        gradtx.scale_by_shampoo(preconditioning_compute_steps=3, start_preconditioning_step=0),
        gradtx.scale_by_soap(precondition_frequency=3),
    ],
    ids=["shampoo", "soap"],
)
def test_refreshes_run_inside_cond_and_the_step_compiles_once(tx):
    params = {"w": jnp.ones((3, 4)), "b": jnp.ones(3)}
    grads = jax.tree.map(lambda p: jnp.cos(jnp.arange(p.size).reshape(p.shape)), params)
    state = tx.init(params)
    found = _primitives(jax.make_jaxpr(tx.update)(grads, state, params).jaxpr)
    expensive = [(name, inside) for name, inside in found if name in ("eigh", "geqrf")]
    assert expensive and all(inside for _, inside in expensive), expensive
    traces = []

    @jax.jit
    def step(grads, state, params):
        traces.append(None)
        return tx.update(grads, state, params)

    for _ in range(7):  # across refreshing and plain steps
        updates, state = step(grads, state, params)
    assert len(traces) == 1 and all(
        bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates)
    )


@pytest.mark.parametrize(
    "tx", [gradtx.scale_by_shampoo(), gradtx.scale_by_soap()], ids=["shampoo", "soap"]
)
def test_matrices_are_float32_for_bfloat16_params(tx):
    params = {"w": jnp.ones((3, 4), jnp.bfloat16)}
    state = tx.init(params)
    assert {m.dtype for m in _matrices(state)} == {jnp.dtype(jnp.float32)}
    updates, state = tx.update({"w": jnp.ones((3, 4), jnp.bfloat16)}, state, params)
    assert updates["w"].dtype == jnp.bfloat16


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: gradtx.shampoo(0.1, block_size=0),
            r"^shampoo\(block_size=0\): block_size must be in \[1, inf\)$",
        ),
        (lambda: gradtx.scale_by_shampoo(block_size=-3), r"scale_by_shampoo\(block_size=-3\)"),
        (lambda: gradtx.shampoo(0.1, beta1=-0.1), r"beta1=-0.1\): beta1 must be in \[0, 1\]"),
        (lambda: gradtx.shampoo(0.1, matrix_epsilon=-1e-6), r"matrix_epsilon=-1e-06"),
        (lambda: gradtx.shampoo(0.1, weight_decay=-0.1), r"weight_decay=-0.1"),
        (lambda: gradtx.shampoo(0.1, preconditioning_compute_steps=0), r"compute_steps=0"),
        (lambda: gradtx.shampoo(0.1, graft_type="adamw"), r"graft_type='adamw'"),
        (lambda: gradtx.shampoo(0.1, graft_type="adagrad", diagonal_epsilon=0.0), r"0 / 0"),
        (lambda: gradtx.soap(precondition_frequency=0), r"precondition_frequency=0"),
        (
            lambda: gradtx.soap(max_precond_dim=0),
            r"^soap\(max_precond_dim=0\): max_precond_dim must be in \[1, inf\)$",
        ),
        (lambda: gradtx.soap(shampoo_beta=-1), r"shampoo_beta=-1"),  # the authors' "use b2"
        (
            lambda: gradtx.soap(betas=(1.0, 0.9)),
            r"^soap\(betas=\(1.0, 0.9\)\): betas\[0\] must be in \[0, 1\)$",
        ),
        (lambda: gradtx.soap(eps=0.0), r"eps=0.0"),
    ],
)
def test_bad_arguments_are_refused_naming_them(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("tx", [gradtx.shampoo(0.1), gradtx.soap()], ids=["shampoo", "soap"])
def test_complex_leaves_are_refused_naming_them(tx):
    params = {"w": jnp.ones((2, 2)), "c": jnp.ones((2, 2), jnp.complex64)}
    with pytest.raises(TypeError, match=r"leaf at \['c'\] is complex"):
        tx.init(params)


def test_weight_decay_without_params_is_refused():
    tx = gradtx.scale_by_shampoo(weight_decay=0.1)
    params = {"w": jnp.ones((2, 2))}
    with pytest.raises(ValueError, match=r"weight_decay=0.1\): weight decay needs the params"):
        tx.update(params, tx.init(params))


def test_a_zero_weight_decay_array_or_a_traced_one_without_params():
    # A concrete zero, whatever its type, needs no params; a traced weight_decay (the
    # transform passed through jit) may be non-zero, so the params are asked for by name.
    g = {"w": jnp.asarray([[1.0, 2.0], [0.5, -1.0]])}
    tx = gradtx.scale_by_shampoo(weight_decay=jnp.asarray(0.0))
    expected = gradtx.scale_by_shampoo().update(g, tx.init(g))[0]
    np.testing.assert_array_equal(tx.update(g, tx.init(g))[0]["w"], expected["w"])
    message = (
        "scale_by_shampoo.update needs the params (its weight_decay is traced here, so it may"
        " not be 0): call update(updates, state, params)"
    )
    step = jax.jit(lambda tx, g, state: tx.update(g, state)[0])
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):  # JAX adds a note
        step(tx, g, tx.init(g))
    np.testing.assert_array_equal(
        jax.jit(lambda tx, g, state: tx.update(g, state, g)[0])(tx, g, tx.init(g))["w"],
        expected["w"],
    )


@pytest.mark.parametrize(
    "tx", [gradtx.shampoo(0.1), gradtx.soap(precondition_1d=True)], ids=["shampoo", "soap"]
)
def test_zero_size_leaves_are_left_unfactored(tx):
    params = {"w": jnp.ones((2, 2)), "empty": jnp.zeros((0, 3)), "none": jnp.zeros((0,))}
    state = tx.init(params)
    updates, _ = tx.update(params, state, params)
    assert updates["empty"].shape == (0, 3) and updates["none"].shape == (0,)
