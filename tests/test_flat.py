"""FlatParams: one buffer per dtype, the leaves slices of it, optimizers run per buffer."""

from __future__ import annotations

import pathlib
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx._flat import FlatParams


def _params():
    keys = jax.random.split(jax.random.key(0), 4)
    return {
        "dense": {"kernel": jax.random.normal(keys[0], (4, 3)), "bias": jnp.full(3, 0.5)},
        "ln": {"scale": jnp.ones(3)},
        "out": jax.random.normal(keys[1], (3, 2)),
    }


def _grads(step):
    # Leaves of very different scales, so per-leaf and per-buffer norms differ.
    keys = jax.random.split(jax.random.key(step + 1), 4)
    return {
        "dense": {"kernel": 10 * jax.random.normal(keys[0], (4, 3)), "bias": jnp.ones(3)},
        "ln": {"scale": 0.01 * jax.random.normal(keys[2], (3,))},
        "out": jax.random.normal(keys[3], (3, 2)),
    }


# -- packing ----------------------------------------------------------------------


def test_round_trip_is_exact_for_mixed_dtypes(x64):
    params = {
        "f32": jnp.arange(6, dtype=jnp.float32).reshape(2, 3) / 7,
        "bf16": jnp.arange(4, dtype=jnp.bfloat16) / 3,
        "f64": jnp.arange(3, dtype=jnp.float64) / 11,
        "i32": jnp.arange(5, dtype=jnp.int32) - 2,
        "scalar": jnp.float32(2.5),
        "none": None,
        "more_f32": [jnp.ones((1, 2, 2), jnp.float32)],
    }
    fp = FlatParams.from_tree(params)
    assert {k: (b.dtype.name, b.shape) for k, b in fp.buffers.items()} == {
        "bfloat16": ("bfloat16", (4,)),
        "float32": ("float32", (11,)),
        "float64": ("float64", (3,)),
        "int32": ("int32", (5,)),
    }
    back = fp.to_tree()
    assert jax.tree.structure(back) == jax.tree.structure(params)
    assert back["none"] is None
    for got, want in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_groups_split_a_dtype_and_segment_mask_reads_leaf_paths():
    params = _params()
    decay = gradtx.masks.weight_decay()  # kernels and "out": 2-D, not bias or scale
    with pytest.raises(ValueError, match=r"segment_mask\(mask\).*\['dense'\]\['bias'\].*"):
        FlatParams.from_tree(params).segment_mask(decay)
    fp = FlatParams.from_tree(params, groups=decay)
    assert sorted(fp.buffers) == ["float32[False]", "float32[True]"]
    mask = fp.segment_mask(decay)
    assert mask.buffers == {"float32[False]": False, "float32[True]": True}
    assert fp.segment_mask({"dense": {"kernel": True, "bias": False}, "ln": False, "out": True})


# -- pytree ------------------------------------------------------------------------


def test_is_a_pytree_of_its_buffers_with_the_layout_static():
    fp = FlatParams.from_tree(_params())
    leaves, treedef = jax.tree.flatten(fp)
    assert len(leaves) == 1 and leaves[0].shape == (24,)
    again = jax.tree.unflatten(treedef, leaves)
    assert isinstance(again, FlatParams) and again.layout == fp.layout
    doubled = jax.tree.map(lambda b: 2 * b, fp)
    np.testing.assert_array_equal(doubled.buffers["float32"], 2 * fp.buffers["float32"])
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(fp)[0]]
    assert paths == ["['float32']"]
    # Another layout is another tree structure: jit retraces, tree.map refuses to mix them.
    other = FlatParams.from_tree({"w": jnp.ones(24)})
    assert jax.tree.structure(other) != treedef
    assert hash(fp.layout) == hash(FlatParams.from_tree(_params()).layout)


