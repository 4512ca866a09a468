"""Schedules: optax's values, numbers as leaves (no retrace, vmap), value semantics, errors."""

import collections
import inspect
import math
import typing

import chex
import jax
import jax.numpy as jnp
import optax
import pytest
from registry import SCHEDULES

import gradtx
from gradtx import _schedules

COUNTS = jnp.arange(201, dtype=jnp.int32)
TRACES = collections.Counter()


@jax.jit
def evaluate(schedule, counts):
    TRACES[type(schedule).__name__] += 1
    return jax.vmap(schedule)(counts)


def assert_close(actual, expected):
    """Within rtol 1e-6, or one float32 ulp of the largest value.

    Near zero, 1 - t / T and 1 + cos(x) cancel: the same formula gives results an
    ulp of the scale apart (as optax's own jitted, vmapped and eager values are).
    """
    expected = jnp.asarray(expected, jnp.result_type(actual))
    atol = float(jnp.finfo(expected.dtype).eps * jnp.max(jnp.abs(expected)))
    chex.assert_trees_all_close(actual, expected, rtol=1e-6, atol=atol)


def case(name, **kwargs):
    return pytest.param(name, kwargs, id=name)


# Each is compared with optax's function of the same name, at counts 0..200.
OPTAX_CASES = [
    case("constant_schedule", value=0.5),
    case("constant_schedule", value=-2),
    case("polynomial_schedule", init_value=1.0, end_value=0.01, power=2, transition_steps=100),
    case(
        "polynomial_schedule",
        init_value=2.0,
        end_value=0.0,
        power=3,
        transition_steps=37,
        transition_begin=50,
    ),
    case("polynomial_schedule", init_value=0.1, end_value=1.0, power=0.5, transition_steps=0),
    case("linear_schedule", init_value=1.0, end_value=0.0, transition_steps=100),
    case(
        "linear_schedule", init_value=0.0, end_value=1e-3, transition_steps=7, transition_begin=20
    ),
    case("linear_schedule", init_value=0.5, end_value=1.0, transition_steps=0, transition_begin=3),
    case("piecewise_constant_schedule", init_value=1.0, boundaries_and_scales={100: 0.1, 50: 0.5}),
    case("piecewise_constant_schedule", init_value=0.3, boundaries_and_scales={0: 2.0, 10: 0.0}),
    case("piecewise_constant_schedule", init_value=0.3),
    case("exponential_decay", init_value=1.0, transition_steps=10, decay_rate=0.9),
    case(
        "exponential_decay",
        init_value=1.0,
        transition_steps=10,
        decay_rate=0.5,
        transition_begin=20,
        staircase=True,
    ),
    case("exponential_decay", init_value=1.0, transition_steps=7, decay_rate=0.5, end_value=0.1),
    case(
        "exponential_decay",
        init_value=0.1,
        transition_steps=10,
        decay_rate=1.5,
        transition_begin=5,
        end_value=1.0,
    ),
    # optax clips before transition_begin too.
    case("exponential_decay", init_value=1.0, transition_steps=9, decay_rate=0.5, end_value=2.0),
    case("exponential_decay", init_value=1.0, transition_steps=0, decay_rate=0.5),
    case("exponential_decay", init_value=1.0, transition_steps=10, decay_rate=0.0, end_value=0.5),
    case("cosine_decay_schedule", init_value=1.0, decay_steps=100),
    case("cosine_decay_schedule", init_value=0.5, decay_steps=33, alpha=0.1, exponent=2.0),
    case("cosine_decay_schedule", init_value=2, decay_steps=150, alpha=0.5, exponent=0.5),
    case(
        "warmup_cosine_decay_schedule",
        init_value=0.0,
        peak_value=1.0,
        warmup_steps=10,
        decay_steps=100,
    ),
    case(
        "warmup_cosine_decay_schedule",
        init_value=0.1,
        peak_value=0.5,
        warmup_steps=0,
        decay_steps=50,
        end_value=0.05,
        exponent=2.0,
    ),
    case(
        "warmup_cosine_decay_schedule",
        init_value=0.0,
        peak_value=0.0,
        warmup_steps=5,
        decay_steps=20,
        end_value=0.1,
    ),
    case("warmup_constant_schedule", init_value=0.0, peak_value=1.0, warmup_steps=25),
    case("warmup_constant_schedule", init_value=0.5, peak_value=0.1, warmup_steps=1),
    case(
        "warmup_exponential_decay_schedule",
        init_value=0.0,
        peak_value=1.0,
        warmup_steps=10,
        transition_steps=10,
        decay_rate=0.8,
    ),
    case(
        "warmup_exponential_decay_schedule",
        init_value=0.0,
        peak_value=1.0,
        warmup_steps=10,
        transition_steps=15,
        decay_rate=0.5,
        transition_begin=20,
        staircase=True,
        end_value=0.1,
    ),
    case(
        "warmup_exponential_decay_schedule",
        init_value=0.2,
        peak_value=1.0,
        warmup_steps=0,
        transition_steps=10,
        decay_rate=0.5,
    ),
    case(
        "piecewise_interpolate_schedule",
        interpolate_type="linear",
        init_value=1.0,
        boundaries_and_scales={4: 0.1, 8: 0.01},
    ),
    case(
        "piecewise_interpolate_schedule",
        interpolate_type="cosine",
        init_value=2.0,
        boundaries_and_scales={40: 3.0, 20: 0.5, 100: 0.0},
    ),
    case(
        "piecewise_interpolate_schedule",
        interpolate_type="linear",
        init_value=1.0,
        boundaries_and_scales={0: 0.5, 1: 2.0, 10: 1.0},
    ),
    case("piecewise_interpolate_schedule", interpolate_type="cosine", init_value=1.0),
    case("cosine_onecycle_schedule", transition_steps=100, peak_value=1.0),
    case(
        "cosine_onecycle_schedule",
        transition_steps=150,
        peak_value=0.01,
        pct_start=0.1,
        div_factor=10.0,
        final_div_factor=100.0,
    ),
    case("cosine_onecycle_schedule", transition_steps=37, peak_value=2.0, pct_start=0.5),
    case("linear_onecycle_schedule", transition_steps=100, peak_value=1.0),
    case(
        "linear_onecycle_schedule",
        transition_steps=123,
        peak_value=0.1,
        pct_start=0.2,
        pct_final=0.6,
        div_factor=5.0,
        final_div_factor=50.0,
    ),
    case(
        "sgdr_schedule",
        cosine_kwargs=[
            dict(init_value=0.0, peak_value=1.0, warmup_steps=5, decay_steps=30),
            dict(init_value=0.1, peak_value=0.5, warmup_steps=0, decay_steps=50, end_value=0.01),
            dict(init_value=0.0, peak_value=0.2, warmup_steps=10, decay_steps=100, exponent=2.0),
        ],
    ),
    case(
        "sgdr_schedule",
        cosine_kwargs=[dict(init_value=0.0, peak_value=1.0, warmup_steps=10, decay_steps=40)],
    ),
]


