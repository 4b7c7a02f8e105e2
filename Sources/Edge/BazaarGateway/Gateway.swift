import BazaarAuth
import BazaarCore
import BazaarTransport
import BazaarWire
import Foundation
import Synchronization

/// The edge gateway: REST and JSON in, RPCs over the mesh out, every route from the IDL.
///
/// Per request: request id, CORS, health endpoints, route match (404; 405 with `Allow`), content
/// negotiation (415, 406), the route's auth rule (401 with `WWW-Authenticate`, 403), rate limit
/// (429 with `Retry-After`), the request message assembled from path variables, body and query
/// (400 naming the field), the call with the verified user forwarded as metadata and the deadline
/// clamped, and the response as proto3 JSON (the IDL's success status), or a
/// google.rpc.Status-shaped error with grpc-gateway's status mapping.
public final class Gateway: HTTPResponder {
    public struct Settings: Sendable {
        /// Verification keys for bearer tokens (EdDSA).
        public var keys: [JWTKey] = []
        public var issuer: String? = "bazaar"
        public var audience: String? = "bazaar"
        /// The longest life an access token may have.
        public var tokenMaxLifetime = JWT.defaultMaxLifetime
        /// Origins allowed to call from browsers (`*` for any); empty: no CORS headers.
        public var corsOrigins: [String] = []
        /// Requests per second per subject (signed in) or client address, with this burst.
        public var rateLimit = RateLimit(ratePerSecond: 50, burst: 100)
        /// Per-route overrides, by `/package.Service/Method`.
        public var routeRateLimits: [String: RateLimit] = [:]
        /// Proxies in front of the gateway (an Ingress controller): from these peers the client
        /// address comes from `X-Forwarded-For` (see `ClientAddress`); empty: the peer is the client.
        public var trustedProxies: [IPNetwork] = []
        /// Open streams (SSE and NDJSON watches, streaming gRPC through the proxy) per caller and
        /// in all; the total stays under an upstream connection's stream limit (1,024), so unary
        /// calls always find room.
        public var maxStreamsPerCaller = 8
        public var maxStreams = 512
        /// Longest deadline a call gets, whatever the client asks (`grpc-timeout`) or the IDL says.
        public var maxDeadline: Duration = .seconds(30)
        public var json = ProtoJSON.Options()
        /// How long a shared cache may keep a Connect `GET`'s answer to an anonymous caller
        /// (seconds; `BAZAAR_CONNECT_GET_MAX_AGE`). Signed-in callers' answers are private.
        public var connectGetMaxAge = 5
        public init() {}
    }

    public let settings: Settings
    /// The transport of each upstream, by the upstream's configured name.
    let upstreams: [String: any ClientTransport]
    let limiter: RateLimiter
    let streams: StreamBudget
    /// Tokens void before they expire; the process keeps it current (``RevocationList``).
    public let revocations = RevocationList()
    /// Whether the upstreams can take calls (for `/readyz`).
    let ready: @Sendable () -> Bool
    /// What is served now; replaced whole by ``install(_:)``.
    private let current: Lock<GatewayAPI>
    let title: String

    /// A gateway in front of `upstreams` (by configured name) that serves no route until their
    /// schemas are installed (``install(_:)``), as they are learned from the services.
    public init(
        upstreams: [String: any ClientTransport], settings: Settings, title: String = "Bazaar API",
        ready: @escaping @Sendable () -> Bool = { true }
    ) {
        self.upstreams = upstreams
        self.settings = settings
        self.ready = ready
        self.title = title
        limiter = RateLimiter()
        streams = StreamBudget(perCaller: settings.maxStreamsPerCaller, total: settings.maxStreams)
        current = Lock(try! GatewayAPI(schemas: [], title: title))
    }

    /// A gateway for compiled services: each service is an upstream named after the service
    /// (`upstreams` by full service name), installed at once.
    public convenience init(
        services: [ServiceDescriptor], upstreams: [String: any ClientTransport], settings: Settings,
        title: String = "Bazaar API", ready: @escaping @Sendable () -> Bool = { true }
    ) throws {
        self.init(upstreams: upstreams, settings: settings, title: title, ready: ready)
        let api = try GatewayAPI(
            schemas: services.map { UpstreamSchema(upstream: $0.name, services: [$0]) }, title: title)
        current.withLock { $0 = api }
    }

