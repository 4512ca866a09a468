"""Records torch.optim.swa_utils, the reference of ``gradtx.compat.pytorch.swa_utils``.

Run from the repository root with torch 2.13::

    .venv/bin/python tests/reference/record_swa_utils.py

Two kinds of case (``"optimizer"``, the port), in float64 (torch's default dtype float64):

- ``"swa_utils.averaged_model"``: a module with parameters ``w`` (3, 4), ``b`` (4,), ``s`` ()
  and a buffer ``stat`` (4,) is set, at each step 1..``STEPS``, to the step's row of
  :func:`models` (normal draws from ``default_rng(SEED)`` around a drifting mean) and, from
  step ``start`` on, averaged by ``AveragedModel(model, **kwargs).update_parameters``, with
  ``avg_fn``/``multi_avg_fn`` named by their factory (``{"factory", "decay"}``). Stored: the
  averaged model's params and buffer after each step (``"{index}/{leaf}"``, shape
  ``(STEPS, *leaf_shape)``) and ``n_averaged`` (``"{index}/n_averaged"``).
- ``"swa_utils.swalr"``: an SGD optimizer with ``lr`` and ``SWALR(optimizer, **kwargs)``
  built at the start, stepped after each of ``LR_STEPS`` optimizer steps (from step
  ``switch`` on, with a ``CosineAnnealingLR`` stepped before that, when ``cosine`` gives its
  ``T_max``). Stored: the rate each step used, ``param_groups[0]["lr"]`` before it
  (``"{index}/lr"``).

``data/swa_utils.json`` holds the cases and the versions. Torch is imported only inside the
functions; the output is bitwise reproducible.
"""

from __future__ import annotations

import numpy as np

try:  # imported by the tests (package ``reference``) or run as a script
    from .recording import write_recording
except ImportError:
    from recording import write_recording

STEPS = 40
LR_STEPS = 80
SEED = 16
PARAMS = {"w": (3, 4), "b": (4,), "s": ()}
BUFFERS = {"stat": (4,)}


def models() -> dict[str, np.ndarray]:
    """Each leaf at steps 1..STEPS, shape ``(STEPS, *shape)``: a drift plus unit noise."""
    rng = np.random.default_rng(SEED)
    drift = np.linspace(0.0, 2.0, STEPS)
    out = {}
    for k, shape in {**PARAMS, **BUFFERS}.items():
        noise = rng.standard_normal((STEPS, *shape))
        out[k] = drift.reshape(-1, *[1] * len(shape)) + noise
    return out


def _name(function: str) -> dict:
    """The port a case is the reference of, as every recording names it."""
    return {"framework": "pytorch", "optimizer": f"swa_utils.{function}"}


def cases() -> list[dict]:
    def averaged(start=1, **kwargs):
        return {**_name("averaged_model"), "start": start, "kwargs": kwargs}

    def swalr(lr=0.1, cosine=None, switch=0, **kwargs):
        spec = {"lr": lr, "cosine": cosine, "switch": switch, "kwargs": kwargs}
        return {**_name("swalr"), **spec}

    ema = {"factory": "get_ema_avg_fn", "decay": 0.9}
    ema_multi = {"factory": "get_ema_multi_avg_fn", "decay": 0.9}
    return [
        averaged(),
        averaged(avg_fn={"factory": "get_swa_avg_fn"}),
        averaged(multi_avg_fn={"factory": "get_swa_multi_avg_fn"}),
        averaged(avg_fn=ema),
        averaged(multi_avg_fn=ema_multi, use_buffers=True),
        averaged(use_buffers=True),
        averaged(multi_avg_fn={"factory": "get_ema_multi_avg_fn"}),  # decay 0.999
        averaged(start=15),  # n_averaged counts the calls, not the steps
        averaged(start=15, avg_fn=ema, use_buffers=True),
        swalr(swa_lr=0.01),
        swalr(swa_lr=0.01, anneal_epochs=25),
        swalr(swa_lr=0.05, anneal_epochs=25, anneal_strategy="linear"),
        swalr(swa_lr=0.03, anneal_epochs=1),
        swalr(swa_lr=0.03, anneal_epochs=0),  # sets the rate when built
        swalr(swa_lr=0.03, anneal_epochs=0, anneal_strategy="linear"),
        swalr(swa_lr=0.2, anneal_epochs=60),  # anneals upwards
        swalr(swa_lr=0.02, anneal_epochs=7, cosine=50, switch=30),
        swalr(swa_lr=0.02, anneal_epochs=7, anneal_strategy="linear", cosine=50, switch=30),
    ]


def _avg_fn(spec: dict | None):
    from torch.optim import swa_utils

    if spec is None:
        return None
    factory = getattr(swa_utils, spec["factory"])
    return factory(spec["decay"]) if "decay" in spec else factory()


def run_averaged_model(case: dict) -> dict[str, np.ndarray]:
    import torch
    from torch.optim.swa_utils import AveragedModel

    torch.set_default_dtype(torch.float64)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for k, shape in PARAMS.items():
                self.register_parameter(k, torch.nn.Parameter(torch.zeros(shape)))
            for k, shape in BUFFERS.items():
                self.register_buffer(k, torch.zeros(shape))

    model = Model()
    kwargs = dict(case["kwargs"])
    for name in ("avg_fn", "multi_avg_fn"):
        kwargs[name] = _avg_fn(kwargs.get(name))
    swa = AveragedModel(model, **kwargs)
    sequence = models()
    out = {k: [] for k in (*PARAMS, *BUFFERS, "n_averaged")}
    for step in range(1, STEPS + 1):
        with torch.no_grad():
            for k, value in sequence.items():
                getattr(model, k).copy_(torch.tensor(value[step - 1]))
        if step >= case["start"]:
            swa.update_parameters(model)
        for k in (*PARAMS, *BUFFERS):
            out[k].append(getattr(swa.module, k).detach().numpy().copy())
        out["n_averaged"].append(int(swa.n_averaged))
    return {k: np.asarray(v) for k, v in out.items()}


def run_swalr(case: dict) -> dict[str, np.ndarray]:
    import torch
    from torch.optim.swa_utils import SWALR

    torch.set_default_dtype(torch.float64)
    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=case["lr"])
    cosine = None
    if case["cosine"]:
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=case["cosine"])
    swa_scheduler = SWALR(optimizer, **case["kwargs"])
    lrs = []
    for step in range(LR_STEPS):
        lrs.append(optimizer.param_groups[0]["lr"])
        param.grad = torch.ones(1)
        optimizer.step()
        if cosine is not None and step < case["switch"]:
            cosine.step()
        else:
            swa_scheduler.step()
    return {"lr": np.asarray(lrs)}


def main() -> None:
    recorded = cases()
    arrays = []
    for case in recorded:
        run = run_swalr if case["optimizer"] == "swa_utils.swalr" else run_averaged_model
        arrays.append(run(case))
        if not all(np.all(np.isfinite(a)) for a in arrays[-1].values()):
            raise ValueError(f"{case}: not finite")
    write_recording(
        "swa_utils",
        recorded,
        arrays,
        ["torch"],
        steps=STEPS,
        lr_steps=LR_STEPS,
        seed=SEED,
        params={k: list(s) for k, s in PARAMS.items()},
        buffers={k: list(s) for k, s in BUFFERS.items()},
    )


if __name__ == "__main__":
    main()
