"""compat.pytorch.sparse_adam equals torch.optim.SparseAdam (torch 2.13, float64), recorded.

- each case of tests/reference/record_sparse_adam.py (defaults, lr, betas and eps, maximize,
  a StepLR schedule, a gradient sparse in every dimension; 100 float64 steps of embedding
  lookups with repeated ids, and empty gradients that still count as steps) replayed from
  the recorded lookups, with the dense gradient JAX's autodiff of a lookup gives: every
  step to 1e-12. Rows not looked up do not move (Adam's momentum would move them), and an
  empty gradient moves nothing;
- a BCOO gradient with repeated indices enters through ``sparse.todense`` inside jit, and
  is refused as a leaf (the documented reason);
- torch's argument errors in gradtx's style; live torch raises on the same input and, where
  installed, reproduces the recording bit for bit.
"""

from __future__ import annotations

import functools
import json

import jax
from jax.experimental import sparse
import jax.numpy as jnp
import numpy as np
import pytest
from reference import record_sparse_adam as record
from reference.recording import DATA

import gradtx
from gradtx.compat.pytorch._sparse_adam import sparse_adam  # exported by the lead

META = json.loads((DATA / "sparse_adam.json").read_text())
CASES = META["cases"]


def _recorded(index: int) -> dict[str, np.ndarray]:
    data = np.load(DATA / "sparse_adam.npz")
    return {k: data[f"{index}/{k}"] for k in record.SHAPES}


def _stream() -> dict[str, np.ndarray]:
    data = np.load(DATA / "sparse_adam.npz")
    return {k: data[f"stream/{k}"] for k in record.stream()}


def _port(case: dict, kwargs: dict | None = None):
    kwargs = dict(case["kwargs"] if kwargs is None else kwargs)
    if case["schedule"]:
        spec = case["schedule"]
        kwargs["lr"] = gradtx.step_decay_schedule(kwargs["lr"], spec["step_size"], spec["gamma"])
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    granularity = "elements" if case["elements"] else "rows"
    return sparse_adam(**kwargs, granularity=granularity)


def _gradients(params, lookup, sign, elements: bool):
    """The dense gradient of the step's lookups: each repeat of an id adds its own part."""
    table, vec = params["table"], params["vec"]
    ids, cols = lookup["table_ids"], lookup["table_cols"]
    if elements:
        parts = sign * record.lookup_gradients(table[ids, cols], lookup["table_noise"][:, 0], jnp)
        g_table = jnp.zeros_like(table).at[ids, cols].add(parts)
    else:
        parts = sign * record.lookup_gradients(table[ids], lookup["table_noise"], jnp)
        g_table = jnp.zeros_like(table).at[ids].add(parts)
    ids = lookup["vec_ids"]
    parts = sign * record.lookup_gradients(vec[ids], lookup["vec_noise"], jnp)
    g_vec = jnp.zeros_like(vec).at[ids].add(jnp.where(lookup["vec_valid"], parts, 0.0))
    return {"table": g_table, "vec": g_vec}


@functools.partial(jax.jit, static_argnums=3)
def _trajectory(tx, stream, sign, elements):
    def body(carry, lookup):
        params, state = carry
        grads = _gradients(params, lookup, sign, elements)
        updates, state = tx.update(grads, state, params)
        params = gradtx.apply_updates(params, updates)
        return (params, state), params

    params = jax.tree.map(jnp.asarray, record.initial_params())
    return jax.lax.scan(body, (params, tx.init(params)), stream)[1]


def _replay(case: dict, tx) -> dict[str, np.ndarray]:
    with jax.enable_x64(True):
        stream = jax.tree.map(jnp.asarray, _stream())
        path = _trajectory(tx, stream, float(case["sign"]), case["elements"])
        return jax.tree.map(np.asarray, path)


def _id(case: dict) -> str:
    return f"{case['index']}-{case['kwargs']}-{case['schedule'] is not None}-{case['elements']}"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_port_matches_torch(case):
    ours = _replay(case, _port(case))
    expected = _recorded(case["index"])
    for k in record.SHAPES:
        np.testing.assert_allclose(ours[k], expected[k], rtol=0, atol=1e-12, err_msg=k)


def test_rows_not_looked_up_and_empty_gradients_do_not_move():
    case = CASES[1]
    ours = _replay(case, _port(case))  # compiled already for the replay test
    stream = _stream()
    # Step t (0-based) looks up some rows of the table: the others are where they were.
    for t in range(1, record.STEPS):
        untouched = np.setdiff1d(np.arange(6), stream["table_ids"][t])
        np.testing.assert_array_equal(ours["table"][t, untouched], ours["table"][t - 1, untouched])
        if not stream["vec_valid"][t]:  # an empty gradient: nothing moves, the step counts
            np.testing.assert_array_equal(ours["vec"][t], ours["vec"][t - 1])


