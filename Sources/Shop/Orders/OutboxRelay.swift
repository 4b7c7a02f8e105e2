import BazaarPostgres
import BazaarRedis
import BazaarTelemetry

/// Publishes the orders outbox to a Redis stream, at least once.
///
/// Each round leases up to `batch` unpublished rows in one short statement (`FOR UPDATE SKIP
/// LOCKED` inside it, so relays in several replicas share the work), publishes them with XADD
/// outside any transaction, and marks them published. No transaction stays open across a call to
/// Redis: a slow Redis must not hold row locks and a database connection. A relay that dies
/// mid-round leaves its lease to expire (`lease`), and the rows are published again, which is
/// why every entry carries its `event_id` and consumers deduplicate by it. For the same reason its
/// leases and marks may use a pool with relaxed commits (the orders service gives it one): a
/// mark a crash loses only means the event goes out once more.
public struct OutboxRelay: Sendable {
    public let db: PostgresPool
    public let redis: RedisClient
    public let stream: String
    public let logger: Logger
    public var batch = 100
    /// Roughly how many entries the stream keeps (XADD MAXLEN ~).
    public var maxLength = 1_000_000
    /// How long a round owns the rows it took (far more than a round takes while Redis answers).
    public var lease: Duration = .seconds(60)

    public init(db: PostgresPool, redis: RedisClient, stream: String = "bazaar:order-events", logger: Logger) {
        self.db = db
        self.redis = redis
        self.stream = stream
        self.logger = logger
    }

    /// One round; returns how many events it published.
    public func publishOnce() async throws -> Int {
        let rows = try await db.query(
            """
            UPDATE outbox SET lease_until = clock_timestamp() + make_interval(secs => $2)
            WHERE id IN (SELECT id FROM outbox WHERE published_at IS NULL AND (lease_until IS NULL OR lease_until < clock_timestamp())
                         ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
            RETURNING id, event_id::text AS event_id, type, payload::text AS payload
            """, [batch, lease.inSeconds]
        ).rows.sorted { (Int64($0["id"] ?? "") ?? 0) < (Int64($1["id"] ?? "") ?? 0) }
        if rows.isEmpty { return 0 }
        var published: [String] = []
        var failure: (any Error)?
        for row in rows {
            do {
                _ = try await redis.send(
                    "XADD", stream, "MAXLEN", "~", String(maxLength), "*",
                    "event_id", row["event_id"] ?? "", "type", row["type"] ?? "", "payload", row["payload"] ?? "{}")
                published.append(row["id"] ?? "")
            } catch {
                failure = error
                break
            }
        }
        // What went out is marked even when a later XADD failed (the rest waits for its lease).
        if !published.isEmpty {
            _ = try await db.query(
                "UPDATE outbox SET published_at = clock_timestamp() WHERE id = ANY(string_to_array($1, ',')::bigint[])",
                [published.joined(separator: ",")])
        }
        if let failure { throw failure }
        return rows.count
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