    /// What the gateway serves at this moment.
    public var api: GatewayAPI { current.withLock { $0 } }

    /// The route table now (for tools and tests).
    public var routes: RouteTable { api.routes }

    /// Serves `schema` for its upstream from now on, replacing that upstream's previous one.
    /// Refused, with the previous one kept, when it is inconsistent, when one of its routes takes
    /// requests another upstream's route takes, or when it offers a service another upstream
    /// offers: the error names both.
    public func install(_ schema: UpstreamSchema) throws(RouteTable.BuildError) {
        try current.withLock { (api: inout GatewayAPI) throws(RouteTable.BuildError) in
            guard upstreams[schema.upstream] != nil else {
                throw RouteTable.BuildError(
                    description: "upstream \(schema.upstream) is not configured in this gateway")
            }
            let others = api.schemas.filter { $0.upstream != schema.upstream }
            let position = api.schemas.firstIndex { $0.upstream == schema.upstream } ?? api.schemas.count
            var schemas = others
            schemas.insert(schema, at: min(position, schemas.count))
            api = try GatewayAPI(schemas: schemas, title: title)
        }
    }

    /// Streams open now (``Settings/maxStreams`` caps them), for metrics.
    public var openStreams: Int { streams.open }

    public func respond(to request: HTTPRequest, writer: HTTPResponseWriter) async {
        _ = await serve(request, writer)
    }

    /// Answers a request and returns a low-cardinality name of what it hit, for metrics: the
    /// route template, the gRPC method, or a fixed word.
    public func serve(_ request: HTTPRequest, _ writer: HTTPResponseWriter) async -> String {
        let requestID =
            request.header("x-request-id").flatMap { id in
                id.count <= 128 && id.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
                    ? id : nil
            } ?? Self.newRequestID()
        var common: [(String, String)] = [("x-request-id", requestID)]
        if let origin = request.header("origin"),
            settings.corsOrigins.contains("*") || settings.corsOrigins.contains(origin)
        {
            common += [
                ("access-control-allow-origin", settings.corsOrigins.contains("*") ? "*" : origin), ("vary", "Origin"),
                ("access-control-expose-headers", "x-request-id, retry-after, www-authenticate"),
            ]
        }
        let path = request.path
        let api = self.api
        switch (request.method, path) {
        case ("GET", "/healthz"), ("HEAD", "/healthz"):
            send(writer, 200, common, JSONValue.object([("status", .string("SERVING"))]))
            return path
        case ("GET", "/readyz"), ("HEAD", "/readyz"):
            let ok = ready()
            send(
                writer, ok ? 200 : 503, common, JSONValue.object([("status", .string(ok ? "SERVING" : "NOT_SERVING"))]))
            return path
        case ("GET", "/openapi.json"):
            writer.respond(status: 200, headers: common + [("content-type", "application/json")], body: api.openAPI)
            return path
        default: break
        }
        if request.method == "OPTIONS", request.header("origin") != nil,
            request.header("access-control-request-method") != nil
        {
            preflight(request, api, writer, common)
            return "preflight"
        }
        if let kind = ConnectWire.kind(
            method: request.method == "HEAD" ? "GET" : request.method, contentType: request.header("content-type"),
            query: request.query),
            api.methods[path] != nil || api.isServicePath(path)
                // Binary and streaming Connect are never REST or a page: a procedure's path that no
                // upstream serves (a health check, reflection) is Connect's unimplemented.
                || (GatewayAPI.isProcedurePath(path) && kind != .unary(.json) && kind != .unaryGet)
        {
            await connect(request, api, kind, writer, common)
            return api.methods[path].map(\.method.path) ?? "connect-unknown"
        }
        if let type = request.header("content-type"), let flavor = GRPCFlavor(type) {
            await proxy(request, api, flavor, writer, common)
            return api.methods[path].map(\.method.path) ?? "grpc-unknown"
        }
        if request.method == "POST", let m = api.methods[path], m.method.options.auth.level != .internal {
            // A procedure's path, in no protocol this edge speaks.
            connectFail(
                writer, common,
                RPCError(
                    .unimplemented,
                    "\(request.header("content-type") ?? "no content type") is not a codec here: send Connect "
                        + "(application/proto, application/json, application/connect+proto, application/connect+json) or gRPC"
                ),
                status: 415,
                extra: [
                    (
                        "accept-post",
                        "application/proto, application/json, application/connect+proto, application/connect+json, application/grpc, application/grpc-web"
                    )
                ])
            return "connect-unsupported"
        }
        var label = "unmatched"
        do {
            try await call(request, api, writer, common, label: &label)
        } catch let f as HTTPFailure {
            fail(writer, common, f)
        } catch {
            fail(writer, common, HTTPFailure(RPCError(error)))
        }
        return label
    }

