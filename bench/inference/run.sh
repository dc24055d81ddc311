#!/usr/bin/env bash
# tract vs onnxruntime-node on models/anomaly.onnx, batch 1 and batch 256:
# medians over many runs, ratios tract/ort (below 1: tract is faster).
#   bash bench/inference/run.sh [runs] [repetitions]
# tract is built with the `bench` profile (opt-level 3; `release` is tuned
# for the size of the browser's .wasm). onnxruntime-node installs with its
# CUDA download skipped (ONNXRUNTIME_NODE_INSTALL=skip): the CPU binaries
# are in the npm tarball.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
runs="${1:-20000}"
reps="${2:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
(cd "$root" && cargo build -q -p tidesync-inference --profile bench --example bench)
[ -d "$here/node_modules/onnxruntime-node" ] || (cd "$here" && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund)
tract_bin="$CARGO_TARGET_DIR/release/examples/bench"  # the bench profile builds into release/
out="$(mktemp)"
for i in $(seq "$reps"); do
  echo "tract $("$tract_bin" "$runs" | tee -a "$out.tract")"
  echo "ort   $(node "$here/ort.mjs" "$runs" | tee -a "$out.ort")"
done
python3 - "$out.tract" "$out.ort" <<'PY'
import json, statistics, sys
t = [json.loads(l) for l in open(sys.argv[1])]
o = [json.loads(l) for l in open(sys.argv[2])]
for b in ("batch1_us", "batch256_us"):
    tm = [x[b]["median"] for x in t]
    om = [x[b]["median"] for x in o]
    ratios = [a / c for a, c in zip(tm, om)]
    print(f"{b[:-3]:>9}: tract median {statistics.median(tm):.2f} us ({min(tm):.2f}-{max(tm):.2f}), "
          f"ort {statistics.median(om):.2f} us ({min(om):.2f}-{max(om):.2f}), "
          f"tract/ort {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})")
PY
rm -f "$out" "$out.tract" "$out.ort"
