#!/usr/bin/env bash
# The main job: installs dependencies, builds the training binary and trains
# the default dimension mixer (butterfly-mixer-s) on Fashion-MNIST from the
# Debian package, printing the test accuracy and where the checkpoint,
# metrics and plot are. Extra arguments go to train_image.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
cmake --build "$BUILD_DIR" -j "$(nproc)" --target train_image
exec "$BUILD_DIR/train_image" --model butterfly-mixer-s --dataset fashion-mnist --epochs 10 --out runs/default "$@"
