"""Tests that kill the mutants of gradtx/_sweep.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
The reference is the members run one by one (the same transform built with each member's
values) and the docstrings' rules: the grid's order, which leaves are stacked (those that differ
between members), array scalars in the grid kept as Python numbers, the printed layout, and the
error messages naming the call, the keywords and their values.
"""

from __future__ import annotations

import functools
import textwrap

from errors import raises_whole
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx._sweep import sweep


def _nested(text: str) -> str:
    """``text`` as a field printed one level down: every line after the first indented by 4."""
    return textwrap.indent(text, "    ")[4:]


def _scaled(step_size, factor=1.0):
    """A factory whose hyperparameter is an array (scale's step size may be one)."""
    return gradtx.scale(np.asarray(step_size) * factor)


# -- printing --------------------------------------------------------------------------------


def test_a_sweep_prints_its_transform_and_grid_one_field_a_line():
    sw = sweep(gradtx.sgd, learning_rate=[0.1, 1.0])
    text = "sweep(\n    " + _nested(repr(sw.transforms)) + ",\n    learning_rate=[0.1, 1.0],\n)"
    assert repr(sw) == text  # product is the default mode: not printed
    # Inside another transform, every line one level further in, the closing one too.
    assert repr(gradtx.chain(sw)) == "chain(\n    " + _nested(text) + ",\n)"
    zipped = sweep(gradtx.sgd, learning_rate=[0.1, 1.0], mode="zip")
    assert repr(zipped) == text[: -len("\n)")] + "\n    mode='zip',\n)"


def test_a_grid_of_schedules_prints_each_schedule_at_the_fields_depth():
    def join(first):
        return gradtx.join_schedules(
            [gradtx.constant_schedule(first), gradtx.constant_schedule(0.2)], [3]
        )

    schedules = [join(0.1), join(0.3)]
    sw = sweep(gradtx.sgd, learning_rate=schedules)
    shown = ", ".join(_nested(repr(s)) for s in schedules)
    assert "\n" in shown  # a multi-line value: its depth shows
    assert repr(sw) == (
        "sweep(\n    " + _nested(repr(sw.transforms)) + f",\n    learning_rate=[{shown}],\n)"
    )


# -- members ---------------------------------------------------------------------------------


def test_transform_takes_every_index_python_allows():
    sw = sweep(gradtx.sgd, learning_rate=[0.1, 0.5])
    assert sw.transform(-2) == gradtx.sgd(0.1)  # -size is the first member
    assert sw.transform(-1) == gradtx.sgd(0.5)
    with pytest.raises(IndexError, match=r"sweep.transform\(-3\): the sweep has 2 members"):
        sw.transform(-3)


def test_a_leaf_is_stacked_exactly_where_the_members_differ():
    # learning_rate differs only in member 0, b1 only in member 1: each must be stacked.
    grid = {"learning_rate": [0.1, 0.2, 0.2], "b1": [0.9, 0.5, 0.9]}
    sw = sweep(gradtx.adam, mode="zip", **grid)
    alone = [gradtx.adam(**values) for values in sw.members]
    columns = zip(*(jax.tree.leaves(tx) for tx in alone))
    assert sw.swept == tuple(len({float(x) for x in column}) > 1 for column in columns)
    assert sum(sw.swept) == 2
    grads = jnp.asarray([[1.0, -2.0], [0.5, 0.25], [-1.0, 3.0]])
    params = jnp.zeros((3, 2))
    state = sw.init(params)
    for _ in range(2):
        updates, state = sw.update(grads, state, params)
    for index, tx in enumerate(alone):
        s = tx.init(params[index])
        for _ in range(2):
            u, s = tx.update(grads[index], s, params[index])
        np.testing.assert_allclose(updates[index], u, rtol=1e-6, err_msg=str(index))


