import BazaarCore
import BazaarPostgres
import BazaarRedis
import BazaarTelemetry

/// What a shop service gets from the process that runs it: its settings, its logger and metrics,
/// and the connections it uses without owning them: its database, Redis, and the other services
/// (made by the executable, which owns the transport and closes them all at the end).
public struct ShopContext: Sendable {
    /// The service's name (`catalog`), for messages.
    public let service: String
    public let env: ShopEnvironment
    public let logger: Logger
    public let metrics: MetricsRegistry
    let makeDatabase: @Sendable (_ durable: Bool) async throws -> PostgresPool
    let makeRedis: @Sendable () throws -> RedisClient
    let makeUpstream: @Sendable (String) throws -> any ClientTransport

    public init(
        service: String, env: ShopEnvironment, logger: Logger, metrics: MetricsRegistry,
        database: @escaping @Sendable (_ durable: Bool) async throws -> PostgresPool,
        redis: @escaping @Sendable () throws -> RedisClient,
        upstream: @escaping @Sendable (String) throws -> any ClientTransport
    ) {
        self.service = service
        self.env = env
        self.logger = logger
        self.metrics = metrics
        makeDatabase = database
        makeRedis = redis
        makeUpstream = upstream
    }

    /// The service's own database (BAZAAR_DATABASE_URL), with `migrations` applied. A server
    /// that is not up yet is waited for, up to BAZAAR_DATABASE_WAIT (default 60s; 0s fails at
    /// once), so that a service started beside its database (Compose, a restart) does not exit.
    public func database(migrations: [Migration]) async throws -> PostgresPool {
        let db = try await makeDatabase(true)
        let wait = try env.duration("BAZAAR_DATABASE_WAIT") ?? .seconds(60)
        var told = false
        try await db.waitUntilReachable(timeout: wait) { error in
            if !told { logger.warning("waiting for PostgreSQL", [("error", .string(error.message))]) }
            told = true
        }
        let applied = try await Migrator.migrate(db, migrations)
        if !applied.isEmpty {
            logger.info("migrations applied", [("versions", .string(applied.map(String.init).joined(separator: ",")))])
        }
        return db
    }

    /// A second, small pool on the service's database whose commits do not wait for the
    /// write-ahead log to reach the disk (`synchronous_commit = off`): a crash may lose the last
    /// fraction of a second of them. Only for records that can be rebuilt (see docs/services.md,
    /// "Durability"); call ``database(migrations:)`` first.
    public func relaxedDatabase() async throws -> PostgresPool { try await makeDatabase(false) }

    /// A Redis client (BAZAAR_REDIS_ADDR).
    public func redis() throws -> RedisClient { try makeRedis() }

    /// Another shop service, by name (`catalog`), over the mesh.
    public func upstream(_ name: String) throws -> any ClientTransport { try makeUpstream(name) }
}

/// A shop service, assembled: what it serves, and the work that runs beside it for as long as it
/// serves (sweeps, relays, consumers, retention). Each service module has one `assemble` function
/// that makes this from a ``ShopContext``; `bazaar serve` only picks one and runs it.
public struct ShopAssembly: Sendable {
    public var service: any RPCService
    public var background: [@Sendable () async -> Void]

    public init(service: any RPCService, background: [@Sendable () async -> Void] = []) {
        self.service = service
        self.background = background
    }
}

/// Runs `body` every `interval` until the task is cancelled; a failed round is logged, not fatal.
public func every(
    _ interval: Duration, logger: Logger, _ what: String, _ body: @escaping @Sendable () async throws -> Void
)
    -> @Sendable () async -> Void
{
    {
        while !Task.isCancelled {
            do { try await body() } catch { logger.warning("\(what) failed", [("error", .string("\(error)"))]) }
            try? await Task.sleep(for: interval)
        }
    }
}
