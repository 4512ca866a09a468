"""Schedule-Free: gradtx's against optax.contrib's, the compat ports against the authors and Keras.

- ``schedule_free``, ``schedule_free_sgd`` and ``schedule_free_adamw`` equal optax's functions of
  the same names, every option, over 120 steps of a nonconvex problem on leaves of mixed shapes
  with zero and sign-flipped gradients: training point y and evaluation point x, float32 to
  1e-6 and float64 to 1e-10;
- ``compat.pytorch.{sgd,adamw,radam}_schedule_free`` equal the authors' ``schedulefree`` 1.4.1
  and ``compat.keras.schedule_free_adamw`` Keras 3's ``ScheduleFreeAdamW`` over 200 float64
  steps to 1e-9, y and x, recorded by tests/reference/record_schedule_free.py (every option)
  and live where the packages are installed;
- a naive three-sequence NumPy oracle (x, z kept, y formed) agrees step by step;
- ``schedule_free_eval_params`` finds the state in chains, masks, multi_tensor and
  inject_hyperparams; where gradtx differs from optax, the test says how.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import pathlib
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
from problems import make_params, wavy_loss
import pytest
from reference import record_layerwise as layerwise
from reference import record_schedule_free as reference
from test_compat import keras_schedule, torch_schedule

import gradtx
from gradtx import _schedule_free, compat
from gradtx._schedule_free import ScheduleFreeWarmup
from gradtx._tree import default_float

DATA = pathlib.Path(__file__).parent / "reference" / "data"
RECORDED = json.loads((DATA / "schedule_free.json").read_text())
CASES = RECORDED["cases"]


@dataclasses.dataclass(frozen=True)
class _Problem:
    """record_layerwise's problem (leaves w, t, b, s, z; float64) for ``steps`` steps."""

    steps: int

    def initial_params(self):
        return {k: jnp.asarray(v) for k, v in layerwise.initial_params().items()}

    def gradient(self, params, step):
        return layerwise.gradient(params, step, xp=jnp)


@dataclasses.dataclass(frozen=True)
class _WavyProblem:
    """The wavy loss on make_params' leaves plus a drifting linear term, in ``dtype``.

    Gradients are zero at steps ``t % 17 == 0`` and sign-flipped at ``t % 11 == 0``. Only jnp
    constants: NumPy ones traced in float32 would be lowered stale under x64 later (jax 0.10).
    """

    steps: int
    dtype: str

    def initial_params(self):
        return make_params(self.dtype, seed=1)

    def gradient(self, params, step):
        factor = jnp.where(step % 17 == 0, 0.0, jnp.where(step % 11 == 0, -1.0, 1.0))

        def leaf(g):
            phase = 0.9 * jnp.arange(g.size, dtype=g.dtype).reshape(g.shape)
            return (factor * (g + 0.4 * jnp.sin(0.06 * step + phase))).astype(g.dtype)

        return jax.tree.map(leaf, jax.grad(wavy_loss)(params))


def _trajectory(tx, problem, evaluate):
    """y and x after each step: the params, and ``evaluate(state, params)``."""

    def body(carry, step):
        params, state = carry
        updates, state = tx.update(problem.gradient(params, step), state, params)
        params = gradtx.apply_updates(params, updates)
        return (params, state), (params, evaluate(state, params))

    params = problem.initial_params()
    steps = jnp.arange(1, problem.steps + 1)
    return jax.lax.scan(body, (params, tx.init(params)), steps)[1]


@functools.cache
def _jitted(ours: bool, x64: bool):
    # One jitted function per x64 mode: jit's cache does not tell the two modes apart.
    del x64
    if ours:  # gradtx transforms are traced: one compile per chain layout
        evaluate, static = gradtx.schedule_free_eval_params, 1
    else:  # optax's are closures
        evaluate, static = optax.contrib.schedule_free_eval_params, (0, 1)
    return jax.jit(functools.partial(_trajectory, evaluate=evaluate), static_argnums=static)


def _ours(tx, problem):
    return _jitted(True, default_float() == jnp.float64)(tx, problem)


def _theirs(tx, problem):
    return _jitted(False, default_float() == jnp.float64)(tx, problem)


def _relative_error(ours, theirs):
    """The largest difference over each leaf's largest value, over y and x and every step."""
    errors = jax.tree.map(
        lambda a, b: np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b)), ours, theirs
    )
    return float(max(jax.tree.leaves(errors)))


# -- optax ---------------------------------------------------------------------------------


