import BazaarWire
import ConformanceProtos
import ShopAPI
import Testing

/// Decoders take bytes from the network: every malformed input must throw, never crash.
@Suite("Hostile bytes")
struct HostileBytesTests {
    func rejects<M: WireMessage>(_ type: M.Type, _ bytes: [UInt8], _ what: Comment) {
        #expect(throws: WireDecodingError.self, what) { try M(serializedBytes: bytes) }
    }

    @Test("truncated varints")
    func truncatedVarint() {
        rejects(Conformance_V1_AllTypes.self, [0x08, 0xFF], "value varint cut short")
        rejects(
            Conformance_V1_AllTypes.self, [0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            "varint longer than 10 bytes")
        rejects(Conformance_V1_AllTypes.self, [0x80], "tag varint cut short")
    }

    @Test("wrong wire types")
    func wrongWireType() {
        rejects(Conformance_V1_AllTypes.self, [0x0D, 0x01, 0x02, 0x03, 0x04], "fixed32 for an int32 field")
        rejects(
            Conformance_V1_AllTypes.self, [0x8A, 0x01, 0x01, 0x00],
            "length-delimited for a scalar in a message field position")
        rejects(Conformance_V1_AllTypes.self, [0x0B], "group start (wire type 3)")
        rejects(Conformance_V1_AllTypes.self, [0x0F], "wire type 7")
        rejects(Conformance_V1_AllTypes.self, [0x00], "field number 0")
        // Found by the fuzzer: protobuf-c accepts field 0 when the tag varint is not minimal.
        rejects(Conformance_V1_AllTypes.self, [0x85, 0x00, 0x00, 0x06, 0x00, 0x90], "field number 0, two-byte tag")
        rejects(
            Shop_V1_Order.self, [0x1A, 0x06, 0x85, 0x00, 0x00, 0x06, 0x00, 0x90], "field number 0 in a sub-message")
    }

    @Test("lengths past the buffer")
    func lengthsPastBuffer() {
        rejects(Conformance_V1_AllTypes.self, [0x72, 0x05, 0x61], "string longer than the input")
        rejects(Conformance_V1_AllTypes.self, [0x72, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F], "4 GiB string length")
        rejects(Shop_V1_Order.self, [0x1A, 0x10, 0x0A, 0x01], "sub-message longer than the input")
        rejects(Conformance_V1_AllTypes.self, [0xFA, 0x01, 0x08, 0x01], "packed array longer than the input")
    }

    @Test("invalid UTF-8 in a string field")
    func invalidUTF8() {
        #expect(throws: WireDecodingError.invalidUTF8(field: "conformance.v1.AllTypes.f_string")) {
            try Conformance_V1_AllTypes(serializedBytes: [0x72, 0x02, 0xC3, 0x28])
        }
    }

    @Test("nesting 10,000 deep is refused before protobuf-c recurses")
    func deepNesting() {
        // AllTypes.child (field 100) nested 10,000 times: each level is tag, length, then the rest.
        var bytes: [UInt8] = []
        for _ in 0..<10_000 {
            var prefix: [UInt8] = [0xA2, 0x06]  // field 100, wire type 2
            var n = bytes.count
            repeat {
                prefix.append(UInt8(n & 0x7F) | (n >= 0x80 ? 0x80 : 0))
                n >>= 7
            } while n > 0
            bytes = prefix + bytes
        }
        #expect(throws: WireDecodingError.tooDeep(limit: 100)) { try Conformance_V1_AllTypes(serializedBytes: bytes) }
        // Within the limit it decodes.
        var shallow: [UInt8] = []
        for _ in 0..<40 { shallow = [0xA2, 0x06, UInt8(shallow.count)] + shallow }  // lengths stay under 128
        #expect((try? Conformance_V1_AllTypes(serializedBytes: shallow)) != nil)
    }

    @Test("seeded random and mutated inputs never crash")
    func randomInputs() throws {
        var rng = SplitMix64(seed: 0xBA2AA2)
        var sample = Conformance_V1_AllTypes()
        sample.fString = "héllo"
        sample.rInt64 = [1, -1, .max]
        sample.mStringString = ["k": "v"]
        sample.choice = .oNested(.init(a: 3, b: "x"))
        sample.child = Conformance_V1_AllTypes(fBytes: [1, 2, 3])
        let valid = try sample.serializedBytes()
        var decoded = 0
        for i in 0..<20_000 {
            var bytes: [UInt8]
            if i % 2 == 0 {
                bytes = (0..<Int(rng.next() % 64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            } else {
                bytes = valid
                for _ in 0..<(1 + Int(rng.next() % 4)) {
                    let at = Int(rng.next() % UInt64(bytes.count))
                    switch rng.next() % 3 {
                    case 0: bytes[at] = UInt8(truncatingIfNeeded: rng.next())
                    case 1: bytes.removeSubrange(at...)
                    default: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: at)
                    }
                    if bytes.isEmpty { break }
                }
            }
            if let m = try? Conformance_V1_AllTypes(serializedBytes: bytes) {
                decoded += 1
                // Whatever decodes must encode again (unknown fields included).
                _ = try? m.serializedBytes()
            }
        }
        #expect(decoded > 0)
    }
}

/// A small deterministic generator, so that failures reproduce.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Issue 15: JSON from clients is bounded before Foundation's parser builds anything.
@Suite struct HostileJSONTests {
    @Test func deepNestingIsRefusedBeforeParsing() {
        let deep = Array(String(repeating: "[", count: 65).utf8) + Array(String(repeating: "]", count: 65).utf8)
        #expect(throws: JSONMappingError("the JSON nests deeper than 64 levels")) { try JSONValue.parse(deep) }
        let fine = Array(String(repeating: "[", count: 64).utf8) + Array(String(repeating: "]", count: 64).utf8)
        #expect((try? JSONValue.parse(fine)) != nil)
        // Brackets inside strings are text, not nesting.
        #expect((try? JSONValue.parse(Array("[\"\(String(repeating: "[", count: 200))\"]".utf8))) != nil)
    }

    @Test func tooManyValuesAreRefusedBeforeParsing() {
        let flat = Array(("[" + Array(repeating: "0", count: 100_002).joined(separator: ",") + "]").utf8)
        #expect(throws: JSONMappingError("the JSON holds more than 100000 values")) { try JSONValue.parse(flat) }
        let escaped = Array("[\"a\\\",b\", 1]".utf8)  // an escaped quote does not end the string
        #expect((try? JSONValue.parse(escaped)) != nil)
    }
}
