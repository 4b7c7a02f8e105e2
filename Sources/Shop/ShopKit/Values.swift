import BazaarCore
import BazaarPostgres
import Foundation
import ShopAPI
import WellKnownTypes

extension Shop_V1_Money {
    public init(_ currency: String, _ minor: Int64) {
        self.init()
        currencyCode = currency
        amountMinor = minor
    }
}

extension Google_Protobuf_Timestamp {
    /// From microseconds since the Unix epoch, as the stores select them
    /// (`(extract(epoch FROM t) * 1000000)::int8`).
    public init(micros: Int64) {
        self.init()
        // Floor division without overflow (Int64.min must not trap: these come from the database).
        let (q, r) = micros.quotientAndRemainder(dividingBy: 1_000_000)
        seconds = r < 0 ? q - 1 : q
        nanos = Int32((r < 0 ? r + 1_000_000 : r) * 1000)
    }

    public static var now: Google_Protobuf_Timestamp {
        Google_Protobuf_Timestamp(micros: Int64(Date().timeIntervalSince1970 * 1_000_000))
    }
}

/// Money limits and arithmetic that cannot trap: a price, a line or a total that does not fit
/// fails the one call (OUT_OF_RANGE) instead of killing the process on an overflow.
public enum MoneyMath {
    /// The highest price of one unit, in minor units (a billion in a two-decimal currency). With
    /// the cart's caps on units and lines, every total stays far inside 64 bits.
    public static let maxUnitPriceMinor: Int64 = 100_000_000_000

    /// `quantity` units at `unitMinor` each.
    public static func line(_ quantity: Int64, _ unitMinor: Int64) throws(RPCError) -> Int64 {
        let (product, overflow) = quantity.multipliedReportingOverflow(by: unitMinor)
        if overflow {
            throw RPCError(.outOfRange, "\(quantity) × \(unitMinor) is beyond the largest amount this shop can charge")
        }
        return product
    }

    public static func sum(_ a: Int64, _ b: Int64) throws(RPCError) -> Int64 {
        let (total, overflow) = a.addingReportingOverflow(b)
        if overflow { throw RPCError(.outOfRange, "the total is beyond the largest amount this shop can charge") }
        return total
    }

    /// The sum of `quantity × unit price` over lines.
    public static func total<Lines: Sequence>(_ lines: Lines) throws(RPCError) -> Int64
    where Lines.Element == (Int64, Int64) {
        var total: Int64 = 0
        for (quantity, unit) in lines { total = try sum(total, line(quantity, unit)) }
        return total
    }
}

/// Request validation the schema cannot declare: every failure is INVALID_ARGUMENT with a
/// `BadRequest` naming the field and the rule it broke.
public enum Check {
    public static func that(
        _ condition: Bool, field: String, reason: String, _ message: @autoclosure () -> String
    ) throws(RPCError) {
        if !condition { throw RPCError.invalidArgument(field: field, message(), reason: reason) }
    }

    /// A required string of at most `max` characters, without control characters (C0, DEL,
    /// C1, and the Unicode line and paragraph separators). Only `multiline` text (a description,
    /// a message body) may hold line breaks and tabs: a newline in a name, an address or an email
    /// ends up in a header, a log line or an SMTP command.
    public static func text(
        _ value: String, _ field: String, max: Int = 200, required: Bool = true, multiline: Bool = false
    ) throws(RPCError) {
        if required, value.trimming(" \t\r\n").isEmpty {
            throw RPCError.invalidArgument(field: field, "\(field) is required", reason: "REQUIRED")
        }
        if value.count > max {
            throw RPCError.invalidArgument(
                field: field, "\(field) is longer than \(max) characters", reason: "STRING_TOO_LONG")
        }
        if FieldCheck.hasControlCharacters(value, allowingLineBreaks: multiline) {
            throw RPCError.invalidArgument(
                field: field,
                multiline
                    ? "\(field) contains control characters" : "\(field) contains control characters or line breaks",
                reason: "CONTROL_CHARACTERS")
        }
    }

    /// An email address as mail systems take it (RFC 5321's dot-atom local part, a DNS domain of
    /// at least two labels), ASCII only (international domains in their punycode form): nothing
    /// that an SMTP server, a header or a log could read as more than one address.
    public static func email(_ value: String, _ field: String = "email") throws(RPCError) {
        if !FieldCheck.isEmail(value) {
            throw RPCError.invalidArgument(field: field, "\(field) is not an email address", reason: "NOT_AN_EMAIL")
        }
    }

    /// A UUID in its canonical text form (ids of every shop entity).
    public static func id(_ value: String, _ field: String) throws(RPCError) {
        if value.isEmpty { throw RPCError.invalidArgument(field: field, "\(field) is required", reason: "REQUIRED") }
        if UUID(uuidString: value) == nil {
            throw RPCError.invalidArgument(field: field, "\(field) is not a valid id", reason: "NOT_AN_ID")
        }
    }

    public static func isID(_ value: String) -> Bool { UUID(uuidString: value) != nil }
}

/// Reads a JSON object of strings (a JSONB column selected as text) with Foundation's parser.
public func jsonStringMap(_ text: String?) -> [String: String] {
    guard let text, let data = text.data(using: .utf8),
        let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    else { return [:] }
    return object.compactMapValues { $0 as? String }
}

/// A JSON text for a map of strings, for a JSONB parameter.
public func jsonText(_ map: [String: String]) -> String {
    guard let data = try? JSONSerialization.data(withJSONObject: map, options: [.sortedKeys]) else { return "{}" }
    return String(decoding: data, as: UTF8.self)
}

/// A JSON text for a list of strings (a text[]-like JSONB value).
public func jsonText(_ list: [String]) -> String {
    guard let data = try? JSONSerialization.data(withJSONObject: list) else { return "[]" }
    return String(decoding: data, as: UTF8.self)
}

public func jsonStringList(_ text: String?) -> [String] {
    guard let text, let data = text.data(using: .utf8),
        let list = try? JSONSerialization.jsonObject(with: data) as? [Any]
    else { return [] }
    return list.compactMap { $0 as? String }
}

extension PostgresRow {
    /// A column that the query guarantees is not NULL (a schema NOT NULL or a COALESCE).
    public func text(_ column: String) -> String { self[column] ?? "" }
    public func int64(_ column: String) -> Int64 { self[column].flatMap { Int64($0) } ?? 0 }
    public func micros(_ column: String) -> Google_Protobuf_Timestamp {
        Google_Protobuf_Timestamp(micros: int64(column))
    }
}

/// SQL for a timestamptz column as microseconds since the epoch, which ``PostgresRow/micros(_:)`` reads.
public func epochMicros(_ column: String, as name: String) -> String {
    "(extract(epoch FROM \(column)) * 1000000)::int8 AS \(name)"
}
