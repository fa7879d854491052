#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang (address and
# undefined-behaviour sanitizers) into build-fuzz/ and runs each for a bounded
# time from the committed seed corpus. Exits non-zero on any crash, leak or
# sanitizer report; the reproducer is left in build-fuzz/artifacts/.
#   scripts/fuzz.sh [SECONDS]   (default 60 per target; all run at once)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
CXX=clang++ cmake -S tests/fuzz -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j "$(nproc 2>/dev/null || echo 2)"
mkdir -p build-fuzz/artifacts
pids=()
targets=(spec http report)
for t in "${targets[@]}"; do
  # Work on a copy: what the fuzzer finds stays out of the committed corpus.
  rm -rf "build-fuzz/corpus-$t"
  cp -r "tests/fuzz/corpus/$t" "build-fuzz/corpus-$t"
  ASAN_OPTIONS=detect_leaks=1 ./build-fuzz/${t}_fuzz "build-fuzz/corpus-$t" \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="build-fuzz/artifacts/$t-" -print_final_stats=1 \
    >"build-fuzz/$t.log" 2>&1 &
  pids+=($!)
done
rc=0
for i in "${!pids[@]}"; do
  t=${targets[$i]}
  if wait "${pids[$i]}"; then
    echo "fuzz $t: $(grep -E 'stat::number_of_executed_units' "build-fuzz/$t.log" | awk '{print $2}') runs," \
         "$(grep -oE 'cov: [0-9]+' "build-fuzz/$t.log" | tail -1) edges, no crash"
  else
    rc=1
    echo "fuzz $t: FAILED (see build-fuzz/$t.log and build-fuzz/artifacts/)"
    tail -40 "build-fuzz/$t.log"
  fi
done
exit $rc
