import ArgumentParser
import BazaarCore
import BazaarMesh
import BazaarSchema
import BazaarTransport
import BazaarWire
import CBazaarProtobufC
import Foundation
import ShopKit

/// `bazaar call`: a gRPC client for the mesh, driven by server reflection (grpcurl's job, with
/// the mesh's identities by default).
struct CallCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "call",
        abstract: "Call a gRPC service: list its services, describe them, or call a method with JSON in and out.",
        discussion: """
            The schema comes from the server's reflection service (or --descriptors FILE, a FileDescriptorSet).
            Mutual TLS as the mesh identity --identity (default client; certificates from BAZAAR_TLS_DIR, .run/certs,
            as `bazaar certs` makes them); --plaintext for h2c.

            Examples:
              bazaar call 127.0.0.1:9101 list
              bazaar call 127.0.0.1:9101 describe shop.v1.CatalogService
              bazaar call 127.0.0.1:9101 describe shop.v1.Product
              bazaar call 127.0.0.1:9101 shop.v1.CatalogService/GetProduct -d '{"sku": "TEA-1"}'
              bazaar call --protocol connect 127.0.0.1:9101 shop.v1.CatalogService/GetProduct -d '{"sku": "TEA-1"}'
              bazaar call 127.0.0.1:9104 shop.v1.OrdersService/WatchOrder -d @request.json -H 'x-bazaar-user-id: u1'
              echo '[{"text": "a"}, {"text": "b"}]' | bazaar call 127.0.0.1:9200 hello.v1.GreeterService/Join -d @-

            A method's request is one JSON object; for a client- or bidirectional-streaming method, a JSON array
            of them. Each response message is printed as one JSON document. A failed call prints its status on
            standard error and exits with 1.
            """)

    @Argument(help: "The server: host:port, or dns:///host:port.")
    var target: String

    @Argument(help: "list [SERVICE], describe SYMBOL, or SERVICE/METHOD (also package.Service.Method).")
    var what: [String] = []

    @Option(name: .shortAndLong, help: "The request as JSON; @FILE reads a file, @- standard input (default {}).")
    var data: String?

    @Option(name: .customShort("H"), help: "Metadata 'name: value' to send (repeatable).")
    var header: [String] = []

    @Option(help: "Deadline of the call, e.g. 5s or 500ms (default 10s; server streams: none).")
    var deadline: String?

    @Option(help: "The mesh identity to present (its certificate and key from BAZAAR_TLS_DIR).")
    var identity: String = "client"

    @Option(
        name: .customLong("server-identity"),
        help: "The SPIFFE identity the server must have (spiffe://... or a service name).")
    var serverIdentity: String?

    @Flag(help: "Plaintext HTTP/2 (h2c) instead of mutual TLS.")
    var plaintext = false

    @Option(
        name: .customLong("protocol"),
        help:
            "grpc (default) or connect: Connect's protocol, for servers reached through proxies that pass plain HTTP only."
    )
    var rpcProtocol = "grpc"

    @Option(help: "A FileDescriptorSet to use instead of server reflection.")
    var descriptors: String?

    @Flag(help: "One line per JSON document instead of indented output.")
    var compact = false

    mutating func validate() throws {
        guard !what.isEmpty else { throw ValidationError("say what to do: list, describe SYMBOL, or SERVICE/METHOD") }
        if what[0] == "describe", what.count != 2 { throw ValidationError("describe takes one symbol") }
        if what[0] == "list", what.count > 2 { throw ValidationError("list takes at most one service") }
        if what[0] != "list", what[0] != "describe", what.count != 1 {
            throw ValidationError("unexpected arguments after the method: \(what.dropFirst())")
        }
        for h in header where !h.contains(":") { throw ValidationError("-H '\(h)': expected 'name: value'") }
        guard RPCProtocol(rawValue: rpcProtocol) != nil else {
            throw ValidationError("--protocol \(rpcProtocol): expected grpc or connect")
        }
    }

    func run() throws {
        let command = self
        try runBlocking {
            do {
                try await command.execute()
            } catch let e as RPCError {
                diagnostic("ERROR: \(e.code) \(e.message)")
                throw ExitCode.failure
            } catch let e as DescriptorPool.BuildError {
                diagnostic("ERROR: the server's schema cannot be used: \(e.description)")
                throw ExitCode.failure
            }
        }
    }

    func execute() async throws {
        let env = ShopEnvironment(ProcessEnvironment.current)
        var security: TransportSecurity = .plaintext
        if !plaintext {
            var tls = TLSConfiguration.mesh(directory: env["TLS_DIR"] ?? ".run/certs", service: identity)
            if let s = serverIdentity {
                tls.expectedServerIdentity = s.hasPrefix("spiffe://") ? s : "spiffe://\(env.trustDomain)/\(s)"
            }
            security = .mutualTLS(tls)
        }
        var connection = ChannelConfiguration(endpoints: [], security: security)
        connection.rpcProtocol = RPCProtocol(rawValue: rpcProtocol) ?? .grpc
        let channel = try MeshChannel(target: target, security: security, connection: connection)
        defer { Task { await channel.shutdown() } }
        let reflection = ReflectionClient(transport: channel)
        let timeout = try deadline.map { text -> Duration in
            guard let d = Environment.parseDuration(text) else {
                throw RPCError(.invalidArgument, "--deadline \(text): expected e.g. 5s or 250ms")
            }
            return d
        }
        // The schema from --descriptors, built once.
        let fixed: Schema? = try descriptors.map { path in
            guard let bytes = FileManager.default.contents(atPath: path) else {
                throw RPCError(.invalidArgument, "--descriptors: cannot read \(path)")
            }
            return try Schema(descriptorSet: Array(bytes))
        }

        switch what[0] {
        case "list":
            if what.count == 2 {
                let schema = try await Self.schema(fixed, reflection, what[1])
                guard let s = schema.service(what[1]) else { throw RPCError(.notFound, "no service \(what[1])") }
                for m in s.methods { print("\(s.name).\(m.method)") }
            } else if let fixed {
                for s in fixed.services { print(s.name) }
            } else {
                for s in try await reflection.schema().services { print(s) }
            }
        case "describe":
            let symbol = what[1].hasPrefix(".") ? String(what[1].dropFirst()) : what[1]
            let schema = try await Self.schema(fixed, reflection, symbol)
            print(Self.describe(symbol, in: schema))
        default:
            try await call(what[0], channel: channel, reflection: reflection, fixed: fixed, timeout: timeout)
        }
    }

    func call(_ name: String, channel: MeshChannel, reflection: ReflectionClient, fixed: Schema?, timeout: Duration?)
        async throws
    {
        // SERVICE/METHOD, or SERVICE.METHOD as grpcurl also takes.
        let parts: (String, String)
        if let slash = name.lastIndex(of: "/") {
            parts = (String(name[..<slash]), String(name[name.index(after: slash)...]))
        } else if let dot = name.lastIndex(of: ".") {
            parts = (String(name[..<dot]), String(name[name.index(after: dot)...]))
        } else {
            throw RPCError(.invalidArgument, "'\(name)' is not SERVICE/METHOD")
        }
        let service = parts.0.hasPrefix("/") ? String(parts.0.dropFirst()) : parts.0
        let schema = try await Self.schema(fixed, reflection, service)
        guard let s = schema.service(service) else { throw RPCError(.notFound, "the server has no service \(service)") }
        guard let method = s.methods.first(where: { $0.method == parts.1 }) else {
            throw RPCError(
                .notFound,
                "\(service) has no method \(parts.1); it has \(s.methods.map(\.method).joined(separator: ", "))")
        }
        guard let input = schema.message(method.inputType), let output = schema.message(method.outputType) else {
            throw RPCError(.internal, "the message types of \(method.path) are missing from the schema")
        }

        // The request(s).
        let text: [UInt8]
        switch data {
        case nil: text = Array("{}".utf8)
        case "@-"?: text = Array(FileHandle.standardInput.readDataToEndOfFile())
        case let d? where d.hasPrefix("@"):
            guard let bytes = FileManager.default.contents(atPath: String(d.dropFirst())) else {
                throw RPCError(.invalidArgument, "-d \(d): cannot read \(d.dropFirst())")
            }
            text = Array(bytes)
        case let d?: text = Array(d.utf8)
        }
        let json: JSONValue
        do { json = try JSONValue.parse(text) } catch {
            throw RPCError(.invalidArgument, "the request is not JSON: \(error)")
        }
        let streamingIn = method.kind == .clientStreaming || method.kind == .bidirectionalStreaming
        let items: [JSONValue]
        switch json {
        case .array(let a) where streamingIn: items = a
        case .array: throw RPCError(.invalidArgument, "\(method.path) takes one request: a JSON object, not an array")
        default: items = [json]
        }
        var requests: [[UInt8]] = []
        for (i, item) in items.enumerated() {
            do {
                requests.append(try ProtoJSON.decode(item, as: input))
            } catch {
                throw RPCError(.invalidArgument, "request\(streamingIn ? " \(i)" : ""): \(error)")
            }
        }

        var options = CallOptions(
            timeout: timeout
                ?? (method.kind == .serverStreaming || method.kind == .bidirectionalStreaming ? nil : .seconds(10)))
        for h in header {
            let colon = h.firstIndex(of: ":")!
            options.metadata.add(
                String(h[..<colon]).trimmingCharacters(in: .whitespaces),
                String(h[h.index(after: colon)...]).trimmingCharacters(in: .whitespaces))
        }
        func show(_ bytes: [UInt8]) throws {
            let value = try ProtoJSON.encode(bytes, as: output)
            print(compact ? value.text : Self.pretty(value))
        }
        if method.kind == .unary {
            try show(try await channel.unary(method, request: requests[0], options: options))
            return
        }
        let sent = requests
        for try await reply in channel.streaming(
            method,
            requests: RPCStream { c in
                for r in sent { c.yield(r) }
                c.finish()
            }, options: options)
        {
            try show(reply)
        }
    }

    /// The schema around `symbol`: from the descriptor set when given, else asked of the server.
    static func schema(_ fixed: Schema?, _ reflection: ReflectionClient, _ symbol: String) async throws -> Schema {
        if let fixed { return fixed }
        return try Schema(serializedFiles: try await reflection.files(containing: symbol))
    }

    /// A service's methods (with their HTTP bindings and auth) or a message's fields, in the
    /// `.proto` form.
    static func describe(_ symbol: String, in schema: Schema) -> String {
        if let s = schema.service(symbol) {
            var out = "service \(s.name) {\n"
            for m in s.methods {
                let input =
                    (m.kind == .clientStreaming || m.kind == .bidirectionalStreaming ? "stream " : "") + m.inputType
                let output =
                    (m.kind == .serverStreaming || m.kind == .bidirectionalStreaming ? "stream " : "") + m.outputType
                out += "  rpc \(m.method)(\(input)) returns (\(output));\n"
                for h in m.options.http {
                    out += "    // \(h.method) \(h.path)\(h.body.isEmpty ? "" : " body: \(h.body)")\n"
                }
                out +=
                    "    // auth: \(m.options.auth.level.rawValue)\(m.options.auth.roles.isEmpty ? "" : " roles: \(m.options.auth.roles.joined(separator: ","))")"
                if let d = m.options.defaultDeadline { out += ", deadline: \(d)" }
                out += m.options.idempotency.isRetrySafe ? ", retry-safe\n" : "\n"
            }
            return out + "}"
        }
        if let d = schema.message(symbol) {
            var out = "message \(symbol) {\n"
            for f in UnsafeBufferPointer(start: d.pointee.fields, count: Int(d.pointee.n_fields)) {
                let label =
                    f.label == PROTOBUF_C_LABEL_REPEATED
                    ? "repeated " : f.label == PROTOBUF_C_LABEL_OPTIONAL ? "optional " : ""
                let type: String
                switch f.type {
                case PROTOBUF_C_TYPE_MESSAGE:
                    type = String(
                        cString: f.descriptor.assumingMemoryBound(to: ProtobufCMessageDescriptor.self).pointee.name)
                case PROTOBUF_C_TYPE_ENUM:
                    type = String(
                        cString: f.descriptor.assumingMemoryBound(to: ProtobufCEnumDescriptor.self).pointee.name)
                default: type = Self.scalarNames[f.type.rawValue] ?? "?"
                }
                out += "  \(label)\(type) \(String(cString: f.name)) = \(f.id);\n"
            }
            return out + "}"
        }
        if let e = schema.pool.enums[symbol] {
            var out = "enum \(symbol) {\n"
            for v in UnsafeBufferPointer(start: e.pointee.values, count: Int(e.pointee.n_values)) {
                out += "  \(String(cString: v.name)) = \(v.value);\n"
            }
            return out + "}"
        }
        for s in schema.services {
            if let m = s.methods.first(where: { "\(s.name).\($0.method)" == symbol }) {
                return describe(s.name, in: schema).split(separator: "\n").filter { $0.contains(" \(m.method)(") }
                    .joined()
            }
        }
        return "\(symbol): not found in the schema"
    }

    static let scalarNames: [UInt32: String] = [
        PROTOBUF_C_TYPE_INT32.rawValue: "int32", PROTOBUF_C_TYPE_SINT32.rawValue: "sint32",
        PROTOBUF_C_TYPE_SFIXED32.rawValue: "sfixed32",
        PROTOBUF_C_TYPE_INT64.rawValue: "int64", PROTOBUF_C_TYPE_SINT64.rawValue: "sint64",
        PROTOBUF_C_TYPE_SFIXED64.rawValue: "sfixed64",
        PROTOBUF_C_TYPE_UINT32.rawValue: "uint32", PROTOBUF_C_TYPE_FIXED32.rawValue: "fixed32",
        PROTOBUF_C_TYPE_UINT64.rawValue: "uint64",
        PROTOBUF_C_TYPE_FIXED64.rawValue: "fixed64", PROTOBUF_C_TYPE_FLOAT.rawValue: "float",
        PROTOBUF_C_TYPE_DOUBLE.rawValue: "double",
        PROTOBUF_C_TYPE_BOOL.rawValue: "bool", PROTOBUF_C_TYPE_STRING.rawValue: "string",
        PROTOBUF_C_TYPE_BYTES.rawValue: "bytes",
    ]

    /// JSON indented by two spaces, members in their order.
    static func pretty(_ v: JSONValue, indent: String = "") -> String {
        let inner = indent + "  "
        switch v {
        case .object(let members) where !members.isEmpty:
            return "{\n"
                + members.map { inner + JSONValue.string($0.0).text + ": " + pretty($0.1, indent: inner) }.joined(
                    separator: ",\n")
                + "\n" + indent + "}"
        case .array(let items) where !items.isEmpty:
            return "[\n" + items.map { inner + pretty($0, indent: inner) }.joined(separator: ",\n") + "\n" + indent
                + "]"
        default:
            return v.text
        }
    }
}
