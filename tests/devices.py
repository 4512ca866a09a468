"""A script run on simulated CPU devices: XLA fixes the device count when a process starts."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).parents[1]


def run_on_cpu_devices(script: str, devices: int = 2) -> list[str]:
    """Runs ``script`` in a fresh process with ``devices`` CPU devices; the lines it prints.

    The process inherits the environment (MUTANT_UNDER_TEST too, so a mutant under
    tools/mutation.py --check runs there) and imports gradtx from this checkout.
    """
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()
