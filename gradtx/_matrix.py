"""Orthogonalised momentum: Newton-Schulz orthogonalisation and Muon."""

from __future__ import annotations

from collections.abc import Sequence
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._adam import scale_by_adam
from ._base import (
    check_choice,
    check_denominator,
    check_range,
    fail,
    static,
    Struct,
    Transform,
)
from ._combine import _FrozenTree, Chain, chain, EmptyState, named_recipe, recipe
from ._regularize import add_decayed_weights
from ._scale import scale_by_learning_rate
from ._tree import (
    bias_correction,
    compute_dtype,
    debias,
    hp,
    safe_increment,
    tree_zeros_like,
    up,
    zero_count,
)
from ._wrappers import partition

NS_COEFFS = (3.4445, -4.775, 2.0315)
"""Jordan's quintic coefficients (a, b, c), chosen for the largest slope at zero."""

NS_COEFFS_PRESETS = {
    "standard": NS_COEFFS,
    # Ahn et al. (Dion), one row per step, as optax 0.2.8 lists them.
    "dion": (
        (4.0848, -6.8946, 2.9270),
        (3.9505, -6.3029, 2.6377),
        (3.7418, -5.5913, 2.3037),
        (2.8769, -3.1427, 1.2046),
        (2.8366, -3.0525, 1.2012),
    ),
}
PRECONDITIONINGS = ("frobenius", "spectral", "aol", "schatten")
EPS_MODES = ("add", "clamp")


class MuonDimensionNumbers(NamedTuple):
    """Which axes of a leaf form the matrix that Muon orthogonalises (optax's name).

    The reduction axes become the rows, the output axes the columns (``x @ W``
    reduces over rows); every other axis is a batch axis, each slice
    orthogonalised on its own. Axes may be negative.
    """

    reduction_axis: Sequence[int] | int = 0
    output_axis: Sequence[int] | int = 1


def _is_spec(x: Any) -> bool:
    """A dimension-numbers leaf: gradtx's or optax's (same fields), or None."""
    return x is None or getattr(x, "_fields", None) == MuonDimensionNumbers._fields


def _as_axes(axis: Any) -> tuple[int, ...]:
    return (int(axis),) if isinstance(axis, (int, np.integer)) else tuple(map(int, axis))


def _normalise_spec(spec: Any) -> MuonDimensionNumbers | None:
    if spec is None:
        return None
    return MuonDimensionNumbers(_as_axes(spec.reduction_axis), _as_axes(spec.output_axis))


def _freeze_specs(specs: Any) -> Any:
    """None, one spec, a function of the params, or a tree of specs, hashable (a static field)."""
    if specs is None or callable(specs):
        return specs
    if _is_spec(specs):
        return _normalise_spec(specs)
    leaves, treedef = jax.tree.flatten(specs, is_leaf=_is_spec)
    return _FrozenTree(leaves=tuple(map(_normalise_spec, leaves)), treedef=treedef)


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


def _specs_per_leaf(specs: Any, tree: Any, owner: str) -> list[tuple[str, Any, Any]]:
    """``(path, leaf, spec)`` for every leaf of ``tree``; a spec tree may be a prefix."""
    if isinstance(specs, _FrozenTree):
        specs = specs.unfreeze()
    elif callable(specs):
        specs = jax.tree.map(_normalise_spec, specs(tree), is_leaf=_is_spec)
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    if _is_spec(specs):
        per_leaf = [specs] * len(flat)
    else:
        spec_leaves, spec_def = jax.tree.flatten(specs, is_leaf=_is_spec)
        try:
            subtrees = spec_def.flatten_up_to(tree)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"{owner}: weight_dimension_numbers does not match the params: a tree of "
                f"MuonDimensionNumbers (or None) with the params' structure, or a prefix of "
                f"it, is needed. {error}"
            ) from None
        per_leaf = [s for s, sub in zip(spec_leaves, subtrees) for _ in jax.tree.leaves(sub)]
    return [
        (jax.tree_util.keystr(path) or "<root>", leaf, spec)
        for (path, leaf), spec in zip(flat, per_leaf)
    ]


