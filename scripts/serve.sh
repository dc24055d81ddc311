#!/usr/bin/env bash
# Main job: the reference sync server on embedded SQLite, with demo data.
#
#   bash scripts/serve.sh            # http://127.0.0.1:8080
#
# Builds tidesync-server (profile `server`), creates and migrates
# ./data/tidesync.db, loads a demo hotel branch (tenant `demo`, branch
# `hotel-1`: 30 rooms with housekeeping statuses and a read-only catalog),
# issues fresh API keys for two terminals (the previous demo keys are
# revoked), prints the URL and the keys, then serves until ctrl-c.
# Every server option can be set by environment (see `--help`), e.g.
# TIDESYNC_LISTEN=0.0.0.0:9000 bash scripts/serve.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidesync-target}"

cargo build --profile server -p tidesync-server --bin tidesync-server
BIN="$CARGO_TARGET_DIR/server/tidesync-server"

DATA="${TIDESYNC_DATA_DIR:-./data}"
mkdir -p "$DATA"
[ -e "$DATA/.gitignore" ] || echo '*' > "$DATA/.gitignore"
export TIDESYNC_DATABASE="${TIDESYNC_DATABASE:-$DATA/tidesync.db}"
export TIDESYNC_LISTEN="${TIDESYNC_LISTEN:-127.0.0.1:8080}"
export TIDESYNC_READ_ONLY="${TIDESYNC_READ_ONLY:-catalog}"
export TIDESYNC_APPEND_ONLY="${TIDESYNC_APPEND_ONLY:-sales}"
export TIDESYNC_RULES="${TIDESYNC_RULES:-server/rules/hotel.json}"

"$BIN" migrate
"$BIN" seed-demo --tenant demo --branch hotel-1

key_for() {
  "$BIN" revoke-key --tenant demo --branch hotel-1 --terminal "$1" >/dev/null
  "$BIN" issue-key --tenant demo --branch hotel-1 --terminal "$1" --quiet
}
FRONT="$(key_for front-desk)"
HOUSE="$(key_for housekeeping-tablet-1)"

URL="http://$TIDESYNC_LISTEN"
cat <<INFO

tidesync-server on $URL  (database: $TIDESYNC_DATABASE)
  tenant demo, branch hotel-1
  terminal front-desk:             $FRONT
  terminal housekeeping-tablet-1:  $HOUSE
  (keys are shown once; only their hashes are stored)

try:
  curl -s $URL/health
  curl -s -H "Authorization: Bearer $FRONT" "$URL/v1/snapshot?limit=5"
  curl -s -H "Authorization: Bearer $FRONT" "$URL/v1/changes?since=0&limit=5"
  curl -s $URL/metrics

INFO
exec "$BIN" serve
