#!/usr/bin/env bash
# Installs the Debian 12 packages qjobs builds and tests with. Idempotent: a
# machine that already has them only pays for a dpkg query.
set -euo pipefail

packages=(
  build-essential cmake ccache pkg-config
  libtorch-dev libopenblas0-pthread
  libyaml-cpp-dev libboost1.81-dev libboost-url1.81-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  libsqlite3-dev libssl-dev libcli11-dev libgtest-dev
  libpcre2-dev libicu-dev libcurl4-openssl-dev
  wrk curl python3
  clang libclang-rt-14-dev util-linux
  bible-kjv bible-kjv-text
  slurm-wlm slurm-client slurmdbd munge mariadb-server mariadb-client
  chromium nodejs
  libonnx-dev python3-onnx
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
