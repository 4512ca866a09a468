"""Tests that kill the mutants of gradtx/_flat.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
The references are FlatParams' own docstrings (one buffer per dtype and group, never
promoted, exact round trips, sharded leaves refused, one bool per buffer from segment_mask)
and the per-leaf path: an optimizer on FlatParams gives the tree's numbers and states.
"""

from __future__ import annotations

import chex
from devices import run_on_cpu_devices
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from replay import run_steps

import gradtx
from gradtx import FlatParams


def _params():
    return {"a": jnp.array([1.0, -2.0]), "b": jnp.array([0.5, 3.0, -1.5])}


def _grads():
    return [
        {"a": jnp.array([0.3, -0.1]), "b": jnp.array([1.0, 0.2, -2.0])},
        {"a": jnp.array([-0.5, 0.4]), "b": jnp.array([0.1, -0.7, 0.9])},
    ]


def _flat_run(tx, groups=None):
    """Two steps of ``tx`` on FlatParams of _params() (eager: small, compiled op by op)."""
    params = FlatParams.from_tree(_params(), groups=groups)
    grads = [FlatParams.from_tree(g, groups=groups) for g in _grads()]
    return run_steps(tx, grads, params, apply=gradtx.apply_updates, jit="eager")


def _tree_run(tx):
    return run_steps(tx, _grads(), _params(), apply=gradtx.apply_updates, jit="eager")


# -- errors name the call and the leaf (_flat_layout) ----------------------------------------


def test_a_root_leaf_that_is_not_an_array_is_named_root():
    with pytest.raises(
        TypeError, match=r"^FlatParams\.from_tree\(params\): the leaf at <root> is a float, not"
    ):
        FlatParams.from_tree(0.5)


def test_groups_that_do_not_fit_the_params_are_refused_naming_the_call():
    with pytest.raises(
        ValueError,
        match=r"^FlatParams\.from_tree\(groups\): groups must be a prefix of the params' structure",
    ):
        FlatParams.from_tree({"a": jnp.ones(2)}, groups={"a": True, "b": False})


# A fully replicated leaf is packed; a leaf split over the two devices is refused (docstring:
# "Leaves that are themselves sharded are refused"). Two simulated CPU devices need a fresh
# process; it inherits MUTANT_UNDER_TEST, so a mutant under --check runs there too.
SHARDED = """
import jax, jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec
from gradtx import FlatParams
mesh = jax.make_mesh((2,), ("data",))
copies = jax.device_put(jnp.arange(3.0), NamedSharding(mesh, PartitionSpec()))
rows = jax.device_put(jnp.arange(4.0), NamedSharding(mesh, PartitionSpec("data")))
print(FlatParams.from_tree({"copies": copies}).to_tree()["copies"].tolist())
try:
    FlatParams.from_tree({"copies": copies, "rows": rows})
except TypeError as error:
    print(error)
"""


def test_a_leaf_split_over_devices_is_refused_and_a_replicated_one_packed():
    lines = run_on_cpu_devices(SHARDED, devices=2)
    assert lines[0] == "[0.0, 1.0, 2.0]"
    assert lines[1].startswith(
        "FlatParams.from_tree(params): the leaf at ['rows'] is sharded over 2 devices; "
    )


# -- weak types (pack) ------------------------------------------------------------------------


def test_a_weak_float32_leaf_under_x64_joins_the_float64_buffer_with_the_tree_numbers():
    # Made before x64 is on: a weakly typed float32, laid out (and kept per leaf) as float64.
    weak_param, weak_grads = jnp.asarray(0.5), [jnp.asarray(0.25), jnp.asarray(-1.0)]
    with jax.enable_x64(True):
        params = {"b": jnp.array([1.0, 2.0, 3.0]), "w": weak_param}
        grads = [{"b": jnp.array([0.1, -0.2, 0.3]), "w": g} for g in weak_grads]
        fp = FlatParams.from_tree(params)
        assert {k: (b.dtype.name, b.shape) for k, b in fp.buffers.items()} == {
            "float64": ("float64", (4,))
        }
        tx = gradtx.adam(0.1)
        tree = run_steps(tx, grads, params, apply=gradtx.apply_updates, jit="eager")
        flat = run_steps(
            tx,
            [FlatParams.from_tree(g) for g in grads],
            fp,
            apply=gradtx.apply_updates,
            jit="eager",
        )
        # The per-leaf path rounds the weak leaf's update to float32 (its stored dtype); the
        # flat one keeps it in float64: equal to float32's precision.
        for f, t in zip(flat.params, tree.params):
            chex.assert_trees_all_close(f.to_tree(), t, rtol=1e-7, atol=0)


def test_a_weak_int_leaf_under_x64_round_trips_exactly_in_the_int64_buffer():
    weak = jnp.asarray(3)  # weakly typed int32: int64 under x64, as jnp.result_type says
    with jax.enable_x64(True):
        fp = FlatParams.from_tree({"m": jnp.array([-1, 2], jnp.int64), "n": weak})
        assert {k: (b.dtype.name, b.shape) for k, b in fp.buffers.items()} == {
            "int64": ("int64", (3,))
        }
        back = fp.to_tree()
        assert back["n"].dtype == jnp.int64 and int(back["n"]) == 3
        assert back["m"].tolist() == [-1, 2]


