"""Per-layer transforms (trust ratios, SM3, NovoGrad) and their optimizers.

- equal to optax's functions of the same names, every option, 120 steps, float32 and float64;
- a zero-norm param or update gives ratio 1, never NaN;
- SM3 holds m + n statistics for an m x n leaf;
- arguments are checked when built;
- ``compat.keras.lamb`` equals Keras 3's Lamb over 200 float64 steps, recorded and live.
"""

from __future__ import annotations

import functools
import inspect
import json
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from reference import record_layerwise as reference
import replay
from test_compat import keras_schedule

import gradtx
from gradtx import compat

STEPS = 120

# One matrix larger than 128 x 128 (SM3 keeps a row and a column accumulator), a vector, a
# scalar and a rank-3 leaf, plus a zero-initialised bias (a zero param norm).
SHAPES = {"w": (129, 131), "v": (7,), "s": (), "t": (2, 3, 4)}


def _per_leaf(values: np.ndarray) -> dict[str, np.ndarray]:
    out, start = {}, 0
    for name, shape in SHAPES.items():
        size = int(np.prod(shape, dtype=int))
        out[name] = values[start : start + size].reshape(shape)
        start += size
    return out


_K = np.arange(sum(int(np.prod(s, dtype=int)) for s in SHAPES.values()), dtype=np.float64)
A = _per_leaf(1.0 + 0.5 * np.sin(1.3 * _K + 0.5))
C = _per_leaf(0.8 * np.cos(0.7 * _K + 0.2))


def initial_params(dtype) -> dict[str, jax.Array]:
    p0 = _per_leaf(1.5 * np.sin(2.1 * _K + 1.0) + 0.2)
    return {k: jnp.asarray(v, dtype) for k, v in p0.items()}


def gradient(params: dict, step) -> dict:
    """d/dp [a p**2 + 0.5 sin 3p + c(t) p], zero when t % 17 == 0, negated when t % 11 == 0."""
    factor = jnp.where(step % 17 == 0, 0.0, jnp.where(step % 11 == 0, -1.0, 1.0))
    out = {}
    for k, p in params.items():
        a, c = jnp.asarray(A[k], p.dtype), jnp.asarray(C[k], p.dtype)
        drift = 0.4 * jnp.sin(0.06 * step.astype(p.dtype))
        out[k] = factor.astype(p.dtype) * (2 * a * p + 1.5 * jnp.cos(3 * p) + c + drift)
    return out


def _trajectory(tx, params):
    def body(carry, step):
        params, state = carry
        updates, state = tx.update(gradient(params, step), state, params)
        params = jax.tree.map(lambda p, u: p + u, params, updates)
        return (params, state), params

    steps = jnp.arange(1, STEPS + 1)
    return jax.lax.scan(body, (params, tx.init(params)), steps)[1]


_run = jax.jit(_trajectory, static_argnums=0)


def _compare(ours, theirs, dtype):
    if dtype == jnp.float64:
        chex.assert_trees_all_close(ours, theirs, rtol=1e-10, atol=1e-12)
    else:
        chex.assert_trees_all_close(ours, theirs, rtol=1e-6, atol=1e-6)


def _not_vectors(params):
    return {k: jnp.ndim(p) != 1 for k, p in params.items()}


# The defaults are compared by signature (test_defaults_are_optaxs); each optimizer runs once
# with every option changed, which also checks that each argument reaches its primitive.
CASES = [
    # Every default but the learning rate, then every option changed at once.
    ("lamb", {"learning_rate": 0.002}),
    ("lars", {"learning_rate": 0.02}),
    ("fromage", {"learning_rate": 0.005}),
    ("sm3", {"learning_rate": 0.01}),
    ("novograd", {"learning_rate": 0.001}),
    (
        "lamb",
        {
            "learning_rate": 0.002,
            "b1": 0.8,
            "b2": 0.99,
            "eps": 1e-4,
            "eps_root": 1e-8,
            "weight_decay": 0.1,
            "mask": {"w": True, "v": False, "s": True, "t": True},
        },
    ),
    (
        "lars",
        {
            "learning_rate": 0.02,
            "weight_decay": 0.05,
            "weight_decay_mask": {"w": True, "v": False, "s": True, "t": False},
            "trust_coefficient": 0.01,
            "eps": 1e-3,
            "trust_ratio_mask": _not_vectors,
            "momentum": 0.8,
            "nesterov": True,
        },
    ),
    ("fromage", {"learning_rate": 0.005, "min_norm": 0.5}),
    ("sm3", {"learning_rate": 0.01, "momentum": 0.5}),
    (
        "novograd",
        {
            "learning_rate": 0.001,
            "b1": 0.8,
            "b2": 0.5,
            "eps": 1e-4,
            "eps_root": 1e-6,
            "weight_decay": 0.05,
        },
    ),
    # What no optimizer reaches: SM3 with b2 < 1.
    ("scale_by_sm3", {"b1": 0.7, "b2": 0.99, "eps": 1e-3}),
]

