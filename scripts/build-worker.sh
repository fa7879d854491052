#!/usr/bin/env bash
# Builds qjobs-worker alone: no server, no Boost, no tests. For a GPU machine
# that has a CUDA libtorch (a pip torch works) and little else.
#   scripts/build-worker.sh [--torch-dir DIR] [--build-dir DIR] [--prefix DIR] [cmake args...]
# --torch-dir: the folder holding TorchConfig.cmake; default: the one of
#   python3's torch when it imports, else whatever CMake finds (Debian's).
# --prefix: a folder with the worker's other dependencies unpacked from .deb
#   files (dpkg -x), searched before the system.
set -euo pipefail
cd "$(dirname "$0")/.."
torch_dir="" build_dir="build-worker" prefix=""
extra=()
while (($#)); do
  case "$1" in
    --torch-dir) torch_dir="$2"; shift 2 ;;
    --build-dir) build_dir="$2"; shift 2 ;;
    --prefix) prefix="$2"; shift 2 ;;
    *) extra+=("$1"); shift ;;
  esac
done
if [[ -z "$torch_dir" ]] && python3 -c 'import torch' 2>/dev/null; then
  torch_dir="$(python3 -c 'import torch, os; print(os.path.join(torch.utils.cmake_prefix_path, "Torch"))')"
fi
args=(-DQJOBS_WORKER_ONLY=ON -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-Release}")
[[ -n "$torch_dir" ]] && args+=(-DTorch_DIR="$torch_dir")
if [[ -n "$prefix" ]]; then
  prefix="$(cd "$prefix" && pwd)"
  multiarch="$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"
  args+=(-DCMAKE_PREFIX_PATH="$prefix/usr;$prefix/usr/lib/$multiarch/cmake"
         -DCMAKE_INCLUDE_PATH="$prefix/usr/include" -DCMAKE_LIBRARY_PATH="$prefix/usr/lib/$multiarch")
  export PKG_CONFIG_PATH="$prefix/usr/lib/$multiarch/pkgconfig:$prefix/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  export CPATH="$prefix/usr/include${CPATH:+:$CPATH}"
fi
cmake -S . -B "$build_dir" "${args[@]}" "${extra[@]}" >/dev/null
cmake --build "$build_dir" -j "$(nproc 2>/dev/null || echo 2)" --target qjobs-worker
echo "$build_dir/bin/qjobs-worker"
