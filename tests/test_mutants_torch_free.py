"""Tests that kill the mutants of gradtx/compat/pytorch/_schedule_free.py and
compat/pytorch/_parameter_free.py the other test files let survive.

The verdicts, mutant by mutant: tests/MUTATION.md (issue 20). The references are the
docstrings' rules, as the authors' packages have them (schedulefree 1.4.1: RAdam's
rectification only once rho_t > 4; prodigyopt 1.1.2, dadaptation 3.2), written here in NumPy,
and the checks every gradtx transform makes (ranges named in whole messages; a leaf's
arithmetic in its compute dtype, float32 for float32 leaves even under x64).
"""

from __future__ import annotations

from errors import raises_whole
import jax.numpy as jnp
import numpy as np
from oracles import radam_rectification
import pytest
from replay import run_steps

import gradtx
from gradtx._base import HyperparameterError
from gradtx.compat.pytorch._parameter_free import (
    _averaged_step,
    ScaleByDadaptAdagrad,
    ScaleByDadaptSgd,
)
from gradtx.compat.pytorch._schedule_free import RectifiedRate, ScaleByRmsOnceRectified

# rho_5 is exactly 4.0 in float64 at this b2 (found by bisection): the boundary of the
# authors' test "rho_t > 4", where step 5 is still in the SGD phase.
_B2_RHO5_IS_4 = 0.7733030257306824


def _rect(t, b2):
    """RAdam's rectification r_t, the authors' formula, in NumPy float64."""
    return radam_rectification(t, b2)[1]


# -- _schedule_free -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "arg", "value", "interval"),
    [
        ("rate", "b2", 0.0, "(0, 1)"),
        ("rate", "b2", 1.0, "(0, 1)"),
        ("rate", "b2", 1.5, "(0, 1)"),
        ("rate", "b2", -0.5, "(0, 1)"),
        ("rate", "learning_rate", -1.0, "[0, inf)"),
        ("rms", "b2", 0.0, "(0, 1)"),
        ("rms", "b2", 1.0, "(0, 1)"),
        ("rms", "b2", 1.5, "(0, 1)"),
        ("rms", "b2", -0.5, "(0, 1)"),
        ("rms", "eps", -1.0, "[0, inf)"),
    ],
)
def test_rectified_parts_refuse_out_of_range_hyperparameters(kind, arg, value, interval):
    if kind == "rate":
        cls, name, options = RectifiedRate, "rectified_rate", {"learning_rate": 0.1}
    else:
        cls, name, options = ScaleByRmsOnceRectified, "scale_by_rms_once_rectified", {}
    options[arg] = value
    message = f"{name}({arg}={value!r}): {arg} must be in {interval}"
    with raises_whole(HyperparameterError, message):
        cls(**options)


def test_rectified_parts_accept_b2_just_inside_its_open_interval():
    for b2 in (1e-3, 0.999):
        RectifiedRate(learning_rate=0.1, b2=b2)
        ScaleByRmsOnceRectified(b2=b2)


def test_rho_exactly_4_is_still_the_sgd_phase(x64):
    # The authors step adaptively only once rho_t > 4; at rho_5 == 4.0 step 5 is an SGD step:
    # rate lr (silent_sgd_phase=False) and the gradient not normalised.
    rate = RectifiedRate(learning_rate=1.0, b2=_B2_RHO5_IS_4, silent_sgd_phase=False)
    assert float(rate(4)) == 1.0
    assert float(rate(5)) == pytest.approx(_rect(6, _B2_RHO5_IS_4), rel=1e-9)
    grads = [{"w": jnp.asarray([3.0, -2.0])}] * 6
    run = run_steps(ScaleByRmsOnceRectified(b2=_B2_RHO5_IS_4), grads, jit="eager")
    np.testing.assert_array_equal(run.updates[4]["w"], [3.0, -2.0])  # step 5
    np.testing.assert_allclose(run.updates[5]["w"], [1.0, -1.0], rtol=1e-6)  # step 6


