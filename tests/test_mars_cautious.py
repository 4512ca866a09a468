"""MARS and cautious optimizers.

- ``cautious`` (C-AdamW, C-Lion) and ``mars`` (AdamW and Lion forms, every option) equal the
  NumPy oracles written from the papers' algorithms (tests/oracles_modern.py) to 1e-10 in
  float64, over the 200 steps of tests/reference/record_layerwise.py's problem: a matrix, a
  rank-3 leaf, a vector, a scalar and a zero-initialised vector (per-tensor norms and means
  see each), a nonconvex loss whose gradient is zeroed every 17th step and negated every 11th;
- ``mars`` equals pytorch-optimizer's ``MARS`` (run live, float64) where their options
  coincide, and ``cautious(mars(...))`` its ``cautious=True``;
- a cautious step never climbs the gradient, a zero gradient gives a zero step, the inner
  state stays readable, bad arguments are refused naming them.
"""

from __future__ import annotations

import inspect

from ids import stable_id
import jax
import jax.numpy as jnp
import numpy as np
import optax
import oracles_modern
import pytest
from reference import record_layerwise as problem
import replay

import gradtx

TOLERANCE = {"rtol": 1e-10, "atol": 1e-12}


def _oracle(fn, **kwargs):
    return fn(
        problem.initial_params(), lambda x, t: problem.gradient(x, t), problem.STEPS, **kwargs
    )


def _compare(tx, expected, tolerance=TOLERANCE):
    # record_layerwise's module is its own problem: float64 leaves under x64.
    ours = replay.trajectory(tx, problem)
    replay.assert_trajectories_equal(ours, expected, problem.SHAPES, **tolerance)


# -- cautious against the paper's algorithms ---------------------------------------------

CAUTIOUS = [
    ("adamw", {"learning_rate": 0.01}, {}),
    ("adamw", {"learning_rate": 0.02, "b1": 0.8, "b2": 0.99, "eps": 1e-6, "weight_decay": 0.1}, {}),
    ("adamw", {"learning_rate": 0.01, "weight_decay": 0.05}, {"eps": 1e-3, "normalize": "mean"}),
    ("lion", {"learning_rate": 0.003}, {"eps": 2.0}),
    (
        "lion",
        {"learning_rate": 0.003, "b1": 0.8, "b2": 0.95, "weight_decay": 0.1},
        {"eps": 1e-2, "normalize": "mean"},
    ),
]


def _cautious(name, kwargs, mask):
    """C-AdamW and C-Lion as the paper writes them: the decay outside the mask."""
    kwargs = dict(kwargs)
    lr, wd = kwargs.pop("learning_rate"), kwargs.pop("weight_decay", 0.0)
    inner = (
        gradtx.adam(lr, **kwargs)
        if name == "adamw"
        else gradtx.lion(lr, weight_decay=0.0, **kwargs)
    )
    return gradtx.chain(gradtx.cautious(inner, **mask), gradtx.add_decoupled_weight_decay(wd, lr))


@pytest.mark.parametrize(("name", "kwargs", "mask"), CAUTIOUS, ids=lambda x: str(x)[:30])
def test_cautious_matches_the_papers_algorithm(name, kwargs, mask, x64):
    oracle = oracles_modern.cautious_adamw if name == "adamw" else oracles_modern.cautious_lion
    mask_kwargs = {"mask_eps": mask.get("eps", 1.0), "normalize": mask.get("normalize", "count")}
    expected = _oracle(oracle, **mask_kwargs, **kwargs)
    _compare(_cautious(name, kwargs, mask), expected)


def test_cautious_changes_the_trajectory(x64):
    # The comparison above would pass for a mask that keeps everything if the oracle did too.
    plain = _oracle(oracles_modern.cautious_adamw, learning_rate=0.01, caution=False)
    cautious = _oracle(oracles_modern.cautious_adamw, learning_rate=0.01)
    assert max(np.max(np.abs(plain[k] - cautious[k])) for k in problem.SHAPES) > 1e-2


# -- cautious: properties ------------------------------------------------------------------

