"""Tests that kill the mutants of gradtx/_schedules.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
References: optax's schedules of the same names, torch.optim (ASGD, StepLR,
CosineAnnealingWarmRestarts; not installed in CI, so those tests skip there) and the
docstrings' formulas in float64 NumPy. Every schedule is built inside its test body.
"""

from __future__ import annotations

import math

from errors import raises_whole
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx

COUNTS = np.arange(41)


def _values(schedule, counts=COUNTS):
    """A gradtx or optax schedule at integer counts, eagerly, in float64."""
    return np.asarray([schedule(int(t)) for t in counts], np.float64)


def _assert_refused(factory, kwargs, message):
    # The whole message: the call with the argument and its value, then the allowed range.
    with raises_whole(ValueError, message):
        factory(**kwargs)


# -- defaults of the public factories -------------------------------------------------------


def test_step_decay_schedule_default_gamma_is_pytorchs_0_1():
    schedule = gradtx.step_decay_schedule(1.0, step_size=3)
    expected = [0.1 ** (t // 3) for t in range(10)]
    np.testing.assert_allclose(_values(schedule, range(10)), expected, rtol=1e-6)


def _torch_learning_rates(scheduler_type, steps, **kwargs):
    """The learning rates a torch scheduler gives SGD(lr=1.0) at steps 0..steps-1."""
    torch = pytest.importorskip("torch")
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = getattr(torch.optim.lr_scheduler, scheduler_type)(optimizer, **kwargs)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_step_decay_schedule_with_its_defaults_is_torch_step_lr():
    expected = _torch_learning_rates("StepLR", 10, step_size=3)  # gamma's default
    schedule = gradtx.step_decay_schedule(1.0, step_size=3)
    np.testing.assert_allclose(_values(schedule, range(10)), expected, rtol=1e-6)


def _warm_restarts(t, init_value, t_0, t_mult, eta_min):
    """PyTorch's CosineAnnealingWarmRestarts after t calls of step(), which walk the cycles."""
    t_i, t_cur = t_0, t
    while t_cur >= t_i:
        t_cur, t_i = t_cur - t_i, t_i * t_mult
    return eta_min + (init_value - eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2


def test_cosine_warm_restarts_defaults_restart_every_period_towards_0():
    # PyTorch's defaults: T_mult=1, eta_min=0. Each cycle lasts 4 steps: 1.0 at 0, 4, 8, ...
    schedule = gradtx.cosine_warm_restarts_schedule(1.0, period=4)
    expected = [_warm_restarts(t, 1.0, 4, 1, 0.0) for t in range(17)]
    np.testing.assert_allclose(_values(schedule, range(17)), expected, rtol=1e-6, atol=1e-7)


def test_cosine_warm_restarts_defaults_are_torchs():
    expected = _torch_learning_rates("CosineAnnealingWarmRestarts", 17, T_0=4)
    schedule = gradtx.cosine_warm_restarts_schedule(1.0, period=4)
    np.testing.assert_allclose(_values(schedule, range(17)), expected, rtol=1e-6, atol=1e-7)


def test_inverse_sqrt_schedule_defaults_decay_from_the_first_step():
    # Docstring: with W = 0 (the default) it is init_value / sqrt(t + 1), 1.0 at step 0.
    schedule = gradtx.inverse_sqrt_schedule(2.0)
    expected = [2.0 / math.sqrt(t + 1) for t in range(20)]
    np.testing.assert_allclose(_values(schedule, range(20)), expected, rtol=1e-6)


def test_inverse_time_decay_default_is_smooth_as_keras():
    # Keras's InverseTimeDecay has staircase=False by default: the value falls at every step.
    schedule = gradtx.inverse_time_decay(1.0, decay_steps=10, decay_rate=1.0)
    expected = [1.0 / (1 + t / 10) for t in range(25)]
    np.testing.assert_allclose(_values(schedule, range(25)), expected, rtol=1e-6)


def test_cosine_onecycle_schedule_defaults_end_where_optaxs_do():
    # final_div_factor=1e4 by default: 4e-6 at the end. Relative tolerance only: the end value
    # is far below an ulp of the peak.
    ours = gradtx.cosine_onecycle_schedule(100, peak_value=1.0)
    theirs = optax.cosine_onecycle_schedule(100, peak_value=1.0)
    counts = [0, 29, 30, 31, 90, 99, 100, 150]
    np.testing.assert_allclose(_values(ours, counts), _values(theirs, counts), rtol=1e-5)
    np.testing.assert_allclose(float(ours(100)), 1.0 / 25 / 1e4, rtol=1e-6)


# -- asgd_step_size against torch.optim.ASGD and its formula -------------------------------


def _asgd_reference(lr, lambd, alpha, steps):
    """The docstring: eta(0) = lr(0), eta(t) = lr(t-1) / (1 + lambd * lr(t-1) * t) ** alpha."""
    rate = lr if callable(lr) else (lambda count: lr)
    etas = [rate(0)]
    for t in range(1, steps):
        etas.append(rate(t - 1) / (1 + lambd * rate(t - 1) * t) ** alpha)
    return np.asarray(etas, np.float64)


def _torch_asgd_etas(lr, steps, factor=None, **kwargs):
    """The step size each of torch's ASGD steps uses (an LR scheduler applies ``factor``)."""
    torch = pytest.importorskip("torch")
    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.ASGD([param], lr=lr, **kwargs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor) if factor else None
    etas = []
    for _ in range(steps):
        state = optimizer.state[param]
        etas.append(float(state["eta"]) if state else optimizer.param_groups[0]["lr"])
        param.grad = torch.ones(1)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return np.asarray(etas, np.float64)


COUNTS_ASGD = [0, 1, 2, 10, 1000, 100_000]


def test_asgd_step_size_defaults_are_pytorchs_lambd_1e_4_and_alpha_0_75():
    eta = gradtx.asgd_step_size(1.0)
    expected = _asgd_reference(1.0, 1e-4, 0.75, max(COUNTS_ASGD) + 1)[COUNTS_ASGD]
    np.testing.assert_allclose(_values(eta, COUNTS_ASGD), expected, rtol=1e-6)


def test_asgd_step_size_with_its_defaults_is_torch_asgds():
    # torch's ASGD defaults: lambd=1e-4, alpha=0.75.
    etas = _torch_asgd_etas(1.0, 12)
    np.testing.assert_allclose(_values(gradtx.asgd_step_size(1.0), range(12)), etas, rtol=1e-6)


def test_asgd_step_size_uses_the_lambd_and_alpha_given():
    # The docstring's example, and the formula with lambd and alpha far from the defaults.
    eta = gradtx.asgd_step_size(0.1, lambd=1.0, alpha=1.0)
    np.testing.assert_allclose(_values(eta, [0, 1, 10]), [0.1, 0.1 / 1.1, 0.05], rtol=1e-6)
    eta = gradtx.asgd_step_size(0.5, lambd=2.0, alpha=0.6)
    np.testing.assert_allclose(
        _values(eta, range(12)), _asgd_reference(0.5, 2.0, 0.6, 12), rtol=1e-6
    )


def test_asgd_step_size_follows_a_scheduled_rate_one_step_late():
    # lr(t) = 0.5 / (1 + t): eta(t) uses the previous step's rate, as PyTorch's does.
    eta = gradtx.asgd_step_size(lambda count: 0.5 / (1.0 + count), lambd=2.0, alpha=0.75)
    expected = _asgd_reference(lambda t: 0.5 / (1.0 + t), 2.0, 0.75, 12)
    np.testing.assert_allclose(_values(eta, range(12)), expected, rtol=1e-6)
    # The same under jit, with a traced count.
    jitted = jax.jit(jax.vmap(eta))(jnp.arange(12))
    np.testing.assert_allclose(jitted, expected, rtol=1e-6)


def test_asgd_step_size_is_torch_asgds_with_a_lambda_lr_scheduler():
    etas = _torch_asgd_etas(0.5, 12, factor=lambda epoch: 1 / (1 + epoch), lambd=2.0, alpha=0.75)
    eta = gradtx.asgd_step_size(lambda count: 0.5 / (1.0 + count), lambd=2.0, alpha=0.75)
    np.testing.assert_allclose(_values(eta, range(12)), etas, rtol=1e-6)


@pytest.mark.parametrize("arg, value", [("learning_rate", -0.1), ("lambd", -1.0), ("alpha", -0.5)])
def test_asgd_step_size_refuses_negative_numbers(arg, value):
    kwargs = {"learning_rate": 0.1, arg: value}
    _assert_refused(
        gradtx.asgd_step_size, kwargs, f"asgd_step_size({arg}={value}): {arg} must be in [0, inf)"
    )


# -- knots at one step: transition_steps, warmup and rate 1 ---------------------------------


@pytest.mark.parametrize("end_value", [0.0, 2.0])
def test_linear_schedule_over_one_step_matches_optax(end_value):
    ours = gradtx.linear_schedule(1.0, end_value, transition_steps=1, transition_begin=3)
    theirs = optax.linear_schedule(1.0, end_value, transition_steps=1, transition_begin=3)
    np.testing.assert_allclose(_values(ours, range(8)), _values(theirs, range(8)))
    assert float(ours(4)) == end_value


@pytest.mark.parametrize("transition_steps", [1, 0.5])
def test_exponential_decay_over_one_step_or_less_matches_optax(transition_steps):
    # transition_steps=1 is PyTorch's ExponentialLR; 0.5 decays twice a step.
    ours = gradtx.exponential_decay(1.0, transition_steps, decay_rate=0.5)
    theirs = optax.exponential_decay(1.0, transition_steps, decay_rate=0.5)
    np.testing.assert_allclose(_values(ours, range(8)), _values(theirs, range(8)), rtol=1e-6)
    assert float(ours(3)) == pytest.approx(0.5 ** (3 / transition_steps), rel=1e-6)


def test_exponential_decay_with_rate_1_clips_from_above_as_optax():
    # decay_rate=1 is "growing" for optax: end_value bounds from above (jnp.minimum).
    for end_value in (0.5, 2.0):
        ours = gradtx.exponential_decay(1.0, 10, decay_rate=1.0, end_value=end_value)
        theirs = optax.exponential_decay(1.0, 10, decay_rate=1.0, end_value=end_value)
        np.testing.assert_allclose(_values(ours), _values(theirs))
        assert float(ours(20)) == min(1.0, end_value)


def test_warmup_exponential_decay_without_transition_steps_holds_the_peak_as_optax():
    ours = gradtx.warmup_exponential_decay_schedule(0.0, 1.0, 10, 0, 0.5)
    theirs = optax.warmup_exponential_decay_schedule(0.0, 1.0, 10, 0, 0.5)
    np.testing.assert_allclose(_values(ours), _values(theirs), rtol=1e-6)
    assert float(ours(30)) == 1.0


@pytest.mark.parametrize(
    "arg, value", [("transition_steps", -1), ("transition_begin", -1), ("transition_begin", -0.5)]
)
def test_warmup_exponential_decay_refuses_negative_step_counts(arg, value):
    kwargs = dict(init_value=0.0, peak_value=1.0, warmup_steps=5, transition_steps=10)
    kwargs.update(decay_rate=0.5, **{arg: value})
    message = f"warmup_exponential_decay_schedule({arg}={value}): {arg} must be in [0, inf)"
    _assert_refused(gradtx.warmup_exponential_decay_schedule, kwargs, message)


def test_piecewise_interpolate_between_boundaries_less_than_two_steps_apart_matches_optax():
    # Boundaries at 0.5 and 2: step 1 is a third of the way from the first to the second.
    for kind in ("linear", "cosine"):
        ours = gradtx.piecewise_interpolate_schedule(kind, 1.0, {0.5: 2.0, 2.0: 0.25})
        theirs = optax.piecewise_interpolate_schedule(kind, 1.0, {0.5: 2.0, 2.0: 0.25})
        np.testing.assert_allclose(_values(ours, range(5)), _values(theirs, range(5)), rtol=1e-6)
    linear = gradtx.piecewise_interpolate_schedule("linear", 1.0, {0.5: 2.0, 2.0: 0.25})
    np.testing.assert_allclose(float(linear(1)), 2.0 + (0.5 - 2.0) / 3, rtol=1e-6)


# -- warmup_cosine_decay_schedule: end_value and a zero peak ---------------------------------


def test_warmup_cosine_decay_to_an_end_value_from_a_peak_of_1_matches_optax():
    kwargs = dict(init_value=0.0, peak_value=1.0, warmup_steps=10, decay_steps=30, end_value=0.1)
    ours = gradtx.warmup_cosine_decay_schedule(**kwargs)
    theirs = optax.warmup_cosine_decay_schedule(**kwargs)
    np.testing.assert_allclose(_values(ours), _values(theirs), rtol=1e-6)
    assert float(ours(30)) == pytest.approx(0.1, rel=1e-6)


def test_warmup_cosine_decay_is_linear_in_its_peak_even_at_a_peak_of_0():
    # With end_value 0 the decay phase is peak * c(t): its derivative in the peak is c(t), at
    # peak 0 too, and the end value (ignored there) gets no gradient, never NaN.
    def value(peak, end, t):
        schedule = gradtx.warmup_cosine_decay_schedule(0.0, peak, 10, 30, end_value=end)
        return schedule(t)

    grad = jax.grad(value, argnums=(0, 1))
    for t in (10, 15, 20, 30):
        cosine = (1 + math.cos(math.pi * (t - 10) / 20)) / 2
        d_peak, d_end = grad(0.0, 0.0, t)
        assert float(d_peak) == pytest.approx(cosine, abs=1e-6)
        assert float(d_end) == 0.0


def test_exponential_decay_without_transition_steps_is_constant_also_for_gradients():
    # transition_steps=0 holds init_value for ever: derivative 1 in it, 0 in the rate.
    def value(init, rate, t):
        return gradtx.exponential_decay(init, 0, rate)(t)

    grad = jax.grad(value, argnums=(0, 1))
    for rate in (0.5, 2.0):
        for t in (0, 1, 5):
            d_init, d_rate = grad(1.0, rate, t)
            assert (float(d_init), float(d_rate)) == (1.0, 0.0)


# -- one-cycle validation: (0, inf) for T and the factors, [0, 1] for the percentages -------


@pytest.mark.parametrize("name", ["linear_onecycle_schedule", "cosine_onecycle_schedule"])
@pytest.mark.parametrize(
    "arg, value",
    [
        ("transition_steps", 0),
        ("transition_steps", -3),
        ("div_factor", 0.0),
        ("div_factor", -1.0),
        ("final_div_factor", 0.0),
        ("final_div_factor", -1.0),
    ],
)
def test_onecycle_refuses_nonpositive_steps_and_factors(name, arg, value):
    kwargs = {"transition_steps": 10, "peak_value": 1.0, arg: value}
    _assert_refused(
        getattr(gradtx, name), kwargs, f"{name}({arg}={value}): {arg} must be in (0, inf)"
    )


@pytest.mark.parametrize(
    "arg, value", [("pct_start", -0.1), ("pct_start", 1.5), ("pct_final", -0.1), ("pct_final", 1.5)]
)
def test_linear_onecycle_refuses_percentages_outside_0_1(arg, value):
    kwargs = {"transition_steps": 10, "peak_value": 1.0, arg: value}
    message = f"linear_onecycle_schedule({arg}={value}): {arg} must be in [0, 1]"
    _assert_refused(gradtx.linear_onecycle_schedule, kwargs, message)


@pytest.mark.parametrize("name", ["linear_onecycle_schedule", "cosine_onecycle_schedule"])
@pytest.mark.parametrize("arg", ["div_factor", "final_div_factor"])
def test_onecycle_takes_factors_of_1_or_less_as_optax(name, arg):
    for factor in (1.0, 0.5):
        ours = getattr(gradtx, name)(100, peak_value=1.0, **{arg: factor})
        theirs = getattr(optax, name)(100, peak_value=1.0, **{arg: factor})
        counts = range(0, 121, 5)
        np.testing.assert_allclose(
            _values(ours, counts), _values(theirs, counts), rtol=1e-5, atol=1e-7
        )


def test_cosine_onecycle_over_one_step_matches_optax():
    ours = gradtx.cosine_onecycle_schedule(1, peak_value=2.0)
    theirs = optax.cosine_onecycle_schedule(1, peak_value=2.0)
    np.testing.assert_allclose(_values(ours, range(4)), _values(theirs, range(4)), rtol=1e-6)


def test_linear_onecycle_over_one_step_starts_at_peak_over_div_and_ends_at_the_final_value():
    # Every knot but the last is at step 0; optax's dict keeps only the last of them.
    schedule = gradtx.linear_onecycle_schedule(1, peak_value=2.0, div_factor=4.0)
    np.testing.assert_allclose(_values(schedule, range(4)), [0.5, 0.5e-4, 0.5e-4, 0.5e-4])


def test_linear_onecycle_with_pct_final_equal_to_pct_start_rises_then_falls_from_that_step():
    # Knots (0, p/d), (5, p), (5, p/d), (10, p/(d*f)): from step 5 the later segment applies.
    peak, d, f = 1.0, 25.0, 1e4
    schedule = gradtx.linear_onecycle_schedule(10, peak, pct_start=0.5, pct_final=0.5)
    rise = [peak / d + (peak - peak / d) * t / 5 for t in range(5)]
    fall = [peak / d + (peak / (d * f) - peak / d) * (t - 5) / 5 for t in range(5, 10)]
    expected = rise + fall + [peak / (d * f)] * 3
    np.testing.assert_allclose(_values(schedule, range(13)), expected, rtol=1e-6)


# -- sequences given as lists become tuples --------------------------------------------------


def test_replace_with_lists_stores_tuples_equal_to_the_factorys():
    # A list kept as it was would give another tree structure: unequal, retraced under jit.
    piecewise = gradtx.piecewise_constant_schedule(1.0, {10: 0.5})
    piecewise = piecewise.replace(boundaries=[10, 20], scales=[0.5, 0.25])
    assert piecewise.boundaries == (10, 20) and piecewise.scales == (0.5, 0.25)
    assert piecewise == gradtx.piecewise_constant_schedule(1.0, {10: 0.5, 20: 0.25})

    interpolate = gradtx.piecewise_interpolate_schedule("linear", 1.0, {4: 0.5})
    interpolate = interpolate.replace(boundaries=[5], scales=[0.25])
    assert interpolate.boundaries == (5,) and interpolate.scales == (0.25,)
    assert interpolate == gradtx.piecewise_interpolate_schedule("linear", 1.0, {5: 0.25})

    parts = [gradtx.constant_schedule(1.0), gradtx.constant_schedule(0.5)]
    joined = gradtx.join_schedules(parts, [3]).replace(boundaries=[4])
    assert joined.boundaries == (4,)
    assert joined == gradtx.join_schedules(parts, [4])

    cycle = dict(init_value=0.0, peak_value=1.0, warmup_steps=2, decay_steps=10)
    sgdr = gradtx.sgdr_schedule([cycle, cycle])
    again = sgdr.replace(cycles=list(sgdr.cycles))
    assert isinstance(again.cycles, tuple)
    assert again == sgdr


# -- float32 values whatever the numbers' types ---------------------------------------------


def test_values_are_float32_for_integer_numbers_and_functions():
    # The module's promise: values in float32 (float64 under x64), from integer arguments too.
    piecewise = gradtx.piecewise_constant_schedule(3, {2: 2, 4: 3})
    values = [piecewise(t) for t in (0, 2, 5)]
    assert [v.dtype for v in values] == [jnp.float32] * 3
    assert [float(v) for v in values] == [3.0, 6.0, 18.0]

    joined = gradtx.join_schedules([lambda count: 1, lambda count: 2], [3])
    values = [joined(t) for t in (0, 5)]
    assert [v.dtype for v in values] == [jnp.float32] * 2
    assert [float(v) for v in values] == [1.0, 2.0]