# optax's names, where gradtx has them at its top level.
OPTAX = types.SimpleNamespace(
    schedule_free=optax.contrib.schedule_free,
    schedule_free_sgd=optax.contrib.schedule_free_sgd,
    schedule_free_adamw=optax.contrib.schedule_free_adamw,
    adam=optax.adam,
    warmup_constant_schedule=optax.warmup_constant_schedule,
)


def _wrapped(lib):
    schedule = OPTAX.warmup_constant_schedule(0.0, 0.03, 10)  # optax's rates for both
    return lib.schedule_free(lib.adam(schedule, b1=0.0), schedule, b1=0.95, weight_lr_power=1.0)


OPTAX_CASES = {
    "sgd": lambda lib: lib.schedule_free_sgd(0.05),
    "sgd-every-option": lambda lib: lib.schedule_free_sgd(
        0.1, warmup_steps=10, b1=0.8, weight_decay=0.05, weight_lr_power=1.0
    ),
    "adamw-defaults": lambda lib: lib.schedule_free_adamw(),
    "adamw-every-option": lambda lib: lib.schedule_free_adamw(
        0.05, warmup_steps=10, b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.1, weight_lr_power=3.0
    ),
    "wrapper-adam-warmup": _wrapped,
}


WARMUP = {"sgd-every-option", "adamw-every-option"}


@pytest.mark.parametrize("name", OPTAX_CASES)
def test_matches_optax(name, monkeypatch):
    ours32 = _ours(OPTAX_CASES[name](gradtx), _WavyProblem(120, "float32"))
    with jax.enable_x64(True):
        problem = _WavyProblem(120, "float64")
        theirs = _theirs(OPTAX_CASES[name](OPTAX), problem)
        ours = _ours(OPTAX_CASES[name](gradtx), problem)
        if name in WARMUP:
            # optax's warmup_constant_schedule is float32 under x64 (int32 counts): gradtx's
            # float64 rates differ by float32 rounding, and with optax's rates it agrees.
            assert 1e-10 < _relative_error(ours, theirs) <= 1e-7
            schedule = optax.warmup_constant_schedule
            monkeypatch.setattr(_schedule_free, "warmup_constant_schedule", schedule)
            ours = _ours(OPTAX_CASES[name](gradtx), problem)
    assert _relative_error(ours, theirs) <= 1e-10
    assert all(np.ptp(x) > 0.1 for x in jax.tree.leaves(ours[1]))  # x moves
    # float32 against optax's float64 trajectory. gradtx forms y_t - y_{t-1} directly; optax
    # subtracts y_{t-1} from y_t, two parameter-sized numbers, and its float32 trajectory
    # drifts from its float64 one by up to 1.2e-5 here (Adam amplifies it), gradtx's by 9e-7.
    assert _relative_error(ours32, theirs) <= 1e-6


def test_state_dtype_matches_optax(x64):
    # float32 params, z kept in float64: optax keeps its scalars in float32 (the params'
    # lowest dtype), gradtx in float64, so they agree to float32 precision.
    problem = _WavyProblem(120, "float32")
    ours = _ours(gradtx.schedule_free_adamw(0.05, state_dtype=jnp.float64), problem)
    theirs = _theirs(optax.contrib.schedule_free_adamw(0.05, state_dtype=jnp.float64), problem)
    assert _relative_error(ours, theirs) <= 1e-6
    state = gradtx.schedule_free_adamw(state_dtype=jnp.float64).init(problem.initial_params())
    assert state.z["w"].dtype == jnp.float64


def test_defaults_and_state_are_optax():
    for name in ("schedule_free", "schedule_free_sgd", "schedule_free_adamw"):
        ours = inspect.signature(getattr(gradtx, name)).parameters
        theirs = inspect.signature(getattr(optax.contrib, name)).parameters
        assert [p for p in ours if p in theirs] == list(theirs)
        assert {p: ours[p].default for p in theirs} == {p: v.default for p, v in theirs.items()}
    params = make_params()
    state = gradtx.schedule_free_sgd().init(params)
    assert state._fields == optax.contrib.schedule_free_sgd().init(params)._fields
    # optax's own eval function reads gradtx's state.
    expected = optax.contrib.schedule_free_eval_params(state, params)
    np.testing.assert_allclose(gradtx.schedule_free_eval_params(state, params)["w"], expected["w"])


def _first_step(tx, params):
    """The updates and state of ``tx``'s first step on the wavy loss, and the gradients."""
    grads = jax.grad(wavy_loss)(params)
    return (*tx.update(grads, tx.init(params), params), grads)


_first_step_ours = jax.jit(_first_step)
_first_step_theirs = jax.jit(_first_step, static_argnums=0)


