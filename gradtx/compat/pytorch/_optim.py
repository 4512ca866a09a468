"""torch.optim's optimizer classes (SGD ... ASGD) as chains of gradtx primitives."""

from __future__ import annotations

from typing import Any

from ..._adam import (
    scale_by_adam,
    scale_by_adamax,
    scale_by_amsgrad,
    scale_by_nadam,
    scale_by_radam,
)
from ..._adaptive import scale_by_adadelta, scale_by_rms, scale_by_rss
from ..._averaging import polyak_average
from ..._base import Transform
from ..._combine import Chain, identity, named_recipe, recipe, shared_args
from ..._momentum import scale_by_momentum
from ..._regularize import add_decayed_weights
from ..._scale import scale, scale_by_learning_rate, scale_by_schedule, value_at
from ..._schedules import asgd_step_size, inverse_time_decay
from ..._sign import scale_by_rprop

Betas = tuple[float, float]
CycledBetas = tuple[Any, float]
"""(beta1, beta2), beta1 a number or a schedule: what torch's OneCycleLR and CyclicLR cycle."""


#: The Args entries of the flags every torch.optim optimizer takes, written once: a line
#: ``<torch's flags>`` in a docstring becomes these (``documents_torch_flags``).
_TORCH_FLAGS_ARGS = """\
maximize: ascend the objective (torch negates the gradient first). Default False.
foreach, fused, capturable, differentiable: accepted and ignored (no effect on the numbers).
"""
documents_torch_flags = shared_args("<torch's flags>", _TORCH_FLAGS_ARGS)


def _maximize(maximize: bool) -> Transform:
    """torch negates the gradient first when maximizing."""
    return scale(-1.0) if maximize else identity()


def _coupled(weight_decay: float) -> Transform:
    """torch's default weight decay: L2, added to the gradient before anything else."""
    return add_decayed_weights(weight_decay) if weight_decay else identity()


def _check_nonnegative(name: str, **values: float) -> None:
    for arg, value in values.items():
        if isinstance(value, (int, float)) and value < 0:
            raise ValueError(f"pytorch.{name}({arg}={value!r}): {arg} must be >= 0")


@recipe
@documents_torch_flags
def sgd(
    lr: Any = 1e-3,
    momentum: Any = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    *,
    maximize: bool = False,
    foreach: bool | None = None,
    differentiable: bool = False,
    fused: bool | None = None,
) -> Chain:
    """``torch.optim.SGD``.

    Update rule (torch 2.x)::

        g <- g + weight_decay * p
        b_1 = g;  b_t = momentum * b_{t-1} + (1 - dampening) * g   (if momentum != 0)
        g <- g + momentum * b_t  (nesterov)  or  b_t
        p <- p - lr_t * g

    ``momentum`` may be a schedule, read at the 0-based step: the momentum
    ``OneCycleLR`` or ``CyclicLR`` (``cycle_momentum=True``) writes into the
    optimizer, ``schedule.momentum`` of :mod:`gradtx.compat.pytorch.lr_scheduler`.
    torch checks ``momentum > 0`` for Nesterov on the number it is built with,
    before any cycling; a schedule is checked to stay in [0, 1] only.

    Args:
        lr: a number or a schedule, >= 0. Default 1e-3 (torch's).
        momentum: in [0, 1], a number or a schedule. Default 0.0.
        dampening: in [0, 1]. Default 0.0.
        weight_decay: L2 added to the gradient, >= 0. Default 0.0.
        nesterov: Nesterov momentum; needs momentum > 0 and dampening 0. Default False.
        <torch's flags>

    Reference: PyTorch 2.13, ``torch.optim.SGD``; Sutskever et al., *On the importance of
    initialization and momentum in deep learning*, ICML 2013.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import pytorch
    >>> tx = pytorch.sgd(lr=0.1, momentum=0.9)
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # torch gives the same
    ...     updates, state = tx.update({"w": jnp.array(2.0)}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> round(float(params["w"]), 4)
    0.42
    """
    del foreach, differentiable, fused
    _check_nonnegative("sgd", lr=lr, momentum=momentum, weight_decay=weight_decay)
    if nesterov and ((not callable(momentum) and momentum <= 0) or dampening != 0):
        raise ValueError("pytorch.sgd(nesterov=True): requires momentum > 0 and dampening = 0")
    return named_recipe(
        "pytorch.sgd",
        _maximize(maximize),
        _coupled(weight_decay),
        scale_by_momentum(momentum, dampening, nesterov) if momentum else identity(),
        scale_by_learning_rate(lr),
    )


