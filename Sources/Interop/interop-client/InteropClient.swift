import ArgumentParser
import BazaarCore
import BazaarInterop
import BazaarTransport

/// gRPC's interop test client: runs the standard test cases against any gRPC server.
@main
struct InteropClient: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "interop-client",
        abstract: "Run gRPC interop test cases against a server.",
        discussion: "Test cases: \(InteropTestCases.all.joined(separator: ", ")), or all. Exits 1 when any case fails.")

    @Option(name: .customLong("server_host"), help: "Server host.")
    var serverHost: String = "localhost"

    @Option(name: .customLong("server_port"), help: "Server port.")
    var serverPort: Int = 10000

    @Option(
        name: .customLong("server_host_override"),
        help: "Name for SNI and certificate checks, instead of --server_host.")
    var hostOverride: String?

    @Option(name: .customLong("use_tls"), help: "Connect with mutual TLS (true) or plaintext h2c (false).")
    var useTLS: Bool = false

    @Option(name: .customLong("tls_ca_file"), help: "PEM CA the server certificate must chain to.")
    var caFile: String?

    @Option(name: .customLong("tls_cert_file"), help: "PEM client certificate (mutual TLS).")
    var certFile: String?

    @Option(name: .customLong("tls_key_file"), help: "PEM client key.")
    var keyFile: String?

    @Option(
        name: .customLong("expected_server_identity"),
        help: "SPIFFE ID the server must present, instead of a host-name check.")
    var expectedIdentity: String?

    @Option(name: .customLong("test_case"), help: "A test case, a comma-separated list, or all.")
    var testCase: String = "large_unary"

    @Option(
        name: .customLong("server_checks_compression"),
        help: "Whether the server verifies expect_compressed (false for grpcio servers, which cannot see it).")
    var serverChecksCompression: Bool = true

    mutating func validate() throws {
        if useTLS && caFile == nil { throw ValidationError("--use_tls=true needs --tls_ca_file") }
        if (certFile == nil) != (keyFile == nil) {
            throw ValidationError("--tls_cert_file and --tls_key_file go together")
        }
    }

    func run() throws {
        try runBlocking { try await runCases() }
    }

    func runCases() async throws {
        let security: TransportSecurity =
            useTLS
            ? .mutualTLS(
                TLSConfiguration(
                    certificateChainFile: certFile, privateKeyFile: keyFile, trustRootsFile: caFile,
                    expectedServerIdentity: expectedIdentity, serverHostname: hostOverride))
            : .plaintext
        let channel = try GRPCChannel(
            configuration: ChannelConfiguration(
                endpoints: [Endpoint(host: serverHost, port: serverPort)],
                security: security))
        let cases = InteropTestCases(transport: channel, serverChecksCompression: serverChecksCompression)
        let names = testCase == "all" ? InteropTestCases.all : testCase.split(separator: ",").map(String.init)
        var failed = 0
        for name in names {
            do {
                try await cases.run(name)
                print("PASS \(name)")
            } catch {
                failed += 1
                print("FAIL \(name): \(error)")
            }
        }
        await channel.shutdown()
        if failed > 0 { throw ExitCode(1) }
    }
}
