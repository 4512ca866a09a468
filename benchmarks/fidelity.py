"""Measures how closely gradtx reproduces each reference and writes the README's fidelity tables.

    python benchmarks/fidelity.py                  # print the tables
    python benchmarks/fidelity.py --write          # and replace them in README.md
    python benchmarks/fidelity.py --only sparse_adam_errors --only swalr_errors   # some sections

Every cell is the largest relative error, max over steps of
``max|gradtx - reference| / max|reference|`` (all leaves together), over all the
float64 cases the test suite runs for that optimizer and reference, and their number:

- PyTorch, Keras: the trajectories recorded from torch 2.13 and Keras 3.15
  (``tests/reference``), replayed through ``gradtx.compat`` (``test_compat``,
  ``test_factored``, ``test_layerwise``, ``test_matrix``, ``test_compat_keras_structured``,
  ``test_compat_sparse_adam``, ``test_compat_swa_utils``' averaged_model with its buffers and
  ``n_averaged``, ``test_compat_clip_grad``'s clips before SGD or AdamW with torch's total
  norm; ``test_compat_momentum_cycling``'s ports given a scheduler's cycled momentum or
  ``betas[0]``, with its lr and momentum, as rows "<port> (cycled ...)";
  ``test_compat_keras_options``' wrappers with their loss scale, and Keras's base options as
  rows "<optimizer> (<options>)" with the moving averages);
- optax: ``gradtx.<name>`` against ``optax.<name>`` (``test_optax_equivalence``,
  ``test_layerwise``, ``test_lbfgs``, ``test_linesearch``; ``muon``, ``sophia`` and ``sam``
  against ``optax.contrib``'s in ``test_matrix``, ``test_curvature`` and ``test_sam``;
  ``adafactor``'s updates with both fed gradtx's params, as ``test_factored`` compares them);
- pytorch-optimizer: its Shampoo, ScalableShampoo and SOAP recorded (``test_kronecker``);
- paper oracle: naive NumPy implementations of the papers (``tests/oracles.py``,
  ``tests/kronecker_oracles.py``, Newton-Schulz in ``test_matrix``, AdaHessian in
  ``test_curvature``, ASAM in ``test_sam``, the dense ``(|H| + damping)^-1 g`` of one
  saddle-free Newton step in ``test_saddle``, L-BFGS's directions against the dense BFGS
  update in ``test_lbfgs``).

The second table does the same for schedules, one row per torch scheduler class
(``test_compat_lr_scheduler``: ``compat.pytorch.lr_scheduler`` at every recorded step, the
cycled momentum included, ``reduce_lr_on_plateau`` driven by the recorded metric), SWALR
(``test_compat_swa_utils``) and Keras schedule class (``test_compat_keras_schedules``), each
cell ``max|gradtx - reference| / max|reference|`` over all the steps of a case at once: a
schedule is one number per step, which may be zero, and torch's LinearLR ends at -3e-20 where
gradtx's ends at 0, a relative error of 1 for a step but 3e-17 of the rates it takes.

It reuses the test modules' cases, so the tables measure exactly what the tests assert.
Primitives the tests compare on their own (``scale_by_sm3``, ``scale_by_factored_rms``)
and float32 runs are left out, except the two line searches
(``scale_by_zoom_linesearch``, ``scale_by_backtracking_linesearch``), which users chain
by name as optax's.
"""

from __future__ import annotations

import argparse
import collections
import functools
import pathlib
import re
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from jax.flatten_util import ravel_pytree  # noqa: E402
from problems import make_params  # noqa: E402
import replay  # noqa: E402
import test_compat  # noqa: E402
import test_factored  # noqa: E402
import test_kronecker  # noqa: E402
import test_layerwise  # noqa: E402
import test_matrix  # noqa: E402
import test_optax_equivalence  # noqa: E402
import test_oracles  # noqa: E402

import gradtx  # noqa: E402

# pytorch-optimizer has its own column: a third-party collection of re-implementations (its
# ScalableShampoo cites Google's distributed_shampoo), neither torch.optim nor the papers' code.
COLUMNS = ("PyTorch", "Keras", "optax", "authors' package", "pytorch-optimizer", "paper oracle")
SCHEDULE_COLUMNS = ("PyTorch", "Keras")
START, END = "<!-- fidelity:start -->", "<!-- fidelity:end -->"
SCHEDULES_START = "<!-- fidelity-schedules:start -->"
SCHEDULES_END = "<!-- fidelity-schedules:end -->"
# Keras's options on every optimizer (compat.keras's with_base_options), named in the rows.
KERAS_BASE_OPTIONS = (
    "use_ema",
    "ema_overwrite_frequency",
    "gradient_accumulation_steps",
    "loss_scale_factor",
    "exclude_from_weight_decay",
)


