"""Keras 3's optimizer wrappers in ``compat.keras``: loss scaling, one optimizer per group.

- ``loss_scale_optimizer`` and ``multi_optimizer``/``optimizer_map`` equal to Keras's
  ``LossScaleOptimizer`` and ``MultiOptimizer``/``OptimizerMap`` over 60 float64 steps with
  Inf and NaN gradients, recorded by tests/reference/record_keras_options.py and live where
  Keras is installed; the loss scale in the state equal to Keras's after every step;
- the scale's rule on a hand-made sequence; a skipped step leaves the inner state alone;
- Keras's argument errors, named.
"""

from __future__ import annotations

import functools
import json
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import problem
from reference import record_keras_options as reference
from replay import assert_trajectories_equal

import gradtx
from gradtx import compat
from gradtx.compat.keras import _wrappers as wrappers
from gradtx.compat.keras import schedules

DATA = pathlib.Path(__file__).parent / "reference" / "data"
CASES = json.loads((DATA / "keras_options.json").read_text())["cases"]


def _inner(spec):
    kind, kwargs = spec
    kwargs = dict(kwargs)
    if isinstance(kwargs.get("learning_rate"), dict):
        ((schedule, args),) = kwargs["learning_rate"].items()
        assert schedule == "ExponentialDecay"
        kwargs["learning_rate"] = schedules.exponential_decay(*args)
    factory = {"ScheduleFreeAdamW": "schedule_free_adamw"}.get(kind, kind.lower())
    return getattr(compat.keras, factory)(**kwargs)


def _port(case):
    inner = {name: _inner(spec) for name, spec in case["inner"].items()}
    if case["wrapper"] is None:
        return inner["optimizer"]
    if case["wrapper"] == "LossScaleOptimizer":
        return wrappers.loss_scale_optimizer(inner["inner_optimizer"], **case["kwargs"])
    default = inner.pop("default_optimizer")
    return wrappers.multi_optimizer(wrappers.optimizer_map(default, inner), **case["kwargs"])


def _corrupt(grads, step):
    """The recorder's Inf in ``w`` (step % 7 == 3) and NaN in ``b`` (step % 13 == 5)."""
    w, b = grads["w"], grads["b"]
    w = w.at[1, 2].set(jnp.where(step % 7 == 3, jnp.inf, w[1, 2]))
    b = b.at[0].set(jnp.where(step % 13 == 5, jnp.nan, b[0]))
    return {**grads, "w": w, "b": b}


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _trajectory(tx, scaled, ema, steps):
    def body(carry, step):
        params, state = carry
        grads = problem.gradient(params, step, xp=jnp)
        if scaled:  # the gradient of the loss times the scale, as scale_loss gives it
            scale = gradtx.tree_get(state, "loss_scale")
            grads = _corrupt(jax.tree.map(lambda g: scale * g, grads), step)
        updates, state = tx.update(grads, state, params)
        params = gradtx.apply_updates(params, updates)
        out = {**params}
        if scaled:
            out["loss_scale"] = gradtx.tree_get(state, "loss_scale")
        if ema:  # Keras's moving averages, readable from the state
            out |= {f"average/{k}": v for k, v in gradtx.tree_get(state, "average").items()}
        return (params, state), out

    params = jax.tree.map(jnp.asarray, problem.initial_params())
    return jax.lax.scan(body, (params, tx.init(params)), jnp.arange(1, steps + 1))[1]


@functools.cache
def _ours(index, steps=reference.STEPS):
    case = CASES[index]
    with jax.enable_x64(True):
        scaled = case["wrapper"] == "LossScaleOptimizer"
        ema = case["wrapper"] is None and case["inner"]["optimizer"][1].get("use_ema", False)
        out = _trajectory(_port(case), scaled, ema, steps)
        return {k: np.asarray(v) for k, v in out.items()}


def _recorded(index):
    """Keras's arrays of a case: the params, and its loss scale or moving averages."""
    data = np.load(DATA / "keras_options.npz")
    prefix = f"{index}/"
    return {k[len(prefix) :]: data[k] for k in data.files if k.startswith(prefix)}


def _assert_equal(case, ours, expected):
    assert_trajectories_equal(ours, expected, problem.SHAPES)
    assert set(ours) == set(expected)
    if case["wrapper"] == "LossScaleOptimizer":
        np.testing.assert_array_equal(ours["loss_scale"], expected["loss_scale"])
    averages = {k: k.removeprefix("average/") for k in expected if k.startswith("average/")}
    assert_trajectories_equal(ours, expected, averages)


def _id(case):
    return f"{case['index']}-{case['wrapper']}-{case['kwargs']}"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_matches_the_recorded_reference(case):
    _assert_equal(case, _ours(case["index"]), _recorded(case["index"]))


