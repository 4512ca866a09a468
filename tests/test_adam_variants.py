"""Adam's descendants: AdaBelief, Yogi, Adan, ADOPT, AdEMAMix, optimistic gradients.

- defaults equal to optax's functions of the same names (by signature);
- equal to optax, at the defaults (float32 leaves) and with every option changed (float64),
  over the 200 steps of tests/reference/record_layerwise.py's problem: a
  matrix, a rank-3 leaf, a vector, a scalar and a zero-initialised vector, a nonconvex loss
  whose gradient is zeroed every 17th step and negated every 11th;
- mu_dtype and nu_dtype hold AdEMAMix's moments where optax's drift to the gradients' dtype;
- every recipe keeps its learning rate in the state;
- bad arguments are refused when built, naming them.

Every replay runs with x64 on, float32 leaves included (so scalars such as 1 - b2**t are
float64 in both libraries): JAX 0.10.2 caches a NumPy constant's conversion across the x64
flag, so a jitted function that captures the problem's constants in float64 and then in
float32 fails to lower ("op requires the same element type"); jax.clear_caches() clears it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json

from ids import stable_id
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest
from reference import record_laprop
from reference import record_layerwise as reference
from reference.recording import DATA
import replay
from test_compat import torch_schedule

import gradtx
from gradtx import _adam_variants as variants
from gradtx import compat


@dataclasses.dataclass(frozen=True)
class _Problem:
    """record_layerwise's problem, leaves of ``dtype``, as :func:`replay.trajectory` takes it."""

    dtype: str
    STEPS = reference.STEPS

    def initial_params(self):
        return {k: v.astype(self.dtype) for k, v in reference.initial_params().items()}

    def gradient(self, params, step, xp):
        return reference.gradient(params, step, xp=xp)


TOLERANCES = {"float32": {"rtol": 1e-6, "atol": 1e-6}, "float64": {"rtol": 1e-10, "atol": 1e-12}}

# Where each name lives in optax 0.2.8.
OPTAX = {
    **{
        name: getattr(optax, name)
        for name in (
            "adabelief",
            "scale_by_belief",
            "yogi",
            "scale_by_yogi",
            "adan",
            "scale_by_adan",
            "optimistic_gradient_descent",
            "scale_by_optimistic_gradient",
            "optimistic_adam_v2",
        )
    },
    **{
        name: getattr(optax.contrib, name)
        for name in (
            "adopt",
            "scale_by_adopt",
            "ademamix",
            "scale_by_ademamix",
            "simplified_ademamix",
            "scale_by_simplified_ademamix",
        )
    },
}

# Keyword-only arguments gradtx adds (storage of the second moment, as in gradtx.adam).
GRADTX_ONLY = {"nu_dtype"}


@pytest.mark.parametrize("name", sorted(OPTAX))
def test_defaults_are_optaxs(name):
    ours = {k: p for k, p in inspect.signature(getattr(gradtx, name)).parameters.items()}
    theirs = inspect.signature(OPTAX[name]).parameters
    assert [k for k in ours if k not in GRADTX_ONLY] == list(theirs)
    for k, p in theirs.items():
        assert ours[k].kind == p.kind, k
        if k == "clip_value_fn":  # optax's is a lambda: compare values
            counts = jnp.arange(50)
            np.testing.assert_array_equal(ours[k].default(counts), p.default(counts))
        else:
            assert ours[k].default == p.default, k


# -- equal to optax -----------------------------------------------------------------------


def _cube_root_of_count(count):
    return count ** (1 / 3)


_MASK = {"w": True, "t": False, "b": True, "s": True, "z": False}

# Each name runs at its defaults in float32 (rtol 1e-6) and with every option changed in float64
# (rtol 1e-10): each optax case is a compile of its own (its numbers are closure constants), so
# running both in both dtypes would double the file's time for little: the defaults' values are
# compared by signature above, and each option's arithmetic at 1e-10.
DEFAULTS = [
    ("adabelief", {"learning_rate": 0.01}),
    ("yogi", {"learning_rate": 0.01}),
    ("adan", {"learning_rate": 0.01}),
    ("adopt", {"learning_rate": 0.01}),
    ("ademamix", {"learning_rate": 0.01}),
    ("simplified_ademamix", {"learning_rate": 1e-4}),
    ("optimistic_gradient_descent", {"learning_rate": 0.01}),
    ("optimistic_adam_v2", {"learning_rate": 0.01}),
]