@pytest.mark.parametrize("name, kwargs", OPTAX_CASES)
def test_matches_optax(name, kwargs):
    ours = getattr(gradtx, name)(**kwargs)
    theirs = getattr(optax, name)(**kwargs)
    assert_close(evaluate(ours, COUNTS), jax.vmap(theirs)(COUNTS))


def test_join_schedules_matches_optax():
    def parts(lib):
        return [
            lib.linear_schedule(0.0, 1.0, transition_steps=30),
            lib.cosine_decay_schedule(1.0, decay_steps=40, alpha=0.1),
            lib.constant_schedule(0.5),
            lib.exponential_decay(0.5, transition_steps=10, decay_rate=0.8),
        ]

    boundaries = [30, 90, 90]  # the constant lasts no step
    expected = jax.vmap(optax.join_schedules(parts(optax), boundaries))(COUNTS)
    ours = gradtx.join_schedules(parts(gradtx), boundaries)
    assert_close(evaluate(ours, COUNTS), expected)
    # optax's schedules (plain functions) can be joined too.
    mixed = gradtx.join_schedules([*parts(gradtx)[:2], *parts(optax)[2:]], boundaries)
    assert_close(evaluate(mixed, COUNTS), expected)


def test_warmup_constant_without_warmup_is_the_peak():
    # optax would hold init_value for ever.
    schedule = gradtx.warmup_constant_schedule(0.0, 1.0, warmup_steps=0)
    chex.assert_trees_all_close(evaluate(schedule, COUNTS), jnp.ones(COUNTS.shape))


