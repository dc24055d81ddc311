#!/usr/bin/env bash
# Browser part of the test suite (issue 4): the Wasm core in headless
# Chromium. Installs what is missing on a fresh Debian machine (as root):
# the wasm32 target, the pinned wasm-bindgen-cli, chromium + chromium-driver,
# the npm packages (package-lock.json). Then:
#   1. clippy for wasm32
#   2. wasm-bindgen-test suite in headless Chromium (store conformance plain
#      and encrypted, raw scan for plaintext, tamper/swap/wrong key, schema
#      upgrade, gone database)
#   3. the npm package in pkg/ (wasm-bindgen --target web, wasm-opt from npm
#      binaryen), its size, and a check that its public types have no `any`
#   4. the browser package's declared class (hand-written in
#      src/web/tidesync.d.ts: its methods are generic) against the methods
#      the Wasm module exports; the Node package's declarations
#      (node/index.d.ts) against the browser package's class, and tsc of a
#      Node consumer;
#      tsc --noEmit of a TypeScript consumer; the housekeeping app (www/app/)
#      type-checked and built with esbuild
#   5. end-to-end tests with playwright-core against the reference server
#   6. the installable package: npm pack of pkg/, installed from the tarball
#      in a scratch project, type-checked, bundled with esbuild and run in
#      headless Chromium, with a React and a Vue app on its framework
#      bindings (scripts/test-package.mjs)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidesync-target}"
export CARGO_TERM_COLOR=never
step() { printf '\n== web: %s\n' "$*"; }

step "toolchain"
source scripts/native-deps.sh
source scripts/wasm-deps.sh
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
if [ ! -d node_modules/playwright-core ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

step "clippy (wasm32)"
cargo clippy --target wasm32-unknown-unknown -p tidesync -q -- -D warnings

step "wasm-bindgen-test in headless Chromium"
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
CHROMEDRIVER=/usr/bin/chromedriver \
WASM_BINDGEN_TEST_TIMEOUT=120 \
  cargo test --target wasm32-unknown-unknown -p tidesync --lib

step "npm package (pkg/)"
bash scripts/build-pkg.sh

step "public TypeScript types have no any"
# The class and domain types (everything before wasm-bindgen's own init
# declarations) must not fall back to `any`.
if sed '/^export type InitInput/,$d' pkg/tidesync.d.ts | grep -nE '\bany\b' | grep -v '^\s*[0-9]*:\s*\*'; then
  echo "pkg/tidesync.d.ts exposes any" >&2; exit 1
fi

step "declared TideSync classes: the browser's against the Wasm exports, the Node one against it member for member; tsc of a Node consumer"
sed '/^\/\/ ---- The browser class/,$d' src/web/tidesync.d.ts > node/types.d.ts
node node/test/dts-parity.mjs pkg/tidesync.d.ts node/index.d.ts
npx tsc -p node/tsconfig.json

step "TypeScript consumer (tsc --noEmit)"
npx tsc --noEmit -p www/tsconfig.json

step "housekeeping app (tsc --noEmit, esbuild into www/app/dist/)"
npx tsc --noEmit -p www/app/tsconfig.json
node www/app/build.mjs

step "end-to-end (playwright-core, headless Chromium)"
if [ -f server/src/main.rs ]; then
  cargo build -q -p tidesync-server --bin tidesync-server
  export TIDESYNC_SERVER_BIN="$CARGO_TARGET_DIR/debug/tidesync-server"
else
  echo "WARNING: no reference server binary in this checkout: the e2e runs against a Node MOCK of the protocol" >&2
  export TIDESYNC_SERVER_BIN=/nonexistent
fi
node --test www/e2e/

step "installable package (npm pack, install from the tarball, tsc, esbuild, Chromium)"
node scripts/test-package.mjs
