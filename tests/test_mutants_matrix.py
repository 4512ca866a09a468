"""Tests that kill the mutants of gradtx/_matrix.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
References: optax.contrib's scale_by_muon, orthogonalize_via_newton_schulz and muon (bit for
bit under x64 on float32 leaves, where both compute in float32 with the same rounding of the
hyperparameters), and the float32 NumPy version of scale_by_shape's rule.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest
from replay import run_steps

import gradtx
from gradtx import MuonDimensionNumbers

DION = gradtx._matrix.NS_COEFFS_PRESETS["dion"]
NS = "orthogonalize_via_newton_schulz"


def _rng(seed=0):
    return np.random.default_rng(seed)


def _float32(shape, seed=0):
    return jnp.asarray(_rng(seed).normal(size=shape), jnp.float32)


def _assert_bits_equal(ours, theirs):
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        a, b = np.atleast_1d(np.asarray(a)), np.atleast_1d(np.asarray(b))
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


# -- scale_by_muon against optax.contrib.scale_by_muon -------------------------------------


def _muon_grads(steps=3):
    # A wide and a tall matrix (the tall one is orthogonalised transposed).
    return [
        {"w": _float32((4, 6), seed), "k": _float32((5, 3), 10 + seed)} for seed in range(steps)
    ]


@pytest.mark.parametrize("jit", ["traced", "bound"])
def test_scale_by_muon_defaults_equal_optax_bit_for_bit_on_float32_leaves_under_x64(jit):
    # Every default (ns_steps 5, beta 0.95, eps 1e-8, Nesterov, debiased) against optax's.
    # Under x64 both round 1 - beta and 1 - beta**t from float64 to float32, and every
    # product stays float32: the updates and the momenta agree to the bit.
    dims = optax.contrib.MuonDimensionNumbers(0, 1)
    with jax.enable_x64(True):
        grads = _muon_grads()
        ours = run_steps(gradtx.scale_by_muon(), grads, jit=jit)
        theirs = run_steps(
            optax.contrib.scale_by_muon(weight_dimension_numbers={"w": dims, "k": dims}), grads
        )
    _assert_bits_equal(ours.updates, theirs.updates)
    _assert_bits_equal(ours.states[-1].mu, theirs.states[-1].mu)
    assert ours.updates[0]["w"].dtype == jnp.float32


def test_a_bfloat16_gradient_gets_the_float32_gradients_update_rounded_to_bfloat16():
    # The arithmetic runs in float32; only the result is rounded to the leaf's dtype.
    g = {"w": _float32((3, 4)).astype(jnp.bfloat16)}
    up32 = {"w": g["w"].astype(jnp.float32)}
    tx = gradtx.scale_by_muon()
    got = tx.update(g, tx.init(g))[0]["w"]
    expected = tx.update(up32, tx.init(up32))[0]["w"]
    assert got.dtype == jnp.bfloat16
    _assert_bits_equal(got, expected.astype(jnp.bfloat16))


def test_ns_steps_0_gives_the_normalised_momentum_and_negative_steps_are_refused():
    # ">= 0": with no iteration the first update is M_1 / ||M_1||_F, M_1 a multiple of g.
    g = {"w": _float32((3, 4))}
    tx = gradtx.scale_by_muon(ns_steps=0)
    got = tx.update(g, tx.init(g))[0]["w"]
    np.testing.assert_allclose(got, g["w"] / np.linalg.norm(g["w"]), rtol=1e-6)
    with pytest.raises(ValueError, match=r"scale_by_muon\(ns_steps=-1\): ns_steps must be in"):
        gradtx.scale_by_muon(ns_steps=-1)


def test_a_negative_eps_or_consistent_rms_is_refused():
    with pytest.raises(ValueError, match=r"scale_by_muon\(eps=-1e-08\): eps must be in \[0, inf\)"):
        gradtx.scale_by_muon(eps=-1e-8)
    with pytest.raises(
        ValueError,
        match=r"scale_by_shape\(consistent_rms=-0.2\): consistent_rms must be in \[0, inf\)",
    ):
        gradtx.scale_by_shape(consistent_rms=-0.2)


# -- ns_coeffs: normalised when built, checked by shape ------------------------------------


def test_coefficients_given_as_a_list_or_an_array_build_the_same_transform():
    # ns_coeffs is normalised to tuples: equal transforms, one jit signature.
    assert gradtx.scale_by_muon(ns_coeffs=list(gradtx._matrix.NS_COEFFS)) == (
        gradtx.scale_by_muon()
    )
    rows = gradtx.scale_by_muon(ns_coeffs=np.asarray(DION))
    assert rows == gradtx.scale_by_muon(ns_coeffs=DION)
    assert rows == gradtx.scale_by_muon(ns_coeffs=[list(row) for row in DION])
    assert isinstance(rows.ns_coeffs, tuple)
    assert hash(rows) == hash(gradtx.scale_by_muon(ns_coeffs=DION))


@pytest.mark.parametrize("coeffs", [(1.0,), 3.0])
def test_coefficients_that_are_no_row_of_three_are_refused_naming_them(coeffs):
    message = re.escape(f"scale_by_muon(ns_coeffs={coeffs!r}): ns_coeffs must be (a, b, c)")
    with pytest.raises(ValueError, match=message):
        gradtx.scale_by_muon(ns_coeffs=coeffs)


def test_coefficients_nested_three_deep_are_refused_showing_their_rows():
    with pytest.raises(
        ValueError,
        match=r"scale_by_muon\(ns_coeffs=\(\[\[1.0, 2.0, 3.0\]\],\)\): ns_coeffs must be",
    ):
        gradtx.scale_by_muon(ns_coeffs=[[[1.0, 2.0, 3.0]]])


def test_ragged_coefficient_rows_are_refused_naming_them_by_scale_by_muon():
    # NumPy's "inhomogeneous shape" error came out of the normalisation (np.ndim) before.
    with pytest.raises(ValueError, match=r"scale_by_muon\(ns_coeffs=.*\): ns_coeffs must be"):
        gradtx.scale_by_muon(ns_coeffs=((3.4445, -4.775, 2.0315), (3.0, -3.2)))


# -- orthogonalize_via_newton_schulz: errors -----------------------------------------------


def test_orthogonalize_refuses_an_unknown_option_listing_the_choices():
    x = jnp.ones((3, 4))
    with pytest.raises(
        ValueError,
        match=rf"^{NS}\(preconditioning='svd'\): preconditioning must be one of "
        r"'frobenius', 'spectral', 'aol', 'schatten'$",
    ):
        gradtx.orthogonalize_via_newton_schulz(x, preconditioning="svd")
    with pytest.raises(
        ValueError, match=rf"^{NS}\(eps_mode='max'\): eps_mode must be one of 'add', 'clamp'$"
    ):
        gradtx.orthogonalize_via_newton_schulz(x, eps_mode="max")


@pytest.mark.parametrize(
    "coeffs", [3.0, ((1.0, 2.0, 3.0), (1.0, 2.0, 3.0, 4.0))], ids=["scalar", "ragged"]
)
def test_orthogonalize_refuses_coefficients_of_another_shape_naming_the_allowed_shapes(coeffs):
    with pytest.raises(
        ValueError,
        match=rf"^{NS}\(ns_coeffs=.*\): ns_coeffs must be .* of shape \(3,\) or \(n, 3\)$",
    ):
        gradtx.orthogonalize_via_newton_schulz(jnp.ones((3, 4)), coeffs)


def test_orthogonalize_refuses_a_rank3_array_naming_it_and_the_way_out():
    with pytest.raises(
        ValueError,
        match=rf"^{NS}: x of dtype float32 has shape \(2, 3, 4\): Newton-Schulz orthogonalises "
        r"matrices. Give its MuonDimensionNumbers in weight_dimension_numbers .* or use muon,",
    ):
        gradtx.orthogonalize_via_newton_schulz(jnp.ones((2, 3, 4)))


def test_axes_count_from_the_end_down_to_minus_the_rank():
    x = _float32((3, 4))
    spec = MuonDimensionNumbers(reduction_axis=-2, output_axis=-1)
    _assert_bits_equal(
        gradtx.orthogonalize_via_newton_schulz(x, dimension_numbers=spec),
        gradtx.orthogonalize_via_newton_schulz(x),
    )
    x3 = _float32((2, 3, 4), seed=1)
    spec3 = MuonDimensionNumbers(reduction_axis=-3, output_axis=-1)
    got = gradtx.orthogonalize_via_newton_schulz(x3, dimension_numbers=spec3)
    expected = jnp.stack(
        [gradtx.orthogonalize_via_newton_schulz(x3[:, i]) for i in range(3)], axis=1
    )
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


# -- orthogonalize_via_newton_schulz: float32 arithmetic under x64 -------------------------


@pytest.mark.parametrize("coeffs", ["row", "rows"])
def test_float64_coefficients_leave_a_float32_iteration_float32_as_in_optax(coeffs):
    # optax casts ns_coeffs to x's dtype; gradtx to its compute dtype (float32 here).
    coefficients = np.asarray(gradtx._matrix.NS_COEFFS if coeffs == "row" else DION)
    ours = jax.jit(gradtx.orthogonalize_via_newton_schulz, static_argnums=2)
    theirs = jax.jit(optax.contrib._muon.orthogonalize_via_newton_schulz, static_argnums=2)
    with jax.enable_x64(True):
        x = _float32((5, 7), seed=2)
        got = ours(x, coefficients, 5)
        expected = theirs(x, jnp.asarray(coefficients), 5)
    assert got.dtype == jnp.float32
    _assert_bits_equal(got, expected)


def test_a_float64_eps_is_rounded_to_the_float32_iteration():
    # eps enters in x's compute dtype: its dtype does not move the arithmetic to float64.
    ours = jax.jit(gradtx.orthogonalize_via_newton_schulz)
    with jax.enable_x64(True):
        x = _float32((4, 6), seed=3)
        got = ours(x, eps=np.float64(0.3))
        expected = ours(x, eps=np.float32(0.3))
        optax_result = jax.jit(optax.contrib._muon.orthogonalize_via_newton_schulz)(
            x, jnp.asarray(gradtx._matrix.NS_COEFFS, jnp.float32), eps=np.float32(0.3)
        )
    _assert_bits_equal(got, expected)
    _assert_bits_equal(got, optax_result)


def test_aol_equals_optax_bit_for_bit_on_a_larger_matrix():
    # The AOL row sums are taken along the rows of X X^H, as in optax, to the bit.
    x = _float32((128, 64), seed=4)
    coeffs = jnp.asarray(gradtx._matrix.NS_COEFFS)
    ours = jax.jit(gradtx.orthogonalize_via_newton_schulz, static_argnums=(2, 3))
    theirs = jax.jit(optax.contrib._muon.orthogonalize_via_newton_schulz, static_argnums=(2, 3))
    _assert_bits_equal(ours(x, coeffs, 5, "aol"), theirs(x, coeffs, 5, "aol"))


# -- dimension numbers: paths, owners, callables --------------------------------------------


def test_a_bare_vector_is_refused_as_the_root_leaf():
    with pytest.raises(ValueError, match=r"^scale_by_muon: the leaf at <root> has shape \(4,\)"):
        gradtx.scale_by_muon().init(jnp.ones(4))


def test_dimension_numbers_on_a_vector_say_to_give_it_none():
    tx = gradtx.scale_by_muon(weight_dimension_numbers=MuonDimensionNumbers())
    with pytest.raises(
        ValueError,
        match=r"the leaf at \['b'\] has shape \(4,\) and dimension numbers \(\(0,\), \(1,\)\): "
        r"only leaves of rank >= 2 can be seen as matrices; give it None",
    ):
        tx.init({"b": jnp.ones(4)})


def test_mismatched_dimension_numbers_are_refused_naming_the_transform():
    wrong = {"x": MuonDimensionNumbers()}
    params = {"w": jnp.ones((3, 4))}
    mismatch = ": weight_dimension_numbers does not match the params"
    with pytest.raises(ValueError, match="^muon" + mismatch):
        gradtx.muon(0.1, muon_weight_dimension_numbers=wrong).init(params)
    with pytest.raises(ValueError, match="^scale_by_muon" + mismatch):
        gradtx.scale_by_muon(weight_dimension_numbers=wrong).init(params)
    tx = gradtx.scale_by_shape(weight_dimension_numbers=wrong)
    with pytest.raises(ValueError, match="^scale_by_shape" + mismatch):
        tx.update(params, tx.init(params))


def test_scale_by_shape_refuses_a_vector_naming_its_path():
    tx = gradtx.scale_by_shape()
    updates = {"w": jnp.ones((3, 4)), "b": jnp.ones(4)}
    with pytest.raises(ValueError, match=r"^scale_by_shape: the leaf at \['b'\] has shape \(4,\)"):
        tx.update(updates, tx.init(updates))


def _conv_params():
    return {"w": _float32((4, 6)), "conv": _float32((3, 2, 4), seed=1), "b": _float32((4,), 2)}


def _dims_by_rank(spec_type):
    """Dimension numbers chosen from the params' ranks: a function that reads its argument."""

    def dims(params):
        rank = {2: spec_type(0, 1), 3: spec_type(reduction_axis=(0, 1), output_axis=2)}
        return jax.tree.map(lambda p: rank.get(np.ndim(p)), params)

    return dims


