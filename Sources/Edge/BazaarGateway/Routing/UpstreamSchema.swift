import BazaarCore
import BazaarSchema
import BazaarWire

/// What one upstream serves: its services, their methods with the IDL options, and the message
/// descriptors to map their requests and responses. Learned from the upstream at run time (server
/// reflection, or a descriptor-set file) or, for tests and tools, from compiled code.
public struct UpstreamSchema: Sendable {
    /// The upstream's name in the gateway's configuration (`catalog`, `hello`).
    public let upstream: String
    public let services: [ServiceDescriptor]
    /// The field rules its messages declare, for the OpenAPI document.
    public let fieldRules: FieldRuleIndex
    private let lookup: @Sendable (String) -> MessageSchema?
    /// Keeps run-time descriptors alive as long as a route or a request uses them.
    let owner: (any Sendable)?

    /// Services that belong to the mesh's plumbing, not to an API: never routed.
    public static let plumbing: Set<String> = [
        "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection",
        "grpc.health.v1.Health",
    ]

    /// From a schema built at run time; reflection and health are left out.
    public init(upstream: String, schema: Schema) {
        self.upstream = upstream
        services = schema.services.filter { !Self.plumbing.contains($0.name) }
        fieldRules = schema.fieldRules
        lookup = { schema.message($0).map(MessageSchema.init) }
        owner = schema
    }

    /// From compiled services (their `ProtoFile`s give the message descriptors).
    public init(upstream: String, services: [ServiceDescriptor]) {
        var types: [String: MessageSchema] = [:]
        var files: [String: ProtoFile] = [:]
        for s in services { for f in s.file.withDependencies { files[f.path] = f } }
        fieldRules = FieldRuleIndex(protoFiles: Array(files.values))
        for s in services {
            for file in s.file.withDependencies {
                for t in file.messageTypes { types[t.protoMessageName] = MessageSchema(t.protobufCDescriptor) }
            }
        }
        self.upstream = upstream
        self.services = services.filter { !Self.plumbing.contains($0.name) }
        let found = types
        lookup = { found[$0] }
        owner = nil
    }

    /// A message's descriptor by full name.
    public func message(_ name: String) -> MessageSchema? { lookup(name) }
}
