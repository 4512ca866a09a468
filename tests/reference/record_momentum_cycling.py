"""Records torch's momentum and beta1 cycling, the reference of schedules as momentum and b1.

Run from the repository root with torch 2.13::

    .venv/bin/python tests/reference/record_momentum_cycling.py

Torch cases: a torch optimizer (``"optimizer"``, ``"kwargs"``) on the problem of
``problem.py`` restricted to its leaf ``"w"`` (:func:`initial_params`; ``problem.gradient``
at 1-based step t: one leaf keeps the tests' compilation small), with a ``OneCycleLR`` or
``CyclicLR`` (``"scheduler"``: its class and keyword arguments, ``cycle_momentum=True``)
stepped after each of ``STEPS`` optimizer steps, in float64 (torch's default dtype). The
scheduler writes its momentum into ``momentum`` or ``betas[0]``, as torch chooses by the
optimizer's defaults; ``"cycles"`` names which (checked against torch). Stored per case in
``data/momentum_cycling.npz``: ``w`` after each step (``"{index}/w"``, shape ``(STEPS, 3,
4)``) and the ``lr`` and ``momentum`` (or beta1) each step ran with
(``"{index}/lr"``, ``"{index}/momentum"``).

Constant bits (``"constant/..."``): gradtx's own float32 trajectories of the ports and
optimizers of :func:`constant_specs` with *constant* momentum and b1, on a fixed gradient
stream, with jax's default float32 (``jax_enable_x64`` off: there a number and an array
differ in how ``1 - b1`` rounds). The recording in the repository was made with gradtx at
commit 65567bb, before momentum and b1 accepted schedules, so the tests check that accepting
them changed no bit of a constant-hyperparameter result. Record them again only on purpose.

Torch is imported only inside the functions; the torch output is bitwise reproducible.
"""

from __future__ import annotations

import numpy as np

try:  # imported by the tests (package ``reference``) or run as a script
    from . import problem
    from .recording import check_trajectory, write_arrays, write_meta
except ImportError:
    import problem
    from recording import check_trajectory, write_arrays, write_meta

STEPS = 80
CONSTANT_STEPS = 30
CONSTANT_SEED = 16
CONSTANT_SHAPES = {"w": (3, 4)}


def initial_params() -> dict[str, np.ndarray]:
    """The starting point: ``problem.py``'s leaf ``"w"``."""
    return {"w": problem.initial_params()["w"]}


def cases() -> list[dict]:
    def case(optimizer, cycles, scheduler, **kwargs):
        return {"optimizer": optimizer, "kwargs": kwargs, "scheduler": scheduler, "cycles": cycles}

    def one_cycle(max_lr, **kw):
        return {"type": "OneCycleLR", "max_lr": max_lr, "total_steps": STEPS, **kw}

    def cyclic(base_lr, max_lr, step_size_up, **kw):
        return {
            "type": "CyclicLR",
            "base_lr": base_lr,
            "max_lr": max_lr,
            "step_size_up": step_size_up,
            **kw,
        }

    m, b = "momentum", "betas"
    return [
        case(
            "SGD",
            m,
            one_cycle(0.05, pct_start=0.4, base_momentum=0.8, max_momentum=0.9),
            lr=0.1,
            momentum=0.9,
        ),
        case(
            "SGD",
            m,
            one_cycle(
                0.05,
                pct_start=0.25,
                three_phase=True,
                base_momentum=0.7,
                max_momentum=0.95,
            ),
            lr=0.1,
            momentum=0.9,
            nesterov=True,
        ),
        # torch's SGD built with momentum 0 still gets the cycled momentum.
        case("SGD", m, one_cycle(0.05), lr=0.1),
        case(
            "SGD",
            m,
            cyclic(
                0.005,
                0.05,
                12,
                step_size_down=8,
                mode="triangular2",
                base_momentum=0.8,
                max_momentum=0.95,
            ),
            lr=0.1,
            momentum=0.9,
            dampening=0.2,
            weight_decay=1e-3,
        ),
        case(
            "SGD",
            m,
            cyclic(0.005, 0.05, 10, mode="exp_range", gamma=0.98),
            lr=0.1,
            momentum=0.9,
            nesterov=True,
        ),
        case("RMSprop", m, one_cycle(0.01), lr=0.01, momentum=0.9),
        case("Adam", b, one_cycle(0.05, base_momentum=0.5, max_momentum=0.95), lr=0.05),
        case(
            "Adam",
            b,
            cyclic(0.005, 0.05, 10, base_momentum=0.6, max_momentum=0.9),
            lr=0.05,
            amsgrad=True,
        ),
        case("AdamW", b, one_cycle(0.05, three_phase=True), lr=0.05, weight_decay=0.05),
        case("Adamax", b, one_cycle(0.05), lr=0.05),
        case("NAdam", b, one_cycle(0.05, base_momentum=0.6), lr=0.05),
        case("RAdam", b, one_cycle(0.05, base_momentum=0.6), lr=0.05),
    ]


