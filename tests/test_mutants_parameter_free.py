"""Tests that kill the mutants of gradtx/_parameter_free.py the other test files let survive.

The verdicts, mutant by mutant, and how the run was made: tests/MUTATION.md (issue 20).
References: optax (``optax.contrib.prodigy``, ``dadapt_adamw``, ``momo``, ``momo_adam``,
``dog``, ``dowg``; ``optax.polyak_sgd``, ``scale_by_polyak``,
``scale_by_distance_over_gradients``) under their own defaults, the authors' packages
(prodigyopt 1.1.2, dadaptation 3.2; float64 torch, skipped where they are not installed),
and the module's docstrings (arguments refused naming them, also when changed with
``gradtx.tree_set``; updates in the gradients' dtype; state shaped as optax's).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax import contrib
import pytest
from replay import run_steps

import gradtx
from gradtx import compat
from gradtx._base import HyperparameterError


def _params(dtype=jnp.float32):
    return {"w": jnp.asarray([[1.0, -2.0], [0.5, 1.5]], dtype), "b": jnp.asarray(0.3, dtype)}


def _grads(dtype=jnp.float32, steps=3):
    rows = [
        ([[0.3, -1.0], [0.8, 0.2]], -0.4),
        ([[-0.5, 0.4], [0.2, -0.7]], 0.6),
        ([[0.9, 0.1], [-0.6, 0.3]], -0.2),
        ([[0.2, -0.3], [0.7, -0.1]], 0.5),
    ]
    return [{"w": jnp.asarray(w, dtype), "b": jnp.asarray(b, dtype)} for w, b in rows[:steps]]


def _run(tx, params=None, grads=None):
    params = _params() if params is None else params
    grads = _grads() if grads is None else grads
    return run_steps(tx, grads, params, apply=gradtx.apply_updates)


def _loss(params):
    return 0.5 * sum(jnp.sum(jnp.square(p - 0.25)) for p in jax.tree.leaves(params))


def _assert_trees_close(ours, theirs, rtol=1e-6, atol=1e-7):
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


# -- errors naming the argument -----------------------------------------------------------


@pytest.mark.parametrize("name", ["polyak_sgd", "momo", "momo_adam"])
def test_a_missing_value_names_the_call_that_passes_it(name):
    tx = getattr(gradtx, name)()
    params = _params()
    transform = {"polyak_sgd": "scale_by_polyak"}.get(name, f"scale_by_{name}")
    with pytest.raises(ValueError) as error:
        tx.update(params, tx.init(params), params)
    assert str(error.value).startswith(
        f"{transform}.update needs the loss at params as the keyword argument value=: "
        "call update(updates, state, params, value=loss)"
    )


@pytest.mark.parametrize("port, name", [("prodigy", "prodigy"), ("dadapt_adam", "dadapt_adam")])
def test_a_growth_rate_below_1_is_refused_when_changed(port, name):
    # The port checks its own arguments; tree_set validates the transform's ("as when built").
    tx = getattr(compat.pytorch, port)()
    with pytest.raises(HyperparameterError) as error:
        gradtx.tree_set(tx, growth_rate=0.5)
    assert str(error.value) == f"scale_by_{name}(growth_rate=0.5): growth_rate must be in [1, inf]"
    assert gradtx.tree_get(gradtx.tree_set(tx, growth_rate=1.0), "growth_rate") == 1.0


@pytest.mark.parametrize("beta3", [1.0, 1.5])
def test_prodigy_refuses_a_beta3_of_1_or_more(beta3):
    with pytest.raises(HyperparameterError) as error:
        gradtx.prodigy(beta3=beta3)
    assert str(error.value) == f"prodigy(beta3={beta3}): beta3 must be in [0, 1)"
    assert gradtx.tree_get(gradtx.prodigy(beta3=0.0), "beta3") == 0.0


def test_prodigy_refuses_an_estim_lr_coef_of_0():
    with pytest.raises(HyperparameterError) as error:
        gradtx.prodigy(estim_lr_coef=0.0)
    assert str(error.value) == "prodigy(estim_lr_coef=0.0): estim_lr_coef must be in (0, inf)"


@pytest.mark.parametrize("slice_p", [0, -1, 2.0])
def test_prodigy_refuses_a_slice_p_that_is_no_positive_integer(slice_p):
    with pytest.raises(HyperparameterError) as error:
        gradtx.tree_set(compat.pytorch.prodigy(), slice_p=slice_p)
    assert str(error.value) == (
        f"scale_by_prodigy(slice_p={slice_p!r}): slice_p must be a positive integer"
    )


# -- state and dtypes ---------------------------------------------------------------------


def test_prodigy_state_is_shaped_as_optaxs():
    params = {"w": jnp.ones((2, 3)), "b": jnp.asarray(0.5)}
    ours = gradtx.prodigy().init(params)
    theirs = contrib.prodigy().init(params)
    for field in ("grad_sum", "params0", "exp_avg", "exp_avg_sq"):
        shapes = jax.tree.map(jnp.shape, gradtx.tree_get(ours, field))
        assert shapes == jax.tree.map(jnp.shape, getattr(theirs, field)), field
    # The port's slice_p keeps every slice_p-th element, flattened (prodigyopt's).
    state = compat.pytorch.prodigy(slice_p=2).init(params)
    assert jax.tree.map(jnp.shape, gradtx.tree_get(state, "grad_sum")) == {"w": (3,), "b": (1,)}
    np.testing.assert_array_equal(gradtx.tree_get(state, "params0")["w"], np.ones(3))


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adamw"])
def test_bfloat16_gradients_give_bfloat16_updates_and_state(name):
    # The moments and s stay in the params' dtype, as optax's (and as init made them).
    tx = getattr(gradtx, name)()
    steps = _run(tx, _params(jnp.bfloat16), _grads(jnp.bfloat16, steps=2))
    for updates in steps.updates:
        assert {u.dtype for u in jax.tree.leaves(updates)} == {jnp.dtype(jnp.bfloat16)}
    for field in ("exp_avg", "exp_avg_sq", "grad_sum"):
        dtypes = {x.dtype for x in jax.tree.leaves(gradtx.tree_get(steps.states[-1], field))}
        assert dtypes == {jnp.dtype(jnp.bfloat16)}, field
    assert jax.tree.map(jax.typeof, steps.states[-1]) == jax.tree.map(jax.typeof, steps.states[0])


@pytest.mark.parametrize("name", ["prodigy", "dadapt_adamw"])
def test_the_state_is_optaxs(name):
    # Fields under optax's names hold optax's numbers (s is read by the user, not only |s|_1).
    ours = _run(getattr(gradtx, name)())
    theirs = _run(getattr(contrib, name)())
    _assert_trees_close(ours.params, theirs.params)
    for field in theirs.states[-1]._fields:
        ours_field = gradtx.tree_get(ours.states[-1], field)
        _assert_trees_close(ours_field, getattr(theirs.states[-1], field), rtol=1e-4, atol=1e-12)


BUILDERS = {
    "prodigy": lambda: gradtx.prodigy(),
    "dadapt_adamw": lambda: gradtx.dadapt_adamw(),
    "pytorch.prodigy": lambda: compat.pytorch.prodigy(),
    "pytorch.dadapt_adam": lambda: compat.pytorch.dadapt_adam(),
    "polyak_sgd": lambda: gradtx.polyak_sgd(),
    "momo": lambda: gradtx.momo(),
    "momo_adam": lambda: gradtx.momo_adam(),
    "dog": lambda: gradtx.dog(),
    "dowg": lambda: gradtx.dowg(),
    "scale_by_distance_over_gradients": lambda: gradtx.scale_by_distance_over_gradients(),
}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_a_jitted_step_compiles_once(name):
    # The state's scalars are strongly typed from init on: the second step reuses the trace.
    tx = BUILDERS[name]()
    traces = []

    @jax.jit
    def step(params, state):
        traces.append(None)
        value, grads = jax.value_and_grad(_loss)(params)
        updates, state = tx.update(grads, state, params, value=value)
        return gradtx.apply_updates(params, updates), state

    params = _params()
    state = tx.init(params)
    first = jax.tree.map(jax.typeof, state)
    for _ in range(3):
        params, state = step(params, state)
    assert jax.tree.map(jax.typeof, state) == first
    assert len(traces) == 1


# -- the ports' skipped steps --------------------------------------------------------------


def _torch_trail(module, name, kwargs, grads, lrs):
    """The authors' optimizer in float64 torch: the params after each step, lr set per step."""
    torch = pytest.importorskip("torch")
    package = pytest.importorskip(module)
    params = {
        k: torch.tensor(np.asarray(v, np.float64), requires_grad=True) for k, v in _params().items()
    }
    optimizer = getattr(package, name)(list(params.values()), **kwargs)
    trail = []
    for lr, g in zip(lrs, grads):
        for group in optimizer.param_groups:
            group["lr"] = lr
        for k, p in params.items():
            p.grad = torch.tensor(np.asarray(g[k], np.float64))
        optimizer.step()
        trail.append({k: p.detach().numpy().copy() for k, p in params.items()})
    return trail


