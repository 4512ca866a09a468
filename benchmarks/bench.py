"""Optimizer step and compile time, side by side: gradtx, optax and torch.optim, in one run.

    python benchmarks/bench.py                 # the default suite (see below for its length)
    python benchmarks/bench.py --quick         # the smoke configuration the tests run (seconds)
    python benchmarks/bench.py --large         # adds 128M parameters (default on an accelerator)
    python benchmarks/bench.py --sizes 1e6 --leaves 1 200 --out /tmp/bench   # a quick look
    python benchmarks/bench.py --report benchmarks/results/results.json --out /tmp/r  # re-render

Four chains (Adam; AdamW + global-norm clip + warmup-cosine; SGD with Nesterov
momentum; Adagrad), each on layouts of the same number of parameters:
``--leaves 1`` is one flat vector, 20 to 999 a transformer-like mix (per block
four d x d and two d x 4d matrices, their biases, two norms; plus embeddings),
other counts that many equal leaves. Implementations: optax, gradtx per leaf,
``gradtx.multi_tensor`` (when the installed gradtx has it), and torch.optim
``foreach`` and ``fused`` (when torch is installed and runs on the same kind of
device as JAX, with its default threads).

Measured:

- step time: the median of ``--repeats`` steps after ``--warmup``, taken in
  rounds over all implementations of a case so that a neighbour's load falls on
  all alike (the fastest step is kept too). JAX steps are jitted with params and
  state donated and timed to ``block_until_ready`` on one output (all outputs of
  one XLA execution become ready together);
- a floor per layout: ``p -= 1e-3 * g`` over the same leaves, jitted and donated,
  the least any optimizer over that tree pays (dispatch, a loop per leaf);
- compile time: wall time of ``jax.jit(step).lower(...).compile()``, for every
  step above and against the leaf count (``--compile-leaves``, equal leaves at
  the smallest size) for Adam and the AdamW chain;
- optimizer state bytes per parameter (counters included);
- peak memory: for JAX, XLA's plan for the compiled step (arguments + outputs -
  donated + temporaries, ``Compiled.memory_analysis()``, exact on every
  backend); for every implementation on CPU, the resident bytes (params, grads,
  state) plus the rise of the process's RSS during two steps, sampled every
  millisecond with psutil (``memory_stats()`` is absent on CPU and its peak
  cannot be reset between cases);
- two limits for the bytes an Adam step moves (reads p, g, m, v; writes p, m,
  v): the machine's in-place streaming bandwidth (``a += b`` over buffers
  holding those bytes, numpy and torch, the faster counts) and XLA's streaming
  rate for a jitted, donated elementwise update of one flat buffer.

Prints markdown tables of times, ratios and the issue's goals, and writes
``results.json``, ``summary.md``, ``step_time.png`` and ``compile_time.png`` to
``--out``. Absolute times on a shared machine are noisy; ratios within one run
are what count. On a 2-core CPU the default suite takes about 15 minutes, most
of it XLA compiling the 2000-leaf steps (up to a minute each).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import operator
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
import numpy as np
import optax
import psutil
from tqdm import tqdm

import gradtx

try:
    import torch
except ImportError:
    torch = None

OPTAX, GRADTX, MULTI = "optax", "gradtx", "gradtx multi_tensor"
FOREACH, FUSED = "torch foreach", "torch fused"
SCHEDULE = {"init_value": 0.0, "peak_value": 1e-3, "warmup_steps": 100, "decay_steps": 10_000}


def _warmup_cosine(step: int) -> float:
    """SCHEDULE as a multiplier of torch's base learning rate (torch's LambdaLR)."""
    warmup, decay = SCHEDULE["warmup_steps"], SCHEDULE["decay_steps"]
    if step < warmup:
        return step / warmup
    return 0.5 * (1 + math.cos(math.pi * min(step - warmup, decay - warmup) / (decay - warmup)))


def _torch_adamw_clip_schedule(params, **mode):
    opt = torch.optim.AdamW(params, lr=SCHEDULE["peak_value"], weight_decay=1e-4, **mode)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, _warmup_cosine)

    def step():
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        opt.step()
        schedule.step()

    return opt, step


class Chain(NamedTuple):
    build: Any  # lib -> transform, for lib in (gradtx, optax): the same call in both
    torch: Any  # (params, foreach=True | fused=True) -> (optimizer, step)
    accesses: int  # buffers of len(params) read or written by a step, at least


def _torch_plain(name: str, **kwargs):
    def make(params, **mode):
        opt = getattr(torch.optim, name)(params, **kwargs, **mode)
        return opt, opt.step

    return make


CHAINS = {
    "adam": Chain(
        lambda lib: lib.adam(1e-3),
        _torch_plain("Adam", lr=1e-3),
        7,  # read p, g, m, v; write p, m, v
    ),
    "adamw+clip+schedule": Chain(
        lambda lib: lib.chain(
            lib.clip_by_global_norm(1.0),
            lib.adamw(lib.warmup_cosine_decay_schedule(**SCHEDULE), weight_decay=1e-4),
        ),
        _torch_adamw_clip_schedule,
        8,  # the norm reads g once more
    ),
    "sgd nesterov": Chain(
        lambda lib: lib.sgd(1e-2, momentum=0.9, nesterov=True),
        _torch_plain("SGD", lr=1e-2, momentum=0.9, nesterov=True),
        5,  # read p, g, m; write p, m
    ),
    "adagrad": Chain(
        lambda lib: lib.adagrad(1e-2),
        _torch_plain("Adagrad", lr=1e-2),
        5,  # read p, g, v; write p, v
    ),
}
COMPILE_CHAINS = ("adam", "adamw+clip+schedule")
ADAM_BF16 = lambda lib: lib.adam(1e-3, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)


def _leaves(count: int) -> str:
    return f"{count} leaf" if count == 1 else f"{count} leaves"


def label(size: int) -> str:
    for unit, scale in (("M", 10**6), ("k", 10**3)):
        if size >= scale:
            return f"{size / scale:g}{unit}"
    return str(size)


# ---------------------------------------------------------------------------------------------
# Layouts


def layout(leaves: int, size: int) -> list[tuple[int, ...]]:
    """Shapes of ``leaves`` leaves holding about ``size`` parameters (see the module docstring)."""
    if leaves == 1:
        return [(size,)]
    if 20 <= leaves < 1000:
        return _transformer(leaves, size)
    return small_leaves(leaves, size)


def small_leaves(leaves: int, size: int) -> list[tuple[int, ...]]:
    return [(max(1, size // leaves),)] * leaves


def _transformer(leaves: int, size: int) -> list[tuple[int, ...]]:
    blocks = (leaves - 4) // 16
    extra = leaves - 4 - 16 * blocks  # more d-vectors (gates, scales) to reach the count
    d = max(4, math.isqrt(3 * size // (4 * 12 * blocks)))  # blocks hold about 3/4 of params
    block = [(d, d)] * 4 + [(d, 4 * d), (4 * d, d)]  # attention q, k, v, o; MLP in, out
    block += [(d,)] * 4 + [(4 * d,), (d,)] + [(d,)] * 4  # their biases; two norms
    positions = (64, d)
    rest = blocks * sum(math.prod(s) for s in block) + math.prod(positions) + (2 + extra) * d
    vocab = max(1, (size - rest) // d)
    return [(vocab, d), positions, *block * blocks, *[(d,)] * (2 + extra)]


def _host_arrays(shapes, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape, dtype=np.float32) for shape in shapes]


def tree_nbytes(tree) -> int:
    """Bytes of every array leaf (abstract ``ShapeDtypeStruct`` leaves included)."""
    leaves = jax.tree.leaves(tree)
    return sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in leaves)


# ---------------------------------------------------------------------------------------------
# Measurements


class RssPeak:
    """The largest rise of this process's resident memory while the block runs (1 ms samples)."""

    def __enter__(self):
        self._process = psutil.Process()
        self.start = self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)
        self.rise = self.peak - self.start