def test_rectified_rate_reads_a_schedule_at_the_step():
    lr = gradtx.linear_schedule(1.0, 0.0, 20)
    rate = RectifiedRate(learning_rate=lr, b2=0.9)
    for k in (9, 14):
        expected = (1.0 - k / 20) * _rect(k + 1, 0.9)
        assert float(rate(k)) == pytest.approx(expected, rel=1e-5)


def test_rectified_rate_at_the_saturated_count_is_the_full_rate():
    # The counts saturate at int32's maximum; t = count + 1 must not wrap to -2**31.
    rate = RectifiedRate(learning_rate=0.5, b2=0.999)
    assert float(rate(jnp.asarray(2**31 - 1, jnp.int32))) == pytest.approx(0.5, rel=1e-6)


def test_rms_once_rectified_keeps_bfloat16_updates_bfloat16():
    grads = [{"w": jnp.asarray([1.0, -2.0], jnp.bfloat16)}] * 6
    run = run_steps(ScaleByRmsOnceRectified(b2=0.9), grads, jit="eager")
    for updates in run.updates:
        assert updates["w"].dtype == jnp.bfloat16


def test_rms_once_rectified_adds_eps_in_float32_for_float32_leaves_under_x64(x64):
    # sqrt(v^) = 1 exactly (b2 = 0.75: v stays 1, 1 - b2**1000 = 1); eps = 0.75 ulp(1) rounds
    # 1 + eps up to 1 + ulp in float32, so g / (1 + eps) is 1 - ulp, where float64
    # arithmetic rounded once would give 1 - ulp / 2.
    eps = 1.5 * 2.0**-24
    tx = ScaleByRmsOnceRectified(b2=0.75, eps=eps)
    one = jnp.ones(1, jnp.float32)
    state = tx.init({"w": one})._replace(count=jnp.asarray(999, jnp.int32), nu={"w": one})
    updates, _ = tx.update({"w": one}, state)
    expected = np.float32(1) / (np.float32(1) + np.float32(eps))
    assert updates["w"].dtype == jnp.float32
    np.testing.assert_array_equal(updates["w"], [expected])
    assert expected != np.float32(1 / (1 + eps))


# -- _parameter_free: the checks ----------------------------------------------------------

_LR = "lr must be > 0 (a schedule may reach 0)"
_BETAS = "betas must be a pair, each in [0, 1)"
_GROWTH = "growth_rate must be >= 1 (inf: no limit)"


@pytest.mark.parametrize(
    ("port", "arg", "value", "rule"),
    [
        ("prodigy", "lr", 0.0, _LR),
        ("prodigy", "lr", -1, _LR),
        ("prodigy", "betas", (1.0, 0.9), _BETAS),
        ("prodigy", "betas", (0.9, 1.0), _BETAS),
        ("prodigy", "betas", (-0.1, 0.9), _BETAS),
        ("prodigy", "betas", (0.9,), _BETAS),
        ("prodigy", "betas", [0.9, 0.99, 0.9], _BETAS),
        ("prodigy", "betas", 0.9, _BETAS),
        ("prodigy", "eps", 0.0, "eps must be > 0"),
        ("prodigy", "weight_decay", -0.1, "weight_decay must be >= 0"),
        ("prodigy", "d0", 0.0, "d0 must be > 0"),
        ("prodigy", "growth_rate", 0.5, _GROWTH),
        ("prodigy", "beta3", 1.0, "beta3 must be None or in [0, 1)"),
        ("prodigy", "beta3", -0.1, "beta3 must be None or in [0, 1)"),
        ("prodigy", "d_coef", 0.0, "d_coef must be > 0"),
        ("prodigy", "slice_p", 0, "slice_p must be a positive integer"),
        ("prodigy", "slice_p", 1.0, "slice_p must be a positive integer"),
        ("dadapt_adam", "lr", 0.0, _LR),
        ("dadapt_adam", "betas", (0.9, 1.0), _BETAS),
        ("dadapt_adam", "eps", 0.0, "eps must be > 0"),
        ("dadapt_adam", "weight_decay", -0.1, "weight_decay must be >= 0"),
        ("dadapt_adam", "d0", 0.0, "d0 must be > 0"),
        ("dadapt_adam", "growth_rate", 0.5, _GROWTH),
        ("dadapt_sgd", "lr", 0.0, _LR),
        ("dadapt_sgd", "momentum", 1.0, "momentum must be in [0, 1)"),
        ("dadapt_sgd", "momentum", -0.1, "momentum must be in [0, 1)"),
        ("dadapt_sgd", "weight_decay", -0.1, "weight_decay must be >= 0"),
        ("dadapt_sgd", "d0", 0.0, "d0 must be > 0"),
        ("dadapt_sgd", "growth_rate", 0.5, _GROWTH),
        ("dadapt_adagrad", "lr", 0.0, _LR),
        ("dadapt_adagrad", "momentum", 1.0, "momentum must be in [0, 1)"),
        # NaN fails every comparison: the ports' own range check, not the transforms' finite one
        ("dadapt_sgd", "momentum", float("nan"), "momentum must be in [0, 1)"),
        ("dadapt_adagrad", "momentum", float("nan"), "momentum must be in [0, 1)"),
        ("dadapt_adagrad", "weight_decay", -0.1, "weight_decay must be >= 0"),
        ("dadapt_adagrad", "d0", 0.0, "d0 must be > 0"),
        ("dadapt_adagrad", "growth_rate", 0.5, _GROWTH),
        ("dadapt_adagrad", "eps", 0.0, "eps must be > 0"),
    ],
)
def test_parameter_free_ports_refuse_bad_arguments_by_name(port, arg, value, rule):
    with raises_whole(ValueError, f"pytorch.{port}({arg}={value!r}): {rule}"):
        getattr(gradtx.compat.pytorch, port)(**{arg: value})


