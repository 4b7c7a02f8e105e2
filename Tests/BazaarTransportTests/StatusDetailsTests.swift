import BazaarCore
import BazaarTransport
import Testing

/// The wire form of error details (grpc-status-details-bin); grpcio-status reads what these
/// produce in Tests/Integration/test_error_model.py.
@Suite struct StatusDetailsTests {
    static let every: [ErrorDetail] = [
        .badRequest([
            FieldViolation(field: "address.city", description: "address.city is required", reason: "REQUIRED"),
            FieldViolation(field: "lines[2]", description: "lines[2] is longer than 200 characters"),
        ]),
        .errorInfo(ErrorInfo(reason: "OUT_OF_STOCK", domain: "catalog.shop.bazaar", metadata: ["available": "2"])),
        .retryInfo(delay: .milliseconds(1500)),
        .resourceInfo(ResourceInfo(type: "shop.v1.Product", name: "p-1", owner: "o", description: "gone")),
        .preconditionFailure([PreconditionViolation(type: "STOCK", subject: "p-1", description: "none left")]),
        .other(typeURL: "type.example.com/acme.Custom", value: [0x08, 0x01]),
    ]

    @Test func everyKindOfDetailSurvivesTheRoundTrip() throws {
        let error = RPCError(.failedPrecondition, "no", details: Self.every)
        let bytes = try #require(StatusDetails.encode(error))
        #expect(StatusDetails.decode(bytes) == Self.every)
    }

    @Test func anErrorWithoutDetailsSendsNoTrailer() {
        #expect(StatusDetails.encode(RPCError(.notFound, "no product")) == nil)
    }

    @Test func bytesThatAreNoStatusGiveNoDetails() {
        #expect(StatusDetails.decode([0xFF, 0xFF, 0xFF]) == nil)
        #expect(StatusDetails.decode([UInt8](repeating: 0, count: 70_000)) == nil)
    }

    @Test func aModelledTypeThatDoesNotDecodeIsKeptAsItCame() {
        let garbage: [UInt8] = [0x0A, 0x05, 0x01]
        #expect(
            StatusDetails.unpack(typeURL: "type.googleapis.com/google.rpc.BadRequest", value: garbage)
                == .other(typeURL: "type.googleapis.com/google.rpc.BadRequest", value: garbage))
    }

    @Test func connectNamesTheTypeWithoutItsURLPrefix() {
        #expect(ErrorDetail.retryInfo(delay: .seconds(1)).typeName == "google.rpc.RetryInfo")
        #expect(ErrorDetail.other(typeURL: "type.example.com/acme.Custom", value: []).typeName == "acme.Custom")
        #expect(
            ErrorDetail.errorInfo(ErrorInfo(reason: "R", domain: "d")).typeURL
                == "type.googleapis.com/google.rpc.ErrorInfo")
    }

    @Test func aRetryDelayOutsideProtobufsRangeIsKeptAsBytes() throws {
        // seconds = Int64.max, nanos = 2e9: a Duration past what its components can hold.
        var bytes: [UInt8] = [0x0A, 0x10, 0x08]
        bytes += [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]
        bytes += [0x10, 0x80, 0xA8, 0xD6, 0xB9, 0x07]
        let detail = StatusDetails.unpack(typeURL: "type.googleapis.com/google.rpc.RetryInfo", value: bytes)
        #expect(detail == .other(typeURL: "type.googleapis.com/google.rpc.RetryInfo", value: bytes))
        // And passing it on works.
        #expect(StatusDetails.encode(RPCError(.unavailable, "x", details: [detail])) != nil)
    }

    @Test func detailsTooLargeForAHeaderAreLeftOut() {
        let many = (0..<2000).map { FieldViolation(field: "f\($0)", description: "field \($0) is wrong") }
        #expect(StatusDetails.encode(RPCError(.invalidArgument, "x", details: [.badRequest(many)])) == nil)
    }
}