def test_grad_through_to_tree_is_a_flat_params_of_the_tree_gradients():
    params = _params()

    def loss(tree):
        hidden = jnp.tanh(jnp.ones((5, 4)) @ tree["dense"]["kernel"] + tree["dense"]["bias"])
        return jnp.sum((hidden * tree["ln"]["scale"]) @ tree["out"] ** 2)

    fp = FlatParams.from_tree(params)
    grads = jax.jit(jax.grad(lambda fp: loss(fp.to_tree())))(fp)
    assert isinstance(grads, FlatParams) and grads.layout == fp.layout
    want = jax.grad(loss)(params)
    for got, ref in zip(jax.tree.leaves(grads.to_tree()), jax.tree.leaves(want)):
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


def test_jit_argument_and_donation():
    fp = FlatParams.from_tree(_params())
    step = jax.jit(lambda fp, g: gradtx.apply_updates(fp, g), donate_argnums=0)
    grads = jax.tree.map(jnp.ones_like, fp)
    want = fp.buffers["float32"] + 1  # a NumPy view of the buffer would block its donation
    new = step(fp, grads)
    assert isinstance(new, FlatParams)
    np.testing.assert_array_equal(new.buffers["float32"], want)
    assert fp.buffers["float32"].is_deleted()  # donated: its memory was reused


def test_repr_shows_the_layout_not_the_numbers():
    fp = FlatParams.from_tree(
        {"b": jnp.zeros(3), "w": jnp.ones((2, 3)), "h": jnp.ones(2, "bfloat16")}
    )
    assert repr(fp) == (
        "FlatParams(3 leaves in 2 buffers\n"
        "  float32[9]: ['b'][3]@0, ['w'][2, 3]@3\n"
        "  bfloat16[2]: ['h'][2]@0)"
    )
    assert repr(fp.layout).startswith("FlatLayout(3 leaves in 2 buffers")


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"w": jnp.ones(2), "lr": 0.1}, r"from_tree\(params\): the leaf at \['lr'\] is a float"),
        ({"w": jnp.ones(2), "name": "x"}, r"from_tree\(params\): the leaf at \['name'\] is a str"),
    ],
)
def test_bad_input_names_the_argument_and_leaf(params, match):
    with pytest.raises(TypeError, match=match):
        FlatParams.from_tree(params)


def test_bad_groups_name_the_argument():
    with pytest.raises(ValueError, match=r"from_tree\(groups\)"):
        FlatParams.from_tree({"a": jnp.ones(2), "b": jnp.ones(2)}, groups={"a": True})


def test_a_buffer_of_arrays_and_placeholders_is_refused_not_dropped():
    # One buffer holds a and b: a placeholder for a would have replaced b's numbers too.
    like = FlatParams.from_tree({"a": jnp.ones(2), "b": jnp.ones(3)})
    with pytest.raises(
        ValueError,
        match=re.escape(
            "FlatParams.from_tree_like: the tree holds MaskedNode() and arrays (at ['b']) for "
            "the params in float32"
        ),
    ):
        FlatParams.from_tree_like({"a": gradtx.MaskedNode(), "b": jnp.full(3, 5.0)}, like)
    masked = FlatParams.from_tree_like({"a": gradtx.MaskedNode(), "b": gradtx.MaskedNode()}, like)
    assert masked.to_tree() == {"a": gradtx.MaskedNode(), "b": gradtx.MaskedNode()}


def test_integer_buffers_are_refused_by_optimizers_like_integer_leaves():
    fp = FlatParams.from_tree({"w": jnp.ones(2), "step": jnp.zeros((), jnp.int32)})
    with pytest.raises(TypeError, match=r"leaf at \['int32'\] has dtype int32"):
        gradtx.adam(0.1).init(fp)


# -- the compiled step ---------------------------------------------------------------


def _entry(hlo: str) -> list[str]:
    return [line.strip() for line in hlo[hlo.index("ENTRY") :].splitlines()[1:] if "=" in line]


