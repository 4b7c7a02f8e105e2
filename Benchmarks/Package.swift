// swift-tools-version:6.0
// Benchmarks live in their own package so that the product never links the peers they measure
// against (swift-protobuf here).
import PackageDescription

let package = Package(
    name: "BazaarBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Bazaar", path: ".."),
        .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
    ],
    targets: [
        // swift-protobuf's code for the same shop protos, generated once by protoc-gen-swift and committed.
        .target(name: "SwiftProtobufShop", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        .executableTarget(
            name: "CodecBenchmark",
            dependencies: [
                "SwiftProtobufShop",
                .product(name: "ShopAPI", package: "Bazaar"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]),
        // Closed-loop BenchmarkService load over the mesh transport (the Bazaar side of the mTLS comparison).
        .executableTarget(
            name: "RPCLoadClient",
            dependencies: [
                .product(name: "BazaarTransport", package: "Bazaar"),
                .product(name: "GRPCProtos", package: "Bazaar"),
            ]),
    ]
)