class _MatrixView(NamedTuple):
    """How a leaf is seen as a batch of (reduction, output) matrices, and back."""

    transpose: tuple[int, ...]
    flat_shape: tuple[int, int, int]
    unflat_shape: tuple[int, ...]
    inverse: tuple[int, ...]
    fan_in: int
    fan_out: int


def _matrix_view(shape: tuple[int, ...], spec: Any, where: str) -> _MatrixView:
    """Validates ``spec`` against a leaf's shape; ``where`` names the leaf in errors."""
    ndim = len(shape)
    if spec is None:
        if ndim != 2:
            raise ValueError(
                f"{where} has shape {shape}: Newton-Schulz orthogonalises matrices. Give its "
                "MuonDimensionNumbers in weight_dimension_numbers (which axes are rows and "
                "columns), or use muon, which hands non-matrix leaves to Adam."
            )
        spec = MuonDimensionNumbers()
    if ndim < 2:
        raise ValueError(
            f"{where} has shape {shape} and dimension numbers {tuple(spec)}: only leaves of "
            "rank >= 2 can be seen as matrices; give it None (Adam, in muon) instead."
        )
    axes = []
    for name in ("reduction_axis", "output_axis"):
        given = _as_axes(getattr(spec, name))
        bad = [a for a in given if not -ndim <= a < ndim]
        if bad:
            raise ValueError(
                f"{where} has shape {shape}: {name}={getattr(spec, name)} names axes {bad} "
                f"that it does not have (optax would wrap them modulo {ndim})."
            )
        axes.append(tuple(a % ndim for a in given))
    reduction, output = axes
    if len(set(reduction + output)) != len(reduction + output):
        raise ValueError(
            f"{where} has shape {shape}: the reduction axes {reduction} and output axes "
            f"{output} must be distinct."
        )
    batch = tuple(a for a in range(ndim) if a not in reduction + output)
    transpose = batch + reduction + output
    sizes = [math.prod(shape[a] for a in group) for group in (batch, reduction, output)]
    return _MatrixView(
        transpose=transpose,
        flat_shape=tuple(sizes),
        unflat_shape=tuple(shape[a] for a in transpose),
        inverse=tuple(np.argsort(transpose)),
        fan_in=sizes[1],
        fan_out=sizes[2],
    )


def _coefficient_rows(ns_coeffs: Any, ns_steps: int, dtype: Any) -> jax.Array:
    """The (a, b, c) of every step: one row repeated ``ns_steps`` times, or one row per step."""
    coeffs = jnp.asarray(ns_coeffs, dtype)
    if coeffs.ndim == 1:
        return jnp.broadcast_to(coeffs, (ns_steps, 3))
    return coeffs


def _coefficient_shape(ns_coeffs: Any) -> tuple[int, ...]:
    if hasattr(ns_coeffs, "shape"):
        return tuple(ns_coeffs.shape)
    if isinstance(ns_coeffs, (tuple, list)) and ns_coeffs:
        if all(isinstance(row, (tuple, list)) for row in ns_coeffs):
            widths = {len(row) for row in ns_coeffs}
            return (len(ns_coeffs), widths.pop() if len(widths) == 1 else -1)
        if not any(isinstance(row, (tuple, list)) for row in ns_coeffs):
            return (len(ns_coeffs),)
    return (-1,)


def _coefficient_problem(ns_coeffs: Any, ns_steps: Any) -> tuple[str, str] | None:
    """The argument at fault and what is wrong with the coefficients, or None."""
    shape = _coefficient_shape(ns_coeffs)
    if len(shape) not in (1, 2) or shape[-1] != 3:
        return "ns_coeffs", (
            "ns_coeffs must be (a, b, c) or one (a, b, c) per step, of shape (3,) or (n, 3)"
        )
    if len(shape) == 2 and shape[0] > ns_steps:
        return "ns_steps", (
            f"ns_coeffs has {shape[0]} rows, one per step, for {ns_steps} steps; ns_steps "
            "must be at least the number of rows (as optax requires; the rows are then what runs)"
        )
    return None


