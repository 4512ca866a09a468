"""Curvature: hvp, hessian_diag, the diagonal estimators, Sophia and AdaHessian.

- ``hvp`` against the dense Hessian (jax.hessian on the raveled params) at 1e-12 in
  float64; ``hessian_diag`` against its analytic value, across its batching boundary;
- Hutchinson's estimate equal to z * (H z) for the probes its seed draws (drawn here as
  optax documents: split, one key per leaf, Rademacher in float32) at 1e-10, equal to
  optax.contrib's, and unbiased (20,000 vmapped probes within 2% of the diagonal);
- the Gauss-Newton-Bartlett estimate equal to B g^2 from a NumPy softmax gradient;
- ``sophia`` equal to ``optax.contrib.sophia`` with the same keys over 60 steps (1e-6 in
  float32, 1e-10 in float64), Sophia-G equal to optax's Sophia around the same estimator;
- ``adahessian`` equal to a NumPy oracle written from the paper (Eqs. 9-11) and to
  pytorch-optimizer 4.1.0's ``AdaHessian``, whose probes are replaced by the same ones;
- bad input: a missing objective or params, integer leaves, invalid hyperparameters.
"""

from __future__ import annotations

import chex
import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx
from gradtx.compat.pytorch import adahessian as pytorch_adahessian

SHAPES = {"b": (4,), "k": (2, 2, 3), "s": (), "w": (3, 4)}  # jax.tree order: b, k, s, w


def _params(dtype=jnp.float64, seed=0):
    rng = np.random.default_rng(seed)
    return {name: jnp.asarray(rng.normal(size=shape), dtype) for name, shape in SHAPES.items()}


DATA = np.random.default_rng(1).normal(size=(5, 3))


def _wavy(params, data):
    """Nonconvex, with curvature coupling every leaf to the others."""
    h = jnp.tanh(data @ params["w"] + params["b"])
    coupling = jnp.sum(params["k"][0] * params["w"][:2, :3])
    return jnp.sum(h**2) * (1 + params["s"] ** 2) + jnp.sum(jnp.sin(params["k"])) + coupling


def _dense_hessian(fn, params):
    flat, unravel = ravel_pytree(params)
    return np.asarray(jax.hessian(lambda x: fn(unravel(x)))(flat))


def _flat(tree):
    return np.asarray(ravel_pytree(tree)[0], np.float64)


def _probe_draws(key, shapes, draws):
    """The probes a seed draws, as optax documents them: split, a key per leaf, +-1."""
    out = []
    for _ in range(draws):
        key, sub = jax.random.split(key)
        keys = jax.random.split(sub, len(shapes))
        leaves = [jax.random.rademacher(k, s, jnp.float32) for k, s in zip(keys, shapes)]
        out.append([np.asarray(z, np.float64) for z in leaves])
    return out


# -- exact products ---------------------------------------------------------------------


def test_hvp_equals_the_dense_hessian_times_v(x64):
    params, v = _params(), _params(seed=2)
    dense = _dense_hessian(lambda p: _wavy(p, DATA), params)
    assert np.abs(dense - np.diag(np.diag(dense))).max() > 0.1  # not diagonal
    expected = dense @ _flat(v)
    jitted = jax.jit(lambda p, v: gradtx.hvp(_wavy, p, v, DATA))(params, v)
    np.testing.assert_allclose(_flat(jitted), expected, rtol=1e-12, atol=1e-12)
    by_keyword = gradtx.hvp(_wavy, params, v, data=DATA)  # extra arguments as keywords too
    np.testing.assert_allclose(_flat(by_keyword), expected, rtol=1e-12, atol=1e-12)
    chex.assert_trees_all_equal_shapes_and_dtypes(jitted, params)


def test_hessian_diag_is_exact(x64):
    params = _params()
    dense = _dense_hessian(lambda p: _wavy(p, DATA), params)
    diagonal = gradtx.hessian_diag(_wavy, params, DATA)
    np.testing.assert_allclose(_flat(diagonal), np.diag(dense), rtol=1e-12, atol=1e-12)
    # 150 coordinates: one batch of 128 Hessian-vector products and a remainder.
    x = {"a": jnp.asarray(np.random.default_rng(3).normal(size=(10, 15)))}
    quartic = gradtx.hessian_diag(lambda p: jnp.sum(p["a"] ** 4) + jnp.sum(p["a"]) ** 2, x)
    np.testing.assert_allclose(quartic["a"], 12 * np.asarray(x["a"]) ** 2 + 2, rtol=1e-12)


