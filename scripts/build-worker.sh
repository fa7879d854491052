#!/usr/bin/env bash
# Builds qjobs-worker alone: no server, no Boost, no tests. For a GPU machine
# that has a CUDA libtorch (a pip torch works) and little else.
#   scripts/build-worker.sh [--torch-dir DIR] [--build-dir DIR] [--prefix DIR] [cmake args...]
# --torch-dir: the folder holding TorchConfig.cmake; default: the torch of
#   the project's virtual environment (scripts/install-deps.sh, the wheel CI
#   builds with), else python3's.
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
if [[ -z "$torch_dir" ]]; then
  for py in "${QJOBS_VENV:-$PWD/.venv}/bin/python" python3; do
    if torch_dir="$("$py" -c 'import os, torch.utils; print(os.path.join(torch.utils.cmake_prefix_path, "Torch"))' 2>/dev/null)"; then
      break
    fi
    torch_dir=""
  done
fi
if [[ -z "$torch_dir" ]]; then
  echo "build-worker: no torch found (scripts/install-deps.sh, or --torch-dir DIR)" >&2
  exit 1
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
# Configure output goes to stderr: which libtorch, its CUDA, what was found
# (stdout's last line is the worker's path, for scripts).
cmake -S . -B "$build_dir" "${args[@]}" "${extra[@]}" >&2
cmake --build "$build_dir" -j "$(nproc 2>/dev/null || echo 2)" --target qjobs-worker >&2
echo "$build_dir/bin/qjobs-worker"
