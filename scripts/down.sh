#!/usr/bin/env bash
# `make down`: stops what `make up` started: the services (graceful SIGTERM through their
# supervisors), the SMTP sink, Redis and PostgreSQL. Data stays in .run/ for the next `make up`.
#   --keep-stores   leave PostgreSQL and Redis running (make up uses this to restart the services)
set -uo pipefail
cd "$(dirname "$0")/.."
PGPORT=${PGPORT:-55432}
REDIS_PORT=${REDIS_PORT:-56379}
for f in .run/pids/*.pid; do
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill -TERM "$pid" 2> /dev/null; then
    for _ in $(seq 150); do kill -0 "$pid" 2> /dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2> /dev/null && { echo "down: $(basename "$f" .pid) did not stop in 30 s; killing it"; kill -KILL "$pid"; }
    echo "down: stopped $(basename "$f" .pid)"
  fi
  rm -f "$f"
done
[ "${1:-}" = "--keep-stores" ] && exit 0
if redis-cli -p "$REDIS_PORT" ping > /dev/null 2>&1; then
  redis-cli -p "$REDIS_PORT" shutdown > /dev/null 2>&1 && echo "down: stopped Redis"
fi
[ -d .run/postgres ] && bash scripts/postgres.sh stop .run/postgres && echo "down: stopped PostgreSQL"
exit 0
