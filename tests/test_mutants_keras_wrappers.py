"""Tests that kill the mutants of gradtx/compat/keras/_wrappers.py the other test files let survive.

The verdicts, mutant by mutant: tests/MUTATION.md (issue 20). The references are Keras 3.15's
rules, written here in NumPy as keras/src/optimizers/base_optimizer.py and
loss_scale_optimizer.py apply them (the loss scale; the moving average
``avg <- m avg + (1 - m) p`` with m = 0 at iteration 0; the decay ``p - p * wd * lr`` in the
variable's dtype), optax's ``scale_by_polyak`` and ``sgd`` (a transform that needs ``value=``,
and an optax inner optimizer), and the argument rules of the docstrings and Keras's errors.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from replay import run_steps

import gradtx
from gradtx import compat
from gradtx.compat.keras import _wrappers as wrappers

# -- an optax inner optimizer: the wrappers hold it as a gradtx transform (a pytree) ---------


def test_loss_scale_optimizer_around_optax_jits_with_the_transform_traced():
    tx = wrappers.LossScaleOptimizer(inner_optimizer=optax.sgd(0.5), initial_scale=4.0)
    grads = [{"w": jnp.asarray([4.0, -8.0])}]
    run = run_steps(tx, grads, jit="traced")
    np.testing.assert_array_equal(run.updates[0]["w"], [-0.5, 1.0])  # -0.5 g / 4


def test_accumulation_and_ema_around_optax_jit_with_the_transform_traced():
    params = {"w": jnp.asarray([1.0, 2.0])}
    grads = [{"w": jnp.asarray([2.0, 4.0])}, {"w": jnp.asarray([4.0, 0.0])}]
    accumulate = wrappers.GradientAccumulation(inner=optax.sgd(0.5), steps=2)
    run = run_steps(accumulate, grads, params, jit="traced")
    np.testing.assert_array_equal(run.updates[0]["w"], [0.0, 0.0])
    np.testing.assert_array_equal(run.updates[1]["w"], [-1.5, -1.0])  # -0.5 * mean
    ema = wrappers.KerasEma(inner=optax.sgd(0.5), ema_momentum=0.5)
    run = run_steps(ema, grads, params, jit="traced")
    # Iteration 0: the average is the params after the step (m = 0): 1 - 1, 2 - 2.
    np.testing.assert_array_equal(run.states[1].average["w"], [0.0, 0.0])
    # Then 0.5 * 0 + 0.5 * (params + update): the params did not move here (no apply).
    np.testing.assert_array_equal(run.states[2].average["w"], [-0.5, 1.0])


def test_decay_params_first_around_optax_with_a_dict_mask_jits_traced():
    params = {"w": jnp.asarray([1.0, -2.0]), "b": jnp.asarray([4.0])}
    grads = [{"w": jnp.asarray([1.0, 1.0]), "b": jnp.asarray([1.0])}]
    tx = wrappers.DecayParamsFirst(
        inner=optax.scale(-0.5),
        weight_decay=0.5,
        learning_rate=0.5,
        mask={"w": True, "b": False},  # a dict: frozen, so the static field hashes
    )
    run = run_steps(tx, grads, params, jit="traced")
    # w: p' - p = -p * 0.25, plus -0.5 g; b (not decayed): -0.5 g.
    np.testing.assert_array_equal(run.updates[0]["w"], [-0.75, 0.0])
    np.testing.assert_array_equal(run.updates[0]["b"], [-0.5])


def test_an_optimizer_map_of_optax_transforms_is_a_pytree_jit_takes():
    params = {"w": jnp.asarray([1.0]), "b": jnp.asarray([1.0])}
    grads = {"w": jnp.asarray([2.0]), "b": jnp.asarray([2.0])}
    groups = wrappers.optimizer_map(optax.sgd(0.5), {"b": optax.sgd(2.0)})

    @jax.jit
    def step(groups, grads, params):
        tx = wrappers.multi_optimizer(groups)
        return tx.update(grads, tx.init(params), params)[0]

    updates = step(groups, grads, params)
    assert updates == {"w": -1.0, "b": -4.0}


def test_an_optimizer_map_without_a_map_sends_everything_to_the_default():
    tx = wrappers.multi_optimizer(wrappers.optimizer_map(compat.keras.sgd(0.5)))
    params = {"w": jnp.asarray([1.0]), "b": jnp.asarray([3.0])}
    run = run_steps(tx, [{"w": jnp.asarray([2.0]), "b": jnp.asarray([-2.0])}], params, jit="eager")
    assert run.updates[0] == {"w": -1.0, "b": 1.0}


# -- the params and the extra arguments reach the inner optimizer -----------------------------


def _polyak(grads, value):
    """optax's Polyak step on ``grads`` with the loss ``value`` (f_min 0, cap 1)."""
    tx = optax.scale_by_polyak()
    return tx.update(grads, tx.init(grads), value=value)[0]