@recipe
@documents_torch_flags
def adagrad(
    lr: Any = 1e-2,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    initial_accumulator_value: float = 0.0,
    eps: float = 1e-10,
    foreach: bool | None = None,
    *,
    maximize: bool = False,
    differentiable: bool = False,
    fused: bool | None = None,
) -> Chain:
    """``torch.optim.Adagrad``: eps outside the root, accumulator from 0, lr decay.

    Update rule::

        g <- g + weight_decay * p
        s_t = s_{t-1} + g**2                         (s_0 = initial_accumulator_value)
        p <- p - lr_t / (1 + (t - 1) * lr_decay) * g / (sqrt(s_t) + eps)

    Args:
        lr: a number or a schedule, >= 0. Default 1e-2.
        lr_decay: >= 0. Default 0.0.
        weight_decay: L2 added to the gradient, >= 0. Default 0.0.
        initial_accumulator_value: s_0, >= 0. Default 0.0.
        eps: added to sqrt(s), >= 0, and > 0 when initial_accumulator_value is 0.
            Default 1e-10.
        <torch's flags>

    Reference: PyTorch 2.13, ``torch.optim.Adagrad``; Duchi, Hazan, Singer, *Adaptive
    Subgradient Methods*, JMLR 2011.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import pytorch
    >>> tx = pytorch.adagrad(lr=0.1)
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # torch gives the same
    ...     updates, state = tx.update({"w": jnp.array(2.0)}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> round(float(params["w"]), 4)
    0.8293
    """
    del foreach, differentiable, fused
    _check_nonnegative("adagrad", lr=lr, lr_decay=lr_decay, weight_decay=weight_decay)
    return named_recipe(
        "pytorch.adagrad",
        _maximize(maximize),
        _coupled(weight_decay),
        scale_by_rss(initial_accumulator_value, eps, eps_in_sqrt=False),
        scale_by_learning_rate(lr),
        scale_by_schedule(inverse_time_decay(1.0, 1, lr_decay)) if lr_decay else identity(),
    )


@recipe
@documents_torch_flags
def rmsprop(
    lr: Any = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: Any = 0.0,
    centered: bool = False,
    capturable: bool = False,
    foreach: bool | None = None,
    maximize: bool = False,
    differentiable: bool = False,
) -> Chain:
    """``torch.optim.RMSprop``: eps outside the root, lr outside the momentum buffer.

    Update rule::

        g <- g + weight_decay * p
        v_t = alpha * v_{t-1} + (1 - alpha) * g**2
        d = g / (sqrt(v_t - m_t**2 [centered]) + eps)
        b_t = momentum * b_{t-1} + d   (if momentum > 0; else b_t = d)
        p <- p - lr_t * b_t

    ``momentum`` may be a schedule (torch's cycled momentum), as in :func:`sgd`.

    Args:
        lr: a number or a schedule, >= 0. Default 1e-2.
        alpha: decay of v, in [0, 1]. Default 0.99.
        eps: added to the root, > 0. Default 1e-8.
        weight_decay: L2 added to the gradient, >= 0. Default 0.0.
        momentum: in [0, 1], a number or a schedule. Default 0.0.
        centered: subtract the squared mean gradient m_t**2 from v_t. Default False.
        <torch's flags>

    Reference: PyTorch 2.13, ``torch.optim.RMSprop``; Tieleman & Hinton, Lecture 6.5
    (2012); centred form: Graves, arXiv:1308.0850.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import pytorch
    >>> tx = pytorch.rmsprop(lr=0.01)
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # torch gives the same
    ...     updates, state = tx.update({"w": jnp.array(2.0)}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> round(float(params["w"]), 4)
    0.8291
    """
    del capturable, foreach, differentiable
    _check_nonnegative("rmsprop", lr=lr, weight_decay=weight_decay, momentum=momentum)
    return named_recipe(
        "pytorch.rmsprop",
        _maximize(maximize),
        _coupled(weight_decay),
        scale_by_rms(alpha, eps, eps_in_sqrt=False, centered=centered),
        scale_by_momentum(momentum) if momentum else identity(),
        scale_by_learning_rate(lr),
    )


