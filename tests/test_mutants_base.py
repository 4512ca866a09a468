"""Tests that kill the mutants of gradtx/_base.py the other test files let survive (issue 20).

Written as a user calls gradtx: repr, ==, hash, init/update; a user-defined Transform only
where the behaviour is how a subclass's annotations are read.

This module deliberately has no ``from __future__ import annotations``: the user-defined
transforms below then carry real types in their annotations (``float``, ``float | None``), as
a user's module without that import does; gradtx's own modules carry strings.
"""

import itertools
import pickle
from typing import Any, Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

# -- printing -----------------------------------------------------------------------------


def _identity_jit(tx):
    """``tx`` after a round trip through jit: its numbers come back as arrays."""
    return jax.jit(lambda t: t)(tx)


def test_a_transform_returned_by_jit_prints_compares_and_hashes_as_the_one_passed_in():
    # float32, int32 and complex64 scalars print as the numbers given and equal them.
    tx = gradtx.chain(
        gradtx.sgd(gradtx.linear_schedule(0.5, 0.25, transition_steps=10)),
        gradtx.scale(1 + 2j),
    )
    back = _identity_jit(tx)
    assert repr(back) == repr(tx)
    for shown in ("init_value=0.5,", "end_value=0.25,", "transition_steps=10,"):
        assert shown in repr(back)
    assert "Scale(step_size=(1+2j))" in repr(back)
    assert back == tx
    assert hash(back) == hash(tx)
    # A float32 that is not the float given prints as short as float32 allows.
    assert "learning_rate=0.1," in repr(_identity_jit(gradtx.sgd(0.1)))


def test_a_vmapped_sweep_prints_its_batched_hyperparameters_as_dtype_and_shape():
    swept = jax.vmap(lambda lr: gradtx.sgd(lr))(jnp.array([0.1, 0.2, 0.3]))
    assert "ScaleByLearningRate(learning_rate=float32[3], flip_sign=True)" in repr(swept)


def test_joined_schedules_print_one_per_line_indented_under_their_field():
    # Even a short tuple of schedules takes one line per schedule.
    assert repr(gradtx.join_schedules([gradtx.constant_schedule(1.0)], [])) == (
        "JoinSchedules(\n"
        "    schedules=(\n"
        "        ConstantSchedule(value=1.0),\n"
        "    ),\n"
        "    boundaries=(),\n"
        ")"
    )
    decay = gradtx.exponential_decay(1.0, transition_steps=10, decay_rate=0.5)
    joined = gradtx.join_schedules([decay, gradtx.constant_schedule(0.5)], [5])
    assert repr(gradtx.chain(gradtx.scale_by_learning_rate(joined))) == (
        "chain(\n"
        "    ScaleByLearningRate(\n"
        "        learning_rate=JoinSchedules(\n"
        "            schedules=(\n"
        "                ExponentialDecay(\n"
        "                    init_value=1.0,\n"
        "                    transition_steps=10,\n"
        "                    decay_rate=0.5,\n"
        "                    transition_begin=0,\n"
        "                    staircase=False,\n"
        "                    end_value=None,\n"
        "                ),\n"
        "                ConstantSchedule(value=0.5),\n"
        "            ),\n"
        "            boundaries=(5,),\n"
        "        ),\n"
        "        flip_sign=True,\n"
        "    ),\n"
        ")"
    )


def _schedule_named(name):
    def schedule(count):
        return 0.1 * jnp.ones_like(count, dtype=jnp.float32)

    schedule.__qualname__ = name
    return schedule


def test_a_schedule_function_prints_by_name_and_lines_wrap_past_88_columns_with_indent():
    # Nested in a chain (indent 4), "ScaleByLearningRate(learning_rate=NAME, flip_sign=True)"
    # is 51 + len(NAME) long: 84 + 4 = 88 columns fit on one line, 85 + 4 do not.
    fits = gradtx.chain(gradtx.scale_by_learning_rate(_schedule_named("f" * 33)))
    assert repr(fits) == (
        f"chain(\n    ScaleByLearningRate(learning_rate={'f' * 33}, flip_sign=True),\n)"
    )
    too_long = gradtx.chain(gradtx.scale_by_learning_rate(_schedule_named("f" * 34)))
    assert repr(too_long) == (
        "chain(\n"
        "    ScaleByLearningRate(\n"
        f"        learning_rate={'f' * 34},\n"
        "        flip_sign=True,\n"
        "    ),\n"
        ")"
    )
    # A top-level object is 88 columns wide too: 88 fits, 89 wraps.
    assert repr(gradtx.scale_by_learning_rate(_schedule_named("f" * 37))).count("\n") == 0
    assert repr(gradtx.scale_by_learning_rate(_schedule_named("f" * 38))).count("\n") == 3


