"""The contract every public transform and optimizer keeps, driven by the registry."""

from __future__ import annotations

import dataclasses
import functools
import inspect

import chex
import jax
import jax.numpy as jnp
import optax
from problems import make_params, quadratic_loss, rosenbrock, wavy_loss
import pytest
from registry import ALL, HELPERS, OPTIMIZERS, SCHEDULES, TRANSFORMS, WRAPPERS

import gradtx

ENTRIES = OPTIMIZERS + TRANSFORMS + WRAPPERS


def _each(entries):
    """One case per entry. All of an entry's cases run on one xdist worker (--dist loadgroup),
    so that the programs its eager steps compile (those under 0.2 s skip the shared compilation
    cache) compile once, not on both workers. Measured with `pytest -n 2` on this file: 6749
    XLA compiles and 992 worker-seconds without the groups, 6101 and 937 with them; for
    genetic_algorithm alone 856 compiles and 543 (one process compiles 543)."""
    return [
        pytest.param(e, id=e.name, marks=pytest.mark.xdist_group(f"contract_{e.name}"))
        for e in entries
    ]


def _grads(params):
    return jax.grad(wavy_loss)(params)


def _run(tx, params, steps=3, update=None):
    """Updates and states over a few steps, following the wavy loss."""
    update = update or _eager
    state = tx.init(params)
    history = []
    for _ in range(steps):
        updates, state = update(tx, _grads(params), state, params)
        params = gradtx.apply_updates(params, updates)
        history.append((updates, state))
    return history


def _comparable(tree):
    """Random keys as their raw data, so that chex can compare states holding them."""
    return jax.tree.map(
        lambda x: (
            jax.random.key_data(x)
            if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key)
            else x
        ),
        tree,
    )


def _eager(tx, grads, state, params):
    # The extra arguments a line search needs; every transform accepts and may ignore them.
    return tx.update(grads, state, params, value=wavy_loss(params), grad=grads, value_fn=wavy_loss)


_jitted = jax.jit(_eager)


def test_registry_is_complete():
    public = {n for n in dir(gradtx) if not n.startswith("_")}
    modules = {n for n in public if inspect.ismodule(getattr(gradtx, n))}
    states = {
        n
        for n in public
        if inspect.isclass(getattr(gradtx, n)) and issubclass(getattr(gradtx, n), tuple)
    }
    listed = set(ALL) | set(SCHEDULES) | HELPERS
    missing = public - modules - states - listed
    assert not missing, f"public names missing from tests/registry.py: {sorted(missing)}"
    stale = listed - public
    assert not stale, f"registry names that gradtx does not export: {sorted(stale)}"


# Eigendecompositions in float32 (SOAP's eigenbases, refreshed by QR and power steps) give
# other last bits fused under jit than op by op; seen: 1.9e-6 relative after three steps.
_JIT_RTOL = {"soap": 1e-5, "scale_by_soap": 1e-5}


@pytest.mark.parametrize("entry", _each(ENTRIES))
def test_jit_equals_eager(entry):
    # A line search branches on comparisons of nearly equal float32 numbers, which
    # XLA's fusions may round differently: line searches are compared in float64.
    with jax.enable_x64(entry.extra_args):
        dtype = jnp.float64 if entry.extra_args else jnp.float32
        tx = entry.build()
        params = make_params(dtype)
        eager = _run(tx, params, update=_eager)
        compiled = jax.jit(functools.partial(_eager, tx))  # tx's numbers as constants
        jitted = _run(tx, params, update=lambda _, *args: compiled(*args))
        rtol = 1e-10 if entry.extra_args else _JIT_RTOL.get(entry.name, 1e-6)
        chex.assert_trees_all_close(_comparable(jitted), _comparable(eager), rtol=rtol, atol=1e-7)


@pytest.mark.parametrize("entry", _each(ENTRIES))
def test_state_structure_and_dtypes_are_stable(entry):
    tx = entry.build()
    params = make_params()
    initial = tx.init(params)
    for _, state in _run(tx, params, update=_jitted):
        chex.assert_trees_all_equal_shapes_and_dtypes(state, initial)


