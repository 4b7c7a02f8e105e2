import BazaarCore
import BazaarPostgres
import BazaarTelemetry

/// Deletes rows past their retention, so that tables kept for a while (throttles, spent tokens,
/// idempotency records, the published outbox, processed event ids) do not grow for ever. Each
/// rule deletes in batches of `batch` rows (short statements, short locks) until none is left,
/// every `interval`.
public struct RetentionJob: Sendable {
    /// One table's rule: `condition` is a SQL predicate with `$1` standing for the retention in
    /// seconds (e.g. `published_at < clock_timestamp() - make_interval(secs => $1)`).
    public struct Rule: Sendable {
        public var table: String
        public var condition: String
        public var retention: Duration
        /// The `BAZAAR_RETAIN_*` variable that overrides `retention`, for messages and docs.
        public var setting: String

        public init(table: String, condition: String, retention: Duration, setting: String) {
            self.table = table
            self.condition = condition
            self.retention = retention
            self.setting = setting
        }
    }

    public let db: PostgresPool
    public var rules: [Rule]
    public var interval: Duration
    public var batch = 5_000
    public let logger: Logger

    public init(db: PostgresPool, rules: [Rule], interval: Duration = .seconds(3600), logger: Logger) {
        self.db = db
        self.rules = rules
        self.interval = interval
        self.logger = logger
    }

    /// Applies the retention from `BAZAAR_RETAIN_<SETTING>` and `BAZAAR_RETENTION_INTERVAL`.
    public func configured(by env: Environment) throws(RPCError) -> RetentionJob {
        var job = self
        for i in job.rules.indices {
            if let d = try env.duration(job.rules[i].setting) {
                guard d > .zero else {
                    throw RPCError(.invalidArgument, "BAZAAR_\(job.rules[i].setting) must be longer than zero")
                }
                job.rules[i].retention = d
            }
        }
        if let d = try env.duration("RETENTION_INTERVAL") {
            guard d > .zero else {
                throw RPCError(.invalidArgument, "BAZAAR_RETENTION_INTERVAL must be longer than zero")
            }
            job.interval = d
        }
        return job
    }

    /// One pass over every rule; returns the rows deleted per table.
    @discardableResult
    public func runOnce() async throws -> [String: Int] {
        var deleted: [String: Int] = [:]
        for rule in rules {
            while true {
                let n = try await db.query(
                    """
                    DELETE FROM \(rule.table) WHERE ctid IN (SELECT ctid FROM \(rule.table) WHERE \(rule.condition) LIMIT \(batch))
                    """, [rule.retention.inSeconds]
                ).affectedRows
                deleted[rule.table, default: 0] += n
                if n < batch { break }
            }
        }
        let total = deleted.values.reduce(0, +)
        if total > 0 {
            logger.info("retention: deleted expired rows", deleted.map { ($0.key, LogValue.int(Int64($0.value))) })
        }
        return deleted
    }

    /// Runs until cancelled.
    public func run() async {
        while !Task.isCancelled {
            do { try await runOnce() } catch {
                logger.warning("retention round failed", [("error", .string("\(error)"))])
            }
            try? await Task.sleep(for: interval)
        }
    }
}