def test_dtype_hyperparameters_print_by_their_dtype_name():
    def mu_dtype_shown(mu_dtype):
        text = repr(gradtx.scale_by_adam(mu_dtype=mu_dtype))
        return text.split("mu_dtype=")[1].split(",")[0]

    assert mu_dtype_shown(jnp.bfloat16) == "bfloat16"
    assert mu_dtype_shown(np.dtype("float32")) == "float32"
    # A NumPy type whose own name is not its dtype's name prints as the dtype.
    assert mu_dtype_shown(np.longdouble) == np.dtype(np.longdouble).name
    # Python's float is no NumPy type: it prints as written.
    assert mu_dtype_shown(float) == "float"


def test_a_float32_hyperparameter_prints_as_short_as_float32_allows():
    # jnp.float32(0.9) holds 0.8999999761581421: it prints as the float32 it is.
    assert "b1=0.9," in repr(gradtx.scale_by_adam(b1=jnp.float32(0.9)))
    # Where float32's shortest spelling is no shorter (1234567900.0), the exact value prints.
    assert repr(gradtx.scale(jnp.float32(1.23456789e9))) == "Scale(step_size=1234567936.0)"


# -- equality and hashing -----------------------------------------------------------------


def test_hyperparameters_compare_by_value_whatever_their_size_and_sign_of_zero():
    # Tiny values are different numbers, not rounded away.
    assert gradtx.scale_by_adam(eps=1e-20) != gradtx.scale_by_adam(eps=1e-30)
    assert gradtx.scale(1e-20 + 1j) != gradtx.scale(2e-20 + 1j)
    # -0.0 is 0.0, for real and complex values (-1j has a real part of -0.0).
    for a, b in [(-0.0, 0.0), (-1j, 0 - 1j)]:
        assert gradtx.scale(a) == gradtx.scale(b)
        assert hash(gradtx.scale(a)) == hash(gradtx.scale(b))
    # The same complex number in complex64 and complex128 is the same hyperparameter.
    assert gradtx.scale(np.complex64(1 + 2j)) == gradtx.scale(1 + 2j)
    assert hash(gradtx.scale(np.complex64(1 + 2j))) == hash(gradtx.scale(1 + 2j))


def test_hyperparameters_in_two_8_bit_float_formats_with_the_same_bits_differ():
    one = jnp.asarray(1.0, jnp.float8_e4m3fn)
    half = jax.lax.bitcast_convert_type(one, jnp.float8_e4m3fnuz)  # the same byte reads 0.5
    assert float(half) == 0.5
    assert gradtx.scale(one) != gradtx.scale(half)
    # Arrays are not made Python numbers: they compare by dtype and bytes (NumPy's kind "V").
    ones = jnp.full(2, one)
    halves = jax.lax.bitcast_convert_type(ones, jnp.float8_e4m3fnuz)
    assert ones.tobytes() == halves.tobytes()
    assert gradtx.scale(ones) != gradtx.scale(halves)
    assert gradtx.scale(ones) == gradtx.scale(jnp.full(2, one))


def test_different_hyperparameters_hash_differently():
    hashes = {hash(gradtx.sgd(lr)) for lr in (0.1, 0.2, 0.3)}
    assert len(hashes) == 3
    assert hash(gradtx.scale(1 + 2j)) != hash(gradtx.scale(1 + 3j))


def test_a_prng_key_hyperparameter_compares_hashes_and_prints_by_its_key_data():
    def noise(seed):
        return gradtx.add_noise(0.1, 0.55, key=jax.random.key(seed))

    assert noise(0) == noise(0)
    assert hash(noise(0)) == hash(noise(0))
    assert noise(0) != noise(1)
    assert repr(noise(0)) == "AddNoise(eta=0.1, gamma=0.55, key=uint32[2])"


def test_under_jit_a_traced_transform_equals_only_itself_and_cannot_be_hashed():
    seen = []

    @jax.jit
    def step(tx):
        reference = gradtx.sgd(0.1)
        seen.append((tx == reference, reference == tx, tx == tx))
        with pytest.raises(TypeError, match="traced values cannot be hashed"):
            hash(tx)
        return tx.hyperparams()["transforms"][1].learning_rate

    step(gradtx.sgd(0.1))
    assert seen == [(False, False, True)]