# (name, numbers for both, schedules and flags for both): a tuple is a gradtx schedule.
OPTIONS = [
    (
        "adabelief",
        {"learning_rate": 0.02, "b1": 0.8, "b2": 0.99, "eps": 1e-8, "eps_root": 1e-12},
        {"nesterov": True},
    ),
    # yogi takes no eps_root or initial value: its primitive does.
    (
        "scale_by_yogi",
        {"b1": 0.8, "b2": 0.99, "eps": 1e-4, "eps_root": 1e-8, "initial_accumulator_value": 0.1},
        {},
    ),
    (
        "adan",
        {
            "learning_rate": 0.01,
            "b1": 0.9,
            "b2": 0.8,
            "b3": 0.95,
            "eps": 1e-6,
            "eps_root": 1e-10,
            "weight_decay": 0.05,
            "mask": _MASK,
        },
        {},
    ),
    (
        "adopt",
        {"learning_rate": 0.01, "b1": 0.8, "b2": 0.99, "eps": 1e-4},
        {"nesterov": True, "clip_value_fn": _cube_root_of_count},
    ),
    ("adopt", {"learning_rate": 0.01}, {"use_clipping": False}),
    # float32 moments of float64 leaves, compared at float32's tolerance: optax forms b1 * m in
    # float32 (a weakly typed b1 times a float32 m) before adding the float64 step.
    ("adopt", {"learning_rate": 0.01}, {"mu_dtype": jnp.float32}),
    (
        "ademamix",
        {
            "learning_rate": 0.01,
            "b1": 0.8,
            "b2": 0.99,
            "eps": 1e-6,
            "eps_root": 1e-10,
            "weight_decay": 0.05,
            "mask": _MASK,
        },
        {"b3": ("linear_schedule", 0.9, 0.999, 150), "alpha": ("linear_schedule", 0.0, 4.0, 100)},
    ),
    (
        "simplified_ademamix",
        {
            "learning_rate": 1e-3,
            "b1": 0.9,
            "b2": 0.99,
            "eps": 1e-6,
            "eps_root": 1e-10,
            "weight_decay": 0.05,
            "mask": _MASK,
        },
        {"alpha": ("linear_schedule", 0.0, 2.0, 100)},
    ),
    ("optimistic_gradient_descent", {"learning_rate": 0.01, "alpha": 0.5, "beta": 0.3}, {}),
    (
        "optimistic_adam_v2",
        {
            "learning_rate": 0.01,
            "alpha": 0.7,
            "beta": 0.4,
            "b1": 0.8,
            "b2": 0.99,
            "eps": 1e-6,
            "eps_root": 1e-10,
        },
        {"nesterov": False},
    ),
]


def _build(library, name, common, options):
    """The optimizer from ``library`` (gradtx or optax).

    Both get gradtx's schedules (callables to optax): optax's linear_schedule is float32 even
    under x64, 1e-9 away from the float64 value.
    """
    kwargs = dict(common)
    for k, v in options.items():
        kwargs[k] = getattr(gradtx, v[0])(*v[1:]) if isinstance(v, tuple) else v
    tx = getattr(gradtx, name)(**kwargs) if library is gradtx else OPTAX[name](**kwargs)
    if name.startswith("scale_by_"):
        return library.chain(tx, library.scale_by_learning_rate(0.01))
    return tx


def _compare(name, common, options, dtype, tolerance=None):
    problem = _Problem(dtype)
    ours = replay.trajectory(_build(gradtx, name, common, options), problem)
    # An optax transform is a pair of closures: in a gradtx chain it is static, so it jits.
    theirs = replay.trajectory(gradtx.chain(_build(optax, name, common, options)), problem)
    tolerance = TOLERANCES[tolerance or dtype]
    replay.assert_trajectories_equal(ours, theirs, reference.SHAPES, **tolerance)


