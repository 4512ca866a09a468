"""compat.pytorch.swa_utils equals torch.optim.swa_utils (torch 2.13, float64).

- averaged_model against the recorded AveragedModel (tests/reference/record_swa_utils.py):
  the default SWA average, every get_*_avg_fn factory as avg_fn and multi_avg_fn, EMA's copy
  at the first call, use_buffers on and off, updates that start late (n_averaged counts the
  calls): the averaged params and buffers after every step to 1e-12, n_averaged exactly;
- swalr against the recorded SWALR rates, cos and linear, anneal_epochs 0, 1, 7, 10, 25, 60,
  and after a CosineAnnealingLR (joined with join_schedules): every step to 1e-12;
- update_bn on a Flax Linen model with BatchNorm against NumPy's mean and variance of the
  data (one batch: exactly its own; several: torch's equal-weight mean of the batches');
- torch's argument errors, in gradtx's style; live torch raises on the same input.
"""

from __future__ import annotations

import functools
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import record_swa_utils as record
from reference.recording import DATA

import gradtx
from gradtx.compat.pytorch import swa_utils

META = json.loads((DATA / "swa_utils.json").read_text())
AVERAGED = [c for c in META["cases"] if c["optimizer"] == "swa_utils.averaged_model"]
SWALR = [c for c in META["cases"] if c["optimizer"] == "swa_utils.swalr"]
ATOL = 1e-12  # every recorded value


def _recorded(index: int) -> dict[str, np.ndarray]:
    data = np.load(DATA / "swa_utils.npz")
    prefix = f"{index}/"
    return {k[len(prefix) :]: data[k] for k in data.files if k.startswith(prefix)}


def _id(case: dict) -> str:
    return f"{case['index']}-{case['kwargs']}"


# -- averaged_model -------------------------------------------------------------


def _averaging(spec: dict | None):
    if spec is None:
        return None
    factory = getattr(swa_utils, spec["factory"])
    return factory(spec["decay"]) if "decay" in spec else factory()


@jax.jit
def _update(swa, state, params, buffers):
    return swa.update(state, params, buffers)


def _averaged(case: dict) -> dict[str, np.ndarray]:
    """The average's params, buffers and n_averaged after every step (under x64)."""
    kwargs = dict(case["kwargs"])
    for name in ("avg_fn", "multi_avg_fn"):
        kwargs[name] = _averaging(kwargs.get(name))
    swa = swa_utils.averaged_model(**kwargs)
    sequence = {k: jnp.asarray(v) for k, v in record.models().items()}
    state = swa.init(
        {k: jnp.zeros(s) for k, s in record.PARAMS.items()},
        {k: jnp.zeros(s) for k, s in record.BUFFERS.items()},
    )
    ours = {k: [] for k in (*record.PARAMS, *record.BUFFERS, "n_averaged")}
    for step in range(1, record.STEPS + 1):
        if step >= case["start"]:
            params = {k: sequence[k][step - 1] for k in record.PARAMS}
            buffers = {k: sequence[k][step - 1] for k in record.BUFFERS}
            state = _update(swa, state, params, buffers)
        for k in record.PARAMS:
            ours[k].append(state.params[k])
        for k in record.BUFFERS:
            ours[k].append(state.buffers[k])
        ours["n_averaged"].append(state.n_averaged)
    return {k: np.stack(values) for k, values in ours.items()}


@pytest.mark.parametrize("case", AVERAGED, ids=_id)
def test_averaged_model_matches_torch(case, x64):
    expected = _recorded(case["index"])
    for k, values in _averaged(case).items():
        np.testing.assert_allclose(values, expected[k], rtol=0, atol=ATOL, err_msg=k)
    # The average is not the model: a port that copied the params would fail above.
    last = record.STEPS - 1
    assert np.max(np.abs(expected["w"][last] - record.models()["w"][last])) > 0.1


