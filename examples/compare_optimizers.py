"""Trains one small CNN with each optimizer and prints the Keras MNIST comparison table.

Run: python examples/compare_optimizers.py [--preset keras|pytorch|gradtx] [--dataset mnist]

The reference is a Keras MNIST comparison: Conv2D 32 3x3 relu, MaxPool 2x2, Dropout 0.25,
Flatten, Dense 256 relu, Dropout 0.5, Dense 10 softmax, batch 64, 10 epochs, each optimizer at
Keras's defaults, reporting validation accuracy / loss after epochs 1, 5 and 10. Here the model
is Flax, the optimizers are gradtx's, and the default data is scikit-learn's 8x8 digits, so it
runs offline in a few minutes on a laptop CPU. An "epoch" is MNIST's: 938 optimizer steps at
batch 64, so the optimizers take as many steps as in the reference, not as few as ten passes
over 1,437 digits would give (230).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
from pathlib import Path
import sys
import time
from typing import Any

import datasets
from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import gradtx
from gradtx.compat import keras, pytorch

MNIST_TRAIN_SIZE = 60_000
CURVE_POINTS_PER_EPOCH = 10

LABELS = {
    "adadelta": "Adadelta",
    "adagrad": "Adagrad",
    "adam": "Adam",
    "rmsprop": "RMSprop",
    "momentum": "SGD with momentum",
    "sgd": "SGD",
}

# preset -> optimizer -> (factory, keyword arguments); the prefix names the factories' module.
PRESETS: dict[str, tuple[str, dict[str, tuple[Any, dict[str, Any]]]]] = {
    # Keras 3's defaults, as in the reference table (which used SGD(momentum=0.9)).
    "keras": (
        "gradtx.compat.keras",
        {
            "adadelta": (keras.adadelta, {}),
            "adagrad": (keras.adagrad, {}),
            "adam": (keras.adam, {}),
            "rmsprop": (keras.rmsprop, {}),
            "momentum": (keras.sgd, {"momentum": 0.9}),
            "sgd": (keras.sgd, {}),
        },
    ),
    # torch.optim's defaults; torch's SGD defaults to lr=1e-3, with or without momentum.
    "pytorch": (
        "gradtx.compat.pytorch",
        {
            "adadelta": (pytorch.adadelta, {}),
            "adagrad": (pytorch.adagrad, {}),
            "adam": (pytorch.adam, {}),
            "rmsprop": (pytorch.rmsprop, {}),
            "momentum": (pytorch.sgd, {"momentum": 0.9}),
            "sgd": (pytorch.sgd, {}),
        },
    ),
    # gradtx's (optax's) recipes at the usual learning rates; plain SGD gets 0.1, the
    # effective rate lr / (1 - momentum) of the momentum run.
    "gradtx": (
        "gradtx",
        {
            "adadelta": (gradtx.adadelta, {"learning_rate": 1.0}),
            "adagrad": (gradtx.adagrad, {"learning_rate": 0.01}),
            "adam": (gradtx.adam, {"learning_rate": 1e-3}),
            "rmsprop": (gradtx.rmsprop, {"learning_rate": 1e-3}),
            "momentum": (gradtx.sgd, {"learning_rate": 0.01, "momentum": 0.9}),
            "sgd": (gradtx.sgd, {"learning_rate": 0.1}),
        },
    ),
}


class CNN(nn.Module):
    """The reference CNN; returns logits (the softmax is in the loss).

    ``padding`` is Keras's default "VALID" on 28x28 MNIST (26x26 after the conv, 13x13 after
    the pool); on 8x8 digits it is "SAME", so the pool leaves 4x4 instead of 3x3.
    """

    padding: str = "VALID"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        glorot = nn.initializers.glorot_uniform()  # Keras's initializer (Flax's is lecun_normal)
        x = nn.relu(nn.Conv(32, (3, 3), padding=self.padding, kernel_init=glorot)(x))
        # MaxPool 2x2 as a reshape: on CPU, nn.max_pool's gradient (select-and-scatter) makes
        # the whole step 1.4x slower.
        n, height, width, channels = x.shape
        x = x[:, : height // 2 * 2, : width // 2 * 2]
        x = x.reshape(n, height // 2, 2, width // 2, 2, channels).max(axis=(2, 4))
        x = nn.Dropout(0.25, deterministic=not train)(x)
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(256, kernel_init=glorot)(x))
        x = nn.Dropout(0.5, deterministic=not train)(x)
        return nn.Dense(10, kernel_init=glorot)(x)


def architecture(data: datasets.Dataset, padding: str) -> str:
    """The model in words, with the shapes this data set gives."""
    _, height, width, _ = data.x_train.shape
    conv = (height, width) if padding == "SAME" else (height - 2, width - 2)
    pooled = (conv[0] // 2, conv[1] // 2)
    text = (
        f"Conv2D 32 3x3 {padding.lower()} relu ({conv[0]}x{conv[1]}x32), MaxPool 2x2 "
        f"({pooled[0]}x{pooled[1]}x32), Dropout 0.25, Flatten ({pooled[0] * pooled[1] * 32}), "
        "Dense 256 relu, Dropout 0.5, Dense 10 softmax; Glorot-uniform init"
    )
    if padding == "SAME":
        text += (
            f"\n  adapted to {height}x{width} images: the conv pads ('same') instead of Keras's "
            f"'valid', so the pool gives {pooled[0]}x{pooled[1]} rather than "
            f"{(height - 2) // 2}x{(width - 2) // 2}"
        )
    return text


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)[:, 0]


def batch_plan(n: int, batch_size: int, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and weights of ``steps`` batches, as Keras's ``fit(shuffle=True)`` draws them.

    Each pass over the data is a fresh permutation; its last batch is short, padded here
    with weight-0 rows so that every batch has one shape (the loss is the weighted mean).
    """
    rng = np.random.default_rng(seed)
    per_pass = math.ceil(n / batch_size)
    passes = math.ceil(steps / per_pass)
    padding = per_pass * batch_size - n
    indices, weights = [], []
    for _ in range(passes):
        indices.append(np.concatenate([rng.permutation(n), np.zeros(padding, np.int64)]))
        weights.append(np.concatenate([np.ones(n, np.float32), np.zeros(padding, np.float32)]))
    shape = (passes * per_pass, batch_size)
    indices = np.concatenate(indices).reshape(shape)[:steps].astype(np.int32)
    return indices, np.concatenate(weights).reshape(shape)[:steps]


