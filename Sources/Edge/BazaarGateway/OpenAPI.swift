import BazaarCore
import BazaarOptions
import BazaarSchema
import BazaarWire

/// An OpenAPI 3.1 document of the gateway's routes, from the same route table and JSON mapping
/// the gateway serves with: path and query parameters, request bodies, success statuses, the
/// streaming formats, bearer auth, and the google.rpc.Status error body.
public enum OpenAPI {
    public static func document(routes: RouteTable, title: String, version: String = "v1") -> JSONValue {
        var schemas: [(String, JSONValue)] = []
        var seen: Set<String> = []
        func ref(_ d: MessageSchema) -> JSONValue {
            let name = d.name
            if let wkt = wellKnown(name) { return wkt }
            if !seen.contains(name) {
                seen.insert(name)
                schemas.append((name, .null))  // placeholder keeps the order; filled below
                let schema = messageSchema(d, ref, rules: routes.fieldRules)
                if let i = schemas.firstIndex(where: { $0.0 == name }) { schemas[i].1 = schema }
            }
            return .object([("$ref", .string("#/components/schemas/\(name)"))])
        }

        var paths: [(String, [(String, JSONValue)])] = []
        for route in routes.routes.sorted(by: {
            ($0.template.description, $0.httpMethod) < ($1.template.description, $1.httpMethod)
        }) {
            let m = route.method
            if m.options.auth.level == .internal { continue }
            let path = openAPIPath(route.template)
            var parameters: [JSONValue] = []
            for v in route.template.variables {
                parameters.append(
                    .object([
                        ("name", .string(paramName(v.fieldPath))), ("in", .string("path")), ("required", .bool(true)),
                        ("schema", fieldSchemaAt(v.fieldPath, route.input, ref)),
                    ]))
            }
            if route.body != "*" {
                for (name, schema) in queryParameters(route, ref) {
                    parameters.append(
                        .object([
                            ("name", .string(name)), ("in", .string("query")), ("required", .bool(false)),
                            ("schema", schema),
                        ]))
                }
            }
            var op: [(String, JSONValue)] = [
                (
                    "operationId",
                    .string(
                        m.service.split(separator: ".").last.map(String.init).map { "\($0)_\(m.method)" } ?? m.method)
                ),
                ("tags", .array([.string(m.service)])),
            ]
            if !parameters.isEmpty { op.append(("parameters", .array(parameters))) }
            if !route.body.isEmpty {
                let schema: JSONValue =
                    route.body == "*" ? ref(route.input) : fieldSchemaAt([route.body], route.input, ref)
                op.append(
                    (
                        "requestBody",
                        .object([
                            ("required", .bool(false)),
                            ("content", .object([("application/json", .object([("schema", schema)]))])),
                        ])
                    ))
            }
            let status = m.options.successStatus == 0 ? 200 : Int(m.options.successStatus)
            var output: JSONValue = ref(route.output)
            if !route.responseBody.isEmpty { output = fieldSchemaAt([route.responseBody], route.output, ref) }
            var responses: [(String, JSONValue)] = []
            if m.kind == .serverStreaming {
                responses.append(
                    (
                        String(status),
                        .object([
                            ("description", .string("one message per event or line")),
                            (
                                "content",
                                .object([
                                    ("application/x-ndjson", .object([("schema", output)])),
                                    (
                                        "text/event-stream",
                                        .object([("schema", .object([("type", .string("string"))]))])
                                    ),
                                ])
                            ),
                        ])
                    ))
            } else if status == 204 {
                responses.append(("204", .object([("description", .string("done"))])))
            } else {
                responses.append(
                    (
                        String(status),
                        .object([
                            ("description", .string("success")),
                            ("content", .object([("application/json", .object([("schema", output)]))])),
                        ])
                    ))
            }
            responses.append(
                (
                    "default",
                    .object([
                        ("description", .string("an error (google.rpc.Status)")),
                        (
                            "content",
                            .object([
                                (
                                    "application/json",
                                    .object([
                                        (
                                            "schema",
                                            .object([("$ref", .string("#/components/schemas/google.rpc.Status"))])
                                        )
                                    ])
                                )
                            ])
                        ),
                    ])
                ))
            op.append(("responses", .object(responses)))
            if m.options.auth.level == .authenticated {
                op.append(("security", .array([.object([("bearerAuth", .array([]))])])))
            }
            if let i = paths.firstIndex(where: { $0.0 == path }) {
                paths[i].1.append((route.httpMethod.lowercased(), .object(op)))
            } else {
                paths.append((path, [(route.httpMethod.lowercased(), .object(op))]))
            }
        }
        schemas.append(
            (
                "google.rpc.Status",
                .object([
                    ("type", .string("object")),
                    (
                        "properties",
                        .object([
                            ("code", .object([("type", .string("integer"))])),
                            ("message", .object([("type", .string("string"))])),
                            ("details", .object([("type", .string("array")), ("items", .object([]))])),
                        ])
                    ),
                ])
            ))
        return .object([
            ("openapi", .string("3.1.0")),
            ("info", .object([("title", .string(title)), ("version", .string(version))])),
            ("paths", .object(paths.map { ($0.0, .object($0.1)) })),
            (
                "components",
                .object([
                    ("schemas", .object(schemas)),
                    (
                        "securitySchemes",
                        .object([
                            (
                                "bearerAuth",
                                .object([
                                    ("type", .string("http")), ("scheme", .string("bearer")),
                                    ("bearerFormat", .string("JWT")),
                                ])
                            )
                        ])
                    ),
                ])
            ),
        ])
    }