def relative_error(actual, expected) -> float:
    """max over steps of max|a - e| / max|e|, for arrays of shape (steps, ...)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    steps = expected.shape[0]
    diff = np.abs(actual - expected).reshape(steps, -1).max(axis=1)
    scale = np.abs(expected).reshape(steps, -1).max(axis=1)
    return float((diff / np.maximum(scale, 1e-300)).max())


def stacked(tree) -> np.ndarray:
    """All leaves of a tree of trajectories side by side: shape (steps, total size)."""
    return np.concatenate(
        [np.asarray(x).reshape(np.shape(x)[0], -1) for x in jax.tree.leaves(tree)], axis=1
    )


def trajectory_error(actual, expected) -> float:
    return relative_error(stacked(actual), stacked(expected))


def schedule_error(actual, expected) -> float:
    """max|a - e| / max|e| over all steps: relative to the schedule's largest value."""
    return relative_error(np.ravel(actual)[None], np.ravel(expected)[None])


def grouped_error(actual: dict, expected: dict, *groups) -> float:
    """The worst trajectory error of groups of keys, each group's leaves together (the params
    apart from a loss scale or a learning rate, whose sizes differ)."""
    return max(
        trajectory_error({k: actual[k] for k in keys}, {k: expected[k] for k in keys})
        for keys in groups
        if keys
    )


def framework_errors(errors):
    for case in test_compat.CASES:
        expected, expected_average = test_compat.recorded(case)
        params, average = test_compat._trajectory(test_compat.build(case))
        column = "PyTorch" if case["framework"] == "pytorch" else "Keras"
        worst = max(relative_error(params[k], expected[k]) for k in expected)
        for k, values in expected_average.items():
            worst = max(worst, relative_error(average[k], values))
        errors[case["optimizer"]][column].append(worst)


def optax_errors(errors):
    params = make_params(jnp.float64, seed=1)
    for name, kwargs in test_optax_equivalence.CASES:
        for loss in test_optax_equivalence.LOSSES.values():
            ours = test_optax_equivalence._run(getattr(gradtx, name)(**kwargs), loss, params)
            theirs = test_optax_equivalence._run(
                getattr(test_optax_equivalence.optax, name)(**kwargs), loss, params
            )
            errors[name]["optax"].append(trajectory_error(ours, theirs))


def oracle_errors(errors):
    x0 = np.asarray(ravel_pytree(make_params(jnp.float64))[0])
    for param in test_oracles.CASES:
        make_tx, oracle = param.values
        name = param.id.split("-")[0]
        tx = make_tx()

        @jax.jit
        def step(params, state, grads, tx=tx):
            updates, state = tx.update(grads, state, params)
            return gradtx.apply_updates(params, updates), state

        for problem in test_oracles.PROBLEMS:
            actual = test_oracles.gradtx_trajectory(step, tx, problem)
            expected = oracle(x0, test_oracles.flat_grad(problem), test_oracles.STEPS)
            errors[name]["paper oracle"].append(relative_error(actual, expected))


def adafactor_errors(errors):
    """gradtx.adafactor against optax's, compat.pytorch.adafactor against recorded torch."""
    params = test_factored._params("float64")
    for kwargs in test_factored.ADAFACTOR_CASES.values():
        # test_adafactor_matches_optax's float64 set-up: optax's decay schedule in float64
        # and its momentum kept in float64.
        kwargs = {"dtype_momentum": jnp.float64, **kwargs}
        factorized = optax._src.factorized
        float64_decay = functools.partial(
            factorized.scale_by_factored_rms, decay_rate_fn=test_factored._float64_decay
        )
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(factorized, "scale_by_factored_rms", float64_decay)
            ours, theirs = gradtx.adafactor(**kwargs), optax.adafactor(**kwargs)
        updates, expected, _, _ = test_factored._side_by_side(ours, theirs, params)
        errors["adafactor"]["optax"].append(trajectory_error(updates, expected))
    data = np.load(test_factored.DATA / "factored.npz")
    for case in test_factored.CASES:
        expected = {k: data[f"{case['index']}/{k}"] for k in test_factored.reference.SHAPES}
        error = trajectory_error(test_factored._ours(case["index"]), expected)
        errors["adafactor"]["PyTorch"].append(error)


