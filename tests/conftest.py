"""Shared fixtures."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import jax
import pytest

# The scripts the tests start in subprocesses set XLA_FLAGS and read their arguments when
# imported: --doctest-modules must not import them into a test worker.
collect_ignore_glob = ["*_worker.py"]


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
    # Keras fixes its global dtype policy at the floatx of the first layer or variable made
    # and keeps it: after another test made one in float32, a set_floatx("float64") no longer
    # reaches new layers. A cleared session starts from the floatx set then.
    keras.utils.clear_session(free_memory=False)
    yield
    jax.config.update("jax_enable_x64", x64)
    keras.config.set_floatx(floatx)
    keras.utils.clear_session(free_memory=False)


@pytest.fixture(autouse=True)
def _restore_torch_default_dtype():
    """torch's default dtype as it was before the test.

    The reference recorders (tests/reference/record*.py) set it to float64 for their whole
    run, and the live comparisons call them: without this, a later test's ``torch.zeros``
    is float64 or float32 depending on which tests ran before it.
    """
    torch = sys.modules.get("torch")
    dtype = torch.get_default_dtype() if torch else None
    yield
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_default_dtype(dtype or torch.float32)


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


# The two xdist workers compile many of the same programs (the same transform on the same
# shapes in tests that land on different workers): sharing JAX's persistent compilation cache
# for the run cut the contract tests' CPU time by 30% (sophia + adahessian: 148 s -> 104 s).
# A cached executable is the compiled program itself, so no number changes. The controller
# makes the folder and removes it at the end; the workers inherit its path in the environment.
# GRADTX_TEST_COMPILATION_CACHE=off turns it off; =DIR keeps it in DIR.
_RUN_CACHE = "GRADTX_TEST_RUN_CACHE"


def pytest_configure(config):
    setting = os.environ.get("GRADTX_TEST_COMPILATION_CACHE", "")
    if setting == "off":
        return
    if setting:
        cache = setting
    else:
        if not hasattr(config, "workerinput") and _RUN_CACHE not in os.environ:
            os.environ[_RUN_CACHE] = tempfile.mkdtemp(prefix="gradtx-test-jax-cache-")
            config._gradtx_cache = os.environ[_RUN_CACHE]
        cache = os.environ[_RUN_CACHE]
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config):
    cache = getattr(config, "_gradtx_cache", None)
    if cache:
        shutil.rmtree(cache, ignore_errors=True)
        os.environ.pop(_RUN_CACHE, None)
