"""Tests that kill the mutants of gradtx/compat/pytorch/lr_scheduler.py the other test files let
survive.

The verdicts, mutant by mutant: tests/MUTATION.md (issue 20). The references are NumPy
versions of the docstrings' closed forms (torch 2.13's values, which
tests/test_compat_lr_scheduler.py checks against the recording), torch's recursive
``get_lr()`` rules (what ``chained_scheduler`` runs: with one child it must give that child's
closed form) and the argument checks the docstrings state.
"""

from __future__ import annotations

import dataclasses

from errors import raises_whole
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_compat_lr_scheduler import plateau_rates, values

from gradtx.compat.pytorch import lr_scheduler as L

E = np.arange(6)  # the epochs every closed form below is evaluated at
PLATEAU_DEFAULTS = dict(mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                        cooldown=0, min_lr=0.0, eps=1e-8)  # fmt: skip


def _at(schedule, n=6):
    """The schedule at the optimizer steps 0..n-1 (those of E by default), as NumPy."""
    return np.asarray(values(schedule, jnp.arange(n)))


def _build(name, **extra):
    """One scheduler of each kind, small numbers, with its NumPy closed form at epochs E."""
    cos = lambda x: np.cos(np.pi * x)  # noqa: E731
    if name == "step_lr":
        return L.step_lr(lr=1.0, step_size=1, gamma=0.5, **extra), 0.5**E
    if name == "multi_step_lr":
        s = L.multi_step_lr(lr=1.0, milestones=[1, 2], gamma=0.5, **extra)
        return s, 0.5 ** np.minimum(E, 2)
    if name == "constant_lr":
        return L.constant_lr(lr=1.0, factor=0.5, total_iters=2, **extra), np.where(E < 2, 0.5, 1.0)
    if name == "linear_lr":
        s = L.linear_lr(lr=1.0, start_factor=0.25, total_iters=3, **extra)
        return s, 0.25 + 0.75 * np.minimum(E, 3) / 3
    if name == "exponential_lr":
        return L.exponential_lr(lr=1.0, gamma=0.5, **extra), 0.5**E
    if name == "polynomial_lr":
        s = L.polynomial_lr(lr=1.0, total_iters=4, power=2.0, **extra)
        return s, (1 - np.minimum(E, 4) / 4) ** 2
    if name == "lambda_lr":
        return L.lambda_lr(lr=1.0, lr_lambda=lambda e: 1 / (1 + e), **extra), 1 / (1 + E)
    if name == "multiplicative_lr":
        return L.multiplicative_lr(lr=1.0, lr_lambda=lambda e: 0.5, **extra), 0.5**E
    if name == "cosine_annealing_lr":
        return L.cosine_annealing_lr(lr=1.0, T_max=3, **extra), (1 + cos(E / 3)) / 2
    if name == "cosine_annealing_warm_restarts":
        s = L.cosine_annealing_warm_restarts(lr=1.0, T_0=3, **extra)
        return s, (1 + cos((E % 3) / 3)) / 2
    if name == "cyclic_lr":
        s = L.cyclic_lr(base_lr=0.0, max_lr=1.0, step_size_up=2, **extra)
        return s, 1 - np.abs(E % 4 - 2) / 2
    if name == "sequential_lr":
        first = L.constant_lr(lr=1.0, factor=0.5, total_iters=2)
        s = L.sequential_lr([first, L.exponential_lr(lr=1.0, gamma=0.5)], milestones=[2], **extra)
        return s, np.where(E < 2, 0.5, 0.5 ** (E - 2))
    if name == "chained_scheduler":
        # torch multiplies the factors of both: 0.5 until epoch 2, and 0.5 ** e.
        first = L.constant_lr(lr=1.0, factor=0.5, total_iters=2)
        s = L.chained_scheduler([first, L.exponential_lr(lr=1.0, gamma=0.5)], **extra)
        return s, np.where(E < 2, 0.5, 1.0) * 0.5**E
    raise AssertionError(name)


KINDS = [
    "step_lr", "multi_step_lr", "constant_lr", "linear_lr", "exponential_lr", "polynomial_lr",
    "lambda_lr", "multiplicative_lr", "cosine_annealing_lr", "cosine_annealing_warm_restarts",
    "cyclic_lr", "sequential_lr", "chained_scheduler",
]  # fmt: skip


