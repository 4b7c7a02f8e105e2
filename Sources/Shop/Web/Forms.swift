import BazaarWire

/// `application/x-www-form-urlencoded` (form posts and query strings), decoded as browsers encode
/// it: pairs split on `&`, name and value on the first `=`, `+` as a space, `%XX` as a byte, and
/// the bytes read as UTF-8 (invalid sequences become U+FFFD). Bounded: a form with more pairs
/// than ``maxPairs`` is refused rather than decoded.
public struct FormData: Sendable, Equatable {
    public private(set) var pairs: [(name: String, value: String)]

    public static let maxPairs = 256

    /// A form or query string that cannot be decoded.
    public struct Malformed: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    public init(_ pairs: [(name: String, value: String)] = []) { self.pairs = pairs }

    public init(encoded: some Collection<UInt8>) throws(Malformed) {
        pairs = []
        var start = encoded.startIndex
        while start < encoded.endIndex {
            let end = encoded[start...].firstIndex(of: UInt8(ascii: "&")) ?? encoded.endIndex
            let piece = encoded[start..<end]
            if !piece.isEmpty {
                guard pairs.count < Self.maxPairs else { throw Malformed(description: "too many form fields") }
                if let eq = piece.firstIndex(of: UInt8(ascii: "=")) {
                    pairs.append(
                        (try Self.decode(piece[..<eq]), try Self.decode(piece[piece.index(after: eq)...])))
                } else {
                    pairs.append((try Self.decode(piece), ""))
                }
            }
            start = end == encoded.endIndex ? end : encoded.index(after: end)
        }
    }

    public init(query: String) throws(Malformed) { try self.init(encoded: Array(query.utf8)) }

    /// The first value of `name`, if any.
    public subscript(_ name: String) -> String? { pairs.first { $0.name == name }?.value }

    /// Without `name`.
    public mutating func remove(_ name: String) { pairs.removeAll { $0.name == name } }

    /// Every value of `name`, in order.
    public func all(_ name: String) -> [String] { pairs.filter { $0.name == name }.map(\.value) }

    public static func == (a: FormData, b: FormData) -> Bool {
        a.pairs.map(\.name) == b.pairs.map(\.name) && a.pairs.map(\.value) == b.pairs.map(\.value)
    }

    /// A path segment as sent (`caf%C3%A9`): `%XX` decoded, `+` kept.
    public static func decodePathSegment(_ s: Substring) throws(Malformed) -> String {
        try decode(Array(s.utf8), plusIsSpace: false)
    }

    static func decode(_ bytes: some Collection<UInt8>, plusIsSpace: Bool = true) throws(Malformed) -> String {
        guard let decoded = PercentEncoding.unescape(Array(bytes), plusIsSpace: plusIsSpace) else {
            throw Malformed(description: "a % not followed by two hex digits")
        }
        return String(decoding: decoded, as: UTF8.self)
    }
}

/// Cookies: the `cookie` request header read, and `set-cookie` values written with the
/// attributes the web app's cookies always carry.
public enum Cookies {
    /// `name=value` pairs of a `cookie` header; the first of a repeated name wins (the most
    /// specific path, as browsers order them).
    public static func parse(_ header: String?) -> [String: String] {
        guard let header else { return [:] }
        var out: [String: String] = [:]
        for piece in header.split(separator: ";") {
            let p = piece.trimmingPrefix(" ")
            guard let eq = p.firstIndex(of: "=") else { continue }
            let name = String(p[..<eq])
            if out[name] == nil { out[name] = String(p[p.index(after: eq)...]) }
        }
        return out
    }

    /// A `set-cookie` value: `HttpOnly`, `SameSite=Lax`, `Path=/`, and `Secure` when the client
    /// came over TLS. `maxAge` 0 deletes the cookie; `nil` makes a session cookie. The value
    /// must be a cookie token (the web app's are random base64url).
    public static func set(_ name: String, _ value: String, secure: Bool, maxAge: Int? = nil) -> String {
        precondition(
            value.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ";") && $0 != UInt8(ascii: ",") },
            "cookie values are tokens")
        var s = "\(name)=\(value); Path=/; HttpOnly; SameSite=Lax"
        if let maxAge { s += "; Max-Age=\(maxAge)" }
        if secure { s += "; Secure" }
        return s
    }
}
