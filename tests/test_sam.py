"""SAM against optax.contrib.sam step by step; ASAM against a NumPy oracle of the paper."""

from __future__ import annotations

import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from problems import make_params, wavy_loss
import pytest

import gradtx

STEPS = 31  # calls to update: 15 cycles of 2 (10 of 3) and one more


def _loss(params, i=0):
    """The wavy loss, shifted by the adversarial step's index (opaque mode's ``grad_fn(p, i)``)."""
    return wavy_loss(params) + 0.1 * i * sum(jnp.sum(x) for x in jax.tree.leaves(params))


_grad = jax.grad(_loss)


def _summary(state):
    """What both libraries' SAM states hold, by name (their optimizers nest differently)."""
    return {
        "steps_since_sync": state.steps_since_sync,
        "cache": state.cache,
        "count": state.opt_state[0].count,
        "mu": gradtx.tree_get(state.opt_state, "mu"),
        "nu": gradtx.tree_get(state.opt_state, "nu"),
        "trace": gradtx.tree_get(state.adv_state, "trace"),
    }


def _trajectories(ours, theirs, params, opaque):
    """Params and states after each of STEPS calls, for gradtx's and optax's SAM, one jit."""
    extra = {"grad_fn": _grad} if opaque else {}

    def step(carry, _):
        (p_ours, s_ours), (p_theirs, s_theirs) = carry
        u_ours, s_ours = ours.update(_grad(p_ours), s_ours, p_ours, **extra)
        u_theirs, s_theirs = theirs.update(_grad(p_theirs), s_theirs, p_theirs, **extra)
        p_ours = gradtx.apply_updates(p_ours, u_ours)
        p_theirs = optax.apply_updates(p_theirs, u_theirs)
        carry = (p_ours, s_ours), (p_theirs, s_theirs)
        return carry, ((p_ours, _summary(s_ours)), (p_theirs, _summary(s_theirs)))

    start = (params, ours.init(params)), (params, theirs.init(params))
    _, (mine, reference) = jax.jit(lambda c: jax.lax.scan(step, c, None, length=STEPS))(start)
    return mine, reference


def _sam_pair(opaque, sync_period, reset_state):
    """gradtx's and optax's SAM around the same outer and adversarial optimizers."""
    kwargs = dict(sync_period=sync_period, reset_state=reset_state, opaque_mode=opaque)
    # Both optimizers stateful: Adam outside, normalised SGD with momentum inside (its
    # momentum survives the cycles only without reset_state).
    ours = gradtx.sam(
        gradtx.adam(0.05),
        gradtx.chain(gradtx.normalize(), gradtx.sgd(0.1, momentum=0.9)),
        **kwargs,
    )
    theirs = optax.contrib.sam(
        optax.adam(0.05),
        optax.chain(optax.contrib.normalize(), optax.sgd(0.1, momentum=0.9)),
        **kwargs,
    )
    return ours, theirs


