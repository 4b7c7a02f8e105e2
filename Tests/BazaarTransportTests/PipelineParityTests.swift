import BazaarCore
import BazaarWire
import Synchronization
import Testing

@testable import BazaarTransport

/// The same server pipeline behind both transports: each case runs over HTTP/2 (a loopback
/// server) and in process, and the caller must see the same status and message, and the handler
/// and the observer the same context.
@Suite(.serialized) struct PipelineParityTests {
    /// What a case needs from the server side.
    final class Parity: RPCService, Sendable {
        static let open = MethodDescriptor(
            service: "test.Parity", method: "Open", kind: .unary, inputType: "x", outputType: "x",
            options: MethodOptions(auth: AuthRequirement(level: .public)))
        static let internalOnly = MethodDescriptor(
            service: "test.Parity", method: "InternalOnly", kind: .unary, inputType: "x", outputType: "x",
            options: MethodOptions(auth: AuthRequirement(level: .internal, callers: ["orders"])))
        static let hang = MethodDescriptor(
            service: "test.Parity", method: "Hang", kind: .unary, inputType: "x", outputType: "x",
            options: MethodOptions(auth: AuthRequirement(level: .public)))
        static let fail = MethodDescriptor(
            service: "test.Parity", method: "Fail", kind: .unary, inputType: "x", outputType: "x",
            options: MethodOptions(auth: AuthRequirement(level: .public)))
        static let serviceDescriptor = ServiceDescriptor(
            name: "test.Parity", methods: [open, internalOnly, hang, fail],
            file: ProtoFile(path: "parity.proto", dependencies: [], bytes: { [] }))

        /// What each handler saw of its context: the user an interceptor put there, the tag.
        let seen = Lock<[String]>([])

        struct Plain: Error, CustomStringConvertible {
            var description: String { "the handler's own error" }
        }

        var handlers: [RPCHandler] {
            [
                RPCHandler(
                    method: Self.open,
                    body: .unary { [self] request, context in
                        // The handler's context and the task-local one are the same call.
                        let same = ServerContext.current?.user == context.user
                        seen.withLock {
                            $0.append("\(context.user?.subject ?? "-") \(context.metadata["x-tag"] ?? "-") \(same)")
                        }
                        return request
                    }),
                RPCHandler(method: Self.internalOnly, body: .unary { request, _ in request }),
                RPCHandler(
                    method: Self.hang,
                    body: .unary { _, _ in
                        // Until the deadline cancels it.
                        try await untilCancelled()
                        return []
                    }),
                RPCHandler(
                    method: Self.fail,
                    body: .unary { request, _ in
                        if request == [1] {
                            throw RPCError(.notFound, "no such thing", metadata: Metadata([("k", "v")]))
                        }
                        throw Plain()
                    }),
            ]
        }
    }

    /// Refuses calls tagged `x-refuse`, and puts a user in the context of the others.
    struct Gate: ServerInterceptor {
        func intercept(_ context: ServerContext, next: @Sendable (ServerContext) async throws -> Void) async throws {
            if context.metadata["x-refuse"] != nil { throw RPCError(.failedPrecondition, "refused by the gate") }
            var c = context
            c.user = UserIdentity(subject: "u-\(context.method.method)")
            c.metadata.add("x-tag", "gated")
            try await next(c)
        }
    }

    /// Records what the observer sees: the method at the start, the status at the end.
    final class Observer: ServerCallObserver {
        let events = Lock<[String]>([])
        final class Note {
            let method: String
            init(_ method: String) { self.method = method }
        }
        func callStarted(_ context: ServerContext) -> AnyObject? {
            events.withLock { $0.append("start \(context.method.method)") }
            return Note(context.method.method)
        }
        func callEnded(_ observation: AnyObject?, status: RPCError) {
            let method = (observation as? Note)?.method ?? "?"
            events.withLock { $0.append("end \(method) \(status.code)") }
        }
    }

