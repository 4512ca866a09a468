"""Records ``cma`` 4.5.0's CMA-ES and separable CMA-ES, generation by generation.

Run from the repository root with ``cma==4.5.0``::

    .venv/bin/python tests/reference/record_cma.py

Each case runs ``cma.CMAEvolutionStrategy`` with its default options (``CMA_diagonal=True``
for the separable cases, ``CMA_active=False`` where the case says so), the standard normal
draws coming from a seeded NumPy generator through cma's ``randn`` option, so that gradtx
can sample the same population from the same draws. ``data/cma.npz`` holds, under
``"{index}/{key}"``: ``z`` (generations, popsize, n), the draws; ``x``, the population
cma asked for; and after each ``tell``: ``mean``, ``sigma``, ``p_sigma``, ``p_c`` and ``C``
(the covariance, ``es.sm.C``; separable: the diagonal, ``es.sigma_vec.scaling**2``).
``data/cma.json`` holds the cases. This module is also the problem that
``tests/test_cma.py`` takes (``FUNCTIONS``, ``initial_mean``, ``run_cma``).
"""

from __future__ import annotations

import numpy as np

try:  # imported by the tests (package ``reference``) or run as a script
    from .recording import write_recording
except ImportError:
    from recording import write_recording


def _case(separable, n, popsize, sigma0, function, generations=20, active=True):
    return dict(
        separable=separable, n=n, popsize=popsize, sigma0=sigma0, function=function,
        generations=generations, active=active,
    )  # fmt: skip


CASES = [
    _case(False, 6, None, 0.5, "rosenbrock"),
    _case(False, 5, 11, 0.3, "coupled_ellipsoid"),
    _case(False, 4, None, 1.0, "rosenbrock", active=False),
    # popsize 6 in 40-D: cma refreshes the eigendecomposition every other generation.
    _case(False, 40, 6, 1.0, "coupled_ellipsoid", generations=10),
    _case(True, 8, None, 0.5, "coupled_ellipsoid"),
    _case(True, 30, 20, 0.2, "rosenbrock"),
    _case(True, 5, None, 1.0, "rosenbrock", active=False),
]


def rosenbrock(x, xp=np):
    return xp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def coupled_ellipsoid(x, xp=np):
    n = x.shape[0]
    scales = 10.0 ** (3.0 * np.arange(n) / max(n - 1, 1))
    return xp.sum(scales * (x - 0.5 * xp.roll(x, 1) - 1.0) ** 2)


FUNCTIONS = {"rosenbrock": rosenbrock, "coupled_ellipsoid": coupled_ellipsoid}


def initial_mean(n: int) -> np.ndarray:
    return 0.1 * np.cos(np.arange(n, dtype=np.float64))


def run_cma(case: dict, seed: int) -> dict[str, np.ndarray]:
    """Runs cma on ``case`` with draws from ``np.random.default_rng(seed)``; its arrays."""
    import cma

    rng = np.random.default_rng(seed)
    draws = []

    def randn(*shape):
        draws.append(rng.standard_normal(shape))
        return draws[-1].copy()

    options = {"randn": randn, "verbose": -9, "seed": 1}
    if case["popsize"] is not None:
        options["popsize"] = case["popsize"]
    if case["separable"]:
        options["CMA_diagonal"] = True
    if not case["active"]:
        options["CMA_active"] = False
    es = cma.CMAEvolutionStrategy(initial_mean(case["n"]), case["sigma0"], options)
    f = FUNCTIONS[case["function"]]
    out = {k: [] for k in ("x", "mean", "sigma", "p_sigma", "p_c", "C")}
    for _ in range(case["generations"]):
        x = es.ask()
        es.tell(x, [float(f(np.asarray(xi))) for xi in x])
        out["x"].append(np.asarray(x))
        out["mean"].append(np.array(es.mean))
        out["sigma"].append(np.array(es.sigma))
        out["p_sigma"].append(np.array(es.adapt_sigma.ps))
        out["p_c"].append(np.array(es.pc))
        if case["separable"]:
            out["C"].append(np.array(es.sigma_vec.scaling) ** 2 * np.ones(case["n"]))
        else:
            out["C"].append(np.array(es.sm.C))
    if len(draws) != case["generations"]:
        raise RuntimeError(
            f"{case}: cma drew {len(draws)} times in {case['generations']} generations"
        )
    return {"z": np.stack(draws), **{k: np.stack(v) for k, v in out.items()}}


def main() -> None:
    arrays = [run_cma(case, seed=index) for index, case in enumerate(CASES)]
    for index, run in enumerate(arrays):
        if not all(np.all(np.isfinite(a)) for a in run.values()):
            raise ValueError(f"case {index}: non-finite values")
    write_recording("cma", CASES, arrays, modules=("cma",))


if __name__ == "__main__":
    main()
