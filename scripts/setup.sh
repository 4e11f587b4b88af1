#!/usr/bin/env bash
# Installs what dimix needs on Debian 12 (apt-get only) and configures the
# build directory. Used by scripts/run.sh and scripts/test.sh; safe to re-run.
#   BUILD_DIR  (default: build)        where CMake builds
#   DIMIX_CMAKE_ARGS                    extra CMake arguments (e.g. -DDIMIX_CUDA=OFF)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake catch2 libopenblas-dev libopenblas0-openmp zlib1g-dev libstb-dev
          dataset-fashion-mnist openmpi-bin libopenmpi-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

BUILD_DIR=${BUILD_DIR:-build}
launcher=()
command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
# nvcc lives outside PATH on some installs
[ -x /usr/local/cuda/bin/nvcc ] && export PATH="/usr/local/cuda/bin:$PATH"
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" ${DIMIX_CMAKE_ARGS:-} >/dev/null
echo "setup: configured $BUILD_DIR ($(grep -E '^DIMIX_CUDA:' "$BUILD_DIR/CMakeCache.txt" | sed 's/.*=/CUDA=/'))"