@pytest.mark.parametrize(("name", "kwargs"), DEFAULTS, ids=[name for name, _ in DEFAULTS])
def test_defaults_match_optax_in_float32(name, kwargs, x64):
    _compare(name, kwargs, {}, "float32")


@pytest.mark.parametrize(
    ("name", "common", "options"), OPTIONS, ids=[f"{c[0]}-{i}" for i, c in enumerate(OPTIONS)]
)
def test_every_option_matches_optax_in_float64(name, common, options, x64):
    _compare(name, common, options, "float64", "float32" if "mu_dtype" in options else None)


# -- storage dtypes -----------------------------------------------------------------------


def test_ademamix_keeps_its_moments_in_mu_dtype_and_nu_dtype():
    # optax stores v in mu_dtype and returns all three moments in the gradients' dtype after
    # the first step (its state changes dtype, so it cannot be a lax.scan carry).
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)}
    tx = gradtx.scale_by_ademamix(mu_dtype=jnp.bfloat16, nu_dtype=jnp.float16)
    plain = gradtx.scale_by_ademamix()
    state, plain_state = tx.init(params), plain.init(params)
    step = jax.jit(lambda tx, g, s: tx.update(g, s))
    for i in range(5):
        grads = {"w": params["w"] * (i + 1) - 0.3}
        updates, state = step(tx, grads, state)
        expected, plain_state = step(plain, grads, plain_state)
        assert (state.m1["w"].dtype, state.m2["w"].dtype) == (jnp.bfloat16, jnp.bfloat16)
        assert state.nu["w"].dtype == jnp.float16
        assert updates["w"].dtype == jnp.float32
        np.testing.assert_allclose(updates["w"], expected["w"], rtol=2e-2)
    theirs = optax.contrib.scale_by_ademamix(mu_dtype=jnp.bfloat16)
    their_state = theirs.update(grads, theirs.init(params))[1]
    assert their_state.m1["w"].dtype == jnp.float32  # what gradtx does differently


# -- learning rate in the state ------------------------------------------------------------


@pytest.mark.parametrize("name", [name for name, _ in DEFAULTS])
def test_the_learning_rate_is_in_the_state(name):
    params = {"w": jnp.ones(3)}
    tx = getattr(gradtx, name)(gradtx.linear_schedule(0.1, 0.0, 10))
    state = tx.init(params)
    for _ in range(3):
        state = tx.update({"w": jnp.ones(3)}, state, params)[1]
    assert float(gradtx.tree_get(state, "learning_rate")) == pytest.approx(0.08)


# -- ACProp after a zero first gradient -------------------------------------------------------


def _updates(tx, grads, params):
    state, out = tx.init(params), []
    for g in grads:
        updates, state = tx.update(g, state, params)
        out.append(np.asarray(updates["w"], np.float64))
    return out


def test_acprop_counts_no_zero_gradient_before_the_first_nonzero_one():
    # optax counts it: s_1 is eps_root alone and the next step is g / sqrt(eps_root / (1 - b2)),
    # 3e6 g (inf in float16). gradtx starts at the first gradient: optax's steps from there.
    params = {"w": jnp.asarray([1.0, -2.0])}
    zero = {"w": jnp.zeros(2)}
    grads = [{"w": jnp.asarray(g)} for g in ([0.5, 1.0], [-0.25, 2.0], [1.0, 0.5], [0.0, 0.0])]
    ours = _updates(gradtx.acprop(0.1), [zero, zero, *grads], params)
    theirs = _updates(optax.contrib.acprop(0.1), grads, params)
    np.testing.assert_array_equal(ours[:2], 0.0)
    np.testing.assert_allclose(ours[2:], theirs, rtol=1e-6)
    assert np.max(np.abs(_updates(optax.contrib.acprop(0.1), [zero, *grads], params)[1])) > 1e5
    half = {"w": params["w"].astype(jnp.float16)}
    cast = [jax.tree.map(lambda x: x.astype(jnp.float16), g) for g in [zero, *grads]]
    assert np.all(np.isfinite(_updates(gradtx.acprop(0.1), cast, half)))