@recipe
@documents_torch_flags
def adadelta(
    lr: Any = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    foreach: bool | None = None,
    *,
    capturable: bool = False,
    maximize: bool = False,
    differentiable: bool = False,
) -> Chain:
    """``torch.optim.Adadelta``.

    Update rule::

        g <- g + weight_decay * p
        v_t = rho v_{t-1} + (1 - rho) g**2;  d = sqrt(u_{t-1} + eps) / sqrt(v_t + eps) * g
        u_t = rho u_{t-1} + (1 - rho) d**2;  p <- p - lr_t * d

    Args:
        lr: a number or a schedule, >= 0. Default 1.0.
        rho: in [0, 1]. Default 0.9.
        eps: > 0. Default 1e-6.
        weight_decay: L2 added to the gradient, >= 0. Default 0.0.
        <torch's flags>

    Reference: PyTorch 2.13, ``torch.optim.Adadelta``; Zeiler, *ADADELTA*, arXiv:1212.5701.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import pytorch
    >>> tx = pytorch.adadelta()
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # torch gives the same
    ...     updates, state = tx.update({"w": jnp.array(2.0)}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> round(float(params["w"]), 4)
    0.9936
    """
    del foreach, capturable, differentiable
    _check_nonnegative("adadelta", lr=lr, weight_decay=weight_decay)
    return named_recipe(
        "pytorch.adadelta",
        _maximize(maximize),
        _coupled(weight_decay),
        scale_by_adadelta(rho, eps),
        scale_by_learning_rate(lr),
    )


def _adam_like(
    label: str,
    scaling: Transform,
    lr: Any,
    weight_decay: float,
    decoupled: bool,
    maximize: bool,
) -> Chain:
    """torch's Adam-family shell: maximize, weight decay (coupled or decoupled), lr."""
    _check_nonnegative(label, lr=lr, weight_decay=weight_decay)
    if decoupled:  # p <- p (1 - lr wd) - lr u  ==  p - lr (u + wd p)
        return named_recipe(
            f"pytorch.{label}",
            _maximize(maximize),
            scaling,
            add_decayed_weights(weight_decay) if weight_decay else identity(),
            scale_by_learning_rate(lr),
        )
    return named_recipe(
        f"pytorch.{label}",
        _maximize(maximize),
        _coupled(weight_decay),
        scaling,
        scale_by_learning_rate(lr),
    )


@recipe
@documents_torch_flags
def adam(
    lr: Any = 1e-3,
    betas: CycledBetas = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
    capturable: bool = False,
    differentiable: bool = False,
    fused: bool | None = None,
    decoupled_weight_decay: bool = False,
) -> Chain:
    """``torch.optim.Adam``.

    Update rule::

        g <- g + weight_decay * p      (or p <- p (1 - lr wd) with decoupled_weight_decay)
        m_t = b1 m + (1 - b1) g;  v_t = b2 v + (1 - b2) g**2
        v' = max(v'_{t-1}, v_t) if amsgrad else v_t      (the max of the *raw* v)
        p <- p - lr_t / (1 - b1**t) * m_t / (sqrt(v') / sqrt(1 - b2**t) + eps)

    ``betas[0]`` may be a schedule, read at the 0-based step: the beta1
    ``OneCycleLR`` or ``CyclicLR`` (``cycle_momentum=True``) writes into the
    optimizer, ``schedule.momentum`` of :mod:`gradtx.compat.pytorch.lr_scheduler`.
    As in torch, the bias correction ``1 - b1**t`` takes the current b1.

    Args:
        lr: a number or a schedule, >= 0. Default 1e-3.
        betas: ``(beta1, beta2)``, each in [0, 1); beta1 may be a schedule.
            Default (0.9, 0.999).
        eps: > 0. Default 1e-8.
        weight_decay: >= 0, L2 added to the gradient (decoupled with
            ``decoupled_weight_decay``). Default 0.0.
        amsgrad: use the running maximum of v. Default False.
        decoupled_weight_decay: AdamW's decay. Default False.
        <torch's flags>

    Reference: PyTorch 2.13, ``torch.optim.Adam``; Kingma & Ba, arXiv:1412.6980; AMSGrad:
    Reddi, Kale, Kumar, *On the Convergence of Adam and Beyond*, ICLR 2018.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import pytorch
    >>> tx = pytorch.adam(lr=0.1)
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # torch gives the same
    ...     updates, state = tx.update({"w": jnp.array(2.0)}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> round(float(params["w"]), 4)
    0.8
    """
    del foreach, capturable, differentiable, fused
    b1, b2 = betas
    if amsgrad:
        scaling = scale_by_amsgrad(b1, b2, eps, max_of="raw")
    else:
        scaling = scale_by_adam(b1, b2, eps)
    return _adam_like("adam", scaling, lr, weight_decay, decoupled_weight_decay, maximize)


