import BazaarPostgres
import BazaarRedis
import BazaarTelemetry

/// Publishes the orders outbox to a Redis stream, at least once.
///
/// Each round takes up to `batch` unpublished rows with `FOR UPDATE SKIP LOCKED`, so relays in
/// several replicas share the work without publishing a row twice at the same time; the rows are
/// marked published in the same transaction after XADD. A crash between the XADD and the commit
/// publishes those events again on the next round, which is why every entry carries its
/// `event_id` and consumers deduplicate by it.
public struct OutboxRelay: Sendable {
    public let db: PostgresPool
    public let redis: RedisClient
    public let stream: String
    public let logger: Logger
    public var batch = 100
    /// Roughly how many entries the stream keeps (XADD MAXLEN ~).
    public var maxLength = 1_000_000

    public init(db: PostgresPool, redis: RedisClient, stream: String = "bazaar:order-events", logger: Logger) {
        self.db = db
        self.redis = redis
        self.stream = stream
        self.logger = logger
    }

    /// One round; returns how many events it published.
    public func publishOnce() async throws -> Int {
        try await db.transaction { tx in
            let rows = try await tx.query("""
                SELECT id, event_id::text AS event_id, type, payload::text AS payload FROM outbox
                WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
                """, [batch]).rows
            if rows.isEmpty { return 0 }
            for row in rows {
                _ = try await redis.send("XADD", stream, "MAXLEN", "~", String(maxLength), "*",
                                         "event_id", row["event_id"] ?? "", "type", row["type"] ?? "", "payload", row["payload"] ?? "{}")
            }
            let ids = rows.compactMap { $0["id"] }.joined(separator: ",")
            _ = try await tx.query("UPDATE outbox SET published_at = clock_timestamp() WHERE id = ANY(string_to_array($1, ',')::bigint[])", [ids])
            return rows.count
        }
    }

    /// Publishes until cancelled: at once while there is a backlog, every `idle` otherwise.
    public func run(idle: Duration = .milliseconds(200)) async {
        while !Task.isCancelled {
            do {
                if try await publishOnce() > 0 { continue }
            } catch {
                logger.warning("outbox relay round failed; retrying", [("error", .string("\(error)"))])
                try? await Task.sleep(for: .seconds(1))
            }
            try? await Task.sleep(for: idle)
        }
    }
}
