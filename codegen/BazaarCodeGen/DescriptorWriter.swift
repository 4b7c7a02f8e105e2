import Foundation

/// Serializes the resolved model as `google.protobuf.FileDescriptorProto` bytes, the form that
/// server reflection (grpcurl) and the gateway read at run time. Field numbers are those of
/// `descriptor.proto`. The generator runs before any generated code exists, so it writes these few
/// messages with a small encoder of its own rather than through generated types.
public enum DescriptorWriter {
    public static func fileDescriptorSet(_ files: [FileModel]) -> [UInt8] {
        var w = ProtoWriter()
        for f in files { w.bytes(1, fileDescriptor(f)) }
        return w.out
    }

    public static func fileDescriptor(_ file: FileModel) -> [UInt8] {
        var w = ProtoWriter()
        w.string(1, file.path)
        if !file.package.isEmpty { w.string(2, file.package) }
        for d in file.dependencies { w.string(3, d.path) }
        for m in file.messages { w.bytes(4, message(m)) }
        for e in file.enums { w.bytes(5, enumeration(e)) }
        for s in file.services { w.bytes(6, service(s)) }
        for x in file.extensions { w.bytes(7, field(x)) }
        if let o = options(file.options) { w.bytes(8, o) }
        for i in file.publicDependencyIndices { w.varint(10, UInt64(i)) }
        for i in file.weakDependencyIndices { w.varint(11, UInt64(i)) }
        if file.isProto3 { w.string(12, "proto3") }
        return w.out
    }

    static func message(_ m: MessageModel) -> [UInt8] {
        var w = ProtoWriter()
        w.string(1, m.name)
        for f in m.fields { w.bytes(2, field(f)) }
        for n in m.messages { w.bytes(3, message(n)) }
        for e in m.enums { w.bytes(4, enumeration(e)) }
        for r in m.extensionRanges {
            var rw = ProtoWriter()
            rw.varint(1, UInt64(r.lowerBound))
            rw.varint(2, UInt64(r.upperBound + 1))
            w.bytes(5, rw.out)
        }
        for x in m.extensions { w.bytes(6, field(x)) }
        if let o = options(m.options) { w.bytes(7, o) }
        for o in m.oneofs {
            var ow = ProtoWriter()
            ow.string(1, o.name)
            if let opts = options(o.options) { ow.bytes(2, opts) }
            w.bytes(8, ow.out)
        }
        for r in m.reservedRanges {
            var rw = ProtoWriter()
            rw.varint(1, UInt64(r.lowerBound))
            rw.varint(2, UInt64(r.upperBound + 1))
            w.bytes(9, rw.out)
        }
        for n in m.reservedNames { w.string(10, n) }
        return w.out
    }

    static func field(_ f: FieldModel) -> [UInt8] {
        var w = ProtoWriter()
        w.string(1, f.name)
        if let e = f.extendee { w.string(2, "." + e.fullName) }
        w.varint(3, UInt64(f.number))
        w.varint(4, UInt64(f.label.rawValue))
        w.varint(5, UInt64(f.type.descriptorType))
        switch f.type {
        case .message(let m): w.string(6, "." + m.fullName)
        case .enumeration(let e): w.string(6, "." + e.fullName)
        case .scalar: break
        }
        if let d = f.defaultValue { w.string(7, defaultText(d, f.type)) }
        if let o = options(f.options) { w.bytes(8, o) }
        if let i = f.oneofIndex { w.varint(9, UInt64(i)) }
        w.string(10, f.jsonName)
        if f.isProto3Optional { w.varint(17, 1) }
        return w.out
    }

    static func enumeration(_ e: EnumModel) -> [UInt8] {
        var w = ProtoWriter()
        w.string(1, e.name)
        for v in e.values {
            var vw = ProtoWriter()
            vw.string(1, v.name)
            vw.varint(2, UInt64(bitPattern: Int64(v.number)))
            if let o = options(v.options) { vw.bytes(3, o) }
            w.bytes(2, vw.out)
        }
        if let o = options(e.options) { w.bytes(3, o) }
        for r in e.reservedRanges {
            var rw = ProtoWriter()
            rw.varint(1, UInt64(bitPattern: r.lowerBound))
            rw.varint(2, UInt64(bitPattern: r.upperBound))
            w.bytes(4, rw.out)
        }
        for n in e.reservedNames { w.string(5, n) }
        return w.out
    }