# -- estimators -------------------------------------------------------------------------


def test_hutchinson_is_z_times_hz_for_its_probes_and_equals_optax(x64):
    params = _params()
    seed = jax.random.PRNGKey(5)
    dense = _dense_hessian(lambda p: _wavy(p, DATA), params)
    ours = gradtx.hutchinson_estimator_diag_hessian(seed)
    theirs = optax.contrib.hutchinson_estimator_diag_hessian(seed)

    def objective(p):
        return _wavy(p, DATA)

    step = jax.jit(lambda tx, s: tx.update(params, s, params, obj_fn=objective))
    ours_state, theirs_state = ours.init(params), theirs.init(params)
    for probes in _probe_draws(seed, list(SHAPES.values()), 3):
        z = np.concatenate([p.ravel() for p in probes])
        estimate, ours_state = step(ours, ours_state)
        np.testing.assert_allclose(_flat(estimate), z * (dense @ z), rtol=1e-10, atol=1e-12)
        reference, theirs_state = theirs.update(params, theirs_state, params, obj_fn=objective)
        np.testing.assert_allclose(_flat(estimate), _flat(reference), rtol=1e-12)
    # An int seed and a typed key draw what the raw key draws.
    for same in (5, jax.random.key(5)):
        tx = gradtx.hutchinson_estimator_diag_hessian(same)
        first = tx.update(params, tx.init(params), params, value_fn=objective)[0]
        expected = ours.update(params, ours.init(params), params, obj_fn=objective)[0]
        chex.assert_trees_all_close(first, expected, rtol=1e-12)


def test_hutchinson_is_unbiased():
    rng = np.random.default_rng(4)
    noise = rng.normal(size=(8, 8))
    a = np.diag(np.arange(1.0, 9.0)) + 0.2 * (noise + noise.T)  # known, far from diagonal
    params = {"b": jnp.zeros(2), "w": jnp.zeros((2, 3))}
    _, unravel = ravel_pytree(params)

    def quadratic(p):
        x = ravel_pytree(p)[0]
        return 0.5 * x @ jnp.asarray(a, jnp.float32) @ x

    params = unravel(jnp.asarray(rng.normal(size=8), jnp.float32))  # a Hessian's independent
    tx = gradtx.hutchinson_estimator_diag_hessian()
    keys = jax.random.split(jax.random.key(0), 20_000)
    estimates = jax.jit(
        jax.vmap(
            lambda k: tx.update(params, gradtx.HutchinsonState(k), params, obj_fn=quadratic)[0]
        )
    )(keys)
    flat = np.concatenate([np.asarray(estimates[n]).reshape(len(keys), -1) for n in ("b", "w")], 1)
    assert flat.std(0).min() > 0.3  # single probes are far off: the mean is what is tested
    np.testing.assert_allclose(flat.mean(0), np.diag(a), rtol=0.02)


LOGIT_X = np.random.default_rng(6).normal(size=(6, 3))


def _sampled_loss(params, key):
    logits = LOGIT_X @ params["W"] + params["b"]
    labels = jax.random.categorical(key, jax.lax.stop_gradient(logits))
    return optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels)


def _softmax_params(dtype=jnp.float64):
    rng = np.random.default_rng(7)
    return {
        "W": jnp.asarray(rng.normal(size=(3, 4)), dtype),
        "b": jnp.asarray(rng.normal(size=4), dtype),
    }


def test_gauss_newton_bartlett_is_batch_times_squared_sampled_gradient(x64):
    params = _softmax_params()
    seed = jax.random.PRNGKey(11)
    tx = gradtx.gauss_newton_bartlett_estimator_diag_hessian(seed)
    step = jax.jit(lambda s: tx.update(params, s, params, sampled_loss_fn=_sampled_loss))
    state, key = tx.init(params), seed
    logits = LOGIT_X @ np.asarray(params["W"]) + np.asarray(params["b"])
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    batch = len(LOGIT_X)
    for _ in range(2):
        key, sub = jax.random.split(key)
        labels = np.asarray(jax.random.categorical(sub, jnp.asarray(logits)))
        dlogits = (softmax - np.eye(4)[labels]) / batch  # d mean(CE) / d logits
        expected = {"W": batch * (LOGIT_X.T @ dlogits) ** 2, "b": batch * dlogits.sum(0) ** 2}
        estimate, state = step(state)
        for name in expected:
            np.testing.assert_allclose(estimate[name], expected[name], rtol=1e-10)


