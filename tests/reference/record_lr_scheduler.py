"""Records torch.optim.lr_scheduler, the reference of ``compat.pytorch.lr_scheduler``.

Run from the repository root with torch::

    .venv/bin/python tests/reference/record_lr_scheduler.py

Every case builds one scheduler (``type`` and torch's keyword arguments ``kwargs``; children
of SequentialLR and ChainedScheduler are nested ``{"type", "kwargs"}`` dicts) on a float64
optimizer (``"optimizer"``: SGD with momentum, or Adam, built with ``"lr"``) over one scalar
parameter with a zero gradient, and runs ``STEPS`` optimizer steps, calling
``scheduler.step()`` after every ``step_every``-th (ReduceLROnPlateau: ``step(metric)``,
the metric of that step). Before each optimizer step it stores the group's ``lr`` and, for
momentum cycling, its ``momentum`` or ``betas[0]``: ``data/lr_scheduler.npz`` holds
``"{index}/lr"`` and ``"{index}/momentum"``, shape ``(STEPS,)``, and the shared
``metric`` (the metric of each step, ``metric()``). Functions (``lr_lambda``,
``scale_fn``) are named by a key of ``FUNCTIONS``, written to work on Python numbers and on
JAX arrays alike. Torch is imported only inside the functions.
"""

from __future__ import annotations

import numpy as np

try:  # imported by the tests (package ``reference``) or run as a script
    from .recording import write_arrays, write_meta
except ImportError:
    from recording import write_arrays, write_meta

STEPS = 1200

# Functions of the epoch (lambdas) or of the cycle / iteration (scale_fn).
FUNCTIONS = {
    "decay": lambda e: 0.995**e,
    "inverse": lambda e: 1 / (1 + 0.02 * e),
    "wave": lambda e: 1.0 + 0.5 * ((e % 7) / 7 - 0.5),
    "shrink": lambda e: 0.999,
    "sawtooth": lambda e: 1.0 + 0.02 * ((e % 5) - 2),
    "half_life": lambda x: 1 / (1 + 0.5 * (x - 1)),
    "slow": lambda x: 0.9995**x,
}


def metric() -> np.ndarray:
    """A loss-like metric per step: falling, with noise-like wiggles and long plateaus."""
    t = np.arange(STEPS, dtype=np.float64)
    trend = 1 / (1 + 0.004 * np.minimum(t, 300)) + 0.2 * (t > 700) * np.exp(-(t - 700) / 200)
    return trend + 0.01 * np.sin(1.7 * t) * np.cos(0.31 * t)


def _case(type_, kwargs=None, lr=0.1, optimizer="SGD", step_every=1, momentum=False):
    return {
        "type": type_,
        "kwargs": kwargs or {},
        "lr": lr,
        "optimizer": optimizer,
        "step_every": step_every,
        "momentum": momentum,
    }


def _child(type_, **kwargs):
    return {"type": type_, "kwargs": kwargs}