# -- LaProp: the paper's algorithm, and pytorch-optimizer's -----------------------------------


def _laprop_oracle(lr, b1=0.9, b2=0.999, eps=1e-15, eps_root=0.0, weight_decay=0.0, **flags):
    """Algorithm 1 of Ziyin et al. (with the authors' centered and AMSGrad options) in NumPy."""
    centered, amsgrad = flags.get("centered", False), flags.get("amsgrad", False)
    x = reference.initial_params()
    m, v, mean, v_max = ({k: np.zeros_like(p) for k, p in x.items()} for _ in range(4))
    out = {k: [] for k in x}
    for t in range(1, reference.STEPS + 1):
        g = reference.gradient(x, t)
        rate = float(lr(t - 1)) if callable(lr) else lr
        for k in x:
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            n = v[k]
            if centered:
                mean[k] = b2 * mean[k] + (1 - b2) * g[k]
                n = v[k] - mean[k] ** 2 if t > flags.get("steps_before_centered", 10) else n
            if amsgrad:
                v_max[k] = n = np.maximum(v_max[k], n)
            m[k] = b1 * m[k] + (1 - b1) * g[k] / (np.sqrt(n / (1 - b2**t) + eps_root) + eps)
            x[k] = x[k] - rate * (m[k] / (1 - b1**t) + weight_decay * x[k])
            out[k].append(x[k].copy())
    return {k: np.stack(v) for k, v in out.items()}


LAPROP_ORACLE_CASES = [
    {"learning_rate": 0.01},
    {
        "learning_rate": gradtx.linear_schedule(0.02, 0.002, 150),
        "b1": 0.8,
        "b2": 0.99,
        "eps": 1e-8,
        "eps_root": 1e-12,
        "weight_decay": 0.05,
    },
    {"learning_rate": 0.01, "centered": True, "steps_before_centered": 3, "amsgrad": True},
    {"learning_rate": 0.01, "b2": 0.9, "amsgrad": True},
]


@pytest.mark.parametrize("kwargs", LAPROP_ORACLE_CASES, ids=stable_id)
def test_laprop_is_the_papers_algorithm(kwargs, x64):
    options = {k: v for k, v in kwargs.items() if k != "learning_rate"}
    expected = _laprop_oracle(kwargs["learning_rate"], **options)
    ours = replay.trajectory(gradtx.laprop(**kwargs), reference)
    replay.assert_trajectories_equal(ours, expected, reference.SHAPES, rtol=1e-10, atol=1e-12)


def test_laprop_has_one_learning_rate():
    # The momentum's own rate (the authors' code puts the learning rate there) has another
    # name, so tree_get and tree_set find laprop's learning rate alone.
    tx = gradtx.tree_set(gradtx.laprop(gradtx.linear_schedule(0.1, 0.0, 10)), learning_rate=0.2)
    assert gradtx.tree_get(tx, "learning_rate") == 0.2
    params = {"w": jnp.ones(3)}
    state = tx.update({"w": jnp.ones(3)}, tx.init(params), params)[1]
    assert float(gradtx.tree_get(state, "learning_rate")) == pytest.approx(0.2)


LAPROP = json.loads((DATA / "laprop.json").read_text())


def _laprop_port(case):
    kwargs = dict(case["kwargs"])
    if case["schedule"]:
        kwargs["lr"] = torch_schedule(kwargs.get("lr", 4e-4), case["schedule"])
    return compat.pytorch.laprop(**kwargs)


@functools.cache
def _laprop_replayed(index):
    with jax.enable_x64(True):
        out = replay.trajectory(_laprop_port(LAPROP["cases"][index]), record_laprop)
        return {k: np.asarray(v)[record_laprop.SAVED] for k, v in out.items()}


@pytest.mark.parametrize("case", LAPROP["cases"], ids=lambda c: f"{c['index']}-{c['kwargs']}")
def test_laprop_port_matches_the_recorded_package(case):
    data = np.load(DATA / "laprop.npz")
    expected = {leaf: data[f"{case['index']}/{leaf}"] for leaf in reference.SHAPES}
    ours = _laprop_replayed(case["index"])
    replay.assert_trajectories_equal(ours, expected, reference.SHAPES, rtol=1e-9, atol=1e-12)


