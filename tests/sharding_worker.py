"""Run by test_sharding.py in a fresh process with 8 simulated CPU devices.

Trains each optimizer for a few steps with its state sharded by
``gradtx.shard_state`` (params replicated, batch split over "data") and on one
device, and prints one JSON line: per-device state bytes against the
replicated state's, the state's specs after the steps, how far the params are
from the one-device run's, and the collectives in the compiled step.
"""

import functools
import json
import os
import sys
import time

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.sharding import AxisType, NamedSharding, PartitionSpec  # noqa: E402
import numpy as np  # noqa: E402

import gradtx  # noqa: E402

STEPS = 20
# Also on a mesh with Explicit axes (jax.make_mesh's default).
EXPLICIT = ("adam", "multi_tensor_whole_kernel")


def optimizers():
    adam = gradtx.adam(1e-2)
    return {
        "adam": adam,
        "adamw": gradtx.adamw(1e-2, weight_decay=0.1),
        "sgd_momentum": gradtx.sgd(1e-2, momentum=0.9),
        "partition": gradtx.partition(
            {"adam": adam, "sgd": gradtx.sgd(1e-2, momentum=0.9)},
            {"kernel": "adam", "bias": "sgd", "odd": "adam"},
        ),
        "masked": gradtx.masked(adam, {"kernel": True, "bias": False, "odd": True}),
        # The default buffer holds all three leaves, 1055 elements: 8 does not divide it.
        "multi_tensor": gradtx.multi_tensor(adam),
        # The kernel stays whole (and split); bias and odd share a 31-element buffer.
        "multi_tensor_whole_kernel": gradtx.multi_tensor(adam, bucket_limit=512),
        "multi_steps": gradtx.MultiSteps(adam, every_k_schedule=2),
        "lamb": gradtx.lamb(1e-2),
        "muon": gradtx.muon(1e-2),
        "clip_by_block_rms": gradtx.chain(gradtx.clip_by_block_rms(0.1), adam),
        "adafactor": gradtx.adafactor(1e-2, min_dim_size_to_factor=8),
        # Not in the default run: equal numbers (1.2e-7) but 64 s to compile its sharded
        # step (16x16 statistics split by rows: ~900 collective-permutes).
        "shampoo": gradtx.shampoo(1e-2, block_size=16),
    }


DEFAULT = [name for name in optimizers() if name != "shampoo"]


def loss(params, x):
    hidden = jnp.tanh(x @ params["kernel"] + params["bias"])
    return jnp.mean(hidden**2) + jnp.sum(params["odd"] ** 2)


def largest_difference(a, b):
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def per_device_bytes(tree):
    return sum(leaf.addressable_shards[0].data.nbytes for leaf in jax.tree.leaves(tree))


def collectives(compiled_text):
    names = ("all-reduce", "reduce-scatter", "all-gather", "all-to-all", "collective-permute")
    return {name: compiled_text.count(f" {name}(") for name in names}


def run(tx, params, batches, mesh):
    replicated = NamedSharding(mesh, PartitionSpec())
    batch_sharding = NamedSharding(mesh, PartitionSpec("data"))

    # One device: the reference numbers.
    @jax.jit
    def plain_step(params, state, x):
        updates, state = tx.update(jax.grad(loss)(params, x), state, params)
        return gradtx.apply_updates(params, updates), state

    one = jax.devices()[0]
    p, state = jax.device_put((params, tx.init(params)), one)
    for x in batches:
        p, state = plain_step(p, state, jax.device_put(x, one))
    reference = p

    sharding = gradtx.shard_state(tx, params, mesh, axis="data")

    @functools.partial(
        jax.jit,
        in_shardings=(sharding.params, sharding.state, batch_sharding),
        out_shardings=(sharding.params, sharding.state),
        donate_argnums=(0, 1),
    )
    def step(params, state, x):
        grads = sharding.shard_updates(jax.grad(loss)(params, x))
        updates, state = tx.update(grads, state, params)
        return gradtx.apply_updates(params, updates), state

    # From host copies: device_put may alias the caller's buffers, and the step donates.
    p = jax.device_put(jax.tree.map(np.asarray, params), replicated)
    state = sharding.init(p)
    replicated_bytes = per_device_bytes(jax.device_put(state, replicated))
    sharded_bytes = per_device_bytes(state)
    initial_specs = {
        jax.tree_util.keystr(path): str(leaf.sharding.spec)
        for path, leaf in jax.tree_util.tree_leaves_with_path(state)
    }
    text = step.lower(p, state, batches[0]).compile().as_text()
    for x in batches:
        p, state = step(p, state, jax.device_put(x, batch_sharding))
    final_specs = {
        jax.tree_util.keystr(path): str(leaf.sharding.spec)
        for path, leaf in jax.tree_util.tree_leaves_with_path(state)
    }
    return {
        "max_difference": largest_difference(p, reference),
        "close": all(
            np.allclose(a, b, rtol=1e-6, atol=1e-6)
            for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(reference))
        ),
        "finite": all(bool(np.all(np.isfinite(leaf))) for leaf in jax.tree.leaves(p)),
        "moved": largest_difference(p, params),
        "sharded_bytes": sharded_bytes,
        "replicated_bytes": replicated_bytes,
        "layout": {path: str(spec) for path, spec in sharding.layout.items()},
        "initial_specs": initial_specs,
        "final_specs": final_specs,
        "params_replicated": all(leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(p)),
        "collectives": collectives(text),
    }


