"""Factored and per-block statistics: Adafactor (optax's and torch's) and parameter-scaled steps."""

from __future__ import annotations

import functools
import json
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from reference import record_factored as reference
import replay

import gradtx
from gradtx import compat

# One matrix that optax factors (both dims >= 128), a rank-3 leaf whose two largest dims
# tie (factored over axes 0 and 2 once min_dim_size_to_factor <= 3), a vector and a scalar
# below the default min_scale of the block-scaling tests.
SHAPES = {"m": (136, 130), "r": (5, 3, 5), "v": (7,), "s": ()}
STEPS = 120


def _params(dtype):
    rng = np.random.default_rng(0)
    params = {k: rng.normal(size=shape) for k, shape in SHAPES.items()}
    params["s"] = np.asarray(0.05)
    return {k: jnp.asarray(v, dtype) for k, v in params.items()}


def _gradient(params, step):
    """A wavy loss's gradient, all zero when step % 17 == 0 and negated when step % 11 == 0."""
    factor = jnp.where(step % 17 == 0, 0.0, jnp.where(step % 11 == 0, -1.0, 1.0))
    return jax.tree.map(
        lambda p: (factor * (p + 0.3 * jnp.cos(3 * p) + 0.1 * jnp.sin(0.1 * step))).astype(p.dtype),
        params,
    )


@functools.partial(jax.jit, static_argnums=(0, 1))
def _side_by_side(ours, theirs, params):
    """Both optimizers' updates at every step, fed the same params and gradients.

    Fed gradtx's params, optax never runs its own trajectory: relative steps of the
    params' size make trajectories chaotic, and last-bit differences would grow.
    """

    def body(carry, step):
        params, state, other = carry
        grads = _gradient(params, step)
        updates, state = ours.update(grads, state, params)
        expected, other = theirs.update(grads, other, params)
        return (gradtx.apply_updates(params, updates), state, other), (updates, expected)

    init = (params, ours.init(params), theirs.init(params))
    (_, state, other), (updates, expected) = jax.lax.scan(body, init, jnp.arange(1, STEPS + 1))
    return updates, expected, state, other


def _assert_close(ours, theirs, rtol):
    for path, a, b in zip(
        [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(theirs)[0]],
        jax.tree.leaves(ours),
        jax.tree.leaves(theirs),
    ):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        assert np.all(np.isfinite(a)) and np.any(b != 0), path
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.max(np.abs(b)), err_msg=path)


def _statistics(ours, theirs):
    """The factored statistics of both states where gradtx keeps them (optax: (1,) elsewhere)."""
    per_leaf = jax.tree.structure(dict.fromkeys(SHAPES, 0))
    pairs = [
        (a, b)
        for name in ("v_row", "v_col", "v")
        for a, b in zip(
            per_leaf.flatten_up_to(getattr(ours, name)),
            per_leaf.flatten_up_to(getattr(theirs, name)),
        )
        if a is not None
    ]
    return [a for a, _ in pairs], [b for _, b in pairs]


ADAFACTOR_CASES = {
    "defaults": {},
    "all-options": dict(
        learning_rate=0.02,
        min_dim_size_to_factor=3,
        decay_rate=0.6,
        decay_offset=-5,
        clipping_threshold=0.5,
        momentum=0.9,
        weight_decay_rate=1e-3,
        eps=1e-20,
        weight_decay_mask={"m": True, "r": False, "v": True, "s": False},
    ),
    "other-branches": dict(
        learning_rate=lambda count: 0.05 * 0.98**count,
        multiply_by_parameter_scale=False,
        clipping_threshold=None,
        momentum=0.5,
        factored=False,
    ),
}