def _check_option(owner: str, arg: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        allowed = ", ".join(map(repr, choices))
        raise ValueError(f"{owner}({arg}={value!r}): {arg} must be one of {allowed}")


def _newton_schulz_matrix(x, coeffs, preconditioning, eps, eps_mode, ns_dtype):
    """Orthogonalises one (m, n) matrix; ``ns_dtype`` rounds each step's result."""
    tall = x.shape[0] > x.shape[1]
    if tall:  # f(X^T) = f(X)^T: iterate on the side with the smaller Gram matrix
        x = x.T
    accumulate = x.dtype
    store = ns_dtype or accumulate

    def rounded(y):  # a bfloat16 iteration keeps each product's result in bfloat16
        return y.astype(store).astype(accumulate)

    def gram(y):
        return rounded(y @ y.conj().T)

    x = rounded(x)
    eps = jnp.asarray(eps, accumulate)
    if preconditioning in ("frobenius", "spectral"):
        norm = rounded(jnp.linalg.norm(x, ord="fro" if preconditioning == "frobenius" else 2))
        x = rounded(x / (norm + eps if eps_mode == "add" else rounded(jnp.maximum(norm, eps))))
    for step, (a, b, c) in enumerate(coeffs):
        g = gram(x)
        if step == 0 and preconditioning == "aol":
            # Rows scaled so that sum_j |(XX^H)_ij| <= 1 (Boissin et al.): no Frobenius step.
            s = jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.abs(g), axis=-1), eps))[:, None]
            x, g = rounded(x * s), rounded(g * s * s.T)
        elif step == 0 and preconditioning == "schatten":
            # Scaled by the Schatten-4 norm ||XX^H||_F ** 0.5 (Grishina et al.).
            s = jax.lax.rsqrt(jnp.maximum(jnp.linalg.norm(g), eps))
            x, g = rounded(x * s), rounded(g * s**2)
        x = rounded(a * x + rounded(b * g + c * g @ g) @ x)
    return x.T if tall else x


def orthogonalize_via_newton_schulz(
    x: jax.Array,
    ns_coeffs: Any = NS_COEFFS,
    ns_steps: int = 5,
    preconditioning: str = "frobenius",
    eps: float = 1e-8,
    dimension_numbers: MuonDimensionNumbers | None = None,
    *,
    ns_dtype: Any = None,
    eps_mode: str = "add",
) -> jax.Array:
    """The orthogonal factor of a matrix, approximated by a quintic Newton-Schulz iteration.

    Iteration, on X the wide orientation of x (transposed if it has more rows
    than columns), with (a, b, c) the coefficients of the step::

        X_0 = X / (||X||_F + eps)        (spectral: ||X||_2; eps_mode="clamp": max(||X||, eps))
        A = X_k X_k^H;   X_{k+1} = a X_k + (b A + c A A) X_k       k = 0 .. ns_steps - 1

    It maps X = U S V^T to U S' V^T with S' near 1: 0.68 to 1.2 for singular
    values above 2% of ||X||_F with the default coefficients (3.4445, -4.775,
    2.0315), which favour speed over accuracy. ``ns_coeffs`` may give one row per
    step (ns_steps is then the number of rows). ``preconditioning="aol"`` or
    ``"schatten"`` scales the first step instead of normalising. Leaves of
    rank != 2 need ``dimension_numbers``: batch axes are orthogonalised slice by
    slice. The arithmetic runs in float32 at least (optax: in x's dtype);
    ``ns_dtype=jnp.bfloat16`` keeps every step's result in bfloat16, products
    accumulated in float32, as torch.optim.Muon does. Returns x's dtype.

    Args:
        x: the matrix (or, with ``dimension_numbers``, a batch of them).
        ns_coeffs: (a, b, c), or one row per step. Default (3.4445, -4.775, 2.0315).
        ns_steps: the number of iterations, at least the number of rows of
            ``ns_coeffs``. Default 5.
        preconditioning: ``"frobenius"`` (default), ``"spectral"``, ``"aol"`` or
            ``"schatten"``.
        eps: added to (or the floor of) the norm. Default 1e-8.
        dimension_numbers: a :class:`MuonDimensionNumbers`; None for a rank-2 x.
        ns_dtype: dtype each step's result is rounded to; None for float32 at least.
        eps_mode: ``"add"`` (default) or ``"clamp"``.

    Reference: Jordan et al., *Muon* (kellerjordan.github.io/posts/muon, 2024).

    >>> import gradtx, jax.numpy as jnp
    >>> o = gradtx.orthogonalize_via_newton_schulz(jnp.asarray([[3.0, 0.0], [0.0, 0.5]]))
    >>> [round(float(v), 2) for v in jnp.diag(o)]
    [0.71, 1.04]
    """
    owner = "orthogonalize_via_newton_schulz"
    _check_option(owner, "preconditioning", preconditioning, PRECONDITIONINGS)
    _check_option(owner, "eps_mode", eps_mode, EPS_MODES)
    if isinstance(ns_steps, bool) or not isinstance(ns_steps, (int, np.integer)) or ns_steps < 0:
        raise ValueError(f"{owner}(ns_steps={ns_steps!r}): ns_steps must be a whole number >= 0")
    problem = _coefficient_problem(ns_coeffs, ns_steps)
    if problem:
        arg, message = problem
        value = ns_coeffs if arg == "ns_coeffs" else ns_steps
        raise ValueError(f"{owner}({arg}={value!r}): {message}")
    x = jnp.asarray(x)
    where = f"orthogonalize_via_newton_schulz: x of dtype {x.dtype}"
    view = _matrix_view(x.shape, _normalise_spec(dimension_numbers), where)
    return _orthogonalize(x, view, ns_coeffs, ns_steps, preconditioning, eps, eps_mode, ns_dtype)


