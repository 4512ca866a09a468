"""Saddle points: Lanczos on pytrees, saddle-free Newton and negative-curvature escape."""

from __future__ import annotations

from collections.abc import Callable
import functools
import math
from typing import Any, NamedTuple

import jax
from jax import lax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp

from ._base import check_range, fail_missing, static, Transform
from ._combine import as_transform, Chain, named_recipe, recipe
from ._curvature import hvp
from ._linesearch import _kwargs_for
from ._momentum import sgd
from ._scale import scale_by_learning_rate
from ._tree import (
    default_float,
    prng_key,
    tree_cast_like,
    tree_divide_by_norm,
    tree_global_norm,
    up,
)

_HIGHEST = lax.Precision.HIGHEST

# -- Lanczos ---------------------------------------------------------------------------


def _ravel(tree: Any) -> jax.Array:
    """All leaves as one vector, in at least float32."""
    return up(ravel_pytree(tree)[0])


def _unit(v: jax.Array) -> jax.Array:
    """v / ||v||, 0 for 0; a vector whose squares underflow is still made a unit vector."""
    return tree_divide_by_norm(v, v)


def _project_out(basis: jax.Array, w: jax.Array) -> jax.Array:
    """w minus its projection on the rows of basis (orthonormal, or zero)."""
    return w - jnp.matmul(jnp.matmul(basis, w, precision=_HIGHEST), basis, precision=_HIGHEST)


def _orthogonalise(basis: jax.Array, w: jax.Array) -> jax.Array:
    """Projected out twice: in floating point, twice is enough (Kahan and Parlett)."""
    return _project_out(basis, _project_out(basis, w))


def _fresh_direction(basis: jax.Array, row: Any) -> jax.Array:
    """A pseudo-random unit vector orthogonal to the rows of basis, for row ``row``."""
    key = jax.random.fold_in(jax.random.key(0), row)
    return _unit(_orthogonalise(basis, jax.random.normal(key, basis.shape[1:], basis.dtype)))


def _lanczos_basis(
    matvec: Callable[[jax.Array], jax.Array], start: jax.Array, num_iters: int
) -> tuple[jax.Array, jax.Array]:
    """The tridiagonal T = Q A Q^T and the orthonormal Lanczos vectors Q (rows).

    Every new vector is orthogonalised against all earlier ones, twice. Where the
    second pass still cancels more than half of what the first left, the residual
    is rounding noise inside the span (Kahan and Parlett's test): the Krylov space
    is invariant, and Lanczos restarts from a fresh direction orthogonal to it,
    with beta = 0 (so T is block diagonal and every Ritz pair is a true one). A
    zero start is such a restart too.
    """
    empty = jnp.zeros((num_iters, start.shape[0]), start.dtype)
    q0 = jnp.where(jnp.any(start != 0), _unit(start), _fresh_direction(empty, 0))
    zeros = jnp.zeros(num_iters, start.dtype)

    def step(j, carry):
        basis, alpha, beta = carry
        w = matvec(basis[j])
        alpha = alpha.at[j].set(jnp.vdot(basis[j], w, precision=_HIGHEST))
        once = _project_out(basis, w)
        twice = _project_out(basis, once)
        kept = jnp.linalg.norm(twice)
        independent = kept > jnp.linalg.norm(once) / math.sqrt(2.0)
        q = jnp.where(independent, _unit(twice), _fresh_direction(basis, j + 1))
        # The last step's residual has no row to go to: dropped.
        basis = basis.at[j + 1].set(q, mode="drop")
        return basis, alpha, beta.at[j].set(jnp.where(independent, kept, 0.0))

    basis, alpha, beta = lax.fori_loop(0, num_iters, step, (empty.at[0].set(q0), zeros, zeros))
    off = beta[:-1]
    tridiagonal = jnp.diag(alpha) + jnp.diag(off, 1) + jnp.diag(off, -1)
    return tridiagonal, basis


def _num_steps(num_iters: int, size: int) -> int:
    """At most one step per dimension (then the Krylov space is everything); one if empty."""
    return max(1, min(int(num_iters), size))