def test_ema_copies_at_the_first_update_and_takes_a_new_decay_without_retracing(x64):
    traces = []

    @jax.jit
    def update(swa, state, params):
        traces.append(1)
        return swa.update(state, params)

    for decay in (0.5, 0.25):
        swa = swa_utils.averaged_model(multi_avg_fn=swa_utils.get_ema_multi_avg_fn(decay))
        state = swa.init({"w": jnp.float64(100.0)})  # torch's copy of the model, replaced
        for w in (2.0, 4.0):
            state = update(swa, state, {"w": jnp.float64(w)})
        assert float(state.params["w"]) == 2.0 + (1 - decay) * 2.0
    assert len(traces) == 1


def test_a_function_of_one_leaf_or_of_the_tree(x64):
    def leaf_max(a, p, n):
        del n
        return jnp.maximum(a, p)

    def tree_min(a, p, n):
        return jax.tree.map(lambda x, y: jnp.minimum(x, y) + 0 * n, a, p)

    for fn, expected in ((dict(avg_fn=leaf_max), 5.0), (dict(multi_avg_fn=tree_min), -1.0)):
        swa = swa_utils.averaged_model(**fn)
        state = swa.init({"w": jnp.float64(9.0)})
        for w in (3.0, 5.0, -1.0):
            state = _update(swa, state, {"w": jnp.float64(w)}, None)
        assert float(state.params["w"]) == expected  # the 9.0 of init replaced, as torch
        assert int(state.n_averaged) == 3


# -- swalr ------------------------------------------------------------------------


def _schedule(case: dict):
    schedule = swa_utils.swalr(case["lr"], **case["kwargs"])
    if not case["cosine"]:
        return schedule
    cosine = gradtx.cosine_decay_schedule(case["lr"], case["cosine"])
    # SWALR anneals from the rate the cosine reached when SWALR started stepping.
    start = schedule.replace(lr=float(cosine(case["switch"])))
    return gradtx.join_schedules([cosine, start], [case["switch"]])


@jax.jit
def _rates(schedule):
    return jax.vmap(schedule)(jnp.arange(record.LR_STEPS))


@pytest.mark.parametrize("case", SWALR, ids=_id)
def test_swalr_matches_torch(case, x64):
    ours = _rates(_schedule(case))
    expected = _recorded(case["index"])["lr"]
    np.testing.assert_allclose(ours, expected, rtol=0, atol=ATOL)
    assert expected[-1] == case["kwargs"]["swa_lr"]


def test_swalr_is_a_schedule_with_leaves():
    schedule = swa_utils.swalr(0.1, 0.01, anneal_epochs=4)
    assert isinstance(schedule, gradtx.Schedule)
    assert jax.tree.leaves(schedule) == [0.1, 0.01, 4]
    tx = gradtx.compat.pytorch.sgd(lr=schedule)
    assert gradtx.tree_get(tx, "learning_rate") == schedule


# -- update_bn --------------------------------------------------------------------


class _Net(nn.Module):
    momentum: float = 0.99

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Dense(3, dtype=jnp.float64, param_dtype=jnp.float64)(x)
        return nn.BatchNorm(
            use_running_average=not train,
            momentum=self.momentum,
            dtype=jnp.float64,
            param_dtype=jnp.float64,
            force_float32_reductions=False,
        )(x)


def _bn_setup(momentum: float):
    net = _Net(momentum=momentum)
    x = jax.random.normal(jax.random.key(0), (12, 2), jnp.float64) * 3 + 1
    variables = jax.jit(functools.partial(net.init, train=False))(jax.random.key(1), x)
    # Stale statistics, which update_bn must not mix in (torch resets them).
    variables = {
        **variables,
        "batch_stats": jax.tree.map(lambda s: s + 5, variables["batch_stats"]),
    }

    @jax.jit
    def apply_fn(v, batch):
        return net.apply(v, batch, train=True, mutable=["batch_stats"])[1]["batch_stats"]

    dense = variables["params"]["Dense_0"]
    h = np.asarray(x) @ np.asarray(dense["kernel"]) + np.asarray(dense["bias"])
    return apply_fn, variables, np.asarray(x), h


