"""Curvature: Hessian-vector products and the estimators and optimizers built on them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax


def hvp(fn: Callable[..., Any], params: Any, v: Any, *args: Any, **kwargs: Any) -> Any:
    """The Hessian of ``fn`` at ``params`` times ``v``, without forming the Hessian.

    ``H v = d/dt grad fn(params + t v)`` at t = 0: forward-mode differentiation of
    the reverse-mode gradient (forward-over-reverse, the cheapest of the four
    orders: about the cost of two gradients). ``params`` and ``v`` are pytrees of
    the same structure; the result has that structure too. Extra arguments are
    passed to ``fn``, which must return a scalar.

    Reference: Pearlmutter, *Fast exact multiplication by the Hessian*, Neural
    Computation, 1994.
    """
    grad = jax.grad(lambda p: fn(p, *args, **kwargs))
    return jax.jvp(grad, (params,), (v,))[1]