def _ritz_pairs(
    matvec: Callable[[jax.Array], jax.Array], start: jax.Array, num_iters: int
) -> tuple[jax.Array, jax.Array]:
    """Ritz values (ascending) and Ritz vectors (rows) of ``num_iters`` Lanczos steps."""
    tridiagonal, basis = _lanczos_basis(matvec, start, _num_steps(num_iters, start.shape[0]))
    values, vectors = jnp.linalg.eigh(tridiagonal)
    return values, jnp.matmul(vectors.T, basis, precision=_HIGHEST)


def lanczos(matvec: Callable[[Any], Any], v0: Any, num_iters: int) -> tuple[jax.Array, Any]:
    """Ritz values and vectors of a symmetric operator on pytrees, by Lanczos iteration.

    Builds an orthonormal basis Q of the Krylov space span(v0, A v0, ..., A^(k-1) v0)
    with ``k = min(num_iters, size of v0)`` calls of ``matvec``, and diagonalises
    the projected operator::

        T = Q A Q^T (tridiagonal) = S diag(theta) S^T,    Ritz vectors Y = S^T Q

    Every new Lanczos vector is orthogonalised against all earlier ones, twice
    (full reorthogonalisation: cheap for the small k this is meant for, and no
    spurious copies of converged eigenvalues). Where the Krylov space is
    invariant after j < k steps (v0 is a combination of j eigenvectors), the
    iteration restarts from a fixed pseudo-random direction orthogonal to it
    (beta = 0 there), so every Ritz pair is a true one and the k vectors stay
    orthonormal; a zero v0 starts that way. The extreme Ritz values converge to
    the extreme eigenvalues first; with k = size they are all the eigenvalues.

    ``matvec`` maps a pytree like ``v0`` to one like it (e.g. a Hessian-vector
    product, :func:`gradtx.hvp`); the arithmetic runs on one flat
    vector in at least float32. ``num_iters`` must be a Python int (it sets the
    shapes); the rest traces under jit. Returns ``(eigenvalues, eigenvectors)``:
    the Ritz values in ascending order, shape (k,), and the Ritz vectors as a
    pytree like ``v0`` whose leaves have a leading axis of length k (the i-th
    vector is ``jax.tree.map(lambda x: x[i], eigenvectors)``).

    Args:
        matvec: a symmetric linear map of pytrees like ``v0``.
        v0: the starting vector, a pytree.
        num_iters: k, a Python int (the Krylov dimension, capped at the size of v0).

    Reference: Lanczos, *An iteration method for the solution of the eigenvalue
    problem of linear differential and integral operators*, J. Res. NBS, 1950;
    Parlett, *The Symmetric Eigenvalue Problem*, 1998, sections 6.9 and 13.

    >>> import jax.numpy as jnp, gradtx
    >>> a = jnp.diag(jnp.array([-1.0, 2.0, 3.0]))
    >>> values, vectors = gradtx.lanczos(lambda v: a @ v, jnp.ones(3), 3)
    >>> [round(float(x), 4) for x in values]
    [-1.0, 2.0, 3.0]
    """
    if not isinstance(num_iters, int) or isinstance(num_iters, bool) or num_iters < 1:
        raise ValueError(f"lanczos(num_iters={num_iters!r}): num_iters must be an int >= 1")
    start, unravel = ravel_pytree(v0)

    def flat_matvec(v):
        return _ravel(matvec(unravel(v)))

    values, vectors = _ritz_pairs(flat_matvec, up(start), num_iters)
    return values, jax.vmap(unravel)(vectors)


# -- shared by both transforms ---------------------------------------------------------

_SOLVER_ARGS = ("value", "grad", "value_fn")  # optax's names, never passed to value_fn


def _objective(tx: Transform, params: Any, extra_args: dict[str, Any]) -> Callable[[Any], Any]:
    """``value_fn`` with the keyword arguments it accepts bound, or the standard error."""
    value_fn = extra_args.get("value_fn")
    if params is None or value_fn is None:
        fail_missing(
            tx,
            "the params and the loss function as the keyword argument value_fn=",
            "update(grads, state, params, value_fn=loss) (optax's convention; other "
            "keyword arguments that loss accepts are passed to it)",
        )
    fn_kwargs = {k: v for k, v in extra_args.items() if k not in _SOLVER_ARGS}
    return functools.partial(value_fn, **_kwargs_for(value_fn, fn_kwargs))


