"""Run by test_checkpoint.py in a fresh process with DEVICES simulated CPU devices.

``save DIRECTORY`` (8 devices) saves a state sharded by ``gradtx.shard_state``
over 8 devices and its host copy (``expected.pkl``), then restores it with
each of SAME_TOPOLOGY's ``shardings``; ``restore DIRECTORY`` (4 devices: another
topology) restores it with each of OTHER_TOPOLOGY's. Prints one JSON line: per
case, whether every leaf is bit for bit the saved one and placed as asked, or
the error.
"""

import json
import os
import pickle
import sys

os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={os.environ['DEVICES']}"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.sharding import AxisType, NamedSharding, PartitionSpec, SingleDeviceSharding  # noqa: E402
import numpy as np  # noqa: E402

import gradtx  # noqa: E402
from gradtx.checkpoint import Checkpointer  # noqa: E402

STEP = 2
# A PRNG key, an int32 count, bfloat16 and float32 moments; "odd" stays replicated.
TX = gradtx.chain(
    gradtx.add_noise(0.01, 0.55, key=jax.random.key(3)),
    gradtx.adam(1e-2, mu_dtype=jnp.bfloat16),
)
PARAMS = {
    "w": jax.ShapeDtypeStruct((16, 4), jnp.float32),
    "b": jax.ShapeDtypeStruct((8,), jnp.float32),
    "odd": jax.ShapeDtypeStruct((3,), jnp.float32),
}


def mesh(devices):
    return jax.make_mesh((len(devices),), ("data",), axis_types=(AxisType.Auto,), devices=devices)


def distinct_values():
    """Params and a state of ``TX.init``'s shapes, every element different, made in NumPy.

    (Running the optimizer instead would compile each eager operation: seconds.)
    """

    def value(index, leaf):
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return jax.random.key(index)
        numbers = np.arange(1, int(np.prod(leaf.shape)) + 1).reshape(leaf.shape)
        if jnp.issubdtype(leaf.dtype, jnp.integer):
            return (numbers + index).astype(leaf.dtype)
        return (np.sin(numbers + 10.0 * index) * 0.9).astype(leaf.dtype)

    leaves, treedef = jax.tree.flatten((PARAMS, jax.eval_shape(TX.init, PARAMS)))
    return treedef.unflatten([value(index, leaf) for index, leaf in enumerate(leaves)])


def host(tree):
    """Path -> NumPy copy of every leaf, PRNG keys as their key data."""

    def copy(leaf):
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        return np.asarray(leaf)

    flat = jax.tree_util.tree_leaves_with_path(tree)
    return {jax.tree_util.keystr(path): copy(leaf) for path, leaf in flat}


def check(restored, expected, placements):
    """Bit equality with ``expected`` and each leaf's placement against ``placements``."""
    got = host((restored.params, restored.opt_state))
    leaves = jax.tree.leaves((restored.params, restored.opt_state))
    return {
        "step": restored.step,
        "equal": sorted(got) == sorted(expected)
        and all(
            got[path].dtype == expected[path].dtype and np.array_equal(got[path], expected[path])
            for path in expected
        ),
        "placed": len(leaves) == len(placements)
        and all(leaf.sharding == want for leaf, want in zip(leaves, placements)),
        "sharded_leaves": sum(not leaf.sharding.is_fully_replicated for leaf in leaves),
    }


def everywhere(sharding):
    """The placements of every leaf placed by ``sharding``."""
    return [sharding] * len(jax.tree.leaves((PARAMS, jax.eval_shape(TX.init, PARAMS))))


def cases_on(devices):
    """name -> (``shardings``, each restored leaf's sharding in order[, the default device])."""
    here = mesh(devices)
    state_sharding = gradtx.shard_state(TX, PARAMS, here)
    replicated = NamedSharding(here, PartitionSpec())
    return {
        "state_sharding": (
            state_sharding,
            jax.tree.leaves((state_sharding.params, state_sharding.state)),
        ),
        # A prefix for the params, a full tree for the state.
        "pair": (
            (replicated, state_sharding.state),
            jax.tree.leaves((jax.tree.map(lambda _: replicated, PARAMS), state_sharding.state)),
        ),
        "one_sharding": (replicated, everywhere(replicated)),
        "default_device": (None, everywhere(SingleDeviceSharding(jax.devices()[0]))),
    }


def restore_all(directory, cases, expected):
    results = {}
    with Checkpointer(directory) as ckpt:
        for name, (shardings, placements, *default) in cases.items():
            try:
                # None as users call it: without the argument.
                given = {} if shardings is None else {"shardings": shardings}
                with jax.default_device(default[0] if default else None):
                    restored = ckpt.restore(TX, PARAMS, **given)
                results[name] = check(restored, expected, placements)
            except Exception as error:  # reported, so the test names the case that broke
                results[name] = {"error": f"{type(error).__name__}: {error}"[:2000]}
    return results


def main():
    command, directory = sys.argv[1:]
    devices = jax.devices()
    results = {"devices": len(devices)}
    if command == "save":
        params, state = distinct_values()
        expected = host((params, state))
        with open(os.path.join(directory, "expected.pkl"), "wb") as file:
            pickle.dump(expected, file)  # bfloat16 survives pickle, not np.savez
        sharding = gradtx.shard_state(TX, PARAMS, mesh(devices))
        params = jax.device_put(params, sharding.params)
        state = jax.device_put(state, sharding.state)
        results["saved_sharded_leaves"] = sum(
            not leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(state)
        )
        with Checkpointer(os.path.join(directory, "run")) as ckpt:
            ckpt.save(STEP, params, state, TX)
        cases = cases_on(devices)
        # The same state on 4 of the 8 devices.
        cases["four_devices"] = cases_on(devices[4:])["state_sharding"]
        # Without shardings, "the default device" is jax.default_device's when it is set.
        third = SingleDeviceSharding(devices[3])
        cases["default_device_set"] = (None, everywhere(third), devices[3])
    else:
        with open(os.path.join(directory, "expected.pkl"), "rb") as file:
            expected = pickle.load(file)
        cases = cases_on(devices)
    results.update(restore_all(os.path.join(directory, "run"), cases, expected))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
