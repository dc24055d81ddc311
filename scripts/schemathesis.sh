#!/usr/bin/env bash
# schemathesis (PyPI) against docs/openapi.json and a live reference server:
# every generated request (valid and invalid bodies, queries and headers,
# other methods) must get an answer that is not a 5xx. The live channel
# (/v1/events) is left out: its answer is a stream that stays open. Time-bounded: each
# run is capped by schemathesis' --max-time and by `timeout`.
#
#   bash scripts/schemathesis.sh            # SQLite (a temp file)
#   TIDESYNC_ST_DATABASE=postgres://… bash scripts/schemathesis.sh
#
# TIDESYNC_SERVER_BIN: the server binary (default: the debug build, built
# here); TIDESYNC_ST_MAX_TIME: seconds per run (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidesync-target}"

venv="${TIDESYNC_ST_VENV:-$HOME/.cache/tidesync-schemathesis}"
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q '4\.32\.5'; then
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    echo "installing python3-venv (for schemathesis)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'schemathesis==4.32.5'
fi

bin="${TIDESYNC_SERVER_BIN:-}"
if [ -z "$bin" ]; then
  cargo build -q -p tidesync-server --bin tidesync-server
  bin="$CARGO_TARGET_DIR/debug/tidesync-server"
fi

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

db="${TIDESYNC_ST_DATABASE:-$work/server.db}"
# A tenant of its own, so that a shared PostgreSQL database is not mixed up.
tenant="st-$$-$RANDOM"
key=$("$bin" --database "$db" issue-key --tenant "$tenant" --branch b1 --terminal t1 --quiet)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# No rate limits: schemathesis sends hundreds of requests a second and
# junk keys on purpose; 429 is not what is under test here.
"$bin" --database "$db" --listen "127.0.0.1:$port" --rate-limit 0 --auth-failure-rate 0 \
  --log-format text 2>"$work/server.log" &
server_pid=$!
python3 - "$port" <<'PY'
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/health"
for _ in range(400):
    try:
        urllib.request.urlopen(url, timeout=1)
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(f"the server did not answer {url}")
PY

max_time="${TIDESYNC_ST_MAX_TIME:-60}"
# One worker: with two, Debian's Python 3.11 now and then fails inside
# hypothesis ("AST constructor recursion depth mismatch", a thread-safety bug
# of CPython's ast module), an error of the tool, not of the server. Such a
# run (errors but no failed check in the JUnit report) is run once more.
run() {
  timeout $((max_time + 60)) "$venv/bin/schemathesis" run docs/openapi.json \
    --url "http://127.0.0.1:$port" \
    -H "Authorization: Bearer $key" \
    -H "x-tidesync-branch: b1" -H "x-tidesync-terminal: t1" \
    --checks not_a_server_error \
    --exclude-path /v1/events \
    --max-time "$max_time" \
    --max-examples 200 \
    --seed 17 \
    --workers 1 \
    --request-timeout 10 \
    --no-color \
    --report junit --report-junit-path "$work/junit.xml"
}
start=$(date +%s)
status=0
run || status=$?
if [ "$status" -ne 0 ] && [ -f "$work/junit.xml" ] && ! grep -q "<failure" "$work/junit.xml" \
  && grep -q "<error" "$work/junit.xml"; then
  echo "schemathesis: errors of the tool itself and no failed check; running once more"
  status=0
  run || status=$?
fi
echo "schemathesis: $(( $(date +%s) - start )) s, exit $status"
if [ "$status" -ne 0 ]; then
  echo "--- server log (last 50 lines)"
  tail -50 "$work/server.log"
fi
exit "$status"