    struct Outcome: Equatable, CustomStringConvertible {
        var code: StatusCode
        var message: String
        var trailer: String?
        var description: String { "\(code) '\(message)' \(trailer ?? "")" }
    }

    static let cases: [(String, MethodDescriptor, [UInt8], Metadata, Duration?)] = [
        ("answered", Parity.open, [7], Metadata(), nil),
        ("identity refused", Parity.internalOnly, [7], Metadata(), nil),
        ("interceptor refusal", Parity.open, [7], Metadata([("x-refuse", "1")]), nil),
        ("deadline", Parity.hang, [7], Metadata(), .milliseconds(200)),
        ("status from the handler", Parity.fail, [1], Metadata(), nil),
        ("other error from the handler", Parity.fail, [2], Metadata(), nil),
    ]

    /// Runs every case through `transport`; returns each outcome.
    func outcomes(_ transport: any ClientTransport) async -> [Outcome] {
        var out: [Outcome] = []
        for (_, method, request, metadata, timeout) in Self.cases {
            do {
                let response = try await transport.unary(
                    method, request: request, options: CallOptions(timeout: timeout, metadata: metadata))
                out.append(Outcome(code: .ok, message: "\(response)"))
            } catch let e as RPCError {
                out.append(Outcome(code: e.code, message: e.message, trailer: e.metadata["k"]))
            } catch {
                out.append(Outcome(code: .unknown, message: "not an RPCError: \(error)"))
            }
        }
        return out
    }

    @Test func bothTransportsGiveTheSameResults() async throws {
        let policy = IdentityPolicy(trustDomain: "bazaar.local")

        let remote = Parity()
        let remoteObserver = Observer()
        var overHTTP2: [Outcome] = []
        var config = ServerConfiguration(host: "127.0.0.1", port: 0, security: .plaintext)
        config.authorization = policy
        config.callObserver = remoteObserver
        config.loopCount = 1
        let server = try RPCServer(configuration: config, services: [remote], interceptors: [Gate()])
        let (ports, portsContinuation) = AsyncStream<Int>.makeStream()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run { portsContinuation.yield($0) } }
            var it = ports.makeAsyncIterator()
            let port = await it.next()!
            defer { group.cancelAll() }
            let c = try channel(port)
            overHTTP2 = await outcomes(c)
            await c.shutdown()
        }

        let local = Parity()
        let localObserver = Observer()
        let inProcess = InProcessTransport(
            services: [local], interceptors: [Gate()], authorization: policy, observer: localObserver)
        let inProcessOutcomes = await outcomes(inProcess)

        for (i, c) in Self.cases.enumerated() {
            #expect(
                overHTTP2[i] == inProcessOutcomes[i],
                "\(c.0): HTTP/2 \(overHTTP2[i]), in process \(inProcessOutcomes[i])")
        }
        // Spot checks that the cases test what they say.
        #expect(
            overHTTP2.map(\.code) == [
                StatusCode.ok, .permissionDenied, .failedPrecondition, .deadlineExceeded, .notFound, .unknown,
            ])
        #expect(overHTTP2[4].trailer == "v")
        #expect(remote.seen.withLock { $0 } == ["u-Open gated true"])
        #expect(local.seen.withLock { $0 } == remote.seen.withLock { $0 })
        // Calls refused before they start (identity) are not observed; the others start and end.
        let expected = [
            "start Open", "end Open OK", "start Open", "end Open FAILED_PRECONDITION", "start Hang",
            "end Hang DEADLINE_EXCEEDED", "start Fail", "end Fail NOT_FOUND", "start Fail", "end Fail UNKNOWN",
        ]
        #expect(localObserver.events.withLock { $0 } == expected)
        // Over the network the client's own deadline timer fires at the same moment as the
        // server's, and its reset may arrive first: the server then records the call CANCELLED.
        let remoteEvents = remoteObserver.events.withLock { $0 }.map {
            $0 == "end Hang CANCELLED" ? "end Hang DEADLINE_EXCEEDED" : $0
        }
        #expect(remoteEvents == expected)
    }
}
