import CBazaarProtobufC

/// A generated protobuf enum. Enums are open: a number this schema does not know decodes to
/// `.unrecognized(n)` and encodes back unchanged.
public protocol WireEnum: RawRepresentable, Sendable, Hashable where RawValue == Int32 {
    /// The fully-qualified protobuf name, e.g. `shop.v1.OrderStatus`.
    static var protoEnumName: String { get }
    /// Every value the schema names (aliases excluded).
    static var allKnownCases: [Self] { get }
    /// The first value declared (zero in proto3).
    init()
    init(rawValue: Int32)
}

extension WireDecode {
    /// Whether a proto2 string field still points at its declared default (so it was absent).
    public static func isDefault(
        _ p: UnsafeMutablePointer<CChar>, _ descriptor: UnsafePointer<ProtobufCMessageDescriptor>,
        _ number: UInt32
    ) -> Bool {
        guard let field = protobuf_c_message_descriptor_get_field(descriptor, number),
            let def = field.pointee.default_value
        else { return false }
        return UnsafeRawPointer(p) == def
    }
}
