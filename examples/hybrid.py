"""A hybrid optimizer that beats both of its parts: Adam for the weights, sep-CMA-ES for thresholds.

Run: python examples/hybrid.py [--quick] [--seeds 5] [--steps 300] [--out results/hybrid]

The model is a digits classifier (scikit-learn's 8x8 digits, examples/datasets.py) whose
input is binarised by a learned threshold per pixel, ``b = [x > t]``, then a tanh layer of
32 units and a linear read-out. The objective is the training cross-entropy plus
``1e-3 |W|^2`` (so that it has a floor that depends on the features, rather than being
driven to zero by ever larger weights). The thresholds ``t`` (64 of them, drawn uniformly
in [0, 1] at initialisation) have zero gradient everywhere: a gradient method cannot move
them. The weights (2,410 of them) are smooth. Three methods get the same budget:

- ``adam``: Adam on every parameter; the thresholds stay where they were drawn.
- ``sep_cma_es``: separable CMA-ES on every parameter, from the objective's values alone.
- ``hybrid``: ``gradtx.partition({"smooth": adam, "rough": sep_cma_es}, labels)``: each step
  is one Adam step on the weights and one CMA-ES generation on the thresholds.

Budget: one evaluation of the objective on the training set costs 1, one gradient
``GRADIENT_COST`` = 3 (reverse mode costs a small multiple of the forward pass). A hybrid
step costs popsize (16) + 3; Adam gets the hybrid's total budget in gradient steps (about
six times as many steps), sep-CMA-ES in generations of its own population. The loss
recorded for the curves is monitoring and is not counted.

``partition`` and a gradient-free member: each member sees its group's leaves only, and the
``value_fn=`` it receives is the caller's loss of the whole tree with the other groups' leaves
filled in from the step's params, so the CMA-ES member searches over the thresholds with the
weights as they are.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
import time

import datasets
import jax
import jax.numpy as jnp
import numpy as np

import gradtx

HIDDEN = 32
WEIGHT_DECAY = 1e-3
GRADIENT_COST = 3
LEARNING_RATE = 1e-2
SIGMA0 = 0.1  # the search's initial step: thresholds live in [0, 1], weights are O(0.1)
DEFAULTS = {"steps": 300, "seeds": 5}
QUICK = {"steps": 40, "seeds": 2}
LABELS = {"w1": "smooth", "b1": "smooth", "w2": "smooth", "b2": "smooth", "t": "rough"}


def init_params(key: jax.Array) -> dict:
    """Glorot-like weights, zero biases, thresholds uniform in [0, 1]."""
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "w1": jax.random.normal(k1, (64, HIDDEN)) / 8,
        "b1": jnp.zeros(HIDDEN),
        "w2": jax.random.normal(k2, (HIDDEN, 10)) / math.sqrt(HIDDEN),
        "b2": jnp.zeros(10),
        "t": jax.random.uniform(k3, (64,)),
    }


def logits(params: dict, x: jax.Array) -> jax.Array:
    binary = (x > params["t"]).astype(x.dtype)  # d/dt = 0 almost everywhere
    return jnp.tanh(binary @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]


def cross_entropy(params: dict, x: jax.Array, y: jax.Array) -> jax.Array:
    log_p = jax.nn.log_softmax(logits(params, x))
    return -jnp.mean(jnp.take_along_axis(log_p, y[:, None], axis=1))


def methods(steps: int, n_all: int, n_rough: int) -> dict:
    """name -> (transform for a key, steps, evaluations per step, gradient calls per step).

    Every method gets the hybrid's budget: ``steps * (popsize + GRADIENT_COST)``.
    """
    rough_popsize = gradtx.sep_cma_es().parameters(n_rough).popsize
    all_popsize = gradtx.sep_cma_es().parameters(n_all).popsize
    budget = steps * (rough_popsize + GRADIENT_COST)

    def hybrid(key):
        members = {
            "smooth": gradtx.adam(LEARNING_RATE),
            "rough": gradtx.sep_cma_es(SIGMA0, key=key),
        }
        return gradtx.partition(members, LABELS)

    return {
        "adam": (lambda key: gradtx.adam(LEARNING_RATE), budget // GRADIENT_COST, 0, 1),
        "sep_cma_es": (
            lambda key: gradtx.sep_cma_es(SIGMA0, key=key),
            budget // all_popsize,
            all_popsize,
            0,
        ),
        "hybrid": (hybrid, steps, rough_popsize, 1),
    }


def train(name: str, tx: gradtx.Transform, steps: int, params: dict, data) -> tuple:
    """``steps`` updates from ``params``: the objective after each step, and the final params."""
    x_train, y_train = data

    def objective(p):
        decay = jnp.sum(p["w1"] ** 2) + jnp.sum(p["w2"] ** 2)
        return cross_entropy(p, x_train, y_train) + WEIGHT_DECAY * decay

    def step(carry, _):
        p, state = carry
        if name == "adam":
            updates, state = tx.update(jax.grad(objective)(p), state, p)
        elif name == "sep_cma_es":
            updates, state = tx.update(None, state, p, value_fn=objective)
        else:  # the thresholds' gradient is zero: sep-CMA-ES, not Adam, moves them
            grads = jax.grad(objective)(p)
            updates, state = tx.update(grads, state, p, value_fn=objective)
        p = gradtx.apply_updates(p, updates)
        return (p, state), objective(p)

    (params, _), curve = jax.lax.scan(step, (params, tx.init(params)), None, steps)
    return curve, params


def run(steps: int, seeds: int) -> dict:
    """Every method from the same initial params per seed, the seeds vmapped: the record."""
    data = datasets.load_digits()
    x_train = jnp.asarray(data.x_train.reshape(len(data.x_train), -1))
    x_val = jnp.asarray(data.x_val.reshape(len(data.x_val), -1))
    train_data, val_data = (x_train, jnp.asarray(data.y_train)), (x_val, jnp.asarray(data.y_val))
    keys = jax.random.split(jax.random.key(0), seeds)
    initial = jax.vmap(init_params)(keys)
    n_all = sum(leaf[0].size for leaf in jax.tree.leaves(initial))
    record = {"steps": steps, "seeds": seeds, "gradient_cost": GRADIENT_COST, "methods": {}}
    for name, (make, n_steps, evaluations, gradients) in methods(steps, n_all, 64).items():

        def one_seed(params, key, name=name, make=make, n_steps=n_steps):
            curve, final = train(name, make(key), n_steps, params, train_data)
            accuracy = jnp.mean(jnp.argmax(logits(final, val_data[0]), 1) == val_data[1])
            return curve, accuracy, final["t"]

        start = time.perf_counter()
        curves, accuracy, thresholds = jax.jit(jax.vmap(one_seed))(initial, keys)
        curves = np.asarray(curves)
        record["methods"][name] = {
            "steps": n_steps,
            "evaluations": n_steps * evaluations,
            "gradient_calls": n_steps * gradients,
            "cost": n_steps * (evaluations + GRADIENT_COST * gradients),
            "final_objective": curves[:, -1].tolist(),
            "val_accuracy": np.asarray(accuracy).tolist(),
            "curve_cost_per_step": evaluations + GRADIENT_COST * gradients,
            "curves": np.round(curves[:, :: max(1, n_steps // 100)], 5).tolist(),
            "curve_stride": max(1, n_steps // 100),
            "thresholds_seed0": np.asarray(thresholds[0]).tolist(),
            "seconds": time.perf_counter() - start,
        }
    record["initial_thresholds_seed0"] = np.asarray(initial["t"][0]).tolist()
    return record


def spread(values) -> str:
    return f"{np.min(values):.4f}-{np.max(values):.4f}"


def table(record: dict) -> str:
    """Markdown: method, medians and spreads (min-max over seeds), evaluations, gradient calls."""
    lines = [
        "| method | steps | median objective | spread | median val accuracy | spread "
        "| evaluations | gradient calls | cost |",
        "|---|---:|---:|---|---:|---|---:|---:|---:|",
    ]
    for name, m in record["methods"].items():
        lines.append(
            f"| {name} | {m['steps']} | {np.median(m['final_objective']):.4f} "
            f"| {spread(m['final_objective'])} | {np.median(m['val_accuracy']):.4f} "
            f"| {spread(m['val_accuracy'])} | {m['evaluations']} | {m['gradient_calls']} "
            f"| {m['cost']} |"
        )
    return "\n".join(lines)


def plot(record: dict, path: Path) -> None:
    """Objective against cost (median, min-max band), accuracy per seed, learned thresholds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (curves, accuracy, images) = plt.subplots(1, 3, figsize=(15, 4.2))
    for i, (name, m) in enumerate(record["methods"].items()):
        y = np.asarray(m["curves"])
        x = (np.arange(y.shape[1]) * m["curve_stride"] + 1) * m["curve_cost_per_step"]
        curves.plot(x, np.median(y, 0), label=name, color=f"C{i}")
        curves.fill_between(x, y.min(0), y.max(0), color=f"C{i}", alpha=0.25)
        values = m["val_accuracy"]
        accuracy.scatter(np.full(len(values), i), values, color=f"C{i}")
        accuracy.hlines(np.median(values), i - 0.25, i + 0.25, color=f"C{i}")
    curves.set(
        xlabel=f"cost (evaluations + {GRADIENT_COST} x gradient calls)",
        ylabel="training objective",
        yscale="log",
        title=f"median and min-max over {record['seeds']} seeds",
    )
    curves.legend()
    names = list(record["methods"])
    accuracy.set(xticks=range(len(names)), xticklabels=names, ylabel="validation accuracy")
    accuracy.set_title("final validation accuracy per seed")
    pair = np.concatenate(
        [
            np.reshape(record["initial_thresholds_seed0"], (8, 8)),
            np.full((8, 1), np.nan),
            np.reshape(record["methods"]["hybrid"]["thresholds_seed0"], (8, 8)),
        ],
        axis=1,
    )
    shown = images.imshow(pair, cmap="viridis", vmin=0, vmax=1)
    images.set_title("pixel thresholds, seed 0: initial | hybrid")
    images.axis("off")
    figure.colorbar(shown, ax=images, fraction=0.03)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a few steps and seeds (tests)")
    parser.add_argument("--steps", type=int, help="hybrid steps; the others get equal cost")
    parser.add_argument("--seeds", type=int, help="initialisations and CMA-ES draws")
    parser.add_argument("--out", type=Path, default=Path("results/hybrid"), help="output folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    size = QUICK if args.quick else DEFAULTS
    steps, seeds = args.steps or size["steps"], args.seeds or size["seeds"]
    record = run(steps, seeds)
    print(table(record))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hybrid_digits.json").write_text(json.dumps(record))
    plot(record, args.out / "hybrid_digits.png")
    print(f"wrote {args.out / 'hybrid_digits.json'} and {args.out / 'hybrid_digits.png'}")
    return record


if __name__ == "__main__":
    main()
