"""COCOB, Mechanic (``mechanize``) and MoMo (``momo``, ``momo_adam``) against optax.contrib.

- each equals optax's over 200 steps of test_parameter_free's nonconvex problem (a matrix,
  a rank-3 leaf, a vector, a scalar, a zero leaf; zero-gradient and sign-flipped steps;
  ``value=`` the loss), at the defaults and with every option changed: bitwise in practice,
  asserted to 1e-6 in float32 and 1e-10 in float64; ``mechanize`` around Adam and around
  MoMo (whose ``value=`` it passes on);
- hyperparameters are leaves: new values, one trace;
- a missing ``value=`` or params, and bad arguments, are refused naming them;
- the differences from optax: COCOB's float16 scale, MoMo's bound read from its argument.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax import contrib
import pytest
from reference import record_parameter_free as problem
from test_parameter_free import _scan

import gradtx


def _matrices(params):
    """The weight-decay mask: leaves of rank 2 and more (a function both libraries take)."""
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


# gradtx's schedules for both: optax's return float32 under x64, in which optax's momo then
# forms 1 + lr * weight_decay (1e-7 apart from float64, 1e-6 after 200 steps).
_SCHEDULE = gradtx.linear_schedule(1.0, 0.1, 150)
_SMALL_SCHEDULE = gradtx.linear_schedule(0.05, 0.01, 150)

# Every option at least once; a learning-rate schedule stands for a number too. mechanize's
# base is (name, kwargs), built from gradtx or optax alike. scale_by_cocob is cocob's last link.
OPTAX_CASES = [
    ("cocob", {}),
    (
        "cocob",
        {
            "learning_rate": _SCHEDULE,
            "alpha": 10.0,
            "eps": 1e-6,
            "weight_decay": 0.1,
            "mask": _matrices,
        },
    ),
    ("momo", {}),
    (
        "momo",
        {
            "learning_rate": _SCHEDULE,
            "beta": 0.8,
            "lower_bound": -3.0,
            "weight_decay": 0.1,
            "adapt_lower_bound": True,
        },
    ),
    ("momo_adam", {}),
    (
        "momo_adam",
        {
            "learning_rate": _SMALL_SCHEDULE,
            "b1": 0.8,
            "b2": 0.99,
            "eps": 1e-6,
            "lower_bound": -3.0,
            "weight_decay": 0.1,
            "adapt_lower_bound": True,
        },
    ),
    ("mechanize", {"base_optimizer": ("adam", {"learning_rate": 1.0})}),
    # Around MoMo, which needs value=: mechanize passes it on.
    (
        "mechanize",
        {
            "base_optimizer": ("momo", {"learning_rate": 1.0, "beta": 0.8}),
            "weight_decay": 0.1,
            "eps": 1e-6,
            "s_init": 1e-4,
            "num_betas": 3,
        },
    ),
]


def _build(name, ours, kwargs):
    lib = gradtx if ours else contrib
    if name == "mechanize":
        base, base_kwargs = kwargs["base_optimizer"]
        base_lib = gradtx if ours else (contrib if base == "momo" else optax)
        kwargs = {**kwargs, "base_optimizer": getattr(base_lib, base)(**base_kwargs)}
    return getattr(lib, name)(**kwargs)


# One compilation for both sides (half the time of two); both static, as test_parameter_free's.
_run_both = jax.jit(
    lambda ours, theirs: (_scan(ours, problem), _scan(theirs, problem)), static_argnums=(0, 1)
)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "name, kwargs", OPTAX_CASES, ids=[f"{n}-{'-'.join(k) or 'defaults'}" for n, k in OPTAX_CASES]
)
def test_matches_optax(name, kwargs, dtype):
    with jax.enable_x64(dtype == "float64"):
        ours, theirs = _run_both(_build(name, True, kwargs), _build(name, False, kwargs))
        rtol = 1e-6 if dtype == "float32" else 1e-10
        for leaf in problem.SHAPES:
            assert ours[leaf].dtype == jnp.dtype(dtype)
            np.testing.assert_allclose(ours[leaf], theirs[leaf], rtol=rtol, atol=rtol, err_msg=leaf)
            assert np.ptp(np.asarray(theirs[leaf])) > 1e-3  # the problem moves every leaf


@pytest.mark.parametrize("name", ["cocob", "scale_by_cocob", "mechanize", "momo", "momo_adam"])
def test_arguments_and_defaults_are_optaxs(name):
    ours = inspect.signature(getattr(gradtx, name)).parameters
    theirs = inspect.signature(getattr(contrib, name)).parameters
    assert list(ours) == list(theirs)
    assert {k: p.default for k, p in ours.items()} == {k: p.default for k, p in theirs.items()}


def test_every_optax_option_is_compared():
    for name in {n for n, _ in OPTAX_CASES}:
        options = set(inspect.signature(getattr(contrib, name)).parameters)
        compared = {k for n, kwargs in OPTAX_CASES if n == name for k in kwargs}
        assert options <= compared, f"{name}: {sorted(options - compared)} not compared"
        defaults = {"base_optimizer"} if name == "mechanize" else set()
        assert any(n == name and set(k) == defaults for n, k in OPTAX_CASES)


def test_the_adaptive_lower_bound_moves():
    # Otherwise the adapt_lower_bound cases would compare nothing of the adaptation.
    for name, kwargs in OPTAX_CASES:
        if kwargs.get("adapt_lower_bound"):
            tx = _build(name, True, kwargs)
            params = jax.tree.map(jnp.asarray, problem.initial_params())
            state, bounds = tx.init(params), set()
            update = jax.jit(lambda g, s, p, v, tx=tx: tx.update(g, s, p, value=v))
            for step in range(1, 13):
                grads, value = problem.gradient(params, step, jnp), problem.value(params, step, jnp)
                updates, state = update(grads, state, params, value)
                params = gradtx.apply_updates(params, updates)
                bounds.add(float(gradtx.tree_get(state, "lb")))
            assert len(bounds) > 5, name  # momo's also stays at lower_bound for a while


# -- hyperparameters are leaves ---------------------------------------------------------

_LEAVES = [
    (
        # The bet does not change with the gradients' scale: only a rate or an eps that makes
        # them comparable changes it (learning_rate=0.5 gives the same numbers bit for bit).
        lambda **kw: gradtx.cocob(**kw),
        {"learning_rate": 1e-8, "alpha": 10.0, "eps": 1.0, "weight_decay": 0.1},
    ),
    (
        lambda **kw: gradtx.momo(**kw),
        {"learning_rate": 0.01, "beta": 0.8, "lower_bound": -3.0, "weight_decay": 0.1},
    ),
    (
        lambda **kw: gradtx.momo_adam(**kw),
        # A bound above the loss (~44): no step.
        {"learning_rate": 0.1, "b1": 0.8, "b2": 0.99, "eps": 1e-6, "lower_bound": 100.0},
    ),
    (
        lambda **kw: gradtx.mechanize(gradtx.adam(1.0), **kw),
        {"weight_decay": 0.1, "eps": 1e-6, "s_init": 1e-4},
    ),
]


@pytest.mark.parametrize("build, changed", _LEAVES, ids=["cocob", "momo", "momo_adam", "mechanize"])
def test_hyperparameters_are_leaves(build, changed):
    traces = []

    @jax.jit
    def steps(tx, params):
        traces.append(None)
        state = tx.init(params)
        for step in (1, 2, 3):
            grads, value = problem.gradient(params, step, jnp), problem.value(params, step, jnp)
            updates, state = tx.update(grads, state, params, value=value)
            params = gradtx.apply_updates(params, updates)
        return params

    params = jax.tree.map(jnp.asarray, problem.initial_params())
    first = steps(build(), params)
    for name, value in changed.items():  # each one on its own: each must change the result
        other = steps(build(**{name: value}), params)
        assert len(traces) == 1, name
        assert not all(np.array_equal(first[k], other[k]) for k in first), name


# -- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tx, name",
    [
        (gradtx.momo(), "scale_by_momo"),
        (gradtx.momo_adam(), "scale_by_momo_adam"),
        (gradtx.mechanize(gradtx.momo()), "scale_by_momo"),
    ],
    ids=["momo", "momo_adam", "mechanize(momo)"],
)
def test_a_missing_value_is_named(tx, name):
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match=rf"^{name}\.update needs the loss .* value="):
        tx.update(params, tx.init(params), params)


@pytest.mark.parametrize(
    "tx",
    [gradtx.cocob(), gradtx.momo(), gradtx.momo_adam(), gradtx.mechanize(gradtx.sgd(1.0))],
    ids=["cocob", "momo", "momo_adam", "mechanize"],
)
def test_missing_params_are_named(tx):
    grads = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match=r"needs the params"):
        tx.update(grads, tx.init(grads), value=1.0)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: gradtx.cocob(learning_rate=-1.0), r"^cocob\(learning_rate=-1\.0"),
        (lambda: gradtx.cocob(alpha=-1.0), r"^cocob\(alpha=-1\.0\)"),
        (lambda: gradtx.cocob(eps=0.0), r"^cocob\(eps=0\.0\)"),
        (lambda: gradtx.cocob(weight_decay=-0.1), r"^cocob\(weight_decay=-0\.1\)"),
        (lambda: gradtx.scale_by_cocob(eps=-1.0), r"scale_by_cocob\(eps=-1\.0\)"),
        (lambda: gradtx.momo(learning_rate=-1.0), r"^momo\(learning_rate=-1\.0\)"),
        (lambda: gradtx.momo(beta=1.0), r"^momo\(beta=1\.0\): beta must be in \[0, 1\)"),
        (lambda: gradtx.momo(lower_bound=np.inf), r"^momo\(lower_bound=inf\)"),
        (lambda: gradtx.momo(weight_decay=-0.1), r"^momo\(weight_decay=-0\.1\)"),
        (lambda: gradtx.momo_adam(b1=1.0), r"^momo_adam\(b1=1\.0\)"),
        (lambda: gradtx.momo_adam(b2=-0.1), r"^momo_adam\(b2=-0\.1\)"),
        (lambda: gradtx.momo_adam(eps=0.0), r"^momo_adam\(eps=0\.0\)"),
        (lambda: gradtx.momo_adam(learning_rate=-1.0), r"^momo_adam\(learning_rate=-1"),
        (lambda: gradtx.momo_adam(lower_bound=np.nan), r"^momo_adam\(lower_bound=nan\)"),
        (lambda: gradtx.momo_adam(weight_decay=-1.0), r"^momo_adam\(weight_decay=-1\.0"),
        (lambda: gradtx.mechanize(gradtx.sgd(1.0), weight_decay=-1.0), r"mechanize\(weight_deca"),
        (lambda: gradtx.mechanize(gradtx.sgd(1.0), eps=0.0), r"mechanize\(eps=0\.0\)"),
        (lambda: gradtx.mechanize(gradtx.sgd(1.0), s_init=0.0), r"mechanize\(s_init=0\.0\)"),
        (lambda: gradtx.mechanize(gradtx.sgd(1.0), num_betas=0), r"mechanize\(num_betas=0\)"),
        (lambda: gradtx.mechanize(gradtx.sgd(1.0), num_betas=2.0), r"mechanize\(num_betas=2\.0"),
    ],
)
def test_bad_arguments_are_named(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_mechanize_refuses_a_base_that_is_no_transform():
    with pytest.raises(TypeError, match=r"expected a transform with init and update"):
        gradtx.mechanize(0.1)


# -- where gradtx differs from optax ------------------------------------------------------


def test_cocob_takes_a_zero_float16_gradient():
    # optax keeps L = eps = 1e-8 in float16, where it is 0: a zero gradient gives 0 / 0.
    params = {"w": jnp.ones(3, jnp.float16)}
    grads = {"w": jnp.asarray([0.0, 1.0, -1.0], jnp.float16)}
    tx = gradtx.cocob()
    updates, state = tx.update(grads, tx.init(params), params)
    assert updates["w"].dtype == jnp.float16
    assert bool(jnp.all(jnp.isfinite(updates["w"]))) and float(updates["w"][0]) == 0.0
    assert float(state[-1].scale["w"][0]) == pytest.approx(1e-8)


def test_momo_reads_a_fixed_lower_bound_from_its_argument():
    # A new lower_bound (tree_set, inject_hyperparams) takes effect on the next step.
    params = {"w": jnp.asarray([1.0, -2.0])}
    tx = gradtx.momo(learning_rate=10.0)
    moved = gradtx.tree_set(tx, lower_bound=2.0)
    state = tx.init(params)
    here, _ = tx.update(params, state, params, value=2.5)
    there, new_state = moved.update(params, state, params, value=2.5)
    assert not np.allclose(here["w"], there["w"])
    assert float(gradtx.tree_get(new_state, "lb")) == 2.0
