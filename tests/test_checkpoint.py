"""gradtx.checkpoint: round trips, kill and resume, refusing a differently built optimizer."""

from __future__ import annotations

import json
import os
import pickle
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import checkpoint_kill_worker as kill_worker
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec, SingleDeviceSharding
import numpy as np
import pytest

import gradtx
from gradtx.checkpoint import Checkpointer

WORKER = os.path.join(os.path.dirname(__file__), "checkpoint_worker.py")
KILL_WORKER = os.path.join(os.path.dirname(__file__), "checkpoint_kill_worker.py")
SHARDED_WORKER = os.path.join(os.path.dirname(__file__), "checkpoint_sharded_worker.py")


def _params():
    return {
        "w": jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float32).reshape(2, 3),
        "b": jnp.array([0.5, -0.25], jnp.bfloat16),
    }


def _grads(step):
    return {
        "w": jnp.cos(jnp.arange(6.0) + step).reshape(2, 3),
        "b": jnp.sin(jnp.arange(2.0) + step).astype(jnp.bfloat16),
    }


def _train(tx, params, steps=3):
    state = tx.init(params)
    for step in range(steps):
        updates, state = tx.update(_grads(step), state, params)
        params = gradtx.apply_updates(params, updates)
    return params, state


def assert_bitwise_equal(actual, expected):
    """Same tree structure, and every leaf has the same dtype, shape and bits."""
    actual_leaves, actual_tree = jax.tree.flatten(actual)
    expected_leaves, expected_tree = jax.tree.flatten(expected)
    assert actual_tree == expected_tree
    for a, e in zip(actual_leaves, expected_leaves):
        assert (a.dtype, a.shape) == (e.dtype, e.shape)
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):  # same implementation, same key data
            a, e = jax.random.key_data(a), jax.random.key_data(e)
        assert np.array_equal(np.asarray(a), np.asarray(e)), (a, e)


OPTIMIZERS = {
    "adam_bf16_mu": lambda: gradtx.adam(1e-2, mu_dtype=jnp.bfloat16),
    "sgd_momentum": lambda: gradtx.sgd(0.1, momentum=0.9, nesterov=True),
    "noisy_sgd": lambda: gradtx.noisy_sgd(0.1, key=jax.random.key(7)),
    "clip_adamw_schedule": lambda: gradtx.chain(
        gradtx.clip_by_global_norm(1.0),
        gradtx.adamw(gradtx.warmup_cosine_decay_schedule(0.0, 1e-2, 2, 10), weight_decay=1e-3),
    ),
    "multi_tensor": lambda: gradtx.multi_tensor(gradtx.adam(1e-2), bucket_limit=4),
}