def test_a_buffer_of_weak_leaves_keeps_them_weak_like_the_tree():
    # A weak float32 scalar times a bfloat16 array stays bfloat16; packing must not make the
    # leaf a strong float32, which would promote the model's bfloat16 activations.
    params = {"s": jnp.asarray(0.5)}
    activations = jnp.ones(2, jnp.bfloat16)
    leaf = FlatParams.from_tree(params).to_tree()["s"]
    assert (leaf * activations).dtype == (params["s"] * activations).dtype == jnp.bfloat16


# -- from_tree_like and placeholders ------------------------------------------------------------


def test_from_tree_like_refuses_several_dtypes_for_one_buffer_naming_the_call_and_leaves():
    like = FlatParams.from_tree({"a": jnp.ones(2), "b": jnp.ones(3)})
    with pytest.raises(
        ValueError,
        match=(
            r"^FlatParams\.from_tree_like: the tree for the params in float32 come in several "
            r"dtypes \(float32 at \['a'\], bfloat16 at \['b'\]\)"
        ),
    ):
        FlatParams.from_tree_like({"a": jnp.ones(2), "b": jnp.ones(3, jnp.bfloat16)}, like)


def test_a_masked_out_buffer_reads_and_writes_as_the_per_leaf_masked_nodes():
    mask = {"a": False, "b": True}  # "a" first: its placeholder buffer comes before b's
    tx = gradtx.masked(gradtx.adam(0.1), mask)
    flat, tree = _flat_run(tx, groups=mask), _tree_run(tx)
    for f, t in zip(flat.params, tree.params):
        chex.assert_trees_all_close(f.to_tree(), t, rtol=1e-6)
    mu = gradtx.tree_get(flat.states[-1], "mu")
    assert isinstance(mu.buffers["float32[False]"], gradtx.MaskedNode)
    tree_mu = gradtx.tree_get(tree.states[-1], "mu")
    chex.assert_trees_all_close(mu.to_tree(), tree_mu, rtol=1e-6)  # a: MaskedNode(), b: array
    # tree_set packs a tree with the placeholder back into the layout, placeholder kept.
    reset = {"a": gradtx.MaskedNode(), "b": jnp.array([7.0, 8.0, 9.0])}
    mu = gradtx.tree_get(gradtx.tree_set(flat.states[-1], mu=reset), "mu")
    assert isinstance(mu.buffers["float32[False]"], gradtx.MaskedNode)
    assert mu.buffers["float32[True]"].tolist() == [7.0, 8.0, 9.0]


# -- segment_mask and segment_labels ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "tree", "message"),
    [
        (
            "segment_labels",
            {"a": "x", "b": "y"},
            r"^FlatParams\.segment_labels\(labels\): the labels is 'x' at \['a'\] and 'y' at "
            r"\['b'\], both in buffer 'float32'; build the FlatParams with "
            r"FlatParams\.from_tree\(params, groups=labels\)",
        ),
        (
            "segment_mask",
            {"a": True, "b": False},
            r"^FlatParams\.segment_mask\(mask\): the mask is True at \['a'\] and False at "
            r"\['b'\], both in buffer 'float32'; build the FlatParams with "
            r"FlatParams\.from_tree\(params, groups=mask\)",
        ),
    ],
)
def test_a_segment_that_cuts_a_buffer_is_refused_naming_the_call_and_argument(
    method, tree, message
):
    fp = FlatParams.from_tree(_params())
    with pytest.raises(ValueError, match=message):
        getattr(fp, method)(tree)


def test_segment_labels_of_a_grouped_flat_params_give_one_label_per_buffer():
    grouped = FlatParams.from_tree(_params(), groups={"a": "x", "b": "y"})
    assert grouped.segment_labels({"a": "x", "b": "y"}).buffers == {
        "float32[x]": "x",
        "float32[y]": "y",
    }


def test_segment_mask_gives_one_bool_per_buffer_whatever_the_mask_holds():
    fp = FlatParams.from_tree(_params())
    # Truthy values alike as masks (masked reads them so), one bool for the buffer.
    assert fp.segment_mask({"a": 1, "b": 2}).buffers == {"float32": True}
    (value,) = fp.segment_mask({"a": np.bool_(False), "b": np.bool_(False)}).buffers.values()
    assert value is False


# -- what prints (summary) ------------------------------------------------------------------


