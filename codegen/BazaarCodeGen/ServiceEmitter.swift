/// Emits Swift service code for each service of a file:
///   * `<Service>.Method`: the method table (path, kind, IDL options) for the router and gateway;
///   * `<Service>.ServiceProtocol`: what an implementation provides, as `async` methods;
///   * `<Service>.Client`: typed calls with per-call options, over any `ClientTransport`.
struct ServiceEmitter {
    let file: FileModel

    func emit(_ w: inout CodeWriter) {
        for s in file.services { emit(s, &w) }
    }

    static func kind(_ m: MethodModel) -> String {
        switch (m.clientStreaming, m.serverStreaming) {
        case (false, false): "unary"
        case (true, false): "clientStreaming"
        case (false, true): "serverStreaming"
        case (true, true): "bidirectionalStreaming"
        }
    }

    static func literal(_ s: String) -> String {
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "\""
    }

    static func list(_ items: [String]) -> String { "[" + items.map(literal).joined(separator: ", ") + "]" }

    func methodName(_ m: MethodModel) -> String { SwiftNames.escape(SwiftNames.lowerCamel(m.name)) }

    func emit(_ s: ServiceModel, _ w: inout CodeWriter) {
        let name = SwiftNames.serviceName(s)
        SwiftEmitter.doc(s.comments, &w)
        w.open("public enum \(name)")
        w.line("public static let name = \(Self.literal(s.fullName))")
        w.line("")
        w.line("/// Every method with its path, kind and IDL options.")
        w.open("public enum Method")
        for m in s.methods {
            let r = MethodRules(m, in: s)
            let http = r.http.map {
                "HTTPRule(method: \(Self.literal($0.method)), path: \(Self.literal($0.path)), body: \(Self.literal($0.body)), responseBody: \(Self.literal($0.responseBody)))"
            }
            SwiftEmitter.doc(m.comments, &w)
            w.line("public static let \(methodName(m)) = MethodDescriptor(")
            w.line("    service: \(Self.literal(s.fullName)), method: \(Self.literal(m.name)), kind: .\(Self.kind(m)),")
            w.line("    inputType: \(Self.literal(m.input.fullName)), outputType: \(Self.literal(m.output.fullName)),")
            w.line("    options: MethodOptions(")
            w.line("        http: [\(http.joined(separator: ", "))],")
            w.line(
                "        auth: AuthRequirement(level: .\(r.auth.level), roles: \(Self.list(r.auth.roles)), scopes: \(Self.list(r.auth.scopes)), callers: \(Self.list(r.auth.callers))),"
            )
            w.line(
                "        defaultDeadline: \(r.deadlineMs.map { ".milliseconds(\($0))" } ?? "nil"), idempotency: .\(r.idempotency), successStatus: \(r.successStatus)))"
            )
        }
        w.line("public static let all: [MethodDescriptor] = [\(s.methods.map(methodName).joined(separator: ", "))]")
        w.close()
        w.line("")
        w.line(
            "public static let descriptor = ServiceDescriptor(name: name, methods: Method.all, file: ProtoFile.\(SwiftEmitter.fileConstant(file.path)))"
        )
        w.line("")
        emitProtocol(s, &w)
        w.line("")
        emitClient(s, &w)
        w.close()
        w.line("")
        emitHandlers(s, name, &w)
    }

    func types(_ m: MethodModel) -> (String, String) {
        (SwiftNames.messageType(m.input), SwiftNames.messageType(m.output))
    }

    func emitProtocol(_ s: ServiceModel, _ w: inout CodeWriter) {
        w.line("/// Implement this to serve `\(s.fullName)`; `handlers` is provided.")
        w.open("public protocol ServiceProtocol: RPCService")
        for m in s.methods {
            let (req, resp) = types(m)
            SwiftEmitter.doc(m.comments, &w)
            switch (m.clientStreaming, m.serverStreaming) {
            case (false, false):
                w.line("func \(methodName(m))(_ request: \(req), context: ServerContext) async throws -> \(resp)")
            case (false, true):
                w.line(
                    "func \(methodName(m))(_ request: \(req), responses: RPCWriter<\(resp)>, context: ServerContext) async throws"
                )
            case (true, false):
                w.line(
                    "func \(methodName(m))(_ requests: RPCStream<\(req)>, context: ServerContext) async throws -> \(resp)"
                )
            case (true, true):
                w.line(
                    "func \(methodName(m))(_ requests: RPCStream<\(req)>, responses: RPCWriter<\(resp)>, context: ServerContext) async throws"
                )
            }
        }
        w.close()
    }

