import BazaarCore
import BazaarTransport

/// One service process on the mesh, set up the way the shop's services are, for a service of your
/// own:
///
/// ```swift
/// try await MeshServer(service: "hello", serving: [Greeter()]).run()
/// ```
///
/// - mutual TLS as `spiffe://<trust domain>/<service>` with the files `bazaar certs` makes in
///   `BAZAAR_TLS_DIR` (or `BAZAAR_TLS_CERT`, `BAZAAR_TLS_KEY`, `BAZAAR_TLS_CA`); plaintext only
///   with `BAZAAR_PLAINTEXT=true`;
/// - `BAZAAR_HOST` (127.0.0.1) and `BAZAAR_PORT` (0: any free port, printed when listening);
/// - health and server reflection beside the services (the gateway learns the API through
///   reflection; `BAZAAR_REFLECTION=false` turns it off), and the plaintext probe port
///   `BAZAAR_HEALTH_PORT` when set;
/// - drains on SIGTERM or SIGINT (`BAZAAR_DRAIN_DELAY`, `BAZAAR_DRAIN_TIMEOUT`).
public struct MeshServer: Sendable {
    public let service: String
    public let configuration: ServerConfiguration
    let server: RPCServer
    let probe: RPCServer?
    public let health: HealthService

    public init(
        service: String, serving services: [any RPCService], interceptors: [any RPCInterceptor] = [],
        environment: [String: String] = Environment.current
    ) throws(RPCError) {
        let env = Environment(environment, upstream: nil)
        let host = env["HOST"] ?? "127.0.0.1"
        let port = try env.int("PORT", 0...65535) ?? 0
        var config = ServerConfiguration(
            host: host, port: port,
            security: try MeshServerEnvironment.security(service: service, environment: environment))
        config.handleSignals = true
        try MeshServerEnvironment.apply(to: &config, environment: environment)
        let (health, all) = try MeshServerEnvironment.standardServices(serving: services, environment: environment)
        do {
            server = try RPCServer(configuration: config, services: all, interceptors: interceptors)
        } catch {
            throw RPCError(error)
        }
        probe = try MeshServerEnvironment.healthProbeServer(health, host: host, environment: environment)
        self.service = service
        self.health = health
        configuration = config
    }

    /// Serves until SIGTERM, SIGINT or cancellation, then drains. `onListening` gets the port
    /// (by default a line `<service> listening on HOST:PORT` goes to standard error).
    public func run(onListening: (@Sendable (Int) -> Void)? = nil) async throws {
        let name = service
        let host = configuration.host
        let announce = onListening ?? { port in diagnostic("\(name) listening on \(host):\(port)") }
        try await withThrowingTaskGroup(of: Void.self) { group in
            if let probe { group.addTask { try await probe.run() } }
            try await server.run(onListening: announce)
            probe?.shutdown()
            group.cancelAll()
        }
    }
}