# -- Sophia -----------------------------------------------------------------------------

SOPHIA_CASES = {
    "defaults": ({"learning_rate": 0.05}, None),
    "options": (
        {
            "learning_rate": 0.02,
            "b1": 0.9,
            "b2": 0.95,
            "eps": 1e-7,
            "weight_decay": 0.01,
            "weight_decay_mask": {"b": True, "k": True, "s": False, "w": True},
            "gamma": 0.05,
            "clip_threshold": 0.5,
            "update_interval": 3,
        },
        7,
    ),
}


def _trajectory(tx, params, loss, steps, **extra):
    def body(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(loss)(params), state, params, **extra)
        return (optax.apply_updates(params, updates), state), params

    return jax.lax.scan(body, (params, tx.init(params)), None, length=steps)[1]


def _sophia_trajectories(case, dtype):
    """gradtx's and optax.contrib's Sophia over 60 steps of SOPHIA_CASES[case], with the same keys.

    Called with x64 set to match ``dtype``.
    """
    kwargs, seed = SOPHIA_CASES[case]
    params = _params(dtype)
    data = jnp.asarray(DATA, dtype)

    def loss(p):
        return _wavy(p, data)

    ours, theirs = dict(kwargs), dict(kwargs)
    if seed is not None:
        key = jax.random.PRNGKey(seed)
        ours["hessian_diagonal_fn"] = gradtx.hutchinson_estimator_diag_hessian(key)
        theirs["hessian_diagonal_fn"] = optax.contrib.hutchinson_estimator_diag_hessian(key)

    def run(tx):
        return jax.jit(lambda: _trajectory(tx, params, loss, 60, obj_fn=loss))()

    return run(gradtx.sophia(**ours)), run(optax.contrib.sophia(**theirs))


@pytest.mark.parametrize("case", SOPHIA_CASES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["float32", "float64"])
def test_sophia_equals_optax(case, dtype):
    with jax.enable_x64(dtype == jnp.float64):
        got, expected = _sophia_trajectories(case, dtype)
        rtol = 1e-10 if dtype == jnp.float64 else 1e-6
        moved = jax.tree.map(lambda x: float(jnp.abs(x[-1] - x[0]).max()), expected)
        assert min(moved.values()) > 0.05, moved  # every leaf travels
        chex.assert_trees_all_close(got, expected, rtol=rtol, atol=rtol * 1e-2)


def test_sophia_g_equals_optax_sophia_around_the_same_estimator():
    params = _softmax_params(jnp.float32)
    estimator = gradtx.gauss_newton_bartlett_estimator_diag_hessian(jax.random.PRNGKey(2))
    as_optax = optax.GradientTransformationExtraArgs(estimator.init, estimator.update)
    kwargs = {"learning_rate": 0.05, "update_interval": 2, "gamma": 0.05}

    def loss(p):
        return jnp.mean(_sampled_loss(p, jax.random.key(0)))  # fixed labels: the data

    def run(tx):
        return jax.jit(lambda: _trajectory(tx, params, loss, 20, sampled_loss_fn=_sampled_loss))()

    got = run(gradtx.sophia(**kwargs, hessian_diagonal_fn=estimator))
    expected = run(optax.contrib.sophia(**kwargs, hessian_diagonal_fn=as_optax))
    chex.assert_trees_all_close(got, expected, rtol=1e-6, atol=1e-8)
    assert float(jnp.abs(got["W"][-1] - got["W"][0]).max()) > 0.1


def test_sophia_prints_its_win_rate_every_n_steps(capfd):
    params = {"x": jnp.asarray([1.0, -2.0, 3.0])}
    tx = gradtx.sophia(0.1, verbose=True, print_win_rate_every_n_steps=2)
    state = tx.init(params)
    for _ in range(4):
        _, state = tx.update(params, state, params, obj_fn=lambda p: jnp.sum(p["x"] ** 2))
    jax.effects_barrier()
    assert capfd.readouterr().out.count("Sophia optimizer win rate:") == 2


# -- AdaHessian -------------------------------------------------------------------------

A = np.random.default_rng(8).normal(size=(29, 29))
A = 0.1 * (A + A.T) + np.diag(np.linspace(0.5, 3.0, 29))


