"""Every public name of torch.optim and keras.optimizers has its port in gradtx.compat.

The inventory is read from the installed libraries, so a name they add fails here until it is
ported or refused below with the reason. Each port's numbers are proven elsewhere (the
recorded trajectories of tests/reference); this only keeps the inventory complete.
"""

from __future__ import annotations

import inspect
import os
import re

import pytest

from gradtx import compat

# Not optimizers, schedules or utilities a JAX user ports, each with the reason.
TORCH_REFUSED = {
    "Optimizer": "the base class; gradtx's is gradtx.Transform",
    "LRScheduler": "the base class; gradtx's is gradtx.Schedule",
    "swap_in_optimizer_params_and_state": (
        "swaps tensors held by a stateful optimizer; a gradtx state is a value: pass another one"
    ),
}
KERAS_REFUSED = {
    "Optimizer": "the base class; gradtx's is gradtx.Transform",
    "LearningRateSchedule": "the base class; gradtx's is gradtx.Schedule",
    "serialize": "Keras's config format; gradtx transforms print and checkpoint themselves",
    "deserialize": "Keras's config format; see serialize",
    "get": "looks an optimizer up by its string name in Keras's registry",
    "legacy": "Keras 2's optimizers, kept for old saved models",
}


def _snake(name: str) -> str:
    """CosineAnnealingLR -> cosine_annealing_lr, ScheduleFreeAdamW -> schedule_free_adamw.

    A final lone capital stays with its word (AdamW), as the ports name it.
    """
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])(?![A-Z]$)|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _public(module, *, defined_in: str | None = None) -> set[str]:
    names = set()
    for name, value in vars(module).items():
        if name.startswith("_") or not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        if defined_in and not getattr(value, "__module__", "").startswith(defined_in):
            continue
        names.add(name)
    return names


def _missing(names: set[str], port, refused: dict[str, str]) -> list[str]:
    """Names with neither a port (lowercased or snake_case, as compat names them) nor a reason."""
    return sorted(
        n
        for n in names - set(refused)
        if not any(hasattr(port, candidate) for candidate in (n.lower(), _snake(n)))
    )


def test_snake_case_is_the_ports_naming():
    assert _snake("CosineAnnealingLR") == "cosine_annealing_lr"
    assert _snake("ReduceLROnPlateau") == "reduce_lr_on_plateau"
    assert _snake("SWALR") == "swalr"
    assert _snake("ScheduleFreeAdamW") == "schedule_free_adamw"
    assert _snake("AdamW") == "adamw" and _snake("LossScaleOptimizer") == "loss_scale_optimizer"


def test_every_torch_optim_name_is_ported():
    torch_optim = pytest.importorskip("torch.optim")
    from torch.optim import lr_scheduler, swa_utils

    optimizers = _public(torch_optim, defined_in="torch.optim")
    assert {"AdamW", "SparseAdam", "LBFGS"} <= optimizers
    assert not _missing(optimizers, compat.pytorch, TORCH_REFUSED)
    schedulers = _public(lr_scheduler, defined_in="torch.optim.lr_scheduler")
    assert {"OneCycleLR", "ReduceLROnPlateau", "SequentialLR"} <= schedulers
    assert not _missing(schedulers, compat.pytorch.lr_scheduler, TORCH_REFUSED)
    utilities = _public(swa_utils, defined_in="torch.optim.swa_utils")
    assert {"AveragedModel", "SWALR", "update_bn"} <= utilities
    assert not _missing(utilities, compat.pytorch.swa_utils, TORCH_REFUSED)


def test_every_keras_optimizers_name_is_ported():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    optimizers = {n for n in dir(keras.optimizers) if not n.startswith("_")} - {"schedules"}
    assert {"Adam", "LossScaleOptimizer", "OptimizerMap"} <= optimizers
    assert not _missing(optimizers, compat.keras, KERAS_REFUSED)
    schedules = {n for n in dir(keras.optimizers.schedules) if not n.startswith("_")}
    assert "CosineDecayRestarts" in schedules
    assert not _missing(schedules, compat.keras.schedules, KERAS_REFUSED)
