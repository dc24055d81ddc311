#!/usr/bin/env bash
# Main job: the housekeeping app (www/app/) and the reference sync server on
# embedded SQLite, with demo data, on one origin.
#
#   bash scripts/serve.sh            # http://127.0.0.1:8080
#
# Builds the npm package (pkg/), the app (www/app/dist/, esbuild) and
# tidesync-server (profile `server`); creates and migrates ./data/tidesync.db,
# loads a demo hotel branch (tenant `demo`, branch `hotel-1`: 30 rooms with
# housekeeping statuses and a read-only catalog), issues a fresh API key for
# the curl example (terminal demo-curl; its previous one is revoked), starts the sync
# server on an internal port and serves the app from www/server.mjs, which
# proxies the sync API (/v1/*, /health) to it from the same origin. Prints the
# URL and a pairing link per terminal: the link holds a one-time pairing code
# (valid 24 h), which the device redeems once for its own API key and keeps
# that key in its encrypted store; a used link is worth nothing. Devices
# paired earlier keep their keys across restarts. Serves until ctrl-c.
# Every server option can be set by environment (see `--help`), e.g.
# PORT=9000 TIDESYNC_LISTEN=127.0.0.1:9001 bash scripts/serve.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/native-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidesync-target}"

if [ ! -d node_modules/esbuild ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
# (A pkg/ of an older checkout may lack the tract .wasm the app loads.)
[ -f pkg/tidesync_bg.wasm ] && [ -f pkg/inference/tidesync_inference_bg.wasm ] && [ -z "${REBUILD_PKG:-}" ] || bash scripts/build-pkg.sh
node www/app/build.mjs
cargo build --profile server -p tidesync-server --bin tidesync-server
BIN="$CARGO_TARGET_DIR/server/tidesync-server"

DATA="${TIDESYNC_DATA_DIR:-./data}"
mkdir -p "$DATA"
[ -e "$DATA/.gitignore" ] || echo '*' > "$DATA/.gitignore"
export TIDESYNC_DATABASE="${TIDESYNC_DATABASE:-$DATA/tidesync.db}"
export TIDESYNC_LISTEN="${TIDESYNC_LISTEN:-127.0.0.1:8081}"
export TIDESYNC_READ_ONLY="${TIDESYNC_READ_ONLY:-catalog}"
export TIDESYNC_APPEND_ONLY="${TIDESYNC_APPEND_ONLY:-sales,telemetry}"
export TIDESYNC_RULES="${TIDESYNC_RULES:-server/rules/hotel.json}"
PORT="${PORT:-8080}"

"$BIN" migrate
"$BIN" seed-demo --tenant demo --branch hotel-1

key_for() {
  "$BIN" revoke-key --tenant demo --branch hotel-1 --terminal "$1" >/dev/null
  "$BIN" issue-key --tenant demo --branch hotel-1 --terminal "$1" --quiet
}
# A key for the curl example below, of its own terminal: revoking it at the
# next start leaves the keys that devices got by pairing alone.
FRONT="$(key_for demo-curl)"
code_for() { # a one-time pairing code: the link holds no key
  "$BIN" issue-pairing-code --tenant demo --branch hotel-1 --terminal "$1" --quiet
}

URL="http://127.0.0.1:$PORT"
link() { # terminal staff: a fresh pairing code for the terminal, redeemed once for its key
  node -e 'const [u,c,s]=process.argv.slice(1);const p=Buffer.from(JSON.stringify({code:c,staff:s})).toString("base64url");console.log(`${u}/www/app/#pair=${p}`)' "$URL" "$(code_for "$1")" "$2"
}

"$BIN" serve &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://$TIDESYNC_LISTEN/health" >/dev/null && break; sleep 0.1; done

cat <<INFO

housekeeping app on $URL/www/app/  (sync server $TIDESYNC_LISTEN, database $TIDESYNC_DATABASE)
  tenant demo, branch hotel-1. Open a pairing link to pair a browser as that terminal
  (use a separate browser profile or a private window per terminal):

  housekeeping-tablet-1:  $(link housekeeping-tablet-1 Amira)
  housekeeping-tablet-2:  $(link housekeeping-tablet-2 Bruno)
  front-desk:             $(link front-desk Front)

  (each link pairs one device, once, within 24 h; keys and codes are stored only as hashes.
   The sync API is on the same origin, e.g. with the demo-curl terminal's key:
   curl -s -H "Authorization: Bearer $FRONT" -H "x-tidesync-branch: hotel-1" "$URL/v1/snapshot?limit=5")

INFO
QUIET=1 PORT="$PORT" TIDESYNC_UPSTREAM="http://$TIDESYNC_LISTEN" node www/server.mjs
