#!/usr/bin/env bash
# The storefront's pages against the JSON API for the same data (BENCHMARKS.md, issue 18): wrk
# (HTTP/1.1, 2 threads, 32 connections) through one gateway, in interleaved rounds:
#   home     GET /                     vs GET /v1/products?sort=PRODUCT_SORT_NEWEST&page.pageSize=12
#   search   GET /search?q=lamp        vs GET /v1/products?query=lamp&page.pageSize=12
#   product  GET /products/{id}        vs GET /v1/products/{id}
# A page is one catalog call like its JSON twin, plus a hop to the web app and the rendering.
# Every page view holds one of the edge's open-stream places while it is answered (8 per client
# address by default); wrk's 32 connections come from one address, so the bench allows 64.
#
#   scripts/bench-web.sh            ROUNDS=3 SECONDS_PER_RUN=10
#
# Release binaries; a throwaway PostgreSQL and Redis; the mesh over mutual TLS as deployed (the
# hop to the web app is an internal method: it needs the gateway's identity), both paths alike.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
T=${SECONDS_PER_RUN:-10}
command -v wrk > /dev/null || { echo "bench-web: wrk is missing (make deps installs it)"; exit 1; }
. scripts/bench-lib.sh bench-web
"$B" certs --dir "$work/certs" catalog accounts cart orders notifications web gateway > /dev/null
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" > "$work/redis.log" 2>&1 &
pids+=($!)
declare -A port
for s in catalog accounts web; do port[$s]=$(free_port); done
gw_port=$(free_port)
export BAZAAR_TLS_DIR=$work/certs BAZAAR_JWT_PUBLIC_KEY=$work/jwt/jwt-pub.pem BAZAAR_JWT_PRIVATE_KEY=$work/jwt/jwt-key.pem \
  BAZAAR_METRICS_PORT=off OTEL_TRACES_EXPORTER=none BAZAAR_ACCESS_LOG_SAMPLE=0 BAZAAR_LOG_LEVEL=warning \
  BAZAAR_CATALOG_TARGET=127.0.0.1:${port[catalog]} BAZAAR_ACCOUNTS_TARGET=127.0.0.1:${port[accounts]} \
  BAZAAR_WEB_TARGET=127.0.0.1:${port[web]} BAZAAR_REDIS_ADDR=127.0.0.1:$redis_port \
  BAZAAR_RATE_LIMIT=1000000 BAZAAR_RATE_BURST=1000000 BAZAAR_MAX_STREAMS_PER_CLIENT=64
for s in catalog accounts web; do
  BAZAAR_DATABASE_URL="${conninfo/dbname=postgres/dbname=bench_$s}" "$B" serve "$s" --port "${port[$s]}" > "$work/$s.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do grep -q "listening on" "$work/$s.log" && break; sleep 0.05; done
done
BAZAAR_UPSTREAMS=catalog,accounts,web "$B" gateway --port "$gw_port" > "$work/gateway.log" 2>&1 &
pids+=($!)
g=http://127.0.0.1:$gw_port
# Ready when both answer: the gateway has read the catalog's and the web app's schemas.
for _ in $(seq 600); do curl -sf "$g/v1/products?page.pageSize=1" > /dev/null && curl -sf "$g/" > /dev/null && break; sleep 0.05; done
id=$(curl -s "$g/v1/products?page.pageSize=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["products"][0]["id"])') \
  || { echo "bench-web: no product through the gateway"; tail -5 "$work/gateway.log"; exit 1; }
for path in / /search?q=lamp "/products/$id"; do
  curl -sf "$g$path" | grep -q "</html>" \
    || { echo "bench-web: $path does not answer a page"; tail -5 "$work/web.log" "$work/gateway.log"; exit 1; }
done
echo "bench-web: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}')"
run() {  # run PATH -> "req/s p99"; a run with any answer but 2xx is not a result
  local out
  out=$(wrk -t 2 -c 32 -d "${T}s" --latency "$g$1" 2>&1)
  if grep -q "Non-2xx" <<< "$out"; then echo "bench-web: $1 answered non-2xx:" >&2; echo "$out" >&2; exit 1; fi
  awk '/Requests\/sec/ {rps=$2} /^ +99%/ {p99=$2} END {print rps, p99}' <<< "$out"
}
declare -A pages=([home]="/" [search]="/search?q=lamp" [product]="/products/$id")
declare -A apis=([home]="/v1/products?sort=PRODUCT_SORT_NEWEST&page.pageSize=12" [search]="/v1/products?query=lamp&page.pageSize=12" [product]="/v1/products/$id")
for r in $(seq "$ROUNDS"); do
  for k in home search product; do
    read -r pr pp < <(run "${pages[$k]}")
    read -r ar ap < <(run "${apis[$k]}")
    ratio=$(python3 -c "print(f'{$pr / $ar:.2f}')")
    echo "bench-web: round $r: $k: page $pr req/s (p99 $pp), JSON $ar req/s (p99 $ap), page/JSON $ratio"
  done
  kill -0 "${pids[-1]}" 2> /dev/null || { echo "bench-web: the gateway died"; tail -20 "$work/gateway.log"; exit 1; }
done
