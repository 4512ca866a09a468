"""Errors and reprs speak in the user's terms: the function and argument they wrote."""

from __future__ import annotations

import re
import types

import jax.numpy as jnp
import pytest

import gradtx
from gradtx import compat
from gradtx._base import HyperparameterError
from gradtx._combine import Chain, named_recipe, recipe

# (build, the whole message): a recipe names itself and the argument the user wrote,
# with the value as written (-1, not the -1.0 the transform stores).
RESTATED = [
    (lambda: gradtx.adam(-1), "adam(learning_rate=-1): learning_rate must be in [0, inf)"),
    (
        lambda: gradtx.sgd(0.1, momentum=1.5),
        "sgd(momentum=1.5): momentum must be in [0, 1]",
    ),
    (
        lambda: gradtx.adamw(1e-3, weight_decay=-0.1),
        "adamw(weight_decay=-0.1): weight_decay must be in [0, inf)",
    ),
    (lambda: compat.pytorch.adam(eps=-1), "pytorch.adam(eps=-1): eps must be in [0, inf)"),
    (
        lambda: compat.pytorch.adam(betas=(0.9, 1.5)),
        "pytorch.adam(betas=(0.9, 1.5)): betas[1] must be in [0, 1)",
    ),
    # adamw delegates to adam: the outer recipe restates the inner one's error.
    (
        lambda: compat.pytorch.adamw(betas=(1.5, 0.999)),
        "pytorch.adamw(betas=(1.5, 0.999)): betas[0] must be in [0, 1)",
    ),
    (
        lambda: compat.pytorch.rmsprop(alpha=2.0),
        "pytorch.rmsprop(alpha=2.0): alpha must be in [0, 1]",
    ),
    (
        lambda: compat.keras.adam(beta_1=1.5),
        "keras.adam(beta_1=1.5): beta_1 must be in [0, 1)",
    ),
]


@pytest.mark.parametrize(("build", "message"), RESTATED, ids=[m.split(":")[0] for _, m in RESTATED])
def test_errors_name_the_recipe_and_the_argument_the_user_wrote(build, message):
    with pytest.raises(ValueError) as raised:
        build()
    assert str(raised.value) == message
    # The building block's own message stays available, as the cause.
    assert isinstance(raised.value.__cause__, HyperparameterError)
    assert raised.value.__cause__.transform != raised.value.transform


def test_the_original_error_is_kept_as_the_cause():
    with pytest.raises(HyperparameterError) as raised:
        gradtx.sgd(0.1, momentum=1.5)
    cause = raised.value.__cause__
    assert str(cause) == "scale_by_momentum(decay=1.5): decay must be in [0, 1]"
    assert (cause.transform, cause.values) == ("scale_by_momentum", {"decay": 1.5})


@recipe
def _doubling(learning_rate):
    """A recipe that passes on a value computed from its argument, not the argument."""
    return named_recipe("_doubling", gradtx.scale_by_adam(b1=2 * learning_rate))


def test_a_value_no_argument_carried_names_the_recipe_being_built():
    with pytest.raises(ValueError) as raised:
        _doubling(0.6)
    assert str(raised.value) == "scale_by_adam(b1=1.2): b1 must be in [0, 1) (in _doubling(...))"


def test_a_value_the_recipe_wrote_itself_keeps_its_building_blocks_name():
    # Keras's epsilon=0 reaches scale_by_adam as eps beside the recipe's own eps_root=0.0: both
    # equal 0, but only eps is the user's (the same object); eps_root keeps its name.
    message = (
        "keras.adam(epsilon=0): with epsilon and eps_root all 0 a zero gradient gives 0 / 0 = NaN"
    )
    with pytest.raises(HyperparameterError, match=f"^{re.escape(message)}"):
        gradtx.compat.keras.adam(epsilon=0)
    with pytest.raises(
        HyperparameterError, match=r"^pytorch\.adamw\(eps=0\): with eps and eps_root"
    ):
        gradtx.compat.pytorch.adamw(eps=0)


def test_a_value_several_arguments_carried_is_not_guessed():
    with pytest.raises(ValueError, match=re.escape("(in sgd(...))")):
        gradtx.sgd(1.5, momentum=1.5)


def test_an_infinite_end_is_open_unless_infinity_is_allowed():
    with pytest.raises(ValueError, match=re.escape("must be in [0, inf)")):
        gradtx.scale_by_learning_rate(-1.0)
    with pytest.raises(ValueError, match=re.escape("must be in [0, inf]")):
        gradtx.clip(-1.0)  # clip(inf) is no clipping: allowed


