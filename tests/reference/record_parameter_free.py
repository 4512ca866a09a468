"""Records prodigyopt's Prodigy and dadaptation's DAdaptAdam, DAdaptSGD and DAdaptAdaGrad.

They are the references of compat.pytorch's ports.

Run from the repository root, with ``prodigyopt==1.1.2``, ``dadaptation==3.2`` and torch::

    .venv/bin/python tests/reference/record_parameter_free.py

The problem is :mod:`record_keras_structured`'s on its Adafactor leaves: a matrix ``w``
(3, 4), a rank-3 ``t`` (2, 3, 4), a vector ``b`` (4,), a scalar ``s`` and a zero-initialised
``z`` (4,) (prodigyopt keeps a scalar 0 as its initial point there). The loss is separable
and nonconvex with a drifting linear term; gradients are zeroed when ``t % 17 == 0`` and
negated when ``t % 11 == 0``. This module is also the problem object that
``tests/replay.py`` and ``tests/test_parameter_free.py`` take (``STEPS``,
``initial_params``, ``gradient``, and ``value``, the loss, for optimizers that need it).

Every case runs ``STEPS`` steps in float64 (torch's default dtype float64, ``p.grad`` set
from :func:`gradient`, a scheduler stepped after each step) and stores the params after the
steps ``SAVED`` (0-based) in ``data/parameter_free.npz`` (``"{index}/{leaf}"``, shape
``(len(SAVED), *leaf_shape)``) and the cases in ``data/parameter_free.json``
(``{"index", "framework", "optimizer", "kwargs", "schedule"}``, as ``data/cases.json``,
and ``"steps"``: how many leading steps are well-conditioned, see ``MAX_AMPLIFICATION``),
with each class's keyword arguments and defaults (``"defaults"``). Torch and the packages
are imported only inside the functions.
"""

from __future__ import annotations

import numpy as np

try:  # imported by the tests (package ``reference``) or run as a script
    from .recording import check_trajectory, write_recording
except ImportError:
    from recording import check_trajectory, write_recording

try:  # imported by the tests (package ``reference``) or run as a script
    from . import record_keras_structured as _structured
except ImportError:
    import record_keras_structured as _structured

STEPS = 200
SAVED = _structured.SAVED
_LEAVES = "adafactor"  # the structured recorder's leaf set: matrix, rank 3, vector, scalar, zeros
SHAPES = _structured.SHAPES[_LEAVES]
CLASSES = {
    "prodigy": ("prodigyopt", "Prodigy"),
    "dadapt_adam": ("dadaptation", "DAdaptAdam"),
    "dadapt_sgd": ("dadaptation", "DAdaptSGD"),
    "dadapt_adagrad": ("dadaptation", "DAdaptAdaGrad"),
}


def initial_params() -> dict[str, np.ndarray]:
    return _structured.initial_params(_LEAVES)


def gradient(params: dict, step, xp=np) -> dict:
    """``factor(t) * dL_t/dp`` at 1-based ``step``, as :func:`record_keras_structured.gradient`."""
    return _structured.gradient(_LEAVES, params, step, xp=xp)


def value(params: dict, step, xp=np):
    """The loss ``L_t(p) = sum a p**2 + 0.5 sin 3p + c(t) p`` whose gradient is fed (unflipped)."""
    per_leaf, k = _structured._constants(_LEAVES)
    a = per_leaf(1.0 + 0.5 * np.sin(1.3 * k + 0.5))
    c = per_leaf(0.8 * np.cos(0.7 * k + 0.2))
    phase = per_leaf(0.9 * k)
    return sum(
        xp.sum(
            a[n] * p**2 + 0.5 * xp.sin(3.0 * p) + (c[n] + 0.4 * xp.sin(0.06 * step + phase[n])) * p
        )
        for n, p in params.items()
    )


def cases() -> list[dict]:
    """Each package's defaults, then each of its options (Prodigy's and DAdaptAdam's at lr 0.1,
    see ``MAX_AMPLIFICATION``)."""

    def case(optimizer, schedule=None, **kw):
        return {"framework": "pytorch", "optimizer": optimizer, "kwargs": kw, "schedule": schedule}

    # lr falls to 0 at step 150 and stays there: Prodigy and DAdaptAdam then take no step.
    to_zero = {"type": "LinearLR", "start_factor": 1.0, "end_factor": 0.0, "total_iters": 150}
    decaying = {"type": "ExponentialLR", "gamma": 0.99}
    return [
        case("prodigy"),
        case("prodigy", lr=0.1),
        case("prodigy", lr=0.05, betas=[0.8, 0.99], beta3=0.9, eps=1e-6),
        case("prodigy", lr=0.1, betas=[0.0, 0.999]),
        case("prodigy", lr=0.1, weight_decay=0.02),
        case("prodigy", lr=0.1, weight_decay=0.1, decouple=False),
        case("prodigy", lr=0.1, use_bias_correction=True),
        case("prodigy", lr=0.5, safeguard_warmup=True),
        case("prodigy", lr=0.1, d0=1e-4, d_coef=0.5),
        case("prodigy", lr=0.1, growth_rate=1.05),
        case("prodigy", lr=0.1, slice_p=3, fsdp_in_use=False),
        # beta3 = 0: s is the last gradient alone, so the zero-gradient steps are skipped.
        case("prodigy", lr=0.1, beta3=0.0, use_bias_correction=True),
        case("prodigy", to_zero, lr=1.0, use_bias_correction=True),
        case("dadapt_adam"),
        case("dadapt_adam", lr=0.1),
        case("dadapt_adam", lr=0.2, betas=[0.8, 0.99], eps=1e-6),
        case("dadapt_adam", lr=0.1, weight_decay=0.1),
        case("dadapt_adam", lr=0.1, weight_decay=0.1, decouple=True),
        case("dadapt_adam", lr=0.1, use_bias_correction=True, log_every=0),
        case("dadapt_adam", lr=0.1, d0=1e-4, growth_rate=1.05),
        case("dadapt_adam", lr=0.5, betas=[0.0, 0.9], fsdp_in_use=False),
        case("dadapt_adam", to_zero, lr=1.0, use_bias_correction=True),
        # DAdaptSGD and DAdaptAdaGrad are well conditioned at lr 1: their options are there.
        case("dadapt_sgd"),
        case("dadapt_sgd", lr=0.5),
        case("dadapt_sgd", momentum=0.9),
        case("dadapt_sgd", weight_decay=0.1),
        case("dadapt_sgd", d0=1e-4, growth_rate=1.05, log_every=0, fsdp_in_use=False),
        # DAdaptSGD raises at lr 0 (a variable is left unset): a schedule that stays above it.
        case("dadapt_sgd", decaying, lr=0.5, momentum=0.5),
        case("dadapt_adagrad"),
        case("dadapt_adagrad", lr=0.5, d0=1e-4),
        case("dadapt_adagrad", momentum=0.9),
        case("dadapt_adagrad", weight_decay=0.1, eps=1e-4),
        case("dadapt_adagrad", d0=1e-4, growth_rate=1.05, log_every=0),
        # At lr 0 DAdaptAdaGrad keeps d but still moves p, towards x0 - s / (sqrt(alpha) + eps).
        case("dadapt_adagrad", to_zero, lr=1.0, momentum=0.5, d0=1e-4),
    ]


