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
