// A line-oriented driver for the Python conformance tests (Tests/Interop/test_wire_conformance.py).
//
// Each request line is `OP TYPE HEX`, each answer one line:
//   roundtrip TYPE HEX  -> `ok UNKNOWN_COUNT HEX`: decode as TYPE, encode again
//   decode TYPE HEX     -> `ok UNKNOWN_COUNT`: decode only
//   tojson TYPE HEX     -> `ok JSON_HEX`: the proto3 JSON mapping of the message (ProtoJSON)
//   fromjson TYPE HEX   -> `ok HEX`: the message a JSON text (hex) describes
// Errors answer `err MESSAGE`. The process must survive any input: that is part of the test.
import BazaarWire
import ConformanceProtos
import GRPCProtos
import ShopAPI
import WellKnownTypes

#if canImport(Glibc)
    import Glibc
#endif

var registry: [String: any WireMessage.Type] = [:]
for file in [
    ProtoFile.conformance_v1_all_types, .conformance_v1_proto2_types, .conformance_v1_evolution,
    .shop_v1_catalog, .shop_v1_accounts, .shop_v1_cart, .shop_v1_orders, .shop_v1_notifications,
    .grpc_testing_test, .grpc_health_v1_health, .grpc_reflection_v1_reflection,
    .google_protobuf_descriptor, .google_protobuf_struct, .google_protobuf_any,
    .google_protobuf_wrappers, .google_protobuf_type, .google_protobuf_api, .google_protobuf_timestamp,
    .google_protobuf_duration, .google_protobuf_field_mask, .google_protobuf_empty,
    .bazaar_options_v1_options, .google_api_annotations,
] {
    registry.merge(file.messageTypesByName) { a, _ in a }
}

func hex(_ b: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(b.count * 2)
    for x in b {
        out.append(digits[Int(x >> 4)])
        out.append(digits[Int(x & 15)])
    }
    return String(decoding: out, as: UTF8.self)
}

func unhex(_ s: Substring) -> [UInt8]? {
    let u = Array(s.utf8)
    guard u.count % 2 == 0 else { return nil }
    var out = [UInt8]()
    out.reserveCapacity(u.count / 2)
    var i = 0
    while i < u.count {
        guard let hi = u[i].hexNibble, let lo = u[i + 1].hexNibble else { return nil }
        out.append(hi << 4 | lo)
        i += 2
    }
    return out
}

extension UInt8 {
    var hexNibble: UInt8? {
        switch self {
        case 0x30...0x39: self - 0x30
        case 0x61...0x66: self - 0x61 + 10
        case 0x41...0x46: self - 0x41 + 10
        default: nil
        }
    }
}

func handle<M: WireMessage>(_ type: M.Type, _ op: Substring, _ bytes: [UInt8]) -> String {
    do {
        if op == "tojson" { return "ok \(hex(try ProtoJSON.encode(bytes, as: M.protobufCDescriptor).serialized()))" }
        if op == "fromjson" {
            return "ok \(hex(try ProtoJSON.decode(try JSONValue.parse(bytes), as: M.protobufCDescriptor)))"
        }
        let m = try M(serializedBytes: bytes)
        let unknown = m.unknownFields.fields.count
        if op == "decode" { return "ok \(unknown)" }
        let out = try m.serializedBytes()
        // Decoding our own output and encoding it again must be stable (bytes, not ==, so NaN counts).
        let again = try M(serializedBytes: out).serializedBytes()
        guard again == out else { return "err re-encoding our own output changed it" }
        return "ok \(unknown) \(hex(out))"
    } catch {
        return "err \(error)"
    }
}

while let line = readLine(strippingNewline: true) {
    let parts = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
    guard parts.count >= 2 else {
        print("err expected: OP TYPE HEX")
        fflush(nil)
        continue
    }
    guard let type = registry[String(parts[1])] else {
        print("err unknown type \(parts[1])")
        fflush(nil)
        continue
    }
    guard let bytes = unhex(parts.count > 2 ? parts[2] : "") else {
        print("err bad hex")
        fflush(nil)
        continue
    }
    print(handle(type, parts[0], bytes))
    fflush(nil)
}
