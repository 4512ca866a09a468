"""The optimizer comparison in Keras 3: the same CNN, data, split, batches and step count.

    python benchmarks/keras_compare.py                  # digits, seed 0, six optimizers
    python benchmarks/keras_compare.py --seeds 0 1 2    # and the mean and range over seeds
    python benchmarks/keras_compare.py --dataset mnist --data-dir DIR --no-download

The Keras twin of examples/compare_optimizers.py, whose pieces it reuses: the data loaders
and split, the MNIST-equivalent epoch (938 steps at batch 64), the batch plan (seed s draws
the batches that ``compare_optimizers.py --seed s`` trains on, in the same order, each pass's
last batch short as in Keras's ``fit(shuffle=True)``), the arguments of its ``keras`` preset
(``keras.optimizers.SGD(momentum=0.9)`` where it has ``gradtx.compat.keras.sgd(momentum=0.9)``)
and the table. The model is the reference's ``keras.Sequential`` with Keras's initializers;
seed s also sets its initialisation and dropout (``keras.utils.set_random_seed``), which
cannot draw what Flax draws. Validation accuracy and loss are Keras's own, after every
MNIST-equivalent epoch. Keras runs on its JAX backend; install the ``reference`` extra
(``pip install -e ".[examples,reference]"``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import compare_optimizers  # noqa: E402
from compare_optimizers import LABELS, Result  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

BACKEND = "jax"

# The Keras class that each gradtx.compat.keras factory of the "keras" preset ports.
KERAS_CLASSES = {
    "adadelta": "Adadelta",
    "adagrad": "Adagrad",
    "adam": "Adam",
    "rmsprop": "RMSprop",
    "sgd": "SGD",
}


def import_keras():
    """Keras 3 on the JAX backend, which must be chosen before Keras's first import."""
    os.environ["KERAS_BACKEND"] = BACKEND
    import keras

    if keras.backend.backend() != BACKEND:
        raise RuntimeError(
            f"Keras was imported on the {keras.backend.backend()!r} backend before "
            f"keras_compare could choose {BACKEND!r}"
        )
    return keras


def keras_optimizers(names: list[str]) -> dict[str, tuple[str, dict[str, Any], str]]:
    """Each optimizer's Keras class, arguments and call: those of the gradtx ``keras`` preset."""
    _, recipes = compare_optimizers.PRESETS["keras"]
    optimizers = {}
    for name in names:
        factory, kwargs = recipes[name]
        class_name = KERAS_CLASSES[factory.__name__]
        arguments = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        optimizers[name] = (class_name, kwargs, f"keras.optimizers.{class_name}({arguments})")
    return optimizers


def plan_batches(data, plan: tuple[np.ndarray, np.ndarray]):
    """The batches of ``compare_optimizers.batch_plan``, without its weight-0 padding rows.

    Keras's loss divides by the batch's length, so a short batch is passed short, as
    ``fit(shuffle=True)`` passes it, rather than padded.
    """
    for batch, weights in zip(*plan):
        batch = batch[weights > 0]
        yield data.x_train[batch], data.y_train[batch]


def build_model(keras, input_shape: tuple[int, ...], padding: str):
    """The reference CNN, ending in a softmax as the Keras example does."""
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv2D(32, (3, 3), activation="relu", padding=padding.lower()),
            layers.MaxPooling2D((2, 2)),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(256, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ]
    )


