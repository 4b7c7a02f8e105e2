/// Connects generated clients straight to service implementations in the same process, with no
/// network: for tests of services and of generated code. Calls go through the same
/// ``ServerPipeline`` as over HTTP/2 (identity check, interceptors, observer, deadline, error
/// mapping), so what a test sees here is what a remote caller sees.
public struct InProcessTransport: ClientTransport {
    public let pipeline: ServerPipeline
    /// The mesh identity calls arrive with (`spiffe://<trust domain>/<service>`), as a client
    /// certificate would present it; `nil` for none.
    public var peerIdentity: String?

    /// Handlers registered twice keep the last registration (use ``init(pipeline:peerIdentity:)``
    /// to have that refused).
    public init(
        services: [any RPCService], interceptors: [any ServerInterceptor] = [],
        authorization: IdentityPolicy = IdentityPolicy(), observer: (any ServerCallObserver)? = nil,
        peerIdentity: String? = nil
    ) {
        var unique: [String: any RPCService] = [:]
        var order: [String] = []
        for s in services {
            let name = type(of: s).serviceDescriptor.name
            if unique[name] == nil { order.append(name) }
            unique[name] = s
        }
        // Cannot fail: every service appears once.
        pipeline = try! ServerPipeline(
            services: order.map { unique[$0]! }, interceptors: interceptors, authorization: authorization,
            observer: observer)
        self.peerIdentity = peerIdentity
    }

    public init(pipeline: ServerPipeline, peerIdentity: String? = nil) {
        self.pipeline = pipeline
        self.peerIdentity = peerIdentity
    }

    private func admit(_ method: MethodDescriptor, _ options: CallOptions) throws(RPCError) -> (
        RPCHandler, ServerContext
    ) {
        let handler = try pipeline.route(method.path, peerIdentity: peerIdentity).get()
        let timeout = options.timeout ?? method.options.defaultDeadline
        var context = ServerContext(
            method: handler.method, metadata: options.metadata,
            deadline: timeout.map { ContinuousClock.now.advanced(by: $0) }, peerIdentity: peerIdentity)
        pipeline.start(&context)
        return (handler, context)
    }

    /// Runs `body` until it finishes or the call's deadline passes (then it is cancelled and the
    /// call fails with `DEADLINE_EXCEEDED`, as the HTTP/2 transport's deadline timer does).
    private static func withDeadline<T: Sendable>(
        _ deadline: ContinuousClock.Instant?, _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        guard let deadline else { return try await body() }
        return try await withThrowingTaskGroup(of: T.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(until: deadline, clock: .continuous)
                throw RPCError(.deadlineExceeded, "deadline exceeded")
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }

    public func unary(_ method: MethodDescriptor, request: [UInt8], options: CallOptions) async throws -> [UInt8] {
        let (handler, context) = try admit(method, options)
        let pipeline = self.pipeline
        do {
            let response: [UInt8]
            switch handler.body {
            case .unary:
                response = try await Self.withDeadline(context.deadline) {
                    try await pipeline.invoke(handler.body, context, request: request, requests: nil, responses: nil)
                        ?? []
                }
            case .streaming:
                let (out, continuation) = RPCStream<[UInt8]>.makeStream()
                try await Self.withDeadline(context.deadline) {
                    _ = try await pipeline.invoke(
                        handler.body, context, request: nil,
                        requests: RPCStream {
                            $0.yield(request)
                            $0.finish()
                        }, responses: RPCWriter { continuation.yield($0) })
                }
                continuation.finish()
                var it = out.makeAsyncIterator()
                guard let first = try await it.next() else { throw RPCError(.internal, "no response message") }
                response = first
            }
            pipeline.end(context, status: RPCError(.ok))
            return response
        } catch {
            let status = RPCError(error)
            pipeline.end(context, status: status)
            throw status
        }
    }

    public func streaming(_ method: MethodDescriptor, requests: RPCStream<[UInt8]>, options: CallOptions) -> RPCStream<
        [UInt8]
    > {
        let (out, continuation) = RPCStream<[UInt8]>.makeStream()
        let handler: RPCHandler
        let context: ServerContext
        do { (handler, context) = try admit(method, options) } catch {
            continuation.finish(throwing: error)
            return out
        }
        let pipeline = self.pipeline
        let task = Task {
            do {
                try await Self.withDeadline(context.deadline) {
                    switch handler.body {
                    case .unary:
                        var it = requests.makeAsyncIterator()
                        guard let first = try await it.next() else {
                            throw RPCError(.invalidArgument, "missing request message")
                        }
                        let response = try await pipeline.invoke(
                            handler.body, context, request: first, requests: nil, responses: nil)
                        continuation.yield(response ?? [])
                    case .streaming:
                        _ = try await pipeline.invoke(
                            handler.body, context, request: nil, requests: requests,
                            responses: RPCWriter { continuation.yield($0) })
                    }
                }
                pipeline.end(context, status: RPCError(.ok))
                continuation.finish()
            } catch {
                let status = RPCError(error)
                pipeline.end(context, status: status)
                continuation.finish(throwing: status)
            }
        }
        continuation.onTermination = { _ in task.cancel() }
        return out
    }
}