def _float64_decay(step, exponent):
    return 1.0 - jnp.asarray(step + 1, jnp.float64) ** -exponent


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", ADAFACTOR_CASES, ids=list(ADAFACTOR_CASES))
def test_adafactor_matches_optax(case, dtype, monkeypatch):
    kwargs = dict(ADAFACTOR_CASES[case])
    with jax.enable_x64(dtype == "float64"):
        if dtype == "float64":
            # optax computes the decay schedule in float32 whatever the params (6e-8 relative):
            # it gets a float64 one through its own decay_rate_fn argument.
            factorized = optax._src.factorized
            patched = functools.partial(
                factorized.scale_by_factored_rms, decay_rate_fn=_float64_decay
            )
            monkeypatch.setattr(factorized, "scale_by_factored_rms", patched)
            # optax returns the momentum before casting it to dtype_momentum; gradtx.ema after.
            kwargs.setdefault("dtype_momentum", jnp.float64)
        ours, theirs = gradtx.adafactor(**kwargs), optax.adafactor(**kwargs)
        updates, expected, state, other = _side_by_side(ours, theirs, _params(dtype))
    rtol = 1e-6 if dtype == "float32" else 1e-10
    _assert_close(updates, expected, rtol)
    _assert_close(*_statistics(state[0], other[0]), rtol)


def _capped_decay(step, rate):  # Zhai et al.'s schedule, bounded by 0.999
    return jnp.minimum(1.0 - (step + 1.0) ** -rate, 0.999)


PRIMITIVE_CASES = {
    "factored_rms": (
        gradtx.chain(
            gradtx.scale_by_factored_rms(
                decay_rate=0.7,
                step_offset=-2,
                min_dim_size_to_factor=4,
                epsilon=1e-10,
                decay_rate_fn=_capped_decay,
            ),
            gradtx.scale(-0.01),
        ),
        optax.chain(
            optax.scale_by_factored_rms(
                decay_rate=0.7,
                step_offset=-2,
                min_dim_size_to_factor=4,
                epsilon=1e-10,
                decay_rate_fn=_capped_decay,
            ),
            optax.scale(-0.01),
        ),
    ),
    "param_block_rms_and_norm": (
        gradtx.chain(
            gradtx.scale_by_param_block_rms(0.5),
            gradtx.scale_by_param_block_norm(),
            gradtx.scale(-1e-4),
        ),
        optax.chain(
            optax.scale_by_param_block_rms(0.5),
            optax.scale_by_param_block_norm(),
            optax.scale(-1e-4),
        ),
    ),
}


@pytest.mark.parametrize("case", PRIMITIVE_CASES, ids=list(PRIMITIVE_CASES))
def test_primitives_match_optax(case):
    ours, theirs = PRIMITIVE_CASES[case]
    updates, expected, _, _ = _side_by_side(ours, theirs, _params(jnp.float32))
    _assert_close(updates, expected, 1e-6)


def test_param_block_scaling_floors_small_blocks_at_min_scale():
    params = {"small": jnp.asarray([3e-4, -4e-4]), "big": jnp.asarray([3.0, 4.0])}
    ones = jax.tree.map(jnp.ones_like, params)
    rms = gradtx.scale_by_param_block_rms(1e-3)
    norm = gradtx.scale_by_param_block_norm(1e-3)
    by_rms = rms.update(ones, rms.init(params), params)[0]
    by_norm = norm.update(ones, norm.init(params), params)[0]
    np.testing.assert_allclose(by_rms["small"], 1e-3, rtol=1e-6)
    np.testing.assert_allclose(by_rms["big"], np.sqrt(12.5), rtol=1e-6)
    np.testing.assert_allclose(by_norm["small"], 1e-3, rtol=1e-6)
    np.testing.assert_allclose(by_norm["big"], 5.0, rtol=1e-6)


STATE_SHAPES = [(130, 129), (129, 130), (130, 130), (4, 130, 129), (200, 3, 150), (3, 200), (7,)]


@pytest.mark.parametrize("shape", STATE_SHAPES, ids=str)
def test_factored_axes_are_optax_s(shape):
    params = {"x": jax.ShapeDtypeStruct(shape, jnp.float32)}
    ours = jax.eval_shape(gradtx.scale_by_factored_rms().init, params)
    theirs = jax.eval_shape(optax.scale_by_factored_rms().init, params)
    for name in ("v_row", "v_col", "v"):
        mine = getattr(ours, name)["x"]
        if mine is not None:
            assert mine.shape == getattr(theirs, name)["x"].shape, name


