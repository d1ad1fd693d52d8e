#!/usr/bin/env bash
# A throw-away PostgreSQL from Debian's packages, for the tests, the benchmark
# and the demo: initdb + pg_ctl in a private directory, run by an unprivileged
# user (PostgreSQL refuses to run as root), listening on 127.0.0.1 only, no
# systemd. Everything it made goes away with `down`.
#
#   scripts/pg.sh up     start it (idempotent); prints the database URL
#   scripts/pg.sh env    print `export CARDPAY_PG_URL=…` (eval "$(scripts/pg.sh env)")
#   scripts/pg.sh url    print the URL alone
#   scripts/pg.sh down   stop it and delete its directory
#
# Env: CARDPAY_PG_DIR (default /tmp/cardpay-pg), CARDPAY_PG_PORT (default 55432),
#      CARDPAY_PG_USER (the OS user it runs as when started by root; default
#      cardpay-pg, created by this script as a system user without login),
#      CARDPAY_PG_TLS_DIR (a directory with server.pem and server.key, e.g. from
#      scripts/certs.sh: the server also accepts TLS with them; clients ask for it
#      with `?sslmode=require&sslrootcert=DIR/ca.pem` — docs/payment-server.md).
# The database `cardpay` belongs to the role `cardpay` (trust authentication on
# 127.0.0.1 and the private socket only: a test server, not a production one).
set -euo pipefail
DIR="${CARDPAY_PG_DIR:-/tmp/cardpay-pg}"
PORT="${CARDPAY_PG_PORT:-55432}"
OS_USER="${CARDPAY_PG_USER:-cardpay-pg}"
ROLE=cardpay
DB=cardpay
URL="postgres://$ROLE@127.0.0.1:$PORT/$DB"

log() { printf 'pg: %s\n' "$*" >&2; }

bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  log "PostgreSQL is not installed (Debian's postgresql package: scripts/setup.sh installs it)"
  return 1
}

# Run a command as the unprivileged user (root) or as ourselves (anyone else).
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$OS_USER" -- "$@"
  else
    "$@"
  fi
}

running() { [ -f "$DIR/data/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; }

up() {
  BIN="$(bindir)"
  if [ "$(id -u)" = 0 ] && ! id -u "$OS_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$OS_USER"
    log "created system user $OS_USER"
  fi
  if running; then
    echo "$URL"
    return 0
  fi
  mkdir -p "$DIR"
  [ "$(id -u)" = 0 ] && chown "$OS_USER" "$DIR"
  chmod 700 "$DIR"
  if [ ! -f "$DIR/data/PG_VERSION" ]; then
    as_pg "$BIN/initdb" -D "$DIR/data" -U "$ROLE" --auth=trust --no-locale -E UTF8 >"$DIR/initdb.log" 2>&1 \
      || { log "initdb failed:"; cat "$DIR/initdb.log" >&2; return 1; }
    # Durable like production (fsync, synchronous_commit on); enough connections
    # for tests running in parallel, each with its own pool.
    cat >>"$DIR/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR'
max_connections = 300
shared_buffers = 128MB
log_min_messages = warning
CONF
    if [ -n "${CARDPAY_PG_TLS_DIR:-}" ]; then
      install -m 600 "$CARDPAY_PG_TLS_DIR/server.pem" "$CARDPAY_PG_TLS_DIR/server.key" "$DIR/data/"
      [ "$(id -u)" = 0 ] && chown "$OS_USER" "$DIR/data/server.pem" "$DIR/data/server.key"
      cat >>"$DIR/data/postgresql.conf" <<CONF
ssl = on
ssl_cert_file = 'server.pem'
ssl_key_file = 'server.key'
CONF
    fi
  fi
  as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 30 start >/dev/null \
    || { log "pg_ctl start failed:"; tail -20 "$DIR/server.log" >&2; return 1; }
  if ! as_pg "$BIN/psql" -h "$DIR" -p "$PORT" -U "$ROLE" -d postgres -XAtqc \
      "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
    as_pg "$BIN/createdb" -h "$DIR" -p "$PORT" -U "$ROLE" "$DB"
  fi
  log "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT, data in $DIR"
  echo "$URL"
}

down() {
  BIN="$(bindir)"
  if running; then
    as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null
    log "stopped"
  fi
  rm -rf "$DIR"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) BIN="$(bindir)"; running || { log "not running (scripts/pg.sh up)"; exit 1; }; echo "export CARDPAY_PG_URL=$URL" ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 up|down|env|url" >&2; exit 2 ;;
esac
