import BazaarAuth
import BazaarCore
import BazaarTransport
import BazaarWire
import Foundation

/// Connect at the edge: a request to a method's path (`/pkg.Service/Method`) in one of Connect's
/// forms (``ConnectWire/kind(method:contentType:query:)``) goes to the owning service over the mesh
/// like a gRPC call through the proxy: the bearer token checked here, the user forwarded, the same
/// rate limits and stream budget, internal methods unreachable. JSON is mapped with the method's
/// descriptors (as REST's is), binary messages pass through untouched.
extension Gateway {
    /// The most a Connect request's messages may carry, inflated, together.
    static let connectMessageLimit = 4 << 20

    /// Headers that belong to the protocol, not to the call's metadata.
    static let connectOwn: Set<String> = [
        "connect-protocol-version", "connect-timeout-ms", "connect-content-encoding", "connect-accept-encoding",
        "content-encoding", "if-none-match", "cache-control", "pragma",
    ]

    func connect(
        _ request: HTTPRequest, _ api: GatewayAPI, _ kind: ConnectWire.Kind, _ writer: HTTPResponseWriter,
        _ common: [(String, String)]
    ) async {
        guard let (method, name) = api.methods[request.path], method.options.auth.level != .internal,
            let upstream = upstreams[name], let messages = api.messages[request.path]
        else {
            return connectFail(
                writer, common, RPCError(.unimplemented, "no procedure \(request.path) is served here"), status: 404)
        }
        switch kind {
        case .stream(let codec):
            guard method.kind != .unary else {
                return connectFail(
                    writer, common,
                    RPCError(.invalidArgument, "\(method.path) is unary: send application/proto or application/json"),
                    status: 415)
            }
            await connectStream(request, method, upstream, messages, codec, writer, common)
        case .unary, .unaryGet:
            guard method.kind == .unary else {
                return connectFail(
                    writer, common,
                    RPCError(
                        .invalidArgument,
                        "\(method.path) streams: send application/connect+proto or application/connect+json"),
                    status: 415)
            }
            if kind == .unaryGet, method.options.idempotency != .noSideEffects {
                return connectFail(
                    writer, common,
                    RPCError(.invalidArgument, "\(method.path) has side effects: call it with POST"), status: 405,
                    extra: [("allow", "POST")])
            }
            await connectUnary(request, method, upstream, messages, kind, writer, common)
        }
    }

    /// A unary call: the message in the body (POST) or the query (GET), the answer as the body.
    func connectUnary(
        _ request: HTTPRequest, _ method: MethodDescriptor, _ upstream: any ClientTransport,
        _ messages: (input: MessageSchema, output: MessageSchema), _ kind: ConnectWire.Kind,
        _ writer: HTTPResponseWriter, _ common: [(String, String)]
    ) async {
        // Who is calling, and may they, before any work on the body (inflating, parsing): a
        // caller over its limit, or refused, costs the edge nothing more.
        let user: UserIdentity?
        do {
            user = try authenticate(request, rule: method.options.auth)
        } catch {
            return connectFail(writer, common, RPCError(error.code, error.message), extra: error.headers)
        }
        if let seconds = rateLimited(request, user: user, method: method) {
            return connectFail(
                writer, common, Self.rateLimitError(retryIn: seconds), extra: [("retry-after", String(seconds))])
        }
        let codec: ConnectWire.Codec
        let input: [UInt8]
        var options: CallOptions
        do {
            try ConnectWire.checkVersion(request.header("connect-protocol-version"))
            var body: [UInt8]
            if case .unary(let c) = kind {
                codec = c
                body = try ConnectWire.inflate(
                    request.body, try ConnectWire.compression(request.header("content-encoding")),
                    limit: Self.connectMessageLimit)
            } else {
                let (c, encoding, message) = try ConnectWire.getMessage(request.query, limit: Self.connectMessageLimit)
                guard let c else {
                    return connectFail(
                        writer, common,
                        RPCError(.unimplemented, "encoding \(encoding) is not a codec here: use json or proto"),
                        status: 415)
                }
                (codec, body) = (c, message)
            }
            if codec == .json, body.isEmpty { body = Array("{}".utf8) }
            input = try connectDecode(body, codec, messages.input)
            options = try connectOptions(request, method, common)
        } catch {
            let e = RPCError(error)
            // Say which encodings are taken when the one sent is not.
            let extra: [(String, String)] =
                e.code == .unimplemented ? [("accept-encoding", "gzip, identity")] : []
            return connectFail(writer, common, e, extra: extra)
        }
        forward(user, requestID: common[0].1, request, into: &options)
        let answer = ResponseMetadata()
        options.responseMetadata = answer
        let reply: [UInt8]
        do {
            let bytes = try await upstream.unary(method, request: input, options: options)
            reply = try connectEncode(bytes, codec, messages.output)
        } catch {
            // The status's metadata is the call's trailers: `trailer-` headers, beside the
            // initial metadata as plain ones.
            let e = RPCError(error)
            var extra = Self.headers(answer.initial)
            extra += Self.headers(e.metadata).filter { $0.0 != "retry-after" }.map { ("trailer-" + $0.0, $0.1) }
            if let retry = e.metadata["retry-after"] { extra.append(("retry-after", retry)) }
            return connectFail(writer, common, RPCError(e.code, e.message, details: e.details), extra: extra)
        }
        var headers = common + [("content-type", codec == .json ? "application/json" : "application/proto")]
        headers += Self.headers(answer.initial) + Self.headers(answer.trailing).map { ("trailer-" + $0.0, $0.1) }
        if kind == .unaryGet {
            // Side-effect free by the IDL: cacheable, for as long as the caller's identity allows.
            let tag = "\"" + ContentHash.hex(reply) + "\""
            headers.append(("etag", tag))
            headers.append(
                user == nil
                    ? ("cache-control", "public, max-age=\(settings.connectGetMaxAge)")
                    : ("cache-control", "private, no-cache"))
            headers.append(("vary", "authorization, accept-encoding"))
            if let asked = request.header("if-none-match"),
                asked.split(separator: ",").contains(where: {
                    $0.trimmingCharacters(in: .whitespaces) == tag
                })
            {
                return writer.respond(status: 304, headers: headers.filter { $0.0 != "content-type" }, body: [])
            }
        }
        var body = reply
        if body.count > 1024, ConnectWire.acceptsGzip(request.header("accept-encoding")),
            let packed = try? Gzip.compress(body)
        {
            body = packed
            headers.append(("content-encoding", "gzip"))
        }
        writer.respond(status: 200, headers: headers, body: request.method == "HEAD" ? [] : body)
    }

