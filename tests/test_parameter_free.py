"""Step-size-free optimizers and plateaus against optax and the authors' packages.

- every optax-named function equals optax's over 200 steps of a nonconvex problem on a
  matrix, a rank-3 leaf, a vector, a scalar and a zero leaf, with zero-gradient and
  sign-flipped steps (``value=`` the loss): bitwise in practice, asserted to 1e-6 in float32
  and 1e-10 in float64;
- ``compat.pytorch.prodigy``, ``dadapt_adam``, ``dadapt_sgd`` and ``dadapt_adagrad`` equal
  prodigyopt 1.1.2 and dadaptation 3.2 in float64 to 1e-9, with the packages' keyword
  arguments and defaults, recorded (tests/reference/record_parameter_free.py) and live where
  the packages are installed: over 200 steps, or over the leading steps where the problem
  amplifies rounding less than 1e4-fold (Prodigy's and DAdaptAdam's lr=1 defaults: 45 and
  18 steps);
- the estimates are readable with ``tree_get``; a missing ``value=`` or params, and bad
  arguments, are refused naming them.
"""

from __future__ import annotations

import functools
import inspect
import json
import pathlib

from ids import stable_id
import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax import contrib
import pytest
from reference import record_parameter_free as problem
from replay import assert_trajectories_equal, trajectory
from test_compat import torch_schedule

import gradtx
from gradtx import compat

DATA = pathlib.Path(__file__).parent / "reference" / "data"
CASES = json.loads((DATA / "parameter_free.json").read_text())["cases"]


# -- optax ---------------------------------------------------------------------------


def _scan(tx, problem):
    def body(carry, step):
        params, state = carry
        grads = problem.gradient(params, step, xp=jnp)
        value = problem.value(params, step, xp=jnp)
        updates, state = tx.update(grads, state, params, value=value)
        # optax's scale_by_distance_over_gradients gives a scalar parameter a (1,) update.
        params = jax.tree.map(lambda p, u: p + jnp.reshape(u, jnp.shape(p)), params, updates)
        return (params, state), params

    params = jax.tree.map(jnp.asarray, problem.initial_params())
    steps = jnp.arange(1, problem.STEPS + 1)
    return jax.lax.scan(body, (params, tx.init(params)), steps)[1]


# Both sides static: hyperparameters folded as constants, as optax's closures hold them.
# Traced, gradtx forms 1 - b1 (float32) or b2 ** 0.5 (float64) in XLA rather than in Python,
# one unit in the last place apart, and the problem amplifies that to 1e-2 (float32) or 5e-10
# (float64) in 200 steps.
_run = jax.jit(_scan, static_argnums=(0, 1))

_PRODIGY_OPTIONS = dict(
    learning_rate=0.5,
    betas=(0.8, 0.99),
    beta3=0.9,
    eps=1e-6,
    estim_lr0=1e-4,
    estim_lr_coef=2.0,
    weight_decay=0.1,
    safeguard_warmup=True,
)
_DADAPT_OPTIONS = dict(
    learning_rate=0.5, betas=(0.8, 0.99), eps=1e-6, estim_lr0=1e-4, weight_decay=0.1
)
_POLYAK_OPTIONS = dict(max_learning_rate=0.3, scaling=0.5, f_min=-5.0, eps=1e-3)


def _optax(name):
    return getattr(optax if hasattr(optax, name) else contrib, name)


# polyak_sgd, dog and dowg are chains of scale_by_polyak, scale_by_dog and scale_by_dowg.


def _build(name, ours, kwargs):
    """The optimizer; a transform that is not one runs before a descent step, or after SGD."""
    lib = gradtx if ours else optax
    make = getattr(gradtx, name) if ours else _optax(name)
    if name == "reduce_on_plateau":
        return lib.chain(lib.sgd(0.05), make(**kwargs))
    if name.startswith("scale_by_"):
        return lib.chain(make(**kwargs), lib.scale(-0.5))
    return make(**kwargs)