LRS = [0.5, 0.0, 0.5, 0.5]


def _lr_schedule(count):
    return jnp.asarray(LRS)[jnp.minimum(count, len(LRS) - 1)]


@pytest.mark.parametrize(
    "port, module, name",
    [("prodigy", "prodigyopt", "Prodigy"), ("dadapt_adam", "dadaptation", "DAdaptAdam")],
)
def test_the_ports_take_no_step_at_lr_0(port, module, name):
    # The packages return before updating anything at lr 0: the moments stay, the step is
    # not counted (the bias correction's t), d stays; then they go on from there.
    tx = getattr(compat.pytorch, port)(lr=_lr_schedule, d0=1e-2, use_bias_correction=True)
    steps = _run(tx, grads=_grads(steps=4))
    assert all(np.all(u == 0) for u in jax.tree.leaves(steps.updates[1]))
    for field in ("exp_avg", "exp_avg_sq", "grad_sum", "estim_lr", "numerator_weighted", "taken"):
        _assert_trees_close(
            gradtx.tree_get(steps.states[2], field), gradtx.tree_get(steps.states[1], field), 0, 0
        )
    assert int(gradtx.tree_get(steps.states[-1], "taken")) == 3
    assert int(gradtx.tree_get(steps.states[-1], "count")) == 4
    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), _params())
        grads64 = [jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), g) for g in _grads(steps=4)]
        ours = _run(tx, params64, grads64).params[1:]
    theirs = _torch_trail(module, name, dict(d0=1e-2, use_bias_correction=True), grads64, LRS)
    _assert_trees_close(ours, theirs, rtol=1e-9, atol=1e-12)


