import BazaarCore
import BazaarOptions
import BazaarWire
import CBazaarProtobufC
import WellKnownTypes

/// A schema known at run time: the `FileDescriptorProto`s of some services (from server
/// reflection or a descriptor-set file), their messages as protobuf-c descriptors, and their
/// methods with the IDL options resolved as `bazaar-codegen` resolves them for compiled code
/// (`google.api.http` bindings, Bazaar's auth, deadline and success status with the service's
/// defaults, the idempotency level).
public final class Schema: Sendable {
    public let pool: DescriptorPool
    /// Every service the files define, in file order.
    public let services: [ServiceDescriptor]
    /// The field rules the files declare (for documents such as OpenAPI).
    public let fieldRules: FieldRuleIndex

    public init(files: [Google_Protobuf_FileDescriptorProto]) throws(DescriptorPool.BuildError) {
        pool = try DescriptorPool(files: files)
        var protoFiles: [String: ProtoFile] = [:]
        var services: [ServiceDescriptor] = []
        for file in pool.files {
            let name = file.name ?? ""
            let bytes = (try? file.serializedBytes()) ?? []
            let deps = file.dependency.compactMap { protoFiles[$0] }
            let protoFile = ProtoFile(path: name, dependencies: deps, bytes: { bytes })
            protoFiles[name] = protoFile
            for s in file.service {
                let full = (file.package ?? "").isEmpty ? (s.name ?? "") : (file.package ?? "") + "." + (s.name ?? "")
                var methods: [MethodDescriptor] = []
                for m in s.method {
                    let kind: RPCKind =
                        switch (m.clientStreaming ?? false, m.serverStreaming ?? false) {
                        case (false, false): .unary
                        case (true, false): .clientStreaming
                        case (false, true): .serverStreaming
                        case (true, true): .bidirectionalStreaming
                        }
                    func typeName(_ t: String?) -> String {
                        (t ?? "").hasPrefix(".") ? String((t ?? "").dropFirst()) : (t ?? "")
                    }
                    let input = typeName(m.inputType)
                    let output = typeName(m.outputType)
                    guard pool.messages[input] != nil, pool.messages[output] != nil else {
                        throw DescriptorPool.BuildError(
                            "\(full)/\(m.name ?? ""): message types \(input) / \(output) are not in the schema")
                    }
                    methods.append(
                        MethodDescriptor(
                            service: full, method: m.name ?? "", kind: kind, inputType: input, outputType: output,
                            options: Self.options(m.options, service: s.options)))
                }
                services.append(ServiceDescriptor(name: full, methods: methods, file: protoFile))
            }
        }
        self.services = services
        fieldRules = FieldRuleIndex(files: pool.files)
    }

    public convenience init(serializedFiles: [[UInt8]]) throws(DescriptorPool.BuildError) {
        var files: [Google_Protobuf_FileDescriptorProto] = []
        for bytes in serializedFiles {
            do {
                files.append(try Google_Protobuf_FileDescriptorProto(serializedBytes: bytes))
            } catch {
                throw DescriptorPool.BuildError("a FileDescriptorProto does not decode: \(error)")
            }
        }
        try self.init(files: files)
    }

    /// From a serialized `google.protobuf.FileDescriptorSet` (`protoc --descriptor_set_out
    /// --include_imports`, `buf build -o`, `bazaar-codegen --descriptor_set_out`).
    public convenience init(descriptorSet bytes: [UInt8]) throws(DescriptorPool.BuildError) {
        let set: Google_Protobuf_FileDescriptorSet
        do {
            set = try Google_Protobuf_FileDescriptorSet(serializedBytes: bytes)
        } catch {
            throw DescriptorPool.BuildError("not a FileDescriptorSet: \(error)")
        }
        try self.init(files: set.file)
    }

    /// A service by full name.
    public func service(_ name: String) -> ServiceDescriptor? { services.first { $0.name == name } }

    /// A message's descriptor by full name.
    public func message(_ name: String) -> UnsafePointer<ProtobufCMessageDescriptor>? { pool.messages[name] }

    // MARK: options

    /// Extension numbers on `MethodOptions` / `ServiceOptions` (google/api/annotations.proto,
    /// bazaar/options/v1/options.proto).
    enum Extension {
        static let http: UInt32 = 72_295_728
        static let auth: UInt32 = 51000
        static let deadline: UInt32 = 51001
        static let successStatus: UInt32 = 51002
    }

    static func options(_ m: Google_Protobuf_MethodOptions?, service s: Google_Protobuf_ServiceOptions?)
        -> MethodOptions
    {
        var out = MethodOptions()
        let method = m?.unknownFields ?? UnknownFields()
        let service = s?.unknownFields ?? UnknownFields()
        if let bytes = payload(method, Extension.http), let rule = try? Google_Api_HttpRule(serializedBytes: bytes) {
            out.http = httpRules(rule)
        }
        if let bytes = payload(method, Extension.auth) ?? payload(service, Extension.auth),
            let rule = try? Bazaar_Options_V1_AuthRule(serializedBytes: bytes)
        {
            let level: AuthRequirement.Level =
                switch rule.level {
                case .public: .public
                case .internal: .internal
                default: .authenticated
                }
            out.auth = AuthRequirement(level: level, roles: rule.roles, scopes: rule.scopes, callers: rule.callers)
        }
        if let ms = varint(method, Extension.deadline) ?? varint(service, Extension.deadline) {
            out.defaultDeadline = .milliseconds(Int64(truncatingIfNeeded: ms))
        }
        if let status = varint(method, Extension.successStatus) { out.successStatus = Int(truncatingIfNeeded: status) }
        switch m?.idempotencyLevel {
        case .noSideEffects?: out.idempotency = .noSideEffects
        case .idempotent?: out.idempotency = .idempotent
        default: out.idempotency = .unknown
        }
        return out
    }

    /// A length-delimited extension's bytes; occurrences concatenate, as protobuf merges them.
    static func payload(_ fields: UnknownFields, _ number: UInt32) -> [UInt8]? {
        let found = fields.fields.filter { $0.number == number && $0.wireType == 2 }
        // protobuf-c keeps a length-delimited unknown field with its length prefix.
        return found.isEmpty ? nil : found.flatMap { $0.data.drop { $0 & 0x80 != 0 }.dropFirst() }
    }

    /// A varint extension's value (the last occurrence wins).
    static func varint(_ fields: UnknownFields, _ number: UInt32) -> UInt64? {
        guard let f = fields.fields.last(where: { $0.number == number && $0.wireType == 0 }) else { return nil }
        var v: UInt64 = 0
        for (i, b) in f.data.prefix(10).enumerated() {
            v |= UInt64(b & 0x7F) << (7 * UInt64(i))
            if b & 0x80 == 0 { break }
        }
        return v
    }

    static func httpRules(_ rule: Google_Api_HttpRule) -> [HTTPRule] {
        var out: [HTTPRule] = []
        let main: (String, String)? =
            switch rule.pattern {
            case .get(let p)?: ("GET", p)
            case .put(let p)?: ("PUT", p)
            case .post(let p)?: ("POST", p)
            case .delete(let p)?: ("DELETE", p)
            case .patch(let p)?: ("PATCH", p)
            case .custom(let c)?: (c.kind, c.path)
            case nil: nil
            }
        if let (method, path) = main, !method.isEmpty {
            out.append(HTTPRule(method: method, path: path, body: rule.body, responseBody: rule.responseBody))
        }
        for extra in rule.additionalBindings { out += httpRules(extra) }
        return out
    }
}