def test_compiled_step_has_no_copy_and_no_gradient_buffer():
    """What XLA:CPU compiles for grad(loss(fp.to_tree())) + an elementwise update.

    Checked in the entry computation (the kernels that run): no ``copy``, no
    stand-alone ``slice`` (every slice is inside a fusion), and no instruction
    but the update itself makes an array of the buffer's size: the gradient's
    concatenation is fused into the update, never written as a buffer.
    Known copies on XLA:CPU, not asserted here: a slice that feeds a ``dot``
    is materialised by a small fusion (one copy of that weight matrix; the
    dot cannot read a fused operand), and with ``donate_argnums`` the update
    fusion reads the buffer at other offsets than it writes, so XLA writes a
    temporary and adds a root ``copy`` into the donated buffer.
    """
    params = _params()
    fp = FlatParams.from_tree(params)

    def step(fp):
        def loss(fp):
            tree = fp.to_tree()
            hidden = jnp.tanh(jnp.ones((5, 4)) @ tree["dense"]["kernel"] + tree["dense"]["bias"])
            return jnp.sum((hidden * tree["ln"]["scale"]) @ tree["out"])

        grads = jax.grad(loss)(fp)
        return jax.tree.map(lambda p, g: p - 0.1 * g, fp, grads)

    hlo = jax.jit(step).lower(fp).compile().as_text()
    # The gradient is one concatenation, not a sum of zero-padded buffers (one per leaf:
    # N times the work in one fused kernel of N operands).
    assert re.search(r"f32\[24\]\S* concatenate\(", hlo) and not re.search(r"\bpad\(", hlo)
    entry = _entry(hlo)
    assert not [line for line in entry if re.search(r"\bcopy\(", line)]
    assert not [line for line in entry if re.search(r"= \S+ slice\(", line)]
    made = [line for line in entry if "parameter(" not in line]
    full = [line for line in made if "f32[24]" in line.split("=")[1].split("(")[0]]
    assert len(full) == 1 and full[0].startswith("ROOT"), full


# -- optimizers on buffers ---------------------------------------------------------------


def _run_with_state(tx, flat=False, groups=None, grads=_grads, steps=2):
    """Params and state after ``steps`` steps from _params() with grads(step), in a tree or a
    FlatParams (eager: jit compiles each case for seconds, eager ops are compiled once for
    all of them); the params as a tree, the state as it is."""

    def pack(tree):
        return FlatParams.from_tree(tree, groups=groups) if flat else tree

    params = pack(_params())
    state = tx.init(params)
    for step in range(steps):
        updates, state = tx.update(pack(grads(step)), state, params)
        params = gradtx.apply_updates(params, updates)
    return (params.to_tree() if flat else params), state


def _run(tx, flat=False, groups=None):
    return _run_with_state(tx, flat, groups)[0]


def _max_difference(a, b):
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in pairs)


def _flat_against_tree(tx):
    return _max_difference(_run(tx, flat=True), _run(tx))


@pytest.mark.parametrize(
    "build",
    [
        lambda: gradtx.sgd(0.1, momentum=0.9, nesterov=True),
        lambda: gradtx.adam(0.1),
        lambda: gradtx.adamw(0.1, weight_decay=0.1),
        lambda: gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adam(0.1)),
    ],
    ids=["sgd", "adam", "adamw", "clip_by_global_norm+adam"],
)
def test_elementwise_optimizers_give_the_tree_numbers(build):
    assert _flat_against_tree(build()) <= 1e-6