def flat_optimizers():
    return {
        "flat_adam": gradtx.adam(1e-2),
        "flat_adamw_clip": gradtx.chain(
            gradtx.clip_by_global_norm(0.5), gradtx.adamw(1e-2, weight_decay=0.1)
        ),
    }


def run_flat(tx, batches, mesh):
    """FlatParams whose buffer is split over "data", against the tree on one device.

    The leaves hold 1024 + 16 + 24 = 1064 = 8 x 133 elements: the axis divides the
    buffer. The step is jitted with no shardings given: the buffers' own carry through.
    """
    rng = np.random.default_rng(1)
    params = {
        "kernel": jnp.asarray(rng.normal(size=(64, 16)), jnp.float32),
        "bias": jnp.asarray(rng.normal(size=(16,)), jnp.float32),
        "odd": jnp.asarray(rng.normal(size=(3, 8)), jnp.float32),
    }

    def step(params, state, x, flat):
        objective = (lambda fp: loss(fp.to_tree(), x)) if flat else (lambda p: loss(p, x))
        updates, state = tx.update(jax.grad(objective)(params), state, params)
        return gradtx.apply_updates(params, updates), state

    one = jax.devices()[0]
    plain = jax.jit(functools.partial(step, flat=False))
    p, state = jax.device_put((params, tx.init(params)), one)
    for x in batches:
        p, state = plain(p, state, jax.device_put(x, one))
    reference = p

    split = NamedSharding(mesh, PartitionSpec("data"))
    fp = jax.device_put(gradtx.FlatParams.from_tree(params), split)
    state = tx.init(fp)
    flat = jax.jit(functools.partial(step, flat=True), donate_argnums=(0, 1))
    for x in batches:
        fp, state = flat(fp, state, jax.device_put(x, NamedSharding(mesh, PartitionSpec())))
    tree = fp.to_tree()
    buffers = [b for b in jax.tree.leaves((fp, state)) if jnp.ndim(b) == 1]
    return {
        "max_difference": largest_difference(tree, reference),
        "close": all(
            np.allclose(a, b, rtol=1e-6, atol=1e-6)
            for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(reference))
        ),
        "moved": largest_difference(tree, params),
        "buffer_specs": sorted({str(b.sharding.spec) for b in buffers}),
        "buffers": len(buffers),
    }


def main():
    auto = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
    explicit = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Explicit,))
    rng = np.random.default_rng(0)
    params = {
        "kernel": jnp.asarray(rng.normal(size=(64, 16)), jnp.float32),
        "bias": jnp.asarray(rng.normal(size=(16,)), jnp.float32),
        "odd": jnp.asarray(rng.normal(size=(3, 5)), jnp.float32),  # nothing divides: replicated
    }
    batches = [jnp.asarray(rng.normal(size=(32, 64)), jnp.float32) for _ in range(STEPS)]
    names = sys.argv[1:] or [
        *DEFAULT,
        *(f"explicit_{name}" for name in EXPLICIT),
        *flat_optimizers(),
    ]
    results = {"devices": jax.device_count(), "seconds": {}}
    for name in names:
        start = time.perf_counter()
        mesh, tx = (
            (explicit, name.removeprefix("explicit_"))
            if name.startswith("explicit_")
            else (auto, name)
        )
        try:
            if name in flat_optimizers():
                results[name] = run_flat(flat_optimizers()[name], batches, auto)
            else:
                results[name] = run(optimizers()[tx], params, batches, mesh)
        except Exception as error:  # reported, so the test names the optimizer that broke
            results[name] = {"error": f"{type(error).__name__}: {error}"[:2000]}
        results["seconds"][name] = round(time.perf_counter() - start, 2)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
