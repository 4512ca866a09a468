"""Scaling out on 8 simulated devices: sharded optimizer state and compressed gradient exchange.

    python benchmarks/distributed.py --steps 1500 --seeds 0 1 \
        --out benchmarks/results/distributed          # the recorded run, 16 minutes here
    python benchmarks/distributed.py --out /tmp/dist  # the main job's 9,380 steps, 3 seeds

Runs on 8 simulated CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=8``,
set here before JAX starts); they share this machine's cores, so step times compare the
two programs' work on one CPU, not what 8 accelerators with a real interconnect would do.

1. **Sharded state** (``gradtx.shard_state``, ZeRO stages 1 and 2): for each model (the
   digits CNN of ``examples/compare_optimizers.py``, 134k parameters, and an MLP
   784-1024-1024-1024-10, 2.9M) and optimizer (Adam, Keras's SGD with momentum 0.9,
   Adafactor), the optimizer state's bytes on the fullest device with the state
   replicated (plain data parallelism) and split over the 8-device ``"data"`` axis, and the
   median time of a jitted, donated data-parallel step (global batch 64 split over the
   devices) of each kind, with the largest difference between their params after the timed
   steps.
2. **Compressed exchange**: the digits CNN trained data-parallel by 8 workers inside
   ``jax.shard_map`` over ``"data"`` (global batch 64 of the main job's batch plan, 8 images
   a worker, a dropout key per worker), each worker's gradient exchanged by a dense
   all-reduce (``pmean``) or by one of gradtx's compressors with error feedback, then
   Keras's SGD with momentum 0.9 (the main job's best optimizer) on the average. Reported
   per compressor: bytes one worker sends per step (its state's ``bytes_sent``, mean over
   steps and workers) against the dense all-reduce's, and the validation accuracy after
   ``--steps`` steps (the main job's 9,380 by default), per seed and the mean.

Writes ``results.json``, ``summary.md`` (the tables) and ``accuracy_vs_bytes.png`` to
``--out``.
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()

import argparse  # noqa: E402
from collections.abc import Callable  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any

from flax import linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.sharding import AxisType, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P
import numpy as np  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "examples")]
import bench  # noqa: E402
import compare_optimizers as cmp  # noqa: E402
import datasets  # noqa: E402

import gradtx  # noqa: E402
from gradtx.compat import keras  # noqa: E402

AXIS = "data"
BATCH = 64  # the main job's (global) batch
MAIN_JOB_STEPS = 10 * 938  # 10 MNIST-equivalent epochs at batch 64

OPTIMIZERS: dict[str, Callable[[], Any]] = {
    "adam": lambda: gradtx.adam(1e-3),
    "sgd_momentum": lambda: keras.sgd(momentum=0.9),
    "adafactor": lambda: gradtx.adafactor(1e-2),
}

# The threshold is in the gradients' units. In 300-step trials on the digits CNN (seed 0),
# 0.003, 0.01, 0.03, 0.06 and 0.12 sent 1.5, 3.1, 7.8, 14 and 30 times fewer bytes than
# dense: 0.06 is the smallest tried that sends >= 10x fewer.
COMPRESSORS: dict[str, Callable[[], Any]] = {
    "dense all-reduce": lambda: None,
    "threshold 0.06, EF": lambda: gradtx.threshold_compression(0.06, axis_name=AXIS),
    "top-k 0.01, EF": lambda: gradtx.top_k_compression(0.01, axis_name=AXIS),
    "sign (EF-signSGD)": lambda: gradtx.sign_compression(axis_name=AXIS),
    "PowerSGD rank 4": lambda: gradtx.powersgd(4, axis_name=AXIS),
    "PowerSGD rank 1": lambda: gradtx.powersgd(1, axis_name=AXIS),
}
# Issue 15's goal: within 1 point of dense at >= 10x fewer bytes, for these.
GOAL_COMPRESSORS = ("threshold 0.06, EF", "top-k 0.01, EF", "PowerSGD rank 4")


class MLP(nn.Module):
    """784-1024-1024-1024-10, relu: the larger model of the sharded-state table."""

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        del train
        x = x.reshape(x.shape[0], -1)
        for width in (1024, 1024, 1024):
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(10)(x)


def models(data: datasets.Dataset) -> dict[str, tuple[nn.Module, np.ndarray, np.ndarray]]:
    """Name -> (model, a global batch of inputs, labels): the digits CNN and the MLP."""
    rng = np.random.default_rng(0)
    return {
        "digits CNN": (cmp.CNN("SAME"), data.x_train[:BATCH], data.y_train[:BATCH]),
        "MLP 784-1024x3-10": (
            MLP(),
            rng.random((BATCH, 784), dtype=np.float32),
            rng.integers(0, 10, BATCH).astype(np.int32),
        ),
    }


def per_device_bytes(tree: Any) -> int:
    """The bytes of ``tree`` on its fullest device."""
    totals: dict[Any, int] = {}
    for leaf in jax.tree.leaves(tree):
        for shard in leaf.addressable_shards:
            totals[shard.device] = totals.get(shard.device, 0) + shard.data.nbytes
    return max(totals.values())


def median_step_seconds(step, params, state, batch, steps: int) -> tuple[float, Any]:
    """The median wall time of ``steps`` calls after one that compiles, and the final params."""
    params, state = jax.block_until_ready(step(params, state, batch))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        params, state = jax.block_until_ready(step(params, state, batch))
        times.append(time.perf_counter() - start)
    return statistics.median(times), params


def sharded_state_case(model, x, y, tx, mesh, timing_steps: int) -> dict[str, Any]:
    """State bytes and step time of ``tx`` on ``model``, replicated against sharded."""
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P(AXIS))
    params = model.init(jax.random.key(0), jnp.asarray(x[:1]), train=False)["params"]
    host_params = jax.tree.map(np.asarray, params)

    def loss(params, batch):
        x, y = batch
        return jnp.mean(cmp.cross_entropy(model.apply({"params": params}, x, train=False), y))

    def step(params, state, batch, constrain):
        grads = constrain(jax.grad(loss)(params, batch))
        updates, state = tx.update(grads, state, params)
        return gradtx.apply_updates(params, updates), state

    batch = jax.device_put((jnp.asarray(x), jnp.asarray(y)), batch_sharding)
    sharding = gradtx.shard_state(tx, params, mesh, axis=AXIS)
    state_replicated = jax.tree.map(lambda _: replicated, sharding.state)
    runs = {}
    for kind, state_sharding, constrain in (
        ("replicated", state_replicated, lambda g: g),
        ("sharded", sharding.state, sharding.shard_updates),
    ):
        jitted = jax.jit(
            functools.partial(step, constrain=constrain),
            in_shardings=(sharding.params, state_sharding, batch_sharding),
            out_shardings=(sharding.params, state_sharding),
            donate_argnums=(0, 1),
        )
        # From host copies: the step donates, and device_put may alias the caller's buffers.
        p = jax.device_put(host_params, sharding.params)
        state = jax.jit(tx.init, out_shardings=state_sharding)(p)
        state_bytes = per_device_bytes(state)
        seconds, p = median_step_seconds(jitted, p, state, batch, timing_steps)
        runs[kind] = (state_bytes, seconds, jax.tree.map(np.asarray, p))
    split = sum(1 for leaf in sharding.leaves if AXIS in leaf.spec)
    difference = max(
        float(np.max(np.abs(a - b)))
        for a, b in zip(jax.tree.leaves(runs["sharded"][2]), jax.tree.leaves(runs["replicated"][2]))
    )
    return {
        "params": sum(int(np.size(p)) for p in jax.tree.leaves(host_params)),
        "state_leaves": len(sharding.leaves),
        "state_leaves_split": split,
        "replicated_state_bytes": runs["replicated"][0],
        "sharded_state_bytes": runs["sharded"][0],
        "state_fraction": runs["sharded"][0] / runs["replicated"][0],
        "replicated_step_s": runs["replicated"][1],
        "sharded_step_s": runs["sharded"][1],
        "step_time_ratio": runs["sharded"][1] / runs["replicated"][1],
        "max_param_difference": difference,
        "layout_report": sharding.report(),
    }


def make_train_step(model, tx, compressor, mesh, workers: int):
    """One data-parallel step: each worker's gradient, the exchange, then ``tx`` on the average.

    Every worker holds the params and ``tx``'s state whole (``P()``) and its own compressor
    state (stacked over the data axis). A worker's loss is its images' weighted
    cross-entropy over the global batch's weight / ``workers``, so the workers' mean
    gradient is the global batch's whatever the short last batch of a pass leaves a worker.
    """

    def worker_loss(params, x, y, weights, per_worker_weight, key):
        logits = model.apply({"params": params}, x, train=True, rngs={"dropout": key})
        return jnp.sum(weights * cmp.cross_entropy(logits, y)) / per_worker_weight

    def worker(params, opt_state, comp_state, x, y, weights, per_worker_weight, key):
        key = jax.random.fold_in(key, jax.lax.axis_index(AXIS))
        grads = jax.grad(worker_loss)(params, x, y, weights, per_worker_weight, key)
        if compressor is None:
            average = jax.lax.pmean(grads, AXIS)
        else:
            comp_state = jax.tree.map(lambda s: s[0], comp_state)
            average, comp_state = compressor.update(grads, comp_state)
            comp_state = jax.tree.map(lambda s: s[None], comp_state)
        updates, opt_state = tx.update(average, opt_state, params)
        return gradtx.apply_updates(params, updates), opt_state, comp_state

    exchange = jax.shard_map(
        worker,
        mesh=mesh,
        in_specs=(P(), P(), P(AXIS), P(AXIS), P(AXIS), P(AXIS), P(), P()),
        out_specs=(P(), P(), P(AXIS)),
    )

    @functools.partial(jax.jit, donate_argnums=(0, 1, 2, 3))
    def step(params, opt_state, comp_state, sent, t, train_arrays, key):
        x_train, y_train, indices, weights = train_arrays
        batch = indices[t]
        params, opt_state, comp_state = exchange(
            params,
            opt_state,
            comp_state,
            x_train[batch],
            y_train[batch],
            weights[t],
            jnp.sum(weights[t]) / workers,
            jax.random.fold_in(key, t),
        )
        if compressor is not None:  # the mean over workers of this step's bytes_sent
            sent = sent + jnp.mean(comp_state.bytes_sent)
        return params, opt_state, comp_state, sent

    return step


def train_compressed(name, data, mesh, steps: int, seed: int) -> dict[str, Any]:
    """The digits CNN trained by 8 workers exchanging gradients with compressor ``name``."""
    workers = mesh.shape[AXIS]
    model, tx, compressor = cmp.CNN("SAME"), keras.sgd(momentum=0.9), COMPRESSORS[name]()
    init_key, dropout_key = jax.random.split(jax.random.key(seed))
    params = model.init(init_key, jnp.asarray(data.x_train[:1]), train=False)["params"]
    plan = cmp.batch_plan(len(data.x_train), BATCH, steps, seed)
    replicated = NamedSharding(mesh, P())
    train_arrays = jax.device_put(
        tuple(jnp.asarray(a) for a in (data.x_train, data.y_train, *plan)), replicated
    )
    params = jax.device_put(params, replicated)
    opt_state = jax.device_put(tx.init(params), replicated)
    dense_bytes = sum(p.size * p.dtype.itemsize for p in jax.tree.leaves(params))
    if compressor is None:
        comp_state = jnp.zeros((workers,))  # a placeholder carried through the step
    else:
        comp_state = jax.tree.map(
            lambda s: jnp.stack([s] * workers), compressor.init(jax.device_get(params))
        )
    comp_state = jax.device_put(comp_state, NamedSharding(mesh, P(AXIS)))
    step = make_train_step(model, tx, compressor, mesh, workers)
    sent = jax.device_put(jnp.zeros(()), replicated)
    start = time.perf_counter()
    for t in range(steps):
        params, opt_state, comp_state, sent = step(
            params, opt_state, comp_state, sent, t, train_arrays, dropout_key
        )
        # One step in flight at a time: with several queued, XLA:CPU's simulated devices
        # (jaxlib 0.10.2) left some of them out of an all-reduce's rendezvous for good.
        jax.block_until_ready(sent)
    accuracy, loss = cmp.evaluate(model, params, cmp.validation_arrays(data))
    seconds = time.perf_counter() - start
    bytes_sent = dense_bytes if compressor is None else float(sent) / steps
    return {
        "seed": seed,
        "accuracy": float(accuracy),
        "loss": float(loss),
        "bytes_sent": bytes_sent,
        "dense_bytes": dense_bytes,
        "seconds": seconds,
    }


def compressed_exchange(args, data, mesh) -> dict[str, Any]:
    results = {}
    for name in args.compressors:
        runs = []
        for seed in args.seeds:
            runs.append(train_compressed(name, data, mesh, args.steps, seed))
            print(f"{name}, seed {seed}: {runs[-1]}", flush=True)
        accuracies = [r["accuracy"] for r in runs]
        sent = statistics.mean(r["bytes_sent"] for r in runs)
        results[name] = {
            "runs": runs,
            "accuracy_mean": statistics.mean(accuracies),
            "accuracy_min": min(accuracies),
            "accuracy_max": max(accuracies),
            "bytes_sent": sent,
            "dense_bytes": runs[0]["dense_bytes"],
            "reduction": runs[0]["dense_bytes"] / sent,
        }
    return results


def goals(state_results: dict, exchange: dict) -> list[dict[str, Any]]:
    """Issue 15's goals, each with the measured value and whether it is met."""
    out = []
    for key, r in state_results.items():
        # 1/8 plus what stays replicated: counts, and leaves no dimension of which 8 divides.
        out.append(
            {
                "goal": f"{key}: per-device state <= 1/8 + 5% of the replicated state",
                "value": r["state_fraction"],
                "met": r["state_fraction"] <= 1 / 8 + 0.05,
            }
        )
    dense = exchange.get("dense all-reduce")
    for name in GOAL_COMPRESSORS:
        if dense is None or name not in exchange:
            continue
        r = exchange[name]
        gap = dense["accuracy_mean"] - r["accuracy_mean"]
        out.append(
            {
                "goal": f"{name}: within 1 point of dense at >= 10x fewer bytes",
                "value": {"accuracy_gap_points": 100 * gap, "reduction": r["reduction"]},
                "met": gap <= 0.01 and r["reduction"] >= 10,
            }
        )
    return out