# A primitive is followed by a descent step at this rate. The rates above keep the
# trajectories from amplifying rounding (a 1e-10 change of p0 moves none by over 1e-9): a
# one-element layer is sign descent to NovoGrad, chaotic near a minimum at larger rates.
PRIMITIVES = {"scale_by_trust_ratio": 0.01, "scale_by_sm3": 0.01, "scale_by_novograd": 0.01}


def _build(library, name, kwargs):
    tx = getattr(library, name)(**kwargs)
    if name in PRIMITIVES:
        return library.chain(tx, library.scale_by_learning_rate(PRIMITIVES[name]))
    return tx


def _optax_params(name, params):
    # optax's scale_by_sm3 fails on a scalar (IndexError): it gets a size-1 vector, which is
    # the same arithmetic. (Not for the others: lars's masks here depend on ndim.)
    if "sm3" in name:
        return {**params, "s": params["s"].reshape(1)}
    return params


@pytest.mark.parametrize(
    "name", sorted({*PRIMITIVES, "lamb", "lars", "fromage", "sm3", "novograd"})
)
def test_defaults_are_optaxs(name):
    ours = inspect.signature(getattr(gradtx, name)).parameters
    theirs = inspect.signature(getattr(optax, name)).parameters
    assert list(ours) == list(theirs)
    assert {k: p.default for k, p in ours.items()} == {k: p.default for k, p in theirs.items()}


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(
    ("name", "kwargs"), CASES, ids=[f"{name}-{len(kwargs)}" for name, kwargs in CASES]
)
def test_every_option_matches_optax(name, kwargs, dtype):
    with jax.enable_x64(dtype == jnp.float64):
        params = initial_params(dtype)
        ours = _run(_build(gradtx, name, kwargs), params)
        theirs = _run(_build(optax, name, kwargs), _optax_params(name, params))
    _compare(ours, {**theirs, "s": theirs["s"].reshape(STEPS)}, dtype)


# -- zero norms ---------------------------------------------------------------------------


def test_a_zero_norm_gives_ratio_one_and_no_nan_anywhere():
    # debug_nans raises on a NaN in any operation, also in a branch jnp.where discards.
    params = {"zero": jnp.zeros(3), "w": jnp.asarray([3.0, 4.0]), "both": jnp.zeros(2)}
    grads = {"zero": jnp.asarray([1.0, 2.0, 2.0]), "w": jnp.zeros(2), "both": jnp.zeros(2)}
    tx = gradtx.scale_by_trust_ratio()
    with jax.debug_nans(True):
        ours = tx.update(grads, tx.init(params), params)[0]
    chex.assert_trees_all_equal(ours, grads)  # the ratio is 1: updates unchanged
    theirs = optax.scale_by_trust_ratio().update(grads, optax.EmptyState(), params)[0]
    chex.assert_trees_all_equal(ours, theirs)
    for make in (gradtx.lamb, gradtx.novograd):
        opt = make(0.1)
        with jax.debug_nans(True):
            updates = opt.update(grads, opt.init(params), params)[0]
        assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates)), make


def test_a_ratio_scales_each_layer_by_its_own_norms():
    params = {"a": jnp.asarray([0.0, 10.0]), "b": jnp.full((2, 2), 0.5)}
    grads = {"a": jnp.asarray([3.0, 4.0]), "b": jnp.full((2, 2), 2.0)}
    tx = gradtx.scale_by_trust_ratio(trust_coefficient=0.5, eps=1.0)
    updates = tx.update(grads, tx.init(params), params)[0]
    # a: 0.5 * 10 / (5 + 1); b: 0.5 * 1 / (4 + 1)
    np.testing.assert_allclose(updates["a"], np.asarray([3.0, 4.0]) * 5 / 6, rtol=1e-6)
    np.testing.assert_allclose(updates["b"], np.full((2, 2), 2.0) * 0.1, rtol=1e-6)
    floor = gradtx.scale_by_trust_ratio(min_norm=20.0)  # both norms raised to 20: ratio 1
    chex.assert_trees_all_close(floor.update(grads, (), params)[0], grads)