def test_a_bcoo_gradient_enters_dense_inside_jit():
    ids = jnp.array([[1], [4], [1]])  # row 1 twice: summed, as torch's coalesce
    rows = jnp.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
    grad = {"emb": sparse.BCOO((rows, ids), shape=(5, 2))}
    params = {"emb": jnp.ones((5, 2))}
    tx = sparse_adam(lr=0.1)

    @jax.jit
    def step(params, state, grad):
        dense = jax.tree.map(sparse.todense, grad, is_leaf=lambda x: isinstance(x, sparse.BCOO))
        updates, state = tx.update(dense, state, params)
        return gradtx.apply_updates(params, updates)

    new = step(params, tx.init(params), grad)["emb"]
    # Adam's first step moves each present element by lr against its gradient's sign.
    summed = np.array([[0, 0], [1.5, 2.5], [0, 0], [0, 0], [3.0, -1.0]])
    np.testing.assert_allclose(new, 1 - 0.1 * np.sign(summed), rtol=1e-6)
    with pytest.raises(ValueError, match=r"the updates do not match the params at \['emb'\]"):
        tx.update(grad, tx.init(params), params)


# -- bad input --------------------------------------------------------------------


def _torch_raises(kwargs: dict, params=None):
    torch = pytest.importorskip("torch")
    params = [torch.zeros(2, requires_grad=True)] if params is None else params
    with pytest.raises(ValueError):
        torch.optim.SparseAdam(params, **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(lr=0.0), r"pytorch.sparse_adam\(lr=0.0\): lr must be > 0"),
        (dict(lr=-1e-3), r"pytorch.sparse_adam\(lr=-0.001\): lr must be > 0"),
        (dict(eps=0.0), r"^pytorch\.sparse_adam\(eps=0\.0\): eps must be in \(0, inf"),
        (
            dict(betas=(1.0, 0.999)),
            r"^pytorch\.sparse_adam\(betas=\(1\.0, 0\.999\)\): betas\[0\] must be in \[0, 1\)",
        ),
        (
            dict(betas=(0.9, -0.1)),
            r"^pytorch\.sparse_adam\(betas=\(0\.9, -0\.1\)\): betas\[1\] must be in \[0, 1\)",
        ),
    ],
)
def test_torchs_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sparse_adam(**kwargs)
    _torch_raises(kwargs)


def test_complex_params_and_granularity():
    tx = sparse_adam()
    with pytest.raises(TypeError, match=r"at \['z'\] is complex; SparseAdam does not support"):
        tx.init({"z": jnp.zeros(2, jnp.complex64)})
    # The recipe the user called (it ran only with torch installed, after the skip below).
    with pytest.raises(ValueError, match=r"^pytorch\.sparse_adam\(granularity='cols'\)"):
        sparse_adam(granularity="cols")
    torch = pytest.importorskip("torch")
    _torch_raises({}, [torch.zeros(2, dtype=torch.complex64, requires_grad=True)])


def test_live_torch_reproduces_the_recording():
    pytest.importorskip("torch")
    case = CASES[3]  # maximize
    live = record.run_torch(case, steps=25)
    for k, v in _recorded(case["index"]).items():
        np.testing.assert_array_equal(live[k], v[:25])


def test_a_present_row_of_zeros_moves_in_torch_and_not_here():
    # The documented difference: presence is read from the values of a dense gradient.
    torch = pytest.importorskip("torch")
    param = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.SparseAdam([param], lr=0.1)
    tx = sparse_adam(lr=0.1)
    with jax.enable_x64(True):
        params = {"p": jnp.zeros((1, 2))}
        state = tx.init(params)
        theirs, ours = [], []
        for values in ([[1.0, -1.0]], [[0.0, 0.0]]):
            grad = torch.tensor(values, dtype=torch.float64)
            param.grad = torch.sparse_coo_tensor([[0]], grad, (1, 2), check_invariants=True)
            optimizer.step()
            theirs.append(param.detach().numpy().copy())
            updates, state = tx.update({"p": jnp.asarray(values)}, state, params)
            params = gradtx.apply_updates(params, updates)
            ours.append(np.asarray(params["p"]))
    np.testing.assert_allclose(ours[0], theirs[0], rtol=0, atol=1e-15)
    assert np.all(ours[1] == ours[0])  # not present: left as it is
    assert np.all(np.abs(theirs[1] - theirs[0]) > 0.01)  # torch: held, so it moves on
