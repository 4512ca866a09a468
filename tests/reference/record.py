"""Records reference trajectories of the real torch.optim and Keras 3 optimizers.

Run from the repository root, in an environment with the project's ``reference`` extra
(``torch==2.13.0`` and ``keras>=3.5``, with ``jax`` as Keras's backend)::

    /tmp/refvenv/bin/python tests/reference/record.py

Every case runs ``problem.STEPS`` steps in float64 on :mod:`problem`, feeding at step ``t``
``problem.gradient(params, t)`` evaluated at the current params, and stores the params after
every step. It writes ``data/pytorch.npz`` and ``data/keras.npz`` (keys ``"{index}/{leaf}"``
of shape ``(STEPS, *leaf_shape)``; ``"{index}/ax/{leaf}"``, torch ASGD's averaged iterate
after every step; ``"{index}/lr"``, shape ``(STEPS,)``, the learning rate the framework used
at each step, for cases with a schedule: torch's ``param_groups[0]["lr"]`` before
``optimizer.step()``, Keras's ``optimizer.learning_rate``, i.e. ``schedule(t - 1)``) and
``data/cases.json`` (every case with its global ``index``, and the versions used). Keras
cases with a schedule carry the schedule's ``initial_learning_rate`` instead of a
``learning_rate`` keyword.

Torch and Keras are imported only inside the functions that run them, so that pytest's
doctest collection can import this module without them.
"""

from __future__ import annotations

import os

import numpy as np

try:  # imported by the tests (package ``reference``) or run as a script
    from .recording import write_arrays, write_meta
except ImportError:
    from recording import write_arrays, write_meta
import problem


def _case(framework: str, optimizer: str, schedule: dict | None = None, **kwargs) -> dict:
    return {"framework": framework, "optimizer": optimizer, "kwargs": kwargs, "schedule": schedule}


