"""Records reference trajectories of keras.optimizers.Lamb (the layer-wise family).

Run from the repository root, in an environment with Keras 3 (JAX backend)::

    .venv/bin/python tests/reference/record_layerwise.py

The loss is :mod:`problem`'s family (a separable, nonconvex loss with a drifting linear term;
gradients zeroed when ``t % 17 == 0`` and negated when ``t % 11 == 0``) on leaves whose norms
the trust ratio takes one by one: a matrix ``w`` (3, 4), a rank-3 ``t`` (2, 3, 4), a vector
``b`` (4,), a scalar ``s`` () and a zero-initialised bias ``z`` (4,) (a zero weight norm:
ratio 1 at the first step).

Every case runs ``STEPS`` steps in float64 (``floatx`` float64, float64 ``keras.Variable``s,
``optimizer.apply``) and stores the params after every step in ``data/layerwise.npz`` (keys
``"{index}/{leaf}"``, shape ``(STEPS, *leaf_shape)``; ``"{index}/lr"``, Keras's
``optimizer.learning_rate`` before each step, for cases with a schedule) and the cases in
``data/layerwise.json`` (``{"index", "framework", "optimizer", "kwargs", "schedule"}``, as
``data/cases.json``). Keras is imported only inside :func:`run_keras`.
"""

from __future__ import annotations

import os

import numpy as np

try:  # imported by the tests (package ``reference``) or run as a script
    from .recording import check_trajectory, write_recording
except ImportError:
    from recording import check_trajectory, write_recording

STEPS = 200
SHAPES: dict[str, tuple[int, ...]] = {"w": (3, 4), "t": (2, 3, 4), "b": (4,), "s": (), "z": (4,)}


def _per_leaf(values: np.ndarray) -> dict[str, np.ndarray]:
    out, start = {}, 0
    for name, shape in SHAPES.items():
        size = int(np.prod(shape, dtype=int))
        out[name] = values[start : start + size].reshape(shape)
        start += size
    return out


_K = np.arange(sum(int(np.prod(s, dtype=int)) for s in SHAPES.values()), dtype=np.float64)
A = _per_leaf(1.0 + 0.5 * np.sin(1.3 * _K + 0.5))
C = _per_leaf(0.8 * np.cos(0.7 * _K + 0.2))
PHASE = _per_leaf(0.9 * _K)


def initial_params() -> dict[str, np.ndarray]:
    """Fresh float64 copies of ``p0_k = 1.5 sin(2.1 k + 1) + 0.2``, and zeros for ``z``."""
    p0 = _per_leaf(1.5 * np.sin(2.1 * _K + 1.0) + 0.2)
    p0["z"] = np.zeros(SHAPES["z"])
    return {k: v.copy() for k, v in p0.items()}


def gradient(params: dict, step, xp=np) -> dict:
    """``factor(t) * d/dp [a p**2 + 0.5 sin 3p + c(t) p]`` at 1-based ``step``.

    ``c(t) = C + 0.4 sin(0.06 t + phase)``; ``factor(t)`` is 0 when ``t % 17 == 0``, else -1
    when ``t % 11 == 0``, else 1. Works with ``xp=jax.numpy`` and a traced ``step``.
    """
    factor = xp.where(step % 17 == 0, 0.0, xp.where(step % 11 == 0, -1.0, 1.0))
    return {
        k: xp.asarray(factor, p.dtype)
        * (
            xp.asarray(2.0 * A[k], p.dtype) * p
            + 1.5 * xp.cos(3.0 * p)
            # Constants converted at p's dtype: jax caches a NumPy constant's conversion across
            # the x64 flag, and a float64 one would meet float32 leaves.
            + xp.asarray(C[k], p.dtype)
            + 0.4 * xp.sin(0.06 * step + xp.asarray(PHASE[k], p.dtype))
        )
        for k, p in params.items()
    }


def cases() -> list[dict]:
    """keras.optimizers.Lamb's defaults, then each option."""
    k = lambda schedule=None, **kw: {  # noqa: E731
        "framework": "keras",
        "optimizer": "lamb",
        "kwargs": kw,
        "schedule": schedule,
    }
    return [
        k(),
        k(learning_rate=0.02),
        k(learning_rate=0.02, beta_1=0.8, beta_2=0.99, epsilon=1e-4),
        k(learning_rate=0.02, weight_decay=0.5),
        k(learning_rate=0.02, clipnorm=0.5),
        k(learning_rate=0.02, global_clipnorm=1.0),
        k(learning_rate=0.02, clipvalue=0.3),
        k(
            {
                "type": "ExponentialDecay",
                "initial_learning_rate": 0.03,
                "decay_steps": 20,
                "decay_rate": 0.8,
            }
        ),
    ]


def _init_keras():
    os.environ["KERAS_BACKEND"] = "jax"
    import jax

    jax.config.update("jax_enable_x64", True)
    import keras

    if keras.backend.backend() != "jax":
        raise RuntimeError(f"Keras must use the JAX backend, got {keras.backend.backend()}")
    keras.config.set_floatx("float64")
    return keras


def run_keras(case: dict) -> dict[str, np.ndarray]:
    """Runs one case; returns the params after every step keyed by leaf (and ``lr``)."""
    keras = _init_keras()
    variables = {k: keras.Variable(v, dtype="float64", name=k) for k, v in initial_params().items()}
    kwargs = dict(case["kwargs"])
    if case["schedule"] is not None:
        spec = {key: v for key, v in case["schedule"].items() if key != "type"}
        kwargs["learning_rate"] = getattr(keras.optimizers.schedules, case["schedule"]["type"])(
            **spec
        )
    opt = keras.optimizers.Lamb(**kwargs)
    opt.build(list(variables.values()))
    out = {k: [] for k in SHAPES} | ({"lr": []} if case["schedule"] else {})
    for step in range(1, STEPS + 1):
        params = {k: np.asarray(v.value, dtype=np.float64) for k, v in variables.items()}
        grads = gradient(params, step)
        if case["schedule"] is not None:
            out["lr"].append(float(opt.learning_rate))
        opt.apply([grads[k] for k in SHAPES], list(variables.values()))
        for k, v in variables.items():
            if v.value.dtype != np.float64:
                raise TypeError(f"{case}: variable {k} became {v.value.dtype}")
            out[k].append(np.asarray(v.value))
    return {k: np.stack(v).astype(np.float64) for k, v in out.items()}


def check(index: int, case: dict, arrays: dict[str, np.ndarray]) -> float:
    """Raises unless the case is finite, bounded and moving; returns its smallest move."""
    # Keras's default lr=1e-3 takes steps of 1e-3 times a layer's norm.
    min_move = 1e-3 if not case["kwargs"] and not case["schedule"] else 1e-2
    return check_trajectory(index, case, arrays, initial_params(), STEPS, min_move)


def main() -> None:
    _init_keras()
    recorded, arrays = cases(), []
    for index, case in enumerate(recorded):
        arrays.append(run_keras(case))
        print(f"{index:2d} min move {check(index, case, arrays[-1]):.3f}  {case['kwargs']}")
    leaves = {k: list(s) for k, s in SHAPES.items()}
    write_recording("layerwise", recorded, arrays, ["keras", "jax"], steps=STEPS, leaves=leaves)


if __name__ == "__main__":
    main()