def layerwise_errors(errors):
    """lamb, lars, fromage, sm3, novograd against optax; compat.keras.lamb against Keras."""
    params = test_layerwise.initial_params(jnp.float64)
    for name, kwargs in test_layerwise.CASES:
        if name not in test_layerwise.PRIMITIVES:
            ours = test_layerwise._run(test_layerwise._build(gradtx, name, kwargs), params)
            theirs = test_layerwise._run(
                test_layerwise._build(optax, name, kwargs),
                test_layerwise._optax_params(name, params),
            )
            errors[name]["optax"].append(trajectory_error(ours, theirs))
    data = np.load(test_layerwise.DATA / "layerwise.npz")
    for case in test_layerwise.KERAS_CASES:
        expected = {k: data[f"{case['index']}/{k}"] for k in test_layerwise.reference.SHAPES}
        error = trajectory_error(test_layerwise._keras_ours(case["index"]), expected)
        errors["lamb"]["Keras"].append(error)


def muon_errors(errors, notes):
    """muon against optax.contrib.muon and torch.optim.Muon; Newton-Schulz against NumPy."""
    for case, dtype in test_matrix.OPTAX_RUNS:
        if dtype == "float64":
            params = test_matrix._problem_params(dtype)
            ours, theirs = test_matrix._build(case)
            error = trajectory_error(
                test_matrix._trajectory(ours, params), test_matrix._trajectory(theirs, params)
            )
            errors["muon"]["optax"].append(error)
    data = np.load(test_matrix.DATA / "matrix.npz")
    in_lr = []  # torch's default bfloat16 iteration: an absolute error, in units of lr
    for case in test_matrix.TORCH_CASES:
        got = replay.trajectory(test_matrix._torch_port(case), test_matrix.record_matrix)
        expected = {k: data[f"{case['index']}/{k}"] for k in test_matrix.record_matrix.SHAPES}
        if case["ns_float64"]:
            errors["muon"]["PyTorch"].append(trajectory_error(got, expected))
        else:
            deviation = np.abs(stacked(got) - stacked(expected)).max()
            in_lr.append(deviation / case["kwargs"].get("lr", 1e-3))
    if in_lr:
        notes.append(
            f"muon, PyTorch: torch.optim.Muon with its Newton-Schulz iteration in float64; "
            f"with its default bfloat16 iteration ({len(in_lr)} recorded cases) an entry "
            f"moves by at most {max(in_lr):.2f} lr (`test_matrix` allows 0.1 lr)."
        )
    for shape, coeffs, steps, preconditioning in test_matrix.ORACLE_CASES:
        x = np.random.default_rng(0).normal(size=shape)  # as test_newton_schulz_matches_the_oracle
        ours = gradtx.orthogonalize_via_newton_schulz(x, coeffs, steps, preconditioning)
        expected = test_matrix.newton_schulz_oracle(x, coeffs, steps, preconditioning)
        error = relative_error(np.asarray(ours)[None], expected[None])
        errors["orthogonalize_via_newton_schulz"]["paper oracle"].append(error)


def kronecker_errors(errors, notes):
    """shampoo and soap against pytorch-optimizer (recorded) and the naive NumPy oracles."""
    k = test_kronecker
    soap = {True: [], False: []}  # by whether pytorch-optimizer refreshes by a float32 QR
    for case in k.CASES:
        ours = k._run(k._from_pytorch_optimizer(case), case["leaves"])
        recorded = {leaf: k._NPZ[f"{case['index']}/{leaf}"] for leaf in case["leaves"]}
        name = "soap" if case["optimizer"] == "SOAP" else "shampoo"
        error = trajectory_error(ours, recorded)
        errors[name]["pytorch-optimizer"].append(error)
        if name == "soap":
            soap[k._tolerance(case) > 1e-9].append(error)
    refreshing, others = soap[True], soap[False]
    if refreshing:
        notes.append(
            f"soap, pytorch-optimizer: {len(refreshing)} cases refresh the eigenbasis, by a QR "
            f"that pytorch-optimizer runs in float32 (at most {max(refreshing):.1e}, "
            f"`test_kronecker` allows 1e-5); the other {len(others)} at most "
            f"{max(others, default=0.0):.1e}."
        )
    for name, cases in (("shampoo", k.SHAMPOO_ORACLE_CASES), ("soap", k.SOAP_ORACLE_CASES)):
        for kwargs, leaves in cases:
            ours = k._run(getattr(gradtx, name)(**kwargs), leaves)
            oracle = getattr(k.oracles, name)
            history = oracle(
                {leaf: k.P0[leaf] for leaf in leaves}, k._oracle_grads(leaves), **kwargs
            )
            errors[name]["paper oracle"].append(trajectory_error(ours, k._stack(history)))


