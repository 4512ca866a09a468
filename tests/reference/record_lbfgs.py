"""Records torch.optim.LBFGS, the reference of ``compat.pytorch.lbfgs``.

Run from the repository root with torch::

    .venv/bin/python tests/reference/record_lbfgs.py

Two deterministic problems, written once for NumPy, torch and ``jax.numpy`` (``xp``):

- ``rosenbrock``: ``sum 100 (x[1:] - x[:-1]**2)**2 + (1 - x[:-1])**2`` in 4-D, from
  (-1.2, 1, -1.2, 1);
- ``logistic``: the mean logistic loss of a linear model ``w`` (3,), ``b`` () on 12 fixed
  noisy points, plus ``0.005 |w|**2``, from zero.

Every case runs ``STEPS`` calls of ``optimizer.step(closure)`` in float64 (torch's default
dtype float64; the closure zeroes the gradients, evaluates the loss and back-propagates).
The params go to torch in the order ``jax.flatten_util.ravel_pytree`` ravels them (dict keys
sorted), so torch's flat vector is the port's. ``data/lbfgs.npz`` holds, per case,
``"{index}/{leaf}"`` (the params after each call, shape ``(STEPS, *leaf_shape)``),
``"{index}/loss"`` (what each call returned: the loss where it started) and
``"{index}/n_iter"``, ``"{index}/func_evals"`` (torch's counters after each call);
``data/lbfgs.json`` the cases (``{"index", "framework", "optimizer", "problem", "kwargs",
"schedule"}``), LBFGS's keyword arguments and defaults, the versions, and ``"lines"``: what
torch's own ``_strong_wolfe`` returns (``f``, ``t``, ``evals``) along the ``LINES``, where
its rarer rules decide (the trajectories pass through few of them). A case is refused
unless it is finite, moves, and amplifies a 1e-13 change of p0 at most ``MAX_AMPLIFICATION``
-fold (torch's defaults on Rosenbrock, lr 1 without a line search, amplify it 1e7-fold: no
reimplementation can follow them to 1e-9, so the defaults are recorded on ``logistic``).
Torch is imported only inside the functions.
"""

from __future__ import annotations

import numpy as np

try:  # imported by the tests (package ``reference``) or run as a script
    from .recording import check_trajectory, write_recording
except ImportError:
    from recording import check_trajectory, write_recording

STEPS = 10
MAX_AMPLIFICATION = 1e5

_RNG = np.random.default_rng(0)
_X = _RNG.normal(size=(12, 3))
_Y = np.sign(_X @ np.array([1.0, -2.0, 0.5]) + 0.3 + _RNG.normal(size=12))

SHAPES = {"rosenbrock": {"x": (4,)}, "logistic": {"b": (), "w": (3,)}}


def initial_params(problem: str) -> dict[str, np.ndarray]:
    """Fresh float64 params, keys sorted (as ``ravel_pytree`` orders them)."""
    if problem == "rosenbrock":
        return {"x": np.array([-1.2, 1.0, -1.2, 1.0])}
    return {"b": np.zeros(()), "w": np.zeros(3)}


def value(problem: str, params: dict, xp=np):
    """The loss of ``problem`` at ``params`` (arrays of ``xp``: numpy, torch or jax.numpy)."""
    if problem == "rosenbrock":
        x = params["x"]
        return xp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    margin = -xp.asarray(_Y) * (xp.asarray(_X) @ params["w"] + params["b"])
    softplus = xp.logaddexp(xp.zeros_like(margin), margin)
    return xp.mean(softplus) + 0.005 * xp.sum(params["w"] ** 2)


def cases() -> list[dict]:
    """The defaults, each line search, a wrapping history, max_eval and tolerance stops, lr."""

    def case(problem, **kw):
        return {
            "framework": "pytorch",
            "optimizer": "lbfgs",
            "problem": problem,
            "kwargs": kw,
            "schedule": None,
        }

    wolfe = {"line_search_fn": "strong_wolfe"}
    return [
        case("logistic"),
        case("logistic", **wolfe),
        case("rosenbrock", **wolfe),
        # history_size 2: the ring wraps from the third pair on.
        case("rosenbrock", history_size=2, **wolfe),
        case("rosenbrock", history_size=2),
        # max_eval below max_iter: the evaluations end the step (and cut the line search).
        case("rosenbrock", max_eval=8, **wolfe),
        case("rosenbrock", max_iter=5, max_eval=3),
        # A large tolerance_change: steps stop on the loss's change, then on the step's size.
        case("rosenbrock", tolerance_change=1e-4, **wolfe),
        # A large tolerance_grad: once below it, a step returns before any iteration.
        case("logistic", tolerance_grad=1e-4),
        case("logistic", lr=0.5),
        case("rosenbrock", lr=0.3, **wolfe),
        case("rosenbrock", max_iter=4, lr=0.5),
    ]