def test_every_wrapper_passes_the_loss_on_to_a_polyak_inner_step():
    params = {"w": jnp.asarray([1.0, -1.0])}
    g = {"w": jnp.asarray([0.5, 1.0])}
    value = jnp.asarray(0.25)
    expected = _polyak(g, value)["w"]  # 0.25 / 1.25 = 0.2 of g
    scaled = wrappers.LossScaleOptimizer(
        inner_optimizer=gradtx.scale_by_polyak(), initial_scale=8.0
    )
    updates, _ = scaled.update({"w": 8.0 * g["w"]}, scaled.init(params), params, value=value)
    np.testing.assert_allclose(updates["w"], expected, rtol=1e-6)
    ema = wrappers.KerasEma(inner=gradtx.scale_by_polyak())
    updates, _ = ema.update(g, ema.init(params), params, value=value)
    np.testing.assert_allclose(updates["w"], expected, rtol=1e-6)
    accumulate = wrappers.GradientAccumulation(inner=gradtx.scale_by_polyak(), steps=2)
    state = accumulate.init(params)
    first, state = accumulate.update(g, state, params, value=value)
    second, _ = accumulate.update(g, state, params, value=value)  # the mean of g and g
    np.testing.assert_array_equal(first["w"], [0.0, 0.0])
    np.testing.assert_allclose(second["w"], expected, rtol=1e-6)
    decay = wrappers.DecayParamsFirst(
        inner=gradtx.scale_by_polyak(), weight_decay=0.5, learning_rate=0.5
    )
    updates, _ = decay.update(g, decay.init(params), params, value=value)
    np.testing.assert_allclose(updates["w"], -0.25 * params["w"] + expected, rtol=1e-6)


def test_loss_scaling_and_ema_pass_the_params_to_an_inner_weight_decay():
    # Keras's SGD with weight_decay: p <- p - p * wd * lr - lr * g (the inner needs the params).
    params = {"w": jnp.asarray([2.0, -4.0])}
    g = np.asarray([1.0, 3.0])
    expected = -0.5 * 0.25 * np.asarray(params["w"]) - 0.5 * g
    inner = compat.keras.sgd(0.5, weight_decay=0.25)
    scaled = wrappers.loss_scale_optimizer(inner, initial_scale=4.0)
    run = run_steps(scaled, [{"w": jnp.asarray(4.0 * g)}], params, jit="eager")
    np.testing.assert_allclose(run.updates[0]["w"], expected, rtol=1e-6)
    ema = compat.keras.sgd(0.5, weight_decay=0.25, use_ema=True)
    run = run_steps(ema, [{"w": jnp.asarray(g)}], params, jit="eager")
    np.testing.assert_allclose(run.updates[0]["w"], expected, rtol=1e-6)


def test_decay_params_first_without_params_is_refused_naming_the_call():
    tx = wrappers.DecayParamsFirst(inner=gradtx.identity(), weight_decay=0.1, learning_rate=0.1)
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match=r"needs the params: call update\(updates, state, params"):
        tx.update(params, tx.init(params))


# -- dtypes: Keras computes in the variable's (or the gradient's, the loss's) dtype ----------


def test_decay_params_first_decays_float32_params_in_float32_under_x64(x64):
    # Keras: variable.assign(variable - variable * wd * lr), wd and lr cast to the variable's
    # dtype; with the identity as the step, u = (p' - p) + g, all in float32.
    rng = np.random.default_rng(0)
    p = rng.normal(size=64).astype(np.float32)
    g = rng.normal(size=64).astype(np.float32)
    wd, lr = np.float32(0.1), np.float32(0.3)
    decayed = p - p * wd * lr
    expected = (decayed - p) + g
    tx = wrappers.DecayParamsFirst(inner=gradtx.identity(), weight_decay=0.1, learning_rate=0.3)
    run = run_steps(tx, [jnp.asarray(g)], jnp.asarray(p), jit="eager")
    assert run.updates[0].dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(run.updates[0]), expected)


