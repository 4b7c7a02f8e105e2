#!/usr/bin/env bash
# A PostgreSQL cluster as a plain process (no systemd, no Docker), for `make test` and `make up`.
#
#   scripts/postgres.sh start DIR [PORT]   initdb DIR/data once, start, print the libpq conninfo
#   scripts/postgres.sh stop DIR           fast shutdown (the data stays)
#   scripts/postgres.sh conninfo DIR [PORT]
#
# The server listens on a Unix socket in DIR and on 127.0.0.1:PORT (default 55432; PG_LISTEN=ADDRESS
# for another, e.g. a test host's in a network namespace, and PG_TRUST=CIDR for the clients trusted
# there), trusts local
# connections (development and tests only), and when run as root runs as the `postgres` user,
# because initdb refuses root. Durability settings stay at PostgreSQL's defaults.
set -euo pipefail
cmd=${1:-}; dir=${2:-}; port=${3:-55432}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,10p' "$0"; exit 2; }
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/initdb" ] || { echo "postgres.sh: no PostgreSQL server binaries (apt-get install postgresql)" >&2; exit 1; }
dir=$(mkdir -p "$dir" && cd "$dir" && pwd)

run() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
conninfo() { echo "host=$dir port=$port user=postgres dbname=postgres"; }

case $cmd in
start)
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    run "$bin/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C.UTF-8 --auth=trust > "$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  # Clients from PG_TRUST (a CIDR) are trusted as local ones are: test networks only.
  if [ -n "${PG_TRUST:-}" ] && ! grep -qF "host all all $PG_TRUST trust" "$dir/data/pg_hba.conf"; then
    echo "host all all $PG_TRUST trust" >> "$dir/data/pg_hba.conf"
  fi
  if ! run "$bin/pg_ctl" -D "$dir/data" status > /dev/null 2>&1; then
    run "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
      -o "-p $port -c listen_addresses=${PG_LISTEN:-127.0.0.1} -c unix_socket_directories=$dir" > /dev/null \
      || { tail -20 "$dir/server.log" >&2; exit 1; }
  fi
  conninfo ;;
stop)
  [ -f "$dir/data/postmaster.pid" ] && run "$bin/pg_ctl" -D "$dir/data" -m fast -w stop > /dev/null || true ;;
conninfo) conninfo ;;
*) sed -n '2,10p' "$0"; exit 2 ;;
esac