# -- state sizes ---------------------------------------------------------------------------


def _sizes(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_sm3_holds_m_plus_n_statistics_for_an_m_by_n_leaf():
    params = initial_params(jnp.float32)
    for momentum, extra in ((None, 0), (0.9, _sizes(params))):
        tx = gradtx.sm3(0.1, momentum=momentum)
        state = jax.eval_shape(tx.init, params)
        mu = gradtx.tree_get(state, "mu")
        assert [x.shape for x in mu["w"]] == [(129,), (131,)]
        assert [x.shape for x in mu["t"]] == [(2,), (3,), (4,)]
        assert [x.shape for x in mu["v"]] == [(7,)] and [x.shape for x in mu["s"]] == [()]
        statistics = 129 + 131 + 2 + 3 + 4 + 7 + 1
        # Besides: scale_by_learning_rate's count and rate; with momentum, one buffer.
        assert _sizes(state) == statistics + 2 + extra


def test_sm3_takes_leaves_with_an_empty_axis_and_complex_gradients():
    tx = gradtx.scale_by_sm3(b1=None)
    empty = {"e": jnp.zeros((3, 0))}
    updates, state = tx.update(empty, tx.init(empty))
    assert updates["e"].shape == (3, 0) and [x.shape for x in state.mu["e"]] == [(3,), (0,)]
    # A complex gradient accumulates |g|**2: the step of |g|, turned by g's phase.
    real = jnp.asarray([[1.0, -2.0], [0.5, 3.0]])
    phase = (1 + 1j) / np.sqrt(2)
    step = lambda g: tx.update(g, tx.init(g))  # noqa: E731
    (u_real, s_real), (u_complex, s_complex) = step(real), step(real * phase)
    np.testing.assert_allclose(u_complex, u_real * phase, rtol=1e-6)
    chex.assert_trees_all_close(s_complex.mu, s_real.mu, rtol=1e-6)
    assert all(x.dtype == jnp.float32 for x in s_complex.mu)


def test_novograd_keeps_one_float32_number_per_layer():
    # float16 params: |g|**2 = 9e4 overflows float16, where optax's update becomes 0.
    params = {"w": jnp.ones(2, jnp.float16), "b": jnp.ones((), jnp.float16)}
    grads = {"w": jnp.full(2, 300.0, jnp.float16), "b": jnp.asarray(-300.0, jnp.float16)}
    tx = gradtx.scale_by_novograd()
    updates, state = tx.update(grads, tx.init(params), params)
    assert jax.tree.map(lambda x: (x.shape, x.dtype), state.nu) == {
        "w": ((), jnp.float32),
        "b": ((), jnp.float32),
    }
    np.testing.assert_allclose(updates["w"], [2**-0.5] * 2, rtol=1e-3)
    np.testing.assert_allclose(updates["b"], -1.0, rtol=1e-3)
    theirs = optax.scale_by_novograd().update(grads, optax.scale_by_novograd().init(params), params)
    assert float(theirs[0]["b"]) == 0.0  # optax: -300 / (sqrt(inf) + eps)


def test_novograd_stores_mu_in_mu_dtype_and_updates_in_the_gradients_dtype():
    params = jax.tree.map(jnp.asarray, reference.initial_params())  # small leaves, float32
    ours, theirs = (
        gradtx.scale_by_novograd(mu_dtype=jnp.bfloat16),
        optax.scale_by_novograd(mu_dtype=jnp.bfloat16),
    )
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    for step in range(1, 4):
        grads = reference.gradient(params, step, xp=jnp)
        u_ours, s_ours = ours.update(grads, s_ours, params)
        u_theirs, s_theirs = theirs.update(grads, s_theirs, params)
        chex.assert_trees_all_equal_dtypes(u_ours, params)
        # Within two bfloat16 ulps: optax rounds b1 * m to bfloat16 before adding the step.
        chex.assert_trees_all_close(s_ours.mu, s_theirs.mu, rtol=2**-6, atol=1e-6)
        chex.assert_trees_all_equal(
            u_ours, jax.tree.map(lambda m: m.astype(jnp.float32), s_ours.mu)
        )


# -- Fromage's shrinkage, learning rates in the state ----------------------------------------


def test_fromage_shrinks_the_params_without_cancellation():
    # A zero gradient leaves only the shrinkage: u = (1 / s - 1) p, s = sqrt(1 + lr**2).
    params = {"w": jnp.asarray([1.0, -2.0, 4.0])}
    grads = {"w": jnp.zeros(3)}
    lr = np.float64(np.float32(1e-3))  # the rate a float32 schedule gives
    exact = (1 / np.sqrt(1 + lr**2) - 1) * np.asarray(params["w"], np.float64)
    ours = gradtx.fromage(gradtx.constant_schedule(1e-3))
    np.testing.assert_allclose(ours.update(grads, ours.init(params), params)[0]["w"], exact, 1e-6)
    # optax forms 1 / s - 1 in the schedule's float32: 1 + 1e-6 rounds, and 5% of it is lost.
    theirs = optax.fromage(optax.linear_schedule(1e-3, 1e-3, 10))
    off = theirs.update(grads, theirs.init(params), params)[0]["w"] / exact - 1
    assert np.all(np.abs(off) > 0.04)


SCHEDULE = gradtx.linear_schedule(0.1, 0.01, 10)


@pytest.mark.parametrize("name", ["lamb", "lars", "fromage", "sm3", "novograd"])
def test_the_learning_rate_is_read_from_the_state_and_set_by_name(name):
    tx = getattr(gradtx, name)(SCHEDULE)
    assert gradtx.tree_get(tx, "learning_rate") == SCHEDULE
    params = jax.tree.map(jnp.asarray, reference.initial_params())  # small leaves, float32
    state = tx.init(params)
    for step in range(1, 4):
        _, state = tx.update(reference.gradient(params, step, xp=jnp), state, params)
    assert float(gradtx.tree_get(state, "learning_rate")) == pytest.approx(float(SCHEDULE(2)))
    assert gradtx.tree_get(gradtx.tree_set(tx, learning_rate=0.5), "learning_rate") == 0.5


def test_multi_tensor_refuses_them_by_name():
    for tx, part in (
        (gradtx.lamb(0.1), "scale_by_trust_ratio"),
        (gradtx.sm3(0.1), "scale_by_sm3"),
        (gradtx.novograd(0.1), "scale_by_novograd"),
    ):
        with pytest.raises(ValueError, match=f"multi_tensor: {part} needs each leaf's own"):
            gradtx.multi_tensor(tx)


# -- bad input -------------------------------------------------------------------------------

BAD = [
    (
        gradtx.scale_by_trust_ratio,
        {"trust_coefficient": 0.0},
        r"scale_by_trust_ratio\(trust_coefficient=0.0\): trust_coefficient must be in \(0, inf\)",
    ),
    (
        gradtx.scale_by_trust_ratio,
        {"min_norm": -1.0},
        r"\(min_norm=-1.0\): min_norm must be in \[0, inf\)",
    ),
    (gradtx.scale_by_trust_ratio, {"eps": -1e-3}, r"\(eps=-0.001\): eps must be in \[0, inf\)"),
    (
        gradtx.lars,
        {"learning_rate": 0.1, "trust_coefficient": -1e-3},
        r"^lars\(trust_coefficient=-0.001\): trust_coefficient must be in \(0, inf\)$",
    ),
    (
        gradtx.lars,
        {"learning_rate": 0.1, "momentum": 1.5},
        r"^lars\(momentum=1.5\): momentum must be in \[0, 1\]$",
    ),
    (
        gradtx.lars,
        {"learning_rate": 0.1, "weight_decay": -0.1},
        r"^lars\(weight_decay=-0.1\): weight_decay must be in \[0, inf\)$",
    ),
    (
        gradtx.lamb,
        {"learning_rate": 0.1, "b2": 1.0},
        r"^lamb\(b2=1.0\): b2 must be in \[0, 1\)$",
    ),
    (
        gradtx.lamb,
        {"learning_rate": -0.1},
        r"^lamb\(learning_rate=-0.1\): learning_rate must be in \[0, inf\)$",
    ),
    (
        gradtx.fromage,
        {"learning_rate": -0.1},
        r"^fromage\(learning_rate=-0.1\): learning_rate must be in \[0, inf\)$",
    ),
    (
        gradtx.fromage,
        {"learning_rate": 0.1, "min_norm": -1.0},
        r"^fromage\(min_norm=-1.0\): min_norm must be in \[0, inf\)$",
    ),
    (
        gradtx.sm3,
        {"learning_rate": 0.1, "momentum": 1.5},
        r"^sm3\(momentum=1.5\): momentum must be in \[0, 1\]$",
    ),
    (gradtx.scale_by_sm3, {"b2": -0.1}, r"scale_by_sm3\(b2=-0.1\)"),
    (
        gradtx.scale_by_sm3,
        {"eps": float("nan")},
        r"scale_by_sm3\(eps=nan\): eps must be a finite number",
    ),
    (
        gradtx.novograd,
        {"learning_rate": 0.1, "eps": 0.0},
        r"^novograd\(eps=0.0, eps_root=0.0\): with eps and eps_root all 0",
    ),
    (
        gradtx.novograd,
        {"learning_rate": 0.1, "b2": 1.5},
        r"^novograd\(b2=1.5\): b2 must be in \[0, 1\]$",
    ),
    (
        gradtx.novograd,
        {"learning_rate": 0.1, "weight_decay": -1.0},
        r"^novograd\(weight_decay=-1.0\): weight_decay must be in \[0, inf\)$",
    ),
    (gradtx.scale_by_novograd, {"mu_dtype": jnp.int32}, r"scale_by_novograd\(mu_dtype=int32\)"),
]


@pytest.mark.parametrize(("factory", "kwargs", "message"), BAD)
def test_invalid_arguments_are_refused_naming_them(factory, kwargs, message):
    with pytest.raises(ValueError, match=message):
        factory(**kwargs)


@pytest.mark.parametrize(
    "tx",
    [
        gradtx.scale_by_trust_ratio(),
        gradtx.scale_by_fromage_learning_rate(),
        gradtx.scale_by_novograd(),
    ],
    ids=lambda tx: tx.name,
)
def test_the_params_are_required(tx):
    params = {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match=f"{tx.name} needs the params"):
        tx.update(params, tx.init(params))


# -- keras.optimizers.Lamb: recorded by tests/reference/record_layerwise.py, and live -------

DATA = pathlib.Path(__file__).parent / "reference" / "data"
KERAS_CASES = json.loads((DATA / "layerwise.json").read_text())["cases"]


def _keras_port(case):
    kwargs = dict(case["kwargs"])
    if case["schedule"]:
        kwargs["learning_rate"] = keras_schedule(case["schedule"])
    return compat.keras.lamb(**kwargs)


@functools.cache
def _keras_ours(index):
    with jax.enable_x64(True):
        return jax.tree.map(
            np.asarray, replay.trajectory(_keras_port(KERAS_CASES[index]), reference)
        )


def _keras_id(case):
    return f"{case['index']}-{case['kwargs']}-{case['schedule']}"


@pytest.mark.parametrize("case", KERAS_CASES, ids=_keras_id)
def test_keras_lamb_matches_the_recorded_reference(case):
    data = np.load(DATA / "layerwise.npz")
    expected = {leaf: data[f"{case['index']}/{leaf}"] for leaf in reference.SHAPES}
    replay.assert_trajectories_equal(_keras_ours(case["index"]), expected, reference.SHAPES)
    if case["schedule"]:
        with jax.enable_x64(True):
            rates = jax.vmap(keras_schedule(case["schedule"]))(jnp.arange(reference.STEPS))
        np.testing.assert_allclose(rates, data[f"{case['index']}/lr"], rtol=1e-12)


def test_every_option_of_keras_lamb_is_recorded():
    options = {key for case in KERAS_CASES for key in case["kwargs"]}
    assert options >= {
        "learning_rate",
        "beta_1",
        "beta_2",
        "epsilon",
        "weight_decay",
        "clipnorm",
        "global_clipnorm",
        "clipvalue",
    }
    assert any(not case["kwargs"] and not case["schedule"] for case in KERAS_CASES)
    assert any(case["schedule"] for case in KERAS_CASES)


# Live, the case where Keras differs most from optax (each live case takes seconds).
LIVE = [c for c in KERAS_CASES if "weight_decay" in c["kwargs"]]


@pytest.mark.parametrize("case", LIVE, ids=_keras_id)
def test_keras_lamb_matches_keras_live(case, keras_float64):
    replay.assert_trajectories_equal(
        _keras_ours(case["index"]), reference.run_keras(case), reference.SHAPES
    )


def test_keras_lamb_refuses_a_decay_it_cannot_reproduce():
    with pytest.raises(
        ValueError, match=r"(?s)keras\.lamb\(learning_rate=.*weight_decay=0\.1\).*a constant"
    ):
        compat.keras.lamb(gradtx.exponential_decay(0.1, 10, 0.5), weight_decay=0.1)
    with pytest.raises(ValueError, match=r"keras\.lamb\(learning_rate=10, weight_decay=0\.1\)"):
        compat.keras.lamb(10, weight_decay=0.1)
    assert compat.keras.lamb(gradtx.exponential_decay(0.1, 10, 0.5))  # no decay: schedules work
