import BazaarCore
import Synchronization

/// An HTTP request as the front door hands it over: HTTP/1.1 or HTTP/2, the body read in full
/// (up to ``HTTPServerConfiguration/maxBodySize``).
public struct HTTPRequest: Sendable {
    public var method: String
    /// The request target: path and query (`/v1/products?category=books`).
    public let target: String
    /// The path part of the target.
    public let path: String
    /// The query string (without `?`), empty when there is none.
    public let query: String
    /// Header names lowercased, in arrival order; HTTP/2 pseudo-headers are not among them.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// `HTTP/1.1`, `HTTP/1.0` or `HTTP/2`.
    public var version: String
    public var remoteAddress: String
    /// Whether the connection is TLS.
    public var isSecure: Bool

    public init(
        method: String, target: String, headers: [(name: String, value: String)] = [], body: [UInt8] = [],
        version: String = "HTTP/1.1", remoteAddress: String = "", isSecure: Bool = false
    ) {
        self.method = method
        self.target = target
        if let q = target.utf8.firstIndex(of: UInt8(ascii: "?")) {
            path = String(target[..<q])
            query = String(target[target.index(after: q)...])
        } else {
            path = target
            query = ""
        }
        self.headers = headers
        self.body = body
        self.version = version
        self.remoteAddress = remoteAddress
        self.isSecure = isSecure
    }

    /// The first value of a header (name in any case); HTTP/2 `:authority` is also `host`.
    public func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.first { $0.name == n }?.value
    }
}

/// Where a responder writes its answer: status and headers once, then body bytes (sent as they
/// come: chunked on HTTP/1.1 when no `content-length` was given), then the end, with trailers
/// on HTTP/2. Calls may come from any task; they are carried to the connection's loop.
public final class HTTPResponseWriter: Sendable {
    let sink: any HTTPResponseSink
    let loop: EventLoop
    private let sentStatus = Atomic<Int>(0)

    /// The status the responder answered with (0 before it did), for access logs and metrics.
    public var status: Int { sentStatus.load(ordering: .relaxed) }

    init(sink: any HTTPResponseSink, loop: EventLoop) {
        self.sink = sink
        self.loop = loop
    }

    public func writeHead(status: Int, headers: [(String, String)]) {
        sentStatus.store(status, ordering: .relaxed)
        let sink = self.sink
        loop.execute { sink.head(status: status, headers: headers) }
    }

    public func writeBody(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        let sink = self.sink
        loop.execute { sink.body(bytes) }
    }

    /// Ends the response; HTTP/1.1 ignores `trailers`.
    public func end(trailers: [(String, String)] = []) {
        let sink = self.sink
        loop.execute { sink.end(trailers: trailers) }
    }

    /// A whole response at once.
    public func respond(status: Int, headers: [(String, String)], body: [UInt8]) {
        sentStatus.store(status, ordering: .relaxed)
        var withLength = headers
        if !withLength.contains(where: { $0.0.utf8.count == 14 && $0.0.lowercased() == "content-length" }) {
            withLength.append(("content-length", String(body.count)))
        }
        let h = withLength
        let sink = self.sink
        loop.run {
            sink.head(status: status, headers: h)
            if !body.isEmpty { sink.body(body) }
            sink.end(trailers: [])
        }
    }

    /// Whether the client went away (the connection closed or the stream was reset).
    public var isClosed: Bool { sink.isGone }
}

/// One protocol's way to send a response; called on the connection's loop.
protocol HTTPResponseSink: Sendable {
    func head(status: Int, headers: [(String, String)])
    func body(_ bytes: [UInt8])
    func end(trailers: [(String, String)])
    var isGone: Bool { get }
    var headSent: Bool { get }
    var ended: Bool { get }
}

/// What answers requests. It runs as a task on the connection's loop; when the client goes
/// away the task is cancelled.
public protocol HTTPResponder: Sendable {
    func respond(to request: HTTPRequest, writer: HTTPResponseWriter) async
}

