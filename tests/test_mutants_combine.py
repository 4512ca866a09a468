"""Tests that kill the mutants of gradtx/_combine.py the other test files let survive.

The verdicts, mutant by mutant, and how the runs were made: tests/MUTATION.md (issue 20).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx
from gradtx import EmptyState, FlatParams
from gradtx._combine import named_recipe, recipe

# -- a gradient-free member of a partition scores the whole params (_loss_of_whole_params) --

LABELS = {"w": "smooth", "t": "rough"}


def _params():
    return {"w": jnp.array([1.0, -2.0]), "t": jnp.array([0.3, 0.7, 0.1])}


def _loss(p):
    # Couples the groups: the thresholds' loss depends on the weights.
    return jnp.sum((p["t"] - 0.5 * p["w"].sum()) ** 2) + jnp.sum(p["w"] ** 2)


class _ScoreWithArguments(gradtx.Transform):
    """A user's gradient-free transform: each update is ``value_fn(params, 2.0, offset=1.0)``."""

    gradient_free = True

    def init(self, params):
        del params
        return ()

    def update(self, updates, state, params=None, *, value_fn=None, **extra_args):
        del extra_args
        value = value_fn(params, 2.0, offset=1.0)
        return jax.tree.map(lambda p: jnp.full_like(p, value), params), state


def test_a_partition_members_value_fn_gets_the_whole_params_and_every_argument():
    # Masked.update / _loss_of_whole_params: value_fn= is wrapped so that the member's own
    # leaves are completed with the others from params, and it forwards *args and **kwargs.
    seen = []

    def value_fn(p, scale, offset):
        seen.append(p)
        return scale * jnp.sum(p["w"] ** 2) + offset  # reads the *other* group's leaf

    params = _params()
    tx = gradtx.partition({"smooth": gradtx.sgd(0.5), "rough": _ScoreWithArguments()}, LABELS)
    grads = {"w": jnp.array([1.0, 1.0]), "t": jnp.zeros(3)}
    updates, _ = tx.update(grads, tx.init(params), params, value_fn=value_fn)
    np.testing.assert_array_equal(updates["t"], [11.0, 11.0, 11.0])  # 2 * (1 + 4) + 1
    np.testing.assert_array_equal(updates["w"], [-0.5, -0.5])
    (whole,) = seen
    np.testing.assert_array_equal(whole["w"], params["w"])
    np.testing.assert_array_equal(whole["t"], params["t"])


class _UnreadableSignature:
    """A loss whose signature inspect cannot read: ValueError as for a builtin (``max``,
    ``operator.itemgetter``), TypeError for a ``__signature__`` that is not a Signature."""

    def __init__(self, error):
        self.error = error

    @property
    def __signature__(self):
        raise self.error("no signature")

    def __call__(self, p, scale, offset):
        return scale * jnp.sum(p["w"] ** 2) + offset


@pytest.mark.parametrize("error", [ValueError, TypeError])
def test_a_partition_members_value_fn_of_no_readable_signature_gets_every_argument(error):
    # _loss_of_whole_params copies the loss's signature onto its wrapper where inspect can read
    # it; where it cannot, the wrapper keeps its own (*args, **kwargs) and passes everything on.
    params = _params()
    tx = gradtx.partition({"smooth": gradtx.sgd(0.5), "rough": _ScoreWithArguments()}, LABELS)
    grads = {"w": jnp.array([1.0, 1.0]), "t": jnp.zeros(3)}
    updates, _ = tx.update(grads, tx.init(params), params, value_fn=_UnreadableSignature(error))
    np.testing.assert_array_equal(updates["t"], [11.0, 11.0, 11.0])  # 2 * (1 + 4) + 1


