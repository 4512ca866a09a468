"""Tests that kill the mutants of gradtx/_sharding.py the other test files let survive.

The verdicts, mutant by mutant: tests/MUTATION.md (issue 20). tests/test_sharding.py checks the
8-device behaviour in a subprocess whose result is a session fixture, which the in-process
mutation worker computes once on the original code; these checks run in process on a 1-device
mesh, against shard_state's docstring: the report's table, the layout of every state leaf, the
placement of the initial state, which primitive constrains the updates on Explicit and on Auto
axes, and the split rule's reasons.
"""

from __future__ import annotations

from errors import raises_whole
import jax
import jax.numpy as jnp
from jax.sharding import AxisType, NamedSharding, PartitionSpec
import numpy as np

import gradtx
from gradtx._sharding import _split, LeafLayout

P = PartitionSpec
NOT_FLOAT = "replicated: not floating point (count, flag, key)"


def _params():
    return {"w": jnp.ones((4, 2)), "b": jnp.ones(3)}


def _mesh(kind=AxisType.Explicit, name="data"):
    return jax.make_mesh((1,), (name,), axis_types=(kind,))


def test_the_report_is_a_table_of_every_state_leaf_with_its_reason():
    sharding = gradtx.shard_state(gradtx.adamw(0.1), _params(), _mesh())
    replicated_count = "P()         " + NOT_FLOAT
    assert sharding.report().splitlines() == [
        "state of Chain, mesh axis 'data' of size 1:",
        f"  [0].count          int32[]        {replicated_count}",
        "  [0].mu['b']        float32[3]     P('data',)  split along dimension 0",
        "  [0].mu['w']        float32[4, 2]  P('data',)  split along dimension 0",
        "  [0].nu['b']        float32[3]     P('data',)  split along dimension 0",
        "  [0].nu['w']        float32[4, 2]  P('data',)  split along dimension 0",
        f"  [1].count          int32[]        {replicated_count}",
        f"  [2].count          int32[]        {replicated_count}",
        "  [2].learning_rate  float32[]      P()         replicated: scalar",
    ]


def test_a_stateless_transform_reports_its_title_alone():
    sharding = gradtx.shard_state(gradtx.scale(0.1), _params(), _mesh(name="batch"), axis="batch")
    assert sharding.leaves == () and sharding.layout == {}
    assert sharding.report() == "state of Scale, mesh axis 'batch' of size 1:"


def test_every_state_leaf_is_laid_out_with_its_path_shape_and_dtype():
    params = {"w": jax.ShapeDtypeStruct((4, 2), jnp.bfloat16)}  # values are never read
    tx = gradtx.trace(decay=0.9)
    sharding = gradtx.shard_state(tx, params, _mesh(name="batch"), "batch")
    assert sharding.leaves == (
        LeafLayout(
            ".count",
            (),
            jnp.dtype(jnp.int32),
            P(),
            "replicated: not floating point (count, flag, key)",
        ),
        LeafLayout(
            ".trace['w']", (4, 2), jnp.dtype(jnp.bfloat16), P("batch"), "split along dimension 0"
        ),
    )
    assert sharding.layout == {".count": P(), ".trace['w']": P("batch")}
    mesh = sharding.mesh
    assert sharding.tx is tx and sharding.axis == "batch" and mesh.axis_names == ("batch",)
    assert sharding.state.count == NamedSharding(mesh, P())
    assert sharding.state.trace == {"w": NamedSharding(mesh, P("batch"))}
    assert sharding.params == {"w": NamedSharding(mesh, P())}
    assert sharding.updates == {"w": NamedSharding(mesh, P("batch"))}
    assert sharding.report().splitlines()[1:] == [
        "  .count       int32[]         P()          " + NOT_FLOAT,
        "  .trace['w']  bfloat16[4, 2]  P('batch',)  split along dimension 0",
    ]


def test_init_places_the_state_where_the_layout_says_with_tx_init_s_values():
    params = _params()
    tx = gradtx.adamw(0.1)
    sharding = gradtx.shard_state(tx, params, _mesh())
    state = sharding.init(params)
    expected = tx.init(params)
    placed = jax.tree.leaves(
        jax.tree.map(lambda leaf, where: leaf.sharding == where, state, sharding.state)
    )
    assert placed and all(placed)
    for leaf, want in zip(jax.tree.leaves(state), jax.tree.leaves(expected)):
        assert leaf.dtype == want.dtype
        np.testing.assert_array_equal(leaf, want)


def test_updates_are_resharded_on_explicit_axes_and_constrained_on_auto_ones():
    # On an Explicit axis only reshard takes the spec (with_sharding_constraint refuses it),
    # on an Auto axis only with_sharding_constraint does (reshard refuses it).
    params = _params()
    for kind, spec in ((AxisType.Explicit, P("data")), (AxisType.Auto, None)):
        sharding = gradtx.shard_state(gradtx.adam(0.1), params, _mesh(kind))
        seen = {}

        def step(updates, sharding=sharding, seen=seen):
            out = sharding.shard_updates(updates)
            seen.update(jax.tree.map(lambda x: jax.typeof(x).sharding.spec, out))
            return out

        out = jax.jit(step)(params)
        np.testing.assert_array_equal(out["w"], params["w"])
        if spec is not None:  # an Explicit axis is in the traced type
            assert seen["b"] == spec and seen["w"] in (P("data"), P("data", None))


def test_the_split_rule_and_its_reasons():
    float32 = jnp.float32
    assert _split((), float32, "data", 2) == (P(), "replicated: scalar")
    for dtype in (jnp.int32, jnp.bool_, jax.random.key(0).dtype):
        assert _split((4,), dtype, "data", 2) == (P(), NOT_FLOAT)
    assert _split((4,), jnp.complex64, "data", 2) == (P("data"), "split along dimension 0")
    assert _split((3, 16, 8), float32, "x", 8) == (P(None, "x"), "split along dimension 1")
    assert _split((16, 16), float32, "x", 8) == (P("x"), "split along dimension 0")
    assert _split((3, 5), jnp.float16, "model", 8) == (
        P(),
        "replicated: no dimension divisible by model size 8",
    )


def test_a_mesh_without_the_axis_is_refused_with_the_whole_message():
    with raises_whole(
        ValueError,
        "shard_state(axis='data'): the mesh has no axis 'data'; its axes are ('batch', 'model')",
    ):
        gradtx.shard_state(gradtx.adam(0.1), _params(), jax.make_mesh((1, 1), ("batch", "model")))
