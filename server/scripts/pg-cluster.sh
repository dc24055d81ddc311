# Sourced by scripts/test-server.sh and bench/server/run.sh: installs
# Debian's PostgreSQL if missing and starts a throw-away cluster on loopback
# (a free port in a temp dir), stopped and removed on exit. Sets PG_URL.
# PG_FAST=1 turns durability off (fsync, synchronous_commit) for tests.

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
PG_BIN="$(pg_bin)"

PG_DIR="$(mktemp -d /tmp/tidesync-pg.XXXXXX)"
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    chown -R postgres:postgres "$PG_DIR"
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}
pg_cleanup() {
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}
trap pg_cleanup EXIT

as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres >/dev/null

PG_OPTS="-c listen_addresses=127.0.0.1 -c max_connections=300"
if [ "${PG_FAST:-0}" = 1 ]; then
  PG_OPTS="$PG_OPTS -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
fi
PG_PORT=""
for p in $(seq 55432 55499); do
  if as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -t 30 \
      -o "-p $p -k $PG_DIR $PG_OPTS" start >/dev/null 2>&1; then
    PG_PORT="$p"
    break
  fi
done
if [ -z "$PG_PORT" ]; then
  echo "could not start PostgreSQL on any port 55432-55499" >&2
  cat "$PG_DIR/log" >&2 || true
  exit 1
fi
echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"
PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
