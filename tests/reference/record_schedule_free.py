"""Records the Schedule-Free optimizers of the authors' package and of Keras 3.

Run from the repository root, with ``schedulefree==1.4.1``, torch and Keras 3 (JAX backend)::

    .venv/bin/python tests/reference/record_schedule_free.py

The problem is :mod:`record_layerwise`'s (a separable, nonconvex loss with a drifting linear
term; gradients zeroed when ``t % 17 == 0`` and negated when ``t % 11 == 0``) on its leaves of
mixed shapes: ``w`` (3, 4), ``t`` (2, 3, 4), ``b`` (4,), ``s`` () and a zero-initialised ``z``
(4,).

Every case runs ``STEPS`` steps in float64 and stores, after the steps ``SAVED`` (0-based
indices), the training params y (``"{index}/y/{leaf}"``) and the evaluation params x
(``"{index}/x/{leaf}"``), each of shape ``(len(SAVED), *leaf_shape)``, in
``data/schedule_free.npz``; ``data/schedule_free.json`` lists the cases
(``{"index", "framework", "optimizer", "kwargs", "schedule"}``, as ``data/cases.json``; the
optimizer is the gradtx.compat name) and each class's keyword defaults (``"defaults"``).

- ``schedulefree``'s ``SGDScheduleFree``, ``AdamWScheduleFree``, ``RAdamScheduleFree``: torch's
  default dtype float64, the package's default (foreach) path; ``optimizer.train()`` before
  each step, ``optimizer.eval()`` after it to read x, as the authors' training loops do. A
  torch scheduler, where a case has one, steps after every ``optimizer.step()``.
- ``keras.optimizers.ScheduleFreeAdamW``: ``floatx`` float64, float64 ``keras.Variable``s,
  ``optimizer.apply``. Keras has no evaluation mode; x is computed from its ``momentum``
  variables (z) as ``(y - (1 - beta_1) z) / beta_1``.

Torch, schedulefree and Keras are imported only inside the functions that run them.
"""

from __future__ import annotations

import inspect

import numpy as np

try:  # imported by the tests (package ``reference``) or run as a script
    from .recording import check_trajectory, write_recording
except ImportError:
    from recording import check_trajectory, write_recording

try:  # imported by the tests (package ``reference``) or run as a script
    from .record_layerwise import _init_keras, gradient, initial_params, SHAPES
except ImportError:
    from record_layerwise import _init_keras, gradient, initial_params, SHAPES

STEPS = 200
SAVED = np.r_[0:10, 19:STEPS:10]  # every step at first, then every tenth: the file stays small
CLASSES = {
    "sgd_schedule_free": "SGDScheduleFree",
    "adamw_schedule_free": "AdamWScheduleFree",
    "radam_schedule_free": "RAdamScheduleFree",
    "schedule_free_adamw": "ScheduleFreeAdamW",
}


def _case(framework: str, optimizer: str, schedule: dict | None = None, **kwargs) -> dict:
    return {"framework": framework, "optimizer": optimizer, "kwargs": kwargs, "schedule": schedule}


def cases() -> list[dict]:
    """Each class's defaults (SGD's lr of 1 diverges here: 0.1), then each of its options."""
    sgd = lambda **kw: _case("pytorch", "sgd_schedule_free", **kw)  # noqa: E731
    adamw = lambda schedule=None, **kw: _case("pytorch", "adamw_schedule_free", schedule, **kw)  # noqa: E731
    radam = lambda **kw: _case("pytorch", "radam_schedule_free", **kw)  # noqa: E731
    keras = lambda schedule=None, **kw: _case("keras", "schedule_free_adamw", schedule, **kw)  # noqa: E731
    decay = {"type": "ExponentialDecay", "initial_learning_rate": 0.05, "decay_steps": 20}
    return [
        sgd(lr=0.1),
        sgd(lr=0.2, momentum=0.5, weight_decay=0.05),
        sgd(lr=0.1, warmup_steps=20),
        sgd(lr=0.1, r=1.0, weight_lr_power=1.0),
        sgd(lr=0.1, weight_lr_power=0.0, foreach=False),
        adamw(),
        adamw(lr=0.05),
        adamw(lr=0.05, betas=[0.8, 0.99], eps=1e-4),
        adamw(lr=0.05, weight_decay=0.1),
        adamw(lr=0.05, warmup_steps=20),
        adamw(lr=0.05, r=0.5, weight_lr_power=3.0),
        adamw({"type": "ExponentialLR", "gamma": 0.99}, lr=0.05, warmup_steps=10),
        radam(),
        radam(lr=0.05),
        radam(lr=0.05, betas=[0.8, 0.99], eps=1e-4),
        radam(lr=0.05, betas=[0.9, 0.9], weight_decay=0.1),
        radam(lr=0.05, r=1.0, weight_lr_power=0.0),
        radam(lr=0.02, silent_sgd_phase=False, foreach=False),
        keras(),
        keras(learning_rate=0.05),
        keras(learning_rate=0.05, beta_1=0.8, beta_2=0.99, epsilon=1e-4),
        keras(learning_rate=0.05, warmup_steps=20),
        keras(learning_rate=0.05, weight_decay=0.5),
        keras(learning_rate=0.05, clipnorm=0.5),
        keras(learning_rate=0.05, global_clipnorm=1.0),
        keras(learning_rate=0.05, clipvalue=0.3),
        keras({**decay, "decay_rate": 0.8}, weight_decay=0.2, warmup_steps=10),
    ]


