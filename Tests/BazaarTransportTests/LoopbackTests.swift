import BazaarCore
import BazaarWire
import Glibc
import Synchronization
import TestSupport
import Testing

@testable import BazaarTransport

/// A byte-level probe service: `Echo` returns its request; `Sleep` waits until cancelled and
/// records what the handler saw.
final class Probe: RPCService, Sendable {
    static let echo = MethodDescriptor(
        service: "test.Probe", method: "Echo", kind: .unary, inputType: "x", outputType: "x",
        options: MethodOptions(auth: AuthRequirement(level: .public)))
    static let sleep = MethodDescriptor(
        service: "test.Probe", method: "Sleep", kind: .unary, inputType: "x", outputType: "x",
        options: MethodOptions(auth: AuthRequirement(level: .public)))
    static let slowReader = MethodDescriptor(
        service: "test.Probe", method: "SlowReader", kind: .clientStreaming,
        inputType: "x", outputType: "x", options: MethodOptions(auth: AuthRequirement(level: .public)))
    static let flood = MethodDescriptor(
        service: "test.Probe", method: "Flood", kind: .serverStreaming,
        inputType: "x", outputType: "x", options: MethodOptions(auth: AuthRequirement(level: .public)))
    static let serviceDescriptor = ServiceDescriptor(
        name: "test.Probe", methods: [echo, sleep, slowReader, flood],
        file: ProtoFile(path: "probe.proto", dependencies: [], bytes: { [] }))

    struct Seen: Sendable {
        var started = 0
        var cancelled = 0
        var deadlines: [Duration] = []
        var metadata: [String] = []
        /// The client addresses `Echo` was called from (one per connection).
        var peers: Set<String> = []
    }

    let seen = Watched(Seen())
    /// Responses `Flood` has written so far.
    let floodWritten = Atomic<Int>(0)
    /// `SlowReader` reads one message, then waits for this to be true before reading the rest.
    let readOn = Watched(false)

    var handlers: [RPCHandler] {
        [
            RPCHandler(
                method: Self.echo,
                body: .unary { [self] request, context in
                    seen.update {
                        $0.metadata.append(context.metadata["x-tag"] ?? "")
                        $0.peers.insert(context.peerAddress ?? "")
                    }
                    return request
                }),
            // Takes one message, waits for `readOn`, then reads the rest; answers with the count.
            RPCHandler(
                method: Self.slowReader,
                body: .streaming { [self] requests, responses, _ in
                    var n = 0
                    for try await _ in requests {
                        n += 1
                        if n == 1 { await readOn.wait { $0 } }
                    }
                    try await responses.write(Array(String(n).utf8))
                }),
            // Writes 200 responses of 100 kB as fast as the client lets it.
            RPCHandler(
                method: Self.flood,
                body: .streaming { [self] _, responses, _ in
                    for i in 0..<200 {
                        try await responses.write([UInt8](repeating: UInt8(i & 0xff), count: 100_000))
                        floodWritten.add(1, ordering: .relaxed)
                    }
                }),
            RPCHandler(
                method: Self.sleep,
                body: .unary { [self] _, context in
                    seen.update {
                        $0.started += 1
                        if let d = context.deadline { $0.deadlines.append(d - .now) }
                    }
                    do {
                        try await untilCancelled()
                    } catch {
                        seen.update { $0.cancelled += 1 }
                        throw error
                    }
                    return []
                }),
        ]
    }
}

struct TagInterceptor: RPCInterceptor, ServerInterceptor {
    let value: String
    func intercept(_ head: RPCCallHead, next: @Sendable (RPCCallHead) async throws -> Void) async throws {
        var h = head
        if h.metadata["x-tag"] == nil { h.metadata.add("x-tag", value) }
        try await next(h)
    }

    func intercept(_ context: ServerContext, next: @Sendable (ServerContext) async throws -> Void) async throws {
        var c = context
        if c.metadata["x-tag"] == nil { c.metadata.add("x-tag", value) }
        try await next(c)
    }
}

