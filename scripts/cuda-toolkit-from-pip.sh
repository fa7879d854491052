#!/usr/bin/env bash
# Assembles a CUDA toolkit folder from the project's virtual environment, for
# machines without a CUDA 13 toolkit (Debian 12 has none; the Docker images):
#   scripts/cuda-toolkit-from-pip.sh DIR
# then build with PATH=DIR/bin:$PATH and -DCUDAToolkit_ROOT=DIR. nvcc and the
# CCCL headers are pip's nvidia-cuda-nvcc and nvidia-cuda-cccl, pinned in
# scripts/requirements.txt at the CUDA version of the torch wheel, whose own
# nvidia-* packages hold the runtime headers and libraries. DIR gets bin/,
# include/, nvvm/ and lib64/ with the unversioned .so names CMake's
# FindCUDAToolkit looks for, all links into the environment.
set -euo pipefail
if [[ $# -ne 1 ]]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${QJOBS_VENV:-$root/.venv}/bin/python"
cu="$("$python" -c 'import os, nvidia; print(os.path.join(list(nvidia.__path__)[0], "cu" + __import__("torch").version.cuda.split(".")[0]))')"
if [[ ! -x "$cu/bin/nvcc" ]]; then
  echo "cuda-toolkit-from-pip: $cu/bin/nvcc is missing (scripts/install-deps.sh installs nvidia-cuda-nvcc)" >&2
  exit 1
fi
dir="$1"
mkdir -p "$dir/lib64"
for d in bin include nvvm; do
  [[ -e "$cu/$d" ]] && ln -sfn "$cu/$d" "$dir/$d"
done
for lib in "$cu"/lib/lib*.so.*; do
  base="$(basename "$lib")"
  ln -sf "$lib" "$dir/lib64/$base"
  ln -sf "$lib" "$dir/lib64/${base%%.so.*}.so"
done
for a in "$cu"/lib/lib*.a; do
  [[ -e "$a" ]] && ln -sf "$a" "$dir/lib64/$(basename "$a")"
done
# nvcc finds its libdevice and headers relative to itself; CMake reads the
# version from it.
"$dir/bin/nvcc" --version | tail -1
echo "$dir"
