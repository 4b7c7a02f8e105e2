#!/usr/bin/env bash
# RPC benchmarks for BENCHMARKS.md (not part of `make test`; timings are never asserted).
#
#   scripts/bench-rpc.sh [h2c|mtls|callgrind|memory|all]      (default: all)
#
#   h2c        BenchmarkService/UnaryCall over h2c, driven by h2load (-c C -m M), servers run in
#              turn for ROUNDS rounds (A B C A B C ...): Bazaar's interop-server, the grpc C++
#              server (CPP_SERVER) and nghttpd serving a static answer of the same shape (the
#              HTTP/2 ceiling). Server on core 0, h2load on core 1. Reports rps and server CPU us/call.
#   mtls       the Bazaar client+server pair (RPCLoadClient + interop-server) against the C++ pair
#              (CPP_CLIENT + CPP_SERVER), interleaved, over mutual TLS.
#   callgrind  instructions per call of each server (valgrind: N calls minus a 100-call baseline).
#   memory     idle RSS of interop-server, and the RSS added by 10,000 idle mTLS connections.
#
# Env: ROUNDS=3 DURATION=5 C=4 M=32 N=20000 IDLE=10000
#   CPP_SERVER  a grpc C++ BenchmarkService server: `--port P [--tls CERT KEY --client-ca CA]`
#   CPP_CLIENT  a grpc C++ closed-loop client with the flags of Benchmarks/Sources/RPCLoadClient
#   (the team builds both from grpc 1.51 with Debian's libgrpc++-dev; without them only Bazaar runs)
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-all} ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-5} C=${C:-4} M=${M:-32} N=${N:-20000} IDLE=${IDLE:-10000}
CPP_SERVER=${CPP_SERVER:-} CPP_CLIENT=${CPP_CLIENT:-}
WORK=$(mktemp -d /tmp/bazaar-bench.XXXXXX)
trap 'pkill -P $$ 2>/dev/null; rm -rf "$WORK"' EXIT
PATH_RPC=/grpc.testing.BenchmarkService/UnaryCall

echo "==> building release binaries"
for p in interop-server bazaar; do swift build -c release --product "$p" 2>&1 | tail -1; done
(cd Benchmarks && swift build -c release --product RPCLoadClient 2>&1 | tail -1)
SERVER=$PWD/.build/release/interop-server
LOADCLIENT=$PWD/Benchmarks/.build/release/RPCLoadClient
.build/release/bazaar certs --dir "$WORK/pki" server client > /dev/null
P=$WORK/pki

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
# SimpleRequest{response_size=16, payload{body=16 zero bytes}} framed; the answer is 25 bytes.
printf '\x00\x00\x00\x00\x16\x10\x10\x1a\x12\x12\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00' > "$WORK/req.bin"
printf '\x00\x00\x00\x00\x14\x0a\x12\x12\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00' > "$WORK/resp.bin"

NEXT_PORT=$((51000 + $$ % 2000))
next_port() { NEXT_PORT=$((NEXT_PORT + 1)); echo $NEXT_PORT; }
wait_port() { for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }
cpu_ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : int((a[NR/2] + a[NR/2+1]) / 2)}'; }

start() {  # start NAME PORT: launches a server, sets PID
  local name=$1 port=$2
  case $name in
    bazaar) taskset -c 0 "$SERVER" --port "$port" --host 127.0.0.1 --threads 1 > "$WORK/$name.log" 2>&1 & ;;
    cpp) taskset -c 0 "$CPP_SERVER" --port "$port" > "$WORK/$name.log" 2>&1 & ;;
    nghttpd)
      mkdir -p "$WORK/docroot/grpc.testing.BenchmarkService" && cp "$WORK/resp.bin" "$WORK/docroot$PATH_RPC"
      taskset -c 0 nghttpd --no-tls -d "$WORK/docroot" "$port" > "$WORK/$name.log" 2>&1 & ;;
  esac
  PID=$!
  wait_port "$port"
}

