"""compat.pytorch.lbfgs equals torch.optim.LBFGS over 10 float64 ``step(closure)`` calls.

- recorded (tests/reference/record_lbfgs.py: both line-search modes, a wrapping history,
  max_eval and tolerance stops, lr) and live where torch is installed: the params to 1e-9
  relative after every call, the returned loss to 1e-9 relative or of the first loss (near
  Rosenbrock's minimum it cancels), torch's counters n_iter and func_evals exactly (they say
  which termination test ended each step);
- the strong-Wolfe search equal to torch's ``_strong_wolfe`` (recorded) along lines where
  its rarer rules decide;
- torch's keyword arguments, order and defaults;
- bad arguments refused when built, naming them; an update without value_fn refused,
  naming it and the optimizer.
"""

from __future__ import annotations

import functools
import inspect
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import record_lbfgs

import gradtx
from gradtx import compat
from gradtx.compat.pytorch._lbfgs import _strong_wolfe

DATA = pathlib.Path(__file__).parent / "reference" / "data"
META = json.loads((DATA / "lbfgs.json").read_text())
CASES = META["cases"]
COUNTERS = ("n_iter", "func_evals")


def _id(case: dict) -> str:
    return f"{case['index']}-{case['problem']}-{case['kwargs']}"


@functools.partial(jax.jit, static_argnums=1)
def _calls(tx, problem: str):
    """The params, the returned loss and torch's counters after each of STEPS updates.

    ``tx`` is traced: cases that differ only in numbers share one compile.
    """
    value_fn = functools.partial(record_lbfgs.value, problem, xp=jnp)

    def call(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(value_fn)(params), state, params, value_fn=value_fn)
        params = gradtx.apply_updates(params, updates)
        seen = {"loss": gradtx.tree_get(state, "loss")}
        seen.update({k: gradtx.tree_get(state, k) for k in COUNTERS})
        return (params, state), {**params, **seen}

    params = jax.tree.map(jnp.asarray, record_lbfgs.initial_params(problem))
    return jax.lax.scan(call, (params, tx.init(params)), None, length=record_lbfgs.STEPS)[1]


def _ours(case: dict) -> dict[str, np.ndarray]:
    with jax.enable_x64(True):
        out = _calls(compat.pytorch.lbfgs(**case["kwargs"]), case["problem"])
        return {k: np.asarray(v) for k, v in out.items()}


def _assert_same_calls(ours: dict, expected: dict, case: dict) -> None:
    for k in COUNTERS:
        np.testing.assert_array_equal(ours[k], expected[k], err_msg=k)
    for k in record_lbfgs.SHAPES[case["problem"]]:
        np.testing.assert_allclose(ours[k], expected[k], rtol=1e-9, atol=0, err_msg=k)
    # Near Rosenbrock's minimum (loss 1e-10) the loss cancels: a 1e-12 change of the params
    # moves it by 1e-8 of itself. There it is compared to 1e-9 of the first loss.
    scale = 1e-9 * abs(expected["loss"][0])
    np.testing.assert_allclose(
        ours["loss"], expected["loss"], rtol=1e-9, atol=scale, err_msg="loss"
    )


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_matches_the_recorded_torch(case):
    data = np.load(DATA / "lbfgs.npz")
    prefix = f"{case['index']}/"
    expected = {k[len(prefix) :]: data[k] for k in data.files if k.startswith(prefix)}
    _assert_same_calls(_ours(case), expected, case)


@functools.partial(jax.jit, static_argnums=0)
def _line_search(kind: str, x, d, t, max_ls):
    value_and_grad = jax.value_and_grad(functools.partial(record_lbfgs.line_value, kind, xp=jnp))
    f, g = value_and_grad(x)
    return _strong_wolfe(value_and_grad, x, t, d, f, g, jnp.dot(g, d), max_ls)


@pytest.mark.parametrize("line", META["lines"], ids=lambda line: f"{line['kind']}-{line['t']}")
def test_line_search_matches_torchs_strong_wolfe(line, x64):
    args = [jnp.asarray(line[k], jnp.float64) for k in ("x", "d", "t")]
    f, _, t, evals = _line_search(line["kind"], *args, line["max_ls"])
    expected = line["torch"]
    assert int(evals) == expected["evals"]
    np.testing.assert_allclose([t, f], [expected["t"], expected["f"]], rtol=1e-9, atol=0)