_PARAMS = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.array([0.5, -0.5, 2.0])}


def _steps(tx, grads_list, params=_PARAMS):
    state, out = tx.init(params), []
    for grads in grads_list:
        updates, state = tx.update(grads, state, params)
        out.append(updates)
    return out, state


@pytest.mark.parametrize(
    "inner",
    [gradtx.adamw(0.1), gradtx.lion(0.1), gradtx.sgd(0.1, momentum=0.9), optax.adam(0.1)],
    ids=["adamw", "lion", "sgd-momentum", "optax-adam"],
)
def test_a_cautious_step_never_climbs_the_gradient(inner):
    grads = [jax.tree.map(lambda p, i=i: jnp.sin(3.0 * p + i * 1.7), _PARAMS) for i in range(4)]
    updates, _ = _steps(gradtx.cautious(inner), grads)
    masked = 0
    for u, g in zip(updates, grads):
        for k in _PARAMS:
            assert np.all(np.asarray(u[k] * g[k]) <= 0), k
            masked += int(np.sum(np.asarray(u[k]) == 0))
    assert masked > 0  # momentum disagrees with the gradient somewhere


def test_a_zero_gradient_gives_a_zero_step_and_keeps_the_inner_state_going():
    tx = gradtx.cautious(gradtx.sgd(0.1, momentum=0.9))
    zero = jax.tree.map(jnp.zeros_like, _PARAMS)
    (first, second), state = _steps(tx, [_PARAMS, zero])
    assert all(np.all(np.asarray(second[k]) == 0) for k in _PARAMS)
    assert np.any(np.asarray(first["w"]) != 0)
    # The momentum still decays on the masked step: 0.9 * g_1 + 0.
    np.testing.assert_allclose(gradtx.tree_get(state, "trace")["w"], 0.9 * _PARAMS["w"])


def test_the_kept_fraction_rescales_each_leaf():
    # u = -0.1 * g where all agree: kept everywhere, scaled by n / (n + 1) per leaf.
    tx = gradtx.cautious(gradtx.sgd(0.1))
    grads = {"w": jnp.ones((2, 3)), "b": jnp.array([1.0, -1.0, 0.0])}
    (updates,), _ = _steps(tx, [grads])
    np.testing.assert_allclose(updates["w"], -0.1 * np.ones((2, 3)) * 6 / 7, rtol=1e-6)
    np.testing.assert_allclose(updates["b"], [-0.1 * 3 / 3, 0.1 * 3 / 3, 0.0], rtol=1e-6)
    (updates,), _ = _steps(gradtx.cautious(gradtx.sgd(0.1), eps=1e-3, normalize="mean"), [grads])
    np.testing.assert_allclose(
        updates["b"], [-0.1 / (2 / 3 + 1e-3), 0.1 / (2 / 3 + 1e-3), 0.0], rtol=1e-6
    )


def test_complex_leaves_keep_the_elements_whose_step_descends():
    tx = gradtx.cautious(gradtx.sgd(1.0, momentum=0.5))
    params = {"c": jnp.zeros(2, jnp.complex64)}
    g1, g2 = jnp.array([1 + 1j, 1j]), jnp.array([1 + 1j, -0.2j])
    (_, u), _ = _steps(tx, [{"c": g1}, {"c": g2}], params)
    # momentum [1.5 (1 + i), 0.3i]: the second step -0.3i points up the gradient -0.2i;
    # one of two kept, scaled by 2 / (1 + 1).
    np.testing.assert_allclose(u["c"], [-1.5 * (1 + 1j), 0], rtol=1e-6)


def test_cautious_keeps_the_inner_state_readable_and_jits():
    tx = gradtx.cautious(gradtx.adamw(gradtx.linear_schedule(0.1, 0.0, 10)))
    step = jax.jit(lambda tx, g, s, p: tx.update(g, s, p))
    state = tx.init(_PARAMS)
    for _ in range(3):
        _, state = step(tx, _PARAMS, state, _PARAMS)
    assert float(gradtx.tree_get(state, "learning_rate")) == pytest.approx(0.08)
    assert isinstance(state, gradtx.CautiousState)
    assert gradtx.tree_get(tx, "b2") == 0.999
    assert tx == gradtx.cautious(gradtx.adamw(gradtx.linear_schedule(0.1, 0.0, 10)))