def _unraveller(params: Any) -> Callable[[jax.Array], Any]:
    """A flat vector back to a tree like ``params``, in the params' dtypes."""
    unravel = ravel_pytree(params)[1]
    return lambda v: tree_cast_like(unravel(v), params)


def _flat_hessian(objective: Callable[[Any], Any], params: Any) -> Callable:
    """v -> H v on flat vectors, H the Hessian of ``objective`` at ``params``."""
    unravel = _unraveller(params)
    return lambda v: _ravel(hvp(objective, params, unravel(v)))


def _size(tree: Any) -> int:
    return sum(math.prod(jnp.shape(x)) for x in jax.tree.leaves(tree))


def _krylov_dim(tx: Transform, params: Any) -> int:
    """krylov_dim, clipped to the number of parameters."""
    return _num_steps(tx.krylov_dim, _size(params))


# -- saddle-free Newton ----------------------------------------------------------------


class ScaleBySaddleFreeNewtonState(NamedTuple):
    """``eigenvalues``: the Ritz values of the Hessian found at the last step (ascending)."""

    eigenvalues: jax.Array


class ScaleBySaddleFreeNewton(Transform):
    """Preconditions the gradient by (|H| + damping)^-1 within its Krylov subspace."""

    krylov_dim: int = static(20)
    damping: float = 1e-3

    def __post_init__(self):
        check_range(self, "krylov_dim", low=1.0, integer=True)
        check_range(self, "damping", low=0.0, low_open=True)

    def init(self, params):
        return ScaleBySaddleFreeNewtonState(
            eigenvalues=jnp.zeros(_krylov_dim(self, params), default_float())
        )

    def update(self, updates, state, params=None, **extra_args):
        hessian = _flat_hessian(_objective(self, params, extra_args), params)
        g = _ravel(updates)
        theta, ritz = _ritz_pairs(hessian, g, _krylov_dim(self, params))
        damping = jnp.asarray(self.damping, g.dtype)
        coefficients = jnp.matmul(ritz, g, precision=_HIGHEST) / (jnp.abs(theta) + damping)
        step = jnp.matmul(coefficients, ritz, precision=_HIGHEST)
        new_state = ScaleBySaddleFreeNewtonState(theta.astype(state.eigenvalues.dtype))
        return tree_cast_like(_unraveller(params)(step), updates), new_state


