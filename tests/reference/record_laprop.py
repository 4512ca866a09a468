"""Records pytorch-optimizer's LaProp, the reference of ``compat.pytorch.laprop``.

Run from the repository root with torch and ``pytorch-optimizer==4.1.0``::

    .venv/bin/python tests/reference/record_laprop.py

The problem is :mod:`record_layerwise`'s (a matrix ``w`` (3, 4), a rank-3 ``t`` (2, 3, 4), a
vector ``b`` (4,), a scalar ``s`` and a zero-initialised ``z`` (4,); a separable nonconvex
loss with a drifting linear term, gradients zeroed when ``t % 17 == 0`` and negated when
``t % 11 == 0``), the one tests/test_adam_variants.py replays.

Every case runs ``STEPS`` steps in float64 (torch's default dtype float64, ``p.grad`` set
from the gradient, a scheduler stepped after each step) with ``foreach=False``: the
package's batched path, its default, rounds the step size ``lr / L`` to float32 even for
float64 params. It stores the params after the steps ``SAVED`` (0-based) in
``data/laprop.npz`` (``"{index}/{leaf}"``, shape ``(len(SAVED), *leaf_shape)``) and in
``data/laprop.json`` the cases (``{"index", "framework", "optimizer", "kwargs",
"schedule"}``, as ``data/cases.json``), LaProp's keyword arguments and defaults
(``"defaults"``) and the versions. Torch and the package are imported only inside the
functions.
"""

from __future__ import annotations

import numpy as np

try:  # imported by the tests (package ``reference``) or run as a script
    from .recording import check_trajectory, write_recording
except ImportError:
    from recording import check_trajectory, write_recording

try:  # imported by the tests (package ``reference``) or run as a script
    from . import record_layerwise as _problem
except ImportError:
    import record_layerwise as _problem

STEPS = _problem.STEPS
SAVED = np.r_[0:10, 19:STEPS:10]  # every step at first, then every tenth
SHAPES = _problem.SHAPES
initial_params = _problem.initial_params
gradient = _problem.gradient


def cases() -> list[dict]:
    """LaProp's defaults, then each of its options."""

    def case(schedule=None, **kw):
        kw = {**kw, "foreach": False}
        return {"framework": "pytorch", "optimizer": "laprop", "kwargs": kw, "schedule": schedule}

    # lr falls to 0 at step 150: the package then steps by its momentum m, undivided.
    to_zero = {"type": "LinearLR", "start_factor": 1.0, "end_factor": 0.0, "total_iters": 150}
    return [
        case(),
        case(lr=0.01),
        case(lr=0.02, betas=[0.8, 0.99], eps=1e-8),
        case(lr=0.01, centered=True),
        case(lr=0.01, centered=True, steps_before_using_centered=3, ams_bound=True),
        case(lr=0.01, ams_bound=True),
        case(lr=0.01, weight_decay=0.1),
        case(lr=0.01, weight_decay=1e-3, fixed_decay=True),
        # The package adds the coupled decay to the gradient after the step: no effect.
        case(lr=0.01, weight_decay=0.1, weight_decouple=False),
        case(lr=0.01, maximize=True),
        case(to_zero, lr=0.01, weight_decay=0.1),
    ]


def run_torch(case: dict, steps: int = STEPS, saved: np.ndarray = SAVED) -> dict[str, np.ndarray]:
    """Runs one case; the params after the steps ``saved``."""
    import pytorch_optimizer
    import torch

    torch.set_default_dtype(torch.float64)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in initial_params().items()}
    optimizer = pytorch_optimizer.LaProp(list(params.values()), **case["kwargs"])
    scheduler = None
    if case["schedule"]:
        spec = dict(case["schedule"])
        scheduler = getattr(torch.optim.lr_scheduler, spec.pop("type"))(optimizer, **spec)
    out = {k: [] for k in params}
    for step in range(1, steps + 1):
        grads = gradient({k: v.detach().numpy().copy() for k, v in params.items()}, step)
        for k, p in params.items():
            p.grad = torch.tensor(grads[k])
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        for k, p in params.items():
            out[k].append(p.detach().numpy().copy())
    return {k: np.stack(v)[saved[saved < steps]] for k, v in out.items()}


def package_defaults() -> dict:
    """LaProp's keyword arguments and their defaults (``params`` and ``kwargs`` left out)."""
    import inspect

    import pytorch_optimizer

    parameters = inspect.signature(pytorch_optimizer.LaProp).parameters
    return {k: p.default for k, p in parameters.items() if k not in ("params", "kwargs")}


def check(index: int, case: dict, arrays: dict[str, np.ndarray]) -> None:
    """Raises unless the case is finite, bounded and moves every leaf."""
    check_trajectory(index, case, arrays, initial_params(), len(SAVED), min_move=1e-2)


def main() -> None:
    recorded, arrays = cases(), []
    for index, case in enumerate(recorded):
        arrays.append(run_torch(case))
        check(index, case, arrays[-1])
    write_recording(
        "laprop",
        recorded,
        arrays,
        ["torch", "pytorch_optimizer"],
        steps=STEPS,
        saved=SAVED.tolist(),
        leaves={k: list(s) for k, s in SHAPES.items()},
        defaults=package_defaults(),
    )


if __name__ == "__main__":
    main()