@pytest.mark.parametrize("case", [CASES[1], CASES[14]], ids=_id)
def test_matches_keras_live(case, keras_float64):
    steps = 8  # an Inf at step 3, a NaN at step 5
    expected = reference.run_keras(case, steps=steps)
    ours = {k: v[:steps] for k, v in _ours(case["index"]).items()}
    _assert_equal(case, ours, expected)


def test_loss_scale_halves_skips_and_grows(x64):
    inner = compat.keras.adam(0.1)
    tx = wrappers.loss_scale_optimizer(inner, initial_scale=8.0, dynamic_growth_steps=2)
    params = jnp.ones(2)
    state = tx.init(params)
    update = jax.jit(tx.update)
    seen = []
    for g in ([1.0, 2.0], [np.inf, 0.0], [1.0, 2.0], [2.0, 4.0], [8.0, 8.0], [np.nan, 1.0]):
        before = state
        updates, state = update(jnp.asarray(g), state, params)
        seen.append(float(gradtx.tree_get(state, "loss_scale")))
        if not np.all(np.isfinite(g)):  # skipped: no step, the inner state as it was
            np.testing.assert_array_equal(updates, 0.0)
            chex_equal = jax.tree.map(np.array_equal, state.inner_state, before.inner_state)
            assert all(jax.tree.leaves(chex_equal))
    # finite (1 of 2), Inf: halve, finite, finite: double, finite, NaN: halve
    assert seen == [8.0, 4.0, 4.0, 8.0, 8.0, 4.0]
    # The inner step saw g / scale: Adam's first step moves each coordinate by -lr.
    first, _ = update(jnp.asarray([8.0, -16.0]), tx.init(params), params)
    np.testing.assert_allclose(first, [-0.1, 0.1], rtol=1e-5)  # Keras's epsilon 1e-7
    assert float(wrappers.scale_loss(jnp.asarray(3.0), state)) == 12.0


def test_optimizer_map_routes_by_keras_path():
    params = {"dense": {"kernel": jnp.ones(2), "bias": jnp.ones(2)}, "head": jnp.ones(2)}
    sgd, adam = compat.keras.sgd(), compat.keras.adam()
    mapping = wrappers.optimizer_map(adam, {"dense/.*": sgd, "dense/bias": adam})
    groups = wrappers.multi_optimizer(mapping).transforms[1]
    # An exact key wins over a pattern; one optimizer object is one group.
    assert groups.param_labels(params) == {"dense": {"kernel": "0", "bias": "1"}, "head": "1"}
    both = wrappers.optimizer_map(adam, {"dense/.*": sgd, ".*/bias": adam})
    with pytest.raises(ValueError, match="'dense/bias' matches several patterns"):
        gradtx.partition({}, wrappers.multi_optimizer(both).transforms[1].param_labels).init(params)


BAD = [
    (lambda: wrappers.loss_scale_optimizer(compat.keras.sgd(), dynamic=False), "dynamic=False"),
    (lambda: wrappers.loss_scale_optimizer(compat.keras.sgd(), clipnorm=1.0), "clipnorm=1.0"),
    (lambda: wrappers.loss_scale_optimizer(compat.keras.sgd(), initial_scale=0.0), "initial_scale"),
    (
        lambda: wrappers.loss_scale_optimizer(compat.keras.sgd(), dynamic_growth_steps=0),
        "dynamic_growth_steps=0",
    ),
    (
        lambda: wrappers.optimizer_map(
            compat.keras.sgd(), {"w": wrappers.loss_scale_optimizer(compat.keras.sgd())}
        ),
        r"optimizer_map=\{'w'",
    ),
    (lambda: wrappers.multi_optimizer(compat.keras.sgd()), "optimizer_map=<Chain>"),
]


@pytest.mark.parametrize("build, match", BAD)
def test_bad_arguments_are_named(build, match):
    with pytest.raises((ValueError, TypeError), match=rf"keras\.\w+\(.*{match}"):
        build()


def test_keras_refuses_the_same(keras_float64):
    import keras

    sgd = keras.optimizers.SGD()
    for kwargs in ({"dynamic": False}, {"clipnorm": 1.0}):
        with pytest.raises(ValueError):
            keras.optimizers.LossScaleOptimizer(sgd, **kwargs)
    mapping = keras.optimizers.OptimizerMap(sgd)
    with pytest.raises(ValueError, match="cannot be LossScaleOptimizer"):
        mapping["w"] = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD())


KERAS_FACTORIES = [
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "ftrl",
    "lamb",
    "lion",
    "muon",
    "nadam",
    "rmsprop",
    "schedule_free_adamw",
    "sgd",
]