@pytest.mark.parametrize(
    ("port", "options"),
    [
        ("prodigy", {"betas": (0.0, 0.0), "beta3": 0.0, "weight_decay": 0.0, "growth_rate": 1.0}),
        ("prodigy", {"lr": 1, "slice_p": 1, "d_coef": 1e-9, "d0": 1e-12, "eps": 1e-30}),
        ("prodigy", {"betas": [0.5, 0.5], "lr": gradtx.constant_schedule(0.0)}),
        ("dadapt_adam", {"betas": (0.0, 0.0), "weight_decay": 0.0, "growth_rate": 1.0}),
        ("dadapt_sgd", {"momentum": 0.0, "weight_decay": 0, "growth_rate": 1.0, "lr": 1e-9}),
        ("dadapt_adagrad", {"momentum": 0.0, "weight_decay": 0.0, "growth_rate": 1.0}),
        ("dadapt_adagrad", {"lr": gradtx.constant_schedule(0.0), "eps": 1e-30, "d0": 1e-30}),
    ],
)
def test_parameter_free_ports_accept_their_boundaries(port, options):
    getattr(gradtx.compat.pytorch, port)(**options)


@pytest.mark.parametrize(
    ("kind", "arg", "value", "interval"),
    [
        ("sgd", "learning_rate", -1.0, "[0, inf)"),
        ("sgd", "momentum", 1.0, "[0, 1)"),
        ("sgd", "momentum", -0.1, "[0, 1)"),
        ("sgd", "estim_lr0", 0.0, "(0, inf)"),
        ("sgd", "growth_rate", 0.5, "[1, inf]"),
        ("sgd", "weight_decay", -0.1, "[0, inf)"),
        ("adagrad", "learning_rate", -1.0, "[0, inf)"),
        ("adagrad", "momentum", 1.0, "[0, 1)"),
        ("adagrad", "estim_lr0", 0.0, "(0, inf)"),
        ("adagrad", "growth_rate", 0.5, "[1, inf]"),
        ("adagrad", "eps", 0.0, "(0, inf)"),
    ],
)
def test_dual_averaging_transforms_refuse_out_of_range_hyperparameters(kind, arg, value, interval):
    cls = ScaleByDadaptSgd if kind == "sgd" else ScaleByDadaptAdagrad
    message = f"scale_by_dadapt_{kind}({arg}={value!r}): {arg} must be in {interval}"
    with raises_whole(HyperparameterError, message):
        cls(**{arg: value})