    // MARK: one call

    func call(
        _ request: HTTPRequest, _ api: GatewayAPI, _ writer: HTTPResponseWriter, _ common: [(String, String)],
        label: inout String
    ) async throws {
        let (route, variables): (Route, [([String], String)])
        switch api.routes.match(method: request.method, path: request.path) {
        case .notFound:
            if let front = api.web, !api.isAPIPath(request.path) {
                label = "web"
                return try await web(request, front, writer, common)
            }
            throw HTTPFailure(status: 404, code: .notFound, message: "no route for \(request.method) \(request.path)")
        case .methodNotAllowed(let allowed):
            throw HTTPFailure(
                status: 405, code: .unimplemented, message: "\(request.path) does not take \(request.method)",
                headers: [
                    (
                        "allow",
                        (allowed + (allowed.contains("GET") ? ["HEAD"] : []) + ["OPTIONS"]).joined(separator: ", ")
                    )
                ])
        case .found(let r, let v):
            (route, variables) = (r, v)
        }
        label = route.template.description
        let method = route.method
        if method.options.auth.level == .internal {
            throw HTTPFailure(status: 404, code: .notFound, message: "no route for \(request.method) \(request.path)")
        }
        let streaming = method.kind == .serverStreaming
        let accept = Negotiation.accept(request.header("accept"), streaming: streaming)
        guard let format = accept else {
            throw HTTPFailure(
                status: 406, code: .invalidArgument,
                message: streaming
                    ? "this route answers text/event-stream, application/x-ndjson or application/json"
                    : "this route answers application/json")
        }
        let hasBody = !route.body.isEmpty
        if hasBody, !request.body.isEmpty {
            let type = request.header("content-type")?.lowercased() ?? ""
            guard type.hasPrefix("application/json") || type.hasPrefix("application/") && type.contains("+json") else {
                throw HTTPFailure(status: 415, code: .invalidArgument, message: "send the body as application/json")
            }
        } else if !hasBody, !request.body.isEmpty {
            throw HTTPFailure(
                status: 400, code: .invalidArgument, message: "\(request.method) \(request.path) takes no body")
        }

        // Who is calling, and may they?
        let user = try authenticate(request, rule: method.options.auth)
        if let seconds = rateLimited(request, user: user, method: method) {
            throw HTTPFailure(Self.rateLimitError(retryIn: seconds))
        }

        // The request message: body, then path variables, then query parameters.
        let builder = ProtoJSON.Builder(route.input, options: settings.json)
        do {
            if hasBody, !request.body.isEmpty {
                let json = try JSONValue.parse(request.body)
                if route.body == "*" { try builder.merge(json) } else { try builder.set(path: [route.body], json) }
            }
            for (field, value) in variables {
                try builder.set(path: field, Self.scalar(value, field: field, in: route))
            }
            if route.body != "*" {
                let bound = route.boundFields
                for (name, value) in try Self.query(request.query) {
                    let field = name.split(separator: ".").map(String.init)
                    let dotted = field.map(ProtoJSON.jsonName).joined(separator: ".")
                    if bound.contains(field.joined(separator: ".")) || bound.contains(dotted) {
                        throw JSONMappingError("\(name): set by the path or the body, not the query")
                    }
                    guard route.input.field(path: field) != nil else {
                        throw JSONMappingError("\(name): unknown query parameter")
                    }
                    try builder.set(path: field, Self.scalar(value, field: field, in: route))
                }
            } else if !request.query.isEmpty {
                throw JSONMappingError("this route takes its fields from the body, not the query")
            }
        } catch let e as JSONMappingError {
            throw HTTPFailure(status: 400, code: .invalidArgument, message: e.description)
        }

        guard let upstream = upstreams[route.upstream] else {
            throw HTTPFailure(
                status: 503, code: .unavailable, message: "\(method.service) is not configured in this gateway")
        }
        var options = CallOptions(timeout: deadline(request, method))
        forward(user, requestID: common[0].1, request, into: &options)

        if streaming {
            return try await holdingStream(for: self.caller(request, user)) {
                try await stream(route, builder.serialized(), upstream, options, format, writer, common)
            }
        }
        let reply = try await upstream.unary(method, request: builder.serialized(), options: options)
        var json = try ProtoJSON.encode(reply, as: route.output, options: settings.json)
        if !route.responseBody.isEmpty { json = json[ProtoJSON.jsonName(route.responseBody)] ?? .null }
        let status = Int(method.options.successStatus == 0 ? 200 : method.options.successStatus)
        if status == 204 {
            return writer.respond(status: 204, headers: common, body: [])
        }
        send(writer, status, common, json, head: request.method == "HEAD")
    }