class Runner(NamedTuple):
    """One implementation set up for one case."""

    step: Any  # () -> None: runs one step and waits for it
    info: Any  # () -> dict: compile time, state and resident bytes, ... once it has stepped


def interleaved(steps: dict, warmup: int, repeats: int) -> dict:
    """Each step's times, in rounds over all the steps so that a neighbour's load on a shared
    machine falls on every implementation alike; the first ``warmup`` rounds are dropped."""
    times = {name: [] for name in steps}
    for _ in range(warmup + repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: values[warmup:] for name, values in times.items()}


def jax_transform(impl: str, build):
    """``build(lib)`` and ``lib.apply_updates``, lib being optax or gradtx (or its fast path)."""
    lib = optax if impl == OPTAX else gradtx
    tx = build(lib)
    return (gradtx.multi_tensor(tx) if impl == MULTI else tx), lib.apply_updates


def compile_step(tx, apply_updates, params, state, grads):
    """Lowers and compiles a fresh jitted step: (executable, lower seconds, total seconds)."""

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return apply_updates(params, updates), state

    start = time.perf_counter()
    lowered = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads)
    lowered_at = time.perf_counter()
    compiled = lowered.compile()
    return compiled, lowered_at - start, time.perf_counter() - start


def setup_jax(impl, chain, host_params, host_grads) -> Runner:
    return jax_runner(*jax_transform(impl, CHAINS[chain].build), host_params, host_grads)


