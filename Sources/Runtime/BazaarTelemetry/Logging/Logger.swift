import Glibc
import Synchronization

/// Log levels, lowest first. The level comes from `BAZAAR_LOG_LEVEL`.
public enum LogLevel: Int, Sendable, Comparable, CaseIterable {
    case debug, info, warning, error

    public init?(name: String) {
        switch name.lowercased() {
        case "debug": self = .debug
        case "info": self = .info
        case "warn", "warning": self = .warning
        case "error": self = .error
        default: return nil
        }
    }

    public var name: String { ["debug", "info", "warning", "error"][rawValue] }
    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
}

/// A value in a log line.
public enum LogValue: Sendable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    case string(String)
    case int(Int64)
    case double(Double)
    case bool(Bool)

    public init(stringLiteral s: String) { self = .string(s) }
    public init(integerLiteral i: Int64) { self = .int(i) }
}

/// Structured logs: one JSON object per line on stdout, with an RFC 3339 UTC time, the level, the
/// service, the message and, inside a traced call, its `trace_id` and `span_id`.
///
/// Secrets stay out: a field whose name says it holds a credential (authorization, token,
/// password, secret, cookie, api key) is written as `[redacted]`, whatever the caller passed.
public final class Logger: Sendable {
    public let service: String
    public let level: LogLevel
    /// `nil`: standard output.
    private let sink: (@Sendable (String) -> Void)?

    /// - Parameter sink: where lines go; by default standard output, one `write` per line (a line
    ///   below the pipe buffer size is never interleaved with another process's).
    public init(service: String, level: LogLevel = .info, sink: (@Sendable (String) -> Void)? = nil) {
        self.service = service
        self.level = level
        self.sink = sink
    }

    public func enabled(_ l: LogLevel) -> Bool { l >= level }

    public func debug(_ message: String, _ fields: [(String, LogValue)] = []) { log(.debug, message, fields) }
    public func info(_ message: String, _ fields: [(String, LogValue)] = []) { log(.info, message, fields) }
    public func warning(_ message: String, _ fields: [(String, LogValue)] = []) { log(.warning, message, fields) }
    public func error(_ message: String, _ fields: [(String, LogValue)] = []) { log(.error, message, fields) }

    public func log(
        _ l: LogLevel, _ message: String, _ fields: [(String, LogValue)] = [],
        span: SpanContext? = Span.current?.context
    ) {
        log(l, message, fields, span: span, checkNames: true)
    }

