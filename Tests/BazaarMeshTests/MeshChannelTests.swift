import BazaarCore
import BazaarWire
import Glibc
import Synchronization
import TestSupport
import Testing

@testable import BazaarMesh
@testable import BazaarTransport

/// A byte-level service for the channel tests: `Echo`, `Sleep` (records its deadline and whether
/// it was cancelled), `Count` (streams n responses), and `Relay` (calls `Sleep` on its upstream).
final class Backend: RPCService, Sendable {
    static func method(_ name: String, _ kind: RPCKind = .unary) -> MethodDescriptor {
        MethodDescriptor(
            service: "test.Backend", method: name, kind: kind, inputType: "x", outputType: "x",
            options: MethodOptions(auth: AuthRequirement(level: .public)))
    }

    static let echo = method("Echo"), sleep = method("Sleep"), relay = method("Relay"),
        count = method("Count", .serverStreaming)
    static let serviceDescriptor = ServiceDescriptor(
        name: "test.Backend", methods: [echo, sleep, relay, count],
        file: ProtoFile(path: "backend.proto", dependencies: [], bytes: { [] }))

    struct Seen: Sendable {
        var deadlines: [Duration] = []
        var cancelled = 0
    }

    let seen = Watched(Seen())
    let upstream: MeshChannel?

    init(upstream: MeshChannel? = nil) { self.upstream = upstream }

    var handlers: [RPCHandler] {
        [
            RPCHandler(method: Self.echo, body: .unary { request, _ in request }),
            RPCHandler(
                method: Self.sleep,
                body: .unary { [self] _, context in
                    if let d = context.deadline { seen.update { $0.deadlines.append(d - .now) } }
                    do {
                        // Runs until the caller's cancellation reaches it (what the tests watch for).
                        try await Task.sleep(for: .seconds(30))
                    } catch {
                        seen.update { $0.cancelled += 1 }
                        throw error
                    }
                    return []
                }),
            RPCHandler(
                method: Self.relay,
                body: .unary { [self] request, _ in
                    // No options passed on: the deadline and cancellation travel by themselves.
                    try await upstream!.unary(Self.sleep, request: request, options: CallOptions())
                }),
            RPCHandler(
                method: Self.count,
                body: .streaming { requests, responses, _ in
                    var it = requests.makeAsyncIterator()
                    let n = Int(try await it.next()?.first ?? 0)
                    for i in 0..<n { try await responses.write([UInt8(i)]) }
                }),
        ]
    }
}

func withServers(_ services: [any RPCService], _ body: @Sendable ([Int]) async throws -> Void) async throws {
    try await withThrowingTaskGroup(of: Void.self) { group in
        var ports: [Int] = []
        for service in services {
            var config = ServerConfiguration(host: "127.0.0.1", port: 0, security: .plaintext)
            config.loopCount = 1
            config.drainTimeout = .seconds(2)
            let server = try RPCServer(configuration: config, services: [service])
            let (stream, c) = AsyncStream<Int>.makeStream()
            group.addTask { try await server.run { c.yield($0) } }
            var it = stream.makeAsyncIterator()
            ports.append(await it.next()!)
        }
        defer { group.cancelAll() }
        try await body(ports)
    }
}

/// Records how each call ended, after `next` returned or threw.
final class OutcomeRecorder: RPCInterceptor {
    let outcomes = Watched<[String]>([])
    let refuse: Bool
    init(refuse: Bool = false) { self.refuse = refuse }

    func intercept(_ head: RPCCallHead, next: @Sendable (RPCCallHead) async throws -> Void) async throws {
        if refuse { throw RPCError(.permissionDenied, "refused by the interceptor") }
        do {
            try await next(head)
            outcomes.update { $0.append("\(head.method.method): ok") }
        } catch let e as RPCError {
            outcomes.update { $0.append("\(head.method.method): \(e.code)") }
            throw e
        }
    }
}