@functools.partial(
    jax.jit, static_argnames=("view", "ns_steps", "preconditioning", "eps_mode", "ns_dtype")
)
def _orthogonalize(x, view, ns_coeffs, ns_steps, preconditioning, eps, eps_mode, ns_dtype):
    dtype = compute_dtype(x)
    coeffs = _coefficient_rows(ns_coeffs, ns_steps, dtype)
    batch = up(x).transpose(view.transpose).reshape(view.flat_shape)

    def one(matrix):
        return _newton_schulz_matrix(matrix, coeffs, preconditioning, eps, eps_mode, ns_dtype)

    out = jax.vmap(one)(batch)
    return out.reshape(view.unflat_shape).transpose(view.inverse).astype(x.dtype)


# -- Muon ------------------------------------------------------------------------------


# One compiled function per leaf shape, even when called eagerly: Newton-Schulz multiplies
# the smallest singular directions by up to a**ns_steps, so the float32 rounding of
# op-by-op execution (no fused multiply-adds) would differ from jit's by 1e-5.
@functools.partial(jax.jit, static_argnames=("view", "ns_steps", "options"))
def _muon_direction(
    g, mu, beta, one_minus, bc, bc_next, ns_coeffs, eps, *, view, ns_steps, options
):
    """(orthogonalised direction, new momentum) of one leaf, in g's (compute) dtype."""
    nesterov, with_debias, adaptive, preconditioning, eps_mode, ns_dtype = options
    mu = one_minus * g + beta * mu
    if with_debias and nesterov:
        m_hat = beta * debias(mu, bc_next) + one_minus * debias(g, bc)
    elif nesterov:
        m_hat = beta * mu + one_minus * g
    else:
        m_hat = debias(mu, bc) if with_debias else mu
    o = _orthogonalize(m_hat, view, ns_coeffs, ns_steps, preconditioning, eps, eps_mode, ns_dtype)
    if adaptive:  # scaled by the dual norm <M, O> (Bernstein & Newhouse)
        o = jnp.sum(jnp.conj(m_hat) * o) * o
    return o, mu


class MuonState(NamedTuple):
    """Muon's step count and its one momentum buffer per matrix."""

    count: jax.Array
    mu: Any


