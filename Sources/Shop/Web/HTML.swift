import BazaarWire

/// Markup that is safe to send: escaping by construction.
///
/// The only way to put text into an `HTML` value is string interpolation, and every interpolated
/// value that is not itself `HTML` is escaped (`&`, `<`, `>`, `"`, `'`), which makes it safe both
/// as element content and inside a quoted attribute value. The literal parts of a template are
/// markup written in this repository; data never becomes markup by concatenation.
///
/// ```swift
/// let row: HTML = "<li><a href=\"\(url: "/products/\(id)")\">\(product.name)</a></li>"
/// ```
///
/// Values that would be unsafe even when escaped have their own interpolations: `url:` refuses
/// anything but same-site paths and http(s) addresses (no `javascript:`), and markup from a
/// list joins `HTML` pieces without escaping them again.
public struct HTML: Sendable, Equatable, ExpressibleByStringInterpolation, CustomStringConvertible {
    /// The escaped text, ready to write.
    public private(set) var text: String

    public init(stringLiteral value: StaticString) {
        text = value.description
    }

    public init(stringInterpolation: Interpolation) {
        text = stringInterpolation.text
    }

    /// Nothing: for an optional part of a page that is absent.
    public static let empty = HTML(trusted: "")

    /// Markup this repository wrote (a template constant). Never call it with data.
    init(trusted: String) { text = trusted }

    public var description: String { text }

    /// Pieces one after the other.
    public static func + (lhs: HTML, rhs: HTML) -> HTML { HTML(trusted: lhs.text + rhs.text) }

    /// The text with the five characters that can change the meaning of markup escaped.
    public static func escape(_ s: some StringProtocol) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for ch in s.unicodeScalars {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            // Controls other than tab and newlines are not allowed in HTML text.
            case "\u{0}"..."\u{8}", "\u{B}", "\u{C}", "\u{E}"..."\u{1F}", "\u{7F}": out += "\u{FFFD}"
            default: out.unicodeScalars.append(ch)
            }
        }
        return out
    }

    /// Whether `s` may go into an `href`/`src`/`action`: a path on this site, or an http(s)
    /// address. Everything else (`javascript:`, `data:`, `//evil.example`, backslashes that
    /// browsers read as slashes) is refused.
    public static func isSafeURL(_ s: String) -> Bool {
        // Browsers drop tabs and line breaks inside addresses ("/\t/evil" is "//evil"): none allowed.
        if s.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F }) { return false }
        if s.hasPrefix("/") { return !s.hasPrefix("//") && !s.contains("\\") }
        let lower = s.lowercased()
        return (lower.hasPrefix("https://") || lower.hasPrefix("http://")) && !s.contains("\\")
    }

    public struct Interpolation: StringInterpolationProtocol {
        var text = ""

        public init(literalCapacity: Int, interpolationCount: Int) {
            text.reserveCapacity(literalCapacity + interpolationCount * 16)
        }

        public mutating func appendLiteral(_ literal: StaticString) {
            text += literal.description
        }

        /// Markup: already safe.
        public mutating func appendInterpolation(_ html: HTML) {
            text += html.text
        }

        /// Markup pieces, in order.
        public mutating func appendInterpolation(_ parts: [HTML]) {
            for p in parts { text += p.text }
        }

        /// Text: escaped.
        public mutating func appendInterpolation(_ value: some StringProtocol) {
            text += HTML.escape(value)
        }

        /// Numbers and other plain values: their description, escaped.
        public mutating func appendInterpolation(_ value: some BinaryInteger) {
            text += String(value)
        }

        /// An absent value is nothing.
        public mutating func appendInterpolation(_ value: String?) {
            if let value { text += HTML.escape(value) }
        }

        /// A link or resource address: escaped, and `#` instead when it is not safe to follow.
        public mutating func appendInterpolation(url: String) {
            text += HTML.isSafeURL(url) ? HTML.escape(url) : "#"
        }
    }
}

/// Escaping for the pieces of a URL built from data (`/search?q=\(...)`).
public enum URLText {
    /// Percent-encodes everything but the unreserved characters (RFC 3986).
    public static func component(_ s: String) -> String {
        PercentEncoding.encode(s, keeping: PercentEncoding.isUnreserved)
    }

    /// A query string from pairs, each side encoded; pairs with an empty value are left out.
    public static func query(_ pairs: [(String, String)]) -> String {
        let kept = pairs.filter { !$0.1.isEmpty }
        if kept.isEmpty { return "" }
        return "?" + kept.map { component($0.0) + "=" + component($0.1) }.joined(separator: "&")
    }
}