def test_dual_averaging_transforms_accept_their_boundaries():
    for cls in (ScaleByDadaptSgd, ScaleByDadaptAdagrad):
        for growth_rate in (1.0, float("inf")):
            cls(learning_rate=0.0, momentum=0.0, growth_rate=growth_rate, estim_lr0=1e-30)
    ScaleByDadaptSgd(weight_decay=0.0)
    ScaleByDadaptAdagrad(eps=1e-30)


# -- _parameter_free: DAdaptSGD and DAdaptAdaGrad against NumPy ----------------------------


def _dadapt_sgd_numpy(p, grads, lrs, momentum=0.0, weight_decay=0.0, d0=1e-6, growth=np.inf):
    """dadaptation 3.2's DAdaptSGD on a list of float64 leaves: the updates of each step."""
    p = [np.array(x, np.float64) for x in p]
    x0, s = [x.copy() for x in p], [np.zeros_like(x) for x in p]
    d, num, g0, taken, out = d0, 0.0, 0.0, 0, []
    for grad, lr in zip(grads, lrs):
        grad = [np.asarray(g, np.float64) for g in grad]
        if taken == 0:
            g0 = np.sqrt(sum(np.sum(g * g) for g in grad))
        dlr = d * lr / g0 if g0 > 0 else 0.0
        grad = [g + weight_decay * x for g, x in zip(grad, p)]
        new_num = num + dlr * sum(np.vdot(g, si) for g, si in zip(grad, s))
        s = [si + dlr * g for si, g in zip(s, grad)]
        sk = np.sqrt(sum(np.sum(si * si) for si in s))
        if sk == 0 or not lr > 0:
            out.append([np.zeros_like(x) for x in p])
            continue
        num = new_num
        d = max(d, min(2 * num / sk, d * growth))
        new = [momentum * x + (1 - momentum) * (a - si) for x, a, si in zip(p, x0, s)]
        out.append([n - x for n, x in zip(new, p)])
        p, taken = new, taken + 1
    return out, d


def _dadapt_adagrad_numpy(
    p, grads, lrs, momentum=0.0, weight_decay=0.0, eps=1e-6, d0=1e-6, growth=np.inf
):
    """dadaptation 3.2's DAdaptAdaGrad on a list of float64 leaves: the updates of each step."""
    p = [np.array(x, np.float64) for x in p]
    x0, s = [x.copy() for x in p], [np.zeros_like(x) for x in p]
    alpha = [np.full_like(x, 1e-6) for x in p]
    d, gsq, sksq, skl1, out = d0, 0.0, 0.0, 0.0, []
    for grad, lr in zip(grads, lrs):
        grad = [np.asarray(g, np.float64) + weight_decay * x for g, x in zip(grad, p)]
        dlr = d * lr
        old_root = [np.sqrt(a) + eps for a in alpha]
        alpha = [a + g * g for a, g in zip(alpha, grad)]
        root = [np.sqrt(a) + eps for a in alpha]
        s_new = [si + dlr * g for si, g in zip(s, grad)]
        new_sksq = sksq + sum(
            np.sum(n * n / r) - np.sum(o * o / q) for n, r, o, q in zip(s_new, root, s, old_root)
        )
        new_skl1 = skl1 + sum(np.sum(np.abs(n)) - np.sum(np.abs(o)) for n, o in zip(s_new, s))
        new_gsq = gsq + dlr**2 * sum(np.sum(g * g / r) for g, r in zip(grad, root))
        s = s_new
        if new_skl1 == 0:
            out.append([np.zeros_like(x) for x in p])
            continue
        gsq, sksq, skl1 = new_gsq, new_sksq, new_skl1
        if lr > 0:
            d = max(d, min((sksq - gsq) / skl1, d * growth))
        new = [momentum * x + (1 - momentum) * (a - si / r) for x, a, si, r in zip(p, x0, s, root)]
        out.append([n - x for n, x in zip(new, p)])
        p = new
    return out, d


def _table(rates):
    """A learning-rate schedule with the given rate at each step."""
    return lambda count: jnp.asarray(rates)[count]


