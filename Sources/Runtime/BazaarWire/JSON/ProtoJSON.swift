import CBazaarProtobufC
import Foundation
import Glibc

/// The proto3 canonical JSON mapping, driven by protobuf-c descriptors, so it works for any
/// message the process has descriptors for (the gateway transcodes without generated code).
///
/// - Field names: lowerCamelCase (the `json_name` protoc derives) on output; that or the original
///   name accepted on input.
/// - 64-bit integers as strings on output; strings or numbers accepted.
/// - bytes as standard base64 on output; standard or URL-safe, padded or not, accepted.
/// - Enums by name on output; names or numbers accepted.
/// - Well-known types: Timestamp (RFC 3339), Duration ("1.5s"), the wrappers, Struct/Value/
///   ListValue, FieldMask ("a.b,cD"), Empty.
/// - Fields at their default (proto3 implicit presence) are left out of the output; set oneof
///   members and present messages are always written.
/// - Unknown fields are an error unless ``Options/ignoreUnknownFields``.
public enum ProtoJSON {
    public struct Options: Sendable {
        public var ignoreUnknownFields = false
        /// Write fields at their default values too.
        public var emitDefaults = false
        /// Deepest nesting accepted on input.
        public var maxDepth = 64
        public init() {}
    }

    public typealias Descriptor = UnsafePointer<ProtobufCMessageDescriptor>

    // MARK: protobuf -> JSON

    /// The JSON form of the message `bytes` encode.
    public static func encode(_ bytes: [UInt8], as descriptor: Descriptor, options: Options = Options())
        throws(JSONMappingError) -> JSONValue
    {
        let arena = WireArena()
        let raw: UnsafeMutablePointer<ProtobufCMessage>? = bytes.withUnsafeBufferPointer { buffer in
            arena.withAllocator { protobuf_c_message_unpack(descriptor, $0, buffer.count, buffer.baseAddress) }
        }
        guard let raw else { throw JSONMappingError("the message is not a valid \(name(descriptor))") }
        return try value(of: UnsafeRawPointer(raw), descriptor, options)
    }

    /// The full protobuf name of a message descriptor (`shop.v1.Product`).
    public static func name(_ d: Descriptor) -> String { String(cString: d.pointee.name) }

    /// A message's fields, in declaration order.
    public static func fields(_ d: Descriptor) -> UnsafeBufferPointer<ProtobufCFieldDescriptor> {
        UnsafeBufferPointer(start: d.pointee.fields, count: Int(d.pointee.n_fields))
    }

    /// A message's field names, original and JSON, computed once per descriptor: the gateway maps
    /// every request and response, and building the names each time cost more than the mapping.
    static func names(_ d: Descriptor) -> [(original: String, json: String)] {
        let key = Int(bitPattern: d)
        if let cached = nameCache.withLock({ $0[key] }) { return cached.list }
        let list = fields(d).map { f -> (original: String, json: String) in
            let original = String(cString: f.name)
            return (original, jsonName(original))
        }
        nameCache.withLock { $0[key] = NameList(list: list) }
        return list
    }

    struct NameList: Sendable { let list: [(original: String, json: String)] }
    static let nameCache = NameCache()

    /// The names by descriptor address, behind a pthread mutex: BazaarCore's `Lock` sits above this
    /// module, and the standard library's `Mutex` hands contended locks over in a way
    /// ThreadSanitizer cannot see (it reported this cache as racing).
    final class NameCache: @unchecked Sendable {
        private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        private var names: [Int: NameList] = [:]

        init() { pthread_mutex_init(mutex, nil) }

        func withLock<R>(_ body: (inout [Int: NameList]) -> R) -> R {
            pthread_mutex_lock(mutex)
            defer { pthread_mutex_unlock(mutex) }
            return body(&names)
        }
    }

    /// Forgets what was cached for descriptors about to be freed (built at run time, by a
    /// `DescriptorPool` that is going). The cache is keyed by address: a later descriptor at the
    /// same address must not get these names, and schemas replaced again and again must not grow it.
    public static func forget(_ descriptors: some Sequence<Descriptor>) {
        nameCache.withLock { cache in
            for d in descriptors { cache[Int(bitPattern: d)] = nil }
        }
    }

