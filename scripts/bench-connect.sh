#!/usr/bin/env bash
# Connect through the edge against gRPC through the edge, to the same method (BENCHMARKS.md,
# issue 21): CatalogService/GetProduct on one gateway, h2load over h2c (4 connections x 8 streams),
# in interleaved rounds:
#   grpc          application/grpc, the length-prefixed message
#   connect-proto application/proto, the message as the body (passed through like gRPC's)
#   connect-json  application/json, mapped to and from the message by the gateway
#
#   scripts/bench-connect.sh            ROUNDS=3 SECONDS_PER_RUN=10
#
# Release binaries; a throwaway PostgreSQL; the mesh in plaintext (a public method), all three alike.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
T=${SECONDS_PER_RUN:-10}
command -v h2load > /dev/null || { echo "bench-connect: h2load is missing (make deps installs nghttp2-client)"; exit 1; }
. scripts/bench-lib.sh bench-connect
catalog_port=$(free_port); gw_port=$(free_port)
export BAZAAR_PLAINTEXT=true BAZAAR_JWT_PUBLIC_KEY=$work/jwt/jwt-pub.pem BAZAAR_METRICS_PORT=off OTEL_TRACES_EXPORTER=none \
  BAZAAR_ACCESS_LOG_SAMPLE=0 BAZAAR_LOG_LEVEL=warning BAZAAR_CATALOG_TARGET=127.0.0.1:$catalog_port \
  BAZAAR_RATE_LIMIT=1000000 BAZAAR_RATE_BURST=1000000
BAZAAR_DATABASE_URL="${conninfo/dbname=postgres/dbname=bench_catalog}" "$B" serve catalog --port "$catalog_port" > "$work/catalog.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do grep -q "listening on" "$work/catalog.log" && break; sleep 0.05; done
BAZAAR_UPSTREAMS=catalog "$B" gateway --port "$gw_port" > "$work/gateway.log" 2>&1 &
pids+=($!)
g=http://127.0.0.1:$gw_port
for _ in $(seq 600); do curl -sf "$g/v1/products?page.pageSize=1" > /dev/null && break; sleep 0.05; done
id=$(curl -s "$g/v1/products?page.pageSize=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["products"][0]["id"])') \
  || { echo "bench-connect: no product through the gateway"; tail -5 "$work/gateway.log"; exit 1; }
python3 - "$id" "$work" <<'PY'
import json, sys
msg = b"\x0a" + bytes([len(sys.argv[1])]) + sys.argv[1].encode()  # GetProductRequest{id}
open(f"{sys.argv[2]}/grpc.bin", "wb").write(b"\x00" + len(msg).to_bytes(4, "big") + msg)
open(f"{sys.argv[2]}/proto.bin", "wb").write(msg)
open(f"{sys.argv[2]}/json.txt", "w").write(json.dumps({"id": sys.argv[1]}))
PY
url=$g/shop.v1.CatalogService/GetProduct
# Each form answers the product before it is measured.
curl -sf --http2-prior-knowledge -H 'content-type: application/json' --data-binary @"$work/json.txt" "$url" | grep -q "$id" \
  || { echo "bench-connect: Connect JSON does not answer"; tail -5 "$work/gateway.log"; exit 1; }
echo "bench-connect: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), h2load $(h2load --version | awk '{print $2}')"
run() {  # run BODY CONTENT-TYPE [extra header] -> req/s; any failed request or non-200 stops the bench
  local out
  out=$(h2load -c 4 -m 8 -D "$T" -d "$1" -H "content-type: $2" ${3:+-H "$3"} "$url" 2>&1)
  # "requests: N total, N started, N done, N succeeded, F failed, E errored, ..."; "status codes: N 2xx, ..."
  local failed ok
  failed=$(awk '/^requests:/ {print $10 + $12}' <<< "$out")
  ok=$(awk '/^status codes:/ {print $3}' <<< "$out")
  if [ "${failed:-1}" != "0" ] || [ "$(awk '/^requests:/ {print $8}' <<< "$out")" != "$ok" ]; then
    echo "bench-connect: $2 had failures:" >&2; echo "$out" >&2; exit 1
  fi
  awk '/^finished in/ {gsub(",", "", $4); print $4}' <<< "$out"
}
for r in $(seq "$ROUNDS"); do
  gr=$(run "$work/grpc.bin" application/grpc "te: trailers")
  cp=$(run "$work/proto.bin" application/proto "connect-protocol-version: 1")
  cj=$(run "$work/json.txt" application/json "connect-protocol-version: 1")
  kill -0 "${pids[-1]}" 2> /dev/null || { echo "bench-connect: the gateway died"; tail -20 "$work/gateway.log"; exit 1; }
  echo "bench-connect: round $r: gRPC $gr req/s, Connect proto $cp req/s ($(python3 -c "print(f'{$cp / $gr:.2f}')")x), Connect JSON $cj req/s ($(python3 -c "print(f'{$cj / $gr:.2f}')")x)"
done
