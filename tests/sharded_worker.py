"""Run by test_multi_tensor.py in a fresh process with 8 simulated CPU devices.

Shards the params over a mesh, trains with and without the fast path, and
prints one JSON line: whether states follow the params' shardings and how far
the two paths' numbers are apart.
"""

import json
import os

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402
import numpy as np  # noqa: E402

import gradtx  # noqa: E402


def main():
    mesh = jax.make_mesh((8,), ("data",))
    rows = NamedSharding(mesh, PartitionSpec("data", None))
    replicated = NamedSharding(mesh, PartitionSpec())
    rng = np.random.default_rng(0)
    params = {
        "kernel": jax.device_put(jnp.asarray(rng.normal(size=(64, 16)), jnp.float32), rows),
        "bias": jax.device_put(jnp.asarray(rng.normal(size=(16,)), jnp.float32), replicated),
        "scale": jax.device_put(jnp.ones((16,), jnp.float32), replicated),
    }
    loss = lambda p: jnp.sum((p["kernel"] * p["scale"] + p["bias"]) ** 2)  # noqa: E731
    inner = gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adamw(1e-2))
    results = {}
    finals = {}
    for name, tx in (("per_leaf", inner), ("multi_tensor", gradtx.multi_tensor(inner))):
        state = tx.init(params)

        @jax.jit
        def step(params, state, tx=tx):
            updates, state = tx.update(jax.grad(loss)(params), state, params)
            return gradtx.apply_updates(params, updates), state

        p = params
        for _ in range(20):
            p, state = step(p, state)
        finals[name] = p
        mu = gradtx.tree_get(state, "mu")
        kernel_mu = (
            mu["kernel"]
            if "kernel" in mu
            else next(v for k, v in mu.items() if v.shape == (64, 16))
        )
        results[name] = {
            "kernel_state_sharded_like_params": kernel_mu.sharding.is_equivalent_to(rows, 2),
            "params_keep_sharding": p["kernel"].sharding.is_equivalent_to(rows, 2),
        }
    results["max_difference"] = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(
            jax.tree.leaves(finals["per_leaf"]), jax.tree.leaves(finals["multi_tensor"])
        )
    )
    results["devices"] = jax.device_count()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
