#!/usr/bin/env bash
# End-to-end test of the web dashboard in headless Chromium.
#
#   tests/browser/run.sh BUILD_BIN_DIR OUT_DIR
#
# Starts qjobs-server (with a bearer token and two CPU slots) from the
# repository root on a free port, runs dashboard_test.py against it with the
# project's virtual environment (pip playwright, driving Debian's Chromium;
# QJOBS_VENV overrides .venv) and leaves the screenshots and the server's log
# in OUT_DIR.
# Exit status: the test's, or 77 (skipped) when Chromium or the virtual
# environment's playwright is missing (1 instead when CI=true).
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 BUILD_BIN_DIR OUT_DIR" >&2
  exit 2
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="$(cd "$1" && pwd)"
mkdir -p "$2"
OUT="$(cd "$2" && pwd)"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

if [[ ! -x "$CHROMIUM" ]]; then
  echo "SKIPPED: $CHROMIUM is not installed (apt-get install chromium; scripts/install-deps.sh does)"
  [[ "${CI:-}" == true ]] && exit 1
  exit 77
fi
for b in qjobs-server qjobs-worker; do
  if [[ ! -x "$BIN/$b" ]]; then
    echo "error: $BIN/$b is missing; build the project first" >&2
    exit 1
  fi
done
PYTHON="${QJOBS_VENV:-$ROOT/.venv}/bin/python"
if ! "$PYTHON" -c 'import playwright.sync_api' 2>/dev/null; then
  echo "error: $PYTHON cannot import playwright (scripts/install-deps.sh installs it)" >&2
  [[ "${CI:-}" == true ]] && exit 1
  exit 77
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/qjobs-browser.XXXXXX")"
SERVER_PID=""
cleanup() {
  local rc=$?
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ -f "$TMP/server.log" ]]; then
    cp "$TMP/server.log" "$OUT/server.log" 2>/dev/null || true
    if [[ $rc -ne 0 ]]; then
      echo "---- last lines of the server log ($OUT/server.log) ----" >&2
      tail -n 40 "$TMP/server.log" >&2 || true
    fi
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

TOKEN="s3cret-browser-token"
printf '%s\n' "$TOKEN" > "$TMP/tokens"
chmod 600 "$TMP/tokens"
mkdir -p "$TMP/user_data"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

healthy() {
  curl -fsS -o /dev/null --max-time 2 "$1/healthz" 2>/dev/null
}

# The port is free when picked; should another process take it before the
# server binds, the server exits and the next try picks another one.
URL=""
for attempt in 1 2 3; do
  PORT="$(free_port)"
  cd "$ROOT"
  "$BIN/qjobs-server" --listen "127.0.0.1:$PORT" --user-data "$TMP/user_data" --slots 2 \
    --tokens-file "$TMP/tokens" --worker "$BIN/qjobs-worker" >>"$TMP/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 150); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    if healthy "http://127.0.0.1:$PORT"; then URL="http://127.0.0.1:$PORT"; break; fi
    sleep 0.2
  done
  [[ -n "$URL" ]] && break
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "error: qjobs-server did not answer /healthz within 30 s" >&2
    exit 1
  fi
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  echo "qjobs-server exited (try $attempt); retrying on another port" >&2
done
if [[ -z "$URL" ]]; then
  echo "error: qjobs-server did not start" >&2
  exit 1
fi
echo "qjobs-server at $URL (pid $SERVER_PID), user data $TMP/user_data"

cd "$ROOT"
QJOBS_URL="$URL" QJOBS_TOKEN="$TOKEN" SCREENSHOT_DIR="$OUT" CHROMIUM="$CHROMIUM" \
  "$PYTHON" "$HERE/dashboard_test.py"
