"""Tests that kill the mutants of gradtx/_curvature.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
References: optax 0.2.8's ``optax.contrib`` (``sophia``, its unexported ``scale_by_sophia``
and ``hutchinson_estimator_diag_hessian``: same keys, same probes, the same float32 arithmetic
with and without x64, the same win-rate lines); tests/test_curvature.py's NumPy AdaHessian
(Yao et al. 2021, Eqs. 9-11) and its probe draws (optax's stream); NumPy versions of the
docstrings' rules (H_ii in closed form, z * (H z) for the probes a key draws, B * g^ * g^ in
the leaf's float32); the compute-dtype rule (a float32 leaf gives float32 arithmetic, also
under x64); and the messages the docstrings promise, anchored whole.
"""

from __future__ import annotations

import inspect
import re

from errors import raises_whole
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_curvature import (
    _adahessian_oracle,
    _adahessian_run,
    _native,
    _probe_draws,
    _sampled_loss,
    _softmax_params,
    LOGIT_X,
)

import gradtx

optax_scale_by_sophia = optax.contrib._sophia.scale_by_sophia  # sophia's scaling, unexported


# -- exact products ---------------------------------------------------------------------


def test_hessian_diag_of_a_single_coordinate_and_of_empty_leaves():
    # One coordinate is no special case: f = x**3 at x = 2 has H = 6 x = 12.
    one = gradtx.hessian_diag(lambda p: p["x"] ** 3, {"x": jnp.asarray(2.0)})
    assert float(one["x"]) == 12.0
    # No coordinates at all: zeros shaped like the params (an empty leaf, an empty tree).
    empty = gradtx.hessian_diag(lambda p: jnp.sum(p["x"]), {"x": jnp.zeros((0, 3))})
    assert set(empty) == {"x"} and empty["x"].shape == (0, 3)
    assert gradtx.hessian_diag(lambda p: 0.0, {}) == {}


def test_hessian_diag_passes_keyword_arguments_to_fn():
    x = {"x": jnp.asarray([1.0, 2.0])}
    diagonal = gradtx.hessian_diag(lambda p, scale: scale * jnp.sum(p["x"] ** 3), x, scale=2.0)
    np.testing.assert_array_equal(diagonal["x"], [12.0, 24.0])  # 2 * 6 x


def test_hessian_diag_vmaps_its_products_in_batches_of_128():
    # The docstring's memory bound and speed: 300 coordinates are two vmapped batches of 128
    # in a scan of length 2 (and the 44 left vmapped at once), not a scan over 300 products.
    x = {"a": jnp.asarray(np.random.default_rng(3).normal(size=(3, 100)), jnp.float32)}

    def quartic(p):
        return jnp.sum(p["a"] ** 4)

    jaxpr = jax.make_jaxpr(lambda p: gradtx.hessian_diag(quartic, p))(x).jaxpr
    assert [e.params["length"] for e in jaxpr.eqns if e.primitive.name == "scan"] == [2]
    diagonal = jax.jit(lambda p: gradtx.hessian_diag(quartic, p))(x)
    np.testing.assert_allclose(diagonal["a"], 12 * np.asarray(x["a"]) ** 2, rtol=1e-5)


# -- estimators -------------------------------------------------------------------------


