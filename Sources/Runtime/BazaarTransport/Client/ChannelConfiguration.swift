import BazaarCore

/// A `host:port` a channel connects to.
public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port` or `[v6]:port`.
    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (1...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        self.init(host: host, port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// gRPC's connection backoff (`doc/connection-backoff.md`), with its documented defaults.
public struct ConnectionBackoff: Sendable {
    public var initial: Duration = .seconds(1)
    public var multiplier: Double = 1.6
    public var jitter: Double = 0.2
    public var maximum: Duration = .seconds(120)
    /// The least time a connection attempt is given before it counts as failed.
    public var minimumConnectTimeout: Duration = .seconds(20)

    public init() {}

    /// The wait before attempt `n` (0-based; attempt 0 waits nothing), jittered.
    public func delay(attempt n: Int) -> Duration {
        guard n > 0 else { return .zero }
        var d = Double(initial.components.seconds) + Double(initial.components.attoseconds) / 1e18
        let cap = Double(maximum.components.seconds) + Double(maximum.components.attoseconds) / 1e18
        for _ in 1..<n { d = min(d * multiplier, cap) }
        d *= Double.random(in: (1 - jitter)...(1 + jitter))
        return .nanoseconds(Int64(d * 1e9))
    }
}

/// The protocol a channel's calls speak.
public enum RPCProtocol: String, Sendable {
    /// gRPC: HTTP/2 trailers carry the status.
    case grpc
    /// Connect (connectrpc.com) with binary protobuf: unary calls are plain HTTP requests and
    /// answers, streams end with a message instead of trailers, so calls pass proxies and load
    /// balancers that drop or do not forward HTTP trailers. The server must speak it (Bazaar's
    /// servers and edge do).
    case connect
}

/// Everything a channel needs to reach its servers.
public struct ChannelConfiguration: Sendable {
    public var endpoints: [Endpoint]
    public var security: TransportSecurity
    public var http2 = HTTP2Settings()
    public var keepalive = KeepaliveConfiguration()
    /// Largest response message accepted; over it the call fails with `RESOURCE_EXHAUSTED`.
    public var maxReceiveMessageSize = 4 << 20
    public var backoff = ConnectionBackoff()
    /// Sent as `:authority`; by default the endpoint's `host:port`.
    public var authority: String?
    public var userAgent = "bazaar-swift/0.1"
    /// What the calls speak; gRPC unless the servers are reached through something that only
    /// passes plain HTTP.
    public var rpcProtocol = RPCProtocol.grpc
    /// How often the TLS files are checked for changes (certificate rotation); `nil` never.
    /// New connections use the new material; existing ones are kept.
    public var tlsReloadInterval: Duration? = .seconds(10)

    public init(endpoints: [Endpoint], security: TransportSecurity) {
        self.endpoints = endpoints
        self.security = security
    }
}