def _compare_with_optax(opaque, sync_period, reset_state, dtype, tol):
    ours, theirs = _sam_pair(opaque, sync_period, reset_state)
    mine, reference = _trajectories(ours, theirs, make_params(dtype), opaque)
    chex.assert_trees_all_close(mine, reference, rtol=tol, atol=tol)
    params, summary = mine
    chex.assert_trees_all_equal_dtypes(jax.tree.map(lambda x: x[0], params), make_params(dtype))
    # The comparison saw every phase: adversarial steps and outer steps, moving params.
    assert not np.allclose(params["w"][0], params["w"][-1])
    assert int(jnp.max(summary["count"])) == (STEPS if opaque else STEPS // sync_period)
    # The adversarial momentum is kept from cycle to cycle only without reset_state.
    moved = [bool(jnp.any(t != 0)) for t in summary["trace"]["w"]]
    assert all(moved) != reset_state


CASES = [
    pytest.param(opaque, sync, reset, id=f"{'opaque' if opaque else 'transparent'}-{sync}-{reset}")
    for opaque in (False, True)
    for sync in (2, 3)
    for reset in (True, False)
]


@pytest.mark.parametrize(("opaque", "sync_period", "reset_state"), CASES)
def test_sam_matches_optax_in_float32(opaque, sync_period, reset_state):
    _compare_with_optax(opaque, sync_period, reset_state, jnp.float32, 1e-6)


@pytest.mark.parametrize(("opaque", "sync_period", "reset_state"), CASES)
def test_sam_matches_optax_in_float64(opaque, sync_period, reset_state, x64):
    _compare_with_optax(opaque, sync_period, reset_state, jnp.float64, 1e-10)


def test_batch_axis_name_averages_the_adversarial_gradients_across_the_batch_axis():
    def run(make, chain, normalize, sgd, apply):
        tx = make(sgd(0.1), chain(normalize(), sgd(0.05)), 3, True, True, "batch")
        params = make_params()

        def one_replica(shift):
            grad_fn = jax.grad(lambda p, i: _loss(p, i) + shift * jnp.sum(p["w"]))
            updates, _ = tx.update(grad_fn(params, 0), tx.init(params), params, grad_fn=grad_fn)
            return apply(params, updates)

        return jax.jit(jax.vmap(one_replica, axis_name="batch"))(jnp.asarray([0.0, 1.0]))

    ours = run(gradtx.sam, gradtx.chain, gradtx.normalize, gradtx.sgd, gradtx.apply_updates)
    theirs = run(
        optax.contrib.sam, optax.chain, optax.contrib.normalize, optax.sgd, optax.apply_updates
    )
    chex.assert_trees_all_close(ours, theirs, rtol=1e-6, atol=1e-6)
    # The outer gradient is the replicas' mean: both replicas take the same step.
    chex.assert_trees_all_close(
        jax.tree.map(lambda x: x[0], ours), jax.tree.map(lambda x: x[1], ours), rtol=1e-6
    )


@pytest.mark.parametrize("opaque", [False, True], ids=["transparent", "opaque"])
def test_sync_period_1_is_the_plain_outer_optimizer(opaque):
    # No adversarial step. optax's transparent mode steps from the previous call's
    # params here (its cache lags a call behind); gradtx's outer step starts from these.
    outer = gradtx.adam(0.05)
    tx = gradtx.sam(outer, gradtx.chain(gradtx.normalize(), gradtx.sgd(0.1)), 1, opaque_mode=opaque)
    extra = {"grad_fn": _grad} if opaque else {}

    @jax.jit
    def run(params):
        state, plain_state, plain = tx.init(params), outer.init(params), params
        for _ in range(4):
            updates, state = tx.update(_grad(params), state, params, **extra)
            params = gradtx.apply_updates(params, updates)
            updates, plain_state = outer.update(_grad(plain), plain_state, plain)
            plain = gradtx.apply_updates(plain, updates)
        return params, plain

    ours, plain = run(make_params())
    chex.assert_trees_all_close(ours, plain, rtol=1e-6, atol=1e-7)


def test_signature_and_defaults_are_optaxs():
    ours = inspect.signature(gradtx.sam).parameters
    theirs = inspect.signature(optax.contrib.sam).parameters
    assert [(p.name, p.default) for p in ours.values()] == [
        (p.name, p.default) for p in theirs.values()
    ]
    tx = gradtx.asam(gradtx.sgd(0.1))
    assert (tx.sync_period, tx.reset_state, tx.opaque_mode) == (2, True, False)
    assert gradtx.tree_get(tx.adv_optimizer, "eta") == 0.01  # the authors' defaults
    assert gradtx.tree_get(tx.adv_optimizer, "learning_rate") == 0.5


# -- normalize ---------------------------------------------------------------------------


def test_normalize_matches_optax_and_gives_zero_for_a_zero_gradient():
    grads = jax.grad(wavy_loss)(make_params())
    tx, theirs = gradtx.normalize(), optax.contrib.normalize()
    chex.assert_trees_all_close(
        tx.update(grads, tx.init(grads))[0], theirs.update(grads, theirs.init(grads))[0], rtol=1e-6
    )
    zeros = jax.tree.map(jnp.zeros_like, grads)
    chex.assert_trees_all_equal(tx.update(zeros, tx.init(zeros))[0], zeros)  # optax: NaN


@pytest.mark.parametrize("scale", [1.0, 1e-25, 1e25])
def test_normalize_gives_a_unit_vector_where_the_squares_underflow_or_overflow(scale):
    # float32 squares of 1e-25 underflow to 0 and of 1e25 overflow (optax: inf and 0);
    # the norm is taken relative to a power of two, so ordinary gradients keep optax's bits.
    grads = {"a": jnp.array([3.0, -1.0]) * scale, "b": jnp.array([[2.0], [0.5]]) * scale}
    tx, theirs = gradtx.normalize(), optax.contrib.normalize()
    out = tx.update(grads, tx.init(grads))[0]
    wide = jax.tree.map(lambda g: np.asarray(g, np.float64), grads)
    norm = np.sqrt(sum(np.sum(g**2) for g in jax.tree.leaves(wide)))
    want = jax.tree.map(lambda g: g / norm, wide)
    chex.assert_trees_all_close(out, want, rtol=2e-7)
    if scale == 1.0:
        chex.assert_trees_all_equal(out, theirs.update(grads, theirs.init(grads))[0])


def test_normalize_of_a_gradient_with_a_nan_is_nan_everywhere():
    grads = {"a": jnp.array([jnp.nan, 4.0]), "b": jnp.array([3.0])}
    tx = gradtx.normalize()
    out = tx.update(grads, tx.init(grads))[0]
    assert all(np.isnan(leaf).all() for leaf in jax.tree.leaves(out))  # as optax's


def test_scale_by_asam_gives_its_rule_for_a_gradient_whose_squares_underflow():
    params = {"w": jnp.array([1.0, -2.0])}
    grads = {"w": jnp.array([3e-22, 4e-22])}
    tx = gradtx.scale_by_asam(0.01)
    t = np.abs(np.asarray(params["w"], np.float64)) + 0.01
    g = np.asarray(grads["w"], np.float64)
    want = t**2 * g / np.linalg.norm(t * g)
    np.testing.assert_allclose(tx.update(grads, tx.init(params), params)[0]["w"], want, rtol=1e-6)


# -- ASAM against the paper's Algorithm 1 --------------------------------------------------


def _oracle_grad(x):
    """The gradient of ``wavy_loss`` (x^2 + 0.3 sin 3x per element), in NumPy."""
    return 2 * x + 0.9 * np.cos(3 * x)


def _asam_oracle(w, cycles, lr, weight_decay, rho, eta, mask):
    """Kwon et al.'s Algorithm 1 in float64: the perturbed and the new weights of each cycle.

    eps = rho T^2 g / ||T g|| with T = |w| + eta (1 outside the mask);
    w <- w - lr (g(w + eps) + weight_decay w).
    """
    perturbed, outer = [], []
    for _ in range(cycles):
        g = jax.tree.map(_oracle_grad, w)
        t = jax.tree.map(lambda x, on: np.abs(x) + eta if on else np.ones_like(x), w, mask)
        norm = np.sqrt(sum(np.sum((ti * gi) ** 2) for ti, gi in zip(*map(jax.tree.leaves, (t, g)))))
        eps = jax.tree.map(lambda ti, gi, norm=norm: rho * ti**2 * gi / norm, t, g)
        adversarial = jax.tree.map(np.add, w, eps)
        g_adv = jax.tree.map(_oracle_grad, adversarial)
        w = jax.tree.map(lambda x, ga: x - lr * (ga + weight_decay * x), w, g_adv)
        perturbed.append(adversarial)
        outer.append(w)
    return perturbed, outer


EVERY_LEAF = {"w": True, "b": True, "head": {"s": True}}
BIASES_LEFT_OUT = {"w": True, "b": False, "head": {"s": True}}


# A mask may be a prefix of the params' structure ("head" for all its leaves).
ASAM_MASKS = [(None, EVERY_LEAF), ({"w": True, "b": False, "head": True}, BIASES_LEFT_OUT)]


@pytest.mark.parametrize(("mask", "expanded"), ASAM_MASKS, ids=["no_mask", "mask"])
@pytest.mark.parametrize("opaque", [False, True], ids=["transparent", "opaque"])
def test_asam_matches_the_papers_algorithm(opaque, mask, expanded, x64):
    history, perturbed, expected = _asam_paths(opaque, mask, expanded)
    if not opaque:
        chex.assert_trees_all_close(
            jax.tree.map(lambda x: x[0::2], history), _stack(perturbed), rtol=1e-10, atol=1e-10
        )
        history = jax.tree.map(lambda x: x[1::2], history)
    chex.assert_trees_all_close(history, _stack(expected), rtol=1e-10, atol=1e-10)


def _asam_paths(opaque, mask, expanded):
    """gradtx.asam's params after each call, and the oracle's perturbed and new weights.

    Transparent mode makes two calls a cycle (the ascent, then the outer step); called
    under x64.
    """
    lr, weight_decay, rho, eta, cycles = 0.05, 0.01, 0.4, 0.02, 16
    outer = gradtx.chain(gradtx.add_decayed_weights(weight_decay), gradtx.sgd(lr))
    tx = gradtx.asam(outer, rho=rho, eta=eta, opaque_mode=opaque, mask=mask)
    params = make_params(jnp.float64)
    perturbed, expected = _asam_oracle(
        jax.tree.map(np.asarray, params),
        cycles,
        lr,
        weight_decay,
        rho,
        eta,
        expanded,
    )
    grad = jax.grad(wavy_loss)
    extra = {"grad_fn": lambda p, i: grad(p)} if opaque else {}

    def call(carry, _):
        params, state = carry
        updates, state = tx.update(grad(params), state, params, **extra)
        params = gradtx.apply_updates(params, updates)
        return (params, state), params

    calls = cycles if opaque else 2 * cycles  # transparent: the ascent, then the outer step
    run = jax.jit(lambda p: jax.lax.scan(call, (p, tx.init(p)), None, length=calls)[1])
    return run(params), perturbed, expected


def _stack(trees):
    return jax.tree.map(lambda *xs: np.stack(xs), *trees)


def test_asam_perturbation_is_invariant_to_rescaling_a_layer():
    # The paper's point: with eta = 0, scaling w by c scales the perturbation by c too,
    # so that (w + eps) / c does not depend on c, for a loss that is invariant to the
    # rescaling, its gradient scaling by 1/c. SAM's perturbation does not scale.
    tx = gradtx.scale_by_asam(eta=0.0)
    w = {"w": jnp.asarray([0.5, -2.0, 1.5]), "b": jnp.asarray([0.3, 0.1])}
    g = {"w": jnp.asarray([1.0, 0.2, -0.7]), "b": jnp.asarray([-0.4, 0.9])}
    c = 3.0
    scaled_w = {"w": c * w["w"], "b": w["b"]}
    scaled_g = {"w": g["w"] / c, "b": g["b"]}
    eps = tx.update(g, tx.init(w), w)[0]
    scaled_eps = tx.update(scaled_g, tx.init(scaled_w), scaled_w)[0]
    chex.assert_trees_all_close(scaled_eps["w"], c * eps["w"], rtol=1e-6)
    chex.assert_trees_all_close(scaled_eps["b"], eps["b"], rtol=1e-6)


def test_scale_by_asam_gives_zero_where_t_g_is_zero():
    tx = gradtx.scale_by_asam(eta=0.0)
    w = {"w": jnp.zeros(3)}
    out = tx.update({"w": jnp.ones(3)}, tx.init(w), w)[0]
    chex.assert_trees_all_equal(out, {"w": jnp.zeros(3)})  # |w| g = 0: no ascent, not NaN


# -- bad input ---------------------------------------------------------------------------


def _adv():
    return gradtx.chain(gradtx.normalize(), gradtx.sgd(0.05))


def test_opaque_mode_without_grad_fn_names_the_argument_and_the_optimizer():
    tx = gradtx.sam(gradtx.sgd(0.1), _adv(), opaque_mode=True)
    params = make_params()
    with pytest.raises(ValueError, match=r"sam\(opaque_mode=True\): update needs .* grad_fn="):
        tx.update(jax.grad(wavy_loss)(params), tx.init(params), params)


def test_update_without_params_is_refused():
    tx = gradtx.sam(gradtx.sgd(0.1), _adv())
    params = make_params()
    with pytest.raises(ValueError, match=r"sam needs the params"):
        tx.update(jax.grad(wavy_loss)(params), tx.init(params))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: gradtx.sam(gradtx.sgd(0.1), _adv(), 0), r"^sam\(sync_period=0\): .*2147483647]"),
        # The count of steps since the last sync is int32 (it overflowed at the first update).
        (lambda: gradtx.sam(gradtx.sgd(0.1), _adv(), 2**31), r"sam\(sync_period=2147483648\): "),
        (lambda: gradtx.sam(gradtx.sgd(0.1), _adv(), 1.5), r"sam\(sync_period=1.5\): .*whole"),
        (lambda: gradtx.asam(gradtx.sgd(0.1), rho=-0.1), r"asam\(rho=-0.1\): rho must be"),
        (lambda: gradtx.asam(gradtx.sgd(0.1), eta=-1e-3), r"asam\(eta=-0.001\): eta must be"),
        (lambda: gradtx.asam(gradtx.sgd(0.1), rho=np.nan), r"asam\(rho=nan\): rho must be"),
        (lambda: gradtx.scale_by_asam(eta=-1.0), r"scale_by_asam\(eta=-1.0\): .*\[0, inf\)"),
    ],
    ids=[
        *["sync_period_0", "sync_period_2**31", "sync_period_fraction"],
        *["rho", "eta", "rho_nan", "scale_by_asam_eta"],
    ],
)
def test_bad_hyperparameters_are_refused_when_built(build, message):
    with pytest.raises(ValueError, match=message):
        build()
