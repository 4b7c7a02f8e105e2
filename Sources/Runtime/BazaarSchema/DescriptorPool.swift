import BazaarWire
import CBazaarProtobufC
import Foundation
import WellKnownTypes

/// protobuf-c descriptors for every message and enum of a set of `FileDescriptorProto`s, made at
/// run time: what the gateway and `bazaar call` pack, unpack and map to JSON with when the schema
/// comes from a service (server reflection) or a descriptor-set file instead of compiled code.
///
/// The layout follows `bazaar-codegen`'s C emitter (which follows protoc-c 1.4): members in
/// declaration order, a `has_` flag before optional scalars, `n_` counts before repeated fields,
/// each real oneof as a case word and a union after the other members; fields by number, a name
/// index, number ranges; proto3 strings start at protobuf-c's empty string (oneof members excepted,
/// see `describe`). So a message packs to
/// the same bytes with these descriptors as with the generated ones (`DescriptorPoolTests`).
///
/// The pool owns every descriptor it made; they live as long as it does. Keep the pool alive
/// while any pointer it gave out is in use.
public final class DescriptorPool: @unchecked Sendable {
    public struct BuildError: Error, CustomStringConvertible, Sendable {
        public let description: String
        init(_ d: String) { description = d }
    }

    /// The files, dependencies first.
    public let files: [Google_Protobuf_FileDescriptorProto]
    public private(set) var messages: [String: UnsafePointer<ProtobufCMessageDescriptor>] = [:]
    public private(set) var enums: [String: UnsafePointer<ProtobufCEnumDescriptor>] = [:]

    private var blocks: [UnsafeMutableRawPointer] = []

    /// Builds descriptors for every message and enum the files define. Every type a field names
    /// must be defined by one of the files.
    public init(files: [Google_Protobuf_FileDescriptorProto]) throws(BuildError) {
        self.files = Self.ordered(files)
        do {
            try build()
        } catch {
            release()
            throw error
        }
    }

    deinit { release() }

    private func release() {
        ProtoJSON.forget(messages.values)
        for b in blocks { b.deallocate() }
        blocks = []
    }

    /// The descriptor of a message by full name (`shop.v1.Product`, no leading dot).
    public func message(_ name: String) -> UnsafePointer<ProtobufCMessageDescriptor>? { messages[name] }

    // MARK: building

    /// Dependencies before dependents (stable otherwise), each file once by name.
    static func ordered(_ files: [Google_Protobuf_FileDescriptorProto]) -> [Google_Protobuf_FileDescriptorProto] {
        var byName: [String: Google_Protobuf_FileDescriptorProto] = [:]
        for f in files where byName[f.name ?? ""] == nil { byName[f.name ?? ""] = f }
        var seen: Set<String> = []
        var out: [Google_Protobuf_FileDescriptorProto] = []
        func visit(_ f: Google_Protobuf_FileDescriptorProto) {
            guard seen.insert(f.name ?? "").inserted else { return }
            for d in f.dependency { if let dep = byName[d] { visit(dep) } }
            out.append(f)
        }
        for f in files { visit(f) }
        return out
    }