@pytest.mark.parametrize("make_tx", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_round_trip_is_bitwise(tmp_path, make_tx):
    params, state = _train(make_tx(), _params())
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(3, params, state, make_tx(), extra={"epoch": 1})
    fresh = make_tx()
    with Checkpointer(tmp_path) as ckpt:
        restored = ckpt.restore(fresh, _params())
        # Abstract params suffice: nothing needs to be allocated before restoring.
        abstract = ckpt.restore(fresh, jax.eval_shape(_params))
    assert restored.step == 3 and restored.extra == {"epoch": 1}
    assert_bitwise_equal((restored.params), (params))
    assert_bitwise_equal((restored.opt_state), (state))
    assert_bitwise_equal((abstract.opt_state), (state))
    # The restored state trains on exactly as the original would have.
    updates, _ = fresh.update(_grads(3), restored.opt_state, restored.params)
    expected, _ = fresh.update(_grads(3), state, params)
    assert_bitwise_equal((updates), (expected))


def test_keeps_the_newest_steps_and_finds_the_latest(tmp_path):
    tx = gradtx.adam(1e-2)
    params = _params()
    with Checkpointer(tmp_path, max_to_keep=2) as ckpt:
        assert ckpt.latest_step() is None
        state = tx.init(params)
        for step in range(1, 5):
            updates, state = tx.update(_grads(step), state, params)
            params = gradtx.apply_updates(params, updates)
            ckpt.save(step, params, state, tx, extra=step)
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.all_steps() == [3, 4]
        assert ckpt.latest_step() == 4
        assert ckpt.restore(tx, params).extra == 4
        assert ckpt.restore(tx, params, step=3).extra == 3
        with pytest.raises(
            FileNotFoundError, match=r"no checkpoint for step 1 .*steps there: \[3, 4\]"
        ):
            ckpt.restore(tx, params, step=1)


def _moving(trained):
    params, (adam_state, _) = trained
    return params, adam_state


def test_restore_of_an_earlier_step_returns_that_steps_arrays(tmp_path):
    tx = gradtx.adam(1e-2, mu_dtype=jnp.bfloat16)
    earlier, later = _train(tx, _params(), steps=3), _train(tx, _params(), steps=4)
    # The params and Adam's count and moments differ: returning step 4's arrays fails below.
    for a, b in zip(jax.tree.leaves(_moving(earlier)), jax.tree.leaves(_moving(later))):
        assert not np.array_equal(np.asarray(a), np.asarray(b))
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(3, *earlier, tx, extra={"epoch": 0})
        ckpt.save(4, *later, tx, extra={"epoch": 1})
    with Checkpointer(tmp_path) as ckpt:
        restored = ckpt.restore(tx, _params(), step=3)
        assert (restored.step, restored.extra) == (3, {"epoch": 0})
        assert_bitwise_equal((restored.params, restored.opt_state), earlier)
        restored = ckpt.restore(tx, _params())
        assert (restored.step, restored.extra) == (4, {"epoch": 1})
        assert_bitwise_equal((restored.params, restored.opt_state), later)


def _save_steps(directory, tx, steps):
    """Saves ``_train(tx, _params(), step)`` at each step; returns them by step."""
    saved = {step: _train(tx, _params(), steps=step) for step in steps}
    with Checkpointer(directory, max_to_keep=None) as ckpt:
        for step, (params, state) in saved.items():
            ckpt.save(step, params, state, tx, extra=step)
    return saved


def _assert_restores(ckpt, tx, step, saved):
    restored = ckpt.restore(tx, _params(), step=step)
    assert (restored.step, restored.extra) == (step, step)
    assert_bitwise_equal((restored.params, restored.opt_state), saved[step])


def test_saving_at_or_below_the_latest_step_raises(tmp_path):
    tx = gradtx.sgd(0.1, momentum=0.9)
    saved = _save_steps(tmp_path, tx, [1, 2, 3])
    # A new run in an old directory, or a rewound one, must not lose its saves silently.
    with Checkpointer(tmp_path) as ckpt:
        for step, later in [(3, [3]), (1, [1, 2, 3])]:
            message = (
                f"save(step={step}): {tmp_path} already holds step 3, and steps must increase. "
                f"To go back (after restoring an earlier step, or in a new run), pass "
                f"overwrite=True: it deletes steps {later} and saves step {step}"
            )
            with pytest.raises(ValueError, match=re.escape(message)):
                ckpt.save(step, *saved[2], tx, extra=step)
        assert ckpt.all_steps() == [1, 2, 3]
        for step in (1, 2, 3):  # nothing was overwritten
            _assert_restores(ckpt, tx, step, saved)


def test_overwrite_deletes_the_later_steps(tmp_path):
    tx = gradtx.sgd(0.1, momentum=0.9)
    saved = _save_steps(tmp_path, tx, [1, 2, 3, 4])
    with Checkpointer(tmp_path, max_to_keep=None) as ckpt:
        ckpt.restore(tx, _params(), step=2)  # rewind to step 2 and train on differently
        saved[3] = _train(tx, _params(), steps=5)
        ckpt.save(3, *saved[3], tx, extra=3, overwrite=True)
        assert ckpt.all_steps() == [1, 2, 3]
        saved[6] = _train(tx, _params(), steps=6)
        ckpt.save(6, *saved[6], tx, extra=6, overwrite=True)  # nothing later to delete
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.all_steps() == [1, 2, 3, 6]
        for step in (1, 2, 3, 6):
            _assert_restores(ckpt, tx, step, saved)
    assert sorted(os.listdir(tmp_path)) == ["1", "2", "3", "6"]


def test_a_save_orbax_declines_raises(tmp_path, monkeypatch):
    params, tx = _params(), gradtx.sgd(0.1)
    with Checkpointer(tmp_path) as ckpt:
        monkeypatch.setattr(ckpt._manager, "save", lambda *args, **kwargs: False)
        with pytest.raises(RuntimeError, match=r"save\(step=5\): Orbax.* declined to save it"):
            ckpt.save(5, params, tx.init(params), tx)


def _remove_contents(path):
    for entry in path.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


# What a process killed while deleting a step can leave (the files go in any order).
LEFTOVERS = {
    "empty": _remove_contents,
    "no_train_state": lambda path: shutil.rmtree(path / "train_state"),
    "no_gradtx": lambda path: shutil.rmtree(path / "gradtx"),
    "no_commit_marker": lambda path: (path / "commit_success.txt").unlink(),
}


@pytest.mark.parametrize("leftover", LEFTOVERS.values(), ids=LEFTOVERS.keys())
def test_a_partly_deleted_step_is_removed_not_listed(tmp_path, leftover):
    tx = gradtx.sgd(0.1, momentum=0.9)
    saved = _save_steps(tmp_path, tx, [1, 2, 3])
    leftover(tmp_path / "3")  # the newest: a killed save(..., overwrite=True)
    with Checkpointer(tmp_path) as ckpt:
        assert ckpt.all_steps() == [1, 2]
        assert ckpt.latest_step() == 2
        assert ckpt.restore(tx, _params()).step == 2
        _assert_restores(ckpt, tx, 2, saved)
        ckpt.save(3, *saved[3], tx, extra=3)  # the leftover does not block its step
        _assert_restores(ckpt, tx, 3, saved)
    assert sorted(os.listdir(tmp_path)) == ["1", "2", "3"]


def test_restore_from_an_empty_directory_fails(tmp_path):
    with Checkpointer(tmp_path) as ckpt, pytest.raises(FileNotFoundError, match="no checkpoint"):
        ckpt.restore(gradtx.adam(1e-3), _params())


def _saved(tmp_path, tx, params=None):
    params = _params() if params is None else params
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(10, params, tx.init(params), tx)
    return Checkpointer(tmp_path)


MISMATCHES = {
    # name: (saved optimizer, given optimizer, given params, the message's pattern)
    "adam_into_sgd": (
        gradtx.adam(1e-3),
        gradtx.sgd(1e-3),
        None,
        r"(?s)differently built optimizer: at tx\.transforms\[0\]: ScaleByAdam in the checkpoint, "
        r"Identity in the given optimizer\.\nsaved optimizer: adam\(.*given optimizer: sgd\(",
    ),
    "nesterov": (
        gradtx.sgd(0.1, momentum=0.9, nesterov=True),
        gradtx.sgd(0.1, momentum=0.9, nesterov=False),
        None,
        r"at tx\.transforms\[0\]\.nesterov: True in the checkpoint, False in the given optimizer",
    ),
    "mu_dtype": (
        gradtx.adam(1e-3, mu_dtype=jnp.bfloat16),
        gradtx.adam(1e-3, mu_dtype=jnp.float32),
        None,
        r"at tx\.transforms\[0\]\.mu_dtype: bfloat16 in the checkpoint, float32 in the given",
    ),
    "param_shape": (
        gradtx.adam(1e-3),
        gradtx.adam(1e-3),
        {"w": jnp.zeros((2, 4)), "b": jnp.zeros(2, jnp.bfloat16)},
        r"does not fit the given params: at params\['w'\]: float32\[2, 3\] in the checkpoint, "
        r"float32\[2, 4\] in the given params\.\nthe checkpoint: \{\['b'\]: bfloat16\[2\], "
        r"\['w'\]: float32\[2, 3\]\}\nthe given params: \{\['b'\]: bfloat16\[2\], \['w'\]: ",
    ),
    "param_dtype": (
        gradtx.adam(1e-3),
        gradtx.adam(1e-3),
        {"w": jnp.zeros((2, 3)), "b": jnp.zeros(2, jnp.float32)},
        r"at params\['b'\]: bfloat16\[2\] in the checkpoint, float32\[2\] in the given params",
    ),
    "param_tree": (
        gradtx.adam(1e-3),
        gradtx.adam(1e-3),
        {"w": jnp.zeros((2, 3)), "c": jnp.zeros(2, jnp.bfloat16)},
        r"at params\['b'\]: bfloat16\[2\] in the checkpoint, nothing in the given params",
    ),
    "another_chain": (
        gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adam(1e-3)),
        gradtx.adam(1e-3),
        None,
        r"at tx\.transforms\[0\]: ClipByGlobalNorm in the checkpoint, ScaleByAdam in the given",
    ),
}