@pytest.mark.parametrize("name", KINDS)
def test_by_default_every_optimizer_step_is_a_scheduler_step(name):
    schedule, expected = _build(name)
    np.testing.assert_allclose(_at(schedule), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", KINDS)
def test_a_given_step_every_makes_epochs_of_that_many_steps(name):
    schedule, expected = _build(name, step_every=2)
    np.testing.assert_allclose(_at(schedule, 12), np.repeat(expected, 2), rtol=1e-6, atol=1e-7)


def test_a_whole_float_step_every_counts_whole_epochs():
    # step_every=2.0 passes the whole-number check: the epoch is still an integer (the
    # count's dtype), which fori_loop needs as its bound.
    schedule = L.multiplicative_lr(lr=1.0, lr_lambda=lambda e: 0.5, step_every=2.0)
    np.testing.assert_allclose(_at(schedule), [1.0, 1.0, 0.5, 0.5, 0.25, 0.25], rtol=1e-6)


def test_cycled_momentum_counts_whole_epochs_too():
    schedule = L.cyclic_lr(base_lr=0.0, max_lr=1.0, step_size_up=2, step_every=2)
    # Momentum from max_momentum 0.9 down to base 0.8 as the triangle rises, per epoch of 2 steps.
    expected = np.repeat([0.9, 0.85, 0.8, 0.85], 2)
    np.testing.assert_allclose(_at(schedule.momentum, 8), expected, rtol=1e-6)


# -- the recursive rules chained_scheduler runs: one child gives the child's closed form ------


def test_chained_multiplicative_lr_multiplies_from_epoch_1_on():
    # torch: lr_0 = lr (lr_lambda(0) is never applied); lr_e = lr_{e-1} * lr_lambda(e).
    factors = lambda e: 0.5 + 0.1 * e  # noqa: E731
    child = L.multiplicative_lr(lr=2.0, lr_lambda=factors)
    expected = 2.0 * np.cumprod(np.where(E > 0, factors(E), 1.0))
    np.testing.assert_allclose(_at(L.chained_scheduler([child])), expected, rtol=1e-6)
    np.testing.assert_allclose(_at(child), expected, rtol=1e-6)


@pytest.mark.parametrize("total_iters", [0, 1, 3])
def test_chained_polynomial_lr_follows_the_closed_form(total_iters):
    # power 2 tells x ** 2 from x * 2; total_iters 1 is where max(total_iters, 1) matters.
    child = L.polynomial_lr(lr=1.0, total_iters=total_iters, power=2.0)
    expected = (1 - np.minimum(E, total_iters) / max(total_iters, 1)) ** 2
    expected = np.where(total_iters == 0, 1.0, expected)
    np.testing.assert_allclose(_at(L.chained_scheduler([child])), expected, rtol=1e-6, atol=1e-7)


def test_chained_step_lr_decays_at_epoch_1_with_step_size_1():
    chained = L.chained_scheduler([L.step_lr(lr=1.0, step_size=1, gamma=0.5)])
    np.testing.assert_allclose(_at(chained), 0.5**E, rtol=1e-6)


def test_constant_lr_with_one_total_iter_restores_the_rate_at_epoch_1():
    child = L.constant_lr(lr=1.0, factor=0.5, total_iters=1)
    expected = np.where(E < 1, 0.5, 1.0)
    np.testing.assert_allclose(_at(child), expected, rtol=1e-6)
    np.testing.assert_allclose(_at(L.chained_scheduler([child])), expected, rtol=1e-6)


@pytest.mark.parametrize(
    "name", ["cosine_annealing_warm_restarts", "cyclic_lr", "one_cycle_lr", "sequential_lr"]
)
def test_chained_absolute_schedulers_replace_the_rate_with_their_own(name):
    # Their get_lr() ignores the current rate: chained alone, each gives its own values.
    if name == "one_cycle_lr":
        child = L.one_cycle_lr(max_lr=1.0, total_steps=6, pct_start=0.5, anneal_strategy="linear")
        # Up from 1/25 to 1 over steps 0..2, then down to 1/25/1e4 over steps 2..5.
        low, top, end = 0.04, 1.0, 0.04 / 1e4
        expected = np.where(E <= 2, low + (top - low) * E / 2, top + (end - top) * (E - 2) / 3)
    else:
        child, expected = _build(name)
    np.testing.assert_allclose(_at(L.chained_scheduler([child])), expected, rtol=1e-6, atol=1e-7)


# -- argument checks ----------------------------------------------------------------------


WHOLE = [
    ("step_lr", dict(lr=0.1, step_size=3), "step_every"),
    ("step_lr", dict(lr=0.1), "step_size"),
    ("constant_lr", dict(lr=0.1), "total_iters"),
    ("linear_lr", dict(lr=0.1), "total_iters"),
    ("polynomial_lr", dict(lr=0.1), "total_iters"),
    ("cosine_annealing_warm_restarts", dict(lr=0.1, T_mult=2), "T_0"),
    ("cosine_annealing_warm_restarts", dict(lr=0.1, T_0=2), "T_mult"),
    ("one_cycle_lr", dict(max_lr=0.1), "total_steps"),
    ("reduce_lr_on_plateau", dict(lr=0.1), "patience"),
    ("reduce_lr_on_plateau", dict(lr=0.1), "cooldown"),
]


@pytest.mark.parametrize("name, given, arg", WHOLE, ids=[f"{n}-{a}" for n, _, a in WHOLE])
def test_counts_of_epochs_must_be_whole_numbers(name, given, arg):
    message = f"lr_scheduler.{name}({arg}=2.5): {arg} must be a whole number"
    with raises_whole(ValueError, message):
        getattr(L, name)(**given, **{arg: 2.5})


NONNEGATIVE = [
    ("constant_lr", "total_iters", "-1"),
    ("linear_lr", "total_iters", "-1"),
    ("polynomial_lr", "total_iters", "-1"),
    ("reduce_lr_on_plateau", "patience", "-1"),
    ("reduce_lr_on_plateau", "cooldown", "-1"),
    ("reduce_lr_on_plateau", "threshold", "-1.0"),
    ("reduce_lr_on_plateau", "min_lr", "-1.0"),
    ("reduce_lr_on_plateau", "eps", "-1.0"),
]


@pytest.mark.parametrize(
    "name, arg, shown", NONNEGATIVE, ids=[f"{n}-{a}" for n, a, _ in NONNEGATIVE]
)
def test_counts_and_margins_must_be_at_least_0(name, arg, shown):
    message = f"lr_scheduler.{name}({arg}={shown}): {arg} must be in [0, inf)"
    with raises_whole(ValueError, message):
        getattr(L, name)(lr=0.1, **{arg: -1})


def test_linear_lr_factors_must_be_in_their_ranges():
    with raises_whole(
        ValueError, "lr_scheduler.linear_lr(start_factor=1.5): start_factor must be in (0, 1]"
    ):
        L.linear_lr(lr=0.1, start_factor=1.5)
    with raises_whole(
        ValueError, "lr_scheduler.linear_lr(end_factor=-0.5): end_factor must be in [0, 1]"
    ):
        L.linear_lr(lr=0.1, end_factor=-0.5)


@pytest.mark.parametrize("name", ["lambda_lr", "multiplicative_lr"])
def test_lr_lambda_must_be_a_function(name):
    message = f"lr_scheduler.{name}(lr_lambda=0.5): lr_lambda must be a function of the epoch"
    with raises_whole(ValueError, message):
        getattr(L, name)(lr=0.1, lr_lambda=0.5)


def test_multi_step_milestones_may_come_in_any_order():
    schedule = L.multi_step_lr(lr=1.0, milestones=[3, 1], gamma=0.5)
    expected = 0.5 ** (1.0 * (E >= 1) + (E >= 3))
    np.testing.assert_allclose(_at(schedule), expected, rtol=1e-6)
    # Eagerly too, where the piecewise schedule built at each call checks its boundaries.
    np.testing.assert_allclose([float(schedule(t)) for t in E], expected, rtol=1e-6)


def test_cyclic_step_sizes_of_1_up_and_0_down_are_allowed():
    # torch: total = up + down, x = 1 + e / total - floor(1 + e / total); up 1: 0, 1, 0, 1...
    up_one = L.cyclic_lr(base_lr=0.0, max_lr=1.0, step_size_up=1)
    np.testing.assert_allclose(_at(up_one), E % 2, atol=1e-7)
    # down 0: a sawtooth that rises over 2 epochs and drops at once.
    no_down = L.cyclic_lr(base_lr=0.0, max_lr=1.0, step_size_up=2, step_size_down=0)
    np.testing.assert_allclose(_at(no_down), (E % 2) / 2, atol=1e-7)


def test_cyclic_scale_by_mode_and_scale_fn():
    triangle = 1 - np.abs(E % 4 - 2) / 2  # base 0, max 1, 2 epochs up and 2 down
    # triangular ignores gamma (torch's scale_fn is 1 there); exp_range's default gamma is 1.
    ignored = L.cyclic_lr(base_lr=0.0, max_lr=1.0, step_size_up=2, gamma=0.5)
    np.testing.assert_allclose(_at(ignored), triangle, atol=1e-7)
    exp_range = L.cyclic_lr(base_lr=0.0, max_lr=1.0, step_size_up=2, mode="exp_range")
    np.testing.assert_allclose(_at(exp_range), triangle, atol=1e-7)
    # A scale_fn is given the cycle (1, 1, 1, 1, 2, 2) by default.
    by_cycle = L.cyclic_lr(base_lr=0.0, max_lr=1.0, step_size_up=2, scale_fn=lambda c: 1 / c)
    np.testing.assert_allclose(_at(by_cycle), triangle / np.floor(1 + E / 4), atol=1e-7)


def test_cyclic_step_size_down_must_be_at_least_0():
    message = "lr_scheduler.cyclic_lr(step_size_down=-1): step_size_down must be in [0, inf)"
    with raises_whole(ValueError, message):
        L.cyclic_lr(base_lr=0.1, max_lr=1.0, step_size_down=-1)


def test_one_cycle_lr_ranges():
    with raises_whole(
        ValueError, "lr_scheduler.one_cycle_lr(pct_start=-0.1): pct_start must be in [0, 1]"
    ):
        L.one_cycle_lr(max_lr=0.1, total_steps=5, pct_start=-0.1)
    for arg in ("div_factor", "final_div_factor"):
        with raises_whole(
            ValueError, f"lr_scheduler.one_cycle_lr({arg}=0.0): {arg} must be in (0, inf)"
        ):
            L.one_cycle_lr(max_lr=0.1, total_steps=5, **{arg: 0.0})


def test_one_cycle_lr_divisors_below_1_and_the_value_held_after_the_last_step():
    # torch's phases with max_lr 1, div_factor 0.5 and final_div_factor 0.5: linear from 2 to 1
    # over steps 0..2, then to 4 over steps 2..5; held from step 5 = total_steps - 1 on.
    schedule = L.one_cycle_lr(
        max_lr=1.0, total_steps=6, pct_start=0.5, anneal_strategy="linear", div_factor=0.5,
        final_div_factor=0.5,
    )  # fmt: skip
    np.testing.assert_allclose(_at(schedule, 8), [2, 1.5, 1, 2, 3, 4, 4, 4], rtol=1e-6)


def test_one_cycle_lr_of_one_step_is_at_its_lowest():
    # torch: the one step is the end of the last phase, max_lr / div_factor / final_div_factor.
    for schedule in (
        L.one_cycle_lr(max_lr=1.0, total_steps=1),
        L.one_cycle_lr(max_lr=1.0, epochs=1, steps_per_epoch=1),
    ):
        np.testing.assert_allclose(_at(schedule, 3), [4e-6] * 3, rtol=1e-6)


def test_one_cycle_lr_options_reach_the_schedule():
    by_epochs = L.one_cycle_lr(max_lr=1.0, epochs=2, steps_per_epoch=3, step_every=2)
    by_total = L.one_cycle_lr(max_lr=1.0, total_steps=6)
    # T = epochs * steps_per_epoch = 6 (torch's meaning); step_every 2: 2 optimizer steps each.
    np.testing.assert_allclose(_at(by_epochs, 12), np.repeat(_at(by_total), 2), rtol=1e-6)
    assert by_total.momentum is not None
    assert L.one_cycle_lr(max_lr=1.0, total_steps=6, cycle_momentum=False).momentum is None


def test_one_cycle_lr_needs_a_length():
    message = (
        "lr_scheduler.one_cycle_lr(total_steps=None): give total_steps, or epochs and "
        "steps_per_epoch"
    )
    with raises_whole(ValueError, message):
        L.one_cycle_lr(max_lr=0.1, epochs=2)
    message = (
        "lr_scheduler.one_cycle_lr(steps_per_epoch=0): steps_per_epoch must be a whole number >= 1"
    )
    with raises_whole(ValueError, message):
        L.one_cycle_lr(max_lr=0.1, epochs=2, steps_per_epoch=0)


def test_one_cycle_lr_refuses_a_first_phase_of_no_length_in_whole():
    message = (
        "lr_scheduler.one_cycle_lr(pct_start=0.1): pct_start * total_steps (10) must not be 1: "
        "the first phase would end where it starts, at step 0"
    )
    with raises_whole(ValueError, message):
        L.one_cycle_lr(max_lr=0.1, total_steps=10, pct_start=0.1)


def _torch_one_cycle(e, max_lr, total_steps, pct_start, div_factor, final_div_factor):
    """torch 2.13's OneCycleLR.get_lr(), linear and three-phase, in float64."""
    initial = max_lr / div_factor
    phases = [
        (float(pct_start * total_steps) - 1, initial, max_lr),
        (float(2 * pct_start * total_steps) - 2, max_lr, initial),
        (total_steps - 1, initial, initial / final_div_factor),
    ]
    start = 0.0
    for i, (end, first, last) in enumerate(phases):
        if e <= end or i == len(phases) - 1:  # a step at a phase's end is that phase's
            return (last - first) * ((e - start) / (end - start)) + first
        start = end


def test_one_cycle_lr_takes_a_phase_end_from_the_phase_it_ends_to_the_bit(x64):
    # (0.3 - 0.03) * 1 + 0.03 is 0.30000000000000004, the next phase's start 0.3: at steps 2
    # and 4, the ends of the first two phases, torch's value is the ending phase's (torch 2.13
    # gives these ten numbers to the bit). Step by step: vmapped or jitted, XLA may round the
    # division by the phase's length otherwise (an ulp at steps 5 and 7).
    numbers = dict(max_lr=0.3, total_steps=10, pct_start=0.3, div_factor=10.0,
                   final_div_factor=1e4)  # fmt: skip
    schedule = L.one_cycle_lr(**numbers, anneal_strategy="linear", three_phase=True)
    expected = [_torch_one_cycle(e, **numbers) for e in range(10)]
    assert expected[2] != 0.3
    assert [float(schedule(e)) for e in range(10)] == expected


def test_gradients_through_a_traced_pct_start_of_a_phase_of_no_length_are_finite():
    # The phase's division by its length 0 is replaced by a division by 1 before the result is
    # discarded: a 0 / 0 there would make the gradient NaN even where its value is not used.
    schedule = L.one_cycle_lr(max_lr=1.0, total_steps=2, pct_start=0.25)
    rate = lambda pct: dataclasses.replace(schedule, pct_start=pct)(0)  # noqa: E731
    assert float(jax.grad(rate)(0.5)) == 0.0


@pytest.mark.parametrize("name", ["sequential_lr", "chained_scheduler"])
def test_an_empty_list_of_schedulers_is_refused(name):
    extra = {"milestones": []} if name == "sequential_lr" else {}
    message = f"lr_scheduler.{name}(schedulers=()): at least one scheduler is required"
    with raises_whole(ValueError, message):
        getattr(L, name)(schedulers=[], **extra)


def test_the_classes_take_any_iterable_of_schedulers():
    # The checks keep them (and the milestones) as tuples: an iterator, consumed by the check,
    # is not lost.
    child = L.exponential_lr(lr=1.0, gamma=0.5)
    chained = L.ChainedScheduler(schedulers=iter([child]))
    sequential = L.SequentialLR(schedulers=iter([child, child]), milestones=iter([2]))
    np.testing.assert_allclose(_at(chained), 0.5**E, rtol=1e-6)
    np.testing.assert_allclose(_at(sequential), 0.5 ** np.where(E < 2, E, E - 2), rtol=1e-6)


def test_chained_starts_from_the_first_schedulers_lr():
    # torch's optimizer has one rate; here it is the first child's (the second's lr is unused).
    chained = L.chained_scheduler(
        [L.step_lr(lr=1.0, step_size=2, gamma=0.5), L.exponential_lr(lr=3.0, gamma=0.5)]
    )
    np.testing.assert_allclose(_at(chained), 0.5 ** (E // 2 + E), rtol=1e-6)


def test_children_must_be_lr_scheduler_schedules_of_step_every_1():
    message = (
        "lr_scheduler.chained_scheduler(schedulers=(0.5,)): expected lr_scheduler schedules, "
        "got 0.5"
    )
    with raises_whole(ValueError, message):
        L.chained_scheduler([0.5])
    per_epoch = L.exponential_lr(lr=1.0, gamma=0.5, step_every=2)
    message = (
        f"lr_scheduler.sequential_lr(schedulers=({per_epoch!r},)): lr_scheduler.exponential_lr "
        "has step_every=2: give step_every to the parent only (children count scheduler steps)"
    )
    with raises_whole(ValueError, message):
        L.sequential_lr([per_epoch], milestones=[])


def test_reduce_lr_on_plateau_needs_a_positive_lr():
    message = "lr_scheduler.reduce_lr_on_plateau(lr=0.0): lr must be in (0, inf)"
    with raises_whole(ValueError, message):
        L.reduce_lr_on_plateau(lr=0.0)


def _plateau_numpy(metrics, lr, **options):
    """reduce_lr_on_plateau's docstring rule (torch's step(metric)): the rate of each step."""
    o = {**PLATEAU_DEFAULTS, **options}
    rel, sign = o["threshold_mode"] == "rel", 1 if o["mode"] == "min" else -1
    rates, best, bad, cooling = [], sign * np.inf, 0, 0
    for m in metrics:
        rates.append(lr)
        if o["mode"] == "min":
            better = m < (best * (1 - o["threshold"]) if rel else best - o["threshold"])
        else:
            better = m > (best * (1 + o["threshold"]) if rel else best + o["threshold"])
        best, bad = (m, 0) if better else (best, bad + 1)
        if cooling > 0:
            cooling, bad = cooling - 1, 0
        if bad > o["patience"]:
            new = max(lr * o["factor"], o["min_lr"])
            lr = new if lr - new > o["eps"] else lr
            cooling, bad = o["cooldown"], 0
    return np.asarray(rates)


PLATEAU = {
    # An equal metric is no improvement (strict <, >) with threshold 0.
    "min-equal": ([1.0, 1.0, 0.5, 0.5, 0.5], dict(threshold=0.0)),
    "max-equal": ([1.0, 1.0, 2.0, 2.0, 2.0], dict(mode="max", threshold=0.0)),
    # best 2, threshold 0.1: abs asks for < 1.9 (min) or > 2.1 (max), rel for < 1.8 or > 2.2.
    "min-abs": ([2.0, 1.85, 1.85, 1.85], dict(threshold_mode="abs", threshold=0.1)),
    "max-abs": ([2.0, 2.15, 2.15, 2.15], dict(mode="max", threshold_mode="abs", threshold=0.1)),
    "max-rel": ([2.0, 2.15, 2.3, 2.3], dict(mode="max", threshold=0.1)),
    # lr - lr * factor == eps is not more than eps: no reduction.
    "eps-bound": ([1.0, 1.0, 1.0, 1.0], dict(factor=0.5, eps=0.5)),
}


@pytest.mark.parametrize("case", PLATEAU)
def test_reduce_lr_on_plateau_follows_torchs_rule(case):
    metrics, options = PLATEAU[case]
    options = {"patience": 0, "factor": 0.5, **options}
    tx = L.reduce_lr_on_plateau(lr=1.0, **options)
    expected = _plateau_numpy(metrics, 1.0, **options)
    np.testing.assert_allclose(plateau_rates(tx, jnp.asarray(metrics)), expected, rtol=1e-6)
    assert case == "eps-bound" or np.ptp(expected) > 0


def test_a_float32_plateau_state_stays_float32_when_updated_under_x64():
    # The state keeps the dtypes init gave it (a scan's carry must), though the metric and
    # min_lr are float64 there.
    tx = L.reduce_lr_on_plateau(lr=0.1, patience=0)
    with jax.enable_x64(False):
        state = tx.init(jnp.zeros(()))
    with jax.enable_x64(True):
        for _ in range(2):
            _, state = tx.update(jnp.ones((), jnp.float32), state, value=1.0)
    assert state.lr.dtype == state.best.dtype == jnp.float32
    assert float(state.lr) == pytest.approx(0.01)
