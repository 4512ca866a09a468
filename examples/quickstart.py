"""Fits a small least-squares problem with a chained optimizer and prints what it did.

Run: python examples/quickstart.py
"""

import jax
import jax.numpy as jnp

import gradtx


def main() -> None:
    key_x, key_w = jax.random.split(jax.random.key(0))
    x = jax.random.normal(key_x, (256, 8))
    y = x @ jax.random.normal(key_w, (8,)) + 0.5
    params = {"w": jnp.zeros(8), "b": jnp.zeros(())}

    def loss(params):
        return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)

    schedule = gradtx.warmup_cosine_decay_schedule(0.0, 0.1, warmup_steps=20, decay_steps=300)
    tx = gradtx.chain(gradtx.clip_by_global_norm(1.0), gradtx.adamw(schedule, weight_decay=1e-4))
    print(tx)

    @jax.jit
    def step(tx, params, state):
        value, grads = jax.value_and_grad(loss)(params)
        updates, state = tx.update(grads, state, params)
        return gradtx.apply_updates(params, updates), state, value

    state = tx.init(params)
    for t in range(300):
        params, state, value = step(tx, params, state)
        if t % 50 == 0 or t == 299:
            lr = gradtx.tree_get(state, "learning_rate")
            print(f"step {t:3d}  loss {float(value):.6f}  learning rate {float(lr):.4f}")


if __name__ == "__main__":
    main()