def test_hutchinson_draws_each_leafs_probe_in_its_own_dtype():
    # A float32 and a bfloat16 leaf, coupled: z * (H z) for the probes key 3 draws (optax's
    # stream), each probe in its leaf's dtype (jax.jvp refuses a float32 tangent for a
    # bfloat16 leaf). Every number here is exact in bfloat16.
    params = {"a": jnp.asarray([1.0, -2.0, 0.5]), "h": jnp.asarray([1.0, 2.0], jnp.bfloat16)}
    ca, ch = np.asarray([2.0, 4.0, 6.0]), np.asarray([8.0, 10.0])

    def loss(p):
        h = p["h"].astype(jnp.float32)
        return 0.5 * jnp.sum(ca * p["a"] ** 2) + 0.5 * jnp.sum(ch * h**2) + p["a"][0] * h[0]

    tx = gradtx.hutchinson_estimator_diag_hessian(3)
    estimate, _ = jax.jit(lambda s: tx.update(params, s, params, obj_fn=loss))(tx.init(params))
    [(za, zh)] = _probe_draws(jax.random.key(3), [(3,), (2,)], 1)
    expected_a, expected_h = ca.copy(), ch.copy()
    expected_a[0] += za[0] * zh[0]  # the coupling's off-diagonal term
    expected_h[0] += za[0] * zh[0]
    assert estimate["a"].dtype == jnp.float32 and estimate["h"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(estimate["a"], expected_a)
    np.testing.assert_array_equal(np.asarray(estimate["h"], np.float64), expected_h)


@pytest.mark.parametrize("kind", ["hutchinson", "gauss_newton_bartlett"])
def test_an_estimator_without_params_is_refused_naming_it(kind):
    tx = getattr(gradtx, f"{kind}_estimator_diag_hessian")()
    params = {"w": jnp.ones(2)}
    message = f"{kind}_estimator_diag_hessian needs the params: call update(updates, state, params)"
    with raises_whole(ValueError, message):
        tx.update(params, tx.init(params), obj_fn=lambda p: jnp.sum(p["w"] ** 2))


def test_the_missing_objective_message_says_what_to_pass_and_how():
    tx = gradtx.hutchinson_estimator_diag_hessian()
    params = {"w": jnp.ones(2)}
    message = (
        "hutchinson_estimator_diag_hessian.update needs the objective as the keyword argument "
        "obj_fn= (or value_fn=), a function of the params alone that returns the loss: call "
        "update(updates, state, params, obj_fn=lambda p: loss(p, batch))"
    )
    with raises_whole(ValueError, message):
        tx.update(params, tx.init(params), params)


def test_the_gauss_newton_bartlett_messages_say_what_to_pass_and_why():
    tx = gradtx.gauss_newton_bartlett_estimator_diag_hessian()
    params = {"w": jnp.ones(2)}
    missing = (
        "gauss_newton_bartlett_estimator_diag_hessian.update needs the keyword argument "
        "sampled_loss_fn=, a function of (params, key) that returns the per-example losses of "
        "the batch with labels sampled from the model's own softmax (see its docstring): call "
        "update(grads, state, params, sampled_loss_fn=sampled_loss_fn)"
    )
    with raises_whole(ValueError, missing):
        tx.update(params, tx.init(params), params)
    scalar = (
        "gauss_newton_bartlett_estimator_diag_hessian.update: sampled_loss_fn returned a "
        "scalar; it must return the per-example (or per-token) losses, shape (B, ...), so that "
        "B is known"
    )
    with raises_whole(ValueError, scalar):
        tx.update(params, tx.init(params), params, sampled_loss_fn=lambda p, k: jnp.sum(p["w"]))


def test_gauss_newton_bartlett_of_float32_leaves_under_x64_is_float32_arithmetic(x64):
    # The rule B * g^ * g^ in the leaf's compute dtype: float32 for float32 leaves, also
    # under x64, where a float64 product (rounded once at the end) gives other bits.
    params = _softmax_params(jnp.float32)
    tx = gradtx.gauss_newton_bartlett_estimator_diag_hessian(11)
    update = jax.jit(lambda s: tx.update(params, s, params, sampled_loss_fn=_sampled_loss))
    estimate, _ = update(tx.init(params))
    _, draw = jax.random.split(jax.random.key(11))
    g = jax.jit(jax.grad(lambda p: jnp.mean(_sampled_loss(p, draw))))(params)
    batch = len(LOGIT_X)
    differs = False
    for name, leaf in g.items():
        leaf = np.asarray(leaf)
        assert leaf.dtype == np.float32 and estimate[name].dtype == jnp.float32
        expected = np.float32(batch) * leaf * leaf  # float32 throughout, left to right
        np.testing.assert_array_equal(np.asarray(estimate[name]), expected)
        in_float64 = (batch * leaf.astype(np.float64) * leaf).astype(np.float32)
        differs |= not np.array_equal(in_float64, expected)
    assert differs  # the float64 route would be told apart


def test_gauss_newton_bartlett_keeps_bfloat16_leaves_bfloat16():
    params = _softmax_params(jnp.bfloat16)
    x = jnp.asarray(LOGIT_X, jnp.bfloat16)

    def sampled_loss_fn(p, key):  # _sampled_loss in bfloat16
        logits = x @ p["W"] + p["b"]
        labels = jax.random.categorical(key, jax.lax.stop_gradient(logits))
        return optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels)

    tx = gradtx.gauss_newton_bartlett_estimator_diag_hessian(2)
    update = jax.jit(lambda s: tx.update(params, s, params, sampled_loss_fn=sampled_loss_fn))
    estimate, _ = update(tx.init(params))
    _, draw = jax.random.split(jax.random.key(2))
    g = jax.jit(jax.grad(lambda p: jnp.mean(sampled_loss_fn(p, draw))))(params)
    for name, leaf in g.items():
        assert leaf.dtype == estimate[name].dtype == jnp.bfloat16
        expected = np.float32(len(LOGIT_X)) * np.asarray(leaf, np.float32) ** 2
        np.testing.assert_array_equal(estimate[name], expected.astype(jnp.bfloat16))