    /// A path parameter's name: the field path with `_` for `.` (`product_id` for `{product.id}`),
    /// since OpenAPI tools treat names as identifiers.
    static func paramName(_ path: [String]) -> String { path.joined(separator: "_") }

    /// `/v1/{name=shelves/*}:verb` -> `/v1/{name}:verb`.
    static func openAPIPath(_ t: PathTemplate) -> String {
        var parts: [String] = []
        var i = 0
        while i < t.segments.count {
            if let v = t.variables.first(where: { $0.start == i }) {
                parts.append("{\(paramName(v.fieldPath))}")
                i = v.end
                continue
            }
            switch t.segments[i] {
            case .literal(let l): parts.append(l)
            case .any: parts.append("*")
            case .rest: parts.append("**")
            }
            i += 1
        }
        return "/" + parts.joined(separator: "/") + (t.verb.map { ":" + $0 } ?? "")
    }

    /// Query parameters of a route: scalar fields not bound by the path or body, and one level of
    /// scalar fields inside message fields (`page.pageSize`).
    static func queryParameters(_ route: Route, _ ref: (MessageSchema) -> JSONValue) -> [(String, JSONValue)] {
        var out: [(String, JSONValue)] = []
        let bound = route.boundFields
        for f in route.input.fields {
            let name = f.name
            if bound.contains(name) || (!route.body.isEmpty && route.body == name) { continue }
            if let sub = f.message {
                if wellKnown(sub.name) != nil {
                    out.append((f.jsonName, fieldSchema(f, ref)))
                    continue
                }
                if f.isRepeated { continue }
                for g in sub.fields where g.kind != .message && !g.isRepeated {
                    if bound.contains("\(name).\(g.name)") { continue }
                    out.append(("\(f.jsonName).\(g.jsonName)", fieldSchema(g, ref)))
                }
                continue
            }
            out.append((f.jsonName, fieldSchema(f, ref)))
        }
        return out
    }

    static func messageSchema(_ d: MessageSchema, _ ref: (MessageSchema) -> JSONValue, rules: FieldRuleIndex)
        -> JSONValue
    {
        var required: [JSONValue] = []
        let properties: [(String, JSONValue)] = d.fields.map { f in
            let rule = rules.rule(message: d.name, field: f.name)
            if rule?.required == true { required.append(.string(f.jsonName)) }
            return (f.jsonName, constrained(fieldSchema(f, ref), f, rule))
        }
        var out: [(String, JSONValue)] = [("type", .string("object")), ("properties", .object(properties))]
        if !required.isEmpty { out.append(("required", .array(required))) }
        return .object(out)
    }

