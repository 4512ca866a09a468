"""The Keras side of the comparison (benchmarks/keras_compare.py, benchmarks/mnist_compare.sh).

Training needs Keras (the ``reference`` extra): those tests are skipped where it is absent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "examples")]

import compare_optimizers  # noqa: E402
import datasets  # noqa: E402
import keras_compare  # noqa: E402
from test_compare import tiny_mnist, write_idx  # noqa: E402

MNIST_COMPARE = ROOT / "benchmarks" / "mnist_compare.sh"


@pytest.fixture(scope="module")
def keras():
    try:
        return keras_compare.import_keras()
    except ImportError as error:
        pytest.skip(f"Keras is not installed: {error}")


def test_keras_optimizers_are_the_keras_presets_calls():
    optimizers = keras_compare.keras_optimizers(list(compare_optimizers.LABELS))
    assert list(optimizers) == list(compare_optimizers.LABELS)
    calls = {name: call for name, (_, _, call) in optimizers.items()}
    assert calls["momentum"] == "keras.optimizers.SGD(momentum=0.9)"
    assert calls["sgd"] == "keras.optimizers.SGD()"
    assert calls["adadelta"] == "keras.optimizers.Adadelta()"


def test_plan_batches_are_the_plan_without_its_padding():
    data = datasets.load_digits()
    n = len(data.x_train)  # 1,437: 22 full batches of 64 and one of 29 per pass
    plan = compare_optimizers.batch_plan(n, 64, steps=50, seed=3)
    batches = list(keras_compare.plan_batches(data, plan))
    assert [len(y) for _, y in batches] == ([64] * 22 + [29]) * 2 + [64] * 4
    first_pass = np.concatenate([y for _, y in batches[:23]])
    assert sorted(first_pass) == sorted(data.y_train)
    x, y = batches[30]
    np.testing.assert_array_equal(x, data.x_train[plan[0][30]])
    np.testing.assert_array_equal(y, data.y_train[plan[0][30]])


def test_summary_table_shows_the_mean_and_range_over_seeds():
    def result(accuracy, loss, seconds):
        return compare_optimizers.Result(
            "adam", "Adam", "", [], {1: (accuracy, loss)}, seconds, params=None
        )

    runs = {0: [result(0.9, 0.3, 10.0)], 1: [result(0.8, 0.5, 20.0)], 2: [result(0.7, 0.4, 30.0)]}
    table = keras_compare.summary_table(runs, [1])
    header, _, row = (
        [cell.strip() for cell in line.split("|")[1:-1]] for line in table.splitlines()
    )
    assert header == ["optimizer", "epoch 1", "mean time"]
    assert row == ["Adam", "0.8000 (0.7000-0.9000) / 0.4000", "20.0 s"]


def test_mnist_compare_stops_before_training_when_files_are_missing(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    env = {**os.environ, "PYTHON": str(tmp_path / "no-python")}  # reached: exit status 127
    done = subprocess.run(
        ["bash", str(MNIST_COMPARE), str(tmp_path)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert f"no MNIST in {tmp_path}: missing train-labels-idx1-ubyte " in done.stderr
    assert "missing train-images" not in done.stderr


def test_keras_classes_take_the_presets_arguments_with_the_same_defaults(keras):
    _, recipes = compare_optimizers.PRESETS["keras"]
    for name, (class_name, kwargs, _) in keras_compare.keras_optimizers(list(recipes)).items():
        factory, _ = recipes[name]
        optimizer = getattr(keras.optimizers, class_name)(**kwargs)
        port = factory(**kwargs)
        assert float(optimizer.learning_rate) == pytest.approx(
            float(gradtx.tree_get(port, "learning_rate"))
        )
        if "momentum" in kwargs:
            assert optimizer.momentum == float(gradtx.tree_get(port, "decay"))  # ScaleByMomentum


@pytest.mark.parametrize(("size", "padding", "flat"), [(8, "SAME", 512), (28, "VALID", 5408)])
def test_keras_model_has_the_flax_models_layers(keras, size, padding, flat):
    model = keras_compare.build_model(keras, (size, size, 1), padding)
    (flatten,) = [layer for layer in model.layers if isinstance(layer, keras.layers.Flatten)]
    assert tuple(flatten.output.shape) == (None, flat)
    flax_model = compare_optimizers.CNN(padding)
    params = flax_model.init(jax.random.key(0), jnp.zeros((1, size, size, 1)), train=False)
    shapes = [leaf.shape for leaf in jax.tree.leaves(params)]
    assert sorted(w.shape for w in model.weights) == sorted(shapes)


def test_main_trains_each_seed_reproducibly_and_prints_the_tables(keras, tmp_path, capsys):
    argv = ["--optimizers", "adam", "--epochs", "2", "--steps-per-epoch", "3"]
    runs = keras_compare.main([*argv, "--seeds", "0", "1", "--out", str(tmp_path / "a")])
    out = capsys.readouterr().out
    assert f"Keras {keras.__version__} on the jax backend" in out
    assert "keras.optimizers.Adam()" in out
    (first,) = runs[0]
    assert [step for step, *_ in first.curve] == [0, 3, 6]
    row = next(line for line in out.splitlines() if line.startswith("| Adam "))
    assert "{:.4f} / {:.4f}".format(*first.epochs[2]) in row
    assert "mean over seeds 0, 1" in out
    record = json.loads((tmp_path / "a" / "keras_digits.json").read_text())
    assert [(r["seed"], r["label"]) for r in record["results"]] == [(0, "Adam"), (1, "Adam")]
    assert record["backend"] == "jax"

    (again,) = keras_compare.main([*argv, "--out", str(tmp_path / "b")])[0]
    assert again.curve == first.curve
    assert runs[1][0].curve != first.curve


def test_mnist_compare_trains_both_on_the_same_files(keras, tmp_path):
    arrays = tiny_mnist(np.random.default_rng(4))
    for key, name in datasets.MNIST_FILES.items():
        write_idx(tmp_path / f"{name}.gz", arrays[key])
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out")}
    argv = ["--optimizers", "sgd", "--batch-size", "4", "--epochs", "1", "--steps-per-epoch", "2"]
    subprocess.run(
        ["bash", str(MNIST_COMPARE), str(tmp_path), *argv], env=env, check=True, capture_output=True
    )
    for name in ("compare_mnist_keras.json", "keras_mnist.json"):
        record = json.loads((tmp_path / "out" / name).read_text())
        assert record["data"].startswith(f"MNIST from {tmp_path}, 28x28 grey: 5 train")
        assert record["arguments"]["batch_size"] == 4
