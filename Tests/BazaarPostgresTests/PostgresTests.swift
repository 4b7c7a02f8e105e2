import BazaarPostgres
import Glibc
import Synchronization
import TestSupport
import Testing

@testable import BazaarTransport

/// Against a real PostgreSQL: `make test` starts one (scripts/postgres.sh) and names it in
/// BAZAAR_TEST_POSTGRES; without it these tests do not run (and run-tests.sh fails if they did not).
let testDatabase: String? = getenv("BAZAAR_TEST_POSTGRES").map { String(cString: $0) }

@Suite(.serialized, .enabled(if: testDatabase != nil, "set BAZAAR_TEST_POSTGRES to a libpq conninfo"))
struct PostgresTests {
    let pool = PostgresPool(conninfo: testDatabase ?? "", maxConnections: 4)

    /// The pool hands a task a connection on the task's own loop: its statements complete on the
    /// thread that asked, with no hand-off to another loop.
    @Test func aTaskOnALoopGetsAConnectionOnThatLoop() async throws {
        let group = EventLoopGroup(count: 2)
        defer { group.shutdown() }
        let onLoops = PostgresPool(conninfo: testDatabase!, maxConnections: 4, group: group)
        defer { onLoops.close() }
        for round in 0..<3 {
            for loop in group.loops {
                let (same, resumedOn) = try await Task(executorPreference: loop) {
                    let same = try await onLoops.withConnection { c in
                        _ = try await c.query("SELECT $1::int AS n", [round])
                        return c.loop === loop
                    }
                    return (same, EventLoop.current?.index)
                }.value
                #expect(same, "round \(round): a task on loop \(loop.index) got a connection on another loop")
                #expect(resumedOn == loop.index)
            }
        }
        // One connection per loop served all six: each task found its loop's idle one again.
        #expect(onLoops.openConnections == 2)
    }

    /// A service started beside its database waits for it (Compose starts them together), but
    /// only for failures that waiting can cure: a missing database fails at once, a server that
    /// never comes up fails when the wait is over, and a running one passes straight through.
    @Test func waitingForTheServerStopsAtRefusalsThatWaitingCannotCure() async throws {
        try await pool.waitUntilReachable(timeout: .seconds(3600))
        let fields = Dictionary(
            uniqueKeysWithValues: testDatabase!.split(separator: " ").map {
                let kv = $0.split(separator: "=", maxSplits: 1)
                return (String(kv[0]), String(kv[1]))
            })
        let missing = PostgresPool(
            conninfo: "host=\(fields["host"]!) port=\(fields["port"]!) user=\(fields["user"]!) dbname=no_such_db_here",
            maxConnections: 1)
        defer { missing.close() }
        // An hour-long wait would hang the test if this retried.
        let refused = await #expect(throws: PostgresError.self) {
            try await missing.waitUntilReachable(timeout: .seconds(3600))
        }
        #expect(refused?.mayPassByWaiting == false, "\(String(describing: refused))")