def test_a_swept_loss_scale_factor_keeps_bfloat16_gradients_bfloat16():
    # Under jax.vmap the factor is a float32 tracer; the division is in the gradient's dtype.
    g = jnp.asarray([8.0, -2.0], jnp.bfloat16)

    def step(factor):
        tx = compat.keras.sgd(1.0, loss_scale_factor=factor)
        return tx.update(g, tx.init(g))[0]

    updates = jax.vmap(step)(jnp.asarray([2.0, 4.0]))
    assert updates.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(updates, np.float32), [[-4.0, 1.0], [-2.0, 0.5]])


def test_decayed_bfloat16_params_are_stored_in_bfloat16_before_the_step():
    # p' is a params tree (Keras assigns it to the variable): computed in float32, rounded to
    # bfloat16; with the identity as the step, u = (p' - p) + g, rounded to bfloat16 again.
    p = jnp.asarray([1.0, 3.0, -5.0, 0.75], jnp.bfloat16)
    g = jnp.asarray([0.0, 0.5, 0.0, -0.25], jnp.bfloat16)
    p32, g32 = np.asarray(p, np.float32), np.asarray(g, np.float32)
    decayed = np.asarray(p32 - p32 * np.float32(0.1) * np.float32(0.1), jnp.bfloat16)
    expected = np.asarray((np.asarray(decayed, np.float32) - p32) + g32, jnp.bfloat16)
    tx = wrappers.DecayParamsFirst(inner=gradtx.identity(), weight_decay=0.1, learning_rate=0.1)
    run = run_steps(tx, [g], p, jit="eager")
    assert run.updates[0].dtype == jnp.bfloat16
    np.testing.assert_array_equal(
        np.asarray(run.updates[0], np.float32), np.asarray(expected, np.float32)
    )
    assert np.asarray(expected, np.float32)[0] != np.float32(-0.01)  # the rounding shows


def test_loss_scaling_keeps_bfloat16_gradients_and_losses_bfloat16():
    tx = wrappers.loss_scale_optimizer(compat.keras.sgd(1.0), initial_scale=8.0)
    g = jnp.asarray([8.0, -16.0], jnp.bfloat16)
    run = run_steps(tx, [g], jnp.zeros(2, jnp.bfloat16), jit="eager")
    assert run.updates[0].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(run.updates[0], np.float32), [-1.0, 2.0])
    loss = wrappers.scale_loss(jnp.asarray(0.75, jnp.bfloat16), run.states[0])
    assert loss.dtype == jnp.bfloat16 and float(loss) == 6.0


def test_the_loss_scale_is_float32_under_x64_as_keras_dynamic_scale(x64):
    tx = wrappers.loss_scale_optimizer(compat.keras.sgd(), initial_scale=2.0**15)
    scale = gradtx.tree_get(tx.init(jnp.zeros(2)), "loss_scale")
    assert scale.dtype == jnp.float32 and float(scale) == 2.0**15


def test_the_moving_average_of_bfloat16_params_stays_bfloat16():
    params = jnp.asarray([1.0, 2.0], jnp.bfloat16)
    tx = compat.keras.sgd(0.5, use_ema=True, ema_momentum=0.5)
    grads = [jnp.asarray([2.0, 2.0], jnp.bfloat16)] * 2
    run = run_steps(tx, grads, params, apply=gradtx.apply_updates, jit="eager")
    average = gradtx.tree_get(run.states[2], "average")
    assert average.dtype == jnp.bfloat16
    # Params 0, 1 after step 1 (the average), -1, 0 after step 2: 0.5 * (0, 1) + 0.5 * (-1, 0).
    np.testing.assert_array_equal(np.asarray(average, np.float32), [-0.5, 0.5])


# -- Keras's moving average at the ends of its ranges -----------------------------------------


def _keras_sgd_ema(p, grads, lr, momentum, overwrite=None):
    """Keras's SGD with use_ema, in NumPy: the params and the average after each step."""
    p, average, out = np.asarray(p, np.float64), np.zeros_like(p, np.float64), []
    for iteration, g in enumerate(grads):
        p = p - lr * np.asarray(g)
        m = momentum if iteration else 0.0
        average = m * average + (1 - m) * p
        if overwrite and (iteration + 1) % overwrite == 0:
            p = average.copy()
        out.append((p, average))
    return out


