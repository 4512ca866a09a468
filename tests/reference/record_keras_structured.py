"""Records reference trajectories of keras.optimizers.Adafactor and keras.optimizers.Muon.

Run from the repository root, in an environment with Keras 3 (JAX backend)::

    .venv/bin/python tests/reference/record_keras_structured.py

The loss is :mod:`record_layerwise`'s (a separable, nonconvex loss with a drifting linear term;
gradients zeroed when ``t % 17 == 0`` and negated when ``t % 11 == 0``) on leaves chosen for
each optimizer (``SHAPES``): for Adafactor a matrix, a rank-3 leaf (factored over its last two
axes), a vector, a scalar and a zero-initialised bias (RMS floored at ``epsilon_2``); for Muon
a wide and a tall matrix, an ``embedding`` and a ``head`` matrix (routed by name), a vector, a
scalar and a rank-3 leaf (Adam).

Every case runs ``STEPS`` steps in float64 (``floatx`` float64, float64 ``keras.Variable``s
named as the leaves, ``optimizer.apply``, inside :func:`float64_reductions`) and stores the
params after the steps ``SAVED`` (0-based indices) in ``data/keras_structured.npz`` (keys
``"{index}/{leaf}"``, shape ``(len(SAVED), *leaf_shape)``) and the cases in
``data/keras_structured.json``
(``{"index", "framework", "optimizer", "kwargs", "schedule"}``, as ``data/cases.json``).
Keras is imported only inside :func:`run_keras`.

Keras 3.x computes ``ops.mean`` and ``ops.norm`` of a float64 tensor in float32 (its
dtype lattice promotes float64 with float32 to float32): Adafactor's row and column means
and Muon's Frobenius normalisation carry float32 rounding (relative 1e-8 at step 1), which
the nonconvex loss then amplifies. :func:`float64_reductions` computes those two in float64
while recording, so the reference is Keras's own update in float64;
``test_compat_keras_structured`` checks Keras unpatched against the same port to float32
precision.
"""

from __future__ import annotations

import contextlib

import numpy as np

try:  # imported by the tests (package ``reference``) or run as a script
    from .recording import check_trajectory, write_recording
except ImportError:
    from recording import check_trajectory, write_recording

try:  # imported by the tests (package ``reference``) or run as a script
    from .record_layerwise import _init_keras
except ImportError:
    from record_layerwise import _init_keras

STEPS = 200
SAVED = np.r_[0:10, 19:STEPS:10]  # every step at first, then every tenth: the file stays small
SHAPES: dict[str, dict[str, tuple[int, ...]]] = {
    "adafactor": {"w": (3, 4), "t": (2, 3, 4), "b": (4,), "s": (), "z": (4,)},
    "muon": {
        "w": (3, 4),
        "tall": (5, 3),
        "embedding": (4, 3),
        "head": (3, 2),
        "b": (4,),
        "s": (),
        "t": (2, 2, 3),
    },
}
CLASSES = {"adafactor": "Adafactor", "muon": "Muon"}


def _constants(optimizer: str):
    shapes = SHAPES[optimizer]
    k = np.arange(sum(int(np.prod(s, dtype=int)) for s in shapes.values()), dtype=np.float64)

    def per_leaf(values):
        out, start = {}, 0
        for name, shape in shapes.items():
            size = int(np.prod(shape, dtype=int))
            out[name] = values[start : start + size].reshape(shape)
            start += size
        return out

    return per_leaf, k


def initial_params(optimizer: str) -> dict[str, np.ndarray]:
    """Fresh float64 ``p0_k = 1.5 sin(2.1 k + 1) + 0.2``, and zeros for ``z``."""
    per_leaf, k = _constants(optimizer)
    p0 = per_leaf(1.5 * np.sin(2.1 * k + 1.0) + 0.2)
    if "z" in p0:
        p0["z"] = np.zeros_like(p0["z"])
    return p0


def gradient(optimizer: str, params: dict, step, xp=np) -> dict:
    """``factor(t) * d/dp [a p**2 + 0.5 sin 3p + c(t) p]`` at 1-based ``step``.

    ``c(t) = C + 0.4 sin(0.06 t + phase)``; ``factor(t)`` is 0 when ``t % 17 == 0``, else -1
    when ``t % 11 == 0``, else 1. Works with ``xp=jax.numpy`` and a traced ``step``.
    """
    per_leaf, k = _constants(optimizer)
    a = per_leaf(1.0 + 0.5 * np.sin(1.3 * k + 0.5))
    c = per_leaf(0.8 * np.cos(0.7 * k + 0.2))
    phase = per_leaf(0.9 * k)
    factor = xp.where(step % 17 == 0, 0.0, xp.where(step % 11 == 0, -1.0, 1.0))
    return {
        n: xp.asarray(factor, p.dtype)
        * (
            xp.asarray(2.0 * a[n], p.dtype) * p
            + 1.5 * xp.cos(3.0 * p)
            + xp.asarray(c[n], p.dtype)
            + 0.4 * xp.sin(0.06 * step + xp.asarray(phase[n], p.dtype))
        )
        for n, p in params.items()
    }


