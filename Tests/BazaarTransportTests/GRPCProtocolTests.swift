import BazaarCore
import Testing

@testable import BazaarTransport

@Suite struct TimeoutHeaderTests {
    @Test func parsesEveryUnit() {
        #expect(GRPCHeaders.parseTimeout("1H") == .seconds(3600))
        #expect(GRPCHeaders.parseTimeout("2M") == .seconds(120))
        #expect(GRPCHeaders.parseTimeout("3S") == .seconds(3))
        #expect(GRPCHeaders.parseTimeout("100m") == .milliseconds(100))
        #expect(GRPCHeaders.parseTimeout("7u") == .microseconds(7))
        #expect(GRPCHeaders.parseTimeout("99999999n") == .nanoseconds(99_999_999))
    }

    @Test(arguments: ["", "S", "1", "1x", "-1S", "123456789S", "1.5S", " 1S"])
    func refusesMalformed(_ value: String) {
        #expect(GRPCHeaders.parseTimeout(value) == nil)
    }

    @Test func encodesWithinEightDigitsAndNeverShorter() {
        for d: Duration in [
            .nanoseconds(1), .microseconds(1500), .milliseconds(250), .seconds(30), .seconds(200_000),
            .seconds(1 << 40),
        ] {
            let s = GRPCHeaders.encodeTimeout(d)
            #expect(s.count <= 9, "\(s)")
            let back = GRPCHeaders.parseTimeout(s)
            #expect(back != nil && back! >= min(d, .seconds(99_999_999 * 3600)), "\(d) -> \(s)")
        }
    }
}

@Suite struct StatusMessageTests {
    @Test func percentEncodingRoundTrips() {
        let message = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n 100%"
        let encoded = GRPCHeaders.percentEncode(message)
        #expect(encoded.utf8.allSatisfy { $0 >= 0x20 && $0 <= 0x7e })
        #expect(GRPCHeaders.percentDecode(encoded) == message)
    }

    @Test func malformedEscapesAreKept() {
        #expect(GRPCHeaders.percentDecode("50%") == "50%")
        #expect(GRPCHeaders.percentDecode("%zz%4") == "%zz%4")
        #expect(GRPCHeaders.percentDecode("%41%42") == "AB")
    }
}

@Suite struct MetadataHeaderTests {
    @Test func binaryValuesAreBase64AndSplitOnCommas() {
        let m = GRPCHeaders.metadata([
            ("x-a-bin", "q6ur,AAE="), ("x-b", "plain, text"), ("grpc-timeout", "1S"), (":path", "/x"),
        ])
        #expect(m.values("x-a-bin") == [.binary([0xab, 0xab, 0xab]), .binary([0, 1])])
        #expect(m["x-b"] == "plain, text")
        #expect(m.values("grpc-timeout").isEmpty)
        #expect(m.values(":path").isEmpty)
    }

    @Test func reservedKeysNeverLeave() {
        var m = Metadata()
        m.add("content-type", "text/html")
        m.add("grpc-status", "0")
        m.add("x-ok", "1")
        m.add("x-data-bin", binary: [0xff])
        let fields = GRPCHeaders.fields(m)
        #expect(fields.map(\.name) == ["x-ok", "x-data-bin"])
        #expect(fields.last?.value == "/w")
    }
}

@Suite struct MessageFramingTests {
    @Test func reassemblesAcrossAnyChunking() throws {
        let messages: [[UInt8]] = [[], [1], Array(repeating: 7, count: 70_000), [9, 9, 9]]
        var wire: [UInt8] = []
        for m in messages { wire += try MessageWriter.frame(m, compression: .identity) }
        for chunk in [1, 2, 5, 4096, wire.count] {
            var reader = MessageReader(maxMessageSize: 1 << 20)
            var got: [[UInt8]] = []
            var i = 0
            while i < wire.count {
                reader.append(Array(wire[i..<min(i + chunk, wire.count)]))
                while let m = try reader.next() { got.append(m.payload) }
                i += chunk
            }
            #expect(got == messages, "chunk \(chunk)")
            #expect(reader.bufferedBytes == 0)
        }
    }