# -- Polyak --------------------------------------------------------------------------------

# (gradient, loss): the step capped at 1; a step below the cap with |g|^2 < 1; |g|^2 exactly
# float64's epsilon (2**-52: no step, as optax's <=); |g|^2 below it (no step).
POLYAK_CASES = [([0.5, 0.0], 1.0), ([0.3, 0.4], 0.05), ([2.0**-26, 0.0], 1.0), ([1e-9, 0.0], 1.0)]
POLYAK_STEPS = [1.0, 0.2, 0.0, 0.0]


def test_scale_by_polyak_defaults_are_optaxs():
    ours, theirs = gradtx.scale_by_polyak(), optax.scale_by_polyak()
    state = ours.init(_params())
    assert float(gradtx.tree_get(state, "step_size")) == 0.0  # no step taken yet
    for (g, value), step in zip(POLYAK_CASES, POLYAK_STEPS):
        g = jnp.asarray(g)
        u, state = ours.update(g, state, value=value)
        expected, _ = theirs.update(g, theirs.init(g), value=value)
        np.testing.assert_allclose(u, expected, rtol=1e-6, atol=0)
        np.testing.assert_allclose(u, step * g, rtol=1e-6, atol=0)
        assert float(gradtx.tree_get(state, "step_size")) == pytest.approx(step, rel=1e-6)


def test_scale_by_polyak_logs_a_nan_step_for_a_nan_gradient():
    # optax's step is NaN there too (its update: NaN); the state logs what was taken.
    tx = gradtx.scale_by_polyak()
    u, state = tx.update(jnp.asarray([np.nan, 1.0]), tx.init(_params()), value=2.0)
    assert np.isnan(u).all()
    assert np.isnan(float(gradtx.tree_get(state, "step_size")))


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: gradtx.scale_by_polyak(eps=-1.0),
            "scale_by_polyak(eps=-1.0): eps must be in [0, inf)",
        ),
        (
            lambda: gradtx.scale_by_polyak(f_min=-np.inf),
            "scale_by_polyak(f_min=-inf): f_min must be a finite number",
        ),
        (
            lambda: gradtx.polyak_sgd(f_min=np.inf),
            "polyak_sgd(f_min=inf): f_min must be a finite number",
        ),
    ],
    ids=["eps", "f_min", "polyak_sgd-f_min"],
)
def test_polyak_refuses_bad_arguments_naming_them(build, message):
    with pytest.raises(HyperparameterError) as error:
        build()
    assert str(error.value) == message