def test_laprop_port_takes_the_packages_arguments_and_defaults():
    ours = {k: p.default for k, p in inspect.signature(compat.pytorch.laprop).parameters.items()}
    theirs = LAPROP["defaults"]
    assert list(ours) == list(theirs)  # the same order: positional calls work too
    for name, default in theirs.items():
        assert ours[name] == (tuple(default) if isinstance(default, list) else default), name
    recorded = {k for case in LAPROP["cases"] for k in case["kwargs"]}
    assert set(ours) - {"lr"} <= recorded


def test_laprop_port_matches_the_package_live():
    pytest.importorskip("torch")
    pytest.importorskip("pytorch_optimizer")
    saved = record_laprop.SAVED[record_laprop.SAVED < 50]
    for index in (0, 4, 10):  # defaults; centered with ams_bound; the schedule to 0 with decay
        expected = record_laprop.run_torch(LAPROP["cases"][index], steps=50, saved=saved)
        ours = {k: v[: len(saved)] for k, v in _laprop_replayed(index).items()}
        replay.assert_trajectories_equal(ours, expected, reference.SHAPES, rtol=1e-9, atol=1e-12)
    # The package's default batched path rounds its step size lr / L to float32.
    batched = {**LAPROP["cases"][1], "kwargs": {"lr": 0.01, "foreach": None}}
    expected = record_laprop.run_torch(batched, steps=50, saved=saved)
    ours = {k: v[: len(saved)] for k, v in _laprop_replayed(1).items()}
    replay.assert_trajectories_equal(ours, expected, reference.SHAPES, rtol=1e-6, atol=1e-9)


def test_laprop_port_steps_by_its_momentum_at_lr_0():
    # pytorch-optimizer divides by L / lr, and by 1 at lr 0: the params keep moving there.
    data = np.load(DATA / "laprop.npz")
    index = next(c["index"] for c in LAPROP["cases"] if c["schedule"])
    last = data[f"{index}/w"][record_laprop.SAVED >= 150]
    assert len(last) > 3 and np.all(np.diff(last, axis=0) != 0)


# -- bad arguments ---------------------------------------------------------------------------

