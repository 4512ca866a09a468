"""Naive NumPy references for Shampoo and SOAP, written from the papers' algorithms.

Deliberately plain: Python loops over leaves, blocks and dimensions, a matrix per block
and dimension, ``np.linalg.eigh`` / ``np.linalg.qr`` for the matrix functions, and the
first moment of SOAP kept in the original space as in the paper (gradtx keeps it in the
eigenbasis). Each function takes float64 params and a list of gradient dicts and returns
the params after every step.

- Shampoo: Gupta, Koren, Singer, arXiv:1802.09568, Algorithm 2 (one statistic per tensor
  dimension, exponent 2k), with the blocking, grafting, momentum and start step of Anil et
  al., arXiv:2002.09018, as their distributed_shampoo does them.
- SOAP: Vyas et al., arXiv:2409.11321, Algorithms 3 (Adam in the eigenbasis) and 4 (one
  power iteration and QR, with the second moment re-sorted), with the authors' skipped
  first step and merging of dimensions.
"""

from __future__ import annotations

import numpy as np


def merge_small_dims(shape, max_dim):
    """distributed_shampoo's shape interpretation: merge neighbours up to max_dim, drop 1s."""
    if len(shape) > 0 and all(d == 1 for d in shape):
        return [1]
    result = []
    product = 1
    for d in shape:
        if product * d <= max_dim:
            product = product * d
        else:
            if product > 1:
                result.append(product)
            product = d
    if product > 1:
        result.append(product)
    return result


def inverse_root(matrix, p, epsilon, relative):
    """(matrix + ridge I)^(-1/p) by eigendecomposition, ridge relative to lambda_max."""
    lam, v = np.linalg.eigh(matrix)
    lam = np.maximum(lam, 0.0)
    ridge = epsilon * max(lam.max(), 1e-16) if relative else epsilon
    out = np.zeros_like(matrix)
    for k in range(len(lam)):
        out += (lam[k] + ridge) ** (-1.0 / p) * np.outer(v[:, k], v[:, k])
    return out


def times(x, matrix, axis):
    """x multiplied by matrix along axis: y[.., a, ..] = sum_b matrix[a, b] x[.., b, ..]."""
    return np.moveaxis(np.tensordot(matrix, x, axes=(1, axis)), 0, axis)


def unfolded_gram(x, axis):
    """unfold_axis(x) unfold_axis(x)^T."""
    rows = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    return rows @ rows.T


def shampoo(
    params,
    grads,
    learning_rate,
    block_size=128,
    beta1=0.9,
    beta2=0.999,
    diagonal_epsilon=1e-10,
    matrix_epsilon=1e-6,
    weight_decay=0.0,
    start_preconditioning_step=5,
    preconditioning_compute_steps=1,
    statistics_compute_steps=1,
    best_effort_shape_interpretation=True,
    graft_type="sgd",
    nesterov=True,
    exponent_override=0,
    moving_average_for_momentum=False,
    skip_preconditioning_dim_size_gt=4096,
    relative_matrix_epsilon=True,
    merge_small_dims_block_size=4096,
    skip_preconditioning_rank_lt=1,
    decoupled_weight_decay=False,
):
    params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    state = {}
    for name, p in params.items():
        shape = list(p.shape)
        skip = len(shape) < skip_preconditioning_rank_lt or len(shape) == 0
        skip = skip or any(d > skip_preconditioning_dim_size_gt for d in shape)
        if not skip and best_effort_shape_interpretation:
            shape = merge_small_dims(shape, merge_small_dims_block_size)
        blocks = []  # each block: a list of (start, stop) per axis
        if not skip:
            ranges = []
            for d in shape:
                ranges.append([(a, min(a + block_size, d)) for a in range(0, d, block_size)])
            blocks = [[]]
            for axis_ranges in ranges:
                blocks = [b + [r] for b in blocks for r in axis_ranges]
        stats, roots = [], []
        for block in blocks:
            stats.append([matrix_epsilon * np.eye(b - a) for a, b in block])
            roots.append([np.eye(b - a) for a, b in block])
        state[name] = {
            "shape": shape,
            "blocks": blocks,
            "stats": stats,
            "roots": roots,
            "diag": np.zeros(p.shape),
            "m": np.zeros(p.shape),
            "n": np.zeros(p.shape),
        }
    w2 = 1.0 if beta2 == 1.0 else 1.0 - beta2
    history = []
    for t, g_all in enumerate(grads):
        new_params = {}
        for name, p in params.items():
            s = state[name]
            g = np.array(g_all[name], dtype=np.float64)
            x = g.reshape(s["shape"]) if s["blocks"] else g
            # Statistics (Algorithm 2, lines 5-7), per block.
            if t % statistics_compute_steps == 0:
                for bi, block in enumerate(s["blocks"]):
                    piece = x[tuple(slice(a, b) for a, b in block)]
                    for axis in range(len(block)):
                        gram = unfolded_gram(piece, axis)
                        s["stats"][bi][axis] = beta2 * s["stats"][bi][axis] + w2 * gram
            # Inverse roots (line 8), every preconditioning_compute_steps.
            if t % preconditioning_compute_steps == 0:
                k = len(s["shape"])
                power = exponent_override if exponent_override > 0 else 2 * k
                for bi, block in enumerate(s["blocks"]):
                    for axis in range(len(block)):
                        root = inverse_root(
                            s["stats"][bi][axis], power, matrix_epsilon, relative_matrix_epsilon
                        )
                        if np.all(np.isfinite(root)):
                            s["roots"][bi][axis] = root
            # Graft (Anil et al., section 4.3).
            if graft_type in ("sgd", "none"):
                graft = g
            elif graft_type == "sqrt_n":
                graft = np.sign(g)
            else:
                h = g
                if graft_type.endswith("_normalized"):
                    h = g / (np.linalg.norm(g) + 1e-16)
                if graft_type.startswith("adagrad"):
                    s["diag"] = s["diag"] + h * h
                    graft = h / (np.sqrt(s["diag"]) + diagonal_epsilon)
                else:
                    s["diag"] = beta2 * s["diag"] + w2 * h * h
                    v = s["diag"]
                    if graft_type == "adam":
                        v = v / (1.0 - beta2 ** (t + 1))
                    graft = h / (np.sqrt(v) + diagonal_epsilon)
            # Preconditioned gradient (line 9), block by block.
            if s["blocks"]:
                d = np.zeros(s["shape"])
                for bi, block in enumerate(s["blocks"]):
                    index = tuple(slice(a, b) for a, b in block)
                    piece = x[index]
                    for axis in range(len(block)):
                        piece = times(piece, s["roots"][bi][axis], axis)
                    d[index] = piece
                d = d.reshape(p.shape)
            else:
                d = graft
            if graft_type != "none":
                d = d * np.linalg.norm(graft) / (np.linalg.norm(d) + 1e-16)
            coupled = 0.0 if decoupled_weight_decay else weight_decay
            d = d + coupled * p
            a = graft + coupled * p
            w = 1.0 - beta1 if moving_average_for_momentum else 1.0
            s["m"] = beta1 * s["m"] + w * d
            s["n"] = beta1 * s["n"] + w * a
            if t >= start_preconditioning_step:
                step = w * d + beta1 * s["m"] if nesterov else s["m"]
            else:
                step = w * a + beta1 * s["n"] if nesterov else s["n"]
            if decoupled_weight_decay:
                step = step + weight_decay * p
            new_params[name] = p - learning_rate * step
        params = new_params
        history.append({k: v.copy() for k, v in params.items()})
    return history


