import BazaarCore
import BazaarTransport
import CBazaarPQ
import Foundation
import Synchronization

/// Connections to one database, shared by tasks: at most `maxConnections` open, made on demand,
/// handed to waiting tasks in turn, and replaced when they break. At most `maxWaiters` tasks wait
/// for a connection (beyond, a call fails at once with SQLSTATE 53300, which services answer as
/// UNAVAILABLE), and a waiter whose task is cancelled (its caller's deadline passed) leaves the
/// queue instead of taking a connection later for nobody.
///
/// Connections live on the loops of the process's ``EventLoopGroup``, and a task is given one on
/// its own loop when there is one (an idle one there, or a new one opened there), so that a
/// handler's statements complete on its thread with no hop. Only when every connection is open
/// and none is idle on the caller's loop does it take an idle one elsewhere, or wait.
///
/// ```swift
/// let db = PostgresPool(conninfo: "postgresql://catalog@db/catalog", maxConnections: 10)
/// let rows = try await db.query("SELECT id, name FROM products WHERE category = $1 LIMIT $2", ["mugs", 20]).rows
/// try await db.transaction { tx in
///     _ = try await tx.query("UPDATE stock SET reserved = reserved + $1 WHERE sku = $2", [2, "MUG-1"])
/// }
/// ```
public final class PostgresPool: Sendable {
    public let conninfo: String
    public let maxConnections: Int
    public let maxWaiters: Int
    private let group: EventLoopGroup
    private let ownsGroup: Bool
    private let observer: (any OperationObserver)?
    private struct State {
        var idle: [PostgresConnection] = []
        var open = 0
        var waiters: [(id: UInt64, k: CheckedContinuation<PostgresConnection?, Never>)] = []
        var nextWaiter: UInt64 = 0
        var closed = false
    }
    private let state = Lock(State())

    /// - Parameters:
    ///   - group: the process's loops; by default the pool runs one of its own.
    ///   - observer: sees every statement (telemetry's database spans).
    public init(
        conninfo: String, maxConnections: Int = 10, maxWaiters: Int? = nil, group: EventLoopGroup? = nil,
        observer: (any OperationObserver)? = nil
    ) {
        self.conninfo = conninfo
        self.observer = observer
        self.maxConnections = max(1, maxConnections)
        self.maxWaiters = max(0, maxWaiters ?? 20 * self.maxConnections)
        ownsGroup = group == nil
        self.group = group ?? EventLoopGroup(count: 1)
    }

    /// `conninfo` with server settings for every session it opens (libpq's `options`), in
    /// whichever form it came: a URI gets a query parameter, keyword/value text one more keyword.
    /// For example `["synchronous_commit": "off"]` for a pool whose commits do not wait for the
    /// write-ahead log to reach the disk. Names and values must be plain words.
    public static func conninfo(_ conninfo: String, settings: [String: String]) -> String {
        let options = settings.sorted { $0.key < $1.key }.map { "-c \($0.key)=\($0.value)" }.joined(separator: " ")
        if conninfo.hasPrefix("postgres://") || conninfo.hasPrefix("postgresql://") {
            let encoded = options.replacingOccurrences(of: " ", with: "%20").replacingOccurrences(of: "=", with: "%3D")
            return conninfo + (conninfo.contains("?") ? "&" : "?") + "options=" + encoded
        }
        return conninfo + " options='\(options)'"
    }

    /// The database a connection string names (`dbname`, or the URL's path), read by libpq's own
    /// parser; `nil` when it names none or does not parse.
    public static func databaseName(_ conninfo: String) -> String? {
        guard let options = PQconninfoParse(conninfo, nil) else { return nil }
        defer { PQconninfoFree(options) }
        var p = options
        while let keyword = p.pointee.keyword {
            if String(cString: keyword) == "dbname" { return p.pointee.val.map { String(cString: $0) } }
            p += 1
        }
        return nil
    }

