import CBazaarProtobufC
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The well-known types' special JSON forms (proto3 JSON mapping), recognised by message name.
extension ProtoJSON {
    static let wrappers: Set<String> = [
        "google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value",
        "google.protobuf.UInt64Value",
        "google.protobuf.Int32Value", "google.protobuf.UInt32Value", "google.protobuf.BoolValue",
        "google.protobuf.StringValue",
        "google.protobuf.BytesValue",
    ]

    static func int64(_ m: UnsafeRawPointer, _ d: Descriptor, field n: Int) -> Int64 {
        m.load(fromByteOffset: Int(fields(d)[n].offset), as: Int64.self)
    }

    static func int32(_ m: UnsafeRawPointer, _ d: Descriptor, field n: Int) -> Int32 {
        m.load(fromByteOffset: Int(fields(d)[n].offset), as: Int32.self)
    }

    /// The special JSON form of a well-known type; `nil` for other messages.
    static func wellKnownToJSON(_ m: UnsafeRawPointer, _ d: Descriptor, _ o: Options) throws(JSONMappingError)
        -> JSONValue?
    {
        let type = name(d)
        guard type.hasPrefix("google.protobuf.") else { return nil }
        switch type {
        case "google.protobuf.Timestamp":
            return .string(try timestampText(seconds: int64(m, d, field: 0), nanos: int32(m, d, field: 1)))
        case "google.protobuf.Duration":
            return .string(try durationText(seconds: int64(m, d, field: 0), nanos: int32(m, d, field: 1)))
        case "google.protobuf.FieldMask":
            let f = fields(d)[0]
            let count = m.load(fromByteOffset: Int(f.quantifier_offset), as: Int.self)
            let base = m.load(fromByteOffset: Int(f.offset), as: UnsafePointer<UnsafePointer<CChar>>?.self)
            let paths = (0..<count).map { String(cString: base![$0]) }.map {
                $0.split(separator: ".").map { jsonName(String($0)) }.joined(separator: ".")
            }
            return .string(paths.joined(separator: ","))
        case "google.protobuf.Struct":
            var plain = o
            plain.emitDefaults = false
            return try plainValue(m, d, plain)["fields"] ?? .object([])
        case "google.protobuf.ListValue":
            return try plainValue(m, d, o)["values"] ?? .array([])
        case "google.protobuf.Value":
            guard case .object(let members) = try plainValue(m, d, o), let only = members.first else { return .null }
            return only.1
        default:
            guard wrappers.contains(type) else { return nil }
            let f = fields(d)[0]
            return try element(m.advanced(by: Int(f.offset)), f, o)
        }
    }

    /// The generic (field by field) JSON of a well-known message, for unwrapping.
    private static func plainValue(_ m: UnsafeRawPointer, _ d: Descriptor, _ o: Options) throws(JSONMappingError)
        -> JSONValue
    {
        var members: [(String, JSONValue)] = []
        for f in fields(d) {
            let key = jsonName(String(cString: f.name))
            if f.label == PROTOBUF_C_LABEL_REPEATED {
                // Struct's map and ListValue's list: reuse the general path through a one-field view.
                let count = m.load(fromByteOffset: Int(f.quantifier_offset), as: Int.self)
                let base = m.load(fromByteOffset: Int(f.offset), as: UnsafeRawPointer?.self)
                let sub = f.descriptor!.assumingMemoryBound(to: ProtobufCMessageDescriptor.self)
                if isMapEntry(sub) {
                    var map: [(String, JSONValue)] = []
                    let ef = fields(sub)
                    for i in 0..<count {
                        let e = base!.load(fromByteOffset: i * 8, as: UnsafeRawPointer.self)
                        let k =
                            e.load(fromByteOffset: Int(ef[0].offset), as: UnsafePointer<CChar>?.self).map {
                                String(cString: $0)
                            } ?? ""
                        map.append((k, try element(e.advanced(by: Int(ef[1].offset)), ef[1], o)))
                    }
                    members.append((key, .object(map)))
                } else {
                    var items: [JSONValue] = []
                    for i in 0..<count { items.append(try element(base!.advanced(by: i * 8), f, o)) }
                    members.append((key, .array(items)))
                }
                continue
            }
            if f.flags & UInt32(PROTOBUF_C_FIELD_FLAG_ONEOF.rawValue) != 0,
                m.load(fromByteOffset: Int(f.quantifier_offset), as: UInt32.self) != f.id
            {
                continue
            }
            members.append((key, try element(m.advanced(by: Int(f.offset)), f, o)))
        }
        return .object(members)
    }