def _rows(history: list[np.ndarray], steps: int) -> np.ndarray:
    return np.stack(history).astype(np.float64)[SAVED[steps > SAVED]]


def run_torch(case: dict, steps: int = STEPS) -> dict[str, np.ndarray]:
    """Runs one package case; returns ``"y/{leaf}"`` and ``"x/{leaf}"`` after the steps SAVED."""
    import schedulefree
    import torch

    torch.set_default_dtype(torch.float64)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in initial_params().items()}
    kwargs = dict(case["kwargs"])
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    cls = getattr(schedulefree, CLASSES[case["optimizer"]])
    optimizer = cls(list(params.values()), **kwargs)
    scheduler = None
    if case["schedule"]:
        spec = dict(case["schedule"])
        scheduler = getattr(torch.optim.lr_scheduler, spec.pop("type"))(optimizer, **spec)
    history = {f"{kind}/{k}": [] for kind in "yx" for k in params}
    for step in range(1, steps + 1):
        optimizer.train()
        grads = gradient({k: p.detach().numpy() for k, p in params.items()}, step)
        for k, p in params.items():
            p.grad = torch.tensor(grads[k])
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        for k, p in params.items():
            history[f"y/{k}"].append(p.detach().numpy().copy())
        optimizer.eval()
        for k, p in params.items():
            history[f"x/{k}"].append(p.detach().numpy().copy())
    return {k: _rows(v, steps) for k, v in history.items()}


def run_keras(case: dict, steps: int = STEPS) -> dict[str, np.ndarray]:
    """Runs one Keras case; returns ``"y/{leaf}"`` and ``"x/{leaf}"`` after the steps SAVED."""
    keras = _init_keras()
    variables = {k: keras.Variable(v, dtype="float64", name=k) for k, v in initial_params().items()}
    kwargs = dict(case["kwargs"])
    if case["schedule"] is not None:
        spec = {key: v for key, v in case["schedule"].items() if key != "type"}
        kwargs["learning_rate"] = getattr(keras.optimizers.schedules, case["schedule"]["type"])(
            **spec
        )
    opt = keras.optimizers.ScheduleFreeAdamW(**kwargs)
    opt.build(list(variables.values()))
    b1 = kwargs.get("beta_1", 0.9)
    history = {f"{kind}/{k}": [] for kind in "yx" for k in variables}
    for step in range(1, steps + 1):
        current = {k: np.asarray(v.value, dtype=np.float64) for k, v in variables.items()}
        grads = gradient(current, step)
        opt.apply([grads[k] for k in variables], list(variables.values()))
        for (k, v), z in zip(variables.items(), opt._momentums):
            if v.value.dtype != np.float64:
                raise TypeError(f"{case}: variable {k} became {v.value.dtype}")
            y = np.asarray(v.value)
            history[f"y/{k}"].append(y)
            history[f"x/{k}"].append((y - (1 - b1) * np.asarray(z.value)) / b1)
    return {k: _rows(v, steps) for k, v in history.items()}


def run(case: dict, steps: int = STEPS) -> dict[str, np.ndarray]:
    return (run_torch if case["framework"] == "pytorch" else run_keras)(case, steps)


def defaults() -> dict[str, dict]:
    """Each class's keyword defaults, by gradtx.compat name (``params`` left out)."""
    import keras
    import schedulefree

    out = {}
    for name, cls_name in CLASSES.items():
        module = schedulefree if name.endswith("_schedule_free") else keras.optimizers
        signature = inspect.signature(getattr(module, cls_name).__init__)
        out[name] = {
            k: (list(p.default) if isinstance(p.default, tuple) else p.default)
            for k, p in signature.parameters.items()
            if p.default is not inspect.Parameter.empty
        }
    return out


def check(index: int, case: dict, arrays: dict[str, np.ndarray]) -> float:
    """Raises unless the case is finite, bounded and moving; returns its smallest move."""
    p0 = initial_params()
    start = {f"{kind}/{k}": p0[k] for k in SHAPES for kind in "yx"}
    # At the default lr 0.0025 (RAdam's rectified from 0) a leaf moves by under 200 * 0.0025.
    min_move = 0.01 if not case["kwargs"] else 0.1
    return check_trajectory(index, case, arrays, start, len(SAVED), min_move)


def main() -> None:
    _init_keras()
    recorded, arrays = cases(), []
    for index, case in enumerate(recorded):
        arrays.append(run(case))
        print(f"{index:2d} min move {check(index, case, arrays[-1]):.3f}  {case}")
    write_recording(
        "schedule_free",
        recorded,
        arrays,
        ["torch", "schedulefree", "keras", "jax"],
        steps=STEPS,
        saved=SAVED.tolist(),
        leaves={k: list(s) for k, s in SHAPES.items()},
        defaults=defaults(),
    )


if __name__ == "__main__":
    main()