    /// Runs `body` with a connection of its own, then gives the connection back.
    public func withConnection<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        let c = try await acquire()
        do {
            let r = try await body(c)
            release(c)
            return r
        } catch {
            release(c)
            throw error
        }
    }

    /// Waits until the server takes connections, for a database that may still be starting (a
    /// container started beside it, a restart, a failover): while connecting fails because the
    /// server cannot be reached or is not ready yet, tries again every second for up to `timeout`,
    /// calling `waiting` with each failure. A refusal that waiting cannot cure (a wrong password,
    /// a missing database or role) and the last failure after `timeout` are thrown.
    public func waitUntilReachable(
        timeout: Duration, waiting: (PostgresError) -> Void = { _ in }
    ) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            do {
                _ = try await query("SELECT 1")
                return
            } catch let e as PostgresError where e.mayPassByWaiting && clock.now < deadline {
                waiting(e)
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// One statement on any connection.
    public func query(_ sql: String, _ parameters: [(any PostgresBindable)?] = []) async throws -> PostgresResult {
        try await withConnection { try await $0.query(sql, parameters) }
    }

    /// Runs `body` inside BEGIN ... COMMIT on one connection; any error rolls back.
    public func transaction<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await withConnection { c in
            _ = try await c.query("BEGIN")
            do {
                let r = try await body(c)
                _ = try await c.query("COMMIT")
                return r
            } catch {
                if c.isUsable { _ = try? await c.query("ROLLBACK") }
                throw error
            }
        }
    }

    private func acquire() async throws -> PostgresConnection {
        enum Next {
            case use(PostgresConnection)
            case open, wait, closed
        }
        let here = group.currentLoop
        while true {
            let next = state.withLock { s -> Next in
                if s.closed { return .closed }
                let before = s.idle.count
                s.idle.removeAll { !$0.isUsable }
                s.open -= before - s.idle.count
                // The most recently used idle connection on the caller's loop; then a new one
                // there; then any idle one.
                if let i = s.idle.lastIndex(where: { $0.loop === here }) { return .use(s.idle.remove(at: i)) }
                if s.open < maxConnections {
                    s.open += 1
                    return .open
                }
                if let c = s.idle.popLast() { return .use(c) }
                return .wait
            }
            switch next {
            case .use(let c): return c
            case .closed: throw PostgresError.connection("the pool is closed")
            case .open:
                do {
                    return try await PostgresConnection.connect(
                        conninfo, on: here ?? group.nextLoop(), observer: observer)
                } catch {
                    state.withLock { $0.open -= 1 }
                    wakeOne()
                    throw error
                }
            case .wait:
                try Task.checkCancellation()
                let id = state.withLock { s -> UInt64 in
                    s.nextWaiter += 1
                    return s.nextWaiter
                }
                var full = false
                let handed = await withTaskCancellationHandler {
                    await withCheckedContinuation { c in
                        enum Queued { case queued, closed, full, cancelled }
                        let queued = state.withLock { s -> Queued in
                            if s.closed { return .closed }
                            if Task.isCancelled { return .cancelled }
                            if s.waiters.count >= maxWaiters { return .full }
                            s.waiters.append((id, c))
                            return .queued
                        }
                        switch queued {
                        case .queued: break
                        case .full:
                            full = true
                            c.resume(returning: nil)
                        case .closed, .cancelled: c.resume(returning: nil)
                        }
                    }
                } onCancel: {
                    let gone = state.withLock { s -> CheckedContinuation<PostgresConnection?, Never>? in
                        guard let i = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                        return s.waiters.remove(at: i).k
                    }
                    gone?.resume(returning: nil)
                }
                if let handed { return handed }
                if full {
                    throw PostgresError(
                        sqlState: "53300",
                        message: "\(maxWaiters) calls already wait for one of \(maxConnections) database connections")
                }
                try Task.checkCancellation()
            // Woken without a connection: a slot freed up (or the pool closed); look again.
            }
        }
    }

    private func release(_ c: PostgresConnection) {
        let waiter = state.withLock { s -> (CheckedContinuation<PostgresConnection?, Never>, PostgresConnection?)? in
            let usable = c.isUsable && !s.closed
            if !usable { s.open -= 1 }
            guard !s.waiters.isEmpty else {
                if usable { s.idle.append(c) }
                return nil
            }
            return (s.waiters.removeFirst().k, usable ? c : nil)
        }
        if let (w, handed) = waiter { w.resume(returning: handed) }
        if !c.isUsable { c.close() }
    }

    private func wakeOne() {
        let w = state.withLock { s in s.waiters.isEmpty ? nil : s.waiters.removeFirst().k }
        w?.resume(returning: nil)
    }

    /// Tasks waiting for a connection now.
    public var waitingCount: Int { state.withLock { $0.waiters.count } }

    /// Connections open now (idle or in use).
    public var openConnections: Int { state.withLock { $0.open } }

    /// Idle connections still usable now. One whose backend went away (a restart, an
    /// administrator's `pg_terminate_backend`) stops counting once its loop sees the socket close,
    /// and is dropped at the next checkout.
    public var usableIdleConnections: Int { state.withLock { $0.idle.filter(\.isUsable).count } }

    /// Closes idle connections and refuses new work; connections in use close when given back.
    public func close() {
        let (idle, waiters) = state.withLock {
            s -> ([PostgresConnection], [CheckedContinuation<PostgresConnection?, Never>]) in
            s.closed = true
            defer {
                s.idle = []
                s.waiters = []
                s.open = 0
            }
            return (s.idle, s.waiters.map(\.k))
        }
        for c in idle { c.close() }
        for w in waiters { w.resume(returning: nil) }
    }
}

/// One versioned schema change.
public struct Migration: Sendable {
    public var version: Int
    public var name: String
    public var sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }
}

/// Applies migrations in version order, each in its own transaction, recorded in
/// `schema_migrations`, under a PostgreSQL advisory lock: replicas starting together apply each
/// migration exactly once.
public enum Migrator {
    /// Returns the versions applied now (empty when the schema was current).
    @discardableResult
    public static func migrate(_ pool: PostgresPool, _ migrations: [Migration], lockKey: Int64 = 0x4241_5A41_4152)
        async throws -> [Int]
    {
        let versions = migrations.map(\.version)
        guard Set(versions).count == versions.count else {
            throw PostgresError(sqlState: "42710", message: "two migrations share a version")
        }
        return try await pool.withConnection { c in
            _ = try await c.query("SELECT pg_advisory_lock($1)", [lockKey])
            do {
                let applied = try await apply(c, migrations.sorted { $0.version < $1.version })
                _ = try await c.query("SELECT pg_advisory_unlock($1)", [lockKey])
                return applied
            } catch {
                if c.isUsable { _ = try? await c.query("SELECT pg_advisory_unlock($1)", [lockKey]) }
                throw error
            }
        }
    }

    private static func apply(_ c: PostgresConnection, _ migrations: [Migration]) async throws -> [Int] {
        _ = try await c.query(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())
            """)
        let done = Set(try await c.query("SELECT version FROM schema_migrations").rows.compactMap { $0.int("version") })
        var applied: [Int] = []
        for m in migrations where !done.contains(m.version) {
            _ = try await c.query("BEGIN")
            do {
                try await c.execute(script: m.sql)
                _ = try await c.query(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", [m.version, m.name])
                _ = try await c.query("COMMIT")
            } catch {
                if c.isUsable { _ = try? await c.query("ROLLBACK") }
                throw error
            }
            applied.append(m.version)
        }
        return applied
    }
}
