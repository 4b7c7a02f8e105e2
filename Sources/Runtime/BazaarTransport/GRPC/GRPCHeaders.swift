import BazaarCore
import BazaarWire

/// The header rules of gRPC over HTTP/2 (`doc/PROTOCOL-HTTP2.md`): timeouts, status messages and
/// metadata. Pure functions, tested without a connection. Public for the edge gateway's gRPC
/// proxy, which speaks the same wire rules.
public enum GRPCHeaders {
    // MARK: grpc-timeout

    /// Parses `grpc-timeout`: at most 8 digits and a unit (H M S m u n).
    public static func parseTimeout(_ value: String) -> Duration? {
        let utf8 = Array(value.utf8)
        guard utf8.count >= 2, utf8.count <= 9 else { return nil }
        var amount: Int64 = 0
        for c in utf8.dropLast() {
            guard c >= 0x30, c <= 0x39 else { return nil }
            amount = amount * 10 + Int64(c - 0x30)
        }
        switch utf8.last! {
        case UInt8(ascii: "H"): return .seconds(amount * 3600)
        case UInt8(ascii: "M"): return .seconds(amount * 60)
        case UInt8(ascii: "S"): return .seconds(amount)
        case UInt8(ascii: "m"): return .milliseconds(amount)
        case UInt8(ascii: "u"): return .microseconds(amount)
        case UInt8(ascii: "n"): return .nanoseconds(amount)
        default: return nil
        }
    }

    /// Encodes a timeout in the finest unit that fits 8 digits.
    static func encodeTimeout(_ d: Duration) -> String {
        let (s, atto) = d.components
        // Past a million seconds only the coarse units fit 8 digits; counting nanoseconds would overflow.
        if s >= 1_000_000 {
            let seconds = s + (atto > 0 ? 1 : 0)
            if seconds < 100_000_000 { return "\(seconds)S" }
            return "\(min((seconds + 3599) / 3600, 99_999_999))H"
        }
        let ns = max(0, s) * 1_000_000_000 + max(0, atto) / 1_000_000_000
        let units: [(Int64, Character)] = [(1, "n"), (1000, "u"), (1_000_000, "m"), (1_000_000_000, "S")]
        for (scale, unit) in units {
            // Round up so that the peer never sees a shorter deadline than ours.
            let v = (ns + scale - 1) / scale
            if v < 100_000_000 { return "\(v)\(unit)" }
        }
        return "\((s + 3599) / 3600)H"
    }

    // MARK: grpc-message

    /// Percent-encodes a status message: bytes outside printable ASCII, and `%`.
    public static func percentEncode(_ s: String) -> String {
        PercentEncoding.encode(s) { $0 >= 0x20 && $0 <= 0x7e && $0 != 0x25 }
    }

    /// Decodes a status message, leaving malformed escapes as they are (the spec asks for leniency).
    static func percentDecode(_ s: String) -> String { PercentEncoding.decode(s, lenient: true) ?? s }

    // MARK: metadata

    /// Whether a `grpc-accept-encoding` list (`identity,deflate,gzip`) names gzip.
    static func listsGzip(_ list: String) -> Bool {
        if list == "gzip,identity" || list == "identity,deflate,gzip" { return true }  // what peers send
        let gzip: [UInt8] = [0x67, 0x7a, 0x69, 0x70]
        for part in list.utf8.split(separator: UInt8(ascii: ","))
        where part.filter({ $0 != 0x20 && $0 != 0x09 }) == gzip {
            return true
        }
        return false
    }

    /// Headers the transport owns; application metadata never carries them either way.
    /// (Dispatched on length first: this runs for every header of every call.)
    static func isReserved(_ name: String) -> Bool {
        let utf8 = name.utf8
        if utf8.first == UInt8(ascii: ":") { return true }
        switch utf8.count {
        case 2: return name == "te"
        case 4: return name == "host"
        case 10: return name == "connection" || name == "user-agent"
        case 11: return name == "grpc-status"
        case 12: return name == "content-type" || name == "grpc-timeout" || name == "grpc-message"
        case 13: return name == "grpc-encoding"
        case 14: return name == "content-length"
        case 17: return name == "grpc-message-type"
        case 20: return name == "grpc-accept-encoding"
        // Written from and read into an error's details, never passed on as metadata.
        case 23: return name == "grpc-status-details-bin"
        default: return false
        }
    }

    /// Application metadata as header fields: `-bin` values base64 (unpadded), reserved keys dropped.
    static func fields(_ metadata: Metadata) -> [HeaderField] {
        var out: [HeaderField] = []
        for (key, value) in metadata where !isReserved(key) {
            switch value {
            case .text(let s): out.append((key, s))
            case .binary(let b): out.append((key, base64(b)))
            }
        }
        return out
    }

    /// Metadata from received headers: reserved keys dropped, `-bin` values split on commas and decoded.
    static func metadata(_ fields: [HeaderField]) -> Metadata {
        var m = Metadata()
        for f in fields where !isReserved(f.name) {
            if f.name.hasSuffix("-bin") {
                for part in f.value.split(separator: ",", omittingEmptySubsequences: false) {
                    if let bytes = unbase64(trimmed(part)) { m.append(lowercasedKey: f.name, .binary(bytes)) }
                }
            } else {
                m.append(lowercasedKey: f.name, .text(f.value))
            }
        }
        return m
    }

    private static func trimmed(_ s: Substring) -> String {
        String(s.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }

    /// Base64 without padding (what gRPC emits).
    static func base64(_ bytes: [UInt8]) -> String { Base64.encode(bytes, alphabet: .standard, padding: false) }

    /// Decodes padded or unpadded base64; `nil` when it is not base64.
    static func unbase64(_ s: String) -> [UInt8]? { Base64.decode(s, alphabet: .standard) }
}
