import BazaarCore
import BazaarTransport
import CBazaarPQ
import Dispatch
import Glibc
import Synchronization

/// An error from PostgreSQL (with its SQLSTATE) or from the connection.
public struct PostgresError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The five-character SQLSTATE (`23505` unique violation, `42601` syntax error, ...), or
    /// `08006` when the connection failed.
    public var sqlState: String
    public var message: String
    public var detail: String?

    public init(sqlState: String, message: String, detail: String? = nil) {
        self.sqlState = sqlState
        self.message = message
        self.detail = detail
    }

    static func connection(_ message: String) -> PostgresError { PostgresError(sqlState: "08006", message: message) }

    public var isUniqueViolation: Bool { sqlState == "23505" }
    public var isConnectionError: Bool { sqlState.hasPrefix("08") }
    /// A failure to connect that may pass by itself: the server not reachable yet, or starting up
    /// or shutting down (57P03); not a refused password, a missing database or role.
    public var mayPassByWaiting: Bool {
        guard isConnectionError || sqlState == "57P03" else { return false }
        let permanent = ["authentication failed", "does not exist", "no password supplied", "no pg_hba.conf entry"]
        return !permanent.contains { message.contains($0) }
    }
    public var description: String { "PostgreSQL \(sqlState): \(message)\(detail.map { " (\($0))" } ?? "")" }
}

/// A value a query takes as a parameter. Parameters travel separately from the SQL text
/// (`$1`, `$2`, ... placeholders): nothing a caller passes is ever spliced into a statement.
public protocol PostgresBindable: Sendable {
    /// The value in PostgreSQL's text input format.
    var postgresText: String { get }
}

extension String: PostgresBindable { public var postgresText: String { self } }
extension Int: PostgresBindable { public var postgresText: String { String(self) } }
extension Int64: PostgresBindable { public var postgresText: String { String(self) } }
extension Int32: PostgresBindable { public var postgresText: String { String(self) } }
extension Double: PostgresBindable { public var postgresText: String { "\(self)" } }
extension Bool: PostgresBindable { public var postgresText: String { self ? "t" : "f" } }
extension Array: PostgresBindable where Element == UInt8 {
    /// `bytea` in hex form.
    public var postgresText: String {
        let digits = [Character]("0123456789abcdef")
        var s = "\\x"
        for b in self {
            s.append(digits[Int(b >> 4)])
            s.append(digits[Int(b & 0xF)])
        }
        return s
    }
}

/// The rows (or the count) a statement produced. Values are in text format; `nil` is NULL.
public struct PostgresResult: Sendable {
    public let columns: [String]
    public let rows: [PostgresRow]
    /// Rows inserted, updated or deleted (`PQcmdTuples`), when the statement says.
    public let affectedRows: Int

    init(_ r: OpaquePointer) {
        let n = Int(PQnfields(r))
        let cols = (0..<n).map { String(cString: PQfname(r, Int32($0))) }
        var index: [String: Int] = [:]
        for (i, c) in cols.enumerated() where index[c] == nil { index[c] = i }
        columns = cols
        rows = (0..<Int(PQntuples(r))).map { row in
            PostgresRow(
                values: (0..<n).map { col in
                    PQgetisnull(r, Int32(row), Int32(col)) == 1
                        ? nil : String(cString: PQgetvalue(r, Int32(row), Int32(col)))
                }, index: index)
        }
        affectedRows = Int(String(cString: PQcmdTuples(r))) ?? 0
    }
}

/// One row: values by column name or position, with typed readers.
public struct PostgresRow: Sendable {
    public let values: [String?]
    let index: [String: Int]

    public subscript(_ column: String) -> String? {
        guard let i = index[column] else { return nil }
        return values[i]
    }

    public func int(_ column: String) -> Int? { self[column].flatMap { Int($0) } }
    public func bool(_ column: String) -> Bool? { self[column].map { $0 == "t" } }
    public func double(_ column: String) -> Double? { self[column].flatMap { Double($0) } }
}

