#!/usr/bin/env bash
# Regenerates Benchmarks/Sources/SwiftProtobufShop with swift-protobuf's protoc-gen-swift (1.39),
# the peer the codec benchmark measures against. Run once; the output is committed, because
# building the plugin takes about ten minutes.
set -euo pipefail
cd "$(dirname "$0")/../Benchmarks"
swift build -c release --product protoc-gen-swift
out=$(mktemp -d)
../.venv/bin/python -m grpc_tools.protoc --plugin=protoc-gen-swift="$PWD/.build/release/protoc-gen-swift" \
  -I../proto -I/usr/include --swift_out=Visibility=Public:"$out" shop/v1/common.proto shop/v1/orders.proto
cp "$out/shop/v1/common.pb.swift" Sources/SwiftProtobufShop/shop_v1_common.pb.swift
cp "$out/shop/v1/orders.pb.swift" Sources/SwiftProtobufShop/shop_v1_orders.pb.swift
rm -rf "$out"