# Lines along which torch's _strong_wolfe takes its rarer turns (found by comparing with
# variants of the port that lack each rule): the zoom's insufficient-progress rule (the first
# four), the bracket-width stop (tolerance 1e-9, whatever the optimizer's tolerance_change;
# the fourth), a max_ls that ends the search before any bracket (the fifth and sixth), and
# a bracket because the loss rose since the last trial though it is still low enough (the
# last). Each is (loss, x, d, first trial step, max_ls).
LINES = [
    ("kink", [-3.75, 2.26, 2.07], [-1.22, -0.09, -1.0], 0.548, 25),
    ("wavy", [0.71, -3.12, 1.32], [-0.29, 1.1, -1.39], 461.0, 4),
    ("kink", [-0.99, 4.01, -3.59], [-0.39, -1.38, -0.52], 315.0, 25),
    ("kink", [-0.33, 4.33, 0.88], [-0.65, 0.29, -1.85], 0.454, 25),
    ("kink", [-0.08, -3.17, 0.59], [-0.37, 0.61, -0.12], 2.09, 1),
    ("kink", [2.26, -1.74, -0.44], [-1.1, 0.9, 0.9], 0.0277, 2),
    ("step", [0.0], [1.0], 0.003, 25),
]


def line_value(kind: str, x, xp=np):
    """The losses the line searches run on: ``wavy`` is smooth; ``kink`` is |x| smoothed at
    1e-5 (its slope jumps from -1 to 1 there: the bracket shrinks onto the kink); ``step``
    falls, then rises by 1.4 around x = 0.8, then falls again."""
    if kind == "wavy":
        return xp.sum(0.3 * x**2 + xp.sin(3.0 * x) + 0.5 * xp.cos(7.0 * x + 1.0))
    if kind == "kink":
        return xp.sum(xp.sqrt(x**2 + 1e-10)) + 0.1 * xp.sum(x)
    return xp.sum(-x - 0.3 * x**2 + 0.7 * (1 + xp.tanh(4.6 * (x - 0.8))))


def run_line_search(kind: str, x, d, t: float, max_ls: int) -> dict:
    """torch's ``_strong_wolfe`` (as LBFGS calls it) along ``d`` from ``x``, first trying ``t``."""
    import torch
    from torch.optim.lbfgs import _strong_wolfe

    torch.set_default_dtype(torch.float64)

    def value_and_grad(y):
        y = y.detach().requires_grad_(True)
        loss = line_value(kind, y, xp=torch)
        loss.backward()
        return float(loss), y.grad

    x, d = torch.tensor(x), torch.tensor(d)
    f, g = value_and_grad(x)
    f_new, _, t_new, evals = _strong_wolfe(
        lambda x, t, d: value_and_grad(x + t * d), x, t, d, f, g, g.dot(d), max_ls=max_ls
    )
    return {"f": float(f_new), "t": float(t_new), "evals": evals}


def run_torch(case: dict, p0: dict | None = None, steps: int = STEPS) -> dict[str, np.ndarray]:
    """Runs one case from ``p0`` (``initial_params``): the arrays the recording stores."""
    import torch

    torch.set_default_dtype(torch.float64)
    problem = case["problem"]
    start = initial_params(problem) if p0 is None else p0
    params = {k: torch.tensor(v, requires_grad=True) for k, v in start.items()}
    optimizer = torch.optim.LBFGS(list(params.values()), **case["kwargs"])

    def closure():
        optimizer.zero_grad()
        loss = value(problem, params, xp=torch)
        loss.backward()
        return loss

    out = {k: [] for k in [*params, "loss", "n_iter", "func_evals"]}
    for _ in range(steps):
        out["loss"].append(optimizer.step(closure).item())
        state = optimizer.state[optimizer.param_groups[0]["params"][0]]
        out["n_iter"].append(state["n_iter"])
        out["func_evals"].append(state["func_evals"])
        for k, p in params.items():
            out[k].append(p.detach().numpy().copy())
    return {k: np.stack(v) for k, v in out.items()}


def amplification(case: dict, perturbation: float = 1e-13) -> float:
    """How much the params after the calls move, per unit of a change of every entry of p0."""
    a = run_torch(case)
    moved = {k: v + perturbation for k, v in initial_params(case["problem"]).items()}
    b = run_torch(case, p0=moved)
    return max(np.max(np.abs(a[k] - b[k])) for k in SHAPES[case["problem"]]) / perturbation


def check(index: int, case: dict, arrays: dict[str, np.ndarray]) -> None:
    """Raises unless the case is finite, moves every leaf and is well conditioned."""
    p0 = initial_params(case["problem"])
    check_trajectory(index, case, arrays, p0, STEPS, min_move=1e-2, bound=None)
    worst = amplification(case)
    if worst > MAX_AMPLIFICATION:
        raise ValueError(f"case {index} {case}: amplifies a change of p0 {worst:.2g}-fold")


def torch_defaults() -> dict:
    """LBFGS's keyword arguments and their defaults (``params`` left out)."""
    import inspect

    import torch

    parameters = inspect.signature(torch.optim.LBFGS).parameters
    return {k: p.default for k, p in parameters.items() if k != "params"}


def main() -> None:
    recorded, arrays = cases(), []
    for index, case in enumerate(recorded):
        arrays.append(run_torch(case))
        check(index, case, arrays[-1])
        print(f"{index:2d} {case['problem']:10s} {case['kwargs']}: {arrays[-1]['n_iter']}")
    lines = [
        {"kind": kind, "x": x, "d": d, "t": t, "max_ls": max_ls,
         "torch": run_line_search(kind, x, d, t, max_ls)}
        for kind, x, d, t, max_ls in LINES
    ]  # fmt: skip
    write_recording(
        "lbfgs",
        recorded,
        arrays,
        ["torch"],
        steps=STEPS,
        leaves={name: {k: list(s) for k, s in shapes.items()} for name, shapes in SHAPES.items()},
        defaults=torch_defaults(),
        lines=lines,
    )


if __name__ == "__main__":
    main()
