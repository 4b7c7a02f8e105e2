#!/usr/bin/env bash
# Regenerates every committed generated file from the .proto files.
#   scripts/generate.sh CODEGEN            write the files
#   scripts/generate.sh CODEGEN --check    write nothing; fail if anything would change
set -euo pipefail
cd "$(dirname "$0")/.."
CODEGEN=${1:?usage: generate.sh PATH-TO-bazaar-codegen [--check]}
CHECK=${2:-}
WKT=/usr/include
GRPC=/usr/share/grpc-proto
MODULES=(--swift_module google/protobuf/=WellKnownTypes --swift_module grpc/=GRPCProtos
         --swift_module bazaar/=ShopAPI --swift_module google/api/=ShopAPI --swift_module shop/=ShopAPI
         --swift_module conformance/=ConformanceProtos --swift_module meshtest/=ConformanceProtos
         --swift_module opentelemetry/=OTLPProtos)

run() {  # run SWIFT_DIR C_DIR C_MODULE -I... files...
  local swift_dir=$1 c_dir=$2 c_module=$3; shift 3
  "$CODEGEN" $CHECK "${MODULES[@]}" --swift_out "$swift_dir" --c_out "$c_dir" --c_module "$c_module" "$@"
}

# protobuf's well-known types, from Debian's libprotobuf-dev.
run Sources/WellKnownTypes Sources/CWellKnownTypes CWellKnownTypes -I "$WKT" \
  $(cd "$WKT" && ls google/protobuf/*.proto)
# The gRPC protocol protos the mesh serves and the interop tests use, from Debian's grpc-proto.
run Sources/GRPCProtos Sources/CGRPCProtos CGRPCProtos -I "$GRPC" -I "$WKT" \
  grpc/health/v1/health.proto grpc/reflection/v1/reflection.proto grpc/reflection/v1alpha/reflection.proto \
  grpc/testing/empty.proto grpc/testing/messages.proto grpc/testing/test.proto grpc/testing/benchmark_service.proto
# Bazaar's own IDL options and the shop API.
run Sources/ShopAPI Sources/CShopAPI CShopAPI -I proto -I "$WKT" \
  $(cd proto && find . -name '*.proto' -not -path './opentelemetry/*' | sed 's|^\./||' | sort)
# The OTLP trace export messages and service the telemetry exporter sends (our own definitions).
run Sources/OTLPProtos Sources/COTLPProtos COTLPProtos -I proto \
  $(cd proto && find opentelemetry -name '*.proto' | sort)
# Test-only protos for the conformance and oracle tests.
run Tests/Generated/ConformanceProtos Tests/Generated/CConformanceProtos CConformanceProtos \
  -I Tests/Fixtures/proto -I "$WKT" $(cd Tests/Fixtures/proto && find . -name '*.proto' | sed 's|^\./||' | sort)
if [ -z "$CHECK" ]; then echo "generate: done"; else echo "generate: generated code is up to date"; fi
