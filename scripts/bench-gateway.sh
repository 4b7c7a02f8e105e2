#!/usr/bin/env bash
# The gateway's cost (BENCHMARKS.md, issue 6): GET /v1/products/{id} through the gateway with wrk
# (HTTP/1.1, 32 connections) against h2load calling CatalogService/GetProduct on the catalog
# service directly (h2c, 4 connections x 8 streams: 32 in flight too), in interleaved rounds, then
# wrk at half the gateway's peak rate (a Lua delay per connection) for the p99 latency.
#
#   scripts/bench-gateway.sh            ROUNDS=3 SECONDS_PER_RUN=10
#   OLD=path/to/older/bazaar scripts/bench-gateway.sh
#                                       A/B: in each round the same route through this build's
#                                       gateway and through OLD's, against the same catalog service
#
# Release binaries; a throwaway PostgreSQL; the mesh in plaintext (h2load has no client
# certificates), so both paths skip TLS alike.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
T=${SECONDS_PER_RUN:-10}
command -v wrk > /dev/null || { echo "bench-gateway: wrk is missing (make deps installs it)"; exit 1; }
. scripts/bench-lib.sh bench-gateway
catalog_port=$(free_port); gw_port=$(free_port)
export BAZAAR_PLAINTEXT=true BAZAAR_JWT_PUBLIC_KEY=$work/jwt/jwt-pub.pem BAZAAR_METRICS_PORT=off OTEL_TRACES_EXPORTER=none \
  BAZAAR_ACCESS_LOG_SAMPLE=0 BAZAAR_LOG_LEVEL=warning BAZAAR_CATALOG_TARGET=127.0.0.1:$catalog_port \
  BAZAAR_RATE_LIMIT=1000000 BAZAAR_RATE_BURST=1000000
BAZAAR_DATABASE_URL="${conninfo/dbname=postgres/dbname=bench_catalog}" "$B" serve catalog --port "$catalog_port" > "$work/catalog.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do grep -q "listening on" "$work/catalog.log" && break; sleep 0.05; done
"$B" gateway --port "$gw_port" > "$work/gateway.log" 2>&1 &
pids+=($!)
# Ready when the route answers: the gateway has connected and read the catalog's schema.
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$gw_port/v1/products?page.pageSize=1" > /dev/null && break; sleep 0.05; done
if [ -n "${OLD:-}" ]; then
  old_port=$(free_port)
  "$OLD" gateway --port "$old_port" > "$work/gateway-old.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$old_port/v1/products?page.pageSize=1" > /dev/null && break; sleep 0.05; done
fi
listing=$(curl -s "http://127.0.0.1:$gw_port/v1/products?page.pageSize=1")
id=$(echo "$listing" | python3 -c 'import json,sys; print(json.load(sys.stdin)["products"][0]["id"])') || { echo "bench-gateway: no product through the gateway: $listing"; cat "$work/gateway.log"; exit 1; }
# The gRPC request: a 5-byte prefix and GetProductRequest{id} (field 1, length-delimited).
python3 - "$id" "$work/req.bin" <<'PY'
import sys
msg = b"\x0a" + bytes([len(sys.argv[1])]) + sys.argv[1].encode()
open(sys.argv[2], "wb").write(b"\x00" + len(msg).to_bytes(4, "big") + msg)
PY
url="http://127.0.0.1:$gw_port/v1/products/$id"
curl -sf "$url" > /dev/null || { echo "bench-gateway: the route does not answer"; cat "$work/gateway.log"; exit 1; }
echo "bench-gateway: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), h2load $(h2load --version | awk '{print $2}')"
direct() {
  h2load -c 4 -m 8 -D "$T" -d "$work/req.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:$catalog_port/shop.v1.CatalogService/GetProduct" 2> /dev/null \
    | awk '/^finished in/ {gsub(",", "", $4); print $4} /^requests:/ {fail=$10} END {if (fail > 0) print "FAILED " fail > "/dev/stderr"}'
}
gateway() {  # gateway [URL]
  wrk -t 2 -c 32 -d "${T}s" "${1:-$url}" 2>&1 | awk '/Requests\/sec/ {print $2} /Non-2xx/ {print "NON-2XX " $4 > "/dev/stderr"}'
}
ds=(); gs=(); os=()
for r in $(seq "$ROUNDS"); do
  d=$(direct); g=$(gateway)
  kill -0 "${pids[1]}" 2> /dev/null || { echo "bench-gateway: the gateway died:"; tail -20 "$work/gateway.log"; exit 1; }
  ds+=("$d"); gs+=("$g")
  if [ -n "${OLD:-}" ]; then
    o=$(gateway "http://127.0.0.1:$old_port/v1/products/$id"); os+=("$o")
    echo "bench-gateway: round $r: direct gRPC $d req/s, through the gateway $g req/s, through OLD's gateway $o req/s"
  else
    echo "bench-gateway: round $r: direct gRPC $d req/s, through the gateway $g req/s"
  fi
done
if [ -n "${OLD:-}" ]; then
  python3 - "${gs[*]}" "${os[*]}" <<'PY'
import statistics, sys
g = [float(x) for x in sys.argv[1].split()]
o = [float(x) for x in sys.argv[2].split()]
print(f"RESULT new_gateway_median={statistics.median(g):.0f} old_gateway_median={statistics.median(o):.0f} new/old={statistics.median(g) / statistics.median(o):.3f}")
PY
fi
python3 - "${ds[*]}" "${gs[*]}" <<'PY'
import statistics, sys
d = [float(x) for x in sys.argv[1].split()]
g = [float(x) for x in sys.argv[2].split()]
print(f"RESULT direct_median={statistics.median(d):.0f} gateway_median={statistics.median(g):.0f} ratio={statistics.median(g) / statistics.median(d):.3f}")
PY
peak=$(python3 -c "import statistics; print(statistics.median([float(x) for x in '${gs[*]}'.split()]))")
half=$(python3 -c "print(int($peak / 2))")
# Each of 16 connections waits 16000/half ms between requests: about half the peak in all.
cat > "$work/rate.lua" <<EOF
function delay() return $(python3 -c "print(max(1, round(16 * 1000 / $half)))") end
EOF
echo "bench-gateway: latency at about half the peak ($half req/s):"
wrk -t 2 -c 16 -d "${T}s" --latency -s "$work/rate.lua" "$url" | grep -E "Requests/sec|50%|90%|99%"