def test_adamw_weight_decay_mask_through_segments():
    decay = gradtx.masks.weight_decay()
    tree = _run(gradtx.adamw(0.1, weight_decay=0.5, mask=decay))
    fp = FlatParams.from_tree(_params(), groups=decay)
    tx = gradtx.adamw(0.1, weight_decay=0.5, mask=fp.segment_mask(decay))
    assert _max_difference(_run(tx, flat=True, groups=decay), tree) <= 1e-6
    # The function mask is read from the leaves: per buffer when grouped by it, ...
    tx = gradtx.adamw(0.1, weight_decay=0.5, mask=decay)
    assert _max_difference(_run(tx, flat=True, groups=decay), tree) <= 1e-6
    # ... and on the leaves (slices of the buffer) when it cuts a buffer in two.
    assert _max_difference(_run(tx, flat=True), tree) <= 1e-6
    assert gradtx.adamw(0.1, mask=decay).transforms[1].needs_leaves(FlatParams.from_tree(_params()))
    assert not gradtx.adamw(0.1, mask=decay).transforms[1].needs_leaves(fp)


def test_partition_by_labels_per_leaf():
    labels = {"dense": {"kernel": "a", "bias": "b"}, "ln": {"scale": "b"}, "out": "a"}
    tx = gradtx.partition({"a": gradtx.adam(0.1), "b": gradtx.lamb(0.05)}, labels)
    tree = _run(tx)
    assert _max_difference(_run(tx, flat=True, groups=labels), tree) <= 1e-6
    assert _max_difference(_run(tx, flat=True), tree) <= 1e-6


# Transforms that need leaf boundaries run on the leaves (slices of the buffers) and pack
# their updates back: the tree's numbers, not those of each buffer as one vector.
LEAF_STRUCTURED = {
    "clip_by_block_rms": lambda: gradtx.chain(gradtx.clip_by_block_rms(0.1), gradtx.sgd(0.1)),
    "lamb": lambda: gradtx.lamb(0.1),
    "muon": lambda: gradtx.muon(0.1),
    "adafactor": lambda: gradtx.adafactor(0.1, min_dim_size_to_factor=2),
}


@pytest.mark.parametrize("name", sorted(LEAF_STRUCTURED))
def test_leaf_structured_transforms_give_the_tree_numbers(name):
    assert _flat_against_tree(LEAF_STRUCTURED[name]()) <= 1e-6


# -- a state in one layout, gradients in another: refused, naming where ---------------------


@pytest.mark.parametrize(
    ("state_on", "grads", "match"),
    [
        # A FlatParams state, tree gradients: the first leaf and both structures, the
        # FlatParams' with its layout.
        (
            "flat",
            lambda: _grads(0),
            r"(?s)state at \['dense'\]\['bias'\].*has \[\"\['float32'\]\"\]",
        ),
        # A tree state, FlatParams gradients.
        (
            "tree",
            lambda: FlatParams.from_tree(_grads(0)),
            r"(?s)state at \['float32'\].*FlatLayout",
        ),
        # Another FlatParams layout whose buffers differ (grouped).
        (
            "flat",
            lambda: FlatParams.from_tree(_grads(0), groups=gradtx.masks.weight_decay()),
            r"(?s)state at \['float32\[False\]'\].*float32\[True\]\[18\]",
        ),
    ],
    ids=["flat_state_tree_grads", "tree_state_flat_grads", "another_flat_layout"],
)
def test_a_state_in_another_layout_is_refused_naming_the_leaf(state_on, grads, match):
    tx = gradtx.adam(0.1)
    params = FlatParams.from_tree(_params()) if state_on == "flat" else _params()
    with pytest.raises(ValueError, match=match):
        tx.update(grads(), tx.init(params), None)


_TRANSPOSED = (
    r"at <root>: .*FlatParams.*: leaf \['out'\] is float32\[2, 3\] in buffer 'float32' at 18 in "
    r"the updates, \['out'\] float32\[3, 2\] in buffer 'float32' at 18 in the optimizer state\.$"
)


def test_layouts_with_the_same_buffers_are_refused_naming_the_first_differing_leaf():
    tx = gradtx.adam(0.1)
    transposed = {**_params(), "out": _params()["out"].T}  # the same 24 floats in one buffer
    with pytest.raises(ValueError, match=_TRANSPOSED):
        tx.update(FlatParams.from_tree(transposed), tx.init(FlatParams.from_tree(_params())))


