#!/usr/bin/env bash
# Configures and builds qjobs into build/ (binaries in build/bin/) against the
# libtorch of the project's virtual environment (scripts/install-deps.sh makes
# it: pip's torch, pinned in scripts/requirements.txt). Extra arguments go to
# cmake, e.g. -DTorch_DIR=/opt/libtorch/share/cmake/Torch for another one.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
python="${QJOBS_VENV:-$PWD/.venv}/bin/python"
args=(-DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-RelWithDebInfo}" -DQJOBS_PYTHON="$python")
if torch_dir="$("$python" -c 'import os, torch.utils; print(os.path.join(torch.utils.cmake_prefix_path, "Torch"))' 2>/dev/null)"; then
  args+=(-DTorch_DIR="$torch_dir")
fi
# A CUDA libtorch's CMake config needs a CUDA toolkit: the system's nvcc (on
# PATH or in /usr/local/cuda), else one assembled from the environment's pip
# packages at the wheel's CUDA version.
if ! command -v nvcc >/dev/null && [[ ! -x /usr/local/cuda/bin/nvcc ]] &&
   "$python" -c 'import torch, sys; sys.exit(torch.version.cuda is None)' 2>/dev/null; then
  scripts/cuda-toolkit-from-pip.sh "$PWD/build/cuda-toolkit" >/dev/null
  export PATH="$PWD/build/cuda-toolkit/bin:$PATH"
  args+=(-DCUDAToolkit_ROOT="$PWD/build/cuda-toolkit")
  echo "build: no system CUDA toolkit; using pip's (build/cuda-toolkit)"
fi
# ccache keys on the command line; with paths taken relative to the clone
# and the build folder left out of the key (-g puts it in by default), a
# second clone of the project compiles from the first one's cache.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}" CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-1}"
cmake -S . -B build "${args[@]}" "$@"
# QJOBS_BUILD_TARGETS="qjobs-server qjobs-worker jobctl": only those (the
# demo); unset: everything, tests and benchmarks included.
read -r -a targets <<<"${QJOBS_BUILD_TARGETS:-}"
if ((${#targets[@]})); then
  cmake --build build -j "$jobs" --target "${targets[@]}"
else
  cmake --build build -j "$jobs"
fi