class ScaleByMuon(Transform):
    """Momentum, orthogonalised per matrix by Newton-Schulz."""

    ns_coeffs: Any = NS_COEFFS
    ns_steps: int = static(5)
    beta: float = 0.95
    eps: float = 1e-8
    mu_dtype: Any = static(None)
    nesterov: bool = static(True)
    adaptive: bool = static(False)
    preconditioning: str = static("frobenius")
    weight_dimension_numbers: Any = static(None)
    debias: bool = static(True)
    eps_mode: str = static("add")
    ns_dtype: Any = static(None)

    def __post_init__(self):
        object.__setattr__(self, "ns_coeffs", _as_rows(self.ns_coeffs))
        object.__setattr__(
            self, "weight_dimension_numbers", _freeze_specs(self.weight_dimension_numbers)
        )
        check_range(self, "ns_steps", low=0, integer=True)
        problem = _coefficient_problem(self.ns_coeffs, self.ns_steps)
        if problem:
            fail(self, *problem)
        # Without bias correction beta = 1 is a frozen buffer; with it, 1 - beta**t = 0.
        check_range(self, "beta", low=0.0, high=1.0, high_open=self.debias)
        check_range(self, "eps", low=0.0)
        check_denominator(self, "eps")
        check_choice(self, "preconditioning", PRECONDITIONINGS)
        check_choice(self, "eps_mode", EPS_MODES)

    def _views(self, tree):
        return [
            _matrix_view(_shape(leaf), spec, f"{self.name}: the leaf at {path}")
            for path, leaf, spec in _specs_per_leaf(self.weight_dimension_numbers, tree, self.name)
        ]

    def init(self, params):
        self._views(params)  # refuses leaves that are not matrices now, naming them
        return MuonState(zero_count(), tree_zeros_like(params, self.mu_dtype))

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        count = safe_increment(state.count)
        bc = bias_correction(self.beta, count)
        bc_next = bias_correction(self.beta, safe_increment(count))

        def leaf(g, mu, view):
            # Hyperparameters enter as arrays formed here: 1 - beta from the Python number.
            g32 = up(g)
            beta, one_minus = hp(self.beta, g32), hp(1 - self.beta, g32)
            o, new_mu = _muon_direction(
                g32,
                up(mu),
                beta,
                one_minus,
                bc.astype(g32.dtype),
                bc_next.astype(g32.dtype),
                self.ns_coeffs,
                hp(self.eps, g32),
                view=view,
                ns_steps=self.ns_steps,
                options=(
                    self.nesterov,
                    self.debias,
                    self.adaptive,
                    self.preconditioning,
                    self.eps_mode,
                    self.ns_dtype,
                ),
            )
            return o.astype(jnp.result_type(g)), new_mu.astype(mu.dtype)

        leaves, treedef = jax.tree.flatten(updates)
        moments = treedef.flatten_up_to(state.mu)
        out = [leaf(g, mu, view) for g, mu, view in zip(leaves, moments, self._views(updates))]
        updates = treedef.unflatten([o for o, _ in out])
        return updates, MuonState(count, treedef.unflatten([mu for _, mu in out]))


def _as_rows(ns_coeffs: Any) -> Any:
    """Coefficients as a tuple (of tuples): numeric leaves, hashable."""
    if isinstance(ns_coeffs, (str, bytes)):
        return ns_coeffs
    try:
        rank = np.ndim(ns_coeffs)
    except ValueError:  # ragged rows: kept as rows, for _coefficient_problem to name
        rank = None
    if rank == 2 or (
        isinstance(ns_coeffs, (tuple, list)) and ns_coeffs and np.ndim(ns_coeffs[0]) == 1
    ):
        return tuple(tuple(row) for row in ns_coeffs)
    if isinstance(ns_coeffs, (tuple, list, np.ndarray)):
        return tuple(ns_coeffs)
    return ns_coeffs


