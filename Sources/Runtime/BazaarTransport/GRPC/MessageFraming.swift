import BazaarCore

/// Reassembles gRPC's length-prefixed messages (1 flag byte, 4 length bytes, payload) from DATA
/// frames of any size. Sans-I/O: bytes in, messages out.
public struct MessageReader {
    public struct Message {
        public var compressed: Bool
        public var payload: [UInt8]
    }

    public let maxMessageSize: Int
    private var buffer: [UInt8] = []
    private var offset = 0

    public init(maxMessageSize: Int) { self.maxMessageSize = maxMessageSize }

    /// Bytes received and not yet part of a complete message.
    public var bufferedBytes: Int { buffer.count - offset }

    public mutating func append(_ bytes: [UInt8]) {
        if offset == buffer.count {
            buffer = bytes
            offset = 0
        } else {
            if offset > 0 {
                buffer.removeFirst(offset)
                offset = 0
            }
            buffer.append(contentsOf: bytes)
        }
    }

    /// The next complete message, `nil` when more bytes are needed. A bad flag byte or a length
    /// over the limit throws at once, before the payload is buffered.
    public mutating func next() throws(RPCError) -> Message? {
        guard buffer.count - offset >= 5 else { return nil }
        let flag = buffer[offset]
        guard flag <= 1 else { throw RPCError(.internal, "malformed message prefix: compressed flag \(flag)") }
        let length =
            Int(buffer[offset + 1]) << 24 | Int(buffer[offset + 2]) << 16 | Int(buffer[offset + 3]) << 8
            | Int(buffer[offset + 4])
        guard length <= maxMessageSize else {
            throw RPCError(.resourceExhausted, "message of \(length) bytes is over the limit of \(maxMessageSize)")
        }
        guard buffer.count - offset - 5 >= length else { return nil }
        let start = offset + 5
        let payload = Array(buffer[start..<(start + length)])
        offset = start + length
        if offset == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            offset = 0
        }
        return Message(compressed: flag == 1, payload: payload)
    }
}

public enum MessageWriter {
    /// One framed message, compressed with `compression` unless it is `.identity`.
    public static func frame(_ payload: [UInt8], compression: MessageCompression) throws(RPCError) -> [UInt8] {
        var body = payload
        var flag: UInt8 = 0
        if compression == .gzip {
            body = try Gzip.compress(payload)
            flag = 1
        }
        var out = [UInt8]()
        out.reserveCapacity(body.count + 5)
        let n = UInt32(body.count)
        out.append(flag)
        out.append(UInt8(n >> 24))
        out.append(UInt8(n >> 16 & 0xff))
        out.append(UInt8(n >> 8 & 0xff))
        out.append(UInt8(n & 0xff))
        out.append(contentsOf: body)
        return out
    }
}
