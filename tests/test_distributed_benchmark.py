"""benchmarks/distributed.py runs end to end in its smallest configuration.

In a fresh process: the 8 simulated devices must be set before JAX starts its
backend. Not a timed test: it checks what the benchmark writes and that the
sharded state is an eighth, never how fast anything ran.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def test_the_smallest_run_writes_results_and_an_eighth_of_the_state(tmp_path):
    arguments = [
        "--models", "cnn", "--optimizers", "sgd_momentum", "--timing-steps", "1",
        "--compressors", "sign (EF-signSGD)", "--steps", "3", "--seeds", "0",
        "--out", str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    env["PYTHONPATH"] = os.pathsep.join([str(BENCHMARKS.parent), env.get("PYTHONPATH", "")])
    code = f"import distributed; distributed.main({arguments!r})"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=BENCHMARKS,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["devices"] == 8
    case = results["sharded_state"]["digits CNN / sgd_momentum"]
    # Momentum of every leaf but the (10,) output bias split 8 ways: 1/8 + 40 bytes.
    assert case["state_fraction"] == pytest.approx(1 / 8, abs=0.001)
    assert case["sharded_state_bytes"] < case["replicated_state_bytes"] / 7
    assert case["max_param_difference"] < 1e-6  # the sharded step computes the same numbers
    assert case["sharded_step_s"] > 0 and case["replicated_step_s"] > 0

    sign = results["compressed_exchange"]["sign (EF-signSGD)"]
    # One bit an entry and a float32 scale a leaf, against 4 bytes an entry: the conv
    # kernel (288 entries), its bias (32), the dense kernels (131,072, 2,560), their biases.
    sizes = (288, 32, 131_072, 256, 2_560, 10)
    assert sign["dense_bytes"] == 4 * sum(sizes)
    assert sign["bytes_sent"] == sum(-(-n // 8) + 4 for n in sizes) == 16_802
    assert 0 <= sign["runs"][0]["accuracy"] <= 1
    assert {g["met"] for g in results["goals"]} <= {True, False} and results["goals"]

    assert "sign (EF-signSGD)" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "accuracy_vs_bytes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