def keras_structured_errors(errors):
    """compat.keras.adafactor and compat.keras.muon against Keras's recordings."""
    import test_compat_keras_structured as tests

    data = np.load(tests.DATA / "keras_structured.npz")
    for case in tests.CASES:  # the steps the recording saved
        leaves = tests.reference.SHAPES[case["optimizer"]]
        expected = {leaf: data[f"{case['index']}/{leaf}"] for leaf in leaves}
        error = trajectory_error(tests._ours(case["index"]), expected)
        errors[case["optimizer"]]["Keras"].append(error)


def mars_cautious_errors(errors):
    """mars and cautious against the papers' oracles, mars against pytorch-optimizer (live)."""
    import oracles_modern
    import test_mars_cautious as tests

    for kwargs in tests.MARS:
        expected = tests._oracle(oracles_modern.mars, **kwargs)
        ours = replay.trajectory(gradtx.mars(**kwargs), tests.problem)
        errors["mars"]["paper oracle"].append(trajectory_error(ours, expected))
    for kwargs in tests.PYTORCH_OPTIMIZER:
        expected = tests._pytorch_optimizer(kwargs)
        ours = replay.trajectory(tests._ours_as_pytorch_optimizer(kwargs), tests.problem)
        errors["mars"]["pytorch-optimizer"].append(trajectory_error(ours, expected))
    for name, kwargs, mask in tests.CAUTIOUS:
        oracle = oracles_modern.cautious_adamw if name == "adamw" else oracles_modern.cautious_lion
        expected = tests._oracle(
            oracle,
            mask_eps=mask.get("eps", 1.0),
            normalize=mask.get("normalize", "count"),
            **kwargs,
        )
        ours = replay.trajectory(tests._cautious(name, kwargs, mask), tests.problem)
        errors["cautious"]["paper oracle"].append(trajectory_error(ours, expected))


def schedule_free_errors(errors, notes):
    """Schedule-Free against optax, the naive oracle, schedulefree 1.4 and Keras (recorded)."""
    import test_schedule_free as tests

    problem = tests._WavyProblem(120, "float64")
    for case, build in tests.OPTAX_CASES.items():
        name = {"sgd": "schedule_free_sgd", "adamw": "schedule_free_adamw"}.get(
            case.split("-")[0], "schedule_free"
        )
        with pytest.MonkeyPatch.context() as patch:
            if case in tests.WARMUP:  # as the test does: optax's float32 warmup rates
                patch.setattr(
                    tests._schedule_free, "warmup_constant_schedule", optax.warmup_constant_schedule
                )
            ours = tests._ours(build(gradtx), problem)
        theirs = tests._theirs(build(tests.OPTAX), problem)
        errors[name]["optax"].append(trajectory_error(ours, theirs))
    notes.append(
        "schedule_free_sgd, schedule_free_adamw, optax: with warmup, optax's rates come from "
        "its warmup_constant_schedule in float32 even under x64 (int32 counts); with those "
        "rates patched in, as the test does, the trajectories agree as shown (1e-7 without)."
    )
    for case, (build, spec) in tests.ORACLE_CASES.items():
        steps = 60
        ours = tests._ours(build(), tests._Problem(steps))
        expected = tests._oracle(steps, **spec)
        name = {"optax-sgd": "schedule_free_sgd", "authors-sgd": "sgd_schedule_free"}[case]
        errors[name]["paper oracle"].append(trajectory_error(ours, expected))
    data = np.load(tests.DATA / "schedule_free.npz")
    for case in tests.CASES:
        prefix = f"{case['index']}/"
        expected = {k[len(prefix) :]: data[k] for k in data.files if k.startswith(prefix)}
        ours = tests._replayed(case["index"])
        column = "Keras" if case["framework"] == "keras" else "authors' package"
        errors[case["optimizer"]][column].append(
            trajectory_error({k: ours[k] for k in expected}, expected)
        )


