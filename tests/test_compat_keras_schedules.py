"""``compat.keras.schedules`` against ``keras.optimizers.schedules``.

- every Keras 3 schedule class, each option, equal to Keras at the steps 0..1199 in float64
  (1e-12), recorded by tests/reference/record_keras_schedules.py (Keras's cosine kept in
  float64) and live where Keras is installed; unpatched Keras agrees to float32 precision;
- Keras's conventions that differ from optax's (boundary after the step, truncated
  fractional boundaries, the cycling stretch, the rounded restart) are in the recording;
- Keras's argument errors, and the arguments refused here, name the argument.
"""

from __future__ import annotations

import functools
import inspect
import json
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import record_keras_schedules as reference

from gradtx import compat
from gradtx.compat.keras import schedules

DATA = pathlib.Path(__file__).parent / "reference" / "data"
CASES = json.loads((DATA / "keras_schedules.json").read_text())["cases"]
TYPES = (
    "ExponentialDecay",
    "PiecewiseConstantDecay",
    "PolynomialDecay",
    "InverseTimeDecay",
    "CosineDecay",
    "CosineDecayRestarts",
)
TOLERANCE = 1e-12


def _factory(type_):
    return getattr(schedules, re.sub(r"(?<!^)(?=[A-Z])", "_", type_).lower())


@jax.jit
def _values(schedule, counts):
    # The schedule is traced: cases of one class and mode share one compile.
    return jax.vmap(schedule)(counts)


@functools.cache
def _ours(index, steps=reference.STEPS):
    case = CASES[index]
    with jax.enable_x64(True):
        schedule = _factory(case["type"])(**case["kwargs"])
        return np.asarray(_values(schedule, jnp.arange(steps, dtype=jnp.int32)))


def _recorded(index):
    return np.load(DATA / "keras_schedules.npz")[f"{index}/lr"]


