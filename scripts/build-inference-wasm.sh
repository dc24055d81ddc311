#!/usr/bin/env bash
# Builds the browser's tract model (issue 18) into pkg/inference/: the
# `inference` crate for wasm32 as its own cdylib (profile `inference-wasm`,
# Cargo.toml), wasm-bindgen --target web, then its names stripped by npm's
# binaryen (wasm-opt -O2 would take ~3 min for 25% less raw and 7% less
# gzip: TIDESYNC_INFERENCE_WASM_OPT=-O2 turns it on).
# The core's .wasm is untouched: the package's `tidesync/inference` module
# (pkg-template/inference.js) imports this one dynamically, in loadModel().
# Called by scripts/build-pkg.sh after the core. Prints the size.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/native-deps.sh
source scripts/wasm-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidesync-target}"
# As in build-pkg.sh: a cdylib's name has no hash, so the output is removed
# first to be sure it is this checkout's.
WASM="$CARGO_TARGET_DIR/wasm32-unknown-unknown/inference-wasm/tidesync_inference.wasm"
rm -f "$WASM"
cargo rustc -q --profile inference-wasm --target wasm32-unknown-unknown \
  -p tidesync-inference --lib --crate-type cdylib
rm -rf pkg/inference && mkdir -p pkg/inference
wasm-bindgen --target web --out-dir pkg/inference "$WASM"
rm -f pkg/inference/tidesync_inference_bg.wasm.d.ts
if [ -x node_modules/.bin/wasm-opt ]; then
  # shellcheck disable=SC2086
  node_modules/.bin/wasm-opt ${TIDESYNC_INFERENCE_WASM_OPT:-} --strip-debug --strip-producers \
    pkg/inference/tidesync_inference_bg.wasm -o pkg/inference/opt.wasm
  mv pkg/inference/opt.wasm pkg/inference/tidesync_inference_bg.wasm
fi
RAW=$(stat -c %s pkg/inference/tidesync_inference_bg.wasm)
GZ=$(gzip -9 -c pkg/inference/tidesync_inference_bg.wasm | wc -c)
echo "pkg/inference/tidesync_inference_bg.wasm: $RAW bytes raw, $GZ bytes gzip -9"
