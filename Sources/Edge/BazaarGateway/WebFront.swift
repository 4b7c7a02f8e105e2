import BazaarCore
import BazaarTransport
import BazaarWebProtos
import BazaarWire

/// Web front ends behind the edge: a request that no API route, gRPC method or edge path takes
/// goes to the upstream that serves `bazaar.web.v1.WebFront` (found in the schemas the gateway
/// learns by reflection), as one server-streaming call: the request in, the answer's head and
/// then its body chunks out, written to the client as they come (server-sent events included).
///
/// The web app sees the request's own headers (cookies included) less the hop-by-hop ones and
/// the mesh's identity headers, which only the gateway sets. It authenticates its users itself.
extension Gateway {
    /// The service a web front end implements.
    public static let webFrontService = "bazaar.web.v1.WebFront"

    /// Request headers that stay at the edge.
    static let notForwardedToWeb: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade", "content-length",
        "expect", "http2-settings", "traceparent", "tracestate", "x-request-id",
    ]

    /// Response headers the edge sets itself.
    static let notForwardedFromWeb: Set<String> = [
        "connection", "keep-alive", "transfer-encoding", "upgrade", "content-length", "x-request-id",
    ]

    /// The HTTP request as the web front end gets it.
    func webRequest(_ request: HTTPRequest, requestID: String) -> Bazaar_Web_V1_HttpRequest {
        var r = Bazaar_Web_V1_HttpRequest()
        r.method = request.method
        r.path = request.path
        r.query = request.query
        r.headers = request.headers.compactMap { h in
            let name = h.name.lowercased()
            if Self.notForwardedToWeb.contains(name) || name.hasPrefix("x-bazaar-") || name.hasPrefix(":") {
                return nil
            }
            var header = Bazaar_Web_V1_HttpHeader()
            header.name = name
            header.value = h.value
            return header
        }
        r.body = request.body
        r.clientAddress = clientAddress(request)
        r.secure = request.isSecure
        r.requestID = requestID
        return r
    }

    /// Sends `request` to the web front end and writes its answer.
    func web(
        _ request: HTTPRequest, _ front: (method: MethodDescriptor, upstream: String), _ writer: HTTPResponseWriter,
        _ common: [(String, String)]
    ) async throws {
        guard let upstream = upstreams[front.upstream] else {
            throw HTTPFailure(status: 503, code: .unavailable, message: "the web front end is not configured")
        }
        let body: [UInt8]
        do {
            body = try webRequest(request, requestID: common[0].1).serializedBytes()
        } catch {
            throw HTTPFailure(status: 400, code: .invalidArgument, message: "the request cannot be passed on")
        }
        var options = CallOptions(timeout: settings.maxDeadline)
        forward(nil, requestID: common[0].1, request, into: &options)
        // Every page view is a stream upstream: the same budget as the API's streams, so page
        // views cannot crowd out calls, and one client cannot hold many open.
        try await holdingStream(for: self.caller(request, nil)) {
            let parts = upstream.streaming(
                front.method,
                requests: RPCStream { c in
                    c.yield(body)
                    c.finish()
                }, options: options)
            var iterator = parts.makeAsyncIterator()
            // Nothing is written until the head arrives: a failure before it is an ordinary error.
            guard let first = try await iterator.next() else {
                throw HTTPFailure(status: 502, code: .internal, message: "the web front end gave no answer")
            }
            guard case .head(let head)? = try Self.part(first).part, (100...599).contains(head.status) else {
                throw HTTPFailure(
                    status: 502, code: .internal, message: "the web front end's answer did not start with a head")
            }
            let headers =
                common
                + head.headers.compactMap { h in
                    let name = h.name.lowercased()
                    guard !Self.notForwardedFromWeb.contains(name), Self.isSafeHeader(name, h.value)
                    else { return nil }
                    return (name, h.value)
                }
            writer.writeHead(status: Int(head.status), headers: headers)
            do {
                while let bytes = try await iterator.next() {
                    guard case .body(let chunk)? = try Self.part(bytes).part else { break }
                    if request.method != "HEAD" { writer.writeBody(chunk) }
                }
            } catch {
                // The head is out: all that is left is to end the answer early.
            }
            writer.end()
        }
    }

    /// A header the web app may set: a token for a name (and not a pseudo-header), and a value
    /// without CR, LF or NUL, so no answer can be split.
    static func isSafeHeader(_ name: String, _ value: String) -> Bool {
        !name.isEmpty
            && name.utf8.allSatisfy { b in
                (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9"))
                    || "!#$%&'*+-.^_`|~".utf8.contains(b)
            }
            && !value.utf8.contains { $0 == 0 || $0 == 10 || $0 == 13 }
    }

    static func part(_ bytes: [UInt8]) throws -> Bazaar_Web_V1_HttpResponsePart {
        do {
            return try Bazaar_Web_V1_HttpResponsePart(serializedBytes: bytes)
        } catch {
            throw HTTPFailure(status: 502, code: .internal, message: "the web front end answered with a malformed part")
        }
    }
}
