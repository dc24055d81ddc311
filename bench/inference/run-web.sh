#!/usr/bin/env bash
# tract vs onnxruntime-web in headless Chromium (web.mjs):
#   bash bench/inference/run-web.sh [samples] [loop] [repetitions]
# Builds the package (pkg/, with the tract .wasm) if missing, installs the
# npm packages (the root's playwright-core, this folder's onnxruntime-web)
# and Debian's chromium if missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
command -v chromium >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
[ -d "$root/node_modules/playwright-core" ] || (cd "$root" && npm ci --no-audit --no-fund)
[ -d "$here/node_modules/onnxruntime-web" ] || (cd "$here" && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund)
[ -f "$root/pkg/inference/tidesync_inference_bg.wasm" ] || bash "$root/scripts/build-pkg.sh"
node "$here/web.mjs" "$@"
