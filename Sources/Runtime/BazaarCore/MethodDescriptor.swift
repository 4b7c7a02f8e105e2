import BazaarWire

/// How many messages flow each way.
public enum RPCKind: String, Sendable, Hashable {
    case unary
    case clientStreaming
    case serverStreaming
    case bidirectionalStreaming
}

/// One HTTP binding of a method (`google.api.http`); additional bindings are listed as their own rules.
public struct HTTPRule: Sendable, Hashable {
    /// `GET`, `POST`, ... or a custom method name.
    public var method: String
    /// Path template, e.g. `/v1/products/{id}`.
    public var path: String
    /// `*` (whole request), a field name, or empty (no body).
    public var body: String
    /// Response field that becomes the HTTP body; empty for the whole response.
    public var responseBody: String

    public init(method: String, path: String, body: String = "", responseBody: String = "") {
        self.method = method
        self.path = path
        self.body = body
        self.responseBody = responseBody
    }
}

/// Who may call a method (Bazaar's `auth` option, or the service's `default_auth`).
public struct AuthRequirement: Sendable, Hashable {
    public enum Level: String, Sendable, Hashable {
        /// Anyone.
        case `public`
        /// A signed-in user.
        case authenticated
        /// Only mesh services named in `callers`; never through the gateway.
        case `internal`
    }

    public var level: Level
    public var roles: [String]
    public var scopes: [String]
    public var callers: [String]

    public init(level: Level, roles: [String] = [], scopes: [String] = [], callers: [String] = []) {
        self.level = level
        self.roles = roles
        self.scopes = scopes
        self.callers = callers
    }
}

/// Whether a method may be retried (protobuf's `idempotency_level`).
public enum Idempotency: String, Sendable, Hashable {
    case unknown
    /// Reads: always safe to retry.
    case noSideEffects
    /// Same effect however often it runs: safe to retry.
    case idempotent

    public var isRetrySafe: Bool { self != .unknown }
}

/// The IDL options of a method, resolved at generation time (service defaults applied).
public struct MethodOptions: Sendable, Hashable {
    public var http: [HTTPRule]
    public var auth: AuthRequirement
    /// Deadline when the caller sends none.
    public var defaultDeadline: Duration?
    public var idempotency: Idempotency
    /// HTTP status of success at the gateway.
    public var successStatus: Int

    public init(
        http: [HTTPRule] = [], auth: AuthRequirement = AuthRequirement(level: .authenticated),
        defaultDeadline: Duration? = nil, idempotency: Idempotency = .unknown, successStatus: Int = 200
    ) {
        self.http = http
        self.auth = auth
        self.defaultDeadline = defaultDeadline
        self.idempotency = idempotency
        self.successStatus = successStatus
    }
}

/// A method of a service: what the router, the gateway and the clients need to know about it.
///
/// A class, because every call carries it (in its context, its head, its handler): a reference
/// costs one retain where a struct of strings and arrays costs a dozen.
public final class MethodDescriptor: Sendable, Hashable, CustomStringConvertible {
    /// Fully-qualified service name, e.g. `shop.v1.CatalogService`.
    public let service: String
    /// Method name, e.g. `GetProduct`.
    public let method: String
    public let kind: RPCKind
    /// Fully-qualified request and response message names.
    public let inputType: String
    public let outputType: String
    public let options: MethodOptions
    /// The HTTP/2 `:path` of the method: `/shop.v1.CatalogService/GetProduct`.
    public let path: String

    public init(
        service: String, method: String, kind: RPCKind, inputType: String, outputType: String,
        options: MethodOptions = MethodOptions()
    ) {
        self.service = service
        self.method = method
        self.kind = kind
        self.inputType = inputType
        self.outputType = outputType
        self.options = options
        self.path = "/\(service)/\(method)"
    }

    public var description: String { path }

    public static func == (a: MethodDescriptor, b: MethodDescriptor) -> Bool {
        a === b
            || (a.path == b.path && a.kind == b.kind && a.inputType == b.inputType && a.outputType == b.outputType
                && a.options == b.options)
    }

    public func hash(into h: inout Hasher) { h.combine(path) }
}

/// A service: its methods and the `.proto` file that declares it (for reflection).
public struct ServiceDescriptor: Sendable {
    public var name: String
    public var methods: [MethodDescriptor]
    public var file: ProtoFile

    public init(name: String, methods: [MethodDescriptor], file: ProtoFile) {
        self.name = name
        self.methods = methods
        self.file = file
    }
}
