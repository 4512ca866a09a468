"""Records Keras 3's optimizer wrappers and base options in float64.

Run from the repository root, in an environment with Keras 3 (JAX backend)::

    .venv/bin/python tests/reference/record_keras_options.py

The problem is :mod:`problem`'s (leaves ``w``, ``b``, ``s``; float64 ``keras.Variable``s named
as the leaves, so that ``variable.path`` is the leaf's name), run for ``STEPS`` steps with
``optimizer.apply``. For ``LossScaleOptimizer`` the gradient passed at step t is the problem's
gradient times the optimizer's scale before the step (what ``scale_loss`` gives), with an Inf
put into ``w`` when ``t % 7 == 3`` and a NaN into ``b`` when ``t % 13 == 5``: the scale halves
and grows again. ``data/keras_options.npz`` holds
``"{index}/{leaf}"`` (the params after each step, ``(STEPS, *shape)``; ``apply`` runs op by op,
in ``jax.disable_jit``), for the loss-scale cases ``"{index}/loss_scale"`` (the scale after
each step), for ``use_ema`` ``"{index}/average/{leaf}"`` (Keras's moving averages);
``data/keras_options.json`` the cases (``{"index", "wrapper", "inner", "kwargs"}``: ``inner``
maps a name to ``[class, kwargs]``, the optimizers that the wrapper takes; wrapper None is one
optimizer with its base options: ``use_ema``, ``ema_momentum``, ``ema_overwrite_frequency``,
``gradient_accumulation_steps``, ``loss_scale_factor``, and ``exclude_from_weight_decay``: the
``var_names`` passed to that method before ``build``).
"""

from __future__ import annotations

import contextlib

import numpy as np

try:  # imported by the tests (package ``reference``) or run as a script
    from . import problem
    from .record_keras_structured import float64_reductions
    from .record_layerwise import _init_keras
    from .recording import write_recording
except ImportError:
    import problem
    from record_keras_structured import float64_reductions
    from record_layerwise import _init_keras
    from recording import write_recording

STEPS = 60
EXCLUDE = "exclude_from_weight_decay"  # a method in Keras, called before build; a keyword here


def cases() -> list[dict]:
    """Each wrapper with its options, then the base options; optimizers by class and kwargs."""
    return [
        {
            "wrapper": "LossScaleOptimizer",
            "inner": {"inner_optimizer": ["SGD", {"learning_rate": 0.05, "momentum": 0.9}]},
            "kwargs": {"initial_scale": 16.0, "dynamic_growth_steps": 3},
        },
        {
            "wrapper": "LossScaleOptimizer",
            "inner": {
                "inner_optimizer": [
                    "Adam",
                    {
                        "learning_rate": {"ExponentialDecay": [0.05, 10, 0.8]},
                        "global_clipnorm": 1.0,
                    },
                ]
            },
            "kwargs": {"dynamic_growth_steps": 5},
        },
        {
            "wrapper": "MultiOptimizer",
            "inner": {
                "default_optimizer": ["Adam", {"learning_rate": 0.05}],
                "w": ["SGD", {"learning_rate": 0.05, "momentum": 0.5}],
                "[bs]": ["Lion", {"learning_rate": 0.01, "global_clipnorm": 0.5}],
            },
            "kwargs": {},
        },
        {
            "wrapper": "MultiOptimizer",
            "inner": {
                "default_optimizer": ["Adam", {"learning_rate": 0.05, "weight_decay": 0.5}],
                "s": ["RMSprop", {"learning_rate": 0.01}],
            },
            "kwargs": {"loss_scale_factor": 3.0},
        },
        *(
            {"wrapper": None, "inner": {"optimizer": [kind, kwargs]}, "kwargs": {}}
            for kind, kwargs in [
                ("Adam", {"learning_rate": 0.05, "use_ema": True, "ema_momentum": 0.9}),
                (
                    "Adam",
                    {
                        "learning_rate": 0.05,
                        "use_ema": True,
                        "ema_momentum": 0.9,
                        "ema_overwrite_frequency": 5,
                    },
                ),
                (
                    "SGD",
                    {
                        "learning_rate": 0.05,
                        "momentum": 0.9,
                        "gradient_accumulation_steps": 3,
                        "global_clipnorm": 1.0,
                        "weight_decay": 0.1,
                    },
                ),
                (
                    "Adam",
                    {
                        "learning_rate": 0.05,
                        "gradient_accumulation_steps": 2,
                        "use_ema": True,
                        "ema_momentum": 0.8,
                        "ema_overwrite_frequency": 3,
                    },
                ),
                ("RMSprop", {"learning_rate": 0.01, "loss_scale_factor": 4.0, "clipvalue": 0.5}),
                # exclude_from_weight_decay (Keras's var_names; the variables are named w, b, s)
                (
                    "AdamW",
                    {"learning_rate": 0.05, "weight_decay": 0.5, EXCLUDE: ["b", "^s$"]},
                ),
                (
                    "Muon",
                    {
                        "learning_rate": 0.05,
                        "weight_decay": 0.3,
                        "adam_weight_decay": 0.2,
                        EXCLUDE: ["w", "^s$"],
                    },
                ),
                ("Adafactor", {"learning_rate": 0.05, "weight_decay": 0.3, EXCLUDE: ["s"]}),
                (
                    "Ftrl",
                    {
                        "learning_rate": 0.1,
                        "weight_decay": 0.3,
                        "l1_regularization_strength": 0.01,
                        EXCLUDE: ["w"],
                    },
                ),
                ("ScheduleFreeAdamW", {"learning_rate": 0.05, "weight_decay": 0.3, EXCLUDE: ["b"]}),
                # accumulation with a schedule: Keras evaluates it at the raw call count
                (
                    "SGD",
                    {
                        "learning_rate": {"ExponentialDecay": [0.05, 4, 0.7]},
                        "momentum": 0.9,
                        "gradient_accumulation_steps": 3,
                        "weight_decay": 0.2,
                        EXCLUDE: ["b"],
                    },
                ),
                (
                    "Adam",
                    {
                        "learning_rate": {"ExponentialDecay": [0.05, 5, 0.6]},
                        "gradient_accumulation_steps": 2,
                        "use_ema": True,
                        "ema_momentum": 0.8,
                    },
                ),
                (
                    "Adafactor",
                    {
                        "learning_rate": {"ExponentialDecay": [0.5, 3, 0.5]},
                        "gradient_accumulation_steps": 2,
                        "weight_decay": 0.1,
                    },
                ),
            ]
        ),
    ]


