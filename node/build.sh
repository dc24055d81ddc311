#!/usr/bin/env bash
# Builds the Node addon into node/: tidesync.node (the cdylib, loadable by
# Node and by Electron's main process unchanged: N-API) and types.d.ts (the
# browser package's types, shared). TIDESYNC_NODE_PROFILE: `dev` (default,
# the tests) or `server` (the workspace's speed-optimised release profile,
# used by the benchmark and for shipping). TIDESYNC_NODE_ALSO: more cargo
# packages to build in the same graph (scripts/test-node.sh adds the server,
# so both share one feature set and one SQLCipher build).
# TIDESYNC_NODE_FEATURES: the addon's cargo features, e.g. `inference` (the
# tract-onnx model, `loadModel()`; scripts/test-node.sh sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidesync-target}"
source scripts/native-deps.sh
profile="${TIDESYNC_NODE_PROFILE:-dev}"
# shellcheck disable=SC2086
features=()
[ -n "${TIDESYNC_NODE_FEATURES:-}" ] && features=(--features "tidesync-node/$TIDESYNC_NODE_FEATURES")
cargo build -q -p tidesync-node ${TIDESYNC_NODE_ALSO:-} "${features[@]}" --profile "$profile"
dir="$profile"; [ "$profile" = dev ] && dir=debug
cp "$CARGO_TARGET_DIR/$dir/libtidesync_node.so" node/tidesync.node
# The shared types: src/web/tidesync.d.ts without the browser class at its end.
sed '/^\/\/ ---- The browser class/,$d' src/web/tidesync.d.ts > node/types.d.ts
echo "node/tidesync.node ($profile, $(du -h node/tidesync.node | cut -f1))"