    @Test func oversizeIsRefusedFromThePrefixAlone() {
        var reader = MessageReader(maxMessageSize: 100)
        reader.append([0, 0, 0, 0, 101])
        #expect(throws: RPCError.self) { try reader.next() }
        do { _ = try reader.next() } catch { #expect(error.code == .resourceExhausted) }
    }

    @Test func badFlagIsInternal() {
        var reader = MessageReader(maxMessageSize: 100)
        reader.append([2, 0, 0, 0, 0])
        do {
            _ = try reader.next()
            Issue.record("accepted flag 2")
        } catch { #expect(error.code == .internal) }
    }

    @Test func gzipRoundTripsAndBombsAreStopped() throws {
        let data = [UInt8](repeating: 0, count: 1 << 20)
        let z = try Gzip.compress(data)
        #expect(z.count < 4096)
        #expect(try Gzip.decompress(z, limit: 1 << 20) == data)
        do {
            _ = try Gzip.decompress(z, limit: 1000)
            Issue.record("inflated past the limit")
        } catch { #expect(error.code == .resourceExhausted) }
        #expect(throws: RPCError.self) { try Gzip.decompress([1, 2, 3, 4], limit: 100) }
    }
}

@Suite struct ClientConfigurationTests {
    @Test func endpointsParse() {
        #expect(Endpoint("localhost:50051") == Endpoint(host: "localhost", port: 50051))
        #expect(Endpoint("[::1]:443") == Endpoint(host: "::1", port: 443))
        #expect(Endpoint("nohost") == nil)
        #expect(Endpoint(":80") == nil)
        #expect(Endpoint("x:0") == nil)
        #expect(Endpoint("x:70000") == nil)
    }

    @Test func backoffFollowsTheDocumentedCurve() {
        let b = ConnectionBackoff()
        #expect(b.delay(attempt: 0) == .zero)
        for _ in 0..<50 {
            let first = b.delay(attempt: 1)
            #expect(first >= .milliseconds(800) && first <= .milliseconds(1200))
            let third = b.delay(attempt: 3)  // 1 s * 1.6^2 = 2.56 s, ±20 %
            #expect(third >= .milliseconds(2048) && third <= .milliseconds(3072))
            #expect(b.delay(attempt: 40) <= .seconds(144))
        }
    }

    @Test func httpStatusesMapLikeGRPC() {
        #expect(ClientStream.code(forHTTPStatus: "404") == .unimplemented)
        #expect(ClientStream.code(forHTTPStatus: "503") == .unavailable)
        #expect(ClientStream.code(forHTTPStatus: "401") == .unauthenticated)
        #expect(ClientStream.code(forHTTPStatus: "418") == .unknown)
    }
}

@Suite struct EncodingListTests {
    @Test(arguments: [
        ("gzip", true), ("identity,deflate,gzip", true), ("gzip,identity", true), (" deflate , gzip ", true),
        ("identity", false), ("gzipx", false), ("xgzip", false), ("", false), ("deflate,gz,ip", false),
    ])
    func findsGzip(_ list: String, _ expected: Bool) {
        #expect(GRPCHeaders.listsGzip(list) == expected)
    }

    @Test func internsOnlyExactMatches() {
        let post = Array("POST".utf8)
        let posted = Array("POSTED".utf8)
        let path = Array(":path".utf8)
        let other = Array("/a.B/C".utf8)
        #expect(post.withUnsafeBufferPointer { HeaderInterning.value($0) } == "POST")
        #expect(posted.withUnsafeBufferPointer { HeaderInterning.value($0) } == nil)
        #expect(path.withUnsafeBufferPointer { HeaderInterning.name($0) } == ":path")
        let paths = InternTable(["/a.B/C", "/a.B/D", "/x.Y/Zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"])
        #expect(other.withUnsafeBufferPointer { paths.lookup($0) } == "/a.B/C")
        #expect(post.withUnsafeBufferPointer { paths.lookup($0) } == nil)
    }
}
