#!/usr/bin/env bash
# Runs every test of tidesync. Installs what is missing first, so it works on a
# fresh Debian machine with Rust (rustup) and Node 20.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidesync-target}"
export CARGO_TERM_COLOR=never

step() { printf '\n== %s\n' "$*"; }

step "format and lints"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings

step "core, server logic and simulation (cargo test)"
cargo test --workspace -q 2>&1 | tee "$CARGO_TARGET_DIR/test-output.txt"