def _compare(tx, reference, params, grads):
    """Steps ``tx`` over ``grads`` (lists of leaves, as dicts a, b) against the NumPy updates."""
    names = ["a", "b"][: len(params)]
    tree = lambda leaves: {n: jnp.asarray(x, jnp.float64) for n, x in zip(names, leaves)}  # noqa: E731
    run = run_steps(
        tx, [tree(g) for g in grads], tree(params), apply=gradtx.apply_updates, jit="eager"
    )
    expected, d = reference
    for step, (ours, theirs) in enumerate(zip(run.updates, expected)):
        for n, x in zip(names, theirs):
            np.testing.assert_allclose(ours[n], x, rtol=1e-9, atol=1e-14, err_msg=f"step {step}")
    assert float(gradtx.tree_get(run.states[-1], "estim_lr")) == pytest.approx(d, rel=1e-9)
    return run


_P = [[1.0, -2.0], [0.5]]
# A zero first gradient (skipped), then gradients that keep their signs, so that d grows.
_G = [
    [[0.0, 0.0], [0.0]],
    [[1.0, -1.0], [2.0]],
    [[0.8, -0.5], [1.0]],
    [[1.0, -0.7], [1.5]],
    [[0.6, -1.0], [0.5]],
    [[0.9, -0.4], [1.2]],
    [[0.7, -0.8], [1.0]],
]
_LRS = [1.0, 1.0, 0.5, 0.0, 2.0, 1.0, 1.0]  # lr 0 at step 3: the packages take no d step


def test_dadapt_sgd_matches_numpy_with_every_option(x64):
    for growth in (1.5, np.inf):  # 1.5 limits d's growth, inf does not
        reference = _dadapt_sgd_numpy(
            _P, _G, _LRS, momentum=0.5, weight_decay=0.1, d0=0.01, growth=growth
        )
        tx = gradtx.compat.pytorch.dadapt_sgd(
            lr=_table(_LRS), momentum=0.5, weight_decay=0.1, d0=0.01, growth_rate=growth
        )
        state = _compare(tx, reference, _P, _G).states[-1]
        # Seven calls; the zero first gradient and the step at lr 0 were not taken.
        assert (int(gradtx.tree_get(state, "count")), int(gradtx.tree_get(state, "taken"))) == (
            7,
            5,
        )
        assert float(gradtx.tree_get(state, "grad_norm0")) == pytest.approx(np.sqrt(6.0))


def test_dadapt_adagrad_matches_numpy_with_every_option(x64):
    for growth in (1.1, np.inf):  # 1.1 limits d's growth, inf does not
        reference = _dadapt_adagrad_numpy(
            _P, _G, _LRS, momentum=0.5, weight_decay=0.1, eps=0.1, d0=0.01, growth=growth
        )
        tx = gradtx.compat.pytorch.dadapt_adagrad(
            lr=_table(_LRS), momentum=0.5, weight_decay=0.1, eps=0.1, d0=0.01, growth_rate=growth
        )
        state = _compare(tx, reference, _P, _G).states[-1]
        assert int(state[1].count) == 7  # the decay's state is [0]


def test_dadapt_adagrad_sums_float32_leaves_into_its_float64_totals_under_x64(x64):
    # The package adds each parameter's float32 `.sum().item()` to a Python float: with |s|_1
    # of 1 and 2**-30, the total is 1 + 2**-30, which a float32 sum of the two would round to 1.
    tx = gradtx.compat.pytorch.dadapt_adagrad(lr=1.0, d0=1.0)
    params = {"a": jnp.ones(1, jnp.float32), "b": jnp.ones(1, jnp.float32)}
    grads = {"a": jnp.ones(1, jnp.float32), "b": jnp.full(1, 2.0**-30, jnp.float32)}
    _, state = tx.update(grads, tx.init(params), params)
    skl1 = gradtx.tree_get(state, "skl1")
    assert skl1.dtype == jnp.float64 and float(skl1) == 1 + 2.0**-30


