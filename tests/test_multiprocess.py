"""Two processes (jax.distributed on localhost, 4 simulated CPU devices each) as one 8-device run.

tests/multiprocess_worker.py trains examples/multiprocess.py's digits CNN with
Adam's state sharded by ``gradtx.shard_state``. One test runs every launch, in
two rounds of concurrent processes, so pytest-xdist never starts them twice:

1. two processes train 8 steps, saving step 4 from both with
   ``gradtx.checkpoint``; one process with 8 devices trains the same 8 steps;
2. two fresh processes restore step 4, train to step 8, write their result
   and train on until the launcher kills process 1.

A persistent compilation cache shared by the runs lets round 2 skip compiling. The
processes take about 35 s of processor time in all.
"""

import os
from pathlib import Path
import sys
import time

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import datasets  # noqa: E402
import multiprocess as example  # noqa: E402

WORKER = str(Path(__file__).with_name("multiprocess_worker.py"))
STEPS, SAVE_AT = 8, 4
RUN_TIMEOUT_S = 240  # every process of a round, on a loaded 2-core machine
# The worker's heartbeat timeout is 5 s: the survivor must be gone well within this.
FAILURE_TIMEOUT_S = 45

pytestmark = pytest.mark.multiprocess


def wait(workers, timeout, logs):
    """Return codes, killing every worker and failing the test with their logs past ``timeout``."""
    deadline = time.monotonic() + timeout
    codes = []
    for worker in workers:
        try:
            codes.append(worker.wait(timeout=max(deadline - time.monotonic(), 0.1)))
        except Exception:
            for other in workers:
                other.kill()
            pytest.fail(f"processes still running after {timeout} s:\n{read_logs(logs)}")
    return codes


def read_logs(logs):
    return "\n".join(
        f"--- {path.name}\n{path.read_text()[-3000:]}" for path in sorted(logs.glob("*.log"))
    )


def results(out):
    with np.load(out / "result.npz") as saved:
        return dict(saved)


def test_two_processes_train_checkpoint_and_fail_like_one(tmp_path, monkeypatch):
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax-cache"))
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    # Half the compile time of the step on XLA:CPU; every run compiles alike.
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
    digits = datasets.load_digits()
    data = tmp_path / "digits.npz"
    n = STEPS * example.BATCH  # a new batch every step
    np.savez(data, x=digits.x_train[:n], y=digits.y_train[:n])
    checkpoints = tmp_path / "checkpoints"
    runs = {name: tmp_path / name for name in ("two", "one", "restored")}
    for out in runs.values():
        out.mkdir()

    launched = []

    def start(name, processes, *args):
        common = ["--data", str(data), "--out", str(runs[name]), "--steps", str(STEPS)]
        workers = example.launch(WORKER, [*common, *args], processes, logs=runs[name])
        launched.extend(workers)
        return workers

    try:
        start_time = time.monotonic()
        two = start("two", 2, "--checkpoints", str(checkpoints), "--save-at", str(SAVE_AT))
        one = start("one", 1)
        assert wait(two, RUN_TIMEOUT_S, runs["two"]) == [0, 0], read_logs(runs["two"])
        assert wait(one, RUN_TIMEOUT_S, runs["one"]) == [0], read_logs(runs["one"])
        round_1 = time.monotonic() - start_time

        restore = ["--checkpoints", str(checkpoints), "--restore", "--keep-going"]
        restored = start("restored", 2, *restore)
        stepped = [runs["restored"] / f"stepped-{i}" for i in range(2)]
        while not all(path.exists() for path in stepped) and restored[0].poll() is None:
            assert time.monotonic() - start_time < RUN_TIMEOUT_S, read_logs(runs["restored"])
            time.sleep(0.2)
        restored[1].kill()
        killed_at = time.monotonic()
        (code,) = wait(restored[:1], FAILURE_TIMEOUT_S, runs["restored"])
        noticed_after = time.monotonic() - killed_at
        restored[1].wait()
        total = time.monotonic() - start_time
        print(f"round 1 {round_1:.0f} s, both {total:.0f} s; ", end="")
        print(f"the kill noticed after {noticed_after:.1f} s")
    finally:  # a failed assertion leaves no process behind
        for worker in launched:
            worker.kill()
            worker.wait()

    # Two processes of 4 devices compute what one process of 8 does (gloo sums in another order).
    two_result, one_result = results(runs["two"]), results(runs["one"])
    assert two_result.keys() == one_result.keys()
    for path, value in one_result.items():
        np.testing.assert_allclose(two_result[path], value, rtol=1e-6, atol=1e-6, err_msg=path)
    start_params = example.init_params()
    assert np.max(np.abs(two_result["['params']['hidden']"] - start_params["hidden"])) > 1e-2
    assert sorted(os.listdir(checkpoints)) == [str(SAVE_AT)]

    # Restored at step 4 and trained on: the uninterrupted run's numbers, bit for bit.
    restored_result = results(runs["restored"])
    for path, value in two_result.items():
        np.testing.assert_array_equal(restored_result[path], value, err_msg=path)

    # Then process 1 was killed: the survivor stops with JAX's message instead of waiting for it.
    assert code != 0
    log = (runs["restored"] / "process-0.log").read_text()
    assert "another task died" in log, log[-3000:]
