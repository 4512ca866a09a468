"""Tests that kill the mutants of gradtx/_base.py's schedule-range check (issue 20).

``check_range`` samples a schedule at the steps ``_schedule_samples`` chooses (0..64, the
schedule's integer numbers, their neighbours and pairwise sums, powers of two up to 2**31) and
allows a slack of 1e-6 times the schedule's largest value at either bound (at an open bound only
away from the first steps and the knots' neighbours). Each test builds, as a
user would, a schedule that leaves the range at exactly one of those steps, or that ends exactly
at a bound plus the slack, and asserts the error or that the schedule is accepted.
"""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx


def _dip(step, boundaries=(), low=-0.5):
    """0.5 at every step but ``step``, where it is ``low``: a momentum out of [0, 1] there only.

    The pieces are functions, which hide their numbers from the check, so the schedule's only
    numbers (the knots the check samples around) are its ``boundaries``.
    """
    starts = (0, *boundaries)
    pieces = [
        lambda count, start=start: jnp.where(count + start == step, low, 0.5) for start in starts
    ]
    return gradtx.join_schedules(pieces, boundaries)


def _refusal(build):
    with pytest.raises(ValueError) as error:
        build()
    return str(error.value)


# -- which steps are sampled ----------------------------------------------------------------


@pytest.mark.parametrize(
    "step, boundaries",
    [
        (1000, (1000,)),  # a knot
        (999, (1000,)),  # the step before it
        (1001, (1000,)),  # the step after it
        (2500, (1000, 1500)),  # the sum of two knots
        (3, ()),  # among the first 65 steps
        (2**20, ()),  # a power of two, far from any knot
        (2**31 - 1, ()),  # the last step an int32 step counter reaches
    ],
)
def test_a_schedule_leaving_the_range_at_one_sampled_step_is_refused(step, boundaries):
    message = _refusal(lambda: gradtx.sgd(0.1, momentum=_dip(step, boundaries)))
    assert message.startswith("sgd(momentum=JoinSchedules(")
    assert message.endswith(
        f"momentum must be in [0, 1] at every step; it reaches -0.5 at step {step}"
    )


@pytest.mark.parametrize("step, boundaries", [(65, ()), (998, (1000,)), (1002, (1000,))])
def test_the_range_check_samples_steps_so_a_dip_between_them_passes(step, boundaries):
    # The documented sample: 0..64, each knot and its two neighbours, not the steps beyond.
    gradtx.sgd(0.1, momentum=_dip(step, boundaries))


def test_a_schedule_over_2_30_steps_is_sampled_up_to_the_last_int32_step():
    # Its knots' sum, 2**31, is no int32 step: it is left out, not turned into an error.
    gradtx.sgd(gradtx.linear_schedule(0.5, 0.1, transition_steps=2**30))
    message = _refusal(lambda: gradtx.sgd(gradtx.linear_schedule(0.5, -0.1, 2**30)))
    assert message.endswith(
        "learning_rate must be in [0, inf) at every step; it reaches -0.1 at step 1073741823"
    )


def test_a_schedule_that_leaves_the_range_only_past_a_million_steps_is_refused():
    # 0.5 * r**t, r = 1 + 4 * 2**-23 (a float32), is 0.82 at 2**20 and passes 1 near t = 1.45e6;
    # it overflows to inf by 2**28, the first power of two sampled where it is past 1.
    growth = gradtx.exponential_decay(0.5, transition_steps=1, decay_rate=1 + 4 * 2.0**-23)
    assert growth(2**20) < 1 < growth(2**21)
    message = _refusal(lambda: gradtx.sgd(0.1, momentum=growth))
    assert message.startswith("sgd(momentum=ExponentialDecay(")
    assert message.endswith(
        "momentum must be in [0, 1] at every step; it reaches inf at step 268435456"
    )


# -- the message ----------------------------------------------------------------------------


def test_a_schedules_message_shows_an_open_end_and_an_allowed_infinity():
    message = _refusal(lambda: gradtx.adam(0.1, b1=gradtx.linear_schedule(0.9, 1.5, 10)))
    assert message.startswith("adam(b1=LinearSchedule(")
    assert message.endswith("b1 must be in [0, 1) at every step; it reaches 1.5 at step 10")
    message = _refusal(lambda: gradtx.clip_by_global_norm(gradtx.linear_schedule(1.0, -1.0, 10)))
    assert message.startswith("clip_by_global_norm(max_norm=LinearSchedule(")
    assert message.endswith("max_norm must be in [0, inf] at every step; it reaches -1 at step 10")


