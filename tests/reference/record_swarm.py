"""Records pyswarms' ``GlobalBestPSO``, the reference of ``gradtx.particle_swarm``.

Run from the repository root with ``pyswarms==1.3.0``::

    .venv/bin/python tests/reference/record_swarm.py

Each case runs ``GlobalBestPSO(...).optimize(f, iters)`` itself, seeded through
``np.random.seed``, on a batched NumPy objective (:data:`OBJECTIVES`). The draws
``r1, r2`` that pyswarms' ``compute_velocity`` takes from ``np.random.uniform`` are
recorded by wrapping that function after the swarm is built, and the global best by
wrapping the star topology's ``compute_gbest``. ``data/swarm.npz`` holds, per case
``i``: ``"{i}/r"`` (iters, 2, n, d), the draws r1 and r2 of each iteration;
``"{i}/positions"`` and ``"{i}/velocities"`` (iters + 1, n, d), the swarm at the start
of each iteration (row 0 is the initial swarm) and after the last one;
``"{i}/global_best"`` (iters, d) and ``"{i}/global_best_loss"`` (iters,) after each
iteration's evaluation. ``data/swarm.json`` holds the cases (objective, dimension,
particles, iters, seed, options and keyword arguments) and the versions.
"""

from __future__ import annotations

import numpy as np

try:  # imported by the tests (package ``reference``) or run as a script
    from .recording import write_recording
except ImportError:
    from recording import write_recording


def rastrigin(x: np.ndarray) -> np.ndarray:
    """One loss per row of ``x``: ``10 d + sum(x^2 - 10 cos(2 pi x))``."""
    return 10.0 * x.shape[-1] + np.sum(x**2 - 10.0 * np.cos(2.0 * np.pi * x), axis=-1)


def rosenbrock(x: np.ndarray) -> np.ndarray:
    """One loss per row of ``x``: ``sum(100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2)``."""
    a, b = x[..., :-1], x[..., 1:]
    return np.sum(100.0 * (b - a**2) ** 2 + (1.0 - a) ** 2, axis=-1)


OBJECTIVES = {"rastrigin": rastrigin, "rosenbrock": rosenbrock}


def cases() -> list[dict]:
    """No limits (pyswarms' example options, then the constriction ones), a velocity clamp,
    bounds (periodic, pyswarms' default handler), both."""

    def case(objective, dim, n, iters, seed, options, **kwargs):
        return {
            "objective": objective,
            "dimensions": dim,
            "n_particles": n,
            "iters": iters,
            "seed": seed,
            "options": options,
            "kwargs": kwargs,
        }

    example = {"c1": 0.5, "c2": 0.3, "w": 0.9}
    clerc = {"c1": 1.49618, "c2": 1.49618, "w": 0.7298}
    wide = {"c1": 2.0, "c2": 2.0, "w": 0.9}  # overshoots: particles leave the bounds
    return [
        case("rosenbrock", 3, 6, 25, 0, example),
        case("rastrigin", 4, 8, 25, 1, clerc),
        case("rastrigin", 3, 8, 25, 2, clerc, velocity_clamp=[-0.3, 0.4]),
        case("rastrigin", 2, 10, 30, 3, wide, bounds=[-1.5, 2.0]),
        case("rosenbrock", 2, 7, 30, 4, wide, bounds=[-2.0, 2.0], velocity_clamp=[-1.0, 1.0]),
    ]


def run_pyswarms(case: dict) -> dict[str, np.ndarray]:
    """Runs one case through ``GlobalBestPSO.optimize``; its draws and swarm at each iteration."""
    import pyswarms

    d, n = case["dimensions"], case["n_particles"]
    kwargs = dict(case["kwargs"])
    if "velocity_clamp" in kwargs:
        kwargs["velocity_clamp"] = tuple(kwargs["velocity_clamp"])
    if "bounds" in kwargs:
        low, high = kwargs["bounds"]
        kwargs["bounds"] = (np.full(d, low), np.full(d, high))
    np.random.seed(case["seed"])
    optimizer = pyswarms.single.GlobalBestPSO(n, d, dict(case["options"]), **kwargs)

    draws, bests = [], []
    uniform, compute_gbest = np.random.uniform, optimizer.top.compute_gbest

    def recorded_uniform(*args, **kw):
        draws.append(uniform(*args, **kw))
        return draws[-1]

    def recorded_gbest(swarm, **kw):
        best = compute_gbest(swarm, **kw)
        bests.append((np.array(best[0]), float(best[1])))
        return best

    optimizer.top.compute_gbest = recorded_gbest
    np.random.uniform = recorded_uniform
    try:
        optimizer.optimize(OBJECTIVES[case["objective"]], case["iters"], verbose=False)
    finally:
        np.random.uniform = uniform
    iters = case["iters"]
    if len(draws) != 2 * iters or len(bests) != iters:
        raise RuntimeError(f"{case}: {len(draws)} draws and {len(bests)} bests in {iters} iters")
    return {
        "r": np.stack(draws).reshape(iters, 2, n, d),
        "positions": np.stack([*optimizer.pos_history, optimizer.swarm.position]),
        "velocities": np.stack([*optimizer.velocity_history, optimizer.swarm.velocity]),
        "global_best": np.stack([b[0] for b in bests]),
        "global_best_loss": np.array([b[1] for b in bests]),
    }


def main() -> None:
    all_cases = cases()
    arrays = [run_pyswarms(case) for case in all_cases]
    for index, (case, run) in enumerate(zip(all_cases, arrays)):
        loss = run["global_best_loss"]
        if not np.all(np.isfinite(run["positions"])) or not loss[-1] < loss[0]:
            raise ValueError(f"case {index} {case}: not finite, or no progress ({loss[[0, -1]]})")
        if "bounds" in case["kwargs"]:
            low, high = case["kwargs"]["bounds"]
            x = run["positions"]
            stepped = x[:-1] + run["velocities"][1:]  # before pyswarms wraps them
            if np.any((x < low) | (x > high)) or np.all((stepped >= low) & (stepped <= high)):
                raise ValueError(f"case {index}: outside the bounds, or never leaving them")
    write_recording("swarm", all_cases, arrays, modules=("pyswarms",))


if __name__ == "__main__":
    main()