def loss_fn(model: CNN, params, x, y, weights, key) -> jax.Array:
    """The weighted mean cross-entropy of a training batch, with dropout on."""
    logits = model.apply({"params": params}, x, train=True, rngs={"dropout": key})
    return jnp.sum(weights * cross_entropy(logits, y)) / jnp.sum(weights)


@functools.partial(jax.jit, static_argnums=0, donate_argnums=(2, 3))
def train_step(model: CNN, tx, params, opt_state, t, train_arrays, key):
    """Optimizer step ``t``, reading its batch from the plan kept on the device.

    One call per step: on XLA's CPU backend a ``lax.scan`` over steps ran 2-3x slower.
    The step donates (overwrites) the parameters and state it is given.
    """
    x_train, y_train, indices, weights = train_arrays
    batch, key = indices[t], jax.random.fold_in(key, t)
    grads = jax.grad(loss_fn, argnums=1)(
        model, params, x_train[batch], y_train[batch], weights[t], key
    )
    updates, opt_state = tx.update(grads, opt_state, params)
    return gradtx.apply_updates(params, updates), opt_state


@functools.partial(jax.jit, static_argnums=0)
def evaluate(model: CNN, params, val_arrays) -> tuple[jax.Array, jax.Array]:
    """Validation accuracy and mean loss, over the chunks of :func:`validation_arrays`."""

    def one_chunk(chunk):
        x, y, weights = chunk
        logits = model.apply({"params": params}, x, train=False)
        correct = jnp.argmax(logits, axis=1) == y
        return jnp.sum(weights * cross_entropy(logits, y)), jnp.sum(weights * correct)

    losses, correct = jax.lax.map(one_chunk, val_arrays)
    n = jnp.sum(val_arrays[2])
    return jnp.sum(correct) / n, jnp.sum(losses) / n