    static func service(_ s: ServiceModel) -> [UInt8] {
        var w = ProtoWriter()
        w.string(1, s.name)
        for m in s.methods {
            var mw = ProtoWriter()
            mw.string(1, m.name)
            mw.string(2, "." + m.input.fullName)
            mw.string(3, "." + m.output.fullName)
            if let o = options(m.options) { mw.bytes(4, o) } else if m.hasOptionsBlock { mw.bytes(4, []) }
            if m.clientStreaming { mw.varint(5, 1) }
            if m.serverStreaming { mw.varint(6, 1) }
            w.bytes(2, mw.out)
        }
        if let o = options(s.options) { w.bytes(3, o) }
        return w.out
    }

    /// Encodes an `*Options` message, or nil when no option is set.
    static func options(_ opts: ResolvedOptions) -> [UInt8]? {
        guard !opts.items.isEmpty else { return nil }
        var w = ProtoWriter()
        for item in opts.items.sorted(by: { $0.field.number < $1.field.number }) {
            switch item.field {
            case .standard(let std):
                switch std.kind {
                case .bool: w.varint(std.number, item.value == .identifier("true", negative: false) ? 1 : 0)
                case .string: w.bytes(std.number, stringBytes(item.value))
                case .enumeration(let values):
                    if case .identifier(let name, _) = item.value {
                        w.varint(std.number, UInt64(bitPattern: Int64(values[name] ?? 0)))
                    }
                }
            case .extension(let ext):
                if item.path.isEmpty {
                    encode(&w, ext.number, ext.type, item.value, repeated: ext.isRepeated, packed: ext.isPacked)
                } else {
                    // `(ext).a.b = v` is the message ext { a { b: v } }.
                    var inner = ProtoWriter()
                    let last = item.path.last!
                    encode(&inner, last.number, last.type, item.value, repeated: last.isRepeated, packed: last.isPacked)
                    for sub in item.path.dropLast().reversed() {
                        var outer = ProtoWriter()
                        outer.bytes(sub.number, inner.out)
                        inner = outer
                    }
                    w.bytes(ext.number, inner.out)
                }
            }
        }
        return w.out
    }

    static func stringBytes(_ v: ConstantValue) -> [UInt8] {
        if case .string(let b) = v { return b }
        return []
    }

    /// Encodes a checked constant as field `number` of the given type.
    static func encode(
        _ w: inout ProtoWriter, _ number: Int, _ type: FieldType, _ v: ConstantValue, repeated: Bool, packed: Bool
    ) {
        if case .list(let items) = v {
            for item in items { encode(&w, number, type, item, repeated: false, packed: false) }
            return
        }
        switch type {
        case .message(let m):
            var inner = ProtoWriter()
            if case .aggregate(let entries) = v {
                for e in entries {
                    if let f = m.fields.first(where: { $0.name == e.name }) {
                        encode(&inner, f.number, f.type, e.value, repeated: f.isRepeated, packed: false)
                    }
                }
            }
            w.bytes(number, inner.out)
        case .enumeration(let e):
            if case .identifier(let name, _) = v, let value = e.values.first(where: { $0.name == name }) {
                w.varint(number, UInt64(bitPattern: Int64(value.number)))
            }
        case .scalar(let s):
            let i = integerValue(v)
            switch s {
            case .int32, .int64, .uint32, .uint64: w.varint(number, UInt64(bitPattern: i))
            case .bool: w.varint(number, (v == .identifier("true", negative: false) || i != 0) ? 1 : 0)
            case .sint32, .sint64: w.varint(number, UInt64(bitPattern: (i << 1) ^ (i >> 63)))
            case .fixed32, .sfixed32: w.fixed32(number, UInt32(truncatingIfNeeded: i))
            case .fixed64, .sfixed64: w.fixed64(number, UInt64(bitPattern: i))
            case .float: w.fixed32(number, Float(doubleValue(v)).bitPattern)
            case .double: w.fixed64(number, doubleValue(v).bitPattern)
            case .string, .bytes: w.bytes(number, stringBytes(v))
            }
        }
    }