def scale_by_muon(
    ns_coeffs: Any = NS_COEFFS,
    ns_steps: int = 5,
    beta: float = 0.95,
    eps: float = 1e-8,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    preconditioning: str = "frobenius",
    weight_dimension_numbers: Any = None,
    debias: bool = True,
    eps_mode: str = "add",
    ns_dtype: Any = None,
) -> ScaleByMuon:
    """Muon's scaling: momentum orthogonalised per matrix, as ``optax.contrib.scale_by_muon``.

    Update rule, per leaf seen as a batch of matrices::

        m_t = beta m_{t-1} + (1 - beta) u_t
        M_t = m_t / (1 - beta**t)
            (Nesterov: beta m_t / (1 - beta**(t+1)) + (1 - beta) u_t / (1 - beta**t))
        u_t <- NS(M_t)                        (adaptive: <M_t, NS(M_t)> NS(M_t))

    NS is :func:`orthogonalize_via_newton_schulz`. The state holds one momentum
    buffer per leaf. ``weight_dimension_numbers`` (None: every leaf is a matrix;
    one :class:`MuonDimensionNumbers` for all; a tree of them, a prefix of the
    params; or a function of the params returning one) says how leaves of other
    ranks are matrices; a leaf that is not, raises naming its path (optax
    raises without it). ``debias=False`` (torch, Keras: no bias correction,
    Nesterov ``beta m_t + (1 - beta) u_t``), ``eps_mode`` and ``ns_dtype`` are
    gradtx's, for the framework ports.

    Args:
        ns_coeffs: (a, b, c), or one row per step, of shape (3,) or (n, 3) with
            n <= ns_steps. Default (3.4445, -4.775, 2.0315).
        ns_steps: Newton-Schulz iterations, an integer >= 0. Default 5.
        beta: momentum, in [0, 1) ([0, 1] with ``debias=False``). Default 0.95.
        eps: added to the norm, > 0. Default 1e-8.
        mu_dtype: storage dtype of the momentum; None keeps the params' dtype.
        nesterov: Nesterov momentum. Default True.
        adaptive: scale by <M_t, NS(M_t)>. Default False.
        preconditioning: ``"frobenius"`` (default), ``"spectral"``, ``"aol"`` or
            ``"schatten"``.
        weight_dimension_numbers: how leaves are matrices (see above); None for
            rank-2 leaves.
        debias: bias-correct the momentum. Default True.
        eps_mode: ``"add"`` (default) or ``"clamp"``.
        ns_dtype: dtype each step's result is rounded to; None for float32 at least.

    Reference: Jordan et al., *Muon* (2024); Bernstein & Newhouse, *Old
    Optimizer, New Norm*, arXiv:2409.20325 (adaptive).

    The first step orthogonalises the gradient itself: diag(3, 0.5) goes to near I:

    >>> import gradtx
    >>> import jax.numpy as jnp
    >>> tx, g = gradtx.scale_by_muon(), {"w": jnp.array([[3.0, 0.0], [0.0, 0.5]])}
    >>> u, _ = tx.update(g, tx.init(g))
    >>> [round(x, 2) for x in u["w"].ravel().tolist()]
    [0.71, 0.0, 0.0, 1.04]
    """
    return ScaleByMuon(
        ns_coeffs=ns_coeffs,
        ns_steps=ns_steps,
        beta=beta,
        eps=eps,
        mu_dtype=mu_dtype,
        nesterov=nesterov,
        adaptive=adaptive,
        preconditioning=preconditioning,
        weight_dimension_numbers=weight_dimension_numbers,
        debias=debias,
        eps_mode=eps_mode,
        ns_dtype=ns_dtype,
    )


class ScaleByShape(Transform):
    """Scales each matrix's update by a factor of its shape (width transfer or RMS)."""

    weight_dimension_numbers: Any = static(None)
    consistent_rms: Any = None

    def __post_init__(self):
        object.__setattr__(
            self, "weight_dimension_numbers", _freeze_specs(self.weight_dimension_numbers)
        )
        check_range(self, "consistent_rms", low=0.0)

    def init(self, params):
        return EmptyState()

    def update(self, updates, state, params=None, **extra_args):
        del params, extra_args
        leaves, treedef = jax.tree.flatten(updates)

        def leaf(u, path, spec):
            view = _matrix_view(_shape(u), spec, f"{self.name}: the leaf at {path}")
            u32 = up(u)
            if self.consistent_rms is None:
                factor = jnp.sqrt(jnp.maximum(hp(1.0, u32), hp(view.fan_out / view.fan_in, u32)))
            else:
                factor = jnp.sqrt(hp(max(view.fan_in, view.fan_out), u32))
                factor = factor * hp(self.consistent_rms, u32)
            return (factor * u32).astype(jnp.result_type(u))

        specs = _specs_per_leaf(self.weight_dimension_numbers, updates, self.name)
        return treedef.unflatten([leaf(u, path, spec) for path, u, spec in specs]), state


