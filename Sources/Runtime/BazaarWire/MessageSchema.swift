import CBazaarProtobufC

/// A message type as routing, documentation and tools see it: a Swift view of a protobuf-c
/// descriptor, compiled or built at run time, so that layers above the wire never handle
/// protobuf-c's structures themselves. It owns nothing: whoever made the descriptor keeps it
/// alive (generated code forever, a `DescriptorPool` as long as it lives).
public struct MessageSchema: @unchecked Sendable, Hashable {
    public let descriptor: UnsafePointer<ProtobufCMessageDescriptor>

    public init(_ descriptor: UnsafePointer<ProtobufCMessageDescriptor>) { self.descriptor = descriptor }

    /// Of a generated message type.
    public init<M: WireMessage>(_ type: M.Type) { descriptor = M.protobufCDescriptor }

    /// Fully-qualified name, e.g. `shop.v1.Product`.
    public var name: String { ProtoJSON.name(descriptor) }

    /// Fields in number order.
    public var fields: [FieldSchema] { ProtoJSON.fields(descriptor).map(FieldSchema.init) }

    /// The field with this name or JSON name.
    public func field(_ name: String) -> FieldSchema? {
        ProtoJSON.field(named: name, in: descriptor).map(FieldSchema.init)
    }

    /// The field a dotted path names (`page.page_size`), through singular message fields.
    public func field(path: [String]) -> FieldSchema? {
        var current = self
        for (n, segment) in path.enumerated() {
            guard let f = current.field(segment) else { return nil }
            if n == path.count - 1 { return f }
            guard let sub = f.message, !f.isRepeated else { return nil }
            current = sub
        }
        return nil
    }

    /// Whether this is a map's entry type (the field holding it is a map).
    public var isMapEntry: Bool { ProtoJSON.isMapEntry(descriptor) }
}

/// One field of a ``MessageSchema``.
/// (A view of a descriptor, which never changes: safe to share.)
public struct FieldSchema: @unchecked Sendable {
    public enum Kind: Sendable, Hashable {
        case int32, int64, uint32, uint64, float, double, bool, string, bytes, enumeration, message
    }

    public let name: String
    public var jsonName: String { ProtoJSON.jsonName(name) }
    public let number: UInt32
    public let kind: Kind
    public let isRepeated: Bool
    /// The message type of a message field (map fields: the entry type).
    public let message: MessageSchema?
    private let enumDescriptor: UnsafePointer<ProtobufCEnumDescriptor>?

    /// The value names of an enum field, in number order (made when asked: route matching looks
    /// fields up on every request and never needs them).
    public var enumValues: [String] {
        guard let e = enumDescriptor else { return [] }
        return UnsafeBufferPointer(start: e.pointee.values, count: Int(e.pointee.n_values)).map {
            String(cString: $0.name)
        }
    }

    init(_ f: ProtobufCFieldDescriptor) {
        name = String(cString: f.name)
        number = f.id
        isRepeated = f.label == PROTOBUF_C_LABEL_REPEATED
        switch f.type {
        case PROTOBUF_C_TYPE_INT32, PROTOBUF_C_TYPE_SINT32, PROTOBUF_C_TYPE_SFIXED32: kind = .int32
        case PROTOBUF_C_TYPE_INT64, PROTOBUF_C_TYPE_SINT64, PROTOBUF_C_TYPE_SFIXED64: kind = .int64
        case PROTOBUF_C_TYPE_UINT32, PROTOBUF_C_TYPE_FIXED32: kind = .uint32
        case PROTOBUF_C_TYPE_UINT64, PROTOBUF_C_TYPE_FIXED64: kind = .uint64
        case PROTOBUF_C_TYPE_FLOAT: kind = .float
        case PROTOBUF_C_TYPE_DOUBLE: kind = .double
        case PROTOBUF_C_TYPE_BOOL: kind = .bool
        case PROTOBUF_C_TYPE_STRING: kind = .string
        case PROTOBUF_C_TYPE_BYTES: kind = .bytes
        case PROTOBUF_C_TYPE_ENUM: kind = .enumeration
        default: kind = .message
        }
        message =
            kind == .message
            ? MessageSchema(f.descriptor.assumingMemoryBound(to: ProtobufCMessageDescriptor.self)) : nil
        enumDescriptor = kind == .enumeration ? f.descriptor.assumingMemoryBound(to: ProtobufCEnumDescriptor.self) : nil
    }

    /// A map field's value field (nil for other fields).
    public var mapValue: FieldSchema? {
        guard isRepeated, let entry = message, entry.isMapEntry else { return nil }
        return entry.fields.last
    }
}

extension ProtoJSON {
    /// `encode(_:as:)` for a ``MessageSchema``.
    public static func encode(_ bytes: [UInt8], as schema: MessageSchema, options: Options = Options())
        throws(JSONMappingError) -> JSONValue
    {
        try encode(bytes, as: schema.descriptor, options: options)
    }

    /// `decode(_:as:)` for a ``MessageSchema``.
    public static func decode(_ json: JSONValue, as schema: MessageSchema, options: Options = Options())
        throws(JSONMappingError) -> [UInt8]
    {
        try decode(json, as: schema.descriptor, options: options)
    }
}

extension ProtoJSON.Builder {
    public convenience init(_ schema: MessageSchema, options: ProtoJSON.Options = ProtoJSON.Options()) {
        self.init(schema.descriptor, options: options)
    }
}
