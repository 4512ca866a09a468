"""The benchmark suite (benchmarks/bench.py) runs end to end in its smoke configuration.

Not a timed test: it checks what the suite writes, never how fast anything ran.
"""

from __future__ import annotations

import json
import math
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import bench  # noqa: E402


@pytest.mark.parametrize("leaves", [1, 20, 200, 2000])
@pytest.mark.parametrize("size", [10_000, 1_000_000, 16_000_000])
def test_layouts_have_the_leaf_count_and_about_the_size(leaves, size):
    shapes = bench.layout(leaves, size)
    assert len(shapes) == leaves
    assert math.isclose(sum(math.prod(s) for s in shapes), size, rel_tol=0.01)


def test_the_quick_suite_writes_results_and_plots(tmp_path):
    bench.main(["--quick", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "results.json").read_text())

    assert {"machine", "config", "limits", "step", "compile", "ratios", "goals"} <= set(results)
    impls = set(results["config"]["impls"])
    assert {"optax", "gradtx"} <= impls
    cases = {(r["chain"], r["leaves"], r["size"], r["impl"]) for r in results["step"]}
    assert (
        len(cases)
        == len(results["step"])
        == (len(bench.CHAINS) * len(results["config"]["leaves"]) * len(impls))
    )
    for record in results["step"]:
        for key in ("step_s", "state_bytes", "peak_rss_bytes", "floor_s", "xla_stream_s"):
            assert record[key] > 0
        if record["impl"] in results["config"]["jax_impls"]:
            assert 0 < record["lower_s"] < record["compile_s"]
            assert record["donated_bytes"] > 0  # params and state really are donated
    for record in results["limits"]:
        assert record["machine_GBps"] > 0 and record["xla_stream_GBps"] > 0
    assert {(r["chain"], r["leaves"], r["impl"]) for r in results["compile"]} == {
        (c, n, i)
        for c in bench.COMPILE_CHAINS
        for n in results["config"]["compile_leaves"]
        for i in results["config"]["jax_impls"]
    }
    assert all(r["compile_s"] > 0 for r in results["compile"])
    assert results["state_bytes_per_param"]["adam float32, gradtx"] == pytest.approx(8, rel=1e-2)
    assert results["state_bytes_per_param"]["adam bfloat16, gradtx"] == pytest.approx(4, rel=1e-2)
    assert {g["impl"] for g in results["goals"]} <= impls
    assert all(isinstance(g["met"], bool) and math.isfinite(g["value"]) for g in results["goals"])

    for name in ("step_time.png", "compile_time.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "### Goals" in (tmp_path / "summary.md").read_text()


def test_the_structured_cases_write_ratios_and_state_sizes(tmp_path):
    import structured

    results = structured.main(
        ["--quick", "--cases", "adafactor", "soap-refresh", "--repeats", "1", "--warmup", "0"]
        + ["--out", str(tmp_path)]
    )
    step = {(r["case"], r["impl"]): r for r in results["step"]}
    assert step["adafactor", "optax.adafactor"]["ratio"] == 1.0
    assert step["soap-refresh", "gradtx.soap, no refresh"]["ratio"] == 1.0
    for r in results["step"]:
        assert r["step_s"] > 0
        assert r["impl"].startswith("torch") or r["compile_s"] > 0
    # Factored: m + n statistics for each m x n matrix, well under a float per parameter.
    assert step["adafactor", "gradtx.adafactor"]["state_bytes_per_param"] < 0.1
    # SOAP: Adam's two moments plus, per 128 x 128 matrix, two 128 x 128 bases and statistics.
    assert step["soap-refresh", "gradtx.soap, refresh every step"]["state_bytes_per_param"] > 8
    text = (tmp_path / "summary.md").read_text()
    assert text.count("| adafactor |") == len({i for c, i in step if c == "adafactor"})


def test_the_quick_full_batch_run_solves_with_lbfgs_and_cg(tmp_path):
    # In a subprocess: the script turns on float64 for the whole process.
    import subprocess

    script = pathlib.Path(bench.__file__).with_name("full_batch.py")
    subprocess.run(
        [sys.executable, str(script), "--quick", "--out", str(tmp_path)], check=True, timeout=600
    )
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    for name in ("gradtx.lbfgs", "optax.lbfgs", "gradtx.conjugate_gradient", "scipy L-BFGS-B"):
        assert results[name]["converged"], name
        assert results[name]["grad_norm"] <= 1e-6
    losses = [r["loss"] for name, r in results.items() if r["converged"]]
    assert max(losses) - min(losses) < 1e-9  # the same minimum
    # The same algorithm as optax's: the same number of updates within rounding's drift.
    assert abs(results["gradtx.lbfgs"]["steps"] - results["optax.lbfgs"]["steps"]) <= 10
    assert "| gradtx.lbfgs |" in (tmp_path / "summary.md").read_text()