@pytest.mark.parametrize("entry", _each(ENTRIES))
def test_changing_hyperparameters_does_not_retrace(entry):
    traces = []

    @jax.jit
    def step(tx, grads, state, params):
        traces.append(None)
        return _eager(tx, grads, state, params)

    params = make_params()
    grads = _grads(params)
    first, second = entry.build(), entry.build(**entry.alt)
    out_first = step(first, grads, first.init(params), params)
    out_second = step(second, grads, second.init(params), params)
    assert len(traces) == 1
    # Each call used its own values. Traced hyperparameters are float32 (1 - b2
    # loses digits that a Python float keeps), hence the tolerance.
    for tx, out in ((first, out_first), (second, out_second)):
        expected = _eager(tx, grads, tx.init(params), params)
        chex.assert_trees_all_close(_comparable(out), _comparable(expected), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("entry", _each(ENTRIES))
def test_hyperparameters_can_be_vmapped(entry):
    numeric = {k: v for k, v in entry.alt.items() if isinstance(v, float)}
    if not numeric:
        pytest.skip("no scalar hyperparameter to vary")
    name, value = next(iter(numeric.items()))
    params = make_params()
    grads = _grads(params)

    def run(v):
        tx = entry.build(**{name: v})
        return _eager(tx, grads, tx.init(params), params)[0]

    values = jnp.asarray([entry.build().hyperparams().get(name, value), value])
    batched = jax.vmap(run)(values)
    for i in range(2):
        chex.assert_trees_all_close(
            jax.tree.map(lambda x, i=i: x[i], batched), run(float(values[i])), rtol=1e-5
        )


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("entry", _each(ENTRIES))
def test_params_keep_their_dtype(entry, dtype):
    tx = entry.build()
    params = make_params(dtype)
    for updates, _ in _run(tx, params, steps=2, update=_jitted):
        chex.assert_trees_all_equal_dtypes(updates, params)
        assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))
    final = gradtx.apply_updates(params, updates)
    chex.assert_trees_all_equal_dtypes(final, params)


@pytest.mark.parametrize("entry", _each(ENTRIES))
def test_float64_params_keep_their_dtype(entry, x64):
    tx = entry.build()
    params = make_params(jnp.float64)
    for updates, _ in _run(tx, params, steps=2):
        chex.assert_trees_all_equal_dtypes(updates, params)


@pytest.mark.parametrize("entry", _each(ENTRIES))
def test_python_numbers_as_leaves_take_a_step(entry):
    # As optax: {"w": 2.0} is a tree of one scalar leaf, whose dtype is the default float.
    tx, params = entry.build(), {"w": 2.0, "b": -1.0}
    updates, state = tx.update(
        {"w": 0.5, "b": -0.25},
        tx.init(params),
        params,
        value=4.0,
        grad={"w": 0.5, "b": -0.25},
        value_fn=lambda p: p["w"] ** 2,
    )
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    assert all(jnp.isfinite(u) for u in jax.tree.leaves(updates))


@pytest.mark.parametrize("entry", _each(ENTRIES))
def test_state_buffers_can_be_donated(entry):
    # Two state leaves sharing one array (a scalar counter too) make donate_argnums fail
    # ("donate the same buffer twice"); params must not alias into the state either.
    params = make_params()
    tx = entry.build()
    state = tx.init(params)
    arrays = [x for x in jax.tree.leaves(state) if isinstance(x, jax.Array)]
    assert len({id(x) for x in arrays}) == len(arrays)
    assert not {id(x) for x in arrays} & {id(x) for x in jax.tree.leaves(params)}
    step = jax.jit(functools.partial(_eager, tx), donate_argnums=1)
    for _ in range(2):
        updates, state = step(_grads(params), state, params)
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))


GRADIENT_FREE = [e for e in ENTRIES if e.build().gradient_free]


@pytest.mark.parametrize("entry", _each(GRADIENT_FREE))
def test_a_single_array_and_the_state_can_be_donated_together(entry):
    # Raveling one 1-D array returns its own buffer: a state built from it would share it.
    params = jnp.linspace(-1.0, 1.0, 4)
    tx = entry.build()
    state = tx.init(params)
    pointers = [x.unsafe_buffer_pointer() for x in jax.tree.leaves(state) if jnp.ndim(x) > 0]
    assert params.unsafe_buffer_pointer() not in pointers

    def step(params, state):
        loss = lambda p: jnp.sum(p**2)
        updates, state = tx.update(None, state, params, value_fn=loss)
        return gradtx.apply_updates(params, updates), state

    params, state = jax.jit(step, donate_argnums=(0, 1))(params, state)
    assert bool(jnp.all(jnp.isfinite(params)))