@recipe
@documents_torch_flags
def adamw(
    lr: Any = 1e-3,
    betas: CycledBetas = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
    foreach: bool | None = None,
    capturable: bool = False,
    differentiable: bool = False,
    fused: bool | None = None,
) -> Chain:
    """``torch.optim.AdamW``: :func:`adam` with decoupled weight decay, default 1e-2.

    Update rule::

        p <- p (1 - lr_t * weight_decay);  then the Adam step of :func:`adam`

    ``betas[0]`` may be a schedule (torch's cycled beta1), as in :func:`adam`.

    Args:
        lr: a number or a schedule, >= 0. Default 1e-3.
        betas: ``(beta1, beta2)``, each in [0, 1); beta1 may be a schedule.
            Default (0.9, 0.999).
        eps: > 0. Default 1e-8.
        weight_decay: decoupled decay, >= 0. Default 1e-2.
        amsgrad: use the running maximum of v. Default False.
        <torch's flags>

    Reference: PyTorch 2.13, ``torch.optim.AdamW``; Loshchilov & Hutter, *Decoupled Weight
    Decay Regularization*, arXiv:1711.05101.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import pytorch
    >>> tx = pytorch.adamw(lr=0.1)
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # torch gives the same
    ...     updates, state = tx.update({"w": jnp.array(2.0)}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> round(float(params["w"]), 4)
    0.7981
    """
    return adam(
        lr,
        betas,
        eps,
        weight_decay,
        amsgrad,
        maximize=maximize,
        foreach=foreach,
        capturable=capturable,
        differentiable=differentiable,
        fused=fused,
        decoupled_weight_decay=True,
    )


@recipe
@documents_torch_flags
def adamax(
    lr: Any = 2e-3,
    betas: CycledBetas = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    foreach: bool | None = None,
    *,
    maximize: bool = False,
    differentiable: bool = False,
    capturable: bool = False,
) -> Chain:
    """``torch.optim.Adamax`` (eps inside the max, as optax).

    Update rule::

        g <- g + weight_decay * p
        m_t = b1 m + (1 - b1) g;  n_t = max(b2 n_{t-1}, |g| + eps)
        p <- p - lr_t / (1 - b1**t) * m_t / n_t

    ``betas[0]`` may be a schedule (torch's cycled beta1), as in :func:`adam`.

    Args:
        lr: a number or a schedule, >= 0. Default 2e-3.
        betas: ``(beta1, beta2)``, each in [0, 1); beta1 may be a schedule.
            Default (0.9, 0.999).
        eps: > 0. Default 1e-8.
        weight_decay: L2 added to the gradient, >= 0. Default 0.0.
        <torch's flags>

    Reference: PyTorch 2.13, ``torch.optim.Adamax``; Kingma & Ba, arXiv:1412.6980, section 7.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import pytorch
    >>> tx = pytorch.adamax(lr=0.1)
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # torch gives the same
    ...     updates, state = tx.update({"w": jnp.array(2.0)}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> round(float(params["w"]), 4)
    0.8
    """
    del foreach, differentiable, capturable
    b1, b2 = betas
    return _adam_like("adamax", scale_by_adamax(b1, b2, eps), lr, weight_decay, False, maximize)


