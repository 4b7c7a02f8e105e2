/// What a server does with a call, whatever carries it: the method table, the identity check, the
/// call observer, the interceptors, the task-local context and the mapping of errors to statuses.
/// The HTTP/2 transport and ``InProcessTransport`` both run their calls through one, so a call
/// behaves the same over either; each transport adds only what is its own (framing, flow control,
/// and how it enforces the deadline the context carries).
///
/// A call goes through four steps:
/// 1. ``route(_:peerIdentity:)``: the handler, or `UNIMPLEMENTED` / `PERMISSION_DENIED`;
/// 2. ``start(_:)``: the observer sees the call (telemetry's span and timer);
/// 3. ``invoke(_:_:request:requests:responses:)``: interceptors, then the handler, with the context
///    current (``ServerContext/current``); errors come out as ``RPCError``s;
/// 4. ``end(_:status:)``: the observer sees how it ended.
public struct ServerPipeline: Sendable {
    /// Handlers by method path (`/pkg.Service/Method`).
    public let handlers: [String: RPCHandler]
    public let authorization: IdentityPolicy
    public let interceptors: [any ServerInterceptor]
    public let observer: (any ServerCallObserver)?

    /// Fails with `ALREADY_EXISTS` when two services register the same method.
    public init(
        services: [any RPCService], interceptors: [any ServerInterceptor] = [],
        authorization: IdentityPolicy = IdentityPolicy(), observer: (any ServerCallObserver)? = nil
    ) throws(RPCError) {
        var table: [String: RPCHandler] = [:]
        for service in services {
            for h in service.handlers {
                if table[h.method.path] != nil {
                    throw RPCError(.alreadyExists, "method \(h.method.path) is registered twice")
                }
                table[h.method.path] = h
            }
        }
        handlers = table
        self.authorization = authorization
        self.interceptors = interceptors
        self.observer = observer
    }

    /// The handler for `path`, if the caller (`peerIdentity`, its mesh identity) may call it.
    public func route(_ path: String, peerIdentity: String?) -> Result<RPCHandler, RPCError> {
        guard let handler = handlers[path] else {
            let service = Self.servicePrefix(path)
            let known = handlers.keys.contains { $0.hasPrefix(service) }
            return .failure(
                RPCError(.unimplemented, known ? "Method not found: \(path)" : "Service not found: \(path)"))
        }
        if let denial = authorization.check(handler.method, identity: peerIdentity) { return .failure(denial) }
        return .success(handler)
    }

    private static func servicePrefix(_ path: String) -> String {
        guard let slash = path.dropFirst().firstIndex(of: "/") else { return path + "/" }
        return String(path[...slash])
    }

    /// The call starts: the observer's note rides in the context.
    public func start(_ context: inout ServerContext) {
        if let observer { context.observation = observer.callStarted(context) }
    }

    /// Runs the interceptors and then the handler. A unary handler's response is returned; a
    /// streaming handler writes to `responses` and `nil` is returned. Whatever is thrown comes
    /// out as an ``RPCError`` (a non-RPC error is `UNKNOWN`, a cancellation `CANCELLED`).
    public func invoke(
        _ body: RPCHandler.Body, _ context: ServerContext, request: [UInt8]?, requests: RPCStream<[UInt8]>?,
        responses: RPCWriter<[UInt8]>?
    ) async throws(RPCError) -> [UInt8]? {
        do {
            if interceptors.isEmpty {
                return try await Self.call(body, context, request, requests, responses)
            }
            let result = Lock<[UInt8]?>(nil)
            try await chain(interceptors[...], context) { context in
                let r = try await Self.call(body, context, request, requests, responses)
                result.withLock { $0 = r }
            }
            return result.withLock { $0 }
        } catch {
            throw RPCError(error)
        }
    }

    /// The handler itself, with the context (as the interceptors left it) current: outbound calls
    /// it makes inherit its deadline, and ``UserIdentity/current`` is its user.
    private static func call(
        _ body: RPCHandler.Body, _ context: ServerContext, _ request: [UInt8]?, _ requests: RPCStream<[UInt8]>?,
        _ responses: RPCWriter<[UInt8]>?
    ) async throws -> [UInt8]? {
        try await ServerContext.$current.withValue(context) {
            switch body {
            case .unary(let fn):
                return try await fn(request ?? [], context)
            case .streaming(let fn):
                guard let requests, let responses else {
                    throw RPCError(.internal, "a streaming handler needs request and response streams")
                }
                try await fn(requests, responses, context)
                return nil
            }
        }
    }

    /// The call ended with `status` (or was cancelled by its client): the observer sees it.
    public func end(_ context: ServerContext, status: RPCError) {
        observer?.callEnded(context.observation, status: status)
    }
}

private func chain(
    _ rest: ArraySlice<any ServerInterceptor>, _ context: ServerContext,
    _ body: @escaping @Sendable (ServerContext) async throws -> Void
) async throws {
    guard let first = rest.first else { return try await body(context) }
    let tail = rest.dropFirst()
    try await first.intercept(context) { try await chain(tail, $0, body) }
}