def test_recordings_exercise_every_branch():
    by_kwargs = {json.dumps(c["kwargs"], sort_keys=True): c for c in CASES}
    data = np.load(DATA / "lbfgs.npz")
    assert "{}" in by_kwargs  # torch's defaults
    assert {c["kwargs"].get("line_search_fn") for c in CASES} == {None, "strong_wolfe"}
    options = set(inspect.signature(compat.pytorch.lbfgs).parameters)
    assert options == {k for c in CASES for k in c["kwargs"]}
    # A step that returns before iterating: one evaluation, no iteration.
    early = by_kwargs['{"tolerance_grad": 0.0001}']["index"]
    assert np.all(np.diff(data[f"{early}/n_iter"]) == 0)
    assert np.all(np.diff(data[f"{early}/func_evals"]) == 1)
    # max_eval=3 without a line search ends each step after 2 iterations (3 evaluations).
    capped = by_kwargs['{"max_eval": 3, "max_iter": 5}']["index"]
    assert np.all(np.diff(data[f"{capped}/n_iter"], prepend=0) == 2)


def test_torch_keywords_and_defaults():
    ours = {k: p.default for k, p in inspect.signature(compat.pytorch.lbfgs).parameters.items()}
    assert list(ours) == list(META["defaults"])  # the same order: positional calls work too
    assert ours == META["defaults"]


# Both line searches, the wrapping history, the max_eval cut (each live case takes a second).
LIVE = [0, 2, 3, 5, 6]


@pytest.mark.parametrize("index", LIVE, ids=[_id(CASES[i]) for i in LIVE])
def test_matches_torch_live(index):
    pytest.importorskip("torch")
    case = CASES[index]
    _assert_same_calls(_ours(case), record_lbfgs.run_torch(case), case)


def test_numbers_are_leaves_and_modes_are_static():
    traces = []

    @jax.jit
    def step(tx, params):
        traces.append(None)
        value_fn = functools.partial(record_lbfgs.value, "rosenbrock", xp=jnp)
        return tx.update(jax.grad(value_fn)(params), tx.init(params), params, value_fn=value_fn)

    params = {"x": jnp.asarray([-1.2, 1.0, -1.2, 1.0])}
    a = compat.pytorch.lbfgs()
    b = compat.pytorch.lbfgs(lr=0.5, max_iter=3, max_eval=7, tolerance_grad=1e-5)
    step(a, params), step(b, params)
    assert len(traces) == 1
    assert a == compat.pytorch.lbfgs() and hash(a) == hash(compat.pytorch.lbfgs())
    assert a != b and a != compat.pytorch.lbfgs(history_size=5)
    assert jax.tree.structure(a) != jax.tree.structure(compat.pytorch.lbfgs(history_size=5))


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_iter": 0}, r"pytorch\.lbfgs\(max_iter=0\): max_iter must be in \[1, inf\)"),
        ({"max_iter": 2.5}, r"pytorch\.lbfgs\(max_iter=2\.5\): max_iter must be a whole"),
        ({"max_eval": 0}, r"pytorch\.lbfgs\(max_eval=0\): max_eval must be in \[1, inf\)"),
        ({"lr": 0.0}, r"pytorch\.lbfgs\(lr=0\.0\): lr must be in \(0, inf\)"),
        ({"lr": -1.0}, r"pytorch\.lbfgs\(lr=-1\.0\)"),
        ({"history_size": 0}, r"pytorch\.lbfgs\(history_size=0\): history_size must be in"),
        ({"tolerance_grad": -1e-7}, r"pytorch\.lbfgs\(tolerance_grad=-1e-07\)"),
        ({"tolerance_change": -1.0}, r"pytorch\.lbfgs\(tolerance_change=-1\.0\)"),
        (
            {"line_search_fn": "backtracking"},
            r"pytorch\.lbfgs\(line_search_fn='backtracking'\): line_search_fn must be one of "
            r"None, 'strong_wolfe'",
        ),
    ],
)
def test_bad_arguments_are_refused_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        compat.pytorch.lbfgs(**kwargs)


@pytest.mark.parametrize("missing", ["value_fn", "params"])
def test_an_update_without_value_fn_or_params_is_refused(missing):
    tx = compat.pytorch.lbfgs()
    params = {"x": jnp.ones(3)}
    given = {"params": params, "value_fn": lambda p: jnp.sum(p["x"] ** 2)}
    del given[missing]
    with pytest.raises(ValueError, match=r"pytorch\.lbfgs\.update needs params and value_fn="):
        tx.update(params, tx.init(params), **given)