def run_torch(
    case: dict, steps: int = STEPS, saved: np.ndarray = SAVED, p0: dict | None = None
) -> dict[str, np.ndarray]:
    """Runs one case from ``p0`` (``initial_params()``); the params after the steps ``saved``."""
    import importlib

    import torch

    torch.set_default_dtype(torch.float64)
    package, name = CLASSES[case["optimizer"]]
    start = initial_params() if p0 is None else p0
    params = {k: torch.tensor(v, requires_grad=True) for k, v in start.items()}
    optimizer = getattr(importlib.import_module(package), name)(
        list(params.values()), **case["kwargs"]
    )
    scheduler = None
    if case["schedule"]:
        spec = dict(case["schedule"])
        scheduler = getattr(torch.optim.lr_scheduler, spec.pop("type"))(optimizer, **spec)
    out = {k: [] for k in params}
    for step in range(1, steps + 1):
        current = {k: v.detach().numpy().copy() for k, v in params.items()}
        grads = gradient(current, step)
        for k, p in params.items():
            p.grad = torch.tensor(grads[k])
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        for k, p in params.items():
            if p.dtype != torch.float64:
                raise TypeError(f"{case}: {k} became {p.dtype}")
            out[k].append(p.detach().numpy().copy())
    return {k: np.stack(v)[saved[saved < steps]] for k, v in out.items()}


MAX_AMPLIFICATION = 1e4
"""How much a recorded step may amplify a perturbation of p0: rounding (1e-16) stays near 1e-12.

At lr 1 the D-Adaptation estimates throw this problem's params across the basins of
sin 3p, and a 1e-13 change of p0 grows up to 1e12-fold within 200 steps (DAdaptAdam's
defaults): no reimplementation agrees with the package there beyond the first steps. The
options are recorded at lr 0.1, where most cases stay below it over all 200 steps, and
each case is compared over its leading steps that do (``"steps"`` in the JSON).
"""


def conditioned_steps(case: dict, perturbation: float = 1e-13) -> int:
    """How many leading steps amplify a perturbation of p0 at most ``MAX_AMPLIFICATION``-fold."""
    every = np.arange(STEPS)
    a = run_torch(case, saved=every)
    b = run_torch(case, saved=every, p0={k: v + perturbation for k, v in initial_params().items()})
    worst = np.max([np.abs(a[k] - b[k]).reshape(STEPS, -1).max(axis=1) for k in a], axis=0)
    bad = np.flatnonzero(worst > MAX_AMPLIFICATION * perturbation)
    return int(bad[0]) if len(bad) else STEPS


def check(index: int, case: dict, arrays: dict[str, np.ndarray]) -> float:
    """Raises unless the case is finite, bounded and moving; returns its smallest move."""
    return check_trajectory(index, case, arrays, initial_params(), len(SAVED), min_move=1e-3)


def package_defaults(optimizer: str) -> dict:
    """The keyword arguments of the package's class and their defaults (``params`` left out)."""
    import importlib
    import inspect

    package, name = CLASSES[optimizer]
    parameters = inspect.signature(getattr(importlib.import_module(package), name)).parameters
    return {k: p.default for k, p in parameters.items() if k != "params"}


def main() -> None:
    recorded, arrays = [], []
    for index, case in enumerate(cases()):
        out = run_torch(case)
        move = check(index, case, out)
        steps = conditioned_steps(case)
        if steps < 15:
            raise ValueError(f"case {index} {case}: ill-conditioned after {steps} steps")
        print(
            f"{index:2d} moves {move:.3f}, {steps:3d} steps  {case['optimizer']} {case['kwargs']}"
        )
        arrays.append(out)
        recorded.append({**case, "steps": steps})
    write_recording(
        "parameter_free",
        recorded,
        arrays,
        ["torch", "prodigyopt", "dadaptation"],
        steps=STEPS,
        saved=SAVED.tolist(),
        leaves={k: list(s) for k, s in SHAPES.items()},
        defaults={optimizer: package_defaults(optimizer) for optimizer in CLASSES},
    )


if __name__ == "__main__":
    main()
