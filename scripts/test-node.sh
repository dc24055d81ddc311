#!/usr/bin/env bash
# The Node addon (node/): builds it and the reference server in one cargo
# graph, then runs node/test/*.test.mjs under Node's own test runner against
# the real server binary on SQLite, with SQLCipher files on disk.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidesync-target}"
source scripts/native-deps.sh
TIDESYNC_NODE_ALSO="-p tidesync-server" bash node/build.sh
export TIDESYNC_SERVER_BIN="$CARGO_TARGET_DIR/debug/tidesync-server"
node --test node/test/*.test.mjs
