import BazaarOptions
import BazaarWire
import WellKnownTypes

/// The field rules (`bazaar.options.v1.rules`) a schema declares, by message and field, read from
/// its `FileDescriptorProto`s: what the edge's OpenAPI document shows as JSON Schema keywords. The
/// rules are enforced where the message is compiled (the service's generated code), not here.
public struct FieldRuleIndex: Sendable {
    /// Rules by message full name, then by field name.
    public private(set) var rules: [String: [String: Bazaar_Options_V1_FieldRules]] = [:]

    static let fieldOption: UInt32 = 51000

    public init() {}

    public init(files: [Google_Protobuf_FileDescriptorProto]) {
        for file in files {
            let package = file.package ?? ""
            for m in file.messageType { add(m, prefix: package.isEmpty ? "" : package + ".") }
        }
    }

    /// From compiled files (their serialized descriptors).
    public init(protoFiles: [ProtoFile]) {
        self.init(
            files: protoFiles.compactMap {
                try? Google_Protobuf_FileDescriptorProto(serializedBytes: $0.serializedDescriptor)
            })
    }

    private mutating func add(_ m: Google_Protobuf_DescriptorProto, prefix: String) {
        let name = prefix + (m.name ?? "")
        for f in m.field {
            guard let options = f.options, let bytes = Schema.payload(options.unknownFields, Self.fieldOption),
                let rule = try? Bazaar_Options_V1_FieldRules(serializedBytes: bytes)
            else { continue }
            rules[name, default: [:]][f.name ?? ""] = rule
        }
        for nested in m.nestedType { add(nested, prefix: name + ".") }
    }

    /// The rules of one field, if it has any.
    public func rule(message: String, field: String) -> Bazaar_Options_V1_FieldRules? { rules[message]?[field] }

    /// Both indexes' rules.
    public func merging(_ other: FieldRuleIndex) -> FieldRuleIndex {
        var out = self
        out.rules.merge(other.rules) { a, _ in a }
        return out
    }
}
