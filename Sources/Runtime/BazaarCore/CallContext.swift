import Synchronization

/// Message compression of a call (`grpc-encoding`).
public enum MessageCompression: String, Sendable, Hashable, CaseIterable {
    case identity
    case gzip
}

/// Per-call options of a client call.
public struct CallOptions: Sendable {
    /// How long the call may take; sent as `grpc-timeout`. `nil` uses the method's IDL default.
    public var timeout: Duration?
    /// Request metadata (headers).
    public var metadata: Metadata
    /// Wait for a connection instead of failing fast with `UNAVAILABLE` when none is ready.
    public var waitForReady: Bool
    /// Compression of request messages; responses are compressed as the server chooses.
    public var compression: MessageCompression
    /// Receives the server's initial and trailing metadata, when the caller wants them.
    public var responseMetadata: ResponseMetadata?

    public init(
        timeout: Duration? = nil, metadata: Metadata = Metadata(), waitForReady: Bool = false,
        compression: MessageCompression = .identity, responseMetadata: ResponseMetadata? = nil
    ) {
        self.timeout = timeout
        self.metadata = metadata
        self.waitForReady = waitForReady
        self.compression = compression
        self.responseMetadata = responseMetadata
    }
}

/// The metadata a server sends with its response: initial metadata (headers) and trailing metadata
/// (trailers). A handler fills it through ``ServerContext/response``; a client reads it after the
/// call through ``CallOptions/responseMetadata``.
public final class ResponseMetadata: Sendable {
    private struct State {
        var initial = Metadata()
        var trailing = Metadata()
        var compression = MessageCompression.identity
    }

    private let state = Lock(State())

    public init() {}

    /// Headers: sent before the first response message (a server sets them before it writes).
    public var initial: Metadata {
        get { state.withLock { $0.initial } }
        set { state.withLock { $0.initial = newValue } }
    }

    /// Trailers: sent with the status.
    public var trailing: Metadata {
        get { state.withLock { $0.trailing } }
        set { state.withLock { $0.trailing = newValue } }
    }

    /// Compression of the response messages that follow (server side).
    public var compression: MessageCompression {
        get { state.withLock { $0.compression } }
        set { state.withLock { $0.compression = newValue } }
    }
}

/// What a handler knows about the call it serves.
///
/// A value type whose fields live in one shared, copy-on-write box: the transport passes the
/// context through several layers per call, and each copy costs one retain instead of six.
public struct ServerContext: Sendable {
    private final class Storage: @unchecked Sendable {
        // Mutated only while uniquely referenced (see `unique()`), so sharing it is safe.
        var method: MethodDescriptor
        var metadata: Metadata
        var deadline: ContinuousClock.Instant?
        var peerIdentity: String?
        var peerAddress: String?
        var requestCompressed: Bool
        var observation: AnyObject?
        var user: UserIdentity?
        var callerAddress: String?
        var executor: (any TaskExecutor)?
        let response: ResponseMetadata

        init(
            method: MethodDescriptor, metadata: Metadata, deadline: ContinuousClock.Instant?, peerIdentity: String?,
            peerAddress: String?, requestCompressed: Bool, response: ResponseMetadata
        ) {
            self.method = method
            self.metadata = metadata
            self.deadline = deadline
            self.peerIdentity = peerIdentity
            self.peerAddress = peerAddress
            self.requestCompressed = requestCompressed
            self.response = response
        }

        func copy() -> Storage {
            let s = Storage(
                method: method, metadata: metadata, deadline: deadline, peerIdentity: peerIdentity,
                peerAddress: peerAddress, requestCompressed: requestCompressed, response: response)
            s.observation = observation
            s.user = user
            s.callerAddress = callerAddress
            s.executor = executor
            return s
        }
    }

    private var storage: Storage

    private mutating func unique() {
        if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
    }