OPTAX_CASES = [
    ("prodigy", {}),
    ("prodigy", _PRODIGY_OPTIONS),
    # The same schedule function for both: the problem amplifies a last-bit difference.
    ("prodigy", {"learning_rate": optax.linear_schedule(1.0, 0.0, 150)}),
    ("dadapt_adamw", {}),
    ("dadapt_adamw", _DADAPT_OPTIONS),
    ("polyak_sgd", {}),
    ("polyak_sgd", {**_POLYAK_OPTIONS, "variant": "sps+"}),
    ("dog", {}),
    ("dog", {"learning_rate": 0.5, "init_step": ("distance", 1e-3), "eps": 1e-6}),
    ("dog", {"init_step": ("learning_rate", 1e-2), "weight_decay": 0.1}),
    ("dowg", {}),
    ("dowg", {"learning_rate": 0.5, "init_estim_sq_dist": 1e-2, "eps": 1e-3, "weight_decay": 0.1}),
    ("scale_by_distance_over_gradients", {}),
    ("scale_by_distance_over_gradients", {"reps_rel": 1e-4, "eps": 1e-6, "global_scale": 2.0}),
    ("reduce_on_plateau", {}),
    (
        "reduce_on_plateau",
        dict(factor=0.5, patience=3, rtol=1e-3, atol=1e-2, cooldown=4, accumulation_size=2),
    ),
    ("reduce_on_plateau", dict(factor=0.8, patience=2, rtol=0.0, atol=0.1, min_scale=0.01)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "name, kwargs", OPTAX_CASES, ids=[stable_id(f"{n}-{k}", 200) for n, k in OPTAX_CASES]
)
def test_matches_optax(name, kwargs, dtype):
    with jax.enable_x64(dtype == "float64"):
        ours = _run(_build(name, True, kwargs), problem)
        theirs = _run(_build(name, False, kwargs), problem)
        rtol = 1e-6 if dtype == "float32" else 1e-10
        for leaf in problem.SHAPES:
            assert ours[leaf].dtype == jnp.dtype(dtype)
            np.testing.assert_allclose(ours[leaf], theirs[leaf], rtol=rtol, atol=rtol, err_msg=leaf)
            assert np.ptp(np.asarray(theirs[leaf])) > 1e-3  # the problem moves every leaf


def test_every_optax_option_is_compared():
    for name in {n for n, _ in OPTAX_CASES}:
        options = set(inspect.signature(_optax(name)).parameters) - {"mask", "param_dtype"}
        compared = {k for n, kwargs in OPTAX_CASES if n == name for k in kwargs}
        assert options <= compared, f"{name}: {sorted(options - compared)} not compared"
        assert any(n == name and not kwargs for n, kwargs in OPTAX_CASES) or name.startswith(
            "scale_by_"
        )


# -- the authors' packages -----------------------------------------------------------


def _port(case):
    kwargs = dict(case["kwargs"])
    if case["schedule"]:
        kwargs["lr"] = torch_schedule(kwargs.get("lr", 1.0), case["schedule"])
    return getattr(compat.pytorch, case["optimizer"])(**kwargs)


@functools.cache
def _replayed(index):
    with jax.enable_x64(True):
        out = trajectory(_port(CASES[index]), problem)
        return {k: np.asarray(v)[problem.SAVED] for k, v in out.items()}


def _id(case):
    return f"{case['index']}-{case['optimizer']}-{case['kwargs']}-{case['schedule'] is not None}"


# Relative 1e-9, and 1e-9 of the params' scale (|p| ~ 1) where an entry passes near 0.
ATOL = 1e-9


def _conditioned(trajectories, case):
    """The saved steps before the case amplifies rounding more than the recorder allows."""
    return {k: v[case["steps"] > problem.SAVED] for k, v in trajectories.items()}


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_matches_the_recorded_package(case):
    data = np.load(DATA / "parameter_free.npz")
    expected = {leaf: data[f"{case['index']}/{leaf}"] for leaf in problem.SHAPES}
    ours, expected = _conditioned(_replayed(case["index"]), case), _conditioned(expected, case)
    assert_trajectories_equal(ours, expected, problem.SHAPES, atol=ATOL)


def test_recordings_are_compared_over_most_steps():
    steps = [case["steps"] for case in CASES]
    # The packages' pure defaults (lr 1) are chaotic on this problem beyond 45 and 18 steps.
    assert min(steps) >= 15 and sum(s == problem.STEPS for s in steps) >= len(CASES) - 4


PORTS = ["prodigy", "dadapt_adam", "dadapt_sgd", "dadapt_adagrad"]


@pytest.mark.parametrize("optimizer", PORTS)
def test_every_package_option_is_recorded(optimizer):
    options = set(inspect.signature(getattr(compat.pytorch, optimizer)).parameters)
    ours = [c for c in CASES if c["optimizer"] == optimizer]
    assert options - {"lr"} <= {key for case in ours for key in case["kwargs"]}
    assert any(not case["kwargs"] and not case["schedule"] for case in ours)


@pytest.mark.parametrize("optimizer", PORTS)
def test_every_default_is_the_packages(optimizer):
    theirs = json.loads((DATA / "parameter_free.json").read_text())["defaults"][optimizer]
    ours = {
        k: p.default
        for k, p in inspect.signature(getattr(compat.pytorch, optimizer)).parameters.items()
    }
    assert list(ours) == list(theirs)  # the same order: positional calls work too
    for name, default in theirs.items():
        assert ours[name] == (tuple(default) if isinstance(default, list) else default), name


def test_recordings_skip_where_the_packages_skip():
    # lr reaches 0 at step 150 (saved index 24 onwards): Prodigy and DAdaptAdam take no step
    # there; DAdaptAdaGrad keeps moving p towards x0 - s / (sqrt(alpha) + eps), alpha growing.
    data = np.load(DATA / "parameter_free.npz")
    to_zero = [c for c in CASES if c["schedule"] and c["schedule"].get("end_factor") == 0.0]
    assert {c["optimizer"] for c in to_zero} == {"prodigy", "dadapt_adam", "dadapt_adagrad"}
    for case in to_zero:
        last = data[f"{case['index']}/w"][problem.SAVED >= 149]
        assert len(last) > 3
        assert np.all(last == last[0]) == (case["optimizer"] != "dadapt_adagrad"), case


# Defaults, the skipped zero-gradient steps, lr 0 or a schedule, for each package.
LIVE = [0, 11, 12, 13, 21, 22, 27, 28, 33]


@pytest.mark.parametrize("index", LIVE, ids=[_id(CASES[i]) for i in LIVE])
def test_matches_the_package_live(index):
    pytest.importorskip("torch")
    pytest.importorskip(problem.CLASSES[CASES[index]["optimizer"]][0])
    case = CASES[index]
    saved = problem.SAVED[min(50, case["steps"]) > problem.SAVED]
    expected = problem.run_torch(case, steps=50, saved=saved)
    ours = {k: v[: len(saved)] for k, v in _replayed(index).items()}
    assert_trajectories_equal(ours, expected, problem.SHAPES, atol=ATOL)


# -- the estimates, the zero-gradient guard, required arguments --------------------------


def _one_step(tx, grads, params, **extra):
    state = tx.init(params)
    return tx.update(grads, state, params, **extra)


def test_estimates_are_readable_with_tree_get():
    params = {"w": jnp.asarray([1.0, -2.0]), "s": jnp.asarray(0.5)}
    grads = {"w": jnp.asarray([0.5, 1.0]), "s": jnp.asarray(-1.0)}
    for tx, key in [
        (gradtx.prodigy(), "estim_lr"),
        (gradtx.dadapt_adamw(), "estim_lr"),
        (compat.pytorch.prodigy(), "estim_lr"),
        (compat.pytorch.dadapt_adam(), "estim_lr"),
        (compat.pytorch.dadapt_sgd(), "estim_lr"),
        (compat.pytorch.dadapt_adagrad(), "estim_lr"),
        (gradtx.dog(init_step=("distance", 0.25)), "max_dist"),
        (gradtx.dowg(init_estim_sq_dist=0.25), "estim_sq_dist"),
        (gradtx.reduce_on_plateau(), "scale"),
    ]:
        state = tx.init(params)
        assert gradtx.tree_get(state, key).shape == ()
        for _ in range(2):
            _, state = tx.update(grads, state, params, value=1.0)
            params = jax.tree.map(lambda p: p + 0.3, params)
        assert gradtx.tree_get(state, key) > 0, tx
    # DoG's r is the distance moved: 0.3 * 2 in each of the three coordinates.
    state = gradtx.dog(init_step=("distance", 1e-3)).init({"w": jnp.zeros(3)})
    _, state = gradtx.dog().update({"w": jnp.ones(3)}, state, {"w": jnp.full(3, 0.6)})
    np.testing.assert_allclose(gradtx.tree_get(state, "max_dist"), 0.6 * np.sqrt(3), rtol=1e-6)
    _, state = _one_step(gradtx.polyak_sgd(), grads, params, value=2.25)
    np.testing.assert_allclose(gradtx.tree_get(state, "step_size"), 1.0)  # capped at 1


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adamw"])
def test_a_zero_first_gradient_keeps_d(name):
    # optax divides 0 by 0 here and d is NaN from then on; gradtx keeps d and goes on.
    params = {"w": jnp.asarray([1.0, -2.0])}
    tx = getattr(gradtx, name)()
    state = tx.init(params)
    _, state = tx.update({"w": jnp.zeros(2)}, state, params)
    assert gradtx.tree_get(state, "estim_lr") == pytest.approx(1e-6)
    for _ in range(30):
        updates, state = tx.update({"w": params["w"] - 3.0}, state, params)
        params = gradtx.apply_updates(params, updates)
    assert np.all(np.isfinite(params["w"])) and gradtx.tree_get(state, "estim_lr") > 1e-6
    theirs = getattr(contrib, name)()
    optax_state = theirs.init(params)
    _, optax_state = theirs.update({"w": jnp.zeros(2)}, optax_state, params)
    assert np.isnan(optax_state.estim_lr)


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adam"])
def test_ports_skip_steps_before_any_gradient(name):
    params = {"w": jnp.asarray([1.0, -2.0])}
    tx = getattr(compat.pytorch, name)(weight_decay=0.5, decouple=True)
    state = tx.init(params)
    updates, state = tx.update({"w": jnp.zeros(2)}, state, params)
    assert np.all(updates["w"] == 0)  # no decay either: the package returns early
    assert int(gradtx.tree_get(state, "taken")) == 0 and int(gradtx.tree_get(state, "count")) == 1


def test_dadapt_sgd_skips_a_zero_first_gradient():
    # DAdaptSGD divides by the first gradient's norm (ZeroDivisionError in the package): the
    # port skips the step, uncounted, and takes the next gradient's norm as g0 instead.
    params = {"w": jnp.asarray([1.0, -2.0])}
    tx = compat.pytorch.dadapt_sgd(weight_decay=0.5)
    grads = {"w": jnp.asarray([0.5, 1.5])}
    updates, state = tx.update({"w": jnp.zeros(2)}, tx.init(params), params)
    assert np.all(updates["w"] == 0) and int(gradtx.tree_get(state, "taken")) == 0
    updates, state = tx.update(grads, state, params)
    expected, _ = _one_step(tx, grads, params)
    np.testing.assert_array_equal(updates["w"], expected["w"])
    assert np.all(updates["w"] != 0)
    np.testing.assert_allclose(gradtx.tree_get(state, "grad_norm0"), np.sqrt(2.5), rtol=1e-6)


def test_dadapt_adagrad_skips_a_zero_first_gradient():
    # The package returns before stepping while |s|_1 = 0: d and its sums stay.
    params = {"w": jnp.asarray([1.0, -2.0])}
    tx = compat.pytorch.dadapt_adagrad(momentum=0.5)
    updates, state = tx.update({"w": jnp.zeros(2)}, tx.init(params), params)
    assert np.all(updates["w"] == 0)
    assert float(gradtx.tree_get(state, "skl1")) == 0 and int(gradtx.tree_get(state, "count")) == 1
    updates, state = tx.update({"w": jnp.asarray([0.5, 1.5])}, state, params)
    assert np.all(updates["w"] != 0) and float(gradtx.tree_get(state, "skl1")) > 0


@pytest.mark.parametrize(
    "tx, name",
    [
        (gradtx.polyak_sgd(), "scale_by_polyak"),
        (gradtx.scale_by_polyak(), "scale_by_polyak"),
        (gradtx.chain(gradtx.sgd(0.1), gradtx.reduce_on_plateau()), "reduce_on_plateau"),
    ],
    ids=["polyak_sgd", "scale_by_polyak", "reduce_on_plateau"],
)
def test_a_missing_value_is_named(tx, name):
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match=rf"^{name}\.update needs the loss .* value="):
        _one_step(tx, params, params)