/// Returns only when the calling task is cancelled, by throwing `CancellationError`: a handler that
/// never answers by itself (its call ends at its deadline or when the client goes away).
func untilCancelled() async throws {
    let (never, continuation) = AsyncStream<Void>.makeStream()
    // Iterating an AsyncStream ends when the iterating task is cancelled; nothing is ever yielded.
    for await _ in never {}
    continuation.finish()
    throw CancellationError()
}

/// Runs a plaintext server on a free port (or `port`) for the duration of `body`.
func withServer(
    _ services: [any RPCService], interceptors: [any ServerInterceptor] = [], port: Int = 0,
    configure: (inout ServerConfiguration) -> Void = { _ in },
    _ body: @Sendable (Int) async throws -> Void
) async throws {
    var config = ServerConfiguration(host: "127.0.0.1", port: port, security: .plaintext)
    config.loopCount = 2
    config.drainTimeout = .seconds(5)
    configure(&config)
    let server = try RPCServer(configuration: config, services: services, interceptors: interceptors)
    let (ports, portsContinuation) = AsyncStream<Int>.makeStream()
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await server.run { portsContinuation.yield($0) } }
        var it = ports.makeAsyncIterator()
        let port = await it.next()!
        defer { group.cancelAll() }
        try await body(port)
    }
}

func channel(_ port: Int, interceptors: [any RPCInterceptor] = []) throws -> GRPCChannel {
    try GRPCChannel(
        configuration: ChannelConfiguration(endpoints: [Endpoint(host: "127.0.0.1", port: port)], security: .plaintext),
        interceptors: interceptors)
}