    /// A field's schema with its IDL rules as JSON Schema keywords (minLength, pattern, minimum,
    /// maxItems, ...). A rule on a repeated field's elements goes into `items`. Integers wider than
    /// 32 bits are JSON strings in proto3 JSON, so their bounds are documented in words instead.
    static func constrained(_ schema: JSONValue, _ f: FieldSchema, _ rule: Bazaar_Options_V1_FieldRules?) -> JSONValue {
        guard let rule, case .object(var pairs) = schema else { return schema }
        var element: [(String, JSONValue)] = []
        if let n = rule.minLen { element.append(("minLength", .unsigned(n))) }
        if let n = rule.maxLen { element.append(("maxLength", .unsigned(n))) }
        if !rule.pattern.isEmpty { element.append(("pattern", .string(rule.pattern))) }
        if rule.email { element.append(("format", .string("email"))) }
        var words: [String] = []
        switch f.kind {
        case .int64, .uint64:
            if let n = rule.min { words.append("at least \(FieldCheck.text(n))") }
            if let n = rule.max { words.append("at most \(FieldCheck.text(n))") }
        default:
            if let n = rule.min { element.append(("minimum", .double(n))) }
            if let n = rule.max { element.append(("maximum", .double(n))) }
        }
        if rule.singleLine { words.append("a single line without control characters") }
        if rule.required && f.kind == .string && !f.isRepeated { element.append(("minLength", .unsigned(1))) }
        if f.isRepeated && f.mapValue == nil {
            if let n = rule.minItems { pairs.append(("minItems", .unsigned(n))) }
            if let n = rule.maxItems { pairs.append(("maxItems", .unsigned(n))) }
            if rule.required && rule.minItems == nil { pairs.append(("minItems", .unsigned(1))) }
            if !element.isEmpty, let i = pairs.firstIndex(where: { $0.0 == "items" }),
                case .object(let items) = pairs[i].1
            {
                pairs[i].1 = .object(items + element)
            }
        } else if f.mapValue != nil {
            if let n = rule.minItems { pairs.append(("minProperties", .unsigned(n))) }
            if let n = rule.maxItems { pairs.append(("maxProperties", .unsigned(n))) }
        } else {
            pairs += element
        }
        if !words.isEmpty { pairs.append(("description", .string("Must be " + words.joined(separator: ", ") + "."))) }
        return .object(pairs)
    }

    static func fieldSchemaAt(_ path: [String], _ d: MessageSchema, _ ref: (MessageSchema) -> JSONValue) -> JSONValue {
        d.field(path: path).map { fieldSchema($0, ref) } ?? .object([])
    }

    static func fieldSchema(_ f: FieldSchema, _ ref: (MessageSchema) -> JSONValue) -> JSONValue {
        if let value = f.mapValue {
            return .object([("type", .string("object")), ("additionalProperties", elementSchema(value, ref))])
        }
        let element = elementSchema(f, ref)
        return f.isRepeated ? .object([("type", .string("array")), ("items", element)]) : element
    }

    static func elementSchema(_ f: FieldSchema, _ ref: (MessageSchema) -> JSONValue) -> JSONValue {
        func t(_ type: String, _ extra: [(String, JSONValue)] = []) -> JSONValue {
            .object([("type", .string(type))] + extra)
        }
        switch f.kind {
        case .int32:
            return t(
                "integer",
                [
                    ("format", .string("int32")), ("minimum", .integer(Int64(Int32.min))),
                    ("maximum", .integer(Int64(Int32.max))),
                ])
        case .uint32:
            return t(
                "integer",
                [("format", .string("int64")), ("minimum", .integer(0)), ("maximum", .integer(Int64(UInt32.max)))])
        case .int64:
            // Written as strings; strings and numbers are read.
            return t("string", [("format", .string("int64")), ("pattern", .string("^-?[0-9]+$"))])
        case .uint64:
            return t("string", [("format", .string("uint64")), ("pattern", .string("^[0-9]+$"))])
        case .float, .double:
            return .object([("type", .array([.string("number"), .string("string")]))])
        case .bool: return t("boolean")
        case .string: return t("string")
        case .bytes: return t("string", [("contentEncoding", .string("base64"))])
        case .enumeration: return t("string", [("enum", .array(f.enumValues.map(JSONValue.string)))])
        case .message: return f.message.map(ref) ?? .object([])
        }
    }

    /// The JSON schemas of the well-known types' special forms.
    static func wellKnown(_ name: String) -> JSONValue? {
        switch name {
        case "google.protobuf.Timestamp": .object([("type", .string("string")), ("format", .string("date-time"))])
        case "google.protobuf.Duration":
            .object([("type", .string("string")), ("pattern", .string("^-?[0-9]+(\\.[0-9]{1,9})?s$"))])
        case "google.protobuf.FieldMask": .object([("type", .string("string"))])
        case "google.protobuf.Struct": .object([("type", .string("object"))])
        case "google.protobuf.Value": .object([])
        case "google.protobuf.ListValue": .object([("type", .string("array"))])
        case "google.protobuf.Empty": .object([("type", .string("object"))])
        case "google.protobuf.StringValue", "google.protobuf.BytesValue": .object([("type", .string("string"))])
        case "google.protobuf.BoolValue": .object([("type", .string("boolean"))])
        case "google.protobuf.Int32Value", "google.protobuf.UInt32Value": .object([("type", .string("integer"))])
        case "google.protobuf.Int64Value", "google.protobuf.UInt64Value": .object([("type", .string("string"))])
        case "google.protobuf.DoubleValue", "google.protobuf.FloatValue": .object([("type", .string("number"))])
        default: nil
        }
    }
}
