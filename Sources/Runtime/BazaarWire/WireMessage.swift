import CBazaarProtobufC

/// A generated protobuf message: a Swift value type whose wire form is produced and read by
/// protobuf-c through the descriptors generated next to it.
///
/// The `_`-prefixed requirements are the bridge the generator fills in; application code uses
/// ``serializedBytes()`` and ``init(serializedBytes:)``.
public protocol WireMessage: Sendable, Hashable {
    /// The protobuf-c descriptor of the C struct this message converts to.
    static var protobufCDescriptor: UnsafePointer<ProtobufCMessageDescriptor> { get }
    /// The fully-qualified protobuf name, e.g. `shop.v1.Product`.
    static var protoMessageName: String { get }
    /// Whether the type can contain itself, so that decoding must bound nesting depth.
    static var _isRecursive: Bool { get }

    /// A message with every field at its default.
    init()

    /// Fields this version of the schema does not know, kept so that a decode/encode round trip
    /// loses nothing.
    var unknownFields: UnknownFields { get set }

    /// Fills the C struct at `c` (already initialised) from this value.
    func _writeC(_ c: UnsafeMutableRawPointer, _ arena: WireArena) throws(WireEncodingError)
    /// Reads a value back from an unpacked C struct.
    init(_readC c: UnsafeRawPointer) throws(WireDecodingError)
}

/// Limits applied while decoding untrusted bytes.
public struct WireDecodingOptions: Sendable {
    /// Maximum nesting of messages inside messages (protobuf's usual limit is 100).
    public var maxDepth: Int

    public init(maxDepth: Int = 100) { self.maxDepth = maxDepth }
}

extension WireMessage {
    public static var _isRecursive: Bool { false }

    /// The protobuf wire encoding of this message.
    ///
    /// Throws ``WireEncodingError/stringContainsNUL`` for a string that protobuf-c cannot carry.
    public func serializedBytes() throws(WireEncodingError) -> [UInt8] {
        let arena = WireArena()
        let c = arena.newMessage(Self.protobufCDescriptor)
        try _writeC(c, arena)
        let message = c.assumingMemoryBound(to: ProtobufCMessage.self)
        let size = protobuf_c_message_get_packed_size(message)
        // An empty message must not go through `unsafeUninitializedCapacity`: with capacity 0 it
        // stores the count into the shared empty-array singleton, a write that races between
        // threads (ThreadSanitizer caught two health watches encoding empty requests at once).
        if size == 0 { return [] }
        return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            count = protobuf_c_message_pack(message, buffer.baseAddress!)
        }
    }

    /// Decodes a message from its wire encoding.
    ///
    /// Malformed input (truncated varints, wrong wire types, lengths past the end, invalid UTF-8
    /// in a string, nesting deeper than `options.maxDepth`) throws; it never crashes.
    public init(serializedBytes bytes: some Collection<UInt8>, options: WireDecodingOptions = WireDecodingOptions())
        throws(WireDecodingError)
    {
        let result =
            bytes.withContiguousStorageIfAvailable { Self.decodeResult(UnsafeRawBufferPointer($0), options) }
            ?? Array(bytes).withUnsafeBytes { Self.decodeResult($0, options) }
        self = try result.get()
    }

    static func decodeResult(_ bytes: UnsafeRawBufferPointer, _ options: WireDecodingOptions) -> Result<
        Self, WireDecodingError
    > {
        do {
            return .success(try decode(bytes, options))
        } catch {
            return .failure(error)
        }
    }

    static func decode(_ bytes: UnsafeRawBufferPointer, _ options: WireDecodingOptions) throws(WireDecodingError)
        -> Self
    {
        if _isRecursive {
            try WireDepthGuard.check(bytes, Self.protobufCDescriptor, maxDepth: options.maxDepth)
        }
        let arena = WireArena(initialCapacity: max(256, bytes.count * 2))
        let unpacked = arena.withAllocator { allocator in
            protobuf_c_message_unpack(
                Self.protobufCDescriptor, allocator, bytes.count,
                bytes.baseAddress?.assumingMemoryBound(to: UInt8.self))
        }
        guard let unpacked else { throw WireDecodingError.malformed(Self.protoMessageName) }
        return try withExtendedLifetime(arena) { () throws(WireDecodingError) -> Self in
            try Self(_readC: UnsafeRawPointer(unpacked))
        }
    }
}

/// Why a message could not be encoded.
public enum WireEncodingError: Error, Sendable, Hashable, CustomStringConvertible {
    /// protobuf-c carries strings NUL-terminated, so U+0000 inside one cannot be encoded.
    case stringContainsNUL

    public var description: String {
        switch self {
        case .stringContainsNUL: "a string field contains U+0000, which protobuf-c cannot encode"
        }
    }
}

/// Why bytes could not be decoded as a message.
public enum WireDecodingError: Error, Sendable, Hashable, CustomStringConvertible {
    /// protobuf-c rejected the bytes (truncated, wrong wire type, bad length, missing required field).
    case malformed(String)
    /// A string field was not valid UTF-8.
    case invalidUTF8(field: String)
    /// Messages nested deeper than the limit.
    case tooDeep(limit: Int)

    public var description: String {
        switch self {
        case .malformed(let name): "malformed protobuf bytes for \(name)"
        case .invalidUTF8(let field): "string field \(field) is not valid UTF-8"
        case .tooDeep(let limit): "messages nested deeper than \(limit) levels"
        }
    }
}

/// Helpers the generated `init(_readC:)` calls.
public enum WireDecode {
    /// A Swift string from a protobuf-c `char *`, rejecting invalid UTF-8 rather than repairing it.
    @inline(__always)
    public static func string(_ p: UnsafeMutablePointer<CChar>?, field: StaticString) throws(WireDecodingError)
        -> String
    {
        guard let p else { return "" }
        if p.pointee == 0 { return "" }
        guard let s = String(validatingCString: p) else { throw .invalidUTF8(field: "\(field)") }
        return s
    }

    @inline(__always)
    public static func bytes(_ b: ProtobufCBinaryData) -> [UInt8] {
        guard b.len > 0, let data = b.data else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: b.len))
    }

    @inline(__always)
    public static func array<T>(_ p: UnsafeMutablePointer<T>?, _ count: Int) -> [T] {
        guard count > 0, let p else { return [] }
        return Array(UnsafeBufferPointer(start: p, count: count))
    }
}

/// A box that lets a message hold a field of its own type (or of a type that contains it).
public final class WireBox<Value: Sendable & Hashable>: Sendable, Hashable {
    public let value: Value
    public init(_ value: Value) { self.value = value }
    public static func == (a: WireBox, b: WireBox) -> Bool { a === b || a.value == b.value }
    public func hash(into h: inout Hasher) { value.hash(into: &h) }
}
