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
/// - drains on SIGTERM or SIGINT (`BAZAAR_DRAIN_DELAY`, `BAZAAR_DRAIN_TIMEOUT`);
/// - one event loop per core (``loops``), for the servers and for whatever the services open:
///   give it to their channels and pools, so that a call and its work stay on one thread.
public struct MeshServer: Sendable {
    public let service: String
    public let configuration: ServerConfiguration
    let server: RPCServer
    let probe: RPCServer?
    public let health: HealthService
    /// The process's event loops: pass them to the `MeshChannel`s, `PostgresPool`s and
    /// `RedisClient`s the services use.
    public let loops: EventLoopGroup
    private let ownsLoops: Bool

    /// - Parameter group: the process's loops, when the caller made them (and shuts them down
    ///   after `run`); by default the server makes one loop per core and stops them when `run` ends.
    public init(
        service: String, serving services: [any RPCService], interceptors: [any ServerInterceptor] = [],
        environment: [String: String] = Environment.current, group: EventLoopGroup? = nil
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
        let loops = group ?? EventLoopGroup()
        do {
            server = try RPCServer(configuration: config, services: all, interceptors: interceptors, group: loops)
            probe = try MeshServerEnvironment.healthProbeServer(
                health, host: host, environment: environment, group: loops)
        } catch {
            if group == nil { loops.shutdown() }
            throw RPCError(error)
        }
        self.loops = loops
        ownsLoops = group == nil
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
        // After the servers (and the probe's task) have ended.
        defer { if ownsLoops { loops.shutdown() } }
        try await withThrowingTaskGroup(of: Void.self) { group in
            if let probe { group.addTask { try await probe.run() } }
            try await server.run(onListening: announce)
            probe?.shutdown()
            group.cancelAll()
        }
    }
}