    /// lowerCamelCase of a field name, as protoc derives `json_name`.
    public static func jsonName(_ field: String) -> String {
        var out = ""
        var upper = false
        for c in field {
            if c == "_" {
                upper = true
                continue
            }
            out.append(upper ? Character(c.uppercased()) : c)
            upper = false
        }
        return out
    }

    /// Whether a message is a map's entry type (`key` = 1, `value` = 2, both singular, a scalar
    /// key, named `...Entry`). (A schema from elsewhere may name any message so: the shape, not
    /// the name, decides how its fields are read.)
    public static func isMapEntry(_ d: Descriptor) -> Bool {
        let f = fields(d)
        return name(d).hasSuffix("Entry") && f.count == 2 && f[0].id == 1 && f[1].id == 2
            && String(cString: f[0].name) == "key" && String(cString: f[1].name) == "value"
            && f[0].label != PROTOBUF_C_LABEL_REPEATED && f[1].label != PROTOBUF_C_LABEL_REPEATED
            && f[0].type != PROTOBUF_C_TYPE_MESSAGE && f[0].type != PROTOBUF_C_TYPE_BYTES
    }

    static func value(of message: UnsafeRawPointer, _ d: Descriptor, _ o: Options) throws(JSONMappingError) -> JSONValue
    {
        if let wkt = try wellKnownToJSON(message, d, o) { return wkt }
        var members: [(String, JSONValue)] = []
        let names = names(d)
        for (n, f) in fields(d).enumerated() {
            let key = names[n].json
            if f.label == PROTOBUF_C_LABEL_REPEATED {
                let count = message.load(fromByteOffset: Int(f.quantifier_offset), as: Int.self)
                if count == 0 && !o.emitDefaults { continue }
                let base = message.load(fromByteOffset: Int(f.offset), as: UnsafeRawPointer?.self)
                if f.type == PROTOBUF_C_TYPE_MESSAGE,
                    let entry = f.descriptor?.assumingMemoryBound(to: ProtobufCMessageDescriptor.self),
                    isMapEntry(entry)
                {
                    var map: [(String, JSONValue)] = []
                    let ef = fields(entry)
                    for i in 0..<count {
                        let e = base!.load(fromByteOffset: i * 8, as: UnsafeRawPointer.self)
                        let k = scalar(e.advanced(by: Int(ef[0].offset)), ef[0])
                        let keyText: String
                        switch k {
                        case .string(let s): keyText = s
                        case .bool(let b): keyText = b ? "true" : "false"
                        case .integer(let n): keyText = String(n)
                        case .unsigned(let n): keyText = String(n)
                        default: keyText = k.text
                        }
                        map.append((keyText, try element(e.advanced(by: Int(ef[1].offset)), ef[1], o)))
                    }
                    members.append((key, .object(map)))
                    continue
                }
                var items: [JSONValue] = []
                let size = elementSize(f)
                for i in 0..<count { items.append(try element(base!.advanced(by: i * size), f, o)) }
                members.append((key, .array(items)))
                continue
            }
            let at = message.advanced(by: Int(f.offset))
            if f.flags & UInt32(PROTOBUF_C_FIELD_FLAG_ONEOF.rawValue) != 0 {
                guard message.load(fromByteOffset: Int(f.quantifier_offset), as: UInt32.self) == f.id else { continue }
                members.append((key, try element(at, f, o)))
                continue
            }
            if f.label == PROTOBUF_C_LABEL_OPTIONAL {
                // Explicit presence: a has_ flag for scalars and bytes; for strings and messages
                // a pointer that is set (and, for strings, not the shared default).
                if hasFlag(f) {
                    guard message.load(fromByteOffset: Int(f.quantifier_offset), as: Int32.self) != 0 else { continue }
                } else {
                    guard let p = at.load(as: UnsafeRawPointer?.self), p != UnsafeRawPointer(f.default_value) else {
                        continue
                    }
                }
                members.append((key, try element(at, f, o)))
                continue
            }
            if f.label == PROTOBUF_C_LABEL_REQUIRED {
                members.append((key, try element(at, f, o)))
                continue
            }
            if !o.emitDefaults && isDefault(at, f) { continue }
            if f.type == PROTOBUF_C_TYPE_MESSAGE && at.load(as: UnsafeRawPointer?.self) == nil {
                if o.emitDefaults { members.append((key, .null)) }
                continue
            }
            members.append((key, try element(at, f, o)))
        }
        return .object(members)
    }

