#!/usr/bin/env bash
# `make up`: builds Bazaar and runs the shop on this machine, in the background.
#
# Makes a development mesh PKI (.run/certs) and access-token keys (.run/jwt) once; starts
# PostgreSQL (.run/postgres, port PGPORT) and Redis (.run/redis, port REDIS_PORT) as plain
# processes, an SMTP sink that writes mail into .run/mail (Debian's aiosmtpd), the five
# services, the storefront (web) and the gateway, each under scripts/supervise.sh (restarted if it crashes), logs in .run/logs;
# seeds the demo data, and prints how to use it. `make down` (scripts/down.sh) stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
PGPORT=${PGPORT:-55432}
REDIS_PORT=${REDIS_PORT:-56379}
SMTP_PORT=${SMTP_PORT:-2525}
SERVICES=(catalog accounts cart notifications orders web)
declare -A PORT=([catalog]=9101 [accounts]=9102 [cart]=9103 [orders]=9104 [notifications]=9105 [web]=9106)
declare -A METRICS=([catalog]=9201 [accounts]=9202 [cart]=9203 [orders]=9204 [notifications]=9205 [web]=9206)
# Release binaries: the shop as it runs in production (a debug build serves a mixed workload at
# about 0.4x the rate). `make test` checks generated code against proto/; nothing here does.
BAZAAR=$PWD/.build/release/bazaar
started=$(date +%s)

step() { echo "up: $*"; }
mkdir -p .run/logs .run/pids .run/mail/tmp .run/mail/new .run/mail/cur

step "building release binaries (about 2.5 minutes the first time on 2 cores; seconds after that)"
set +o pipefail
swift build -c release --product bazaar 2>&1 | grep -E 'error|Build' | tail -2
set -o pipefail
[ -x "$BAZAAR" ] || { echo "up: the build failed (run: swift build -c release --product bazaar)"; exit 1; }

# Anything left from an earlier `make up` goes first, so that a re-run is a clean restart.
bash scripts/down.sh --keep-stores > /dev/null 2>&1 || true

for s in "${SERVICES[@]}" gateway client; do
  [ -f ".run/certs/$s.pem" ] || { "$BAZAAR" certs --dir .run/certs "${SERVICES[@]}" gateway client > /dev/null; break; }
done
[ -f .run/jwt/jwt-key.pem ] || "$BAZAAR" jwt keygen --dir .run/jwt > /dev/null

conninfo=$(bash scripts/postgres.sh start .run/postgres "$PGPORT")
step "PostgreSQL on 127.0.0.1:$PGPORT (data in .run/postgres)"
for db in catalog accounts orders notifications; do
  if [ -z "$(psql "$conninfo" -Atc "SELECT 1 FROM pg_database WHERE datname = 'bazaar_$db'")" ]; then
    psql "$conninfo" -qc "CREATE DATABASE bazaar_$db" > /dev/null
  fi
done
mkdir -p .run/redis
if ! redis-cli -p "$REDIS_PORT" ping > /dev/null 2>&1; then
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$PWD/.run/redis" --appendonly yes --daemonize yes \
    --pidfile "$PWD/.run/redis/redis.pid" --logfile "$PWD/.run/redis/redis.log"
fi
step "Redis on 127.0.0.1:$REDIS_PORT (data in .run/redis)"
if ! (exec 3<> "/dev/tcp/127.0.0.1/$SMTP_PORT") 2> /dev/null; then
  setsid /usr/bin/python3 -m aiosmtpd -n -l "127.0.0.1:$SMTP_PORT" -c aiosmtpd.handlers.Mailbox "$PWD/.run/mail" \
    > .run/logs/smtp.log 2>&1 < /dev/null &
  echo $! > .run/pids/smtp.pid
fi
step "SMTP sink on 127.0.0.1:$SMTP_PORT (mail lands in .run/mail as a Maildir)"

export BAZAAR_TLS_DIR=$PWD/.run/certs BAZAAR_REDIS_ADDR=127.0.0.1:$REDIS_PORT BAZAAR_SMTP_ADDR=127.0.0.1:$SMTP_PORT \
  BAZAAR_JWT_PUBLIC_KEY=$PWD/.run/jwt/jwt-pub.pem BAZAAR_JWT_PRIVATE_KEY=$PWD/.run/jwt/jwt-key.pem OTEL_TRACES_EXPORTER=none
