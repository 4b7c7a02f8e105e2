import BazaarCore
import BazaarWire

/// The Connect protocol's wire rules (connectrpc.com/docs/protocol), apart from any I/O: which
/// requests are Connect calls, their codecs, envelopes, timeouts, compression, and how a status
/// is written back. The mesh's servers answer Connect with them, and so does the edge's gateway.
///
/// Unary calls are plain HTTP: `POST /pkg.Service/Method` with the message as the body
/// (`application/proto` or `application/json`), or, for methods marked `NO_SIDE_EFFECTS`, a `GET`
/// with the message in the query. Streaming calls (`application/connect+proto|json`) carry
/// enveloped messages (a flags byte, a 4-byte big-endian length, the payload) and end with an
/// end-of-stream envelope (flag 0x02) holding the status as JSON.
public enum ConnectWire {
    /// How messages are encoded.
    public enum Codec: String, Sendable {
        case proto, json
    }

    /// What kind of Connect request an HTTP request is.
    public enum Kind: Sendable, Equatable {
        /// A unary `POST`, its body one message.
        case unary(Codec)
        /// A unary `GET`: the message in the query (`message`, `encoding`, `base64`, `compression`).
        case unaryGet
        /// A streaming call, enveloped messages either way.
        case stream(Codec)
    }

    /// The Connect kind of a request: `nil` when it is not Connect (then gRPC, gRPC-Web, REST or
    /// the web front end may take it).
    public static func kind(method: String, contentType: String?, query: String) -> Kind? {
        if method == "GET" {
            // connect=v1 marks a Connect GET; a GET without it is REST's or a page.
            return query.split(separator: "&").contains("connect=v1") ? .unaryGet : nil
        }
        guard method == "POST", let type = contentType?.lowercased() else { return nil }
        // `split` of "" or ";" is empty: an empty content type must not crash the edge (found by
        // the fuzz target on its first input).
        let bare = (type.split(separator: ";", maxSplits: 1).first ?? "").trimmingCharacters(in: .whitespaces)
        switch bare {
        case "application/proto": return .unary(.proto)
        case "application/json": return .unary(.json)
        case "application/connect+proto": return .stream(.proto)
        case "application/connect+json": return .stream(.json)
        default: return nil
        }
    }

    /// The HTTP status of a unary error with `code`: the protocol's table, which is the one REST
    /// errors use too (grpc-gateway's), kept once as ``StatusCode/httpStatus``.
    public static func httpStatus(_ code: StatusCode) -> Int { code.httpStatus }

    /// The code's name in Connect's error JSON (`not_found`).
    public static func codeName(_ code: StatusCode) -> String {
        switch code {
        case .ok: "ok"
        case .cancelled: "canceled"
        case .unknown: "unknown"
        case .invalidArgument: "invalid_argument"
        case .deadlineExceeded: "deadline_exceeded"
        case .notFound: "not_found"
        case .alreadyExists: "already_exists"
        case .permissionDenied: "permission_denied"
        case .resourceExhausted: "resource_exhausted"
        case .failedPrecondition: "failed_precondition"
        case .aborted: "aborted"
        case .outOfRange: "out_of_range"
        case .unimplemented: "unimplemented"
        case .internal: "internal"
        case .unavailable: "unavailable"
        case .dataLoss: "data_loss"
        case .unauthenticated: "unauthenticated"
        }
    }

    /// An error as Connect's JSON: `{"code": "...", "message": "...", "details": [...]}`.
    public static func errorJSON(_ e: RPCError) -> JSONValue {
        var fields: [(String, JSONValue)] = [("code", .string(codeName(e.code == .ok ? .unknown : e.code)))]
        if !e.message.isEmpty { fields.append(("message", .string(e.message))) }
        let details = e.details.compactMap(ErrorDetailJSON.connect)
        if !details.isEmpty { fields.append(("details", .array(details))) }
        return .object(fields)
    }

    /// `Connect-Timeout-Ms`: at most 10 digits (the protocol's limit); `nil` when absent.
    public static func timeout(_ header: String?) throws(RPCError) -> Duration? {
        guard let header else { return nil }
        guard !header.isEmpty, header.utf8.count <= 10, header.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
            let ms = Int64(header), ms > 0
        else {
            throw RPCError(.invalidArgument, "connect-timeout-ms must be a positive integer of at most 10 digits")
        }
        return .milliseconds(ms)
    }

    // MARK: envelopes

    /// Flags of an envelope.
    public static let compressedFlag: UInt8 = 0x01
    public static let endStreamFlag: UInt8 = 0x02

    /// One envelope: flags, length, payload.
    public static func envelope(_ payload: [UInt8], flags: UInt8 = 0) -> [UInt8] {
        var out: [UInt8] = [flags]
        out.reserveCapacity(5 + payload.count)
        let n = UInt32(payload.count)
        out += [UInt8(n >> 24), UInt8((n >> 16) & 255), UInt8((n >> 8) & 255), UInt8(n & 255)]
        return out + payload
    }