@pytest.mark.parametrize("entry", _each(GRADIENT_FREE))
def test_a_gradient_free_method_compiles_once_and_steps_alike_inside_a_chain(entry):
    params = {"a": jnp.asarray([1.0, -2.0]), "b": jnp.asarray(0.5, jnp.float32)}  # not weak
    loss = lambda p: jnp.sum(p["a"] ** 2) + p["b"] ** 2
    traces = []

    @jax.jit
    def step(tx, state, params):
        traces.append(None)
        updates, state = tx.update(None, state, params, value_fn=loss)
        return gradtx.apply_updates(params, updates), state

    tx = entry.build()
    chained = gradtx.chain(tx)
    alone, in_chain = (params, tx.init(params)), (params, chained.init(params))
    for _ in range(3):
        alone = step(tx, alone[1], alone[0])
        in_chain = step(chained, in_chain[1], in_chain[0])
    assert len(traces) == 2  # the bare transform, the chain
    chex.assert_trees_all_close(in_chain[0], alone[0], rtol=1e-6)


@pytest.mark.parametrize("entry", _each(GRADIENT_FREE))
def test_a_loss_that_is_not_one_number_per_member_is_named(entry):
    params = jnp.linspace(-1.0, 1.0, 4)
    tx = entry.build()
    with pytest.raises(ValueError, match=r"\.update\(value_fn=\.\.\.\): the loss must be one"):
        tx.update(None, tx.init(params), params, value_fn=lambda p: p**2)


def _with_counter(tree, dtype):
    """The test params plus an integer (or boolean) leaf named 'count' of a shape of its own."""
    return {**tree, "count": jnp.arange(5).astype(dtype)}


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_])
@pytest.mark.parametrize("entry", _each(ENTRIES))
def test_integer_leaves_are_refused_or_left_alone(entry, dtype):
    # One rule for every transform: a transform that does arithmetic on an integer or
    # boolean leaf raises a TypeError naming it (at init for params, at update for
    # gradients); set_to_zero and identity (and masks that exclude the leaf) pass it on
    # untouched or zeroed. Never integer optimizer state, never a silent zero update.
    tx = entry.build()
    params = _with_counter(make_params(), dtype)
    grads = _with_counter(_grads(make_params()), dtype)
    try:
        state = tx.init(params)
        updates, state = _eager(tx, grads, state, params)
    except TypeError as error:
        assert "['count']" in str(error) and f"dtype {jnp.dtype(dtype)}" in str(error)
        return
    count = updates["count"]
    assert count.dtype == jnp.dtype(dtype)
    assert bool(jnp.all(count == 0)) or bool(jnp.all(count == grads["count"]))
    for leaf in jax.tree.leaves(state):
        if jnp.shape(leaf) == (5,):
            assert jnp.issubdtype(leaf.dtype, jnp.inexact), f"integer state {leaf}"
    floats = jax.tree.map(lambda x: x.astype(jnp.float32), params)
    with pytest.raises(TypeError, match=r"\['count'\]"):  # refused where it would be added
        gradtx.apply_updates(floats, updates)


@pytest.mark.parametrize("entry", _each(ENTRIES))
def test_gradients_of_another_shape_are_refused_naming_the_path(entry):
    # (1,) broadcasts against (4,): it must not silently reshape the state or the params.
    tx = entry.build()
    params = make_params()
    grads = {**_grads(params), "b": jnp.ones(1)}
    with pytest.raises(ValueError, match=r"at \['b'\]: shape \(1,\) in the updates, \(4,\)"):
        _eager(tx, grads, tx.init(params), params)


def _skeleton(state):
    return jax.tree.structure(state, is_leaf=lambda x: not isinstance(x, tuple))


@pytest.mark.parametrize("entry", _each(ENTRIES))
def test_another_optimizers_state_is_refused(entry):
    tx = entry.build()
    params = make_params()
    own = tx.init(params)
    foreign = gradtx.adam(0.1).init(params)
    if _skeleton(foreign) == _skeleton(own):
        foreign = gradtx.sgd(0.1, momentum=0.9).init(params)
    with pytest.raises(TypeError, match=r"Was it made by another optimizer's init\?"):
        _eager(tx, _grads(params), foreign, params)


def _saturated(state):
    """Every step counter of the state set one below int32's maximum."""

    def leaf(path, x):
        name = jax.tree_util.keystr(path)
        counter = "count" in name or "step" in name
        if counter and isinstance(x, jax.Array) and x.dtype == jnp.int32 and x.ndim == 0:
            return jnp.asarray(2**31 - 2, jnp.int32)
        return x

    return jax.tree_util.tree_map_with_path(leaf, state)


