#!/usr/bin/env bash
# Installs what qjobs builds and tests with: Debian 12's packages, and the
# Python packages of scripts/requirements.txt (pip's torch among them: the
# worker's libtorch) in a virtual environment, .venv beside this folder or
# QJOBS_VENV. Idempotent: a machine that has everything pays for a dpkg query
# and a look at the environment's stamp. The CUDA toolkit a CUDA libtorch's
# CMake config needs is the system's (/usr/local/cuda) where there is one,
# else pip's nvcc from requirements.txt (scripts/build.sh decides).
# --peers also makes .venv-peers: the tools bench/peer_bench.sh measures
# qjobs against (llm-compressor, AutoRound), pinned in
# bench/peer-requirements.txt, layered over .venv (same torch, their own
# transformers and compressed-tensors).
# Usage: scripts/install-deps.sh [--runtime | --peers]
set -euo pipefail

# What building and running qjobs-server, qjobs-worker and jobctl needs.
packages=(
  build-essential cmake ccache pkg-config
  libopenblas0-pthread
  libyaml-cpp-dev libboost1.81-dev libboost-url1.81-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  libsqlite3-dev libssl-dev libcli11-dev libgtest-dev
  libpcre2-dev libicu-dev libcurl4-openssl-dev
  curl python3 python3-venv util-linux
  libonnx-dev libprotobuf-dev
)
# What only the tests and benchmarks use: load generator, linters, the
# sanitizer runtime, KJV text, a local Slurm with its accounting database,
# the browser of the dashboard test, Node for the dashboard's module tests.
test_packages=(
  wrk time
  clang clang-format clang-tidy libclang-rt-14-dev
  bible-kjv bible-kjv-text
  slurm-wlm slurm-client slurmdbd munge mariadb-server mariadb-client
  chromium nodejs
)
# --runtime: only the three programs' needs (scripts/demo.sh), and of the
# Python packages only torch (the worker's libtorch) and pip's nvcc, at the
# versions requirements.txt pins.
runtime=0 peers=0
[[ "${1:-}" == "--runtime" ]] && runtime=1
[[ "${1:-}" == "--peers" ]] && peers=1
((runtime)) || packages+=("${test_packages[@]}")

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} Debian packages present"
else
  echo "install-deps: installing ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# pip unpacks torch's CUDA wheels (about 5.5 GiB installed, more while it
# unpacks): say so plainly when the disk cannot hold them, rather than
# leaving pip's "No space left on device" half way through.
need_space() {  # need_space FOLDER GIB WHAT
  local dir="$1"
  while [[ ! -d "$dir" ]]; do dir="$(dirname "$dir")"; done
  local free_kib
  free_kib="$(df -Pk "$dir" | awk 'NR == 2 { print $4 }')"
  if ((free_kib < $2 * 1024 * 1024)); then
    echo "install-deps: $3 needs about $2 GiB free on the disk of $1; it has $((free_kib / 1024)) MiB" >&2
    exit 1
  fi
}

# The virtual environment: made once, refilled when requirements.txt changes
# (its sha256 is the stamp), the versions installed recorded in versions.txt.
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${QJOBS_VENV:-$root/.venv}"
req="$root/scripts/requirements.txt"
want="$(sha256sum "$req" | cut -d' ' -f1)"
have="$(cat "$venv/.qjobs-requirements" 2>/dev/null || true)"
if [[ -x "$venv/bin/python" && ("$have" == "$want" || ($runtime == 1 && "$have" == "runtime $want")) ]]; then
  echo "install-deps: $venv matches scripts/requirements.txt"
elif ((runtime)); then
  echo "install-deps: installing torch and nvcc from scripts/requirements.txt into $venv"
  need_space "$venv" 8 "torch with its CUDA libraries"
  [[ -x "$venv/bin/python" ]] || /usr/bin/python3 -m venv "$venv" || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input -c "$req" \
    torch nvidia-cuda-nvcc nvidia-cuda-cccl
  echo "runtime $want" > "$venv/.qjobs-requirements"
else
  echo "install-deps: installing scripts/requirements.txt into $venv"
  need_space "$venv" 9 "scripts/requirements.txt"
  [[ -x "$venv/bin/python" ]] || /usr/bin/python3 -m venv "$venv" || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input -r "$req"
  "$venv/bin/python" -m pip freeze --disable-pip-version-check > "$venv/versions.txt"
  echo "$want" > "$venv/.qjobs-requirements"
fi
"$venv/bin/python" -c 'import torch; print("install-deps: torch", torch.__version__, "CUDA", torch.version.cuda)'

# The peers' layer: a venv whose site-packages names .venv's in a .pth file,
# so that .venv's packages are found after the layer's own.
if ((peers)); then
  pvenv="${QJOBS_PEER_VENV:-$root/.venv-peers}"
  preq="$root/bench/peer-requirements.txt"
  pwant="$(sha256sum "$preq" "$req" | sha256sum | cut -d' ' -f1)"
  if [[ -x "$pvenv/bin/python" && "$(cat "$pvenv/.qjobs-requirements" 2>/dev/null || true)" == "$pwant" ]]; then
    echo "install-deps: $pvenv matches bench/peer-requirements.txt"
  else
    echo "install-deps: installing bench/peer-requirements.txt into $pvenv"
    need_space "$pvenv" 2 "bench/peer-requirements.txt"
    [[ -x "$pvenv/bin/python" ]] || /usr/bin/python3 -m venv "$pvenv" || python3 -m venv "$pvenv"
    base="$("$venv/bin/python" -c 'import site; print(site.getsitepackages()[0])')"
    layer="$("$pvenv/bin/python" -c 'import site; print(site.getsitepackages()[0])')"
    echo "$base" > "$layer/qjobs-venv.pth"
    "$pvenv/bin/python" -m pip install -q --disable-pip-version-check --no-input -r "$preq" 2>&1 |
      grep -v -e "outside environment" -e "No files were found to uninstall" || true
    "$pvenv/bin/python" -c 'import llmcompressor, auto_round' || exit 1
    echo "$pwant" > "$pvenv/.qjobs-requirements"
  fi
fi
