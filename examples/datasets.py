"""Data for the optimizer comparison: scikit-learn's digits (offline) and MNIST (IDX files).

Both loaders return a :class:`Dataset` of images shaped ``(n, height, width, 1)``,
float32 in [0, 1], and int32 labels.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import math
from pathlib import Path
import struct
import urllib.request

import numpy as np


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    description: str


def load_digits(val_size: int = 360, seed: int = 0) -> Dataset:
    """scikit-learn's handwritten digits (1,797 8x8 images, 16 grey levels), ships with sklearn.

    The split is stratified and fixed by ``seed`` (1,437 train / 360 validation by default),
    so every optimizer and every framework sees the same images.
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    images = (bunch.images / 16.0).astype(np.float32)[..., None]
    labels = bunch.target.astype(np.int32)
    x_train, x_val, y_train, y_val = train_test_split(
        images, labels, test_size=val_size, random_state=seed, stratify=labels
    )
    description = (
        f"scikit-learn digits, 8x8 grey: {len(x_train):,} train / {len(x_val):,} validation "
        f"(stratified split, seed {seed})"
    )
    return Dataset("digits", x_train, y_train, x_val, y_val, description)


# The four standard files, without their .gz suffix: training set, then the 10k test set that
# the Keras reference validates on.
MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_val": "t10k-images-idx3-ubyte",
    "y_val": "t10k-labels-idx1-ubyte",
}
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
# yann.lecun.com refuses most automated downloads; these are torchvision's and TensorFlow's copies.
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
DEFAULT_MNIST_DIR = Path.home() / ".cache" / "gradtx" / "mnist"

# IDX type codes (third byte of the magic number) and their big-endian element types.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """An array from an IDX file (LeCun's MNIST format), plain or gzipped (``.gz``).

    Header: two zero bytes, a type code, the number of dimensions ``d``, then ``d``
    big-endian uint32 sizes; then the elements, big-endian, row-major.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        data = stream.read()
    if len(data) < 4:
        raise ValueError(f"{path}: too short for an IDX file ({len(data)} bytes)")
    zeros, code, ndim = struct.unpack(">HBB", data[:4])
    if zeros != 0 or code not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (magic number 0x{data[:4].hex()})")
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = math.prod(shape) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: header says shape {shape} ({expected} bytes of data), "
            f"the file has {len(data) - header}"
        )
    array = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def download_mnist(
    data_dir: str | Path,
    mirrors: tuple[str, ...] = MNIST_MIRRORS,
    checksums: dict[str, str] = MNIST_MD5,
    timeout: float = 30.0,
) -> None:
    """Downloads the gzipped MNIST files missing from ``data_dir``, checking their MD5.

    Each file is tried at each mirror in turn; a file is written only once its checksum
    matches, so an interrupted download leaves nothing half-written behind.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    for filename, md5 in checksums.items():
        target = data_dir / filename
        if target.exists():
            continue
        errors = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + filename
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    payload = response.read()
            except OSError as error:  # urllib's URLError and HTTPError are OSErrors
                errors.append(f"{url}: {error}")
                continue
            digest = hashlib.md5(payload, usedforsecurity=False).hexdigest()
            if digest != md5:
                errors.append(f"{url}: MD5 {digest}, expected {md5}")
                continue
            partial = target.with_name(target.name + ".part")
            partial.write_bytes(payload)
            partial.replace(target)
            break
        else:
            raise RuntimeError(
                f"could not download {filename}:\n  "
                + "\n  ".join(errors)
                + f"\nPut the four MNIST files (plain or .gz) in {data_dir} and run again."
            )


def _find(data_dir: Path, name: str) -> Path | None:
    for candidate in (data_dir / name, data_dir / f"{name}.gz"):
        if candidate.exists():
            return candidate
    return None


def load_mnist(data_dir: str | Path = DEFAULT_MNIST_DIR, download: bool = True) -> Dataset:
    """MNIST from the four standard IDX files in ``data_dir`` (plain or ``.gz``).

    Missing files are downloaded into ``data_dir`` when ``download`` is true. The
    validation set is MNIST's 10,000-image test set, as in the Keras reference.
    """
    data_dir = Path(data_dir).expanduser()
    if download and any(_find(data_dir, name) is None for name in MNIST_FILES.values()):
        download_mnist(data_dir)
    arrays = {}
    for key, name in MNIST_FILES.items():
        path = _find(data_dir, name)
        if path is None:
            raise FileNotFoundError(f"{data_dir}: no {name} or {name}.gz (MNIST IDX file)")
        arrays[key] = read_idx(path)
    for split in ("train", "val"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"{data_dir}: MNIST {split} images {images.shape} and labels {labels.shape} "
                "do not match"
            )
    x_train, x_val = (arrays[k].astype(np.float32)[..., None] / 255.0 for k in ("x_train", "x_val"))
    _, height, width, _ = x_train.shape
    description = (
        f"MNIST from {data_dir}, {height}x{width} grey: {len(x_train):,} train / "
        f"{len(x_val):,} validation (the test set)"
    )
    return Dataset(
        "mnist",
        x_train,
        arrays["y_train"].astype(np.int32),
        x_val,
        arrays["y_val"].astype(np.int32),
        description,
    )
