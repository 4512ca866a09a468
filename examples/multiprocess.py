"""Data-parallel training across 2 processes on this machine, optimizer state sharded (ZeRO).

    python examples/multiprocess.py

starts itself twice, each process with 4 simulated CPU devices; ``jax.distributed``
joins them into one mesh of 8 devices. Each process reads only its half of every
batch, the params are replicated, ``gradtx.shard_state`` splits Adam's moments over
the 8 devices, and JAX runs the collectives (gloo on CPU). On a cluster, run the
same ``train`` once per host with the coordinator's address instead of localhost.
The model is a narrow version of examples/compare_optimizers.py's digits CNN
(conv 3x3 relu, max-pool 2x2, dense relu, dense softmax), small enough to compile fast.
"""

from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, NamedSharding, PartitionSpec
import numpy as np

import gradtx

DEVICES = 8
BATCH = 64  # global: 8 images per device
CHANNELS, HIDDEN = 8, 32


def init_params(seed: int = 0) -> dict:
    """Glorot-uniform weights and zero biases, from NumPy: the same on every process."""
    rng = np.random.default_rng(seed)

    def glorot(shape, fan_in, fan_out):
        limit = np.sqrt(6 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, shape).astype(np.float32)

    flat = 4 * 4 * CHANNELS
    return {
        "conv": glorot((3, 3, 1, CHANNELS), 9, 9 * CHANNELS),
        "conv_bias": np.zeros(CHANNELS, np.float32),
        "hidden": glorot((flat, HIDDEN), flat, HIDDEN),
        "hidden_bias": np.zeros(HIDDEN, np.float32),
        "out": glorot((HIDDEN, 10), HIDDEN, 10),
        "out_bias": np.zeros(10, np.float32),
    }


def logits(params: dict, x: jax.Array) -> jax.Array:
    """8x8x1 images -> 10 logits."""
    x = jax.lax.conv_general_dilated(
        x, params["conv"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    x = jax.nn.relu(x + params["conv_bias"])
    n, height, width, channels = x.shape
    x = x.reshape(n, height // 2, 2, width // 2, 2, channels).max(axis=(2, 4))
    x = jax.nn.relu(x.reshape(n, -1) @ params["hidden"] + params["hidden_bias"])
    return x @ params["out"] + params["out_bias"]


def loss(params: dict, x: jax.Array, y: jax.Array) -> jax.Array:
    log_p = jax.nn.log_softmax(logits(params, x))
    return -jnp.mean(jnp.take_along_axis(log_p, y[:, None], axis=1))


def data_parallel(tx, params: dict):
    """The 8-device mesh, ``shard_state``'s shardings and the jitted training step."""
    mesh = jax.make_mesh((DEVICES,), ("data",), axis_types=(AxisType.Auto,))
    sharding = gradtx.shard_state(tx, params, mesh, axis="data")
    batch = NamedSharding(mesh, PartitionSpec("data"))

    @functools.partial(
        jax.jit,
        in_shardings=(sharding.params, sharding.state, batch, batch),
        out_shardings=(sharding.params, sharding.state),
        donate_argnums=(0, 1),
    )
    def step(params, state, x, y):
        grads = sharding.shard_updates(jax.grad(loss)(params, x, y))
        updates, state = tx.update(grads, state, params)
        return gradtx.apply_updates(params, updates), state

    return sharding, batch, step


def local_batch(x: np.ndarray, y: np.ndarray, t: int, batch: NamedSharding):
    """Step ``t``'s global batch, of which this process reads only its own rows."""
    rows = np.arange(t * BATCH, (t + 1) * BATCH) % len(x)
    mine = np.array_split(rows, jax.process_count())[jax.process_index()]
    return (
        jax.make_array_from_process_local_data(batch, x[mine]),
        jax.make_array_from_process_local_data(batch, y[mine]),
    )


def host_copy(tree):
    """A replicated global tree as NumPy: each process's first shard is the whole array."""
    return jax.tree.map(lambda leaf: np.asarray(leaf.addressable_data(0)), tree)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def launch(script: str, args: list[str], processes: int = 2, logs: Path | None = None) -> list:
    """Starts ``script`` once per process with ``--process-id``, ``--num-processes``, ``--port``.

    With ``logs``, process i writes its output to ``logs/process-i.log``.
    """
    env = {**os.environ}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1]), env.get("PYTHONPATH", "")])
    port = str(free_port())
    workers = []
    for i in range(processes):
        command = [sys.executable, script, *args, "--process-id", str(i)]
        command += ["--num-processes", str(processes), "--port", port]
        output = (logs / f"process-{i}.log").open("w") if logs else None
        workers.append(subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT))
        if output:
            output.close()  # the child holds its own copy
    return workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--process-id", type=int, help="set by the launcher")
    parser.add_argument("--num-processes", type=int, default=2)
    parser.add_argument("--port", type=int)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    if args.process_id is None:  # the launcher
        workers = launch(__file__, ["--steps", str(args.steps)])
        try:
            sys.exit(max(worker.wait(timeout=600) for worker in workers))
        finally:  # a process that fails takes the other down within its heartbeat timeout
            for worker in workers:
                worker.kill()

    jax.config.update("jax_num_cpu_devices", DEVICES // args.num_processes)
    jax.distributed.initialize(
        f"localhost:{args.port}",
        args.num_processes,
        args.process_id,
        initialization_timeout=60,
        heartbeat_timeout_seconds=10,  # a dead peer is an error after 10 s, not 100
    )
    sys.path.insert(0, str(Path(__file__).parent))
    from datasets import load_digits

    data = load_digits()
    tx = gradtx.adam(1e-2)
    params = init_params()
    sharding, batch, step = data_parallel(tx, params)
    params = jax.device_put(params, sharding.params)
    state = sharding.init(params)
    for t in range(args.steps):
        params, state = step(params, state, *local_batch(data.x_train, data.y_train, t, batch))
        # Wait for each step: with several steps in flight, the 2 processes' CPU collectives
        # (gloo) were seen to hang (jax 0.10.2).
        jax.block_until_ready(params)
    if jax.process_index() == 0:
        print(sharding.report())
        x_val, y_val = data.x_val, data.y_val
        accuracy = np.mean(np.argmax(logits(host_copy(params), x_val), axis=1) == y_val)
        print(
            f"{jax.process_count()} processes, {jax.device_count()} devices: validation "
            f"accuracy {accuracy:.3f} after {args.steps} steps of batch {BATCH}"
        )


if __name__ == "__main__":
    main()