def jax_runner(tx, apply_updates, host_params, host_grads) -> Runner:
    """A jitted, donated step of ``tx`` over the leaves ``host_params`` with fixed gradients."""
    params = [jnp.array(a) for a in host_params]
    grads = [jnp.array(a) for a in host_grads]
    state = tx.init(params)
    compiled, lower_s, compile_s = compile_step(tx, apply_updates, params, state, grads)

    def step():
        nonlocal params, state
        params, state = compiled(params, state, grads)
        params[0].block_until_ready()

    def info():
        plan = compiled.memory_analysis()
        return {
            "lower_s": lower_s,
            "compile_s": compile_s,
            "state_bytes": tree_nbytes(state),
            "resident_bytes": tree_nbytes((params, grads, state)),
            "xla_peak_bytes": plan.argument_size_in_bytes
            + plan.output_size_in_bytes
            - plan.alias_size_in_bytes
            + plan.temp_size_in_bytes,
            "donated_bytes": plan.alias_size_in_bytes,
        }

    return Runner(step, info)


def torch_device() -> str | None:
    """Where torch runs: on the same kind of device as JAX, else nowhere (None)."""
    if torch is None:
        return None
    if jax.default_backend() == "cpu":
        return "cpu"
    return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else None


def _torch_sync():
    if torch_device() == "cuda":
        torch.cuda.synchronize()


def setup_torch(impl, chain, host_params, host_grads) -> Runner:
    mode = {impl.split()[-1]: True}  # foreach=True or fused=True
    make = CHAINS[chain].torch
    return torch_runner(lambda params: make(params, **mode), host_params, host_grads)


