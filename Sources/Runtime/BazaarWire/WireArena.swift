import CBazaarProtobufC

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Scratch memory for one encode or decode through protobuf-c.
///
/// protobuf-c works on C structs full of pointers. Building them with one `malloc` per string,
/// array and sub-message (and freeing each afterwards) would cost more than the packing itself,
/// so every C-side allocation of one operation is bumped out of a few large chunks and released at
/// once when the arena goes away. The arena also serves as protobuf-c's `ProtobufCAllocator` on
/// decode, where `free` is a no-op for the same reason.
public final class WireArena {
    private var chunks: [UnsafeMutableRawPointer] = []
    private var cursor: UnsafeMutableRawPointer?
    private var remaining = 0
    private var nextChunkSize: Int

    public init(initialCapacity: Int = 2048) {
        nextChunkSize = max(initialCapacity, 256)
    }

    deinit {
        for c in chunks { free(c) }
    }

    /// Returns `size` bytes aligned to 16, valid until the arena is released.
    @inline(__always)
    public func allocate(_ size: Int) -> UnsafeMutableRawPointer {
        let rounded = (size + 15) & ~15
        if rounded > remaining { grow(rounded) }
        let p = cursor!
        cursor = p + rounded
        remaining -= rounded
        return p
    }

    private func grow(_ atLeast: Int) {
        let size = max(nextChunkSize, atLeast)
        guard let chunk = malloc(size) else { fatalError("WireArena: out of memory allocating \(size) bytes") }
        chunks.append(chunk)
        cursor = chunk
        remaining = size
        nextChunkSize = min(nextChunkSize * 2, 1 << 20)
    }

    /// A typed, uninitialised array of `count` elements.
    @inline(__always)
    public func array<T>(_ count: Int, of: T.Type) -> UnsafeMutablePointer<T> {
        allocate(MemoryLayout<T>.stride * count).bindMemory(to: T.self, capacity: count)
    }

    /// Copies a Swift array of trivially-copyable values into the arena.
    @inline(__always)
    public func copy<T: BitwiseCopyable>(_ values: [T]) -> UnsafeMutablePointer<T> {
        let p = array(values.count, of: T.self)
        values.withUnsafeBufferPointer { src in
            p.update(from: src.baseAddress!, count: src.count)
        }
        return p
    }

    /// A NUL-terminated copy of `s` for a protobuf-c `char *` field.
    ///
    /// protobuf-c measures strings with `strlen`, so a string containing U+0000 cannot be encoded
    /// without silently losing its tail; that is an error instead.
    @inline(__always)
    public func cString(_ s: String) throws(WireEncodingError) -> UnsafeMutablePointer<CChar> {
        var s = s
        var hasNUL = false
        let p = s.withUTF8 { utf8 in
            let p = array(utf8.count + 1, of: CChar.self)
            if let base = utf8.baseAddress, utf8.count > 0 {
                hasNUL = memchr(base, 0, utf8.count) != nil
                UnsafeMutableRawPointer(p).copyMemory(from: base, byteCount: utf8.count)
            }
            p[utf8.count] = 0
            return p
        }
        if hasNUL { throw WireEncodingError.stringContainsNUL }
        return p
    }

    /// A `ProtobufCBinaryData` that points at a copy of `bytes`.
    @inline(__always)
    public func binary(_ bytes: [UInt8]) -> ProtobufCBinaryData {
        if bytes.isEmpty { return ProtobufCBinaryData(len: 0, data: nil) }
        return ProtobufCBinaryData(len: bytes.count, data: copy(bytes))
    }

    /// An initialised C message of the given descriptor (defaults set, like `*__init`).
    @inline(__always)
    public func newMessage(_ descriptor: UnsafePointer<ProtobufCMessageDescriptor>) -> UnsafeMutableRawPointer {
        let p = allocate(Int(descriptor.pointee.sizeof_message))
        if descriptor.pointee.message_init != nil {
            protobuf_c_message_init(descriptor, p)
        } else {
            Self.initializeGeneric(p, descriptor)
        }
        return p
    }

    /// What protobuf-c's unpack does to a fresh message: zeroes, the descriptor, and each singular
    /// field's default (oneof members' unions stay zero, as the generated init leaves them). For descriptors built at run time, which have no `*__init` function.
    static func initializeGeneric(_ p: UnsafeMutableRawPointer, _ d: UnsafePointer<ProtobufCMessageDescriptor>) {
        p.initializeMemory(as: UInt8.self, repeating: 0, count: Int(d.pointee.sizeof_message))
        p.storeBytes(of: d, as: UnsafePointer<ProtobufCMessageDescriptor>.self)
        for i in 0..<Int(d.pointee.n_fields) {
            let f = d.pointee.fields[i]
            guard let value = f.default_value, f.label != PROTOBUF_C_LABEL_REPEATED,
                f.flags & UInt32(PROTOBUF_C_FIELD_FLAG_ONEOF.rawValue) == 0
            else { continue }
            let at = p + Int(f.offset)
            switch f.type {
            case PROTOBUF_C_TYPE_STRING, PROTOBUF_C_TYPE_MESSAGE: at.storeBytes(of: value, as: UnsafeRawPointer.self)
            case PROTOBUF_C_TYPE_BYTES: at.copyMemory(from: value, byteCount: MemoryLayout<ProtobufCBinaryData>.size)
            case PROTOBUF_C_TYPE_INT64, PROTOBUF_C_TYPE_UINT64, PROTOBUF_C_TYPE_SINT64, PROTOBUF_C_TYPE_SFIXED64,
                PROTOBUF_C_TYPE_FIXED64, PROTOBUF_C_TYPE_DOUBLE:
                at.copyMemory(from: value, byteCount: 8)
            default: at.copyMemory(from: value, byteCount: 4)
            }
        }
    }

    /// The C form of `message`, built in this arena.
    @inline(__always)
    public func message<M: WireMessage>(_ message: M) throws(WireEncodingError) -> UnsafeMutableRawPointer {
        let p = newMessage(M.protobufCDescriptor)
        try message._writeC(p, self)
        return p
    }

    /// protobuf-c's allocator interface over this arena, for `protobuf_c_message_unpack`.
    func withAllocator<R>(_ body: (UnsafeMutablePointer<ProtobufCAllocator>) throws -> R) rethrows -> R {
        var allocator = ProtobufCAllocator(
            alloc: { data, size in
                Unmanaged<WireArena>.fromOpaque(data!).takeUnretainedValue().allocate(size)
            },
            free: { _, _ in },
            allocator_data: Unmanaged.passUnretained(self).toOpaque())
        return try withUnsafeMutablePointer(to: &allocator) { try body($0) }
    }
}
