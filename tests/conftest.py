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