# -- normalisation when built -------------------------------------------------------------


def test_numpy_and_jax_scalars_become_the_python_numbers_they_hold():
    narrow = (np.float16(0.5), jnp.bfloat16(0.5), jnp.asarray(0.5, jnp.float8_e4m3fn))
    for value in (0.5, np.float32(0.5), np.float64(0.5), jnp.asarray(0.5), *narrow):
        step_size = gradtx.scale(value).step_size
        assert type(step_size) is float and step_size == 0.5
    assert gradtx.sgd(jnp.bfloat16(0.5)) == gradtx.sgd(0.5)
    # An integer given for a float hyperparameter is stored as a float.
    assert type(gradtx.scale(jnp.asarray(2)).step_size) is float
    # An integer hyperparameter stays an integer.
    steps = gradtx.linear_schedule(0.5, 0.25, transition_steps=np.int64(10)).transition_steps
    assert type(steps) is int and steps == 10
    # So one jitted step serves them all: the leaves are the same Python numbers.
    traces = []

    @jax.jit
    def step(tx, grads):
        traces.append(None)
        return tx.update(grads, tx.init(grads))[0]

    grads = {"w": jnp.ones(2)}
    for value in (0.5, np.float32(0.5), jnp.asarray(0.5), jnp.float32(0.5)):
        step(gradtx.sgd(value), grads)
    assert len(traces) == 1


@pytest.mark.parametrize("value", [0.5 + 0j, np.complex64(0.5), jnp.asarray(0.5 + 0j)])
def test_a_complex_hyperparameter_is_refused_where_a_range_is_checked(value):
    # The range check would compare only the real part; scale() keeps complex factors.
    assert gradtx.scale(value).step_size == value
    with pytest.raises(ValueError, match=r"sgd\(momentum=.*\): momentum must be real, not complex"):
        gradtx.sgd(0.1, momentum=value)


def test_a_static_option_is_kept_as_given():
    # Only numeric leaves are normalised; a static ratio keeps its type.
    assert type(gradtx.top_k_compression(ratio=1, axis_name="data").ratio) is int


def test_a_dict_hyperparameter_is_frozen_when_built():
    tx = gradtx.inject_hyperparams(gradtx.adam)(learning_rate=0.1)
    with pytest.raises(TypeError, match="immutable"):
        tx.numeric["learning_rate"] = 1.0
    assert hash(tx) == hash(gradtx.inject_hyperparams(gradtx.adam)(learning_rate=0.1))


# -- a user's transform: its annotations say which values are numbers ---------------------


class _Custom(gradtx.Transform):
    rate: float
    count: int
    either: float | int = 1
    maybe: float | None = None
    anything: Any = 1.0
    optional: Optional[float] = 1.0  # noqa: UP045 - the typing spelling users still write
    other: tuple = ()
    untyped: "jax.Array" = 0.5
    quoted: "float|None" = None

    def init(self, params):
        return ()

    def update(self, updates, state, params=None, **extra_args):
        return updates, state


def test_a_user_transform_reads_its_annotations_to_convert_ints_and_refuse_none():
    tx = _Custom(rate=2, count=3, either=2, maybe=2, quoted=2)
    # float (also "float|None" written as a string): an int becomes a float; int, and
    # float | int: it stays an int.
    kinds = [type(getattr(tx, f)) for f in ("rate", "count", "either", "maybe", "quoted")]
    assert kinds == [float, int, int, float, float]
    # None and flags are refused where a number is required...
    for field in ("rate", "count", "either", "untyped"):
        for bad in (None, True):
            kwargs = {"rate": 1.0, "count": 1, field: bad}
            with pytest.raises(TypeError, match=f"{field} must be a number or an array"):
                _Custom(**kwargs)
    # ... and allowed where the annotation admits them (None, Any, Optional) or names no number.
    for field in ("maybe", "anything", "optional", "other", "quoted"):
        assert getattr(_Custom(rate=1.0, count=1, **{field: None}), field) is None


# -- errors name the call -----------------------------------------------------------------


def test_a_string_flag_or_none_for_a_number_names_the_transform_and_argument():
    with pytest.raises(TypeError) as error:
        gradtx.scale_by_adam(b1="0.9")
    assert str(error.value).startswith("scale_by_adam(b1='0.9'): b1 is a string")
    for bad in (None, True):
        with pytest.raises(TypeError) as error:
            gradtx.scale_by_adam(b1=bad)
        assert str(error.value) == f"scale_by_adam(b1={bad!r}): b1 must be a number or an array"


