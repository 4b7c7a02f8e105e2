import CBazaarProtobufC

/// Bounds message nesting before protobuf-c sees the bytes.
///
/// protobuf-c's unpack recurses once per nested message with no limit, so 10,000 levels of a
/// self-containing type would exhaust a task's stack. Types that cannot contain themselves have a
/// depth fixed by their schema and skip this; for recursive types this walk follows only the
/// length-delimited fields that the descriptor says are messages. It does not decode values:
/// anything malformed is left for protobuf-c to reject.
enum WireDepthGuard {
    static func check(
        _ bytes: UnsafeRawBufferPointer, _ descriptor: UnsafePointer<ProtobufCMessageDescriptor>,
        maxDepth: Int
    ) throws(WireDecodingError) {
        guard let base = bytes.baseAddress else { return }
        // Explicit stack instead of recursion: (end offset, descriptor).
        var stack: [(end: Int, descriptor: UnsafePointer<ProtobufCMessageDescriptor>)] = [(bytes.count, descriptor)]
        var i = 0
        let p = base.assumingMemoryBound(to: UInt8.self)
        while let top = stack.last {
            if i >= top.end {
                stack.removeLast()
                continue
            }
            guard let key = varint(p, &i, top.end) else { return }
            let wireType = key & 7
            let number = key >> 3
            switch wireType {
            case 0:
                guard varint(p, &i, top.end) != nil else { return }
            case 1:
                i += 8
            case 5:
                i += 4
            case 2:
                guard let len = varint(p, &i, top.end), len <= UInt64(top.end - i) else { return }
                let end = i + Int(len)
                if number <= UInt64(UInt32.max),
                    let field = protobuf_c_message_descriptor_get_field(top.descriptor, UInt32(number)),
                    field.pointee.type == PROTOBUF_C_TYPE_MESSAGE,
                    let sub = field.pointee.descriptor
                {
                    if stack.count >= maxDepth { throw .tooDeep(limit: maxDepth) }
                    stack.append((end, sub.assumingMemoryBound(to: ProtobufCMessageDescriptor.self)))
                } else {
                    i = end
                }
            default:
                return
            }
            if i > top.end { return }
        }
    }

    @inline(__always)
    private static func varint(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ end: Int) -> UInt64? {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        while i < end, shift < 64 {
            let b = p[i]
            i += 1
            v |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return v }
            shift += 7
        }
        return nil
    }
}
