"""A run that saves at every step until it is killed, for the kill tests in test_checkpoint.py.

Usage: ``python checkpoint_kill_worker.py DIRECTORY [--stall-in-delete]``

Resumes after the latest checkpoint in DIRECTORY (or at step 1), prints
``start N`` (its first step), then saves ``state_at(step)`` at every step with
``max_to_keep=2``, so from step 3 on each save deletes the oldest checkpoint,
and prints ``saved N`` once step N is on disk. The saved arrays depend on the
step alone, so the killing test can recompute them. With ``--stall-in-delete``
it prints ``deleting`` and hangs as soon as a delete has removed the file that
describes a checkpoint's ``train_state`` tree (the rest of the checkpoint may
still be there), so that the test's SIGKILL lands inside the delete.
"""

from __future__ import annotations

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import gradtx
from gradtx.checkpoint import Checkpointer

TX = gradtx.adam(1e-3, mu_dtype=jnp.bfloat16)  # int32 count, bfloat16 mu, float32 nu


def _fill(like, step):
    """An array shaped and typed like ``like`` whose values depend on ``step``."""
    values = 1000 * np.sin(np.arange(np.size(like)) + step)
    return jnp.asarray(values.reshape(np.shape(like))).astype(like.dtype)


def state_at(step):
    """``(params, opt_state, extra)`` as saved at ``step``."""
    params = {"w": jnp.zeros((3, 4)), "b": jnp.zeros(5, jnp.bfloat16)}
    params, opt_state = jax.tree.map(lambda leaf: _fill(leaf, step), (params, TX.init(params)))
    return params, opt_state, {"step": step}


def _stall_in_delete():
    unlink = os.unlink

    def stalling_unlink(path, *args, **kwargs):
        unlink(path, *args, **kwargs)
        if os.path.basename(os.fspath(path)) == "_METADATA":  # train_state's tree metadata
            print("deleting", flush=True)
            time.sleep(600)

    os.unlink = stalling_unlink  # shutil.rmtree looks it up at every call


def main(directory, stall_in_delete):
    if stall_in_delete:
        _stall_in_delete()
    with Checkpointer(directory, max_to_keep=2) as ckpt:
        start = (ckpt.latest_step() or 0) + 1
        print(f"start {start}", flush=True)
        for step in range(start, start + 10_000):
            params, opt_state, extra = state_at(step)
            ckpt.save(step, params, opt_state, TX, extra=extra)
            ckpt.wait()
            print(f"saved {step}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], "--stall-in-delete" in sys.argv[2:])
