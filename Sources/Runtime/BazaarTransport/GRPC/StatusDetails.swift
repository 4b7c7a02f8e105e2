import BazaarCore
import BazaarWire
import RPCStatusProtos
import WellKnownTypes

/// The wire form of an ``RPCError``'s details: a `google.rpc.Status` in the
/// `grpc-status-details-bin` trailer (gRPC's richer error model), and each detail as the
/// `google.protobuf.Any` it is packed in (what Connect's error JSON carries).
///
/// The transport fills ``RPCError/details`` from the trailer on the client side and writes the
/// trailer from them on the server side; the trailer itself (a reserved `grpc-` name) never shows
/// in an error's metadata.
public enum StatusDetails {
    /// The trailer's name.
    public static let trailer = "grpc-status-details-bin"
    /// The most details bytes a client decodes; beyond it the details are dropped, the status kept.
    static let maxBytes = 64 * 1024
    /// The most details bytes a server sends: a header block over the peer's limit would lose the
    /// whole status, so larger details are left out (the code and message still go).
    public static let maxSentBytes = 16 * 1024

    /// The `google.rpc.Status` of an error, or nil when it has no details (the trailer is then left out).
    public static func encode(_ error: RPCError) -> [UInt8]? {
        guard !error.details.isEmpty else { return nil }
        let status = Google_Rpc_Status(
            code: Int32(error.code.rawValue), message: error.message,
            details: error.details.compactMap { detail in
                pack(detail).map { Google_Protobuf_Any(typeURL: detail.typeURL, value: $0) }
            })
        guard let bytes = try? status.serializedBytes(), bytes.count <= maxSentBytes else { return nil }
        return bytes
    }

    /// The details of a `google.rpc.Status`; nil when the bytes are not one (the caller then keeps
    /// the status without details, as gRPC does with an unreadable trailer).
    public static func decode(_ bytes: [UInt8]) -> [ErrorDetail]? {
        guard bytes.count <= maxBytes, let status = try? Google_Rpc_Status(serializedBytes: bytes) else { return nil }
        return status.details.map { unpack(typeURL: $0.typeURL, value: $0.value) }
    }

    /// The details trailer of an error (base64, as gRPC sends binary values); nil without details.
    /// `grpc-` names are reserved, so the trailer never passes through an error's metadata.
    static func field(_ error: RPCError) -> HeaderField? {
        encode(error).map { (trailer, GRPCHeaders.base64($0)) }
    }

    /// The details in received trailers, if they carry a readable details trailer.
    static func details(in fields: [HeaderField]) -> [ErrorDetail]? {
        guard let f = fields.first(where: { $0.name == trailer }), let bytes = GRPCHeaders.unbase64(f.value)
        else { return nil }
        return decode(bytes)
    }

    /// A detail's encoded message (the `value` of its `Any`).
    public static func pack(_ detail: ErrorDetail) -> [UInt8]? {
        switch detail {
        case .badRequest(let violations):
            return try? Google_Rpc_BadRequest(
                fieldViolations: violations.map {
                    Google_Rpc_BadRequest.FieldViolation(
                        field: $0.field, description_p: $0.description, reason: $0.reason)
                }
            ).serializedBytes()
        case .errorInfo(let info):
            return try? Google_Rpc_ErrorInfo(reason: info.reason, domain: info.domain, metadata: info.metadata)
                .serializedBytes()
        case .retryInfo(let delay):
            let (seconds, attoseconds) = delay.components
            return try? Google_Rpc_RetryInfo(
                retryDelay: Google_Protobuf_Duration(seconds: seconds, nanos: Int32(attoseconds / 1_000_000_000))
            ).serializedBytes()
        case .resourceInfo(let info):
            return try? Google_Rpc_ResourceInfo(
                resourceType: info.type, resourceName: info.name, owner: info.owner, description_p: info.description
            ).serializedBytes()
        case .preconditionFailure(let violations):
            return try? Google_Rpc_PreconditionFailure(
                violations: violations.map {
                    Google_Rpc_PreconditionFailure.Violation(
                        type: $0.type, subject: $0.subject, description_p: $0.description)
                }
            ).serializedBytes()
        case .other(_, let value):
            return value
        }
    }

    /// A detail from its `Any`: a modelled type when the URL names one and the message decodes,
    /// otherwise kept as it came.
    public static func unpack(typeURL: String, value: [UInt8]) -> ErrorDetail {
        let name = typeURL.split(separator: "/").last.map(String.init) ?? typeURL
        switch name {
        case "google.rpc.BadRequest":
            if let m = try? Google_Rpc_BadRequest(serializedBytes: value) {
                return .badRequest(
                    m.fieldViolations.map {
                        FieldViolation(field: $0.field, description: $0.description_p, reason: $0.reason)
                    })
            }
        case "google.rpc.ErrorInfo":
            if let m = try? Google_Rpc_ErrorInfo(serializedBytes: value) {
                return .errorInfo(ErrorInfo(reason: m.reason, domain: m.domain, metadata: m.metadata))
            }
        case "google.rpc.RetryInfo":
            // Only a Duration within protobuf's range: a larger one would not fit `Duration`'s
            // components when the detail is passed on.
            if let m = try? Google_Rpc_RetryInfo(serializedBytes: value) {
                let d = m.retryDelay ?? Google_Protobuf_Duration()
                if abs(d.seconds) <= 315_576_000_000, abs(d.nanos) < 1_000_000_000 {
                    return .retryInfo(delay: .seconds(d.seconds) + .nanoseconds(Int64(d.nanos)))
                }
            }
        case "google.rpc.ResourceInfo":
            if let m = try? Google_Rpc_ResourceInfo(serializedBytes: value) {
                return .resourceInfo(
                    ResourceInfo(
                        type: m.resourceType, name: m.resourceName, owner: m.owner, description: m.description_p))
            }
        case "google.rpc.PreconditionFailure":
            if let m = try? Google_Rpc_PreconditionFailure(serializedBytes: value) {
                return .preconditionFailure(
                    m.violations.map {
                        PreconditionViolation(type: $0.type, subject: $0.subject, description: $0.description_p)
                    })
            }
        default:
            break
        }
        return .other(typeURL: typeURL, value: value)
    }
}