/// The front door's settings.
public struct HTTPServerConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// A server certificate (``TLSConfiguration/edge(certificateChainFile:privateKeyFile:)``):
    /// HTTPS with `h2` or `http/1.1` by ALPN. `nil`: plaintext HTTP/1.1, and h2c with prior knowledge.
    public var tls: TLSConfiguration?
    /// Larger request bodies are answered 413 without reading them.
    public var maxBodySize = 1 << 20
    /// HTTP/2 limits. The front door keeps at most ``maxBodySize`` (plus one frame) of request
    /// body per stream and one connection window per connection: credit goes back only as bodies
    /// are handed to the responder.
    public var http2 = HTTP2Settings.edge
    /// One timeout per phase of a connection and its requests.
    public var timeouts = HTTPTimeouts()
    /// Connections per process and per client address.
    public var connections = ConnectionLimits()
    /// HTTP/1.1: bytes of pipelined requests read ahead while one is handled; beyond, the
    /// connection stops reading until the handled request is answered.
    public var maxPipelinedBytes = 64 << 10
    /// HTTP/1.1: answer bytes waiting for a slow reader; beyond, no further pipelined request is
    /// started until the client has taken them.
    public var maxPendingOutput = 256 << 10
    /// HTTP/1.1: requests on one connection; the last one is answered with `connection: close`.
    public var maxRequestsPerConnection = 1000
    public var loopCount: Int?
    /// SIGTERM and SIGINT start a graceful shutdown.
    public var handleSignals = false
    /// How long requests in flight get at shutdown.
    public var drainTimeout: Duration = .seconds(30)

    public init(host: String = "0.0.0.0", port: Int, tls: TLSConfiguration? = nil) {
        self.host = host
        self.port = port
        self.tls = tls
    }
}

/// The front door's timeouts, one per phase (each closes the connection, or resets the HTTP/2
/// stream, that overstays it; ``ConnectionShed`` counts them).
public struct HTTPTimeouts: Sendable {
    /// TLS handshake, from the accepted connection.
    public var handshake: Duration = .seconds(10)
    /// A request's headers, from its first byte (the first request: from the handshake).
    public var header: Duration = .seconds(10)
    /// A request's body, from the end of its headers.
    public var body: Duration = .seconds(30)
    /// A keep-alive connection with no request in flight.
    public var idle: Duration = .seconds(60)
    /// Pending output the peer takes nothing of.
    public var write: Duration = .seconds(30)
    /// A whole request, from its first byte to the end of its answer (streamed answers included).
    public var request: Duration = .seconds(120)

    public init() {}
}

extension HTTP2Settings {
    /// The front door's HTTP/2 limits: what one internet client may hold (100 streams, 4 MiB of
    /// connection window, 16 KiB of headers per stream), not the mesh's LAN-sized windows. A
    /// stream's window is not set here: the front door makes it one request body and a frame.
    public static var edge: HTTP2Settings {
        var s = HTTP2Settings()
        s.maxConcurrentStreams = 100
        s.connectionWindowSize = 4 << 20
        s.maxHeaderListSize = 16 << 10
        return s
    }
}

/// The reason phrase of a status code, for HTTP/1.1 status lines.
func reasonPhrase(_ status: Int) -> String {
    switch status {
    case 200: "OK"
    case 201: "Created"
    case 202: "Accepted"
    case 204: "No Content"
    case 301: "Moved Permanently"
    case 304: "Not Modified"
    case 400: "Bad Request"
    case 401: "Unauthorized"
    case 403: "Forbidden"
    case 404: "Not Found"
    case 405: "Method Not Allowed"
    case 406: "Not Acceptable"
    case 408: "Request Timeout"
    case 409: "Conflict"
    case 411: "Length Required"
    case 412: "Precondition Failed"
    case 413: "Content Too Large"
    case 415: "Unsupported Media Type"
    case 429: "Too Many Requests"
    case 431: "Request Header Fields Too Large"
    case 499: "Client Closed Request"
    case 500: "Internal Server Error"
    case 501: "Not Implemented"
    case 502: "Bad Gateway"
    case 503: "Service Unavailable"
    case 504: "Gateway Timeout"
    default: "Status \(status)"
    }
}