def test_array_scalars_in_the_grid_become_python_numbers():
    for values in (np.array([0.5, 0.25], np.float32), [jnp.asarray(0.5), jnp.asarray(0.25)]):
        sw = sweep(gradtx.sgd, learning_rate=values)
        assert [type(m["learning_rate"]) for m in sw.members] == [float, float]
        assert sw.members == [{"learning_rate": 0.5}, {"learning_rate": 0.25}]
        assert type(sw.transform(1).transforms[1].learning_rate) is float


def test_array_hyperparameters_keep_their_rows_and_their_kind():
    numpy_rows = [np.array([1.0, 2.0]), np.array([3.0, -1.0])]
    sw = sweep(gradtx.scale, step_size=numpy_rows)
    for index, row in enumerate(numpy_rows):
        member = sw.transform(index)
        assert member == gradtx.scale(row)
        np.testing.assert_array_equal(member.step_size, row)
    jax_rows = [jnp.array([1.0, 2.0]), jnp.array([3.0, -1.0])]
    sw = sweep(gradtx.scale, step_size=jax_rows)
    assert isinstance(sw.transforms.step_size, jax.Array)  # stacked by jnp, as built
    assert isinstance(sw.transform(1).step_size, jax.Array)
    updates, _ = sw.update(jnp.ones((2, 2)), sw.init(jnp.zeros((2, 2))))
    np.testing.assert_array_equal(updates, np.stack(jax_rows))


def test_a_sweep_built_under_jit_from_traced_values():
    @jax.jit
    def step(rates, grads):
        sw = sweep(gradtx.sgd, learning_rate=[rates[0], rates[1]])
        return sw.update(grads, sw.init(grads))[0]

    grads = jnp.asarray([[1.0, -2.0], [0.5, 4.0]])
    np.testing.assert_allclose(step(jnp.asarray([0.1, 0.5]), grads), [[-0.1, 0.2], [-0.25, -2.0]])


def test_a_member_taken_out_of_a_traced_sweep():
    sw = sweep(gradtx.sgd, learning_rate=[0.1, 0.5])

    @jax.jit
    def member_update(sw, grads):
        tx = sw.transform(1)
        return tx.update(grads, tx.init(grads))[0]

    np.testing.assert_allclose(member_update(sw, jnp.asarray([1.0, -2.0])), [-0.5, 1.0])


def test_each_member_gets_its_params_and_the_shared_value_fn():
    def loss(x):
        return jnp.sum((x - 1.0) ** 2)

    sw = sweep(
        gradtx.scale_by_backtracking_linesearch,
        max_backtracking_steps=[15],
        max_learning_rate=[1.0, 0.25],
    )
    params = jnp.asarray([[0.0, 0.0], [3.0, -1.0]])
    values, grads = jax.vmap(jax.value_and_grad(loss))(params)
    updates, _ = sw.update(-grads, sw.init(params), params, value=values, grad=grads, value_fn=loss)
    for index, member_values in enumerate(sw.members):
        tx = gradtx.scale_by_backtracking_linesearch(**member_values)
        x = params[index]
        u, _ = tx.update(
            -grads[index], tx.init(x), x, value=values[index], grad=grads[index], value_fn=loss
        )
        assert float(jnp.abs(u).max()) > 0
        np.testing.assert_allclose(updates[index], u, rtol=1e-6, err_msg=str(member_values))


# -- errors ----------------------------------------------------------------------------------


def test_errors_before_any_member_is_built_name_the_call():
    with raises_whole(ValueError, "sweep: give at least one keyword and its list of values"):
        sweep(gradtx.adam)
    with raises_whole(TypeError, "sweep: expected a transform or a factory of one, got 5"):
        sweep(5, learning_rate=[0.1])
    with pytest.raises(
        ValueError,
        match=r"^sweep\(foo=\[1, 2\]\): scale has no hyperparameter "
        r"named 'foo'",
    ):
        sweep(gradtx.scale(0.1), foo=[1, 2])  # a transform with no label: named by its name
    ambiguous = gradtx.chain(gradtx.scale_by_adam(), gradtx.scale_by_adam())
    with raises_whole(
        ValueError,
        "sweep(b1=[0.8, 0.9]): 'b1' is found at several places in chain (transforms/0/b1, "
        "transforms/1/b1); pass a factory that sets the one to sweep",
    ):
        sweep(ambiguous, b1=[0.8, 0.9])