@Suite(.serialized, .timeLimit(.minutes(3))) struct LoopbackTests {
    @Test func manyConcurrentCallsShareOneConnection() async throws {
        let probe = Probe()
        try await withServer([probe]) { port in
            let ch = try channel(port)
            defer { ch.close() }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<300 {
                    group.addTask {
                        let payload = Array("call \(i)".utf8)
                        let r = try await ch.unary(
                            Probe.echo, request: payload, options: CallOptions(timeout: .seconds(20)))
                        #expect(r == payload)
                    }
                }
                try await group.waitForAll()
            }
        }
    }

    @Test func deadlineReachesTheHandlerAndCancelsIt() async throws {
        let probe = Probe()
        try await withServer([probe]) { port in
            let ch = try channel(port)
            defer { ch.close() }
            await #expect(throws: RPCError(.deadlineExceeded, "deadline exceeded")) {
                _ = try await ch.unary(Probe.sleep, request: [], options: CallOptions(timeout: .milliseconds(300)))
            }
            await probe.seen.wait { $0.cancelled > 0 }
            let seen = probe.seen.withLock { $0 }
            #expect(seen.cancelled == 1)
            #expect(seen.deadlines.count == 1 && seen.deadlines[0] <= .milliseconds(300) && seen.deadlines[0] > .zero)
        }
    }

    @Test func clientCancellationResetsTheStreamAndCancelsTheHandler() async throws {
        let probe = Probe()
        try await withServer([probe]) { port in
            let ch = try channel(port)
            defer { ch.close() }
            let call = Task { try await ch.unary(Probe.sleep, request: [], options: CallOptions()) }
            await probe.seen.wait { $0.started > 0 }
            call.cancel()
            await #expect(throws: RPCError.self) { _ = try await call.value }
            await probe.seen.wait { $0.cancelled > 0 }
            #expect(probe.seen.withLock { $0.cancelled } == 1)
        }
    }

    @Test func clientAndServerInterceptorsShareOneShape() async throws {
        let probe = Probe()
        try await withServer([probe], interceptors: [TagInterceptor(value: "server")]) { port in
            let plain = try channel(port)
            let tagged = try channel(port, interceptors: [TagInterceptor(value: "client")])
            defer {
                plain.close()
                tagged.close()
            }
            _ = try await plain.unary(Probe.echo, request: [1], options: CallOptions())
            _ = try await tagged.unary(Probe.echo, request: [1], options: CallOptions())
            #expect(probe.seen.withLock { $0.metadata } == ["server", "client"])
        }
    }

    @Test func failFastIsUnavailableAndWaitForReadyWaits() async throws {
        // A port with nothing listening: reserve one, then free it.
        let fd = try Socket.listen(host: "127.0.0.1", port: 0, reusePort: false)
        let port = Socket.localPort(fd)
        close(fd)
        let ch = try channel(port)
        defer { ch.close() }
        do {
            _ = try await ch.unary(Probe.echo, request: [], options: CallOptions(timeout: .seconds(5)))
            Issue.record("call to a closed port succeeded")
        } catch let e as RPCError {
            #expect(e.code == .unavailable)
        }
        do {
            _ = try await ch.unary(
                Probe.echo, request: [], options: CallOptions(timeout: .milliseconds(500), waitForReady: true))
            Issue.record("wait-for-ready call succeeded without a server")
        } catch let e as RPCError {
            #expect(e.code == .deadlineExceeded)
        }
    }

    /// A port that accepts and closes without speaking HTTP/2 (a TLS port called in plaintext,
    /// something that is not gRPC) is a failed attempt: the channel backs off instead of
    /// reconnecting at once (it did: the gateway made 150 connections a second to such a port).
    /// Within the backoff a call fails fast and no second connection is made.
    @Test func aPeerThatClosesBeforeSpeakingHTTP2IsBackedOffFrom() async throws {
        let fd = try Socket.listen(host: "127.0.0.1", port: 0, reusePort: false)
        defer { close(fd) }
        var config = ChannelConfiguration(
            endpoints: [Endpoint(host: "127.0.0.1", port: Socket.localPort(fd))], security: .plaintext)
        config.backoff.initial = .seconds(3600)
        let ch = try GRPCChannel(configuration: config)
        defer { ch.close() }
        let closer = Task.detached {
            // Accept one connection and close it at once (the listener is non-blocking: poll).
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 60_000) == 1 else { return false }
            let c = accept(fd, nil, nil)
            close(c)
            return c >= 0
        }
        await #expect(throws: RPCError.self) {
            _ = try await ch.unary(Probe.echo, request: [], options: CallOptions(timeout: .seconds(30)))
        }
        #expect(await closer.value)
        do {
            _ = try await ch.unary(Probe.echo, request: [], options: CallOptions(timeout: .seconds(30)))
            Issue.record("a call succeeded against a port that does not speak HTTP/2")
        } catch let e as RPCError {
            #expect(e.code == .unavailable, "\(e)")
        }
        // Nothing new waits in the listen queue: the second call did not connect.
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        #expect(poll(&p, 1, 0) == 0)
    }

    /// Inbound back-pressure: while the handler does not read, the client can get at most about
    /// one stream window (4 MiB) of messages out, then its writes wait; once the handler reads
    /// again, everything arrives.
    @Test func aSlowHandlerHoldsBackItsClient() async throws {
        let events = TransportCounts.installed
        let heldBefore = events.counts.withLock { $0.clientWritersHeld }
        let probe = Probe()
        try await withServer([probe]) { port in
            let ch = try channel(port)
            defer { ch.close() }
            let total = 200
            let size = 100_000  // 20 MB in all
            let pulled = Atomic<Int>(0)
            let source = AsyncThrowingStream<[UInt8], any Error>(unfolding: {
                let i = pulled.add(1, ordering: .relaxed).newValue
                return i <= total ? [UInt8](repeating: UInt8(i & 0xff), count: size) : nil
            })
            let requests = RPCStream(source, transform: { $0 })
            let call = Task {
                var result: [UInt8] = []
                for try await r in ch.streaming(
                    Probe.slowReader, requests: requests, options: CallOptions(timeout: .seconds(30)))
                { result = r }
                return String(decoding: result, as: UTF8.self)
            }
            // The client's writer is held once the stream's window is spent and its own queue is full;
            // a call on the same connection then proves the server has read all the client sent.
            await events.counts.wait { $0.clientWritersHeld > heldBefore }
            let duringPause = try await settled(ch) { pulled.load(ordering: .relaxed) }
            // 4 MiB window + 256 KiB writer high-water + one message in hand: about 46 messages.
            #expect(duringPause < 70, "the client sent \(duringPause) messages while the handler was not reading")
            #expect(duringPause > 10)
            probe.readOn.update { $0 = true }
            #expect(try await call.value == String(total))
        }
    }

    /// The server drains every connection after 200 ms (max connection age); the client follows
    /// each GOAWAY to a new connection and no call fails.
    @Test func clientFollowsGoAwayToNewConnections() async throws {
        let configure: (inout ServerConfiguration) -> Void = {
            $0.keepalive.maxConnectionAge = .milliseconds(200)
            $0.keepalive.maxConnectionAgeGrace = .seconds(5)
        }
        let probe = Probe()
        try await withServer([probe], configure: configure) { port in
            let ch = try channel(port)
            defer { ch.close() }
            // Calls one after another until the client has been moved to a third connection.
            var calls = 0
            while probe.seen.withLock({ $0.peers.count }) < 3 {
                let r = try await ch.unary(
                    Probe.echo, request: [7], options: CallOptions(timeout: .seconds(5), waitForReady: true))
                #expect(r == [7])
                calls += 1
            }
            #expect(calls > 1)
        }
    }

    /// A wait-for-ready call made before the server exists succeeds once it starts (after the
    /// first reconnection backoff, about a second).
    @Test func waitForReadyCallSucceedsWhenTheServerComesUp() async throws {
        let fd = try Socket.listen(host: "127.0.0.1", port: 0, reusePort: false)
        let port = Socket.localPort(fd)
        close(fd)
        let ch = try channel(port)
        defer { ch.close() }
        let call = Task {
            try await ch.unary(
                Probe.echo, request: [9], options: CallOptions(timeout: .seconds(30), waitForReady: true))
        }
        // The call waits through the channel's first failed attempt, then the server comes up.
        try await eventually("the channel's first connection attempt to fail") { ch.connectivity == .transientFailure }
        try await withServer([Probe()], port: port) { _ in
            let answer = try await call.value
            #expect(answer == [9])
        }
    }

    /// Inbound back-pressure on the client: while the caller does not read, the server can get
    /// about one stream window of responses out, then its writes wait.
    @Test func aSlowCallerHoldsBackItsServer() async throws {
        let events = TransportCounts.installed
        let heldBefore = events.counts.withLock { $0.serverWritersHeld }
        let probe = Probe()
        try await withServer([probe]) { port in
            let ch = try channel(port)
            defer { ch.close() }
            let responses = ch.streaming(
                Probe.flood,
                requests: RPCStream {
                    $0.yield([])
                    $0.finish()
                },
                options: CallOptions(timeout: .seconds(30)))
            var it = responses.makeAsyncIterator()
            _ = try await it.next()
            // The server's writer is held once the caller's window is spent and its queue is full; a
            // call on the same connection then proves the server has read all the client sent.
            await events.counts.wait { $0.serverWritersHeld > heldBefore }
            let duringPause = try await settled(ch) { probe.floodWritten.load(ordering: .relaxed) }
            #expect(duringPause < 70, "the server wrote \(duringPause) responses while the caller was not reading")
            var n = 1
            while try await it.next() != nil { n += 1 }
            #expect(n == 200)
        }
    }

    @Test func unknownMethodIsUnimplemented() async throws {
        try await withServer([Probe()]) { port in
            let ch = try channel(port)
            defer { ch.close() }
            let missing = MethodDescriptor(
                service: "test.Probe", method: "Nope", kind: .unary, inputType: "x", outputType: "x")
            await #expect(throws: RPCError(.unimplemented, "Method not found: /test.Probe/Nope")) {
                _ = try await ch.unary(missing, request: [], options: CallOptions())
            }
        }
    }
}