def test_an_integer_or_unknown_storage_dtype_is_refused_naming_the_dtype_or_value():
    message = "mu_dtype must be None or a floating-point dtype"
    with pytest.raises(ValueError) as error:
        gradtx.scale_by_adam(mu_dtype="int8")
    assert str(error.value).startswith(f"scale_by_adam(mu_dtype=int8): {message}")
    assert error.value.values == {"mu_dtype": np.dtype("int8")}
    with pytest.raises(ValueError) as error:
        gradtx.scale_by_adam(mu_dtype="no such dtype")
    assert str(error.value).startswith(f"scale_by_adam(mu_dtype='no such dtype'): {message}")
    # A recipe names the value as its caller wrote it.
    with pytest.raises(ValueError) as error:
        gradtx.adam(0.1, mu_dtype="int8")
    assert str(error.value).startswith(f"adam(mu_dtype='int8'): {message}")
    # A NumPy type is shown by its dtype's name (np.longlong's own name is "longlong").
    with pytest.raises(ValueError) as error:
        gradtx.adam(0.1, mu_dtype=np.longlong)
    assert str(error.value).startswith(f"adam(mu_dtype=int64): {message}")


def test_range_and_denominator_errors_name_the_transform_and_the_interval():
    with pytest.raises(ValueError) as error:
        gradtx.ftrl_proximal(0.1, learning_rate_power=0.5)
    assert str(error.value) == (
        "ftrl_proximal(learning_rate_power=0.5): learning_rate_power must be in (-inf, 0]"
    )
    with pytest.raises(ValueError) as error:
        gradtx.scale_by_adam(eps=0.0, eps_root=0.0)
    assert str(error.value).startswith(
        "scale_by_adam(eps=0.0, eps_root=0.0): with eps and eps_root all 0"
    )

    def constant():
        return 0.1

    with pytest.raises(TypeError) as error:
        gradtx.scale_by_learning_rate(constant)
    assert str(error.value).startswith(
        f"scale_by_learning_rate(learning_rate={constant.__qualname__}): a function given as "
        "learning_rate is a schedule"
    )


def test_a_schedule_leaving_the_range_is_refused_naming_the_interval_and_the_value_reached():
    with pytest.raises(ValueError) as error:
        gradtx.ftrl_proximal(gradtx.linear_schedule(0.1, -0.5, transition_steps=10))
    assert str(error.value).endswith(
        "learning_rate must be in (0, inf) at every step; it reaches -0.5 at step 10"
    )
    with pytest.raises(ValueError) as error:
        gradtx.sgd(0.1, momentum=gradtx.linear_schedule(0.5, 1.5, transition_steps=10))
    assert str(error.value).endswith(
        "momentum must be in [0, 1] at every step; it reaches 1.5 at step 10"
    )
    # Schedules that stay inside, up to a closed end, are accepted.
    gradtx.sgd(0.1, momentum=gradtx.linear_schedule(0.5, 1.0, transition_steps=10))
    gradtx.sgd(gradtx.linear_schedule(0.1, 0.0, transition_steps=10))
    # An open bound keeps the slack far out: this decay reaches it by underflow at 2**13 steps.
    gradtx.ftrl_proximal(gradtx.exponential_decay(0.2, 25, 0.7, staircase=True))


def test_a_hyperparameter_error_survives_pickling():
    # Errors cross process boundaries (multiprocessing, distributed launchers) pickled.
    with pytest.raises(ValueError) as error:
        gradtx.scale_by_adam(eps=0.0, eps_root=0.0)
    assert error.value.args == (
        "scale_by_adam",
        {"eps": 0.0, "eps_root": 0.0},
        error.value.message,
    )
    again = pickle.loads(pickle.dumps(error.value))
    assert type(again) is type(error.value)
    assert str(again) == str(error.value)
    assert (again.transform, again.values) == ("scale_by_adam", {"eps": 0.0, "eps_root": 0.0})


# -- init and update ----------------------------------------------------------------------


def test_python_number_params_become_float32_arrays_and_integers_are_refused():
    tx = gradtx.identity()
    updates, _ = tx.update({"w": 0.5, "v": [2.0]}, tx.init({"w": 0.0, "v": [0.0]}))
    assert repr(updates) == ("{'v': [Array(2., dtype=float32)], 'w': Array(0.5, dtype=float32)}")
    with pytest.raises(TypeError, match=r"params leaf at \['w'\] has dtype int32"):
        gradtx.sgd(0.1).init({"w": 2})


