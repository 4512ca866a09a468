"""How every recorder writes its recording: ``data/<name>.npz`` and ``data/<name>.json``.

The arrays of case ``i`` are stored under ``"{i}/{key}"`` in the npz file; the json file
holds the recorder's own fields (steps, leaves, defaults, ...), the versions of what
produced the numbers and the cases, each with its ``"index"``.
"""

from __future__ import annotations

from collections.abc import Iterable
import importlib
import importlib.metadata
import json
from pathlib import Path
import platform
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parent / "data"


def versions(*modules: str) -> dict[str, str]:
    """Python's, NumPy's and each module's version: its ``__version__``, else its metadata's."""
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for name in modules:
        module = importlib.import_module(name)
        out[name] = getattr(module, "__version__", None) or importlib.metadata.version(name)
    return out


def write_arrays(
    name: str, runs: Iterable[tuple[int, dict[str, np.ndarray]]], **shared: np.ndarray
) -> None:
    """``data/<name>.npz``: the arrays of each (index, arrays) pair under ``"{index}/{key}"``,
    and ``shared`` (arrays of the problem, common to the cases) under their own keys."""
    DATA.mkdir(parents=True, exist_ok=True)
    flat = {f"{index}/{key}": value for index, arrays in runs for key, value in arrays.items()}
    np.savez_compressed(DATA / f"{name}.npz", **shared, **flat)


def write_meta(name: str, cases: list[dict], modules: Iterable[str] = (), **fields: Any) -> None:
    """``data/<name>.json``: ``fields``, the versions of ``modules`` and the indexed cases."""
    DATA.mkdir(parents=True, exist_ok=True)
    meta = {
        **fields,
        "versions": versions(*modules),
        "cases": [{"index": index, **case} for index, case in enumerate(cases)],
    }
    (DATA / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{len(cases)} cases written to {DATA / name}.{{npz,json}}")


def write_recording(
    name: str,
    cases: list[dict],
    arrays: list[dict[str, np.ndarray]],
    modules: Iterable[str] = (),
    **fields: Any,
) -> None:
    """Both files of one recording: case ``i``'s arrays are ``arrays[i]``."""
    if len(arrays) != len(cases):
        raise ValueError(f"{name}: {len(cases)} cases but {len(arrays)} sets of arrays")
    write_arrays(name, enumerate(arrays))
    write_meta(name, cases, modules, **fields)


def check_trajectory(
    index: int,
    case: dict,
    trajectories: dict[str, np.ndarray],
    start: dict[str, np.ndarray],
    rows: int,
    min_move: float,
    bound: float | None = 20.0,
) -> float:
    """Raises unless case ``index`` is sound; returns the smallest move of a trajectory.

    Sound: each ``trajectories[key]``, for each key of ``start``, is finite, of shape
    ``(rows, *start[key].shape)``, stays within ``bound`` in magnitude (None: unbounded) and
    moves by ``min_move`` or more from ``start[key]``.
    """
    moved = []
    for key, p0 in start.items():
        traj = trajectories[key]
        if traj.shape != (rows, *np.shape(p0)) or not np.all(np.isfinite(traj)):
            raise ValueError(f"case {index} {case}: {key} is not finite or of shape {traj.shape}")
        if bound is not None and np.max(np.abs(traj)) > bound:
            raise ValueError(f"case {index} {case}: {key} grows to {np.max(np.abs(traj))}")
        moved.append(float(np.max(np.abs(traj - p0))))
    if min(moved) < min_move:
        raise ValueError(f"case {index} {case}: a leaf moves by only {min(moved):.2g}")
    return min(moved)
