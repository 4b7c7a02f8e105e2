import BazaarCore
import BazaarTransport
import BazaarWire
import Testing

@testable import BazaarGateway

extension JSONValue {
    var serializedText: String { String(decoding: serialized(), as: UTF8.self) }
}

/// Connect's wire rules, case by case from the protocol's text; the real clients (the
/// `connectrpc` package, `buf curl`) are in Tests/Integration/test_connect.py.
@Suite struct ConnectWireTests {
    @Test func whichRequestsAreConnect() {
        #expect(ConnectWire.kind(method: "POST", contentType: "application/proto", query: "") == .unary(.proto))
        #expect(
            ConnectWire.kind(method: "POST", contentType: "application/json; charset=utf-8", query: "") == .unary(.json)
        )
        #expect(ConnectWire.kind(method: "POST", contentType: "Application/Connect+JSON", query: "") == .stream(.json))
        #expect(
            ConnectWire.kind(method: "POST", contentType: "application/connect+proto", query: "") == .stream(.proto))
        #expect(
            ConnectWire.kind(method: "GET", contentType: nil, query: "encoding=json&message=%7B%7D&connect=v1")
                == .unaryGet)
        // gRPC, gRPC-Web, a plain GET and other types are someone else's.
        for type in ["application/grpc", "application/grpc-web+proto", "text/plain", "application/xml"] {
            #expect(ConnectWire.kind(method: "POST", contentType: type, query: "") == nil, "\(type)")
        }
        #expect(ConnectWire.kind(method: "GET", contentType: nil, query: "page=2") == nil)
        #expect(ConnectWire.kind(method: "PUT", contentType: "application/json", query: "") == nil)
        #expect(ConnectWire.kind(method: "POST", contentType: nil, query: "") == nil)
        for empty in ["", ";", " ;charset=utf-8"] {
            #expect(ConnectWire.kind(method: "POST", contentType: empty, query: "") == nil, "\(empty)")
        }
    }

    @Test func statusesAndCodeNamesFollowTheProtocolsTable() {
        let table: [(StatusCode, Int, String)] = [
            (.cancelled, 499, "canceled"), (.unknown, 500, "unknown"), (.invalidArgument, 400, "invalid_argument"),
            (.deadlineExceeded, 504, "deadline_exceeded"), (.notFound, 404, "not_found"),
            (.alreadyExists, 409, "already_exists"), (.permissionDenied, 403, "permission_denied"),
            (.resourceExhausted, 429, "resource_exhausted"), (.failedPrecondition, 400, "failed_precondition"),
            (.aborted, 409, "aborted"), (.outOfRange, 400, "out_of_range"), (.unimplemented, 501, "unimplemented"),
            (.internal, 500, "internal"), (.unavailable, 503, "unavailable"), (.dataLoss, 500, "data_loss"),
            (.unauthenticated, 401, "unauthenticated"),
        ]
        for (code, status, name) in table {
            #expect(ConnectWire.httpStatus(code) == status, "\(code)")
            #expect(ConnectWire.codeName(code) == name, "\(code)")
        }
        #expect(
            ConnectWire.errorJSON(RPCError(.notFound, "no product x")).text
                == #"{"code":"not_found","message":"no product x"}"#)
    }

    @Test func timeoutsAreAtMostTenDigits() throws {
        #expect(try ConnectWire.timeout(nil) == nil)
        #expect(try ConnectWire.timeout("1500") == .milliseconds(1500))
        #expect(try ConnectWire.timeout("9999999999") == .milliseconds(9_999_999_999))
        for bad in ["", "-1", "1.5", "12345678901", "10s", " 10", "１０"] {
            #expect(throws: RPCError.self, "\(bad)") { try ConnectWire.timeout(bad) }
        }
    }

    @Test func envelopesRoundTripAndBrokenOnesAreRefused() throws {
        let body = ConnectWire.envelope([1, 2, 3]) + ConnectWire.envelope([], flags: 1) + ConnectWire.envelope([9])
        let read = try ConnectWire.envelopes(body, limit: 100)
        #expect(read.map(\.flags) == [0, 1, 0])
        #expect(read.map(\.payload) == [[1, 2, 3], [], [9]])
        #expect(try ConnectWire.envelopes([], limit: 100).isEmpty)
        #expect(throws: RPCError.self) { try ConnectWire.envelopes([0, 0, 0], limit: 100) }  // inside the prefix
        #expect(throws: RPCError.self) { try ConnectWire.envelopes([0, 0, 0, 0, 5, 1, 2], limit: 100) }  // short
        let big = [UInt8](repeating: 0, count: 200)
        do {
            _ = try ConnectWire.envelopes(ConnectWire.envelope(big), limit: 100)
            Issue.record("a message over the limit was read")
        } catch {
            #expect(error.code == .resourceExhausted)
        }
    }

    @Test func theEndOfAStreamCarriesTheErrorAndTheTrailers() throws {
        var trailers = Metadata()
        trailers.add("x-count", "3")
        trailers.add("grpc-status", "5")  // gRPC's own never show
        let end = ConnectWire.endOfStream(RPCError(.notFound, "gone"), trailers: trailers)
        #expect(end[0] == ConnectWire.endStreamFlag)
        let json = String(decoding: end.dropFirst(5), as: UTF8.self)
        #expect(json == #"{"error":{"code":"not_found","message":"gone"},"metadata":{"x-count":["3"]}}"#)
        let ok = ConnectWire.endOfStream(RPCError(.ok))
        #expect(String(decoding: ok.dropFirst(5), as: UTF8.self) == "{}")
    }

    @Test func aGetCarriesItsMessageInTheQuery() throws {
        let json = try ConnectWire.getMessage("connect=v1&encoding=json&message=%7B%22id%22%3A%22x%22%7D", limit: 1000)
        #expect(json.codec == .json && String(decoding: json.message, as: UTF8.self) == #"{"id":"x"}"#)
        // Binary, base64url without padding.
        let bytes: [UInt8] = [0x0A, 0x01, 0xFF]
        let b64 = try ConnectWire.getMessage(
            "connect=v1&encoding=proto&base64=1&message=\(Base64.encode(bytes, alphabet: .url, padding: false))",
            limit: 1000)
        #expect(b64.codec == .proto && b64.message == bytes)
        // Binary percent-encoded without base64 reaches the service byte for byte (0xFF is not
        // UTF-8: a string on the way would have changed it).
        let raw = try ConnectWire.getMessage("connect=v1&encoding=proto&message=%0A%01%FF", limit: 1000)
        #expect(raw.message == bytes)
        // Compressed; and empty compressed content is not inflated.
        let packed = try Gzip.compress(Array("{}".utf8))
        let gz = try ConnectWire.getMessage(
            "connect=v1&encoding=json&base64=1&compression=gzip&message=\(Base64.encode(packed, alphabet: .url, padding: false))",
            limit: 1000)
        #expect(gz.message == Array("{}".utf8))
        #expect(
            try ConnectWire.getMessage("connect=v1&encoding=json&compression=gzip&message=", limit: 1000).message == [])
        // An encoding that names no codec is for the caller to refuse with 415.
        let xml = try ConnectWire.getMessage("connect=v1&encoding=xml&message=x", limit: 1000)
        #expect(xml.codec == nil && xml.encoding == "xml")
        for bad in [
            "encoding=json&message=%7B%7D", "connect=v1&message=%7B%7D", "connect=v1&encoding=json",
            "connect=v1&encoding=proto&base64=1&message=%%%", "connect=v1&encoding=json&message=%zz",
            "connect=v1&encoding=json&compression=br&message=x",
        ] {
            #expect(throws: RPCError.self, "\(bad)") { try ConnectWire.getMessage(bad, limit: 1000) }
        }
    }

    @Test func theProtocolVersionIsOneOrAbsentAndTimeoutsArePositive() throws {
        try ConnectWire.checkVersion(nil)
        try ConnectWire.checkVersion("1")
        #expect(throws: RPCError.self) { try ConnectWire.checkVersion("2") }
        #expect(throws: RPCError.self) { try ConnectWire.timeout("0") }
    }

    @Test func compressionIsGzipOrNothingAndBombsAreBounded() throws {
        #expect(try ConnectWire.compression(nil) == .identity)
        #expect(try ConnectWire.compression("identity") == .identity)
        #expect(try ConnectWire.compression("GZIP") == .gzip)
        #expect(throws: RPCError.self) { try ConnectWire.compression("br") }
        #expect(ConnectWire.acceptsGzip("gzip, br") && ConnectWire.acceptsGzip("br;q=1, gzip;q=0.5"))
        #expect(!ConnectWire.acceptsGzip("gzip;q=0") && !ConnectWire.acceptsGzip(nil) && !ConnectWire.acceptsGzip("br"))
        let bomb = try Gzip.compress([UInt8](repeating: 0, count: 1 << 20))
        do {
            _ = try ConnectWire.inflate(bomb, .gzip, limit: 1000)
            Issue.record("a bomb was inflated past its limit")
        } catch {
            #expect(error.code == .resourceExhausted)
        }
        #expect(try ConnectWire.inflate([], .gzip, limit: 1000) == [])
        #expect(throws: RPCError.self) { try ConnectWire.inflate([1, 2, 3], .gzip, limit: 1000) }
    }

    @Test func errorDetailsInConnectsShapeAndRESTsShape() {
        let e = RPCError(
            .invalidArgument, "city is required",
            details: [
                .badRequest([FieldViolation(field: "city", description: "city is required", reason: "REQUIRED")]),
                .retryInfo(delay: .milliseconds(1500)),
            ])
        let connect = ConnectWire.errorJSON(e).serializedText
        #expect(connect.contains(#""type":"google.rpc.BadRequest""#))
        #expect(
            connect.contains(
                #""debug":{"fieldViolations":[{"field":"city","description":"city is required","reason":"REQUIRED"}]}"#)
        )
        // The value is the detail's message, base64 without padding.
        let value = StatusDetails.pack(e.details[0])!
        #expect(connect.contains(#""value":""# + Base64.encode(value, padding: false) + "\""))
        let rest = HTTPFailure(e).body.serializedText
        #expect(
            rest
                == #"{"code":3,"message":"city is required","details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"city","description":"city is required","reason":"REQUIRED"}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1.500s"}]}"#
        )
    }

    @Test func aDetailOfAnUnknownTypeKeepsItsBytes() {
        let e = RPCError(.internal, "x", details: [.other(typeURL: "type.example.com/acme.X", value: [1, 2, 3])])
        #expect(HTTPFailure(e).body.serializedText.contains(#"{"@type":"type.example.com/acme.X","value":"AQID"}"#))
        #expect(ConnectWire.errorJSON(e).serializedText.contains(#"{"type":"acme.X","value":"AQID"}"#))
    }
}