def cases() -> list[dict]:
    """Every scheduler with its defaults where it has them, then the options and traps."""
    c = _case
    return [
        c("LambdaLR", {"lr_lambda": "decay"}),
        c("LambdaLR", {"lr_lambda": "wave"}, lr=0.5),
        c("MultiplicativeLR", {"lr_lambda": "shrink"}),
        c("MultiplicativeLR", {"lr_lambda": "sawtooth"}, lr=1.0),
        c("StepLR", {"step_size": 30}),
        c("StepLR", {"step_size": 100, "gamma": 0.5}, step_every=3),
        c("MultiStepLR", {"milestones": [10, 300, 300, 800]}),
        c("MultiStepLR", {"milestones": [0, 500], "gamma": 0.3}),
        c("ConstantLR", {}),
        c("ConstantLR", {"factor": 0.25, "total_iters": 0}),
        c("ConstantLR", {"factor": 0.5, "total_iters": 400}),
        c("LinearLR", {}),
        c("LinearLR", {"start_factor": 0.01, "end_factor": 0.0, "total_iters": 700}),
        c("LinearLR", {"start_factor": 0.2, "end_factor": 0.9, "total_iters": 0}),
        c("ExponentialLR", {"gamma": 0.997}),
        c("ExponentialLR", {"gamma": 0.9}, step_every=7),
        c("PolynomialLR", {}),
        c("PolynomialLR", {"total_iters": 900, "power": 2.5}),
        c("PolynomialLR", {"total_iters": 0, "power": 0.5}),
        # CosineAnnealingLR past T_max: torch's recursion rises again, period 2 * T_max.
        c("CosineAnnealingLR", {"T_max": 100}),
        c("CosineAnnealingLR", {"T_max": 7, "eta_min": 0.01}),
        c("CosineAnnealingLR", {"T_max": 1000, "eta_min": 1e-4}, lr=1.0),
        c("CosineAnnealingLR", {"T_max": 1, "eta_min": 0.02}),
        c("CosineAnnealingLR", {"T_max": 50, "eta_min": 0.3}, step_every=4),
        c("CosineAnnealingWarmRestarts", {"T_0": 10}),
        c("CosineAnnealingWarmRestarts", {"T_0": 3, "T_mult": 2, "eta_min": 0.001}),
        c("CosineAnnealingWarmRestarts", {"T_0": 1, "T_mult": 3}, step_every=2),
        c("CyclicLR", {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 50}, momentum=True),
        c(
            "CyclicLR",
            {
                "base_lr": 0.001,
                "max_lr": 0.05,
                "step_size_up": 30,
                "step_size_down": 70,
                "mode": "triangular2",
            },
            momentum=True,
        ),
        c(
            "CyclicLR",
            {
                "base_lr": 0.01,
                "max_lr": 0.2,
                "step_size_up": 40,
                "mode": "exp_range",
                "gamma": 0.998,
                "base_momentum": 0.7,
                "max_momentum": 0.95,
            },
            optimizer="Adam",
            momentum=True,
        ),
        c(
            "CyclicLR",
            {
                "base_lr": 0.01,
                "max_lr": 0.1,
                "step_size_up": 25,
                "step_size_down": 15,
                "scale_fn": "half_life",
                "scale_mode": "cycle",
            },
            momentum=True,
        ),
        c(
            "CyclicLR",
            {
                "base_lr": 0.02,
                "max_lr": 0.1,
                "step_size_up": 33,
                "scale_fn": "slow",
                "scale_mode": "iterations",
                "cycle_momentum": False,
            },
        ),
        c("CyclicLR", {"base_lr": 0.01, "max_lr": 0.1}, momentum=True),
        c("OneCycleLR", {"max_lr": 0.1, "total_steps": STEPS}, momentum=True),
        c(
            "OneCycleLR",
            {
                "max_lr": 0.3,
                "total_steps": STEPS,
                "anneal_strategy": "linear",
                "pct_start": 0.25,
                "div_factor": 10.0,
                "final_div_factor": 100.0,
            },
            optimizer="Adam",
            momentum=True,
        ),
        c(
            "OneCycleLR",
            {
                "max_lr": 0.2,
                "epochs": 12,
                "steps_per_epoch": 100,
                "three_phase": True,
                "base_momentum": 0.8,
                "max_momentum": 0.9,
            },
            momentum=True,
        ),
        c(
            "OneCycleLR",
            {
                "max_lr": 0.1,
                "total_steps": STEPS,
                "three_phase": True,
                "pct_start": 0.4,
                "anneal_strategy": "linear",
                "cycle_momentum": False,
            },
        ),
        c(
            "OneCycleLR",
            {"max_lr": 1.0, "total_steps": 1300, "pct_start": 0.123},
            optimizer="Adam",
            momentum=True,
        ),
        c(
            "SequentialLR",
            {
                "schedulers": [
                    _child("LinearLR", start_factor=0.1, total_iters=50),
                    _child("CosineAnnealingLR", T_max=300, eta_min=0.001),
                ],
                "milestones": [50],
            },
        ),
        c(
            "SequentialLR",
            {
                "schedulers": [
                    _child("ConstantLR", factor=0.5, total_iters=20),
                    _child("ExponentialLR", gamma=0.995),
                    _child("StepLR", step_size=50, gamma=0.5),
                ],
                "milestones": [100, 600],
            },
        ),
        c(
            "ChainedScheduler",
            {
                "schedulers": [
                    _child("ConstantLR", factor=0.5, total_iters=30),
                    _child("ExponentialLR", gamma=0.998),
                ]
            },
        ),
        c(
            "ChainedScheduler",
            {
                "schedulers": [
                    _child("LinearLR", start_factor=0.1, total_iters=40),
                    _child("CosineAnnealingLR", T_max=150, eta_min=0.01),
                    _child("MultiStepLR", milestones=[200, 900], gamma=0.5),
                ]
            },
        ),
        c(
            "ChainedScheduler",
            {
                "schedulers": [
                    _child("LambdaLR", lr_lambda="inverse"),
                    _child("StepLR", step_size=100, gamma=0.5),
                ]
            },
        ),
        c("ReduceLROnPlateau", {}),
        c("ReduceLROnPlateau", {"patience": 3, "factor": 0.5, "cooldown": 5}),
        c("ReduceLROnPlateau", {"mode": "max", "patience": 2, "threshold": 0.01}),
        c(
            "ReduceLROnPlateau",
            {"threshold_mode": "abs", "threshold": 1e-3, "patience": 4, "min_lr": 0.02},
        ),
        c(
            "ReduceLROnPlateau",
            {
                "mode": "max",
                "threshold_mode": "abs",
                "threshold": 0.0,
                "patience": 0,
                "factor": 0.9,
                "eps": 1e-3,
            },
        ),
        c("ReduceLROnPlateau", {"patience": 1, "cooldown": 2, "factor": 0.7}, step_every=10),
    ]


