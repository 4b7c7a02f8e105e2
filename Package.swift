// swift-tools-version:6.0
import PackageDescription

/// One `.systemLibrary` target per Debian C library. The modulemap and a shim
/// header live in `Sources/CBazaar<Lib>/`; `scripts/install-deps.sh` installs them.
func cLibrary(_ name: String, pkgConfig: String?, apt: [String]) -> Target {
    .systemLibrary(name: name, path: "Sources/\(name)", pkgConfig: pkgConfig, providers: [.apt(apt)])
}

let package = Package(
    name: "Bazaar",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "bazaar-codegen", targets: ["bazaar-codegen"]),
        .executable(name: "bazaar", targets: ["bazaar"]),
        .executable(name: "interop-server", targets: ["interop-server"]),
        .executable(name: "interop-client", targets: ["interop-client"]),
        .library(name: "BazaarWire", targets: ["BazaarWire"]),
        .library(name: "BazaarCore", targets: ["BazaarCore"]),
        .library(name: "BazaarTransport", targets: ["BazaarTransport"]),
        .library(name: "BazaarMesh", targets: ["BazaarMesh"]),
        .library(name: "BazaarTelemetry", targets: ["BazaarTelemetry"]),
        .library(name: "BazaarPostgres", targets: ["BazaarPostgres"]),
        .library(name: "BazaarRedis", targets: ["BazaarRedis"]),
        .library(name: "BazaarAuth", targets: ["BazaarAuth"]),
        .library(name: "ShopAPI", targets: ["ShopAPI"]),
        .library(name: "GRPCProtos", targets: ["GRPCProtos"]),
    ],
    dependencies: [
        // The one Swift package the product links: command-line parsing for the executables.
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
    ],
    targets: [
        // C engines from Debian.
        cLibrary("CBazaarProtobufC", pkgConfig: "libprotobuf-c", apt: ["libprotobuf-c-dev"]),
        cLibrary("CBazaarNghttp2", pkgConfig: "libnghttp2", apt: ["libnghttp2-dev"]),
        cLibrary("CBazaarOpenSSL", pkgConfig: "openssl", apt: ["libssl-dev"]),
        cLibrary("CBazaarEvent", pkgConfig: "libevent", apt: ["libevent-dev"]),
        cLibrary("CBazaarPQ", pkgConfig: "libpq", apt: ["libpq-dev"]),
        cLibrary("CBazaarHiredis", pkgConfig: "hiredis", apt: ["libhiredis-dev"]),
        cLibrary("CBazaarArgon2", pkgConfig: "libargon2", apt: ["libargon2-dev"]),
        cLibrary("CBazaarZlib", pkgConfig: "zlib", apt: ["zlib1g-dev"]),
        cLibrary("CBazaarHTTPParser", pkgConfig: nil, apt: ["libhttp-parser-dev"]),

        // The IDL compiler: parser -> resolved model -> emitters. Nothing at run time.
        .target(name: "BazaarCodeGen", path: "codegen/BazaarCodeGen"),
        .executableTarget(name: "bazaar-codegen", dependencies: ["BazaarCodeGen"], path: "codegen/bazaar-codegen"),

        // The protobuf-c message runtime.
        .target(name: "BazaarWire", dependencies: ["CBazaarProtobufC"]),
        // Status, metadata, call options, method descriptors: no I/O.
        .target(name: "BazaarCore", dependencies: ["BazaarWire"]),
        // Event loops, sockets, TLS (OpenSSL), HTTP/2 (nghttp2) and gRPC framing: the mesh transport.
        .target(name: "BazaarTransport",
                dependencies: ["BazaarCore", "CBazaarEvent", "CBazaarNghttp2", "CBazaarOpenSSL", "CBazaarZlib", "CBazaarHTTPParser"],
                // All transport state is confined to its event loop's thread, so the runtime's dynamic
                // exclusivity checks only cost time: about 5k instructions per call (callgrind).
                swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]),

        // Generated code (DO NOT EDIT; `make generate` recreates it).
        // Mesh: discovery, balancing, health, reflection, retries, breakers, bulkheads. It drives
        // the transport's channels (one per endpoint) and runs evdns on the transport's loops.
        .target(name: "BazaarMesh", dependencies: ["BazaarCore", "BazaarTransport", "GRPCProtos", "CBazaarEvent"]),
        // Telemetry: metrics and their exposition, JSON logs, tracing with OTLP export.
        .target(name: "BazaarTelemetry", dependencies: ["BazaarCore", "BazaarTransport", "OTLPProtos", "CBazaarEvent"]),
        // Data: PostgreSQL through libpq, non-blocking on the transport's loops.
        .target(name: "BazaarPostgres", dependencies: ["BazaarCore", "BazaarTransport", "CBazaarPQ"]),
        .target(name: "BazaarRedis", dependencies: ["BazaarCore", "BazaarTransport", "CBazaarHiredis"]),
        // Passwords (argon2id) and access tokens (JWS EdDSA): for accounts and the gateway.
        .target(name: "BazaarAuth", dependencies: ["BazaarCore", "CBazaarArgon2", "CBazaarOpenSSL"]),
        // Sending mail: a small SMTP client for the notifications service.
        .target(name: "BazaarSMTP"),
        .target(name: "COTLPProtos", dependencies: ["CBazaarProtobufC"]),
        .target(name: "OTLPProtos", dependencies: ["COTLPProtos", "BazaarWire", "BazaarCore"]),
        .target(name: "CWellKnownTypes", dependencies: ["CBazaarProtobufC"]),
        .target(name: "WellKnownTypes", dependencies: ["CWellKnownTypes", "BazaarWire", "BazaarCore"]),
        .target(name: "CGRPCProtos", dependencies: ["CBazaarProtobufC", "CWellKnownTypes"]),
        .target(name: "GRPCProtos", dependencies: ["CGRPCProtos", "WellKnownTypes", "BazaarWire", "BazaarCore"]),
        .target(name: "CShopAPI", dependencies: ["CBazaarProtobufC", "CWellKnownTypes"]),
        .target(name: "ShopAPI", dependencies: ["CShopAPI", "WellKnownTypes", "BazaarWire", "BazaarCore"]),

        // gRPC's interop TestService and BenchmarkService, and the interop client's test cases.
        .target(name: "BazaarInterop", dependencies: ["BazaarCore", "BazaarTransport", "GRPCProtos"]),
        .executableTarget(name: "interop-server", dependencies: [
            "BazaarInterop", "BazaarTransport", "BazaarMesh", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(name: "interop-client", dependencies: [
            "BazaarInterop", "BazaarTransport", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        // The edge gateway: REST/JSON (and gRPC-Web) to RPCs, routes from the IDL.
        .target(name: "BazaarGateway", dependencies: ["BazaarCore", "BazaarWire", "BazaarTransport", "BazaarAuth", "CBazaarProtobufC"]),
        // The shop's services: business logic on the data layer, behind the generated protocols.
        // They see the mesh only through generated clients (any ClientTransport).
        .target(name: "ShopKit", dependencies: ["ShopAPI", "WellKnownTypes", "BazaarCore", "BazaarPostgres", "BazaarRedis", "BazaarTelemetry"]),
        .target(name: "Catalog", dependencies: ["ShopKit", "ShopAPI", "BazaarAuth", "BazaarPostgres", "BazaarTelemetry"]),
        .target(name: "Accounts", dependencies: ["ShopKit", "ShopAPI", "BazaarAuth", "BazaarPostgres", "BazaarTelemetry"]),
        .target(name: "Cart", dependencies: ["ShopKit", "ShopAPI", "BazaarAuth", "BazaarRedis", "BazaarTelemetry"]),
        .target(name: "Orders", dependencies: ["ShopKit", "ShopAPI", "BazaarAuth", "BazaarPostgres", "BazaarRedis", "BazaarTelemetry"]),
        .target(name: "Notifications", dependencies: ["ShopKit", "ShopAPI", "BazaarAuth", "BazaarPostgres", "BazaarRedis", "BazaarSMTP", "BazaarTelemetry"]),
        // The one CLI: certs, jwt, password, serve <service>, seed, load.
        .executableTarget(name: "bazaar", dependencies: [
            "BazaarTransport", "BazaarAuth", "BazaarMesh", "BazaarTelemetry", "BazaarPostgres", "BazaarRedis",
            "ShopKit", "ShopAPI", "Catalog", "Accounts", "Cart", "Orders", "Notifications", "BazaarGateway",
            .product(name: "ArgumentParser", package: "swift-argument-parser")]),

        // Test-only generated code for the conformance and oracle tests.
        .target(name: "CConformanceProtos", dependencies: ["CBazaarProtobufC", "CWellKnownTypes"],
                path: "Tests/Generated/CConformanceProtos"),
        .target(name: "ConformanceProtos", dependencies: ["CConformanceProtos", "WellKnownTypes", "BazaarWire", "BazaarCore"],
                path: "Tests/Generated/ConformanceProtos"),
        .executableTarget(name: "wire-conformance-driver",
                          dependencies: ["ConformanceProtos", "ShopAPI", "GRPCProtos", "BazaarWire"],
                          path: "Tests/WireConformanceDriver"),

        // Replicas and load for the mesh's integration tests (tests/fixtures protos only).
        .executableTarget(name: "mesh-test", dependencies: [
            "BazaarMesh", "BazaarTelemetry", "BazaarTransport", "ConformanceProtos", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        // Fuzz targets for every parser that reads network bytes; the libFuzzer driver (`make fuzz`,
        // a corpus replayer in normal builds) and the replay test in `make test` share them.
        .target(name: "FuzzTargets", dependencies: ["ConformanceProtos", "ShopAPI", "BazaarWire", "BazaarCore", "BazaarTransport",
                                                    "BazaarAuth", "BazaarRedis", "CBazaarHiredis", "ShopKit", "BazaarSMTP",
                                                    "BazaarPostgres", "CBazaarPQ"],
                path: "Tests/Fuzz/Targets"),
        .executableTarget(name: "bazaar-fuzz", dependencies: ["FuzzTargets"], path: "Tests/Fuzz/Driver"),
        .testTarget(name: "FuzzReplayTests", dependencies: ["FuzzTargets"]),

        .testTarget(name: "BazaarCodeGenTests", dependencies: ["BazaarCodeGen"]),
        .testTarget(name: "BazaarCoreTests", dependencies: ["BazaarCore", "GRPCProtos", "ShopAPI"]),
        .testTarget(name: "BazaarMeshTests", dependencies: ["BazaarMesh", "BazaarTransport", "BazaarCore", "GRPCProtos"]),
        .testTarget(name: "BazaarTelemetryTests", dependencies: ["BazaarTelemetry", "BazaarCore"]),
        .testTarget(name: "BazaarPostgresTests", dependencies: ["BazaarPostgres", "BazaarTransport"]),
        .testTarget(name: "BazaarRedisTests", dependencies: ["BazaarRedis", "BazaarTransport"]),
        .testTarget(name: "BazaarAuthTests", dependencies: ["BazaarAuth", "BazaarCore", "ShopAPI"]),
        .testTarget(name: "BazaarGatewayTests", dependencies: ["BazaarGateway", "BazaarCore", "BazaarWire", "ShopAPI"]),
        .testTarget(name: "ShopTests", dependencies: ["ShopKit", "Orders", "BazaarSMTP", "ShopAPI", "WellKnownTypes", "BazaarCore"]),
        .testTarget(name: "BazaarTransportTests", dependencies: ["BazaarTransport", "BazaarCore", "BazaarWire"]),
        .testTarget(name: "BazaarWireTests",
                    dependencies: ["BazaarWire", "ConformanceProtos", "ShopAPI", "GRPCProtos", "WellKnownTypes"]),
    ]
)