def _row(name: str) -> str:
    """A primitive's row is its recipe's (scale_by_belief -> adabelief, and so on)."""
    return {
        "scale_by_belief": "adabelief",
        "scale_by_optimistic_gradient": "optimistic_gradient_descent",
    }.get(name, name.removeprefix("scale_by_"))


def adam_variants_errors(errors, notes):
    """The adaptive-moment variants against optax, LaProp against its paper and package."""
    import test_adam_variants as tests
    import test_mars_cautious as contrib

    problem = tests._Problem("float64")
    cases = [(name, kwargs, {}) for name, kwargs in tests.DEFAULTS] + list(tests.OPTIONS)
    for name, common, options in cases:
        if "mu_dtype" in options:  # float32 moments: a float32 run, left out
            continue
        ours = replay.trajectory(tests._build(gradtx, name, common, options), problem)
        theirs = replay.trajectory(
            gradtx.chain(tests._build(optax, name, common, options)), problem
        )
        errors[_row(name)]["optax"].append(trajectory_error(ours, theirs))
    for name, kwargs, dtype in contrib.CONTRIB_CASES:
        if dtype != "float32-in-float64":  # madgrad's float32 count: the oracle checks those
            ours = replay.trajectory(contrib._contrib(gradtx, name, kwargs), problem)
            theirs = replay.trajectory(gradtx.chain(contrib._contrib(optax, name, kwargs)), problem)
            errors[_row(name)]["optax"].append(trajectory_error(ours, theirs))
    notes.append(
        "madgrad, optax: optax forms lambda_k = (lr + eps) sqrt(k + 1) in float32 also for "
        "float64 leaves (1.7e-8 at the defaults, up to 1.3e-6 with options); gradtx keeps float64, "
        "and the cases with options are checked against a NumPy oracle (test_mars_cautious)."
    )
    for kwargs in tests.LAPROP_ORACLE_CASES:
        options = {k: v for k, v in kwargs.items() if k != "learning_rate"}
        expected = tests._laprop_oracle(kwargs["learning_rate"], **options)
        ours = replay.trajectory(gradtx.laprop(**kwargs), tests.reference)
        errors["laprop"]["paper oracle"].append(trajectory_error(ours, expected))
    data = np.load(tests.DATA / "laprop.npz")
    for case in tests.LAPROP["cases"]:
        expected = {leaf: data[f"{case['index']}/{leaf}"] for leaf in tests.reference.SHAPES}
        ours = tests._laprop_replayed(case["index"])
        errors["laprop"]["pytorch-optimizer"].append(trajectory_error(ours, expected))


def parameter_free_errors(errors):
    """Step-size-free methods against optax.contrib and the authors' packages (recorded)."""
    import test_coin_betting_momo as betting
    import test_parameter_free as tests

    for name, kwargs in tests.OPTAX_CASES:
        ours = tests._run(tests._build(name, True, kwargs), tests.problem)
        theirs = tests._run(tests._build(name, False, kwargs), tests.problem)
        errors[_row(name)]["optax"].append(trajectory_error(ours, theirs))
    for name, kwargs in betting.OPTAX_CASES:
        ours, theirs = betting._run_both(
            betting._build(name, True, kwargs), betting._build(name, False, kwargs)
        )
        errors[_row(name)]["optax"].append(trajectory_error(ours, theirs))
    data = np.load(tests.DATA / "parameter_free.npz")
    for case in tests.CASES:  # over the steps the tests compare (the conditioned ones)
        expected = {leaf: data[f"{case['index']}/{leaf}"] for leaf in tests.problem.SHAPES}
        ours = tests._conditioned(tests._replayed(case["index"]), case)
        error = trajectory_error(ours, tests._conditioned(expected, case))
        errors[case["optimizer"]]["authors' package"].append(error)


def lbfgs_errors(errors):
    """compat.pytorch.lbfgs against torch.optim.LBFGS (recorded): the params after each step."""
    import test_compat_lbfgs as tests

    data = np.load(tests.DATA / "lbfgs.npz")
    for case in tests.CASES:
        leaves = tests.record_lbfgs.SHAPES[case["problem"]]
        expected = {leaf: data[f"{case['index']}/{leaf}"] for leaf in leaves}
        ours = tests._ours(case)
        error = trajectory_error({leaf: ours[leaf] for leaf in leaves}, expected)
        errors["lbfgs"]["PyTorch"].append(error)


