/// Per-call options of a client call.
public struct CallOptions: Sendable {
    /// How long the call may take; sent as `grpc-timeout`. `nil` uses the method's IDL default.
    public var timeout: Duration?
    /// Request metadata (headers).
    public var metadata: Metadata

    public init(timeout: Duration? = nil, metadata: Metadata = Metadata()) {
        self.timeout = timeout
        self.metadata = metadata
    }
}

/// What a handler knows about the call it serves.
public struct ServerContext: Sendable {
    public var method: MethodDescriptor
    /// Request metadata.
    public var metadata: Metadata
    /// When the caller stops waiting, if it set a deadline.
    public var deadline: ContinuousClock.Instant?
    /// The caller's mesh identity (`spiffe://<trust-domain>/<service>`) from its certificate.
    public var peerIdentity: String?

    public init(method: MethodDescriptor, metadata: Metadata = Metadata(), deadline: ContinuousClock.Instant? = nil,
                peerIdentity: String? = nil)
    {
        self.method = method
        self.metadata = metadata
        self.deadline = deadline
        self.peerIdentity = peerIdentity
    }
}

/// Where a handler (or a streaming client) writes outgoing messages.
public struct RPCWriter<Message: Sendable>: Sendable {
    private let sink: @Sendable (Message) async throws -> Void

    public init(_ sink: @escaping @Sendable (Message) async throws -> Void) { self.sink = sink }

    public func write(_ message: Message) async throws { try await sink(message) }
}