@pytest.mark.parametrize("port", ["dadapt_sgd", "dadapt_adagrad"])
def test_dual_averaging_keeps_bfloat16_leaves_bfloat16(port):
    tx = getattr(gradtx.compat.pytorch, port)(d0=0.01, momentum=0.5)
    params = {"w": jnp.asarray([1.0, -2.0], jnp.bfloat16)}
    grads = [{"w": jnp.asarray(g, jnp.bfloat16)} for g in ([1.0, -1.0], [0.5, -2.0], [1.0, 0.0])]
    run = run_steps(tx, grads, params, apply=gradtx.apply_updates, jit="eager")
    for updates, state in zip(run.updates, run.states[1:]):
        assert updates["w"].dtype == jnp.bfloat16
        assert gradtx.tree_get(state, "grad_sum")["w"].dtype == jnp.bfloat16
        if port == "dadapt_adagrad":
            assert gradtx.tree_get(state, "alpha")["w"].dtype == jnp.bfloat16
        assert float(jnp.abs(updates["w"]).sum()) > 0


@pytest.mark.parametrize("port", ["prodigy", "dadapt_adam", "dadapt_sgd", "dadapt_adagrad"])
def test_a_flag_as_lr_is_refused_as_no_number_not_as_out_of_range(port):
    # False is no number (not an lr of 0): the port leaves it to the transform's type check.
    with pytest.raises(
        TypeError, match=r"(lr|learning_rate)=False\): \1 must be a number or an array"
    ):
        getattr(gradtx.compat.pytorch, port)(lr=False)


def test_dual_averaging_init_states_hold_the_packages_start():
    params = {"w": jnp.asarray([1.0, -2.0])}
    sgd = ScaleByDadaptSgd(estim_lr0=0.25).init(params)
    assert [float(x) for x in sgd[2:]] == [0.0, 0.25, 0.0, 0.0, 0.0]
    np.testing.assert_array_equal(sgd.grad_sum["w"], [0.0, 0.0])
    np.testing.assert_array_equal(sgd.params0["w"], [1.0, -2.0])
    adagrad = ScaleByDadaptAdagrad(estim_lr0=0.25, eps=0.5).init(params)
    np.testing.assert_array_equal(adagrad.alpha["w"], np.float32([1e-6, 1e-6]))  # whatever eps
    np.testing.assert_array_equal(adagrad.grad_sum["w"], [0.0, 0.0])
    np.testing.assert_array_equal(adagrad.params0["w"], [1.0, -2.0])
    assert [float(x) for x in adagrad[3:]] == [0.25, 0.0, 0.0, 0.0, 0.0]


def _first_sgd_update(param, grad, **options):
    """DAdaptSGD's (momentum 0) first update from a float32 ``param``."""
    tx = ScaleByDadaptSgd(**options)
    params = {"w": jnp.asarray([param], jnp.float32)}
    updates, _ = tx.update({"w": jnp.asarray([grad], jnp.float32)}, tx.init(params), params)
    assert updates["w"].dtype == jnp.float32
    return updates["w"][0]


def test_dadapt_sgd_adds_decay_in_float32_for_float32_leaves_under_x64(x64):
    # g + wd p = 1 + 2**-24 (1 + 2**-25): float32(wd) = 2**-24 makes it a tie, rounded to 1;
    # in float64 it is past the tie and s = 1 + 2**-23. With d0 = lr = g0 = 1, the step is -s.
    wd = 2.0**-24 * (1 + 2.0**-25)
    expected = np.float32(1) + np.float32(wd) * np.float32(1)
    assert expected == 1 and np.float32(1 + wd) != 1
    assert _first_sgd_update(1.0, 1.0, weight_decay=wd, estim_lr0=1.0) == -expected


def test_dadapt_sgd_scales_by_dlr_in_float32_for_float32_leaves_under_x64(x64):
    # dlr = d lr / g0 = 1 / 41; s = float32(1 / 41) * 41 = 1 - 2**-24 in float32 (1 in float64).
    expected = np.float32(1 / 41) * np.float32(41)
    assert expected != 1
    assert _first_sgd_update(0.0, 41.0, estim_lr0=1.0) == -expected
    # A first gradient of norm 0.5 < 1: dlr = 1 / 0.5 = 2 and the step is -2 * 0.5.
    assert _first_sgd_update(0.0, 0.5, estim_lr0=1.0) == -1.0


