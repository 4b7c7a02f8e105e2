#!/usr/bin/env bash
# Mesh benchmarks (BENCHMARKS.md, "Mesh"):
#   scripts/bench-mesh.sh [callgrind|failover|telemetry|all]     (default: all)
#
#   callgrind  client instructions per unary call (valgrind: N calls minus a 200-call baseline) of
#              the transport's bare GRPCChannel, of a MeshChannel (resolution, p2c, health checks,
#              retries + throttle, outlier detection, deadline propagation), and of a MeshChannel
#              with one pass-through interceptor, all against the same mesh-test server over h2c.
#   failover   three mTLS replicas under steady load (8 in flight); one is killed with SIGKILL and
#              the gap is how long the calls in flight at that moment took to finish (they retry on
#              the survivors). The peer, in the same interleaved rounds: grpcio with round_robin and
#              the same retry policy (Benchmarks/scripts/grpcio_failover.py). ROUNDS rounds.
#
#   telemetry  server instructions per unary call (callgrind) of a mesh-test replica: telemetry
#              off; metrics only; metrics and tracing at sampling ratios 0.01 and 1.0 (spans
#              exported over OTLP/gRPC to Tests/Interop/otlp_collector.py); and all of it with an
#              access-log line per call.
#
# Env: N=3000 ROUNDS=3 BIN=.build/release SKIP_BUILD= (set it to use the binaries in BIN as they are)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-3000}; ROUNDS=${ROUNDS:-3}
BIN=${BIN:-.build/release}
# One product per `swift build`: SwiftPM keeps only the last --product.
[ -n "${SKIP_BUILD:-}" ] || for p in mesh-test bazaar; do swift build -c release --product "$p" 2>&1 | tail -1; done
WORK=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

serve() {  # serve NAME [args] -> prints the port
  "$BIN/mesh-test" serve --name "$1" --port 0 "${@:2}" > "$WORK/$1.out" 2>&1 &
  echo $! > "$WORK/$1.pid"
  for _ in $(seq 100); do grep -q "listening" "$WORK/$1.out" 2>/dev/null && break; sleep 0.05; done
  sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$WORK/$1.out"
}

callgrind() {
  command -v valgrind > /dev/null || { echo "valgrind missing"; return; }
  echo; echo "==> callgrind: client instructions per unary call ($N calls minus 200)"
  # valgrind 3.19 cannot read this toolchain's DWARF 5: it runs a copy without debug info.
  cp "$BIN/mesh-test" "$WORK/mt" && strip --strip-debug "$WORK/mt"
  port=$(serve bench)
  declare -A per=()
  for variant in "bare" "mesh" "bare --interceptor" "mesh --interceptor" "mesh --telemetry"; do
    declare -A ir=()
    for n in 200 "$N"; do
      # shellcheck disable=SC2086
      valgrind --tool=callgrind --callgrind-out-file=/dev/null "$WORK/mt" bench --target "127.0.0.1:$port" \
        --client $variant --calls "$n" --concurrency 4 > "$WORK/cg.log" 2>&1
      ir[$n]=$(grep -oE 'refs: +[0-9,]+' "$WORK/cg.log" | tr -d ', ' | cut -d: -f2)
    done
    per[$variant]=$(( (ir[$N] - ir[200]) / (N - 200) ))
    echo "  $variant: ${per[$variant]} instructions/call"
  done
  awk -v b="${per[bare]}" -v m="${per[mesh]}" -v bi="${per[bare --interceptor]}" -v mi="${per[mesh --interceptor]}" \
    'BEGIN { printf "  mesh/bare %.3f   (mesh+interceptor)/(bare+interceptor) %.3f   (mesh+interceptor)/bare %.3f\n", m / b, mi / bi, mi / b }'
  awk -v m="${per[mesh]}" -v t="${per[mesh --telemetry]}" 'BEGIN { printf "  client metrics (telemetry observer)/mesh %.3f\n", t / m }'
  kill "$(cat "$WORK/bench.pid")"
}

