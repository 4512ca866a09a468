"""Shared fixtures."""

from __future__ import annotations

import os

import jax
import pytest


@pytest.fixture
def x64():
    """Runs the test with jax_enable_x64 on (float64 arrays and hyperparameters)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def keras_float64():
    """Keras on JAX, float64; jax's x64 flag and Keras's floatx restored afterwards."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "jax":
        pytest.skip(f"Keras runs on {keras.backend.backend()}, not JAX")
    x64, floatx = jax.config.jax_enable_x64, keras.config.floatx()
    yield
    jax.config.update("jax_enable_x64", x64)
    keras.config.set_floatx(floatx)


# XLA:CPU maps about three memory regions per compiled executable, and jit caches keep every
# executable alive: a test worker that compiles some 20,000 programs reaches Linux's
# vm.max_map_count (65,530 by default) and segfaults inside the next compilation (seen in CI:
# two workers killed at 80% of the suite). Past MAP_LIMIT the caches are cleared between tests.
MAP_LIMIT = 30_000
_tests_since_check = 0


def _memory_maps() -> int:
    try:
        with open("/proc/self/maps", "rb") as maps:
            return sum(1 for _ in maps)
    except OSError:  # not Linux
        return 0


@pytest.fixture(autouse=True)
def _release_compiled_programs():
    yield
    global _tests_since_check
    _tests_since_check += 1
    if _tests_since_check >= 10:
        _tests_since_check = 0
        if _memory_maps() > MAP_LIMIT:
            jax.clear_caches()