def validation_arrays(data: datasets.Dataset, chunk: int = 1000) -> tuple[jax.Array, ...]:
    """The validation set in chunks of ``chunk`` images, the last padded with weight-0 rows."""
    n = len(data.x_val)
    chunk = min(chunk, n)
    chunks = math.ceil(n / chunk)
    pad = chunks * chunk - n
    x = np.concatenate([data.x_val, np.zeros((pad, *data.x_val.shape[1:]), np.float32)])
    y = np.concatenate([data.y_val, np.zeros(pad, np.int32)])
    w = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    return tuple(jnp.asarray(a.reshape(chunks, chunk, *a.shape[1:])) for a in (x, y, w))


@dataclasses.dataclass
class Result:
    name: str
    label: str
    call: str
    curve: list[tuple[int, float, float]]  # (step, val accuracy, val loss)
    epochs: dict[int, tuple[float, float]]  # MNIST-equivalent epoch -> (val accuracy, val loss)
    seconds: float
    params: Any = dataclasses.field(repr=False)  # the final ones, or the best epoch's
    best_epoch: int | None = None  # with --patience: the epoch whose parameters are kept
    stopped_epoch: int | None = None  # with --patience: where training stopped early


def checkpoints(total_steps: int, steps_per_epoch: int) -> list[int]:
    """The steps after which to evaluate: every epoch's end and a few points within it."""
    points = min(CURVE_POINTS_PER_EPOCH, steps_per_epoch)
    within = [round(k * steps_per_epoch / points) for k in range(1, points + 1)]
    epochs = total_steps // steps_per_epoch
    return sorted({e * steps_per_epoch + s for e in range(epochs) for s in within})


def train_one(name, call, tx, step, validate, params, args, steps_per_epoch) -> Result:
    """Trains from ``params`` with ``tx`` for ``args.epochs`` epochs, evaluating as it goes.

    ``step(tx, params, opt_state, t)`` is :func:`train_step` and ``validate(params)``
    :func:`evaluate`, with the model and data bound.
    """
    label = LABELS[name]
    start_time = time.perf_counter()
    # The step donates (consumes) the parameters it is given, and the caller's are the
    # starting point of every optimizer: train a copy. A fresh state shares no buffer.
    params = jax.tree.map(jnp.copy, params)
    opt_state = tx.init(params)
    accuracy, loss = (float(v) for v in validate(params))
    curve, epochs = [(0, accuracy, loss)], {}
    best_loss, best_epoch, best_params, wait, stopped_epoch = math.inf, None, None, 0, None
    ends = checkpoints(args.epochs * steps_per_epoch, steps_per_epoch)
    with tqdm(total=ends[-1], desc=f"{label:<17}", unit="step", file=sys.stderr) as bar:
        for start, end in zip([0, *ends], ends):
            for t in range(start, end):
                params, opt_state = step(tx, params, opt_state, t)
            accuracy, loss = (float(v) for v in validate(params))
            curve.append((end, accuracy, loss))
            bar.update(end - bar.n)
            bar.set_postfix(val_acc=f"{accuracy:.4f}", val_loss=f"{loss:.4f}")
            if end % steps_per_epoch:
                continue
            epoch = end // steps_per_epoch
            epochs[epoch] = (accuracy, loss)
            if args.patience is None:
                continue
            # Keras's EarlyStopping(monitor="val_loss", patience=..., restore_best_weights=True)
            if loss < best_loss:
                best_loss, best_epoch, wait = loss, epoch, 0
                best_params = jax.tree.map(jnp.copy, params)
            else:
                wait += 1
                if wait >= args.patience:
                    stopped_epoch = epoch
                    break
    if best_params is not None:
        params = best_params
    seconds = time.perf_counter() - start_time
    return Result(name, label, call, curve, epochs, seconds, params, best_epoch, stopped_epoch)


