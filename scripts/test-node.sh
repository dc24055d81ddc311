#!/usr/bin/env bash
# The Node addon (node/): builds it and the reference server in one cargo
# graph, then runs node/test/*.test.mjs under Node's own test runner against
# the real server binary on SQLite, with SQLCipher files on disk. The tests
# run in a private D-Bus session with gnome-keyring's Secret Service (the OS
# keychain of `key: { keychain }`), in a throw-away HOME.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidesync-target}"
source scripts/native-deps.sh
if ! command -v dbus-run-session >/dev/null || ! command -v gnome-keyring-daemon >/dev/null; then
  echo "installing gnome-keyring and dbus (the keychain tests)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnome-keyring dbus-x11 >/dev/null
fi
TIDESYNC_NODE_ALSO="-p tidesync-server" TIDESYNC_NODE_FEATURES=inference bash node/build.sh
# The workspace's clippy run (scripts/test.sh) lints the addon without its
# `inference` feature; this one lints it with.
cargo clippy -q -p tidesync-node --features inference -- -D warnings
export TIDESYNC_SERVER_BIN="$CARGO_TARGET_DIR/debug/tidesync-server"
keyhome=$(mktemp -d)
trap 'rm -rf "$keyhome"' EXIT
mkdir -p "$keyhome/data" "$keyhome/run" && chmod 700 "$keyhome/run"
HOME="$keyhome" XDG_DATA_HOME="$keyhome/data" XDG_RUNTIME_DIR="$keyhome/run" \
  dbus-run-session -- sh -c 'printf pw | gnome-keyring-daemon --unlock --components=secrets >/dev/null && exec node --test node/test/*.test.mjs'
