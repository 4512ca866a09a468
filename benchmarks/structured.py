"""The structured optimizers' steps, side by side: gradtx, optax and torch.optim, in one run.

    python benchmarks/structured.py                    # the default cases (about 10 minutes here)
    python benchmarks/structured.py --quick            # matrices 8 times smaller: the smoke test
    python benchmarks/structured.py --cases muon-4096x1024 --out /tmp/structured

Cases (float32, one fixed gradient per leaf, params and state donated, as benchmarks/bench.py
times its chains, with its ``interleaved`` rounds and runners):

- ``muon-1024x1024``, ``muon-4096x1024``: ``gradtx.muon`` against ``optax.contrib.muon`` and
  ``torch.optim.Muon`` (weight decay 0, as optax's default; torch runs Newton-Schulz in
  bfloat16, so a bfloat16 gradtx chain, ``scale_by_muon(ns_dtype=bfloat16)``, is timed too);
- ``adafactor``: a 1024 x 1024 and a 4096 x 1024 matrix and two biases, ``gradtx.adafactor``
  against ``optax.adafactor`` and ``torch.optim.Adafactor`` (foreach);
- ``shampoo-refresh``, ``soap-refresh``: what refreshing the preconditioner costs. The same
  optimizer with the refresh on every step and never after its first (frequency 10**9), on
  one 1024 x 1024 matrix, against AdamW's step.

Reports the median step (and the fastest), its ratio to the case's reference (optax for
Muon and Adafactor, the step without refresh for Shampoo and SOAP), and the optimizer state
in bytes per parameter; writes ``results.json`` and ``summary.md`` to ``--out``. Ratios
within one run are what count on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import statistics
import sys
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench  # noqa: E402

import gradtx  # noqa: E402

NEVER = 10**9  # a refresh frequency no run reaches


class Impl(NamedTuple):
    name: str
    setup: Any  # (host_params, host_grads) -> bench.Runner


def _jax(name: str, tx, lib=gradtx) -> Impl:
    return Impl(name, lambda p, g: bench.jax_runner(tx, lib.apply_updates, p, g))


def _torch(name: str, make) -> Impl | None:
    if bench.torch_device() is None:
        return None

    def setup(p, g):
        def build(params):
            opt = make(params)
            return opt, opt.step

        return bench.torch_runner(build, p, g)

    return Impl(name, setup)


class Case(NamedTuple):
    shapes: list[tuple[int, ...]]
    impls: list[Impl]
    reference: str  # the implementation the ratios divide by


def _muon_impls() -> list[Impl]:
    bf16 = gradtx.chain(
        gradtx.scale_by_muon(ns_dtype=jnp.bfloat16), gradtx.scale_by_learning_rate(1e-3)
    )
    torch = bench.torch
    return [
        _jax("optax.contrib.muon", optax.contrib.muon(1e-3), optax),
        _jax("gradtx.muon", gradtx.muon(1e-3)),
        _jax("gradtx scale_by_muon(ns_dtype=bfloat16)", bf16),
        _torch("torch.optim.Muon", lambda p: torch.optim.Muon(p, lr=1e-3, weight_decay=0.0)),
    ]


def _adafactor_impls() -> list[Impl]:
    torch = bench.torch
    return [
        _jax("optax.adafactor", optax.adafactor(1e-3), optax),
        _jax("gradtx.adafactor", gradtx.adafactor(1e-3)),
        _torch("torch.optim.Adafactor", lambda p: torch.optim.Adafactor(p, lr=1e-3, foreach=True)),
    ]


def _refresh_impls(name: str, build, frequency: str) -> list[Impl]:
    return [
        _jax("gradtx.adamw", gradtx.adamw(1e-3)),
        _jax(f"gradtx.{name}, no refresh", build(**{frequency: NEVER})),
        _jax(f"gradtx.{name}, refresh every step", build(**{frequency: 1})),
    ]


def cases(quick: bool) -> dict[str, Case]:
    """The cases; ``quick`` shrinks every matrix side by 8 (Adafactor still factors)."""
    k = 8 if quick else 1
    square, tall = (1024 // k, 1024 // k), (4096 // k, 1024 // k)
    shampoo = lambda **kw: gradtx.shampoo(1e-3, start_preconditioning_step=1, **kw)  # noqa: E731
    soap = lambda **kw: gradtx.soap(3e-3, **kw)  # noqa: E731
    return {
        f"muon-{square[0]}x{square[1]}": Case([square], _muon_impls(), "optax.contrib.muon"),
        f"muon-{tall[0]}x{tall[1]}": Case([tall], _muon_impls(), "optax.contrib.muon"),
        "adafactor": Case(
            [square, tall, square[:1], tall[:1]], _adafactor_impls(), "optax.adafactor"
        ),
        "shampoo-refresh": Case(
            [square],
            _refresh_impls("shampoo", shampoo, "preconditioning_compute_steps"),
            "gradtx.shampoo, no refresh",
        ),
        "soap-refresh": Case(
            [square],
            _refresh_impls("soap", soap, "precondition_frequency"),
            "gradtx.soap, no refresh",
        ),
    }


def measure(name: str, case: Case, warmup: int, repeats: int) -> list[dict]:
    host_params = [np.random.default_rng(0).standard_normal(s, np.float32) for s in case.shapes]
    host_grads = [np.random.default_rng(1).standard_normal(s, np.float32) for s in case.shapes]
    count = sum(math.prod(s) for s in case.shapes)
    runners = {impl.name: impl.setup(host_params, host_grads) for impl in case.impls if impl}
    times = bench.interleaved({k: r.step for k, r in runners.items()}, warmup, repeats)
    records = []
    for impl, runner in runners.items():
        info = runner.info()
        records.append(
            {
                "case": name,
                "impl": impl,
                "shapes": case.shapes,
                "step_s": statistics.median(times[impl]),
                "fastest_s": min(times[impl]),
                "state_bytes_per_param": info["state_bytes"] / count,
                "compile_s": info.get("compile_s"),
            }
        )
    reference = next(r["step_s"] for r in records if r["impl"] == case.reference)
    for record in records:
        record["ratio"] = record["step_s"] / reference
    return records


def summary(results: dict) -> str:
    header = "| case | implementation | step (ms) | fastest (ms) | ratio | state bytes/param |"
    lines = [header, "|---|---|---|---|---|---|"]
    for r in results["step"]:
        lines.append(
            f"| {r['case']} | {r['impl']} | {1e3 * r['step_s']:.3g} | {1e3 * r['fastest_s']:.3g}"
            f" | {r['ratio']:.2f} | {r['state_bytes_per_param']:.3g} |"
        )
    machine = results["machine"]
    return (
        f"{machine['cpu']}, {machine['cores']} cores, {machine['backend']}; jax {machine['jax']}, "
        f"optax {machine['optax']}, torch {machine['torch']} ({machine['torch_threads']} "
        f"threads), gradtx {machine['gradtx_commit']}; {results['config']['repeats']} timed "
        f"steps after {results['config']['warmup']}. The ratio divides by the case's reference "
        "(optax; the step without refresh).\n\n" + "\n".join(lines) + "\n"
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="matrices 8 times smaller")
    parser.add_argument("--cases", nargs="+", help="case names (all by default)")
    parser.add_argument("--repeats", type=int, help="timed steps per implementation (10)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (2)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path(__file__).parent / "out")
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    repeats = args.repeats or (3 if args.quick else 10)
    selected = cases(args.quick)
    unknown = set(args.cases or ()) - set(selected)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; known: {sorted(selected)}")
    names = args.cases or list(selected)
    results = {
        "machine": bench.machine(),
        "config": {"quick": args.quick, "warmup": warmup, "repeats": repeats, "cases": names},
        "step": [],
    }
    for name in tqdm(names, desc="structured", file=sys.stderr):
        results["step"] += measure(name, selected[name], warmup, repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    text = summary(results)
    (args.out / "summary.md").write_text(text)
    print(text)
    return results


if __name__ == "__main__":
    main()
