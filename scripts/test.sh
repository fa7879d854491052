#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite.
# Reference-vector tests run when QJOBS_REFERENCE_DIR names ../shared/reference
# (or a copy of it); without it they are reported as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
if [[ -n "${QJOBS_REFERENCE_DIR:-}" ]]; then
  echo "test: reference vectors from $QJOBS_REFERENCE_DIR"
else
  echo "test: QJOBS_REFERENCE_DIR not set; reference tests will be skipped"
fi
(cd build && ctest --output-on-failure -j 2 "$@")
# The fuzz targets of the spec parser and the HTTP request path, bounded in
# time (QJOBS_FUZZ_SECONDS, default 60 each, both at once; 0 skips).
if [[ "${QJOBS_FUZZ_SECONDS:-60}" != 0 ]]; then
  scripts/fuzz.sh "${QJOBS_FUZZ_SECONDS:-60}"
fi