def scale_by_shape(
    weight_dimension_numbers: Any = None, consistent_rms: float | None = None
) -> ScaleByShape:
    """Scales each matrix update by a factor of its shape, as optax's Muon does.

    Update rule, with fan_in the product of the reduction axes and fan_out of
    the output axes (a (fan_in, fan_out) matrix by default)::

        u <- sqrt(max(1, fan_out / fan_in)) u                 (consistent_rms None)
        u <- consistent_rms sqrt(max(fan_in, fan_out)) u      (otherwise)

    The first keeps the spectral step size across widths (Jordan); the second
    gives updates the RMS of AdamW's, 0.2 recommended (Liu et al., *Muon is
    Scalable for LLM Training*, arXiv:2502.16982). ``weight_dimension_numbers``
    as in :func:`scale_by_muon`.

    Args:
        weight_dimension_numbers: how leaves are matrices, as in
            :func:`scale_by_muon`; None for (fan_in, fan_out) rank-2 leaves.
        consistent_rms: >= 0, or None (default) for the width-transfer factor.

    Reference: optax ``optax.contrib.muon``; Liu et al., arXiv:2502.16982.

    A (2, 8) matrix is scaled by sqrt(8 / 2) = 2:

    >>> import gradtx
    >>> import jax.numpy as jnp
    >>> tx, g = gradtx.scale_by_shape(), {"w": jnp.ones((2, 8))}
    >>> float(tx.update(g, tx.init(g))[0]["w"][0, 0])
    2.0
    """
    return ScaleByShape(
        weight_dimension_numbers=weight_dimension_numbers, consistent_rms=consistent_rms
    )


class MuonLabels(Struct):
    """Labels 'muon' or 'adam' for every leaf: what muon's partition splits on.

    With no dimension numbers, leaves of rank 2 are 'muon'; otherwise the
    leaves given dimension numbers are, and those given None are 'adam'.
    """

    weight_dimension_numbers: Any = static(None)

    def __call__(self, params: Any) -> Any:
        treedef = jax.tree.structure(params)
        if self.weight_dimension_numbers is None:
            labels = [len(_shape(x)) == 2 for x in jax.tree.leaves(params)]
        else:
            specs = _specs_per_leaf(self.weight_dimension_numbers, params, "muon")
            labels = [spec is not None for _, _, spec in specs]
        return treedef.unflatten(["muon" if m else "adam" for m in labels])