def summary(results: dict) -> str:
    lines = [
        f"Sharded optimizer state on {results['devices']} simulated CPU devices (axis "
        f"{AXIS!r}): bytes on the fullest device, median step time over "
        f"{results['config']['timing_steps']} steps (global batch {BATCH}).",
        "",
    ]
    rows = [
        [
            key.split(" / ")[0],
            key.split(" / ")[1],
            f"{r['params']:,}",
            f"{r['replicated_state_bytes']:,}",
            f"{r['sharded_state_bytes']:,}",
            f"{r['state_fraction']:.4f} (1/8 = 0.1250)",
            f"{1e3 * r['replicated_step_s']:.2f}",
            f"{1e3 * r['sharded_step_s']:.2f}",
            f"{r['step_time_ratio']:.2f}",
            f"{r['max_param_difference']:.1e}",
        ]
        for key, r in results["sharded_state"].items()
    ]
    header = [
        "model",
        "optimizer",
        "params",
        "state bytes, replicated",
        "state bytes, sharded",
        "fraction",
        "replicated step (ms)",
        "sharded step (ms)",
        "time ratio",
        "max param difference",
    ]
    lines += [cmp.markdown_table(header, rows), ""]
    exchange = results["compressed_exchange"]
    if exchange:
        config = results["config"]
        lines += [
            f"The digits CNN trained by {results['devices']} workers (shard_map over "
            f"{AXIS!r}, 8 images each, global batch {BATCH}), Keras SGD with momentum 0.9, "
            f"{config['steps']:,} steps, seeds {', '.join(map(str, config['seeds']))}: "
            "validation accuracy (mean, range) and bytes one worker sends per step.",
            "",
        ]
        dense = exchange.get("dense all-reduce")
        rows = []
        for name, r in exchange.items():
            gap = "" if dense is None else 100 * (r["accuracy_mean"] - dense["accuracy_mean"])
            rows.append(
                [
                    name,
                    f"{r['accuracy_mean']:.4f} ({r['accuracy_min']:.4f}-{r['accuracy_max']:.4f})",
                    gap if gap == "" else f"{gap:+.2f}",
                    f"{r['bytes_sent']:,.0f}",
                    f"{r['reduction']:.1f}x",
                    f"{statistics.mean(run['seconds'] for run in r['runs']):.0f} s",
                ]
            )
        header = [
            "exchange",
            "validation accuracy",
            "vs dense (points)",
            "bytes sent / step",
            "fewer bytes",
            "time per run",
        ]
        lines += [cmp.markdown_table(header, rows), ""]
    lines += ["### Goals", ""]
    for goal in results["goals"]:
        lines.append(f"- {'met' if goal['met'] else 'NOT met'}: {goal['goal']} ({goal['value']})")
    return "\n".join(lines) + "\n"


