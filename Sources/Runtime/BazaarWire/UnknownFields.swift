import CBazaarProtobufC

/// Fields a message's schema does not declare, exactly as protobuf-c kept them on decode.
/// They are written back on encode, so data from a newer schema survives an older service.
public struct UnknownFields: Sendable, Hashable {
    public struct Field: Sendable, Hashable {
        public var number: UInt32
        /// protobuf wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32).
        public var wireType: UInt8
        /// The field's payload without its tag, as protobuf-c keeps it (length-delimited ones with their
        /// length prefix).
        public var data: [UInt8]

        public init(number: UInt32, wireType: UInt8, data: [UInt8]) {
            self.number = number
            self.wireType = wireType
            self.data = data
        }
    }

    public var fields: [Field] = []

    public init() {}

    public var isEmpty: Bool { fields.isEmpty }

    /// Copies the unknown fields of an unpacked C message.
    ///
    /// protobuf-c rejects field number 0 in a one-byte tag but keeps it from a non-minimal tag
    /// (`85 00`); such a message could not be read back after encoding, so it is malformed here.
    @inline(__always)
    public init(_ base: ProtobufCMessage, in messageName: @autoclosure () -> String) throws(WireDecodingError) {
        guard base.n_unknown_fields > 0, let list = base.unknown_fields else { return }
        fields.reserveCapacity(Int(base.n_unknown_fields))
        for i in 0..<Int(base.n_unknown_fields) {
            let u = list[i]
            if u.tag == 0 { throw WireDecodingError.malformed(messageName()) }
            fields.append(
                Field(
                    number: u.tag, wireType: UInt8(truncatingIfNeeded: u.wire_type.rawValue),
                    data: u.len > 0 ? Array(UnsafeBufferPointer(start: u.data, count: u.len)) : []))
        }
    }

    /// Attaches the fields to a C message built in `arena`.
    @inline(__always)
    public func write(into base: inout ProtobufCMessage, _ arena: WireArena) {
        guard !fields.isEmpty else { return }
        let list = arena.array(fields.count, of: ProtobufCMessageUnknownField.self)
        for (i, f) in fields.enumerated() {
            let data: UnsafeMutablePointer<UInt8>? = f.data.isEmpty ? nil : arena.copy(f.data)
            list[i] = ProtobufCMessageUnknownField(
                tag: f.number, wire_type: ProtobufCWireType(rawValue: numericCast(f.wireType)),
                len: f.data.count, data: data)
        }
        base.n_unknown_fields = UInt32(fields.count)
        base.unknown_fields = list
    }
}