BAD = [
    (gradtx.scale_by_belief, {"b1": 1.0}, r"scale_by_belief\(b1=1.0\): b1 must be in \[0, 1\)"),
    (
        gradtx.adabelief,
        {"learning_rate": 0.1, "b2": -0.1},
        r"^adabelief\(b2=-0.1\): b2 must be in \[0, 1\)$",
    ),
    (
        gradtx.adabelief,
        {"learning_rate": 0.1, "eps": -1e-8},
        r"^adabelief\(eps=-1e-08\): eps must be in \[0, inf\)$",
    ),
    (
        gradtx.scale_by_belief,
        {"eps": 0.0, "eps_root": 0.0},
        r"scale_by_belief\(eps=0.0, eps_root=0.0\): .* 0 / 0",
    ),
    (gradtx.yogi, {"learning_rate": 0.1, "b1": 1.5}, r"^yogi\(b1=1.5\): b1 must be in \[0, 1\)$"),
    (
        gradtx.scale_by_yogi,
        {"initial_accumulator_value": -1.0},
        r"scale_by_yogi\(initial_accumulator_value=-1.0\): .* \[0, inf\)",
    ),
    (
        gradtx.scale_by_yogi,
        {"eps": 0.0, "initial_accumulator_value": 0.0},
        r"scale_by_yogi\(eps=0.0, eps_root=0.0, initial_accumulator_value=0.0\)",
    ),
    (gradtx.adan, {"learning_rate": 0.1, "b3": 1.0}, r"^adan\(b3=1.0\): b3 must be in \[0, 1\)$"),
    (
        gradtx.adan,
        {"learning_rate": 0.1, "eps_root": -1.0},
        r"^adan\(eps_root=-1.0\): eps_root must be in \[0, inf\)$",
    ),
    (
        gradtx.adan,
        {"learning_rate": 0.1, "weight_decay": -0.1},
        r"^adan\(weight_decay=-0.1\): weight_decay must be in \[0, inf\)$",
    ),
    (gradtx.adopt, {"learning_rate": 0.1, "b2": 1.0}, r"^adopt\(b2=1.0\): b2 must be in \[0, 1\)$"),
    (gradtx.scale_by_adopt, {"eps": 0.0}, r"scale_by_adopt\(eps=0.0\): .* 0 / 0"),
    (gradtx.scale_by_adopt, {"mu_dtype": jnp.int32}, r"scale_by_adopt\(mu_dtype=int32\)"),
    (
        gradtx.ademamix,
        {"learning_rate": 0.1, "b3": 1.0},
        r"^ademamix\(b3=1.0\): b3 must be in \[0, 1\)$",
    ),
    (
        gradtx.ademamix,
        {"learning_rate": 0.1, "alpha": -1.0},
        r"^ademamix\(alpha=-1.0\): alpha must be in \[0, inf\)$",
    ),
    (
        gradtx.scale_by_ademamix,
        {"b3": gradtx.linear_schedule(0.9, 1.1, 100)},
        r"scale_by_ademamix\(b3=.*\): b3 must be in \[0, 1\) at every step; it reaches 1.1",
    ),
    (
        gradtx.simplified_ademamix,
        {"learning_rate": 0.1, "b1": 1.0},
        r"^simplified_ademamix\(b1=1.0\): b1 must be in \[0, 1\)$",
    ),
    (
        gradtx.scale_by_simplified_ademamix,
        {"alpha": gradtx.linear_schedule(0.0, -1.0, 10)},
        r"scale_by_simplified_ademamix\(alpha=.*\): alpha must be in \[0, inf\) at every step",
    ),
    (
        gradtx.optimistic_gradient_descent,
        {"learning_rate": 0.1, "beta": -1.0},
        r"^optimistic_gradient_descent\(beta=-1.0\): beta must be in \[0, inf\)$",
    ),
    (
        gradtx.optimistic_adam_v2,
        {"learning_rate": 0.1, "alpha": float("nan")},
        r"^optimistic_adam_v2\(alpha=nan\): alpha must be a finite number$",
    ),
    (gradtx.optimistic_adam_v2, {"learning_rate": -0.1}, r"learning_rate=-0.1"),
    (gradtx.scale_by_laprop, {"b1": 1.0}, r"scale_by_laprop\(b1=1.0\): b1 must be in \[0, 1\)"),
    (
        gradtx.laprop,
        {"learning_rate": 0.1, "eps": 0.0},
        r"^laprop\(eps=0.0, eps_root=0.0\): .* 0 / 0",
    ),
    (
        gradtx.scale_by_laprop,
        {"steps_before_centered": -1},
        r"scale_by_laprop\(steps_before_centered=-1\)",
    ),
    (gradtx.scale_by_laprop, {"eps_mode": "inside"}, r"scale_by_laprop\(eps_mode='inside'\)"),
    (compat.pytorch.laprop, {"betas": (0.9, 1.0)}, r"pytorch\.laprop\(betas=\(0.9, 1.0\)\)"),
    (compat.pytorch.laprop, {"lr": -1.0}, r"pytorch\.laprop\(lr=-1.0\): lr must be >= 0"),
]


@pytest.mark.parametrize(("factory", "kwargs", "match"), BAD, ids=stable_id)
def test_bad_arguments_are_refused_naming_them(factory, kwargs, match):
    with pytest.raises(ValueError, match=match):
        factory(**kwargs)


def test_adopt_clip_value_fn_is_static_and_defaults_to_a_named_function():
    # A module-level default: equal optimizers compare and hash equal, and print the rule.
    assert gradtx.adopt(0.1) == gradtx.adopt(0.1)
    assert hash(gradtx.adopt(0.1)) == hash(gradtx.adopt(0.1))
    assert "clip_value_fn=fourth_root_of_count" in repr(gradtx.adopt(0.1))
    assert jax.tree.leaves(variants.scale_by_adopt()) == [0.9, 0.9999, 1e-6]