# -- what users read from the state: params-shaped values as FlatParams of the tree's ------


def _nan_at_step_1(step):
    grads = _grads(step)
    if step == 1:
        grads["ln"]["scale"] = grads["ln"]["scale"].at[1].set(jnp.nan)
    return grads


def _read_alike(tx, keys, grads=_grads, steps=2):
    """tree_get(state, key) for each key after the same steps on a tree and on FlatParams:
    the flat value is a FlatParams in the params' layout (given back as its tree) or the
    same scalar, with the tree run's numbers. Returns the flat state and the values."""
    tree_params, tree_state = _run_with_state(tx, grads=grads, steps=steps)
    flat_params, flat_state = _run_with_state(tx, flat=True, grads=grads, steps=steps)
    assert _max_difference(flat_params, tree_params) <= 1e-6
    values = []
    for key in keys:
        tree_value, flat_value = gradtx.tree_get(tree_state, key), gradtx.tree_get(flat_state, key)
        if isinstance(tree_value, dict):
            assert isinstance(flat_value, FlatParams)
            assert flat_value.layout == FlatParams.from_tree(_params()).layout
            flat_value = flat_value.to_tree()
            assert _max_difference(flat_value, tree_value) <= 1e-6
        else:  # a counter or a flag
            np.testing.assert_array_equal(flat_value, tree_value)
        values.append(flat_value)
    return flat_state, values


def test_ema_params_average_reads_as_flat_params_of_the_tree_average():
    tx = gradtx.chain(gradtx.adam(0.1), gradtx.ema_params(0.5))
    state, (average,) = _read_alike(tx, ["average"])
    assert _max_difference(average, _params()) > 1e-2  # it moved
    # tree_set takes the tree and packs it into the layout (resetting the average).
    reset = gradtx.tree_set(state, average=_params())
    assert isinstance(reset[1].average, FlatParams)
    assert _max_difference(reset[1].average.to_tree(), _params()) == 0.0


def test_multi_steps_accumulator_and_has_updated_read_like_the_tree():
    tx = gradtx.MultiSteps(gradtx.adam(0.1), every_k_schedule=3)
    zeros = jax.tree.map(jnp.zeros_like, _params())
    state, (acc,) = _read_alike(tx, ["acc_grads"], steps=2)  # two micro-steps summed
    assert not tx.has_updated(state) and _max_difference(acc, zeros) > 1.0
    state, (acc, _) = _read_alike(tx, ["acc_grads", "updated"], steps=3)  # applied, emptied
    assert tx.has_updated(state) and _max_difference(acc, zeros) == 0.0


def test_apply_if_finite_counts_a_nan_in_one_leaf_like_the_tree():
    tx = gradtx.apply_if_finite(gradtx.adam(0.1), max_consecutive_errors=1)
    keys = ["notfinite_count", "total_notfinite", "last_finite", "gave_up", "mu"]
    state, _ = _read_alike(tx, keys, grads=_nan_at_step_1, steps=3)
    assert int(state.total_notfinite) == 1 and bool(state.gave_up)
    with pytest.raises(FloatingPointError, match="gave up after 1"):
        gradtx.check_finite_steps(state)


# -- checkpoints: stored as the ordinary tree ---------------------------------------------