def test_a_bad_member_is_named_by_its_factory():
    def make(learning_rate):
        return learning_rate

    with raises_whole(
        TypeError,
        "sweep: make(learning_rate=0.1) returned float, not a gradtx transform (only a gradtx "
        "transform's leaves can be stacked)",
    ):
        sweep(make, learning_rate=[0.1, 0.2])
    # A factory with no __name__ (a partial) is named by its type.
    with pytest.raises(ValueError, match="learning_rate") as error:
        sweep(functools.partial(gradtx.adam, b1=0.9), learning_rate=[0.1, -1])
    assert "in sweep member 1: partial(learning_rate=-1)" in error.value.__notes__


def _structure_message(keywords, first, other, where, a, b):
    return (
        f"sweep({keywords}): the members {first} and {other} differ in structure at {where} (a "
        "static field: a flag, a mode, a dtype, None against a number), not only in numbers. A "
        f"sweep stacks numeric hyperparameters; run one sweep per structure.\n  {a!r}\n  {b!r}"
    )


def test_members_of_two_structures_are_refused_naming_both_and_where():
    with raises_whole(
        ValueError,
        _structure_message(
            "learning_rate=[0.1, 0.2], nesterov=[False, True]",
            "(learning_rate=0.1, nesterov=False)",
            "(learning_rate=0.2, nesterov=True)",
            ".transforms[0]",
            gradtx.adam(0.1),
            gradtx.adam(0.2, nesterov=True),
        ),
    ):
        sweep(gradtx.adam, learning_rate=[0.1, 0.2], nesterov=[False, True], mode="zip")

    def make(kind):
        return gradtx.scale_by_adam() if kind == "adam" else gradtx.scale_by_lion()

    with raises_whole(
        ValueError,
        _structure_message(
            "kind=['adam', 'lion']",
            "(kind='adam')",
            "(kind='lion')",
            "the top",
            gradtx.scale_by_adam(),
            gradtx.scale_by_lion(),
        ),
    ):
        sweep(make, kind=["adam", "lion"])


def test_a_structure_that_no_keyword_explains_names_every_keyword():
    # The members' values print alike; the factory changes on its own: all keywords are named.
    momenta = iter([None, 0.9])

    def make(learning_rate):
        return gradtx.sgd(learning_rate, momentum=next(momenta))

    with pytest.raises(
        ValueError,
        match=r"^sweep\(learning_rate=\[0\.1, 0\.1\]\): the members "
        r"\(learning_rate=0\.1\) and \(learning_rate=0\.1\) differ",
    ):
        sweep(make, learning_rate=[0.1, 0.1])


def test_arrays_of_two_shapes_are_refused_naming_the_keywords_that_differ():
    rows = [np.ones(2), np.ones(3)]
    shapes = (
        "a hyperparameter takes arrays of shapes [(2,), (3,)] in different members; a "
        "sweep stacks one shape"
    )
    shown = "step_size=[array([1., 1.]), array([1., 1., 1.])]"
    with raises_whole(ValueError, f"sweep({shown}): {shapes}"):
        sweep(_scaled, step_size=rows, factor=[1.0])  # factor does not differ: not named
    with raises_whole(ValueError, f"sweep({shown}, factor=[1.0, 2.0]): {shapes}"):
        sweep(_scaled, step_size=rows, factor=[1.0, 2.0], mode="zip")
    sizes = iter([2, 3])

    def make(step_size):
        return gradtx.scale(np.full(next(sizes), step_size))

    with raises_whole(ValueError, f"sweep(step_size=[0.5, 0.5]): {shapes}"):
        sweep(make, step_size=[0.5, 0.5])  # no keyword differs: every keyword named