@pytest.mark.parametrize("momentum", [0.99, 0.9])
def test_update_bn_gives_the_mean_of_the_batch_statistics(momentum, x64):
    apply_fn, variables, x, h = _bn_setup(momentum)
    one = swa_utils.update_bn([x[:4]], apply_fn, variables, momentum=momentum)
    stats = one["batch_stats"]["BatchNorm_0"]
    np.testing.assert_allclose(stats["mean"], h[:4].mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(stats["var"], h[:4].var(0), rtol=0, atol=1e-12)
    assert one["params"] is variables["params"]

    # Three batches of (input, label): the first item is the input, as in torch.
    batches = [(x[i : i + 4], None) for i in (0, 4, 8)]
    three = swa_utils.update_bn(batches, apply_fn, variables, momentum=momentum)
    stats = three["batch_stats"]["BatchNorm_0"]
    parts = np.split(h, 3)
    np.testing.assert_allclose(stats["mean"], h.mean(0), rtol=0, atol=1e-12)
    expected_var = np.mean([p.var(0) for p in parts], axis=0)  # torch's momentum=None average
    np.testing.assert_allclose(stats["var"], expected_var, rtol=0, atol=1e-12)
    assert np.max(np.abs(expected_var - h.var(0))) > 1e-3  # not the data's variance


# -- bad input --------------------------------------------------------------------


def _torch_raises(call, error):
    torch = pytest.importorskip("torch")
    from torch.optim import swa_utils as theirs

    with pytest.raises(error):
        call(torch, theirs)


def test_only_one_averaging_function():
    ema = swa_utils.get_ema_avg_fn(0.9)
    with pytest.raises(ValueError, match=r"averaged_model\(avg_fn=.*give only one of avg_fn"):
        swa_utils.averaged_model(avg_fn=ema, multi_avg_fn=ema)
    _torch_raises(
        lambda torch, t: t.AveragedModel(
            torch.nn.Linear(1, 1), avg_fn=t.get_ema_avg_fn(), multi_avg_fn=t.get_ema_avg_fn()
        ),
        AssertionError,
    )


@pytest.mark.parametrize("name", ["get_ema_avg_fn", "get_ema_multi_avg_fn"])
@pytest.mark.parametrize("decay", [-0.1, 1.5])
def test_ema_decay_in_the_unit_interval(name, decay):
    with pytest.raises(ValueError, match=rf"{name}\(decay={decay}\): decay must be in \[0, 1\]"):
        getattr(swa_utils, name)(decay)
    _torch_raises(lambda torch, t: getattr(t, name)(decay), ValueError)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(anneal_epochs=-1), r"swalr\(anneal_epochs=-1\): anneal_epochs must be in \[0, "),
        (dict(anneal_epochs=2.5), r"swalr\(anneal_epochs=2.5\): anneal_epochs must be a whole"),
        (dict(anneal_strategy="exp"), r"swalr\(anneal_strategy='exp'\): .* 'cos', 'linear'"),
    ],
)
def test_swalr_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        swa_utils.swalr(0.1, 0.01, **kwargs)

    def theirs(torch, t):
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        t.SWALR(optimizer, 0.01, **kwargs)

    _torch_raises(theirs, ValueError)


def test_update_bn_arguments(x64):
    apply_fn, variables, x, _ = _bn_setup(0.99)
    with pytest.raises(
        ValueError, match=r"update_bn\(momentum=1.0\): momentum must be in \[0, 1\)"
    ):
        swa_utils.update_bn([x], apply_fn, variables, momentum=1.0)
    with pytest.raises(ValueError, match=r"update_bn\(collection='stats'\): .*'batch_stats'"):
        swa_utils.update_bn([x], apply_fn, variables, collection="stats")
    with pytest.raises(ValueError, match=r"update_bn\(loader=...\): the loader gave no batch"):
        swa_utils.update_bn([], apply_fn, variables)


def test_live_torch_reproduces_the_recording():
    pytest.importorskip("torch")
    for case, run in ((AVERAGED[4], record.run_averaged_model), (SWALR[7], record.run_swalr)):
        for k, v in _recorded(case["index"]).items():
            np.testing.assert_array_equal(run(case)[k], v, err_msg=f"{case}: {k}")