@recipe
def muon(
    learning_rate: Any,
    ns_coeffs: Any = NS_COEFFS,
    ns_steps: int = 5,
    beta: float = 0.95,
    eps: float = 1e-8,
    weight_decay: Any = 0.0,
    weight_decay_mask: Any = None,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    preconditioning: str = "frobenius",
    adam_b1: float = 0.9,
    adam_b2: float = 0.999,
    adam_eps_root: float = 0.0,
    adam_weight_decay: Any = 0.0,
    adam_learning_rate: Any = None,
    muon_weight_dimension_numbers: Any = None,
    consistent_rms: float | None = None,
) -> Chain:
    """Muon: momentum orthogonalised by Newton-Schulz, as ``optax.contrib.muon``.

    Update rule, for the leaves Muon treats as matrices::

        O_t = NS(M_t)                  (scale_by_muon: M_t the debiased Nesterov momentum)
        p_t = p_{t-1} - lr_t * (shape_factor * O_t + weight_decay * p_{t-1})

    with shape_factor from :func:`scale_by_shape`. Every other leaf takes an
    AdamW step (``adam_b1``, ``adam_b2``, ``eps``, ``adam_eps_root``,
    ``adam_weight_decay``, Nesterov as ``nesterov``) at ``adam_learning_rate``
    (default ``learning_rate``). Without ``muon_weight_dimension_numbers`` the
    matrices are the rank-2 leaves: vectors, scalars and rank-3+ leaves (conv
    kernels) go to Adam silently, as in optax; give dimension numbers to
    orthogonalise those (None in the tree sends a leaf to Adam). A leaf given
    dimension numbers that cannot be a matrix raises, naming its path.
    ``ns_coeffs`` may be "standard" or "dion". With one learning rate it is
    ``tree_get(state, "learning_rate")``; with ``adam_learning_rate`` there are
    two, one per group.

    Args:
        learning_rate: step size, >= 0; a number or a schedule.
        ns_coeffs: (a, b, c), one row per step, or a preset ``"standard"`` or
            ``"dion"``. Default (3.4445, -4.775, 2.0315).
        ns_steps: Newton-Schulz iterations, an integer >= 0. Default 5.
        beta: momentum, in [0, 1). Default 0.95.
        eps: added to the norm (and Adam's denominator), > 0. Default 1e-8.
        weight_decay: decoupled decay of the matrices, >= 0. Default 0.
        weight_decay_mask: a tree of booleans, or a function of the params giving
            one, that selects the matrices to decay; None decays all.
        mu_dtype: storage dtype of the momenta; None keeps the params' dtype.
        nesterov: Nesterov momentum (Muon and Adam). Default True.
        adaptive: scale by <M_t, NS(M_t)>. Default False.
        preconditioning: ``"frobenius"`` (default), ``"spectral"``, ``"aol"`` or
            ``"schatten"``.
        adam_b1: Adam's first-moment decay, in [0, 1). Default 0.9.
        adam_b2: Adam's second-moment decay, in [0, 1). Default 0.999.
        adam_eps_root: Adam's eps_root, >= 0. Default 0.
        adam_weight_decay: decoupled decay of the Adam leaves, >= 0. Default 0.
        adam_learning_rate: the Adam leaves' rate; None (default) for ``learning_rate``.
        muon_weight_dimension_numbers: how leaves are matrices; None for rank-2 leaves.
        consistent_rms: see :func:`scale_by_shape`; >= 0 or None (default).

    References: Jordan et al., *Muon* (2024); Liu et al., arXiv:2502.16982.

    >>> import gradtx, jax.numpy as jnp
    >>> tx = gradtx.muon(0.1)
    >>> params = {"w": jnp.eye(2), "b": jnp.zeros(2)}
    >>> updates, state = tx.update(params, tx.init(params), params)
    >>> round(float(gradtx.tree_get(state, "learning_rate")), 6)
    0.1
    >>> [round(x, 2) for x in updates["w"].ravel().tolist()]
    [-0.11, -0.0, -0.0, -0.11]
    """
    if isinstance(ns_coeffs, str):
        if ns_coeffs not in NS_COEFFS_PRESETS:
            allowed = ", ".join(map(repr, NS_COEFFS_PRESETS))
            raise ValueError(f"muon(ns_coeffs={ns_coeffs!r}): a preset must be one of {allowed}")
        ns_coeffs = NS_COEFFS_PRESETS[ns_coeffs]
    specs = muon_weight_dimension_numbers
    matrices = chain(
        scale_by_muon(
            ns_coeffs,
            ns_steps,
            beta,
            eps,
            mu_dtype,
            nesterov=nesterov,
            adaptive=adaptive,
            preconditioning=preconditioning,
            weight_dimension_numbers=specs,
        ),
        scale_by_shape(specs, consistent_rms),
        add_decayed_weights(weight_decay, weight_decay_mask),
    )
    others = chain(
        scale_by_adam(adam_b1, adam_b2, eps, adam_eps_root, mu_dtype, nesterov=nesterov),
        add_decayed_weights(adam_weight_decay),
    )
    labels = MuonLabels(weight_dimension_numbers=specs)
    if adam_learning_rate is None:  # one rate: applied after the groups, readable in the state
        return named_recipe(
            "muon",
            partition({"muon": matrices, "adam": others}, labels),
            scale_by_learning_rate(learning_rate),
        )
    return named_recipe(
        "muon",
        partition(
            {
                "muon": chain(*matrices.transforms, scale_by_learning_rate(learning_rate)),
                "adam": chain(*others.transforms, scale_by_learning_rate(adam_learning_rate)),
            },
            labels,
        ),
    )