@Suite(.serialized, .timeLimit(.minutes(1))) struct MeshChannelTests {
    /// A port nothing listens on yet (for a server that starts later).
    static func reservedPort() throws -> Int {
        let fd = try Socket.listen(host: "127.0.0.1", port: 0, reusePort: false)
        defer { close(fd) }
        return Socket.localPort(fd)
    }

    static func serve(_ service: any RPCService, port: Int, _ body: @Sendable () async throws -> Void) async throws {
        var config = ServerConfiguration(host: "127.0.0.1", port: port, security: .plaintext)
        config.loopCount = 1
        let server = try RPCServer(configuration: config, services: [service])
        try await withThrowingTaskGroup(of: Void.self) { group in
            let (started, c) = AsyncStream<Int>.makeStream()
            group.addTask { try await server.run { c.yield($0) } }
            var it = started.makeAsyncIterator()
            _ = await it.next()
            defer { group.cancelAll() }
            try await body()
        }
    }

    /// The only endpoint is down (a replica restarting): a call made meanwhile is held within
    /// `unavailableGrace` and goes through once the endpoint is back, instead of failing at once
    /// (in the chaos test, kills of single replicas failed every call until the restart).
    @Test func aCallWaitsWithinTheGraceForAnEndpointToComeBack() async throws {
        let port = try Self.reservedPort()
        var mesh = MeshConfiguration()
        mesh.unavailableGrace = .seconds(60)  // longer than any machine needs to get here
        let channel = try MeshChannel(target: "127.0.0.1:\(port)", security: .plaintext, mesh: mesh)
        let call = Task {
            try await channel.unary(Backend.echo, request: [7], options: CallOptions(timeout: .seconds(60)))
        }
        try await eventually("the endpoint's first connection attempt to fail") {
            channel.endpoints.first?.state == .transientFailure
        }
        try await Self.serve(Backend(), port: port) {
            let answer = try await call.value
            #expect(answer == [7])
        }
        await channel.shutdown()
    }

    /// A call held by the grace whose deadline comes first ends with UNAVAILABLE, the cause,
    /// which callers and retry policies act on (not DEADLINE_EXCEEDED).
    @Test func aHeldCallWhoseDeadlineComesFirstIsUnavailable() async throws {
        let port = try Self.reservedPort()
        var mesh = MeshConfiguration()
        mesh.unavailableGrace = .seconds(60)
        let channel = try MeshChannel(target: "127.0.0.1:\(port)", security: .plaintext, mesh: mesh)
        let first = Task {
            try? await channel.unary(Backend.echo, request: [7], options: CallOptions(timeout: .seconds(60)))
        }
        try await eventually("the endpoint's first connection attempt to fail") {
            channel.endpoints.first?.state == .transientFailure
        }
        do {
            _ = try await channel.unary(Backend.echo, request: [7], options: CallOptions(timeout: .milliseconds(200)))
            Issue.record("a call succeeded with no server")
        } catch let e as RPCError {
            #expect(e.code == .unavailable, "\(e)")
        }
        first.cancel()
        await channel.shutdown()
    }

    /// With no grace, the same call fails at once with UNAVAILABLE (gRPC's fail-fast).
    @Test func withoutGraceACallFailsFastWhileTheEndpointIsDown() async throws {
        let port = try Self.reservedPort()
        var mesh = MeshConfiguration()
        mesh.unavailableGrace = .zero
        let channel = try MeshChannel(target: "127.0.0.1:\(port)", security: .plaintext, mesh: mesh)
        try await eventually("the endpoint's first connection attempt to fail") {
            _ = try? await channel.unary(Backend.echo, request: [7], options: CallOptions(timeout: .seconds(60)))
            return channel.endpoints.first?.state == .transientFailure
        }
        await #expect(throws: RPCError.self) {
            do {
                _ = try await channel.unary(Backend.echo, request: [7], options: CallOptions(timeout: .seconds(60)))
            } catch let e as RPCError {
                #expect(e.code == .unavailable, "\(e)")
                throw e
            }
        }
        await channel.shutdown()
    }

    @Test func callsInsideAHandlerInheritItsDeadlineAndCancellation() async throws {
        let back = Backend()
        try await withServers([back]) { ports in
            let upstream = try MeshChannel(target: "127.0.0.1:\(ports[0])", security: .plaintext)
            let front = Backend(upstream: upstream)
            try await withServers([front]) { frontPorts in
                let edge = try MeshChannel(target: "127.0.0.1:\(frontPorts[0])", security: .plaintext)
                let call = Task {
                    try await edge.unary(Backend.relay, request: [], options: CallOptions(timeout: .seconds(5)))
                }
                await back.seen.wait { !$0.deadlines.isEmpty }
                let deadline = try #require(back.seen.withLock { $0.deadlines.first })
                // Passed on, and never lengthened (how much of it is left depends on the machine).
                #expect(deadline <= .seconds(5) && deadline > .zero)
                call.cancel()
                await #expect(throws: RPCError.self) { try await call.value }
                await back.seen.wait { $0.cancelled > 0 }
                #expect(back.seen.withLock { $0.cancelled } == 1)
                await edge.shutdown()
            }
            await upstream.shutdown()
        }
    }

    /// Issue 15, item 11: callers with their own short deadlines must not eject a replica that
    /// keeps answering everyone else.
    @Test func shortClientDeadlinesDoNotEjectAnEndpointThatKeepsAnswering() async throws {
        try await withServers([Backend()]) { ports in
            var mesh = MeshConfiguration()
            mesh.outlierDetection?.consecutiveFailures = 2
            mesh.outlierDetection?.maxEjectionPercent = 100
            let ch = try MeshChannel(target: "127.0.0.1:\(ports[0])", security: .plaintext, mesh: mesh)
            for _ in 0..<6 {
                let done = Lock(false)
                let short = Task {
                    defer { done.withLock { $0 = true } }
                    _ = try await ch.unary(
                        Backend.sleep, request: [], options: CallOptions(timeout: .milliseconds(300)))
                }
                // Others are answered while the short call waits, until it has failed.
                repeat {
                    _ = try await ch.unary(Backend.echo, request: [1], options: CallOptions(timeout: .seconds(10)))
                } while !done.withLock({ $0 })
                await #expect(throws: RPCError.self) { try await short.value }
            }
            #expect(ch.endpoints.allSatisfy { !$0.ejected }, "\(ch.endpoints)")
            await ch.shutdown()
        }
    }

    @Test func anInheritedDeadlineThatHasPassedFailsWithoutACall() async throws {
        let back = Backend()
        try await withServers([back]) { ports in
            var mesh = MeshConfiguration()
            mesh.deadlineMargin = .seconds(10)  // more than the inbound call has
            let upstream = try MeshChannel(target: "127.0.0.1:\(ports[0])", security: .plaintext, mesh: mesh)
            try await withServers([Backend(upstream: upstream)]) { frontPorts in
                let edge = try MeshChannel(target: "127.0.0.1:\(frontPorts[0])", security: .plaintext)
                do {
                    _ = try await edge.unary(Backend.relay, request: [], options: CallOptions(timeout: .seconds(2)))
                    Issue.record("the relay succeeded")
                } catch let e as RPCError {
                    #expect(e.code == .deadlineExceeded)
                }
                #expect(back.seen.withLock { $0.deadlines.isEmpty })
                await edge.shutdown()
            }
            await upstream.shutdown()
        }
    }

    @Test func streamingInterceptorsSeeTheHeadAndTheOutcome() async throws {
        try await withServers([Backend()]) { ports in
            let recorder = OutcomeRecorder()
            let ch = try MeshChannel(target: "127.0.0.1:\(ports[0])", security: .plaintext, interceptors: [recorder])
            var got: [UInt8] = []
            for try await m in ch.streaming(
                Backend.count,
                requests: RPCStream {
                    $0.yield([3])
                    $0.finish()
                }, options: CallOptions())
            {
                got += m
            }
            #expect(got == [0, 1, 2])
            _ = try await ch.unary(Backend.echo, request: [1], options: CallOptions())
            await recorder.outcomes.wait { $0.count >= 2 }
            #expect(Set(recorder.outcomes.withLock { $0 }) == ["Count: ok", "Echo: ok"])
            await ch.shutdown()

            let refusing = try MeshChannel(
                target: "127.0.0.1:\(ports[0])", security: .plaintext, interceptors: [OutcomeRecorder(refuse: true)])
            do {
                for try await _ in refusing.streaming(
                    Backend.count,
                    requests: RPCStream {
                        $0.yield([3])
                        $0.finish()
                    }, options: CallOptions())
                {}
                Issue.record("the refused stream ran")
            } catch let e as RPCError {
                #expect(e.code == .permissionDenied)
            }
            await refusing.shutdown()
        }
    }

    @Test func theBulkheadFailsFastPastItsCap() async throws {
        let back = Backend()
        try await withServers([back]) { ports in
            var mesh = MeshConfiguration()
            mesh.maxConcurrentCalls = 1
            let ch = try MeshChannel(target: "127.0.0.1:\(ports[0])", security: .plaintext, mesh: mesh)
            let slow = Task {
                try await ch.unary(Backend.sleep, request: [], options: CallOptions(timeout: .seconds(10)))
            }
            await back.seen.wait { !$0.deadlines.isEmpty }
            do {
                _ = try await ch.unary(Backend.echo, request: [1], options: CallOptions())
                Issue.record("a call got past the cap")
            } catch let e as RPCError {
                #expect(e.code == .resourceExhausted)
                #expect(e.message.contains("bulkhead"))
            }
            slow.cancel()
            _ = try? await slow.value
            #expect(try await ch.unary(Backend.echo, request: [7], options: CallOptions()) == [7])
            await ch.shutdown()
        }
    }

    @Test func aServerWithoutHealthServiceCountsAsHealthy() async throws {
        try await withServers([Backend()]) { ports in
            let ch = try MeshChannel(target: "127.0.0.1:\(ports[0])", security: .plaintext)
            #expect(try await ch.unary(Backend.echo, request: [9], options: CallOptions()) == [9])
            #expect(ch.endpoints.map(\.healthy) == [true])
            await ch.shutdown()
        }
    }

    @Test func badTargetsAndMissingTLSFilesFailAtStartup() {
        #expect(throws: RPCError.self) { try MeshChannel(target: "no port here:", security: .plaintext) }
        #expect(throws: TLSError.self) {
            try MeshChannel(target: "127.0.0.1:1", security: .mutualTLS(.mesh(directory: "/nonexistent", service: "x")))
        }
    }
}