    /// Whether an optional field keeps a `has_` flag (scalars and bytes do; strings and messages
    /// use a null pointer).
    static func hasFlag(_ f: ProtobufCFieldDescriptor) -> Bool {
        f.type != PROTOBUF_C_TYPE_STRING && f.type != PROTOBUF_C_TYPE_MESSAGE
    }

    static func elementSize(_ f: ProtobufCFieldDescriptor) -> Int {
        switch f.type {
        case PROTOBUF_C_TYPE_INT64, PROTOBUF_C_TYPE_SINT64, PROTOBUF_C_TYPE_SFIXED64, PROTOBUF_C_TYPE_UINT64,
            PROTOBUF_C_TYPE_FIXED64,
            PROTOBUF_C_TYPE_DOUBLE, PROTOBUF_C_TYPE_STRING, PROTOBUF_C_TYPE_MESSAGE:
            8
        case PROTOBUF_C_TYPE_BYTES: MemoryLayout<ProtobufCBinaryData>.stride
        default: 4
        }
    }

    static func isDefault(_ at: UnsafeRawPointer, _ f: ProtobufCFieldDescriptor) -> Bool {
        switch f.type {
        case PROTOBUF_C_TYPE_STRING:
            guard let p = at.load(as: UnsafePointer<CChar>?.self) else { return true }
            return p.pointee == 0
        case PROTOBUF_C_TYPE_MESSAGE: return at.load(as: UnsafeRawPointer?.self) == nil
        case PROTOBUF_C_TYPE_BYTES: return at.load(as: ProtobufCBinaryData.self).len == 0
        case PROTOBUF_C_TYPE_DOUBLE: return at.load(as: UInt64.self) == 0  // -0.0 is written
        case PROTOBUF_C_TYPE_FLOAT: return at.load(as: UInt32.self) == 0
        default: return elementSize(f) == 8 ? at.load(as: UInt64.self) == 0 : at.load(as: UInt32.self) == 0
        }
    }

    static func element(_ at: UnsafeRawPointer, _ f: ProtobufCFieldDescriptor, _ o: Options) throws(JSONMappingError)
        -> JSONValue
    {
        switch f.type {
        case PROTOBUF_C_TYPE_MESSAGE:
            guard let m = at.load(as: UnsafeRawPointer?.self) else { return .null }
            return try value(of: m, f.descriptor!.assumingMemoryBound(to: ProtobufCMessageDescriptor.self), o)
        case PROTOBUF_C_TYPE_ENUM:
            let n = at.load(as: Int32.self)
            let e = f.descriptor!.assumingMemoryBound(to: ProtobufCEnumDescriptor.self)
            if String(cString: e.pointee.name) == "google.protobuf.NullValue" { return .null }
            if let v = protobuf_c_enum_descriptor_get_value(e, n) { return .string(String(cString: v.pointee.name)) }
            return .integer(Int64(n))
        default:
            return scalar(at, f)
        }
    }

    static func scalar(_ at: UnsafeRawPointer, _ f: ProtobufCFieldDescriptor) -> JSONValue {
        switch f.type {
        case PROTOBUF_C_TYPE_INT32, PROTOBUF_C_TYPE_SINT32, PROTOBUF_C_TYPE_SFIXED32, PROTOBUF_C_TYPE_ENUM:
            .integer(Int64(at.load(as: Int32.self)))
        case PROTOBUF_C_TYPE_UINT32, PROTOBUF_C_TYPE_FIXED32: .integer(Int64(at.load(as: UInt32.self)))
        case PROTOBUF_C_TYPE_INT64, PROTOBUF_C_TYPE_SINT64, PROTOBUF_C_TYPE_SFIXED64:
            .string(String(at.load(as: Int64.self)))
        case PROTOBUF_C_TYPE_UINT64, PROTOBUF_C_TYPE_FIXED64: .string(String(at.load(as: UInt64.self)))
        case PROTOBUF_C_TYPE_FLOAT: floating(Double(at.load(as: Float.self)), float: true)
        case PROTOBUF_C_TYPE_DOUBLE: floating(at.load(as: Double.self), float: false)
        case PROTOBUF_C_TYPE_BOOL: .bool(at.load(as: Int32.self) != 0)
        case PROTOBUF_C_TYPE_STRING: .string(at.load(as: UnsafePointer<CChar>?.self).map { String(cString: $0) } ?? "")
        case PROTOBUF_C_TYPE_BYTES:
            {
                let b = at.load(as: ProtobufCBinaryData.self)
                return .string(Base64.encode(UnsafeBufferPointer(start: b.data, count: b.len)))
            }()
        default: .null
        }
    }

