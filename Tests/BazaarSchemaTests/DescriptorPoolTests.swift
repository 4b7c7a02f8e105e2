import BazaarCore
import BazaarWire
import CBazaarProtobufC
import ConformanceProtos
import GRPCProtos
import ShopAPI
import Testing
import WellKnownTypes

@testable import BazaarSchema

/// Random C messages of any descriptor, filled through protobuf-c's layout (the descriptor's
/// offsets), so the same filler drives generated and run-time descriptors.
struct RandomMessages {
    var rng: SystemRandomNumberGenerator = SystemRandomNumberGenerator()
    let arena = WireArena()

    mutating func make(_ d: UnsafePointer<ProtobufCMessageDescriptor>, depth: Int = 0) -> UnsafeMutableRawPointer {
        let m = arena.newMessage(d)
        let fields = UnsafeBufferPointer(start: d.pointee.fields, count: Int(d.pointee.n_fields))
        var chosenOneof: [UInt32: UInt32] = [:]  // case offset -> chosen field id
        for f in fields {
            if f.flags & UInt32(PROTOBUF_C_FIELD_FLAG_ONEOF.rawValue) != 0 {
                if chosenOneof[f.quantifier_offset] == nil {
                    let members = fields.filter {
                        $0.quantifier_offset == f.quantifier_offset
                            && $0.flags & UInt32(PROTOBUF_C_FIELD_FLAG_ONEOF.rawValue) != 0
                    }
                    chosenOneof[f.quantifier_offset] =
                        Bool.random(using: &rng) ? members.randomElement(using: &rng)!.id : 0
                }
                guard chosenOneof[f.quantifier_offset] == f.id, f.type != PROTOBUF_C_TYPE_MESSAGE || depth < 3 else {
                    continue
                }
                (m + Int(f.quantifier_offset)).storeBytes(of: f.id, as: UInt32.self)
                store(f, at: m + Int(f.offset), depth: depth)
                continue
            }
            if f.label == PROTOBUF_C_LABEL_REPEATED {
                let n = f.type == PROTOBUF_C_TYPE_MESSAGE && depth >= 2 ? 0 : Int.random(in: 0...3, using: &rng)
                guard n > 0 else { continue }
                let size = Self.size(f.type)
                let items = arena.allocate(size * n)
                for i in 0..<n { store(f, at: items + i * size, depth: depth) }
                (m + Int(f.quantifier_offset)).storeBytes(of: n, as: Int.self)
                (m + Int(f.offset)).storeBytes(of: items, as: UnsafeMutableRawPointer.self)
                continue
            }
            if f.type == PROTOBUF_C_TYPE_MESSAGE && (depth >= 3 || Bool.random(using: &rng)) { continue }
            if Int.random(in: 0..<4, using: &rng) == 0 { continue }  // leave some at their defaults
            if f.label == PROTOBUF_C_LABEL_OPTIONAL && f.type != PROTOBUF_C_TYPE_MESSAGE
                && f.type != PROTOBUF_C_TYPE_STRING
            {
                (m + Int(f.quantifier_offset)).storeBytes(of: Int32(1), as: Int32.self)
            }
            store(f, at: m + Int(f.offset), depth: depth)
        }
        return m
    }

    static func size(_ t: ProtobufCType) -> Int {
        switch t {
        case PROTOBUF_C_TYPE_INT64, PROTOBUF_C_TYPE_UINT64, PROTOBUF_C_TYPE_SINT64, PROTOBUF_C_TYPE_SFIXED64,
            PROTOBUF_C_TYPE_FIXED64,
            PROTOBUF_C_TYPE_DOUBLE, PROTOBUF_C_TYPE_STRING, PROTOBUF_C_TYPE_MESSAGE:
            8
        case PROTOBUF_C_TYPE_BYTES: 16
        default: 4
        }
    }