# -- MoMo ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", range(len(POLYAK_CASES)))
def test_momos_first_step_is_optaxs_for_small_momentum(case):
    # At the first step m = g: the Polyak-type step with |m|^2 < 1 (not capped at lr 10),
    # |m|^2 exactly float64's epsilon and below it (no step, as optax's <=).
    g, value = POLYAK_CASES[case]
    params, grads = jnp.asarray([0.5, 0.0]), jnp.asarray(g)
    ours, theirs = gradtx.momo(learning_rate=10.0), contrib.momo(learning_rate=10.0)
    u, _ = ours.update(grads, ours.init(params), params, value=value)
    expected, _ = theirs.update(grads, theirs.init(params), params, value=value)
    np.testing.assert_allclose(u, expected, rtol=1e-6, atol=0)
    tau = [4.0, 0.2, 0.0, 0.0][case]  # (f - <g, p> + <m, p>) / |m|^2 = f / |g|^2
    np.testing.assert_allclose(u, -tau * grads, rtol=1e-6, atol=0)


def test_momo_lowers_the_bound_only_where_the_model_falls_below_it():
    # Dyadic numbers, exact in float32: at step 2 the model cap equals lb (0.875), which is
    # not below it, so lb stays, the gap is 0 and no step is taken (optax's cap < lb).
    ours = gradtx.momo(learning_rate=0.25, beta=0.5, adapt_lower_bound=True)
    theirs = contrib.momo(learning_rate=0.25, beta=0.5, adapt_lower_bound=True)
    params, grads = jnp.zeros(2), jnp.asarray([1.0, 0.0])
    results = []
    for tx in (ours, theirs):
        state, updates = tx.init(params), []
        for value in (1.0, 0.75):
            u, state = tx.update(grads, state, params, value=value)
            updates.append(u)
        results.append((updates, state))
    (ours_u, ours_state), (theirs_u, theirs_state) = results
    np.testing.assert_array_equal(ours_u[0], [-0.25, 0.0])
    np.testing.assert_array_equal(ours_u[1], [0.0, 0.0])
    _assert_trees_close(ours_u, theirs_u, 0, 0)
    assert float(gradtx.tree_get(ours_state, "lb")) == float(theirs_state.lb) == 0.875


@pytest.mark.parametrize("name", ["momo", "momo_adam"])
def test_momo_init_state_is_optaxs(name):
    params = _params()
    ours = getattr(gradtx, name)(lower_bound=0.5).init(params)
    theirs = getattr(contrib, name)(lower_bound=0.5).init(params)
    for field in theirs._fields:
        _assert_trees_close(gradtx.tree_get(ours, field), getattr(theirs, field), 0, 0)


@pytest.mark.parametrize("name", ["momo", "momo_adam"])
def test_momo_with_bfloat16_params_and_loss(name):
    # Updates and moments keep the params' dtype; the loss average barf is float32 (the
    # docstring), formed from the bfloat16 loss cast first, not rounded to bfloat16.
    tx = getattr(gradtx, name)()
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), _params())
    state = tx.init(params)
    for g, value in zip(_grads(jnp.bfloat16, steps=2), (1.0, 3.0)):
        updates, state = tx.update(g, state, params, value=jnp.asarray(value, jnp.bfloat16))
        assert {u.dtype for u in jax.tree.leaves(updates)} == {jnp.dtype(jnp.bfloat16)}
    for field in ("exp_avg", "exp_avg_sq") if name == "momo_adam" else ("exp_avg",):
        moments = jax.tree.leaves(gradtx.tree_get(state, field))
        assert {m.dtype for m in moments} == {jnp.dtype(jnp.bfloat16)}, field
    barf = 0.9 * 1.0 + 0.1 * 3.0 if name == "momo" else 0.9 * 0.1 * 1.0 + 0.1 * 3.0
    assert gradtx.tree_get(state, "barf").dtype == jnp.float32
    np.testing.assert_allclose(gradtx.tree_get(state, "barf"), barf, rtol=1e-6)