def test_a_schedule_that_is_infinite_at_every_step_is_refused():
    message = _refusal(lambda: gradtx.sgd(0.1, momentum=gradtx.constant_schedule(float("inf"))))
    assert message == (
        "sgd(momentum=ConstantSchedule(value=inf)): "
        "momentum must be in [0, 1] at every step; it reaches inf at step 0"
    )


# -- the slack ------------------------------------------------------------------------------


def test_the_slack_is_a_millionth_of_the_schedules_largest_value_and_at_least_of_one():
    # Largest value 0.5: the slack is 1e-6, and -1.5e-6 is beyond it.
    message = _refusal(lambda: gradtx.sgd(0.1, momentum=gradtx.linear_schedule(0.5, -1.5e-6, 10)))
    assert message.endswith(
        "momentum must be in [0, 1] at every step; it reaches -1.5e-06 at step 10"
    )
    # Largest value 100: the slack is 1e-4, so -1e-5 (float32 rounding of a decay to 0) passes
    # and -2e-4 does not.
    gradtx.sgd(gradtx.linear_schedule(100.0, -1e-5, 10))
    message = _refusal(lambda: gradtx.sgd(gradtx.linear_schedule(100.0, -2e-4, 10)))
    assert message.endswith(
        "learning_rate must be in [0, inf) at every step; it reaches -0.0002 at step 10"
    )


def test_a_schedule_ending_exactly_at_a_bound_plus_the_slack_passes_a_closed_bound_only():
    # Largest magnitude 1e6: the slack is 1e-6 * 1e6 == 1.0 exactly, so each schedule below ends
    # exactly at the bound plus the slack.
    gradtx.sgd(gradtx.linear_schedule(1e6, -1.0, 10))  # [0, inf)
    gradtx.ftrl_proximal(0.1, learning_rate_power=gradtx.linear_schedule(-1e6, 1.0, 10))  # <= 0
    message = _refusal(lambda: gradtx.ftrl_proximal(gradtx.linear_schedule(1e6, -1.0, 10)))
    assert message.endswith(
        "learning_rate must be in (0, inf) at every step; it reaches -1 at step 10"
    )


def test_values_inside_an_open_bound_by_less_than_the_slack_are_accepted():
    # Just above 0 for an open (0, inf), just below 1 for an open [0, 1): in range.
    gradtx.ftrl_proximal(gradtx.linear_schedule(0.1, 5e-7, 10))
    gradtx.adam(0.1, b1=gradtx.linear_schedule(0.9, 0.9999995, 10))


def test_a_value_beyond_an_open_bound_by_exactly_the_slack_is_refused(x64):
    # Under x64 a schedule's values are float64, and 1.000001000001 == 1 + 1e-6 * itself:
    # the bound 1 plus the slack of a schedule whose largest value it is.
    end = 1.000001000001
    assert end == 1.0 + 1e-6 * end
    message = _refusal(lambda: gradtx.adam(0.1, b1=gradtx.linear_schedule(0.9, end, 10)))
    assert message.endswith("b1 must be in [0, 1) at every step; it reaches 1 at step 10")


def test_the_slack_is_compared_in_float64_not_in_the_schedules_float32():
    # Largest value 3: the bound is -3e-6, and its float32 rounding lies just beyond it.
    beyond = float(np.float32(-3e-6))
    assert beyond < -3e-6
    schedule = gradtx.join_schedules(
        [gradtx.constant_schedule(3.0), gradtx.constant_schedule(beyond)], [10]
    )
    message = _refusal(lambda: gradtx.sgd(schedule))
    assert message.endswith(
        "learning_rate must be in [0, inf) at every step; it reaches -3e-06 at step 10"
    )


# -- open bounds: a schedule's own values have no slack, a far underflow has -----------------