# -- Sophia -----------------------------------------------------------------------------


def _steps_at(tx, params, loss, steps, *, traced=False):
    """tx's updates over ``steps`` jitted steps at fixed params (gradients of ``loss``), and
    its last state.

    ``traced``: the transform passed to jit as an argument (its leaves traced), else closed over.
    """

    def update(tx, state):
        return tx.update(jax.grad(loss)(params), state, params, obj_fn=loss)

    step = jax.jit(update) if traced else jax.jit(lambda state: update(tx, state))
    state, out = tx.init(params), []
    for _ in range(steps):
        updates, state = step(tx, state) if traced else step(state)
        out.append(updates)
    return out, state


def test_scale_by_sophias_defaults_are_optaxs():
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(optax.contrib.sophia).parameters.items()
        if name not in {"learning_rate", "weight_decay", "weight_decay_mask"}
    }
    fields = gradtx.scale_by_sophia().hyperparams()
    estimator = fields.pop("hessian_diagonal_fn")
    assert estimator == gradtx.hutchinson_estimator_diag_hessian()  # key 0, as optax
    defaults.pop("hessian_diagonal_fn")
    assert fields == defaults


def test_sophia_of_float32_leaves_under_x64_has_optaxs_bits(x64):
    # optax's numbers are weakly typed: the step of a float32 leaf is float32 arithmetic,
    # also under x64. gamma and eps far from float32 numbers: a float64 one gives other bits.
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=16), jnp.float32)}
    c = jnp.asarray(rng.uniform(0.5, 3.0, size=16), jnp.float32)

    def loss(p):
        return jnp.sum(c * p["w"] ** 2) + 0.1 * jnp.sum(p["w"] ** 3)

    kwargs = {"gamma": 0.09, "eps": 0.21, "clip_threshold": None, "update_interval": 1, "b2": 0.5}
    key = jax.random.PRNGKey(4)
    ours, _ = _steps_at(
        gradtx.scale_by_sophia(
            **kwargs, hessian_diagonal_fn=gradtx.hutchinson_estimator_diag_hessian(key)
        ),
        params,
        loss,
        4,
    )
    theirs, _ = _steps_at(
        optax_scale_by_sophia(
            **kwargs, hessian_diagonal_fn=optax.contrib.hutchinson_estimator_diag_hessian(key)
        ),
        params,
        loss,
        4,
    )
    for got, expected in zip(ours, theirs):
        assert got["w"].dtype == jnp.float32
        np.testing.assert_array_equal(got["w"], expected["w"])


def test_sophia_keeps_bfloat16_updates_and_a_mu_dtype_momentum():
    params = {"w": jnp.asarray([1.0, -2.0, 0.5, 3.0], jnp.bfloat16)}

    def loss(p):
        return jnp.sum(jnp.asarray([1.0, 2.0, 3.0, 4.0]) * p["w"].astype(jnp.float32) ** 2)

    updates, _ = _steps_at(gradtx.scale_by_sophia(update_interval=1), params, loss, 2)
    assert all(u["w"].dtype == jnp.bfloat16 for u in updates)
    f32 = {"w": params["w"].astype(jnp.float32)}
    tx = gradtx.scale_by_sophia(mu_dtype=jnp.bfloat16, update_interval=1)
    theirs = optax_scale_by_sophia(mu_dtype=jnp.bfloat16, update_interval=1)
    assert tx.init(f32).mu["w"].dtype == theirs.init(f32).mu["w"].dtype == jnp.bfloat16
    _, state = _steps_at(tx, f32, loss, 2)
    assert state.mu["w"].dtype == jnp.bfloat16 and state.nu["w"].dtype == jnp.float32


