/// The syntax tree of one `.proto` file, before names are resolved.

/// A constant as written in an option: scalar, identifier or message literal.
public indirect enum ConstantValue: Sendable, Hashable {
    /// An identifier (`true`, `SPEED`, `inf`), possibly with a leading minus.
    case identifier(String, negative: Bool)
    /// An integer literal: magnitude and sign, so that both INT64_MIN and UINT64_MAX fit.
    case integer(UInt64, negative: Bool)
    case float(Double)
    case string([UInt8])
    /// A message literal: `{ get: "/v1/x" additional_bindings { post: "/y" } }`.
    case aggregate([AggregateEntry])
    /// A list inside a message literal: `[1, 2]`.
    case list([ConstantValue])

    public var stringValue: String? {
        if case .string(let b) = self { return String(decoding: b, as: UTF8.self) }
        return nil
    }
}

public struct AggregateEntry: Sendable, Hashable {
    public var name: String
    /// `[pkg.ext]` inside a message literal.
    public var isExtension: Bool
    public var value: ConstantValue
    public var location: SourceLocation
}

/// One part of an option name: `(google.api.http).get` has two.
public struct OptionNamePart: Sendable, Hashable {
    public var name: String
    public var isExtension: Bool
}

public struct OptionAST: Sendable, Hashable {
    public var name: [OptionNamePart]
    public var value: ConstantValue
    public var location: SourceLocation

    /// The simple name of a standard option (`deprecated`), or nil for a custom one.
    var simpleName: String? { name.count == 1 && !name[0].isExtension ? name[0].name : nil }
}

public struct Comments: Sendable, Hashable {
    public var leading: String?
    public var trailing: String?
}

public enum FieldLabel: String, Sendable {
    case none, optional, required, repeated
}

public struct FieldAST: Sendable {
    var label: FieldLabel
    var typeName: String
    var typeLocation: SourceLocation
    var name: String
    var number: Int64
    var numberLocation: SourceLocation
    var options: [OptionAST]
    var location: SourceLocation
    var comments: Comments
    /// Set for `map<K, V>` fields.
    var mapKey: String?
    var mapValue: String?
    var oneofIndex: Int?
}

public struct OneofAST: Sendable {
    var name: String
    var options: [OptionAST]
    var location: SourceLocation
    var comments: Comments
}

public struct RangeAST: Sendable {
    var start: Int64
    var end: Int64  // inclusive
    var location: SourceLocation
    var options: [OptionAST] = []
}

public struct MessageAST: Sendable {
    var name: String
    var location: SourceLocation
    var comments: Comments
    var fields: [FieldAST] = []
    var oneofs: [OneofAST] = []
    var messages: [MessageAST] = []
    var enums: [EnumAST] = []
    var extends: [ExtendAST] = []
    var reservedRanges: [RangeAST] = []
    var reservedNames: [(String, SourceLocation)] = []
    var extensionRanges: [RangeAST] = []
    var options: [OptionAST] = []
    /// Nested messages and map fields in source order (map entries become nested types there).
    var nestedOrder: [NestedRef] = []
}

enum NestedRef: Sendable {
    case message(Int)
    case mapField(Int)
}

public struct EnumValueAST: Sendable {
    var name: String
    var number: Int64
    var options: [OptionAST]
    var location: SourceLocation
    var comments: Comments
}

public struct EnumAST: Sendable {
    var name: String
    var location: SourceLocation
    var comments: Comments
    var values: [EnumValueAST] = []
    var reservedRanges: [RangeAST] = []
    var reservedNames: [(String, SourceLocation)] = []
    var options: [OptionAST] = []
}

public struct MethodAST: Sendable {
    var name: String
    var inputType: String
    var inputLocation: SourceLocation
    var outputType: String
    var outputLocation: SourceLocation
    var clientStreaming: Bool
    var serverStreaming: Bool
    var options: [OptionAST]
    var location: SourceLocation
    var comments: Comments
    /// protoc records an (empty) options message for `rpc X(..) returns (..) {}`.
    var hasBody: Bool = false
}

public struct ServiceAST: Sendable {
    var name: String
    var location: SourceLocation
    var comments: Comments
    var methods: [MethodAST] = []
    var options: [OptionAST] = []
}

public struct ExtendAST: Sendable {
    var extendee: String
    var location: SourceLocation
    var fields: [FieldAST]
}

public struct ImportAST: Sendable {
    public enum Kind: Sendable { case normal, `public`, weak }
    var path: String
    var kind: Kind
    var location: SourceLocation
}

public struct FileAST: Sendable {
    var path: String
    var syntax: String = "proto2"
    var package: String?
    var imports: [ImportAST] = []
    var options: [OptionAST] = []
    var messages: [MessageAST] = []
    var enums: [EnumAST] = []
    var services: [ServiceAST] = []
    var extends: [ExtendAST] = []
}
