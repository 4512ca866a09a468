"""Momentum and b1 as schedules equal torch's cycled momentum and betas[0] (torch 2.13, float64).

- each case of tests/reference/record_momentum_cycling.py (SGD heavy-ball, Nesterov,
  dampened, built with momentum 0; RMSprop; Adam, AMSGrad, AdamW, Adamax, NAdam, RAdam),
  under OneCycleLR or CyclicLR with ``cycle_momentum=True``, replayed with the port given
  ``schedule.momentum`` as ``momentum`` or ``betas[0]``: every param of 80 steps to 1e-12,
  and the schedules' lr and momentum to the values torch stepped with;
- live torch reproduces the recording and agrees on cases not recorded;
- a constant momentum or b1 gives the bits gradtx gave before schedules were accepted
  (recorded float32 trajectories of the ports and of optax-named optimizers);
- the ports' checks take a schedule: Nesterov SGD with a cycled momentum builds, a cycled
  momentum outside [0, 1] is refused when built.
"""

from __future__ import annotations

import copy
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import problem
from reference import record_momentum_cycling as record
from reference.recording import DATA

import gradtx
from gradtx import compat
from gradtx.compat.pytorch import lr_scheduler

META = json.loads((DATA / "momentum_cycling.json").read_text())
CASES = META["cases"]
TOL = 1e-12
SCHEDULERS = {"OneCycleLR": lr_scheduler.one_cycle_lr, "CyclicLR": lr_scheduler.cyclic_lr}


def _recorded(index: int) -> dict[str, np.ndarray]:
    data = np.load(DATA / "momentum_cycling.npz")
    return {k: data[f"{index}/{k}"] for k in (*record.initial_params(), "lr", "momentum")}


def _port(case: dict):
    """The port with torch's arguments, the scheduler's lr and its cycled momentum or beta1."""
    spec = dict(case["scheduler"])
    schedule = SCHEDULERS[spec.pop("type")](**spec)
    kwargs = dict(case["kwargs"], lr=schedule)
    if case["cycles"] == "betas":
        kwargs["betas"] = (schedule.momentum, kwargs.get("betas", (0.9, 0.999))[1])
    else:
        kwargs["momentum"] = schedule.momentum
    return getattr(compat.pytorch, case["optimizer"].lower())(**kwargs), schedule


def _variant(index: int, **changes) -> dict:
    """A recorded case with other numbers."""
    case = copy.deepcopy(CASES[index])
    for key, value in changes.items():
        where, name = key.split("__")
        case[where][name] = value
    return case


VARIANTS = {  # not recorded: compared with live torch
    "sgd-nesterov": _variant(1, scheduler__base_momentum=0.5, scheduler__max_momentum=0.99),
    "adam-amsgrad": _variant(
        7, scheduler__base_momentum=0.3, scheduler__max_lr=0.02, kwargs__eps=1e-6
    ),
    "adamw": _variant(8, scheduler__pct_start=0.5, scheduler__base_momentum=0.4),
    "radam": _variant(11, scheduler__max_momentum=0.99, kwargs__weight_decay=0.01),
}


@jax.jit
def _run(txs, schedules, start):
    """Each port's params after each step, each schedule's lr and momentum at each step: every
    case in one compilation (a quarter of the time of one each)."""

    def trajectory(tx):
        def body(carry, t):
            params, state = carry
            updates, state = tx.update(problem.gradient(params, t, jnp), state, params)
            params = gradtx.apply_updates(params, updates)
            return (params, state), params

        return jax.lax.scan(body, (start, tx.init(start)), jnp.arange(1, record.STEPS + 1))[1]

    steps = jnp.arange(record.STEPS)
    return [
        {**trajectory(tx), "lr": jax.vmap(s)(steps), "momentum": jax.vmap(s.momentum)(steps)}
        for tx, s in zip(txs, schedules)
    ]


@functools.cache
def _gradtx() -> dict:
    """gradtx's arrays of every recorded case (by index) and variant (by name), in float64."""
    keys = [c["index"] for c in CASES] + list(VARIANTS)
    ports = [_port(c) for c in CASES] + [_port(c) for c in VARIANTS.values()]
    with jax.enable_x64(True):
        out = _run([tx for tx, _ in ports], [s for _, s in ports], record.initial_params())
    return dict(zip(keys, jax.tree.map(np.asarray, out)))


def _assert_matches(got: dict, expected: dict[str, np.ndarray], case: dict) -> None:
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k], rtol=0, atol=TOL, err_msg=f"{case} {k}")


@pytest.mark.parametrize(
    "case", CASES, ids=lambda c: f"{c['index']}-{c['optimizer']}-{c['scheduler']['type']}"
)
def test_port_matches_torch(case):
    _assert_matches(_gradtx()[case["index"]], _recorded(case["index"]), case)


@pytest.mark.parametrize("index", [1, 7, 10])
def test_live_torch_reproduces_the_recording(index):
    pytest.importorskip("torch")
    live = record.run_torch(CASES[index])
    for k, v in _recorded(index).items():
        np.testing.assert_array_equal(live[k], v, err_msg=f"{CASES[index]} {k}")


@pytest.mark.parametrize("name", VARIANTS)
def test_port_matches_live_torch_on_cases_not_recorded(name):
    pytest.importorskip("torch")
    _assert_matches(_gradtx()[name], record.run_torch(VARIANTS[name]), VARIANTS[name])


def test_constant_momentum_and_b1_keep_their_bits():
    """float32, x64 off: where ``1 - b1`` of a number and of an array round differently."""
    data = np.load(DATA / "momentum_cycling.npz")
    for i, (spec, got) in enumerate(zip(META["constant_specs"], record.constant_trajectories())):
        for k, v in got.items():
            np.testing.assert_array_equal(v, data[f"constant/{i}/{k}"], err_msg=f"{spec} {k}")


# The error names the port and the argument the user wrote, showing the schedule.
_ABOVE_ONE = r"^%s at every step; it reaches 1\.5 at step 0$"


def test_the_ports_checks_take_a_schedule():
    schedule = lr_scheduler.one_cycle_lr(max_lr=0.1, total_steps=10)
    compat.pytorch.sgd(lr=schedule, momentum=schedule.momentum, nesterov=True)
    compat.pytorch.adamw(lr=schedule, betas=(schedule.momentum, 0.999))
    with pytest.raises(ValueError, match=r"pytorch.sgd\(nesterov=True\)"):
        compat.pytorch.sgd(lr=schedule, momentum=0.0, nesterov=True)
    too_high = lr_scheduler.one_cycle_lr(max_lr=0.1, total_steps=10, max_momentum=1.5)
    with pytest.raises(
        ValueError,
        match=_ABOVE_ONE
        % r"pytorch\.sgd\(momentum=Momentum\((?s:.*)\): momentum must be in \[0, 1\]",
    ):
        compat.pytorch.sgd(lr=too_high, momentum=too_high.momentum)
    with pytest.raises(
        ValueError,
        match=_ABOVE_ONE
        % r"pytorch\.adam\(betas=\(Momentum\((?s:.*)\): betas\[0\] must be in \[0, 1\)",
    ):
        compat.pytorch.adam(lr=too_high, betas=(too_high.momentum, 0.999))