def _id(case):
    return f"{case['index']}-{case['type']}-{case['kwargs']}"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_matches_the_recorded_reference(case):
    expected = _recorded(case["index"])
    assert expected.shape == (reference.STEPS,) and np.ptp(expected) > 0
    np.testing.assert_allclose(_ours(case["index"]), expected, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("type_", TYPES)
def test_every_class_and_option_is_recorded(type_):
    recorded = [c for c in CASES if c["type"] == type_]
    keywords = set(inspect.signature(_factory(type_)).parameters) - {"name"}
    assert keywords <= {key for case in recorded for key in case["kwargs"]}
    assert len(CASES) == len({json.dumps(c["kwargs"], sort_keys=True) + c["type"] for c in CASES})


def test_every_keras_schedule_is_ported(keras_float64):
    import keras

    exported = {
        name
        for name in dir(keras.optimizers.schedules)
        if isinstance(getattr(keras.optimizers.schedules, name), type)
    }
    assert exported - {"LearningRateSchedule"} == set(TYPES)


STRETCHED = 0.1 + 0.9 * (1 - 171 / 340) ** 0.5
# Where Keras's conventions show: a boundary is the last step of the value before it and a
# fractional boundary is truncated; cycling stretches the period to the next multiple.
CONVENTIONS = [
    ("PiecewiseConstantDecay", {"boundaries": [100, 400, 401, 900]}, {100: 1.0, 101: 0.5}),
    ("PiecewiseConstantDecay", {"boundaries": [0, 250.7, 250.7]}, {0: 0.2, 250: 0.1, 251: 0.01}),
    # step 171 decays over 2 * 170 steps
    ("PolynomialDecay", {"decay_steps": 170, "cycle": True}, {170: 0.1, 171: STRETCHED}),
]


@pytest.mark.parametrize("type_, match, values", CONVENTIONS)
def test_keras_conventions_are_recorded_and_followed(type_, match, values):
    (case,) = [
        c
        for c in CASES
        if c["type"] == type_ and all(c["kwargs"].get(k) == v for k, v in match.items())
    ]
    expected, ours = _recorded(case["index"]), _ours(case["index"])
    for step, value in values.items():
        assert expected[step] == pytest.approx(value, rel=1e-12)
        assert ours[step] == pytest.approx(expected[step], abs=TOLERANCE)


def _keras_cycle_fraction(first_decay_steps, t_mul, t):
    """Keras's closed form for the fraction of the current cycle done, uncorrected."""
    fraction = jnp.asarray(t, jnp.float64) / first_decay_steps
    i = jnp.floor(jnp.log(1.0 - fraction * (1.0 - t_mul)) / jnp.log(t_mul))
    return (fraction - (1.0 - t_mul**i) / (1.0 - t_mul)) / t_mul**i


def test_restarts_start_at_their_peak(x64):
    # Jitted, the closed form's logarithm rounds down at some restarts (T_0 = 1, t_mul = 2 at
    # step 7): uncorrected, that step would end the previous cycle at alpha.
    glitches = 0
    for t_mul in (2.0, 3.0, 4.0):
        starts = jnp.asarray([(t_mul**k - 1) / (t_mul - 1) for k in range(1, 12)], jnp.int32)
        keras_form = jax.jit(jax.vmap(_keras_cycle_fraction, (None, None, 0)))(1.0, t_mul, starts)
        glitches += int(jnp.sum(keras_form >= 1.0))
        schedule = schedules.cosine_decay_restarts(1.0, 1, t_mul=t_mul, alpha=0.25)
        np.testing.assert_allclose(_values(schedule, starts), 1.0, rtol=1e-12)
    assert glitches > 0


def test_restarts_of_a_fractional_period_start_at_their_peak_eager_and_jitted():
    # In float32, jitted with its numbers as constants, XLA computes t / T_0 as t * (1 / T_0): at
    # 1.7 * 10 = 17 that is an ulp below 10 (and 9 / 0.3 an ulp below 30 eagerly). The cycle is
    # found by comparing t with T_0 times the cycle's start, so both ways give the peak.
    for first, t_mul, restarts in ((1.7, 1.0, [17, 34, 51]), (0.3, 1.0, [9, 18]), (1.7, 3.0, [68])):
        schedule = schedules.cosine_decay_restarts(1.0, first, t_mul=t_mul, alpha=0.25)
        steps = jnp.asarray(restarts)
        eager = [float(schedule(t)) for t in restarts]
        jitted = jax.jit(jax.vmap(schedule))(steps)  # the schedule's numbers are constants
        as_argument = jax.jit(jax.vmap(lambda s, t: s(t), (None, 0)))(schedule, steps)
        for values in (eager, jitted, as_argument):
            np.testing.assert_allclose(values, 1.0, rtol=1e-6)


# A truncated boundary; a restart (steps 847 of T_0 = 7, t_mul = 3) and fractional periods.
LIVE = {4: [0, 1, 2, 249, 250, 251, 252, 1199], 17: range(840, 850), 19: range(0, 1200, 37)}


@pytest.mark.parametrize("index, steps", LIVE.items(), ids=lambda x: str(x)[:20])
def test_matches_keras_live(index, steps, keras_float64):
    expected = reference.run_keras(CASES[index], steps=steps)
    np.testing.assert_allclose(_ours(index)[list(steps)], expected, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("index", [13, 19], ids=["CosineDecay", "CosineDecayRestarts"])
def test_matches_keras_float32_cosine(index, keras_float64):
    # Keras unpatched takes its cosine in float32: the port agrees to that precision.
    steps = range(0, 1200, 40)
    expected = reference.run_keras(CASES[index], steps=steps, exact=False)
    np.testing.assert_allclose(_ours(index)[list(steps)], expected, rtol=1e-6, atol=1e-8)
    assert np.max(np.abs(_ours(index)[list(steps)] - expected)) > 1e-12  # float32 shows


def test_drives_a_keras_optimizer_at_the_count_before_the_step(x64):
    case = [c for c in CASES if c["type"] == "CosineDecayRestarts"][1]
    tx = compat.keras.sgd(learning_rate=schedules.cosine_decay_restarts(**case["kwargs"]))
    params = jnp.zeros(())

    def step(carry, _):
        params, state = carry
        updates, state = tx.update(jnp.ones(()), state, params)
        return (params + updates, state), params + updates

    steps = 60
    after = jax.lax.scan(step, (params, tx.init(params)), length=steps)[1]
    # p_t = p_{t-1} - lr(t - 1): the rate Keras's optimizer reads before step t.
    np.testing.assert_allclose(-np.diff(after, prepend=0.0), _recorded(case["index"])[:steps])


def test_numbers_are_leaves():
    a = schedules.cosine_decay_restarts(0.1, 10, t_mul=1.5)
    b = schedules.cosine_decay_restarts(0.2, 20, t_mul=2.5, m_mul=0.5, alpha=0.1)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    assert repr(a).startswith("CosineDecayRestarts(") and "t_mul=1.5" in repr(a)
    cyclic, plain = (schedules.polynomial_decay(1.0, 10, cycle=c) for c in (True, False))
    assert jax.tree.structure(cyclic) != jax.tree.structure(plain)  # cycle is static


# Keras's own errors (it raises ValueError for each), then the values refused here only.
KERAS_ERRORS = [
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=0, decay_rate=0.5)),
    ("PolynomialDecay", dict(initial_learning_rate=0.1, decay_steps=-5)),
    ("InverseTimeDecay", dict(initial_learning_rate=0.1, decay_steps=0, decay_rate=0.5)),
    ("CosineDecay", dict(initial_learning_rate=0.1, decay_steps=0)),
    ("CosineDecayRestarts", dict(initial_learning_rate=0.1, first_decay_steps=0)),
    ("PiecewiseConstantDecay", dict(boundaries=[10, 20], values=[1.0, 0.5])),
]
REFUSED_HERE = [
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=10, decay_rate=0.0)),
    ("InverseTimeDecay", dict(initial_learning_rate=0.1, decay_steps=10, decay_rate=-0.5)),
    ("CosineDecay", dict(initial_learning_rate=0, decay_steps=9, warmup_target=1, warmup_steps=-1)),
    ("CosineDecayRestarts", dict(initial_learning_rate=0.1, first_decay_steps=10, t_mul=0.0)),
    ("PiecewiseConstantDecay", dict(boundaries=[20, 10], values=[1.0, 0.5, 0.1])),
]
_ARGUMENT = {
    "ExponentialDecay": ("decay_steps", "decay_rate"),
    "PolynomialDecay": ("decay_steps",),
    "InverseTimeDecay": ("decay_steps", "decay_rate"),
    "CosineDecay": ("decay_steps", "warmup_steps"),
    "CosineDecayRestarts": ("first_decay_steps", "t_mul"),
    "PiecewiseConstantDecay": ("values", "boundaries"),
}


@pytest.mark.parametrize("type_, kwargs", KERAS_ERRORS + REFUSED_HERE)
def test_bad_arguments_are_named(type_, kwargs):
    argument = _ARGUMENT[type_][(type_, kwargs) in REFUSED_HERE]
    label = _factory(type_).__name__
    with pytest.raises(ValueError, match=rf"^keras\.schedules\.{label}\({argument}="):
        _factory(type_)(**kwargs)


@pytest.mark.parametrize("type_, kwargs", KERAS_ERRORS)
def test_keras_refuses_the_same(type_, kwargs, keras_float64):
    import keras

    with pytest.raises(ValueError):
        getattr(keras.optimizers.schedules, type_)(**kwargs)