def torch_cases() -> list[dict]:
    """The torch.optim cases: each optimizer's pure defaults, then its options."""
    t = lambda optimizer, schedule=None, **kw: _case("pytorch", optimizer, schedule, **kw)
    return [
        t("sgd"),
        t("sgd", lr=0.02),
        t("sgd", lr=0.02, momentum=0.9),
        t("sgd", lr=0.02, momentum=0.9, dampening=0.3),
        t("sgd", lr=0.02, momentum=0.8, dampening=0.5, weight_decay=0.05),
        t("sgd", lr=0.02, momentum=0.9, nesterov=True),
        t("sgd", lr=0.02, momentum=0.5, weight_decay=0.1),
        t("sgd", lr=1e-3, momentum=0.5, maximize=True),
        t("sgd", lr=1e-3, momentum=0.5, weight_decay=0.5, maximize=True),
        t("sgd", lr=2e-3, weight_decay=0.3, maximize=True),
        t("sgd", {"type": "StepLR", "step_size": 30, "gamma": 0.5}, lr=0.05, momentum=0.9),
        t("adagrad"),
        t("adagrad", lr=0.1, lr_decay=0.01),
        t("adagrad", lr=0.1, initial_accumulator_value=0.5, eps=1e-3),
        t("adagrad", lr=0.1, weight_decay=0.1),
        t("adagrad", lr=0.05, maximize=True),
        t("adagrad", {"type": "ExponentialLR", "gamma": 0.99}, lr=0.2),
        t("rmsprop"),
        t("rmsprop", lr=0.005, alpha=0.9, eps=1e-4),
        t("rmsprop", lr=0.005, centered=True),
        t("rmsprop", lr=0.002, momentum=0.9),
        t("rmsprop", lr=0.002, momentum=0.9, centered=True, weight_decay=0.1),
        t("rmsprop", lr=0.002, maximize=True),
        t(
            "rmsprop",
            {"type": "CosineAnnealingLR", "T_max": 200, "eta_min": 1e-4},
            lr=0.01,
            momentum=0.5,
        ),
        t("adadelta"),
        t("adadelta", lr=0.5, rho=0.95, eps=1e-4),
        t("adadelta", weight_decay=0.1),
        t("adadelta", lr=0.5, maximize=True),
        t("adadelta", {"type": "StepLR", "step_size": 40, "gamma": 0.5}, lr=2.0),
        t("adam"),
        t("adam", lr=0.01, betas=[0.8, 0.99], eps=1e-6),
        t("adam", lr=0.01, amsgrad=True),
        t("adam", lr=0.01, weight_decay=0.1),
        t("adam", lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
        t("adam", lr=0.01, weight_decay=0.05, amsgrad=True, decoupled_weight_decay=True),
        t("adam", lr=0.005, maximize=True),
        t("adam", {"type": "ExponentialLR", "gamma": 0.98}, lr=0.05),
        t(
            "adam",
            {"type": "LinearLR", "start_factor": 0.25, "end_factor": 1.0, "total_iters": 40},
            lr=0.02,
        ),
        t("adamw"),
        t("adamw", lr=0.01, weight_decay=0.1),
        t("adamw", lr=0.01, amsgrad=True, betas=[0.85, 0.995], eps=1e-6),
        t("adamw", lr=0.005, maximize=True),
        t(
            "adamw",
            {"type": "CosineAnnealingLR", "T_max": 250, "eta_min": 1e-3},
            lr=0.02,
            weight_decay=0.1,
        ),
        t("adamax"),
        t("adamax", lr=0.02, betas=[0.8, 0.99], eps=1e-4),
        t("adamax", lr=0.02, weight_decay=0.1),
        t("adamax", lr=0.005, maximize=True),
        t("adamax", {"type": "StepLR", "step_size": 50, "gamma": 0.3}, lr=0.05),
        t("nadam"),
        t("nadam", lr=0.01, momentum_decay=0.01),
        t("nadam", lr=0.01, momentum_decay=1.0),
        t("nadam", lr=0.01, weight_decay=0.1),
        t("nadam", lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
        t("nadam", lr=0.01, betas=[0.8, 0.99], eps=1e-6),
        t("nadam", lr=0.005, maximize=True),
        t(
            "nadam",
            {"type": "LinearLR", "start_factor": 1.0, "end_factor": 0.1, "total_iters": 150},
            lr=0.02,
        ),
        t("radam"),
        t("radam", lr=0.01, weight_decay=0.1),
        t("radam", lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
        t("radam", lr=0.01, betas=[0.8, 0.95], eps=1e-6),
        t("radam", lr=0.005, maximize=True),
        t(
            "radam",
            {"type": "CosineAnnealingLR", "T_max": 200, "eta_min": 0.0},
            lr=0.03,
            betas=[0.9, 0.99],
        ),
        t("rprop"),
        t("rprop", lr=0.05, etas=[0.3, 1.5], step_sizes=[1e-4, 0.1]),
        t("rprop", lr=0.5, step_sizes=[1e-3, 0.2]),
        t("rprop", lr=0.005, step_sizes=[1e-6, 0.01], maximize=True),
        # torch Rprop reads lr only to initialise its step sizes: this schedule has no effect.
        t("rprop", {"type": "ExponentialLR", "gamma": 0.9}, lr=0.02),
        t("asgd"),
        t("asgd", lr=0.02, lambd=1e-3, alpha=0.6, t0=50),
        t("asgd", lr=0.02, t0=50, weight_decay=0.1),
        t("asgd", lr=0.002, t0=100, maximize=True),
        # ASGD keeps its own eta, refreshed from group["lr"] at the end of each step.
        t("asgd", {"type": "StepLR", "step_size": 30, "gamma": 0.5}, lr=0.05, t0=50),
    ]


def keras_cases() -> list[dict]:
    """The Keras 3 cases: each optimizer's pure defaults, then its options."""
    k = lambda optimizer, schedule=None, **kw: _case("keras", optimizer, schedule, **kw)
    return [
        k("sgd"),
        k("sgd", learning_rate=0.02, momentum=0.9),
        k("sgd", learning_rate=0.02, momentum=0.9, nesterov=True),
        k("sgd", learning_rate=0.02, weight_decay=0.1),
        k("sgd", learning_rate=0.05, clipvalue=0.5),
        k(
            "sgd",
            {
                "type": "ExponentialDecay",
                "initial_learning_rate": 0.05,
                "decay_steps": 30,
                "decay_rate": 0.5,
                "staircase": True,
            },
            momentum=0.9,
        ),
        k(
            "sgd",
            {
                "type": "PiecewiseConstantDecay",
                "boundaries": [50, 120],
                "values": [0.05, 0.02, 0.005],
            },
            momentum=0.8,
            nesterov=True,
            weight_decay=0.05,
        ),
        k("adagrad"),
        k("adagrad", learning_rate=0.1),
        k("adagrad", learning_rate=0.1, initial_accumulator_value=0.01, epsilon=1e-4),
        k("adagrad", learning_rate=0.1, weight_decay=0.05, clipnorm=1.0),
        k(
            "adagrad",
            {
                "type": "InverseTimeDecay",
                "initial_learning_rate": 0.2,
                "decay_steps": 20,
                "decay_rate": 0.5,
                "staircase": False,
            },
        ),
        k("rmsprop"),
        k("rmsprop", learning_rate=0.005, rho=0.8, epsilon=1e-4),
        k("rmsprop", learning_rate=0.002, centered=True),
        k("rmsprop", learning_rate=0.002, rho=0.99, momentum=0.9),
        k(
            "rmsprop",
            learning_rate=0.002,
            rho=0.99,
            momentum=0.9,
            centered=True,
            weight_decay=0.1,
        ),
        k(
            "rmsprop",
            {
                "type": "CosineDecay",
                "initial_learning_rate": 0.01,
                "decay_steps": 200,
                "alpha": 0.01,
            },
            momentum=0.5,
        ),
        k("adadelta"),
        k("adadelta", learning_rate=1.0),
        k("adadelta", learning_rate=1.0, rho=0.9, epsilon=1e-6),
        k("adadelta", learning_rate=0.5, weight_decay=0.1, global_clipnorm=2.0),
        k(
            "adadelta",
            {
                "type": "PolynomialDecay",
                "initial_learning_rate": 2.0,
                "decay_steps": 150,
                "end_learning_rate": 0.1,
                "power": 2.0,
            },
        ),
        k("adam"),
        k("adam", learning_rate=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-4),
        k("adam", learning_rate=0.01, amsgrad=True),
        k("adam", learning_rate=0.01, beta_1=0.8, beta_2=0.95, epsilon=1e-5, amsgrad=True),
        k("adam", learning_rate=0.01, weight_decay=0.1),
        k("adam", learning_rate=0.01, clipnorm=1.0),
        k("adam", learning_rate=0.01, global_clipnorm=1.0),
        k(
            "adam",
            {
                "type": "ExponentialDecay",
                "initial_learning_rate": 0.05,
                "decay_steps": 50,
                "decay_rate": 0.3,
                "staircase": False,
            },
        ),
        k(
            "adam",
            {
                "type": "CosineDecay",
                "initial_learning_rate": 0.001,
                "decay_steps": 150,
                "alpha": 0.1,
                "warmup_target": 0.02,
                "warmup_steps": 30,
            },
            amsgrad=True,
        ),
        k("adamw"),
        k("adamw", learning_rate=0.01, weight_decay=0.1),
        k("adamw", learning_rate=0.01, amsgrad=True, beta_1=0.85, beta_2=0.995, epsilon=1e-6),
        k("adamw", learning_rate=0.01, clipvalue=0.5),
        k(
            "adamw",
            {
                "type": "PiecewiseConstantDecay",
                "boundaries": [60, 140],
                "values": [0.02, 0.01, 0.002],
            },
            weight_decay=0.2,
        ),
        k("adamax"),
        k("adamax", learning_rate=0.02, beta_1=0.8, beta_2=0.99, epsilon=1e-4),
        k("adamax", learning_rate=0.02, weight_decay=0.1),
        k(
            "adamax",
            {
                "type": "InverseTimeDecay",
                "initial_learning_rate": 0.05,
                "decay_steps": 40,
                "decay_rate": 1.0,
                "staircase": True,
            },
        ),
        k("nadam"),
        k("nadam", learning_rate=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-6),
        k("nadam", learning_rate=0.01, weight_decay=0.1),
        k("nadam", learning_rate=0.01, clipnorm=0.5),
        k(
            "nadam",
            {
                "type": "PolynomialDecay",
                "initial_learning_rate": 0.02,
                "decay_steps": 60,
                "end_learning_rate": 0.002,
                "power": 1.0,
                "cycle": True,
            },
        ),
        k("lion"),
        k("lion", learning_rate=0.01, beta_1=0.95, beta_2=0.98),
        k("lion", learning_rate=0.01, weight_decay=0.5),
        k("lion", learning_rate=0.01, global_clipnorm=1.0),
        k(
            "lion",
            {"type": "CosineDecay", "initial_learning_rate": 0.02, "decay_steps": 200},
        ),
        k("ftrl"),
        k("ftrl", learning_rate=0.1),
        k("ftrl", learning_rate=0.1, learning_rate_power=-0.7, initial_accumulator_value=0.5),
        k("ftrl", learning_rate=0.05, learning_rate_power=0.0),
        k(
            "ftrl",
            learning_rate=0.1,
            l1_regularization_strength=0.05,
            l2_regularization_strength=0.1,
        ),
        k("ftrl", learning_rate=0.1, l2_shrinkage_regularization_strength=0.05, beta=0.5),
        k("ftrl", learning_rate=0.1, weight_decay=0.05, clipvalue=1.0),
        k(
            "ftrl",
            {
                "type": "ExponentialDecay",
                "initial_learning_rate": 0.2,
                "decay_steps": 25,
                "decay_rate": 0.7,
                "staircase": True,
            },
        ),
    ]


def _split_schedule(schedule: dict) -> tuple[str, dict]:
    kwargs = dict(schedule)
    return kwargs.pop("type"), kwargs


def run_torch(case: dict) -> dict[str, np.ndarray]:
    """Runs one torch.optim case; returns the recorded arrays keyed by leaf (and ``ax/…``)."""
    import torch

    torch.set_default_dtype(torch.float64)
    names = list(problem.SHAPES)
    tensors = {
        k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
        for k, v in problem.initial_params().items()
    }
    optimizers = {
        name.lower(): cls
        for name, cls in vars(torch.optim).items()
        if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)
    }
    opt = optimizers[case["optimizer"]]([tensors[k] for k in names], **case["kwargs"])
    scheduler = None
    if case["schedule"] is not None:
        kind, kwargs = _split_schedule(case["schedule"])
        scheduler = getattr(torch.optim.lr_scheduler, kind)(opt, **kwargs)

    out = {k: [] for k in names}
    if case["optimizer"] == "asgd":
        out.update({f"ax/{k}": [] for k in names})
    if scheduler is not None:
        out["lr"] = []
    for step in range(1, problem.STEPS + 1):
        params = {k: v.detach().numpy().copy() for k, v in tensors.items()}
        for k, g in problem.gradient(params, step).items():
            tensors[k].grad = torch.tensor(g, dtype=torch.float64)
        if scheduler is not None:
            out["lr"].append(float(opt.param_groups[0]["lr"]))
        opt.step()
        if scheduler is not None:
            scheduler.step()
        for k in names:
            out[k].append(tensors[k].detach().numpy().copy())
            if case["optimizer"] == "asgd":
                out[f"ax/{k}"].append(opt.state[tensors[k]]["ax"].numpy().copy())
    return {k: np.stack(v).astype(np.float64) for k, v in out.items()}


def _init_keras():
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ["JAX_ENABLE_X64"] = "1"
    import jax

    jax.config.update("jax_enable_x64", True)
    import keras

    if keras.backend.backend() != "jax":
        raise RuntimeError(f"Keras must use the JAX backend, got {keras.backend.backend()}")
    keras.config.set_floatx("float64")
    return keras


def run_keras(case: dict) -> dict[str, np.ndarray]:
    """Runs one Keras 3 case; returns the recorded arrays keyed by leaf (and ``lr``)."""
    keras = _init_keras()
    names = list(problem.SHAPES)
    variables = {
        k: keras.Variable(v, dtype="float64", name=k) for k, v in problem.initial_params().items()
    }
    optimizers = {
        name.lower(): cls
        for name, cls in vars(keras.optimizers).items()
        if isinstance(cls, type) and issubclass(cls, keras.optimizers.Optimizer)
    }
    kwargs = dict(case["kwargs"])
    if case["schedule"] is not None:
        kind, schedule_kwargs = _split_schedule(case["schedule"])
        kwargs["learning_rate"] = getattr(keras.optimizers.schedules, kind)(**schedule_kwargs)
    opt = optimizers[case["optimizer"]](**kwargs)
    opt.build([variables[k] for k in names])

    out = {k: [] for k in names}
    if case["schedule"] is not None:
        out["lr"] = []
    for step in range(1, problem.STEPS + 1):
        params = {k: np.asarray(v.value, dtype=np.float64) for k, v in variables.items()}
        grads = problem.gradient(params, step)
        if case["schedule"] is not None:
            out["lr"].append(float(opt.learning_rate))
        opt.apply([grads[k] for k in names], [variables[k] for k in names])
        for k in names:
            value = variables[k].value
            if value.dtype != np.float64:
                raise TypeError(f"{case}: variable {k} became {value.dtype}")
            out[k].append(np.asarray(value))
    return {k: np.stack(v).astype(np.float64) for k, v in out.items()}


def _check(index: int, case: dict, arrays: dict[str, np.ndarray]) -> str:
    """Raises unless the case is finite, bounded and moving; returns a one-line summary.

    Pure-defaults cases need only move visibly: Keras Adadelta's default lr=1e-3 barely moves.
    """
    p0 = problem.initial_params()
    for key, value in arrays.items():
        if not np.all(np.isfinite(value)):
            raise FloatingPointError(f"case {index} {case}: {key} is not finite")
    moved, active = [], []
    for k in problem.SHAPES:
        traj = arrays[k]
        if traj.shape != (problem.STEPS, *np.shape(p0[k])):
            raise ValueError(f"case {index}: {k} has shape {traj.shape}")
        if np.max(np.abs(traj)) > 20:
            raise ValueError(f"case {index} {case}: leaf {k} grows to {np.max(np.abs(traj))}")
        moved.append(np.max(np.abs(traj - p0[k])))
        steps = np.abs(np.diff(traj, axis=0, prepend=p0[k][None])).reshape(problem.STEPS, -1)
        active.append(np.max(steps, axis=1) > 1e-6)
    pure_defaults = not case["kwargs"] and case["schedule"] is None
    if min(moved) < (1e-5 if pure_defaults else 1e-2):
        raise ValueError(f"case {index} {case}: a leaf moves by only {min(moved):.2g}")
    return f"min move {min(moved):.3f}, steps moving >1e-6: {np.sum(np.any(active, axis=0)):3d}"


def main() -> None:
    _init_keras()
    cases = []
    for framework, make_cases, run in (
        ("pytorch", torch_cases, run_torch),
        ("keras", keras_cases, run_keras),
    ):
        runs = []
        for case in make_cases():
            index = len(cases)
            recorded = run(case)
            summary = _check(index, case, recorded)
            print(f"{index:3d} {case['optimizer']:9s} {summary}  {case['kwargs']}")
            runs.append((index, recorded))
            cases.append(case)
        write_arrays(framework, runs)
    leaves = {k: list(s) for k, s in problem.SHAPES.items()}
    write_meta("cases", cases, ["torch", "keras", "jax"], steps=problem.STEPS, leaves=leaves)


if __name__ == "__main__":
    main()