def _analytic(x):
    """f(x) = x^T A x / 2 + 0.3 sum cos x: gradient and Hessian in closed form."""
    return 0.5 * x @ A @ x + 0.3 * jnp.sum(jnp.cos(x))


def _adahessian_oracle(
    x,
    probes,
    steps,
    lr,
    b1=0.9,
    b2=0.999,
    eps=1e-4,
    weight_decay=0.0,
    hessian_power=1.0,
    block_size=1,
    update_interval=1,
):
    """AdaHessian from the paper (Yao et al. 2021, Algorithm 1, Eqs. 9-11), in NumPy."""
    sizes = [int(np.prod(s)) for s in SHAPES.values()]
    m, v = np.zeros_like(x), np.zeros_like(x)
    probes, path = iter(probes), [x]
    for t in range(1, steps + 1):
        g = A @ x - 0.3 * np.sin(x)
        if (t - 1) % update_interval == 0:
            z = np.concatenate([p.ravel() for p in next(probes)])
            d = z * ((A - 0.3 * np.diag(np.cos(x))) @ z)
            pieces = np.split(d, np.cumsum(sizes)[:-1])
            for i, shape in enumerate(SHAPES.values()):  # Eq. 9, on leaves of rank >= 2
                if len(shape) >= 2:
                    blocks = pieces[i].reshape(-1, block_size)
                    pieces[i] = np.repeat(blocks.mean(1), block_size)
            d = np.concatenate(pieces)
            v = b2 * v + (1 - b2) * d * d
        m = b1 * m + (1 - b1) * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        x = x - lr * (m_hat / (np.sqrt(v_hat) ** hessian_power + eps) + weight_decay * x)
        path.append(x)
    return np.stack(path[:-1])


ADAHESSIAN_CASES = {
    "defaults": {"learning_rate": 0.1},
    "options": {
        "learning_rate": 0.05,
        "b1": 0.8,
        "b2": 0.99,
        "eps": 1e-6,
        "weight_decay": 0.01,
        "hessian_power": 0.5,
        "block_size": 4,
        "update_interval": 3,
    },
}


