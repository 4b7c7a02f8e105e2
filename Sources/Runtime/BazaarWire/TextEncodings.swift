/// Base64 (RFC 4648), the one implementation for JSON `bytes`, gRPC `-bin` metadata, gRPC-Web
/// text and access tokens.
public enum Base64 {
    public enum Alphabet: Sendable {
        /// `+` and `/`.
        case standard
        /// `-` and `_` (base64url).
        case url
        /// Decoding only: either, even mixed (proto3 JSON reads both).
        case either
    }

    private static let standardDigits = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let urlDigits = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    /// `bytes` as base64, padded with `=` unless `padding` is false.
    public static func encode(_ bytes: some Collection<UInt8>, alphabet: Alphabet = .standard, padding: Bool = true)
        -> String
    {
        let digits = alphabet == .url ? urlDigits : standardDigits
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var it = bytes.makeIterator()
        while let a = it.next() {
            let b = it.next()
            let c = b == nil ? nil : it.next()
            out.append(digits[Int(a >> 2)])
            out.append(digits[Int((a & 0x03) << 4 | (b ?? 0) >> 4)])
            if let b {
                out.append(digits[Int((b & 0x0F) << 2 | (c ?? 0) >> 6)])
            } else if padding {
                out.append(UInt8(ascii: "="))
            }
            if let c {
                out.append(digits[Int(c & 0x3F)])
            } else if padding {
                out.append(UInt8(ascii: "="))
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes of base64 text in `alphabet`, padded or not; `nil` for anything else (other
    /// characters, whitespace, padding in the middle, a length no encoder makes).
    public static func decode(_ text: some StringProtocol, alphabet: Alphabet = .either) -> [UInt8]? {
        var digits: [UInt8] = []
        digits.reserveCapacity(text.utf8.count)
        var padding = 0
        for ch in text.utf8 {
            if ch == UInt8(ascii: "=") {
                padding += 1
                continue
            }
            guard padding == 0 else { return nil }  // data after padding
            let v: UInt8
            switch ch {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = ch - 65
            case UInt8(ascii: "a")...UInt8(ascii: "z"): v = ch - 71
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = ch + 4
            case UInt8(ascii: "+") where alphabet != .url, UInt8(ascii: "-") where alphabet != .standard: v = 62
            case UInt8(ascii: "/") where alphabet != .url, UInt8(ascii: "_") where alphabet != .standard: v = 63
            default: return nil
            }
            digits.append(v)
        }
        let rest = digits.count % 4
        guard rest != 1, padding <= 2, padding == 0 || rest != 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(digits.count / 4 * 3 + 2)
        var i = 0
        while i + 4 <= digits.count {
            out.append(digits[i] << 2 | digits[i + 1] >> 4)
            out.append(digits[i + 1] << 4 | digits[i + 2] >> 2)
            out.append(digits[i + 2] << 6 | digits[i + 3])
            i += 4
        }
        if rest >= 2 { out.append(digits[i] << 2 | digits[i + 1] >> 4) }
        if rest == 3 { out.append(digits[i + 1] << 4 | digits[i + 2] >> 2) }
        return out
    }
}

/// Percent-encoding (RFC 3986), the one encoder and decoder for request paths, query strings,
/// form bodies and gRPC status messages.
public enum PercentEncoding {
    /// `text` with `%XX` escapes decoded. Strict (paths, queries): `nil` for a malformed escape or
    /// bytes that are not UTF-8. Lenient (`grpc-message`, whose spec asks for it): malformed
    /// escapes stay as they are and invalid UTF-8 becomes U+FFFD.
    public static func decode(_ text: String, lenient: Bool = false) -> String? {
        // (On the bytes: String.contains(String) goes through Foundation's search, which showed up
        // in the gateway's profile.)
        guard text.utf8.contains(UInt8(ascii: "%")) else { return text }
        guard let out = unescape(Array(text.utf8), lenient: lenient) else { return nil }
        return lenient ? String(decoding: out, as: UTF8.self) : String(validating: out, as: UTF8.self)
    }

    /// `bytes` with `%XX` escapes decoded (and `+` as a space when `plusIsSpace`, as HTML forms
    /// encode it). A malformed escape is `nil`, or, when `lenient`, kept as it is.
    public static func unescape(_ bytes: [UInt8], lenient: Bool = false, plusIsSpace: Bool = false) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "%") {
                if i + 2 < bytes.count + 0, let hi = hex(bytes[i + 1]), let lo = hex(bytes[i + 2]) {
                    out.append(hi << 4 | lo)
                    i += 3
                    continue
                }
                if !lenient { return nil }
            }
            out.append(plusIsSpace && bytes[i] == UInt8(ascii: "+") ? UInt8(ascii: " ") : bytes[i])
            i += 1
        }
        return out
    }

    static func hex(_ b: UInt8) -> UInt8? {
        switch b {
        case 48...57: b - 48
        case 65...70: b - 55
        case 97...102: b - 87
        default: nil
        }
    }

    /// `text` with every byte that `keep` refuses written as `%XX` (uppercase hex digits).
    public static func encode(_ text: String, keeping keep: (UInt8) -> Bool) -> String {
        var out = ""
        out.unicodeScalars.reserveCapacity(text.utf8.count)
        for b in text.utf8 {
            if keep(b) {
                out.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                out.unicodeScalars.append("%")
                out.unicodeScalars.append(Unicode.Scalar(hexDigits[Int(b >> 4)]))
                out.unicodeScalars.append(Unicode.Scalar(hexDigits[Int(b & 15)]))
            }
        }
        return out
    }

    /// RFC 3986's unreserved characters: what a path segment or a query component keeps as is.
    public static func isUnreserved(_ b: UInt8) -> Bool {
        switch b {
        case 48...57, 65...90, 97...122, UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            true
        default: false
        }
    }

    private static let hexDigits = Array("0123456789ABCDEF".utf8)
}

/// A short content hash (FNV-1a, 64 bits) as 16 hex digits: a cache key or validator (asset
/// names, `ETag`s), never a security measure.
public enum ContentHash {
    public static func hex(_ bytes: some Sequence<UInt8>) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
