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
    private let sink: @Sendable (String) -> Void

    /// - Parameter sink: where lines go; by default standard output, one `write` per line (a line
    ///   below the pipe buffer size is never interleaved with another process's).
    public init(service: String, level: LogLevel = .info, sink: (@Sendable (String) -> Void)? = nil) {
        self.service = service
        self.level = level
        self.sink = sink ?? { line in
            let bytes = Array(line.utf8)
            _ = bytes.withUnsafeBytes { Glibc.write(1, $0.baseAddress, $0.count) }
        }
    }

    public func enabled(_ l: LogLevel) -> Bool { l >= level }

    public func debug(_ message: String, _ fields: [(String, LogValue)] = []) { log(.debug, message, fields) }
    public func info(_ message: String, _ fields: [(String, LogValue)] = []) { log(.info, message, fields) }
    public func warning(_ message: String, _ fields: [(String, LogValue)] = []) { log(.warning, message, fields) }
    public func error(_ message: String, _ fields: [(String, LogValue)] = []) { log(.error, message, fields) }

    public func log(_ l: LogLevel, _ message: String, _ fields: [(String, LogValue)] = [], span: SpanContext? = Span.current?.context) {
        guard l >= level else { return }
        var line = "{\"time\":\"\(Self.timestamp())\",\"level\":\"\(l.name)\",\"service\":"
        JSON.appendString(service, to: &line)
        line += ",\"message\":"
        JSON.appendString(message, to: &line)
        if let span {
            line += ",\"trace_id\":\"\(span.traceIDHex)\",\"span_id\":\"\(span.spanIDHex)\""
        }
        for (key, value) in fields {
            line += ","
            JSON.appendString(key, to: &line)
            line += ":"
            if Redaction.isSecret(key) {
                line += "\"[redacted]\""
                continue
            }
            switch value {
            case .string(let s): JSON.appendString(s, to: &line)
            case .int(let i): line += String(i)
            case .double(let d): line += d.isFinite ? "\(d)" : "null"
            case .bool(let b): line += b ? "true" : "false"
            }
        }
        line += "}\n"
        sink(line)
    }

    /// RFC 3339, UTC, milliseconds: `2026-11-29T08:40:12.345Z`.
    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = ts.tv_sec
        var parts = tm()
        gmtime_r(&t, &parts)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let ms = Int(ts.tv_nsec / 1_000_000)
        let msText = ms < 10 ? "00\(ms)" : ms < 100 ? "0\(ms)" : "\(ms)"
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(msText)Z"
    }
}

/// Which names hold secrets, for logs.
public enum Redaction {
    static let markers = ["authorization", "token", "password", "passwd", "secret", "cookie", "api-key", "api_key", "apikey"]

    public static func isSecret(_ name: String) -> Bool {
        let n = name.lowercased()
        return markers.contains { n.contains($0) }
    }
}

/// Writing JSON strings (RFC 8259 escaping). Writing only: nothing here parses JSON.
enum JSON {
    static func appendString(_ s: String, to out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x2028 || u.value == 0x2029 {
                    let hex = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }
}
