import Accounts
import ArgumentParser
import BazaarAuth
import BazaarCore
import BazaarMesh
import BazaarPostgres
import BazaarRedis
import BazaarTelemetry
import BazaarTransport
import Cart
import Catalog
import Foundation
import Notifications
import Orders
import ShopKit
import Web

/// The shop's services, with the port each listens on by default.
/// `bazaar serve <service>`: one shop service as a process.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one shop service: catalog, accounts, cart, orders, notifications, or the storefront (web).",
        discussion: """
            Configuration comes from the environment (docs/services.md has the full table):
              BAZAAR_DATABASE_URL   libpq conninfo of the service's own database (catalog, accounts, orders, notifications)
              BAZAAR_DATABASE_WAIT  how long to wait for PostgreSQL to come up at start (default 60s)
              BAZAAR_REDIS_ADDR     host:port of Redis (cart, orders' outbox relay, notifications' consumer, web's sessions)
              BAZAAR_<UPSTREAM>_TARGET  where the services it calls are (default 127.0.0.1:<their port>); web calls all five
              BAZAAR_TRUSTED_FORWARDERS  mesh names whose forwarded user and client address are believed (default gateway,web)
              BAZAAR_JWT_PUBLIC_KEY, BAZAAR_JWT_PRIVATE_KEY (accounts)  access-token keys (default .run/jwt/)
              BAZAAR_TLS_DIR or BAZAAR_TLS_CERT/KEY/CA; BAZAAR_PLAINTEXT=true for h2c
            plus the mesh (docs/mesh.md) and telemetry (docs/telemetry.md) settings.
            The process applies its database migrations at startup, prints `bazaar: <service> listening on HOST:PORT`
            on stderr when ready, and drains gracefully on SIGTERM or SIGINT.
            """)

    @Argument(help: "The service to run.")
    var service: ShopService

    @Option(help: "Address to bind (BAZAAR_HOST).")
    var host: String?

    @Option(help: "Port (BAZAAR_PORT; default 9101-9106 by service, 0 picks one).")
    var port: Int?

    func run() throws {
        let service = self.service
        let host = self.host ?? ProcessEnvironment.current["BAZAAR_HOST"] ?? "127.0.0.1"
        let env = ShopEnvironment(ProcessEnvironment.current)
        let port = try self.port ?? env.int("PORT", 0...65535) ?? service.defaultPort
        try runBlocking {
            do {
                try await ShopRunner(service: service, env: env).run(host: host, port: port)
            } catch let e as RPCError {
                // Configuration and startup errors: one clear line, exit status 1.
                diagnostic("bazaar: \(service.rawValue) cannot start: \(e.message)")
                throw ExitCode.failure
            } catch let e as PostgresError {
                diagnostic("bazaar: \(service.rawValue) cannot start: \(e)")
                throw ExitCode.failure
            }
        }
    }
}

extension ShopEnvironment {
    /// `security` for a channel to `service`: the server must present
    /// `spiffe://<trust domain>/<service>`.
    func upstreamSecurity(_ security: TransportSecurity, to service: String) -> TransportSecurity {
        guard case .mutualTLS(var tls) = security else { return security }
        tls.expectedServerIdentity = "spiffe://\(trustDomain)/\(service)"
        return .mutualTLS(tls)
    }
}

/// Builds one service from the environment and runs it with its background work.
struct ShopRunner: Sendable {
    let service: ShopService
    let env: ShopEnvironment

    /// Each service assembles itself (handlers, migrations, background work) in its own module.
    static let assemblies: [ShopService: @Sendable (ShopContext) async throws -> ShopAssembly] = [
        .catalog: CatalogAssembly.assemble,
        .accounts: AccountsAssembly.assemble,
        .cart: CartAssembly.assemble,
        .orders: OrdersAssembly.assemble,
        .notifications: NotificationsAssembly.assemble,
        .web: WebAssembly.assemble,
    ]

    func run(host: String, port: Int) async throws {
        // The process's one group of loops (one per core): the server, the probe port, the
        // metrics endpoint, the database pool, Redis and the channels to other services all run
        // on it, so a call and the work it causes stay on the thread it arrived on.
        try await withEventLoopGroup { loops in try await run(host: host, port: port, loops: loops) }
    }

