"""Whole training steps, side by side: forward, backward, update and apply, per layout.

    python benchmarks/steps.py                  # the full suite (about 10 minutes on 2 cores)
    python benchmarks/steps.py --quick          # tiny models, 2 repeats: the smoke test (seconds)
    python benchmarks/steps.py --models mlp --out /tmp/steps   # one model
    python benchmarks/steps.py --report benchmarks/results/steps/results.json --out /tmp/r

Issue 17, item 4. Three models, each trained by one jitted step that computes the
loss and its gradient, runs the optimizer and applies the update, with params and
state donated:

- ``mlp``: a residual MLP of ``--mlp-layers`` (1000) dense layers of width
  ``--mlp-width`` (32), ``x <- x + tanh(x w + b) / sqrt(layers)``, on a batch of 8 rows
  and a squared-error loss: 2000 small leaves, 1.06M parameters. Batch and width are
  small so that the forward and backward passes cost little beside the optimizer and
  the per-leaf cost shows.
- ``transformer``: 12 pre-norm blocks (4-head causal self-attention without biases, a
  GELU MLP of width 4d, two layer norms with scale and bias), d = 256, a token
  embedding tied to the output head and a final norm: 147 leaves, 9.5M parameters;
  next-token cross-entropy over 2 sequences of 16 random tokens (vocabulary 256).
- ``cnn``: the digits CNN of the main job (``examples/compare_optimizers.py``: its
  ``CNN(padding="SAME")`` and ``loss_fn``, dropout on, one fixed key) on a batch of
  64 digits: 6 leaves, 0.5M parameters.

Implementations: optax per leaf, gradtx per leaf, ``gradtx.multi_tensor`` (the
optimizer packs and unpacks per step), and gradtx on ``FlatParams`` (the params
held as one buffer per dtype between steps; the loss reads ``fp.to_tree()``
inside the step, so ``jax.grad`` gives a FlatParams of gradients). Two chains,
bench.py's: Adam, and AdamW + clip_by_global_norm + warmup-cosine.

Measured, with bench.py's machinery (``interleaved``, ``RssPeak``, ``machine``):

- step time: the median of ``--repeats`` steps after ``--warmup``, in rounds over
  the four implementations of a case (and the fastest step);
- compile time: wall time of ``jax.jit(step).lower(...).compile()``;
- peak memory, two ways: XLA's plan for the compiled step (arguments + outputs -
  donated + temporaries, ``Compiled.memory_analysis()``: exact, and what the goal is
  judged on, since ``memory_stats()`` is absent on CPU), and the resident bytes
  (params, state, batch) plus the rise of the process's RSS over two steps (1 ms
  samples: coarse, and includes the allocator's caching);
- the loss of each implementation's first three steps (all four start from the
  same params and see the same batch, so they must agree: the test checks it).

Writes ``results.json`` and ``summary.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import resource
import statistics
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "examples"))
import bench  # noqa: E402
from bench import GRADTX, MULTI, OPTAX  # noqa: E402

import gradtx  # noqa: E402

FLAT = "gradtx FlatParams"
IMPLS = (OPTAX, GRADTX, MULTI, FLAT)
CHAINS = ("adam", "adamw+clip+schedule")
TRAJECTORY_STEPS = 3  # first steps whose losses are recorded
# Issue 17: whole step / optax per leaf, per model; every implementation of ours no slower
# than gradtx per leaf, and no higher peak memory.
GOALS = {"mlp": 0.5, "transformer": 0.9, "cnn": 1.0}


class Model(NamedTuple):
    """A model set up for benchmarking: host params (numpy), a loss, a fixed batch."""

    name: str
    describe: str
    params: Any  # tree of numpy arrays: each runner makes its own device copy (donation)
    loss: Any  # (params tree, batch) -> scalar
    batch: Any


# ---------------------------------------------------------------------------------------------
# Models


def mlp(layers: int, width: int, batch: int = 8, seed: int = 0) -> Model:
    rng = np.random.default_rng(seed)
    params = {
        "layers": [
            {
                "w": (rng.standard_normal((width, width)) / math.sqrt(width)).astype(np.float32),
                "b": np.zeros(width, np.float32),
            }
            for _ in range(layers)
        ]
    }
    x = rng.standard_normal((batch, width)).astype(np.float32)
    target = rng.standard_normal((batch, width)).astype(np.float32)

    def loss(params, batch):
        x, target = batch
        scale = 1 / math.sqrt(len(params["layers"]))  # keeps x of order one at any depth
        for layer in params["layers"]:
            x = x + scale * jnp.tanh(x @ layer["w"] + layer["b"])
        return jnp.mean((x - target) ** 2)

    text = (
        f"residual MLP, {layers} dense layers {width}x{width} + bias, "
        f"x <- x + tanh(x w + b) / sqrt({layers}), batch {batch}, squared error"
    )
    return Model("mlp", text, params, loss, (x, target))


def _layer_norm(x, norm):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + 1e-5) * norm["scale"] + norm["bias"]


def transformer(
    blocks: int, d: int, heads: int = 4, vocab: int = 256, batch: int = 2, seq: int = 16
) -> Model:
    rng = np.random.default_rng(0)

    def dense(n_in, n_out):
        return (rng.standard_normal((n_in, n_out)) * 0.02).astype(np.float32)

    def norm():
        return {"scale": np.ones(d, np.float32), "bias": np.zeros(d, np.float32)}

    params = {
        "embed": dense(vocab, d),
        "blocks": [
            {
                "attention": {name: dense(d, d) for name in ("q", "k", "v", "o")},
                "mlp": {
                    "w_in": dense(d, 4 * d),
                    "b_in": np.zeros(4 * d, np.float32),
                    "w_out": dense(4 * d, d),
                    "b_out": np.zeros(d, np.float32),
                },
                "norm_attention": norm(),
                "norm_mlp": norm(),
            }
            for _ in range(blocks)
        ],
        "norm_final": norm(),
    }
    tokens = rng.integers(0, vocab, (batch, seq + 1), dtype=np.int32)

    def attention(x, w):
        n, t, _ = x.shape
        q, k, v = ((x @ w[name]).reshape(n, t, heads, d // heads) for name in "qkv")
        scores = jnp.einsum("nthc,nshc->nhts", q, k) / math.sqrt(d // heads)
        causal = jnp.tril(jnp.ones((t, t), bool))
        weights = jax.nn.softmax(jnp.where(causal, scores, -1e9), axis=-1)
        return jnp.einsum("nhts,nshc->nthc", weights, v).reshape(n, t, d) @ w["o"]

    def loss(params, tokens):
        x = params["embed"][tokens[:, :-1]]
        for block in params["blocks"]:
            x = x + attention(_layer_norm(x, block["norm_attention"]), block["attention"])
            h = _layer_norm(x, block["norm_mlp"])
            m = block["mlp"]
            x = x + jax.nn.gelu(h @ m["w_in"] + m["b_in"]) @ m["w_out"] + m["b_out"]
        logits = _layer_norm(x, params["norm_final"]) @ params["embed"].T
        log_p = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(log_p, tokens[:, 1:, None], axis=-1))

    text = (
        f"{blocks} pre-norm blocks, d={d}, {heads} heads causal attention (no biases), "
        f"GELU MLP 4d, 2 layer norms; tied embedding ({vocab} tokens), final norm; "
        f"batch {batch} x {seq} tokens, next-token cross-entropy"
    )
    return Model("transformer", text, params, loss, tokens)


def cnn(batch: int = 64) -> Model:
    """The main job's model and loss, imported: examples/compare_optimizers.py."""
    import compare_optimizers
    import datasets

    data = datasets.load_digits()
    model = compare_optimizers.CNN(padding="SAME")
    x, y = data.x_train[:batch], data.y_train[:batch]
    params = model.init(jax.random.key(0), x[:1], train=False)["params"]

    def loss(params, batch):
        x, y, weights, key = batch
        return compare_optimizers.loss_fn(model, params, x, y, weights, key)

    text = compare_optimizers.architecture(data, "SAME").split("\n")[0] + f"; batch {batch}"
    host = jax.tree.map(np.asarray, params)
    return Model("cnn", text, host, loss, (x, y, np.ones(batch, np.float32), jax.random.PRNGKey(1)))


