import BazaarWire
import ConformanceProtos
import ShopAPI
import Testing
import WellKnownTypes

@Suite("Generated messages")
struct MessageTests {
    @Test("known encoding of a small message")
    func knownBytes() throws {
        let money = Shop_V1_Money(currencyCode: "EUR", amountMinor: 1999)
        #expect(try money.serializedBytes() == [0x0A, 0x03, 0x45, 0x55, 0x52, 0x10, 0xCF, 0x0F])
        #expect(try Shop_V1_Money(serializedBytes: [0x0A, 0x03, 0x45, 0x55, 0x52, 0x10, 0xCF, 0x0F]) == money)
        #expect(try Shop_V1_Money().serializedBytes() == [])
        // int32 -1 is a 10-byte varint.
        #expect(
            try Conformance_V1_AllTypes(fInt32: -1).serializedBytes() == [0x08] + Array(repeating: 0xFF, count: 9) + [
                0x01
            ])
    }

    @Test("a rich order round-trips")
    func order() throws {
        var order = Shop_V1_Order(id: "o-1", userID: "u-1", status: .paid)
        order.total = Shop_V1_Money(currencyCode: "EUR", amountMinor: 5998)
        order.items = (0..<10).map {
            Shop_V1_OrderItem(
                productID: "p-\($0)", productName: "Mug №\($0) ☕", quantity: Int64($0 + 1),
                unitPrice: Shop_V1_Money(currencyCode: "EUR", amountMinor: 2999))
        }
        order.createTime = Google_Protobuf_Timestamp(seconds: 1_700_000_000, nanos: 5)
        order.shippingAddress = Shop_V1_Address(recipient: "Ada", lines: ["1 Loop Rd", "Flat 2"], countryCode: "GB")
        let bytes = try order.serializedBytes()
        #expect(try Shop_V1_Order(serializedBytes: bytes) == order)
    }

    @Test("presence: proto3 optional and oneofs keep zero values; implicit fields do not")
    func presence() throws {
        var m = Conformance_V1_AllTypes()
        m.pInt32 = 0
        m.pString = ""
        m.choice = .oInt64(0)
        let back = try Conformance_V1_AllTypes(serializedBytes: try m.serializedBytes())
        #expect(back.pInt32 == 0 && back.pString == "" && back.choice == .oInt64(0))
        #expect(back.pBool == nil && back.fNested == nil)
        #expect(try Conformance_V1_AllTypes(fInt32: 0, fString: "").serializedBytes() == [])
    }

    @Test("open enums keep unknown values")
    func openEnum() throws {
        let m = try Conformance_V1_AllTypes(serializedBytes: [0x80, 0x01, 0xB9, 0x60])  // f_enum = 12345
        #expect(m.fEnum == .unrecognized(12345))
        #expect(try m.serializedBytes() == [0x80, 0x01, 0xB9, 0x60])
        #expect(Conformance_V1_Color(rawValue: -7) == .negative)
    }

    @Test("fields from a newer schema survive an older one")
    func unknownFields() throws {
        let new = Conformance_V1_ItemV2(
            id: "a", price: 5, description_p: "d", tags: ["x", "y"],
            related: Conformance_V1_ItemV2(id: "r"), checksum: 7, weight: 1.5,
            stock: ["s": 3])
        let old = try Conformance_V1_ItemV1(serializedBytes: try new.serializedBytes())
        #expect(old.id == "a" && old.price == 5)
        #expect(old.unknownFields.fields.map(\.number) == [3, 4, 4, 5, 6, 7, 8])
        #expect(try Conformance_V1_ItemV2(serializedBytes: try old.serializedBytes()) == new)
    }

    @Test("maps encode deterministically")
    func mapOrder() throws {
        var a = Shop_V1_Product()
        var b = Shop_V1_Product()
        for i in 0..<50 { a.attributes["k\(i)"] = "v\(i)" }
        for i in (0..<50).reversed() { b.attributes["k\(i)"] = "v\(i)" }
        #expect(try a.serializedBytes() == b.serializedBytes())
    }

    @Test("proto2: defaults, required and absent optionals")
    func proto2() throws {
        let m = try Conformance_V1_Proto2Types(serializedBytes: [0x40, 0x07])  // r_int64 = 7
        #expect(m.rInt64 == 7 && m.oString == nil && m.oInt32 == nil && m.oSize == nil)
        var set = m
        set.oString = "hello\n"  // equal to the default, but present
        #expect(try Conformance_V1_Proto2Types(serializedBytes: try set.serializedBytes()).oString == "hello\n")
        // A required field missing:
        #expect(throws: WireDecodingError.self) { try Conformance_V1_Proto2Types(serializedBytes: []) }
    }

    @Test("strings with U+0000 cannot go through protobuf-c and say so")
    func nulInString() {
        #expect(throws: WireEncodingError.stringContainsNUL) {
            try Shop_V1_Money(currencyCode: "E\u{0}R").serializedBytes()
        }
    }

    @Test("recursive messages")
    func recursion() throws {
        var root = Conformance_V1_AllTypes()
        var node = Conformance_V1_AllTypes(fInt32: 99)
        for i in 0..<20 { node = Conformance_V1_AllTypes(fInt32: Int32(i), child: node) }
        root.child = node
        root.mRecursive = ["x": Conformance_V1_AllTypes(fString: "in map")]
        #expect(try Conformance_V1_AllTypes(serializedBytes: try root.serializedBytes()) == root)
    }

    @Test("embedded file descriptors decode as google.protobuf.FileDescriptorProto")
    func fileDescriptors() throws {
        let fd = try Google_Protobuf_FileDescriptorProto(
            serializedBytes: ProtoFile.shop_v1_catalog.serializedDescriptor)
        #expect(fd.name == "shop/v1/catalog.proto" && fd.package == "shop.v1")
        #expect(fd.messageType.map(\.name).contains("Product"))
        #expect(fd.service.first?.method.map(\.name).contains("GetProduct") == true)
        #expect(ProtoFile.shop_v1_catalog.withDependencies.map(\.path).contains("google/protobuf/descriptor.proto"))
        #expect(ProtoFile.shop_v1_catalog.messageTypesByName["shop.v1.Product"] == Shop_V1_Product.self)
    }
}
