import BazaarCore
import BazaarTransport
import CBazaarHiredis
import Glibc
import Synchronization

/// A Redis reply (RESP2).
public enum RedisValue: Sendable, Hashable {
    case null
    /// A bulk string: any bytes.
    case bulk([UInt8])
    /// A status reply such as `OK`.
    case simple(String)
    case integer(Int64)
    case array([RedisValue])

    /// The reply as text, for bulk and status replies.
    public var string: String? {
        switch self {
        case .bulk(let b): String(decoding: b, as: UTF8.self)
        case .simple(let s): s
        default: nil
        }
    }

    public var integer: Int64? {
        if case .integer(let i) = self { return i }
        return nil
    }

    public var array: [RedisValue]? {
        if case .array(let a) = self { return a }
        return nil
    }
}

/// An error reply from Redis (`WRONGTYPE ...`) or a connection failure.
public struct RedisError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// Redis answered with an error; the connection is fine.
        case server
        /// The connection failed or closed; the command may or may not have run.
        case connection
    }

    public var kind: Kind
    public var message: String
    /// The connection was already gone, so the command was never sent (safe to send again).
    public static let notConnected = RedisError(kind: .connection, message: "not connected")
    public var description: String { kind == .server ? "Redis: \(message)" : "Redis connection: \(message)" }
}

/// One Redis connection through hiredis's asynchronous API, driven by an event loop: hiredis
/// parses the protocol, the loop tells it when its socket is ready (our own event hooks, the same
/// way its libevent adapter does). Commands pipeline: many may be in flight, answered in order.
///
/// Nothing waits on Redis for ever: connecting has ``connectTimeout``, and a command that gets
/// no reply within its timeout (``commandTimeout``, or the one given to ``send(_:timeout:)``,
/// e.g. a blocking read's own wait plus a margin) fails, with every command behind it, and the
/// connection is dropped: replies come in order, so a stuck server holds them all.
public final class RedisConnection: @unchecked Sendable {
    public let loop: EventLoop
    // Loop-confined.
    private var context: UnsafeMutablePointer<redisAsyncContext>?
    private var watcher: IOWatcher?
    private var connectWaiter: CheckedContinuation<Void, any Error>?
    private var pending: [UInt: (k: CheckedContinuation<RedisValue, any Error>, timer: LoopTimer?)] = [:]
    private var connectTimer: LoopTimer?
    /// Longest wait for the server to accept the connection.
    public static let connectTimeout: Duration = .seconds(5)
    /// Longest wait for a command's reply, unless the command says otherwise.
    public static let commandTimeout: Duration = .seconds(5)
    private var nextID: UInt = 1
    private let connected = Atomic<Bool>(false)

    private init(loop: EventLoop) { self.loop = loop }

    /// Whether commands can be sent.
    public var isConnected: Bool { connected.load(ordering: .acquiring) }

    public static func connect(host: String, port: Int, on loop: EventLoop) async throws -> RedisConnection {
        let c = RedisConnection(loop: loop)
        try await withCheckedThrowingContinuation { (k: CheckedContinuation<Void, any Error>) in
            loop.execute { c.start(host: host, port: port, k) }
        }
        return c
    }

    private static func from(_ p: UnsafeMutableRawPointer?) -> RedisConnection {
        Unmanaged<RedisConnection>.fromOpaque(p!).takeUnretainedValue()
    }

    private func start(host: String, port: Int, _ k: CheckedContinuation<Void, any Error>) {
        guard let ac = redisAsyncConnect(host, Int32(port)) else {
            return k.resume(throwing: RedisError(kind: .connection, message: "out of memory"))
        }
        if ac.pointee.err != 0 {
            let why = Self.errstr(ac)
            redisAsyncFree(ac)
            return k.resume(throwing: RedisError(kind: .connection, message: "\(host):\(port): \(why)"))
        }
        context = ac
        connectWaiter = k
        // The context holds this connection until hiredis frees it (after the disconnect callback).
        let me = Unmanaged.passRetained(self).toOpaque()
        ac.pointee.data = me
        ac.pointee.ev.data = me
        ac.pointee.ev.addRead = { RedisConnection.from($0).watcher?.setReading(true) }
        ac.pointee.ev.delRead = { RedisConnection.from($0).watcher?.setReading(false) }
        ac.pointee.ev.addWrite = { RedisConnection.from($0).watcher?.setWriting(true) }
        ac.pointee.ev.delWrite = { RedisConnection.from($0).watcher?.setWriting(false) }
        // hiredis calls this exactly once, last, when it frees the context (after a failed
        // connect, a disconnect, or an error): only then may the connection let go of itself.
        ac.pointee.ev.cleanup = { p in
            let c = RedisConnection.from(p)
            c.finished("the connection closed")
            Unmanaged<RedisConnection>.fromOpaque(p!).release()
        }
        // Weak: an event that arrives after the connection let go of itself must find nothing.
        watcher = IOWatcher(
            loop: loop, fd: ac.pointee.c.fd,
            onReadable: { [weak self] in
                if let context = self?.context { redisAsyncHandleRead(context) }
            },
            onWritable: { [weak self] in
                if let context = self?.context { redisAsyncHandleWrite(context) }
            })
        _ = redisAsyncSetConnectCallback(ac) { ac, status in
            let c = RedisConnection.from(ac!.pointee.data)
            c.connectFinished(ok: status == REDIS_OK, why: RedisConnection.errstr(ac!))
        }
        _ = redisAsyncSetDisconnectCallback(ac) { ac, status in
            RedisConnection.from(ac!.pointee.data).disconnected(
                why: status == REDIS_OK ? "closed" : RedisConnection.errstr(ac!))
        }
        // Connecting completes when the socket turns writable.
        watcher?.setWriting(true)
        connectTimer = loop.schedule(after: Self.connectTimeout) { [weak self] in
            guard let self, let k = self.connectWaiter, let context = self.context else { return }
            self.connectWaiter = nil
            k.resume(
                throwing: RedisError(
                    kind: .connection, message: "\(host):\(port): no connection within \(Self.connectTimeout)"))
            redisAsyncFree(context)
        }
    }