def test_onecycle_keeps_its_peak_when_boundaries_coincide():
    # floor(0.3 * 2) == floor(0.4 * 2) == 0: optax's dict drops the rise to the peak.
    schedule = gradtx.linear_onecycle_schedule(2, peak_value=1.0, pct_start=0.3, pct_final=0.4)
    assert float(schedule(0)) == pytest.approx(1 / 25)
    assert float(schedule(2)) == pytest.approx(1 / 25 / 1e4)


# -- schedules that optax does not have, against naive references --------------


def warm_restarts_reference(t, init_value, t_0, t_mult, eta_min):
    """PyTorch's CosineAnnealingWarmRestarts after t calls of step(), which walk the cycles."""
    t_i, t_cur = t_0, t
    while t_cur >= t_i:
        t_cur, t_i = t_cur - t_i, t_i * t_mult
    return eta_min + (init_value - eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2


@pytest.mark.parametrize(
    "period, period_mult", [(1, 1), (7, 1), (1, 2), (2, 2), (5, 2), (1, 3), (3, 3), (10, 4)]
)
def test_cosine_warm_restarts_matches_pytorch(period, period_mult):
    schedule = gradtx.cosine_warm_restarts_schedule(2.0, period, period_mult, min_value=0.1)
    expected = [warm_restarts_reference(t, 2.0, period, period_mult, 0.1) for t in range(201)]
    chex.assert_trees_all_close(evaluate(schedule, COUNTS), jnp.array(expected), atol=1e-6)


@pytest.mark.parametrize("period_mult", [2, 3, 5, 10])
def test_cosine_warm_restarts_is_exact_at_late_restarts(period_mult):
    # The cycle index comes from a logarithm: at a restart it must not be off by one.
    cycles = range(1, 25)
    restarts = [(period_mult**n - 1) // (period_mult - 1) for n in cycles]
    restarts = jnp.array([r for r in restarts if r < 2**24])  # integers exact in float32
    schedule = gradtx.cosine_warm_restarts_schedule(1.0, 1, period_mult)
    assert jnp.all(evaluate(schedule, restarts) == 1.0)
    # The step before is the last of the previous cycle, of length period_mult**(n - 1).
    ends = [(1 + math.cos(math.pi * (1 - period_mult ** (1 - n)))) / 2 for n in cycles]
    chex.assert_trees_all_close(
        evaluate(schedule, restarts - 1), jnp.array(ends[: len(restarts)]), atol=1e-7
    )


def test_step_decay_matches_pytorch_step_lr():
    schedule = gradtx.step_decay_schedule(0.1, step_size=30, gamma=0.5)
    expected = [0.1 * 0.5 ** (t // 30) for t in range(201)]
    assert_close(evaluate(schedule, COUNTS), expected)


@pytest.mark.parametrize("staircase", [False, True])
def test_inverse_time_decay_matches_keras(staircase):
    schedule = gradtx.inverse_time_decay(0.1, decay_steps=7, decay_rate=0.5, staircase=staircase)
    p = [t // 7 if staircase else t / 7 for t in range(201)]
    expected = [0.1 / (1 + 0.5 * p_t) for p_t in p]
    assert_close(evaluate(schedule, COUNTS), expected)


def test_inverse_time_decay_matches_pytorch_asgd_step_size():
    # torch.optim.ASGD: eta_t = lr / (1 + lambd * lr * step) ** alpha, step from 0.
    lr, lambd, alpha = 0.1, 1e-2, 0.75
    schedule = gradtx.inverse_time_decay(lr, 1, lambd * lr, power=alpha)
    expected = [lr / (1 + lambd * lr * t) ** alpha for t in range(201)]
    assert_close(evaluate(schedule, COUNTS), expected)


def hugging_face_inverse_sqrt(step, num_warmup_steps, timescale):
    """transformers' get_inverse_sqrt_schedule multiplier."""
    if step < num_warmup_steps:
        return float(step) / float(max(1, num_warmup_steps))
    shift = timescale - num_warmup_steps
    return 1.0 / math.sqrt((step + shift) / timescale)


@pytest.mark.parametrize(
    "warmup_steps, timescale, hf_timescale", [(0, None, 1), (10, None, 10), (10, 100, 100)]
)
def test_inverse_sqrt_matches_hugging_face(warmup_steps, timescale, hf_timescale):
    schedule = gradtx.inverse_sqrt_schedule(0.5, warmup_steps, timescale)
    expected = [0.5 * hugging_face_inverse_sqrt(t, warmup_steps, hf_timescale) for t in range(201)]
    assert_close(evaluate(schedule, COUNTS), expected)


def test_inverse_sqrt_after_warmup_is_the_transformer_rsqrt():
    schedule = gradtx.inverse_sqrt_schedule(1.0, warmup_steps=16)
    expected = jnp.sqrt(16 / jnp.maximum(COUNTS, 16))
    after = COUNTS >= 16
    assert_close(evaluate(schedule, COUNTS)[after], expected[after])


# -- numbers are leaves: no retrace, vmap --------------------------------------

# Two argument sets per public schedule, with the same structure and different numbers.
PAIRS = SCHEDULES


def _returns_schedule(f) -> bool:
    try:
        returned = typing.get_type_hints(f).get("return")
    except (NameError, TypeError):
        return False
    return inspect.isclass(returned) and issubclass(returned, gradtx.Schedule)


def test_every_public_schedule_is_tested():
    public = {
        n
        for n, f in vars(gradtx).items()
        if getattr(f, "__module__", "") == _schedules.__name__
        or (inspect.isfunction(f) and _returns_schedule(f))  # cooling schedules, ...
    }
    assert "logarithmic_cooling" in public
    assert public == set(PAIRS)


@pytest.fixture(params=sorted(PAIRS), name="pair")
def fixture_pair(request):
    name = request.param
    kwargs_a, kwargs_b = PAIRS[name]
    factory = getattr(gradtx, name)
    return name, factory(**kwargs_a), factory(**kwargs_b), factory(**kwargs_a)


def test_changing_numbers_does_not_retrace(pair):
    _, a, b, _ = pair
    assert jax.tree.structure(a) == jax.tree.structure(b)
    values_a = evaluate(a, COUNTS)
    traces = TRACES[type(a).__name__]
    values_b = evaluate(b, COUNTS)
    assert TRACES[type(a).__name__] == traces
    assert not jnp.allclose(values_a, values_b)  # the new numbers were used
    assert_close(b(37), values_b[37])  # eagerly, with a Python int


def test_vmap_over_numbers(pair):
    _, a, b, _ = pair
    stacked = jax.tree.map(lambda x, y: jnp.stack([x, y]), a, b)
    values = jax.jit(jax.vmap(evaluate, in_axes=(0, None)))(stacked, COUNTS)
    assert_close(values, jnp.stack([evaluate(a, COUNTS), evaluate(b, COUNTS)]))


def test_value_semantics(pair):
    name, a, b, a_again = pair
    assert a.name == name  # errors name the factory
    assert a == a_again and hash(a) == hash(a_again)
    assert a != b
    assert a != gradtx.constant_schedule(1.0) or name == "constant_schedule"
    assert repr(a).startswith(type(a).__name__ + "(")
    for field in a.hyperparams():
        assert f"{field}=" in repr(a)


def test_repr_shows_the_numbers():
    assert repr(gradtx.cosine_decay_schedule(0.5, 100, alpha=0.1)) == (
        "CosineDecaySchedule(init_value=0.5, decay_steps=100, alpha=0.1, exponent=1.0)"
    )
    assert repr(gradtx.piecewise_constant_schedule(1.0, {100: 0.1, 50: 0.5})) == (
        "PiecewiseConstantSchedule(init_value=1.0, boundaries=(50, 100), scales=(0.5, 0.1))"
    )


def test_factories_accept_tracers():
    # Validation skips traced numbers, so a schedule can be built inside vmap.
    def value(warmup, pct):
        cosine = gradtx.warmup_cosine_decay_schedule(0.0, 1.0, warmup, decay_steps=100)
        onecycle = gradtx.linear_onecycle_schedule(100, 1.0, pct_start=pct, pct_final=0.9)
        return cosine(20) + onecycle(20)

    values = jax.jit(jax.vmap(value))(jnp.array([10, 40]), jnp.array([0.1, 0.5]))
    expected = [value(10, 0.1), value(40, 0.5)]
    chex.assert_trees_all_close(values, jnp.stack(expected), rtol=1e-6)


def test_float64_under_x64():
    with jax.enable_x64(True):
        schedule = gradtx.cosine_decay_schedule(1.0, decay_steps=3)
        assert schedule(jnp.int64(1)).dtype == jnp.float64
        assert schedule(1) == pytest.approx(0.75, abs=1e-15)


def test_a_schedule_as_learning_rate_does_not_retrace_the_step():
    @jax.jit
    def step(tx, state, grads):
        TRACES["step"] += 1
        return tx.update(grads, state)

    grads = {"w": jnp.ones(3)}
    for end, lr in ((0.0, 0.5), (0.5, 0.75)):  # halfway through, at step 5 of 10
        tx = gradtx.scale_by_learning_rate(gradtx.linear_schedule(1.0, end, 10))
        state = tx.init(grads)._replace(count=jnp.int32(5))
        updates, _ = step(tx, state, grads)
        chex.assert_trees_all_close(updates["w"], jnp.full(3, -lr))
    assert TRACES["step"] == 1


# -- errors --------------------------------------------------------------------

INVALID = [
    (
        "polynomial_schedule",
        dict(init_value=1.0, end_value=0.0, power=1, transition_steps=-1),
        r"^polynomial_schedule\(transition_steps=-1\): transition_steps must be in \[0, inf\)$",
    ),
    (
        "polynomial_schedule",
        dict(init_value=1.0, end_value=0.0, power=1, transition_steps=9, transition_begin=-2),
        r"polynomial_schedule\(transition_begin=-2\)",
    ),
    (
        "linear_schedule",
        dict(init_value=1.0, end_value=0.0, transition_steps=-5),
        "transition_steps",
    ),
    (
        "linear_schedule",
        dict(init_value=1.0, end_value=0.0, transition_steps=5, transition_begin=-1),
        "transition_begin",
    ),
    (
        "piecewise_constant_schedule",
        dict(init_value=1.0, boundaries_and_scales={10: -0.1}),
        r"^piecewise_constant_schedule\(scales=\(-0.1,\)\): every scale .* must be >= 0$",
    ),
    (
        "piecewise_constant_schedule",
        dict(init_value=1.0, boundaries_and_scales={-1: 0.5}),
        r"boundaries=\(-1,\)\): boundaries must be >= 0",
    ),
    (
        "exponential_decay",
        dict(init_value=1.0, transition_steps=-1, decay_rate=0.5),
        r"exponential_decay\(transition_steps=-1\)",
    ),
    (
        "exponential_decay",
        dict(init_value=1.0, transition_steps=1, decay_rate=-0.5),
        r"exponential_decay\(decay_rate=-0.5\): decay_rate must be in \[0, inf\)",
    ),
    (
        "exponential_decay",
        dict(init_value=1.0, transition_steps=1, decay_rate=0.5, transition_begin=-1),
        "transition_begin",
    ),
    (
        "step_decay_schedule",
        dict(init_value=1.0, step_size=0),
        r"step_decay_schedule\(step_size=0\): step_size must be in \(0, inf\)",
    ),
    ("step_decay_schedule", dict(init_value=1.0, step_size=3, gamma=-1.0), "gamma"),
    (
        "cosine_decay_schedule",
        dict(init_value=1.0, decay_steps=0),
        r"^cosine_decay_schedule\(decay_steps=0\): decay_steps must be in \(0, inf\)$",
    ),
    ("cosine_warm_restarts_schedule", dict(init_value=1.0, period=0), r"\(period=0\)"),
    (
        "cosine_warm_restarts_schedule",
        dict(init_value=1.0, period=2.5),
        r"\(period=2.5\): period must be a whole number",
    ),
    (
        "cosine_warm_restarts_schedule",
        dict(init_value=1.0, period=2, period_mult=0.5),
        r"period_mult must be in \[1, inf\)",
    ),
    (
        "cosine_warm_restarts_schedule",
        dict(init_value=1.0, period=2, period_mult=1.5),
        "period_mult must be a whole number",
    ),
    (
        "warmup_constant_schedule",
        dict(init_value=0.0, peak_value=1.0, warmup_steps=-1),
        r"warmup_constant_schedule\(warmup_steps=-1\)",
    ),
    (
        "warmup_cosine_decay_schedule",
        dict(init_value=0.0, peak_value=1.0, warmup_steps=-1, decay_steps=10),
        "warmup_steps must be in",
    ),
    (
        "warmup_cosine_decay_schedule",
        dict(init_value=0.0, peak_value=1.0, warmup_steps=10, decay_steps=10),
        r"^warmup_cosine_decay_schedule\(decay_steps=10\): decay_steps must be > warmup_steps=10$",
    ),
    (
        "warmup_exponential_decay_schedule",
        dict(init_value=0.0, peak_value=1.0, warmup_steps=-1, transition_steps=1, decay_rate=0.5),
        "warmup_steps",
    ),
    (
        "warmup_exponential_decay_schedule",
        dict(init_value=0.0, peak_value=1.0, warmup_steps=1, transition_steps=1, decay_rate=-1),
        r"warmup_exponential_decay_schedule\(decay_rate=-1\)",
    ),
    (
        "piecewise_interpolate_schedule",
        dict(interpolate_type="quadratic", init_value=1.0),
        r"interpolate_type='quadratic'\): interpolate_type must be one of 'linear', 'cosine'",
    ),
    (
        "piecewise_interpolate_schedule",
        dict(interpolate_type="linear", init_value=1.0, boundaries_and_scales={5: -2.0}),
        "every scale",
    ),
    (
        "cosine_onecycle_schedule",
        dict(transition_steps=0, peak_value=1.0),
        r"cosine_onecycle_schedule\(transition_steps=0\)",
    ),
    (
        "cosine_onecycle_schedule",
        dict(transition_steps=10, peak_value=1.0, pct_start=1.5),
        r"pct_start must be in \[0, 1\]",
    ),
    (
        "cosine_onecycle_schedule",
        dict(transition_steps=10, peak_value=1.0, div_factor=0.0),
        "div_factor",
    ),
    (
        "linear_onecycle_schedule",
        dict(transition_steps=10, peak_value=1.0, pct_start=0.9, pct_final=0.5),
        r"linear_onecycle_schedule\(pct_final=0.5\): pct_final must be >= pct_start=0.9",
    ),
    (
        "linear_onecycle_schedule",
        dict(transition_steps=10, peak_value=1.0, final_div_factor=-1.0),
        "final_div_factor",
    ),
    (
        "inverse_sqrt_schedule",
        dict(init_value=1.0, warmup_steps=-1),
        r"inverse_sqrt_schedule\(warmup_steps=-1\)",
    ),
    (
        "inverse_sqrt_schedule",
        dict(init_value=1.0, timescale=0),
        r"inverse_sqrt_schedule\(timescale=0\): timescale must be in \(0, inf\)",
    ),
    (
        "inverse_time_decay",
        dict(init_value=1.0, decay_steps=0, decay_rate=0.5),
        r"^inverse_time_decay\(decay_steps=0\): decay_steps must be in \(0, inf\)$",
    ),
    (
        "inverse_time_decay",
        dict(init_value=1.0, decay_steps=1, decay_rate=-0.5),
        r"inverse_time_decay\(decay_rate=-0.5\)",
    ),
    (
        "join_schedules",
        dict(schedules=[], boundaries=[]),
        r"join_schedules\(schedules=\(\)\): at least one schedule",
    ),
    (
        "join_schedules",
        dict(schedules=[gradtx.constant_schedule(1.0)] * 2, boundaries=[]),
        r"join_schedules\(boundaries=\(\)\): needs 1",
    ),
    (
        "join_schedules",
        dict(schedules=[gradtx.constant_schedule(1.0)] * 3, boundaries=[20, 10]),
        "increasing order",
    ),
    ("sgdr_schedule", dict(cosine_kwargs=[]), r"sgdr_schedule\(cycles=\(\)\): at least one cycle"),
    (
        "sgdr_schedule",
        dict(cosine_kwargs=[dict(init_value=0.0, peak_value=1.0, warmup_steps=5, decay_steps=5)]),
        "decay_steps must be > warmup_steps=5",
    ),
]


@pytest.mark.parametrize("name, kwargs, match", INVALID, ids=[i[0] for i in INVALID])
def test_invalid_arguments_are_rejected(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        getattr(gradtx, name)(**kwargs)


def test_replace_validates():
    schedule = gradtx.piecewise_constant_schedule(1.0, {10: 0.5})
    with pytest.raises(ValueError, match="decay_steps must be in"):
        gradtx.cosine_decay_schedule(1.0, 10).replace(decay_steps=0)
    with pytest.raises(ValueError, match=r"scales=\(0.5,\)\): needs one scale per boundary"):
        schedule.replace(boundaries=(10, 20))


def test_join_schedules_rejects_what_is_not_a_schedule():
    with pytest.raises(TypeError, match="join_schedules: expected a schedule or a function"):
        gradtx.join_schedules([gradtx.constant_schedule(1.0), 0.5], [10])