    /// Runs `body` holding one of the open-stream places (``Settings/maxStreamsPerCaller`` for
    /// `caller`, ``Settings/maxStreams`` in all); with none free, a 429 instead.
    func holdingStream<T>(for caller: String, _ body: () async throws -> T) async throws -> T {
        if let why = streams.take(caller) {
            throw HTTPFailure(status: 429, code: .resourceExhausted, message: why, headers: [("retry-after", "5")])
        }
        defer { streams.release(caller) }
        return try await body()
    }

    /// Server streaming: Server-Sent Events (`data: <json>` per message, `event: error` at a
    /// failure) or NDJSON (one JSON per line; a failure as `{"error": Status}`), by `Accept`.
    func stream(
        _ route: Route, _ body: [UInt8], _ upstream: any ClientTransport, _ options: CallOptions,
        _ format: Negotiation.Format,
        _ writer: HTTPResponseWriter, _ common: [(String, String)]
    ) async throws {
        let replies = upstream.streaming(
            route.method,
            requests: RPCStream { c in
                c.yield(body)
                c.finish()
            }, options: options)
        var iterator = replies.makeAsyncIterator()
        // The first message (or error) decides the status: an error before any message is a
        // plain error response.
        let first: [UInt8]?
        do {
            first = try await iterator.next()
        } catch let e as RPCError where e.code == .deadlineExceeded {
            // The deadline is a stream's lifetime: running out before a message is a quiet end.
            first = nil
        }
        guard let first else {
            writer.writeHead(status: 200, headers: common + [("content-type", format.contentType)])
            return writer.end()
        }
        writer.writeHead(
            status: 200, headers: common + [("content-type", format.contentType), ("cache-control", "no-cache")])
        var next: [UInt8]? = first
        do {
            while let message = next {
                let json = try ProtoJSON.encode(message, as: route.output, options: settings.json)
                writer.writeBody(format.frame(json))
                next = try await iterator.next()
            }
        } catch {
            let status = HTTPFailure(RPCError(error)).body
            writer.writeBody(format.frame(format == .sse ? status : .object([("error", status)]), event: "error"))
        }
        writer.end()
    }

    func deadline(_ request: HTTPRequest, _ method: MethodDescriptor) -> Duration {
        // The IDL's default deadline is for a call; a stream lives as long as the client lets it
        // (grpc-timeout), or the longest the gateway allows.
        var d = method.kind == .serverStreaming ? settings.maxDeadline : method.options.defaultDeadline ?? .seconds(10)
        if let asked = request.header("grpc-timeout").flatMap(GRPCHeaders.parseTimeout) { d = asked }
        return min(d, settings.maxDeadline)
    }

    // MARK: auth