def test_checkpoint_stores_the_tree_so_flat_and_tree_runs_resume_each_other(tmp_path):
    pytest.importorskip("orbax.checkpoint")
    from gradtx.checkpoint import Checkpointer

    tx = gradtx.adam(0.1)
    flat = FlatParams.from_tree(_params())
    state = tx.init(flat)
    updates, state = tx.update(FlatParams.from_tree(_grads(0)), state, flat)
    flat = gradtx.apply_updates(flat, updates)
    with Checkpointer(tmp_path / "flat") as ckpt:
        ckpt.save(1, flat, state, tx)
    # A per-leaf run resumes the flat run's checkpoint: params and state are trees there.
    with Checkpointer(tmp_path / "flat") as ckpt:
        _, tree, tree_state, _ = ckpt.restore(tx, _params())
    assert jax.tree.structure(tree) == jax.tree.structure(_params())
    np.testing.assert_array_equal(tree["out"], flat.to_tree()["out"])
    np.testing.assert_array_equal(
        tree_state[0].nu["dense"]["kernel"], state[0].nu.to_tree()["dense"]["kernel"]
    )
    # ... and a flat run resumes it into its own layout, bit for bit.
    with Checkpointer(tmp_path / "flat") as ckpt:
        _, again, again_state, _ = ckpt.restore(tx, flat)
    assert isinstance(again, FlatParams) and again.layout == flat.layout
    assert isinstance(again_state[0].mu, FlatParams)
    for a, b in zip(
        jax.tree.leaves((again, again_state)), jax.tree.leaves((flat, state)), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    # Both continue to the same numbers.
    step_tree = tx.update(_grads(1), tree_state, tree)[0]
    step_flat = tx.update(FlatParams.from_tree(_grads(1)), again_state, again)[0]
    assert _max_difference(step_flat.to_tree(), step_tree) == 0.0


# -- every named optimizer of the registry: the tree's numbers on FlatParams ----------------

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from problems import make_params, quadratic_loss  # noqa: E402
from registry import OPTIMIZERS, TRANSFORMS, WRAPPERS  # noqa: E402

NAMED = OPTIMIZERS


def _steps(entry, flat: bool, steps: int = 2):
    """``steps`` steps of the entry's optimizer on the quadratic (see :func:`_flat_and_tree`)."""
    tx = entry.build()
    params = make_params()
    loss = (lambda fp: quadratic_loss(fp.to_tree())) if flat else quadratic_loss
    params = FlatParams.from_tree(params) if flat else params
    state = tx.init(params)
    for _ in range(steps):
        value, grads = jax.value_and_grad(loss)(params)
        extra = {"value": value, "grad": grads, "value_fn": loss} if entry.extra_args else {}
        updates, state = tx.update(grads, state, params, **extra)
        params = gradtx.apply_updates(params, updates)
    return params.to_tree() if flat else params


def _flat_and_tree(entry):
    """The entry's steps on FlatParams and on the tree, eagerly (jit compiles each case for
    seconds; eager ops compile once for all of them), except those taking value_fn= (line
    searches, curvature, gradient-free): their loops compile at every eager call, so they
    run under one jit for both runs."""

    def both():
        return _steps(entry, flat=True), _steps(entry, flat=False)

    return jax.jit(both)() if entry.extra_args else both()


@pytest.mark.parametrize("entry", NAMED, ids=[e.name for e in NAMED])
def test_every_named_optimizer_gives_the_tree_numbers(entry):
    # float32 through different fusions (one buffer or per leaf): a few ulps.
    assert _max_difference(*_flat_and_tree(entry)) <= 1e-5


# -- every public transform factory: the tree's numbers on FlatParams ------------------------

# test_contract.py's ENTRIES (OPTIMIZERS + TRANSFORMS + WRAPPERS), which its
# test_registry_is_complete holds to every public factory; the named optimizers are above.
FACTORIES = TRANSFORMS + WRAPPERS

# Factories that cannot take FlatParams: none. Those that reduce per leaf while wrapping
# another transform (cautious, scale_by_adahessian's blocks) do it on the leaves the buffers pack.


@pytest.mark.parametrize("entry", FACTORIES, ids=[e.name for e in FACTORIES])
def test_every_public_transform_gives_the_tree_numbers(entry):
    # Each transform alone, its updates added to the params (a scale_by_* too): the steps
    # of _steps, as for the named optimizers.
    assert _max_difference(*_flat_and_tree(entry)) <= 1e-5
