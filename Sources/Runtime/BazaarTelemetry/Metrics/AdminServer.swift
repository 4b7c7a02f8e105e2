import BazaarCore
import BazaarTransport
import CBazaarEvent
import Glibc

/// The admin HTTP endpoint: `GET /metrics` (Prometheus text format) and `GET /healthz`, over
/// HTTP/1.1 parsed by libevent's evhttp, on one loop of the process's group (a scrape is one
/// short write of text; evhttp never blocks the loop). Bind it to the pod network for
/// Prometheus, not to the internet.
public final class AdminServer: @unchecked Sendable {
    private let group: EventLoopGroup
    private let ownsGroup: Bool
    private let loop: EventLoop
    private var http: OpaquePointer?
    private let registry: MetricsRegistry
    /// The bound port (useful with port 0).
    public private(set) var port = 0

    /// - Parameter group: the process's loops; without one the endpoint runs a loop of its own.
    public init(registry: MetricsRegistry, host: String = "0.0.0.0", port: Int, group: EventLoopGroup? = nil)
        async throws
    {
        self.registry = registry
        ownsGroup = group == nil
        self.group = group ?? EventLoopGroup(count: 1)
        let loop = self.group.loops[0]
        self.loop = loop
        let bound: Result<Int, RPCError> = await withCheckedContinuation { c in
            loop.execute { [self] in c.resume(returning: self.bind(loop: loop, host: host, port: port)) }
        }
        self.port = try bound.get()
    }

    deinit { shutdown() }

    private func bind(loop: EventLoop, host: String, port: Int) -> Result<Int, RPCError> {
        guard let http = evhttp_new(loop.eventBase) else { return .failure(RPCError(.internal, "evhttp_new failed")) }
        self.http = http
        evhttp_set_timeout(http, 10)
        evhttp_set_max_headers_size(http, 16 << 10)
        evhttp_set_max_body_size(http, 4 << 10)
        evhttp_set_gencb(
            http,
            { req, arg in
                guard let req, let arg else { return }
                Unmanaged<AdminServer>.fromOpaque(arg).takeUnretainedValue().handle(req)
            }, Unmanaged.passUnretained(self).toOpaque())
        guard let handle = evhttp_bind_socket_with_handle(http, host, UInt16(port)) else {
            return .failure(
                RPCError(
                    .unavailable,
                    "admin endpoint: cannot listen on \(host):\(port): \(String(cString: strerror(errno)))"))
        }
        var addr = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let fd = evhttp_bound_socket_get_fd(handle)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        let bound = withUnsafePointer(to: &addr) { p -> Int in
            p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
        return .success(bound)
    }

    private func handle(_ req: OpaquePointer) {
        let uri = String(cString: evhttp_request_get_uri(req))
        let path = uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? uri
        let method = evhttp_request_get_command(req)
        let isGet = method == EVHTTP_REQ_GET || method == EVHTTP_REQ_HEAD
        switch path {
        case "/metrics", "/healthz":
            guard isGet else { return reply(req, 405, "Method Not Allowed", "use GET\n", allow: "GET, HEAD") }
            if path == "/healthz" { return reply(req, 200, "OK", "ok\n") }
            reply(req, 200, "OK", registry.exposition(), contentType: "text/plain; version=0.0.4; charset=utf-8")
        default:
            reply(req, 404, "Not Found", "not found: try /metrics or /healthz\n")
        }
    }

    private func reply(
        _ req: OpaquePointer, _ code: Int32, _ reason: String, _ body: String,
        contentType: String = "text/plain; charset=utf-8", allow: String? = nil
    ) {
        let headers = evhttp_request_get_output_headers(req)
        evhttp_add_header(headers, "Content-Type", contentType)
        if let allow { evhttp_add_header(headers, "Allow", allow) }
        let buf = evbuffer_new()
        var bytes = Array(body.utf8)
        if evhttp_request_get_command(req) != EVHTTP_REQ_HEAD { evbuffer_add(buf, &bytes, bytes.count) }
        evhttp_send_reply(req, code, reason, buf)
        evbuffer_free(buf)
    }

    /// Stops listening; scrapes in progress are cut.
    public func shutdown() {
        let http = self.http
        self.http = nil
        if let http {
            let box = UnsafeHTTP(http)
            loop.execute { evhttp_free(box.pointer) }
        }
        if ownsGroup { group.shutdown() }
    }
}

private struct UnsafeHTTP: @unchecked Sendable {
    let pointer: OpaquePointer
    init(_ p: OpaquePointer) { pointer = p }
}