def _held(state) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state) if x.ndim > 0)


def test_a_factored_leaf_holds_one_number_per_row_and_per_column():
    m, n, k = 3000, 1000, 6
    params = {
        "matrix": jax.ShapeDtypeStruct((m, n), jnp.float32),
        "stack": jax.ShapeDtypeStruct((k, n, m), jnp.float32),
    }
    state = jax.eval_shape(gradtx.adafactor().init, params)
    factored = state[0]
    assert _held(factored.v_row["matrix"]) + _held(factored.v_col["matrix"]) == m + n
    assert _held(factored.v_row["stack"]) + _held(factored.v_col["stack"]) == k * (m + n)
    assert factored.v == {"matrix": None, "stack": None}
    assert _held(state) == m + n + k * (m + n)  # nothing else in adafactor's state is per element
    torch_state = jax.eval_shape(compat.pytorch.adafactor().init, params)
    assert _held(torch_state) == m + n + k * (m + n)


def test_decay_offset_starts_the_schedule_where_optax_gives_nan():
    params = {"m": jnp.ones((4, 3)), "v": jnp.asarray([1.0, -2.0])}
    grads = {"m": jnp.arange(12.0).reshape(4, 3), "v": jnp.asarray([0.5, 1.0])}
    late = gradtx.scale_by_factored_rms(step_offset=3, min_dim_size_to_factor=2)
    start = gradtx.scale_by_factored_rms(min_dim_size_to_factor=2)
    first = jax.jit(late.update)(grads, late.init(params))[0]
    expected = jax.jit(start.update)(grads, start.init(params))[0]
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(a, b)  # beta = 0 at the first step either way
    theirs = optax.scale_by_factored_rms(step_offset=3, min_dim_size_to_factor=2)
    assert np.all(np.isnan(jax.jit(theirs.update)(grads, theirs.init(params), params)[0]["m"]))


def test_learning_rate_is_read_from_the_state():
    params = {"w": jnp.ones((2, 3))}
    grads = {"w": jnp.full((2, 3), 0.5)}
    tx = gradtx.adafactor(learning_rate=gradtx.exponential_decay(0.1, 1, 0.5))
    step = jax.jit(tx.update)
    state = step(grads, tx.init(params), params)[1]
    assert float(gradtx.tree_get(state, "learning_rate")) == pytest.approx(0.1)
    state = step(grads, state, params)[1]
    assert float(gradtx.tree_get(state, "learning_rate")) == pytest.approx(0.05)
    assert float(gradtx.tree_get(gradtx.adafactor().init(params), "learning_rate")) == 1.0
    torch_tx = compat.pytorch.adafactor(lr=0.8)  # rho_t = min(lr, 1/sqrt(t))
    state, step = torch_tx.init(params), jax.jit(torch_tx.update)
    rates = []
    for _ in range(3):
        state = step(grads, state, params)[1]
        rates.append(float(gradtx.tree_get(state, "learning_rate")))
    np.testing.assert_allclose(rates, [0.8, 1 / np.sqrt(2), 1 / np.sqrt(3)], rtol=1e-6)


FACTORED, PYTORCH = gradtx.scale_by_factored_rms, compat.pytorch.adafactor

