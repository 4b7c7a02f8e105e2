/// A gRPC status code (the numbers are gRPC's, so they cross the wire unchanged).
public enum StatusCode: Int, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case ok = 0
    case cancelled = 1
    case unknown = 2
    case invalidArgument = 3
    case deadlineExceeded = 4
    case notFound = 5
    case alreadyExists = 6
    case permissionDenied = 7
    case resourceExhausted = 8
    case failedPrecondition = 9
    case aborted = 10
    case outOfRange = 11
    case unimplemented = 12
    case `internal` = 13
    case unavailable = 14
    case dataLoss = 15
    case unauthenticated = 16

    public var description: String {
        switch self {
        case .ok: "OK"
        case .cancelled: "CANCELLED"
        case .unknown: "UNKNOWN"
        case .invalidArgument: "INVALID_ARGUMENT"
        case .deadlineExceeded: "DEADLINE_EXCEEDED"
        case .notFound: "NOT_FOUND"
        case .alreadyExists: "ALREADY_EXISTS"
        case .permissionDenied: "PERMISSION_DENIED"
        case .resourceExhausted: "RESOURCE_EXHAUSTED"
        case .failedPrecondition: "FAILED_PRECONDITION"
        case .aborted: "ABORTED"
        case .outOfRange: "OUT_OF_RANGE"
        case .unimplemented: "UNIMPLEMENTED"
        case .internal: "INTERNAL"
        case .unavailable: "UNAVAILABLE"
        case .dataLoss: "DATA_LOSS"
        case .unauthenticated: "UNAUTHENTICATED"
        }
    }
}

extension StatusCode {
    /// The HTTP status an error with this code answers with over HTTP (REST bodies, Connect's
    /// unary errors): grpc-gateway's table, which Connect's specification repeats.
    public var httpStatus: Int {
        switch self {
        case .ok: 200
        case .cancelled: 499
        case .unknown: 500
        case .invalidArgument: 400
        case .deadlineExceeded: 504
        case .notFound: 404
        case .alreadyExists: 409
        case .permissionDenied: 403
        case .resourceExhausted: 429
        case .failedPrecondition: 400
        case .aborted: 409
        case .outOfRange: 400
        case .unimplemented: 501
        case .internal: 500
        case .unavailable: 503
        case .dataLoss: 500
        case .unauthenticated: 401
        }
    }
}

/// The error an RPC fails with: a status code, a message for the developer, machine-readable
/// details, and trailing metadata.
public struct RPCError: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: StatusCode
    public var message: String
    /// `google.rpc` details: which fields are wrong, a reason a program can branch on, when to retry.
    /// Every protocol carries them (see ``ErrorDetail``).
    public var details: [ErrorDetail]
    public var metadata: Metadata
    /// The server had sent response headers before the call failed. Under gRFC A6 such a call is
    /// committed: the server has seen it, so it is never retried.
    public var responseStarted: Bool

    public init(
        _ code: StatusCode, _ message: String = "", details: [ErrorDetail] = [], metadata: Metadata = Metadata(),
        responseStarted: Bool = false
    ) {
        self.code = code
        self.message = message
        self.details = details
        self.metadata = metadata
        self.responseStarted = responseStarted
    }

    public var description: String { message.isEmpty ? "\(code)" : "\(code): \(message)" }

    /// The status any error ends a call with: an `RPCError` as it is, a task's cancellation as
    /// CANCELLED, anything else as UNKNOWN with its description.
    public init(_ error: any Error) {
        if let e = error as? RPCError {
            self = e
        } else if error is CancellationError {
            self.init(.cancelled, "call cancelled")
        } else {
            self.init(.unknown, "\(error)")
        }
    }
}