def build_inner(keras, spec: list) -> object:
    """A Keras optimizer from ``[class, kwargs]``; a dict learning rate is a schedule;
    ``exclude_from_weight_decay`` is passed to that method as ``var_names``."""
    kind, kwargs = spec
    kwargs = dict(kwargs)
    if isinstance(kwargs.get("learning_rate"), dict):
        ((schedule, args),) = kwargs["learning_rate"].items()
        kwargs["learning_rate"] = getattr(keras.optimizers.schedules, schedule)(*args)
    excluded = kwargs.pop(EXCLUDE, None)
    optimizer = getattr(keras.optimizers, kind)(**kwargs)
    if excluded is not None:
        optimizer.exclude_from_weight_decay(var_names=excluded)
    return optimizer


def corrupt(grads: dict, step: int) -> dict:
    """An Inf in ``w`` when ``step % 7 == 3``, a NaN in ``b`` when ``step % 13 == 5``."""
    grads = {k: np.array(v) for k, v in grads.items()}
    if step % 7 == 3:
        grads["w"][1, 2] = np.inf
    if step % 13 == 5:
        grads["b"][0] = np.nan
    return grads


def run_keras(case: dict, steps: int = STEPS) -> dict[str, np.ndarray]:
    """Runs one case; returns the params (and the loss scale) after every step."""
    import jax

    keras = _init_keras()
    params = problem.initial_params()
    variables = {k: keras.Variable(v, dtype="float64", name=k) for k, v in params.items()}
    inner = {name: build_inner(keras, spec) for name, spec in case["inner"].items()}
    scaled = case["wrapper"] == "LossScaleOptimizer"
    if case["wrapper"] is None:  # the base options of one optimizer
        opt = inner["optimizer"]
    elif scaled:
        opt = keras.optimizers.LossScaleOptimizer(inner["inner_optimizer"], **case["kwargs"])
    else:
        default = inner.pop("default_optimizer")
        mapping = keras.optimizers.OptimizerMap(default, inner)
        opt = keras.optimizers.MultiOptimizer(mapping, **case["kwargs"])
    opt.build(list(variables.values()))
    # Muon's norm and Adafactor's means in float64, as record_keras_structured records them.
    float32_reductions = {spec[0] for spec in case["inner"].values()} & {"Muon", "Adafactor"}
    exact = float64_reductions if float32_reductions else contextlib.nullcontext
    ema = getattr(opt, "use_ema", False)
    out = {k: [] for k in params} | ({"loss_scale": []} if scaled else {})
    out |= {f"average/{k}": [] for k in params} if ema else {}
    for step in range(1, steps + 1):
        current = {k: np.asarray(v.value, dtype=np.float64) for k, v in variables.items()}
        grads = problem.gradient(current, step)
        if scaled:
            scale = float(opt.dynamic_scale.value)
            grads = corrupt({k: scale * g for k, g in grads.items()}, step)
        # Without jit, the ops.cond of LossScaleOptimizer's stateful apply calls its branch
        # (traced, the branches' variable assignments leak tracers on the JAX backend).
        with jax.disable_jit(), exact():
            opt.apply([grads[k] for k in params], list(variables.values()))
        for k, v in variables.items():
            if v.value.dtype != np.float64:
                raise TypeError(f"{case}: variable {k} became {v.value.dtype}")
            out[k].append(np.asarray(v.value))
        if scaled:
            out["loss_scale"].append(float(opt.dynamic_scale.value))
        if ema:  # Keras keeps the averages in the variables' order
            for k, average in zip(params, opt._model_variables_moving_average):
                out[f"average/{k}"].append(np.asarray(average.value))
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def check(index: int, case: dict, arrays: dict[str, np.ndarray]) -> None:
    """Raises unless every leaf is finite and moves; a loss scale both halves and grows."""
    for k in problem.SHAPES:
        if not np.all(np.isfinite(arrays[k])) or np.ptp(arrays[k]) == 0:
            raise ValueError(f"case {index} {case}: {k} is not finite or does not move")
    if "loss_scale" in arrays:
        ratios = set(np.round(arrays["loss_scale"][1:] / arrays["loss_scale"][:-1], 6))
        if not {0.5, 2.0} <= ratios:
            raise ValueError(f"case {index} {case}: the scale never both halves and grows")


def main() -> None:
    _init_keras()
    recorded, arrays = cases(), []
    for index, case in enumerate(recorded):
        arrays.append(run_keras(case))
        check(index, case, arrays[-1])
        print(f"{index:2d} {case['wrapper']!s:20s} {case['inner']}  {case['kwargs']}")
    write_recording("keras_options", recorded, arrays, ["keras", "jax"], steps=STEPS)


if __name__ == "__main__":
    main()