def test_sophia_with_an_optax_estimator_is_traced_and_inits_it_with_the_params():
    # An optax estimator whose state is shaped like the params (an EMA of Hutchinson's
    # estimates): wrapped, so the transform is a pytree of numbers that jit takes as an
    # argument, and its init given the params. Against optax's scale_by_sophia around it.
    params = {"w": jnp.asarray([1.0, -2.0, 0.5]), "b": jnp.asarray(0.3)}

    def loss(p):
        return jnp.sum(jnp.asarray([1.0, 3.0, 2.0]) * p["w"] ** 2) + p["b"] ** 2 * p["w"][0]

    def estimator():
        return optax.chain(
            optax.contrib.hutchinson_estimator_diag_hessian(jax.random.PRNGKey(1)),
            optax.ema(0.5, debias=False),
        )

    kwargs = {"update_interval": 2, "b2": 0.0, "gamma": 1.0, "clip_threshold": 10.0}
    ours, state = _steps_at(
        gradtx.scale_by_sophia(**kwargs, hessian_diagonal_fn=estimator()),
        params,
        loss,
        5,
        traced=True,
    )
    theirs, expected_state = _steps_at(
        optax_scale_by_sophia(**kwargs, hessian_diagonal_fn=estimator()), params, loss, 5
    )
    for got, expected in zip(ours, theirs):
        for name in params:
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-6)
    assert jax.tree.structure(state.hessian_fn_state) == jax.tree.structure(
        expected_state.hessian_fn_state
    )
    assert np.abs(np.asarray(ours[-1]["w"])).max() < 10.0  # the curvature is in use


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"eps": -1e-8}, "sophia(eps=-1e-08): eps must be in [0, inf)"),
        (
            {"print_win_rate_every_n_steps": 2.5},
            "sophia(print_win_rate_every_n_steps=2.5): print_win_rate_every_n_steps must be a "
            "whole number",
        ),
        (
            {"print_win_rate_every_n_steps": -1},
            "sophia(print_win_rate_every_n_steps=-1): print_win_rate_every_n_steps must be in "
            "[0, inf)",
        ),
        (
            {"verbose": True},
            "sophia(print_win_rate_every_n_steps=0): verbose=True prints every n >= 1 steps",
        ),
    ],
    ids=["negative_eps", "fractional_n", "negative_n", "verbose_without_n"],
)
def test_sophias_refusals_name_the_argument_and_the_bound(kwargs, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        gradtx.sophia(0.1, **kwargs)


def _win_rate_lines(capfd, build, params, loss, steps, **kwargs):
    """What gradtx's and optax's scale_by_sophia(**kwargs, verbose=True) print over ``steps``."""
    printed = []
    for scaling in (gradtx.scale_by_sophia, optax_scale_by_sophia):
        tx = scaling(**kwargs, verbose=True, hessian_diagonal_fn=build())
        _steps_at(tx, params, loss, steps)
        jax.effects_barrier()
        printed.append(capfd.readouterr().out.splitlines())
    return printed


def test_sophia_prints_optaxs_win_rates_at_optaxs_steps(capfd):
    # The share of coordinates the clip leaves alone, at steps n, 2n, ...: the share changes
    # from step to step, so a line at another step, or another number, shows.
    params = {"w": jnp.asarray([1.0, -2.0, 0.5, 3.0, -0.25])}

    def loss(p):
        return jnp.sum(jnp.asarray([1.0, 2.0, 3.0, 4.0, 0.5]) * p["w"] ** 2)

    def estimator():
        return optax.contrib.hutchinson_estimator_diag_hessian(jax.random.PRNGKey(0))

    kwargs = {"update_interval": 1, "gamma": 0.3, "b2": 0.5, "print_win_rate_every_n_steps": 2}
    ours, theirs = _win_rate_lines(capfd, estimator, params, loss, 6, **kwargs)
    assert ours == theirs
    assert len(ours) == 3 and len(set(ours)) > 1
    assert all(line.startswith("Sophia optimizer win rate: ") for line in ours)
    # One coordinate: the share is 0 or 1 (the divisor is the one coordinate).
    one, one_theirs = _win_rate_lines(
        capfd,
        estimator,
        {"w": jnp.asarray(0.5)},
        lambda p: 2.0 * p["w"] ** 2,
        2,
        update_interval=1,
        gamma=1.0,
        b2=0.0,
        print_win_rate_every_n_steps=1,
    )
    assert one == one_theirs == ["Sophia optimizer win rate: 0.0", "Sophia optimizer win rate: 1.0"]


def test_a_step_exactly_at_the_clip_threshold_is_clipped_not_kept(capfd, x64):
    # b1 = 0 and eps = 1 make the first step the gradient itself; |u| = c (c's float32
    # number, c = 0.21 lying above it) counts as clipped, as optax counts in float32.
    c = np.float32(0.21)
    params = {"w": jnp.asarray([c, -c, 0.1, 0.5], jnp.float32)}

    def loss(p):  # the gradient is the params
        return 0.5 * jnp.sum(p["w"] ** 2)

    def estimator():
        return optax.contrib.hutchinson_estimator_diag_hessian(jax.random.PRNGKey(0))

    kwargs = {"b1": 0.0, "eps": 1.0, "clip_threshold": 0.21, "print_win_rate_every_n_steps": 1}
    ours, theirs = _win_rate_lines(capfd, estimator, params, loss, 1, **kwargs)
    assert ours == theirs == ["Sophia optimizer win rate: 0.25"]


# -- AdaHessian -------------------------------------------------------------------------


def test_adahessian_averages_blocks_of_two_as_the_paper(x64):
    # test_curvature.py's problem and oracle (Eq. 9 on the rank >= 2 leaves) with b = 2.
    got, x0, probes = _adahessian_run(_native(learning_rate=0.1, block_size=2), 1, seed=5, steps=3)
    expected = _adahessian_oracle(x0, probes, 3, 0.1, block_size=2)
    unaveraged = _adahessian_oracle(x0, probes, 3, 0.1)
    assert np.abs(expected[-1] - unaveraged[-1]).max() > 1e-3  # the blocks matter
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_adahessians_block_means_of_a_float32_leaf_under_x64_are_float32(x64):
    # v_1 = (1 - b2) * D^s**2 in the leaf's float32, D^s the pair means of the estimate that
    # the same key draws (z * H z), also under x64: a float64 D^s gives other bits.
    params = {"w": jnp.asarray(np.random.default_rng(9).normal(size=(3, 4)), jnp.float32)}
    scales = jnp.asarray(np.linspace(0.5, 3.0, 12).reshape(3, 4), jnp.float32)

    def loss(p):
        return jnp.sum(scales * p["w"] ** 2) + jnp.sum(p["w"][:, 0] * p["w"][:, 1] ** 2)

    estimator = gradtx.hutchinson_estimator_diag_hessian(7)
    tx = gradtx.scale_by_adahessian(block_size=2, hessian_diagonal_fn=estimator)
    _, state = jax.jit(lambda s: tx.update(jax.grad(loss)(params), s, params, obj_fn=loss))(
        tx.init(params)
    )
    d, _ = jax.jit(lambda s: estimator.update(params, s, params, obj_fn=loss))(
        estimator.init(params)
    )
    pairs = np.asarray(d["w"]).reshape(-1, 2)
    means = np.repeat((pairs[:, 0] + pairs[:, 1]) / np.float32(2), 2).reshape(3, 4)
    expected = np.float32(1 - 0.999) * (means * means)
    assert state.nu["w"].dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(state.nu["w"]), expected)
    in_float64 = ((1 - 0.999) * means.astype(np.float64) ** 2).astype(np.float32)
    assert not np.array_equal(in_float64, expected)  # the float64 route would be told apart


