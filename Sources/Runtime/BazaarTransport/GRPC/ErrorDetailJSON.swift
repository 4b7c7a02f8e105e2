import BazaarCore
import BazaarWire

/// An error's `google.rpc` details as JSON: the same details in the two shapes HTTP clients read.
///
/// REST bodies and SSE/NDJSON stream errors are a `google.rpc.Status` in proto3 JSON, each detail
/// an `Any` with its `@type` beside the message's fields. Connect's error JSON lists each detail as
/// `{"type", "value"}` with the encoded message in base64, plus the fields in `debug` for people.
public enum ErrorDetailJSON {
    /// A `google.rpc.Status` in proto3 JSON: code, message and details.
    public static func status(code: StatusCode, message: String, details: [ErrorDetail]) -> JSONValue {
        .object([
            ("code", .integer(Int64(code.rawValue))), ("message", .string(message)),
            ("details", .array(details.map(rest))),
        ])
    }

    /// One detail as proto3 JSON's `Any`. A type this edge does not model keeps its encoded
    /// message in `value`, since its fields cannot be named without its schema.
    public static func rest(_ detail: ErrorDetail) -> JSONValue {
        let type: (String, JSONValue) = ("@type", .string(detail.typeURL))
        if case .other(_, let value) = detail {
            return .object([type, ("value", .string(Base64.encode(value)))])
        }
        return .object([type] + fields(detail))
    }

    /// One detail as Connect's error JSON names it.
    public static func connect(_ detail: ErrorDetail) -> JSONValue? {
        guard let value = StatusDetails.pack(detail) else { return nil }
        var out: [(String, JSONValue)] = [
            ("type", .string(detail.typeName)), ("value", .string(Base64.encode(value, padding: false))),
        ]
        if case .other = detail {} else { out.append(("debug", .object(fields(detail)))) }
        return .object(out)
    }

    /// The detail's message fields in proto3 JSON (lowerCamelCase names, defaults left out).
    public static func fields(_ detail: ErrorDetail) -> [(String, JSONValue)] {
        func nonEmpty(_ pairs: [(String, String)]) -> [(String, JSONValue)] {
            pairs.filter { !$0.1.isEmpty }.map { ($0.0, .string($0.1)) }
        }
        switch detail {
        case .badRequest(let violations):
            return [
                (
                    "fieldViolations",
                    .array(
                        violations.map {
                            .object(
                                nonEmpty([("field", $0.field), ("description", $0.description), ("reason", $0.reason)]))
                        })
                )
            ]
        case .errorInfo(let info):
            var out = nonEmpty([("reason", info.reason), ("domain", info.domain)])
            if !info.metadata.isEmpty {
                out.append(
                    ("metadata", .object(info.metadata.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })))
            }
            return out
        case .retryInfo(let delay):
            let (seconds, attoseconds) = delay.components
            let text =
                (try? ProtoJSON.durationText(seconds: seconds, nanos: Int32(attoseconds / 1_000_000_000))) ?? "0s"
            return [("retryDelay", .string(text))]
        case .resourceInfo(let info):
            return nonEmpty([
                ("resourceType", info.type), ("resourceName", info.name), ("owner", info.owner),
                ("description", info.description),
            ])
        case .preconditionFailure(let violations):
            return [
                (
                    "violations",
                    .array(
                        violations.map {
                            .object(
                                nonEmpty([("type", $0.type), ("subject", $0.subject), ("description", $0.description)]))
                        })
                )
            ]
        case .other:
            return []
        }
    }
}