# (factory, arguments, what the message says; by default "name(argument=value)").
BAD = [
    (FACTORED, {"min_dim_size_to_factor": 0}, None),
    (FACTORED, {"min_dim_size_to_factor": 2.5}, "min_dim_size_to_factor must be a whole"),
    (FACTORED, {"decay_rate": -0.1}, None),
    (FACTORED, {"epsilon": 0.0}, None),
    (FACTORED, {"epsilon": -1.0}, r"epsilon must be in \[0, inf\)"),
    (FACTORED, {"step_offset": float("nan")}, "step_offset must be a finite"),
    (FACTORED, {"factor_axes": "first"}, None),
    (FACTORED, {"eps_mode": "sqrt"}, None),
    (gradtx.scale_by_param_block_rms, {"min_scale": -1.0}, None),
    (gradtx.scale_by_param_block_norm, {"min_scale": -1.0}, None),
    (gradtx.adafactor, {"min_dim_size_to_factor": 0}, None),
    (gradtx.adafactor, {"decay_rate": -1.0}, None),
    (gradtx.adafactor, {"decay_offset": float("inf")}, None),
    (gradtx.adafactor, {"eps": 0.0}, None),
    (gradtx.adafactor, {"clipping_threshold": -1.0}, None),
    (gradtx.adafactor, {"momentum": 1.5}, None),
    (gradtx.adafactor, {"weight_decay_rate": -0.1}, None),
    (gradtx.adafactor, {"learning_rate": -0.1}, "learning_rate=-0.1"),
    (PYTORCH, {"lr": -1.0}, None),
    (PYTORCH, {"beta2_decay": 0.5}, None),
    (PYTORCH, {"eps": (0.0, 1e-3)}, r"eps\[0\] must be None or > 0"),
    (PYTORCH, {"eps": (None, -1.0)}, r"eps\[1\] must be >= 0"),
    (PYTORCH, {"d": 0.5}, None),
    (PYTORCH, {"weight_decay": -1.0}, None),
]


@pytest.mark.parametrize(
    ("factory", "kwargs", "message"),
    BAD,
    # Names, not reprs: a function's repr holds its address, which differs between
    # pytest-xdist workers and makes them collect different tests.
    ids=[
        f"{factory.__name__}-{'-'.join(kwargs)}-{i}" for i, (factory, kwargs, _) in enumerate(BAD)
    ],
)
def test_bad_arguments_are_refused_naming_them(factory, kwargs, message):
    if message is None:
        name = "pytorch.adafactor" if factory is PYTORCH else factory.__name__
        message = re.escape(f"{name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})")
    with pytest.raises(ValueError, match=message):
        factory(**kwargs)


# -- torch.optim.Adafactor, recorded by tests/reference/record_factored.py ----------------

DATA = pathlib.Path(__file__).parent / "reference" / "data"
CASES = json.loads((DATA / "factored.json").read_text())["cases"]


def _port(case):
    kwargs = reference.torch_kwargs(case)
    schedule = case["schedule"]
    if schedule:
        assert schedule["type"] == "ExponentialLR"
        kwargs["lr"] = gradtx.exponential_decay(kwargs["lr"], 1, schedule["gamma"])
    return compat.pytorch.adafactor(**kwargs)


@functools.cache
def _ours(index):
    with jax.enable_x64(True):
        return jax.tree.map(np.asarray, replay.trajectory(_port(CASES[index]), reference))


def _id(case):
    return f"{case['index']}-{case['kwargs']}-{case['schedule']}"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_pytorch_adafactor_matches_the_recorded_reference(case):
    data = np.load(DATA / "factored.npz")
    expected = {leaf: data[f"{case['index']}/{leaf}"] for leaf in reference.SHAPES}
    replay.assert_trajectories_equal(_ours(case["index"]), expected, reference.SHAPES)
    if case["schedule"]:
        schedule = _port(case).transforms[-1].learning_rate  # the same lr feeds rho_t and decay
        with jax.enable_x64(True):
            rates = jax.vmap(schedule)(jnp.arange(reference.STEPS))
        np.testing.assert_allclose(rates, data[f"{case['index']}/lr"], rtol=1e-12)


def test_every_option_of_pytorch_adafactor_is_recorded():
    options = {key for case in CASES for key in case["kwargs"]} | {"schedule"}
    assert options >= {"lr", "beta2_decay", "eps", "d", "weight_decay", "foreach", "maximize"}
    assert any(not case["kwargs"] and not case["schedule"] for case in CASES)
    assert any(case["schedule"] for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_pytorch_adafactor_matches_torch_live(case):
    pytest.importorskip("torch")
    replay.assert_trajectories_equal(
        _ours(case["index"]), reference.run_torch(case), reference.SHAPES
    )
