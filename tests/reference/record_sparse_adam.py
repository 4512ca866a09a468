"""Records torch.optim.SparseAdam, the reference of ``compat.pytorch.sparse_adam``.

Run from the repository root with torch 2.13::

    .venv/bin/python tests/reference/record_sparse_adam.py

The leaves are an embedding table ``table`` (6, 3) and a vector ``vec`` (5,). At each step
1..``STEPS`` a few lookups (:func:`stream`, from ``default_rng(SEED)``: ``ROWS`` row ids of
``table`` and ``ENTRIES`` ids of ``vec``, repeats allowed) each contribute the gradient of
``a p**2 + 0.5 sin 3p + c p`` at the looked-up row, with ``c`` a fresh normal draw per
lookup (:func:`lookup_gradients`, for NumPy and ``jax.numpy`` alike). torch gets them as an
uncoalesced sparse COO gradient, ``sparse_dim=1`` as ``nn.Embedding(sparse=True)`` gives
(SparseAdam coalesces it, summing repeats); every ``EMPTY``-th step ``vec`` gets an empty
one (its ``state["step"]`` still counts). Case ``"elements"`` makes ``table``'s gradient
sparse in both dimensions (``ROWS`` (row, column) lookups, scalar values). ``sign`` -1 (the
``maximize`` case) negates every gradient, so that the ascent stays bounded.

Every case runs in float64 (torch's default dtype float64, a scheduler stepped after each
step) and stores the params after each step (``"{index}/{leaf}"``, shape ``(STEPS,
*leaf_shape)``) in ``data/sparse_adam.npz``, with the lookups (``"stream/{key}"``); the
cases (``{"index", "framework", "optimizer", "kwargs", "schedule", "sign", "elements"}``)
and the versions in ``data/sparse_adam.json``. Torch is imported only inside the
functions; the output is bitwise reproducible.
"""

from __future__ import annotations

import numpy as np

try:  # imported by the tests (package ``reference``) or run as a script
    from .recording import write_arrays, write_meta
except ImportError:
    from recording import write_arrays, write_meta

STEPS = 100
SEED = 16
ROWS = 4
ENTRIES = 3
EMPTY = 7
SHAPES = {"table": (6, 3), "vec": (5,)}
A = 0.6


def initial_params() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED + 1)
    return {k: rng.uniform(-1.5, 1.5, shape) for k, shape in SHAPES.items()}


def stream() -> dict[str, np.ndarray]:
    """The lookups of steps 1..STEPS: ids, per-lookup noise, and ``vec``'s validity."""
    rng = np.random.default_rng(SEED)
    return {
        "table_ids": rng.integers(0, SHAPES["table"][0], (STEPS, ROWS)),
        "table_cols": rng.integers(0, SHAPES["table"][1], (STEPS, ROWS)),
        "table_noise": rng.standard_normal((STEPS, ROWS, SHAPES["table"][1])),
        "vec_ids": rng.integers(0, SHAPES["vec"][0], (STEPS, ENTRIES)),
        "vec_noise": rng.standard_normal((STEPS, ENTRIES)),
        "vec_valid": np.arange(1, STEPS + 1) % EMPTY != 0,
    }


def lookup_gradients(rows, noise, xp=np):
    """Each looked-up row's gradient of ``A p**2 + 0.5 sin 3p + noise p``."""
    return 2 * A * rows + 1.5 * xp.cos(3.0 * rows) + noise


def cases() -> list[dict]:
    def case(schedule=None, sign=1.0, elements=False, **kw):
        return {
            "framework": "pytorch",
            "optimizer": "sparse_adam",
            "kwargs": kw,
            "schedule": schedule,
            "sign": sign,
            "elements": elements,
        }

    return [
        case(),
        case(lr=0.05),
        case(lr=0.05, betas=[0.8, 0.99], eps=1e-6),
        case(lr=0.05, maximize=True, sign=-1.0),
        case({"type": "StepLR", "step_size": 30, "gamma": 0.5}, lr=0.05),
        case(lr=0.05, elements=True),
    ]


def run_torch(case: dict, steps: int = STEPS) -> dict[str, np.ndarray]:
    """The params after each of the first ``steps`` steps of one case."""
    import torch

    torch.set_default_dtype(torch.float64)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in initial_params().items()}
    optimizer = torch.optim.SparseAdam(list(params.values()), **case["kwargs"])
    scheduler = None
    if case["schedule"]:
        spec = dict(case["schedule"])
        scheduler = getattr(torch.optim.lr_scheduler, spec.pop("type"))(optimizer, **spec)
    lookups, sign = stream(), case["sign"]
    out = {k: [] for k in params}
    for t in range(steps):
        table, vec = (params[k].detach().numpy() for k in SHAPES)
        ids, cols = lookups["table_ids"][t], lookups["table_cols"][t]
        if case["elements"]:
            noise = lookups["table_noise"][t, :, 0]
            values = sign * lookup_gradients(table[ids, cols], noise)
            indices = np.stack([ids, cols])
        else:
            values = sign * lookup_gradients(table[ids], lookups["table_noise"][t])
            indices = ids[None]
        grads = {"table": (indices, values)}
        valid = lookups["vec_ids"][t] if lookups["vec_valid"][t] else np.zeros(0, int)
        noise = lookups["vec_noise"][t][: len(valid)]
        grads["vec"] = (valid[None], sign * lookup_gradients(vec[valid], noise))
        for k, (indices, values) in grads.items():
            size = SHAPES[k]
            params[k].grad = torch.sparse_coo_tensor(
                torch.tensor(indices), torch.tensor(values), size, check_invariants=True
            )
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        for k, p in params.items():
            out[k].append(p.detach().numpy().copy())
    return {k: np.stack(v) for k, v in out.items()}


def check(index: int, case: dict, arrays: dict[str, np.ndarray]) -> None:
    """Raises unless the case is finite, bounded and moves every leaf."""
    p0 = initial_params()
    for k, traj in arrays.items():
        if not np.all(np.isfinite(traj)) or np.max(np.abs(traj)) > 20:
            raise ValueError(f"case {index} {case}: {k} is not finite or unbounded")
        if np.max(np.abs(traj - p0[k])) < 1e-2:
            raise ValueError(f"case {index} {case}: {k} does not move")


def main() -> None:
    recorded = cases()
    runs = []
    for index, case in enumerate(recorded):
        runs.append((index, run_torch(case)))
        check(index, case, runs[-1][1])
    shared = {f"stream/{k}": v for k, v in stream().items()}
    write_arrays("sparse_adam", runs, **shared)
    write_meta(
        "sparse_adam",
        recorded,
        ["torch"],
        steps=STEPS,
        seed=SEED,
        leaves={k: list(s) for k, s in SHAPES.items()},
    )


if __name__ == "__main__":
    main()