def torch_runner(make, host_params, host_grads) -> Runner:
    """``make(params) -> (optimizer, step)`` over torch copies of the leaves, fixed gradients."""
    params = [torch.nn.Parameter(torch.tensor(a, device=torch_device())) for a in host_params]
    for p, g in zip(params, host_grads):
        p.grad = torch.tensor(g, device=torch_device())
    opt, opt_step = make(params)

    def step():
        opt_step()
        _torch_sync()

    def info():
        state = [t for s in opt.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
        state_bytes = sum(t.nbytes for t in state)
        return {
            "state_bytes": state_bytes,
            "resident_bytes": state_bytes + 2 * sum(p.nbytes for p in params),
        }

    return Runner(step, info)


class Reference(NamedTuple):
    """A step that is not an optimizer, timed in the same rounds: a limit, or the floor."""

    step: Any
    moved: int  # bytes read and written per call


def limit_steps(size: int) -> dict:
    """In-place ``a += b`` (numpy, torch) over as many bytes as an Adam step moves (read p, g,
    m, v; write p, m, v), and XLA's streaming update of the same bytes in one flat buffer."""
    adam_bytes = CHAINS["adam"].accesses * size * 4
    n = math.ceil(CHAINS["adam"].accesses * size / 3)  # a += b moves 3 buffers of n
    a, b = np.ones(n, np.float32), np.ones(n, np.float32)
    steps = {"numpy_inplace": Reference(lambda: np.add(a, b, out=a), 3 * n * 4)}
    if torch_device() is not None:
        ta, tb = (torch.ones(n, device=torch_device()) for _ in range(2))
        steps["torch_inplace"] = Reference(lambda: (ta.add_(tb), _torch_sync()), 3 * n * 4)

    def update(p, g, m, v):  # Adam's traffic with trivial arithmetic
        return p - 1e-3 * g, 0.9 * m + g, 0.999 * v + g

    stream = jax.jit(update, donate_argnums=(0, 2, 3))
    buffers = [jnp.ones(size, jnp.float32) for _ in range(4)]

    def xla_step():
        p, m, v = stream(*buffers)
        buffers[0], buffers[2], buffers[3] = p, m, v
        p.block_until_ready()

    steps["xla_stream"] = Reference(xla_step, adam_bytes)
    return steps


def floor_step(host_params, host_grads) -> Reference:
    """The simplest step over the same tree, ``p -= 1e-3 * g`` per leaf, jitted and donated:
    what any optimizer over that tree pays (dispatch, a loop per leaf, 3 buffers' traffic)."""
    params = [jnp.array(a) for a in host_params]
    grads = [jnp.array(a) for a in host_grads]
    update = jax.jit(lambda ps, gs: [p - 1e-3 * g for p, g in zip(ps, gs)], donate_argnums=0)

    def step():
        nonlocal params
        params = update(params, grads)
        params[0].block_until_ready()

    return Reference(step, 3 * 4 * sum(a.size for a in host_params))


def measure_case(impls, chain, host, references, args, progress):
    """Every implementation of ``chain`` on one layout, and the references, timed in rounds.

    Returns the implementations' records (each with the references' median times of the same
    rounds: ``floor_s``, ``xla_stream_s``, ...) and the references' times."""
    runners = {}
    for impl in impls:
        progress(impl)
        setup = setup_jax if impl in (OPTAX, GRADTX, MULTI) else setup_torch
        runners[impl] = setup(impl, chain, *host)
    steps = {impl: r.step for impl, r in runners.items()} | {
        k: r.step for k, r in references.items()
    }
    times = interleaved(steps, args.warmup, args.repeats)
    same_rounds = {f"{name}_s": statistics.median(times[name]) for name in references}
    records = []
    for impl, runner in runners.items():
        with RssPeak() as rss:
            runner.step()
            runner.step()
        info = runner.info()
        records.append(
            {
                "impl": impl,
                "step_s": statistics.median(times[impl]),
                "step_min_s": min(times[impl]),
                **info,
                "peak_rss_bytes": info["resident_bytes"] + rss.rise,
                **same_rounds,
            }
        )
    return records, {name: times[name] for name in references}


def compile_only(impl: str, chain: str, shapes) -> dict:
    """Compile time of a step on abstract arrays: nothing allocated, nothing run."""
    tx, apply_updates = jax_transform(impl, CHAINS[chain].build)
    params = [jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes]
    state = jax.eval_shape(tx.init, params)
    _, lower_s, compile_s = compile_step(tx, apply_updates, params, state, params)
    return {"lower_s": lower_s, "compile_s": compile_s}


def state_bytes_per_param(impl: str, build, size: int) -> float:
    tx, _ = jax_transform(impl, build)
    params = [jax.ShapeDtypeStruct(s, jnp.float32) for s in layout(200, size)]
    count = sum(math.prod(p.shape) for p in params)
    return tree_nbytes(jax.eval_shape(tx.init, params)) / count


# ---------------------------------------------------------------------------------------------
# Analysis


def _fit_exponent(points) -> float | None:
    """Slope of log(time) against log(leaves), over the counts from 100 when there are two."""
    large = [(n, t) for n, t in points if n >= 100]
    points = large if len(large) >= 2 else points
    if len(points) < 2:
        return None
    x, y = (np.log([p[i] for p in points]) for i in (0, 1))
    return float(np.polyfit(x, y, 1)[0])


def analyse(results: dict) -> None:
    """Adds ratios, compile-growth exponents and the issue's goals to ``results``."""
    steps = results["step"]
    by_key = {(r["chain"], r["leaves"], r["size"], r["impl"]): r for r in steps}
    ours = [i for i in (GRADTX, MULTI) if i in results["config"]["impls"]]

    def ratio(key, impl, other, stat="step_s"):
        a, b = by_key.get((*key, impl)), by_key.get((*key, other))
        return a[stat] / b[stat] if a and b else None

    def bound(chain, leaves, size, other):
        """The ratio at the floor plus XLA's time to stream the rest of the bytes, over other."""
        r = by_key.get((chain, leaves, size, other))
        rest = (CHAINS[chain].accesses - 3) / CHAINS["adam"].accesses  # the floor moves 3
        return r and (r["floor_s"] + rest * r["xla_stream_s"]) / r["step_s"]

    ratios = []
    for chain, leaves, size in dict.fromkeys((r["chain"], r["leaves"], r["size"]) for r in steps):
        key = (chain, leaves, size)
        row = {"chain": chain, "leaves": leaves, "size": size}
        for impl in ours:
            ours_s, stream_s = (by_key[(*key, impl)][k] for k in ("step_s", "xla_stream_s"))
            stream_s *= CHAINS[chain].accesses / CHAINS["adam"].accesses
            row[f"{impl} / {OPTAX}"] = ratio(key, impl, OPTAX)
            row[f"{impl} / {FUSED}"] = ratio(key, impl, FUSED)
            row[f"{impl} XLA stream fraction"] = stream_s / ours_s
        ratios.append(row)
    results["ratios"] = ratios

    growth = {}
    for chain in COMPILE_CHAINS:
        for impl in results["config"]["jax_impls"]:
            points = [
                (r["leaves"], r["compile_s"])
                for r in results["compile"]
                if r["chain"] == chain and r["impl"] == impl
            ]
            growth[f"{chain}, {impl}"] = _fit_exponent(points)
    results["compile_growth_exponent"] = growth

    sizes, counts = results["config"]["sizes"], results["config"]["leaves"]
    small, big = sizes[0], sizes[-1]
    one, mid, many = counts[0], counts[len(counts) // 2], counts[-1]
    sweep = {(r["chain"], r["leaves"], r["impl"]): r["compile_s"] for r in results["compile"]}
    top = max(results["config"]["compile_leaves"])
    stream = {(r["leaves"], r["size"]): r for r in ratios if r["chain"] == "adam"}

    def step_ratio(leaves, size, other, stat="step_s"):
        return lambda impl: ratio(("adam", leaves, size), impl, other, stat)

    def compile_ratio(impl):
        ours_s, optax_s = sweep.get(("adam", top, impl)), sweep.get(("adam", top, OPTAX))
        return ours_s / optax_s if ours_s and optax_s else None

    def stream_fraction(impl):
        row = stream.get((one, big))
        return row and row[f"{impl} XLA stream fraction"]

    def state(name):
        return lambda impl: results["state_bytes_per_param"].get(f"adam {name}, {impl}")

    adam_steps = [  # (leaves, size, against, threshold)
        *[(one, size, OPTAX, 1.05) for size in sizes],
        *[(mid, size, OPTAX, 0.8) for size in sizes],
        (many, big, OPTAX, 0.6),
        *([(many, small, OPTAX, 0.2)] if small != big else []),
        *[(many, size, FUSED, 1.0) for size in sizes],
    ]
    specs = [
        {
            "goal": f"Adam step / {other}, {_leaves(n)}, {label(size)}",
            "measure": step_ratio(n, size, other),
            "fastest": step_ratio(n, size, other, "step_min_s"),
            "bound": lambda impl, key=("adam", n, size, other): bound(*key),
            "op": "<=",
            "threshold": t,
        }
        for n, size, other, t in adam_steps
    ]
    specs += [
        {
            "goal": f"Adam compile time / optax, {_leaves(top)}",
            "measure": compile_ratio,
            "op": "<=",
            "threshold": 0.2,
        },
        {
            "goal": "Adam compile time growth exponent",
            "measure": lambda impl: growth[f"adam, {impl}"],
            "op": "<",
            "threshold": 1.0,
        },
        {
            "goal": f"Adam step vs XLA streaming limit, {_leaves(one)}, {label(big)}",
            "measure": stream_fraction,
            "op": ">=",
            "threshold": 0.85,
        },
        *[
            {
                "goal": f"Adam state bytes per parameter, {name} moments",
                "measure": state(name),
                "op": "<=",
                "threshold": threshold,
            }
            for name, threshold in (("float32", 8.01), ("bfloat16", 4.01))
        ],
    ]
    compare = {"<": operator.lt, "<=": operator.le, ">=": operator.ge}
    goals = []
    for impl in ours:
        for spec in specs:
            value = spec["measure"](impl)
            if value is not None:
                extra = {k: spec[k](impl) if k in spec else None for k in ("fastest", "bound")}
                goals.append(
                    {
                        "goal": spec["goal"],
                        "impl": impl,
                        "value": value,
                        "value_fastest": extra["fastest"],
                        "bound": extra["bound"],
                        "op": spec["op"],
                        "threshold": spec["threshold"],
                        "met": compare[spec["op"]](value, spec["threshold"]),
                    }
                )
    results["goals"] = goals


# ---------------------------------------------------------------------------------------------
# Report


def _table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(rows_) + " |" for rows_ in rows]
    return "\n".join(lines)


def _num(x, fmt="{:.3g}") -> str:
    return "—" if x is None else fmt.format(x)


def _header(results) -> str:
    m, config = results["machine"], results["config"]
    load = [", ".join(f"{x:.1f}" for x in m[k]) for k in ("load_average_start", "load_average_end")]
    return (
        f"{m['cpu']}, {m['cores']} cores, {m['ram_GB']:.0f} GB; {m['backend']} backend; "
        f"jax {m['jax']}, optax {m['optax']}, torch {m['torch']} ({m['torch_threads']} threads), "
        f"gradtx {m.get('gradtx_commit')}; {m['date']}; load average (1, 5, 15 min) {load[0]} "
        f"at the start, {load[1]} at the end; {config['repeats']} timed steps after "
        f"{config['warmup']}, interleaved across implementations."
    )


def _limits_table(results) -> str:
    header = ["params", "MB moved", "numpy a+=b GB/s", "torch a+=b GB/s", "XLA stream GB/s"]
    header += ["machine limit ms", "XLA limit ms"]
    rows = [
        [
            label(r["size"]),
            _num(r["adam_bytes"] / 1e6, "{:.0f}"),
            _num(r["numpy_inplace_GBps"], "{:.1f}"),
            _num(r.get("torch_inplace_GBps"), "{:.1f}"),
            _num(r["xla_stream_GBps"], "{:.1f}"),
            _num(r["adam_bytes"] / r["machine_GBps"] / 1e6),
            _num(r["adam_bytes"] / r["xla_stream_GBps"] / 1e6),
        ]
        for r in results["limits"]
    ]
    return _table(header, rows)


def _steps_table(results) -> str:
    impls = results["config"]["impls"]
    ours = [i for i in (GRADTX, MULTI) if i in impls]
    by_key = {(r["chain"], r["leaves"], r["size"], r["impl"]): r for r in results["step"]}
    ratio_cols = [f"{i} / {o}" for i in ours for o in (OPTAX, FUSED) if o in impls]
    header = ["chain", "leaves", "params", "floor ms", *[f"{i} ms" for i in impls], *ratio_cols]
    header += [f"{i} % of XLA stream" for i in ours]
    rows = []
    for row in results["ratios"]:
        key = (row["chain"], row["leaves"], row["size"])
        times = [by_key.get((*key, i)) for i in impls]
        rows.append(
            [key[0], str(key[1]), label(key[2])]
            + [_num(times[0]["floor_s"] * 1e3)]
            + [_num(t and t["step_s"] * 1e3) for t in times]
            + [_num(row.get(c), "{:.2f}") for c in ratio_cols]
            + [_num(row[f"{i} XLA stream fraction"] * 100, "{:.0f}%") for i in ours]
        )
    text = _table(header, rows)
    noisy = [
        f"{r['chain']}, {_leaves(r['leaves'])}, {label(r['size'])}, {r['impl']}: "
        f"{r['step_s'] / r['step_min_s']:.1f}x"
        for r in results["step"]
        if r["step_s"] > 1.5 * r["step_min_s"]
    ]
    if noisy:
        text += "\n\nMedian over 1.5x the fastest step (noisy): " + "; ".join(noisy) + "."
    return text


def _compile_table(results) -> str:
    config, growth = results["config"], results["compile_growth_exponent"]
    columns = [(c, i) for c in COMPILE_CHAINS for i in config["jax_impls"]]
    sweep = {(r["chain"], r["leaves"], r["impl"]): r["compile_s"] for r in results["compile"]}
    rows = [
        [str(n), *[_num(sweep.get((c, n, i))) for c, i in columns]]
        for n in config["compile_leaves"]
    ]
    rows.append(["growth exponent", *[_num(growth[f"{c}, {i}"], "{:.2f}") for c, i in columns]])
    return _table(["leaves", *[f"{c}, {i} s" for c, i in columns]], rows)


def _memory_table(results, size) -> str:
    rows = [
        [
            str(r["leaves"]),
            r["impl"],
            _num(r["state_bytes"] / r["params"], "{:.2f}"),
            _num(r["peak_rss_bytes"] / 1e6),
            _num(None if r.get("xla_peak_bytes") is None else r["xla_peak_bytes"] / 1e6),
        ]
        for r in results["step"]
        if r["chain"] == "adam" and r["size"] == size
    ]
    header = ["leaves", "impl", "state B/param", "peak MB (RSS)", "XLA plan MB"]
    states = results["state_bytes_per_param"].items()
    return (
        _table(header, rows)
        + "\n\n"
        + _table(["Adam state", "bytes / param"], [[k, f"{v:.3f}"] for k, v in states])
    )


def _verdict(goal: dict) -> str:
    fastest = goal["value_fastest"]
    agree = fastest is None or goal["met"] == (fastest <= goal["threshold"])
    verdict = "met" if goal["met"] else "**not met**"
    return verdict if agree else f"{verdict} (fastest steps: {'not ' * goal['met']}met)"


def _goals_table(results) -> str:
    rows = [
        [
            g["goal"],
            g["impl"],
            f"{g['op']} {g['threshold']:g}",
            f"{g['value']:.3g}",
            _num(g["value_fastest"]),
            _num(g.get("bound")),
            _verdict(g),
        ]
        for g in results["goals"]
    ]
    return _table(["goal", "impl", "target", "median", "fastest", "bound", ""], rows) + (
        "\n\nmedian: the ratio of median step times, which the goal is judged on; fastest: the "
        "ratio of each side's fastest step, less sensitive to a neighbour's load; bound: the "
        "ratio a step would reach at the floor (p -= c * g over the same leaves) plus XLA's "
        "streaming time for the rest of its bytes."
    )


def summary(results: dict) -> str:
    big = results["config"]["sizes"][-1]
    sections = [
        ("Limits (same bytes as an Adam step: read p, g, m, v; write p, m, v)", _limits_table),
        ("Step time (median ms) and ratios", _steps_table),
        ("Compile time (lower + compile, seconds), equal small leaves", _compile_table),
        (f"Adam memory at {label(big)} parameters", lambda r: _memory_table(r, big)),
        ("Goals (issue 6)", _goals_table),
    ]
    out = [_header(results)]
    out += [f"\n### {title}\n\n{table(results)}" for title, table in sections]
    return "\n".join(out) + "\n"


def plot(results: dict, out: pathlib.Path) -> None:
    config = results["config"]
    limits = {r["size"]: r for r in results["limits"]}
    colors = dict(zip(config["impls"], ("C0", "C1", "C2", "C3", "C4")))
    series = {impl: (color, impl, "step_s") for impl, color in colors.items()}
    series["floor: p -= c * g per leaf"] = ("0.6", OPTAX, "floor_s")  # in every record of a case
    styles = dict(zip(config["sizes"], ("-", "--", "-.", ":")))
    fig = Figure(figsize=(11, 9), layout="constrained")
    for ax, chain in zip(fig.subplots(2, 2).flat, CHAINS):
        records = [r for r in results["step"] if r["chain"] == chain]
        for size in config["sizes"]:
            for color, impl, field in series.values():
                points = sorted(
                    (r["leaves"], r[field] * 1e3)
                    for r in records
                    if r["size"] == size and r["impl"] == impl
                )
                ax.plot(*zip(*points), styles[size], marker="o", color=color)
            limit = CHAINS[chain].accesses * size * 4 / limits[size]["xla_stream_GBps"] / 1e6
            ax.axhline(limit, color="k", linestyle=styles[size], linewidth=0.8)
        ax.set(xscale="log", yscale="log", title=chain, xlabel="leaves", ylabel="step time (ms)")
    handles = [Line2D([], [], color=c, marker="o", label=name) for name, (c, *_) in series.items()]
    handles += [
        Line2D([], [], color="k", linestyle=style, label=f"{label(size)} parameters")
        for size, style in styles.items()
    ]
    handles.append(Line2D([], [], color="k", linewidth=0.8, label="horizontal: XLA streaming"))
    fig.legend(handles=handles, loc="outside lower center", ncols=5, fontsize=8)
    fig.savefig(out / "step_time.png", dpi=110)

    fig = Figure(figsize=(11, 4.5), layout="constrained")
    for ax, chain in zip(fig.subplots(1, 2).flat, COMPILE_CHAINS):
        for impl in config["jax_impls"]:
            points = sorted(
                (r["leaves"], r["compile_s"])
                for r in results["compile"]
                if r["chain"] == chain and r["impl"] == impl
            )
            ax.plot(*zip(*points), marker="o", color=colors[impl], label=impl)
            if impl == OPTAX:
                n, t = points[-1]
                counts = np.array([p[0] for p in points])
                ax.plot(counts, t * counts / n, "k:", linewidth=0.8, label="proportional to leaves")
        ax.set(xscale="log", yscale="log", title=chain, xlabel="leaves", ylabel="compile time (s)")
        ax.legend(fontsize=8)
    fig.savefig(out / "compile_time.png", dpi=110)


# ---------------------------------------------------------------------------------------------
# Driver


def _gradtx_commit() -> str | None:
    """The commit of the gradtx checkout measured, "+changes" when gradtx/ differs from it."""
    root = pathlib.Path(gradtx.__file__).resolve().parents[1]
    try:
        commit, changes = (
            subprocess.run(command, cwd=root, capture_output=True, text=True, check=True).stdout
            for command in (
                ["git", "rev-parse", "--short", "HEAD"],
                ["git", "status", "-s", "gradtx"],
            )
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit.strip() + ("+changes" if changes.strip() else "")


def machine() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    device = jax.devices()[0]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_GB": psutil.virtual_memory().total / 1e9,
        "load_average_start": os.getloadavg(),
        "backend": jax.default_backend(),
        "device": device.device_kind,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "optax": optax.__version__,
        "gradtx": gradtx.__version__,
        "gradtx_commit": _gradtx_commit(),
        "torch": None if torch is None else torch.__version__,
        "torch_threads": None if torch is None else torch.get_num_threads(),
        "numpy": np.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke configuration")
    parser.add_argument("--large", action="store_true", help="add 128M parameters")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path(__file__).parent / "out")
    parser.add_argument("--sizes", type=float, nargs="+", help="parameter counts (1M, 16M)")
    parser.add_argument("--leaves", type=int, nargs="+", help="leaf counts (1, 200, 2000)")
    parser.add_argument("--compile-leaves", type=int, nargs="+", help="(10 100 300 1000 2000)")
    parser.add_argument("--repeats", type=int, help="timed steps per case (20)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (3)")
    parser.add_argument("--report", type=pathlib.Path, help="re-render a results.json; no runs")
    args = parser.parse_args(argv)
    quick = {"sizes": [10_000], "leaves": [1, 8], "compile_leaves": [1, 8], "repeats": 3}
    default = {
        "sizes": [1_000_000, 16_000_000],
        "leaves": [1, 200, 2000],
        "compile_leaves": [10, 100, 300, 1000, 2000],
        "repeats": 20,
    }
    if args.large or jax.default_backend() != "cpu":
        default["sizes"].append(128_000_000)
    for key, value in (quick if args.quick else default).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    args.sizes = sorted(int(s) for s in args.sizes)
    args.leaves, args.compile_leaves = sorted(args.leaves), sorted(args.compile_leaves)
    return args


def _progress(bar, case: str):
    def advance(impl: str):
        bar.set_description(f"{case}, {impl}")
        bar.update()

    return advance


def measure_size(size: int, args, impls, bar) -> tuple[list, dict]:
    """Every case at ``size`` parameters, and the limits over all the rounds of all of them."""
    steps, limits = [], limit_steps(size)
    pooled = {name: [] for name in limits}
    for leaves in args.leaves:
        shapes = layout(leaves, size)
        host_params, host_grads = _host_arrays(shapes, 0), _host_arrays(shapes, 1)
        case = {"leaves": leaves, "size": size, "params": sum(a.size for a in host_params)}
        references = limits | {"floor": floor_step(host_params, host_grads)}
        for chain in CHAINS:
            progress = _progress(bar, f"{chain}, {_leaves(leaves)}, {label(size)}")
            host = (host_params, host_grads)
            records, times = measure_case(impls, chain, host, references, args, progress)
            steps += [{"chain": chain, **case, **record} for record in records]
            for name in limits:
                pooled[name] += times[name]
            gc.collect()
    rates = {
        f"{name}_GBps": ref.moved / statistics.median(pooled[name]) / 1e9
        for name, ref in limits.items()
    }
    rates["machine_GBps"] = max(v for k, v in rates.items() if k.endswith("inplace_GBps"))
    return steps, {"size": size, "adam_bytes": limits["xla_stream"].moved, **rates}


def run(args) -> dict:
    """Every measurement, in one process: every case with its limits, then the compile sweep."""
    jax_impls = [OPTAX, GRADTX] + ([MULTI] if hasattr(gradtx, "multi_tensor") else [])
    impls = jax_impls + ([FOREACH, FUSED] if torch_device() is not None else [])
    config = {k: v for k, v in vars(args).items() if k != "out"}
    config.update(impls=impls, jax_impls=jax_impls, chains=list(CHAINS))
    results = {"machine": machine(), "config": config, "limits": [], "step": [], "compile": []}
    sweep = [(c, n, i) for c in COMPILE_CHAINS for n in args.compile_leaves for i in jax_impls]
    cases = len(args.sizes) * len(args.leaves) * len(CHAINS) * len(impls)
    with tqdm(total=1 + cases + len(sweep), desc="warm-up", file=sys.stderr) as bar:
        for impl in jax_impls:  # one-time tracing caches must not land on the first measurement
            compile_only(impl, "adamw+clip+schedule", small_leaves(2, 64))
        bar.update()
        for size in args.sizes:
            steps, limits = measure_size(size, args, impls, bar)
            results["step"] += steps
            results["limits"].append(limits)
        compiled = {  # the compile times the sweep can reuse
            (r["chain"], r["impl"], tuple(layout(r["leaves"], r["size"]))): r
            for r in results["step"]
            if "compile_s" in r
        }
        for chain, leaves, impl in sweep:
            bar.set_description(f"compile {chain}, {_leaves(leaves)}, {impl}")
            shapes = tuple(small_leaves(leaves, args.sizes[0]))
            record = compiled.get((chain, impl, shapes)) or compile_only(impl, chain, shapes)
            results["compile"].append(
                {
                    "chain": chain,
                    "leaves": leaves,
                    "impl": impl,
                    "lower_s": record["lower_s"],
                    "compile_s": record["compile_s"],
                }
            )
            bar.update()
    results["state_bytes_per_param"] = {
        f"adam {name}, {impl}": state_bytes_per_param(impl, build, args.sizes[-1])
        for name, build in [("float32", CHAINS["adam"].build), ("bfloat16", ADAM_BF16)]
        for impl in jax_impls
        if impl != OPTAX or name == "float32"  # optax has no nu_dtype
    }
    results["machine"]["load_average_end"] = os.getloadavg()
    return results


def write_outputs(results: dict, out: pathlib.Path, summary, plot) -> None:
    """``results.json``, ``summary.md`` (``summary(results)``, also printed) and ``plot``'s
    figures in ``out``: what every benchmark script leaves behind."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    text = summary(results)
    (out / "summary.md").write_text(text)
    plot(results, out)
    print(text)


def main(argv=None) -> dict:
    args = parse_args(argv)
    results = json.loads(args.report.read_text()) if args.report else run(args)
    analyse(results)
    write_outputs(results, args.out, summary, plot)
    return results


if __name__ == "__main__":
    main()