    /// A streaming call: the request's envelopes in, the replies as envelopes, then the
    /// end-of-stream envelope with the status. Always HTTP 200 once it is a stream of this method;
    /// errors travel in the end-of-stream envelope.
    func connectStream(
        _ request: HTTPRequest, _ method: MethodDescriptor, _ upstream: any ClientTransport,
        _ messages: (input: MessageSchema, output: MessageSchema), _ codec: ConnectWire.Codec,
        _ writer: HTTPResponseWriter, _ common: [(String, String)]
    ) async {
        let type = codec == .json ? "application/connect+json" : "application/connect+proto"
        let gzipOut = ConnectWire.acceptsGzip(request.header("connect-accept-encoding"))
        var head = common + [("content-type", type)]
        if gzipOut { head.append(("connect-content-encoding", "gzip")) }
        var sentHead = false
        func finish(_ status: RPCError, trailers: Metadata = Metadata()) {
            if !sentHead { writer.writeHead(status: 200, headers: head) }
            writer.writeBody(ConnectWire.endOfStream(status, trailers: trailers))
            writer.end()
        }
        // Who is calling, and may they, before any work on the body.
        let user: UserIdentity?
        do {
            user = try authenticate(request, rule: method.options.auth)
        } catch {
            return finish(RPCError(error.code, error.message))
        }
        if let seconds = rateLimited(request, user: user, method: method) {
            let e = Self.rateLimitError(retryIn: seconds)
            return finish(e, trailers: e.metadata)
        }
        var inputs: [[UInt8]] = []
        var options: CallOptions
        do {
            try ConnectWire.checkVersion(request.header("connect-protocol-version"))
            let compression = try ConnectWire.compression(request.header("connect-content-encoding"))
            let envelopes = try ConnectWire.envelopes(request.body, limit: Self.connectMessageLimit)
            if method.kind == .serverStreaming, envelopes.count != 1 {
                throw RPCError(
                    .invalidArgument, "\(method.path) takes exactly one request message, got \(envelopes.count)")
            }
            // What the messages may add up to once inflated, together: many small gzip bombs
            // must not add up to a large allocation either.
            var budget = Self.connectMessageLimit
            for e in envelopes {
                guard e.flags & ConnectWire.endStreamFlag == 0, e.flags & ~ConnectWire.compressedFlag == 0 else {
                    throw RPCError(.invalidArgument, "a request envelope with flags \(e.flags)")
                }
                var payload = e.payload
                if e.flags & ConnectWire.compressedFlag != 0 {
                    guard compression != .identity else {
                        throw RPCError(.invalidArgument, "a compressed envelope without connect-content-encoding")
                    }
                    payload = try ConnectWire.inflate(payload, compression, limit: budget)
                }
                budget -= payload.count
                guard budget >= 0 else {
                    throw RPCError(
                        .resourceExhausted,
                        "the request's messages add up to more than \(Self.connectMessageLimit) bytes")
                }
                inputs.append(try connectDecode(payload, codec, messages.input))
            }
            options = try connectOptions(request, method, common)
        } catch {
            return finish(RPCError(error))
        }
        let caller = self.caller(request, user)
        if let why = streams.take(caller) { return finish(RPCError(.resourceExhausted, why)) }
        defer { streams.release(caller) }
        forward(user, requestID: common[0].1, request, into: &options)
        let answer = ResponseMetadata()
        options.responseMetadata = answer
        let replies = upstream.streaming(
            method,
            requests: RPCStream { c in
                for m in inputs { c.yield(m) }
                c.finish()
            }, options: options)
        do {
            for try await reply in replies {
                if !sentHead {
                    writer.writeHead(status: 200, headers: head + Self.headers(answer.initial))
                    sentHead = true
                }
                var payload = try connectEncode(reply, codec, messages.output)
                var flags: UInt8 = 0
                if gzipOut, payload.count > 1024, let packed = try? Gzip.compress(payload) {
                    payload = packed
                    flags = ConnectWire.compressedFlag
                }
                writer.writeBody(ConnectWire.envelope(payload, flags: flags))
            }
            finish(RPCError(.ok), trailers: answer.trailing)
        } catch {
            finish(RPCError(error), trailers: answer.trailing)
        }
    }

