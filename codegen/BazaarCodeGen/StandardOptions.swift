/// The built-in fields of `google.protobuf.*Options`, so that standard options can be checked and
/// encoded without `descriptor.proto` being imported. Field numbers and enum values are the ones
/// `descriptor.proto` defines.
public struct StandardOption: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        case bool
        case string
        case enumeration([String: Int])
    }

    public let name: String
    public let number: Int
    public let kind: Kind
}

/// Which `*Options` message an option statement belongs to.
public enum OptionScope: String, Sendable {
    case file = "FileOptions"
    case message = "MessageOptions"
    case field = "FieldOptions"
    case oneof = "OneofOptions"
    case enumeration = "EnumOptions"
    case enumValue = "EnumValueOptions"
    case service = "ServiceOptions"
    case method = "MethodOptions"
    case extensionRange = "ExtensionRangeOptions"

    public var fullName: String { "google.protobuf." + rawValue }

    /// Field number of `options` in the matching `*DescriptorProto`.
    var standardOptions: [String: StandardOption] {
        let list: [StandardOption]
        switch self {
        case .file:
            list = [
                .init(name: "java_package", number: 1, kind: .string),
                .init(name: "java_outer_classname", number: 8, kind: .string),
                .init(
                    name: "optimize_for", number: 9,
                    kind: .enumeration(["SPEED": 1, "CODE_SIZE": 2, "LITE_RUNTIME": 3])),
                .init(name: "java_multiple_files", number: 10, kind: .bool),
                .init(name: "go_package", number: 11, kind: .string),
                .init(name: "cc_generic_services", number: 16, kind: .bool),
                .init(name: "java_generic_services", number: 17, kind: .bool),
                .init(name: "py_generic_services", number: 18, kind: .bool),
                .init(name: "java_generate_equals_and_hash", number: 20, kind: .bool),
                .init(name: "deprecated", number: 23, kind: .bool),
                .init(name: "java_string_check_utf8", number: 27, kind: .bool),
                .init(name: "cc_enable_arenas", number: 31, kind: .bool),
                .init(name: "objc_class_prefix", number: 36, kind: .string),
                .init(name: "csharp_namespace", number: 37, kind: .string),
                .init(name: "swift_prefix", number: 39, kind: .string),
                .init(name: "php_class_prefix", number: 40, kind: .string),
                .init(name: "php_namespace", number: 41, kind: .string),
                .init(name: "php_generic_services", number: 42, kind: .bool),
                .init(name: "php_metadata_namespace", number: 44, kind: .string),
                .init(name: "ruby_package", number: 45, kind: .string),
            ]
        case .message:
            list = [
                .init(name: "message_set_wire_format", number: 1, kind: .bool),
                .init(name: "no_standard_descriptor_accessor", number: 2, kind: .bool),
                .init(name: "deprecated", number: 3, kind: .bool),
                .init(name: "map_entry", number: 7, kind: .bool),
            ]
        case .field:
            list = [
                .init(name: "ctype", number: 1, kind: .enumeration(["STRING": 0, "CORD": 1, "STRING_PIECE": 2])),
                .init(name: "packed", number: 2, kind: .bool),
                .init(name: "deprecated", number: 3, kind: .bool),
                .init(name: "lazy", number: 5, kind: .bool),
                .init(name: "jstype", number: 6, kind: .enumeration(["JS_NORMAL": 0, "JS_STRING": 1, "JS_NUMBER": 2])),
                .init(name: "weak", number: 10, kind: .bool),
                .init(name: "unverified_lazy", number: 15, kind: .bool),
            ]
        case .oneof, .extensionRange:
            list = []
        case .enumeration:
            list = [
                .init(name: "allow_alias", number: 2, kind: .bool),
                .init(name: "deprecated", number: 3, kind: .bool),
            ]
        case .enumValue:
            list = [.init(name: "deprecated", number: 1, kind: .bool)]
        case .service:
            list = [.init(name: "deprecated", number: 33, kind: .bool)]
        case .method:
            list = [
                .init(name: "deprecated", number: 33, kind: .bool),
                .init(
                    name: "idempotency_level", number: 34,
                    kind: .enumeration(["IDEMPOTENCY_UNKNOWN": 0, "NO_SIDE_EFFECTS": 1, "IDEMPOTENT": 2])),
            ]
        }
        return Dictionary(uniqueKeysWithValues: list.map { ($0.name, $0) })
    }
}