h2c() {
  local names=(bazaar) ; [ -n "$CPP_SERVER" ] && names+=(cpp); command -v nghttpd > /dev/null && names+=(nghttpd)
  echo; echo "==> h2c unary: h2load -c $C -m $M, ${DURATION}s per run, $ROUNDS rounds, servers: ${names[*]}"
  for r in $(seq "$ROUNDS"); do
    for name in "${names[@]}"; do
      port=$(next_port); start "$name" "$port" || { echo "  round $r $name: did not start"; cat "$WORK/$name.log"; continue; }
      if [ "$name" != nghttpd ]; then
        nghttp -v -H ':method: POST' -H 'content-type: application/grpc' -H 'te: trailers' -d "$WORK/req.bin" \
          "http://127.0.0.1:$port$PATH_RPC" 2>&1 | grep -q 'grpc-status: 0' || echo "  probe FAILED for $name"
      fi
      args=(-c "$C" -m "$M" -d "$WORK/req.bin" -H 'content-type: application/grpc' -H 'te: trailers' "http://127.0.0.1:$port$PATH_RPC")
      taskset -c 1 h2load -D 1 "${args[@]}" > /dev/null 2>&1
      t0=$(cpu_ticks $PID)
      out=$(taskset -c 1 h2load -D "$DURATION" "${args[@]}" 2>&1)
      t1=$(cpu_ticks $PID)
      kill $PID; wait $PID 2>/dev/null
      [ -n "$t1" ] || { echo "  round $r $name: server died"; cat "$WORK/$name.log"; continue; }
      rps=$(grep -oE 'finished in [0-9.]+s, [0-9.]+ req/s' <<< "$out" | grep -oE '[0-9.]+ req/s' | cut -d' ' -f1)
      ok=$(grep -oE '[0-9]+ succeeded' <<< "$out" | cut -d' ' -f1)
      us=$(awk -v t=$((t1 - t0)) -v n="${ok:-1}" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
      echo "  round $r $name: ${rps%.*} rps, server CPU ${us} us/call ($(grep -oE '[0-9]+ failed' <<< "$out"))"
      echo "$name ${rps%.*} $us" >> "$WORK/h2c.txt"
    done
  done
  for name in "${names[@]}"; do
    echo "  median $name: $(awk -v n=$name '$1==n {print $2}' "$WORK/h2c.txt" | median) rps, $(awk -v n=$name '$1==n {print $3}' "$WORK/h2c.txt" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') us/call"
  done
}

mtls() {
  echo; echo "==> mTLS unary: closed-loop clients, $C connections x $M, ${DURATION}s, $ROUNDS rounds"
  for r in $(seq "$ROUNDS"); do
    for pair in bazaar cpp; do
      [ $pair = cpp ] && { [ -n "$CPP_SERVER" ] && [ -n "$CPP_CLIENT" ] || continue; }
      port=$(next_port)
      if [ $pair = bazaar ]; then
        "$SERVER" --port "$port" --host 127.0.0.1 --use_tls true --tls_cert_file "$P/server.pem" \
          --tls_key_file "$P/server-key.pem" --tls_ca_file "$P/ca.pem" > /dev/null 2>&1 &
        client=$LOADCLIENT
      else
        "$CPP_SERVER" --port "$port" --tls "$P/server.pem" "$P/server-key.pem" --client-ca "$P/ca.pem" > /dev/null 2>&1 &
        client=$CPP_CLIENT
      fi
      PID=$!; wait_port "$port"
      line=$("$client" --target "127.0.0.1:$port" --ca "$P/ca.pem" --cert "$P/client.pem" --key "$P/client-key.pem" \
        --authority localhost --connections "$C" --concurrency "$M" --warmup 1 --duration "$DURATION" 2>&1 | grep '^RESULT')
      kill $PID; wait $PID 2>/dev/null
      echo "  round $r $pair pair: $line"
      echo "$pair $(sed -nE 's/.* rps=([0-9]+).*/\1/p' <<< "$line")" >> "$WORK/mtls.txt"
    done
  done
  for pair in bazaar cpp; do
    grep -q "^$pair " "$WORK/mtls.txt" && echo "  median $pair pair: $(awk -v n=$pair '$1==n {print $2}' "$WORK/mtls.txt" | median) rps"
  done
}

callgrind() {
  command -v valgrind > /dev/null || { echo "valgrind missing"; return; }
  echo; echo "==> callgrind: instructions per unary call ($N calls minus a 100-call baseline, h2load -c $C -m $M)"
  # valgrind 3.19 cannot read this toolchain's DWARF 5: it runs a copy without debug info.
  cp "$SERVER" "$WORK/isrv" && strip --strip-debug "$WORK/isrv"
  for name in bazaar cpp; do
    [ $name = cpp ] && [ -z "$CPP_SERVER" ] && continue
    bin=$WORK/isrv; extra=(--host 127.0.0.1 --threads 1); [ $name = cpp ] && { bin=$CPP_SERVER; extra=(); }
    declare -A ir=()
    for n in 100 "$N"; do
      port=$(next_port)
      valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" --port "$port" "${extra[@]}" > "$WORK/cg.log" 2>&1 &
      PID=$!; wait_port "$port" || sleep 5
      h2load -n "$n" -c "$C" -m "$M" -d "$WORK/req.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
        "http://127.0.0.1:$port$PATH_RPC" > /dev/null 2>&1
      kill -TERM $PID; wait $PID 2>/dev/null
      ir[$n]=$(grep -oE 'refs: +[0-9,]+' "$WORK/cg.log" | tr -d ', ' | cut -d: -f2)
    done
    echo "  $name: $(( (ir[$N] - ir[100]) / (N - 100) )) instructions per call"
  done
}

memory() {
  echo; echo "==> memory: idle RSS, then $IDLE idle mTLS connections"
  [ "$(ulimit -n)" -gt $((IDLE + 100)) ] || ulimit -n $((IDLE * 2 + 1000)) 2>/dev/null || echo "  (cannot raise the fd limit above $(ulimit -n))"
  py=python3; [ -x .venv/bin/python ] && py=.venv/bin/python
  for name in bazaar cpp; do
    [ $name = cpp ] && [ -z "$CPP_SERVER" ] && continue
    port=$(next_port)
    if [ $name = bazaar ]; then
      "$SERVER" --port "$port" --host 127.0.0.1 --use_tls true --tls_cert_file "$P/server.pem" \
        --tls_key_file "$P/server-key.pem" --tls_ca_file "$P/ca.pem" > /dev/null 2>&1 &
    else
      "$CPP_SERVER" --port "$port" --tls "$P/server.pem" "$P/server-key.pem" --client-ca "$P/ca.pem" > /dev/null 2>&1 &
    fi
    PID=$!; wait_port "$port"; sleep 1
    idle=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)
    private=$(awk '/^Private_(Clean|Dirty)/ {s += $2} END {print s}' /proc/$PID/smaps_rollup)
    rm -f "$WORK/hold"; mkfifo "$WORK/hold"
    $py Benchmarks/scripts/idle_connections.py 127.0.0.1 "$port" "$IDLE" "$P/ca.pem" "$P/client.pem" "$P/client-key.pem" \
      < "$WORK/hold" > "$WORK/idle.txt" 2>&1 &
    HOLDER=$!
    exec 9> "$WORK/hold"
    for _ in $(seq 600); do grep -q held "$WORK/idle.txt" && break; sleep 0.5; done
    sleep 1
    full=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)
    echo "  $name: idle RSS $((idle / 1024)) MB (private $((private / 1024)) MB); $(cat "$WORK/idle.txt"):" \
      "RSS $((full / 1024)) MB, +$(((full - idle) / 1024)) MB, $(((full - idle) * 1024 / IDLE)) bytes per connection"
    exec 9>&-
    wait $HOLDER 2>/dev/null
    kill $PID; wait $PID 2>/dev/null
  done
}

case $MODE in
  h2c) h2c ;; mtls) mtls ;; callgrind) callgrind ;; memory) memory ;;
  all) h2c; mtls; callgrind; memory ;;
  *) sed -n '2,20p' "$0"; exit 2 ;;
esac
