#!/usr/bin/env bash
# The Node addon's benchmark (bench/node/bench.mjs): builds the addon and the
# reference server with the speed-optimised `server` profile, installs
# better-sqlite3 (the peer; 12.x, which runs on Node 20, compiled from source
# by node-gyp against the installed Node's headers), then runs one pass.
# Arguments go to bench.mjs (--entities N, --flush N, --writes N).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidesync-target}"
source scripts/native-deps.sh
if ! command -v make >/dev/null || ! command -v g++ >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq make g++ >/dev/null
fi
TIDESYNC_NODE_PROFILE=server TIDESYNC_NODE_ALSO="-p tidesync-server" bash node/build.sh
export TIDESYNC_SERVER_BIN="$CARGO_TARGET_DIR/server/tidesync-server"
if [ ! -d bench/node/node_modules/better-sqlite3/build ]; then
  (cd bench/node && npm ci --no-audit --no-fund --foreground-scripts)
fi
node bench/node/bench.mjs "$@"