@pytest.mark.parametrize("eps", [0.0, -1e-3, float("nan")])
def test_cautious_refuses_a_bad_eps(eps):
    with pytest.raises(ValueError, match=r"cautious\(eps="):
        gradtx.cautious(gradtx.adam(0.1), eps=eps)


def test_cautious_refuses_an_unknown_normalisation():
    with pytest.raises(ValueError, match=r"cautious\(normalize='global'\): normalize must be one"):
        gradtx.cautious(gradtx.adam(0.1), normalize="global")


# -- MARS against the paper's algorithm --------------------------------------------------

MARS = [
    {"learning_rate": 3e-3},
    {"learning_rate": 3e-3, "optimizer": "lion"},
    {
        "learning_rate": 0.01,
        "b1": 0.9,
        "b2": 0.95,
        "eps": 1e-6,
        "gamma": 0.1,
        "weight_decay": 0.1,
        "max_norm": 2.0,
    },
    {"learning_rate": 1e-3, "b1": 0.8, "gamma": 0.05, "weight_decay": 0.2, "optimizer": "lion"},
    {"learning_rate": 3e-3, "gamma": 0.0},
    {"learning_rate": 3e-3, "max_norm": None},
]


@pytest.mark.parametrize(
    "kwargs", MARS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items())[:50]
)
def test_mars_matches_the_papers_algorithm(kwargs, x64):
    _compare(gradtx.mars(**kwargs), _oracle(oracles_modern.mars, **kwargs))


def test_mars_clips_and_corrects(x64):
    # The cases above would pass without clipping or correction if neither ever acted.
    clipped = _oracle(oracles_modern.mars, learning_rate=3e-3)
    unclipped = _oracle(oracles_modern.mars, learning_rate=3e-3, max_norm=None)
    uncorrected = _oracle(oracles_modern.mars, learning_rate=3e-3, gamma=0.0)
    for other in (unclipped, uncorrected):
        assert max(np.max(np.abs(clipped[k] - other[k])) for k in problem.SHAPES) > 1e-3


def test_mars_clip_by_global_scales_all_leaves_together(x64):
    tx = gradtx.scale_by_mars(max_norm=1.0, clip_by="global", gamma=0.0, optimizer="lion")
    grads = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.0, 0.0])}
    _, state = tx.update(grads, tx.init(grads))
    # sign() hides the clipping: the momentum (1 - b1) * g / ||g|| shows it.
    np.testing.assert_allclose(gradtx.tree_get(state, "ema")["a"], 0.05 * np.array([0.6, 0.8]))


def test_mars_keeps_the_previous_gradient_and_the_learning_rate():
    tx = gradtx.mars(gradtx.linear_schedule(0.1, 0.0, 10))
    state = tx.init(_PARAMS)
    grads = jax.tree.map(lambda p: 2.0 * p, _PARAMS)
    for _ in range(3):
        _, state = tx.update(grads, state, _PARAMS)
    np.testing.assert_array_equal(gradtx.tree_get(state, "prev_grad")["w"], grads["w"])
    assert float(gradtx.tree_get(state, "learning_rate")) == pytest.approx(0.08)


BAD = [
    (gradtx.mars, {"learning_rate": 0.1, "optimizer": "shampoo"}, r"mars\(optimizer='shampoo'\)"),
    (gradtx.scale_by_mars, {"clip_by": "tensor"}, r"scale_by_mars\(clip_by='tensor'\)"),
    (
        gradtx.mars,
        {"learning_rate": 0.1, "gamma": -0.1},
        r"^mars\(gamma=-0\.1\): gamma must be in \[0, inf\)",
    ),
    (gradtx.mars, {"learning_rate": 0.1, "b1": 1.0}, r"^mars\(b1=1\.0\): b1 must be in \[0, 1\)"),
    (gradtx.mars, {"learning_rate": 0.1, "b2": 1.0}, r"^mars\(b2=1\.0\): b2 must be in \[0, 1\)"),
    (
        gradtx.mars,
        {"learning_rate": 0.1, "max_norm": -1.0},
        r"^mars\(max_norm=-1\.0\): max_norm must be in \[0, inf\]",
    ),
    (gradtx.mars, {"learning_rate": -0.1}, r"learning_rate=-0.1"),
]