@pytest.mark.parametrize(
    "momentum, overwrite", [(0.0, None), (1.0, None), (0.5, 1)], ids=["m0", "m1", "every-step"]
)
def test_ema_momentum_0_and_1_and_overwriting_every_step_follow_keras(momentum, overwrite):
    p0 = np.asarray([1.0, -2.0])
    grads = [np.asarray([1.0, 2.0]), np.asarray([-3.0, 0.5]), np.asarray([2.0, 2.0])]
    tx = compat.keras.sgd(
        0.5, use_ema=True, ema_momentum=momentum, ema_overwrite_frequency=overwrite
    )
    run = run_steps(
        tx, [jnp.asarray(g) for g in grads], jnp.asarray(p0), apply=gradtx.apply_updates
    )
    for t, (p, average) in enumerate(_keras_sgd_ema(p0, grads, 0.5, momentum, overwrite)):
        np.testing.assert_allclose(run.params[t + 1], p, rtol=1e-6)
        np.testing.assert_allclose(
            gradtx.tree_get(run.states[t + 1], "average"), average, rtol=1e-6
        )


# -- the ranges of the arguments ------------------------------------------------------------


def test_scales_and_factors_below_1_are_positive_enough():
    # loss_scale_factor, initial_scale > 0 (not >= 1); dynamic_growth_steps >= 1 (not 2).
    run = run_steps(compat.keras.sgd(1.0, loss_scale_factor=0.5), [jnp.asarray([1.0])], jit="eager")
    np.testing.assert_array_equal(run.updates[0], [-2.0])
    tx = wrappers.loss_scale_optimizer(
        compat.keras.sgd(1.0), initial_scale=0.5, dynamic_growth_steps=1
    )
    run = run_steps(tx, [jnp.asarray([1.0])] * 2, jit="eager")
    np.testing.assert_array_equal(run.updates[0], [-2.0])  # g / 0.5
    # Every finite step doubles the scale: 0.5, 1, 2.
    assert [float(s.loss_scale) for s in run.states] == [0.5, 1.0, 2.0]
    np.testing.assert_array_equal(run.updates[1], [-1.0])


def test_the_default_growth_is_after_2000_finite_steps_as_keras():
    tx = wrappers.loss_scale_optimizer(compat.keras.sgd(0.1), initial_scale=2.0)
    params = jnp.zeros(1)

    def body(state, _):
        _, state = tx.update(jnp.ones(1), state, params)
        return state, state.loss_scale

    _, scales = jax.jit(lambda s: jax.lax.scan(body, s, length=2000))(tx.init(params))
    assert float(scales[1998]) == 2.0 and float(scales[1999]) == 4.0


BAD_RANGES = [
    ("LossScaleOptimizer", "dynamic_growth_steps", 2.5, "must be a whole number"),
    ("GradientAccumulation", "steps", 2.5, "must be a whole number"),
    ("GradientAccumulation", "steps", 1, r"must be in \[2, inf\)"),
    ("KerasEma", "ema_momentum", -0.5, r"must be in \[0, 1\]"),
    ("KerasEma", "ema_momentum", 1.5, r"must be in \[0, 1\]"),
    ("KerasEma", "ema_overwrite_frequency", 0, r"must be in \[1, inf\)"),
    ("KerasEma", "ema_overwrite_frequency", 2.5, "must be a whole number"),
    ("DecayParamsFirst", "learning_rate", -0.1, r"must be in \[0, inf\)"),
]


@pytest.mark.parametrize("cls, arg, value, match", BAD_RANGES)
def test_the_wrappers_refuse_values_outside_their_ranges(cls, arg, value, match):
    kwargs = {"weight_decay": 0.1, "learning_rate": 0.1} if cls == "DecayParamsFirst" else {}
    inner = "inner_optimizer" if cls == "LossScaleOptimizer" else "inner"
    with pytest.raises(ValueError, match=rf"\({arg}={value}\): {arg} {match}"):
        getattr(wrappers, cls)(**{inner: gradtx.identity(), **kwargs, arg: value})


# -- Keras's argument errors, the whole message ---------------------------------------------


