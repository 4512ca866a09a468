"""Tests that kill the mutants of gradtx/masks.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
``_key_text`` (the text of one key of a path) is also what ``compat.keras`` writes Keras's
``variable.path`` with, where the brackets and dots of ``str(key)`` would show.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

import gradtx
from gradtx import compat


class _Block(NamedTuple):
    kernel: jax.Array
    bias: jax.Array


class _Pair:
    """A user's pytree whose keys are its own strings, not jax's key classes."""

    def __init__(self, kernel, bias):
        self.kernel, self.bias = kernel, bias


jax.tree_util.register_pytree_with_keys(
    _Pair,
    lambda p: ((("Kernel", p.kernel), ("Bias", p.bias)), None),
    lambda _, children: _Pair(*children),
    lambda p: ((p.kernel, p.bias), None),
)


def _params():
    return {
        "dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)},  # DictKey
        "layers": [jnp.ones((2, 2)), jnp.ones(2)],  # SequenceKey
        "block": _Block(jnp.ones((2, 2)), jnp.ones(2)),  # GetAttrKey
    }


def test_keras_paths_name_dict_keys_attributes_and_list_indices_by_their_text():
    # "dense/bias", "layers/1", "block/bias": not "['dense']/['bias']", "layers/[1]",
    # "block/.bias" (str of jax's DictKey, SequenceKey, GetAttrKey).
    keras = compat.keras
    sgd, adam = keras.sgd(), keras.adam()
    mapping = keras.optimizer_map(adam, {"dense/bias": sgd, "layers/1": sgd, "block/bias": sgd})
    groups = keras.multi_optimizer(mapping).transforms[1]
    assert groups.param_labels(_params()) == {
        "dense": {"kernel": "1", "bias": "0"},
        "layers": ["1", "0"],
        "block": _Block(kernel="1", bias="0"),
    }


def test_excluding_matches_the_keys_of_a_custom_pytree_by_their_text():
    # A key that is none of jax's key classes is matched by str(key).
    mask = gradtx.masks.excluding("bias")(_Pair(jnp.ones((2, 2)), jnp.ones(2)))
    assert (mask.kernel, mask.bias) == (True, False)


def test_ndim_at_least_selects_matrices_by_default():
    mask = gradtx.masks.ndim_at_least()(_params())
    assert mask == {
        "dense": {"kernel": True, "bias": False},
        "layers": [True, False],
        "block": _Block(kernel=True, bias=False),
    }
