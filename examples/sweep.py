"""Chooses an optimizer by experiment: optimizers x learning rates on the digits CNN, vmapped.

Run: python examples/sweep.py [--quick] [--compare-sequential] [--out results/sweep]

Each optimizer family is one ``gradtx.sweep`` over the learning rates: the members' parameters,
gradients and states are stacked, and one compiled step trains them all with ``jax.vmap``
(one program per family). Every member starts from the same initial weights and sees the same
batches and dropout masks, so it trains exactly as it would alone; ``--compare-sequential``
runs the grid one member at a time as well (examples/compare_optimizers.py's step, which also
compiles once per family: the learning rate is a leaf), checks that both give the same
accuracies and prints both times. The model, data and step are compare_optimizers.py's.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
from pathlib import Path
import time

import compare_optimizers as compare
import datasets
import jax
import jax.numpy as jnp
import numpy as np

import gradtx

LEARNING_RATES = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0]
DEFAULTS = {"optimizers": list(compare.LABELS), "learning_rates": LEARNING_RATES, "steps": 1000}
QUICK = {"optimizers": ["sgd", "adam"], "learning_rates": [1e-2, 1e-1], "steps": 10}


def family(name: str):
    """The optimizer's factory with its other hyperparameters fixed (the gradtx preset's)."""
    factory, kwargs = compare.PRESETS["gradtx"][1][name]
    fixed = {k: v for k, v in kwargs.items() if k != "learning_rate"}
    return functools.partial(factory, **fixed), fixed


@functools.partial(jax.jit, static_argnums=0, donate_argnums=(2, 3))
def sweep_step(model, sw, params, opt_state, t, train_arrays, key):
    """Step ``t`` of every member: the batch and dropout key are shared, params are stacked."""
    x_train, y_train, indices, weights = train_arrays
    batch, key = indices[t], jax.random.fold_in(key, t)
    x, y = x_train[batch], y_train[batch]

    def grad(params):
        return jax.grad(compare.loss_fn, argnums=1)(model, params, x, y, weights[t], key)

    updates, opt_state = sw.update(jax.vmap(grad)(params), opt_state, params)
    return gradtx.apply_updates(params, updates), opt_state


@functools.partial(jax.jit, static_argnums=0)
def sweep_evaluate(model, params, val_arrays):
    """Every member's validation accuracy and loss."""
    return jax.vmap(lambda p: compare.evaluate(model, p, val_arrays))(params)


def train_vmapped(sw, model, params, steps, train_arrays, key, val_arrays):
    stacked = sw.replicate(params)
    state = sw.init(stacked)
    for t in range(steps):
        stacked, state = sweep_step(model, sw, stacked, state, t, train_arrays, key)
    return [np.asarray(v) for v in sweep_evaluate(model, stacked, val_arrays)]


def train_one_by_one(sw, model, params, steps, train_arrays, key, val_arrays):
    accuracy, loss = [], []
    for index in range(sw.size):
        tx = sw.transform(index)
        member = jax.tree.map(jnp.copy, params)  # train_step donates what it is given
        state = tx.init(member)
        for t in range(steps):
            member, state = compare.train_step(model, tx, member, state, t, train_arrays, key)
        for values, value in zip((accuracy, loss), compare.evaluate(model, member, val_arrays)):
            values.append(float(value))
    return [np.asarray(accuracy), np.asarray(loss)]


def timed(fn, *args):
    start = time.perf_counter()
    result = jax.block_until_ready(fn(*args))
    return result, time.perf_counter() - start


def format_table(names, learning_rates, accuracy) -> str:
    """Validation accuracy: a row per optimizer, a column per learning rate; * the row's best."""
    header = ["optimizer", *(f"lr {lr:g}" for lr in learning_rates)]
    rows = []
    for name, row in zip(names, accuracy):
        best = np.nanargmax(row) if np.isfinite(row).any() else -1
        cells = [f"{a:.4f}{'*' if i == best else ''}" for i, a in enumerate(row)]
        rows.append([compare.LABELS[name], *cells])
    return compare.markdown_table(header, rows)