WRONG_KIND = [
    (
        lambda: gradtx.adam("1e-3"),
        r"adam\(learning_rate='1e-3'\): .*a number, array or schedule is expected",
    ),
    (lambda: gradtx.adam(1e-3, b1=True), r"adam\(b1=True\): b1 must be a number"),
    (lambda: gradtx.adam(1e-3, b2=None), r"adam\(b2=None\): b2 must be a number"),
    (lambda: compat.pytorch.sgd(lr="0.1"), r"pytorch\.sgd\(lr='0.1'\)"),
    (
        lambda: gradtx.adam(lambda: 0.1),
        r"adam\(learning_rate=.*<lambda>\): .*schedule, called with the step count",
    ),
]


@pytest.mark.parametrize(("build", "match"), WRONG_KIND, ids=range(len(WRONG_KIND)))
def test_a_value_of_the_wrong_kind_is_refused_when_built(build, match):
    with pytest.raises(TypeError, match=match):
        build()


def test_a_schedule_function_that_takes_the_count_is_accepted():
    tx = gradtx.adam(lambda count: 0.1 / (1 + count))
    updates, _ = tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))
    assert updates["w"].shape == (2,)


def test_floats_print_as_floats_and_ints_as_ints():
    assert repr(gradtx.clip_by_global_norm(1)) == "ClipByGlobalNorm(max_norm=1.0)"
    assert "eps_root=0.0," in repr(gradtx.adam(0.1))
    assert "learning_rate=0.1," in repr(gradtx.adam(jnp.float32(0.1)))  # float32's 0.1
    assert "b2=0.9999999," in repr(gradtx.adam(0.1, b2=0.9999999))  # exact, not 1.0
    assert repr(gradtx.polyak_average(start=3)).endswith("start=3)")


def test_a_float_that_is_no_float32_prints_exactly():
    # Two different optimizers never print alike: 0.1 + 1e-9 is not float32's 0.1, and a
    # number beyond float32's range prints as itself (not inf, and without an overflow warning).
    assert gradtx.scale(0.1 + 1e-9) != gradtx.scale(0.1)
    assert repr(gradtx.scale(0.1 + 1e-9)) == "Scale(step_size=0.100000001)"
    assert repr(gradtx.scale_by_adam(b2=0.99999999)).count("b2=0.99999999,") == 1
    assert repr(gradtx.scale(1e300)) == "Scale(step_size=1e+300)"
    assert repr(gradtx.scale(-3.4e38)) == "Scale(step_size=-3.4e+38)"


def test_nested_reprs_keep_their_indentation_and_show_the_users_trees():
    tx = gradtx.chain(
        gradtx.partition({"a": gradtx.sgd(0.1), "b": gradtx.scale(2.0)}, {"w": "a", "b": "b"}),
        gradtx.masked(gradtx.scale(0.5), {"w": True, "b": False}),
    )
    assert repr(tx) == (
        "chain(\n"
        "    Partition(\n"
        "        transforms={\n"
        "            'a': sgd(\n"
        "                Identity(),\n"
        "                ScaleByLearningRate(learning_rate=0.1, flip_sign=True),\n"
        "            ),\n"
        "            'b': Scale(step_size=2.0),\n"
        "        },\n"
        "        param_labels={'b': 'b', 'w': 'a'},\n"
        "    ),\n"
        "    Masked(inner=Scale(step_size=0.5), mask={'b': False, 'w': True}),\n"
        ")"
    )


def _public_functions(module):
    return {
        name: value
        for name, value in vars(module).items()
        if not name.startswith("_") and isinstance(value, types.FunctionType)
    }


# Functions of the compat packages that are no optimizer: they wrap one or help a loop.
COMPAT_HELPERS = {"optimizer_map", "multi_optimizer", "loss_scale_optimizer", "scale_loss"}


@pytest.mark.parametrize("framework", ["pytorch", "keras"])
def test_every_compat_optimizer_prints_as_the_function_called(framework):
    module = getattr(compat, framework)
    functions = _public_functions(module)
    assert {"adam", "adamw", "sgd"} <= functions.keys()
    for name, function in functions.items():
        if name in COMPAT_HELPERS:
            continue
        assert getattr(function, "recipe_name", None) == f"{framework}.{name}", name
        if name in ("clip_grad_norm", "clip_grad_value"):
            built = function(1.0)
        else:
            built = function()
        if isinstance(built, Chain):
            assert built.label == f"{framework}.{name}", name
            assert repr(built).startswith(f"{framework}.{name}(")