def test_a_cma_es_partition_member_scores_its_population_with_the_other_leaves_broadcast():
    # The hybrid of examples/hybrid.py with population_value_fn=: each member's thresholds are
    # completed with the weights broadcast along the population axis, so the partition is
    # sep-CMA-ES on the thresholds alone with the weights closed over, step by step.
    tx = gradtx.partition(
        {"smooth": gradtx.adam(0.1), "rough": gradtx.sep_cma_es(0.1, key=3)}, LABELS
    )
    alone = gradtx.sep_cma_es(0.1, key=3)

    @jax.jit
    def steps(state, alone_state, p, t):
        population_loss = jax.vmap(_loss)  # one value per member of the stacked trees
        updates, state = tx.update(
            jax.grad(_loss)(p), state, p, population_value_fn=population_loss
        )
        alone_loss = jax.vmap(lambda t: _loss({"w": p["w"], "t": t}))
        step, alone_state = alone.update(None, alone_state, t, population_value_fn=alone_loss)
        return state, alone_state, gradtx.apply_updates(p, updates), t + step

    params = _params()
    carry = (tx.init(params), alone.init(params["t"]), params, params["t"])
    for _ in range(2):
        carry = steps(*carry)
        np.testing.assert_allclose(carry[2]["t"], carry[3], rtol=1e-6)
    assert not np.allclose(carry[3], params["t"])


# -- masks and labels over FlatParams (resolve_tree) ----------------------------------------


def test_partition_over_flat_params_gives_the_trees_numbers_with_labels_per_leaf_or_buffer():
    labels = {"w": "a", "b": "b"}
    params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array([0.5])}
    grads = {"w": jnp.array([0.5, 1.0]), "b": jnp.array([2.0])}
    tx = gradtx.partition({"a": gradtx.sgd(0.1), "b": gradtx.scale(3.0)}, labels)
    expected = tx.update(grads, tx.init(params), params)[0]
    np.testing.assert_allclose(expected["b"], [6.0])
    fp = FlatParams.from_tree(params, groups=labels)
    flat_grads = FlatParams.from_tree(grads, groups=labels)
    for given in (labels, fp.segment_labels(labels)):  # per leaf, then one label per buffer
        flat = gradtx.partition({"a": gradtx.sgd(0.1), "b": gradtx.scale(3.0)}, given)
        updates = flat.update(flat_grads, flat.init(fp), fp)[0].to_tree()
        for key in labels:
            np.testing.assert_allclose(updates[key], expected[key], rtol=1e-6)
    # Labels per leaf that are uniform over each buffer: the partition runs on the buffers;
    # where a buffer mixes labels, on the leaves.
    assert not tx.needs_leaves(fp) and tx.needs_leaves(FlatParams.from_tree(params))


# -- masks given as trees or functions (freeze_tree, _is_function) --------------------------


def test_a_mask_of_jax_booleans_is_frozen_to_python_values():
    # freeze_tree: 0-d arrays become Python scalars, so the mask is hashable (a static field,
    # part of jit's cache key), equal to the same mask of Python bools and printed as one.
    tx = gradtx.masked(gradtx.scale(0.0), {"w": jnp.asarray(True), "b": jnp.asarray(False)})
    plain = gradtx.masked(gradtx.scale(0.0), {"w": True, "b": False})
    assert tx == plain and hash(tx) == hash(plain)
    assert repr(tx) == "Masked(inner=Scale(step_size=0.0), mask={'b': False, 'w': True})"
    params = {"w": jnp.ones(2), "b": jnp.ones(2)}
    updates, _ = jax.jit(lambda tx, u: tx.update(u, tx.init(u)))(tx, params)
    np.testing.assert_array_equal(updates["w"], [0.0, 0.0])
    np.testing.assert_array_equal(updates["b"], [1.0, 1.0])


def test_a_tree_of_functions_is_not_read_as_a_mask_of_true_values():
    # _is_function: a tree whose leaves are all functions is taken for a function (and
    # calling a dict fails), never frozen as a mask whose functions count as True.
    def is_matrix(p):
        return p.ndim == 2

    tx = gradtx.masked(gradtx.scale(0.0), {"w": is_matrix, "b": is_matrix})
    with pytest.raises(TypeError):
        tx.init({"w": jnp.ones((2, 2)), "b": jnp.ones(2)})


# -- chains (as_transform, Chain.update, named_recipe) --------------------------------------


