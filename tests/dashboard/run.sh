#!/usr/bin/env bash
# The dashboard's pure modules (server/dashboard/*.js without a DOM) under
# Node's built-in test runner: no packages, only Debian's nodejs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v node >/dev/null; then
  echo "dashboard tests: node is not installed (scripts/install-deps.sh installs Debian's nodejs)"
  [[ "${CI:-}" == "true" ]] && exit 1
  exit 77
fi
exec node --test "$here"/*.test.mjs
