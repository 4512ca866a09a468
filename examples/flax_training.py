"""Trains a Flax Linen model (TrainState) and an NNX model (nnx.Optimizer) with a gradtx chain.

Run: python examples/flax_training.py

The optimizer is the usual recipe: global-norm clipping, then AdamW on a
warmup-cosine schedule, with weight decay only on kernels.
"""

from __future__ import annotations

from flax import linen as nn
from flax import nnx
from flax.training import train_state
import jax
import jax.numpy as jnp

import gradtx


def make_optimizer(steps: int) -> gradtx.Transform:
    schedule = gradtx.warmup_cosine_decay_schedule(0.0, 3e-2, steps // 10, steps)
    return gradtx.chain(
        gradtx.clip_by_global_norm(1.0),
        gradtx.adamw(schedule, weight_decay=1e-3, mask=gradtx.masks.weight_decay()),
    )


def make_data(seed: int = 0):
    """A smooth regression problem: y = sin(x . w) with 4 inputs."""
    x = jax.random.normal(jax.random.key(seed), (256, 4))
    return x, jnp.sin(x @ jnp.asarray([1.0, -2.0, 0.5, 1.5]))[:, None]


class LinenMlp(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.LayerNorm()(nn.tanh(nn.Dense(32)(x)))
        return nn.Dense(1)(x)


def train_linen(steps: int = 200) -> list[float]:
    """Linen + TrainState: the optimizer sits in TrainState's static ``tx`` field."""
    x, y = make_data()
    model = LinenMlp()
    state = train_state.TrainState.create(
        apply_fn=model.apply, params=model.init(jax.random.key(1), x), tx=make_optimizer(steps)
    )

    @jax.jit
    def step(state):
        def loss(params):
            return jnp.mean((state.apply_fn(params, x) - y) ** 2)

        value, grads = jax.value_and_grad(loss)(state.params)
        return state.apply_gradients(grads=grads), value

    losses = []
    for _ in range(steps):
        state, value = step(state)
        losses.append(float(value))
    return losses


class NnxMlp(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(4, 32, rngs=rngs)
        self.norm = nnx.LayerNorm(32, rngs=rngs)
        self.out = nnx.Linear(32, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(self.norm(jnp.tanh(self.hidden(x))))


def train_nnx(steps: int = 200) -> list[float]:
    """NNX + nnx.Optimizer: gradtx objects carry Python-number hyperparameters, as nnx needs."""
    x, y = make_data()
    model = NnxMlp(nnx.Rngs(1))
    optimizer = nnx.Optimizer(model, make_optimizer(steps), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        def loss(model):
            return jnp.mean((model(x) - y) ** 2)

        value, grads = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grads)
        return value

    return [float(step(model, optimizer)) for _ in range(steps)]


def main() -> None:
    for name, train in (("linen TrainState", train_linen), ("nnx Optimizer", train_nnx)):
        losses = train()
        print(f"{name:17s} loss {losses[0]:.4f} -> {losses[-1]:.4f} in {len(losses)} steps")


if __name__ == "__main__":
    main()
