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
        seconds = micros >= 0 ? micros / 1_000_000 : (micros - 999_999) / 1_000_000
        nanos = Int32((micros - seconds * 1_000_000) * 1000)
    }

    public static var now: Google_Protobuf_Timestamp {
        Google_Protobuf_Timestamp(micros: Int64(Date().timeIntervalSince1970 * 1_000_000))
    }
}

/// Request validation: every failure is INVALID_ARGUMENT naming the field.
public enum Check {
    public static func that(_ condition: Bool, _ message: @autoclosure () -> String) throws(RPCError) {
        if !condition { throw RPCError(.invalidArgument, message()) }
    }

    /// A required string of at most `max` characters, without control characters.
    public static func text(_ value: String, _ field: String, max: Int = 200, required: Bool = true) throws(RPCError) {
        if required, value.trimming(" \t\r\n").isEmpty { throw RPCError(.invalidArgument, "\(field) is required") }
        if value.count > max { throw RPCError(.invalidArgument, "\(field) is longer than \(max) characters") }
        if value.unicodeScalars.contains(where: { $0.value < 0x20 && $0 != "\n" && $0 != "\t" || $0.value == 0x7F }) {
            throw RPCError(.invalidArgument, "\(field) contains control characters")
        }
    }

    /// A UUID in its canonical text form (ids of every shop entity).
    public static func id(_ value: String, _ field: String) throws(RPCError) {
        if value.isEmpty { throw RPCError(.invalidArgument, "\(field) is required") }
        if UUID(uuidString: value) == nil { throw RPCError(.invalidArgument, "\(field) is not a valid id") }
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
    guard let text, let data = text.data(using: .utf8), let list = try? JSONSerialization.jsonObject(with: data) as? [Any] else { return [] }
    return list.compactMap { $0 as? String }
}

extension PostgresRow {
    /// A column that the query guarantees is not NULL (a schema NOT NULL or a COALESCE).
    public func text(_ column: String) -> String { self[column] ?? "" }
    public func int64(_ column: String) -> Int64 { self[column].flatMap { Int64($0) } ?? 0 }
    public func micros(_ column: String) -> Google_Protobuf_Timestamp { Google_Protobuf_Timestamp(micros: int64(column)) }
}

/// SQL for a timestamptz column as microseconds since the epoch, which ``PostgresRow/micros(_:)`` reads.
public func epochMicros(_ column: String, as name: String) -> String {
    "(extract(epoch FROM \(column)) * 1000000)::int8 AS \(name)"
}