for s in "${SERVICES[@]}"; do
  : > ".run/logs/$s.log"
  BAZAAR_DATABASE_URL="${conninfo/dbname=postgres/dbname=bazaar_$s}" BAZAAR_METRICS_PORT=${METRICS[$s]} BAZAAR_CONSUMER_NAME=$s-local \
    setsid bash scripts/supervise.sh "$s" "$PWD/.run/logs/$s.log" -- "$BAZAAR" serve "$s" --port "${PORT[$s]}" < /dev/null > /dev/null 2>&1 &
  echo $! > ".run/pids/$s.pid"
done
for s in "${SERVICES[@]}"; do
  for _ in $(seq 300); do
    grep -q "listening on" ".run/logs/$s.log" 2> /dev/null && break
    if grep -q "cannot start" ".run/logs/$s.log" 2> /dev/null; then
      echo "up: $s failed to start:"; tail -5 ".run/logs/$s.log"; exit 1
    fi
    sleep 0.1
  done
  grep -q "listening on" ".run/logs/$s.log" || { echo "up: $s did not start; see .run/logs/$s.log"; exit 1; }
  step "$s on 127.0.0.1:${PORT[$s]} (metrics http://127.0.0.1:${METRICS[$s]}/metrics, log .run/logs/$s.log)"
done

: > .run/logs/gateway.log
GATEWAY_PORT=${GATEWAY_PORT:-8080}
BAZAAR_METRICS_PORT=9200 setsid bash scripts/supervise.sh gateway "$PWD/.run/logs/gateway.log" -- "$BAZAAR" gateway --port "$GATEWAY_PORT" \
  < /dev/null > /dev/null 2>&1 &
echo $! > .run/pids/gateway.pid
for _ in $(seq 300); do grep -q "listening on" .run/logs/gateway.log 2> /dev/null && break; sleep 0.1; done
grep -q "listening on" .run/logs/gateway.log || { echo "up: the gateway did not start; see .run/logs/gateway.log"; exit 1; }
# Ready once it has read every service's schema (by reflection) and seen each healthy.
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$GATEWAY_PORT/readyz" > /dev/null 2>&1 && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$GATEWAY_PORT/readyz" > /dev/null 2>&1 || echo "up: warning: the gateway is not ready yet (see .run/logs/gateway.log)"
step "gateway on http://127.0.0.1:$GATEWAY_PORT (REST/JSON, HTTP/1.1 and h2c; OpenAPI at /openapi.json; log .run/logs/gateway.log)"

step "seeding demo data"
"$BAZAAR" seed --catalog-db "${conninfo/dbname=postgres/dbname=bazaar_catalog}" --accounts-db "${conninfo/dbname=postgres/dbname=bazaar_accounts}" \
  | tail -2 | sed 's/^/up: /'

cat <<EOF

up: the shop is running ($(( $(date +%s) - started )) s). Stop it with: make down
up: the storefront is at http://127.0.0.1:$GATEWAY_PORT/ (the same port as the API); the demo customer
up:   signs in as customer@bazaar.local / customer-pass-123.
up: the back office is at http://127.0.0.1:$GATEWAY_PORT/admin/ (sign in as admin@bazaar.local / admin-pass-123).
up: REST/JSON through the gateway at http://127.0.0.1:$GATEWAY_PORT (every route: curl http://127.0.0.1:$GATEWAY_PORT/openapi.json).
up: try the flows (README.md has them all):

  G=http://127.0.0.1:$GATEWAY_PORT; J='content-type: application/json'
  curl -s "\$G/v1/products?query=lamp&sort=PRODUCT_SORT_PRICE_ASC&page.pageSize=3"
  curl -s -X POST \$G/v1/users -H "\$J" -d '{"email":"you@example.com","password":"a long password"}'
  TOKEN=\$(curl -s -X POST \$G/v1/sessions -H "\$J" -d '{"email":"you@example.com","password":"a long password"}' \\
          | python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')
  curl -s -X POST \$G/v1/cart/items -H "authorization: Bearer \$TOKEN" -H "\$J" -d '{"productId":"<id>","quantity":2}'
  curl -s -X POST \$G/v1/orders -H "authorization: Bearer \$TOKEN" -H "\$J" -d '{"requestId":"first-order",
       "shippingAddress":{"recipient":"Ada","lines":["1 Main St"],"city":"London","postalCode":"N1 9GU","countryCode":"GB"}}'
  curl -sN "\$G/v1/orders/<order-id>:watch" -H "authorization: Bearer \$TOKEN" -H 'accept: text/event-stream'
  curl -s \$G/v1/notifications -H "authorization: Bearer \$TOKEN"          # and the emails: ls .run/mail/new

up: the services also speak gRPC over mutual TLS on 9101-9106 (certificates in .run/certs); bazaar shop --help is a CLI for them.

EOF