    static func integerValue(_ v: ConstantValue) -> Int64 {
        if case .integer(let n, let neg) = v { return neg ? Int64(bitPattern: 0 &- n) : Int64(bitPattern: n) }
        return 0
    }

    static func doubleValue(_ v: ConstantValue) -> Double {
        switch v {
        case .float(let d): return d
        case .integer(let n, let neg): return neg ? -Double(n) : Double(n)
        case .identifier(let id, let neg):
            let d: Double = id.lowercased() == "nan" ? .nan : .infinity
            return neg ? -d : d
        default: return 0
        }
    }

    /// `FieldDescriptorProto.default_value` text, as protoc writes it.
    public static func defaultText(_ v: ConstantValue, _ type: FieldType) -> String {
        switch type {
        case .scalar(.string): return String(decoding: stringBytes(v), as: UTF8.self)
        case .scalar(.bytes): return cEscape(stringBytes(v))
        case .scalar(.bool):
            if case .identifier(let id, _) = v { return id }
            return integerValue(v) != 0 ? "true" : "false"
        case .scalar(.float), .scalar(.double):
            let d = doubleValue(v)
            if d.isNaN { return "nan" }
            if d.isInfinite { return d < 0 ? "-inf" : "inf" }
            if case .scalar(.float) = type { return shortest(Double(Float(d)), digits: [6, 9]) }
            return shortest(d, digits: [15, 17])
        case .enumeration:
            if case .identifier(let id, _) = v { return id }
            return ""
        case .scalar(let s):
            if case .integer(let n, let neg) = v {
                if [ScalarType.uint32, .uint64, .fixed32, .fixed64].contains(s) { return String(n) }
                return neg ? "-\(n)" : String(n)
            }
            return "0"
        case .message: return ""
        }
    }

    /// The shortest `%g` rendering that reads back to the same value.
    static func shortest(_ d: Double, digits: [Int]) -> String {
        for p in digits {
            let s = String(format: "%.\(p)g", d)
            if Double(s) == d || p == digits.last { return s }
        }
        return String(d)
    }

    /// C-style escaping of bytes (protoc's CEscape) for bytes defaults.
    static func cEscape(_ b: [UInt8]) -> String {
        var s = ""
        for c in b {
            switch c {
            case 0x0A: s += "\\n"
            case 0x0D: s += "\\r"
            case 0x09: s += "\\t"
            case 0x22: s += "\\\""
            case 0x27: s += "\\'"
            case 0x5C: s += "\\\\"
            case 0x20...0x7E: s.append(Character(UnicodeScalar(c)))
            default: s += "\\" + String(format: "%03o", c)
            }
        }
        return s
    }
}

/// A minimal protobuf wire writer for the generator's own descriptor output.
struct ProtoWriter {
    var out: [UInt8] = []

    mutating func rawVarint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            out.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    mutating func tag(_ number: Int, _ wireType: UInt64) { rawVarint(UInt64(number) << 3 | wireType) }

    mutating func varint(_ number: Int, _ v: UInt64) {
        tag(number, 0)
        rawVarint(v)
    }

    mutating func fixed32(_ number: Int, _ v: UInt32) {
        tag(number, 5)
        for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) }
    }

    mutating func fixed64(_ number: Int, _ v: UInt64) {
        tag(number, 1)
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }

    mutating func bytes(_ number: Int, _ b: [UInt8]) {
        tag(number, 2)
        rawVarint(UInt64(b.count))
        out += b
    }

    mutating func string(_ number: Int, _ s: String) { bytes(number, Array(s.utf8)) }
}