    mutating func store(_ f: ProtobufCFieldDescriptor, at p: UnsafeMutableRawPointer, depth: Int) {
        switch f.type {
        case PROTOBUF_C_TYPE_INT32, PROTOBUF_C_TYPE_SINT32, PROTOBUF_C_TYPE_SFIXED32:
            p.storeBytes(of: Int32.random(in: .min ... .max, using: &rng), as: Int32.self)
        case PROTOBUF_C_TYPE_UINT32, PROTOBUF_C_TYPE_FIXED32:
            p.storeBytes(of: UInt32.random(in: .min ... .max, using: &rng), as: UInt32.self)
        case PROTOBUF_C_TYPE_INT64, PROTOBUF_C_TYPE_SINT64, PROTOBUF_C_TYPE_SFIXED64:
            p.storeBytes(of: Int64.random(in: .min ... .max, using: &rng), as: Int64.self)
        case PROTOBUF_C_TYPE_UINT64, PROTOBUF_C_TYPE_FIXED64:
            p.storeBytes(of: UInt64.random(in: .min ... .max, using: &rng), as: UInt64.self)
        case PROTOBUF_C_TYPE_FLOAT: p.storeBytes(of: Float.random(in: -1e6...1e6, using: &rng), as: Float.self)
        case PROTOBUF_C_TYPE_DOUBLE: p.storeBytes(of: Double.random(in: -1e12...1e12, using: &rng), as: Double.self)
        case PROTOBUF_C_TYPE_BOOL: p.storeBytes(of: Int32(Bool.random(using: &rng) ? 1 : 0), as: Int32.self)
        case PROTOBUF_C_TYPE_ENUM:
            let e = f.descriptor!.assumingMemoryBound(to: ProtobufCEnumDescriptor.self)
            let v = e.pointee.values[Int.random(in: 0..<Int(e.pointee.n_values), using: &rng)].value
            p.storeBytes(of: v, as: Int32.self)
        case PROTOBUF_C_TYPE_STRING:
            let s = String(
                (0..<Int.random(in: 0...12, using: &rng)).map { _ in "abcé€𝄞 xyz".randomElement(using: &rng)! })
            p.storeBytes(of: try! arena.cString(s), as: UnsafeMutablePointer<CChar>.self)
        case PROTOBUF_C_TYPE_BYTES:
            p.storeBytes(
                of: arena.binary(
                    (0..<Int.random(in: 0...9, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }),
                as: ProtobufCBinaryData.self)
        case PROTOBUF_C_TYPE_MESSAGE:
            let sub = make(f.descriptor!.assumingMemoryBound(to: ProtobufCMessageDescriptor.self), depth: depth + 1)
            p.storeBytes(of: sub, as: UnsafeMutableRawPointer.self)
        default: break
        }
    }
}

func pack(_ m: UnsafeRawPointer) -> [UInt8] {
    let msg = m.assumingMemoryBound(to: ProtobufCMessage.self)
    let n = protobuf_c_message_get_packed_size(msg)
    var out = [UInt8](repeating: 0, count: n)
    _ = out.withUnsafeMutableBufferPointer { protobuf_c_message_pack(msg, $0.baseAddress) }
    return out
}

/// Unpacks with `d` and packs again: the bytes another peer would see.
func repack(_ bytes: [UInt8], _ d: UnsafePointer<ProtobufCMessageDescriptor>) -> [UInt8]? {
    guard let m = bytes.withUnsafeBufferPointer({ protobuf_c_message_unpack(d, nil, $0.count, $0.baseAddress) }) else {
        return nil
    }
    defer { protobuf_c_message_free_unpacked(m, nil) }
    return pack(m)
}

@Suite struct DescriptorPoolTests {
    static let files: [ProtoFile] = [
        ProtoFile.shop_v1_catalog, ProtoFile.shop_v1_accounts, ProtoFile.shop_v1_cart, ProtoFile.shop_v1_orders,
        ProtoFile.shop_v1_notifications, ProtoFile.conformance_v1_all_types, ProtoFile.conformance_v1_evolution,
        ProtoFile.grpc_testing_test, ProtoFile.grpc_reflection_v1_reflection,
    ]

    static func schema() throws -> Schema {
        var all: [ProtoFile] = []
        for f in files { all += f.withDependencies }
        return try Schema(serializedFiles: all.map(\.serializedDescriptor))
    }

    static var types: [any WireMessage.Type] {
        var seen: Set<String> = []
        return files.flatMap(\.withDependencies).flatMap(\.messageTypes).filter {
            seen.insert($0.protoMessageName).inserted
        }
    }

