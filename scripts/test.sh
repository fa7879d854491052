#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite.
# Reference-vector tests run when QJOBS_REFERENCE_DIR names ../shared/reference
# (or a copy of it); without it they are reported as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --peers
scripts/build.sh
# Every C++ file laid out as .clang-format says, and clang-tidy's
# bug-finding checks on the libraries without libtorch (.clang-tidy).
scripts/lint.sh
if [[ -n "${QJOBS_REFERENCE_DIR:-}" ]]; then
  echo "test: reference vectors from $QJOBS_REFERENCE_DIR"
else
  echo "test: QJOBS_REFERENCE_DIR not set; reference tests will be skipped"
fi
# A one-machine Slurm cluster for the Slurm backend's tests (tests/
# integration/slurm_test.cpp), when this runs as root; elsewhere those tests
# skip (QJOBS_SLURM=0 skips starting it; CI=true makes a missing one fail).
if [[ "${QJOBS_SLURM:-1}" != 0 && $(id -u) -eq 0 && -z "${SLURM_CONF:-}" ]]; then
  slurm_dir="${QJOBS_SLURM_DIR:-/tmp/qjobs-slurm-test}"
  if slurm_env=$(scripts/slurm-local.sh start --dir "$slurm_dir" --cpus 2 --gpus 2); then
    eval "$slurm_env"
  else
    echo "test: could not start a local Slurm; the Slurm tests will skip or fail"
  fi
  # And one of three hosts (a controller and two nodes, each a network
  # namespace) for the tests of shared job folders and a node lost mid-job.
  hosts_dir="${QJOBS_SLURM_HOSTS_DIR:-/tmp/qjobs-slurm-hosts}"
  if scripts/slurm-local.sh start --dir "$hosts_dir" --cpus 2 --hosts 2 >/dev/null; then
    export QJOBS_SLURM_HOSTS_CONF="$hosts_dir/slurm.conf" QJOBS_SLURM_HOSTS_DIR="$hosts_dir"
  else
    echo "test: could not start the three-host Slurm; its tests will skip or fail"
  fi
  trap 'scripts/slurm-local.sh stop --dir "$slurm_dir" || true; scripts/slurm-local.sh stop --dir "$hosts_dir" || true' EXIT
fi
(cd build && ctest --output-on-failure -j 2 "$@")
# The fuzz targets of the spec parser and the HTTP request path, bounded in
# time (QJOBS_FUZZ_SECONDS, default 60 each, both at once; 0 skips).
if [[ "${QJOBS_FUZZ_SECONDS:-60}" != 0 ]]; then
  scripts/fuzz.sh "${QJOBS_FUZZ_SECONDS:-60}"
fi