    /// Fills a well-known message from its special JSON form; false for other messages.
    static func wellKnownFromJSON(
        _ m: UnsafeMutableRawPointer, _ json: JSONValue, _ d: Descriptor, _ arena: WireArena, _ o: Options,
        path: String, depth: Int
    ) throws(JSONMappingError) -> Bool {
        let type = name(d)
        guard type.hasPrefix("google.protobuf.") else { return false }
        let at = path.isEmpty ? "the body" : path
        switch type {
        case "google.protobuf.Timestamp":
            guard case .string(let s) = json, let (seconds, nanos) = parseTimestamp(s) else {
                throw JSONMappingError("\(at): expected an RFC 3339 timestamp such as \"2026-01-02T15:04:05Z\"")
            }
            m.storeBytes(of: seconds, toByteOffset: Int(fields(d)[0].offset), as: Int64.self)
            m.storeBytes(of: nanos, toByteOffset: Int(fields(d)[1].offset), as: Int32.self)
        case "google.protobuf.Duration":
            guard case .string(let s) = json, let (seconds, nanos) = parseDuration(s) else {
                throw JSONMappingError("\(at): expected a duration such as \"1.5s\"")
            }
            m.storeBytes(of: seconds, toByteOffset: Int(fields(d)[0].offset), as: Int64.self)
            m.storeBytes(of: nanos, toByteOffset: Int(fields(d)[1].offset), as: Int32.self)
        case "google.protobuf.FieldMask":
            guard case .string(let s) = json else {
                throw JSONMappingError("\(at): expected a field mask such as \"name,price.amountMinor\"")
            }
            let paths = s.split(separator: ",").map { path in
                path.split(separator: ".").map { segment in
                    segment.reduce(into: "") { out, c in
                        if c.isUppercase { out += "_" + c.lowercased() } else { out.append(c) }
                    }
                }.joined(separator: ".")
            }
            try append(m, fields(d)[0], paths.map { .string($0) }, arena, o, path: path, depth: depth)
        case "google.protobuf.Struct":
            guard case .object = json else { throw JSONMappingError("\(at): expected an object") }
            try fill(m, .object([("fields", json)]), d, arena, o, path: path, depth: depth, generic: true)
        case "google.protobuf.ListValue":
            guard case .array = json else { throw JSONMappingError("\(at): expected an array") }
            try fill(m, .object([("values", json)]), d, arena, o, path: path, depth: depth, generic: true)
        case "google.protobuf.Value":
            let member: (String, JSONValue)
            switch json {
            case .null: member = ("nullValue", .integer(0))
            case .bool: member = ("boolValue", json)
            case .integer, .unsigned, .double: member = ("numberValue", json)
            case .string: member = ("stringValue", json)
            case .object: member = ("structValue", json)
            case .array: member = ("listValue", json)
            }
            try fill(m, .object([member]), d, arena, o, path: path, depth: depth, generic: true)
        default:
            guard wrappers.contains(type) else { return false }
            try setSingle(m, fields(d)[0], json, arena, o, path: path, depth: depth)
        }
        return true
    }

    static func fill(
        _ m: UnsafeMutableRawPointer, _ json: JSONValue, _ d: Descriptor, _ arena: WireArena, _ o: Options,
        path: String, depth: Int,
        generic: Bool
    ) throws(JSONMappingError) {
        guard case .object(let members) = json else { return }
        for (key, value) in members {
            guard let f = field(named: key, in: d) else { continue }
            if f.label == PROTOBUF_C_LABEL_REPEATED {
                let sub = f.descriptor!.assumingMemoryBound(to: ProtobufCMessageDescriptor.self)
                if isMapEntry(sub), case .object(let pairs) = value {
                    try append(
                        m, f, pairs.map { .object([("key", .string($0.0)), ("value", $0.1)]) }, arena, o, path: path,
                        depth: depth + 1,
                        mapKeysAreStrings: true)
                } else if case .array(let items) = value {
                    try appendValues(m, f, items, arena, o, path: path, depth: depth + 1)
                }
                continue
            }
            try setSingle(m, f, value, arena, o, path: path, depth: depth)
        }
    }

