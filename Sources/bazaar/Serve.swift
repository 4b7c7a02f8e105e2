import Accounts
import ArgumentParser
import BazaarAuth
import BazaarCore
import BazaarMesh
import BazaarPostgres
import BazaarRedis
import BazaarSMTP
import BazaarTelemetry
import BazaarTransport
import Cart
import Catalog
import Foundation
import Notifications
import Orders
import ShopAPI
import ShopKit

/// The shop's services, with the port each listens on by default.
enum ShopService: String, ExpressibleByArgument, CaseIterable, Sendable {
    case catalog, accounts, cart, orders, notifications

    var defaultPort: Int {
        switch self {
        case .catalog: 9101
        case .accounts: 9102
        case .cart: 9103
        case .orders: 9104
        case .notifications: 9105
        }
    }
}

/// `bazaar serve <service>`: one shop service as a process.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one shop service: catalog, accounts, cart, orders or notifications.",
        discussion: """
            Configuration comes from the environment (docs/services.md has the full table):
              BAZAAR_DATABASE_URL   libpq conninfo of the service's own database (catalog, accounts, orders, notifications)
              BAZAAR_REDIS_ADDR     host:port of Redis (cart, orders' outbox relay, notifications' consumer)
              BAZAAR_<UPSTREAM>_TARGET  where catalog, cart and accounts are (default 127.0.0.1:<their port>)
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

    @Option(help: "Port (BAZAAR_PORT; default 9101-9105 by service, 0 picks one).")
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

/// Reads the services' BAZAAR_* settings, failing with the variable's name on bad values.
struct ShopEnvironment: Sendable {
    let values: [String: String]
    let typed: Environment

    init(_ values: [String: String]) {
        self.values = values
        typed = Environment(values, upstream: nil)
    }

    subscript(_ key: String) -> String? { typed[key] }
    func int(_ key: String, _ range: ClosedRange<Int>) throws(RPCError) -> Int? { try typed.int(key, range) }
    func bool(_ key: String) throws(RPCError) -> Bool? { try typed.bool(key) }
    func duration(_ key: String) throws(RPCError) -> Duration? { try typed.duration(key) }

    func required(_ key: String, for service: ShopService) throws(RPCError) -> String {
        guard let v = typed[key], !v.isEmpty else { throw RPCError(.invalidArgument, "BAZAAR_\(key) is required for \(service.rawValue)") }
        return v
    }

    /// The deployment profile (BAZAAR_ENV): `development` (the default) or `production`, which
    /// refuses test-only components unless each is allowed explicitly.
    func isProduction() throws(RPCError) -> Bool {
        switch typed["ENV"] ?? "development" {
        case "development": return false
        case "production": return true
        case let other: throw RPCError(.invalidArgument, "BAZAAR_ENV='\(other)': expected development or production")
        }
    }

    /// The payment provider (BAZAAR_PAYMENT_PROVIDER). The only one built in is `test`, which
    /// pays every order without charging anyone: the default in development, refused in
    /// production unless BAZAAR_ALLOW_TEST_PAYMENTS=true (a staging cluster, a load test).
    func paymentProvider(db: PostgresPool, logger: Logger) throws(RPCError) -> any PaymentProvider {
        let production = try isProduction()
        guard let name = typed["PAYMENT_PROVIDER"] ?? (production ? nil : "test") else {
            throw RPCError(.invalidArgument, "BAZAAR_PAYMENT_PROVIDER is required with BAZAAR_ENV=production")
        }
        switch name {
        case "test":
            if production {
                guard try bool("ALLOW_TEST_PAYMENTS") == true else {
                    throw RPCError(.invalidArgument, "BAZAAR_PAYMENT_PROVIDER=test accepts every card without charging it; "
                                   + "BAZAAR_ENV=production refuses it unless BAZAAR_ALLOW_TEST_PAYMENTS=true")
                }
                logger.warning("the test payment provider is on in production (BAZAAR_ALLOW_TEST_PAYMENTS=true): orders are not charged")
            }
            return TestPaymentProvider(db: db, latency: try duration("PAYMENT_LATENCY") ?? .zero)
        default:
            throw RPCError(.invalidArgument, "BAZAAR_PAYMENT_PROVIDER='\(name)': the providers built in are: test")
        }
    }

    /// The SPIFFE trust domain of the mesh identities (BAZAAR_TRUST_DOMAIN).
    var trustDomain: String { typed["TRUST_DOMAIN"] ?? IdentityPolicy().trustDomain }

    /// `security` for a channel to `service`: the server must present
    /// spiffe://<trust domain>/<service>, whatever name or address its target resolves through. A
    /// DNS name (a Kubernetes headless Service, say) then need not be in the certificate, and a
    /// replica of another service behind the same name is refused.
    func upstreamSecurity(_ security: TransportSecurity, to service: ShopService) -> TransportSecurity {
        guard case .mutualTLS(var tls) = security else { return security }
        tls.expectedServerIdentity = "spiffe://\(trustDomain)/\(service.rawValue)"
        return .mutualTLS(tls)
    }

    /// A `host:port` setting (`nil` when unset and without a default).
    func address(_ key: String, default fallback: String? = nil) throws(RPCError) -> (host: String, port: Int)? {
        guard let text = typed[key] ?? fallback else { return nil }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else {
            throw RPCError(.invalidArgument, "BAZAAR_\(key)='\(text)': expected host:port")
        }
        return (String(text[..<colon]), port)
    }

    func file(_ key: String, default path: String) throws(RPCError) -> String {
        let p = typed[key] ?? path
        guard let text = try? String(contentsOfFile: p, encoding: .utf8) else {
            throw RPCError(.invalidArgument, "BAZAAR_\(key): cannot read \(p)")
        }
        return text
    }

    /// The access-token verification keys: BAZAAR_JWT_PUBLIC_KEY is a comma-separated list of PEM
    /// files (Ed25519 or P-256), each optionally `kid=path` to give the key id tokens name;
    /// without one the key id is the key's thumbprint (what the accounts service puts in `kid`).
    func verificationKeys() throws(RPCError) -> [JWTKey] {
        let list = (typed["JWT_PUBLIC_KEY"] ?? ".run/jwt/jwt-pub.pem").split(separator: ",").map { String($0).trimming(" ") }
        var keys: [JWTKey] = []
        for entry in list where !entry.isEmpty {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            let (kid, path) = parts.count == 2 ? (parts[0], parts[1]) : (nil, parts[0])
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw RPCError(.invalidArgument, "BAZAAR_JWT_PUBLIC_KEY: cannot read \(path)")
            }
            do {
                let key = try JWTKey(pem: text)
                keys.append(key.withKeyID(kid ?? key.thumbprint))
            } catch {
                throw RPCError(.invalidArgument, "BAZAAR_JWT_PUBLIC_KEY: \(path): \(error)")
            }
        }
        guard !keys.isEmpty else { throw RPCError(.invalidArgument, "BAZAAR_JWT_PUBLIC_KEY names no key") }
        // kid:role+role,...: what each listed key may grant (keys not listed: any role).
        for entry in (typed["JWT_KEY_ROLES"] ?? "").split(separator: ",").map({ String($0).trimming(" ") }) where !entry.isEmpty {
            let parts = entry.split(separator: ":", maxSplits: 1).map(String.init)
            guard parts.count == 2, let i = keys.firstIndex(where: { $0.keyID == parts[0] }) else {
                throw RPCError(.invalidArgument, "BAZAAR_JWT_KEY_ROLES: '\(entry)' is not kid:role+role for a key of BAZAAR_JWT_PUBLIC_KEY")
            }
            keys[i] = keys[i].granting(only: Set(parts[1].split(separator: "+").map(String.init)))
        }
        // kid:issuer,...: the issuer each listed key's tokens must name (keys not listed: BAZAAR_JWT_ISSUER).
        for entry in (typed["JWT_KEY_ISSUERS"] ?? "").split(separator: ",").map({ String($0).trimming(" ") }) where !entry.isEmpty {
            let parts = entry.split(separator: ":", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[1].isEmpty, let i = keys.firstIndex(where: { $0.keyID == parts[0] }) else {
                throw RPCError(.invalidArgument, "BAZAAR_JWT_KEY_ISSUERS: '\(entry)' is not kid:issuer for a key of BAZAAR_JWT_PUBLIC_KEY")
            }
            keys[i] = keys[i].issuing(as: parts[1])
        }
        return keys
    }

    /// BAZAAR_JWT_MAX_LIFETIME: the longest life an access token may have (1h).
    func tokenMaxLifetime() throws(RPCError) -> Double {
        try duration("JWT_MAX_LIFETIME").map(\.inSeconds) ?? JWT.defaultMaxLifetime
    }
}

/// Builds one service from the environment and runs it with its background work.
struct ShopRunner: Sendable {
    let service: ShopService
    let env: ShopEnvironment

    func run(host: String, port: Int) async throws {
        let name = service.rawValue
        let telemetry = try await Telemetry.start(service: name)
        let logger = telemetry.logger
        var config = ServerConfiguration(host: host, port: port, security: try MeshServerEnvironment.security(service: name))
        config.handleSignals = true
        try MeshServerEnvironment.apply(to: &config)
        config.callObserver = telemetry.serverObserver
        config.authorization.trustDomain = env.trustDomain
        let security = config.security
        let trustDomain = config.authorization.trustDomain

        var channels: [MeshChannel] = []
        func upstream(_ other: ShopService) throws -> MeshChannel {
            let target = env["\(other.rawValue.uppercased())_TARGET"] ?? "127.0.0.1:\(other.defaultPort)"
            let channel = try MeshChannel(target: target, security: env.upstreamSecurity(security, to: other),
                                          mesh: try .fromEnvironment(upstream: other.rawValue),
                                          observer: telemetry.clientObserver(upstream: other.rawValue))
            channels.append(channel)
            return channel
        }
        var pool: PostgresPool?
        func database() async throws -> PostgresPool {
            let p = PostgresPool(conninfo: try env.required("DATABASE_URL", for: service), maxConnections: try env.int("DB_POOL_SIZE", 1...200) ?? 10)
            pool = p
            return p
        }
        var redisClients: [RedisClient] = []
        func redis() throws -> RedisClient {
            let (h, p) = try env.address("REDIS_ADDR", default: "127.0.0.1:6379")!
            let client = RedisClient(host: h, port: p)
            redisClients.append(client)
            return client
        }

        let keys = try env.verificationKeys()
        let forwarders = Set((env["TRUSTED_FORWARDERS"] ?? "gateway").split(separator: ",").map {
            let s = $0.trimming(" ")
            return s.hasPrefix("spiffe://") ? s : "spiffe://\(trustDomain)/\(s)"
        })
        var authenticator = UserAuthenticator(keys: keys, issuer: env["JWT_ISSUER"] ?? "bazaar", audience: env["JWT_AUDIENCE"] ?? "bazaar",
                                              trustedForwarders: forwarders)
        authenticator.maxTokenLifetime = try env.tokenMaxLifetime()

        let served: any RPCService
        var background: [@Sendable () async -> Void] = []
        switch service {
        case .catalog:
            let db = try await database()
            try await migrate(db, CatalogSchema.migrations, logger)
            let catalog = CatalogService(db: db, logger: logger, reservationTTL: try env.duration("RESERVATION_TTL") ?? .seconds(900))
            let sweep = try env.duration("RESERVATION_SWEEP_INTERVAL") ?? .seconds(30)
            background.append {
                while !Task.isCancelled {
                    do { try await catalog.sweepExpiredReservations() } catch { logger.warning("reservation sweep failed", [("error", .string("\(error)"))]) }
                    try? await Task.sleep(for: sweep)
                }
            }
            served = catalog
        case .accounts:
            let db = try await database()
            try await migrate(db, AccountsSchema.migrations, logger)
            let retention = try RetentionJob(db: db, rules: [
                .init(table: "login_throttle", condition: """
                    last_failure_at < clock_timestamp() - make_interval(secs => $1) AND (locked_until IS NULL OR locked_until < clock_timestamp())
                    """, retention: .seconds(24 * 3600), setting: "RETAIN_LOGIN_THROTTLE"),
                .init(table: "refresh_tokens", condition: "expires_at < clock_timestamp() - make_interval(secs => $1)",
                      retention: .seconds(7 * 24 * 3600), setting: "RETAIN_REFRESH_TOKENS"),
                // Older than any token that could still be alive (BAZAAR_JWT_MAX_LIFETIME).
                .init(table: "revocations", condition: "recorded_at < clock_timestamp() - make_interval(secs => $1)",
                      retention: .seconds(2 * 3600), setting: "RETAIN_REVOCATIONS"),
            ], logger: logger).configured(by: env.typed)
            background.append { await retention.run() }
            let work = SecretWork.shared
            telemetry.registry.addCollector {
                [CollectedSample(name: "bazaar_password_checks_shed_total", help: "Password hashes refused because the argon2 queue was full.",
                                 type: .counter, value: Double(work.shedCount)),
                 CollectedSample(name: "bazaar_password_checks_dropped_total", help: "Queued password hashes dropped because their caller gave up.",
                                 type: .counter, value: Double(work.droppedCount))]
            }
            let signing: JWTKey
            do {
                let key = try JWTKey(pem: try env.file("JWT_PRIVATE_KEY", default: ".run/jwt/jwt-key.pem"))
                signing = key.withKeyID(key.thumbprint)
            } catch let e as RPCError { throw e } catch { throw RPCError(.invalidArgument, "BAZAAR_JWT_PRIVATE_KEY: \(error)") }
            var settings = AccountsService.Settings()
            settings.issuer = env["JWT_ISSUER"] ?? "bazaar"
            settings.audience = env["JWT_AUDIENCE"] ?? "bazaar"
            if let ttl = try env.duration("ACCESS_TOKEN_TTL") { settings.accessTokenLifetime = Int(ttl.components.seconds) }
            guard Double(settings.accessTokenLifetime) <= (try env.tokenMaxLifetime()) else {
                throw RPCError(.invalidArgument, "BAZAAR_ACCESS_TOKEN_TTL is longer than BAZAAR_JWT_MAX_LIFETIME: every token would be refused")
            }
            if let ttl = try env.duration("REFRESH_TOKEN_TTL") { settings.refreshTokenLifetime = Int(ttl.components.seconds) }
            if let n = try env.int("LOGIN_FREE_FAILURES", 1...1000) { settings.freeLoginFailures = n }
            served = try AccountsService(db: db, logger: logger, signingKey: signing, settings: settings)
        case .cart:
            let catalog = Shop_V1_CatalogService.Client(transport: try upstream(.catalog))
            served = CartService(redis: try redis(), catalog: catalog, logger: logger, ttl: try env.duration("CART_TTL") ?? .seconds(30 * 24 * 3600),
                                 maxLines: try env.int("CART_MAX_LINES", 1...1000) ?? 50)
        case .orders:
            let db = try await database()
            try await migrate(db, OrdersSchema.migrations, logger)
            var settings = OrdersService.Settings()
            if let d = try env.duration("CHECKOUT_RECOVER_AFTER") { settings.recoverAfter = d }
            let orders = OrdersService(db: db, catalog: Shop_V1_CatalogService.Client(transport: try upstream(.catalog)),
                                       cart: Shop_V1_CartService.Client(transport: try upstream(.cart)),
                                       payments: try env.paymentProvider(db: db, logger: logger),
                                       logger: logger, settings: settings)
            let every = try env.duration("RECOVERY_INTERVAL") ?? .seconds(5)
            background.append {
                while !Task.isCancelled {
                    do { try await orders.recover() } catch { logger.warning("order recovery round failed", [("error", .string("\(error)"))]) }
                    try? await Task.sleep(for: every)
                }
            }
            let retention = try RetentionJob(db: db, rules: [
                .init(table: "checkouts", condition: "state IN ('done', 'failed') AND updated_at < clock_timestamp() - make_interval(secs => $1)",
                      retention: .seconds(30 * 24 * 3600), setting: "RETAIN_CHECKOUTS"),
                .init(table: "outbox", condition: "published_at < clock_timestamp() - make_interval(secs => $1)",
                      retention: .seconds(30 * 24 * 3600), setting: "RETAIN_OUTBOX"),
            ], logger: logger).configured(by: env.typed)
            background.append { await retention.run() }
            if try env.bool("OUTBOX_RELAY") ?? true {
                let relay = OutboxRelay(db: db, redis: try redis(), logger: logger)
                background.append { await relay.run() }
            }
            served = orders
        case .notifications:
            let db = try await database()
            try await migrate(db, NotificationsSchema.migrations, logger)
            let notifications = NotificationsService(db: db, accounts: Shop_V1_AccountsService.Client(transport: try upstream(.accounts)), logger: logger)
            let consumer = OrderEventConsumer(service: notifications, redis: try redis(),
                                              consumer: env["CONSUMER_NAME"] ?? ProcessInfo.processInfo.hostName)
            telemetry.registry.addCollector {
                [CollectedSample(name: "bazaar_events_dead_lettered_total", help: "Order events parked in the dead-letter stream (poison messages).",
                                 type: .counter, value: Double(consumer.deadLettered))]
            }
            var smtp: SMTPClient?
            if let (h, p) = try env.address("SMTP_ADDR") {
                smtp = SMTPClient(host: h, port: p)
            } else {
                logger.warning("BAZAAR_SMTP_ADDR is not set: email notifications are stored but not sent")
            }
            let mailer = Mailer(db: db, smtp: smtp, from: env["MAIL_FROM"] ?? "shop@bazaar.local", logger: logger)
            background.append { await consumer.run() }
            let retention = try RetentionJob(db: db, rules: [
                .init(table: "processed_events", condition: "processed_at < clock_timestamp() - make_interval(secs => $1)",
                      retention: .seconds(30 * 24 * 3600), setting: "RETAIN_PROCESSED_EVENTS"),
            ], logger: logger).configured(by: env.typed)
            background.append { await retention.run() }
            background.append { await mailer.run() }
            served = notifications
        }

        let (health, services) = try MeshServerEnvironment.standardServices(serving: [served])
        let server = try RPCServer(configuration: config, services: services,
                                   interceptors: [authenticator, StoreErrorInterceptor(logger: logger)])
        let probe = try MeshServerEnvironment.healthProbeServer(health, host: host)
        let jobs = background
        try await withThrowingTaskGroup(of: Void.self) { group in
            for job in jobs { group.addTask { await job() } }
            if let probe {
                group.addTask { try await probe.run { port in diagnostic("bazaar: \(name) health probes (plaintext) on \(host):\(port)") } }
            }
            try await server.run { port in
                diagnostic("bazaar: \(name) listening on \(host):\(port)")
                logger.info("serving", [("port", .int(Int64(port)))])
            }
            // The server drained (SIGTERM): stop the probe port and the background work too.
            probe?.shutdown()
            group.cancelAll()
        }
        for c in channels { await c.shutdown() }
        for r in redisClients { r.close() }
        pool?.close()
        await telemetry.shutdown()
        diagnostic("bazaar: \(name) shut down cleanly")
    }

    private func migrate(_ db: PostgresPool, _ migrations: [Migration], _ logger: Logger) async throws {
        let applied = try await Migrator.migrate(db, migrations)
        if !applied.isEmpty { logger.info("migrations applied", [("versions", .string(applied.map(String.init).joined(separator: ",")))]) }
    }
}
