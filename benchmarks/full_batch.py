"""Full-batch optimisation, where curvature pays: L-BFGS against CG, Adam and SciPy.

    python benchmarks/full_batch.py                 # about two minutes here
    python benchmarks/full_batch.py --quick         # a smaller problem: the smoke test
    python benchmarks/full_batch.py --out /tmp/full_batch

The problem: multinomial logistic regression on scikit-learn's digits (1,437 training images
of 64 pixels, 10 classes: 650 parameters in a weight matrix and a bias), with an L2 penalty
``1e-3 |W|^2 / 2`` so that the minimum is unique, in float64. Each method runs from zeros until
the gradient's norm is below ``--tol`` (1e-6) or ``--max-steps`` updates; one jitted
``lax.while_loop`` per method, timed on its second call (the first compiles).

- ``gradtx.lbfgs()`` and ``optax.lbfgs()``: the same algorithm (they take the same steps), side
  by side;
- ``gradtx.conjugate_gradient()`` (Polak-Ribiere+, strong-Wolfe line search);
- ``gradtx.adam(lr)`` at the best of a grid of rates (the run reaching the tolerance in the
  fewest steps, or the lowest gradient norm when none does);
- ``scipy.optimize.minimize(method="L-BFGS-B")`` (``gtol`` on the gradient's largest entry,
  so its stopping test is looser than the others' norm: its figures are a reference, not a
  race).

Reports, per method: updates, loss evaluations (line-search trials counted), the gradient
norm reached, the loss, the time; writes ``results.json`` and ``summary.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.optimize

jax.config.update("jax_enable_x64", True)
HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "examples")]
import bench  # noqa: E402
import datasets  # noqa: E402

import gradtx  # noqa: E402

L2 = 1e-3
ADAM_RATES = (3e-3, 1e-2, 3e-2, 1e-1)


def problem(quick: bool):
    """The loss of (W, b) on the digits' training split, and the initial params."""
    data = datasets.load_digits()
    x = jnp.asarray(data.x_train.reshape(len(data.x_train), -1), jnp.float64)
    y = jnp.asarray(data.y_train)
    if quick:
        x, y = x[:200], y[:200]

    def loss(params):
        logits = x @ params["w"] + params["b"]
        nll = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))
        return nll + 0.5 * L2 * jnp.sum(params["w"] ** 2)

    params = {"w": jnp.zeros((x.shape[1], 10)), "b": jnp.zeros(10)}
    return loss, params


def _norm(tree) -> jax.Array:
    return optax.tree.norm(tree)


def run_gradtx_style(tx, loss, params, tol, max_steps, lib, *, line_search: bool) -> dict[str, Any]:
    """A line-search optimizer (value_and_grad reused from its state) or a plain one."""
    value_and_grad = lib.value_and_grad_from_state(loss) if line_search else None

    @jax.jit
    def solve(params):
        def cond(carry):
            _, _, step, gnorm, _ = carry
            return (step < max_steps) & (gnorm > tol)

        def body(carry):
            params, state, step, _, evals = carry
            if value_and_grad is None:
                value, grad = jax.value_and_grad(loss)(params)
                updates, state = tx.update(grad, state, params)
                evals = evals + 1
            else:
                value, grad = value_and_grad(params, state=state)
                updates, state = tx.update(
                    grad, state, params, value=value, grad=grad, value_fn=loss
                )
                evals = evals + gradtx.tree_get(state, "num_linesearch_steps")
            params = lib.apply_updates(params, updates)
            gnorm = _norm(jax.grad(loss)(params))
            return params, state, step + 1, gnorm, evals

        gnorm = _norm(jax.grad(loss)(params))
        evals = jnp.asarray(0 if value_and_grad is None else 1)  # the first value_and_grad
        init = (params, tx.init(params), jnp.asarray(0), gnorm, evals)
        return jax.lax.while_loop(cond, body, init)

    jax.block_until_ready(solve(params))  # compile
    start = time.perf_counter()
    out = jax.block_until_ready(solve(params))
    seconds = time.perf_counter() - start
    final, _, steps, gnorm, evals = out
    return {
        "steps": int(steps),
        "evaluations": int(evals),
        "grad_norm": float(gnorm),
        "loss": float(loss(final)),
        "seconds": seconds,
        "converged": bool(gnorm <= tol),
    }


def run_scipy(loss, params, tol, max_steps) -> dict[str, Any]:
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    value_and_grad = jax.jit(jax.value_and_grad(lambda v: loss(unravel(v))))

    def fun(v):
        value, grad = value_and_grad(jnp.asarray(v))
        return float(value), np.asarray(grad)

    fun(np.asarray(flat))  # compile
    start = time.perf_counter()
    result = scipy.optimize.minimize(
        fun,
        np.asarray(flat),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": tol / np.sqrt(flat.size), "ftol": 0.0, "maxiter": max_steps},
    )
    seconds = time.perf_counter() - start
    gnorm = float(np.linalg.norm(fun(result.x)[1]))
    return {
        "steps": int(result.nit),
        "evaluations": int(result.nfev),
        "grad_norm": gnorm,
        "loss": float(result.fun),
        "seconds": seconds,
        "converged": gnorm <= tol,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "results" / "full_batch")
    args = parser.parse_args(argv)
    max_steps = args.max_steps or (300 if args.quick else 5000)
    loss, params = problem(args.quick)

    results: dict[str, dict[str, Any]] = {}
    runs = {  # each ends with a line search, which needs value=, grad= and value_fn=
        "gradtx.lbfgs": (gradtx.lbfgs(), gradtx),
        "optax.lbfgs": (optax.lbfgs(), optax),
        "gradtx.conjugate_gradient": (gradtx.conjugate_gradient(), gradtx),
    }
    for name, (tx, lib) in runs.items():
        results[name] = run_gradtx_style(
            tx, loss, params, args.tol, max_steps, lib, line_search=True
        )
        print(name, results[name], flush=True)
    adam = {
        rate: run_gradtx_style(
            gradtx.adam(rate), loss, params, args.tol, max_steps, gradtx, line_search=False
        )
        for rate in ADAM_RATES
    }
    best = min(
        adam, key=lambda r: (not adam[r]["converged"], adam[r]["steps"], adam[r]["grad_norm"])
    )
    results[f"gradtx.adam({best:g})"] = adam[best]
    print("adam grid", {r: (a["steps"], a["grad_norm"]) for r, a in adam.items()}, flush=True)
    results["scipy L-BFGS-B"] = run_scipy(loss, params, args.tol, max_steps)
    print("scipy", results["scipy L-BFGS-B"], flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    record = {
        "machine": bench.machine(),
        "command": " ".join(sys.argv),
        "config": {"tol": args.tol, "max_steps": max_steps, "l2": L2, "quick": args.quick},
        "adam_grid": {str(r): a for r, a in adam.items()},
        "results": results,
    }
    (args.out / "results.json").write_text(json.dumps(record, indent=1) + "\n")
    lines = [
        f"Logistic regression on the digits, float64, to a gradient norm of {args.tol:g} "
        f"(at most {max_steps} updates).",
        "",
        "| method | updates | loss evaluations | gradient norm | loss | time |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        evals = "" if r["evaluations"] < 0 else str(r["evaluations"])
        lines.append(
            f"| {name} | {r['steps']} | {evals} | {r['grad_norm']:.1e} | {r['loss']:.10f} "
            f"| {r['seconds']:.3f} s |"
        )
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
