// swift-tools-version:6.0
import PackageDescription

// `Sources/` is grouped by layer (see README.md and docs/architecture.md):
//   C/          one system-library module per Debian C library, nothing else
//   Generated/  code bazaar-codegen writes from .proto files (DO NOT EDIT, `make generate`)
//   Runtime/    wire, core, transport, mesh, telemetry, data, auth, schema: what every service links
//   Edge/       the HTTP front door's gateway: REST/JSON and gRPC-Web to RPCs
//   Shop/       the shop's services, each assembling itself
//   Interop/    gRPC's interop services and their server and client executables
//   bazaar/     the one CLI
// `scripts/check-layers.sh` (in `make test`) fails on an import that crosses these the wrong way.

/// One `.systemLibrary` target per Debian C library. The modulemap and a shim
/// header live in `Sources/C/CBazaar<Lib>/`; `scripts/install-deps.sh` installs them.
func cLibrary(_ name: String, pkgConfig: String?, apt: [String]) -> Target {
    .systemLibrary(name: name, path: "Sources/C/\(name)", pkgConfig: pkgConfig, providers: [.apt(apt)])
}

/// Generated code for a set of .proto files: the protobuf-c layer `C<name>` and the Swift layer.
func generated(_ name: String, dependsOn: [String]) -> [Target] {
    let cDependencies: [Target.Dependency] = ["CBazaarProtobufC"] + dependsOn.map { .target(name: "C" + $0) }
    let swiftDependencies: [Target.Dependency] =
        [.target(name: "C" + name), "BazaarWire", "BazaarCore"] + dependsOn.map { .target(name: $0) }
    return [
        .target(name: "C" + name, dependencies: cDependencies, path: "Sources/Generated/C\(name)"),
        .target(name: name, dependencies: swiftDependencies, path: "Sources/Generated/\(name)"),
    ]
}

func runtime(_ name: String, _ dependencies: [Target.Dependency]) -> Target {
    .target(name: name, dependencies: dependencies, path: "Sources/Runtime/\(name)")
}

func shop(_ name: String, _ dependencies: [Target.Dependency]) -> Target {
    .target(name: name, dependencies: dependencies, path: "Sources/Shop/\(name)")
}

let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")

