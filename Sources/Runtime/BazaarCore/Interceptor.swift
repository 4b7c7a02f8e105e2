/// What an interceptor sees of a call, on either side of the wire.
public struct RPCCallHead: Sendable {
    public var method: MethodDescriptor
    /// Request metadata. A client interceptor may add to it; a server interceptor reads what arrived.
    public var metadata: Metadata
    public var deadline: ContinuousClock.Instant?
    /// The caller's identity on the server side; `nil` on the client side.
    public var peerIdentity: String?
    /// The caller's address (`ip:port`) on the server side; `nil` on the client side.
    public var peerAddress: String?

    public init(
        method: MethodDescriptor, metadata: Metadata, deadline: ContinuousClock.Instant?, peerIdentity: String?,
        peerAddress: String? = nil
    ) {
        self.method = method
        self.metadata = metadata
        self.deadline = deadline
        self.peerIdentity = peerIdentity
        self.peerAddress = peerAddress
    }
}

/// Middleware around a call a client makes: it may change the head (metadata), refuse the call by
/// throwing an ``RPCError``, or observe how `next` ends (status, duration). `next` runs the rest of
/// the chain and then the call itself. (Servers have ``ServerInterceptor``, which sees the call's
/// ``ServerContext``.)
public protocol RPCInterceptor: Sendable {
    func intercept(_ head: RPCCallHead, next: @Sendable (RPCCallHead) async throws -> Void) async throws
}

extension Array where Element == any RPCInterceptor {
    /// Runs `body` inside every interceptor, the first one outermost.
    public func run(_ head: RPCCallHead, _ body: @escaping @Sendable (RPCCallHead) async throws -> Void) async throws {
        if isEmpty { return try await body(head) }
        try await chain(self[...], head, body)
    }
}

private func chain(
    _ rest: ArraySlice<any RPCInterceptor>, _ head: RPCCallHead,
    _ body: @escaping @Sendable (RPCCallHead) async throws -> Void
) async throws {
    guard let first = rest.first else { return try await body(head) }
    let tail = rest.dropFirst()
    try await first.intercept(head) { try await chain(tail, $0, body) }
}

/// Middleware around a call a server serves. It gets the call's ``ServerContext`` (the same value
/// the handler will get) and passes it on, changed or not (an authenticator adds the
/// ``ServerContext/user``), refuses the call by throwing an ``RPCError``, or observes how `next`
/// ends. ``ServerPipeline`` runs the interceptors, the first one outermost.
public protocol ServerInterceptor: Sendable {
    func intercept(_ context: ServerContext, next: @Sendable (ServerContext) async throws -> Void) async throws
}
