"""gradtx.shard_state: optimizer state split over a data-parallel mesh axis (ZeRO 1 and 2).

The checks on 8 devices run once in a fresh process (tests/sharding_worker.py),
since the simulated device count must be set before JAX's backend starts.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec
import pytest

import gradtx

# one worker starts the 8-device subprocess for the whole module (pyproject: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("sharding_worker")


def test_the_module_runs_on_one_xdist_worker(request):
    # Under --dist loadgroup a worker suffixes a grouped test's node id with its group, which
    # sends the group to one worker. pytest 9.2 ignores the suffix (pytest-xdist issue 1386):
    # every worker would start the 8-device subprocess, and the docs site and the quick runs
    # of test_modern be built once per worker (pyproject pins pytest below 9.2).
    if not request.config.getoption("loadgroup", default=False):
        pytest.skip("not an xdist worker under --dist loadgroup")
    assert request.node.nodeid.endswith("@sharding_worker"), request.node.nodeid


ELEMENTWISE = ["adam", "adamw", "sgd_momentum", "partition", "masked", "multi_steps"]
LEAF_STRUCTURE = ["lamb", "muon", "clip_by_block_rms", "adafactor"]


# session scope: xdist may run another module's tests between this group's, which would tear
# a module fixture down and start its subprocesses again (seen in CI: twice per worker)
@pytest.fixture(scope="session")
def worker():
    script = pathlib.Path(__file__).with_name("sharding_worker.py")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    env["PYTHONPATH"] = os.pathsep.join([str(script.parents[1]), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["devices"] == 8
    return result


def _ran(worker, name):
    result = worker[name]
    assert "error" not in result, result["error"]
    return result


@pytest.mark.parametrize("name", ELEMENTWISE + ["multi_tensor_whole_kernel"] + LEAF_STRUCTURE)
def test_sharded_step_equals_one_device(worker, name):
    result = _ran(worker, name)
    assert result["close"], result["max_difference"]  # allclose at rtol = atol = 1e-6
    assert result["moved"] > 1e-2  # the params did train
    assert result["params_replicated"]


@pytest.mark.parametrize("name", ELEMENTWISE + LEAF_STRUCTURE)
def test_per_device_state_memory_is_an_eighth(worker, name):
    result = _ran(worker, name)
    # Moments of the (64, 16) kernel and (16,) bias split; the (3, 5) leaf and counts are not.
    assert result["sharded_bytes"] < result["replicated_bytes"] / 8 + 300, result


@pytest.mark.parametrize("name", ELEMENTWISE + LEAF_STRUCTURE + ["multi_tensor"])
def test_state_is_placed_as_the_layout_says_and_keeps_it(worker, name):
    result = _ran(worker, name)
    assert result["initial_specs"] == result["layout"]
    assert result["final_specs"] == result["layout"]


def test_state_leaves_like_params_are_split_and_the_rest_replicated(worker):
    layout = _ran(worker, "adam")["layout"]
    assert layout["[0].mu['kernel']"] == layout["[0].nu['bias']"] == "P('data',)"
    assert layout["[0].mu['odd']"] == "P()"  # (3, 5): 8 divides neither dimension
    assert layout["[0].count"] == layout["[1].learning_rate"] == "P()"
    assert _ran(worker, "multi_steps")["layout"][".acc_grads['kernel']"] == "P('data',)"


def test_multi_tensor_buffers_are_split_only_when_the_axis_divides_them(worker):
    # Default: one 1055-element buffer for all three leaves, which 8 does not divide.
    whole = _ran(worker, "multi_tensor")
    assert whole["sharded_bytes"] == whole["replicated_bytes"]
    assert whole["layout"][".inner_state[0].mu['bucket_float32']"] == "P()"
    # bucket_limit=512 keeps the kernel whole: its moments are split.
    split = _ran(worker, "multi_tensor_whole_kernel")
    assert split["layout"][""".inner_state[0].mu["['kernel']"]"""] == "P('data',)"
    assert split["sharded_bytes"] < split["replicated_bytes"] / 4


def test_the_step_gathers_the_updated_params(worker):
    # Replicated state would need no all-gather: the update runs on the state's parts.
    for name in ELEMENTWISE + LEAF_STRUCTURE:
        collectives = _ran(worker, name)["collectives"]
        assert collectives["all-gather"] >= 1, (name, collectives)
        assert collectives["all-reduce"] + collectives["reduce-scatter"] >= 1, (name, collectives)


def test_explicit_axes_work_per_leaf_and_refuse_mixed_concatenation(worker):
    assert _ran(worker, "explicit_adam")["close"]
    assert worker["explicit_multi_tensor_whole_kernel"]["error"].startswith("ShardingTypeError")


@pytest.mark.parametrize("name", ["flat_adam", "flat_adamw_clip"])
def test_flat_params_split_over_the_axis_give_the_tree_numbers_and_stay_split(worker, name):
    # FlatParams.from_tree, then jax.device_put over P("data"): a jitted step keeps it so.
    result = _ran(worker, name)
    assert result["close"], result["max_difference"]  # allclose at rtol = atol = 1e-6
    assert result["moved"] > 1e-2
    # The params' buffer and adam's mu and nu: all still split.
    assert result["buffers"] == 3 and result["buffer_specs"] == ["P('data',)"]


def test_layout_report_on_one_device():
    mesh = jax.make_mesh((1,), ("data",))
    params = {"w": jnp.ones((4, 2)), "b": jnp.ones(3)}
    sharding = gradtx.shard_state(gradtx.adamw(0.1), params, mesh)
    assert sharding.layout["[0].mu['w']"] == PartitionSpec("data")
    assert sharding.layout["[0].count"] == PartitionSpec()
    report = sharding.report().splitlines()
    assert report[0] == "state of Chain, mesh axis 'data' of size 1:"
    count = next(line for line in report if line.strip().startswith("[0].count "))
    assert "int32[]" in count and "P()" in count and "not floating point" in count
    assert any("[0].mu['w']" in line and "split along dimension 0" in line for line in report)
    state = sharding.init(params)
    assert jax.tree.structure(state) == jax.tree.structure(gradtx.adamw(0.1).init(params))
    updates = sharding.shard_updates(params)
    assert updates["w"].sharding.spec in (PartitionSpec("data"), PartitionSpec("data", None))


def test_leaves_no_dimension_of_which_the_axis_divides_are_reported():
    mesh = jax.make_mesh((1,), ("data",))
    sharding = gradtx.shard_state(gradtx.sgd(0.1, momentum=0.9), {"w": jnp.ones((3, 5))}, mesh)
    # On a 1-device mesh every dimension is divisible: the reason is checked on the rule.
    assert "split along dimension 0" in sharding.report()
    from gradtx._sharding import _split

    spec, reason = _split((3, 5), jnp.float32, "data", 8)
    assert spec == PartitionSpec() and "no dimension divisible by data size 8" in reason
    assert _split((3, 16), jnp.float32, "data", 8)[0] == PartitionSpec(None, "data")
    assert _split((2,), jax.random.key(0).dtype, "data", 2)[0] == PartitionSpec()


def test_mesh_without_the_axis_is_refused():
    mesh = jax.make_mesh((1,), ("batch",))
    with pytest.raises(ValueError, match=r"shard_state\(axis='data'\).*its axes are \('batch',\)"):
        gradtx.shard_state(gradtx.adam(0.1), {"w": jnp.ones(4)}, mesh)
