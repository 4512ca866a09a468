"""The optimizer comparison (examples/compare_optimizers.py) and its data loaders."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
import struct
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradtx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import compare_optimizers  # noqa: E402
import datasets  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_idx(path: Path, array: np.ndarray) -> None:
    """LeCun's IDX format written by hand: the oracle the loader is checked against."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}
    header = struct.pack(">HBB", 0, codes[array.dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def tiny_mnist(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "x_train": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, 5, dtype=np.uint8),
        "x_val": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "y_val": rng.integers(0, 10, 3, dtype=np.uint8),
    }


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_read_idx_round_trips(tmp_path, suffix, dtype):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(dtype) * 7
    path = tmp_path / f"array-idx3{suffix}"
    write_idx(path, array)
    read = datasets.read_idx(path)
    assert read.dtype == array.dtype and read.dtype.isnative
    np.testing.assert_array_equal(read, array)


def test_read_idx_rejects_wrong_magic_and_truncated_files(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="not an IDX file"):
        datasets.read_idx(bad)
    truncated = tmp_path / "truncated"
    write_idx(truncated, np.zeros((4, 2), np.uint8))
    truncated.write_bytes(truncated.read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"shape \(4, 2\)"):
        datasets.read_idx(truncated)


def test_load_mnist_reads_plain_and_gzipped_files(tmp_path):
    arrays = tiny_mnist(np.random.default_rng(0))
    for i, (key, name) in enumerate(datasets.MNIST_FILES.items()):
        write_idx(tmp_path / (name + (".gz" if i % 2 else "")), arrays[key])
    data = datasets.load_mnist(tmp_path, download=False)
    assert data.name == "mnist" and data.x_train.shape == (5, 28, 28, 1)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int32
    np.testing.assert_allclose(data.x_val[..., 0], arrays["x_val"] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(data.y_train, arrays["y_train"])
    np.testing.assert_array_equal(data.y_val, arrays["y_val"])


def test_load_mnist_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        datasets.load_mnist(tmp_path, download=False)


def test_download_mnist_tries_mirrors_and_checks_md5(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    arrays = tiny_mnist(np.random.default_rng(1))
    checksums = {}
    for key, name in datasets.MNIST_FILES.items():
        write_idx(mirror / f"{name}.gz", arrays[key])
        checksums[f"{name}.gz"] = hashlib.md5((mirror / f"{name}.gz").read_bytes()).hexdigest()
    mirrors = ((tmp_path / "no-such-mirror").as_uri() + "/", mirror.as_uri() + "/")
    target = tmp_path / "data"
    datasets.download_mnist(target, mirrors=mirrors, checksums=checksums)
    data = datasets.load_mnist(target, download=False)
    np.testing.assert_array_equal(data.y_val, arrays["y_val"])
    assert not list(target.glob("*.part"))

    wrong = dict.fromkeys(checksums, "0" * 32)
    with pytest.raises(RuntimeError, match="expected 0000"):
        datasets.download_mnist(tmp_path / "other", mirrors=mirrors, checksums=wrong)
    assert not list((tmp_path / "other").iterdir())


def test_load_digits_split_is_fixed_and_stratified():
    data = datasets.load_digits()
    assert data.x_train.shape == (1437, 8, 8, 1) and data.x_val.shape == (360, 8, 8, 1)
    assert data.x_train.min() >= 0.0 and data.x_train.max() == 1.0
    assert np.bincount(data.y_val).min() >= 35
    np.testing.assert_array_equal(datasets.load_digits().y_val, data.y_val)


def test_batch_plan_draws_each_pass_as_a_permutation():
    indices, weights = compare_optimizers.batch_plan(n=10, batch_size=4, steps=7, seed=0)
    assert indices.shape == weights.shape == (7, 4)
    passes = indices[:6].reshape(2, 12), weights[:6].reshape(2, 12)
    for pass_indices, pass_weights in zip(*passes):
        assert sorted(pass_indices[pass_weights == 1]) == list(range(10))
        assert pass_weights.sum() == 10 and (pass_weights[-2:] == 0).all()


@pytest.mark.parametrize("preset", list(compare_optimizers.PRESETS))
def test_every_preset_builds_every_optimizer(preset):
    prefix, recipes = compare_optimizers.PRESETS[preset]
    assert set(recipes) == set(compare_optimizers.LABELS)
    for factory, kwargs in recipes.values():
        tx = factory(**kwargs)
        assert float(gradtx.tree_get(tx, "learning_rate")) > 0
        label = repr(tx).split("(")[0]
        assert label.startswith(f"{preset}.") or preset == "gradtx" and "." not in label
    assert prefix == {"gradtx": "gradtx"}.get(preset, f"gradtx.compat.{preset}")


@pytest.mark.parametrize("preset", list(compare_optimizers.PRESETS))
def test_every_presets_fresh_state_can_be_donated_with_the_params(preset):
    # train_one donates the state that tx.init returns, uncopied: no buffer may appear twice
    # among its leaves and the parameters (XLA: "donate the same buffer twice").
    model = compare_optimizers.CNN("SAME")
    params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False)["params"]
    for factory, kwargs in compare_optimizers.PRESETS[preset][1].values():
        leaves = jax.tree.leaves((params, factory(**kwargs).init(params)))
        buffers = [x.unsafe_buffer_pointer() for x in leaves if isinstance(x, jax.Array)]
        assert len(set(buffers)) == len(buffers) > len(jax.tree.leaves(params))


def test_keras_preset_is_the_reference_tables_keras_defaults():
    _, recipes = compare_optimizers.PRESETS["keras"]
    factory, kwargs = recipes["momentum"]
    assert factory is gradtx.compat.keras.sgd and kwargs == {"momentum": 0.9}
    assert all(kwargs == {} for name, (_, kwargs) in recipes.items() if name != "momentum")


def run(tmp_path, capsys, *extra):
    argv = [
        "--optimizers",
        "adam",
        "sgd",
        "--epochs",
        "2",
        "--steps-per-epoch",
        "6",
        "--out",
        str(tmp_path),
        *extra,
    ]
    results = compare_optimizers.main(argv)
    return results, capsys.readouterr().out


def test_main_prints_the_table_and_writes_the_curves(tmp_path, capsys):
    results, out = run(tmp_path / "a", capsys)
    assert "MNIST-equivalent epochs 1, 2 (6 steps each)" in out
    assert "adapted to 8x8 images" in out
    header = next(line for line in out.splitlines() if line.startswith("| optimizer"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "optimizer",
        "epoch 1",
        "epoch 2",
        "total time",
    ]
    for result in results:
        row = next(line for line in out.splitlines() if line.startswith(f"| {result.label} "))
        accuracy, loss = result.epochs[2]
        assert f"{accuracy:.4f} / {loss:.4f}" in row
        assert [step for step, *_ in result.curve][-1] == 12
    png = tmp_path / "a" / "compare_digits_keras.png"
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    import matplotlib.image

    assert matplotlib.image.imread(png).ndim == 3
    record = json.loads((tmp_path / "a" / "compare_digits_keras.json").read_text())
    assert [r["label"] for r in record["results"]] == ["Adam", "SGD"]

    again, _ = run(tmp_path / "b", capsys)
    for first, second in zip(results, again):
        assert first.curve == second.curve
        chex.assert_trees_all_equal(first.params, second.params)
    other_seed, _ = run(tmp_path / "c", capsys, "--seed", "1")
    assert other_seed[0].curve != results[0].curve


def test_patience_keeps_the_best_epochs_parameters(tmp_path, capsys):
    results, out = run(tmp_path, capsys, "--patience", "1")
    assert "kept (best epoch)" in out
    model, val = (
        compare_optimizers.CNN("SAME"),
        compare_optimizers.validation_arrays(datasets.load_digits()),
    )
    for result in results:
        losses = {epoch: loss for epoch, (_, loss) in result.epochs.items()}
        assert result.best_epoch == min(losses, key=losses.get)
        if result.stopped_epoch is not None:
            assert result.stopped_epoch - result.best_epoch == 1
        accuracy, loss = (float(v) for v in compare_optimizers.evaluate(model, result.params, val))
        assert (accuracy, loss) == pytest.approx(result.epochs[result.best_epoch], rel=1e-6)


def test_main_on_mnist_files_uses_the_original_28x28_model(tmp_path, capsys):
    arrays = tiny_mnist(np.random.default_rng(2))
    for key, name in datasets.MNIST_FILES.items():
        write_idx(tmp_path / f"{name}.gz", arrays[key])
    argv = ["--dataset", "mnist", "--data-dir", str(tmp_path), "--no-download"]
    argv += ["--optimizers", "adam", "--batch-size", "4", "--epochs", "1"]
    argv += ["--steps-per-epoch", "3", "--out", str(tmp_path / "out")]
    (result,) = compare_optimizers.main(argv)
    out = capsys.readouterr().out
    assert "Conv2D 32 3x3 valid relu (26x26x32), MaxPool 2x2 (13x13x32)" in out
    assert "adapted" not in out
    assert result.curve[-1][0] == 3
    assert (tmp_path / "out" / "compare_mnist_keras.png").read_bytes()[:8] == PNG_SIGNATURE
