#!/usr/bin/env bash
# `make up`: builds Bazaar and shows what it serves.
#
# The services, the RPC mesh and the gateway arrive with their own issues; until then this builds
# every target (generator, wire runtime, generated shop API), checks that the generated code is
# current, and prints the shop's API contract from proto/: each method, its HTTP route, who may
# call it, its deadline and whether it is safe to retry.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "up: building"
swift build 2>&1 | grep -E 'error|Build' | tail -2
echo "up: checking that generated code matches proto/"
bash scripts/generate.sh .build/debug/bazaar-codegen --check
echo
echo "up: the shop API (proto/shop/v1):"
echo
.build/debug/bazaar-codegen -I proto -I /usr/include --describe $(cd proto && ls shop/v1/*.proto)
echo "up: no server runs yet: the RPC core (issue 3) and the shop services (issue 7) start here."
