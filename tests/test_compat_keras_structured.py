"""``compat.keras.adafactor`` and ``compat.keras.muon`` against Keras 3.

- equal to Keras's Adafactor and Muon over 200 float64 steps, recorded by
  tests/reference/record_keras_structured.py (every option) and live where Keras is installed,
  Keras's means and norms kept in float64 (it takes them in float32; unpatched, it agrees to
  float32 precision);
- ``scale_by_param_block_rms(weight_decay=...)`` takes the RMS of the decayed params;
- Muon's routing by rank, "embedding" and ``exclude_layers`` on the key path;
- arguments Keras cannot take, or gradtx cannot reproduce, are refused naming them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import record_keras_structured as reference
from replay import assert_trajectories_equal, trajectory
from test_compat import keras_schedule

import gradtx
from gradtx import compat

DATA = pathlib.Path(__file__).parent / "reference" / "data"
CASES = json.loads((DATA / "keras_structured.json").read_text())["cases"]


def _port(case):
    kwargs = dict(case["kwargs"])
    if case["schedule"]:
        kwargs["learning_rate"] = keras_schedule(case["schedule"])
    return getattr(compat.keras, case["optimizer"])(**kwargs)


@dataclasses.dataclass(frozen=True)
class _Problem:
    """The recorder's problem for one optimizer, as :func:`replay.trajectory` takes it."""

    optimizer: str
    STEPS = reference.STEPS

    def initial_params(self):
        return reference.initial_params(self.optimizer)

    def gradient(self, params, step, xp):
        return reference.gradient(self.optimizer, params, step, xp=xp)


@functools.cache
def _ours(index):
    case = CASES[index]
    with jax.enable_x64(True):
        out = trajectory(_port(case), _Problem(case["optimizer"]))
        return {k: np.asarray(v)[reference.SAVED] for k, v in out.items()}


def _assert_trajectories_equal(case, ours, expected):
    assert_trajectories_equal(ours, expected, reference.SHAPES[case["optimizer"]])


def _id(case):
    return f"{case['index']}-{case['optimizer']}-{case['kwargs']}-{case['schedule']}"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_matches_the_recorded_reference(case):
    data = np.load(DATA / "keras_structured.npz")
    expected = {
        leaf: data[f"{case['index']}/{leaf}"] for leaf in reference.SHAPES[case["optimizer"]]
    }
    _assert_trajectories_equal(case, _ours(case["index"]), expected)


@pytest.mark.parametrize("optimizer", ["adafactor", "muon"])
def test_every_option_is_recorded(optimizer):
    port = getattr(compat.keras, optimizer)
    unsupported = {"use_ema", "ema_momentum", "ema_overwrite_frequency", "name"}
    unsupported |= {"loss_scale_factor", "gradient_accumulation_steps"}
    options = set(port.__code__.co_varnames[: port.__code__.co_argcount]) - unsupported
    ours = [c for c in CASES if c["optimizer"] == optimizer]
    recorded = {key for case in ours for key in case["kwargs"]} | {"learning_rate"}
    assert options <= recorded
    assert any(not case["kwargs"] and not case["schedule"] for case in ours)
    assert any(case["schedule"] for case in ours)


LIVE = [
    c for c in CASES if {"weight_decay", "adam_weight_decay", "exclude_layers"} & set(c["kwargs"])
]


@pytest.mark.parametrize("case", LIVE, ids=_id)
def test_matches_keras_live(case, keras_float64):
    _assert_trajectories_equal(case, _ours(case["index"]), reference.run_keras(case))


@pytest.mark.parametrize("index", [0, 9], ids=["adafactor", "muon"])
def test_matches_keras_float32_reductions(index, keras_float64):
    # Keras unpatched takes its means and norms in float32: the port agrees to that precision.
    case = CASES[index]
    steps = 10
    expected = reference.run_keras(case, steps=steps, exact=False)
    ours = {k: v[: len(expected[k])] for k, v in _ours(index).items()}
    for leaf in expected:
        np.testing.assert_allclose(ours[leaf], expected[leaf], rtol=1e-6, atol=1e-9, err_msg=leaf)


def test_param_block_rms_of_decayed_params():
    p = {"w": jnp.asarray([3.0, 4.0]), "z": jnp.zeros(2)}
    u = {"w": jnp.ones(2), "z": jnp.ones(2)}
    schedule = gradtx.constant_schedule(0.1)
    for rate in (0.1, schedule):
        tx = gradtx.scale_by_param_block_rms(0.01, weight_decay=2.0, learning_rate=rate)
        out, state = tx.update(u, tx.init(p), p)
        # rms([3, 4]) = 3.5355; decayed by 1 - 0.1 * 2 = 0.8. A zero leaf keeps min_scale.
        np.testing.assert_allclose(out["w"], 0.8 * np.sqrt(12.5), rtol=1e-6)
        np.testing.assert_allclose(out["z"], 0.01)
        assert int(state.count) == 1
    assert "scale_by_param_block_rms(" in str(
        pytest.raises(ValueError, gradtx.scale_by_param_block_rms, weight_decay=-1.0).value
    )


def test_muon_routes_by_rank_embedding_and_exclude_layers():
    params = {
        "dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)},
        "Token_Embedding": jnp.ones((4, 2)),
        "head": jnp.ones((3, 2)),
        "conv": jnp.ones((2, 2, 2)),
    }
    labels = compat.keras.muon(exclude_layers=["he.d"]).transforms[1].param_labels(params)
    assert labels == {
        "dense": {"kernel": "muon", "bias": "adam"},
        "Token_Embedding": "adam",
        "head": "adam",
        "conv": "adam",
    }
    labels = compat.keras.muon(exclude_embeddings=False).transforms[1].param_labels(params)
    assert labels["Token_Embedding"] == "muon" and labels["head"] == "muon"


@pytest.mark.parametrize(
    "build, match",
    [
        (
            lambda: compat.keras.adafactor(beta_2_decay=0.5),
            r"keras\.adafactor\(beta_2_decay=0\.5\)",
        ),
        (
            lambda: compat.keras.adafactor(use_ema=True, ema_momentum=1.5),
            r"keras\.adafactor\(ema_momentum=1\.5\)",
        ),
        (
            lambda: compat.keras.adafactor(clipnorm=1.0, clipvalue=0.5),
            r"keras\.adafactor\(clipnorm=1\.0, clipvalue=0\.5.*only one of",
        ),
        (lambda: compat.keras.muon(momentum=1.0), r"keras\.muon\(momentum=1\.0\)"),
        (
            lambda: compat.keras.muon(exclude_layers=["("]),
            r"keras\.muon\(exclude_layers=\['\('\]\)",
        ),
        (
            lambda: compat.keras.muon(global_clipnorm=1.0, clipvalue=0.5),
            r"keras\.muon\(.*only one of",
        ),
    ],
)
def test_bad_arguments_are_named(build, match):
    with pytest.raises(ValueError, match=match):
        build()
