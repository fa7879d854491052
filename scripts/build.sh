#!/usr/bin/env bash
# Configures and builds qjobs into build/ (binaries in build/bin/).
# Extra arguments go to cmake, e.g. -DTorch_DIR=/opt/libtorch/share/cmake/Torch
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
cmake --build build -j "$jobs"
