"""Tests that kill the mutants of gradtx/compat/keras/schedules.py and compat/keras/_optimizers.py
(and any survivors in compat/keras/_muon.py, _adafactor.py, _layerwise.py, _schedule_free.py,
__init__.py) the other test files let survive.

The verdicts, mutant by mutant: tests/MUTATION.md (issue 20). The reference is Keras 3.15's
``keras.optimizers.schedules`` (learning_rate_schedule.py): its signatures, its argument checks
(``decay_steps <= 0`` refused, any positive period taken) and its formulas, written in NumPy
below (float64) and checked against Keras live where it is installed; for
``CosineDecayRestarts`` the cycle is the one that holds ``t / first_decay_steps``, found by exact
comparison with the cycle starts, as the port's docstring says.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradtx import compat
from gradtx.compat.keras import schedules

# Keras 3.15's __init__ signatures (without self): names in order and defaults, None for none.
KERAS_SIGNATURES = {
    "ExponentialDecay": [
        ("initial_learning_rate", None),
        ("decay_steps", None),
        ("decay_rate", None),
        ("staircase", False),
        ("name", "ExponentialDecay"),
    ],
    "PiecewiseConstantDecay": [
        ("boundaries", None),
        ("values", None),
        ("name", "PiecewiseConstant"),
    ],
    "PolynomialDecay": [
        ("initial_learning_rate", None),
        ("decay_steps", None),
        ("end_learning_rate", 0.0001),
        ("power", 1.0),
        ("cycle", False),
        ("name", "PolynomialDecay"),
    ],
    "InverseTimeDecay": [
        ("initial_learning_rate", None),
        ("decay_steps", None),
        ("decay_rate", None),
        ("staircase", False),
        ("name", "InverseTimeDecay"),
    ],
    "CosineDecay": [
        ("initial_learning_rate", None),
        ("decay_steps", None),
        ("alpha", 0.0),
        ("name", "CosineDecay"),
        ("warmup_target", None),
        ("warmup_steps", 0),
    ],
    "CosineDecayRestarts": [
        ("initial_learning_rate", None),
        ("first_decay_steps", None),
        ("t_mul", 2.0),
        ("m_mul", 1.0),
        ("alpha", 0.0),
        ("name", "SGDRDecay"),
    ],
}
_FACTORY = {
    "ExponentialDecay": "exponential_decay",
    "PiecewiseConstantDecay": "piecewise_constant_decay",
    "PolynomialDecay": "polynomial_decay",
    "InverseTimeDecay": "inverse_time_decay",
    "CosineDecay": "cosine_decay",
    "CosineDecayRestarts": "cosine_decay_restarts",
}


def _signature(function, skip=()):
    return [
        (name, None if p.default is inspect.Parameter.empty else p.default)
        for name, p in inspect.signature(function).parameters.items()
        if name not in skip
    ]


@pytest.mark.parametrize("type_", KERAS_SIGNATURES)
def test_keywords_order_and_defaults_are_keras_s(type_):
    # name included: accepted and ignored, but its default is Keras's like every other.
    assert _signature(getattr(schedules, _FACTORY[type_])) == KERAS_SIGNATURES[type_]


def test_the_recorded_signatures_are_keras_s(keras_float64):
    import keras

    for type_, expected in KERAS_SIGNATURES.items():
        init = getattr(keras.optimizers.schedules, type_).__init__
        assert _signature(init, skip={"self"}) == expected, type_


# Keras's formulas (learning_rate_schedule.py) in NumPy, float64, without staircase or cycle.
def _keras_formula(type_, t, initial_learning_rate, decay_steps, **kw):
    t, lr, steps = np.asarray(t, np.float64), initial_learning_rate, decay_steps
    if type_ == "ExponentialDecay":
        return lr * kw["decay_rate"] ** (t / steps)
    if type_ == "InverseTimeDecay":
        return lr / (1 + kw["decay_rate"] * t / steps)
    if type_ == "CosineDecay":
        return lr * (0.5 * (1 + np.cos(np.pi * np.minimum(t, steps) / steps)))
    end = kw["end_learning_rate"]  # PolynomialDecay, power 1
    return (lr - end) * (1 - np.minimum(t, steps) / steps) + end


SHORT_PERIOD = {
    "ExponentialDecay": {"decay_rate": 0.5},
    "InverseTimeDecay": {"decay_rate": 2.0},
    "CosineDecay": {},
    "PolynomialDecay": {"end_learning_rate": 0.25},
}


@pytest.mark.parametrize("decay_steps", [1, 0.5])
@pytest.mark.parametrize("type_", SHORT_PERIOD)
def test_a_decay_period_of_one_step_or_less_is_taken(type_, decay_steps, x64):
    # Keras refuses decay_steps <= 0 only: a period of one step, or half of one, decays.
    kwargs = dict(initial_learning_rate=1.0, decay_steps=decay_steps, **SHORT_PERIOD[type_])
    schedule = getattr(schedules, _FACTORY[type_])(**kwargs)
    steps = np.arange(4)
    ours = np.asarray([schedule(jnp.int32(t)) for t in steps])
    np.testing.assert_allclose(ours, _keras_formula(type_, steps, **kwargs), rtol=1e-12)
    assert ours[1] < ours[0]


@pytest.mark.parametrize("type_", SHORT_PERIOD)
def test_the_numpy_formulas_are_keras_s(type_, keras_float64):
    import keras

    kwargs = dict(initial_learning_rate=1.0, decay_steps=0.5, **SHORT_PERIOD[type_])
    keras_schedule = getattr(keras.optimizers.schedules, type_)(**kwargs)
    steps = np.arange(4)
    expected = [float(keras_schedule(jnp.int32(t))) for t in steps]
    # Keras takes CosineDecay's cosine in float32.
    np.testing.assert_allclose(_keras_formula(type_, steps, **kwargs), expected, rtol=1e-7)


def test_polynomial_decay_refuses_a_period_of_zero_steps():
    # Keras: "decay_steps must be > 0"; -5 alone would not tell > 0 from >= 0.
    with pytest.raises(
        ValueError, match=r"^keras\.schedules\.polynomial_decay\(decay_steps=0\): .* \(0, inf\)"
    ):
        schedules.polynomial_decay(0.1, 0)


def test_cycling_polynomial_decay_starts_with_the_first_period_s_slope(x64):
    # On [0, T] the cycling decay is the plain one: at t = 0 the period is T (Keras's
    # multiplier 1 there), so the derivative in t is -(I - E) P / T, as without cycle.
    kwargs = dict(initial_learning_rate=1.0, decay_steps=4, end_learning_rate=0.2, power=2.0)
    slopes = [
        jax.grad(schedules.polynomial_decay(**kwargs, cycle=cycle))(0.0) for cycle in (True, False)
    ]
    np.testing.assert_allclose(slopes, -(1.0 - 0.2) * 2.0 / 4)


def test_piecewise_values_count_is_checked_against_the_boundaries():
    with pytest.raises(
        ValueError,
        match=r"^keras\.schedules\.piecewise_constant_decay\(values=.*\): "
        r"needs one value more than boundaries=\[10, 20\]",
    ):
        schedules.piecewise_constant_decay([10, 20], [1.0, 0.5])


def test_the_piecewise_class_built_from_lists_keeps_tuples():
    # Keras takes lists; the class stores tuples, so the schedule built from lists is the
    # factory's: equal, and of one pytree structure (a jitted step traces it once).
    from_lists = schedules.PiecewiseConstantDecay(boundaries=[10], values=[1.0, 0.5])
    factory = schedules.piecewise_constant_decay((10,), (1.0, 0.5))
    assert from_lists.values == (1.0, 0.5) and from_lists == factory
    assert jax.tree.structure(from_lists) == jax.tree.structure(factory)


def _restarts_reference(t, first_decay_steps, t_mul, alpha):
    """The docstring's rule, initial rate 1, m_mul 1: cycle i holds t / T_0, found exactly."""
    fraction = t / first_decay_steps
    i = 0
    while fraction >= (t_mul ** (i + 1) - 1) / (t_mul - 1):  # exact for a whole t_mul
        i += 1
    x = (fraction - (t_mul**i - 1) / (t_mul - 1)) / t_mul**i
    return (1 - alpha) * 0.5 * (1 + np.cos(np.pi * x)) + alpha


def test_a_step_a_rounding_short_of_a_restart_ends_the_previous_cycle(x64):
    # T_0 one ulp above 1: t / T_0 lies one ulp below the restart at 3, 7, 15, where Keras's
    # closed form log2(1 + t / T_0) rounds up to the next cycle; the cycle that holds it is
    # the one before, at its end (x = 1 - 1e-16: the value alpha).
    first_decay_steps = float(np.nextafter(1.0, 2.0))
    schedule = schedules.cosine_decay_restarts(1.0, first_decay_steps, t_mul=2.0, alpha=0.25)
    for t in (3, 7, 15, 16):
        expected = _restarts_reference(t, first_decay_steps, 2.0, 0.25)
        assert float(schedule(jnp.int32(t))) == pytest.approx(expected, rel=1e-12, abs=1e-12), t


def test_only_one_clipping_argument_is_taken_and_the_message_says_so():
    with pytest.raises(
        ValueError,
        match=r"^keras\.sgd\(clipnorm=1\.0, clipvalue=0\.5, global_clipnorm=None\): "
        r"only one of clipnorm, clipvalue and global_clipnorm can be set$",
    ):
        compat.keras.sgd(clipnorm=1.0, clipvalue=0.5)
