#!/usr/bin/env bash
# Runs every test of tidesync. Installs what is missing first, so it works on a
# fresh Debian machine with Rust (rustup) and Node 20, as root.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidesync-target}"
export CARGO_TERM_COLOR=never

step() { printf '\n== %s\n' "$*"; }

step "format and lints (native)"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
source scripts/native-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings

step "core, server, HTTP on SQLite (cargo test; PostgreSQL runs in scripts/test-server.sh)"
cargo test --workspace -q -- --skip many_seeds_keep_every_invariant --skip simulation_over_http_on_postgres

step "checksum vectors recomputed in plain Node from PROTOCOL.md's rule (docs/checksum-vectors.json)"
node --test docs/

step "anomaly model (models/): retrained to the committed bytes; onnxruntime against vectors.json"
bash models/check.sh

step "deterministic simulation (TIDESYNC_SIM_SEEDS=${TIDESYNC_SIM_SEEDS:-10000} seeds)"
cargo test -q --test simulation many_seeds_keep_every_invariant -- --nocapture

# Each part with its own set-up lives in its own script.
for part in scripts/test-*.sh; do
  [ -e "$part" ] || continue
  step "$part"
  bash "$part"
done