def test_a_dict_is_not_taken_for_an_optax_transform():
    # as_transform: an object needs both init and update (a dict has update only).
    with pytest.raises(TypeError, match="chain: expected a transform with init and update"):
        gradtx.chain({"w": gradtx.sgd(0.1)})


class _KeepsStateInAList(gradtx.Transform):
    """A user's wrapper holding its inner state in a list, where no outer check looks."""

    inner: gradtx.Transform

    def init(self, params):
        return [self.inner.init(params)]

    def update(self, updates, state, params=None, **extra_args):
        updates, inner = self.inner.update(updates, state[0], params, **extra_args)
        return updates, [inner]


def test_a_chain_refuses_a_state_with_another_number_of_entries():
    # A state restored from a checkpoint of a chain that had one transform fewer. Where the
    # outermost check sees the chain's state (here inside a partition's states) it names the
    # path; Chain.update checks its own state where it is hidden from that check.
    params = {"w": jnp.ones(2), "b": jnp.ones(2)}
    chain = gradtx.chain(gradtx.scale(2.0), gradtx.scale(3.0))
    tx = gradtx.partition({"a": chain, "b": gradtx.scale(1.0)}, {"w": "a", "b": "b"})
    good = tx.init(params)
    masked_state = good.inner_states["a"]
    short = {**good.inner_states, "a": masked_state._replace(inner_state=(EmptyState(),))}
    with pytest.raises(TypeError, match=re.escape("inner_states['a'].inner_state is a tuple of 1")):
        tx.update(params, good._replace(inner_states=short), params)
    hidden = _KeepsStateInAList(inner=chain)
    for inner, count in [(chain.init(params)[:1], "1"), (None, "no")]:
        with pytest.raises(ValueError, match=f"chain: the state has {count} entries for 2 "):
            hidden.update(params, [inner], params)


def test_a_named_chain_prints_under_its_name():
    # named_recipe labels the chain. Every caller in gradtx is a recipe (scale_by_mars too),
    # which labels its chain as well, so named_recipe is checked on its own.
    tx = named_recipe("my_recipe", gradtx.scale(0.5))
    assert tx.label == "my_recipe" and repr(tx) == "my_recipe(\n    Scale(step_size=0.5),\n)"
    tx = gradtx.scale_by_mars()
    assert tx.label == "scale_by_mars" and repr(tx).startswith("scale_by_mars(\n")


# -- errors restated in a recipe's terms (_in_terms_of, _carrier, _arguments, _equal) -------


def test_a_missing_learning_rate_is_named_as_the_recipes_argument():
    # An error raised outside validation (no .given): the recipe reads its .values.
    with pytest.raises(TypeError, match=re.escape("adam(learning_rate=None): a learning rate")):
        gradtx.adam(None)


def test_one_value_given_for_two_arguments_is_named_after_the_transforms_argument():
    # The same object carried by learning_rate and b1: the transform's own name breaks the tie.
    value = 1.5
    with pytest.raises(ValueError) as raised:
        gradtx.adam(value, b1=value)
    assert str(raised.value) == "adam(b1=1.5): b1 must be in [0, 1)"


def test_a_swept_learning_rate_does_not_hide_another_arguments_error():
    # Under vmap (a sweep) the learning rate is a tracer: it is compared with nothing.
    with pytest.raises(ValueError) as raised:
        jax.vmap(lambda lr: gradtx.adam(lr, b1=1.5))(jnp.array([0.1, 0.2]))
    assert str(raised.value) == "adam(b1=1.5): b1 must be in [0, 1)"


# Recipes as a port writes them (gradtx.compat), passing on copies of what they were given.


@recipe
def _torch_style_adam(lr=1e-3, betas=(0.9, 0.999), amsgrad=False, max_of="corrected"):
    """Floats made from the numbers, an option's name lower-cased: equal values, not the same."""
    if amsgrad:
        moments = gradtx.scale_by_amsgrad(
            b1=float(betas[0]), b2=float(betas[1]), max_of=max_of.lower()
        )
    else:
        moments = gradtx.scale_by_adam(b1=float(betas[0]), b2=float(betas[1]))
    return named_recipe("_torch_style_adam", moments, gradtx.scale_by_learning_rate(float(lr)))