    func emitHandlers(_ s: ServiceModel, _ name: String, _ w: inout CodeWriter) {
        w.open("extension \(name).ServiceProtocol")
        w.line("public static var serviceDescriptor: ServiceDescriptor { \(name).descriptor }")
        w.line("")
        w.open("public var handlers: [RPCHandler]")
        w.line("[")
        for m in s.methods {
            let n = methodName(m)
            let method = "\(name).Method.\(n)"
            // A request whose schema declares field rules is checked before the handler sees it.
            let validated = FieldRules.isValidated(m.input)
            let (req, resp) = types(m)
            switch (m.clientStreaming, m.serverStreaming) {
            case (false, false) where validated:
                w.line("    .unary(\(method)) { (request: \(req), context: ServerContext) in")
                w.line("        try request.validate()")
                w.line("        return try await self.\(n)(request, context: context)")
                w.line("    },")
            case (false, false):
                w.line("    .unary(\(method)) { try await self.\(n)($0, context: $1) },")
            case (false, true) where validated:
                w.line(
                    "    .serverStreaming(\(method)) { (request: \(req), responses: RPCWriter<\(resp)>, context: ServerContext) in"
                )
                w.line("        try request.validate()")
                w.line("        try await self.\(n)(request, responses: responses, context: context)")
                w.line("    },")
            case (false, true):
                w.line("    .serverStreaming(\(method)) { try await self.\(n)($0, responses: $1, context: $2) },")
            case (true, false):
                let requests = validated ? "$0.validated()" : "$0"
                w.line("    .clientStreaming(\(method)) { try await self.\(n)(\(requests), context: $1) },")
            case (true, true) where validated:
                w.line(
                    "    .bidirectionalStreaming(\(method)) { try await self.\(n)($0.validated(), responses: $1, context: $2) },"
                )
            case (true, true):
                w.line(
                    "    .bidirectionalStreaming(\(method)) { try await self.\(n)($0, responses: $1, context: $2) },")
            }
        }
        w.line("]")
        w.close()
        w.close()
        w.line("")
    }

    func emitClient(_ s: ServiceModel, _ w: inout CodeWriter) {
        w.line("/// Calls `\(s.fullName)` over any transport (the mesh, or in-process for tests).")
        w.open("public struct Client: Sendable")
        w.line("public let transport: any ClientTransport")
        w.line("")
        w.line("public init(transport: any ClientTransport) { self.transport = transport }")
        for m in s.methods {
            let (req, resp) = types(m)
            let n = methodName(m)
            w.line("")
            SwiftEmitter.doc(m.comments, &w)
            switch (m.clientStreaming, m.serverStreaming) {
            case (false, false):
                w.open(
                    "public func \(n)(_ request: \(req), options: CallOptions = CallOptions()) async throws -> \(resp)")
                w.line("try await transport.unary(Method.\(n), request, options: options)")
            case (false, true):
                w.open(
                    "public func \(n)(_ request: \(req), options: CallOptions = CallOptions()) -> RPCStream<\(resp)>")
                w.line("transport.serverStreaming(Method.\(n), request, options: options)")
            case (true, false):
                w.open(
                    "public func \(n)(_ requests: some AsyncSequence<\(req), any Error> & Sendable, options: CallOptions = CallOptions()) async throws -> \(resp)"
                )
                w.line("try await transport.clientStreaming(Method.\(n), requests, options: options)")
            case (true, true):
                w.open(
                    "public func \(n)(_ requests: some AsyncSequence<\(req), any Error> & Sendable, options: CallOptions = CallOptions()) -> RPCStream<\(resp)>"
                )
                w.line("transport.bidirectionalStreaming(Method.\(n), requests, options: options)")
            }
            w.close()
        }
        w.close()
    }
}
