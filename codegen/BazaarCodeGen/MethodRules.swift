/// A method's IDL options in usable form: HTTP bindings (`google.api.http`), Bazaar's auth,
/// deadline and success status (with the service's defaults applied) and the idempotency level.
struct MethodRules {
    struct HTTP {
        var method: String
        var path: String
        var body: String
        var responseBody: String
        var location: SourceLocation
    }

    struct Auth {
        var level: String  // public | authenticated | internal
        var roles: [String] = []
        var scopes: [String] = []
        var callers: [String] = []
    }

    var http: [HTTP] = []
    var auth = Auth(level: "authenticated")
    var deadlineMs: UInt64?
    var idempotency = "unknown"
    var successStatus: UInt64 = 200

    static let httpOption = "google.api.http"
    static let authOption = "bazaar.options.v1.auth"
    static let defaultAuthOption = "bazaar.options.v1.default_auth"
    static let deadlineOption = "bazaar.options.v1.deadline_ms"
    static let defaultDeadlineOption = "bazaar.options.v1.default_deadline_ms"
    static let successOption = "bazaar.options.v1.success_status"

    init(_ m: MethodModel, in s: ServiceModel) {
        let location =
            m.options.items.first {
                if case .extension(let f) = $0.field { f.fullName == Self.httpOption } else { false }
            }?.location ?? m.location
        if case .aggregate(let entries)? = m.options.extension(Self.httpOption) {
            http = Self.rules(entries, location)
        }
        if let a = m.options.extension(Self.authOption) ?? s.options.extension(Self.defaultAuthOption) {
            auth = Self.auth(a)
        }
        if case .integer(let n, _)? = m.options.extension(Self.deadlineOption)
            ?? s.options.extension(Self.defaultDeadlineOption)
        {
            deadlineMs = n
        }
        if case .integer(let n, _)? = m.options.extension(Self.successOption) { successStatus = n }
        if case .identifier(let id, _)? = m.options.standard("idempotency_level") {
            idempotency = ["NO_SIDE_EFFECTS": "noSideEffects", "IDEMPOTENT": "idempotent"][id] ?? "unknown"
        }
    }

    static func rules(_ entries: [AggregateEntry], _ location: SourceLocation) -> [HTTP] {
        var main = HTTP(method: "", path: "", body: "", responseBody: "", location: location)
        var extra: [HTTP] = []
        for e in entries {
            switch e.name {
            case "get", "put", "post", "delete", "patch":
                main.method = e.name.uppercased()
                main.path = e.value.stringValue ?? ""
                main.location = e.location
            case "custom":
                if case .aggregate(let c) = e.value {
                    main.method = c.first { $0.name == "kind" }?.value.stringValue ?? ""
                    main.path = c.first { $0.name == "path" }?.value.stringValue ?? ""
                    main.location = e.location
                }
            case "body": main.body = e.value.stringValue ?? ""
            case "response_body": main.responseBody = e.value.stringValue ?? ""
            case "additional_bindings":
                let items: [ConstantValue]
                if case .list(let l) = e.value { items = l } else { items = [e.value] }
                for item in items { if case .aggregate(let sub) = item { extra += rules(sub, e.location) } }
            default: break
            }
        }
        return (main.method.isEmpty ? [] : [main]) + extra
    }

    static func auth(_ v: ConstantValue) -> Auth {
        var a = Auth(level: "authenticated")
        guard case .aggregate(let entries) = v else { return a }
        func strings(_ v: ConstantValue) -> [String] {
            if case .list(let l) = v { return l.compactMap(\.stringValue) }
            return v.stringValue.map { [$0] } ?? []
        }
        for e in entries {
            switch e.name {
            case "level":
                if case .identifier(let id, _) = e.value {
                    a.level = ["LEVEL_PUBLIC": "public", "LEVEL_INTERNAL": "internal"][id] ?? "authenticated"
                }
            case "roles": a.roles += strings(e.value)
            case "scopes": a.scopes += strings(e.value)
            case "callers": a.callers += strings(e.value)
            default: break
            }
        }
        return a
    }