    @Test func everyMessageHasTheGeneratedLayout() throws {
        let schema = try Self.schema()
        for type in Self.types {
            let compiled = type.protobufCDescriptor
            let runtime = try #require(schema.message(type.protoMessageName), "\(type.protoMessageName) missing")
            #expect(runtime.pointee.sizeof_message == compiled.pointee.sizeof_message, "\(type.protoMessageName): size")
            try #require(runtime.pointee.n_fields == compiled.pointee.n_fields, "\(type.protoMessageName): fields")
            // Offsets, labels, flags and the kind of default, field by field.
            for i in 0..<Int(compiled.pointee.n_fields) {
                let c = compiled.pointee.fields[i]
                let r = runtime.pointee.fields[i]
                #expect(
                    c.id == r.id && c.offset == r.offset && c.quantifier_offset == r.quantifier_offset
                        && c.label == r.label && c.type == r.type && c.flags == r.flags
                        && ((c.default_value == nil) == (r.default_value == nil)
                            || c.flags & UInt32(PROTOBUF_C_FIELD_FLAG_ONEOF.rawValue) != 0)
                        && String(cString: c.name) == String(cString: r.name),
                    "\(type.protoMessageName).\(String(cString: c.name))")
                #expect(
                    c.descriptor.map {
                        String(cString: $0.assumingMemoryBound(to: ProtobufCMessageDescriptor.self).pointee.name)
                    }
                        == r.descriptor.map {
                            String(cString: $0.assumingMemoryBound(to: ProtobufCMessageDescriptor.self).pointee.name)
                        })
                #expect(compiled.pointee.fields_sorted_by_name[i] == runtime.pointee.fields_sorted_by_name[i])
            }
            for i in 0..<(compiled.pointee.n_fields == 0 ? 0 : Int(compiled.pointee.n_field_ranges) + 1) {
                #expect(
                    compiled.pointee.field_ranges[i].start_value == runtime.pointee.field_ranges[i].start_value
                        && compiled.pointee.field_ranges[i].orig_index == runtime.pointee.field_ranges[i].orig_index)
            }
        }
        #expect(Self.types.count > 100)
    }

    @Test func everyMessagePacksTheSameBytesBothWays() throws {
        let schema = try Self.schema()
        var random = RandomMessages()
        for type in Self.types {
            let compiled = type.protobufCDescriptor
            let runtime = try #require(schema.message(type.protoMessageName))
            try #require(runtime.pointee.sizeof_message == compiled.pointee.sizeof_message)
            for _ in 0..<20 {
                let a = pack(random.make(compiled))
                #expect(repack(a, runtime) == a, "\(type.protoMessageName): generated -> run-time")
                let b = pack(random.make(runtime))
                #expect(repack(b, compiled) == b, "\(type.protoMessageName): run-time -> generated")
            }
        }
    }

    @Test func jsonMappingAgreesWithTheGeneratedDescriptors() throws {
        let schema = try Self.schema()
        var random = RandomMessages()
        for type in ProtoFile.shop_v1_orders.withDependencies.flatMap(\.messageTypes) {
            let compiled = type.protobufCDescriptor
            let runtime = try #require(schema.message(type.protoMessageName))
            for _ in 0..<10 {
                let bytes = pack(random.make(compiled))
                // (Random values can be unmappable, e.g. an out-of-range Timestamp.)
                guard let a = try? ProtoJSON.encode(bytes, as: compiled) else { continue }
                let b = try ProtoJSON.encode(bytes, as: runtime)
                #expect(a.serialized() == b.serialized(), "\(type.protoMessageName)")
                #expect(
                    try ProtoJSON.decode(b, as: runtime) == ProtoJSON.decode(a, as: compiled),
                    "\(type.protoMessageName)")
            }
        }
    }

    @Test func methodsAndOptionsMatchTheCompiledOnes() throws {
        let schema = try Self.schema()
        for compiled in [
            Shop_V1_CatalogService.descriptor, Shop_V1_AccountsService.descriptor, Shop_V1_CartService.descriptor,
            Shop_V1_OrdersService.descriptor, Shop_V1_NotificationsService.descriptor,
            Grpc_Testing_TestService.descriptor,
        ] {
            let runtime = try #require(schema.service(compiled.name))
            #expect(runtime.methods.map(\.path) == compiled.methods.map(\.path))
            for (r, c) in zip(runtime.methods, compiled.methods) {
                #expect(r == c, "\(c.path): \(r.options) vs \(c.options)")
            }
        }
    }

    @Test func missingTypesAreRefusedByName() throws {
        var file = try Google_Protobuf_FileDescriptorProto(serializedBytes: ProtoFile.shop_v1_cart.serializedDescriptor)
        file.dependency = []
        #expect(throws: DescriptorPool.BuildError.self) { try Schema(files: [file]) }
        do {
            _ = try Schema(files: [file])
        } catch {
            #expect(error.description.contains("is not in the schema"))
        }
    }

    @Test func descriptorSetsLoad() throws {
        var set = Google_Protobuf_FileDescriptorSet()
        set.file = try ProtoFile.shop_v1_cart.withDependencies.map {
            try Google_Protobuf_FileDescriptorProto(serializedBytes: $0.serializedDescriptor)
        }
        let schema = try Schema(descriptorSet: try set.serializedBytes())
        #expect(schema.service("shop.v1.CartService")?.methods.count == Shop_V1_CartService.descriptor.methods.count)
        #expect(throws: DescriptorPool.BuildError.self) { try Schema(descriptorSet: [0xFF, 0xFF]) }
    }

    /// The JSON mapping caches field names by descriptor address. A pool that went away used to
    /// leave its entries behind, and the next pool's descriptors, often at the same addresses,
    /// got the old names: wrong JSON, or an index out of range (found by the `schema` fuzz
    /// target). Pools now make the cache forget their descriptors.
    @Test func namesOfAFreedSchemaNeverServeTheNextOne() throws {
        var random = RandomMessages()
        for _ in 0..<20 {
            // A schema with many fields, mapped (its names cached), then dropped ...
            do {
                let big = try Schema(
                    serializedFiles: ProtoFile.conformance_v1_all_types.withDependencies.map(\.serializedDescriptor))
                for (_, d) in big.pool.messages { _ = try? ProtoJSON.encode([], as: d) }
            }
            // ... and a smaller one made right after maps exactly as the generated code does.
            let small = try Schema(serializedFiles: ProtoFile.shop_v1_cart.withDependencies.map(\.serializedDescriptor))
            for type in ProtoFile.shop_v1_cart.messageTypes {
                let runtime = try #require(small.message(type.protoMessageName))
                let bytes = pack(random.make(type.protobufCDescriptor))
                guard let expected = try? ProtoJSON.encode(bytes, as: type.protobufCDescriptor) else { continue }
                #expect(try ProtoJSON.encode(bytes, as: runtime) == expected, "\(type.protoMessageName)")
            }
        }
    }

    /// Schemas that protobuf itself would never produce are refused with a message, not built
    /// into descriptors that send protobuf-c or the JSON mapping through memory that is not there
    /// (the `schema` fuzz target found the first: a repeated field inside a oneof).
    @Test func schemasProtobufForbidsAreRefused() throws {
        func field(
            _ name: String, _ number: Int32, _ type: Google_Protobuf_FieldDescriptorProto.Type_,
            label: Google_Protobuf_FieldDescriptorProto.Label = .optional, oneof: Int32? = nil
        ) -> Google_Protobuf_FieldDescriptorProto {
            var f = Google_Protobuf_FieldDescriptorProto()
            f.name = name
            f.number = number
            f.type = type
            f.label = label
            f.oneofIndex = oneof
            return f
        }
        func file(_ package: String, _ messages: [(String, [Google_Protobuf_FieldDescriptorProto], oneofs: Int)])
            -> Google_Protobuf_FileDescriptorProto
        {
            var f = Google_Protobuf_FileDescriptorProto()
            f.name = package + ".proto"
            f.package = package
            f.syntax = "proto3"
            f.messageType = messages.map { name, fields, oneofs in
                var m = Google_Protobuf_DescriptorProto()
                m.name = name
                m.field = fields
                m.oneofDecl = (0..<oneofs).map { _ in
                    var o = Google_Protobuf_OneofDescriptorProto()
                    o.name = "choice"
                    return o
                }
                return m
            }
            return f
        }
        let cases: [(String, [Google_Protobuf_FileDescriptorProto], String)] = [
            (
                "a repeated field in a oneof",
                [file("x", [("M", [field("a", 1, .string, label: .repeated, oneof: 0)], oneofs: 1)])],
                "cannot be in a oneof"
            ),
            (
                "a oneof index with no oneof", [file("x", [("M", [field("a", 1, .string, oneof: 3)], oneofs: 1)])],
                "names no oneof"
            ),
            (
                "a field number past 2^29-1", [file("x", [("M", [field("a", 600_000_000, .string)], oneofs: 0)])],
                "without a name or number"
            ),
            (
                "a type defined twice",
                [
                    file("x", [("M", [], oneofs: 0)]),
                    {
                        var f = file("x", [("M", [], oneofs: 0)])
                        f.name = "other.proto"
                        return f
                    }(),
                ], "defined twice"
            ),
            (
                "a Timestamp that is not one",
                [file("google.protobuf", [("Timestamp", [field("seconds", 1, .string)], oneofs: 0)])],
                "is not the well-known type"
            ),
        ]
        for (what, files, message) in cases {
            do {
                _ = try Schema(files: files)
                Issue.record("\(what) was accepted")
            } catch {
                #expect(error.description.contains(message), "\(what): \(error.description)")
            }
        }
        // The real well-known types still build.
        _ = try Schema(serializedFiles: ProtoFile.google_protobuf_struct.withDependencies.map(\.serializedDescriptor))
    }

    @Test func bytesDefaultsUnescape() {
        #expect(DescriptorPool.unescape("a\\n\\001\\x41\\\\") == [97, 10, 1, 65, 92])
        #expect(DescriptorPool.unescape("\\") == nil)
    }
}
