"""Properties of the registry's entries on random pytrees, found with hypothesis.

- every optimizer gives the same updates and states jitted as eager;
- ``chain`` is associative: chains of three transforms nested either way give the same
  updates, and states holding the same leaves, as the flat chain;
- every entry keeps its state's structure, shapes and dtypes from step to step, and
  gives updates shaped and typed like the params;
- zero gradients give every optimizer finite updates, at the first step and later.

The trees nest dicts, lists and tuples up to three levels deep, empty containers
included, around at least one leaf (a tree with no leaf belongs to the bad-input
tests). Leaf shapes are drawn from a few that cover scalars, vectors, a matrix, size 1
and size 0; each leaf has its own dtype: float32, bfloat16 or float16, and float64 in
the examples that run under ``jax.enable_x64``.

JAX compiles once per tree structure, shape and dtype, so each entry gets few random
examples (different for each entry, the same on every run) and ``EVERY_DTYPE``, which
holds every dtype side by side.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import chex
from hypothesis import example, given, settings
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
from problems import wavy_loss
import pytest
from registry import ALL, OPTIMIZERS, TRANSFORMS
from test_contract import _comparable, _eager, ENTRIES

import gradtx

# Few shapes, because eager execution compiles each operation once per shape and dtype.
SHAPES = [(), (3,), (2, 3), (1,), (0,), (3, 0)]

# (rtol, atol) for jit against eager, by leaf dtype. A 16-bit result is float32
# arithmetic rounded once, so it may differ by an ulp; float32 and float64 by a
# few, where XLA fuses or reorders operations.
TOLERANCES = {
    "float64": (1e-10, 1e-12),
    "float32": (1e-6, 1e-7),
    "bfloat16": (8e-3, 1e-6),
    "float16": (2e-3, 1e-6),
}

# float16 gradients keep at least this magnitude, away from float16's subnormal
# range (small gradients have their own test: test_small_float16_gradients_...).
FLOAT16_MIN_GRADIENT = 1e-2


def _settings(max_examples: int):
    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None)


@dataclasses.dataclass(frozen=True)
class Leaf:
    """Where a random array goes in a tree (not a pytree node, so a leaf to JAX)."""

    shape: tuple[int, ...]
    dtype: str


@dataclasses.dataclass(frozen=True)
class Example:
    """A tree of leaves, the seed of its values and the scale of its gradients."""

    tree: Any
    seed: int
    scale: float
    x64: bool

    def arrays(self, step: int = 0) -> Any:
        """The params (step 0, standard normal) or the gradients at ``step`` (times scale)."""
        rng = np.random.default_rng([self.seed, step])

        def fill(leaf):
            x = rng.standard_normal(leaf.shape) * (1.0 if step == 0 else self.scale)
            if step and leaf.dtype == "float16":
                x = np.copysign(np.maximum(np.abs(x), FLOAT16_MIN_GRADIENT), x)
            return jnp.asarray(x, leaf.dtype)

        return jax.tree.map(fill, self.tree)


_KEYS = st.sampled_from(["a", "b", "bias", "kernel", "scale"])


def _trees(leaves: st.SearchStrategy, depth: int) -> st.SearchStrategy:
    """A dict, list or tuple whose children are leaves or (above depth 1) such trees."""
    children = leaves if depth == 1 else st.one_of(leaves, _trees(leaves, depth - 1))
    return st.one_of(
        st.dictionaries(_KEYS, children, max_size=2),
        st.lists(children, max_size=2),
        st.lists(children, max_size=2).map(tuple),
    )


@st.composite
def examples(draw) -> Example:
    x64 = draw(st.booleans())
    dtypes = ["float32", "bfloat16", "float16"]
    if x64:
        dtypes.append("float64")
    leaves = st.builds(Leaf, st.sampled_from(SHAPES), st.sampled_from(dtypes))
    tree = draw(_trees(leaves, depth=3).filter(jax.tree.leaves))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([1.0, 1e-3, 10.0]))
    return Example(tree, seed, scale, x64)


# Every dtype side by side, with a scalar, a size-0 leaf and an empty subtree.
EVERY_DTYPE = Example(
    tree={
        "float32": [Leaf((2, 3), "float32"), Leaf((0,), "float32")],
        "bfloat16": (Leaf((3,), "bfloat16"), {"none": []}),
        "float16": {"kernel": Leaf((), "float16")},
        "float64": Leaf((2,), "float64"),
    },
    seed=0,
    scale=1.0,
    x64=True,
)


def _step(tx, grads, state, params):
    """One update (with a line search's extra arguments), and the new params."""
    updates, state = _eager(tx, grads, state, params)
    return updates, state, gradtx.apply_updates(params, updates)


# Everything but the eager reference runs compiled, once per tree and transform structure.
_jitted_step = jax.jit(_step)
_apply = jax.jit(gradtx.apply_updates)
_loss_grads = jax.jit(jax.grad(wavy_loss))


def _gradients(entry, ex: Example, params, step: int):
    """Random gradients; a line search gets the gradient of the loss it searches."""
    return _loss_grads(params) if entry.extra_args else ex.arrays(step)


def _assert_close(actual, expected, what: str, loosen: float = 1.0, applied_to=None) -> None:
    """Leafwise closeness within the tolerance of each leaf's dtype (times ``loosen``).

    Updates are compared with ``applied_to``, the params they are added to: they may also
    differ by the rounding of a param, |param| times its dtype's epsilon. Several optimizers
    (MADGRAD, Lookahead, FTRL, coin betting, proximal steps) return new params minus params,
    as their references do, so their updates carry the params' rounding: XLA's fused
    ``(1 - m) z + m x`` and the op-by-op one differ by an ulp of x, which is 1% of a
    MADGRAD update of 1e-3 gradients.
    """
    actual, expected = _comparable(actual), _comparable(expected)
    chex.assert_trees_all_equal_structs(actual, expected)
    flat = jax.tree_util.tree_flatten_with_path(actual)[0]
    scales = jax.tree.leaves(applied_to) if applied_to is not None else None
    for i, ((path, a), e) in enumerate(zip(flat, jax.tree.leaves(expected))):
        a, e = np.asarray(a), np.asarray(e)
        assert (a.dtype, a.shape) == (e.dtype, e.shape), f"{what} at {jax.tree_util.keystr(path)}"
        rtol, atol = (loosen * tol for tol in TOLERANCES.get(a.dtype.name, (0.0, 0.0)))
        a, e = a.astype(np.float64), e.astype(np.float64)
        if scales is not None:  # expected moved toward actual by up to a param's rounding
            x = np.asarray(scales[i])
            rounding = np.abs(x.astype(np.float64)) * float(jnp.finfo(x.dtype).eps)
            with np.errstate(invalid="ignore"):
                difference = a - e
            e = e + np.where(np.isfinite(difference), np.clip(difference, -rounding, rounding), 0)
        np.testing.assert_allclose(
            a, e, rtol=rtol, atol=atol, err_msg=f"{what} at {jax.tree_util.keystr(path)}"
        )


def _refuses_empty(entry, params) -> bool:
    """CMA-ES refuses params with no elements (test_state_and_updates_keep_their_shapes_and_dtypes
    checks that it says so)."""
    return entry.name in ("cma_es", "sep_cma_es") and not any(
        leaf.size for leaf in jax.tree.leaves(params)
    )


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=[e.name for e in OPTIMIZERS])
@_settings(max_examples=1)
@example(ex=EVERY_DTYPE)
@given(ex=examples())
def test_jit_equals_eager(entry, ex):
    if entry.extra_args:
        # A line search branches on comparisons of nearly equal numbers, which XLA's
        # fusions may round differently: it is compared in float64, as in test_contract.
        float64 = jax.tree.map(lambda leaf: Leaf(leaf.shape, "float64"), ex.tree)
        ex = dataclasses.replace(ex, tree=float64, x64=True)
    # CMA-ES starts from cma's C0 = diag(exp(1e-4 i / n)), whose eigenvalues lie 1e-5
    # apart relative to the largest: eigh's eigenvectors then move by about eps / 1e-5 when
    # C moves by an ulp (as in NumPy), and the fused and op-by-op C do differ by an ulp at
    # step 1: the mean differs by 1e-11 at step 2 (2.8e-9 relative on its smallest entry).
    loosen = {"cma_es": 1e3}.get(entry.name, 1.0)
    with jax.enable_x64(ex.x64):
        tx = entry.build()
        # tx's numbers as constants, as eager sees them: as traced float32 leaves,
        # 1 - b2 would lose digits that a Python float keeps (test_contract checks that).
        compiled = jax.jit(functools.partial(_step, tx))
        eager_params = jitted_params = ex.arrays()
        if _refuses_empty(entry, eager_params):
            return
        eager = jitted = tx.init(eager_params)
        for step in range(1, 4):
            params = eager_params
            eager_updates, eager = _eager(tx, _gradients(entry, ex, params, step), eager, params)
            eager_params = _apply(params, eager_updates)
            jitted_updates, jitted, jitted_params = compiled(
                _gradients(entry, ex, jitted_params, step), jitted, jitted_params
            )
            _assert_close(
                jitted_updates, eager_updates, f"updates at step {step}", loosen, applied_to=params
            )
            _assert_close(jitted, eager, f"state at step {step}", loosen)


