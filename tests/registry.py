"""Every public gradtx object, with how to build it for the shared contract tests.

``test_registry_is_complete`` fails when a public name is neither listed here
nor declared as a helper, so nothing public escapes the contract suite.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
from typing import Any

import gradtx


@dataclasses.dataclass(frozen=True)
class Entry:
    """How to build one public object.

    ``kwargs`` builds it; ``alt`` changes numeric hyperparameters (for the
    no-retrace test); ``converge`` is the learning rate and step count with
    which an optimizer must solve the test problems (None: not an optimizer).
    """

    name: str
    kwargs: dict[str, Any]
    alt: dict[str, Any]
    kind: str = "transform"  # "optimizer", "transform", "schedule", "combinator"
    converge: tuple[dict[str, Any], int] | None = None
    needs_params: bool = False
    extra_args: bool = False

    @property
    def factory(self) -> Callable[..., Any]:
        return getattr(gradtx, self.name)

    def build(self, **overrides: Any) -> Any:
        return self.factory(**{**self.kwargs, **overrides})


def _opt(name, kwargs, alt, quadratic, rosenbrock, **more):
    """An optimizer entry, with (kwargs, steps) that solve each test problem."""
    return Entry(name, kwargs, alt, kind="optimizer", converge=(quadratic, rosenbrock), **more)


def _decaying(init: float, every: int):
    # Sign methods take steps of fixed size: they converge only if lr decays.
    return gradtx.exponential_decay(init, every, 0.5)


OPTIMIZERS = [
    _opt(
        "sgd",
        {"learning_rate": 0.1, "momentum": 0.9},
        {"learning_rate": 0.05, "momentum": 0.8},
        ({"learning_rate": 0.05}, 300),
        ({"learning_rate": 1e-3, "momentum": 0.9}, 3000),
    ),
    _opt(
        "adagrad",
        {"learning_rate": 0.5},
        {"learning_rate": 0.3, "eps": 1e-6},
        ({"learning_rate": 0.5}, 300),
        ({"learning_rate": 0.5}, 3000),
    ),
    _opt(
        "rmsprop",
        {"learning_rate": 0.01, "momentum": 0.9, "centered": True},
        {"learning_rate": 0.02, "decay": 0.8},
        ({"learning_rate": 0.01}, 800),
        ({"learning_rate": 2e-3}, 3000),
    ),
    _opt(
        "adadelta",
        {"learning_rate": 1.0},
        {"learning_rate": 0.5, "rho": 0.8},
        ({"eps": 1e-3}, 1000),
        ({"eps": 1e-3}, 3000),
    ),
    _opt(
        "adam",
        {"learning_rate": 0.05},
        {"learning_rate": 0.01, "b1": 0.8, "b2": 0.99},
        ({"learning_rate": 0.05}, 500),
        ({"learning_rate": 0.02}, 3000),
    ),
    _opt(
        "adamw",
        {"learning_rate": 0.05, "weight_decay": 1e-3},
        {"weight_decay": 1e-2, "eps": 1e-6},
        ({"learning_rate": 0.05}, 500),
        ({"learning_rate": 0.02, "weight_decay": 0.0}, 3000),
    ),
    _opt(
        "adamax",
        {"learning_rate": 0.05},
        {"learning_rate": 0.1, "b2": 0.99},
        ({"learning_rate": 0.05}, 500),
        ({"learning_rate": 0.02}, 3000),
    ),
    _opt(
        "adamaxw",
        {"learning_rate": 0.05},
        {"weight_decay": 1e-2, "b1": 0.8},
        ({"learning_rate": 0.05}, 500),
        ({"learning_rate": 0.02, "weight_decay": 0.0}, 3000),
    ),
    _opt(
        "nadam",
        {"learning_rate": 0.05},
        {"learning_rate": 0.01, "b1": 0.8},
        ({"learning_rate": 0.05}, 500),
        ({"learning_rate": 0.02}, 3000),
    ),
    _opt(
        "nadamw",
        {"learning_rate": 0.05},
        {"weight_decay": 1e-2, "b2": 0.99},
        ({"learning_rate": 0.05}, 500),
        ({"learning_rate": 0.02, "weight_decay": 0.0}, 3000),
    ),
    _opt(
        "amsgrad",
        {"learning_rate": 0.05},
        {"learning_rate": 0.01, "eps": 1e-6},
        ({"learning_rate": 0.05}, 500),
        ({"learning_rate": 0.02}, 3000),
    ),
    _opt(
        "radam",
        {"learning_rate": 0.05},
        {"learning_rate": 0.01, "threshold": 4.0},
        ({"learning_rate": 0.05}, 500),
        ({"learning_rate": 0.02}, 3000),
    ),
    _opt(
        "rprop",
        {"learning_rate": 0.01},
        {"eta_plus": 1.1, "eta_minus": 0.4},
        ({"learning_rate": 0.01}, 300),
        ({"learning_rate": 0.01}, 3000),
    ),
    _opt(
        "noisy_sgd",
        {"learning_rate": 0.05},
        {"eta": 0.02, "gamma": 0.6},
        ({"learning_rate": 0.05, "eta": 1e-4}, 300),
        ({"learning_rate": 1e-3, "eta": 1e-6}, 3000),
    ),
    _opt(
        "sign_sgd",
        {"learning_rate": 0.01},
        {"learning_rate": 0.02},
        ({"learning_rate": _decaying(0.1, 50)}, 500),
        ({"learning_rate": _decaying(0.05, 300)}, 3000),
    ),
    _opt(
        "signum",
        {"learning_rate": 0.01},
        {"learning_rate": 0.02, "beta": 0.8},
        ({"learning_rate": _decaying(0.1, 50)}, 500),
        ({"learning_rate": _decaying(0.05, 300)}, 3000),
    ),
    _opt(
        "lion",
        {"learning_rate": 0.01},
        {"learning_rate": 0.02, "b1": 0.8, "weight_decay": 0.0},
        ({"learning_rate": _decaying(0.1, 50), "weight_decay": 0.0}, 500),
        ({"learning_rate": _decaying(0.05, 300), "weight_decay": 0.0}, 3000),
    ),
]

TRANSFORMS = [
    Entry("identity", {}, {}),
    Entry("scale", {"step_size": -0.1}, {"step_size": -0.2}),
    Entry("scale_by_learning_rate", {"learning_rate": 0.1}, {"learning_rate": 0.2}),
    Entry(
        "scale_by_schedule",
        {"step_size_fn": gradtx.linear_schedule(1.0, 0.1, 10)},
        {"step_size_fn": gradtx.linear_schedule(2.0, 0.2, 10)},
    ),
    Entry("trace", {"decay": 0.9}, {"decay": 0.5}),
    Entry(
        "scale_by_momentum",
        {"momentum": 0.9, "dampening": 0.1},
        {"momentum": 0.5, "dampening": 0.2},
    ),
    Entry("ema", {"decay": 0.9}, {"decay": 0.8}),
    Entry("bias_correction", {"decay": 0.9}, {"decay": 0.8}),
    Entry("scale_by_rms", {"decay": 0.9, "centered": True}, {"decay": 0.8, "eps": 1e-6}),
    Entry("scale_by_stddev", {}, {"decay": 0.8}),
    Entry("scale_by_rss", {}, {"initial_accumulator_value": 0.2}),
    Entry("scale_by_adadelta", {}, {"rho": 0.8}),
    Entry("scale_by_adam", {}, {"b1": 0.8, "b2": 0.99, "eps": 1e-6}),
    Entry("scale_by_amsgrad", {}, {"b1": 0.8, "b2": 0.99}),
    Entry("scale_by_adamax", {}, {"b1": 0.8, "b2": 0.99}),
    Entry("scale_by_nadam", {}, {"b1": 0.8, "momentum_decay": 0.01}),
    Entry("scale_by_radam", {}, {"b1": 0.8, "threshold": 4.0}),
    Entry("scale_by_rprop", {"learning_rate": 0.01}, {"learning_rate": 0.02, "eta_plus": 1.3}),
    Entry("scale_by_sign", {}, {}),
    Entry("scale_by_lion", {}, {"b1": 0.8, "b2": 0.9}),
    Entry("clip", {"max_delta": 0.5}, {"max_delta": 0.7}),
    Entry("clip_by_global_norm", {"max_norm": 0.5}, {"max_norm": 0.7}),
    Entry("clip_by_block_rms", {"threshold": 0.5}, {"threshold": 0.7}),
    Entry("add_decayed_weights", {"weight_decay": 0.1}, {"weight_decay": 0.2}, needs_params=True),
    Entry("add_l1_penalty", {"l1": 0.1}, {"l1": 0.2}, needs_params=True),
    Entry("soft_threshold", {"threshold": 0.01}, {"threshold": 0.02}, needs_params=True),
    Entry("add_noise", {"eta": 0.01, "gamma": 0.55}, {"eta": 0.02}),
]

# Combinators take other transforms; they are built here with small inner ones.
COMBINATORS = [
    Entry("chain", {}, {}, kind="combinator"),
    Entry("masked", {}, {}, kind="combinator"),
]

# Public names that are not transforms, schedules or optimizers.
HELPERS = {
    "apply_updates",
    "tree_get",
    "tree_set",
    "tree_get_all_with_path",
    "Struct",
    "Transform",
    "Schedule",
}

ALL = {e.name: e for e in OPTIMIZERS + TRANSFORMS + COMBINATORS}