    private func allocate(_ size: Int, align: Int = 16) -> UnsafeMutableRawPointer {
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(size, 1), alignment: align)
        p.initializeMemory(as: UInt8.self, repeating: 0, count: max(size, 1))
        blocks.append(p)
        return p
    }

    private func cString(_ s: String) -> UnsafePointer<CChar> {
        let bytes = Array(s.utf8)
        let p = allocate(bytes.count + 1, align: 1)
        p.copyMemory(from: bytes, byteCount: bytes.count)
        return UnsafePointer(p.assumingMemoryBound(to: CChar.self))
    }

    private func array<T>(_ values: [T]) -> UnsafePointer<T>? {
        guard !values.isEmpty else { return nil }
        let p = allocate(MemoryLayout<T>.stride * values.count, align: max(MemoryLayout<T>.alignment, 8)).bindMemory(
            to: T.self, capacity: values.count)
        p.initialize(from: values, count: values.count)
        return UnsafePointer(p)
    }

    private struct MessageEntry {
        let proto: Google_Protobuf_DescriptorProto
        let fullName: String
        let package: String
        let proto3: Bool
        let slot: UnsafeMutablePointer<ProtobufCMessageDescriptor>
    }

    private func build() throws(BuildError) {
        var entries: [MessageEntry] = []
        // What protobuf itself guarantees is checked here, not assumed: the schema comes from
        // another process (server reflection) or a file, and a descriptor built on a broken
        // promise would send protobuf-c and the JSON mapping through memory that is not there.
        var duplicate: String?
        var enumEntries:
            [(Google_Protobuf_EnumDescriptorProto, String, String, UnsafeMutablePointer<ProtobufCEnumDescriptor>)] = []
        // First every slot, so fields can point at any type, in any file, in any order.
        for file in files {
            let package = file.package ?? ""
            let proto3 = file.syntax == "proto3"
            func walk(_ m: Google_Protobuf_DescriptorProto, scope: String) {
                let name = scope.isEmpty ? (m.name ?? "") : scope + "." + (m.name ?? "")
                let slot = allocate(MemoryLayout<ProtobufCMessageDescriptor>.stride).bindMemory(
                    to: ProtobufCMessageDescriptor.self, capacity: 1)
                entries.append(MessageEntry(proto: m, fullName: name, package: package, proto3: proto3, slot: slot))
                if messages[name] != nil || enums[name] != nil { duplicate = duplicate ?? name }
                messages[name] = UnsafePointer(slot)
                for e in m.enumType { addEnum(e, scope: name) }
                for n in m.nestedType { walk(n, scope: name) }
            }
            func addEnum(_ e: Google_Protobuf_EnumDescriptorProto, scope: String) {
                let name = scope.isEmpty ? (e.name ?? "") : scope + "." + (e.name ?? "")
                let slot = allocate(MemoryLayout<ProtobufCEnumDescriptor>.stride).bindMemory(
                    to: ProtobufCEnumDescriptor.self, capacity: 1)
                enumEntries.append((e, name, package, slot))
                if messages[name] != nil || enums[name] != nil { duplicate = duplicate ?? name }
                enums[name] = UnsafePointer(slot)
            }
            for e in file.enumType { addEnum(e, scope: package) }
            for m in file.messageType { walk(m, scope: package) }
        }
        if let duplicate { throw BuildError("\(duplicate) is defined twice") }
        for (e, name, package, slot) in enumEntries { try fillEnum(e, name: name, package: package, into: slot) }
        for entry in entries { try fillMessage(entry) }
        try checkWellKnownTypes()
    }

    private func shortName(_ full: String) -> String { String(full.split(separator: ".").last ?? "") }

    private func fillEnum(
        _ e: Google_Protobuf_EnumDescriptorProto, name: String, package: String,
        into slot: UnsafeMutablePointer<ProtobufCEnumDescriptor>
    ) throws(BuildError) {
        guard !e.value.isEmpty else { throw BuildError("enum \(name) has no values") }
        // One entry per number (its first name), every name in the index: as protoc-c does.
        var firstByNumber: [Int32: String] = [:]
        for v in e.value where firstByNumber[v.number ?? 0] == nil { firstByNumber[v.number ?? 0] = v.name ?? "" }
        let numbers = firstByNumber.keys.sorted()
        let cPrefix = name.replacingOccurrences(of: ".", with: "__").uppercased() + "__"
        let values = numbers.map { n in
            ProtobufCEnumValue(name: cString(firstByNumber[n]!), c_name: cString(cPrefix + firstByNumber[n]!), value: n)
        }
        let byName = e.value.sorted {
            Array(($0.name ?? "").utf8).lexicographicallyPrecedes(Array(($1.name ?? "").utf8))
        }
        let index = byName.map { v in
            ProtobufCEnumValueIndex(name: cString(v.name ?? ""), index: UInt32(numbers.firstIndex(of: v.number ?? 0)!))
        }
        let ranges = Self.ranges(numbers.map(Int64.init))
        var cRanges = ranges.map { ProtobufCIntRange(start_value: Int32($0.0), orig_index: UInt32($0.1)) }
        cRanges.append(ProtobufCIntRange(start_value: 0, orig_index: UInt32(numbers.count)))
        slot.pointee = ProtobufCEnumDescriptor(
            magic: UInt32(PROTOBUF_C__ENUM_DESCRIPTOR_MAGIC), name: cString(name), short_name: cString(shortName(name)),
            c_name: cString(name.replacingOccurrences(of: ".", with: "__")), package_name: cString(package),
            n_values: UInt32(values.count), values: array(values), n_value_names: UInt32(index.count),
            values_by_name: array(index),
            n_value_ranges: UInt32(ranges.count), value_ranges: array(cRanges),
            reserved1: nil, reserved2: nil, reserved3: nil, reserved4: nil)
    }

    /// Runs of consecutive numbers: (first number, index of its first element).
    static func ranges(_ sorted: [Int64]) -> [(Int64, Int)] {
        var out: [(Int64, Int)] = []
        for (i, n) in sorted.enumerated() where i == 0 || n != sorted[i - 1] + 1 { out.append((n, i)) }
        return out
    }

    /// protobuf-c's type of a field, and the size and alignment of one value in the C struct.
    private static func storage(_ t: Int32) -> (ProtobufCType, Int)? {
        switch t {
        case 1: (PROTOBUF_C_TYPE_DOUBLE, 8)
        case 2: (PROTOBUF_C_TYPE_FLOAT, 4)
        case 3: (PROTOBUF_C_TYPE_INT64, 8)
        case 4: (PROTOBUF_C_TYPE_UINT64, 8)
        case 5: (PROTOBUF_C_TYPE_INT32, 4)
        case 6: (PROTOBUF_C_TYPE_FIXED64, 8)
        case 7: (PROTOBUF_C_TYPE_FIXED32, 4)
        case 8: (PROTOBUF_C_TYPE_BOOL, 4)
        case 9: (PROTOBUF_C_TYPE_STRING, 8)
        case 11: (PROTOBUF_C_TYPE_MESSAGE, 8)
        case 12: (PROTOBUF_C_TYPE_BYTES, 16)
        case 13: (PROTOBUF_C_TYPE_UINT32, 4)
        case 14: (PROTOBUF_C_TYPE_ENUM, 4)
        case 15: (PROTOBUF_C_TYPE_SFIXED32, 4)
        case 16: (PROTOBUF_C_TYPE_SFIXED64, 8)
        case 17: (PROTOBUF_C_TYPE_SINT32, 4)
        case 18: (PROTOBUF_C_TYPE_SINT64, 8)
        default: nil  // groups (10) and unknown types
        }
    }

    private func fillMessage(_ entry: MessageEntry) throws(BuildError) {
        let m = entry.proto
        let name = entry.fullName
        func align(_ offset: Int, _ a: Int) -> Int { (offset + a - 1) / a * a }
        struct Laid {
            var proto: Google_Protobuf_FieldDescriptorProto
            var field: ProtobufCFieldDescriptor
        }
        var laid: [Laid] = []
        var offset = MemoryLayout<ProtobufCMessage>.size
        var realOneof: [Int32: [Google_Protobuf_FieldDescriptorProto]] = [:]
        var oneofOrder: [Int32] = []

        func describe(_ f: Google_Protobuf_FieldDescriptorProto) throws(BuildError) -> ProtobufCFieldDescriptor {
            guard let fname = f.name, let number = f.number, (1...536_870_911).contains(number) else {
                throw BuildError("\(name) has a field without a name or number")
            }
            guard let (type, _) = Self.storage(f.type?.rawValue ?? 0) else {
                throw BuildError(
                    "\(name).\(fname): field type \(f.type?.rawValue ?? 0) is not supported (groups are not)")
            }
            var d = ProtobufCFieldDescriptor()
            d.name = cString(fname)
            d.id = UInt32(number)
            d.type = type
            let repeated = f.label == .repeated
            if repeated {
                d.label = PROTOBUF_C_LABEL_REPEATED
            } else if f.label == .required {
                d.label = PROTOBUF_C_LABEL_REQUIRED
            } else if entry.proto3 && f.proto3Optional != true {
                d.label = PROTOBUF_C_LABEL_NONE
            } else {
                d.label = PROTOBUF_C_LABEL_OPTIONAL
            }
            if type == PROTOBUF_C_TYPE_MESSAGE || type == PROTOBUF_C_TYPE_ENUM {
                let target =
                    (f.typeName ?? "").hasPrefix(".") ? String((f.typeName ?? "").dropFirst()) : (f.typeName ?? "")
                if type == PROTOBUF_C_TYPE_MESSAGE {
                    guard let t = messages[target] else {
                        throw BuildError("\(name).\(fname): message type \(target) is not in the schema")
                    }
                    d.descriptor = UnsafeRawPointer(t)
                } else {
                    guard let t = enums[target] else {
                        throw BuildError("\(name).\(fname): enum type \(target) is not in the schema")
                    }
                    d.descriptor = UnsafeRawPointer(t)
                }
            }
            var flags: UInt32 = 0
            if repeated && type != PROTOBUF_C_TYPE_STRING && type != PROTOBUF_C_TYPE_BYTES
                && type != PROTOBUF_C_TYPE_MESSAGE
            {
                if f.options?.packed ?? entry.proto3 { flags |= UInt32(PROTOBUF_C_FIELD_FLAG_PACKED.rawValue) }
            }
            if f.options?.deprecated == true { flags |= UInt32(PROTOBUF_C_FIELD_FLAG_DEPRECATED.rawValue) }
            d.flags = flags
            // No defaults for oneof members: without an init function protobuf-c initialises a
            // message from the defaults (`message_init_generic`), which would put a default into
            // the oneof's union, and a later member of that oneof would then be freed as if set.
            let inOneof = f.oneofIndex != nil && f.proto3Optional != true
            if inOneof {
                // (left nil)
            } else if let text = f.defaultValue, !repeated {
                d.default_value = try defaultValue(
                    text, type: type, enumDescriptor: d.descriptor, field: "\(name).\(fname)")
            } else if type == PROTOBUF_C_TYPE_STRING && entry.proto3 && f.proto3Optional != true {
                // protoc-c gives every proto3 string field (repeated ones too) the empty default.
                d.default_value = UnsafeRawPointer(bazaar_pbc_empty_string())
            }
            return d
        }

        for f in m.field {
            var d = try describe(f)
            if let index = f.oneofIndex {
                guard index >= 0, Int(index) < m.oneofDecl.count else {
                    throw BuildError("\(name).\(f.name ?? ""): oneof index \(index) names no oneof")
                }
                guard f.label != .repeated else {
                    throw BuildError("\(name).\(f.name ?? ""): a repeated field cannot be in a oneof")
                }
            }
            if let index = f.oneofIndex, f.proto3Optional != true {
                if realOneof[index] == nil { oneofOrder.append(index) }
                realOneof[index, default: []].append(f)
                continue
            }
            let size = Self.storage(f.type?.rawValue ?? 0)!.1
            if d.label == PROTOBUF_C_LABEL_REPEATED {
                offset = align(offset, 8)
                d.quantifier_offset = UInt32(offset)
                d.offset = UInt32(offset + 8)
                offset += 16
            } else {
                let hasFlag =
                    d.label == PROTOBUF_C_LABEL_OPTIONAL && d.type != PROTOBUF_C_TYPE_MESSAGE
                    && d.type != PROTOBUF_C_TYPE_STRING
                if hasFlag {
                    offset = align(offset, 4)
                    d.quantifier_offset = UInt32(offset)
                    offset += 4
                }
                offset = align(offset, min(size, 8))
                d.offset = UInt32(offset)
                offset += size
            }
            laid.append(Laid(proto: f, field: d))
        }
        for index in oneofOrder {
            let members = realOneof[index]!
            offset = align(offset, 4)
            let caseOffset = offset
            offset += 4
            let size = members.map { Self.storage($0.type?.rawValue ?? 0)!.1 }.max()!
            offset = align(offset, min(size, 8))
            for f in members {
                var d = try describe(f)
                d.quantifier_offset = UInt32(caseOffset)
                d.offset = UInt32(offset)
                d.flags |= UInt32(PROTOBUF_C_FIELD_FLAG_ONEOF.rawValue)
                laid.append(Laid(proto: f, field: d))
            }
            offset += size
        }
        let sizeofMessage = align(offset, 8)
        laid.sort { $0.field.id < $1.field.id }
        for i in laid.indices.dropFirst() where laid[i].field.id == laid[i - 1].field.id {
            throw BuildError("\(name): two fields have number \(laid[i].field.id)")
        }
        let fields = laid.map(\.field)
        let byName = laid.indices.sorted {
            Array((laid[$0].proto.name ?? "").utf8).lexicographicallyPrecedes(Array((laid[$1].proto.name ?? "").utf8))
        }
        let ranges = Self.ranges(fields.map { Int64($0.id) })
        var cRanges = ranges.map { ProtobufCIntRange(start_value: Int32($0.0), orig_index: UInt32($0.1)) }
        if !fields.isEmpty { cRanges.append(ProtobufCIntRange(start_value: 0, orig_index: UInt32(fields.count))) }
        entry.slot.pointee = ProtobufCMessageDescriptor(
            magic: UInt32(PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC), name: cString(name),
            short_name: cString(shortName(name)),
            c_name: cString(name.replacingOccurrences(of: ".", with: "__")), package_name: cString(entry.package),
            sizeof_message: sizeofMessage, n_fields: UInt32(fields.count), fields: array(fields),
            fields_sorted_by_name: array(byName.map(UInt32.init)), n_field_ranges: UInt32(ranges.count),
            field_ranges: fields.isEmpty ? nil : array(cRanges),
            // No init function: `WireArena.newMessage` initialises such messages from the
            // descriptor, as protobuf-c's unpack does.
            message_init: nil, reserved1: nil, reserved2: nil, reserved3: nil)
    }

    /// Storage for a proto2 default (`default_value` is text, as protoc writes it).
    private func defaultValue(_ text: String, type: ProtobufCType, enumDescriptor: UnsafeRawPointer?, field: String)
        throws(BuildError) -> UnsafeRawPointer
    {
        func store<T>(_ v: T) -> UnsafeRawPointer {
            let p = allocate(MemoryLayout<T>.size, align: 8)
            p.storeBytes(of: v, as: T.self)
            return UnsafeRawPointer(p)
        }
        func bad() -> BuildError { BuildError("\(field): default value '\(text)' does not fit its type") }
        func double() -> Double? {
            switch text {
            case "inf": .infinity
            case "-inf": -.infinity
            case "nan": .nan
            default: Double(text)
            }
        }
        switch type {
        case PROTOBUF_C_TYPE_INT32, PROTOBUF_C_TYPE_SINT32, PROTOBUF_C_TYPE_SFIXED32:
            guard let v = Int32(text) else { throw bad() }
            return store(v)
        case PROTOBUF_C_TYPE_UINT32, PROTOBUF_C_TYPE_FIXED32:
            guard let v = UInt32(text) else { throw bad() }
            return store(v)
        case PROTOBUF_C_TYPE_INT64, PROTOBUF_C_TYPE_SINT64, PROTOBUF_C_TYPE_SFIXED64:
            guard let v = Int64(text) else { throw bad() }
            return store(v)
        case PROTOBUF_C_TYPE_UINT64, PROTOBUF_C_TYPE_FIXED64:
            guard let v = UInt64(text) else { throw bad() }
            return store(v)
        case PROTOBUF_C_TYPE_FLOAT:
            guard let v = double() else { throw bad() }
            return store(Float(v))
        case PROTOBUF_C_TYPE_DOUBLE:
            guard let v = double() else { throw bad() }
            return store(v)
        case PROTOBUF_C_TYPE_BOOL:
            guard text == "true" || text == "false" else { throw bad() }
            return store(Int32(text == "true" ? 1 : 0))
        case PROTOBUF_C_TYPE_ENUM:
            let e = enumDescriptor!.assumingMemoryBound(to: ProtobufCEnumDescriptor.self)
            for i in 0..<Int(e.pointee.n_value_names) where String(cString: e.pointee.values_by_name[i].name) == text {
                return store(e.pointee.values[Int(e.pointee.values_by_name[i].index)].value)
            }
            throw bad()
        case PROTOBUF_C_TYPE_STRING:
            return UnsafeRawPointer(cString(text))
        case PROTOBUF_C_TYPE_BYTES:
            guard let bytes = Self.unescape(text) else { throw bad() }
            let data = allocate(bytes.count, align: 1)
            data.copyMemory(from: bytes, byteCount: bytes.count)
            return store(
                ProtobufCBinaryData(
                    len: bytes.count, data: bytes.isEmpty ? nil : data.assumingMemoryBound(to: UInt8.self)))
        default:
            throw bad()
        }
    }

    /// The well-known types the JSON mapping writes in their special forms (Timestamp as text, a
    /// FieldMask as paths, ...) are recognised by name, and read by the layout of the real ones: a
    /// schema that defines `google.protobuf.Timestamp` (or another of them) differently is refused.
    private func checkWellKnownTypes() throws(BuildError) {
        for (name, runtime) in messages where name.hasPrefix("google.protobuf.") {
            guard let compiled = Self.wellKnown[name]?.descriptor else { continue }
            let a = UnsafeBufferPointer(start: runtime.pointee.fields, count: Int(runtime.pointee.n_fields))
            let b = UnsafeBufferPointer(start: compiled.pointee.fields, count: Int(compiled.pointee.n_fields))
            func typeName(_ f: ProtobufCFieldDescriptor) -> String? {
                switch f.type {
                case PROTOBUF_C_TYPE_MESSAGE:
                    String(cString: f.descriptor.assumingMemoryBound(to: ProtobufCMessageDescriptor.self).pointee.name)
                case PROTOBUF_C_TYPE_ENUM:
                    String(cString: f.descriptor.assumingMemoryBound(to: ProtobufCEnumDescriptor.self).pointee.name)
                default: nil
                }
            }
            let same =
                a.count == b.count
                && zip(a, b).allSatisfy { x, y in
                    x.id == y.id && x.type == y.type && x.label == y.label
                        && String(cString: x.name) == String(cString: y.name)
                        && typeName(x) == typeName(y)
                }
            guard same else { throw BuildError("\(name) is not the well-known type of that name") }
        }
    }

    /// The compiled well-known types, by name.
    static let wellKnown: [String: MessageSchema] = {
        var out: [String: MessageSchema] = [:]
        for file in [
            ProtoFile.google_protobuf_timestamp, ProtoFile.google_protobuf_duration,
            ProtoFile.google_protobuf_field_mask,
            ProtoFile.google_protobuf_struct, ProtoFile.google_protobuf_wrappers, ProtoFile.google_protobuf_any,
            ProtoFile.google_protobuf_empty,
        ] {
            for t in file.messageTypes { out[t.protoMessageName] = MessageSchema(t.protobufCDescriptor) }
        }
        return out
    }()

    /// The C escapes protoc uses for a bytes default (`\n`, `\\`, `\"`, `\'`, octal `\NNN`, hex `\xHH`).
    static func unescape(_ text: String) -> [UInt8]? {
        var out: [UInt8] = []
        var i = Array(text.utf8)[...]
        while let c = i.popFirst() {
            guard c == UInt8(ascii: "\\") else {
                out.append(c)
                continue
            }
            guard let e = i.popFirst() else { return nil }
            switch e {
            case UInt8(ascii: "n"): out.append(10)
            case UInt8(ascii: "r"): out.append(13)
            case UInt8(ascii: "t"): out.append(9)
            case UInt8(ascii: "\\"), UInt8(ascii: "\""), UInt8(ascii: "'"), UInt8(ascii: "?"): out.append(e)
            case UInt8(ascii: "x"):
                var v = 0
                var n = 0
                while n < 2, let h = i.first, let d = Int(String(UnicodeScalar(h)), radix: 16) {
                    v = v * 16 + d
                    n += 1
                    i.removeFirst()
                }
                guard n > 0 else { return nil }
                out.append(UInt8(v))
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                var v = Int(e - 48)
                var n = 1
                while n < 3, let o = i.first, (48...55).contains(o) {
                    v = v * 8 + Int(o - 48)
                    n += 1
                    i.removeFirst()
                }
                guard v < 256 else { return nil }
                out.append(UInt8(v))
            default: return nil
            }
        }
        return out
    }
}