# -- DoG, DoWG, LDoG -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: gradtx.scale_by_dog(init_step=0.1),
            "scale_by_dog(init_step=0.1): init_step must be a pair (tag, value), "
            "tag one of 'distance', 'learning_rate', 'heuristic'",
        ),
        (lambda: gradtx.scale_by_dog(eps=-1.0), "scale_by_dog(eps=-1.0): eps must be in [0, inf)"),
        (lambda: gradtx.dog(eps=-1.0), "dog(eps=-1.0): eps must be in [0, inf)"),
    ],
    ids=["init_step", "scale_by_dog-eps", "dog-eps"],
)
def test_dog_refuses_bad_arguments_naming_them(build, message):
    with pytest.raises(ValueError) as error:
        build()
    assert str(error.value) == message


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: gradtx.scale_by_dowg(init_estim_sq_dist=0.0),
            "scale_by_dowg(init_estim_sq_dist=0.0): init_estim_sq_dist must be in (0, inf)",
        ),
        (
            lambda: gradtx.dowg(init_estim_sq_dist=-1.0),
            "dowg(init_estim_sq_dist=-1.0): init_estim_sq_dist must be in (0, inf)",
        ),
        (
            lambda: gradtx.scale_by_distance_over_gradients(reps_rel=0.0),
            "scale_by_distance_over_gradients(reps_rel=0.0): reps_rel must be in (0, inf)",
        ),
        (
            lambda: gradtx.scale_by_distance_over_gradients(eps=-1.0),
            "scale_by_distance_over_gradients(eps=-1.0): eps must be in [0, inf)",
        ),
    ],
    ids=["dowg-0", "dowg-negative", "ldog-reps_rel", "ldog-eps"],
)
def test_dowg_and_ldog_refuse_bad_arguments_naming_them(build, message):
    with pytest.raises(HyperparameterError) as error:
        build()
    assert str(error.value) == message


@pytest.mark.parametrize(
    "name", ["scale_by_dog", "scale_by_dowg", "scale_by_distance_over_gradients"]
)
def test_scale_by_defaults_are_optaxs(name):
    # optax's scale_by_dog has no default init_step: its dog's ("heuristic", 1e-6) is ours.
    theirs = {
        "scale_by_dog": lambda: optax.contrib._dog.scale_by_dog(("heuristic", 1e-6)),
        "scale_by_dowg": lambda: optax.contrib._dog.scale_by_dowg(),
        "scale_by_distance_over_gradients": lambda: optax.scale_by_distance_over_gradients(),
    }[name]()
    params = {"w": _params()["w"]}  # optax's LDoG gives a scalar leaf a (1,) update
    grads = [{"w": g["w"]} for g in _grads()]
    ours = _run(getattr(gradtx, name)(), params, grads)
    expected = _run(theirs, params, grads)
    _assert_trees_close(ours.updates, expected.updates, rtol=1e-5, atol=0)


def test_ldog_keeps_the_dtypes():
    # param_dtype stores p_0; bfloat16 gradients give bfloat16 updates; under x64 r stays in
    # the float32 leaf's dtype, as optax's, and no state leaf changes type from step to step.
    params = {"w": _params()["w"]}
    state = gradtx.scale_by_distance_over_gradients(param_dtype=jnp.bfloat16).init(params)
    assert gradtx.tree_get(state, "init_params")["w"].dtype == jnp.bfloat16
    bf16 = [{"w": g["w"].astype(jnp.bfloat16)} for g in _grads(steps=2)]
    steps = _run(gradtx.scale_by_distance_over_gradients(), {"w": params["w"]}, bf16)
    assert {u["w"].dtype for u in steps.updates} == {jnp.dtype(jnp.bfloat16)}
    with jax.enable_x64(True):
        grads = [{"w": g["w"]} for g in _grads(steps=2)]
        steps = _run(gradtx.scale_by_distance_over_gradients(), params, grads)
        theirs = optax.scale_by_distance_over_gradients().init(params)
    assert gradtx.tree_get(steps.states[-1], "max_dist")["w"].dtype == theirs.max_dist["w"].dtype
    assert theirs.max_dist["w"].dtype == jnp.float32
    assert jax.tree.map(jax.typeof, steps.states[-1]) == jax.tree.map(jax.typeof, steps.states[0])