def test_warmup_steps_zero_trains_where_optax_never_moves():
    # optax.warmup_constant_schedule(0, lr, 0) stays at 0: its schedule_free_sgd never moves.
    params = make_params()
    ours = _first_step_ours(gradtx.schedule_free_sgd(0.1, warmup_steps=0), params)[0]
    plain = _first_step_ours(gradtx.schedule_free_sgd(0.1), params)[0]
    np.testing.assert_allclose(ours["w"], plain["w"], rtol=1e-6)
    assert np.all(np.abs(ours["w"]) > 0)
    state = _first_step_theirs(optax.contrib.schedule_free_sgd(0.1, warmup_steps=0), params)[1]
    np.testing.assert_array_equal(state.z["w"], params["w"])  # z never moves


def test_warmup_rate_is_one_step_later_in_optax_than_in_the_authors():
    # With a warmup, optax's base optimizer steps at rate(t - 1) (0 at the first step) while its
    # weights use rate(t); the authors' package uses rate(t) = lr * t / warmup_steps for both.
    params = make_params()
    optax_like = _first_step_ours(gradtx.schedule_free_sgd(1.0, warmup_steps=4), params)[0]
    assert not np.any(optax_like["w"])
    authors = compat.pytorch.sgd_schedule_free(lr=1.0, warmup_steps=4)
    updates, state, grads = _first_step_ours(authors, params)
    # First step: c = 1, so y_1 = z_1 = y_0 - 0.25 g.
    np.testing.assert_allclose(updates["w"], -0.25 * grads["w"], rtol=1e-6)
    assert float(gradtx.tree_get(state, "max_lr")) == 0.25
    rate = ScheduleFreeWarmup(learning_rate=1.0, warmup_steps=4)
    np.testing.assert_allclose(rate(jnp.arange(6)), [0.25, 0.5, 0.75, 1, 1, 1])


def test_scalars_stay_float32_for_bfloat16_params():
    params = make_params(jnp.bfloat16)
    ours = gradtx.schedule_free_adamw().init(params)
    theirs = optax.contrib.schedule_free_adamw().init(params)
    assert ours.b1.dtype == jnp.float32 and float(ours.b1) == float(np.float32(0.9))
    assert theirs.b1.dtype == jnp.bfloat16 and float(theirs.b1) == 0.8984375
    assert ours.z["w"].dtype == jnp.bfloat16


# -- a naive oracle --------------------------------------------------------------------------


def _oracle(steps, lr_step, lr_weight, b1, weight_decay, weight_lr_power, r):
    """The paper's three sequences, kept as they are: z steps, x averages, y mixes."""
    params = {k: np.asarray(v) for k, v in layerwise.initial_params().items()}
    z, x, y = dict(params), dict(params), dict(params)
    lr_max, weights, ys, xs = 0.0, 0.0, [], []
    for t in range(1, steps + 1):
        g = layerwise.gradient(y, t)
        lr_max = max(lr_max, lr_weight(t))
        weight = t**r * lr_max**weight_lr_power
        weights += weight
        c = weight / weights if weights else 0.0
        for k in params:
            z[k] = z[k] - lr_step(t) * (g[k] + weight_decay * y[k])
            x[k] = (1 - c) * x[k] + c * z[k]
            y[k] = b1 * x[k] + (1 - b1) * z[k]
        ys.append(dict(y))
        xs.append(dict(x))
    return tuple({k: np.stack([s[k] for s in seq]) for k in params} for seq in (ys, xs))


def _warmup(lr, steps, t):
    return lr * min(t / steps, 1.0)


ORACLE_CASES = {
    # optax's: z steps at the rate of step t - 1, the weights use that of step t.
    "optax-sgd": (
        lambda: gradtx.schedule_free_sgd(
            0.1, warmup_steps=8, b1=0.8, weight_decay=0.05, weight_lr_power=1.0
        ),
        dict(
            lr_step=lambda t: _warmup(0.1, 8, t - 1),
            lr_weight=lambda t: _warmup(0.1, 8, t),
            b1=0.8,
            weight_decay=0.05,
            weight_lr_power=1.0,
            r=0.0,
        ),
    ),
    "authors-sgd": (
        lambda: compat.pytorch.sgd_schedule_free(
            lr=0.1, momentum=0.8, weight_decay=0.05, warmup_steps=8, r=1.0, weight_lr_power=3.0
        ),
        dict(
            lr_step=lambda t: _warmup(0.1, 8, t),
            lr_weight=lambda t: _warmup(0.1, 8, t),
            b1=0.8,
            weight_decay=0.05,
            weight_lr_power=3.0,
            r=1.0,
        ),
    ),
}


