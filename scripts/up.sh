#!/usr/bin/env bash
# `make up`: builds Bazaar and runs what exists of it.
#
# The shop services and the gateway arrive with their own issues. Until then this builds every
# target, checks that generated code is current, prints the shop's API contract, makes a
# development mesh PKI (`bazaar certs`, once, in .run/certs), and runs the RPC core's demo server
# (grpc.testing.TestService and BenchmarkService, with health and reflection) over mutual TLS in
# the foreground. Ctrl-C (or
# SIGTERM) shuts it down gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-8443}
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
echo
echo "up: the shop services are not in yet (issue 7); running the mesh demo server on port $PORT (mTLS)."
echo "up: it serves grpc.health.v1.Health and server reflection, so grpcurl-style tools can list it."
echo "up: try it:  .build/debug/interop-client --server_port $PORT --use_tls true --tls_ca_file .run/certs/ca.pem \\"
echo "               --tls_cert_file .run/certs/client.pem --tls_key_file .run/certs/client-key.pem --test_case all"
exec .build/debug/interop-server --port "$PORT" --use_tls true --tls_cert_file .run/certs/demo.pem \
  --tls_key_file .run/certs/demo-key.pem --tls_ca_file .run/certs/ca.pem