@recipe
def _scheduled_sgd(schedule, warmup):
    """Passes on a copy of its schedule (``replace()``); ``warmup`` is one of the same kind."""
    del warmup
    return named_recipe("_scheduled_sgd", gradtx.scale_by_learning_rate(schedule.replace()))


@recipe
def _sgd_with_decay(learning_rate, momentum=0.0, decay=0.0):
    """``decay`` (weight decay) shares its name with ScaleByMomentum's field (momentum's)."""
    return named_recipe(
        "_sgd_with_decay",
        gradtx.scale_by_momentum(momentum),
        gradtx.add_decayed_weights(decay),
        gradtx.scale_by_learning_rate(learning_rate),
    )


@recipe
def _keras_style_adam(epsilon=1e-7, epsilon_root=0.0):
    """Both of scale_by_adam's eps arguments under other names."""
    return named_recipe(
        "_keras_style_adam", gradtx.scale_by_adam(eps=epsilon, eps_root=epsilon_root)
    )


@recipe
def _options(**options):
    """Arguments passed by keyword only (``**options``)."""
    return named_recipe("_options", gradtx.scale_by_adam(**options))


_DOWN = gradtx.linear_schedule(1.0, -1.0, 10)
_UP = gradtx.linear_schedule(0.0, 1.0, 10)

CARRIED = [
    # An equal copy (1.0 from 1) names the argument; the flag True (== 1) is no number here.
    (
        lambda: _torch_style_adam(betas=(1, 0.999), amsgrad=True),
        "_torch_style_adam(betas=(1, 0.999)): betas[0] must be in [0, 1)",
    ),
    # An equal string (a lower-cased copy).
    (
        lambda: _torch_style_adam(amsgrad=True, max_of="best"),
        "_torch_style_adam(max_of='best'): max_of must be one of 'corrected', 'raw'",
    ),
    # An equal gradtx object (a copy of the schedule), not another schedule of its kind.
    (
        lambda: _scheduled_sgd(_DOWN, _UP),
        f"_scheduled_sgd(schedule={_DOWN!r}): schedule must be in [0, inf) at every step; "
        "it reaches -1 at step 10",
    ),
    # The very object beats an equal one, even one with the transform's argument's name.
    (
        lambda: _sgd_with_decay(0.1, momentum=2, decay=2.0),
        "_sgd_with_decay(momentum=2): momentum must be in [0, 1]",
    ),
    # Two arguments at fault, each renamed in the message.
    (
        lambda: _keras_style_adam(epsilon=0, epsilon_root=0.0),
        "_keras_style_adam(epsilon=0, epsilon_root=0.0): with epsilon and epsilon_root all 0 "
        "a zero gradient gives 0 / 0 = NaN (PyTorch and optax return NaN there); "
        "make epsilon > 0",
    ),
    # An argument given through **options is one the caller wrote.
    (lambda: _options(b1=1.5), "_options(b1=1.5): b1 must be in [0, 1)"),
]


CARRIED_IDS = ["equal-number", "equal-string", "equal-object", "same-object", "two", "options"]


@pytest.mark.parametrize(("build", "message"), CARRIED, ids=CARRIED_IDS)
def test_a_recipe_names_the_argument_that_carried_the_value(build, message):
    with pytest.raises(ValueError) as raised:
        build()
    assert str(raised.value) == message


def test_the_recipes_here_build_with_good_arguments():
    # The recipes above are recipes, not error factories.
    assert isinstance(_torch_style_adam(amsgrad=True), gradtx.Transform)
    assert isinstance(_scheduled_sgd(_UP, _UP), gradtx.Transform)
    assert isinstance(_sgd_with_decay(0.1, 0.9, 1e-4), gradtx.Transform)
    assert isinstance(_keras_style_adam(), gradtx.Transform)
    assert isinstance(_options(b1=0.5), gradtx.Transform)