@pytest.mark.parametrize("factory", KERAS_FACTORIES)
def test_every_keras_optimizer_takes_the_base_options(factory):
    options = dict(use_ema=True, ema_overwrite_frequency=4, loss_scale_factor=2.0)
    options |= dict(exclude_from_weight_decay=["bias"])
    tx = getattr(compat.keras, factory)(gradient_accumulation_steps=3, **options)
    assert isinstance(tx, wrappers.KerasEma) and tx.ema_overwrite_frequency == 4
    unscale, accumulate = tx.inner.transforms
    assert unscale.loss_scale_factor == 2.0 and accumulate.steps == 3
    assert repr(accumulate.inner).startswith(f"keras.{factory}(")


OPTION_ERRORS = [
    (dict(gradient_accumulation_steps=1), "gradient_accumulation_steps=1"),
    (dict(use_ema=True, ema_momentum=1.5), "ema_momentum=1.5"),
    (dict(use_ema=True, ema_overwrite_frequency=2.5), "ema_overwrite_frequency=2.5"),
    (dict(loss_scale_factor=0.0), "loss_scale_factor=0"),
    (dict(clipnorm=1.0, global_clipnorm=1.0), "clipnorm=1.0, clipvalue=None, global_clipnorm=1.0"),
]


@pytest.mark.parametrize("kwargs, match", OPTION_ERRORS)
def test_bad_base_options_are_named(kwargs, match):
    with pytest.raises(ValueError, match=rf"keras\.(adam|unscale_loss)\({re.escape(match)}"):
        compat.keras.adam(**kwargs)


def test_a_fractional_accumulation_count_is_refused_and_a_whole_float_taken():
    # Keras takes 2.5 (its check is >= 2) and steps every fifth call, dividing by 2.5
    with pytest.raises(
        ValueError, match=r"keras\.sgd\(gradient_accumulation_steps=2\.5\): .* whole"
    ):
        compat.keras.sgd(0.1, gradient_accumulation_steps=2.5)
    assert compat.keras.sgd(0.1, gradient_accumulation_steps=3.0).steps == 3


def test_accumulation_evaluates_the_schedule_at_keras_raw_count(x64):
    rate = schedules.exponential_decay(0.1, 2, 0.5)
    tx = compat.keras.adamw(rate, gradient_accumulation_steps=3)
    raw = [x for x in jax.tree.leaves(tx, is_leaf=_is_raw) if _is_raw(x)]
    assert len(raw) == 2  # the step's rate and the decay's, both mapped
    # The n-th real update (inner count n - 1) runs at Keras's _iterations = 3 n - 1.
    np.testing.assert_array_equal(raw[0](jnp.arange(3)), rate(jnp.asarray([2, 5, 8])))


def _is_raw(x):
    return isinstance(x, wrappers.KerasRawIterations)


def test_exclusion_matches_keras_use_weight_decay(keras_float64):
    """Keras's _use_weight_decay on named layers' variables, and the mask on their paths."""
    import keras

    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4, name="dense"),
            keras.layers.LayerNormalization(name="norm"),
            keras.layers.Dense(2, name="dense_bias"),
        ]
    )
    paths = [v.path.split("/")[-2:] for v in model.weights]  # "sequential/dense/kernel"
    params = {}
    for (layer, leaf), v in zip(paths, model.weights, strict=True):
        params.setdefault(layer, {})[leaf] = jnp.zeros(v.shape)
    for var_names in (["bias"], ["dense"], ["^gamma$", "beta"], ["a$", "ker"]):
        optimizer = keras.optimizers.AdamW()
        optimizer.exclude_from_weight_decay(var_names=var_names)
        expected = {}
        for (layer, leaf), v in zip(paths, model.weights, strict=True):
            expected.setdefault(layer, {})[leaf] = optimizer._use_weight_decay(v)
        mask = wrappers.weight_decay_mask("adamw", var_names)
        assert mask(params) == expected, var_names


def test_exclusion_is_refused_where_not_ported_and_checked():
    with pytest.raises(ValueError, match=r"keras\.lamb\(weight_decay=0\.1, exclude_from"):
        compat.keras.lamb(weight_decay=0.1, exclude_from_weight_decay=["b"])
    assert compat.keras.lamb(exclude_from_weight_decay=["b"])  # nothing decays: no mask needed
    with pytest.raises(ValueError, match=r"keras\.adamw\(exclude_from_weight_decay='bias'\)"):
        compat.keras.adamw(exclude_from_weight_decay="bias")  # Keras would take its letters
    with pytest.raises(ValueError, match=r"keras\.sgd\(exclude_from_weight_decay=\['\('\]\)"):
        compat.keras.sgd(exclude_from_weight_decay=["("])


def test_keras_refuses_the_same_base_options(keras_float64):
    import keras

    for kwargs, _ in OPTION_ERRORS:
        if "loss_scale_factor" not in kwargs:  # Keras takes any factor: 0 divides by zero
            with pytest.raises(ValueError):
                keras.optimizers.Adam(**kwargs)