    private func run(host: String, port: Int, loops: EventLoopGroup) async throws {
        let name = service.rawValue
        let env = self.env
        let telemetry = try await Telemetry.start(service: name, group: loops)
        let logger = telemetry.logger
        var config = ServerConfiguration(
            host: host, port: port, security: try MeshServerEnvironment.security(service: name))
        config.handleSignals = true
        try MeshServerEnvironment.apply(to: &config)
        config.callObserver = telemetry.serverObserver
        config.authorization.trustDomain = env.trustDomain
        let security = config.security
        let trustDomain = config.authorization.trustDomain

        // What the process owns and closes at the end: channels, the pool, Redis clients.
        let owned = Owned()
        let context = ShopContext(
            service: name, env: env, logger: logger, metrics: telemetry.registry,
            database: { durable in
                let conninfo = try env.required("DATABASE_URL", for: name)
                let size = try env.int("DB_POOL_SIZE", 1...200) ?? 10
                let p = PostgresPool(
                    conninfo: durable
                        ? conninfo : PostgresPool.conninfo(conninfo, settings: ["synchronous_commit": "off"]),
                    maxConnections: durable ? size : max(2, size / 4), group: loops,
                    observer: telemetry.databaseObserver(
                        system: "postgresql", namespace: PostgresPool.databaseName(conninfo)))
                owned.pools.withLock { $0.append(p) }
                return p
            },
            redis: {
                let (h, p) = try env.address("REDIS_ADDR", default: "127.0.0.1:6379")!
                let client = RedisClient(host: h, port: p, group: loops)
                owned.redis.withLock { $0.append(client) }
                return client
            },
            upstream: { other in
                let fallback = ShopService(rawValue: other).map { "127.0.0.1:\($0.defaultPort)" }
                guard let target = env["\(other.uppercased())_TARGET"] ?? fallback else {
                    throw RPCError(.invalidArgument, "BAZAAR_\(other.uppercased())_TARGET is required for \(name)")
                }
                let channel = try MeshChannel(
                    target: target, security: env.upstreamSecurity(security, to: other),
                    mesh: try .fromEnvironment(upstream: other),
                    observer: telemetry.clientObserver(upstream: other), group: loops)
                owned.channels.withLock { $0.append(channel) }
                return channel
            })

        let keys = try env.verificationKeys()
        let forwarders = Set(
            (env["TRUSTED_FORWARDERS"] ?? "gateway,web").split(separator: ",").map {
                let s = $0.trimming(" ")
                return s.hasPrefix("spiffe://") ? s : "spiffe://\(trustDomain)/\(s)"
            })
        var authenticator = UserAuthenticator(
            keys: keys, issuer: env["JWT_ISSUER"] ?? "bazaar", audience: env["JWT_AUDIENCE"] ?? "bazaar",
            trustedForwarders: forwarders)
        authenticator.maxTokenLifetime = try env.tokenMaxLifetime()

        let assembly = try await Self.assemblies[service]!(context)
        let (health, services) = try MeshServerEnvironment.standardServices(serving: [assembly.service])
        let server = try RPCServer(
            configuration: config, services: services,
            interceptors: [authenticator, StoreErrorInterceptor(logger: logger)], group: loops)
        let probe = try MeshServerEnvironment.healthProbeServer(health, host: host, group: loops)
        let jobs = assembly.background
        try await withThrowingTaskGroup(of: Void.self) { group in
            // Background work (sweeps, relays, consumers) runs on the loops too, spread over
            // them: its statements and commands then need no hop either.
            for job in jobs { group.addTask(executorPreference: loops.nextLoop()) { await job() } }
            if let probe {
                group.addTask {
                    try await probe.run { port in
                        diagnostic("bazaar: \(name) health probes (plaintext) on \(host):\(port)")
                    }
                }
            }
            try await server.run { port in
                diagnostic("bazaar: \(name) listening on \(host):\(port)")
                logger.info("serving", [("port", .int(Int64(port)))])
            }
            // The server drained (SIGTERM): stop the probe port and the background work too.
            probe?.shutdown()
            group.cancelAll()
        }
        for c in owned.channels.withLock({ $0 }) { await c.shutdown() }
        for r in owned.redis.withLock({ $0 }) { r.close() }
        for p in owned.pools.withLock({ $0 }) { p.close() }
        await telemetry.shutdown()
        diagnostic("bazaar: \(name) shut down cleanly")
    }

    final class Owned: Sendable {
        let channels = Lock<[MeshChannel]>([])
        let pools = Lock<[PostgresPool]>([])
        let redis = Lock<[RedisClient]>([])
    }
}
