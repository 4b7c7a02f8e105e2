import BazaarAuth
import BazaarCore
import BazaarTransport
import BazaarWire
import Foundation

/// gRPC and gRPC-Web at the edge: requests with an `application/grpc*` content type go to the
/// owning service over the mesh, so external gRPC clients and browsers use the gateway's port.
///
/// The body arrives whole (the front door reads request bodies before answering), so unary,
/// server-streaming and client-streaming calls work; a bidirectional call gets its responses
/// after the client has finished sending. The bearer token is checked here as for REST and the
/// user forwarded the same way; identity headers a client sends itself are dropped. Internal
/// methods are not reachable from outside.
extension Gateway {
    enum GRPCFlavor {
        case grpc
        case web
        case webText

        init?(_ contentType: String) {
            let t = contentType.lowercased()
            if t.hasPrefix("application/grpc-web-text") {
                self = .webText
            } else if t.hasPrefix("application/grpc-web") {
                self = .web
            } else if t.hasPrefix("application/grpc") {
                self = .grpc
            } else {
                return nil
            }
        }
    }

    /// Headers a client may not pass through to a service.
    static let notForwarded: Set<String> = [
        "content-type", "content-length", "te", "host", "connection", "user-agent", "authorization",
        "grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "accept-encoding", "x-grpc-web",
        "x-user-agent", "origin", "referer", "accept", "x-request-id", "traceparent", "tracestate",
    ]

    func proxy(
        _ request: HTTPRequest, _ api: GatewayAPI, _ flavor: GRPCFlavor, _ writer: HTTPResponseWriter,
        _ common: [(String, String)]
    ) async {
        let contentType = request.header("content-type") ?? "application/grpc"
        var head = common
        if flavor != .grpc { head += [("access-control-expose-headers", "grpc-status, grpc-message, x-request-id")] }
        func finish(_ status: RPCError, sentHead: Bool, extra: [(String, String)] = []) {
            let trailers =
                [("grpc-status", String(status.code.rawValue))]
                + (status.message.isEmpty ? [] : [("grpc-message", GRPCHeaders.percentEncode(status.message))])
                + (StatusDetails.encode(status).map { [(StatusDetails.trailer, Base64.encode($0, padding: false))] }
                    ?? [])
                + extra
            if !sentHead { writer.writeHead(status: 200, headers: head + [("content-type", contentType)]) }
            switch flavor {
            case .grpc:
                writer.end(trailers: trailers)
            case .web, .webText:
                // gRPC-Web carries trailers in the body: a frame with flag 0x80.
                let text = trailers.map { "\($0.0): \($0.1)\r\n" }.joined()
                var frame: [UInt8] = [0x80]
                frame += Self.bigEndian(UInt32(text.utf8.count))
                frame += Array(text.utf8)
                writer.writeBody(flavor == .webText ? Array(Base64.encode(frame).utf8) : frame)
                writer.end()
            }
        }

        let path = request.path
        guard request.method == "POST" else {
            return finish(RPCError(.unimplemented, "gRPC needs POST"), sentHead: false)
        }
        guard let (method, name) = api.methods[path], method.options.auth.level != .internal,
            let upstream = upstreams[name]
        else {
            return finish(RPCError(.unimplemented, "method \(path) is not served here"), sentHead: false)
        }
        var body = request.body
        if flavor == .webText {
            guard
                let decoded = Base64.decode(
                    String(decoding: body, as: UTF8.self).filter { !$0.isWhitespace }, alphabet: .standard)
            else {
                return finish(RPCError(.invalidArgument, "the grpc-web-text body is not base64"), sentHead: false)
            }
            body = decoded
        }
        var reader = MessageReader(maxMessageSize: Int.max)
        reader.append(body)
        var messages: [[UInt8]] = []
        do throws(RPCError) {
            while let m = try reader.next() {
                // The gateway advertises no message encoding, so clients send none.
                if m.compressed {
                    throw RPCError(.unimplemented, "compressed messages are not accepted at the gateway")
                }
                messages.append(m.payload)
            }
            if reader.bufferedBytes > 0 { throw RPCError(.internal, "the body ends inside a message") }
        } catch {
            return finish(error, sentHead: false)
        }
        let user: UserIdentity?
        do {
            user = try authenticate(request, rule: method.options.auth)
        } catch {
            return finish(RPCError(error.code, error.message), sentHead: false)
        }
        if let seconds = rateLimited(request, user: user, method: method) {
            // gRPC's retry pushback: a client that retries waits at least this long.
            return finish(
                Self.rateLimitError(retryIn: seconds), sentHead: false,
                extra: [("grpc-retry-pushback-ms", String(seconds * 1000))])
        }
        var options = CallOptions(timeout: deadline(request, method))
        addCallMetadata(request, alphabet: .standard, to: &options.metadata)
        forward(user, requestID: common[0].1, request, into: &options)

        func frame(_ message: [UInt8]) -> [UInt8] {
            let f = (try? MessageWriter.frame(message, compression: .identity)) ?? []
            return flavor == .webText ? Array(Base64.encode(f).utf8) : f
        }
        var sentHead = false
        do {
            if method.kind == .unary {
                guard messages.count == 1 else {
                    throw RPCError(.unimplemented, "a unary call takes exactly one message, got \(messages.count)")
                }
                let reply = try await upstream.unary(method, request: messages[0], options: options)
                writer.writeHead(status: 200, headers: head + [("content-type", contentType)])
                sentHead = true
                writer.writeBody(frame(reply))
            } else {
                let caller = self.caller(request, user)
                if let why = streams.take(caller) { throw RPCError(.resourceExhausted, why) }
                defer { streams.release(caller) }
                let replies = upstream.streaming(
                    method,
                    requests: RPCStream { c in
                        for m in messages { c.yield(m) }
                        c.finish()
                    }, options: options)
                for try await reply in replies {
                    if !sentHead {
                        writer.writeHead(status: 200, headers: head + [("content-type", contentType)])
                        sentHead = true
                    }
                    writer.writeBody(frame(reply))
                }
            }
            finish(RPCError(.ok), sentHead: sentHead)
        } catch {
            finish(RPCError(error), sentHead: sentHead)
        }
    }

    /// Adds the request's headers that are the call's metadata: all but the protocol's own
    /// (``notForwarded`` and `skipping`), the edge's identity headers (`x-bazaar-*`, which a
    /// client may not set) and pseudo-headers; `-bin` values decoded from base64 in `alphabet`,
    /// and dropped when they are not base64.
    func addCallMetadata(
        _ request: HTTPRequest, skipping: Set<String> = [], alphabet: Base64.Alphabet, to metadata: inout Metadata
    ) {
        for (name, value) in request.headers
        where !Self.notForwarded.contains(name) && !skipping.contains(name) && !name.hasPrefix("x-bazaar-")
            && !name.hasPrefix(":")
        {
            if name.hasSuffix("-bin") {
                if let bytes = Base64.decode(value, alphabet: alphabet) { metadata.add(name, binary: bytes) }
            } else {
                metadata.add(name, value)
            }
        }
    }

    static func bigEndian(_ n: UInt32) -> [UInt8] {
        [UInt8(n >> 24), UInt8((n >> 16) & 255), UInt8((n >> 8) & 255), UInt8(n & 255)]
    }
}
