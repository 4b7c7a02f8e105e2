import BazaarCore
import BazaarSchema
import BazaarWire

/// One REST binding of an RPC method: an HTTP method and path template, where the body goes and
/// which part of the response is the body.
public struct Route: Sendable {
    public let method: MethodDescriptor
    /// The configured upstream that serves the method.
    public let upstream: String
    public let httpMethod: String
    public let template: PathTemplate
    /// `*`, a top-level field name, or empty.
    public let body: String
    public let responseBody: String
    public let input: MessageSchema
    public let output: MessageSchema
    /// Keeps run-time descriptors (`input`, `output`) alive while the route is in use.
    let owner: (any Sendable)?

    /// Fields that path variables and the body set; query parameters may set any other.
    public var boundFields: Set<String> {
        var s = Set(template.variables.map { $0.fieldPath.joined(separator: ".") })
        if !body.isEmpty && body != "*" { s.insert(body) }
        return s
    }
}

/// What a request matched.
public enum RouteMatch {
    case found(Route, variables: [([String], String)])
    /// The path exists with other methods: 405 with `Allow`.
    case methodNotAllowed(allowed: [String])
    case notFound
}

/// The REST routes of a set of upstreams' services, built from their IDL (`google.api.http`,
/// additional bindings included). Problems are refused with a message naming the methods (and,
/// across upstreams, both upstreams): unparsable templates, variables or body fields the request
/// message lacks, and two routes that match exactly the same requests.
public struct RouteTable: Sendable {
    public let routes: [Route]
    /// The field rules of every upstream's messages, for the OpenAPI document.
    public let fieldRules: FieldRuleIndex
    /// Indexes into `routes` by the first two path segments, for templates that start with two
    /// literals (`/v1/products/...`); `otherRoutes` holds the rest. A request is tried against
    /// its bucket and the others only, in the order of `routes`.
    private let buckets: [String: [Int]]
    private let otherRoutes: [Int]

    public struct BuildError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Routes of compiled services, each its own upstream (named after the service).
    public init(services: [ServiceDescriptor]) throws(BuildError) {
        try self.init(schemas: services.map { UpstreamSchema(upstream: $0.name, services: [$0]) })
    }

    public init(schemas: [UpstreamSchema]) throws(BuildError) {
        var routes: [Route] = []
        var problems: [String] = []
        fieldRules = schemas.reduce(FieldRuleIndex()) { $0.merging($1.fieldRules) }
        for schema in schemas {
            let (r, p) = Self.routes(of: schema)
            routes += r
            problems += p
        }
        // Two routes for one HTTP method with the same shape would take the same requests.
        var seen: [String: Route] = [:]
        for r in routes {
            let key = r.httpMethod + " " + r.template.shape
            if let other = seen[key] {
                let whose = other.upstream == r.upstream ? "" : " of upstreams \(other.upstream) and \(r.upstream)"
                problems.append(
                    "\(r.httpMethod) \(r.template) (\(r.method.path)) and \(other.httpMethod) \(other.template) (\(other.method.path))\(whose) match the same requests"
                )
            }
            seen[key] = r
        }
        guard problems.isEmpty else {
            throw BuildError(description: "the HTTP routes are inconsistent:\n  " + problems.joined(separator: "\n  "))
        }
        // Most specific first, so the first match is the one to take.
        self.routes = routes.sorted { $0.template.isMoreSpecific(than: $1.template) }
        var buckets: [String: [Int]] = [:]
        var others: [Int] = []
        for (i, r) in self.routes.enumerated() {
            if r.template.segments.count >= 2, case .literal(let a) = r.template.segments[0],
                case .literal(let b) = r.template.segments[1]
            {
                buckets[a + "/" + b, default: []].append(i)
            } else {
                others.append(i)
            }
        }
        self.buckets = buckets
        self.otherRoutes = others
    }