@pytest.mark.skipif(jax.config.jax_enable_x64, reason="float64 is JAX's own dtype under x64")
@pytest.mark.parametrize("factory", [gradtx.adafactor, gradtx.adam])
def test_numpy_float64_params_run_as_float32_without_a_warning(factory):
    # The suite turns warnings into errors: an astype(float64) under x64 off would fail here.
    # With a float32 NumPy leaf beside them, and alone.
    mixed = {"w": np.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": np.float32([0.5, -0.5])}
    for wide in (mixed, {"w": mixed["w"]}):
        narrow = jax.tree.map(jnp.float32, wide)
        tx = factory(0.1)
        state = tx.init(wide)
        assert jax.tree.map(lambda x: x.dtype, state) == jax.tree.map(
            lambda x: x.dtype, tx.init(narrow)
        )
        updates, _ = tx.update(wide, state, wide)
        expected, _ = tx.update(narrow, tx.init(narrow), narrow)
        chex.assert_trees_all_equal(updates, expected, strict=True)


def test_numpy_arrays_of_a_dtype_jax_computes_in_are_passed_as_they_are():
    # Not copied to the device on each call: identity hands back the very arrays.
    updates = {"h": np.float16([1.0, 2.0]), "w": np.float32([1.0])}
    tx = gradtx.identity()
    out, _ = tx.update(updates, tx.init(updates))
    assert out["h"] is updates["h"] and out["w"] is updates["w"]


def test_a_schedule_function_is_no_leaf_and_survives_jit():
    def schedule(count):
        return 0.5 / (1.0 + count)

    tx = gradtx.sgd(schedule)
    assert jax.tree.leaves(tx) == []
    assert jax.tree.map(lambda x: x, tx).transforms[1].learning_rate is schedule
    grads = {"w": jnp.ones(2)}
    updates, _ = jax.jit(lambda t, g: t.update(g, t.init(g)))(tx, grads)
    np.testing.assert_allclose(updates["w"], [-0.5, -0.5])


def test_wrappers_that_refuse_integer_params_name_the_leaf_not_the_buffer():
    params = {"w": jnp.ones(2), "n": jnp.arange(2)}
    with pytest.raises(TypeError, match=r"params leaf at \['n'\]"):
        gradtx.multi_tensor(gradtx.adam(0.1)).init(params)


def test_flat_params_run_leaf_structured_transforms_on_the_leaves():
    tree = {"w": jnp.array([3.0, 4.0]), "b": jnp.array([1.0])}
    fp = gradtx.FlatParams.from_tree(tree)
    # clip_by_block_rms clips each leaf's RMS, not the buffer's.
    tx = gradtx.clip_by_block_rms(1.0)
    flat_updates, _ = tx.update(fp, tx.init(fp), fp)
    tree_updates, _ = tx.update(tree, tx.init(tree), tree)
    for key in tree:
        np.testing.assert_allclose(flat_updates.to_tree()[key], tree_updates[key], rtol=1e-6)
    # An elementwise transform runs on the buffers: its state is FlatParams too.
    state = gradtx.adam(0.1).init(fp)
    assert isinstance(state[0].mu, gradtx.FlatParams)
    # A partition whose labels cut a buffer in two runs per leaf.
    part = gradtx.partition({"a": gradtx.sgd(1.0), "b": gradtx.scale(2.0)}, {"w": "a", "b": "b"})
    updates, _ = part.update(fp, part.init(fp), fp)
    np.testing.assert_allclose(updates.to_tree()["w"], [-3.0, -4.0])
    np.testing.assert_allclose(updates.to_tree()["b"], [2.0])


# -- the state check ----------------------------------------------------------------------

_ANOTHER = "Was it made by another optimizer's init?"

# The state check remembers init's abstract state per (transform, params) structure: params
# under names no earlier call used make each check below compute it afresh.
_fresh = itertools.count()


def _fresh_params(*shapes):
    """Params with leaves of these shapes, under names no earlier call used: {"p<n>_<i>": ...}."""
    n = next(_fresh)
    return {f"p{n}_{i}": jnp.ones(shape) for i, shape in enumerate(shapes)}


def test_another_optimizers_state_is_refused_naming_where_and_both_states():
    params = _fresh_params((2,), (2,))
    adam = gradtx.adam(0.1)
    with pytest.raises(TypeError, match=_ANOTHER) as error:
        adam.update(params, gradtx.sgd(0.1).init(params), params)
    assert str(error.value).startswith(
        "adam.update: the state at state[0] is EmptyState where adam.init makes ScaleByAdamState."
    )
    # Inside a named tuple the path names its fields.
    mask = dict(zip(params, (True, False)))
    masked = gradtx.masked(gradtx.adam(0.1), mask)
    other = gradtx.masked(gradtx.sgd(0.1, momentum=0.9), mask)
    with pytest.raises(TypeError, match=_ANOTHER) as error:
        masked.update(params, other.init(params), params)
    assert "the state at state.inner_state[0] is TraceState where" in str(error.value)
    # A state that lost its tuples (a list from a checkpoint) is named as what it is.
    with pytest.raises(TypeError, match="the state at state is a list where adam.init makes"):
        adam.update(params, list(adam.init(params)), params)


def test_a_partitions_state_is_checked_group_by_group():
    params = _fresh_params((2,), (2,))
    labels = dict(zip(params, ("fast", "slow")))
    ours = gradtx.partition({"fast": gradtx.adam(0.1), "slow": gradtx.sgd(0.1)}, labels)
    swapped = gradtx.partition({"fast": gradtx.sgd(0.1), "slow": gradtx.adam(0.1)}, labels)
    with pytest.raises(TypeError, match=_ANOTHER) as error:
        ours.update(params, swapped.init(params), params)
    assert str(error.value).startswith(
        "partition.update: the state at state.inner_states['fast'].inner_state[0] is EmptyState "
        "where partition.init makes ScaleByAdamState."
    )
    renamed = gradtx.partition(
        {"fast": gradtx.adam(0.1), "other": gradtx.sgd(0.1)},
        dict(zip(params, ("fast", "other"))),
    )
    with pytest.raises(TypeError, match=_ANOTHER) as error:
        ours.update(params, renamed.init(params), params)
    assert "state.inner_states is a dict of ['fast', 'other'] where partition.init makes a " in (
        str(error.value)
    )
    updates, _ = ours.update(params, ours.init(params), params)  # its own state passes
    assert jax.tree.structure(updates) == jax.tree.structure(params)


def test_the_state_check_accepts_the_state_init_made_for_any_shapes_and_dtypes():
    # Shampoo keeps per-matrix statistics, directly in the state's tuples when the params are
    # a tuple: the state the check expects follows the params' shapes and dtypes.
    matrices = (jnp.ones((2, 3)), jnp.ones((3, 2), jnp.bfloat16)) * (next(_fresh) + 1)
    shampoo = gradtx.shampoo(0.1)
    updates, _ = shampoo.update(matrices, shampoo.init(matrices), matrices)
    assert len(updates) == len(matrices)


def test_one_optimizer_serves_params_of_different_structures():
    adam = gradtx.adam(0.1)
    n = next(_fresh)
    for params in ({f"w{n}": jnp.ones(2)}, ((jnp.ones(2),), (jnp.ones(3),) * (n + 1))):
        updates, _ = adam.update(params, adam.init(params), params)
        assert jax.tree.structure(updates) == jax.tree.structure(params)


def test_one_optimizer_serves_params_of_one_structure_and_different_shapes():
    # muon groups its params by shape (matrices to muon, the rest to adam): the state the check
    # expects was once remembered by structure alone, and params of the same names but other
    # shapes were refused ("the state at ...mu['w'] is an ArrayImpl where muon.init makes
    # MaskedNode").
    muon = gradtx.muon(0.02)
    n = next(_fresh)
    for params in (
        {f"w{n}": jnp.ones((3, 4)), f"b{n}": jnp.ones(4)},
        {f"w{n}": 2.0, f"b{n}": -1.0},
        {f"w{n}": jnp.ones(4), f"b{n}": jnp.ones((4, 3))},
    ):
        updates, _ = muon.update(params, muon.init(params), params)
        assert jax.tree.structure(updates) == jax.tree.structure(params)
    # A state made for other shapes is still refused.
    matrix, vector = {f"w{n}": jnp.ones((3, 4))}, {f"w{n}": jnp.ones(4)}
    with pytest.raises(TypeError, match=_ANOTHER):
        muon.update(vector, muon.init(matrix), vector)


def test_integer_params_beside_float_updates_check_the_state_made_for_the_updates():
    # adam ignores its params: integer params (a step counter in the model) beside float
    # updates take a step. The state check used to skip itself there (init refuses integer
    # params), and another optimizer's state then failed inside JAX ("dtype object").
    n = next(_fresh)
    floats, integers = {f"w{n}": jnp.ones(2)}, {f"w{n}": jnp.ones(2, jnp.int32)}
    adam = gradtx.adam(0.1)
    updates, _ = adam.update(floats, adam.init(floats), integers)
    np.testing.assert_allclose(updates[f"w{n}"], [-0.1, -0.1], rtol=1e-5)
    with pytest.raises(TypeError, match=_ANOTHER) as error:
        adam.update(floats, gradtx.sgd(0.1).init(floats), integers)
    assert "the state at state[0] is EmptyState where adam.init makes ScaleByAdamState" in str(
        error.value
    )
    # Integer updates are refused naming the leaf, whatever the state.
    with pytest.raises(TypeError, match=r"the updates leaf at \['w\d+'\] has dtype int32"):
        adam.update(integers, gradtx.sgd(0.1).init(floats), integers)


def test_params_leaves_with_no_dtype_leave_the_state_check_to_the_updates():
    # A leaf that is no number (a string a user keeps among the params): adam ignores the
    # params, so it steps; another optimizer's state is still refused, checked on the updates.
    n = next(_fresh)
    grads, params = {f"w{n}": jnp.asarray(1.0)}, {f"w{n}": "frozen"}
    adam = gradtx.adam(0.1)
    updates, _ = adam.update(grads, adam.init(grads), params)
    np.testing.assert_allclose(updates[f"w{n}"], -0.1, rtol=1e-5)
    with pytest.raises(TypeError, match=_ANOTHER):
        adam.update(grads, gradtx.sgd(0.1).init(grads), params)


def test_a_state_made_for_nested_tuple_params_is_refused_for_dict_params():
    adam = gradtx.adam(0.1)
    n = next(_fresh)
    params = {f"w{n}": jnp.ones(2), f"b{n}": jnp.ones(2)}
    nested = ((jnp.ones(2),), (jnp.ones(2),))
    with pytest.raises(TypeError, match="state at state.0..mu is a tuple of 2 where adam.init"):
        adam.update(params, adam.init(nested), params)


def test_a_state_made_for_other_params_is_refused_where_the_params_are_used():
    adam = gradtx.adam(0.1)
    two, three = (jnp.ones(2),) * 2, (jnp.ones(2),) * 3
    with pytest.raises(ValueError, match=r"do not match the optimizer state at \[2\]"):
        adam.update(two, adam.init(three), two)


def test_a_state_that_is_no_state_is_named_with_its_article():
    # "an ArrayImpl", "an int": the article follows the type name's first letter, either case.
    n = next(_fresh)
    params = {f"w{n}": jnp.ones(2)}
    tx = gradtx.scale_by_adam()
    for state, shown in ((jnp.zeros(2), "an ArrayImpl"), (3, "an int"), ([1], "a list")):
        with pytest.raises(TypeError, match=_ANOTHER) as error:
            tx.update(params, state, params)
        assert str(error.value).startswith(
            f"scale_by_adam.update: the state at state is {shown} where scale_by_adam.init "
            "makes ScaleByAdamState."
        )


# -- updates=None: only for the gradient-free methods -------------------------------------


def _square(p):
    return jnp.sum(p["w"] ** 2)


def test_updates_none_needs_params_and_a_gradient_free_method():
    params = {"w": jnp.ones(2)}
    tx = gradtx.scale_by_adam()
    with pytest.raises(ValueError) as error:
        tx.update(None, tx.init(params))
    assert str(error.value) == (
        "scale_by_adam.update: updates=None needs params (gradient-free methods)"
    )
    with pytest.raises(TypeError) as error:
        tx.update(None, tx.init(params), params)
    assert str(error.value) == (
        "scale_by_adam.update got updates=None: only a gradient-free method (value_fn=) can "
        "start a step without a gradient; chain it before this transform"
    )
    # A gradient-free method takes it; so does a chain, which hands it to its first member.
    free = gradtx.perturbation_gradient(num_samples=4, key=0)
    step, _ = free.update(None, free.init(params), params, value_fn=_square)
    chained = gradtx.chain(free, gradtx.scale(-1.0))
    negated, _ = chained.update(None, chained.init(params), params, value_fn=_square)
    np.testing.assert_allclose(negated["w"], -step["w"], rtol=1e-6)
    # ...and the chain's later members get the method's updates, not None: a chain that
    # starts with another transform names that one.
    wrong = gradtx.chain(gradtx.scale(-1.0), free)
    with pytest.raises(TypeError, match=r"^scale\.update got updates=None"):
        wrong.update(None, wrong.init(params), params, value_fn=_square)
    # Without value_fn the method names what it needs and the call that passes it.
    with pytest.raises(ValueError) as error:
        free.update(None, free.init(params), params)
    assert str(error.value) == (
        "perturbation_gradient.update needs value_fn= (the loss to minimise): call "
        "update(None, state, params, value_fn=loss_fn) with loss_fn(params) -> scalar to "
        "minimise (or population_value_fn=f, f(stacked params) -> one value per member)"
    )


def test_a_named_optimizer_given_updates_none_is_named_as_called():
    # The name the user called (adam), not its class's (chain), as the state check says it.
    params = {"w": jnp.ones(2)}
    adam = gradtx.adam(0.1)
    with pytest.raises(ValueError, match=r"^adam\.update: updates=None needs params"):
        adam.update(None, adam.init(params))


# -- objects: frozen, pickled, flattened with their field names ---------------------------


def test_a_transform_is_frozen_and_its_leaves_carry_their_field_names():
    tx = gradtx.scale_by_adam(b1=0.8)
    with pytest.raises(AttributeError, match="cannot assign to field 'b1'"):
        tx.b1 = 0.5
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(tx)]
    assert paths == [".b1", ".b2", ".eps", ".eps_root"]


