"""gradtx.compat reproduces torch.optim and Keras 3 to 1e-9 relative over 200 float64 steps.

The references were recorded by ``tests/reference/record.py`` from the real
libraries; these tests need neither installed.
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import problem

import gradtx
from gradtx import compat

DATA = pathlib.Path(__file__).parent / "reference" / "data"
CASES = json.loads((DATA / "cases.json").read_text())["cases"]
RTOL, ATOL = 1e-9, 1e-12


def torch_schedule(lr: float, spec: dict):
    """The gradtx schedule equal to a torch LR scheduler stepped after every step."""
    kind = spec["type"]
    if kind == "StepLR":
        return gradtx.step_decay_schedule(lr, spec["step_size"], spec.get("gamma", 0.1))
    if kind == "ExponentialLR":
        return gradtx.exponential_decay(lr, 1, spec["gamma"])
    if kind == "CosineAnnealingLR":
        return gradtx.cosine_decay_schedule(lr, spec["T_max"], spec.get("eta_min", 0.0) / lr)
    if kind == "LinearLR":
        start, end = spec.get("start_factor", 1 / 3), spec.get("end_factor", 1.0)
        return gradtx.linear_schedule(lr * start, lr * end, spec.get("total_iters", 5))
    raise NotImplementedError(kind)


def keras_schedule(spec: dict):
    """The gradtx schedule equal to a Keras LearningRateSchedule (None where there is none)."""
    kind = spec["type"]
    if kind == "ExponentialDecay":
        return gradtx.exponential_decay(
            spec["initial_learning_rate"],
            spec["decay_steps"],
            spec["decay_rate"],
            staircase=spec.get("staircase", False),
        )
    if kind == "PiecewiseConstantDecay":
        # Keras switches after a boundary (step > b); join_schedules at it (step >= b).
        values = [gradtx.constant_schedule(v) for v in spec["values"]]
        return gradtx.join_schedules(values, [b + 1 for b in spec["boundaries"]])
    if kind == "CosineDecay" and "warmup_target" in spec:
        warmup, target = spec["warmup_steps"], spec["warmup_target"]
        return gradtx.warmup_cosine_decay_schedule(
            spec["initial_learning_rate"],
            target,
            warmup,
            warmup + spec["decay_steps"],
            end_value=spec.get("alpha", 0.0) * target,
        )
    if kind == "CosineDecay":
        return gradtx.cosine_decay_schedule(
            spec["initial_learning_rate"], spec["decay_steps"], spec.get("alpha", 0.0)
        )
    if kind == "InverseTimeDecay":
        return gradtx.inverse_time_decay(
            spec["initial_learning_rate"],
            spec["decay_steps"],
            spec["decay_rate"],
            staircase=spec.get("staircase", False),
        )
    if kind == "PolynomialDecay" and not spec.get("cycle", False):
        return gradtx.polynomial_schedule(
            spec["initial_learning_rate"],
            spec.get("end_learning_rate", 1e-4),
            spec.get("power", 1.0),
            spec["decay_steps"],
        )
    return None


# Keras evaluates CosineDecay's cosine in float32 even with floatx float64 (its
# dtype rules map float64 to float32), so its rates carry float32 rounding; and
# PolynomialDecay(cycle=True) has no gradtx equivalent. For those cases the port
# is fed the rates Keras recorded, and the gradtx schedule is checked against
# them separately at float32 precision.
RECORDED_RATE = {"CosineDecay", "PolynomialDecay"}


def build(case: dict):
    kwargs = dict(case["kwargs"])
    spec = case.get("schedule")
    if case["framework"] == "pytorch":
        for key in ("betas", "etas", "step_sizes"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        if spec:
            kwargs["lr"] = torch_schedule(kwargs.get("lr", 1e-3), spec)
        return getattr(compat.pytorch, case["optimizer"])(**kwargs)
    if spec and spec["type"] in RECORDED_RATE:
        rates = jnp.asarray(recorded_rates(case))
        kwargs["learning_rate"] = lambda count: rates[count]
    elif spec:
        kwargs["learning_rate"] = keras_schedule(spec)
    return getattr(compat.keras, case["optimizer"])(**kwargs)


def recorded_rates(case: dict) -> np.ndarray:
    return np.load(DATA / f"{case['framework']}.npz")[f"{case['index']}/lr"]


def trajectory(tx):
    """Params after each of the recorded steps, and the averaged params if any."""

    def body(carry, step):
        params, state = carry
        grads = problem.gradient(params, step, xp=jnp)
        updates, state = tx.update(grads, state, params)
        params = gradtx.apply_updates(params, updates)
        return (params, state), (params, gradtx.tree_get(state, "average", {}))

    params = jax.tree.map(jnp.asarray, problem.initial_params())
    steps = jnp.arange(1, problem.STEPS + 1)
    return jax.lax.scan(body, (params, tx.init(params)), steps)[1]


_trajectory = jax.jit(trajectory, static_argnums=0)


def recorded(case: dict):
    data = np.load(DATA / f"{case['framework']}.npz")
    index = case["index"]
    params = {leaf: data[f"{index}/{leaf}"] for leaf in problem.SHAPES}
    average = {
        leaf: data[f"{index}/ax/{leaf}"] for leaf in problem.SHAPES if f"{index}/ax/{leaf}" in data
    }
    return params, average


def case_id(case: dict) -> str:
    return f"{case['framework']}-{case['optimizer']}-{case['index']}"


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_matches_the_recorded_reference(case, x64):
    expected, expected_average = recorded(case)
    params, average = _trajectory(build(case))
    for leaf in problem.SHAPES:
        np.testing.assert_allclose(params[leaf], expected[leaf], rtol=RTOL, atol=ATOL, err_msg=leaf)
        assert np.ptp(expected[leaf]) > 0  # the trajectory really moves
    for leaf, values in expected_average.items():
        np.testing.assert_allclose(
            average[leaf], values, rtol=RTOL, atol=ATOL, err_msg=f"ax/{leaf}"
        )


SCHEDULED = [c for c in CASES if c.get("schedule")]


@pytest.mark.parametrize("case", SCHEDULED, ids=[case_id(c) for c in SCHEDULED])
def test_schedules_match_the_recorded_rates(case, x64):
    rates = recorded_rates(case)
    if case["framework"] == "pytorch":
        schedule = torch_schedule(case["kwargs"].get("lr", 1e-3), case["schedule"])
    else:
        schedule = keras_schedule(case["schedule"])
    if schedule is None:
        pytest.skip("Keras-only schedule")
    if case["optimizer"] == "rprop":
        pytest.skip("torch's Rprop reads lr once; the schedule only sets the first step size")
    ours = np.asarray([schedule(t) for t in range(len(rates))])
    # Keras's float32 cosine: rates agree to float32 rounding there (cos near -1
    # cancels, hence an absolute bound), and to float64 rounding elsewhere.
    if case["schedule"]["type"] in RECORDED_RATE:
        np.testing.assert_allclose(ours, rates, rtol=1e-7, atol=2e-7 * rates.max())
    else:
        np.testing.assert_allclose(ours, rates, rtol=1e-12)


def _family_cases() -> list[dict]:
    """The cases recorded beside each optimizer family (factored.json, matrix.json, ...)."""
    files = sorted(p for p in DATA.glob("*.json") if p.name != "cases.json")
    return [case for path in files for case in json.loads(path.read_text()).get("cases", [])]


# Keras's wrappers are recorded by class (keras_options.json); the helpers that come with one
# (the loss scaling a LossScaleOptimizer step needs, the map a MultiOptimizer takes) with it.
KERAS_WRAPPERS = {
    "LossScaleOptimizer": ("loss_scale_optimizer", "scale_loss"),
    "MultiOptimizer": ("multi_optimizer", "optimizer_map"),
}


def _recorded_ports(case: dict) -> set[tuple[str | None, str]]:
    if case.get("wrapper"):
        return {("keras", name) for name in KERAS_WRAPPERS[case["wrapper"]]}
    if "optimizer" not in case:  # a schedule (keras_schedules.json): not an optimizer
        return set()
    return {(case.get("framework"), case["optimizer"])}


def test_every_port_and_option_is_recorded():
    recorded_names = set().union(*map(_recorded_ports, CASES + _family_cases()))
    for framework, module in (("pytorch", compat.pytorch), ("keras", compat.keras)):
        public = {n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))}
        public = {n for n in public if getattr(module, n).__module__.startswith(module.__name__)}
        assert public <= {name for fw, name in recorded_names if fw == framework}
    assert len(CASES) >= 40


KERAS_CLIP_ARGS = [
    {"clipnorm": 1.0, "clipvalue": 0.5},
    {"global_clipnorm": 1.0, "clipvalue": 0.5},
    {"clipnorm": 1.0, "global_clipnorm": 1.0},
    {"clipnorm": 1.0, "clipvalue": 0.0},  # Keras counts every argument that is not None
]


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "lion", "ftrl"])
@pytest.mark.parametrize("clip_args", KERAS_CLIP_ARGS, ids=lambda kw: "+".join(kw))
def test_keras_refuses_more_than_one_clipping_argument(name, clip_args):
    # Keras 3 raises (BaseOptimizer.__init__); clipvalue used to be dropped silently.
    with pytest.raises(ValueError, match=rf"keras\.{name}\(clipnorm=.*only one of") as error:
        getattr(compat.keras, name)(**clip_args)
    for arg, value in clip_args.items():
        assert f"{arg}={value!r}" in str(error.value)


@pytest.mark.parametrize("beta_1", [0.0, -0.1, 1.5])
def test_keras_lion_refuses_beta_1_outside_0_1(beta_1):
    # Keras's Lion requires 0 < beta_1 <= 1: at 0 it is sign SGD.
    with pytest.raises(ValueError, match=rf"keras\.lion\(beta_1={beta_1!r}\): beta_1 must be"):
        compat.keras.lion(beta_1=beta_1)


@pytest.mark.parametrize("beta_1", [1e-3, 1.0])
def test_keras_lion_accepts_beta_1_in_0_1(beta_1):
    compat.keras.lion(beta_1=beta_1)