def test_loss_scale_optimizer_refuses_a_fixed_scale_and_unknown_arguments():
    sgd = compat.keras.sgd()
    with pytest.raises(
        ValueError,
        match=r"^keras\.loss_scale_optimizer\(dynamic=False\): a fixed scale is the inner "
        r"optimizer's loss_scale_factor$",
    ):
        wrappers.loss_scale_optimizer(sgd, dynamic=False)
    with pytest.raises(TypeError, match=r"keras\.loss_scale_optimizer\(momentum=0\.9\): no such"):
        wrappers.loss_scale_optimizer(sgd, momentum=0.9)
    # dynamic=True and the base options at their defaults are Keras's own call.
    tx = wrappers.loss_scale_optimizer(sgd, dynamic=True, clipnorm=None, use_ema=False)
    assert tx.dynamic_growth_steps == 2000


def test_scale_loss_without_a_loss_scale_names_the_call():
    state = compat.keras.sgd().init(jnp.zeros(2))
    with pytest.raises(
        KeyError, match=r"^'keras\.scale_loss: the state holds no loss_scale_optimizer state'$"
    ):
        wrappers.scale_loss(jnp.asarray(1.0), state)


def test_optimizer_map_errors_say_why():
    sgd = compat.keras.sgd()
    with pytest.raises(ValueError, match=r"optimizer_map=\{1: \.\.\.\}\): keys are strings"):
        wrappers.optimizer_map(sgd, {1: sgd})
    scaled = wrappers.loss_scale_optimizer(sgd)
    with pytest.raises(
        ValueError,
        match=r"\): a mapped optimizer cannot be a loss_scale_optimizer; wrap the multi_optimizer "
        "instead$",
    ):
        wrappers.optimizer_map(sgd, {"w": scaled})
    with pytest.raises(
        TypeError,
        match=r"<Chain>\): expected compat\.keras\.optimizer_map\(default_optimizer, "
        r"\{pattern: optimizer\}\)",
    ):
        wrappers.multi_optimizer(sgd)
    both = wrappers.optimizer_map(sgd, {"dense/.*": compat.keras.adam(), ".*/bias": sgd})
    tx = wrappers.multi_optimizer(both)
    with pytest.raises(ValueError, match=r"optimizer map: \['dense/\.\*', '\.\*/bias'\]"):
        tx.init({"dense": {"bias": jnp.zeros(1)}})


def test_weight_decay_exclusions_are_checked_as_one_joined_expression():
    with pytest.raises(
        ValueError, match=r"expected a list of regular expressions \(Keras's var_names\)"
    ):
        compat.keras.adamw(exclude_from_weight_decay="bias")
    # Each is no expression alone; Keras joins them with "|": "bias|*norm" is none either.
    with pytest.raises(ValueError, match=r"\['bias', '\*norm'\]\): not regular expressions"):
        compat.keras.adamw(exclude_from_weight_decay=["bias", "*norm"])


def test_a_bare_array_param_has_the_empty_name_for_the_exclusions():
    # Keras's variable.name is the last key of the path; a bare array has none: "" ("X" is
    # not found in it, so it decays).
    tx = compat.keras.sgd(0.5, weight_decay=0.5, exclude_from_weight_decay=["X"])
    run = run_steps(tx, [jnp.asarray([1.0, 2.0])], jnp.asarray([4.0, -4.0]), jit="eager")
    np.testing.assert_allclose(run.updates[0], [-1.5, 0.0])  # -0.25 p - 0.5 g


def test_the_accumulation_steps_error_names_the_rule():
    with pytest.raises(
        ValueError,
        match=r"keras\.adam\(gradient_accumulation_steps=1\): gradient_accumulation_steps "
        "must be a whole number >= 2",
    ):
        compat.keras.adam(gradient_accumulation_steps=1)


def test_a_float_overwrite_frequency_is_refused_even_when_whole_as_keras_does():
    # Keras: isinstance(ema_overwrite_frequency, int) or a ValueError, so 2.0 is refused.
    with pytest.raises(
        ValueError,
        match=r"keras\.sgd\(ema_overwrite_frequency=2\.0\): ema_overwrite_frequency must be "
        "a whole number >= 1 or None",
    ):
        compat.keras.sgd(use_ema=True, ema_overwrite_frequency=2.0)


def test_keras_refuses_a_float_overwrite_frequency_too(keras_float64):
    import keras

    with pytest.raises(ValueError, match="ema_overwrite_frequency"):
        keras.optimizers.SGD(use_ema=True, ema_overwrite_frequency=2.0)
