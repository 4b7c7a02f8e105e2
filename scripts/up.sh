#!/usr/bin/env bash
# `make up`: builds Bazaar and runs what exists of it.
#
# The shop services and the gateway arrive with their own issues. Until then this builds every
# target, checks that generated code is current, prints the shop's API contract, makes a
# development mesh PKI (`bazaar certs`, once, in .run/certs) and access-token keys (.run/jwt),
# starts PostgreSQL (.run/postgres, port PGPORT) and Redis (.run/redis, port REDIS_PORT) as plain
# processes, and runs the RPC core's demo server (grpc.testing.TestService and BenchmarkService,
# with health and reflection) over mutual TLS in the foreground. Ctrl-C (or SIGTERM) shuts the
# server down gracefully and stops the data stores.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-8443}
PGPORT=${PGPORT:-55432}
REDIS_PORT=${REDIS_PORT:-56379}
echo "up: building"
swift build 2>&1 | grep -E 'error|Build' | tail -2
echo "up: checking that generated code matches proto/"
bash scripts/generate.sh .build/debug/bazaar-codegen --check
echo
echo "up: the shop API (proto/shop/v1):"
echo
.build/debug/bazaar-codegen -I proto -I /usr/include --describe $(cd proto && ls shop/v1/*.proto)
mkdir -p .run
if [ ! -f .run/certs/ca.pem ]; then
  .build/debug/bazaar certs --dir .run/certs demo client
fi
[ -f .run/jwt/jwt-key.pem ] || .build/debug/bazaar jwt keygen --dir .run/jwt
echo
echo "up: PostgreSQL: $(bash scripts/postgres.sh start .run/postgres "$PGPORT")"
mkdir -p .run/redis
if ! redis-cli -p "$REDIS_PORT" ping > /dev/null 2>&1; then
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$PWD/.run/redis" --appendonly yes --daemonize yes \
    --pidfile "$PWD/.run/redis/redis.pid" --logfile "$PWD/.run/redis/redis.log"
fi
echo "up: Redis: 127.0.0.1:$REDIS_PORT (data in .run/redis)"
stop_stores() {
  bash scripts/postgres.sh stop .run/postgres
  redis-cli -p "$REDIS_PORT" shutdown > /dev/null 2>&1 || true
}
trap stop_stores EXIT
echo
echo "up: the shop services are not in yet (issue 7); running the mesh demo server on port $PORT (mTLS)."
echo "up: it serves grpc.health.v1.Health and server reflection, so grpcurl-style tools can list it."
echo "up: try it:  .build/debug/interop-client --server_port $PORT --use_tls true --tls_ca_file .run/certs/ca.pem \\"
echo "               --tls_cert_file .run/certs/client.pem --tls_key_file .run/certs/client-key.pem --test_case all"
.build/debug/interop-server --port "$PORT" --use_tls true --tls_cert_file .run/certs/demo.pem \
  --tls_key_file .run/certs/demo-key.pem --tls_ca_file .run/certs/ca.pem