def adahessian_errors(errors):
    """compat.pytorch.adahessian against pytorch-optimizer's AdaHessian (recorded, same probes)."""
    import test_compat_adahessian as tests

    for case in tests.CASES:
        ours, _ = tests._replayed(case["index"])
        error = trajectory_error(ours, tests._recorded(case["index"]))
        errors["adahessian"]["pytorch-optimizer"].append(error)


def curvature_errors(errors):
    """Quasi-Newton, line searches, curvature and sharpness-aware: optax and NumPy oracles."""
    import test_curvature as curvature
    import test_lbfgs as lbfgs
    import test_linesearch as linesearch
    import test_saddle as saddle
    import test_sam as sam

    for name in lbfgs.PROBLEMS:  # the first 50 steps, as test_equals_optax_lbfgs compares
        ours, theirs = (lbfgs._trajectory(name, library)[0] for library in ("gradtx", "optax"))
        first_50 = functools.partial(jax.tree.map, lambda x: x[:50])
        errors["lbfgs"]["optax"].append(trajectory_error(first_50(ours), first_50(theirs)))
    for scale_init_precond in (True, False):  # directions, against the dense BFGS update
        ours, dense, _ = lbfgs._two_loop_and_dense_directions(scale_init_precond)
        errors["lbfgs"]["paper oracle"].append(relative_error(ours, dense))
    for options in linesearch.ZOOM_OPTIONS:
        mine, other = linesearch._both(
            1.0,
            gradtx.scale_by_zoom_linesearch(**options),
            optax.scale_by_zoom_linesearch(**options),
            linesearch.rosenbrock,
            linesearch._rosenbrock_start(),
            12,
        )
        errors["scale_by_zoom_linesearch"]["optax"].append(trajectory_error(mine[0], other[0]))
    for store_grad in (False, True):
        options = dict(linesearch.BACKTRACKING_OPTIONS, store_grad=store_grad)
        mine, other = linesearch._both(
            1.0,
            gradtx.scale_by_backtracking_linesearch(**options),
            optax.scale_by_backtracking_linesearch(**options),
            linesearch.rosenbrock,
            linesearch._rosenbrock_start(),
            10,
            reuse=store_grad,
        )
        error = trajectory_error(mine[0], other[0])
        errors["scale_by_backtracking_linesearch"]["optax"].append(error)
    for case in curvature.SOPHIA_CASES:
        ours, theirs = curvature._sophia_trajectories(case, jnp.float64)
        errors["sophia"]["optax"].append(trajectory_error(ours, theirs))
    for kwargs in curvature.ADAHESSIAN_CASES.values():
        interval = kwargs.get("update_interval", 1)
        ours, x0, probes = curvature._adahessian_run(
            curvature._native(**kwargs), interval, seed=3, steps=20
        )
        options = {k: v for k, v in kwargs.items() if k != "learning_rate"}
        expected = curvature._adahessian_oracle(x0, probes, 20, kwargs["learning_rate"], **options)
        errors["adahessian"]["paper oracle"].append(relative_error(ours, expected))
    params = make_params(jnp.float64)
    for case in sam.CASES:
        opaque, sync_period, reset_state = case.values
        ours, theirs = sam._sam_pair(opaque, sync_period, reset_state)
        (mine, _), (reference, _) = sam._trajectories(ours, theirs, params, opaque)
        errors["sam"]["optax"].append(trajectory_error(mine, reference))
    for opaque in (False, True):
        for mask, expanded in sam.ASAM_MASKS:
            history, perturbed, expected = sam._asam_paths(opaque, mask, expanded)
            ascent = 0.0
            if not opaque:  # every other call: the ascent, against the oracle's perturbed weights
                odd = jax.tree.map(lambda x: x[0::2], history)
                ascent = trajectory_error(odd, sam._stack(perturbed))
                history = jax.tree.map(lambda x: x[1::2], history)
            error = max(ascent, trajectory_error(history, sam._stack(expected)))
            errors["asam"]["paper oracle"].append(error)
    # One step from a saddle region: |H|^-1 g, in the whole space or on the Krylov space of g.
    params, A, b = saddle._quartic_problem(0)
    H, g = saddle._quartic_oracle_terms(params, A, b)
    for krylov_dim in saddle.DENSE_KRYLOV_DIMS:
        for damping in saddle.DAMPINGS:
            tx = gradtx.scale_by_saddle_free_newton(krylov_dim=krylov_dim, damping=damping)
            _, _, updates = saddle._step(saddle.quartic)(tx, params, tx.init(params), A=A, b=b)
            expected = saddle._saddle_free_oracle(H, g, damping)
            error = relative_error(np.asarray(saddle._join(updates))[None], expected[None])
            errors["saddle_free_newton"]["paper oracle"].append(error)
    params, A, b = saddle._quartic_problem(1)
    H, g = saddle._quartic_oracle_terms(params, A, b)
    for krylov_dim in saddle.SUBSPACE_KRYLOV_DIMS:
        tx = gradtx.saddle_free_newton(learning_rate=0.5, krylov_dim=krylov_dim, damping=1e-2)
        _, _, updates = saddle._step(saddle.quartic)(tx, params, tx.init(params), A=A, b=b)
        expected = -0.5 * saddle._saddle_free_oracle(H, g, 1e-2, k=krylov_dim)
        error = relative_error(np.asarray(saddle._join(updates))[None], expected[None])
        errors["saddle_free_newton"]["paper oracle"].append(error)


