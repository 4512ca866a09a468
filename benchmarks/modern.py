"""Modern optimizers side by side: modular addition (grokking) and the digits CNN.

    python benchmarks/modern.py --out /tmp/modern          # the default run (see below)
    python benchmarks/modern.py --group adaptive --out /tmp/adaptive   # the second group
    python benchmarks/modern.py --quick --out /tmp/m       # the smoke configuration (seconds)
    python benchmarks/modern.py --tasks digits --optimizers adamw muon --seeds 0 --out /tmp/m

Two tasks, all data generated or shipped with scikit-learn (nothing is downloaded):

- ``modadd``: (a + b) mod 97 from the tokens ``[a, b, =]``, a 2-layer decoder-only
  transformer (pre-LayerNorm, causal self-attention, 4 heads, learned positions, no
  dropout) read out at the last position; half of the 97 * 97 pairs train, the other
  half validate (split by seed); batches of 64 drawn without replacement per pass;
- ``digits``: the reference CNN of ``examples/compare_optimizers.py`` (Conv 32 3x3 relu,
  max-pool, dropout 0.25, dense 256, dropout 0.5, dense 10) on scikit-learn's 8x8 digits
  (1,437 train / 360 validation, stratified split by seed), batch 64.

Optimizers (gradtx's recipes at their usual settings; ``OPTIMIZERS`` lists each call), in
two groups (``--group``):

- ``structured`` (the default): AdamW, Adafactor, LAMB, Lion, Muon, Shampoo, SOAP;
- ``adaptive``: AdamW with warmup and cosine decay (the tuned, scheduled baseline),
  AdaBelief, Yogi, Adan, ADOPT, AdEMAMix, Simplified AdEMAMix, MARS, C-AdamW, MADGRAD,
  ACProp, LaProp, Optimistic Adam, Optimistic GD, AdamW with reduce_on_plateau, all on a
  rate grid without a schedule; and, at their defaults with no grid and no schedule,
  Schedule-Free AdamW and SGD (evaluated at their averaged point x), Prodigy, D-Adapt
  AdamW, DoG, DoWG, Mechanic around Adam, COCOB, MoMo, MoMo-Adam and Polyak SGD (MoMo and
  Polyak fed the minibatch loss as ``value=``).

A grid is the usual rate times 1/3, 1 and 3; every run has three seeds (data split,
initialisation, batch order, dropout). Weight decay is decoupled and the same for every
optimizer and rate: every step shrinks the weights by the task's ``decay`` (1e-3 on modadd,
which is AdamW's grokking standard weight_decay=1.0 at lr 1e-3; 1e-5 on digits), that is
``weight_decay = decay / lr`` for the structured recipes that multiply it by their rate,
and ``p <- p (1 - decay)`` after each update in the adaptive group (so a step-size-free
method's estimate does not scale it).

All rates and seeds of an optimizer train together in one jitted, donated step vmapped over
(rate, seed); the learning rate is a traced leaf of the transform built inside the vmap.
Step counters stay unbatched, so the ``lax.cond`` refreshes of Shampoo and SOAP remain
conditional. An optimizer whose transform cannot be vmapped over its rate falls back to one
step per rate, vmapped over seeds (the tables say which).

Reported per task and optimizer, at the best rate of the grid (most seeds reaching the
target, then fewest steps, then the best final validation accuracy): steps to the target
validation accuracy (99% on modadd, 97% on digits, evaluated every ``eval_every`` steps),
final validation accuracy, final training loss (mean minibatch loss over the last
evaluation interval), step time (median over evaluation intervals after the first, of the
interval's wall time per step, divided by the runs the vmapped step carries: a throughput,
compilation excluded and Shampoo's and SOAP's periodic refreshes included), compile time,
and optimizer state bytes per parameter. Writes ``results.json``, ``summary.md`` (the
Markdown tables) and ``modern.png`` (validation accuracy against steps, mean over seeds with
the min-max band, one line per optimizer at its best rate) to ``--out``.

Length: the default run (2 tasks x 7 optimizers x 3 rates x 3 seeds, 1,500 modadd steps
with a d_model 64 transformer, 800 digits steps) was sized for ~25 minutes on a 2-core CPU;
on that machine shared with other jobs (load average 6 to 10) its first five optimizers on
modadd alone took 17 minutes, so expect 40 minutes or more there. The issue's d_model 128
with full-batch training would take hours; ``--d-model`` and ``--steps`` change the size.

XLA:CPU (jaxlib 0.10.2) deadlocks the vmapped Shampoo step (Adam graft, a matrix and a
vector leaf, two or more runs, state donated or not: all threads idle at the second
preconditioner refresh) unless its concurrency-optimised scheduler is off, so ``main``
adds ``--xla_cpu_enable_concurrency_optimized_scheduler=false`` to ``XLA_FLAGS`` before
JAX starts its backend. ``results.json`` is rewritten after every optimizer, so an
interrupted run keeps what finished (``"complete": false``), and ``--resume`` goes on from
it. Shampoo's and SOAP's eigendecompositions run in the OpenBLAS that scipy ships, whose
threads spin while they wait: beside a test run, Shampoo's first 100 modadd steps
(compilation included) took 7.0 minutes with them and 3.1 minutes with
``OPENBLAS_NUM_THREADS=1`` (set it before the process starts).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import dataclasses
import functools
import json
import math
import os
import pathlib
import statistics
import sys
import time
from typing import Any

from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import gradtx

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench  # noqa: E402
import compare_optimizers as cnn_example  # noqa: E402  (examples/, with its datasets module)
import datasets  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Models


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with (d, d) projection kernels (matrices for Muon)."""

    heads: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n, length, d = x.shape
        q, k, v = (
            nn.Dense(d, name=name)(x).reshape(n, length, self.heads, d // self.heads)
            for name in ("query", "key", "value")
        )
        scores = jnp.einsum("nthd,nshd->nhts", q, k) / math.sqrt(d // self.heads)
        scores = jnp.where(jnp.tril(jnp.ones((length, length), bool)), scores, -jnp.inf)
        mixed = jnp.einsum("nhts,nshd->nthd", jax.nn.softmax(scores), v)
        return nn.Dense(d, name="out")(mixed.reshape(n, length, d))


class Transformer(nn.Module):
    """A decoder-only transformer read out at its last position: logits over the residues."""

    vocab: int
    classes: int
    length: int
    d_model: int = 64
    heads: int = 4
    mlp: int = 256
    layers: int = 2

    @nn.compact
    def __call__(self, tokens: jax.Array, *, train: bool) -> jax.Array:
        del train  # no dropout; the argument matches the CNN's
        x = nn.Embed(self.vocab, self.d_model, name="embed")(tokens)
        position = nn.initializers.normal(0.02)
        x = x + self.param("position", position, (self.length, self.d_model))
        for _ in range(self.layers):
            x = x + CausalSelfAttention(self.heads)(nn.LayerNorm()(x))
            hidden = nn.relu(nn.Dense(self.mlp)(nn.LayerNorm()(x)))
            x = x + nn.Dense(self.d_model)(hidden)
        return nn.Dense(self.classes, name="head")(nn.LayerNorm()(x[:, -1]))


# ---------------------------------------------------------------------------------------------
# Tasks


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    label: str
    model: nn.Module
    data: Callable[[int], datasets.Dataset]  # seed -> its split
    steps: int
    batch_size: int
    eval_every: int
    target: float  # the validation accuracy whose first step is reported
    decay: float  # the weights' shrink per step, p <- p - decay * p, for every optimizer
    adam_modules: frozenset[str]  # top-level modules Muon leaves to Adam (embeddings, head)
    description: str


def modular_addition(modulus: int, seed: int, train_fraction: float = 0.5) -> datasets.Dataset:
    """Every pair (a, b) as tokens [a, b, =] (``=`` is token ``modulus``), labels (a + b) % p."""
    a, b = np.divmod(np.arange(modulus * modulus), modulus)
    tokens = np.stack([a, b, np.full_like(a, modulus)], axis=1).astype(np.int32)
    labels = ((a + b) % modulus).astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(tokens))
    train, val = np.split(order, [round(train_fraction * len(tokens))])
    description = (
        f"(a + b) mod {modulus}: {len(train):,} train / {len(val):,} validation pairs "
        f"(random split, seed {seed})"
    )
    name = "modular addition"
    return datasets.Dataset(
        name, tokens[train], labels[train], tokens[val], labels[val], description
    )


def make_tasks(args: argparse.Namespace) -> dict[str, Task]:
    p = 97
    mlp = 4 * args.d_model
    transformer = Transformer(p + 1, p, 3, args.d_model, 4, mlp, args.layers)
    return {
        "modadd": Task(
            "modadd",
            f"modular addition (a + b mod 97), {args.layers}-layer transformer",
            transformer,
            functools.partial(modular_addition, p),
            args.steps.get("modadd", 1500),
            64,
            args.eval_every.get("modadd", 100),
            0.99,
            1e-3,
            frozenset({"embed", "position", "head"}),
            f"{args.layers} layers, d_model {args.d_model}, 4 heads, MLP {mlp}, pre-LayerNorm, "
            "learned positions, no dropout",
        ),
        "digits": Task(
            "digits",
            "digits CNN (scikit-learn 8x8)",
            cnn_example.CNN("SAME"),
            lambda seed: datasets.load_digits(seed=seed),
            args.steps.get("digits", 800),
            64,
            args.eval_every.get("digits", 50),
            0.97,
            1e-5,
            frozenset({"Dense_1"}),
            "examples/compare_optimizers.py's CNN, conv padded 'same'",
        ),
    }


# ---------------------------------------------------------------------------------------------
# Optimizers


@dataclasses.dataclass(frozen=True)
class HiddenMatrices:
    """Muon's weight dimension numbers: the rank-2 leaves outside ``adam_modules``.

    The Muon authors leave embeddings and the output layer to Adam; a frozen dataclass so
    that the recipe (which keeps this in a static field) hashes by value.
    """

    adam_modules: frozenset[str]

    def __call__(self, params: Any) -> Any:
        def spec(path, leaf):
            if jnp.ndim(leaf) != 2 or path[0].key in self.adam_modules:
                return None
            return gradtx.MuonDimensionNumbers()

        return jax.tree_util.tree_map_with_path(spec, params)


@dataclasses.dataclass(frozen=True)
class Optimizer:
    label: str
    usual_rate: float
    build: Callable[[Any, float, Task], Any]  # (learning rate, decay per step, task) -> tx
    settings: str  # the call, for the tables
    grid: tuple[float, ...] = (1 / 3, 1.0, 3.0)  # the rates tried, as multiples of usual_rate
    # The step applies the task's decay itself (p <- p (1 - decay) after the update) rather
    # than the optimizer: for the methods whose own decay would be scaled by an estimate.
    decay_in_step: bool = False
    # Where to evaluate: (state, params) -> params (Schedule-Free's x); None: the params.
    eval_params: Callable[[Any, Any], Any] | None = None

    def rates(self) -> tuple[float, ...]:
        return tuple(self.usual_rate * factor for factor in self.grid)


OPTIMIZERS: dict[str, Optimizer] = {
    "adamw": Optimizer(
        "AdamW",
        1e-3,
        lambda lr, decay, task: gradtx.adamw(lr, weight_decay=decay / lr),
        "adamw(lr, weight_decay=decay/lr)",
    ),
    # Relative steps (multiply_by_parameter_scale), so its rates are Adafactor's ~1e-2;
    # its decay is not multiplied by the rate.
    "adafactor": Optimizer(
        "Adafactor",
        1e-2,
        lambda lr, decay, task: gradtx.adafactor(lr, weight_decay_rate=decay),
        "adafactor(lr, weight_decay_rate=decay)",
    ),
    # The decay goes through the trust ratio, so decay/lr is LAMB's nominal rate only.
    "lamb": Optimizer(
        "LAMB",
        3e-3,
        lambda lr, decay, task: gradtx.lamb(lr, weight_decay=decay / lr),
        "lamb(lr, weight_decay=decay/lr)",
    ),
    "lion": Optimizer(
        "Lion",
        1e-4,
        lambda lr, decay, task: gradtx.lion(lr, weight_decay=decay / lr),
        "lion(lr, weight_decay=decay/lr)",
    ),
    # Hidden matrices orthogonalised at lr; embeddings, head, biases, norms and conv
    # kernels take AdamW at lr / 20 (0.02 -> 1e-3), both decaying by `decay` per step.
    "muon": Optimizer(
        "Muon",
        0.02,
        lambda lr, decay, task: gradtx.muon(
            lr,
            weight_decay=decay / lr,
            adam_learning_rate=lr / 20,
            adam_weight_decay=decay / (lr / 20),
            muon_weight_dimension_numbers=HiddenMatrices(task.adam_modules),
        ),
        "muon(lr, adam_learning_rate=lr/20, hidden matrices only)",
    ),
    # Adam grafting (the AlgoPerf Shampoo's choice), so Adam's rates; inverse roots every
    # 10 steps, as is usual (every step is distributed_shampoo's default).
    "shampoo": Optimizer(
        "Shampoo",
        1e-3,
        lambda lr, decay, task: gradtx.shampoo(
            lr,
            graft_type="adam",
            preconditioning_compute_steps=10,
            decoupled_weight_decay=True,
            weight_decay=decay / lr,
        ),
        "shampoo(lr, graft_type='adam', preconditioning_compute_steps=10, decoupled)",
    ),
    "soap": Optimizer(
        "SOAP",
        3e-3,
        lambda lr, decay, task: gradtx.soap(lr, weight_decay=decay / lr),
        "soap(lr, weight_decay=decay/lr): betas (0.95, 0.95), eigenbases every 10 steps",
    ),
}
STRUCTURED = tuple(OPTIMIZERS)


def _adaptive(
    label: str,
    rate: float,
    build: Callable[[Any, Task], Any],
    settings: str,
    tuned: bool = True,
    **kw: Any,
) -> Optimizer:
    """An optimizer of the adaptive group, the decay applied by the step: tuned on the rate
    grid, or (``tuned=False``: the schedule-free and step-size-free methods) run once at its
    default rate."""
    grid = {} if tuned else {"grid": (1.0,)}
    build_tx = lambda lr, decay, task: build(lr, task)  # noqa: E731
    return Optimizer(label, rate, build_tx, settings, decay_in_step=True, **grid, **kw)


def _cosine(lr, task):
    """Linear warmup over 5% of the steps, then cosine decay to 0."""
    return gradtx.warmup_cosine_decay_schedule(0.0, lr, task.steps // 20, task.steps)


# The adaptive, averaging and step-size-free methods (``--group adaptive``). Every one of
# them is decayed by the step, the same shrink per step as the structured group, so the
# step-size-free methods' estimates do not scale it. Tuned methods get the three-point grid
# and no schedule (AdamW-cosine is the tuned, scheduled baseline); the schedule-free and
# step-size-free ones run once per seed at their defaults, untuned, unscheduled.
OPTIMIZERS.update(
    {
        "adamw_cosine": _adaptive(
            "AdamW-cosine",
            1e-3,
            lambda lr, task: gradtx.adamw(_cosine(lr, task), weight_decay=0.0),
            "adamw(warmup_cosine_decay_schedule(0, lr, steps/20, steps))",
        ),
        "adabelief": _adaptive(
            "AdaBelief", 1e-3, lambda lr, t: gradtx.adabelief(lr), "adabelief(lr)"
        ),
        "yogi": _adaptive("Yogi", 1e-3, lambda lr, t: gradtx.yogi(lr), "yogi(lr)"),
        "adan": _adaptive("Adan", 1e-3, lambda lr, t: gradtx.adan(lr), "adan(lr)"),
        "adopt": _adaptive("ADOPT", 1e-3, lambda lr, t: gradtx.adopt(lr), "adopt(lr)"),
        "ademamix": _adaptive("AdEMAMix", 1e-3, lambda lr, t: gradtx.ademamix(lr), "ademamix(lr)"),
        # m accumulates without (1 - b1): steps ~1/(1 - b1) = 100 times Adam's, so its rates
        # are Adam's / 100.
        "simplified_ademamix": _adaptive(
            "Simplified AdEMAMix",
            1e-5,
            lambda lr, t: gradtx.simplified_ademamix(lr),
            "simplified_ademamix(lr)",
        ),
        "mars": _adaptive("MARS", 3e-3, lambda lr, t: gradtx.mars(lr), "mars(lr): AdamW form"),
        "cautious_adamw": _adaptive(
            "C-AdamW",
            1e-3,
            lambda lr, t: gradtx.cautious(gradtx.adamw(lr, weight_decay=0.0)),
            "cautious(adamw(lr))",
        ),
        "laprop": _adaptive("LaProp", 1e-3, lambda lr, t: gradtx.laprop(lr), "laprop(lr)"),
        "madgrad": _adaptive("MADGRAD", 1e-2, lambda lr, t: gradtx.madgrad(lr), "madgrad(lr)"),
        "acprop": _adaptive("ACProp", 1e-3, lambda lr, t: gradtx.acprop(lr), "acprop(lr)"),
        "optimistic_adam_v2": _adaptive(
            "Optimistic Adam",
            1e-3,
            lambda lr, t: gradtx.optimistic_adam_v2(lr),
            "optimistic_adam_v2(lr)",
        ),
        "optimistic_gradient_descent": _adaptive(
            "Optimistic GD",
            3e-2,
            lambda lr, t: gradtx.optimistic_gradient_descent(lr),
            "optimistic_gradient_descent(lr)",
        ),
        # On the minibatch loss, averaged over 50 steps; patience 5 such means.
        "adamw_plateau": _adaptive(
            "AdamW-plateau",
            1e-3,
            lambda lr, t: gradtx.chain(
                gradtx.adamw(lr, weight_decay=0.0),
                gradtx.reduce_on_plateau(factor=0.5, patience=5, accumulation_size=50),
            ),
            "chain(adamw(lr), reduce_on_plateau(0.5, patience=5, accumulation_size=50))",
        ),
        "schedule_free_adamw": _adaptive(
            "Schedule-Free AdamW",
            0.0025,
            lambda lr, task: gradtx.schedule_free_adamw(lr, warmup_steps=task.steps // 20),
            "schedule_free_adamw(warmup_steps=steps/20), evaluated at x",
            eval_params=gradtx.schedule_free_eval_params,
            tuned=False,
        ),
        "schedule_free_sgd": _adaptive(
            "Schedule-Free SGD",
            1.0,
            lambda lr, task: gradtx.schedule_free_sgd(lr, warmup_steps=task.steps // 20),
            "schedule_free_sgd(warmup_steps=steps/20), evaluated at x",
            eval_params=gradtx.schedule_free_eval_params,
            tuned=False,
        ),
        "prodigy": _adaptive(
            "Prodigy", 1.0, lambda lr, t: gradtx.prodigy(lr), "prodigy()", tuned=False
        ),
        "dadapt_adamw": _adaptive(
            "D-Adapt AdamW",
            1.0,
            lambda lr, t: gradtx.dadapt_adamw(lr),
            "dadapt_adamw()",
            tuned=False,
        ),
        "dog": _adaptive("DoG", 1.0, lambda lr, t: gradtx.dog(lr), "dog()", tuned=False),
        "dowg": _adaptive("DoWG", 1.0, lambda lr, t: gradtx.dowg(lr), "dowg()", tuned=False),
        "mechanize": _adaptive(
            "Mechanic (Adam)",
            1.0,
            lambda lr, t: gradtx.mechanize(gradtx.adam(lr)),
            "mechanize(adam(1.0))",
            tuned=False,
        ),
        "cocob": _adaptive("COCOB", 1.0, lambda lr, t: gradtx.cocob(lr), "cocob()", tuned=False),
        "momo": _adaptive(
            "MoMo", 1.0, lambda lr, t: gradtx.momo(lr), "momo(): lower bound 0", tuned=False
        ),
        "momo_adam": _adaptive(
            "MoMo-Adam",
            1e-2,
            lambda lr, t: gradtx.momo_adam(lr),
            "momo_adam(): lower bound 0",
            tuned=False,
        ),
        "polyak_sgd": _adaptive(
            "Polyak SGD",
            1.0,
            lambda lr, t: gradtx.polyak_sgd(lr),
            "polyak_sgd(): f* = 0",
            tuned=False,
        ),
    }
)
GROUPS = {"structured": STRUCTURED, "adaptive": tuple(n for n in OPTIMIZERS if n not in STRUCTURED)}


# ---------------------------------------------------------------------------------------------
# Training


def batch_loss(model, params, x, y, weights, key) -> jax.Array:
    """The weighted mean cross-entropy of a batch (dropout on where the model has it)."""
    logits = model.apply({"params": params}, x, train=True, rngs={"dropout": key})
    return jnp.sum(weights * cnn_example.cross_entropy(logits, y)) / jnp.sum(weights)


def evaluate(model, params, x, y) -> tuple[jax.Array, jax.Array]:
    """Accuracy and mean cross-entropy over a whole validation set."""
    logits = model.apply({"params": params}, x, train=False)
    accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == y)
    return accuracy, jnp.mean(cnn_example.cross_entropy(logits, y))


@dataclasses.dataclass
class Members:
    """The runs one vmapped step carries: per run a rate, a seed and that seed's arrays."""

    rates: list[float]
    seeds: list[int]
    arrays: dict[str, Any]  # each stacked over the runs: x, y, indices, weights, x_val, y_val
    keys: jax.Array  # per run: (init key, dropout key)


def members(task: Task, rates: list[float], seeds: list[int], data: dict) -> Members:
    runs = [(rate, seed) for rate in rates for seed in seeds]
    stacked = {
        name: jnp.asarray(np.stack([data[seed][name] for _, seed in runs]))
        for name in data[seeds[0]]
    }
    keys = jnp.stack([jax.random.split(jax.random.key(seed)) for _, seed in runs])
    return Members([r for r, _ in runs], [s for _, s in runs], stacked, keys)


def seed_arrays(task: Task, seed: int) -> dict[str, np.ndarray]:
    """One seed's split and batch plan (compare_optimizers' plan: a permutation per pass)."""
    data = task.data(seed)
    indices, weights = cnn_example.batch_plan(len(data.x_train), task.batch_size, task.steps, seed)
    return {
        "x": data.x_train,
        "y": data.y_train,
        "indices": indices,
        "weights": weights,
        "x_val": data.x_val,
        "y_val": data.y_val,
    }


def state_axes(build: Callable, params: Any) -> Any:
    """vmap axes of an optimizer state: 0, but None (shared) for the integer step counters.

    Shared counters keep ``lax.cond`` on the count a real branch under vmap (a batched
    predicate would turn it into a select that runs both branches every step).
    """
    shapes = jax.eval_shape(build(1.0).init, params)
    return jax.tree.map(lambda x: None if jnp.issubdtype(x.dtype, jnp.integer) else 0, shapes)


def make_step(task: Task, build: Callable, axes: Any, decay_in_step: bool) -> Callable:
    """The vmapped, donated train step: (rates, params, state, loss sums, t, arrays, keys).

    The minibatch loss goes to the update as ``value=`` (Polyak's and MoMo's steps read it;
    the others ignore it).
    """

    def one(rate, params, state, loss_sum, t, arrays, key):
        batch = arrays["indices"][t]
        loss, grads = jax.value_and_grad(batch_loss, argnums=1)(
            task.model,
            params,
            arrays["x"][batch],
            arrays["y"][batch],
            arrays["weights"][t],
            jax.random.fold_in(key, t),
        )
        updates, state = build(rate).update(grads, state, params, value=loss)
        params = gradtx.apply_updates(params, updates)
        if decay_in_step:
            params = jax.tree.map(lambda p: p * (1 - task.decay), params)
        return params, state, loss_sum + loss

    vmapped = jax.vmap(one, in_axes=(0, 0, axes, 0, None, 0, 0), out_axes=(0, axes, 0))
    return jax.jit(vmapped, donate_argnums=(1, 2, 3))


@functools.partial(jax.jit, static_argnums=0)
def evaluate_all(model, params, x_val, y_val):
    return jax.vmap(functools.partial(evaluate, model))(params, x_val, y_val)


@dataclasses.dataclass
class Group:
    """One compiled step and the runs it trains."""

    runs: Members
    vmapped_rate: bool
    curves: list[list[tuple[int, float, float, float]]]  # per run: (step, acc, loss, train)
    compile_s: float
    interval_s: list[float]  # wall time of each evaluation interval
    interval_steps: list[int]
    state_bytes_per_param: float


def train_group(task: Task, optimizer: Optimizer, runs: Members, traced_rate: bool, bar) -> Group:
    """Trains ``runs`` together for ``task.steps`` steps, evaluating every ``eval_every``."""
    if traced_rate:
        build = functools.partial(optimizer.build, decay=task.decay, task=task)
    else:  # every run of the group has the same rate, a Python float
        fixed = optimizer.build(runs.rates[0], task.decay, task)
        build = lambda rate: fixed  # noqa: E731
    init_keys, dropout_keys = runs.keys[:, 0], runs.keys[:, 1]
    first_x = runs.arrays["x"][0, :1]
    one_params = jax.eval_shape(lambda: task.model.init(init_keys[0], first_x, train=False))
    one_params = one_params["params"]
    axes = state_axes(build, one_params)
    rates = jnp.asarray(runs.rates, jnp.float32)

    @jax.jit  # op by op, a vmapped init takes longer than compiling it
    def init(rates, init_keys):
        params = jax.vmap(lambda k: task.model.init(k, first_x, train=False)["params"])(init_keys)
        return params, jax.vmap(lambda r, p: build(r).init(p), out_axes=axes)(rates, params)

    params, state = init(rates, init_keys)
    count = sum(math.prod(x.shape) for x in jax.tree.leaves(one_params))
    state_bytes = bench.tree_nbytes(jax.eval_shape(build(1.0).init, one_params)) / count

    loss_sum = jnp.zeros(len(runs.rates))
    arrays = {k: v for k, v in runs.arrays.items() if k not in ("x_val", "y_val")}
    t = jnp.asarray(0, jnp.int32)
    start = time.perf_counter()
    try:
        lowered = make_step(task, build, axes, optimizer.decay_in_step).lower(
            rates, params, state, loss_sum, t, arrays, dropout_keys
        )
    except ValueError:  # a counter that follows the data (ACProp's skips zero gradients)
        n = len(runs.rates)
        shared = lambda a: a is None  # noqa: E731  (None is an empty subtree to jax.tree)
        state = jax.tree.map(
            lambda a, x: x if a == 0 else jnp.broadcast_to(x, (n, *jnp.shape(x))),
            axes,
            state,
            is_leaf=shared,
        )
        axes = jax.tree.map(lambda _: 0, axes, is_leaf=shared)
        lowered = make_step(task, build, axes, optimizer.decay_in_step).lower(
            rates, params, state, loss_sum, t, arrays, dropout_keys
        )
    step = lowered.compile()
    compile_s = time.perf_counter() - start

    where = optimizer.eval_params or (lambda state, params: params)
    evaluation_point = jax.jit(jax.vmap(where, in_axes=(axes, 0)))
    curves = [[] for _ in runs.rates]
    interval_s, interval_steps = [], []
    ends = list(range(task.eval_every, task.steps, task.eval_every)) + [task.steps]
    for begin, end in zip([0, *ends], ends):
        start = time.perf_counter()
        for t in range(begin, end):
            params, state, loss_sum = step(
                rates, params, state, loss_sum, jnp.asarray(t, jnp.int32), arrays, dropout_keys
            )
        train_loss = np.asarray(loss_sum) / (end - begin)  # blocks: the interval is done
        interval_s.append(time.perf_counter() - start)
        interval_steps.append(end - begin)
        loss_sum = jnp.zeros_like(loss_sum)
        accuracy, val_loss = evaluate_all(
            task.model, evaluation_point(state, params), runs.arrays["x_val"], runs.arrays["y_val"]
        )
        for curve, *point in zip(curves, np.asarray(accuracy), np.asarray(val_loss), train_loss):
            curve.append((end, *map(float, point)))
        bar.update(end - begin)
        bar.set_postfix_str(f"{task.name} {optimizer.label}: val acc {float(np.max(accuracy)):.3f}")
    return Group(runs, traced_rate, curves, compile_s, interval_s, interval_steps, state_bytes)


def train_optimizer(task, name, seeds, data, bar) -> list[Group]:
    """All rates and seeds in one vmapped step; one step per rate if the rate cannot be traced."""
    optimizer = OPTIMIZERS[name]
    rates = list(optimizer.rates())
    try:
        return [train_group(task, optimizer, members(task, rates, seeds, data), True, bar)]
    except Exception as error:  # noqa: BLE001  (any tracing failure: fall back, say so)
        bar.write(
            f"{task.name} {optimizer.label}: no vmap over the rate ({error!r}); a step per rate"
        )
        bar.total += task.steps * (len(rates) - 1)
        return [
            train_group(task, optimizer, members(task, [rate], seeds, data), False, bar)
            for rate in rates
        ]


# ---------------------------------------------------------------------------------------------
# Analysis


def run_records(task: Task, name: str, groups: list[Group]) -> list[dict]:
    """One record per (rate, seed): its curve and the figures the tables show."""
    records = []
    for group in groups:
        for rate, seed, curve in zip(group.runs.rates, group.runs.seeds, group.curves):
            reached = [step for step, accuracy, *_ in curve if accuracy >= task.target]
            _, accuracy, val_loss, train_loss = curve[-1]
            records.append(
                {
                    "task": task.name,
                    "optimizer": name,
                    "rate": rate,
                    "seed": seed,
                    "vmapped_rate": group.vmapped_rate,
                    "steps_to_target": reached[0] if reached else None,
                    "final_val_accuracy": accuracy,
                    "final_val_loss": val_loss,
                    "final_train_loss": train_loss,
                    "best_val_accuracy": max(point[1] for point in curve),
                    "curve": curve,
                }
            )
    return records


def timing_record(task: Task, name: str, groups: list[Group]) -> dict:
    """Step time per run (median interval, first one excluded when there are others)."""
    per_run, per_call = [], []
    for group in groups:
        times = [s / n for s, n in zip(group.interval_s, group.interval_steps)]
        call = statistics.median(times[1:] or times)
        per_call.append(call)
        per_run.append(call / len(group.runs.rates))
    return {
        "task": task.name,
        "optimizer": name,
        "step_ms_per_run": 1e3 * statistics.median(per_run),
        "call_ms": 1e3 * statistics.median(per_call),
        "runs_per_call": len(groups[0].runs.rates),
        "compile_s": sum(g.compile_s for g in groups),
        "state_bytes_per_param": groups[0].state_bytes_per_param,
        "vmapped_rate": groups[0].vmapped_rate,
    }


def rate_summary(records: list[dict]) -> dict:
    """Over the seeds of one rate: how many reached the target, mean steps, final figures."""
    steps = [r["steps_to_target"] for r in records if r["steps_to_target"] is not None]
    accuracy = [r["final_val_accuracy"] for r in records]
    train = [r["final_train_loss"] for r in records]
    return {
        "rate": records[0]["rate"],
        "seeds": len(records),
        "reached": len(steps),
        "mean_steps": statistics.mean(steps) if steps else None,
        "mean_accuracy": statistics.mean(accuracy),
        "min_accuracy": min(accuracy),
        "max_accuracy": max(accuracy),
        "std_accuracy": statistics.pstdev(accuracy),
        "mean_train_loss": statistics.mean(train),
        "diverged": sum(not math.isfinite(x) for x in train),
    }


def rank(summary: dict) -> tuple:
    """Most seeds at the target, then fewest steps to it, then best final accuracy."""
    steps = summary["mean_steps"] if summary["mean_steps"] is not None else math.inf
    accuracy = summary["mean_accuracy"] if math.isfinite(summary["mean_accuracy"]) else -1.0
    return (summary["reached"], -steps, accuracy)


def analyse(results: dict) -> None:
    """Adds per-rate summaries and each optimizer's best rate to ``results``."""
    sweep = []
    for task in results["config"]["tasks"]:
        for name in results["config"]["optimizers"]:
            rates = sorted(
                {r["rate"] for r in results["runs"] if (r["task"], r["optimizer"]) == (task, name)}
            )
            summaries = []
            for rate in rates:
                runs = [
                    r
                    for r in results["runs"]
                    if (r["task"], r["optimizer"], r["rate"]) == (task, name, rate)
                ]
                summaries.append(rate_summary(runs))
            best = max(summaries, key=rank)
            for summary in summaries:
                sweep.append({"task": task, "optimizer": name, **summary, "best": summary is best})
    results["sweep"] = sweep


def _fmt_rate(rate: float) -> str:
    return f"{rate:.2g}"


def _steps(summary: dict) -> str:
    if summary["reached"] == 0:
        return f"not reached (0/{summary['seeds']})"
    return f"{summary['mean_steps']:,.0f} ({summary['reached']}/{summary['seeds']})"


def _accuracy(summary: dict) -> str:
    if summary["diverged"] == summary["seeds"]:
        return "diverged"
    text = f"{summary['mean_accuracy']:.4f} ± {summary['std_accuracy']:.4f}"
    return text + (f" ({summary['diverged']} diverged)" if summary["diverged"] else "")


def summary_tables(results: dict) -> str:
    """The Markdown tables: per task the best rate of each optimizer, then the whole sweep."""
    tasks = results["tasks"]
    timing = {(t["task"], t["optimizer"]): t for t in results["timing"]}
    lines = []
    for task in results["config"]["tasks"]:
        info = tasks[task]
        target = f"{100 * info['target']:.0f}%"
        lines += [
            f"### {info['label']}",
            "",
            f"{info['description']}; {info['data']}; batch {info['batch_size']}, "
            f"{info['steps']:,} steps, validation every {info['eval_every']}; weight decay: "
            f"every step shrinks the weights by {info['decay']:g}. Best rate of each "
            f"optimizer's grid; mean over seeds {', '.join(map(str, results['config']['seeds']))} "
            "(± standard "
            f"deviation); step time per run from the step vmapped over rate and seed.",
            "",
        ]
        header = [
            "optimizer",
            "rate (grid)",
            f"steps to {target} val. acc. (seeds)",
            "final val. acc.",
            "final train loss",
            "ms / step / run",
            "compile s",
            "state bytes / param",
        ]
        rows = []
        for name in results["config"]["optimizers"]:
            sweep = [s for s in results["sweep"] if (s["task"], s["optimizer"]) == (task, name)]
            best = next(s for s in sweep if s["best"])
            t = timing[task, name]
            grid = ", ".join(_fmt_rate(s["rate"]) for s in sweep)
            rate = f"{_fmt_rate(best['rate'])} ({grid})"
            if not t["vmapped_rate"]:
                rate += ", a step per rate"
            rows.append(
                [
                    OPTIMIZERS[name].label,
                    rate,
                    _steps(best),
                    _accuracy(best),
                    f"{best['mean_train_loss']:.4g}",
                    f"{t['step_ms_per_run']:.2f}",
                    f"{t['compile_s']:.1f}",
                    f"{t['state_bytes_per_param']:.2f}",
                ]
            )
        lines += [cnn_example.markdown_table(header, rows), ""]
    lines += ["### The whole learning-rate sweep", ""]
    header = ["task", "optimizer", "rate", "steps to target (seeds)", "final val. acc.", "min-max"]
    header.append("final train loss")
    rows = [
        [
            s["task"],
            OPTIMIZERS[s["optimizer"]].label,
            _fmt_rate(s["rate"]) + (" (best)" if s["best"] else ""),
            _steps(s),
            _accuracy(s),
            f"{s['min_accuracy']:.4f}-{s['max_accuracy']:.4f}",
            f"{s['mean_train_loss']:.4g}",
        ]
        for s in results["sweep"]
    ]
    lines += [cnn_example.markdown_table(header, rows), ""]
    return "\n".join(lines)


def _best_runs(results: dict, task: str, name: str) -> tuple[float, list[dict]]:
    """The best rate of an optimizer's grid on a task, and its runs (one per seed)."""
    best = next(
        s for s in results["sweep"] if (s["task"], s["optimizer"], s["best"]) == (task, name, True)
    )
    runs = [
        r
        for r in results["runs"]
        if (r["task"], r["optimizer"], r["rate"]) == (task, name, best["rate"])
    ]
    return best["rate"], runs


def plot(results: dict, path: pathlib.Path) -> None:
    """Each optimizer at its best rate, per task: validation accuracy against steps, or, for
    more than ``CURVES_UP_TO`` optimizers (where curves would hide each other), the final
    validation accuracy of each seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = results["config"]["tasks"]
    names = results["config"]["optimizers"]
    curves = len(names) <= CURVES_UP_TO
    size = (6.5 * len(tasks), 4.5) if curves else (5.5 * len(tasks), 1.5 + 0.28 * len(names))
    figure, axes = plt.subplots(
        1, len(tasks), figsize=size, constrained_layout=True, squeeze=False, sharey=not curves
    )
    draw = _draw_curves if curves else _draw_finals
    for axis, task in zip(axes[0], tasks):
        draw(axis, results, task, names)
        info = results["tasks"][task]
        axis.set_title(info["label"])
        axis.grid(alpha=0.3)
    seeds = len(results["config"]["seeds"])
    what = "mean over {} seeds, min-max band" if curves else "final accuracy of each of {} seeds"
    figure.suptitle(f"best rate of each optimizer's grid: {what.format(seeds)}")
    figure.savefig(path, dpi=110)
    plt.close(figure)


CURVES_UP_TO = 10


def _draw_curves(axis, results: dict, task: str, names: list[str]) -> None:
    import matplotlib.pyplot as plt

    axis.set_prop_cycle(color=plt.get_cmap("tab20")(np.arange(len(names)) % 20))
    for name in names:
        rate, runs = _best_runs(results, task, name)
        steps = [point[0] for point in runs[0]["curve"]]
        accuracy = np.array([[point[1] for point in run["curve"]] for run in runs])
        label = f"{OPTIMIZERS[name].label} (lr {_fmt_rate(rate)})"
        (line,) = axis.plot(steps, accuracy.mean(axis=0), label=label)
        axis.fill_between(
            steps, accuracy.min(axis=0), accuracy.max(axis=0), color=line.get_color(), alpha=0.2
        )
    axis.axhline(results["tasks"][task]["target"], color="grey", linestyle=":", linewidth=0.8)
    axis.set(xlabel="optimizer step", ylabel="validation accuracy", ylim=(0, 1.01))
    axis.legend(fontsize="small", loc="lower right")


def _draw_finals(axis, results: dict, task: str, names: list[str]) -> None:
    """A row per optimizer: each seed's final accuracy, tuned rates blue, untuned orange."""
    for row, name in enumerate(names):
        _, runs = _best_runs(results, task, name)
        finals = [run["final_val_accuracy"] for run in runs]
        tuned = len(OPTIMIZERS[name].grid) > 1
        colour = "tab:blue" if tuned else "tab:orange"
        axis.plot([min(finals), max(finals)], [row, row], color=colour, alpha=0.4, linewidth=2)
        axis.plot(finals, [row] * len(finals), "o", color=colour, markersize=4)
    axis.axvline(results["tasks"][task]["target"], color="grey", linestyle=":", linewidth=0.8)
    axis.set_yticks(range(len(names)), [OPTIMIZERS[n].label for n in names], fontsize="small")
    axis.set(xlabel="final validation accuracy (tuned rate: blue; untuned: orange)", xlim=(0, 1.01))
    axis.invert_yaxis()


# ---------------------------------------------------------------------------------------------
# Command line


def task_counts(values: list[str]) -> dict[str, int]:
    """``TASK=N`` pairs as a dict."""
    counts = {}
    for value in values:
        task, _, count = value.partition("=")
        if task not in ("modadd", "digits") or not count.isdigit() or int(count) < 1:
            raise argparse.ArgumentTypeError(f"expected modadd=N or digits=N, got {value!r}")
        counts[task] = int(count)
    return counts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out"))
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 1-layer d_model 16 transformer, 4 steps, 1 seed",
    )
    parser.add_argument("--tasks", nargs="+", choices=["modadd", "digits"], default=None)
    parser.add_argument(
        "--group",
        choices=list(GROUPS),
        default="structured",
        help="the optimizers run when --optimizers is not given",
    )
    parser.add_argument(
        "--optimizers", nargs="+", choices=list(OPTIMIZERS), default=None, metavar="NAME"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the optimizers --out's results.json finished with the same settings",
    )
    parser.add_argument("--d-model", type=int, default=None, help="modadd's width (64)")
    parser.add_argument("--layers", type=int, default=None, help="modadd's depth (2)")
    parser.add_argument("--steps", nargs="+", default=[], metavar="TASK=N")
    parser.add_argument("--eval-every", nargs="+", default=[], metavar="TASK=N")
    args = parser.parse_args(argv)
    try:
        args.steps, args.eval_every = task_counts(args.steps), task_counts(args.eval_every)
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    quick = args.quick
    args.tasks = list(dict.fromkeys(args.tasks or ["modadd", "digits"]))
    args.optimizers = list(dict.fromkeys(args.optimizers or GROUPS[args.group]))
    args.seeds = list(dict.fromkeys(args.seeds or ([0] if quick else [0, 1, 2])))
    args.d_model = args.d_model or (16 if quick else 64)
    args.layers = args.layers or (1 if quick else 2)
    for counts, value in ((args.steps, 4), (args.eval_every, 2)):
        for task in ("modadd", "digits") if quick else ():
            counts.setdefault(task, value)
    return args


# The flag XLA:CPU needs for the vmapped Shampoo step not to deadlock (module docstring).
XLA_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def configure_xla() -> None:
    """Add ``XLA_SCHEDULER_FLAG`` to ``XLA_FLAGS``; fail if the backend already started."""
    flags = os.environ.get("XLA_FLAGS", "")
    if XLA_SCHEDULER_FLAG in flags.split():
        return
    if jax._src.xla_bridge.backends_are_initialized():  # noqa: SLF001
        raise RuntimeError(
            "benchmarks/modern.py must configure XLA before JAX starts its backend (the "
            f"vmapped Shampoo step deadlocks without {XLA_SCHEDULER_FLAG}): run it as a "
            "script, or set XLA_FLAGS yourself"
        )
    os.environ["XLA_FLAGS"] = f"{flags} {XLA_SCHEDULER_FLAG}".strip()


def write_results(results: dict, out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))


def finished(path: pathlib.Path, results: dict, tasks: dict) -> dict:
    """What an earlier run at ``path`` finished with this run's seeds, tasks and settings.

    ``{"pairs": {(task, optimizer), ...}, "runs": [...], "timing": [...]}``; empty if none.
    """
    if not path.exists():
        return {}
    earlier = json.loads(path.read_text())
    config, ours = earlier["config"], results["config"]
    if config["seeds"] != ours["seeds"]:
        return {}
    pairs = {
        (t["task"], t["optimizer"])
        for t in earlier["timing"]
        if t["task"] in ours["tasks"]
        and earlier["tasks"][t["task"]]["description"] == tasks[t["task"]].description
        and earlier["tasks"][t["task"]]["steps"] == tasks[t["task"]].steps
        and config["settings"].get(t["optimizer"]) == ours["settings"].get(t["optimizer"])
    }
    return {"pairs": pairs, "runs": earlier["runs"], "timing": earlier["timing"]}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    configure_xla()
    tasks = make_tasks(args)
    results: dict[str, Any] = {
        "machine": bench.machine(),
        "command": "python benchmarks/modern.py " + " ".join(argv or sys.argv[1:]),
        "config": {
            "tasks": args.tasks,
            "optimizers": args.optimizers,
            "seeds": args.seeds,
            "settings": {n: OPTIMIZERS[n].settings for n in args.optimizers},
        },
        "tasks": {},
        "runs": [],
        "timing": [],
        "complete": False,
    }
    done = finished(args.out / "results.json", results, tasks) if args.resume else {}
    for key in ("runs", "timing"):
        results[key] = (
            [r for r in done.get(key, []) if (r["task"], r["optimizer"]) in done["pairs"]]
            if done
            else []
        )
    total = sum(tasks[t].steps for t in args.tasks) * len(args.optimizers)
    total -= sum(tasks[t].steps for t, _ in (done["pairs"] if done else ()))
    start = time.perf_counter()
    with tqdm(total=total, unit="step", file=sys.stderr, desc="modern") as bar:
        for name in args.tasks:
            task = tasks[name]
            data = {seed: seed_arrays(task, seed) for seed in args.seeds}
            results["tasks"][name] = {
                "label": task.label,
                "description": task.description,
                "data": task.data(args.seeds[0]).description,
                "steps": task.steps,
                "batch_size": task.batch_size,
                "eval_every": task.eval_every,
                "target": task.target,
                "decay": task.decay,
            }
            for optimizer in args.optimizers:
                if done and (name, optimizer) in done["pairs"]:
                    continue  # --resume: kept from the earlier run
                groups = train_optimizer(task, optimizer, args.seeds, data, bar)
                results["runs"] += run_records(task, optimizer, groups)
                results["timing"].append(timing_record(task, optimizer, groups))
                write_results(results, args.out)  # what finished survives an interruption
    results["complete"] = True
    results["wall_s"] = time.perf_counter() - start
    finish(results, args.out)
    print(f"{results['wall_s'] / 60:.1f} min; tables, numbers and plot in {args.out}")
    return results


def finish(results: dict, out: pathlib.Path) -> None:
    """The analysis, tables and plot of a finished run, written to ``out``."""
    analyse(results)
    table = summary_tables(results)
    print(table)
    write_results(results, out)
    (out / "summary.md").write_text(table)
    plot(results, out / "modern.png")


if __name__ == "__main__":
    main()