def test_muon_with_dimension_numbers_from_a_function_of_the_params_matches_optax():
    params = _conv_params()
    grads = [jax.tree.map(lambda p, s=s: p * (1.0 + s) + 0.1 * s, params) for s in range(3)]
    ours = gradtx.muon(0.02, muon_weight_dimension_numbers=_dims_by_rank(MuonDimensionNumbers))
    theirs = optax.contrib.muon(
        0.02, muon_weight_dimension_numbers=_dims_by_rank(optax.contrib.MuonDimensionNumbers)
    )
    got = run_steps(ours, grads, params).updates
    expected = run_steps(theirs, grads, params).updates
    for a, b in zip(got, expected):
        for name in params:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-7, err_msg=name)
    labels = gradtx._matrix.MuonLabels(
        weight_dimension_numbers=_dims_by_rank(MuonDimensionNumbers)
    )(params)
    assert labels == {"w": "muon", "conv": "muon", "b": "adam"}


# -- scale_by_shape ------------------------------------------------------------------------


def test_scale_by_shape_equal_for_equal_dimension_numbers_and_immune_to_later_edits():
    # The dimension numbers are normalised (axes as tuples, optax's type as gradtx's) and
    # copied when built.
    given = {"k": MuonDimensionNumbers(1, (0, 2))}
    tx = gradtx.scale_by_shape(weight_dimension_numbers=given)
    same = gradtx.scale_by_shape(
        weight_dimension_numbers={"k": optax.contrib.MuonDimensionNumbers((1,), (0, 2))}
    )
    assert tx == same
    assert hash(tx) == hash(same)
    given["k"] = MuonDimensionNumbers(0, (1, 2))
    u = {"k": jnp.ones((2, 3, 4))}
    # fan_in 3, fan_out 8: sqrt(8 / 3), not the edited spec's sqrt(12 / 2).
    got = tx.update(u, tx.init(u))[0]["k"]
    np.testing.assert_allclose(got, np.sqrt(8 / 3), rtol=1e-6)