def train_one(keras, name, optimizer, data, padding, plan, seed, args, steps_per_epoch):
    """Trains a fresh model for ``args.epochs`` MNIST-equivalent epochs of ``plan``'s batches."""
    class_name, kwargs, call = optimizer
    label = LABELS[name]
    start_time = time.perf_counter()
    keras.utils.set_random_seed(seed)  # the same initial weights and dropout for every optimizer
    model = build_model(keras, data.x_train.shape[1:], padding)
    model.compile(
        optimizer=getattr(keras.optimizers, class_name)(**kwargs),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    validation = (data.x_val, data.y_val)
    loss, accuracy = model.evaluate(*validation, batch_size=1000, verbose=0)
    curve = [(0, float(accuracy), float(loss))]
    with tqdm(
        total=args.epochs * steps_per_epoch, desc=f"{label:<17}", unit="step", file=sys.stderr
    ) as bar:

        class Progress(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                bar.update(steps_per_epoch)
                bar.set_postfix(val_acc=f"{logs['val_accuracy']:.4f}")

        history = model.fit(
            plan_batches(data, plan),
            steps_per_epoch=steps_per_epoch,
            epochs=args.epochs,
            shuffle=False,  # the plan is shuffled
            validation_data=validation,
            validation_batch_size=1000,
            callbacks=[Progress()],
            verbose=0,
        ).history
    epochs = {
        e + 1: (float(history["val_accuracy"][e]), float(history["val_loss"][e]))
        for e in range(args.epochs)
    }
    curve += [(e * steps_per_epoch, *epochs[e]) for e in epochs]
    seconds = time.perf_counter() - start_time
    return Result(name, label, call, curve, epochs, seconds, params=None)


def summary_table(runs: dict[int, list[Result]], shown: list[int]) -> str:
    """Per optimizer and shown epoch: mean accuracy (min-max over seeds) / mean loss."""
    by_name: dict[str, list[Result]] = {}
    for results in runs.values():
        for result in results:
            by_name.setdefault(result.name, []).append(result)
    header = ["optimizer", *(f"epoch {e}" for e in shown), "mean time"]
    rows = []
    for results in by_name.values():
        row = [results[0].label]
        for epoch in shown:
            accuracy = [r.epochs[epoch][0] for r in results]
            loss = statistics.mean(r.epochs[epoch][1] for r in results)
            row.append(
                f"{statistics.mean(accuracy):.4f} ({min(accuracy):.4f}-{max(accuracy):.4f})"
                f" / {loss:.4f}"
            )
        row.append(f"{statistics.mean(r.seconds for r in results):.1f} s")
        rows.append(row)
    return compare_optimizers.markdown_table(header, rows)


def main(argv: list[str] | None = None) -> dict[int, list[Result]]:
    parser = compare_optimizers.argument_parser(__doc__)
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        help="one run per seed: batch plan, initialisation, dropout (default: 0)",
    )
    args = compare_optimizers.checked_args(parser, argv)
    args.seeds = list(dict.fromkeys(args.seeds))
    keras = import_keras()
    data, padding = compare_optimizers.load_data(args)
    steps_per_epoch = compare_optimizers.epoch_steps(args)
    total_steps = args.epochs * steps_per_epoch
    shown = compare_optimizers.reported_epochs(args.epochs)
    optimizers = keras_optimizers(args.optimizers)

    print(f"data:      {data.description}")
    print(f"model:     {compare_optimizers.architecture(data, padding)}")
    print(
        f"training:  batch {args.batch_size}, seeds {', '.join(map(str, args.seeds))}; "
        f"{args.epochs} epochs: {total_steps:,} steps per optimizer\n  "
        f"{compare_optimizers.describe_steps(data, args, steps_per_epoch)}"
    )
    print("optimizers (Keras's defaults, the arguments of compare_optimizers' keras preset):")
    for name, (_, _, call) in optimizers.items():
        print(f"  {LABELS[name]:<17}  {call}")
    print(f"Keras {keras.__version__} on the {keras.backend.backend()} backend")

    runs: dict[int, list[Result]] = {}
    tables = {}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"keras_{args.dataset}"
    for seed in args.seeds:
        plan = compare_optimizers.batch_plan(len(data.x_train), args.batch_size, total_steps, seed)
        runs[seed] = [
            train_one(keras, name, optimizer, data, padding, plan, seed, args, steps_per_epoch)
            for name, optimizer in optimizers.items()
        ]
        tables[seed] = compare_optimizers.format_table(runs[seed], shown, None)
        print(
            f"\nseed {seed}: Keras validation accuracy / loss after MNIST-equivalent epochs "
            f"{', '.join(map(str, shown))} ({steps_per_epoch:,} steps each); time includes "
            f"compilation\n{tables[seed]}"
        )
        title = (
            f"Keras {keras.__version__} ({BACKEND}), {data.name}, batch {args.batch_size}, "
            f"seed {seed}: {steps_per_epoch:,} steps per MNIST-equivalent epoch"
        )
        png = stem.with_name(f"{stem.name}_seed{seed}.png")
        compare_optimizers.plot_curves(runs[seed], png, title, steps_per_epoch, shown)
    summary = None
    if len(runs) > 1:
        summary = summary_table(runs, shown)
        print(f"\nmean over seeds {', '.join(map(str, runs))} (accuracy: min-max)\n{summary}")

    record = {
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "data": data.description,
        "steps_per_epoch": steps_per_epoch,
        "tables": tables,
        "summary": summary,
        "results": [
            {"seed": seed, **{k: v for k, v in dataclasses.asdict(r).items() if k != "params"}}
            for seed, results in runs.items()
            for r in results
        ],
    }
    stem.with_suffix(".json").write_text(json.dumps(record, indent=1))
    print(f"learning curves: {stem}_seed*.png; numbers: {stem.with_suffix('.json')}")
    return runs


if __name__ == "__main__":
    main()