@pytest.mark.parametrize(
    "tx",
    [gradtx.prodigy(), gradtx.dadapt_adamw(), gradtx.dog(), gradtx.dowg()]
    + [gradtx.scale_by_distance_over_gradients(), compat.pytorch.prodigy()]
    + [compat.pytorch.dadapt_sgd(), compat.pytorch.dadapt_adagrad()],
    ids=repr,
)
def test_missing_params_are_named(tx):
    grads = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match=r"needs the params"):
        tx.update(grads, tx.init(grads))


@pytest.mark.parametrize(
    "build, match",
    [
        (
            lambda: gradtx.prodigy(betas=(1.0, 0.999)),
            r"^prodigy\(betas=\(1\.0, 0\.999\)\): each of betas",
        ),
        (lambda: gradtx.prodigy(betas=(0.9,)), r"^prodigy\(betas=\(0\.9,\)\): .*pair"),
        (lambda: gradtx.prodigy(beta3=-0.1), r"^prodigy\(beta3=-0\.1\)"),
        (lambda: gradtx.prodigy(estim_lr_coef=-1.0), r"^prodigy\(estim_lr_coef=-1\.0\)"),
        (lambda: gradtx.prodigy(estim_lr0=0.0), r"^prodigy\(estim_lr0=0\.0\)"),
        (lambda: gradtx.prodigy(eps=0.0), r"^prodigy\(eps=0\.0\)"),
        (lambda: gradtx.prodigy(weight_decay=-1.0), r"^prodigy\(weight_decay=-1\.0\)"),
        (lambda: gradtx.prodigy(learning_rate=-1.0), r"^prodigy\(learning_rate=-1\.0\)"),
        (lambda: gradtx.dadapt_adamw(betas=(0.9, 1.0)), r"^dadapt_adamw\(betas=\(0\.9, 1\.0\)\)"),
        (lambda: compat.pytorch.prodigy(d_coef=-1.0), r"pytorch\.prodigy\(d_coef=-1\.0\)"),
        (lambda: compat.pytorch.prodigy(growth_rate=0.5), r"pytorch\.prodigy\(growth_rate=0\.5\)"),
        (lambda: compat.pytorch.prodigy(lr=0.0), r"pytorch\.prodigy\(lr=0\.0\)"),
        (lambda: compat.pytorch.prodigy(d0=0.0), r"pytorch\.prodigy\(d0=0\.0\)"),
        (lambda: compat.pytorch.prodigy(slice_p=0), r"pytorch\.prodigy\(slice_p=0\)"),
        (lambda: compat.pytorch.prodigy(beta3=1.0), r"pytorch\.prodigy\(beta3=1\.0\)"),
        (
            lambda: compat.pytorch.dadapt_adam(betas=(0.9, -0.1)),
            r"pytorch\.dadapt_adam\(betas=\(0\.9, -0\.1\)\)",
        ),
        (lambda: compat.pytorch.dadapt_adam(eps=0.0), r"pytorch\.dadapt_adam\(eps=0\.0\)"),
        (
            lambda: compat.pytorch.dadapt_adam(growth_rate=0.9),
            r"pytorch\.dadapt_adam\(growth_rate=0\.9\)",
        ),
        (lambda: compat.pytorch.dadapt_sgd(lr=-1.0), r"pytorch\.dadapt_sgd\(lr=-1\.0\)"),
        (lambda: compat.pytorch.dadapt_sgd(momentum=1.0), r"pytorch\.dadapt_sgd\(momentum=1\.0\)"),
        (lambda: compat.pytorch.dadapt_sgd(d0=0.0), r"pytorch\.dadapt_sgd\(d0=0\.0\)"),
        (
            lambda: compat.pytorch.dadapt_adagrad(growth_rate=0.5),
            r"pytorch\.dadapt_adagrad\(growth_rate=0\.5\)",
        ),
        (lambda: compat.pytorch.dadapt_adagrad(eps=0.0), r"pytorch\.dadapt_adagrad\(eps=0\.0\)"),
        (
            lambda: compat.pytorch.dadapt_adagrad(weight_decay=-0.1),
            r"pytorch\.dadapt_adagrad\(weight_decay=-0\.1\)",
        ),
        (lambda: gradtx.polyak_sgd(variant="sps-"), r"^polyak_sgd\(variant='sps-'\)"),
        (lambda: gradtx.polyak_sgd(max_learning_rate=-1.0), r"max_learning_rate=-1\.0"),
        (
            lambda: gradtx.dog(init_step=("far", 1.0)),
            r"^dog\(init_step=\('far', 1\.0\)\): init_step\[0\] must be one of",
        ),
        (lambda: gradtx.dog(init_step=1e-6), r"scale_by_dog\(init_step=1e-06\): .*pair"),
        (
            lambda: gradtx.dog(init_step=("distance", 0.0)),
            r"^dog\(init_step=\(\'distance\', 0\.0\)\): init_step\[1\] must be in \(0, inf\)",
        ),
        (lambda: gradtx.dowg(eps=0.0), r"^dowg\(eps=0\.0\)"),
        (lambda: gradtx.reduce_on_plateau(factor=1.0), r"reduce_on_plateau\(factor=1\.0\)"),
        (lambda: gradtx.reduce_on_plateau(patience=0), r"reduce_on_plateau\(patience=0\)"),
        (lambda: gradtx.reduce_on_plateau(rtol=0.0), r"reduce_on_plateau\(rtol=0\.0\): .*both 0"),
        (lambda: gradtx.reduce_on_plateau(accumulation_size=1.5), r"accumulation_size=1\.5"),
    ],
)
def test_bad_arguments_are_named(build, match):
    with pytest.raises(ValueError, match=match):
        build()