def sparse_adam_errors(errors):
    """compat.pytorch.sparse_adam against torch.optim.SparseAdam (recorded)."""
    import test_compat_sparse_adam as tests

    for case in tests.CASES:
        expected = tests._recorded(case["index"])
        ours = tests._replay(case, tests._port(case))
        errors["sparse_adam"]["PyTorch"].append(grouped_error(ours, expected, list(expected)))


def averaged_model_errors(errors):
    """compat.pytorch.swa_utils.averaged_model against torch's AveragedModel (recorded)."""
    import test_compat_swa_utils as tests

    for case in tests.AVERAGED:
        ours, expected = tests._averaged(case), tests._recorded(case["index"])
        model = [*tests.record.PARAMS, *tests.record.BUFFERS]
        error = grouped_error(ours, expected, model, ["n_averaged"])
        errors["averaged_model"]["PyTorch"].append(error)


def clip_grad_errors(errors):
    """compat.pytorch.clip_grad_norm/clip_grad_value before a port against torch (recorded)."""
    import test_compat_clip_grad as tests

    ours = tests._gradtx()  # every case in one compilation
    for case in tests.CASES:
        expected = tests._recorded(case["index"])
        params = list(tests.problem.SHAPES)
        error = grouped_error(ours[case["index"]], expected, params, ["total_norm"])
        errors[case["optimizer"]]["PyTorch"].append(error)


def momentum_cycling_errors(errors):
    """compat.pytorch's ports with a scheduler's cycled momentum against torch (recorded)."""
    import test_compat_momentum_cycling as tests

    ours = tests._gradtx()  # every case in one compilation
    for case in tests.CASES:
        expected = tests._recorded(case["index"])
        params = [k for k in expected if k not in ("lr", "momentum")]
        error = grouped_error(ours[case["index"]], expected, params, ["lr"], ["momentum"])
        cycled = "momentum" if case["cycles"] == "momentum" else "betas[0]"
        errors[f"{case['optimizer'].lower()} (cycled {cycled})"]["PyTorch"].append(error)


def _keras_options_row(case: dict) -> str:
    """loss_scale_optimizer, multi_optimizer, or the optimizer with its base options."""
    wrappers = {"LossScaleOptimizer": "loss_scale_optimizer", "MultiOptimizer": "multi_optimizer"}
    if case["wrapper"] is not None:
        return wrappers[case["wrapper"]]
    name, kwargs = case["inner"]["optimizer"]
    name = {"ScheduleFreeAdamW": "schedule_free_adamw"}.get(name, name.lower())
    options = [option for option in KERAS_BASE_OPTIONS if option in kwargs]
    return f"{name} ({', '.join(options)})" if options else name


def keras_options_errors(errors):
    """compat.keras's wrappers and base options against Keras (recorded)."""
    import test_compat_keras_options as tests

    for case in tests.CASES:
        ours, expected = tests._ours(case["index"]), tests._recorded(case["index"])
        averages = [k for k in expected if k.startswith("average/")]
        scale = [k for k in expected if k == "loss_scale"]
        error = grouped_error(ours, expected, list(tests.problem.SHAPES), averages, scale)
        errors[_keras_options_row(case)]["Keras"].append(error)