def plot(exchange: dict, path: pathlib.Path, title: str, floor: float = 0.94) -> None:
    """Validation accuracy against bytes sent per worker and step, log x axis.

    Each seed is a small dot, the mean a large one; a run below ``floor`` (a collapse)
    is a triangle on the bottom edge, labelled with its accuracy, so it does not squash
    the others into one line.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.5, 4.8), constrained_layout=True)
    for name, r in exchange.items():
        label = f"{name} ({r['reduction']:.0f}x fewer)" if r["reduction"] > 1 else name
        (mean,) = axis.plot(r["bytes_sent"], max(r["accuracy_mean"], floor), "o", label=label)
        for run in r["runs"]:
            if run["accuracy"] >= floor:
                axis.plot(r["bytes_sent"], run["accuracy"], ".", color=mean.get_color(), ms=4)
            else:
                axis.plot(r["bytes_sent"], floor, "v", color=mean.get_color(), ms=9)
                axis.annotate(
                    f"seed {run['seed']}: {run['accuracy']:.2f}",
                    (r["bytes_sent"], floor),
                    textcoords="offset points",
                    xytext=(6, 4),
                    fontsize=8,
                    color=mean.get_color(),
                )
    dense = exchange.get("dense all-reduce")
    if dense is not None:
        axis.axhline(dense["accuracy_mean"] - 0.01, color="grey", linestyle=":", linewidth=1)
        axis.axvline(dense["bytes_sent"] / 10, color="grey", linestyle=":", linewidth=1)
        axis.text(dense["bytes_sent"] / 10, 1.0, " 10x fewer bytes", color="grey", va="top")
        axis.text(
            dense["bytes_sent"] / 10, dense["accuracy_mean"] - 0.01, " dense - 1 point",
            color="grey", va="bottom", ha="right",
        )  # fmt: skip
    axis.set_xscale("log")
    axis.set_ylim(floor - 0.002, 1.0)
    axis.set_xlabel("bytes one worker sends per step (log scale)")
    axis.set_ylabel("validation accuracy (mean; dots: seeds)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    axis.set_title(title, fontsize=9)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "results" / "distributed")
    parser.add_argument("--optimizers", nargs="*", choices=list(OPTIMIZERS), default=None)
    parser.add_argument("--models", nargs="*", choices=["cnn", "mlp"], default=["cnn", "mlp"])
    parser.add_argument("--timing-steps", type=int, default=20, help="timed steps per case (20)")
    parser.add_argument("--compressors", nargs="*", choices=list(COMPRESSORS), default=None)
    parser.add_argument(
        "--steps", type=int, default=MAIN_JOB_STEPS, help=f"training steps ({MAIN_JOB_STEPS:,})"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args(argv)
    args.optimizers = list(OPTIMIZERS) if args.optimizers is None else args.optimizers
    args.compressors = list(COMPRESSORS) if args.compressors is None else args.compressors
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    started = time.perf_counter()
    if jax.device_count() != 8:
        raise RuntimeError(
            f"distributed.py needs 8 devices, found {jax.device_count()}: JAX started before "
            "XLA_FLAGS=--xla_force_host_platform_device_count=8 was set"
        )
    mesh = jax.make_mesh((8,), (AXIS,), axis_types=(AxisType.Auto,))
    record: dict[str, Any] = {
        "machine": bench.machine(),
        "command": " ".join(sys.argv) if argv is None else f"main({argv!r})",
        "devices": jax.device_count(),
        "config": {
            "timing_steps": args.timing_steps,
            "steps": args.steps,
            "seeds": args.seeds,
            "batch": BATCH,
            "optimizer_for_exchange": "gradtx.compat.keras.sgd(momentum=0.9)",
        },
        "sharded_state": {},
    }
    data = datasets.load_digits()
    wanted = {"cnn": "digits CNN", "mlp": "MLP 784-1024x3-10"}
    for model_name, (model, x, y) in models(data).items():
        if model_name not in [wanted[m] for m in args.models]:
            continue
        for opt_name in args.optimizers:
            key = f"{model_name} / {opt_name}"
            record["sharded_state"][key] = sharded_state_case(
                model, x, y, OPTIMIZERS[opt_name](), mesh, args.timing_steps
            )
            shown = {k: v for k, v in record["sharded_state"][key].items() if k != "layout_report"}
            print(key, shown, flush=True)
    record["compressed_exchange"] = compressed_exchange(args, data, mesh)
    record["goals"] = goals(record["sharded_state"], record["compressed_exchange"])
    record["seconds"] = time.perf_counter() - started

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(record, indent=1) + "\n")
    text = summary(record)
    (args.out / "summary.md").write_text(text)
    if record["compressed_exchange"]:
        title = (
            f"digits CNN, 8 data-parallel workers, {args.steps:,} steps, "
            f"seeds {', '.join(map(str, args.seeds))}"
        )
        plot(record["compressed_exchange"], args.out / "accuracy_vs_bytes.png", title)
    print(text)
    print(f"{record['seconds']:.0f} s in all; written to {args.out}")
    return record


if __name__ == "__main__":
    main()