@pytest.mark.parametrize(("factory", "kwargs", "match"), BAD, ids=stable_id)
def test_bad_mars_arguments_are_refused_naming_them(factory, kwargs, match):
    with pytest.raises(ValueError, match=match):
        factory(**kwargs)


# -- MARS against pytorch-optimizer --------------------------------------------------------


def _pytorch_optimizer(kwargs, cautious=False):
    """pytorch_optimizer.MARS on the problem, float64, every leaf through MARS."""
    torch = pytest.importorskip("torch")
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer")
    params = {k: torch.tensor(v, dtype=torch.float64) for k, v in problem.initial_params().items()}
    for p in params.values():
        p.requires_grad_(True)
    opt = pytorch_optimizer.MARS(
        list(params.values()),
        lr=kwargs["learning_rate"],
        betas=(kwargs.get("b1", 0.95), kwargs.get("b2", 0.99)),
        gamma=kwargs.get("gamma", 0.025),
        mars_type=kwargs.get("optimizer", "adamw"),
        optimize_1d=True,
        weight_decay=kwargs.get("weight_decay", 0.0),
        eps=kwargs.get("eps", 1e-8),
        cautious=cautious,
    )
    out = {k: [] for k in params}
    for t in range(1, problem.STEPS + 1):
        grads = problem.gradient({k: p.detach().numpy() for k, p in params.items()}, t)
        for k, p in params.items():
            p.grad = torch.tensor(grads[k], dtype=torch.float64)
        opt.step()
        for k, p in params.items():
            out[k].append(p.detach().numpy().copy())
    return {k: np.stack(v) for k, v in out.items()}


PYTORCH_OPTIMIZER = [
    {"learning_rate": 3e-3},
    {"learning_rate": 0.01, "b1": 0.9, "b2": 0.95, "eps": 1e-6, "gamma": 0.1, "weight_decay": 0.1},
    {"learning_rate": 1e-3, "b1": 0.8, "gamma": 0.05, "weight_decay": 0.2, "optimizer": "lion"},
]


# Its sqrt(v_t + 1e-15) (before the bias correction) moves the params by up to 1.5e-12 where a
# coordinate crosses zero (3.8e-15 with that 1e-15 patched to 0, tried by hand).
PYTORCH_TOLERANCE = {"rtol": 1e-10, "atol": 1e-11}


def _ours_as_pytorch_optimizer(kwargs):
    # pytorch-optimizer adds eps before the bias correction (scale_by_adam's eps_mode="raw").
    tx = gradtx.mars(**kwargs)
    return tx if kwargs.get("optimizer") == "lion" else gradtx.tree_set(tx, eps_mode="raw")


@pytest.mark.parametrize("kwargs", PYTORCH_OPTIMIZER, ids=lambda kw: str(kw)[:50])
def test_mars_matches_pytorch_optimizer(kwargs, x64):
    _compare(_ours_as_pytorch_optimizer(kwargs), _pytorch_optimizer(kwargs), PYTORCH_TOLERANCE)


def test_cautious_mars_matches_pytorch_optimizers_cautious_option(x64):
    kwargs = {"learning_rate": 0.01, "weight_decay": 0.1}
    inner = _ours_as_pytorch_optimizer({**kwargs, "weight_decay": 0.0})
    tx = gradtx.chain(gradtx.cautious(inner), gradtx.add_decoupled_weight_decay(0.1, 0.01))
    _compare(tx, _pytorch_optimizer(kwargs, cautious=True), PYTORCH_TOLERANCE)


# -- ACProp and MADGRAD against optax.contrib ------------------------------------------------

CONTRIB = ["acprop", "scale_by_acprop", "madgrad", "scale_by_madgrad"]


