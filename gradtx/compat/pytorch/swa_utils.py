"""``torch.optim.swa_utils`` for JAX pytrees: averaged models, ``SWALR``, ``update_bn``.

- :func:`averaged_model` is ``AveragedModel``: an object with ``init`` and
  ``update`` that keeps the average of the parameters (and, with
  ``use_buffers``, of the non-trainable statistics) and ``n_averaged``. Its
  averaging is gradtx's own :class:`~gradtx.AverageParams`
  (:func:`~gradtx.polyak_average`, :func:`~gradtx.ema_params`), which the
  ``get_*_avg_fn`` factories return.
- :func:`swalr` is ``SWALR`` as a gradtx schedule.
- :func:`update_bn` recomputes Flax batch statistics over a data iterator, as
  ``update_bn`` does for torch's BatchNorm layers.

A torch SWA script and its gradtx translation::

    swa_model = AveragedModel(model)               swa = swa_utils.averaged_model()
                                                   swa_state = swa.init(variables["params"])
    swa_model.update_parameters(model)             swa_state = swa.update(swa_state, params)
    update_bn(loader, swa_model)                   variables = swa_utils.update_bn(
                                                       loader, apply_fn,
                                                       {**variables, "params": swa_state.params})

Verified against torch 2.13 in float64 (``tests/test_compat_swa_utils.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..._averaging import AverageParams, AverageParamsState, ema_params, polyak_average
from ..._base import check_choice, check_range, Schedule, static, Struct
from ..._schedules import _floats
from ..._tree import safe_increment, tree_zeros_like, zero_count

# -- the averaging functions -----------------------------------------------------


def _check_decay(name: str, decay: Any) -> None:
    if isinstance(decay, (int, float)) and not 0.0 <= decay <= 1.0:
        raise ValueError(f"swa_utils.{name}(decay={decay!r}): decay must be in [0, 1]")


def get_swa_avg_fn() -> AverageParams:
    """The equal-weight (SWA) average, torch's default: ``a <- a + (p - a) / (n + 1)``.

    It is :func:`gradtx.polyak_average`, whose count is ``n_averaged``.

    No arguments. Reference: PyTorch 2.13, ``torch.optim.swa_utils.get_swa_avg_fn``;
    Izmailov et al., arXiv:1803.05407.

    >>> import jax.numpy as jnp
    >>> from gradtx.compat.pytorch import swa_utils
    >>> swa = swa_utils.averaged_model(avg_fn=swa_utils.get_swa_avg_fn())
    >>> state = swa.init({"w": jnp.zeros(())})
    >>> for w in (1.0, 2.0, 6.0):  # torch's AveragedModel gives the same
    ...     state = swa.update(state, {"w": jnp.asarray(w)})
    >>> round(float(state.params["w"]), 4)
    3.0
    """
    return polyak_average()


def get_swa_multi_avg_fn() -> AverageParams:
    """:func:`get_swa_avg_fn`: torch's per-list variant is the same average in JAX.

    No arguments. Reference: PyTorch 2.13, ``torch.optim.swa_utils.get_swa_multi_avg_fn``.

    >>> import jax.numpy as jnp
    >>> from gradtx.compat.pytorch import swa_utils
    >>> swa = swa_utils.averaged_model(multi_avg_fn=swa_utils.get_swa_multi_avg_fn())
    >>> state = swa.init({"w": jnp.zeros(())})
    >>> for w in (1.0, 2.0, 6.0):  # torch's AveragedModel gives the same
    ...     state = swa.update(state, {"w": jnp.asarray(w)})
    >>> round(float(state.params["w"]), 4)
    3.0
    """
    return get_swa_avg_fn()


def get_ema_avg_fn(decay: float = 0.999) -> AverageParams:
    """The exponential moving average ``a <- decay * a + (1 - decay) * p``.

    It is :func:`gradtx.ema_params`; :class:`AveragedModel` copies the params
    at its first update (``n_averaged == 0``) whatever the function, as torch.

    Args:
        decay: in [0, 1] (torch's ValueError otherwise). Default 0.999.

    Reference: PyTorch 2.13, ``torch.optim.swa_utils.get_ema_avg_fn``.

    >>> import jax.numpy as jnp
    >>> from gradtx.compat.pytorch import swa_utils
    >>> swa = swa_utils.averaged_model(avg_fn=swa_utils.get_ema_avg_fn(0.5))
    >>> state = swa.init({"w": jnp.zeros(())})
    >>> for w in (1.0, 2.0, 6.0):  # torch's AveragedModel gives the same
    ...     state = swa.update(state, {"w": jnp.asarray(w)})
    >>> round(float(state.params["w"]), 4)
    3.75
    """
    _check_decay("get_ema_avg_fn", decay)
    return ema_params(decay)


def get_ema_multi_avg_fn(decay: float = 0.999) -> AverageParams:
    """:func:`get_ema_avg_fn`: torch's per-list variant is the same average in JAX.

    Args:
        decay: in [0, 1]. Default 0.999.

    Reference: PyTorch 2.13, ``torch.optim.swa_utils.get_ema_multi_avg_fn``.

    >>> import jax.numpy as jnp
    >>> from gradtx.compat.pytorch import swa_utils
    >>> swa = swa_utils.averaged_model(multi_avg_fn=swa_utils.get_ema_multi_avg_fn(0.5))
    >>> state = swa.init({"w": jnp.zeros(())})
    >>> for w in (1.0, 2.0, 6.0):  # torch's AveragedModel gives the same
    ...     state = swa.update(state, {"w": jnp.asarray(w)})
    >>> round(float(state.params["w"]), 4)
    3.75
    """
    _check_decay("get_ema_multi_avg_fn", decay)
    return ema_params(decay)


# -- the averaged model ------------------------------------------------------------


class AveragedModelState(NamedTuple):
    """The averaged ``params`` and ``buffers`` and how many models they average."""

    n_averaged: jax.Array
    params: Any
    buffers: Any


class AveragedModel(Struct):
    """``torch.optim.swa_utils.AveragedModel`` for pytrees; see :func:`averaged_model`."""

    avg_fn: Any = None
    multi_avg_fn: Any = None
    use_buffers: bool = static(False)
    device: Any = static(None)

    def __post_init__(self):
        if self.avg_fn is not None and self.multi_avg_fn is not None:
            raise ValueError(
                f"swa_utils.averaged_model(avg_fn={self.avg_fn!r}, "
                f"multi_avg_fn={self.multi_avg_fn!r}): give only one of avg_fn and multi_avg_fn"
            )

    def init(self, params: Any, buffers: Any = None) -> AveragedModelState:
        """Copies of ``params`` and ``buffers`` (torch copies the model); ``n_averaged = 0``."""
        copy = jax.tree.map(jnp.copy, (params, buffers))  # no aliasing of the live params
        return AveragedModelState(zero_count(), *self._place(copy))

    def update(self, state: AveragedModelState, params: Any, buffers: Any = None):
        """``update_parameters(model)``: averages in ``params`` (``buffers`` with use_buffers)."""
        n = state.n_averaged
        averaged = self._average(n, state.params, params)
        if self.use_buffers:
            buffers = self._average(n, state.buffers, buffers)
        else:  # torch keeps the buffers in sync with the model's
            buffers = jax.tree.map(jnp.copy, buffers)
        return AveragedModelState(safe_increment(n), *self._place((averaged, buffers)))

    def _average(self, n: jax.Array, average: Any, current: Any) -> Any:
        fn = self.avg_fn if self.multi_avg_fn is None else self.multi_avg_fn
        fn = get_swa_avg_fn() if fn is None else fn
        if isinstance(fn, AverageParams):
            if fn.decay is not None:  # torch copies at the first update: decay 0 then
                fn = fn.replace(decay=jnp.where(n == 0, 0.0, fn.decay))
            # AverageParams averages params + updates, counting its updates: n_averaged.
            zero = tree_zeros_like(current)
            return fn.update(zero, AverageParamsState(n, average), current)[1].average
        if self.multi_avg_fn is not None:
            new = fn(average, current, n)
        else:
            new = jax.tree.map(lambda a, p: fn(a, p, n), average, current)
        return jax.tree.map(lambda p, a: jnp.where(n == 0, p, a).astype(p.dtype), current, new)

    def _place(self, tree: Any) -> Any:
        return tree if self.device is None else jax.device_put(tree, self.device)


def averaged_model(
    device: Any = None,
    avg_fn: Callable | AverageParams | None = None,
    multi_avg_fn: Callable | AverageParams | None = None,
    use_buffers: bool = False,
) -> AveragedModel:
    """``torch.optim.swa_utils.AveragedModel``: a running average of a model's parameters.

    Update rule, at the n-th call of ``update`` (n = n_averaged = 0, 1, ...)::

        a <- p                       n == 0 (a copy, whatever the function)
        a <- a + (p - a) / (n + 1)   default (SWA: the mean of the models seen)
        a <- avg_fn(a, p, n)         a function of one leaf, or
        a <- multi_avg_fn(a, p, n)   a function of the whole tree

    ``state = swa.init(params, buffers=None)`` copies the model (torch's
    constructor), ``state = swa.update(state, params, buffers)`` is
    ``update_parameters(model)``, and ``state.params``, ``state.buffers`` and
    ``state.n_averaged`` hold the averaged model. ``init`` and ``update`` are pure
    and can be jitted. For Flax, ``params`` is ``variables["params"]`` and
    ``buffers`` the other collections (``variables["batch_stats"]``).

    Args:
        device: if given, the averaged trees are placed there (``jax.device_put``).
        avg_fn, multi_avg_fn: at most one; :func:`get_swa_avg_fn`,
            :func:`get_ema_avg_fn` ... (gradtx averaging objects, leaves of this
            object: changing their decay does not retrace), or a function
            ``(averaged, current, n_averaged) -> averaged``. torch's multi_avg_fn
            updates lists in place; here it takes and returns the tree.
        use_buffers: average the buffers with the same function too; otherwise
            they are copies of the last ones given, as torch keeps them in sync.
            Default False.

    Defaults: device, avg_fn, multi_avg_fn None (the SWA mean).

    Reference: PyTorch 2.13, ``torch.optim.swa_utils.AveragedModel``; Izmailov et
    al., *Averaging Weights Leads to Wider Optima and Better Generalization*,
    arXiv:1803.05407.

    >>> import jax.numpy as jnp
    >>> from gradtx.compat.pytorch import swa_utils
    >>> swa = swa_utils.averaged_model()
    >>> state = swa.init({"w": jnp.zeros(())})
    >>> for w in (1.0, 2.0, 6.0):
    ...     state = swa.update(state, {"w": jnp.asarray(w)})
    >>> float(state.params["w"]), int(state.n_averaged)
    (3.0, 3)
    """
    return AveragedModel(
        avg_fn=avg_fn, multi_avg_fn=multi_avg_fn, use_buffers=use_buffers, device=device
    )


# -- SWALR -------------------------------------------------------------------------

ANNEAL_STRATEGIES = ("cos", "linear")


class Swalr(Schedule):
    lr: Any
    swa_lr: Any
    anneal_epochs: Any = 10
    anneal_strategy: str = static("cos")

    def __post_init__(self):
        check_range(self, "anneal_epochs", low=0, integer=True)
        check_choice(self, "anneal_strategy", ANNEAL_STRATEGIES)

    def __call__(self, count):
        lr, swa_lr, epochs, t = _floats(self.lr, self.swa_lr, self.anneal_epochs, count)
        progress = jnp.where(epochs == 0, 1.0, jnp.clip(t / jnp.maximum(epochs, 1), 0, 1))
        if self.anneal_strategy == "cos":
            alpha = (1 - jnp.cos(jnp.pi * progress)) / 2
        else:
            alpha = progress
        return swa_lr * alpha + lr * (1 - alpha)


def swalr(
    lr: Any,
    swa_lr: Any,
    anneal_epochs: int = 10,
    anneal_strategy: str = "cos",
    last_epoch: int = -1,
) -> Swalr:
    """``torch.optim.swa_utils.SWALR`` as a schedule: anneals from ``lr`` to ``swa_lr``.

    Formula, with E = anneal_epochs and t the scheduler's steps since it started::

        alpha_t = f(min(t / E, 1))   (f(x) = (1 - cos(pi x)) / 2 for "cos", x for "linear")
        value(t) = swa_lr * alpha_t + lr * (1 - alpha_t)      (alpha_t = 1 when E = 0)

    Args:
        lr: the optimizer's learning rate when SWALR *starts stepping* (torch
            reads it from the optimizer: it recovers that rate from the current
            one at every step, so it anneals from wherever an earlier scheduler
            left it). Switch to it with :func:`gradtx.join_schedules`.
        swa_lr: the rate it ends at and then holds.
        anneal_epochs: E >= 0, a whole number of scheduler steps (epochs in torch's
            example, where it steps once per epoch). Default 10.
        anneal_strategy: static, ``"cos"`` or ``"linear"``. Default ``"cos"``.
        last_epoch: accepted for torch's signature; SWALR's values depend only on
            the steps it has taken, so it changes nothing (as in torch). Default -1.

    Reference: PyTorch 2.13, ``torch.optim.swa_utils.SWALR``; Izmailov et al.,
    arXiv:1803.05407.

    torch's quirks, reproduced: with E = 0, *building* SWALR already sets the
    optimizer's rate to ``swa_lr`` (value(0) = swa_lr), even before the SWA phase
    begins; with E > 0 building it changes nothing and value(0) = lr.

    >>> from gradtx.compat.pytorch import swa_utils
    >>> schedule = swa_utils.swalr(0.1, swa_lr=0.01, anneal_epochs=2, anneal_strategy="linear")
    >>> [round(float(schedule(t)), 6) for t in range(4)]
    [0.1, 0.055, 0.01, 0.01]
    """
    del last_epoch
    return Swalr(lr=lr, swa_lr=swa_lr, anneal_epochs=anneal_epochs, anneal_strategy=anneal_strategy)


# -- update_bn -----------------------------------------------------------------------


def update_bn(
    loader: Iterable[Any],
    apply_fn: Callable[[Any, Any], Any],
    variables: Any,
    momentum: float = 0.99,
    collection: str = "batch_stats",
) -> dict:
    """Recomputes batch statistics as the equal-weight mean over ``loader``'s batches.

    torch's ``update_bn(loader, model)`` resets every BatchNorm layer's running
    statistics, sets its momentum to None (a cumulative average) and runs the
    model in training mode over the data. The same here, for Flax::

        s_k = the statistics of batch k alone (k = 1, 2, ...)
        a_k = a_{k-1} + (s_k - a_{k-1}) / k          so a_K = mean(s_1, ..., s_K)

    Each batch runs from zero statistics, and a Flax layer then stores
    ``(1 - momentum) * s_k``, which is divided out.

    Args:
        loader: the batches; of a list or tuple the first item is the input, as torch.
        apply_fn: ``apply_fn(variables, batch) -> the new collection``, the model in
            training mode, e.g. ``lambda v, x: model.apply(v, x, train=True,
            mutable=["batch_stats"])[1]["batch_stats"]`` (jit it: it runs per batch).
        variables: the model's variables (a mapping holding ``collection``); the
            returned copy has the new statistics there.
        momentum: in [0, 1), the BatchNorm layers' momentum (Flax's weight of the
            old statistics; 0.99 is ``flax.linen.BatchNorm``'s default). Default 0.99.
        collection: where the statistics live. Default ``"batch_stats"``.

    Reference: PyTorch 2.13, ``torch.optim.swa_utils.update_bn``.

    Differences from torch: Flax keeps the biased batch variance, torch's
    ``running_var`` the unbiased one. An empty ``loader`` is an error (torch
    silently leaves the reset statistics: mean 0, variance 1).

    >>> import jax.numpy as jnp
    >>> from gradtx.compat.pytorch import swa_utils
    >>> apply_fn = lambda v, x: {"mean": 0.01 * jnp.mean(x)}  # a BatchNorm from zeros
    >>> batches = [jnp.array([1.0, 3.0]), jnp.array([5.0, 7.0])]
    >>> out = swa_utils.update_bn(batches, apply_fn, {"batch_stats": {"mean": jnp.zeros(())}})
    >>> round(float(out["batch_stats"]["mean"]), 4)  # the mean of 2 and 6
    4.0
    """
    if not isinstance(momentum, (int, float)) or not 0.0 <= momentum < 1.0:
        raise ValueError(f"swa_utils.update_bn(momentum={momentum!r}): momentum must be in [0, 1)")
    if collection not in variables:
        raise ValueError(
            f"swa_utils.update_bn(collection={collection!r}): the variables hold no such "
            f"collection, only {sorted(variables)}"
        )
    zeros = tree_zeros_like(variables[collection])
    fresh = {**variables, collection: zeros}
    average, batches = zeros, 0
    for batch in loader:
        if isinstance(batch, (list, tuple)):
            batch = batch[0]
        stored = apply_fn(fresh, batch)
        batches += 1
        average = jax.tree.map(
            lambda a, s, k=batches: a + (s / (1 - momentum) - a) / k, average, stored
        )
    if batches == 0:
        raise ValueError(
            "swa_utils.update_bn(loader=...): the loader gave no batch, so there are no "
            "statistics to compute"
        )
    return {**variables, collection: average}
