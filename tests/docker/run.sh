#!/usr/bin/env bash
# ctest Docker.FilesLintAndCompose: tests/docker/check.mjs with its npm
# packages (installed from package-lock.json when missing). No Docker
# engine is used: the images are linted and cross-checked, not built.
set -euo pipefail
cd "$(dirname "$0")"
if [[ ! -x node_modules/.bin/dockerfile-utils || ! -d node_modules/yaml ]]; then
  if ! command -v npm >/dev/null || ! npm ci --no-audit --no-fund >/dev/null 2>&1; then
    echo "docker check: npm packages unavailable (npm ci failed)"
    [[ "${CI:-}" == true ]] && exit 1
    exit 77
  fi
fi
exec node check.mjs
