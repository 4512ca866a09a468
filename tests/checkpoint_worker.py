"""A training run that checkpoints, for the kill-and-resume test in test_checkpoint.py.

Usage: ``python checkpoint_worker.py DIRECTORY TOTAL_STEPS EVERY RESULT``

Trains a small MLP on fixed data to step TOTAL_STEPS, resuming from the latest
checkpoint in DIRECTORY if there is one, and saves one every EVERY steps. It
prints ``start N`` (the first step it runs), ``saving N`` as it begins writing
checkpoint N and ``saved N`` once that is on disk. At the end it pickles the
final params and optimizer state, as NumPy arrays (PRNG keys as their key
data), to RESULT.
"""

from __future__ import annotations

import pickle
import sys

import jax
import jax.numpy as jnp
import numpy as np

import gradtx
from gradtx.checkpoint import Checkpointer

BATCH = 8
_rng = np.random.default_rng(0)
X = _rng.normal(size=(64, 4)).astype(np.float32)
Y = np.sin(X @ np.arange(1.0, 5.0, dtype=np.float32))[:, None]


def init_params():
    k1, k2 = jax.random.split(jax.random.key(1))
    return {
        "hidden": {"w": jax.random.normal(k1, (4, 16)) / 2, "b": jnp.zeros(16)},
        "out": {"w": jax.random.normal(k2, (16, 1)) / 4, "b": jnp.zeros(1)},
    }


def make_optimizer(total_steps):
    schedule = gradtx.warmup_cosine_decay_schedule(0.0, 1e-2, 5, total_steps)
    return gradtx.chain(
        gradtx.clip_by_global_norm(1.0),
        gradtx.add_noise(0.01, 0.55, key=jax.random.key(2)),
        gradtx.adamw(schedule, weight_decay=1e-4, mu_dtype=jnp.bfloat16),
    )


def loss(params, x, y):
    hidden = jnp.tanh(x @ params["hidden"]["w"] + params["hidden"]["b"])
    return jnp.mean((hidden @ params["out"]["w"] + params["out"]["b"] - y) ** 2)


@jax.jit
def train_step(tx, params, opt_state, x, y):
    grads = jax.grad(loss)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return gradtx.apply_updates(params, updates), opt_state


def batch(step):
    """The batch of a step depends on the step alone, so a resumed run sees the same data."""
    rows = (step * BATCH + np.arange(BATCH)) % len(X)
    return X[rows], Y[rows]


def as_numpy(tree):
    def leaf(x):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            return np.asarray(jax.random.key_data(x))
        return np.asarray(x)

    return jax.tree.map(leaf, tree)


def main(directory, total_steps, every, result):
    tx = make_optimizer(total_steps)
    params = jax.jit(init_params)()  # one compilation instead of one per eager op
    with Checkpointer(directory, max_to_keep=2) as ckpt:
        if ckpt.latest_step() is None:
            done, opt_state = 0, jax.jit(tx.init)(params)
        else:
            done, params, opt_state, _ = ckpt.restore(tx, params)
        print(f"start {done + 1}", flush=True)
        for step in range(done + 1, total_steps + 1):
            params, opt_state = train_step(tx, params, opt_state, *batch(step))
            if step % every == 0:
                print(f"saving {step}", flush=True)
                ckpt.save(step, params, opt_state, tx)
                ckpt.wait()
                print(f"saved {step}", flush=True)
    with open(result, "wb") as file:
        pickle.dump(as_numpy((params, opt_state)), file)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
