"""Records torch.nn.utils.clip_grad_norm_ and clip_grad_value_ before torch optimizer steps.

Run from the repository root with torch 2.13::

    .venv/bin/python tests/reference/record_clip_grad.py

Each case: the problem of ``problem.py`` (three leaves, ``problem.gradient`` at 1-based step
t), in float64, ``STEPS`` steps of ``opt.zero_grad(); <gradients>; <clip>; opt.step()`` with
a torch optimizer (``"torch_optimizer"``, ``"kwargs"``) and the clip ``"optimizer"``
(``"clip_grad_norm"`` or ``"clip_grad_value"``, ``"framework": "pytorch"``, so the contract
tests find the port recorded) with its keyword arguments ``"clip"``. Stored per case in
``data/clip_grad.npz``: every leaf after each step (``"{index}/w"``, shape ``(STEPS, 3, 4)``)
and what clip_grad_norm_ returned (``"{index}/total_norm"``, shape ``(STEPS,)``; zeros for
clip_grad_value_). ``"clips"`` counts the steps whose gradients were scaled (norm above
``max_norm``) or clamped: each case either clips at most steps or at none.

Torch is imported only inside the functions; the output is bitwise reproducible.
"""

from __future__ import annotations

import numpy as np

try:  # imported by the tests (package ``reference``) or run as a script
    from . import problem
    from .recording import check_trajectory, write_recording
except ImportError:
    import problem
    from recording import check_trajectory, write_recording

STEPS = 40


def cases() -> list[dict]:
    def case(clip, torch_optimizer, **kwargs):
        name, clip = next(iter(clip.items()))
        return {
            "framework": "pytorch",
            "optimizer": name,
            "clip": clip,
            "torch_optimizer": torch_optimizer,
            "kwargs": kwargs,
        }

    def norm(max_norm, norm_type=2.0):
        return {"clip_grad_norm": {"max_norm": max_norm, "norm_type": norm_type}}

    sgd = {"lr": 0.05, "momentum": 0.9}
    adamw = {"lr": 0.05, "weight_decay": 0.1}
    return [
        case(norm(1.0), "SGD", **sgd),
        case(norm(100.0), "SGD", **sgd),  # above every norm: the coefficient is clamped to 1
        case(norm(0.5), "AdamW", **adamw),
        case(norm(2.0, 1.0), "SGD", **sgd),
        case(norm(100.0, 1.0), "AdamW", **adamw),
        case(norm(0.5, "inf"), "SGD", **sgd),
        case(norm(100.0, "inf"), "SGD", **sgd),
        case(norm(1.0, 3.0), "AdamW", **adamw),
        case(norm(100.0, 3.0), "SGD", **sgd),
        case({"clip_grad_value": {"clip_value": 0.5}}, "SGD", **sgd),
        case({"clip_grad_value": {"clip_value": 0.2}}, "AdamW", **adamw),
    ]


def run_torch(case: dict) -> dict[str, np.ndarray]:
    import torch

    torch.set_default_dtype(torch.float64)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in problem.initial_params().items()}
    optimizer = getattr(torch.optim, case["torch_optimizer"])(
        list(params.values()), **case["kwargs"]
    )
    out = {k: [] for k in (*params, "total_norm", "clipped")}
    for t in range(1, STEPS + 1):
        optimizer.zero_grad()
        numpy_params = {k: p.detach().numpy() for k, p in params.items()}
        grads = problem.gradient(numpy_params, t)
        for k, g in grads.items():
            params[k].grad = torch.tensor(g)
        if case["optimizer"] == "clip_grad_norm":
            total = torch.nn.utils.clip_grad_norm_(params.values(), **case["clip"])
            out["total_norm"].append(float(total))
            out["clipped"].append(float(total) > case["clip"]["max_norm"])
        else:
            torch.nn.utils.clip_grad_value_(params.values(), **case["clip"])
            out["total_norm"].append(0.0)
            out["clipped"].append(
                any(np.abs(g).max() > case["clip"]["clip_value"] for g in grads.values())
            )
        optimizer.step()
        for k, p in params.items():
            out[k].append(p.detach().numpy().copy())
    return {k: np.asarray(v) for k, v in out.items()}


def main() -> None:
    recorded, arrays = cases(), []
    start = problem.initial_params()
    for index, case in enumerate(recorded):
        run = run_torch(case)
        check_trajectory(index, case, {k: run[k] for k in start}, start, STEPS, 1e-2)
        clips = int(run.pop("clipped").sum())
        if 0 < clips < STEPS // 2:  # each case should clip at most steps, or never
            raise ValueError(f"case {index} {case}: clips at {clips} of {STEPS} steps only")
        case["clips"] = clips
        arrays.append(run)
    write_recording("clip_grad", recorded, arrays, ["torch"], steps=STEPS, leaves=list(start))


if __name__ == "__main__":
    main()