def test_repr_names_a_root_leaf_and_lists_up_to_four_leaves_per_buffer():
    assert repr(FlatParams.from_tree(jnp.ones(3))) == (
        "FlatParams(1 leaves in 1 buffers\n  float32[3]: <root>[3]@0)"
    )
    four = {"a": jnp.ones(1), "b": jnp.ones(2), "c": jnp.ones(3), "d": jnp.ones(4)}
    assert repr(FlatParams.from_tree(four)) == (
        "FlatParams(4 leaves in 1 buffers\n  float32[10]: ['a'][1]@0, ['b'][2]@1, ['c'][3]@3, "
        "['d'][4]@6)"
    )
    five = {**four, "e": jnp.ones(5)}
    assert repr(FlatParams.from_tree(five)) == (
        "FlatParams(5 leaves in 1 buffers\n  float32[15]: ['a'][1]@0, ['b'][2]@1, ['c'][3]@3, "
        "['d'][4]@6, ... (5 leaves))"
    )


def test_contains_asks_for_a_buffer_key():
    fp = FlatParams.from_tree({"w": jnp.ones(2), "step": jnp.zeros((), jnp.int32)})
    assert "float32" in fp and "int32" in fp
    assert "float64" not in fp and "w" not in fp


# -- layouts: equality, hash, differences ---------------------------------------------------------


def test_layouts_are_equal_by_their_fields_and_spread_over_hashes():
    # The layout is part of jit's cache key: distinct layouts should not share one hash...
    layouts = [
        FlatParams.from_tree(p).layout
        for p in ({"w": jnp.zeros(2)}, {"w": jnp.zeros(3)}, {"v": jnp.zeros(2)})
    ]
    assert len({hash(layout) for layout in layouts}) == 3
    # ... and where they do, equality still compares the fields. Python hashes integers modulo
    # 2**61 - 1: a leaf of 2**61 - 1 elements hashes as an empty one.
    empty = FlatParams.from_tree({"w": jnp.zeros(0)}).layout
    huge = type(empty)(
        empty.treedef, empty.paths, ((2**61 - 1,),), empty.dtypes, empty.keys, empty.starts
    )
    assert hash(huge) == hash(empty)
    assert huge != empty and empty != huge


def test_a_root_leaf_of_another_shape_is_named_root_in_the_error():
    tx = gradtx.adam(0.1)
    with pytest.raises(
        ValueError,
        match=(
            r": leaf <root> is float32\[2, 3\] in buffer 'float32' at 0 in the updates, <root> "
            r"float32\[3, 2\] in buffer 'float32' at 0 in the optimizer state\.$"
        ),
    ):
        tx.update(
            FlatParams.from_tree(jnp.ones((2, 3))), tx.init(FlatParams.from_tree(jnp.ones((3, 2))))
        )


def test_layouts_with_the_same_leaves_in_other_containers_are_not_said_to_differ_in_count():
    # {"a": x, "b": None} and {"a": x}: the same leaf rows, another treedef (None is an empty
    # subtree); the error says so generically, not "1 leaves ... 1 in the other".
    tx = gradtx.adam(0.1)
    updates = FlatParams.from_tree({"a": jnp.ones(2), "b": None})
    with pytest.raises(
        ValueError,
        match=r"other static \(non-array\) fields: build both from the same configuration\.$",
    ):
        tx.update(updates, tx.init(FlatParams.from_tree({"a": jnp.ones(2)})))


def test_a_multi_tensor_layout_names_whole_leaves_by_their_own_buffer_without_offset():
    tx = gradtx.multi_tensor(gradtx.adam(0.1), bucket_limit=3)  # b (3 elements) stays whole
    layout = tx.init({"a": jnp.ones(2), "b": jnp.ones(3)}).layout
    other = tx.init({"a": jnp.ones(2), "b": jnp.ones(4)}).layout
    assert layout.difference_from(other) == (
        "leaf ['b'] is float32[3] in buffer \"['b']\" in this layout, ['b'] float32[4] in "
        "buffer \"['b']\" in the other"
    )
    assert layout.difference_from(layout) is None
    # One leaf more: the counts, under the names given.
    longer = tx.init({"a": jnp.ones(2), "b": jnp.ones(3), "c": jnp.ones(1)}).layout
    assert layout.difference_from(longer, ("the updates", "the state")) == (
        "2 leaves in the updates, 3 in the state"
    )


# -- multi_tensor's state read and written per leaf (BufferLayout.holds) ------------------------


def test_multi_tensor_moments_read_and_write_as_the_per_leaf_moments():
    tx, reference = gradtx.multi_tensor(gradtx.adam(0.1)), gradtx.adam(0.1)
    ours, theirs = _tree_run(tx), _tree_run(reference)
    for u, v in zip(ours.updates, theirs.updates):
        chex.assert_trees_all_close(u, v, rtol=1e-6)
    for key in ("mu", "nu"):
        chex.assert_trees_all_close(
            gradtx.tree_get(ours.states[-1], key), gradtx.tree_get(theirs.states[-1], key)
        )
    zeros = jax.tree.map(jnp.zeros_like, _params())
    reset = gradtx.tree_set(ours.states[-1], mu=zeros)
    assert reset.inner_state[0].mu["bucket_float32"].tolist() == [0.0] * 5
    chex.assert_trees_all_equal(gradtx.tree_get(reset, "mu"), zeros)
