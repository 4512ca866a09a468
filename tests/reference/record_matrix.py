"""Records torch.optim.Muon's trajectories, for gradtx.compat.pytorch.muon's tests.

Run from the repository root, with torch 2.13 installed::

    .venv/bin/python tests/reference/record_matrix.py

The problem is :mod:`problem`'s (a separable, nonconvex loss with a drifting linear term;
zero gradients at steps ``t % 17 == 0``, sign-flipped at ``t % 11 == 0``) on three matrices,
since torch's Muon takes 2-D parameters only: ``"w"`` (3, 5) wide, ``"v"`` (5, 2) tall and
``"q"`` (3, 3) square. Each case runs ``STEPS`` steps in float64 and stores the params after
every step in ``data/matrix.npz`` (``"{index}/{leaf}"``, shape ``(STEPS, *leaf_shape)``);
``data/matrix.json`` lists the cases in ``cases.json``'s form, plus ``"ns_float64"``.

torch runs Newton-Schulz in bfloat16 whatever the params' dtype. Cases with
``"ns_float64": true`` are recorded with ``Tensor.bfloat16`` made a copy for the duration
of ``optimizer.step()``, which is torch's own algorithm in float64: the rest of the step
(momentum, Nesterov, eps clamp, transposes, weight decay, lr adjustment) is then checked
at float64 precision, independently of how torch's CPU kernels round bfloat16 products.

Torch is imported inside the functions, so that pytest can import this module without it.
"""

from __future__ import annotations

import contextlib
import platform

import numpy as np

try:  # imported by the tests (package ``reference``) or run as a script
    from .recording import write_recording
except ImportError:
    from recording import write_recording

STEPS = 200
SHAPES: dict[str, tuple[int, ...]] = {"w": (3, 5), "v": (5, 2), "q": (3, 3)}


def _per_leaf(values: np.ndarray) -> dict[str, np.ndarray]:
    out, start = {}, 0
    for name, shape in SHAPES.items():
        size = int(np.prod(shape))
        out[name] = values[start : start + size].reshape(shape)
        start += size
    return out


_K = np.arange(sum(int(np.prod(s)) for s in SHAPES.values()), dtype=np.float64)
A = _per_leaf(1.0 + 0.5 * np.sin(1.3 * _K + 0.5))
C = _per_leaf(0.8 * np.cos(0.7 * _K + 0.2))
PHASE = _per_leaf(0.9 * _K)


def initial_params() -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in _per_leaf(1.5 * np.sin(2.1 * _K + 1.0) + 0.2).items()}


def gradient(params: dict, step, xp=np) -> dict:
    """``factor(step) * dL_step/dp`` as in :func:`problem.gradient`, for these leaves."""
    factor = xp.where(step % 17 == 0, 0.0, xp.where(step % 11 == 0, -1.0, 1.0))
    return {
        k: xp.asarray(factor, p.dtype)
        * (
            xp.asarray(2.0 * A[k], p.dtype) * p
            + 1.5 * xp.cos(3.0 * p)
            + xp.asarray(C[k] + 0.4 * xp.sin(0.06 * step + PHASE[k]), p.dtype)
        )
        for k, p in params.items()
    }


def cases() -> list[dict]:
    """torch.optim.Muon: defaults, then every option, some also with a float64 iteration."""

    def t(ns_float64=False, schedule=None, **kwargs):
        return {
            "framework": "pytorch",
            "optimizer": "muon",
            "kwargs": kwargs,
            "schedule": schedule,
            "ns_float64": ns_float64,
        }

    def options(ns_float64):
        # At lr 0.02 the float64 iteration turns chaotic after step 90 (a rounding difference
        # grows tenfold every ten steps): its plain-rate case steps at 0.005.
        return [
            {},
            {"lr": 0.005 if ns_float64 else 0.02},
            {
                "lr": 0.02,
                "weight_decay": 0.05,
                "nesterov": False,
                "adjust_lr_fn": "match_rms_adamw",
            },
            {"lr": 0.01, "momentum": 0.9, "adjust_lr_fn": "original", "weight_decay": 0.0},
            {"lr": 0.01, "ns_coefficients": [3.0, -3.2, 1.2], "ns_steps": 3, "eps": 1e-3},
        ]

    schedule = {"type": "ExponentialLR", "gamma": 0.99}
    return [
        t(ns_float64, schedule=s, **kwargs)
        for ns_float64 in (False, True)
        for kwargs, s in [(o, None) for o in options(ns_float64)] + [({"lr": 0.03}, schedule)]
    ]


@contextlib.contextmanager
def _float64_iteration(torch):
    """torch's Newton-Schulz without its cast to bfloat16."""
    cast = torch.Tensor.bfloat16
    torch.Tensor.bfloat16 = lambda self: self.clone()
    try:
        yield
    finally:
        torch.Tensor.bfloat16 = cast


def run_torch(case: dict) -> dict[str, np.ndarray]:
    import torch

    torch.set_default_dtype(torch.float64)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in initial_params().items()}
    kwargs = dict(case["kwargs"])
    if "ns_coefficients" in kwargs:
        kwargs["ns_coefficients"] = tuple(kwargs["ns_coefficients"])
    optimizer = torch.optim.Muon(list(params.values()), **kwargs)
    scheduler = None
    if case["schedule"]:
        spec = dict(case["schedule"])
        scheduler = getattr(torch.optim.lr_scheduler, spec.pop("type"))(optimizer, **spec)
    history = {k: [] for k in params}
    for step in range(1, STEPS + 1):
        grads = gradient({k: p.detach().numpy() for k, p in params.items()}, step)
        for k, p in params.items():
            p.grad = torch.tensor(grads[k])
        with _float64_iteration(torch) if case["ns_float64"] else contextlib.nullcontext():
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        for k, p in params.items():
            history[k].append(p.detach().numpy().copy())
    return {k: np.stack(v) for k, v in history.items()}


def main() -> None:
    recorded, arrays = cases(), []
    for index, case in enumerate(recorded):
        out = run_torch(case)
        for leaf, values in out.items():
            if not np.all(np.isfinite(values)) or np.ptp(values) == 0:
                raise RuntimeError(f"case {index}: {leaf} is not finite or does not move")
        arrays.append(out)
    write_recording(
        "matrix",
        recorded,
        arrays,
        ["torch"],
        steps=STEPS,
        shapes=SHAPES,
        machine=platform.machine(),
    )


if __name__ == "__main__":
    main()