@recipe
@documents_torch_flags
def nadam(
    lr: Any = 2e-3,
    betas: CycledBetas = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum_decay: float = 4e-3,
    decoupled_weight_decay: bool = False,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
    capturable: bool = False,
    differentiable: bool = False,
) -> Chain:
    """``torch.optim.NAdam``: Dozat's momentum schedule with psi = momentum_decay.

    Update rule::

        mu_t = b1 (1 - 0.5 * 0.96**(t psi));  P_t = mu_1 ... mu_t
        p <- p - lr_t [(1 - mu_t) / (1 - P_t) g + mu_{t+1} / (1 - P_t mu_{t+1}) m_t]
                 / (sqrt(v_t / (1 - b2**t)) + eps)

    ``betas[0]`` may be a schedule (torch's cycled beta1): mu_t and mu_{t+1}
    both take the current b1, as in torch.

    Args:
        lr: a number or a schedule, >= 0. Default 2e-3.
        betas: ``(beta1, beta2)``, each in [0, 1); beta1 may be a schedule.
            Default (0.9, 0.999).
        eps: > 0. Default 1e-8.
        weight_decay: >= 0, L2 added to the gradient (decoupled with
            ``decoupled_weight_decay``). Default 0.0.
        momentum_decay: psi, >= 0. Default 4e-3.
        decoupled_weight_decay: AdamW-style decay. Default False.
        <torch's flags>

    Reference: PyTorch 2.13, ``torch.optim.NAdam``; Dozat, *Incorporating Nesterov
    Momentum into Adam*, ICLR workshop 2016.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import pytorch
    >>> tx = pytorch.nadam(lr=0.1)
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # torch gives the same
    ...     updates, state = tx.update({"w": jnp.array(2.0)}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> round(float(params["w"]), 4)
    0.816
    """
    del foreach, capturable, differentiable
    b1, b2 = betas
    scaling = scale_by_nadam(b1, b2, eps, momentum_decay=momentum_decay)
    return _adam_like("nadam", scaling, lr, weight_decay, decoupled_weight_decay, maximize)


@recipe
@documents_torch_flags
def radam(
    lr: Any = 1e-3,
    betas: CycledBetas = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
    capturable: bool = False,
    differentiable: bool = False,
) -> Chain:
    """``torch.optim.RAdam``: eps added before bias correction.

    Update rule::

        rho_t > 5:  p <- p - lr_t r_t m_t / (1 - b1**t) * sqrt(1 - b2**t) / (sqrt(v_t) + eps)
        otherwise:  p <- p - lr_t m_t / (1 - b1**t)

    ``betas[0]`` may be a schedule (torch's cycled beta1), as in :func:`adam`.

    Args:
        lr: a number or a schedule, >= 0. Default 1e-3.
        betas: ``(beta1, beta2)``, each in [0, 1); beta1 may be a schedule.
            Default (0.9, 0.999).
        eps: > 0. Default 1e-8.
        weight_decay: >= 0, L2 added to the gradient (decoupled with
            ``decoupled_weight_decay``). Default 0.0.
        decoupled_weight_decay: AdamW-style decay. Default False.
        <torch's flags>

    Reference: PyTorch 2.13, ``torch.optim.RAdam``; Liu et al., *On the Variance of the
    Adaptive Learning Rate and Beyond*, arXiv:1908.03265.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import pytorch
    >>> tx = pytorch.radam(lr=0.1)
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # torch gives the same
    ...     updates, state = tx.update({"w": jnp.array(2.0)}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> round(float(params["w"]), 4)
    0.6
    """
    del foreach, capturable, differentiable
    b1, b2 = betas
    scaling = scale_by_radam(b1, b2, eps, eps_mode="raw")
    return _adam_like("radam", scaling, lr, weight_decay, decoupled_weight_decay, maximize)


