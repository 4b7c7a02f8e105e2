import ArgumentParser
import BazaarCore
import BazaarInterop
import BazaarMesh
import BazaarTransport
import Glibc

/// gRPC's interop test server: `grpc.testing.TestService` and `grpc.testing.BenchmarkService`,
/// with the standard interop flags, over mutual TLS or (when asked) plaintext h2c; with health and
/// server reflection, so that grpcurl-style tools can explore it.
@main
struct InteropServer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "interop-server",
        abstract:
            "Serve grpc.testing.TestService and BenchmarkService (plus health and reflection) for interop tests and benchmarks.",
        discussion: """
            Plaintext h2c by default, as gRPC's interop servers do; --use_tls=true serves mutual TLS and
            then needs --tls_cert_file, --tls_key_file and --tls_ca_file (files made by `bazaar certs`).
            SIGTERM or SIGINT shuts down gracefully: in-flight calls finish, then the process exits 0.
            """)

    @Option(name: .customLong("port"), help: "Port to listen on (0 picks one and prints it).")
    var port: Int = 10000

    @Option(name: .customLong("host"), help: "Address to bind.")
    var host: String = "0.0.0.0"

    @Option(name: .customLong("use_tls"), help: "Serve mutual TLS (true) or plaintext h2c (false).")
    var useTLS: Bool = false

    @Option(name: .customLong("tls_cert_file"), help: "PEM certificate chain of this server.")
    var certFile: String?

    @Option(name: .customLong("tls_key_file"), help: "PEM private key of this server.")
    var keyFile: String?

    @Option(name: .customLong("tls_ca_file"), help: "PEM CA that client certificates must chain to.")
    var caFile: String?

    @Option(
        name: .customLong("allowed_callers"),
        help: "Comma-separated identities (service names or spiffe:// IDs) allowed to call TestService; default anyone."
    )
    var allowedCallers: String?

    @Option(name: .customLong("trust_domain"), help: "Trust domain for bare names in --allowed_callers.")
    var trustDomain: String = "bazaar.local"

    @Option(name: .customLong("threads"), help: "Event loops (default: one per core).")
    var threads: Int?

    @Option(name: .customLong("drain_timeout_ms"), help: "How long a shutdown waits for in-flight calls.")
    var drainTimeoutMs: Int = 30_000

    @Option(
        name: .customLong("max_connection_idle_ms"), help: "Close connections idle this long (GOAWAY); default never.")
    var maxIdleMs: Int?

    @Option(
        name: .customLong("max_connection_age_ms"), help: "Drain connections older than this (GOAWAY); default never.")
    var maxAgeMs: Int?

    @Option(name: .customLong("max_connection_age_grace_ms"), help: "Time in-flight calls get after max age.")
    var maxAgeGraceMs: Int = 30_000

    @Option(
        name: .customLong("keepalive_min_ping_interval_ms"), help: "Shortest PING interval a client may use (gRFC A8).")
    var minPingIntervalMs: Int = 300_000

    @Option(name: .customLong("keepalive_time_ms"), help: "Ping a client after this long without reads (default 2 h).")
    var keepaliveTimeMs: Int = 7_200_000

    @Option(
        name: .customLong("keepalive_timeout_ms"), help: "Close when a keepalive PING is not answered within this time."
    )
    var keepaliveTimeoutMs: Int = 20_000

    @Option(name: .customLong("max_receive_message_size"), help: "Largest request message, in bytes.")
    var maxReceive: Int = 4 << 20

    mutating func validate() throws {
        if useTLS && (certFile == nil || keyFile == nil || caFile == nil) {
            throw ValidationError("--use_tls=true needs --tls_cert_file, --tls_key_file and --tls_ca_file")
        }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0...65535") }
    }

    func run() throws {
        try runBlocking { try await serve() }
    }

    func serve() async throws {
        let security: TransportSecurity =
            useTLS
            ? .mutualTLS(
                TLSConfiguration(certificateChainFile: certFile, privateKeyFile: keyFile, trustRootsFile: caFile))
            : .plaintext
        var config = ServerConfiguration(host: host, port: port, security: security)
        config.loopCount = threads
        config.handleSignals = true
        config.drainTimeout = .milliseconds(drainTimeoutMs)
        config.keepalive.maxConnectionIdle = maxIdleMs.map { .milliseconds($0) }
        config.keepalive.maxConnectionAge = maxAgeMs.map { .milliseconds($0) }
        config.keepalive.maxConnectionAgeGrace = .milliseconds(maxAgeGraceMs)
        config.keepalive.minimumClientPingInterval = .milliseconds(minPingIntervalMs)
        config.keepalive.interval = .milliseconds(keepaliveTimeMs)
        config.keepalive.timeout = .milliseconds(keepaliveTimeoutMs)
        config.maxReceiveMessageSize = maxReceive
        config.authorization.trustDomain = trustDomain
        if let allowedCallers {
            config.authorization.allowLists["grpc.testing.TestService"] = allowedCallers.split(separator: ",").map(
                String.init)
        }
        try MeshServerEnvironment.apply(to: &config)
        let (_, services) = try MeshServerEnvironment.standardServices(serving: [
            TestServiceImpl(), BenchmarkServiceImpl(),
        ])
        let server = try RPCServer(configuration: config, services: services)
        try await server.run { port in
            print("interop-server: listening on \(host):\(port) (\(useTLS ? "mTLS" : "h2c"))")
            fflush(nil)
        }
        print("interop-server: shut down cleanly")
    }
}