@pytest.mark.parametrize("case", MISMATCHES.values(), ids=MISMATCHES.keys())
def test_restoring_into_a_differently_built_optimizer_fails(tmp_path, case):
    saved_tx, given_tx, given_params, pattern = case
    with _saved(tmp_path, saved_tx) as ckpt, pytest.raises(ValueError, match=pattern) as error:
        ckpt.restore(given_tx, _params() if given_params is None else given_params)
    assert str(error.value).startswith(f"gradtx.checkpoint: step 10 in {tmp_path} ")


@pytest.mark.parametrize(
    "given",
    [
        gradtx.adam(3e-4, b1=0.5, b2=0.99, eps=1e-6, mu_dtype="bfloat16"),
        gradtx.adam(gradtx.cosine_decay_schedule(1e-3, 100), mu_dtype=jnp.bfloat16),
    ],
    ids=["numbers", "schedule"],
)
def test_new_hyperparameters_restore(tmp_path, given):
    saved_tx = gradtx.adam(1e-3, mu_dtype=jnp.bfloat16)
    params, state = _train(saved_tx, _params())
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(3, params, state, saved_tx)
        restored = ckpt.restore(given, _params())
    assert_bitwise_equal((restored.opt_state), (state))


def test_save_checks_its_arguments(tmp_path):
    params, tx = _params(), gradtx.sgd(0.1)
    with Checkpointer(tmp_path) as ckpt:
        with pytest.raises(ValueError, match=r"opt_state was not made by tx\.init\(params\)"):
            ckpt.save(1, params, tx.init(params), gradtx.adam(1e-3))
        with pytest.raises(ValueError, match="extra must be JSON"):
            ckpt.save(1, params, tx.init(params), tx, extra=object())
        for step in (-1, 1.5, "1"):
            with pytest.raises(ValueError, match=r"save\(step=.*\): step must be an int >= 0"):
                ckpt.save(step, params, tx.init(params), tx)
        assert ckpt.all_steps() == []
        ckpt.save(jnp.int32(7), params, tx.init(params), tx)  # a TrainState's step is an array
        assert ckpt.restore(tx, params).step == 7