    func authenticate(_ request: HTTPRequest, rule: AuthRequirement) throws(HTTPFailure) -> UserIdentity? {
        var user: UserIdentity?
        if let header = request.header("authorization") {
            do throws(JWTError) {
                user = try BearerAuth.user(
                    authorization: header, keys: settings.keys, issuer: settings.issuer, audience: settings.audience,
                    maxLifetime: settings.tokenMaxLifetime)
                if let u = user, revocations.isRevoked(u) {
                    throw JWTError("revoked (roles changed, signed out or password changed): sign in again")
                }
            } catch {
                let why = error.description
                throw HTTPFailure(
                    status: 401, code: .unauthenticated, message: "access token refused: \(why)",
                    headers: [
                        (
                            "www-authenticate",
                            "Bearer realm=\"bazaar\", error=\"invalid_token\", error_description=\"\(why)\""
                        )
                    ])
            }
        }
        if rule.level == .authenticated {
            guard let user else {
                throw HTTPFailure(
                    status: 401, code: .unauthenticated,
                    message: "sign in first: send authorization: Bearer <access token>",
                    headers: [("www-authenticate", "Bearer realm=\"bazaar\"")])
            }
            if let why = BearerAuth.refusal(user, rule) {
                let scopes =
                    rule.scopes.isEmpty
                    ? []
                    : [
                        (
                            "www-authenticate",
                            "Bearer realm=\"bazaar\", error=\"insufficient_scope\", scope=\"\(rule.scopes.joined(separator: " "))\""
                        )
                    ]
                throw HTTPFailure(status: 403, code: .permissionDenied, message: why, headers: scopes)
            }
        }
        return user
    }

    /// The answer to a caller over its rate: RESOURCE_EXHAUSTED with `RetryInfo` and an `ErrorInfo`
    /// (`RATE_LIMITED`) for programs, and `retry-after` for HTTP clients, the same on every protocol.
    static func rateLimitError(retryIn seconds: Int) -> RPCError {
        var e = RPCError(
            .resourceExhausted, "too many requests; retry in \(seconds) s",
            details: [
                .errorInfo(
                    ErrorInfo(
                        reason: "RATE_LIMITED", domain: "gateway.bazaar", metadata: ["retry_after_s": String(seconds)])),
                .retryInfo(delay: .seconds(seconds)),
            ])
        e.metadata.add("retry-after", String(seconds))
        return e
    }

    /// Every protocol at the edge (REST, gRPC, gRPC-Web) draws from the same buckets: per user
    /// when signed in, otherwise per client address, with per-method overrides. `nil` when the
    /// call may go on, otherwise the whole seconds until the caller's next token.
    func rateLimited(_ request: HTTPRequest, user: UserIdentity?, method: MethodDescriptor) -> Int? {
        let key = caller(request, user)
        let own = settings.routeRateLimits[method.path]
        guard
            let wait = limiter.take(key: key + "|" + (own != nil ? method.path : ""), limit: own ?? settings.rateLimit)
        else { return nil }
        return max(1, Int(wait.rounded(.up)))
    }

    /// Who is calling, for per-caller limits: the user when signed in, otherwise the address.
    func caller(_ request: HTTPRequest, _ user: UserIdentity?) -> String {
        user.map { "user:" + $0.subject } ?? "addr:" + clientAddress(request)
    }

    /// The client's address: the peer, or behind trusted proxies the rightmost untrusted
    /// `X-Forwarded-For` entry.
    func clientAddress(_ request: HTTPRequest) -> String {
        ClientAddress.resolve(
            peer: Socket.host(of: request.remoteAddress), forwardedFor: request.header("x-forwarded-for"),
            trustedProxies: settings.trustedProxies)
    }

    /// What the services learn about the caller, the same for every protocol: the verified user
    /// (subject, roles, scopes), the client address and the request id the gateway settled on.
    func forward(_ user: UserIdentity?, requestID: String, _ request: HTTPRequest, into options: inout CallOptions) {
        options.metadata.add("x-request-id", requestID)
        options.metadata.add(ForwardedIdentity.clientAddressKey, clientAddress(request))
        if let user {
            options.metadata.add(ForwardedIdentity.subjectKey, user.subject)
            if !user.roles.isEmpty {
                options.metadata.add(ForwardedIdentity.rolesKey, user.roles.joined(separator: ","))
            }
            if !user.scopes.isEmpty {
                options.metadata.add(ForwardedIdentity.scopesKey, user.scopes.joined(separator: " "))
            }
        }
        // The client's `traceparent` is not passed on: a trace starts here, sampled by the
        // gateway's own sampler (a client setting the sampled flag on every request must not
        // decide what the shop records). It becomes a link on the gateway's span instead, through
        // a key the telemetry's client observer takes off the call (it never reaches a service).
        if let theirs = request.header("traceparent"), Self.looksLikeTraceparent(theirs) {
            options.metadata.add(Self.clientTraceKey, theirs)
        }
    }

