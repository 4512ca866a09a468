"""docs/porting.md runs as written: each original trains live, then its gradtx translation.

The guide's Python blocks are what runs here, section by section in one namespace each, so
the guide cannot drift from the test: after 50 steps in float64 the translation's parameters
are the original's to 1e-9. Skipped where torch or keras is not installed (the ``reference``
extra).
"""

from __future__ import annotations

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

GUIDE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "porting.md"


def _sections() -> dict[str, list[str]]:
    """Each ``## `` section's Python blocks, padded so tracebacks give the guide's line numbers."""
    text, sections, blocks = GUIDE.read_text(), {}, []
    for match in re.finditer(r"^## ([^\n]*)$|^```python\n(.*?)^```", text, flags=re.S | re.M):
        if match[1] is not None:
            sections[match[1]] = blocks = []
        else:
            blocks.append("\n" * text.count("\n", 0, match.start(2)) + match[2])
    return sections


SECTIONS = _sections()


def _run_section(title: str) -> dict:
    """Executes the Python blocks of the guide's section ``title`` in order; their namespace."""
    assert title in SECTIONS, f"docs/porting.md has no section {title!r}: {list(SECTIONS)}"
    namespace = {"__name__": "__porting__"}
    for block in SECTIONS[title]:
        exec(compile(block, str(GUIDE), "exec"), namespace)
    return namespace


def _assert_trained_alike(ours, theirs, initial):
    """Equal to 1e-9, float64, and moved by training (an untrained pair is equal too)."""
    assert len(ours) == len(theirs) == len(initial) == 4
    for a, b, b0 in zip(ours, theirs, initial):
        assert np.asarray(a).dtype == b.dtype == np.float64
        np.testing.assert_allclose(np.asarray(a), b, rtol=0, atol=1e-9)
        assert np.abs(b - b0).max() > 1e-2


@pytest.fixture(scope="module")
def pytorch_guide():
    """The guide's PyTorch section, run once; jax's x64 flag restored afterwards."""
    pytest.importorskip("torch")
    x64 = jax.config.jax_enable_x64
    yield _run_section("A PyTorch training script")
    jax.config.update("jax_enable_x64", x64)


def test_pytorch_script_and_its_translation_agree(pytorch_guide):
    model, params, initial = (pytorch_guide[name] for name in ("model", "params", "initial"))
    assert pytorch_guide["sched"].last_epoch == 50  # 50 batches, the scheduler stepped after each
    trained = {name: p.detach().numpy() for name, p in model.named_parameters()}
    assert sorted(params) == sorted(trained)
    _assert_trained_alike(
        [params[name] for name in trained], list(trained.values()), list(initial.values())
    )


def test_guide_clips_as_torch_does_and_clip_by_global_norm_does_not(pytorch_guide):
    # Why the guide chains compat.pytorch.clip_grad_norm: the +1e-6 in torch's divisor.
    torch = pytorch_guide["torch"]
    rng = np.random.default_rng(1)
    grads = {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=3)}  # global norm about 4
    tensors = [torch.zeros(g.shape, dtype=torch.float64) for g in grads.values()]
    for tensor, g in zip(tensors, grads.values()):
        tensor.grad = torch.from_numpy(g.copy())
    total_norm = torch.nn.utils.clip_grad_norm_(tensors, max_norm=1.0)
    clipped = dict(zip(grads, (t.grad.numpy() for t in tensors)))

    grads = jax.tree.map(jnp.asarray, grads)
    port = pytorch_guide["tx"].transforms[0]  # the guide's clip, first in its chain
    assert port == gradtx.compat.pytorch.clip_grad_norm(max_norm=1.0)
    ours, state = port.update(grads, port.init(grads))
    np.testing.assert_allclose(gradtx.tree_get(state, "total_norm"), total_norm.item(), rtol=1e-15)
    clip = gradtx.clip_by_global_norm(1.0)
    optax_rule, _ = clip.update(grads, clip.init(grads))
    for name, expected in clipped.items():
        np.testing.assert_allclose(np.asarray(ours[name]), expected, rtol=1e-15, atol=0)
        # min(1 / norm, 1) against min(1 / (norm + 1e-6), 1): a relative 1e-6 / norm apart
        np.testing.assert_allclose(np.asarray(optax_rule[name]), expected, rtol=1e-6)
        assert np.abs(np.asarray(optax_rule[name]) - expected).max() > 1e-9


def test_keras_fit_and_its_translation_agree(keras_float64):
    guide = _run_section("A Keras `compile`/`fit` configuration")
    model = guide["model"]
    assert int(model.optimizer.iterations) == 50  # 2 epochs of 200 / 8 batches
    trained = [[np.array(w.value) for w in layer.weights] for layer in model.layers]
    ours, initial = jax.tree.leaves(guide["params"]), jax.tree.leaves(guide["initial"])
    _assert_trained_alike(ours, jax.tree.leaves(trained), initial)