let package = Package(
    name: "Bazaar",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "bazaar-codegen", targets: ["bazaar-codegen"]),
        .executable(name: "bazaar", targets: ["bazaar"]),
        .executable(name: "interop-server", targets: ["interop-server"]),
        .executable(name: "interop-client", targets: ["interop-client"]),
        // What generated code needs: messages, well-known types, the IDL options, protobuf-c.
        .library(name: "BazaarWire", targets: ["BazaarWire"]),
        .library(name: "CBazaarProtobufC", targets: ["CBazaarProtobufC"]),
        .library(name: "WellKnownTypes", targets: ["WellKnownTypes", "CWellKnownTypes"]),
        .library(name: "BazaarOptions", targets: ["BazaarOptions", "CBazaarOptions"]),
        .library(name: "GRPCProtos", targets: ["GRPCProtos", "CGRPCProtos"]),
        .library(name: "RPCStatusProtos", targets: ["RPCStatusProtos", "CRPCStatusProtos"]),
        // The runtime services are written on.
        .library(name: "BazaarCore", targets: ["BazaarCore"]),
        .library(name: "BazaarTransport", targets: ["BazaarTransport"]),
        .library(name: "BazaarMesh", targets: ["BazaarMesh"]),
        .library(name: "BazaarTelemetry", targets: ["BazaarTelemetry"]),
        .library(name: "BazaarPostgres", targets: ["BazaarPostgres"]),
        .library(name: "BazaarRedis", targets: ["BazaarRedis"]),
        .library(name: "BazaarAuth", targets: ["BazaarAuth"]),
        .library(name: "BazaarSchema", targets: ["BazaarSchema"]),
        .library(name: "BazaarGateway", targets: ["BazaarGateway"]),
        // What a web front end behind the edge implements (bazaar.web.v1.WebFront).
        .library(name: "BazaarWebProtos", targets: ["BazaarWebProtos"]),
        .library(name: "ShopAPI", targets: ["ShopAPI", "CShopAPI"]),
        // `swift package generate-code`: .proto files to the Swift and C targets' sources.
        .plugin(name: "GenerateCode", targets: ["GenerateCode"]),
    ],
    dependencies: [
        // The one Swift package the product links: command-line parsing for the executables.
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2")
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
        .plugin(
            name: "GenerateCode",
            capability: .command(
                intent: .custom(
                    verb: "generate-code",
                    description: "Generate Swift and protobuf-c sources from the package's .proto files"),
                permissions: [
                    .writeToPackageDirectory(
                        reason: "It writes the generated sources into the targets proto/bazaar-codegen.json names.")
                ]),
            dependencies: ["bazaar-codegen"], path: "codegen/GenerateCode"),

        // Runtime.
        // The protobuf-c message runtime and the proto3 JSON mapping.
        runtime("BazaarWire", ["CBazaarProtobufC"]),
        // Status, metadata, call options, method descriptors: no I/O.
        runtime("BazaarCore", ["BazaarWire"]),
        // Event loops, sockets, TLS (OpenSSL), HTTP/2 (nghttp2) and gRPC framing: the mesh transport.
        // Its classes mark their stored properties `@exclusivity(unchecked)`: all transport state is
        // confined to its loop's thread, and the runtime's dynamic exclusivity checks cost about 4.7k
        // instructions per call (callgrind, BENCHMARKS.md). That replaces -enforce-exclusivity=unchecked,
        // an unsafe flag SwiftPM refuses in a package others depend on.
        runtime(
            "BazaarTransport",
            [
                "BazaarCore", "RPCStatusProtos", "CBazaarEvent", "CBazaarNghttp2", "CBazaarOpenSSL", "CBazaarZlib",
                "CBazaarHTTPParser",
            ]),
        // Mesh: discovery, balancing, health, reflection, retries, breakers, bulkheads. It drives
        // the transport's channels (one per endpoint) and runs evdns on the transport's loops.
        runtime("BazaarMesh", ["BazaarCore", "BazaarTransport", "GRPCProtos", "CBazaarEvent"]),
        // Telemetry: metrics and their exposition, JSON logs, tracing with OTLP export.
        runtime("BazaarTelemetry", ["BazaarCore", "BazaarTransport", "OTLPProtos", "CBazaarEvent"]),
        // Data: PostgreSQL through libpq, non-blocking on the transport's loops.
        runtime("BazaarPostgres", ["BazaarCore", "BazaarTransport", "CBazaarPQ"]),
        runtime("BazaarRedis", ["BazaarCore", "BazaarTransport", "CBazaarHiredis"]),
        // Passwords (argon2id) and access tokens (JWS EdDSA): for accounts and the gateway.
        runtime("BazaarAuth", ["BazaarCore", "BazaarWire", "CBazaarArgon2", "CBazaarOpenSSL"]),
        // Sending mail: a small SMTP client for the notifications service.
        runtime("BazaarSMTP", []),
        // Schemas at run time: protobuf-c descriptors and method tables built from
        // FileDescriptorProtos (server reflection, descriptor sets), for the gateway and `bazaar call`.
        runtime("BazaarSchema", ["BazaarCore", "BazaarWire", "WellKnownTypes", "BazaarOptions", "CBazaarProtobufC"]),

        // Generated code (DO NOT EDIT; `make generate` recreates it).
    ] + generated("WellKnownTypes", dependsOn: [])
        + generated("BazaarOptions", dependsOn: ["WellKnownTypes"])
        + generated("GRPCProtos", dependsOn: ["WellKnownTypes"])
        + generated("RPCStatusProtos", dependsOn: ["WellKnownTypes"])
        + generated("OTLPProtos", dependsOn: [])
        + generated("BazaarWebProtos", dependsOn: ["BazaarOptions"])
        + generated("ShopAPI", dependsOn: ["WellKnownTypes", "BazaarOptions"]) + [

            // Edge: REST/JSON and gRPC-Web to RPCs, routes learned from the services' schemas.
            .target(
                name: "BazaarGateway",
                dependencies: [
                    "BazaarCore", "BazaarWire", "BazaarSchema", "BazaarTransport", "BazaarAuth", "BazaarMesh",
                    "BazaarTelemetry", "BazaarWebProtos", "BazaarOptions",
                ],
                path: "Sources/Edge/BazaarGateway"),

            // The shop's services: business logic on the data layer, behind the generated protocols.
            // They see the mesh only through generated clients (any ClientTransport).
            shop(
                "ShopKit",
                [
                    "ShopAPI", "WellKnownTypes", "BazaarCore", "BazaarAuth", "BazaarPostgres", "BazaarRedis",
                    "BazaarTelemetry",
                ]),
            shop("Catalog", ["ShopKit", "ShopAPI", "BazaarAuth", "BazaarPostgres", "BazaarTelemetry"]),
            shop("Accounts", ["ShopKit", "ShopAPI", "BazaarAuth", "BazaarPostgres", "BazaarTelemetry"]),
            shop("Cart", ["ShopKit", "ShopAPI", "BazaarAuth", "BazaarRedis", "BazaarTelemetry"]),
            shop("Orders", ["ShopKit", "ShopAPI", "BazaarAuth", "BazaarPostgres", "BazaarRedis", "BazaarTelemetry"]),
            shop(
                "Notifications",
                ["ShopKit", "ShopAPI", "BazaarAuth", "BazaarPostgres", "BazaarRedis", "BazaarSMTP", "BazaarTelemetry"]),
            // The storefront and back office: HTML rendered on the server from the services' RPCs.
            shop(
                "Web",
                [
                    "ShopKit", "ShopAPI", "BazaarWebProtos", "BazaarCore", "BazaarWire", "BazaarAuth", "BazaarRedis",
                    "WellKnownTypes",
                ]),

            // gRPC's interop TestService and BenchmarkService, and the interop client's test cases.
            .target(
                name: "BazaarInterop", dependencies: ["BazaarCore", "BazaarTransport", "GRPCProtos"],
                path: "Sources/Interop/BazaarInterop"),
            .executableTarget(
                name: "interop-server",
                dependencies: ["BazaarInterop", "BazaarTransport", "BazaarMesh", argumentParser],
                path: "Sources/Interop/interop-server"),
            .executableTarget(
                name: "interop-client", dependencies: ["BazaarInterop", "BazaarTransport", argumentParser],
                path: "Sources/Interop/interop-client"),

            // The one CLI: certs, jwt, password, serve <service>, gateway, call, seed, load.
            .executableTarget(
                name: "bazaar",
                dependencies: [
                    "BazaarTransport", "BazaarAuth", "BazaarMesh", "BazaarTelemetry", "BazaarPostgres", "BazaarRedis",
                    "BazaarSchema",
                    "ShopKit", "ShopAPI", "Catalog", "Accounts", "Cart", "Orders", "Notifications", "Web",
                    "BazaarWebProtos", "BazaarGateway",
                    argumentParser,
                ]),

            // Test-only generated code for the conformance and oracle tests.
            .target(
                name: "CConformanceProtos", dependencies: ["CBazaarProtobufC", "CWellKnownTypes", "CBazaarOptions"],
                path: "Tests/Generated/CConformanceProtos"),
            .target(
                name: "ConformanceProtos",
                dependencies: ["CConformanceProtos", "WellKnownTypes", "BazaarWire", "BazaarCore", "BazaarOptions"],
                path: "Tests/Generated/ConformanceProtos"),
            .executableTarget(
                name: "wire-conformance-driver",
                dependencies: ["ConformanceProtos", "ShopAPI", "GRPCProtos", "BazaarWire"],
                path: "Tests/WireConformanceDriver"),

            // Replicas and load for the mesh's integration tests (tests/fixtures protos only).
            .executableTarget(
                name: "mesh-test",
                dependencies: [
                    "BazaarMesh", "BazaarTelemetry", "BazaarTransport", "ConformanceProtos", argumentParser,
                ], path: "Tests/MeshTest"),
            // Fuzz targets for every parser that reads network bytes; the libFuzzer driver (`make fuzz`,
            // a corpus replayer in normal builds) and the replay test in `make test` share them.
            .target(
                name: "FuzzTargets",
                dependencies: [
                    "ConformanceProtos", "ShopAPI", "BazaarWire", "BazaarCore", "BazaarTransport",
                    "BazaarAuth", "BazaarRedis", "CBazaarHiredis", "ShopKit", "BazaarSMTP",
                    "BazaarPostgres", "CBazaarPQ", "BazaarSchema", "BazaarGateway", "WellKnownTypes", "Web",
                    "BazaarWebProtos",
                ],
                path: "Tests/Fuzz/Targets"),
            .executableTarget(name: "bazaar-fuzz", dependencies: ["FuzzTargets"], path: "Tests/Fuzz/Driver"),
            .testTarget(name: "FuzzReplayTests", dependencies: ["FuzzTargets"]),

            // What the suites share to wait for events instead of sleeping.
            .target(name: "TestSupport", dependencies: ["BazaarCore"], path: "Tests/TestSupport"),

            .testTarget(name: "BazaarCodeGenTests", dependencies: ["BazaarCodeGen"]),
            .testTarget(
                name: "BazaarCoreTests", dependencies: ["BazaarCore", "GRPCProtos", "ShopAPI", "ConformanceProtos"]),
            .testTarget(
                name: "BazaarMeshTests",
                dependencies: ["BazaarMesh", "BazaarTransport", "BazaarCore", "GRPCProtos", "TestSupport"]),
            .testTarget(name: "BazaarTelemetryTests", dependencies: ["BazaarTelemetry", "BazaarCore"]),
            .testTarget(
                name: "BazaarPostgresTests", dependencies: ["BazaarPostgres", "BazaarTransport", "TestSupport"]),
            .testTarget(name: "BazaarRedisTests", dependencies: ["BazaarRedis", "BazaarTransport", "TestSupport"]),
            .testTarget(name: "BazaarAuthTests", dependencies: ["BazaarAuth", "BazaarCore", "ShopAPI"]),
            .testTarget(
                name: "BazaarGatewayTests",
                dependencies: [
                    "BazaarGateway", "BazaarSchema", "BazaarCore", "BazaarWire", "ShopAPI", "BazaarWebProtos",
                ]),
            .testTarget(
                name: "BazaarSchemaTests",
                dependencies: [
                    "BazaarSchema", "BazaarWire", "BazaarCore", "ShopAPI", "GRPCProtos", "WellKnownTypes",
                    "ConformanceProtos",
                ]),
            .testTarget(
                name: "ShopTests",
                dependencies: ["ShopKit", "Orders", "BazaarSMTP", "ShopAPI", "WellKnownTypes", "BazaarCore"]),
            .testTarget(name: "WebTests", dependencies: ["Web", "WellKnownTypes", "BazaarAuth"]),
            .testTarget(
                name: "BazaarTransportTests",
                dependencies: ["BazaarTransport", "BazaarCore", "BazaarWire", "TestSupport"]),
            .testTarget(
                name: "BazaarWireTests",
                dependencies: ["BazaarWire", "ConformanceProtos", "ShopAPI", "GRPCProtos", "WellKnownTypes"]),
        ]
)