    private static func errstr(_ ac: UnsafePointer<redisAsyncContext>) -> String {
        withUnsafeBytes(of: ac.pointee.c.errstr) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    private func connectFinished(ok: Bool, why: String) {
        connectTimer?.cancel()
        connectTimer = nil
        let k = connectWaiter
        connectWaiter = nil
        if ok {
            connected.store(true, ordering: .releasing)
            k?.resume()
        } else {
            // hiredis frees the context after a failed connect; the disconnect callback does not run.
            k?.resume(throwing: RedisError(kind: .connection, message: why))
            finished(why)
        }
    }

    private func disconnected(why: String) {
        finished(why)
    }

    /// The context is going (hiredis frees it right after these callbacks): fail what waits.
    private func finished(_ why: String) {
        guard context != nil else { return }
        connected.store(false, ordering: .releasing)
        context = nil
        watcher?.close()
        watcher = nil
        connectTimer?.cancel()
        connectTimer = nil
        if let k = connectWaiter {
            connectWaiter = nil
            k.resume(throwing: RedisError(kind: .connection, message: why))
        }
        let waiting = pending
        pending = [:]
        for (_, p) in waiting {
            p.timer?.cancel()
            p.k.resume(throwing: RedisError(kind: .connection, message: why))
        }
    }

    /// Sends one command (`["SET", "cart:1", "..."]`); arguments are binary-safe. `timeout`:
    /// the longest wait for its reply (``commandTimeout`` when `nil`).
    public func send(_ arguments: [[UInt8]], timeout: Duration? = nil) async throws -> RedisValue {
        let limit = timeout ?? Self.commandTimeout
        return try await withCheckedThrowingContinuation { k in
            // From a task on this loop (the client's choice of connection) it goes out now.
            loop.run { self.enqueue(arguments, limit, k) }
        }
    }

    /// Sends one command whose arguments are text.
    public func send(_ arguments: String...) async throws -> RedisValue {
        try await send(arguments.map { Array($0.utf8) })
    }

    private func enqueue(_ arguments: [[UInt8]], _ limit: Duration, _ k: CheckedContinuation<RedisValue, any Error>) {
        guard let context, connected.load(ordering: .relaxed) else {
            return k.resume(throwing: RedisError.notConnected)
        }
        let id = nextID
        nextID &+= 1
        let timer = loop.schedule(after: limit) { [weak self] in self?.timedOut(id, limit) }
        pending[id] = (k, timer)
        let rc = Self.withArgv(arguments) { argc, argv, lens in
            redisAsyncCommandArgv(
                context,
                { ac, reply, privdata in
                    let c = RedisConnection.from(ac!.pointee.data)
                    c.replied(UInt(bitPattern: privdata), reply?.assumingMemoryBound(to: redisReply.self))
                }, UnsafeMutableRawPointer(bitPattern: id), argc, argv, lens)
        }
        if rc != REDIS_OK {
            pending[id] = nil
            timer.cancel()
            k.resume(throwing: RedisError(kind: .connection, message: Self.errstr(context)))
        }
    }

    /// A reply did not come in time: the server is stuck or gone, and replies come in order, so
    /// every command on this connection fails now and the connection is dropped (freeing the
    /// context fails the rest through their callbacks; the client connects anew).
    private func timedOut(_ id: UInt, _ limit: Duration) {
        guard let p = pending.removeValue(forKey: id), let context else { return }
        // Disconnected before the caller hears of it: resuming runs the caller at once on
        // another thread, which must not see the connection as usable.
        connected.store(false, ordering: .releasing)
        p.k.resume(throwing: RedisError(kind: .connection, message: "no reply within \(limit)"))
        redisAsyncFree(context)
    }

    private func replied(_ id: UInt, _ reply: UnsafeMutablePointer<redisReply>?) {
        guard let (k, timer) = pending.removeValue(forKey: id) else { return }
        timer?.cancel()
        guard let reply else {
            return k.resume(throwing: RedisError(kind: .connection, message: "the connection closed before the reply"))
        }
        if reply.pointee.type == REDIS_REPLY_ERROR {
            return k.resume(
                throwing: RedisError(kind: .server, message: String(decoding: Self.bytes(reply), as: UTF8.self)))
        }
        k.resume(returning: Self.value(reply))
    }

    static func bytes(_ r: UnsafeMutablePointer<redisReply>) -> [UInt8] {
        guard let str = r.pointee.str else { return [] }
        return Array(UnsafeRawBufferPointer(start: str, count: r.pointee.len))
    }

    static func value(_ r: UnsafeMutablePointer<redisReply>) -> RedisValue {
        switch r.pointee.type {
        case REDIS_REPLY_STRING: return .bulk(bytes(r))
        case REDIS_REPLY_STATUS: return .simple(String(decoding: bytes(r), as: UTF8.self))
        case REDIS_REPLY_INTEGER: return .integer(Int64(r.pointee.integer))
        case REDIS_REPLY_ARRAY:
            return .array((0..<r.pointee.elements).map { value(r.pointee.element[$0]!) })
        default: return .null
        }
    }

    private static func withArgv<R>(
        _ args: [[UInt8]], _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> R
    ) -> R {
        let buffers = args.map { a -> UnsafeMutablePointer<CChar> in
            let p = UnsafeMutablePointer<CChar>.allocate(capacity: max(a.count, 1))
            a.withUnsafeBytes {
                if let base = $0.baseAddress { UnsafeMutableRawPointer(p).copyMemory(from: base, byteCount: a.count) }
            }
            return p
        }
        defer { for p in buffers { p.deallocate() } }
        var argv: [UnsafePointer<CChar>?] = buffers.map { UnsafePointer($0) }
        let lens = args.map(\.count)
        return argv.withUnsafeMutableBufferPointer { a in
            lens.withUnsafeBufferPointer { l in body(Int32(args.count), a.baseAddress!, l.baseAddress!) }
        }
    }

    /// Closes after the replies already asked for.
    public func close() {
        loop.execute { [self] in
            if let context { redisAsyncDisconnect(context) }
        }
    }
}

/// A Redis client for one server that connects on first use and again after a connection failed.
/// A command that was in flight when the connection failed fails (it is not resent: it may have run).
///
/// With the process's ``EventLoopGroup`` it keeps one connection per loop, made when a task on
/// that loop first needs it: a handler's commands go out and come back on its own thread.
public final class RedisClient: Sendable {
    public let host: String
    public let port: Int
    private let group: EventLoopGroup
    private let ownsGroup: Bool
    private struct Lane {
        var connection: RedisConnection?
        /// The connection being made: concurrent first commands share it (one connection, not one each).
        var connecting: Task<RedisConnection, any Error>?
    }
    /// One lane per loop of the group.
    private let lanes: [Lock<Lane>]

