"""The 2-D loss landscapes of the notebooks, in one place.

``notebooks/landscapes.ipynb`` runs the gradient methods on them, ``notebooks/saddles.ipynb``
the curvature methods on the two saddles, ``notebooks/gradient_free.ipynb`` the gradient-free
methods on all five. Each function takes a point ``p`` whose first axis holds x and y, so it
also evaluates a grid ``np.stack([x, y])`` for contour plots.
"""

from __future__ import annotations

import jax.numpy as jnp


def bowl(p):
    """An ill-conditioned quadratic: curvature 1 along x, 20 along y."""
    return 0.5 * (p[0] ** 2 + 20 * p[1] ** 2)


def rosenbrock(p):
    """Rosenbrock's banana valley, minimum 0 at (1, 1)."""
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


def ripples(p):
    """A bowl with cosine ripples: local minima around the global one at the origin."""
    return 0.5 * (p[0] ** 2 + p[1] ** 2) + 1 - jnp.cos(3 * p[0]) * jnp.cos(3 * p[1])


def saddle(p):
    """x² - y²: a saddle whose escape direction is y."""
    return p[0] ** 2 - p[1] ** 2


def monkey_saddle(p):
    """x³ - 3xy²: a degenerate saddle (zero Hessian at the origin) with three valleys."""
    return p[0] ** 3 - 3 * p[0] * p[1] ** 2


# name: (function, start, half-width of the box, point of interest, lr, step)
LANDSCAPES = {
    "ill-conditioned bowl": (bowl, (-4.0, 1.5), 4.5, (0.0, 0.0), 0.05, 0.1),
    "Rosenbrock": (rosenbrock, (-1.5, 2.0), 2.5, (1.0, 1.0), 1e-3, 0.05),
    "ripples": (ripples, (3.0, 2.5), 4.0, (0.0, 0.0), 0.05, 0.1),
    "saddle x² − y²": (saddle, (1.0, 1e-3), 2.0, (0.0, 0.0), 0.01, 0.05),
    "monkey saddle x³ − 3xy²": (monkey_saddle, (0.5, 1e-3), 1.5, (0.0, 0.0), 0.01, 0.05),
}
FUNCTIONS = [f for f, *_ in LANDSCAPES.values()]