        // Nothing listens on a port this test just released: a failure worth waiting for, until the wait ends.
        let nobody = PostgresPool(
            conninfo: "host=127.0.0.1 port=\(try unusedPort()) dbname=x connect_timeout=2", maxConnections: 1)
        defer { nobody.close() }
        var waited = 0
        let unreachable = await #expect(throws: PostgresError.self) {
            try await nobody.waitUntilReachable(timeout: .zero) { _ in waited += 1 }
        }
        #expect(unreachable?.mayPassByWaiting == true, "\(String(describing: unreachable))")
        #expect(waited == 0)
    }

    @Test func sessionSettingsReachTheServerInEitherConninfoForm() async throws {
        let relaxed = PostgresPool(
            conninfo: PostgresPool.conninfo(testDatabase!, settings: ["synchronous_commit": "off"]), maxConnections: 1)
        defer { relaxed.close() }
        #expect(try await relaxed.query("SHOW synchronous_commit").rows[0]["synchronous_commit"] == "off")
        #expect(try await pool.query("SHOW synchronous_commit").rows[0]["synchronous_commit"] == "on")
        #expect(
            PostgresPool.conninfo("postgresql://u@db/shop", settings: ["synchronous_commit": "off"])
                == "postgresql://u@db/shop?options=-c%20synchronous_commit%3Doff")
        #expect(
            PostgresPool.conninfo("postgresql://u@db/shop?sslmode=require", settings: ["a": "b"])
                == "postgresql://u@db/shop?sslmode=require&options=-c%20a%3Db")
        #expect(PostgresPool.databaseName("postgresql://u@db/shop?sslmode=require") == "shop")
        #expect(PostgresPool.databaseName("host=/tmp dbname=orders") == "orders")
    }

    @Test func parametersNeverBecomeSQL() async throws {
        _ = try await pool.query("DROP TABLE IF EXISTS t_params")
        _ = try await pool.query(
            "CREATE TABLE t_params (id serial PRIMARY KEY, name text, n bigint, ok boolean, data bytea)")
        let hostile = "x'); DROP TABLE t_params; --"
        let inserted = try await pool.query(
            "INSERT INTO t_params (name, n, ok, data) VALUES ($1, $2, $3, $4), ($5, NULL, NULL, NULL)",
            [hostile, 9_000_000_000 as Int64, true, [UInt8]([0, 1, 0xFE, 0xFF]), "☕ ünïcode"])
        #expect(inserted.affectedRows == 2)
        let rows = try await pool.query("SELECT name, n, ok, encode(data, 'hex') AS hex FROM t_params ORDER BY id").rows
        #expect(rows.count == 2)
        #expect(
            rows[0]["name"] == hostile && rows[0].int("n") == 9_000_000_000 && rows[0].bool("ok") == true
                && rows[0]["hex"] == "0001feff")
        #expect(rows[1]["name"] == "☕ ünïcode" && rows[1]["n"] == nil && rows[1].bool("ok") == nil)
    }

    @Test func errorsCarryTheirSQLStateAndTheConnectionStaysUsable() async throws {
        try await pool.withConnection { c in
            do {
                _ = try await c.query("SELEC 1")
                Issue.record("a syntax error was accepted")
            } catch let e as PostgresError {
                #expect(e.sqlState == "42601")
            }
            _ = try await c.query("CREATE TEMP TABLE u (k int PRIMARY KEY)")
            _ = try await c.query("INSERT INTO u VALUES ($1)", [1])
            do {
                _ = try await c.query("INSERT INTO u VALUES ($1)", [1])
                Issue.record("a duplicate key was accepted")
            } catch let e as PostgresError {
                #expect(e.isUniqueViolation)
            }
            #expect(try await c.query("SELECT count(*) AS n FROM u").rows[0].int("n") == 1)
        }
    }

    @Test func transactionsCommitOrRollBack() async throws {
        _ = try await pool.query("DROP TABLE IF EXISTS t_tx")
        _ = try await pool.query("CREATE TABLE t_tx (v int)")
        try await pool.transaction { tx in _ = try await tx.query("INSERT INTO t_tx VALUES (1)") }
        await #expect(throws: PostgresError.self) {
            try await pool.transaction { tx in
                _ = try await tx.query("INSERT INTO t_tx VALUES (2)")
                _ = try await tx.query("INSERT INTO t_tx VALUES ('not a number')")
            }
        }
        #expect(try await pool.query("SELECT array_agg(v ORDER BY v)::text AS vs FROM t_tx").rows[0]["vs"] == "{1}")
    }

    @Test func manyTasksShareAFewConnections() async throws {
        try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<64 {
                group.addTask { try await pool.query("SELECT $1::int * 2 AS d, pg_sleep(0.01)", [i]).rows[0].int("d")! }
            }
            var sum = 0
            for try await d in group { sum += d }
            #expect(sum == (0..<64).reduce(0) { $0 + 2 * $1 })
        }
        #expect(pool.openConnections <= 4)
    }

    /// A multi-host conninfo whose first host refuses (a failed primary): libpq moves on to the
    /// next host with a new socket, which often gets the old one's number; the connection used to
    /// wait for ever on the old registration (a database failover never reconnected).
    @Test func aMultiHostConninfoMovesPastAHostThatRefuses() async throws {
        let fd = try Socket.listen(host: "127.0.0.1", port: 0, reusePort: false)
        let closedPort = Socket.localPort(fd)
        close(fd)
        // host=A port=P ... -> host=127.0.0.1,A port=<closed>,P
        var parts = Dictionary(
            uniqueKeysWithValues: testDatabase!.split(separator: " ").compactMap { p -> (String, String)? in
                let kv = p.split(separator: "=", maxSplits: 1)
                return kv.count == 2 ? (String(kv[0]), String(kv[1])) : nil
            })
        parts["host"] = "127.0.0.1,\(parts["host"] ?? "localhost")"
        parts["port"] = "\(closedPort),\(parts["port"] ?? "5432")"
        let conninfo = parts.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let multi = PostgresPool(conninfo: conninfo, maxConnections: 1)
        defer { multi.close() }
        #expect(try await multi.query("SELECT 41 + 1 AS v").rows[0].int("v") == 42)
    }

    @Test func aBackendKilledWhileIdleIsReplacedUnnoticed() async throws {
        let single = PostgresPool(conninfo: testDatabase!, maxConnections: 1)
        defer { single.close() }
        let pid = try await single.query("SELECT pg_backend_pid() AS p").rows[0].int("p")!
        _ = try await pool.query("SELECT pg_terminate_backend($1)", [pid])
        try await waitUntilGone(pid)
        // The loop notices the closed socket of the idle connection (a moment after the backend
        // exits); the pool then opens another for the next statement.
        try await eventually("the pool to see its idle connection's backend gone") { single.usableIdleConnections == 0 }
        let next = try await single.query("SELECT pg_backend_pid() AS p").rows[0].int("p")!
        #expect(next != pid)
        #expect(single.openConnections == 1)
    }

    @Test func aBackendKilledMidStatementFailsThatStatementOnly() async throws {
        let single = PostgresPool(conninfo: testDatabase!, maxConnections: 1)
        defer { single.close() }
        let pid = try await single.query("SELECT pg_backend_pid() AS p").rows[0].int("p")!
        let sleeping = Task { try await single.query("SELECT pg_sleep(30)") }
        try await eventually("the statement to be running in its backend") {
            try await pool.query("SELECT wait_event FROM pg_stat_activity WHERE pid = $1", [pid]).rows
                .first?["wait_event"] == "PgSleep"
        }
        _ = try await pool.query("SELECT pg_terminate_backend($1)", [pid])
        do {
            _ = try await sleeping.value
            Issue.record("a statement on a killed backend succeeded")
        } catch let e as PostgresError {
            #expect(e.isConnectionError || e.sqlState == "57P01", "\(e)")
        }
        #expect(try await single.query("SELECT 41 + 1 AS v").rows[0].int("v") == 42)
        #expect(single.openConnections == 1)
    }

    private func waitUntilGone(_ pid: Int) async throws {
        try await eventually("backend \(pid) to exit") {
            try await pool.query("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1", [pid]).rows[0].int("n")
                == 0
        }
    }

    @Test func migrationsApplyOnceEvenWhenReplicasRace() async throws {
        _ = try await pool.query("DROP TABLE IF EXISTS schema_migrations, m_items")
        let migrations = [
            Migration(
                version: 1, name: "items",
                sql: "CREATE TABLE m_items (id int PRIMARY KEY); INSERT INTO m_items VALUES (1);"),
            Migration(
                version: 2, name: "names",
                sql: "ALTER TABLE m_items ADD COLUMN name text; INSERT INTO m_items VALUES (2, 'b');"),
        ]
        // Four "replicas", each with its own pool, start at once.
        let applied = try await withThrowingTaskGroup(of: [Int].self) { group in
            for _ in 0..<4 {
                group.addTask {
                    let p = PostgresPool(conninfo: testDatabase!, maxConnections: 1)
                    defer { p.close() }
                    return try await Migrator.migrate(p, migrations)
                }
            }
            var all: [[Int]] = []
            for try await a in group { all.append(a) }
            return all
        }
        #expect(applied.filter { !$0.isEmpty } == [[1, 2]])
        #expect(try await pool.query("SELECT count(*) AS n FROM m_items").rows[0].int("n") == 2)
        #expect(try await Migrator.migrate(pool, migrations) == [])
        // A broken migration rolls back entirely and is not recorded.
        let broken =
            migrations + [
                Migration(version: 3, name: "broken", sql: "ALTER TABLE m_items ADD COLUMN x int; SELECT nonsense;")
            ]
        await #expect(throws: PostgresError.self) { try await Migrator.migrate(pool, broken) }
        #expect(try await pool.query("SELECT max(version) AS v FROM schema_migrations").rows[0].int("v") == 2)
        #expect(
            try await pool.query(
                "SELECT count(*) AS n FROM information_schema.columns WHERE table_name = 'm_items' AND column_name = 'x'"
            )
            .rows[0].int("n") == 0)
    }

    /// Issue 15, item 12: a caller that gives up does not leave its statement running, and the
    /// next caller does not wait behind it.
    @Test func aCancelledCallerCancelsItsStatementOnTheServer() async throws {
        // A statement that cannot finish by itself: it waits for an advisory lock another
        // connection holds until the end of the test.
        let key = Int64.random(in: 1...Int64.max)
        try await pool.withConnection { holder in
            _ = try await holder.query("SELECT pg_advisory_lock($1)", [key])
            let blocked = Task { try await pool.query("SELECT pg_advisory_lock($1)", [key]) }
            func waiting() async throws -> Int64 {
                try await holder.query(
                    """
                    SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
                      AND ((classid::int8 << 32) | objid::int8) = $1
                    """, [key]
                ).rows[0].int("n").map(Int64.init) ?? 0
            }
            try await eventually("the statement to queue on the lock") { try await waiting() > 0 }
            blocked.cancel()
            do {
                _ = try await blocked.value
                Issue.record("a cancelled statement returned")
            } catch let e as PostgresError {
                #expect(e.sqlState == "57014")
            }
            // PostgreSQL was told: the statement no longer waits for the lock.
            try await eventually("PostgreSQL to drop the cancelled statement's wait") { try await waiting() == 0 }
            _ = try await holder.query("SELECT pg_advisory_unlock($1)", [key])
        }
        #expect(try await pool.query("SELECT 1 AS one").rows[0].int("one") == 1)
    }

    @Test func waitersAreBoundedAndLeaveWhenCancelled() async throws {
        let small = PostgresPool(conninfo: testDatabase ?? "", maxConnections: 1, maxWaiters: 1)
        let (holding, held) = AsyncStream<Void>.makeStream()
        let (released, release) = AsyncStream<Void>.makeStream()
        let holder = Task {
            try await small.withConnection { _ in
                held.yield()
                for await _ in released { break }
            }
        }
        for await _ in holding { break }
        let abandoned = Task { try await small.query("SELECT 1") }
        while small.waitingCount < 1 { await Task.yield() }
        // The one waiting place is taken: another caller is refused at once.
        do {
            _ = try await small.query("SELECT 2")
            Issue.record("a caller beyond the waiter cap was queued")
        } catch let e as PostgresError {
            #expect(e.sqlState == "53300")
        }
        // A cancelled waiter leaves the queue (and frees its place).
        abandoned.cancel()
        await #expect(throws: CancellationError.self) { try await abandoned.value }
        #expect(small.waitingCount == 0)
        let waiter = Task { try await small.query("SELECT 3 AS three") }
        while small.waitingCount < 1 { await Task.yield() }
        release.yield()
        #expect(try await waiter.value.rows[0].int("three") == 3)
        try await holder.value
        small.close()
    }

    @Test func aBadServerAddressFailsWithAClearError() async throws {
        do {
            _ = try await PostgresConnection.connect(
                "host=127.0.0.1 port=1 user=nobody connect_timeout=2", on: EventLoopGroup(count: 1).loops[0])
            Issue.record("connected to nothing")
        } catch let e as PostgresError {
            #expect(e.isConnectionError && e.message.contains("127.0.0.1"))
        }
    }
}

/// A TCP port nothing listens on: bound, then released.
func unusedPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
        }
    }
    guard bound else { throw PostgresError(sqlState: "58000", message: "cannot bind a test port") }
    return Int(UInt16(bigEndian: address.sin_port))
}