/// One libpq connection driven without blocking on an event loop: libpq does the protocol (its
/// socket, its parser), the loop tells it when the socket is ready. One statement at a time; the
/// pool (``PostgresPool``) shares connections between tasks.
///
/// Nothing waits on the database for ever: connecting has ``connectTimeout``, and a statement
/// ends at its caller's deadline (the handler's, from ``ServerContext/current``), at
/// ``statementTimeout`` without one, or when its task is cancelled. Then the caller gets SQLSTATE
/// 57014 at once, PostgreSQL is asked to cancel the statement (`PQcancel`, off the loop), and the
/// connection is closed rather than reused: a stopped server cannot hold the next caller too.
public final class PostgresConnection: @unchecked Sendable {
    public let loop: EventLoop
    // Loop-confined.
    private var conn: OpaquePointer?
    /// Whether `conn` is connected and open, published by the loop for other threads (the pool
    /// asks from its callers' threads; reading `conn` there raced with the loop freeing it).
    private let usable = Atomic<Bool>(false)
    private var watcher: IOWatcher?
    private var watchedFD: Int32 = -1
    private enum State {
        case connecting(CheckedContinuation<Void, any Error>)
        case idle
        case running(CheckedContinuation<PostgresResult, any Error>, last: PostgresResult?, error: PostgresError?)
        case closed
    }
    private var state = State.idle
    /// Ends a connect or a statement that takes too long (loop-confined).
    private var timer: LoopTimer?
    /// Longest wait for the server to accept a connection.
    public static let connectTimeout: Duration = .seconds(10)
    /// Longest a statement runs when its caller has no deadline of its own.
    public static let statementTimeout: Duration = .seconds(30)
    /// Statements prepared on this connection, by SQL text: each is parsed and planned once per
    /// connection instead of once per execution (about a third of PostgreSQL's CPU for the
    /// shop's short statements). Bounded, since list queries assemble their WHERE clauses.
    private let prepared = Lock<[String: String]>([:])
    static let maxPrepared = 256

    /// Sees every statement (telemetry's database spans); set by the pool before first use.
    let observer: (any OperationObserver)?

    private init(loop: EventLoop, observer: (any OperationObserver)?) {
        self.loop = loop
        self.observer = observer
    }

    deinit {
        if let conn { PQfinish(conn) }
    }

    /// Connects with a libpq connection string or URL
    /// (`postgresql://user@host:5432/db`, `host=/run/pg dbname=shop`).
    /// Open it on the caller's loop (`group.preferredLoop()`): its statements then complete on the
    /// thread that asked for them, with no hop.
    public static func connect(
        _ conninfo: String, on loop: EventLoop, observer: (any OperationObserver)? = nil
    ) async throws -> PostgresConnection {
        let c = PostgresConnection(loop: loop, observer: observer)
        try await withCheckedThrowingContinuation { (k: CheckedContinuation<Void, any Error>) in
            loop.run { c.startConnect(conninfo, k) }
        }
        return c
    }

    /// Whether the connection can take statements (not failed, not closed). Readable from any
    /// thread; it turns false once the loop has seen the connection fail or close.
    public var isUsable: Bool { usable.load(ordering: .acquiring) }

    private func startConnect(_ conninfo: String, _ k: CheckedContinuation<Void, any Error>) {
        guard let conn = PQconnectStart(conninfo) else {
            return k.resume(throwing: PostgresError.connection("out of memory"))
        }
        self.conn = conn
        if PQstatus(conn) == CONNECTION_BAD { return fail(k, PostgresError.connection(errorMessage())) }
        state = .connecting(k)
        timer = loop.schedule(after: Self.connectTimeout) { [weak self] in
            guard let self, case .connecting(let k) = self.state else { return }
            self.fail(k, PostgresError.connection("no connection within \(Self.connectTimeout)"))
        }
        poll(PGRES_POLLING_WRITING)
    }

    private func fail(_ k: CheckedContinuation<Void, any Error>, _ e: PostgresError) {
        timer?.cancel()
        timer = nil
        state = .closed
        teardown()
        k.resume(throwing: e)
    }

    private func errorMessage() -> String {
        guard let conn, let m = PQerrorMessage(conn) else { return "unknown error" }
        return String(cString: m).trimming("\n ")
    }

    /// Watches the socket libpq uses now (it may change while connecting, host by host).
    private func watch(reading: Bool, writing: Bool, renew: Bool = false) {
        guard let conn else { return }
        let fd = PQsocket(conn)
        if fd != watchedFD || renew {
            watcher?.close()
            watchedFD = fd
            // Weak: an event that arrives after the connection is gone must find nothing.
            watcher =
                fd < 0
                ? nil
                : IOWatcher(
                    loop: loop, fd: fd, onReadable: { [weak self] in self?.ready() },
                    onWritable: { [weak self] in self?.ready() })
        }
        watcher?.setReading(reading)
        watcher?.setWriting(writing)
    }