    /// The call's options: its deadline (`connect-timeout-ms`, capped by the gateway's longest)
    /// and the request headers that are the call's metadata.
    func connectOptions(_ request: HTTPRequest, _ method: MethodDescriptor, _ common: [(String, String)])
        throws(RPCError) -> CallOptions
    {
        let asked = try ConnectWire.timeout(request.header("connect-timeout-ms"))
        var d =
            method.kind == .unary ? method.options.defaultDeadline ?? .seconds(10) : settings.maxDeadline
        if let asked { d = asked }
        var options = CallOptions(timeout: min(d, settings.maxDeadline))
        addCallMetadata(request, skipping: Self.connectOwn, alphabet: .either, to: &options.metadata)
        return options
    }

    func connectDecode(_ body: [UInt8], _ codec: ConnectWire.Codec, _ schema: MessageSchema) throws(RPCError)
        -> [UInt8]
    {
        guard codec == .json else { return body }
        do {
            return try ProtoJSON.decode(try JSONValue.parse(body), as: schema.descriptor, options: settings.json)
        } catch let e as JSONMappingError {
            throw RPCError(.invalidArgument, "the request is not a valid message: \(e.description)")
        } catch {
            throw RPCError(.invalidArgument, "the request is not valid JSON")
        }
    }

    func connectEncode(_ bytes: [UInt8], _ codec: ConnectWire.Codec, _ schema: MessageSchema) throws(RPCError)
        -> [UInt8]
    {
        guard codec == .json else { return bytes }
        do {
            return try ProtoJSON.encode(bytes, as: schema.descriptor, options: settings.json).serialized()
        } catch {
            throw RPCError(.internal, "the answer could not be written as JSON: \(error.description)")
        }
    }

    /// A unary error: the protocol's HTTP status for the code (or `status`), its JSON body.
    func connectFail(
        _ writer: HTTPResponseWriter, _ common: [(String, String)], _ e: RPCError, status: Int? = nil,
        extra: [(String, String)] = []
    ) {
        let own = common + extra + [("content-type", "application/json")]
        var headers = own + Self.headers(e.metadata).filter { h in !own.contains { $0.0 == h.0 } }
        if e.code == .unauthenticated, !headers.contains(where: { $0.0 == "www-authenticate" }) {
            headers.append(("www-authenticate", "Bearer realm=\"bazaar\""))
        }
        writer.respond(
            status: status ?? ConnectWire.httpStatus(e.code), headers: headers,
            body: ConnectWire.errorJSON(e).serialized())
    }

    /// Metadata as response headers (binary values base64), without gRPC's own.
    static func headers(_ m: Metadata) -> [(String, String)] {
        m.entries.compactMap { key, value in
            guard !key.hasPrefix("grpc-"), !key.hasPrefix(":"), key != "content-type" else { return nil }
            switch value {
            case .text(let s): return (key, s)
            case .binary(let b): return (key, Base64.encode(b, padding: false))
            }
        }
    }
}