@Suite struct ServerLifecycleTests {
    @Test func shutdownBeforeRunMeansRunReturnsAtOnce() async throws {
        let server = try RPCServer(
            configuration: ServerConfiguration(host: "127.0.0.1", port: 0, security: .plaintext),
            services: [Probe()])
        server.shutdown()
        try await server.run()
        #expect(server.port == 0)
    }

    @Test func duplicateMethodsAreRefused() {
        #expect(throws: RPCError.self) {
            _ = try RPCServer(
                configuration: ServerConfiguration(port: 0, security: .plaintext), services: [Probe(), Probe()])
        }
    }
}

@Suite struct LoopLifetimeTests {
    /// Regression: a channel released after its loops stopped freed its retry timer's event into
    /// the freed event_base, and hung (or crashed) in event_free. Timers and watchers now keep
    /// their loop, and so its base, alive.
    @Test func aTimerKeepsItsLoopAliveAfterTheGroupStops() async throws {
        weak var weakLoop: EventLoop?
        var timer: UnsafeTransfer<LoopTimer>?
        do {
            let group = EventLoopGroup(count: 1)
            let loop = group.loops[0]
            weakLoop = loop
            timer = await withCheckedContinuation { (c: CheckedContinuation<UnsafeTransfer<LoopTimer>, Never>) in
                loop.execute { c.resume(returning: UnsafeTransfer(loop.schedule(after: .seconds(60)) {})) }
            }
            group.shutdown()
        }
        // The group is gone and its thread stopped, but the timer's event still needs the base.
        #expect(weakLoop != nil)
        timer = nil
        _ = timer
    }