    static func floating(_ d: Double, float: Bool) -> JSONValue {
        if d.isNaN { return .string("NaN") }
        if d.isInfinite { return .string(d > 0 ? "Infinity" : "-Infinity") }
        // A float printed through Double shows noise digits (0.1f -> 0.10000000149011612).
        if float, let shortest = Double("\(Float(d))") { return .double(shortest) }
        return .double(d)
    }

    // MARK: JSON -> protobuf

    /// The wire encoding of the message `json` describes.
    public static func decode(_ json: JSONValue, as descriptor: Descriptor, options: Options = Options())
        throws(JSONMappingError) -> [UInt8]
    {
        let arena = WireArena()
        let message = try build(json, descriptor, arena, options, path: "", depth: 0)
        return pack(message)
    }

    static func pack(_ message: UnsafeMutableRawPointer) -> [UInt8] {
        let m = message.assumingMemoryBound(to: ProtobufCMessage.self)
        let size = protobuf_c_message_get_packed_size(m)
        // Not through `unsafeUninitializedCapacity` when empty (see `WireMessage.serializedBytes`).
        if size == 0 { return [] }
        return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            count = protobuf_c_message_pack(m, buffer.baseAddress!)
        }
    }

    /// Sets fields of an existing message from JSON members, for the gateway's request
    /// assembly (body, path variables and query parameters onto one message).
    public final class Builder {
        let arena = WireArena()
        public let descriptor: Descriptor
        let root: UnsafeMutableRawPointer
        let options: Options

        public init(_ descriptor: Descriptor, options: Options = Options()) {
            self.descriptor = descriptor
            self.options = options
            root = arena.newMessage(descriptor)
        }

        /// Merges a JSON object into the whole message.
        public func merge(_ json: JSONValue) throws(JSONMappingError) {
            try ProtoJSON.fill(root, json, descriptor, arena, options, path: "", depth: 0)
        }

        /// Sets the field at a dotted path (`product.id`) from JSON (a whole value for a message
        /// field, or a scalar); repeated fields append.
        public func set(path: [String], _ value: JSONValue) throws(JSONMappingError) {
            var message = root
            var d = descriptor
            for (n, segment) in path.enumerated() {
                guard let f = ProtoJSON.field(named: segment, in: d) else {
                    throw JSONMappingError(
                        "\(path.prefix(n + 1).joined(separator: ".")): no such field in \(ProtoJSON.name(d))")
                }
                let dotted = path.prefix(n + 1).joined(separator: ".")
                if n == path.count - 1 {
                    if f.label == PROTOBUF_C_LABEL_REPEATED {
                        try ProtoJSON.append(message, f, [value], arena, options, path: dotted, depth: n)
                    } else {
                        try ProtoJSON.setSingle(message, f, value, arena, options, path: dotted, depth: n)
                    }
                    return
                }
                guard f.type == PROTOBUF_C_TYPE_MESSAGE, f.label != PROTOBUF_C_LABEL_REPEATED else {
                    throw JSONMappingError(
                        "\(dotted): not a message field, cannot hold \(path[(n + 1)...].joined(separator: "."))")
                }
                let sub = f.descriptor!.assumingMemoryBound(to: ProtobufCMessageDescriptor.self)
                let slot = message.advanced(by: Int(f.offset))
                if slot.load(as: UnsafeMutableRawPointer?.self) == nil {
                    slot.storeBytes(of: arena.newMessage(sub), as: UnsafeMutableRawPointer?.self)
                    ProtoJSON.markOneof(message, f)
                }
                message = slot.load(as: UnsafeMutableRawPointer.self)
                d = sub
            }
        }

        /// The field a dotted path names, for checking routes against messages.
        public static func fieldType(path: [String], in descriptor: Descriptor) -> (
            type: ProtobufCType, repeated: Bool, message: String?
        )? {
            var d = descriptor
            for (n, segment) in path.enumerated() {
                guard let f = ProtoJSON.field(named: segment, in: d) else { return nil }
                let sub =
                    f.type == PROTOBUF_C_TYPE_MESSAGE
                    ? f.descriptor!.assumingMemoryBound(to: ProtobufCMessageDescriptor.self) : nil
                if n == path.count - 1 {
                    return (f.type, f.label == PROTOBUF_C_LABEL_REPEATED, sub.map(ProtoJSON.name))
                }
                guard let sub, f.label != PROTOBUF_C_LABEL_REPEATED else { return nil }
                d = sub
            }
            return nil
        }

        public func serialized() -> [UInt8] { ProtoJSON.pack(root) }
    }

    /// The field with this name or JSON name.
    public static func field(named name: String, in d: Descriptor) -> ProtobufCFieldDescriptor? {
        let names = names(d)
        for (n, f) in fields(d).enumerated() where names[n].original == name || names[n].json == name { return f }
        return nil
    }

    static func build(_ json: JSONValue, _ d: Descriptor, _ arena: WireArena, _ o: Options, path: String, depth: Int)
        throws(JSONMappingError) -> UnsafeMutableRawPointer
    {
        guard depth <= o.maxDepth else {
            throw JSONMappingError("\(path.isEmpty ? "the body" : path): nested deeper than \(o.maxDepth) levels")
        }
        let m = arena.newMessage(d)
        try fill(m, json, d, arena, o, path: path, depth: depth)
        return m
    }

    static func fill(
        _ m: UnsafeMutableRawPointer, _ json: JSONValue, _ d: Descriptor, _ arena: WireArena, _ o: Options,
        path: String, depth: Int
    ) throws(JSONMappingError) {
        if try wellKnownFromJSON(m, json, d, arena, o, path: path, depth: depth) { return }
        guard case .object(let members) = json else {
            throw JSONMappingError(
                "\(path.isEmpty ? "the body" : path): expected an object for \(name(d)), got \(json.kind)")
        }
        for (key, value) in members {
            let fieldPath = path.isEmpty ? key : "\(path).\(key)"
            guard let f = field(named: key, in: d) else {
                if o.ignoreUnknownFields { continue }
                throw JSONMappingError("\(fieldPath): unknown field of \(name(d))")
            }
            if case .null = value,
                !(f.type == PROTOBUF_C_TYPE_MESSAGE
                    && name(f.descriptor!.assumingMemoryBound(to: ProtobufCMessageDescriptor.self))
                        == "google.protobuf.Value")
            {
                continue  // null means "the default"
            }
            if f.label == PROTOBUF_C_LABEL_REPEATED {
                if f.type == PROTOBUF_C_TYPE_MESSAGE,
                    let entry = f.descriptor?.assumingMemoryBound(to: ProtobufCMessageDescriptor.self),
                    isMapEntry(entry)
                {
                    guard case .object(let pairs) = value else {
                        throw JSONMappingError("\(fieldPath): expected an object (a map), got \(value.kind)")
                    }
                    var entries: [JSONValue] = []
                    for (k, v) in pairs { entries.append(.object([("key", .string(k)), ("value", v)])) }
                    try append(m, f, entries, arena, o, path: fieldPath, depth: depth, mapKeysAreStrings: true)
                    continue
                }
                guard case .array(let items) = value else {
                    throw JSONMappingError("\(fieldPath): expected an array, got \(value.kind)")
                }
                try append(m, f, items, arena, o, path: fieldPath, depth: depth)
                continue
            }
            try setSingle(m, f, value, arena, o, path: fieldPath, depth: depth)
        }
    }

    static func markOneof(_ m: UnsafeMutableRawPointer, _ f: ProtobufCFieldDescriptor) {
        if f.flags & UInt32(PROTOBUF_C_FIELD_FLAG_ONEOF.rawValue) != 0 {
            m.storeBytes(of: f.id, toByteOffset: Int(f.quantifier_offset), as: UInt32.self)
        } else if f.label == PROTOBUF_C_LABEL_OPTIONAL, hasFlag(f) {
            m.storeBytes(of: Int32(1), toByteOffset: Int(f.quantifier_offset), as: Int32.self)
        }
    }

    static func setSingle(
        _ m: UnsafeMutableRawPointer, _ f: ProtobufCFieldDescriptor, _ value: JSONValue, _ arena: WireArena,
        _ o: Options,
        path: String, depth: Int
    ) throws(JSONMappingError) {
        try store(value, at: m.advanced(by: Int(f.offset)), f, arena, o, path: path, depth: depth)
        markOneof(m, f)
    }

    static func append(
        _ m: UnsafeMutableRawPointer, _ f: ProtobufCFieldDescriptor, _ items: [JSONValue], _ arena: WireArena,
        _ o: Options,
        path: String, depth: Int, mapKeysAreStrings: Bool = false
    ) throws(JSONMappingError) {
        let size = elementSize(f)
        let old = m.load(fromByteOffset: Int(f.quantifier_offset), as: Int.self)
        let total = old + items.count
        let storage = arena.allocate(max(total, 1) * size)
        if old > 0, let previous = m.load(fromByteOffset: Int(f.offset), as: UnsafeRawPointer?.self) {
            storage.copyMemory(from: previous, byteCount: old * size)
        }
        for (i, item) in items.enumerated() {
            if case .null = item { throw JSONMappingError("\(path)[\(old + i)]: null is not allowed in a list") }
            let at = storage.advanced(by: (old + i) * size)
            if mapKeysAreStrings {
                // A map entry: its key arrives as a JSON string whatever the key type is.
                let entry = f.descriptor!.assumingMemoryBound(to: ProtobufCMessageDescriptor.self)
                let e = arena.newMessage(entry)
                let ef = fields(entry)
                guard case .string(let keyText) = item["key"] else { continue }
                let keyValue: JSONValue =
                    ef[0].type == PROTOBUF_C_TYPE_STRING
                    ? .string(keyText)
                    : ef[0].type == PROTOBUF_C_TYPE_BOOL ? .bool(keyText == "true") : .string(keyText)
                if ef[0].type == PROTOBUF_C_TYPE_BOOL, keyText != "true", keyText != "false" {
                    throw JSONMappingError("\(path): map key \(keyText) is not a boolean")
                }
                try store(
                    keyValue, at: e.advanced(by: Int(ef[0].offset)), ef[0], arena, o, path: "\(path).\(keyText)",
                    depth: depth + 1)
                try store(
                    item["value"] ?? .null, at: e.advanced(by: Int(ef[1].offset)), ef[1], arena, o,
                    path: "\(path).\(keyText)", depth: depth + 1)
                at.storeBytes(of: e, as: UnsafeMutableRawPointer.self)
            } else {
                try store(item, at: at, f, arena, o, path: "\(path)[\(old + i)]", depth: depth)
            }
        }
        m.storeBytes(of: total, toByteOffset: Int(f.quantifier_offset), as: Int.self)
        m.storeBytes(of: storage, toByteOffset: Int(f.offset), as: UnsafeMutableRawPointer.self)
    }

    static func store(
        _ v: JSONValue, at p: UnsafeMutableRawPointer, _ f: ProtobufCFieldDescriptor, _ arena: WireArena, _ o: Options,
        path: String, depth: Int
    ) throws(JSONMappingError) {
        func fail(_ what: String) -> JSONMappingError {
            JSONMappingError(
                "\(path): expected \(what), got \(v.kind == "a string" ? "\"\(v.stringValue ?? "")\"" : v.kind)")
        }
        switch f.type {
        case PROTOBUF_C_TYPE_INT32, PROTOBUF_C_TYPE_SINT32, PROTOBUF_C_TYPE_SFIXED32:
            guard let n = integer(v), let x = Int32(exactly: n) else { throw fail("a 32-bit integer") }
            p.storeBytes(of: x, as: Int32.self)
        case PROTOBUF_C_TYPE_UINT32, PROTOBUF_C_TYPE_FIXED32:
            guard let n = integer(v), let x = UInt32(exactly: n) else { throw fail("an unsigned 32-bit integer") }
            p.storeBytes(of: x, as: UInt32.self)
        case PROTOBUF_C_TYPE_INT64, PROTOBUF_C_TYPE_SINT64, PROTOBUF_C_TYPE_SFIXED64:
            guard let n = integer(v), let x = Int64(exactly: n) else {
                throw fail("a 64-bit integer (a string or a number)")
            }
            p.storeBytes(of: x, as: Int64.self)
        case PROTOBUF_C_TYPE_UINT64, PROTOBUF_C_TYPE_FIXED64:
            guard let x = unsigned(v) else { throw fail("an unsigned 64-bit integer (a string or a number)") }
            p.storeBytes(of: x, as: UInt64.self)
        case PROTOBUF_C_TYPE_FLOAT:
            guard let d = floating(v), d.isNaN || d.isInfinite || abs(d) <= Double(Float.greatestFiniteMagnitude) else {
                throw fail("a float")
            }
            p.storeBytes(of: Float(d), as: Float.self)
        case PROTOBUF_C_TYPE_DOUBLE:
            guard let d = floating(v) else { throw fail("a number") }
            p.storeBytes(of: d, as: Double.self)
        case PROTOBUF_C_TYPE_BOOL:
            guard case .bool(let b) = v else { throw fail("true or false") }
            p.storeBytes(of: Int32(b ? 1 : 0), as: Int32.self)
        case PROTOBUF_C_TYPE_STRING:
            guard case .string(let s) = v else { throw fail("a string") }
            guard let c = try? arena.cString(s) else {
                throw JSONMappingError("\(path): strings cannot contain U+0000")
            }
            p.storeBytes(of: UnsafePointer(c), as: UnsafePointer<CChar>.self)
        case PROTOBUF_C_TYPE_BYTES:
            guard case .string(let s) = v, let data = Base64.decode(s) else { throw fail("base64") }
            p.storeBytes(of: arena.binary(data), as: ProtobufCBinaryData.self)
        case PROTOBUF_C_TYPE_ENUM:
            let e = f.descriptor!.assumingMemoryBound(to: ProtobufCEnumDescriptor.self)
            if String(cString: e.pointee.name) == "google.protobuf.NullValue" {
                p.storeBytes(of: Int32(0), as: Int32.self)
                return
            }
            switch v {
            case .string(let s):
                guard let value = protobuf_c_enum_descriptor_get_value_by_name(e, s) else {
                    throw JSONMappingError("\(path): \"\(s)\" is not a value of \(String(cString: e.pointee.name))")
                }
                p.storeBytes(of: value.pointee.value, as: Int32.self)
            default:
                guard let n = integer(v), let x = Int32(exactly: n) else { throw fail("an enum name or number") }
                p.storeBytes(of: x, as: Int32.self)
            }
        case PROTOBUF_C_TYPE_MESSAGE:
            let sub = f.descriptor!.assumingMemoryBound(to: ProtobufCMessageDescriptor.self)
            let m = try build(v, sub, arena, o, path: path, depth: depth + 1)
            p.storeBytes(of: m, as: UnsafeMutableRawPointer.self)
        default:
            throw JSONMappingError("\(path): unsupported field type")
        }
    }

    static func integer(_ v: JSONValue) -> Int64? {
        switch v {
        case .integer(let i): return i
        case .double(let d): return d == d.rounded() && abs(d) < 9.2e18 ? Int64(d) : nil
        case .string(let s):
            return Int64(s.trimmingCharacters(in: .whitespaces))
                ?? Double(s).flatMap { $0 == $0.rounded() && abs($0) < 9.2e18 ? Int64($0) : nil }
        default: return nil
        }
    }

    static func unsigned(_ v: JSONValue) -> UInt64? {
        switch v {
        case .integer(let i): return i >= 0 ? UInt64(i) : nil
        case .unsigned(let u): return u
        case .double(let d): return d >= 0 && d == d.rounded() && d < 1.8e19 ? UInt64(d) : nil
        case .string(let s): return UInt64(s)
        default: return nil
        }
    }

    static func floating(_ v: JSONValue) -> Double? {
        switch v {
        case .integer(let i): return Double(i)
        case .unsigned(let u): return Double(u)
        case .double(let d): return d
        case .string("NaN"): return .nan
        case .string("Infinity"): return .infinity
        case .string("-Infinity"): return -.infinity
        case .string(let s): return Double(s).flatMap { $0.isFinite ? $0 : nil }
        default: return nil
        }
    }
}

extension JSONValue {
    var stringValue: String? { if case .string(let s) = self { s } else { nil } }
}
