"""Records pytorch-optimizer's AdaHessian, the reference of ``compat.pytorch.adahessian``.

Run from the repository root with torch and ``pytorch-optimizer==4.1.0``::

    .venv/bin/python tests/reference/record_adahessian.py

The leaves are :mod:`record_layerwise`'s (a matrix ``w`` (3, 4), a rank-3 ``t`` (2, 3, 4), a
vector ``b`` (4,), a scalar ``s`` and a zero-initialised ``z`` (4,)) and so is the separable
part of the loss, ``a p**2 + 0.5 sin 3p + c(t) p`` per element, with its drifting ``c(t)``.
AdaHessian reads the Hessian, so the loss itself is written here (:func:`value`, for NumPy,
torch and ``jax.numpy`` alike) and flipped (:func:`loss`) as record_layerwise flips the
gradient: times 0 when ``t % 17 == 0`` and -1 when ``t % 11 == 0``. Bilinear terms couple
``w`` with ``t[0]``, ``b`` with ``z`` and ``s`` with ``b``: off the diagonal of the Hessian,
they make Hutchinson's estimate ``z * (H z)`` depend on the probes (with a diagonal Hessian
it is the diagonal whatever the probes).

The probes are drawn here, ``rng.integers(0, 2) * 2 - 1`` from ``default_rng(index)``,
and handed to the package through ``torch.randint_like`` (which it calls once per leaf at
each refresh, in the params' order); they are stored with the params, so a replay feeds
the same probes to gradtx (``tests/test_compat_adahessian.py``).

Every case runs ``STEPS`` steps in float64 (torch's default dtype float64;
``step(closure)`` with ``(sign * loss).backward(create_graph=True)``, ``sign`` -1 for the
``maximize`` case, whose ascent would otherwise leave any bound; the package's default
``foreach`` path; a scheduler stepped after each step). The script refuses to write if a
run is not finite, leaves |p| <= 20, barely moves a leaf or amplifies a perturbation of p0
more than ``MAX_AMPLIFICATION``-fold. It stores in ``data/adahessian.npz`` the params after
the steps ``SAVED`` (0-based; ``"{index}/{leaf}"``, shape ``(len(SAVED), *leaf_shape)``)
and the probes (``"{index}/probes/{leaf}"``, int8, shape ``(draws, *leaf_shape)``, one
draw per refresh), and in ``data/adahessian.json`` the cases (``{"index", "framework",
"optimizer", "kwargs", "schedule"}`` as ``data/cases.json``, and ``"sign"``),
AdaHessian's keyword arguments and defaults (``"defaults"``) and the versions. Torch and
the package are imported only inside the functions; the output is bitwise reproducible.
"""

from __future__ import annotations

import warnings

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
SAVED = np.r_[0:3, 19:STEPS:30]  # the first steps, then every thirtieth: the file stays small
SHAPES = _problem.SHAPES
initial_params = _problem.initial_params


def factor(step, xp=np):
    """record_layerwise's flip: 0 if ``step % 17 == 0``, else -1 if ``step % 11 == 0``, else 1."""
    return xp.where(step % 17 == 0, 0.0, xp.where(step % 11 == 0, -1.0, 1.0))


def value(params: dict, step, xp=np):
    """The unflipped loss at 1-based ``step``: record_layerwise's separable terms and the
    bilinear couplings ``0.3 <w, t[0]> + 0.2 <b, z> + 0.25 s sum(b)``.

    Written with operators and ``xp.sin`` alone, so that ``xp`` may be NumPy, torch or
    ``jax.numpy`` (with a traced ``step``).
    """
    separable = sum(
        (
            xp.asarray(_problem.A[k], dtype=p.dtype) * p**2
            + 0.5 * xp.sin(3.0 * p)
            + (
                xp.asarray(_problem.C[k], dtype=p.dtype)
                + 0.4 * xp.sin(0.06 * step + xp.asarray(_problem.PHASE[k], dtype=p.dtype))
            )
            * p
        ).sum()
        for k, p in params.items()
    )
    w, t, b, s, z = (params[k] for k in SHAPES)
    return separable + 0.3 * (w * t[0]).sum() + 0.2 * (b * z).sum() + 0.25 * s * b.sum()


def loss(params: dict, step, xp=np):
    """``factor(step) * value(params, step)``: its gradient and Hessian are what the steps see."""
    return factor(step, xp) * value(params, step, xp)


def cases() -> list[dict]:
    """AdaHessian's defaults, then each of its options."""

    def case(schedule=None, sign=1, **kw):
        return {
            "framework": "pytorch",
            "optimizer": "adahessian",
            "kwargs": kw,
            "schedule": schedule,
            "sign": sign,
        }

    decaying = {"type": "ExponentialLR", "gamma": 0.99}
    return [
        case(),
        case(lr=0.05),
        case(lr=0.05, betas=[0.8, 0.99], eps=1e-4),
        case(lr=0.05, weight_decay=0.1),
        case(lr=0.05, weight_decay=0.01, fixed_decay=True),
        case(lr=0.05, weight_decay=0.1, weight_decouple=False),
        case(lr=0.05, hessian_power=0.5),
        case(lr=0.05, update_period=3),
        # Maximizing -loss: the same descent, through the package's negated gradient.
        case(sign=-1, lr=0.05, maximize=True),
        case(lr=0.05, num_samples=1, hessian_distribution="rademacher", foreach=False),
        case(decaying, lr=0.05, weight_decay=0.1),
    ]