    public init(host: String, port: Int, group: EventLoopGroup? = nil) {
        self.host = host
        self.port = port
        ownsGroup = group == nil
        self.group = group ?? EventLoopGroup(count: 1)
        lanes = self.group.loops.map { _ in Lock(Lane()) }
    }

    deinit { if ownsGroup { group.shutdown() } }

    /// `host:port`, e.g. from `BAZAAR_REDIS`.
    public convenience init?(address: String, group: EventLoopGroup? = nil) {
        guard let e = Endpoint(address) else { return nil }
        self.init(host: e.host, port: e.port, group: group)
    }

    public func send(_ arguments: [[UInt8]], timeout: Duration? = nil) async throws -> RedisValue {
        do {
            return try await current().send(arguments, timeout: timeout)
        } catch let e as RedisError where e == .notConnected {
            // The connection died after it was handed out but before the command went out (its
            // replies fail first, its disconnect is noticed a moment later): the command was
            // never sent, so it goes once more, on a new connection.
            return try await current().send(arguments, timeout: timeout)
        }
    }

    public func send(_ arguments: String...) async throws -> RedisValue {
        try await send(arguments.map { Array($0.utf8) })
    }

    private func current() async throws -> RedisConnection {
        // Callers off the group's loops (startup, tools) share the first loop's connection.
        let loop = group.currentLoop ?? group.loops[0]
        let lane = lanes[loop.index]
        enum Next {
            case ready(RedisConnection)
            case wait(Task<RedisConnection, any Error>)
        }
        let next = lane.withLock { s -> Next in
            if let c = s.connection, c.isConnected { return .ready(c) }
            if let t = s.connecting { return .wait(t) }
            let (host, port) = (self.host, self.port)
            let t = Task(executorPreference: loop) {
                try await RedisConnection.connect(host: host, port: port, on: loop)
            }
            s.connecting = t
            return .wait(t)
        }
        // The usual case: this loop's connection is up.
        let task: Task<RedisConnection, any Error>
        switch next {
        case .ready(let c): return c
        case .wait(let t): task = t
        }
        do {
            let c = try await task.value
            lane.withLock { s in
                if s.connection !== c { s.connection = c }
                s.connecting = nil
            }
            return c
        } catch {
            lane.withLock { $0.connecting = nil }
            throw error
        }
    }

    public func close() {
        for lane in lanes {
            lane.withLock { s in
                s.connection?.close()
                s.connection = nil
            }
        }
    }
}