@pytest.mark.parametrize("entry", _each(ENTRIES))
def test_counters_saturate_and_updates_stay_finite(entry):
    # A counter that wraps (count + 1 at 2**31 - 1) turns bias corrections and schedules
    # into NaN for ever: run a few steps across the saturation point.
    tx = entry.build()
    params = make_params()
    state = _saturated(tx.init(params))
    for _ in range(3):
        updates, state = _jitted(tx, _grads(params), state, params)
        assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates)), updates
        params = gradtx.apply_updates(params, updates)


@pytest.mark.parametrize("entry", _each(ENTRIES))
def test_init_works_on_abstract_params(entry):
    tx = entry.build()
    params = make_params()
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    shapes = jax.eval_shape(tx.init, abstract)
    chex.assert_trees_all_equal_shapes_and_dtypes(
        shapes, jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tx.init(params))
    )


def _field_names(obj):
    if isinstance(obj, gradtx.Struct):
        for field in dataclasses.fields(obj):
            yield field.name
            yield from _field_names(getattr(obj, field.name))
    elif isinstance(obj, tuple):
        for item in obj:
            yield from _field_names(item)


@pytest.mark.parametrize("entry", _each(ENTRIES))
def test_repr_shows_every_hyperparameter(entry):
    tx = entry.build(**entry.alt)
    text = repr(tx)
    for name in _field_names(tx):
        if name not in ("transforms", "label"):  # a chain shows these as its layout
            assert f"{name}=" in text, f"{name} missing from {text}"
    for value in entry.alt.values():
        if isinstance(value, float):
            assert f"{value:g}" in text


@pytest.mark.parametrize("entry", _each(ENTRIES))
def test_equal_hyperparameters_compare_and_hash_equal(entry):
    a, b = entry.build(), entry.build()
    assert a == b and hash(a) == hash(b)
    if entry.alt:
        assert entry.build(**entry.alt) != a


@pytest.mark.parametrize("entry", _each(ENTRIES))
def test_works_inside_optax_chain(entry):
    if entry.extra_args:
        pytest.skip("optax.chain drops extra arguments for transforms that are not optax's")
    tx = entry.build()
    wrapped = optax.chain(optax.identity(), tx, optax.scale(1.0))
    params = make_params()
    grads = _grads(params)
    ours = tx.update(grads, tx.init(params), params)[0]
    theirs = wrapped.update(grads, wrapped.init(params), params)[0]
    chex.assert_trees_all_close(theirs, ours, rtol=1e-6)


def test_optax_transforms_work_inside_gradtx_chain():
    params = make_params()
    grads = _grads(params)
    ours = gradtx.chain(optax.clip_by_global_norm(1.0), gradtx.scale_by_adam(), optax.scale(-0.1))
    theirs = optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_adam(), optax.scale(-0.1))
    out = jax.jit(lambda s: ours.update(grads, s, params))(ours.init(params))
    chex.assert_trees_all_close(out[0], theirs.update(grads, theirs.init(params), params)[0])


def _solve(tx, loss, params, steps):
    def body(carry, _):
        params, state = carry
        value, grads = jax.value_and_grad(loss)(params)
        updates, state = tx.update(grads, state, params, value=value, grad=grads, value_fn=loss)
        return (gradtx.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(body, (params, tx.init(params)), None, length=steps)
    return loss(params)


_solve_jit = jax.jit(_solve, static_argnums=(1, 3))


@pytest.mark.parametrize("entry", _each(OPTIMIZERS))
def test_converges_on_a_quadratic(entry):
    kwargs, steps = entry.converge[0]
    params = make_params()
    start = quadratic_loss(params)
    final = _solve_jit(entry.build(**kwargs), quadratic_loss, params, steps)
    assert final < 1e-3 * start, f"{entry.name}: {start} -> {final}"


@pytest.mark.parametrize("entry", _each(OPTIMIZERS))
def test_converges_on_rosenbrock(entry):
    kwargs, steps = entry.converge[1]
    params = {"xy": jnp.asarray([-1.2, 1.0])}
    final = _solve_jit(entry.build(**kwargs), rosenbrock, params, steps)
    assert final < entry.rosenbrock_tol, f"{entry.name}: 24.2 -> {final}"
