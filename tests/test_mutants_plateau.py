"""Tests that kill the mutants of gradtx/_plateau.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
The reference is ``optax.contrib.reduce_on_plateau`` (same arguments, defaults, state fields and
numbers), compared state by state over a short sequence of losses, and reduce_on_plateau's
docstring for the ranges of its arguments.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradtx

_FIELDS = ("scale", "best_value", "plateau_count", "cooldown_count", "count", "avg_value")


def _compare_with_optax(losses, **options):
    """Steps gradtx's and optax's reduce_on_plateau over ``losses``; every state field equal."""
    ours, theirs = gradtx.reduce_on_plateau(**options), optax.contrib.reduce_on_plateau(**options)
    updates = {"w": jnp.asarray([1.0, -2.0])}
    state, expected = ours.init(updates), theirs.init(updates)
    for step, loss in enumerate(losses):
        out, state = ours.update(updates, state, value=loss)
        want, expected = theirs.update(updates, expected, value=loss)
        for field in _FIELDS:
            np.testing.assert_allclose(
                getattr(state, field), getattr(expected, field), rtol=1e-6, err_msg=(step, field)
            )
        np.testing.assert_allclose(out["w"], want["w"], rtol=1e-6, err_msg=step)
    return state


@pytest.mark.parametrize(
    ("arg", "value"),
    [
        ("factor", 0.0),
        ("factor", -0.5),
        ("patience", 1.5),
        ("rtol", -0.1),
        ("rtol", 1.5),
        ("atol", -1.0),
        ("cooldown", 1.5),
        ("cooldown", -1),
        ("accumulation_size", 0),
        ("min_scale", -0.1),
    ],
)
def test_arguments_outside_the_documented_ranges_are_refused_by_name(arg, value):
    # factor in (0, 1); patience, accumulation_size integers >= 1; cooldown an integer >= 0;
    # rtol in [0, 1]; atol, min_scale >= 0. The transform is built in the body, not at collection.
    with pytest.raises(ValueError, match=rf"^reduce_on_plateau\({arg}="):
        gradtx.reduce_on_plateau(**{arg: value})


def test_rtol_and_atol_both_zero_is_refused_saying_so():
    with pytest.raises(
        ValueError,
        match=r"^reduce_on_plateau\(rtol=.*\): rtol and atol are both 0: one must be positive",
    ):
        gradtx.reduce_on_plateau(rtol=0.0, atol=0.0)


def test_a_loss_exactly_at_the_threshold_is_no_improvement_and_patience_1_reduces_at_once():
    # best 2, rtol 0.5: the threshold is 1.0, and a loss of 1.0 does not beat it (strict <),
    # so with patience 1 the second check reduces the scale to 0.1.
    state = _compare_with_optax([2.0, 1.0], patience=1, rtol=0.5)
    assert float(state.scale) == pytest.approx(0.1)


def test_accumulated_losses_are_averaged_before_each_check():
    # Checks every 2 calls: (4 + 2) / 2 = 3, then (1 + 1) / 2 = 1; the running average of the
    # first call of each pair is kept in the state (4, then 1).
    state = _compare_with_optax([4.0, 2.0, 1.0, 1.0, 5.0], patience=1, accumulation_size=2)
    assert float(state.best_value) == 1.0
    assert float(state.avg_value) == 5.0


def test_the_state_keeps_its_types_across_updates_so_a_jitted_step_compiles_once():
    # The init state is strongly typed as the updated one (a weakly typed best_value would
    # make jax.jit(update) compile again at the second step).
    tx = gradtx.reduce_on_plateau(patience=1)
    updates = {"w": jnp.zeros([2])}
    state = tx.init(updates)
    _, after = tx.update(updates, state, value=1.0)
    assert [jax.typeof(x) for x in state] == [jax.typeof(x) for x in after]
    assert [jax.typeof(x) for x in state] == [
        jax.typeof(x) for x in optax.contrib.reduce_on_plateau().init(updates)
    ]