@pytest.mark.parametrize("name", ORACLE_CASES)
def test_matches_the_naive_oracle(name, x64):
    build, spec = ORACLE_CASES[name]
    steps = 60
    ours = jax.tree.map(np.asarray, _ours(build(), _Problem(steps)))
    expected = _oracle(steps, **spec)
    assert _relative_error(ours, expected) <= 1e-12


# -- the authors' package and Keras, recorded --------------------------------------------


def _port(case):
    kwargs = dict(case["kwargs"])
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    if case["framework"] == "pytorch" and case["schedule"]:
        kwargs["lr"] = torch_schedule(kwargs["lr"], case["schedule"])
    elif case["schedule"]:
        kwargs["learning_rate"] = keras_schedule(case["schedule"])
    return getattr(getattr(compat, case["framework"]), case["optimizer"])(**kwargs)


@functools.cache
def _replayed(index):
    with jax.enable_x64(True):
        y, x = _ours(_port(CASES[index]), _Problem(reference.STEPS))
    return {
        f"{kind}/{k}": np.asarray(v)[reference.SAVED]
        for kind, tree in (("y", y), ("x", x))
        for k, v in tree.items()
    }


def _assert_matches(index, expected, rows=None):
    ours = _replayed(index)
    for key, values in expected.items():
        np.testing.assert_allclose(
            ours[key][: len(values) if rows is None else rows],
            values,
            rtol=1e-9,
            atol=1e-12,
            err_msg=key,
        )


def _id(case):
    return f"{case['index']}-{case['optimizer']}-{case['kwargs']}-{case['schedule']}"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_matches_the_recorded_reference(case):
    data = np.load(DATA / "schedule_free.npz")
    prefix = f"{case['index']}/"
    expected = {k[len(prefix) :]: data[k] for k in data.files if k.startswith(prefix)}
    assert len(expected) == 2 * len(layerwise.SHAPES)
    _assert_matches(case["index"], expected)
    assert all(np.ptp(v) > 0 for v in expected.values())


PORTS = {
    ("pytorch", "sgd_schedule_free"): compat.pytorch.sgd_schedule_free,
    ("pytorch", "adamw_schedule_free"): compat.pytorch.adamw_schedule_free,
    ("pytorch", "radam_schedule_free"): compat.pytorch.radam_schedule_free,
    ("keras", "schedule_free_adamw"): compat.keras.schedule_free_adamw,
}
# Keras's options that the port refuses, and flags that change no numbers.
UNRECORDED = {"use_ema", "ema_momentum", "ema_overwrite_frequency", "name", "foreach"}
UNRECORDED |= {"loss_scale_factor", "gradient_accumulation_steps"}


@pytest.mark.parametrize("key", PORTS, ids=lambda key: key[1])
def test_every_default_and_option_is_the_packages(key):
    port = PORTS[key]
    # Keras's exclude_from_weight_decay is a method there, a keyword-only argument here
    parameters = inspect.signature(port).parameters.items()
    ours = {k: p.default for k, p in parameters if k != "exclude_from_weight_decay"}
    theirs = RECORDED["defaults"][key[1]]
    assert list(ours) == list(theirs)  # the same order: positional calls work too
    for name, default in theirs.items():
        if name != "foreach":  # a performance flag: None here, True there, no numbers change
            assert ours[name] == (tuple(default) if isinstance(default, list) else default), name
    recorded = {k for c in CASES if c["optimizer"] == key[1] for k in c["kwargs"]}
    assert set(ours) - UNRECORDED <= recorded | {"lr", "learning_rate"}


LIVE_STEPS = 40


@pytest.fixture
def torch_float64():
    """The authors' package and torch, torch's default dtype restored afterwards."""
    pytest.importorskip("schedulefree")
    torch = pytest.importorskip("torch")
    dtype = torch.get_default_dtype()
    yield
    torch.set_default_dtype(dtype)


@pytest.mark.parametrize("index", [1, 11, 17], ids=lambda i: _id(CASES[i]))
def test_matches_the_authors_package_live(index, torch_float64):
    expected = reference.run_torch(CASES[index], steps=LIVE_STEPS)
    _assert_matches(index, expected)


@pytest.mark.parametrize("index", [26], ids=lambda i: _id(CASES[i]))
def test_matches_keras_live(index, keras_float64):
    keras = pytest.importorskip("keras")
    if not hasattr(keras.optimizers, "ScheduleFreeAdamW"):
        pytest.skip(f"Keras {keras.__version__} has no ScheduleFreeAdamW")
    expected = reference.run_keras(CASES[index], steps=12)
    _assert_matches(index, expected)


# -- evaluation params in every layout ---------------------------------------------------