failover() {
  echo; echo "==> failover: kill -9 of one of three mTLS replicas under load, Bazaar's mesh and grpcio ($ROUNDS rounds, interleaved)"
  "$BIN/bazaar" certs --dir "$WORK/certs" server client > /dev/null
  PY=${PYTHON:-.venv/bin/python}
  for round in $(seq "$ROUNDS"); do
    for client in bazaar grpcio; do
      ports=()
      for r in r1 r2 r3; do ports+=("$(serve "$r" --tls-dir "$WORK/certs")"); done
      list="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
      rm -f "$WORK/trace"
      if [ $client = bazaar ]; then
        "$BIN/mesh-test" load --target "$list" --tls-dir "$WORK/certs" --tls-name client --duration 4 --concurrency 8 \
          --trace "$WORK/trace" --report-every 10 > "$WORK/load.out" 2> "$WORK/load.err" &
      else
        "$PY" Benchmarks/scripts/grpcio_failover.py "$list" "$WORK/certs" 4 8 "$WORK/trace" > "$WORK/load.out" 2> "$WORK/load.err" &
      fi
      load=$!
      sleep 2
      kill_ms=$(date +%s%3N); kill -9 "$(cat "$WORK/r2.pid")"
      wait $load
      python3 - "$WORK/trace" "$kill_ms" "$client" <<'PY'
import statistics, sys
kill = int(sys.argv[2])
calls = [line.split() for line in open(sys.argv[1])]
lat = [int(e) - int(s) for _, s, e, _ in calls]
# Calls around the kill (the signal lands a little after `date` ran): how long past the kill, or
# past their own start if later, they took to be answered.
near = [int(e) - max(int(s), kill) for _, s, e, _ in calls if kill - 100 <= int(s) <= kill + 100 and int(e) >= kill]
failed = sum(1 for c in calls if c[3].startswith("!"))
print(f"  {sys.argv[3]:7s} {len(calls):6d} calls, {failed} failed, median {statistics.median(lat)} ms, "
      f"failover gap {max(near) if near else 0} ms ({len(near)} calls within 100 ms of the kill)")
PY
      for r in r1 r3; do kill "$(cat "$WORK/$r.pid")"; done
      wait 2>/dev/null || true
    done
  done
}

telemetry() {
  command -v valgrind > /dev/null || { echo "valgrind missing"; return; }
  echo; echo "==> callgrind: server instructions per unary call with and without telemetry ($N calls minus 200)"
  cp "$BIN/mesh-test" "$WORK/mt" && strip --strip-debug "$WORK/mt"
  PY=${PYTHON:-.venv/bin/python}
  cport=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$PY" Tests/Interop/otlp_collector.py "$cport" "$WORK/spans.jsonl" > /dev/null &
  collector=$!
  sleep 1
  declare -A per=()
  otlp="http://127.0.0.1:$cport"
  for variant in off metrics traces-0.01 traces-1.0 all-1.0; do
    declare -A ir=()
    for n in 200 "$N"; do
      flags=(--telemetry); env=(BAZAAR_METRICS_PORT=0 BAZAAR_ACCESS_LOG_SAMPLE=0 OTEL_EXPORTER_OTLP_ENDPOINT="$otlp"
                               OTEL_TRACES_SAMPLER=parentbased_traceidratio)
      case $variant in
        off) flags=() ;;
        metrics) env+=(OTEL_TRACES_EXPORTER=none) ;;
        traces-0.01) env+=(OTEL_TRACES_SAMPLER_ARG=0.01) ;;
        traces-1.0) env+=(OTEL_TRACES_SAMPLER_ARG=1.0) ;;
        all-1.0) env+=(OTEL_TRACES_SAMPLER_ARG=1.0 BAZAAR_ACCESS_LOG_SAMPLE=1) ;;
      esac
      env "${env[@]}" valgrind --tool=callgrind --callgrind-out-file=/dev/null "$WORK/mt" serve --name bench --port 0 "${flags[@]}" \
        > /dev/null 2> "$WORK/srv.err" &
      pid=$!
      for _ in $(seq 200); do grep -q "listening" "$WORK/srv.err" 2>/dev/null && break; sleep 0.1; done
      port=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$WORK/srv.err")
      "$BIN/mesh-test" bench --target "127.0.0.1:$port" --client bare --calls "$n" --concurrency 4 > /dev/null
      sleep 1.5  # one export interval, so that the spans of these calls are sent and counted
      kill -TERM $pid; wait $pid 2>/dev/null || true
      ir[$n]=$(grep -oE 'refs: +[0-9,]+' "$WORK/srv.err" | tr -d ', ' | cut -d: -f2)
    done
    per[$variant]=$(( (ir[$N] - ir[200]) / (N - 200) ))
    awk -v v="$variant" -v x="${per[$variant]}" -v off="${per[off]}" \
      'BEGIN { printf "  %-12s %7d instructions/call  %.3f x off\n", v, x, x / off }'
  done
  kill $collector 2>/dev/null || true
  echo "  spans received by the collector: $(wc -l < "$WORK/spans.jsonl" 2>/dev/null || echo 0)"
}

case "${1:-all}" in
  callgrind) callgrind ;; failover) failover ;; telemetry) telemetry ;;
  all) callgrind; failover; telemetry ;;
  *) sed -n '2,22p' "$0"; exit 2 ;;
esac