def models(args) -> dict:
    if args.quick:
        build = {
            "mlp": lambda: mlp(layers=20, width=4),
            "transformer": lambda: transformer(blocks=2, d=16, vocab=32, seq=8),
            "cnn": cnn,
        }
    else:
        build = {
            "mlp": lambda: mlp(args.mlp_layers, args.mlp_width),
            "transformer": lambda: transformer(args.blocks, args.d_model),
            "cnn": cnn,
        }
    return {name: build[name]() for name in args.models}


# ---------------------------------------------------------------------------------------------
# Steps


def train_step(model: Model, impl: str, chain: str):
    """The whole step of ``impl``, its starting params and state: (step, params, state).

    ``step(params, state, batch) -> (params, state, loss)``, not yet jitted.
    """
    build = bench.CHAINS[chain].build
    tx, apply_updates = bench.jax_transform(GRADTX if impl == FLAT else impl, build)
    params = jax.tree.map(jnp.array, model.params)
    if impl == FLAT:
        params = gradtx.FlatParams.from_tree(params)

        def loss(fp, batch):
            return model.loss(fp.to_tree(), batch)
    else:
        loss = model.loss

    def step(params, state, batch):
        value, grads = jax.value_and_grad(loss)(params, batch)
        updates, state = tx.update(grads, state, params)
        return apply_updates(params, updates), state, value

    return step, params, tx.init(params)


