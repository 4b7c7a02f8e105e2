#!/usr/bin/env bash
# Checkout throughput and latency of the whole shop on this machine (BENCHMARKS.md, issue 7).
#
#   scripts/bench-shop.sh [CONCURRENCY...]     default: 16 64
#   OLD=path/to/older/bazaar ROUNDS=2 scripts/bench-shop.sh 32
#                                              A/B: each round runs the five services from this
#                                              build, then from OLD (same databases, same load
#                                              generator: this build's), at each concurrency
#
# Builds release binaries, starts a throwaway PostgreSQL and Redis and the five services
# (mTLS mesh, access logs and traces off, metrics off), then runs `bazaar load checkout` at each
# concurrency (DURATION seconds, default 20, after 3 s of warm-up) and reports, besides the
# load command's RESULT line, where the CPU went: CPU milliseconds per order for each process
# (the services, PostgreSQL's backends, Redis, the load generator), from /proc.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-20}  # at least 8
LEVELS=("$@"); [ ${#LEVELS[@]} -gt 0 ] || LEVELS=(16 64)
echo "bench-shop: building release binaries"
swift build -c release --product bazaar 2>&1 | grep -E 'error|Build' | tail -1
B=$PWD/.build/release/bazaar
work=$(mktemp -d /tmp/bazaar-bench-shop.XXXXXX); chmod 755 "$work"  # PostgreSQL runs as its own user
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pg_port=$(free_port); redis_port=$(free_port)
declare -A PIDS PORTS
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2> /dev/null || true; done
  wait 2> /dev/null || true
  bash scripts/postgres.sh stop "$work/pg" > /dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
conninfo=$(bash scripts/postgres.sh start "$work/pg" "$pg_port")
for db in catalog accounts orders notifications; do psql "$conninfo" -qc "CREATE DATABASE bench_$db" > /dev/null; done
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no > "$work/redis.log" 2>&1 &
PIDS[redis]=$!
"$B" certs --dir "$work/certs" catalog accounts cart orders notifications client > /dev/null
"$B" jwt keygen --dir "$work/jwt" > /dev/null
for s in catalog accounts cart orders notifications; do PORTS[$s]=$(free_port); done
export BAZAAR_TLS_DIR=$work/certs BAZAAR_REDIS_ADDR=127.0.0.1:$redis_port BAZAAR_JWT_PUBLIC_KEY=$work/jwt/jwt-pub.pem \
  BAZAAR_JWT_PRIVATE_KEY=$work/jwt/jwt-key.pem BAZAAR_METRICS_PORT=off OTEL_TRACES_EXPORTER=none BAZAAR_ACCESS_LOG_SAMPLE=0 \
  BAZAAR_LOG_LEVEL=warning BAZAAR_DB_POOL_SIZE=${POOL:-16}
for s in catalog accounts cart orders notifications; do
  export "BAZAAR_${s^^}_TARGET=127.0.0.1:${PORTS[$s]}"
done
# Starts the five services from binary $1 (stopping any that run).
start_services() {
  for s in catalog accounts cart notifications orders; do
    if [ -n "${PIDS[$s]:-}" ]; then kill -TERM "${PIDS[$s]}" 2> /dev/null || true; wait "${PIDS[$s]}" 2> /dev/null || true; fi
  done
  for s in catalog accounts cart notifications orders; do
    : > "$work/$s.log"
    BAZAAR_DATABASE_URL="${conninfo/dbname=postgres/dbname=bench_$s}" "$1" serve "$s" --port "${PORTS[$s]}" > "$work/$s.log" 2>&1 &
    PIDS[$s]=$!
    for _ in $(seq 600); do grep -q "listening on" "$work/$s.log" && break; sleep 0.05; done
    grep -q "listening on" "$work/$s.log" || { echo "bench-shop: $s did not start:"; tail -5 "$work/$s.log"; exit 1; }
  done
}
postmaster=$(head -1 "$work/pg/data/postmaster.pid")

# CPU seconds (user + system) of a process, or of PostgreSQL: the postmaster, its live backends,
# and the children it has reaped.
cpu() {
  python3 - "$@" <<'PY'
import os, sys
tick = os.sysconf("SC_CLK_TCK")
def stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        sys.exit(f"bench-shop: process {pid} exited during the measurement")
    return [int(x) for x in parts[11:15]]  # utime stime cutime cstime
out = []
for arg in sys.argv[1:]:
    if arg.startswith("pg:"):
        pm = int(arg[3:])
        u, s, cu, cs = stat(pm)
        total = u + s + cu + cs
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    with open(f"/proc/{p}/stat") as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == pm:
                            a = stat(p); total += a[0] + a[1]
                except (FileNotFoundError, ProcessLookupError, IndexError):
                    pass
        out.append(total / tick)
    else:
        u, s, _, _ = stat(int(arg)); out.append((u + s) / tick)
print(" ".join(f"{x:.3f}" for x in out))
PY
}

echo "bench-shop: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), PostgreSQL $(psql "$conninfo" -Atc 'SHOW server_version'), Redis $(redis-server --version | grep -oE 'v=[0-9.]+' | cut -d= -f2)"
names=(orders catalog cart notifications postgres redis load)
measure() {
  local level=$1
  "$B" load checkout --certs "$work/certs" --jwt-key "$work/jwt/jwt-key.pem" --concurrency "$level" --duration "$DURATION" --warmup 3 \
    > "$work/load.out" 2>&1 &
  load=$!
  sleep 3  # the warm-up
  kill -0 "$load" 2> /dev/null || { echo "bench-shop: the load generator stopped:"; cat "$work/load.out"; exit 1; }
  # CPU is sampled over the middle of the measured window (the load command exits at its end),
  # and divided by the orders the database gained meanwhile.
  count() { psql "${conninfo/dbname=postgres/dbname=bench_orders}" -Atc "SELECT count(*) FROM orders"; }
  sleep 1
  n0=$(count)
  before=($(cpu "${PIDS[orders]}" "${PIDS[catalog]}" "${PIDS[cart]}" "${PIDS[notifications]}" "pg:$postmaster" "${PIDS[redis]}" "$load"))
  # The window ends 4 s before the load command does, so that every process is still there.
  sleep $(( DURATION - 5 ))
  after=($(cpu "${PIDS[orders]}" "${PIDS[catalog]}" "${PIDS[cart]}" "${PIDS[notifications]}" "pg:$postmaster" "${PIDS[redis]}" "$load"))
  n1=$(count)
  wait "$load" || { cat "$work/load.out"; exit 1; }
  result=$(grep RESULT "$work/load.out")
  echo "$result"
  python3 - "$(( n1 - n0 ))" "$(( DURATION - 5 ))" "${names[*]}" "${before[*]}" "${after[*]}" <<'PY'
import sys
orders, duration = float(sys.argv[1]), float(sys.argv[2])
names, before, after = sys.argv[3].split(), [float(x) for x in sys.argv[4].split()], [float(x) for x in sys.argv[5].split()]
print("| process | CPU ms per order | share |")
print("|---|---:|---:|")
spent = [a - b for a, b in zip(after, before)]
total = sum(spent)
for n, s in zip(names, spent):
    print(f"| {n} | {1000 * s / max(orders, 1):.2f} | {100 * s / max(total, 1e-9):.0f} % |")
print(f"| all | {1000 * total / max(orders, 1):.2f} | CPU busy {100 * total / duration / 2:.0f} % of 2 cores |")
PY
}

if [ -z "${OLD:-}" ]; then
  start_services "$B"
  for level in "${LEVELS[@]}"; do
    echo "bench-shop: concurrency $level, ${DURATION}s"
    measure "$level"
  done
else
  for round in $(seq "${ROUNDS:-2}"); do
    for side in new old; do
      bin=$B; [ "$side" = old ] && bin=$OLD
      start_services "$bin"
      for level in "${LEVELS[@]}"; do
        echo "bench-shop: round $round, $side ($bin), concurrency $level, ${DURATION}s"
        measure "$level"
      done
    done
  done
fi