@pytest.mark.parametrize("consistent_rms", [None, 0.2])
def test_scale_by_shape_scales_a_float32_leaf_in_float32_under_x64(consistent_rms):
    # factor = sqrt(max(1, fan_out / fan_in)) or consistent_rms * sqrt(max(fan_in, fan_out)),
    # each operation rounded to float32, then factor * u in float32: the same bits as NumPy.
    one = np.float32(1.0)
    with jax.enable_x64(True):
        u = _float32((3, 8), seed=5)  # fan_in 3, fan_out 8
        tx = gradtx.scale_by_shape(consistent_rms=consistent_rms)
        got = run_steps(tx, [{"w": u}], jit="bound").updates[0]["w"]
    if consistent_rms is None:
        factor = np.sqrt(np.maximum(one, np.float32(8 / 3)))
    else:
        factor = np.sqrt(np.float32(8)) * np.float32(consistent_rms)
    _assert_bits_equal(got, factor * np.asarray(u))


@pytest.mark.parametrize("consistent_rms", [None, 0.2])
def test_scale_by_shape_keeps_a_bfloat16_leaf_bfloat16(consistent_rms):
    u = {"w": _float32((2, 8)).astype(jnp.bfloat16)}
    tx = gradtx.scale_by_shape(consistent_rms=consistent_rms)
    got = tx.update(u, tx.init(u))[0]["w"]
    factor = 2.0 if consistent_rms is None else np.float32(np.sqrt(np.float32(8)) * np.float32(0.2))
    assert got.dtype == jnp.bfloat16
    _assert_bits_equal(got, (factor * u["w"].astype(jnp.float32)).astype(jnp.bfloat16))


def test_muon_names_itself_for_bad_coefficients_as_for_its_other_arguments():
    # The coefficient checks raised a plain ValueError naming scale_by_muon; they now fail like
    # every other argument, so the recipe the user called is named.
    with pytest.raises(ValueError, match=r"^muon\(ns_coeffs=\(1\.0, 2\.0\)\): ns_coeffs must be"):
        gradtx.muon(0.1, ns_coeffs=(1.0, 2.0))
    rows = ((3.4445, -4.775, 2.0315),) * 3
    with pytest.raises(ValueError, match=r"^muon\(ns_steps=2\): ns_coeffs has 3 rows"):
        gradtx.muon(0.1, ns_coeffs=rows, ns_steps=2)


@pytest.mark.parametrize("ns_steps", [-1, 2.0, True])
def test_orthogonalize_refuses_a_step_count_that_is_no_whole_number_from_0(ns_steps):
    # -1 failed inside jnp.broadcast_to ("shape must have every element be nonnegative").
    with pytest.raises(
        ValueError, match=rf"^{NS}\(ns_steps={ns_steps!r}\): ns_steps must be a whole"
    ):
        gradtx.orthogonalize_via_newton_schulz(jnp.ones((2, 3)), ns_steps=ns_steps)
