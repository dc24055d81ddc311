#!/usr/bin/env bash
# The browser package's toolchain (sourced by build-pkg.sh and test-web.sh,
# so that the main job, scripts/serve.sh, builds on a fresh machine too):
# the wasm32 target and wasm-bindgen-cli at the exact version in Cargo.lock.
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || rustup target add wasm32-unknown-unknown
WBV=$(cargo metadata --format-version 1 --locked | python3 -c 'import sys,json;print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="wasm-bindgen"))')
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $WBV" ]; then
  echo "installing wasm-bindgen-cli $WBV (one time, ~6 min)"
  cargo install wasm-bindgen-cli --version "$WBV"
fi