def test_averaging_takes_the_momentum_in_float32_for_float32_leaves_under_x64(x64):
    # 0.9 p + 0.1 z - p at p = 1, z = 0 is float32(0.9) - 1, not float32(0.9 - 1).
    one, zero = jnp.ones(1, jnp.float32), jnp.zeros(1, jnp.float32)
    step = _averaged_step(0.9, {"w": zero}, {"w": one}, {"w": zero})["w"]
    expected = np.float32(0.9) - np.float32(1)
    assert expected != np.float32(0.9 - 1.0)
    assert step.dtype == jnp.float32
    np.testing.assert_array_equal(step, [expected])


@pytest.mark.parametrize("port", ["dadapt_sgd", "dadapt_adagrad"])
def test_a_step_before_any_gradient_moves_nothing_wherever_the_params_are(port):
    # The packages return before stepping while s = 0, even where p is no longer p_0.
    tx = getattr(gradtx.compat.pytorch, port)(momentum=0.5)
    state = tx.init({"w": jnp.asarray([1.0, -2.0])})
    updates, state = tx.update({"w": jnp.zeros(2)}, state, {"w": jnp.asarray([3.0, 0.0])})
    np.testing.assert_array_equal(updates["w"], [0.0, 0.0])
    assert gradtx.tree_get(state, "estim_lr") == np.float32(1e-6)


def test_dadapt_adagrad_keeps_d_at_lr_0_though_its_estimate_is_above(x64):
    # Five steps at growth 1.1 leave d held back by the growth limit; at lr 0 the package moves
    # p but keeps d (its estimate, above d here, would raise it by another 10%).
    grads, lrs = [[[1.0, -0.5]]] * 7, [1.0] * 5 + [0.0, 1.0]
    reference = _dadapt_adagrad_numpy([[1.0, 2.0]], grads, lrs, growth=1.1)
    assert reference[1] == pytest.approx(1e-6 * 1.1**3)
    tx = gradtx.compat.pytorch.dadapt_adagrad(lr=_table(lrs), growth_rate=1.1)
    _compare(tx, reference, [[1.0, 2.0]], grads)


def _first_adagrad_step(grad, **options):
    """DAdaptAdaGrad's (momentum 0) first update and s from p = 0, float32 leaves."""
    tx = ScaleByDadaptAdagrad(**options)
    params = {"w": jnp.zeros(1, jnp.float32)}
    updates, state = tx.update({"w": jnp.asarray([grad], jnp.float32)}, tx.init(params), params)
    assert updates["w"].dtype == state.grad_sum["w"].dtype == jnp.float32
    return updates["w"][0], state.grad_sum["w"][0]


def test_dadapt_adagrad_scales_by_dlr_in_float32_for_float32_leaves_under_x64(x64):
    # dlr = d0 = 1 / 41: s = float32(1 / 41) * 41 = 1 - 2**-24 in float32 (1 in float64).
    expected = np.float32(1 / 41) * np.float32(41)
    assert expected != 1
    assert _first_adagrad_step(41.0, estim_lr0=1 / 41)[1] == expected


def test_dadapt_adagrad_adds_eps_in_float32_for_float32_leaves_under_x64(x64):
    # g = 4096: sqrt(1e-6 + g**2) = 4096 in float32; eps = 2**-12 (1 + 2**-25) is 2**-12 in
    # float32, half an ulp of 4096: the root rounds to 4096 and the step is -s / root = -1.
    # With the root in float64 it would be -(1 - 2**-24).
    eps = 2.0**-12 * (1 + 2.0**-25)
    g = np.float32(4096)
    root = np.sqrt(np.float32(1e-6) + g * g) + np.float32(eps)
    assert root == g and np.float64(g) + eps != g
    assert _first_adagrad_step(4096.0, estim_lr0=1.0, eps=eps)[0] == -(g / root)