    /// ListValue items may be null (a Value), unlike ordinary list items.
    static func appendValues(
        _ m: UnsafeMutableRawPointer, _ f: ProtobufCFieldDescriptor, _ items: [JSONValue], _ arena: WireArena,
        _ o: Options,
        path: String, depth: Int
    ) throws(JSONMappingError) {
        let sub = f.descriptor!.assumingMemoryBound(to: ProtobufCMessageDescriptor.self)
        let storage = arena.allocate(max(items.count, 1) * 8)
        for (i, item) in items.enumerated() {
            let e = try build(item, sub, arena, o, path: "\(path)[\(i)]", depth: depth)
            storage.storeBytes(of: e, toByteOffset: i * 8, as: UnsafeMutableRawPointer.self)
        }
        m.storeBytes(of: items.count, toByteOffset: Int(f.quantifier_offset), as: Int.self)
        m.storeBytes(of: storage, toByteOffset: Int(f.offset), as: UnsafeMutableRawPointer.self)
    }

    // MARK: time formats

    static let minTimestamp: Int64 = -62_135_596_800  // 0001-01-01T00:00:00Z
    static let maxTimestamp: Int64 = 253_402_300_799  // 9999-12-31T23:59:59Z

    /// `n` in exactly `width` digits (zero-padded); `n` is not negative.
    static func digits(_ n: Int, _ width: Int) -> String {
        var out = [UInt8](repeating: UInt8(ascii: "0"), count: width)
        var v = n
        var i = width - 1
        while i >= 0 && v > 0 {
            out[i] = UInt8(ascii: "0") + UInt8(v % 10)
            v /= 10
            i -= 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `.123`, `.123456` or `.123456789` (the shortest of the three that is exact), or nothing.
    /// Built by hand: String(format:) cost a tenth of the gateway's CPU per product answer.
    static func fraction(_ nanos: Int32) -> String {
        if nanos == 0 { return "" }
        let n = Int(nanos)
        if n % 1_000_000 == 0 { return "." + digits(n / 1_000_000, 3) }
        if n % 1000 == 0 { return "." + digits(n / 1000, 6) }
        return "." + digits(n, 9)
    }

    public static func timestampText(seconds: Int64, nanos: Int32) throws(JSONMappingError) -> String {
        guard (minTimestamp...maxTimestamp).contains(seconds), (0..<1_000_000_000).contains(nanos) else {
            throw JSONMappingError("timestamp out of range")
        }
        var t = time_t(seconds)
        var tm = tm()
        gmtime_r(&t, &tm)
        // Into one buffer (every timestamp of every response comes through here).
        var out = [UInt8](repeating: UInt8(ascii: "0"), count: 30)
        func put(_ value: Int, _ width: Int, at end: Int) {
            var v = value
            for i in stride(from: end - 1, through: end - width, by: -1) {
                out[i] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
            }
        }
        put(Int(tm.tm_year) + 1900, 4, at: 4)
        out[4] = UInt8(ascii: "-")
        put(Int(tm.tm_mon) + 1, 2, at: 7)
        out[7] = UInt8(ascii: "-")
        put(Int(tm.tm_mday), 2, at: 10)
        out[10] = UInt8(ascii: "T")
        put(Int(tm.tm_hour), 2, at: 13)
        out[13] = UInt8(ascii: ":")
        put(Int(tm.tm_min), 2, at: 16)
        out[16] = UInt8(ascii: ":")
        put(Int(tm.tm_sec), 2, at: 19)
        var end = 19
        if nanos != 0 {
            let n = Int(nanos)
            let (value, width) = n % 1_000_000 == 0 ? (n / 1_000_000, 3) : n % 1000 == 0 ? (n / 1000, 6) : (n, 9)
            out[19] = UInt8(ascii: ".")
            put(value, width, at: 20 + width)
            end = 20 + width
        }
        out[end] = UInt8(ascii: "Z")
        return String(decoding: out[...end], as: UTF8.self)
    }

    /// RFC 3339: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
    public static func parseTimestamp(_ s: String) -> (Int64, Int32)? {
        let b = Array(s.utf8)
        func digits(_ from: Int, _ n: Int) -> Int? {
            guard from + n <= b.count else { return nil }
            var v = 0
            for i in from..<(from + n) {
                guard b[i] >= 48, b[i] <= 57 else { return nil }
                v = v * 10 + Int(b[i] - 48)
            }
            return v
        }
        guard b.count >= 20, let year = digits(0, 4), b[4] == 45, let month = digits(5, 2), b[7] == 45,
            let day = digits(8, 2),
            b[10] == 84 || b[10] == 116, let hour = digits(11, 2), b[13] == 58, let minute = digits(14, 2), b[16] == 58,
            let second = digits(17, 2), (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60,
            second < 60
        else { return nil }
        var i = 19
        var nanos = 0
        if i < b.count, b[i] == 46 {
            i += 1
            var n = 0
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                guard n < 9 else { return nil }
                nanos = nanos * 10 + Int(b[i] - 48)
                n += 1
                i += 1
            }
            guard n > 0 else { return nil }
            for _ in n..<9 { nanos *= 10 }
        }
        var offset = 0
        guard i < b.count else { return nil }
        if b[i] == 90 || b[i] == 122 {
            i += 1
        } else if b[i] == 43 || b[i] == 45, let oh = digits(i + 1, 2), i + 3 < b.count, b[i + 3] == 58,
            let om = digits(i + 4, 2), oh < 24, om < 60
        {
            offset = (oh * 60 + om) * 60 * (b[i] == 43 ? 1 : -1)
            i += 6
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        var tm = tm()
        tm.tm_year = Int32(year - 1900)
        tm.tm_mon = Int32(month - 1)
        tm.tm_mday = Int32(day)
        tm.tm_hour = Int32(hour)
        tm.tm_min = Int32(minute)
        tm.tm_sec = Int32(second)
        let seconds = Int64(timegm(&tm)) - Int64(offset)
        // timegm normalises impossible dates (Feb 30): refuse those.
        var check = time_t(Int64(timegm(&tm)))
        var back = Glibc.tm()
        gmtime_r(&check, &back)
        guard back.tm_mday == Int32(day), (minTimestamp...maxTimestamp).contains(seconds) else { return nil }
        return (seconds, Int32(nanos))
    }

    public static func durationText(seconds: Int64, nanos: Int32) throws(JSONMappingError) -> String {
        guard abs(seconds) <= 315_576_000_000, abs(nanos) < 1_000_000_000,
            seconds == 0 || nanos == 0 || (seconds < 0) == (nanos < 0)
        else {
            throw JSONMappingError("duration out of range")
        }
        let negative = seconds < 0 || nanos < 0
        return (negative ? "-" : "") + String(abs(seconds)) + fraction(abs(nanos)) + "s"
    }

    public static func parseDuration(_ s: String) -> (Int64, Int32)? {
        guard s.hasSuffix("s") else { return nil }
        var body = Substring(s.dropLast())
        let negative = body.hasPrefix("-")
        if negative { body = body.dropFirst() }
        let parts = body.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 2, let whole = parts.first, !whole.isEmpty, whole.allSatisfy(\.isASCII),
            whole.allSatisfy(\.isNumber),
            let seconds = Int64(whole), seconds <= 315_576_000_000
        else { return nil }
        var nanos: Int64 = 0
        if parts.count == 2 {
            let frac = parts[1]
            guard !frac.isEmpty, frac.count <= 9, frac.allSatisfy({ $0.isASCII && $0.isNumber }), let f = Int64(frac)
            else { return nil }
            nanos = f
            for _ in frac.count..<9 { nanos *= 10 }
        }
        return negative ? (-seconds, Int32(-nanos)) : (seconds, Int32(nanos))
    }
}
