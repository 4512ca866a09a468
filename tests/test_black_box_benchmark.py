"""benchmarks/black_box.py (gradient-free methods against their references) runs end to end.

Not a timed test: it checks what the script writes and how it counts evaluations. The
quick run leaves the references out (as CI, which has none of cma, pyswarms, evosax).
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import black_box  # noqa: E402

# One worker runs the module's tests, so the quick benchmark (its fixture, 15 s) runs once:
# under xdist each worker would run it again.
pytestmark = pytest.mark.xdist_group("black_box_benchmark")


def test_outcome_counts_the_evaluations_of_the_first_generation_at_the_target():
    evals = np.array([6, 12, 18, 24])
    outcome = black_box._outcome(evals, np.array([1.0, 1e-3, 1e-9, 1e-12]))
    assert outcome["evals_to_target"] == 18
    assert outcome["evals_used"] == 24
    assert outcome["final"] == 1e-12
    assert black_box._outcome(evals, np.full(4, 1e-3))["evals_to_target"] is None


def test_statistics_count_a_miss_as_infinitely_many_evaluations():
    runs = [{"evals_to_target": e, "final": 0.0} for e in (100, 200, None, None, None)]
    stats = black_box.statistics_of(runs)
    assert stats["success"] == pytest.approx(0.4)
    assert stats["evals_q"][0] == 200 and np.isinf(stats["evals_q"][1])


@pytest.mark.parametrize("fn", list(black_box.FUNCTIONS))
def test_functions_vanish_at_the_shifted_optimum_only(fn):
    f = black_box.FUNCTIONS[fn]
    assert f(np.zeros(4), np) == pytest.approx(0.0, abs=1e-12)
    assert f(np.full(4, 0.1), np) > 1e-3


def test_speed_cases_time_full_cma_at_its_own_dims_and_the_others_at_theirs():
    # Full CMA-ES (a dim x dim covariance) at --full-dims, the rest at --speed-dims; a dim in
    # only one list gets only its methods (the 1000-D full CMA case was once never timed).
    methods = ["cma_es", "sep_cma_es", "particle_swarm", "es"]
    cases = black_box.speed_cases([100, 10_000], [100, 1000], methods, ["float32"])
    timed = {(method, dim) for method, name, dim, _ in cases if name == "gradtx float32"}
    assert timed == {
        ("cma_es", 100),
        ("cma_es", 1000),
        *((m, d) for m in methods[1:] for d in (100, 10_000)),
    }


def test_cma_reference_reaches_the_target_on_the_sphere():
    pytest.importorskip("cma")
    evals, best = black_box._cma("sphere", 2, 0, 2000, diagonal=False)
    assert best[-1] <= black_box.TARGET and evals[-1] < 2000


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("black_box")
    patch = pytest.MonkeyPatch()
    for name in ("cma", "pyswarms", "evosax"):  # CI's environment
        patch.setattr(black_box, name, None)
    try:
        results = black_box.main(["--quick", "--out", str(out)])
    finally:
        patch.undo()
    return out, results


def test_the_quick_run_writes_results_summary_and_figure(quick):
    out, results = quick
    assert json.loads((out / "results.json").read_text())["config"] == results["config"]
    assert (out / "convergence.png").stat().st_size > 10_000
    text = (out / "summary.md").read_text()
    for method in black_box.METHODS:
        assert f"gradtx {method}" in text
    assert "### Speed" in text and "### Goals" in text


def test_every_method_and_function_runs_with_the_budget_and_monotone_curves(quick):
    _, results = quick
    config = results["config"]
    cases = {(r["method"], r["function"]) for r in results["convergence"]}
    assert cases == {(m, f) for m in black_box.METHODS for f in black_box.FUNCTIONS}
    for record in results["convergence"]:
        assert record["reference"] is None or record["method"] == "simulated_annealing"
        runs = record["gradtx"]["runs"]
        assert len(runs) == config["seeds"]
        for run in runs:
            assert 0.5 * config["budget"] < run["evals_used"] <= config["budget"]
            values = [v for _, v in run["curve"]]
            assert np.all(np.diff(values) <= 0) and values[-1] == run["final"]


def test_cma_es_reaches_the_target_on_the_2d_sphere(quick):
    # The harness counts generations right and the scan runs the transform: a broken
    # update or a wrong evaluation count would miss the target or exceed the budget.
    _, results = quick
    for record in results["convergence"]:
        if record["function"] == "sphere" and record["method"] in ("cma_es", "sep_cma_es"):
            assert record["gradtx"]["stats"]["success"] == 1.0


def test_speed_has_only_the_gradtx_cases_without_references(quick):
    _, results = quick
    impls = {r["impl"] for r in results["speed"]}
    assert impls == {"gradtx float64"}
    assert all(r["generation_s"] > 0 and r["compile_s"] > 0 for r in results["speed"])