    @Test func aChannelDroppedAfterShutdownDoesNotHang() async throws {
        // A closed port: the failed attempt leaves a backoff timer armed in the subchannel.
        let fd = try Socket.listen(host: "127.0.0.1", port: 0, reusePort: false)
        let port = Socket.localPort(fd)
        Glibc.close(fd)
        let box = ChannelBox(try channel(port))
        let ch = box.channel.withLock { $0! }
        await #expect(throws: RPCError.self) { try await ch.unary(Probe.echo, request: [], options: CallOptions()) }
        await ch.shutdown()
        // The last reference goes on another thread than the (stopped) loop's.
        await Task.detached { box.channel.withLock { $0 = nil } }.value
        #expect(box.channel.withLock { $0 == nil })
    }
}

final class ChannelBox: Sendable {
    let channel: Lock<GRPCChannel?>
    init(_ c: GRPCChannel) { channel = Lock(c) }
}

/// Moves a non-Sendable value across a continuation in a test.
final class UnsafeTransfer<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Reads `count` after round trips on the channel's connection until it stops changing between
/// two of them: a writer held by flow control makes no progress however many frames go by, so a
/// stable count is the most it gets out (the suite's time limit guards against one that never
/// stops).
func settled(_ ch: GRPCChannel, _ count: () -> Int) async throws -> Int {
    var last = count()
    while true {
        _ = try await ch.unary(Probe.echo, request: [1], options: CallOptions(timeout: .seconds(30)))
        _ = try await ch.unary(Probe.echo, request: [1], options: CallOptions(timeout: .seconds(30)))
        let now = count()
        if now == last { return now }
        last = now
    }
}

/// What the transport reports to its observer, counted for the tests that wait on it (a writer
/// held by flow control). Installed once for the process; connections
/// started before that report nothing.
final class TransportCounts: TransportObserver {
    struct Counts: Sendable {
        var serverWritersHeld = 0
        var clientWritersHeld = 0
    }

    let counts = Watched(Counts())

    static let installed: TransportCounts = {
        let c = TransportCounts()
        TransportEvents.install(c)
        return c
    }()

    func connectionOpened(server: Bool) {}
    func connectionClosed(server: Bool) {}
    func tlsHandshakeFailed(server: Bool) {}
    func loopLag(seconds: Double, loop: Int) {}
    func writerHeld(server: Bool) {
        counts.update {
            if server { $0.serverWritersHeld += 1 } else { $0.clientWritersHeld += 1 }
        }
    }
}