def lr_scheduler_errors(schedules):
    """compat.pytorch.lr_scheduler against torch.optim.lr_scheduler (recorded)."""
    import test_compat_lr_scheduler as tests

    for case in tests.META["cases"]:
        ours, expected = tests.replayed(case), tests.recorded(case)
        error = max(schedule_error(ours[k], values) for k, values in expected.items())
        schedules[tests.function_name(case["type"])]["PyTorch"].append(error)


def swalr_errors(schedules):
    """compat.pytorch.swa_utils.swalr against torch's SWALR (recorded)."""
    import test_compat_swa_utils as tests

    for case in tests.SWALR:
        ours = tests._rates(tests._schedule(case))
        error = schedule_error(ours, tests._recorded(case["index"])["lr"])
        schedules["swalr"]["PyTorch"].append(error)


def keras_schedule_errors(schedules):
    """compat.keras.schedules against keras.optimizers.schedules (recorded)."""
    import test_compat_keras_schedules as tests

    for case in tests.CASES:
        error = schedule_error(tests._ours(case["index"]), tests._recorded(case["index"]))
        schedules[tests._factory(case["type"]).__name__]["Keras"].append(error)


def table(errors, notes, columns=COLUMNS, header="optimizer") -> str:
    lines = [
        f"| {header} | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name in sorted(errors):
        cells = []
        for column in columns:
            values = errors[name][column]
            cells.append(f"{max(values):.1e} ({len(values)})" if values else "—")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n\n".join(["\n".join(lines), *notes])


def replace_block(content: str, start: str, end: str, text: str, after: str) -> str:
    """``text`` between the markers ``start`` and ``end``; without them, just after ``after``."""
    block = f"{start}\n{text}\n{end}"
    if start in content:
        pattern = re.escape(start) + ".*?" + re.escape(end)
        return re.sub(pattern, lambda _: block, content, flags=re.S)
    if after not in content:
        raise SystemExit(f"README.md has neither {start} nor {after}")
    return content.replace(after, f"{after}\n\n{block}", 1)


def sections(notes) -> list:
    """Each section's function and whether it fills the schedule table."""
    return [
        (framework_errors, False),
        (optax_errors, False),
        (oracle_errors, False),
        (adafactor_errors, False),
        (layerwise_errors, False),
        (functools.partial(muon_errors, notes=notes), False),
        (functools.partial(kronecker_errors, notes=notes), False),
        (keras_structured_errors, False),
        (mars_cautious_errors, False),
        (functools.partial(schedule_free_errors, notes=notes), False),
        (functools.partial(adam_variants_errors, notes=notes), False),
        (parameter_free_errors, False),
        (adahessian_errors, False),
        (lbfgs_errors, False),
        (curvature_errors, False),
        (sparse_adam_errors, False),
        (averaged_model_errors, False),
        (clip_grad_errors, False),
        (momentum_cycling_errors, False),
        (keras_options_errors, False),
        (lr_scheduler_errors, True),
        (swalr_errors, True),
        (keras_schedule_errors, True),
    ]


def _name(section) -> str:
    return getattr(section, "func", section).__name__


def measure(only=()) -> tuple[str, str]:
    """The optimizer table and the schedule table, of the sections named in ``only`` (all
    without)."""
    errors = collections.defaultdict(lambda: collections.defaultdict(list))
    schedules = collections.defaultdict(lambda: collections.defaultdict(list))
    notes = []
    with jax.enable_x64(True):
        for section, is_schedule in sections(notes):
            if only and _name(section) not in only:
                continue
            start = time.perf_counter()
            section(schedules if is_schedule else errors)
            print(f"{_name(section)}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    schedule_table = table(schedules, [], SCHEDULE_COLUMNS, header="schedule")
    return table(errors, notes), schedule_table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="replace the tables in README.md")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        choices=[_name(section) for section, _ in sections([])],
        help="run this section only (repeatable); not with --write",
    )
    args = parser.parse_args(argv)
    if args.write and args.only:
        parser.error("--write replaces the whole tables: run every section")
    optimizers, schedules = measure(args.only)
    print(optimizers, schedules, sep="\n\n")
    if args.write:
        readme = ROOT / "README.md"
        content = replace_block(readme.read_text(), START, END, optimizers, after=END)
        content = replace_block(content, SCHEDULES_START, SCHEDULES_END, schedules, after=END)
        readme.write_text(content)


if __name__ == "__main__":
    main()