def scale_by_saddle_free_newton(
    krylov_dim: int = 20, damping: float = 1e-3
) -> ScaleBySaddleFreeNewton:
    """Saddle-free Newton: the gradient preconditioned by (|H| + damping)^-1 on a Krylov space.

    Update rule, with H the Hessian of ``value_fn`` at the params and g the
    incoming gradient::

        Q = Lanczos basis of span(g, H g, ..., H^(k-1) g),  k = min(krylov_dim, #params)
        Q H Q^T = S diag(theta) S^T,     Y = S^T Q          (Ritz pairs; see lanczos)
        u <- Y^T diag(1 / (|theta| + damping)) Y g

    Newton's step H^-1 g divides by signed curvatures: along a negative one it
    climbs, so Newton is attracted to saddle points. Dividing by |theta| keeps
    Newton's scaling but always descends, and leaves a saddle fastest where
    the curvature is most negative (Dauphin et al., Algorithm 1). g lies in its
    own Krylov space (it is the first Lanczos vector), so no part of it is left
    in the orthogonal complement: the step lies in the subspace, as the paper's
    theta + V alpha does; nothing is guessed for curvatures Lanczos has not seen
    (directions added by a restart after an invariant subspace are orthogonal to
    g and do not change the step).
    With krylov_dim >= #params (or g in a small invariant subspace) the step is
    exactly (|H| + damping)^-1 g. Each step costs k Hessian-vector products
    (forward-over-reverse, :func:`gradtx.hvp`) and a k x k eigh.

    ``krylov_dim`` is a positive int (static: it sets shapes); ``damping`` > 0
    bounds the step where curvature vanishes (the paper chooses it per step by
    a line search over lambda and takes several steps in each subspace; here it
    is fixed, and one subspace is built per step). The output has the
    gradient's sign: follow it with ``scale_by_learning_rate`` (or with
    ``scale(-1.0)`` and a line search: -u is a descent direction). The update
    needs ``params`` and ``value_fn=`` (keyword arguments that value_fn accepts
    are passed to it); the Ritz values are ``tree_get(state, "eigenvalues")``.

    Args:
        krylov_dim: k, an integer >= 1 (static). Default 20.
        damping: > 0. Default 1e-3.

    Neither optax, PyTorch nor Keras has saddle-free Newton or any transform
    that uses negative curvature (optax's Hessian helpers stop at products).

    Reference: Dauphin, Pascanu, Gulcehre, Cho, Ganguli, Bengio, *Identifying
    and attacking the saddle point problem in high-dimensional non-convex
    optimization*, NeurIPS 2014.

    >>> import gradtx, jax, jax.numpy as jnp
    >>> def f(p): return p[0] ** 2 - p[1] ** 2  # H = diag(2, -2)
    >>> params = jnp.array([1.0, 0.5])
    >>> tx = gradtx.scale_by_saddle_free_newton(damping=1e-6)
    >>> u, state = tx.update(jax.grad(f)(params), tx.init(params), params, value_fn=f)
    >>> [round(float(x), 4) for x in u]  # |H|^-1 g: descends along y too
    [1.0, -0.5]
    """
    return ScaleBySaddleFreeNewton(krylov_dim=krylov_dim, damping=damping)


@recipe
def saddle_free_newton(
    learning_rate: Any = 1.0, krylov_dim: int = 20, damping: float = 1e-3
) -> Chain:
    """Saddle-free Newton steps, for full-batch problems and small models.

    Update rule::

        p_t = p_{t-1} - lr_t (|H_k| + damping)^-1 g_t     (see scale_by_saddle_free_newton)

    where |H_k| is the Hessian's absolute value on the k-dimensional Krylov
    space of g_t. With lr 1 and k = #params it is Newton's method with every
    negative curvature's sign flipped: on f = x^2 - y^2, Newton jumps to the
    saddle, saddle-free Newton doubles y.

    Args:
        learning_rate: a number or a schedule, >= 0. Default 1.0.
        krylov_dim: k, an integer >= 1 (static). Default 20.
        damping: > 0. Default 1e-3.

    >>> import gradtx, jax, jax.numpy as jnp
    >>> def f(p): return p[0] ** 2 - p[1] ** 2
    >>> params = jnp.array([1.0, 0.5])
    >>> tx = gradtx.saddle_free_newton(damping=1e-6)
    >>> updates, _ = tx.update(jax.grad(f)(params), tx.init(params), params, value_fn=f)
    >>> [round(float(x), 4) for x in params + updates]
    [0.0, 1.0]

    None of optax, PyTorch or Keras has it. Reference: Dauphin et al.,
    *Identifying and attacking the saddle point problem in high-dimensional
    non-convex optimization*, NeurIPS 2014.
    """
    return named_recipe(
        "saddle_free_newton",
        scale_by_saddle_free_newton(krylov_dim, damping),
        scale_by_learning_rate(learning_rate),
    )


# -- negative-curvature escape ---------------------------------------------------------


class EscapeSaddlePointsState(NamedTuple):
    """The PRNG key for Lanczos's starts, what the last step did, and the inner state.

    ``escaped``: whether the last step was a negative-curvature step; ``curvature``:
    the lowest Ritz value at the last small-gradient check (0 before any).
    """

    key: jax.Array
    escaped: jax.Array
    curvature: jax.Array
    inner_state: Any


