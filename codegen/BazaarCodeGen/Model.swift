/// The resolved model: every name fully qualified, every type bound, every option checked.
/// All emitters (C, Swift, descriptors) read this and nothing else.

public enum ScalarType: String, Sendable, CaseIterable {
    case double, float, int64, uint64, int32, fixed64, fixed32, bool, string, bytes
    case uint32, sfixed32, sfixed64, sint32, sint64

    /// `google.protobuf.FieldDescriptorProto.Type` numbers.
    public var descriptorType: Int {
        switch self {
        case .double: 1
        case .float: 2
        case .int64: 3
        case .uint64: 4
        case .int32: 5
        case .fixed64: 6
        case .fixed32: 7
        case .bool: 8
        case .string: 9
        case .bytes: 12
        case .uint32: 13
        case .sfixed32: 15
        case .sfixed64: 16
        case .sint32: 17
        case .sint64: 18
        }
    }

    /// Numeric scalars can be packed; strings and bytes cannot.
    public var isPackable: Bool { self != .string && self != .bytes }

    /// Types allowed as map keys.
    public var isValidMapKey: Bool { self != .double && self != .float && self != .bytes }
}

public enum FieldType: Sendable {
    case scalar(ScalarType)
    case message(MessageModel)
    case enumeration(EnumModel)

    public var descriptorType: Int {
        switch self {
        case .scalar(let s): s.descriptorType
        case .message: 11
        case .enumeration: 14
        }
    }
}

public final class FileModel: @unchecked Sendable {
    public let path: String
    public let package: String
    public let syntax: String
    public internal(set) var dependencies: [FileModel] = []
    public internal(set) var publicDependencyIndices: [Int] = []
    public internal(set) var weakDependencyIndices: [Int] = []
    public internal(set) var messages: [MessageModel] = []
    public internal(set) var enums: [EnumModel] = []
    public internal(set) var services: [ServiceModel] = []
    public internal(set) var extensions: [FieldModel] = []
    public internal(set) var options: ResolvedOptions = ResolvedOptions()

    init(path: String, package: String, syntax: String) {
        self.path = path
        self.package = package
        self.syntax = syntax
    }

    public var isProto3: Bool { syntax == "proto3" }

    /// Every message in the file, depth first, outer before inner.
    public var allMessages: [MessageModel] {
        var out: [MessageModel] = []
        func walk(_ m: MessageModel) {
            out.append(m)
            m.messages.forEach(walk)
        }
        messages.forEach(walk)
        return out
    }

    /// Every enum in the file, top-level first then nested in message order.
    public var allEnums: [EnumModel] { enums + allMessages.flatMap(\.enums) }
}

public final class MessageModel: @unchecked Sendable {
    public let name: String
    public let fullName: String
    public unowned let file: FileModel
    public weak internal(set) var parent: MessageModel?
    public internal(set) var fields: [FieldModel] = []
    public internal(set) var oneofs: [OneofModel] = []
    public internal(set) var messages: [MessageModel] = []
    public internal(set) var enums: [EnumModel] = []
    public internal(set) var extensions: [FieldModel] = []
    public internal(set) var reservedRanges: [ClosedRange<Int64>] = []
    public internal(set) var reservedNames: [String] = []
    public internal(set) var extensionRanges: [ClosedRange<Int64>] = []
    public internal(set) var options = ResolvedOptions()
    public internal(set) var isMapEntry = false
    public let comments: Comments
    public let location: SourceLocation

    init(
        name: String, fullName: String, file: FileModel, parent: MessageModel?, comments: Comments,
        location: SourceLocation
    ) {
        self.name = name
        self.fullName = fullName
        self.file = file
        self.parent = parent
        self.comments = comments
        self.location = location
    }

    /// Fields sorted by number, as the wire and protobuf-c's descriptors order them.
    public var fieldsByNumber: [FieldModel] { fields.sorted { $0.number < $1.number } }

    /// Oneofs the user wrote (not the synthetic ones of proto3 `optional`).
    public var realOneofs: [OneofModel] { oneofs.filter { !$0.isSynthetic } }

    /// Name relative to the package: `Outer.Inner`.
    public var relativeName: String {
        file.package.isEmpty ? fullName : String(fullName.dropFirst(file.package.count + 1))
    }
}

public final class OneofModel: @unchecked Sendable {
    public let name: String
    public internal(set) var fields: [FieldModel] = []
    /// The oneof protoc makes for a proto3 `optional` field.
    public let isSynthetic: Bool
    public let comments: Comments
    public internal(set) var options = ResolvedOptions()

    init(name: String, isSynthetic: Bool, comments: Comments) {
        self.name = name
        self.isSynthetic = isSynthetic
        self.comments = comments
    }
}

public final class FieldModel: @unchecked Sendable {
    public enum Label: Int, Sendable {
        case optional = 1
        case required = 2
        case repeated = 3
    }

    public let name: String
    public let number: Int
    public let label: Label
    public internal(set) var type: FieldType
    public let jsonName: String
    public let hasExplicitJSONName: Bool
    public weak internal(set) var oneof: OneofModel?
    public internal(set) var oneofIndex: Int?
    public let isProto3Optional: Bool
    public internal(set) var defaultValue: ConstantValue?
    public internal(set) var options = ResolvedOptions()
    /// For extensions: the message they extend.
    public internal(set) var extendee: MessageModel?
    public weak internal(set) var containingMessage: MessageModel?
    public let comments: Comments
    public let location: SourceLocation
    public internal(set) var isPacked = false
    /// For map fields: the synthesized entry type.
    public internal(set) var mapEntry: MessageModel?
    /// For extensions: full name of the extension.
    public internal(set) var fullName: String