def _plan(compiled) -> dict:
    plan = compiled.memory_analysis()
    return {
        "xla_peak_bytes": plan.argument_size_in_bytes
        + plan.output_size_in_bytes
        - plan.alias_size_in_bytes
        + plan.temp_size_in_bytes,
        "xla_temp_bytes": plan.temp_size_in_bytes,
        "donated_bytes": plan.alias_size_in_bytes,
    }


def runner(model: Model, impl: str, chain: str) -> bench.Runner:
    """``impl``'s step compiled once (timed), run on the model's fixed batch."""
    step, params, state = train_step(model, impl, chain)
    batch = jax.tree.map(jnp.asarray, model.batch)
    start = time.perf_counter()
    lowered = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, batch)
    lower_s = time.perf_counter() - start
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start
    losses = []

    def run():
        nonlocal params, state
        params, state, loss = compiled(params, state, batch)
        loss.block_until_ready()  # all outputs of one execution are ready together
        if len(losses) < TRAJECTORY_STEPS:
            losses.append(loss)

    def info():
        return {
            "lower_s": lower_s,
            "compile_s": compile_s,
            "leaves": len(jax.tree.leaves(model.params)),
            "params": sum(a.size for a in jax.tree.leaves(model.params)),
            "state_bytes": bench.tree_nbytes(state),
            "resident_bytes": bench.tree_nbytes((params, state, batch)),
            "losses": [float(x) for x in losses],
            **_plan(compiled),
        }

    return bench.Runner(run, info)


def measure(model: Model, chain: str, args, progress) -> list[dict]:
    """The four implementations of ``chain`` on ``model``, timed in interleaved rounds."""
    runners = {}
    for impl in IMPLS:
        progress(f"{model.name}, {chain}, compiling {impl}")
        runners[impl] = runner(model, impl, chain)
    progress(f"{model.name}, {chain}, timing")
    times = bench.interleaved({i: r.step for i, r in runners.items()}, args.warmup, args.repeats)
    records = []
    for impl, r in runners.items():
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        with bench.RssPeak() as rss:
            r.step()
            r.step()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        info = r.info()
        records.append(
            {
                "model": model.name,
                "chain": chain,
                "impl": impl,
                "step_s": statistics.median(times[impl]),
                "step_min_s": min(times[impl]),
                **info,
                "peak_rss_bytes": info["resident_bytes"] + rss.rise,
                # glibc serves blocks over 32 MB (XLA's temporaries of a step are one) from
                # fresh pages: a fault per 4 kB page, every step (see the flat step's note).
                "page_faults_per_step": faults / 2,
            }
        )
    return records


# ---------------------------------------------------------------------------------------------
# Analysis and report

RATIOS = {"step": "step_s", "fastest": "step_min_s", "compile": "compile_s"}
MEMORY = {"XLA peak": "xla_peak_bytes", "RSS peak": "peak_rss_bytes"}


def analyse(results: dict) -> None:
    """Adds each record's ratios to optax per leaf and gradtx per leaf, and the issue's goals."""
    by_key = {(r["model"], r["chain"], r["impl"]): r for r in results["step"]}
    for r in results["step"]:
        for other in (OPTAX, GRADTX):
            base = by_key[(r["model"], r["chain"], other)]
            for name, field in (RATIOS | MEMORY).items():
                r[f"{name} / {other}"] = r[field] / base[field]
    goals = []
    for r in results["step"]:
        if r["impl"] == OPTAX:
            continue
        # Peak memory within 1% of per-leaf gradtx's: scalars and small temporaries, not a copy.
        checks = [(f"step / {GRADTX}", 1.0), (f"XLA peak / {GRADTX}", 1.01)]
        if r["model"] in GOALS:
            checks.insert(0, (f"step / {OPTAX}", GOALS[r["model"]]))
        for ratio, threshold in checks:
            if r["impl"] == GRADTX and ratio.endswith(GRADTX):
                continue
            fastest = r.get(ratio.replace("step", "fastest")) if ratio.startswith("step") else None
            goals.append(
                {
                    "model": r["model"],
                    "chain": r["chain"],
                    "impl": r["impl"],
                    "goal": ratio,
                    "threshold": threshold,
                    "value": r[ratio],
                    "value_fastest": fastest,
                    "met": r[ratio] <= threshold,
                }
            )
    results["goals"] = goals