class EscapeSaddlePoints(Transform):
    """Steps along the most negative curvature where the gradient is small, else the inner's."""

    integer_leaves = "refuse"  # it does arithmetic on the params

    inner: Transform
    grad_tol: float = 1e-3
    krylov_dim: int = static(10)
    hessian_lipschitz: float = 1.0
    curvature_tol: float = 0.0
    key: Any = 0

    def __post_init__(self):
        object.__setattr__(self, "inner", as_transform(self.inner))
        check_range(self, "grad_tol", low=0.0)
        check_range(self, "krylov_dim", low=1.0, integer=True)
        check_range(self, "hessian_lipschitz", low=0.0, low_open=True)
        check_range(self, "curvature_tol", low=0.0)

    def init(self, params):
        key = prng_key(self.key)
        return EscapeSaddlePointsState(
            key=key,
            escaped=jnp.zeros([], bool),
            curvature=jnp.zeros([], default_float()),
            inner_state=self.inner.init(params),
        )

    def update(self, updates, state, params=None, **extra_args):
        objective = _objective(self, params, extra_args)
        inner_updates, inner_state = self.inner.update(
            updates, state.inner_state, params, **extra_args
        )
        key, probe_key = jax.random.split(state.key)
        dtype = _ravel(params).dtype
        unravel = _unraveller(params)

        def negative_curvature_step():
            # Lanczos from a random start: at a critical point g gives no direction.
            start = jax.random.normal(probe_key, (_size(params),), dtype)
            theta, ritz = _ritz_pairs(
                _flat_hessian(objective, params), start, _krylov_dim(self, params)
            )
            lowest, v = theta[0], ritz[0]
            d = jnp.abs(lowest) / jnp.asarray(self.hessian_lipschitz, dtype) * v
            # Of +-d, the one with the lower loss (Carmon et al.'s Exploit-NC-pair).
            plus = objective(jax.tree.map(jnp.add, params, unravel(d)))
            minus = objective(jax.tree.map(jnp.subtract, params, unravel(d)))
            return lowest, jnp.where(plus <= minus, d, -d)

        def no_step():
            return jnp.zeros([], dtype), jnp.zeros(_size(params), dtype)

        small = tree_global_norm(updates) <= self.grad_tol
        lowest, d = lax.cond(small, negative_curvature_step, no_step)
        escaped = small & (lowest < -jnp.asarray(self.curvature_tol, dtype))
        new_updates, inner_state = lax.cond(
            escaped,
            lambda: (tree_cast_like(unravel(d), updates), state.inner_state),
            lambda: (inner_updates, inner_state),
        )
        curvature = jnp.where(small, lowest, state.curvature).astype(state.curvature.dtype)
        return new_updates, EscapeSaddlePointsState(key, escaped, curvature, inner_state)


