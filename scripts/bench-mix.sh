#!/usr/bin/env bash
# A mixed shop workload through the gateway (BENCHMARKS.md, issue 17): locust shoppers browse,
# search, open products, fill carts and check out (Benchmarks/locust/shop.py), against release
# binaries of the five services and the gateway on a throwaway PostgreSQL and Redis, with the
# demo catalog (`bazaar seed`). Reports requests per second, mean and p99 latency per kind of
# request, failures, and the CPU the load generator used (on 2 cores it competes with the shop).
#
#   scripts/bench-mix.sh                  USERS=64 DURATION=30
#   OLD=path/to/older/bazaar ROUNDS=2 scripts/bench-mix.sh
#                                         A/B: each round runs the shop from this build, then
#                                         from OLD, with the same data and the same locust file
#
# locust is installed into .venv-bench (PyPI) the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${USERS:-64}
DURATION=${DURATION:-30}
if [ ! -x .venv-bench/bin/locust ]; then
  echo "bench-mix: installing locust into .venv-bench"
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-bench.txt
fi
echo "bench-mix: building release binaries"
swift build -c release --product bazaar 2>&1 | grep -E 'error|Build' | tail -1
B=$PWD/.build/release/bazaar
work=$(mktemp -d /tmp/bazaar-bench-mix.XXXXXX); chmod 755 "$work"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
declare -A PIDS PORTS
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2> /dev/null || true; done
  wait 2> /dev/null || true
  bash scripts/postgres.sh stop "$work/pg" > /dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
pg_port=$(free_port); redis_port=$(free_port); gw_port=$(free_port)
conninfo=$(bash scripts/postgres.sh start "$work/pg" "$pg_port")
for db in catalog accounts orders notifications; do psql "$conninfo" -qc "CREATE DATABASE mix_$db" > /dev/null; done
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no > "$work/redis.log" 2>&1 &
PIDS[redis]=$!
"$B" certs --dir "$work/certs" catalog accounts cart orders notifications gateway client > /dev/null
"$B" jwt keygen --dir "$work/jwt" > /dev/null
for s in catalog accounts cart orders notifications; do PORTS[$s]=$(free_port); done
export BAZAAR_TLS_DIR=$work/certs BAZAAR_REDIS_ADDR=127.0.0.1:$redis_port BAZAAR_JWT_PUBLIC_KEY=$work/jwt/jwt-pub.pem \
  BAZAAR_JWT_PRIVATE_KEY=$work/jwt/jwt-key.pem BAZAAR_METRICS_PORT=off OTEL_TRACES_EXPORTER=none BAZAAR_ACCESS_LOG_SAMPLE=0 \
  BAZAAR_LOG_LEVEL=warning BAZAAR_DB_POOL_SIZE=${POOL:-16} BAZAAR_RATE_LIMIT=100000 BAZAAR_RATE_BURST=100000
for s in catalog accounts cart orders notifications; do export "BAZAAR_${s^^}_TARGET=127.0.0.1:${PORTS[$s]}"; done

wait_for() {  # FILE TEXT WHAT
  for _ in $(seq 600); do grep -q "$2" "$1" && return 0; sleep 0.05; done
  echo "bench-mix: $3 did not start:"; tail -5 "$1"; exit 1
}
# Starts the five services and the gateway from binary $1 (stopping any that run).
start_shop() {
  for s in catalog accounts cart notifications orders gateway; do
    if [ -n "${PIDS[$s]:-}" ]; then kill -TERM "${PIDS[$s]}" 2> /dev/null || true; wait "${PIDS[$s]}" 2> /dev/null || true; fi
  done
  for s in catalog accounts cart notifications orders; do
    BAZAAR_DATABASE_URL="${conninfo/dbname=postgres/dbname=mix_$s}" "$1" serve "$s" --port "${PORTS[$s]}" > "$work/$s.log" 2>&1 &
    PIDS[$s]=$!
    wait_for "$work/$s.log" "listening on" "$s"
  done
  "$1" gateway --port "$gw_port" > "$work/gateway.log" 2>&1 &
  PIDS[gateway]=$!
  wait_for "$work/gateway.log" "listening on" gateway
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$gw_port/readyz" > /dev/null && return 0; sleep 0.05; done
  echo "bench-mix: the gateway did not become ready"; tail -5 "$work/gateway.log"; exit 1
}

echo "bench-mix: seeding the demo catalog"
"$B" seed --catalog-db "${conninfo/dbname=postgres/dbname=mix_catalog}" --accounts-db "${conninfo/dbname=postgres/dbname=mix_accounts}" > /dev/null
# Plenty of stock, so that checkouts do not run out during the runs.
psql "${conninfo/dbname=postgres/dbname=mix_catalog}" -qc "UPDATE products SET stock = 1000000" > /dev/null
echo "bench-mix: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), locust $(.venv-bench/bin/locust --version 2>&1 | grep -oE '[0-9]+\.[0-9.]+' | head -1), $USERS users, ${DURATION}s"

run() {  # LABEL
  local csv=$work/mix
  rm -f "$csv"_*.csv
  BAZAAR_BENCH_JWT_KEY=$work/jwt/jwt-key.pem .venv-bench/bin/locust -f Benchmarks/locust/shop.py --headless \
    -u "$USERS" -r "$USERS" -t "${DURATION}s" --host "http://127.0.0.1:$gw_port" --csv "$csv" --only-summary \
    > "$work/locust.log" 2>&1 &
  local pid=$!
  local ticks; ticks=$(getconf CLK_TCK)
  local cpu=0
  while kill -0 "$pid" 2> /dev/null; do
    cpu=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2> /dev/null || echo "$cpu")
    sleep 1
  done
  wait "$pid" || true
  python3 - "$csv" "$1" "$cpu" "$ticks" "$DURATION" <<'PY'
import csv, sys
path, label, cpu, ticks, duration = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
rows = list(csv.DictReader(open(path + "_stats.csv")))
print(f"bench-mix: {label}")
print("| request | req/s | mean ms | p99 ms | failures |")
print("|---|---:|---:|---:|---:|")
for r in rows:
    name = r["Name"] if r["Name"] != "Aggregated" else "**all**"
    print(f"| {name} | {float(r['Requests/s']):.0f} | {float(r['Average Response Time']):.1f} | {r['99%']} | {r['Failure Count']} |")
print(f"locust used {cpu / ticks / duration * 100:.0f} % of one core")
PY
}

if [ -z "${OLD:-}" ]; then
  start_shop "$B"
  run "this build ($B)"
else
  for round in $(seq "${ROUNDS:-2}"); do
    for side in new old; do
      bin=$B; [ "$side" = old ] && bin=$OLD
      start_shop "$bin"
      run "round $round, $side ($bin)"
    done
  done
fi
