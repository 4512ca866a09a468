"""The whole-step benchmark (benchmarks/steps.py) runs end to end in its smoke configuration.

Not a timed test: it checks what the benchmark writes, and that the four implementations
train alike, never how fast anything ran.
"""

from __future__ import annotations

import itertools
import json
import math
import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import steps  # noqa: E402

MODELS = ("mlp", "transformer", "cnn")
# One worker runs the module's quick benchmark (its fixture) for both tests: under xdist each
# worker would run it again (36 s).
pytestmark = pytest.mark.xdist_group("steps_benchmark")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("steps")
    # Adam alone: the AdamW + clip + schedule chain is the same machinery (bench.py's smoke
    # run covers it), and its twelve compiles doubled this test's minutes of CPU.
    steps.main(["--quick", "--chains", "adam", "--out", str(out)])
    return json.loads((out / "results.json").read_text()), (out / "summary.md").read_text()


def test_the_quick_run_has_every_case_with_finite_ratios(quick):
    results, summary = quick
    cases = [(r["model"], r["chain"], r["impl"]) for r in results["step"]]
    assert sorted(cases) == sorted(itertools.product(MODELS, ["adam"], steps.IMPLS))
    for record in results["step"]:
        ratios = {k: v for k, v in record.items() if " / " in k}
        assert len(ratios) == 2 * len(steps.RATIOS | steps.MEMORY)
        assert all(math.isfinite(v) and v > 0 for v in ratios.values()), record
        assert 0 < record["lower_s"] < record["compile_s"]
        assert record["donated_bytes"] > 0  # params and state really are donated
        assert record["xla_peak_bytes"] > 0 and record["peak_rss_bytes"] > 0
    assert results["goals"] and all(
        isinstance(g["met"], bool) and math.isfinite(g["value"]) for g in results["goals"]
    )
    for model in MODELS:
        assert f"### {model}:" in summary


@pytest.mark.parametrize("chain", ["adam"])
def test_every_implementation_follows_the_same_loss_trajectory(quick, chain):
    results, _ = quick
    losses = {
        (r["model"], r["impl"]): np.array(r["losses"])
        for r in results["step"]
        if r["chain"] == chain
    }
    for model in MODELS:
        reference = losses[(model, steps.OPTAX)]
        assert reference.shape == (steps.TRAJECTORY_STEPS,)
        # The optimizer moves the loss by more than the tolerance: a wrong update would show.
        assert abs(reference[-1] - reference[0]) > 1e-4 * abs(reference[0])
        for impl in steps.IMPLS:
            np.testing.assert_allclose(
                losses[(model, impl)], reference, rtol=1e-5, err_msg=f"{model}, {impl}"
            )