def test_a_dict_hyperparameter_pickles_as_a_frozen_dict():
    tx = gradtx.inject_hyperparams(gradtx.adam)(learning_rate=0.1)
    back = pickle.loads(pickle.dumps(tx))
    assert back == tx
    assert type(back.numeric) is type(tx.numeric)
    with pytest.raises(TypeError, match="immutable"):
        back.numeric["learning_rate"] = 1.0


def test_the_largest_float32_prints_as_float32_and_a_whole_number_bound_in_full():
    largest = float(np.finfo(np.float32).max)
    assert repr(gradtx.scale(largest)) == "Scale(step_size=3.4028235e+38)"
    with pytest.raises(ValueError) as error:
        gradtx.sam(gradtx.sgd(0.1), gradtx.sgd(0.1), sync_period=2**31)
    assert str(error.value) == (
        "sam(sync_period=2147483648): sync_period must be in [1, 2147483647]"
    )


# -- a user's transform that works per leaf, on FlatParams ---------------------------------


class _PerLeaf(gradtx.Transform):
    """Not elementwise and wrapping nothing: on FlatParams it runs on the leaves as trees."""

    give_nothing: bool = False

    def init(self, params):
        return ()

    def update(self, updates, state, params=None, value=None, grad=None, value_fn=None):
        if self.give_nothing:
            return None, state
        assert isinstance(updates, dict) and isinstance(params, dict) and isinstance(grad, dict)
        values = value_fn(params, 2.0, scale=3.0)
        step = jax.tree.map(
            lambda u, g, v, p: u + 10 * g + 100 * v + p, updates, grad, values, params
        )
        return jax.tree.map(lambda x: x + value, step), state


def test_a_per_leaf_user_transform_on_flat_params_gets_trees_and_its_functions_flat_params():
    tree = {"w": jnp.array([3.0, 4.0]), "b": jnp.array([1.0])}
    fp = gradtx.FlatParams.from_tree(tree)
    seen = []

    def value_fn(p, factor, *, scale):  # called with FlatParams, as the user's loss is
        seen.append(type(p))
        return jax.tree.map(lambda x: factor * scale * x, p)

    tx = _PerLeaf()
    grad = jax.tree.map(lambda x: 2 * x, fp)
    step, _ = tx.update(fp, tx.init(fp), fp, value=jnp.asarray(0.5), grad=grad, value_fn=value_fn)
    assert isinstance(step, gradtx.FlatParams) and seen == [gradtx.FlatParams]
    for key, x in tree.items():  # u + 10 g + 100 (6 p) + p + value = (1 + 20 + 600 + 1) p + 0.5
        np.testing.assert_allclose(step.to_tree()[key], 622 * x + 0.5, rtol=1e-6)
    # No updates come back as None, not as FlatParams of nothing.
    quiet = _PerLeaf(give_nothing=True)
    assert quiet.update(fp, quiet.init(fp), fp, grad=grad, value_fn=value_fn)[0] is None
