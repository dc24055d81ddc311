#!/usr/bin/env bash
# The server's PostgreSQL test suite (server/tests/postgres.rs), then
# schemathesis on SQLite and PostgreSQL (scripts/schemathesis.sh): installs
# Debian's PostgreSQL if missing, starts a throw-away cluster on loopback (a
# free port, a temp dir, no fsync), runs the suite against it and stops it
# again. The memory, SQLite and HTTP suites run in the plain `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidesync-target}"

PG_FAST=1
# shellcheck source=../server/scripts/pg-cluster.sh
. server/scripts/pg-cluster.sh

export TIDESYNC_TEST_PG_URL="$PG_URL"
cargo test -p tidesync-server --features pg-tests --test postgres -q

# The deterministic simulation over HTTP on this PostgreSQL.
cargo test -q --test simulation_http simulation_over_http_on_postgres -- --nocapture

# schemathesis against docs/openapi.json and a live server, on SQLite and on
# this PostgreSQL: zero 5xx, about a minute each (scripts/schemathesis.sh).
cargo build -q -p tidesync-server --bin tidesync-server
export TIDESYNC_SERVER_BIN="$CARGO_TARGET_DIR/debug/tidesync-server"
bash scripts/schemathesis.sh
TIDESYNC_ST_DATABASE="$PG_URL" bash scripts/schemathesis.sh
