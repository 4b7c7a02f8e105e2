import BazaarCore
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
                let schema = messageSchema(d, ref)
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

    static func messageSchema(_ d: MessageSchema, _ ref: (MessageSchema) -> JSONValue) -> JSONValue {
        .object([
            ("type", .string("object")), ("properties", .object(d.fields.map { ($0.jsonName, fieldSchema($0, ref)) })),
        ])
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
