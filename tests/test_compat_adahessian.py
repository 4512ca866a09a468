"""compat.pytorch.adahessian equals pytorch-optimizer 4.1.0's AdaHessian, recorded.

- each case of tests/reference/record_adahessian.py (defaults, every option, a schedule with
  decoupled decay; 200 float64 steps on record_layerwise's leaves, a nonconvex loss with
  bilinear couplings, negated every 11th step and zeroed every 17th) replayed with the
  recorded probes: the params to 1e-9 relative at the saved steps, and one probe drawn at
  each of the package's refreshes;
- the recording depends on the probes (others give another path), so a replay that fed
  them wrongly would fail;
- the package's keyword names, order and defaults, and every option recorded;
- live where torch is installed: the recorder's run of the package equal to the port.

The port draws its probes from a PRNG key in its state; the replay swaps its estimator
(``tree_set(tx, hessian_diagonal_fn=...)``) for :class:`_RecordedProbes`, the same
``z * (H z)`` on the recorded ``z``. Everything else is the port as exported.
"""

from __future__ import annotations

import functools
import inspect
import json
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import record_adahessian as record
from reference.recording import DATA
import replay
from test_compat import torch_schedule

import gradtx
from gradtx import compat

META = json.loads((DATA / "adahessian.json").read_text())
CASES = META["cases"]


def _recorded(index: int, group: str = "") -> dict[str, np.ndarray]:
    """Case ``index``'s saved params (``group=""``) or its probes (``group="probes/"``)."""
    data = np.load(DATA / "adahessian.npz")
    return {k: data[f"{index}/{group}{k}"] for k in record.SHAPES}


class _DrawState(NamedTuple):
    draws: jax.Array  # how many probes were used


class _RecordedProbes(gradtx.Transform):
    """Hutchinson's ``z * (H z)`` on given probes: draw ``i`` at the ``i``-th refresh.

    ``probes`` maps each leaf to its draws, shape ``(draws, *leaf_shape)``.
    """

    probes: Any = None

    def init(self, params):
        del params
        return _DrawState(jnp.zeros((), jnp.int32))

    def update(self, updates, state, params=None, *, obj_fn=None, **extra_args):
        del updates, extra_args
        z = {k: jnp.asarray(d[state.draws], params[k].dtype) for k, d in self.probes.items()}
        estimate = jax.tree.map(jnp.multiply, z, gradtx.hvp(obj_fn, params, z))
        return estimate, _DrawState(state.draws + 1)


def _port(case: dict, probes: dict[str, np.ndarray]):
    """The exported port with the case's arguments, fed ``probes``."""
    kwargs = dict(case["kwargs"])
    if case["schedule"]:
        kwargs["lr"] = torch_schedule(kwargs.get("lr", 0.1), case["schedule"])
    tx = compat.pytorch.adahessian(**kwargs)
    # The estimator is the only part swapped: the port's own is the default Hutchinson one.
    assert gradtx.tree_get(tx, "hessian_diagonal_fn") == gradtx.hutchinson_estimator_diag_hessian()
    probes = {k: np.asarray(v, np.float64) for k, v in probes.items()}
    return gradtx.tree_set(tx, hessian_diagonal_fn=_RecordedProbes(probes=probes))


@jax.jit
def _trajectory(tx, sign):
    """The params after each step 1..STEPS of ``sign * record.loss``, and the probes used.

    ``tx`` and ``sign`` are traced: cases that differ only in numbers share one compile.
    """

    def body(carry, step):
        params, state = carry

        def objective(p):
            return sign * record.loss(p, step, xp=jnp)

        grads = jax.grad(objective)(params)
        updates, state = tx.update(grads, state, params, obj_fn=objective)
        params = gradtx.apply_updates(params, updates)
        return (params, state), params

    params = jax.tree.map(jnp.asarray, record.initial_params())
    steps = jnp.arange(1, record.STEPS + 1)
    (_, state), path = jax.lax.scan(body, (params, tx.init(params)), steps)
    return path, gradtx.tree_get(state, "draws")


def _replay(case: dict, probes: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    """The port's params at the saved steps on ``probes``, and how many it used."""
    with jax.enable_x64(True):
        path, draws = _trajectory(_port(case, probes), float(case["sign"]))
        return {k: np.asarray(v)[record.SAVED] for k, v in path.items()}, int(draws)


@functools.cache
def _replayed(index: int) -> tuple[dict[str, np.ndarray], int]:
    return _replay(CASES[index], _recorded(index, "probes/"))


def _id(case: dict) -> str:
    return f"{case['index']}-{case['kwargs']}-{case['schedule'] is not None}"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_port_matches_the_recorded_package(case):
    ours, draws = _replayed(case["index"])
    expected = _recorded(case["index"])
    replay.assert_trajectories_equal(ours, expected, record.SHAPES, rtol=1e-9, atol=1e-12)
    # A probe at each of the package's refreshes: steps 1, 1 + update_period, ...
    assert draws == len(_recorded(case["index"], "probes/")["w"]) == record.draws(case)


def test_the_recording_depends_on_the_probes():
    # Each entry's estimate mixes its neighbours' probes (the couplings): with the probes of
    # another case, the replay leaves the recording far behind.
    ours, _ = _replay(CASES[0], _recorded(1, "probes/"))
    expected = _recorded(0)
    assert max(np.abs(ours[k] - expected[k]).max() for k in record.SHAPES) > 1e-2


def test_port_takes_the_packages_arguments_and_defaults():
    parameters = inspect.signature(compat.pytorch.adahessian).parameters
    ours = {k: p.default for k, p in parameters.items() if p.kind != p.KEYWORD_ONLY}
    theirs = META["defaults"]
    assert list(ours) == list(theirs)  # the same order: positional calls work too
    for name, default in theirs.items():
        assert ours[name] == (tuple(default) if isinstance(default, list) else default), name
    assert [k for k, p in parameters.items() if p.kind == p.KEYWORD_ONLY] == ["random_seed"]
    recorded = {k for case in CASES for k in case["kwargs"]}
    assert set(ours) - {"lr"} <= recorded
    assert any(not case["kwargs"] and not case["schedule"] for case in CASES)


# Defaults; coupled decay; a refresh every third step; the schedule with decoupled decay.
LIVE = [0, 5, 7, 10]


@pytest.mark.parametrize("index", LIVE, ids=[_id(CASES[i]) for i in LIVE])
def test_port_matches_the_package_live(index):
    pytest.importorskip("torch")
    pytest.importorskip("pytorch_optimizer")
    saved = record.SAVED[record.SAVED < 40]
    expected = record.run_torch(CASES[index], _recorded(index, "probes/"), steps=40, saved=saved)
    ours = {k: v[: len(saved)] for k, v in _replayed(index)[0].items()}
    replay.assert_trajectories_equal(ours, expected, record.SHAPES, rtol=1e-9, atol=1e-12)