def _adahessian_run(build, interval, seed, steps):
    """The path of ``build(key)`` on the analytic problem, the start, and the probes drawn."""
    params = _params()

    def loss(p):
        return _analytic(ravel_pytree(p)[0])

    tx = build(jax.random.PRNGKey(seed))
    path = jax.jit(lambda: _trajectory(tx, params, loss, steps, obj_fn=loss))()
    flat = np.concatenate([np.asarray(path[n]).reshape(steps, -1) for n in SHAPES], 1)
    draws = -(-steps // interval)
    return flat, _flat(params), _probe_draws(jax.random.PRNGKey(seed), list(SHAPES.values()), draws)


def _native(**kwargs):
    """gradtx.adahessian(**kwargs), its probes drawn from the key it is given."""

    def build(key):
        estimator = gradtx.hutchinson_estimator_diag_hessian(key)
        return gradtx.adahessian(**kwargs, hessian_diagonal_fn=estimator)

    return build


@pytest.mark.parametrize("case", ADAHESSIAN_CASES)
def test_adahessian_is_the_papers_algorithm(case, x64):
    kwargs = ADAHESSIAN_CASES[case]
    interval = kwargs.get("update_interval", 1)
    got, x0, probes = _adahessian_run(_native(**kwargs), interval, seed=3, steps=20)
    expected = _adahessian_oracle(
        x0,
        probes,
        20,
        kwargs["learning_rate"],
        **{k: v for k, v in kwargs.items() if k != "learning_rate"},
    )
    assert np.abs(expected[-1] - expected[0]).min() > 1e-3  # every coordinate moves
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


PACKAGE_OPTIONS = {
    "lr": 0.05,
    "betas": (0.8, 0.99),
    "eps": 1e-6,
    "weight_decay": 0.01,
    "hessian_power": 0.5,
    "update_period": 3,
}
COMPAT_OPTIONS = [
    {"weight_decay": 0.01, "weight_decouple": False, "update_period": 2},
    {"weight_decay": 0.1, "fixed_decay": True, "maximize": True, "hessian_power": 0.5},
]
# gradtx.adahessian with the package's settings, and compat.pytorch.adahessian with its own.
TORCH_CASES = {
    "native": (_native(learning_rate=0.1), {"lr": 0.1, "eps": 1e-4}),
    "native_options": (
        _native(
            learning_rate=0.05,
            b1=0.8,
            b2=0.99,
            eps=1e-6,
            weight_decay=0.01,
            hessian_power=0.5,
            update_interval=3,
        ),
        PACKAGE_OPTIONS,
    ),
    **{
        f"compat_{i}": (
            lambda key, options=options: pytorch_adahessian(**options, random_seed=key),
            options,
        )
        for i, options in enumerate([{}, *COMPAT_OPTIONS])
    },
}


# The package reads the gradient's graph from p.grad, which backward(create_graph=True)
# fills; zero_grad sets p.grad to None before each step, which breaks the cycle torch warns of.
@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True:UserWarning")
@pytest.mark.parametrize("case", TORCH_CASES)
def test_adahessian_equals_pytorch_optimizer_with_the_same_probes(case, x64, monkeypatch):
    torch = pytest.importorskip("torch")
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer")
    build, theirs = TORCH_CASES[case]
    steps = 12
    interval = theirs.get("update_period", 1)
    got, x0, probes = _adahessian_run(build, interval, seed=4, steps=steps)
    # The package draws its probes as torch.randint_like(p, 0, 2) * 2 - 1, a leaf at a time.
    queue = iter([z for draw in probes for z in draw])
    monkeypatch.setattr(
        torch, "randint_like", lambda p, *args, **kwargs: torch.as_tensor((next(queue) + 1) / 2)
    )
    sizes = np.cumsum([int(np.prod(s)) for s in SHAPES.values()])[:-1]
    leaves = [
        torch.tensor(x.reshape(shape), dtype=torch.float64, requires_grad=True)
        for x, shape in zip(np.split(x0, sizes), SHAPES.values())
    ]
    a = torch.tensor(A)
    optimizer = pytorch_optimizer.AdaHessian(leaves, **theirs)

    def closure():
        optimizer.zero_grad()
        x = torch.cat([p.reshape(-1) for p in leaves])
        loss = 0.5 * x @ a @ x + 0.3 * torch.cos(x).sum()
        loss.backward(create_graph=True)
        return loss

    path = []
    for _ in range(steps):
        path.append(torch.cat([p.detach().reshape(-1) for p in leaves]).numpy())
        optimizer.step(closure)
    assert next(queue, None) is None  # every probe used, at the same steps
    np.testing.assert_allclose(got, np.stack(path), rtol=1e-10, atol=1e-12)


# -- bad input --------------------------------------------------------------------------

OBJECTIVE_NEEDED = r"needs the objective as the keyword argument obj_fn= \(or value_fn=\)"


@pytest.mark.parametrize(
    "tx, owner",
    [
        (gradtx.sophia(0.1), "scale_by_sophia"),
        (gradtx.scale_by_sophia(), "scale_by_sophia"),
        (gradtx.adahessian(), "scale_by_adahessian"),
        (gradtx.scale_by_adahessian(), "scale_by_adahessian"),
    ],
    ids=["sophia", "scale_by_sophia", "adahessian", "scale_by_adahessian"],
)
def test_a_missing_objective_names_the_optimizer_and_the_argument(tx, owner):
    params = {"w": jnp.ones(2)}
    pattern = rf"^{owner}\.update: hutchinson_estimator_diag_hessian\.update {OBJECTIVE_NEEDED}"
    with pytest.raises(ValueError, match=pattern):
        tx.update(params, tx.init(params), params)
    with pytest.raises(ValueError, match=rf"^{owner} needs the params"):
        tx.update(params, tx.init(params), obj_fn=lambda p: jnp.sum(p["w"] ** 2))


def test_estimators_name_their_missing_argument():
    params = {"w": jnp.ones(2)}
    tx = gradtx.hutchinson_estimator_diag_hessian()
    with pytest.raises(
        ValueError, match=rf"^hutchinson_estimator_diag_hessian\.update {OBJECTIVE_NEEDED}"
    ):
        tx.update(params, tx.init(params), params)
    gnb = gradtx.gauss_newton_bartlett_estimator_diag_hessian()
    sophia_g = gradtx.sophia(0.1, hessian_diagonal_fn=gnb)
    with pytest.raises(
        ValueError,
        match=r"^scale_by_sophia\.update: gauss_newton_bartlett_estimator_diag_hessian\.update "
        r"needs the keyword argument sampled_loss_fn=",
    ):
        sophia_g.update(params, sophia_g.init(params), params, obj_fn=lambda p: 0.0)
    with pytest.raises(ValueError, match=r"returned a scalar; it must return the per-example"):
        gnb.update(params, gnb.init(params), params, sampled_loss_fn=lambda p, k: jnp.sum(p["w"]))


def test_integer_leaves_are_refused_naming_the_path():
    params = {"count": jnp.arange(3), "w": jnp.ones(2)}
    named = r"params leaf at \['count'\] has dtype int32"
    for call in (
        lambda: gradtx.hvp(lambda p: jnp.sum(p["w"] ** 2), params, params),
        lambda: gradtx.hessian_diag(lambda p: jnp.sum(p["w"] ** 2), params),
        lambda: gradtx.sophia(0.1).init(params),
        lambda: gradtx.adahessian().init(params),
        lambda: gradtx.hutchinson_estimator_diag_hessian().init(params),
        lambda: gradtx.gauss_newton_bartlett_estimator_diag_hessian().init(params),
    ):
        with pytest.raises(TypeError, match=named):
            call()


def test_sophia_refuses_complex_leaves_naming_the_path():
    # Its max(gamma h, eps) and clip need an order: jnp.clip raised its own error.
    real, complex_ = {"w": jnp.ones(2)}, {"w": jnp.ones(2, jnp.complex64)}
    named = r"^scale_by_sophia: the leaf at \['w'\] is complex; .* takes real leaves only"
    tx = gradtx.sophia(0.1, update_interval=1)
    with pytest.raises(TypeError, match=named):
        tx.init(complex_)
    with pytest.raises(TypeError, match=named):
        tx.update(complex_, tx.init(real), real, obj_fn=lambda p: jnp.sum(p["w"] ** 2))


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: gradtx.sophia(0.1, b1=1.0), r"^sophia\(b1=1\.0\): b1 must be in \[0, 1\)"),
        (lambda: gradtx.sophia(0.1, b2=-0.1), r"^sophia\(b2=-0\.1\): b2 must be in"),
        (lambda: gradtx.sophia(0.1, gamma=0.0), r"\(gamma=0\.0\): gamma must be in \(0, inf"),
        (lambda: gradtx.sophia(0.1, eps=0.0), r"\(eps=0\.0\): with eps all 0"),
        (lambda: gradtx.sophia(0.1, clip_threshold=0.0), r"clip_threshold must be in \(0"),
        (lambda: gradtx.sophia(0.1, update_interval=0), r"\(update_interval=0\): .* \[1, inf"),
        (lambda: gradtx.sophia(0.1, update_interval=2.5), r"update_interval must be a whole"),
        (lambda: gradtx.sophia(0.1, verbose=True), r"print_win_rate_every_n_steps=0\): verbose"),
        (lambda: gradtx.adahessian(b1=1.0), r"^adahessian\(b1=1\.0\): b1 must be in"),
        (lambda: gradtx.adahessian(b2=1.5), r"^adahessian\(b2=1\.5\): b2 must be in"),
        (lambda: gradtx.adahessian(hessian_power=0.0), r"hessian_power must be in \(0, 1\]"),
        (lambda: gradtx.adahessian(block_size=0), r"\(block_size=0\): block_size must be in"),
        (lambda: gradtx.adahessian(update_interval=0), r"\(update_interval=0\): update_int"),
    ],
)
def test_invalid_hyperparameters_are_refused_when_built(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_a_block_size_that_does_not_divide_a_leaf_is_named_at_init():
    tx = gradtx.adahessian(block_size=5)
    with pytest.raises(ValueError, match=r"block_size=5\): the leaf at \['w'\] has shape \(3, 4\)"):
        tx.init({"b": jnp.ones(5), "w": jnp.ones((3, 4))})  # a 1-D leaf is never averaged


def test_the_pytorch_port_refuses_what_it_does_not_port():
    with pytest.raises(ValueError, match=r"pytorch\.adahessian\(num_samples=2\)"):
        pytorch_adahessian(num_samples=2)
    with pytest.raises(ValueError, match=r"hessian_distribution='gaussian'\): only 'rademacher'"):
        pytorch_adahessian(hessian_distribution="gaussian")
    with pytest.raises(ValueError, match=r"pytorch\.adahessian\(lr=-1\.0\): lr must be >= 0"):
        pytorch_adahessian(lr=-1.0)
