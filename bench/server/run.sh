#!/usr/bin/env bash
# Server benchmark, one command: ingest and pull on SQLite and PostgreSQL.
#   bash bench/server/run.sh
# Starts a throw-away PostgreSQL (durable settings: fsync and synchronous
# commit on) on loopback, like scripts/test-server.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidesync-target}"

cargo build --profile server -p tidesync-server --bench server
PG_FAST=0
# shellcheck source=../../server/scripts/pg-cluster.sh
. server/scripts/pg-cluster.sh
export TIDESYNC_BENCH_PG_URL="$PG_URL"
cargo bench --profile server -p tidesync-server --bench server
