import BazaarWire
import Foundation
import Testing

/// The one base64 and the one percent-decoder, against Foundation's encoder and the RFCs' cases.
@Suite struct TextEncodingTests {
    @Test func base64MatchesFoundationBothWays() {
        var rng = SystemRandomNumberGenerator()
        for n in 0..<200 {
            let bytes = (0..<n % 40).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let reference = Data(bytes).base64EncodedString()
            #expect(Base64.encode(bytes) == reference)
            let url = reference.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            #expect(Base64.encode(bytes, alphabet: .url, padding: false) == url.replacingOccurrences(of: "=", with: ""))
            #expect(Base64.decode(reference) == bytes)
            #expect(Base64.decode(url, alphabet: .url) == bytes)
            #expect(Base64.decode(reference.replacingOccurrences(of: "=", with: "")) == bytes)
        }
    }

    @Test func base64RefusesWhatNoEncoderMakes() {
        // RFC 4648's test vectors.
        for (plain, coded) in [
            ("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            #expect(Base64.encode(Array(plain.utf8)) == coded)
            #expect(Base64.decode(coded) == Array(plain.utf8))
        }
        for bad in ["Z", "Zg=a", "Zm9v=", "Zm 9v", "Zm9v\n", "Zg===", "Z!=="] {
            #expect(Base64.decode(bad) == nil, "\(bad)")
        }
        #expect(Base64.decode("-_8", alphabet: .standard) == nil)
        #expect(Base64.decode("+/8", alphabet: .url) == nil)
        #expect(Base64.decode("-/8") == [0xFB, 0xFF])
    }

    @Test func percentDecodingStrictAndLenient() {
        #expect(PercentEncoding.decode("a%20b%2Fc") == "a b/c")
        #expect(PercentEncoding.decode("caf%C3%A9") == "café")
        #expect(PercentEncoding.decode("no-escapes") == "no-escapes")
        for bad in ["%", "%2", "%zz", "%C3"] { #expect(PercentEncoding.decode(bad) == nil, "\(bad)") }
        #expect(PercentEncoding.decode("50% off %zz", lenient: true) == "50% off %zz")
        #expect(PercentEncoding.decode("%C3", lenient: true) == "\u{FFFD}")
    }
}

/// RFC 3339 timestamps as ProtoJSON writes them: UTC, `Z`, and the shortest exact fraction of
/// 3, 6 or 9 digits.
@Suite struct TimestampTextTests {
    @Test func timestampsAreUTCWithTheShortestExactFraction() throws {
        let cases: [(Int64, Int32, String)] = [
            (0, 0, "1970-01-01T00:00:00Z"),
            (1_700_000_000, 123_000_000, "2023-11-14T22:13:20.123Z"),
            (1_700_000_000, 1000, "2023-11-14T22:13:20.000001Z"),
            (1_700_000_000, 1, "2023-11-14T22:13:20.000000001Z"),
            (-1, 999_999_999, "1969-12-31T23:59:59.999999999Z"),
            (-62_135_596_800, 0, "0001-01-01T00:00:00Z"),
            (253_402_300_799, 999_000_000, "9999-12-31T23:59:59.999Z"),
        ]
        for (seconds, nanos, text) in cases {
            #expect(try ProtoJSON.timestampText(seconds: seconds, nanos: nanos) == text)
            #expect(ProtoJSON.parseTimestamp(text).map { [$0.0, Int64($0.1)] } == [seconds, Int64(nanos)])
        }
        #expect(throws: JSONMappingError.self) { try ProtoJSON.timestampText(seconds: 253_402_300_800, nanos: 0) }
        #expect(throws: JSONMappingError.self) { try ProtoJSON.timestampText(seconds: 0, nanos: -1) }
    }
}