    /// `ClientTrace.metadataKey` of BazaarTelemetry (the gateway does not depend on it).
    private static let requestIDs = SplitMix64()

    /// A request id for a request that brought none: 122 random bits in the lowercase form of a
    /// version-4 UUID. Ids must be unique, not secret, so they come from the cheap generator
    /// (Foundation's `UUID()` opens and reads /dev/urandom for each one: three system calls per
    /// request).
    static func newRequestID() -> String {
        let hi = requestIDs.next() & 0xFFFF_FFFF_FFFF_0FFF | 0x4000  // version 4
        let lo = requestIDs.next() & 0x3FFF_FFFF_FFFF_FFFF | 0x8000_0000_0000_0000  // variant 10
        let hex = Array("0123456789abcdef".utf8)
        return String(unsafeUninitializedCapacity: 36) { out in
            var i = 0
            for (word, shifts) in [(hi, 0..<16), (lo, 0..<16)] {
                for n in shifts {
                    if i == 8 || i == 13 || i == 18 || i == 23 {
                        out[i] = UInt8(ascii: "-")
                        i += 1
                    }
                    out[i] = hex[Int(word >> UInt64(60 - 4 * n) & 0xF)]
                    i += 1
                }
            }
            return i
        }
    }

    static let clientTraceKey = "x-bazaar-client-traceparent"

    /// `00-<32 hex>-<16 hex>-<2 hex>`: only such a value is carried to the link.
    static func looksLikeTraceparent(_ s: String) -> Bool {
        let b = Array(s.utf8)
        guard b.count == 55, b[2] == UInt8(ascii: "-"), b[35] == UInt8(ascii: "-"), b[52] == UInt8(ascii: "-") else {
            return false
        }
        return b.enumerated().allSatisfy { i, c in
            [2, 35, 52].contains(i) || (48...57).contains(c) || (97...102).contains(c)
        }
    }

    // MARK: CORS

    func preflight(
        _ request: HTTPRequest, _ api: GatewayAPI, _ writer: HTTPResponseWriter, _ common: [(String, String)]
    ) {
        guard common.contains(where: { $0.0 == "access-control-allow-origin" }) else {
            return fail(
                writer, common, HTTPFailure(status: 403, code: .permissionDenied, message: "origin not allowed"))
        }
        var allowed: [String] = []
        if let m = api.methods[request.path]?.method, m.options.auth.level != .internal {
            // gRPC-Web and Connect from a browser; Connect's GET for side-effect-free methods.
            allowed = m.options.idempotency == .noSideEffects && m.kind == .unary ? ["GET", "POST"] : ["POST"]
        } else {
            switch api.routes.match(method: request.header("access-control-request-method") ?? "", path: request.path) {
            case .found(let r, _): allowed = [r.httpMethod]
            case .methodNotAllowed(let methods): allowed = methods
            case .notFound:
                return fail(
                    writer, common, HTTPFailure(status: 404, code: .notFound, message: "no route for \(request.path)"))
            }
        }
        writer.respond(
            status: 204,
            headers: common + [
                ("access-control-allow-methods", allowed.joined(separator: ", ")),
                (
                    "access-control-allow-headers",
                    "authorization, content-type, x-request-id, grpc-timeout, traceparent, x-grpc-web, x-user-agent, "
                        + "connect-protocol-version, connect-timeout-ms, connect-content-encoding, connect-accept-encoding, "
                        + "content-encoding, accept-encoding"
                ),
                ("access-control-max-age", "600"),
            ], body: [])
    }

    // MARK: helpers

    func send(
        _ writer: HTTPResponseWriter, _ status: Int, _ common: [(String, String)], _ json: JSONValue, head: Bool = false
    ) {
        let body = json.serialized()
        writer.respond(status: status, headers: common + [("content-type", "application/json")], body: head ? [] : body)
    }

    func fail(_ writer: HTTPResponseWriter, _ common: [(String, String)], _ f: HTTPFailure) {
        writer.respond(
            status: f.status, headers: common + f.headers + [("content-type", "application/json")],
            body: f.body.serialized())
    }

    /// A query or path value as JSON for its field: booleans and enum numbers take their JSON
    /// type; everything else stays a string (numbers, 64-bit or not, are accepted as strings).
    static func scalar(_ text: String, field: [String], in route: Route) -> JSONValue {
        guard let f = route.input.field(path: field) else { return .string(text) }
        switch f.kind {
        case .bool where text == "true" || text == "false": return .bool(text == "true")
        case .enumeration: return Int64(text).map(JSONValue.integer) ?? .string(text)
        default: return .string(text)
        }
    }