def escape_saddle_points(
    inner: Any,
    grad_tol: float = 1e-3,
    krylov_dim: int = 10,
    hessian_lipschitz: float = 1.0,
    curvature_tol: float = 0.0,
    key: Any = 0,
) -> EscapeSaddlePoints:
    """Wraps an optimizer: where the gradient is small, a step along negative curvature.

    Update rule, with H the Hessian of ``value_fn`` at the params p::

        if |g| > grad_tol:                     u <- inner(g)
        else:  (lambda, v) = lowest Ritz pair of H, k = min(krylov_dim, #params)
               Lanczos steps from a random unit vector (PRNG key in the state)
            if lambda < -curvature_tol:        d = |lambda| / hessian_lipschitz * v
                                               u <- +d if f(p + d) <= f(p - d) else -d
            else:                              u <- inner(g)

    Near a strict saddle the gradient is small and first-order methods crawl
    (at a saddle, gradient descent stays for ever); a step along the most
    negative curvature decreases f by about |lambda|^3 / (2 L^2) whatever g is.
    The step length |lambda| / L (L the Hessian's Lipschitz constant) and the
    choice of sign by comparing f(p +- d) are Carmon et al.'s negative-curvature
    step (Exploit-NC-pair); to first order it is Liu et al.'s -sign(g . v), and
    it still decides where g = 0. At a degenerate saddle (the monkey saddle
    x^3 - 3 x y^2 at 0, where H = 0) there is no negative curvature and the
    inner step (zero there) is taken. Lanczos runs only on small-gradient steps
    (``lax.cond``), costing k Hessian-vector products; the inner state does not
    advance on an escape step. ``grad_tol``, ``curvature_tol`` >= 0,
    ``hessian_lipschitz`` > 0; ``key`` is a PRNG key or an int seed. The update
    needs ``params`` and ``value_fn=`` (all extra arguments go on to ``inner``).
    ``tree_get(state, "escaped")`` says whether the last step escaped.

    Args:
        inner: the optimizer of ordinary steps, a gradtx or optax transform.
        grad_tol: the gradient norm below which curvature is probed, >= 0. Default 1e-3.
        krylov_dim: k, an integer >= 1 (static). Default 10.
        hessian_lipschitz: L, > 0. Default 1.0.
        curvature_tol: >= 0. Default 0.0.
        key: a PRNG key or an integer seed. Default 0.

    It wraps its optimizer, rather than following it in a chain, because it
    must see the raw gradient (its norm decides) and must replace, not add to,
    the inner step. Neither optax, PyTorch nor Keras has it.

    References: Carmon, Duchi, Hinder, Sidford, *Accelerated methods for
    nonconvex optimization*, SIAM J. Optim., 2018 (Exploit-NC-pair); Liu, Li,
    Wang, Yi, Yang, *Adaptive negative curvature descent with applications in
    non-convex optimization*, NeurIPS 2018; Xu, Jin, Yang, *First-order
    stochastic algorithms for escaping from saddle points in almost linear
    time* (NEON), NeurIPS 2018.

    >>> import gradtx, jax, jax.numpy as jnp
    >>> def f(p): return p[0] ** 2 - p[1] ** 2
    >>> params = jnp.zeros(2)  # the saddle: the gradient is 0
    >>> tx = gradtx.escape_saddle_points(gradtx.sgd(0.1))
    >>> u, state = tx.update(jax.grad(f)(params), tx.init(params), params, value_fn=f)
    >>> [round(abs(float(x)), 4) for x in u], bool(gradtx.tree_get(state, "escaped"))
    ([0.0, 2.0], True)
    """
    return EscapeSaddlePoints(
        inner=inner,
        grad_tol=grad_tol,
        krylov_dim=krylov_dim,
        hessian_lipschitz=hessian_lipschitz,
        curvature_tol=curvature_tol,
        key=key,
    )


@recipe
def negative_curvature_descent(
    learning_rate: Any,
    grad_tol: float = 1e-3,
    krylov_dim: int = 10,
    hessian_lipschitz: float = 1.0,
    curvature_tol: float = 0.0,
    key: Any = 0,
) -> Chain:
    """Gradient descent that leaves saddle points along their negative curvature.

    Update rule::

        p_t = p_{t-1} - lr_t g_t                      where |g_t| > grad_tol
        p_t = p_{t-1} +- |lambda| / L * v             otherwise, if lambda < -curvature_tol

    (lambda, v) the lowest Ritz pair of the Hessian from Lanczos, L =
    ``hessian_lipschitz``, the sign that lowers the loss; see
    :func:`escape_saddle_points`, which wraps any optimizer.

    Args:
        learning_rate: the gradient steps' rate, a number or a schedule, >= 0.
        grad_tol, krylov_dim, hessian_lipschitz, curvature_tol, key: as
            :func:`escape_saddle_points` (defaults 1e-3, 10, 1.0, 0.0, 0).

    >>> import gradtx, jax, jax.numpy as jnp
    >>> def f(p): return p[0] ** 2 - p[1] ** 2
    >>> params = jnp.zeros(2)  # the saddle: the gradient is 0
    >>> tx = gradtx.negative_curvature_descent(0.1)
    >>> updates, state = tx.update(jax.grad(f)(params), tx.init(params), params, value_fn=f)
    >>> [round(abs(float(x)), 4) for x in updates]  # |lambda| / L = 2 along y
    [0.0, 2.0]

    None of optax, PyTorch or Keras has it. References: Carmon et al., SIAM J.
    Optim. 2018; Liu et al., NeurIPS 2018.
    """
    return named_recipe(
        "negative_curvature_descent",
        escape_saddle_points(
            sgd(learning_rate), grad_tol, krylov_dim, hessian_lipschitz, curvature_tol, key
        ),
    )