def _run(tx, ex: Example, steps: int = 3) -> list:
    """(updates, state) of each of ``steps`` eager steps with random gradients."""
    params = ex.arrays()
    state = tx.init(params)
    history = []
    for step in range(1, steps + 1):
        updates, state = _eager(tx, ex.arrays(step), state, params)
        params = _apply(params, updates)
        history.append((updates, _comparable(state)))
    return history


_TRANSFORM = st.sampled_from([e.name for e in TRANSFORMS])


@_settings(max_examples=15)
@given(names=st.tuples(_TRANSFORM, _TRANSFORM, _TRANSFORM), ex=examples())
def test_chain_is_associative(names, ex):
    # Eager, so that the three chains run the very same operations: equal to the bit.
    # Random gradients even for a line search: it must only do the same in each chain.
    with jax.enable_x64(ex.x64):
        a, b, c = (ALL[name].build() for name in names)
        flat = _run(gradtx.chain(a, b, c), ex)
        for nested in (gradtx.chain(a, gradtx.chain(b, c)), gradtx.chain(gradtx.chain(a, b), c)):
            for (updates, state), (flat_updates, flat_state) in zip(_run(nested, ex), flat):
                chex.assert_trees_all_equal(updates, flat_updates)
                # The states nest differently but hold the same leaves in the same order.
                chex.assert_trees_all_equal(jax.tree.leaves(state), jax.tree.leaves(flat_state))


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
@_settings(max_examples=2)
@example(ex=EVERY_DTYPE)
@given(ex=examples())
def test_state_and_updates_keep_their_shapes_and_dtypes(entry, ex):
    """A step maps the state to one of the same structure, shapes and dtypes, and gives
    updates shaped and typed like the params. Traced, not compiled: it is about types.
    """
    with jax.enable_x64(ex.x64):
        tx = entry.build()
        params = jax.eval_shape(ex.arrays)
        if _refuses_empty(entry, params):  # its constants divide by the dimension
            with pytest.raises(ValueError, match=r"cma_es\.init: the params have no elements"):
                jax.eval_shape(tx.init, params)
            return
        initial = state = jax.eval_shape(tx.init, params)
        for _ in range(2):
            updates, state, params = jax.eval_shape(_step, tx, params, state, params)
            chex.assert_trees_all_equal_shapes_and_dtypes(state, initial)
            chex.assert_trees_all_equal_shapes_and_dtypes(updates, params)