def plot_heat_map(names, learning_rates, accuracy, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(
        figsize=(1.1 * len(learning_rates) + 2.5, 0.6 * len(names) + 1.8), constrained_layout=True
    )
    image = axis.imshow(accuracy, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    for (i, j), value in np.ndenumerate(accuracy):
        color = "black" if value > 0.6 else "white"  # readable on viridis's both ends
        axis.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=8, color=color)
    axis.set_xticks(range(len(learning_rates)), [f"{lr:g}" for lr in learning_rates])
    axis.set_yticks(range(len(names)), [compare.LABELS[n] for n in names])
    axis.set_xlabel("learning rate")
    figure.colorbar(image, ax=axis, label="validation accuracy")
    axis.set_title(title)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--optimizers",
        nargs="+",
        choices=list(compare.LABELS),
        metavar="NAME",
        help=f"the grid's rows (default: all of {', '.join(compare.LABELS)})",
    )
    parser.add_argument(
        "--learning-rates",
        nargs="+",
        type=float,
        metavar="LR",
        help=f"the grid's columns (default: {' '.join(f'{lr:g}' for lr in LEARNING_RATES)})",
    )
    parser.add_argument("--steps", type=int, help="optimizer steps (default: 1000)")
    parser.add_argument("--batch-size", type=int, default=64, help="default: 64")
    parser.add_argument("--seed", type=int, default=0, help="initialisation, shuffling, dropout")
    parser.add_argument("--out", type=Path, default=Path("results/sweep"), help="output folder")
    parser.add_argument(
        "--compare-sequential",
        action="store_true",
        help="also train the grid one member at a time; print both times",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test; the options not given are "
        + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in QUICK.items()),
    )
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.steps < 1 or args.batch_size < 1:
        parser.error("--steps and --batch-size must be at least 1")
    if any(not lr > 0 for lr in args.learning_rates):
        parser.error(f"--learning-rates must be positive, got {args.learning_rates}")
    args.optimizers = list(dict.fromkeys(args.optimizers))
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    data = datasets.load_digits()
    model = compare.CNN("SAME")
    init_key, dropout_key = jax.random.split(jax.random.key(args.seed))
    params = model.init(init_key, jnp.asarray(data.x_train[:1]), train=False)["params"]
    plan = compare.batch_plan(len(data.x_train), args.batch_size, args.steps, args.seed)
    train_arrays = tuple(jnp.asarray(a) for a in (data.x_train, data.y_train, *plan))
    val_arrays = compare.validation_arrays(data)
    training = (model, params, args.steps, train_arrays, dropout_key, val_arrays)

    print(f"data:      {data.description}")
    print(f"model:     {compare.architecture(data, 'SAME')}")
    passes = args.steps / math.ceil(len(data.x_train) / args.batch_size)
    print(f"training:  {args.steps:,} steps ({passes:.1f} passes) at batch {args.batch_size}")
    print(f"JAX {jax.__version__} on {jax.devices()[0].device_kind}")

    accuracy, loss, seconds, sequential_seconds, disagreement = [], [], {}, {}, 0.0
    for name in args.optimizers:
        factory, fixed = family(name)
        sw = gradtx.sweep(factory, learning_rate=args.learning_rates)
        fixed_text = "".join(f", {k}={v!r}" for k, v in fixed.items())
        rates = ", ".join(f"{lr:g}" for lr in args.learning_rates)
        call = f"gradtx.{factory.func.__name__}{fixed_text}, learning_rate=[{rates}]"
        print(f"  {compare.LABELS[name]:<17}  gradtx.sweep({call})", end="", flush=True)
        (acc, val_loss), seconds[name] = timed(train_vmapped, sw, *training)
        print(f"  {seconds[name]:.1f} s vmapped", end="", flush=True)
        if args.compare_sequential:
            (acc_one, _), sequential_seconds[name] = timed(train_one_by_one, sw, *training)
            print(f", {sequential_seconds[name]:.1f} s one by one", end="")
            # Members diverging to NaN agree as NaN; others to float32 rounding, amplified.
            both = np.isfinite(acc) & np.isfinite(acc_one)
            disagreement = max(disagreement, float(np.max(np.abs(acc - acc_one)[both], initial=0)))
        print()
        accuracy.append(acc)
        loss.append(val_loss)
    accuracy, loss = np.stack(accuracy), np.stack(loss)

    table = format_table(args.optimizers, args.learning_rates, accuracy)
    print(f"\nvalidation accuracy after {args.steps:,} steps (* the best learning rate per row)")
    print(table)
    best = np.unravel_index(np.nanargmax(accuracy), accuracy.shape)
    best_name = compare.LABELS[args.optimizers[best[0]]]
    print(
        f"best: {best_name} at learning rate {args.learning_rates[best[1]]:g}, {accuracy[best]:.4f}"
    )
    vmapped_total = sum(seconds.values())
    print(
        f"\n{accuracy.size} members in {vmapped_total:.1f} s vmapped "
        "(one compiled step per optimizer family, compilation included)"
    )
    if args.compare_sequential:
        sequential_total = sum(sequential_seconds.values())
        print(
            f"{accuracy.size} members in {sequential_total:.1f} s one by one: vmapped is "
            f"{sequential_total / vmapped_total:.2f}x faster; the largest difference in "
            f"accuracy between the two is {disagreement:.4f}"
        )

    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / "sweep_digits"
    title = f"{data.name}: validation accuracy after {args.steps:,} steps, batch {args.batch_size}"
    plot_heat_map(args.optimizers, args.learning_rates, accuracy, stem.with_suffix(".png"), title)
    record = {
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "data": data.description,
        "optimizers": args.optimizers,
        "learning_rates": args.learning_rates,
        "val_accuracy": accuracy.tolist(),
        "val_loss": loss.tolist(),
        "seconds_vmapped": seconds,
        "seconds_one_by_one": sequential_seconds or None,
        "max_accuracy_difference": disagreement if args.compare_sequential else None,
        "table": table,
    }
    stem.with_suffix(".json").write_text(json.dumps(record, indent=1))
    print(f"heat map: {stem.with_suffix('.png')}; numbers: {stem.with_suffix('.json')}")
    return record


if __name__ == "__main__":
    main()
