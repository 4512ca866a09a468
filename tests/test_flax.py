"""gradtx optimizers work unchanged in Flax's TrainState and nnx.Optimizer."""

from __future__ import annotations

import pathlib
import sys

from flax import linen as nn
from flax import nnx
from flax.training import train_state
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

X = jax.random.normal(jax.random.key(0), (64, 4))
Y = jnp.sin(X @ jnp.arange(1.0, 5.0))[:, None]


class Linen(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.tanh(nn.Dense(16)(x)))


def _optimizers():
    return [
        gradtx.adam(0.01),
        gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adamw(0.01, weight_decay=1e-4)),
        gradtx.sgd(0.05, momentum=0.9),
    ]


@pytest.mark.parametrize("tx", _optimizers(), ids=["adam", "clip+adamw", "sgd"])
def test_linen_train_state_trains_without_retracing(tx):
    model = Linen()
    state = train_state.TrainState.create(
        apply_fn=model.apply, params=model.init(jax.random.key(1), X), tx=tx
    )
    traces = []

    @jax.jit
    def step(state):
        traces.append(None)

        def loss(params):
            return jnp.mean((state.apply_fn(params, X) - Y) ** 2)

        value, grads = jax.value_and_grad(loss)(state.params)
        return state.apply_gradients(grads=grads), value

    state, first = step(state)
    for _ in range(50):
        state, last = step(state)
    assert float(last) < 0.7 * float(first)
    assert len(traces) == 1  # tx is a static field: it must hash and compare by value


class Mlp(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(4, 16, rngs=rngs)
        self.out = nnx.Linear(16, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(jnp.tanh(self.hidden(x)))


@pytest.mark.parametrize("tx", _optimizers(), ids=["adam", "clip+adamw", "sgd"])
def test_nnx_optimizer_trains(tx):
    model = Mlp(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        def loss(model):
            return jnp.mean((model(X) - Y) ** 2)

        value, grads = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grads)
        return value

    first = step(model, optimizer)
    for _ in range(50):
        last = step(model, optimizer)
    assert float(last) < 0.7 * float(first)
    # The applied learning rate is readable from the optimizer's state, by name.
    lr = gradtx.tree_get(optimizer.opt_state, "learning_rate")
    np.testing.assert_allclose(np.asarray(lr[...]), 0.01 if tx.label != "sgd" else 0.05)


# -- FlatParams in Flax: the params held as one buffer per dtype between steps ---------------


def test_linen_train_state_holds_flat_params_with_the_tree_numbers():
    model = Linen()
    params = model.init(jax.random.key(1), X)
    tx = gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adamw(0.01, weight_decay=1e-4))

    def train(params, apply_fn):
        state = train_state.TrainState.create(apply_fn=apply_fn, params=params, tx=tx)

        @jax.jit
        def step(state):
            loss = lambda p: jnp.mean((state.apply_fn(p, X) - Y) ** 2)
            return state.apply_gradients(grads=jax.grad(loss)(state.params))

        for _ in range(5):
            state = step(state)
        return state.params

    tree = train(params, model.apply)
    # The recipe: TrainState holds the FlatParams; apply_fn reads the leaves as its slices.
    flat = train(gradtx.FlatParams.from_tree(params), lambda fp, x: model.apply(fp.to_tree(), x))
    assert isinstance(flat, gradtx.FlatParams)
    for a, b in zip(jax.tree.leaves(flat.to_tree()), jax.tree.leaves(tree), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_nnx_model_trains_from_flat_params_through_split_and_merge():
    # nnx.Params cannot share storage with a flat buffer; the functional API can hold the
    # FlatParams between steps and merge them into the module inside the step.
    model = Mlp(nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    fp = gradtx.FlatParams.from_tree(params)
    tx = gradtx.adam(0.01)
    state = tx.init(fp)

    @jax.jit
    def step(fp, state):
        loss = lambda fp: jnp.mean((nnx.merge(graphdef, fp.to_tree(), rest)(X) - Y) ** 2)
        value, grads = jax.value_and_grad(loss)(fp)
        updates, state = tx.update(grads, state, fp)
        return gradtx.apply_updates(fp, updates), state, value

    fp, state, first = step(fp, state)
    for _ in range(30):
        fp, state, last = step(fp, state)
    assert float(last) < 0.7 * float(first)
    nnx.update(model, fp.to_tree())  # the module holds the trained weights again
    np.testing.assert_allclose(jnp.mean((model(X) - Y) ** 2), last, rtol=0.05)


sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))
import flax_training  # noqa: E402


@pytest.mark.parametrize("train", [flax_training.train_linen, flax_training.train_nnx])
def test_the_flax_examples_train_for_real(train):
    # clip + AdamW on warmup-cosine + weight decay masked to kernels, jitted.
    losses = train(steps=80)
    assert losses[-1] < 0.2 * losses[0]
