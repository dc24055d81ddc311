#!/usr/bin/env bash
# Builds the npm package into pkg/ (generated; not committed): the core for
# wasm32 in release (opt-level z, LTO), wasm-bindgen --target web, then
# wasm-opt -Oz from npm's binaryen (Debian's binaryen 108 breaks the module).
# Prints the .wasm size raw and gzipped. No download at build time.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidesync-target}"
cargo build -q --release --target wasm32-unknown-unknown -p tidesync --lib
rm -rf pkg && mkdir -p pkg
wasm-bindgen --target web --out-dir pkg "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/tidesync.wasm"
if [ -x node_modules/.bin/wasm-opt ]; then
  node_modules/.bin/wasm-opt -Oz --strip-debug --strip-producers pkg/tidesync_bg.wasm -o pkg/tidesync_bg.opt.wasm
  mv pkg/tidesync_bg.opt.wasm pkg/tidesync_bg.wasm
fi
VERSION=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import sys,json;print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="tidesync"))')
cat > pkg/package.json <<JSON
{
  "name": "tidesync",
  "version": "$VERSION",
  "description": "Offline-first sync engine: encrypted IndexedDB store, sync with the tidesync server",
  "license": "Apache-2.0",
  "type": "module",
  "main": "tidesync.js",
  "types": "tidesync.d.ts",
  "files": ["tidesync_bg.wasm", "tidesync.js", "tidesync.d.ts", "tidesync_bg.wasm.d.ts", "snippets/"],
  "sideEffects": ["./snippets/*"]
}
JSON
RAW=$(stat -c %s pkg/tidesync_bg.wasm)
GZ=$(gzip -9 -c pkg/tidesync_bg.wasm | wc -c)
echo "pkg/tidesync_bg.wasm: $RAW bytes raw, $GZ bytes gzip -9"