def _labels(params):
    return jax.tree.map(lambda p: "frozen" if jnp.ndim(p) == 0 else "free", params)


LAYOUTS = {
    "plain": lambda sf: sf,
    "chain": lambda sf: gradtx.chain(gradtx.clip_by_global_norm(100.0), sf),
    "multi_tensor": lambda sf: gradtx.multi_tensor(sf, bucket_limit=8),
    "partition": lambda sf: gradtx.partition({"free": sf, "frozen": gradtx.set_to_zero()}, _labels),
    "inject_hyperparams": lambda _: gradtx.inject_hyperparams(gradtx.schedule_free_adamw)(0.05),
}


@jax.jit
def _eval_after_steps(tx, params):
    state = tx.init(params)
    for _ in range(3):
        updates, state = tx.update(jax.grad(wavy_loss)(params), state, params)
        params = gradtx.apply_updates(params, updates)
    return params, gradtx.schedule_free_eval_params(state, params)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_eval_params_in_every_layout(layout):
    params = make_params()
    sf = gradtx.schedule_free_adamw(0.05)
    y, x = _eval_after_steps(LAYOUTS[layout](sf), params)
    y_plain, x_plain = _eval_after_steps(sf, params)
    if layout == "partition":  # set_to_zero's leaf: x is y, the params it never moved
        np.testing.assert_array_equal(x["head"]["s"], params["head"]["s"])
        x, x_plain, y, y_plain = ({"w": t["w"], "b": t["b"]} for t in (x, x_plain, y, y_plain))
    for a, b in ((x, x_plain), (y, y_plain)):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), a, b)
    assert all(np.max(np.abs(a - b)) > 1e-3 for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y)))


def test_eval_params_refuses_a_state_without_schedule_free():
    params = make_params()
    with pytest.raises(ValueError, match="schedule_free_eval_params: the state holds no"):
        gradtx.schedule_free_eval_params(gradtx.adam(0.1).init(params), params)


def test_update_needs_the_params():
    params = make_params()
    tx = gradtx.schedule_free_sgd(0.1)
    with pytest.raises(ValueError, match=r"schedule_free needs the params"):
        tx.update(params, tx.init(params))


@pytest.mark.parametrize(
    "build, match",
    [
        (
            lambda: gradtx.schedule_free_sgd(b1=0.0),
            r"^schedule_free_sgd\(b1=0\.0\): b1 must be in \(0, 1\]",
        ),
        (lambda: gradtx.schedule_free_adamw(b1=1.5), r"^schedule_free_adamw\(b1=1\.5\)"),
        (
            lambda: gradtx.schedule_free(gradtx.sgd(0.1), -1.0),
            r"schedule_free\(learning_rate=-1\.0\)",
        ),
        (lambda: gradtx.schedule_free_sgd(weight_lr_power=-1.0), r"\(weight_lr_power=-1\.0\)"),
        (
            lambda: gradtx.schedule_free_sgd(state_dtype=jnp.int32),
            r"^schedule_free_sgd\(state_dtype=int32\)",
        ),
        (
            lambda: compat.pytorch.sgd_schedule_free(momentum=1.0),
            r"pytorch\.sgd_schedule_free\(momentum=1\.0\): momentum must be in \(0, 1\)",
        ),
        (lambda: compat.pytorch.adamw_schedule_free(lr=-1.0), r"adamw_schedule_free\(lr=-1\.0\)"),
        (
            lambda: compat.pytorch.radam_schedule_free(betas=(0.9, 1.0)),
            r"^pytorch\.radam_schedule_free\(betas=\(0\.9, 1\.0\)\): betas\[1\] must be in",
        ),
        (lambda: compat.pytorch.adamw_schedule_free(warmup_steps=1.5), r"\(warmup_steps=1\.5\)"),
        (  # schedulefree takes b2 = 1 and gives NaN from the first step (1 - b2**t = 0)
            lambda: compat.pytorch.adamw_schedule_free(betas=(0.9, 1.0)),
            r"^pytorch\.adamw_schedule_free\(betas=\(0\.9, 1\.0\)\): betas\[1\] must be in "
            r"\[0, 1\)$",
        ),
        (
            lambda: compat.keras.schedule_free_adamw(gradient_accumulation_steps=1),
            r"keras\.schedule_free_adamw\(gradient_accumulation_steps=1\)",
        ),
        (
            lambda: compat.keras.schedule_free_adamw(weight_decay=-1.0),
            r"^keras\.schedule_free_adamw\(weight_decay=-1\.0\)",
        ),
    ],
)
def test_bad_arguments_are_named(build, match):
    with pytest.raises(ValueError, match=match):
        build()
