"""Records pytorch-optimizer's Shampoo, ScalableShampoo and SOAP for gradtx's Kronecker tests.

Run from the repository root with torch 2.13 and pytorch-optimizer 4.1.0 installed::

    .venv/bin/python tests/reference/record_kronecker.py

Four leaves, ``w`` (6, 5), ``v`` (2,), ``s`` () and ``t`` (2, 3, 5), start at seeded normal
values. The gradients are open loop: a seeded normal sequence (stored, so that no NumPy
stream change alters them), multiplied by 0 at 0-based steps ``t % 17 == 16`` and by -1 at
``t % 11 == 10``. Every unfolding of the first gradient has at most a one-dimensional null
space, so SOAP's first eigenbasis is unique up to signs, which SOAP does not depend on.

Writes ``data/kronecker.npz`` (``"p0/{leaf}"``, ``"grads/{leaf}"`` of shape
``(STEPS, *shape)``, ``"{index}/{leaf}"`` the params after steps 1..STEPS) and
``data/kronecker.json`` (the cases, with the package's own keyword names, and versions).
Torch is imported only inside the functions that run it.
"""

from __future__ import annotations

import numpy as np

try:  # imported by the tests (package ``reference``) or run as a script
    from .recording import write_arrays, write_meta
except ImportError:
    from recording import write_arrays, write_meta

SHAPES = {"w": (6, 5), "v": (2,), "s": (), "t": (2, 3, 5)}
STEPS = 60


def problem() -> tuple[dict, dict]:
    """Initial params and the (STEPS, *shape) gradient sequence of every leaf."""
    rng = np.random.default_rng(20240917)
    p0 = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    factor = np.ones(STEPS)
    factor[np.arange(STEPS) % 11 == 10] = -1.0
    factor[np.arange(STEPS) % 17 == 16] = 0.0
    grads = {}
    for k, s in SHAPES.items():
        g = rng.normal(size=(STEPS, *s))
        grads[k] = g * factor.reshape((STEPS,) + (1,) * len(s))
    return p0, grads


def _case(optimizer: str, leaves=tuple(SHAPES), beta2=None, **kwargs) -> dict:
    """``beta2``: set in the param group after construction (ScalableShampoo's validator
    refuses 1.0, which its preconditioner supports: w2 = 1 when beta2 == 1)."""
    return {"optimizer": optimizer, "kwargs": kwargs, "leaves": list(leaves), "beta2": beta2}


def cases() -> list[dict]:
    scalable = dict(
        use_svd=True, shape_interpretation=False, matrix_eps=2e-3, preconditioning_compute_steps=1
    )
    return [
        _case("Shampoo"),
        _case("Shampoo", lr=0.05, matrix_eps=2e-3),
        _case("ScalableShampoo", beta2=1.0, lr=0.05, block_size=4, **scalable),
        _case(
            "ScalableShampoo",
            beta2=1.0,
            lr=0.05,
            betas=(0.8, 0.999),
            block_size=3,
            start_preconditioning_step=4,
            graft_type=2,  # ADAGRAD
            nesterov=False,
            moving_average_for_momentum=True,
            diagonal_eps=1e-8,
            **scalable,
        ),
        _case(
            "ScalableShampoo",
            beta2=1.0,
            lr=0.02,
            block_size=16,
            start_preconditioning_step=1,
            graft_type=4,  # SQRTN
            weight_decay=0.05,
            inverse_exponent_override=3,
            **scalable,
        ),
        _case(
            "ScalableShampoo",
            beta2=1.0,
            lr=0.02,
            block_size=2,
            start_preconditioning_step=2,
            graft_type=0,  # NONE
            weight_decay=0.05,
            decoupled_weight_decay=True,
            no_preconditioning_for_layers_with_dim_gt=5,
            **scalable,
        ),
        _case("SOAP", weight_decay=0.0, precondition_frequency=100),
        _case(
            "SOAP",
            lr=0.01,
            betas=(0.9, 0.99),
            shampoo_beta=0.8,
            eps=1e-10,
            weight_decay=0.0,
            precondition_frequency=100,
            correct_bias=False,
        ),
        _case(
            "SOAP",
            weight_decay=0.0,
            precondition_frequency=100,
            precondition_1d=True,
            max_precondition_dim=5,
        ),
        # pytorch-optimizer's merge fails to reshape vectors: the vector is left out.
        _case(
            "SOAP",
            leaves=("w", "s", "t"),
            weight_decay=0.0,
            precondition_frequency=100,
            merge_dims=True,
            max_precondition_dim=8,
        ),
        _case(
            "SOAP", weight_decay=0.0, precondition_frequency=100, normalize_gradient=True, eps=1e-12
        ),
        # Refreshes: pytorch-optimizer runs the QR in float32 (compared at float32 rounding).
        _case("SOAP", weight_decay=0.0, precondition_frequency=3),
        _case(
            "SOAP",
            weight_decay=0.0,
            precondition_frequency=4,
            precondition_1d=True,
            max_precondition_dim=5,
            betas=(0.9, 0.95),
        ),
    ]


def run_case(case: dict, p0: dict, grads: dict) -> dict:
    """The params after every step, (STEPS, *shape) per leaf, in float64."""
    import pytorch_optimizer
    import torch

    torch.set_default_dtype(torch.float64)
    names = case["leaves"]
    params = [torch.tensor(p0[k], dtype=torch.float64, requires_grad=True) for k in names]
    optimizer = getattr(pytorch_optimizer, case["optimizer"])(params, **case["kwargs"])
    if case["beta2"] is not None:
        group = optimizer.param_groups[0]
        group["betas"] = (group["betas"][0], case["beta2"])
    out = {k: np.zeros((STEPS, *SHAPES[k])) for k in names}
    for step in range(STEPS):
        for k, p in zip(names, params):
            p.grad = torch.tensor(grads[k][step], dtype=torch.float64)
        optimizer.step()
        for k, p in zip(names, params):
            out[k][step] = p.detach().numpy()
    return out


def main() -> None:
    p0, grads = problem()
    recorded, arrays = cases(), []
    for index, case in enumerate(recorded):
        out = run_case(case, p0, grads)
        if not all(np.all(np.isfinite(v)) for v in out.values()):
            raise SystemExit(f"case {index}: non-finite trajectory")
        arrays.append(out)
    problem_arrays = {f"p0/{k}": v for k, v in p0.items()}
    problem_arrays.update({f"grads/{k}": v for k, v in grads.items()})
    write_arrays("kronecker", enumerate(arrays), **problem_arrays)
    shapes = {k: list(v) for k, v in SHAPES.items()}
    write_meta("kronecker", recorded, ["torch", "pytorch_optimizer"], steps=STEPS, shapes=shapes)


if __name__ == "__main__":
    main()