def soap_merge_dims(shape, max_dim):
    """The SOAP authors' merge_dims."""
    result = []
    current = 1
    for d in shape:
        if current * d > max_dim:
            if current > 1:
                result.append(current)
                current = d
            else:
                result.append(d)
                current = 1
        else:
            current = current * d
    if current > 1 or len(result) == 0:
        result.append(current)
    return result


def soap(
    params,
    grads,
    lr=3e-3,
    betas=(0.95, 0.95),
    shampoo_beta=None,
    eps=1e-8,
    weight_decay=0.01,
    precondition_frequency=10,
    max_precond_dim=10000,
    merge_dims=False,
    precondition_1d=False,
    normalize_grads=False,
    correct_bias=True,
):
    """SOAP with gradtx's decoupled decay: p <- p - lr (step + wd p), decayed from step 1."""
    beta1, beta2 = betas
    sb = beta2 if shampoo_beta is None else shampoo_beta
    params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    state = {}
    for name, p in params.items():
        shape = list(p.shape)
        if len(shape) == 1:
            used = [precondition_1d and shape[0] <= max_precond_dim]
        else:
            if merge_dims and len(shape) > 1:
                shape = soap_merge_dims(shape, max_precond_dim)
            used = [d <= max_precond_dim for d in shape]
        state[name] = {
            "shape": shape,
            "used": used,
            "L": [np.zeros((d, d)) if u else None for d, u in zip(shape, used)],
            "Q": [None for _ in shape],
            "M": np.zeros(shape),  # in the original space, as Algorithm 3
            "V": np.zeros(shape),  # in the eigenbasis
        }

    def project(x, qs, back):
        for axis, q in enumerate(qs):
            if q is not None:
                x = times(x, q if back else q.T, axis)
        return x

    history = []
    for t, g_all in enumerate(grads):
        new_params = {}
        for name, p in params.items():
            s = state[name]
            g = np.array(g_all[name], dtype=np.float64).reshape(s["shape"])
            step = np.zeros(s["shape"])
            if t > 0:
                g_rot = project(g, s["Q"], back=False)
                s["M"] = beta1 * s["M"] + (1 - beta1) * g
                s["V"] = beta2 * s["V"] + (1 - beta2) * g_rot * g_rot
                m_rot = project(s["M"], s["Q"], back=False)
                n = project(m_rot / (np.sqrt(s["V"]) + eps), s["Q"], back=True)
                if normalize_grads:
                    n = n / (1e-30 + np.sqrt(np.mean(n * n)))
                factor = 1.0
                if correct_bias:
                    factor = np.sqrt(1 - beta2**t) / (1 - beta1**t)
                step = factor * n
            for axis in range(len(s["shape"])):
                if s["L"][axis] is not None:
                    s["L"][axis] = sb * s["L"][axis] + (1 - sb) * unfolded_gram(g, axis)
            if t == 0:
                for axis in range(len(s["shape"])):
                    if s["L"][axis] is not None:
                        lam, vectors = np.linalg.eigh(s["L"][axis])
                        s["Q"][axis] = vectors[:, ::-1]
            elif t % precondition_frequency == 0:
                for axis in range(len(s["shape"])):
                    if s["L"][axis] is None:
                        continue
                    q = s["Q"][axis]
                    estimates = np.array(
                        [q[:, k] @ s["L"][axis] @ q[:, k] for k in range(q.shape[1])]
                    )
                    order = np.argsort(-estimates, kind="stable")
                    s["V"] = np.take(s["V"], order, axis=axis)
                    s["Q"][axis] = np.linalg.qr(s["L"][axis] @ q[:, order])[0]
            step = step.reshape(p.shape)
            new_params[name] = p - lr * (step + weight_decay * p)
        params = new_params
        history.append({k: v.copy() for k, v in params.items()})
    return history