def run_torch(case: dict) -> dict[str, np.ndarray]:
    import torch

    torch.set_default_dtype(torch.float64)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in initial_params().items()}
    optimizer = getattr(torch.optim, case["optimizer"])(list(params.values()), **case["kwargs"])
    spec = dict(case["scheduler"])
    scheduler = getattr(torch.optim.lr_scheduler, spec.pop("type"))(optimizer, **spec)
    cycles = "betas" if "betas" in optimizer.defaults else "momentum"
    if cycles != case["cycles"]:
        raise ValueError(f"{case}: torch cycles {cycles}")
    group = optimizer.param_groups[0]
    out = {k: [] for k in (*params, "lr", "momentum")}
    for t in range(1, STEPS + 1):
        out["lr"].append(group["lr"])
        out["momentum"].append(group["betas"][0] if cycles == "betas" else group["momentum"])
        numpy_params = {k: p.detach().numpy() for k, p in params.items()}
        for k, g in problem.gradient(numpy_params, t).items():
            params[k].grad = torch.tensor(g)
        optimizer.step()
        if t < STEPS:  # OneCycleLR refuses to step past total_steps
            scheduler.step()
        for k, p in params.items():
            out[k].append(p.detach().numpy().copy())
    return {k: np.stack(v) for k, v in out.items()}


def constant_specs() -> list[dict]:
    """Ports and optimizers with constant momentum or b1: ``{"name", "kwargs"}``, ``name``
    relative to ``gradtx`` (``"compat.pytorch.adam"``)."""

    def spec(name, **kwargs):
        return {"name": name, "kwargs": kwargs}

    return [
        spec("compat.pytorch.sgd", lr=0.05, momentum=0.9, nesterov=True),
        spec("compat.pytorch.adam", lr=0.01, betas=(0.85, 0.99)),
        spec("compat.pytorch.adam", lr=0.01, amsgrad=True),
        spec("compat.pytorch.adamax", lr=0.01),
        spec("compat.pytorch.nadam", lr=0.01),
        spec("adam", learning_rate=0.01, b1=0.8, nesterov=True),
        spec("radam", learning_rate=0.01, b1=0.8, nesterov=True),
    ]


def constant_stream() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """float32 starting params and gradients of steps 1..CONSTANT_STEPS (a leading axis)."""
    rng = np.random.default_rng(CONSTANT_SEED)
    start = {k: rng.uniform(-1, 1, s).astype(np.float32) for k, s in CONSTANT_SHAPES.items()}
    grads = {
        k: rng.standard_normal((CONSTANT_STEPS, *s)).astype(np.float32)
        for k, s in CONSTANT_SHAPES.items()
    }
    return start, grads


def build(spec: dict):
    """The gradtx transform of a constant spec."""
    import gradtx

    fn = gradtx
    for part in spec["name"].split("."):
        fn = getattr(fn, part)
    return fn(**spec["kwargs"])


def constant_trajectories() -> list[dict[str, np.ndarray]]:
    """Each constant spec's float32 params after each step, from one jitted function."""
    import jax

    import gradtx

    if jax.config.jax_enable_x64:
        raise RuntimeError("the constant bits are float32: run with jax_enable_x64 off")
    start, grads = constant_stream()

    # The transforms are built inside, so that their numbers stay Python numbers (as in a
    # closure or a static field); passed as arguments they would be traced float32 leaves.
    @jax.jit
    def run(start, grads):
        def one(tx):
            def body(carry, g):
                params, state = carry
                updates, state = tx.update(g, state, params)
                params = gradtx.apply_updates(params, updates)
                return (params, state), params

            return jax.lax.scan(body, (start, tx.init(start)), grads)[1]

        return [one(build(s)) for s in constant_specs()]

    return [{k: np.asarray(v) for k, v in traj.items()} for traj in run(start, grads)]


def check(index: int, case: dict, arrays: dict[str, np.ndarray]) -> None:
    """Raises unless the case is sound and its momentum (or beta1) really cycles."""
    start = initial_params()
    check_trajectory(index, case, {k: arrays[k] for k in start}, start, STEPS, 1e-2)
    if np.ptp(arrays["momentum"]) < 0.05:
        raise ValueError(f"case {index} {case}: the momentum does not cycle")


def main() -> None:
    recorded = cases()
    runs = []
    for index, case in enumerate(recorded):
        runs.append((index, run_torch(case)))
        check(index, case, runs[-1][1])
    start, grads = constant_stream()
    shared = {f"constant/start/{k}": v for k, v in start.items()}
    shared |= {f"constant/grads/{k}": v for k, v in grads.items()}
    for i, traj in enumerate(constant_trajectories()):
        shared |= {f"constant/{i}/{k}": v for k, v in traj.items()}
    write_arrays("momentum_cycling", runs, **shared)
    write_meta(
        "momentum_cycling",
        recorded,
        ["torch", "jax"],
        steps=STEPS,
        leaves=list(initial_params()),
        constant_steps=CONSTANT_STEPS,
        constant_seed=CONSTANT_SEED,
        constant_gradtx="65567bb",
        constant_specs=constant_specs(),
    )


if __name__ == "__main__":
    main()
