"""compat.pytorch.clip_grad_norm and clip_grad_value equal torch.nn.utils's (torch 2.13, float64).

- each case of tests/reference/record_clip_grad.py (clip_grad_norm_ with norm_type 2, 1, inf
  and 3, max_norm below the norms and above them; clip_grad_value_), chained before the SGD
  or AdamW port: every param of 40 steps and the total norm torch returned, to 1e-12;
- live torch reproduces the recording and agrees on cases not recorded (norm_type 0.5, a
  max_norm the norms cross);
- torch's rule, not optax's: the +1e-6 in the divisor;
- error_if_nonfinite raises, eagerly and under jit; without it, torch's 0 and NaN;
- bad arguments are refused when built, naming ``pytorch.<function>(argument=value)``.
"""

from __future__ import annotations

import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import problem
from reference import record_clip_grad as record
from reference.recording import DATA

import gradtx
from gradtx import compat
from gradtx.compat.pytorch._clip import clip_grad_norm, clip_grad_value

CASES = json.loads((DATA / "clip_grad.json").read_text())["cases"]
TOL = 1e-12
CLIPS = {"clip_grad_norm": clip_grad_norm, "clip_grad_value": clip_grad_value}
VARIANTS = {  # not recorded: compared with live torch
    "p0.5": {**CASES[0], "clip": {"max_norm": 3.0, "norm_type": 0.5}},
    "crossing": {**CASES[2], "clip": {"max_norm": 1.5, "norm_type": 2.0}},
}


def _port(case: dict):
    clip = CLIPS[case["optimizer"]](**case["clip"])
    return gradtx.chain(
        clip, getattr(compat.pytorch, case["torch_optimizer"].lower())(**case["kwargs"])
    )


@jax.jit
def _run(start):
    """Every case's params and total norm after each step, in one compilation."""

    def trajectory(tx):
        def body(carry, t):
            params, state = carry
            updates, state = tx.update(problem.gradient(params, t, jnp), state, params)
            params = gradtx.apply_updates(params, updates)
            total_norm = gradtx.tree_get(state, "total_norm", jnp.zeros(()))
            return (params, state), {**params, "total_norm": total_norm}

        return jax.lax.scan(body, (start, tx.init(start)), jnp.arange(1, record.STEPS + 1))[1]

    return [trajectory(_port(c)) for c in CASES + list(VARIANTS.values())]


@functools.cache
def _gradtx() -> dict:
    """gradtx's arrays of every recorded case (by index) and variant (by name), in float64."""
    keys = [c["index"] for c in CASES] + list(VARIANTS)
    with jax.enable_x64(True):
        out = _run(problem.initial_params())
    return dict(zip(keys, jax.tree.map(np.asarray, out)))


def _recorded(index: int) -> dict[str, np.ndarray]:
    data = np.load(DATA / "clip_grad.npz")
    return {k: data[f"{index}/{k}"] for k in (*problem.SHAPES, "total_norm")}


def _assert_matches(got: dict, expected: dict, case: dict) -> None:
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k], rtol=0, atol=TOL, err_msg=f"{case} {k}")


def test_the_recording_clips_and_does_not():
    # Each norm_type below and above the norms; a case that never clips pins the clamp to 1.
    norms = [c for c in CASES if c["optimizer"] == "clip_grad_norm"]
    for p in (2.0, 1.0, "inf", 3.0):
        assert {c["clips"] > 0 for c in norms if c["clip"]["norm_type"] == p} == {False, True}
    assert all(c["clips"] > 0 for c in CASES if c["optimizer"] == "clip_grad_value")


@pytest.mark.parametrize(
    "case", CASES, ids=lambda c: f"{c['index']}-{c['optimizer']}-{c['torch_optimizer']}"
)
def test_port_matches_torch(case):
    _assert_matches(_gradtx()[case["index"]], _recorded(case["index"]), case)


@pytest.mark.parametrize("index", [0, 5, 9])
def test_live_torch_reproduces_the_recording(index):
    pytest.importorskip("torch")
    live = record.run_torch(CASES[index])
    for k, expected in _recorded(index).items():
        np.testing.assert_array_equal(live[k], expected)