def _torch_kwargs(kwargs: dict) -> dict:
    return {k: FUNCTIONS[v] if k in ("lr_lambda", "scale_fn") else v for k, v in kwargs.items()}


def run_torch(case: dict, steps: int = STEPS) -> dict[str, np.ndarray]:
    """Runs one case; the lr (and the cycled momentum) before each optimizer step."""
    import torch

    torch.set_default_dtype(torch.float64)
    p = torch.zeros((), requires_grad=True)
    if case["optimizer"] == "Adam":
        optimizer = torch.optim.Adam([p], lr=case["lr"])
    else:
        optimizer = torch.optim.SGD([p], lr=case["lr"], momentum=0.9)
    schedulers = torch.optim.lr_scheduler

    def build(spec):
        kwargs = _torch_kwargs(spec["kwargs"])
        if "schedulers" in kwargs:
            kwargs["schedulers"] = [build(child) for child in kwargs["schedulers"]]
        scheduler_class = getattr(schedulers, spec["type"])
        if spec["type"] == "ChainedScheduler":
            return scheduler_class(kwargs["schedulers"])
        return scheduler_class(optimizer, **kwargs)

    scheduler = build(case)
    values = metric()
    lr, momentum = [], []
    for t in range(steps):
        group = optimizer.param_groups[0]
        lr.append(float(group["lr"]))
        momentum.append(float(group["betas"][0] if "betas" in group else group["momentum"]))
        p.grad = torch.zeros(())
        optimizer.step()
        if (t + 1) % case["step_every"] == 0:
            if case["type"] == "ReduceLROnPlateau":
                scheduler.step(values[t])
            else:
                scheduler.step()
    out = {"lr": np.asarray(lr)}
    if case["momentum"]:
        out["momentum"] = np.asarray(momentum)
    return out


def check(index: int, case: dict, arrays: dict[str, np.ndarray]) -> None:
    """Raises unless the rates are finite, >= 0 and differ from the optimizer's."""
    lr = arrays["lr"]
    if lr.shape != (STEPS,) or not np.all(np.isfinite(lr)) or np.any(lr < -1e-15):
        raise ValueError(f"case {index} {case}: lr is not finite and >= 0 (up to rounding)")
    # PolynomialLR with total_iters=0 is the one case recorded for having no effect.
    no_effect = case["type"] == "PolynomialLR" and case["kwargs"].get("total_iters") == 0
    if np.ptp(lr) == 0 and lr[0] == case["lr"] and not no_effect:
        raise ValueError(f"case {index} {case}: the scheduler has no effect")
    if case["momentum"] and np.ptp(arrays["momentum"]) == 0:
        raise ValueError(f"case {index} {case}: momentum is not cycled")


def main() -> None:
    import torch

    recorded = cases()
    runs = []
    for index, case in enumerate(recorded):
        runs.append(run_torch(case))
        check(index, case, runs[-1])
    write_arrays("lr_scheduler", enumerate(runs), metric=metric())
    write_meta(
        "lr_scheduler",
        recorded,
        ["torch"],
        steps=STEPS,
        functions=sorted(FUNCTIONS),
        torch=torch.__version__,
    )


if __name__ == "__main__":
    main()