    /// The envelopes of a whole request body: each `(flags, payload)`. A body that ends inside an
    /// envelope, or an envelope over `limit` bytes, is refused.
    public static func envelopes(_ body: [UInt8], limit: Int) throws(RPCError) -> [(flags: UInt8, payload: [UInt8])] {
        var out: [(UInt8, [UInt8])] = []
        var i = 0
        while i < body.count {
            guard body.count - i >= 5 else {
                throw RPCError(.invalidArgument, "the body ends inside an envelope's prefix")
            }
            let n = Int(body[i + 1]) << 24 | Int(body[i + 2]) << 16 | Int(body[i + 3]) << 8 | Int(body[i + 4])
            guard n <= limit else { throw RPCError(.resourceExhausted, "a message of \(n) bytes is over the limit") }
            guard body.count - i - 5 >= n else { throw RPCError(.invalidArgument, "the body ends inside a message") }
            out.append((body[i], Array(body[(i + 5)..<(i + 5 + n)])))
            i += 5 + n
        }
        return out
    }

    /// The end-of-stream envelope: the status (when it is an error) and the trailing metadata.
    public static func endOfStream(_ status: RPCError, trailers: Metadata = Metadata()) -> [UInt8] {
        var fields: [(String, JSONValue)] = []
        if status.code != .ok { fields.append(("error", errorJSON(status))) }
        let metadata = Self.metadataJSON(trailers)
        if case .object(let pairs) = metadata, !pairs.isEmpty { fields.append(("metadata", metadata)) }
        return envelope(JSONValue.object(fields).serialized(), flags: endStreamFlag)
    }

    /// Metadata as Connect's JSON object of arrays (binary values base64, as in headers).
    public static func metadataJSON(_ m: Metadata) -> JSONValue {
        var keys: [String] = []
        var values: [String: [JSONValue]] = [:]
        for (key, value) in m.entries where !key.hasPrefix("grpc-") {
            let text: String
            switch value {
            case .text(let s): text = s
            case .binary(let b): text = Base64.encode(b, padding: false)
            }
            if values[key] == nil { keys.append(key) }
            values[key, default: []].append(.string(text))
        }
        return .object(keys.map { ($0, .array(values[$0]!)) })
    }

    // MARK: compression

    /// The compression a `content-encoding` (or `connect-content-encoding`) names.
    public static func compression(_ header: String?) throws(RPCError) -> MessageCompression {
        switch header?.lowercased().trimmingCharacters(in: .whitespaces) {
        case nil, "", "identity": return .identity
        case "gzip": return .gzip
        case let other?: throw RPCError(.unimplemented, "compression \(other) is not supported; use gzip or identity")
        }
    }

    /// Whether an `accept-encoding` (or `connect-accept-encoding`) list takes gzip.
    public static func acceptsGzip(_ header: String?) -> Bool {
        guard let header else { return false }
        return header.lowercased().split(separator: ",").contains { item in
            let parts = item.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.first == "gzip" else { return false }
            // `q=0` (or 0.0, 0.000) refuses it; any other weight takes it.
            let q = parts.dropFirst().first { $0.hasPrefix("q=") }.flatMap { Double($0.dropFirst(2)) }
            return q.map { $0 > 0 } ?? true
        }
    }

    /// Inflates at most `limit` bytes. Empty content is not inflated (the protocol: a sender may
    /// name an encoding and send nothing).
    public static func inflate(_ bytes: [UInt8], _ c: MessageCompression, limit: Int) throws(RPCError) -> [UInt8] {
        switch c {
        case .identity: return bytes
        case .gzip:
            if bytes.isEmpty { return bytes }
            do { return try Gzip.decompress(bytes, limit: limit) } catch {
                if error.code == .resourceExhausted { throw error }
                throw RPCError(.invalidArgument, "the gzip body cannot be read: \(error.message)")
            }
        }
    }

    /// `connect-protocol-version`: absent, or 1.
    public static func checkVersion(_ header: String?) throws(RPCError) {
        guard let header, header != "1" else { return }
        throw RPCError(.invalidArgument, "connect-protocol-version \(header) is not supported; this edge speaks 1")
    }

    // MARK: GET

    /// A unary GET's message and codec from its query (`message`, `encoding`, `base64`,
    /// `compression`, `connect`). The codec is `nil` when `encoding` names none here (the caller
    /// answers 415, as the protocol asks).
    public static func getMessage(_ query: String, limit: Int) throws(RPCError) -> (
        codec: Codec?, encoding: String, message: [UInt8]
    ) {
        // Values are kept as bytes: a binary message percent-encoded without base64 must reach
        // the service as sent, not through a string that would replace invalid UTF-8.
        var raw: [String: [UInt8]] = [:]
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0])
            guard let value = PercentEncoding.unescape(Array((parts.count > 1 ? parts[1] : "").utf8), plusIsSpace: true)
            else { throw RPCError(.invalidArgument, "the query's \(name) is not percent-encoded properly") }
            raw[name] = value
        }
        let fields = raw.mapValues { String(decoding: $0, as: UTF8.self) }
        guard fields["connect"] == "v1" else { throw RPCError(.invalidArgument, "a Connect GET needs connect=v1") }
        guard let encoding = fields["encoding"] else {
            throw RPCError(.invalidArgument, "a Connect GET needs encoding=proto or encoding=json")
        }
        let codec = Codec(rawValue: encoding)
        guard let message = fields["message"], var bytes = raw["message"] else {
            throw RPCError(.invalidArgument, "a Connect GET needs message")
        }
        if fields["base64"] == "1" {
            guard let decoded = Base64.decode(message, alphabet: .either) else {
                throw RPCError(.invalidArgument, "the message is not base64")
            }
            bytes = decoded
        }
        bytes = try inflate(bytes, try compression(fields["compression"]), limit: limit)
        return (codec, encoding, bytes)
    }
}