    init(
        name: String, number: Int, label: Label, type: FieldType, jsonName: String, hasExplicitJSONName: Bool,
        isProto3Optional: Bool, comments: Comments, location: SourceLocation, fullName: String
    ) {
        self.name = name
        self.number = number
        self.label = label
        self.type = type
        self.jsonName = jsonName
        self.hasExplicitJSONName = hasExplicitJSONName
        self.isProto3Optional = isProto3Optional
        self.comments = comments
        self.location = location
        self.fullName = fullName
    }

    public var isRepeated: Bool { label == .repeated }
    public var isMap: Bool { mapEntry != nil }
    /// Fields in a oneof the user wrote (not proto3 optional's synthetic one).
    public var realOneof: OneofModel? { oneof.flatMap { $0.isSynthetic ? nil : $0 } }

    /// Whether the field tracks presence apart from its value (proto2 optional, proto3 optional,
    /// message fields and oneof members).
    public var hasPresence: Bool {
        if isRepeated { return false }
        if case .message = type { return true }
        if oneof != nil { return true }
        guard let file = containingMessage?.file ?? extendee?.file else { return true }
        return !file.isProto3 || isProto3Optional
    }
}

public final class EnumModel: @unchecked Sendable {
    public let name: String
    public let fullName: String
    public unowned let file: FileModel
    public weak internal(set) var parent: MessageModel?
    public internal(set) var values: [EnumValueModel] = []
    public internal(set) var options = ResolvedOptions()
    public internal(set) var reservedRanges: [ClosedRange<Int64>] = []
    public internal(set) var reservedNames: [String] = []
    public let comments: Comments
    public let location: SourceLocation

    init(
        name: String, fullName: String, file: FileModel, parent: MessageModel?, comments: Comments,
        location: SourceLocation
    ) {
        self.name = name
        self.fullName = fullName
        self.file = file
        self.parent = parent
        self.comments = comments
        self.location = location
    }

    /// proto2 enums are closed: unknown values go to unknown fields. proto3 enums are open.
    public var isClosed: Bool { !file.isProto3 }
}

public struct EnumValueModel: Sendable {
    public let name: String
    public let number: Int32
    public let options: ResolvedOptions
    public let comments: Comments
}

public final class ServiceModel: @unchecked Sendable {
    public let name: String
    public let fullName: String
    public unowned let file: FileModel
    public internal(set) var methods: [MethodModel] = []
    public internal(set) var options = ResolvedOptions()
    public let comments: Comments

    init(name: String, fullName: String, file: FileModel, comments: Comments) {
        self.name = name
        self.fullName = fullName
        self.file = file
        self.comments = comments
    }
}

public final class MethodModel: @unchecked Sendable {
    public let name: String
    public let input: MessageModel
    public let output: MessageModel
    public let clientStreaming: Bool
    public let serverStreaming: Bool
    public internal(set) var options = ResolvedOptions()
    public internal(set) var hasOptionsBlock = false
    public let comments: Comments
    public let location: SourceLocation

    init(
        name: String, input: MessageModel, output: MessageModel, clientStreaming: Bool, serverStreaming: Bool,
        comments: Comments, location: SourceLocation
    ) {
        self.name = name
        self.input = input
        self.output = output
        self.clientStreaming = clientStreaming
        self.serverStreaming = serverStreaming
        self.comments = comments
        self.location = location
    }
}

/// A checked option: the field it sets (standard or extension) and its value.
public struct ResolvedOption: @unchecked Sendable {
    /// The top-level field of the `*Options` message (standard, or an extension).
    public let field: OptionField
    /// Sub-field path inside a message-typed option (`(a).b.c`).
    public let path: [FieldModel]
    public let value: ConstantValue
    public let location: SourceLocation
}

/// A field of a `google.protobuf.*Options` message.
public enum OptionField: @unchecked Sendable {
    case standard(StandardOption)
    case `extension`(FieldModel)

    public var number: Int {
        switch self {
        case .standard(let s): s.number
        case .extension(let f): f.number
        }
    }
}

public struct ResolvedOptions: Sendable {
    public internal(set) var items: [ResolvedOption] = []

    /// The value of a standard option by name (`deprecated`, `allow_alias`, ...).
    public func standard(_ name: String) -> ConstantValue? {
        for item in items.reversed() {
            if case .standard(let s) = item.field, s.name == name { return item.value }
        }
        return nil
    }

    public func bool(_ name: String) -> Bool {
        if case .identifier("true", _) = standard(name) { return true }
        return false
    }

    /// Values set for the extension with this full name, merged into one message literal
    /// when it is set in parts (`(x).a = 1; (x).b = 2`).
    public func `extension`(_ fullName: String) -> ConstantValue? {
        var entries: [AggregateEntry] = []
        var scalar: ConstantValue?
        for item in items {
            guard case .extension(let f) = item.field, f.fullName == fullName else { continue }
            if item.path.isEmpty {
                if case .aggregate(let e) = item.value { entries += e } else { scalar = item.value }
            } else {
                var v = item.value
                for sub in item.path.reversed() {
                    v = .aggregate([
                        AggregateEntry(name: sub.name, isExtension: false, value: v, location: item.location)
                    ])
                }
                if case .aggregate(let e) = v { entries += e }
            }
        }
        return scalar ?? (entries.isEmpty ? nil : .aggregate(entries))
    }
}
