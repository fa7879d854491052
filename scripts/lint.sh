#!/usr/bin/env bash
# The code's layout and its bug-finding checks:
#   1. clang-format (.clang-format) on every tracked C++ file: a file that is
#      not formatted fails, naming the file and line;
#   2. clang-tidy (.clang-tidy) on the libraries without libtorch (common/,
#      spec/, server/), from build/compile_commands.json (scripts/build.sh
#      writes it).
#   scripts/lint.sh [--format-only | --tidy-only | --fix]
# --fix reformats in place instead of failing (clang-tidy is not run).
set -euo pipefail
cd "$(dirname "$0")/.."
format=clang-format
command -v "$format" >/dev/null || { echo "lint: clang-format is not installed (apt-get install clang-format)"; exit 1; }
mapfile -t files < <(git ls-files '*.cpp' '*.hpp' '*.h')
if [[ "${1:-}" == --fix ]]; then
  "$format" -i "${files[@]}"
  exit 0
fi
if [[ "${1:-}" != --tidy-only ]]; then
  "$format" --dry-run --Werror "${files[@]}"
  echo "lint: ${#files[@]} files formatted as .clang-format says"
fi
[[ "${1:-}" == --format-only ]] && exit 0
command -v clang-tidy >/dev/null || { echo "lint: clang-tidy is not installed (apt-get install clang-tidy)"; exit 1; }
[[ -f build/compile_commands.json ]] || { echo "lint: build/compile_commands.json is missing: run scripts/build.sh"; exit 1; }
mapfile -t tidy < <(git ls-files 'common/*.cpp' 'spec/*.cpp' 'server/*.cpp')
printf '%s\n' "${tidy[@]}" | xargs -P "$(nproc)" -n 4 clang-tidy -p build --quiet 2>/dev/null
echo "lint: clang-tidy found nothing in ${#tidy[@]} files"