def test_import_gradtx_does_not_need_orbax():
    code = "import sys, gradtx, gradtx.checkpoint; assert 'orbax' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- sharded checkpoints: restore(shardings=...) -----------------------------------


# session scope: xdist may run another module's tests between this group's, which would tear
# a module fixture down and start its subprocesses again (seen in CI: twice per worker)
@pytest.fixture(scope="session")
def sharded(tmp_path_factory):
    """checkpoint_sharded_worker.py's results: saved and restored by 8 devices, then by 4."""
    directory = tmp_path_factory.mktemp("sharded")
    results = {}
    for command, devices in (("save", 8), ("restore", 4)):
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "DEVICES": str(devices)}
        out = subprocess.run(
            [sys.executable, SHARDED_WORKER, command, str(directory)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        results[command] = json.loads(out.stdout.strip().splitlines()[-1])
        assert results[command]["devices"] == devices
    # Adam's moments of the two params 8 divides were saved split over 8 devices.
    assert results["save"]["saved_sharded_leaves"] == 4
    return results


SHARDED_CASES = {
    # name: (process, case, restored leaves split over devices)
    "same_shardings": ("save", "state_sharding", 4),
    "params_prefix_and_state_tree": ("save", "pair", 4),
    "one_sharding_for_all": ("save", "one_sharding", 0),
    "no_shardings": ("save", "default_device", 0),
    "no_shardings_default_device_set": ("save", "default_device_set", 0),
    "four_of_the_eight_devices": ("save", "four_devices", 4),
    # A process with 4 devices: alone, Orbax reuses the saved shardings and raises
    # "Topology mismatch".
    "other_topology_state_sharding": ("restore", "state_sharding", 4),
    "other_topology_pair": ("restore", "pair", 4),
    "other_topology_one_sharding": ("restore", "one_sharding", 0),
    "other_topology_no_shardings": ("restore", "default_device", 0),
}


@pytest.mark.xdist_group("checkpoint_sharded")  # one worker runs the fixture's processes
@pytest.mark.parametrize("case", SHARDED_CASES.values(), ids=SHARDED_CASES.keys())
def test_a_sharded_checkpoint_restores_bit_for_bit_where_shardings_say(sharded, case):
    process, name, split = case
    result = sharded[process][name]
    assert "error" not in result, result["error"]
    # Every leaf has the saved bits and dtype, and the restored sharding asked for.
    assert result == {"step": 2, "equal": True, "placed": True, "sharded_leaves": split}


def test_shardings_that_do_not_fit_are_refused_naming_the_path(tmp_path):
    tx = gradtx.adam(1e-3)
    one = SingleDeviceSharding(jax.devices()[0])
    split = NamedSharding(jax.make_mesh((1,), ("data",)), PartitionSpec("data"))
    state = jax.tree.map(lambda _: one, jax.eval_shape(tx.init, _params()))
    where = re.escape("gradtx.checkpoint.restore(shardings=...): at ")
    cases = [
        (
            ({"w": one, "c": one}, one),
            ValueError,
            where + r"params: the shardings have PyTreeDef\(\{'c': \*, 'w': \*\}\), params "
            r"has PyTreeDef\(\{'b': \*, 'w': \*\}\); the shardings must be a tree like "
            r"params or a prefix of it",
        ),
        (
            (one, (state[0]._replace(mu={"w": one}), state[1])),
            ValueError,
            where + r"opt_state\[0\]\.mu: the shardings have PyTreeDef\(\{'w': \*\}\), "
            r"opt_state has PyTreeDef\(\{'b': \*, 'w': \*\}\)",
        ),
        (
            (one, state[0]),  # the state of adam's first transform only
            ValueError,
            where + r"opt_state: the shardings have PyTreeDef\(CustomNode\(namedtuple\["
            r"ScaleByAdamState\].*opt_state has PyTreeDef\(\(",
        ),
        (
            (one, gradtx.shard_state(tx, {"w": _params()["w"]}, split.mesh).state),
            ValueError,
            where + r"opt_state\[0\]\.mu: the shardings have PyTreeDef\(\{'w': \*\}\)",
        ),
        (
            ({"w": PartitionSpec("data"), "b": one}, one),
            TypeError,
            where + r"params\['w'\]: P\('data',\) is not a jax\.sharding\."
            r"Sharding \(a PartitionSpec needs its mesh: NamedSharding\(mesh, spec\)\)",
        ),
        (
            split,  # fits every param, not Adam's scalar count
            ValueError,
            where + r"opt_state\[0\]\.count: int32\[\]: Sharding .* is only valid for values "
            r"of rank at least 1",
        ),
        (
            {"params": one, "opt_state": one},
            TypeError,
            re.escape("gradtx.checkpoint.restore(shardings=dict(...)): ")
            + r"expected None, a jax\.sharding\.Sharding, a gradtx\.StateSharding or a pair "
            r"\(params_shardings, opt_state_shardings\)",
        ),
    ]
    with _saved(tmp_path, tx) as ckpt:
        for shardings, error, pattern in cases:
            with pytest.raises(error, match=pattern):
                ckpt.restore(tx, _params(), shardings=shardings)
        # The same trees fit: each part's full tree, or a prefix.
        restored = ckpt.restore(tx, _params(), shardings=({"w": one, "b": one}, state))
    assert_bitwise_equal((restored.params, restored.opt_state), (_params(), tx.init(_params())))
    assert all(leaf.sharding == one for leaf in jax.tree.leaves(restored[1:3]))


# -- kill and resume -------------------------------------------------------------

TOTAL, EVERY, KILL_AT = 40, 5, 15


class Worker:
    """A Python script in a subprocess, its stdout read line by line."""

    def __init__(self, *args):
        env = {
            **os.environ,
            "JAX_PLATFORMS": "cpu",
            # One thread per matmul: Eigen's multithreaded contractions may split
            # sums differently from run to run, and the runs must agree to the bit.
            "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false",
        }
        self.process = subprocess.Popen(
            [sys.executable, *map(str, args)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(
            target=self._pump, args=(self.process.stdout, self.lines.put), daemon=True
        ).start()
        threading.Thread(
            target=self._pump, args=(self.process.stderr, self.stderr.append), daemon=True
        ).start()

    @staticmethod
    def _pump(stream, sink):
        with stream:
            for line in stream:
                sink(line.strip())
        sink(None)

    def read_until(self, line, timeout):
        """Every line up to and including ``line``; fails at the end of output or the timeout."""
        seen, deadline = [], time.monotonic() + timeout
        while True:
            try:
                got = self.lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                pytest.fail(f"no {line!r} within {timeout} s; got {seen}")
            if got is None:
                pytest.fail(f"exited before {line!r}; got {seen}\n" + self.errors())
            seen.append(got)
            if got == line:
                return seen

    def finish(self, timeout):
        """All remaining stdout lines, once the process has exited successfully."""
        self.process.wait(timeout)
        lines = self._rest(timeout)
        assert self.process.returncode == 0, self.errors()
        return lines

    def sigkill(self):
        """Kills it with SIGKILL; the stdout lines it wrote that were not read yet."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        assert self.process.returncode == -signal.SIGKILL, self.errors()
        return self._rest(30)

    def _rest(self, timeout):
        lines = []
        while (line := self.lines.get(timeout=timeout)) is not None:
            lines.append(line)
        return lines

    def errors(self):
        return "\n".join(line for line in self.stderr[-30:] if line)

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)


@pytest.fixture
def workers():
    """Starts workers; kills those still running when the test ends."""
    started = []

    def start(*args):
        started.append(Worker(*args))
        return started[-1]

    yield start
    for worker in started:
        worker.kill()


def _poll(condition, timeout):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still false after {timeout} s: {condition}")
        time.sleep(0.001)


def test_killed_run_resumes_bit_for_bit(tmp_path, workers):
    directory = tmp_path / "killed"
    whole = workers(WORKER, tmp_path / "whole", TOTAL, EVERY, tmp_path / "whole.pkl")
    killed = workers(WORKER, directory, TOTAL, EVERY, tmp_path / "killed.pkl")

    # SIGKILL it while it writes a checkpoint: once the unfinished entry is on disk.
    seen = killed.read_until(f"saving {KILL_AT}", timeout=120)
    assert f"saved {KILL_AT - EVERY}" in seen
    _poll(lambda: any(not name.isdigit() for name in os.listdir(directory)), timeout=30)
    os.kill(killed.process.pid, signal.SIGKILL)
    killed.process.wait(30)
    assert killed.process.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed.pkl").exists(), "the run finished before it was killed"
    # Orbax renames a checkpoint to its step once complete; the one being written
    # (usually KILL_AT's) is left under a temporary name for the resumed run to ignore.
    latest = max(int(name) for name in os.listdir(directory) if name.isdigit())
    assert KILL_AT - EVERY <= latest < TOTAL

    resumed = workers(WORKER, directory, TOTAL, EVERY, tmp_path / "killed.pkl")
    lines = resumed.finish(timeout=120)
    assert lines[0] == f"start {latest + 1}"  # it continued, not started over
    assert lines[-1] == f"saved {TOTAL}"
    assert sorted(os.listdir(directory), key=int) == [str(TOTAL - EVERY), str(TOTAL)]
    assert whole.finish(timeout=120)[0] == "start 1"

    with open(tmp_path / "whole.pkl", "rb") as file:
        expected = pickle.load(file)
    with open(tmp_path / "killed.pkl", "rb") as file:
        actual = pickle.load(file)
    assert_bitwise_equal(actual, expected)


def _assert_only_complete_checkpoints(directory, progress):
    """Every listed step restores bit for bit; the newest is at least ``progress``; no debris."""
    like = kill_worker.state_at(0)[0]
    with Checkpointer(directory) as ckpt:
        steps = ckpt.all_steps()
        assert steps and steps[-1] >= progress, (steps, progress)
        for step in steps:
            restored = ckpt.restore(kill_worker.TX, like, step=step)
            params, opt_state, extra = kill_worker.state_at(step)
            assert (restored.step, restored.extra) == (step, extra)
            assert_bitwise_equal((restored.params, restored.opt_state), (params, opt_state))
    # Opening the directory removed temporary and half-deleted directories.
    assert sorted(os.listdir(directory)) == sorted(str(step) for step in steps)
    return steps


def test_killed_while_deleting_an_old_step(tmp_path, workers):
    directory = tmp_path / "run"
    worker = workers(KILL_WORKER, directory, "--stall-in-delete")
    # Saving step 3 deletes step 1; the worker stops halfway through that delete.
    seen = worker.read_until("deleting", timeout=120)
    assert seen[-2:] == ["saved 2", "deleting"], seen
    assert worker.sigkill() == []
    assert _assert_only_complete_checkpoints(directory, progress=3) == [2, 3]


def test_randomly_killed_saves_leave_only_complete_checkpoints(tmp_path, workers):
    """SIGKILL at random moments of a run that saves and deletes at every step, then resume."""
    seed = random.getrandbits(32)
    rng, directory, progress = random.Random(seed), tmp_path / "run", 0
    for _ in range(3):
        worker = workers(KILL_WORKER, directory)
        seen = worker.read_until(f"saved {progress + 1}", timeout=120)
        assert seen[0] == f"start {progress + 1}", seed  # resumed after the newest complete step
        time.sleep(rng.uniform(0.0, 0.5))  # a few saves: writing, renaming, deleting
        seen += worker.sigkill()
        progress = max(int(line.split()[1]) for line in seen if line.startswith("saved"))
        progress = _assert_only_complete_checkpoints(directory, progress)[-1]
