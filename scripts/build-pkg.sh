#!/usr/bin/env bash
# Builds the npm package into pkg/ (generated; not committed): the core for
# wasm32 in release (opt-level z, LTO), wasm-bindgen --target web, then
# wasm-opt -Oz from npm's binaryen (Debian's binaryen 108 breaks the module).
# package.json from pkg-template/ with the core crate's version (npm pack in
# pkg/ makes the installable tarball). Prints the .wasm size raw and gzipped.
# Then the tract model's own .wasm (scripts/build-inference-wasm.sh).
# No download at build time.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/native-deps.sh
source scripts/wasm-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidesync-target}"
# The .wasm must be this checkout's. A cdylib's file name has no hash, so
# checkouts sharing one CARGO_TARGET_DIR (git worktrees) write the same
# file, and cargo takes another checkout's newer output as fresh. So the
# output is removed first and the crate always built again (~30 s; its
# dependencies stay cached), and the declarations the build embeds
# (src/web/tidesync.d.ts; wasm-bindgen re-indents them) must be this
# checkout's: if not, a build without the lock wrote the file meanwhile.
WASM="$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/tidesync.wasm"
rm -f "$WASM" "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/deps/tidesync.wasm"
cargo rustc -q --release --target wasm32-unknown-unknown -p tidesync --lib --crate-type cdylib
rm -rf pkg && mkdir -p pkg
wasm-bindgen --target web --out-dir pkg "$WASM"
python3 - src/web/tidesync.d.ts pkg/tidesync.d.ts <<'PY' || { echo "build-pkg: $WASM is not this checkout's (a build without the lock?)" >&2; exit 1; }
import sys
flat = lambda f: "\n".join(l.strip() for l in open(f) if l.strip())
sys.exit(flat(sys.argv[1]) not in flat(sys.argv[2]))
PY
if [ -x node_modules/.bin/wasm-opt ]; then
  # TIDESYNC_WASM_NAMES=1 keeps the function names (for a CPU profile,
  # bench/web/profile.mjs); the package is built without them.
  STRIP="--strip-debug"
  [ "${TIDESYNC_WASM_NAMES:-}" = 1 ] && STRIP="--debuginfo"
  node_modules/.bin/wasm-opt -Oz $STRIP --strip-producers pkg/tidesync_bg.wasm -o pkg/tidesync_bg.opt.wasm
  mv pkg/tidesync_bg.opt.wasm pkg/tidesync_bg.wasm
fi
# The package's files beside the wasm-bindgen output: package.json (the
# version is the core crate's, from Cargo.toml), README.md, and the type of
# the .wasm as a URL import (wasm-url.d.ts), the React hooks and the Vue
# composables (react.js, vue.js and their .d.ts). wasm-bindgen's
# tidesync_bg.wasm.d.ts (the raw exports) is not shipped: nothing imports it.
VERSION=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import sys,json;print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="tidesync"))')
cp pkg-template/README.md pkg-template/wasm-url.d.ts pkg-template/react.js pkg-template/react.d.ts \
  pkg-template/vue.js pkg-template/vue.d.ts pkg-template/inference.js pkg-template/inference.d.ts LICENSE pkg/
python3 - "$VERSION" <<'PY'
import json, sys
p = json.load(open("pkg-template/package.json"))
p["version"] = sys.argv[1]
open("pkg/package.json", "w").write(json.dumps(p, indent=2) + "\n")
PY
RAW=$(stat -c %s pkg/tidesync_bg.wasm)
GZ=$(gzip -9 -c pkg/tidesync_bg.wasm | wc -c)
echo "pkg/tidesync_bg.wasm: $RAW bytes raw, $GZ bytes gzip -9"
# The tract model's own .wasm (pkg/inference/), for `tidesync/inference`.
bash scripts/build-inference-wasm.sh