@recipe
@documents_torch_flags
def rprop(
    lr: Any = 1e-2,
    etas: Betas = (0.5, 1.2),
    step_sizes: Betas = (1e-6, 50.0),
    *,
    capturable: bool = False,
    foreach: bool | None = None,
    maximize: bool = False,
    differentiable: bool = False,
) -> Chain:
    """``torch.optim.Rprop`` (Rprop without weight backtracking).

    Update rule: :func:`gradtx.scale_by_rprop` with initial step size ``lr``;
    ``p <- p - sign(g) * d_t``. A schedule for ``lr`` only sets the initial
    step size, as in torch (the step sizes are state).

    Args:
        lr: the initial step size, >= 0 (a schedule's value at step 0). Default 1e-2.
        etas: ``(eta_minus, eta_plus)``, 0 < eta_minus < 1 < eta_plus. Default (0.5, 1.2).
        step_sizes: ``(min, max)`` step size, 0 <= min <= max (max may be inf).
            Default (1e-6, 50.0).
        <torch's flags>

    Reference: PyTorch 2.13, ``torch.optim.Rprop``; Riedmiller & Braun, *A Direct Adaptive
    Method for Faster Backpropagation Learning: The RPROP Algorithm*, ICNN 1993.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import pytorch
    >>> tx = pytorch.rprop(lr=0.1)
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # torch gives the same
    ...     updates, state = tx.update({"w": jnp.array(2.0)}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> round(float(params["w"]), 4)
    0.78
    """
    del capturable, foreach, differentiable
    eta_minus, eta_plus = etas
    min_step, max_step = step_sizes
    initial = float(value_at(lr, 0)) if callable(lr) else lr
    return named_recipe(
        "pytorch.rprop",
        _maximize(maximize),
        scale_by_rprop(initial, eta_minus, eta_plus, min_step, max_step),
        scale(-1.0),
    )


@recipe
@documents_torch_flags
def asgd(
    lr: Any = 1e-2,
    lambd: float = 1e-4,
    alpha: float = 0.75,
    t0: float = 1e6,
    weight_decay: float = 0.0,
    foreach: bool | None = None,
    maximize: bool = False,
    differentiable: bool = False,
    capturable: bool = False,
) -> Chain:
    """``torch.optim.ASGD``: SGD with a decaying step and the averaged iterate in the state.

    Update rule::

        eta_t = lr / (1 + lambd * lr * (t - 1))**alpha
        p <- p - eta_t * (g + weight_decay * p + lambd * p)
        a_t = p_t while t - 1 <= t0 + 1, then the running mean of p from there on

    Read the averaged parameters with ``gradtx.tree_get(state, "average")``.
    With a schedule, eta follows the rate one step late, as in torch
    (:func:`gradtx.asgd_step_size`).

    Args:
        lr: a number or a schedule, >= 0. Default 1e-2.
        lambd: decay term, >= 0. Default 1e-4.
        alpha: power of the step's decay, >= 0. Default 0.75.
        t0: averaging starts after step t0 + 1; >= -2. Default 1e6.
        weight_decay: L2 added to the gradient, >= 0. Default 0.0.
        <torch's flags>

    Reference: PyTorch 2.13, ``torch.optim.ASGD``; Polyak & Juditsky, *Acceleration of
    Stochastic Approximation by Averaging*, SIAM J. Control Optim. 1992.

    >>> import gradtx, jax.numpy as jnp
    >>> from gradtx.compat import pytorch
    >>> tx = pytorch.asgd(lr=0.1)
    >>> params = {"w": jnp.array(1.0)}
    >>> state = tx.init(params)
    >>> for _ in range(2):  # torch gives the same
    ...     updates, state = tx.update({"w": jnp.array(2.0)}, state, params)
    ...     params = gradtx.apply_updates(params, updates)
    >>> round(float(params["w"]), 4)
    0.6
    """
    del foreach, differentiable, capturable
    _check_nonnegative("asgd", lr=lr, lambd=lambd, weight_decay=weight_decay)
    eta = asgd_step_size(lr, lambd, alpha)
    return named_recipe(
        "pytorch.asgd",
        _maximize(maximize),
        _coupled(weight_decay),
        add_decayed_weights(lambd) if lambd else identity(),
        scale_by_learning_rate(eta),
        polyak_average(start=t0 + 2),
    )
