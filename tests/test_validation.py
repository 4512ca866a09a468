"""Bad hyperparameters are rejected when the object is built, naming function and argument."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import gradtx

# (factory, kwargs, message pattern)
BAD = [
    (
        "scale_by_learning_rate",
        {"learning_rate": -0.1},
        r"scale_by_learning_rate\(learning_rate=-0.1\): learning_rate must be in \[0, inf\)",
    ),
    (
        "scale_by_learning_rate",
        {"learning_rate": None},
        r"scale_by_learning_rate\(learning_rate=None\): a learning rate is required",
    ),
    ("trace", {"decay": 1.5}, r"scale_by_momentum\(decay=1.5\): decay must be in \[0, 1\]"),
    ("trace", {"decay": -0.1}, r"decay must be in \[0, 1\]"),
    (
        "scale_by_momentum",
        {"momentum": 0.9, "dampening": 1.2},
        r"scale_by_momentum\(dampening=1.2\): dampening must be in \[0, 1\]",
    ),
    (
        "scale_by_momentum",
        {"momentum": 0.9, "dampening": 0.1, "nesterov": True},
        r"scale_by_momentum\(dampening=0.1\): Nesterov momentum requires dampening=0",
    ),
    ("ema", {"decay": 2.0}, r"ema\(decay=2.0\): decay must be in \[0, 1\]"),
    ("bias_correction", {"decay": 1.0}, r"bias_correction\(decay=1.0\): decay must be in \[0, 1\)"),
    (
        "sgd",
        {"learning_rate": 0.1, "nesterov": True},
        r"sgd\(nesterov=True\): Nesterov momentum requires a momentum value",
    ),
    ("sgd", {"learning_rate": 0.1, "momentum": 0.0, "nesterov": True}, r"requires momentum > 0"),
    (
        "sgd",
        {"learning_rate": 0.1, "momentum": 1.1},
        r"sgd\(momentum=1.1\): momentum must be in \[0, 1\]",
    ),
    ("sgd", {"learning_rate": -1.0}, r"learning_rate=-1.0"),
    ("scale_by_rms", {"decay": 1.1}, r"scale_by_rms\(decay=1.1\): decay must be in \[0, 1\]"),
    (  # debiased, decay 1 divides by 1 - 1**t = 0 (optax: NaN)
        "scale_by_rms",
        {"decay": 1.0, "bias_correction": True},
        r"^scale_by_rms\(decay=1.0\): decay must be in \[0, 1\)$",
    ),
    (
        "scale_by_stddev",
        {"decay": 1.0, "bias_correction": True},
        r"^scale_by_stddev\(decay=1.0\): decay must be in \[0, 1\)$",
    ),
    ("scale_by_stddev", {"eps": -1.0}, r"^scale_by_stddev\(eps=-1.0\): eps must be in \[0, inf\)$"),
    ("scale_by_rms", {"eps": -1e-8}, r"scale_by_rms\(eps=-1e-08\): eps must be in \[0, inf\)"),
    ("scale_by_rms", {"initial_scale": -1.0}, r"initial_scale must be in"),
    (
        "rmsprop",
        {"learning_rate": 0.1, "nesterov": True},
        r"rmsprop\(nesterov=True\): Nesterov momentum requires a momentum value",
    ),
    (
        "scale_by_rss",
        {"initial_accumulator_value": -0.1},
        r"scale_by_rss\(initial_accumulator_value=-0.1\)",
    ),
    ("scale_by_rss", {"eps": -1.0}, r"scale_by_rss\(eps=-1.0\)"),
    ("scale_by_adadelta", {"rho": 1.5}, r"scale_by_adadelta\(rho=1.5\): rho must be in \[0, 1\]"),
    ("adadelta", {"eps": -1.0}, r"adadelta\(eps=-1.0\)"),
    ("scale_by_adam", {"b1": 1.0}, r"scale_by_adam\(b1=1.0\): b1 must be in \[0, 1\)"),
    ("scale_by_adam", {"b1": -0.1}, r"scale_by_adam\(b1=-0.1\): b1 must be in \[0, 1\)"),
    ("scale_by_adam", {"b2": 1.5}, r"scale_by_adam\(b2=1.5\): b2 must be in \[0, 1\)"),
    ("scale_by_adam", {"eps": -1e-8}, r"scale_by_adam\(eps=-1e-08\): eps must be in \[0, inf\)"),
    ("scale_by_adam", {"eps_root": -1.0}, r"scale_by_adam\(eps_root=-1.0\)"),
    (
        "scale_by_adam",
        {"eps_mode": "inside"},
        r"scale_by_adam\(eps_mode='inside'\): eps_mode must be one of 'corrected', 'raw'",
    ),
    ("scale_by_adam", {"b1": float("nan")}, r"scale_by_adam\(b1=nan\)"),
    ("adam", {"learning_rate": 1e-3, "b1": 1.2}, r"adam\(b1=1.2\): b1 must be in \[0, 1\)"),
    (
        "adamw",
        {"learning_rate": 1e-3, "weight_decay": -0.1},
        r"adamw\(weight_decay=-0.1\): weight_decay must be in \[0, inf\)",
    ),
    (
        "scale_by_amsgrad",
        {"max_of": "both"},
        r"scale_by_amsgrad\(max_of='both'\): max_of must be one of",
    ),
    ("scale_by_adamax", {"b2": 1.0}, r"scale_by_adamax\(b2=1.0\)"),
    ("scale_by_nadam", {"momentum_decay": -1.0}, r"scale_by_nadam\(momentum_decay=-1.0\)"),
    ("scale_by_radam", {"b1": 2.0}, r"scale_by_radam\(b1=2.0\)"),
    (
        "scale_by_rprop",
        {"learning_rate": 0.1, "eta_minus": 1.5},
        r"scale_by_rprop\(eta_minus=1.5\): eta_minus must be in \(0, 1\)",
    ),
    (
        "scale_by_rprop",
        {"learning_rate": 0.1, "eta_plus": 0.9},
        r"scale_by_rprop\(eta_plus=0.9\): eta_plus must be in \(1, inf\)",
    ),
    (
        "scale_by_rprop",
        {"learning_rate": 0.1, "min_step_size": 1.0, "max_step_size": 0.5},
        r"scale_by_rprop\(min_step_size=1.0\): must not exceed max_step_size=0.5",
    ),
    ("scale_by_rprop", {"learning_rate": -0.1}, r"scale_by_rprop\(learning_rate=-0.1\)"),
    ("scale_by_lion", {"b1": 1.5}, r"scale_by_lion\(b1=1.5\)"),
    ("lion", {"learning_rate": 1e-3, "b2": -0.5}, r"lion\(b2=-0.5\)"),
    ("clip", {"max_delta": -1.0}, r"clip\(max_delta=-1.0\): max_delta must be in \[0, inf\]"),
    ("clip_by_global_norm", {"max_norm": -1.0}, r"clip_by_global_norm\(max_norm=-1.0\)"),
    ("clip_by_block_rms", {"threshold": -1.0}, r"clip_by_block_rms\(threshold=-1.0\)"),
    ("add_decayed_weights", {"weight_decay": -1.0}, r"add_decayed_weights\(weight_decay=-1.0\)"),
    ("add_l1_penalty", {"l1": -1.0}, r"add_l1_penalty\(l1=-1.0\)"),
    ("soft_threshold", {"threshold": -1.0}, r"soft_threshold\(threshold=-1.0\)"),
    ("add_noise", {"eta": -1.0, "gamma": 0.5}, r"add_noise\(eta=-1.0\)"),
    ("add_noise", {"eta": 0.1, "gamma": -0.5}, r"add_noise\(gamma=-0.5\)"),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "match"), BAD, ids=[f"{n}-{i}" for i, (n, *_) in enumerate(BAD)]
)
def test_bad_hyperparameters_are_rejected_when_built(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        getattr(gradtx, name)(**kwargs)


def test_bad_values_in_arrays_are_rejected():
    with pytest.raises(ValueError, match=r"scale_by_adam\(b2="):
        gradtx.scale_by_adam(b2=jnp.asarray([0.9, 1.2]))


def test_replace_validates_the_new_values():
    with pytest.raises(ValueError, match=r"scale_by_adam\(b1=3.0\)"):
        gradtx.scale_by_adam().replace(b1=3.0)
    with pytest.raises(ValueError, match=r"scale_by_learning_rate\(learning_rate=-2.0\)"):
        gradtx.tree_set(gradtx.adam(1e-3), learning_rate=-2.0)


def test_chain_rejects_what_is_not_a_transform():
    with pytest.raises(TypeError, match="chain: expected a transform with init and update"):
        gradtx.chain(gradtx.scale(1.0), 3.0)


def test_transforms_needing_params_say_so():
    tx = gradtx.add_decayed_weights(0.1)
    with pytest.raises(ValueError, match="add_decayed_weights needs the params"):
        tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))


def test_chain_rejects_a_foreign_state():
    tx = gradtx.adam(1e-3)
    with pytest.raises(
        TypeError, match="the state at state is a tuple of 1 where adam.init makes a tuple of 2"
    ):
        tx.update({"w": jnp.ones(2)}, (None,))


def test_tracers_are_not_validated_and_jax_rebuilds_freely():
    # Built inside jit with a traced value: not checkable, so not checked.
    @jax.jit
    def run(lr, b1):
        tx = gradtx.adam(lr, b1=b1)
        return tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))[0]

    assert run(0.1, 0.9)["w"].shape == (2,)
    # JAX rebuilds objects with arbitrary leaves (vmap axes, tree_map results).
    tx = gradtx.adam(1e-3)
    axes = jax.tree.map(lambda _: None, tx)
    assert jax.tree.structure(axes, is_leaf=lambda x: x is None) is not None
    objects = jax.tree.map(lambda _: object(), tx)
    assert isinstance(objects, type(tx))
    negated = jax.tree.map(lambda x: -x, tx)  # out of range, but JAX built it
    assert gradtx.tree_get(negated, "b1") == -0.9