    private func poll(_ status: PostgresPollingStatusType) {
        switch status {
        // While connecting, libpq may close its socket and open another (the next host of a
        // multi-host conninfo, or the next address of one): the new socket often gets the same
        // number, which the loop's poller no longer watches (closing a descriptor drops it there).
        // So every step registers the socket anew.
        case PGRES_POLLING_READING: watch(reading: true, writing: false, renew: true)
        case PGRES_POLLING_WRITING: watch(reading: false, writing: true, renew: true)
        case PGRES_POLLING_OK:
            guard case .connecting(let k) = state else { return }
            PQsetnonblocking(conn, 1)
            // libpq prints NOTICEs (e.g. "relation already exists, skipping") on stderr by
            // default; they are informational and would only clutter a service's output.
            PQsetNoticeProcessor(conn, { _, _ in }, nil)
            timer?.cancel()
            timer = nil
            state = .idle
            usable.store(true, ordering: .releasing)
            watch(reading: false, writing: false)
            k.resume()
        default:
            guard case .connecting(let k) = state else { return }
            fail(k, PostgresError.connection(errorMessage()))
        }
    }

    private func ready() {
        switch state {
        case .connecting: poll(PQconnectPoll(conn))
        case .running: pump()
        case .idle, .closed:
            // An idle connection that turns readable was closed by the server (or sent a notice).
            if let conn, PQconsumeInput(conn) == 0 || PQstatus(conn) == CONNECTION_BAD {
                state = .closed
                teardown()
            }
        }
    }

    /// Runs one statement with `$n` parameters; returns its rows or affected count. The statement
    /// is prepared on the connection the first time it runs there (see `prepared`).
    public func query(_ sql: String, _ parameters: [(any PostgresBindable)?] = []) async throws -> PostgresResult {
        guard let observer else { return try await statement(sql, parameters) }
        let observation = observer.operationStarted(
            Self.operationName(sql), statement: sql, connectionThread: loop.threadID)
        do {
            let result = try await statement(sql, parameters)
            observer.operationEnded(observation, error: nil)
            return result
        } catch {
            observer.operationEnded(observation, error: error)
            throw error
        }
    }

    /// The statement's first word (`SELECT`, `INSERT`, `BEGIN`): a span name of low cardinality.
    static func operationName(_ sql: String) -> String {
        let word = sql.utf8.drop { $0 == 32 || $0 == 10 || $0 == 9 }.prefix { $0 != 32 && $0 != 10 && $0 != 9 }
        return String(decoding: word, as: UTF8.self).uppercased()
    }

    private func statement(_ sql: String, _ parameters: [(any PostgresBindable)?]) async throws -> PostgresResult {
        let texts = parameters.map { $0?.postgresText }
        var name = prepared.withLock { $0[sql] }
        if name == nil, prepared.withLock({ $0.count }) < Self.maxPrepared {
            let candidate = "bz\(prepared.withLock { $0.count })"
            _ = try await run { PQsendPrepare($0, candidate, sql, Int32(texts.count), nil) }
            prepared.withLock { $0[sql] = candidate }
            name = candidate
        }
        let chosen = name
        return try await run { conn in
            Self.withCStrings(texts) { values in
                if let name = chosen { return PQsendQueryPrepared(conn, name, Int32(texts.count), values, nil, nil, 0) }
                return PQsendQueryParams(conn, sql, Int32(texts.count), nil, values, nil, nil, 0)
            }
        }
    }