def _finite(tree) -> bool:
    return all(np.isfinite(np.asarray(leaf, np.float64)).all() for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=[e.name for e in OPTIMIZERS])
@_settings(max_examples=1)
@example(ex=EVERY_DTYPE)
@given(ex=examples())
def test_zero_gradients_give_finite_updates(entry, ex):
    """At the first step, and again after two steps with random gradients."""
    with jax.enable_x64(ex.x64):
        tx = entry.build()
        params = ex.arrays()
        state = tx.init(params)
        zeros = jax.tree.map(np.zeros_like, params)
        for step in range(1, 5):
            grads = zeros if step in (1, 4) else _gradients(entry, ex, params, step)
            updates, state, params = _jitted_step(tx, grads, state, params)
            assert _finite(updates), f"step {step}: {updates}"


@pytest.mark.parametrize(
    "name",
    ["scale_by_adam", "scale_by_amsgrad", "scale_by_nadam", "scale_by_radam", "scale_by_rms"],
)
def test_small_float16_gradients_give_the_float32_update(name):
    # Found by these properties: second moments stored in float16 underflow for
    # |g| < 5e-3 and the step became m / eps (inf). They are now kept in float32.
    tx = ALL[name].build()
    updates = {}
    for dtype in ("float16", "float32"):
        params = jnp.zeros((), dtype)
        state = tx.init(params)
        for _ in range(6):  # scale_by_radam rectifies from the sixth step on
            update, state = tx.update(jnp.asarray(1e-3, dtype), state, params)
        updates[dtype] = float(update)
    np.testing.assert_allclose(updates["float16"], updates["float32"], rtol=1e-2)