    /// The routes that may match segments beginning `path`, in table order.
    private func candidates(_ path: [String], _ verbPath: [String]?) -> [Int] {
        func key(_ p: [String]) -> String? { p.count >= 2 ? p[0] + "/" + p[1] : nil }
        var found = key(path).flatMap { buckets[$0] } ?? []
        if let v = verbPath, let k = key(v), k != key(path), let more = buckets[k] { found += more }
        if found.isEmpty { return otherRoutes }
        if !otherRoutes.isEmpty || verbPath != nil { found = Array(Set(found + otherRoutes)).sorted() }
        return found
    }

    /// One upstream's routes, and what is wrong with its bindings.
    static func routes(of schema: UpstreamSchema) -> ([Route], [String]) {
        var routes: [Route] = []
        var problems: [String] = []
        for service in schema.services {
            for m in service.methods {
                for rule in m.options.http {
                    guard let input = schema.message(m.inputType), let output = schema.message(m.outputType) else {
                        problems.append("\(m.path): message types \(m.inputType) / \(m.outputType) not known")
                        continue
                    }
                    do {
                        let t = try PathTemplate(rule.path)
                        for v in t.variables {
                            guard let f = input.field(path: v.fieldPath), !f.isRepeated, f.kind != .message else {
                                throw PathTemplate.ParseError(
                                    description:
                                        "{\(v.fieldPath.joined(separator: "."))} is not a singular scalar field of \(m.inputType)"
                                )
                            }
                        }
                        if !rule.body.isEmpty, rule.body != "*", input.field(rule.body) == nil {
                            throw PathTemplate.ParseError(
                                description: "body \(rule.body) is not a field of \(m.inputType)")
                        }
                        if !rule.responseBody.isEmpty, output.field(rule.responseBody) == nil {
                            throw PathTemplate.ParseError(
                                description: "response_body \(rule.responseBody) is not a field of \(m.outputType)")
                        }
                        if m.kind == .clientStreaming || m.kind == .bidirectionalStreaming {
                            throw PathTemplate.ParseError(description: "client-streaming methods have no REST binding")
                        }
                        routes.append(
                            Route(
                                method: m, upstream: schema.upstream, httpMethod: rule.method.uppercased(), template: t,
                                body: rule.body, responseBody: rule.responseBody, input: input, output: output,
                                owner: schema.owner))
                    } catch {
                        problems.append("\(m.path) \(rule.method) \(rule.path): \(error)")
                    }
                }
            }
        }
        return (routes, problems)
    }

    /// The route for a request. `path` is the raw request path (before `?`).
    public func match(method: String, path: String) -> RouteMatch {
        guard let (segments, verb) = Self.split(path) else { return .notFound }
        var allowed: [String] = []
        for i in candidates(segments, verb?.0) {
            let r = routes[i]
            let vars: [([String], String)]?
            if r.template.verb != nil {
                guard let verb else { continue }
                vars = r.template.match(verb.0, verb: verb.1)
            } else {
                vars = r.template.match(segments, verb: nil)
            }
            guard let vars else { continue }
            if r.httpMethod == method || (method == "HEAD" && r.httpMethod == "GET") {
                return .found(r, variables: vars)
            }
            if !allowed.contains(r.httpMethod) { allowed.append(r.httpMethod) }
        }
        return allowed.isEmpty ? .notFound : .methodNotAllowed(allowed: allowed)
    }

    /// Path segments (percent-decoded), and the same with a `:verb` split off the last one.
    static func split(_ path: String) -> ([String], ([String], String)?)? {
        guard path.hasPrefix("/") else { return nil }
        let raw = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        let decoded = raw.compactMap { PercentEncoding.decode($0) }
        guard decoded.count == raw.count else { return nil }
        var verbForm: ([String], String)?
        if let last = raw.last, last.utf8.contains(UInt8(ascii: ":")), let colon = last.lastIndex(of: ":") {
            let head = String(last[..<colon])
            let verb = String(last[last.index(after: colon)...])
            if let h = PercentEncoding.decode(head), !verb.isEmpty {
                verbForm = (Array(decoded.dropLast()) + [h], verb)
            }
        }
        return (decoded, verbForm)
    }
}