def test_scale_by_adahessian_on_its_defaults_is_the_papers_algorithm(x64):
    # The oracle's defaults are the paper's: b1 0.9, b2 0.999, eps 1e-4, k = 1, b = 1, D at
    # every step.
    def build(key):
        estimator = gradtx.hutchinson_estimator_diag_hessian(key)
        return gradtx.chain(
            gradtx.scale_by_adahessian(hessian_diagonal_fn=estimator),
            gradtx.scale_by_learning_rate(0.1),
        )

    got, x0, probes = _adahessian_run(build, 1, seed=6, steps=3)
    np.testing.assert_allclose(got, _adahessian_oracle(x0, probes, 3, 0.1), rtol=1e-10, atol=1e-12)


def test_adahessian_of_float32_leaves_gives_the_same_bits_with_and_without_x64():
    # The arithmetic of a float32 leaf is float32 whatever x64 says. b1 = b2 = 1/2 are exact
    # in float32 (so are the bias corrections); k = 0.7 and eps = 0.1 are not, and a float64
    # eps would also skip the rounding of the sum. The Hessian is diagonal, so z * H z is
    # exact whatever the probes (x64 draws others).
    rng = np.random.default_rng(10)
    start, scales = rng.normal(size=(2, 6)), rng.uniform(0.1, 30.0, size=6)

    def run():
        params = {"w": jnp.asarray(start, jnp.float32)}
        c = jnp.asarray(scales, jnp.float32)

        def loss(p):
            return jnp.sum(c * p["w"] ** 2 + p["w"] ** 4 / 4)

        tx = gradtx.scale_by_adahessian(
            b1=0.5,
            b2=0.5,
            eps=0.1,
            hessian_power=0.7,
            hessian_diagonal_fn=gradtx.hutchinson_estimator_diag_hessian(8),
        )
        updates, _ = _steps_at(tx, params, loss, 3)
        assert all(u["w"].dtype == jnp.float32 for u in updates)
        return np.stack([np.asarray(u["w"]) for u in updates])

    without = run()
    with jax.enable_x64(True):
        under_x64 = run()
    np.testing.assert_array_equal(under_x64, without)


