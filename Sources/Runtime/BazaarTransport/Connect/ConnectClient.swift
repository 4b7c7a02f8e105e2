import BazaarCore
import BazaarWire

/// The client side of Connect for a `GRPCChannel` whose calls speak it
/// (`ChannelConfiguration.rpcProtocol`): request headers, envelopes read back, and statuses made
/// from an error's JSON or a stream's end-of-stream message. Binary protobuf only: the channel
/// carries encoded messages.
enum ConnectClient {
    static func requestHeaders(
        path: String, scheme: String, authority: String, userAgent: String, unary: Bool, timeout: Duration?,
        compression: MessageCompression, metadata: Metadata
    ) -> [HeaderField] {
        var headers: [HeaderField] = [
            (":method", "POST"), (":scheme", scheme), (":path", path), (":authority", authority),
            ("content-type", unary ? "application/proto" : "application/connect+proto"),
            ("connect-protocol-version", "1"), ("user-agent", userAgent),
            (unary ? "accept-encoding" : "connect-accept-encoding", "gzip"),
        ]
        if compression == .gzip { headers.append((unary ? "content-encoding" : "connect-content-encoding", "gzip")) }
        if let timeout {
            // Whole milliseconds, rounded up so that a short deadline does not become none; the
            // protocol allows at most 10 digits.
            let (s, atto) = timeout.components
            // Clamped before multiplying: a "forever" deadline must not overflow.
            let seconds = min(max(s, 0), 10_000_000)
            let ms = max(1, min(9_999_999_999, seconds * 1000 + (atto + 999_999_999_999_999) / 1_000_000_000_000_000))
            headers.append(("connect-timeout-ms", String(ms)))
        }
        for (key, value) in metadata where !key.hasPrefix("grpc-") && !isProtocolHeader(key) && !isReserved(key) {
            switch value {
            case .text(let s): headers.append((key, s))
            case .binary(let b): headers.append((key, Base64.encode(b, padding: false)))
            }
        }
        return headers
    }

    /// Headers that are the protocol's own, not the call's metadata.
    static func isProtocolHeader(_ name: String) -> Bool {
        name.hasPrefix("connect-") || name == "content-type" || name == "content-encoding"
            || name == "accept-encoding" || name == "content-length" || name == "date" || name == "server"
            || name == "vary"
    }

    /// Names that never pass as metadata either way: HTTP/2 pseudo-headers and connection-specific
    /// headers (a peer resets a stream that carries them), and the message's own framing.
    static func isReserved(_ name: String) -> Bool {
        GRPCHeaders.isReserved(name) || name.hasPrefix("content-") || name == "keep-alive"
            || name == "proxy-connection" || name == "transfer-encoding" || name == "upgrade"
    }

    /// One received metadata value: `-bin` values are base64 (padded or not).
    static func add(_ key: String, _ value: String, to m: inout Metadata) {
        if key.hasSuffix("-bin") {
            if let bytes = Base64.decode(value, alphabet: .standard) { m.append(lowercasedKey: key, .binary(bytes)) }
        } else {
            m.append(lowercasedKey: key, .text(value))
        }
    }

    /// Takes the next whole envelope off the front of `buffer`, or nil when it is not all there.
    static func nextEnvelope(_ buffer: inout [UInt8], limit: Int) throws(RPCError) -> (UInt8, [UInt8])? {
        guard buffer.count >= 5 else { return nil }
        let n = Int(buffer[1]) << 24 | Int(buffer[2]) << 16 | Int(buffer[3]) << 8 | Int(buffer[4])
        guard n <= limit else {
            throw RPCError(.resourceExhausted, "a response message of \(n) bytes is over the limit")
        }
        guard buffer.count >= 5 + n else { return nil }
        let envelope = (buffer[0], Array(buffer[5..<(5 + n)]))
        buffer.removeFirst(5 + n)
        return envelope
    }

    /// The status in a stream's end-of-stream message; its metadata are the call's trailers.
    static func endOfStream(_ json: [UInt8], trailers: Metadata, into response: ResponseMetadata?) throws(RPCError)
        -> RPCError
    {
        guard case .object(let fields)? = try? JSONValue.parse(json) else {
            throw RPCError(.internal, "the end-of-stream message is not a JSON object")
        }
        var metadata = trailers
        if case .object(let pairs)? = fields.first(where: { $0.0 == "metadata" })?.1 {
            for (key, values) in pairs {
                guard case .array(let items) = values else { continue }
                for case .string(let v) in items { add(key.lowercased(), v, to: &metadata) }
            }
        }
        response?.trailing = metadata
        guard let error = fields.first(where: { $0.0 == "error" })?.1 else { return RPCError(.ok, metadata: metadata) }
        var status = status(error, fallback: .unknown)
        status.metadata = metadata
        return status
    }

    /// A unary error: its JSON when the server sent one, otherwise a code from the HTTP status.
    static func error(httpStatus: String, body: [UInt8], trailers: Metadata) -> RPCError {
        let fallback = ClientStream.code(forHTTPStatus: httpStatus)
        var e: RPCError
        if let json = try? JSONValue.parse(body), case .object = json {
            e = status(json, fallback: fallback)
        } else {
            e = RPCError(fallback, "HTTP status \(httpStatus) from the server")
        }
        e.metadata = trailers
        return e
    }

    /// `{"code", "message", "details"}` as a status.
    static func status(_ json: JSONValue, fallback: StatusCode) -> RPCError {
        guard case .object(let fields) = json else { return RPCError(fallback) }
        func field(_ name: String) -> JSONValue? { fields.first { $0.0 == name }?.1 }
        var code = fallback
        if case .string(let name)? = field("code") {
            code = StatusCode.allCases.first { ConnectWire.codeName($0) == name && $0 != .ok } ?? .unknown
        }
        var message = ""
        if case .string(let m)? = field("message") { message = m }
        var details: [ErrorDetail] = []
        if case .array(let items)? = field("details") {
            for case .object(let d) in items {
                guard case .string(let type)? = d.first(where: { $0.0 == "type" })?.1,
                    case .string(let value)? = d.first(where: { $0.0 == "value" })?.1,
                    let bytes = Base64.decode(value, alphabet: .standard)
                else { continue }
                details.append(StatusDetails.unpack(typeURL: "type.googleapis.com/" + type, value: bytes))
            }
        }
        return RPCError(code, message, details: details)
    }
}