    /// Checks every HTTP binding against the request and response types.
    static func validate(_ files: [FileModel]) -> [Diagnostic] {
        var out: [Diagnostic] = []
        for file in files {
            for s in file.services {
                for m in s.methods {
                    let rules = MethodRules(m, in: s)
                    for r in rules.http { out += validate(r, m) }
                    if rules.auth.level == "internal" && !rules.http.isEmpty {
                        out.append(
                            Diagnostic(
                                rules.http[0].location,
                                "method '\(m.name)' is internal (LEVEL_INTERNAL) and cannot have an HTTP binding"))
                    }
                }
            }
        }
        return out
    }

    static func validate(_ r: HTTP, _ m: MethodModel) -> [Diagnostic] {
        var out: [Diagnostic] = []
        func fail(_ msg: String) { out.append(Diagnostic(r.location, msg)) }
        guard r.path.hasPrefix("/") else {
            fail("HTTP path '\(r.path)' of '\(m.name)' must start with '/'")
            return out
        }
        if m.clientStreaming && r.body.isEmpty == false && r.body != "*" {
            fail("client-streaming method '\(m.name)' needs body \"*\"")
        }
        // Variables: {a.b} or {a.b=pattern}; braces must balance and not nest.
        var bound: [String] = []
        var rest = Substring(r.path)
        while let open = rest.firstIndex(of: "{") {
            guard let close = rest[open...].firstIndex(of: "}") else {
                fail("HTTP path '\(r.path)' has an unclosed '{'")
                return out
            }
            let inner = rest[rest.index(after: open)..<close]
            if inner.contains("{") {
                fail("HTTP path '\(r.path)' nests variables")
                return out
            }
            let name = String(inner.split(separator: "=", maxSplits: 1).first ?? "")
            bound.append(name)
            rest = rest[rest.index(after: close)...]
        }
        if rest.contains("}") { fail("HTTP path '\(r.path)' has an unmatched '}'") }
        for name in bound {
            if let problem = fieldPath(name, in: m.input, leafMustBeScalar: true) {
                fail("HTTP path variable '{\(name)}' of '\(m.name)': \(problem)")
            }
        }
        if Set(bound).count != bound.count { fail("HTTP path '\(r.path)' binds a field twice") }
        if !r.body.isEmpty && r.body != "*" {
            if r.body.contains(".") || m.input.fields.first(where: { $0.name == r.body }) == nil {
                fail("HTTP body '\(r.body)' of '\(m.name)' is not a top-level field of \(m.input.fullName)")
            }
        }
        if (r.method == "GET" || r.method == "DELETE") && !r.body.isEmpty {
            fail("\(r.method) binding of '\(m.name)' cannot have a body")
        }
        if !r.responseBody.isEmpty && m.output.fields.first(where: { $0.name == r.responseBody }) == nil {
            fail("HTTP response_body '\(r.responseBody)' of '\(m.name)' is not a field of \(m.output.fullName)")
        }
        return out
    }

    /// nil when `path` (dotted) names a singular field chain ending in a scalar or enum.
    static func fieldPath(_ path: String, in message: MessageModel, leafMustBeScalar: Bool) -> String? {
        var current = message
        let parts = path.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        for (i, part) in parts.enumerated() {
            guard let f = current.fields.first(where: { $0.name == part }) else {
                return "\(current.fullName) has no field '\(part)'"
            }
            if f.isRepeated { return "field '\(part)' is repeated" }
            if i == parts.count - 1 {
                if case .message = f.type, leafMustBeScalar { return "field '\(part)' is a message, not a scalar" }
            } else {
                guard case .message(let next) = f.type else { return "field '\(part)' is not a message" }
                current = next
            }
        }
        return nil
    }
}