    private func run(_ send: @escaping @Sendable (OpaquePointer) -> Int32) async throws -> PostgresResult {
        // The caller's deadline, if it has one (a handler's), bounds the statement.
        let limit =
            ServerContext.current?.deadline.map { min($0 - .now, Self.statementTimeout) } ?? Self.statementTimeout
        if limit <= .zero {
            throw PostgresError(sqlState: "57014", message: "the deadline passed before the statement was sent")
        }
        let statement = Statement()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { k in
                // A caller on this connection's loop (the usual case) starts it here and now.
                loop.run { self.start(k, statement, limit: limit, send: send) }
            }
        } onCancel: {
            loop.execute { self.abandon(statement, because: "the caller gave up") }
        }
    }

    /// Identifies one statement, so that a late timer or cancellation never touches the next.
    private final class Statement: Sendable {}
    private var current: Statement?

    /// Runs a script of several statements (no parameters): migrations. No caller deadline
    /// applies; a script gets ten statement timeouts.
    public func execute(script: String) async throws {
        let statement = Statement()
        _ = try await withCheckedThrowingContinuation { (k: CheckedContinuation<PostgresResult, any Error>) in
            loop.execute { self.start(k, statement, limit: Self.statementTimeout * 10) { PQsendQuery($0, script) } }
        }
    }

    private func start(
        _ k: CheckedContinuation<PostgresResult, any Error>, _ statement: Statement, limit: Duration,
        send: (OpaquePointer) -> Int32
    ) {
        guard case .idle = state, let conn, PQstatus(conn) == CONNECTION_OK else {
            if case .running = state {
                return k.resume(
                    throwing: PostgresError(sqlState: "55000", message: "the connection is busy with another statement")
                )
            }
            // Idle but broken (libpq saw the failure first): close it, so the pool stops handing it out.
            if case .idle = state {
                state = .closed
                teardown()
            }
            return k.resume(throwing: PostgresError.connection("the connection is closed"))
        }
        guard send(conn) == 1 else {
            // libpq refuses to send only when the connection is broken (or out of memory): close
            // it, so that the pool replaces it instead of handing it out again.
            let error = PostgresError.connection(errorMessage())
            state = .closed
            teardown()
            return k.resume(throwing: error)
        }
        state = .running(k, last: nil, error: nil)
        current = statement
        timer = loop.schedule(after: limit) { [weak self, weak statement] in
            guard let self, let statement else { return }
            self.abandon(statement, because: "no answer within \(limit)")
        }
        pump()
    }

    /// Gives up on a statement still running: its caller gets 57014 now, the server is asked to
    /// cancel it, and the connection closes (it may never answer; see the type's comment).
    private func abandon(_ statement: Statement, because why: String) {
        guard current === statement, case .running(let k, _, _) = state, let conn else { return }
        current = nil
        timer?.cancel()
        timer = nil
        if let cancel = PQgetCancel(conn) {
            let handle = UnsafeSendable(cancel)
            // PQcancel opens a connection of its own and blocks: never on the loop.
            DispatchQueue.global().async {
                var buffer = [CChar](repeating: 0, count: 256)
                _ = PQcancel(handle.value, &buffer, Int32(buffer.count))
                PQfreeCancel(handle.value)
            }
        }
        state = .closed
        teardown()
        k.resume(throwing: PostgresError(sqlState: "57014", message: "statement cancelled: \(why)"))
    }

    /// Sends what libpq has queued, reads what arrived, and collects results until the
    /// statement is done.
    private func pump() {
        guard case .running(let k, var last, var error) = state, let conn else { return }
        let flush = PQflush(conn)
        if flush < 0 { return finishRunning(k, .failure(PostgresError.connection(errorMessage()))) }
        if PQconsumeInput(conn) == 0 { return finishRunning(k, .failure(PostgresError.connection(errorMessage()))) }
        while PQisBusy(conn) == 0 {
            guard let r = PQgetResult(conn) else {
                // The statement is complete.
                if let error { return finishRunning(k, .failure(error)) }
                return finishRunning(k, .success(last ?? PostgresResult(empty: ())))
            }
            switch PQresultStatus(r) {
            case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
                last = PostgresResult(r)
            default:
                if error == nil { error = Self.error(of: r) }
            }
            PQclear(r)
        }
        state = .running(k, last: last, error: error)
        watch(reading: true, writing: flush == 1)
    }

    private func finishRunning(
        _ k: CheckedContinuation<PostgresResult, any Error>, _ result: Result<PostgresResult, PostgresError>
    ) {
        current = nil
        timer?.cancel()
        timer = nil
        if let conn, PQstatus(conn) == CONNECTION_OK {
            state = .idle
            watch(reading: true, writing: false)  // notice a server-side close while idle
        } else {
            state = .closed
            teardown()
        }
        k.resume(with: result.mapError { $0 as any Error })
    }

    static func error(of r: OpaquePointer) -> PostgresError {
        func field(_ code: Int32) -> String? { PQresultErrorField(r, code).map { String(cString: $0) } }
        return PostgresError(
            sqlState: field(Int32(UInt8(ascii: "C"))) ?? "XX000",
            message: field(Int32(UInt8(ascii: "M"))) ?? String(cString: PQresultErrorMessage(r)),
            detail: field(Int32(UInt8(ascii: "D"))))
    }

    private static func withCStrings<R>(_ strings: [String?], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R
    {
        var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { $0.map { strdup($0) } ?? nil }
        defer { for p in pointers { free(p) } }
        return pointers.withUnsafeMutableBufferPointer { buf in
            buf.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: max(buf.count, 1)) {
                body(strings.isEmpty ? nil : $0)
            }
        }
    }

    /// Closes the connection; a statement in progress fails.
    public func close() {
        loop.execute { [self] in
            if case .running(let k, _, _) = state {
                k.resume(throwing: PostgresError.connection("the connection was closed"))
            }
            if case .connecting(let k) = state {
                k.resume(throwing: PostgresError.connection("the connection was closed"))
            }
            current = nil
            timer?.cancel()
            timer = nil
            state = .closed
            teardown()
        }
    }

    private func teardown() {
        usable.store(false, ordering: .releasing)
        watcher?.close()
        watcher = nil
        watchedFD = -1
        if let conn { PQfinish(conn) }
        conn = nil
    }
}

extension PostgresResult {
    init(empty: ()) {
        columns = []
        rows = []
        affectedRows = 0
    }
}