@pytest.mark.parametrize("name", CONTRIB)
def test_acprop_and_madgrad_signatures_are_optaxs(name):
    ours = inspect.signature(getattr(gradtx, name)).parameters
    theirs = inspect.signature(getattr(optax.contrib, name)).parameters
    assert list(ours) == list(theirs)
    for k, p in theirs.items():
        assert (ours[k].kind, ours[k].default) == (p.kind, p.default), k


def _contrib(library, name, kwargs):
    tx = getattr(gradtx if library is gradtx else optax.contrib, name)(**kwargs)
    return (
        library.chain(tx, library.scale_by_learning_rate(0.01)) if name == "scale_by_acprop" else tx
    )


# (name, kwargs, dtype): the defaults in float32 (rtol 1e-6), every option in float64 (1e-10).
CONTRIB_CASES = [
    ("acprop", {"learning_rate": 0.01}, "float32"),
    ("madgrad", {"learning_rate": 0.01}, "float32"),
    (
        "acprop",
        {"learning_rate": 0.02, "b1": 0.8, "b2": 0.99, "eps": 1e-8, "eps_root": 1e-10},
        "float64",
    ),
    (
        "acprop",
        {
            "learning_rate": 0.01,
            "weight_decay": 0.05,
            "mask": {"w": True, "t": False, "b": True, "s": True, "z": False},
        },
        "float64",
    ),
    ("scale_by_acprop", {"b1": 0.7, "eps": 1e-6}, "float64"),
]

# optax forms MADGRAD's lambda_k = (lr + eps) sqrt(k + 1) in float32 (the sqrt of its int32
# count) also for float64 leaves: 1.3e-6 apart from gradtx's float64; the NumPy oracle below
# checks these cases at 1e-10.
MADGRAD_CASES = [
    ("madgrad", {"learning_rate": 0.02, "momentum": 0.5, "weight_decay": 0.05, "eps": 1e-4}),
    ("scale_by_madgrad", {"learning_rate": gradtx.linear_schedule(0.02, 0.005, 150)}),
]
CONTRIB_CASES += [(name, kwargs, "float32-in-float64") for name, kwargs in MADGRAD_CASES]


@pytest.mark.parametrize(("name", "kwargs", "dtype"), CONTRIB_CASES, ids=lambda x: str(x)[:30])
def test_acprop_and_madgrad_match_optax(name, kwargs, dtype, x64):
    from test_adam_variants import _Problem

    data = _Problem("float64" if dtype.endswith("float64") else dtype)
    ours = replay.trajectory(_contrib(gradtx, name, kwargs), data)
    theirs = replay.trajectory(gradtx.chain(_contrib(optax, name, kwargs)), data)
    tolerance = TOLERANCE if dtype == "float64" else {"rtol": 1e-6, "atol": 1e-6}
    if dtype == "float32-in-float64":
        tolerance = {"rtol": 1e-5, "atol": 1e-7}
    replay.assert_trajectories_equal(ours, theirs, problem.SHAPES, **tolerance)


@pytest.mark.parametrize(("name", "kwargs"), MADGRAD_CASES, ids=[n for n, _ in MADGRAD_CASES])
def test_madgrad_matches_the_papers_algorithm(name, kwargs, x64):
    tx = gradtx.madgrad(**kwargs) if name == "madgrad" else gradtx.scale_by_madgrad(**kwargs)
    _compare(tx, _oracle(oracles_modern.madgrad, **kwargs))


def test_madgrad_needs_the_params():
    tx = gradtx.madgrad(0.1)
    with pytest.raises(ValueError, match="needs the params"):
        tx.update(_PARAMS, tx.init(_PARAMS))


def test_madgrad_stays_finite_at_a_saturated_count():
    # optax's sqrt(count + 1) wraps to sqrt(-2**31) = NaN there.
    tx = gradtx.madgrad(0.1)
    state = tx.init(_PARAMS)
    state = (state[0], state[1]._replace(count=jnp.asarray(2**31 - 1, jnp.int32)))
    updates, _ = tx.update(_PARAMS, state, _PARAMS)
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))