def test_a_schedule_that_ends_at_an_open_bound_is_refused_naming_the_step():
    # R3: b1 = 1 makes Adam's bias correction 1 - b1**t zero (updates -inf from step 10).
    message = _refusal(lambda: gradtx.adam(0.1, b1=gradtx.linear_schedule(0.9, 1.0, 10)))
    assert message.endswith("b1 must be in [0, 1) at every step; it reaches 1 at step 10")
    # FTRL divides by its learning rate, which must stay above 0.
    message = _refusal(lambda: gradtx.ftrl_proximal(gradtx.linear_schedule(0.1, 0.0, 10)))
    assert message.endswith(
        "learning_rate must be in (0, inf) at every step; it reaches 0 at step 10"
    )
    # The same schedules are accepted where the bound is closed.
    gradtx.sgd(0.1, momentum=gradtx.linear_schedule(0.9, 1.0, 10))
    gradtx.sgd(gradtx.linear_schedule(0.1, 0.0, 10))


def test_an_end_value_that_rounds_onto_an_open_bound_in_float32_is_refused():
    # 0.99999999 is 1.0 in float32, the precision the schedule runs in.
    message = _refusal(lambda: gradtx.adam(0.1, b2=gradtx.linear_schedule(0.9, 0.99999999, 300)))
    assert message.endswith("b2 must be in [0, 1) at every step; it reaches 1 at step 300")


def test_an_open_bound_reached_at_a_first_step_or_beside_a_knot_is_refused():
    # 0.01**t is flushed to 0 in float32 from step 19 on, one of the first 65 steps.
    message = _refusal(lambda: gradtx.ftrl_proximal(gradtx.exponential_decay(1.0, 1, 0.01)))
    assert message.endswith(
        "learning_rate must be in (0, inf) at every step; it reaches 0 at step 19"
    )
    # At 99, 100 and 101 (the knot 100 and its neighbours) each, and nowhere else.
    for step in (99, 100, 101):
        message = _refusal(lambda step=step: gradtx.ftrl_proximal(_dip(step, [100], low=0.0)))
        assert message.endswith(f"it reaches 0 at step {step}")


def test_an_open_bound_reached_far_out_by_underflow_keeps_the_slack():
    # Keras's ExponentialDecay(0.2, 25, 0.7, staircase=True) underflows to 0 only after about
    # 7000 steps (sampled at 2**13): a recorded Keras reference case, accepted.
    gradtx.ftrl_proximal(gradtx.exponential_decay(0.2, 25, 0.7, staircase=True))
    # 0 at step 2**20 only (sampled as a power of two): accepted far from a knot, refused when
    # 2**20 + 1 is one.
    far = 2**20
    gradtx.ftrl_proximal(_dip(far, [7], low=0.0))
    message = _refusal(lambda: gradtx.ftrl_proximal(_dip(far, [far + 1], low=0.0)))
    assert message.endswith(f"it reaches 0 at step {far}")


def test_a_sum_of_knots_past_the_first_steps_and_the_last_step_are_far_out():
    # Sums of knots are sampled but keep the slack: 65 = 30 + 35 is the first step past the
    # first 65 (0 to 64), where the bound has none.
    gradtx.ftrl_proximal(_dip(65, [30, 35], low=0.0))
    message = _refusal(lambda: gradtx.ftrl_proximal(_dip(64, [30, 34], low=0.0)))
    assert message.endswith("it reaches 0 at step 64")
    # A knot at 2**31 is no step of an int32 counter: its neighbour 2**31 - 1, the last step
    # (always sampled), is not made a knot's by it; a knot at 2**31 - 2 makes it one.
    gradtx.adam(0.1, b1=_OneAtTheLastStep(knot=2.0**31))
    message = _refusal(lambda: gradtx.adam(0.1, b1=_OneAtTheLastStep(knot=2.0**31 - 2)))
    assert message.endswith("b1 must be in [0, 1) at every step; it reaches 1 at step 2147483647")


class _OneAtTheLastStep(gradtx.Schedule):
    """A user's schedule: 0.9, and 1 at the last int32 step; its one number is ``knot``."""

    knot: float

    def __call__(self, count):
        return jnp.where(count == 2**31 - 1, 1.0 + 0.0 * self.knot, 0.9)


# -- how the schedule is evaluated ----------------------------------------------------------


def test_the_range_check_counts_in_int32_as_the_optimizers_step_counter(x64):
    # Under x64 too the counter is int32: this warmup's count + 1 wraps at 2**31 - 1, where the
    # learning rate it gives is negative. The check sees that step as the optimizer would.
    def warmup(count):
        return jnp.minimum(1.0, (count + 1) / 10)

    assert warmup(jnp.asarray(2**31 - 1, jnp.int32)) < 0
    message = _refusal(lambda: gradtx.sgd(gradtx.join_schedules([warmup], [])))
    assert message.endswith(
        "learning_rate must be in [0, inf) at every step; "
        "it reaches -2.14748e+08 at step 2147483647"
    )


