"""Naive NumPy oracles for gradtx's named optimizers, written from the papers.

Each oracle runs one optimizer on ONE float64 array ``x0`` for ``steps``
steps, taking the gradient from ``grad(x)`` at its own current iterate, and
returns the iterates after each step, shape ``(steps,) + x0.shape``. They are
deliberately naive: a Python loop over steps (and, for Rprop, over
coordinates), each line following the paper's algorithm box, cited beside it.
They are independent of gradtx and of optax's code; where the library
convention (optax 0.2.8, which gradtx follows) deviates from the paper, the
oracle applies the convention and its docstring says so.

Notation: ``t`` is the 1-based step. ``learning_rate`` is a number or a
schedule of the 0-based update count (optax's convention), so step ``t``
uses ``learning_rate(t - 1)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Grad = Callable[[np.ndarray], np.ndarray]


def _rate(learning_rate, t: int) -> float:
    """The learning rate of 1-based step ``t``."""
    return float(learning_rate(t - 1)) if callable(learning_rate) else learning_rate


def _start(x0) -> np.ndarray:
    return np.array(x0, dtype=np.float64)


def _constant(learning_rate, name: str) -> float:
    if callable(learning_rate):
        raise ValueError(f"oracles.{name}: the paper's form equals optax's only for a constant lr")
    return learning_rate


# -- SGD ------------------------------------------------------------------------------


def sgd(x0, grad: Grad, steps: int, learning_rate) -> np.ndarray:
    """Gradient descent, x_t = x_{t-1} - lr_t g_t (Robbins & Monro 1951)."""
    x, out = _start(x0), []
    for t in range(1, steps + 1):
        x = x - _rate(learning_rate, t) * grad(x)
        out.append(x)
    return np.stack(out)


def heavy_ball(x0, grad: Grad, steps: int, learning_rate: float, momentum: float) -> np.ndarray:
    """Polyak's heavy ball in its two-step form (Polyak 1964, section 3).

    ``x_{t+1} = x_t - lr g(x_t) + momentum (x_t - x_{t-1})``, with x_{-1} = x_0.
    optax writes it with a buffer, ``m_t = momentum m_{t-1} + g_t``,
    ``x_t = x_{t-1} - lr m_t``; the two agree only for a constant lr.
    """
    lr = _constant(learning_rate, "heavy_ball")
    x_prev, x, out = _start(x0), _start(x0), []
    for _ in range(steps):
        x, x_prev = x - lr * grad(x) + momentum * (x - x_prev), x
        out.append(x)
    return np.stack(out)


def nesterov(x0, grad: Grad, steps: int, learning_rate: float, momentum: float) -> np.ndarray:
    """Nesterov momentum as Sutskever et al. 2013 (ICML), eqs. 3-4.

    ``v_{t+1} = momentum v_t - lr g(theta_t + momentum v_t)``,
    ``theta_{t+1} = theta_t + v_{t+1}``: the gradient is taken at the
    look-ahead point. optax's form ``m_t = momentum m_{t-1} + g_t``,
    ``x_t = x_{t-1} - lr (g_t + momentum m_t)`` (Bengio, Boulanger-Lewandowski,
    Pascanu, "Advances in optimizing RNNs", 2013) is the same method in the variable
    ``x = theta + momentum v``, the point where the gradient is taken; so this
    oracle returns the look-ahead points. They agree only for a constant lr.
    """
    lr = _constant(learning_rate, "nesterov")
    theta, v, out = _start(x0), np.zeros_like(_start(x0)), []
    for _ in range(steps):
        v = momentum * v - lr * grad(theta + momentum * v)  # eq. 3
        theta = theta + v  # eq. 4
        out.append(theta + momentum * v)
    return np.stack(out)


# -- per-coordinate adaptive methods --------------------------------------------------


def adagrad(
    x0, grad: Grad, steps: int, learning_rate, initial_accumulator_value=0.1, eps=1e-7
) -> np.ndarray:
    """Diagonal AdaGrad (Duchi, Hazan, Singer, JMLR 2011, section 1.1 and fig. 1).

    Paper: ``G_t = sum_{s<=t} g_s**2``, ``x_{t+1} = x_t - lr g_t / (delta + sqrt(G_t))``.
    optax (and Keras 3) start the accumulator at ``initial_accumulator_value``
    (0.1) and put eps *inside* the root: ``g_t / sqrt(G_t + eps)``.
    """
    x, out = _start(x0), []
    G = np.full_like(x, initial_accumulator_value)
    for t in range(1, steps + 1):
        g = grad(x)
        G = G + g * g
        x = x - _rate(learning_rate, t) * g / np.sqrt(G + eps)
        out.append(x)
    return np.stack(out)


def rmsprop(
    x0,
    grad: Grad,
    steps: int,
    learning_rate,
    decay=0.9,
    eps=1e-8,
    initial_scale=0.0,
    eps_in_sqrt=True,
    centered=False,
    momentum=None,
) -> np.ndarray:
    """RMSprop: Hinton's lecture 6e; centered and with momentum, Graves 2013 eqs. 38-41.

    Graves (arXiv:1308.0850, eqs. 38-41), with his aleph = decay,
    beth = momentum, gimel = lr, daleth = eps::

        n = decay n + (1 - decay) e**2           (38)
        g = decay g + (1 - decay) e              (39)
        D = momentum D - lr e / sqrt(n - g**2 + eps)   (40)
        w = w + D                                (41)

    Not centered (Hinton): drop (39) and g. No momentum: D = -lr e / sqrt(n + eps).
    This is optax's convention: lr inside the momentum buffer, eps inside the
    root (``eps_in_sqrt=False``: ``sqrt(.) + eps``, PyTorch's placement), and
    ``n_0 = initial_scale``. Hinton's slide uses no eps.
    """
    x, out = _start(x0), []
    n, g_avg, delta = np.full_like(x, initial_scale), np.zeros_like(x), np.zeros_like(x)
    mom = 0.0 if momentum is None else momentum
    for t in range(1, steps + 1):
        e = grad(x)
        n = decay * n + (1 - decay) * e**2  # (38)
        if centered:
            g_avg = decay * g_avg + (1 - decay) * e  # (39)
        var = n - g_avg**2
        denom = np.sqrt(var + eps) if eps_in_sqrt else np.sqrt(var) + eps
        delta = mom * delta - _rate(learning_rate, t) * e / denom  # (40)
        x = x + delta  # (41)
        out.append(x)
    return np.stack(out)


def adadelta(
    x0, grad: Grad, steps: int, learning_rate=1.0, rho=0.9, eps=1e-6, weight_decay=0.0
) -> np.ndarray:
    """ADADELTA, Zeiler 2012 (arXiv:1212.5701), Algorithm 1, with a learning rate multiplier.

    The paper has no learning rate (``x_{t+1} = x_t + Dx_t``); optax, PyTorch
    and Keras scale the applied step by lr while E[Dx**2] tracks the unscaled
    Dx. optax's weight decay is coupled (added to g before line 4). optax's
    default lr is None, which *ascends*; gradtx defaults to the paper's 1.0.
    """
    x, out = _start(x0), []
    Eg2, Edx2 = np.zeros_like(x), np.zeros_like(x)  # line 1
    for t in range(1, steps + 1):
        g = grad(x) + weight_decay * x  # line 3, plus coupled decay
        Eg2 = rho * Eg2 + (1 - rho) * g**2  # line 4
        dx = -np.sqrt(Edx2 + eps) / np.sqrt(Eg2 + eps) * g  # line 5 (eq. 14)
        Edx2 = rho * Edx2 + (1 - rho) * dx**2  # line 6
        x = x + _rate(learning_rate, t) * dx  # line 7, times lr
        out.append(x)
    return np.stack(out)


# -- the Adam family ------------------------------------------------------------------


def adam(
    x0, grad: Grad, steps: int, learning_rate, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0
) -> np.ndarray:
    """Adam, Kingma & Ba (arXiv:1412.6980), Algorithm 1.

    As in the paper, eps is added after bias correction (``sqrt(v^) + eps``);
    optax adds ``eps_root`` inside the root, ``sqrt(v^ + eps_root)`` (0 by default).
    """
    x, out = _start(x0), []
    m, v = np.zeros_like(x), np.zeros_like(x)
    for t in range(1, steps + 1):
        g = grad(x)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        x = x - _rate(learning_rate, t) * m_hat / (np.sqrt(v_hat + eps_root) + eps)
        out.append(x)
    return np.stack(out)


def adamw(
    x0,
    grad: Grad,
    steps: int,
    learning_rate,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    weight_decay=1e-4,
) -> np.ndarray:
    """AdamW, Loshchilov & Hutter (arXiv:1711.05101), Algorithm 2 (the decoupled variant).

    The paper has a step size alpha and a schedule multiplier eta_t:
    ``theta_t = theta_{t-1} - eta_t (alpha m^/(sqrt(v^) + eps) + lambda theta_{t-1})``.
    optax multiplies the decay by the learning rate: it is alpha = 1,
    eta_t = lr_t (the schedule) and lambda = weight_decay, so the decay applied
    is ``lr_t * weight_decay``. No L2 term in g (line 6's red part is 0).
    """
    alpha = 1.0
    x, out = _start(x0), []
    m, v = np.zeros_like(x), np.zeros_like(x)  # line 2
    for t in range(1, steps + 1):
        g = grad(x)  # line 6
        m = b1 * m + (1 - b1) * g  # line 7
        v = b2 * v + (1 - b2) * g**2  # line 8
        m_hat = m / (1 - b1**t)  # line 9
        v_hat = v / (1 - b2**t)  # line 10
        eta = _rate(learning_rate, t)  # line 11: SetScheduleMultiplier(t)
        adaptive = alpha * m_hat / (np.sqrt(v_hat + eps_root) + eps)
        x = x - eta * (adaptive + weight_decay * x)  # line 12
        out.append(x)
    return np.stack(out)


def adamax(
    x0, grad: Grad, steps: int, learning_rate, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0
) -> np.ndarray:
    """AdaMax, Kingma & Ba (arXiv:1412.6980), Algorithm 2 (section 7.1).

    The paper has no eps: ``u_t = max(b2 u_{t-1}, |g_t|)``. optax and PyTorch
    put eps inside the max: ``max(b2 u_{t-1}, |g_t| + eps)``. ``weight_decay``
    is the decoupled term of Loshchilov & Hutter's Algorithm 2, line 12, times
    lr as in optax (AdaMaxW).
    """
    x, out = _start(x0), []
    m, u = np.zeros_like(x), np.zeros_like(x)
    for t in range(1, steps + 1):
        g = grad(x)
        m = b1 * m + (1 - b1) * g
        u = np.maximum(b2 * u, np.abs(g) + eps)
        step = m / (1 - b1**t) / u
        x = x - _rate(learning_rate, t) * (step + weight_decay * x)
        out.append(x)
    return np.stack(out)


def adamaxw(
    x0, grad: Grad, steps: int, learning_rate, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4
) -> np.ndarray:
    """AdaMax with decoupled weight decay (optax's ``adamaxw``): :func:`adamax` with decay."""
    return adamax(x0, grad, steps, learning_rate, b1, b2, eps, weight_decay)


def nadam(
    x0,
    grad: Grad,
    steps: int,
    learning_rate,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    weight_decay=0.0,
) -> np.ndarray:
    """NAdam, Dozat (ICLR 2016 workshop), the Nadam algorithm box.

    Dozat's box uses a momentum schedule mu_1, mu_2, ... with products
    ``prod_{i<=t} mu_i``; optax's nadam is his simplified form with a constant
    ``mu_t = b1``, so the products are ``b1**t`` and ``b1**(t+1)``. PyTorch and
    Keras keep the schedule. eps after bias correction, as in the paper, plus
    optax's ``eps_root`` inside the root. ``weight_decay`` is the decoupled
    term of Loshchilov & Hutter's Algorithm 2, times lr (NAdamW).
    """
    x, out = _start(x0), []
    m, n = np.zeros_like(x), np.zeros_like(x)
    for t in range(1, steps + 1):
        mu_t, mu_next = b1, b1  # the simplified, constant schedule
        prod_t, prod_next = b1**t, b1 ** (t + 1)  # prod_{i<=t} mu_i, prod_{i<=t+1} mu_i
        g = grad(x)
        g_hat = g / (1 - prod_t)
        m = mu_t * m + (1 - mu_t) * g
        m_hat = m / (1 - prod_next)
        n = b2 * n + (1 - b2) * g**2
        n_hat = n / (1 - b2**t)
        m_bar = (1 - mu_t) * g_hat + mu_next * m_hat
        step = m_bar / (np.sqrt(n_hat + eps_root) + eps)
        x = x - _rate(learning_rate, t) * (step + weight_decay * x)
        out.append(x)
    return np.stack(out)


def nadamw(
    x0,
    grad: Grad,
    steps: int,
    learning_rate,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    weight_decay=1e-4,
) -> np.ndarray:
    """NAdam with decoupled weight decay (optax's ``nadamw``): :func:`nadam` with decay."""
    return nadam(x0, grad, steps, learning_rate, b1, b2, eps, eps_root, weight_decay)


def amsgrad(
    x0,
    grad: Grad,
    steps: int,
    learning_rate,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    bias_correction_mu=True,
    bias_correction_nu=True,
) -> np.ndarray:
    """AMSGrad, Reddi, Kale, Kumar (ICLR 2018), Algorithm 2.

    The paper: no bias correction, no eps, ``v^_t = max(v^_{t-1}, v_t)``,
    ``x_{t+1} = x_t - alpha_t m_t / sqrt(v^_t)`` (alpha_t = alpha/sqrt(t) in
    the analysis, constant in the experiments). optax's convention: m and v
    bias-corrected, and the max taken over the *bias-corrected* v; eps after
    the root, eps_root inside. With both corrections off this is the paper's
    algorithm (plus eps) at constant beta_1 and alpha. PyTorch and Keras max
    the raw v and correct afterwards.
    """
    x, out = _start(x0), []
    m, v, v_max = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    for t in range(1, steps + 1):
        g = grad(x)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat = m / (1 - b1**t) if bias_correction_mu else m
        v_hat = v / (1 - b2**t) if bias_correction_nu else v
        v_max = np.maximum(v_max, v_hat)
        x = x - _rate(learning_rate, t) * m_hat / (np.sqrt(v_max + eps_root) + eps)
        out.append(x)
    return np.stack(out)


def radam_rectification(t: int, b2: float) -> tuple[float, float | None]:
    """RAdam's rho_t and rectification r_t at step t (Liu et al., arXiv:1908.03265,
    Algorithm 2), in float64; r_t is None where rho_t < 4 (its square root has no value)."""
    rho_inf = 2 / (1 - b2) - 1
    rho_t = rho_inf - 2 * t * b2**t / (1 - b2**t)
    if rho_t < 4:
        return rho_t, None
    return rho_t, np.sqrt(
        (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
    )


def radam(
    x0,
    grad: Grad,
    steps: int,
    learning_rate,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    threshold=5.0,
) -> np.ndarray:
    """Rectified Adam, Liu et al. (arXiv:1908.03265), Algorithm 2.

    The paper rectifies when ``rho_t > 4`` with ``l_t = sqrt((1 - b2**t) / v_t)``
    and no eps. optax (and the authors' code) test ``rho_t >= threshold`` with
    threshold 5, and use ``l_t = 1 / (sqrt(v_t / (1 - b2**t) + eps_root) + eps)``.
    PyTorch tests ``> 5`` and adds eps before bias correction.
    """
    x, out = _start(x0), []
    m, v = np.zeros_like(x), np.zeros_like(x)
    for t in range(1, steps + 1):
        g = grad(x)
        v = b2 * v + (1 - b2) * g**2
        m = b1 * m + (1 - b1) * g
        m_hat = m / (1 - b1**t)
        rho_t, r_t = radam_rectification(t, b2)
        if rho_t >= threshold:  # the variance is tractable
            l_t = 1 / (np.sqrt(v / (1 - b2**t) + eps_root) + eps)
            x = x - _rate(learning_rate, t) * r_t * m_hat * l_t
        else:
            x = x - _rate(learning_rate, t) * m_hat
        out.append(x)
    return np.stack(out)


# -- sign-based methods ---------------------------------------------------------------


def rprop(
    x0,
    grad: Grad,
    steps: int,
    learning_rate,
    eta_minus=0.5,
    eta_plus=1.2,
    min_step_size=1e-6,
    max_step_size=50.0,
) -> np.ndarray:
    """Rprop without weight-backtracking: iRprop- (Igel & Hüsken 2000), its pseudo-code.

    Riedmiller & Braun (ICNN 1993) adapt each coordinate's step
    size by the sign of ``g_t g_{t-1}`` and, after a sign change, revert the
    previous step (weight-backtracking) and zero the stored gradient. iRprop-
    drops the revert but keeps the zeroing: after a sign change no step is
    taken and the next adaptation is neutral. This is PyTorch's ``Rprop``,
    and optax's without its one-step lag. The initial step size is
    ``learning_rate``. The paper clamps only when the step size changes;
    PyTorch clamps every step, which differs only if lr lies outside
    ``[min_step_size, max_step_size]``.
    """
    x, out = _start(x0), []
    delta = np.full_like(x, learning_rate)
    g_prev = np.zeros_like(x)
    for _ in range(steps):
        g = np.array(grad(x))  # a copy: entries are zeroed below
        for i in np.ndindex(x.shape):  # "for all weights and biases"
            if g_prev[i] * g[i] > 0:
                delta[i] = min(delta[i] * eta_plus, max_step_size)
            elif g_prev[i] * g[i] < 0:
                delta[i] = max(delta[i] * eta_minus, min_step_size)
                g[i] = 0.0
            x[i] = x[i] - np.sign(g[i]) * delta[i]
            g_prev[i] = g[i]
        out.append(x.copy())
    return np.stack(out)


def sign_sgd(x0, grad: Grad, steps: int, learning_rate) -> np.ndarray:
    """signSGD, Bernstein et al. (ICML 2018, arXiv:1802.04434), Algorithm 1.

    ``x_{k+1} = x_k - delta_k sign(g_k)``, with sign(0) = 0 as in NumPy and JAX.
    """
    x, out = _start(x0), []
    for t in range(1, steps + 1):
        x = x - _rate(learning_rate, t) * np.sign(grad(x))
        out.append(x)
    return np.stack(out)


def signum(x0, grad: Grad, steps: int, learning_rate, beta=0.9) -> np.ndarray:
    """Signum, Bernstein et al. (ICML 2018, arXiv:1802.04434), the Signum algorithm box.

    ``m_k = beta m_{k-1} + (1 - beta) g_k``, ``x_{k+1} = x_k - delta_k sign(m_k)``:
    momentum as an exponential moving average, with no bias correction (the
    sign does not see it), as in optax.
    """
    x, out = _start(x0), []
    m = np.zeros_like(x)
    for t in range(1, steps + 1):
        m = beta * m + (1 - beta) * grad(x)
        x = x - _rate(learning_rate, t) * np.sign(m)
        out.append(x)
    return np.stack(out)


def lion(
    x0, grad: Grad, steps: int, learning_rate, b1=0.9, b2=0.99, weight_decay=1e-3
) -> np.ndarray:
    """Lion, Chen et al. (arXiv:2302.06675), Algorithm 2, with decoupled weight decay.

    ``theta_t = theta_{t-1} - eta_t (sign(b1 m_{t-1} + (1 - b1) g_t) + lambda theta_{t-1})``,
    then ``m_t = b2 m_{t-1} + (1 - b2) g_t``. The paper and optax agree:
    eta_t is the learning rate (schedule) and lambda = weight_decay.
    """
    x, out = _start(x0), []
    m = np.zeros_like(x)
    for t in range(1, steps + 1):
        g = grad(x)
        c = b1 * m + (1 - b1) * g  # update interpolation
        x = x - _rate(learning_rate, t) * (np.sign(c) + weight_decay * x)
        m = b2 * m + (1 - b2) * g  # momentum update
        out.append(x)
    return np.stack(out)


def noise_variance(t, eta=0.01, gamma=0.55):
    """The gradient noise variance at 1-based step t (Neelakantan et al., arXiv:1511.06807, sec. 2).

    The paper writes ``sigma_t**2 = eta / (1 + t)**gamma`` with t counted from
    0; optax counts from 1, ``eta / t**gamma``: the same sequence.
    """
    return eta / np.asarray(t, np.float64) ** gamma