    /// `checkNames: false` is for Bazaar's own fixed field names (the access log), which are known
    /// to hold no secret; every other caller's names are checked.
    func log(_ l: LogLevel, _ message: String, _ fields: [(String, LogValue)], span: SpanContext?, checkNames: Bool) {
        guard l >= level else { return }
        // Built as bytes: appending scalar by scalar to a String costs ten times as much.
        var line: [UInt8] = []
        line.reserveCapacity(320)
        line.append(contentsOf: #"{"time":""#.utf8)
        Self.appendTimestamp(to: &line)
        line.append(contentsOf: #"","level":""#.utf8)
        line.append(contentsOf: l.name.utf8)
        line.append(contentsOf: #"","service":"#.utf8)
        JSON.appendString(service, to: &line)
        line.append(contentsOf: #","message":"#.utf8)
        JSON.appendString(message, to: &line)
        if let span {
            line.append(contentsOf: #","trace_id":""#.utf8)
            JSON.appendHex(span.traceIDHigh, to: &line)
            JSON.appendHex(span.traceIDLow, to: &line)
            line.append(contentsOf: #"","span_id":""#.utf8)
            JSON.appendHex(span.spanID, to: &line)
            line.append(0x22)
        }
        for (key, value) in fields {
            line.append(0x2C)
            JSON.appendString(key, to: &line)
            line.append(0x3A)
            if checkNames && Redaction.isSecret(key) {
                line.append(contentsOf: #""[redacted]""#.utf8)
                continue
            }
            switch value {
            case .string(let s): JSON.appendString(s, to: &line)
            case .int(let i): line.append(contentsOf: String(i).utf8)
            case .double(let d): JSON.appendDecimal(d, to: &line)
            case .bool(let b): line.append(contentsOf: (b ? "true" : "false").utf8)
            }
        }
        line.append(contentsOf: "}\n".utf8)
        if let sink {
            sink(String(decoding: line, as: UTF8.self))
        } else {
            _ = line.withUnsafeBytes { Glibc.write(1, $0.baseAddress, $0.count) }
        }
    }

    /// RFC 3339, UTC, milliseconds: `2026-11-29T08:40:12.345Z`.
    static func timestamp() -> String {
        var out: [UInt8] = []
        appendTimestamp(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    static func appendTimestamp(to out: inout [UInt8]) {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = ts.tv_sec
        var parts = tm()
        gmtime_r(&t, &parts)
        func digits(_ v: Int, _ n: Int) {
            var d = 1
            for _ in 1..<n { d *= 10 }
            var v = v
            while d > 0 {
                out.append(UInt8(0x30 + v / d))
                v %= d
                d /= 10
            }
        }
        digits(Int(parts.tm_year) + 1900, 4)
        out.append(0x2D)
        digits(Int(parts.tm_mon) + 1, 2)
        out.append(0x2D)
        digits(Int(parts.tm_mday), 2)
        out.append(0x54)
        digits(Int(parts.tm_hour), 2)
        out.append(0x3A)
        digits(Int(parts.tm_min), 2)
        out.append(0x3A)
        digits(Int(parts.tm_sec), 2)
        out.append(0x2E)
        digits(Int(ts.tv_nsec / 1_000_000), 3)
        out.append(0x5A)
    }
}

/// Which names hold secrets, for logs.
public enum Redaction {
    static let markers: [[UInt8]] = [
        "authorization", "token", "password", "passwd", "secret", "cookie", "api-key", "api_key",
        "apikey",
    ].map { Array($0.utf8) }

    /// Whether the name contains a marker, ASCII case-insensitively. A plain byte search: names
    /// are short, and this runs for every field of every line.
    public static func isSecret(_ name: String) -> Bool {
        var n = Array(name.utf8)
        for i in n.indices where n[i] >= 0x41 && n[i] <= 0x5A { n[i] += 0x20 }
        for m in markers where m.count <= n.count {
            var i = 0
            while i + m.count <= n.count {
                if n[i] == m[0] && n[i..<(i + m.count)].elementsEqual(m) { return true }
                i += 1
            }
        }
        return false
    }
}

/// Writing JSON strings (RFC 8259 escaping). Writing only: nothing here parses JSON.
enum JSON {
    static func appendString(_ s: String, to out: inout [UInt8]) {
        out.append(0x22)
        for b in s.utf8 {
            switch b {
            case 0x22: out.append(contentsOf: [0x5C, 0x22])
            case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: out.append(contentsOf: [0x5C, 0x6E])
            case 0x0D: out.append(contentsOf: [0x5C, 0x72])
            case 0x09: out.append(contentsOf: [0x5C, 0x74])
            case 0..<0x20:
                out.append(contentsOf: [0x5C, 0x75, 0x30, 0x30])
                out.append(hexDigit(b >> 4))
                out.append(hexDigit(b & 0xF))
            default:
                // UTF-8 passes through unchanged (JSON text is UTF-8).
                out.append(b)
            }
        }
        out.append(0x22)
    }

    /// A number with at most three decimals (`12.5`, `0.042`), without `Double`'s costly
    /// shortest-representation printing; `null` for NaN and infinities.
    static func appendDecimal(_ d: Double, to out: inout [UInt8]) {
        guard d.isFinite, abs(d) < 1e15 else { return out.append(contentsOf: "null".utf8) }
        var thousandths = Int64((abs(d) * 1000).rounded())
        if d < 0 && thousandths > 0 { out.append(0x2D) }
        let whole = thousandths / 1000
        thousandths %= 1000
        out.append(contentsOf: String(whole).utf8)
        if thousandths > 0 {
            out.append(0x2E)
            var digits = [
                UInt8(0x30 + thousandths / 100), UInt8(0x30 + thousandths / 10 % 10), UInt8(0x30 + thousandths % 10),
            ]
            while digits.last == 0x30 { digits.removeLast() }
            out.append(contentsOf: digits)
        }
    }

    static func appendHex(_ v: UInt64, to out: inout [UInt8]) {
        for shift in stride(from: 60, through: 0, by: -4) {
            out.append(hexDigit(UInt8(truncatingIfNeeded: v >> UInt64(shift)) & 0xF))
        }
    }

    @inline(__always) static func hexDigit(_ d: UInt8) -> UInt8 { d < 10 ? 0x30 + d : 0x61 + d - 10 }
}