def test_adahessian_inits_an_optax_estimator_with_the_params():
    # An optax estimator whose state is shaped like the params (an EMA of Hutchinson's
    # estimates, e_t = (e_{t-1} + z * H z) / 2), against the docstring's rule in NumPy.
    a = np.asarray([[2.0, 0.5], [0.5, 1.0]])
    params = {"w": jnp.asarray([1.0, -1.0])}

    def loss(p):
        return 0.5 * p["w"] @ jnp.asarray(a, jnp.float32) @ p["w"]

    estimator = optax.chain(
        optax.contrib.hutchinson_estimator_diag_hessian(jax.random.PRNGKey(6)),
        optax.ema(0.5, debias=False),
    )
    tx = gradtx.scale_by_adahessian(b1=0.5, b2=0.5, hessian_diagonal_fn=estimator)
    updates, _ = _steps_at(tx, params, loss, 3)
    x = np.asarray([1.0, -1.0])
    e, m, v = np.zeros(2), np.zeros(2), np.zeros(2)
    for t, [z] in enumerate(_probe_draws(jax.random.PRNGKey(6), [(2,)], 3), start=1):
        e = 0.5 * e + 0.5 * z * (a @ z)
        v = 0.5 * v + 0.5 * e**2
        m = 0.5 * m + 0.5 * (a @ x)
        expected = (m / (1 - 0.5**t)) / (np.sqrt(v / (1 - 0.5**t)) + 1e-4)
        np.testing.assert_allclose(updates[t - 1]["w"], expected, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"b1": -0.1}, "adahessian(b1=-0.1): b1 must be in [0, 1)"),
        ({"b2": -0.1}, "adahessian(b2=-0.1): b2 must be in [0, 1)"),
        ({"eps": -1e-4}, "adahessian(eps=-0.0001): eps must be in [0, inf)"),
        ({"block_size": 2.5}, "adahessian(block_size=2.5): block_size must be a whole number"),
    ],
    ids=["negative_b1", "negative_b2", "negative_eps", "fractional_block_size"],
)
def test_adahessians_refusals_name_the_argument_and_the_bound(kwargs, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        gradtx.adahessian(**kwargs)