@pytest.mark.parametrize("name", VARIANTS)
def test_port_matches_live_torch(name):
    pytest.importorskip("torch")
    live = record.run_torch(VARIANTS[name])
    assert 0 < live.pop("clipped").sum() < record.STEPS  # the norms cross max_norm
    _assert_matches(_gradtx()[name], live, VARIANTS[name])


GRADS = {"w": np.array([[3.0, -4.0], [0.0, 12.0]]), "b": np.array([-84.0])}  # |.|_2 = 85


def _clip(tx, grads):
    grads = jax.tree.map(jnp.asarray, grads)
    return tx.update(grads, tx.init(grads))


@pytest.mark.parametrize(
    "norm_type, total", [(2.0, 85.0), (1.0, 103.0), ("inf", 84.0), (math.inf, 84.0)]
)
def test_clip_coefficient_is_torchs(norm_type, total):
    with jax.enable_x64(True):
        clipped, state = jax.tree.map(np.asarray, _clip(clip_grad_norm(2.0, norm_type), GRADS))
    assert gradtx.tree_get(state, "total_norm") == total
    for k, g in GRADS.items():  # max_norm / (n + 1e-6), not optax's max_norm / n
        np.testing.assert_array_equal(clipped[k], g * (2.0 / (total + 1e-6)))


def test_total_norm_is_the_norm_of_the_leaf_norms_in_float32_for_float32():
    clipped, state = _clip(clip_grad_norm(1e3, 3.0), jax.tree.map(np.float32, GRADS))
    assert state.total_norm.dtype == jnp.float32
    expected = np.linalg.norm([np.linalg.norm(g.ravel(), 3) for g in GRADS.values()], 3)
    np.testing.assert_allclose(state.total_norm, expected, rtol=1e-6)
    assert all(clipped[k].dtype == np.float32 for k in GRADS)


def test_empty_updates_have_norm_zero():
    assert _clip(clip_grad_norm(1.0), {})[1].total_norm == 0  # torch returns tensor(0.)


def test_clip_grad_value_clamps():
    clipped, _ = _clip(clip_grad_value(5.0), GRADS)
    np.testing.assert_array_equal(clipped["w"], [[3.0, -4.0], [0.0, 5.0]])
    np.testing.assert_array_equal(clipped["b"], [-5.0])


INFINITE = {"w": np.array([3.0, -np.inf])}


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_error_if_nonfinite_raises(jit):
    tx = clip_grad_norm(1.0, error_if_nonfinite=True)
    update = jax.jit(tx.update) if jit else tx.update
    grads = jax.tree.map(jnp.asarray, INFINITE)
    with pytest.raises(RuntimeError, match=r"pytorch\.clip_grad_norm\(error_if_nonfinite=True\)"):
        jax.block_until_ready(update(grads, tx.init(grads)))


def test_nonfinite_norm_without_the_error_scales_as_torch():
    clipped, state = _clip(clip_grad_norm(1.0), INFINITE)  # max_norm / inf = 0: 0 and NaN
    assert state.total_norm == np.inf
    np.testing.assert_array_equal(clipped["w"], [0.0, np.nan])


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: clip_grad_norm(-1.0), r"clip_grad_norm\(max_norm=-1.0\): max_norm must be in"),
        (lambda: clip_grad_norm(math.nan), r"clip_grad_norm\(max_norm=nan\): max_norm must be"),
        (lambda: clip_grad_norm(1.0, 0.0), r"clip_grad_norm\(norm_type=0.0\): norm_type must be"),
        (lambda: clip_grad_norm(1.0, -2), r"clip_grad_norm\(norm_type=-2\): norm_type must be"),
        (lambda: clip_grad_norm(1.0, "-inf"), r"clip_grad_norm\(norm_type=-inf\): norm_type"),
        (lambda: clip_grad_norm(1.0, "nan"), r"clip_grad_norm\(norm_type=nan\): norm_type"),
        # torch's float(norm_type) error, named
        (lambda: clip_grad_norm(1.0, "fro"), r"clip_grad_norm\(norm_type='fro'\): .*'fro'"),
        (lambda: clip_grad_value(-1.0), r"clip_grad_value\(clip_value=-1.0\): clip_value must"),
    ],
    ids=["max_norm<0", "max_norm-nan", "p0", "p<0", "p-inf", "p-nan", "fro", "clip_value<0"],
)
def test_bad_arguments_are_refused(build, message):
    with pytest.raises(ValueError, match=r"^pytorch\." + message):
        build()
