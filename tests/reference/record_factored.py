"""Records reference trajectories of torch.optim.Adafactor (the factored-statistics family).

Run from the repository root, in an environment with torch 2.13::

    .venv/bin/python tests/reference/record_factored.py

The loss is :mod:`problem`'s family (a separable, nonconvex loss with a drifting linear term;
gradients zeroed when ``t % 17 == 0`` and negated when ``t % 11 == 0``) on leaves that
Adafactor treats differently: a matrix ``w`` (3, 4) and a rank-3 ``t`` (2, 3, 4), both
factored over their last two axes, a vector ``b`` (4,) and a scalar ``s`` ().

Every case runs ``STEPS`` steps in float64 (torch's default dtype float64, the for-loop
implementation unless the case sets ``foreach``), and stores the params after every step
in ``data/factored.npz`` (keys ``"{index}/{leaf}"``, shape ``(STEPS, *leaf_shape)``; and
``"{index}/lr"``, the group lr before each step, for cases with a scheduler) and the cases
in ``data/factored.json`` (``{"index", "framework", "optimizer", "kwargs", "schedule"}``,
as ``data/cases.json``). torch is imported only inside :func:`run_torch`.
"""

from __future__ import annotations

import numpy as np

try:  # imported by the tests (package ``reference``) or run as a script
    from .recording import write_recording
except ImportError:
    from recording import write_recording

STEPS = 200
SHAPES: dict[str, tuple[int, ...]] = {"w": (3, 4), "t": (2, 3, 4), "b": (4,), "s": ()}


def _per_leaf(values: np.ndarray) -> dict[str, np.ndarray]:
    out, start = {}, 0
    for name, shape in SHAPES.items():
        size = int(np.prod(shape, dtype=int))
        out[name] = values[start : start + size].reshape(shape)
        start += size
    return out


_K = np.arange(sum(int(np.prod(s, dtype=int)) for s in SHAPES.values()), dtype=np.float64)
A = _per_leaf(1.0 + 0.5 * np.sin(1.3 * _K + 0.5))
C = _per_leaf(0.8 * np.cos(0.7 * _K + 0.2))
PHASE = _per_leaf(0.9 * _K)


def initial_params() -> dict[str, np.ndarray]:
    """Fresh float64 copies of ``p0_k = 1.5 sin(2.1 k + 1) + 0.2``."""
    return {k: v.copy() for k, v in _per_leaf(1.5 * np.sin(2.1 * _K + 1.0) + 0.2).items()}


def gradient(params: dict, step, xp=np) -> dict:
    """``factor(t) * d/dp [a p**2 + 0.5 sin 3p + c(t) p]`` at 1-based ``step``.

    ``c(t) = C + 0.4 sin(0.06 t + phase)``; ``factor(t)`` is 0 when ``t % 17 == 0``, else -1
    when ``t % 11 == 0``, else 1. Works with ``xp=jax.numpy`` and a traced ``step``.
    """
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
    """torch.optim.Adafactor's defaults, then each option.

    rho_t = min(lr, 1/sqrt(t)) is lr until t = 1/lr**2: lr=0.1 crosses over at step 100.
    """
    t = lambda schedule=None, **kw: {  # noqa: E731
        "framework": "pytorch",
        "optimizer": "adafactor",
        "kwargs": kw,
        "schedule": schedule,
    }
    return [
        t(),
        t(lr=0.1),
        t(lr=0.02, beta2_decay=-0.5),
        t(lr=0.05, eps=[0.3, 0.05]),
        t(lr=0.05, eps=[1e-3, 1e-3], d=1.3),
        t(lr=0.05, weight_decay=0.5),
        t(lr=2e-3, maximize=True),
        t(weight_decay=0.2, foreach=True),
        t({"type": "ExponentialLR", "gamma": 0.98}, lr=0.05, weight_decay=0.1),
    ]


def torch_kwargs(case: dict) -> dict:
    """The case's keyword arguments as torch takes them (``eps`` a tuple)."""
    kwargs = dict(case["kwargs"])
    if "eps" in kwargs:
        kwargs["eps"] = tuple(kwargs["eps"])
    return kwargs


def run_torch(case: dict) -> dict[str, np.ndarray]:
    """Runs one case; returns the params after every step keyed by leaf (and ``lr``)."""
    import torch

    torch.set_default_dtype(torch.float64)
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in initial_params().items()}
    opt = torch.optim.Adafactor(list(tensors.values()), **torch_kwargs(case))
    scheduler = None
    if case["schedule"] is not None:
        kwargs = {k: v for k, v in case["schedule"].items() if k != "type"}
        scheduler = getattr(torch.optim.lr_scheduler, case["schedule"]["type"])(opt, **kwargs)
    out = {k: [] for k in SHAPES} | ({"lr": []} if scheduler else {})
    for step in range(1, STEPS + 1):
        params = {k: v.detach().numpy().copy() for k, v in tensors.items()}
        for k, g in gradient(params, step).items():
            tensors[k].grad = torch.tensor(g)
        if scheduler is not None:
            out["lr"].append(float(opt.param_groups[0]["lr"]))
        opt.step()
        if scheduler is not None:
            scheduler.step()
        for k in SHAPES:
            out[k].append(tensors[k].detach().numpy().copy())
    return {k: np.stack(v).astype(np.float64) for k, v in out.items()}


def _check(index: int, case: dict, arrays: dict[str, np.ndarray]) -> str:
    """Raises unless the trajectory is finite, bounded and moves every leaf."""
    p0 = initial_params()
    for key, value in arrays.items():
        if not np.all(np.isfinite(value)):
            raise FloatingPointError(f"case {index} {case}: {key} is not finite")
    moved = []
    for k in SHAPES:
        if np.max(np.abs(arrays[k])) > 20:
            raise ValueError(f"case {index} {case}: {k} grows to {np.max(np.abs(arrays[k]))}")
        moved.append(np.max(np.abs(arrays[k] - p0[k])))
    if min(moved) < 1e-2:
        raise ValueError(f"case {index} {case}: a leaf moves by only {min(moved):.2g}")
    return f"min move {min(moved):.3f}"


def main() -> None:
    recorded, arrays = cases(), []
    for index, case in enumerate(recorded):
        result = run_torch(case)
        print(f"{index:2d} {_check(index, case, result)}  {case['kwargs']} {case['schedule']}")
        arrays.append(result)
    leaves = {k: list(s) for k, s in SHAPES.items()}
    write_recording("factored", recorded, arrays, ["torch"], steps=STEPS, leaves=leaves)


if __name__ == "__main__":
    main()