    /// `a=1&b=x%20y&a=2` as pairs in order (`+` is a space); malformed escapes are a 400.
    static func query(_ q: String) throws(JSONMappingError) -> [(String, String)] {
        guard !q.isEmpty else { return [] }
        var out: [(String, String)] = []
        for part in q.split(separator: "&") where !part.isEmpty {
            let kv = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) throws(JSONMappingError) -> String {
                guard let d = PercentEncoding.decode(s.replacingOccurrences(of: "+", with: " ")) else {
                    throw JSONMappingError("malformed query parameter \(part)")
                }
                return d
            }
            out.append((try decode(kv[0]), kv.count > 1 ? try decode(kv[1]) : ""))
        }
        return out
    }

}

/// What the gateway serves at one moment: the upstreams' schemas, the routes, every gRPC method
/// with its upstream, and the OpenAPI document, all built together. A request keeps the one it
/// started with, so a schema installed meanwhile never changes it halfway.
public final class GatewayAPI: Sendable {
    /// In the order they were first installed.
    public let schemas: [UpstreamSchema]
    public let routes: RouteTable
    /// Every method by gRPC path (`/shop.v1.CatalogService/GetProduct`), for the gRPC proxy.
    let methods: [String: (method: MethodDescriptor, upstream: String)]
    /// Every method's request and response descriptors by gRPC path, for Connect's JSON.
    let messages: [String: (input: MessageSchema, output: MessageSchema)]
    /// The names of the services served (`shop.v1.CatalogService`).
    let services: Set<String>
    let openAPI: [UInt8]
    /// The web front end (``Gateway/webFrontService``), when an upstream serves one.
    let web: (method: MethodDescriptor, upstream: String)?
    /// The first segments of the API's routes (`v1`): an unknown path under one of them is an
    /// API client's mistake and gets the API's JSON 404, not a web page.
    let apiRoots: Set<Substring>

    /// Whether `path` is `/<a served service>/<something>`: a procedure's path, known or not.
    func isServicePath(_ path: String) -> Bool {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        return parts.count == 3 && parts[0].isEmpty && services.contains(String(parts[1]))
    }

    /// Whether `path` has a procedure's shape, `/<package>.<Service>/<Method>`.
    static func isProcedurePath(_ path: String) -> Bool {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        return parts.count == 3 && parts[0].isEmpty && parts[1].contains(".") && !parts[2].isEmpty
    }

    /// Whether `path` lies under one of the API's roots.
    func isAPIPath(_ path: String) -> Bool {
        path.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: true).first.map {
            apiRoots.contains($0.split(separator: ":", maxSplits: 1).first ?? $0)
        } ?? false
    }

    init(schemas: [UpstreamSchema], title: String) throws(RouteTable.BuildError) {
        var owner: [String: String] = [:]
        var methods: [String: (method: MethodDescriptor, upstream: String)] = [:]
        var messages: [String: (input: MessageSchema, output: MessageSchema)] = [:]
        for schema in schemas {
            for service in schema.services {
                for m in service.methods {
                    if let i = schema.message(m.inputType), let o = schema.message(m.outputType) {
                        messages[m.path] = (i, o)
                    }
                }
                if let other = owner[service.name], other != schema.upstream {
                    throw RouteTable.BuildError(
                        description: "service \(service.name) is offered by upstreams \(other) and \(schema.upstream)")
                }
                owner[service.name] = schema.upstream
                for m in service.methods { methods[m.path] = (m, schema.upstream) }
            }
        }
        self.schemas = schemas
        self.methods = methods
        self.messages = messages
        services = Set(methods.values.map(\.method.service))
        web = methods["/\(Gateway.webFrontService)/Serve"].flatMap { m in
            m.method.kind == .serverStreaming ? m : nil
        }
        routes = try RouteTable(schemas: schemas)
        apiRoots = Set(
            routes.routes.compactMap { r in
                if case .literal(let l)? = r.template.segments.first { Substring(l) } else { nil }
            })
        openAPI = OpenAPI.document(routes: routes, title: title).serialized()
    }
}
