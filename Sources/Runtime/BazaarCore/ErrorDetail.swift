/// A machine-readable detail of a failed call: one of `google.rpc`'s standard error details.
///
/// Details travel with the ``RPCError`` they belong to and reach every kind of client the same
/// way: gRPC clients in the `grpc-status-details-bin` trailer (a `google.rpc.Status`), Connect
/// clients in the error JSON's `details`, REST clients in the `google.rpc.Status` body, and
/// Server-Sent Events or NDJSON clients in the stream's error. A detail of a type this runtime
/// does not model crosses the mesh unchanged as ``other(typeURL:value:)``.
public enum ErrorDetail: Sendable, Hashable {
    /// Which fields of the request are invalid (`google.rpc.BadRequest`).
    case badRequest([FieldViolation])
    /// A stable reason within a domain, with facts about this occurrence (`google.rpc.ErrorInfo`).
    case errorInfo(ErrorInfo)
    /// When the caller may try again (`google.rpc.RetryInfo`).
    case retryInfo(delay: Duration)
    /// The resource the call was about (`google.rpc.ResourceInfo`).
    case resourceInfo(ResourceInfo)
    /// Preconditions of the request that did not hold (`google.rpc.PreconditionFailure`).
    case preconditionFailure([PreconditionViolation])
    /// Any other detail, as the `google.protobuf.Any` it came in: its type URL and encoded message.
    case other(typeURL: String, value: [UInt8])

    /// The protobuf name of the detail's message, as Connect names it (`google.rpc.BadRequest`).
    public var typeName: String {
        switch self {
        case .badRequest: "google.rpc.BadRequest"
        case .errorInfo: "google.rpc.ErrorInfo"
        case .retryInfo: "google.rpc.RetryInfo"
        case .resourceInfo: "google.rpc.ResourceInfo"
        case .preconditionFailure: "google.rpc.PreconditionFailure"
        case .other(let url, _): url.split(separator: "/").last.map(String.init) ?? url
        }
    }

    /// The type URL a `google.protobuf.Any` carries for this detail.
    public var typeURL: String {
        if case .other(let url, _) = self { return url }
        return "type.googleapis.com/" + typeName
    }
}

/// One invalid field of a request (`google.rpc.BadRequest.FieldViolation`).
public struct FieldViolation: Sendable, Hashable {
    /// The field's path in the request, in proto field names: `address.postal_code`, `items[2].quantity`.
    public var field: String
    /// What is wrong with it, for a developer.
    public var description: String
    /// The rule the value broke, in UPPER_SNAKE_CASE (`STRING_TOO_SHORT`), when there is one.
    public var reason: String

    public init(field: String, description: String, reason: String = "") {
        self.field = field
        self.description = description
        self.reason = reason
    }
}

/// Why a call failed, as a reason that programs can branch on (`google.rpc.ErrorInfo`).
public struct ErrorInfo: Sendable, Hashable {
    /// A constant in UPPER_SNAKE_CASE naming the cause, unique within `domain` (`OUT_OF_STOCK`).
    public var reason: String
    /// Who defines the reason, usually the service (`catalog.bazaar.shop`).
    public var domain: String
    /// Facts about this occurrence (`product_id`, `available`).
    public var metadata: [String: String]

    public init(reason: String, domain: String, metadata: [String: String] = [:]) {
        self.reason = reason
        self.domain = domain
        self.metadata = metadata
    }
}

/// The resource a failed call was about (`google.rpc.ResourceInfo`).
public struct ResourceInfo: Sendable, Hashable {
    /// The kind of resource (`shop.v1.Product`).
    public var type: String
    /// Its name or id.
    public var name: String
    /// Its owner, when that matters.
    public var owner: String
    /// What went wrong with it.
    public var description: String

    public init(type: String, name: String, owner: String = "", description: String = "") {
        self.type = type
        self.name = name
        self.owner = owner
        self.description = description
    }
}

/// One precondition that did not hold (`google.rpc.PreconditionFailure.Violation`).
public struct PreconditionViolation: Sendable, Hashable {
    /// A service-defined kind of precondition (`STOCK`).
    public var type: String
    /// What the precondition is about (`product/42`).
    public var subject: String
    /// What is wrong and how to fix it.
    public var description: String

    public init(type: String, subject: String, description: String) {
        self.type = type
        self.subject = subject
        self.description = description
    }
}

extension RPCError {
    /// INVALID_ARGUMENT with a `BadRequest` listing every violation; the message repeats the first
    /// descriptions (each a sentence that names its field), so that a client which reads only the
    /// message still learns what to fix.
    public static func invalidArgument(_ violations: [FieldViolation]) -> RPCError {
        let shown = violations.prefix(3).map(\.description).joined(separator: "; ")
        let more = violations.count > 3 ? " (and \(violations.count - 3) more)" : ""
        // A hostile request can break a rule per element: the details name the first ones only.
        let kept = Array(violations.prefix(FieldCheck.maxViolations))
        return RPCError(.invalidArgument, shown + more, details: [.badRequest(kept)])
    }

    /// INVALID_ARGUMENT for one field; `description` is a sentence naming it ("email is required").
    public static func invalidArgument(field: String, _ description: String, reason: String = "") -> RPCError {
        invalidArgument([FieldViolation(field: field, description: description, reason: reason)])
    }

    /// The field violations among the details, in order.
    public var fieldViolations: [FieldViolation] {
        details.flatMap { detail -> [FieldViolation] in
            if case .badRequest(let v) = detail { return v }
            return []
        }
    }

    /// The first `ErrorInfo` among the details.
    public var errorInfo: ErrorInfo? {
        for case .errorInfo(let info) in details { return info }
        return nil
    }
}