def cases() -> list[dict]:
    """Each optimizer's defaults, then each of its options."""

    def case(optimizer, schedule=None, **kw):
        return {"framework": "keras", "optimizer": optimizer, "kwargs": kw, "schedule": schedule}

    decay = {"type": "ExponentialDecay", "initial_learning_rate": 0.05, "decay_steps": 20}
    return [
        case("adafactor"),
        case("adafactor", learning_rate=0.05),
        case("adafactor", learning_rate=0.1, beta_2_decay=-0.5, epsilon_1=1e-2, epsilon_2=0.1),
        case("adafactor", learning_rate=0.05, clip_threshold=0.3, relative_step=False),
        case("adafactor", learning_rate=0.05, weight_decay=2.0),
        case("adafactor", learning_rate=0.05, clipnorm=0.5),
        case("adafactor", learning_rate=0.05, global_clipnorm=1.0),
        case("adafactor", learning_rate=0.05, clipvalue=0.5),
        case("adafactor", {**decay, "decay_rate": 0.8}, weight_decay=1.0),
        case("muon"),
        case("muon", learning_rate=0.02),
        case(
            "muon",
            learning_rate=0.02,
            adam_beta_1=0.8,
            adam_beta_2=0.99,
            epsilon=1e-4,
            adam_lr_ratio=0.5,
        ),
        case("muon", learning_rate=0.02, weight_decay=1.0, adam_weight_decay=None),
        case("muon", learning_rate=0.02, weight_decay=None, adam_weight_decay=2.0),
        case(
            "muon",
            learning_rate=0.01,
            momentum=0.8,
            nesterov=False,
            ns_steps=3,
            muon_a=2.0,
            muon_b=-1.5,
            muon_c=0.5,
            rms_rate=None,
        ),
        case("muon", learning_rate=0.02, exclude_embeddings=False, exclude_layers=["head", "ta.l"]),
        case("muon", learning_rate=0.02, clipnorm=0.5),
        case("muon", learning_rate=0.02, global_clipnorm=1.0),
        case("muon", learning_rate=0.02, clipvalue=0.3),
        case("muon", {**decay, "decay_rate": 0.8}),
    ]


@contextlib.contextmanager
def float64_reductions():
    """Keras's JAX ``mean`` and ``norm`` keep float64 inputs in float64 inside the block."""
    import jax.numpy as jnp
    from keras.src.backend import linalg, numpy

    mean, norm = numpy.mean, linalg.norm

    def mean64(x, axis=None, keepdims=False):
        if jnp.asarray(x).dtype != jnp.float64:
            return mean(x, axis=axis, keepdims=keepdims)
        return jnp.mean(jnp.asarray(x), axis=axis, keepdims=keepdims)

    def norm64(x, ord=None, axis=None, keepdims=False):
        if jnp.asarray(x).dtype != jnp.float64:
            return norm(x, ord=ord, axis=axis, keepdims=keepdims)
        return jnp.linalg.norm(jnp.asarray(x), ord=ord, axis=axis, keepdims=keepdims)

    numpy.mean, linalg.norm = mean64, norm64
    try:
        yield
    finally:
        numpy.mean, linalg.norm = mean, norm


def run_keras(case: dict, steps: int = STEPS, exact: bool = True) -> dict[str, np.ndarray]:
    """Runs one case; returns the params after the steps ``SAVED`` (of ``steps``), by leaf.

    ``exact`` runs Keras inside :func:`float64_reductions`; without it Keras computes its
    means and norms in float32.
    """
    keras = _init_keras()
    with float64_reductions() if exact else contextlib.nullcontext():
        return _run(keras, case, steps)


def _run(keras, case: dict, steps: int) -> dict[str, np.ndarray]:
    optimizer = case["optimizer"]
    params = initial_params(optimizer)
    variables = {k: keras.Variable(v, dtype="float64", name=k) for k, v in params.items()}
    kwargs = dict(case["kwargs"])
    if case["schedule"] is not None:
        spec = {key: v for key, v in case["schedule"].items() if key != "type"}
        kwargs["learning_rate"] = getattr(keras.optimizers.schedules, case["schedule"]["type"])(
            **spec
        )
    opt = getattr(keras.optimizers, CLASSES[optimizer])(**kwargs)
    opt.build(list(variables.values()))
    out = {k: [] for k in params}
    for step in range(1, steps + 1):
        current = {k: np.asarray(v.value, dtype=np.float64) for k, v in variables.items()}
        grads = gradient(optimizer, current, step)
        opt.apply([grads[k] for k in params], list(variables.values()))
        for k, v in variables.items():
            if v.value.dtype != np.float64:
                raise TypeError(f"{case}: variable {k} became {v.value.dtype}")
            out[k].append(np.asarray(v.value))
    return {k: np.stack(v).astype(np.float64)[SAVED[steps > SAVED]] for k, v in out.items()}


def check(index: int, case: dict, arrays: dict[str, np.ndarray]) -> float:
    """Raises unless the case is finite, bounded and moving; returns its smallest move."""
    # Adafactor steps a zero bias by lr * epsilon_2 = 1e-6 at Keras's defaults.
    p0 = initial_params(case["optimizer"])
    return check_trajectory(index, case, arrays, p0, len(SAVED), min_move=1e-4)


def main() -> None:
    _init_keras()
    recorded, arrays = cases(), []
    for index, case in enumerate(recorded):
        arrays.append(run_keras(case))
        print(f"{index:2d} min move {check(index, case, arrays[-1]):.3f}  {case['kwargs']}")
    write_recording(
        "keras_structured",
        recorded,
        arrays,
        ["keras", "jax"],
        steps=STEPS,
        saved=SAVED.tolist(),
        leaves={o: {k: list(s) for k, s in shapes.items()} for o, shapes in SHAPES.items()},
    )


if __name__ == "__main__":
    main()