    public var method: MethodDescriptor {
        get { storage.method }
        set {
            unique()
            storage.method = newValue
        }
    }
    /// Request metadata.
    public var metadata: Metadata {
        get { storage.metadata }
        set {
            unique()
            storage.metadata = newValue
        }
    }
    /// When the caller stops waiting, if it set a deadline.
    public var deadline: ContinuousClock.Instant? {
        get { storage.deadline }
        set {
            unique()
            storage.deadline = newValue
        }
    }
    /// The caller's mesh identity (`spiffe://<trust-domain>/<service>`) from its certificate.
    public var peerIdentity: String? {
        get { storage.peerIdentity }
        set {
            unique()
            storage.peerIdentity = newValue
        }
    }
    /// The caller's address (`ip:port`), when the call came over the network.
    public var peerAddress: String? {
        get { storage.peerAddress }
        set {
            unique()
            storage.peerAddress = newValue
        }
    }
    /// Whether the (last) request message arrived compressed.
    public var requestCompressed: Bool {
        get { storage.requestCompressed }
        set {
            unique()
            storage.requestCompressed = newValue
        }
    }
    /// What the server's ``ServerCallObserver`` keeps for this call (telemetry's span and timer).
    public var observation: AnyObject? {
        get { storage.observation }
        set {
            unique()
            storage.observation = newValue
        }
    }
    /// The end user the call acts for, once an interceptor authenticated one (BazaarAuth's
    /// `UserAuthenticator`); `nil` for public calls without credentials and for mesh calls.
    public var user: UserIdentity? {
        get { storage.user }
        set {
            unique()
            storage.user = newValue
        }
    }
    /// Where the call comes from, for throttling: the client address the gateway forwarded
    /// (believed only from a trusted forwarder) or `mesh:<the caller's SPIFFE id>`; set with
    /// ``user`` by the authenticating interceptor.
    public var callerAddress: String? {
        get { storage.callerAddress }
        set {
            unique()
            storage.callerAddress = newValue
        }
    }
    /// Where the handler runs (over the network: its connection's event loop). Work the handler
    /// starts that must outlive it (a detached task) should prefer it, so that the work and its
    /// database statements and calls stay on the same thread; `nil` in process.
    public var executor: (any TaskExecutor)? {
        get { storage.executor }
        set {
            unique()
            storage.executor = newValue
        }
    }
    /// Response headers, trailers and compression, which the handler may set.
    public var response: ResponseMetadata { storage.response }

    public init(
        method: MethodDescriptor, metadata: Metadata = Metadata(), deadline: ContinuousClock.Instant? = nil,
        peerIdentity: String? = nil, peerAddress: String? = nil, requestCompressed: Bool = false,
        response: ResponseMetadata = ResponseMetadata()
    ) {
        storage = Storage(
            method: method, metadata: metadata, deadline: deadline, peerIdentity: peerIdentity,
            peerAddress: peerAddress, requestCompressed: requestCompressed, response: response)
    }
}

extension ServerContext {
    /// The call the current task is serving, set by the server around every handler (the same
    /// context the handler gets, as the interceptors left it). Outbound calls made inside a
    /// handler read it to inherit the inbound deadline (and, through task cancellation, its
    /// cancellation) without the handler passing anything along.
    @TaskLocal public static var current: ServerContext?
}

/// Sees every call a server serves, synchronously, as it starts (after authorization, before
/// interceptors and the handler) and as it ends (with the status sent, or CANCELLED when the client
/// went away). It costs far less than an interceptor, which adds async frames to every call, so
/// it is what telemetry uses. What `callStarted` returns rides in ``ServerContext/observation``
/// and comes back to `callEnded`. Calls refused before they start (unknown method, authorization)
/// are not seen.
public protocol ServerCallObserver: Sendable {
    func callStarted(_ context: ServerContext) -> AnyObject?
    func callEnded(_ observation: AnyObject?, status: RPCError)
}

/// Sees every call a client makes, synchronously, as it starts and ends: the client-side twin of
/// ``ServerCallObserver``, for telemetry. `callStarted` may add request metadata (trace context);
/// what it returns comes back to `callEnded` with the final status (after all retries).
public protocol ClientCallObserver: Sendable {
    func callStarted(_ head: inout RPCCallHead) -> AnyObject?
    /// An attempt of the call goes out on a connection whose I/O runs on the thread with this
    /// kernel id (telemetry records it, so that a trace shows a call leaving its caller's thread).
    func callRouted(_ observation: AnyObject?, connectionThread: Int32)
    func callEnded(_ observation: AnyObject?, status: RPCError)
}

extension ClientCallObserver {
    public func callRouted(_ observation: AnyObject?, connectionThread: Int32) {}
}

/// Sees each operation a process performs on a dependency that is not an RPC (a database
/// statement, a cache command), synchronously, as it starts and ends: telemetry makes them client
/// spans under the call being served. `name` is short and of low cardinality (`SELECT`);
/// `statement` is parameterised text, never values.
public protocol OperationObserver: Sendable {
    /// `connectionThread` is the kernel id of the thread the connection's I/O runs on.
    func operationStarted(_ name: String, statement: String?, connectionThread: Int32) -> AnyObject?
    func operationEnded(_ observation: AnyObject?, error: (any Error)?)
}

/// A service that wants to know when its server starts a graceful shutdown, before any connection
/// is told to go away (the health service turns NOT_SERVING here).
public protocol ServerDrainObserver: Sendable {
    func serverWillDrain()
}

/// Where a handler (or a streaming client) writes outgoing messages.
public struct RPCWriter<Message: Sendable>: Sendable {
    private let sink: @Sendable (Message) async throws -> Void

    public init(_ sink: @escaping @Sendable (Message) async throws -> Void) { self.sink = sink }

    public func write(_ message: Message) async throws { try await sink(message) }
}
