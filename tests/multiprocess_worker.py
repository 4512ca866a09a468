"""One process of tests/test_multiprocess.py: examples/multiprocess.py's CNN and step.

Started as process ``--process-id`` of ``--num-processes`` (2 with 4 simulated
CPU devices each, or 1 with 8), it trains the example's digits CNN on one mesh
of the 8 global devices (batch split over "data", Adam's state split by
``gradtx.shard_state``) and writes the final params and state to
``OUT/result.npz`` from process 0 (every process holds the params whole).
``--save-at K`` also saves step K with ``gradtx.checkpoint.Checkpointer`` from
every process; ``--restore`` starts from the latest checkpoint instead. With
``--keep-going`` it then writes ``OUT/stepped-<process>`` and trains on until
stopped: the launcher kills one process and expects the others to fail within
the timeouts set here.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path
import sys

# jax.distributed's defaults wait 100 s for a silent peer and 300 s at shutdown.
HEARTBEAT_TIMEOUT_S = 5
INITIALIZATION_TIMEOUT_S = 60
SHUTDOWN_TIMEOUT_S = 10


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--data", type=Path, required=True, help="npz with x and y")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--checkpoints", type=Path, help="the Checkpointer's directory")
    parser.add_argument("--save-at", type=int)
    parser.add_argument("--restore", action="store_true")
    parser.add_argument("--keep-going", action="store_true", help="train on after --steps")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    import jax
    from jax.experimental import multihost_utils
    import multiprocess as example
    import numpy as np

    import gradtx

    jax.config.update("jax_num_cpu_devices", example.DEVICES // args.num_processes)
    if args.num_processes > 1:
        jax.distributed.initialize(
            coordinator_address=f"localhost:{args.port}",
            num_processes=args.num_processes,
            process_id=args.process_id,
            initialization_timeout=INITIALIZATION_TIMEOUT_S,
            heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S,
            shutdown_timeout_seconds=SHUTDOWN_TIMEOUT_S,
        )
    assert jax.device_count() == example.DEVICES, jax.devices()

    data = np.load(args.data)
    tx = gradtx.adam(1e-2)
    params = example.init_params()
    sharding, batch, step = example.data_parallel(tx, params)
    checkpointer = None
    if args.checkpoints:  # Orbax takes a second to import: only where needed
        from gradtx.checkpoint import Checkpointer

        checkpointer = Checkpointer(args.checkpoints)
    done = 0
    if args.restore:
        done, params, state, _ = checkpointer.restore(tx, params, shardings=sharding)
    params = jax.device_put(params, sharding.params)
    if not args.restore:
        state = sharding.init(params)

    for t in range(done, args.steps):
        params, state = step(params, state, *example.local_batch(data["x"], data["y"], t, batch))
        jax.block_until_ready(params)  # several steps in flight: gloo was seen to hang
        if t + 1 == args.save_at:
            checkpointer.save(t + 1, params, state, tx)
    if checkpointer:
        checkpointer.close()

    whole_state = multihost_utils.process_allgather(state, tiled=True)  # a collective: all call
    if args.process_id == 0:
        trees = {"params": example.host_copy(params), "state": whole_state}
        flat = jax.tree_util.tree_leaves_with_path(trees)
        np.savez(args.out / "result.npz", **{jax.tree_util.keystr(k): v for k, v in flat})
    print(f"process {args.process_id}: {args.steps} steps done", flush=True)

    if args.keep_going:  # until a peer dies: the step's collectives, then JAX, notice
        (args.out / f"stepped-{args.process_id}").touch()
        for t in itertools.count(args.steps):
            params, state = step(
                params, state, *example.local_batch(data["x"], data["y"], t, batch)
            )
            jax.block_until_ready(params)


if __name__ == "__main__":
    main()