def reported_epochs(epochs: int) -> list[int]:
    """The reference's columns: epochs 1, 5 and 10 of 10 (first, middle, last in general)."""
    return sorted({1, max(1, epochs // 2), epochs})


def format_table(results: list[Result], shown: list[int], patience: int | None) -> str:
    """A Markdown table: optimizer | val acc / val loss after each shown epoch | total time."""
    header = ["optimizer", *(f"epoch {e}" for e in shown)]
    if patience is not None:
        header.append("kept (best epoch)")
    header.append("total time")
    rows = []
    for result in results:
        row = [result.label]
        for epoch in shown:
            if epoch in result.epochs:
                row.append("{:.4f} / {:.4f}".format(*result.epochs[epoch]))
            else:
                row.append(f"stopped at {result.stopped_epoch}")
        if patience is not None and result.best_epoch is None:  # every loss was NaN
            row.append("none")
        elif patience is not None:
            accuracy, loss = result.epochs[result.best_epoch]
            row.append(f"{accuracy:.4f} / {loss:.4f} ({result.best_epoch})")
        row.append(f"{result.seconds:.1f} s")
        rows.append(row)
    return markdown_table(header, rows)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """Rows of cells as a Markdown table, each column padded to its widest cell."""
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join(
        "| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths)) + " |" for line in lines
    )


def plot_curves(results, path: Path, title: str, steps_per_epoch: int, shown: list[int]) -> None:
    """Validation accuracy and loss against optimizer steps, one line per optimizer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    for result in results:
        steps, accuracy, loss = zip(*result.curve)
        axes[0].plot(steps, accuracy, label=result.label)
        axes[1].plot(steps, loss, label=result.label)
    for axis, ylabel in zip(axes, ["validation accuracy", "validation loss (log scale)"]):
        axis.set_xlabel("optimizer step")
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
        for epoch in shown:
            axis.axvline(epoch * steps_per_epoch, color="grey", linestyle=":", linewidth=0.8)
        top = axis.secondary_xaxis(
            "top", functions=(lambda s: s / steps_per_epoch, lambda e: e * steps_per_epoch)
        )
        top.set_xlabel("MNIST-equivalent epoch")
    axes[1].set_yscale("log")
    axes[0].legend()
    figure.suptitle(title)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def argument_parser(description: str | None) -> argparse.ArgumentParser:
    """The options this comparison shares with its Keras twin, benchmarks/keras_compare.py."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--optimizers",
        nargs="+",
        choices=list(LABELS),
        default=list(LABELS),
        metavar="NAME",
        help=f"which to train, in this order (default: all of {', '.join(LABELS)})",
    )
    parser.add_argument(
        "--epochs", type=int, default=10, help="MNIST-equivalent epochs (default: 10)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="default: 64")
    parser.add_argument("--dataset", choices=["digits", "mnist"], default="digits")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=datasets.DEFAULT_MNIST_DIR,
        help="where the MNIST IDX files are, or are downloaded to (default: %(default)s)",
    )
    parser.add_argument(
        "--no-download", action="store_true", help="fail rather than download missing MNIST files"
    )
    parser.add_argument("--out", type=Path, default=Path("out"), help="output folder (./out)")
    parser.add_argument(
        "--steps-per-epoch",
        type=int,
        default=None,
        help="optimizer steps per reported epoch (default: MNIST's, ceil(60000 / batch size))",
    )
    return parser


def checked_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser``'s arguments, counts checked to be positive and optimizers deduplicated."""
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size", "patience", "steps_per_epoch"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    args.optimizers = list(dict.fromkeys(args.optimizers))
    return args


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("--seed", type=int, default=0, help="initialisation, shuffling, dropout")
    parser.add_argument(
        "--preset",
        choices=list(PRESETS),
        default="keras",
        help="hyperparameters: Keras 3's defaults (default), torch.optim's, or gradtx's",
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=None,
        help="stop after this many epochs without a lower validation loss; keep the best epoch",
    )
    return checked_args(parser, argv)


def load_data(args: argparse.Namespace) -> tuple[datasets.Dataset, str]:
    """The data set ``args`` names, and the padding of the reference model's conv on it."""
    if args.dataset == "mnist":
        return datasets.load_mnist(args.data_dir, download=not args.no_download), "VALID"
    return datasets.load_digits(), "SAME"


def epoch_steps(args: argparse.Namespace) -> int:
    """Optimizer steps per reported epoch: ``--steps-per-epoch``, else a pass over MNIST."""
    return args.steps_per_epoch or math.ceil(MNIST_TRAIN_SIZE / args.batch_size)


def describe_steps(data: datasets.Dataset, args, steps_per_epoch: int) -> str:
    per_pass = math.ceil(len(data.x_train) / args.batch_size)
    if args.steps_per_epoch is None:
        what = f"MNIST's: one pass over its {MNIST_TRAIN_SIZE:,} images at batch {args.batch_size}"
    else:
        what = "set by --steps-per-epoch"
    text = f"an epoch here is {steps_per_epoch:,} optimizer steps, {what}"
    if per_pass != steps_per_epoch:
        text += (
            f";\n  that is {steps_per_epoch / per_pass:.1f} passes over the "
            f"{len(data.x_train):,} training images ({per_pass} steps each)"
        )
    return text


def main(argv: list[str] | None = None) -> list[Result]:
    args = parse_args(argv)
    data, padding = load_data(args)
    steps_per_epoch = epoch_steps(args)
    total_steps = args.epochs * steps_per_epoch
    shown = reported_epochs(args.epochs)
    prefix, recipes = PRESETS[args.preset]

    print(f"data:      {data.description}")
    print(f"model:     {architecture(data, padding)}")
    print(
        f"training:  batch {args.batch_size}, seed {args.seed}, {args.epochs} epochs = "
        f"{total_steps:,} steps per optimizer\n  {describe_steps(data, args, steps_per_epoch)}"
    )
    print(f"optimizers (preset {args.preset!r}):")
    optimizers = {}
    for name in args.optimizers:
        factory, kwargs = recipes[name]
        arguments = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        call = f"{prefix}.{factory.__name__}({arguments})"
        optimizers[name] = (factory(**kwargs), call)
        learning_rate = gradtx.tree_get(optimizers[name][0], "learning_rate")
        print(f"  {LABELS[name]:<17}  {call}, learning rate {learning_rate}")
    print(f"JAX {jax.__version__} on {jax.devices()[0].device_kind}")

    model = CNN(padding)
    init_key, dropout_key = jax.random.split(jax.random.key(args.seed))
    params = model.init(init_key, jnp.asarray(data.x_train[:1]), train=False)["params"]
    plan = batch_plan(len(data.x_train), args.batch_size, total_steps, args.seed)
    train_arrays = tuple(jnp.asarray(a) for a in (data.x_train, data.y_train, *plan))
    step = functools.partial(train_step, model, train_arrays=train_arrays, key=dropout_key)
    validate = functools.partial(evaluate, model, val_arrays=validation_arrays(data))
    results = [
        train_one(name, call, tx, step, validate, params, args, steps_per_epoch)
        for name, (tx, call) in optimizers.items()
    ]

    print(
        f"\nvalidation accuracy / loss after MNIST-equivalent epochs {', '.join(map(str, shown))}"
        f" ({steps_per_epoch:,} steps each); time includes JIT compilation"
    )
    if args.patience is not None:
        print(f"early stopping on validation loss, patience {args.patience} epochs")
    table = format_table(results, shown, args.patience)
    print(table)

    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"compare_{args.dataset}_{args.preset}"
    title = (
        f"{data.name}, preset {args.preset}, batch {args.batch_size}, seed {args.seed}: "
        f"{steps_per_epoch:,} steps per MNIST-equivalent epoch"
    )
    plot_curves(results, stem.with_suffix(".png"), title, steps_per_epoch, shown)
    record = {
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "data": data.description,
        "steps_per_epoch": steps_per_epoch,
        "table": table,
        "results": [
            {k: v for k, v in dataclasses.asdict(r).items() if k != "params"} for r in results
        ],
    }
    stem.with_suffix(".json").write_text(json.dumps(record, indent=1))
    print(f"learning curves: {stem.with_suffix('.png')}; numbers: {stem.with_suffix('.json')}")
    return results


if __name__ == "__main__":
    main()
