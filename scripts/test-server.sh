#!/usr/bin/env bash
# The server's PostgreSQL test suite (tests/postgres.rs): installs Debian's
# PostgreSQL if missing, starts a throw-away cluster on loopback (a free
# port, a temp dir, no fsync), runs the suite against it and stops it again.
# The SQLite and HTTP suites run in the plain `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidesync-target}"

pg_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
  echo "installing PostgreSQL (Debian package)"
  if [ "$(id -u)" -ne 0 ]; then
    echo "PostgreSQL is missing and this is not root: install the postgresql package" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
BIN="$(pg_bin)"

DIR="$(mktemp -d /tmp/tidesync-pg.XXXXXX)"
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    chown -R postgres:postgres "$DIR"
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}
cleanup() {
  as_pg "$BIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT

as_pg "$BIN/initdb" -D "$DIR/data" -A trust -U postgres >/dev/null

PORT=""
for p in $(seq 55432 55499); do
  if as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w -t 30 \
      -o "-p $p -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
      start >/dev/null 2>&1; then
    PORT="$p"
    break
  fi
done
if [ -z "$PORT" ]; then
  echo "could not start PostgreSQL on any port 55432-55499" >&2
  cat "$DIR/log" >&2 || true
  exit 1
fi
echo "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT"

export TIDESYNC_TEST_PG_URL="postgres://postgres@127.0.0.1:$PORT/postgres"
cargo test -p tidesync-server --features pg-tests --test postgres -q
