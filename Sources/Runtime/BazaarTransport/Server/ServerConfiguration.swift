import BazaarCore

/// How connections are secured. Mesh servers use mutual TLS; plaintext h2c must be asked for.
public enum TransportSecurity: Sendable {
    case mutualTLS(TLSConfiguration)
    /// h2c with prior knowledge, for local benchmarks and tests only.
    case plaintext
}

/// Keepalive and connection lifetime (gRFCs A8 and A9).
public struct KeepaliveConfiguration: Sendable {
    /// Send a PING after this long without reads; `nil` disables keepalive pings.
    public var interval: Duration? = .seconds(7200)
    /// Close the connection when a PING is not acknowledged within this time.
    public var timeout: Duration = .seconds(20)
    /// Server: the shortest PING interval a client may use; faster pings earn strikes.
    public var minimumClientPingInterval: Duration = .seconds(300)
    /// Server: PINGs allowed while no call is active.
    public var permitWithoutCalls = false
    /// Server: strikes before GOAWAY `ENHANCE_YOUR_CALM` ("too_many_pings").
    public var maxPingStrikes = 2
    /// Server: close connections idle (no active call) for this long, with GOAWAY.
    public var maxConnectionIdle: Duration? = nil
    /// Server: close connections older than this, gracefully, so clients rebalance.
    public var maxConnectionAge: Duration? = nil
    /// Server: after max age, how long in-flight calls may take before the connection is closed.
    public var maxConnectionAgeGrace: Duration = .seconds(30)

    public init() {}
}

/// Everything a server needs to listen and serve.
public struct ServerConfiguration: Sendable {
    public var host: String
    /// 0 picks a free port (see ``RPCServer/run(onListening:)``).
    public var port: Int
    public var security: TransportSecurity
    public var http2 = HTTP2Settings()
    public var keepalive = KeepaliveConfiguration()
    /// Largest request message accepted; over it the call fails with `RESOURCE_EXHAUSTED`.
    public var maxReceiveMessageSize = 4 << 20
    /// Event loops (threads); by default one per core.
    public var loopCount: Int? = nil
    /// How long a graceful shutdown waits for in-flight calls before closing connections.
    public var drainTimeout: Duration = .seconds(30)
    /// Which mesh identities may call which methods.
    public var authorization = IdentityPolicy()
    /// Whether SIGTERM and SIGINT start a graceful shutdown, and SIGHUP reloads the TLS files.
    public var handleSignals = false
    /// At the start of a graceful shutdown, how long the server keeps accepting and serving as
    /// before, with its health status already NOT_SERVING, so that probes and health-checking
    /// clients move traffic away before any connection is told to go away.
    public var drainDelay: Duration = .zero
    /// How often the TLS files are checked for changes (certificate rotation); `nil` never.
    public var tlsReloadInterval: Duration? = .seconds(10)
    /// Sees every call start and end (telemetry); see ``ServerCallObserver``.
    public var callObserver: (any ServerCallObserver)?

    public init(host: String = "0.0.0.0", port: Int, security: TransportSecurity) {
        self.host = host
        self.port = port
        self.security = security
    }
}
