"""Run by test_compression.py in a fresh process with 8 simulated CPU devices.

Runs each compressor inside ``jax.shard_map`` over a data axis of 8 workers for
two steps, each worker with its own gradients, and prints one JSON line: the
gradients, the update at each step (the average, the same on every worker), and
every worker's residual and bytes_sent after the last step. The test compares
them with NumPy oracles averaged over the 8 workers.
"""

import json
import os

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402
import numpy as np  # noqa: E402

import gradtx  # noqa: E402

WORKERS, STEPS = 8, 2
SHAPES = {"w": (6, 5), "b": (5,), "k": (4, 3, 2)}
COMPRESSORS = {
    "threshold": gradtx.threshold_compression(0.3, axis_name="data"),
    "top_k": gradtx.top_k_compression(0.2, axis_name="data"),
    "sign": gradtx.sign_compression(axis_name="data"),
    "powersgd": gradtx.powersgd(2, axis_name="data", key=3, min_compression_rate=1.0),
}


def main():
    mesh = jax.make_mesh((WORKERS,), ("data",))
    rng = np.random.default_rng(0)
    grads = [
        {
            name: rng.normal(size=(WORKERS, *shape)).astype(np.float32)
            for name, shape in SHAPES.items()
        }
        for _ in range(STEPS)
    ]
    params = {name: jnp.zeros(shape, jnp.float32) for name, shape in SHAPES.items()}
    results = {"devices": jax.device_count(), "grads": jax.tree.map(np.ndarray.tolist, grads)}
    per_worker = PartitionSpec("data")
    shard = lambda tree: jax.device_put(tree, NamedSharding(mesh, per_worker))  # noqa: E731
    for name, tx in COMPRESSORS.items():

        def local(g, state, tx=tx):
            # Each worker sees its slice of the stacked arrays: a leading axis of 1.
            g, state = jax.tree.map(lambda x: x[0], (g, state))
            update, state = tx.update(g, state)  # the same on every worker: out_specs P()
            return update, jax.tree.map(lambda x: x[None], state)

        step = jax.jit(
            jax.shard_map(
                local,
                mesh=mesh,
                in_specs=(per_worker, per_worker),
                out_specs=(PartitionSpec(), per_worker),
            )
        )
        state = shard(jax.tree.map(lambda x: jnp.stack([x] * WORKERS), tx.init(params)))
        updates = []
        for g in grads:
            update, state = step(shard(g), state)
            updates.append(jax.tree.map(lambda x: np.asarray(x).tolist(), update))
        results[name] = {
            "updates": updates,
            "residual": jax.tree.map(lambda x: np.asarray(x).tolist(), state.residual),
            "bytes_sent": np.asarray(state.bytes_sent).tolist(),
            "dense_bytes": np.asarray(state.dense_bytes).tolist(),
        }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