def _num(x, fmt="{:.3g}") -> str:
    return bench._num(x, fmt)


def _model_table(results: dict, model: str) -> str:
    header = ["chain", "impl", "step ms", "fastest ms", "/ optax", "/ gradtx", "compile s"]
    header += ["compile / optax", "XLA peak MB", "XLA temp MB", "XLA peak / gradtx"]
    header += ["RSS peak MB", "page faults / step"]
    rows = [
        [
            r["chain"],
            r["impl"],
            _num(r["step_s"] * 1e3),
            _num(r["step_min_s"] * 1e3),
            _num(r[f"step / {OPTAX}"], "{:.2f}"),
            _num(r[f"step / {GRADTX}"], "{:.2f}"),
            _num(r["compile_s"]),
            _num(r[f"compile / {OPTAX}"], "{:.2f}"),
            _num(r["xla_peak_bytes"] / 1e6),
            _num(r["xla_temp_bytes"] / 1e6),
            _num(r[f"XLA peak / {GRADTX}"], "{:.2f}"),
            _num(r["peak_rss_bytes"] / 1e6),
            _num(r.get("page_faults_per_step"), "{:.0f}"),
        ]
        for r in results["step"]
        if r["model"] == model
    ]
    return bench._table(header, rows)


def _goals_table(results: dict) -> str:
    rows = [
        [
            g["model"],
            g["chain"],
            g["impl"],
            f"{g['goal']} <= {g['threshold']:g}",
            f"{g['value']:.3g}",
            _num(g["value_fastest"]),
            "met" if g["met"] else "**not met**",
        ]
        for g in results["goals"]
    ]
    header = ["model", "chain", "impl", "goal", "median", "fastest", ""]
    return bench._table(header, rows) + (
        "\n\nmedian: the ratio of median step times (what the goal is judged on); fastest: of "
        "each side's fastest step. Memory: XLA's plan for the compiled step."
    )


def summary(results: dict) -> str:
    out = [bench._header(results)]
    for name, describe in results["models"].items():
        first = next(r for r in results["step"] if r["model"] == name)
        out.append(
            f"\n### {name}: {first['leaves']} leaves, {bench.label(first['params'])} parameters"
            f"\n\n{describe}\n\n{_model_table(results, name)}"
        )
    out.append(f"\n### Goals (issue 17, whole step)\n\n{_goals_table(results)}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# Driver


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny models, 2 repeats")
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "results" / "steps")
    parser.add_argument("--models", nargs="+", choices=("mlp", "transformer", "cnn"))
    parser.add_argument("--chains", nargs="+", choices=CHAINS)
    parser.add_argument("--repeats", type=int, help="timed steps per case (20; quick: 2)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (3; quick: 1)")
    parser.add_argument("--mlp-layers", type=int, default=1000)
    parser.add_argument("--mlp-width", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=12)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--report", type=pathlib.Path, help="re-render a results.json; no runs")
    args = parser.parse_args(argv)
    args.models = args.models or ["cnn", "transformer", "mlp"]  # the longest compiles last
    args.chains = args.chains or list(CHAINS)
    if args.repeats is None:
        args.repeats = 2 if args.quick else 20
    if args.warmup is None:
        args.warmup = 1 if args.quick else 3
    return args


def run(args, save) -> dict:
    """Every case, in one process; ``save(results)`` after each, so a long run leaves its part."""
    config = {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()}
    config["impls"] = list(IMPLS)
    results = {"machine": bench.machine(), "config": config, "models": {}, "step": []}
    built = models(args)
    cases = [(m, c) for m in built.values() for c in args.chains]
    with tqdm(total=len(cases), desc="warm-up", file=sys.stderr) as bar:
        if not args.quick:  # one-time tracing caches must not land on the first compile times
            tiny = mlp(layers=2, width=2)
            for impl in IMPLS:
                runner(tiny, impl, CHAINS[-1])
        for model, chain in cases:
            results["models"][model.name] = model.describe
            results["step"] += measure(model, chain, args, bar.set_description)
            results["machine"]["load_average_end"] = os.getloadavg()
            save(results)
            bar.update()
    return results


def save(results: dict, out: pathlib.Path) -> str:
    """Adds the ratios and goals, writes results.json and summary.md; returns the summary."""
    analyse(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    text = summary(results)
    (out / "summary.md").write_text(text)
    return text


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.report:
        results = json.loads(args.report.read_text())
    else:
        results = run(args, lambda results: save(results, args.out))
    print(save(results, args.out))
    return results


if __name__ == "__main__":
    main()
