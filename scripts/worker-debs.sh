#!/usr/bin/env bash
# Downloads (does not install) the Debian 12 packages qjobs-worker builds
# against, besides libtorch: what bench/gpu_check.sh --debs DIR unpacks with
# dpkg -x on a GPU machine that cannot reach an archive. About 25 MB.
# The machine needs the C and C++ runtime, libssl3 and libcurl4 itself.
#   scripts/worker-debs.sh DIR
set -euo pipefail
dir="${1:?usage: scripts/worker-debs.sh DIR}"
mkdir -p "$dir"
cd "$dir"
apt-get download \
  libyaml-cpp-dev libyaml-cpp0.7 libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 nlohmann-json3-dev \
  libcli11-dev libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 libicu-dev libicu72 \
  libcurl4-openssl-dev libssl-dev \
  libonnx-dev libonnx1 libprotobuf-dev libprotobuf32
ls -1 "$dir"/*.deb | wc -l
