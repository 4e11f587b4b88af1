#!/usr/bin/env bash
# The test command: installs dependencies, builds everything (Release; CUDA
# too when nvcc is present) and runs the whole ctest suite. GPU tests skip
# themselves, visibly, on machines without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
cmake --build "$BUILD_DIR" -j "$(nproc)"
cd "$BUILD_DIR"
ctest --output-on-failure -j "$(nproc)"
