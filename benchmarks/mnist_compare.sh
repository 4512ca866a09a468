#!/usr/bin/env bash
# The optimizer comparison at full size, as the reference ran it: MNIST (60,000 train, the
# 10,000 test images for validation), the reference CNN unchanged (28x28, 'valid' conv), batch 64,
# 10 epochs, each optimizer at Keras's defaults; trained with gradtx (examples/compare_optimizers.py)
# and with Keras 3 (benchmarks/keras_compare.py) on the same files, split and batches.
#
#   benchmarks/mnist_compare.sh [MNIST_DIR] [options both scripts take, e.g. --optimizers adam]
#
# MNIST_DIR (else $MNIST_DIR, else ~/.cache/gradtx/mnist) must hold the four MNIST IDX files,
# plain or .gz; nothing is downloaded. Needs `pip install -e ".[examples,reference]"`.
# PYTHON picks the interpreter (python3), OUT the output folder (out/mnist).
set -euo pipefail

dir="${MNIST_DIR:-$HOME/.cache/gradtx/mnist}"
if [[ $# -gt 0 && $1 != -* ]]; then
    dir="$1"
    shift
fi
python="${PYTHON:-python3}"
out="${OUT:-out/mnist}"

missing=()
for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte \
    t10k-labels-idx1-ubyte; do
    [[ -f "$dir/$name" || -f "$dir/$name.gz" ]] || missing+=("$name")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "mnist_compare.sh: no MNIST in $dir: missing ${missing[*]} (plain or .gz)." >&2
    echo "Put the four IDX files there, or pass their folder: $0 DIR" >&2
    exit 1
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mnist=(--dataset mnist --data-dir "$dir" --no-download --out "$out")
"$python" "$root/examples/compare_optimizers.py" "${mnist[@]}" --preset keras "$@"
"$python" "$root/benchmarks/keras_compare.py" "${mnist[@]}" "$@"