def draws(case: dict, steps: int = STEPS) -> int:
    """How many refreshes (probe draws) ``steps`` steps make."""
    return -(-steps // case["kwargs"].get("update_period", 1))


def probes(index: int, case: dict) -> dict[str, np.ndarray]:
    """Case ``index``'s probes, +-1 as int8: ``(draws, *leaf_shape)`` per leaf."""
    rng = np.random.default_rng(index)
    out = {k: [] for k in SHAPES}
    for _ in range(draws(case)):
        for k, shape in SHAPES.items():  # the package's order: a leaf at a time
            out[k].append(rng.integers(0, 2, size=shape) * 2 - 1)
    return {k: np.asarray(v, dtype=np.int8) for k, v in out.items()}


def run_torch(
    case: dict,
    probes: dict[str, np.ndarray],
    steps: int = STEPS,
    saved: np.ndarray = SAVED,
    p0: dict | None = None,
) -> dict[str, np.ndarray]:
    """Runs one case from ``p0`` (``initial_params()``) on ``probes``; the params after the
    steps ``saved``."""
    import pytorch_optimizer
    import torch

    torch.set_default_dtype(torch.float64)
    start = initial_params() if p0 is None else p0
    params = {k: torch.tensor(v, requires_grad=True) for k, v in start.items()}
    optimizer = pytorch_optimizer.AdaHessian(list(params.values()), **case["kwargs"])
    scheduler = None
    if case["schedule"]:
        spec = dict(case["schedule"])
        scheduler = getattr(torch.optim.lr_scheduler, spec.pop("type"))(optimizer, **spec)
    # The package draws each probe as torch.randint_like(p, 0, 2) * 2 - 1.
    queue = iter([probes[k][i] for i in range(draws(case, steps)) for k in SHAPES])
    original = torch.randint_like

    def recorded_bits(p, *args, **kwargs):
        bits = torch.as_tensor((next(queue) + 1) // 2, dtype=p.dtype)
        if bits.shape != p.shape:
            raise ValueError(f"a probe of shape {tuple(bits.shape)} for a leaf {tuple(p.shape)}")
        return bits

    def closure_at(step):
        def closure():
            optimizer.zero_grad()
            objective = case["sign"] * float(factor(step)) * value(params, step, xp=torch)
            objective.backward(create_graph=True)
            return objective

        return closure

    out = {k: [] for k in params}
    torch.randint_like = recorded_bits
    try:
        for step in range(1, steps + 1):
            with warnings.catch_warnings():
                # The reference cycle torch warns of is broken by zero_grad below.
                warnings.filterwarnings("ignore", "Using backward\\(\\) with create_graph=True")
                optimizer.step(closure_at(step))
            # zero_grad sets p.grad to None: no reference cycle through the graph is kept.
            optimizer.zero_grad()
            if scheduler is not None:
                scheduler.step()
            for k, p in params.items():
                if p.dtype != torch.float64:
                    raise TypeError(f"{case}: {k} became {p.dtype}")
                out[k].append(p.detach().numpy().copy())
    finally:
        torch.randint_like = original
    if next(queue, None) is not None:
        raise ValueError(f"{case}: the package drew fewer probes than {draws(case, steps)}")
    return {k: np.stack(v)[saved[saved < steps]] for k, v in out.items()}


def package_defaults() -> dict:
    """AdaHessian's keyword arguments and their defaults (``params`` and ``kwargs`` left out)."""
    import inspect

    import pytorch_optimizer

    parameters = inspect.signature(pytorch_optimizer.AdaHessian).parameters
    return {k: p.default for k, p in parameters.items() if k not in ("params", "kwargs")}


MAX_AMPLIFICATION = 1e6
"""How much a run may amplify a perturbation of p0: rounding (1e-16) then stays below 1e-10.

AdaHessian's first steps divide by |z * (H z)| alone (eps 1e-16), and on this nonconvex
problem an entry of it can be small: the first step then amplifies a perturbation of p0
some 1e3-fold, and a refresh every few steps more. A port that rounds differently agrees
with the package to the tests' 1e-9 when a run stays below this.
"""


def amplification(case: dict, probes: dict[str, np.ndarray], perturbation: float = 1e-13):
    """How much the whole run amplifies a perturbation of every entry of p0."""
    every = np.arange(STEPS)
    a = run_torch(case, probes, saved=every)
    p0 = {k: v + perturbation for k, v in initial_params().items()}
    b = run_torch(case, probes, saved=every, p0=p0)
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a) / perturbation


def check(index: int, case: dict, arrays: dict[str, np.ndarray]) -> float:
    """Raises unless the case is finite, bounded and moves every leaf; returns its smallest move."""
    return check_trajectory(index, case, arrays, initial_params(), len(SAVED), min_move=1e-2)


def main() -> None:
    recorded, arrays = cases(), []
    for index, case in enumerate(recorded):
        drawn = probes(index, case)
        out = run_torch(case, drawn)
        move = check(index, case, out)
        gain = amplification(case, drawn)
        if gain > MAX_AMPLIFICATION:
            raise ValueError(f"case {index} {case}: amplifies a perturbation {gain:.1e}-fold")
        print(f"{index:2d} moves {move:.3f}, amplifies {gain:8.1f}  {case['kwargs']}")
        arrays.append({**out, **{f"probes/{k}": v for k, v in drawn.items()}})
    write_recording(
        "adahessian",
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