def test_schedules_of_one_kind_share_one_compiled_range_check(caplog):
    # The samples are padded to one length: a schedule with other knots compiles nothing new.
    def warmup(count):
        return jnp.minimum(1.0, count / 10)

    def compiled(boundaries):
        caplog.clear()
        with jax.log_compiles(), caplog.at_level(logging.WARNING):
            gradtx.sgd(gradtx.join_schedules([warmup, warmup], boundaries))
        return [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]

    assert compiled([10])  # a new function: a new kind of schedule
    assert compiled([1000]) == []
    assert compiled([2**25]) == []


def test_a_schedule_of_traced_numbers_built_under_jit_is_left_to_run():
    # Neither its leaves (a traced learning rate) nor its values (a function closing over one)
    # can be checked when built inside jit: the transform is built and runs.
    @jax.jit
    def step(lr, grads):
        leaves = gradtx.sgd(gradtx.linear_schedule(lr, 0.0, 10))
        closure = gradtx.sgd(gradtx.join_schedules([lambda count: lr * 0.5], []))
        return [tx.update(grads, tx.init(grads))[0]["w"] for tx in (leaves, closure)]

    leaves, closure = step(0.1, {"w": jnp.ones(2)})
    np.testing.assert_allclose(leaves, [-0.1, -0.1], rtol=1e-6)
    np.testing.assert_allclose(closure, [-0.05, -0.05], rtol=1e-6)


# -- numbers that are not schedules ---------------------------------------------------------


def test_a_number_at_an_open_lower_bound_is_refused():
    message = _refusal(lambda: gradtx.ftrl_proximal(0.0))
    assert message == "ftrl_proximal(learning_rate=0.0): learning_rate must be in (0, inf)"


def test_a_step_count_beyond_int64_is_checked_as_a_number():
    message = _refusal(lambda: gradtx.linear_schedule(0.5, 0.1, transition_steps=-(2**64)))
    assert message == (
        "linear_schedule(transition_steps=-18446744073709551616): "
        "transition_steps must be in [0, inf)"
    )


def test_a_flag_given_for_a_schedules_step_count_is_refused():
    # R1 in tests/MUTATION.md: a bool slipped past the range check (the field is Any) and the
    # schedule was NaN at every step.
    with pytest.raises(TypeError, match=r"decay_steps=False\): decay_steps must be a number or"):
        gradtx.cosine_decay_schedule(1.0, decay_steps=False)
    with pytest.raises(TypeError, match=r"decay_steps must be a number or an array"):
        gradtx.cosine_decay_schedule(1.0, decay_steps=np.bool_(True))


def test_a_schedule_that_is_nan_at_an_early_step_is_refused_naming_the_step():
    # R2: a NaN schedule passed every comparison of the range check.
    with pytest.raises(
        ValueError, match=r"momentum must be a number at every step; it is NaN at step 0"
    ):
        gradtx.sgd(0.1, momentum=gradtx.constant_schedule(float("nan")))
    late_nan = gradtx.join_schedules(
        [gradtx.constant_schedule(0.1), gradtx.constant_schedule(float("nan"))], [3]
    )
    with pytest.raises(ValueError, match=r"it is NaN at step 3$"):
        gradtx.sgd(late_nan)
    # NaN only where steps reach 2**31 (an overflow of the schedule's own arithmetic) is let pass.
    very_late = gradtx.join_schedules(
        [gradtx.constant_schedule(0.1), gradtx.constant_schedule(float("nan"))], [2**30]
    )
    gradtx.sgd(very_late)


def test_a_schedule_whose_length_is_past_int64_is_accepted_and_runs():
    # transition_steps=2**64 ("never ends") is a Python integer NumPy can only hold as an object;
    # the check read it with NumPy's isfinite and failed with "ufunc 'isfinite' not supported".
    # It cannot be a jitted argument either, so the check leaves it (as any schedule it cannot
    # evaluate) to run: the schedule itself computes in floats, eagerly and under jit.
    tx = gradtx.sgd(gradtx.linear_schedule(0.5, 0.1, transition_steps=2**64))
    params = jnp.ones(2)
    updates, _ = jax.jit(tx.update)(params, tx.init(params))
    np.testing.assert_array_equal(updates, [-0.5, -0.5])
